-- fail: records a failed attempt of a leased job. Fenced by (shard, token, owner).
-- ARGV[1]  shard
-- ARGV[2]  token
-- ARGV[3]  error text
-- ARGV[4]  "1" if retryable, "0" if not
-- ARGV[5]  owner
-- Returns {"unknown"} (no such run), {"lost"} (lease not held: nothing changed),
-- {"dead", failures} or {"retry", at_ms, failures} (at_ms = TIME + backoff).
local m = redis.call('HMGET', META, 'max_attempts', 'backoff_ms', 'max_backoff_ms', 'state')
if not m[1] then return {'unknown'} end
if not holds(ARGV[1], ARGV[2], ARGV[5]) then return {'lost'} end
redis.call('ZREM', LEASED, ARGV[1])
redis.call('HDEL', OWNERS, ARGV[1])
local failures = redis.call('HINCRBY', FAILURES, ARGV[1], 1)
if ARGV[4] ~= '1' or failures >= tonumber(m[1]) then
  redis.call('HDEL', FAILURES, ARGV[1])
  redis.call('HSET', DEAD, ARGV[1], fmt(failures) .. ':' .. ARGV[3])
  return {'dead', fmt(failures)}
end
local at = fmt(now_ms() + backoff_ms(tonumber(m[2]), tonumber(m[3]), failures))
-- A cancelled run is never claimed again: its retry schedule is not kept (cancel.lua).
if m[4] == 'active' then redis.call('ZADD', DELAYED, at, ARGV[1]) end
return {'retry', at, fmt(failures)}
