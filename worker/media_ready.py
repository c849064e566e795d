"""Media made ready for one provider, before its adapter runs: fetch what it cannot fetch, convert what it
does not accept, downscale what is over its limits, and refuse — with a per-job error naming the part —
what cannot be made to fit. Nothing is dropped silently.

Runs per route (a fallback may go from a provider that takes URLs to one that needs bytes), on a copy
of the request, after `prepare` has turned stored blobs into data: URLs and verified every image.

gs:// Cloud Storage URIs are read by Vertex AI itself (MediaRules.gcs_uris): they go to such a target as
they are, and fail the job at any other target (InvalidJob naming the part; a fallback moves on to the
next target, the last one fails the job). The worker never fetches a gs:// object, so it neither
downscales nor converts one: per-job downscaling options do not apply to them.
"""

from __future__ import annotations

import asyncio
import copy
import io
import warnings
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image

from mmq.errors import InvalidJob
from mmq.fetch import FetchedMedia, FetchPolicy, fetch_media
from mmq.media import (
    DEFAULT_IMAGE_MAX_PIXELS,
    MediaError,
    declared_type,
    open_image,
    parse_data_url,
    sniff,
    to_data_url,
)
from mmq.request_models import chat_media_slots, is_gcs_uri
from worker.prepare import ImageFacts
from worker.providers.base import MediaRules

LOW_DETAIL_SIDE = 512  # what OpenAI's `detail: low` sends to the model


@dataclass(frozen=True)
class MediaOptions:
    """Per-job (or batch) proactive downscaling, and how the worker may fetch remote media."""

    max_side: int | None = None
    max_bytes: int | None = None
    fetch: FetchPolicy = field(default_factory=FetchPolicy)
    prefetched: dict[str, FetchedMedia] = field(default_factory=dict)  # fetched for the cache key already
    # images prepare checked, by their data: URL: one that fits goes as it is, never decoded again
    known: dict[str, ImageFacts] = field(default_factory=dict)
    max_pixels: int = DEFAULT_IMAGE_MAX_PIXELS  # images declaring more are refused before any decode


@dataclass
class MediaReport:
    """What the media stage did, for the job's usage record."""

    fetched: int = 0
    converted: int = 0
    downscaled: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def as_usage(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v}


def _reencode(data: bytes, max_side: int | None, target_mime: str, max_pixels: int, where: str) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # the guard stays on
        with open_image(data, max_pixels, where) as img:
            img.seek(0)  # an animated GIF: its first frame, as providers that take GIFs do
            img = img.convert(
                "RGBA" if target_mime == "image/png" and img.mode in ("RGBA", "LA", "P") else "RGB"
            )
            if max_side and max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            if target_mime == "image/jpeg":
                img.convert("RGB").save(out, "JPEG", quality=88, optimize=True)
            else:
                img.save(out, "PNG", optimize=True)
            return out.getvalue()


def _size(data: bytes, max_pixels: int, where: str) -> tuple[int, int]:
    """The declared size, from the header only; refuses an image over the pixel limit."""
    with open_image(data, max_pixels, where) as img:
        return img.size


def _limits(rules: MediaRules, opts: MediaOptions, detail: str | None) -> tuple[int | None, int | None]:
    """(longest side, bytes) an image may have for this provider and job; None where there is no limit."""
    side_limits = [s for s in (rules.max_image_side, opts.max_side) if s]
    if detail == "low" and not rules.honours_detail:
        side_limits.append(LOW_DETAIL_SIDE)  # no low-detail switch at this provider: send fewer pixels
    byte_limits = [b for b in (rules.max_image_bytes, opts.max_bytes) if b]
    return (min(side_limits) if side_limits else None), (min(byte_limits) if byte_limits else None)


def _fits(facts: ImageFacts, rules: MediaRules, opts: MediaOptions, detail: str | None) -> bool:
    """Whether an image goes to this provider as it is, judged from what prepare learned of it."""
    max_side, max_bytes = _limits(rules, opts, detail)
    return (
        facts.mime in rules.image_types
        and not (max_side and max(facts.width, facts.height) > max_side)
        and (max_bytes is None or facts.nbytes <= max_bytes)
    )


async def _fit_image(
    data: bytes, where: str, rules: MediaRules, opts: MediaOptions, detail: str | None, report: MediaReport
) -> tuple[bytes, str]:
    mime = sniff(data) or "application/octet-stream"
    width, height = _size(data, opts.max_pixels, where)
    max_side, max_bytes = _limits(rules, opts, detail)

    needs_convert = mime not in rules.image_types
    needs_shrink = bool(max_side and max(width, height) > max_side)
    if not needs_convert and not needs_shrink and (max_bytes is None or len(data) <= max_bytes):
        return data, mime
    # PNG keeps lossless inputs lossless; JPEG where the source was lossy or PNG will not fit
    target = "image/png" if mime in ("image/png", "image/gif", "image/bmp", "image/tiff") else "image/jpeg"
    if target not in rules.image_types:
        target = next(iter(sorted(rules.image_types)))
    out = await asyncio.to_thread(_reencode, data, max_side, target, opts.max_pixels, where)
    if max_bytes and len(out) > max_bytes and "image/jpeg" in rules.image_types:
        # still too big: JPEG, then smaller sides, until it fits (or give up below 256 px)
        side = max_side or max(width, height)
        while len(out) > max_bytes and side >= 256:
            out = await asyncio.to_thread(_reencode, data, side, "image/jpeg", opts.max_pixels, where)
            target = "image/jpeg"
            side = int(side * 0.75)
    if max_bytes and len(out) > max_bytes:
        raise InvalidJob(
            f"{where}: image of {len(data)} bytes cannot be brought under the provider's "
            f"{max_bytes}-byte limit",
            type="invalid_media",
        )
    report.converted += needs_convert
    report.downscaled += needs_shrink or len(out) < len(data)
    return out, target


async def ready_for(
    request: dict[str, Any],
    rules: MediaRules,
    provider: str,
    client: httpx.AsyncClient,
    opts: MediaOptions | None = None,
    *,
    provider_fetches: bool = False,
) -> tuple[dict[str, Any], MediaReport]:
    """The chat `request` with media this provider accepts as they are: `request` itself when every part
    already fits, else a copy (`request` is never changed: a fallback target gets its own). `provider_
    fetches`: the target is a provider's public endpoint that may be handed http(s) URLs (worker.routes
    .fetches_urls_itself); otherwise the worker fetches them through the SSRF guard."""
    opts = opts or MediaOptions()
    report = MediaReport()
    changes: dict[int, str] = {}  # slot position → its new data: URL (copied only if there is one)
    slots = list(chat_media_slots(request))
    images = [s for s in slots if s.media == "image"]
    if rules.max_images is not None and len(images) > rules.max_images:
        raise InvalidJob(
            f"{len(images)} images in one request; {provider} takes at most {rules.max_images}",
            type="invalid_media",
        )
    for position, slot in enumerate(slots):
        value = slot.value
        if is_gcs_uri(value):
            if rules.gcs_uris:
                continue  # Vertex reads it from Cloud Storage itself
            raise InvalidJob(
                f"{slot.where}: {value} is a Cloud Storage URI, which only a Vertex AI target (provider "
                f"'vertex') reads; {provider} cannot, and mmq never fetches gs:// objects itself",
                type="invalid_media",
            )
        remote = value.startswith(("http://", "https://"))
        if remote and rules.remote_urls and provider_fetches and not (opts.max_side or opts.max_bytes):
            continue  # the provider fetches it itself
        facts = opts.known.get(value) if slot.media == "image" else None
        if facts is not None and _fits(facts, rules, opts, slot.holder.get("detail")):
            report.bytes_in += facts.nbytes
            report.bytes_out += facts.nbytes
            continue  # checked by prepare and fit as it is: no second decode, no second base64
        if remote:
            fetched = opts.prefetched.get(value) or await fetch_media(client, value, opts.fetch)
            data = fetched.data
            report.fetched += 1
        else:
            try:
                data = parse_data_url(value)[1]
            except MediaError as e:
                raise InvalidJob(f"{slot.where}: {e}", type="invalid_media") from None
        original = data
        report.bytes_in += len(data)
        if slot.media == "image":
            detail = slot.holder.get("detail")
            try:
                data, mime = await _fit_image(data, slot.where, rules, opts, detail, report)
            except InvalidJob:
                raise
            except Exception as e:  # Pillow's many error types, the bomb guard included
                raise InvalidJob(
                    f"{slot.where}: image could not be decoded ({e})", type="invalid_media"
                ) from None
        else:
            mime = sniff(data) or declared_type(value) or "application/octet-stream"
            if mime.startswith("text/") and mime not in rules.document_types:
                mime = "text/plain"  # CSV / Markdown are text to a provider that takes plain text
            if mime not in rules.document_types:
                raise InvalidJob(
                    f"{slot.where}: {provider} does not take {mime} documents "
                    f"(takes: {', '.join(sorted(rules.document_types))})",
                    type="invalid_media",
                )
        report.bytes_out += len(data)
        if remote or data is not original or mime != declared_type(value):
            changes[position] = to_data_url(data, mime)  # untouched media keep their data: URL
    if not changes:
        return request, report
    out = copy.deepcopy(request)  # media strings are shared, not copied: the cost is the nesting
    for position, slot in enumerate(chat_media_slots(out)):
        if position in changes:
            slot.set(changes[position])
    return out, report
