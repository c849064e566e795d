"""POST /v1/images/generations (real PNGs) and GET /sim/files/{name} for response_format=url."""

from __future__ import annotations

import asyncio
import base64
import re
import time

from starlette.requests import Request
from starlette.responses import Response

from mmq.simulator.errors import ApiError, bad_request, json_response
from mmq.simulator.imaging import image_tokens, render_png
from mmq.simulator.parsing import int_param, missing, read_json, wrong_type
from mmq.simulator.state import SimState

_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_INLINE_RENDER_PIXELS = 256 * 256  # larger renders go to a thread (Pillow's encoder releases the GIL)


def parse_size(value: object) -> tuple[int, int]:
    if value is None or value == "auto":
        return 1024, 1024
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match:
        width, height = int(match[1]), int(match[2])
        if 64 <= width <= 4096 and 64 <= height <= 4096:
            return width, height
    raise bad_request(
        f"Invalid value: {value!r}. The mmq simulator accepts 'auto' or 'WxH' "
        "with both sides between 64 and 4096.",
        "size",
        "invalid_value",
    )


async def _render(prompt: str, index: int, width: int, height: int) -> bytes:
    if width * height <= _INLINE_RENDER_PIXELS:
        return render_png(prompt, index, width, height)
    return await asyncio.to_thread(render_png, prompt, index, width, height)


async def image_generations(request: Request) -> Response:
    body = await read_json(request)
    prompt = body.get("prompt")
    if prompt is None:
        raise missing("prompt")
    if not isinstance(prompt, str):
        raise wrong_type("prompt", "a string", prompt)
    if not prompt.strip():
        raise bad_request("Invalid 'prompt': empty string.", "prompt", "empty_string")
    n = int_param(body, "n", 1, 1, 10) or 1
    width, height = parse_size(body.get("size"))
    fmt = body.get("response_format") or "b64_json"
    if fmt not in ("b64_json", "url"):
        raise bad_request(
            f"Invalid value: {fmt!r}. Supported values are: 'url' and 'b64_json'.",
            "response_format",
            "invalid_value",
        )

    sim: SimState = request.app.state.sim
    pngs = await asyncio.gather(*(_render(prompt, i, width, height) for i in range(n)))
    revised = f"[mmq simulator] {prompt}"
    data: list[dict[str, str]] = []
    for png in pngs:
        if fmt == "url":
            base = str(request.base_url).rstrip("/")
            data.append({"url": f"{base}/sim/files/{sim.files.put(png)}", "revised_prompt": revised})
        else:
            data.append({"b64_json": base64.b64encode(png).decode("ascii"), "revised_prompt": revised})
    text_tokens = max(1, len(prompt) // 4)
    out_tokens = image_tokens(width, height) * n
    return json_response(
        {
            "created": int(time.time()),
            "data": data,
            "usage": {
                "total_tokens": text_tokens + out_tokens,
                "input_tokens": text_tokens,
                "output_tokens": out_tokens,
                "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
            },
        }
    )


async def sim_file(request: Request) -> Response:
    name = request.path_params["name"]
    data = request.app.state.sim.files.get(name)
    if data is None:
        raise ApiError(404, f"No simulator file named {name!r} (it may have been evicted).", code="not_found")
    return Response(data, media_type="image/png", headers={"cache-control": "no-store"})
