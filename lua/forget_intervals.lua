-- Forget the interval of queues that are gone, once a requeue pass has run all its steps:
-- queues of jobs it discarded, and queues whose forgetting was deferred (P:.forget_intervals,
-- see defer_forget_interval in _replies.lua) and is due, as SharQ's finish of their last
-- job would have done, but only once no job of the queue can still be held.
--
-- A queue is gone when its job list does not exist and no job of it can still be active
-- unexpired: its time keeper (the time of its last dequeue) is missing or older than
-- job_expire_interval (the requeue pass that runs this has put back every job whose lease
-- ran out by now). Then its interval is deleted and its record dropped. A queue that has
-- jobs again keeps its interval (its record is dropped: a finish that empties it records
-- it again). A queue not gone yet (a recent dequeue) is recorded for its time keeper +
-- job_expire_interval. (A lease moved by extend() is not seen here; such a queue, if it
-- is gone by this rule, gets its interval back with its next enqueue.)
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
local deferred_key = prefix .. ':.forget_intervals'
local deleted = 0
for i = 3, #ARGV do
   local queue = queue_type .. ':' .. ARGV[i]
   local job_queue_key = ready_key .. ':' .. ARGV[i]
   local last_dequeue = tonumber(redis.pcall('GET', job_queue_key .. ':time'))
   if redis.call('EXISTS', job_queue_key) == 1 then
      redis.pcall('ZREM', deferred_key, queue)
   elseif not last_dequeue or last_dequeue + expire_interval <= now then
      deleted = deleted + redis.call('HDEL', prefix .. ':interval', queue)
      redis.pcall('ZREM', deferred_key, queue)
   else
      redis.pcall('ZADD', deferred_key, last_dequeue + expire_interval, queue)
   end
end
return deleted
