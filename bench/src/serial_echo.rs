//! `netcon-bench serial-echo-server`: the connection-rate workload's peer. It serves one
//! connection at a time on one thread, so a connection costs the server no thread start and
//! the rate measures the stacks, not the server.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// How long the server waits for a connection's next bytes before it drops the connection
/// and accepts the next, so a stuck client cannot stall the run.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Listens on `listen`, prints `serial-echo-server listening on ADDR`, and echoes each
/// accepted connection until EOF before accepting the next. Returns after `duration`.
///
/// Returns an error when `listen` cannot be bound. A failed connection is dropped and the next
/// one accepted, and only the first error of each `io::ErrorKind` is printed on stderr.
pub fn serve(listen: SocketAddr, duration: Duration) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    println!("serial-echo-server listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    thread::spawn(move || accept_loop(&listener));
    thread::sleep(duration);
    Ok(())
}

fn accept_loop(listener: &TcpListener) {
    let mut reported = Vec::new();
    for stream in listener.incoming() {
        let result = stream.and_then(echo);
        if let Err(err) = result {
            let kind = err.kind();
            if !reported.contains(&kind) {
                eprintln!("serial-echo-server: connection failed: {err}");
                reported.push(kind);
            }
        }
    }
}

/// Writes back everything read from `stream` until EOF, then closes it.
fn echo(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_serves_connections_in_turn() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        thread::spawn(move || accept_loop(&listener));

        for round in 0..3u8 {
            let mut stream = TcpStream::connect(address).unwrap();
            stream.write_all(&[round; 64]).unwrap();
            let mut reply = [0u8; 64];
            stream.read_exact(&mut reply).unwrap();
            assert_eq!(reply, [round; 64]);
        }
    }
}
