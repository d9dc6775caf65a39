//! The walking skeleton end to end against the real binary: write and read a keyed stream,
//! survive Ctrl-C and `kill -9`, and refuse bad input without touching stored data.

use nadi_tests::{Standalone, check_keyed_output, fails_with, keyed_lines, ok};

const N: u64 = 20_000;
const KEYS: u64 = 97;

fn read_all(s: &Standalone) -> String {
    ok(&s.cli(&["read", "demo/orders", "--from-start", "--max", &N.to_string(), "--idle-timeout", "20"]))
}

#[test]
fn keyed_events_are_read_once_in_key_order_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/orders", "--segments", "4"]));
    let out = ok(&s.cli_stdin(&["write", "demo/orders", "--key-sep", "\t"], &keyed_lines(N, KEYS)));
    assert!(out.contains(&format!("wrote {N} events")), "write printed {out:?}");
    let first = read_all(&s);
    check_keyed_output(&first, N);
    let list = ok(&s.cli(&["stream", "list", "demo"]));
    assert_eq!(list.trim(), "orders");
    let info: serde_json::Value =
        serde_json::from_str(&ok(&s.cli(&["stream", "info", "demo/orders", "--json"]))).unwrap();
    assert_eq!(info["segments"].as_array().unwrap().len(), 4);
    assert_eq!(info["segments"][0]["key_range"][0], 0.0);
    assert_eq!(info["segments"][3]["key_range"][1], 1.0);

    // Ctrl-C, then restart: the same streams and the same events.
    s.stop();
    let s = Standalone::start(dir.path());
    assert_eq!(ok(&s.cli(&["stream", "list", "demo"])), list);
    let second = read_all(&s);
    check_keyed_output(&second, N);
    let mut a: Vec<_> = first.lines().collect();
    let mut b: Vec<_> = second.lines().collect();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b);

    // More acknowledged writes, then kill -9: every acknowledged event is still there, once.
    let more = ok(&s.cli_stdin(&["write", "demo/orders", "--key", "late"], b"late-1\nlate-2\n"));
    assert!(more.contains("wrote 2 events"));
    s.kill9();
    let s = Standalone::start(dir.path());
    assert_eq!(ok(&s.cli(&["stream", "list", "demo"])), list);
    let third =
        ok(&s.cli(&["read", "demo/orders", "--from-start", "--max", &(N + 2).to_string(), "--idle-timeout", "20"]));
    let (late, keyed): (Vec<&str>, Vec<&str>) = third.lines().partition(|l| l.starts_with("late-"));
    assert_eq!(late, vec!["late-1", "late-2"]);
    check_keyed_output(&(keyed.join("\n") + "\n"), N);
}

#[test]
fn bad_input_gets_a_clear_error_and_leaves_data_intact() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/orders", "--segments", "4"]));
    ok(&s.cli_stdin(&["write", "demo/orders", "--key-sep", "\t"], &keyed_lines(N, KEYS)));

    fails_with(
        &s.cli_stdin(&["write", "demo/missing", "--key-sep", "\t"], b"k\tv\n"),
        "stream demo/missing does not exist",
    );
    fails_with(&s.cli_stdin(&["write", "nowhere/orders"], b"v\n"), "scope nowhere does not exist");
    fails_with(&s.cli(&["stream", "create", "demo/bad name"]), "stream name \"bad name\" is malformed");
    fails_with(&s.cli(&["scope", "create", "bad@scope"]), "scope name \"bad@scope\" is malformed");
    fails_with(&s.cli(&["stream", "create", "demo/orders", "--segments", "4"]), "stream demo/orders already exists");
    fails_with(&s.cli(&["scope", "create", "demo"]), "scope demo already exists");
    let mut huge = b"k\t".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 8 * 1024 * 1024 + 1));
    huge.push(b'\n');
    fails_with(
        &s.cli_stdin(&["write", "demo/orders", "--key-sep", "\t"], &huge),
        "exceeds the maximum event size of 8388608 bytes",
    );
    fails_with(
        &s.cli_stdin(&["write", "demo/orders", "--key-sep", "\t"], b"no separator here\n"),
        "has no key separator",
    );

    assert_eq!(ok(&s.cli(&["stream", "list", "demo"])).trim(), "orders");
    check_keyed_output(&read_all(&s), N);
}
