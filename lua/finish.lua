-- Finish a batch of dequeued jobs (one job is a batch of one), as SharQ 1.3.0's finish.
--
-- KEYS[1]  reply key (see _replies.lua)
-- KEYS[2]  "P:": the key prefix P and ':' (see _replies.lua)
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  job_expire_interval (ms)
-- ARGV[3..] groups of 4: queue_type, queue_id, job_id, lease. A lease of 0 finishes the
--          job if it is active (SharQ's finish); another lease finishes it only if its
--          score in the active set is still that lease expiry, that is if the job was not
--          requeued (and maybe dequeued by another consumer) since the caller got it.
--          (-1, a Job that holds no lease, matches no score: it finishes nothing.)
--
-- Returns one integer per job: 1 finished, 0 not active (unknown, already finished, or
-- expired and requeued) or, with a lease, held by another delivery; a job named twice is
-- finished once.
--
-- The state left is that of SharQ's finishes one after the other, with each command sent
-- once per call rather than once per job: one ZMSCORE per queue type reads (and vets) the
-- active sets before anything is written, then one ZREM per type, one HDEL of payloads,
-- one HDEL of requeue counts per queue.

local prefix = declared_prefix(KEYS[2])
local payload_key = prefix .. ':payload'
local now, expire_interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local FIRST = 3

local SLICE = 1000  -- unpack() is limited by Lua's C stack
local function call_sliced(command, key, args)
   for s = 1, #args, SLICE do
      redis.pcall(command, key, unpack(args, s, math.min(s + SLICE - 1, #args)))
   end
end

-- The jobs by queue type, in input order.
local types, type_order = {}, {}
for i = FIRST, NARGS, 4 do
   local t = types[ARGV[i]]
   if not t then
      t = {members = {}, positions = {}}
      types[ARGV[i]] = t
      type_order[#type_order + 1] = ARGV[i]
   end
   t.members[#t.members + 1] = ARGV[i + 1] .. ':' .. ARGV[i + 2]
   t.positions[#t.positions + 1] = i
end

-- Read every score first: a key of another type stops the call before any write.
local scores = {}
for _, queue_type in ipairs(type_order) do
   local members = types[queue_type].members
   local found = {}
   for s = 1, #members, SLICE do
      local part = redis.pcall('ZMSCORE', prefix .. ':' .. queue_type .. ':active',
         unpack(members, s, math.min(s + SLICE - 1, #members)))
      if part.err then
         return redis.error_reply(part.err .. ' (' .. prefix .. ':' .. queue_type .. ':active): nothing was changed')
      end
      for k = 1, #part do
         found[s + k - 1] = part[k]
      end
   end
   scores[queue_type] = found
end

local results = {}
local payloads = {}     -- payload fields of the finished jobs
local counts = {}       -- queue -> job ids whose requeue counts go
local count_order = {}
for _, queue_type in ipairs(type_order) do
   local t = types[queue_type]
   local done, seen = {}, {}
   for k, member in ipairs(t.members) do
      local i = t.positions[k]
      local score, lease = scores[queue_type][k], tonumber(ARGV[i + 3])
      if score and not seen[member] and (lease == 0 or tonumber(score) == lease) then
         seen[member] = true
         done[#done + 1] = member
         local queue = queue_type .. ':' .. ARGV[i + 1]
         payloads[#payloads + 1] = queue .. ':' .. ARGV[i + 2]
         if not counts[queue] then
            counts[queue] = {}
            count_order[#count_order + 1] = queue
         end
         counts[queue][#counts[queue] + 1] = ARGV[i + 2]
         results[(i - FIRST) / 4 + 1] = 1
      else
         results[(i - FIRST) / 4 + 1] = 0
      end
   end
   if #done > 0 then
      for s = 1, #done, SLICE do
         redis.call('ZREM', prefix .. ':' .. queue_type .. ':active', unpack(done, s, math.min(s + SLICE - 1, #done)))
      end
      if redis.call('EXISTS', prefix .. ':' .. queue_type .. ':active') == 0 then
         redis.pcall('SREM', prefix .. ':active:queue_type', queue_type)
      end
   end
end

if #payloads == 0 then
   return results  -- nothing changed
end
call_sliced('HDEL', payload_key, payloads)
for _, queue in ipairs(count_order) do
   -- A queue without queued jobs has no use for its interval any more, once none of its
   -- jobs can still be held.
   if redis.call('EXISTS', prefix .. ':' .. queue) == 0 then
      defer_forget_interval(prefix, queue, now, expire_interval)
   end
   call_sliced('HDEL', prefix .. ':' .. queue .. ':requeues_remaining', counts[queue])
end

return reply(results)
