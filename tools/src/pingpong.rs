//! `netcon-ctl pingpong`: measures TCP round trips against an echo server and summarises them
//! with an HDR histogram.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Round trips sent before measuring, so connection set-up and cold caches are not counted.
const WARMUP_ROUNDS: u64 = 100;

/// The largest round trip the histogram records exactly; longer ones are clamped to it.
const MAX_RECORDED: Duration = Duration::from_secs(10);

/// Settings of one `pingpong` run.
#[derive(Debug, Clone)]
pub struct PingpongOptions {
    /// The echo server's address.
    pub connect: SocketAddr,
    /// The number of measured round trips.
    pub rounds: u64,
    /// The message size in bytes.
    pub size: usize,
    /// The time after which the run stops even when not all rounds are done.
    pub max_duration: Duration,
}

/// Round-trip percentiles of one run, in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySummary {
    /// The measured round trips (fewer than requested when the time limit hit first).
    pub rounds: u64,
    /// The message size in bytes.
    pub size: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// Connects to the echo server with TCP_NODELAY and times `rounds` round trips of `size` bytes
/// each, after a warm-up.
///
/// Blocks until done or until `max_duration` passes. Returns an error when connecting, writing
/// or reading fails, or when the server closes the connection.
pub fn pingpong(options: &PingpongOptions) -> io::Result<LatencySummary> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&options.connect, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(MAX_RECORDED))?;

    let message = vec![0x5a_u8; options.size];
    let mut reply = vec![0u8; options.size];
    for _ in 0..WARMUP_ROUNDS {
        round_trip(&mut stream, &message, &mut reply)?;
    }

    let max_ns = MAX_RECORDED.as_nanos() as u64;
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, max_ns, 3).map_err(io::Error::other)?;
    for _ in 0..options.rounds {
        if started.elapsed() >= options.max_duration {
            break;
        }
        let sent = Instant::now();
        round_trip(&mut stream, &message, &mut reply)?;
        histogram.saturating_record(sent.elapsed().as_nanos() as u64);
    }
    if histogram.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no round trip within the time limit",
        ));
    }
    Ok(LatencySummary::from_histogram(&histogram, options.size))
}

fn round_trip(stream: &mut TcpStream, message: &[u8], reply: &mut [u8]) -> io::Result<()> {
    stream.write_all(message)?;
    stream.read_exact(reply)?;
    if reply != message {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "echo reply differs from message",
        ));
    }
    Ok(())
}

impl LatencySummary {
    fn from_histogram(histogram: &Histogram<u64>, size: usize) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencySummary {
            rounds: histogram.len(),
            size,
            p50_us: us(histogram.value_at_quantile(0.50)),
            p90_us: us(histogram.value_at_quantile(0.90)),
            p99_us: us(histogram.value_at_quantile(0.99)),
            p999_us: us(histogram.value_at_quantile(0.999)),
            max_us: us(histogram.max()),
        }
    }

    /// Returns the summary as a JSON object with the field names of this struct.
    pub fn to_json(&self) -> Value {
        json!({
            "rounds": self.rounds,
            "size": self.size,
            "p50_us": self.p50_us,
            "p90_us": self.p90_us,
            "p99_us": self.p99_us,
            "p999_us": self.p999_us,
            "max_us": self.max_us,
        })
    }

    /// Parses the output of [`LatencySummary::to_json`], or returns `None` when a field is
    /// missing.
    pub fn from_json(value: &Value) -> Option<LatencySummary> {
        let float = |name: &str| value.get(name)?.as_f64();
        Some(LatencySummary {
            rounds: value.get("rounds")?.as_u64()?,
            size: usize::try_from(value.get("size")?.as_u64()?).ok()?,
            p50_us: float("p50_us")?,
            p90_us: float("p90_us")?,
            p99_us: float("p99_us")?,
            p999_us: float("p999_us")?,
            max_us: float("max_us")?,
        })
    }
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} round trips of {} B, µs: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            self.rounds,
            self.size,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn pingpong_against_loopback_echo() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n]).unwrap();
            }
        });

        let options = PingpongOptions {
            connect: address,
            rounds: 200,
            size: 64,
            max_duration: Duration::from_secs(10),
        };
        let summary = pingpong(&options).unwrap();
        server.join().unwrap();

        assert_eq!(summary.rounds, 200);
        assert_eq!(summary.size, 64);
        assert!(summary.p50_us > 0.0);
        assert!(summary.p50_us <= summary.p99_us);
        assert!(summary.p99_us <= summary.max_us);
    }

    #[test]
    fn summary_json_round_trip() {
        let summary = LatencySummary {
            rounds: 10,
            size: 64,
            p50_us: 20.5,
            p90_us: 30.0,
            p99_us: 45.25,
            p999_us: 80.0,
            max_us: 120.0,
        };
        assert_eq!(LatencySummary::from_json(&summary.to_json()), Some(summary));
    }

    #[test]
    fn summary_json_missing_field() {
        assert_eq!(LatencySummary::from_json(&json!({"rounds": 1})), None);
    }
}
