-- release_owned: gives back every job of the run that `owner` holds a lease on, as
-- release does (a worker slot whose claim reply was lost: the claim ran, and its lease
-- would otherwise expire as a failed attempt).
-- Scans the owners hash: one entry per lease in flight.
-- ARGV[1]  owner
-- Returns -1 (no such run) or how many jobs were given back.
local state = redis.call('HGET', META, 'state')
if not state then return -1 end
local all = redis.call('HGETALL', OWNERS)
local mine = {}
for i = 1, #all, 2 do
  if all[i + 1] == ARGV[1] then mine[#mine + 1] = tonumber(all[i]) end
end
-- Highest shard pushed first, so the lowest is claimed first.
table.sort(mine, function(a, b) return a > b end)
local n = 0
for _, s in ipairs(mine) do
  if release_one(fmt(s), state) then n = n + 1 end
end
return n
