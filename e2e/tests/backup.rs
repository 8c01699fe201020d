//! Online backup and restore (`weir admin backup --to DIR`, docs/deploy.md "Backup and
//! restore"): a backup taken while a producer runs restores, by starting a broker on it, to a
//! broker that serves every record acknowledged before the backup began, once each, with the
//! groups' committed offsets, the plugins and the users of that moment.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use weir::{Client, ClientOptions, Credentials, Error, ProducerConfig, ProducerRecord};
use weir_e2e::{Broker, example_plugin, stored_once_by_value};

#[test]
fn a_backup_under_load_restores_every_record_acknowledged_before_it() {
    let broker = Broker::start();
    broker.cli_ok(&["topic", "create", "orders", "--partitions", "4"]);
    broker.cli_ok(&[
        "plugin",
        "register",
        "upper",
        example_plugin("uppercase").to_str().unwrap(),
    ]);
    // A group's committed offsets: 3 records read and committed before the load starts.
    broker.cli_with_stdin(&["produce", "orders"], b"g1\ng2\ng3\n");
    broker.cli_ok(&[
        "consume", "orders", "--group", "g", "--from", "earliest", "--max", "3",
    ]);

    // The producer: acks as configured, a batch every few milliseconds, until told to stop;
    // it keeps each acknowledged value in the order the acknowledgements came.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let producing = {
        let (stop, acked, addr) = (stop.clone(), acked.clone(), broker.addr.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let client = Client::connect(&addr).await.unwrap();
                let producer = client.producer(ProducerConfig::default());
                let mut i = 0usize;
                while !stop.load(SeqCst) {
                    let mut acks = Vec::new();
                    for _ in 0..200 {
                        let v = format!("v{i}");
                        let rec = ProducerRecord::new("orders", v.clone()).key(format!("k{i}"));
                        acks.push((v, producer.enqueue(rec).await.unwrap()));
                        i += 1;
                    }
                    for (v, ack) in acks {
                        ack.await.unwrap();
                        acked.lock().unwrap().push(v);
                    }
                }
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 20_000 {
        assert!(Instant::now() < deadline, "the producer is stuck");
        std::thread::sleep(Duration::from_millis(20));
    }

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("backup-1");
    let target_s = target.to_str().unwrap();
    // Bad targets are refused with a reason, and nothing is written.
    for (bad, why) in [
        ("relative/dir", "absolute path"),
        (dir.path().to_str().unwrap(), "exists already"),
        ("/no/such/parent/dir", "parent directory does not exist"),
    ] {
        let out = broker.cli(&["admin", "backup", "--to", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.starts_with("error:"), "{err}");
        assert!(err.contains(why), "{bad}: {err}");
    }
    assert!(!target.exists());

    let before: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let out = broker.cli_ok(&["admin", "backup", "--to", target_s]);
    let after_backup = acked.lock().unwrap().len();
    assert!(
        out.starts_with(&format!("backup of node 0 written to {target_s}: ")),
        "{out}"
    );
    assert!(out.trim_end().ends_with(" ms"), "{out}");
    let manifest = std::fs::read_to_string(target.join("BACKUP")).unwrap();
    assert!(
        manifest.starts_with("weir-broker backup\nversion "),
        "{manifest}"
    );
    // The producer kept going while the backup was written, and goes on after.
    while acked.lock().unwrap().len() < after_backup + 2_000 {
        assert!(Instant::now() < deadline + Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, SeqCst);
    producing.join().unwrap();
    let all: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    // A second backup into the same place is refused.
    let out = broker.cli(&["admin", "backup", "--to", target_s]);
    assert!(!out.status.success());

    // Restore: a broker on the copy, beside the original (which still serves).
    let restored = Broker::start_on(&target, &[]);
    let stored = stored_once_by_value(&restored, "orders");
    let missing: Vec<&String> = before.iter().filter(|v| !stored.contains_key(*v)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records acknowledged before the backup are missing, e.g. {:?}",
        missing.len(),
        before.len(),
        &missing[..missing.len().min(5)]
    );
    // Nothing that was never produced; the three group records are there too.
    for v in stored.keys() {
        assert!(
            all.contains(v) || ["g1", "g2", "g3"].contains(&v.as_str()),
            "{v}"
        );
    }
    // Offsets are dense per partition: the copy is the log as it was, not a sample of it.
    let mut per_partition = std::collections::BTreeMap::<u32, Vec<u64>>::new();
    for places in stored.values() {
        for (p, o) in places {
            per_partition.entry(*p).or_default().push(*o);
        }
    }
    for (p, mut offsets) in per_partition {
        offsets.sort_unstable();
        let dense: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, dense, "partition {p}");
    }
    // The group's committed offsets and the plugin came along.
    let group = restored.cli_ok(&["group", "describe", "g"]);
    let committed: u64 = group
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.parse::<u64>().ok())
        .sum();
    assert_eq!(committed, 3, "{group}");
    assert!(
        restored.cli_ok(&["plugin", "list"]).contains("upper"),
        "the plugin is in the backup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_superuser_may_back_up_and_the_copy_keeps_the_users() {
    let broker = Broker::start_with(&["--auth"]);
    let token = broker.admin_token();
    let connect = |c: Credentials| {
        Client::connect_with(
            &broker.addr,
            ClientOptions {
                credentials: Some(c),
                ..ClientOptions::default()
            },
        )
    };
    let root = connect(Credentials::token(&token)).await.unwrap();
    root.admin()
        .create_user("alice", Some("alice-password"), false)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("b");
    let target_s = target.to_str().unwrap();

    let alice = connect(Credentials::password("alice", "alice-password"))
        .await
        .unwrap();
    let denied = alice.admin().backup(target_s).await;
    assert!(
        matches!(denied, Err(Error::PermissionDenied(_))),
        "{denied:?}"
    );
    assert!(!target.exists());

    let b = root.admin().backup(target_s).await.unwrap();
    assert_eq!((b.path.as_str(), b.node_id), (target_s, 0));
    assert!(b.files >= 3 && b.bytes > 0, "{b:?}");
    // The bootstrap token file comes along, readable by the broker's user only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(target.join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin.token mode {mode:o}");

    let restored = Broker::start_on(&target, &["--auth"]);
    assert_eq!(restored.admin_token(), token);
    let alice = Client::connect_with(
        &restored.addr,
        ClientOptions {
            credentials: Some(Credentials::password("alice", "alice-password")),
            ..ClientOptions::default()
        },
    )
    .await
    .unwrap();
    let me = alice.admin().whoami().await.unwrap();
    assert_eq!((me.name.as_str(), me.superuser), ("alice", false));
}
