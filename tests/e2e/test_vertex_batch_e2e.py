"""Vertex AI batch prediction end to end: real Redis, a real worker process, and the simulator standing
in for both Vertex AI (Gemini and Claude on Vertex) and Cloud Storage; a tier=auto batch goes through
Vertex batch prediction at the batch price, its input and output through the simulated bucket."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import httpx

from mmq.contract import JobStatus, Tier
from mmq.pricing import cost_of
from producer.submit import BatchLine
from tests.e2e.conftest import wait_batch
from tests.e2e.test_batch_tier_e2e import (  # noqa: F401 (deployment: the fixture)
    deployment,
    harvested,
    jobs_of,
    sim_stats,
    wait_pack,
)

GEMINI, CLAUDE = "gemini-2.5-flash", "claude-sonnet-4-5@20250929"
PLACE = {"x-mmq-vertex-project": "sim-project", "x-mmq-vertex-location": "us-central1"}
CONFIG = {
    "strategy": {
        "mode": "conditional",
        "conditions": [{"query": {"params.model": {"$eq": CLAUDE}}, "then": "claude"}],
        "default": "gemini",
    },
    "targets": [
        {"name": "claude", "provider": "vertex-anthropic", "virtual_key": "sim-claude-vertex"},
        {"name": "gemini", "provider": "vertex", "virtual_key": "sim-vertex"},
    ],
}


def lines() -> list[BatchLine]:
    chats = [
        BatchLine(
            body={
                "model": model,
                "max_tokens": 40,
                "messages": [{"role": "user", "content": f"{tag} item {i}"}],
            },
            url="/v1/chat/completions",
            custom_id=f"{tag}-{i}",
        )
        for model, tag, n in ((GEMINI, "ge", 4), (CLAUDE, "cl", 3))
        for i in range(n)
    ]
    image = BatchLine(  # Imagen: no batch on Vertex in mmq, so realtime inside the window
        body={"model": "imagen-4.0-generate-001", "prompt": "a red lamp", "n": 1},
        url="/v1/images/generations",
        custom_id="img",
    )
    return [*chats, image]


async def test_auto_sends_vertex_chats_through_vertex_batch_prediction_at_half_price(deployment, tmp_path):  # noqa: F811
    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    base = deployment.simulator({"MMQ_SIM_BATCH_COMPLETE_S": "2", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"})
    root = base.removesuffix("/v1")
    secrets = tmp_path / "secrets.json"
    entry = {"api_key": "ya29.sim-token", "base_url": root, "headers": PLACE}
    secrets.write_text(json.dumps({"sim-vertex": entry, "sim-claude-vertex": entry}))
    deployment.worker(
        {
            "MMQ_SECRETS_FILE": str(secrets),
            "MMQ_VERTEX_BATCH_GCS_URI": "gs://mmq-e2e/batch-tier",
            "MMQ_GCS_BASE_URL": root,  # the simulator stands in for storage.googleapis.com
        }
    )
    batch = await producer.submit_batch(
        lines(), tenant="acme", cache=False, config=CONFIG, deadline=time.time() + 7200
    )
    assert batch.tier is Tier.auto
    done = await wait_batch(records, batch.id, timeout=180)
    assert done.status.value == "completed" and done.counts.succeeded == 8, done.counts
    assert done.counts.provider_batch == 0 and done.counts.paid_twice == 0
    made = await harvested(packs, batch.id, timeout=120)
    assert {(p.provider, p.kind) for p in made} == {("vertex", "chat"), ("vertex-anthropic", "chat")}
    assert all(p.state == "harvested" and p.provider_batch_id for p in made)
    jobs = {j.custom_id: j for j in await jobs_of(records, batch.id)}
    saved = 0
    for tag, provider, model, n in (("ge", "vertex", GEMINI, 4), ("cl", "vertex-anthropic", CLAUDE, 3)):
        theirs = {p.provider_batch_id for p in made if p.provider == provider}
        for i in range(n):
            job = jobs[f"{tag}-{i}"]
            assert job.status is JobStatus.succeeded, (job.custom_id, job.error)
            assert job.attempts[-1].tier == "batch" and job.attempts[-1].provider_batch in theirs
            assert job.cost.tier == "batch" and job.cost.missing is None
            realtime = cost_of(provider, model, "chat", job.usage).amount
            assert realtime > 0 and Decimal(job.cost.usd) == realtime / 2  # the batch price
            saved += job.cost.saved_micro_usd
    assert jobs["img"].attempts[-1].tier is None and jobs["img"].status is JobStatus.succeeded
    stats = sim_stats(base)
    assert stats["batches_created"] == {
        "vertex": sum(p.provider == "vertex" for p in made),
        "vertex-anthropic": sum(p.provider == "vertex-anthropic" for p in made),
    }
    assert stats["batch_lines_billed"] == {"vertex": 4, "vertex-anthropic": 3}
    assert max(stats["batch_billed_ids"].values()) == 1  # no line paid twice
    realtime_paths = [path for path in stats["by_path"] if path.endswith((":generateContent", ":rawPredict"))]
    assert all(stats["by_path"][path] == 0 for path in realtime_paths)  # no chat went realtime
    assert stats["by_path"]["/upload/storage/v1/b/{bucket}/o"] == len(made)  # one input object a pack
    assert done.saved_micro_usd == saved > 0
    # harvested packs leave nothing in the bucket
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(
            f"{root}/storage/v1/b/mmq-e2e/o",
            params={"prefix": "batch-tier/"},
            headers={"authorization": "Bearer t"},
        )
    listed = answer.json()
    assert "items" not in listed, listed


async def test_without_a_bucket_vertex_jobs_run_realtime(deployment, tmp_path):  # noqa: F811
    producer, records = deployment.producer, deployment.records
    base = deployment.simulator({"MMQ_SIM_BATCH_COMPLETE_S": "2"})
    root = base.removesuffix("/v1")
    secrets = tmp_path / "secrets.json"
    entry = {"api_key": "ya29.sim-token", "base_url": root, "headers": PLACE}
    secrets.write_text(json.dumps({"sim-vertex": entry, "sim-claude-vertex": entry}))
    deployment.worker({"MMQ_SECRETS_FILE": str(secrets)})  # no MMQ_VERTEX_BATCH_GCS_URI
    batch = await producer.submit_batch(
        lines()[:-1], tenant="acme", cache=False, config=CONFIG, deadline=time.time() + 7200
    )
    done = await wait_batch(records, batch.id, timeout=180)
    assert done.counts.succeeded == 7, done.counts
    assert all(j.attempts[-1].tier is None for j in await jobs_of(records, batch.id))
    stats = sim_stats(base)
    assert stats["batches_created"] == {} and stats["batch_lines_billed"] == {}


async def test_a_worker_killed_while_creating_a_vertex_job_creates_it_once(deployment, tmp_path):  # noqa: F811
    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    # every simulator answer takes 1 s: the upload and the create are on the wire for 2 s
    base = deployment.simulator(
        {"latency": "1000", "MMQ_SIM_BATCH_COMPLETE_S": "3", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"}
    )
    root = base.removesuffix("/v1")
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"sim-vertex": {"api_key": "ya29.t", "base_url": root, "headers": PLACE}}))
    env = {
        "MMQ_SECRETS_FILE": str(secrets),
        "MMQ_VERTEX_BATCH_GCS_URI": "gs://mmq-e2e/crash",
        "MMQ_GCS_BASE_URL": root,
        "MMQ_BATCH_TIER_RESCUE_S": "2",
    }
    worker = deployment.worker(env)
    batch = await producer.submit_batch(lines()[:4], tenant="acme", cache=False, config=CONFIG, tier="batch")
    await wait_pack(packs, batch.id, lambda p: p.state == "creating", timeout=120)
    # find (1 s) and upload (1 s) done, the create on the wire: the restarted worker looks the job up by
    # its displayName, writes the same input object again and creates the job once
    await asyncio.sleep(2.5)
    worker.kill()  # SIGKILL: no clean-up of any kind
    worker.wait()
    deployment.worker(env)
    done = await wait_batch(records, batch.id, timeout=180)
    assert done.counts.succeeded == 4 and done.counts.paid_twice == 0, done.counts
    made = await harvested(packs, batch.id, timeout=120)
    assert all(p.state == "harvested" for p in made)
    stats = sim_stats(base)
    assert stats["batches_created"] == {"vertex": len(made)}  # adopted by its displayName, never twice
    assert stats["batch_lines_billed"] == {"vertex": 4} and max(stats["batch_billed_ids"].values()) == 1
