#!/usr/bin/env python3
"""moto server with requests applied one at a time.

DynamoDB applies each conditional write and transaction atomically. moto's server handles
requests on threads without a lock, so two concurrent conditional writes to one item can both
pass their condition. This runs the same moto application behind one lock, which gives the
atomicity the services rely on (uniqueness claims, stock decrements, releases), while
connections are still accepted concurrently.

It also makes a transaction's cost independent of the size of its tables: moto snapshots
every table a TransactWriteItems touches (a deep copy of all its items) to roll back a
cancelled one, so with thousands of reservations each transaction took a large fraction of a
second. Under the lock, the items a transaction names are all it can change: this snapshots
those (and the length of each table's stream), and restores them on a cancellation.

And a query on an index costs a pass over the table, not a sort of it: moto sorts every item
of the table by its key (comparing Python objects) before it picks an index's matches, which
it then sorts again by the index's own keys. With thousands of reservations the sweeper's
sixteen index queries held the lock for more than a second. The first sort is skipped for
index queries (their order comes from the second), and items outside the queried index
partition are passed over with a plain comparison; scans and table queries are as moto has them.

Usage: moto_serial.py [-H HOST] [-p PORT]   (ready when GET /moto-api/ answers)
"""

import argparse
import copy
import inspect
import signal
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def snapshot_only_touched_items(transact):
    """Wraps DynamoDBBackend.transact_write_items so its rollback restores the touched items."""

    def transact_write_items(self, transact_items):
        saved = []
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                table = self.get_table(op["TableName"])
                keys = op["Item"] if op_type == "Put" else op["Key"]
                hash_key, range_key = self.get_keys_value(table, keys)
            except Exception:  # a malformed action: moto's own code reports it
                continue
            saved.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
        streams = {
            id(table): (table, len(table.stream_shard.items))
            for table, *_ in saved
            if table.stream_shard is not None
        }
        # moto's own snapshot of each table becomes the table itself (restoring it is a no-op).
        Table.__deepcopy__ = lambda table, memo: table
        try:
            return transact(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(saved):
                if range_key is not None:
                    if item is None:
                        table.items.get(hash_key, {}).pop(range_key, None)
                    else:
                        table.items[hash_key][range_key] = item
                elif item is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = item
            for table, length in streams.values():
                del table.stream_shard.items[length:]
            raise
        finally:
            del Table.__deepcopy__

    return transact_write_items


def unsorted_scan_for_index_queries(query):
    """Wraps Table.query so a query on an index passes over the items without sorting them."""
    signature = inspect.signature(query)

    def all_items_matching(table, conditions):
        items = table.items.values()
        if table.range_key_attr:
            items = [item for hash_set in items for item in hash_set.values()]
        # A cheap first pass on the index's partition key (moto checks it again, in full).
        wanted = [(name, value.type, value.value) for name, value in conditions]

        def matches(item):
            for name, kind, value in wanted:
                found = item.attrs.get(name)
                if found is None or found.type != kind or found.value != value:
                    return False
            return True

        return [item for item in items if matches(item)]

    def table_query(self, *args, **kwargs):
        arguments = signature.bind(self, *args, **kwargs).arguments
        if not arguments.get("index_name"):
            return query(self, *args, **kwargs)
        conditions = arguments.get("hash_key_conditions") or []
        self.all_items = lambda: all_items_matching(self, conditions)
        try:
            return query(self, *args, **kwargs)
        finally:
            del self.all_items

    return table_query


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    args = parser.parse_args()

    DynamoDBBackend.transact_write_items = snapshot_only_touched_items(
        DynamoDBBackend.transact_write_items
    )
    Table.query = unsorted_scan_for_index_queries(Table.query)
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
