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
