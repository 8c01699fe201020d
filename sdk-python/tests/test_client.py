"""The blocking API against a real broker: round trips, key placement shared with the CLI,
start positions, typed errors, the GIL and Ctrl-C."""

import datetime
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import weir

from conftest import plugin_wasm


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
    by_partition: dict[int, list[weir.Record]] = {}
    for r in got:
        assert r.topic == "orders"
        assert r.headers["bin"] == b"\x00\xff"
        assert r.timestamp > 0
        by_partition.setdefault(r.partition, []).append(r)
    for recs in by_partition.values():
        assert [r.offset for r in recs] == list(range(len(recs)))
        # Order is kept per partition.
        ns = [int(r.headers["n"]) for r in recs]
        assert ns == sorted(ns)
    assert sorted((r.key, r.value) for r in got) == sorted(sent)


def test_values_keys_and_timestamps_as_given(broker):
    client = broker.client()
    client.create_topic("t")
    with client.producer() as p:
        p.send("t", bytearray(b"from a bytearray"), key=bytearray(b"k"), timestamp_ms=1234)
        p.send("t", b"", headers={})
    first, second = client.consumer("t", idle_timeout_ms=500)
    assert (first.key, first.value, first.timestamp) == (b"k", b"from a bytearray", 1234)
    assert (second.key, second.value, second.headers) == (None, b"", {})
    assert "offset=1" in repr(second)


def test_same_key_same_partition_as_the_cli(broker):
    client = broker.client()
    client.create_topic("keys", partitions=4)
    keys = [f"user-{i}" for i in range(40)]
    broker.cli("produce", "keys", "--key-separator", ":",
               stdin="".join(f"{k}:cli\n" for k in keys))
    with client.producer() as p:
        for k in keys:
            p.send("keys", b"python", key=k.encode())
    placed: dict[bytes, set[int]] = {}
    for r in client.consumer("keys", idle_timeout_ms=500):
        placed.setdefault(r.key, set()).add(r.partition)
    assert len(placed) == len(keys)
    for key, partitions in placed.items():
        # Both clients' records of a key share one partition: the key's, by murmur2.
        assert partitions == {weir.partition_for_key(key, 4)}, key
    assert len({p for ps in placed.values() for p in ps}) > 1


def test_start_positions(broker):
    client = broker.client()
    client.create_topic("t")
    with client.producer() as p:
        for i in range(5):
            p.send("t", str(i).encode())
    # The mark is just after the last record's timestamp (ms); the next records are sent once
    # the clock has passed it, so they are stamped after it.
    last = list(client.consumer("t", idle_timeout_ms=300))[-1].timestamp
    mark = datetime.datetime.fromtimestamp((last + 1) / 1000, datetime.timezone.utc)
    deadline = time.monotonic() + 10
    while time.time() * 1000 < last + 2:
        assert time.monotonic() < deadline, "the clock does not move"
        time.sleep(0.001)
    with client.producer() as p:
        for i in range(5, 10):
            p.send("t", str(i).encode())
    values = lambda c: [r.value for r in c]  # noqa: E731
    assert values(client.consumer("t", start=7, idle_timeout_ms=500)) == [b"7", b"8", b"9"]
    assert values(client.consumer("t", start=mark, idle_timeout_ms=500)) == [
        str(i).encode() for i in range(5, 10)]
    assert values(client.consumer("t", start="latest", idle_timeout_ms=300)) == []
    c = client.consumer("t", start=8, idle_timeout_ms=300)
    assert c.position(0) == 8 and c.assignment() == [0]
    next(c)
    assert c.position(0) == 9


def test_every_error_is_typed_and_carries_the_broker_message(broker):
    client = broker.client()
    client.create_topic("t")
    with pytest.raises(weir.TopicExists, match='"t"'):
        client.create_topic("t")
    with pytest.raises(weir.TopicNotFound, match="nope"):
        client.consumer("nope")
    with pytest.raises(weir.InvalidArgument, match="partition"):
        client.create_topic("zero", partitions=0)
    with pytest.raises(weir.OffsetOutOfRange):
        next(iter(client.consumer("t", start=5)))
    with pytest.raises(weir.PluginError, match="missing"):
        client.consumer("t", plugins=[("missing", None)])
    with pytest.raises(weir.InvalidArgument, match="start must be"):
        client.consumer("t", start="yesterday")
    with pytest.raises(weir.InvalidArgument, match="compression"):
        client.producer(compression="gzip")
    with pytest.raises(weir.InvalidArgument, match="acks must be all or 1"):
        client.producer(acks=2)
    client.create_topic("acks")
    with client.producer(acks=1) as leader_only, client.producer(acks="all") as all_isr:
        leader_only.send("acks", b"acks=1")
        all_isr.send("acks", b"acks=all")
    assert len(list(client.consumer("acks", idle_timeout_ms=300))) == 2
    p = client.producer()
    with pytest.raises(weir.TopicNotFound, match="nope"):
        p.send("nope", b"x")
    with pytest.raises(weir.TopicNotFound, match="partition 7"):
        p.send("t", b"x", partition=7)
    with pytest.raises(weir.InvalidArgument, match="limit"):
        p.send("t", b"x" * (16 << 20))
    p.close()
    with pytest.raises(weir.WeirError, match="closed"):
        p.send("t", b"x")
    with pytest.raises(TypeError):
        p.send("t", "not bytes")  # type: ignore[arg-type]
    # Nothing above wrote a record.
    assert list(client.consumer("t", idle_timeout_ms=300)) == []
    for cls in [weir.TopicExists, weir.TopicNotFound, weir.InvalidArgument,
                weir.OffsetOutOfRange, weir.Unavailable, weir.PluginError, weir.GroupError]:
        assert issubclass(cls, weir.WeirError)


def test_unreachable_broker_is_unavailable():
    with pytest.raises(weir.Unavailable, match="127.0.0.1:1"):
        weir.Client("127.0.0.1:1")


def test_a_blocked_consumer_releases_the_gil(broker):
    client = broker.client()
    client.create_topic("quiet")
    main = threading.get_ident()
    consumer = client.consumer("quiet", idle_timeout_ms=60_000)
    blocked_at = None

    def send_while_main_blocks():
        # Python code on this thread runs only while the main thread lets go of the GIL: it
        # waits until the main thread sits in the blocking call below, then sends the record
        # that call is waiting for. Were the GIL held, the call would wait its whole
        # minute and return nothing.
        deadline = time.monotonic() + 30
        while (frame := sys._current_frames().get(main)) is None or frame.f_lineno != blocked_at:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        with client.producer() as p:
            p.send("quiet", b"from another thread")

    t = threading.Thread(target=send_while_main_blocks)
    blocked_at = sys._getframe().f_lineno + 2
    t.start()
    record = next(consumer)
    t.join()
    assert record.value == b"from another thread"


def test_ctrl_c_interrupts_a_blocked_consume(broker):
    broker.client().create_topic("quiet")
    # A watcher thread says "consuming" once the main thread sits in the blocking loop (its
    # frame is on that line), so the signal arrives while the consumer waits.
    script = textwrap.dedent(f"""
        import sys, threading, time
        import weir
        c = weir.Client({broker.addr!r}).consumer("quiet")
        main = threading.get_ident()
        def watch():
            while sys._current_frames()[main].f_lineno != LOOP:
                time.sleep(0.001)
            print("consuming", flush=True)
        LOOP = sys._getframe().f_lineno + 2
        threading.Thread(target=watch, daemon=True).start()
        for r in c:
            pass
    """)
    # Ctrl-C as in a terminal, whatever this run's own SIGINT disposition is: started in the
    # background (`scripts/test &`, nohup, some CI runners) it inherits SIGINT ignored, and
    # Python then never installs its KeyboardInterrupt handler.
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None
    if proc.stdout.readline() != "consuming\n":
        pytest.fail(f"the consumer did not start: {proc.communicate()[1]}")
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("Ctrl-C did not stop a consumer that follows forever")
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0


def test_consume_time_plugin_chain_is_applied(broker):
    wasm = plugin_wasm("filter-contains")
    broker.cli("plugin", "register", "contains", wasm)
    client = broker.client()
    client.create_topic("t")
    with client.producer() as p:
        for word in ["apple", "banana", "cherry", "grape"]:
            p.send("t", word.encode())
    kept = client.consumer("t", plugins=[("contains", {"substring": "ap"})], idle_timeout_ms=500)
    assert [r.value for r in kept] == [b"apple", b"grape"]
