//! The container recipes, tested without a container engine (none runs here; docs/deploy.md,
//! "Containers"): the image's entrypoint (packaging/docker/entrypoint.sh) starts the broker
//! from the environment that docker-compose.yml and examples/kubernetes/weir.yaml give each
//! member; the members form one cluster (ids from the compose file, or from the StatefulSet
//! pods' ordinals); the Dockerfile's HEALTHCHECK command answers SERVING; SIGTERM, which the
//! entrypoint hands straight to the broker, stops each cleanly.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use weir_e2e::bin;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The entrypoint as the image runs it: only the given environment, and a PATH on which the
/// built binaries come first (the image has them in /usr/local/bin).
fn entrypoint(env: &BTreeMap<String, String>, args: &[&str]) -> Command {
    let dir = bin("weir-broker").parent().unwrap().to_path_buf();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", dir.display());
    let mut c = Command::new("/bin/sh");
    c.arg(repo().join("packaging/docker/entrypoint.sh"))
        .args(args)
        .env_clear()
        .env("PATH", path)
        .env("RUST_LOG", "warn,openraft=error")
        .envs(env);
    c
}

/// A broker the entrypoint started.
struct Member {
    child: Child,
    addr: String,
}

impl Member {
    fn start(env: &BTreeMap<String, String>) -> Member {
        let mut child = entrypoint(env, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run the entrypoint");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("weir-broker listening on ")
            .unwrap_or_else(|| panic!("no listening line from the entrypoint: {line:?}"))
            .to_string();
        Member { child, addr }
    }

    /// SIGTERM to the entrypoint's process, which is the broker (exec): it must exit 0.
    fn terminate(mut self) {
        sigterm(&self.child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "the broker exited with {s} after SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to `child`.
fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success(), "kill -TERM {pid}");
}

fn weir(addr: &str, args: &[&str]) -> Output {
    Command::new(bin("weir"))
        .args(args)
        .env("WEIR_BROKER", addr)
        .stdin(Stdio::null())
        .output()
        .expect("run weir")
}

/// The Dockerfile's HEALTHCHECK command, pointed at `addr` instead of the container's port.
fn healthcheck(addr: &str) -> Output {
    let dockerfile = read("Dockerfile");
    let json = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("CMD "))
        .expect("a HEALTHCHECK CMD in the Dockerfile");
    let argv: Vec<String> = serde_json::from_str(json).expect("CMD in exec form");
    assert_eq!(argv[0], "weir");
    let args: Vec<String> = argv[1..]
        .iter()
        .map(|a| a.replace("127.0.0.1:9292", addr))
        .collect();
    Command::new(bin("weir"))
        .args(&args)
        .output()
        .expect("run the health check")
}

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn yaml_env(list_or_map: &Yaml) -> BTreeMap<String, String> {
    match list_or_map {
        // compose: `KEY: "value"`.
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().into(), v.as_str().unwrap().into()))
            .collect(),
        // Kubernetes: `- name: KEY / value: "value"`.
        Yaml::Array(a) => a
            .iter()
            .map(|e| {
                let (k, v) = (e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
                (k.into(), v.into())
            })
            .collect(),
        other => panic!("an environment must be a map or a list, not {other:?}"),
    }
}

/// Starts one member per (host name, environment) with the cluster's addresses moved to free
/// local ports (the names resolve only inside a compose network or a Kubernetes cluster),
/// waits for a controller, then uses the cluster and stops each member with SIGTERM.
fn run_cluster(members: Vec<(String, BTreeMap<String, String>)>) {
    let spec = members[0].1["WEIR_CLUSTER"].clone();
    assert!(members.iter().all(|(_, e)| e["WEIR_CLUSTER"] == spec));
    let mut local = BTreeMap::new();
    for entry in spec.split(',') {
        let (id, addr) = entry.split_once('=').unwrap();
        local.insert(id.to_string(), (addr.to_string(), free_addr()));
    }
    let mut rewritten = spec.clone();
    for (addr, port) in local.values() {
        rewritten = rewritten.replace(addr.as_str(), port);
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut started = Vec::new();
    for (host, env) in &members {
        // The id the member will have: given, or its host name's ordinal + 1.
        let id = env.get("WEIR_NODE_ID").cloned().unwrap_or_else(|| {
            let ordinal: u64 = host.rsplit('-').next().unwrap().parse().unwrap();
            (ordinal + 1).to_string()
        });
        let (name, listen) = &local[&id];
        assert!(name.starts_with(host.as_str()), "{host} is not {name}");
        let mut env = env.clone();
        env.insert("WEIR_CLUSTER".into(), rewritten.clone());
        env.insert("WEIR_LISTEN".into(), listen.clone());
        env.insert("WEIR_METRICS_LISTEN".into(), "127.0.0.1:0".into());
        env.insert("HOSTNAME".into(), host.clone());
        let data = tmp.path().join(host);
        env.insert("WEIR_DATA_DIR".into(), data.to_str().unwrap().into());
        let m = Member::start(&env);
        assert_eq!(
            &m.addr, listen,
            "{host} listens where the cluster expects node {id}"
        );
        started.push(m);
    }
    let first = started[0].addr.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = weir(&first, &["cluster", "status"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.lines().count() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no cluster: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ok = |args: &[&str], stdin: Option<&str>| {
        let out = match stdin {
            None => weir(&first, args),
            Some(s) => {
                let mut c = Command::new(bin("weir"))
                    .args(args)
                    .env("WEIR_BROKER", &first)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                std::io::Write::write_all(&mut c.stdin.take().unwrap(), s.as_bytes()).unwrap();
                c.wait_with_output().unwrap()
            }
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "weir {}: {err}", args.join(" "));
        String::from_utf8(out.stdout).unwrap()
    };
    ok(
        &[
            "topic",
            "create",
            "t",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
        None,
    );
    ok(&["produce", "t"], Some("one\ntwo\nthree\n"));
    let read = ok(
        &[
            "consume",
            "t",
            "--from",
            "earliest",
            "--max",
            "3",
            "--idle-timeout",
            "10000",
        ],
        None,
    );
    let mut values: Vec<&str> = read.lines().collect();
    values.sort_unstable();
    assert_eq!(values, ["one", "three", "two"]);
    for m in started.into_iter().rev() {
        let h = healthcheck(&m.addr);
        assert!(h.status.success(), "{}", String::from_utf8_lossy(&h.stderr));
        m.terminate();
    }
}

#[test]
fn the_entrypoint_serves_passes_the_health_check_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let env: BTreeMap<String, String> = [
        ("WEIR_DATA_DIR", tmp.path().join("data").to_str().unwrap()),
        ("WEIR_LISTEN", "127.0.0.1:0"),
        ("WEIR_METRICS_LISTEN", "127.0.0.1:0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let m = Member::start(&env);
    let h = healthcheck(&m.addr);
    assert!(h.status.success(), "{}", String::from_utf8_lossy(&h.stderr));
    assert_eq!(String::from_utf8_lossy(&h.stdout).trim(), "SERVING");
    assert!(
        tmp.path().join("data/db").is_dir(),
        "the data dir is WEIR_DATA_DIR"
    );
    let addr = m.addr.clone();
    m.terminate();
    // Nothing answers now: the health check fails, with a reason.
    let h = healthcheck(&addr);
    assert!(!h.status.success());
    assert!(String::from_utf8_lossy(&h.stderr).starts_with("error:"));

    // Bad settings stop the entrypoint with a reason, before any broker starts.
    let mut bad = env.clone();
    bad.insert("WEIR_CLUSTER".into(), "1=127.0.0.1:1".into());
    bad.insert("HOSTNAME".into(), "weir".into());
    let out = entrypoint(&bad, &[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("set WEIR_NODE_ID"), "{err}");
    let mut bad = env.clone();
    bad.insert("WEIR_AUTH".into(), "yes".into());
    let out = entrypoint(&bad, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    // A command instead of flags runs that command (`docker run weir weir --version`).
    let out = entrypoint(&env, &["weir", "--version"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("weir "));
}

#[test]
fn the_compose_files_three_brokers_form_a_cluster_through_the_entrypoint() {
    let docs = YamlLoader::load_from_str(&read("docker-compose.yml")).unwrap();
    let services = docs[0]["services"].as_hash().expect("services");
    let members: Vec<(String, BTreeMap<String, String>)> = services
        .values()
        .map(|s| {
            let host = s["hostname"].as_str().expect("a hostname").to_string();
            (host, yaml_env(&s["environment"]))
        })
        .collect();
    assert_eq!(members.len(), 3);
    run_cluster(members);
}

#[test]
fn the_kubernetes_statefulsets_pods_take_their_ids_from_their_ordinals() {
    let docs = YamlLoader::load_from_str(&read("examples/kubernetes/weir.yaml")).unwrap();
    let set = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("StatefulSet"))
        .expect("a StatefulSet");
    let name = set["metadata"]["name"].as_str().unwrap();
    let replicas = set["spec"]["replicas"].as_i64().unwrap();
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let env = yaml_env(&container["env"]);
    assert!(
        !env.contains_key("WEIR_NODE_ID"),
        "ids come from the ordinals"
    );
    // The probes use the gRPC health service on the broker's port.
    assert_eq!(
        container["readinessProbe"]["grpc"]["port"].as_i64(),
        Some(9292)
    );
    let members = (0..replicas)
        .map(|i| (format!("{name}-{i}"), env.clone()))
        .collect();
    run_cluster(members);
}

/// The packaged unit is `Type=notify`: systemd waits for READY=1 on NOTIFY_SOCKET, sent once
/// the port accepts, and is told STOPPING=1 when SIGTERM arrives.
#[test]
fn under_systemd_the_broker_says_when_it_is_ready_and_when_it_stops() {
    use std::os::unix::net::UnixDatagram;
    let tmp = tempfile::tempdir().unwrap();
    let socket_path = tmp.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = Command::new(bin("weir-broker"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("weir-broker listening on ")
        .unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(
        ready.contains(&format!("STATUS=serving on {addr}")),
        "{ready:?}"
    );
    // Ready means serving.
    assert!(weir(addr, &["admin", "health"]).status.success());
    sigterm(&child);
    let n = socket.recv(&mut buf).expect("a notification at SIGTERM");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}
