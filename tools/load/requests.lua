-- wrk script: cycles through the requests of the file LOAD_REQUESTS, one per line,
-- "METHOD<TAB>PATH[<TAB>JSON BODY]", each wrk thread from its own offset; at the end prints
-- one JSON line: requests, rate, latency percentiles, failures (non-2xx and socket errors).
local reqs = {}
for line in io.lines(os.getenv("LOAD_REQUESTS")) do
  local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
  if method then
    local headers = {}
    if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
    reqs[#reqs + 1] = wrk.format(method, path, headers, body)
  end
end
local threads, counter = {}, 0
function setup(thread)
  thread:set("offset", counter * 7919)
  counter = counter + 1
  table.insert(threads, thread)
end
local i = 0
function request()
  i = i + 1
  return reqs[((offset or 0) + i) % #reqs + 1]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "rps": %.1f, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "non2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    e.status, e.connect + e.read + e.write + e.timeout))
end
