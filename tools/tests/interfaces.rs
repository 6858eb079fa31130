//! The interface list of a program that runs through netcon: `getifaddrs`, `if_nameindex`,
//! `if_nametoindex` and `if_indextoname` show `lo` and `netcon0` with netcon's addresses and
//! MAC. The reference is a kernel interface made to match: a veth named `netcon0` with index
//! 2, netcon's MAC and addresses, in a namespace of its own. A C program, `hostname -I`,
//! Python and node (whose libuv calls getifaddrs) print the same through netcon, with and
//! without `--isolate`, as in that namespace.

mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{CProgram, Finished, NETCON_IP, PYTHON, Topology, run_bounded};
use netcon_tools::topology::{Netns, isolated_netcon_command, netcon_command, require_root};

/// Prints Python's view: the interface list, the two lookups, and the addresses
/// getaddrinfo returns for localhost with AI_ADDRCONFIG (sorted, as the order may differ).
const PYTHON_PROBE: &str = r#"
import socket
print("nameindex", socket.if_nameindex())
print("nametoindex", socket.if_nametoindex("netcon0"), socket.if_nametoindex("lo"))
print("indextoname", socket.if_indextoname(1), socket.if_indextoname(2))
infos = socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
print("getaddrinfo", sorted(info[4][0] for info in infos))
"#;

/// Prints node's `os.networkInterfaces()` as JSON.
const NODE_PROBE: &str = "console.log(JSON.stringify(require('os').networkInterfaces()))";

/// A namespace holding a kernel interface that looks like netcon's, and the namespace its
/// veth peer sits in.
struct KernelReference {
    netns: Netns,
    _peer: Netns,
}

impl KernelReference {
    /// Makes `netcon0` (index 2, MAC `mac`) with 10.77.0.2/24 (broadcast 10.77.0.255) and
    /// fd00::2/64, brings it up, and waits until it runs and has its link-local address.
    fn build(mac: &str, dump: &CProgram) -> KernelReference {
        let netns = Netns::create("ncifref").expect("cannot create the reference namespace");
        let peer = Netns::create("ncifpeer").expect("cannot create the peer namespace");
        let name = netns.name().to_owned();
        let steps: [&[&str]; 8] = [
            &["-n", &name, "link", "set", "lo", "up"],
            &[
                "-n",
                &name,
                "link",
                "add",
                "netcon0",
                "index",
                "2",
                "address",
                mac,
                "type",
                "veth",
                "peer",
                "name",
                "ncpeer",
                "netns",
                peer.name(),
            ],
            &[
                "netns",
                "exec",
                &name,
                "sysctl",
                "-qw",
                "net.ipv6.conf.netcon0.accept_dad=0",
            ],
            &[
                "-n",
                &name,
                "addr",
                "add",
                "10.77.0.2/24",
                "brd",
                "+",
                "dev",
                "netcon0",
            ],
            &[
                "-n",
                &name,
                "addr",
                "add",
                "fd00::2/64",
                "dev",
                "netcon0",
                "nodad",
            ],
            &["-n", peer.name(), "link", "set", "ncpeer", "up"],
            &["-n", &name, "link", "set", "netcon0", "up"],
            &["-n", &name, "link", "show", "netcon0"],
        ];
        for step in steps {
            let mut ip = Command::new("ip");
            ip.args(step);
            let run = run_bounded(ip, "ip", Duration::from_secs(10));
            assert!(run.succeeded(), "ip {} failed\n{run}", step.join(" "));
        }
        let reference = KernelReference { netns, _peer: peer };

        // Linux marks the veth running and adds its link-local address shortly after.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let run = reference.run(dump.program(), &[]);
            let ready = run.stdout.contains("netcon0 0x11043 inet6 fe80::");
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "netcon0 did not come up\n{run}");
            thread::sleep(Duration::from_millis(100));
        }
        reference
    }

    fn run(&self, program: &str, args: &[&str]) -> Finished {
        let mut command = self.netns.command(program);
        command.args(args);
        run_bounded(command, program, Duration::from_secs(30))
    }
}

/// Returns netcon's MAC, as the kernel peer learns it from ARP.
fn netcon_mac(topology: &Topology) -> String {
    let mut ping = topology.netns.command("ping");
    ping.args(["-c", "1", "-W", "5", NETCON_IP]);
    run_bounded(ping, "ping netcon", Duration::from_secs(10)).assert_success();
    let mut neighbour = Command::new("ip");
    neighbour.args(["-n", topology.netns.name(), "neigh", "show", NETCON_IP]);
    let run = run_bounded(neighbour, "ip neigh", Duration::from_secs(10));
    run.assert_success();
    let mut words = run.stdout.split_whitespace();
    words
        .find(|word| *word == "lladdr")
        .and_then(|_| words.next())
        .unwrap_or_else(|| panic!("no MAC for {NETCON_IP}\n{run}"))
        .to_owned()
}

/// Runs `program args` through netcon, with `--isolate` when asked.
fn through_netcon(topology: &Topology, isolate: bool, program: &str, args: &[&str]) -> Finished {
    let mut command = match isolate {
        true => isolated_netcon_command(topology.socket(), program),
        false => netcon_command(topology.socket(), program),
    };
    command.args(args);
    let label = format!("{program} through netcon");
    let run = run_bounded(command, &label, Duration::from_secs(30));
    run.assert_success();
    run
}

#[test]
fn interfaces_match_kernel_interface() {
    if !require_root("interfaces_match_kernel_interface") {
        return;
    }
    let topology = Topology::start("ncif");
    let dump = CProgram::compile("ifaddrs_dump", include_str!("programs/ifaddrs_dump.c"));
    let mac = netcon_mac(&topology);
    let reference = KernelReference::build(&mac, &dump);

    let probes: [(&str, Vec<&str>); 4] = [
        (dump.program(), vec![]),
        ("hostname", vec!["-I"]),
        (PYTHON, vec!["-c", PYTHON_PROBE]),
        ("node", vec!["-e", NODE_PROBE]),
    ];
    for (program, args) in &probes {
        let expected = reference.run(program, args);
        expected.assert_success();
        for isolate in [false, true] {
            let run = through_netcon(&topology, isolate, program, args);
            assert_eq!(
                run.stdout, expected.stdout,
                "{program} (isolate {isolate}) differs from the kernel's\n{run}"
            );
        }
    }

    // The list is netcon's, not the host's: its MAC and 10.77.0.2 are nowhere on the host.
    let expected = reference.run(dump.program(), &[]);
    assert!(
        expected
            .stdout
            .contains(&format!("packet 2 1 {mac} ff:ff:ff:ff:ff:ff"))
    );
    assert!(
        expected
            .stdout
            .contains("inet 10.77.0.2 255.255.255.0 10.77.0.255")
    );
}

#[test]
fn kernel_lists_without_dataplane() {
    if !require_root("kernel_lists_without_dataplane") {
        return;
    }
    // Without netcon-dp the preload passes every call to glibc, and freeifaddrs frees glibc's
    // list: the program sees the namespace's own interfaces and exits cleanly.
    let dump = CProgram::compile("ifaddrs_dump", include_str!("programs/ifaddrs_dump.c"));
    let netns = Netns::create("ncifnodp").expect("cannot create a namespace");
    let preload = netcon_tools::topology::binary_path("libnetcon_preload.so");
    let plain = run_bounded(
        netns.command(dump.program()),
        "dump",
        Duration::from_secs(30),
    );
    plain.assert_success();
    let mut preloaded = netns.command("env");
    preloaded
        .arg(format!("LD_PRELOAD={}", preload.display()))
        .arg("NETCON_SOCKET=/nonexistent/netcon.sock")
        .arg(dump.program());
    let run = run_bounded(preloaded, "dump with the preload", Duration::from_secs(30));
    run.assert_success();
    assert!(
        run.stderr.contains("netcon: cannot reach netcon-dp"),
        "{run}"
    );
    assert_eq!(run.stdout, plain.stdout, "{run}");
    assert!(run.stdout.starts_with("lo 0x8 packet 1 772"), "{run}");
}
