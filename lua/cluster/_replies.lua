-- The reply cache of the cluster layout (the single-node one is lua/_replies.lua: a key per
-- call there; here a hash per client and partition, in the partition's slot, because a
-- cluster script may touch only keys of one slot and none it empties; see _first.lua).
--
-- Put in front of every script that changes state (scripts.py does), so
-- that a call whose reply was lost (connection cut, timeout, failover) can be sent again
-- unchanged and get its first answer instead of running twice.
--
-- KEYS[1]  the client's reply cache: a hash of token -> MessagePack of a reply
-- ARGV     the script's own arguments, then the tokens of earlier calls whose replies the
--          client has read (ack_1 .. ack_n, deleted here), then n, then this call's token
--
-- A call whose token is in the cache has run: its reply is returned again and nothing else
-- is done. Otherwise the script runs and ends with `return reply(result)`, which keeps the
-- result under the token. Error replies are not kept: a script only fails before it writes.
-- The hash expires REPLY_TTL ms after the client's last call (a client that died).

local REPLIES = KEYS[1]
local TOKEN = ARGV[#ARGV]
local ACKS = tonumber(ARGV[#ARGV - 1])
local NARGS = #ARGV - 2 - ACKS  -- the script's own arguments are ARGV[1 .. NARGS]
local REPLY_TTL = 600000

if ACKS > 0 then
   redis.call('HDEL', REPLIES, unpack(ARGV, NARGS + 1, NARGS + ACKS))
end
local cached = redis.call('HGET', REPLIES, TOKEN)
if cached then
   -- A write (replicated), so that a WAIT after this resend, on a connection that wrote
   -- nothing else, waits for the replicas to have the first run's effects too.
   redis.call('PEXPIRE', REPLIES, REPLY_TTL)
   return cmsgpack.unpack(cached)
end

local function reply(result)
   redis.call('HSET', REPLIES, TOKEN, cmsgpack.pack(result))
   redis.call('PEXPIRE', REPLIES, REPLY_TTL)
   return result
end

-- Checks run before any write, because Redis does not roll a script back when a command
-- fails half way: a key of the wrong type (data that is not SharQ's under this prefix)
-- stops the call before it changes anything.
local checked_types = {}
local function wrong_type(key, expected)
   if checked_types[key] then
      return nil
   end
   checked_types[key] = true
   local found = redis.call('TYPE', key)['ok']
   if found ~= 'none' and found ~= expected then
      return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. found .. ', not a ' .. expected
         .. ': nothing was changed')
   end
end
