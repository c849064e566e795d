"""For the stock `arq` command line: `arq worker.arq_settings.WorkerSettings` (settings from MMQ_*)."""

from __future__ import annotations

from arq.connections import RedisSettings

from mmq.settings import get_settings
from worker.worker import worker_kwargs

_settings = get_settings()
# arq reads its settings as class attributes
WorkerSettings = type(
    "WorkerSettings",
    (),
    {
        **worker_kwargs(_settings),
        "redis_settings": RedisSettings.from_dsn(_settings.redis_url or "redis://127.0.0.1:6379/0"),
    },
)
