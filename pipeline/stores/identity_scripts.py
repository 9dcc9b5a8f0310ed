"""The Lua scripts of the Redis identity graph (``identity_redis``): a batch's read, its
assignments, and its decisions committed at once when nothing they read has changed."""

from __future__ import annotations

from pipeline.wire.keys import LUA_MARKERS

# One command for a whole batch's assignments: a pipeline of one command per event costs
# more in the client than the resolution itself. KEYS: one hash
# (routes the call); ARGV: the current generation's head and start, its expiry (unix s),
# then (marker, customer) per event.
ASSIGN_ALL = (
    LUA_MARKERS
    + """
local head, touched = ARGV[1] .. ARGV[2] .. ':', {}
for i = 4, #ARGV, 2 do
  local field, shard = split_marker(ARGV[i])
  redis.call('HSETNX', head .. shard, field, ARGV[i + 1])
  touched[head .. shard] = true
end
for key in pairs(touched) do redis.call('EXPIREAT', key, ARGV[3]) end
return 1
"""
)
# A batch's read: each event's assignment (the newest generation holding its field) and,
# if it has one, the merges it caused; then the values of the plain keys. KEYS: each
# event's merges key, then the plain keys; ARGV: the live generations (LUA_MARKERS), the
# number of events, then each event's marker.
READ_BATCH = (
    LUA_MARKERS
    + """
local hashes, i = marker_hashes()
local n, out = tonumber(ARGV[i]), {}
for e = 1, n do
  local found = find_marker(hashes, ARGV[i + e])
  out[#out + 1] = found
  out[#out + 1] = found and redis.call('GET', KEYS[e]) or false
end
for k = n + 1, #KEYS do out[#out + 1] = redis.call('GET', KEYS[k]) end
return out
"""
)
# A batch's identity decisions, committed at once if nothing they read has changed since.
# KEYS: every key read or written; ARGV: number of guards, the guards ('o', key index,
# expected owner or '' | 'm', key index, n, n members), then the writes (command, key
# index[, value]; 'SETEX' value, expiry; 'HMARK' field, value, expiry: unix seconds).
# Returns 0, having written nothing, if a guard fails.
COMMIT_DECISIONS = """
local i, guards = 2, tonumber(ARGV[1])
for _ = 1, guards do
  local key = KEYS[tonumber(ARGV[i + 1])]
  if ARGV[i] == 'o' then
    if (redis.call('GET', key) or '') ~= ARGV[i + 2] then return 0 end
    i = i + 3
  else
    local n = tonumber(ARGV[i + 2])
    if redis.call('SCARD', key) ~= n then return 0 end
    for j = 1, n do
      if redis.call('SISMEMBER', key, ARGV[i + 2 + j]) == 0 then return 0 end
    end
    i = i + 3 + n
  end
end
while i <= #ARGV do
  local op, key = ARGV[i], KEYS[tonumber(ARGV[i + 1])]
  if op == 'DEL' then
    redis.call('DEL', key)
    i = i + 2
  elseif op == 'SETEX' then
    redis.call('SET', key, ARGV[i + 2], 'EXAT', ARGV[i + 3])
    i = i + 4
  elseif op == 'HMARK' then
    redis.call('HSET', key, ARGV[i + 2], ARGV[i + 3])
    redis.call('EXPIREAT', key, ARGV[i + 4])
    i = i + 5
  else
    redis.call(op, key, ARGV[i + 2])
    i = i + 3
  end
end
return 1
"""
