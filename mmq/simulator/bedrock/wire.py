"""The Bedrock dialect's request/response plumbing shared by Converse (chat.py) and InvokeModel (images.py).

Bodies are JSON objects (anything else is a 400 SerializationException), unknown fields are refused (the
simulator is strict), and every success carries an `x-amzn-RequestId`. A prompt containing BLOCK_TRIGGER
("mmq-sim:block") is filtered by both: Converse stopReason content_filtered, Titan a 400
ValidationException, Stability finish_reasons / finishReason set.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping

from starlette.responses import Response

from mmq.simulator.bedrock.errors import BedrockError, _invalid
from mmq.simulator.errors import json_response

BLOCK_TRIGGER = "mmq-sim:block"


def _read_json(body: bytes) -> dict[str, object]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BedrockError(
            400, "SerializationException", "Unable to parse the request body as JSON."
        ) from None
    if not isinstance(parsed, dict):
        raise BedrockError(400, "SerializationException", "Expected a JSON object as the request body.")
    return parsed


def _unknown(obj: Mapping[str, object], known: frozenset[str], where: str) -> None:
    extra = sorted(set(obj) - known)
    if extra:
        raise _invalid(f"Unknown field '{extra[0]}' at '{where}'. (the mmq simulator is strict)")


def _ok(body: object) -> Response:
    return json_response(body, headers={"x-amzn-requestid": str(uuid.uuid4())})
