-- budget: spending held against budgets, shared by every worker. A spend hash (a batch's own hash, a
-- tenant's day or month: mmq/keys.py) counts `spent` and `reserved` in micro-USD. A call that may go
-- holds its estimate on every spend hash that has a limit (a reservation); its end gives the estimate
-- back and adds what it really cost. Reservations are crash-safe: each has an expiry in the `held` zset,
-- and a script that checks budgets first gives back the expired ones (a worker that died mid-call).
-- Giving one back wakes one job waiting for a budget "until spending settles" (score +inf in `waiting`,
-- set to 0: due for the next worker's wake sweep), so waiting jobs re-check exactly when room may exist.
-- Included by admit, settle and finish.
local function budget_release(held, what, waiting, id)
  if id == '' then return end
  local v = redis.call('HGET', what, id)
  redis.call('ZREM', held, id)
  if not v then return end
  redis.call('HDEL', what, id)
  local amount = nil
  for word in string.gmatch(v, '%S+') do
    if not amount then
      amount = tonumber(word)
    elseif redis.call('EXISTS', word) == 1 then
      redis.call('HINCRBY', word, 'reserved', -amount)
    end
  end
  local next_up = redis.call('ZREVRANGEBYSCORE', waiting, '+inf', '+inf', 'LIMIT', 0, 1)
  if next_up[1] then redis.call('ZADD', waiting, 'XX', 0, next_up[1]) end
end

local function budget_purge(held, what, waiting, now_ms)
  local gone = redis.call('ZRANGEBYSCORE', held, '-inf', now_ms, 'LIMIT', 0, 100)
  for _, id in ipairs(gone) do budget_release(held, what, waiting, id) end
end
