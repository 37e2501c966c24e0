-- release: gives a leased job back to the front of the ready list without spending an
-- attempt. Fenced by (shard, token).
-- KEYS[1]  meta    HASH  run record and state
-- KEYS[2]  leased  ZSET  shard -> lease deadline (ms)
-- KEYS[3]  owners  HASH  shard -> owner of the lease
-- KEYS[4]  claims  HASH  shard -> token of the latest lease
-- KEYS[5]  ready   LIST  shards ready to claim
-- ARGV[1]  shard
-- ARGV[2]  token
-- Returns -1 (no such run), 0 (lease not held: nothing changed) or 1 (released).
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('LPUSH', KEYS[5], ARGV[1])
return 1
