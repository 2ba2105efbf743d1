//! A Callosum server on plain std sockets that answers each line after a delay: the slow
//! peer of the cancellation checks, the same for every client adapter under test.
//!
//! Slots come from the core's [`GrowableServerCore`] (lowest free, freed when the connection
//! ends); each connection has a thread of its own that reads a line, sleeps, and writes the
//! line back.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use callosum_proto::server::{Accept, GrowableServerCore};

use super::Background;

/// A delayed echo server on 127.0.0.1; stopped and joined on drop (its connection threads end
/// with their connections).
pub struct DelayedEcho {
    /// Where it listens.
    pub addr: SocketAddr,
    _background: Background,
}

impl DelayedEcho {
    /// Starts a server that answers every line with the same line, `delay` after reading it.
    pub fn start(delay: Duration) -> DelayedEcho {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let core = Arc::new(Mutex::new(GrowableServerCore::new(None).unwrap()));
        let stopping = Arc::clone(&stop);
        let body = move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let core = Arc::clone(&core);
                thread::spawn(move || serve(stream, &core, delay));
            }
        };
        let wake = move || {
            stopping.store(true, Ordering::Relaxed);
            // Wakes the blocking accept so that the thread sees the flag.
            let _ = TcpStream::connect(addr);
        };
        DelayedEcho {
            addr,
            _background: Background::spawn(wake, body),
        }
    }
}

/// Writes the slot line, then echoes each line after `delay`, until the connection ends.
fn serve(mut stream: TcpStream, core: &Mutex<GrowableServerCore>, delay: Duration) {
    let accepted = core.lock().unwrap().handle_accept();
    let Accept::Assigned { conn, line } = accepted else {
        return;
    };
    if stream.write_all(line.as_bytes()).is_ok() {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request = String::new();
        while matches!(reader.read_line(&mut request), Ok(1..)) {
            thread::sleep(delay);
            if stream.write_all(request.as_bytes()).is_err() {
                break;
            }
            request.clear();
        }
    }
    let _ = core.lock().unwrap().handle_closed(conn);
}
