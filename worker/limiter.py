"""Provider rate limits shared by every worker, enforced in Redis by one atomic Lua script.

One bucket per target (provider + virtual key + model). The script is GCRA with reservations: each
admitted call books the next free slot on the request clock and the token clock, so calls leave evenly
spaced (a limit of 100/s is one call every 10 ms, which never exceeds 100 in any sliding second) and
waiting callers sleep exactly until their slot instead of polling. The same script checks the shared
429 cooldown and the concurrency leases, and uses Redis' clock, so workers on machines with skewed
clocks still agree.

A caller whose slot is further away than `max_wait_s` books nothing and is told how long to wait; the
pipeline defers such jobs (arq `Retry`) so they do not sit in a worker slot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from mmq.routing import RateLimit

# KEYS: 1 bucket hash (r = request clock TAT, t = token clock TAT, ms), 2 lease zset, 3 cooldown key
# ARGV: 1 ms per request (0 = none), 2 ms per token (0 = none), 3 tokens, 4 token burst (tokens),
#       5 max concurrent (0 = none), 6 lease id, 7 lease ttl ms, 8 max wait ms, 9 poll ms
# Returns {admitted (1/0), wait ms (string: Lua numbers round-trip as integers)}
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cooldown = redis.call('PTTL', KEYS[3])
if cooldown > 0 then return {0, tostring(cooldown)} end
local per_req, per_tok = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens, tok_burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_conc, max_wait = tonumber(ARGV[5]), tonumber(ARGV[8])
if max_conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= max_conc then return {0, ARGV[9]} end
end
local wait, new_r, new_t = 0, nil, nil
if per_req > 0 then
  local tat = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
  if tat < now then tat = now end
  wait = tat - now
  new_r = tat + per_req
end
if per_tok > 0 then
  local tat = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
  if tat < now then tat = now end
  -- the token clock may run up to one burst ahead: a minute's budget can be spent unevenly
  local go = tat - tok_burst * per_tok
  if go < now then go = now end
  if go - now > wait then wait = go - now end
  new_t = tat + tokens * per_tok
end
if wait > max_wait then return {0, tostring(wait)} end
if new_r then redis.call('HSET', KEYS[1], 'r', tostring(new_r)) end
if new_t then redis.call('HSET', KEYS[1], 't', tostring(new_t)) end
redis.call('PEXPIRE', KEYS[1], 3600000)
if max_conc > 0 then
  redis.call('ZADD', KEYS[2], now + wait + tonumber(ARGV[7]), ARGV[6])
  redis.call('PEXPIRE', KEYS[2], 3600000)
end
return {1, tostring(wait)}
"""

# After the call: the token clock learns the real usage (KEYS[1] bucket; ARGV[1] ms to add, may be < 0)
_CORRECT = """
local tat = redis.call('HGET', KEYS[1], 't')
if tat then redis.call('HSET', KEYS[1], 't', tostring(tonumber(tat) + tonumber(ARGV[1]))) end
return 1
"""

# A 429: every worker pauses this target until the provider's reset, then resumes evenly spaced.
# KEYS 1 bucket, 2 cooldown; ARGV 1 cooldown ms
_COOLDOWN = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[2]) < ms then redis.call('SET', KEYS[2], '1', 'PX', math.floor(ms)) end
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 + ms
local tat = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
if tat < until_ms then redis.call('HSET', KEYS[1], 'r', tostring(until_ms)) end
redis.call('PEXPIRE', KEYS[1], 3600000)
return 1
"""


@dataclass(frozen=True)
class Admission:
    admitted: bool
    wait_s: float  # admitted: sleep this long, then call; refused: try again after about this long
    lease: str | None = None


def estimate_tokens(request: dict[str, Any]) -> int:
    """What a provider will count against tokens-per-minute before it answers: prompt text (~4 chars a
    token), images (OpenAI's 85 low / 765 typical high detail) and the completion budget it reserves."""
    chars, images = 0, 0
    for message in request.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text":
                    chars += len(part.get("text") or "")
                elif part.get("type") == "image_url":
                    detail = (part.get("image_url") or {}).get("detail")
                    images += 85 if detail == "low" else 765
                else:
                    images += 765
    for field in ("prompt", "input"):
        if isinstance(request.get(field), str):
            chars += len(request[field])
    budget = request.get("max_completion_tokens") or request.get("max_tokens") or 0
    return max(1, chars // 4 + images + int(budget))


class Limiter:
    def __init__(self, redis: Redis, prefix: str = "mmq", margin: float = 0.02) -> None:
        self.redis = redis
        self.prefix = prefix
        # spacing a little wider than the limit absorbs scheduling jitter between the slot and the wire
        self.margin = margin
        self._acquire = redis.register_script(_ACQUIRE)
        self._correct = redis.register_script(_CORRECT)
        self._cooldown = redis.register_script(_COOLDOWN)

    def _keys(self, bucket: str) -> list[str]:
        base = f"{self.prefix}:rl:{{{bucket}}}"  # one hash slot per bucket (Redis Cluster)
        return [base, base + ":leases", base + ":cooldown"]

    def _ms_per_request(self, limit: RateLimit) -> float:
        rates = [r for r in (limit.rps, (limit.rpm or 0) / 60) if r]
        return (1000 / min(rates)) * (1 + self.margin) if rates else 0.0

    def _ms_per_token(self, limit: RateLimit) -> float:
        return 60_000 / limit.tpm * (1 + self.margin) if limit.tpm else 0.0

    async def acquire(
        self,
        bucket: str,
        limit: RateLimit | None,
        *,
        tokens: int = 1,
        max_wait_s: float,
        lease_ttl_s: float,
        poll_s: float = 0.05,
    ) -> Admission:
        limit = limit or RateLimit()
        lease = uuid.uuid4().hex if limit.max_concurrent else None
        per_token = self._ms_per_token(limit)
        # a token burst of a tenth of the per-minute budget keeps one big request from stalling the clock
        burst = (limit.tpm or 0) / 10
        admitted, wait = await self._acquire(
            keys=self._keys(bucket),
            args=[
                self._ms_per_request(limit),
                per_token,
                tokens,
                burst,
                limit.max_concurrent or 0,
                lease or "",
                int(lease_ttl_s * 1000),
                max_wait_s * 1000,
                int(poll_s * 1000),
            ],
        )
        return Admission(bool(int(admitted)), float(wait) / 1000, lease if int(admitted) else None)

    async def release(self, bucket: str, lease: str | None) -> None:
        if lease:
            await self.redis.zrem(self._keys(bucket)[1], lease)

    async def correct_tokens(self, bucket: str, limit: RateLimit | None, estimated: int, actual: int) -> None:
        if limit is None or not limit.tpm or actual == estimated:
            return
        await self._correct(
            keys=self._keys(bucket)[:1], args=[(actual - estimated) * self._ms_per_token(limit)]
        )

    async def cooldown_left(self, bucket: str) -> float:
        ms = await self.redis.pttl(self._keys(bucket)[2])
        return max(0, ms) / 1000

    async def cool_down(self, bucket: str, seconds: float) -> None:
        keys = self._keys(bucket)
        await self._cooldown(keys=[keys[0], keys[2]], args=[max(1, int(seconds * 1000))])
