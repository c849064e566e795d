"""Routing configs in Portkey's gateway config schema: strict parsing, and turning a config plus one
request into the ordered list of provider targets to try. Pure logic (no I/O); the worker wires it in.

A config is a tree of nodes. A node with a `strategy` routes to its `targets`; a node without one is a
leaf target (it names a `provider` and/or a `virtual_key`). The top level is a node too, so a bare leaf
is a valid config.

Inheritance (as implemented by `plan`):
- `override_params` merge down the tree: each node's dict is deep-merged over what its ancestors set,
  the child winning key by key; nested dicts merge recursively, any other value (lists included) is
  replaced whole. `ResolvedTarget.override_params` is the fully merged result.
- `retry`, `request_timeout`, `cache` and `rate_limit` come from the nearest node on the path (the leaf itself
  first) that sets them; a child's object replaces the ancestor's whole, it is never merged.
- `strategy.on_status_codes` belongs to the fallback node it sits on: a leaf's `fallback_on` is the
  set from its nearest fallback ancestor (None when that node does not set it = the worker's default
  policy; None too when the leaf has no fallback ancestor).
- `weight` and `name` are never inherited: weight matters only to a loadbalance parent, and a name
  identifies one node.
- A conditional's `then`/`default` may name any node below it. The nodes between the conditional and
  the named one still pass down their override_params/retry/request_timeout/cache, but their
  strategies are skipped (the condition already chose).

Credentials never live in configs: `api_key` (and AWS keys, `authorization`) anywhere is refused;
configs name a `virtual_key` that workers resolve from their environment or secrets file.

Conditional queries use Portkey's operators ($eq $ne $gt $gte $lt $lte $in $nin $regex $and $or) over
dotted paths into `metadata.*` / `params.*`; see `_check_query` (parse time) and `_matches` (plan time).
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
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


@dataclass(frozen=True)
class ResolvedTarget:
    provider: str  # "" when only a virtual_key is given: the virtual key then decides the provider
    virtual_key: str | None
    name: str  # given name, or a stable generated one like "targets[1].targets[0]"
    override_params: dict[str, Any]  # fully merged
    retry: Retry | None
    request_timeout_ms: int | None
    cache: Cache | None
    custom_host: str | None
    fallback_on: frozenset[int] | None  # codes that allow moving on; None = default policy
    forward_headers: tuple[str, ...] = ()
    rate_limit: RateLimit | None = None


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


def plan(
    config: RoutingConfig,
    *,
    params: dict[str, Any],
    metadata: dict[str, Any],
    rng: random.Random | None = None,
    healthy: Callable[[str], bool] | None = None,
) -> list[ResolvedTarget]:
    """The ordered leaf targets to try for one request. Raises RoutingError when nothing can route it."""
    planner = _Planner(
        doc={"metadata": metadata, "params": params},
        rng=rng or random.Random(),
        healthy=healthy or (lambda _name: True),
    )
    return planner.plan(config, "", _Inherited())


def all_leaves(config: RoutingConfig) -> list[ResolvedTarget]:
    """Every leaf of the config with its inherited settings, whatever the strategies would choose (for
    looking up the health of every target a plan might pick)."""
    out: list[ResolvedTarget] = []

    def walk(node: RoutingConfig, path: str, inherited: _Inherited) -> None:
        ctx = inherited.enter(node)
        if node.strategy is None:
            out.append(_leaf(node, path, ctx))
        for i, child in enumerate(node.targets or []):
            walk(child, _child(path, i), ctx)

    walk(config, "", _Inherited())
    return out


def effective_params(params: dict[str, Any], target: ResolvedTarget) -> dict[str, Any]:
    """The request params to send to `target`: its override_params deep-merged over the request's."""
    return _deep_merge(params, target.override_params)


# --- planning ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inherited:
    override_params: dict[str, Any] | None = None
    retry: Retry | None = None
    request_timeout_ms: int | None = None
    cache: Cache | None = None
    fallback_on: frozenset[int] | None = None
    rate_limit: RateLimit | None = None

    def enter(self, node: RoutingConfig) -> _Inherited:
        params = self.override_params
        if node.override_params:
            params = _deep_merge(params or {}, node.override_params)
        return replace(
            self,
            override_params=params,
            retry=node.retry if node.retry is not None else self.retry,
            request_timeout_ms=node.request_timeout
            if node.request_timeout is not None
            else self.request_timeout_ms,
            cache=node.cache if node.cache is not None else self.cache,
            rate_limit=node.rate_limit if node.rate_limit is not None else self.rate_limit,
        )


@dataclass
class _Planner:
    doc: dict[str, Any]
    rng: random.Random
    healthy: Callable[[str], bool]

    def plan(self, node: RoutingConfig, path: str, inherited: _Inherited) -> list[ResolvedTarget]:
        ctx = inherited.enter(node)
        if node.strategy is None:
            return [_leaf(node, path, ctx)]
        targets = node.targets or []
        mode = node.strategy.mode
        if mode == "single":
            return self.plan(targets[0], _child(path, 0), ctx)
        if mode == "fallback":
            codes = node.strategy.on_status_codes
            ctx = replace(ctx, fallback_on=None if codes is None else frozenset(codes))
            return [t for i, child in enumerate(targets) for t in self.plan(child, _child(path, i), ctx)]
        if mode == "loadbalance":
            i = self._pick(targets, path)
            return self.plan(targets[i], _child(path, i), ctx)
        return self._conditional(node, path, ctx)

    def _pick(self, targets: list[RoutingConfig], path: str) -> int:
        eligible = [
            i
            for i, child in enumerate(targets)
            if any(self.healthy(n) for n in _leaf_names(child, _child(path, i)))
        ]
        where = path or "top-level"
        if not eligible:
            raise RoutingError(f"loadbalance at {where}: no target has a healthy provider")
        total = sum(targets[i].weight for i in eligible)
        if total <= 0:
            raise RoutingError(f"loadbalance at {where}: every healthy target has weight 0")
        point = self.rng.random() * total
        for i in eligible:
            if targets[i].weight == 0:
                continue  # weight 0 is "never", even when point lands exactly on a boundary
            point -= targets[i].weight
            if point < 0:
                return i
        return next(i for i in reversed(eligible) if targets[i].weight > 0)  # float rounding at the top end

    def _conditional(self, node: RoutingConfig, path: str, ctx: _Inherited) -> list[ResolvedTarget]:
        assert node.strategy is not None
        chosen = next((c.then for c in node.strategy.conditions or [] if _matches(c.query, self.doc)), None)
        if chosen is None:
            chosen = node.strategy.default
        if chosen is None:
            raise RoutingError(f"conditional at {path or 'top-level'}: no condition matched and no default")
        for i, child in enumerate(node.targets or []):
            found = _find(child, chosen, _child(path, i), ctx)
            if found is not None:
                target, target_path, target_ctx = found
                return self.plan(target, target_path, target_ctx)
        raise RoutingError(f"conditional names unknown target {chosen!r}")  # parse-time check prevents this


def _find(
    node: RoutingConfig, name: str, path: str, ctx: _Inherited
) -> tuple[RoutingConfig, str, _Inherited] | None:
    """The node called `name` under `node` (inclusive), its path, and the settings its parent passes down."""
    if node.name == name:
        return node, path, ctx
    inner = ctx.enter(node)
    for i, child in enumerate(node.targets or []):
        found = _find(child, name, _child(path, i), inner)
        if found is not None:
            return found
    return None


def _leaf(node: RoutingConfig, path: str, ctx: _Inherited) -> ResolvedTarget:
    return ResolvedTarget(
        provider=node.provider or "",
        virtual_key=node.virtual_key,
        name=_node_name(node, path),
        override_params=copy.deepcopy(ctx.override_params or {}),  # callers may mutate their copy
        retry=ctx.retry,
        request_timeout_ms=ctx.request_timeout_ms,
        cache=ctx.cache,
        custom_host=node.custom_host,
        fallback_on=ctx.fallback_on,
        forward_headers=tuple(node.forward_headers or ()),
        rate_limit=ctx.rate_limit,
    )


def _child(path: str, i: int) -> str:
    return f"{path}.targets[{i}]" if path else f"targets[{i}]"


def _node_name(node: RoutingConfig, path: str) -> str:
    return node.name or path or "root"


def _leaf_names(node: RoutingConfig, path: str) -> Iterator[str]:
    if node.strategy is None:
        yield _node_name(node, path)
        return
    for i, child in enumerate(node.targets or []):
        yield from _leaf_names(child, _child(path, i))


def _given_names(node: RoutingConfig) -> Iterator[str]:
    if node.name is not None:
        yield node.name
    for child in node.targets or []:
        yield from _given_names(child)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- validation helpers ----------------------------------------------------------------------------


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

_MISSING = object()


def _matches(query: dict[str, Any], doc: dict[str, Any]) -> bool:
    # every key must hold, $or/$and included: {"$or": [...], "metadata.tier": "gold"} needs both
    return all(_key_holds(key, value, doc) for key, value in query.items())


def _key_holds(key: str, value: Any, doc: dict[str, Any]) -> bool:
    if key == "$and":
        return all(_matches(q, doc) for q in value)
    if key == "$or":
        return any(_matches(q, doc) for q in value)
    actual = _resolve(doc, key)
    if _is_op_object(value):
        return all(_op_holds(op, actual, arg) for op, arg in value.items())
    return _op_holds("$eq", actual, value)


def _resolve(doc: Any, path: str) -> Any:
    cur = doc
    for seg in path.split("."):
        if isinstance(cur, dict):
            if seg not in cur:
                return _MISSING
            cur = cur[seg]
        elif isinstance(cur, list) and seg.isascii() and seg.isdigit() and int(seg) < len(cur):
            cur = cur[int(seg)]
        else:
            return _MISSING
    return cur


def _op_holds(op: str, actual: Any, arg: Any) -> bool:
    if actual is _MISSING:
        return op in ("$ne", "$nin")  # "not equal to x" is true of a value that is not there
    if op == "$eq":
        return _eq(actual, arg)
    if op == "$ne":
        return not _eq(actual, arg)
    if op == "$in":
        return any(_eq(actual, x) for x in arg)
    if op == "$nin":
        return not any(_eq(actual, x) for x in arg)
    if op == "$regex":
        return isinstance(actual, str) and re.search(arg, actual) is not None
    if not ((_is_number(actual) and _is_number(arg)) or (isinstance(actual, str) and isinstance(arg, str))):
        return False  # incompatible types never compare, rather than raising mid-batch
    if op == "$gt":
        return actual > arg
    if op == "$gte":
        return actual >= arg
    if op == "$lt":
        return actual < arg
    return actual <= arg  # $lte


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _eq(a: Any, b: Any) -> bool:
    # JSON true is not 1: keep booleans apart from numbers
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def check_targets(config: RoutingConfig, custom_hosts: Iterable[str] = ()) -> None:
    """Submit-time check: every provider a config names has an adapter in this build, and every
    custom_host is under a base URL the operator allows (`custom_hosts`: MMQ_CUSTOM_HOSTS and the worker's
    own MMQ_OPENAI_BASE_URL). Raises ValueError naming the target."""
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
