//! Bad input on the Pravega segment port (issue 20, acceptance 4): the handshake; garbage
//! bytes, an unknown command type, an oversized length, a wrong protocol version, commands
//! before `Hello`, an append without `SetupAppend` and an append block that is not its declared
//! events each get a typed reply or a closed connection, never a panic; an unknown segment
//! gets `NoSuchSegment`; the process keeps serving and the data stored through Nadi is intact
//! (read back through Nadi and through the Pravega port).
//!
//! Costs about 3 s (one standalone).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use nadi_tests::{Standalone, ok};

fn frame(type_code: i32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&type_code.to_be_bytes());
    f.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hello(high: i32, low: i32) -> Vec<u8> {
    let mut p = high.to_be_bytes().to_vec();
    p.extend_from_slice(&low.to_be_bytes());
    frame(-127, &p)
}

fn connect(addr: &str) -> TcpStream {
    let c = TcpStream::connect(addr).expect("connect to the Pravega segment port");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// Reads one frame: (type, payload).
fn read_frame(c: &mut TcpStream) -> (i32, Vec<u8>) {
    let mut head = [0u8; 8];
    c.read_exact(&mut head).expect("a reply frame");
    let t = i32::from_be_bytes(head[..4].try_into().unwrap());
    let len = i32::from_be_bytes(head[4..].try_into().unwrap());
    let mut payload = vec![0u8; len as usize];
    c.read_exact(&mut payload).expect("the reply's payload");
    (t, payload)
}

/// The server closes the connection (EOF or reset) within the read timeout, sending nothing
/// more.
fn closed(c: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(c.read(&mut b), Ok(0) | Err(_)) && !matches!(c.read(&mut b), Ok(n) if n > 0)
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn read_segment(segment: &str, offset: i64, request_id: i64) -> Vec<u8> {
    let mut p = Vec::new();
    put_string(&mut p, segment);
    p.extend_from_slice(&offset.to_be_bytes());
    p.extend_from_slice(&1024i32.to_be_bytes()); // suggested length
    put_string(&mut p, ""); // delegation token
    p.extend_from_slice(&request_id.to_be_bytes());
    p
}

fn setup_append(writer: u128, segment: &str, request_id: i64) -> Vec<u8> {
    setup_append_with(writer, segment, request_id, "")
}

fn setup_append_with(writer: u128, segment: &str, request_id: i64, token: &str) -> Vec<u8> {
    let mut p = request_id.to_be_bytes().to_vec();
    p.extend_from_slice(&writer.to_be_bytes());
    put_string(&mut p, segment);
    put_string(&mut p, token);
    frame(1, &p)
}

fn append_block(writer: u128, data: &[u8], events: i32, last: i64) -> Vec<u8> {
    let mut p = writer.to_be_bytes().to_vec();
    p.extend_from_slice(&(data.len() as i32).to_be_bytes());
    p.extend_from_slice(&(data.len() as u32).to_be_bytes());
    p.extend_from_slice(data);
    p.extend_from_slice(&events.to_be_bytes());
    p.extend_from_slice(&last.to_be_bytes());
    p.extend_from_slice(&1i64.to_be_bytes()); // request id
    frame(4, &p)
}

/// Reads a reply's fields in order (big-endian, as the codec writes them).
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn string(&mut self) -> String {
        let n = u16::from_be_bytes(self.take(2).try_into().unwrap()) as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
    fn bytes(&mut self) -> Vec<u8> {
        let n = u32::from_be_bytes(self.take(4).try_into().unwrap()) as usize;
        self.take(n).to_vec()
    }
}

#[test]
fn bad_input_on_the_pravega_port_gets_a_typed_reply_or_a_closed_connection() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start_with(
        dir.path(),
        &["--pravega-controller-listen", "127.0.0.1:0", "--pravega-segment-listen", "127.0.0.1:0"],
    );
    let addr = s.pravega_segments.clone().expect("the ready line names the Pravega segment endpoint");
    ok(&s.cli(&["scope", "create", "w"]));
    ok(&s.cli(&["stream", "create", "w/s"]));
    ok(&s.cli_stdin(&["write", "w/s"], b"one\ntwo\nthree\n"));

    // The handshake: the client's Hello(15, 5) is answered with the server's Hello(15, 5).
    let mut c = connect(&addr);
    c.write_all(&hello(15, 5)).unwrap();
    let (t, p) = read_frame(&mut c);
    assert_eq!((t, p), (-127, [15i32.to_be_bytes(), 5i32.to_be_bytes()].concat()));
    // KeepAlive is echoed.
    c.write_all(&frame(100, &[])).unwrap();
    assert_eq!(read_frame(&mut c), (100, vec![]));
    // A read is served from the stored bytes: Nadi's events in Pravega's framing.
    let read = read_segment("w/s/0.#epoch.0", 0, 4242);
    c.write_all(&frame(9, &read)).unwrap();
    let (t, p) = read_frame(&mut c);
    assert_eq!(t, 10, "SegmentRead");
    let mut r = Fields(&p);
    assert_eq!(r.string(), "w/s/0.#epoch.0");
    assert_eq!(r.i64(), 0, "the offset asked for");
    let (_at_tail, end_of_segment) = (r.u8(), r.u8());
    assert_eq!(end_of_segment, 0);
    let mut want = Vec::new();
    for e in ["one", "two", "three"] {
        want.extend_from_slice(&0i32.to_be_bytes());
        want.extend_from_slice(&(e.len() as i32).to_be_bytes());
        want.extend_from_slice(e.as_bytes());
    }
    assert_eq!(r.bytes(), want, "the stored events with Pravega's 8-byte headers");
    assert_eq!(r.i64(), 4242, "it echoes the request id");
    // An unknown segment: NoSuchSegment (53) with the request id.
    c.write_all(&frame(9, &read_segment("w/nope/0.#epoch.0", 0, 7))).unwrap();
    let (t, p) = read_frame(&mut c);
    assert_eq!((t, Fields(&p).i64()), (53, 7), "NoSuchSegment");
    // A well-formed request not served: OperationUnsupported (57) with its request id.
    let mut transient = 4343i64.to_be_bytes().to_vec();
    transient.extend_from_slice(&7u128.to_be_bytes());
    put_string(&mut transient, "w/s/0.#epoch.0");
    put_string(&mut transient, "");
    c.write_all(&frame(40, &transient)).unwrap();
    let (t, p) = read_frame(&mut c);
    assert_eq!((t, Fields(&p).i64()), (57, 4343), "OperationUnsupported");
    // An unknown command type closes the connection.
    c.write_all(&frame(9999, b"whatever")).unwrap();
    assert!(closed(&mut c), "an unknown command closes the connection");

    // A client whose versions do not overlap gets the server's Hello, then a close.
    let mut c = connect(&addr);
    c.write_all(&hello(40, 30)).unwrap();
    assert_eq!(read_frame(&mut c).0, -127);
    assert!(closed(&mut c), "incompatible versions close the connection");

    // Garbage, an oversized or negative length, a command before Hello, a second Hello, an
    // append without SetupAppend, a block that is not its declared events: closed, no reply,
    // nothing stored.
    let bad: [Vec<u8>; 7] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        [&(-127i32).to_be_bytes()[..], &(0x0100_0000i32).to_be_bytes()[..]].concat(),
        [&(-127i32).to_be_bytes()[..], &(-5i32).to_be_bytes()[..]].concat(),
        frame(9, &read),
        [hello(15, 5), frame(-127, &[1, 2])].concat(),
        [hello(15, 5), append_block(9, b"\0\0\0\0\0\0\0\x01x", 1, 1)].concat(),
        [hello(15, 5), setup_append(9, "w/s/0.#epoch.0", 1), append_block(9, b"\0\0\0\0\0\0\0\x09short", 1, 1)]
            .concat(),
    ];
    for (i, bytes) in bad.iter().enumerate() {
        let mut c = connect(&addr);
        c.write_all(bytes).unwrap();
        if i >= 4 {
            // The Hello is answered; what follows it closes.
            assert_eq!(read_frame(&mut c).0, -127);
        }
        if i == 6 {
            assert_eq!(read_frame(&mut c).0, 2, "AppendSetup");
        }
        assert!(closed(&mut c), "bad input {i} closes the connection");
    }

    // The process still serves, and what was stored is intact.
    let out = ok(&s.cli(&["read", "w/s", "--from-start", "--idle-timeout", "2"]));
    assert_eq!(out, "one\ntwo\nthree\n");
    let mut c = connect(&addr);
    c.write_all(&hello(15, 5)).unwrap();
    assert_eq!(read_frame(&mut c).0, -127, "a new connection still gets its handshake");
    s.stop();
}

/// With `--auth required`, every segment request's delegation token must carry a token that
/// holds the permission: none, a wrong one, or one without a grant gets `AuthTokenCheckFailed`
/// (60) with the request id; the caller's own token, wrapped as the Pravega controller API
/// wraps it, gets through.
#[test]
fn with_auth_on_a_request_needs_a_delegation_token_carrying_a_granted_token() {
    let dir = tempfile::tempdir().unwrap();
    let (tokens, token_file) = nadi_tests::token_file(dir.path(), &["admin", "nobody"]);
    let (admin, nobody) = (&tokens[0], &tokens[1]);
    let flags = nadi_tests::pravega_auth_flags(&token_file);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = Standalone::start_with(&dir.path().join("data"), &flags);
    let addr = s.pravega_segments.clone().unwrap();
    ok(&s.cli(&["--token", admin, "scope", "create", "a"]));
    ok(&s.cli(&["--token", admin, "stream", "create", "a/s"]));
    let wrap = |t: &str| nadi_pravega::delegation::wrap(t, u64::MAX / 2);
    let mut c = connect(&addr);
    c.write_all(&hello(15, 5)).unwrap();
    assert_eq!(read_frame(&mut c).0, -127);
    for (i, t) in ["".to_owned(), "nadi_wrong".to_owned(), wrap("nadi_wrong"), wrap(nobody)].iter().enumerate() {
        c.write_all(&setup_append_with(5, "a/s/0.#epoch.0", 10 + i as i64, t)).unwrap();
        let (code, p) = read_frame(&mut c);
        assert_eq!((code, Fields(&p).i64()), (60, 10 + i as i64), "token {i} is refused");
    }
    c.write_all(&setup_append_with(5, "a/s/0.#epoch.0", 20, &wrap(admin))).unwrap();
    let (code, p) = read_frame(&mut c);
    assert_eq!((code, Fields(&p).i64()), (2, 20), "AppendSetup for a granted token");
    s.stop();
}
