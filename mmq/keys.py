"""Every Redis key mmq writes, in one place (as arq keeps its own in arq.constants).

    {p}:job:{id}                 HASH  one job: its state as small fields (status, batch, attempts,
                                       result, usage, error, …); a job outside any batch also holds its
                                       `spec` (immutable JSON, written once at submit)
    {p}:batch:{id}               HASH  one batch: tenant, status, sealed, counters, options (the routing
                                       config once for all its jobs), metadata, schedule, timestamps
    {p}:batch:{id}:jobs          LIST  job ids in submission order (the order of the output JSONL)
    {p}:batch:{id}:specs         HASH  job id → that job's spec, without what the batch holds (its id,
                                       tenant and config): the job's own hash then holds only small
                                       values, which Redis packs (mmq/records.py)
    {p}:tenant:{t}:batches       ZSET  batch ids by creation time: every batch of the tenant, whatever made
                                       it (CLI, /api, /v1, console, workflows, templates)
    {p}:submitting               ZSET  batches not sealed yet: batch id → when their submission last showed
                                       progress (ms); a worker seals those stalled past MMQ_SUBMIT_STALL_S
                                       (mmq/submissions.py)
    {p}:apikey:{sha256}          HASH  an API key made by `mmq keys create`, under the SHA-256 of the key
                                       (never the key): tenant, name, created, prefix (its first 8
                                       characters, to recognise it), revoked (when; a key of
                                       MMQ_API_KEYS(_FILE) revoked by `mmq keys revoke` gets a record too)
    {p}:apikeys                  ZSET  the SHA-256 of every key with a record → created (`mmq keys list`)
    {p}:store                    STR   the id of the store every process of this deployment must use
    {p}:cache:e:{key}            STR   a cache entry (JSON: the job whose result it shares)
    {p}:cache:lock:{key}         STR   the single-flight lock of a key (the leading job's id)
    {p}:cache:pi:{scope}:{b}:{v} SET   perceptual index: image-hash band → keys' hash bits
    {p}:rl:{bucket}              HASH  a target's rate-limit clocks (r = requests, t = tokens)
    {p}:rl:{bucket}:leases       ZSET  its concurrency leases
    {p}:rl:{bucket}:cooldown     STR   its shared 429 pause
    {p}:cb:{bucket}              HASH  its circuit breaker (fails, open_until, probe_until)
    {p}:spend:{t}:d:{YYYY-MM-DD} HASH  a tenant's spending that day (UTC), in micro-USD: spent, reserved
    {p}:spend:{t}:m:{YYYY-MM}    HASH  … that month (a batch's own is in its hash: spent, reserved)
    {p}:budgets                  HASH  the operator's tenant budgets: "{t}:day" / "{t}:month" → micro-USD
    {p}:budget:held              ZSET  estimates held by calls in flight: reservation id → expiry (ms)
    {p}:budget:held:what         HASH  reservation id → "micro-USD key key…" (the spend hashes it holds)
    {p}:budget:waiting           ZSET  jobs waiting for a budget: job id → when to try again (ms; +inf:
                                       only a raise wakes it)
    {p}:nb:open:{group}          ZSET  the batch tier's jobs waiting to be packed for one target, model
                                       and kind (group): job id → when it came
    {p}:nb:groups                SET   the open zsets that have held jobs (a dead gather's are found here)
    {p}:nb:rates                 HASH  group → its target's realtime rate (jobs/s, from its rate limit):
                                       how fast a deadline fallback can run its jobs
    {p}:nb:pack:{id}:lock        STR   the worker creating, polling or harvesting a pack (a lease)
    {p}:nb:pack:{id}             HASH  one pack of jobs = one provider batch: group, target, state,
                                       provider batch id, handles, deadline, counts
    {p}:nb:pack:{id}:jobs        LIST  its job ids (its lines' custom_ids)
    {p}:nb:packs                 ZSET  packs not yet harvested, by creation time
    {p}:batch:{id}:packs         SET   the packs holding a batch's jobs
    {p}:nb:quotas                HASH  group → {"ledger", "limit"} (JSON): the enqueued-token ledger its
                                       packs count against and its target's `batch_queue_tokens`
    {p}:nb:enqueued              HASH  ledger (provider:virtual key:model) → the input tokens (estimated)
                                       in mmq's provider batches not ended yet: what a provider's
                                       enqueued-token quota counts (mmq/lua/pack_open.lua, pack_release.lua)
    {p}:nb:learned:{ledger}      STR   a lower limit learned from a provider's quota refusal (expires)
    {p}:nb:waits                 HASH  group → when its next gather is due (ms) while its jobs wait for
                                       room under the limit (the rescue sweep leaves it alone until then)

The front keeps three families of its own beside these: `{p}:oai:…` (the /v1 files and batches),
`{p}:templates:…` / `{p}:template-blobs:…` (prompt templates) and `{p}:console:session:…` /
`{p}:console:stats:{batch}` (the web console's sessions, stored hashed, and its cached statistics).

Lua scripts (mmq/lua) derive a job's batch keys and its cache keys from the job's own record, so that a
job is claimed in one round trip knowing only its id: mmq, like arq, runs on one Redis server (with
Sentinel for failover), never on Redis Cluster.
"""

from __future__ import annotations

import time


class Keys:
    def __init__(self, prefix: str = "mmq") -> None:
        self.prefix = prefix

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def batch_jobs(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}:jobs"

    def batch_specs(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}:specs"

    def store(self) -> str:
        """The id of the store this deployment's processes share (mmq/shared_store.py)."""
        return f"{self.prefix}:store"

    def tenant_batches(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:batches"

    def submitting(self) -> str:
        """Batches whose lines are still being submitted, by their last progress (mmq/submissions.py)."""
        return f"{self.prefix}:submitting"

    def api_key(self, key_hash: str) -> str:
        """One API key's record, under the SHA-256 (hex) of the key (producer/api_keys.py)."""
        return f"{self.prefix}:apikey:{key_hash}"

    def api_keys(self) -> str:
        return f"{self.prefix}:apikeys"

    def cache_entry(self, key: str) -> str:
        return f"{self.prefix}:cache:e:{key}"

    def cache_lock(self, key: str) -> str:
        return f"{self.prefix}:cache:lock:{key}"

    def cache_band(self, scope: str, band: int, value: int) -> str:
        return f"{self.prefix}:cache:pi:{scope}:{band}:{value:x}"

    def rate_limit(self, bucket: str) -> tuple[str, str, str]:
        """(clocks, leases, cooldown) of a target's bucket."""
        base = f"{self.prefix}:rl:{{{bucket}}}"
        return base, base + ":leases", base + ":cooldown"

    def circuit(self, bucket: str) -> str:
        return f"{self.prefix}:cb:{{{bucket}}}"

    def spend(self, tenant: str, period: str) -> str:
        """A tenant's spending in one period: "d:2026-12-03" (a UTC day) or "m:2026-12"."""
        return f"{self.prefix}:spend:{tenant}:{period}"

    def tenant_spend(self, tenant: str, at: float) -> tuple[str, str]:
        """(day, month) spend hashes of a tenant at epoch `at`, in UTC."""
        day = time.strftime("%Y-%m-%d", time.gmtime(at))
        return self.spend(tenant, f"d:{day}"), self.spend(tenant, f"m:{day[:7]}")

    def budgets(self) -> str:
        return f"{self.prefix}:budgets"

    def budget_held(self) -> tuple[str, str]:
        """(reservation expiries, what each reservation holds)."""
        return f"{self.prefix}:budget:held", f"{self.prefix}:budget:held:what"

    def budget_waiting(self) -> str:
        return f"{self.prefix}:budget:waiting"

    def nb_open(self, group: str) -> str:
        return f"{self.prefix}:nb:open:{group}"

    def nb_groups(self) -> str:
        return f"{self.prefix}:nb:groups"

    def nb_rates(self) -> str:
        return f"{self.prefix}:nb:rates"

    def nb_pack_lock(self, pack_id: str) -> str:
        return f"{self.prefix}:nb:pack:{pack_id}:lock"

    def nb_pack(self, pack_id: str) -> str:
        return f"{self.prefix}:nb:pack:{pack_id}"

    def nb_pack_jobs(self, pack_id: str) -> str:
        return f"{self.prefix}:nb:pack:{pack_id}:jobs"

    def nb_packs(self) -> str:
        return f"{self.prefix}:nb:packs"

    def batch_packs(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}:packs"

    def nb_quotas(self) -> str:
        return f"{self.prefix}:nb:quotas"

    def nb_enqueued(self) -> str:
        return f"{self.prefix}:nb:enqueued"

    def nb_learned(self, ledger: str) -> str:
        return f"{self.prefix}:nb:learned:{ledger}"

    def nb_waits(self) -> str:
        return f"{self.prefix}:nb:waits"
