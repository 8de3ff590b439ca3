"""Lua scripts redset runs on the server, one named constant each.

Every key a script touches is passed in KEYS, so the scripts run on Redis
Cluster when the keys share a hash slot.
"""
from __future__ import annotations

import hashlib
from typing import Dict

__all__ = ["POP_DUE", "RELEASE_LOCK", "LEASE_TAKE", "LEASE_SETTLE", "ADD_UNLESS_INFLIGHT", "REQUEUE_DEAD", "LEASE_ACK_MANY", "LEASE_RELEASE_MANY", "sha1", "name_of", "name_of_sha"]

# Pop up to ARGV[2] members whose score is <= ARGV[1], lowest first, and
# return them as a flat array [member, score, member, score, ...], the shape
# of a RESP2 ZPOPMIN reply, so the same decoder reads both.
# KEYS[1]: the sorted set.
# ARGV[1]: the upper score bound ("now", as the client's time.time()).
# ARGV[2]: the maximum number of members to pop.
# ZREM is called in slices of 1,000 because unpack() of a long list overflows
# the Lua C stack.
POP_DUE = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local members = {}
for i = 1, #items, 2 do
  members[#members + 1] = items[i]
end
local n = #members
local i = 1
while i <= n do
  local j = math.min(i + 999, n)
  redis.call('ZREM', KEYS[1], unpack(members, i, j))
  i = j + 1
end
return items
"""

# Delete the lock key only if it still holds this client's token.
# KEYS[1]: the lock key. ARGV[1]: the token the holder set.
# Returns 1 if deleted, 0 if the key held another token or was gone.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def sha1(script: str) -> str:
    """Return the SHA1 hex digest Redis uses to name ``script`` for EVALSHA."""
    return hashlib.sha1(script.encode("utf-8")).hexdigest()


def name_of(source: str) -> str:
    """The constant's name of a script of this module (for error messages)."""
    return name_of_sha(sha1(source))


def name_of_sha(sha: str) -> str:
    """The constant's name of the script with this SHA, or "script <sha>"."""
    if not _NAMES:
        for name, value in globals().items():
            if name.isupper() and isinstance(value, str) and name != "__all__":
                _NAMES[sha1(value)] = name
    return _NAMES.get(sha) or "script %s" % sha


_NAMES: Dict[str, str] = {}


# -- leases (at-least-once delivery) ----------------------------------------------
# The keys of one set, all in the hash slot of the set's key (see
# redset.leases.lease_keys):
#   KEYS[1] main      the sorted set of waiting items
#   KEYS[2] inflight  sorted set: member -> lease deadline (UNIX seconds)
#   KEYS[3] leases    hash: member -> "<token> <original score>"
#   KEYS[4] counts    hash: member -> number of deliveries so far
#   KEYS[5] dead      sorted set of dead letters: member -> original score
# Every script removes before it adds: on Redis < 7 a script may go on
# writing over maxmemory once its first write was done, so an item that was
# removed from one set is always added to the other, never stranded.

# Reclaim expired leases, then lease up to ARGV[3] items.
# ARGV[1]: now. ARGV[2]: the new leases' deadline. ARGV[3]: max count.
# ARGV[4]: max deliveries (0 = unlimited). ARGV[5]: this take's token.
# ARGV[6]: "1" to take only items whose score <= now (ScheduledSet).
# Returns a flat array [member, score, deliveries, ...].
LEASE_TAKE = """
local function each_slice(list, fn)
  for i = 1, #list, 1000 do
    fn(unpack(list, i, math.min(i + 999, #list)))
  end
end
local now = tonumber(ARGV[1])
local maxd = tonumber(ARGV[4])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, m in ipairs(expired) do
  redis.call('ZREM', KEYS[2], m)
  local info = redis.call('HGET', KEYS[3], m)
  redis.call('HDEL', KEYS[3], m)
  local score = info and string.match(info, '^%S+ (%S+)$') or '0'
  local d = tonumber(redis.call('HGET', KEYS[4], m) or '0')
  if maxd > 0 and d >= maxd then
    redis.call('HDEL', KEYS[4], m)
    redis.call('ZADD', KEYS[5], score, m)
  else
    redis.call('ZADD', KEYS[1], 'NX', score, m)
  end
end
local popped
if ARGV[6] == '1' then
  popped = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
else
  popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[3]))
end
local n = #popped / 2
if n == 0 then return {} end
local members = {}
for i = 1, #popped, 2 do members[#members + 1] = popped[i] end
if ARGV[6] == '1' then
  each_slice(members, function(...) redis.call('ZREM', KEYS[1], ...) end)
end
local counts = {}
each_slice(members, function(...)
  for _, c in ipairs(redis.call('HMGET', KEYS[4], ...)) do counts[#counts + 1] = c end
end)
local inflight, hcount, hlease, out = {}, {}, {}, {}
for j = 1, n do
  local m = members[j]
  local score = popped[2 * j]
  local d = (tonumber(counts[j]) or 0) + 1
  inflight[#inflight + 1] = ARGV[2]
  inflight[#inflight + 1] = m
  hcount[#hcount + 1] = m
  hcount[#hcount + 1] = d
  hlease[#hlease + 1] = m
  hlease[#hlease + 1] = ARGV[5] .. ' ' .. score
  out[#out + 1] = m
  out[#out + 1] = score
  out[#out + 1] = d
end
for i = 1, #inflight, 2000 do
  local j = math.min(i + 1999, #inflight)
  redis.call('ZADD', KEYS[2], unpack(inflight, i, j))
  redis.call('HSET', KEYS[4], unpack(hcount, i, j))
  redis.call('HSET', KEYS[3], unpack(hlease, i, j))
end
return out
"""

# Settle one lease held with token ARGV[2] on member ARGV[1].
# KEYS as above. ARGV[3]: "ack", "nack", "hold" or "extend".
# ARGV[4]: for nack, the score to requeue at ("" = the original score);
#          for hold, the UNIX time until which the item is held back (it
#          stays in flight under a token no consumer has, and the reclaim of
#          LEASE_TAKE puts it back at its original score after that);
#          for extend, the new deadline.
# ARGV[5]: max deliveries (0 = unlimited), for nack and hold.
# Returns 1 done, 2 moved to dead letters (nack or hold past max deliveries),
# 0 the lease is not held with this token (expired, re-leased or settled).
LEASE_SETTLE = """
local m = ARGV[1]
local info = redis.call('HGET', KEYS[3], m)
if not info then return 0 end
local token, score = string.match(info, '^(%S+) (%S+)$')
if token ~= ARGV[2] then return 0 end
local op = ARGV[3]
if op == 'extend' then
  redis.call('ZADD', KEYS[2], 'XX', ARGV[4], m)
  return 1
end
if op == 'ack' then
  redis.call('ZREM', KEYS[2], m)
  redis.call('HDEL', KEYS[3], m)
  redis.call('HDEL', KEYS[4], m)
  return 1
end
local maxd = tonumber(ARGV[5])
local d = tonumber(redis.call('HGET', KEYS[4], m) or '0')
if maxd > 0 and d >= maxd then
  redis.call('ZREM', KEYS[2], m)
  redis.call('HDEL', KEYS[3], m)
  redis.call('HDEL', KEYS[4], m)
  redis.call('ZADD', KEYS[5], score, m)
  return 2
end
if op == 'hold' then
  redis.call('ZADD', KEYS[2], 'XX', ARGV[4], m)
  redis.call('HSET', KEYS[3], m, 'held ' .. score)
  return 1
end
redis.call('ZREM', KEYS[2], m)
redis.call('HDEL', KEYS[3], m)
if ARGV[4] ~= '' then score = ARGV[4] end
redis.call('ZADD', KEYS[1], 'NX', score, m)
return 1
"""

# Put leased items back that were never handed to user code (the rest of a
# consumer's batch): at their original score, and without charging the
# delivery their take counted. KEYS as above.
# ARGV: member, token, member, token, ...
# Returns the number put back (pairs not held with that token are skipped).
LEASE_RELEASE_MANY = """
local n = 0
for i = 1, #ARGV, 2 do
  local m = ARGV[i]
  local info = redis.call('HGET', KEYS[3], m)
  local token, score
  if info then token, score = string.match(info, '^(%S+) (%S+)$') end
  if token == ARGV[i + 1] then
    redis.call('ZREM', KEYS[2], m)
    redis.call('HDEL', KEYS[3], m)
    local d = redis.call('HINCRBY', KEYS[4], m, -1)
    if d <= 0 then redis.call('HDEL', KEYS[4], m) end
    redis.call('ZADD', KEYS[1], 'NX', score, m)
    n = n + 1
  end
end
return n
"""

# Add members unless they are waiting or in flight.
# KEYS[1] main, KEYS[2] inflight. ARGV[1]: ZADD flags ("NX", "", "GT", ...,
# space-separated); ARGV[2..]: score, member pairs.
# Returns the number of new members.
ADD_UNLESS_INFLIGHT = """
local flags = {}
for f in string.gmatch(ARGV[1], '%S+') do flags[#flags + 1] = f end
local added = 0
for i = 2, #ARGV, 2 do
  local m = ARGV[i + 1]
  if not redis.call('ZSCORE', KEYS[2], m) then
    local args = {'ZADD', KEYS[1]}
    for _, f in ipairs(flags) do args[#args + 1] = f end
    args[#args + 1] = ARGV[i]
    args[#args + 1] = m
    added = added + redis.call(unpack(args))
  end
end
return added
"""

# Move up to ARGV[1] dead letters back to the main set at their original
# score, resetting their delivery counts. KEYS as above. Returns the count.
REQUEUE_DEAD = """
local dead = redis.call('ZRANGE', KEYS[5], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
for i = 1, #dead, 2 do
  redis.call('ZREM', KEYS[5], dead[i])
  redis.call('ZADD', KEYS[1], 'NX', dead[i + 1], dead[i])
end
return #dead / 2
"""

# Ack many leases in one call. KEYS as above.
# ARGV: member, token, member, token, ...
# Returns an array of 1 (acked) / 0 (not held with that token), one per pair.
LEASE_ACK_MANY = """
local members = {}
for i = 1, #ARGV, 2 do members[#members + 1] = ARGV[i] end
local infos = {}
for i = 1, #members, 1000 do
  local part = redis.call('HMGET', KEYS[3], unpack(members, i, math.min(i + 999, #members)))
  for _, v in ipairs(part) do infos[#infos + 1] = v end
end
local ok, out = {}, {}
for j = 1, #members do
  local token = infos[j] and string.match(infos[j], '^(%S+) ')
  if token == ARGV[2 * j] then
    ok[#ok + 1] = members[j]
    out[j] = 1
  else
    out[j] = 0
  end
end
for i = 1, #ok, 1000 do
  local j = math.min(i + 999, #ok)
  redis.call('ZREM', KEYS[2], unpack(ok, i, j))
  redis.call('HDEL', KEYS[3], unpack(ok, i, j))
  redis.call('HDEL', KEYS[4], unpack(ok, i, j))
end
return out
"""

# A set's figures in one call (``stats()``). KEYS: main, inflight, leases, dead.
# ARGV[1]: now (UNIX time). Returns {length, due now, lowest score, lowest
# score after now, in flight, earliest lease deadline, that lease's
# "token score", dead letters}; absent values are nil.
STATS = """
local n = redis.call('ZCARD', KEYS[1])
local due = redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[1])
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local inflight = redis.call('ZCARD', KEYS[2])
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local info = false
if #first > 0 then info = redis.call('HGET', KEYS[3], first[1]) end
return {n, due, head[2] or false, later[2] or false, inflight, first[2] or false, info or false,
        redis.call('ZCARD', KEYS[4])}
"""

# The first ARGV[1] leases in flight, earliest deadline first.
# KEYS: inflight, leases, deliveries. Returns member, deadline, "token score",
# deliveries, ... (4 per lease).
LIST_INFLIGHT = """
local first = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local out = {}
for i = 1, #first, 2 do
  local m = first[i]
  out[#out + 1] = m
  out[#out + 1] = first[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], m) or ''
  out[#out + 1] = redis.call('HGET', KEYS[3], m) or '0'
end
return out
"""
