//! The Kafka listener (`--kafka-listen`) against a real Kafka client no one here wrote: kcat
//! (librdkafka), Debian's package. Metadata, produce with every codec and idempotence,
//! consume, offsets by time, records crossing between the Kafka and Weir protocols, and
//! malformed frames on the Kafka port.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::Duration;

use futures::StreamExt;
use weir::{ConsumerConfig, ProducerConfig, ProducerRecord, StartFrom, partition_for_key};
use weir_e2e::Broker;

fn kafka_broker() -> Broker {
    Broker::start_with(&["--kafka-listen", "127.0.0.1:0"])
}

/// Runs kcat against the broker's Kafka port, feeding `stdin`; fails the test on a non-zero
/// exit.
fn kcat(broker: &Broker, args: &[&str], stdin: &[u8]) -> String {
    let out = kcat_output(broker, args, stdin);
    assert!(
        out.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kcat prints UTF-8 here")
}

fn kcat_output(broker: &Broker, args: &[&str], stdin: &[u8]) -> Output {
    let kafka = broker
        .kafka
        .as_deref()
        .expect("started with --kafka-listen");
    let mut cmd = Command::new("kcat");
    cmd.args(["-b", kafka, "-X", "socket.timeout.ms=10000", "-m", "20"])
        .args(args);
    weir_e2e::run_with_stdin(cmd, stdin, &format!("kcat {}", args.join(" ")))
}

/// `partition offset key value` lines of everything in `topic`, as kcat reads it.
fn consume_all(broker: &Broker, topic: &str) -> Vec<(u32, u64, String, String)> {
    let out = kcat(
        broker,
        &["-C", "-t", topic, "-e", "-q", "-f", "%p %o %k %s\n"],
        b"",
    );
    let mut records: Vec<_> = out
        .lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let p = f.next().unwrap().parse().unwrap();
            let o = f.next().unwrap().parse().unwrap();
            (
                p,
                o,
                f.next().unwrap().to_string(),
                f.next().unwrap_or("").to_string(),
            )
        })
        .collect();
    records.sort();
    records
}

#[test]
fn kcat_lists_produces_and_consumes_with_weir_partitioning() {
    let broker = kafka_broker();
    broker.cli_ok(&["topic", "create", "events", "--partitions", "3"]);
    broker.cli_ok(&["topic", "create", "other", "--partitions", "1"]);

    let meta = kcat(&broker, &["-L", "-J"], b"");
    let meta: serde_json::Value = serde_json::from_str(&meta).expect("kcat -L -J prints JSON");
    let kafka = broker.kafka.clone().unwrap();
    let brokers = meta["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1);
    assert_eq!(brokers[0]["name"].as_str().unwrap(), kafka);
    assert_eq!(brokers[0]["id"].as_i64(), Some(0));
    let topics: HashMap<&str, usize> = meta["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["topic"].as_str().unwrap(),
                t["partitions"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(topics, HashMap::from([("events", 3), ("other", 1)]));

    // Keyed records through librdkafka's murmur2 partitioner land where Weir's would.
    let input: String = (0..300)
        .map(|i| format!("key-{}:value-{i}\n", i % 17))
        .collect();
    kcat(
        &broker,
        &[
            "-P",
            "-t",
            "events",
            "-K:",
            "-X",
            "partitioner=murmur2_random",
        ],
        input.as_bytes(),
    );
    let records = consume_all(&broker, "events");
    assert_eq!(records.len(), 300);
    let mut next: HashMap<u32, u64> = HashMap::new();
    let mut by_partition: HashMap<u32, Vec<usize>> = HashMap::new();
    for (p, o, k, v) in &records {
        assert_eq!(
            *p,
            partition_for_key(k.as_bytes(), 3),
            "{k} in partition {p}"
        );
        let expected = next.entry(*p).or_default();
        assert_eq!(*o, *expected, "offsets are dense in partition {p}");
        *expected += 1;
        let i: usize = v.strip_prefix("value-").unwrap().parse().unwrap();
        assert_eq!(k, &format!("key-{}", i % 17));
        by_partition.entry(*p).or_default().push(i);
    }
    // In each partition, in the order they were sent.
    for values in by_partition.values() {
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
    }

    // A missing topic is an error, not a new topic.
    let out = kcat_output(
        &broker,
        &["-P", "-t", "missing", "-X", "message.timeout.ms=2000"],
        b"x\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Delivery failed"));
    assert!(!broker.cli_ok(&["topic", "list"]).contains("missing"));
}

#[test]
fn every_codec_and_idempotence_round_trip_and_cross_to_the_weir_protocol() {
    let broker = kafka_broker();
    broker.cli_ok(&["topic", "create", "codecs", "--partitions", "1"]);
    let mut sent = Vec::new();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let input: String = (0..2000)
            .map(|i| format!("{codec}-{i} {}\n", "payload ".repeat(i % 20)))
            .collect();
        kcat(
            &broker,
            &[
                "-P",
                "-t",
                "codecs",
                "-z",
                codec,
                "-X",
                "enable.idempotence=true",
                "-H",
                "origin=kcat",
            ],
            input.as_bytes(),
        );
        sent.extend(input.lines().map(str::to_string));
    }
    let records = consume_all(&broker, "codecs");
    let values: Vec<String> = records.into_iter().map(|r| r.3).collect();
    assert_eq!(
        values, sent,
        "every record once, in order, whatever its codec"
    );

    // The same records through Weir's own protocol, headers included; and a record
    // produced through Weir read by kcat.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = broker.client().await;
        let mut consumer = client
            .consumer(
                "codecs",
                ConsumerConfig::default().start(StartFrom::Earliest),
            )
            .await
            .unwrap();
        for (i, want) in sent.iter().enumerate() {
            let r = tokio::time::timeout(Duration::from_secs(20), consumer.next())
                .await
                .expect("records arrive")
                .unwrap()
                .unwrap();
            assert_eq!(r.offset, i as u64);
            assert_eq!(String::from_utf8_lossy(&r.value), *want);
            assert_eq!(r.headers.len(), 1);
            assert_eq!(r.headers[0].key, "origin");
            assert_eq!(&r.headers[0].value[..], b"kcat");
        }
        let producer = client.producer(ProducerConfig::default());
        producer
            .send(
                ProducerRecord::new("codecs", "from weir")
                    .key("wk")
                    .header("via", "grpc"),
            )
            .await
            .unwrap();
        producer.flush().await.unwrap();
    });
    let last = kcat(
        &broker,
        &[
            "-C",
            "-t",
            "codecs",
            "-o",
            "-1",
            "-e",
            "-q",
            "-f",
            "%o %k %s %h\n",
        ],
        b"",
    );
    assert_eq!(last.trim(), format!("{} wk from weir via=grpc", sent.len()));
}

#[test]
fn consumers_start_at_a_timestamp_an_offset_or_the_end() {
    let broker = kafka_broker();
    broker.cli_ok(&["topic", "create", "timed", "--partitions", "1"]);
    // kcat -P takes a timestamp per message only through -T..., so records go in through
    // Weir with chosen timestamps, and kcat looks them up (ListOffsets by time).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = broker.client().await;
        let producer = client.producer(ProducerConfig::default());
        for i in 0..10i64 {
            producer
                .send(ProducerRecord::new("timed", format!("r{i}")).timestamp(1_000_000 + i * 1000))
                .await
                .unwrap();
        }
        producer.flush().await.unwrap();
    });
    let from = |spec: &str| {
        kcat(
            &broker,
            &["-C", "-t", "timed", "-o", spec, "-e", "-q", "-f", "%o:%T\n"],
            b"",
        )
        .lines()
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    // The first record at or after the time asked for.
    assert_eq!(
        from("s@1004500").first().map(String::as_str),
        Some("5:1005000")
    );
    assert_eq!(from("s@1004500").len(), 5);
    assert_eq!(from("s@1000000").len(), 10);
    assert_eq!(from("s@1009000"), vec!["9:1009000"]);
    // Past the last record: nothing (Kafka answers offset -1, and the consumer starts at
    // the end).
    assert!(from("s@2000000").is_empty());
    assert_eq!(from("7").len(), 3);
    assert_eq!(from("beginning").len(), 10);
    assert!(from("end").is_empty());
}

#[test]
fn kcat_group_consumers_commit_and_resume_where_the_group_left_off() {
    let broker = kafka_broker();
    broker.cli_ok(&["topic", "create", "jobs", "--partitions", "3"]);
    let input: String = (0..900).map(|i| format!("k{i}:job-{i}\n")).collect();
    kcat(&broker, &["-P", "-t", "jobs", "-K:"], input.as_bytes());
    let group_read = |broker: &Broker| -> Vec<String> {
        let out = kcat(
            broker,
            &[
                "-G",
                "workers",
                "-X",
                "auto.offset.reset=earliest",
                "-e",
                "-q",
                "-f",
                "%s\n",
                "jobs",
            ],
            b"",
        );
        out.lines().map(str::to_string).collect()
    };
    let mut first = group_read(&broker);
    first.sort();
    let mut want: Vec<String> = (0..900).map(|i| format!("job-{i}")).collect();
    want.sort();
    assert_eq!(first, want);
    // kcat committed as it left: Weir shows the group's offsets, all caught up.
    let described = broker.cli_ok(&["group", "describe", "workers"]);
    let rows: Vec<Vec<&str>> = described
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{described}");
    assert!(
        rows.iter().all(|r| r[2] == r[3] && r[4] == "0"),
        "{described}"
    );
    // The group resumes where it left off: only what was produced since.
    kcat(
        &broker,
        &["-P", "-t", "jobs", "-K:"],
        b"a:late-1\nb:late-2\n",
    );
    let mut second = group_read(&broker);
    second.sort();
    assert_eq!(second, vec!["late-1", "late-2"]);
}

#[test]
fn kafka_requests_are_counted_by_api_and_error() {
    let metrics = format!("127.0.0.1:{}", weir_e2e::free_port());
    let broker = Broker::start_with(&[
        "--kafka-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        &metrics,
    ]);
    broker.cli_ok(&["topic", "create", "m", "--partitions", "1"]);
    kcat(&broker, &["-P", "-t", "m"], b"one\ntwo\n");
    kcat(&broker, &["-C", "-t", "m", "-e", "-q"], b"");
    let mut c = connect(&broker);
    c.write_all(&request(26, 0, 1, &[])).unwrap();
    response(&mut c);
    let scrape = weir_e2e::metrics::scrape(&metrics);
    let count = |api: &str, error: &str| {
        scrape
            .sum(
                "weir_kafka_requests_total",
                &[("api", api), ("error", error)],
            )
            .unwrap_or(0.0)
    };
    assert!(count("Metadata", "NONE") >= 2.0);
    assert!(count("Produce", "NONE") >= 1.0);
    assert!(count("Fetch", "NONE") >= 1.0);
    assert!(count("ApiVersions", "NONE") >= 2.0);
    assert_eq!(count("other", "UNSUPPORTED_VERSION"), 1.0);
    assert!(
        scrape
            .sum("weir_kafka_request_seconds_count", &[("api", "Fetch")])
            .unwrap_or(0.0)
            >= 1.0
    );
    // The records count with gRPC's, per topic.
    assert_eq!(
        scrape.sum("weir_topic_records_in_total", &[("topic", "m")]),
        Some(2.0)
    );
}

/// One raw request: `size, api key, version, correlation id, client id (null)`, then `body`.
fn request(key: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&key.to_be_bytes());
    r.extend_from_slice(&version.to_be_bytes());
    r.extend_from_slice(&correlation.to_be_bytes());
    r.extend_from_slice(&(-1i16).to_be_bytes());
    r.extend_from_slice(body);
    let mut framed = (r.len() as i32).to_be_bytes().to_vec();
    framed.extend(r);
    framed
}

/// Reads one response frame.
fn response(conn: &mut TcpStream) -> Vec<u8> {
    let mut size = [0u8; 4];
    conn.read_exact(&mut size).expect("a response");
    let mut body = vec![0; i32::from_be_bytes(size) as usize];
    conn.read_exact(&mut body).expect("the whole response");
    body
}

fn connect(broker: &Broker) -> TcpStream {
    let c = TcpStream::connect(broker.kafka.as_deref().unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// Whether the broker closed `conn` (EOF, or a reset).
fn closed(conn: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(conn.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn malformed_frames_close_their_connection_and_unknown_versions_are_answered() {
    let broker = kafka_broker();
    broker.cli_ok(&["topic", "create", "t", "--partitions", "1"]);
    let mut bystander = connect(&broker);

    // ApiVersions at a version from the future: v0's answer, UNSUPPORTED_VERSION (35) and
    // the versions served (KIP-511).
    let mut c = connect(&broker);
    c.write_all(&request(18, 99, 7, &[])).unwrap();
    let r = response(&mut c);
    assert_eq!(&r[..4], &7i32.to_be_bytes());
    assert_eq!(&r[4..6], &35i16.to_be_bytes());
    let n = i32::from_be_bytes(r[6..10].try_into().unwrap());
    assert!(n >= 6, "{n} APIs listed");
    // An API that is not served (EndTxn, 26) and one that does not exist: the same error,
    // and the connection stays usable.
    c.write_all(&request(26, 0, 8, &[])).unwrap();
    assert_eq!(
        response(&mut c),
        [&8i32.to_be_bytes()[..], &35i16.to_be_bytes()].concat()
    );
    c.write_all(&request(999, 0, 9, &[])).unwrap();
    assert_eq!(
        response(&mut c),
        [&9i32.to_be_bytes()[..], &35i16.to_be_bytes()].concat()
    );
    // Produce v2 is advertised (for librdkafka) but not served.
    c.write_all(&request(0, 2, 10, &[])).unwrap();
    assert_eq!(&response(&mut c)[4..6], &35i16.to_be_bytes());

    // Garbage where a Metadata body should be: closed.
    c.write_all(&request(3, 9, 11, &[0xff; 3])).unwrap();
    assert!(closed(&mut c));
    // A size past the limit, a negative size, a size too small for a header: closed.
    for size in [i32::MAX, -5, 3] {
        let mut c = connect(&broker);
        c.write_all(&size.to_be_bytes()).unwrap();
        c.write_all(&[0; 8]).unwrap();
        assert!(closed(&mut c), "size {size}");
    }
    // A frame cut off mid-way, then the client goes away.
    let mut c = connect(&broker);
    c.write_all(&100i32.to_be_bytes()).unwrap();
    c.write_all(&[0, 3, 0, 9]).unwrap();
    drop(c);

    // Everyone else is served: the bystander's connection and new clients.
    bystander
        .write_all(&request(18, 3, 1, &[0, 1, 1, 0]))
        .unwrap();
    let r = response(&mut bystander);
    assert_eq!(&r[..4], &1i32.to_be_bytes());
    assert_eq!(&r[4..6], &0i16.to_be_bytes());
    kcat(&broker, &["-P", "-t", "t"], b"still here\n");
    assert_eq!(consume_all(&broker, "t")[0].3, "still here");
}

#[test]
fn bad_kafka_flags_are_refused_at_start() {
    let mut broker = Broker::start();
    broker.kill9();
    for (args, reason) in [
        (
            vec!["--kafka-listen", "127.0.0.1:0", "--kafka-advertise", "nope"],
            "--kafka-advertise must be HOST:PORT",
        ),
        (
            vec!["--kafka-advertise", "host:9092"],
            "--kafka-advertise needs --kafka-listen",
        ),
        (
            vec!["--kafka-listen", "not an address"],
            "cannot serve the Kafka protocol",
        ),
    ] {
        let out = Command::new(weir_e2e::bin("weir-broker"))
            .args(["--data-dir"])
            .arg(broker.data_dir())
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(reason), "{err}");
    }
}
