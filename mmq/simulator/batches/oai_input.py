"""Validation of an OpenAI-format batch input file, with the error codes the providers document.

Why it runs at create but reports later: OpenAI, Azure and Groq accept the create call and report a
bad file as a batch that goes from validating to failed, with `errors.data[]` entries
{code, message, param, line} (codes invalid_json_line, duplicate_custom_id, url_mismatch,
model_mismatch, empty_file, too_many_tasks; reference native_batch.md §1-2 and queue_and_batch.md
§C.1). The simulator parses once at create and shows the verdict when validation ends.
Checked: size and request-count limits, UTF-8 JSON objects per line, a non-empty unique custom_id,
method POST, url equal to the batch's endpoint, a body object with a model, and (OpenAI, Azure) one
model per file. Bodies themselves are checked by the realtime handler when the line runs, so a bad
body is an errored line, not a failed batch.
"""

from __future__ import annotations

import json

from mmq.simulator.batches.oai_surfaces import Surface
from mmq.simulator.batches.timeline import Line

BOM = b"\xef\xbb\xbf"
_MAX_ERRORS = 100


def error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict[str, object]:
    return {"code": code, "message": message, "param": param, "line": line}


def _file_errors(data: bytes, surface: Surface, max_bytes: int) -> list[dict[str, object]]:
    if len(data) > max_bytes:
        return [
            error(
                "file_too_large",
                f"The input file is {len(data)} bytes, over the limit of {max_bytes} bytes for a batch.",
            )
        ]
    if data.startswith(BOM) and surface.bom_error:
        return [error("model_not_found", surface.bom_error, 1)]
    return []


def parse_input(
    data: bytes, surface: Surface, endpoint: str, max_requests: int, max_bytes: int
) -> tuple[list[Line], str | None, list[dict[str, object]]]:
    """(lines, the file's model, validation errors); any error fails the whole batch."""
    errors = _file_errors(data, surface, max_bytes)
    if errors:
        return [], None, errors
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], None, [error("invalid_json_line", "The input file is not valid UTF-8.", 1)]
    numbered = [(n, raw) for n, raw in enumerate(text.split("\n"), 1) if raw.strip()]
    if not numbered:
        return [], None, [error("empty_file", "The batch input file is empty.")]
    if len(numbered) > max_requests:
        return (
            [],
            None,
            [
                error(
                    "too_many_tasks",
                    f"The batch input file has {len(numbered)} requests; the limit is {max_requests}.",
                )
            ],
        )
    lines: list[Line] = []
    seen: set[str] = set()
    model: str | None = None
    for n, raw in numbered:
        if len(errors) >= _MAX_ERRORS:
            break
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            errors.append(error("invalid_json_line", "This line is not parseable as valid JSON.", n))
            continue
        problem = _line_problem(obj, n, surface, endpoint, seen, model)
        if problem is not None:
            errors.append(problem)
            continue
        body = obj["body"]
        model = model or body["model"]
        seen.add(obj["custom_id"])
        lines.append(Line(len(lines), obj["custom_id"], endpoint, body))
    return lines, model, errors


def _line_problem(
    obj: dict[str, object], n: int, surface: Surface, endpoint: str, seen: set[str], model: str | None
) -> dict[str, object] | None:
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return error("invalid_request", "Each request needs a non-empty string custom_id.", n, "custom_id")
    if obj.get("method") != "POST":
        return error("invalid_request", "Only the POST method is supported for batch requests.", n, "method")
    if obj.get("url") != endpoint:
        return error(
            "url_mismatch",
            f"The url of this request ({obj.get('url')!r}) does not match the batch's endpoint ({endpoint}).",
            n,
            "url",
        )
    body = obj.get("body")
    if not isinstance(body, dict):
        return error("invalid_request", "Each request needs a body object.", n, "body")
    line_model = body.get("model")
    if not isinstance(line_model, str) or not line_model:
        return error("invalid_request", "Each request body needs a model.", n, "body.model")
    if surface.one_model and model is not None and line_model != model:
        what = "deployment" if surface.provider == "azure" else "model"
        return error(
            "model_mismatch",
            f"The {what} of this request ({line_model!r}) differs from the rest of the file ({model!r}); "
            f"a batch input file may only target one {what}.",
            n,
            "body.model",
        )
    if custom_id in seen:
        return error(
            "duplicate_custom_id",
            f"The custom_id {custom_id!r} is a duplicate of another request's; custom_id must be unique "
            "for each request in a batch.",
            n,
            "custom_id",
        )
    return None
