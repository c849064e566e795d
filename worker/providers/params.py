"""The one parameter-map engine: how the fields of an OpenAI-shaped request become a provider's fields.

An adapter that renames, converts, drops or refuses OpenAI fields says so in a table, as Portkey's
gateway does in its provider configs (src/providers/*/chatComplete.ts: `param`, `default`,
`transform`, `required`), and `map_params` applies it. Why a table and one engine: every field an
adapter takes, ignores on purpose or refuses is listed in one place that reads as data, and the rules
(which row wins, when a default applies, what a refusal says) are the same for every provider instead
of being re-implemented, slightly differently, in each. What no table can say (messages into turns,
media into blocks, one request into several calls) stays code in the adapter.

A table maps an OpenAI field to a row (`Param`) or to several rows, built with:
- `rename(to, transform, default=..., required=...)`: write the value at `to`, a dotted native path
  ("generationConfig.topP" nests). `transform` turns the OpenAI value into the native one; it may raise
  InvalidJob (a value the provider cannot take) or return None (nothing is written).
- `drop(why)`: read and left out on purpose; `why` documents it.
- `validate(check)`: `check(value)` may raise InvalidJob; nothing is written.
- `unsupported(why)`: any meaningful value (not None, False, 0, "", [] or {}) fails the job with
  InvalidJob "{field}: {why}", never a silent drop that would change what the caller gets.
- `refuse_if(test, why)`: the same when `test(value)` is true (e.g. n > 1 where one choice comes back).

Rules, in this order for each row:
1. a refusal fails the job;
2. an absent field (None) fails a `required` row ("{field}: required"), or writes the row's default
   unless something already wrote that path (a callable default is called with the whole request, so a
   default may depend on, say, the model);
3. otherwise the transformed value is written, unless an earlier row already wrote that leaf: rows
   apply in table order and the first writer wins (list max_completion_tokens before max_tokens). A
   mapping written onto a mapping merges into it, keys already there winning.
Fields that are not in the table are not read at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mmq.errors import InvalidJob


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


@dataclass(frozen=True)
class Param:
    """One rule for one OpenAI field; see the module docstring for what each part does."""

    to: str | None = None  # dotted native path; None writes nothing
    transform: Callable[[Any], Any] | None = None
    default: Any = NO_DEFAULT
    required: bool = False
    refuse: Callable[[Any], bool] | None = None
    why: str = ""


ParamTable = Mapping[str, Param | Sequence[Param]]


def given(value: Any) -> bool:
    """Whether a value asks for something (None, False, 0, "", [] and {} ask for nothing)."""
    return value not in (None, False, "", [], {})


def rename(
    to: str,
    transform: Callable[[Any], Any] | None = None,
    *,
    default: Any = NO_DEFAULT,
    required: bool = False,
) -> Param:
    return Param(to, transform, default, required)


def drop(why: str) -> Param:
    return Param(why=why)


def validate(check: Callable[[Any], Any]) -> Param:
    return Param(transform=check)


def unsupported(why: str) -> Param:
    return Param(refuse=given, why=why)


def refuse_if(test: Callable[[Any], bool], why: str) -> Param:
    return Param(refuse=test, why=why)


# ------------------------------------------------------------------------------------------- paths
def _get(out: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    node: Any = out
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _put(out: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    if leaf not in node:
        # a mapping is copied, so a later merge into it never changes the caller's request
        node[leaf] = dict(value) if isinstance(value, Mapping) else value
    elif isinstance(node[leaf], dict) and isinstance(value, Mapping):
        for key, item in value.items():
            node[leaf].setdefault(key, item)


# ------------------------------------------------------------------------------------------ engine
def map_params(
    table: ParamTable, request: Mapping[str, Any], into: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Apply `table` to `request`: the native fields, written into `into` (or a new dict). Raises
    InvalidJob naming the field for a refused, missing or unconvertible value."""
    out: dict[str, Any] = {} if into is None else into
    for field, rules in table.items():
        value = request.get(field)
        for rule in (rules,) if isinstance(rules, Param) else rules:
            if rule.refuse is not None and value is not None and rule.refuse(value):
                raise InvalidJob(f"{field}: {rule.why}")
            if value is None:
                if rule.required:
                    raise InvalidJob(f"{field}: required")
                if rule.to is not None and rule.default is not NO_DEFAULT and not _get(out, rule.to)[0]:
                    default = rule.default(request) if callable(rule.default) else rule.default
                    _put(out, rule.to, default)
                continue
            if rule.to is not None:
                written, existing = _get(out, rule.to)
                if written and not isinstance(existing, dict):
                    continue  # an earlier row wrote this leaf: it wins
            if rule.transform is None and rule.to is None:
                continue  # dropped on purpose
            native = rule.transform(value) if rule.transform is not None else value
            if rule.to is not None and native is not None:
                _put(out, rule.to, native)
    return out
