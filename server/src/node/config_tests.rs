//! Tests of the settings structs in [`super`] and their layering by [`crate::node::settings`]:
//! defaults, file < flag precedence, errors, `--print-config` round trips, and the settings
//! table in docs/operations.md. (Environment variables are tested through the binary in
//! `server/tests/cli.rs`, which sets them on a child process.)

use std::path::Path;

use clap::{Args, Command, FromArgMatches};
use serde::Serialize;

use super::*;
use crate::node::settings::{Loaded, Source, load, settings_table};

/// Loads `program`'s settings from `args` (and the file they name).
fn load_args<S: Args + FromArgMatches + Serialize>(program: &'static str, args: &[&str]) -> anyhow::Result<Loaded<S>> {
    let m = S::augment_args(Command::new(program)).no_binary_name(true).try_get_matches_from(args)?;
    load(program, &m)
}

fn standalone(args: &[&str]) -> anyhow::Result<StandaloneConfig> {
    load_args::<StandaloneSettings>("standalone", args)?.settings.resolve()
}

fn write(dir: &Path, text: &str) -> String {
    let file = dir.join("nadi.toml");
    std::fs::write(&file, text).unwrap();
    file.display().to_string()
}

#[test]
fn defaults_are_the_crates_defaults() {
    let c = standalone(&[]).unwrap();
    assert_eq!(c.store.data_dir, PathBuf::from("nadi-data"));
    assert_eq!(c.controller_listen, ([127, 0, 0, 1], 9090).into());
    assert_eq!(c.segment_listen, ([127, 0, 0, 1], 12345).into());
    assert_eq!(c.http_listen, ([127, 0, 0, 1], 9091).into());
    assert_eq!(c.store.containers, 4);
    assert_eq!(c.store.log_file_size, 64 << 20);
    assert_eq!(c.store.checkpoint_interval, crate::container::DEFAULT_CHECKPOINT_INTERVAL);
    assert_eq!(c.store.container_queue_bytes, crate::container::DEFAULT_QUEUE_BYTES);
    assert_eq!(c.store.load, LoadSettings::default());
    assert_eq!(c.store.tier.chunk_bytes, crate::container::storage_writer::DEFAULT_CHUNK_BYTES);
    assert_eq!(c.store.tier.max_age, crate::container::storage_writer::DEFAULT_MAX_AGE);
    assert_eq!(c.store.tier.cache_bytes, 256 << 20);
    assert_eq!((c.store.tier.max_files, c.store.tier.url.as_deref()), (0, Some("nadi-data/tier2")));
    assert_eq!(c.control.reader_timeout, nadi_controller::node::DEFAULT_READER_TIMEOUT);
    assert_eq!(c.control.retention_interval, nadi_controller::retention::DEFAULT_RETENTION_EVERY);
    let d = ScalerSettings::default();
    let s = &c.control.scaler;
    assert_eq!((s.tick, s.cooldown, s.mute, s.max_segments), (d.tick, d.cooldown, d.mute, d.max_segments));
}

#[test]
fn a_flag_beats_the_file_which_beats_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "data-dir = \"from-file\"\ncontainers = 8\nlog-file-size = \"32MiB\"\nscale-cooldown = \"30s\"\n",
    );
    let loaded = load_args::<StandaloneSettings>("standalone", &["--config", &file, "--containers", "2"]).unwrap();
    let c = loaded.settings.resolve().unwrap();
    assert_eq!(c.store.data_dir, PathBuf::from("from-file"));
    assert_eq!(c.store.containers, 2, "flag over file");
    assert_eq!(c.store.log_file_size, 32 << 20);
    assert_eq!(c.control.scaler.cooldown, Duration::from_secs(30));
    assert_eq!(c.controller_listen.port(), 9090, "default");
    let printed = loaded.to_toml().unwrap();
    let file_source = format!("# {}", Source::File(file.clone().into()));
    assert!(printed.contains(&format!("containers = 2  # {}", Source::Flag)), "{printed}");
    assert!(printed.contains(&format!("data-dir = \"from-file\"  {file_source}")), "{printed}");
    assert!(printed.contains("controller-listen = \"127.0.0.1:9090\"  # default"), "{printed}");
    assert!(printed.contains("# tier2 is not set"), "{printed}");
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "containers = 2\nbogus-setting = 1\n");
    let e = load_args::<StandaloneSettings>("standalone", &["--config", &file]).unwrap_err().to_string();
    assert!(e.contains(&format!("config file {file}: unknown key `bogus-setting`")), "{e}");
    assert!(e.contains("data-dir"), "lists the known keys: {e}");
    // A key of another program is unknown too; so are the loader's own flags.
    for key in ["advertise = \"http://h:1\"", "config = \"x.toml\""] {
        let file = write(dir.path(), key);
        assert!(load_args::<StandaloneSettings>("standalone", &["--config", &file]).is_err(), "{key}");
    }
    let file = write(dir.path(), "controller-listen = \"127.0.0.1:1\"\n");
    let e = load_args::<ControllerSettings>("controller", &["--config", &file]).unwrap_err().to_string();
    assert!(e.contains("unknown key `controller-listen`"), "{e}");
}

#[test]
fn a_bad_value_is_an_error_naming_the_setting_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (text, why) in [
        ("containers = \"many\"", "invalid digit"),
        ("containers = 0", "not in 1..=1024"),
        ("log-file-size = \"1MiB\"", "at least 20MiB"),
        ("tier2-max-age = \"soon\"", "is not a duration"),
        ("load-windows = \"2s,1s\"", "shortest first"),
        ("segment-listen = \"localhost\"", "invalid socket address"),
        ("tier2 = [1, 2]", "is not a string, number or boolean"),
    ] {
        let file = write(dir.path(), text);
        let e = load_args::<StandaloneSettings>("standalone", &["--config", &file]).unwrap_err().to_string();
        let key = text.split(' ').next().unwrap();
        assert!(e.starts_with(&format!("config file {file}: key `{key}`: ")) && e.contains(why), "{text}: {e}");
    }
    let file = write(dir.path(), "containers = 4\nnot toml");
    let e = load_args::<StandaloneSettings>("standalone", &["--config", &file]).unwrap_err().to_string();
    assert!(e.starts_with(&format!("config file {file}: ")) && !e.contains('\n'), "{e}");
    let e = load_args::<StandaloneSettings>("standalone", &["--config", "/nonexistent/nadi.toml"]).unwrap_err();
    assert!(format!("{e:#}").contains("reading config file /nonexistent/nadi.toml"), "{e:#}");
}

#[test]
fn settings_that_do_not_fit_together_are_refused() {
    for (args, why) in [
        (&["--load-tick", "5s", "--load-windows", "1s,2m"][..], "shorter than --load-tick"),
        (&["--tier1-capacity", "100MiB"], "too small"),
        (&["--tier2", "none", "--tier1-capacity", "1GiB"], "needs a Tier-2"),
    ] {
        let e = standalone(args).unwrap_err().to_string();
        assert!(e.contains(why), "{args:?}: {e}");
    }
    let c = standalone(&["--tier2", "s3://b/p", "--tier1-capacity", "1GiB", "--load-tick", "500ms"]).unwrap();
    assert_eq!(c.store.tier.max_files, 4, "1 GiB / 4 containers / 64 MiB files");
    assert_eq!((c.store.load.tick, c.control.scaler.tick), (Duration::from_millis(500), Duration::from_millis(500)));
    assert!(standalone(&["--tier2", "none"]).unwrap().store.tier.url.is_none());

    let controller = |args: &[&str]| load_args::<ControllerSettings>("controller", args).unwrap().settings.resolve();
    let e = controller(&["--listen", "127.0.0.1:1", "--peers", "1=h:1"]).unwrap_err().to_string();
    assert!(e.contains("--id is required") && e.contains("NADI_ID"), "{e}");
    let e = controller(&["--id", "2", "--listen", "127.0.0.1:1", "--peers", "1=h:1"]).unwrap_err().to_string();
    assert!(e.contains("not one of --peers"), "{e}");
    let c = controller(&["--id", "1", "--listen", "127.0.0.1:1", "--peers", "1=h:1"]).unwrap();
    assert_eq!((c.peers[&1].as_str(), c.http_listen), ("http://h:1", None));

    // A replicated segment store has no Tier-2 by default (its own directory would not be
    // shared by the other replicas); one given is used.
    let store = |args: &[&str]| load_args::<SegmentStoreSettings>("segment-store", args).unwrap().settings.resolve();
    let c = store(&["--listen", "127.0.0.1:1", "--container-log", "raft"]).unwrap();
    assert!(c.store.tier.url.is_none());
    let c = store(&["--listen", "127.0.0.1:1"]).unwrap();
    assert!(c.store.tier.url.is_some(), "single-copy stores move data to Tier-2 by default");
    let c = store(&["--listen", "127.0.0.1:1", "--container-log", "raft", "--tier2", "s3://b/p"]).unwrap();
    assert_eq!(c.store.tier.url.as_deref(), Some("s3://b/p"));
    let args = ["--listen", "127.0.0.1:1", "--replica-peers", "1=h:1", "--replica-id", "1", "--tier2", "file:///t"];
    assert_eq!(store(&args).unwrap().store.tier.url.as_deref(), Some("file:///t"));
}

#[test]
fn the_pravega_front_end_is_off_by_default_and_its_settings_are_checked() {
    let c = standalone(&[]).unwrap();
    assert_eq!((c.pravega_controller_listen, c.pravega_segment), (None, None));
    let c =
        standalone(&["--pravega-controller-listen", "127.0.0.1:9", "--pravega-segment-listen", "127.0.0.1:8"]).unwrap();
    assert_eq!(c.pravega_controller_listen, Some(([127, 0, 0, 1], 9).into()));
    let segments = c.pravega_segment.unwrap();
    assert_eq!(segments.advertised(([127, 0, 0, 1], 8).into()).unwrap(), "127.0.0.1:8");
    let wildcard = PravegaSegmentConfig { listen: ([0, 0, 0, 0], 8).into(), advertise: None };
    let e = wildcard.advertised(([0, 0, 0, 0], 8).into()).unwrap_err().to_string();
    assert!(e.contains("--pravega-segment-advertise"), "{e}");
    let c = standalone(&["--pravega-segment-listen", "0.0.0.0:8", "--pravega-segment-advertise", "[::1]:8"]).unwrap();
    assert_eq!(c.pravega_segment.unwrap().advertised(([0, 0, 0, 0], 8).into()).unwrap(), "[::1]:8");
    for (args, why) in [
        (&["--pravega-controller-listen", "127.0.0.1:9"][..], "needs --pravega-segment-listen too"),
        (&["--pravega-segment-advertise", "h:1"], "needs --pravega-segment-listen"),
        (&["--pravega-segment-listen", "127.0.0.1:8", "--pravega-segment-advertise", "tcp://h:1"], "HOST:PORT"),
        (&["--pravega-segment-listen", "127.0.0.1:8", "--pravega-segment-advertise", "h"], "HOST:PORT"),
    ] {
        let e = standalone(args).unwrap_err().to_string();
        assert!(e.contains(why), "{args:?}: {e}");
    }
    // A cluster's controllers learn the segment endpoints from the stores' heartbeats.
    let controller = |args: &[&str]| load_args::<ControllerSettings>("controller", args).unwrap().settings.resolve();
    let c = controller(&[
        "--id",
        "1",
        "--listen",
        "127.0.0.1:1",
        "--peers",
        "1=h:1",
        "--pravega-controller-listen",
        "127.0.0.1:2",
    ])
    .unwrap();
    assert_eq!(c.pravega_controller_listen, Some(([127, 0, 0, 1], 2).into()));
    let store = |args: &[&str]| load_args::<SegmentStoreSettings>("segment-store", args).unwrap().settings.resolve();
    let c = store(&["--pravega-segment-listen", "127.0.0.1:3"]).unwrap();
    assert_eq!(c.pravega_segment.map(|p| p.listen), Some(([127, 0, 0, 1], 3).into()));
}

#[test]
fn peers_parse_and_bad_ones_are_refused() {
    let p = parse_peers("1=127.0.0.1:9001, 2=localhost:9002,3=http://h:9003").unwrap();
    assert_eq!(p[&1], "http://127.0.0.1:9001");
    assert_eq!(p[&2], "http://localhost:9002");
    assert_eq!(p[&3], "http://h:9003");
    for bad in ["", "1", "x=h:1", "1=h", "1=h:1,1=h:2"] {
        assert!(parse_peers(bad).is_err(), "{bad:?} must be refused");
    }
    assert_eq!(Peers(p.clone()).to_string().parse::<Peers>().unwrap(), Peers(p));
}

/// Every setting given a value that is not its default: printed, read back as a config file,
/// printed again, the same.
#[test]
fn printed_settings_read_back_as_the_same_settings() {
    let every_store = [
        "--data-dir=/var/lib/nadi x",
        "--load-tick=1s",
        "--log-format=json",
        "--otlp-endpoint=http://127.0.0.1:4317",
        "--tls-cert=/etc/nadi/node.pem",
        "--tls-key=/etc/nadi/node.key",
        "--tls-ca=/etc/nadi/ca.pem",
        "--auth=required",
        "--token-file=/etc/nadi/tokens.toml",
        "--jwt-key=/etc/nadi/jwt.pem",
        "--jwt-issuer=issuer",
        "--superusers=admin,ops",
        "--metrics-auth=true",
        "--node-token-file=/etc/nadi/node-token",
        "--containers=7",
        "--log-file-size=1GiB",
        "--checkpoint-interval=1000",
        "--container-queue-bytes=3MiB",
        "--load-windows=2s,1h 30m",
        "--container-log=raft",
        "--tier2=s3://bucket/prefix",
        "--tier2-endpoint=http://127.0.0.1:9000",
        "--tier1-capacity=64GiB",
        "--tier2-chunk-size=8MiB",
        "--tier2-max-age=1m 5s",
        "--tier2-cache-size=1KiB",
    ];
    let control = [
        "--reader-timeout=1s",
        "--retention-interval=2s",
        "--scale-cooldown=3s",
        "--scale-mute=4s",
        "--max-segments=9",
        "--replication-factor=3",
        "--store-timeout=7s",
    ];
    let pravega_segments = ["--pravega-segment-listen=0.0.0.0:8", "--pravega-segment-advertise=store:8"];
    let mut standalone = vec![
        "--controller-listen=0.0.0.0:1",
        "--segment-listen=[::1]:2",
        "--http-listen=127.0.0.2:3",
        "--pravega-controller-listen=127.0.0.1:9",
    ];
    standalone.extend(pravega_segments);
    standalone.extend(every_store.iter().chain(&control));
    let mut controller = vec![
        "--id=3",
        "--listen=127.0.0.1:4",
        "--peers=3=h:1,4=http://g:2",
        "--http-listen=127.0.0.1:5",
        "--pravega-controller-listen=127.0.0.1:10",
    ];
    controller.extend(every_store[..14].iter().chain(&control));
    let mut store = vec![
        "--listen=127.0.0.1:6",
        "--advertise=http://store:6",
        "--http-listen=127.0.0.1:7",
        "--replica-peers=1=a:1,2=http://b:2",
        "--replica-id=2",
    ];
    store.extend(pravega_segments);
    store.extend(every_store);
    let dir = tempfile::tempdir().unwrap();
    fn round_trip<S: Args + FromArgMatches + Serialize>(program: &'static str, args: &[&str], dir: &Path) {
        let first = load_args::<S>(program, args).unwrap();
        let printed = first.to_toml().unwrap();
        assert!(!printed.contains("is not set"), "every setting has a value: {printed}");
        let file = write(dir, &printed);
        let again = load_args::<S>(program, &["--config", &file]).unwrap();
        let table = |s: &S| toml::Table::try_from(s).unwrap();
        assert_eq!(table(&again.settings), table(&first.settings), "{printed}");
        let strip = |t: &str| t.lines().map(|l| l.split("  #").next().unwrap().to_owned()).collect::<Vec<_>>();
        assert_eq!(strip(&again.to_toml().unwrap()), strip(&printed));
    }
    round_trip::<StandaloneSettings>("standalone", &standalone, dir.path());
    round_trip::<ControllerSettings>("controller", &controller, dir.path());
    round_trip::<SegmentStoreSettings>("segment-store", &store, dir.path());
}

fn operations_md() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md")
}

const TABLE_START: &str = "<!-- settings table: generated from server/src/node/config.rs";
const TABLE_END: &str = "<!-- end of settings table -->";

/// docs/operations.md's settings table is the one the settings structs give; run with
/// `NADI_UPDATE_DOCS=1` to rewrite it.
#[test]
fn settings_table_in_the_docs_is_current() {
    let path = operations_md();
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find(TABLE_START).expect("docs/operations.md has the settings table start marker");
    let start = start + text[start..].find('\n').unwrap() + 1;
    let end = text.find(TABLE_END).expect("docs/operations.md has the settings table end marker");
    let table = settings_table(&programs());
    if std::env::var_os("NADI_UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{table}{}", &text[..start], &text[end..])).unwrap();
        return;
    }
    assert!(
        text[start..end] == table,
        "docs/operations.md's settings table is out of date: run `NADI_UPDATE_DOCS=1 cargo test -p nadi-server settings_table` and review the diff"
    );
}

/// The example config file in docs/operations.md is a valid `nadi standalone` config.
#[test]
fn the_docs_example_config_file_is_valid() {
    let text = std::fs::read_to_string(operations_md()).unwrap();
    let start = text.find("```toml\n# nadi.toml").expect("the example config file") + "```toml\n".len();
    let example = &text[start..start + text[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), example);
    let c = standalone(&["--config", &file]).unwrap();
    assert_eq!(c.store.tier.url.as_deref(), Some("s3://nadi-data/prod"));
}
