//! Truncation at a stream cut, through a scale: segments wholly before the cut are deleted, the
//! cut's segments truncated; a reader from the head then reads exactly what was written after
//! the cut. Cuts from the CLI and from the admin HTTP API agree; bad cuts are refused with a
//! typed error and change nothing; the head survives a restart.

use nadi_tests::{Standalone, fails_with, http, json_out, ok};

fn lines(tag: &str, n: usize) -> String {
    (0..n).map(|i| format!("k{}\t{tag}-{i}\n", i % 23)).collect()
}

fn write(s: &Standalone, text: &str) {
    let out = ok(&s.cli_stdin(&["write", "demo/t", "--key-sep", "\t"], text.as_bytes()));
    assert!(out.starts_with("wrote "), "{out}");
}

/// Everything a reader from the head reads (sorted), waiting up to `idle` seconds for more.
fn read_all(s: &Standalone, idle: &str) -> Vec<String> {
    let out = ok(&s.cli(&["read", "demo/t", "--from-start", "--idle-timeout", idle]));
    let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
    v.sort();
    v
}

fn sorted(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.lines().map(str::to_owned).collect();
    v.sort();
    v
}

#[test]
fn truncate_at_a_stream_cut_through_a_scale() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let h = s.http_addr.clone();
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/t", "--segments", "2"]));
    let head0 = ok(&s.cli(&["stream", "cut", "demo/t"])).trim().to_owned();
    write(&s, &lines("a", 1000));
    let info = json_out(&s.cli(&["stream", "info", "demo/t", "--json"]));
    let first = info["segments"][0]["id"].as_u64().unwrap().to_string();
    ok(&s.cli(&["stream", "scale", "demo/t", "--split", &first]));
    write(&s, &lines("b", 1000));

    // The tail cut: the CLI and HTTP say the same.
    let cut = json_out(&s.cli(&["stream", "cut", "demo/t", "--tail", "--json"]));
    let (status, via_http) = http(&h, "GET", "/v1/scopes/demo/streams/t/cut?at=tail", None);
    assert_eq!(status, 200, "{via_http}");
    assert_eq!(via_http, cut);
    assert_eq!(cut["cut"].as_array().unwrap().len(), 3, "three active segments after the split: {cut}");
    let cut_text = ok(&s.cli(&["stream", "cut", "demo/t", "--tail"])).trim().to_owned();
    let late = lines("c", 500);
    write(&s, &late);

    // Bad cuts change nothing.
    let all_before = read_all(&s, "3");
    assert_eq!(all_before.len(), 2500);
    let parts: Vec<&str> = cut_text.split(',').collect();
    fails_with(&s.cli(&["stream", "truncate", "demo/t", "--cut", parts[0]]), "INVALID_ARGUMENT");
    fails_with(
        &s.cli(&["stream", "truncate", "demo/t", "--cut", &format!("999:0,{}", parts[1..].join(","))]),
        "NOT_FOUND_SEGMENT",
    );
    let past_end: Vec<String> = parts
        .iter()
        .map(|p| {
            let (id, off) = p.split_once(':').unwrap();
            format!("{id}:{}", off.parse::<u64>().unwrap() + 1_000_000)
        })
        .collect();
    fails_with(&s.cli(&["stream", "truncate", "demo/t", "--cut", &past_end.join(",")]), "past the end");
    let (status, body) = http(&h, "POST", "/v1/scopes/demo/streams/t/truncate", Some(r#"{"cut": "nope"}"#));
    assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{body}");
    assert_eq!(read_all(&s, "3"), all_before, "refused truncations changed nothing");

    // Truncate at the cut: the split's predecessor lay wholly before it and is deleted.
    let done = json_out(&s.cli(&["stream", "truncate", "demo/t", "--cut", &cut_text, "--json"]));
    assert_eq!(done["deleted_segments"], 1, "{done}");
    assert_eq!(read_all(&s, "3"), sorted(&late), "a reader from the head reads exactly what followed the cut");
    // The old head is now before the head.
    fails_with(&s.cli(&["stream", "truncate", "demo/t", "--cut", &head0]), "");

    // Truncating at the tail over HTTP leaves nothing to read; it survives a restart.
    let (_, tail) = http(&h, "GET", "/v1/scopes/demo/streams/t/cut?at=tail", None);
    let body = serde_json::json!({ "cut": tail["cut"] }).to_string();
    let (status, r) = http(&h, "POST", "/v1/scopes/demo/streams/t/truncate", Some(&body));
    assert_eq!(status, 200, "{r}");
    assert!(read_all(&s, "2").is_empty());
    s.stop();
    let s = Standalone::start(dir.path());
    assert!(read_all(&s, "2").is_empty(), "the head survives a restart");
    let after = lines("d", 100);
    write(&s, &after);
    assert_eq!(read_all(&s, "3"), sorted(&after));
}

/// A cut must fall on event boundaries: an offset inside an event is refused with a typed
/// INVALID_ARGUMENT before any segment is touched, so a reader from the head never starts in
/// the middle of an event and a refused cut changes nothing, not even its valid parts. What the
/// client was told (refused) matches what survives (every event, whole); truncating at real
/// boundaries keeps working.
#[test]
fn truncate_inside_an_event_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let h = s.http_addr.clone();
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/t", "--segments", "2"]));
    // Events of 8 payload bytes ("kN\tev-NN"), 16 bytes framed, over both segments.
    let text: String = (0..40).map(|i| format!("k{}\tev-{i:02}\n", i % 10)).collect();
    write(&s, &text);
    let all = sorted(&text);
    assert_eq!(read_all(&s, "2"), all);
    let tail = ok(&s.cli(&["stream", "cut", "demo/t", "--tail"])).trim().to_owned();
    let tail: Vec<(u64, u64)> = tail
        .split(',')
        .map(|p| {
            let (id, off) = p.split_once(':').unwrap();
            (id.parse().unwrap(), off.parse().unwrap())
        })
        .collect();
    assert_eq!(tail.len(), 2);
    let [(a, a_end), (b, b_end)] = [tail[0], tail[1]];
    assert!(a_end > 0 && b_end > 0 && a_end % 16 == 0 && b_end % 16 == 0, "both segments hold events: {tail:?}");

    // `a` at its tail (a boundary), `b` inside its last event: refused as a whole, by the CLI
    // and over HTTP, naming the offset that is not an event boundary.
    let mid = format!("{a}:{a_end},{b}:{}", b_end - 3);
    fails_with(&s.cli(&["stream", "truncate", "demo/t", "--cut", &mid]), "INVALID_ARGUMENT");
    fails_with(&s.cli(&["stream", "truncate", "demo/t", "--cut", &mid]), "event boundary");
    let body = serde_json::json!({ "cut": [
        { "segment_id": a, "offset": a_end },
        { "segment_id": b, "offset": b_end - 3 },
    ] })
    .to_string();
    let (status, r) = http(&h, "POST", "/v1/scopes/demo/streams/t/truncate", Some(&body));
    assert_eq!((status, r["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{r}");
    assert!(r["message"].as_str().unwrap_or_default().contains("event boundary"), "{r}");

    // Nothing changed: the head is still at 0 everywhere, and a reader from the head reads every
    // event whole.
    let head = ok(&s.cli(&["stream", "cut", "demo/t"])).trim().to_owned();
    assert_eq!(head, format!("{a}:0,{b}:0"));
    assert_eq!(read_all(&s, "2"), all, "a refused truncation leaves every event readable");

    // At boundaries (`a` at its tail, `b` after its first event) it works.
    ok(&s.cli(&["stream", "truncate", "demo/t", "--cut", &format!("{a}:{a_end},{b}:16")]));
    let left = read_all(&s, "2");
    assert_eq!(left.len(), (b_end / 16 - 1) as usize, "{left:?}");
    assert!(left.iter().all(|e| all.contains(e)), "{left:?}");
}
