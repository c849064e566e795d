"""Planning: a routing config (mmq.routing.schema) plus one request becomes the ordered list of
provider targets to try. Pure logic (no I/O); the worker wires it in.

A config is a tree of nodes. A node with a `strategy` routes to its `targets`; a node without one is a
leaf target (it names a `provider` and/or a `virtual_key`). The top level is a node too, so a bare leaf
is a valid config.

Inheritance (as implemented by `plan`):
- `override_params` merge down the tree: each node's dict is deep-merged over what its ancestors set,
  the child winning key by key; nested dicts merge recursively, any other value (lists included) is
  replaced whole. `ResolvedTarget.override_params` is the fully merged result.
- `retry`, `request_timeout`, `cache`, `rate_limit`, `prices` and `batch_queue_tokens` come from the
  nearest node on the path (the leaf itself first) that sets them; a child's object replaces the
  ancestor's whole, it is never merged.
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
A number and numeric text compare as numbers (batch metadata is always text: `{"$gte": 5}` matches "7");
the rules are in mmq.routing.schema's docstring.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from mmq.routing.schema import (
    Cache,
    RateLimit,
    Retry,
    RoutingConfig,
    RoutingError,
    _is_op_object,
    as_number,
)


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
    prices: dict[str, Any] | None = None  # price-file-shaped overrides for this target (mmq/pricing)
    batch_queue_tokens: int | None = None  # its provider batches' enqueued-token limit (the batch tier)


_SHARED_RNG = random.Random()  # for callers that need no reproducible draw (a new one reads urandom)


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
        rng=rng or _SHARED_RNG,
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
    prices: dict[str, Any] | None = None
    batch_queue_tokens: int | None = None

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
            prices=node.prices if node.prices is not None else self.prices,
            batch_queue_tokens=node.batch_queue_tokens
            if node.batch_queue_tokens is not None
            else self.batch_queue_tokens,
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
        prices=ctx.prices,
        batch_queue_tokens=ctx.batch_queue_tokens,
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


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- validation helpers ----------------------------------------------------------------------------


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
    a, b = as_number(actual), as_number(arg)
    if a is not None and b is not None:
        pass  # numbers, or numeric text (batch metadata is text): "10" > "9"
    elif isinstance(actual, str) and isinstance(arg, str):
        a, b = actual, arg  # type: ignore[assignment]
    else:
        return False  # incompatible types never compare, rather than raising mid-batch
    if op == "$gt":
        return a > b  # type: ignore[operator]
    if op == "$gte":
        return a >= b  # type: ignore[operator]
    if op == "$lt":
        return a < b  # type: ignore[operator]
    return a <= b  # type: ignore[operator]  # $lte


def _eq(a: Any, b: Any) -> bool:
    # JSON true is not 1: keep booleans apart from numbers
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) != isinstance(b, str):
        # a number and numeric text are the same number ("7" == 7); two texts keep their spelling
        x, y = as_number(a), as_number(b)
        return x is not None and y is not None and x == y
    return a == b
