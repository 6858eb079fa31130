//! IPv6 through netcon: curl over IPv6 to a server in the namespace and a dual-stack server
//! through netcon reached over both families, and IPV6_V6ONLY, IPv4-mapped addresses and
//! shared ports compared with what the kernel does for the same program.

mod common;

use std::time::Duration;

use common::download::{assert_same_file, curl_args};
use common::{
    NETCON_IP, NETCON_IP6, PEER_IP6, PYTHON, Process, Topology, run_bounded, run_until_ready,
    wait_for_listener, write_random_file,
};
use netcon_tools::topology::{netcon_command, require_root};

const FILE_LEN: u64 = 10 * 1024 * 1024;
const PORT: u16 = 8086;

/// curl's exit codes for "could not connect" and "operation timed out".
const CURL_COULDNT_CONNECT: i32 = 7;
const CURL_TIMED_OUT: i32 = 28;

/// Exercises IPV6_V6ONLY, SO_DOMAIN, IPv4-mapped addresses and ports shared by the two
/// families over loopback, printing one line per step. Run under the kernel and through
/// netcon, the output must be the same.
const V6ONLY_PROBE: &str = r#"
import errno, select, socket

V6ONLY = (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
PORTS = iter(range(7711, 7730))
KEPT = []

def show(label, action):
    """Prints the result of `action`, or the errno name it failed with. Sockets it returns are
    kept open (closing one is not immediate through netcon), and not printed."""
    try:
        result = action()
        if isinstance(result, socket.socket):
            KEPT.append(result)
            result = None
        print(f"{label}: ok" + ("" if result is None else f" {result}"), flush=True)
    except OSError as e:
        print(f"{label}: {errno.errorcode.get(e.errno, e.errno)}", flush=True)

def listener(family, host, port, v6only=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    if v6only is not None:
        s.setsockopt(*V6ONLY, v6only)
    s.bind((host, port))
    s.listen(8)
    return s

def connect(family, host, port, v6only=None):
    c = socket.socket(family, socket.SOCK_STREAM)
    if v6only is not None:
        c.setsockopt(*V6ONLY, v6only)
    c.settimeout(5)
    c.connect((host, port))
    return c

def taken_by(label, listeners, family, host, port):
    """Connects and prints which listener accepted, with both ends' addresses."""
    def run():
        client = connect(family, host, port)
        ready, _, _ = select.select(list(listeners.values()), [], [], 5)
        names = [name for name, s in listeners.items() if s in ready]
        if not names:
            return "nobody accepted"
        conn, peer = listeners[names[0]].accept()
        domain = conn.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        result = (f"by {names[0]} domain {domain} peer {peer[0]} local {conn.getsockname()[0]}"
                  f" client local {client.getsockname()[0]} client peer {client.getpeername()[0]}")
        conn.close()
        client.close()
        return result
    show(label, run)

s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
show("AF_INET6 default v6only", lambda: s6.getsockopt(*V6ONLY))
show("AF_INET6 SO_DOMAIN", lambda: s6.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN))
for value in (1, 5, 0):
    show(f"set v6only {value}", lambda: s6.setsockopt(*V6ONLY, value))
    show(f"read v6only after {value}", lambda: s6.getsockopt(*V6ONLY))
show("AF_INET6 getsockname unbound", lambda: s6.getsockname()[:2])
s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
show("AF_INET SO_DOMAIN", lambda: s4.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN))
show("AF_INET get v6only", lambda: s4.getsockopt(*V6ONLY))
show("AF_INET set v6only", lambda: s4.setsockopt(*V6ONLY, 1))

shared = next(PORTS)
v6 = listener(socket.AF_INET6, "::", shared, v6only=1)
show("IPv4 listener on a v6-only port", lambda: listener(socket.AF_INET, "0.0.0.0", shared))
v4 = KEPT[-1]
show("set v6only after bind", lambda: v6.setsockopt(*V6ONLY, 0))
show("v6only after bind", lambda: v6.getsockopt(*V6ONLY))
both = {"v6only": v6, "ipv4": v4}
taken_by("shared port over IPv4", both, socket.AF_INET, "127.0.0.1", shared)
taken_by("shared port over IPv6", both, socket.AF_INET6, "::1", shared)
taken_by("shared port over mapped", both, socket.AF_INET6, "::ffff:127.0.0.1", shared)

dual_port = next(PORTS)
dual = listener(socket.AF_INET6, "::", dual_port, v6only=0)
show("IPv4 listener on a dual-stack port", lambda: listener(socket.AF_INET, "0.0.0.0", dual_port))
show("v6-only listener on a dual-stack port",
     lambda: listener(socket.AF_INET6, "::", dual_port, v6only=1))
taken_by("dual-stack over IPv4", {"dual": dual}, socket.AF_INET, "127.0.0.1", dual_port)
taken_by("dual-stack over IPv6", {"dual": dual}, socket.AF_INET6, "::1", dual_port)
show("dual-stack getsockname", lambda: dual.getsockname()[:2])

v6_alone = next(PORTS)
keep = listener(socket.AF_INET6, "::", v6_alone, v6only=1)
show("IPv4 to a v6-only listener", lambda: connect(socket.AF_INET, "127.0.0.1", v6_alone).close())
show("mapped to a v6-only listener",
     lambda: connect(socket.AF_INET6, "::ffff:127.0.0.1", v6_alone).close())
v4_alone = next(PORTS)
keep4 = listener(socket.AF_INET, "0.0.0.0", v4_alone)
show("IPv6 to an IPv4 listener", lambda: connect(socket.AF_INET6, "::1", v4_alone).close())
show("v6-only socket to a mapped address",
     lambda: connect(socket.AF_INET6, "::ffff:127.0.0.1", v4_alone, v6only=1).close())
show("v6-only socket bound to a mapped address",
     lambda: listener(socket.AF_INET6, "::ffff:127.0.0.1", next(PORTS), v6only=1))
mapped_port = next(PORTS)
mapped = listener(socket.AF_INET6, "::ffff:127.0.0.1", mapped_port)
show("mapped listener getsockname", lambda: mapped.getsockname()[:2])
taken_by("mapped listener over IPv4", {"mapped": mapped}, socket.AF_INET, "127.0.0.1",
         mapped_port)
show("IPv6 to a mapped listener", lambda: connect(socket.AF_INET6, "::1", mapped_port).close())
loop6 = next(PORTS)
only_loopback = listener(socket.AF_INET6, "::1", loop6)
show("IPv4 listener beside ::1", lambda: listener(socket.AF_INET, "0.0.0.0", loop6))
"#;

/// Creates a directory with a random file of `FILE_LEN` bytes named `file.bin`.
fn served_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let file = dir.path().join("file.bin");
    write_random_file(&file, FILE_LEN);
    (dir, file)
}

#[test]
fn curl_ipv6_to_namespace_server() {
    if !require_root("curl_ipv6_to_namespace_server") {
        return;
    }
    let topology = Topology::start("ncv6curl");
    let (served_dir, served) = served_file();
    let download_dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let received = download_dir.path().join("download.bin");

    let mut server_command = topology.netns.command(PYTHON);
    server_command
        .args(["-m", "http.server", "--bind", PEER_IP6, &PORT.to_string()])
        .arg("--directory")
        .arg(served_dir.path());
    let mut server = Process::spawn(server_command, "http.server on fd00::1 in the namespace");
    wait_for_listener(&topology.netns, PORT, &mut server);

    let url = format!("http://[{PEER_IP6}]:{PORT}/file.bin");
    let mut curl = netcon_command(topology.socket(), "curl");
    curl.args(curl_args(&["-6", "-g"], &url, &received));
    curl.args(["-w", "%{local_ip} %{remote_ip}"]);
    let download = run_bounded(curl, "curl -6 through netcon", Duration::from_secs(90));

    assert_same_file(&served, &received, FILE_LEN, &download, &server);
    assert_eq!(
        download.stdout.trim(),
        format!("{NETCON_IP6} {PEER_IP6}"),
        "curl's local and remote addresses\n{download}"
    );
}

#[test]
fn dual_stack_server_serves_both_families() {
    if !require_root("dual_stack_server_serves_both_families") {
        return;
    }
    let topology = Topology::start("ncv6serve");
    let (served_dir, served) = served_file();
    let download_dir = tempfile::tempdir().expect("cannot create a temporary directory");

    // http.server binds `::` with IPV6_V6ONLY cleared, as most dual-stack servers do.
    let mut server_command = netcon_command(topology.socket(), PYTHON);
    server_command
        .args(["-m", "http.server", "--bind", "::", &PORT.to_string()])
        .arg("--directory")
        .arg(served_dir.path());
    let mut server = Process::spawn(server_command, "http.server on :: through netcon");

    for (host, family) in [
        (format!("[{NETCON_IP6}]"), "-6"),
        (NETCON_IP.to_owned(), "-4"),
    ] {
        let received = download_dir.path().join(format!("download{family}.bin"));
        let url = format!("http://{host}:{PORT}/file.bin");
        // The listener lives in netcon's stack, where `ss` cannot see it, so curl is retried
        // until it connects.
        let download = run_until_ready(
            || {
                let mut curl = topology.netns.command("curl");
                curl.args(curl_args(&["-6", "-g"], &url, &received));
                curl.arg(family);
                curl
            },
            &format!("curl {family} in the namespace"),
            Duration::from_secs(90),
            Duration::from_secs(15),
            |run| matches!(run.code(), Some(CURL_COULDNT_CONNECT | CURL_TIMED_OUT)),
        );
        assert_same_file(&served, &received, FILE_LEN, &download, &server);
    }

    // http.server logs each request with the client's address as its socket reports it.
    let (_, stderr) = server.output_so_far();
    assert!(
        stderr.contains(&format!("{PEER_IP6} - -")),
        "no request logged from {PEER_IP6}\n{stderr}"
    );
    assert!(
        stderr.contains("::ffff:10.77.0.1 - -"),
        "the IPv4 client was not logged as ::ffff:10.77.0.1\n{stderr}"
    );
    assert!(server.try_wait().is_none(), "http.server exited\n{stderr}");
}

#[test]
fn v6only_semantics_match_kernel() {
    if !require_root("v6only_semantics_match_kernel") {
        return;
    }
    let topology = Topology::start("ncv6only");

    // The kernel's results, from the namespace (only its loopback is used).
    let mut kernel = topology.netns.command(PYTHON);
    kernel.args(["-c", V6ONLY_PROBE]);
    let kernel = run_bounded(kernel, "probe under the kernel", Duration::from_secs(60));
    kernel.assert_success();

    let mut netcon = netcon_command(topology.socket(), PYTHON);
    netcon.args(["-c", V6ONLY_PROBE]);
    let netcon = run_bounded(netcon, "probe through netcon", Duration::from_secs(60));
    netcon.assert_success();

    let expected: Vec<&str> = kernel.stdout.lines().collect();
    let actual: Vec<&str> = netcon.stdout.lines().collect();
    for (kernel_line, netcon_line) in expected.iter().zip(&actual) {
        assert_eq!(netcon_line, kernel_line, "netcon differs from the kernel");
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "netcon printed {} lines, the kernel {}\nnetcon:\n{}\nkernel:\n{}",
        actual.len(),
        expected.len(),
        netcon.stdout,
        kernel.stdout
    );

    // Checks on the kernel's output itself, so a change of the probe cannot make the
    // comparison vacuous.
    for line in [
        "AF_INET6 default v6only: ok 0",
        "AF_INET6 SO_DOMAIN: ok 10",
        "read v6only after 5: ok 1",
        // Linux fails getting an IPv6 option on an IPv4 socket with EOPNOTSUPP, which Python
        // names ENOTSUP, and setting one with ENOPROTOOPT.
        "AF_INET get v6only: ENOTSUP",
        "AF_INET set v6only: ENOPROTOOPT",
        "IPv4 listener on a v6-only port: ok",
        "set v6only after bind: EINVAL",
        "IPv4 listener on a dual-stack port: EADDRINUSE",
        "IPv4 to a v6-only listener: ECONNREFUSED",
        "IPv6 to an IPv4 listener: ECONNREFUSED",
        "v6-only socket to a mapped address: ENETUNREACH",
    ] {
        assert!(
            expected.contains(&line),
            "the kernel did not print {line:?}\n{}",
            kernel.stdout
        );
    }
    for line in [
        "shared port over IPv4: ok by ipv4 domain 2 peer 127.0.0.1",
        "shared port over IPv6: ok by v6only domain 10 peer ::1",
        "dual-stack over IPv4: ok by dual domain 10 peer ::ffff:127.0.0.1",
    ] {
        assert!(
            expected.iter().any(|printed| printed.starts_with(line)),
            "the kernel did not print {line:?}\n{}",
            kernel.stdout
        );
    }
}
