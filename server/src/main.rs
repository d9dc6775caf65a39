//! The `nadi` binary: the server commands (`standalone`, `controller`, `segment-store`, from
//! this crate's [`nadi_server::node`]) and the client commands (`scope`, `stream`, `write`,
//! `read`, … from the `nadi-cli` crate). See `nadi --help` and ARCHITECTURE.md.
//!
//! Owns: the command line. Calls: `nadi_server::node` (server commands) and `nadi_cli` (client
//! commands).

use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use nadi_server::node::config::{ControllerSettings, SegmentStoreSettings, StandaloneSettings};
use nadi_server::node::settings;

#[derive(Debug, Parser)]
#[command(name = "nadi", version, about = "Nadi: a durable, elastic, segmented stream store")]
struct Cli {
    /// Controller URL(s), comma-separated; client commands fail over between them.
    #[arg(long, global = true, env = "NADI_CONTROLLER", default_value = "http://127.0.0.1:9090")]
    controller: String,
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

fn main() {
    keep_freed_memory();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| settings::name_env_source(e, &Cli::command(), &argv).exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let filter = tracing_subscriber::EnvFilter::try_from_env("NADI_LOG").unwrap_or_else(|_| {
        let server = matches!(cli.command, Command::Standalone(_) | Command::Controller(_) | Command::SegmentStore(_));
        let default = if server { "info,openraft=warn" } else { "warn" };
        tracing_subscriber::EnvFilter::new(default)
    });
    // Colours only on a terminal: logs redirected to files stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli, &matches)) {
        eprintln!("error: {}", nadi_cli::one_line(&e));
        std::process::exit(1);
    }
    // Do not wait for background tasks (tail readers) on the way out.
    runtime.shutdown_timeout(Duration::from_millis(100));
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

async fn run(cli: Cli, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    use nadi_server::node::{controller, segment_store, standalone};
    match cli.command {
        Command::Standalone(_) => {
            let s: StandaloneSettings = server_settings("standalone", matches)?;
            standalone::run(s.resolve()?).await
        }
        Command::Controller(_) => {
            let s: ControllerSettings = server_settings("controller", matches)?;
            controller::run_controller(s.resolve()?).await
        }
        Command::SegmentStore(_) => {
            let s: SegmentStoreSettings = server_settings("segment-store", matches)?;
            let controllers = nadi_cli::commands::controllers(&cli.controller);
            segment_store::run_segment_store(controllers, s.resolve()?).await
        }
        Command::Client(command) => nadi_cli::run(&cli.controller, command).await,
    }
}
