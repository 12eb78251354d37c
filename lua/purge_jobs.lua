-- Delete the jobs of a job list that clear_queue.lua set aside, `limit` at a time.
--
-- KEYS[1]  key prefix P
-- KEYS[2]  the set-aside job list
-- ARGV[1]  queue type T
-- ARGV[2]  queue id Q
-- ARGV[3]  limit: job ids handled by this call
--
-- Deletes each job's payload (P:payload T:Q:J) and requeue count, then the ids.
-- Returns 1 while ids remain (call again), 0 when the list is gone.

local prefix, list_key = KEYS[1], KEYS[2]
local queue = ARGV[1] .. ':' .. ARGV[2]
local limit = tonumber(ARGV[3])

local job_ids = redis.call('LRANGE', list_key, 0, limit - 1)
if #job_ids > 0 then
   local fields = {}
   for k, job_id in ipairs(job_ids) do
      fields[k] = queue .. ':' .. job_id
   end
   redis.call('HDEL', prefix .. ':payload', unpack(fields))
   redis.call('HDEL', prefix .. ':' .. queue .. ':requeues_remaining', unpack(job_ids))
   redis.call('LTRIM', list_key, #job_ids, -1)
end
return redis.call('EXISTS', list_key)
