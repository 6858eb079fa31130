//! FTP servers through netcon, with curl in the namespace as the client: vsftpd (anonymous
//! login) and pure-ftpd (a virtual user). Each must greet with 220 and let the client log in.
//! Then a file must cross intact both ways in passive mode, where the client connects to a
//! port the server opened in netcon, and in active mode, where the server connects out.
//!
//! vsftpd and pure-ftpd conflict as Debian packages, so pure-ftpd is not installed: the
//! README's test command unpacks its package into `target/debian/pure-ftpd`.

mod common;

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    NETCON_IP, PEER_IP, Process, Topology, package_version, record_compat, run_bounded,
    sha256_file, shared_temp_dir, user_id, wait_for_netcon_listener, write_random_file,
};
use netcon_tools::topology::{netcon_command, require_root};

const VSFTPD: &str = "/usr/sbin/vsftpd";
const PORT: u16 = 2121;
const FILE_LEN: u64 = 3 * 1024 * 1024;

/// The variable that names the directory pure-ftpd's package was unpacked into.
const PURE_FTPD_ENV: &str = "NETCON_PURE_FTPD";

/// Where the README's test command unpacks pure-ftpd, relative to the workspace.
const PURE_FTPD_UNPACKED: &str = "target/debian/pure-ftpd";

/// Returns the directory pure-ftpd's Debian package was unpacked into (`NETCON_PURE_FTPD`
/// overrides it).
fn pure_ftpd_root() -> PathBuf {
    match std::env::var_os(PURE_FTPD_ENV) {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(PURE_FTPD_UNPACKED),
    }
}

/// Returns the version at the top of the unpacked package's changelog. A binary-only rebuild
/// (`+bN`) is recorded in the architecture's own changelog, so that one is read first.
fn unpacked_version(root: &Path) -> String {
    let docs = root.join("usr/share/doc/pure-ftpd");
    let changelog = ["changelog.Debian.amd64.gz", "changelog.Debian.gz"]
        .iter()
        .map(|name| docs.join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no Debian changelog in {}", docs.display()));
    let output = Command::new("zcat")
        .arg(&changelog)
        .output()
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", changelog.display()));
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().next().unwrap_or_default();
    first
        .split(['(', ')'])
        .nth(1)
        .unwrap_or_else(|| panic!("no version in {}", changelog.display()))
        .to_owned()
}

/// A directory the server serves: `served.bin` to download, `up/` (owned by `ftp`) to
/// upload into.
struct FtpRoot {
    dir: tempfile::TempDir,
}

impl FtpRoot {
    fn create() -> FtpRoot {
        let dir = shared_temp_dir();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("up")).expect("cannot create the FTP root");
        chown(root.join("up"), Some(user_id("ftp")), None).expect("cannot give up/ to ftp");
        write_random_file(&root.join("served.bin"), FILE_LEN);
        FtpRoot { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
}

/// Checks the greeting, then downloads and uploads a file in passive and in active mode
/// with curl in the namespace, logged in as `user` (`user:password` for curl's `-u`).
fn exchange_files(topology: &Topology, files: &FtpRoot, user: &str) {
    let script =
        format!("exec 3<>/dev/tcp/{NETCON_IP}/{PORT} && read -r -t 10 line <&3 && echo $line");
    let mut probe = topology.netns.command("bash");
    probe.args(["-c", &script]);
    let greeting = run_bounded(probe, "FTP greeting", Duration::from_secs(15));
    greeting.assert_success();
    assert!(
        greeting.stdout.starts_with("220"),
        "the server greeted with {:?}, not 220",
        greeting.stdout.trim()
    );

    let served = files.root().join("served.bin");
    for (mode, mode_args) in [("passive", vec![]), ("active", vec!["-P", PEER_IP])] {
        let fetched = files.dir.path().join(format!("fetched-{mode}.bin"));
        let mut download = topology.netns.command("curl");
        download
            .args(["-sS", "--max-time", "60", "-u", user])
            .args(&mode_args)
            .arg("-o")
            .arg(&fetched)
            .arg(format!("ftp://{NETCON_IP}:{PORT}/served.bin"));
        let run = run_bounded(
            download,
            &format!("{mode} download"),
            Duration::from_secs(70),
        );
        run.assert_success();
        assert_eq!(
            sha256_file(&fetched),
            sha256_file(&served),
            "the {mode} download differs from the served file"
        );

        let name = format!("uploaded-{mode}.bin");
        let mut upload = topology.netns.command("curl");
        upload
            .args(["-sS", "--max-time", "60", "-u", user])
            .args(&mode_args)
            .arg("-T")
            .arg(&served)
            .arg(format!("ftp://{NETCON_IP}:{PORT}/up/{name}"));
        let run = run_bounded(upload, &format!("{mode} upload"), Duration::from_secs(70));
        run.assert_success();
        let stored = files.root().join("up").join(&name);
        assert_eq!(
            sha256_file(&stored),
            sha256_file(&served),
            "the {mode} upload differs from the sent file"
        );
    }
}

#[test]
fn vsftpd_through_netcon_transfers_files() {
    if !require_root("vsftpd_through_netcon_transfers_files") {
        return;
    }
    let version = package_version("vsftpd");
    let topology = Topology::start("ncvsftpd");
    let files = FtpRoot::create();
    let empty = files.dir.path().join("empty");
    std::fs::create_dir(&empty).expect("cannot create the empty chroot directory");
    let config = files.dir.path().join("vsftpd.conf");
    std::fs::write(
        &config,
        format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_port={PORT}\nbackground=NO\n\
             anonymous_enable=YES\nlocal_enable=NO\nwrite_enable=YES\nanon_upload_enable=YES\n\
             no_anon_password=YES\nftp_username=ftp\nanon_root={}\nsecure_chroot_dir={}\n\
             xferlog_enable=NO\n",
            files.root().display(),
            empty.display()
        ),
    )
    .expect("cannot write vsftpd.conf");

    let mut vsftpd = netcon_command(topology.socket(), VSFTPD);
    vsftpd.arg(&config);
    let mut vsftpd = Process::spawn(vsftpd, "vsftpd through netcon");
    wait_for_netcon_listener(&topology.netns, PORT, &mut vsftpd, Duration::from_secs(15));

    exchange_files(&topology, &files, "anonymous:");
    record_compat("vsftpd", &version, "server", "pass");
}

#[test]
fn pure_ftpd_through_netcon_transfers_files() {
    if !require_root("pure_ftpd_through_netcon_transfers_files") {
        return;
    }
    let root = pure_ftpd_root();
    let binary = root.join("usr/sbin/pure-ftpd");
    assert!(
        binary.exists(),
        "{} is missing; the README's test command unpacks pure-ftpd there",
        binary.display()
    );
    let version = unpacked_version(&root);
    let topology = Topology::start("ncpureftpd");
    let files = FtpRoot::create();

    // A virtual user whose home is the FTP root, mapped to the system user ftp.
    let passwd = files.dir.path().join("pureftpd.passwd");
    let database = files.dir.path().join("pureftpd.pdb");
    let script = format!(
        "printf 'netcon-secret\\nnetcon-secret\\n' | {} useradd netcon -u ftp -d {} -f {} -F {} -m",
        root.join("usr/bin/pure-pw").display(),
        files.root().display(),
        passwd.display(),
        database.display()
    );
    let mut useradd = Command::new("sh");
    useradd.args(["-c", &script]);
    run_bounded(useradd, "pure-pw useradd", Duration::from_secs(20)).assert_success();
    chown(files.root().join("served.bin"), Some(user_id("ftp")), None)
        .expect("cannot give served.bin to ftp");

    let mut server = netcon_command(topology.socket(), &binary.display().to_string());
    server
        .arg("-l")
        .arg(format!("puredb:{}", database.display()))
        .args(["-S", &format!("0.0.0.0,{PORT}"), "-E", "-g"])
        .arg(files.dir.path().join("pure-ftpd.pid"));
    let mut server = Process::spawn(server, "pure-ftpd through netcon");
    wait_for_netcon_listener(&topology.netns, PORT, &mut server, Duration::from_secs(15));

    exchange_files(&topology, &files, "netcon:netcon-secret");
    record_compat("pure-ftpd", &version, "server", "pass");
}
