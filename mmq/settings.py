"""Settings for every mmq process, from `MMQ_*` environment variables (and a `.env` file if present)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A list setting from the environment: JSON (`["a", "b"]`) or comma-separated (`a,b`).
HostList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MMQ_", env_file=".env", extra="ignore")

    # None means "embedded": an in-memory Redis inside this one process (only `mmq run` uses that).
    redis_url: str | None = None
    key_prefix: str = "mmq"
    queue_name: str = "mmq:queue"

    storage_url: str = "file://./mmq-data"

    # worker
    max_jobs: int = 128
    job_timeout_s: int = 300
    poll_delay_s: float = 0.2
    keep_result_s: int = 60  # arq's own result key; our job records are the source of truth
    # a started job's lease, renewed by its worker's heartbeat while it runs: a crashed worker's jobs run
    # again (on another worker) this long after its last beat
    job_lease_s: float = 20.0
    # on SIGTERM/SIGINT a worker takes no new job and gives those running this long to finish (a call in
    # flight is paid for: cancelling it pays again when the job re-runs); what is left then runs again
    shutdown_grace_s: int = 30
    metrics_port: int | None = None  # a worker serves Prometheus metrics here (one port per process)
    health_check_interval_s: int = 30

    # provider target used when a job names none (routing configs arrive with issue 3)
    provider: str = "openai"
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: SecretStr | None = None
    request_timeout_s: float = 120.0
    http_max_connections: int = 1024

    # retries of one job (provider 429/5xx/timeouts); long waits defer the job instead of sleeping
    max_attempts: int = 6  # on the default target (jobs without a routing config)
    max_total_attempts: int = 20  # across every target and deferral of one job
    retry_base_s: float = 0.5  # as the OpenAI SDK's first retry delay
    retry_cap_s: float = 60.0
    retry_sleep_max_s: float = 5.0

    # shared rate limits and circuit breaking (per provider + virtual key + model, across all workers)
    rate_limit: dict[str, Any] | None = None  # {"rps"|"rpm"|"tpm"|"max_concurrent": n} for the default target
    rate_wait_max_s: float = 10.0  # a job whose rate-limit slot is further away than this is deferred
    rate_limit_margin: float = 0.02  # spacing slack that absorbs scheduling jitter
    circuit_threshold: int = 5  # consecutive 5xx/timeouts that open a target's circuit
    circuit_open_s: float = 30.0  # before a probe is let through

    # media made ready per provider: proactive downscaling, and hosts the fetcher may reach even though
    # they are private/loopback (a local deployment's image server; tests)
    media_max_side: int | None = None
    media_max_bytes: int | None = None
    fetch_allow_hosts: HostList = []
    fetch_max_bytes: int = 20 * 1024 * 1024
    # Images declaring more pixels (width x height, read from the header) are refused before any decode:
    # a 240 KB PNG can declare 81 Mpx and cost a worker >1 GB to decode. 50 Mpx takes 8K frames (33 Mpx)
    # and 48/50 MP phone sensors' full-resolution photos (8160x6120 = 49.9 Mpx); more adds nothing a
    # provider keeps (they downscale to ~8000 px sides at most). Pillow's own guard (~89 Mpx warning, made
    # an error here) stays above it as a backstop, so raising this past ~89 Mpx has no effect.
    image_max_pixels: int = 50_000_000

    # result cache (mmq/cache.py): how long entries live, how long a duplicate waits in its worker slot
    # for an identical job in flight before leaving it, and the perceptual index's bands per image hash
    # (lookups are exact for distances below it)
    cache_ttl_s: int = 7 * 86400
    cache_wait_s: float = 2.0
    cache_phash_bands: int = 8

    # batch webhooks are signed with this shared secret (HMAC-SHA256, header mmq-signature); they go only
    # to public addresses, or to the internal receivers listed here (hosts or IPs, as fetch_allow_hosts)
    webhook_secret: SecretStr | None = None
    webhook_allow_hosts: HostList = []

    # base URLs a tenant's routing config may name as `custom_host` (mmq/endpoints.py); credentials are
    # only ever sent to the base URL configured with them, whatever a config says
    custom_hosts: HostList = []

    # routing: the config for jobs that carry none (Portkey schema, JSON); virtual keys' secrets file
    default_config: dict[str, Any] | None = None
    secrets_file: Path | None = None

    # the batch tier (worker/batch_tier): `auto` sends eligible jobs through their provider's batch API
    # only when the deadline is at least `min_window_s` away; open jobs of one target are gathered for
    # `gather_s` before a provider batch is made; polls back off from `poll_min_s` to `poll_max_s`; the
    # fallback leaves `margin_s` past the realtime run of what is still pending, run at
    # `realtime_rate` jobs/s where the target has no rate limit of its own; a step that died with its
    # worker is found by every worker's sweep after `rescue_s`
    batch_tier_min_window_s: float = 3600.0
    batch_tier_gather_s: float = 5.0
    batch_tier_poll_min_s: float = 30.0
    batch_tier_poll_max_s: float = 300.0
    batch_tier_margin_s: float = 600.0
    batch_tier_realtime_rate: float = 10.0
    batch_tier_rescue_s: float = 30.0  # a pack step lost with its worker is run again after this
    batch_tier_max_bytes: int | None = None  # cap a provider batch's size below the provider's own limit
    # the input tokens (estimated) mmq keeps enqueued in one key's provider batches per model, as OpenAI,
    # Azure and Gemini cap them (a target's `batch_queue_tokens` in the routing config wins); None or 0:
    # no limit of the operator's (a provider's refusal still teaches one: worker/batch_tier/quota.py)
    batch_tier_queue_tokens: int | None = None
    # Vertex AI batch prediction (Gemini and Claude on Vertex) reads its input from and writes its output
    # to Cloud Storage: `gs://bucket/prefix` where the workers put them (unset: Vertex jobs run realtime;
    # set it alike on every worker). The Vertex target's OAuth token goes to `gcs_base_url` only, the
    # operator's Cloud Storage JSON API endpoint (a test points it at the simulator)
    vertex_batch_gcs_uri: str | None = None
    gcs_base_url: str = "https://storage.googleapis.com"

    # AWS Bedrock batch inference (worker/batch_tier/apis/bedrock.py): a pack's records go to S3 under
    # `bedrock_batch_s3_uri` (s3://bucket/prefix, `?endpoint_url=`/`?region=` as for MMQ_STORAGE_URL; the
    # workers' AWS_* credentials write and read it) and Bedrock reads and writes them there with the IAM
    # service role `bedrock_batch_role_arn`. Unset (either): Bedrock jobs run realtime. A group of fewer
    # than `bedrock_batch_min_records` jobs (the account's quota "Minimum number of records per batch
    # inference job") runs realtime too: never padded
    bedrock_batch_s3_uri: str | None = None
    bedrock_batch_role_arn: str | None = None
    bedrock_batch_min_records: int = 100

    # quotes (mmq quote, --dry-run): a price file over the shipped book (mmq/pricing/prices.yaml), same shape
    prices_file: Path | None = None

    # producer
    inline_request_max_bytes: int = 16_384  # bigger request bodies go to storage, Redis keeps a reference
    enqueue_chunk: int = 500
    # a batch whose submission (mmq submit, POST /api/batches, /v1 reading its file) shows no progress for
    # this long is sealed by a worker with what it has, marked submission_interrupted (its process died);
    # a live submission marks progress at least every min(30 s, a quarter of it) (mmq/submissions.py)
    submit_stall_s: float = 600.0

    # API: {sha256(key) hex: tenant}; a JSON object in the env var, or a file of the same shape (re-read
    # when it changes); keys made by `mmq keys create` live in Redis beside these
    api_keys: dict[str, str] = {}
    api_keys_file: Path | None = None

    # the CLI as a client of the API: with api_url set, submit/status/batches/results/cancel/retry-failed
    # go through it with api_key (a key's tenant); without it the CLI works on Redis directly (admin mode)
    api_url: str | None = None
    api_key: SecretStr | None = None

    # API hardening: the largest JSON body and JSONL line accepted (413 beyond), and the served socket limits
    max_body_bytes: int = 32 * 1024 * 1024
    max_line_bytes: int = 32 * 1024 * 1024
    max_upload_bytes: int = 512 * 1024 * 1024  # a whole /v1/files upload (OpenAI's own limit is 512 MB)
    api_max_connections: int = 512  # more are closed when accepted, before the process runs out of files
    api_max_connections_per_client: int = 64  # from one address
    api_header_timeout_s: float = 10.0  # a connection must send a whole request head within this
    api_keepalive_s: int = 5  # an idle keep-alive connection is closed after this

    @field_validator("fetch_allow_hosts", "webhook_allow_hosts", "custom_hosts", mode="before")
    @classmethod
    def _host_list(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                return json.loads(text)
            return [h.strip() for h in text.split(",") if h.strip()]
        return v

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_json(cls, v: object) -> object:
        return json.loads(v) if isinstance(v, str) else v

    def tenant_keys(self) -> dict[str, str]:
        keys = dict(self.api_keys)
        if self.api_keys_file and self.api_keys_file.exists():
            keys.update(json.loads(self.api_keys_file.read_text()))
        return keys


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
