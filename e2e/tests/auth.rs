//! Users and ACLs (`--auth`): each decision, allowed and denied, through the SDK and the CLI;
//! no credentials or wrong ones are UNAUTHENTICATED, a denied call learns nothing about what it
//! named; users and ACLs survive a restart.

use std::time::Duration;

use futures::StreamExt;
use weir::{
    Acl, Client, ClientOptions, ConsumerConfig, Credentials, Error, NewPipeline, NewTopic,
    ProducerConfig, ProducerRecord,
};
use weir_e2e::{Broker, example_plugin};

async fn connect(broker: &Broker, credentials: Option<Credentials>) -> Client {
    let options = ClientOptions {
        credentials,
        ..ClientOptions::default()
    };
    Client::connect_with(&broker.addr, options).await.unwrap()
}

async fn as_token(broker: &Broker, token: &str) -> Client {
    connect(broker, Some(Credentials::token(token))).await
}

async fn as_user(broker: &Broker, user: &str, password: &str) -> Client {
    connect(broker, Some(Credentials::password(user, password))).await
}

async fn produce(client: &Client, topic: &str, value: &str) -> Result<(), Error> {
    let producer = client.producer(ProducerConfig::default());
    producer
        .send(ProducerRecord::new(topic, value.to_string()).key("k"))
        .await
        .map(drop)
}

/// Reads `topic` until it is idle; the first error otherwise.
async fn read(client: &Client, topic: &str, config: ConsumerConfig) -> Result<Vec<String>, Error> {
    let mut c = client.consumer(topic, config).await?;
    let mut out = Vec::new();
    while let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(1500), c.next()).await {
        out.push(weir_e2e::text(&r?));
    }
    Ok(out)
}

fn denied<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Err(Error::PermissionDenied(m)) => m,
        other => panic!("expected PERMISSION_DENIED, got {other:?}"),
    }
}

fn unauthenticated<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Err(Error::Unauthenticated(m)) => m,
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_acl_decision_through_the_sdk() {
    let mut broker = Broker::start_with(&["--auth"]);
    let admin_token = broker.admin_token();
    assert!(admin_token.starts_with("weir_"), "{admin_token}");
    // Only the broker's user may read the superuser's token.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(broker.data_dir().join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin.token mode {mode:o}");

    // Without credentials, or with wrong ones: UNAUTHENTICATED, and the same answer for a
    // wrong password as for a user that does not exist. Health checks need none.
    let anonymous = connect(&broker, None).await;
    assert_eq!(
        anonymous.admin().health("").await.unwrap(),
        weir::Health::Serving
    );
    unauthenticated(anonymous.admin().list_topics().await);
    unauthenticated(produce(&anonymous, "orders", "x").await);
    let forged = as_token(&broker, "weir_forged").await;
    unauthenticated(forged.admin().list_topics().await);

    let root = as_token(&broker, &admin_token).await;
    let me = root.admin().whoami().await.unwrap();
    assert_eq!(
        (me.name.as_str(), me.superuser, me.auth_enabled),
        ("admin", true, true)
    );
    let admin = root.admin();
    admin
        .create_topic(NewTopic::new("orders", 2))
        .await
        .unwrap();
    admin
        .create_topic(NewTopic::new("payments", 1))
        .await
        .unwrap();
    produce(&root, "payments", "secret").await.unwrap();
    assert!(
        admin
            .create_user("alice", Some("alice-password"), false)
            .await
            .unwrap()
            .is_none()
    );
    let bob_token = admin
        .create_user("bob", None, false)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        admin.create_user("bob", None, false).await,
        Err(Error::UserExists(_))
    ));
    assert!(matches!(
        admin.create_user("eve", Some("short"), false).await,
        Err(Error::InvalidArgument { .. })
    ));

    let wrong = as_user(&broker, "alice", "not-her-password").await;
    let unknown = as_user(&broker, "mallory", "alice-password").await;
    let m1 = unauthenticated(wrong.admin().list_topics().await);
    let m2 = unauthenticated(unknown.admin().list_topics().await);
    assert_eq!(m1, m2);
    assert!(!m1.contains("alice") && !m2.contains("mallory"), "{m1}");

    let alice = as_user(&broker, "alice", "alice-password").await;
    let bob = as_token(&broker, &bob_token).await;
    let whoami = alice.admin().whoami().await.unwrap();
    assert_eq!((whoami.name.as_str(), whoami.superuser), ("alice", false));

    // No ACLs: nothing listed, everything denied, and a topic that does not exist is denied
    // the same way as one that does (nothing leaks).
    assert!(alice.admin().list_topics().await.unwrap().is_empty());
    let m = denied(alice.admin().describe_topic("payments").await);
    assert!(m.contains("no permission") && m.contains("payments"), "{m}");
    let real = denied(alice.admin().describe_topic("orders").await);
    let ghost = denied(alice.admin().describe_topic("ghost").await);
    assert_eq!(real.replace("orders", "X"), ghost.replace("ghost", "X"));
    denied(produce(&alice, "orders", "a1").await);
    denied(alice.admin().create_topic(NewTopic::new("mine", 1)).await);
    denied(alice.admin().delete_topic("payments").await);

    // write on orders: alice produces, and still cannot read.
    admin
        .grant_acl(&Acl::new("alice", "write", "topic", "orders"))
        .await
        .unwrap();
    for i in 0..10 {
        produce(&alice, "orders", &format!("a{i}")).await.unwrap();
    }
    let m = denied(read(&alice, "orders", ConsumerConfig::default()).await);
    assert!(m.contains("needs read on topic \"orders\""), "{m}");
    denied(produce(&alice, "payments", "a").await);

    // read on orders and on group billing: bob consumes in that group and no other, and
    // cannot produce.
    admin
        .grant_acl(&Acl::new("bob", "read", "topic", "orders"))
        .await
        .unwrap();
    let all = read(&bob, "orders", ConsumerConfig::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 10);
    denied(read(&bob, "orders", ConsumerConfig::default().group("billing")).await);
    admin
        .grant_acl(&Acl::new("bob", "read", "group", "billing"))
        .await
        .unwrap();
    let grouped = read(&bob, "orders", ConsumerConfig::default().group("billing"))
        .await
        .unwrap();
    assert_eq!(grouped.len(), 10);
    denied(read(&bob, "orders", ConsumerConfig::default().group("audit")).await);
    denied(produce(&bob, "orders", "b").await);
    denied(read(&bob, "payments", ConsumerConfig::default()).await);
    let listed: Vec<String> = bob
        .admin()
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(listed, ["orders"]);
    let groups: Vec<String> = bob
        .admin()
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(groups, ["billing"]);
    denied(
        bob.admin()
            .reset_group("billing", "orders", weir::StartFrom::Earliest)
            .await,
    );

    // admin on a prefix: alice creates and deletes her own topics, nobody else's.
    admin
        .grant_acl(&Acl::new("alice", "admin", "topic", "alice.*"))
        .await
        .unwrap();
    alice
        .admin()
        .create_topic(NewTopic::new("alice.events", 1))
        .await
        .unwrap();
    denied(alice.admin().create_topic(NewTopic::new("alicex", 1)).await);
    produce(&alice, "alice.events", "mine").await.unwrap();
    assert_eq!(
        read(&alice, "alice.events", ConsumerConfig::default())
            .await
            .unwrap(),
        ["mine"]
    );

    // Plugins: registering needs admin; using one in a chain needs read on it.
    let wasm = std::fs::read(example_plugin("uppercase")).unwrap();
    denied(
        alice
            .admin()
            .register_plugin("uppercase", wasm.clone())
            .await,
    );
    admin.register_plugin("uppercase", wasm).await.unwrap();
    let upper = ConsumerConfig::default().plugin("uppercase", None);
    denied(read(&bob, "orders", upper.clone()).await);
    admin
        .grant_acl(&Acl::new("*", "read", "plugin", "uppercase"))
        .await
        .unwrap();
    let shouted = read(&bob, "orders", upper).await.unwrap();
    assert_eq!(shouted[0], "A0");
    denied(bob.admin().delete_plugin("uppercase").await);

    // A revoked permission ends an open subscription at its next read.
    let mut follower = bob
        .consumer("orders", ConsumerConfig::default())
        .await
        .unwrap();
    for _ in 0..10 {
        follower.next().await.unwrap().unwrap();
    }
    let bob_reads = Acl::new("bob", "read", "topic", "orders");
    admin.revoke_acl(&bob_reads).await.unwrap();
    produce(&root, "orders", "after the revoke").await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), follower.next())
        .await
        .expect("the subscription ends");
    assert!(
        matches!(next, Some(Err(Error::PermissionDenied(_))) | None),
        "{next:?}"
    );
    admin.grant_acl(&bob_reads).await.unwrap();

    // A revoked permission refuses the next request on an already-open produce stream (the
    // producer's stream stays open between sends; each request is checked).
    let writer = alice.producer(ProducerConfig::default());
    writer
        .send(ProducerRecord::new("orders", "before the revoke").key("k"))
        .await
        .unwrap();
    let alice_writes = Acl::new("alice", "write", "topic", "orders");
    admin.revoke_acl(&alice_writes).await.unwrap();
    denied(
        writer
            .send(ProducerRecord::new("orders", "after the revoke").key("k"))
            .await,
    );
    admin.grant_acl(&alice_writes).await.unwrap();
    writer
        .send(ProducerRecord::new("orders", "granted again").key("k"))
        .await
        .unwrap();
    // Closing flushes, which reports the refused record (the first failure since the last
    // flush).
    denied(writer.close().await);

    // Pipelines: admin on the pipeline, and the creator's own rights on what it uses.
    let etl = || NewPipeline::new("alice-etl", "orders", "alice.events").plugin("uppercase", None);
    denied(alice.admin().create_pipeline(etl()).await);
    admin
        .grant_acl(&Acl::new("alice", "admin", "pipeline", "alice-*"))
        .await
        .unwrap();
    // ... still not: alice may not read orders.
    let m = denied(alice.admin().create_pipeline(etl()).await);
    assert!(m.contains("orders"), "{m}");
    admin
        .grant_acl(&Acl::new("alice", "read", "topic", "orders"))
        .await
        .unwrap();
    alice.admin().create_pipeline(etl()).await.unwrap();
    // It runs with them: alice's topic gets orders' thirteen records, upper-cased.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = read(&alice, "alice.events", ConsumerConfig::default())
            .await
            .unwrap();
        if got.len() == 14 {
            assert_eq!(got.iter().filter(|v| v.starts_with('A')).count(), 11);
            assert!(got.contains(&"GRANTED AGAIN".to_string()), "{got:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?}");
    }
    assert_eq!(alice.admin().list_pipelines().await.unwrap().len(), 1);
    assert!(bob.admin().list_pipelines().await.unwrap().is_empty());
    denied(bob.admin().delete_pipeline("alice-etl").await);
    alice.admin().delete_pipeline("alice-etl").await.unwrap();

    // Users and ACLs are the superusers' business.
    denied(alice.admin().create_user("carol", None, true).await);
    denied(alice.admin().list_users().await);
    denied(
        alice
            .admin()
            .grant_acl(&Acl::new("alice", "read", "topic", "payments"))
            .await,
    );
    denied(alice.admin().list_acls(None).await);

    // Revoking takes effect at once; a bad ACL is refused; revoking nothing is an error.
    admin
        .revoke_acl(&Acl::new("alice", "write", "topic", "orders"))
        .await
        .unwrap();
    denied(produce(&alice, "orders", "late").await);
    assert!(matches!(
        admin
            .revoke_acl(&Acl::new("alice", "write", "topic", "orders"))
            .await,
        Err(Error::AclNotFound(_))
    ));
    assert!(matches!(
        admin
            .grant_acl(&Acl::new("alice", "delete", "topic", "orders"))
            .await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        admin
            .grant_acl(&Acl::new("nobody", "read", "topic", "orders"))
            .await,
        Err(Error::UserNotFound(_))
    ));

    // Removing a user removes its ACLs and its token stops working; the last superuser
    // cannot be removed.
    assert_eq!(admin.delete_user("bob").await.unwrap(), 2);
    unauthenticated(bob.admin().list_topics().await);
    assert!(admin.list_acls(Some("bob")).await.unwrap().is_empty());
    assert!(matches!(
        admin.delete_user("admin").await,
        Err(Error::LastSuperuser(_))
    ));

    // Users and ACLs survive a kill -9; the bootstrap token is not made again.
    let acls_before = admin.list_acls(None).await.unwrap();
    broker.kill9();
    broker.restart();
    assert_eq!(broker.admin_token(), admin_token);
    let root = as_token(&broker, &admin_token).await;
    assert_eq!(root.admin().list_acls(None).await.unwrap(), acls_before);
    let users: Vec<(String, String, bool)> = root
        .admin()
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.name, u.credential, u.superuser))
        .collect();
    assert_eq!(
        users,
        [
            ("admin".to_string(), "token".to_string(), true),
            ("alice".to_string(), "password".to_string(), false),
        ]
    );
    let alice = as_user(&broker, "alice", "alice-password").await;
    assert_eq!(
        read(&alice, "alice.events", ConsumerConfig::default())
            .await
            .unwrap()
            .len(),
        14
    );
    denied(alice.admin().describe_topic("payments").await);
}

fn fails_with(out: &std::process::Output, what: &str) {
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1 && err.contains(what),
        "wanted one error line with {what:?}: {err}"
    );
}

#[test]
fn each_acl_decision_through_the_cli() {
    let broker = Broker::start_with(&["--auth"]);
    let token = broker.admin_token();
    let root = ["--token", token.as_str()];
    let run = |creds: &[&str], args: &[&str]| broker.cli(&[creds, args].concat());
    let ok = |creds: &[&str], args: &[&str]| broker.cli_ok(&[creds, args].concat());

    fails_with(&broker.cli(&["topic", "list"]), "unauthenticated");
    fails_with(
        &run(&["--token", "weir_nope"], &["topic", "list"]),
        "invalid credentials",
    );
    fails_with(
        &run(&["--user", "carol"], &["topic", "list"]),
        "--user needs a password",
    );
    assert_eq!(ok(&root, &["user", "whoami"]), "admin\tsuperuser\n");

    ok(&root, &["topic", "create", "orders", "--partitions", "2"]);
    let out = broker.cli_with_stdin(
        &[&root[..], &["user", "add", "carol", "--password-stdin"]].concat(),
        b"carol-password\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "a password user gets no token");
    let dave_token = ok(&root, &["user", "add", "dave"]);
    let dave_token = dave_token.trim();
    assert!(dave_token.starts_with("weir_"), "{dave_token}");
    fails_with(&run(&root, &["user", "add", "dave"]), "already exists");
    assert_eq!(
        ok(&root, &["user", "list"]),
        "admin\ttoken\tsuperuser\ncarol\tpassword\tuser\ndave\ttoken\tuser\n"
    );

    let carol = ["--user", "carol", "--password", "carol-password"];
    let dave = ["--token", dave_token];
    assert_eq!(ok(&carol, &["user", "whoami"]), "carol\tuser\n");
    fails_with(
        &run(
            &["--user", "carol", "--password", "wrong-password"],
            &["topic", "list"],
        ),
        "invalid credentials",
    );

    // carol: denied, then allowed to write.
    let produce = |creds: &[&str], input: &[u8]| {
        broker.cli_with_stdin(&[creds, &["produce", "orders"]].concat(), input)
    };
    fails_with(&produce(&carol, b"c1\n"), "permission denied");
    ok(
        &root,
        &["acl", "grant", "carol", "write", "--topic", "orders"],
    );
    let out = produce(&carol, b"c1\nc2\n");
    assert!(out.status.success(), "{out:?}");
    fails_with(
        &run(
            &carol,
            &[
                "consume",
                "orders",
                "--from",
                "earliest",
                "--idle-timeout",
                "500",
            ],
        ),
        "permission denied",
    );
    assert_eq!(ok(&carol, &["topic", "list"]), "orders\t2\n");

    // dave: reads with a group once granted both.
    let consume = [
        "consume",
        "orders",
        "--group",
        "g1",
        "--from",
        "earliest",
        "--idle-timeout",
        "1500",
    ];
    fails_with(&run(&dave, &consume), "permission denied");
    ok(
        &root,
        &["acl", "grant", "dave", "read", "--topic", "orders"],
    );
    fails_with(&run(&dave, &consume), "permission denied");
    ok(&root, &["acl", "grant", "dave", "read", "--group", "g*"]);
    let read = ok(&dave, &consume);
    assert_eq!(read.lines().count(), 2, "{read}");
    fails_with(&produce(&dave, b"d\n"), "permission denied");
    fails_with(
        &run(&dave, &["topic", "delete", "orders"]),
        "permission denied",
    );
    fails_with(
        &run(
            &dave,
            &[
                "group", "reset", "g1", "--topic", "orders", "--to", "earliest",
            ],
        ),
        "permission denied",
    );

    // Plugins: registering needs admin on the plugin.
    let wasm = example_plugin("uppercase");
    let wasm = wasm.to_str().unwrap();
    fails_with(
        &run(&carol, &["plugin", "register", "uppercase", wasm]),
        "permission denied",
    );
    ok(
        &root,
        &["acl", "grant", "carol", "admin", "--plugin", "uppercase"],
    );
    ok(&carol, &["plugin", "register", "uppercase", wasm]);
    assert!(ok(&carol, &["plugin", "list"]).starts_with("uppercase\t"));
    assert_eq!(ok(&dave, &["plugin", "list"]), "");

    // Users and ACLs: superusers only.
    fails_with(&run(&carol, &["user", "list"]), "not a superuser");
    fails_with(
        &run(
            &carol,
            &["acl", "grant", "carol", "read", "--topic", "orders"],
        ),
        "not a superuser",
    );
    // Sorted by principal, then resource type (topic, group, plugin, pipeline).
    assert_eq!(
        ok(&root, &["acl", "list"]),
        "carol\twrite\ttopic\torders\ncarol\tadmin\tplugin\tuppercase\n\
         dave\tread\ttopic\torders\ndave\tread\tgroup\tg*\n"
    );
    assert_eq!(
        ok(&root, &["acl", "list", "--principal", "dave"])
            .lines()
            .count(),
        2
    );
    let out = run(&root, &["acl", "grant", "carol", "read"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--topic"));

    // Revoke, remove: effective at once.
    ok(
        &root,
        &["acl", "revoke", "carol", "write", "--topic", "orders"],
    );
    fails_with(&produce(&carol, b"c3\n"), "permission denied");
    fails_with(
        &run(
            &root,
            &["acl", "revoke", "carol", "write", "--topic", "orders"],
        ),
        "no such ACL",
    );
    ok(&root, &["user", "remove", "dave"]);
    fails_with(&run(&dave, &["topic", "list"]), "invalid credentials");
    fails_with(&run(&root, &["user", "remove", "admin"]), "last superuser");
    fails_with(&run(&root, &["user", "remove", "dave"]), "does not exist");
}

#[test]
fn without_auth_everything_is_allowed_and_users_can_be_prepared() {
    let broker = Broker::start();
    assert_eq!(broker.cli_ok(&["user", "whoami"]), "-\tsuperuser\n");
    broker.cli_ok(&["topic", "create", "t"]);
    let token = broker.cli_ok(&["user", "add", "ops", "--superuser"]);
    assert!(token.starts_with("weir_"));
    assert!(!broker.data_dir().join("admin.token").exists());
}

/// Polls `check` every 100 ms until it holds (users and ACLs reach the other members within a
/// raft heartbeat or two); fails after 15 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client of the member at `addr` alone, over TLS trusting `ca`.
async fn member_client(addr: &str, ca: &std::path::Path, credentials: Credentials) -> Client {
    let tls = weir::TlsConfig::with_ca_file(ca).unwrap();
    let options = ClientOptions::tls(tls).credentials(credentials);
    Client::connect_with(addr, options).await.unwrap()
}

/// Which members-only service a probe calls.
#[derive(Clone, Copy, Debug)]
enum MemberService {
    Raft,
    Replication,
}

/// Calls a members-only service at `addr` over TLS (trusting `ca`), presenting `identity` (a
/// client certificate) and `token` if given; the call must fail: its status.
async fn member_call(
    addr: &str,
    ca: &weir_e2e::tls::TestCa,
    identity: Option<&weir_e2e::tls::CertFiles>,
    token: Option<&str>,
    service: MemberService,
) -> tonic::Status {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.ca_pem()));
    if let Some(id) = identity {
        let (cert, key) = (
            std::fs::read(&id.cert).unwrap(),
            std::fs::read(&id.key).unwrap(),
        );
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    // A certificate the broker does not trust may fail the handshake: no call then.
    let channel = match Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
    {
        Ok(c) => c,
        Err(e) => return tonic::Status::unavailable(format!("handshake: {e:?}")),
    };
    fn authorize<T>(mut req: tonic::Request<T>, token: Option<&str>) -> tonic::Request<T> {
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        req
    }
    match service {
        MemberService::Raft => weir_proto::v1::raft_client::RaftClient::new(channel)
            .vote(authorize(
                tonic::Request::new(weir_proto::v1::RaftMessage {
                    payload: b"{}".to_vec().into(),
                }),
                token,
            ))
            .await
            .expect_err("a raft message from a client"),
        MemberService::Replication => {
            weir_proto::v1::replication_client::ReplicationClient::new(channel)
                .replica_fetch(authorize(
                    tonic::Request::new(weir_proto::v1::ReplicaFetchRequest {
                        follower: 2,
                        partitions: vec![weir_proto::v1::ReplicaPosition {
                            topic: "orders".into(),
                            partition: 0,
                            ..Default::default()
                        }],
                        max_bytes: 1 << 20,
                        max_wait_ms: 0,
                    }),
                    token,
                ))
                .await
                .expect_err("a replica fetch from a client")
        }
    }
}

/// A client of the member at `addr` once that member knows `credentials` (users made through
/// another member reach it within a raft heartbeat or two).
async fn once_known(addr: &str, ca: &std::path::Path, credentials: Credentials) -> Client {
    let client = member_client(addr, ca, credentials).await;
    eventually(&format!("the user known at {addr}"), || async {
        client.admin().whoami().await.is_ok()
    })
    .await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_shares_users_and_acls_and_only_members_speak_raft() {
    let dir = tempfile::tempdir().unwrap();
    let ca = weir_e2e::tls::TestCa::new(dir.path(), "members");
    let member = ca.member("member");
    let ca_file = ca.ca_file();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (cert, key, ca_path) = (path(&member.cert), path(&member.key), path(&ca_file));
    let mut cluster = weir_e2e::TestCluster::start_with(
        3,
        &[
            "--auth",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-peer-ca",
            &ca_path,
        ],
    );
    // The member with the lowest id makes the bootstrap superuser through the quorum, once.
    let token_file = cluster.brokers[0].data_dir().join("admin.token");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !token_file.exists() {
        assert!(std::time::Instant::now() < deadline, "no admin.token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin_token = cluster.brokers[0].admin_token();
    for b in &cluster.brokers[1..] {
        assert!(!b.data_dir().join("admin.token").exists());
    }
    let addrs: Vec<String> = cluster.brokers.iter().map(|b| b.addr.clone()).collect();
    let root_at = |i: usize| member_client(&addrs[i], &ca_file, Credentials::token(&admin_token));
    // Every member knows the superuser, and the members reach each other (raft, status)
    // with their certificates, not users: a controller, every member reachable.
    for addr in &addrs {
        let root = once_known(addr, &ca_file, Credentials::token(&admin_token)).await;
        assert!(root.admin().whoami().await.unwrap().superuser);
    }
    let root = root_at(0).await;
    eventually("a controller and every member reachable", || async {
        let Ok(nodes) = root.admin().cluster_status().await else {
            return false;
        };
        let roles: Vec<&str> = nodes.iter().map(|n| n.role.as_str()).collect();
        roles.contains(&"controller") && !roles.contains(&"unreachable")
    })
    .await;

    // Users and ACLs made through one member hold on every member.
    root.admin()
        .create_topic(NewTopic::new("orders", 3).replication_factor(3))
        .await
        .unwrap();
    let root2 = root_at(1).await;
    root2
        .admin()
        .create_user("alice", Some("alice-password"), false)
        .await
        .unwrap();
    let bob_token = root_at(2)
        .await
        .admin()
        .create_user("bob", None, false)
        .await
        .unwrap()
        .unwrap();
    let alice_write = Acl::new("alice", "write", "topic", "orders");
    root2.admin().grant_acl(&alice_write).await.unwrap();
    root.admin()
        .grant_acl(&Acl::new("bob", "read", "topic", "orders"))
        .await
        .unwrap();
    for addr in &addrs {
        let alice = Credentials::password("alice", "alice-password");
        once_known(addr, &ca_file, alice).await;
        once_known(addr, &ca_file, Credentials::token(&bob_token)).await;
    }
    // Each decision, on partitions led by every member (3 partitions, one leader each).
    let alice = member_client(
        &addrs[2],
        &ca_file,
        Credentials::password("alice", "alice-password"),
    )
    .await;
    let producer = alice.producer(ProducerConfig::default());
    for i in 0..90 {
        producer
            .enqueue(ProducerRecord::new("orders", format!("o{i}")).key(format!("k{i}")))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    denied(read(&alice, "orders", ConsumerConfig::default()).await);
    denied(alice.admin().create_topic(NewTopic::new("mine", 1)).await);
    let bob = member_client(&addrs[1], &ca_file, Credentials::token(&bob_token)).await;
    assert_eq!(
        read(&bob, "orders", ConsumerConfig::default())
            .await
            .unwrap()
            .len(),
        90
    );
    denied(produce(&bob, "orders", "x").await);
    denied(bob.admin().list_users().await);

    // A group: its coordinator (wherever the group's offsets partition is led) stores commits
    // with acks=all, and asks the other members, as a member, for their partitions' ends.
    let billing = || ConsumerConfig::default().group("billing");
    denied(read(&bob, "orders", billing()).await);
    root.admin()
        .grant_acl(&Acl::new("bob", "read", "group", "billing"))
        .await
        .unwrap();
    eventually("bob in group billing", || async {
        bob.consumer("orders", billing()).await.is_ok()
    })
    .await;
    let mut consumer = bob.consumer("orders", billing()).await.unwrap();
    for _ in 0..90 {
        consumer.next().await.unwrap().unwrap();
    }
    consumer.commit().await.unwrap();
    consumer.close().await.unwrap();
    let described = root.admin().describe_group("billing").await.unwrap();
    let ends: u64 = described.partitions.iter().map(|p| p.end_offset).sum();
    assert_eq!(ends, 90, "{described:?}");
    assert!(
        described.partitions.iter().all(|p| p.lag == Some(0)),
        "{described:?}"
    );

    // Only members speak raft and replication: a client is refused, a superuser too; no
    // partial answer (a replica fetch would hand out records).
    let other = weir_e2e::tls::TestCa::new(dir.path(), "others");
    let stranger = other.member("stranger");
    for (service, name) in [
        (MemberService::Raft, "weir.v1.Raft"),
        (MemberService::Replication, "weir.v1.Replication"),
    ] {
        let status = member_call(&addrs[0], &ca, None, None, service).await;
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        let status = member_call(&addrs[0], &ca, None, Some(&admin_token), service).await;
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains(name), "{status:?}");
        // A certificate from another CA is not a member's: the broker's TLS refuses it (when
        // connecting, or with TLS 1.3 at the first call: a fatal alert or a closed
        // connection). The call fails in the transport; no service answered it.
        let status =
            member_call(&addrs[0], &ca, Some(&stranger), Some(&admin_token), service).await;
        let in_transport = status.message().starts_with("handshake")
            || std::error::Error::source(&status)
                .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some());
        assert!(in_transport, "{service:?}: {status:?}");
    }
    // The member serves on after all that.
    assert!(root.admin().whoami().await.unwrap().superuser);

    // Changes from two members at once: none is lost (each is made on the newer document).
    let (a, b) = (root_at(1).await, root_at(2).await);
    let grants = |client: Client, from: usize| async move {
        for i in from..from + 10 {
            let acl = Acl::new("bob", "read", "topic", format!("t{i}"));
            client.admin().grant_acl(&acl).await.unwrap();
        }
    };
    tokio::join!(grants(a, 0), grants(b, 10));
    // Bob had 2 (orders, billing): now 22.
    eventually("20 concurrent grants", || async {
        root.admin().list_acls(Some("bob")).await.unwrap().len() == 22
    })
    .await;

    // A revoke through the CLI on another member: alice's next produce is refused.
    let cli_root = [
        "--tls-ca",
        ca_path.as_str(),
        "--token",
        admin_token.as_str(),
    ];
    let out = cluster.brokers[2].cli(
        &[
            &cli_root[..],
            &["acl", "revoke", "alice", "write", "--topic", "orders"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{out:?}");
    eventually("the revoke everywhere", || async {
        matches!(
            produce(&alice, "orders", "late").await,
            Err(Error::PermissionDenied(_))
        )
    })
    .await;

    // The member that made the superuser dies: users and ACLs live on in the others, and
    // changes go on with two of three.
    cluster.brokers[0].kill9();
    let root2 = root_at(1).await;
    eventually("a user added without member 1", || async {
        root2
            .admin()
            .create_user("carol", Some("carol-password"), false)
            .await
            .is_ok()
    })
    .await;
    let users = cluster.brokers[2].cli_ok(&[&cli_root[..], &["user", "list"]].concat());
    let names: Vec<&str> = users
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice", "bob", "carol"]);
    assert_eq!(
        read(&bob, "orders", ConsumerConfig::default())
            .await
            .unwrap()
            .len(),
        90
    );
    // Back, it catches up; its token file is the one it wrote (no second superuser).
    cluster.brokers[0].restart();
    assert_eq!(cluster.brokers[0].admin_token(), admin_token);
    let carol = Credentials::password("carol", "carol-password");
    once_known(&addrs[0], &ca_file, carol).await;
    let users = root_at(0).await.admin().list_users().await.unwrap();
    assert_eq!(users.iter().filter(|u| u.superuser).count(), 1);
}
