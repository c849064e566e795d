"""The Google dialect's request plumbing shared by generateContent (chat.py) and Imagen predict (images.py).

Validation follows Google's documented behaviour: snake_case and camelCase field names are both read
(proto JSON), unknown fields are rejected ("Unknown name ... Cannot find field"), and a request body
over 20 MB is refused. A model asked for the wrong method (an Imagen model to generateContent, a Gemini
model to predict) is a 404 like Google's. BLOCK_TRIGGER ("mmq-sim:block") in a prompt is blocked.
"""

from __future__ import annotations

import json

from starlette.requests import Request

from mmq.simulator.gemini.errors import GoogleError, _invalid

INLINE_REQUEST_LIMIT = 20 * 1024 * 1024  # the documented floor (100 MB since 2026-01-12)
BLOCK_TRIGGER = "mmq-sim:block"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _fields(obj: object, where: str, known: frozenset[str]) -> dict[str, object]:
    """A proto-JSON object with its keys read as camelCase; unknown names are refused."""
    if not isinstance(obj, dict):
        raise _invalid(f"Invalid JSON payload received. Invalid value at '{where}': expected an object.")
    out: dict[str, object] = {}
    for key, value in obj.items():
        name = _camel(str(key))
        if name not in known:
            at = f" at '{where}'" if where else ""
            raise _invalid(f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.')
        out[name] = value
    return out


async def _read_body(request: Request) -> dict[str, object]:
    raw = await request.body()
    if len(raw) > INLINE_REQUEST_LIMIT:
        raise _invalid(f"Request payload size exceeds the limit: {INLINE_REQUEST_LIMIT} bytes.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("Invalid JSON payload received. Unexpected token.") from None
    if not isinstance(body, dict):
        raise _invalid("Invalid JSON payload received. Expected an object at the top level.")
    return body


def _int(value: object, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"Invalid value at '{where}' (TYPE_INT32), {json.dumps(value)}")
    if not lo <= value <= hi:
        raise _invalid(f"{where} must be between {lo} and {hi}, got {value}.")
    return value


def _number(value: object, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"Invalid value at '{where}' (TYPE_FLOAT), {json.dumps(value)}")
    if not lo <= value <= hi:
        raise _invalid(f"{where} must be between {lo:g} and {hi:g}, got {value}.")
    return float(value)


def _not_found(model: str, method: str, request: Request) -> GoogleError:
    version = request.url.path.split("/")[1]
    return GoogleError(
        404,
        f"models/{model} is not found for API version {version}, or is not supported for {method}. "
        "Call ListModels to see the list of available models and their supported methods.",
    )
