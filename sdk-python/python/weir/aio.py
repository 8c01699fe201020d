"""asyncio API of Weir: the same shape as the blocking one, awaited.

    import weir.aio
    client = await weir.aio.Client.connect("127.0.0.1:9292")
    await client.create_topic("orders", partitions=3)
    async with client.producer(linger_ms=5) as p:
        await p.send("orders", b"value", key=b"k")
    async for rec in client.consumer("orders", group="billing", idle_timeout_ms=1000):
        print(rec.partition, rec.offset, rec.value)

Waiting happens on the SDK's tokio runtime (no thread per call); cancelling an awaited call
(for example with ``asyncio.wait_for``) drops it.
"""

from ._weir import AsyncClient as Client
from ._weir import AsyncConsumer as Consumer
from ._weir import AsyncProducer as Producer

__all__ = ["Client", "Consumer", "Producer"]
