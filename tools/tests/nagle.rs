//! TCP_NODELAY and Nagle's algorithm through netcon, with the kernel as the reference in the
//! same run: a Python client runs once through `netcon-ctl run --isolate` and once over the
//! kernel inside the topology's namespace, against the same kernel peer. With TCP_NODELAY,
//! small round trips stay near the kernel's. Without it, a small write waits for the ACK of
//! the one before, and the kernel peer delays that ACK (about 40 ms on Linux), as over the
//! kernel path.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{Finished, PEER_IP, PYTHON, Process, Topology, run_bounded, wait_for_listener};
use netcon_tools::topology::{isolated_netcon_command, require_root};

/// Serves every connection: reads SIZE bytes, replies with SIZE bytes, until EOF. The reply
/// leaves with TCP_NODELAY, so only the client's sending side is under test.
const SERVER: &str = r#"
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(16)
size = int(sys.argv[3])
def serve(conn):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        got = 0
        while got < size:
            chunk = conn.recv(size - got)
            if not chunk:
                return
            got += len(chunk)
        conn.sendall(b"r" * size)
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

/// Runs ROUNDS rounds against HOST PORT. Each round writes the given message sizes one
/// after another, waiting GAP seconds between writes, then reads their total back. With
/// "nodelay" it sets TCP_NODELAY first. Prints the number of rounds run and the median and
/// 90th percentile round time in µs.
const CLIENT: &str = r#"
import socket, sys, time
host, port, mode, rounds, gap = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
sizes = [int(size) for size in sys.argv[6:]]
conn = socket.create_connection((host, port), timeout=10)
if mode == "nodelay":
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
times = []
deadline = time.monotonic() + 60
for _ in range(rounds):
    if time.monotonic() > deadline:
        break
    start = time.perf_counter()
    for index, size in enumerate(sizes):
        if index and gap:
            time.sleep(gap)
        conn.sendall(b"q" * size)
    got = 0
    while got < sum(sizes):
        chunk = conn.recv(65536)
        if not chunk:
            sys.exit("the server closed the connection")
        got += len(chunk)
    times.append((time.perf_counter() - start) * 1e6)
times.sort()
print("rounds", len(times))
print("median", round(times[len(times) // 2]))
print("p90", round(times[len(times) * 9 // 10]))
"#;

/// The message size of the round-trip comparison, in bytes.
const MESSAGE: &str = "100";

/// How much slower than the kernel netcon's median round trip may be. Tests run debug builds,
/// where netcon measured 3.4–6.2× the kernel's median with this client on a loaded 2-core
/// machine. A round trip held up by a delayed ACK takes about 1000× as long.
const MAX_MEDIAN_RATIO: f64 = 10.0;

/// Held by each test while it measures, so the two do not compete for the 2 cores.
static MEASURING: Mutex<()> = Mutex::new(());

/// A round trip at or above this time counts as stalled by a delayed ACK.
const STALL: Duration = Duration::from_millis(20);

/// Figures one client run printed.
#[derive(Debug)]
struct Rounds {
    rounds: u64,
    median_us: u64,
    p90_us: u64,
}

impl Rounds {
    fn parse(run: &Finished) -> Rounds {
        let value = |key: &str| -> u64 {
            run.stdout
                .lines()
                .find_map(|line| line.strip_prefix(key)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {key:?} figure\n{run}"))
        };
        Rounds {
            rounds: value("rounds"),
            median_us: value("median"),
            p90_us: value("p90"),
        }
    }
}

/// The topology and a peer server reading `size`-byte messages on `port`.
struct Fixture {
    _server: Process,
    topology: Topology,
    port: u16,
}

impl Fixture {
    fn start(port: u16, size: &str) -> Fixture {
        let topology = Topology::start("ncnagle");
        let mut command = topology.netns.command(PYTHON);
        command.args(["-c", SERVER, PEER_IP, &port.to_string(), size]);
        let mut server = Process::spawn(command, "message server in the namespace");
        wait_for_listener(&topology.netns, port, &mut server);
        Fixture {
            _server: server,
            topology,
            port,
        }
    }

    /// Runs the client through netcon (`through_netcon`) or over the kernel in the
    /// namespace, and returns its figures.
    fn run(
        &self,
        through_netcon: bool,
        mode: &str,
        rounds: u32,
        gap: &str,
        sizes: &[&str],
    ) -> Rounds {
        let port = self.port.to_string();
        let rounds = rounds.to_string();
        let mut args = vec!["-c", CLIENT, PEER_IP, &port, mode, &rounds, gap];
        args.extend(sizes);
        let (mut command, label) = match through_netcon {
            true => (
                isolated_netcon_command(self.topology.socket(), PYTHON),
                "client through netcon",
            ),
            false => (
                self.topology.netns.command(PYTHON),
                "client over the kernel",
            ),
        };
        command.args(&args[..]);
        let run = run_bounded(command, label, Duration::from_secs(120));
        run.assert_success();
        let figures = Rounds::parse(&run);
        println!("{label}, {mode}, sizes {sizes:?}, gap {gap} s: {figures:?}");
        figures
    }
}

#[test]
fn nodelay_round_trips_near_kernel() {
    if !require_root("nodelay_round_trips_near_kernel") {
        return;
    }
    let _measuring = MEASURING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let fixture = Fixture::start(9600, MESSAGE);
    let kernel = fixture.run(false, "nodelay", 1000, "0", &[MESSAGE]);
    let netcon = fixture.run(true, "nodelay", 1000, "0", &[MESSAGE]);
    let ratio = netcon.median_us as f64 / kernel.median_us.max(1) as f64;
    println!(
        "median round trip of {MESSAGE} B with TCP_NODELAY: netcon {} µs, kernel {} µs, \
         ratio {ratio:.1}",
        netcon.median_us, kernel.median_us
    );

    assert_eq!(kernel.rounds, 1000, "the kernel run was cut short");
    assert_eq!(netcon.rounds, 1000, "the netcon run was cut short");
    let stall = STALL.as_micros() as u64;
    assert!(kernel.p90_us < stall, "the kernel path stalled: {kernel:?}");
    assert!(netcon.p90_us < stall, "netcon stalled: {netcon:?}");
    assert!(
        ratio <= MAX_MEDIAN_RATIO,
        "netcon's median round trip is {ratio:.1}× the kernel's (limit {MAX_MEDIAN_RATIO}×): \
         netcon {netcon:?}, kernel {kernel:?}"
    );
}

#[test]
fn nagle_holds_second_small_write() {
    if !require_root("nagle_holds_second_small_write") {
        return;
    }
    // Two 100-byte writes 2 ms apart, then one read of the 200-byte reply. The gap lets the
    // first write leave before the second is made: without it, netcon's worker often reads
    // both writes from the socketpair at once and sends them as one segment, so nothing
    // waits, where Linux sends the first at once and holds the second.
    let _measuring = MEASURING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let fixture = Fixture::start(9601, "200");
    let pair = [MESSAGE, MESSAGE];
    let mut medians = Vec::new();
    for mode in ["nagle", "nodelay"] {
        for through_netcon in [false, true] {
            let figures = fixture.run(through_netcon, mode, 30, "0.002", &pair);
            assert_eq!(figures.rounds, 30, "the run was cut short: {figures:?}");
            medians.push((mode, through_netcon, figures.median_us));
        }
    }

    let stall = STALL.as_micros() as u64;
    for (mode, through_netcon, median) in medians {
        let path = if through_netcon {
            "netcon"
        } else {
            "the kernel"
        };
        match mode {
            // The peer's delayed ACK holds the second write on both paths.
            "nagle" => assert!(
                median >= stall,
                "over {path}, the second write did not wait for an ACK (median {median} µs)"
            ),
            // With TCP_NODELAY the second write leaves at once.
            _ => assert!(
                median < stall,
                "over {path} with TCP_NODELAY, rounds stalled (median {median} µs)"
            ),
        }
    }
}
