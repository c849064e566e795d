-- settle: what one call to a target taught every worker, in one call: its concurrency lease back, the
-- token clock corrected to the real usage, and the circuit breaker and the shared 429 pause updated.
-- A failed call's budget reservation is given back here too (a success's goes with its job's finish,
-- after its cost is added, so no other call sees the room before the spending).
-- include: cool_down
-- include: budget
-- KEYS[1] circuit hash, KEYS[2] rate clocks hash, KEYS[3] lease zset, KEYS[4] cooldown key,
-- KEYS[5] budget held zset, KEYS[6] held-what hash, KEYS[7] waiting zset
-- ARGV[1] outcome: 'ok' | 'sick' (5xx, timeout, dropped connection) | '429' | 'other' (the request's fault)
-- ARGV[2] lease id or '', ARGV[3] token clock correction ms (0 = none; may be negative),
-- ARGV[4] cooldown ms (a 429), ARGV[5] failures that open the circuit, ARGV[6] open ms,
-- ARGV[7] budget reservation id to give back or ''
-- Returns the circuit's state after the call: 'closed' or 'open'.
if ARGV[2] ~= '' then redis.call('ZREM', KEYS[3], ARGV[2]) end
if ARGV[7] ~= '' then budget_release(KEYS[5], KEYS[6], KEYS[7], ARGV[7]) end
if ARGV[3] ~= '0' then
  local tat = redis.call('HGET', KEYS[2], 't')
  if tat then redis.call('HSET', KEYS[2], 't', tostring(tonumber(tat) + tonumber(ARGV[3]))) end
end
local outcome = ARGV[1]
if outcome == 'ok' then
  -- every success, even after none failed: only a reset keeps "consecutive" true across workers
  redis.call('DEL', KEYS[1])
  return 'closed'
end
if outcome == '429' then
  cool_down(KEYS[2], KEYS[4], tonumber(ARGV[4]))
end
if outcome ~= 'sick' then
  if redis.call('HGET', KEYS[1], 'open_until') then return 'open' end
  return 'closed'
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local fails = redis.call('HINCRBY', KEYS[1], 'fails', 1)
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
redis.call('PEXPIRE', KEYS[1], 86400000)
if open_until > 0 or fails >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'open_until', tostring(now + tonumber(ARGV[6])), 'probe_until', '0')
  return 'open'
end
return 'closed'
