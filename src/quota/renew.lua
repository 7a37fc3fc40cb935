-- Extends the leases of calls still running, by the server's clock. A lease that has already
-- expired is not brought back.
-- KEYS: the leases of each call. ARGV: 1 lease length, then one lease id per key.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local lease = tonumber(ARGV[1])
local expiry = string.format('%.0f', now + lease)
for index, key in ipairs(KEYS) do
  if redis.call('ZADD', key, 'XX', 'CH', expiry, ARGV[index + 1]) == 1 then
    redis.call('PEXPIRE', key, math.floor(lease / 1000) + 1001)
  end
end
return 1
