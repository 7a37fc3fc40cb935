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
--       then from 14 the reservations of finished calls of the same principal and tool to give
--       back first (see give_back), so that a call's release rides on the next admission.
-- Returns {0, rows granted, bytes granted, window start} (-1: no budget of that kind), or a
-- refusal: {1} concurrency, {2, wait} rate, {3, wait} cost, {4} cost above the burst,
-- {5, refills in} rows budget, {6, refills in} bytes budget.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local function int(value) return string.format('%.0f', value) end
local function ms(us) return math.floor(us / 1000) + 1 end

give_back(KEYS[2], KEYS[4], 14)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {1} end

local period, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if now < tat - tolerance then return {2, tat - tolerance - now} end
local rate_tat = math.max(tat, now) + period

local cells, cost_tat = tonumber(ARGV[6]), nil
if cells > 0 then
  local cost_period, cost_tolerance = tonumber(ARGV[7]), tonumber(ARGV[8])
  local extra = cost_period * (cells - 1)
  if extra > cost_tolerance then return {4} end
  local spent = tonumber(redis.call('GET', KEYS[3])) or now
  local earliest = spent + extra - cost_tolerance
  if now < earliest then return {3, earliest - now} end
  cost_tat = math.max(spent, now) + cost_period + extra
end

local rows_limit, bytes_limit = tonumber(ARGV[9]), tonumber(ARGV[10])
local rows_want, bytes_want, window = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local charged = rows_want >= 0 and (rows_limit > 0 or bytes_limit > 0)
local start, rows_used, bytes_used, rows_grant, bytes_grant = 0, 0, 0, -1, -1
if charged then
  local held = redis.call('HMGET', KEYS[4], 'start', 'rows', 'bytes')
  start = tonumber(held[1])
  if start == nil or now >= start + window then
    start = now
  else
    rows_used, bytes_used = tonumber(held[2]) or 0, tonumber(held[3]) or 0
  end
  local refills = start + window - now
  if rows_limit > 0 then
    local left = rows_limit - rows_used
    if left <= 0 then return {5, refills} end
    rows_grant = math.min(left, rows_want)
  end
  if bytes_limit > 0 then
    local left = bytes_limit - bytes_used
    if left <= 0 then return {6, refills} end
    bytes_grant = math.min(left, bytes_want)
  end
end

redis.call('SET', KEYS[1], int(rate_tat), 'PX', ms(rate_tat - now))
local lease = tonumber(ARGV[5])
redis.call('ZADD', KEYS[2], int(now + lease), ARGV[4])
redis.call('PEXPIRE', KEYS[2], ms(lease) + 1000)
if cost_tat then redis.call('SET', KEYS[3], int(cost_tat), 'PX', ms(cost_tat - now)) end
if charged then
  redis.call('HSET', KEYS[4], 'start', int(start),
    'rows', int(rows_used + math.max(rows_grant, 0)), 'bytes', int(bytes_used + math.max(bytes_grant, 0)))
  redis.call('PEXPIRE', KEYS[4], ms(start + window - now))
end
return {0, rows_grant, bytes_grant, start}
