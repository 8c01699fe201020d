"""Delivery reports: `send` returns a DeliveryHandle with (partition, offset, timestamp), the
same a consumer then reads; `on_delivery` callbacks run on the caller's thread from poll(),
flush() and close(); errors carry the broker's reason. Blocking and asyncio."""

import asyncio
import threading

import pytest

import weir
import weir.aio


def test_handles_give_the_offsets_a_consumer_reads(broker):
    client = broker.client()
    client.create_topic("orders", partitions=3)
    with client.producer(linger_ms=5) as p:
        handles = [
            p.send("orders", f"v{i}".encode(), key=f"k{i % 7}".encode()) for i in range(300)
        ]
        stamped = p.send("orders", b"stamped", partition=1, timestamp_ms=1_700_000_000_123)
        first = handles[0].result(timeout=10)
    assert all(h.done() for h in handles)
    metas = [h.result() for h in handles]
    assert first.offset == metas[0].offset and first.partition == metas[0].partition
    assert {m.topic for m in metas} == {"orders"}
    sent = {(m.partition, m.offset): f"v{i}".encode() for i, m in enumerate(metas)}
    assert len(sent) == 300, "every record has its own (partition, offset)"
    s = stamped.result()
    assert (s.partition, s.timestamp) == (1, 1_700_000_000_123)
    read = {}
    for rec in client.consumer("orders", idle_timeout_ms=1000):
        read[(rec.partition, rec.offset)] = (rec.value, rec.timestamp)
    assert {k: v for k, (v, _) in read.items() if v != b"stamped"} == sent
    # Without a timestamp of its own a record carries the broker's append time, and the
    # handle says which.
    assert all(read[(m.partition, m.offset)][1] == m.timestamp for m in metas)
    assert read[(s.partition, s.offset)] == (b"stamped", 1_700_000_000_123)
    assert "partition=" in repr(handles[0]) and "offset=" in repr(first)


def test_on_delivery_runs_on_the_callers_thread_in_poll_and_flush(broker):
    client = broker.client()
    client.create_topic("events", partitions=2)
    caller = threading.get_ident()
    reports = []

    def report(err, meta):
        reports.append((threading.get_ident(), err, meta))

    p = client.producer(linger_ms=1, on_delivery=report)
    handles = [p.send("events", f"e{i}".encode()) for i in range(50)]
    own = []
    p.send("events", b"own", on_delivery=lambda err, meta: own.append((err, meta)))
    # poll() waits for the first report, then serves every one that is ready.
    served = 0
    while served < 51:
        served += p.poll(timeout=5)
    assert len(reports) == 50 and len(own) == 1
    p.send("events", b"last")
    assert len(reports) == 50, "no callback runs outside poll/flush/close"
    p.flush()
    assert len(reports) == 51
    p.close()
    assert {t for t, _, _ in reports} == {caller}
    assert all(err is None for _, err, _ in reports)
    got = sorted((m.partition, m.offset) for _, _, m in reports[:50])
    assert got == sorted((h.result().partition, h.result().offset) for h in handles)
    assert own[0][0] is None and own[0][1].topic == "events"


def test_a_failed_delivery_reports_the_brokers_reason(broker):
    client = broker.client()
    client.create_topic("gone")
    failures = []
    p = client.producer(linger_ms=200, delivery_timeout_ms=3000)
    # Deleted while the record lingers: the broker refuses the batch.
    h = p.send("gone", b"x", on_delivery=lambda err, meta: failures.append((err, meta)))
    client.delete_topic("gone")
    with pytest.raises(weir.TopicNotFound):
        p.flush()
    assert len(failures) == 1
    err, meta = failures[0]
    assert isinstance(err, weir.TopicNotFound) and meta is None
    assert "gone" in str(err)
    with pytest.raises(weir.TopicNotFound):
        h.result()
    p.close()


def test_a_callback_that_raises_surfaces_after_the_others_ran(broker):
    client = broker.client()
    client.create_topic("t")
    ran = []

    def boom(err, meta):
        raise RuntimeError("callback failed")

    with client.producer() as p:
        p.send("t", b"a", on_delivery=boom)
        p.send("t", b"b", on_delivery=lambda err, meta: ran.append(meta.offset))
        with pytest.raises(RuntimeError, match="callback failed"):
            p.flush()
        assert ran == [1]


def test_result_times_out_while_the_record_lingers(broker):
    client = broker.client()
    client.create_topic("slow")
    p = client.producer(linger_ms=3000)
    h = p.send("slow", b"x")
    assert not h.done()
    with pytest.raises(TimeoutError):
        h.result(timeout=0.05)
    p.flush()
    assert h.result(timeout=0).offset == 0
    p.close()


def test_aio_handles_are_awaitable_and_callbacks_run_on_the_loop_thread(broker):
    broker.client().create_topic("a", partitions=2)

    async def main():
        loop_thread = threading.get_ident()
        reports = []
        client = await weir.aio.Client.connect(broker.addr)
        async with client.producer(
            linger_ms=2, on_delivery=lambda err, meta: reports.append((threading.get_ident(), meta))
        ) as p:
            handles = [await p.send("a", f"v{i}".encode(), key=f"k{i}".encode()) for i in range(40)]
            metas = [await h for h in handles]
            await p.flush()
            assert len(reports) == 40
            assert p.poll() == 0
        assert {t for t, _ in reports} == {loop_thread}
        assert sorted((m.partition, m.offset) for _, m in reports if m is not None) == sorted(
            (m.partition, m.offset) for m in metas
        )
        read = {}
        async for rec in client.consumer("a", idle_timeout_ms=1000):
            read[(rec.partition, rec.offset)] = rec.value
        assert {(m.partition, m.offset): f"v{i}".encode() for i, m in enumerate(metas)} == read

    asyncio.run(main())
