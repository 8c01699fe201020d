"""weir.aio against a real broker: the blocking API's shape, awaited on the SDK's tokio runtime."""

import asyncio
import os

import pytest

import weir
import weir.aio


def run(coro):
    return asyncio.run(coro)


def test_round_trip_and_admin(broker):
    async def main():
        client = await weir.aio.Client.connect(broker.addr)
        assert client.addr == broker.addr
        await client.create_topic("orders", partitions=3)
        assert await client.list_topics() == ["orders"]
        async with client.producer(linger_ms=2) as p:
            for i in range(5000):
                await p.send("orders", f"v{i}".encode(), key=f"k{i % 11}".encode(),
                             headers={"n": str(i).encode()})
        got = [r async for r in client.consumer("orders", idle_timeout_ms=1000)]
        assert sorted(int(r.headers["n"]) for r in got) == list(range(5000))
        for r in got:
            assert r.key is not None and r.partition == weir.partition_for_key(r.key, 3)
            assert r.value == b"v" + r.headers["n"]
        await client.delete_topic("orders")
        assert await client.list_topics() == []

    run(main())


def test_errors_are_typed(broker):
    async def main():
        with pytest.raises(weir.Unavailable):
            await weir.aio.Client.connect("127.0.0.1:1")
        client = await weir.aio.Client.connect(broker.addr)
        await client.create_topic("t")
        with pytest.raises(weir.TopicExists):
            await client.create_topic("t")
        with pytest.raises(weir.InvalidArgument, match="start must be"):
            client.consumer("t", start="soon")  # type: ignore[arg-type]
        # A consumer opens when awaited, or else at its first record: opening errors are
        # raised there.
        with pytest.raises(weir.TopicNotFound, match="nope"):
            await client.consumer("nope")
        with pytest.raises(weir.TopicNotFound, match="nope"):
            await client.consumer("nope").__anext__()
        with pytest.raises(weir.PluginError, match="missing"):
            await client.consumer("t", plugins=[("missing", None)]).__anext__()
        with pytest.raises(weir.OffsetOutOfRange):
            await client.consumer("t", start=3).__anext__()
        p = client.producer()
        with pytest.raises(weir.TopicNotFound):
            await p.send("nope", b"x")
        await p.close()
        with pytest.raises(weir.WeirError, match="closed"):
            await p.send("t", b"x")

    run(main())


def test_waiting_leaves_the_loop_free_and_cancelling_keeps_the_consumer(broker):
    async def main():
        client = await weir.aio.Client.connect(broker.addr)
        await client.create_topic("quiet")
        consumer = client.consumer("quiet")
        # Cancelled while it waits (nothing to read): wait_for's own timer fires, which it
        # could not if the wait blocked the loop.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(consumer.__anext__(), 0.5)
        # While a read waits, another task on the same loop sends what it waits for.
        waiting = asyncio.ensure_future(consumer.__anext__())
        await asyncio.sleep(0)
        assert not waiting.done()
        async with client.producer() as p:
            await p.send("quiet", b"late")
        # The consumer is still usable after the cancelled wait.
        r = await asyncio.wait_for(waiting, 30)
        assert (r.offset, r.value) == (0, b"late")
        assert consumer.position(0) == 1 and consumer.assignment() == [0]
        await consumer.close()

    run(main())


def test_a_long_buffered_read_still_yields_to_other_tasks(broker):
    async def main():
        client = await weir.aio.Client.connect(broker.addr)
        await client.create_topic("t")
        async with client.producer() as p:
            for i in range(20000):
                await p.send("t", b"x")
        turns = 0
        done = False

        async def other():
            nonlocal turns
            while not done:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(other())
        n = 0
        async for _ in client.consumer("t", idle_timeout_ms=1000):
            n += 1
            if n == 20000:
                break
        done = True
        await task
        # Most records were already buffered (answered at once); the loop still got turns.
        assert turns >= 20000 // 128

    run(main())


def test_group_members_in_one_loop_split_the_partitions(broker):
    async def main():
        client = await weir.aio.Client.connect(broker.addr)
        await client.create_topic("orders", partitions=4)

        async def member() -> tuple[list[weir.Record], list[int]]:
            seen, assignment = [], []
            async with client.consumer("orders", group="g", idle_timeout_ms=5000) as c:
                async for r in c:
                    seen.append(r)
                    assignment = c.assignment()
            return seen, assignment

        members = asyncio.gather(member(), member())
        # Both joined and settled before there is anything to read.
        deadline = asyncio.get_running_loop().time() + 30
        while sorted(map(len, (await asyncio.to_thread(broker.group_owners, "g")).values())) != [2, 2]:
            assert asyncio.get_running_loop().time() < deadline, "the group never settled"
            await asyncio.sleep(0.05)
        async with client.producer() as p:
            for i in range(3000):
                await p.send("orders", str(i).encode(), key=str(i).encode())
        (ra, pa), (rb, pb) = await members
        seen = [(r.partition, r.offset) for r in ra + rb]
        assert len(seen) == len(set(seen)) == 3000
        assert sorted(pa + pb) == [0, 1, 2, 3]
        assert {r.partition for r in ra} == set(pa) and {r.partition for r in rb} == set(pb)

    run(main())


def test_many_pending_calls_share_the_runtime_threads(broker):
    def threads() -> list[str]:
        out = []
        for t in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{t}/comm") as f:
                    out.append(f.read().strip())
            except FileNotFoundError:
                pass
        return sorted(out)

    async def main():
        client = await weir.aio.Client.connect(broker.addr)
        await client.create_topic("quiet")
        before = threads()
        consumers = [client.consumer("quiet", idle_timeout_ms=None) for _ in range(50)]
        waits = [asyncio.ensure_future(c.__anext__()) for c in consumers]
        # While all 50 calls wait (nothing to read yet), the most threads seen.
        during = before
        for _ in range(25):
            await asyncio.sleep(0.02)
            assert not any(w.done() for w in waits)
            now = threads()
            if len(now) > len(during):
                during = now
        # 50 calls waiting at once, no thread each.
        assert len(during) - len(before) < 10, (before, during)
        # One record ends every wait (handing 50 results to asyncio may take a few blocking
        # threads for a moment: that is after the waiting).
        async with client.producer() as p:
            await p.send("quiet", b"x")
        for w in waits:
            assert (await asyncio.wait_for(w, 30)).value == b"x"
        for c in consumers:
            await c.close()

    run(main())
