"""How mmq's processes log: JSON lines for machines, plain lines for a person at a terminal.

MMQ_LOG_FORMAT=json (the default when stderr is not a terminal: containers, systemd, CI) writes one JSON
object per line through python-json-logger, with the fields a record carries as `extra` (job_id,
batch_id, tenant, kind, status, ...) as keys, so a log pipeline can filter one batch's jobs without
parsing sentences. MMQ_LOG_FORMAT=text writes the classic `time level logger: message`.
"""

from __future__ import annotations

import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str | None = None, fmt: str | None = None) -> None:
    """Root logging for an mmq process, from MMQ_LOG_LEVEL and MMQ_LOG_FORMAT unless given."""
    level = (level or os.environ.get("MMQ_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("MMQ_LOG_FORMAT") or ("text" if sys.stderr.isatty() else "json")).lower()
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if level != "DEBUG":
        # arq logs two lines per job at INFO: 200,000 lines for a night's batch, and 3% of a job's CPU.
        # mmq logs one line per job outcome; arq's per-job lines come back with MMQ_LOG_LEVEL=DEBUG.
        logging.getLogger("arq.worker").setLevel(logging.WARNING)
