-- submit: registers a run in O(1): its shards 0..shards-1 are pending behind a cursor
-- (meta.cursor = 0), nothing per shard is written.
-- ARGV[1]  spec_digest
-- ARGV[2]  spec_json
-- ARGV[3]  shards (>= 1)
-- ARGV[4]  max_attempts
-- ARGV[5]  lease_ms
-- ARGV[6]  backoff_ms
-- ARGV[7]  max_backoff_ms
-- ARGV[8]  priority
-- ARGV[9…] shards already committed (a run rebuilt from storage): marked, never claimed
-- Returns {status, created_ms, state, priority, stored_digest} where status is
-- "created" (new run, created_ms = server TIME), "exists" (same digest: nothing changed)
-- or "conflict" (a different digest is stored under this id: nothing changed).
local stored = redis.call('HGET', META, 'spec_digest')
if stored then
  local m = redis.call('HMGET', META, 'created_ms', 'state', 'priority')
  local status = 'conflict'
  if stored == ARGV[1] then status = 'exists' end
  return {status, m[1], m[2], m[3], stored}
end

-- No meta: the run is new, or Redis lost its meta but kept some of its other keys (a
-- partial loss); those would count stale commits or hide shards behind stale states.
redis.call('UNLINK', READY, DELAYED, LEASED, OWNERS, CLAIMS, FAILURES, DEAD, COMMITTED)
local now = fmt(now_ms())
redis.call('HSET', META,
  'spec_digest', ARGV[1], 'spec_json', ARGV[2], 'shards', ARGV[3],
  'max_attempts', ARGV[4], 'lease_ms', ARGV[5], 'backoff_ms', ARGV[6],
  'max_backoff_ms', ARGV[7], 'priority', ARGV[8], 'created_ms', now, 'state', 'active',
  'cursor', '0', 'committed', '0')
for i = 9, #ARGV do
  if redis.call('GETBIT', COMMITTED, ARGV[i]) == 0 then count_committed(ARGV[i], 'active', ARGV[3]) end
end
return {'created', now, 'active', ARGV[8], ARGV[1]}
