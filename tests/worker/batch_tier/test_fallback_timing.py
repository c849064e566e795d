"""When the batch tier gives up on a provider batch: the latest moment its pending jobs can still run
realtime by the deadline, at their target's own rate where the routing config gives one."""

from __future__ import annotations

from types import SimpleNamespace

from mmq.packs import Pack
from mmq.routing import RateLimit
from mmq.settings import Settings
from worker.batch_tier.engine import fallback_at, next_poll_s, realtime_rate


def pack(**fields) -> Pack:
    base = dict(id="p", group="g", target="t", provider="openai", model="m", kind="chat", state="running")
    return Pack(**{**base, "created_at": 1000.0, "jobs": 100, **fields})


def runtime(**settings) -> SimpleNamespace:
    return SimpleNamespace(settings=Settings(**settings))


def test_the_fallback_leaves_the_pending_jobs_time_at_the_targets_own_rate_and_a_margin():
    rt = runtime(batch_tier_margin_s=60, batch_tier_realtime_rate=10)
    deadline = 100_000.0
    # no rate known: the setting's 10 jobs/s → 1,000 jobs need 100 s, plus the margin
    assert fallback_at(rt, pack(deadline=deadline), 1000) == deadline - 100 - 60
    # the target's rate limit (2 jobs/s) makes it much earlier
    assert fallback_at(rt, pack(deadline=deadline, rate=2.0), 1000) == deadline - 500 - 60
    # no deadline (tier batch without one): the provider's 24 h window from the pack's creation
    assert fallback_at(rt, pack(), 0) == 1000.0 + 24 * 3600 - 60


def test_a_routes_realtime_rate_is_the_tighter_of_its_rps_and_rpm():
    route = SimpleNamespace(rate_limit=RateLimit(rps=5, rpm=120))
    assert realtime_rate(route) == 2.0
    assert realtime_rate(SimpleNamespace(rate_limit=None)) is None
    assert realtime_rate(SimpleNamespace(rate_limit=RateLimit(tpm=1000))) is None


def test_polls_back_off_with_age_but_never_sleep_past_the_fallback_moment():
    rt = runtime(batch_tier_poll_min_s=30, batch_tier_poll_max_s=300)
    import time

    now = time.time()
    young, old = pack(created_at=now - 60), pack(created_at=now - 10_000)
    assert next_poll_s(rt, young, now + 10_000) == 30  # a tenth of a minute, floored
    assert next_poll_s(rt, old, now + 10_000) == 300  # a tenth of its age, capped
    assert 30 <= next_poll_s(rt, old, now + 45) <= 45  # the fallback comes first
