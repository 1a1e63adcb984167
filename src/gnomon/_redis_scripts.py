"""The Lua scripts behind ``gnomon.redis``: each store transition is one atomic script.

Every script reads the server's ``TIME``, so leases are judged by the store's clock, never
by a node's. Tokens come from a counter that is never lower than the server's clock in
microseconds, so a Redis that lost its data (restarted without persistence) still hands
out tokens larger than every earlier one. Tokens travel as decimal strings: Lua numbers
are doubles, exact only up to 2**53.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "ELECT", "RELEASE", "RENEW", "RESIGN"]

_CLOCK = """
local function server_time()
  local t = redis.call('TIME')
  local seconds, micros = tonumber(t[1]), tonumber(t[2])
  return seconds * 1000 + math.floor(micros / 1000), seconds * 1000000 + micros
end
local function next_token(fence, now_us)
  local last = tonumber(redis.call('GET', fence) or '0')
  local token = string.format('%.0f', math.max(last + 1, now_us))
  redis.call('SET', fence, token)
  return token
end
"""

ACQUIRE = (
    _CLOCK
    + """
-- KEYS: claim, fence. ARGV: ttl ms, retention ms, recovery.
local now_ms, now_us = server_time()
local state = redis.call('HGET', KEYS[1], 'state')
local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
if state == 'running' then
  local left = tonumber(redis.call('HGET', KEYS[1], 'until')) - now_ms
  if left >= 0 then
    return {'held', '0', attempt, left}
  end
  if ARGV[3] ~= 'at_least_once' then
    redis.call('HSET', KEYS[1], 'state', 'abandoned')
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {'abandon', '0', attempt, 0}
  end
elseif state then
  return {'finished', '0', attempt, 0}
else
  attempt = 0
end
local token = next_token(KEYS[2], now_us)
local lease_until = string.format('%.0f', now_ms + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'state', 'running', 'token', token,
           'attempt', attempt + 1, 'until', lease_until)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'claim', token, attempt + 1, tonumber(ARGV[1])}
"""
)

RENEW = (
    _CLOCK
    + """
-- KEYS: claim. ARGV: token, ttl ms, retention ms. Answers 1 if renewed, 0 if lost.
local now_ms = server_time()
local claim = redis.call('HMGET', KEYS[1], 'state', 'token', 'until')
if claim[1] ~= 'running' or claim[2] ~= ARGV[1] or tonumber(claim[3]) < now_ms then
  return 0
end
redis.call('HSET', KEYS[1], 'until', string.format('%.0f', now_ms + tonumber(ARGV[2])))
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""
)

RELEASE = """
-- KEYS: claim. ARGV: token, retention ms. Answers 1 if released, 0 if not ours.
local claim = redis.call('HMGET', KEYS[1], 'state', 'token')
if claim[1] ~= 'running' or claim[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'done')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

ELECT = (
    _CLOCK
    + """
-- KEYS: lease, fence. ARGV: holder, ttl ms. Answers the term's token, or nil.
local _, now_us = server_time()
local lease = redis.call('HMGET', KEYS[1], 'holder', 'token')
if lease[1] == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return lease[2]
end
if lease[1] then
  return false
end
local token = next_token(KEYS[2], now_us)
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', token)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return token
"""
)

RESIGN = """
-- KEYS: lease. ARGV: holder, token.
local lease = redis.call('HMGET', KEYS[1], 'holder', 'token')
if lease[1] == ARGV[1] and lease[2] == ARGV[2] then
  redis.call('DEL', KEYS[1])
end
return 0
"""
