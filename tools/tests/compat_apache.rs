//! Apache httpd 2.4 through netcon, with mpm_prefork (one process per connection) and
//! mpm_event (threads in several processes), each under wrk from the namespace for 10 s.
//! Both fork their children as root, which then switch to www-data.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    NETCON_IP, Process, Topology, package_version, record_compat, run_wrk, shared_temp_dir,
    wait_for_netcon_listener,
};
use netcon_tools::topology::{netcon_command, require_root};

const APACHE: &str = "/usr/sbin/apache2";
const MODULES: &str = "/usr/lib/apache2/modules";
const PORT: u16 = 8081;
const WRK_SECONDS: u32 = 10;
const WRK_CONNECTIONS: u32 = 20;

/// Writes apache2.conf for `mpm` and a page into `dir`. The access log records each status.
fn write_config(dir: &Path, mpm: &str) {
    let root = dir.display();
    let modules = [
        format!("mpm_{mpm}_module {MODULES}/mod_mpm_{mpm}.so"),
        format!("authz_core_module {MODULES}/mod_authz_core.so"),
        format!("mime_module {MODULES}/mod_mime.so"),
        format!("dir_module {MODULES}/mod_dir.so"),
    ];
    let mut config: String = modules
        .iter()
        .map(|module| format!("LoadModule {module}\n"))
        .collect();
    config.push_str(&format!(
        "ServerRoot {root}\nServerName localhost\nListen 0.0.0.0:{PORT}\nPidFile {root}/httpd.pid\n\
         ErrorLog {root}/error.log\nLogLevel info\nTypesConfig /etc/mime.types\n\
         User www-data\nGroup www-data\nMutex file:{root}\nDocumentRoot {root}/htdocs\n\
         CustomLog {root}/access.log \"%>s\"\n\
         <Directory {root}/htdocs>\n  Require all granted\n</Directory>\n"
    ));
    std::fs::write(dir.join("apache2.conf"), config).expect("cannot write apache2.conf");
    std::fs::create_dir_all(dir.join("htdocs")).expect("cannot create the document root");
    std::fs::write(
        dir.join("htdocs/index.html"),
        "served by apache through netcon\n".repeat(40),
    )
    .expect("cannot write index.html");
}

/// Runs apache with `mpm` through netcon under wrk and checks that every request succeeded.
fn serve_under_wrk(prefix: &str, mpm: &str) {
    let topology = Topology::start(prefix);
    let dir = shared_temp_dir();
    write_config(dir.path(), mpm);

    let mut apache = netcon_command(topology.socket(), APACHE);
    apache
        .arg("-f")
        .arg(dir.path().join("apache2.conf"))
        .arg("-DFOREGROUND");
    let mut apache = Process::spawn(apache, &format!("apache2 ({mpm}) through netcon"));
    wait_for_netcon_listener(&topology.netns, PORT, &mut apache, Duration::from_secs(15));

    let url = format!("http://{NETCON_IP}:{PORT}/index.html");
    let report = run_wrk(&topology.netns, &url, WRK_SECONDS, WRK_CONNECTIONS);
    let errors = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
    report.assert_clean(&format!("apache error.log:\n{errors}"));

    drop(apache);
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap_or_default();
    let other: Vec<&str> = log.lines().filter(|status| *status != "200").collect();
    assert!(
        other.is_empty(),
        "apache logged statuses other than 200: {other:?}"
    );
}

#[test]
fn apache_prefork_under_wrk() {
    if !require_root("apache_prefork_under_wrk") {
        return;
    }
    let version = package_version("apache2");
    serve_under_wrk("ncapachepf", "prefork");
    record_compat("apache2", &version, "server, mpm_prefork", "pass");
}

#[test]
fn apache_event_under_wrk() {
    if !require_root("apache_event_under_wrk") {
        return;
    }
    let version = package_version("apache2");
    serve_under_wrk("ncapacheev", "event");
    record_compat("apache2", &version, "server, mpm_event", "pass");
}
