-- pack_open: up to ARGV[2] of a group's open jobs become a new pack: the engine's intent, recorded
-- before the provider batch is created (a crash after this finds the pack, `creating`, and either adopts
-- the provider batch its metadata names or creates it; nothing is created twice, no job is lost).
-- Each job is marked with its pack, and each batch lists the packs holding its jobs.
-- KEYS[1] the group's open zset, KEYS[2] pack hash, KEYS[3] pack jobs list, KEYS[4] packs zset
-- ARGV[1] pack id, ARGV[2] most jobs, ARGV[3] now (s), ARGV[4] mmq's key prefix, ARGV[5..] the pack's
-- field/value pairs (group, target, model, kind, …)
-- Returns the ids of the jobs packed (none: no pack was made).
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local packed = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local job = ARGV[4] .. ':job:' .. id
  if redis.call('HGET', job, 'status') == 'provider_batch' then
    packed[#packed + 1] = id
    redis.call('HSET', job, 'pack', ARGV[1])
    local batch = redis.call('HGET', job, 'batch')
    if batch then redis.call('SADD', ARGV[4] .. ':batch:' .. batch .. ':packs', ARGV[1]) end
  end
end
if #packed == 0 then return packed end
for i = 1, #packed, 1000 do  -- unpack() takes a few thousand values at most: a pack holds up to 100,000
  redis.call('RPUSH', KEYS[3], unpack(packed, i, math.min(i + 999, #packed)))
end
local fields = {'state', 'creating', 'created_at', ARGV[3], 'jobs', tostring(#packed)}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
return packed
