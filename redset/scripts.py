"""Lua scripts redset runs on the server, one named constant each.

Every key a script touches is passed in KEYS, so the scripts run on Redis
Cluster when the keys share a hash slot.
"""
from __future__ import annotations

import hashlib
from typing import Dict

__all__ = ["POP_DUE", "RELEASE_LOCK", "LEASE_STAGE", "LEASE_RECLAIM", "LEASE_ACK", "LEASE_EXTEND", "LEASE_RELEASE",
           "LEASE_NACK", "ADD_UNLESS_INFLIGHT", "REQUEUE_DEAD", "STATS", "sha1", "name_of", "name_of_sha"]

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
    sha = _SHAS.get(script)
    if sha is None:
        sha = hashlib.sha1(script.encode("utf-8")).hexdigest()
        if len(_SHAS) < 64:  # this module's scripts, called again and again
            _SHAS[script] = sha
    return sha


#: Digests already computed: a leased take and its ack each named their
#: script twice per call (a few KB hashed each time).
_SHAS: Dict[str, str] = {}


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
#   main        the sorted set of waiting items
#   inflight    sorted set: lease token -> its deadline (UNIX seconds); one
#               entry per batch of leases (one leased take)
#   leased      string: how many items are in flight, over all batches
#   deliveries  sorted set: member -> deliveries that ended without an ack
#               (expired, nacked, held); absent for an item never redelivered
#   dead        sorted set of dead letters: member -> original score
#   index       set of the members in flight, kept for ``leased=True`` sets
#               (their adds skip them) and only while it exists otherwise
#   batch       ``{...}:lease:<token>``, one per batch: a sorted set of the
#               members leased under that token -> their original score
# Per item, a take copies the members into the batch in C (ZRANGESTORE) and
# removes them from the set, with no per-item Lua work; an ack of a whole
# batch is a DEL. A lease is held while its member is in its token's batch:
# that is what stale settles are checked against.

# Stage up to ARGV[2] items under a new token, unless a lease has expired.
# KEYS: main, inflight, leased, index, batch (the new token's), deliveries.
# ARGV[1]: now. ARGV[2]: max count. ARGV[3]: the deadline. ARGV[4]: the token.
# ARGV[5]: "1" to take only items whose score <= now (ScheduledSet).
# ARGV[6]: "1" to record the members in the index (leased=True).
# The reply has the shape of a RESP2 ZPOPMIN reply (flat pairs of strings),
# so a client reads it with the same parser as the batch that follows it:
#   "staged", n, then (member, deliveries so far) of the staged members
#   that were delivered before (read the members with ZRANGE batch);
#   "expired", k, then (token, 0) of k expired leases (up to 100): nothing
#   is staged, the caller reclaims them (LEASE_RECLAIM, their batch keys
#   declared) and stages again, so that reclaimed items are not passed over.
LEASE_STAGE = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 100)
if #expired > 0 then
  local out = {'expired', tostring(#expired)}
  for _, t in ipairs(expired) do
    out[#out + 1] = t
    out[#out + 1] = '0'
  end
  return out
end
-- A first write that cannot grow memory (the batch key is new): on a server
-- at maxmemory, a script may go on writing once it has written, so a take
-- still works there, as a ZPOPMIN would.
redis.call('DEL', KEYS[5])
local n
if ARGV[5] == '1' then
  n = redis.call('ZRANGESTORE', KEYS[5], KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
else
  n = redis.call('ZRANGESTORE', KEYS[5], KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
if n == 0 then return {'staged', '0'} end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('INCRBY', KEYS[3], n)
if ARGV[6] == '1' or redis.call('EXISTS', KEYS[4]) == 1 then
  local members = redis.call('ZRANGE', KEYS[5], 0, -1)
  for i = 1, #members, 1000 do
    redis.call('SADD', KEYS[4], unpack(members, i, math.min(i + 999, #members)))
  end
end
local out = {'staged', tostring(n)}
for _, v in ipairs(redis.call('ZINTER', 2, KEYS[5], KEYS[6], 'WEIGHTS', 0, 1, 'WITHSCORES')) do
  out[#out + 1] = v
end
return out
"""

# Reclaim expired batches: each item back at its original score, or to the
# dead letters once it has had max deliveries. Batches still held (extended
# meanwhile) or gone (reclaimed by someone else) are skipped.
# KEYS: main, inflight, leased, deliveries, dead, index, batch...
# ARGV[1]: now. ARGV[2]: max deliveries (0 = unlimited). ARGV[3..]: the
# tokens of the batch keys, in order. A token ending in ".held" is a nack
# held back: its delivery was counted by the nack, so it is not counted again.
# Returns the number of items reclaimed.
LEASE_RECLAIM = """
local now = tonumber(ARGV[1])
local maxd = tonumber(ARGV[2])
local indexed = redis.call('EXISTS', KEYS[6]) == 1
local total = 0
for b = 7, #KEYS do
  local token = ARGV[b - 4]
  local deadline = redis.call('ZSCORE', KEYS[2], token)
  if deadline and tonumber(deadline) <= now then
    local items = redis.call('ZRANGE', KEYS[b], 0, -1, 'WITHSCORES')
    -- Remove first (it works at maxmemory, and then so do the adds).
    redis.call('DEL', KEYS[b])
    redis.call('ZREM', KEYS[2], token)
    local held = string.sub(token, -5) == '.held'
    for i = 1, #items, 2 do
      local m, score = items[i], items[i + 1]
      local d = 0
      if not held then
        d = tonumber(redis.call('ZSCORE', KEYS[4], m) or '0') + 1
      end
      if (not held) and maxd > 0 and d >= maxd then
        redis.call('ZREM', KEYS[4], m)
        redis.call('ZADD', KEYS[5], score, m)
      else
        if not held then redis.call('ZADD', KEYS[4], d, m) end
        redis.call('ZADD', KEYS[1], 'NX', score, m)
      end
      if indexed then redis.call('SREM', KEYS[6], m) end
    end
    if redis.call('DECRBY', KEYS[3], #items / 2) <= 0 then redis.call('DEL', KEYS[3]) end
    total = total + #items / 2
  end
end
return total
"""

# Ack, extend or release leases, batch by batch.
# KEYS: main, inflight, leased, deliveries, index, then one key per batch,
# and for LEASE_EXTEND one more per batch (its new token's).
# ARGV: one group per batch: the token, a mode, a count c, a count k, then k
# members:
#   "all": the caller holds every lease of the batch (c = the size of the
#          take that made it) and lists only the members whose deliveries
#          must be forgotten; it is done at once (one DEL) if the batch still
#          holds c members (nothing of it was settled or reclaimed), else
#          the reply is 0 and the caller asks again member by member;
#   "each": c = k, the members to ack.
# Returns, in order, per "all" group 1 or 0, per "each" group one 1 (done)
# or 0 (not held under this token) per member.
LEASE_ACK = """
local indexed = redis.call('EXISTS', KEYS[5]) == 1
local out = {}
local i = 1
local b = 6
local function each_slice(list, fn)
  for s = 1, #list, 1000 do fn(unpack(list, s, math.min(s + 999, #list))) end
end
while i <= #ARGV do
  local key, token, mode, c, k = KEYS[b], ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local members = {}
  for j = 1, k do members[j] = ARGV[i + 3 + j] end
  i = i + 4 + k
  b = b + 1
  if mode == 'all' then
    if redis.call('ZCARD', key) == c then
      if indexed then each_slice(redis.call('ZRANGE', key, 0, -1), function(...) redis.call('SREM', KEYS[5], ...) end) end
      redis.call('DEL', key)
      redis.call('ZREM', KEYS[2], token)
      if redis.call('DECRBY', KEYS[3], c) <= 0 then redis.call('DEL', KEYS[3]) end
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    if #members > 0 and out[#out] == 1 then each_slice(members, function(...) redis.call('ZREM', KEYS[4], ...) end) end
  else
    local held = {}
    local scores = {}
    each_slice(members, function(...)
      for _, s in ipairs(redis.call('ZMSCORE', key, ...)) do scores[#scores + 1] = s end
    end)
    for j = 1, c do
      if scores[j] then held[#held + 1] = members[j]; out[#out + 1] = 1 else out[#out + 1] = 0 end
    end
    if #held > 0 then
      each_slice(held, function(...)
        redis.call('ZREM', key, ...)
        redis.call('ZREM', KEYS[4], ...)
        if indexed then redis.call('SREM', KEYS[5], ...) end
      end)
      if redis.call('DECRBY', KEYS[3], #held) <= 0 then redis.call('DEL', KEYS[3]) end
      if redis.call('EXISTS', key) == 0 then redis.call('ZREM', KEYS[2], token) end
    end
  end
end
return out
"""

# Renew leases. KEYS: main, inflight, leased, deliveries, index, the batch
# keys, then the new batch keys (one per batch, same order).
# ARGV[1]: the new deadline; then per batch: token, new token, c, c members.
# When the members are all the batch holds, its deadline moves; otherwise
# they move to a batch of their own under the new token (the rest keep the
# old deadline). A repeat of an applied call finds them there and renews it.
# Returns per member 1 (renewed, same token), 2 (renewed under the new
# token) or 0 (not held).
LEASE_EXTEND = """
local nb = (#KEYS - 5) / 2
local out = {}
local i = 2
for b = 1, nb do
  local key, newkey = KEYS[5 + b], KEYS[5 + nb + b]
  local token, newtoken, c = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local members = {}
  for j = 1, c do members[j] = ARGV[i + 2 + j] end
  i = i + 3 + c
  local here = redis.call('ZMSCORE', key, unpack(members))
  local moved = redis.call('ZMSCORE', newkey, unpack(members))
  local found = 0
  for j = 1, c do if here[j] then found = found + 1 end end
  if found == c and redis.call('ZCARD', key) == c then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[1], token)
    for j = 1, c do out[#out + 1] = 1 end
  else
    for j = 1, c do
      if here[j] then
        redis.call('ZREM', key, members[j])
        redis.call('ZADD', newkey, here[j], members[j])
        out[#out + 1] = 2
      elseif moved[j] then
        out[#out + 1] = 2
      else
        out[#out + 1] = 0
      end
    end
    if redis.call('EXISTS', key) == 0 then redis.call('ZREM', KEYS[2], token) end
    if redis.call('EXISTS', newkey) == 1 then redis.call('ZADD', KEYS[2], ARGV[1], newtoken) end
  end
end
return out
"""

# Put leased items back that were never handed to user code (the rest of a
# consumer's batch): at their original score, and without charging a
# delivery (their deliveries entry is left as it was before the take).
# KEYS: main, inflight, leased, deliveries, index, one key per batch.
# ARGV per batch: token, c, c members. Returns the number put back.
LEASE_RELEASE = """
local indexed = redis.call('EXISTS', KEYS[5]) == 1
local n = 0
local i = 1
local b = 6
while i <= #ARGV do
  local key, token, c = KEYS[b], ARGV[i], tonumber(ARGV[i + 1])
  local members = {}
  for j = 1, c do members[j] = ARGV[i + 1 + j] end
  i = i + 2 + c
  b = b + 1
  local scores = redis.call('ZMSCORE', key, unpack(members))
  local back = 0
  for j = 1, c do
    if scores[j] then
      redis.call('ZREM', key, members[j])
      redis.call('ZADD', KEYS[1], 'NX', scores[j], members[j])
      if indexed then redis.call('SREM', KEYS[5], members[j]) end
      back = back + 1
    end
  end
  if back > 0 then
    if redis.call('DECRBY', KEYS[3], back) <= 0 then redis.call('DEL', KEYS[3]) end
    if redis.call('EXISTS', key) == 0 then redis.call('ZREM', KEYS[2], token) end
  end
  n = n + back
end
return n
"""

# Nack one lease: back to the set, held back, or to the dead letters.
# KEYS: main, inflight, leased, deliveries, dead, index, batch, held batch.
# ARGV[1]: member. ARGV[2]: token. ARGV[3]: "nack" or "hold".
# ARGV[4]: for nack, the score to requeue at ("" = the original score); for
#          hold, the UNIX time until which the item is held back: it moves to
#          a batch of its own under ARGV[6] (a token ending in ".held", which
#          no consumer has), and the reclaim of that batch puts it back at its
#          original score without counting a delivery again.
# ARGV[5]: max deliveries (0 = unlimited).
# Every nack counts a delivery. Returns 1 done, 2 moved to the dead letters,
# 0 the lease is not held with this token.
LEASE_NACK = """
local m = ARGV[1]
local score = redis.call('ZSCORE', KEYS[7], m)
if not score then return 0 end
redis.call('ZREM', KEYS[7], m)
if redis.call('EXISTS', KEYS[7]) == 0 then redis.call('ZREM', KEYS[2], ARGV[2]) end
local maxd = tonumber(ARGV[5])
local d = tonumber(redis.call('ZSCORE', KEYS[4], m) or '0') + 1
if maxd > 0 and d >= maxd then
  redis.call('ZREM', KEYS[4], m)
  redis.call('SREM', KEYS[6], m)
  if redis.call('DECRBY', KEYS[3], 1) <= 0 then redis.call('DEL', KEYS[3]) end
  redis.call('ZADD', KEYS[5], score, m)
  return 2
end
redis.call('ZADD', KEYS[4], d, m)
if ARGV[3] == 'hold' then
  redis.call('ZADD', KEYS[8], score, m)
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[6])
  return 1
end
redis.call('SREM', KEYS[6], m)
if redis.call('DECRBY', KEYS[3], 1) <= 0 then redis.call('DEL', KEYS[3]) end
if ARGV[4] ~= '' then score = ARGV[4] end
redis.call('ZADD', KEYS[1], 'NX', score, m)
return 1
"""

# Add members unless they are waiting or in flight.
# KEYS[1] main, KEYS[2] the index of members in flight (a set).
# ARGV[1]: ZADD flags ("NX", "", "GT", ..., space-separated); ARGV[2..]:
# score, member pairs. Returns the number of new members.
ADD_UNLESS_INFLIGHT = """
local flags = {}
for f in string.gmatch(ARGV[1], '%S+') do flags[#flags + 1] = f end
local added = 0
for i = 2, #ARGV, 2 do
  local m = ARGV[i + 1]
  if redis.call('SISMEMBER', KEYS[2], m) == 0 then
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

# A set's figures in one call (``stats()``). KEYS: main, inflight, leased,
# dead. ARGV[1]: now (UNIX time). Returns {length, due now, lowest score,
# lowest score after now, in flight, earliest lease deadline, that lease's
# token, dead letters}; absent values are nil.
STATS = """
local n = redis.call('ZCARD', KEYS[1])
local due = redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[1])
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local inflight = tonumber(redis.call('GET', KEYS[3]) or '0')
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {n, due, head[2] or false, later[2] or false, inflight, first[2] or false, first[1] or false,
        redis.call('ZCARD', KEYS[4])}
"""
