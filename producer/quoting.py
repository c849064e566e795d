"""Quotes before a run: a batch's lines checked as a submit checks them, their media measured and never
stored, each job priced by the price book (mmq.pricing) — for `mmq quote`, `--dry-run` on `mmq submit`
and the workflow commands, `POST /api/batches?dry_run=true` and `/v1/batches` with `dry_run`.

Why a module of its own: a quote must leave nothing behind (no Redis key, no blob, no provider call) and
yet refuse exactly the lines a submit refuses, with the same messages, so that the quote and the run
agree on which jobs exist. So each line goes through the submit path's own checks (the Producer's
`Intake`, producer/intake.py: the request models, the cache option, blob references, sniffed media types,
the pixel limit, local audio paths where the door allows them), with a store that measures what it is
handed and keeps nothing (the intake has no Redis to write to).

What a quote knows of each job:
- the provider: the first target the routing config (the batch's, else MMQ_DEFAULT_CONFIG) would pick
  for the request, as the worker plans it (its override_params applied, so an overridden model is the
  one priced; a loadbalance drawn from a generator seeded per quote, so one file always quotes the
  same), else MMQ_PROVIDER (openai);
- images: the pixel size read from the header of a data: URL's bytes (after the batch's --max-side or
  MMQ_MEDIA_MAX_SIDE downscale, as the worker's Pillow thumbnail sizes it); an http(s) image is not
  fetched and quotes as "size unknown" (mmq.pricing.rules: the rule's per-image maximum);
- audio: the duration read from the bytes (a data: URL, or a local file from the CLI).

Memory does not grow with the batch: each line is estimated as it is read and only the per-group sums
are kept (producer.quote_sums), plus the first refused lines as examples.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

from mmq.batch_options import BatchOptions
from mmq.contract import MediaPrep
from mmq.media import AUDIO_TYPES, IMAGE_TYPES, sniff
from mmq.pricing import MediaFacts, PriceBook, PriceBookError, QuoteLine, load_book
from mmq.request_models import BLOB_SCHEME, Kind, chat_media_slots
from mmq.routing import RoutingError, all_leaves, effective_params, parse_config, plan
from mmq.settings import Settings
from mmq.storage import BlobNotFound
from producer.batch_lines import BatchLine, CustomIds
from producer.intake import Intake
from producer.options import LineError, check_options, validate_cache
from producer.quote_sums import MAX_LISTED, BatchQuote, Refused, Tally

log = logging.getLogger(__name__)

_YIELD_EVERY = 256  # lines between two turns given to the event loop (an API serves others meanwhile)


# ------------------------------------------------------------------- nothing stored, nothing sent
class _MeasuringStore:
    """A Storage that keeps nothing: what the submit path would store is measured and dropped."""

    url = "quote://measure-only"

    def __init__(self) -> None:
        self.facts: dict[str, Any] = {}  # blob key -> (width, height) or seconds (or None: unreadable)

    async def exists(self, key: str) -> bool:
        return False

    async def put(self, key: str, data: bytes) -> None:
        from mmq.pricing import measure_audio, measure_image

        mime = sniff(data)
        if mime in IMAGE_TYPES:
            self.facts[key] = measure_image(data)
        elif mime in AUDIO_TYPES:
            self.facts[key] = measure_audio(data)

    async def get(self, key: str) -> bytes:
        raise BlobNotFound(key)

    async def delete(self, key: str) -> None:
        return None

    async def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        raise BlobNotFound(key)
        yield b""  # pragma: no cover - makes this an async generator, as the protocol's


def fitted(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """The size the worker sends after downscaling to `max_side` (Pillow's Image.thumbnail arithmetic)."""
    width, height = size
    if not max_side or (width <= max_side and height <= max_side):
        return size
    aspect = width / height
    x, y = max_side, max_side
    if x / y >= aspect:
        x = max(min(math.floor(y * aspect), math.ceil(y * aspect), key=lambda n: abs(aspect - n / y)), 1)
    else:
        y = max(
            min(math.floor(x / aspect), math.ceil(x / aspect), key=lambda n: abs(aspect - x / n) if n else 0),
            1,
        )
    return x, y


# ---------------------------------------------------------------------------------- the quoter
class Quoter:
    """Quotes the lines of one batch with its (already checked) options."""

    def __init__(
        self,
        settings: Settings,
        book: PriceBook,
        *,
        config: dict[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        media: MediaPrep | None = None,
        allow_local_paths: bool = False,
        base_dir: Path | None = None,
    ) -> None:
        """`allow_local_paths` / `base_dir`: as the Producer's (the CLI reads audio files beside the
        input; the HTTP API never reads the server's disk)."""
        self.settings = settings
        self.book = book
        routing = config if config is not None else settings.default_config
        self.routing = parse_config(routing) if routing else None
        self.metadata = dict(metadata or {}) if self.routing else {}
        self.max_side = (media.max_side if media and media.max_side else None) or settings.media_max_side
        self.store = _MeasuringStore()
        self.intake = Intake(
            self.store,  # type: ignore[arg-type]
            settings,
            allow_local_paths=allow_local_paths,
            base_dir=base_dir,
        )
        self._rng = random.Random(0)
        self.invalid = 0
        self.refused: list[Refused] = []

    async def measure(self, line: BatchLine) -> QuoteLine:
        """One line as the quote sees it; raises LineError where a submit would refuse the line."""
        if line.error:
            raise LineError(line.error)
        if line.cache is not None:
            validate_cache(line.cache)
        kind = self.intake.kind_of(line.url)
        self.store.facts.clear()
        request, _ = await self.intake.prepare(kind, line.body or {})
        if kind is Kind.chat:
            slots = chat_media_slots(request)
            facts = MediaFacts(images=tuple(self._image_size(s.value) for s in slots if s.media == "image"))
        elif kind in (Kind.transcription, Kind.translation):
            facts = MediaFacts(audio_seconds=self._known(request.get("file")))
        else:
            facts = MediaFacts()
        provider, priced = self._route(request)
        return QuoteLine(line.url or "", priced, facts, provider)

    def _known(self, ref: Any) -> Any:
        if isinstance(ref, str) and ref.startswith(BLOB_SCHEME):
            return self.store.facts.get(ref[len(BLOB_SCHEME) :])
        return None  # an http(s) image (not fetched), a gs:// one, a template's stored image: unknown

    def _image_size(self, ref: str) -> tuple[int, int] | None:
        size = self._known(ref)
        return fitted(size, self.max_side) if size else None

    def _route(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(provider, request as sent to it) of the routing plan's first target."""
        if self.routing is None:
            return self.settings.provider, request
        try:
            leaf = plan(self.routing, params=request, metadata=self.metadata, rng=self._rng)[0]
        except RoutingError:  # the job would fail unrouted; quote it at the config's first target
            leaf = all_leaves(self.routing)[0]
        return leaf.provider or self.settings.provider, effective_params(request, leaf)

    def _refuse(self, line: BatchLine, error: str) -> None:
        self.invalid += 1
        if len(self.refused) < MAX_LISTED:
            self.refused.append(Refused(line.line_no, line.custom_id, error))

    async def quote(self, lines: Iterable[BatchLine] | AsyncIterable[BatchLine]) -> BatchQuote:
        tally = Tally(self.book)
        seen = 0
        custom_ids = CustomIds()  # a line whose custom_id is already used is refused, as at submit

        async def take(line: BatchLine) -> None:
            nonlocal seen
            custom_ids.check(line)
            try:
                tally.add(await self.measure(line))
            except LineError as e:
                self._refuse(line, str(e))
            seen += 1
            if seen % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

        if isinstance(lines, AsyncIterable):
            async for line in lines:
                await take(line)
        else:
            for line in lines:
                await take(line)
        return BatchQuote(tally.quote(), self.book, self.invalid, self.refused)


def price_book(settings: Settings, prices_file: str | Path | None = None) -> PriceBook:
    """The shipped book with `prices_file` (else MMQ_PRICES_FILE) over it; raises PriceBookError."""
    return load_book(prices_file or settings.prices_file)


async def quote_batch(
    lines: Iterable[BatchLine] | AsyncIterable[BatchLine],
    options: BatchOptions,
    settings: Settings,
    *,
    prices_file: str | Path | None = None,
    allow_local_paths: bool = False,
    base_dir: Path | None = None,
) -> BatchQuote:
    """A batch's quote after the checks its submit makes first: a bad option raises LineError (as a
    submit would refuse the batch), a bad price file PriceBookError."""
    checked = check_options(options, settings)
    book = price_book(settings, prices_file)
    quoter = Quoter(
        settings,
        book,
        config=checked.config,
        metadata=checked.metadata,
        media=checked.media,
        allow_local_paths=allow_local_paths,
        base_dir=base_dir,
    )
    return await quoter.quote(lines)


class QuoteUnavailable(RuntimeError):
    """The server's price book does not load (MMQ_PRICES_FILE): the operator's to fix; logged in full."""


async def quote_request(
    lines: Iterable[BatchLine] | AsyncIterable[BatchLine], options: BatchOptions, settings: Settings
) -> dict[str, Any]:
    """An HTTP door's dry run: BatchQuote.to_dict(). Lines are read as the HTTP API reads them (no
    local paths: the server's disk is never read). Raises LineError for a bad option, QuoteUnavailable
    when the price file does not load (its path and problems go to the log, not to a tenant)."""
    try:
        result = await quote_batch(lines, options, settings)
    except PriceBookError as e:
        log.error("no quote: the price book does not load: %s", e)
        raise QuoteUnavailable(
            "the server's price book (MMQ_PRICES_FILE) does not load; the API's log names the problem"
        ) from None
    return result.to_dict()
