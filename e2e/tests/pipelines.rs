//! Continuous pipelines against a real broker: every example plugin as a pipeline (CLI and
//! SDK), aggregate state surviving SIGTERM and `kill -9`, exactly-once output across `kill -9`
//! mid-stream, a destination with fewer partitions (`P mod N`), records dropped by retention
//! skipped, and failed pipelines (status, error, resume after the plugin is replaced).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use weir::{
    Admin, ConsumerConfig, NewPipeline, NewTopic, PipelineInfo, PipelineStatus, ProducerConfig,
    ProducerRecord,
};
use weir_e2e::{
    Broker, example_plugin, hostile_plugin, lines, read_all, register_examples, sample_log_line,
    sample_order, text,
};

/// Polls a pipeline until `done` holds (panics with its last state after 60 s).
async fn wait_for(admin: &Admin, name: &str, done: impl Fn(&PipelineInfo) -> bool) -> PipelineInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = admin.describe_pipeline(name).await.unwrap();
        if done(&p) {
            return p;
        }
        assert!(Instant::now() < deadline, "pipeline {name} stuck: {p:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the pipeline has processed `n` source records and has no lag.
async fn caught_up(admin: &Admin, name: &str, n: u64) -> PipelineInfo {
    wait_for(admin, name, |p| {
        assert_eq!(p.status, PipelineStatus::Running, "{p:?}");
        p.records_in == n && p.lag == 0
    })
    .await
}

async fn values(client: &weir::Client, topic: &str) -> Vec<String> {
    read_all(client, topic, ConsumerConfig::default())
        .await
        .iter()
        .map(text)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_plugins_run_as_pipelines_and_aggregates_keep_state_across_restarts() {
    let mut broker = Broker::start();
    let client = broker.client_with_topic("logs", 1).await;
    let admin = client.admin();
    register_examples(&admin).await;
    for (t, n) in [
        ("upper", 1),
        ("errors", 1),
        ("words", 1),
        ("clicks", 2),
        ("counts", 2),
        ("orders", 1),
        ("big-orders", 1),
    ] {
        admin.create_topic(NewTopic::new(t, n)).await.unwrap();
    }
    let p = client.producer(ProducerConfig::default());
    for i in 0..100 {
        p.enqueue(ProducerRecord::new("logs", sample_log_line(i)))
            .await
            .unwrap();
    }
    for i in 0..20 {
        let v = sample_order(i);
        p.enqueue(ProducerRecord::new("orders", v)).await.unwrap();
    }
    p.flush().await.unwrap();

    // map through the CLI; a chain of two (filter then map), flat_map and the JSON example
    // through the SDK.
    let out = broker.cli_ok(&[
        "pipeline",
        "create",
        "upper",
        "--from",
        "logs",
        "--to",
        "upper",
        "--plugin",
        "uppercase",
    ]);
    assert_eq!(
        out.trim(),
        "created pipeline upper (logs -> upper: uppercase)"
    );
    admin
        .create_pipeline(
            NewPipeline::new("errors", "logs", "errors")
                .plugin("filter-contains", Some(r#"{"substring":"ERROR"}"#))
                .plugin("uppercase", None),
        )
        .await
        .unwrap();
    admin
        .create_pipeline(NewPipeline::new("words", "logs", "words").plugin("split-words", None))
        .await
        .unwrap();
    admin
        .create_pipeline(NewPipeline::new("big", "orders", "big-orders").plugin(
            "json-threshold",
            Some(r#"{"field":"amount","min":100,"keep":["id","amount"]}"#),
        ))
        .await
        .unwrap();
    admin
        .create_pipeline(
            NewPipeline::new("counts", "clicks", "counts").plugin("count-by-key", None),
        )
        .await
        .unwrap();

    let up = caught_up(&admin, "upper", 100).await;
    assert_eq!(up.records_out, 100);
    let upper = values(&client, "upper").await;
    assert_eq!(upper.len(), 100);
    assert_eq!(upper[3], "LINE 3 OK");
    let errs = caught_up(&admin, "errors", 100).await;
    assert_eq!(errs.records_out, 10);
    let errors = values(&client, "errors").await;
    assert_eq!(errors.len(), 10);
    assert_eq!(errors[1], "LINE 10 ERROR DISK FULL");
    caught_up(&admin, "words", 100).await;
    let words = values(&client, "words").await;
    assert_eq!(words.len(), 10 * 5 + 90 * 3);
    assert_eq!(words[..5], ["line", "0", "ERROR", "disk", "full"]);
    caught_up(&admin, "big", 20).await;
    let big = values(&client, "big-orders").await;
    assert_eq!(big.len(), 10);
    for v in &big {
        let v: serde_json::Value = serde_json::from_str(v).unwrap();
        assert!(v["amount"].as_f64().unwrap() >= 100.0);
        assert!(v.get("note").is_none());
    }

    // list and describe through the CLI.
    let listed = broker.cli_ok(&["pipeline", "list"]);
    assert_eq!(
        lines(&listed),
        [
            "big\torders\tbig-orders\trunning\t0",
            "counts\tclicks\tcounts\trunning\t0",
            "errors\tlogs\terrors\trunning\t0",
            "upper\tlogs\tupper\trunning\t0",
            "words\tlogs\twords\trunning\t0",
        ]
    );
    let described = broker.cli_ok(&["pipeline", "describe", "errors"]);
    let d = lines(&described);
    assert_eq!(
        d[..9],
        [
            "name\terrors",
            "from\tlogs",
            "to\terrors",
            r#"plugins	filter-contains={"substring":"ERROR"} | uppercase"#,
            "status\trunning",
            "error\t-",
            "records_in\t100",
            "records_out\t10",
            "lag\t0",
        ]
    );
    assert_eq!(
        d[9],
        "partition\tposition\tend\tlag\trecords_in\trecords_out\tworker"
    );
    assert_eq!(d[10], "0\t100\t100\t0\t100\t10\t-");

    // Aggregate: the running count per key, per source partition, across a restart.
    let send_clicks = |keys: &'static [&'static str]| {
        let p = client.producer(ProducerConfig::default());
        async move {
            for k in keys {
                p.send(ProducerRecord::new("clicks", "click").key(*k))
                    .await
                    .unwrap();
            }
            p.close().await.unwrap();
        }
    };
    send_clicks(&["a", "b", "a", "c", "a"]).await;
    caught_up(&admin, "counts", 5).await;
    broker.terminate();
    broker.restart();
    let client = broker.client().await;
    let admin = client.admin();
    let counts = admin.describe_pipeline("counts").await.unwrap();
    assert_eq!(
        (counts.records_in, counts.records_out),
        (5, 5),
        "{counts:?}"
    );
    send_clicks(&["a", "c", "b"]).await;
    caught_up(&admin, "counts", 8).await;
    let got = read_all(&client, "counts", ConsumerConfig::default()).await;
    let mut per_key: HashMap<String, Vec<String>> = HashMap::new();
    for r in &got {
        let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
        per_key.entry(key).or_default().push(text(r));
    }
    assert_eq!(per_key["a"], ["1", "2", "3", "4"]);
    assert_eq!(per_key["b"], ["1", "2"]);
    assert_eq!(per_key["c"], ["1", "2"]);

    // And across a crash: the state written with the last round's output survives kill -9.
    broker.kill9();
    broker.restart();
    let client = broker.client().await;
    let admin = client.admin();
    send_clicks(&["b", "a"]).await;
    caught_up(&admin, "counts", 10).await;
    let got = read_all(&client, "counts", ConsumerConfig::default()).await;
    let mut per_key: HashMap<String, Vec<String>> = HashMap::new();
    for r in &got {
        let key = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
        per_key.entry(key).or_default().push(text(r));
    }
    assert_eq!(per_key["a"], ["1", "2", "3", "4", "5"]);
    assert_eq!(per_key["b"], ["1", "2", "3"]);
    assert_eq!(per_key["c"], ["1", "2"]);
    // Each key's counts stay in the partition its producer chose.
    for r in &got {
        let key = r.key.clone().unwrap();
        assert_eq!(r.partition, weir::partition_for_key(&key, 2));
    }

    // Delete: gone from the list, its output stays.
    broker.cli_ok(&["pipeline", "delete", "upper"]);
    assert!(!broker.cli_ok(&["pipeline", "list"]).contains("upper\t"));
    assert_eq!(values(&client, "upper").await.len(), 100);
    let gone = broker.cli(&["pipeline", "describe", "upper"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("does not exist"));
}

/// Produces `record(i)` (keyed `k{i % 7}`) in rounds of 1000 until pipeline `name` has
/// written more than `out` records and still lags: the moment to kill its broker. Returns the
/// producer (dropped after the kill).
async fn produce_until_mid_stream(
    client: &weir::Client,
    name: &str,
    out: u64,
    record: impl Fn(u64) -> ProducerRecord,
) -> weir::Producer {
    let admin = client.admin();
    let producer = client.producer(ProducerConfig::default());
    let mut sent = 0u64;
    let mut next_check = Instant::now();
    loop {
        for _ in 0..1000 {
            producer
                .enqueue(record(sent).key(format!("k{}", sent % 7)))
                .await
                .unwrap();
            sent += 1;
        }
        if Instant::now() >= next_check {
            producer.flush().await.unwrap();
            let p = admin.describe_pipeline(name).await.unwrap();
            if p.records_out > out && p.lag > 0 {
                return producer;
            }
            assert!(sent < 5_000_000, "pipeline made no progress: {p:?}");
            next_check = Instant::now() + Duration::from_millis(20);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_killed_mid_stream_writes_each_output_exactly_once() {
    let mut broker = Broker::start();
    let client = broker.client_with_topic("in", 2).await;
    let admin = client.admin();
    admin.create_topic(NewTopic::new("out", 2)).await.unwrap();
    let wasm = std::fs::read(example_plugin("uppercase")).unwrap();
    admin.register_plugin("uppercase", wasm).await.unwrap();
    admin
        .create_pipeline(NewPipeline::new("up", "in", "out").plugin("uppercase", None))
        .await
        .unwrap();

    // Produce continuously (100-byte records) while the pipeline works; kill the broker in
    // the middle of it.
    let pad = "x".repeat(90);
    let producer = produce_until_mid_stream(&client, "up", 50_000, |i| {
        ProducerRecord::new("in", format!("r{i:08}{pad}"))
    })
    .await;
    broker.kill9();
    drop(producer);
    broker.restart();
    let client = broker.client().await;
    let admin = client.admin();

    // Whatever the source holds now (every acknowledged record, maybe a few more), the
    // destination ends up with its transformation exactly once, in order per partition.
    let source = read_all(&client, "in", ConsumerConfig::default()).await;
    assert!(source.len() as u64 >= 50_000);
    caught_up(&admin, "up", source.len() as u64).await;
    let dest = read_all(&client, "out", ConsumerConfig::default()).await;
    assert_eq!(dest.len(), source.len(), "outputs lost or duplicated");
    for partition in 0..2 {
        let want: Vec<String> = source
            .iter()
            .filter(|r| r.partition == partition)
            .map(|r| text(r).to_uppercase())
            .collect();
        let got: Vec<String> = dest
            .iter()
            .filter(|r| r.partition == partition)
            .map(text)
            .collect();
        assert_eq!(got.len(), want.len(), "partition {partition}");
        assert!(
            got == want,
            "partition {partition}: outputs differ from inputs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_fails_its_pipeline_which_resumes_once_the_plugin_is_replaced() {
    let mut broker = Broker::start();
    let client = broker.client_with_topic("src", 2).await;
    let admin = client.admin();
    for t in ["dst", "dst2"] {
        admin.create_topic(NewTopic::new(t, 2)).await.unwrap();
    }
    register_examples(&admin).await;
    admin
        .register_plugin("fragile", hostile_plugin("unreachable"))
        .await
        .unwrap();
    let p = client.producer(ProducerConfig::default());
    for i in 0..50 {
        p.enqueue(ProducerRecord::new("src", format!("v{i}")).key(format!("{i}")))
            .await
            .unwrap();
    }
    p.flush().await.unwrap();

    admin
        .create_pipeline(NewPipeline::new("bad", "src", "dst").plugin("fragile", None))
        .await
        .unwrap();
    admin
        .create_pipeline(NewPipeline::new("good", "src", "dst2").plugin("uppercase", None))
        .await
        .unwrap();
    let failed = wait_for(&admin, "bad", |p| p.status == PipelineStatus::Failed).await;
    let error = failed.error.clone().unwrap();
    assert!(
        error.contains("fragile") && error.contains("unreachable"),
        "{error}"
    );
    assert_eq!(failed.records_out, 0);
    // The other pipeline and the broker go on.
    caught_up(&admin, "good", 50).await;
    assert_eq!(values(&client, "dst2").await.len(), 50);
    let described = broker.cli_ok(&["pipeline", "describe", "bad"]);
    assert!(described.contains("status\tfailed"), "{described}");
    assert!(described.contains("unreachable"), "{described}");

    // The plugin cannot be deleted while the pipeline uses it.
    let out = broker.cli(&["plugin", "delete", "fragile"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error:") && err.contains("pipeline \"bad\""),
        "{err}"
    );
    assert!(matches!(
        admin.delete_plugin("fragile").await,
        Err(weir::Error::PluginInUse(_))
    ));

    // Failed stays failed across a crash; resuming with the cause still there fails again.
    broker.kill9();
    broker.restart();
    let client = broker.client().await;
    let admin = client.admin();
    let after = admin.describe_pipeline("bad").await.unwrap();
    assert_eq!(after.status, PipelineStatus::Failed);
    assert_eq!(after.error.as_deref(), Some(error.as_str()));
    admin.resume_pipeline("bad").await.unwrap();
    wait_for(&admin, "bad", |p| p.status == PipelineStatus::Failed).await;

    // Fix the cause: replace the module, resume, and every record goes through once.
    let replaced = broker.cli_ok(&[
        "plugin",
        "register",
        "fragile",
        example_plugin("uppercase").to_str().unwrap(),
        "--replace",
    ]);
    assert!(
        replaced.starts_with("replaced plugin fragile (map, "),
        "{replaced}"
    );
    let resumed = broker.cli_ok(&["pipeline", "resume", "bad"]);
    assert_eq!(resumed.trim(), "resumed pipeline bad (running)");
    let done = caught_up(&admin, "bad", 50).await;
    assert_eq!(done.records_out, 50);
    let mut got = values(&client, "dst").await;
    got.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("V{i}")).collect();
    want.sort();
    assert_eq!(got, want);

    // Bad requests get clear errors.
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "pipeline",
                "create",
                "x",
                "--from",
                "nope",
                "--to",
                "dst",
                "--plugin",
                "uppercase",
            ],
            "topic \"nope\" does not exist",
        ),
        (
            &[
                "pipeline", "create", "x", "--from", "src", "--to", "dst", "--plugin", "nope",
            ],
            "plugin \"nope\" does not exist",
        ),
        (
            &[
                "pipeline",
                "create",
                "bad",
                "--from",
                "src",
                "--to",
                "dst",
                "--plugin",
                "uppercase",
            ],
            "already exists",
        ),
        (
            &[
                "pipeline",
                "create",
                "x",
                "--from",
                "src",
                "--to",
                "src",
                "--plugin",
                "uppercase",
            ],
            "its own source topic",
        ),
        (
            &[
                "pipeline",
                "create",
                "x",
                "--from",
                "src",
                "--to",
                "dst",
                "--plugin",
                "filter-contains={}",
            ],
            "substring",
        ),
        (
            &["pipeline", "resume", "nope"],
            "pipeline \"nope\" does not exist",
        ),
    ];
    for (args, why) in cases {
        let out = broker.cli(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error:") && err.contains(why),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    // Deleting the pipeline frees the plugin.
    broker.cli_ok(&["pipeline", "delete", "bad"]);
    broker.cli_ok(&["plugin", "delete", "fragile"]);
}

/// Source partition P goes to destination partition P mod N, in order; the destination may
/// have fewer partitions than the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_with_fewer_partitions_gets_partition_p_in_p_mod_n() {
    let broker = Broker::start();
    let client = broker.client_with_topic("wide", 3).await;
    let admin = client.admin();
    admin
        .create_topic(NewTopic::new("narrow", 2))
        .await
        .unwrap();
    let wasm = std::fs::read(example_plugin("uppercase")).unwrap();
    admin.register_plugin("uppercase", wasm).await.unwrap();
    let p = client.producer(ProducerConfig::default());
    for i in 0..90u32 {
        p.enqueue(ProducerRecord::new("wide", format!("p{}-{i:02}", i % 3)).partition(i % 3))
            .await
            .unwrap();
    }
    p.flush().await.unwrap();
    admin
        .create_pipeline(NewPipeline::new("fold", "wide", "narrow").plugin("uppercase", None))
        .await
        .unwrap();
    caught_up(&admin, "fold", 90).await;
    let got = read_all(&client, "narrow", ConsumerConfig::default()).await;
    assert_eq!(got.len(), 90);
    for source in 0..3u32 {
        let want: Vec<String> = (0..90)
            .filter(|i| i % 3 == source)
            .map(|i| format!("P{source}-{i:02}"))
            .collect();
        // In the destination partition P mod 2, in the source partition's order.
        let landed: Vec<String> = got
            .iter()
            .filter(|r| r.partition == source % 2 && text(r).starts_with(&format!("P{source}-")))
            .map(text)
            .collect();
        assert_eq!(landed, want, "source partition {source}");
    }
}

/// Records retention dropped before the pipeline read them are skipped: it goes on from the
/// source's earliest offset, and counts only what it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_dropped_by_retention_before_a_pipeline_read_them_are_skipped() {
    let broker = Broker::start_with(&["--retention-check-ms", "100"]);
    let client = broker.client().await;
    let admin = client.admin();
    admin
        .create_topic(
            NewTopic::new("src", 1)
                .segment_bytes(2048)
                .retention_bytes(4096),
        )
        .await
        .unwrap();
    admin.create_topic(NewTopic::new("dst", 1)).await.unwrap();
    register_examples(&admin).await;
    admin
        .register_plugin("fragile", hostile_plugin("unreachable"))
        .await
        .unwrap();
    // The pipeline exists (positioned at offset 0) but fails at once, so it reads nothing
    // while retention drops the oldest segments.
    admin
        .create_pipeline(NewPipeline::new("late", "src", "dst").plugin("fragile", None))
        .await
        .unwrap();
    let p = client.producer(ProducerConfig::default());
    for i in 0..300 {
        p.send(ProducerRecord::new("src", format!("{i:0100}")))
            .await
            .unwrap();
    }
    wait_for(&admin, "late", |p| p.status == PipelineStatus::Failed).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Retention has dropped what it will (the partition is within a segment of its bound).
    let earliest = loop {
        let part = admin.describe_topic("src").await.unwrap().partitions[0];
        if part.earliest_offset > 0 && part.size_bytes < 4096 + 2 * 2048 {
            break part.earliest_offset;
        }
        assert!(Instant::now() < deadline, "retention did not act: {part:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Fixed and resumed: it skips to the earliest offset kept and transforms the rest once.
    broker.cli_ok(&[
        "plugin",
        "register",
        "fragile",
        example_plugin("uppercase").to_str().unwrap(),
        "--replace",
    ]);
    admin.resume_pipeline("late").await.unwrap();
    let done = wait_for(&admin, "late", |p| {
        p.status == PipelineStatus::Running && p.lag == 0
    })
    .await;
    let out = values(&client, "dst").await;
    // Retention may have dropped more by the time the pipeline read: what it wrote starts at
    // or after `earliest`, ends with the last record, and has no gap.
    let first: u64 = out.first().expect("output").parse().unwrap();
    assert!(first >= earliest, "{first} < {earliest}");
    let want: Vec<String> = (first..300).map(|i| format!("{i:0100}")).collect();
    assert_eq!(out, want);
    assert_eq!(done.records_in, 300 - first, "{done:?}");
    assert_eq!(done.records_out, 300 - first, "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_pipeline_writes_each_record_once_to_its_output_across_a_kill() {
    let mut broker = Broker::start();
    let client = broker.client_with_topic("logs", 2).await;
    let admin = client.admin();
    for t in ["rest", "errors"] {
        admin.create_topic(NewTopic::new(t, 2)).await.unwrap();
    }
    let wasm = std::fs::read(example_plugin("route-contains")).unwrap();
    admin.register_plugin("route", wasm).await.unwrap();
    let created = broker.cli_ok(&[
        "pipeline",
        "create",
        "triage",
        "--from",
        "logs",
        "--to",
        "rest",
        "--to",
        "errors",
        "--plugin",
        r#"route={"substring":"ERROR"}"#,
    ]);
    assert_eq!(
        created.trim(),
        r#"created pipeline triage (logs -> rest,errors: route={"substring":"ERROR"})"#
    );
    assert!(
        broker
            .cli_ok(&["pipeline", "describe", "triage"])
            .contains("to\trest,errors\n")
    );

    // Produce while it routes; kill the broker in the middle of it.
    let producer = produce_until_mid_stream(&client, "triage", 30_000, |i| {
        ProducerRecord::new("logs", sample_log_line(i as usize))
    })
    .await;
    broker.kill9();
    drop(producer);
    broker.restart();
    let client = broker.client().await;
    let admin = client.admin();

    // Each output holds exactly its records once, in source order per partition.
    let source = read_all(&client, "logs", ConsumerConfig::default()).await;
    let done = caught_up(&admin, "triage", source.len() as u64).await;
    assert_eq!(done.records_out, source.len() as u64);
    let rest = read_all(&client, "rest", ConsumerConfig::default()).await;
    let errors = read_all(&client, "errors", ConsumerConfig::default()).await;
    for partition in 0..2 {
        let of = |rs: &[weir::ConsumerRecord]| -> Vec<String> {
            rs.iter()
                .filter(|r| r.partition == partition)
                .map(text)
                .collect()
        };
        let input = of(&source);
        let want_errors: Vec<String> = input
            .iter()
            .filter(|v| v.contains("ERROR"))
            .cloned()
            .collect();
        let want_rest: Vec<String> = input
            .iter()
            .filter(|v| !v.contains("ERROR"))
            .cloned()
            .collect();
        assert!(!want_errors.is_empty());
        assert!(
            of(&errors) == want_errors,
            "partition {partition}: errors differ"
        );
        assert!(
            of(&rest) == want_rest,
            "partition {partition}: the rest differs"
        );
    }

    // A plugin sending records to an output the pipeline lacks fails it, saying so.
    admin
        .create_pipeline(
            NewPipeline::new("short", "logs", "rest")
                .plugin("route", Some(r#"{"substring":"ERROR"}"#)),
        )
        .await
        .unwrap();
    let failed = wait_for(&admin, "short", |p| p.status == PipelineStatus::Failed).await;
    let error = failed.error.unwrap();
    assert!(
        error.contains("output 1") && error.contains("1 output topic"),
        "{error}"
    );
    // Outputs are distinct topics, at most 8, never the source.
    let e = admin
        .create_pipeline(
            NewPipeline::new("dup", "logs", "rest")
                .also_to("rest")
                .plugin("route", Some("{}")),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("repeats topic"), "{e}");
}
