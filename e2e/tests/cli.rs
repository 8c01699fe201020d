//! The `weir` CLI against a real broker: topic admin, produce, consume, errors.

use weir_e2e::{Broker, lines};

#[test]
fn topic_admin_lists_describes_and_deletes() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "orders", "--partitions", "3"]);
    broker.cli_ok(&["topic", "create", "audit"]);
    assert_eq!(
        lines(&broker.cli_ok(&["topic", "list"])),
        vec!["audit\t1", "orders\t3"]
    );
    assert_eq!(
        lines(&broker.cli_ok(&["topic", "describe", "orders"])),
        vec!["0\t0\t0", "1\t0\t0", "2\t0\t0"]
    );
    broker.cli_ok(&["topic", "delete", "audit"]);
    assert_eq!(lines(&broker.cli_ok(&["topic", "list"])), vec!["orders\t3"]);
}

#[test]
fn produce_and_consume_thousands_of_keyed_lines() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "events", "--partitions", "3"]);
    let mut input = String::new();
    for i in 0..3_000 {
        input.push_str(&format!("user{}|événement {i} ✓\n", i % 13));
    }
    let out = broker.cli_with_stdin(
        &[
            "produce",
            "events",
            "--key-separator",
            "|",
            "--header",
            "src=cli",
        ],
        input.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "produced 3000 records"
    );

    let json = broker.cli_ok(&[
        "consume",
        "events",
        "--format",
        "json",
        "--max",
        "3000",
        "--idle-timeout",
        "10000",
    ]);
    let records: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3_000);
    let mut key_partition = std::collections::HashMap::new();
    let mut values = std::collections::HashSet::new();
    for r in &records {
        assert_eq!(r["topic"], "events");
        assert_eq!(r["headers"]["src"], "cli");
        assert!(r["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        let key = r["key"].as_str().unwrap().to_string();
        let p = r["partition"].as_u64().unwrap() as u32;
        // Same key → same partition, and the partition the SDK's hash picks.
        assert_eq!(*key_partition.entry(key.clone()).or_insert(p), p);
        assert_eq!(p, weir::partition_for_key(key.as_bytes(), 3));
        values.insert(r["value"].as_str().unwrap().to_string());
    }
    assert_eq!(values.len(), 3_000);
    assert!(values.contains("événement 2999 ✓"));

    // Value format, one partition, from an offset.
    let p0: Vec<_> = records.iter().filter(|r| r["partition"] == 0).collect();
    let out = broker.cli_ok(&[
        "consume",
        "events",
        "--partition",
        "0",
        "--from",
        "5",
        "--max",
        "2",
    ]);
    let want: Vec<String> = p0[5..7]
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines(&out), want);
    // --idle-timeout stops a follower that has read everything.
    let out = broker.cli_ok(&[
        "consume",
        "events",
        "--from",
        "latest",
        "--idle-timeout",
        "300",
    ]);
    assert_eq!(out, "");
}

#[test]
fn binary_values_come_out_as_base64_in_json() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "bin"]);
    let out = broker.cli_with_stdin(
        &["produce", "bin", "--key-separator", "="],
        b"k\xff=v\xfe\xff\nplain\n",
    );
    assert!(out.status.success());
    let json = broker.cli_ok(&["consume", "bin", "--format", "json", "--max", "2"]);
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows[0]["key"], "a/8=");
    assert_eq!(rows[0]["key_encoding"], "base64");
    assert_eq!(rows[0]["value"], "dv7/");
    assert_eq!(rows[0]["value_encoding"], "base64");
    assert_eq!(rows[1]["key"], serde_json::Value::Null);
    assert_eq!(rows[1]["value"], "plain");
    assert!(rows[1].get("value_encoding").is_none());
}

#[test]
fn bad_input_prints_one_error_line_and_exits_non_zero() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "t", "--partitions", "2"]);
    broker.cli_with_stdin(&["produce", "t"], b"a\nb\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["topic", "create", "t"], "already exists"),
        (vec!["topic", "create", "bad/name"], "[A-Za-z0-9._-]"),
        (
            vec!["topic", "create", "z", "--partitions", "0"],
            "between 1 and 10000",
        ),
        (
            vec!["topic", "create", "z", "--partitions", "10001"],
            "between 1 and 10000",
        ),
        (vec!["topic", "describe", "nope"], "does not exist"),
        (vec!["topic", "delete", "nope"], "does not exist"),
        (vec!["produce", "nope"], "does not exist"),
        (vec!["produce", "t", "--partition", "7"], "no partition 7"),
        (vec!["consume", "nope"], "does not exist"),
        (
            vec!["consume", "t", "--partition", "0", "--from", "99"],
            "earliest 0, latest",
        ),
        (vec!["consume", "t", "--partition", "9"], "no partition 9"),
    ];
    for (args, want) in cases {
        let out = broker.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "weir {args:?} should fail");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "weir {args:?}: {err:?}"
        );
        assert!(err.contains(want), "weir {args:?}: {err:?} lacks {want:?}");
    }
    // Nothing acknowledged was lost on the way.
    assert_eq!(lines(&broker.cli_ok(&["topic", "describe", "t"])).len(), 2);
    let out = broker.cli_ok(&["consume", "t", "--max", "2"]);
    assert_eq!(out.lines().count(), 2);
}

#[test]
fn unreachable_broker_is_a_clear_error() {
    let out = std::process::Command::new(weir_e2e::bin("weir"))
        .args(["--broker", "127.0.0.1:1", "topic", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: cannot connect to 127.0.0.1:1"),
        "{err}"
    );
}

#[test]
fn bench_reports_real_counts_and_cleans_up_its_topics() {
    let broker = Broker::start();
    let json = |out: &str| -> serde_json::Value {
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    // `records` is the argument echoed; `stored` is what the broker holds (the topic's end
    // offsets, read before it is deleted) and `delivered` what the consumer received.
    let produce = json(&broker.cli_ok(&[
        "bench",
        "produce",
        "--records",
        "20000",
        "--partitions",
        "3",
        "--json",
    ]));
    assert_eq!(produce["records"], 20000);
    assert_eq!(produce["stored"], 20000, "{produce}");
    assert!(produce.get("delivered").is_none(), "{produce}");
    assert!(produce["records_per_sec"].as_f64().unwrap() > 0.0);
    let consume = json(&broker.cli_ok(&[
        "bench",
        "consume",
        "--records",
        "20000",
        "--batch",
        "300",
        "--json",
    ]));
    assert_eq!(consume["records"], 20000);
    assert_eq!(consume["stored"], 20000, "{consume}");
    assert_eq!(consume["delivered"], 20000, "{consume}");
    assert!(consume["records_per_sec"].as_f64().unwrap() > 0.0);

    let backlog = json(&broker.cli_ok(&[
        "bench",
        "backlog",
        "--records",
        "20000",
        "--backlog",
        "50000",
        "--json",
    ]));
    assert_eq!(backlog["backlog"], 50000);
    assert!(backlog["alone_records_per_sec"].as_f64().unwrap() > 0.0);
    assert!(backlog["with_reader_records_per_sec"].as_f64().unwrap() > 0.0);
    // The reader started before the timed run (it waits for its first record) and stopped
    // at the end of the backlog at the latest.
    let read = backlog["reader_records"].as_u64().unwrap();
    assert!((1..=50000).contains(&read), "{backlog}");
    // e2e: produce → consume latency, and next to it when the producer heard back.
    let e2e = json(&broker.cli_ok(&[
        "bench",
        "e2e",
        "--records",
        "5000",
        "--rate",
        "50000",
        "--json",
    ]));
    assert_eq!(
        (&e2e["stored"], &e2e["delivered"]),
        (&5000.into(), &5000.into()),
        "{e2e}"
    );
    let (ack50, ack99) = (
        e2e["ack_p50_ms"].as_f64().unwrap(),
        e2e["ack_p99_ms"].as_f64().unwrap(),
    );
    assert!(ack50 > 0.0 && ack99 >= ack50, "{e2e}");
    // Every bench topic is deleted afterwards.
    assert_eq!(broker.cli_ok(&["topic", "list"]).trim(), "");
}
