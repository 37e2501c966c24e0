-- submit: registers a run and enqueues its shards 0..shards-1, in one atomic step.
-- KEYS[1]  meta       HASH    the run record and its state
-- KEYS[2]  ready      LIST    shard numbers ready to claim
-- KEYS[3]  committed  bitmap  bit shard = 1 once committed
-- ARGV[1]  spec_digest
-- ARGV[2]  spec_json
-- ARGV[3]  shards (>= 1)
-- ARGV[4]  max_attempts
-- ARGV[5]  lease_ms
-- ARGV[6]  backoff_ms
-- ARGV[7]  max_backoff_ms
-- ARGV[8]  priority
-- ARGV[9…] shards already committed (a run rebuilt from storage): marked, not enqueued
-- Returns {status, created_ms, state, priority, stored_digest} where status is
-- "created" (new run, created_ms = server TIME), "exists" (same digest: nothing changed)
-- or "conflict" (a different digest is stored under this id: nothing changed).
local stored = redis.call('HGET', KEYS[1], 'spec_digest')
if stored then
  local m = redis.call('HMGET', KEYS[1], 'created_ms', 'state', 'priority')
  local status = 'conflict'
  if stored == ARGV[1] then status = 'exists' end
  return {status, m[1], m[2], m[3], stored}
end

local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1],
  'spec_digest', ARGV[1], 'spec_json', ARGV[2], 'shards', ARGV[3],
  'max_attempts', ARGV[4], 'lease_ms', ARGV[5], 'backoff_ms', ARGV[6],
  'max_backoff_ms', ARGV[7], 'priority', ARGV[8], 'created_ms', now, 'state', 'active')

local done = {}
for i = 9, #ARGV do
  done[tonumber(ARGV[i])] = true
  redis.call('SETBIT', KEYS[3], ARGV[i], 1)
end
local shards = tonumber(ARGV[3])
local batch = {}
for s = 0, shards - 1 do
  if not done[s] then batch[#batch + 1] = s end
  if #batch == 1000 then
    redis.call('RPUSH', KEYS[2], unpack(batch))
    batch = {}
  end
end
if #batch > 0 then
  redis.call('RPUSH', KEYS[2], unpack(batch))
end
return {'created', now, 'active', ARGV[8], ARGV[1]}
