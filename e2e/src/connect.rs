//! Helpers for the connector tests: `weir connect run` as a child process next to a broker.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Broker, bin};

/// Starts `weir connect run config` against `broker`.
pub fn connect_run(broker: &Broker, config: &Path) -> Child {
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

pub fn kill9(mut c: Child) {
    c.kill().expect("kill -9 the connector");
    c.wait().expect("reap the connector");
}

/// SIGTERM, and the exit must be clean.
pub fn terminate(mut c: Child) {
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

pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Waits until `path` holds `n` lines (or fails after `timeout`).
pub fn wait_for_lines(path: &Path, n: usize, timeout: Duration) -> Vec<String> {
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

pub fn status_lines(broker: &Broker, config: &Path) -> Vec<Vec<String>> {
    let out = broker.cli_ok(&["connect", "status", config.to_str().unwrap()]);
    out.lines()
        .skip(1)
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("connect.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A broker with `topic` (`partitions`), and a temp dir holding `connect.toml` = `config`.
pub async fn setup(
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
