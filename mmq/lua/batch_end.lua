-- batch_end(batch_key, now): ends a sealed batch once nothing is queued, running, waiting for a budget or
-- in a provider batch.
-- An in_progress batch ends `completed` (or `expired` once its deadline passed); a cancelling one ends
-- `cancelled`. Returns the status it ended in, or false. Included by every script that can end a batch.
local function batch_end(batch_key, now)
  local v = redis.call('HMGET', batch_key, 'sealed', 'queued', 'running', 'status', 'expired', 'budget',
    'provider_batch')
  if v[1] ~= '1' or tonumber(v[2]) ~= 0 or tonumber(v[3]) ~= 0 or tonumber(v[6] or '0') ~= 0
    or tonumber(v[7] or '0') ~= 0 then
    return false
  end
  local done = (v[5] == '1' and 'expired') or 'completed'
  local ended = (v[4] == 'in_progress' and done) or (v[4] == 'cancelling' and 'cancelled')
  if ended then redis.call('HSET', batch_key, 'status', ended, 'finished_at', now) end
  return ended
end
