-- wrk script: POST a reservation of one unit with a short hold (the sweeper gives the stock
-- back), to the product path wrk was given, with the dev API key.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-api-key"] = os.getenv("HEADER_VALUE") or "lambda-edge-dev-key"
wrk.body = '{"quantity":1,"hold_seconds":5}'

-- The JSON summary line every bench row prints.
dofile("bench/report.lua")
