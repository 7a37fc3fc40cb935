-- Calls' reservations given back on their own, when no admission of the same principal and tool
-- came to carry them. KEYS: 1 the leases, 2 the budget window. ARGV: as give_back reads them.
give_back(KEYS[1], KEYS[2], 1)
return 1
