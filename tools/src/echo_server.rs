//! `netcon-ctl echo-server`: a plain TCP echo server on the kernel stack, the peer for
//! `pingpong` round-trip measurements. It exits by itself after a set time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// Connections served at once; more are closed on accept, which bounds the threads.
const MAX_CONNECTIONS: usize = 64;

/// Listens on `listen`, prints `echo-server listening on ADDR`, echoes every connection's bytes
/// back after waiting `delay`, and returns after `duration` (connections still open are dropped
/// when the process exits). The delay stands in for a slower path, so a measurement can be
/// checked against a known added latency.
pub fn serve(listen: SocketAddr, duration: Duration, delay: Duration) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    println!("echo-server listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    thread::spawn(move || accept_loop(&listener, delay));
    thread::sleep(duration);
    Ok(())
}

fn accept_loop(listener: &TcpListener, delay: Duration) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                eprintln!("echo-server: accept failed: {err}");
                continue;
            }
        };
        if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            eprintln!("echo-server: {MAX_CONNECTIONS} connections open, closing a new one");
            continue;
        }
        open.fetch_add(1, Ordering::SeqCst);
        let open = Arc::clone(&open);
        thread::spawn(move || {
            if let Err(err) = echo(stream, delay) {
                eprintln!("echo-server: connection failed: {err}");
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Writes back everything read from `stream` until EOF.
fn echo(mut stream: TcpStream, delay: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        stream.write_all(&buf[..n])?;
    }
}
