-- wrk script: 90% fast requests, 10% slow ones (200 ms in the app), then the same RESULT line
-- as latency.lua.
local counter = 0
request = function()
  counter = counter + 1
  if counter % 10 == 0 then
    return wrk.format("GET", "/slow")
  end
  return wrk.format("GET", "/")
end
done = function(summary, latency, requests)
  local rps = summary.requests / (summary.duration / 1e6)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout + summary.errors.status
  io.write(string.format("RESULT %.0f %d %d %d %d\n", rps, latency:percentile(50),
    latency:percentile(99), latency:percentile(99.9), errors))
end
