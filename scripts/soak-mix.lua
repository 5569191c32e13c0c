-- wrk script of scripts/soak.py: the soak's mixed load. Every connection
-- sends a fixed cycle of 20 requests: 16 verify-token (80 %), 2 ping with a
-- static token (10 %), 1 get-access-token (5 %) and 1 refused credential
-- (5 %, a JWT with a bad signature), interleaved.
-- Environment: SOAK_JWT, SOAK_STATIC, SOAK_BAD_JWT, SOAK_MERCHANT (the
-- credentials) and SOAK_OUT (the file the summary is written to).
local jwt, static, bad = os.getenv("SOAK_JWT"), os.getenv("SOAK_STATIC"), os.getenv("SOAK_BAD_JWT")
local exchange_body = string.format('{"token":"%s","crm_merchant_id":%s}', static, os.getenv("SOAK_MERCHANT"))

local function post(path, auth, body)
  local headers = { ["Content-Type"] = "application/json" }
  if auth then headers["Authorization"] = auth end
  return wrk.format("POST", path, headers, body)
end

-- Built in init, once wrk has set the Host header the requests need.
local cycle = {}
function init(args)
  local verify = post("/api/auth/verify-token/", "Bearer " .. jwt)
  for i = 1, 20 do cycle[i] = verify end
  cycle[1] = post("/api/auth/get-access-token/", nil, exchange_body)
  cycle[6] = post("/api/ping", "Token " .. static)
  cycle[11] = post("/api/auth/verify-token/", "Bearer " .. bad)
  cycle[16] = post("/api/ping", "Token " .. static)
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

-- Per thread: the next request of the cycle, and responses by status.
local next_index = 0
statuses = {}
function request()
  next_index = next_index % #cycle + 1
  return cycle[next_index]
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses") or {}) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do table.insert(parts, string.format('"%d":%d', status, count)) end
  local e = summary.errors
  local f = assert(io.open(os.getenv("SOAK_OUT"), "w"))
  f:write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, table.concat(parts, ",")))
  f:close()
end
