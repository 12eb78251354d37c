-- Extend the leases of dequeued jobs: move their expiry in the active set to now + ms.
--
-- KEYS[1]  reply key (see _replies.lua)
-- KEYS[2]  "P:": the key prefix P and ':' (see _replies.lua)
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  ms
-- ARGV[3..] groups of 4: queue_type, queue_id, job_id, lease (the expiry the caller holds)
--
-- A job is extended only while its score is the caller's lease: a job that was finished,
-- requeued, or requeued and dequeued again (a new lease) is not. Returns one integer per
-- job: its new lease expiry, or 0 when the lease was lost.

local prefix = declared_prefix(KEYS[2])
local new_expiry = tonumber(ARGV[1]) + tonumber(ARGV[2])

-- Every score is read (and every active set vetted) before anything is written.
local held = {}
for i = 3, NARGS, 4 do
   local score = redis.pcall('ZSCORE', prefix .. ':' .. ARGV[i] .. ':active', ARGV[i + 1] .. ':' .. ARGV[i + 2])
   if type(score) == 'table' and score.err then
      return redis.error_reply(score.err .. ': nothing was changed')
   end
   held[#held + 1] = score and tonumber(score) == tonumber(ARGV[i + 3])
end

local results = {}
local extended = false
for k = 1, #held do
   local at = 3 + (k - 1) * 4
   if held[k] then
      redis.call('ZADD', prefix .. ':' .. ARGV[at] .. ':active', 'XX', new_expiry, ARGV[at + 1] .. ':' .. ARGV[at + 2])
      results[k] = new_expiry
      extended = true
   else
      results[k] = 0
   end
end
if not extended then
   return results  -- nothing changed
end
return reply(results)
