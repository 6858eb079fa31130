//! Java 17 through netcon: a `com.sun.net.httpserver` server answering a `java.net.http`
//! client in the namespace, and that client reaching the same server in the namespace. Java
//! opens IPv6 sockets where it can; netcon's EAFNOSUPPORT for AF_INET6 makes it use IPv4.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    NETCON_IP, PEER_IP, Process, Topology, package_version, record_compat, run_bounded,
    wait_for_listener, wait_for_netcon_listener,
};
use netcon_tools::topology::{netcon_command, require_root};

const JAVA: &str = "/usr/bin/java";
const PORT: u16 = 8085;
const PAGES: usize = 30;

/// Serves a short text naming the request path on the port and address it is given, and
/// prints `listening` once it listens.
const SERVER: &str = r#"
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

public class Server {
    public static void main(String[] args) throws Exception {
        InetSocketAddress address = new InetSocketAddress(args[1], Integer.parseInt(args[0]));
        HttpServer server = HttpServer.create(address, 64);
        server.createContext("/", exchange -> {
            String text = "java answered " + exchange.getRequestURI().getPath() + "\n";
            byte[] body = text.getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
        System.out.println("listening");
    }
}
"#;

/// Requests PAGES pages from the base URL it is given and prints how many had the expected
/// status and text.
const CLIENT: &str = r#"
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

public class Client {
    public static void main(String[] args) throws Exception {
        HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        int pages = Integer.parseInt(args[1]);
        int ok = 0;
        for (int i = 0; i < pages; i++) {
            URI uri = URI.create(args[0] + "/page" + i);
            HttpResponse<String> response =
                client.send(HttpRequest.newBuilder(uri).build(), HttpResponse.BodyHandlers.ofString());
            if (response.statusCode() == 200 && response.body().equals("java answered /page" + i + "\n")) {
                ok++;
            }
        }
        System.out.println("pages " + ok);
    }
}
"#;

/// Writes and compiles both classes into `dir`.
fn compile(dir: &Path) {
    std::fs::write(dir.join("Server.java"), SERVER).expect("cannot write Server.java");
    std::fs::write(dir.join("Client.java"), CLIENT).expect("cannot write Client.java");
    let mut javac = Command::new("javac");
    javac
        .arg("-d")
        .arg(dir)
        .arg(dir.join("Server.java"))
        .arg(dir.join("Client.java"));
    run_bounded(javac, "javac", Duration::from_secs(120)).assert_success();
}

/// Appends the class path and class `name` to `command`.
fn java_class(command: &mut Command, dir: &Path, name: &str) {
    command.arg("-cp").arg(dir).arg(name);
}

/// Asserts that the client got every page.
fn assert_all_pages(stdout: &str) {
    assert!(
        stdout.lines().any(|line| line == format!("pages {PAGES}")),
        "some pages were wrong or missing\n{stdout}"
    );
}

/// Waits up to 60 s (the JVM starts slowly on a busy machine) for `listening`.
fn wait_for_start(server: &mut Process) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (stdout, stderr) = server.output_so_far();
        if stdout.lines().any(|line| line == "listening") {
            return;
        }
        assert!(
            server.try_wait().is_none() && std::time::Instant::now() < deadline,
            "the Java server did not start\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn java_http_server_through_netcon() {
    if !require_root("java_http_server_through_netcon") {
        return;
    }
    let version = package_version("openjdk-17-jdk-headless");
    let topology = Topology::start("ncjavasrv");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    compile(dir.path());

    let mut server = netcon_command(topology.socket(), JAVA);
    java_class(&mut server, dir.path(), "Server");
    server.args([&PORT.to_string(), "0.0.0.0"]);
    let mut server = Process::spawn(server, "java server through netcon");
    wait_for_start(&mut server);
    wait_for_netcon_listener(&topology.netns, PORT, &mut server, Duration::from_secs(15));

    let mut client = topology.netns.command(JAVA);
    java_class(&mut client, dir.path(), "Client");
    client.args([&format!("http://{NETCON_IP}:{PORT}"), &PAGES.to_string()]);
    let run = run_bounded(
        client,
        "java client in the namespace",
        Duration::from_secs(120),
    );
    run.assert_success();
    assert_all_pages(&run.stdout);
    record_compat("java", &version, "server", "pass");
}

#[test]
fn java_http_client_through_netcon() {
    if !require_root("java_http_client_through_netcon") {
        return;
    }
    let version = package_version("openjdk-17-jdk-headless");
    let topology = Topology::start("ncjavacli");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    compile(dir.path());

    let mut server = topology.netns.command(JAVA);
    java_class(&mut server, dir.path(), "Server");
    server.args([&PORT.to_string(), PEER_IP]);
    let mut server = Process::spawn(server, "java server in the namespace");
    wait_for_start(&mut server);
    wait_for_listener(&topology.netns, PORT, &mut server);

    let mut client = netcon_command(topology.socket(), JAVA);
    java_class(&mut client, dir.path(), "Client");
    client.args([&format!("http://{PEER_IP}:{PORT}"), &PAGES.to_string()]);
    let run = run_bounded(
        client,
        "java client through netcon",
        Duration::from_secs(120),
    );
    run.assert_success();
    assert_all_pages(&run.stdout);
    record_compat("java", &version, "client", "pass");
}
