-- ack: marks a leased job committed. Fenced by (shard, token); idempotent for the token
-- that committed it.
-- KEYS[1]  meta       HASH    run record and state
-- KEYS[2]  leased     ZSET    shard -> lease deadline (ms)
-- KEYS[3]  owners     HASH    shard -> owner of the lease
-- KEYS[4]  claims     HASH    shard -> token of the latest lease
-- KEYS[5]  failures   HASH    shard -> failed attempts so far
-- KEYS[6]  committed  bitmap  bit shard = 1 once committed
-- ARGV[1]  shard
-- ARGV[2]  token
-- Returns -1 (no such run), 0 (lease not held: nothing changed) or 1 (committed).
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[5], ARGV[1])
  redis.call('SETBIT', KEYS[6], ARGV[1], 1)
  return 1
end
if redis.call('GETBIT', KEYS[6], ARGV[1]) == 1 then return 1 end
return 0
