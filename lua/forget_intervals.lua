-- After a requeue discarded jobs: forget the interval of those jobs' queues that are gone,
-- as SharQ's finish of a discarded job does, but only once the whole requeue has run.
--
-- A queue is gone when its job list does not exist and no job of it can still be active
-- unexpired: its time keeper (the time of its last dequeue) is missing or older than
-- job_expire_interval. (A lease moved by extend() is not seen here; such a queue, if it
-- empties at the same time, gets its interval back with its next enqueue.)
--
-- Safe to run twice: it only deletes what is already unused.
--
-- KEYS[1]  "P:": the key prefix P and ':' (declared keys are names under P:*, for ACLs)
-- KEYS[2]  P:T, the ready set of queue type T
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  job_expire_interval (ms)
-- ARGV[3..] queue ids
--
-- Returns how many intervals were deleted.

local prefix = string.match(KEYS[1], '^(.+):$') or error('the key prefix must be declared as "P:", not ' .. KEYS[1])
local queue_type = string.sub(KEYS[2], #KEYS[1] + 1)
local now, expire_interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local ready_key = prefix .. ':' .. queue_type
local deleted = 0
for i = 3, #ARGV do
   local job_queue_key = ready_key .. ':' .. ARGV[i]
   if redis.call('EXISTS', job_queue_key) == 0 then
      local last_dequeue = tonumber(redis.pcall('GET', job_queue_key .. ':time'))
      if not last_dequeue or last_dequeue + expire_interval <= now then
         deleted = deleted + redis.call('HDEL', prefix .. ':interval', queue_type .. ':' .. ARGV[i])
      end
   end
end
return deleted
