"""Python SDK throughput: produce and consume N records of B bytes through one broker.

    python sdk-python/benches/bench.py [--broker HOST:PORT] [--records N] [--record-size B]
                                       [--partitions P] [--api sync|aio] [--runs R]

Each run creates a fresh topic, then times producing N records (send per record, then flush:
until the broker acknowledged all) and consuming them back (from earliest until the N-th
record). Prints one JSON object per measurement, as `weir bench --json` does, so the numbers
sit next to the Rust SDK's (`weir bench produce|consume`). Run a release broker:
`cargo build --release -p weir-broker && target/release/weir-broker --data-dir /tmp/wb`.
"""

import argparse
import asyncio
import json
import os
import time
import uuid

import weir
import weir.aio


def report(what: str, api: str, n: int, size: int, seconds: float) -> None:
    print(json.dumps({
        "bench": what,
        "api": api,
        "records": n,
        "record_size": size,
        "seconds": round(seconds, 3),
        "records_per_sec": round(n / seconds),
        "mb_per_sec": round(n * size / seconds / 1e6, 1),
    }), flush=True)


def run_sync(addr: str, n: int, size: int, partitions: int) -> None:
    client = weir.Client(addr)
    topic = f"bench-py-{uuid.uuid4().hex[:8]}"
    client.create_topic(topic, partitions=partitions)
    # Distinct values (a counter in front), as real traffic has; built before timing.
    values = [f"{i:010d}".encode().ljust(size, b"x") for i in range(min(n, 100_000))]
    send_values = (values[i % len(values)] for i in range(n))
    start = time.perf_counter()
    with client.producer(linger_ms=5) as p:
        send = p.send
        for v in send_values:
            send(topic, v)
    report("produce", "sync", n, size, time.perf_counter() - start)

    start = time.perf_counter()
    seen = 0
    for r in client.consumer(topic, idle_timeout_ms=5000):
        seen += len(r.value) > 0
        if seen == n:
            break
    assert seen == n, f"read {seen} of {n}"
    report("consume", "sync", n, size, time.perf_counter() - start)
    client.delete_topic(topic)


async def run_aio(addr: str, n: int, size: int, partitions: int) -> None:
    client = await weir.aio.Client.connect(addr)
    topic = f"bench-py-{uuid.uuid4().hex[:8]}"
    await client.create_topic(topic, partitions=partitions)
    values = [f"{i:010d}".encode().ljust(size, b"x") for i in range(min(n, 100_000))]
    start = time.perf_counter()
    async with client.producer(linger_ms=5) as p:
        for i in range(n):
            await p.send(topic, values[i % len(values)])
    report("produce", "aio", n, size, time.perf_counter() - start)

    start = time.perf_counter()
    seen = 0
    async for r in client.consumer(topic, idle_timeout_ms=5000):
        seen += len(r.value) > 0
        if seen == n:
            break
    assert seen == n, f"read {seen} of {n}"
    report("consume", "aio", n, size, time.perf_counter() - start)
    await client.delete_topic(topic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("WEIR_BROKER", "127.0.0.1:9292"))
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--record-size", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--api", choices=["sync", "aio"], default="sync")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.runs):
        if args.api == "sync":
            run_sync(args.broker, args.records, args.record_size, args.partitions)
        else:
            asyncio.run(run_aio(args.broker, args.records, args.record_size, args.partitions))


if __name__ == "__main__":
    main()
