//! Churn: several threads open and end thousands of connections in every way a peer can end
//! one; afterwards every slot is free, the process's open file descriptors are back to where
//! they started, and the next connection gets slot 0.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use callosum_proto::Rng;
use socket2::SockRef;

use callosum_tests::conformance::{Adapter, DEADLINE, ServerUnderTest, connect, read_once};

each_server_in_child!(churn);

const THREADS: u64 = 4;
const PER_THREAD: u64 = 1_250;

/// How a client ends its connection.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Reads its slot line, then closes (FIN).
    Fin,
    /// Reads its slot line, then resets (RST, linger 0).
    Reset,
    /// Closes (FIN) before reading its slot line.
    LeaveBeforeLine,
    /// Resets before reading its slot line.
    ResetBeforeLine,
    /// Reads its slot line, sends a request, half-closes, and closes without reading the
    /// answer (which turns its close into a reset if the answer came in time).
    HalfCloseUnread,
    /// Reads its slot line and stays idle until every thread is done.
    Idle,
}

/// Picks an ending: each of the first five as often, and one connection in 21 stays idle (a
/// couple of hundred at once, so later connections get higher slots).
fn pick(rng: &mut Rng) -> Ending {
    const ENDINGS: [Ending; 5] = [
        Ending::Fin,
        Ending::Reset,
        Ending::LeaveBeforeLine,
        Ending::ResetBeforeLine,
        Ending::HalfCloseUnread,
    ];
    match rng.below(21) {
        20 => Ending::Idle,
        n => ENDINGS[(n / 4) as usize],
    }
}

/// Opens a connection and ends it as `ending` says; an idle one is returned with its slot.
fn open_and_end(server: SocketAddr, ending: Ending) -> Option<(u32, TcpStream)> {
    let mut stream = connect(server);
    match ending {
        Ending::LeaveBeforeLine => return None,
        Ending::ResetBeforeLine => {
            reset(&stream);
            return None;
        }
        Ending::Fin | Ending::Reset | Ending::HalfCloseUnread | Ending::Idle => {}
    }
    let line = read_once(&mut stream);
    let slot = line
        .strip_suffix("\r\n")
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("not a slot line: {line:?}"));
    match ending {
        Ending::Reset => reset(&stream),
        Ending::HalfCloseUnread => {
            stream.write_all(b"never read\n").unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
        }
        Ending::Idle => return Some((slot, stream)),
        Ending::Fin | Ending::LeaveBeforeLine | Ending::ResetBeforeLine => {}
    }
    None
}

/// Makes the socket's close a reset.
fn reset(stream: &TcpStream) {
    SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// The process's open file descriptors (the directory's own included, the same each time).
fn open_descriptors() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

pub fn churn(adapter: Adapter) {
    let started = Instant::now();
    let server = ServerUnderTest::start(adapter, None);
    // One connection first, so that whatever is set up on first use counts in the start.
    let mut first = connect(server.addr);
    assert_eq!(read_once(&mut first), "0\r\n");
    server.wait_live(1, "the first connection holds its slot");
    drop(first);
    server.wait_live(0, "the first connection's slot freed");
    let at_start = open_descriptors();

    let idle: Vec<(u32, TcpStream)> = thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|seed| {
                let addr = server.addr;
                scope.spawn(move || {
                    let mut rng = Rng::new(seed);
                    (0..PER_THREAD)
                        .filter_map(|_| open_and_end(addr, pick(&mut rng)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect()
    });
    let slots: HashSet<u32> = idle.iter().map(|(slot, _)| *slot).collect();
    assert_eq!(slots.len(), idle.len(), "two live connections share a slot");
    // Accepting goes in order: once this one has its line, every earlier one was accepted.
    let mut last = connect(server.addr);
    read_once(&mut last);
    let idle_count = u32::try_from(idle.len()).unwrap();
    server.wait_live(
        idle_count + 1,
        "only the idle and the last connections left",
    );
    let peak = open_descriptors();
    drop((idle, last));
    server.wait_live(0, "every slot free");
    let churned = started.elapsed();

    // Sockets close after their slots are freed: wait for the count to come back.
    let deadline = Instant::now() + DEADLINE;
    let mut now_open = open_descriptors();
    while now_open != at_start {
        assert!(
            Instant::now() < deadline,
            "{now_open} descriptors open after the churn, {at_start} before"
        );
        thread::sleep(Duration::from_millis(10));
        now_open = open_descriptors();
    }
    assert_eq!(read_once(&mut connect(server.addr)), "0\r\n");
    println!(
        "churn {adapter:?}: {} connections, {idle_count} idle until the end, in {churned:?}; \
         descriptors {at_start} before, {peak} with the idle ones, {now_open} after",
        THREADS * PER_THREAD
    );
}
