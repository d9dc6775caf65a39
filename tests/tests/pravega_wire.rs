//! Bad input on the Pravega segment port (issue 20, acceptance 4, the part served so far): the
//! handshake, and garbage bytes, an unknown command type, an oversized length, a wrong protocol
//! version and commands before `Hello` each get a typed reply or a closed connection, never a
//! panic; the process keeps serving and the data stored through Nadi is intact.
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
    // A well-formed request not served yet: OperationUnsupported (57) with its request id.
    let mut read = Vec::new();
    let segment = b"w/s/0.#epoch.0";
    read.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    read.extend_from_slice(segment);
    read.extend_from_slice(&0i64.to_be_bytes()); // offset
    read.extend_from_slice(&1024i32.to_be_bytes()); // suggested length
    read.extend_from_slice(&0u16.to_be_bytes()); // delegation token ""
    read.extend_from_slice(&4242i64.to_be_bytes()); // request id
    c.write_all(&frame(9, &read)).unwrap();
    let (t, p) = read_frame(&mut c);
    assert_eq!(t, 57, "OperationUnsupported");
    assert_eq!(i64::from_be_bytes(p[..8].try_into().unwrap()), 4242, "it echoes the request id");
    // An unknown command type closes the connection.
    c.write_all(&frame(9999, b"whatever")).unwrap();
    assert!(closed(&mut c), "an unknown command closes the connection");

    // A client whose versions do not overlap gets the server's Hello, then a close.
    let mut c = connect(&addr);
    c.write_all(&hello(40, 30)).unwrap();
    assert_eq!(read_frame(&mut c).0, -127);
    assert!(closed(&mut c), "incompatible versions close the connection");

    // Garbage, an oversized or negative length, a command before Hello: closed, no reply.
    let bad: [Vec<u8>; 5] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        [&(-127i32).to_be_bytes()[..], &(0x0100_0000i32).to_be_bytes()[..]].concat(),
        [&(-127i32).to_be_bytes()[..], &(-5i32).to_be_bytes()[..]].concat(),
        frame(9, &read),
        [hello(15, 5), frame(-127, &[1, 2])].concat(),
    ];
    for (i, bytes) in bad.iter().enumerate() {
        let mut c = connect(&addr);
        c.write_all(bytes).unwrap();
        if i == 4 {
            // The first Hello is answered; the malformed second one closes.
            assert_eq!(read_frame(&mut c).0, -127);
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
