"""Python SDK throughput: produce and consume N records of B bytes through one broker.

    python sdk-python/benches/bench.py [--broker HOST:PORT] [--records N] [--record-size B]
                                       [--partitions P] [--api sync|aio] [--runs R]

Each run creates a fresh topic, then times producing N records three ways (send per record,
then flush: until the broker acknowledged all): fire and forget, keeping every record's
delivery handle and reading its offset, and with an `on_delivery` callback per record; then
consuming N records back by iteration and by `poll_batch` (from earliest). Prints one JSON object per measurement, as `weir bench --json` does, so the numbers
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


def values_for(n: int, size: int) -> list[bytes]:
    """Distinct values (a counter in front), as real traffic has; built before timing."""
    return [f"{i:010d}".encode().ljust(size, b"x") for i in range(min(n, 100_000))]


def run_sync(addr: str, n: int, size: int, partitions: int) -> None:
    client = weir.Client(addr)
    topic = f"bench-py-{uuid.uuid4().hex[:8]}"
    client.create_topic(topic, partitions=partitions)
    values = values_for(n, size)

    # Fire and forget: the handle `send` returns is dropped.
    start = time.perf_counter()
    with client.producer(linger_ms=5) as p:
        send = p.send
        for i in range(n):
            send(topic, values[i % len(values)])
    report("produce", "sync", n, size, time.perf_counter() - start)

    # Every record's handle kept, and its (partition, offset) read once acknowledged.
    start = time.perf_counter()
    with client.producer(linger_ms=5) as p:
        send = p.send
        handles = [send(topic, values[i % len(values)]) for i in range(n)]
        p.flush()
        stored = sum(1 for h in handles if h.result().offset >= 0)
    assert stored == n, f"{stored} of {n} acknowledged"
    report("produce-handles", "sync", n, size, time.perf_counter() - start)
    del handles

    # A delivery callback per record, served by poll() as the records go.
    delivered = 0

    def on_delivery(err: object, meta: object) -> None:
        nonlocal delivered
        delivered += err is None

    start = time.perf_counter()
    with client.producer(linger_ms=5, on_delivery=on_delivery) as p:
        send, poll = p.send, p.poll
        for i in range(n):
            send(topic, values[i % len(values)])
            if i % 10_000 == 9_999:
                poll()
    assert delivered == n, f"{delivered} of {n} delivered"
    report("produce-on-delivery", "sync", n, size, time.perf_counter() - start)

    start = time.perf_counter()
    seen = 0
    for r in client.consumer(topic, idle_timeout_ms=5000):
        seen += len(r.value) > 0
        if seen == n:
            break
    assert seen == n, f"read {seen} of {n}"
    report("consume", "sync", n, size, time.perf_counter() - start)

    start = time.perf_counter()
    seen = 0
    with client.consumer(topic, idle_timeout_ms=5000) as c:
        while seen < n:
            batch = c.poll_batch(max_records=1000)
            if not batch:
                break
            seen += len(batch)
    assert seen >= n, f"read {seen} of {n}"
    report("consume-poll-batch", "sync", n, size, time.perf_counter() - start)
    client.delete_topic(topic)


async def run_aio(addr: str, n: int, size: int, partitions: int) -> None:
    client = await weir.aio.Client.connect(addr)
    topic = f"bench-py-{uuid.uuid4().hex[:8]}"
    await client.create_topic(topic, partitions=partitions)
    values = values_for(n, size)
    start = time.perf_counter()
    async with client.producer(linger_ms=5) as p:
        for i in range(n):
            await p.send(topic, values[i % len(values)])
    report("produce", "aio", n, size, time.perf_counter() - start)

    start = time.perf_counter()
    async with client.producer(linger_ms=5) as p:
        handles = [await p.send(topic, values[i % len(values)]) for i in range(n)]
        await p.flush()
        for h in handles:
            await h
    report("produce-handles", "aio", n, size, time.perf_counter() - start)
    del handles

    start = time.perf_counter()
    seen = 0
    async for r in client.consumer(topic, idle_timeout_ms=5000):
        seen += len(r.value) > 0
        if seen == n:
            break
    assert seen == n, f"read {seen} of {n}"
    report("consume", "aio", n, size, time.perf_counter() - start)

    start = time.perf_counter()
    seen = 0
    c = await client.consumer(topic, idle_timeout_ms=5000)
    while seen < n:
        batch = await c.poll_batch(max_records=1000)
        if not batch:
            break
        seen += len(batch)
    await c.close()
    assert seen >= n, f"read {seen} of {n}"
    report("consume-poll-batch", "aio", n, size, time.perf_counter() - start)
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
