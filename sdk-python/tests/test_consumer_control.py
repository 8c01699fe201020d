"""Consumer control against known data: seek (offset and time), pause/resume,
offsets_for_times, committed() and commit(offsets=...), poll_batch. Blocking and asyncio."""

import asyncio
import datetime

import pytest

import weir
import weir.aio

# Three partitions, 20 records each; partition p's record i has timestamp BASE + i * 1000
# and value b"p{p}-{i}".
BASE = 1_700_000_000_000


def fill(client: weir.Client, topic: str = "known") -> None:
    client.create_topic(topic, partitions=3)
    with client.producer() as p:
        for part in range(3):
            for i in range(20):
                p.send(topic, f"p{part}-{i}".encode(), partition=part, timestamp_ms=BASE + i * 1000)


def drain(consumer) -> list:
    return [(r.partition, r.offset) for r in consumer]


def test_seek_to_an_offset_and_to_a_time(broker):
    client = broker.client()
    fill(client)
    c = client.consumer("known", partitions=[1], idle_timeout_ms=500)
    first = next(c)
    assert (first.partition, first.offset) == (1, 0)
    c.seek(1, 15)
    assert [r.offset for r in c] == [15, 16, 17, 18, 19]
    at = datetime.datetime.fromtimestamp((BASE + 7_000) / 1000, tz=datetime.timezone.utc)
    c.seek(1, at)
    rec = next(c)
    assert (rec.offset, rec.value, rec.timestamp) == (7, b"p1-7", BASE + 7_000)
    with pytest.raises(weir.TopicNotFound):
        c.seek(2, 0)  # not a partition this consumer reads
    with pytest.raises(weir.InvalidArgument):
        c.seek(1, "soon")  # type: ignore[arg-type]
    c.close()


def test_pause_and_resume_partitions(broker):
    client = broker.client()
    fill(client)
    c = client.consumer("known", idle_timeout_ms=500)
    c.pause([0, 2])
    assert c.paused() == [0, 2]
    got = drain(c)
    assert {p for p, _ in got} == {1} and len(got) == 20
    c.resume([0])
    assert c.paused() == [2]
    got = drain(c)
    assert got == [(0, i) for i in range(20)]
    c.resume([2])
    assert [o for _, o in drain(c)] == list(range(20))
    with pytest.raises(weir.TopicNotFound):
        c.pause([7])
    c.close()


def test_offsets_for_times(broker):
    client = broker.client()
    fill(client)
    c = client.consumer("known", idle_timeout_ms=200)
    when = datetime.datetime.fromtimestamp((BASE + 12_500) / 1000, tz=datetime.timezone.utc)
    found = c.offsets_for_times({0: BASE + 3_000, 1: when, 2: BASE + 999_000})
    # At or after: 3 s is offset 3; 12.5 s is 13; past the last record: the log end.
    assert found == {0: 3, 1: 13, 2: 20}
    assert client.offsets_for_times("known", {0: BASE}) == {0: 0}
    c.close()


def test_commit_explicit_offsets_and_read_them_back(broker):
    client = broker.client()
    fill(client)
    c = client.consumer("known", group="billing", auto_commit=False, idle_timeout_ms=1000)
    records = c.poll_batch(max_records=10, timeout=10)
    assert 0 < len(records) <= 10
    assert c.committed() == {0: None, 1: None, 2: None}
    c.commit(offsets={0: 5, 2: 11})
    assert c.committed() == {0: 5, 1: None, 2: 11}
    assert client.committed_offsets("billing", "known") == {0: 5, 1: None, 2: 11}
    c.close()
    plain = client.consumer("known", idle_timeout_ms=100)
    with pytest.raises(weir.InvalidArgument):
        plain.committed()
    plain.close()
    # A new member of the group starts where the commits say.
    c = client.consumer("known", group="billing", idle_timeout_ms=1000)
    starts: dict[int, int] = {}
    for r in c:
        starts.setdefault(r.partition, r.offset)
    assert starts == {0: 5, 1: 0, 2: 11}
    c.close()


def test_poll_batch_returns_lists_up_to_the_limit(broker):
    client = broker.client()
    fill(client)
    c = client.consumer("known", idle_timeout_ms=300)
    seen: list[tuple[int, int, bytes]] = []
    while True:
        batch = c.poll_batch(max_records=7, timeout=1)
        if not batch:
            break
        assert len(batch) <= 7
        seen.extend((r.partition, r.offset, r.value) for r in batch)
    assert sorted(seen) == sorted(
        (p, i, f"p{p}-{i}".encode()) for p in range(3) for i in range(20)
    )
    assert c.poll_batch(max_records=5, timeout=0.05) == []
    c.close()


def test_aio_consumer_control(broker):
    fill(broker.client())

    async def main():
        client = await weir.aio.Client.connect(broker.addr)
        c = await client.consumer("known", group="g", auto_commit=False, idle_timeout_ms=500)
        batch = await c.poll_batch(max_records=100, timeout=10)
        assert batch
        for p in c.assignment():
            await c.seek(p, 18)
        c.pause([1])
        assert c.paused() == [1]
        rest = [(r.partition, r.offset) async for r in c]
        assert sorted(rest) == [(0, 18), (0, 19), (2, 18), (2, 19)]
        c.resume([1])
        rest = [(r.partition, r.offset) async for r in c]
        assert rest == [(1, 18), (1, 19)]
        at = datetime.datetime.fromtimestamp((BASE + 4_000) / 1000, tz=datetime.timezone.utc)
        assert await c.offsets_for_times({2: at}) == {2: 4}
        await c.commit(offsets={1: 20})
        assert (await c.committed())[1] == 20
        assert await client.committed_offsets("g", "known") == {0: None, 1: 20, 2: None}
        await c.close()
        unopened = client.consumer("known")
        with pytest.raises(weir.WeirError):
            unopened.pause([0])

    asyncio.run(main())
