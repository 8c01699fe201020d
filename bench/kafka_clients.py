"""Kafka clients against a Kafka-protocol port (Weir's --kafka-listen): confluent-kafka
(librdkafka) produces N records of B bytes to one partition, tuned as a Kafka user would
(linger.ms=5, batch.size=1 MiB, acks=all, idempotent; after one warm-up record), then
consumes them back (N + 1 records). Prints one
JSON line per phase, as `weir bench --json` does:

    {"phase": "produce", "records_per_sec": ..., "p50_ms": ..., "p99_ms": ...}
    {"phase": "consume", "records_per_sec": ..., "p50_ms": ..., "p99_ms": ...}

Produce latency is a record's, from produce() to its delivery report (one record in 64
timed). Consume latency is
each consume() call's (a batch of up to 10 000 records), the time the application waits for
records that are already there.

    python bench/kafka_clients.py --bootstrap 127.0.0.1:9092 --topic bench --records 1000000
"""

import argparse
import json
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition


# One record in this many gets a timed delivery report.
LATENCY_SAMPLE = 64


def percentiles(samples: list[float]) -> tuple[float, float]:
    if not samples:
        return 0.0, 0.0
    s = sorted(samples)
    return s[len(s) // 2] * 1000, s[min(len(s) - 1, int(len(s) * 0.99))] * 1000


def produce(bootstrap: str, topic: str, records: int, size: int) -> dict:
    p = Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "batch.size": 1 << 20,
        "acks": "all",
        "enable.idempotence": True,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1 << 20,
    })
    value = b"x" * size
    latencies: list[float] = []
    errors: list = []

    def report(err, _msg, sent):
        if err is not None:
            errors.append(err)
        else:
            latencies.append(time.perf_counter() - sent)

    # Warm up: an idempotent librdkafka producer gets its producer id about 0.5 s after it
    # starts (its PID timer), once; a long-running producer never sees it again.
    p.produce(topic, value, partition=0)
    p.flush(30)
    start = time.perf_counter()
    for i in range(records):
        # Every LATENCY_SAMPLE-th record is timed (a callback on each would cost the Python
        # side more than the produce itself); the rest are sent without one.
        callback = None
        if i % LATENCY_SAMPLE == 0:
            sent = time.perf_counter()
            callback = lambda err, msg, sent=sent: report(err, msg, sent)  # noqa: E731
        while True:
            try:
                # partition 0: one partition, as the other rows of the table.
                p.produce(topic, value, partition=0, on_delivery=callback)
                break
            except BufferError:
                p.poll(0.001)
        # Serve delivery reports as an application does (else a report waits for the queue to
        # fill or for flush, and the latency measured is the wait for poll()).
        if i % 1000 == 0:
            p.poll(0)
    if p.flush(120) != 0 or errors:
        raise SystemExit(f"produce failed: {errors[:3]}")
    took = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    return {"phase": "produce", "records_per_sec": records / took, "p50_ms": p50, "p99_ms": p99}


def consume(bootstrap: str, topic: str, records: int) -> dict:
    records += 1  # the warm-up record
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "bench-kafka-clients",
        "enable.auto.commit": False,
        "fetch.max.bytes": 32 << 20,
        "max.partition.fetch.bytes": 8 << 20,
        "queued.max.messages.kbytes": 256 << 10,
        # librdkafka stops fetching for fetch.queue.backoff.ms (1 s) once its queue holds
        # queued.min.messages (100 000): with 8 MiB fetches (~90 000 records) that is every
        # other fetch, and consumption crawls. A Kafka user tuning for throughput raises it.
        "queued.min.messages": 1_000_000,
    })
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    waits: list[float] = []
    # Timed from the moment the first records arrive, as librdkafka's rdkafka_performance
    # times it: joining, the first metadata and the start offset happen once per consumer
    # (librdkafka retries the start offset after 500 ms when it is assigned before it knows
    # the leader). The first batch is left out of the count.
    start = None
    first = -1
    while got < records:
        t = time.perf_counter()
        # consume() waits until it has num_messages or the timeout passed: never ask for
        # more than are left.
        batch = c.consume(num_messages=min(10_000, records - got), timeout=1.0)
        if start is None:
            if not batch:
                continue
            start = time.perf_counter()
        else:
            waits.append(time.perf_counter() - t)
        for m in batch:
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(m.error())
            got += 1
        if first < 0:
            first = got  # the records of the first batch
    took = time.perf_counter() - start
    c.close()
    p50, p99 = percentiles(waits)
    return {"phase": "consume", "records_per_sec": (got - first) / took, "p50_ms": p50,
            "p99_ms": p99}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--record-size", type=int, default=100)
    a = ap.parse_args()
    print(json.dumps(produce(a.bootstrap, a.topic, a.records, a.record_size)), flush=True)
    print(json.dumps(consume(a.bootstrap, a.topic, a.records)), flush=True)


if __name__ == "__main__":
    main()
