//! Test harness: starts the real `weir-broker` binary on a temp dir and a free port, and runs
//! the real `weir` CLI against it. Integration tests in `e2e/tests/` use it; nothing here is
//! mocked.
//!
//! The binaries are looked up next to the test executable's `target/<profile>/` directory, so
//! build them first (`cargo build --workspace --all-targets`; `scripts/test` does).

pub mod connect;
pub mod metrics;
pub mod postgres;
pub mod tls;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a broker may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `weir` command run to completion may take before the test fails (a hang,
/// not a slow machine: the longest, a short `weir bench`, takes seconds).
const CLI_TIMEOUT: Duration = Duration::from_secs(300);

/// A port free on 127.0.0.1 right now (for servers the tests start themselves).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Path of a workspace binary (`weir-broker`, `weir`) built beside the tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-exe>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (cargo build --workspace --all-targets)",
        path.display()
    );
    path
}

/// A running broker process on its own data dir.
pub struct Broker {
    child: Option<Child>,
    pub addr: String,
    /// With `--kafka-listen`: the address its `weir-broker kafka listening on` line named.
    pub kafka: Option<String>,
    data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    extra_args: Vec<String>,
}

impl Broker {
    /// Starts a broker on a fresh temp dir and a free port.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a broker with extra flags.
    pub fn start_with(args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let extra_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, addr, kafka) = spawn(&data_dir, "127.0.0.1:0", &extra_args);
        Self {
            child: Some(child),
            addr,
            kafka,
            data_dir,
            _tmp: Some(tmp),
            extra_args,
        }
    }

    /// Starts a broker on an existing data dir (a restored backup, say) and a free port; the
    /// directory is the caller's to remove.
    pub fn start_on(data_dir: &Path, args: &[&str]) -> Self {
        let extra_args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, addr, kafka) = spawn(data_dir, "127.0.0.1:0", &extra_args);
        Self {
            child: Some(child),
            addr,
            kafka,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
            extra_args,
        }
    }

    /// Kills the broker with SIGKILL (no flush, no goodbye) and waits for it to die.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9 the broker");
            c.wait().expect("reap the broker");
        }
    }

    /// Freezes the broker with SIGSTOP (its sockets stay open, it answers nothing): a broker
    /// cut off from the others, as a network partition would leave it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// The broker process's peak resident memory so far (`VmHWM` in /proc), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let c = self.child.as_ref().expect("broker is running");
        let status = std::fs::read_to_string(format!("/proc/{}/status", c.id()))
            .expect("read the broker's /proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in /proc status");
        kb * 1024
    }

    /// Wakes a paused broker with SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let c = self.child.as_ref().expect("broker is running");
        let status = Command::new("kill")
            .arg(sig)
            .arg(c.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig}");
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("broker is running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().expect("wait for broker") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same data dir and the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the broker before restarting it");
        // The Kafka listener comes back on the port it had (not a new one for port 0).
        let mut args = self.extra_args.clone();
        if let (Some(i), Some(at)) = (args.iter().position(|a| a == "--kafka-listen"), &self.kafka)
        {
            args[i + 1] = at.clone();
        }
        let (child, addr, kafka) = spawn(&self.data_dir, &self.addr, &args);
        assert_eq!(addr, self.addr);
        assert_eq!(kafka, self.kafka);
        self.child = Some(child);
    }

    /// Runs the stopped broker again (same data dir, port and flags) expecting it to refuse to
    /// start: waits up to `within` for it to exit and returns what it printed.
    pub fn start_refused(&self, within: Duration) -> Output {
        assert!(self.child.is_none(), "stop the broker first");
        let mut child = Command::new(bin("weir-broker"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(&self.addr)
            .args(&self.extra_args)
            .env("RUST_LOG", "warn,openraft=error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir-broker");
        let deadline = Instant::now() + within;
        while child.try_wait().expect("wait for the broker").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("broker output");
                panic!(
                    "the broker did not exit within {within:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("broker output")
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The token of the superuser a broker run with `--auth` made at its first start.
    pub fn admin_token(&self) -> String {
        let path = self.data_dir.join("admin.token");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// Runs the `weir` CLI against this broker.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with_stdin(args, b"")
    }

    pub fn cli_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = Command::new(bin("weir"));
        cmd.args(args).env("WEIR_BROKER", &self.addr);
        run_with_stdin(cmd, stdin, &format!("weir {}", args.join(" ")))
    }

    /// Starts the `weir` CLI against this broker without waiting for it (stdout piped, stderr
    /// inherited), e.g. a long-running `weir consume`.
    pub fn cli_spawn(&self, args: &[&str]) -> Child {
        Command::new(bin("weir"))
            .args(args)
            .env("WEIR_BROKER", &self.addr)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weir")
    }

    /// Runs the CLI and asserts success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "weir {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    pub async fn client(&self) -> weir::Client {
        weir::Client::connect(&self.addr)
            .await
            .expect("connect to broker")
    }

    /// Connects and creates topic `name` with `partitions` partitions (broker defaults).
    pub async fn client_with_topic(&self, name: &str, partitions: u32) -> weir::Client {
        let client = self.client().await;
        client
            .admin()
            .create_topic(weir::NewTopic::new(name, partitions))
            .await
            .expect("create topic");
        client
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `weir-broker` and reads its stdout lines: the gRPC address, and with
/// `--kafka-listen` the Kafka one (the pipe stays open, so the broker can write them).
fn spawn(data_dir: &Path, listen: &str, extra: &[String]) -> (Child, String, Option<String>) {
    // A restart may race the old socket's release: retry binding for a while.
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let mut child = Command::new(bin("weir-broker"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen)
            .args(extra)
            // openraft warns about benign vote races during elections.
            .env(
                "RUST_LOG",
                std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "warn,openraft=error".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weir-broker");
        let stdout = child.stdout.take().expect("broker stdout");
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        if let Some(addr) = line.trim().strip_prefix("weir-broker listening on ") {
            let kafka = extra.iter().any(|a| a == "--kafka-listen").then(|| {
                let mut line = String::new();
                let _ = stdout.read_line(&mut line);
                line.trim()
                    .strip_prefix("weir-broker kafka listening on ")
                    .unwrap_or_else(|| panic!("no kafka listening line: {line:?}"))
                    .to_string()
            });
            return (child, addr.to_string(), kafka);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(Instant::now() < deadline, "broker did not start: {line:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Brokers started together as one cluster (`--node-id`, `--cluster`), on 127.0.0.1 and free
/// ports; `brokers[i]` is node `i + 1`.
pub struct TestCluster {
    pub brokers: Vec<Broker>,
}

impl TestCluster {
    /// Starts `n` brokers listing each other.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, &[])
    }

    /// Starts `n` brokers listing each other, each with the extra flags `args`.
    pub fn start_with(n: usize, args: &[&str]) -> Self {
        // Hold every port until all are chosen, so no two brokers get the same one.
        let listeners: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("free port"))
            .collect();
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().expect("port").to_string())
            .collect();
        drop(listeners);
        let spec: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        let spec = spec.join(",");
        let brokers = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let tmp = tempfile::tempdir().expect("temp dir");
                let data_dir = tmp.path().join("data");
                let mut extra_args = vec![
                    "--node-id".to_string(),
                    (i + 1).to_string(),
                    "--cluster".to_string(),
                    spec.clone(),
                ];
                extra_args.extend(args.iter().map(|a| a.to_string()));
                let (child, bound, kafka) = spawn(&data_dir, addr, &extra_args);
                assert_eq!(&bound, addr);
                Broker {
                    child: Some(child),
                    addr: bound,
                    kafka,
                    data_dir,
                    _tmp: Some(tmp),
                    extra_args,
                }
            })
            .collect();
        Self { brokers }
    }

    /// Every member's address, comma-separated (a bootstrap list).
    pub fn bootstrap(&self) -> String {
        let addrs: Vec<&str> = self.brokers.iter().map(|b| b.addr.as_str()).collect();
        addrs.join(",")
    }
}

/// Path of an example plugin built to wasm by `scripts/build-plugins` (e.g. `uppercase`).
pub fn example_plugin(name: &str) -> PathBuf {
    let file = format!("{}.wasm", name.replace('-', "_"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-unknown-unknown/release")
        .join(file);
    assert!(
        path.exists(),
        "{} not found: build the example plugins first (scripts/build-plugins)",
        path.display()
    );
    path
}

/// Splits CLI output into lines.
pub fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// The example plugins of `plugins/examples/` and their kinds.
pub const EXAMPLE_PLUGINS: [(&str, &str); 6] = [
    ("count-by-key", "aggregate"),
    ("filter-contains", "filter"),
    ("json-threshold", "filter_map"),
    ("route-contains", "route"),
    ("split-words", "flat_map"),
    ("uppercase", "map"),
];

/// Registers every example plugin under its own name.
pub async fn register_examples(admin: &weir::Admin) {
    for (name, _) in EXAMPLE_PLUGINS {
        let wasm = std::fs::read(example_plugin(name)).unwrap();
        admin.register_plugin(name, wasm).await.unwrap();
    }
}

/// Reads until `idle` passes with nothing new.
pub async fn read_all(
    client: &weir::Client,
    topic: &str,
    config: weir::ConsumerConfig,
) -> Vec<weir::ConsumerRecord> {
    use futures::StreamExt;
    let mut c = client.consumer(topic, config).await.unwrap();
    let mut out = Vec::new();
    while let Ok(Some(r)) =
        tokio::time::timeout(std::time::Duration::from_millis(1500), c.next()).await
    {
        out.push(r.unwrap());
    }
    out
}

/// A record's value as UTF-8.
/// Every record of `topic` from the earliest offset, read through `via` (`weir consume
/// --format json`), by value: where it is stored, as (partition, offset). Asserts that no
/// value is stored twice (the tests' values are unique).
pub fn stored_once_by_value(
    via: &Broker,
    topic: &str,
) -> std::collections::HashMap<String, Vec<(u32, u64)>> {
    let out = via.cli_ok(&[
        "consume",
        topic,
        "--from",
        "earliest",
        "--format",
        "json",
        "--idle-timeout",
        "2000",
    ]);
    let mut stored: std::collections::HashMap<String, Vec<(u32, u64)>> = Default::default();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON record");
        stored
            .entry(v["value"].as_str().expect("a text value").to_string())
            .or_default()
            .push((
                v["partition"].as_u64().expect("a partition") as u32,
                v["offset"].as_u64().expect("an offset"),
            ));
    }
    assert_eq!(stored.len(), out.lines().count(), "no record twice");
    stored
}

pub fn text(r: &weir::ConsumerRecord) -> String {
    String::from_utf8(r.value.to_vec()).unwrap()
}

/// A module that passes registration but misbehaves in `weir_process`.
pub fn hostile_plugin(process_body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
          (memory (export "memory") 1)
          (global $heap (mut i32) (i32.const 1024))
          (func (export "weir_abi_version") (result i32) (i32.const 2))
          (func (export "weir_kind") (result i32) (i32.const 1))
          (func (export "weir_alloc") (param $n i32) (result i32) (local $p i32)
            (local.set $p (global.get $heap))
            (global.set $heap (i32.add (global.get $heap) (local.get $n)))
            (local.get $p))
          (func (export "weir_init") (param i32 i32) (result i32) (i32.const 0))
          (func (export "weir_process") (param i32 i32) (result i32) {process_body})
          (func (export "weir_result_ptr") (result i32) (i32.const 0))
          (func (export "weir_result_len") (result i32) (i32.const 8)))"#
    ))
    .unwrap()
}

/// Line `i` of the sample log the plugin tests use: every tenth is an error.
pub fn sample_log_line(i: usize) -> String {
    if i.is_multiple_of(10) {
        format!("line {i} ERROR disk full")
    } else {
        format!("line {i} ok")
    }
}

/// Order `i` of the sample orders (JSON; amount = 10 i).
pub fn sample_order(i: usize) -> String {
    format!(r#"{{"id":{i},"amount":{},"note":"n{i}"}}"#, i * 10)
}

/// Runs `call` on a plain gRPC channel to `via` (the raw RPCs, no SDK routing).
pub fn raw<T, Fut>(via: &Broker, call: impl FnOnce(tonic::transport::Channel) -> Fut) -> T
where
    Fut: std::future::Future<Output = T>,
{
    let url = format!("http://{}", via.addr);
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async move {
            let channel = tonic::transport::Endpoint::from_shared(url)
                .expect("url")
                .connect()
                .await
                .expect("connect");
            call(channel).await
        })
}

/// `Cluster.GetMetadata` through `via`: the brokers and where `topics`' partitions live.
pub fn metadata(via: &Broker, topics: &[&str]) -> weir_proto::v1::MetadataResponse {
    let topics = topics.iter().map(|t| t.to_string()).collect();
    raw(via, |ch| async move {
        weir_proto::v1::cluster_client::ClusterClient::new(ch)
            .get_metadata(weir_proto::v1::MetadataRequest { topics })
            .await
            .expect("metadata")
            .into_inner()
    })
}

/// Runs `cmd` to its end, feeding it `stdin` and capturing its output. A command that never
/// exits fails its test by name (`what`): it is killed with SIGKILL after `CLI_TIMEOUT`.
pub fn run_with_stdin(mut cmd: Command, stdin: &[u8], what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{what}`: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let pid = child.id().to_string();
    let (exited, exit) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let hung = exit.recv_timeout(CLI_TIMEOUT).is_err();
        if hung {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        hung
    });
    let out = child.wait_with_output().expect("command output");
    let _ = exited.send(());
    writer.join().expect("stdin writer");
    assert!(
        !watchdog.join().expect("watchdog"),
        "`{what}` did not exit within {CLI_TIMEOUT:?}"
    );
    out
}
