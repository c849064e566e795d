-- to_realtime: jobs that will not be answered by a provider batch (its deadline fallback, a refused or
-- failed batch, a line that may run again) go back to the realtime queue: status `queued`, resume
-- {"tier": "realtime"} (the worker then calls their provider directly), and arq's entry written here
-- from the caller's payload template around the id, in the same call: no job is ever in neither place.
-- Only jobs still `provider_batch` move (one a harvest already ended stays ended). Jobs still waiting to
-- be packed (their deadline came before room under the enqueued-token limit) leave their group's open
-- zset, KEYS[2] when given.
-- A job's budget hold at the batch price (`nb_hold`, taken before its deposit) is given back: its
-- realtime admission holds its realtime estimate instead.
-- include: budget
-- KEYS[1] arq's queue, KEYS[2] the group's open zset or '', KEYS[3] budget held zset, KEYS[4] held-what
-- hash, KEYS[5] waiting zset
-- ARGV[1] mmq's key prefix, ARGV[2] arq's payload key prefix, ARGV[3] payload before the id's JSON,
-- ARGV[4] payload after it, ARGV[5] payload ttl ms, ARGV[6] queue score, ARGV[7] resume JSON,
-- ARGV[8..] job ids
-- Returns the ids it moved.
local moved = {}
for i = 8, #ARGV do
  local id = ARGV[i]
  local job = ARGV[1] .. ':job:' .. id
  if redis.call('HGET', job, 'status') == 'provider_batch' then
    redis.call('HSET', job, 'status', 'queued', 'resume', ARGV[7])
    redis.call('HDEL', job, 'pack')
    local hold = redis.call('HGET', job, 'nb_hold')
    if hold then
      budget_release(KEYS[3], KEYS[4], KEYS[5], hold)
      redis.call('HDEL', job, 'nb_hold')
    end
    local batch = redis.call('HGET', job, 'batch')
    if batch then
      local key = ARGV[1] .. ':batch:' .. batch
      redis.call('HINCRBY', key, 'provider_batch', -1)
      redis.call('HINCRBY', key, 'queued', 1)
    end
    redis.call('SET', ARGV[2] .. id, ARGV[3] .. cjson.encode(id) .. ARGV[4], 'PX', ARGV[5])
    redis.call('ZADD', KEYS[1], ARGV[6], id)
    if KEYS[2] ~= '' then redis.call('ZREM', KEYS[2], id) end
    moved[#moved + 1] = id
  end
end
return moved
