//! Tomcat 10 through netcon: the Debian package's default page, served from an instance
//! directory of the test's own (`catalina.base`), fetched whole by curl in the namespace.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    NETCON_IP, Process, Topology, package_version, record_compat, run_bounded,
    wait_for_netcon_listener,
};
use netcon_tools::topology::{netcon_command, require_root};

const HOME: &str = "/usr/share/tomcat10";
/// The HTTP connector's port in Debian's server.xml (its shutdown port is disabled).
const PORT: u16 = 8080;
const DEFAULT_PAGE: &str = "/var/lib/tomcat10/webapps/ROOT/index.html";

/// Copies Debian's configuration and ROOT web application into `base`.
fn make_instance(base: &Path) {
    for dir in ["logs", "temp", "work", "webapps"] {
        std::fs::create_dir_all(base.join(dir)).expect("cannot create the instance directories");
    }
    let script = format!(
        "cp -r /etc/tomcat10 {base}/conf && cp -r /var/lib/tomcat10/webapps/ROOT {base}/webapps/",
        base = base.display()
    );
    let mut copy = Command::new("sh");
    copy.args(["-c", &script]);
    run_bounded(
        copy,
        "copying Tomcat's instance files",
        Duration::from_secs(30),
    )
    .assert_success();
}

#[test]
fn tomcat_serves_default_page() {
    if !require_root("tomcat_serves_default_page") {
        return;
    }
    let version = package_version("tomcat10");
    let topology = Topology::start("nctomcat");
    let base = tempfile::tempdir().expect("cannot create a temporary directory");
    make_instance(base.path());

    let mut tomcat = netcon_command(topology.socket(), "/usr/bin/java");
    tomcat
        .arg("-cp")
        .arg(format!(
            "{HOME}/bin/bootstrap.jar:{HOME}/bin/tomcat-juli.jar"
        ))
        .arg(format!("-Dcatalina.home={HOME}"))
        .arg(format!("-Dcatalina.base={}", base.path().display()))
        .arg(format!(
            "-Djava.io.tmpdir={}",
            base.path().join("temp").display()
        ))
        .args(["org.apache.catalina.startup.Bootstrap", "start"]);
    let mut tomcat = Process::spawn(tomcat, "tomcat through netcon");
    // The JVM and Tomcat take many seconds to start on a busy 2-core machine.
    wait_for_netcon_listener(&topology.netns, PORT, &mut tomcat, Duration::from_secs(120));

    let mut curl = topology.netns.command("curl");
    curl.args(["-sS", "--fail", "--max-time", "60"])
        .arg(format!("http://{NETCON_IP}:{PORT}/"));
    let run = run_bounded(curl, "curl in the namespace", Duration::from_secs(70));
    run.assert_success();
    let expected = std::fs::read_to_string(DEFAULT_PAGE).expect("cannot read the default page");
    assert!(
        run.stdout == expected,
        "the page differs from {DEFAULT_PAGE}\n{}",
        run.stdout
    );
    record_compat("tomcat10", &version, "server", "pass");
}
