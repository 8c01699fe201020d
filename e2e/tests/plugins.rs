//! WebAssembly plugins against a real broker: registration of the example plugins (built to
//! wasm by scripts/build-plugins) through the CLI and the SDK, clear errors for modules that
//! are not plugins, and the registry surviving a crash.

use weir_e2e::{
    Broker, example_plugin, hostile_plugin as hostile, lines, read_all, register_examples,
    sample_log_line, sample_order, text,
};

use weir_e2e::EXAMPLE_PLUGINS as EXAMPLES;

#[test]
fn example_plugins_register_list_survive_a_crash_and_delete() {
    let mut broker = Broker::start();
    for (name, kind) in EXAMPLES {
        let path = example_plugin(name);
        let out = broker.cli_ok(&["plugin", "register", name, path.to_str().unwrap()]);
        assert!(
            out.starts_with(&format!("registered plugin {name} ({kind}, ")),
            "{out}"
        );
    }
    let listed = broker.cli_ok(&["plugin", "list"]);
    let kinds: Vec<(String, String)> = lines(&listed)
        .iter()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[0].to_string(), c[1].to_string())
        })
        .collect();
    let want: Vec<(String, String)> = EXAMPLES
        .iter()
        .map(|(n, k)| (n.to_string(), k.to_string()))
        .collect();
    assert_eq!(kinds, want);

    // Same name again: refused, the first stays.
    let again = broker.cli(&[
        "plugin",
        "register",
        "uppercase",
        example_plugin("uppercase").to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    broker.kill9();
    broker.restart();
    assert_eq!(broker.cli_ok(&["plugin", "list"]), listed);
    broker.cli_ok(&["plugin", "delete", "uppercase"]);
    assert_eq!(
        lines(&broker.cli_ok(&["plugin", "list"])).len(),
        EXAMPLES.len() - 1
    );
    let gone = broker.cli(&["plugin", "delete", "uppercase"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("does not exist"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_that_are_not_plugins_get_clear_errors_and_the_broker_keeps_serving() {
    let broker = Broker::start();
    let admin = broker.client().await.admin();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("garbage", b"\0asm garbage".to_vec(), "not a valid WebAssembly module"),
        (
            "io",
            wat::parse_str(r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))"#).unwrap(),
            "imports wasi_snapshot_preview1::fd_write",
        ),
        (
            "empty",
            wat::parse_str("(module)").unwrap(),
            "does not export its memory",
        ),
        (
            "bad.name/x",
            wat::parse_str("(module)").unwrap(),
            "may only contain",
        ),
    ];
    for (name, wasm, why) in cases {
        match admin.register_plugin(name, wasm).await {
            Err(weir::Error::InvalidArgument { message }) => {
                assert!(message.contains(why), "{name}: {message}")
            }
            other => panic!("{name}: expected InvalidArgument, got {other:?}"),
        }
    }
    // The CLI says the same in one line.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"nope").unwrap();
    let out = broker.cli(&["plugin", "register", "bad", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error:") && err.contains("not a valid WebAssembly"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1);
    assert!(admin.list_plugins().await.unwrap().is_empty());
    assert!(matches!(
        admin.delete_plugin("garbage").await,
        Err(weir::Error::PluginNotFound(_))
    ));
    // Still serving.
    admin
        .create_topic(weir::NewTopic::new("still-here", 1))
        .await
        .unwrap();
}

#[test]
fn plugin_new_writes_a_template_per_kind_that_builds_and_registers() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    // Share the example plugins' target dir: std for wasm32 is built there already.
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target");
    for kind in [
        "filter",
        "map",
        "filter-map",
        "flat-map",
        "aggregate",
        "route",
    ] {
        let name = format!("my-{kind}");
        let weir = |args: &[&str]| {
            let out = std::process::Command::new(weir_e2e::bin("weir"))
                .args(args)
                .current_dir(dir.path())
                .env("CARGO_TARGET_DIR", &target)
                .env("WEIR_BROKER", &broker.addr)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "weir {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        weir(&["plugin", "new", &name, "--kind", kind]);
        let built = weir(&["plugin", "build", &name]);
        let wasm = built.lines().last().unwrap().to_string();
        assert!(wasm.ends_with(".wasm"), "{built}");
        let out = weir(&["plugin", "register", &name, &wasm]);
        let want = kind.replace('-', "_");
        assert!(out.contains(&format!("({want}, ")), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_plugins_transform_records_at_consume_time() {
    use weir::{ConsumerConfig, ProducerConfig, ProducerRecord};
    let broker = Broker::start();
    let client = broker.client_with_topic("logs", 1).await;
    let admin = client.admin();
    register_examples(&admin).await;
    admin
        .create_topic(weir::NewTopic::new("clicks", 1))
        .await
        .unwrap();
    admin
        .create_topic(weir::NewTopic::new("orders", 2))
        .await
        .unwrap();
    let p = client.producer(ProducerConfig::default());
    for i in 0..100 {
        p.enqueue(ProducerRecord::new("logs", sample_log_line(i)))
            .await
            .unwrap();
    }
    for k in ["a", "b", "a", "a", "b", "c"] {
        p.enqueue(ProducerRecord::new("clicks", "click").key(k))
            .await
            .unwrap();
    }
    for i in 0..20 {
        let v = sample_order(i);
        p.enqueue(ProducerRecord::new("orders", v).key(format!("{i}")))
            .await
            .unwrap();
    }
    p.close().await.unwrap();

    // filter: only the errors, at their own offsets; the position moves past the rest.
    let errors = r#"{"substring":"ERROR"}"#;
    let got = read_all(
        &client,
        "logs",
        ConsumerConfig::default().plugin("filter-contains", Some(errors)),
    )
    .await;
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|r| text(r).contains("ERROR")));
    let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..100).step_by(10).collect::<Vec<u64>>());
    {
        use futures::StreamExt;
        let mut c = client
            .consumer(
                "logs",
                ConsumerConfig::default().plugin("filter-contains", Some(errors)),
            )
            .await
            .unwrap();
        for _ in 0..10 {
            c.next().await.unwrap().unwrap();
        }
        assert_eq!(c.position(0), Some(100), "filtered records count as read");
    }

    // A filter that keeps everything: the stored batches go out as they are.
    let all = read_all(
        &client,
        "logs",
        ConsumerConfig::default().plugin("filter-contains", Some(r#"{"substring":"line"}"#)),
    )
    .await;
    assert_eq!(
        all.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..100).collect::<Vec<u64>>()
    );
    assert_eq!(text(&all[10]), "line 10 ERROR disk full");

    // map, and a chain of two (filter then map), through the CLI too.
    let upper = read_all(
        &client,
        "logs",
        ConsumerConfig::default().plugin("uppercase", None),
    )
    .await;
    assert_eq!(upper.len(), 100);
    assert_eq!(text(&upper[3]), "LINE 3 OK");
    let out = broker.cli_ok(&[
        "consume",
        "logs",
        "--plugin",
        &format!("filter-contains={errors}"),
        "--plugin",
        "uppercase",
        "--idle-timeout",
        "1500",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[1], "LINE 10 ERROR DISK FULL");

    // flat_map: one record per word, all with their source's offset.
    let words = read_all(
        &client,
        "logs",
        ConsumerConfig::default().plugin("split-words", None),
    )
    .await;
    assert_eq!(words.len(), 10 * 5 + 90 * 3);
    assert_eq!(
        words
            .iter()
            .filter(|r| r.offset == 10)
            .map(text)
            .collect::<Vec<_>>(),
        vec!["line", "10", "ERROR", "disk", "full"]
    );

    // aggregate: the running count per key.
    let counts = read_all(
        &client,
        "clicks",
        ConsumerConfig::default().plugin("count-by-key", None),
    )
    .await;
    assert_eq!(
        counts.iter().map(text).collect::<Vec<_>>(),
        vec!["1", "1", "2", "3", "2", "1"]
    );

    // JSON: drop small orders, project two fields.
    let big = read_all(
        &client,
        "orders",
        ConsumerConfig::default().plugin(
            "json-threshold",
            Some(r#"{"field":"amount","min":100,"keep":["id","amount"]}"#),
        ),
    )
    .await;
    assert_eq!(big.len(), 10);
    for r in &big {
        let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        assert!(v["amount"].as_f64().unwrap() >= 100.0);
        assert!(v.get("note").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_plugins_fail_the_consumer_not_the_broker() {
    use futures::StreamExt;
    use weir::{ConsumerConfig, ProducerConfig, ProducerRecord};
    let broker = Broker::start();
    let client = broker.client_with_topic("t", 1).await;
    let admin = client.admin();
    register_examples(&admin).await;
    let p = client.producer(ProducerConfig::default());
    p.send(ProducerRecord::new("t", "hello")).await.unwrap();
    p.close().await.unwrap();
    let cases = [
        (
            "spin",
            hostile("(loop $l (br $l)) (i32.const 0)"),
            "CPU time limit",
        ),
        (
            "bomb",
            hostile(
                "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) (i32.const 0)",
            ),
            "memory limit",
        ),
        ("trap", hostile("unreachable"), "unreachable"),
        (
            "liar",
            hostile("(i32.store (i32.const 4) (i32.const 99)) (i32.const 0)"),
            "malformed output",
        ),
    ];
    for (name, wasm, why) in cases {
        admin.register_plugin(name, wasm).await.unwrap();
        let mut c = client
            .consumer("t", ConsumerConfig::default().plugin(name, None))
            .await
            .unwrap();
        match tokio::time::timeout(std::time::Duration::from_secs(20), c.next()).await {
            Ok(Some(Err(weir::Error::PluginFailed(m)))) => {
                assert!(m.contains(name) && m.contains(why), "{name}: {m}")
            }
            other => panic!("{name}: expected a plugin failure, got {other:?}"),
        }
    }
    // Bad params fail the subscribe call itself, naming the cause.
    match client
        .consumer(
            "t",
            ConsumerConfig::default().plugin("filter-contains", Some("{}")),
        )
        .await
    {
        Err(weir::Error::PluginFailed(m)) => assert!(m.contains("substring"), "{m}"),
        other => panic!("expected bad params, got {:?}", other.map(|_| ())),
    }
    match client
        .consumer("t", ConsumerConfig::default().plugin("nope", None))
        .await
    {
        Err(weir::Error::PluginNotFound(_)) => {}
        other => panic!("expected not found, got {:?}", other.map(|_| ())),
    }
    // Everyone else is still served.
    let ok = read_all(
        &client,
        "t",
        ConsumerConfig::default().plugin("uppercase", None),
    )
    .await;
    assert_eq!(text(&ok[0]), "HELLO");
}

#[test]
fn group_consumers_with_a_filter_commit_past_the_records_it_drops() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "log", "--partitions", "3"]);
    let path = example_plugin("filter-contains");
    broker.cli_ok(&["plugin", "register", "grep", path.to_str().unwrap()]);
    let produce = |from: usize| {
        let input: String = (from..from + 90)
            .map(|i| {
                if i % 3 == 0 {
                    format!("line{i} ERROR\n")
                } else {
                    format!("line{i} ok\n")
                }
            })
            .collect();
        let out = broker.cli_with_stdin(
            &["produce", "log", "--key-separator", " "],
            input.as_bytes(),
        );
        assert!(out.status.success());
    };
    let consume = || {
        let out = broker.cli_ok(&[
            "consume",
            "log",
            "--group",
            "alerts",
            "--plugin",
            r#"grep={"substring":"ERROR"}"#,
            "--idle-timeout",
            "3000",
        ]);
        let mut got: Vec<String> = lines(&out).iter().map(|l| l.to_string()).collect();
        got.sort();
        got
    };
    produce(0);
    let first = consume();
    assert_eq!(first.len(), 30);
    assert!(
        first.iter().all(|l| l == "ERROR"),
        "values after the key: {first:?}"
    );
    // Every partition is committed at its end, filtered records included.
    let table = broker.cli_ok(&["group", "describe", "alerts"]);
    let rows = lines(&table);
    assert_eq!(rows.len(), 4, "{table}");
    assert!(
        rows[1..].iter().all(|r| r.split('\t').nth(4) == Some("0")),
        "{table}"
    );
    // The next member of the group sees only what came after.
    produce(90);
    assert_eq!(consume().len(), 30);
}

#[test]
fn per_plugin_limits_are_set_at_registration_checked_and_kept_across_restarts() {
    let mut broker = Broker::start();
    broker.cli_ok(&["topic", "create", "t"]);
    let out = broker.cli_with_stdin(&["produce", "t"], b"hello\n");
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let spin = dir.path().join("spin.wasm");
    std::fs::write(&spin, hostile("(loop $l (br $l)) (i32.const 0)")).unwrap();
    let bomb = dir.path().join("bomb.wasm");
    std::fs::write(
        &bomb,
        hostile("(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) (i32.const 0)"),
    )
    .unwrap();
    let spin = spin.to_str().unwrap();
    let bomb = bomb.to_str().unwrap();
    let out = broker.cli_ok(&["plugin", "register", "spin", spin, "--timeout-ms", "100"]);
    assert!(out.contains("100 ms per batch"), "{out}");
    let out = broker.cli_ok(&["plugin", "register", "bomb", bomb, "--memory-mb", "4"]);
    assert!(out.contains("memory 4 MiB"), "{out}");
    for (args, why) in [
        (
            vec!["plugin", "register", "x", spin, "--timeout-ms", "5"],
            "between 10 and 60000",
        ),
        (
            vec!["plugin", "register", "x", spin, "--memory-mb", "4096"],
            "over the maximum",
        ),
        (
            vec!["plugin", "register", "x", spin, "--max-output-mb", "65"],
            "over the maximum",
        ),
        (
            vec!["plugin", "register", "nope", spin, "--replace"],
            "does not exist",
        ),
    ] {
        let out = broker.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("error:") && err.contains(why),
            "{args:?}: {err}"
        );
    }
    // The limits hold at consume time, also after a crash.
    broker.kill9();
    broker.restart();
    for (plugin, why) in [
        ("spin", "CPU time limit of 100 ms"),
        ("bomb", "memory limit of 4 MiB"),
    ] {
        let out = broker.cli(&["consume", "t", "--plugin", plugin, "--idle-timeout", "5000"]);
        assert!(!out.status.success(), "{plugin}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{plugin}: {err}");
    }
}

fn input(values: &[&str]) -> Vec<weir::Record> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| weir::Record {
            offset: i as u64,
            timestamp: 1_000 + i as i64,
            key: Some(bytes::Bytes::from(format!("k{i}"))),
            value: bytes::Bytes::from(v.to_string()),
            headers: Vec::new(),
        })
        .collect()
}

#[tokio::test]
async fn transform_runs_a_chain_over_records_the_caller_sends_and_stores_nothing() {
    use weir::PluginUse;
    let broker = Broker::start();
    let client = broker.client().await;
    register_examples(&client.admin()).await;
    let chain = vec![
        PluginUse::parse("filter-contains={\"substring\":\"b\"}"),
        PluginUse::parse("split-words"),
        PluginUse::parse("uppercase"),
    ];
    let mut t = client.transformer(chain).await.unwrap();
    let out = t.apply(input(&["a b", "c", "b d e"])).await.unwrap();
    let got: Vec<(u64, String)> = out
        .iter()
        .map(|r| (r.offset, String::from_utf8(r.value.to_vec()).unwrap()))
        .collect();
    // Each output names its input by offset; inputs 0 and 2 contain "b".
    assert_eq!(
        got,
        [
            (0, "A".into()),
            (0, "B".into()),
            (2, "B".into()),
            (2, "D".into()),
            (2, "E".into())
        ]
    );
    // The stream stays open for more; an empty call is fine.
    assert!(t.apply(Vec::new()).await.unwrap().is_empty());
    // An aggregate keeps its state from one call to the next.
    let mut count = client
        .transformer(vec![PluginUse::parse("count-by-key")])
        .await
        .unwrap();
    count.apply(input(&["x"])).await.unwrap();
    let second = count.apply(input(&["x"])).await.unwrap();
    assert!(
        String::from_utf8_lossy(&second[0].value).contains('2'),
        "{:?}",
        second[0].value
    );
    // Unknown plugins fail at open; a faulty one fails the call, naming it.
    match client.transformer(vec![PluginUse::parse("nope")]).await {
        Err(weir::Error::PluginNotFound(_)) => {}
        other => panic!("expected not found, got {:?}", other.map(|_| ())),
    }
    client
        .admin()
        .register_plugin("trap", hostile("unreachable"))
        .await
        .unwrap();
    let mut bad = client
        .transformer(vec![PluginUse::parse("trap")])
        .await
        .unwrap();
    match bad.apply(input(&["x"])).await {
        Err(weir::Error::PluginFailed(m)) => assert!(m.contains("trap"), "{m}"),
        other => panic!("expected a plugin failure, got {other:?}"),
    }
    // Nothing was stored, and the broker still serves.
    assert!(client.admin().list_topics().await.unwrap().is_empty());
    assert_eq!(t.apply(input(&["b"])).await.unwrap().len(), 1);
}

#[test]
fn a_failing_plugin_names_itself_the_offset_and_its_panic_message() {
    let broker = Broker::start();
    for t in ["t", "t2", "out"] {
        broker.cli_ok(&["topic", "create", t]);
    }
    broker.cli_ok(&[
        "plugin",
        "register",
        "faulty",
        example_plugin("faulty").to_str().unwrap(),
    ]);
    let produced = broker.cli_with_stdin(&["produce", "t"], b"a\nb\npanic\nerror\n");
    assert!(produced.status.success());
    let produced = broker.cli_with_stdin(&["produce", "t2"], b"a\nerror\nb\n");
    assert!(produced.status.success());
    let consume = |topic: &str| {
        let out = broker.cli(&[
            "consume",
            topic,
            "--from",
            "earliest",
            "--plugin",
            "faulty",
            "--idle-timeout",
            "2000",
        ]);
        assert!(!out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The guest SDK's panic hook leaves the message where the broker reads it after the trap.
    let err = consume("t");
    assert!(
        err.contains(
            "plugin \"faulty\" panicked at offset 2: index out of bounds: the len is 3 but the index is 5 ("
        ),
        "{err}"
    );
    assert!(err.contains("src/lib.rs:"), "{err}");
    let err = consume("t2");
    assert!(
        err.contains("plugin \"faulty\" failed at offset 1: asked to fail"),
        "{err}"
    );
    // A pipeline's failure says the same.
    broker.cli_ok(&[
        "pipeline", "create", "p", "--from", "t", "--to", "out", "--plugin", "faulty",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let described = loop {
        let d = broker.cli_ok(&["pipeline", "describe", "p"]);
        if d.contains("status\tfailed") {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        described.contains("plugin \"faulty\" panicked at offset 2: index out of bounds"),
        "{described}"
    );
    // And the broker serves on.
    let out = broker.cli_ok(&[
        "consume",
        "t2",
        "--from",
        "earliest",
        "--idle-timeout",
        "1000",
    ]);
    assert_eq!(out, "a\nerror\nb\n");
}

/// `weir plugin test` without a broker: stdin in, (status, stdout, stderr) out.
fn plugin_test_here(args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(weir_e2e::bin("weir"))
        .args(["plugin", "test"])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run weir");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn plugin_test_runs_a_module_file_without_a_broker_and_a_registered_plugin_at_one() {
    let counts = example_plugin("count-by-key");
    let counts = counts.to_str().unwrap();
    let (ok, out, err) = plugin_test_here(&[counts, "--key-separator", " "], b"a x\nb y\na z\n");
    assert!(ok, "{err}");
    assert_eq!(out, "1\n1\n2\n");
    assert!(err.contains(r#"state: {"by_key":{"#), "{err}");
    assert!(err.contains("3 records in, 3 out; "), "{err}");
    assert!(
        err.contains(" per record (in the plugin, on this machine)"),
        "{err}"
    );

    // JSON lines carry the source record's offset and key; params and --input are taken.
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), "ok\nERROR disk\n").unwrap();
    let filter = example_plugin("filter-contains");
    let (ok, out, err) = plugin_test_here(
        &[
            filter.to_str().unwrap(),
            "--params",
            r#"{"substring":"ERROR"}"#,
            "--input",
            input.path().to_str().unwrap(),
            "--format",
            "json",
        ],
        b"",
    );
    assert!(ok, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["offset"], 1);
    assert_eq!(line["value"], "ERROR disk");
    assert!(!err.contains("state:"), "{err}");

    // A route plugin: records sent to another output say which.
    let route = example_plugin("route-contains");
    let route = route.to_str().unwrap();
    let params = ["--params", r#"{"substring":"ERROR"}"#];
    let (ok, out, err) = plugin_test_here(
        &[&[route][..], &params].concat(),
        b"ok
ERROR disk
fine
",
    );
    assert!(ok, "{err}");
    assert_eq!(out, "ok\n[output 1] ERROR disk\nfine\n");
    let json = [&[route][..], &params, &["--format", "json"]].concat();
    let (ok, out, err) = plugin_test_here(
        &json,
        b"ok
ERROR disk
",
    );
    assert!(ok, "{err}");
    let outputs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["output"].clone())
        .collect();
    assert_eq!(outputs, [serde_json::Value::Null, 1.into()]);

    // Failures are the broker's words: a panic with its offset, bad params.
    let faulty = example_plugin("faulty");
    let (ok, _, err) = plugin_test_here(&[faulty.to_str().unwrap()], b"a\npanic\n");
    assert!(!ok);
    assert!(
        err.contains("plugin \"faulty\" panicked at offset 1: index out of bounds"),
        "{err}"
    );
    let (ok, _, err) = plugin_test_here(&[filter.to_str().unwrap()], b"a\n");
    assert!(!ok);
    assert!(
        err.contains("bad params") && err.contains("substring"),
        "{err}"
    );

    // A registered plugin runs at the broker, with its state.
    let broker = Broker::start();
    broker.cli_ok(&["plugin", "register", "counts", counts]);
    let out = broker.cli_with_stdin(
        &["plugin", "test", "counts", "--key-separator", " "],
        b"a x\nb y\na z\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n1\n2\n");
    assert!(err.contains(r#"state: {"by_key":{"#), "{err}");
    assert!(err.contains("(at the broker, network included)"), "{err}");
}
