//! nginx through netcon with four worker processes, under wrk from the namespace. The workers
//! first share one listening socket inherited from the master. With `reuseport`, each worker
//! gets a listening socket of its own on the same port.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{
    NETCON_IP, Process, Topology, package_version, record_compat, run_wrk, shared_temp_dir,
    wait_for_netcon_listener,
};
use netcon_tools::topology::{netcon_command, require_root};

const NGINX: &str = "/usr/sbin/nginx";
const PORT: u16 = 8080;
const WORKERS: usize = 4;
const WRK_SECONDS: u32 = 10;
const WRK_CONNECTIONS: u32 = 32;

/// Writes nginx.conf and a page into `dir`. Each access log line is the pid of the worker
/// that served the request, then the status.
fn write_config(dir: &Path, listen_options: &str) {
    let root = dir.display();
    let config = format!(
        "daemon off;\nmaster_process on;\nworker_processes {WORKERS};\npid {root}/nginx.pid;\n\
         error_log {root}/error.log info;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  log_format worker '$pid $status';\n  access_log {root}/access.log worker;\n\
         client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n\
         fastcgi_temp_path {root}/fastcgi;\n  uwsgi_temp_path {root}/uwsgi;\n\
         scgi_temp_path {root}/scgi;\n\
         server {{ listen 0.0.0.0:{PORT}{listen_options}; root {root}/html; }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), config).expect("cannot write nginx.conf");
    std::fs::create_dir_all(dir.join("html")).expect("cannot create the document root");
    std::fs::write(
        dir.join("html/index.html"),
        "served by nginx through netcon\n".repeat(40),
    )
    .expect("cannot write index.html");
}

/// Returns how many requests each worker pid served, and the statuses seen other than 200.
fn read_access_log(path: &Path) -> (BTreeMap<String, u64>, Vec<String>) {
    let log = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let mut served = BTreeMap::new();
    let mut other_statuses = Vec::new();
    for line in log.lines() {
        let Some((pid, status)) = line.split_once(' ') else {
            continue;
        };
        *served.entry(pid.to_owned()).or_insert(0) += 1;
        if status != "200" {
            other_statuses.push(status.to_owned());
        }
    }
    (served, other_statuses)
}

/// Runs nginx with `listen_options` through netcon, loads it with wrk and checks that no
/// request failed and every worker served some.
fn serve_under_wrk(prefix: &str, listen_options: &str) {
    let topology = Topology::start(prefix);
    let dir = shared_temp_dir();
    write_config(dir.path(), listen_options);

    let mut nginx = netcon_command(topology.socket(), NGINX);
    nginx
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"));
    let mut nginx = Process::spawn(nginx, "nginx through netcon");
    wait_for_netcon_listener(&topology.netns, PORT, &mut nginx, Duration::from_secs(15));

    let url = format!("http://{NETCON_IP}:{PORT}/index.html");
    let report = run_wrk(&topology.netns, &url, WRK_SECONDS, WRK_CONNECTIONS);
    let errors = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
    report.assert_clean(&format!("nginx error.log:\n{errors}"));

    // Stop nginx first, so every worker has written its log lines.
    drop(nginx);
    let (served, other_statuses) = read_access_log(&dir.path().join("access.log"));
    assert!(
        other_statuses.is_empty(),
        "nginx logged statuses other than 200: {other_statuses:?}"
    );
    assert_eq!(
        served.len(),
        WORKERS,
        "requests per worker pid: {served:?} (every one of the {WORKERS} workers must serve)"
    );
}

#[test]
fn nginx_workers_share_one_listener() {
    if !require_root("nginx_workers_share_one_listener") {
        return;
    }
    let version = package_version("nginx");
    serve_under_wrk("ncnginx", "");
    record_compat("nginx", &version, "server, 4 workers", "pass");
}

#[test]
fn nginx_workers_with_reuseport() {
    if !require_root("nginx_workers_with_reuseport") {
        return;
    }
    let version = package_version("nginx");
    serve_under_wrk("ncnginxrp", " reuseport");
    record_compat("nginx", &version, "server, 4 workers, reuseport", "pass");
}
