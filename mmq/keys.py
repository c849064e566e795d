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
    {p}:tenant:{t}:batches       ZSET  batch ids by creation time
    {p}:store                    STR   the id of the store every process of this deployment must use
    {p}:cache:e:{key}            STR   a cache entry (JSON: the job whose result it shares)
    {p}:cache:lock:{key}         STR   the single-flight lock of a key (the leading job's id)
    {p}:cache:pi:{scope}:{b}:{v} SET   perceptual index: image-hash band → keys' hash bits
    {p}:rl:{bucket}              HASH  a target's rate-limit clocks (r = requests, t = tokens)
    {p}:rl:{bucket}:leases       ZSET  its concurrency leases
    {p}:rl:{bucket}:cooldown     STR   its shared 429 pause
    {p}:cb:{bucket}              HASH  its circuit breaker (fails, open_until, probe_until)

The front keeps three families of its own beside these: `{p}:oai:…` (the /v1 files and batches),
`{p}:templates:…` / `{p}:template-blobs:…` (prompt templates) and `{p}:console:session:…` /
`{p}:console:stats:{batch}` (the web console's sessions, stored hashed, and its cached statistics).

Lua scripts (mmq/lua) derive a job's batch keys and its cache keys from the job's own record, so that a
job is claimed in one round trip knowing only its id: mmq, like arq, runs on one Redis server (with
Sentinel for failover), never on Redis Cluster.
"""

from __future__ import annotations


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
