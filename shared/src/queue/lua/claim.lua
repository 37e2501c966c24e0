-- claim: leases one ready job of a run. First reclaims expired leases (each a failed
-- attempt: back to delayed with backoff, or dead at max_attempts) and moves due delayed
-- jobs to the ready list. Deadlines use the server clock (TIME).
-- KEYS[1]  meta       HASH  run record and state
-- KEYS[2]  ready      LIST  shards ready to claim
-- KEYS[3]  delayed    ZSET  shard -> ms when claimable again
-- KEYS[4]  leased     ZSET  shard -> lease deadline (ms)
-- KEYS[5]  owners     HASH  shard -> owner of the lease
-- KEYS[6]  claims     HASH  shard -> claims so far (token of the latest lease)
-- KEYS[7]  failures   HASH  shard -> failed attempts so far
-- KEYS[8]  dead       HASH  shard -> "<failures>:<last error>"
-- ARGV[1]  owner
-- ARGV[2]  at most this many expired leases and due retries handled per call
-- Returns {"unknown"} (no such run), {"inactive"} (cancelled or finalized), {"empty"}
-- (nothing ready now) or {"leased", shard, token, failures, deadline_ms}.
local m = redis.call('HMGET', KEYS[1], 'state', 'max_attempts', 'lease_ms', 'backoff_ms', 'max_backoff_ms')
if not m[1] then return {'unknown'} end
if m[1] ~= 'active' then return {'inactive'} end
local max_attempts = tonumber(m[2])
local lease_ms = tonumber(m[3])
local backoff = tonumber(m[4])
local max_backoff = tonumber(m[5])
local limit = tonumber(ARGV[2])

local function fmt(n) return string.format('%d', n) end
local function backoff_ms(failures)
  local shift = math.min(math.max(failures - 1, 0), 30)
  return math.min(backoff * 2 ^ shift, max_backoff)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', fmt(now), 'LIMIT', 0, limit)
for _, shard in ipairs(expired) do
  local owner = redis.call('HGET', KEYS[5], shard) or '?'
  local failures = redis.call('HINCRBY', KEYS[7], shard, 1)
  redis.call('ZREM', KEYS[4], shard)
  redis.call('HDEL', KEYS[5], shard)
  if failures >= max_attempts then
    redis.call('HDEL', KEYS[7], shard)
    redis.call('HSET', KEYS[8], shard, fmt(failures) .. ':lease expired (owner ' .. owner .. ')')
  else
    redis.call('ZADD', KEYS[3], fmt(now + backoff_ms(failures)), shard)
  end
end

local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', fmt(now), 'LIMIT', 0, limit)
if #due > 0 then
  redis.call('RPUSH', KEYS[2], unpack(due))
  redis.call('ZREM', KEYS[3], unpack(due))
end

local shard = redis.call('LPOP', KEYS[2])
if not shard then return {'empty'} end
local token = redis.call('HINCRBY', KEYS[6], shard, 1)
local deadline = now + lease_ms
redis.call('ZADD', KEYS[4], fmt(deadline), shard)
redis.call('HSET', KEYS[5], shard, ARGV[1])
local failures = redis.call('HGET', KEYS[7], shard) or '0'
return {'leased', shard, fmt(token), failures, fmt(deadline)}
