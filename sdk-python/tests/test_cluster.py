"""The Python SDK against a 3-broker cluster: replicated topics, leaders routed to, and a
leader (also the controller, and the client's bootstrap broker) killed with SIGKILL while a
producer and a consumer use it."""

import pytest

import weir


def test_clients_ride_through_the_failover_of_a_partition_leader(cluster):
    # Node 1 is the bootstrap broker, leads partition 0, is the controller, and dies.
    client = weir.Client(cluster.bootstrap(first=1))
    client.create_topic("orders", partitions=2, replication_factor=3, min_insync_replicas=2)
    with pytest.raises(weir.InvalidArgument, match="min-insync-replicas must be between 1 and"):
        client.create_topic("nope", replication_factor=2, min_insync_replicas=3)
    rows = cluster.brokers[1].cli("topic", "describe", "orders").splitlines()
    placement = {int(r.split("\t")[0]): r.split("\t")[3:] for r in rows}
    assert placement[0][0] == "1" and placement[0][1:] == ["1,2,3", "1,2,3"], placement
    consumer = client.consumer("orders", start="earliest", idle_timeout_ms=20_000)
    want = {f"o{i}".encode() for i in range(600)}
    with client.producer() as p:  # acks=all: every in-sync replica has each acknowledged record
        for i in range(300):
            p.send("orders", f"o{i}".encode(), key=f"k{i}".encode())
        p.flush()
        cluster.brokers[0].stop()
        for i in range(300, 600):
            p.send("orders", f"o{i}".encode(), key=f"k{i}".encode())
    seen = []
    for rec in consumer:
        seen.append(rec.value)
        if len(seen) == len(want):
            break
    assert len(seen) == len(want) and set(seen) == want, "every record once"

    # The same client, its bootstrap broker gone, still administers, produces and consumes
    # through the others.
    assert client.addr in (cluster.brokers[1].addr, cluster.brokers[2].addr)
    rows = cluster.brokers[1].cli("topic", "describe", "orders").splitlines()
    assert rows[0].split("\t")[3] in ("2", "3"), rows
    with client.producer() as p:
        p.send("orders", b"after", key=b"k0")
    values = [r.value for r in client.consumer("orders", start="earliest", idle_timeout_ms=2000)]
    assert len(values) == 601 and set(values) == want | {b"after"}
    assert "orders" in client.list_topics()
