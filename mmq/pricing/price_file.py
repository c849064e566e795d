"""Reading a price file: its YAML (decimals exact, duplicate keys refused), its validation against the
schema (mmq/pricing/schema.py), and every problem found located to its line, so that a bad file is
refused with messages a user can act on.

Why apart from the book (book.py): the book merges and looks prices up; this is the file's grammar and
its errors, used by every place a price file enters (MMQ_PRICES_FILE, --prices, a routing target's
`prices`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from pydantic import ValidationError

from mmq.pricing.schema import (
    PriceDoc,
)

MAX_PROBLEMS_SHOWN = 10


# ------------------------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class Problem:
    line: int | None  # 1-based, when the source is a file
    path: str  # the entry, e.g. providers.openai.models["gpt-4.1"].chat.input
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        entry = f"{self.path}: " if self.path else ""
        return f"{where}{entry}{self.reason}"


class PriceBookError(ValueError):
    """A price file or override that is refused: `source` (the file or label) and its problems."""

    def __init__(self, source: str, problems: Sequence[Problem]):
        self.source = source
        self.problems = tuple(problems)
        shown = [f"{source}: {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        if len(self.problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"… and {len(self.problems) - MAX_PROBLEMS_SHOWN} more")
        super().__init__("\n".join(shown))


# ------------------------------------------------------------------------------------------ parsing
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built in


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    """Safe YAML with exact decimals for floats and duplicate keys refused (a second entry for a model
    would otherwise silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {first + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _decimal_float(loader: _Loader, node: yaml.ScalarNode) -> Decimal | float:
    value = loader.construct_yaml_float(node)
    if not math.isfinite(value):
        return value  # refused by the schema with its reason
    try:
        return Decimal(str(node.value).replace("_", ""))
    except InvalidOperation:
        return Decimal(repr(value))


_Loader.add_constructor("tag:yaml.org,2002:float", _decimal_float)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_text(text: str, source: str) -> Any:
    if source.lower().endswith(".json"):
        try:
            return json.loads(text, parse_float=Decimal, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as e:
            problem = Problem(e.lineno, "", f"invalid JSON: {e.msg} (column {e.colno})")
            raise PriceBookError(source, [problem]) from None
        except ValueError as e:
            raise PriceBookError(source, [Problem(_duplicate_line(text, str(e)), "", str(e))]) from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        reason = f"invalid YAML: {e.problem or e.context}"
        if e.context and e.problem:
            reason += f" ({e.context}"
            if e.context_mark and mark and e.context_mark.line != mark.line:
                reason += f" that starts on line {e.context_mark.line + 1}"
            reason += ")"
        raise PriceBookError(source, [Problem(mark.line + 1 if mark else None, "", reason)]) from None
    except yaml.YAMLError as e:
        raise PriceBookError(source, [Problem(None, "", f"invalid YAML: {e}")]) from None


def _duplicate_line(text: str, message: str) -> int | None:
    """The line of the second occurrence of the duplicate JSON key named in `message`."""
    m = re.search(r"duplicate key '(.*)'", message)
    if not m:
        return None
    key = re.compile(re.escape(json.dumps(m.group(1))) + r"\s*:")
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if key.search(line)]
    return hits[1] if len(hits) > 1 else None


# ------------------------------------------------------------------------------ validation problems
def _key_label(key: Any) -> str:
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else f"[{json.dumps(text)}]"


def _join(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            label = _key_label(part)
            out += label if (label.startswith("[") or not out) else "." + label
    return out


def compose_yaml(text: str | None) -> yaml.Node | None:
    if text is None:
        return None
    try:
        return yaml.compose(text, Loader=_SafeLoader)
    except yaml.YAMLError:
        return None


def locate(
    loc: tuple[Any, ...], data: Any, node: yaml.Node | None, missing: bool = False
) -> tuple[int | None, str]:
    """Walk pydantic's error location through the document (and its YAML node tree for lines). Parts that
    are not in the document (union member names, discriminator tags) are skipped; for a `missing` field
    the last part is named."""
    parts: list[Any] = []
    line = node.start_mark.line + 1 if node is not None else None
    cur, cur_node = data, node
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and part in cur:
            parts.append(part)
            if isinstance(cur_node, yaml.MappingNode):
                for key_node, value_node in cur_node.value:
                    if str(key_node.value) == str(part):
                        line, cur_node = key_node.start_mark.line + 1, value_node
                        break
                else:
                    cur_node = None
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            parts.append(part)
            if isinstance(cur_node, yaml.SequenceNode) and part < len(cur_node.value):
                cur_node = cur_node.value[part]
                line = cur_node.start_mark.line + 1
            else:
                cur_node = None
            cur = cur[part]
        elif missing and i == len(loc) - 1 and isinstance(part, str) and isinstance(cur, dict):
            parts.append(part)
    return line, _join(parts)


def _problems(error: ValidationError, data: Any, text: str | None) -> list[Problem]:
    root = compose_yaml(text)
    merged: dict[tuple[int | None, str], list[str]] = {}
    for err in error.errors():
        line, path = locate(tuple(err["loc"]), data, root, missing=err["type"] == "missing")
        reason = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            reason = "required field missing"
        reasons = merged.setdefault((line, path), [])
        if reason not in reasons:
            reasons.append(reason)
    # a union reports each member's failure: keep the deepest entries (the member that got furthest)
    paths = [path for _, path in merged]
    return [
        Problem(line, path, " or ".join(reasons))
        for (line, path), reasons in merged.items()
        if not any(other.startswith(path + ".") or other.startswith(path + "[") for other in paths if path)
    ]


def validate_doc(data: Any, source: str, text: str | None) -> PriceDoc:
    if data is None:
        raise PriceBookError(source, [Problem(None, "", "the file is empty")])
    if not isinstance(data, dict):
        raise PriceBookError(source, [Problem(1, "", "a price file is a mapping with `providers:`")])
    try:
        return PriceDoc.model_validate(data)
    except ValidationError as e:
        raise PriceBookError(source, _problems(e, data, text)) from None
