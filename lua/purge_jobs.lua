-- Delete the jobs of a job list that clear_queue.lua set aside, `limit` at a time.
--
-- KEYS[1]  "P:": the key prefix P and ':' (declared keys are names under P:*, for ACLs)
-- KEYS[2]  the set-aside job list, P:.purging:T:Q:<unique>
-- ARGV[1]  queue type T
-- ARGV[2]  queue id Q
-- ARGV[3]  limit: job ids handled by this call
--
-- Deletes each job's payload (P:payload T:Q:J) and requeue count, then the ids; a job id
-- that is also active (written twice by an older client) keeps its payload. When the list
-- is gone it leaves P:.purging. Safe to run twice: it only deletes what is cleared.
-- Returns 1 while ids remain (call again), 0 when the list is gone.

local prefix = string.match(KEYS[1], '^(.+):$') or error('the key prefix must be declared as "P:", not ' .. KEYS[1])
local list_key = KEYS[2]
local queue_type, queue_id = ARGV[1], ARGV[2]
local queue = queue_type .. ':' .. queue_id
local limit = tonumber(ARGV[3])
local active_key = prefix .. ':' .. queue_type .. ':active'

local job_ids = redis.call('LRANGE', list_key, 0, limit - 1)
if #job_ids > 0 then
   local fields, ids = {}, {}
   for _, job_id in ipairs(job_ids) do
      if not redis.call('ZSCORE', active_key, queue_id .. ':' .. job_id) then
         fields[#fields + 1] = queue .. ':' .. job_id
         ids[#ids + 1] = job_id
      end
   end
   if #ids > 0 then
      redis.call('HDEL', prefix .. ':payload', unpack(fields))
      redis.call('HDEL', prefix .. ':' .. queue .. ':requeues_remaining', unpack(ids))
   end
   redis.call('LTRIM', list_key, #job_ids, -1)
end
local remaining = redis.call('EXISTS', list_key)
if remaining == 0 then
   redis.call('SREM', prefix .. ':.purging', list_key)
end
return remaining
