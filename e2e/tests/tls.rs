//! TLS on the gRPC port: a round trip through the SDK and the CLI, plain-text and untrusting
//! clients refused, client certificates required with `--tls-client-ca`, bad files refused at
//! start.

use weir::{Client, ClientOptions, ProducerConfig, ProducerRecord, TlsConfig};
use weir_e2e::tls::{CertFiles, TestCa};
use weir_e2e::{Broker, TestCluster};

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn tls_broker(server: &CertFiles, extra: &[&str]) -> Broker {
    let mut args = vec![
        "--tls-cert",
        path(&server.cert),
        "--tls-key",
        path(&server.key),
    ];
    args.extend_from_slice(extra);
    Broker::start_with(&args)
}

/// Whether a client with `options` can list topics at `broker`; the error otherwise.
async fn try_list(broker: &Broker, options: ClientOptions) -> Result<(), weir::Error> {
    let client = Client::connect_with(&broker.addr, options).await?;
    client.admin().list_topics().await.map(drop)
}

/// A refusal at the transport level (the TLS handshake, or the HTTP/2 preface on a TLS port,
/// failed): the client never reached a service, unlike a served call's error. Its message.
fn refused(r: Result<(), weir::Error>) -> String {
    match r {
        Err(e @ (weir::Error::Connect { .. } | weir::Error::Unavailable(_))) => e.to_string(),
        other => panic!("expected a connection refused by TLS, got {other:?}"),
    }
}

/// Produces `n` keyed records to `topic` (acks=all) and reads every one back.
async fn round_trip(client: &Client, topic: &str, n: usize) {
    let producer = client.producer(ProducerConfig::default());
    for i in 0..n {
        producer
            .enqueue(ProducerRecord::new(topic, format!("r{i}")).key(format!("k{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let read = weir_e2e::read_all(client, topic, weir::ConsumerConfig::default()).await;
    assert_eq!(read.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_round_trip_over_tls_and_plain_text_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "weir");
    let broker = tls_broker(&ca.server("broker"), &[]);
    let tls = TlsConfig::with_ca_file(ca.ca_file()).unwrap();
    let client = Client::connect_with(&broker.addr, ClientOptions::tls(tls))
        .await
        .unwrap();
    client
        .admin()
        .create_topic(weir::NewTopic::new("secure", 2))
        .await
        .unwrap();
    round_trip(&client, "secure", 100).await;

    // Plain text, and TLS trusting another CA, are refused.
    refused(try_list(&broker, ClientOptions::default()).await);
    let rogue = TestCa::new(dir.path(), "rogue");
    let untrusting = ClientOptions::tls(TlsConfig::with_ca_pem(rogue.ca_pem()));
    let err = refused(try_list(&broker, untrusting).await);
    assert!(err.contains("certificate"), "{err}");
    // The broker serves on.
    assert_eq!(client.admin().list_topics().await.unwrap().len(), 1);

    // The CLI: --tls-ca works (status included); without it, one error line and exit 1.
    let ca_file = ca.ca_file();
    let tls_args = ["--tls-ca", path(&ca_file)];
    let listed = broker.cli_ok(&[&tls_args[..], &["topic", "list"]].concat());
    assert_eq!(listed, "secure\t2\n");
    let out = broker.cli(&[&tls_args[..], &["status"]].concat());
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("SERVING"));
    let out = broker.cli(&["topic", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1,
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_with_its_certificates_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "weir");
    let ca_file = ca.ca_file();
    let broker = tls_broker(&ca.server("broker"), &["--tls-client-ca", path(&ca_file)]);
    let trusting = || TlsConfig::with_ca_file(&ca_file).unwrap();

    refused(try_list(&broker, ClientOptions::tls(trusting())).await);
    let app = ca.client("app");
    let known = || trusting().identity_files(&app.cert, &app.key).unwrap();
    try_list(&broker, ClientOptions::tls(known()))
        .await
        .unwrap();
    let rogue = TestCa::new(dir.path(), "rogue").client("intruder");
    let stranger = trusting().identity_files(&rogue.cert, &rogue.key).unwrap();
    refused(try_list(&broker, ClientOptions::tls(stranger)).await);
    // Refusing them cost the broker nothing: a known client is served.
    try_list(&broker, ClientOptions::tls(known()))
        .await
        .unwrap();

    let with_cert = [
        "--tls-ca",
        path(&ca_file),
        "--tls-cert",
        path(&app.cert),
        "--tls-key",
        path(&app.key),
    ];
    broker.cli_ok(&[&with_cert[..], &["topic", "create", "t"]].concat());
    let out = broker.cli(&["--tls-ca", path(&ca_file), "topic", "list"]);
    assert!(!out.status.success());
}

#[test]
fn bad_tls_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "weir");
    let server = ca.server("broker");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(weir_e2e::bin("weir-broker"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .expect("run weir-broker");
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--tls-cert", path(&server.cert)]);
    assert!(err.contains("needs both --tls-cert and --tls-key"), "{err}");
    let missing = dir.path().join("nope.pem");
    let err = run(&["--tls-cert", path(&missing), "--tls-key", path(&server.key)]);
    assert!(err.contains("nope.pem"), "{err}");
    // A key that is not the certificate's.
    let other = ca.server("other");
    let err = run(&[
        "--tls-cert",
        path(&server.cert),
        "--tls-key",
        path(&other.key),
    ]);
    assert!(err.contains("bad TLS certificate or key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_speaks_tls_to_clients_and_between_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "weir");
    let member = ca.member("member");
    let ca_file = ca.ca_file();
    // Mutual TLS everywhere: members present their certificate to each other too.
    let cluster = TestCluster::start_with(
        3,
        &[
            "--tls-cert",
            path(&member.cert),
            "--tls-key",
            path(&member.key),
            "--tls-client-ca",
            path(&ca_file),
            "--tls-peer-ca",
            path(&ca_file),
        ],
    );
    let app = ca.client("app");
    let tls = TlsConfig::with_ca_file(&ca_file)
        .unwrap()
        .identity_files(&app.cert, &app.key)
        .unwrap();
    let client = Client::connect_with(cluster.bootstrap(), ClientOptions::tls(tls))
        .await
        .unwrap();
    // The members reach each other (raft, status) over TLS: a controller is elected and every
    // member answers the status round.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let nodes = client.admin().cluster_status().await.unwrap();
        let roles: Vec<&str> = nodes.iter().map(|n| n.role.as_str()).collect();
        if roles.contains(&"controller") && !roles.contains(&"unreachable") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{roles:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Replication (followers fetch from leaders) over TLS: every copy in sync, acks=all.
    client
        .admin()
        .create_topic(weir::NewTopic::new("secure", 3).replication_factor(3))
        .await
        .unwrap();
    // acks=all (the default): answered once every in-sync copy has the records.
    round_trip(&client, "secure", 200).await;
    let described = client.admin().describe_topic("secure").await.unwrap();
    // Followers that could not fetch over TLS would have left the ISR (acks=all waits for
    // them until then).
    assert_eq!(described.placement.len(), 3);
    for p in &described.placement {
        assert_eq!(p.isr.len(), 3, "{p:?}");
    }
    // A plain-text client is refused by every member.
    for b in &cluster.brokers {
        refused(try_list(b, ClientOptions::default()).await);
    }
    assert_eq!(client.admin().list_topics().await.unwrap().len(), 1);
}

#[test]
fn cluster_tls_needs_the_members_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "weir");
    let member = ca.member("member");
    let out = std::process::Command::new(weir_e2e::bin("weir-broker"))
        .args([
            "--data-dir",
            path(&dir.path().join("data")),
            "--listen",
            "127.0.0.1:0",
            "--node-id",
            "1",
            "--cluster",
            "1=127.0.0.1:1",
            "--tls-cert",
            path(&member.cert),
            "--tls-key",
            path(&member.key),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-peer-ca"), "{err}");
}
