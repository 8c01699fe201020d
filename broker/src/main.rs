//! `weir-broker`: opens the data directory, serves gRPC, fsyncs and applies retention in the
//! background, and shuts down cleanly on SIGTERM / Ctrl-C.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use tokio::net::TcpListener;
use weir_broker::cluster::Cluster;
use weir_broker::config::{Args, FsyncPolicy};
use weir_broker::kafka::{Advertised, Kafka};
use weir_broker::security::member::Members;
use weir_broker::{Broker, Config};

/// Threads of tokio's blocking pool, where RocksDB reads and writes and plugin calls run (each
/// short: plugins are bounded by their deadline). Tokio's default, 512, let a producer writing
/// to 1000 partitions at once start 338 threads; RocksDB serialises writes on one WAL anyway,
/// so beyond a few dozen threads work queues instead of running sooner.
const MAX_BLOCKING_THREADS: usize = 64;

fn main() -> anyhow::Result<()> {
    weir_common::alloc::tune_for_large_messages();
    // `--version`: `weir-broker VERSION (COMMIT)` (SPEC.md).
    let flags = Args::command()
        .version(weir_build_info::LONG_VERSION)
        .get_matches();
    let config = Config::resolve(Args::from_arg_matches(&flags)?)?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openraft logs every vote and replication step at info.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()?;
    runtime.block_on(run(config))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the broker");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
}

async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(data_dir = %config.data_dir.display(), fsync = ?config.fsync, "opening data directory");
    let tls = match &config.tls {
        None => None,
        Some(files) => {
            let pem = files.load()?;
            weir_broker::server::check_tls(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "bad TLS certificate or key: {}",
                    weir_common::error::with_causes(&e)
                )
            })?;
            Some(pem)
        }
    };
    let broker = Broker::open(&config).context("cannot open the data directory")?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let mut members = None;
    let cluster = match config.cluster.clone() {
        None => None,
        Some(spec) => {
            if let Some(pem) = &tls
                && let Some(peer_ca) = &pem.peer_ca
            {
                let bad = |e: &dyn std::error::Error| {
                    anyhow::anyhow!("bad --tls-peer-ca: {}", weir_common::error::with_causes(e))
                };
                weir_broker::cluster::network::use_peer_tls(peer_ca, &pem.cert, &pem.key)
                    .map_err(|e| bad(&e))?;
                members = Some(Arc::new(Members::new(peer_ca).map_err(|e| bad(&e))?));
            }
            tracing::info!(
                node_id = spec.node_id,
                members = spec.peers.len(),
                "joining the cluster"
            );
            let cluster = Cluster::start(spec, broker.store().clone()).await?;
            broker.attach_cluster(Arc::clone(&cluster));
            Some(cluster)
        }
    };

    let mut background = spawn_background(&broker, &config);
    if let Some(at) = &config.metrics_listen {
        let metrics = TcpListener::bind(at)
            .await
            .with_context(|| format!("cannot serve metrics on {at}"))?;
        let maddr = metrics.local_addr()?;
        tracing::info!(addr = %maddr, "serving metrics at http://{maddr}/metrics");
        background.push(tokio::spawn(weir_broker::server::metrics::serve(
            metrics,
            Arc::clone(&broker),
        )));
    }

    let kafka = match &config.kafka_listen {
        None => None,
        Some(at) => {
            let listener = TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot serve the Kafka protocol on {at}"))?;
            let bound = listener.local_addr()?;
            let advertised = match &config.kafka_advertise {
                Some(a) => Advertised::parse(a)
                    .with_context(|| format!("--kafka-advertise must be HOST:PORT, got {a:?}"))?,
                None => Advertised::of_bound(bound),
            };
            let kafka = Kafka::new(Arc::clone(&broker), advertised, tls.as_ref())
                .map_err(|e| anyhow::anyhow!("cannot serve the Kafka protocol: {e}"))?;
            Some((listener, bound, kafka))
        }
    };

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "weir-broker listening on {addr}")?;
    stdout.flush()?;
    drop(stdout);
    // In a cluster, the other members' Kafka listeners name this one in their answers.
    broker.advertise_kafka(kafka.as_ref().map(|(_, _, k)| {
        let a = k.advertised();
        format!("{}:{}", a.host, a.port)
    }));
    // The Kafka listener: its line after the gRPC one (SPEC.md), then it accepts.
    let (kafka_stop, kafka_stopped) = tokio::sync::watch::channel(false);
    let kafka_task = match kafka {
        None => None,
        Some((listener, bound, kafka)) => {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "weir-broker kafka listening on {bound}")?;
            stdout.flush()?;
            drop(stdout);
            let advertised = kafka.advertised();
            tracing::info!(addr = %bound, advertised = %format!("{}:{}", advertised.host, advertised.port), tls = tls.is_some(), "serving the Kafka protocol");
            Some(tokio::spawn(kafka.serve(listener, kafka_stopped)))
        }
    };
    // systemd (`Type=notify`, packaging/weir-broker.service): ready once the port accepts.
    // Without NOTIFY_SOCKET (not under systemd) this does nothing.
    let status = format!("serving on {addr}");
    if let Err(e) = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ],
    ) {
        tracing::warn!(error = %e, "cannot tell systemd the broker is ready");
    }
    tracing::info!(%addr, tls = tls.is_some(), client_certs = tls.as_ref().is_some_and(|t| t.client_ca.is_some()), "serving");

    // A member whose data dir turns out to be wiped or another cluster's stops, and says why.
    let failed = Arc::new(std::sync::Mutex::new(None));
    let stop = {
        let (cluster, failed, b) = (cluster.clone(), Arc::clone(&failed), Arc::clone(&broker));
        async move {
            match cluster {
                None => shutdown_signal().await,
                Some(c) => tokio::select! {
                    // Leadership moves off this member while it still serves.
                    _ = shutdown_signal() => b.controlled_shutdown().await,
                    why = c.failed() => {
                        *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                    }
                },
            }
        }
    };
    // Both front doors stop taking requests at once.
    let stop = async move {
        stop.await;
        let _ = kafka_stop.send(true);
    };
    weir_broker::server::serve(
        Arc::clone(&broker),
        cluster.clone(),
        listener,
        config.limits,
        tls.as_ref(),
        members,
        stop,
    )
    .await?;
    if let Some(task) = kafka_task {
        let _ = task.await;
    }
    broker.stop_background();
    if let Err(e) = broker.checkpoint_high_watermarks() {
        tracing::warn!(error = %e, "cannot checkpoint the high watermarks");
    }
    if let Some(c) = cluster {
        c.shutdown().await;
    }

    for task in background {
        task.abort();
    }
    let store = broker.store().clone();
    tokio::task::spawn_blocking(move || store.sync_wal()).await??;
    if let Some(why) = failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
        anyhow::bail!("{why}");
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// How often the broker looks for group members whose session expired.
const GROUP_EXPIRY_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// Retention, group-member expiry and (for `--fsync interval`) the periodic WAL fsync.
fn spawn_background(broker: &Arc<Broker>, config: &Config) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let b = Arc::clone(broker);
    let every = config.retention_check_interval;
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let b = Arc::clone(&b);
            let _ = tokio::task::spawn_blocking(move || b.enforce_retention()).await;
        }
    }));
    let b = Arc::clone(broker);
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(GROUP_EXPIRY_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            b.expire_group_members();
        }
    }));
    if config.fsync == FsyncPolicy::Interval {
        let store = broker.store().clone();
        let every = config.fsync_interval;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let s = store.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.sync_wal()).await {
                    tracing::error!(error = %e, "WAL fsync failed");
                }
            }
        }));
    }
    tasks
}
