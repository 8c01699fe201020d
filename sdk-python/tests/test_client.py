import threading
import time

import pytest

import weir


def test_keyed_records_with_headers_round_trip(broker):
    client = broker.client()
    client.create_topic("orders", partitions=3)
    assert "orders" in client.list_topics()
    sent = [(f"key-{i % 7}".encode(), f"value {i} ✓".encode()) for i in range(2000)]
    with client.producer(linger_ms=5) as p:
        for i, (k, v) in enumerate(sent):
            p.send("orders", v, key=k, headers={"n": str(i).encode(), "bin": b"\x00\xff"})
    got = list(client.consumer("orders", start="earliest", idle_timeout_ms=1000))
    assert len(got) == len(sent)
    by_partition = {}
    for r in got:
        assert r.topic == "orders"
        assert r.headers["bin"] == b"\x00\xff"
        assert r.timestamp > 0
        # Same key, same partition: the partitioner every Weir client shares.
        assert r.partition == weir.partition_for_key(r.key, 3)
        by_partition.setdefault(r.partition, []).append(r)
    for recs in by_partition.values():
        assert [r.offset for r in recs] == list(range(len(recs)))
        # Order is kept per partition.
        ns = [int(r.headers["n"]) for r in recs]
        assert ns == sorted(ns)
    assert sorted((r.key, r.value) for r in got) == sorted(sent)


def test_start_positions(broker):
    client = broker.client()
    client.create_topic("t")
    with client.producer() as p:
        for i in range(10):
            p.send("t", str(i).encode())
    assert [r.value for r in client.consumer("t", start=7, idle_timeout_ms=500)] == [b"7", b"8", b"9"]
    assert list(client.consumer("t", start="latest", idle_timeout_ms=300)) == []


def test_errors_are_typed_and_carry_the_broker_message(broker):
    client = broker.client()
    client.create_topic("t")
    with pytest.raises(weir.TopicExists, match="t"):
        client.create_topic("t")
    with pytest.raises(weir.TopicNotFound, match="nope"):
        client.consumer("nope")
    with pytest.raises(weir.InvalidArgument, match="partition"):
        client.create_topic("zero", partitions=0)
    with pytest.raises(weir.OffsetOutOfRange):
        next(iter(client.consumer("t", start=5)))
    with pytest.raises(weir.PluginError, match="missing"):
        client.consumer("t", plugins=[("missing", None)])
    with pytest.raises(weir.InvalidArgument):
        client.consumer("t", start="yesterday")
    for cls in [weir.TopicExists, weir.TopicNotFound, weir.InvalidArgument,
                weir.OffsetOutOfRange, weir.Unavailable, weir.PluginError]:
        assert issubclass(cls, weir.WeirError)


def test_unreachable_broker_is_unavailable():
    with pytest.raises(weir.Unavailable):
        weir.Client("127.0.0.1:1")


def test_a_blocked_consumer_releases_the_gil(broker):
    client = broker.client()
    client.create_topic("quiet")
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    started = time.monotonic()
    assert list(client.consumer("quiet", idle_timeout_ms=500)) == []
    stop.set()
    t.join()
    assert time.monotonic() - started >= 0.45
    # The other thread ran all along (it would get nothing if the GIL were held).
    assert len(ticks) > 100
