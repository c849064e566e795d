"""The S3 side of Bedrock batch inference: where a pack's records are put and its answers are read.

Why apart from bedrock.py: Bedrock reads a batch's input from S3 and writes its output there
(../shared/reference/native_batch.md §6), so the worker needs an object store beside the control plane,
and that store is the operator's, not the target's: the S3 location `MMQ_BEDROCK_BATCH_S3_URI`
(`s3://bucket/prefix`, with `?endpoint_url=` / `?region=` as MMQ_STORAGE_URL takes them) written and
read with the workers' own AWS_* credentials, through mmq's S3 storage backend (mmq/storage/s3.py:
obstore, the `s3` extra). The IAM role Bedrock uses to reach it is the operator's too
(MMQ_BEDROCK_BATCH_ROLE_ARN).

What is kept where, under the prefix, per provider batch (its job name, one per pack):
    {name}/input/records.jsonl                  the records, uploaded before the create
    {name}/output/{job id}/records.jsonl.out    Bedrock's answers, one per record it ran
    {name}/output/{job id}/manifest.json.out    its record and token totals
An `s3://` URI a job hands back is only read when it lies under the operator's bucket and prefix
(`key_of`): nothing else is ever listed, read or deleted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from mmq.errors import ProviderError
from mmq.extras import MissingExtra
from mmq.storage import BlobNotFound, StorageKeyError

PROVIDER = "bedrock"
INPUT_FILE = "records.jsonl"


def _misconfigured(message: str) -> ProviderError:
    return ProviderError(message, code="target_misconfigured", retryable=False, provider=PROVIDER)


def _s3_error(exc: Exception) -> ProviderError:
    # a store that does not answer (or refuses for now) may answer later: the engine tries again
    return ProviderError(
        f"S3 (MMQ_BEDROCK_BATCH_S3_URI): {type(exc).__name__}: {str(exc)[:300]}",
        code="s3_error",
        retryable=True,
        provider=PROVIDER,
    )


class BatchBucket:
    """The operator's S3 location for Bedrock batch records (keys are relative to its prefix)."""

    def __init__(self, uri: str) -> None:
        try:
            from mmq.storage.s3 import S3Location, S3Storage, S3UrlError
        except MissingExtra as e:
            raise _misconfigured(f"Bedrock batch inference keeps its records in S3: {e}") from None
        try:
            self.location = S3Location.parse(uri)
        except S3UrlError as e:
            raise _misconfigured(f"MMQ_BEDROCK_BATCH_S3_URI: {e}") from None
        self.storage = S3Storage(self.location)
        self._root = "/".join(p for p in (self.location.bucket, self.location.prefix) if p)

    def uri(self, key: str) -> str:
        """The `s3://bucket/prefix/key` Bedrock is given (no endpoint: Bedrock reaches S3 itself)."""
        return f"s3://{self._root}/{key}"

    def key_of(self, uri: Any) -> str | None:
        """The key (under the prefix) of an `s3://` URI, or None when it is not under the operator's
        bucket and prefix."""
        if not isinstance(uri, str) or not uri.startswith(f"s3://{self._root}/"):
            return None
        key = uri[len(f"s3://{self._root}/") :].strip("/")
        try:
            self.storage.path(key)  # validated: no `..`, no empty segment
        except StorageKeyError:
            return None
        return key

    async def put(self, key: str, data: bytes) -> None:
        try:
            await self.storage.put(key, data)
        except Exception as e:  # obstore's errors have no common base worth naming
            raise _s3_error(e) from e

    async def delete(self, key: str) -> None:
        try:
            await self.storage.delete(key)
        except Exception as e:
            raise _s3_error(e) from e

    async def lines(self, key: str) -> AsyncIterator[bytes]:
        """Each line of an object, as it streams in; BlobNotFound when there is no such object."""
        buffer = b""
        try:
            async for chunk in self.storage.stream(key):
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    if line.strip():
                        yield line
        except BlobNotFound:
            raise
        except Exception as e:
            raise _s3_error(e) from e
        if buffer.strip():
            yield buffer
