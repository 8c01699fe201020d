//! `weir connect run`: connectors as a separate process next to a real broker, killed
//! mid-stream and started again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use weir_e2e::connect::{
    append, connect_run, kill9, setup, status_lines, terminate, wait_for_lines, write_config,
};
use weir_e2e::{free_port, read_all, register_examples, text};

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
    // Kill -9 the connector process mid-stream, again and again, and start it again: each
    // time once the output reached the next fifth (so every run made progress and each kill
    // lands while the sink is busy).
    for k in 1..=4 {
        // At 20%, 40%, 60% and 80% of the output.
        wait_for_lines(&output, total * k / 5, Duration::from_secs(90));
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
    let (api, fragile) = (free_port(), free_port());
    let (broker, client, tmp, config) = setup(
        "words",
        2,
        &format!(
            r#"
[[source]]
type = "file"
path = "in.jsonl"
format = "json"
key_field = "user"
topic = "words"
plugins = [["uppercase"]]

[[source]]
name = "api"
type = "http"
listen = "127.0.0.1:{api}"
format = "json"
key_field = "user"
topic = "words"
plugins = [["filter-contains", {{ substring = "alice" }}], ["uppercase"]]

[[source]]
name = "fragile-api"
type = "http"
listen = "127.0.0.1:{fragile}"
topic = "words"
plugins = [["fragile"]]

[[sink]]
type = "file"
topic = "words"
group = "export"
path = "out.txt"
plugins = [["filter-contains", {{ substring = "ALICE" }}]]
"#
        ),
    )
    .await;
    register_examples(&client.admin()).await;
    client
        .admin()
        .register_plugin("fragile", weir_e2e::hostile_plugin("unreachable"))
        .await
        .unwrap();
    let input = tmp.path().join("in.jsonl");
    append(
        &input,
        "{\"user\":\"alice\",\"n\":1}\nnot json\n{\"user\":\"bob\",\"n\":2}\n{\"user\":\"alice\",\"n\":3}\n",
    );
    let runner = connect_run(&broker, &config);
    // The HTTP source's chain: one output of two records, acknowledged as such.
    let web = http_client();
    let body = b"{\"user\":\"alice\",\"n\":4}\n{\"user\":\"carol\",\"n\":5}\n";
    let answer = post_when_listening(&web, api, body).await;
    assert_eq!(answer, (200, serde_json::json!({ "accepted": 1 })));
    // A plugin that traps refuses the request, naming it; the source goes on.
    let (code, body) = post_when_listening(&web, fragile, b"x").await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("fragile"),
        "{body}"
    );
    let lines = wait_for_lines(&tmp.path().join("out.txt"), 3, Duration::from_secs(30));
    terminate(runner);
    let mut lines = lines;
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"{"USER":"ALICE","N":1}"#,
            r#"{"USER":"ALICE","N":3}"#,
            r#"{"USER":"ALICE","N":4}"#
        ]
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
    assert_eq!(keyed.len(), 4, "{keyed:?}");
    assert_eq!(
        keyed[2],
        ("alice".into(), r#"{"USER":"ALICE","N":4}"#.into())
    );
    assert_eq!(keyed[3].1, r#"{"USER":"BOB","N":2}"#);
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
        if status[0][4] == "running" && status[1][4] == "failed" && status[2][4] == "failed" {
            break status;
        }
        assert!(Instant::now() < deadline, "{status:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status[1][8].contains("no-such-plugin"), "{status:?}");
    assert!(status[2][8].contains("missing"), "{status:?}");
    terminate(runner);

    // A second runner on the same state directory is refused; so is a bad file.
    let runner = connect_run(&broker, &config);
    // Once the new runner holds the state directory (status shows it running)...
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_lines(&broker, &config)[0][4] != "running" {
        assert!(Instant::now() < deadline, "the runner never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...another is refused (and exits: the helper fails the test if it hangs).
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

/// What a test webhook received: every record object, and how many requests it answered
/// with an error on purpose.
#[derive(Default)]
struct Received {
    records: Vec<serde_json::Value>,
    refused: usize,
    requests: usize,
}

/// A webhook on 127.0.0.1 that answers `status` to the n-th request (from 1) when
/// `refuse(n)`, and 200 to the others, keeping what it accepted.
async fn webhook(
    refuse: fn(usize) -> bool,
    status: u16,
) -> (String, std::sync::Arc<std::sync::Mutex<Received>>) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper_util::rt::TokioIo;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Received::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let shared = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let shared = shared.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut r = shared.lock().unwrap();
                        r.requests += 1;
                        let code = if refuse(r.requests) {
                            r.refused += 1;
                            status
                        } else {
                            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            r.records
                                .extend(v["records"].as_array().unwrap().iter().cloned());
                            200
                        };
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(code)
                                .body(Full::new(Bytes::from_static(b"try later")))
                                .unwrap(),
                        )
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_sink_delivers_every_record_through_refusals_and_a_kill_9() {
    let (url, received) = webhook(|n| n % 3 == 1, 503).await;
    let (broker, client, _tmp, config) = setup(
        "hooks",
        2,
        &format!(
            r#"
[[sink]]
name = "hook"
type = "http"
topic = "hooks"
group = "to-hook"
url = "{url}"
retries = 20
backoff_ms = 10
session_timeout_ms = 1000
"#
        ),
    )
    .await;
    const N: usize = 3_000;
    let producer = client.producer(weir::ProducerConfig::default());
    for i in 0..N {
        // About 3 MB in all: several webhook requests.
        let value = if i == 7 {
            bytes::Bytes::from_static(&[0xff, 0x00])
        } else {
            bytes::Bytes::from(format!("v{i}-{}", "x".repeat(1000)))
        };
        producer
            .enqueue(weir::ProducerRecord::new("hooks", value).key(format!("k{}", i % 10)))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let runner = connect_run(&broker, &config);
    // Kill it once something arrived, then let a new one finish.
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().unwrap().records.is_empty() {
        assert!(Instant::now() < deadline, "nothing reached the webhook");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill9(runner);
    let runner = connect_run(&broker, &config);
    let deadline = Instant::now() + Duration::from_secs(60);
    let distinct = loop {
        let distinct: BTreeSet<(u64, u64)> = received
            .lock()
            .unwrap()
            .records
            .iter()
            .map(|r| {
                (
                    r["partition"].as_u64().unwrap(),
                    r["offset"].as_u64().unwrap(),
                )
            })
            .collect();
        if distinct.len() >= N {
            break distinct;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {N} delivered",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    terminate(runner);
    assert_eq!(distinct.len(), N);
    {
        let r = received.lock().unwrap();
        assert!(r.refused > 0, "the webhook refused some requests");
        let binary = r
            .records
            .iter()
            .find(|v| v["value_encoding"] == "base64")
            .expect("a non-UTF-8 value");
        assert_eq!(binary["value"], "/wA=");
        assert!(
            r.records
                .iter()
                .all(|v| v["topic"] == "hooks" && v["key"].is_string())
        );
    }
    // Offsets were committed only after delivery: nothing left to read.
    let lag: u64 = client
        .admin()
        .describe_group("to-hook")
        .await
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.lag.unwrap_or(u64::MAX))
        .sum();
    assert_eq!(lag, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_refuses_a_batch_fails_the_sink_with_its_answer() {
    let (url, received) = webhook(|_| true, 400).await;
    let (broker, client, _tmp, config) = setup(
        "hooks",
        1,
        &format!(
            "[[sink]]\nname = \"hook\"\ntype = \"http\"\ntopic = \"hooks\"\ngroup = \"g\"\nurl = \"{url}\"\n"
        ),
    )
    .await;
    let producer = client.producer(weir::ProducerConfig::default());
    producer
        .send(weir::ProducerRecord::new("hooks", "a"))
        .await
        .unwrap();
    producer
        .send(weir::ProducerRecord::new("hooks", "b"))
        .await
        .unwrap();
    let runner = connect_run(&broker, &config);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = status_lines(&broker, &config);
        if status[0][4] == "failed" {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{status:?} {}",
            received.lock().unwrap().requests
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    terminate(runner);
    assert!(
        status[0][8].contains("answered 400 Bad Request: try later"),
        "{status:?}"
    );
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// One request: the answer's status and body, or why there was none.
async fn http(
    client: &HttpClient,
    method: &str,
    url: &str,
    body: Vec<u8>,
) -> Result<(u16, serde_json::Value), String> {
    use http_body_util::BodyExt;
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

/// POSTs `body` to 127.0.0.1:`port` once the source there listens (up to 30 s).
async fn post_when_listening(web: &HttpClient, port: u16, body: &[u8]) -> (u16, serde_json::Value) {
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http(web, "POST", &url, body.to_vec()).await {
            Ok(answer) => return answer,
            Err(e) => assert!(Instant::now() < deadline, "nothing listens on {port}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_source_acknowledges_only_what_the_broker_has_across_a_kill_9() {
    let port = free_port();
    let (broker, client, _tmp, config) = setup(
        "ingest",
        3,
        &format!(
            r#"
[[source]]
name = "api"
type = "http"
listen = "127.0.0.1:{port}"
topic = "ingest"
format = "json"
key_field = "id"
"#
        ),
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/records");
    let mut runner = Some(connect_run(&broker, &config));
    let web = http_client();

    // Bad requests are refused with a reason and produce nothing.
    let refused = post_when_listening(&web, port, b"{\"id\": 1}\nnot json\n").await;
    assert_eq!(refused.0, 400);
    assert_eq!(refused.1["error"], "line 2 is not a JSON object");
    let (code, body) = http(&web, "GET", &url, Vec::new()).await.unwrap();
    assert_eq!(code, 405, "{body}");
    let huge = vec![b' '; 9 * 1024 * 1024];
    let (code, body) = http(&web, "POST", &url, huge).await.unwrap();
    assert_eq!(code, 413, "{body}");

    // 4 clients POST 40 bodies of 250 records, retrying until a 200; the connector is
    // SIGKILLed and started again once 10 bodies were acknowledged.
    const BODIES: usize = 40;
    const PER_BODY: usize = 250;
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (web, url, acked) = (web.clone(), url.clone(), acked.clone());
        clients.push(tokio::spawn(async move {
            // The bodies that needed more than one attempt (their records may be there twice).
            let mut retried = Vec::new();
            for b in (c..BODIES).step_by(4) {
                let lines: String = (b * PER_BODY..(b + 1) * PER_BODY)
                    .map(|i| format!("{{\"id\": \"r{i}\", \"n\": {i}}}\n"))
                    .collect();
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    match http(&web, "POST", &url, lines.clone().into_bytes()).await {
                        Ok((200, answer)) => {
                            assert_eq!(answer["accepted"], PER_BODY);
                            break;
                        }
                        Ok((503, _)) | Err(_) => {}
                        Ok(other) => panic!("unexpected answer {other:?}"),
                    }
                    assert!(Instant::now() < deadline, "body {b} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if attempts > 1 {
                    retried.push(b);
                }
                acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            retried
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.load(std::sync::atomic::Ordering::SeqCst) < 10 {
        assert!(Instant::now() < deadline, "nothing acknowledged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill9(runner.take().unwrap());
    runner = Some(connect_run(&broker, &config));
    let mut retried = BTreeSet::new();
    for c in clients {
        retried.extend(c.await.unwrap());
    }
    terminate(runner.take().unwrap());
    assert!(!retried.is_empty(), "the kill interrupted no client");

    // Every acknowledged record is in the topic, keyed by its id; only bodies that were sent
    // again may be there twice.
    let records = read_all(&client, "ingest", weir::ConsumerConfig::default()).await;
    let mut count = std::collections::BTreeMap::<u64, usize>::new();
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        let n = v["n"].as_u64().unwrap();
        assert_eq!(r.key.as_deref(), Some(format!("r{n}").as_bytes()));
        *count.entry(n).or_default() += 1;
    }
    assert_eq!(count.len(), BODIES * PER_BODY, "every record arrived");
    for (n, c) in count {
        let body = n as usize / PER_BODY;
        assert!(
            c == 1 || retried.contains(&body),
            "record {n} is there {c} times but its body was acknowledged at the first attempt"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_sink_stuck_retrying_and_commits_nothing_it_did_not_deliver() {
    let (url, received) = webhook(|_| true, 503).await;
    let (broker, client, _tmp, config) = setup(
        "hooks",
        1,
        &format!(
            "[[sink]]\nname = \"hook\"\ntype = \"http\"\ntopic = \"hooks\"\ngroup = \"g\"\nurl = \"{url}\"\nretries = 100\nbackoff_ms = 1000\n"
        ),
    )
    .await;
    client
        .producer(weir::ProducerConfig::default())
        .send(weir::ProducerRecord::new("hooks", "a"))
        .await
        .unwrap();
    let runner = connect_run(&broker, &config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().requests < 2 {
        assert!(
            Instant::now() < deadline,
            "the sink never called the webhook"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The write in hand gets a grace period, not its hundred attempts (at least 100 s of
    // backoff): `terminate` fails if the runner has not exited cleanly within 30 s. (How long
    // it took is printed for docs/benchmarks.md, not asserted.)
    let stopping = Instant::now();
    terminate(runner);
    eprintln!(
        "a sink stuck retrying stopped {:?} after SIGTERM",
        stopping.elapsed()
    );
    // Nothing was delivered, so nothing was committed.
    match client.admin().describe_group("g").await {
        Err(weir::Error::GroupNotFound(_)) => {}
        Ok(group) => assert!(
            group
                .partitions
                .iter()
                .all(|p| p.committed_offset.is_none()),
            "{group:?}"
        ),
        Err(e) => panic!("{e}"),
    }
}
