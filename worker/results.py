"""Turn a provider answer into stored results: the OpenAI-shaped body as JSON, media as files.

Media files and the body are content-addressed blobs. The body names its files `mmq-file:<n>`, which
readers turn into the reading job's API path (`/api/jobs/{job_id}/files/{n}`): results never embed
megabytes of base64, and a body does not depend on the job that made it, so a cache hit shares it as is.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import httpx

from mmq.contract import JobRecord, JobResult, ResultFile
from mmq.errors import ProviderError
from mmq.media import sniff
from mmq.request_models import Kind
from mmq.result_refs import file_ref
from mmq.storage import Storage, put_blob
from worker.providers.base import ProviderResponse

MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
TEXT_TYPES = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}


async def _download(client: httpx.AsyncClient, url: str) -> bytes:
    # Provider-issued image URLs (they expire after an hour, so we keep the bytes).
    async with client.stream("GET", url) as resp:
        if resp.status_code != 200:
            raise ProviderError(
                f"could not download generated image ({resp.status_code})",
                status=resp.status_code,
                retryable=resp.status_code >= 500,
            )
        chunks, size = [], 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > MAX_DOWNLOAD_BYTES:
                raise ProviderError("generated image exceeds the download cap", retryable=False)
            chunks.append(chunk)
    return b"".join(chunks)


async def _store_file(storage: Storage, data: bytes, fallback_type: str) -> ResultFile:
    content_type = sniff(data) or fallback_type
    key = await put_blob(storage, data, content_type)
    return ResultFile(key=key, content_type=content_type, bytes=len(data))


async def _image_body(
    job: JobRecord, resp: ProviderResponse, storage: Storage, client: httpx.AsyncClient
) -> tuple[dict[str, Any], list[ResultFile]]:
    body = dict(resp.body or {})
    files: list[ResultFile] = []
    data_out = []
    for n, item in enumerate(body.get("data") or []):
        if item.get("b64_json"):
            try:
                raw = base64.b64decode(item["b64_json"], validate=True)
            except (binascii.Error, ValueError):
                raise ProviderError("image data is not valid base64", retryable=True) from None
        elif item.get("url"):
            raw = await _download(client, item["url"])
        else:
            raise ProviderError("image item has neither b64_json nor url", retryable=True)
        if not (sniff(raw) or "").startswith("image/"):
            raise ProviderError("generated image bytes are not an image", retryable=True)
        files.append(await _store_file(storage, raw, "image/png"))
        out = {k: v for k, v in item.items() if k not in ("b64_json", "url")}
        data_out.append({"url": file_ref(n), **out})
    if not files:
        raise ProviderError("image response has no images", retryable=True)
    body["data"] = data_out
    return body, files


async def store_result(
    job: JobRecord,
    request: dict[str, Any],
    resp: ProviderResponse,
    storage: Storage,
    client: httpx.AsyncClient,
) -> JobResult:
    files: list[ResultFile] = []
    if job.kind is Kind.image:
        body, files = await _image_body(job, resp, storage, client)
    elif job.kind is Kind.speech:
        assert resp.content is not None
        files.append(
            await _store_file(storage, resp.content, resp.content_type or "application/octet-stream")
        )
        body = {
            "object": "audio.speech",
            "url": file_ref(0),
            "content_type": files[0].content_type,
            "bytes": files[0].bytes,
            "requested_format": request.get("response_format", "mp3"),
        }
    elif resp.text is not None:  # transcription as text / srt / vtt
        fmt = request.get("response_format", "text")
        content_type = TEXT_TYPES.get(fmt, "text/plain")  # text is never sniffed: "BM..." is not a bitmap
        raw = resp.text.encode()
        files.append(
            ResultFile(
                key=await put_blob(storage, raw, content_type), content_type=content_type, bytes=len(raw)
            )
        )
        body = {"text": resp.text, "format": fmt, "url": file_ref(0)}
    else:
        body = resp.body or {}
    # an answer carries its own id: never seen before, so no existence check before writing it
    answer = json.dumps(body, ensure_ascii=False).encode()
    body_key = await put_blob(storage, answer, "application/json", probably_new=True)
    return JobResult(body_key=body_key, files=files)
