"""Money per job and batch, and budgets that hold: real worker processes racing on real Redis against
the simulator, whose usage the price book turns into each job's cost."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from mmq.budgets import Budgets
from mmq.connections import connect
from mmq.contract import JobStatus
from mmq.pricing import default_book
from mmq.records import Records
from mmq.request_models import Kind
from mmq.settings import Settings
from mmq.storage import open_storage
from producer.options import LineError
from producer.submit import BatchLine, Producer
from tests.e2e.conftest import KEY_A, KEY_B, _spawn, _stop, run_mmq, wait_batch
from worker.budget import estimate_micro

# gpt-4o-mini's list prices in the shipped book (USD per 1M tokens; ../shared/reference/pricing.md)
MINI_IN, MINI_OUT = Decimal("0.15"), Decimal("0.60")


def lines(n: int, tag: str, model: str = "gpt-4o-mini", max_tokens: int = 200) -> list[BatchLine]:
    return [
        BatchLine(
            body={
                "model": model,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": f"{tag}: describe product number {i}"}],
            },
            url="/v1/chat/completions",
            custom_id=f"{tag}-{i}",
        )
        for i in range(n)
    ]


@pytest.fixture
async def deployment(redis_url: str, storage_url: str, simulator: str, tmp_path: Path):
    """start(n): n worker processes; a producer, the records and the budgets on the same Redis."""
    env = {
        "MMQ_REDIS_URL": redis_url,
        "MMQ_STORAGE_URL": storage_url,
        "MMQ_OPENAI_BASE_URL": simulator,
        "MMQ_OPENAI_API_KEY": "sk-test",
        "MMQ_POLL_DELAY_S": "0.05",
        "MMQ_MAX_JOBS": "4",
    }
    settings = Settings(redis_url=redis_url, storage_url=storage_url)
    redis = connect(redis_url)
    workers = []

    def start(n: int = 1) -> None:
        for _ in range(n):
            workers.append(_spawn(["worker"], env, tmp_path / f"worker-{len(workers)}.log"))

    try:
        yield (
            start,
            Producer(redis, open_storage(storage_url), settings),
            Records(redis, settings.key_prefix),
            Budgets(redis, settings.key_prefix),
        )
    finally:
        for w in workers:
            _stop(w)
        await redis.aclose()


async def jobs_of(records: Records, batch_id: str) -> list:
    ids = [i async for chunk in records.iter_batch_job_ids(batch_id) for i in chunk]
    return await records.get_jobs(ids)


async def nothing_due(budgets: Budgets) -> bool:
    """No waiting job is due to check its budget again (a woken one is swept within a second)."""
    waiting = budgets.keys.budget_waiting()
    return await budgets.redis.zcount(waiting, "-inf", int(time.time() * 1000)) == 0


async def settled(records: Records, budgets: Budgets, batch_id: str, quiet_s: float = 3.0):
    """The batch once its jobs have stopped moving: nothing queued, running, held or due, and the same
    counts `quiet_s` later (a woken job sits in arq's queue, still `budget`, until a worker starts it)."""

    async def still(b):
        return (
            b.counts.queued == b.counts.running == 0
            and b.reserved_micro_usd == 0
            and await nothing_due(budgets)
        )

    while True:
        b = await records.get_batch(batch_id)
        if b.counts.budget > 0 and await still(b):
            await asyncio.sleep(quiet_s)
            again = await records.get_batch(batch_id)
            if again.counts == b.counts and await still(again):
                return again
        await asyncio.sleep(0.1)


async def test_each_job_costs_its_reported_usage_and_the_batch_their_sum(deployment):
    start, producer, records, _ = deployment
    start(1)
    batch = await producer.submit_batch(lines(6, "cost"), tenant="acme", cache=False)
    done = await wait_batch(records, batch.id, timeout=60)
    assert done.counts.succeeded == 6
    jobs = await jobs_of(records, batch.id)
    total = 0
    for job in jobs:
        usage = job.usage
        expected = (usage["prompt_tokens"] * MINI_IN + usage["completion_tokens"] * MINI_OUT) / 1_000_000
        assert Decimal(job.cost.usd) == expected, (job.cost, usage)
        assert job.cost.priced_as == "openai/gpt-4o-mini" and job.cost.missing is None
        total += job.cost.micro_usd
    assert done.spent_micro_usd == total > 0
    assert done.reserved_micro_usd == 0  # every hold was given back
    today = await deployment[3].tenant("acme")
    assert today["day"].spent == today["month"].spent == total


async def test_an_unknown_model_says_no_price_and_still_runs_under_a_budget(deployment):
    start, producer, records, _ = deployment
    start(1)
    batch = await producer.submit_batch(
        lines(3, "unpriced", model="mmq-sim-unpriced-9"), tenant="acme", cache=False, max_cost="0.000001"
    )
    done = await wait_batch(records, batch.id, timeout=60)
    assert done.counts.succeeded == 3
    for job in await jobs_of(records, batch.id):
        assert job.cost.missing == "no price for openai/mmq-sim-unpriced-9" and job.cost.micro_usd == 0
    assert done.spent_micro_usd == 0


async def test_a_budget_holds_against_four_racing_workers_and_a_raise_resumes_the_waiting_jobs(deployment):
    start, producer, records, budgets = deployment
    # each call holds its high estimate (~20 prompt tokens + 200 output at gpt-4o-mini's prices, 123
    # micro-USD) and really costs ~12: a 0.0003 USD budget lets about 15 of the 40 run, never more
    limit = 300
    batch = await producer.submit_batch(lines(40, "race"), tenant="acme", cache=False, max_cost="0.0003")
    start(4)

    b = await asyncio.wait_for(settled(records, budgets, batch.id), timeout=120)
    assert 0 < b.counts.succeeded < 40 and b.counts.failed == 0
    # it stopped because the next call could pass the budget, not earlier (no waiting job was forgotten)
    estimate = estimate_micro(default_book(), "openai", Kind.chat, lines(1, "race")[0].body)
    assert b.spent_micro_usd + estimate > limit
    assert b.counts.budget == 40 - b.counts.succeeded  # the others wait, resumable
    assert b.spent_micro_usd <= limit  # never above the budget
    assert b.counts.provider_calls == b.counts.succeeded  # a waiting job called no provider
    jobs = await jobs_of(records, batch.id)
    assert b.spent_micro_usd == sum(j.cost.micro_usd for j in jobs if j.cost)
    waiting = [j for j in jobs if j.status is JobStatus.budget]
    assert len(waiting) == b.counts.budget and all(j.cost is None for j in waiting)

    assert await budgets.set_batch(batch.id, "1")  # raised: the waiting jobs run
    done = await wait_batch(records, batch.id, timeout=90)
    assert done.status.value == "completed" and done.counts.succeeded == 40 and done.counts.budget == 0
    jobs = await jobs_of(records, batch.id)
    assert done.spent_micro_usd == sum(j.cost.micro_usd for j in jobs)
    assert done.counts.provider_calls == 40  # nothing ran twice


async def test_a_batch_that_chose_to_fail_fails_its_jobs_with_budget_exceeded(deployment):
    start, producer, records, _ = deployment
    start(1)
    batch = await producer.submit_batch(
        lines(8, "strict"), tenant="acme", cache=False, max_cost="0.0003", on_budget="fail"
    )
    done = await wait_batch(records, batch.id, timeout=60)
    assert done.status.value == "completed"
    assert done.counts.succeeded > 0 and done.counts.failed > 0
    assert done.counts.succeeded + done.counts.failed == 8 and done.spent_micro_usd <= 300
    failed = [j for j in await jobs_of(records, batch.id) if j.status is JobStatus.failed]
    assert all(j.error.type == "budget_exceeded" for j in failed)
    assert "would exceed the batch budget (max_cost $0.0003" in failed[0].error.message


async def test_a_tenant_day_budget_stops_its_jobs_until_the_operator_raises_it(deployment):
    start, producer, records, budgets = deployment
    await budgets.set_tenant("acme", "day", "0.0002")
    start(1)
    batch = await producer.submit_batch(lines(10, "daily"), tenant="acme", cache=False)
    other = await producer.submit_batch(lines(3, "other-tenant"), tenant="globex", cache=False)
    assert (await wait_batch(records, other.id, timeout=60)).counts.succeeded == 3  # not acme's budget

    b = await asyncio.wait_for(settled(records, budgets, batch.id), timeout=90)
    spend = await budgets.tenant("acme")
    assert spend["day"].spent <= 200 and spend["day"].limit == 200
    assert b.counts.succeeded + b.counts.budget == 10
    await budgets.set_tenant("acme", "day", "1")
    done = await wait_batch(records, batch.id, timeout=60)
    assert done.counts.succeeded == 10


def test_over_http_a_batch_waits_at_its_budget_shows_its_cost_and_a_patch_resumes_it(api, mmq_env):
    a = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    body = {
        "requests": [{"custom_id": x.custom_id, "url": x.url, "body": x.body} for x in lines(6, "http")],
        "cache": False,
        "max_cost": "0.0002",
    }
    r = a.post("/api/batches", json=body)
    assert r.status_code == 201, r.text
    batch_id = r.json()["id"]
    assert r.json()["cost"]["max_cost_usd"] == "0.0002"

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = a.get(f"/api/batches/{batch_id}").json()
        if view["counts"]["budget"] > 0 and view["counts"]["succeeded"] > 0:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the budget never stopped the batch: {view}")
    assert Decimal(view["cost"]["spent_usd"]) <= Decimal("0.0002")
    spend = a.get("/api/spend").json()
    assert spend["tenant"] == "tenant-a" and Decimal(spend["day"]["spent_usd"]) > 0
    assert spend["day"]["limit_usd"] is None  # no tenant budget: only the batch's

    status = run_mmq("status", batch_id, env=mmq_env)  # admin mode: any batch by its id
    assert "waiting for the budget" in status.stdout and "of a $0.0002 budget" in status.stdout, status

    assert a.patch(f"/api/batches/{batch_id}", json={"max_cost": "0"}).status_code == 422  # not a budget
    assert a.patch(f"/api/batches/{batch_id}", json={"max_cost": "5"}).json()["cost"]["max_cost_usd"] == "5"
    deadline = time.monotonic() + 60
    while (view := a.get(f"/api/batches/{batch_id}").json())["status"] != "completed":
        assert time.monotonic() < deadline, view
        time.sleep(0.2)
    assert view["counts"]["succeeded"] == 6
    jobs = a.get(f"/api/batches/{batch_id}/jobs").json()["data"]
    assert sum(Decimal(j["cost"]["usd"]) for j in jobs) <= Decimal(view["cost"]["spent_usd"])
    assert sum(j["cost"]["micro_usd"] for j in jobs) == int(Decimal(view["cost"]["spent_usd"]) * 1_000_000)
    # another tenant cannot touch it
    b = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {KEY_B}"}, timeout=30)
    assert b.patch(f"/api/batches/{batch_id}", json={"max_cost": "9"}).status_code == 404


def test_the_operator_sets_and_shows_tenant_budgets_from_the_command_line(mmq_env):
    done = run_mmq("budget", "set", "--tenant", "acme", "--day", "12.50", "--month", "$300", env=mmq_env)
    assert done.returncode == 0, done.stderr
    assert "acme this day: $0 spent of $12.5" in done.stdout and "of $300" in done.stdout
    shown = run_mmq("budget", "show", "--tenant", "acme", "--json", env=mmq_env)
    assert json.loads(shown.stdout)["month"]["limit_usd"] == "300"
    bad = run_mmq("budget", "set", "--tenant", "acme", "--day", "lots", env=mmq_env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "--day 'lots'" in bad.stderr
    removed = run_mmq("budget", "set", "--tenant", "acme", "--day", "none", env=mmq_env)
    assert "acme this day: $0 spent of no budget" in removed.stdout
    missing = run_mmq("budget", "batch", "batch_nope", "--max-cost", "3", env=mmq_env)
    assert missing.returncode != 0 and "no batch batch_nope" in missing.stderr


NEGOTIATED = {
    "providers": {
        "openai": {
            "models": {
                "gpt-4o-mini": {
                    "effective_from": "2024-01-01",
                    "source": "our contract",
                    "chat": {"input": 0.10, "output": 0.40},
                }
            }
        }
    }
}


async def test_a_routing_targets_own_prices_price_its_jobs_and_a_bad_one_is_refused_at_submit(deployment):
    start, producer, records, _ = deployment
    start(1)
    config = {"provider": "openai", "prices": NEGOTIATED}
    batch = await producer.submit_batch(lines(3, "contract"), tenant="acme", cache=False, config=config)
    done = await wait_batch(records, batch.id, timeout=60)
    assert done.counts.succeeded == 3
    for job in await jobs_of(records, batch.id):
        usage = job.usage
        expected = (
            usage["prompt_tokens"] * Decimal("0.10") + usage["completion_tokens"] * Decimal("0.40")
        ) / 10**6
        assert Decimal(job.cost.usd) == expected
    bad = {
        "provider": "openai",
        "prices": {"providers": {"openai": {"models": {"x": {"chat": {"input": "lots"}}}}}},
    }
    with pytest.raises(LineError, match="prices"):
        await producer.submit_batch(lines(1, "bad"), tenant="acme", config=bad)
