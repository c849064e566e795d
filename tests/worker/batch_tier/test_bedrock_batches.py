"""The Bedrock batch inference client against the simulator served on 127.0.0.1 (uvicorn), on the
worker's production HTTP client, with a real S3-compatible server (moto on loopback) between them:
the client puts the records there, the simulator reads them and writes its .jsonl.out there, the client
reads that back. Converse bodies from the realtime adapter's translation; answers read by its parse."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn

from mmq.contract import Tier
from mmq.errors import ProviderError
from mmq.request_models import Kind
from mmq.simulator import SimulatorConfig, create_app
from tests.conftest import S3_BUCKET
from tests.worker.batch_tier.conftest import FAST
from tests.worker.batch_tier.helpers import chat_request, ended, parsed, png_data_url, results, wait_until
from worker.batch_tier.apis import NATIVE, native_for
from worker.batch_tier.apis.bedrock import BatchConfig, BedrockBatches, job_id, job_name, line_result
from worker.batch_tier.protocol import ProviderBatch
from worker.http import make_client
from worker.providers.base import Target
from worker.providers.bedrock import BedrockAdapter

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
ROLE = "arn:aws:iam::123456789012:role/mmq-bedrock-batch"
ADAPTER = BedrockAdapter()
Sim = Callable[..., Any]


@pytest.fixture
async def sim(s3_server) -> AsyncIterator[Sim]:
    """sim(**knobs) -> (base URL, app): a simulator on a loopback port, its S3 the moto server."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None], socket.socket]] = []

    async def start(**knobs: Any) -> tuple[str, Any]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = SimulatorConfig(
            **{**FAST, "batch_min_records": 1, "s3_endpoint": s3_server.endpoint, **knobs}
        )
        app = create_app(config)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        servers.append((server, asyncio.create_task(server.serve(sockets=[sock])), sock))
        for _ in range(1000):
            if server.started:
                break
            await asyncio.sleep(0.01)
        return f"http://127.0.0.1:{sock.getsockname()[1]}", app

    yield start
    for server, task, sock in servers:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    made = make_client(timeout_s=60)
    yield made
    await made.aclose()


@pytest.fixture
def api(s3_server) -> tuple[BedrockBatches, str]:
    """A client on a fresh prefix of the test bucket, and that prefix."""
    prefix = f"bedrock-{uuid.uuid4().hex[:10]}"
    uri = f"s3://{S3_BUCKET}/{prefix}?endpoint_url={s3_server.endpoint}"
    return BedrockBatches(BatchConfig(s3_uri=uri, role_arn=ROLE, min_records=3)), prefix


def target(base_url: str, **more: Any) -> Target:
    return Target(name="bed", provider="bedrock", base_url=base_url, api_key="AKIDSIM:simsecret", **more)


def chats(n: int, prefix: str = "job") -> dict[str, dict[str, Any]]:
    return {f"{prefix}-{i}": chat_request(f"line {i}", MODEL) for i in range(n)}


def lines_for(api: BedrockBatches, tgt: Target, requests: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        api.line(job, Kind.chat, ADAPTER.translate(tgt, Kind.chat, req)[0]) for job, req in requests.items()
    ]


# ------------------------------------------------------------------------------------------------ pure
def test_registry_names_line_shape_and_places() -> None:
    assert isinstance(native_for("bedrock"), BedrockBatches)
    off = BedrockBatches(BatchConfig())
    assert not off.enabled and off.min_requests == 100  # unset: Bedrock jobs run realtime
    on = BedrockBatches(BatchConfig(s3_uri="s3://b/p", role_arn=ROLE, min_records=250))
    assert on.enabled and on.min_requests == 250
    tgt = target("http://sim")
    wire = ADAPTER.translate(tgt, Kind.chat, chat_request("hi", MODEL))[0]
    assert on.line("job_1", Kind.chat, wire) == {"recordId": "job_1", "modelInput": json.loads(wire.content)}
    with pytest.raises(ValueError):
        on.line("job_2", Kind.image, wire)
    aws = Target(name="a", provider="bedrock", base_url=None, headers={"x-mmq-aws-region": "eu-west-3"})
    assert on.control_url(aws) == "https://bedrock.eu-west-3.amazonaws.com"
    fips = Target(
        name="f", provider="bedrock", base_url="https://bedrock-runtime-fips.us-east-1.amazonaws.com"
    )
    assert on.control_url(fips) == "https://bedrock-fips.us-east-1.amazonaws.com"
    assert on.control_url(tgt) == "http://sim"  # a simulator, a proxy: the target's own host only
    assert job_name({"mmq_pack": "pack_0123abcd"}) == "mmq-pack-0123abcd"
    assert len(job_name({"k": "x" * 200})) <= 63
    arn = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdef012345"
    assert job_id(arn) == job_id("abcdef012345") == "abcdef012345"
    with pytest.raises(ProviderError):
        job_id("../../etc")


def test_output_records() -> None:
    ok = line_result({"recordId": "a", "modelInput": {}, "modelOutput": {"output": {}}})
    assert ok is not None and ok.ok and ok.body == {"output": {}}
    for code, retryable in ((400, False), (429, True), (500, True), ("ThrottlingException", True)):
        got = line_result({"recordId": "b", "error": {"errorCode": code, "errorMessage": "m"}})
        assert got is not None and not got.ok and got.retryable is retryable, code
    unrun = line_result({"recordId": "c", "modelInput": {}})
    assert unrun is not None and unrun.retryable
    assert line_result({"modelOutput": {}}) is None


# ----------------------------------------------------------------------------------------- the wire
async def test_round_trip_reads_like_a_realtime_answer_through_s3(sim, client, api, s3_server) -> None:
    api, prefix = api
    base, app = await sim(batch_validate_s=0.6)
    tgt = target(base)
    requests = chats(3)
    requests["job-img"] = chat_request("what colour?", MODEL, image=png_data_url((240, 200, 10)))
    batch = await api.create(
        client, tgt, Kind.chat, MODEL, lines_for(api, tgt, requests), {"mmq_pack": "pack_1"}
    )
    assert batch.state == "validating" and batch.raw_status == "Submitted" and job_id(batch.id)
    name = "mmq-pack-1"
    assert f"{prefix}/{name}/input/records.jsonl" in s3_server.list_keys(S3_BUCKET, prefix)
    first = await api.get(client, tgt, batch.id)
    assert first.raw_status in ("Submitted", "Validating", "Scheduled", "InProgress")
    assert first.handles["name"] == name and first.total == 4

    done = await ended(api, client, tgt, batch.id)
    assert (done.state, done.raw_status, done.total, done.done, done.failed) == (
        "ended",
        "Completed",
        4,
        4,
        0,
    )
    got = await results(api, client, tgt, done)
    assert sorted(got) == sorted(requests)  # joined on recordId: the output is in finishing order
    realtime = httpx.AsyncClient(base_url=base)
    for job, line in got.items():
        answer = parsed(ADAPTER, Kind.chat, requests[job], line)
        assert answer.body is not None and answer.body["object"] == "chat.completion"
        assert answer.usage is not None and answer.usage["total_tokens"] > 0
        # the same body sent realtime is answered (and counted) the same way
        wire = ADAPTER.sign(tgt, ADAPTER.translate(tgt, Kind.chat, requests[job])[0])
        direct = await realtime.post(wire.url.removeprefix(base), content=wire.content, headers=wire.headers)
        same = ADAPTER.parse(Kind.chat, requests[job], direct, direct.json())
        assert same.usage == answer.usage
        assert same.body["choices"][0]["message"] == answer.body["choices"][0]["message"]
    await realtime.aclose()
    assert "yellow" in got["job-img"].body["output"]["message"]["content"][0]["text"]
    keys = s3_server.list_keys(S3_BUCKET, prefix)
    job = job_id(batch.id)
    assert f"{prefix}/{name}/output/{job}/records.jsonl.out" in keys
    assert f"{prefix}/{name}/output/{job}/manifest.json.out" in keys
    assert f"{prefix}/{name}/input/records.jsonl" not in keys  # the input leaves once read back
    manifest = s3_server.client().get_object(
        Bucket=S3_BUCKET, Key=f"{prefix}/{name}/output/{job}/manifest.json.out"
    )
    totals = json.loads(manifest["Body"].read())
    assert totals["successRecordCount"] == 4 and totals["inputTokenCount"] > 0
    stats = app.state.stats
    assert stats.batches_created == {"bedrock": 1} and stats.batch_billed_ids == dict.fromkeys(requests, 1)


async def test_partial_failures_are_classified(sim, client, api) -> None:
    api, _ = api
    base, _ = await sim(batch_fail_rate=0.3)
    tgt = target(base)
    requests = chats(10)
    lines = lines_for(api, tgt, requests)
    lines[9]["modelInput"] = {**lines[9]["modelInput"], "bogusField": 1}  # refused by Converse: a 400
    batch = await api.create(client, tgt, Kind.chat, MODEL, lines, {"mmq_pack": "pack_2"})
    done = await ended(api, client, tgt, batch.id)
    got = await results(api, client, tgt, done)
    assert sorted(got) == sorted(requests) and done.raw_status == "Completed"
    bad = [line for line in got.values() if not line.ok]
    assert 3 <= len(bad) <= 4 and done.failed == len(bad)
    for line in bad:
        assert line.status_code in (400, 500) and line.retryable is (line.status_code == 500), line
    if not got["job-9"].ok and got["job-9"].status_code == 400:
        assert "bogusField" in (got["job-9"].error_message or "")


async def test_stop_mid_way_keeps_what_ran_and_leaves_the_rest_out(sim, client, api) -> None:
    api, _ = api
    base, app = await sim(batch_complete_s=20, batch_cancel_s=0.5)
    tgt = target(base)
    requests = chats(10)
    batch = await api.create(
        client, tgt, Kind.chat, MODEL, lines_for(api, tgt, requests), {"mmq_pack": "pack_3"}
    )
    await wait_until(lambda: api.get(client, tgt, batch.id), lambda b: (b.done or 0) >= 1)
    stopping = await api.cancel(client, tgt, batch.id)
    assert stopping.state in ("cancelling", "ended") and stopping.raw_status in ("Stopping", "Stopped")
    done = await ended(api, client, tgt, batch.id)
    assert (done.state, done.raw_status) == ("ended", "Stopped")
    got = await results(api, client, tgt, done)
    assert got and all(line.ok for line in got.values()) and len(got) < len(requests)  # the rest: absent
    assert app.state.stats.batch_cancels == {"bedrock": 1}
    with pytest.raises(ProviderError) as late:
        await api.cancel(client, tgt, batch.id)  # a terminal job cannot be stopped
    assert not late.value.retryable and late.value.code == "ValidationException"


async def test_a_timed_out_job_is_partially_completed(sim, client, api) -> None:
    api, _ = api
    base, _ = await sim(batch_complete_s=10, batch_expire_s=2)
    tgt = target(base)
    batch = await api.create(
        client, tgt, Kind.chat, MODEL, lines_for(api, tgt, chats(8)), {"mmq_pack": "pack_4"}
    )
    done = await ended(api, client, tgt, batch.id)
    assert (done.state, done.raw_status) == ("ended", "PartiallyCompleted")
    got = await results(api, client, tgt, done)
    assert 0 < len(got) < 8 and all(line.ok for line in got.values())


async def test_found_by_name_and_a_repeated_create_is_the_same_job(sim, client, api) -> None:
    api, _ = api
    base, app = await sim()
    tgt = target(base)
    lines = lines_for(api, tgt, chats(3))
    made = [
        await api.create(client, tgt, Kind.chat, MODEL, lines, {"mmq_pack": f"pack_{i}"}) for i in range(3)
    ]
    found = await api.find(client, tgt, "mmq_pack", "pack_0")
    assert found is not None and found.id == made[0].id and found.handles["name"] == "mmq-pack-0"
    assert await api.find(client, tgt, "mmq_pack", "pack_9") is None
    # a crash after the create, and a `find` that missed it: the token makes Bedrock answer the same job
    again = await api.create(client, tgt, Kind.chat, MODEL, lines, {"mmq_pack": "pack_1"})
    assert again.id == made[1].id and app.state.stats.batches_created == {"bedrock": 3}


async def test_validation_failures_and_auth(sim, client, api) -> None:
    api, _ = api
    base, _ = await sim(batch_min_records=3, batch_validate_s=0.2)
    tgt = target(base)
    few = await api.create(
        client, tgt, Kind.chat, MODEL, lines_for(api, tgt, chats(2)), {"mmq_pack": "pack_5"}
    )
    failed = await ended(api, client, tgt, few.id)
    assert failed.state == "failed" and "minimum number of records" in (failed.error or "")
    bearer = target(base, headers={"x-mmq-aws-auth": "bearer"})
    ok = await api.create(
        client, bearer, Kind.chat, MODEL, lines_for(api, bearer, chats(3)), {"mmq_pack": "pack_6"}
    )
    assert (await ended(api, client, bearer, ok.id)).raw_status == "Completed"
    wrong = Target(name="bed", provider="bedrock", base_url=base, api_key="AKIDSIM:not-the-secret")
    with pytest.raises(ProviderError) as refused:
        await api.get(client, wrong, ok.id)
    assert refused.value.status == 403 and not refused.value.retryable
    with pytest.raises(ProviderError) as missing:
        await api.get(client, tgt, "abcdef012345")
    assert missing.value.status == 404


async def test_only_the_operators_bucket_is_read_and_unset_means_realtime(client, api) -> None:
    api, _ = api
    foreign = ProviderBatch(
        "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdef012345",
        "ended",
        "Completed",
        done=1,
        handles={"input": "s3://someone-else/in/records.jsonl", "output": "s3://someone-else/out/"},
    )
    with pytest.raises(ProviderError) as refused:
        await results(api, client, target("http://127.0.0.1:9"), foreign)
    assert refused.value.code == "foreign_output"
    off = BedrockBatches(BatchConfig())
    with pytest.raises(ProviderError) as unset:
        await off.create(client, target("http://127.0.0.1:9"), Kind.chat, MODEL, [], {"mmq_pack": "p"})
    assert unset.value.code == "target_misconfigured" and not unset.value.retryable


def test_the_engine_sends_bedrock_jobs_realtime_unless_configured(monkeypatch) -> None:
    from worker.batch_tier import engine

    job = SimpleNamespace(tier=Tier.batch, resume=None, kind=Kind.chat, deadline=None)
    route = SimpleNamespace(target=SimpleNamespace(provider="bedrock"))
    monkeypatch.setitem(NATIVE, "bedrock", BedrockBatches(BatchConfig(s3_uri="s3://b/p")))  # no role
    assert engine.eligible(None, job, route) is None  # type: ignore[arg-type]
    on = BedrockBatches(BatchConfig(s3_uri="s3://b/p", role_arn=ROLE))
    monkeypatch.setitem(NATIVE, "bedrock", on)
    assert engine.eligible(None, job, route) is on  # type: ignore[arg-type]


async def test_the_simulator_reads_every_jsonl_under_an_input_prefix(sim, s3_server) -> None:
    base, _ = await sim(batch_min_records=4)
    prefix = f"bedrock-raw-{uuid.uuid4().hex[:10]}"
    tgt = target(base)
    for part, ids in (("a", range(2)), ("b", range(2, 4))):
        body = "".join(
            json.dumps({"recordId": f"r{i}", "modelInput": json.loads(wire.content)}) + "\n"
            for i in ids
            for wire in ADAPTER.translate(tgt, Kind.chat, chat_request(f"line {i}", MODEL))
        )
        s3_server.client().put_object(Bucket=S3_BUCKET, Key=f"{prefix}/in/{part}.jsonl", Body=body.encode())
    create = {
        "jobName": "raw-prefix",
        "roleArn": ROLE,
        "modelId": MODEL,
        "modelInvocationType": "Converse",
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://{S3_BUCKET}/{prefix}/in/"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{S3_BUCKET}/{prefix}/out/"}},
    }
    async with httpx.AsyncClient(base_url=base, headers={"authorization": "Bearer sim-api-key"}) as http:
        refused = await http.post("/model-invocation-job", json={**create, "jobName": "bad_name"})
        assert refused.status_code == 400 and refused.headers["x-amzn-errortype"].startswith("Validation")
        arn = (await http.post("/model-invocation-job", json=create)).json()["jobArn"]
        taken = await http.post("/model-invocation-job", json=create)
        assert taken.status_code == 400 and taken.headers["x-amzn-errortype"].startswith("Conflict")
        job = await wait_until(
            lambda: http.get(f"/model-invocation-job/{quote(arn, safe='')}"),
            lambda r: r.json()["status"] in ("Completed", "Failed"),
        )
        assert job.json()["status"] == "Completed" and job.json()["successRecordCount"] == 4
        listed = (await http.get("/model-invocation-jobs", params={"nameContains": "raw"})).json()
        assert [j["jobArn"] for j in listed["invocationJobSummaries"]] == [arn]
    done = arn.rsplit("/", 1)[-1]
    keys = s3_server.list_keys(S3_BUCKET, f"{prefix}/out/{done}/")
    assert sorted(k.rsplit("/", 1)[-1] for k in keys) == ["a.jsonl.out", "b.jsonl.out", "manifest.json.out"]
