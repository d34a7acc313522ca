-- wrk script: print one JSON line with throughput and latency percentiles (microseconds),
-- including p99.9 which wrk's --latency does not show. Optional: set HEADER_NAME/HEADER_VALUE.
local header_name = os.getenv("HEADER_NAME")
local header_value = os.getenv("HEADER_VALUE")
if header_name and header_value then
  wrk.headers[header_name] = header_value
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests":%d,"rps":%.1f,"p50_us":%d,"p99_us":%d,"p999_us":%d,"errors":%d,"non2xx":%d}\n',
    summary.requests, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
