//! Authentication and permissions over the real binary (issue 19, acceptance 1): a
//! `nadi standalone --auth required` with a token file and a JWT key, driven through the CLI,
//! the admin HTTP API and the Rust client straight at the segment store.
//!
//! What a caller was told is checked against what the store holds afterwards: every refused
//! call (no token, a wrong token, an expired JWT, a principal without the permission) leaves
//! the scopes, streams and events exactly as they were, and every accepted write is read back.
//!
//! Costs about 20 s (one standalone; argon2 verifications are cached after the first call).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use nadi_client::{ClientSecurity, NadiClient};
use nadi_tests::{Standalone, cli_code, http_with, ok, run_cli};

/// Principals and their tokens, written as a token file.
struct Tokens {
    admin: String,
    reader: String,
    writer: String,
    other: String,
}

fn make_tokens(dir: &Path) -> Tokens {
    let mut file = String::new();
    let mut make = |who: &str| {
        let (token, entry) = nadi_security::auth::new_token(who).unwrap();
        file.push_str(&nadi_security::auth::entry_toml(&entry));
        token
    };
    let tokens = Tokens { admin: make("admin"), reader: make("reader"), writer: make("writer"), other: make("other") };
    std::fs::write(dir.join("tokens.toml"), file).unwrap();
    tokens
}

const JWT_SECRET: &[u8] = b"a-test-secret-of-more-than-32-bytes!";

fn jwt(sub: &str, exp_from_now: i64) -> String {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let claims = serde_json::json!({ "sub": sub, "exp": now + exp_from_now });
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// `nadi --token TOKEN args…` against `s`.
fn as_(s: &Standalone, token: &str, args: &[&str]) -> std::process::Output {
    as_stdin(s, token, args, b"")
}

fn as_stdin(s: &Standalone, token: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    run_cli(&s.controller_url, &all, input)
}

fn lines(n: usize, tag: &str) -> Vec<u8> {
    (0..n).map(|i| format!("{tag}-{i}\n")).collect::<String>().into_bytes()
}

/// Every event of `stream`, read from the start as the admin.
fn events(s: &Standalone, admin: &str, stream: &str) -> Vec<String> {
    let out = as_(s, admin, &["read", stream, "--from-start", "--idle-timeout", "2"]);
    ok(&out).lines().map(str::to_owned).collect()
}

fn listing(s: &Standalone, token: &str, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ok(&as_(s, token, args)).lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[test]
fn tokens_and_permissions_decide_every_call_and_refused_calls_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = make_tokens(dir.path());
    std::fs::write(dir.path().join("jwt.key"), JWT_SECRET).unwrap();
    let token_file = dir.path().join("tokens.toml");
    let jwt_key = dir.path().join("jwt.key");
    let s = Standalone::start_with(
        &dir.path().join("data"),
        &[
            "--auth",
            "required",
            "--token-file",
            token_file.to_str().unwrap(),
            "--jwt-key",
            jwt_key.to_str().unwrap(),
            "--superusers",
            "admin",
        ],
    );
    let log = s.log_with(&["ready", "authentication required"], Duration::from_secs(5));
    assert!(log.contains("authentication required"), "the ready line says auth is on: {log}");
    let admin = tokens.admin.as_str();

    // The admin sets up two scopes, three streams, ten events and the grants.
    for args in [
        &["scope", "create", "a"][..],
        &["scope", "create", "b"],
        &["stream", "create", "a/s1"],
        &["stream", "create", "a/s2"],
        &["stream", "create", "b/t"],
        &["acl", "grant", "reader", "read", "prn::/scope:a"],
        &["acl", "grant", "writer", "write", "prn::/scope:a/stream:s1"],
        &["acl", "grant", "other", "admin", "prn::/scope:b"],
    ] {
        ok(&as_(&s, admin, args));
    }
    ok(&as_stdin(&s, admin, &["write", "a/s1"], &lines(10, "admin")));
    let grants = ok(&as_(&s, admin, &["acl", "list"]));
    assert_eq!(grants.lines().count(), 3, "{grants}");

    // No token, a wrong token, an expired JWT, a JWT signed with another key: Unauthenticated,
    // for reads and for every kind of change.
    let expired = jwt("writer", -600);
    let forged = {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let claims = serde_json::json!({ "sub": "admin", "exp": now + 600 });
        let key = jsonwebtoken::EncodingKey::from_secret(b"not-the-servers-secret-not-the-servers").unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    };
    let attempts: [&[&str]; 7] = [
        &["scope", "list"],
        &["scope", "create", "c"],
        &["stream", "create", "a/s3"],
        &["stream", "seal", "a/s1"],
        &["stream", "truncate", "a/s1", "--at-tail"],
        &["stream", "delete", "a/s2"],
        &["acl", "grant", "writer", "admin", "prn::/"],
    ];
    for args in attempts {
        let out = run_cli(&s.controller_url, args, b"");
        assert_eq!(cli_code(&out), "UNAUTHENTICATED", "no token: {args:?}");
        for bad in ["nadi_0123456789abcdef", expired.as_str(), forged.as_str()] {
            let out = as_(&s, bad, args);
            assert_eq!(cli_code(&out), "UNAUTHENTICATED", "bad token: {args:?}");
        }
    }
    let out = as_stdin(&s, &expired, &["write", "a/s1"], &lines(3, "expired"));
    assert_eq!(cli_code(&out), "UNAUTHENTICATED");
    let err = String::from_utf8_lossy(&as_(&s, &expired, &["scope", "list"]).stderr).to_string();
    assert!(err.contains("expired"), "the error says the token expired: {err}");
    // The admin HTTP API: 401 without a valid token, for reads and changes.
    let http = &s.http_addr;
    let body = Some(("application/json", r#"{"scope":"c"}"#));
    for auth in [None, Some("Bearer nadi_wrong".to_owned()), Some(format!("Bearer {expired}"))] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        assert_eq!(http_with(http, "GET", "/v1/scopes", None, &headers).0, 401);
        assert_eq!(http_with(http, "POST", "/v1/scopes", body, &headers).0, 401);
        assert_eq!(http_with(http, "POST", "/v1/scopes/a/streams/s1/seal", None, &headers).0, 401);
        assert_eq!(http_with(http, "DELETE", "/v1/scopes/a/streams/s2", None, &headers).0, 401);
    }
    // Probes stay open.
    assert_eq!(http_with(http, "GET", "/health", None, &[]).0, 200);
    assert_eq!(http_with(http, "GET", "/ready", None, &[]).0, 200);

    // A read-only principal reads, and can neither write, truncate, seal nor delete.
    let reader = tokens.reader.as_str();
    assert_eq!(events(&s, reader, "a/s1").len(), 10);
    let out = as_stdin(&s, reader, &["write", "a/s1"], &lines(3, "reader"));
    assert_eq!(cli_code(&out), "PERMISSION_DENIED");
    for args in [
        &["stream", "truncate", "a/s1", "--at-tail"][..],
        &["stream", "seal", "a/s1"],
        &["stream", "delete", "a/s2"],
        &["stream", "create", "a/s3"],
        &["scope", "delete", "a"],
        &["acl", "grant", "reader", "write", "prn::/scope:a"],
    ] {
        assert_eq!(cli_code(&as_(&s, reader, args)), "PERMISSION_DENIED", "reader: {args:?}");
    }
    let reader_auth = format!("Bearer {reader}");
    let h = [("Authorization", reader_auth.as_str())];
    assert_eq!(http_with(http, "POST", "/v1/scopes/a/streams/s1/seal", None, &h).0, 403);
    assert_eq!(http_with(http, "GET", "/v1/scopes/a/streams", None, &h).0, 200);

    // A principal of scope B sees only B.
    let other = tokens.other.as_str();
    assert_eq!(listing(&s, other, &["scope", "list"]), ["b"]);
    assert_eq!(listing(&s, reader, &["scope", "list"]), ["a"]);
    assert_eq!(cli_code(&as_(&s, other, &["stream", "list", "a"])), "PERMISSION_DENIED");
    assert_eq!(cli_code(&as_(&s, other, &["stream", "info", "a/s1"])), "PERMISSION_DENIED");
    let out = as_(&s, other, &["read", "a/s1", "--from-start", "--idle-timeout", "2"]);
    assert_eq!(cli_code(&out), "PERMISSION_DENIED");
    let other_auth = format!("Bearer {other}");
    let h = [("Authorization", other_auth.as_str())];
    assert_eq!(http_with(http, "GET", "/v1/scopes/a/streams", None, &h).0, 403);
    assert_eq!(listing(&s, other, &["stream", "list", "b"]), ["t"]);

    // A writer of a/s1 only: writes a/s1 (with its token and with a JWT naming it), not a/s2.
    let writer = tokens.writer.as_str();
    ok(&as_stdin(&s, writer, &["write", "a/s1"], &lines(5, "writer")));
    ok(&as_stdin(&s, &jwt("writer", 600), &["write", "a/s1"], &lines(2, "jwt")));
    let out = as_stdin(&s, writer, &["write", "a/s2"], &lines(3, "stray"));
    assert_eq!(cli_code(&out), "PERMISSION_DENIED");

    // The segment store itself refuses a caller without a token, whatever the controller said.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let anonymous =
            NadiClient::with_security(std::slice::from_ref(&s.controller_url), ClientSecurity::default()).unwrap();
        let mut store = anonymous.segment_store(&s.segment_url).unwrap();
        let req = nadi_proto::segment::v1::GetSegmentInfoRequest { segment: "a/s1/0.#epoch.0".into() };
        let status = store.get_segment_info(req).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
        let as_other = ClientSecurity { token: Some(tokens.other.clone()), tls: None };
        let other_client = NadiClient::with_security(std::slice::from_ref(&s.controller_url), as_other).unwrap();
        let mut store = other_client.segment_store(&s.segment_url).unwrap();
        let req = nadi_proto::segment::v1::GetSegmentInfoRequest { segment: "a/s1/0.#epoch.0".into() };
        let status = store.get_segment_info(req).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    });

    // Nothing a refused call tried is there; everything accepted is.
    assert_eq!(listing(&s, admin, &["scope", "list"]), ["a", "b"]);
    assert_eq!(listing(&s, admin, &["stream", "list", "a"]), ["s1", "s2"]);
    let s1 = events(&s, admin, "a/s1");
    let want: Vec<String> = [lines(10, "admin"), lines(5, "writer"), lines(2, "jwt")]
        .concat()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| String::from_utf8(l.to_vec()).unwrap())
        .collect();
    assert_eq!(s1, want, "a/s1 holds exactly the accepted writes, in order");
    assert!(events(&s, admin, "a/s2").is_empty(), "a/s2 holds nothing");
    let info = nadi_tests::json_out(&as_(&s, admin, &["stream", "info", "a/s1", "--json"]));
    assert_eq!(info["state"], "active", "a/s1 was not sealed: {info}");

    // Revoking takes effect on an append stream that is already open: the writer's next
    // batch after the store learns of the revocation (a heartbeat, ~2 s) is refused.
    rt.block_on(async {
        let security = ClientSecurity { token: Some(tokens.writer.clone()), tls: None };
        let client = NadiClient::with_security(std::slice::from_ref(&s.controller_url), security).unwrap();
        let w = nadi_client::EventWriter::new(&client, "a", "s1", Default::default()).await.unwrap();
        w.write(None, bytes::Bytes::from_static(b"open-stream")).await.unwrap();
        w.flush().await.expect("the writer may write before the revocation");
        let out = as_(&s, admin, &["acl", "revoke", "writer", "write", "prn::/scope:a/stream:s1"]);
        ok(&out);
        let deadline = Instant::now() + Duration::from_secs(15);
        let refused = loop {
            let r = match w.write(None, bytes::Bytes::from_static(b"late")).await {
                Ok(()) => w.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                break e;
            }
            assert!(Instant::now() < deadline, "the revoked writer could still write after 15 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(refused.kind, nadi_client::ErrorKind::PermissionDenied, "{refused}");
    });
    s.stop();
}

/// A cluster of three controllers and a segment store with `--auth required`: the nodes
/// present a superuser's token to each other (Raft, forwarding, heartbeats), clients present
/// their own, and a client call that lands on a follower keeps the client's permissions when
/// it is forwarded to the leader. Killing the leader changes none of that.
#[test]
fn a_cluster_with_auth_runs_its_raft_on_node_tokens_and_forwards_client_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = make_tokens(dir.path());
    let (node_token, node_entry) = nadi_security::auth::new_token("node").unwrap();
    let mut file = std::fs::read_to_string(dir.path().join("tokens.toml")).unwrap();
    file.push_str(&nadi_security::auth::entry_toml(&node_entry));
    std::fs::write(dir.path().join("tokens.toml"), file).unwrap();
    std::fs::write(dir.path().join("node.token"), format!("{node_token}\n")).unwrap();
    let token_file = dir.path().join("tokens.toml").display().to_string();
    let node_token_file = dir.path().join("node.token").display().to_string();
    let env = [
        ("NADI_AUTH", "required"),
        ("NADI_TOKEN_FILE", token_file.as_str()),
        ("NADI_SUPERUSERS", "node,admin"),
        ("NADI_NODE_TOKEN_FILE", node_token_file.as_str()),
    ];
    let mut c = nadi_tests::cluster::Cluster::start_with_env(dir.path(), 3, &env);
    let urls = c.controller_urls();
    let cli = |token: &str, args: &[&str], input: &[u8]| {
        let mut all = vec!["--token", token];
        all.extend_from_slice(args);
        run_cli(&urls, &all, input)
    };
    let admin = tokens.admin.as_str();
    ok(&cli(admin, &["scope", "create", "a"], b""));
    ok(&cli(admin, &["stream", "create", "a/s", "--segments", "2"], b""));
    ok(&cli(admin, &["acl", "grant", "writer", "write", "prn::/scope:a/stream:s"], b""));
    // Through every controller (followers forward to the leader with the caller's token).
    for id in 1..=3u64 {
        let one = format!("http://127.0.0.1:{}", c.ports[&id]);
        let out = run_cli(&one, &["--token", &tokens.writer, "write", "a/s"], &lines(20, &format!("via{id}")));
        ok(&out);
        let out = run_cli(&one, &["--token", &tokens.writer, "stream", "seal", "a/s"], b"");
        assert_eq!(cli_code(&out), "PERMISSION_DENIED", "a forwarded call keeps the writer's permissions");
        let out = run_cli(&one, &["stream", "seal", "a/s"], b"");
        assert_eq!(cli_code(&out), "UNAUTHENTICATED");
    }
    let leader = c.leader(Duration::from_secs(20));
    c.kill_controller(leader);
    let _ = c.leader(Duration::from_secs(30));
    ok(&cli(&tokens.writer, &["write", "a/s"], &lines(20, "after")));
    let out = cli(admin, &["read", "a/s", "--from-start", "--idle-timeout", "3"], b"");
    let mut got: Vec<String> = ok(&out).lines().map(str::to_owned).collect();
    got.sort();
    let mut want: Vec<String> = (1..=3)
        .flat_map(|id| (0..20).map(move |i| format!("via{id}-{i}")))
        .chain((0..20).map(|i| format!("after-{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want, "every acknowledged event, once");
}
