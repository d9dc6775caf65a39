//! The `nadi` binary's argument and config handling. (Its presence also makes
//! `cargo test --workspace` build the binary that the multi-process tests in `tests/` run.)

use std::process::Command;

fn nadi() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nadi"))
}

#[test]
fn help_lists_the_commands() {
    let out = nadi().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in ["standalone", "scope", "stream", "write", "read"] {
        assert!(text.contains(cmd), "--help does not mention {cmd}: {text}");
    }
}

#[test]
fn bad_config_is_refused_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nadi.toml");
    std::fs::write(&cfg, "no-such-setting = 1\n").unwrap();
    let out = nadi().args(["standalone", "--config"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: config file") && err.contains("no-such-setting"), "{err}");
    let out = nadi().args(["standalone", "--log-file-size", "1MiB", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(String::from_utf8(out.stderr).unwrap().contains("at least 20MiB"));
}

/// `nadi PROGRAM --print-config` with `args`, `env` (and no inherited `NADI_*` variable): its
/// stdout, after checking that it exited 0.
fn print_config(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = nadi();
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("NADI_")) {
        cmd.env_remove(k);
    }
    let out = cmd.arg(program).args(args).arg("--print-config").envs(env.iter().copied()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{program} {args:?} --print-config: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The `key = value` lines of printed settings, without their source comments.
fn values(printed: &str) -> Vec<&str> {
    printed.lines().filter(|l| !l.starts_with('#')).map(|l| l.split("  #").next().unwrap()).collect()
}

#[test]
fn settings_layer_default_then_file_then_env_then_flag() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nadi.toml");
    std::fs::write(&cfg, "containers = 8\nload-tick = \"1s\"\ntier2-max-age = \"5s\"\n").unwrap();
    let cfg_arg = cfg.to_str().unwrap();
    let env = [("NADI_LOAD_TICK", "2s"), ("NADI_TIER2_MAX_AGE", "6s"), ("NADI_CONFIG", cfg_arg)];
    let printed = print_config("segment-store", &["--tier2-max-age", "7s"], &env);
    let file = format!("# config file {cfg_arg}");
    for line in [
        "log-file-size = \"64MiB\"  # default".to_owned(),
        format!("containers = 8  {file}"),
        "load-tick = \"2s\"  # environment variable NADI_LOAD_TICK".to_owned(),
        "tier2-max-age = \"7s\"  # command line".to_owned(),
    ] {
        assert!(printed.lines().any(|l| l == line), "no line {line:?} in\n{printed}");
    }
    // Printed settings are a config file that gives the same settings.
    std::fs::write(&cfg, &printed).unwrap();
    let again = print_config("segment-store", &["--config", cfg_arg], &[]);
    assert_eq!(values(&again), values(&printed), "{again}");
    assert!(again.contains(&format!("tier2-max-age = \"7s\"  {file}")), "{again}");
}

#[test]
fn every_server_program_prints_its_settings_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Not started: no data directory is made, no port is bound.
    let printed = print_config("standalone", &["--data-dir", data.to_str().unwrap()], &[]);
    assert!(printed.contains("controller-listen = \"127.0.0.1:9090\"  # default"), "{printed}");
    assert!(!data.exists());
    let printed = print_config("controller", &["--id", "1"], &[("NADI_PEERS", "1=127.0.0.1:9101")]);
    assert!(printed.contains("peers = \"1=http://127.0.0.1:9101\"  # environment variable NADI_PEERS"), "{printed}");
    assert!(printed.contains("# listen is not set"), "{printed}");
    let printed = print_config("segment-store", &[], &[]);
    assert!(printed.contains("listen = \"127.0.0.1:12345\"  # default"), "{printed}");
}

#[test]
fn bad_values_name_the_setting_and_where_they_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("nadi.toml");
    std::fs::write(&cfg, "tier2-chunk-size = \"huge\"\n").unwrap();
    let out = nadi().args(["segment-store", "--print-config", "--config"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!("error: config file {}: key `tier2-chunk-size`: invalid value 'huge'", cfg.display());
    assert!(err.starts_with(&want) && err.contains("is not a size"), "{err}");
    let out = nadi().args(["segment-store", "--print-config"]).env("NADI_CONTAINERS", "many").output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("'--containers <N>'") && err.contains("environment variable NADI_CONTAINERS"), "{err}");
}
