"""Circuit breaker per target, shared by every worker through Redis.

closed → (N consecutive failures) → open for `open_s` → half-open: exactly one worker gets a probe;
its success closes the circuit, its failure opens it again. Only failures that say the target is sick
count (5xx, 529, timeouts, dropped connections); a 4xx is the request's fault and a 429 is handled by
the rate limiter's shared cooldown.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

# KEYS 1 circuit hash (fails, open_until ms, probe_until ms); ARGV 1 probe ttl ms
# Returns {allowed 1/0, ms until a probe may go (0 when allowed)}
_ALLOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until == 0 then return {1, '0'} end
if now < open_until then return {0, tostring(open_until - now)} end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now < probe_until then return {0, tostring(probe_until - now)} end
redis.call('HSET', KEYS[1], 'probe_until', tostring(now + tonumber(ARGV[1])))
return {1, '0'}
"""

# KEYS 1 circuit hash; ARGV 1 ok (1/0), 2 threshold, 3 open ms. Returns the state after: closed/open
_RECORD = """
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) return 'closed' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local fails = redis.call('HINCRBY', KEYS[1], 'fails', 1)
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
redis.call('PEXPIRE', KEYS[1], 86400000)
if open_until > 0 or fails >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'open_until', tostring(now + tonumber(ARGV[3])), 'probe_until', '0')
  return 'open'
end
return 'closed'
"""


@dataclass(frozen=True)
class Permit:
    allowed: bool
    wait_s: float  # refused: when a probe may next be tried


def counts_against_target(status: int | None, code: str | None) -> bool:
    if status is None:
        return code in ("timeout", "connection_error")
    return status >= 500


class CircuitBreaker:
    def __init__(
        self,
        redis: Redis,
        prefix: str = "mmq",
        *,
        threshold: int = 5,
        open_s: float = 30.0,
        probe_ttl_s: float = 120.0,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.threshold = threshold
        self.open_s = open_s
        self.probe_ttl_s = probe_ttl_s  # a probe whose worker died frees the half-open slot after this
        self._allow = redis.register_script(_ALLOW)
        self._record = redis.register_script(_RECORD)

    def _key(self, target: str) -> str:
        return f"{self.prefix}:cb:{{{target}}}"

    async def allow(self, target: str) -> Permit:
        allowed, wait = await self._allow(keys=[self._key(target)], args=[int(self.probe_ttl_s * 1000)])
        return Permit(bool(int(allowed)), float(wait) / 1000)

    async def record(self, target: str, ok: bool) -> str:
        state = await self._record(
            keys=[self._key(target)], args=["1" if ok else "0", self.threshold, int(self.open_s * 1000)]
        )
        return state.decode() if isinstance(state, bytes) else str(state)

    async def open_targets(self, targets: list[str]) -> set[str]:
        """Targets whose circuit is open right now (loadbalance picks among the others)."""
        if not targets:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for t in targets:
                pipe.hget(self._key(t), "open_until")
            values = await pipe.execute()
        now_s, now_us = await self.redis.time()
        now_ms = now_s * 1000 + now_us / 1000
        return {t for t, v in zip(targets, values, strict=True) if v and now_ms < float(v)}
