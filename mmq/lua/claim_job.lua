-- claim_job(job_key, now_s, prefix, job_id, lock_ttl_ms, queue, lease_ms): a worker takes a job
-- (queued or budget -> running) and gets everything it needs: its fields, its batch's routing config and, when the
-- producer keyed it (`cache_lookup` = 1), the cache's answer for its key. Included by claim and start.
-- A running job stays in arq's queue until it ends, due, at the head: every worker with a free slot
-- reads the head and checks each id there before finding one it may start, so 4 workers spent ~40 round
-- trips per job skipping each other's running jobs. Claiming moves the running job's score to the end of
-- its lease (ZADD XX; `queue` '' skips it): out of every poll's way, and due again only if its worker died
-- (as arq's own in-progress key expires), when arq re-runs it; the job's finish removes it.
-- Returns {outcome, job fields (flat, as HGETALL), batch config JSON or false, cache answer or false}
-- (the cache answer: an entry's JSON, 'lead' or 'wait', as cache_lead gives it), where outcome is:
--   'ok'       the job is now running (a re-run of a running job -- after a crash or a deferral -- is ok
--              too and changes nothing);
--   'expired'  its deadline passed (nothing changed: the caller fails it), with the job's fields;
--   'missing'  no such job; anything else is the job's current (terminal) status, nothing changed.
-- The batch key is derived from the job's `batch` field (see mmq/keys.py: one Redis, never Cluster).
-- A batch job's spec is a field of its batch's specs hash, its tenant the batch's (mmq/records.py): they
-- are added to the job's fields, with its id, as `spec`, `tenant` and `id`.
-- include: cache_lead
local function job_fields(job_key, batch_key, job_id)
  local fields = redis.call('HGETALL', job_key)
  local spec = batch_key and redis.call('HGET', batch_key .. ':specs', job_id)
  if spec then
    local tenant = redis.call('HGET', batch_key, 'tenant')
    for _, v in ipairs({'spec', spec, 'tenant', tenant, 'id', job_id}) do fields[#fields + 1] = v end
  end
  return fields
end

local function claim_job(job_key, now_s, prefix, job_id, lock_ttl_ms, queue, lease_ms)
  local st = redis.call('HGET', job_key, 'status')
  if not st then return {'missing'} end
  if st ~= 'queued' and st ~= 'running' and st ~= 'budget' then return {st} end
  local batch_id = redis.call('HGET', job_key, 'batch')
  local batch_key = batch_id and (prefix .. ':batch:' .. batch_id) or false
  local deadline = redis.call('HGET', job_key, 'deadline')
  if deadline and tonumber(deadline) <= tonumber(now_s) then
    return {'expired', job_fields(job_key, batch_key, job_id)}
  end
  if st ~= 'running' then  -- queued, or waiting for a budget (it checks again as it runs)
    redis.call('HSET', job_key, 'status', 'running', 'started_at', now_s)
    if batch_key then
      redis.call('HINCRBY', batch_key, st, -1)
      redis.call('HINCRBY', batch_key, 'running', 1)
    end
  end
  if queue ~= '' then
    redis.call('ZADD', queue, 'XX', tonumber(now_s) * 1000 + tonumber(lease_ms), job_id)
  end
  local config = batch_key and redis.call('HGET', batch_key, 'config') or false
  local cache = false
  if redis.call('HGET', job_key, 'cache_lookup') == '1' then
    local key = redis.call('HGET', job_key, 'cache_key')
    cache = cache_lead(prefix .. ':cache:e:' .. key, prefix .. ':cache:lock:' .. key, job_id, lock_ttl_ms)
  end
  return {'ok', job_fields(job_key, batch_key, job_id), config, cache}
end
