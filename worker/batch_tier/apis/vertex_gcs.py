"""A small Google Cloud Storage client (the JSON API) for what the Vertex batch client keeps in a bucket.

Why: Vertex AI batch prediction reads its input from Cloud Storage and writes its predictions there
(../shared/reference/native_batch.md §5), so the worker must upload a pack's JSONL, list and read the
output directory, and delete both once harvested. Four calls of the JSON API are all it takes, on the
worker's own httpx client (the same pool and timeouts as every provider call), so no Google SDK:

    upload    POST {base}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={object}
    list      GET  {base}/storage/v1/b/{bucket}/o?prefix={prefix}&pageToken=…   ({"items", "nextPageToken"})
    download  GET  {base}/storage/v1/b/{bucket}/o/{object, %-encoded}?alt=media  (streamed, line by line)
    delete    DELETE {base}/storage/v1/b/{bucket}/o/{object, %-encoded}

Where the credential goes: the caller's OAuth bearer token (the Vertex target's own, as the realtime
adapter sends it) is only sent to `base_url`, which comes from the operator's settings
(MMQ_GCS_BASE_URL, default Google's https://storage.googleapis.com), never from an answer: a
`gs://` URI a provider hands back is read as bucket + object name and checked to lie under the
operator's bucket and prefix (`GcsPlace.owns`) before anything is listed or read there.

Errors are Google's ({"error": {"code", "message", "errors"}}) and become the ProviderError the
Gemini adapter's reader makes of them (retryable for 429/5xx), a connection failure a retryable one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from mmq.endpoints import EndpointError, under
from mmq.errors import ProviderError
from worker.batch_tier.apis import _http
from worker.providers.gemini.errors import error_from_response

DEFAULT_BASE_URL = "https://storage.googleapis.com"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_PAGE = 1000


def _error(provider: str) -> _http.ErrorReader:
    return lambda response: error_from_response(response, provider)


@dataclass(frozen=True)
class GcsPlace:
    """A bucket and an object-name prefix (no leading or trailing slash; may be empty)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, uri: str) -> GcsPlace:
        """`gs://bucket[/prefix]` → GcsPlace; ValueError for anything else."""
        if not isinstance(uri, str) or not uri.startswith("gs://"):
            raise ValueError(f"{uri!r} is not a gs://bucket/prefix URI")
        bucket, _, prefix = uri.removeprefix("gs://").partition("/")
        if not _BUCKET.match(bucket):
            raise ValueError(f"{uri!r}: {bucket!r} is not a Cloud Storage bucket name")
        prefix = prefix.strip("/")
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise ValueError(f"{uri!r}: the prefix has an empty, . or .. segment")
        return cls(bucket, prefix)

    def name(self, *parts: str) -> str:
        """An object name under the prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def uri(self, *parts: str) -> str:
        return f"gs://{self.bucket}/{self.name(*parts)}"

    def owns(self, uri: Any) -> str | None:
        """The object name (or name prefix) of a gs:// URI under this bucket and prefix, else None."""
        if not isinstance(uri, str) or not uri.startswith(f"gs://{self.bucket}/"):
            return None
        name = uri.removeprefix(f"gs://{self.bucket}/").rstrip("/")
        if ".." in name.split("/"):
            return None
        if self.prefix and not (name == self.prefix or name.startswith(self.prefix + "/")):
            return None
        return name


class GcsClient:
    """The four JSON API calls on one operator-configured endpoint. `provider` names the errors."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, provider: str = "gcs") -> None:
        if not under(base_url, base_url):
            raise EndpointError(f"MMQ_GCS_BASE_URL {base_url!r} is not an http(s) base URL")
        self.base_url = base_url.rstrip("/")
        self.provider = provider

    def _headers(self, token: str | None, **more: str) -> dict[str, str]:
        return {**({"authorization": f"Bearer {token}"} if token else {}), **more}

    def _object_url(self, bucket: str, name: str) -> str:
        return f"{self.base_url}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"

    async def upload(
        self,
        client: httpx.AsyncClient,
        token: str | None,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str = "application/jsonl",
    ) -> dict[str, Any]:
        """Writes (or overwrites: the same name twice is one object) `name`; its metadata."""
        url = f"{self.base_url}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
        response = await _http.call(
            client,
            _error(self.provider),
            self.provider,
            "POST",
            url,
            self._headers(token, **{"content-type": content_type}),
            params={"uploadType": "media", "name": name},
            content=data,
        )
        body = _http.json_of(response, self.provider)
        return body if isinstance(body, dict) else {}

    async def names(
        self, client: httpx.AsyncClient, token: str | None, bucket: str, prefix: str
    ) -> list[str]:
        """Every object name under `prefix`, in name order (the JSON API's), all pages."""
        url = f"{self.base_url}/storage/v1/b/{quote(bucket, safe='')}/o"
        out: list[str] = []
        token_page: str | None = None
        while True:
            params: Mapping[str, str] = {
                "prefix": prefix,
                "maxResults": str(_PAGE),
                **({"pageToken": token_page} if token_page else {}),
            }
            response = await _http.call(
                client, _error(self.provider), self.provider, "GET", url, self._headers(token), params=params
            )
            body = _http.json_of(response, self.provider)
            body = body if isinstance(body, dict) else {}
            items = body.get("items")
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    out.append(item["name"])
            following = body.get("nextPageToken")
            if not isinstance(following, str) or not following or following == token_page:
                return sorted(out)
            token_page = following

    def lines(
        self, client: httpx.AsyncClient, token: str | None, bucket: str, name: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Each JSON object of a JSONL object, read as it streams (predictions may hold base64)."""
        return _http.streamed_lines(
            client,
            _error(self.provider),
            self.provider,
            self._object_url(bucket, name) + "?alt=media",
            self._headers(token),
        )

    async def delete(self, client: httpx.AsyncClient, token: str | None, bucket: str, name: str) -> bool:
        """Deletes `name`; False when it was not there (a second clean-up)."""
        try:
            await _http.call(
                client,
                _error(self.provider),
                self.provider,
                "DELETE",
                self._object_url(bucket, name),
                self._headers(token),
            )
        except ProviderError as exc:
            if exc.status == 404:  # already gone
                return False
            raise
        return True
