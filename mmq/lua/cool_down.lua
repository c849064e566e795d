-- cool_down(clocks_key, cooldown_key, ms): a 429 pauses a target for every worker until the provider's
-- reset, then calls resume evenly spaced (the request clock moves past the pause). Included by settle.
local function cool_down(clocks_key, cooldown_key, ms)
  if redis.call('PTTL', cooldown_key) < ms then redis.call('SET', cooldown_key, '1', 'PX', math.floor(ms)) end
  local t = redis.call('TIME')
  local until_ms = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000 + ms
  local tat = tonumber(redis.call('HGET', clocks_key, 'r') or '0')
  if tat < until_ms then redis.call('HSET', clocks_key, 'r', tostring(until_ms)) end
  redis.call('PEXPIRE', clocks_key, 3600000)
end
