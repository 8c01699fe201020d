//! `weir connect run`: connectors as a separate process next to a real broker, killed
//! mid-stream and started again.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_e2e::{Broker, bin, read_all, register_examples, text};

/// Starts `weir connect run config` against `broker`.
fn connect_run(broker: &Broker, config: &Path) -> Child {
    Command::new(bin("weir"))
        .args(["connect", "run"])
        .arg(config)
        .env("WEIR_BROKER", &broker.addr)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn weir connect run")
}

fn kill9(mut c: Child) {
    c.kill().expect("kill -9 the connector");
    c.wait().expect("reap the connector");
}

/// SIGTERM, and the exit must be clean.
fn terminate(mut c: Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = c.try_wait().expect("wait") {
            assert!(s.success(), "weir connect run exited with {s}");
            return;
        }
        assert!(Instant::now() < deadline, "the connector ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Waits until `path` holds `n` lines (or fails after `timeout`).
fn wait_for_lines(path: &Path, n: usize, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = read_lines(path);
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} of {n} lines",
            path.display(),
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status_lines(broker: &Broker, config: &Path) -> Vec<Vec<String>> {
    let out = broker.cli_ok(&["connect", "status", config.to_str().unwrap()]);
    out.lines()
        .skip(1)
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("connect.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A broker with `topic` (`partitions`), and a temp dir holding `connect.toml` = `config`.
async fn setup(
    topic: &str,
    partitions: u32,
    config: &str,
) -> (Broker, weir::Client, tempfile::TempDir, PathBuf) {
    let broker = Broker::start();
    let client = broker.client_with_topic(topic, partitions).await;
    let tmp = tempfile::tempdir().unwrap();
    let path = write_config(tmp.path(), config);
    (broker, client, tmp, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_to_file_moves_every_line_exactly_once_across_kill_9_and_rotation() {
    let (broker, client, tmp, config) = setup(
        "events",
        3,
        r#"
[[source]]
name = "in"
type = "file"
path = "in.txt"
topic = "events"

[[sink]]
name = "out"
type = "file"
topic = "events"
group = "export"
session_timeout_ms = 1000
path = "out.txt"
"#,
    )
    .await;
    let input = tmp.path().join("in.txt");
    let output = tmp.path().join("out.txt");
    // Bursts large enough that a kill often lands while a chunk is only partly produced.
    const BURSTS: usize = 20;
    const PER_BURST: usize = 10_000;
    let total = BURSTS * PER_BURST;
    let writer = {
        let input = input.clone();
        std::thread::spawn(move || {
            for b in 0..BURSTS {
                if b == BURSTS / 2 {
                    // Rotation while the connector runs (or is down).
                    std::fs::rename(&input, input.with_extension("txt.1")).unwrap();
                }
                let burst: String = (0..PER_BURST)
                    .map(|i| format!("line-{}\n", b * PER_BURST + i))
                    .collect();
                append(&input, &burst);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut runner = connect_run(&broker, &config);
    // Kill -9 the connector process mid-stream, again and again, and start it again.
    for k in 0..4 {
        std::thread::sleep(Duration::from_millis(500 + 150 * k));
        kill9(runner);
        runner = connect_run(&broker, &config);
    }
    writer.join().unwrap();
    let lines = wait_for_lines(&output, total, Duration::from_secs(90));
    terminate(runner);

    let expected: BTreeSet<String> = (0..total).map(|i| format!("line-{i}")).collect();
    let written: BTreeSet<String> = lines.iter().cloned().collect();
    assert_eq!(lines.len(), total, "no line is written twice");
    assert_eq!(written, expected, "every line is written");
    // Also exactly once in the topic.
    let records = read_all(&client, "events", weir::ConsumerConfig::default()).await;
    let values: BTreeSet<String> = records.iter().map(text).collect();
    assert_eq!(records.len(), total, "no line is produced twice");
    assert_eq!(values, expected);
    assert!(
        records
            .iter()
            .all(|r| r.headers.iter().any(|h| h.key == "weir-connect")),
        "records carry their source tag"
    );
    // The group committed what the sink wrote.
    let lag: u64 = client
        .admin()
        .describe_group("export")
        .await
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.lag.unwrap_or(u64::MAX))
        .sum();
    assert_eq!(lag, 0);

    let status = status_lines(&broker, &config);
    assert_eq!(status.len(), 2, "{status:?}");
    assert_eq!(
        &status[0][..5],
        ["in", "source", "file", "events", "stopped"]
    );
    assert_eq!(
        &status[1][..5],
        ["out", "sink", "file", "events", "stopped"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_transform_before_produce_and_before_writing_out() {
    let (broker, client, tmp, config) = setup(
        "words",
        2,
        r#"
[[source]]
type = "file"
path = "in.jsonl"
format = "json"
key_field = "user"
topic = "words"
plugins = [["uppercase"]]

[[sink]]
type = "file"
topic = "words"
group = "export"
path = "out.txt"
plugins = [["filter-contains", { substring = "ALICE" }]]
"#,
    )
    .await;
    register_examples(&client.admin()).await;
    let input = tmp.path().join("in.jsonl");
    append(
        &input,
        "{\"user\":\"alice\",\"n\":1}\nnot json\n{\"user\":\"bob\",\"n\":2}\n{\"user\":\"alice\",\"n\":3}\n",
    );
    let runner = connect_run(&broker, &config);
    let lines = wait_for_lines(&tmp.path().join("out.txt"), 2, Duration::from_secs(30));
    terminate(runner);
    let mut lines = lines;
    lines.sort();
    assert_eq!(
        lines,
        [r#"{"USER":"ALICE","N":1}"#, r#"{"USER":"ALICE","N":3}"#]
    );
    // The topic has every valid line, uppercased, keyed by its user.
    let records = read_all(&client, "words", weir::ConsumerConfig::default()).await;
    let mut keyed: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            let key = String::from_utf8(r.key.clone().unwrap_or_default().to_vec()).unwrap();
            (key, text(r))
        })
        .collect();
    keyed.sort();
    assert_eq!(keyed.len(), 3, "{keyed:?}");
    assert_eq!(keyed[2].1, r#"{"USER":"BOB","N":2}"#);
    let status = status_lines(&broker, &config);
    assert_eq!(
        status[0][5..7],
        ["3", "1"],
        "3 records, 1 line skipped: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_cannot_run_says_why_and_the_others_go_on() {
    let (broker, _client, tmp, config) = setup(
        "events",
        1,
        r#"
[[source]]
name = "good"
type = "file"
path = "in.txt"
topic = "events"

[[source]]
name = "no-plugin"
type = "file"
path = "other.txt"
topic = "events"
plugins = [["no-such-plugin"]]

[[source]]
name = "no-topic"
type = "file"
path = "other.txt"
topic = "missing"

[[sink]]
name = "out"
type = "file"
topic = "events"
group = "g"
path = "out.txt"
"#,
    )
    .await;
    append(&tmp.path().join("in.txt"), "a\nb\n");
    let runner = connect_run(&broker, &config);
    wait_for_lines(&tmp.path().join("out.txt"), 2, Duration::from_secs(30));
    // Failed connectors show their reason while the runner retries them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = status_lines(&broker, &config);
        if status[1][4] == "failed" && status[2][4] == "failed" {
            break status;
        }
        assert!(Instant::now() < deadline, "{status:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status[0][4], "running");
    assert!(status[1][8].contains("no-such-plugin"), "{status:?}");
    assert!(status[2][8].contains("missing"), "{status:?}");
    terminate(runner);

    // A second runner on the same state directory is refused; so is a bad file.
    let runner = connect_run(&broker, &config);
    std::thread::sleep(Duration::from_millis(500));
    let out = broker.cli(&["connect", "run", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another `weir connect run`"), "{err}");
    terminate(runner);
    let bad = write_config(
        tmp.path(),
        "[[source]]\ntype = \"file\"\npath = \"x\"\ntopic = \"t\"\ncolour = 1\n",
    );
    let out = broker.cli(&["connect", "run", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.contains("colour"),
        "{err}"
    );
}
