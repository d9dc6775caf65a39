//! Issue 23: the web console (`/ui`) in a real headless Chromium, driven over WebDriver
//! (chromedriver + fantoccini), against a real standalone store. What the pages show is
//! checked against what the CLI created and wrote:
//!
//! - the streams page lists the streams `nadi stream create` made, with their segment counts;
//! - the stream page previews events as text: a `<script>` payload shows as its characters and
//!   runs nothing, an invalid UTF-8 payload shows as hex;
//! - after `nadi stream scale --split`, the open stream page shows the new segments within 5 s
//!   (it polls; nothing is reloaded);
//! - a reader group's lag shows every written byte, and 0 once `nadi read --group` drained it;
//! - a stream created with the page's form (behind its confirmation) is in `nadi stream list`;
//!   truncating, scaling, sealing (cancelled first) and deleting from the stream page do what
//!   the CLI then sees;
//! - with `--auth required`, the page shows the API's 401 and 403 and, with the token typed
//!   into it, what that token may see; the files themselves are public, the new endpoints
//!   refuse as every `/v1` call does (checked over plain HTTP, without a browser).
//!
//! Screenshots of every page go to `target/console-screenshots/`. Without `chromium` and
//! `chromedriver` on the PATH the test prints `skipped: …` and passes, except under CI
//! (`CI` set), where `.ci/run` installs them and their absence fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use nadi_tests::{Standalone, json_out, ok};
use serde_json::{Value, json};

/// The first of `names` found on the PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n))).find(|p| p.is_file())
}

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Where the screenshots go: `console-screenshots/` in the cargo target directory.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("target dir").join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `script` (a function body returning a value) every 100 ms until it returns something
/// other than `null`/`false`, and returns that; fails after `limit` with `what` and the page's
/// text.
async fn poll(c: &Client, limit: Duration, what: &str, script: &str) -> Value {
    let started = Instant::now();
    loop {
        let v = c.execute(script, vec![]).await.unwrap_or(Value::Null);
        if !(v.is_null() || v == Value::Bool(false)) {
            return v;
        }
        if started.elapsed() > limit {
            let text = c.execute("return document.body.innerText", vec![]).await.unwrap_or_default();
            panic!("{what}: not seen within {limit:?}; the page shows:\n{}", text.as_str().unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(name), png).unwrap();
}

/// Waits for the page's next refresh (it polls every 2 s).
async fn next_refresh(c: &Client) {
    let now = c.execute("return Number(document.body.dataset.refreshes || 0)", vec![]).await.unwrap();
    let script = format!("return Number(document.body.dataset.refreshes || 0) > {now}");
    poll(c, Duration::from_secs(10), "the next refresh", &script).await;
}

/// Opens a page of the console and waits for its first refresh.
async fn open(c: &Client, base: &str, hash: &str) {
    c.goto(&format!("{base}/ui/{hash}")).await.unwrap();
    poll(c, Duration::from_secs(10), &format!("{hash} loaded"), "return document.body.dataset.loaded || null").await;
}

/// Where chromedriver listens for this test, with the browser it starts.
struct Browser {
    _driver: Driver,
    chrome: PathBuf,
    port: u16,
}

/// The browser and its driver, found on the PATH.
struct Tools {
    chrome: PathBuf,
    chromedriver: PathBuf,
}

/// The tools, or `None` after saying `skipped: …` where chromium or chromedriver is missing
/// (outside CI; under CI their absence fails).
fn tools() -> Option<Tools> {
    let (Some(chrome), Some(chromedriver)) =
        (on_path(&["chromium", "chromium-browser", "google-chrome"]), on_path(&["chromedriver"]))
    else {
        assert!(std::env::var_os("CI").is_none(), "chromium and chromedriver are missing (.ci/run installs them)");
        eprintln!("skipped: chromium and chromedriver not installed (apt-get install chromium chromium-driver)");
        return None;
    };
    Some(Tools { chrome, chromedriver })
}

impl Tools {
    /// Starts chromedriver on a free port (after the servers under test: the ports they were
    /// given are bound by then).
    fn start(self) -> Browser {
        let port = free_port();
        let child = Command::new(&self.chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        Browser { _driver: Driver(child), chrome: self.chrome, port }
    }
}

impl Browser {
    /// A new headless session (chromedriver may still be starting: retried for 20 s).
    async fn session(&self) -> Client {
        let mut caps = serde_json::Map::new();
        let args =
            ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1360,1100"];
        caps.insert("goog:chromeOptions".into(), json!({ "binary": self.chrome, "args": args }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let url = format!("http://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match ClientBuilder::new(connector.clone()).capabilities(caps.clone()).connect(&url).await {
                Ok(c) => return c,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => panic!("WebDriver session: {e}"),
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn console_shows_what_the_cli_did() {
    let Some(tools) = tools() else { return };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(&dir.path().join("data"));
    ok(&s.cli(&["scope", "create", "c"]));
    ok(&s.cli(&["stream", "create", "c/orders", "--segments", "2"]));
    ok(&s.cli(&["stream", "create", "c/clicks", "--segments", "1"]));
    // Lines are events: plain text, then (the latest, which the tail view shows) HTML, an
    // attribute handler and invalid UTF-8.
    let mut input = Vec::new();
    for i in 0..50 {
        input.extend_from_slice(format!("order {i}\n").as_bytes());
    }
    input.extend_from_slice(b"<script>alert(1)</script>\n<img src=x onerror=alert(2)>\n");
    input.extend_from_slice(&[0xff, 0xfe, 0x00, 0x80, b'<', b'\n']);
    ok(&s.cli_stdin(&["write", "c/orders"], &input));

    let base = format!("http://{}", s.http_addr);
    let browser = tools.start();
    runtime().block_on(async {
        let c = browser.session().await;
        check_pages(&c, &s, &base).await;
        c.close().await.unwrap();
    });
    eprintln!("console test took {:?}", started.elapsed());
}

/// A console served by a follower of a three-controller group shows the three members with
/// the one leader they agree on, and a stream's segments as the CLI created them (its `/v1`
/// calls are forwarded to the leader like any other).
#[test]
fn console_on_a_follower_shows_the_controllers_and_their_leader() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cluster = nadi_tests::cluster::Cluster::start(dir.path(), 3);
    let leader = cluster.leader(Duration::from_secs(30));
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    ok(&cluster.cli(&["scope", "create", "k"]));
    ok(&cluster.cli(&["stream", "create", "k/s", "--segments", "3"]));
    ok(&cluster.cli_stdin_all(&["write", "k/s"], b"a\nb\nc\n"));
    let base = format!("http://{}", cluster.http_addr(follower));
    let browser = tools.start();
    runtime().block_on(async {
        let c = browser.session().await;
        open(&c, &base, "#/").await;
        let leaders = poll(
            &c,
            Duration::from_secs(15),
            "three controllers",
            "const rows = [...document.querySelectorAll('#members tr[data-member]')];
             return rows.length === 3 ? rows.filter(r => r.querySelector('.badge.ok')).map(r => r.dataset.member) : null",
        )
        .await;
        assert_eq!(leaders, json!([leader.to_string()]), "the page marks the leader the nodes agree on");
        shot(&c, "cluster-three-controllers.png").await;
        open(&c, &base, "#/stream/k/s").await;
        let events = poll(
            &c,
            Duration::from_secs(15),
            "k/s's three segments",
            "const r = [...document.querySelectorAll('#segment-table tr[data-segment]')];
             return r.length === 3 ? r.reduce((a, row) => a + Number(row.cells[7].textContent), 0) : null",
        )
        .await;
        assert_eq!(events, json!(3), "the three events written, counted over the segments");
        c.close().await.unwrap();
    });
}

/// With `--auth required` the page shows the API's refusals (401 without a token, 403 with
/// one lacking the permission) and, with the token typed into it, what that token may see.
#[test]
fn console_calls_the_api_with_the_token_typed_into_it() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (tokens, token_file) = nadi_tests::token_file(dir.path(), &["admin", "other", "reader"]);
    let (admin, other, reader) = (tokens[0].clone(), tokens[1].clone(), tokens[2].clone());
    let s = Standalone::start_with(
        &dir.path().join("data"),
        &["--auth", "required", "--token-file", token_file.to_str().unwrap(), "--superusers", "admin"],
    );
    for args in [
        &["scope", "create", "a"][..],
        &["stream", "create", "a/s", "--segments", "2"],
        &["acl", "grant", "reader", "read", "prn::/scope:a"],
    ] {
        let mut all = vec!["--token", admin.as_str()];
        all.extend_from_slice(args);
        ok(&nadi_tests::run_cli(&s.controller_url, &all, b""));
    }
    let base = format!("http://{}", s.http_addr);
    let error = "const e = document.querySelector('#page-error .error'); return e ? e.textContent : null";
    let browser = tools.start();
    runtime().block_on(async {
        let c = browser.session().await;
        c.goto(&format!("{base}/ui/#/stream/a/s")).await.unwrap();
        let shown = poll(&c, Duration::from_secs(10), "a refusal without a token", error).await;
        assert!(shown.as_str().unwrap().starts_with("401 UNAUTHENTICATED"), "{shown}");
        let use_token = async |token: &str| {
            let input = c.find(Locator::Css("#token")).await.unwrap();
            input.clear().await.unwrap();
            input.send_keys(token).await.unwrap();
            c.find(Locator::Css("#token-form button")).await.unwrap().click().await.unwrap();
        };
        use_token(&other).await;
        let script = "const e = document.querySelector('#page-error .error');
             return e && e.textContent.startsWith('403') ? e.textContent : null";
        let shown = poll(&c, Duration::from_secs(10), "a refusal for a token without read on a/s", script).await;
        assert!(shown.as_str().unwrap().starts_with("403 PERMISSION_DENIED"), "{shown}");
        // Read on the stream but not on the cluster: the page shows the stream and its latest
        // events, and says the stores' per-segment figures were refused.
        use_token(&reader).await;
        let script = "const s = document.querySelector('#stream-state');
             const e = document.querySelector('#segments .error');
             return s && e && document.querySelector('#tail-table') ? e.textContent : null";
        let shown = poll(&c, Duration::from_secs(10), "a/s without the stores' figures", script).await;
        assert!(shown.as_str().unwrap().starts_with("403"), "{shown}");
        use_token(&admin).await;
        let rows = poll(
            &c,
            Duration::from_secs(10),
            "a/s's segments with the admin's token",
            "const r = document.querySelectorAll('#segment-table tr[data-segment]');
             return r.length ? r.length : null",
        )
        .await;
        assert_eq!(rows, json!(2));
        let kept = c.execute("return sessionStorage.getItem('nadi-console-token')", vec![]).await.unwrap();
        assert_eq!(kept, json!(admin), "the token is kept in the tab's sessionStorage");
        c.close().await.unwrap();
    });
}

async fn check_pages(c: &Client, s: &Standalone, base: &str) {
    // Cluster: this standalone's one controller leads.
    open(c, base, "#/").await;
    poll(
        c,
        Duration::from_secs(10),
        "a controller marked leader",
        "return document.querySelector('#members .badge.ok') !== null",
    )
    .await;
    shot(c, "cluster.png").await;

    // Streams: what the CLI created, with its segment counts.
    open(c, base, "#/streams").await;
    let counts = poll(
        c,
        Duration::from_secs(10),
        "c/orders and c/clicks listed",
        "const row = k => document.querySelector(`#stream-table tr[data-stream='${k}']`);
         const o = row('c/orders'), k = row('c/clicks');
         return o && k ? [o.cells[5].textContent, k.cells[5].textContent] : null",
    )
    .await;
    assert_eq!(counts, json!(["2", "1"]), "segment counts of c/orders and c/clicks");
    // The next refresh has rates (the difference of two samples).
    next_refresh(c).await;
    shot(c, "streams.png").await;

    // Stream page: previews are text, not markup; bytes that are not UTF-8 are hex.
    open(c, base, "#/stream/c/orders").await;
    let previews = poll(
        c,
        Duration::from_secs(10),
        "the tail view",
        "const p = [...document.querySelectorAll('#tail-table td.preview')].map(e => e.textContent);
         return p.length >= 10 ? p : null",
    )
    .await;
    let previews: Vec<String> = previews.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert!(previews.iter().any(|p| p == "<script>alert(1)</script>"), "script payload shown as text: {previews:?}");
    assert!(previews.iter().any(|p| p == "<img src=x onerror=alert(2)>"), "img payload shown as text: {previews:?}");
    assert!(previews.iter().any(|p| p == "ff fe 00 80 3c"), "invalid UTF-8 shown as hex: {previews:?}");
    let injected = c
        .execute("return document.querySelectorAll('#main script, #main img, #main [onerror]').length", vec![])
        .await
        .unwrap();
    assert_eq!(injected, json!(0), "no payload became an element");
    assert!(c.get_alert_text().await.is_err(), "no script ran (no alert is open)");
    shot(c, "stream.png").await;

    // Scale with the CLI; the open page shows the new segments within 5 s.
    ok(&s.cli(&["stream", "scale", "c/orders", "--split", "0"]));
    let scaled = Instant::now();
    let info = json_out(&s.cli(&["stream", "info", "c/orders", "--json"]));
    let new: Vec<u64> = info["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|seg| seg["epoch"] == json!(1))
        .map(|seg| seg["id"].as_u64().unwrap())
        .collect();
    assert_eq!(new.len(), 2, "the split made two segments: {info}");
    let script = format!(
        "const open = {new:?}.every(id => document.querySelector(`#segment-table tr[data-segment='${{id}}'][data-state='open']`));
         const sealed = document.querySelector(`#segment-table tr[data-segment='0'][data-state='sealed']`);
         const drawn = {new:?}.every(id => document.querySelector(`#history g[data-segment='${{id}}']`));
         return open && sealed && drawn"
    );
    // Within 5 s of the CLI's return (the `stream info` above counts).
    let left = Duration::from_secs(5).saturating_sub(scaled.elapsed());
    poll(c, left, "the split's segments on the stream page", &script).await;
    eprintln!("the stream page showed the split {:?} after the CLI returned", scaled.elapsed());
    next_refresh(c).await;
    shot(c, "stream-scaled.png").await;

    // A reader group lags by every byte written, then by 0 once its reader drained the stream.
    ok(&s.cli(&["reader-group", "create", "c/g", "--stream", "orders"]));
    let stats: Value = nadi_tests::http(&s.http_addr, "GET", "/v1/scopes/c/streams/orders/stats", None).1;
    let written = stats["totals"]["size_bytes"].as_u64().unwrap();
    open(c, base, "#/group/c/g").await;
    open(c, base, "#/groups").await;
    poll(
        c,
        Duration::from_secs(10),
        "c/g listed",
        "return document.querySelector(\"#group-table tr[data-group='c/g']\") !== null",
    )
    .await;
    shot(c, "groups.png").await;
    open(c, base, "#/group/c/g").await;
    let lag = poll(
        c,
        Duration::from_secs(10),
        "the group's lag",
        "const l = document.querySelector('#group-lag'); return l && l.dataset.bytes !== '0' ? Number(l.dataset.bytes) : null",
    )
    .await;
    assert_eq!(lag, json!(written), "lag before reading = readable bytes of c/orders");
    shot(c, "group.png").await;
    // Its output holds the invalid UTF-8 event: counted as bytes, one event a line.
    let out = s.cli(&["read", "c/orders", "--group", "g", "--from-start", "--idle-timeout", "2"]);
    assert!(out.status.success(), "nadi read: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(), 53, "the reader read every event");
    poll(
        c,
        Duration::from_secs(15),
        "the group's lag at 0",
        "const l = document.querySelector('#group-lag'); return l && l.dataset.bytes === '0'",
    )
    .await;
    shot(c, "group-drained.png").await;

    // Create a stream with the page's form; the CLI lists it.
    open(c, base, "#/streams").await;
    poll(
        c,
        Duration::from_secs(10),
        "scope c in the form",
        "return document.querySelector(\"#new-stream-scope option[value='c']\") !== null",
    )
    .await;
    c.find(Locator::Css("#new-stream-name")).await.unwrap().send_keys("fromui").await.unwrap();
    let segments = c.find(Locator::Css("#new-stream-segments")).await.unwrap();
    segments.clear().await.unwrap();
    segments.send_keys("3").await.unwrap();
    c.find(Locator::Css("#new-stream-create")).await.unwrap().click().await.unwrap();
    poll(c, Duration::from_secs(5), "the confirmation dialog", "return document.querySelector('#confirm').open").await;
    shot(c, "confirm.png").await;
    assert!(!ok(&s.cli(&["stream", "list", "c"])).lines().any(|l| l == "fromui"), "nothing before the confirmation");
    c.find(Locator::Css("#confirm-ok")).await.unwrap().click().await.unwrap();
    let started = Instant::now();
    loop {
        if ok(&s.cli(&["stream", "list", "c"])).lines().any(|l| l == "fromui") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "c/fromui not in `nadi stream list c`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info = json_out(&s.cli(&["stream", "info", "c/fromui", "--json"]));
    assert_eq!(info["segments"].as_array().map(Vec::len), Some(3), "created with the form's 3 segments: {info}");
    poll(
        c,
        Duration::from_secs(5),
        "c/fromui listed",
        "return document.querySelector(\"#stream-table tr[data-stream='c/fromui']\") !== null",
    )
    .await;
    check_actions(c, s, base).await;
}

/// Clicks `button`, waits for the confirmation dialog and answers it.
async fn confirm(c: &Client, button: &str, answer: &str) {
    c.find(Locator::Css(button)).await.unwrap().click().await.unwrap();
    poll(c, Duration::from_secs(5), "the confirmation dialog", "return document.querySelector('#confirm').open").await;
    c.find(Locator::Css(answer)).await.unwrap().click().await.unwrap();
    poll(c, Duration::from_secs(5), "the dialog closed", "return !document.querySelector('#confirm').open").await;
}

/// Polls `nadi ARGS` (every 100 ms, at most 10 s) until it succeeds with a stdout `check`
/// accepts. A failure is polled past: while a truncation deletes segments, a head cut asked
/// at the same moment can fail (`stream cut` on segments being deleted), and is asked again.
async fn until_cli(s: &Standalone, args: &[&str], what: &str, check: impl Fn(&str) -> bool) {
    let started = Instant::now();
    loop {
        let out = s.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && check(&stdout) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: `nadi {}` says {stdout:?}, stderr {:?}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stream page's actions, each checked with the CLI: truncate at the tail, scale (split),
/// seal (cancelled first: nothing happens), delete.
async fn check_actions(c: &Client, s: &Standalone, base: &str) {
    let tail = ok(&s.cli(&["stream", "cut", "c/orders", "--tail"])).trim().to_owned();
    assert_ne!(ok(&s.cli(&["stream", "cut", "c/orders"])).trim(), tail, "the head is not the tail yet");
    open(c, base, "#/stream/c/orders").await;
    confirm(c, "#truncate-go", "#confirm-ok").await;
    until_cli(s, &["stream", "cut", "c/orders"], "the head moved to the tail", |head| head.trim() == tail).await;
    let script = format!(
        "const h = document.querySelector('#head-cut'); return h && h.textContent.replaceAll(' ', '') === {tail:?}"
    );
    poll(c, Duration::from_secs(5), "the new head on the page", &script).await;

    open(c, base, "#/stream/c/clicks").await;
    c.find(Locator::Css("#scale-split")).await.unwrap().send_keys("0").await.unwrap();
    confirm(c, "#scale-go", "#confirm-ok").await;
    until_cli(s, &["stream", "info", "c/clicks", "--json"], "c/clicks split in two", |out| {
        let v: Value = serde_json::from_str(out).unwrap();
        v["epoch"] == json!(1) && v["segments"].as_array().map(Vec::len) == Some(2)
    })
    .await;

    confirm(c, "#seal-go", "#confirm-cancel").await;
    let v = json_out(&s.cli(&["stream", "info", "c/clicks", "--json"]));
    assert_eq!(v["state"], json!("active"), "a cancelled seal seals nothing");
    confirm(c, "#seal-go", "#confirm-ok").await;
    until_cli(s, &["stream", "info", "c/clicks", "--json"], "c/clicks sealed", |out| {
        serde_json::from_str::<Value>(out).unwrap()["state"] == json!("sealed")
    })
    .await;
    poll(
        c,
        Duration::from_secs(5),
        "sealed on the page",
        "return document.querySelector('#stream-state').textContent === 'sealed'",
    )
    .await;
    confirm(c, "#delete-go", "#confirm-ok").await;
    until_cli(s, &["stream", "list", "c"], "c/clicks deleted", |out| !out.lines().any(|l| l == "clicks")).await;
    poll(c, Duration::from_secs(5), "back on the streams page", "return location.hash === '#/streams'").await;
}

/// With `--auth required` the console's files are public (they hold no data) while what its
/// pages show needs the caller's token and permissions, exactly as any `/v1` call: the two
/// endpoints the console added, which also ask the segment stores, refuse without a token
/// (401) and without read on the stream (403), and answer the admin. Needs no browser.
#[test]
fn console_files_are_public_and_its_data_needs_the_callers_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let (tokens, token_file) = nadi_tests::token_file(dir.path(), &["admin", "other", "reader"]);
    let (admin, other, reader) = (tokens[0].as_str(), tokens[1].as_str(), tokens[2].as_str());
    let s = Standalone::start_with(
        &dir.path().join("data"),
        &["--auth", "required", "--token-file", token_file.to_str().unwrap(), "--superusers", "admin"],
    );
    let as_admin = |args: &[&str], input: &[u8]| {
        let mut all = vec!["--token", admin];
        all.extend_from_slice(args);
        ok(&nadi_tests::run_cli(&s.controller_url, &all, input))
    };
    as_admin(&["scope", "create", "a"], b"");
    as_admin(&["scope", "create", "b"], b"");
    as_admin(&["stream", "create", "a/s", "--segments", "2"], b"");
    as_admin(&["write", "a/s"], b"one\ntwo\nthree\n");
    as_admin(&["acl", "grant", "other", "admin", "prn::/scope:b"], b"");
    as_admin(&["acl", "grant", "reader", "read", "prn::/scope:a"], b"");

    for path in ["/ui/", "/ui/app.js", "/ui/history.js", "/ui/style.css"] {
        let (status, _) = nadi_tests::http_raw(&s.http_addr, "GET", path, None);
        assert_eq!(status, 200, "GET {path} without a token");
    }
    assert_eq!(nadi_tests::http_raw(&s.http_addr, "GET", "/ui", None).0, 308, "/ui redirects to /ui/");
    assert_eq!(nadi_tests::http_raw(&s.http_addr, "GET", "/ui/secret.txt", None).0, 404, "only the console's files");
    let bearer = |t: &str| format!("Bearer {t}");
    for path in ["/v1/scopes/a/streams/s/stats", "/v1/scopes/a/streams/s/events"] {
        let get = |headers: &[(&str, &str)]| nadi_tests::http_with(&s.http_addr, "GET", path, None, headers);
        assert_eq!(get(&[]).0, 401, "GET {path} without a token");
        let (status, body) = get(&[("Authorization", &bearer(other))]);
        assert_eq!(status, 403, "GET {path} without read on a/s: {body}");
        // The per-segment figures locate each segment's store from the cluster's description
        // (read on the cluster), as `nadi stream stats` does; the preview needs only the stream.
        let (status, body) = get(&[("Authorization", &bearer(reader))]);
        let want = if path.ends_with("/stats") { 403 } else { 200 };
        assert_eq!(status, want, "GET {path} with read on scope a only: {body}");
        let (status, body) = get(&[("Authorization", &bearer(admin))]);
        assert_eq!(status, 200, "GET {path} as the admin: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        if path.ends_with("/stats") {
            assert_eq!(v["totals"]["event_count"], json!(3), "{v}");
        } else {
            let mut shown: Vec<&str> =
                v["events"].as_array().unwrap().iter().map(|e| e["preview_utf8"].as_str().unwrap()).collect();
            shown.sort();
            assert_eq!(shown, ["one", "three", "two"], "{v}");
        }
    }
}
