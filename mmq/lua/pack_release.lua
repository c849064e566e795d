-- pack_release: a pack lets go of jobs, of its enqueued tokens, or both, in one step:
-- - its jobs from position ARGV[4] on (0: all of them; -1: none) leave it: those still `provider_batch`
--   wait in its group again (a byte-limit split, or a pack a provider refused for its quota: nothing was
--   sent for them), and their tokens leave the pack's count and, while it holds them, the ledger;
-- - with ARGV[5] = '1' the pack has ended (harvested, failed, refused): it leaves the active set and
--   gives the ledger back every token it still holds (a second call gives back nothing);
-- - ARGV[6] (tokens, '' for none) is a lower limit learned for the pack's ledger from a quota refusal,
--   kept ARGV[7] seconds; it only ever lowers a learned limit already there;
-- - ARGV[8..] are field/value pairs set on the pack (its state, its error…).
-- KEYS[1] pack hash, KEYS[2] pack jobs list, KEYS[3] the group's open zset, KEYS[4] the set of groups
-- with open jobs, KEYS[5] packs zset, KEYS[6] the ledgers hash, KEYS[7] the ledger's learned limit
-- ARGV[1] pack id, ARGV[2] mmq's key prefix, ARGV[3] now (ms)
-- Returns how many jobs went back to wait.
local prefix, now = ARGV[2], ARGV[3]
local ledger = redis.call('HGET', KEYS[1], 'ledger')
local held = redis.call('HGET', KEYS[1], 'held') == '1' and ledger
local back = 0
local keep = tonumber(ARGV[4])
if keep >= 0 then
  local rest = redis.call('LRANGE', KEYS[2], keep, -1)
  local tokens = 0
  for _, id in ipairs(rest) do
    local job = prefix .. ':job:' .. id
    local state = redis.call('HMGET', job, 'status', 'nb_tokens', 'pack')
    tokens = tokens + (tonumber(state[2]) or 0)
    if state[3] == ARGV[1] then redis.call('HDEL', job, 'pack') end
    if state[1] == 'provider_batch' then
      redis.call('ZADD', KEYS[3], now, id)
      back = back + 1
    end
  end
  if #rest > 0 then
    if keep == 0 then redis.call('DEL', KEYS[2]) else redis.call('LTRIM', KEYS[2], 0, keep - 1) end
    local left = math.max(0, (tonumber(redis.call('HGET', KEYS[1], 'tokens')) or 0) - tokens)
    redis.call('HSET', KEYS[1], 'jobs', keep, 'tokens', left)
    if held and tokens > 0 then redis.call('HINCRBY', KEYS[6], ledger, -tokens) end
  end
  if back > 0 then redis.call('SADD', KEYS[4], KEYS[3]) end
end
if ARGV[5] == '1' then
  redis.call('ZREM', KEYS[5], ARGV[1])
  if held then
    local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens')) or 0
    if tokens > 0 then redis.call('HINCRBY', KEYS[6], ledger, -tokens) end
    redis.call('HSET', KEYS[1], 'held', '0')
  end
end
if held and (tonumber(redis.call('HGET', KEYS[6], ledger)) or 0) <= 0 then
  redis.call('HDEL', KEYS[6], ledger)
end
if ARGV[6] ~= '' then
  local learned = tonumber(redis.call('GET', KEYS[7]))
  if not learned or tonumber(ARGV[6]) < learned then
    redis.call('SET', KEYS[7], ARGV[6], 'EX', ARGV[7])
  end
end
if #ARGV >= 9 then
  local fields = {}
  for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
return back
