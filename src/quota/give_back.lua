-- Gives calls' reservations back: their leases, and the egress they reserved but did not
-- return, to the budget window each was taken from (a window that has ended keeps nothing).
-- `leases` and `budget` are one principal's keys; from ARGV[first], a count, then for each
-- call: its lease id, its window start ('': not charged), the rows and the bytes to give back.
local function give_back(leases, budget, first)
  local count = tonumber(ARGV[first]) or 0
  local window = nil
  for index = 0, count - 1 do
    local at = first + 1 + index * 4
    redis.call('ZREM', leases, ARGV[at])
    if ARGV[at + 1] ~= '' then
      window = window or redis.call('HGET', budget, 'start')
      if window == ARGV[at + 1] then
        local rows, bytes = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
        if rows > 0 then redis.call('HINCRBY', budget, 'rows', -rows) end
        if bytes > 0 then redis.call('HINCRBY', budget, 'bytes', -bytes) end
      end
    end
  end
end
