-- Admits one call, atomically, or says why not; nothing is written unless every dimension admits.
-- Time is the server's (TIME), in microseconds, so replica clocks do not matter.
--
-- KEYS: 1 the rate's TAT (tenant, identity, tool), 2 the concurrency leases (a sorted set of
--       lease ids by expiry), 3 the cost quota's TAT (tenant, identity), 4 the egress budget
--       window (a hash: start, rows, bytes) of (tenant, identity).
-- ARGV: 1 rate period, 2 rate tolerance, 3 max concurrent, 4 lease id, 5 lease length,
--       6 cost cells (0: no cost quota), 7 cost period, 8 cost tolerance,
--       9 rows a window (0: no rows budget), 10 bytes a window (0: no bytes budget),
--       11 rows wanted, 12 bytes wanted (-1: the call is not charged), 13 window length,
--       14 to 18 what this replica last saw of the state (0: nothing): the rate's TAT, the
--       cost's TAT, the budget window's start, rows and bytes. A key that expired on time has
--       nothing left of it to see (what was seen expired with it), so a key missing while what
--       was seen of it is still running means Redis lost it (a restart without its data). Then
--       the state is restored as spent, and stored even if the call is refused, so that no
--       replica starts it afresh: the bucket empty, the budget window spent until it ends.
--       Then from 19 the reservations of finished calls of the same principal and tool to give
--       back first (see give_back), so that a call's release rides on the next admission.
-- Returns {status, a, b, window start, rate TAT, cost TAT, rows used, bytes used}: the state
-- after the call (0 where unknown), for the replica to remember, with status 0 (admitted; a, b
-- the rows and bytes granted, -1 where no budget applies) or a refusal: 1 concurrency,
-- 2 rate (a: the wait), 3 cost (a: the wait), 4 cost above the burst, 5 rows budget and
-- 6 bytes budget (a: when the window ends).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local function int(value) return string.format('%.0f', value) end
local function ms(us) return math.floor(us / 1000) + 1 end

give_back(KEYS[2], KEYS[4], 19)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {1, 0, 0, 0, 0, 0, 0, 0} end

-- A bucket Redis lost while it was still refilling: restored empty.
local function restored(key, seen, tolerance)
  local stored = tonumber(redis.call('GET', key))
  if stored ~= nil or seen <= now then return stored or now end
  local empty = math.max(seen, now + tolerance)
  redis.call('SET', key, int(empty), 'PX', ms(empty - now))
  return empty
end

local period, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = restored(KEYS[1], tonumber(ARGV[14]), tolerance)
if now < tat - tolerance then return {2, tat - tolerance - now, 0, 0, tat, 0, 0, 0} end
local rate_tat = math.max(tat, now) + period

local cells, cost_tat = tonumber(ARGV[6]), nil
if cells > 0 then
  local cost_period, cost_tolerance = tonumber(ARGV[7]), tonumber(ARGV[8])
  local extra = cost_period * (cells - 1)
  if extra > cost_tolerance then return {4, 0, 0, 0, 0, 0, 0, 0} end
  local spent = restored(KEYS[3], tonumber(ARGV[15]), cost_tolerance)
  local earliest = spent + extra - cost_tolerance
  if now < earliest then return {3, earliest - now, 0, 0, 0, spent, 0, 0} end
  cost_tat = math.max(spent, now) + cost_period + extra
end

local rows_limit, bytes_limit = tonumber(ARGV[9]), tonumber(ARGV[10])
local rows_want, bytes_want, window = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local charged = rows_want >= 0 and (rows_limit > 0 or bytes_limit > 0)
local start, rows_used, bytes_used, rows_grant, bytes_grant = 0, 0, 0, -1, -1
if charged then
  local held = redis.call('HMGET', KEYS[4], 'start', 'rows', 'bytes')
  start = tonumber(held[1])
  if start ~= nil then
    rows_used, bytes_used = tonumber(held[2]) or 0, tonumber(held[3]) or 0
  end
  -- A window seen still running, missing or replaced by a later one: Redis lost it. What the
  -- other replicas granted from it since this one last looked is not known, so it is spent.
  local seen_start = tonumber(ARGV[16])
  if seen_start > 0 and now < seen_start + window and (start == nil or start > seen_start) then
    start = seen_start
    rows_used = math.max(tonumber(ARGV[17]), rows_limit)
    bytes_used = math.max(tonumber(ARGV[18]), bytes_limit)
    redis.call('HSET', KEYS[4], 'start', int(start), 'rows', int(rows_used), 'bytes', int(bytes_used))
    redis.call('PEXPIRE', KEYS[4], ms(start + window - now))
  end
  if start == nil or now >= start + window then
    start, rows_used, bytes_used = now, 0, 0
  end
  local refills = start + window - now
  if rows_limit > 0 then
    local left = rows_limit - rows_used
    if left <= 0 then return {5, refills, 0, start, 0, 0, rows_used, bytes_used} end
    rows_grant = math.min(left, rows_want)
  end
  if bytes_limit > 0 then
    local left = bytes_limit - bytes_used
    if left <= 0 then return {6, refills, 0, start, 0, 0, rows_used, bytes_used} end
    bytes_grant = math.min(left, bytes_want)
  end
end

redis.call('SET', KEYS[1], int(rate_tat), 'PX', ms(rate_tat - now))
local lease = tonumber(ARGV[5])
redis.call('ZADD', KEYS[2], int(now + lease), ARGV[4])
redis.call('PEXPIRE', KEYS[2], ms(lease) + 1000)
if cost_tat then redis.call('SET', KEYS[3], int(cost_tat), 'PX', ms(cost_tat - now)) end
if charged then
  rows_used, bytes_used = rows_used + math.max(rows_grant, 0), bytes_used + math.max(bytes_grant, 0)
  redis.call('HSET', KEYS[4], 'start', int(start), 'rows', int(rows_used), 'bytes', int(bytes_used))
  redis.call('PEXPIRE', KEYS[4], ms(start + window - now))
end
return {0, rows_grant, bytes_grant, start, rate_tat, cost_tat or 0, rows_used, bytes_used}
