"""asyncio: a producer task and a consumer task share one event loop (weir.aio).

    python examples/python/asyncio_consumer.py [--broker HOST:PORT] [--records N]

The consumer follows `example-events` from the latest record while the producer writes
N events to it; no thread per call: the SDK's tokio runtime completes the awaits.
"""

import argparse
import asyncio
import os

import weir
import weir.aio

TOPIC = "example-events"


async def produce(client: weir.aio.Client, n: int) -> None:
    async with client.producer(linger_ms=5) as producer:
        for i in range(n):
            await producer.send(TOPIC, f"event {i}".encode(), key=f"device-{i % 4}".encode())


async def consume(consumer: weir.aio.Consumer, n: int) -> int:
    seen = 0
    async with consumer:
        async for rec in consumer:
            seen += 1
            if seen % 1000 == 0 or seen == n:
                print(f"{seen}\tpartition {rec.partition}\toffset {rec.offset}\t{rec.value.decode()}")
            if seen == n:
                break
    return seen


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default=os.environ.get("WEIR_BROKER", "127.0.0.1:9292"))
    parser.add_argument("--records", type=int, default=5000)
    args = parser.parse_args()

    client = await weir.aio.Client.connect(args.broker)
    try:
        await client.create_topic(TOPIC, partitions=2)
    except weir.TopicExists:
        pass
    # Awaiting the consumer opens it now, so "latest" means before the producer starts.
    consumer = await client.consumer(TOPIC, start="latest", idle_timeout_ms=10_000)
    reading = asyncio.ensure_future(consume(consumer, args.records))
    await produce(client, args.records)
    print(f"consumed {await reading} records while producing them")


if __name__ == "__main__":
    asyncio.run(main())
