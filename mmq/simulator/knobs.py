"""Simulator knobs: latency, rate limits and fault injection, settable from code or the environment."""

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
}


class SimulatorConfig(BaseModel):
    latency_ms: float = Field(0, ge=0)
    jitter_ms: float = Field(0, ge=0)  # uniform +/- around latency_ms
    requests_per_window: int | None = Field(None, ge=1)  # per API key, sliding window
    window_s: float = Field(60.0, gt=0)
    error_rate: float = Field(0, ge=0, le=1)  # fraction answered 500/503
    hang_rate: float = Field(0, ge=0, le=1)  # fraction delayed by hang_s
    hang_s: float = Field(300, ge=0)
    seed: int = 0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SimulatorConfig:
        env = os.environ if environ is None else environ
        values: dict[str, str | None] = {}
        for var, field in _ENV_FIELDS.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            # "0"/"none" disables the rate limit rather than rejecting every request
            if field == "requests_per_window" and raw.strip().lower() in {"0", "none", "off"}:
                values[field] = None
                continue
            values[field] = raw.strip()
        return cls.model_validate(values)
