"""Simulator knobs: latency, rate limits, fault injection and the native batch APIs' lifecycle, settable
from code, the environment, or (the batch ones) at run time through POST /sim/batches."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

# env var -> field; kept explicit so the short names (RPW) stay documented in one place
_ENV_FIELDS: dict[str, str] = {
    "MMQ_SIM_LATENCY_MS": "latency_ms",
    "MMQ_SIM_JITTER_MS": "jitter_ms",
    "MMQ_SIM_RPW": "requests_per_window",
    "MMQ_SIM_WINDOW_S": "window_s",
    "MMQ_SIM_ERROR_RATE": "error_rate",
    "MMQ_SIM_HANG_RATE": "hang_rate",
    "MMQ_SIM_HANG_S": "hang_s",
    "MMQ_SIM_SEED": "seed",
    "MMQ_SIM_BATCH_VALIDATE_S": "batch_validate_s",
    "MMQ_SIM_BATCH_COMPLETE_S": "batch_complete_s",
    "MMQ_SIM_BATCH_FINALIZE_S": "batch_finalize_s",
    "MMQ_SIM_BATCH_FAIL_RATE": "batch_fail_rate",
    "MMQ_SIM_BATCH_EXPIRE_S": "batch_expire_s",
    "MMQ_SIM_BATCH_CANCEL_S": "batch_cancel_s",
    "MMQ_SIM_BATCH_STALL": "batch_stall",
    "MMQ_SIM_BATCH_MAX_REQUESTS": "batch_max_requests",
    "MMQ_SIM_BATCH_MAX_BYTES": "batch_max_bytes",
    "MMQ_SIM_BATCH_QUEUE_TOKENS": "batch_queue_tokens",
    "MMQ_SIM_BATCH_MIN_RECORDS": "batch_min_records",
    "MMQ_SIM_BATCH_CREATE_REPLY_S": "batch_create_reply_s",
    "MMQ_SIM_S3_ENDPOINT": "s3_endpoint",
}
# optional knobs an env value of "0"/"none"/"off" turns off rather than sets to zero
_OFF = {
    *("requests_per_window", "batch_expire_s", "batch_max_requests", "batch_max_bytes"),
    *("batch_queue_tokens", "s3_endpoint"),
}
# the native batch knobs (mmq/simulator/batches/): read when a batch is created, so a change made at run
# time applies to the batches created after it
BATCH_KNOBS = frozenset(field for field in _ENV_FIELDS.values() if field.startswith("batch_"))


class SimulatorConfig(BaseModel):
    latency_ms: float = Field(0, ge=0)
    jitter_ms: float = Field(0, ge=0)  # uniform +/- around latency_ms
    requests_per_window: int | None = Field(None, ge=1)  # per API key, sliding window
    window_s: float = Field(60.0, gt=0)
    error_rate: float = Field(0, ge=0, le=1)  # fraction answered 500/503
    hang_rate: float = Field(0, ge=0, le=1)  # fraction delayed by hang_s
    hang_s: float = Field(300, ge=0)
    seed: int = 0
    # native batch APIs (mmq/simulator/batches/engine.py has the timeline these drive)
    batch_validate_s: float = Field(0.5, ge=0)  # validating (OpenAI family) / PENDING (Gemini)
    batch_complete_s: float = Field(5.0, ge=0)  # from the end of validation to the last line done
    batch_finalize_s: float = Field(0.5, ge=0)  # finalizing, after the last line
    batch_fail_rate: float = Field(0, ge=0, le=1)  # this fraction of lines errors (a 500), not billed
    batch_expire_s: float | None = Field(None, gt=0)  # expiry after create; None = the window (24 h…)
    batch_cancel_s: float = Field(1.0, ge=0)  # cancelling lasts this long; due lines still finish
    batch_stall: bool = False  # no line ever finishes: in progress until cancelled (or expired)
    batch_max_requests: int | None = Field(None, ge=1)  # None = the provider's documented limit
    batch_max_bytes: int | None = Field(None, ge=1)  # None = the provider's documented limit
    # the enqueued-token quota of the OpenAI-format batches (OpenAI, Azure, Groq), per provider and model:
    # a batch that would take the input tokens of the unfinished batches past it fails validating with
    # `token_limit_exceeded`, as OpenAI's does (mmq/simulator/batches/oai_quota.py); None = no quota
    batch_queue_tokens: int | None = Field(None, ge=1)
    # Bedrock batch inference: a job with fewer records fails validation (the account quota, commonly 100)
    batch_min_records: int = Field(100, ge=1)
    # Anthropic's create answers this long after the batch exists: a client killed meanwhile has made a
    # batch it never heard of (what a crash-safe client must recover without creating a second)
    batch_create_reply_s: float = Field(0, ge=0)
    # the S3-compatible server (http://host:port) Bedrock batch jobs read their records from and write
    # their answers to (mmq/simulator/batches/bedrock_s3.py); None: Bedrock batch jobs fail validation
    s3_endpoint: str | None = Field(None, pattern=r"^https?://[^/?#]+/?$")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SimulatorConfig:
        env = os.environ if environ is None else environ
        values: dict[str, str | None] = {}
        for var, field in _ENV_FIELDS.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            # "0"/"none" turns an optional knob off (no rate limit, no expiry…) rather than setting zero
            if field in _OFF and raw.strip().lower() in {"0", "none", "off"}:
                values[field] = None
                continue
            values[field] = raw.strip()
        return cls.model_validate(values)
