"""A member of the consumer group `billing`: totals order amounts per customer.

    python examples/python/group_consumer.py [--broker HOST:PORT] [--group G] [--idle-timeout MS]

Run two at once: the group splits example-orders' partitions between them (each order is
counted by exactly one member), and stopping one hands its partitions to the other. Offsets
are committed in the broker, so a restarted member resumes after the last committed order.
"""

import argparse
import json
import os
from collections import Counter

import weir

TOPIC = "example-orders"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("WEIR_BROKER", "127.0.0.1:9292"))
    parser.add_argument("--group", default="billing")
    parser.add_argument("--idle-timeout", type=int, default=3000)
    args = parser.parse_args()

    client = weir.Client(args.broker)
    totals: Counter[str] = Counter()
    n = 0
    # auto_commit=False: commit after each 100 orders are counted (at-least-once counting);
    # leaving the `with` block leaves the group, and the others take over its partitions.
    with client.consumer(TOPIC, group=args.group, auto_commit=False,
                         idle_timeout_ms=args.idle_timeout or None) as consumer:
        for rec in consumer:
            order = json.loads(rec.value)
            totals[order["customer"]] += order["amount"]
            n += 1
            if n % 100 == 0:
                consumer.commit()
        consumer.commit()
        partitions = consumer.assignment()
    for customer, amount in sorted(totals.items()):
        print(f"{customer}\t{amount}")
    print(f"counted {n} orders from partitions {partitions}")


if __name__ == "__main__":
    main()
