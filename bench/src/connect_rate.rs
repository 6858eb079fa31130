//! `netcon-bench connect-rate`: opens short TCP connections to an echo server one after
//! another (connect, one small request, its reply, close) and counts how many finish per
//! second.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// How long one connect or read may take before that connection counts as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Failed connections tolerated before the run stops with an error. A few failures are
/// counted and reported, since a stack that drops one handshake under load still has a rate.
const MAX_FAILURES: u64 = 10;

/// The maximum connection time the histogram records. Longer ones are clamped to it.
const MAX_RECORDED: Duration = Duration::from_secs(10);

/// Settings of one connection-rate run.
#[derive(Debug, Clone)]
pub struct ConnectRateOptions {
    /// The echo server's address.
    pub connect: SocketAddr,
    /// The time after which no new connection is started.
    pub duration: Duration,
    /// The number of connections after which the run stops, even before `duration`.
    pub max_connections: u64,
    /// The request size in bytes. The echo server sends as many bytes back.
    pub size: usize,
}

/// The outcome of one connection-rate run.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRateSummary {
    /// Connections that completed connect, request, reply and close.
    pub connections: u64,
    /// Connections that failed (and were not counted above).
    pub failures: u64,
    /// The time the run took, in seconds.
    pub seconds: f64,
    /// Completed connections per second.
    pub per_second: f64,
    /// The time one connection took, from connect to close, in microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Opens connections one after another until `duration` passes or `max_connections` are done.
///
/// Blocks for at most `duration` plus one connection's I/O timeout (5 s). Returns an error
/// when more than 10 connections fail, or when none completes.
pub fn connect_rate(options: &ConnectRateOptions) -> io::Result<ConnectRateSummary> {
    let request = vec![0x42_u8; options.size];
    let mut reply = vec![0u8; options.size];
    let max_ns = MAX_RECORDED.as_nanos() as u64;
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, max_ns, 3).map_err(io::Error::other)?;
    let mut failures = 0;

    let started = Instant::now();
    while started.elapsed() < options.duration && histogram.len() < options.max_connections {
        let opened = Instant::now();
        match one_connection(options.connect, &request, &mut reply) {
            Ok(()) => histogram.saturating_record(opened.elapsed().as_nanos() as u64),
            Err(err) => {
                failures += 1;
                if failures > MAX_FAILURES {
                    return Err(io::Error::new(
                        err.kind(),
                        format!(
                            "{failures} connections failed after {} completed, the last with: \
                             {err}",
                            histogram.len()
                        ),
                    ));
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    if histogram.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no connection completed within the time limit",
        ));
    }
    let us = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    Ok(ConnectRateSummary {
        connections: histogram.len(),
        failures,
        seconds,
        per_second: histogram.len() as f64 / seconds,
        p50_us: us(0.50),
        p99_us: us(0.99),
    })
}

/// Connects, sends `request`, reads as many bytes back, checks them and closes.
fn one_connection(address: SocketAddr, request: &[u8], reply: &mut [u8]) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&address, IO_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(request)?;
    stream.read_exact(reply)?;
    if reply != request {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "echo reply differs from the request",
        ));
    }
    Ok(())
}

impl ConnectRateSummary {
    /// Returns the summary as a JSON object with the field names of this struct.
    pub fn to_json(&self) -> Value {
        json!({
            "connections": self.connections,
            "failures": self.failures,
            "seconds": self.seconds,
            "per_second": self.per_second,
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
        })
    }

    /// Parses the output of [`ConnectRateSummary::to_json`], or returns `None` when a field is
    /// missing.
    pub fn from_json(value: &Value) -> Option<ConnectRateSummary> {
        let float = |name: &str| value.get(name)?.as_f64();
        Some(ConnectRateSummary {
            connections: value.get("connections")?.as_u64()?,
            failures: value.get("failures")?.as_u64()?,
            seconds: float("seconds")?,
            per_second: float("per_second")?,
            p50_us: float("p50_us")?,
            p99_us: float("p99_us")?,
        })
    }
}

impl fmt::Display for ConnectRateSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections in {:.1} s ({:.0}/s, {} failed), µs per connection: p50 {:.1}  \
             p99 {:.1}",
            self.connections,
            self.seconds,
            self.per_second,
            self.failures,
            self.p50_us,
            self.p99_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// Echoes `connections` connections, one at a time, on a loopback listener.
    fn echo_server(connections: usize) -> (SocketAddr, thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            for stream in listener.incoming().take(connections) {
                let mut stream = stream.unwrap();
                let mut buf = [0u8; 256];
                loop {
                    let n = stream.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    stream.write_all(&buf[..n]).unwrap();
                }
            }
        });
        (address, server)
    }

    #[test]
    fn connect_rate_stops_at_max_connections() {
        let (address, server) = echo_server(50);
        let options = ConnectRateOptions {
            connect: address,
            duration: Duration::from_secs(10),
            max_connections: 50,
            size: 32,
        };
        let summary = connect_rate(&options).unwrap();
        server.join().unwrap();

        assert_eq!(summary.connections, 50);
        assert_eq!(summary.failures, 0);
        assert!(summary.per_second > 0.0);
        assert!(summary.p50_us <= summary.p99_us);
    }

    #[test]
    fn connect_rate_fails_without_server() {
        // Bind and drop a listener, so the port is very likely closed.
        let address = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let options = ConnectRateOptions {
            connect: address,
            duration: Duration::from_secs(5),
            max_connections: 1000,
            size: 32,
        };
        let err = connect_rate(&options).unwrap_err();
        assert!(err.to_string().contains("connections failed"), "{err}");
    }

    #[test]
    fn summary_json_round_trip() {
        let summary = ConnectRateSummary {
            connections: 1000,
            failures: 1,
            seconds: 2.0,
            per_second: 500.0,
            p50_us: 1800.5,
            p99_us: 4000.0,
        };
        assert_eq!(
            ConnectRateSummary::from_json(&summary.to_json()),
            Some(summary)
        );
    }
}
