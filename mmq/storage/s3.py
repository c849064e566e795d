"""S3-compatible object storage (AWS S3, MinIO, Cloudflare R2, a local test server) behind `Storage`.

URL: `s3://bucket[/prefix][?endpoint_url=http://host:port][&region=eu-west-1]`.

Credentials come only from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`, or whatever else obstore's AWS provider chain finds there): a storage URL is
logged and copied into Redis, so a URL that carries a secret is refused outright.

The client is obstore (Rust `object_store` underneath): native async, streaming GETs, one small wheel,
and no botocore pin to fight with (we use botocore for Bedrock SigV4). It is the `s3` extra
(`pip install 'mmq[s3]'`); without it, opening S3 storage raises mmq.extras.MissingExtra naming it.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from mmq.extras import MissingExtra
from mmq.storage import BlobNotFound, StorageKeyError, validate_key

try:  # the `s3` extra: a base install imports this module only when MMQ_STORAGE_URL is s3://…
    import obstore as obs
    from obstore.exceptions import NotFoundError
    from obstore.store import S3Store
except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] != "obstore":
        raise
    raise MissingExtra("S3 storage (MMQ_STORAGE_URL=s3://…)", "s3", "obstore") from None

# S3 limits a whole object key (prefix included) to 1024 bytes; our keys are ASCII, so chars == bytes
MAX_S3_KEY = 1024
DEFAULT_REGION = "us-east-1"
_URL_PARAMS = ("endpoint_url", "region")
# Names that would put a secret into the URL. Refused with a message that never repeats the value.
_SECRET_PARAM_RE = re.compile(r"(key|secret|token|passw|credential|signature|session)", re.IGNORECASE)
# AWS rules (3-63, lowercase, digits, dots, hyphens), loosened for legacy names some S3 clones allow
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")
# obstore's NotFoundError surfaces as FileNotFoundError on some paths: catch both
_MISSING = (NotFoundError, FileNotFoundError)


class S3UrlError(ValueError):
    pass


def _endpoint_from(value: str, source: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise S3UrlError(f"S3 endpoint from {source} must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise S3UrlError(
            f"S3 endpoint from {source} must not carry credentials: "
            "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment"
        )
    if parts.query or parts.fragment:
        raise S3UrlError(f"S3 endpoint from {source} must not have a query or fragment")
    return value.rstrip("/")


class S3Location:
    """A parsed `s3://` URL with the endpoint and region resolved from the URL or the environment."""

    def __init__(self, bucket: str, prefix: str, endpoint: str | None, region: str) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region

    @classmethod
    def parse(cls, url: str, environ: dict[str, str] | os._Environ[str] | None = None) -> S3Location:
        env = os.environ if environ is None else environ
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise S3UrlError("an S3 storage URL starts with s3://")
        # check userinfo before anything else so no later message can echo a secret
        if "@" in parts.netloc:
            raise S3UrlError(
                "credentials are not accepted in the storage URL (it is logged and stored in Redis): "
                "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN in the environment"
            )
        params = parse_qsl(parts.query, keep_blank_values=True)
        names = [name for name, _ in params]
        if any(_SECRET_PARAM_RE.search(n) for n in names):
            raise S3UrlError(
                "credentials are not accepted in the storage URL (it is logged and stored in Redis): "
                "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN in the environment"
            )
        unknown = sorted({n for n in names if n not in _URL_PARAMS})
        if unknown:
            raise S3UrlError(f"unknown S3 URL parameter(s) {unknown}; supported: {list(_URL_PARAMS)}")
        if len(names) != len(set(names)):
            raise S3UrlError("repeated S3 URL parameter")
        if parts.fragment:
            raise S3UrlError("an S3 storage URL has no #fragment")
        query = dict(params)

        bucket = parts.netloc
        if not _BUCKET_RE.match(bucket):
            raise S3UrlError(f"invalid S3 bucket name {bucket!r}")
        prefix = parts.path.strip("/")
        if prefix:
            try:
                validate_key(prefix)
            except StorageKeyError:
                raise S3UrlError(f"invalid S3 key prefix {prefix!r}") from None

        if "endpoint_url" in query:
            endpoint: str | None = _endpoint_from(query["endpoint_url"], "?endpoint_url=")
        elif env.get("AWS_ENDPOINT_URL_S3"):
            endpoint = _endpoint_from(env["AWS_ENDPOINT_URL_S3"], "AWS_ENDPOINT_URL_S3")
        elif env.get("AWS_ENDPOINT_URL"):
            endpoint = _endpoint_from(env["AWS_ENDPOINT_URL"], "AWS_ENDPOINT_URL")
        else:
            endpoint = None  # AWS itself, from the region
        region = (
            query.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        )
        if not re.fullmatch(r"[a-z0-9-]{1,40}", region):
            raise S3UrlError(f"invalid S3 region {region!r}")
        return cls(bucket, prefix, endpoint, region)

    @property
    def url(self) -> str:
        """Canonical, secret-free URL: reopening it reaches the same place from any environment."""
        base = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        query = {}
        if self.endpoint:
            query["endpoint_url"] = self.endpoint
        if self.region != DEFAULT_REGION:
            query["region"] = self.region
        return f"{base}?{urlencode(query, quote_via=quote, safe=':/')}" if query else base


class S3Storage:
    """Objects under `prefix/` in one bucket. Every key is validated and joined under the prefix."""

    def __init__(self, location: S3Location) -> None:
        self.location = location
        self.url = location.url
        self._prefix = f"{location.prefix}/" if location.prefix else ""
        config: dict[str, str | bool] = {"region": location.region}
        client_options: dict[str, str | bool] = {}
        if location.endpoint:
            # set both: obstore lets AWS_ENDPOINT_URL_S3 from the environment win over `endpoint`,
            # and the URL's ?endpoint_url= must win over the environment
            config["endpoint"] = location.endpoint
            config["aws_endpoint_url_s3"] = location.endpoint
            # MinIO, moto and most S3 clones are addressed path-style (http://host:port/bucket/key)
            config["virtual_hosted_style_request"] = False
            if location.endpoint.startswith("http://"):
                client_options["allow_http"] = True  # an operator-given plain-http endpoint (loopback, LAN)
        # credentials (and STS/web-identity/container settings) are read from the environment by obstore
        self._store = S3Store(location.bucket, config=config, client_options=client_options)  # type: ignore[arg-type]

    @classmethod
    def from_url(cls, url: str) -> S3Storage:
        return cls(S3Location.parse(url))

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    def path(self, key: str) -> str:
        """The object key in the bucket. The key grammar rules out `..`, absolute paths and empty
        segments, so the join cannot leave the prefix; checked before any network call."""
        full = self._prefix + validate_key(key)
        if len(full) > MAX_S3_KEY:
            raise StorageKeyError(f"storage key too long for S3 with prefix {self.location.prefix!r}")
        return full

    async def put(self, key: str, data: bytes) -> None:
        # an S3 PUT (or a completed multipart upload, used above 5 MB) is atomic: no half objects
        await obs.put_async(self._store, self.path(key), data)

    async def get(self, key: str) -> bytes:
        path = self.path(key)
        try:
            result = await obs.get_async(self._store, path)
            return bytes(await result.bytes_async())
        except _MISSING:
            raise BlobNotFound(key) from None

    async def exists(self, key: str) -> bool:
        path = self.path(key)
        try:
            await obs.head_async(self._store, path)
        except _MISSING:
            return False
        return True

    async def delete(self, key: str) -> None:
        # S3 DELETE of a missing key succeeds, like LocalStorage's unlink(missing_ok=True)
        await obs.delete_async(self._store, self.path(key))

    async def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        path = self.path(key)
        try:
            result = await obs.get_async(self._store, path)
        except _MISSING:
            raise BlobNotFound(key) from None
        # network chunks come in arbitrary sizes: re-cut them so every chunk but the last is exactly
        # chunk_size, as LocalStorage yields them
        buf = bytearray()
        async for piece in result.stream(min_chunk_size=min(chunk_size, 1 << 20)):
            buf += memoryview(piece)
            while len(buf) >= chunk_size:
                yield bytes(buf[:chunk_size])
                del buf[:chunk_size]
        if buf:
            yield bytes(buf)
