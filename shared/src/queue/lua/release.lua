-- release: gives a leased job back to the front of the ready list without spending an
-- attempt. Fenced by (shard, token, owner).
-- ARGV[1]  shard
-- ARGV[2]  token
-- ARGV[3]  owner
-- Returns -1 (no such run), 0 (lease not held: nothing changed) or 1 (released).
local state = redis.call('HGET', META, 'state')
if not state then return -1 end
if not holds(ARGV[1], ARGV[2], ARGV[3]) then return 0 end
release_one(ARGV[1], state)
return 1
