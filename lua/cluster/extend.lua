-- Extend the leases of dequeued jobs of one partition (cluster layout): move their expiry
-- to now + ms while it is still the caller's lease.
--
-- KEYS     the partition's keys (_partition.lua)
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  ms
-- ARGV[3..] groups of 4: queue_type, queue_id, job_id, lease
--
-- Returns one integer per job: its new lease expiry, or 0 when the lease was lost.

local err = partition_error()
if err then
   return err
end
local new_expiry = tonumber(ARGV[1]) + tonumber(ARGV[2])
local results = {}
for i = 3, NARGS, 4 do
   local field = ARGV[i + 1] .. ':' .. ARGV[i + 2]
   if tonumber(redis.call('ZSCORE', ACTIVE, field)) == tonumber(ARGV[i + 3]) then
      redis.call('ZADD', ACTIVE, 'XX', new_expiry, field)
      results[#results + 1] = new_expiry
   else
      results[#results + 1] = 0
   end
end
return reply(results)
