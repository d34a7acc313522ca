#!/usr/bin/env python3
"""moto server with requests applied one at a time.

DynamoDB applies each conditional write and transaction atomically. moto's server handles
requests on threads without a lock, so two concurrent conditional writes to one item can both
pass their condition. This runs the same moto application behind one lock, which gives the
atomicity the services rely on (uniqueness claims, stock decrements, releases), while
connections are still accepted concurrently.

Usage: moto_serial.py [-H HOST] [-p PORT]   (ready when GET /moto-api/ answers)
"""

import argparse
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args()

    moto_app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            # Consume the whole response inside the lock: moto may produce it lazily.
            return list(moto_app(environ, start_response))

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(args.host, args.port, serialized, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
