//! Name resolution through netcon: programs run with `netcon-ctl run --isolate`, in a namespace
//! that has nothing but loopback, so a lookup that escapes netcon fails. Names are known only to a dnsmasq in the topology's
//! namespace (no upstream servers, so it forwards nothing), and netcon-dp is started with
//! `--dns` pointing at it. The expected result of each lookup is the same lookup made by glibc
//! itself inside the topology's namespace, which has a real interface and the same dnsmasq.
//!
//! Every run gets a private mount namespace (`unshare -m`). In it a resolv.conf of the test
//! (naming that dnsmasq, with short timeouts), and optionally a hosts file of the test, are
//! bind-mounted over /etc/resolv.conf and /etc/hosts, so the host's resolver is never named.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    CProgram, Finished, NETCON_IP, PEER_IP, PYTHON, Process, Topology, load_nft_rules, run_bounded,
    wait_for_listener, wait_until,
};
use netcon_tools::topology::{DataplaneOptions, Netns, binary_path, require_root};

/// The domain dnsmasq answers for itself; unknown names in it get NXDOMAIN.
const DOMAIN: &str = "netcon.test";
/// dnsmasq's hosts file: one IPv4 name, one IPv6-only name, and one with two addresses.
const DNSMASQ_HOSTS: &str = "\
10.77.0.1 web.netcon.test
fd00:77::7 six.netcon.test
10.77.0.1 pair.netcon.test
10.77.0.3 pair.netcon.test
";
/// A name dnsmasq knows only as a CNAME to web.netcon.test.
const ALIAS: &str = "alias.netcon.test";
/// A name outside dnsmasq's domain, which it refuses (it has no upstream server).
const OUTSIDE: &str = "name.outside.invalid";

/// resolv.conf for every run: dnsmasq as the server (used by glibc in the reference runs
/// only), the test domain to search, and one 1 s attempt so a silent server fails quickly.
const RESOLV_CONF: &str = "\
nameserver 10.77.0.1
search netcon.test
options timeout:1 attempts:1
";

/// Runs the given program with `$1` bound over /etc/resolv.conf and, when `$2` is not empty,
/// `$2` over /etc/hosts, in a mount namespace of its own.
const VIEW_SCRIPT: &str = r#"set -e
mount --bind "$1" /etc/resolv.conf
if [ -n "$2" ]; then mount --bind "$2" /etc/hosts; fi
shift 2
exec "$@""#;

/// Prints getaddrinfo's results (or its error number) for the names given after the first
/// argument, with AI_ADDRCONFIG and AI_CANONNAME, for AF_INET and, when the first argument is
/// `unspec`, for AF_UNSPEC; then gethostbyname_ex's. Addresses are sorted, because dnsmasq
/// rotates the order of a name's records from one response to the next.
const LOOKUP_PROBE: &str = r#"
import socket, sys
flags = socket.AI_ADDRCONFIG | socket.AI_CANONNAME
families = [socket.AF_INET] + ([socket.AF_UNSPEC] if sys.argv[1] == "unspec" else [])
for name in sys.argv[2:]:
    for family in families:
        try:
            found = socket.getaddrinfo(name, 80, family, socket.SOCK_STREAM, 0, flags)
            addrs = sorted((int(e[0]), e[4][0]) for e in found)
            print(name, int(family), "canonical", found[0][3], addrs)
        except socket.gaierror as error:
            print(name, int(family), "gaierror", error.errno)
    try:
        canonical, aliases, addrs = socket.gethostbyname_ex(name)
        print(name, "gethostbyname_ex", canonical, aliases, sorted(addrs))
    except (socket.gaierror, socket.herror) as error:
        print(name, "gethostbyname_ex", type(error).__name__, error.errno)
"#;

/// Prints reverse lookups of the addresses given as arguments.
const REVERSE_PROBE: &str = r#"
import socket, sys
for addr in sys.argv[1:]:
    try:
        print(addr, "gethostbyaddr", socket.gethostbyaddr(addr))
    except (socket.gaierror, socket.herror) as error:
        print(addr, "gethostbyaddr", type(error).__name__, error.errno)
    for flags in (0, socket.NI_NAMEREQD):
        try:
            print(addr, flags, socket.getnameinfo((addr, 80), flags))
        except socket.gaierror as error:
            print(addr, flags, "gaierror", error.errno)
"#;

/// A C program that calls res_query and res_search for A records and prints the response
/// length, response code and answer count from the header, or the h_errno of a failure.
const RES_PROBE: &str = r#"
#include <netdb.h>
#include <resolv.h>
#include <stdio.h>

static void show(const char *call, const char *name, int len, const unsigned char *answer) {
    if (len < 0) {
        printf("%s %s failed h_errno=%d\n", call, name, h_errno);
        return;
    }
    printf("%s %s len=%d rcode=%d answers=%d\n", call, name, len, answer[3] & 15,
           answer[6] << 8 | answer[7]);
}

int main(int argc, char **argv) {
    unsigned char answer[4096];
    for (int i = 1; i < argc; i++) {
        show("res_query", argv[i], res_query(argv[i], 1, 1, answer, sizeof answer), answer);
        show("res_search", argv[i], res_search(argv[i], 1, 1, answer, sizeof answer), answer);
    }
    return 0;
}
"#;

/// The topology with a dnsmasq, and the files bound over /etc in each run.
struct Setup {
    /// Dropped before the topology, so dnsmasq stops while its namespace exists.
    _dnsmasq: Process,
    topology: Topology,
    files: tempfile::TempDir,
}

impl Setup {
    /// Starts a topology whose netcon-dp gets `dns` as `--dns` (none when `None`), and
    /// dnsmasq on 10.77.0.1:53 in its namespace.
    fn start(prefix: &str, dns: Option<&str>) -> Setup {
        Setup::start_with(prefix, dns, |_| {})
    }

    /// Like [`Setup::start`], after `adjust` has changed netcon-dp's options.
    fn start_with(
        prefix: &str,
        dns: Option<&str>,
        adjust: impl FnOnce(&mut DataplaneOptions),
    ) -> Setup {
        Setup::start_dnsmasq_with(prefix, dns, Authority::Local, adjust)
    }

    /// Like [`Setup::start_with`], with dnsmasq answering for its domain as `authority` says.
    fn start_dnsmasq_with(
        prefix: &str,
        dns: Option<&str>,
        authority: Authority,
        adjust: impl FnOnce(&mut DataplaneOptions),
    ) -> Setup {
        let topology = Topology::start_with(prefix, |options| {
            if let Some(dns) = dns {
                options
                    .extra_args
                    .extend(["--dns".to_owned(), dns.to_owned()]);
            }
            adjust(options);
        });

        let files = tempfile::tempdir().expect("cannot create a temporary directory");
        std::fs::write(files.path().join("resolv.conf"), RESOLV_CONF).expect("write resolv.conf");
        std::fs::write(files.path().join("dnsmasq.hosts"), DNSMASQ_HOSTS)
            .expect("write dnsmasq's hosts file");
        let dnsmasq = start_dnsmasq(&topology.netns, files.path(), authority);
        Setup {
            _dnsmasq: dnsmasq,
            topology,
            files,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }

    /// Returns a command that runs `program` with `args` inside `netns` (when given) with the
    /// test's resolv.conf, and `hosts` over /etc/hosts when given.
    fn view(&self, netns: Option<&Netns>, hosts: Option<&Path>, program: &[&str]) -> Command {
        let mut command = Command::new("unshare");
        command
            .args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                VIEW_SCRIPT,
                "sh",
            ])
            .arg(self.path("resolv.conf"))
            .arg(hosts.map(Path::as_os_str).unwrap_or_default());
        if let Some(netns) = netns {
            command.args(["ip", "netns", "exec", netns.name()]);
        }
        command.args(program);
        command
    }

    /// Returns the `netcon-ctl run --isolate` command line for `program`.
    fn netcon_run<'a>(&'a self, ctl: &'a str, program: &[&'a str]) -> Vec<&'a str> {
        let socket = self
            .topology
            .socket()
            .to_str()
            .expect("socket paths are UTF-8");
        let mut command = vec![ctl, "run", "--isolate", "--socket", socket, "--"];
        command.extend_from_slice(program);
        command
    }

    /// Runs `program` through netcon with `--isolate`.
    fn through_netcon(&self, hosts: Option<&Path>, program: &[&str]) -> Finished {
        let ctl = binary_path("netcon-ctl");
        let ctl = ctl.to_str().expect("paths are UTF-8");
        let command = self.netcon_run(ctl, program);
        let label = format!("{} through netcon", program[0]);
        let view = self.view(None, hosts, &command);
        run_bounded(view, &label, Duration::from_secs(60))
    }

    /// Runs `program` without netcon in the topology's namespace: glibc's own answer.
    fn reference(&self, hosts: Option<&Path>, program: &[&str]) -> Finished {
        let label = format!("{} without netcon", program[0]);
        let view = self.view(Some(&self.topology.netns), hosts, program);
        run_bounded(view, &label, Duration::from_secs(60))
    }

    /// Returns the query lines of dnsmasq's log (`query[TYPE] NAME from ADDR`).
    fn queries(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.path("dnsmasq.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| {
                line.split_once(": query[")
                    .map(|(_, q)| format!("query[{q}"))
            })
            .collect()
    }
}

/// How dnsmasq answers a query for a record type it has no record of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Authority {
    /// The test domain is local (`--local`): NODATA, or NXDOMAIN for unknown names.
    Local,
    /// No `--local`: dnsmasq would forward such a query, and with no upstream server it
    /// answers REFUSED, as the README's example dnsmasq does.
    Refusing,
}

/// Starts dnsmasq on 10.77.0.1:53 in `netns`, answering from the test's hosts file and the
/// CNAME, with no upstream server, and logging each query to `dir/dnsmasq.log`.
fn start_dnsmasq(netns: &Netns, dir: &Path, authority: Authority) -> Process {
    let mut command = netns.command("dnsmasq");
    command
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--user=root",
            "--log-queries",
            "--cache-size=0",
        ])
        .arg(format!("--listen-address={PEER_IP}"))
        .arg(format!("--cname={ALIAS},web.{DOMAIN}"))
        .arg(format!(
            "--addn-hosts={}",
            dir.join("dnsmasq.hosts").display()
        ))
        .arg(format!(
            "--log-facility={}",
            dir.join("dnsmasq.log").display()
        ))
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()));
    if authority == Authority::Local {
        command.arg(format!("--local=/{DOMAIN}/"));
    }
    let mut dnsmasq = Process::spawn(command, "dnsmasq in the namespace");
    wait_for_listener(netns, 53, &mut dnsmasq);
    dnsmasq
}

/// Asserts that the run through netcon printed and returned what glibc did.
fn assert_same(through_netcon: &Finished, reference: &Finished) {
    assert!(
        !reference.timed_out,
        "the reference run timed out\n{reference}"
    );
    assert!(
        !through_netcon.timed_out,
        "the run through netcon timed out\n{through_netcon}"
    );
    assert_eq!(
        through_netcon.stdout, reference.stdout,
        "output differs from glibc's\nthrough netcon:\n{through_netcon}\nglibc:\n{reference}"
    );
    assert_eq!(
        through_netcon.code(),
        reference.code(),
        "exit status differs from glibc's\nthrough netcon:\n{through_netcon}\nglibc:\n{reference}"
    );
}

/// Asserts that dnsmasq logged queries after the first `since` and that every one of them
/// came from netcon's address.
fn assert_queries_from_netcon(setup: &Setup, since: usize) {
    // dnsmasq writes its log a moment after it answers.
    wait_until(Duration::from_secs(3), || setup.queries().len() > since);
    let queries = setup.queries();
    let new = &queries[since.min(queries.len())..];
    assert!(
        !new.is_empty(),
        "dnsmasq logged no query from the runs through netcon"
    );
    for query in new {
        assert!(
            query.ends_with(&format!("from {NETCON_IP}")),
            "a query reached dnsmasq from outside netcon: {query}\nall queries:\n{}",
            queries.join("\n")
        );
    }
}

#[test]
fn curl_fetches_name_from_dnsmasq() {
    if !require_root("curl_fetches_name_from_dnsmasq") {
        return;
    }
    let setup = Setup::start("ncdns", Some(PEER_IP));
    let served = tempfile::tempdir().expect("cannot create a temporary directory");
    std::fs::write(served.path().join("greeting.txt"), "served by name\n").expect("write file");
    let mut server_command = setup.topology.netns.command(PYTHON);
    server_command
        .args([
            "-m",
            "http.server",
            "--bind",
            PEER_IP,
            "8080",
            "--directory",
        ])
        .arg(served.path());
    let mut server = Process::spawn(server_command, "http.server in the namespace");
    wait_for_listener(&setup.topology.netns, 8080, &mut server);

    let url = "http://web.netcon.test:8080/greeting.txt";
    let curl = setup.through_netcon(None, &["curl", "-sS", "--fail", "--max-time", "20", url]);
    curl.assert_success();
    assert_eq!(curl.stdout, "served by name\n");
    assert_queries_from_netcon(&setup, 0);
}

#[test]
fn lookups_match_glibc() {
    if !require_root("lookups_match_glibc") {
        return;
    }
    let setup = Setup::start("ncdns", Some(PEER_IP));
    let names = [
        "web.netcon.test",
        ALIAS,
        "pair.netcon.test",
        // Found through the search domain of resolv.conf.
        "web",
        // IPv6 only: AI_ADDRCONFIG and AF_INET find no IPv4 address.
        "six.netcon.test",
        // NXDOMAIN from dnsmasq.
        "missing.netcon.test",
    ];
    let mut probe = vec![PYTHON, "-c", LOOKUP_PROBE, "inet"];
    probe.extend(names);
    // AF_UNSPEC only for names without an IPv6 address: glibc counts even a link-local address
    // of the namespace's interface as IPv6 being configured, netcon only a global IPv6
    // address of its own, which a topology without --address6 does not give it.
    let mut unspec = vec![PYTHON, "-c", LOOKUP_PROBE, "unspec"];
    unspec.extend(names.iter().filter(|name| !name.starts_with("six")));
    let mut runs: Vec<Vec<&str>> = vec![probe, unspec];
    // Not pair.netcon.test: getent prints addresses in the order received, which dnsmasq
    // rotates.
    for name in ["web.netcon.test", ALIAS, "missing.netcon.test", OUTSIDE] {
        runs.push(vec!["getent", "ahosts", name]);
        runs.push(vec!["getent", "hosts", name]);
    }
    for run in &runs {
        let before = setup.queries().len();
        let through_netcon = setup.through_netcon(None, run);
        assert_queries_from_netcon(&setup, before);
        assert_same(&through_netcon, &setup.reference(None, run));
    }
}

#[test]
fn refused_type_keeps_other_records() {
    if !require_root("refused_type_keeps_other_records") {
        return;
    }
    // dnsmasq refuses the AAAA query for web.netcon.test and the A query for six.netcon.test,
    // and glibc still returns the records of the other type.
    let setup = Setup::start_dnsmasq_with("ncdns", Some(PEER_IP), Authority::Refusing, |_| {});
    let mut probe = vec![PYTHON, "-c", LOOKUP_PROBE, "unspec"];
    probe.extend(["web.netcon.test", "six.netcon.test", "pair.netcon.test"]);
    let runs: [&[&str]; 3] = [
        &probe,
        &["getent", "ahosts", "web.netcon.test"],
        &["getent", "ahosts", "six.netcon.test"],
    ];
    for run in runs {
        let through_netcon = setup.through_netcon(None, run);
        through_netcon.assert_success();
        assert_same(&through_netcon, &setup.reference(None, run));
    }
    // The AF_UNSPEC lookups found what the type that was not refused holds.
    let through_netcon = setup.through_netcon(None, &probe);
    for line in [
        "web.netcon.test 0 canonical web.netcon.test [(2, '10.77.0.1')]",
        "six.netcon.test 0 canonical six.netcon.test [(10, 'fd00:77::7')]",
    ] {
        assert!(
            through_netcon.stdout.contains(line),
            "missing {line:?}\n{through_netcon}"
        );
    }
}

#[test]
fn hosts_file_comes_before_dns() {
    if !require_root("hosts_file_comes_before_dns") {
        return;
    }
    let setup = Setup::start("ncdns", Some(PEER_IP));
    let hosts = setup.path("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n10.77.0.9 web.netcon.test files.netcon.test\n10.77.0.8 other.test\n",
    )
    .expect("write the hosts file");

    let getent = ["getent", "ahosts", "web.netcon.test"];
    let through_netcon = setup.through_netcon(Some(&hosts), &getent);
    assert!(
        through_netcon.stdout.starts_with("10.77.0.9 "),
        "the hosts file's address was not used\n{through_netcon}"
    );
    assert_same(&through_netcon, &setup.reference(Some(&hosts), &getent));

    let runs: [&[&str]; 4] = [
        &["getent", "hosts", "files.netcon.test"],
        &["getent", "hosts", "localhost"],
        &["getent", "hosts", "10.77.0.8"],
        &[
            PYTHON,
            "-c",
            LOOKUP_PROBE,
            "unspec",
            "files.netcon.test",
            "localhost",
            "other.test",
        ],
    ];
    for run in runs {
        assert_same(
            &setup.through_netcon(Some(&hosts), run),
            &setup.reference(Some(&hosts), run),
        );
    }
    // getent hosts requests IPv6 addresses first, which the hosts file lacks, so AAAA queries
    // go to dnsmasq; the IPv4 addresses all come from the file.
    let a_queries: Vec<String> = setup
        .queries()
        .into_iter()
        .filter(|query| query.starts_with("query[A]"))
        .collect();
    assert!(
        a_queries.is_empty(),
        "names in the hosts file were sent to dnsmasq: {a_queries:?}"
    );
}

#[test]
fn reverse_lookups_match_glibc() {
    if !require_root("reverse_lookups_match_glibc") {
        return;
    }
    let setup = Setup::start("ncdns", Some(PEER_IP));
    // 10.77.0.1 has a PTR record from dnsmasq's hosts file; 10.77.0.200 has none.
    let run = [
        PYTHON,
        "-c",
        REVERSE_PROBE,
        "10.77.0.1",
        "10.77.0.200",
        "127.0.0.1",
    ];
    let through_netcon = setup.through_netcon(None, &run);
    assert_queries_from_netcon(&setup, 0);
    assert!(
        through_netcon.stdout.contains("web.netcon.test"),
        "no name for 10.77.0.1\n{through_netcon}"
    );
    assert_same(&through_netcon, &setup.reference(None, &run));
}

#[test]
fn res_query_matches_glibc() {
    if !require_root("res_query_matches_glibc") {
        return;
    }
    let setup = Setup::start("ncdns", Some(PEER_IP));
    let probe = CProgram::compile("res_probe", RES_PROBE);
    let run = [
        probe.program(),
        "web.netcon.test",
        "web",
        "missing.netcon.test",
        "six.netcon.test",
    ];
    let through_netcon = setup.through_netcon(None, &run);
    assert_queries_from_netcon(&setup, 0);
    assert!(
        through_netcon
            .stdout
            .contains("res_query web.netcon.test len="),
        "res_query found nothing\n{through_netcon}"
    );
    assert_same(&through_netcon, &setup.reference(None, &run));
}

#[test]
fn unknown_names_fail_as_in_glibc() {
    if !require_root("unknown_names_fail_as_in_glibc") {
        return;
    }
    let setup = Setup::start("ncdns", Some(PEER_IP));
    // dnsmasq answers NXDOMAIN for the first name and refuses the second (it has no upstream
    // server), which glibc reports as a temporary failure.
    for name in ["missing.netcon.test", OUTSIDE] {
        let before = setup.queries().len();
        let getent = ["getent", "hosts", name];
        let through_netcon = setup.through_netcon(None, &getent);
        assert_queries_from_netcon(&setup, before);
        // getent exits with 2 when the key is not found.
        assert_eq!(through_netcon.code(), Some(2), "{through_netcon}");
        assert!(through_netcon.stdout.is_empty(), "{through_netcon}");
        assert_same(&through_netcon, &setup.reference(None, &getent));
    }

    let probe = [PYTHON, "-c", LOOKUP_PROBE, "unspec", OUTSIDE];
    let through_netcon = setup.through_netcon(None, &probe);
    for family in [libc::AF_INET, libc::AF_UNSPEC] {
        let line = format!("{OUTSIDE} {family} gaierror {}", libc::EAI_AGAIN);
        assert!(
            through_netcon.stdout.contains(&line),
            "expected {line:?}\n{through_netcon}"
        );
    }
}

#[test]
fn silent_server_gives_eai_again() {
    if !require_root("silent_server_gives_eai_again") {
        return;
    }
    let setup = Setup::start("ncdns", Some(PEER_IP));
    load_nft_rules(
        &setup.topology.netns,
        "table inet silence {\n  chain input {\n    type filter hook input priority 0;\n    \
         udp dport 53 drop\n    tcp dport 53 drop\n  }\n}\n",
    );
    let run = [PYTHON, "-c", LOOKUP_PROBE, "unspec", "web.netcon.test"];
    let through_netcon = setup.through_netcon(None, &run);
    assert!(
        through_netcon
            .stdout
            .contains(&format!("gaierror {}", libc::EAI_AGAIN)),
        "a silent server did not give EAI_AGAIN\n{through_netcon}"
    );
    assert_same(&through_netcon, &setup.reference(None, &run));
    assert!(
        setup.queries().is_empty(),
        "dnsmasq answered despite the drop rule"
    );
}

#[test]
fn no_dns_server_fails_lookups() {
    if !require_root("no_dns_server_fails_lookups") {
        return;
    }
    let setup = Setup::start("ncnodns", None);
    let probe = [PYTHON, "-c", LOOKUP_PROBE, "unspec", "web.netcon.test"];
    let run = setup.through_netcon(None, &probe);
    run.assert_success();
    for family in [libc::AF_UNSPEC, libc::AF_INET] {
        let line = format!("web.netcon.test {family} gaierror {}", libc::EAI_AGAIN);
        assert!(run.stdout.contains(&line), "expected {line:?}\n{run}");
    }
    let advice = "start netcon-dp with --dns";
    assert_eq!(
        run.stderr.matches(advice).count(),
        1,
        "expected one line advising --dns on stderr\n{run}"
    );

    let hosts = setup.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").expect("write the hosts file");
    let local = setup.through_netcon(Some(&hosts), &["getent", "ahosts", "localhost"]);
    local.assert_success();
    assert!(local.stdout.starts_with("127.0.0.1 "), "{local}");
    assert!(
        setup.queries().is_empty(),
        "a query reached dnsmasq without --dns"
    );
}

#[test]
fn addrconfig_counts_netcon_addresses() {
    if !require_root("addrconfig_counts_netcon_addresses") {
        return;
    }
    let setup = Setup::start("ncdns", Some(PEER_IP));
    let hosts = setup.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.77.0.9 files.netcon.test\n")
        .expect("write the hosts file");

    // glibc alone, in a namespace holding only loopback, finds no configured IPv4 address,
    // so AF_INET lookups with AI_ADDRCONFIG fail before any source is read.
    let plain = ["unshare", "-n", "getent", "ahostsv4", "files.netcon.test"];
    let plain = run_bounded(
        setup.view(None, Some(&hosts), &plain),
        "getent ahostsv4 without netcon",
        Duration::from_secs(30),
    );
    assert_eq!(plain.code(), Some(2), "{plain}");
    assert!(plain.stdout.is_empty(), "{plain}");

    // getent's ahosts lookups pass AI_ADDRCONFIG; netcon-dp has 10.77.0.2 and fd00::2, so
    // both families count, as the reference namespace's kernel addresses do for glibc.
    let runs: [(&[&str], &str); 5] = [
        (&["getent", "ahostsv4", "files.netcon.test"], "10.77.0.9 "),
        (&["getent", "ahostsv4", "web.netcon.test"], "10.77.0.1 "),
        (&["getent", "ahostsv6", "six.netcon.test"], "fd00:77::7 "),
        (&["getent", "ahosts", "six.netcon.test"], "fd00:77::7 "),
        (&["getent", "ahosts", "web.netcon.test"], "10.77.0.1 "),
    ];
    for (run, address) in runs {
        let through_netcon = setup.through_netcon(Some(&hosts), run);
        assert!(
            through_netcon.stdout.starts_with(address),
            "expected {address:?} first\n{through_netcon}"
        );
        assert_same(&through_netcon, &setup.reference(Some(&hosts), run));
    }
    let mut probe = vec![PYTHON, "-c", LOOKUP_PROBE, "unspec"];
    probe.extend(["six.netcon.test", "pair.netcon.test", "files.netcon.test"]);
    let through_netcon = setup.through_netcon(Some(&hosts), &probe);
    assert_same(&through_netcon, &setup.reference(Some(&hosts), &probe));
}

#[test]
fn addrconfig_without_address6_skips_ipv6() {
    if !require_root("addrconfig_without_address6_skips_ipv6") {
        return;
    }
    let setup = Setup::start_with("ncdns", Some(PEER_IP), |options| {
        options.address6 = None;
        options.peer_address6 = None;
    });
    // No glibc reference here: the namespace's interface keeps a link-local IPv6 address,
    // which glibc counts as IPv6 being configured. netcon counts only its own addresses.
    let six = setup.through_netcon(None, &["getent", "ahosts", "six.netcon.test"]);
    assert_eq!(six.code(), Some(2), "an IPv6-only name was found\n{six}");
    assert!(six.stdout.is_empty(), "{six}");

    let web = setup.through_netcon(None, &["getent", "ahosts", "web.netcon.test"]);
    web.assert_success();
    for line in web.stdout.lines() {
        assert!(
            line.starts_with("10.77.0.1 "),
            "not an IPv4 line: {line}\n{web}"
        );
    }
    let v6 = setup.through_netcon(None, &["getent", "ahostsv6", "web.netcon.test"]);
    assert_eq!(v6.code(), Some(2), "AF_INET6 was not rejected\n{v6}");
}

#[test]
fn host_resolv_conf_not_used() {
    if !require_root("host_resolv_conf_not_used") {
        return;
    }
    let setup = Setup::start("ncdns", Some(PEER_IP));
    // The machine's own /etc/resolv.conf and /etc/hosts: glibc would ask the host's
    // resolver, which the loopback-only namespace cannot reach, so only netcon can resolve.
    let ctl = binary_path("netcon-ctl");
    let ctl = ctl.to_str().expect("paths are UTF-8");
    let command = setup.netcon_run(ctl, &["getent", "hosts", "web.netcon.test"]);
    let mut getent = Command::new(command[0]);
    getent.args(&command[1..]);
    let run = run_bounded(
        getent,
        "getent hosts through netcon",
        Duration::from_secs(60),
    );
    run.assert_success();
    assert_eq!(
        run.stdout.split_whitespace().next(),
        Some("10.77.0.1"),
        "{run}"
    );
    assert_queries_from_netcon(&setup, 0);
}
