-- mark_committed: storage holds the shard's commit record, whatever the queue thought
-- (a late commit after the lease was reclaimed, a shard gone dead after its data was
-- committed): the shard becomes committed and leaves every other state. Storage is the
-- truth; the queue follows it.
-- KEYS[1]  meta       HASH    run record and state
-- KEYS[2]  ready      LIST    shards ready to claim
-- KEYS[3]  delayed    ZSET    shard -> ms when claimable again
-- KEYS[4]  leased     ZSET    shard -> lease deadline (ms)
-- KEYS[5]  owners     HASH    shard -> owner of the lease
-- KEYS[6]  failures   HASH    shard -> failed attempts so far
-- KEYS[7]  dead       HASH    shard -> "<failures>:<last error>"
-- KEYS[8]  committed  bitmap  bit shard = 1 once committed
-- ARGV[1]  shard
-- Returns -1 (no such run), 0 (already committed: nothing changed) or 1 (now committed).
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('GETBIT', KEYS[8], ARGV[1]) == 1 then return 0 end
redis.call('LREM', KEYS[2], 0, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
redis.call('SETBIT', KEYS[8], ARGV[1], 1)
return 1
