"""The batch page's job table (pages, filters with bounded work, custom_id search), its statistics (jobs
finished per interval, throughput, ETA, failures by type) and the batches list."""

from __future__ import annotations

import re

import pytest

from mmq.contract import BatchCounts, BatchRecord, BatchStatus, JobError, JobStatus
from producer.console import reads
from tests.producer.console.conftest import KEY_A, Env, end_job, job_records, line, submit

CHAT = "/v1/chat/completions"


def text_chat(n: int) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"line {n}"}]}


def rows_of(html: str) -> list[str]:
    return re.findall(r'<tr data-job="([^"]+)"', html)


def custom_ids(html: str) -> list[str]:
    return re.findall(r'<td class="id"><a href="/console/jobs/[^"]+">([^<]+)</a>', html)


@pytest.fixture
async def big(env: Env) -> str:
    """250 chat jobs and 10 image jobs; every 25th chat job failed (two error types), a few succeeded."""
    requests = [line(f"row-{n:03d}", CHAT, text_chat(n)) for n in range(250)]
    requests += [line(f"img-{n}", "/v1/images/generations", {"prompt": f"p{n}"}) for n in range(10)]
    batch = await submit(env, KEY_A, requests)
    jobs = await job_records(env, batch["id"])
    for n, job in enumerate(jobs[:250]):
        if n % 25 == 7:
            kind = "timeout" if n % 50 == 7 else "provider_error"
            await end_job(env, job, JobStatus.failed, error=JobError(type=kind, message=f"{kind} on {n}"))
        elif n < 5:
            await end_job(env, job, body={"choices": []})
    return batch["id"]


async def test_an_unfiltered_page_reads_only_its_rows(env: Env, big: str, monkeypatch):
    asked: list[int] = []
    original = env.records.get_jobs

    async def spy(ids, **kw):
        asked.append(len(ids))
        return await original(ids, **kw)

    def no_scan(*a, **kw):
        raise AssertionError("the batch page scanned the batch")

    monkeypatch.setattr(env.records, "get_jobs", spy)
    monkeypatch.setattr(env.records, "iter_batch_job_ids", no_scan)
    a = await env.client(KEY_A)
    html = (await a.get(f"/console/batches/{big}")).text
    assert len(rows_of(html)) == 50 and max(asked) <= 50
    assert custom_ids(html)[:2] == ["row-000", "row-001"]
    assert "rows 1\u201350 of 260" in html and 'rel="next"' in html
    last = (await a.get(f"/console/batches/{big}?from=250&limit=100")).text
    assert custom_ids(last) == [f"img-{n}" for n in range(10)] and 'rel="next"' not in last
    assert max(asked) <= 100


async def test_filters_page_through_matches_with_a_cursor(env: Env, big: str):
    a = await env.client(KEY_A)
    html = (await a.get(f"/console/batches/{big}?status=failed&limit=3")).text
    assert custom_ids(html) == ["row-007", "row-032", "row-057"]
    next_url = re.search(r'href="\?([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    assert "from=58" in next_url
    html = (await a.get(f"/console/batches/{big}?{next_url}")).text
    assert custom_ids(html) == ["row-082", "row-107", "row-132"]
    timeouts = (await a.get(f"/console/batches/{big}?status=failed&error=timeout")).text
    assert custom_ids(timeouts) == ["row-007", "row-057", "row-107", "row-157", "row-207"]
    search = (await a.get(f"/console/batches/{big}?q=W-24")).text  # custom_id contains, any case
    assert custom_ids(search) == [f"row-{n}" for n in range(240, 250)]
    images = (await a.get(f"/console/batches/{big}?kind=image&status=queued")).text
    assert custom_ids(images) == [f"img-{n}" for n in range(10)]
    none = (await a.get(f"/console/batches/{big}?q=nothing-like-this")).text
    assert rows_of(none) == [] and "No job matches" in none and 'rel="next"' not in none


async def test_a_filter_stops_at_its_budget_and_offers_to_search_further(env: Env, big: str, monkeypatch):
    monkeypatch.setattr(reads, "STATUS_BUDGET", 60)
    monkeypatch.setattr(reads, "CHUNK", 20)
    a = await env.client(KEY_A)
    html = (await a.get(f"/console/batches/{big}?status=failed")).text
    assert custom_ids(html) == ["row-007", "row-032", "row-057"]
    assert "searched rows 1\u201360 of 260" in html and "Search further →" in html
    further = re.search(r'href="\?([^"]+)" rel="next"', html).group(1).replace("&amp;", "&")
    html = (await a.get(f"/console/batches/{big}?{further}")).text
    assert custom_ids(html) == ["row-082", "row-107"]


def test_stats_bars_rates_eta_and_failure_groups():
    batch = BatchRecord(
        id="b",
        tenant="t",
        status=BatchStatus.in_progress,
        created_at=1000.0,
        counts=BatchCounts(total=100, succeeded=55, failed=5, queued=40),
    )
    rows = [("succeeded", 1000.0 + n, None) for n in range(55)]
    rows += [("failed", 1010.0 + n, '{"type":"timeout","message":"slow <b>"}') for n in range(3)]
    rows += [("failed", 1020.0, '{"type":"provider_error","message":"500","code":"x"}')] * 2
    rows += [("queued", None, None)] * 40
    stats = reads.build_stats(batch, rows, now=1060.0)
    assert stats.step_s == 2 and sum(b.total for b in stats.bars) == 60
    assert sum(b.failed for b in stats.bars) == 5
    assert [(g.type, g.count) for g in stats.failures] == [("timeout", 3), ("provider_error", 2)]
    assert stats.failures[0].example == "slow <b>"
    assert stats.overall_rate == pytest.approx(60 / 54)
    assert stats.recent_rate == pytest.approx(1.0) and stats.eta_s == pytest.approx(40.0)
    ended = batch.model_copy(update={"status": BatchStatus.completed})
    assert reads.build_stats(ended, rows, now=5000.0).eta_s is None


async def test_the_stats_part_draws_the_chart_and_links_failures_to_their_jobs(env: Env, big: str):
    a = await env.client(KEY_A)
    html = (await a.get(f"/console/batches/{big}/part/stats")).text
    assert html.count('class="bar-ok"') >= 1 and "<svg" in html
    assert re.search(r'data-error-type="provider_error">.*?<td class="num">5</td>', html, re.S)
    assert re.search(r'data-error-type="timeout">.*?<td class="num">5</td>', html, re.S)
    assert f'href="/console/batches/{big}?status=failed&amp;error=timeout"' in html
    assert 'data-live="1"' in html and 'id="eta"' in html


async def test_the_batches_list_is_newest_first_and_paginated(env: Env):
    ids = [
        (await submit(env, KEY_A, [line("x", CHAT, text_chat(n))], metadata={"n": str(n)}))["id"]
        for n in range(23)
    ]
    a = await env.client(KEY_A)
    first = (await a.get("/console/")).text
    listed = re.findall(r'<tr data-batch="([^"]+)"', first)
    assert listed == ids[::-1][:20] and "page 1 of 2" in first
    second = (await a.get("/console/?page=1")).text
    assert re.findall(r'<tr data-batch="([^"]+)"', second) == ids[::-1][20:]
    part = (await a.get("/console/part/batches?page=0")).text
    assert part.startswith('<tbody id="batch-rows"') and 'data-poll-ms="2000"' in part
    assert re.search(r'data-count="queued">1<', part)


async def test_stats_are_read_once_for_many_polls_and_again_when_an_ended_batch_moves(
    env: Env, big: str, monkeypatch
):
    reads_done: list[str] = []
    original = reads._rows

    async def counted(records, batch_id):
        reads_done.append(batch_id)
        return await original(records, batch_id)

    monkeypatch.setattr(reads, "_rows", counted)
    a = await env.client(KEY_A)
    for _ in range(3):
        assert (await a.get(f"/console/batches/{big}/part/stats")).status_code == 200
    assert len(reads_done) == 1  # a running batch's figures are kept a few seconds
    batch = await env.records.get_batch(big)
    ended = batch.model_copy(update={"status": BatchStatus.completed})
    first = await reads.batch_stats(env.records, ended)  # computed for the ended batch
    assert first.ended and len(reads_done) == 2
    assert await reads.batch_stats(env.records, ended) == first and len(reads_done) == 2
    moved = ended.model_copy(update={"counts": ended.counts.model_copy(update={"failed": 99})})
    await reads.batch_stats(env.records, moved)  # a retry moved its counts: read again
    assert len(reads_done) == 3
