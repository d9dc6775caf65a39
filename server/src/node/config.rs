//! Server settings: each is a flag, a `NADI_…` environment variable, or a key in the `--config`
//! TOML file, resolved flag > env > file > default. Sizes read like `512MiB`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Flags (and their environment variables) of `nadi standalone`. Everything is optional here so
/// that a value from the config file can fill in what was not given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StandaloneArgs {
    /// Directory for all state (controller/, tier1/). Default ./nadi-data.
    #[arg(long, env = "NADI_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Controller gRPC address. Default 127.0.0.1:9090.
    #[arg(long, env = "NADI_CONTROLLER_LISTEN")]
    pub controller_listen: Option<SocketAddr>,
    /// Segment store gRPC address. Default 127.0.0.1:12345.
    #[arg(long, env = "NADI_SEGMENT_LISTEN")]
    pub segment_listen: Option<SocketAddr>,
    /// Admin HTTP address. Default 127.0.0.1:9091.
    #[arg(long, env = "NADI_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Segment containers (fixed once the data directory exists). Default 4.
    #[arg(long, env = "NADI_CONTAINERS")]
    pub containers: Option<u32>,
    /// Size of each Tier-1 log file, e.g. 64MiB (at least 20MiB). Default 64MiB.
    #[arg(long, env = "NADI_LOG_FILE_SIZE")]
    pub log_file_size: Option<String>,
    /// A reader-group reader that has not synced for this long is declared offline, e.g. `30s`.
    /// Default 30s.
    #[arg(long, env = "NADI_READER_TIMEOUT")]
    pub reader_timeout: Option<String>,
    /// How often retention policies are applied, e.g. 30s. Default 30s.
    #[arg(long, env = "NADI_RETENTION_INTERVAL")]
    pub retention_interval: Option<String>,
    /// Bytes of log records between two metadata checkpoints per container, e.g. 64MiB.
    /// Recovery replays at most about this much log per container. Default 64MiB.
    #[arg(long, env = "NADI_CHECKPOINT_INTERVAL")]
    pub checkpoint_interval: Option<String>,
    /// Bytes of requests each container accepts before writers wait for the disk, e.g. 64MiB
    /// (at most 4GiB). Default 64MiB.
    #[arg(long, env = "NADI_CONTAINER_QUEUE_BYTES")]
    pub container_queue_bytes: Option<String>,
    #[command(flatten)]
    pub scaler: ScalerArgs,
    /// The windows segment rates are averaged over, shortest first, e.g. `2m,5m,10m,20m`
    /// (the default). A segment splits when its two shortest are above target.
    #[arg(long, env = "NADI_LOAD_WINDOWS")]
    pub load_windows: Option<String>,
    #[command(flatten)]
    pub tier: TierArgs,
    /// A TOML file with any of the settings above (keys like `data-dir`).
    #[arg(long, env = "NADI_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Auto-scaling settings of the controller (docs/autoscaling.md); `nadi standalone` and `nadi
/// controller` take them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScalerArgs {
    /// How often segment load is measured (segment store) and scaling decided (controller),
    /// e.g. `5s`. Default 5s.
    #[arg(long, env = "NADI_LOAD_TICK")]
    pub load_tick: Option<String>,
    /// A segment younger than this is neither split nor merged by load, e.g. `10m` (the
    /// default).
    #[arg(long, env = "NADI_SCALE_COOLDOWN")]
    pub scale_cooldown: Option<String>,
    /// After a scaling request for a segment, no new one for it for this long. Default 10m.
    #[arg(long, env = "NADI_SCALE_MUTE")]
    pub scale_mute: Option<String>,
    /// The most active segments auto-scaling lets a stream have. Default 1024.
    #[arg(long, env = "NADI_MAX_SEGMENTS")]
    pub max_segments: Option<u32>,
}

impl ScalerArgs {
    /// Each setting from `self` (flag or env) or else from `file`.
    pub fn or(self, file: ScalerArgs) -> ScalerArgs {
        ScalerArgs {
            load_tick: self.load_tick.or(file.load_tick),
            scale_cooldown: self.scale_cooldown.or(file.scale_cooldown),
            scale_mute: self.scale_mute.or(file.scale_mute),
            max_segments: self.max_segments.or(file.max_segments),
        }
    }

    /// The controller's auto-scaler settings.
    pub fn settings(&self) -> anyhow::Result<nadi_controller::autoscale::ScalerSettings> {
        let tick = load_settings(self.load_tick.as_deref(), None)?.tick;
        let mut s = nadi_controller::autoscale::ScalerSettings { tick, ..Default::default() };
        if let Some(c) = &self.scale_cooldown {
            s.cooldown = parse_duration(c)?;
        }
        if let Some(m) = &self.scale_mute {
            s.mute = parse_duration(m)?;
        }
        if let Some(n) = self.max_segments {
            if n == 0 {
                bail!("max segments must be at least 1");
            }
            s.max_segments = n;
        }
        Ok(s)
    }
}

/// A segment store's load measurement settings from `--load-tick` and `--load-windows`.
pub fn load_settings(tick: Option<&str>, windows: Option<&str>) -> anyhow::Result<crate::store::load::LoadSettings> {
    let mut l = crate::store::load::LoadSettings::default();
    if let Some(t) = tick {
        l.tick = parse_duration(t)?;
    }
    if let Some(w) = windows {
        l.windows = w.split(',').map(parse_duration).collect::<anyhow::Result<_>>()?;
    }
    if l.tick.is_zero() {
        bail!("load tick must be longer than 0");
    }
    if l.windows.len() < 2 || l.windows.windows(2).any(|p| p[0] >= p[1]) || l.windows[0] < l.tick {
        bail!(
            "load windows must be two or more durations, shortest first, none shorter than the load tick (e.g. 2m,5m,10m,20m)"
        );
    }
    Ok(l)
}

/// Tiering settings, shared by `nadi standalone` and `nadi segment-store`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TierArgs {
    /// Where segment data moves from the Tier-1 log: `file:///dir`, `s3://bucket/prefix`
    /// (credentials and region from the AWS_* variables), `memory://` (tests only) or `none`.
    /// Default: file:// under DATA_DIR/tier2.
    #[arg(long, env = "NADI_TIER2")]
    pub tier2: Option<String>,
    /// Endpoint of an S3-compatible server, e.g. http://127.0.0.1:9000 (default: AWS, or
    /// AWS_ENDPOINT_URL).
    #[arg(long, env = "NADI_TIER2_ENDPOINT")]
    pub tier2_endpoint: Option<String>,
    /// Most bytes of Tier-1 log files on disk, e.g. 512MiB (plus one file); appends wait for
    /// data to move to Tier-2 beyond it. Needs Tier-2 and at least 3 log files per container.
    /// Default: no limit.
    #[arg(long, env = "NADI_TIER1_CAPACITY")]
    pub tier1_capacity: Option<String>,
    /// A segment's Tier-1 bytes move to Tier-2 as one chunk once this many gathered. Default 32MiB.
    #[arg(long, env = "NADI_TIER2_CHUNK_SIZE")]
    pub tier2_chunk_size: Option<String>,
    /// ... or once the oldest of them is this old. Default 30s.
    #[arg(long, env = "NADI_TIER2_MAX_AGE")]
    pub tier2_max_age: Option<String>,
    /// Bytes of Tier-2 chunks cached for reads (with read-ahead). Default 256MiB.
    #[arg(long, env = "NADI_TIER2_CACHE_SIZE")]
    pub tier2_cache_size: Option<String>,
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
    pub max_age: std::time::Duration,
    pub cache_bytes: u64,
}

impl TierArgs {
    /// Fills what is unset here from `file`.
    pub fn or(self, file: TierArgs) -> TierArgs {
        TierArgs {
            tier2: self.tier2.or(file.tier2),
            tier2_endpoint: self.tier2_endpoint.or(file.tier2_endpoint),
            tier1_capacity: self.tier1_capacity.or(file.tier1_capacity),
            tier2_chunk_size: self.tier2_chunk_size.or(file.tier2_chunk_size),
            tier2_max_age: self.tier2_max_age.or(file.tier2_max_age),
            tier2_cache_size: self.tier2_cache_size.or(file.tier2_cache_size),
        }
    }

    fn resolve(self, data_dir: &Path, containers: u32, log_file_size: u64) -> anyhow::Result<TierConfig> {
        let url = match self.tier2.as_deref().map(str::trim) {
            Some("none") => None,
            Some(u) if !u.is_empty() => Some(u.to_owned()),
            _ => Some(data_dir.join("tier2").to_string_lossy().into_owned()),
        };
        let max_files = match self.tier1_capacity {
            Some(s) => {
                let cap = parse_size(&s)?;
                if url.is_none() {
                    bail!("--tier1-capacity needs a Tier-2 (--tier2) to move data to");
                }
                let files = cap / log_file_size / containers as u64;
                if files < 3 {
                    bail!(
                        "--tier1-capacity {s} is too small: it must hold at least 3 log files of {} per container ({containers} containers)",
                        bytesize::ByteSize(log_file_size)
                    );
                }
                files as usize
            }
            None => 0,
        };
        let chunk_bytes = match self.tier2_chunk_size {
            Some(s) => parse_size(&s)?,
            None => crate::container::storage_writer::DEFAULT_CHUNK_BYTES,
        };
        if chunk_bytes == 0 {
            bail!("--tier2-chunk-size must be at least 1 byte");
        }
        let max_age = match self.tier2_max_age {
            Some(s) => parse_duration(&s)?,
            None => crate::container::storage_writer::DEFAULT_MAX_AGE,
        };
        let cache_bytes = match self.tier2_cache_size {
            Some(s) => parse_size(&s)?,
            None => 256 * 1024 * 1024,
        };
        Ok(TierConfig { url, endpoint: self.tier2_endpoint, max_files, chunk_bytes, max_age, cache_bytes })
    }
}

/// Parses a duration such as `30s`, `500ms` or `5m`.
pub fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    humantime::parse_duration(s.trim()).map_err(|e| anyhow::anyhow!("{s:?} is not a duration ({e}); use e.g. 30s"))
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    controller_listen: Option<SocketAddr>,
    segment_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    containers: Option<u32>,
    log_file_size: Option<String>,
    reader_timeout: Option<String>,
    retention_interval: Option<String>,
    checkpoint_interval: Option<String>,
    container_queue_bytes: Option<String>,
    load_tick: Option<String>,
    load_windows: Option<String>,
    scale_cooldown: Option<String>,
    scale_mute: Option<String>,
    max_segments: Option<u32>,
    tier2: Option<String>,
    tier2_endpoint: Option<String>,
    tier1_capacity: Option<String>,
    tier2_chunk_size: Option<String>,
    tier2_max_age: Option<String>,
    tier2_cache_size: Option<String>,
}

/// Resolved settings of `nadi standalone`.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    pub data_dir: PathBuf,
    pub controller_listen: SocketAddr,
    pub segment_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub containers: u32,
    pub log_file_size: u64,
    /// See [`StandaloneArgs::reader_timeout`].
    pub reader_timeout: std::time::Duration,
    /// See [`StandaloneArgs::retention_interval`].
    pub retention_interval: std::time::Duration,
    pub checkpoint_interval: u64,
    pub container_queue_bytes: u64,
    /// Segment load measurement.
    pub load: crate::store::load::LoadSettings,
    /// The auto-scaler.
    pub scaler: nadi_controller::autoscale::ScalerSettings,
    pub tier: TierConfig,
}

/// Parses a size such as `512MiB`, `64MiB` or `1048576` (`MB` means 10^6 bytes).
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let v: bytesize::ByteSize =
        s.trim().parse().map_err(|e| anyhow::anyhow!("{s:?} is not a size ({e}); use e.g. 64MiB"))?;
    Ok(v.as_u64())
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

impl StandaloneArgs {
    /// Resolves flag > env (both already in `self`) > file > default.
    pub fn resolve(self) -> anyhow::Result<StandaloneConfig> {
        let file = match &self.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let log_file_size = match self.log_file_size.or(file.log_file_size) {
            Some(s) => parse_size(&s)?,
            None => 64 * 1024 * 1024,
        };
        if log_file_size < crate::log::file::MIN_FILE_SIZE {
            bail!("log file size must be at least 20MiB (it must hold the largest append batch)");
        }
        if log_file_size > crate::log::file::MAX_FILE_SIZE {
            bail!("log file size must be below 4GiB");
        }
        let checkpoint_interval = match self.checkpoint_interval.or(file.checkpoint_interval) {
            Some(s) => parse_size(&s)?,
            None => crate::container::DEFAULT_CHECKPOINT_INTERVAL,
        };
        if checkpoint_interval == 0 {
            bail!("checkpoint interval must be at least 1 byte");
        }
        let container_queue_bytes = match self.container_queue_bytes.or(file.container_queue_bytes) {
            Some(s) => parse_size(&s)?,
            None => crate::container::DEFAULT_QUEUE_BYTES,
        };
        if container_queue_bytes == 0 || container_queue_bytes > u32::MAX as u64 {
            bail!("container queue bytes must be between 1 byte and 4GiB");
        }
        let containers = self.containers.or(file.containers).unwrap_or(4);
        if containers == 0 || containers > 1024 {
            bail!("containers must be between 1 and 1024");
        }
        let reader_timeout = match self.reader_timeout.or(file.reader_timeout) {
            Some(s) => parse_duration(&s)?,
            None => nadi_controller::node::DEFAULT_READER_TIMEOUT,
        };
        let scaler = self.scaler.or(ScalerArgs {
            load_tick: file.load_tick,
            scale_cooldown: file.scale_cooldown,
            scale_mute: file.scale_mute,
            max_segments: file.max_segments,
        });
        let load_windows = self.load_windows.or(file.load_windows);
        let retention_interval = match self.retention_interval.or(file.retention_interval) {
            Some(s) => parse_duration(&s)?,
            None => nadi_controller::retention::DEFAULT_RETENTION_EVERY,
        };
        let data_dir = self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("nadi-data"));
        let from_file = TierArgs {
            tier2: file.tier2,
            tier2_endpoint: file.tier2_endpoint,
            tier1_capacity: file.tier1_capacity,
            tier2_chunk_size: file.tier2_chunk_size,
            tier2_max_age: file.tier2_max_age,
            tier2_cache_size: file.tier2_cache_size,
        };
        let tier = self.tier.or(from_file).resolve(&data_dir, containers, log_file_size)?;
        Ok(StandaloneConfig {
            load: load_settings(scaler.load_tick.as_deref(), load_windows.as_deref())?,
            scaler: scaler.settings()?,
            reader_timeout,
            retention_interval,
            tier,
            data_dir,
            controller_listen: self
                .controller_listen
                .or(file.controller_listen)
                .unwrap_or(([127, 0, 0, 1], 9090).into()),
            segment_listen: self.segment_listen.or(file.segment_listen).unwrap_or(([127, 0, 0, 1], 12345).into()),
            http_listen: self.http_listen.or(file.http_listen).unwrap_or(([127, 0, 0, 1], 9091).into()),
            containers,
            log_file_size,
            checkpoint_interval,
            container_queue_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nadi.toml");
        std::fs::write(&file, "data-dir = \"from-file\"\ncontainers = 8\nlog-file-size = \"32MiB\"\n").unwrap();
        let args = StandaloneArgs { config: Some(file.clone()), containers: Some(2), ..Default::default() };
        let c = args.resolve().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("from-file"));
        assert_eq!(c.containers, 2);
        assert_eq!(c.log_file_size, 32 * 1024 * 1024);
        assert_eq!(c.controller_listen.port(), 9090);
        std::fs::write(&file, "bogus = 1\n").unwrap();
        assert!(StandaloneArgs { config: Some(file), ..Default::default() }.resolve().is_err());
    }

    #[test]
    fn scaling_settings_from_flags_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nadi.toml");
        std::fs::write(&file, "scale-cooldown = \"30s\"\nload-windows = \"1s,2s\"\nmax-segments = 8\n").unwrap();
        let args = StandaloneArgs {
            config: Some(file.clone()),
            scaler: ScalerArgs { load_tick: Some("500ms".into()), ..Default::default() },
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.load.tick, std::time::Duration::from_millis(500));
        assert_eq!(c.load.windows, [1, 2].map(std::time::Duration::from_secs));
        assert_eq!(c.scaler.cooldown, std::time::Duration::from_secs(30));
        assert_eq!(c.scaler.mute, std::time::Duration::from_secs(600), "default");
        assert_eq!((c.scaler.tick, c.scaler.max_segments), (std::time::Duration::from_millis(500), 8));
        for bad in ["2s,1s", "1s", "100ms,2s", "1s,soon"] {
            let args = StandaloneArgs {
                scaler: ScalerArgs { load_tick: Some("500ms".into()), ..Default::default() },
                load_windows: Some(bad.into()),
                ..Default::default()
            };
            assert!(args.resolve().is_err(), "{bad} accepted");
        }
        let zero =
            StandaloneArgs { scaler: ScalerArgs { max_segments: Some(0), ..Default::default() }, ..Default::default() };
        assert!(zero.resolve().is_err());
    }

    #[test]
    fn tiering_settings_come_from_the_file_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nadi.toml");
        std::fs::write(
            &file,
            "tier2 = \"s3://b/p\"\ntier1-capacity = \"1GiB\"\ntier2-chunk-size = \"8MiB\"\ntier2-max-age = \"5s\"\nretention-interval = \"2s\"\n",
        )
        .unwrap();
        let c = StandaloneArgs { config: Some(file.clone()), ..Default::default() }.resolve().unwrap();
        assert_eq!(c.tier.url.as_deref(), Some("s3://b/p"));
        assert_eq!(c.tier.max_files, 4, "1 GiB / 4 containers / 64 MiB files");
        assert_eq!((c.tier.chunk_bytes, c.tier.max_age), (8 << 20, std::time::Duration::from_secs(5)));
        assert_eq!(c.retention_interval, std::time::Duration::from_secs(2));
        let tier = TierArgs { tier2: Some("none".into()), ..Default::default() };
        let c = StandaloneArgs { tier, ..Default::default() }.resolve().unwrap();
        assert!(c.tier.url.is_none());
        let tier = TierArgs { tier1_capacity: Some("100MiB".into()), ..Default::default() };
        let e = StandaloneArgs { tier, ..Default::default() }.resolve().unwrap_err().to_string();
        assert!(e.contains("too small"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("lots").is_err());
    }
}
