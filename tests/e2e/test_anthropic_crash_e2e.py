"""A worker killed after Anthropic made its Message Batch but before the worker heard back: the batch
carries no tag, so the next worker finds it by its size and creation time and adopts it instead of
creating a second. Real worker processes, real Redis, the simulator (its create answers 3 s after the
batch exists)."""

from __future__ import annotations

import asyncio
import json
import time

from tests.e2e.conftest import wait_batch
from tests.e2e.test_batch_tier_e2e import (  # noqa: F401 (deployment: the fixture)
    chat_lines,
    deployment,
    sim_stats,
    wait_pack,
)

CONFIG = {"strategy": {"mode": "single"}, "targets": [{"provider": "anthropic", "virtual_key": "sim-claude"}]}


async def test_a_message_batch_made_before_a_crash_is_adopted_not_made_twice(deployment, tmp_path):  # noqa: F811
    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    base = deployment.simulator(
        {
            "MMQ_SIM_BATCH_CREATE_REPLY_S": "3",
            "MMQ_SIM_BATCH_COMPLETE_S": "2",
            "MMQ_SIM_BATCH_VALIDATE_S": "0.2",
        }
    )
    secrets = tmp_path / "secrets.json"
    secrets.write_text(
        json.dumps({"sim-claude": {"api_key": "sk-ant-sim", "base_url": base.removesuffix("/v1")}})
    )
    env = {"MMQ_SECRETS_FILE": str(secrets), "MMQ_BATCH_TIER_RESCUE_S": "2"}
    worker = deployment.worker(env)
    batch = await producer.submit_batch(
        chat_lines(5, "crash", "claude-sonnet-4-5"), tenant="acme", cache=False, config=CONFIG, tier="batch"
    )
    await wait_pack(packs, batch.id, lambda p: p.state == "creating" and p.create_sent_at is not None)
    deadline = time.monotonic() + 30
    while sim_stats(base)["batches_created"].get("anthropic", 0) < 1:  # made, and not yet answered
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    worker.kill()  # SIGKILL: the create's answer never arrives
    worker.wait()
    deployment.worker(env)
    done = await wait_batch(records, batch.id, timeout=120)
    assert done.counts.succeeded == 5 and done.counts.paid_twice == 0, done.counts
    stats = sim_stats(base)
    assert stats["batches_created"] == {"anthropic": 1}  # adopted, never made twice
    assert stats["batch_lines_billed"]["anthropic"] == 5 and max(stats["batch_billed_ids"].values()) == 1
    made = await packs.batch_packs(batch.id)
    assert len(made) == 1 and made[0].provider_batch_id
