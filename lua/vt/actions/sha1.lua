--- Streaming SHA-1 in pure Lua 5.4, for the vault: its ids are SHA-1 digests and the C core
-- hashes only what it downloads, not what a playbook adds from disk.
-- @module vt.actions.sha1

local sha1 = {}

local MASK = 0xffffffff
local WORDS = ">" .. string.rep("I4", 16)

local function rotl(x, n)
   return ((x << n) | (x >> (32 - n))) & MASK
end

-- Mixes the 64-byte block of s at pos into the state h (five 32-bit words); w is scratch.
local function compress(h, w, s, pos)
   w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], w[11], w[12], w[13], w[14],
      w[15], w[16] = string.unpack(WORDS, s, pos)
   for i = 17, 80 do
      w[i] = rotl(w[i - 3] ~ w[i - 8] ~ w[i - 14] ~ w[i - 16], 1)
   end
   local a, b, c, d, e = h[1], h[2], h[3], h[4], h[5]
   for i = 1, 20 do
      local t = (rotl(a, 5) + ((b & c) | (~b & d)) + e + 0x5a827999 + w[i]) & MASK
      a, b, c, d, e = t, a, rotl(b, 30), c, d
   end
   for i = 21, 40 do
      local t = (rotl(a, 5) + (b ~ c ~ d) + e + 0x6ed9eba1 + w[i]) & MASK
      a, b, c, d, e = t, a, rotl(b, 30), c, d
   end
   for i = 41, 60 do
      local t = (rotl(a, 5) + ((b & c) | (b & d) | (c & d)) + e + 0x8f1bbcdc + w[i]) & MASK
      a, b, c, d, e = t, a, rotl(b, 30), c, d
   end
   for i = 61, 80 do
      local t = (rotl(a, 5) + (b ~ c ~ d) + e + 0xca62c1d6 + w[i]) & MASK
      a, b, c, d, e = t, a, rotl(b, 30), c, d
   end
   h[1] = (h[1] + a) & MASK
   h[2] = (h[2] + b) & MASK
   h[3] = (h[3] + c) & MASK
   h[4] = (h[4] + d) & MASK
   h[5] = (h[5] + e) & MASK
end

local Hasher = {}
Hasher.__index = Hasher

--- Feeds more bytes.
-- @tparam string data
-- @return the hasher, for chaining
function Hasher:update(data)
   self.length = self.length + #data
   local pending = self.pending .. data
   local whole = #pending - #pending % 64
   for i = 1, whole, 64 do
      compress(self.h, self.w, pending, i)
   end
   self.pending = pending:sub(whole + 1)
   return self
end

--- Finishes and returns the digest as 40 lower-case hex digits; the hasher is spent after.
-- @treturn string
function Hasher:hexdigest()
   local bits = self.length * 8
   local tail = self.pending .. "\128" .. string.rep("\0", (55 - self.length) % 64)
      .. string.pack(">I8", bits)
   for i = 1, #tail, 64 do
      compress(self.h, self.w, tail, i)
   end
   return string.format("%08x%08x%08x%08x%08x", table.unpack(self.h))
end

--- A new streaming hasher.
-- @return a hasher with `update(data)` and `hexdigest()`
function sha1.new()
   return setmetatable({
      h = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 },
      w = {},
      length = 0,
      pending = "",
   }, Hasher)
end

--- The SHA-1 of a string, as hex.
-- @tparam string data
-- @treturn string
function sha1.hex(data)
   return sha1.new():update(data):hexdigest()
end

return sha1
