"""The batch tier's enqueued-token quota end to end: real worker processes, real Redis, and the simulator's
OpenAI batches enforcing a quota (MMQ_SIM_BATCH_QUEUE_TOKENS) the way OpenAI does: a batch that would
take the tokens enqueued in unfinished batches past it fails with `token_limit_exceeded`.

With the operator's limit set (a target's `batch_queue_tokens`), mmq packs within it and the provider
never refuses a batch; without one, the provider's refusals teach mmq a lower limit and every job still
goes through a provider batch. Either way nothing runs realtime and the ledger is empty at the end."""

from __future__ import annotations

import time

from mmq.contract import JobStatus
from mmq.pricing.quotes import estimate_job
from mmq.simulator.batches.oai_quota import line_tokens
from tests.e2e.conftest import wait_batch
from tests.e2e.test_batch_tier_e2e import (  # noqa: F401  (deployment: the fixture)
    chat_lines,
    deployment,
    harvested,
    jobs_of,
    sim_stats,
)

N = 12


def per_job_tokens() -> tuple[int, int]:
    """(mmq's estimate, the simulator's count) of one of `chat_lines`' jobs (they differ by a digit)."""
    body = chat_lines(1, "quota")[0].body
    return estimate_job("/v1/chat/completions", body, provider="openai").input_tokens, line_tokens(body)


async def all_through_provider_batches(deployment, batch_id: str) -> list:  # noqa: F811
    records, packs = deployment.records, deployment.packs
    done = await wait_batch(records, batch_id, timeout=180)
    assert done.status.value == "completed" and done.counts.succeeded == N, done.counts
    assert done.counts.paid_twice == 0
    jobs = await jobs_of(records, batch_id)
    assert all(j.status is JobStatus.succeeded and j.attempts[-1].tier == "batch" for j in jobs)
    made = await harvested(packs, batch_id, timeout=120)
    assert await packs.ledgers() == {}  # every pack gave its tokens back
    return made


async def test_packs_stay_within_the_targets_limit_so_the_provider_never_refuses_one(deployment):  # noqa: F811
    mmq_tokens, sim_tokens = per_job_tokens()
    assert mmq_tokens >= sim_tokens  # the estimate errs high: within mmq's limit is within the provider's
    limit = 5 * mmq_tokens  # five jobs at a time: three packs or more for twelve jobs
    base = deployment.simulator(
        {
            "MMQ_SIM_BATCH_QUEUE_TOKENS": str(limit),
            "MMQ_SIM_BATCH_COMPLETE_S": "1",
            "MMQ_SIM_BATCH_VALIDATE_S": "0.2",
        }
    )
    deployment.worker()
    config = {"provider": "openai", "batch_queue_tokens": limit}
    batch = await deployment.producer.submit_batch(
        chat_lines(N, "quota"), tenant="acme", cache=False, tier="batch", config=config
    )
    made = await all_through_provider_batches(deployment, batch.id)
    assert len(made) >= 3 and all(p.state == "harvested" for p in made), [(p.jobs, p.state) for p in made]
    assert sum(p.jobs for p in made) == N and all(p.tokens <= limit for p in made)
    stats = sim_stats(base)
    assert stats["batch_quota_refusals"] == {}  # the provider never saw a batch past its quota
    assert stats["batches_created"] == {"openai": len(made)}
    assert stats["batch_lines_billed"]["openai"] == N and max(stats["batch_billed_ids"].values()) == 1
    assert stats["by_path"].get("/v1/chat/completions", 0) == 0  # nothing went realtime


async def test_without_a_limit_the_providers_refusals_shrink_the_packs_and_nothing_goes_realtime(
    deployment,  # noqa: F811
):
    _, sim_tokens = per_job_tokens()
    base = deployment.simulator(
        {
            "MMQ_SIM_BATCH_QUEUE_TOKENS": str(5 * sim_tokens),
            "MMQ_SIM_BATCH_COMPLETE_S": "1",
            "MMQ_SIM_BATCH_VALIDATE_S": "0.2",
        }
    )
    deployment.worker()
    batch = await deployment.producer.submit_batch(
        chat_lines(N, "learn"), tenant="acme", cache=False, tier="batch", deadline=time.time() + 7200
    )
    made = await all_through_provider_batches(deployment, batch.id)
    refused = [p for p in made if p.state == "failed"]
    assert refused and all("quota" in (p.error or "") and p.jobs == 0 for p in refused)
    ran = [p for p in made if p.state == "harvested"]
    assert sum(p.jobs for p in ran) == N
    stats = sim_stats(base)
    assert stats["batch_quota_refusals"] == {"openai": len(refused)}
    assert stats["batch_lines_billed"]["openai"] == N and max(stats["batch_billed_ids"].values()) == 1
    assert stats["by_path"].get("/v1/chat/completions", 0) == 0
