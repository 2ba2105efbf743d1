//! Accept errors do not stop the server nor make it spin: with no file descriptor left,
//! accepting fails once, the server backs off (exposed by `poll_timeout`), keeps its
//! connections, and accepts the waiting connections once the backoff ends.
//!
//! This is a test binary of its own, with one test, because it lowers the process's limit
//! on open files.
#![cfg(target_os = "linux")]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use callosum_mio::{Server, ServerConfig, ServerEvent, TokenRange, timeout_until};
use mio::{Events, Poll};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

#[test]
fn an_accept_error_pauses_accepting_for_the_backoff_then_accepting_resumes() {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut poll = Poll::new().unwrap();
    let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap();
    server
        .register(poll.registry(), TokenRange::new(0..100))
        .unwrap();
    let mut events = Events::with_capacity(64);
    let mut log = Vec::new();
    let mut turn = |server: &mut Server, log: &mut Vec<ServerEvent>| {
        let timeout = timeout_until([server.poll_timeout(), Some(deadline)]);
        poll.poll(&mut events, timeout).unwrap();
        for event in &events {
            server.handle_event(event);
        }
        server.handle_timeout();
        while let Some(event) = server.poll_event() {
            log.push(event);
        }
        assert!(Instant::now() < deadline, "timed out: {log:?}");
    };

    let held = std::net::TcpStream::connect(server.local_addr()).unwrap();
    while !log
        .iter()
        .any(|e| matches!(e, ServerEvent::Accepted { .. }))
    {
        turn(&mut server, &mut log);
    }

    let waiting: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(server.local_addr()).unwrap())
        .collect();
    // The lowest free descriptor number becomes the limit: no new descriptor can be made.
    let lowest_free = File::open("/dev/null").unwrap().as_raw_fd();
    let saved = getrlimit(Resource::Nofile);
    let limited = Rlimit {
        current: Some(u64::try_from(lowest_free).unwrap()),
        maximum: saved.maximum,
    };
    setrlimit(Resource::Nofile, limited).unwrap();
    while !log
        .iter()
        .any(|e| matches!(e, ServerEvent::AcceptFailed { .. }))
    {
        turn(&mut server, &mut log);
    }
    let status = server.status();
    assert!(!status.accepting);
    assert_eq!(status.stats.accept_errors, 1);
    assert_eq!(status.live, 1, "the connection it had is kept");
    assert!(server.poll_timeout().is_some());
    setrlimit(Resource::Nofile, saved).unwrap();

    while server.status().live < 4 {
        turn(&mut server, &mut log);
    }
    assert!(server.status().accepting);
    assert_eq!(
        server.status().stats.accept_errors,
        1,
        "one failure, no spinning"
    );
    let mut slots: Vec<u32> = log
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Accepted { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect();
    slots.sort_unstable();
    assert_eq!(slots, [0, 1, 2, 3]);
    drop((held, waiting));
}
