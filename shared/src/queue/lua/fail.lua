-- fail: records a failed attempt of a leased job. Fenced by (shard, token).
-- KEYS[1]  meta      HASH  run record and state
-- KEYS[2]  leased    ZSET  shard -> lease deadline (ms)
-- KEYS[3]  owners    HASH  shard -> owner of the lease
-- KEYS[4]  claims    HASH  shard -> token of the latest lease
-- KEYS[5]  failures  HASH  shard -> failed attempts so far
-- KEYS[6]  delayed   ZSET  shard -> ms when claimable again
-- KEYS[7]  dead      HASH  shard -> "<failures>:<last error>"
-- ARGV[1]  shard
-- ARGV[2]  token
-- ARGV[3]  error text
-- ARGV[4]  "1" if retryable, "0" if not
-- Returns {"unknown"} (no such run), {"lost"} (lease not held: nothing changed),
-- {"dead", failures} or {"retry", at_ms, failures} (at_ms = TIME + backoff).
local m = redis.call('HMGET', KEYS[1], 'max_attempts', 'backoff_ms', 'max_backoff_ms')
if not m[1] then return {'unknown'} end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return {'lost'} end
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return {'lost'} end

local function fmt(n) return string.format('%d', n) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
local failures = redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
if ARGV[4] ~= '1' or failures >= tonumber(m[1]) then
  redis.call('HDEL', KEYS[5], ARGV[1])
  redis.call('HSET', KEYS[7], ARGV[1], fmt(failures) .. ':' .. ARGV[3])
  return {'dead', fmt(failures)}
end
local shift = math.min(math.max(failures - 1, 0), 30)
local backoff = math.min(tonumber(m[2]) * 2 ^ shift, tonumber(m[3]))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = fmt(now + backoff)
redis.call('ZADD', KEYS[6], at, ARGV[1])
return {'retry', at, fmt(failures)}
