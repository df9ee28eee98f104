-- wrk script: print requests/s and p50/p99/p99.9 latency (microseconds) on one line.
done = function(summary, latency, requests)
  local rps = summary.requests / (summary.duration / 1e6)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout + summary.errors.status
  io.write(string.format("RESULT %.0f %d %d %d %d\n", rps, latency:percentile(50),
    latency:percentile(99), latency:percentile(99.9), errors))
end
