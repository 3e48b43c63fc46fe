"""The one Lua script the Redis backends run, and its wire format: every read, then every
write, in one call.

The script executes a plan (``plan.py``); it decides nothing the planner has not. ARGV:
exact cap, run walk cap, run member cap, #reads, #writes, the claim (key index or 0,
fingerprint line, record header, ttl ms, receipt time ms), the sum limit, then six fields
per read (kind, key index, lo, hi, member, include) and six per write (kind, key index,
pos, member, ttl, cutoff); kinds are ``c`` count, ``d`` distinct, ``r`` run, ``s`` first
seen, ``u`` sum, ``a`` the number of values of an average, ``x`` min, ``y`` max. Returns one
integer per read, in order. :func:`encode` builds the call and :func:`decode` reads its
reply: they live beside the script because they are its two ends.

Idempotency: with a claim, a claim key holding a record that starts with the fingerprint
line, made less than the idempotency window before this request's receipt time, means this
request was applied before: the script changes nothing and returns that record (a string:
the header, then the values it answered). Otherwise it applies as usual and, if the claim
key was free (or stale), stores header + values there. A claim key held by a different
fingerprint (an id reused for another request) is left alone.

Data model (docs/state.md): a count is a HASH bucket -> n. A distinct value or a run member
is a ZSET member -> the latest bucket it was seen in; a member seen in several buckets also
has the others in a HASH ``<key>:b`` member -> "b,b,..." (consulted only when the latest
bucket is past a window's end, so a plain read never touches it). A sum (or an average) is
a HASH ``p<bucket>`` / ``m<bucket>`` / ``n<bucket>`` -> positive part, negative part's
magnitude, number of values; a min or max a HASH bucket -> the least / greatest value.
Past the exact cap, a distinct key marks itself with a sentinel member and per-bucket HyperLogLogs
``<key>:h:<bucket>`` take over. A first sighting (age()) is a STRING "first last" of
receipt times in seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from dsl.aggregates import SUM_LIMIT, AggKind

from . import records
from .backend import Claim
from .errors import StateError
from .keys import KeyHasher, claim_key, tag_of
from .limits import DISTINCT_EXACT_CAP, RUN_MAX_MEMBERS, RUN_WALK_CAP
from .plan import Plan

LUA = r"""
local cap = tonumber(ARGV[1])
local walk_cap = tonumber(ARGV[2])
local run_max = tonumber(ARGV[3])
local nr = tonumber(ARGV[4])
local nw = tonumber(ARGV[5])
local claim = tonumber(ARGV[6])
local OVER = '\0over'
local LIMIT = tonumber(ARGV[11])
local NONE = -LIMIT

if claim > 0 then
  local rec = redis.call('GET', KEYS[claim])
  if rec then
    local fp = ARGV[7]
    if string.sub(rec, 1, #fp) == fp then
      local stamp = tonumber(string.match(rec, '^[^\n]*\n([0-9]+)\n'))
      if stamp and tonumber(ARGV[10]) - stamp < tonumber(ARGV[9]) then return rec end
    else
      claim = 0
    end
  end
end

local function fmt(n) return string.format('%d', n) end

local function extend(key, ttl)
  if redis.call('TTL', key) < ttl then redis.call('EXPIRE', key, ttl) end
end

-- Whether a history list "b,b,..." holds a bucket in lo..hi.
local function any_in(list, lo, hi)
  if not list then return false end
  for b in string.gmatch(list, '[^,]+') do
    local n = tonumber(b)
    if n >= lo and n <= hi then return true end
  end
  return false
end

-- Whether member m, whose latest bucket is `last` (a number or nil), was seen in lo..hi.
local function seen_in(key, m, last, lo, hi)
  if not last then return false end
  if last >= lo and last <= hi then return true end
  if last < lo then return false end
  return any_in(redis.call('HGET', key .. ':b', m), lo, hi)
end

-- Note member m seen in bucket pos: the latest bucket in the ZSET, the others in the
-- history HASH, each list trimmed to buckets >= cutoff.
local function note(key, m, pos, cutoff, ttl)
  local old = redis.call('ZSCORE', key, m)
  if not old then
    redis.call('ZADD', key, pos, m)
    return
  end
  old = tonumber(old)
  if old == pos then return end
  local moved = old
  if pos > old then
    redis.call('ZADD', key, pos, m)
  else
    moved = pos
  end
  local hk = key .. ':b'
  local list = redis.call('HGET', hk, m)
  local out = {}
  if moved >= cutoff then out[1] = fmt(moved) end
  if list then
    for b in string.gmatch(list, '[^,]+') do
      local n = tonumber(b)
      if n >= cutoff and n ~= moved then out[#out + 1] = b end
    end
  end
  if #out > 0 then
    redis.call('HSET', hk, m, table.concat(out, ','))
    extend(hk, ttl)
  elseif list then
    redis.call('HDEL', hk, m)
  end
end

-- Drop members whose latest bucket is older than cutoff (and their histories).
local function drop(key, members)
  if #members == 0 then return end
  for j = 1, #members, 1000 do
    local part = {unpack(members, j, math.min(j + 999, #members))}
    redis.call('ZREM', key, unpack(part))
    redis.call('HDEL', key .. ':b', unpack(part))
  end
end

local function trim(key, cutoff)
  drop(key, redis.call('ZRANGEBYSCORE', key, '-inf', '(' .. fmt(cutoff)))
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
      if not seen_in(key, batch[j], t and tonumber(t), lo, hi) then return n end
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

-- A sum's hash: fields p<bucket> (positive part), m<bucket> (negative part's magnitude),
-- n<bucket> (how many values), kept as the strings Redis holds.
local sumsets = {}
local function sums(key)
  local h = sumsets[key]
  if not h then
    h = {}
    local flat = redis.call('HGETALL', key)
    for j = 1, #flat, 2 do
      local f = flat[j]
      h[#h + 1] = {string.sub(f, 1, 1), tonumber(string.sub(f, 2)), tonumber(flat[j + 1])}
    end
    sumsets[key] = h
  end
  return h
end

local out = {}
local i = 12
for _ = 1, nr do
  local kind, key, slo, shi = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  local lo, hi, m, inc = tonumber(slo), tonumber(shi), ARGV[i + 4], tonumber(ARGV[i + 5])
  i = i + 6
  local v = inc
  if kind == 'c' then
    for _, bn in ipairs(buckets(key)) do
      if bn[1] >= lo and bn[1] <= hi then v = v + bn[2] end
    end
  elseif kind == 'u' or kind == 'a' then
    -- Parts below LIMIT are exact in a double, and so is every sum of them below it.
    local p, q, n = 0, 0, 0
    for _, c in ipairs(sums(key)) do
      if c[2] >= lo and c[2] <= hi then
        if c[1] == 'p' then p = p + c[3] elseif c[1] == 'm' then q = q + c[3] else n = n + c[3] end
      end
    end
    if kind == 'a' then
      v = n + inc
    else
      if inc == 1 then
        local x = tonumber(m)
        if x > 0 then p = p + x else q = q - x end
      end
      if p >= LIMIT or q >= LIMIT then v = NONE else v = p - q end
    end
  elseif kind == 'x' or kind == 'y' then
    local best = nil
    if inc == 1 then best = tonumber(m) end
    for _, bn in ipairs(buckets(key)) do
      if bn[1] >= lo and bn[1] <= hi then
        local x = bn[2]
        if not best or (kind == 'x' and x < best) or (kind == 'y' and x > best) then best = x end
      end
    end
    v = best or NONE
  elseif kind == 's' then
    -- lo: how long a key is remembered unseen; hi: the receipt time.
    v = 0
    local f = redis.call('GET', key)
    if f then
      local first, last = string.match(f, '^(%d+) (%d+)$')
      if first and hi - tonumber(last) <= lo then v = math.max(0, hi - tonumber(first)) end
    end
  elseif kind == 'd' then
    if redis.call('ZSCORE', key, OVER) then
      local hk = {}
      for b = lo, hi do hk[#hk + 1] = key .. ':h:' .. fmt(b) end
      v = redis.call('PFCOUNT', unpack(hk)) + inc
    else
      v = redis.call('ZCOUNT', key, slo, shi)
      -- Members seen again after the window: count those with an older sighting in it.
      local later = redis.call('ZRANGEBYSCORE', key, '(' .. shi, '+inf')
      if #later > 0 then
        local lists = redis.call('HMGET', key .. ':b', unpack(later))
        for j = 1, #later do
          if any_in(lists[j], lo, hi) then v = v + 1 end
        end
      end
      if inc == 1 then
        local s = redis.call('ZSCORE', key, m)
        if not seen_in(key, m, s and tonumber(s), lo, hi) then v = v + 1 end
      end
    end
  else
    local t = redis.call('ZSCORE', key, m)
    if inc == 1 or seen_in(key, m, t and tonumber(t), lo, hi) then
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
  elseif kind == 'u' then
    local c = tonumber(cutoff)
    if redis.call('HINCRBY', key, 'n' .. pos, 1) == 1
        and redis.call('HLEN', key) > 3 * (tonumber(pos) - c + 2) then
      for _, f in ipairs(redis.call('HKEYS', key)) do
        if tonumber(string.sub(f, 2)) < c then redis.call('HDEL', key, f) end
      end
    end
    -- A part stops growing at LIMIT: the window's sum is unknown from then on, and the
    -- field never overflows.
    local part, amount = 'p' .. pos, m
    if string.sub(m, 1, 1) == '-' then part, amount = 'm' .. pos, string.sub(m, 2) end
    if tonumber(amount) > 0 and tonumber(redis.call('HGET', key, part) or '0') < LIMIT then
      redis.call('HINCRBY', key, part, amount)
    end
  elseif kind == 'x' or kind == 'y' then
    local x, c = tonumber(m), tonumber(cutoff)
    local cur = redis.call('HGET', key, pos)
    if not cur then
      redis.call('HSET', key, pos, m)
      if redis.call('HLEN', key) > tonumber(pos) - c + 2 then
        for _, f in ipairs(redis.call('HKEYS', key)) do
          if tonumber(f) < c then redis.call('HDEL', key, f) end
        end
      end
    elseif (kind == 'x' and x < tonumber(cur)) or (kind == 'y' and x > tonumber(cur)) then
      redis.call('HSET', key, pos, m)
    end
  elseif kind == 's' then
    -- cutoff: how long a key is remembered unseen; a longer gap starts it again.
    local now = tonumber(pos)
    local f = redis.call('GET', key)
    local first, last
    if f then first, last = string.match(f, '^(%d+) (%d+)$') end
    if not first or now - tonumber(last) > tonumber(cutoff) then
      redis.call('SET', key, pos .. ' ' .. pos)
    elseif now > tonumber(last) then
      redis.call('SET', key, first .. ' ' .. pos, 'KEEPTTL')
    end
  elseif kind == 'd' then
    local p, c = tonumber(pos), tonumber(cutoff)
    local over = redis.call('ZSCORE', key, OVER)
    if not over then
      trim(key, c)
      if redis.call('ZSCORE', key, m) or redis.call('ZCARD', key) < cap then
        note(key, m, p, c, ttl)
      else
        -- Beyond the exact cap: every (member, bucket) seen goes into per-bucket sketches.
        local all = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
        local lists = {}
        if #all > 0 then
          local names = {}
          for j = 1, #all, 2 do names[#names + 1] = all[j] end
          lists = redis.call('HMGET', key .. ':b', unpack(names))
        end
        for j = 1, #all, 2 do
          local seen = {fmt(tonumber(all[j + 1]))}
          local list = lists[(j + 1) / 2]
          if list then
            for b in string.gmatch(list, '[^,]+') do seen[#seen + 1] = b end
          end
          for _, b in ipairs(seen) do
            if tonumber(b) >= c then
              local hk = key .. ':h:' .. b
              redis.call('PFADD', hk, all[j])
              extend(hk, ttl)
            end
          end
        end
        redis.call('DEL', key, key .. ':b')
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
    local c = tonumber(cutoff)
    note(key, m, tonumber(pos), c, ttl)
    trim(key, c)
    local n = redis.call('ZCARD', key)
    if n > run_max then drop(key, redis.call('ZRANGE', key, 0, n - run_max - 1)) end
  end
  extend(key, ttl)
end
if claim > 0 then
  -- Written as integers: a sum's value has more digits than tostring() keeps.
  local rec = {}
  for j = 1, #out do rec[j] = fmt(out[j]) end
  redis.call('SET', KEYS[claim], ARGV[8] .. table.concat(rec, ','), 'PX', ARGV[9])
end
return out
"""

SHA1 = hashlib.sha1(LUA.encode("utf-8"), usedforsecurity=False).hexdigest()

_KIND_CODE = {
    AggKind.COUNT: "c",
    AggKind.DISTINCT: "d",
    AggKind.RUN: "r",
    AggKind.FIRST_SEEN: "s",
    AggKind.SUM: "u",
    AggKind.AVG: "a",
    AggKind.MIN: "x",
    AggKind.MAX: "y",
}
_HEAD = (str(DISTINCT_EXACT_CAP), str(RUN_WALK_CAP), str(RUN_MAX_MEMBERS))
Arg = str | bytes

ClaimArgs = tuple[str, str, str, str, str]
"""``(claim key, fingerprint line, record header, window ms, receipt time ms)``."""
_NO_CLAIM = ("0", "", "", "0", "0")
_LIMIT = str(SUM_LIMIT)


def encode(plan: Plan, claim: ClaimArgs | None = None) -> tuple[list[str], list[Arg]]:
    """KEYS (each once) and ARGV for the script."""
    index: dict[str, int] = {}
    keys: list[str] = []

    def key_index(key: str) -> str:
        n = index.get(key)
        if n is None:
            keys.append(key)
            n = index[key] = len(keys)
        return str(n)

    args: list[Arg] = [*_HEAD, str(len(plan.reads)), str(len(plan.writes))]
    if claim is None:
        args += _NO_CLAIM
    else:
        args += (key_index(claim[0]), *claim[1:])
    args.append(_LIMIT)
    for _, kind, key, lo, hi, member, include in plan.reads:
        args += (_KIND_CODE[kind], key_index(key), str(lo), str(hi), member)
        args.append("1" if include else "0")
    for kind, key, pos, member, ttl_s, cutoff in plan.writes:
        args += (_KIND_CODE[kind], key_index(key), str(pos), member, str(ttl_s), str(cutoff))
    return keys, args


def claim_args(
    hasher: KeyHasher, plan: Plan, claim: Claim, now: float, received: float
) -> ClaimArgs:
    """The script's claim for ``plan`` (all of whose keys share one slot in a cluster): the
    claim key sits in the slot of the plan's first key."""
    first = plan.reads[0][2] if plan.reads else plan.writes[0][1]
    stamp = str(max(0, round(received * 1000)))
    window = str(max(1, round(claim.ttl_s * 1000)))
    return (
        claim_key(tag_of(first), hasher.request_key(claim.request_id)),
        records.fingerprint_line(claim.fingerprint),
        records.header(claim.fingerprint, stamp, now, [op[0] for op in plan.reads]),
        window,
        stamp,
    )


def decode(plan: Plan, raw: object) -> tuple[dict[str, int], float | None]:
    """The script's reply: values by ref id, and the first attempt's event time when the
    reply is a replayed claim record (None for a fresh apply). Raises StateError."""
    if isinstance(raw, BaseException):  # this call's own error reply
        raise StateError(f"redis failed: {type(raw).__name__}: {raw}") from raw
    if isinstance(raw, bytes):
        try:
            then, values = records.parse(raw)
        except ValueError as exc:
            raise StateError("state script returned an unreadable claim record") from exc
        return values, then
    if not isinstance(raw, list) or len(raw) != len(plan.reads):
        raise StateError("state script returned an unexpected reply")
    return {op[0]: int(v) for op, v in zip(plan.reads, raw, strict=True)}, None


def pack(head: bytes, nkeys: str, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
    """One RESP command: ``head`` (the name and SHA, packed once), then the key count,
    keys and args. Everything after the head is ASCII or bytes, so str.encode is exact."""
    parts = [b"*%d\r\n" % (3 + len(keys) + len(args)), head]
    for part in (nkeys, *keys, *args):
        b = part.encode() if isinstance(part, str) else part
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)
