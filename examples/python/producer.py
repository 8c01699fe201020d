"""Produces keyed order events to `example-orders` (created with 3 partitions if missing).

    python examples/python/producer.py [--broker HOST:PORT] [--records N]

Records with the same key (the customer) always land in the same partition, so each
customer's orders stay in order. `send` only buffers: the producer batches records per
partition (linger_ms), and leaving the `with` block waits until the broker acknowledged all.
"""

import argparse
import json
import os

import weir

TOPIC = "example-orders"


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
    with client.producer(linger_ms=5) as producer:
        for i in range(args.records):
            customer = f"customer-{i % 10}"
            order = {"order": i, "customer": customer, "amount": i * 3 % 97}
            producer.send(
                TOPIC,
                json.dumps(order).encode(),
                key=customer.encode(),
                headers={"source": b"example"},
            )
    print(f"produced {args.records} records to {TOPIC}")


if __name__ == "__main__":
    main()
