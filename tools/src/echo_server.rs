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
/// back, and returns after `duration` (connections still open are dropped when the process
/// exits).
pub fn serve(listen: SocketAddr, duration: Duration) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    println!("echo-server listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    thread::spawn(move || accept_loop(&listener));
    thread::sleep(duration);
    Ok(())
}

fn accept_loop(listener: &TcpListener) {
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
            if let Err(err) = echo(stream) {
                eprintln!("echo-server: connection failed: {err}");
            }
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Writes back everything read from `stream` until EOF.
fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}
