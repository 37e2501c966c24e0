-- requeue_stranded: queues again the shards of an active run that are in no state at
-- all: claimed (below the cursor), not committed, not ready, retrying, leased or dead.
-- Every script moves a shard between states atomically (and is replicated and logged as
-- one transaction, so a failover drops whole scripts), so only a run key lost on its own
-- strands one (evicted under a maxmemory-policy other than noeviction, or edited by
-- hand: a ready list, a lease set), and such a run would never finish. Runs only when the run looks stuck:
-- the cursor at the end, nothing ready, retrying or leased, yet fewer shards committed
-- or dead than it has. If the bitmap has more clear bits (not dead) than the counters
-- miss, the bitmap itself lost bits (those shards may be committed): nothing is queued,
-- the caller reports it. Else it walks the committed bitmap's clear bits (BITPOS: the
-- cost is the bitmap's bytes plus one step per uncommitted shard) and queues each clear
-- one that is not dead.
-- Fewer: the committed counter lost increments its bits kept (a bit is set only by a
-- commit, and never on a dead shard), so it is set to the bitmap's count.
-- Returns {"unknown"} (no such run) or {found, queued, missing, repaired}: shards found
-- stranded (by the bitmap's count when it lost bits), queued again, missing by the
-- counters before, and 1 if the counter was set from the bitmap.
local m = redis.call('HMGET', META, 'state', 'shards', 'cursor')
if not m[1] then return {'unknown'} end
if m[1] ~= 'active' then return {'0', '0', '0', '0'} end
migrate()
local shards = tonumber(m[2])
local cursor = tonumber(m[3] or m[2])
local missing = shards - tonumber(redis.call('HGET', META, 'committed')) - redis.call('HLEN', DEAD)
if missing <= 0 or cursor < shards or redis.call('LLEN', READY) > 0
  or redis.call('ZCARD', DELAYED) > 0 or redis.call('ZCARD', LEASED) > 0 then
  return {'0', '0', fmt(math.max(missing, 0)), '0'}
end
-- The shards in no state number shards - BITCOUNT - dead here (a bit is set only by a
-- commit, never on a dead shard): more than the counters miss means the bitmap lost bits,
-- told without walking it (a walk costs a step per shard it finds, and a bitmap lost
-- whole on a large run has millions).
local stranded = shards - redis.call('BITCOUNT', COMMITTED) - redis.call('HLEN', DEAD)
if stranded > missing then return {fmt(stranded), '0', fmt(missing), '0'} end
local found = {}
local from = 0
while from < shards do
  local s = first_uncommitted(from)
  if s >= shards then break end
  if redis.call('HEXISTS', DEAD, fmt(s)) == 0 then
    found[#found + 1] = fmt(s)
    if #found > missing then return {fmt(#found), '0', fmt(missing), '0'} end
  end
  from = s + 1
end
for i = 1, #found, 1000 do
  redis.call('RPUSH', READY, unpack(found, i, math.min(i + 999, #found)))
end
local repaired = '0'
if #found < missing then
  count_bitmap(shards)
  repaired = '1'
end
return {fmt(#found), fmt(#found), fmt(missing), repaired}
