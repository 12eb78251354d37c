-- Dequeue up to `count` jobs of one partition (cluster layout), as dequeue.lua does on one
-- node: each round serves the partition's ready queue with the lowest (score, queue_id), in
-- O(log N); a queue with interval 0 that is ready now gives as many jobs as asked in one
-- go; orphans (no payload) are dropped. The queue is chosen here, so its members of JOBS
-- are found by range, not by a key of its own: every key touched is declared.
--
-- KEYS     the partition's keys (_partition.lua)
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  job_expire_interval (ms)
-- ARGV[3]  count
--
-- Returns {partition head after the call (-1: none ready or waiting), lease expiry, then
-- queue_id, job_id, payload, requeues_remaining per job}.

local now = tonumber(ARGV[1])
local expire_interval = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local err = partition_error()
if err then
   return err
end
local max_orphans = 1000  -- keeps one call bounded even on a queue full of orphans

-- Time keepers older than job_expire_interval count as gone (SharQ's TTL).
redis.call('ZREMRANGEBYSCORE', TIME, '-inf', now - expire_interval)

local expires_at = now + expire_interval
local result = {-1, expires_at}
local active = {}
local queues = {}
local queue_order = {}
local dequeued, orphans = 0, 0

while dequeued < count and orphans < max_orphans do
   local ready = redis.call('ZRANGEBYSCORE', READY, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
   local queue_id = ready[1]
   if not queue_id then
      break
   end
   local score = tonumber(ready[2])
   local q = queues[queue_id]
   if not q then
      q = {
         length = queue_length(queue_id),
         interval = tonumber(redis.call('HGET', INTERVAL, queue_id)) or 0,
         dequeued = 0,
      }
      queues[queue_id] = q
      queue_order[#queue_order + 1] = queue_id
   end
   local take = 1
   if q.interval == 0 and score == now and q.length > 1 and count - dequeued > 1 then
      take = math.min(count - dequeued, q.length)
   end
   local low, high = queue_range(queue_id)
   local members = redis.call('ZRANGEBYLEX', JOBS, low, high, 'LIMIT', 0, take)
   local delivered = 0
   if #members > 0 then
      redis.call('ZREM', JOBS, unpack(members))
      q.length = q.length - #members
      local fields, job_ids = {}, {}
      for k, member in ipairs(members) do
         local _, _, job_id = split_member(member)
         job_ids[k] = job_id
         fields[k] = queue_id .. ':' .. job_id
      end
      local payloads = redis.call('HMGET', PAYLOAD, unpack(fields))
      local remaining = redis.call('HMGET', REQUEUES, unpack(fields))
      for k, job_id in ipairs(job_ids) do
         if payloads[k] then
            result[#result + 1] = queue_id
            result[#result + 1] = job_id
            result[#result + 1] = payloads[k]
            result[#result + 1] = remaining[k] or '-1'
            active[#active + 1] = expires_at
            active[#active + 1] = fields[k]
            delivered = delivered + 1
         else
            orphans = orphans + 1  -- undeliverable: dropped, the next job is served instead
            redis.call('HDEL', REQUEUES, fields[k])
         end
      end
   else
      q.length = 0
   end
   q.dequeued = q.dequeued + delivered
   dequeued = dequeued + delivered
   if q.length <= 0 then
      redis.call('ZREM', READY, queue_id)
   elseif delivered > 0 and now + q.interval ~= score then
      redis.call('ZADD', READY, now + q.interval, queue_id)
   end
end

if dequeued > 0 then
   for s = 1, #active, SLICE do
      redis.call('ZADD', ACTIVE, unpack(active, s, math.min(s + SLICE - 1, #active)))
   end
   bump('d', dequeued, now)
   for _, queue_id in ipairs(queue_order) do
      local q = queues[queue_id]
      if q.dequeued > 0 then
         redis.call('ZADD', TIME, now, queue_id)
         bump('d:' .. queue_id, q.dequeued, now)
      end
   end
end

result[1] = partition_head()
if dequeued == 0 and orphans == 0 then
   return result  -- nothing changed but stale time keepers: a resend may run again
end
return reply(result)
