//! `nadi-cli`: the client commands of the `nadi` binary (scopes, streams, scaling, cluster,
//! reader groups, transactions, `write`, `read`, `bench`), built only on the `nadi-client`
//! crate and the shared protocol types of `nadi-proto`.
//!
//! Owns: the clap definitions of the client commands ([`ClientCommand`]) and their
//! implementations ([`commands`], [`bench`] and [`workload`] for `bench --workload`, [`stats`]
//! for `stream stats` and `reader-group stats`), the progress line of `write` and `read` ([`progress`]),
//! and the TIME arguments of seek by time ([`time`]). Called by: the `nadi`
//! binary of `nadi-server`, which adds its server commands beside these; nothing here depends
//! on the server.
//!
//! Each command prints a short result on stdout and, on failure, one line `error: …` on stderr
//! with a non-zero exit code ([`one_line`]).

pub mod bench;
pub mod commands;
pub mod progress;
pub mod stats;
pub mod time;
pub mod workload;

use std::time::Duration;

use clap::Subcommand;
use nadi_client::NadiClient;

use commands::{KeyMode, controllers};

/// The client commands of the `nadi` binary (the server binary flattens these into its own
/// command list, beside `standalone`, `controller` and `segment-store`).
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Manage scopes.
    #[command(subcommand)]
    Scope(ScopeCmd),
    /// Manage streams.
    #[command(subcommand)]
    Stream(StreamCmd),
    /// Inspect the cluster.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Manage reader groups (readers join with `nadi read --group`).
    #[command(subcommand)]
    ReaderGroup(GroupCmd),
    /// Grant, revoke and list permissions (docs/security.md).
    #[command(subcommand)]
    Acl(AclCmd),
    /// Make tokens for a token file; ask who the controller takes you for.
    #[command(subcommand)]
    Auth(AuthCmd),
    /// Write each stdin line as one event; exits 0 only when every event is durable.
    Write {
        /// SCOPE/STREAM
        stream: String,
        /// Routing key for every event.
        #[arg(long, conflicts_with = "key_sep")]
        key: Option<String>,
        /// The routing key is the text before the first SEP in each line.
        #[arg(long)]
        key_sep: Option<String>,
        /// Stable writer id: makes the write idempotent, so running it again with the same id
        /// over the same input (e.g. after it was killed) stores no event twice. Default: a
        /// random id.
        #[arg(long)]
        writer_id: Option<String>,
        /// Write all lines in one transaction: readable all at once after the commit, or never.
        #[arg(long)]
        txn: bool,
        /// Lease of the transaction, e.g. `60s`, `5m` (with --txn).
        #[arg(long, requires = "txn", default_value = "60s", value_parser = humantime::parse_duration)]
        txn_lease: Duration,
    },
    /// Transactions: begin, add events, commit, abort, inspect.
    #[command(subcommand)]
    Txn(TxnCmd),
    /// Measure producer/consumer throughput and latency; prints one JSON object.
    Bench(bench::BenchArgs),
    /// Print events, one payload per line.
    Read {
        /// SCOPE/STREAM
        stream: String,
        /// Start at the beginning of the stream (default: only new events).
        #[arg(long)]
        from_start: bool,
        /// Start at the events appended at or after TIME: RFC 3339 (2026-12-07T09:00:00Z,
        /// with an offset too), a time ago (-1h, -30m, -1h30m, -2d) or milliseconds since the
        /// Unix epoch. With --group, where a new group starts.
        #[arg(long, value_name = "TIME", conflicts_with = "from_start", allow_hyphen_values = true)]
        from_time: Option<String>,
        /// Stop after N events.
        #[arg(long)]
        max: Option<u64>,
        /// Stop after this many seconds without an event.
        #[arg(long)]
        idle_timeout: Option<f64>,
        /// Join reader group NAME (created if missing: from the start with --from-start, else
        /// from the tail); several processes with the same group share the stream's segments.
        #[arg(long)]
        group: Option<String>,
        /// With --group: this reader's id (default: random).
        #[arg(long, requires = "group")]
        reader_id: Option<String>,
        /// With --group: print `STREAM/SEGMENT_ID@OFFSET<TAB>` before each payload, and
        /// `#checkpoint NAME` before the first event after this reader recorded a checkpoint.
        #[arg(long, requires = "group")]
        with_position: bool,
    },
}

/// The flags of `stream stats` and `reader-group stats`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// Sample again every SECS seconds (default 2) until Ctrl-C; on a terminal the table is
    /// redrawn in place. Give the name first: `stats SCOPE/NAME --watch 5`.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<f64>,
    /// With --watch: stop after N samples.
    #[arg(long, value_name = "N", requires = "watch")]
    pub count: Option<u64>,
    /// One JSON object per sample, on one line, instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl StatsArgs {
    fn options(&self, interval: Duration) -> anyhow::Result<stats::StatsOptions> {
        let watch = seconds(self.watch, "--watch")?;
        if watch.is_some_and(|w| w.is_zero()) {
            anyhow::bail!(commands::ArgError::Invalid(nadi_proto::views::InvalidInput(
                "--watch must be more than 0 seconds".into()
            )));
        }
        Ok(stats::StatsOptions { json: self.json, watch, count: self.count, interval })
    }
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create a reader group over one or more streams of a scope.
    Create {
        /// SCOPE/GROUP
        group: String,
        /// A stream of the scope (repeat for several).
        #[arg(long = "stream", required = true)]
        streams: Vec<String>,
        /// head | tail | STREAM/SEGMENT_ID=OFFSET,… (default head).
        #[arg(long, default_value = "head")]
        from: String,
        /// Start every stream at the events appended at or after TIME (as `read --from-time`).
        #[arg(long, value_name = "TIME", conflicts_with = "from", allow_hyphen_values = true)]
        from_time: Option<String>,
        /// A subscriber: streams with `consumption:MIN,MAX` retention keep their data until this
        /// group's last checkpoint has passed it (at most MAX).
        #[arg(long)]
        subscriber: bool,
        #[arg(long)]
        json: bool,
    },
    /// List the reader groups of a scope.
    List {
        scope: String,
        #[arg(long)]
        json: bool,
    },
    /// Readers, segment assignment, positions and lag.
    Info {
        /// SCOPE/GROUP
        group: String,
        #[arg(long)]
        json: bool,
    },
    /// Per reader: its segments, positions and lag in bytes (tail minus position); and the
    /// segments no reader owns.
    Stats {
        /// SCOPE/GROUP
        group: String,
        #[command(flatten)]
        args: StatsArgs,
    },
    /// Delete a reader group.
    Delete {
        /// SCOPE/GROUP
        group: String,
    },
    /// Start a checkpoint; with --wait, wait until every reader recorded its position.
    Checkpoint {
        /// SCOPE/GROUP
        group: String,
        /// The checkpoint's name.
        name: String,
        /// Wait up to this many seconds for it to complete.
        #[arg(long)]
        wait: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Move the group to a checkpoint or a stream cut; its readers must join again.
    Reset {
        /// SCOPE/GROUP
        group: String,
        #[arg(long, conflicts_with = "cut", required_unless_present = "cut")]
        checkpoint: Option<String>,
        /// STREAM/SEGMENT_ID=OFFSET,…
        #[arg(long)]
        cut: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Declare a reader offline (it died): its segments go back at its last synced positions.
    Offline {
        /// SCOPE/GROUP
        group: String,
        /// The reader's id.
        reader: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScopeCmd {
    /// Create a scope.
    Create { scope: String },
    /// List the scopes.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete an empty scope.
    Delete { scope: String },
}

#[derive(Debug, Subcommand)]
pub enum TxnCmd {
    /// Open a transaction; prints its id.
    Begin {
        /// SCOPE/STREAM
        stream: String,
        /// Lease, e.g. `60s`: an open transaction not committed or pinged within it is aborted.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        lease: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Add stdin lines (one event each) to an open transaction begun by any process; does not commit.
    Write {
        /// Transaction id.
        txn: String,
        /// Routing key for every event.
        #[arg(long, conflicts_with = "key_sep")]
        key: Option<String>,
        /// The routing key is the text before the first SEP in each line.
        #[arg(long)]
        key_sep: Option<String>,
    },
    /// Commit: all events become readable. Committing a committed transaction succeeds.
    Commit {
        txn: String,
        #[arg(long)]
        json: bool,
    },
    /// Abort: none of the events will ever be readable.
    Abort {
        txn: String,
        #[arg(long)]
        json: bool,
    },
    /// Extend the lease of an open transaction.
    Ping {
        txn: String,
        /// New lease from now (default: the current lease length).
        #[arg(long, value_parser = humantime::parse_duration)]
        lease: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// A transaction's state.
    Status {
        txn: String,
        #[arg(long)]
        json: bool,
    },
    /// The transactions of a stream (open ones and recently finished ones).
    List {
        /// SCOPE/STREAM
        stream: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Controller members, leader, segment stores and container assignment.
    Info {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AclCmd {
    /// Give PRINCIPAL a permission on a resource (needs admin on the resource).
    Grant {
        principal: String,
        /// `read`, `write` or `admin` (each includes the ones before it).
        permission: String,
        /// `prn::/` (the cluster), `prn::/scope:S`, `prn::/scope:S/stream:T` or
        /// `prn::/scope:S/reader-group:G`.
        resource: String,
    },
    /// Take a grant back.
    Revoke { principal: String, permission: String, resource: String },
    /// The grants you may see (all of them for an admin of the cluster).
    List {
        /// Only this principal's.
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Make a new random token for PRINCIPAL: prints the token, then the `[[token]]` entry to
    /// append to the servers' --token-file (which holds only its hash). Needs no server.
    Token { principal: String },
    /// Print the `[[token]]` entry for an existing token read from stdin.
    Hash { principal: String },
    /// Who the controller takes this client's token for.
    Whoami,
}

#[derive(Debug, Subcommand)]
pub enum StreamCmd {
    /// Create a stream.
    Create {
        /// SCOPE/STREAM
        stream: String,
        /// Number of segments of a fixed stream (default 1).
        #[arg(long)]
        segments: Option<u32>,
        /// fixed | events:RATE,FACTOR,MIN | bytes:RATE,FACTOR,MIN (RATE in KiB/s) | readers:MIN
        /// (as many segments as the largest subscriber group has readers, at least MIN).
        #[arg(long)]
        scaling: Option<String>,
        /// none | time:DURATION (e.g. 7days) | size:BYTES (e.g. 512MiB) | consumption:MIN,MAX
        /// (kept until every subscriber reader group passed it, at least MIN, at most MAX).
        #[arg(long)]
        retention: Option<String>,
    },
    /// Change a stream's scaling and/or retention policy.
    Update {
        /// SCOPE/STREAM
        stream: String,
        #[arg(long)]
        scaling: Option<String>,
        #[arg(long)]
        retention: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Split one segment or merge adjacent ones (ids as in `stream info --json`).
    Scale {
        /// SCOPE/STREAM
        stream: String,
        /// Id of the segment to split.
        #[arg(long, conflicts_with = "merge", required_unless_present = "merge")]
        split: Option<u64>,
        /// Parts of the split (default 2).
        #[arg(long, requires = "split")]
        into: Option<u32>,
        /// Comma-separated ids of adjacent segments to merge.
        #[arg(long)]
        merge: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The stream's event-time watermark from its writers' time notes, and how many writers
    /// hold it (active) or no longer do (idle).
    Watermarks {
        /// SCOPE/STREAM
        stream: String,
        #[arg(long)]
        json: bool,
    },
    /// Print a stream cut: the head (default), the tail or the cut at a time, as
    /// SEGMENT_ID:OFFSET,…
    Cut {
        /// SCOPE/STREAM
        stream: String,
        /// The tail (every active segment at its length) instead of the head.
        #[arg(long)]
        tail: bool,
        /// The cut at TIME: each segment at its first event appended at or after it. TIME is
        /// RFC 3339 (2026-12-07T09:00:00Z, with an offset too), a time ago (-1h, -30m, -1h30m,
        /// -2d) or milliseconds since the Unix epoch.
        #[arg(long, value_name = "TIME", conflicts_with = "tail", allow_hyphen_values = true)]
        at: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Truncate a stream at a stream cut: older segments are deleted, the cut becomes the head.
    Truncate {
        /// SCOPE/STREAM
        stream: String,
        /// The cut, SEGMENT_ID:OFFSET,… (as printed by `stream cut`).
        #[arg(long, conflicts_with_all = ["at_tail", "before"])]
        cut: Option<String>,
        /// Truncate at the current tail (drop everything written so far).
        #[arg(long, conflicts_with = "before")]
        at_tail: bool,
        /// Drop every event appended before TIME (truncate at the cut at TIME). TIME as for
        /// `stream cut --at`: RFC 3339, a time ago (-1h, -2d) or milliseconds.
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        before: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every epoch of a stream with its segments.
    History {
        /// SCOPE/STREAM
        stream: String,
        #[arg(long)]
        json: bool,
    },
    /// List the streams of a scope.
    List {
        scope: String,
        #[arg(long)]
        json: bool,
    },
    /// Show a stream's state and active segments.
    Info {
        /// SCOPE/STREAM
        stream: String,
        #[arg(long)]
        json: bool,
    },
    /// Per segment: key range, state, head offset, length and size in bytes, writer events,
    /// and append rates (events/s, bytes/s) from two samples.
    Stats {
        /// SCOPE/STREAM
        stream: String,
        /// Seconds between the two samples of a single (not watched) run.
        #[arg(long, value_name = "SECS", default_value_t = 1.0)]
        interval: f64,
        #[command(flatten)]
        args: StatsArgs,
    },
    /// Seal a stream: no more writes.
    Seal { stream: String },
    /// Delete a sealed stream and its data.
    Delete { stream: String },
}

/// The error and its causes on one line, ending with the stable error code when there is one
/// (the same `code` the admin HTTP API returns), e.g. `… [NOT_FOUND_STREAM]`.
/// Worker threads the runtime of a client command should have (`nadi bench` sizes its own;
/// see `--client-threads`); `None`: tokio's default.
pub fn runtime_threads(cmd: &ClientCommand) -> Option<usize> {
    match cmd {
        ClientCommand::Bench(args) => args.runtime_threads(),
        _ => None,
    }
}

pub fn one_line(e: &anyhow::Error) -> String {
    let text = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
    let code = e.chain().find_map(|c| {
        c.downcast_ref::<nadi_client::ClientError>()
            .and_then(|ce| ce.code)
            .or_else(|| c.downcast_ref::<commands::ArgError>().map(|a| a.code()))
            .or_else(|| c.downcast_ref::<nadi_proto::views::InvalidInput>().map(|e| e.code()))
    });
    match code {
        Some(code) => format!("{text} [{}]", code.reason()),
        None => text,
    }
}

fn key_mode(key: Option<String>, key_sep: Option<String>) -> KeyMode {
    match (key, key_sep) {
        (Some(k), _) => KeyMode::Fixed(k),
        (None, Some(sep)) => KeyMode::Separator(sep),
        (None, None) => KeyMode::None,
    }
}

/// Runs one client command against the controllers at `controller` (comma-separated URLs),
/// presenting `security`'s token and trusting its CA.
pub async fn run(
    controller: &str,
    security: nadi_client::ClientSecurity,
    command: ClientCommand,
) -> anyhow::Result<()> {
    let client = || NadiClient::with_security(&controllers(controller), security.clone());
    match command {
        ClientCommand::Scope(ScopeCmd::Create { scope }) => commands::scope_create(&client()?, &scope).await,
        ClientCommand::Scope(ScopeCmd::List { json }) => commands::scope_list(&client()?, json).await,
        ClientCommand::Scope(ScopeCmd::Delete { scope }) => commands::scope_delete(&client()?, &scope).await,
        ClientCommand::Cluster(ClusterCmd::Info { json }) => commands::cluster_info(&client()?, json).await,
        ClientCommand::Acl(AclCmd::Grant { principal, permission, resource }) => {
            let added = client()?.grant_permission(&principal, &permission, &resource).await?;
            println!("{} {principal} {permission} on {resource}", if added { "granted" } else { "already granted:" });
            Ok(())
        }
        ClientCommand::Acl(AclCmd::Revoke { principal, permission, resource }) => {
            let removed = client()?.revoke_permission(&principal, &permission, &resource).await?;
            println!("{} {principal} {permission} on {resource}", if removed { "revoked" } else { "no such grant:" });
            Ok(())
        }
        ClientCommand::Acl(AclCmd::List { principal, json }) => {
            let grants = client()?.list_permissions(principal.as_deref()).await?;
            if json {
                let rows: Vec<_> = grants
                    .iter()
                    .map(|g| serde_json::json!({"principal": g.principal, "permission": g.permission, "resource": g.resource}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for g in grants {
                    println!("{}\t{}\t{}", g.principal, g.permission, g.resource);
                }
            }
            Ok(())
        }
        ClientCommand::Auth(AuthCmd::Token { principal }) => {
            let (token, entry) = nadi_security::auth::new_token(&principal).map_err(anyhow::Error::msg)?;
            println!("{token}");
            eprintln!("# add to the servers' --token-file (it holds only the hash):");
            eprint!("{}", nadi_security::auth::entry_toml(&entry));
            Ok(())
        }
        ClientCommand::Auth(AuthCmd::Hash { principal }) => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            let entry = nadi_security::auth::hash_token(&principal, token.trim()).map_err(anyhow::Error::msg)?;
            print!("{}", nadi_security::auth::entry_toml(&entry));
            Ok(())
        }
        ClientCommand::Auth(AuthCmd::Whoami) => {
            let me = client()?.who_am_i().await?;
            let role = if me.superuser { " (superuser)" } else { "" };
            let mode = if me.auth_required { "tokens required" } else { "no authentication" };
            println!("{}{role}; the controller: {mode}", me.principal);
            Ok(())
        }
        ClientCommand::Stream(cmd) => {
            let c = client()?;
            match cmd {
                StreamCmd::Create { stream, segments, scaling, retention } => {
                    commands::stream_create(&c, &stream, segments, scaling.as_deref(), retention.as_deref()).await
                }
                StreamCmd::Update { stream, scaling, retention, json } => {
                    commands::stream_update(&c, &stream, scaling.as_deref(), retention.as_deref(), json).await
                }
                StreamCmd::Scale { stream, split, into, merge, json } => {
                    commands::stream_scale(&c, &stream, split, into, merge.as_deref(), json).await
                }
                StreamCmd::History { stream, json } => commands::stream_history(&c, &stream, json).await,
                StreamCmd::Watermarks { stream, json } => commands::stream_watermarks(&c, &stream, json).await,
                StreamCmd::Cut { stream, tail, at, json } => {
                    commands::stream_cut(&c, &stream, tail, at.as_deref(), json).await
                }
                StreamCmd::Truncate { stream, cut, at_tail, before, json } => {
                    let before = before.map(|t| time::parse_time("--before", &t)).transpose()?;
                    commands::stream_truncate(&c, &stream, cut.as_deref(), at_tail, before, json).await
                }
                StreamCmd::List { scope, json } => commands::stream_list(&c, &scope, json).await,
                StreamCmd::Info { stream, json } => commands::stream_info(&c, &stream, json).await,
                StreamCmd::Stats { stream, interval, args } => {
                    let interval = seconds(Some(interval), "--interval")?.unwrap_or_default();
                    stats::stream(&c, &stream, args.options(interval)?).await
                }
                StreamCmd::Seal { stream } => commands::stream_seal(&c, &stream).await,
                StreamCmd::Delete { stream } => commands::stream_delete(&c, &stream).await,
            }
        }
        ClientCommand::Write { stream, key, key_sep, writer_id, txn, txn_lease } => {
            commands::write(&client()?, &stream, key_mode(key, key_sep), writer_id, txn.then_some(txn_lease)).await
        }
        ClientCommand::Txn(cmd) => {
            let c = client()?;
            match cmd {
                TxnCmd::Begin { stream, lease, json } => commands::txn_begin(&c, &stream, lease, json).await,
                TxnCmd::Write { txn, key, key_sep } => commands::txn_write(&c, &txn, key_mode(key, key_sep)).await,
                TxnCmd::Commit { txn, json } => commands::txn_op(&c, "commit", &txn, None, json).await,
                TxnCmd::Abort { txn, json } => commands::txn_op(&c, "abort", &txn, None, json).await,
                TxnCmd::Ping { txn, lease, json } => commands::txn_op(&c, "ping", &txn, lease, json).await,
                TxnCmd::Status { txn, json } => commands::txn_op(&c, "status", &txn, None, json).await,
                TxnCmd::List { stream, json } => commands::txn_list(&c, &stream, json).await,
            }
        }
        ClientCommand::Bench(args) => match &args.workload {
            Some(path) => workload::run(&client()?, &workload::Workload::load(path)?, args.scale_to).await,
            None => bench::run(&client()?, args).await,
        },
        ClientCommand::Read { stream, from_start, from_time, max, idle_timeout, group, reader_id, with_position } => {
            let idle = seconds(idle_timeout, "--idle-timeout")?;
            let from = match from_time {
                Some(t) => commands::ReadFrom::Time(time::parse_time("--from-time", &t)?),
                None if from_start => commands::ReadFrom::Head,
                None => commands::ReadFrom::Tail,
            };
            match group {
                Some(group) => {
                    let opts = commands::GroupReadOptions { reader_id, with_position };
                    commands::read_group(&client()?, &stream, &group, from, max, idle, opts).await
                }
                None => commands::read(&client()?, &stream, from, max, idle).await,
            }
        }
        ClientCommand::ReaderGroup(cmd) => {
            let c = client()?;
            match cmd {
                GroupCmd::Create { group, streams, from, from_time, subscriber, json } => {
                    let from_time = from_time.map(|t| time::parse_time("--from-time", &t)).transpose()?;
                    commands::group_create(&c, &group, &streams, &from, from_time, subscriber, json).await
                }
                GroupCmd::List { scope, json } => commands::group_list(&c, &scope, json).await,
                GroupCmd::Info { group, json } => commands::group_info(&c, &group, json).await,
                GroupCmd::Stats { group, args } => stats::group(&c, &group, args.options(Duration::ZERO)?).await,
                GroupCmd::Delete { group } => commands::group_delete(&c, &group).await,
                GroupCmd::Checkpoint { group, name, wait, json } => {
                    let wait = seconds(wait, "--wait")?;
                    commands::group_checkpoint(&c, &group, &name, wait, json).await
                }
                GroupCmd::Reset { group, checkpoint, cut, json } => {
                    commands::group_reset(&c, &group, checkpoint.as_deref(), cut.as_deref(), json).await
                }
                GroupCmd::Offline { group, reader } => commands::group_offline(&c, &group, &reader).await,
            }
        }
    }
}

/// A `--flag SECS` value as a duration.
fn seconds(v: Option<f64>, flag: &str) -> anyhow::Result<Option<Duration>> {
    match v {
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(_) => anyhow::bail!("{flag} must be a number of seconds"),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use clap::error::ErrorKind;

    use super::*;

    #[derive(Debug, Parser)]
    struct Nadi {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        Nadi::try_parse_from(std::iter::once("nadi").chain(args.iter().copied())).map(|n| n.command)
    }

    #[test]
    fn the_commands_are_well_formed() {
        use clap::CommandFactory;
        Nadi::command().debug_assert();
    }

    /// A time ago starts with `-`: the time flags take it as a value, not as a flag.
    #[test]
    fn time_flags_take_times_ago_and_exclude_the_other_starts() {
        let Ok(ClientCommand::Stream(StreamCmd::Cut { at, tail: false, .. })) =
            parse(&["stream", "cut", "s/t", "--at", "-1h"])
        else {
            panic!("stream cut --at -1h")
        };
        assert_eq!(at.as_deref(), Some("-1h"));
        let Ok(ClientCommand::Read { from_time, from_start: false, .. }) =
            parse(&["read", "s/t", "--from-time", "-1h30m"])
        else {
            panic!("read --from-time -1h30m")
        };
        assert_eq!(from_time.as_deref(), Some("-1h30m"));
        let Ok(ClientCommand::ReaderGroup(GroupCmd::Create { from_time, from, .. })) =
            parse(&["reader-group", "create", "s/g", "--stream", "t", "--from-time", "2026-12-07T09:00:00Z"])
        else {
            panic!("reader-group create --from-time")
        };
        assert_eq!((from_time.as_deref(), from.as_str()), (Some("2026-12-07T09:00:00Z"), "head"));
        for conflict in [
            &["stream", "cut", "s/t", "--at", "-1h", "--tail"][..],
            &["read", "s/t", "--from-time", "-1h", "--from-start"],
            &["reader-group", "create", "s/g", "--stream", "t", "--from", "tail", "--from-time", "-1h"],
        ] {
            assert_eq!(parse(conflict).unwrap_err().kind(), ErrorKind::ArgumentConflict, "{conflict:?}");
        }
    }
}
