-- mark_committed: storage holds the shard's commit record, whatever the queue thought
-- (a late commit after the lease was reclaimed, a shard gone dead after its data was
-- committed): the shard becomes committed and leaves every other state. Storage is the
-- truth; the queue follows it. A cancelled or finalized run keeps no committed bitmap:
-- there only a leased or dead shard can be told apart from a committed one.
-- ARGV[1…] shards (one, or a chunk of a run rebuilt from storage)
-- Returns -1 (no such run), else how many of them became committed (0: already
-- committed, past the run's last shard, or unknown on a finished run: nothing changed).
local m = redis.call('HMGET', META, 'state', 'shards')
if not m[1] then return -1 end
migrate()
local changed = 0
for i = 1, #ARGV do
  local s = ARGV[i]
  local mark = true
  if tonumber(s) >= tonumber(m[2]) then
    mark = false
  elseif m[1] == 'active' then
    if redis.call('GETBIT', COMMITTED, s) == 1 then
      mark = false
    else
      redis.call('LREM', READY, 0, s)
      redis.call('ZREM', DELAYED, s)
    end
  elseif not redis.call('ZSCORE', LEASED, s) and redis.call('HEXISTS', DEAD, s) == 0 then
    mark = false
  end
  if mark then
    redis.call('ZREM', LEASED, s)
    redis.call('HDEL', OWNERS, s)
    redis.call('HDEL', DEAD, s)
    count_committed(s, m[1], m[2])
    changed = changed + 1
  end
end
return changed
