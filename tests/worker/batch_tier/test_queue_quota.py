"""The enqueued-token quota: the ledger's atomic moves on a real Redis (packing stops at the limit, every
end gives the tokens back, a refusal teaches a lower limit, jobs waiting for room can leave for a realtime
call), the worker's decisions (a job's tokens by the quote's estimate, what counts as a quota refusal,
which waiting jobs cannot wait any longer), and the simulator's OpenAI-format quota that fails a batch
with `token_limit_exceeded` as OpenAI does."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from mmq.connections import connect
from mmq.errors import ProviderError
from mmq.packs import Packs, group_of
from mmq.pricing.book import default_book
from mmq.pricing.quotes import estimate_job
from mmq.request_models import Kind
from mmq.simulator.batches.oai_quota import line_tokens
from tests.worker.batch_tier.conftest import FAST
from tests.worker.batch_tier.helpers import chat_request, ended
from worker.batch_tier import quota
from worker.batch_tier.apis.openai import OpenAIBatches
from worker.providers.base import Target
from worker.providers.openai import OpenAIAdapter

GROUP = group_of("openai", "sim", "gpt-4o-mini", "chat")
LEDGER = "openai:sim-key:gpt-4o-mini"
FIELDS = {"target": "sim", "model": "gpt-4o-mini", "kind": "chat", "provider": "openai"}


# ------------------------------------------------------------------------------- the ledger, real Redis
@pytest.fixture
async def packs(redis_url):
    redis = connect(redis_url)
    yield Packs(redis, "mmqt")
    await redis.aclose()


async def waiting_jobs(packs: Packs, tokens: list[int], batch: str = "b1") -> list[str]:
    """Jobs as a deposit leaves them: `provider_batch`, their tokens on their hash, in the group's zset."""
    ids = [f"job-{i}" for i in range(len(tokens))]
    now_ms = int(time.time() * 1000)
    for n, (job_id, t) in enumerate(zip(ids, tokens, strict=True)):
        await packs.redis.hset(
            packs.keys.job(job_id), mapping={"status": "provider_batch", "nb_tokens": t, "batch": batch}
        )
        await packs.redis.zadd(packs.keys.nb_open(GROUP), {job_id: now_ms + n})
    await packs.redis.sadd(packs.keys.nb_groups(), packs.keys.nb_open(GROUP))
    return ids


async def test_packing_stops_at_the_limit_and_an_ended_pack_makes_room(packs):
    ids = await waiting_jobs(packs, [100] * 5)
    first, got, limited = await packs.open_pack(GROUP, 1000, FIELDS, LEDGER, 250)
    assert got == ids[:2] and limited  # a third job would make 300 > 250
    assert await packs.enqueued(LEDGER) == 200
    pack = await packs.get(first)
    assert pack is not None and (pack.tokens, pack.ledger, pack.held) == (200, LEDGER, True)
    # the ledger is full: nothing is packed, the jobs wait
    _, none, limited = await packs.open_pack(GROUP, 1000, FIELDS, LEDGER, 250)
    assert none == [] and limited and await packs.waiting(GROUP) == 3
    # the pack ends (whatever the end): its tokens go back, once
    await packs.done(first, state="harvested")
    await packs.done(first)
    assert await packs.enqueued(LEDGER) == 0 and await packs.ledgers() == {}
    ended_pack = await packs.get(first)
    assert ended_pack is not None and ended_pack.state == "harvested" and not ended_pack.held
    assert first not in {p.id for p in await packs.active()}
    _, got, limited = await packs.open_pack(GROUP, 1000, FIELDS, LEDGER, 250)
    assert got == ids[2:4] and limited
    # without a limit everything goes
    _, got, limited = await packs.open_pack(GROUP, 1000, FIELDS, LEDGER, None)
    assert got == ids[4:] and not limited and await packs.enqueued(LEDGER) == 300


async def test_a_job_over_the_whole_limit_goes_alone_when_nothing_else_is_enqueued(packs):
    ids = await waiting_jobs(packs, [1000, 10])
    _, got, limited = await packs.open_pack(GROUP, 1000, FIELDS, LEDGER, 250)
    assert got == ids[:1] and limited  # the provider decides; the next job waits behind it
    _, got, _ = await packs.open_pack(GROUP, 1000, FIELDS, LEDGER, 250)
    assert got == []


async def test_jobs_given_back_take_their_tokens_with_them(packs):
    ids = await waiting_jobs(packs, [100, 120, 140])
    pack_id, got, _ = await packs.open_pack(GROUP, 1000, FIELDS, LEDGER, None)
    assert got == ids and await packs.enqueued(LEDGER) == 360
    assert await packs.give_back(pack_id, GROUP, 1, ids[1:]) == 2  # the byte limit's split
    assert await packs.job_ids(pack_id) == ids[:1] and await packs.waiting_ids(GROUP) == ids[1:]
    pack = await packs.get(pack_id)
    assert pack is not None and (pack.jobs, pack.tokens) == (1, 100)
    assert await packs.enqueued(LEDGER) == 100
    assert await packs.redis.hget(packs.keys.job(ids[1]), "pack") is None


async def test_a_refusal_ends_the_pack_puts_its_jobs_back_and_lowers_the_limit_for_a_while(packs):
    ids = await waiting_jobs(packs, [100] * 4)
    pack_id, got, _ = await packs.open_pack(GROUP, 1000, FIELDS, LEDGER, None)
    assert len(got) == 4
    back = await packs.refused(pack_id, GROUP, quota.learned_limit(0, 400), state="failed", error="quota")
    assert back == 4 and await packs.waiting_ids(GROUP) == ids
    assert await packs.enqueued(LEDGER) == 0 and await packs.learned(LEDGER) == 200
    assert 0 < await packs.redis.ttl(packs.keys.nb_learned(LEDGER)) <= 3600
    pack = await packs.get(pack_id)
    assert pack is not None and (pack.state, pack.jobs, pack.held) == ("failed", 0, False)
    # the learned limit binds below the operator's, and only ever goes down
    _, got, limited = await packs.open_pack(GROUP, 1000, FIELDS, LEDGER, 10_000)
    assert got == ids[:2] and limited
    await packs.release(pack_id, None, learned=500)
    assert await packs.learned(LEDGER) == 200


async def test_waiting_jobs_can_leave_for_a_realtime_call(packs):
    ids = await waiting_jobs(packs, [100, 100])
    moved = await packs.to_realtime("mmqt:queue", ids[:1], group=GROUP)
    assert moved == ids[:1] and await packs.waiting_ids(GROUP) == ids[1:]
    assert await packs.redis.hget(packs.keys.job(ids[0]), "status") == b"queued"
    assert await packs.deadlines(ids) == [None, None]


async def test_a_groups_quota_record(packs):
    assert await packs.quota(GROUP) == ("openai:sim:gpt-4o-mini", None)  # before any deposit wrote one
    pipe = packs.redis.pipeline(transaction=False)
    packs.queue_quota(pipe, GROUP, LEDGER, 5000)
    await pipe.execute()
    assert await packs.quota(GROUP) == (LEDGER, 5000)
    await waiting_jobs(packs, [1])
    assert await packs.groups_of(LEDGER) == [GROUP] and await packs.groups_of("other") == []


# -------------------------------------------------------------------------------- the worker's decisions
def test_a_jobs_tokens_are_the_quotes_estimate():
    request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 400}]}
    route = SimpleNamespace(
        request=request, prices=None, target=Target("sim", "openai", "http://sim/v1"), bucket=LEDGER
    )
    rt = SimpleNamespace(prices=default_book())
    expected = estimate_job("/v1/chat/completions", request, provider="openai").input_tokens
    assert quota.input_tokens(rt, route, Kind.chat) == expected >= 100  # type: ignore[arg-type]
    # the estimate errs high of what the provider (the simulator) counts for the same text
    assert expected >= line_tokens(request)
    assert quota.ledger_of(route) == LEDGER  # type: ignore[arg-type]


def test_what_counts_as_a_quota_refusal():
    assert quota.is_quota_refusal("token_limit_exceeded: Enqueued token limit reached for gpt-4o")
    assert quota.is_quota_refusal(ProviderError("quota", status=429, code="RESOURCE_EXHAUSTED"), "gemini")
    # a 429 where the batch queue is not counted in tokens is a rate or concurrency limit
    assert not quota.is_quota_refusal(ProviderError("4 jobs", status=429), "vertex-anthropic")
    assert quota.is_quota_refusal(ProviderError("token_limit_exceeded: …", status=400), "azure-openai")
    assert not quota.is_quota_refusal("invalid_json_line: This line is not parseable (line 3)")
    assert not quota.is_quota_refusal(ProviderError("bad model", status=400, code="model_not_found"))
    assert not quota.is_quota_refusal(None)
    assert quota.learned_limit(1000, 500) == 1250 and quota.learned_limit(0, 1) == 1


def test_waiting_jobs_leave_for_realtime_at_their_own_moment():
    now = 10_000.0
    # 1 job/s, a margin of 10 s: "a" must leave now; "b", second in line (2 s of realtime), at now + 1
    dated = [(now + 13, "b"), (now + 5, "a"), (now + 100, "c")]
    assert quota.due(dated, 1.0, 10, now) == (["a"], now + 1)
    # at now + 1, "b" is due too; "c" (third in line: 3 s of realtime) at now + 87
    assert quota.due(dated, 1.0, 10, now + 1) == (["a", "b"], now + 87)
    assert quota.due([], 1.0, 10, now) == ([], None)


# ------------------------------------------------------------------------------------ the simulator's
async def test_the_simulator_fails_a_batch_past_its_enqueued_token_quota(make_sim):
    api, target = OpenAIBatches(), Target("sim", "openai", "http://sim/v1", api_key="sk-test")
    adapter = OpenAIAdapter()
    request = chat_request("x" * 400, "gpt-4o-mini")
    per_line = line_tokens(request)
    client, app = make_sim(**{**FAST, "batch_complete_s": 2.0}, batch_queue_tokens=per_line * 3)

    def lines(n: int, tag: str) -> list[dict]:
        wire = adapter.translate(target, Kind.chat, request)
        return [api.line(f"{tag}-{i}", Kind.chat, wire) for i in range(n)]

    first = await api.create(client, target, Kind.chat, "gpt-4o-mini", lines(2, "a"), {"mmq_pack": "a"})
    second = await api.create(client, target, Kind.chat, "gpt-4o-mini", lines(2, "b"), {"mmq_pack": "b"})
    refused = await ended(api, client, target, second.id)
    assert refused.state == "failed" and quota.is_quota_refusal(refused.error), refused
    assert "token_limit_exceeded" in (refused.error or "")
    assert app.state.stats.batch_quota_refusals == {"openai": 1}  # type: ignore[attr-defined]
    # once the first batch has ended its tokens are free again
    assert (await ended(api, client, target, first.id)).state == "ended"
    third = await api.create(client, target, Kind.chat, "gpt-4o-mini", lines(3, "c"), {"mmq_pack": "c"})
    assert (await ended(api, client, target, third.id)).state == "ended"
    assert app.state.stats.batch_quota_refusals == {"openai": 1}  # type: ignore[attr-defined]


def test_a_targets_batch_queue_tokens_is_checked_at_submit_and_inherited():
    from mmq.routing import parse_config, plan

    with pytest.raises(ValueError, match="batch_queue_tokens"):
        parse_config({"provider": "openai", "batch_queue_tokens": 0})
    with pytest.raises(ValueError, match="batch_queue_tokens"):
        parse_config({"provider": "openai", "batch_queue_tokens": "90000"})
    config = parse_config(
        {
            "strategy": {"mode": "fallback"},
            "batch_queue_tokens": 90_000,
            "targets": [{"provider": "openai"}, {"provider": "openai", "batch_queue_tokens": 5_000}],
        }
    )
    leaves = plan(config, params={"model": "gpt-4o-mini"}, metadata={})
    assert [leaf.batch_queue_tokens for leaf in leaves] == [90_000, 5_000]


def test_an_images_tokens_come_from_the_size_prepare_measured_else_the_rules_maximum():
    from worker.prepare import ImageFacts

    url = "data:image/png;base64,AAAA"
    request = chat_request("what colour?", "gpt-4o", image=url)
    route = SimpleNamespace(request=request, prices=None, target=Target("sim", "openai", "http://sim/v1"))
    rt = SimpleNamespace(prices=default_book())
    measured = {url: ImageFacts("image/png", 512, 512, 1000)}
    assert quota.image_sizes(request, measured) == ((512, 512),)
    assert quota.image_sizes(request, {}) == (None,)
    sized = quota.input_tokens(rt, route, Kind.chat, measured)  # type: ignore[arg-type]
    unsized = quota.input_tokens(rt, route, Kind.chat)  # type: ignore[arg-type]
    text_route = SimpleNamespace(**{**vars(route), "request": chat_request("what colour?", "gpt-4o")})
    text_only = quota.input_tokens(rt, text_route, Kind.chat)  # type: ignore[arg-type]
    assert text_only + 255 == sized < unsized  # gpt-4o: 85 + 170 per 512 px tile
