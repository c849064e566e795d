"""The S3 the simulated Bedrock batch inference reads its records from and writes its answers to.

Why a real S3 server and not an in-memory store: the worker puts a job's records in the operator's S3
(MMQ_BEDROCK_BATCH_S3_URI) and reads Bedrock's `.jsonl.out` back from there, so the simulator must
reach that very bucket, the way Bedrock does with its IAM role. `SimulatorConfig.s3_endpoint`
(MMQ_SIM_S3_ENDPOINT, e.g. the tests' moto server on 127.0.0.1) names the S3-compatible server; the
`s3://bucket/key` URIs of a job are read and written there, path-style. Credentials come from the
simulator's environment (AWS_ACCESS_KEY_ID…) when it has them, else requests go unsigned (a local
test server checks none). Without an endpoint a job fails its validation, saying so: the simulator
never reaches AWS.

The client is obstore (the `s3` extra, as mmq's own S3 storage), imported when a job is created.
"""

from __future__ import annotations

import os
import re
from typing import Any

_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][-.a-z0-9]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")


class S3Unavailable(Exception):
    """The records cannot be read or the answers written (no endpoint, no extra, a failed call)."""


def split(uri: str) -> tuple[str, str]:
    """(bucket, key or prefix) of an `s3://` URI."""
    match = _URI.match(uri)
    if not match:
        raise S3Unavailable(f"not an S3 URI: {uri!r}")
    return match["bucket"], match["key"] or ""


class S3:
    """The buckets of one S3-compatible endpoint, one obstore client each."""

    def __init__(self, endpoint: str | None) -> None:
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self._stores: dict[str, Any] = {}

    def _store(self, bucket: str) -> tuple[Any, Any]:
        if self.endpoint is None:
            raise S3Unavailable(
                "the mmq simulator reads Bedrock batch records from the S3 server named by "
                "MMQ_SIM_S3_ENDPOINT, which is not set"
            )
        try:
            import obstore
            from obstore.store import S3Store
        except ModuleNotFoundError:
            raise S3Unavailable(
                "the mmq simulator reaches S3 with obstore: install mmq[s3] (pip install 'mmq[s3]')"
            ) from None
        if bucket not in self._stores:
            config: dict[str, Any] = {
                "endpoint": self.endpoint,
                "aws_endpoint_url_s3": self.endpoint,
                "virtual_hosted_style_request": False,
                "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            }
            if not os.environ.get("AWS_ACCESS_KEY_ID"):
                config["skip_signature"] = True
            options = {"allow_http": True} if self.endpoint.startswith("http://") else {}
            self._stores[bucket] = S3Store(bucket, config=config, client_options=options)  # type: ignore[arg-type]
        return obstore, self._stores[bucket]

    async def read_jsonl(self, uri: str) -> list[tuple[str, bytes]]:
        """(file name, bytes) of the `.jsonl` object `uri` names, or of each `.jsonl` under the prefix."""
        bucket, key = split(uri)
        obs, store = self._store(bucket)
        try:
            if key.endswith(".jsonl"):
                names = [key]
            else:
                prefix = key.rstrip("/") + "/" if key else ""
                listed = await obs.list(store, prefix=prefix or None).collect_async()
                names = sorted(item["path"] for item in listed if item["path"].endswith(".jsonl"))
            files = []
            for name in names:
                result = await obs.get_async(store, name)
                files.append((name.rsplit("/", 1)[-1], bytes(await result.bytes_async())))
        except S3Unavailable:
            raise
        except Exception as exc:  # obstore's errors (not found, refused, unreachable) share no base
            raise S3Unavailable(f"reading {uri}: {type(exc).__name__}: {str(exc)[:300]}") from None
        return files

    async def write(self, uri: str, data: bytes) -> None:
        bucket, key = split(uri)
        obs, store = self._store(bucket)
        try:
            await obs.put_async(store, key, data)
        except Exception as exc:
            raise S3Unavailable(f"writing {uri}: {type(exc).__name__}: {str(exc)[:300]}") from None
