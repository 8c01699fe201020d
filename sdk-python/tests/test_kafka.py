"""Unmodified Kafka clients on Weir's Kafka listener: confluent-kafka (librdkafka), from PyPI.
Produce with every codec and idempotence, consume from earliest and by time, keys where
Weir's partitioner puts them, records crossing between the Kafka and Weir protocols, and topic
administration through the AdminClient."""

import uuid

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # noqa: E402

import weir  # noqa: E402

N = 100_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def kafka_of(broker) -> str:
    """The Kafka address of a broker started with --kafka-listen."""
    assert broker.kafka is not None, "started without --kafka-listen"
    return str(broker.kafka)


def producer(broker, **extra) -> Producer:
    conf = {
        "bootstrap.servers": kafka_of(broker),
        "enable.idempotence": True,
        # librdkafka's default is consistent_random (CRC32); murmur2_random is Kafka's Java
        # partitioner, which Weir's clients share.
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "batch.size": 1 << 20,
    }
    conf.update(extra)
    return Producer(conf)


def consumer(broker, **extra) -> Consumer:
    conf = {
        "bootstrap.servers": kafka_of(broker),
        "group.id": f"g-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    conf.update(extra)
    return Consumer(conf)


def poll_until(c: Consumer, done, limit_s: float = 60.0) -> list:
    """Polls `c` (a group member) until `done(records)` holds."""
    import time
    out: list = []
    deadline = time.monotonic() + limit_s
    while not done(out):
        assert time.monotonic() < deadline, f"timed out with {len(out)} records"
        for m in c.consume(num_messages=1000, timeout=0.2):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(err)
            out.append(m)
    return out


def read_assigned(c: Consumer, parts: list[TopicPartition], n: int, timeout_s: float = 60.0):
    """Reads `n` records from the partitions `parts` (assigned, not subscribed)."""
    c.assign(parts)
    return poll_until(c, lambda out: len(out) >= n, timeout_s)


def send(p: Producer, topic: str, **record) -> None:
    """Produces one record, serving delivery reports while the local queue is full."""
    while True:
        try:
            p.produce(topic, **record)
            break
        except BufferError:
            p.poll(0.05)
    p.poll(0)


def produce_all(p: Producer, topic: str, records) -> list:
    """Produces and waits for every delivery report; returns the errors."""
    errors = []

    def report(err, _msg):
        if err is not None:
            errors.append(err)

    for key, value, headers, ts in records:
        send(p, topic, value=value, key=key, headers=headers, timestamp=ts or 0, on_delivery=report)
    assert p.flush(60) == 0
    return errors


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_idempotent_keys_headers_and_timestamps_survive(kafka_broker, codec):
    client = kafka_broker.client()
    client.create_topic("events", partitions=3)
    base = 1_700_000_000_000
    records = [
        (f"key-{i % 101}".encode(), f"value-{i}".encode() * 3, [("n", str(i).encode())], base + i)
        for i in range(N)
    ]
    p = producer(kafka_broker, **{"compression.type": codec})
    assert produce_all(p, "events", records) == []

    c = consumer(kafka_broker)
    got = read_assigned(c, [TopicPartition("events", i, 0) for i in range(3)], N)
    c.close()
    assert len(got) == N
    by_partition: dict[int, list] = {}
    for m in got:
        i = int(dict(m.headers())["n"])
        key, value, _, ts = records[i]
        assert m.key() == key and m.value() == value
        assert m.timestamp() == (confluent_kafka.TIMESTAMP_CREATE_TIME, ts)
        # The partition Weir's own clients would pick for the key.
        assert m.partition() == weir.partition_for_key(key, 3)
        by_partition.setdefault(m.partition(), []).append((m.offset(), i))
    for entries in by_partition.values():
        # Dense offsets, each record once, in the order sent.
        assert [o for o, _ in entries] == list(range(len(entries)))
        assert [i for _, i in entries] == sorted(i for _, i in entries)


def test_offsets_for_times_finds_the_first_record_at_or_after(kafka_broker):
    kafka_broker.client().create_topic("timed", partitions=1)
    records = [(None, f"r{i}".encode(), None, 1_000_000 + i * 1000) for i in range(100)]
    assert produce_all(producer(kafka_broker), "timed", records) == []
    c = consumer(kafka_broker)
    found = c.offsets_for_times([TopicPartition("timed", 0, 1_042_500)], timeout=10)
    assert found[0].offset == 43
    found = c.offsets_for_times([TopicPartition("timed", 0, 5_000_000)], timeout=10)
    assert found[0].offset == -1  # none at or after: Kafka's answer (OFFSET_END)
    low, high = c.get_watermark_offsets(TopicPartition("timed", 0), timeout=10)
    assert (low, high) == (0, 100)
    got = read_assigned(c, [TopicPartition("timed", 0, 43)], 57)
    assert [m.value() for m in got] == [f"r{i}".encode() for i in range(43, 100)]
    c.close()


def test_records_cross_between_the_weir_and_kafka_protocols(kafka_broker):
    client = kafka_broker.client()
    client.create_topic("both", partitions=2)
    with client.producer() as p:
        for i in range(1000):
            p.send("both", f"weir-{i}".encode(), key=f"k{i % 10}".encode(), headers={"via": b"weir"})
    c = consumer(kafka_broker)
    got = read_assigned(c, [TopicPartition("both", 0, 0), TopicPartition("both", 1, 0)], 1000)
    c.close()
    assert sorted(m.value() for m in got) == sorted(f"weir-{i}".encode() for i in range(1000))
    assert all(dict(m.headers())["via"] == b"weir" for m in got)
    for m in got:
        assert m.partition() == weir.partition_for_key(m.key(), 2)

    records = [(f"k{i % 10}".encode(), f"kafka-{i}".encode(), [("via", b"kafka")], None) for i in range(1000)]
    assert produce_all(producer(kafka_broker), "both", records) == []
    back = [r for r in client.consumer("both", start="earliest", idle_timeout_ms=1000)]
    from_kafka = [r for r in back if r.headers.get("via") == b"kafka"]
    assert sorted(r.value for r in from_kafka) == sorted(f"kafka-{i}".encode() for i in range(1000))
    for r in from_kafka:
        assert r.partition == weir.partition_for_key(r.key, 2)


def test_the_admin_client_creates_describes_and_deletes_topics(kafka_broker):
    admin = AdminClient({"bootstrap.servers": kafka_of(kafka_broker)})
    fs = admin.create_topics([
        NewTopic("made-by-kafka", num_partitions=4, replication_factor=1,
                 config={"retention.ms": "3600000", "segment.bytes": "1048576"}),
        NewTopic("compacted", num_partitions=1, replication_factor=1,
                 config={"cleanup.policy": "compact"}),
        NewTopic("bad name!", num_partitions=1, replication_factor=1),
    ])
    fs["made-by-kafka"].result(timeout=10)
    with pytest.raises(KafkaException) as e:
        fs["compacted"].result(timeout=10)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert "compaction" in e.value.args[0].str()
    with pytest.raises(KafkaException) as e:
        fs["bad name!"].result(timeout=10)
    assert e.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    # The same topic, seen through Weir.
    assert "made-by-kafka" in kafka_broker.client().list_topics()
    assert "compacted" not in kafka_broker.client().list_topics()
    with pytest.raises(KafkaException) as e:
        admin.create_topics([NewTopic("made-by-kafka", 1, 1)])["made-by-kafka"].result(timeout=10)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    meta = admin.list_topics(timeout=10)
    assert len(meta.topics["made-by-kafka"].partitions) == 4
    assert meta.cluster_id == "weir"

    res = ConfigResource(ConfigResource.Type.TOPIC, "made-by-kafka")
    configs = admin.describe_configs([res])[res].result(timeout=10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["segment.bytes"].value == "1048576"
    assert configs["cleanup.policy"].value == "delete"
    assert int(configs["max.message.bytes"].value) > 0

    cluster = admin.describe_cluster(request_timeout=10).result(timeout=10)
    assert [n.id for n in cluster.nodes] == [0]
    assert cluster.controller.id == 0

    admin.delete_topics(["made-by-kafka"])["made-by-kafka"].result(timeout=10)
    assert "made-by-kafka" not in kafka_broker.client().list_topics()
    with pytest.raises(KafkaException) as e:
        admin.delete_topics(["made-by-kafka"])["made-by-kafka"].result(timeout=10)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_two_group_members_split_partitions_and_one_takes_over_from_committed_offsets(kafka_broker):
    client = kafka_broker.client()
    client.create_topic("orders", partitions=6)
    first = [(f"k{i}".encode(), f"v{i}".encode(), None, None) for i in range(6000)]
    assert produce_all(producer(kafka_broker), "orders", first) == []

    def member(name: str) -> Consumer:
        c = consumer(kafka_broker, **{
            "group.id": "billing",
            "client.id": name,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 100,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 200,
            "partition.assignment.strategy": "range",
        })
        c.subscribe(["orders"])
        return c

    a, b = member("a"), member("b")
    got: dict[str, list] = {"a": [], "b": []}
    # Both poll, in turn on this thread (a member that does not poll holds up the
    # rebalance), until each has 3 partitions and everything is read between them.
    import time
    deadline = time.monotonic() + 60
    while len(got["a"]) + len(got["b"]) < 6000 or len(a.assignment()) != 3 or len(b.assignment()) != 3:
        assert time.monotonic() < deadline, (len(got["a"]), len(got["b"]), a.assignment(), b.assignment())
        for name, c in (("a", a), ("b", b)):
            got[name].extend(m for m in c.consume(num_messages=1000, timeout=0.1) if not m.error())
    # The partitions split between them, and no record read twice (a partition that moved
    # in the rebalance was committed by its first reader before the second started).
    pa = {p.partition for p in a.assignment()}
    pb = {p.partition for p in b.assignment()}
    assert not (pa & pb) and pa | pb == set(range(6)), (pa, pb)
    seen = [(m.partition(), m.offset()) for m in got["a"] + got["b"]]
    assert len(seen) == len(set(seen)) == 6000
    for c in (a, b):
        try:
            c.commit(asynchronous=False)
        except KafkaException as e:
            # Auto-commit got there first: nothing left to commit.
            assert e.args[0].code() == KafkaError._NO_OFFSET

    # The offsets Kafka clients committed show in `weir group describe`, lag included.
    rows = [r.split("\t") for r in kafka_broker.cli("group", "describe", "billing").splitlines()[1:]]
    assert len(rows) == 6
    assert all(r[2] == r[3] and r[4] == "0" for r in rows), rows
    # A Weir consumer cannot join the group while Kafka consumers are in it.
    with pytest.raises(weir.WeirError, match="Kafka-protocol consumers"):
        next(iter(client.consumer("orders", group="billing", idle_timeout_ms=1000)))

    # b leaves; a takes its partitions from the committed offsets and reads only the new
    # records.
    b.close()
    more = [(f"k{i}".encode(), f"v{i}".encode(), None, None) for i in range(6000, 7200)]
    assert produce_all(producer(kafka_broker), "orders", more) == []
    rest = poll_until(a, lambda out: len(out) >= 1200 and len(a.assignment()) == 6)
    assert sorted(m.value() for m in rest) == sorted(v for _, v, _, _ in more)
    a.close()

    # Another group gets everything.
    audit = consumer(kafka_broker, **{"group.id": "audit"})
    audit.subscribe(["orders"])
    everything = poll_until(audit, lambda out: len(out) >= 7200)
    assert len({(m.partition(), m.offset()) for m in everything}) == 7200
    audit.commit(asynchronous=False)
    audit.close()

    # With the Kafka members gone, a Weir consumer of the group resumes at their offsets.
    assert list(client.consumer("orders", group="billing", idle_timeout_ms=1000)) == []
    admin = AdminClient({"bootstrap.servers": kafka_of(kafka_broker)})
    groups = admin.list_consumer_groups().result(timeout=10)
    assert {"billing", "audit"} <= {g.group_id for g in groups.valid}, groups.errors
    described = admin.describe_consumer_groups(["audit"])["audit"].result(timeout=10)
    assert described.group_id == "audit" and described.members == []


def test_sasl_plain_signs_in_as_a_weir_user_held_to_its_acls(tmp_path):
    from conftest import Broker
    b = Broker(tmp_path / "data", "127.0.0.1:0", "--auth", "--kafka-listen", "127.0.0.1:0")
    try:
        root = ("--token", (tmp_path / "data" / "admin.token").read_text().strip())
        b.cli(*root, "topic", "create", "orders", "--partitions", "2")
        b.cli(*root, "topic", "create", "audit")
        b.cli(*root, "user", "add", "app", "--password-stdin", stdin="app-password\n")
        b.cli(*root, "acl", "grant", "app", "write", "--topic", "orders")
        b.cli(*root, "acl", "grant", "app", "read", "--topic", "orders")
        b.cli(*root, "acl", "grant", "app", "read", "--group", "billing")

        def sasl(password: str) -> dict:
            return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
                    "sasl.username": "app", "sasl.password": password}

        # The right password: produce and consume in a group, as the ACLs allow.
        p = producer(b, **sasl("app-password"))
        records = [(f"k{i}".encode(), f"v{i}".encode(), None, None) for i in range(100)]
        assert produce_all(p, "orders", records) == []
        c = consumer(b, **sasl("app-password"), **{"group.id": "billing"})
        c.subscribe(["orders"])
        got = poll_until(c, lambda out: len(out) >= 100)
        assert sorted(m.value() for m in got) == sorted(v for _, v, _, _ in records)
        c.commit(asynchronous=False)
        c.close()
        # Metadata shows only what the user may touch.
        admin = AdminClient({"bootstrap.servers": kafka_of(b), **sasl("app-password")})
        assert set(admin.list_topics(timeout=10).topics) == {"orders"}

        # An ACL denial: TOPIC_AUTHORIZATION_FAILED for the topic, GROUP_... for the group.
        errors = produce_all(producer(b, **sasl("app-password"), **{"message.timeout.ms": 5000}),
                             "audit", [(None, b"x", None, None)])
        assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
        other = consumer(b, **sasl("app-password"), **{"group.id": "other"})
        other.subscribe(["orders"])
        with pytest.raises(KafkaException) as denied:
            poll_until(other, lambda out: False, limit_s=10)
        assert denied.value.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED
        other.close()

        # A wrong password: SASL_AUTHENTICATION_FAILED (librdkafka reports it through its
        # error callback, with the broker's reason), and nothing is produced.
        seen: list = []
        bad = producer(b, **sasl("wrong-password"),
                       **{"message.timeout.ms": 3000, "error_cb": seen.append})
        errors = produce_all(bad, "orders", [(None, b"never", None, None)])
        assert [e.code() for e in errors] == [KafkaError._MSG_TIMED_OUT]
        failed = [e for e in seen if e.code() == KafkaError._AUTHENTICATION]
        assert failed and "invalid" in failed[0].str().lower(), seen
        # Without SASL at all: the broker closes the connection; nothing is served.
        plain = AdminClient({"bootstrap.servers": kafka_of(b), "socket.timeout.ms": 3000})
        with pytest.raises(KafkaException):
            plain.list_topics(timeout=3)
        # The group's commits, made as `app`, are Weir's: both partitions caught up.
        rows = [r.split("\t") for r in b.cli(*root, "group", "describe", "billing").splitlines()[1:]]
        assert len(rows) == 2 and all(r[4] == "0" for r in rows), rows
    finally:
        b.stop()


def test_the_kafka_port_speaks_tls_with_the_brokers_certificate(tmp_path):
    from conftest import Broker
    from test_tls import make_certs
    c = make_certs(tmp_path)
    b = Broker(tmp_path / "data", "127.0.0.1:0", "--tls-cert", c["broker.pem"],
               "--tls-key", c["broker.key"], "--tls-client-ca", c["ca.pem"],
               "--auth", "--kafka-listen", "127.0.0.1:0")
    try:
        root = ("--tls-ca", c["ca.pem"], "--tls-cert", c["app.pem"], "--tls-key", c["app.key"],
                "--token", (tmp_path / "data" / "admin.token").read_text().strip())
        b.cli(*root, "topic", "create", "secure", "--partitions", "1")
        b.cli(*root, "user", "add", "app", "--password-stdin", stdin="app-password\n")
        b.cli(*root, "acl", "grant", "app", "write", "--topic", "secure")
        b.cli(*root, "acl", "grant", "app", "read", "--topic", "secure")
        b.cli(*root, "acl", "grant", "app", "read", "--group", "tls-readers")
        conf = {"security.protocol": "SASL_SSL", "ssl.ca.location": c["ca.pem"],
                "ssl.certificate.location": c["app.pem"], "ssl.key.location": c["app.key"],
                "sasl.mechanisms": "PLAIN", "sasl.username": "app", "sasl.password": "app-password"}
        assert produce_all(producer(b, **conf), "secure", [(b"k", b"over tls", None, None)]) == []
        reader = consumer(b, **conf, **{"group.id": "tls-readers"})
        got = read_assigned(reader, [TopicPartition("secure", 0, 0)], 1)
        reader.close()
        assert got[0].value() == b"over tls"
        # Without the CA the client cannot trust the broker; without a client certificate the
        # broker refuses the handshake; plain text gets nothing.
        for bad in (
            {**conf, "ssl.ca.location": None},
            {k: v for k, v in conf.items() if k not in ("ssl.certificate.location", "ssl.key.location")},
            {k: v for k, v in conf.items() if not k.startswith("ssl.")} | {"security.protocol": "SASL_PLAINTEXT"},
        ):
            bad = {k: v for k, v in bad.items() if v is not None}
            admin = AdminClient({"bootstrap.servers": kafka_of(b), "socket.timeout.ms": 3000, **bad})
            with pytest.raises(KafkaException):
                admin.list_topics(timeout=3)
    finally:
        b.stop()


def test_a_cluster_serves_kafka_clients_through_the_kill_of_a_partition_leader(tmp_path):
    import time
    from conftest import Cluster
    cluster = Cluster(tmp_path, 3, "--kafka-listen", "127.0.0.1:0")
    try:
        bootstrap = ",".join(kafka_of(b) for b in cluster.brokers)
        cluster.brokers[0].cli("topic", "create", "ha", "--partitions", "3",
                               "--replication-factor", "3")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        # Every member names every member's Kafka address, and each partition's leader.
        deadline = time.monotonic() + 20
        while True:
            md = admin.list_topics(timeout=10)
            if len(md.brokers) == 3 and "ha" in md.topics and all(
                    p.leader > 0 for p in md.topics["ha"].partitions.values()):
                break
            assert time.monotonic() < deadline, md.brokers
            time.sleep(0.2)
        assert sorted(b.port for b in md.brokers.values()) == sorted(
            int(kafka_of(b).rsplit(":", 1)[1]) for b in cluster.brokers)
        victim = md.topics["ha"].partitions[0].leader

        p = producer(type("B", (), {"kafka": bootstrap})(), **{"acks": "all", "message.timeout.ms": 60000})
        acked: list[bytes] = []

        def report(err, msg):
            if err is None:
                acked.append(msg.value())

        def produce(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                send(p, "ha", value=f"r{i}".encode(), key=f"k{i % 30}".encode(), on_delivery=report)

        group = Consumer({"bootstrap.servers": bootstrap, "group.id": "ha-readers",
                          "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                          "heartbeat.interval.ms": 500})
        group.subscribe(["ha"])
        seen: list = []
        produce(0, 2000)
        assert p.flush(60) == 0
        seen += group.consume(num_messages=5000, timeout=1.0)
        # The leader of partition 0 dies mid-stream.
        cluster.brokers[victim - 1].stop()
        produce(2000, 4000)
        assert p.flush(90) == 0
        assert sorted(acked) == sorted(f"r{i}".encode() for i in range(4000)), "every record acknowledged"

        # The group consumer reads every acknowledged record (its coordinator or its
        # partitions may have moved; it follows).
        deadline = time.monotonic() + 90
        while {m.value() for m in seen if not m.error()} != set(acked):
            assert time.monotonic() < deadline, len({m.value() for m in seen if not m.error()})
            seen += group.consume(num_messages=5000, timeout=0.5)
        group.close()

        # Each acknowledged record is stored once: the idempotent producer's retries to the
        # new leaders were not written twice.
        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "ha-check",
                           "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        ends = [reader.get_watermark_offsets(TopicPartition("ha", i), timeout=10)[1] for i in range(3)]
        assert sum(ends) == 4000, ends
        stored = read_assigned(reader, [TopicPartition("ha", i, 0) for i in range(3)], 4000, 90)
        reader.close()
        values = [m.value() for m in stored]
        assert len(values) == len(set(values)) == 4000
    finally:
        cluster.stop()


def test_an_idempotent_producer_rides_through_a_broker_kill_without_duplicates(tmp_path):
    """The broker is SIGKILLed and restarted on the same ports while a confluent-kafka
    idempotent producer keeps producing: every record is stored exactly once, in order per
    key (librdkafka retries what was in flight; the log's idempotence drops what it had)."""
    import time
    from conftest import Broker

    grpc, kafka = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    data = tmp_path / "data"
    b = Broker(data, grpc, "--kafka-listen", kafka)
    b.client().create_topic("ledger", partitions=3)
    p = Producer({"bootstrap.servers": kafka, "enable.idempotence": True, "acks": "all",
                  "partitioner": "murmur2_random", "linger.ms": 5, "message.timeout.ms": 120000,
                  "retry.backoff.ms": 100, "reconnect.backoff.max.ms": 500})
    failed: list = []

    def report(err, _msg):
        if err is not None:
            failed.append(err)

    n = 20_000
    killed = False
    try:
        for i in range(n):
            send(p, "ledger", value=f"{i}".encode(), key=f"k{i % 50}".encode(), on_delivery=report)
            if i == n // 2:
                b.proc.kill()  # SIGKILL, mid-stream
                b.proc.wait()
                killed = True
                time.sleep(0.5)
                b = Broker(data, grpc, "--kafka-listen", kafka)
        assert killed
        assert p.flush(120) == 0
        assert failed == []
        c = consumer(b)
        ends = [c.get_watermark_offsets(TopicPartition("ledger", i), timeout=10)[1] for i in range(3)]
        assert sum(ends) == n, ends  # nothing stored twice
        got = read_assigned(c, [TopicPartition("ledger", i, 0) for i in range(3)], n, 120)
        c.close()
        values = [int(m.value()) for m in got]
        assert sorted(values) == list(range(n))
        per_key: dict[bytes, list[int]] = {}
        for m in got:
            per_key.setdefault(m.key(), []).append(int(m.value()))
        for key, seq in per_key.items():
            assert seq == sorted(seq), key  # in order per key
    finally:
        b.stop()


def test_a_view_is_read_by_a_kafka_group_consumer_at_the_sources_offsets_and_resumes_after_a_restart(tmp_path):
    """A view with filter-contains, read by a confluent-kafka group consumer: exactly the
    matching records, at their offsets in the source; produce to the view is refused; after a
    SIGKILL and restart the view is there and the group resumes from its committed offsets."""
    import time
    from conftest import Broker, plugin_wasm

    grpc, kafka = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    data = tmp_path / "data"
    b = Broker(data, grpc, "--kafka-listen", kafka)
    try:
        b.cli("topic", "create", "logs", "--partitions", "3")
        b.cli("plugin", "register", "grep", plugin_wasm("filter-contains"))
        b.cli("view", "create", "errors", "--from", "logs", "--plugin", 'grep={"substring":"ERROR"}')

        def write(lo: int, hi: int) -> None:
            p = producer(b)
            # Every 7th record matches; the last 100 of each round do not (the view's reads
            # end in records its chain leaves out).
            assert produce_all(p, "logs", [
                (f"k{i % 11}".encode(),
                 f"{i} {'ERROR' if i % 7 == 0 and i < hi - 100 else 'INFO'}".encode(), [], None)
                for i in range(lo, hi)]) == []

        def source_matches(c: Consumer, since: dict[int, int]) -> set:
            """(partition, offset, value) of the source's matching records at or after `since`."""
            ends = {i: c.get_watermark_offsets(TopicPartition("logs", i), timeout=10)[1] for i in range(3)}
            n = sum(ends[i] - since.get(i, 0) for i in range(3))
            got = read_assigned(c, [TopicPartition("logs", i, since.get(i, 0)) for i in range(3)], n)
            return {(m.partition(), m.offset(), m.value()) for m in got if b"ERROR" in m.value()}

        write(0, 3000)
        checker = consumer(b)
        want = source_matches(checker, {})
        checker.close()
        assert len(want) == len([i for i in range(2900) if i % 7 == 0])

        # Kafka's metadata lists the view with its source's partitions.
        md = AdminClient({"bootstrap.servers": kafka}).list_topics(timeout=10)
        assert sorted(md.topics["errors"].partitions) == [0, 1, 2]

        group = consumer(b, **{"group.id": "alerts"})
        group.subscribe(["errors"])
        got = poll_until(group, lambda out: len(out) >= len(want))
        time.sleep(1.0)  # nothing more arrives
        got += group.consume(num_messages=1000, timeout=0.5)
        assert {(m.partition(), m.offset(), m.value()) for m in got} == want
        assert len(got) == len(want)
        group.commit(asynchronous=False)
        committed = group.committed([TopicPartition("errors", i) for i in range(3)], timeout=10)
        last = {p: max(o for (q, o, _) in want if q == p) for p in range(3)}
        assert all(tp.offset > last[tp.partition] for tp in committed), committed
        group.close()

        # Producing to a view is refused (not retried) with Kafka's INVALID_TOPIC_EXCEPTION.
        errors: list = []
        p = producer(b)
        p.produce("errors", value=b"x", on_delivery=lambda err, _m: errors.append(err))
        p.flush(30)
        assert [e.code() for e in errors] == [KafkaError.TOPIC_EXCEPTION], errors

        b.proc.kill()  # SIGKILL
        b.proc.wait()
        b = Broker(data, grpc, "--kafka-listen", kafka)
        assert b.cli("view", "list") == 'errors\tlogs\tgrep={"substring":"ERROR"}\n'
        ends = {}
        checker = consumer(b)
        for i in range(3):
            ends[i] = checker.get_watermark_offsets(TopicPartition("logs", i), timeout=10)[1]
        write(3000, 4000)
        fresh = source_matches(checker, ends)
        checker.close()
        assert len(fresh) == len([i for i in range(3000, 3900) if i % 7 == 0])

        # The group resumes from its committed offsets: only what came after.
        group = consumer(b, **{"group.id": "alerts"})
        group.subscribe(["errors"])
        again = poll_until(group, lambda out: len(out) >= len(fresh))
        time.sleep(1.0)
        again += group.consume(num_messages=1000, timeout=0.5)
        group.close()
        assert {(m.partition(), m.offset(), m.value()) for m in again} == fresh
        assert len(again) == len(fresh)
    finally:
        b.stop()
