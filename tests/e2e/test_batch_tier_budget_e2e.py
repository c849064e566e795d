"""Budgets hold the batch tier's calls: a job about to wait for a provider batch holds its estimate at
the batch price against its budgets, as a realtime call holds its own, and waits for room when there is
none. Real worker process, real Redis, the simulator's OpenAI batch API."""

from __future__ import annotations

import asyncio
import time

from mmq.contract import JobStatus
from mmq.pricing import default_book
from mmq.request_models import Kind
from tests.e2e.conftest import wait_batch
from tests.e2e.test_batch_tier_e2e import (  # noqa: F401 (deployment: the fixture)
    chat_lines,
    deployment,
    harvested,
    jobs_of,
    sim_stats,
)
from worker.budget import estimate_micro


async def test_a_batch_budget_holds_provider_batch_lines_and_waiting_jobs_follow_as_room_returns(
    deployment,  # noqa: F811
):
    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    base = deployment.simulator({"MMQ_SIM_BATCH_COMPLETE_S": "3", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"})
    deployment.worker()
    lines = chat_lines(10, "held")
    batch_price = estimate_micro(default_book(), "openai", Kind.chat, lines[0].body, tier="batch")
    realtime_price = estimate_micro(default_book(), "openai", Kind.chat, lines[0].body)
    assert 0 < batch_price < realtime_price  # the hold is the batch price, not the realtime one
    # room for six lines' estimates: the first six wait in a provider batch, four wait for the budget;
    # the answers cost far less than their estimates, so the room they give back lets the four follow
    max_cost = 6 * batch_price
    batch = await producer.submit_batch(
        lines, tenant="acme", cache=False, deadline=time.time() + 7200, max_cost=str(max_cost / 10**6)
    )
    seen_waiting, most_held = 0, 0
    deadline = time.monotonic() + 120
    while True:
        rec = await records.get_batch(batch.id)
        assert rec is not None
        assert rec.spent_micro_usd + rec.reserved_micro_usd <= max_cost  # never above the budget
        seen_waiting = max(seen_waiting, rec.counts.budget)
        most_held = max(most_held, rec.counts.provider_batch)
        if rec.status.value != "in_progress":
            break
        assert time.monotonic() < deadline, rec.counts
        await asyncio.sleep(0.1)
    assert rec.counts.succeeded == 10, rec.counts
    assert seen_waiting > 0 and most_held <= 6  # the budget, not the provider, held the four back
    assert rec.reserved_micro_usd == 0 and 0 < rec.spent_micro_usd <= max_cost  # every hold given back
    jobs = await jobs_of(records, batch.id)
    assert all(j.status is JobStatus.succeeded and j.attempts[-1].tier == "batch" for j in jobs)
    assert rec.spent_micro_usd == sum(j.cost.micro_usd for j in jobs)
    made = await harvested(packs, batch.id)
    assert len(made) >= 2 and sum(p.jobs for p in made) == 10  # the four went in a later pack
    assert sim_stats(base)["by_path"].get("/v1/chat/completions", 0) == 0  # none went realtime


async def test_a_batch_tier_job_over_its_budget_fails_when_the_batch_says_so(deployment):  # noqa: F811
    producer, records = deployment.producer, deployment.records
    deployment.simulator({"MMQ_SIM_BATCH_COMPLETE_S": "2", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"})
    deployment.worker()
    lines = chat_lines(4, "strict")
    batch_price = estimate_micro(default_book(), "openai", Kind.chat, lines[0].body, tier="batch")
    batch = await producer.submit_batch(
        lines,
        tenant="acme",
        cache=False,
        deadline=time.time() + 7200,
        max_cost=str(2 * batch_price / 10**6),
        on_budget="fail",
    )
    done = await wait_batch(records, batch.id, timeout=120)
    jobs = await jobs_of(records, batch.id)
    failed = [j for j in jobs if j.status is JobStatus.failed]
    assert done.counts.succeeded == 2 and len(failed) == 2, done.counts
    assert all(j.error.type == "budget_exceeded" for j in failed)
    assert done.reserved_micro_usd == 0 and done.spent_micro_usd <= 2 * batch_price


async def test_a_targets_own_prices_price_its_provider_batch_lines(deployment):  # noqa: F811
    from decimal import Decimal

    from tests.e2e.test_budget_e2e import NEGOTIATED

    producer, records, packs = deployment.producer, deployment.records, deployment.packs
    deployment.simulator({"MMQ_SIM_BATCH_COMPLETE_S": "2", "MMQ_SIM_BATCH_VALIDATE_S": "0.2"})
    deployment.worker()
    config = {"provider": "openai", "prices": NEGOTIATED}  # gpt-4o-mini at 0.10 / 0.40 per 1M tokens
    batch = await producer.submit_batch(
        chat_lines(3, "contract"), tenant="acme", cache=False, config=config, tier="batch"
    )
    done = await wait_batch(records, batch.id, timeout=120)
    assert done.counts.succeeded == 3, done.counts
    await harvested(packs, batch.id)
    for job in await jobs_of(records, batch.id):
        assert job.attempts[-1].tier == "batch"
        usage = job.usage
        contract = (
            usage["prompt_tokens"] * Decimal("0.10") + usage["completion_tokens"] * Decimal("0.40")
        ) / 10**6
        assert Decimal(job.cost.usd) == contract / 2 and job.cost.tier == "batch", job.cost  # its batch price
