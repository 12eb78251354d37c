-- Finish a batch of dequeued jobs (one job is a batch of one), as SharQ 1.3.0's finish.
--
-- KEYS[1]  key prefix P
-- ARGV     groups of 3: queue_type, queue_id, job_id
--
-- Returns one integer per job: 1 finished, 0 not active (unknown, already finished, or
-- expired and requeued).

local prefix = KEYS[1]
local payload_key = prefix .. ':payload'
local results = {}
local finished_types = {}
local queue_exists = {}  -- finishing never changes job lists: check each queue once

for i = 1, #ARGV, 3 do
   local queue_type, queue_id, job_id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
   local ready_key = prefix .. ':' .. queue_type
   if redis.call('ZREM', ready_key .. ':active', queue_id .. ':' .. job_id) == 1 then
      local queue = queue_type .. ':' .. queue_id
      redis.call('HDEL', payload_key, queue .. ':' .. job_id)
      if queue_exists[queue] == nil then
         queue_exists[queue] = redis.call('EXISTS', ready_key .. ':' .. queue_id) == 1
         if not queue_exists[queue] then
            redis.call('HDEL', prefix .. ':interval', queue)
         end
      end
      redis.call('HDEL', ready_key .. ':' .. queue_id .. ':requeues_remaining', job_id)
      finished_types[queue_type] = true
      results[#results + 1] = 1
   else
      results[#results + 1] = 0
   end
end

-- A finish only ever shrinks active sets, so checking once at the end leaves the same
-- state as SharQ's check after every job.
for queue_type in pairs(finished_types) do
   if redis.call('EXISTS', prefix .. ':' .. queue_type .. ':active') == 0 then
      redis.call('SREM', prefix .. ':active:queue_type', queue_type)
   end
end

return results
