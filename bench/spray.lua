-- wrk script: every request from a new X-Forwarded-For address (10.x.y.z and beyond), so a
-- rate limit keyed on the client sees as many distinct keys as requests.
local n = 0
request = function()
  n = n + 1
  local a, b, c = math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256
  local d = math.floor(n / 16777216) % 200
  return wrk.format(nil, nil, { ["X-Forwarded-For"] = string.format("%d.%d.%d.%d", 11 + d, a, b, c) })
end
