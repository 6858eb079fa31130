//! OpenSSH through netcon: sshd as a server that ssh in the namespace logs in to with a key,
//! and ssh and sftp as clients of an sshd in the namespace. Neither prints a warning about the
//! socket options it sets (IP_TOS from IPQoS, TCP_NODELAY, SO_KEEPALIVE), and the TOS ssh
//! sets reaches the wire. sshd builds each session's environment anew, and the programs a
//! session runs stay on netcon all the same.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::loopback::LoopbackServer;
use common::{
    NETCON_IP, PEER_IP, PYTHON, Process, Topology, load_nft_rules, package_version, record_compat,
    run_bounded, sha256_file, wait_for_listener, wait_for_netcon_listener, write_random_file,
};
use netcon_tools::topology::{binary_path, isolated_netcon_command, netcon_command, require_root};

const SSHD: &str = "/usr/sbin/sshd";
const PORT: u16 = 2222;

/// How long a connection may take until sshd's banner arrives. sshd once took 15–20 s to
/// accept through the 2015 netcon.
const MAX_BANNER_WAIT: Duration = Duration::from_secs(2);

/// How long a whole key login with one command may take (key exchange included).
const MAX_LOGIN: Duration = Duration::from_secs(5);

/// Bytes moved each way by sftp.
const SFTP_FILE_LEN: u64 = 5 * 1024 * 1024;

/// A host key, a client key authorised for root, and an sshd_config, in a temporary directory.
struct SshFiles {
    dir: tempfile::TempDir,
}

impl SshFiles {
    /// Generates the keys and writes a config that listens on `listen` port [`PORT`].
    fn create(listen: &str) -> SshFiles {
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        for key in ["host_key", "client_key"] {
            let mut keygen = Command::new("ssh-keygen");
            keygen
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.path().join(key));
            run_bounded(keygen, "ssh-keygen", Duration::from_secs(20)).assert_success();
        }
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("cannot write authorized_keys");

        let path = |name: &str| dir.path().join(name).display().to_string();
        let config = format!(
            "Port {PORT}\nListenAddress {listen}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n\
             Subsystem sftp internal-sftp\n",
            path("host_key"),
            path("authorized_keys"),
            path("sshd.pid"),
        );
        std::fs::write(dir.path().join("sshd_config"), config).expect("cannot write sshd_config");
        // sshd needs its privilege separation directory, which the Debian service creates.
        std::fs::create_dir_all("/run/sshd").expect("cannot create /run/sshd");
        SshFiles { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    /// Returns the client options shared by ssh and sftp: this key only, no host key checks,
    /// no prompts, no user configuration.
    fn client_options(&self) -> Vec<String> {
        let key = self.dir.path().join("client_key");
        [
            "-F",
            "/dev/null",
            "-i",
            &key.display().to_string(),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// Returns the time from connecting to `addr`:[`PORT`] inside the namespace until sshd's
/// identification line arrives, and the line.
fn banner_wait(topology: &Topology, addr: &str) -> (Duration, String) {
    let script = format!("exec 3<>/dev/tcp/{addr}/{PORT} && read -r -t 10 line <&3 && echo $line");
    let mut probe = topology.netns.command("bash");
    probe.args(["-c", &script]);
    let started = Instant::now();
    let run = run_bounded(probe, "banner probe", Duration::from_secs(15));
    let waited = started.elapsed();
    run.assert_success();
    (waited, run.stdout.trim().to_owned())
}

#[test]
fn sshd_through_netcon_accepts_key_login() {
    if !require_root("sshd_through_netcon_accepts_key_login") {
        return;
    }
    let version = package_version("openssh-server");
    let topology = Topology::start("ncsshd");
    let files = SshFiles::create("0.0.0.0");

    let mut sshd = netcon_command(topology.socket(), SSHD);
    sshd.args(["-D", "-e", "-f"]).arg(files.config());
    let mut sshd = Process::spawn(sshd, "sshd through netcon");
    wait_for_netcon_listener(&topology.netns, PORT, &mut sshd, Duration::from_secs(15));

    for attempt in 1..=3 {
        let (waited, banner) = banner_wait(&topology, NETCON_IP);
        assert!(
            banner.starts_with("SSH-2.0-OpenSSH"),
            "connection {attempt}: unexpected banner {banner:?}"
        );
        assert!(
            waited < MAX_BANNER_WAIT,
            "connection {attempt}: sshd's banner took {waited:?}"
        );
    }

    for attempt in 1..=3 {
        let mut ssh = topology.netns.command("ssh");
        ssh.args(files.client_options())
            .args(["-p", &PORT.to_string(), &format!("root@{NETCON_IP}")])
            .args(["echo", "logged-in-through-netcon"]);
        let started = Instant::now();
        let login = run_bounded(ssh, "ssh in the namespace", Duration::from_secs(30));
        let took = started.elapsed();
        if !login.succeeded() {
            let (_, stderr) = sshd.output_so_far();
            panic!("login {attempt} failed\n{login}\nsshd stderr:\n{stderr}");
        }
        assert_eq!(login.stdout.trim(), "logged-in-through-netcon");
        assert!(took < MAX_LOGIN, "login {attempt} took {took:?}");
    }
    let (_, stderr) = sshd.output_so_far();
    assert_no_option_warnings("sshd through netcon", &stderr);
    record_compat("sshd", &version, "server", "pass");
}

/// The port of the peer's web server in the namespace.
const PEER_WEB_PORT: u16 = 9630;

/// The page the peer's web server serves.
const PEER_PAGE: &str = "served to the session through netcon";

/// Runs `command` in a session of the sshd that listens through netcon, as root with the
/// test's key, from ssh in the namespace.
fn run_in_session(topology: &Topology, files: &SshFiles, command: &str) -> common::Finished {
    let mut ssh = topology.netns.command("ssh");
    ssh.args(files.client_options())
        .args(["-p", &PORT.to_string(), &format!("root@{NETCON_IP}")])
        .arg(command);
    run_bounded(ssh, command, Duration::from_secs(30))
}

#[test]
fn sshd_session_programs_stay_on_netcon() {
    if !require_root("sshd_session_programs_stay_on_netcon") {
        return;
    }
    let topology = Topology::start("ncsshenv");
    let files = SshFiles::create("0.0.0.0");
    let site = tempfile::tempdir().expect("cannot create a temporary directory");
    std::fs::write(site.path().join("page"), format!("{PEER_PAGE}\n")).unwrap();
    let mut web = topology.netns.command(PYTHON);
    web.args(["-m", "http.server", "--bind", PEER_IP])
        .arg(PEER_WEB_PORT.to_string())
        .arg("--directory")
        .arg(site.path());
    let mut web = Process::spawn(web, "http.server in the namespace");
    wait_for_listener(&topology.netns, PEER_WEB_PORT, &mut web);
    let host = LoopbackServer::start();
    let preload = std::fs::canonicalize(binary_path("libnetcon_preload.so")).unwrap();
    let preload_entry = format!("LD_PRELOAD={}", preload.display());

    for isolate in [false, true] {
        let mut sshd = match isolate {
            true => isolated_netcon_command(topology.socket(), SSHD),
            false => netcon_command(topology.socket(), SSHD),
        };
        sshd.args(["-D", "-e", "-f"]).arg(files.config());
        let mut sshd = Process::spawn(sshd, "sshd through netcon");
        wait_for_netcon_listener(&topology.netns, PORT, &mut sshd, Duration::from_secs(15));

        // sshd gives the session an environment of its own making, which the preload adds
        // its variables to.
        let env = run_in_session(&topology, &files, "env");
        env.assert_success();
        let lines: Vec<&str> = env.stdout.lines().collect();
        for entry in [preload_entry.as_str(), "USER=root"] {
            assert!(
                lines.contains(&entry),
                "isolate {isolate}: no {entry}\n{env}"
            );
        }
        assert!(
            lines.iter().any(|line| line.starts_with("SSH_CONNECTION=")),
            "isolate {isolate}: not sshd's session environment\n{env}"
        );

        if isolate {
            // sshd's namespace has only loopback, so the peer is reachable through netcon
            // or not at all.
            let url = format!("http://{PEER_IP}:{PEER_WEB_PORT}/page");
            let curl = run_in_session(&topology, &files, &format!("curl -sS -m 10 {url}"));
            let (_, stderr) = sshd.output_so_far();
            assert!(
                curl.stdout.contains(PEER_PAGE),
                "the session's curl did not reach the peer\n{curl}\nsshd stderr:\n{stderr}"
            );
        } else {
            // Through netcon, 127.0.0.1 is netcon-dp's loopback, where nothing listens.
            let url = format!("http://127.0.0.1:{}/", host.port);
            let curl = run_in_session(&topology, &files, &format!("curl -sS -m 10 {url}"));
            assert!(curl.stderr.contains("curl: (7)"), "{curl}");
            assert_eq!(
                host.accepted(),
                0,
                "the session reached the host's server\n{curl}"
            );
        }
        drop(sshd);
    }
}

#[test]
fn ssh_and_sftp_through_netcon_reach_namespace_sshd() {
    if !require_root("ssh_and_sftp_through_netcon_reach_namespace_sshd") {
        return;
    }
    let version = package_version("openssh-client");
    let topology = Topology::start("ncssh");
    let files = SshFiles::create(PEER_IP);

    let mut sshd = topology.netns.command(SSHD);
    sshd.args(["-D", "-e", "-f"]).arg(files.config());
    let mut sshd = Process::spawn(sshd, "sshd in the namespace");
    wait_for_listener(&topology.netns, PORT, &mut sshd);

    let mut ssh = netcon_command(topology.socket(), "ssh");
    ssh.args(files.client_options())
        .args(["-p", &PORT.to_string(), &format!("root@{PEER_IP}")])
        .args(["echo", "remote-command-ran"]);
    let run = run_bounded(ssh, "ssh through netcon", Duration::from_secs(30));
    run.assert_success();
    assert_eq!(run.stdout.trim(), "remote-command-ran");

    let work = tempfile::tempdir().expect("cannot create a temporary directory");
    let local = work.path().join("local.bin");
    let remote = work.path().join("remote.bin");
    let fetched = work.path().join("fetched.bin");
    write_random_file(&local, SFTP_FILE_LEN);
    let batch = work.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} {}\nget {} {}\n",
            local.display(),
            remote.display(),
            remote.display(),
            fetched.display()
        ),
    )
    .expect("cannot write the sftp batch file");

    let mut sftp = netcon_command(topology.socket(), "sftp");
    sftp.args(files.client_options())
        .args(["-P", &PORT.to_string(), "-b"])
        .arg(&batch)
        .arg(format!("root@{PEER_IP}"));
    let run = run_bounded(sftp, "sftp through netcon", Duration::from_secs(60));
    run.assert_success();
    assert_same_content(&local, &remote, "uploaded");
    assert_same_content(&local, &fetched, "downloaded");
    record_compat("ssh, sftp", &version, "client", "pass");
}

/// Panics when a line of `stderr` mentions setsockopt or "Operation not supported", which is
/// how OpenSSH reports a socket option it could not set.
fn assert_no_option_warnings(program: &str, stderr: &str) {
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("setsockopt") || line.contains("Operation not supported"))
        .collect();
    assert!(
        warnings.is_empty(),
        "{program} warned about socket options:\n{}",
        warnings.join("\n")
    );
}

/// The DSCP of the TOS byte ssh sets for a session that runs a command: `throughput` (0x08),
/// the non-interactive half of IPQoS's default `lowdelay throughput` in ssh_config(5) of
/// OpenSSH 9.2 in Debian 12.
const SSH_BULK_DSCP: u8 = 0x08 >> 2;

/// Returns the packet count of counter `name` in the `sshmarks` table of `topology`.
fn counter_packets(topology: &Topology, name: &str) -> u64 {
    let mut nft = topology.netns.command("nft");
    nft.args(["list", "counter", "inet", "sshmarks", name]);
    let run = run_bounded(nft, "nft list counter", Duration::from_secs(10));
    run.assert_success();
    run.stdout
        .split_whitespace()
        .skip_while(|word| *word != "packets")
        .nth(1)
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in\n{}", run.stdout))
}

#[test]
fn ssh_sets_options_without_warnings() {
    if !require_root("ssh_sets_options_without_warnings") {
        return;
    }
    let topology = Topology::start("ncsshopt");
    let files = SshFiles::create(PEER_IP);
    let tap = topology.dataplane.options().tap.clone();
    // Packets ssh sends to sshd with the TOS it chose, from the kernel run (over the
    // namespace's loopback) and from the run through netcon (over the TAP).
    load_nft_rules(
        &topology.netns,
        &format!(
            "table inet sshmarks {{\n  counter kernel {{}}\n  counter netcon {{}}\n  \
             chain input {{\n    type filter hook input priority 0;\n    \
             iifname \"lo\" tcp dport {PORT} ip dscp {SSH_BULK_DSCP} counter name kernel\n    \
             iifname \"{tap}\" tcp dport {PORT} ip dscp {SSH_BULK_DSCP} counter name netcon\n  \
             }}\n}}\n"
        ),
    );

    let mut sshd = topology.netns.command(SSHD);
    sshd.args(["-D", "-e", "-f"]).arg(files.config());
    let mut sshd = Process::spawn(sshd, "sshd in the namespace");
    wait_for_listener(&topology.netns, PORT, &mut sshd);

    let ssh_args = |ssh: &mut Command| {
        // At DEBUG3, ssh also logs each TOS it sets, so the run shows the option was set.
        ssh.args(files.client_options())
            .args(["-o", "LogLevel=DEBUG3", "-p", &PORT.to_string()])
            .args([&format!("root@{PEER_IP}"), "echo", "session-ran"]);
    };
    let mut kernel_ssh = topology.netns.command("ssh");
    ssh_args(&mut kernel_ssh);
    let kernel = run_bounded(kernel_ssh, "ssh in the namespace", Duration::from_secs(30));
    kernel.assert_success();
    let mut netcon_ssh = netcon_command(topology.socket(), "ssh");
    ssh_args(&mut netcon_ssh);
    let netcon = run_bounded(netcon_ssh, "ssh through netcon", Duration::from_secs(30));
    netcon.assert_success();

    assert_eq!(netcon.stdout.trim(), "session-ran");
    for (run, name) in [
        (&kernel, "ssh on the kernel"),
        (&netcon, "ssh through netcon"),
    ] {
        assert!(
            run.stderr.contains("set_sock_tos: set socket"),
            "{name} did not log setting IP_TOS\n{run}"
        );
        assert!(
            run.stderr.contains("setting TCP_NODELAY"),
            "{name} did not log setting TCP_NODELAY\n{run}"
        );
        assert_no_option_warnings(name, &run.stderr);
    }
    let (_, sshd_stderr) = sshd.output_so_far();
    assert_no_option_warnings("sshd in the namespace", &sshd_stderr);

    let kernel_marked = counter_packets(&topology, "kernel");
    let netcon_marked = counter_packets(&topology, "netcon");
    println!("packets with DSCP {SSH_BULK_DSCP}: kernel {kernel_marked}, netcon {netcon_marked}");
    assert!(
        kernel_marked > 0,
        "the kernel run sent no packet with ssh's TOS"
    );
    assert!(
        netcon_marked > 0,
        "no packet through netcon carried ssh's TOS"
    );
}

/// Returns the CPU time (user and system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|err| panic!("cannot read /proc/{pid}/stat: {err}"));
    let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15, the 12th and 13th after the name.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Asserts that `copy` exists and has the content of `original`.
fn assert_same_content(original: &Path, copy: &Path, direction: &str) {
    assert!(
        copy.exists(),
        "the {direction} file {} is missing",
        copy.display()
    );
    assert_eq!(
        sha256_file(copy),
        sha256_file(original),
        "the {direction} file differs from the original"
    );
}

#[test]
fn sshd_idles_after_netcon_dp_stops() {
    if !require_root("sshd_idles_after_netcon_dp_stops") {
        return;
    }
    let Topology { dataplane, netns } = Topology::start("ncsshdstop");
    let files = SshFiles::create("0.0.0.0");
    let mut sshd = netcon_command(dataplane.socket_path(), SSHD);
    sshd.args(["-D", "-e", "-f"]).arg(files.config());
    let mut sshd = Process::spawn(sshd, "sshd through netcon");
    wait_for_netcon_listener(&netns, PORT, &mut sshd, Duration::from_secs(15));
    let pid = std::fs::read_to_string(files.dir.path().join("sshd.pid"))
        .expect("sshd wrote no pid file")
        .trim()
        .to_owned();

    dataplane.stop().expect("cannot stop netcon-dp");
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(&pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(&pid) - before;
    let (_, stderr) = sshd.output_so_far();
    // Clock ticks are 1/100 s on Linux: 10 ticks is a twentieth of the 2 s waited, and an
    // accept loop that spins (the 2015 netcon made sshd do that) uses far more.
    assert!(
        used < 10,
        "sshd used {used} ticks of CPU in 2 s after netcon-dp stopped\n{stderr}"
    );
    assert!(sshd.try_wait().is_none(), "sshd exited\n{stderr}");
    assert!(
        stderr.contains("accepts no more connections"),
        "the preload did not report the lost listener\n{stderr}"
    );
}
