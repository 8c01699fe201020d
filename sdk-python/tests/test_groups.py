"""Consumer groups from Python: members of one group split the partitions (each record to one
member), other groups get everything, commits resume a group where it left off."""

import threading
import time

import weir


def produce(client: weir.Client, topic: str, values: range) -> None:
    with client.producer() as p:
        for i in values:
            p.send(topic, str(i).encode(), key=f"k{i}".encode())


class Reader:
    """Iterates a consumer on its own thread (one consumer per thread) until it goes idle."""

    def __init__(self, consumer: weir.Consumer):
        self.consumer = consumer
        self.records: list[weir.Record] = []
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        with self.consumer:
            for r in self.consumer:
                self.records.append(r)
                self.assignment = self.consumer.assignment()

    def join(self) -> list[weir.Record]:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the consumer never went idle"
        return self.records


def wait_until(what: str, done, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_members_split_the_partitions_and_another_group_gets_everything(broker):
    client = broker.client()
    client.create_topic("orders", partitions=4)
    produce(client, "orders", range(0, 2000))

    # a joins alone and reads everything; b joins while a is busy: a rebalance.
    a = Reader(client.consumer("orders", group="billing", idle_timeout_ms=3000))
    wait_until("a to read", lambda: len(a.records) > 0)
    b = Reader(client.consumer("orders", group="billing", idle_timeout_ms=3000))
    wait_until("two members with two partitions each",
               lambda: sorted(map(len, broker.group_owners("billing").values())) == [2, 2])
    produce(client, "orders", range(2000, 4000))
    ra, rb = a.join(), b.join()

    # Every record exactly once across the two members.
    seen = [(r.partition, r.offset) for r in ra + rb]
    assert len(seen) == len(set(seen)) == 4000
    assert sorted(int(r.value) for r in ra + rb) == list(range(4000))
    # After the rebalance they own disjoint halves, and b only ever read its own.
    assert len(a.assignment) == len(b.assignment) == 2
    assert not set(a.assignment) & set(b.assignment)
    assert {r.partition for r in rb} <= set(b.assignment)
    assert rb, "b got no records"

    # Both closed after committing: lag 0 everywhere, nobody owns anything.
    rows = [row.split("\t") for row in broker.cli("group", "describe", "billing").splitlines()[1:]]
    assert len(rows) == 4
    assert all(lag == "0" and member == "-" for *_, lag, member in rows), rows

    # Another group gets every record again (pub/sub).
    audit = list(client.consumer("orders", group="audit", idle_timeout_ms=1000))
    assert sorted(int(r.value) for r in audit) == list(range(4000))


def test_a_group_resumes_from_its_commits(broker):
    client = broker.client()
    client.create_topic("t", partitions=2)
    produce(client, "t", range(100))
    c = client.consumer("t", group="g", auto_commit=False, idle_timeout_ms=1000)
    first = [next(c) for _ in range(30)]
    c.commit()
    c.close()
    rest = list(client.consumer("t", group="g", idle_timeout_ms=1000))
    # Nothing committed is read again; nothing is skipped.
    assert sorted(int(r.value) for r in first + rest) == list(range(100))
