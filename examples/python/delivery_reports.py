"""Produces records and learns where each one was stored, two ways: a delivery callback
(`on_delivery`, confluent-kafka's style) and a handle per record (`send(...).result()`).

    python examples/python/delivery_reports.py [--broker HOST:PORT] [--records N]

`send` returns at once with a `DeliveryHandle`; the producer batches records per partition.
Callbacks run on this thread, inside `poll()` and `flush()` (never on a background thread),
so they may touch the program's state without locks.
"""

import argparse
import collections
import os
from typing import Optional

import weir

TOPIC = "example-deliveries"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("WEIR_BROKER", "127.0.0.1:9292"))
    parser.add_argument("--records", type=int, default=1000)
    args = parser.parse_args()

    client = weir.Client(args.broker)
    try:
        client.create_topic(TOPIC, partitions=3)
    except weir.TopicExists:
        pass

    per_partition: collections.Counter[int] = collections.Counter()
    failed: list[str] = []

    def on_delivery(err: Optional[weir.WeirError], meta: Optional[weir.RecordMetadata]) -> None:
        if err is not None:
            failed.append(str(err))
        elif meta is not None:
            per_partition[meta.partition] += 1

    with client.producer(linger_ms=5, on_delivery=on_delivery) as producer:
        for i in range(args.records):
            producer.send(TOPIC, f"event {i}".encode(), key=f"user-{i % 20}".encode())
            if i % 1000 == 999:
                producer.poll()  # serve the reports that are in, as confluent-kafka does
        # One record whose caller waits for its place: the handle's result.
        meta = producer.send(TOPIC, b"checkpoint").result(timeout=10)
    # Leaving the block flushed: every callback has run.
    for partition in sorted(per_partition):
        print(f"partition {partition}\t{per_partition[partition]} records")
    print(f"checkpoint at partition {meta.partition} offset {meta.offset}")
    print(f"delivered {sum(per_partition.values())} records, {len(failed)} failed")


if __name__ == "__main__":
    main()
