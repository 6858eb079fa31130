//! Several netcon-dp instances side by side on one bridge, each run by its own unprivileged
//! user with its own TAP, address, control socket and workers. Programs behind one instance
//! reach programs behind another by address, with no kernel TCP on either end. nginx serves
//! curl and wrk, redis serves redis-benchmark, and sshd serves an sftp session. An instance
//! run as root adds its own TAP to the bridge (`--bridge`). A last test compares
//! instance-to-instance throughput with one and two workers to the kernel path.

mod common;
mod segment;

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{Process, run_bounded, sha256_file, wait_for_connect, write_random_file};
use netcon_tools::topology::{Netns, binary_path, require_root};
use segment::{Instance, InstanceOptions, Segment, User, UserDir};

const NGINX: &str = "/usr/sbin/nginx";
const HTTP_PORT: u16 = 8080;
const REDIS_PORT: u16 = 6379;
const SSH_PORT: u16 = 2222;

/// The large download: big enough to cross many windows and both workers' queues.
const DOWNLOAD_LEN: u64 = 64 * 1024 * 1024;

/// The file each way over sftp.
const SFTP_LEN: u64 = 4 * 1024 * 1024;

const WRK_SECONDS: u32 = 10;
const WRK_CONNECTIONS: u32 = 16;

/// Requests per redis-benchmark test.
const REDIS_REQUESTS: u32 = 20_000;

/// How long a server behind an instance gets to accept connections.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(15);

/// iperf3 seconds per path in the throughput comparison, unless `NETCON_INSTANCE_SECONDS`
/// sets another.
const DEFAULT_THROUGHPUT_SECONDS: u32 = 3;

/// Runs this file's tests one at a time: together they would share 2 cores three ways, which
/// would slow redis and wrk and make the throughput figures meaningless.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serialize() -> MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the next test may still run.
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start(segment: &Segment, user: &User, host: u8, workers: usize) -> Instance {
    Instance::start(segment, user, &InstanceOptions { host, workers })
}

/// Waits until a connection from the segment's kernel side to `ip`:`port` succeeds, so the
/// server behind an instance listens (its listener is in netcon's stack, where `ss` cannot
/// see it). Panics when `server` exits first or after 15 s.
fn wait_for_port(segment: &Segment, ip: &str, port: u16, server: &mut Process) {
    wait_for_connect(|| segment.command("bash"), ip, port, server, LISTEN_TIMEOUT);
}

/// Writes an nginx configuration that serves `root` on [`HTTP_PORT`] with all its paths in
/// `home`, so nginx runs as an unprivileged user.
fn write_nginx_config(home: &UserDir, root: &Path) -> std::path::PathBuf {
    let dir = home.path().display();
    let config = format!(
        "daemon off;\nmaster_process on;\nworker_processes 2;\npid {dir}/nginx.pid;\n\
         error_log {dir}/error.log;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n\
         proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n\
         uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
         server {{ listen 0.0.0.0:{HTTP_PORT}; root {}; }}\n}}\n",
        root.display()
    );
    home.write("nginx.conf", config)
}

/// Parses wrk's report into (requests, socket errors, non-2xx/3xx responses).
fn parse_wrk(output: &str) -> (u64, u64, u64) {
    let (mut requests, mut errors, mut non_success) = (0, 0, 0);
    for line in output.lines().map(str::trim) {
        if let Some((count, _)) = line.split_once(" requests in ") {
            requests = count.trim().parse().unwrap_or(0);
        } else if let Some(counts) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors = counts
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_success = count.trim().parse().unwrap_or(u64::MAX);
        }
    }
    (requests, errors, non_success)
}

/// nginx as `nobody` behind one instance; curl and wrk as `daemon` behind another.
#[test]
fn two_users_nginx_to_curl_and_wrk() {
    if !require_root("two_users_nginx_to_curl_and_wrk") {
        return;
    }
    let _serial = serialize();
    let segment = Segment::create("ncpair");
    let (nobody, daemon) = (User::lookup("nobody"), User::lookup("daemon"));
    let server = start(&segment, &nobody, 11, 2);
    let client = start(&segment, &daemon, 12, 2);
    assert_ne!(server.mac(), client.mac(), "the two instances share a MAC");

    let server_home = UserDir::create(&nobody);
    let root = server_home.path().join("www");
    server_home.create_dirs(&root);
    server_home.write("www/index.html", "served through netcon\n".repeat(50));
    write_random_file(&root.join("large"), DOWNLOAD_LEN);
    server_home.hand_over(&root.join("large"));
    let config = write_nginx_config(&server_home, &root);

    let mut nginx = server.command(server_home.path(), NGINX);
    nginx.arg("-e").arg(server_home.path().join("error.log"));
    nginx
        .arg("-p")
        .arg(server_home.path())
        .arg("-c")
        .arg(&config);
    let mut nginx = Process::spawn(nginx, "nginx as nobody through netcon");
    wait_for_port(&segment, server.ip(), HTTP_PORT, &mut nginx);

    // The large download, checksummed.
    let client_home = UserDir::create(&daemon);
    let fetched = client_home.path().join("large");
    let mut curl = client.command(client_home.path(), "curl");
    curl.args(["-sS", "--fail", "-o"])
        .arg(&fetched)
        .arg(format!("http://{}:{HTTP_PORT}/large", server.ip()));
    let started = Instant::now();
    let run = run_bounded(curl, "curl as daemon", Duration::from_secs(120));
    let elapsed = started.elapsed();
    run.assert_success();
    assert_eq!(
        sha256_file(&fetched),
        sha256_file(&root.join("large")),
        "the download differs from the file nginx served"
    );
    println!(
        "downloaded {} MiB instance to instance in {elapsed:.2?} ({:.2} Gbit/s)",
        DOWNLOAD_LEN >> 20,
        DOWNLOAD_LEN as f64 * 8.0 / elapsed.as_secs_f64() / 1e9
    );

    // wrk for 10 s: no socket errors, no failed responses.
    let mut wrk = client.command(client_home.path(), "wrk");
    wrk.args([
        "-t2",
        &format!("-c{WRK_CONNECTIONS}"),
        &format!("-d{WRK_SECONDS}s"),
    ])
    .args(["--timeout", "10s"])
    .arg(format!("http://{}:{HTTP_PORT}/index.html", server.ip()));
    let timeout = Duration::from_secs(u64::from(WRK_SECONDS) + 30);
    let run = run_bounded(wrk, "wrk as daemon", timeout);
    run.assert_success();
    let (requests, errors, non_success) = parse_wrk(&run.stdout);
    let error_log = std::fs::read_to_string(server_home.path().join("error.log"));
    assert!(requests > 0, "wrk completed no request\n{run}");
    assert_eq!(
        errors, 0,
        "wrk saw socket errors\n{run}\nnginx: {error_log:?}"
    );
    assert_eq!(non_success, 0, "wrk saw failed responses\n{run}");
    println!("wrk, {WRK_CONNECTIONS} connections, {WRK_SECONDS} s: {requests} requests");

    // The bridge learnt each stack's MAC on that stack's own TAP.
    let learnt = segment.learnt_macs();
    for instance in [&server, &client] {
        let entry = (instance.mac(), instance.tap().to_owned());
        assert!(
            learnt.contains(&entry),
            "the bridge has not learnt {entry:?}: {learnt:?}"
        );
    }
}

/// netcon-dp run as root creates its TAP, moves it into the segment's namespace and adds it to
/// the bridge itself (`--netns` with `--bridge`), and a kernel client on the segment reaches a
/// server behind it.
#[test]
fn root_instance_joins_bridge() {
    if !require_root("root_instance_joins_bridge") {
        return;
    }
    let _serial = serialize();
    let segment = Segment::create("ncbridge");
    let tap = segment::unique_tap_name();
    let dir = common::shared_temp_dir();
    let socket = dir.path().join("control.sock");
    let ip = format!("{}.14", segment::SUBNET);
    let mut dataplane = Command::new(binary_path("netcon-dp"));
    dataplane
        .args(["--tap", &tap, "--netns", segment.netns().name()])
        .args([
            "--bridge",
            segment::BRIDGE,
            "--address",
            &format!("{ip}/24"),
        ])
        .args(["--workers", "2", "--socket"])
        .arg(&socket);
    let dataplane = Process::spawn(dataplane, "netcon-dp as root with --bridge");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dataplane.output_so_far().0.contains("netcon-dp ready") {
        assert!(
            Instant::now() < deadline,
            "netcon-dp is not ready: {:?}",
            dataplane.output_so_far()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut link = segment.command("ip");
    link.args(["-o", "link", "show", "dev", &tap]);
    let link = run_bounded(link, "ip link show", Duration::from_secs(5));
    link.assert_success();
    let master = format!("master {}", segment::BRIDGE);
    assert!(
        link.stdout.contains(&master),
        "{tap} is not a port of the bridge\n{link}"
    );
    assert!(link.stdout.contains(",UP"), "{tap} is not up\n{link}");

    let root = dir.path().join("www");
    std::fs::create_dir(&root).expect("cannot create the document root");
    write_random_file(&root.join("blob"), 4 * 1024 * 1024);
    // The server runs in a namespace holding only loopback, so only netcon can carry it.
    let apps = Netns::create("ncapps").expect("cannot create a namespace for the server");
    let netcon_ctl = binary_path("netcon-ctl");
    let mut server = apps.command(netcon_ctl.to_str().expect("the binary path is UTF-8"));
    server
        .arg("run")
        .arg("--socket")
        .arg(&socket)
        .args([
            "--",
            common::PYTHON,
            "-m",
            "http.server",
            "--bind",
            "0.0.0.0",
            "8002",
        ])
        .arg("--directory")
        .arg(&root);
    let mut server = Process::spawn(server, "web server through netcon-dp with --bridge");
    wait_for_port(&segment, &ip, 8002, &mut server);

    let fetched = dir.path().join("fetched");
    let mut curl = segment.command("curl");
    curl.args(["-sS", "--fail", "-o"])
        .arg(&fetched)
        .arg(format!("http://{ip}:8002/blob"));
    run_bounded(
        curl,
        "curl in the segment's namespace",
        Duration::from_secs(60),
    )
    .assert_success();
    assert_eq!(sha256_file(&fetched), sha256_file(&root.join("blob")));
}

/// Writes an sshd configuration for an sshd run as its own user, with key login only and the
/// in-process sftp server, because system users have no login shell. It uses PAM, because
/// sshd 9.2 without PAM treats the `*` password of Debian's system users as a locked account.
fn write_sshd_config(home: &UserDir) -> std::path::PathBuf {
    let dir = home.path().display();
    let config = format!(
        "Port {SSH_PORT}\nListenAddress 0.0.0.0\nHostKey {dir}/host_key\n\
         AuthorizedKeysFile {dir}/authorized_keys\nPidFile {dir}/sshd.pid\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM yes\n\
         StrictModes no\nUseDNS no\nSubsystem sftp internal-sftp\nForceCommand internal-sftp\n"
    );
    home.write("sshd_config", config)
}

/// Runs `ssh-keygen` as `user` for a new ed25519 key at `path`.
fn generate_key(user: &User, path: &Path) {
    let mut keygen = user.command("ssh-keygen");
    keygen
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path);
    run_bounded(keygen, "ssh-keygen", Duration::from_secs(20)).assert_success();
}

/// Three instances of three users: redis and sshd behind the first, redis-benchmark behind the
/// second, an sftp session behind the third.
#[test]
fn three_instances_redis_and_ssh() {
    if !require_root("three_instances_redis_and_ssh") {
        return;
    }
    let _serial = serialize();
    let segment = Segment::create("nctrio");
    let users = [
        User::lookup("nobody"),
        User::lookup("daemon"),
        User::lookup("bin"),
    ];
    let servers = start(&segment, &users[0], 11, 2);
    let benchmark = start(&segment, &users[1], 12, 1);
    let shell = start(&segment, &users[2], 13, 2);
    let macs = [servers.mac(), benchmark.mac(), shell.mac()];
    assert!(
        macs[0] != macs[1] && macs[1] != macs[2] && macs[0] != macs[2],
        "instances share a MAC: {macs:?}"
    );

    // redis as nobody behind the first instance.
    let server_home = UserDir::create(&users[0]);
    let mut redis = servers.command(server_home.path(), "redis-server");
    redis
        .args(["--port", &REDIS_PORT.to_string(), "--bind", "0.0.0.0"])
        .args(["--protected-mode", "no", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(server_home.path());
    let mut redis = Process::spawn(redis, "redis-server as nobody through netcon");
    wait_for_port(&segment, servers.ip(), REDIS_PORT, &mut redis);

    // sshd as nobody behind the same instance.
    generate_key(&users[0], &server_home.path().join("host_key"));
    let config = write_sshd_config(&server_home);
    let mut sshd = servers.command(server_home.path(), "/usr/sbin/sshd");
    sshd.args(["-D", "-e", "-f"]).arg(&config);
    let mut sshd = Process::spawn(sshd, "sshd as nobody through netcon");

    // redis-benchmark as daemon behind the second instance.
    let benchmark_home = UserDir::create(&users[1]);
    let mut run = benchmark.command(benchmark_home.path(), "redis-benchmark");
    run.args(["-h", servers.ip(), "-p", &REDIS_PORT.to_string()])
        .args([
            "-n",
            &REDIS_REQUESTS.to_string(),
            "-c",
            "20",
            "-t",
            "set,get",
            "-q",
        ]);
    let run = run_bounded(run, "redis-benchmark as daemon", Duration::from_secs(120));
    run.assert_success();
    for test in ["SET: ", "GET: "] {
        // -q rewrites a progress line with '\r' and ends each test with its rate.
        let rate = run.stdout.split(['\r', '\n']).any(|part| {
            part.trim_start().starts_with(test) && part.contains("requests per second")
        });
        assert!(rate, "redis-benchmark reported no {test:?} rate\n{run}");
    }
    let rates: Vec<&str> = run
        .stdout
        .split(['\r', '\n'])
        .filter(|part| part.contains("requests per second"))
        .map(str::trim)
        .collect();
    println!(
        "redis-benchmark, {REDIS_REQUESTS} requests each: {}",
        rates.join("; ")
    );

    // An sftp session as bin behind the third instance: a file each way, checksummed.
    wait_for_port(&segment, servers.ip(), SSH_PORT, &mut sshd);
    let shell_home = UserDir::create(&users[2]);
    let key = shell_home.path().join("key");
    generate_key(&users[2], &key);
    let public_key = std::fs::read(key.with_extension("pub")).expect("cannot read the public key");
    server_home.write("authorized_keys", public_key);

    let download = server_home.path().join("download");
    write_random_file(&download, SFTP_LEN);
    server_home.hand_over(&download);
    let upload = shell_home.path().join("upload");
    write_random_file(&upload, SFTP_LEN);
    shell_home.hand_over(&upload);
    let received = shell_home.path().join("received");
    let uploaded = server_home.path().join("uploaded");
    let batch = format!(
        "get {} {}\nput {} {}\n",
        download.display(),
        received.display(),
        upload.display(),
        uploaded.display()
    );
    let batch = shell_home.write("batch", batch);

    let mut sftp = shell.command(shell_home.path(), "sftp");
    sftp.arg("-b").arg(&batch);
    sftp.args(["-F", "/dev/null", "-i"]).arg(&key);
    sftp.args(["-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "ConnectTimeout=10", "-P", &SSH_PORT.to_string()])
        .arg(format!("{}@{}", users[0].name, servers.ip()));
    let run = run_bounded(sftp, "sftp as bin", Duration::from_secs(60));
    assert!(
        run.succeeded(),
        "sftp failed\n{run}\nsshd: {:?}",
        sshd.output_so_far()
    );
    assert_eq!(
        sha256_file(&received),
        sha256_file(&download),
        "download differs"
    );
    assert_eq!(
        sha256_file(&uploaded),
        sha256_file(&upload),
        "upload differs"
    );
}

/// Returns the iperf3 seconds per path: `NETCON_INSTANCE_SECONDS`, or 3.
fn throughput_seconds() -> u32 {
    match std::env::var("NETCON_INSTANCE_SECONDS") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("invalid NETCON_INSTANCE_SECONDS {text:?}: use seconds")),
        Err(_) => DEFAULT_THROUGHPUT_SECONDS,
    }
}

/// Instance-to-instance throughput with one and with two workers on each end, next to the
/// kernel path over the same bridge. It prints the figures and, when `NETCON_INSTANCE_REPORT`
/// names a file, writes them there as JSON for the benchmark runner.
#[test]
fn throughput_against_kernel_path() {
    if !require_root("throughput_against_kernel_path") {
        return;
    }
    let _serial = serialize();
    let segment = Segment::create("ncrate");
    let (nobody, daemon) = (User::lookup("nobody"), User::lookup("daemon"));
    let seconds = throughput_seconds();
    let comparison = segment::throughput::compare(&segment, &nobody, &daemon, &[1, 2], seconds)
        .unwrap_or_else(|err| panic!("the throughput comparison failed: {err}"));
    println!("{comparison}");

    assert!(
        comparison.kernel.received_bytes > 0,
        "the kernel path moved nothing"
    );
    for (workers, throughput) in &comparison.instances {
        assert!(
            throughput.received_bytes > 0,
            "--workers {workers} moved nothing between the instances"
        );
    }
    if let Some(path) = std::env::var_os("NETCON_INSTANCE_REPORT") {
        let mut report = comparison.to_json();
        report["netcon_dp"] = netcon_tools::topology::binary_path("netcon-dp")
            .display()
            .to_string()
            .into();
        std::fs::write(&path, format!("{report:#}\n"))
            .unwrap_or_else(|err| panic!("cannot write {path:?}: {err}"));
    }
}
