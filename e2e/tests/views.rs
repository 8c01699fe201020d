//! Views against real brokers through the CLI: a topic's records through a chain of plugins,
//! read as a read-only topic at the source's offsets, by plain and group consumers; what is
//! refused and why; views surviving a crash; and, in a cluster, views in the replicated
//! metadata, answered the same by every member and read at the source's leaders.

use weir_e2e::{Broker, TestCluster, example_plugin, lines};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Produces `n` keyed lines to `topic`: every third one holds "ERROR".
fn produce_log(broker: &Broker, topic: &str, from: usize, n: usize) {
    let input: String = (from..from + n)
        .map(|i| {
            let level = if i % 3 == 0 { "ERROR" } else { "ok" };
            format!("k{}:line{i} {level}\n", i % 5)
        })
        .collect();
    let out = broker.cli_with_stdin(
        &["produce", topic, "--key-separator", ":"],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `(partition, offset, value)` of every record `consume --format json` printed.
fn records(json_lines: &str) -> Vec<(u64, u64, String)> {
    let mut out: Vec<(u64, u64, String)> = lines(json_lines)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            (
                v["partition"].as_u64().unwrap(),
                v["offset"].as_u64().unwrap(),
                v["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_view_reads_its_source_through_a_chain_at_the_sources_offsets_and_survives_a_crash() {
    let mut broker = Broker::start();
    broker.cli_ok(&["topic", "create", "logs", "--partitions", "3"]);
    for (name, file) in [
        ("grep", "filter-contains"),
        ("upper", "uppercase"),
        ("count", "count-by-key"),
    ] {
        let path = example_plugin(file);
        broker.cli_ok(&["plugin", "register", name, path.to_str().unwrap()]);
    }
    produce_log(&broker, "logs", 0, 300);
    let created = broker.cli_ok(&[
        "view",
        "create",
        "errors",
        "--from",
        "logs",
        "--plugin",
        r#"grep={"substring":"ERROR"}"#,
        "--plugin",
        "upper",
    ]);
    assert_eq!(
        created.trim(),
        r#"created view errors of logs: grep={"substring":"ERROR"} | upper"#
    );
    assert_eq!(
        broker.cli_ok(&["view", "list"]),
        "errors\tlogs\tgrep={\"substring\":\"ERROR\"} | upper\n"
    );
    assert_eq!(
        broker.cli_ok(&["topic", "list"]),
        "errors\t3\tview of logs\nlogs\t3\n"
    );
    let described = broker.cli_ok(&["view", "describe", "errors"]);
    let rows = lines(&described);
    assert_eq!(
        rows[..4],
        [
            "name\terrors",
            "from\tlogs",
            "plugins\tgrep={\"substring\":\"ERROR\"} | upper",
            "partition\tearliest\tlatest"
        ]
    );
    assert_eq!(rows.len(), 7, "{described}");

    // Exactly the source's ERROR records, uppercased, each at its offset in the source.
    let source = records(&broker.cli_ok(&[
        "consume",
        "logs",
        "--from",
        "earliest",
        "--format",
        "json",
        "--idle-timeout",
        "2000",
    ]));
    assert_eq!(source.len(), 300);
    let want: Vec<(u64, u64, String)> = source
        .iter()
        .filter(|(_, _, v)| v.contains("ERROR"))
        .map(|(p, o, v)| (*p, *o, v.to_uppercase()))
        .collect();
    assert_eq!(want.len(), 100);
    let read = |broker: &Broker, extra: &[&str]| {
        let mut args = vec![
            "consume",
            "errors",
            "--format",
            "json",
            "--idle-timeout",
            "2000",
        ];
        args.extend_from_slice(extra);
        records(&broker.cli_ok(&args))
    };
    assert_eq!(read(&broker, &["--from", "earliest"]), want);

    // A group reads it, commits past the records the chain leaves out, and resumes there.
    assert_eq!(read(&broker, &["--group", "alerts"]), want);
    let table = broker.cli_ok(&["group", "describe", "alerts"]);
    let committed: Vec<Vec<&str>> = lines(&table)[1..]
        .iter()
        .map(|r| r.split('\t').collect())
        .collect();
    assert_eq!(committed.len(), 3, "{table}");
    for row in &committed {
        assert_eq!(row[0], "errors");
        assert_eq!(row[2], row[3], "committed at the end, lag 0: {table}");
    }

    // Refused, with the reason: writes to a view, a view of a view, stateful plugins, a
    // name that is taken, deleting the source or a plugin the view uses, deleting the view
    // as a topic.
    let refusals: [(&[&str], &str); 7] = [
        (
            &["produce", "errors"],
            "is a view of topic \"logs\" and is read-only",
        ),
        (
            &[
                "view", "create", "v2", "--from", "errors", "--plugin", "upper",
            ],
            "\"errors\" is a view",
        ),
        (
            &[
                "view", "create", "v3", "--from", "logs", "--plugin", "count",
            ],
            "aggregate",
        ),
        (
            &[
                "view", "create", "logs", "--from", "logs", "--plugin", "upper",
            ],
            "already exists",
        ),
        (&["topic", "delete", "logs"], "read by view(s) errors"),
        (&["plugin", "delete", "grep"], "used by view(s) errors"),
        (&["topic", "delete", "errors"], "weir view delete errors"),
    ];
    for (args, why) in refusals {
        let out = broker.cli_with_stdin(args, b"x\n");
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(
            err.starts_with("error: ") && err.contains(why),
            "{args:?}: {err}"
        );
    }
    let bad_params = broker.cli(&["view", "create", "v4", "--from", "logs", "--plugin", "grep"]);
    assert!(
        stderr(&bad_params).contains("substring"),
        "{}",
        stderr(&bad_params)
    );
    assert_eq!(lines(&broker.cli_ok(&["view", "list"])).len(), 1);

    // After a crash: the view, its chain and the group's offsets are there; the group
    // resumes with what came after.
    broker.kill9();
    broker.restart();
    assert_eq!(
        broker.cli_ok(&["view", "list"]),
        "errors\tlogs\tgrep={\"substring\":\"ERROR\"} | upper\n"
    );
    produce_log(&broker, "logs", 300, 60);
    let next = read(&broker, &["--group", "alerts"]);
    assert_eq!(next.len(), 20, "{next:?}");
    assert!(
        next.iter()
            .all(|(_, o, v)| *o >= 60 && v.ends_with(" ERROR")),
        "{next:?}"
    );

    // Deleted: gone from both lists, and the source can go too.
    assert_eq!(
        broker.cli_ok(&["view", "delete", "errors"]).trim(),
        "deleted view errors"
    );
    assert_eq!(broker.cli_ok(&["view", "list"]), "");
    assert_eq!(broker.cli_ok(&["topic", "list"]), "logs\t3\n");
    let gone = broker.cli(&["consume", "errors", "--max", "1"]);
    assert!(
        stderr(&gone).contains("does not exist"),
        "{}",
        stderr(&gone)
    );
    broker.cli_ok(&["topic", "delete", "logs"]);
}

#[test]
fn a_clusters_views_are_in_its_metadata_and_read_at_the_sources_leaders() {
    let cluster = TestCluster::start(3);
    let (a, b, c) = (
        &cluster.brokers[0],
        &cluster.brokers[1],
        &cluster.brokers[2],
    );
    a.cli_ok(&[
        "topic",
        "create",
        "logs",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
    ]);
    let path = example_plugin("filter-contains");
    a.cli_ok(&["plugin", "register", "grep", path.to_str().unwrap()]);
    // Created through one member, listed the same by every other.
    b.cli_ok(&[
        "view",
        "create",
        "errors",
        "--from",
        "logs",
        "--plugin",
        r#"grep={"substring":"ERROR"}"#,
    ]);
    for m in [a, b, c] {
        assert_eq!(
            m.cli_ok(&["view", "list"]),
            "errors\tlogs\tgrep={\"substring\":\"ERROR\"}\n"
        );
    }
    produce_log(c, "logs", 0, 90);
    // Read through a member that leads some partitions and not others: the client goes to
    // each source partition's leader.
    let bootstrap = cluster.bootstrap();
    let out = a.cli_ok(&[
        "--broker",
        &bootstrap,
        "consume",
        "errors",
        "--from",
        "earliest",
        "--format",
        "json",
        "--idle-timeout",
        "3000",
    ]);
    let got = records(&out);
    assert_eq!(got.len(), 30, "{out}");
    assert!(got.iter().all(|(_, _, v)| v.ends_with(" ERROR")));
    let refused = a.cli(&["topic", "delete", "logs"]);
    assert!(
        stderr(&refused).contains("read by view(s) errors"),
        "{}",
        stderr(&refused)
    );
    c.cli_ok(&["view", "delete", "errors"]);
    for m in [a, b, c] {
        assert_eq!(m.cli_ok(&["view", "list"]), "");
    }
}
