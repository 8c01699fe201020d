//! `weir`: the Weir command-line tool, built on the Rust SDK.
//!
//! One module per subcommand. Data goes to stdout; errors are one line on stderr starting
//! with `error:`, with a non-zero exit code.

mod acl;
mod admin;
mod bench;
mod cluster;
mod connect;
mod console;
mod consume;
mod group;
mod pipeline;
mod plugin;
mod plugin_test;
mod produce;
mod status;
mod topic;
mod user;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use weir::{Client, ClientOptions, Credentials, PluginUse};

/// Clap value parser of `--plugin NAME[=JSON]` (consume, pipeline create, bench).
fn plugin_use(s: &str) -> Result<PluginUse, String> {
    Ok(PluginUse::parse(s))
}

#[derive(Parser)]
#[command(
    name = "weir",
    version = weir_build_info::LONG_VERSION,
    about = "Weir event-streaming platform CLI"
)]
struct Cli {
    /// Broker address(es), comma-separated HOST:PORT.
    #[arg(long, global = true, env = "WEIR_BROKER", default_value = weir::DEFAULT_BROKER)]
    broker: String,
    /// TLS: connect over TLS, trusting the CA certificate(s) in this PEM file.
    #[arg(long, global = true, env = "WEIR_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// TLS: present this client certificate (PEM) to a broker that asks for one.
    #[arg(long, global = true, env = "WEIR_TLS_CERT", value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// TLS: the private key of --tls-cert (PEM).
    #[arg(
        long,
        global = true,
        env = "WEIR_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Authenticate as this user (brokers run with --auth); its password comes from
    /// WEIR_PASSWORD or --password.
    #[arg(
        long,
        global = true,
        env = "WEIR_USER",
        value_name = "NAME",
        conflicts_with = "token"
    )]
    user: Option<String>,
    /// The password of --user (prefer WEIR_PASSWORD: command lines are visible to others).
    #[arg(
        long,
        global = true,
        env = "WEIR_PASSWORD",
        hide_env_values = true,
        requires = "user"
    )]
    password: Option<String>,
    /// Authenticate with this token (brokers run with --auth).
    #[arg(long, global = true, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// Where the broker is and how to connect to it.
#[derive(Clone)]
pub struct Target {
    pub addr: String,
    pub options: ClientOptions,
}

impl Target {
    fn of(cli: &Cli) -> anyhow::Result<Self> {
        let mut options = ClientOptions::from_tls_files(
            cli.tls_ca.as_deref(),
            cli.tls_cert.as_deref(),
            cli.tls_key.as_deref(),
        )?;
        options.credentials = match (&cli.user, &cli.password, &cli.token) {
            (Some(user), Some(password), None) => {
                Some(Credentials::password(user.clone(), password.clone()))
            }
            (Some(_), None, _) => {
                anyhow::bail!("--user needs a password: set WEIR_PASSWORD (or --password)")
            }
            (None, _, Some(token)) => Some(Credentials::token(token.clone())),
            _ => None,
        };
        Ok(Self {
            addr: cli.broker.clone(),
            options,
        })
    }

    pub async fn connect(&self) -> weir::Result<Client> {
        Client::connect_with(&self.addr, self.options.clone()).await
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Produce one record per stdin line.
    Produce(produce::ProduceArgs),
    /// Print records of a topic (alone, or as a member of a consumer group).
    Consume(consume::ConsumeArgs),
    /// List, describe, reset and delete consumer groups.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Register, list and delete WebAssembly plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Create, list, describe, delete and resume continuous plugin pipelines.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Views: read-only topics through a chain of plugins, for any consumer.
    #[command(subcommand)]
    View(view::ViewCommand),
    /// Measure throughput and latency.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Cluster members and their health.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// The broker on one screen: health, cluster, topics, groups, plugins, pipelines, and
    /// what needs attention (exit code 1 if anything does).
    Status,
    /// Add, list and remove users (brokers run with --auth).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Grant, revoke and list who may do what (brokers run with --auth).
    #[command(subcommand)]
    Acl(acl::AclCommand),
    /// Operate a broker's host: online backups, health checks.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Run connectors that import into and export out of Weir (files, HTTP, PostgreSQL).
    #[command(subcommand)]
    Connect(connect::ConnectCommand),
    /// The web console: topics, messages, groups, plugins and pipelines in a browser.
    Console(console::ConsoleArgs),
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Local commands need no broker.
    let cli = match cli.command {
        Command::Plugin(plugin::PluginCommand::Test(args)) if args.is_local() => {
            return plugin_test::run(None, args).await;
        }
        Command::Plugin(cmd) if cmd.is_local() => return plugin::run_local(cmd),
        command => Cli { command, ..cli },
    };
    let target = Target::of(&cli)?;
    let cli = match cli.command {
        // Checks its file before connecting.
        Command::Connect(cmd) => return connect::run(&target, cmd).await,
        Command::Console(args) => return console::run(&target, args).await,
        command => Cli { command, ..cli },
    };
    let client = target.connect().await?;
    match cli.command {
        Command::Topic(cmd) => topic::run(&client, cmd).await,
        Command::Admin(cmd) => admin::run(&client, cmd).await,
        Command::Produce(args) => produce::run(&client, args).await,
        Command::Consume(args) => consume::run(&client, args).await,
        Command::Group(cmd) => group::run(&client, cmd).await,
        Command::Plugin(cmd) => plugin::run(&client, cmd).await,
        Command::Pipeline(cmd) => pipeline::run(&client, cmd).await,
        Command::View(cmd) => view::run(&client, cmd).await,
        Command::Bench(cmd) => bench::run(&client, &target, cmd).await,
        Command::Cluster(cmd) => cluster::run(&client, cmd).await,
        Command::Status => status::run(&client, &cli.broker).await,
        Command::User(cmd) => user::run(&client, cmd).await,
        Command::Acl(cmd) => acl::run(&client, cmd).await,
        Command::Connect(cmd) => connect::run(&target, cmd).await,
        Command::Console(args) => console::run(&target, args).await,
    }
}

fn main() -> ExitCode {
    weir_common::alloc::tune_for_large_messages();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
