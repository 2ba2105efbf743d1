//! Hostile servers for the client, played by plain std sockets: every bad slot line of
//! PROTOCOL.md section 1, a server that never writes, one that drips, one that floods, one
//! that closes at once and one that resets. Each gives its event, and the client keeps
//! nothing from it and closes its socket.

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use callosum_proto::DecodeError;
use callosum_proto::rover::HandshakeFailure;
use socket2::SockRef;

use callosum_proto::client::ClientEvent;
use callosum_tests::conformance::{
    Adapter, ClientSpec, ClientUnderTest, DEADLINE, accept_within, one_attempt, raw_listener,
    read_to_end,
};
use callosum_tests::each_adapter;

each_adapter!(
    every_bad_line_fails_the_handshake,
    silent_server_times_out,
    dripping_server_times_out,
    slow_but_timely_server_is_kept,
    garbage_flood_is_rejected_within_a_line,
    server_closing_at_once_is_end_of_stream,
    server_resetting_at_once_is_always_a_handshake_failure,
    server_closing_after_every_line_draws_backoff_not_a_storm,
);

/// Each malformed line of section 1, written in one piece, and the error it must give.
const BAD_LINES: &[(&[u8], DecodeError)] = &[
    (b"\r\n", DecodeError::Empty),
    (
        b"+1\r\n",
        DecodeError::InvalidByte {
            byte: b'+',
            offset: 0,
        },
    ),
    (
        b"-1\r\n",
        DecodeError::InvalidByte {
            byte: b'-',
            offset: 0,
        },
    ),
    (
        b" 1\r\n",
        DecodeError::InvalidByte {
            byte: b' ',
            offset: 0,
        },
    ),
    (
        b"1\t\r\n",
        DecodeError::InvalidByte {
            byte: b'\t',
            offset: 1,
        },
    ),
    (
        b"1.5\r\n",
        DecodeError::InvalidByte {
            byte: b'.',
            offset: 1,
        },
    ),
    (
        b"0x1\r\n",
        DecodeError::InvalidByte {
            byte: b'x',
            offset: 1,
        },
    ),
    (
        "1\u{e9}\r\n".as_bytes(),
        DecodeError::InvalidByte {
            byte: 0xc3,
            offset: 1,
        },
    ),
    (
        b"1\rx",
        DecodeError::CrWithoutLf {
            byte: b'x',
            offset: 2,
        },
    ),
    (b"12\n", DecodeError::LfWithoutCr { offset: 2 }),
    (b"12345678901\r\n", DecodeError::TooLong),
    (b"4294967296\r\n", DecodeError::Overflow { offset: 9 }),
];

/// What the client reported first about its attempt: a connection or a failure.
fn first_outcome(client: &ClientUnderTest) -> ClientEvent {
    client.event_where("the attempt's outcome", |e| {
        matches!(
            e,
            ClientEvent::Kept { .. }
                | ClientEvent::Rejected { .. }
                | ClientEvent::Unreachable { .. }
                | ClientEvent::HandshakeFailed { .. }
        )
    })
}

/// The client closed its end: the accepted socket reads the end (or a reset) within the
/// deadline, and the pool holds nothing.
fn closed_and_not_kept(client: &ClientUnderTest, accepted: &mut TcpStream) {
    assert_eq!(read_to_end(accepted), b"", "the client closed its socket");
    assert_eq!(client.held(), 0, "nothing kept from a hostile server");
}

fn handshake_failed(reason: HandshakeFailure) -> impl Fn(std::net::SocketAddr) -> ClientEvent {
    move |server| ClientEvent::HandshakeFailed { server, reason }
}

fn every_bad_line_fails_the_handshake(adapter: Adapter) {
    for &(line, error) in BAD_LINES {
        let (listener, addr) = raw_listener();
        let client = ClientUnderTest::start(adapter, ClientSpec::new(&[addr], 1, one_attempt()));
        let mut accepted = accept_within(&listener);
        accepted.write_all(line).unwrap();
        assert_eq!(
            first_outcome(&client),
            handshake_failed(HandshakeFailure::Decode(error))(addr),
            "{:?}",
            String::from_utf8_lossy(line)
        );
        closed_and_not_kept(&client, &mut accepted);
    }
    // The end of the stream in the middle of a line.
    let (listener, addr) = raw_listener();
    let client = ClientUnderTest::start(adapter, ClientSpec::new(&[addr], 1, one_attempt()));
    let mut accepted = accept_within(&listener);
    accepted.write_all(b"12").unwrap();
    accepted.shutdown(Shutdown::Write).unwrap();
    let cut = DecodeError::UnexpectedEof { received: 2 };
    assert_eq!(
        first_outcome(&client),
        handshake_failed(HandshakeFailure::Decode(cut))(addr)
    );
    closed_and_not_kept(&client, &mut accepted);
}

fn silent_server_times_out(adapter: Adapter) {
    let (listener, addr) = raw_listener();
    let client = ClientUnderTest::start(adapter, ClientSpec::new(&[addr], 1, one_attempt()));
    let mut accepted = accept_within(&listener);
    assert_eq!(
        first_outcome(&client),
        handshake_failed(HandshakeFailure::TimedOut)(addr)
    );
    closed_and_not_kept(&client, &mut accepted);
}

/// Writes `line` one byte every 100 ms until it is all out or the client has gone.
fn drip(accepted: &mut TcpStream, line: &[u8]) {
    for byte in line {
        if accepted.write_all(&[*byte]).is_err() {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A ten-byte line at 100 ms a byte takes a second; the handshake allows 300 ms.
fn dripping_server_times_out(adapter: Adapter) {
    let (listener, addr) = raw_listener();
    let client = ClientUnderTest::start(adapter, ClientSpec::new(&[addr], 1, one_attempt()));
    let mut accepted = accept_within(&listener);
    drip(&mut accepted, b"12345678\r\n");
    assert_eq!(
        first_outcome(&client),
        handshake_failed(HandshakeFailure::TimedOut)(addr)
    );
    closed_and_not_kept(&client, &mut accepted);
}

/// A three-byte line at 100 ms a byte, one byte per read, well within a 3 s handshake.
fn slow_but_timely_server_is_kept(adapter: Adapter) {
    let (listener, addr) = raw_listener();
    let rover = callosum_proto::RoverConfig {
        handshake_timeout: Duration::from_secs(3),
        ..one_attempt()
    };
    let client = ClientUnderTest::start(adapter, ClientSpec::new(&[addr], 1, rover));
    let mut accepted = accept_within(&listener);
    drip(&mut accepted, b"7\r\n");
    assert_eq!(
        first_outcome(&client),
        ClientEvent::Kept {
            server: addr,
            slot: 7
        }
    );
    assert_eq!(client.held(), 1);
}

/// 1 MiB of digits: the client reads at most a line's worth, fails, and closes with the rest
/// unread, so the server's writes fail long before the mebibyte is out.
fn garbage_flood_is_rejected_within_a_line(adapter: Adapter) {
    const FLOOD: usize = 1 << 20;
    let (listener, addr) = raw_listener();
    let client = ClientUnderTest::start(adapter, ClientSpec::new(&[addr], 1, one_attempt()));
    let mut accepted = accept_within(&listener);
    SockRef::from(&accepted).set_send_buffer_size(4096).unwrap();
    accepted.set_write_timeout(Some(DEADLINE)).unwrap();
    let garbage: Vec<u8> = b"1234567890".iter().copied().cycle().take(FLOOD).collect();
    let flood = thread::spawn(move || {
        let mut written = 0;
        let error = loop {
            match accepted.write(&garbage[written..]) {
                Ok(0) => panic!("the flood wrote nothing"),
                Ok(n) => written += n,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => break error,
            }
            assert!(written < FLOOD, "the client took the whole flood");
        };
        (written, error)
    });
    // "1234567890" fits a u32; the eleventh digit is one too many, whatever the reads.
    assert_eq!(
        first_outcome(&client),
        handshake_failed(HandshakeFailure::Decode(DecodeError::TooLong))(addr)
    );
    let (written, error) = flood.join().unwrap();
    eprintln!("flood: {written} of {FLOOD} bytes written when the client closed ({error})");
    assert!(
        matches!(
            error.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "the flood ended by {error} after {written} bytes"
    );
    assert_eq!(client.held(), 0);
}

/// The server ends its side before any line: the end of the stream, then the client closes.
fn server_closing_at_once_is_end_of_stream(adapter: Adapter) {
    let (listener, addr) = raw_listener();
    let client = ClientUnderTest::start(adapter, ClientSpec::new(&[addr], 1, one_attempt()));
    let mut accepted = accept_within(&listener);
    accepted.shutdown(Shutdown::Write).unwrap();
    let eof = DecodeError::UnexpectedEof { received: 0 };
    assert_eq!(
        first_outcome(&client),
        handshake_failed(HandshakeFailure::Decode(eof))(addr)
    );
    closed_and_not_kept(&client, &mut accepted);
}

/// The server resets the connection at once. The reset may reach the client while it still
/// completes the connect or while it reads the line: the connection was established either
/// way, so it is a handshake failure every time, never "unreachable". Fifty trials, so that
/// both timings occur.
fn server_resetting_at_once_is_always_a_handshake_failure(adapter: Adapter) {
    for trial in 0..50 {
        let (listener, addr) = raw_listener();
        let client = ClientUnderTest::start(adapter, ClientSpec::new(&[addr], 1, one_attempt()));
        let accepted = accept_within(&listener);
        SockRef::from(&accepted)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(accepted);
        assert_eq!(
            first_outcome(&client),
            handshake_failed(HandshakeFailure::ReadFailed)(addr),
            "trial {trial}"
        );
        assert_eq!(client.held(), 0);
    }
}

/// A server that closes every connection right after its line: each such connection dies
/// young and counts as the server's failure, so the client backs off (500 ms doubling, the
/// default) instead of reconnecting once per round trip (thousands a second before).
///
/// The bound, at most 3 connections a second on average after the first second, is far
/// above what the backoff gives (a pool of 4 fills at once, each death doubles the pause:
/// about 8 connections in 10 s) and far below a storm.
fn server_closing_after_every_line_draws_backoff_not_a_storm(adapter: Adapter) {
    const RUN: Duration = Duration::from_secs(10);
    let (listener, addr) = raw_listener();
    let accepting = thread::spawn(move || {
        let started = Instant::now();
        let mut accepted_at = Vec::new();
        while started.elapsed() < RUN {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    accepted_at.push(started.elapsed());
                    let _ = stream.write_all(b"0\r\n");
                }
                // Nothing to accept: a plain listener has no event to wait on.
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(2))
                }
                Err(error) => panic!("accept failed: {error}"),
            }
        }
        accepted_at
    });
    let client = ClientUnderTest::start(
        adapter,
        ClientSpec::new(&[addr], 4, callosum_proto::RoverConfig::default()),
    );
    let accepted_at = accepting.join().unwrap();
    let after_the_first_second = accepted_at
        .iter()
        .filter(|&&at| at > Duration::from_secs(1))
        .count();
    eprintln!(
        "{} connections in {RUN:?}, {after_the_first_second} after the first second",
        accepted_at.len()
    );
    assert!(
        accepted_at.len() >= 2,
        "the client kept trying: {accepted_at:?}"
    );
    assert!(
        after_the_first_second <= 27,
        "{after_the_first_second} connections in 9 s: {accepted_at:?}"
    );
    assert_eq!(client.held(), 0);
}
