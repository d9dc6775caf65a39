//! Property-based run of the admin HTTP API against its own `/openapi.json` with schemathesis:
//! no 5xx, and every response (status, content type, body) conforms to the documented schema.
//!
//! schemathesis comes from PyPI; `.ci/run` installs the pinned version into
//! `target/schemathesis` (a venv). The test uses `$NADI_SCHEMATHESIS`, then that venv, then
//! `schemathesis` on `PATH`, and fails with install instructions when none is there.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nadi_tests::{Standalone, nadi_bin, ok};

fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("NADI_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let venv = nadi_bin().parent().and_then(|p| p.parent()).map(|t| t.join("schemathesis/bin/schemathesis"));
    if let Some(v) = venv.filter(|v| v.exists()) {
        return v;
    }
    let on_path = Command::new("schemathesis").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if on_path.is_ok_and(|s| s.success()) {
        return PathBuf::from("schemathesis");
    }
    panic!(
        "schemathesis is not installed. Run `.ci/run` once, or: python3 -m venv target/schemathesis && \
         target/schemathesis/bin/pip install schemathesis==4.32.5 (or set NADI_SCHEMATHESIS to its path)"
    );
}

/// Runs schemathesis against the admin API of `s` with `extra` arguments (e.g. a header),
/// bounded in time, and asserts it passed.
fn run_schemathesis(s: &Standalone, dir: &std::path::Path, extra: &[&str]) {
    let bin = schemathesis();
    let url = format!("http://{}/openapi.json", s.http_addr);
    let mut child = Command::new(&bin)
        // schemathesis keeps a cache in `.schemathesis/` of its working directory.
        .current_dir(dir)
        .args(["run", &url])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--no-color",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    // Bounded in time: a run that hangs is a failure, not a stuck test suite.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if child.try_wait().expect("wait for schemathesis").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("schemathesis output");
            panic!("schemathesis did not finish in 300 s:\n{}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("schemathesis output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log.lock().unwrap()
    );
    assert!(stdout.contains("passed"), "schemathesis ran no test:\n{stdout}");
}

#[test]
fn schemathesis_finds_no_server_errors_and_no_schema_violations() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(&dir.path().join("data"));
    // Some data so that the generated requests also reach existing scopes and streams.
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/orders", "--segments", "2"]));
    run_schemathesis(&s, dir.path(), &[]);
}

/// With `--auth required`: schemathesis, carrying a superuser's token, finds nothing wrong;
/// and every documented operation but the probes and `/metrics` answers 401 to a request
/// without a token (or with a wrong one), and changes nothing.
#[test]
fn with_auth_every_operation_needs_a_token_and_schemathesis_passes_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let (token, entry) = nadi_security::auth::new_token("admin").unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, nadi_security::auth::entry_toml(&entry)).unwrap();
    let s = Standalone::start_with(
        &dir.path().join("data"),
        &["--auth", "required", "--token-file", tokens.to_str().unwrap(), "--superusers", "admin"],
    );
    let admin = |args: &[&str]| {
        let mut all = vec!["--token", token.as_str()];
        all.extend_from_slice(args);
        nadi_tests::run_cli(&s.controller_url, &all, b"")
    };
    ok(&admin(&["scope", "create", "demo"]));
    ok(&admin(&["stream", "create", "demo/orders", "--segments", "2"]));
    let (status, spec) = nadi_tests::http_with(&s.http_addr, "GET", "/openapi.json", None, &[]);
    assert_eq!(status, 200);
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        let concrete = path
            .replace("{scope}", "demo")
            .replace("{stream}", "orders")
            .replace("{group}", "g")
            .replace("{txn}", "00000000000000000000000000000000")
            .replace("{checkpoint}", "c")
            .replace("{reader}", "r");
        assert!(!concrete.contains('{'), "a path parameter this test does not fill: {path}");
        for method in item.as_object().unwrap().keys() {
            let open = ["/health", "/ready", "/metrics"].contains(&path.as_str());
            for auth in [None, Some("Bearer nadi_not_a_token")] {
                let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
                let body = (method != "get" && method != "delete").then_some(("application/json", "{}"));
                let (status, text) =
                    nadi_tests::http_with(&s.http_addr, &method.to_uppercase(), &concrete, body, &headers);
                if open {
                    assert_ne!(status, 401, "{method} {path} is open: {text}");
                } else {
                    assert_eq!(status, 401, "{method} {path} without a valid token: {text}");
                    let documented = &item[method]["responses"]["401"];
                    assert!(documented.is_object(), "{method} {path} documents its 401");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "the spec lists the whole API ({checked} requests)");
    // Nothing those requests tried changed anything.
    assert_eq!(ok(&admin(&["scope", "list"])).trim(), "demo");
    assert_eq!(ok(&admin(&["stream", "list", "demo"])).trim(), "orders");
    let bearer = format!("Authorization: Bearer {token}");
    run_schemathesis(&s, dir.path(), &["--header", &bearer]);
}
