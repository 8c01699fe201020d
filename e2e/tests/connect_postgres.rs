//! The PostgreSQL source and sink against a real PostgreSQL server (Debian's, started by the
//! harness on a free port), with the connector process SIGKILLed mid-stream.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use weir_e2e::connect::{connect_run, kill9, setup, status_lines, terminate};
use weir_e2e::postgres::Postgres;
use weir_e2e::read_all;

/// Records in `topic` now (all partitions).
async fn topic_len(client: &weir::Client, topic: &str, partitions: u32) -> u64 {
    let admin = client.admin();
    let mut n = 0;
    for p in 0..partitions {
        n += admin
            .list_offset(topic, p, weir::OffsetSpec::Latest)
            .await
            .unwrap();
    }
    n
}

/// Waits until `done()` (checked every 50 ms), failing with `what` after `timeout`.
async fn wait_until<F: AsyncFnMut() -> bool>(timeout: Duration, what: &str, mut done: F) {
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn group_lag(client: &weir::Client, group: &str) -> Option<u64> {
    let g = client.admin().describe_group(group).await.ok()?;
    g.partitions.iter().map(|p| p.lag).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_source_produces_every_row_once_across_kill_9() {
    let pg = Postgres::start();
    let db = pg.client().await;
    db.batch_execute(
        "CREATE TABLE orders (
             id bigserial PRIMARY KEY,
             customer text NOT NULL,
             amount numeric(10, 2) NOT NULL,
             placed timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .unwrap();
    let (broker, client, _tmp, config) = setup(
        "orders",
        3,
        &format!(
            r#"
[[source]]
name = "orders-table"
type = "postgres"
url = "{}"
table = "orders"
column = "id"
key_column = "customer"
topic = "orders"
poll_interval_ms = 50
"#,
            pg.url()
        ),
    )
    .await;
    // Rows arrive in 30 transactions of 2 000 while the connector runs; it is SIGKILLed
    // twice while producing, and started again.
    const BATCHES: i64 = 30;
    const ROWS: i64 = 2_000;
    let insert = |b: i64| {
        format!(
            "INSERT INTO orders (customer, amount) \
             SELECT 'c' || (i % 37), (i % 1000) + 0.25 FROM generate_series({}, {}) AS i",
            b * ROWS,
            (b + 1) * ROWS - 1
        )
    };
    let mut runner = connect_run(&broker, &config);
    let mut b = 0;
    while b < BATCHES {
        db.batch_execute(&insert(b)).await.unwrap();
        if b == 10 || b == 20 {
            // Kill it once it produced at least half of what is there (often in the middle of
            // a chunk: the next insert is already in).
            db.batch_execute(&insert(b + 1)).await.unwrap();
            let half = ((b + 2) * ROWS / 2) as u64;
            wait_until(
                Duration::from_secs(60),
                "the source to produce",
                async || topic_len(&client, "orders", 3).await >= half,
            )
            .await;
            kill9(runner);
            runner = connect_run(&broker, &config);
            b += 1;
        }
        b += 1;
    }
    let total = (BATCHES * ROWS) as u64;
    wait_until(
        Duration::from_secs(120),
        "every row in the topic",
        async || topic_len(&client, "orders", 3).await >= total,
    )
    .await;
    wait_until(Duration::from_secs(5), "the status file", async || {
        let status = status_lines(&broker, &config);
        status[0][4] == "running" && status[0][7] == format!("id > {total}")
    })
    .await;
    terminate(runner);

    let records = read_all(&client, "orders", weir::ConsumerConfig::default()).await;
    assert_eq!(records.len() as u64, total, "no row twice");
    let mut seen = BTreeMap::new();
    for r in &records {
        let row: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        let id = row["id"].as_i64().unwrap();
        assert_eq!(
            r.key.as_deref(),
            row["customer"].as_str().map(str::as_bytes)
        );
        assert_eq!(
            row["amount"].as_f64().unwrap(),
            ((id - 1) % 1000) as f64 + 0.25
        );
        assert!(row["placed"].is_string());
        assert!(seen.insert(id, r.partition).is_none(), "row {id} twice");
    }
    assert_eq!(seen.len() as u64, total);
    assert_eq!(seen.keys().next(), Some(&1));
    assert_eq!(seen.keys().last(), Some(&(total as i64)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_sink_upserts_by_key_so_redelivery_after_kill_9_is_harmless() {
    let pg = Postgres::start();
    let db = pg.client().await;
    db.batch_execute(
        "CREATE TABLE accounts (
             id integer PRIMARY KEY,
             name text NOT NULL,
             balance numeric NOT NULL,
             updated timestamptz,
             created timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .unwrap();
    let (broker, client, _tmp, config) = setup(
        "accounts",
        2,
        &format!(
            r#"
[[sink]]
name = "accounts-table"
type = "postgres"
topic = "accounts"
group = "to-postgres"
session_timeout_ms = 1000
url = "{}"
table = "accounts"
key = ["id"]
"#,
            pg.url()
        ),
    )
    .await;
    // 20 000 updates of 500 accounts, keyed by account (so in order per account): the last
    // update of account a has balance 19 500 + a.
    const UPDATES: i64 = 20_000;
    const ACCOUNTS: i64 = 500;
    let producer = client.producer(weir::ProducerConfig::default());
    for i in 0..UPDATES {
        let a = i % ACCOUNTS;
        let value = serde_json::json!({
            "id": a,
            "name": format!("account {a}"),
            "balance": i,
            "updated": format!("2026-11-26T10:{:02}:{:02}Z", (i / 60) % 60, i % 60),
            "not_a_column": true,
        });
        producer
            .enqueue(weir::ProducerRecord::new("accounts", value.to_string()).key(a.to_string()))
            .await
            .unwrap();
    }
    producer.flush().await.unwrap();
    let runner = connect_run(&broker, &config);
    wait_until(Duration::from_secs(60), "the first rows", async || {
        let n: i64 = db
            .query_one("SELECT count(*) FROM accounts", &[])
            .await
            .unwrap()
            .get(0);
        n > 0
    })
    .await;
    kill9(runner);
    let runner = connect_run(&broker, &config);
    wait_until(
        Duration::from_secs(120),
        "the sink to catch up",
        async || group_lag(&client, "to-postgres").await == Some(0),
    )
    .await;
    let rows = db
        .query(
            "SELECT id, name, balance::text, updated IS NOT NULL FROM accounts ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len() as i64, ACCOUNTS);
    for (a, row) in rows.iter().enumerate() {
        let a = a as i64;
        assert_eq!(row.get::<_, i32>(0) as i64, a);
        assert_eq!(row.get::<_, String>(1), format!("account {a}"));
        assert_eq!(
            row.get::<_, String>(2),
            (UPDATES - ACCOUNTS + a).to_string()
        );
        assert!(row.get::<_, bool>(3));
    }

    // Records the table cannot take are skipped and counted; the rest goes on.
    for value in [
        "not json",
        r#"{"name": "no id"}"#,
        r#"{"id": 7, "name": "seven", "balance": 12345678901234567.89}"#,
    ] {
        producer
            .send(weir::ProducerRecord::new("accounts", value))
            .await
            .unwrap();
    }
    wait_until(Duration::from_secs(30), "the last records", async || {
        group_lag(&client, "to-postgres").await == Some(0)
    })
    .await;
    let seven = db
        .query_one("SELECT name, balance::text FROM accounts WHERE id = 7", &[])
        .await
        .unwrap();
    assert_eq!(seven.get::<_, String>(0), "seven");
    // Digits an f64 would lose.
    assert_eq!(seven.get::<_, String>(1), "12345678901234567.89");
    wait_until(Duration::from_secs(5), "the status file", async || {
        status_lines(&broker, &config)[0][6] == "2"
    })
    .await;
    terminate(runner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connectors_that_cannot_run_say_why() {
    let pg = Postgres::start();
    let db = pg.client().await;
    db.batch_execute("CREATE TABLE events (id bigint, body text)")
        .await
        .unwrap();
    let url = pg.url();
    let (broker, _client, _tmp, config) = setup(
        "events",
        1,
        &format!(
            r#"
[[source]]
name = "no-column"
type = "postgres"
url = "{url}"
table = "events"
column = "seq"
topic = "events"

[[source]]
name = "no-table"
type = "postgres"
url = "{url}"
table = "missing"
column = "id"
topic = "events"

[[sink]]
name = "no-unique-key"
type = "postgres"
topic = "events"
group = "g"
url = "{url}"
table = "events"
key = ["id"]

[[sink]]
name = "no-server"
type = "postgres"
topic = "events"
group = "g2"
url = "postgres://weir:secret@127.0.0.1:1/postgres"
table = "events"
key = ["id"]
"#
        ),
    )
    .await;
    let runner = connect_run(&broker, &config);
    let mut status = Vec::new();
    wait_until(
        Duration::from_secs(30),
        "every connector to fail",
        async || {
            status = status_lines(&broker, &config);
            status.iter().all(|s| s[4] == "failed")
        },
    )
    .await;
    terminate(runner);
    let error = |i: usize| status[i][8].clone();
    assert!(
        error(0).contains("has no column \"seq\" (its columns: id, body)"),
        "{status:?}"
    );
    assert!(
        error(1).contains("relation \"missing\" does not exist"),
        "{status:?}"
    );
    assert!(
        error(2).contains("table events has no primary key or unique index on (id)"),
        "{status:?}"
    );
    assert!(
        error(3).contains("cannot connect to postgres://weir:***@127.0.0.1:1"),
        "{status:?}"
    );
    assert!(!error(3).contains("secret"), "{status:?}");
}
