/*
 * librdkafka itself, without Python, against a Kafka-protocol port (Weir's --kafka-listen):
 * the same workload as bench/kafka_clients.py (N records of B bytes to partition 0,
 * linger.ms=5, batch.size=1 MiB, acks=all, idempotent, after one warm-up record; then
 * consumed back), driven the way librdkafka's own rdkafka_performance drives it. It shows
 * how much of the confluent-kafka numbers is the Python client's own cost per record.
 * Prints one JSON line per phase, as kafka_clients.py does.
 *
 *   gcc -O2 -o kafka_perf bench/kafka_perf.c -lrdkafka     (Debian: librdkafka-dev)
 *   ./kafka_perf 127.0.0.1:9092 bench 1000000 100
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One record in this many gets a timed delivery report, as in kafka_clients.py. */
#define LATENCY_SAMPLE 64
/* Records one consume call asks for, as kafka_clients.py's consume(num_messages=...). */
#define CONSUME_BATCH 10000

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double *samples;
static size_t nsamples;
static long failed;

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    if (m->err) {
        if (failed++ < 3)
            fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(m->err));
        return;
    }
    if (m->_private) {
        double *sent = m->_private;
        samples[nsamples++] = now() - *sent;
        free(sent);
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *phase, double rate, double *s, size_t n) {
    double p50 = 0, p99 = 0;
    if (n) {
        qsort(s, n, sizeof *s, cmp);
        p50 = s[n / 2] * 1000;
        p99 = s[n * 99 / 100 < n ? n * 99 / 100 : n - 1] * 1000;
    }
    printf("{\"phase\": \"%s\", \"records_per_sec\": %.0f, \"p50_ms\": %.3f, \"p99_ms\": %.3f}\n",
           phase, rate, p50, p99);
    fflush(stdout);
}

static void set(rd_kafka_conf_t *conf, const char *k, const char *v) {
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "%s: %s\n", k, err);
        exit(2);
    }
}

static void produce(const char *bootstrap, const char *topic, long n, size_t size) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    set(conf, "linger.ms", "5");
    set(conf, "batch.size", "1048576");
    set(conf, "acks", "all");
    set(conf, "enable.idempotence", "true");
    set(conf, "queue.buffering.max.messages", "1000000");
    set(conf, "queue.buffering.max.kbytes", "1048576");
    rd_kafka_conf_set_dr_msg_cb(conf, delivered);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!p) {
        fprintf(stderr, "producer: %s\n", err);
        exit(1);
    }
    rd_kafka_topic_t *t = rd_kafka_topic_new(p, topic, NULL);
    char *value = malloc(size);
    memset(value, 'x', size);
    samples = calloc(n / LATENCY_SAMPLE + 2, sizeof *samples);
    /* Warm up: the idempotent producer gets its producer id once. */
    rd_kafka_produce(t, 0, RD_KAFKA_MSG_F_COPY, value, size, NULL, 0, NULL);
    rd_kafka_flush(p, 30000);
    nsamples = 0;
    double start = now();
    for (long i = 0; i < n; i++) {
        double *sent = NULL;
        if (i % LATENCY_SAMPLE == 0) {
            sent = malloc(sizeof *sent);
            *sent = now();
        }
        while (rd_kafka_produce(t, 0, RD_KAFKA_MSG_F_COPY, value, size, NULL, 0, sent) == -1) {
            if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                fprintf(stderr, "produce: %s\n", rd_kafka_err2str(rd_kafka_last_error()));
                exit(1);
            }
            rd_kafka_poll(p, 1);
        }
        if (i % 1000 == 0)
            rd_kafka_poll(p, 0);
    }
    if (rd_kafka_flush(p, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR || failed) {
        fprintf(stderr, "produce failed (%ld delivery errors)\n", failed);
        exit(1);
    }
    double took = now() - start;
    report("produce", n / took, samples, nsamples);
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(p);
    free(value);
    free(samples);
}

static void consume(const char *bootstrap, const char *topic, long n) {
    char err[512];
    n += 1; /* the warm-up record */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", bootstrap);
    set(conf, "group.id", "bench-kafka-perf");
    set(conf, "enable.auto.commit", "false");
    set(conf, "fetch.max.bytes", "33554432");
    set(conf, "max.partition.fetch.bytes", "8388608");
    set(conf, "queued.max.messages.kbytes", "262144");
    set(conf, "queued.min.messages", "1000000");
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!c) {
        fprintf(stderr, "consumer: %s\n", err);
        exit(1);
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(c);
    rd_kafka_message_t **msgs = calloc(CONSUME_BATCH, sizeof *msgs);
    size_t cap = n / 100 + 16;
    double *waits = calloc(cap, sizeof *waits);
    size_t nwaits = 0;
    long got = 0;
    /* Timed from the moment the first records arrive, as rdkafka_performance times it:
     * joining, the first metadata and the start offset happen once per consumer (librdkafka
     * retries the start offset after 500 ms when it is assigned before it knows the
     * leader), and the first batch is left out of the count. */
    double start = 0;
    long first = -1;
    while (got < n) {
        double t = now();
        size_t want = n - got < CONSUME_BATCH ? n - got : CONSUME_BATCH;
        ssize_t k = rd_kafka_consume_batch_queue(q, 1000, msgs, want);
        if (k < 0) {
            fprintf(stderr, "consume: %s\n", rd_kafka_err2str(rd_kafka_last_error()));
            exit(1);
        }
        if (start == 0) {
            if (k == 0)
                continue;
            start = now();
        } else if (nwaits < cap) {
            waits[nwaits++] = now() - t;
        }
        for (ssize_t i = 0; i < k; i++) {
            if (msgs[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR)
                got++;
            else if (msgs[i]->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                fprintf(stderr, "consume: %s\n", rd_kafka_message_errstr(msgs[i]));
                exit(1);
            }
            rd_kafka_message_destroy(msgs[i]);
        }
        if (first < 0)
            first = got; /* the records of the first batch */
    }
    double took = now() - start;
    report("consume", (got - first) / took, waits, nwaits);
    rd_kafka_queue_destroy(q);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    free(msgs);
    free(waits);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s BOOTSTRAP TOPIC RECORDS RECORD_SIZE\n", argv[0]);
        return 2;
    }
    long n = atol(argv[3]);
    size_t size = (size_t)atol(argv[4]);
    produce(argv[1], argv[2], n, size);
    consume(argv[1], argv[2], n);
    return 0;
}
