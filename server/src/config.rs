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
pub fn load_settings(tick: Option<&str>, windows: Option<&str>) -> anyhow::Result<crate::load::LoadSettings> {
    let mut l = crate::load::LoadSettings::default();
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
    checkpoint_interval: Option<String>,
    container_queue_bytes: Option<String>,
    load_tick: Option<String>,
    load_windows: Option<String>,
    scale_cooldown: Option<String>,
    scale_mute: Option<String>,
    max_segments: Option<u32>,
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
    pub checkpoint_interval: u64,
    pub container_queue_bytes: u64,
    /// Segment load measurement.
    pub load: crate::load::LoadSettings,
    /// The auto-scaler.
    pub scaler: nadi_controller::autoscale::ScalerSettings,
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
        Ok(StandaloneConfig {
            load: load_settings(scaler.load_tick.as_deref(), load_windows.as_deref())?,
            scaler: scaler.settings()?,
            reader_timeout,
            data_dir: self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("nadi-data")),
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
    fn sizes() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert!(parse_size("lots").is_err());
    }
}
