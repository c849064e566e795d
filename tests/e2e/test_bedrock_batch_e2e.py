"""Bedrock batch inference end to end: real worker processes and Redis, the simulator speaking Bedrock's
control plane with a compressed clock, and a real S3-compatible server (moto on loopback) in between:
the worker puts a pack's records there, the simulator reads them and writes its .jsonl.out there."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from mmq.contract import JobStatus, Tier
from producer.submit import BatchLine
from tests.conftest import S3_BUCKET
from tests.e2e.conftest import _stop, wait_batch
from tests.e2e.test_batch_tier_e2e import Deployment, harvested, jobs_of, sim_stats, wait_pack

MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
PROFILE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"  # another group (model id), the same prices
SONNET_IN, SONNET_OUT = Decimal("3.00"), Decimal("15.00")  # per 1M tokens: realtime; the batch tier halves
MIN_RECORDS = 10
CONFIG = {"provider": "bedrock", "virtual_key": "sim-bedrock"}
CONVERSE = "/model/{modelId}/converse"


def chats(model: str, n: int, tag: str) -> list[BatchLine]:
    return [
        BatchLine(
            body={"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": f"{tag} {i}"}]},
            url="/v1/chat/completions",
            custom_id=f"{tag}-{i}",
        )
        for i in range(n)
    ]


@pytest.fixture
async def bedrock(redis_url: str, storage_url: str, tmp_path: Path, s3_server):
    """(deployment, worker env, the S3 prefix): a simulator reading and writing the moto server, and the
    env that turns Bedrock batch inference on for a worker (minimum MIN_RECORDS)."""
    d = Deployment(redis_url, storage_url, tmp_path)
    prefix = f"bedrock-e2e-{uuid.uuid4().hex[:10]}"
    secrets = tmp_path / "secrets.json"

    def start(sim_env: dict[str, str]) -> dict[str, str]:
        base = d.simulator(
            {
                "MMQ_SIM_S3_ENDPOINT": s3_server.endpoint,
                "MMQ_SIM_BATCH_MIN_RECORDS": str(MIN_RECORDS),
                **sim_env,
            }
        )
        root = base.removesuffix("/v1")
        secrets.write_text(json.dumps({"sim-bedrock": {"api_key": "AKIDSIM:simsecret", "base_url": root}}))
        return {
            "MMQ_SECRETS_FILE": str(secrets),
            "MMQ_BEDROCK_BATCH_S3_URI": f"s3://{S3_BUCKET}/{prefix}?endpoint_url={s3_server.endpoint}",
            "MMQ_BEDROCK_BATCH_ROLE_ARN": "arn:aws:iam::123456789012:role/mmq-bedrock-batch",
            "MMQ_BEDROCK_BATCH_MIN_RECORDS": str(MIN_RECORDS),
            # the group's deposits are gathered until a window passes without one
            "MMQ_BATCH_TIER_GATHER_S": "1",
        }

    yield d, start, prefix
    for p in d.procs:
        _stop(p)
    await d.redis.aclose()


async def test_auto_sends_a_group_of_the_minimum_through_bedrock_batch_and_a_smaller_one_realtime(
    bedrock, s3_server
):
    d, start, prefix = bedrock
    env = start({"MMQ_SIM_BATCH_COMPLETE_S": "2", "MMQ_SIM_BATCH_VALIDATE_S": "0.3"})
    base = d.base
    d.worker(env)
    lines = chats(MODEL, 12, "night") + chats(PROFILE, 3, "few")
    batch = await d.producer.submit_batch(
        lines, tenant="acme", cache=False, config=CONFIG, deadline=time.time() + 7200
    )
    assert batch.tier is Tier.auto
    done = await wait_batch(d.records, batch.id, timeout=180)
    assert done.status.value == "completed" and done.counts.succeeded == 15, done.counts
    assert done.counts.provider_batch == 0 and done.counts.paid_twice == 0
    jobs = {j.custom_id: j for j in await jobs_of(d.records, batch.id)}
    made = await harvested(d.packs, batch.id)
    through = [p for p in made if p.state == "harvested"]
    assert through and all(p.provider == "bedrock" and p.model == MODEL for p in through)
    assert sum(p.jobs for p in through) == 12  # the group of 12 (≥ the minimum) went through Bedrock
    short = [p for p in made if p.model == PROFILE]
    assert short and all(p.state == "failed" and "minimum" in (p.error or "") for p in short)
    ids = {p.provider_batch_id for p in through}
    for i in range(12):
        job = jobs[f"night-{i}"]
        assert job.status is JobStatus.succeeded and job.result.body_key
        assert job.attempts[-1].tier == "batch" and job.attempts[-1].provider_batch in ids
        realtime = (
            job.usage["prompt_tokens"] * SONNET_IN + job.usage["completion_tokens"] * SONNET_OUT
        ) / 10**6
        assert job.cost.tier == "batch" and Decimal(job.cost.usd) == realtime / 2  # the batch price
    for i in range(3):  # under the minimum: realtime, never padded
        job = jobs[f"few-{i}"]
        assert job.status is JobStatus.succeeded and job.attempts[-1].tier is None
        assert job.cost.tier == "realtime"
    answer = json.loads(await d.producer.storage.get(jobs["night-0"].result.body_key))
    assert answer["object"] == "chat.completion" and "night 0" in answer["choices"][0]["message"]["content"]
    stats = sim_stats(base)
    assert stats["batches_created"] == {"bedrock": len(through)}
    assert stats["batch_lines_billed"]["bedrock"] == 12 and max(stats["batch_billed_ids"].values()) == 1
    assert stats["by_path"][CONVERSE] == 3  # only the short group went realtime
    keys = s3_server.list_keys(S3_BUCKET, prefix)
    assert sum(k.endswith("/records.jsonl.out") for k in keys) == len(through)
    assert not any(k.endswith("/input/records.jsonl") for k in keys)  # inputs leave once harvested


@pytest.mark.parametrize("after_s", [0.4, 1.6], ids=["during-find", "during-create"])
async def test_a_worker_killed_during_the_create_makes_no_second_bedrock_job(bedrock, after_s):
    d, start, _ = bedrock
    # every control-plane answer takes 1 s: the find (list by name), then the create, are on the wire
    env = start({"latency": "1000", "MMQ_SIM_BATCH_COMPLETE_S": "2", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"})
    base = d.base
    worker = d.worker({**env, "MMQ_BATCH_TIER_RESCUE_S": "2"})
    batch = await d.producer.submit_batch(
        chats(MODEL, 12, "kill"), tenant="acme", cache=False, config=CONFIG, tier="batch"
    )
    await wait_pack(d.packs, batch.id, lambda p: p.state == "creating", timeout=90)
    await asyncio.sleep(after_s)
    worker.kill()  # SIGKILL: no clean-up of any kind
    worker.wait()
    d.worker({**env, "MMQ_BATCH_TIER_RESCUE_S": "2"})
    done = await wait_batch(d.records, batch.id, timeout=180)
    assert done.counts.succeeded == 12 and done.counts.paid_twice == 0, done.counts
    made = await harvested(d.packs, batch.id)
    assert all(p.state == "harvested" for p in made) and sum(p.jobs for p in made) == 12
    jobs = await jobs_of(d.records, batch.id)
    assert all(j.attempts[-1].tier == "batch" for j in jobs)
    stats = sim_stats(base)
    assert stats["batches_created"] == {"bedrock": len(made)}  # adopted after the crash, never twice
    assert stats["batch_lines_billed"]["bedrock"] == 12 and max(stats["batch_billed_ids"].values()) == 1
