-- lib: prepended to every queue script. Every script gets the same nine keys of one run
-- (one Redis Cluster slot), in this order:
-- KEYS[1]  meta       HASH    run record, state, cursor, committed count, last_committed
-- KEYS[2]  ready      LIST    shards given back, retried or revived: claimed before the cursor
-- KEYS[3]  delayed    ZSET    shard -> ms when claimable again
-- KEYS[4]  leased     ZSET    shard -> lease deadline (ms)
-- KEYS[5]  owners     HASH    shard -> owner of the lease
-- KEYS[6]  claims     HASH    shard -> claims so far (token of the latest lease); shards
--                             claimed at least once and not yet committed
-- KEYS[7]  failures   HASH    shard -> failed attempts so far (not dead, not committed)
-- KEYS[8]  dead       HASH    shard -> "<failures>:<last error>"
-- KEYS[9]  committed  bitmap  bit shard = 1 once committed (active runs only)
-- Shards at or past meta.cursor were never claimed and have no entry anywhere: submit is
-- O(1) and a pending shard costs nothing. Each shard is in exactly one state, so
-- pending = shards - committed - leased - dead.
local META, READY, DELAYED, LEASED, OWNERS, CLAIMS, FAILURES, DEAD, COMMITTED =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]

local function fmt(n) return string.format('%d', n) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Backoff before the claim that follows failure number `failures` (1-based).
local function backoff_ms(backoff, max_backoff, failures)
  local shift = math.min(math.max(failures - 1, 0), 30)
  return math.min(backoff * 2 ^ shift, max_backoff)
end

-- Sets the committed counter (and last_committed) from the committed bitmap.
local function count_bitmap(shards)
  redis.call('HSET', META, 'committed', redis.call('BITCOUNT', COMMITTED))
  if redis.call('GETBIT', COMMITTED, tonumber(shards) - 1) == 1 then redis.call('HSET', META, 'last_committed', '1') end
end

-- A run registered before the committed counter existed (its shards all in its ready
-- list, its commits only in the bitmap): count the bitmap once, so the counter starts
-- from the truth. Every script that counts or drops commits calls it first.
local function migrate()
  if redis.call('HEXISTS', META, 'committed') == 1 then return end
  local shards = redis.call('HGET', META, 'shards')
  if not shards then return end
  count_bitmap(shards)
end

-- Counts `shard` committed; the caller knows it was not. While the run is active its bit
-- is set (a finished run keeps no per-shard state); its claim and failure entries go.
local function count_committed(shard, state, shards)
  redis.call('HINCRBY', META, 'committed', 1)
  if tonumber(shard) == tonumber(shards) - 1 then redis.call('HSET', META, 'last_committed', '1') end
  if state == 'active' then redis.call('SETBIT', COMMITTED, shard, 1) end
  redis.call('HDEL', CLAIMS, shard)
  redis.call('HDEL', FAILURES, shard)
end

-- The first shard at or past `from` whose committed bit is clear (bits past the string's
-- end are clear). Redis >= 7.0 (BITPOS … BIT).
local function first_uncommitted(from)
  local len = redis.call('STRLEN', COMMITTED) * 8
  if from >= len then return from end
  local r = redis.call('BITPOS', COMMITTED, 0, fmt(from), '-1', 'BIT')
  if r == -1 then return len end
  return r
end

-- Leases one ready job of an active run: first reclaims expired leases (each a failed
-- attempt: back to delayed with backoff, or dead at max_attempts) and moves due retries
-- to ready (at most `limit` of each); then takes the head of ready, else the cursor.
-- Returns {"inactive"}, {"empty"} or {"leased", shard, token, failures, deadline_ms}.
local function claim_one(owner, limit)
  local m = redis.call('HMGET', META, 'state', 'max_attempts', 'lease_ms', 'backoff_ms', 'max_backoff_ms', 'shards', 'cursor')
  if m[1] ~= 'active' then return {'inactive'} end
  local max_attempts, lease_ms = tonumber(m[2]), tonumber(m[3])
  local backoff, max_backoff = tonumber(m[4]), tonumber(m[5])
  -- No cursor: a run submitted before the cursor existed, every shard in its ready list.
  local shards, cursor = tonumber(m[6]), tonumber(m[7] or m[6])
  local now = now_ms()

  local expired = redis.call('ZRANGEBYSCORE', LEASED, '-inf', fmt(now), 'LIMIT', 0, limit)
  for _, s in ipairs(expired) do
    local who = redis.call('HGET', OWNERS, s) or '?'
    local failures = redis.call('HINCRBY', FAILURES, s, 1)
    redis.call('ZREM', LEASED, s)
    redis.call('HDEL', OWNERS, s)
    if failures >= max_attempts then
      redis.call('HDEL', FAILURES, s)
      redis.call('HSET', DEAD, s, fmt(failures) .. ':lease expired (owner ' .. who .. ')')
    else
      redis.call('ZADD', DELAYED, fmt(now + backoff_ms(backoff, max_backoff, failures)), s)
    end
  end
  local due = redis.call('ZRANGEBYSCORE', DELAYED, '-inf', fmt(now), 'LIMIT', 0, limit)
  if #due > 0 then
    redis.call('RPUSH', READY, unpack(due))
    redis.call('ZREM', DELAYED, unpack(due))
  end

  local shard = redis.call('LPOP', READY)
  if not shard then
    if cursor >= shards then return {'empty'} end
    local next = first_uncommitted(cursor)
    if next >= shards then
      redis.call('HSET', META, 'cursor', fmt(shards))
      return {'empty'}
    end
    shard = fmt(next)
    redis.call('HSET', META, 'cursor', fmt(next + 1))
  end
  local token = redis.call('HINCRBY', CLAIMS, shard, 1)
  local deadline = now + lease_ms
  redis.call('ZADD', LEASED, fmt(deadline), shard)
  redis.call('HSET', OWNERS, shard, owner)
  local failures = redis.call('HGET', FAILURES, shard) or '0'
  return {'leased', shard, fmt(token), failures, fmt(deadline)}
end

-- Gives a leased shard back without spending an attempt: out of the leases and, while
-- the run is active, to the front of the ready list (a cancelled run is never claimed
-- again, so its ready list is not kept). False if it was not leased.
local function release_one(shard, state)
  redis.call('HDEL', OWNERS, shard)
  if redis.call('ZREM', LEASED, shard) == 0 then return false end
  if state == 'active' then redis.call('LPUSH', READY, shard) end
  return true
end

-- Whether (shard, token, owner) is the shard's current lease. The owner too: tokens count
-- claims from 1 again once Redis lost the run and it was rebuilt, so a stale holder can
-- carry the current token; owner names are unique per worker slot.
local function holds(shard, token, owner)
  return redis.call('ZSCORE', LEASED, shard) ~= false and redis.call('HGET', CLAIMS, shard) == token and redis.call('HGET', OWNERS, shard) == owner
end

-- Acks (shard, token, owner): -1 no such run, 0 lease not held (nothing changed), 1
-- committed (now, or before: an ack repeated after its commit).
local function ack_one(shard, token, owner)
  local m = redis.call('HMGET', META, 'state', 'shards')
  if not m[1] then return -1 end
  migrate()
  if holds(shard, token, owner) then
    redis.call('ZREM', LEASED, shard)
    redis.call('HDEL', OWNERS, shard)
    count_committed(shard, m[1], m[2])
    return 1
  end
  if redis.call('GETBIT', COMMITTED, shard) == 1 then return 1 end
  return 0
end
