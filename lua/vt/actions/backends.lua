--- The two protocols behind one interface, so the actions never ask which one they speak.
--
-- A backend is `backends.new(client, api, opts)` and answers, always in the v2 report shape
-- (see `vt.actions.v2shape`), or `nil, err`:
--
-- * `ping()` → true
-- * `lookup(kind, resource)` → report; kind is `"file"`, `"url"`, `"domain"` or `"ip"`
-- * `submit(kind, source)` → scan id; source is a path (file) or a URL
-- * `report(kind, scan_id)` → report of a finished scan; `NotAvailableYet` while it runs
-- * `download(hash, dest)` → `{path, size, md5, sha1, sha256}`
-- @module vt.actions.backends

local vt = require "vt"
local shape = require "vt.actions.v2shape"
local errors = require "vt.actions.errors"

local backends = {}

-- A hash every VirusTotal knows how to answer for (the empty file), for ping.
local EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

local function v2_scan_id(s)
   return s:match("^(%x+)%-%d+$")
end

local function is_scan_id(s)
   local digest = v2_scan_id(s)
   return digest ~= nil and #digest == 64
end

-- ---------------------------------------------------------------------------------- v3

local V3 = {}
V3.__index = V3

-- Related objects of one relationship, at most `limit` (the iterator raises on failure).
local function related_list(client, kind, id, rel, limit)
   local iter, err = client:related(kind, id, rel, { limit = limit, max = limit })
   if not iter then
      return nil, err
   end
   local ok, list = pcall(function()
      local items = {}
      for obj in iter do
         items[#items + 1] = obj
      end
      return items
   end)
   if not ok then
      if type(list) == "table" and list.code then
         return nil, list
      end
      error(list, 0)
   end
   return list
end

-- The network object (domain or ip) with the relationships the v2 report is made of.
function V3:network(kind, resource, relations, build)
   local obj, err = self.client[kind](self.client, resource)
   if not obj then
      return nil, err
   end
   local related = {}
   if self.related > 0 then
      for _, rel in ipairs(relations) do
         local list, rerr = related_list(self.client, kind, obj.id, rel, self.related)
         if not list then
            rerr.message = string.format("%s (while fetching the %s of %s)", rerr.message, rel, obj.id)
            return nil, rerr
         end
         related[rel] = list
      end
   end
   return build(obj, related)
end

function V3:ping()
   local _, err = self.client:file(EMPTY_SHA256)
   if err and err.code ~= "NotFoundError" then
      return nil, err
   end
   return true
end

function V3:lookup(kind, resource)
   if kind == "domain" then
      return self:network("domain", resource, shape.DOMAIN_RELATIONS, shape.domain)
   elseif kind == "ip" then
      return self:network("ip", resource, shape.IP_RELATIONS, shape.ip)
   end
   local obj, err = self.client[kind](self.client, resource)
   if not obj then
      return nil, err
   end
   return shape[kind](obj, resource)
end

function V3:submit(kind, source)
   local descriptor, err
   if kind == "file" then
      descriptor, err = self.client:scan_file(source)
   else
      descriptor, err = self.client:scan_url(source)
   end
   return descriptor and descriptor.id, err
end

function V3:report(kind, scan_id)
   -- v2-style scan ids and plain hashes or URLs name an object that has its report already
   if is_scan_id(scan_id) then
      return self:lookup(kind, v2_scan_id(scan_id))
   elseif (kind == "file" and vt.hash_type(scan_id)) or (kind == "url" and scan_id:find("[.:]")) then
      return self:lookup(kind, scan_id)
   end
   local analysis, err = self.client:analysis(scan_id)
   if not analysis then
      return nil, err
   end
   -- URL analyses carry url_info (and sometimes the fetched content's file_info too)
   local meta = analysis.meta or {}
   local of_url, of_file = meta.url_info ~= nil, meta.file_info ~= nil and meta.url_info == nil
   if (kind == "url" and of_file) or (kind == "file" and of_url) then
      return errors.fail("InvalidArgument", "scan %s is not a %s scan; ask for report_type %s",
         scan_id, kind, kind == "url" and "file" or "url")
   end
   local status = analysis.attributes.status
   if status ~= "completed" then
      return errors.fail("NotAvailableYet", "analysis %s is %s", scan_id, tostring(status))
   end
   return shape.analysis(analysis, kind)
end

function V3:download(hash, dest)
   return self.client:download(hash, dest)
end

-- ---------------------------------------------------------------------------------- v2

local V2 = {}
V2.__index = V2

local V2_LOOKUPS = { file = "v2_file_report", url = "v2_url_report", domain = "v2_domain_report",
   ip = "v2_ip_report" }

-- v2 answers a wrong key with an empty 403 and a missing download with an empty 404; the
-- core names those ClientError, the service's codes for them are these.
local V2_STATUS_CODES = { [403] = "ForbiddenError", [404] = "NotFoundError" }

-- Passes a v2 call's results through, naming the bare 403 and 404 errors.
local function v2_answer(value, err)
   if err and err.code == "ClientError" and V2_STATUS_CODES[err.http] then
      err.code = V2_STATUS_CODES[err.http]
   end
   return value, err
end

function V2:ping()
   local _, err = v2_answer(self.client:v2_file_report(EMPTY_SHA256))
   if err and err.code ~= "NotFoundError" then
      return nil, err
   end
   return true
end

function V2:lookup(kind, resource)
   return v2_answer(self.client[V2_LOOKUPS[kind]](self.client, resource))
end

function V2:submit(kind, source)
   local answer, err
   if kind == "file" then
      answer, err = v2_answer(self.client:v2_file_scan(source))
   else
      answer, err = v2_answer(self.client:v2_url_scan(source))
   end
   if answer and type(answer.scan_id) ~= "string" then
      return errors.fail("InvalidResponse", "the v2 %s scan answer has no scan_id", kind)
   end
   return answer and answer.scan_id, err
end

function V2:report(kind, scan_id)
   if kind == "file" then
      return v2_answer(self.client:v2_file_report(scan_id))
   end
   -- the typed URL helper takes URLs only; url/report also takes a scan id as its resource
   return v2_answer(self.client:v2("url/report", { resource = scan_id }))
end

function V2:download(hash, dest)
   return v2_answer(self.client:v2_file_download(hash, dest))
end

--- A backend over `client` for protocol `api`.
-- @param client a `vt.client`
-- @tparam string api `"v3"` or `"v2"`
-- @tparam table opts `related`: objects fetched per relationship for v3 domain and IP reports
-- @return the backend
function backends.new(client, api, opts)
   local class = api == "v2" and V2 or V3
   return setmetatable({ client = client, related = opts.related }, class)
end

return backends
