"""Request-body helpers that fail with OpenAI's invalid_request_error shapes."""

from __future__ import annotations

import base64
import json
import math

from starlette.requests import Request

from mmq.simulator.errors import bad_request


async def read_json(request: Request) -> dict[str, object]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
            "valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise bad_request("Invalid type for request body: expected an object.")
    return body


def missing(param: str) -> Exception:
    return bad_request(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def wrong_type(param: str, expected: str, value: object) -> Exception:
    got = type(value).__name__
    return bad_request(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.", param, "invalid_type"
    )


def int_param(body: dict[str, object], name: str, default: int | None, lo: int, hi: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise wrong_type(name, "an integer", value)
    if not lo <= value <= hi:
        raise bad_request(
            f"Invalid '{name}': {value} is out of range; expected a value between {lo} and {hi}.",
            name,
            "invalid_value",
        )
    return value


def decode_data_url(url: str) -> tuple[str, bytes]:
    """data:<mime>;base64,<b64> -> (mime, bytes).

    Raises binascii.Error for bad base64 and plain ValueError when it is not a base64 data URL at all.
    """
    head, sep, b64 = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise ValueError("not a base64 data URL")
    mime = head[5 : -len(";base64")]
    return mime, base64.b64decode(b64, validate=True)


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)
