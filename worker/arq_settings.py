"""For the stock `arq` command line: `arq worker.arq_settings.WorkerSettings` (settings from MMQ_*)."""

from __future__ import annotations

from arq.connections import RedisSettings

from worker.config import get_settings
from worker.worker import worker_kwargs

_settings = get_settings()
_kwargs = worker_kwargs(_settings)


class WorkerSettings:
    functions = _kwargs["functions"]
    on_startup = _kwargs["on_startup"]
    on_shutdown = _kwargs["on_shutdown"]
    queue_name = _kwargs["queue_name"]
    max_jobs = _kwargs["max_jobs"]
    job_timeout = _kwargs["job_timeout"]
    poll_delay = _kwargs["poll_delay"]
    keep_result = _kwargs["keep_result"]
    health_check_interval = _kwargs["health_check_interval"]
    job_serializer = _kwargs["job_serializer"]
    job_deserializer = _kwargs["job_deserializer"]
    queue_read_limit = _kwargs["queue_read_limit"]
    redis_settings = RedisSettings.from_dsn(_settings.redis_url or "redis://127.0.0.1:6379/0")
