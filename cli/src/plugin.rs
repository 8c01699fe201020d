//! `weir plugin new|build|register|list|delete|test` (`test` in `plugin_test.rs`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use weir::{Client, PluginLimits};

/// The apt packages of the wasm toolchain (see `weir plugin build`).
const WASM_TOOLCHAIN_APT: &str =
    "apt-get install -y rustc-web cargo-web rust-web-src rust-web-llvm lld-22";

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Filter,
    Map,
    FilterMap,
    FlatMap,
    Aggregate,
    Route,
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Write a ready-to-build plugin crate in ./NAME (a template for the kind).
    New {
        name: String,
        #[arg(long, value_enum, default_value = "filter")]
        kind: Kind,
        /// Path of the weir-plugin guest SDK crate [default: the one this CLI was built from].
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Build a plugin crate to WebAssembly; prints the .wasm path as the last line.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Register a WebAssembly plugin module (validated and compiled by the broker).
    Register {
        name: String,
        file: std::path::PathBuf,
        /// Replace the module of an existing plugin of that name (running consumers keep the
        /// old one; pipelines take the new one when resumed or restarted).
        #[arg(long)]
        replace: bool,
        /// Memory one instance may use, in MiB [default: 64; at most 1024].
        #[arg(long, value_name = "MIB")]
        memory_mb: Option<u64>,
        /// CPU budget of one call (one batch), in ms [default: 2000; 10..=60000].
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
        /// Largest output of one call, in MiB [default and most: 64].
        #[arg(long, value_name = "MIB")]
        max_output_mb: Option<u64>,
    },
    /// One line per plugin: NAME<TAB>KIND<TAB>BYTES<TAB>vVERSION<TAB>SHA-256 (first 12 hex).
    List,
    /// Run a plugin on sample records (one per line) and print its outputs; a .wasm file
    /// runs here without a broker. Stderr: the aggregate state and the time per record.
    Test(crate::plugin_test::TestArgs),
    /// Delete a plugin.
    Delete { name: String },
}

impl PluginCommand {
    /// Commands that work on local files only (no broker).
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            PluginCommand::New { .. } | PluginCommand::Build { .. }
        )
    }
}

/// `new` and `build`.
pub fn run_local(cmd: PluginCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        PluginCommand::New {
            name,
            kind,
            sdk_path,
        } => {
            let dir = new_plugin(&name, kind, sdk_path)?;
            writeln!(out, "created plugin crate {}", dir.display())?;
            writeln!(out, "build it with: weir plugin build {}", dir.display())?;
        }
        PluginCommand::Build { dir } => {
            let wasm = build(&dir)?;
            writeln!(out, "{}", wasm.display())?;
        }
        _ => bail!("this plugin command needs a broker"),
    }
    Ok(())
}

pub async fn run(client: &Client, cmd: PluginCommand) -> anyhow::Result<()> {
    let admin = client.admin();
    let mut out = std::io::stdout().lock();
    match cmd {
        PluginCommand::New { .. } | PluginCommand::Build { .. } => return run_local(cmd),
        PluginCommand::Test(args) => return crate::plugin_test::run(Some(client), args).await,
        PluginCommand::Register {
            name,
            file,
            replace,
            memory_mb,
            timeout_ms,
            max_output_mb,
        } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mib = |v: Option<u64>| v.map(|m| m.saturating_mul(1024 * 1024));
            let limits = PluginLimits {
                memory_bytes: mib(memory_mb),
                call_timeout_ms: timeout_ms,
                max_output_bytes: mib(max_output_mb),
            };
            let p = admin
                .register_plugin_with(&name, wasm, limits, replace)
                .await?;
            let verb = if replace { "replaced" } else { "registered" };
            writeln!(
                out,
                "{verb} plugin {} ({}, {} bytes; memory {} MiB, {} ms per batch, output {} MiB)",
                p.name,
                p.kind,
                p.size_bytes,
                p.memory_limit_bytes / (1024 * 1024),
                p.call_timeout_ms,
                p.max_output_bytes / (1024 * 1024),
            )?;
        }
        PluginCommand::List => {
            for p in admin.list_plugins().await? {
                let sha = p.sha256.get(..12).unwrap_or(&p.sha256);
                writeln!(
                    out,
                    "{}\t{}\t{}\tv{}\t{sha}",
                    p.name, p.kind, p.size_bytes, p.version
                )?;
            }
        }
        PluginCommand::Delete { name } => admin.delete_plugin(&name).await?,
    }
    Ok(())
}

fn template(kind: Kind, fn_name: &str) -> String {
    let body = match kind {
        Kind::Filter => format!(
            "/// Keeps the records whose value contains `params.substring`.\n\
             #[filter]\n\
             pub fn {fn_name}(record: &Record, params: &Params) -> Result<bool, String> {{\n    \
             Ok(record.value_str().is_some_and(|v| v.contains(&params.substring)))\n}}\n"
        ),
        Kind::Map => format!(
            "/// Upper-cases each value.\n\
             #[map]\n\
             pub fn {fn_name}(record: Record, _params: &Params) -> Result<Record, String> {{\n    \
             let upper = record.value_str().map(str::to_uppercase).unwrap_or_default();\n    \
             Ok(record.with_value(upper))\n}}\n"
        ),
        Kind::FilterMap => format!(
            "/// Drops empty values, trims the others.\n\
             #[filter_map]\n\
             pub fn {fn_name}(record: Record, _params: &Params) -> Result<Option<Record>, String> {{\n    \
             let Some(text) = record.value_str().map(str::trim).filter(|t| !t.is_empty()) else {{\n        \
             return Ok(None);\n    }};\n    \
             let text = text.to_string();\n    \
             Ok(Some(record.with_value(text)))\n}}\n"
        ),
        Kind::FlatMap => format!(
            "/// One record per line of the value.\n\
             #[flat_map]\n\
             pub fn {fn_name}(record: Record, _params: &Params) -> Result<Vec<Record>, String> {{\n    \
             let text = record.value_str().ok_or(\"value is not UTF-8\")?.to_string();\n    \
             Ok(text.lines().map(|l| record.clone().with_value(l)).collect())\n}}\n"
        ),
        Kind::Aggregate => format!(
            "#[derive(Default, serde::Serialize, serde::Deserialize)]\n\
             pub struct State {{\n    pub total: u64,\n}}\n\n\
             /// Emits the running number of records seen.\n\
             #[aggregate]\n\
             pub fn {fn_name}(state: &mut State, record: Record, _params: &Params) -> Result<Option<Record>, String> {{\n    \
             state.total += 1;\n    \
             Ok(Some(record.with_value(state.total.to_string())))\n}}\n"
        ),
        Kind::Route => format!(
            "/// Sends records whose value contains `params.substring` to the pipeline's second\n\
             /// output (its second `--to` topic), the others to the first.\n\
             #[route]\n\
             pub fn {fn_name}(record: &Record, params: &Params) -> Result<Option<u8>, String> {{\n    \
             let hit = record.value_str().is_some_and(|v| v.contains(&params.substring));\n    \
             Ok(Some(if hit {{ 1 }} else {{ 0 }}))\n}}\n"
        ),
    };
    let params = match kind {
        Kind::Filter | Kind::Route => "    pub substring: String,\n",
        _ => "",
    };
    format!(
        "//! A Weir plugin. Build: `weir plugin build`; use: `weir plugin register NAME FILE.wasm`.\n\n\
         use serde::Deserialize;\n\
         use weir_plugin::{{Record, {attr}}};\n\n\
         /// Params given at use time as JSON: `--plugin NAME='{{...}}'`.\n\
         #[derive(Debug, Default, Deserialize)]\n\
         pub struct Params {{\n{params}}}\n\n{body}",
        attr = kind_attr(kind),
    )
}

fn kind_attr(kind: Kind) -> &'static str {
    match kind {
        Kind::Filter => "filter",
        Kind::Map => "map",
        Kind::FilterMap => "filter_map",
        Kind::FlatMap => "flat_map",
        Kind::Aggregate => "aggregate",
        Kind::Route => "route",
    }
}

fn new_plugin(name: &str, kind: Kind, sdk_path: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        bail!("plugin crate name must be [A-Za-z0-9_-]+, got {name:?}");
    }
    let sdk = match sdk_path {
        Some(p) => p,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/weir-plugin"),
    };
    let sdk = sdk.canonicalize().with_context(|| {
        format!(
            "the weir-plugin SDK is not at {}: pass --sdk-path",
            sdk.display()
        )
    })?;
    let dir = PathBuf::from(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("creating {name}"))?;
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
         [dependencies]\nweir-plugin = {{ path = \"{sdk}\" }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n\
         # Its own workspace, so it builds alone wherever it lives.\n[workspace]\n\n\
         # A panic traps: the broker reports it as the plugin's failure.\n\
         [profile.release]\npanic = \"abort\"\nopt-level = 3\nlto = true\ncodegen-units = 1\nstrip = true\n",
        sdk = sdk.display()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    let fn_name = name.replace('-', "_");
    std::fs::write(dir.join("src/lib.rs"), template(kind, &fn_name))?;
    std::fs::write(dir.join(".gitignore"), "target/\n")?;
    std::fs::create_dir_all(dir.join(".cargo"))?;
    std::fs::write(dir.join(".cargo/config.toml"), CARGO_CONFIG)?;
    Ok(dir)
}

/// `.cargo/config.toml` of a new plugin crate: WebAssembly SIMD, which wasmtime runs natively
/// (as in the repository's `plugins/.cargo/config.toml`).
const CARGO_CONFIG: &str =
    "[target.wasm32-unknown-unknown]\nrustflags = [\"-C\", \"target-feature=+simd128\"]\n";

/// Builds the crate in `dir` for wasm32 with Debian's rustc-web (-Zbuild-std) and returns the
/// path of the .wasm it produced.
fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let (cargo, rustc) = (Path::new("/usr/bin/cargo"), Path::new("/usr/bin/rustc"));
    if !cargo.exists() || !rustc.exists() {
        bail!("the wasm toolchain is missing: run {WASM_TOOLCHAIN_APT}");
    }
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        bail!("no Cargo.toml in {}", dir.display());
    }
    let mut child = Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-unknown-unknown"])
        .args([
            "-Zbuild-std=std,panic_abort",
            "--message-format",
            "json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTC", rustc)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run /usr/bin/cargo")?;
    let stdout = child.stdout.take().context("cargo stdout")?;
    let mut wasm = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(files) = msg["filenames"].as_array() {
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(".wasm") {
                    wasm = Some(PathBuf::from(f));
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("building the plugin failed (cargo exited with {status})");
    }
    wasm.context("cargo built no .wasm: is the crate-type cdylib?")
}
