//! A raw echo server that dies by resetting every connection it has: slot lines 0, 1, 2...
//! in accept order (no reuse), then one thread per connection echoing what it reads.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::SockRef;

/// The accepted connections, and the threads echoing on them.
type Accepted = Arc<Mutex<Vec<(TcpStream, JoinHandle<()>)>>>;

pub struct ResettingServer {
    pub addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: JoinHandle<()>,
    accepted: Accepted,
}

impl ResettingServer {
    pub fn start() -> ResettingServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let accepted = Accepted::default();
        let acceptor = {
            let stopping = Arc::clone(&stopping);
            let accepted = Arc::clone(&accepted);
            thread::spawn(move || {
                for (slot, stream) in listener.incoming().enumerate() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let mut stream = stream.unwrap();
                    // A client gone already fails the echo at once; nothing else to do.
                    let _ = stream.write_all(format!("{slot}\r\n").as_bytes());
                    let echoing = stream.try_clone().unwrap();
                    let echo = thread::spawn(move || echo(echoing));
                    accepted.lock().unwrap().push((stream, echo));
                }
            })
        };
        ResettingServer {
            addr,
            stopping,
            acceptor,
            accepted,
        }
    }

    /// Stops accepting, then closes every connection with a reset (linger 0).
    pub fn kill(self) {
        self.stopping.store(true, Ordering::SeqCst);
        // The acceptor blocks in `accept`: one more connection wakes it to see the flag.
        drop(TcpStream::connect(self.addr).unwrap());
        self.acceptor.join().unwrap();
        let accepted = std::mem::take(&mut *self.accepted.lock().unwrap());
        for (stream, echo) in accepted {
            SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            // Ends the echo thread's read, which drops its handle: this one is the last.
            let _ = stream.shutdown(Shutdown::Read);
            echo.join().unwrap();
        }
    }
}

fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
