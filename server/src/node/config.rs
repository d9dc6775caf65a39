//! The settings of the three server programs, each declared once: one struct per program
//! ([`StandaloneSettings`], [`ControllerSettings`], [`SegmentStoreSettings`]) built from shared
//! groups ([`NodeSettings`], [`ControlSettings`], [`StoreSettings`], [`TierSettings`]) with
//! `#[command(flatten)]`/`#[serde(flatten)]`. A field's `#[arg]` is its flag, `NADI_…`
//! environment variable, default and value parser; its doc comment is its documentation; its
//! TOML key is the flag's long name. [`super::settings`] layers them (default < `--config`
//! file < env < flag) and prints them; docs/operations.md's settings table is generated from
//! these structs (see the test `settings_table_in_the_docs_is_current`).
//!
//! To add a setting, add a field here (and regenerate the docs table with
//! `NADI_UPDATE_DOCS=1 cargo test -p nadi-server settings_table`): flag, env, file key,
//! `--print-config` and docs follow.
//!
//! Values that stand alone are checked by their value parsers (an error names the setting and
//! where the value came from); checks across settings happen in the `resolve` methods, which
//! turn the settings into what the nodes run with. Called by: `main` (through
//! [`super::settings::load`]), [`super::standalone`], [`super::controller`],
//! [`super::segment_store`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use nadi_controller::autoscale::ScalerSettings;
use nadi_security::tls::{TlsFiles, node_url};
use serde::Serialize;

use super::settings::{ConfigSource, Dur, DurList, Size};
use crate::store::load::LoadSettings;

/// Settings every server program has.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeSettings {
    /// Directory for this process's state: `controller/` (the controller's Raft log and
    /// snapshot), `tier1/` (the segment store's log) and, by default, `tier2/` (a local
    /// Tier-2). Relative to the working directory.
    #[arg(long, env = "NADI_DATA_DIR", value_name = "DIR", default_value = "nadi-data")]
    pub data_dir: PathBuf,
    /// How often segment load is measured (segment store) and scaling decided (controller)
    /// (docs/autoscaling.md). More than 0.
    #[arg(long, env = "NADI_LOAD_TICK", value_name = "DURATION", default_value = "5s", value_parser = positive)]
    pub load_tick: Dur,
    /// How this process logs on stderr: `text` (one human-readable line per event) or `json`
    /// (one JSON object per line, with `timestamp`, `level`, `message`, `target`, the event's
    /// fields and its spans). Which events: the `NADI_LOG` filter (default `info,openraft=warn`).
    #[arg(long, env = "NADI_LOG_FORMAT", value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Also export the tracing spans of nadi's crates (`debug` and up: the control-plane calls)
    /// to this OpenTelemetry collector over OTLP/gRPC, e.g. `http://127.0.0.1:4317`. Only in a
    /// `nadi` built with the `otlp` cargo feature (off by default); elsewhere giving it is an
    /// error. Default: no export.
    #[arg(long, env = "NADI_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub security: SecuritySettings,
}

/// TLS, authentication and permissions (docs/security.md). Every server program takes them;
/// all nodes of a cluster should be given the same.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SecuritySettings {
    /// PEM certificate chain this process presents on every listener (and, calling another
    /// node, as its client certificate). With `--tls-key` and `--tls-ca`; turns TLS on for
    /// every listener, and `https://` for the URLs between nodes. Checked every second and
    /// reloaded when it changes (new connections get the new certificate; a file that does not
    /// load is logged and the previous certificate kept). Default: no TLS.
    #[arg(long, env = "NADI_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1); reloaded with it.
    #[arg(long, env = "NADI_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of the CAs this process trusts: the servers it calls, and the client
    /// certificates of other nodes (the node-only services, Raft and replication, refuse a
    /// connection without one). Required with `--tls-cert`.
    #[arg(long, env = "NADI_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Whether calls must carry a valid bearer token: `none` (no authentication, every caller
    /// may do everything: the default, for a store on loopback) or `required` (a call without
    /// a valid token is refused as Unauthenticated / 401, and each call is checked against the
    /// caller's permissions).
    #[arg(long, env = "NADI_AUTH", value_name = "MODE", default_value = "none")]
    pub auth: nadi_security::auth::AuthMode,
    /// A TOML file of hashed tokens and the principal each one names (`nadi auth hash` makes
    /// an entry). Re-read when it changes. Default: none.
    #[arg(long, env = "NADI_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The key JWTs are verified against: a PEM public key (RS256, ES256, EdDSA) or a file
    /// whose bytes are the HS256 secret. A JWT's `sub` is its principal; `exp` is required.
    /// Default: JWTs are not accepted.
    #[arg(long, env = "NADI_JWT_KEY", value_name = "FILE")]
    pub jwt_key: Option<PathBuf>,
    /// The `iss` a JWT must carry. Default: not checked.
    #[arg(long, env = "NADI_JWT_ISSUER", value_name = "NAME")]
    pub jwt_issuer: Option<String>,
    /// Principals that may do everything (they grant the others their permissions), comma
    /// separated. Default: none.
    #[arg(long, env = "NADI_SUPERUSERS", value_name = "LIST", default_value = "")]
    pub superusers: String,
    /// Whether `/metrics` needs a token (with read on the cluster) when `--auth required`.
    /// `/health` and `/ready` never do.
    #[arg(long, env = "NADI_METRICS_AUTH", value_name = "BOOL", default_value = "false", action = clap::ArgAction::Set)]
    pub metrics_auth: bool,
    /// A file holding the bearer token this process presents to other nodes (controllers,
    /// segment stores) when they require one; its principal must be a superuser. Not needed
    /// between nodes that present TLS client certificates. Default: none.
    #[arg(long, env = "NADI_NODE_TOKEN_FILE", value_name = "FILE")]
    pub node_token_file: Option<PathBuf>,
}

impl SecuritySettings {
    /// The TLS files (`--tls-cert`, `--tls-key`, `--tls-ca`).
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles { cert: self.tls_cert.clone(), key: self.tls_key.clone(), ca: self.tls_ca.clone() }
    }
}

/// Settings of the controller's work: reader groups, retention and auto-scaling
/// (docs/autoscaling.md). `nadi standalone` and `nadi controller` take them.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ControlSettings {
    /// A reader-group reader that has not synced for this long is declared offline by the
    /// controller leader; its segments go back to the group at its last synced positions.
    #[arg(long, env = "NADI_READER_TIMEOUT", value_name = "DURATION", default_value = "30s")]
    pub reader_timeout: Dur,
    /// How often the controller leader applies retention policies.
    #[arg(long, env = "NADI_RETENTION_INTERVAL", value_name = "DURATION", default_value = "30s")]
    pub retention_interval: Dur,
    /// A segment younger than this is neither split nor merged by load.
    #[arg(long, env = "NADI_SCALE_COOLDOWN", value_name = "DURATION", default_value = "10m")]
    pub scale_cooldown: Dur,
    /// After a scaling request for a segment, none for it for this long.
    #[arg(long, env = "NADI_SCALE_MUTE", value_name = "DURATION", default_value = "10m")]
    pub scale_mute: Dur,
    /// The most active segments auto-scaling lets a stream have. At least 1.
    #[arg(long, env = "NADI_MAX_SEGMENTS", value_name = "N", default_value = "1024",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_segments: u32,
    /// Replicas of every container on distinct segment stores, for stores whose replicas the
    /// controllers place (`--container-log raft` without `--replica-peers`; docs/replication.md).
    /// 3 is recommended for a cluster: it survives the loss of one store. The controller leader
    /// applies its own value: change it on every controller.
    #[arg(long, env = "NADI_REPLICATION_FACTOR", value_name = "N", default_value = "1",
          value_parser = clap::value_parser!(u32).range(1..=nadi_controller::cluster::MAX_REPLICATION_FACTOR as i64))]
    pub replication_factor: u32,
    /// A segment store not heard from for this long has its replicas moved to other stores
    /// (where one is free to take them); it rejoins as a new replica if it comes back later.
    #[arg(long, env = "NADI_STORE_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = positive)]
    pub store_timeout: Dur,
}

/// Settings of a segment store. `nadi standalone` and `nadi segment-store` take them.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StoreSettings {
    /// Segment containers, 1 to 1024. Fixed per data directory: recorded in `tier1/containers`
    /// at the first start, a later different value is ignored with a warning. All stores of a
    /// cluster must use the same.
    #[arg(long, env = "NADI_CONTAINERS", value_name = "N", default_value = "4",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub containers: u32,
    /// Size of each Tier-1 log file: at least 20MiB (it must hold the largest append batch),
    /// below 4GiB. Each container keeps its current log file in memory (written with
    /// `O_DIRECT`, read from memory), plus up to two previous ones within 512 MiB over all
    /// containers: `containers × this` + at most 512 MiB once written, 768 MiB for the
    /// defaults. Many containers want smaller files. A new size applies to log files prepared
    /// from then on.
    #[arg(long, env = "NADI_LOG_FILE_SIZE", value_name = "SIZE", default_value = "64MiB", value_parser = log_file_size)]
    pub log_file_size: Size,
    /// Log bytes between two metadata checkpoints per container; recovery replays at most
    /// about this much log per container. At least 1 byte.
    #[arg(long, env = "NADI_CHECKPOINT_INTERVAL", value_name = "SIZE", default_value = "64MiB", value_parser = nonzero_size)]
    pub checkpoint_interval: Size,
    /// Bytes of requests each container accepts before writers wait for the disk
    /// (backpressure). 1 byte to 4GiB.
    #[arg(long, env = "NADI_CONTAINER_QUEUE_BYTES", value_name = "SIZE", default_value = "64MiB", value_parser = queue_bytes)]
    pub container_queue_bytes: Size,
    /// The windows segment rates are averaged over, shortest first, none shorter than the load
    /// tick. A segment splits when its two shortest are above target.
    #[arg(long, env = "NADI_LOAD_WINDOWS", value_name = "D,D,…", default_value = "2m,5m,10m,20m", value_parser = windows)]
    pub load_windows: DurList,
    /// How each container commits: `single-copy` (append + fsync on this store's Tier-1 log)
    /// or `raft` (each container is a consensus group over its Tier-1 log; docs/replication.md).
    /// A `nadi segment-store` with `raft` and no `--replica-peers` has its replicas placed by
    /// the controllers (`--replication-factor`). A log written with `raft` cannot be opened
    /// with `single-copy` (the store refuses it and says so).
    #[arg(long, env = "NADI_CONTAINER_LOG", value_name = "MODE", default_value = "single-copy")]
    pub container_log: ContainerLogMode,
    #[command(flatten)]
    #[serde(flatten)]
    pub tier: TierSettings,
}

/// Tiering settings of a segment store (docs/operations.md, "Disk space and Tier-2").
#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TierSettings {
    /// Where segment data moves from the Tier-1 log: `file:///dir` (or a plain path),
    /// `s3://bucket/prefix` (credentials and region from the AWS_* variables), `memory://`
    /// (tests only: lost on exit) or `none` (keep everything in Tier-1). Another scheme is
    /// refused: `unknown Tier-2 backend`. Default: local files under DATA_DIR/tier2; for a
    /// replicated `nadi segment-store` (`--container-log raft`), none: its Tier-2 must be one
    /// every store reaches (S3 or a shared mount; docs/replication.md).
    #[arg(long, env = "NADI_TIER2", value_name = "URL")]
    pub tier2: Option<String>,
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000` (`http://` is allowed
    /// for it). Default: AWS, or `AWS_ENDPOINT_URL`.
    #[arg(long, env = "NADI_TIER2_ENDPOINT", value_name = "URL")]
    pub tier2_endpoint: Option<String>,
    /// Most bytes of Tier-1 log files on disk (all containers), plus one file; appends wait for
    /// data to move to Tier-2 beyond it. Needs a Tier-2 and room for at least 3 log files per
    /// container. Default: no limit.
    #[arg(long, env = "NADI_TIER1_CAPACITY", value_name = "SIZE")]
    pub tier1_capacity: Option<Size>,
    /// A segment's Tier-1 bytes move to Tier-2 as one chunk once this many gathered (memory:
    /// each container's storage writer keeps two buffers of this size plus 1 MiB, a local
    /// Tier-2 about one more each, backed at start-up up to 64 MiB each) ...
    #[arg(long, env = "NADI_TIER2_CHUNK_SIZE", value_name = "SIZE", default_value = "32MiB", value_parser = nonzero_size)]
    pub tier2_chunk_size: Size,
    /// ... or once the oldest of them is this old, or (if at least 1/8 of the chunk size
    /// gathered) once they are about to leave the log files kept in memory.
    #[arg(long, env = "NADI_TIER2_MAX_AGE", value_name = "DURATION", default_value = "30s")]
    pub tier2_max_age: Dur,
    /// Bytes of Tier-2 chunk data held in memory for reads (with read-ahead of 2 chunks).
    #[arg(long, env = "NADI_TIER2_CACHE_SIZE", value_name = "SIZE", default_value = "256MiB")]
    pub tier2_cache_size: Size,
}

/// The Pravega segment-store wire protocol of a segment store (docs/pravega-compat.md).
/// `nadi standalone` and `nadi segment-store` take them.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PravegaSegmentSettings {
    /// Serve Pravega's segment-store wire protocol (for unmodified Pravega clients) on this
    /// address, `IP:port` (docs/pravega-compat.md says what is served today). The store
    /// reports where it is reached to the controllers, whose Pravega controller API (`getURI`)
    /// sends Pravega clients there. Default: off.
    #[arg(long, env = "NADI_PRAVEGA_SEGMENT_LISTEN", value_name = "ADDR")]
    pub pravega_segment_listen: Option<SocketAddr>,
    /// Where Pravega clients reach `--pravega-segment-listen`, `HOST:PORT`. Default: the
    /// listen address, which must then not be a wildcard address such as 0.0.0.0.
    #[arg(long, env = "NADI_PRAVEGA_SEGMENT_ADVERTISE", value_name = "HOST:PORT")]
    pub pravega_segment_advertise: Option<String>,
}

/// `nadi standalone`: controller, segment store and admin HTTP in one process.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StandaloneSettings {
    /// Controller gRPC address, `IP:port` (port 0: chosen by the OS).
    #[arg(long, env = "NADI_CONTROLLER_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:9090")]
    pub controller_listen: SocketAddr,
    /// Segment store gRPC address, `IP:port`; also the endpoint clients are told to use.
    #[arg(long, env = "NADI_SEGMENT_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:12345")]
    pub segment_listen: SocketAddr,
    /// Admin HTTP address, `IP:port`.
    #[arg(long, env = "NADI_HTTP_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:9091")]
    pub http_listen: SocketAddr,
    /// Serve Pravega's controller gRPC API on this address, `IP:port`, for unmodified Pravega
    /// clients (controller URI `tcp://HOST:PORT`, `tls://` with TLS; docs/pravega-compat.md).
    /// Needs `--pravega-segment-listen` too. Default: off.
    #[arg(long, env = "NADI_PRAVEGA_CONTROLLER_LISTEN", value_name = "ADDR")]
    pub pravega_controller_listen: Option<SocketAddr>,
    #[command(flatten)]
    #[serde(flatten)]
    pub pravega: PravegaSegmentSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub node: NodeSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub control: ControlSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub store: StoreSettings,
    #[command(flatten)]
    #[serde(skip)]
    pub source: ConfigSource,
}

/// `nadi controller`: one member of the controllers' Raft group.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ControllerSettings {
    /// This node's id, one of `--peers`. Required.
    #[arg(long, env = "NADI_ID", value_name = "N")]
    pub id: Option<u64>,
    /// gRPC address to listen on (clients, segment stores and the other controllers). Required.
    #[arg(long, env = "NADI_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Every member of the group, this node included: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`.
    /// Required; the same on every member. Called over TLS (`https://`) when `--tls-cert` is given.
    #[arg(long, env = "NADI_PEERS", value_name = "LIST")]
    pub peers: Option<Peers>,
    /// Admin HTTP address, `IP:port`. Default: no admin HTTP.
    #[arg(long, env = "NADI_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Serve Pravega's controller gRPC API on this address, `IP:port`, for unmodified Pravega
    /// clients (controller URI `tcp://HOST:PORT`, `tls://` with TLS; docs/pravega-compat.md).
    /// It sends clients to the segment stores started with `--pravega-segment-listen`.
    /// Default: off.
    #[arg(long, env = "NADI_PRAVEGA_CONTROLLER_LISTEN", value_name = "ADDR")]
    pub pravega_controller_listen: Option<SocketAddr>,
    #[command(flatten)]
    #[serde(flatten)]
    pub node: NodeSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub control: ControlSettings,
    #[command(flatten)]
    #[serde(skip)]
    pub source: ConfigSource,
}

/// `nadi segment-store`: a store that registers with the controllers given by the global
/// `--controller` (`NADI_CONTROLLER`).
#[derive(Debug, Clone, clap::Args, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SegmentStoreSettings {
    /// gRPC address to listen on, `IP:port`.
    #[arg(long, env = "NADI_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:12345")]
    pub listen: SocketAddr,
    /// The URL clients reach this store at. Default: `http://` (`https://` with `--tls-cert`)
    /// plus the listen address, which must then not be a wildcard address such as 0.0.0.0.
    #[arg(long, env = "NADI_ADVERTISE", value_name = "URL")]
    pub advertise: Option<String>,
    /// HTTP address for `/metrics`, `/health` and `/ready` (ready once registered with the
    /// controllers), `IP:port`. Default: none.
    #[arg(long, env = "NADI_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// Replicate every container over these segment stores, this one included:
    /// `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT` (their gRPC addresses; the same on every store).
    /// Each container is then a consensus group with a replica on each (an append is
    /// acknowledged once a majority has it fsync'd; docs/replication.md). Implies
    /// `--container-log raft`. Default: no static peers (with `--container-log raft`, the
    /// controllers place replicas).
    #[arg(long, env = "NADI_REPLICA_PEERS", value_name = "LIST")]
    pub replica_peers: Option<Peers>,
    /// This store's id among `--replica-peers`. Required with them.
    #[arg(long, env = "NADI_REPLICA_ID", value_name = "N")]
    pub replica_id: Option<u64>,
    #[command(flatten)]
    #[serde(flatten)]
    pub pravega: PravegaSegmentSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub node: NodeSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub store: StoreSettings,
    #[command(flatten)]
    #[serde(skip)]
    pub source: ConfigSource,
}

/// The controllers of a Raft group: id → gRPC URL, written `1=HOST:PORT,2=HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers(pub BTreeMap<u64, String>);

impl FromStr for Peers {
    type Err = String;
    fn from_str(s: &str) -> Result<Peers, String> {
        parse_peers(s).map(Peers).map_err(|e| e.to_string())
    }
}

impl fmt::Display for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<_> = self.0.iter().map(|(id, url)| format!("{id}={url}")).collect();
        f.write_str(&parts.join(","))
    }
}

impl Serialize for Peers {
    fn serialize<Z: serde::Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        s.collect_str(self)
    }
}

/// How a process logs (`--log-format`): the same setting for the server programs and, as a
/// global flag, for the client commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `tracing_subscriber`'s plain text lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?}: text or json")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

impl Serialize for LogFormat {
    fn serialize<Z: serde::Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        s.collect_str(self)
    }
}

/// How a segment store's containers commit (`--container-log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerLogMode {
    SingleCopy,
    Raft,
}

impl FromStr for ContainerLogMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "single-copy" => Ok(Self::SingleCopy),
            "raft" => Ok(Self::Raft),
            other => Err(format!("unknown container log mode {other:?}: single-copy or raft")),
        }
    }
}

impl fmt::Display for ContainerLogMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SingleCopy => "single-copy",
            Self::Raft => "raft",
        })
    }
}

impl Serialize for ContainerLogMode {
    fn serialize<Z: serde::Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        s.collect_str(self)
    }
}

/// Parses `1=HOST:PORT,2=HOST:PORT` into id → gRPC URL.
pub fn parse_peers(s: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((id, addr)) = part.split_once('=') else {
            bail!("peer {part:?} must look like ID=HOST:PORT");
        };
        let id: u64 = id.trim().parse().with_context(|| format!("peer id {id:?} is not a number"))?;
        let addr = addr.trim();
        let url = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        if url.parse::<http::Uri>().ok().and_then(|u| u.port_u16()).is_none() {
            bail!("peer {id} address {addr:?} must be HOST:PORT");
        }
        if out.insert(id, url).is_some() {
            bail!("peer id {id} is given twice");
        }
    }
    if out.is_empty() {
        bail!("--peers lists no controller");
    }
    Ok(out)
}

fn positive(s: &str) -> Result<Dur, String> {
    let d: Dur = s.parse()?;
    if d.0.is_zero() {
        return Err("must be longer than 0".into());
    }
    Ok(d)
}

fn nonzero_size(s: &str) -> Result<Size, String> {
    let v: Size = s.parse()?;
    if v.0 == 0 {
        return Err("must be at least 1 byte".into());
    }
    Ok(v)
}

fn log_file_size(s: &str) -> Result<Size, String> {
    let v: Size = s.parse()?;
    if v.0 < crate::log::file::MIN_FILE_SIZE {
        return Err("log file size must be at least 20MiB (it must hold the largest append batch)".into());
    }
    if v.0 > crate::log::file::MAX_FILE_SIZE {
        return Err("log file size must be below 4GiB".into());
    }
    Ok(v)
}

fn queue_bytes(s: &str) -> Result<Size, String> {
    let v = nonzero_size(s)?;
    if v.0 > u32::MAX as u64 {
        return Err("must be at most 4GiB".into());
    }
    Ok(v)
}

fn windows(s: &str) -> Result<DurList, String> {
    let w: DurList = s.parse()?;
    if w.0.len() < 2 || w.0.windows(2).any(|p| p[0] >= p[1]) {
        return Err("must be two or more durations, shortest first (e.g. 2m,5m,10m,20m)".into());
    }
    Ok(w)
}

/// A segment store's settings, resolved: what [`super::segment_store::store_config`] opens.
#[derive(Debug, Clone)]
pub struct StoreNodeConfig {
    pub data_dir: PathBuf,
    pub containers: u32,
    pub log_file_size: u64,
    pub checkpoint_interval: u64,
    pub container_queue_bytes: u64,
    pub container_log: ContainerLogMode,
    /// Segment load measurement.
    pub load: LoadSettings,
    pub tier: TierConfig,
}

/// Resolved tiering settings.
#[derive(Debug, Clone)]
pub struct TierConfig {
    /// `None`: no Tier-2.
    pub url: Option<String>,
    pub endpoint: Option<String>,
    /// Log files per container at most (0: no limit).
    pub max_files: usize,
    pub chunk_bytes: u64,
    pub max_age: Duration,
    pub cache_bytes: u64,
}

/// A controller node's work settings, resolved.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    pub reader_timeout: Duration,
    pub retention_interval: Duration,
    pub scaler: ScalerSettings,
    pub placement: nadi_controller::registry::Placement,
}

/// Resolved Pravega segment-store wire settings (`--pravega-segment-listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PravegaSegmentConfig {
    pub listen: SocketAddr,
    /// `HOST:PORT` given with `--pravega-segment-advertise`; `None`: the bound address.
    pub advertise: Option<String>,
}

impl PravegaSegmentConfig {
    /// Where Pravega clients reach the listener once it is bound to `bound`.
    pub fn advertised(&self, bound: SocketAddr) -> anyhow::Result<String> {
        match &self.advertise {
            Some(a) => Ok(a.clone()),
            None if bound.ip().is_unspecified() => bail!(
                "--pravega-segment-listen {bound} is a wildcard address: give --pravega-segment-advertise with the HOST:PORT Pravega clients should use"
            ),
            None => Ok(bound.to_string()),
        }
    }
}

/// Resolved settings of `nadi standalone`.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    pub controller_listen: SocketAddr,
    pub segment_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// Pravega's controller API (`--pravega-controller-listen`), if served.
    pub pravega_controller_listen: Option<SocketAddr>,
    /// Pravega's segment-store wire protocol (`--pravega-segment-listen`), if served.
    pub pravega_segment: Option<PravegaSegmentConfig>,
    pub control: ControlConfig,
    pub store: StoreNodeConfig,
    /// TLS, authentication and what this node presents to other nodes.
    pub security: SecurityConfig,
}

/// Resolved settings of `nadi controller`.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub id: u64,
    pub listen: SocketAddr,
    pub peers: BTreeMap<u64, String>,
    pub http_listen: Option<SocketAddr>,
    /// Pravega's controller API (`--pravega-controller-listen`), if served.
    pub pravega_controller_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub control: ControlConfig,
    /// TLS, authentication and what this node presents to other nodes.
    pub security: SecurityConfig,
}

/// Resolved settings of `nadi segment-store`.
#[derive(Debug, Clone)]
pub struct SegmentStoreConfig {
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub http_listen: Option<SocketAddr>,
    /// `--replica-id` and `--replica-peers` (id → gRPC URL), if the containers are replicated.
    pub replicas: Option<(u64, BTreeMap<u64, String>)>,
    /// Pravega's segment-store wire protocol (`--pravega-segment-listen`), if served.
    pub pravega_segment: Option<PravegaSegmentConfig>,
    pub store: StoreNodeConfig,
    /// TLS, authentication and what this node presents to other nodes.
    pub security: SecurityConfig,
}

impl ControlSettings {
    fn resolve(&self, node: &NodeSettings) -> ControlConfig {
        ControlConfig {
            reader_timeout: self.reader_timeout.0,
            retention_interval: self.retention_interval.0,
            scaler: ScalerSettings {
                tick: node.load_tick.0,
                cooldown: self.scale_cooldown.0,
                mute: self.scale_mute.0,
                max_segments: self.max_segments,
            },
            placement: nadi_controller::registry::Placement {
                replication_factor: self.replication_factor,
                store_timeout: self.store_timeout.0,
            },
        }
    }
}

/// A node's security settings, resolved (docs/security.md).
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// The TLS files; `cert` and `key` are both set (TLS on the listeners) or both unset.
    pub tls: nadi_security::tls::TlsFiles,
    /// How callers are authenticated.
    pub auth: nadi_security::auth::AuthConfig,
    /// Whether `/metrics` needs a token (with `--auth required`).
    pub metrics_auth: bool,
    /// What this node presents when it calls other nodes: its node token and its TLS
    /// certificate as a client certificate, and the CA it trusts.
    pub client: nadi_security::channel::ClientSecurity,
}

impl SecurityConfig {
    /// Whether the listeners speak TLS.
    pub fn tls_on(&self) -> bool {
        self.tls.cert.is_some()
    }

    /// The scheme of this node's URLs: `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_on() { "https" } else { "http" }
    }
}

impl SecuritySettings {
    fn resolve(&self) -> anyhow::Result<SecurityConfig> {
        use nadi_security::auth::{AuthConfig, AuthMode};
        let tls = self.tls_files();
        // A certificate needs its key and a CA, a key its certificate (the files themselves
        // are loaded, and checked, when the listeners start).
        tls.check_server()?;
        let token = match &self.node_token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --node-token-file {}", path.display()))?;
                let token = text.trim().to_owned();
                if token.is_empty() {
                    bail!("--node-token-file {} is empty", path.display());
                }
                Some(token)
            }
            None => None,
        };
        let superusers: Vec<String> =
            self.superusers.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if self.auth == AuthMode::None && (self.token_file.is_some() || self.jwt_key.is_some()) {
            tracing::warn!("--token-file / --jwt-key given but --auth is none: tokens are not checked");
        }
        let client = nadi_security::channel::ClientSecurity {
            token,
            tls: (tls.cert.is_some() || tls.ca.is_some()).then(|| nadi_security::tls::ClientTls { files: tls.clone() }),
        };
        Ok(SecurityConfig {
            tls,
            auth: AuthConfig {
                mode: self.auth,
                token_file: self.token_file.clone(),
                jwt_key: self.jwt_key.clone(),
                jwt_issuer: self.jwt_issuer.clone(),
                superusers,
            },
            metrics_auth: self.metrics_auth,
            client,
        })
    }
}

impl StoreSettings {
    fn resolve(&self, node: &NodeSettings) -> anyhow::Result<StoreNodeConfig> {
        let load = LoadSettings { tick: node.load_tick.0, windows: self.load_windows.0.clone() };
        if load.windows[0] < load.tick {
            bail!("--load-windows {} has a window shorter than --load-tick {}", self.load_windows, node.load_tick);
        }
        Ok(StoreNodeConfig {
            data_dir: node.data_dir.clone(),
            containers: self.containers,
            log_file_size: self.log_file_size.0,
            checkpoint_interval: self.checkpoint_interval.0,
            container_queue_bytes: self.container_queue_bytes.0,
            container_log: self.container_log,
            load,
            tier: self.tier.resolve(node, self.containers, self.log_file_size.0)?,
        })
    }
}

impl TierSettings {
    fn resolve(&self, node: &NodeSettings, containers: u32, log_file_size: u64) -> anyhow::Result<TierConfig> {
        let url = match self.tier2.as_deref().map(str::trim) {
            Some("none") => None,
            Some(u) if !u.is_empty() => Some(u.to_owned()),
            _ => Some(node.data_dir.join("tier2").to_string_lossy().into_owned()),
        };
        let max_files = match self.tier1_capacity {
            Some(cap) => {
                if url.is_none() {
                    bail!("--tier1-capacity needs a Tier-2 (--tier2) to move data to");
                }
                let files = cap.0 / log_file_size / containers as u64;
                if files < 3 {
                    bail!(
                        "--tier1-capacity {cap} is too small: it must hold at least 3 log files of {} per container ({containers} containers)",
                        Size(log_file_size)
                    );
                }
                files as usize
            }
            None => 0,
        };
        Ok(TierConfig {
            url,
            endpoint: self.tier2_endpoint.clone(),
            max_files,
            chunk_bytes: self.tier2_chunk_size.0,
            max_age: self.tier2_max_age.0,
            cache_bytes: self.tier2_cache_size.0,
        })
    }
}

impl PravegaSegmentSettings {
    fn resolve(&self) -> anyhow::Result<Option<PravegaSegmentConfig>> {
        let Some(listen) = self.pravega_segment_listen else {
            if let Some(a) = &self.pravega_segment_advertise {
                bail!("--pravega-segment-advertise {a} needs --pravega-segment-listen");
            }
            return Ok(None);
        };
        if let Some(a) = &self.pravega_segment_advertise {
            let ok = a.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && !host.contains('/')
                    && !host.contains(char::is_whitespace)
                    && port.parse::<u16>().is_ok()
            });
            if !ok {
                bail!("--pravega-segment-advertise {a:?} must be HOST:PORT (no scheme)");
            }
        }
        Ok(Some(PravegaSegmentConfig { listen, advertise: self.pravega_segment_advertise.clone() }))
    }
}

impl StandaloneSettings {
    /// Checks the settings together and resolves them into what the node runs with.
    pub fn resolve(&self) -> anyhow::Result<StandaloneConfig> {
        let pravega_segment = self.pravega.resolve()?;
        if let Some(a) = self.pravega_controller_listen
            && pravega_segment.is_none()
        {
            bail!(
                "--pravega-controller-listen {a} needs --pravega-segment-listen too: Pravega clients ask the controller where segments are served"
            );
        }
        Ok(StandaloneConfig {
            controller_listen: self.controller_listen,
            segment_listen: self.segment_listen,
            http_listen: self.http_listen,
            pravega_controller_listen: self.pravega_controller_listen,
            pravega_segment,
            control: self.control.resolve(&self.node),
            store: self.store.resolve(&self.node)?,
            security: self.node.security.resolve()?,
        })
    }
}

impl ControllerSettings {
    /// Checks the settings together and resolves them into what the node runs with.
    pub fn resolve(&self) -> anyhow::Result<ControllerConfig> {
        let required =
            |what: &str| format!("--{what} is required (or NADI_{} or `{what}` in --config)", what.to_uppercase());
        let id = self.id.with_context(|| required("id"))?;
        let listen = self.listen.with_context(|| required("listen"))?;
        let peers = self.peers.clone().with_context(|| required("peers"))?.0;
        if !peers.contains_key(&id) {
            bail!("--id {id} is not one of --peers");
        }
        let tls = self.node.security.tls_files();
        // With TLS on, the other controllers are called over TLS.
        let peers = peers.into_iter().map(|(id, url)| (id, node_url(&url, tls.serves_tls()))).collect();
        Ok(ControllerConfig {
            id,
            listen,
            peers,
            http_listen: self.http_listen,
            pravega_controller_listen: self.pravega_controller_listen,
            data_dir: self.node.data_dir.clone(),
            control: self.control.resolve(&self.node),
            security: self.node.security.resolve()?,
        })
    }
}

impl SegmentStoreSettings {
    /// Checks the settings together and resolves them into what the node runs with.
    pub fn resolve(&self) -> anyhow::Result<SegmentStoreConfig> {
        let tls = self.node.security.tls_files();
        if let Some(a) = &self.advertise
            && tls.serves_tls()
            && !a.starts_with("https://")
        {
            bail!("--advertise {a} must be an https:// URL: this store serves TLS (--tls-cert)");
        }
        let replicas = match (self.replica_id, &self.replica_peers) {
            (None, None) => None,
            (Some(_), None) => bail!("--replica-id needs --replica-peers"),
            (None, Some(_)) => bail!("--replica-peers needs --replica-id (this store's id among them)"),
            (Some(id), Some(peers)) => {
                if !peers.0.contains_key(&id) {
                    bail!("--replica-id {id} is not one of --replica-peers");
                }
                let peers = peers.0.iter().map(|(id, url)| (*id, node_url(url, tls.serves_tls()))).collect();
                Some((id, peers))
            }
        };
        let mut store = self.store.resolve(&self.node)?;
        if replicas.is_some() {
            store.container_log = ContainerLogMode::Raft;
        }
        // Replicated containers move data only to a Tier-2 every replica reads (a bucket, or a
        // file system all stores mount): there is no default, since a store's own local
        // directory would not be one (docs/replication.md).
        if store.container_log == ContainerLogMode::Raft {
            match self.store.tier.tier2.as_deref().map(str::trim) {
                None | Some("none") => store.tier.url = None,
                Some(_) => {}
            }
        }
        Ok(SegmentStoreConfig {
            listen: self.listen,
            advertise: self.advertise.clone(),
            http_listen: self.http_listen,
            replicas,
            pravega_segment: self.pravega.resolve()?,
            store,
            security: self.node.security.resolve()?,
        })
    }
}

/// Each server program's name and its command line (for the docs table and tests).
pub fn programs() -> [(&'static str, clap::Command); 3] {
    use clap::Args as _;
    [
        ("standalone", StandaloneSettings::augment_args(clap::Command::new("standalone"))),
        ("controller", ControllerSettings::augment_args(clap::Command::new("controller"))),
        ("segment-store", SegmentStoreSettings::augment_args(clap::Command::new("segment-store"))),
    ]
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
