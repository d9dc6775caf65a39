//! The `nadi` binary: the server commands (`standalone`, `controller`, `segment-store`, from
//! this crate's [`nadi_server::node`]) and the client commands (`scope`, `stream`, `write`,
//! `read`, … from the `nadi-cli` crate). See `nadi --help` and ARCHITECTURE.md.
//!
//! Owns: the command line. Calls: `nadi_server::node` (server commands) and `nadi_cli` (client
//! commands).

use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use nadi_server::node::config::{ControllerSettings, LogFormat, SegmentStoreSettings, StandaloneSettings};
use nadi_server::node::{logging, settings};

#[derive(Debug, Parser)]
#[command(name = "nadi", version, about = "Nadi: a durable, elastic, segmented stream store")]
struct Cli {
    /// Controller URL(s), comma-separated; client commands fail over between them.
    #[arg(long, global = true, env = "NADI_CONTROLLER", default_value = "http://127.0.0.1:9090")]
    controller: String,
    /// Log lines on stderr as `text` or `json` (one object per line). The server programs take
    /// it as a setting (`--log-format`, `NADI_LOG_FORMAT` or `log-format` in --config).
    #[arg(long, global = true, env = "NADI_LOG_FORMAT", value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Client commands: the bearer token to present (docs/security.md). Servers take
    /// `--node-token-file` instead.
    #[arg(long, global = true, env = "NADI_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Client commands: a PEM bundle of the CAs to trust for `https://` controller and segment
    /// store URLs. The server programs take it as a setting.
    #[arg(long, global = true, env = "NADI_TLS_CA", value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run controller, segment store and admin HTTP in one process.
    Standalone(StandaloneSettings),
    /// Run one controller of a Raft group (3 for a cluster that survives one failure).
    Controller(ControllerSettings),
    /// Run a segment store that registers with the controllers given by --controller.
    SegmentStore(SegmentStoreSettings),
    #[command(flatten)]
    Client(nadi_cli::ClientCommand),
}

/// Keeps memory that glibc's allocator freed for reuse instead of returning it to the kernel.
///
/// gRPC decodes and encodes batches of up to megabytes, each in a new buffer. By default
/// glibc serves such sizes with `mmap` (its threshold adapts up to 32 MiB) and trims the heap
/// once 128 KiB or more at its top are free, so buffers keep coming from fresh pages. Fresh
/// pages are slow to touch on VMs that hand freed memory back to the host (see
/// docs/performance.md). With a fixed 32 MiB `mmap` threshold and a 1 GiB trim threshold, freed
/// buffers are reused (`nadi bench` against `nadi standalone`: 2–5 % more throughput in pairs
/// of runs, about the noise of these machines). The memory stays the process's (bounded by the queues that bound the buffers).
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters; called before any other thread runs.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// A parsed command, with a server program's settings layered (flags, env, `--config`).
enum Prepared {
    Standalone(Box<StandaloneSettings>),
    Controller(Box<ControllerSettings>),
    SegmentStore(Box<SegmentStoreSettings>),
    Client(nadi_cli::ClientCommand),
}

fn main() {
    keep_freed_memory();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| settings::name_env_source(e, &Cli::command(), &argv).exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let fail = |e: anyhow::Error| -> ! {
        eprintln!("error: {}", nadi_cli::one_line(&e));
        std::process::exit(1);
    };
    // Server settings are layered before logging starts: `log-format` is one of them. A
    // `nadi --log-format json standalone` (the global flag before the program's name) counts
    // when the program's own setting was left at its default.
    let global_format =
        (matches.value_source("log_format") == Some(clap::parser::ValueSource::CommandLine)).then_some(cli.log_format);
    // A server's format and OTLP endpoint (`None` for client commands).
    let (prepared, server) = match cli.command {
        Command::Standalone(_) => {
            let s: StandaloneSettings = server_settings("standalone", &matches).unwrap_or_else(|e| fail(e));
            let node = (server_format(s.node.log_format, global_format), s.node.otlp_endpoint.clone());
            (Prepared::Standalone(Box::new(s)), Some(node))
        }
        Command::Controller(_) => {
            let s: ControllerSettings = server_settings("controller", &matches).unwrap_or_else(|e| fail(e));
            let node = (server_format(s.node.log_format, global_format), s.node.otlp_endpoint.clone());
            (Prepared::Controller(Box::new(s)), Some(node))
        }
        Command::SegmentStore(_) => {
            let s: SegmentStoreSettings = server_settings("segment-store", &matches).unwrap_or_else(|e| fail(e));
            let node = (server_format(s.node.log_format, global_format), s.node.otlp_endpoint.clone());
            (Prepared::SegmentStore(Box::new(s)), Some(node))
        }
        Command::Client(c) => (Prepared::Client(c), None),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Prepared::Client(c) = &prepared
        && let Some(n) = nadi_cli::runtime_threads(c)
    {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().build().expect("tokio runtime");
    let otlp = {
        // The OTLP exporter's channel is made on this runtime.
        let _entered = runtime.enter();
        match &server {
            Some((format, otlp)) => logging::init(*format, "info,openraft=warn", otlp.as_deref()),
            None => logging::init(cli.log_format, "warn", None),
        }
        .unwrap_or_else(|e| fail(e))
    };
    if let Err(e) = runtime.block_on(run(&cli.controller, client_security(cli.token, cli.tls_ca), prepared)) {
        drop(otlp);
        fail(e);
    }
    drop(otlp);
    // Do not wait for background tasks (tail readers) on the way out.
    runtime.shutdown_timeout(Duration::from_millis(100));
}

/// What client commands present and trust: `--token` and `--tls-ca`.
fn client_security(
    token: Option<String>,
    tls_ca: Option<std::path::PathBuf>,
) -> nadi_security::channel::ClientSecurity {
    nadi_security::channel::ClientSecurity {
        token,
        tls: tls_ca.map(|ca| nadi_security::tls::ClientTls {
            files: nadi_security::tls::TlsFiles { ca: Some(ca), ..Default::default() },
        }),
    }
}

/// A server's log format: its own setting, unless that is the default and the global flag
/// was given before the program's name.
fn server_format(own: LogFormat, global: Option<LogFormat>) -> LogFormat {
    if own == LogFormat::default() { global.unwrap_or(own) } else { own }
}

/// The settings of server program `name`: its flags, environment and defaults in `matches`
/// (clap's first parse) layered with its `--config` file. With `--print-config` they are
/// printed and the process exits.
fn server_settings<S>(name: &'static str, matches: &clap::ArgMatches) -> anyhow::Result<S>
where
    S: clap::Args + FromArgMatches + serde::Serialize,
{
    let sub = matches.subcommand_matches(name).expect("the subcommand that was parsed");
    let loaded = settings::load::<S>(name, sub)?;
    if loaded.config.print_config {
        print!("{}", loaded.to_toml()?);
        std::process::exit(0);
    }
    Ok(loaded.settings)
}

async fn run(
    controller: &str,
    security: nadi_security::channel::ClientSecurity,
    command: Prepared,
) -> anyhow::Result<()> {
    use nadi_server::node::{controller, segment_store, standalone};
    match command {
        Prepared::Standalone(s) => standalone::run(s.resolve()?).await,
        Prepared::Controller(s) => controller::run_controller(s.resolve()?).await,
        Prepared::SegmentStore(s) => {
            let controllers = nadi_cli::commands::controllers(controller);
            segment_store::run_segment_store(controllers, s.resolve()?).await
        }
        Prepared::Client(command) => nadi_cli::run(controller, security, command).await,
    }
}
