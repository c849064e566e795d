-- claim: a worker takes a job (queued -> running) and gets everything it needs, in one round trip: its
-- fields, its batch's routing config and, when the producer keyed it (`cache_lookup` = 1), the cache's
-- answer for its key.
-- include: cache_lead
-- KEYS[1] job hash
-- ARGV[1] now (epoch s), ARGV[2] key prefix, ARGV[3] job id, ARGV[4] single-flight lock ttl ms,
-- ARGV[5] the arq queue (zset) or '', ARGV[6] the run's lease ms
-- A running job stays in arq's queue until it ends, due, at the head: every worker with a free slot
-- reads the head and checks each id there (WATCH, EXISTS, ZSCORE) before finding one it may start, so
-- 4 workers spent ~40 round trips per job skipping each other's running jobs. Claim moves the running
-- job's score to the end of its lease (ZADD XX): out of every poll's way, and due again only if its
-- worker died (as arq's own in-progress key expires), when arq re-runs it; arq removes it when it ends.
-- Returns {outcome, job fields (flat HGETALL list), batch config JSON or false, cache answer or false}
-- (the cache answer: an entry's JSON, 'lead' or 'wait', as cache_lead gives it), where outcome is:
--   'ok'       the job is now running (a re-run of a running job -- after a crash or a deferral -- is ok
--              too and changes nothing);
--   'expired'  its deadline passed (nothing changed: the caller fails it), with the job's fields;
--   'missing'  no such job; anything else is the job's current (terminal) status, nothing changed.
-- The batch key is derived from the job's `batch` field (see mmq/keys.py: one Redis, never Cluster).
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing'} end
if st ~= 'queued' and st ~= 'running' then return {st} end
local batch_id = redis.call('HGET', KEYS[1], 'batch')
local batch_key = batch_id and (ARGV[2] .. ':batch:' .. batch_id) or false
local deadline = redis.call('HGET', KEYS[1], 'deadline')
if deadline and tonumber(deadline) <= tonumber(ARGV[1]) then return {'expired', redis.call('HGETALL', KEYS[1])} end
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
  if batch_key then
    redis.call('HINCRBY', batch_key, 'queued', -1)
    redis.call('HINCRBY', batch_key, 'running', 1)
  end
end
if ARGV[5] ~= '' then
  redis.call('ZADD', ARGV[5], 'XX', tonumber(ARGV[1]) * 1000 + tonumber(ARGV[6]), ARGV[3])
end
local config = batch_key and redis.call('HGET', batch_key, 'config') or false
local cache = false
if redis.call('HGET', KEYS[1], 'cache_lookup') == '1' then
  local key = redis.call('HGET', KEYS[1], 'cache_key')
  cache = cache_lead(ARGV[2] .. ':cache:e:' .. key, ARGV[2] .. ':cache:lock:' .. key, ARGV[3], ARGV[4])
end
return {'ok', redis.call('HGETALL', KEYS[1]), config, cache}
