"""Routing configs in Portkey's gateway config schema, parsed strictly: the node models, their checks,
`parse_config`, and the submit-time `check_targets` (providers this build knows, custom hosts the
operator allows, conditions that could match some request). How a config plus a request becomes targets
is `mmq.routing.plan`.

Credentials never live in configs: `api_key` (and AWS keys, `authorization`) anywhere is refused;
configs name a `virtual_key` that workers resolve from their environment or secrets file.
Conditional queries use Portkey's operators ($eq $ne $gt $gte $lt $lte $in $nin $regex $and $or) over
dotted paths into `metadata.*` / `params.*`, checked here (`_check_query`) and matched by the planner.

Numbers and text: batch metadata is always text (OpenAI's batch metadata is a map of strings), so
`{"metadata.priority": {"$gte": 5}}` must match `"7"`. Wherever one side is a JSON number and the other
parses as one (`as_number`: "7", "-2.5", "1e3"; not "NaN", "inf" or "0x10"), the two compare as numbers:
the ordering operators, and $eq / $ne / $in / $nin between a number and numeric text. Two texts that
both parse as numbers order as numbers too ("10" > "9"); two texts stay equal only when they are the same
text ("007" is not "7": identifiers keep their spelling). Booleans never compare with numbers.

Conditions that can never match are refused at submit (`check_conditions`, run by `check_targets`), with
the condition's place and why: `$in: []`, numeric bounds that leave no number (`{"$gt": 10, "$lt": 5}`),
an `$and` with such a part, an `$or` whose every part is one. With `text_metadata=True` (the batch doors,
whose metadata is always text) also: a path below a metadata value (`metadata.a.b`), and metadata
compared for equality with true/false/null, an object or a list.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mmq.catalog import CATALOG
from mmq.endpoints import check_custom_host

_FORBIDDEN_KEYS = frozenset({"api_key", "aws_secret_access_key", "aws_access_key_id", "authorization"})
_FIELD_OPS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$regex"})
_LOGICAL_OPS = frozenset({"$and", "$or"})
_ORDER_OPS = frozenset({"$gt", "$gte", "$lt", "$lte"})
_QUERY_ROOTS = ("metadata", "params")
_LEAF_ONLY = ("provider", "virtual_key", "custom_host", "forward_headers")


class RoutingError(ValueError):
    """A valid config cannot route this request (no condition matched, no healthy target, ...)."""


class _Strict(BaseModel):
    # strict: configs are written by hand, so "3000" for a timeout is a mistake worth reporting.
    # hide_input: an error must not echo a refused api_key into job errors and logs
    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)


class Retry(_Strict):
    attempts: int = Field(ge=0, le=10)
    on_status_codes: list[int] | None = None
    use_retry_after_header: bool = False

    @field_validator("on_status_codes")
    @classmethod
    def _codes(cls, v: list[int] | None) -> list[int] | None:
        return _check_status_codes(v)


class Cache(_Strict):
    mode: Literal["simple", "semantic"]
    max_age: int | None = Field(default=None, gt=0)  # seconds


class RateLimit(_Strict):
    """mmq's extension to the schema: the provider's limits for this target (provider + virtual key +
    model), enforced across every worker. Requests are spaced evenly at the tighter of rps/rpm."""

    rps: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    rpm: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    tpm: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_concurrent: int | None = Field(default=None, gt=0)


class Condition(_Strict):
    query: dict[str, Any]
    then: str

    @field_validator("query")
    @classmethod
    def _query(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_query(v, "query")
        return v


class Strategy(_Strict):
    mode: Literal["single", "fallback", "loadbalance", "conditional"]
    on_status_codes: list[int] | None = None
    conditions: list[Condition] | None = None
    default: str | None = None

    @field_validator("on_status_codes")
    @classmethod
    def _codes(cls, v: list[int] | None) -> list[int] | None:
        return _check_status_codes(v)

    @model_validator(mode="after")
    def _mode_fields(self) -> Strategy:
        if self.on_status_codes is not None and self.mode != "fallback":
            raise ValueError(f"on_status_codes only applies to mode 'fallback', not {self.mode!r}")
        if self.mode == "conditional":
            if not self.conditions:
                raise ValueError("mode 'conditional' needs a non-empty 'conditions' list")
        elif self.conditions is not None or self.default is not None:
            raise ValueError(
                f"'conditions' and 'default' only apply to mode 'conditional', not {self.mode!r}"
            )
        return self


class RoutingConfig(_Strict):
    """One node of a config; the top-level config is a node too."""

    strategy: Strategy | None = None
    targets: list[RoutingConfig] | None = None
    provider: str | None = None
    virtual_key: str | None = None
    name: str | None = None
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    override_params: dict[str, Any] | None = None
    retry: Retry | None = None
    request_timeout: int | None = Field(default=None, gt=0)  # ms, per attempt
    cache: Cache | None = None
    rate_limit: RateLimit | None = None  # mmq extension, inherited like retry
    # mmq extension, inherited like retry: this target's prices in the price-file shape (mmq/pricing),
    # over the operator's book: a negotiated rate, a self-hosted model's cost
    prices: dict[str, Any] | None = None
    # mmq extension, inherited like retry: the input tokens mmq keeps enqueued in this target's provider
    # batches per model (the provider's enqueued-token quota for its key; the batch tier packs within it)
    batch_queue_tokens: int | None = Field(default=None, gt=0)
    custom_host: str | None = None  # base URL
    forward_headers: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: Any) -> Any:
        # checked before field validation so the credential message wins over "extra inputs not permitted"
        if isinstance(data, dict):
            for key, value in data.items():
                if key == "targets":
                    continue  # children are validated (and checked) as nodes themselves
                for bad in _credential_keys({key: value}):
                    raise ValueError(
                        f"raw {bad} is not accepted in configs; name a virtual key "
                        '(virtual_key: "openai-prod") that workers resolve from their environment or '
                        "secrets file"
                    )
        return data

    @model_validator(mode="after")
    def _shape(self) -> RoutingConfig:
        if self.strategy is None:
            if self.targets is not None:
                raise ValueError("'targets' needs a 'strategy' (e.g. {\"mode\": \"fallback\"})")
            if self.provider is None and self.virtual_key is None:
                raise ValueError(
                    "a target needs 'provider' or 'virtual_key' (or a 'strategy' with 'targets')"
                )
            return self
        if not self.targets:
            raise ValueError("a node with a 'strategy' needs a non-empty 'targets' list")
        misplaced = [f for f in _LEAF_ONLY if getattr(self, f) is not None]
        if misplaced:
            raise ValueError(f"{misplaced} belong on leaf targets, not on a node with a 'strategy'")
        if self.strategy.mode == "conditional":
            names = [n for t in self.targets for n in _given_names(t)]
            refs = [c.then for c in self.strategy.conditions or []]
            if self.strategy.default is not None:
                refs.append(self.strategy.default)
            for ref in refs:
                count = names.count(ref)
                if count == 0:
                    raise ValueError(
                        f"conditional names target {ref!r}, but no target below it has that name "
                        f"(names: {sorted(set(names))})"
                    )
                if count > 1:
                    raise ValueError(
                        f"conditional names target {ref!r}, which {count} targets below it share"
                    )
        return self


def parse_config(data: dict[str, Any] | str) -> RoutingConfig:
    """Validate a config given as a dict or JSON text. Raises ValueError (pydantic's ValidationError is
    one) naming what is wrong and where."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            raise ValueError(f"routing config is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"routing config must be a JSON object, got {type(data).__name__}")
    return RoutingConfig.model_validate(data)


def _given_names(node: RoutingConfig) -> Iterator[str]:
    if node.name is not None:
        yield node.name
    for child in node.targets or []:
        yield from _given_names(child)


def _credential_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, inner in value.items():
            # case and dash variants too: "Authorization" in forwarded headers is the same secret
            if isinstance(key, str) and key.lower().replace("-", "_") in _FORBIDDEN_KEYS:
                yield key
            yield from _credential_keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _credential_keys(inner)


def _check_status_codes(codes: list[int] | None) -> list[int] | None:
    for code in codes or []:
        if not 100 <= code <= 599:
            raise ValueError(f"{code} is not an HTTP status code")
    return codes


def _check_query(query: Any, where: str) -> None:
    """Parse-time check of a conditional query, so a typo fails at submit, not mid-batch."""
    if not isinstance(query, dict):
        raise ValueError(f"{where}: a query must be an object, got {type(query).__name__}")
    for key, value in query.items():
        if key.startswith("$"):
            if key in _FIELD_OPS:
                raise ValueError(
                    f"{where}: {key} compares a field; put it under a field key, e.g. "
                    f'{{"metadata.tier": {{"{key}": ...}}}}'
                )
            if key not in _LOGICAL_OPS:
                raise ValueError(
                    f"{where}: unknown operator {key!r}; valid: {sorted(_FIELD_OPS | _LOGICAL_OPS)}"
                )
            if not isinstance(value, list) or not value:
                raise ValueError(f"{where}.{key}: takes a non-empty list of query objects")
            for i, sub in enumerate(value):
                _check_query(sub, f"{where}.{key}[{i}]")
            continue
        root, _, rest = key.partition(".")
        if root not in _QUERY_ROOTS or not rest or "" in rest.split("."):
            raise ValueError(f"{where}: field {key!r} must be a dotted path under 'metadata.' or 'params.'")
        if not _is_op_object(value):
            continue  # a plain value means $eq
        for op, arg in value.items():
            at = f"{where}.{key}.{op}"
            if not op.startswith("$"):
                raise ValueError(f"{at}: operators and plain keys cannot be mixed in one field object")
            if op in _LOGICAL_OPS:
                raise ValueError(f"{at}: {op} combines query objects; it cannot sit under a field")
            if op not in _FIELD_OPS:
                raise ValueError(f"{at}: unknown operator {op!r}; valid: {sorted(_FIELD_OPS | _LOGICAL_OPS)}")
            if op in ("$in", "$nin") and not isinstance(arg, list):
                raise ValueError(f"{at}: takes a list")
            if op == "$regex":
                if not isinstance(arg, str):
                    raise ValueError(f"{at}: takes a string pattern")
                try:
                    re.compile(arg)
                except re.error as e:
                    raise ValueError(f"{at}: invalid regex {arg!r}: {e}") from e
            if op in _ORDER_OPS and not (_is_number(arg) or isinstance(arg, str)):
                raise ValueError(f"{at}: takes a number or a string")


def _is_op_object(value: Any) -> bool:
    return isinstance(value, dict) and any(isinstance(k, str) and k.startswith("$") for k in value)


# --- query evaluation ------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


# decimal text as people write numbers: no hex, no "inf"/"nan", no digit separators
_NUMERIC_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER_TEXT = re.compile(r"[+-]?\d+")
_MAX_NUMERIC_TEXT = 64  # longer text is not a number anyone routes on (and int() of 5000 digits raises)


def as_number(value: Any) -> int | float | None:
    """`value` as a number when it is one (not a bool) or text that reads as a finite decimal number
    ("7", " -2.5 ", "1e3"); None otherwise. Integers stay ints, so large ids compare exactly."""
    if _is_number(value):
        return value  # type: ignore[no-any-return]
    if not isinstance(value, str) or len(value) > _MAX_NUMERIC_TEXT:
        return None
    text = value.strip()
    if _INTEGER_TEXT.fullmatch(text):
        return int(text)
    if _NUMERIC_TEXT.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else None
    return None


def check_targets(
    config: RoutingConfig, custom_hosts: Iterable[str] = (), *, text_metadata: bool = False
) -> None:
    """Submit-time check: every provider a config names has an adapter in this build, every
    custom_host is under a base URL the operator allows (`custom_hosts`: MMQ_CUSTOM_HOSTS and the worker's
    own MMQ_OPENAI_BASE_URL), and every condition can match some request (`check_conditions`;
    `text_metadata`: the metadata is known to be text, as a batch's always is). Raises ValueError naming
    the target or the condition."""
    allowed = list(custom_hosts)
    stack = [config]
    while stack:
        node = stack.pop()
        stack.extend(node.targets or [])
        if node.strategy is None and node.provider and node.provider not in CATALOG:
            raise ValueError(
                f"provider {node.provider!r} has no adapter in this build (have: {sorted(CATALOG)})"
            )
        if node.custom_host is not None:
            check_custom_host(node.custom_host, allowed, target=f"target {node.name or node.provider!r}")
        if node.prices is not None:
            _check_prices(node.prices, f"target {node.name or node.provider or 'node'!r}")
    check_conditions(config, text_metadata=text_metadata)


def _check_prices(prices: dict[str, Any], where: str) -> None:
    """A target's `prices` must be a valid price-file document (refused at submit, with the reason)."""
    from mmq.pricing.book import PriceBookError, default_book  # the book's YAML only when a config has prices

    try:
        default_book().with_overrides(prices, label=where)
    except PriceBookError as e:
        raise ValueError(f"{where}: prices: {e}") from None


# --- conditions that can never match ---------------------------------------------------------------

_POSITIVE_OPS = frozenset({"$eq", "$in", "$regex"}) | _ORDER_OPS  # need a value that is there


def check_conditions(config: RoutingConfig, *, text_metadata: bool = False) -> None:
    """Refuses a config with a condition no request can match: such a branch is a typo or a type mix-up
    that would otherwise send every job to the default, silently. Raises ValueError naming the condition
    (its place in the config, its target and its query) and why. `text_metadata`: metadata values are
    text (every batch door), so conditions needing another JSON type there are refused too."""
    stack: list[tuple[RoutingConfig, str]] = [(config, "")]
    while stack:
        node, path = stack.pop()
        for i, child in enumerate(node.targets or []):
            stack.append((child, f"{path}targets[{i}]."))
        if node.strategy is None:
            continue
        for i, condition in enumerate(node.strategy.conditions or []):
            why = _never(condition.query, text_metadata)
            if why is not None:
                raise ValueError(
                    f"{path}strategy.conditions[{i}] (then {condition.then!r}) can never match: {why} "
                    f"(query {json.dumps(condition.query, separators=(',', ':'))})"
                )


def _never(query: dict[str, Any], text_metadata: bool) -> str | None:
    """Why no request can satisfy `query`; None when some request could."""
    for key, value in query.items():
        if key == "$and":
            for i, sub in enumerate(value):
                if (why := _never(sub, text_metadata)) is not None:
                    return f"$and[{i}]: {why}"
        elif key == "$or":
            whys = [_never(sub, text_metadata) for sub in value]
            if all(why is not None for why in whys):
                return "$or: none of its queries can match (" + "; ".join(f"{w}" for w in whys) + ")"
        elif (why := _never_field(key, value, text_metadata)) is not None:
            return f"{key}: {why}"
    return None


def _never_field(path: str, value: Any, text_metadata: bool) -> str | None:
    ops: dict[str, Any] = value if _is_op_object(value) else {"$eq": value}
    if ops.get("$in") == []:
        return "$in an empty list matches no value"
    if (why := _empty_range(ops)) is not None:
        return why
    if text_metadata and path.startswith("metadata.") and _POSITIVE_OPS.intersection(ops):
        if "." in path[len("metadata.") :]:
            return "batch metadata values are text, so nothing lies below one"
        if "$eq" in ops and not _may_equal_text(ops["$eq"]):
            return f"batch metadata values are text, never {json.dumps(ops['$eq'])}"
        if "$in" in ops and not any(_may_equal_text(x) for x in ops["$in"]):
            return f"batch metadata values are text, and $in lists none ({json.dumps(ops['$in'])})"
    return None


def _may_equal_text(value: Any) -> bool:
    return isinstance(value, str) or _is_number(value)  # numbers equal numeric text


def _empty_range(ops: dict[str, Any]) -> str | None:
    """Bounds that no number meets. Once one bound is a JSON number, only numbers and numeric text can
    pass it, and every bound that reads as a number then compares as one."""
    bounded = ("$eq", "$gt", "$gte", "$lt", "$lte")
    if not any(_is_number(ops.get(op)) for op in bounded):
        return None
    at = {op: as_number(ops[op]) for op in bounded if op in ops}
    lows = [(v, op == "$gt") for op in ("$gt", "$gte", "$eq") if (v := at.get(op)) is not None]
    highs = [(v, op == "$lt") for op in ("$lt", "$lte", "$eq") if (v := at.get(op)) is not None]
    if not lows or not highs:
        return None
    low, low_strict = max(lows, key=lambda b: (b[0], b[1]))
    high, high_strict = min(highs, key=lambda b: (b[0], not b[1]))
    if low > high or (low == high and (low_strict or high_strict)):
        shown = ", ".join(f"{op} {json.dumps(ops[op])}" for op in bounded if op in ops)
        return f"no number meets {shown}"
    return None
