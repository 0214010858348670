//! An in-test TCP proxy for one link between two nodes, so a test can cut, delay or heal
//! it while the processes keep running (a network partition, not a crash). Loopback only.
//!
//! - `pass`: bytes flow both ways (after `delay`, if set).
//! - `blackhole`: nothing flows, and nothing is lost: the proxy stops reading, so bytes
//!   wait in the kernel's buffers as they would behind a partition TCP has not yet given
//!   up on; new connections are accepted and stay silent. `pass` lets everything through.
//! - `reset`: closes every connection it carries (a reset link); new ones work.
//!
//! Every pump polls its state every `POLL`, so threads end when the proxy is dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct State {
    blackholed: AtomicBool,
    delay_ms: AtomicU64,
    stopped: AtomicBool,
    /// Both ends of every connection carried, for `reset`.
    streams: Mutex<Vec<TcpStream>>,
}

pub struct Proxy {
    pub address: SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards each connection to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("proxy address");
        let state = Arc::new(State::default());
        let accepting = state.clone();
        thread::spawn(move || {
            while !accepting.stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        let _ = inbound.set_nonblocking(false);
                        if let Ok(outbound) = TcpStream::connect(target) {
                            carry(&accepting, inbound, outbound);
                        }
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
                    Err(_) => thread::sleep(POLL),
                }
            }
        });
        Proxy { address, state }
    }

    pub fn blackhole(&self) {
        self.state.blackholed.store(true, Ordering::Relaxed);
    }

    pub fn pass(&self) {
        self.state.blackholed.store(false, Ordering::Relaxed);
    }

    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(ms, Ordering::Relaxed);
    }

    pub fn reset(&self) {
        for stream in self.state.streams.lock().expect("streams").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Relaxed);
        self.reset();
    }
}

/// Pumps both directions of one connection on two threads.
fn carry(state: &Arc<State>, inbound: TcpStream, outbound: TcpStream) {
    let clones = (
        inbound.try_clone(),
        outbound.try_clone(),
        outbound.try_clone(),
        inbound.try_clone(),
    );
    let (Ok(in_read), Ok(out_write), Ok(out_read), Ok(in_write)) = clones else {
        return;
    };
    state
        .streams
        .lock()
        .expect("streams")
        .extend([inbound, outbound]);
    for (from, to) in [(in_read, out_write), (out_read, in_write)] {
        let state = state.clone();
        thread::spawn(move || pump(&state, from, to));
    }
}

fn pump(state: &State, mut from: TcpStream, mut to: TcpStream) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        if state.stopped.load(Ordering::Relaxed) {
            break;
        }
        if state.blackholed.load(Ordering::Relaxed) {
            thread::sleep(POLL);
            continue;
        }
        let read = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue
            }
            Err(_) => break,
        };
        // Read just as the link was cut: held until it passes again.
        while state.blackholed.load(Ordering::Relaxed) {
            if state.stopped.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(POLL);
        }
        let delay = state.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            thread::sleep(Duration::from_millis(delay));
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
