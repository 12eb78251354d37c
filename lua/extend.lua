-- Extend the leases of dequeued jobs: move their expiry in the active set to now + ms.
--
-- KEYS[1]  reply cache (see _replies.lua)
-- KEYS[2]  key prefix P
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  ms
-- ARGV[3..] groups of 4: queue_type, queue_id, job_id, lease (the expiry the caller holds)
--
-- A job is extended only while its score is the caller's lease: a job that was finished,
-- requeued, or requeued and dequeued again (a new lease) is not. Returns one integer per
-- job: its new lease expiry, or 0 when the lease was lost.

local prefix = KEYS[2]
local new_expiry = tonumber(ARGV[1]) + tonumber(ARGV[2])

local err
for i = 3, NARGS, 4 do
   err = err or wrong_type(prefix .. ':' .. ARGV[i] .. ':active', 'zset')
end
if err then
   return err
end

local results = {}
for i = 3, NARGS, 4 do
   local active_key = prefix .. ':' .. ARGV[i] .. ':active'
   local member = ARGV[i + 1] .. ':' .. ARGV[i + 2]
   if tonumber(redis.call('ZSCORE', active_key, member)) == tonumber(ARGV[i + 3]) then
      redis.call('ZADD', active_key, 'XX', new_expiry, member)
      results[#results + 1] = new_expiry
   else
      results[#results + 1] = 0
   end
end
return reply(results)
