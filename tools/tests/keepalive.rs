//! TCP keepalive through netcon: with SO_KEEPALIVE and short TCP_KEEPIDLE/INTVL/CNT, a peer
//! that vanishes (its packets dropped with nftables) is detected at about the configured time,
//! and a healthy idle connection outlives that time. The client runs with
//! `netcon-ctl run --isolate`, so a socket that escaped netcon would fail instead. TCP_USER_TIMEOUT
//! without keepalive cuts a connection whose sent data goes unacknowledged, never an idle one.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{PEER_IP, PYTHON, Process, Topology, start_socat_echo, wait_for_stdout};
use netcon_tools::topology::{isolated_netcon_command, require_root};

const ECHO_PORT: u16 = 7500;

/// Connects with keepalive (idle 1 s, interval 1 s, 2 probes: the peer is declared gone about
/// 3 s after the last packet from it), echoes once, prints "connected", then waits for data
/// for up to 30 s and prints how it ended and after how many seconds.
const KEEPALIVE_CLIENT: &str = r#"
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])))
conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
conn.sendall(b"x")
assert conn.recv(1) == b"x"
print("connected", flush=True)
idle = float(sys.argv[3])
conn.settimeout(idle if idle > 0 else 30)
start = time.monotonic()
try:
    data = conn.recv(1)
    print(f"data {data!r} after {time.monotonic() - start:.1f}", flush=True)
except socket.timeout:
    conn.sendall(b"y")
    print(f"alive {conn.recv(1)!r} after {time.monotonic() - start:.1f}", flush=True)
except OSError as err:
    print(f"error {err.errno} after {time.monotonic() - start:.1f}", flush=True)
"#;

/// Connects without keepalive, sets TCP_USER_TIMEOUT to 2 s, echoes once and prints
/// "connected". Then stays idle for IDLE seconds, sends a byte and waits up to 30 s for the
/// socket to turn readable, as event loops do. Prints SO_ERROR as "error N" or the echo as
/// "data", with the seconds since the send (the kernel prints "error 110" for a vanished peer).
const USER_TIMEOUT_CLIENT: &str = r#"
import select, socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])))
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 2000)
conn.sendall(b"x")
assert conn.recv(1) == b"x"
print("connected", flush=True)
time.sleep(float(sys.argv[3]))
start = time.monotonic()
conn.sendall(b"y")
select.select([conn], [], [], 30)
error = conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
if error:
    print(f"error {error} after {time.monotonic() - start:.1f}", flush=True)
else:
    print(f"data {conn.recv(1)!r} after {time.monotonic() - start:.1f}", flush=True)
"#;

/// Makes the peer vanish: from now on the namespace drops everything on the TAP.
fn vanish_peer(topology: &Topology) {
    let tap = topology.dataplane.options().tap.clone();
    let rules = format!(
        "table inet vanish {{ chain input {{ type filter hook input priority 0; iifname \"{tap}\" drop; }}; \
         chain output {{ type filter hook output priority 0; oifname \"{tap}\" drop; }}; }}"
    );
    let mut nft = topology.netns.command("nft");
    nft.args(["-f", "-"]);
    let mut nft = nft
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft runs");
    nft.stdin
        .take()
        .expect("piped")
        .write_all(rules.as_bytes())
        .expect("rules written");
    assert!(
        nft.wait().expect("nft exits").success(),
        "nft rejected the rules"
    );
}

fn seconds_after(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .expect("seconds at line end")
}

/// A client through netcon (with `--isolate`) and the echo peer it talks to.
struct Scenario {
    client: Process,
    _echo: Process,
    topology: Topology,
}

impl Scenario {
    /// Starts the echo peer in a namespace named after `prefix`, then `script` as a client
    /// that stays idle for `idle` seconds (the scripts above take that argument).
    fn start(prefix: &str, script: &str, idle: &str, label: &str) -> Scenario {
        let topology = Topology::start(prefix);
        let echo = start_socat_echo(&topology, ECHO_PORT);
        let mut client = isolated_netcon_command(topology.socket(), PYTHON);
        client.args(["-c", script, PEER_IP, &ECHO_PORT.to_string(), idle]);
        Scenario {
            client: Process::spawn(client, label),
            _echo: echo,
            topology,
        }
    }

    /// Makes the peer vanish once the client is connected, and returns the client's result
    /// line.
    fn result_after_vanishing(&self) -> String {
        wait_for_stdout(&self.client, "connected", Duration::from_secs(15));
        vanish_peer(&self.topology);
        let output = wait_for_stdout(&self.client, "after", Duration::from_secs(20));
        output.lines().last().expect("a result line").to_string()
    }

    /// Waits for the client to exit on its own and returns its result line.
    fn result_at_exit(self) -> String {
        let run = self.client.finish(Duration::from_secs(30));
        run.assert_success();
        run.stdout.lines().last().unwrap_or_default().to_string()
    }
}

#[test]
fn keepalive_detects_vanished_peer() {
    if !require_root("keepalive_detects_vanished_peer") {
        return;
    }
    let label = "keepalive client through netcon";
    let scenario = Scenario::start("nckeep", KEEPALIVE_CLIENT, "0", label);
    let line = scenario.result_after_vanishing();
    assert!(
        line.starts_with("error"),
        "the connection should fail: {line}"
    );
    let seconds = seconds_after(&line);
    assert!(
        (2.0..=8.0).contains(&seconds),
        "detected after {seconds} s, configured ~3 s: {line}"
    );
}

#[test]
fn keepalive_keeps_healthy_idle_connection() {
    if !require_root("keepalive_keeps_healthy_idle_connection") {
        return;
    }
    // Idle for 6 s, twice the time after which a silent peer would be declared gone.
    let label = "keepalive client through netcon";
    let line = Scenario::start("nckeepok", KEEPALIVE_CLIENT, "6", label).result_at_exit();
    assert!(
        line.starts_with("alive b'y'"),
        "the idle connection should survive: {line}"
    );
}

#[test]
fn user_timeout_cuts_unacknowledged_data() {
    if !require_root("user_timeout_cuts_unacknowledged_data") {
        return;
    }
    // The client sends 3 s after connecting; the peer is gone well before that.
    let label = "TCP_USER_TIMEOUT client through netcon";
    let scenario = Scenario::start("ncusert", USER_TIMEOUT_CLIENT, "3", label);
    let line = scenario.result_after_vanishing();
    assert!(
        line.starts_with(&format!("error {} ", libc::ETIMEDOUT)),
        "the unacknowledged send should fail with ETIMEDOUT in SO_ERROR: {line}"
    );
    let seconds = seconds_after(&line);
    assert!(
        (1.5..=8.0).contains(&seconds),
        "failed {seconds} s after the send, TCP_USER_TIMEOUT is 2 s: {line}"
    );
}

#[test]
fn user_timeout_spares_idle_connection() {
    if !require_root("user_timeout_spares_idle_connection") {
        return;
    }
    // Idle for 5 s, more than twice TCP_USER_TIMEOUT, with nothing unacknowledged.
    let label = "TCP_USER_TIMEOUT client through netcon";
    let line = Scenario::start("ncuserok", USER_TIMEOUT_CLIENT, "5", label).result_at_exit();
    assert!(
        line.starts_with("data b'y'"),
        "the idle connection should survive: {line}"
    );
}
