-- admit: may one call go to a target now? Its circuit, its shared 429 pause, its concurrency leases and
-- its rate clocks, checked and booked in one call shared by every worker (GCRA with reservations: each
-- admitted call books the next free slot on the request clock and the token clock, so calls leave evenly
-- spaced and a waiting caller sleeps exactly until its slot). Redis' clock, so skewed machines agree.
-- KEYS[1] circuit hash (fails, open_until, probe_until), KEYS[2] rate clocks hash (r, t: ms),
-- KEYS[3] lease zset, KEYS[4] cooldown key, KEYS[5] the hash whose `provider_calls` counts calls let go
-- (the job's batch) or '', KEYS[6] budget held zset, KEYS[7] held-what hash, KEYS[8] waiting zset,
-- KEYS[9] the operator's budgets hash, KEYS[10..] the job's spend hashes (its batch's, its tenant's
-- day and month: see budget.lua)
-- ARGV[1] probe ttl ms, ARGV[2] ms per request (0 = none), ARGV[3] ms per token (0 = none),
-- ARGV[4] tokens, ARGV[5] token burst, ARGV[6] max concurrent (0 = none), ARGV[7] lease id,
-- ARGV[8] lease ttl ms, ARGV[9] max wait ms, ARGV[10] poll ms (a full concurrency pool's retry),
-- ARGV[11] the call's estimated cost in micro-USD (0: unpriced, nothing held; -1: not computed, since most
-- calls meet no budget and pricing one costs CPU: asked for with -3 when a limit applies), ARGV[12] reservation id,
-- ARGV[13] reservation ttl ms, ARGV[14..] per spend hash, where its limit is: '' (the hash's own
-- `max_cost`: a batch) or a field of the budgets hash ("{tenant}:day")
-- Returns {code, wait ms as a string}: 1 admitted (sleep `wait`, then call), 0 not admitted (nothing
-- booked: try again after `wait`), -1 circuit open (a probe may go after `wait`), -2 a budget would be
-- exceeded (nothing booked; `wait` is "{the spend hash's position from 1}:{micro-USD held there by
-- calls in flight}"), -3 a budget applies and ARGV[11] was -1 (nothing booked: call again with the estimate).
-- An admitted call is counted now, before it sleeps or goes: a crash during the call cannot lose it (one
-- during its sleep counts a call never sent; a call that books again passes KEYS[5] '', counted once).
-- include: budget
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local probe = false
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until > 0 then
  if now < open_until then return {-1, tostring(open_until - now)} end
  local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
  if now < probe_until then return {-1, tostring(probe_until - now)} end
  probe = true  -- half-open: this call is the probe, if the limits let it go
end
local cooldown = redis.call('PTTL', KEYS[4])
if cooldown > 0 then return {0, tostring(cooldown)} end
local per_req, per_tok = tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, tok_burst = tonumber(ARGV[4]), tonumber(ARGV[5])
local max_conc, max_wait = tonumber(ARGV[6]), tonumber(ARGV[9])
if max_conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= max_conc then return {0, ARGV[10]} end
end
local wait, new_r, new_t = 0, nil, nil
if per_req > 0 then
  local tat = tonumber(redis.call('HGET', KEYS[2], 'r') or '0')
  if tat < now then tat = now end
  wait = tat - now
  new_r = tat + per_req
end
if per_tok > 0 then
  local tat = tonumber(redis.call('HGET', KEYS[2], 't') or '0')
  if tat < now then tat = now end
  -- the token clock may run up to one burst ahead: a minute's budget can be spent unevenly
  local go = tat - tok_burst * per_tok
  if go < now then go = now end
  if go - now > wait then wait = go - now end
  new_t = tat + tokens * per_tok
end
if wait > max_wait then return {0, tostring(wait)} end
local estimate, limited = tonumber(ARGV[11]), {}
if estimate ~= 0 then
  local checked = false
  for i = 10, #KEYS do
    local limit
    if ARGV[i + 4] == '' then
      limit = redis.call('HGET', KEYS[i], 'max_cost')
    else
      limit = redis.call('HGET', KEYS[9], ARGV[i + 4])
    end
    if limit then
      if estimate < 0 then return {-3, ''} end
      if not checked then budget_purge(KEYS[6], KEYS[7], KEYS[8], now); checked = true end
      local v = redis.call('HMGET', KEYS[i], 'spent', 'reserved')
      local held = tonumber(v[2] or '0')
      if tonumber(v[1] or '0') + held + estimate > tonumber(limit) then
        return {-2, tostring(i - 9) .. ':' .. tostring(held)}
      end
      limited[#limited + 1] = i
    end
  end
end
if new_r then redis.call('HSET', KEYS[2], 'r', tostring(new_r)) end
if new_t then redis.call('HSET', KEYS[2], 't', tostring(new_t)) end
if new_r or new_t then redis.call('PEXPIRE', KEYS[2], 3600000) end
if max_conc > 0 then
  redis.call('ZADD', KEYS[3], now + wait + tonumber(ARGV[8]), ARGV[7])
  redis.call('PEXPIRE', KEYS[3], 3600000)
end
if probe then redis.call('HSET', KEYS[1], 'probe_until', tostring(now + tonumber(ARGV[1]))) end
if #limited > 0 then
  local names = {}
  for n, i in ipairs(limited) do
    redis.call('HINCRBY', KEYS[i], 'reserved', estimate)
    if ARGV[i + 4] ~= '' then redis.call('EXPIRE', KEYS[i], 35000000) end  -- a tenant's period: ~13 months
    names[n] = KEYS[i]
  end
  redis.call('ZADD', KEYS[6], now + wait + tonumber(ARGV[13]), ARGV[12])
  redis.call('HSET', KEYS[7], ARGV[12], tostring(estimate) .. ' ' .. table.concat(names, ' '))
end
if KEYS[5] ~= '' then redis.call('HINCRBY', KEYS[5], 'provider_calls', 1) end
return {1, tostring(wait)}
