"""The batch tier end to end: real worker processes, real Redis, the simulator speaking the providers'
batch APIs with a compressed clock (a provider batch ends in seconds)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from mmq.connections import connect
from mmq.contract import JobStatus, Tier
from mmq.packs import Packs
from mmq.records import Records
from mmq.settings import Settings
from mmq.simulator import encode_speech_wav
from mmq.storage import open_storage
from producer.submit import BatchLine, Producer
from tests.e2e.conftest import _spawn, _stop, free_port, wait_batch, wait_http

# gpt-4o-mini per 1M tokens in the shipped book: realtime, and its batch tier at half
MINI_IN, MINI_OUT = Decimal("0.15"), Decimal("0.60")


def chat_lines(n: int, tag: str, model: str = "gpt-4o-mini") -> list[BatchLine]:
    return [
        BatchLine(
            body={
                "model": model,
                "max_tokens": 50,
                "messages": [{"role": "user", "content": f"{tag} {i}"}],
            },
            url="/v1/chat/completions",
            custom_id=f"{tag}-{i}",
        )
        for i in range(n)
    ]


def speech_line(i: int) -> BatchLine:
    return BatchLine(
        body={"model": "tts-1", "voice": "alloy", "input": f"Hello number {i}."},
        url="/v1/audio/speech",
        custom_id=f"speech-{i}",
    )


def sim_stats(base_url: str) -> dict:
    return httpx.get(base_url.removesuffix("/v1") + "/sim/stats", timeout=10).json()


class Deployment:
    """A simulator with batch knobs, worker processes on it, and a producer, the records and the tier's
    packs on the same Redis."""

    def __init__(self, redis_url: str, storage_url: str, tmp_path: Path) -> None:
        self.redis_url, self.storage_url, self.tmp_path = redis_url, storage_url, tmp_path
        self.procs: list = []
        self.base = ""
        self.redis = connect(redis_url)
        settings = Settings(redis_url=redis_url, storage_url=storage_url)
        self.producer = Producer(self.redis, open_storage(storage_url), settings)
        self.records = Records(self.redis, settings.key_prefix)
        self.packs = Packs(self.redis, settings.key_prefix)

    def simulator(self, env: dict[str, str]) -> str:
        port = free_port()
        log = self.tmp_path / "simulator.log"
        sim = _spawn(["simulate", "--port", str(port), "--latency-ms", env.pop("latency", "20")], env, log)
        self.procs.append(sim)
        wait_http(f"http://127.0.0.1:{port}/health", sim, log)
        self.base = f"http://127.0.0.1:{port}/v1"
        return self.base

    def worker(self, env: dict[str, str] | None = None):
        env = {
            "MMQ_REDIS_URL": self.redis_url,
            "MMQ_STORAGE_URL": self.storage_url,
            "MMQ_OPENAI_BASE_URL": self.base,
            "MMQ_OPENAI_API_KEY": "sk-test",
            "MMQ_POLL_DELAY_S": "0.05",
            "MMQ_BATCH_TIER_MIN_WINDOW_S": "30",
            "MMQ_BATCH_TIER_GATHER_S": "0.5",
            "MMQ_BATCH_TIER_POLL_MIN_S": "0.3",
            "MMQ_BATCH_TIER_POLL_MAX_S": "1",
            "MMQ_BATCH_TIER_MARGIN_S": "5",
            **(env or {}),
        }
        proc = _spawn(["worker"], env, self.tmp_path / f"worker-{len(self.procs)}.log")
        self.procs.append(proc)
        return proc


@pytest.fixture
async def deployment(redis_url: str, storage_url: str, tmp_path: Path):
    d = Deployment(redis_url, storage_url, tmp_path)
    yield d
    for p in d.procs:
        _stop(p)
    await d.redis.aclose()


async def harvested(packs: Packs, batch_id: str, timeout: float = 90.0) -> list:
    """The batch's packs once each has recorded its harvest (the batch can end a moment before: its last
    job ends inside the harvest)."""
    deadline = time.monotonic() + timeout
    while True:
        made = await packs.batch_packs(batch_id)
        if made and all(p.state in ("harvested", "failed") for p in made):
            return made
        assert time.monotonic() < deadline, [(p.id, p.state) for p in made]
        await asyncio.sleep(0.1)


async def jobs_of(records: Records, batch_id: str) -> list:
    ids = [i async for chunk in records.iter_batch_job_ids(batch_id) for i in chunk]
    return await records.get_jobs(ids)


async def test_auto_sends_the_chats_through_the_provider_batch_at_half_price_and_the_rest_realtime(
    deployment,
):
    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    base = deployment.simulator({"MMQ_SIM_BATCH_COMPLETE_S": "2", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"})
    deployment.worker()
    lines = chat_lines(12, "night") + [speech_line(i) for i in range(2)]
    batch = await producer.submit_batch(lines, tenant="acme", cache=False, deadline=time.time() + 7200)
    assert batch.tier is Tier.auto  # the default when the deadline is an hour away or more
    done = await wait_batch(records, batch.id, timeout=120)
    assert done.status.value == "completed" and done.counts.succeeded == 14, done.counts
    assert done.counts.provider_batch == 0 and done.counts.paid_twice == 0
    jobs = {j.custom_id: j for j in await jobs_of(records, batch.id)}
    # one pack per gather window: one on a quiet machine, more when deposits spread over windows
    made = await harvested(packs, batch.id)
    assert all(p.state == "harvested" and p.provider_batch_id for p in made)
    assert sum(p.jobs for p in made) == 12
    provider_batches = {p.provider_batch_id for p in made}
    saved = 0
    for i in range(12):
        job = jobs[f"night-{i}"]
        assert job.status is JobStatus.succeeded
        assert job.attempts[-1].tier == "batch" and job.attempts[-1].provider_batch in provider_batches
        assert job.cost.tier == "batch"
        realtime = (job.usage["prompt_tokens"] * MINI_IN + job.usage["completion_tokens"] * MINI_OUT) / 10**6
        assert Decimal(job.cost.usd) == realtime / 2  # the batch price
        saved += job.cost.saved_micro_usd
    for i in range(2):
        assert jobs[f"speech-{i}"].attempts[-1].tier is None  # no batch API for speech: realtime
    stats = sim_stats(base)
    assert stats["batches_created"] == {"openai": len(made)}
    assert stats["batch_lines_billed"]["openai"] == 12
    assert stats["by_path"].get("/v1/chat/completions", 0) == 0  # no chat went realtime
    assert done.counts.provider_calls == 14
    assert done.saved_micro_usd == saved > 0  # the batch view's saving is its jobs' savings


async def test_a_stalled_provider_batch_falls_back_to_realtime_in_time_for_the_deadline(deployment):
    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    base = deployment.simulator({"MMQ_SIM_BATCH_STALL": "1", "MMQ_SIM_BATCH_CANCEL_S": "3"})
    deployment.worker()
    deadline = time.time() + 40
    batch = await producer.submit_batch(
        chat_lines(8, "late"), tenant="acme", cache=False, deadline=deadline, tier="batch"
    )
    done = await wait_batch(records, batch.id, timeout=120)
    assert done.status.value == "completed" and done.counts.succeeded == 8, done.counts
    assert done.finished_at < deadline  # the deadline held
    made = await packs.batch_packs(batch.id)
    assert made and all(p.fell_back_at is not None and p.fell_back_at < deadline for p in made)
    jobs = await jobs_of(records, batch.id)
    assert all(j.attempts[-1].tier is None and j.cost.tier == "realtime" for j in jobs)
    stats = sim_stats(base)
    assert stats["batch_cancels"] == {"openai": len(made)}
    assert stats["batch_lines_billed"].get("openai", 0) == 0 == done.counts.paid_twice  # nothing paid twice
    assert stats["by_path"]["/v1/chat/completions"] == 8


async def wait_pack(packs: Packs, batch_id: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pack in await packs.batch_packs(batch_id):
            if check(pack):
                return pack
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no pack of {batch_id} reached the state: {await packs.batch_packs(batch_id)}")


@pytest.mark.parametrize("step", ["create", "poll"])
async def test_a_worker_killed_during_a_step_loses_nothing_and_creates_no_provider_batch_twice(
    deployment, tmp_path, step
):
    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    # every simulator answer takes 1 s: a create (upload + create) is in flight for 2 s, a poll for 1 s
    sim_env = {"latency": "1000", "MMQ_SIM_BATCH_COMPLETE_S": "3", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"}
    base = deployment.simulator(sim_env)
    worker = deployment.worker({"MMQ_BATCH_TIER_RESCUE_S": "2"})
    batch = await producer.submit_batch(chat_lines(6, step), tenant="acme", cache=False, tier="batch")
    if step == "create":
        await wait_pack(packs, batch.id, lambda p: p.state == "creating")
        await asyncio.sleep(0.5)  # the upload or the create is on the wire
    else:
        await wait_pack(packs, batch.id, lambda p: p.state == "running")
        await asyncio.sleep(0.3)
    worker.kill()  # SIGKILL: no clean-up of any kind
    worker.wait()
    deployment.worker({"MMQ_BATCH_TIER_RESCUE_S": "2"})
    done = await wait_batch(records, batch.id, timeout=120)
    assert done.counts.succeeded == 6 and done.counts.paid_twice == 0, done.counts
    stats = sim_stats(base)
    made = await packs.batch_packs(batch.id)
    assert stats["batches_created"] == {"openai": len(made)}  # adopted after the crash, never twice
    assert stats["batch_lines_billed"]["openai"] == 6
    assert max(stats["batch_billed_ids"].values()) == 1


async def test_a_worker_killed_during_a_harvest_finishes_it_after_a_restart_without_paying_twice(deployment):
    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    base = deployment.simulator({"MMQ_SIM_BATCH_COMPLETE_S": "1", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"})
    worker = deployment.worker({"MMQ_BATCH_TIER_RESCUE_S": "2"})
    n = 300
    batch = await producer.submit_batch(chat_lines(n, "harvest"), tenant="acme", cache=False, tier="batch")
    deadline = time.monotonic() + 90
    while True:  # the harvest stores its lines one by one: kill the worker in the middle of it
        counts = (await records.get_batch(batch.id)).counts
        if 0 < counts.succeeded < n:
            break
        assert counts.succeeded < n, "the harvest ended before the kill: nothing was tested"
        assert time.monotonic() < deadline, counts
        await asyncio.sleep(0.005)
    worker.kill()
    worker.wait()
    deployment.worker({"MMQ_BATCH_TIER_RESCUE_S": "2"})
    done = await wait_batch(records, batch.id, timeout=120)
    assert done.counts.succeeded == n and done.counts.paid_twice == 0, done.counts
    assert done.counts.provider_calls == n  # each line counted once, the re-harvest added none
    # the killed worker may have stored every line and died before recording the harvest: the rescued
    # poll harvests again (changing nothing) and records it
    made = await harvested(packs, batch.id)
    assert all(p.state == "harvested" for p in made) and sum(p.jobs for p in made) == n
    stats = sim_stats(base)
    assert stats["batches_created"] == {"openai": len(made)} and stats["batch_lines_billed"]["openai"] == n
    assert max(stats["batch_billed_ids"].values()) == 1


def mixed_lines() -> list[BatchLine]:
    """Chat on three providers (the routing config picks the target by model), image generation, speech
    and a transcription (no batch API anywhere for the last two)."""
    chat = [("gpt-4o-mini", "oa"), ("claude-sonnet-4-5", "an"), ("gemini-2.5-flash", "ge")]
    lines = [
        BatchLine(
            body={
                "model": model,
                "max_tokens": 40,
                "messages": [{"role": "user", "content": f"{tag} item {i}"}],
            },
            url="/v1/chat/completions",
            custom_id=f"{tag}-{i}",
        )
        for model, tag in chat
        for i in range(3)
    ]
    wav = (
        "data:audio/wav;base64," + base64.b64encode(encode_speech_wav("the blue chair ships today")).decode()
    )
    lines += [
        BatchLine(
            body={"model": "gpt-image-1", "prompt": "a red lamp", "n": 1},
            url="/v1/images/generations",
            custom_id="img",
        ),
        speech_line(0),
        BatchLine(body={"model": "whisper-1", "file": wav}, url="/v1/audio/transcriptions", custom_id="stt"),
    ]
    return lines


MIXED_CONFIG = {
    "strategy": {
        "mode": "conditional",
        "conditions": [
            {"query": {"params.model": {"$eq": "claude-sonnet-4-5"}}, "then": "claude"},
            {"query": {"params.model": {"$eq": "gemini-2.5-flash"}}, "then": "gemini"},
        ],
        "default": "openai",
    },
    "targets": [
        {"name": "claude", "provider": "anthropic", "virtual_key": "sim-anthropic"},
        {"name": "gemini", "provider": "gemini", "virtual_key": "sim-gemini"},
        {"name": "openai", "provider": "openai", "virtual_key": "sim-openai"},
    ],
}


async def test_a_mixed_batch_on_auto_uses_each_providers_batch_api_and_runs_the_rest_realtime(
    deployment, tmp_path
):
    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    base = deployment.simulator({"MMQ_SIM_BATCH_COMPLETE_S": "2", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"})
    root = base.removesuffix("/v1")
    secrets = tmp_path / "secrets.json"
    secrets.write_text(
        json.dumps(
            {
                "sim-openai": {"api_key": "sk-sim", "base_url": base},
                "sim-anthropic": {"api_key": "sk-ant-sim", "base_url": root},
                "sim-gemini": {"api_key": "gm-sim", "base_url": root},
            }
        )
    )
    deployment.worker({"MMQ_SECRETS_FILE": str(secrets)})
    batch = await producer.submit_batch(
        mixed_lines(), tenant="acme", cache=False, config=MIXED_CONFIG, deadline=time.time() + 7200
    )
    done = await wait_batch(records, batch.id, timeout=120)
    assert done.status.value == "completed" and done.counts.succeeded == 12, done.counts
    jobs = {j.custom_id: j for j in await jobs_of(records, batch.id)}
    made = await harvested(packs, batch.id)
    assert {(p.provider, p.kind) for p in made} == {
        ("openai", "chat"),
        ("openai", "image"),
        ("anthropic", "chat"),
        ("gemini", "chat"),
    }
    assert all(p.state == "harvested" for p in made)
    for tag, provider in (("oa", "openai"), ("an", "anthropic"), ("ge", "gemini")):
        theirs = {p.provider_batch_id for p in made if (p.provider, p.kind) == (provider, "chat")}
        for i in range(3):
            job = jobs[f"{tag}-{i}"]
            assert job.attempts[-1].tier == "batch", (job.custom_id, job.attempts)
            assert job.attempts[-1].provider_batch in theirs
            assert job.cost.tier == "batch" and job.cost.missing is None and Decimal(job.cost.usd) > 0
    assert jobs["img"].attempts[-1].tier == "batch" and jobs["img"].result.files  # OpenAI batches images
    for realtime in ("speech-0", "stt"):
        assert jobs[realtime].attempts[-1].tier is None and jobs[realtime].status is JobStatus.succeeded
    stats = sim_stats(base)
    per_provider = Counter(p.provider for p in made)  # chat and images apart; more packs under load
    assert stats["batches_created"] == dict(per_provider) and per_provider["openai"] >= 2
    assert max(stats["batch_billed_ids"].values()) == 1
    assert done.spent_micro_usd == sum(j.cost.micro_usd for j in jobs.values())


async def test_a_pack_past_the_byte_limit_is_split_and_every_part_goes_through_the_provider_batch(
    deployment,
):
    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    base = deployment.simulator({"MMQ_SIM_BATCH_COMPLETE_S": "1", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"})
    deployment.worker({"MMQ_BATCH_TIER_MAX_BYTES": "1000", "MMQ_BATCH_TIER_GATHER_S": "2"})  # ~5 lines a pack
    batch = await producer.submit_batch(chat_lines(12, "split"), tenant="acme", cache=False, tier="batch")
    done = await wait_batch(records, batch.id, timeout=120)
    assert done.counts.succeeded == 12 and done.counts.paid_twice == 0, done.counts
    made = await packs.batch_packs(batch.id)
    assert len(made) >= 3 and sum(p.jobs for p in made) == 12  # a byte limit, not the request count
    jobs = await jobs_of(records, batch.id)
    assert all(j.attempts[-1].tier == "batch" for j in jobs)
    stats = sim_stats(base)
    assert stats["batches_created"] == {"openai": len(made)}
    assert stats["batch_lines_billed"]["openai"] == 12 and max(stats["batch_billed_ids"].values()) == 1
