-- requeue_failed: put a batch's failed jobs back in `queued` and re-open the batch. Attempts, error,
-- result, times and the deadline are cleared (the spec is untouched).
-- KEYS[1] batch hash, KEYS[2..] job hashes (failed ones the caller chose: invalid requests excepted)
-- Returns the ids of the jobs it moved.
local moved = {}
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'status') == 'failed' then
    redis.call('HSET', KEYS[i], 'status', 'queued')
    redis.call('HDEL', KEYS[i], 'error', 'attempts', 'resume', 'started_at', 'finished_at', 'deadline', 'usage')
    moved[#moved + 1] = string.match(KEYS[i], ':job:(.+)$')
  end
end
if #moved > 0 then
  redis.call('HINCRBY', KEYS[1], 'failed', -#moved)
  redis.call('HINCRBY', KEYS[1], 'queued', #moved)
  redis.call('HSET', KEYS[1], 'status', 'in_progress', 'expired', '0')
  redis.call('HDEL', KEYS[1], 'finished_at')
end
return moved
