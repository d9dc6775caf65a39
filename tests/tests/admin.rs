//! The CLI and the admin HTTP API against the real binary: every CLI operation has an HTTP twin
//! that returns the same document, bad input gets the same stable code on both and changes
//! nothing, and manual scaling works end to end (split via CLI, merge via HTTP, writes continue
//! into the new segments, bad scale requests are refused).

use nadi_tests::{Standalone, cli_code, http, http_raw, json_out, keyed_lines, ok};
use serde_json::{Value, json};

/// Everything observable about the metadata, to check that refused requests changed nothing.
fn snapshot(s: &Standalone) -> Value {
    let scopes = http(&s.http_addr, "GET", "/v1/scopes", None).1;
    let mut all = vec![scopes.clone()];
    for scope in scopes["scopes"].as_array().unwrap() {
        let scope = scope.as_str().unwrap();
        let streams = http(&s.http_addr, "GET", &format!("/v1/scopes/{scope}/streams"), None).1;
        for stream in streams["streams"].as_array().unwrap() {
            let path = format!("/v1/scopes/{scope}/streams/{}/history", stream.as_str().unwrap());
            all.push(http(&s.http_addr, "GET", &path, None).1);
        }
        all.push(streams);
    }
    Value::Array(all)
}

/// Asserts that the CLI command and the HTTP request both fail with `code` (and HTTP `status`).
fn both_refuse(s: &Standalone, cli: &[&str], http_req: (&str, &str, Option<&str>), status: u16, code: &str) {
    assert_eq!(cli_code(&s.cli(cli)), code, "CLI {cli:?}");
    let (got, body) = http(&s.http_addr, http_req.0, http_req.1, http_req.2);
    assert_eq!((got, body["code"].as_str().unwrap_or_default()), (status, code), "HTTP {http_req:?}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "HTTP errors carry a message: {body}");
}

#[test]
fn every_cli_operation_has_an_http_twin_that_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let h = s.http_addr.clone();
    assert_eq!(http(&h, "GET", "/health", None).0, 200);
    assert_eq!(http(&h, "GET", "/ready", None).0, 200);

    // Scopes: create via one, see via the other.
    ok(&s.cli(&["scope", "create", "demo"]));
    assert_eq!(http(&h, "POST", "/v1/scopes", Some(r#"{"scope":"web"}"#)), (201, json!({"scope": "web"})));
    let scopes = json_out(&s.cli(&["scope", "list", "--json"]));
    assert_eq!(scopes, json!({"scopes": ["demo", "web"]}));
    assert_eq!(http(&h, "GET", "/v1/scopes", None), (200, scopes));

    // Streams: create via CLI and via HTTP, compare info, list and history.
    ok(&s.cli(&["stream", "create", "demo/a", "--segments", "3", "--retention", "time:10s"]));
    let body = r#"{"stream":"b","scaling":"events:100,2,2","retention":"size:512MiB"}"#;
    let (status, created) = http(&h, "POST", "/v1/scopes/demo/streams", Some(body));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["segments"].as_array().unwrap().len(), 2);
    for name in ["a", "b"] {
        let cli = json_out(&s.cli(&["stream", "info", &format!("demo/{name}"), "--json"]));
        assert_eq!(http(&h, "GET", &format!("/v1/scopes/demo/streams/{name}"), None), (200, cli.clone()));
        let hist = json_out(&s.cli(&["stream", "history", &format!("demo/{name}"), "--json"]));
        assert_eq!(http(&h, "GET", &format!("/v1/scopes/demo/streams/{name}/history"), None), (200, hist.clone()));
        assert_eq!(hist["epochs"][0]["reason"], "created");
        assert_eq!(hist["epochs"][0]["segments"], cli["segments"]);
    }
    assert_eq!(created, json_out(&s.cli(&["stream", "info", "demo/b", "--json"])));
    let a = json_out(&s.cli(&["stream", "info", "demo/a", "--json"]));
    assert_eq!(a["policy"], json!({"scaling": "fixed", "retention": "time:10s"}));
    assert_eq!(created["policy"], json!({"scaling": "events:100,2,2", "retention": "size:536870912"}));
    let list = json_out(&s.cli(&["stream", "list", "demo", "--json"]));
    assert_eq!(list, json!({"scope": "demo", "streams": ["a", "b"]}));
    assert_eq!(http(&h, "GET", "/v1/scopes/demo/streams", None), (200, list));

    // Policy updates: via CLI, seen via HTTP, and the other way round.
    let updated = json_out(&s.cli(&["stream", "update", "demo/a", "--scaling", "events:5,3,1", "--json"]));
    assert_eq!(updated["policy"], json!({"scaling": "events:5,3,1", "retention": "time:10s"}));
    assert_eq!(updated["segments"].as_array().unwrap().len(), 3, "a policy change does not rescale");
    assert_eq!(http(&h, "GET", "/v1/scopes/demo/streams/a", None).1, updated);
    let (status, patched) = http(&h, "PATCH", "/v1/scopes/demo/streams/b", Some(r#"{"retention":"time:5m"}"#));
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["policy"], json!({"scaling": "events:100,2,2", "retention": "time:5m"}));
    assert_eq!(json_out(&s.cli(&["stream", "info", "demo/b", "--json"])), patched);

    // Cluster.
    let cluster = json_out(&s.cli(&["cluster", "info", "--json"]));
    assert_eq!(http(&h, "GET", "/v1/cluster", None), (200, cluster.clone()));
    assert_eq!(cluster["leader_id"], 1);
    assert_eq!(cluster["members"][0]["grpc_address"], s.controller_url.as_str());
    assert_eq!(cluster["members"][0]["http_address"], format!("http://{h}").as_str());
    assert_eq!(cluster["segment_stores"].as_array().unwrap().len(), 1);
    assert_eq!(cluster["segment_stores"][0]["endpoint"], s.segment_url.as_str());
    assert!(cluster["segment_stores"][0]["store_id"].as_str().unwrap().starts_with("store-"), "{cluster}");
    assert_eq!(cluster["replication_factor"], 0, "standalone's store is single-copy: {cluster}");
    assert_eq!(cluster["containers"].as_array().unwrap().len(), 4);

    // Bad input: the same code on both, and nothing changes.
    let before = snapshot(&s);
    both_refuse(
        &s,
        &["stream", "info", "demo/nope"],
        ("GET", "/v1/scopes/demo/streams/nope", None),
        404,
        "NOT_FOUND_STREAM",
    );
    both_refuse(
        &s,
        &["stream", "list", "nowhere"],
        ("GET", "/v1/scopes/nowhere/streams", None),
        404,
        "NOT_FOUND_SCOPE",
    );
    both_refuse(
        &s,
        &["stream", "history", "demo/bad@name"],
        ("GET", "/v1/scopes/demo/streams/bad@name/history", None),
        400,
        "INVALID_NAME",
    );
    both_refuse(
        &s,
        &["scope", "create", "bad@scope"],
        ("POST", "/v1/scopes", Some(r#"{"scope":"bad@scope"}"#)),
        400,
        "INVALID_NAME",
    );
    both_refuse(
        &s,
        &["scope", "create", "demo"],
        ("POST", "/v1/scopes", Some(r#"{"scope":"demo"}"#)),
        409,
        "ALREADY_EXISTS_SCOPE",
    );
    both_refuse(&s, &["scope", "delete", "demo"], ("DELETE", "/v1/scopes/demo", None), 409, "SCOPE_NOT_EMPTY");
    both_refuse(&s, &["scope", "delete", "gone"], ("DELETE", "/v1/scopes/gone", None), 404, "NOT_FOUND_SCOPE");
    both_refuse(
        &s,
        &["stream", "delete", "demo/a"],
        ("DELETE", "/v1/scopes/demo/streams/a", None),
        409,
        "STREAM_NOT_SEALED",
    );
    both_refuse(
        &s,
        &["stream", "create", "demo/a"],
        ("POST", "/v1/scopes/demo/streams", Some(r#"{"stream":"a"}"#)),
        409,
        "ALREADY_EXISTS_STREAM",
    );
    both_refuse(
        &s,
        &["stream", "create", "demo/c", "--retention", "time:soon"],
        ("POST", "/v1/scopes/demo/streams", Some(r#"{"stream":"c","retention":"time:soon"}"#)),
        400,
        "INVALID_ARGUMENT",
    );
    both_refuse(
        &s,
        &["stream", "create", "demo/c", "--segments", "0"],
        ("POST", "/v1/scopes/demo/streams", Some(r#"{"stream":"c","segments":0}"#)),
        400,
        "INVALID_ARGUMENT",
    );
    both_refuse(
        &s,
        &["stream", "update", "demo/a", "--scaling", "linear:1"],
        ("PATCH", "/v1/scopes/demo/streams/a", Some(r#"{"scaling":"linear:1"}"#)),
        400,
        "INVALID_ARGUMENT",
    );
    // Malformed JSON and wrong content types get the same JSON error body.
    for (ct, body) in [("application/json", "{\"scope\":"), ("application/json", "[1,2]"), ("text/plain", "{}")] {
        let (status, text) = http_raw(&h, "POST", "/v1/scopes", Some((ct, body)));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((status, v["code"].as_str().unwrap()), (400, "INVALID_ARGUMENT"), "{ct} {body}: {text}");
    }
    let (status, v) = http(&h, "POST", "/v1/scopes/demo/streams", Some(r#"{"stream":"c","unknown":1}"#));
    assert_eq!((status, v["code"].as_str().unwrap()), (400, "INVALID_ARGUMENT"));
    assert_eq!(snapshot(&s), before, "refused requests changed the metadata");

    // Seal via HTTP, delete via CLI; seal via CLI, delete via HTTP; then the scopes.
    let (status, sealed) = http(&h, "POST", "/v1/scopes/demo/streams/a/seal", None);
    assert_eq!((status, sealed["state"].as_str().unwrap()), (200, "sealed"));
    assert_eq!(json_out(&s.cli(&["stream", "info", "demo/a", "--json"])), sealed);
    ok(&s.cli(&["stream", "delete", "demo/a"]));
    ok(&s.cli(&["stream", "seal", "demo/b"]));
    assert_eq!(http(&h, "GET", "/v1/scopes/demo/streams/b", None).1["state"], "sealed");
    assert_eq!(http(&h, "DELETE", "/v1/scopes/demo/streams/b", None).0, 204);
    assert_eq!(json_out(&s.cli(&["stream", "list", "demo", "--json"]))["streams"], json!([]));
    assert_eq!(http(&h, "DELETE", "/v1/scopes/demo", None).0, 204);
    ok(&s.cli(&["scope", "delete", "web"]));
    assert_eq!(http(&h, "GET", "/v1/scopes", None).1, json!({"scopes": []}));

    // Metrics count the requests above by route and status.
    let (status, metrics) = http_raw(&h, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l.starts_with("nadi_http_requests_total{")
            && l.contains("route=\"/v1/scopes/{scope}/streams/{stream}\"")
            && l.contains("status=\"404\"")),
        "{metrics}"
    );
    assert!(metrics.contains("nadi_http_request_duration_seconds_bucket"), "{metrics}");
}

fn ids(info: &Value) -> Vec<u64> {
    info["segments"].as_array().unwrap().iter().map(|s| s["id"].as_u64().unwrap()).collect()
}

fn ranges(info: &Value) -> Vec<(f64, f64)> {
    info["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key_range"][0].as_f64().unwrap(), s["key_range"][1].as_f64().unwrap()))
        .collect()
}

#[test]
fn split_via_cli_merge_via_http_and_bad_scales_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let h = s.http_addr.clone();
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/orders", "--segments", "2"]));
    let out = ok(&s.cli_stdin(&["write", "demo/orders", "--key-sep", "\t"], &keyed_lines(2000, 31)));
    assert!(out.contains("wrote 2000 events"), "{out}");
    let info = json_out(&s.cli(&["stream", "info", "demo/orders", "--json"]));
    let [s0, s1] = ids(&info)[..] else { panic!("two segments expected: {info}") };

    // Split the first segment into two via the CLI.
    let split = json_out(&s.cli(&["stream", "scale", "demo/orders", "--split", &s0.to_string(), "--json"]));
    assert_eq!(split["epoch"], 1);
    assert_eq!(ranges(&split), vec![(0.0, 0.25), (0.25, 0.5), (0.5, 1.0)]);
    let [a, b, c] = ids(&split)[..] else { panic!("{split}") };
    assert_eq!(c, s1);
    // Merge the right half of the split with the old second segment via HTTP.
    let (status, merged) =
        http(&h, "POST", "/v1/scopes/demo/streams/orders/scale", Some(&format!(r#"{{"merge":[{b},{s1}]}}"#)));
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["epoch"], 2);
    assert_eq!(ranges(&merged), vec![(0.0, 0.25), (0.25, 1.0)]);
    assert_eq!(ids(&merged)[0], a);
    assert_eq!(json_out(&s.cli(&["stream", "info", "demo/orders", "--json"])), merged);

    // New writes land in the new segments; a reader from the head reads the old segments and
    // then their successors: exactly the events written before and after the scales.
    let late: String = (0..500).map(|i| format!("k{}\tlate-{i}\n", i % 13)).collect();
    assert!(ok(&s.cli_stdin(&["write", "demo/orders", "--key-sep", "\t"], late.as_bytes())).contains("wrote 500"));
    let read = ok(&s.cli(&["read", "demo/orders", "--from-start", "--max", "2500", "--idle-timeout", "20"]));
    let mut got: Vec<&str> = read.lines().collect();
    let early = String::from_utf8(keyed_lines(2000, 31)).unwrap();
    let mut want: Vec<&str> = early.lines().chain(late.lines()).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);

    // History: three epochs with reasons, predecessors sealed.
    let hist = json_out(&s.cli(&["stream", "history", "demo/orders", "--json"]));
    assert_eq!(http(&h, "GET", "/v1/scopes/demo/streams/orders/history", None), (200, hist.clone()));
    let reasons: Vec<_> = hist["epochs"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, vec!["created", "manual", "manual"]);
    let states: Vec<_> =
        hist["epochs"][0]["segments"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, vec!["sealed", "sealed"]);
    let (_, segs) = http(&h, "GET", "/v1/scopes/demo/streams/orders/segments", None);
    assert_eq!(segs["epoch"], 2);
    assert_eq!(segs["segments"][0]["endpoint"], s.segment_url.as_str());

    // Bad scale requests: typed errors, nothing changes.
    let before = snapshot(&s);
    let scale = |body: String| http(&h, "POST", "/v1/scopes/demo/streams/orders/scale", Some(&body));
    let refused = |(status, body): (u16, Value), want: (u16, &str)| {
        assert_eq!((status, body["code"].as_str().unwrap_or_default()), want, "{body}");
    };
    let merged_id = ids(&merged)[1];
    refused(
        scale(format!(r#"{{"sealed":[{merged_id}],"new_ranges":[[0.25,0.5],[0.6,1.0]]}}"#)),
        (400, "INVALID_ARGUMENT"),
    );
    refused(
        scale(format!(r#"{{"sealed":[{merged_id}],"new_ranges":[[0.25,0.7],[0.6,1.0]]}}"#)),
        (400, "INVALID_ARGUMENT"),
    );
    refused(scale(format!(r#"{{"sealed":[{merged_id}],"new_ranges":[[0.2,1.0]]}}"#)), (400, "INVALID_ARGUMENT"));
    refused(scale(r#"{"split":999}"#.into()), (404, "NOT_FOUND_SEGMENT"));
    refused(scale(format!(r#"{{"split":{s0}}}"#)), (409, "SEALED"));
    refused(scale(format!(r#"{{"merge":[{a}]}}"#)), (400, "INVALID_ARGUMENT"));
    refused(scale(r#"{"split":"#.into()), (400, "INVALID_ARGUMENT"));
    assert_eq!(cli_code(&s.cli(&["stream", "scale", "demo/orders", "--split", "999"])), "NOT_FOUND_SEGMENT");
    assert_eq!(cli_code(&s.cli(&["stream", "scale", "demo/orders", "--split", &s0.to_string()])), "SEALED");
    assert_eq!(
        cli_code(&s.cli(&["stream", "scale", "demo/orders", "--split", &a.to_string(), "--into", "1"])),
        "INVALID_ARGUMENT"
    );
    assert_eq!(cli_code(&s.cli(&["stream", "scale", "demo/orders", "--merge", "1,x"])), "INVALID_ARGUMENT");
    assert_eq!(cli_code(&s.cli(&["stream", "scale", "demo/nope", "--split", "1"])), "NOT_FOUND_STREAM");
    assert_eq!(snapshot(&s), before, "refused scales changed the metadata");

    // A sealed stream cannot scale.
    ok(&s.cli(&["stream", "seal", "demo/orders"]));
    let sealed = snapshot(&s);
    refused(scale(format!(r#"{{"split":{a}}}"#)), (409, "SEALED"));
    assert_eq!(cli_code(&s.cli(&["stream", "scale", "demo/orders", "--merge", &format!("{a},{merged_id}")])), "SEALED");
    assert_eq!(snapshot(&s), sealed);

    // The scaled topology survives a restart.
    s.stop();
    let s = Standalone::start(dir.path());
    assert_eq!(json_out(&s.cli(&["stream", "history", "demo/orders", "--json"])), hist_sealed(&hist));
}

/// `hist` after the stream was sealed: the last epoch's segments are sealed too.
fn hist_sealed(hist: &Value) -> Value {
    let mut h = hist.clone();
    let epochs = h["epochs"].as_array_mut().unwrap();
    let last = epochs.len() - 1;
    let ids: Vec<Value> = epochs[last]["segments"].as_array().unwrap().iter().map(|s| s["id"].clone()).collect();
    for e in epochs.iter_mut() {
        for seg in e["segments"].as_array_mut().unwrap() {
            if ids.contains(&seg["id"]) {
                seg["state"] = json!("sealed");
            }
        }
    }
    h
}
