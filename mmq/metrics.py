"""Prometheus metrics of an mmq process (prometheus_client), one registry per process.

Workers count what they do as they do it (jobs by kind and outcome, provider calls by target and status,
latencies, 429s, retries, rate-limit waits, cache hits, circuit openings) and serve them on
MMQ_METRICS_PORT; the API serves the same format on /metrics with the queue's depth and age, read from
Redis at each scrape. Labels are bounded: a target is its configured name (a handful per deployment),
never a URL, a key or a job id.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mmq.queue import PRIORITY_LEAD_MS

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS_FINISHED = Counter(
    "mmq_jobs_finished_total",
    "Jobs that ended, by kind and status (succeeded, failed, cancelled) and whether the cache answered.",
    ["kind", "status", "cached"],
    registry=REGISTRY,
)
JOBS_RUNNING = Gauge("mmq_jobs_running", "Jobs this worker is running now.", registry=REGISTRY)
PROVIDER_CALLS = Counter(
    "mmq_provider_calls_total",
    "Calls sent to providers, by target and answer (an HTTP status, or timeout / connection_error).",
    ["target", "status"],
    registry=REGISTRY,
)
PROVIDER_LATENCY = Histogram(
    "mmq_provider_latency_seconds",
    "Time from sending a call to its answer, by target.",
    ["target"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
RETRIES = Counter(
    "mmq_retries_total",
    "Calls sent again after a retryable failure, by target.",
    ["target"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "mmq_rate_limited_total", "429 answers from providers, by target.", ["target"], registry=REGISTRY
)
RATE_WAIT = Histogram(
    "mmq_rate_limit_wait_seconds",
    "Time a call waited for its rate-limit slot (0 for most when under the limit).",
    buckets=(0, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10),
    registry=REGISTRY,
)
CIRCUIT_OPENED = Counter(
    "mmq_circuit_opened_total", "Times a target's circuit opened, by target.", ["target"], registry=REGISTRY
)
CACHE_HITS = Counter(
    "mmq_cache_hits_total",
    "Jobs answered from the result cache, by cache level.",
    ["level"],
    registry=REGISTRY,
)
# the API's own: the queue as Redis holds it, read at each scrape
API_REGISTRY = CollectorRegistry(auto_describe=True)
QUEUE_DEPTH = Gauge(
    "mmq_queue_depth", "Jobs due in the queue and not started (read at scrape).", registry=API_REGISTRY
)
QUEUE_OLDEST_AGE = Gauge(
    "mmq_queue_oldest_age_seconds",
    "How long the oldest due job has waited (0 when none; read at scrape).",
    registry=API_REGISTRY,
)


async def read_queue(redis: Any, queue_name: str) -> None:
    """Set the queue gauges from arq's queue: due jobs (a started job's score sits at its lease's end,
    in the future) and the wait of the longest-waiting one, its priority lead taken off its score."""
    now_ms = time.time() * 1000
    pipe = redis.pipeline(transaction=False)
    pipe.zcount(queue_name, "-inf", now_ms)
    pipe.zrangebyscore(queue_name, "-inf", now_ms, start=0, num=1, withscores=True)
    depth, oldest = await pipe.execute()
    QUEUE_DEPTH.set(depth)
    QUEUE_OLDEST_AGE.set(_age_s(oldest[0][1], now_ms) if oldest else 0.0)


def _age_s(score: float, now_ms: float) -> float:
    # a score is the enqueue time minus its priority's lead (mmq.queue.PRIORITY_LEAD_MS: high 2e10 ms,
    # normal 1e10, low 0); each lead is months, far more than any wait, so the lead is the nearest one
    lead = min(PRIORITY_LEAD_MS.values(), key=lambda lead: abs((now_ms - score) - lead))
    return max(0.0, (now_ms - score - lead) / 1000)
