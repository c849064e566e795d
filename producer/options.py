"""The options a submission takes (routing config, media downscaling, cache, priority, window, webhook),
each checked once, at submit, with a message naming the option: a bad one refuses the whole batch before
any job exists, never at 3 a.m. in a worker. `LineError` is the error every producer check raises.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from mmq.batch_options import BatchOptions
from mmq.contract import CacheOptions, Priority
from mmq.fetch import FetchRefused, check_url
from mmq.routing import check_targets, parse_config
from mmq.settings import Settings


class LineError(ValueError):
    """A request that cannot become a job; the message names the field and the cause."""


def allowed_hosts(settings: Settings) -> list[str]:
    """The base URLs a config's custom_host may name: the operator's list and the worker's own URL."""
    return [*settings.custom_hosts, settings.openai_base_url]


def validate_config(
    config: dict[str, Any] | str | None, custom_hosts: Iterable[str] = (), *, text_metadata: bool = False
) -> dict[str, Any] | None:
    """A routing config checked now, at submit time, never at 3 a.m. in a worker. Raises LineError.
    `custom_hosts`: the base URLs a target's custom_host may use (allowed_hosts); none by default.
    `text_metadata`: the metadata conditions will read is text (a batch's), so a condition comparing it
    to true/false/null, an object or a list, or reaching below a value, can never match: refused."""
    if config is None:
        return None
    try:
        parsed = parse_config(config)
        check_targets(parsed, custom_hosts, text_metadata=text_metadata)
    except ValidationError as e:
        raise LineError(f"routing config: {format_validation_error(e)}") from None
    except ValueError as e:
        raise LineError(f"routing config: {e}") from None
    return parsed.model_dump(mode="json", exclude_none=True)


def format_validation_error(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"] if not str(x).startswith("function-"))
        parts.append(f"{loc or 'body'}: {err['msg']}")
    return "; ".join(parts)


def check_window(
    not_before: float | None,
    deadline: float | None,
    webhook_url: str | None,
    webhook_allow_hosts: Iterable[str] = (),
) -> None:
    """A batch's window and webhook, against the clock and the operator's receivers."""
    now = time.time()
    if deadline is not None and deadline <= now:
        raise LineError("deadline: already in the past")
    if not_before is not None and deadline is not None and deadline <= not_before:
        raise LineError("deadline: must be after not_before (the window would be empty)")
    if webhook_url is not None:
        try:
            check_url(webhook_url, webhook_allow_hosts)
        except FetchRefused as e:
            raise LineError(
                f"webhook_url: {e.reason} (internal receivers must be listed in MMQ_WEBHOOK_ALLOW_HOSTS)"
            ) from None


def validate_cache(cache: CacheOptions | dict[str, Any] | bool | str | None) -> CacheOptions | None:
    try:
        return CacheOptions.parse(cache)
    except ValueError as e:  # pydantic's ValidationError and json's JSONDecodeError both are
        raise LineError(f"cache options: {e}") from None


_LABELS = {"config": "routing config", "media": "media options", "cache": "cache options"}


def parse_options(fields: BatchOptions | Mapping[str, Any] | None = None, **more: Any) -> BatchOptions:
    """A batch's options from an entry point's fields (a BatchOptions, a mapping such as
    BatchOptions.from_query's, and/or keywords), parsed once; None means the default. Raises LineError
    naming the option."""
    if isinstance(fields, BatchOptions):
        if not more:
            return fields
        fields = fields.model_dump(exclude_unset=True)
    data = {k: v for k, v in {**(fields or {}), **more}.items() if v is not None}
    try:
        return BatchOptions.model_validate(data)
    except ValidationError as e:
        loc = e.errors()[0]["loc"]
        field = str(loc[0]) if loc else ""
        if field == "priority":
            allowed = [p.value for p in Priority]
            raise LineError(f"priority must be one of {allowed}, got {data.get('priority')!r}") from None
        if field in ("not_before", "deadline"):
            raise LineError(f"{field}: epoch seconds expected") from None
        raise LineError(f"{_LABELS.get(field, field or 'options')}: {format_validation_error(e)}") from None


def check_options(options: BatchOptions, settings: Settings, *, single_job: bool = False) -> BatchOptions:
    """The checks that need the operator's settings and the clock, made once per batch: the routing
    config (its schema, providers and custom hosts), the window and the webhook. Returns the options
    with the config in its checked form. `single_job`: a job outside any batch, whose metadata may be
    any JSON (a batch's is text)."""
    config = validate_config(options.config, allowed_hosts(settings), text_metadata=not single_job)
    check_window(options.not_before, options.deadline, options.webhook_url, settings.webhook_allow_hosts)
    return options.model_copy(update={"config": config})
