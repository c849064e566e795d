-- pack_open: up to ARGV[2] of a group's open jobs become a new pack: the engine's intent, recorded
-- before the provider batch is created (a crash after this finds the pack, `creating`, and either adopts
-- the provider batch its metadata names or creates it; nothing is created twice, no job is lost).
-- Each job is marked with its pack, and each batch lists the packs holding its jobs.
-- The enqueued-token quota: each job carries its estimated input tokens (`nb_tokens`, written by its
-- deposit); the pack takes jobs, oldest first, while the ledger's tokens (its provider batches not ended)
-- plus the pack's stay within the limit (the operator's, or a lower one learned from a refusal), and adds
-- its tokens to the ledger here, in the same step (pack_release.lua gives them back). A job over the
-- whole limit goes alone, when the ledger is empty (the provider decides; refused, it goes realtime).
-- KEYS[1] the group's open zset, KEYS[2] pack hash, KEYS[3] pack jobs list, KEYS[4] packs zset,
-- KEYS[5] the ledgers hash, KEYS[6] the ledger's learned limit
-- ARGV[1] pack id, ARGV[2] most jobs, ARGV[3] now (s), ARGV[4] mmq's key prefix, ARGV[5] the ledger (a
-- field of KEYS[5]), ARGV[6] the limit in tokens (0: none), ARGV[7..] the pack's field/value pairs
-- (group, target, model, kind, …)
-- Returns {the ids of the jobs packed (none: no pack was made), 1 when jobs were left waiting for room
-- under the limit, else 0}.
local limit = tonumber(ARGV[6]) or 0
local learned = tonumber(redis.call('GET', KEYS[6]))
if learned and (limit <= 0 or learned < limit) then limit = learned end
local used = tonumber(redis.call('HGET', KEYS[5], ARGV[5])) or 0
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local packed, tokens, limited = {}, 0, 0
for _, id in ipairs(ids) do
  local job = ARGV[4] .. ':job:' .. id
  local state = redis.call('HMGET', job, 'status', 'nb_tokens')
  if state[1] ~= 'provider_batch' then
    redis.call('ZREM', KEYS[1], id)  -- gone meanwhile (cancelled, sent realtime): not packed
  else
    local t = tonumber(state[2]) or 0
    if limit > 0 and (#packed > 0 or used > 0) and used + tokens + t > limit then
      limited = 1
      break
    end
    redis.call('ZREM', KEYS[1], id)
    packed[#packed + 1] = id
    tokens = tokens + t
    redis.call('HSET', job, 'pack', ARGV[1])
    local batch = redis.call('HGET', job, 'batch')
    if batch then redis.call('SADD', ARGV[4] .. ':batch:' .. batch .. ':packs', ARGV[1]) end
  end
end
if #packed == 0 then return {packed, limited} end
for i = 1, #packed, 1000 do  -- unpack() takes a few thousand values at most: a pack holds up to 100,000
  redis.call('RPUSH', KEYS[3], unpack(packed, i, math.min(i + 999, #packed)))
end
local fields = {'state', 'creating', 'created_at', ARGV[3], 'jobs', tostring(#packed),
  'tokens', tostring(tokens), 'ledger', ARGV[5], 'held', '1'}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
if tokens > 0 then redis.call('HINCRBY', KEYS[5], ARGV[5], tokens) end
return {packed, limited}
