-- Gives a call's reservation back: its lease, and the egress it reserved but did not return, to
-- the budget window it was taken from (a window that has ended since keeps nothing).
-- KEYS: 1 the leases, 2 the budget window. ARGV: 1 lease id, 2 window start ('': none),
--       3 rows, 4 bytes to give back.
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('HGET', KEYS[2], 'start') == ARGV[2] then
  local rows, bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
  if rows > 0 then redis.call('HINCRBY', KEYS[2], 'rows', -rows) end
  if bytes > 0 then redis.call('HINCRBY', KEYS[2], 'bytes', -bytes) end
end
return 1
