-- heartbeat: extends a held lease to server TIME + lease_ms. Fenced by (shard, token).
-- KEYS[1]  meta    HASH  run record and state
-- KEYS[2]  leased  ZSET  shard -> lease deadline (ms)
-- KEYS[3]  claims  HASH  shard -> token of the latest lease
-- ARGV[1]  shard
-- ARGV[2]  token
-- Returns "unknown" (no such run), "lost" (not held with this token: nothing changed),
-- "cancelled" (run cancelled; the lease is extended so its holder may release it) or
-- "held".
local m = redis.call('HMGET', KEYS[1], 'state', 'lease_ms')
if not m[1] then return 'unknown' end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 'lost' end
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 'lost' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], 'XX', string.format('%d', now + tonumber(m[2])), ARGV[1])
if m[1] == 'cancelled' then return 'cancelled' end
return 'held'
