"""The one Lua script the Redis backend runs: every read, then every write, in one call.

ARGV: exact cap, run walk cap, run member cap, #reads, #writes, the claim (key index or 0,
fingerprint line, record header, ttl ms), then six fields per read (kind, key index, lo,
hi, member, include) and six per write (kind, key index, pos, member, ttl, cutoff); kinds
are ``c`` count, ``d`` distinct, ``r`` run, ``s`` first seen (see plan.py). Returns one
integer per read, in order.

Idempotency: with a claim, a claim key holding a record that starts with the fingerprint
line means this request was applied before: the script changes nothing and returns that
record (a string: the header, then the values it answered). Otherwise it applies as usual
and, if the claim key was free, stores header + values there for the ttl. A claim key held
by a different fingerprint (an id reused for another request) is left alone.

Data model (docs/state.md): a count is a HASH bucket -> n; a distinct is a ZSET member ->
last bucket seen while it holds at most the exact cap, after which a sentinel member
marks it and per-bucket HyperLogLogs ``<key>:h:<bucket>`` take over; a run is a ZSET
suffix digits -> last time seen (ms), walked with ZMSCORE in batches of 64; a first
sighting (age()) is a STRING holding the epoch second, its TTL renewed on every sighting.
"""

from __future__ import annotations

import hashlib

LUA = r"""
local cap = tonumber(ARGV[1])
local walk_cap = tonumber(ARGV[2])
local run_max = tonumber(ARGV[3])
local nr = tonumber(ARGV[4])
local nw = tonumber(ARGV[5])
local claim = tonumber(ARGV[6])
local OVER = '\0over'

if claim > 0 then
  local rec = redis.call('GET', KEYS[claim])
  if rec then
    local fp = ARGV[7]
    if string.sub(rec, 1, #fp) == fp then return rec end
    claim = 0
  end
end

local function fmt(n) return string.format('%d', n) end

local function extend(key, ttl)
  if redis.call('TTL', key) < ttl then redis.call('EXPIRE', key, ttl) end
end

-- Batches start small and double: most numbers have no neighbour at all, and a run that
-- does exist is found in a few calls.
local function walk(key, x, width, dir, lo, hi)
  local n = 0
  local size = 4
  while n < walk_cap do
    local batch = {}
    local k = math.min(size, walk_cap - n)
    size = math.min(size * 2, 256)
    for j = 1, k do
      local y = x + dir * (n + j)
      if y < 0 then break end
      batch[#batch + 1] = string.format('%0' .. width .. 'd', y)
    end
    if #batch == 0 then return n end
    local scores = redis.call('ZMSCORE', key, unpack(batch))
    for j = 1, #batch do
      local t = scores[j]
      if not t then return n end
      t = tonumber(t)
      if t <= lo or t > hi then return n end
      n = n + 1
    end
    if #batch < k then return n end
  end
  return n
end

-- Offset windows over one key (the same count now, 1h ago, 2h ago) read the same hash:
-- fetch it once. Trimming keeps a count hash near one window of buckets, so reading it
-- whole is no more than the window's fields.
local hashes = {}
local function buckets(key)
  local h = hashes[key]
  if not h then
    h = {}
    local flat = redis.call('HGETALL', key)
    for j = 1, #flat, 2 do h[#h + 1] = {tonumber(flat[j]), tonumber(flat[j + 1])} end
    hashes[key] = h
  end
  return h
end

local out = {}
local i = 10
for _ = 1, nr do
  local kind, key, slo, shi = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  local lo, hi, m, inc = tonumber(slo), tonumber(shi), ARGV[i + 4], tonumber(ARGV[i + 5])
  i = i + 6
  local v = inc
  if kind == 'c' then
    for _, bn in ipairs(buckets(key)) do
      if bn[1] >= lo and bn[1] <= hi then v = v + bn[2] end
    end
  elseif kind == 's' then
    local f = redis.call('GET', key)
    v = f and math.max(0, hi - tonumber(f)) or 0
  elseif kind == 'd' then
    if redis.call('ZSCORE', key, OVER) then
      local hk = {}
      for b = lo, hi do hk[#hk + 1] = key .. ':h:' .. fmt(b) end
      v = redis.call('PFCOUNT', unpack(hk)) + inc
    else
      v = redis.call('ZCOUNT', key, slo, shi)
      if inc == 1 then
        local s = redis.call('ZSCORE', key, m)
        s = s and tonumber(s)
        if not s or s < lo or s > hi then v = v + 1 end
      end
    end
  else
    local t = redis.call('ZSCORE', key, m)
    t = t and tonumber(t)
    if inc == 1 or (t and t > lo and t <= hi) then
      local x, width = tonumber(m), string.len(m)
      v = 1 + walk(key, x, width, 1, lo, hi) + walk(key, x, width, -1, lo, hi)
    else
      v = 0
    end
  end
  out[#out + 1] = v
end

for _ = 1, nw do
  local kind, key = ARGV[i], KEYS[tonumber(ARGV[i + 1])]
  local pos, m, ttl, cutoff = ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4]), ARGV[i + 5]
  i = i + 6
  if kind == 'c' then
    redis.call('HINCRBY', key, pos, 1)
    local c = tonumber(cutoff)
    if redis.call('HLEN', key) > tonumber(pos) - c + 2 then
      for _, f in ipairs(redis.call('HKEYS', key)) do
        if tonumber(f) < c then redis.call('HDEL', key, f) end
      end
    end
  elseif kind == 's' then
    redis.call('SET', key, pos, 'NX')
  elseif kind == 'd' then
    local over = redis.call('ZSCORE', key, OVER)
    if not over then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff)
      if redis.call('ZSCORE', key, m) or redis.call('ZCARD', key) < cap then
        redis.call('ZADD', key, 'GT', pos, m)
      else
        local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
        for j = 1, #all, 2 do
          local hk = key .. ':h:' .. fmt(tonumber(all[j + 1]))
          redis.call('PFADD', hk, all[j])
          extend(hk, ttl)
        end
        redis.call('DEL', key)
        redis.call('ZADD', key, '+inf', OVER)
        over = true
      end
    end
    if over then
      local hk = key .. ':h:' .. pos
      redis.call('PFADD', hk, m)
      extend(hk, ttl)
    end
  else
    redis.call('ZADD', key, 'GT', pos, m)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
    local n = redis.call('ZCARD', key)
    if n > run_max then redis.call('ZREMRANGEBYRANK', key, 0, n - run_max - 1) end
  end
  extend(key, ttl)
end
if claim > 0 then
  redis.call('SET', KEYS[claim], ARGV[8] .. table.concat(out, ','), 'PX', ARGV[9])
end
return out
"""

SHA1 = hashlib.sha1(LUA.encode("utf-8"), usedforsecurity=False).hexdigest()
