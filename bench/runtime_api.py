#!/usr/bin/env python3
"""Measure a Lambda function's cold start locally: a minimal Lambda Runtime API serves one
invocation; the time from spawning the bootstrap to its answer, and its idle RSS, are printed
as JSON. The event is a function URL request for GET /health (no database involved).

Usage: runtime_api.py BOOTSTRAP [ENV=VALUE ...]
"""

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVENT = {
    "version": "2.0", "routeKey": "$default", "rawPath": "/health", "rawQueryString": "",
    "headers": {"host": "local"},
    "requestContext": {"http": {"method": "GET", "path": "/health", "protocol": "HTTP/1.1",
                                "sourceIp": "127.0.0.1", "userAgent": "bench"},
                       "requestId": "bench", "routeKey": "$default", "stage": "$default",
                       "accountId": "123456789012", "apiId": "local", "domainName": "local",
                       "domainPrefix": "local", "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0},
    "isBase64Encoded": False,
}
answered = threading.Event()
served = threading.Event()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.endswith("/invocation/next"):
            if served.is_set():
                answered.wait(30)
                time.sleep(3600)  # the bench kills the process; never hand out a second event
                return
            served.set()
            body = json.dumps(EVENT).encode()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if "/response" in self.path:
            answered.set()


def main():
    bootstrap, extra = sys.argv[1], sys.argv[2:]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": "bench", "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true", "RUST_LOG": "warn",
    })
    env.update(dict(item.split("=", 1) for item in extra))
    started = time.perf_counter()
    process = subprocess.Popen([bootstrap], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = answered.wait(30)
    elapsed_ms = (time.perf_counter() - started) * 1000
    time.sleep(0.2)
    rss_kb = 0
    try:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
    except OSError:
        pass
    process.kill()
    process.wait()
    server.shutdown()
    print(json.dumps({"ok": ok, "init_to_first_answer_ms": round(elapsed_ms, 2), "idle_rss_kb": rss_kb}))


if __name__ == "__main__":
    main()
