//! The Grafana dashboard `deploy/grafana/nadi.json` names only metrics that exist (issue 18,
//! acceptance 5): every metric name in every PromQL expression of the dashboard (panel targets
//! and template-variable queries) must be the name of a sample in a live `/metrics` of
//! processes under a small load: standalone's admin API, and a 3-controller cluster's
//! controllers and segment store.
//!
//! Names are compared with sample names as Prometheus stores them, so a histogram is
//! `…_bucket`/`…_sum`/`…_count` and a counter `…_total`; a dashboard that asks for a bare
//! histogram or counter family name is as wrong as one with a typo, since Prometheus would
//! return nothing for it. The extraction is a small PromQL scanner (strings, label matchers,
//! range selectors, Grafana variables, functions, aggregations and their `by (…)` lists are not
//! metric names); the second test checks it, and that a missing name is reported.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use nadi_client::{EventWriter, NadiClient, StreamSpec, WriterConfig};
use nadi_tests::cluster::Cluster;
use nadi_tests::{Standalone, http, http_raw};

/// PromQL aggregation operators: followed by `(` or by `by`/`without`, never metric names.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// PromQL keywords that are not metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names a PromQL expression selects. A Grafana `label_values(SELECTOR, LABEL)`
/// query counts as its selector (a one-argument `label_values(LABEL)` selects no metric).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let expr = expr.trim();
    if let Some(args) = expr.strip_prefix("label_values(").and_then(|a| a.strip_suffix(')')) {
        return match top_level_comma(args) {
            Some(i) => metric_names(&args[..i]),
            None => BTreeSet::new(),
        };
    }
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => i = skip_string(b, i),
            b'{' => {
                let end = skip_to(b, i, b'}');
                assert!(
                    !expr[i..end].contains("__name__"),
                    "selecting by __name__ is not supported by this check: {expr}"
                );
                i = end;
            }
            b'[' => i = skip_to(b, i, b']'),
            b'$' => {
                // Grafana variables: `$name`, `${name}`, `${name:format}`.
                i += 1;
                if b.get(i) == Some(&b'{') {
                    i = skip_to(b, i, b'}');
                } else {
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                        i += 1;
                    }
                }
            }
            b'0'..=b'9' | b'.' => {
                // Numbers (0.99, 1e3, 0x1f) and durations (5m).
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                let ident = &expr[start..i];
                let mut next = i;
                while next < b.len() && b[next].is_ascii_whitespace() {
                    next += 1;
                }
                let followed_by_paren = b.get(next) == Some(&b'(');
                if LABEL_LISTS.contains(&ident) && followed_by_paren {
                    i = skip_to(b, next, b')');
                } else if followed_by_paren || AGGREGATIONS.contains(&ident) || KEYWORDS.contains(&ident) {
                    // A function call, an aggregation or a keyword.
                } else {
                    names.insert(ident.to_owned());
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The index just past the string literal starting at `start` (its quote).
fn skip_string(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() && b[i] != quote {
        if b[i] == b'\\' && quote != b'`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// The index just past the first `close` after `start` outside string literals.
fn skip_to(b: &[u8], start: usize, close: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() && b[i] != close {
        if matches!(b[i], b'"' | b'\'' | b'`') {
            i = skip_string(b, i);
        } else {
            i += 1;
        }
    }
    i + 1
}

/// The first comma of `s` outside parentheses, braces, brackets and strings.
fn top_level_comma(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0i32;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i);
                continue;
            }
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => depth -= 1,
            b',' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Every PromQL expression of a dashboard, with where it is (for failure messages): panel
/// targets' `expr` (at any depth, so rows' nested panels too) and the queries of `query`
/// template variables.
fn expressions(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                let here = match m.get("title").and_then(|t| t.as_str()) {
                    Some(t) => format!("{path}/{t}"),
                    None => path.to_owned(),
                };
                if let Some(e) = m.get("expr").and_then(|e| e.as_str()) {
                    out.push((here.clone(), e.to_owned()));
                }
                for child in m.values() {
                    walk(child, &here, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, path, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], "panels", &mut out);
    for var in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap_or("?");
        let query = match &var["query"] {
            serde_json::Value::String(q) => q.clone(),
            q => q["query"].as_str().unwrap_or_default().to_owned(),
        };
        out.push((format!("templating/${name}"), query));
    }
    out
}

/// The sample names in an exposition (`name{labels} value` or `name value` lines).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// What the dashboard names that `exposed` lacks: `(where, expression, missing names)`.
fn missing(dashboard: &serde_json::Value, exposed: &BTreeSet<String>) -> Vec<(String, String, Vec<String>)> {
    let exprs = expressions(dashboard);
    assert!(!exprs.is_empty(), "the dashboard has no PromQL expression at all");
    let mut out = Vec::new();
    for (at, expr) in exprs {
        let names = metric_names(&expr);
        assert!(!names.is_empty() || at.starts_with("templating/"), "{at}: no metric name found in {expr:?}");
        let lacking: Vec<String> = names.into_iter().filter(|n| !exposed.contains(n)).collect();
        if !lacking.is_empty() {
            out.push((at, expr, lacking));
        }
    }
    out
}

fn dashboard() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/nadi.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn scrape(addr: &str) -> String {
    let (status, text) = http_raw(addr, "GET", "/metrics", None);
    assert_eq!(status, 200, "GET {addr}/metrics: {text}");
    text
}

/// A small load: keyed events of 1 KiB into one stream (every append and commit metric gets
/// samples), through `controllers`.
fn load(controllers: &[String]) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = NadiClient::new(controllers).unwrap();
        client.create_scope("g").await.unwrap();
        client.create_stream("g", "s", StreamSpec::fixed(2)).await.unwrap();
        let writer = EventWriter::new(&client, "g", "s", WriterConfig::default()).await.unwrap();
        let payload = Bytes::from(vec![b'x'; 1024]);
        for i in 0..2_000u32 {
            writer.write(Some(format!("k{}", i % 16).as_bytes()), payload.clone()).await.unwrap();
        }
        writer.close().await.unwrap();
        // A reader group, for the `nadi_reader_group_*` gauges (measured every 2 s).
        nadi_client::ReaderGroup::create(&client, "g", "rg", &["s"], nadi_client::StartFrom::Head).await.unwrap();
    });
}

/// Scrapes `addrs` until their samples together include the reader-group gauges (at most 20 s).
fn scrape_with_lag(addrs: &[String]) -> BTreeSet<String> {
    let started = Instant::now();
    loop {
        let names: BTreeSet<String> = addrs.iter().flat_map(|a| sample_names(&scrape(a))).collect();
        if names.contains("nadi_reader_group_lag_events") || started.elapsed() > std::time::Duration::from_secs(20) {
            return names;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

fn assert_all_exist(dashboard: &serde_json::Value, exposed: &BTreeSet<String>, what: &str) {
    let lacking = missing(dashboard, exposed);
    assert!(
        lacking.is_empty(),
        "deploy/grafana/nadi.json names metrics that {what} does not expose:\n{}\nexposed: {exposed:?}",
        lacking.iter().map(|(at, e, n)| format!("  {at}: {n:?} in {e}")).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn every_dashboard_metric_exists_in_a_live_scrape() {
    let started = Instant::now();
    let dash = dashboard();

    // Standalone: one admin /metrics shows everything (HTTP API, Raft, segment store).
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    load(std::slice::from_ref(&s.controller_url));
    assert_eq!(http(&s.http_addr, "GET", "/v1/scopes", None).0, 200, "an admin request, for nadi_http_*");
    assert_all_exist(&dash, &scrape_with_lag(std::slice::from_ref(&s.http_addr)), "standalone's admin API");
    drop(s);
    eprintln!("standalone checked after {:.1} s", started.elapsed().as_secs_f64());

    // A cluster: what Prometheus scrapes from the controllers and the segment store together.
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3);
    let urls: Vec<String> = c.controller_urls().split(',').map(str::to_owned).collect();
    load(&urls);
    let mut addrs = vec![c.store_http_addr()];
    for id in 1..=3 {
        assert_eq!(http(&c.http_addr(id), "GET", "/v1/scopes", None).0, 200, "an admin request to controller {id}");
        addrs.push(c.http_addr(id));
    }
    let exposed = scrape_with_lag(&addrs);
    assert_all_exist(&dash, &exposed, "a 3-controller cluster with a segment store");
    eprintln!("wall time: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn the_check_finds_metric_names_and_reports_missing_ones() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (instance, le) (rate(a_seconds_bucket{instance=~"$instance"}[$__rate_interval])))"#
        ),
        ["a_seconds_bucket"]
    );
    assert_eq!(
        names(
            r#"sum(rate(x_total{status=~"5..", q="}by(x)"}[5m])) / sum without (route) (rate(x_total[${__range}])) > bool 0.5"#
        ),
        ["x_total"]
    );
    assert_eq!(names("a_log_index - on (instance) group_left () b_index offset 1h"), ["a_log_index", "b_index"]);
    assert_eq!(names("max by (instance) (g) and count(h) or topk(3, k:recorded)"), ["g", "h", "k:recorded"]);
    assert_eq!(names(r#"label_values(m_total{job="x"}, stream)"#), ["m_total"]);
    assert!(names("label_values(stream)").is_empty());
    assert_eq!(
        sample_names("# TYPE a counter\na_total{x=\"1\"} 3\nb 1\n# EOF\n"),
        BTreeSet::from(["a_total".into(), "b".into()])
    );

    // The real dashboard against an exposition that lacks one of its names: reported, by
    // panel. And a dashboard naming a metric nobody exposes fails.
    let mut dash = dashboard();
    let all: BTreeSet<String> = expressions(&dash).iter().flat_map(|(_, e)| metric_names(e)).collect();
    assert!(all.contains("nadi_container_commit_seconds_bucket"), "{all:?}");
    let mut lacking_one = all.clone();
    lacking_one.remove("nadi_raft_term");
    let found = missing(&dash, &lacking_one);
    assert!(!found.is_empty() && found.iter().all(|(_, _, n)| n == &["nadi_raft_term"]), "{found:?}");
    dash["panels"][1]["targets"][0]["expr"] = "rate(nadi_does_not_exist_total[5m])".into();
    let found = missing(&dash, &all);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].2, ["nadi_does_not_exist_total"]);
}
