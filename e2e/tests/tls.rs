//! TLS on the gRPC port: a round trip through the SDK and the CLI, plain-text and untrusting
//! clients refused, client certificates required with `--tls-client-ca`, bad files refused at
//! start.

use weir::{Client, ClientOptions, ProducerConfig, ProducerRecord, TlsConfig};
use weir_e2e::Broker;
use weir_e2e::tls::{CertFiles, TestCa};

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
    let producer = client.producer(ProducerConfig::default());
    for i in 0..100 {
        producer
            .enqueue(ProducerRecord::new("secure", format!("r{i}")).key(format!("k{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let read = weir_e2e::read_all(&client, "secure", weir::ConsumerConfig::default()).await;
    assert_eq!(read.len(), 100);

    // Plain text, and TLS trusting another CA, are refused.
    let plain = try_list(&broker, ClientOptions::default()).await;
    assert!(plain.is_err(), "a plain-text client was served");
    let rogue = TestCa::new(dir.path(), "rogue");
    let untrusting = ClientOptions::tls(TlsConfig::with_ca_pem(rogue.ca_pem()));
    let err = try_list(&broker, untrusting).await.unwrap_err().to_string();
    assert!(err.contains("certificate"), "{err}");

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

    let anonymous = try_list(&broker, ClientOptions::tls(trusting())).await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate was served"
    );
    let app = ca.client("app");
    let known = trusting().identity_files(&app.cert, &app.key).unwrap();
    try_list(&broker, ClientOptions::tls(known)).await.unwrap();
    let rogue = TestCa::new(dir.path(), "rogue").client("intruder");
    let stranger = trusting().identity_files(&rogue.cert, &rogue.key).unwrap();
    assert!(
        try_list(&broker, ClientOptions::tls(stranger))
            .await
            .is_err()
    );

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
