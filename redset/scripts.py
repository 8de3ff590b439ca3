"""Lua scripts redset runs on the server, one named constant each.

Every key a script touches is passed in KEYS, so the scripts run on Redis
Cluster when the keys share a hash slot.
"""
from __future__ import annotations

import hashlib

__all__ = ["POP_DUE", "RELEASE_LOCK", "sha1"]

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
