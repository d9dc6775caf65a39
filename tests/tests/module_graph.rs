//! The module graph of every crate: no import circles, and the segment store's rooms depend
//! only downwards (`node → net → store → container → log, tier2 → error, direct, metrics`).
//!
//! A small reader of our own sources, not a Rust parser: it collects every `crate::…` and
//! `super::…` path in code (comments and `tests` modules left out), resolves each to the
//! deepest module that exists, and lifts the edge to the two sibling modules under the
//! closest common parent (`node::standalone` using `node::controller::serve` is an edge
//! `standalone → controller` inside `node`; `net::service` using `store::Store` is an edge
//! `net → store` at the crate root). A parent and its own child may use each other (a room's
//! `mod.rs` owns its files). Any circle among siblings fails the test, naming it.
//!
//! Runs in `cargo test --workspace` (CI); costs well under a second.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Crates whose `src/` is checked.
const CRATES: &[&str] = &["proto", "security", "pravega", "controller", "server", "client", "cli"];

/// The segment store's rooms, top to bottom: a room may only use rooms of a lower rank.
const SERVER_LAYERS: &[(&str, u8)] = &[
    ("node", 6),
    ("net", 5),
    ("store", 4),
    ("container", 3),
    ("replica", 2),
    ("log", 1),
    ("tier2", 1),
    ("error", 0),
    ("direct", 0),
    ("metrics", 0),
];

type Module = Vec<String>;

/// The checkout whose sources are read: this workspace, or `NADI_SOURCE_ROOT` (to run the
/// check against another checkout, e.g. an older commit in a worktree).
fn workspace() -> PathBuf {
    match std::env::var_os("NADI_SOURCE_ROOT") {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned(),
    }
}

/// Every source file of a crate, by module path (`lib.rs`/`main.rs` is the root, `[]`).
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, prefix: &Module, out: &mut BTreeMap<Module, PathBuf>) {
        let mut entries: Vec<_> =
            fs::read_dir(dir).expect("read src dir").map(|e| e.expect("dir entry").path()).collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if path.is_dir() {
                let mut m = prefix.clone();
                m.push(name);
                walk(&path, &m, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut m = prefix.clone();
                match stem {
                    "lib" if prefix.is_empty() => {}
                    // A binary beside a library is a crate of its own (its `crate::` is not
                    // the library's); it would also take the library root's place here.
                    "main" if prefix.is_empty() && dir.join("lib.rs").exists() => continue,
                    "main" if prefix.is_empty() => {}
                    "mod" => {}
                    // Test-only files are not part of the layering.
                    "tests" | "conformance" => continue,
                    s if s.ends_with("_tests") => continue,
                    _ => m.push(stem.to_owned()),
                }
                out.insert(m, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    if src.is_dir() {
        walk(src, &Vec::new(), &mut out);
    }
    out
}

/// The code of a file without comments and without a trailing `#[cfg(test)] mod tests { … }`.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            // Test modules sit at the end of a file by house style; what follows is theirs.
            break;
        }
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Expands `use` trees: `crate::a::{b, c::{d, e}}` → `crate::a::b`, `crate::a::c::d`, ….
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    // Not a use tree (the word "use" in a string or an identifier): nothing to expand.
    if !tree.chars().all(|c| c.is_alphanumeric() || "_:{},*".contains(c)) {
        return Vec::new();
    }
    let Some(open) = tree.find('{') else { return vec![tree] };
    let Some(close) = tree.rfind('}').filter(|&c| c > open) else { return Vec::new() };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).flat_map(|p| expand(&format!("{prefix}{p}"))).collect()
}

/// Every module path a file's code names, as written (`crate::…` or `super::…`).
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // `use` statements, whose trees may group paths.
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        rest = &rest[i + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        out.extend(expand(&rest[..end]));
    }
    // Paths written inline in code.
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            out.push(code[at..end].trim_end_matches(':').to_owned());
            from = end.max(at + 1);
        }
    }
    out
}

/// The module a path names: the deepest module that exists along it.
fn resolve(from: &Module, path: &str, known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let segs: Vec<&str> = path.split("::").collect();
    let (mut base, rest): (Module, &[&str]) = match segs.first() {
        Some(&"crate") => (Vec::new(), &segs[1..]),
        Some(&"super") => {
            // A module's `super` is its parent, whether it is a `mod.rs` or a file.
            let mut base = from.clone();
            base.pop();
            let mut rest = &segs[1..];
            while rest.first() == Some(&"super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        _ => return None,
    };
    for seg in rest {
        let mut next = base.clone();
        next.push((*seg).to_owned());
        if known.contains_key(&next) {
            base = next;
        } else {
            break;
        }
    }
    Some(base)
}

/// An import edge lifted to siblings: (their parent, from child, to child), or `None` for a
/// module using itself, its parent or its own child.
fn lift(from: &Module, to: &Module) -> Option<(Module, String, String)> {
    let common = from.iter().zip(to.iter()).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None;
    }
    Some((from[..common].to_vec(), from[common].clone(), to[common].clone()))
}

/// A circle in a graph, if any, as the list of nodes along it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == m).expect("on stack");
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// The lifted edges of a crate: parent module → (from child → to children), with one example
/// import per edge for the failure message.
type Graph = BTreeMap<Module, BTreeMap<String, BTreeSet<String>>>;

fn graph(krate: &str) -> (Graph, BTreeMap<(Module, String, String), String>) {
    let src = workspace().join(krate).join("src");
    let known = modules(&src);
    let mut graph = Graph::new();
    let mut example = BTreeMap::new();
    for (module, file) in &known {
        let text = fs::read_to_string(file).expect("read source");
        for path in paths(&code(&text)) {
            let Some(target) = resolve(module, &path, &known) else { continue };
            if let Some((parent, a, b)) = lift(module, &target) {
                graph.entry(parent.clone()).or_default().entry(a.clone()).or_default().insert(b.clone());
                example
                    .entry((parent, a, b))
                    .or_insert_with(|| format!("{}: {path}", file.strip_prefix(workspace()).unwrap_or(file).display()));
            }
        }
    }
    (graph, example)
}

#[test]
fn no_crate_has_an_import_circle() {
    let mut failures = Vec::new();
    for krate in CRATES {
        let (graph, example) = graph(krate);
        for (parent, edges) in &graph {
            if let Some(cycle) = find_cycle(edges) {
                let lines: Vec<String> = cycle
                    .windows(2)
                    .map(|w| {
                        let key = (parent.clone(), w[0].clone(), w[1].clone());
                        format!("    {} -> {}   ({})", w[0], w[1], example.get(&key).map_or("?", |s| s.as_str()))
                    })
                    .collect();
                failures.push(format!("{krate}::{}: circle\n{}", parent.join("::"), lines.join("\n")));
            }
        }
    }
    assert!(failures.is_empty(), "import circles (move the shared part down a room):\n{}", failures.join("\n"));
}

#[test]
fn segment_store_rooms_depend_only_downwards() {
    let (graph, example) = graph("server");
    let rank: BTreeMap<&str, u8> = SERVER_LAYERS.iter().copied().collect();
    let mut failures = Vec::new();
    for (from, tos) in graph.get(&Vec::new()).into_iter().flatten() {
        for to in tos {
            let (Some(a), Some(b)) = (rank.get(from.as_str()), rank.get(to.as_str())) else {
                failures.push(format!("{from} -> {to}: a room missing from SERVER_LAYERS (add it, with its rank)"));
                continue;
            };
            if a <= b {
                let key = (Vec::new(), from.clone(), to.clone());
                failures.push(format!("{from} (rank {a}) -> {to} (rank {b}): {}", example[&key]));
            }
        }
    }
    assert!(failures.is_empty(), "server rooms importing upwards or sideways:\n{}", failures.join("\n"));
}

#[test]
fn the_reader_finds_grouped_and_inline_paths() {
    // The checker is only as good as its reader: it must see the forms our code uses.
    let code = code(
        "use crate::a::{b, c::{d, e}};\nfn f() { crate::x::y(); } // crate::z\n#[cfg(test)]\nmod tests { use crate::t; }\n",
    );
    let found: BTreeSet<String> = paths(&code).into_iter().collect();
    for p in ["crate::a::b", "crate::a::c::d", "crate::a::c::e", "crate::x::y"] {
        assert!(found.contains(p), "missing {p} in {found:?}");
    }
    assert!(!found.iter().any(|p| p.contains("crate::z") || p.contains("crate::t")), "{found:?}");
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(find_cycle(&edges), Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()]));
    assert_eq!(
        lift(&vec!["node".into(), "standalone".into()], &vec!["node".into(), "controller".into()]),
        Some((vec!["node".to_owned()], "standalone".to_owned(), "controller".to_owned()))
    );
    assert_eq!(lift(&vec!["container".into(), "writer".into()], &vec!["container".into()]), None);
}

/// Every module a module uses, each named at the level where the two part (`container::writer`
/// using `crate::log::LogError` calls `log`; using `crate::container::seam::ContainerLog`, it
/// calls `container::seam`).
fn calls(krate: &str) -> BTreeMap<Module, BTreeSet<String>> {
    let src = workspace().join(krate).join("src");
    let known = modules(&src);
    let mut out: BTreeMap<Module, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &known {
        let entry = out.entry(module.clone()).or_default();
        let text = fs::read_to_string(file).expect("read source");
        for path in paths(&code(&text)) {
            let Some(target) = resolve(module, &path, &known) else { continue };
            if let Some((parent, _, to)) = lift(module, &target) {
                let mut callee = parent;
                callee.push(to);
                entry.insert(callee.join("::"));
            }
        }
    }
    out
}

/// The module table of docs/architecture.md: (crate, module) → the modules its "calls" column
/// names (the backquoted words).
fn documented_modules() -> BTreeMap<(String, String), BTreeSet<String>> {
    let doc = fs::read_to_string(workspace().join("docs/architecture.md")).expect("read docs/architecture.md");
    let mut out = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | crate | `module` | owns | calls |
        if cells.len() != 6 || !cells[2].starts_with('`') || !CRATES.contains(&cells[1]) {
            continue;
        }
        let module = cells[2].trim_matches('`').to_owned();
        let called = cells[4].split('`').skip(1).step_by(2).map(str::to_owned).collect();
        out.insert((cells[1].to_owned(), module), called);
    }
    out
}

#[test]
fn architecture_md_names_every_module_and_what_it_calls() {
    let documented = documented_modules();
    let mut expected = BTreeMap::new();
    for krate in CRATES {
        for (module, called) in calls(krate) {
            if !module.is_empty() {
                expected.insert((krate.to_string(), module.join("::")), called);
            }
        }
    }
    let mut wrong = Vec::new();
    for ((krate, module), called) in &expected {
        let calls: Vec<String> = called.iter().map(|c| format!("`{c}`")).collect();
        let row = format!(
            "| {krate} | `{module}` | … | {} |",
            if calls.is_empty() { "—".to_owned() } else { calls.join(", ") }
        );
        match documented.get(&(krate.clone(), module.clone())) {
            None => wrong.push(format!("missing row: {row}")),
            Some(doc) if doc != called => wrong.push(format!("calls differ, the code says: {row}")),
            Some(_) => {}
        }
    }
    for key in documented.keys() {
        if !expected.contains_key(key) {
            wrong.push(format!("row for a module that does not exist: {} `{}`", key.0, key.1));
        }
    }
    assert!(wrong.is_empty(), "docs/architecture.md's module table does not match the code:\n{}", wrong.join("\n"));
}
