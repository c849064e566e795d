"""Gemini batch mode on the simulator: inline and file input, the resumable upload, get / list / cancel
(the google-genai SDK is not in the venv: raw HTTP on the paths and fields its batches module uses)."""

from __future__ import annotations

import json

import httpx

from tests.mmq.simulator.batch_helpers import parse_jsonl, png_data_url, wait_until

FAST = {"batch_validate_s": 0, "batch_complete_s": 0.3, "batch_finalize_s": 0.05}
MODEL = "gemini-2.5-flash"
TERMINAL = {"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"}


def client(sim: httpx.AsyncClient, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim.app),
        base_url="http://sim",
        headers={"x-goog-api-key": "AIza-test", **headers},
    )


def request(text: str, image: str | None = None) -> dict[str, object]:
    parts: list[dict[str, object]] = [{"text": text}]
    if image:
        mime, _, data = image.removeprefix("data:").partition(";base64,")
        parts.append({"inlineData": {"mimeType": mime, "data": data}})
    return {"contents": [{"role": "user", "parts": parts}]}


async def create(api: httpx.AsyncClient, source: dict[str, object], name: str = "job") -> dict[str, object]:
    resp = await api.post(
        f"/v1beta/models/{MODEL}:batchGenerateContent",
        json={"batch": {"displayName": name, "inputConfig": source}},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def inline(*requests: dict[str, object], keys: bool = True) -> dict[str, object]:
    items = [
        {"request": r, **({"metadata": {"key": f"k{i}"}} if keys else {})} for i, r in enumerate(requests)
    ]
    return {"requests": {"requests": items}}


async def ended(api: httpx.AsyncClient, name: object) -> dict[str, object]:
    async def get() -> dict[str, object]:
        return (await api.get(f"/v1beta/{name}")).json()

    return await wait_until(get, lambda op: op["metadata"]["state"] in TERMINAL)


async def test_inline_round_trip_in_request_order(make_sim) -> None:
    sim = make_sim(**{**FAST, "batch_validate_s": 0.5})  # long enough for create to see PENDING
    api = client(sim)
    reqs = [request("first"), request("what colour?", png_data_url((240, 200, 10))), request("third")]
    op = await create(api, inline(*reqs))
    assert str(op["name"]).startswith("batches/") and op["done"] is False
    assert op["metadata"]["state"] == "BATCH_STATE_PENDING" and op["metadata"]["model"] == f"models/{MODEL}"
    done = await ended(api, op["name"])
    meta = done["metadata"]
    assert done["done"] is True and meta["state"] == "BATCH_STATE_SUCCEEDED" and meta["endTime"]
    assert meta["batchStats"] == {
        "requestCount": "3",
        "successfulRequestCount": "3",
        "failedRequestCount": "0",
        "pendingRequestCount": "0",
    }
    answers = meta["output"]["inlinedResponses"]["inlinedResponses"]
    assert done["response"]["inlinedResponses"] == meta["output"]["inlinedResponses"]
    assert [a["metadata"]["key"] for a in answers] == ["k0", "k1", "k2"]  # inline: request order
    realtime = (await api.post(f"/v1beta/models/{MODEL}:generateContent", json=reqs[1])).json()
    assert answers[1]["response"]["usageMetadata"] == realtime["usageMetadata"]
    assert answers[1]["response"]["candidates"] == realtime["candidates"]
    assert sim.app.state.stats.batch_billed_ids == {"k0": 1, "k1": 1, "k2": 1}
    await api.aclose()


async def test_errored_lines_and_partial_failures(make_sim) -> None:
    sim = make_sim(**FAST)
    api = client(sim)
    bad = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "bogusField": 1}  # Google refuses it
    done = await ended(api, (await create(api, inline(request("a"), bad, keys=False)))["name"])
    answers = done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    assert "response" in answers[0] and answers[1]["error"]["code"] == 3  # INVALID_ARGUMENT
    assert "bogusField" in answers[1]["error"]["message"]
    assert done["metadata"]["batchStats"]["failedRequestCount"] == "1"
    assert all("metadata" not in a for a in answers)

    sim.app.state.sim.config.batch_fail_rate = 0.34  # knobs apply to batches created after the change
    done = await ended(api, (await create(api, inline(request("a"), request("b"), request("c"))))["name"])
    answers = done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    assert [a["error"]["code"] for a in answers if "error" in a] == [13]  # INTERNAL
    assert sim.app.state.stats.batch_lines_billed == {"gemini": 3}
    await api.aclose()


async def upload(api: httpx.AsyncClient, data: bytes) -> dict[str, object]:
    """The google-genai SDK's resumable upload: start, then the bytes in two chunks."""
    start = await api.post(
        "/upload/v1beta/files",
        json={"file": {"displayName": "requests"}},
        headers={
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(data)),
            "X-Goog-Upload-Header-Content-Type": "application/jsonl",
        },
    )
    assert start.status_code == 200, start.text
    url = start.headers["x-goog-upload-url"]
    bare = httpx.AsyncClient(transport=api._transport)  # the chunks carry no API key
    half = len(data) // 2
    first = await bare.post(
        url, content=data[:half], headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"}
    )
    assert first.headers["x-goog-upload-status"] == "active"
    last = await bare.post(
        url,
        content=data[half:],
        headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": str(half)},
    )
    assert last.headers["x-goog-upload-status"] == "final"
    await bare.aclose()
    return last.json()["file"]


async def test_file_input_round_trip(make_sim) -> None:
    sim = make_sim(**FAST)
    api = client(sim)
    lines = [{"key": f"row-{i}", "request": request(f"line {i}")} for i in range(5)]
    file = await upload(api, "\n".join(json.dumps(line) for line in lines).encode())
    assert str(file["name"]).startswith("files/") and file["source"] == "UPLOADED"
    assert (await api.get(f"/v1beta/{file['name']}")).json()["sizeBytes"] == file["sizeBytes"]
    refused = await api.get(f"/v1beta/{file['name']}:download", params={"alt": "media"})
    assert refused.status_code == 400  # only generated files can be downloaded

    op = await create(api, {"fileName": file["name"]})
    done = await ended(api, op["name"])
    assert done["metadata"]["inputConfig"] == {"fileName": file["name"]}
    out_name = done["metadata"]["output"]["responsesFile"]
    out_file = (await api.get(f"/v1beta/{out_name}")).json()
    assert out_file["source"] == "GENERATED" and out_file["downloadUri"]
    content = await api.get(f"/download/v1beta/{out_name}:download", params={"alt": "media"})
    rows = parse_jsonl(content.text)
    assert sorted(r["key"] for r in rows) == [f"row-{i}" for i in range(5)]
    assert all(r["response"]["usageMetadata"]["promptTokenCount"] > 0 for r in rows)
    assert (await api.delete(f"/v1beta/{file['name']}")).status_code == 200
    assert (await api.get(f"/v1beta/{file['name']}")).status_code == 403
    await api.aclose()


async def test_unreadable_file_fails_the_batch(make_sim) -> None:
    api = client(make_sim(**FAST))
    file = await upload(api, b'{"key": "a", "request": {"contents": []}}\nnot json\n')
    done = await ended(api, (await create(api, {"fileName": file["name"]}))["name"])
    assert done["metadata"]["state"] == "BATCH_STATE_FAILED" and "Line 2" in done["error"]["message"]
    await api.aclose()


async def test_cancel_and_expiry(make_sim) -> None:
    sim = make_sim(batch_validate_s=0, batch_complete_s=20, batch_cancel_s=3, batch_expire_s=3)
    api = client(sim)
    expiring = await create(api, inline(*(request(f"e{i}") for i in range(20))))
    sim.app.state.sim.config.batch_expire_s = None  # the next batch only ends by its cancellation
    cancelled = await create(api, inline(*(request(f"c{i}") for i in range(20))))
    cancel = await api.post(f"/v1beta/{cancelled['name']}:cancel")
    assert cancel.status_code == 200 and cancel.json() == {}
    assert (await api.get(f"/v1beta/{cancelled['name']}")).json()["metadata"][
        "state"
    ] == "BATCH_STATE_RUNNING"
    done = await ended(api, cancelled["name"])
    assert done["metadata"]["state"] == "BATCH_STATE_CANCELLED"
    codes = [
        a.get("error", {}).get("code")
        for a in done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    ]
    assert codes.count(1) >= 1  # CANCELLED

    expired = await ended(api, expiring["name"])
    assert expired["metadata"]["state"] == "BATCH_STATE_EXPIRED"
    answers = expired["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    assert (
        sum("response" in a for a in answers) >= 1
        and sum(a.get("error", {}).get("code") == 4 for a in answers) >= 1
    )
    await api.aclose()


async def test_list_and_errors(make_sim) -> None:
    sim = make_sim(**FAST)
    api = client(sim)
    names = [(await create(api, inline(request("x")), name=f"job-{i}"))["name"] for i in range(3)]
    await ended(api, names[0])
    first = (await api.get("/v1beta/batches", params={"pageSize": 2})).json()
    assert [op["name"] for op in first["operations"]] == [names[2], names[1]]
    rest = (
        await api.get("/v1beta/batches", params={"pageSize": 2, "pageToken": first["nextPageToken"]})
    ).json()
    assert [op["name"] for op in rest["operations"]] == [names[0]] and "nextPageToken" not in rest
    listed = rest["operations"][0]
    assert (
        listed["metadata"]["displayName"] == "job-0"
        and "inlinedResponses" not in listed["metadata"]["output"]
    )

    missing = await api.get("/v1beta/batches/nope")
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
    both = await api.post(
        f"/v1beta/models/{MODEL}:batchGenerateContent",
        json={"batch": {"inputConfig": {"fileName": "files/x", **inline(request("x"))}}},
    )
    assert both.status_code == 400 and both.json()["error"]["status"] == "INVALID_ARGUMENT"
    no_key = client(sim, **{"x-goog-api-key": ""})
    resp = await no_key.get("/v1beta/batches")
    assert resp.status_code == 403 and resp.json()["error"]["status"] == "PERMISSION_DENIED"
    await no_key.aclose()
    await api.aclose()


async def test_request_and_size_limits(make_sim) -> None:
    api = client(make_sim(**FAST, batch_max_requests=2, batch_max_bytes=2000))
    too_many = await api.post(
        f"/v1beta/models/{MODEL}:batchGenerateContent",
        json={"batch": {"inputConfig": inline(request("a"), request("b"), request("c"))}},
    )
    assert too_many.status_code == 400 and "at most 2" in too_many.json()["error"]["message"]
    too_big = await api.post(
        f"/v1beta/models/{MODEL}:batchGenerateContent",
        json={"batch": {"inputConfig": inline(request("x" * 3000))}},
    )
    assert too_big.status_code == 400 and "payload size" in too_big.json()["error"]["message"]
    lines = [{"key": f"r{i}", "request": request("y")} for i in range(3)]
    file = await upload(api, "\n".join(json.dumps(line) for line in lines).encode())
    done = await ended(api, (await create(api, {"fileName": file["name"]}))["name"])
    assert done["metadata"]["state"] == "BATCH_STATE_FAILED" and "at most 2" in done["error"]["message"]
    await api.aclose()
