//! netcon-ctl: runs programs through netcon, shows what netcon-dp is doing, runs the demo.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use netcon_tools::demo::{self, DemoOptions};
use netcon_tools::inspect::{self, perf, show, status};
use netcon_tools::pingpong::{self, PingpongOptions};
use netcon_tools::run::{self, RunOptions};
use netcon_tools::{echo_server, topology::binary_path};

#[derive(Debug, Parser)]
#[command(name = "netcon-ctl", version, about = "Run programs through netcon")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run a program with the netcon preload, so its IPv4 and IPv6 sockets go through netcon-dp.
    ///
    /// Rejects programs whose sockets the preload would not see: statically linked and Go
    /// programs (which --isolate runs with loopback only), set-user-ID and set-group-ID
    /// programs that would change ids, and programs with file capabilities unless run as root.
    /// The dynamic loader run as a program (`ld.so PROGRAM`, as ldd does) is judged by the
    /// program it runs. The preload applies the same rules to every program the program
    /// starts: exec fails with EACCES and a line on stderr names the reason. It also adds
    /// LD_PRELOAD and netcon's variables to a child's environment that lacks them, so `env -i`
    /// and servers that build a new environment keep their children on netcon.
    ///
    /// Exits with the program's status (128 + N when signal N killed it), 125 when netcon-ctl
    /// fails or the preload did not load, 126 when the program cannot run with the preload,
    /// and 127 when it is not found.
    Run {
        /// Control socket of the running netcon-dp [default: $NETCON_SOCKET, else the runtime
        /// dir's netcon/control.sock]
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Preload library [default: libnetcon_preload.so beside netcon-ctl]
        #[arg(long, value_name = "PATH")]
        preload: Option<PathBuf>,
        /// Start the program in a new network namespace that holds only loopback (up), so a
        /// socket that bypasses the preload cannot reach the host's network.
        ///
        /// As root, only the network namespace is new, so servers that switch to another user
        /// keep doing so. Any other user also gets a user namespace that maps their own uid
        /// and gid to themselves (setgroups denied): the program keeps its ids but cannot
        /// change them (setuid fails with EINVAL where it would fail with EPERM), and files
        /// of other users show as owned by nobody (65534). netcon-dp
        /// sees the program's real uid through SO_PEERCRED. The control socket is a path,
        /// which every namespace reaches. With `netcon-dp --loopback kernel`, loopback
        /// sockets meet only programs in the same namespace, not the host's servers.
        /// Statically linked and Go programs, whose sockets bypass the preload and which
        /// `run` otherwise rejects, run with loopback only and no network, also when the
        /// program starts them. This is
        /// containment, not a sandbox: a program running as root can leave the namespace.
        #[arg(long)]
        isolate: bool,
        /// The program to run, then its arguments
        #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM")]
        command: Vec<OsString>,
    },
    /// Measure netcon on a namespace made for the run (needs root and iperf3).
    ///
    /// Runs iperf3 through netcon in both directions and times TCP round trips through netcon
    /// and over the namespace's loopback, then removes everything it made.
    Demo {
        /// Link MTU in bytes
        #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(576..=65520))]
        mtu: u32,
        /// iperf3 test time per direction, in seconds
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
        seconds: u64,
        /// Measured round trips per path
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        rounds: u64,
        /// Round-trip message size in bytes
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
        size: u64,
    },
    /// List every intercepted socket: program, fd, addresses, TCP state, worker, bytes, queues.
    Show {
        #[command(flatten)]
        socket: SocketArg,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
        /// Redraw every SECONDS seconds until interrupted (on a terminal the screen is cleared
        /// first; elsewhere each listing, or each JSON document on a line, follows the last)
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        watch: Option<u64>,
        /// Only sockets of this process
        #[arg(long)]
        pid: Option<i64>,
        /// Only sockets whose local or remote port is PORT
        #[arg(long)]
        port: Option<u16>,
    },
    /// Per-worker counters: frames, bytes, drops, handoffs, ring use, connections, RPCs.
    Status {
        #[command(flatten)]
        socket: SocketArg,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Latency histograms kept by netcon-dp (RPC round trips, connect, ack, ingress wait).
    ///
    /// With --run, instead measures TCP round trips through netcon and over the kernel
    /// (loopback in a namespace) on a namespace made for the run, like the demo does.
    Perf {
        #[command(flatten)]
        socket: SocketArg,
        /// Print JSON instead of tables
        #[arg(long)]
        json: bool,
        /// Also write every histogram to DIR/NAME.hgrm in HdrHistogram's percentile format
        #[arg(long, value_name = "DIR")]
        export: Option<PathBuf>,
        /// Measure on a namespace made for the run instead of asking a running netcon-dp
        #[arg(long)]
        run: bool,
        /// With --run: measured round trips per path
        #[arg(long, default_value_t = 2000, requires = "run")]
        rounds: u64,
        /// With --run: time the echo peer waits before each reply, in milliseconds
        #[arg(long, default_value_t = 0, requires = "run")]
        peer_delay_ms: u64,
    },
    /// Serve TCP echo on ADDR:PORT for a bounded time (the demo's round-trip peer).
    #[command(hide = true)]
    EchoServer {
        /// Address and port to listen on
        #[arg(long, value_name = "ADDR:PORT")]
        listen: SocketAddr,
        /// Time after which the server exits, in seconds
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Time to wait before each reply, in milliseconds
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// Time TCP round trips against an echo server and print their percentiles.
    #[command(hide = true)]
    Pingpong {
        /// Echo server address and port
        #[arg(long, value_name = "ADDR:PORT")]
        connect: SocketAddr,
        /// Measured round trips
        #[arg(long, default_value_t = 10_000)]
        rounds: u64,
        /// Message size in bytes
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
        size: u64,
        /// Time after which the run stops even with rounds left, in seconds
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Print the summary as JSON
        #[arg(long)]
        json: bool,
    },
}

/// The control socket option shared by the commands that talk to netcon-dp.
#[derive(Debug, clap::Args)]
struct SocketArg {
    /// Control socket of the running netcon-dp [default: $NETCON_SOCKET, else the runtime
    /// dir's netcon/control.sock]
    #[arg(long = "socket", value_name = "PATH")]
    path: Option<PathBuf>,
}

impl SocketArg {
    fn resolve(self) -> PathBuf {
        self.path
            .unwrap_or_else(netcon_control::path::socket_path_from_env)
    }
}

fn main() -> ExitCode {
    // Die quietly on a closed stdout (`netcon-ctl perf | head`), as command-line tools do.
    // SAFETY: restoring the default disposition of SIGPIPE has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let code = match cli.command {
        Commands::Run {
            socket,
            preload,
            isolate,
            command,
        } => run_command(socket, preload, isolate, command),
        Commands::Demo {
            mtu,
            seconds,
            rounds,
            size,
        } => {
            let size = size as usize;
            let options = DemoOptions {
                mtu,
                seconds,
                rounds,
                size,
                throughput: true,
                echo_delay: Duration::ZERO,
                command: "demo",
            };
            demo_command(&options, "demo")
        }
        Commands::EchoServer {
            listen,
            seconds,
            delay_ms,
        } => {
            let delay = Duration::from_millis(delay_ms);
            match echo_server::serve(listen, Duration::from_secs(seconds), delay) {
                Ok(()) => 0,
                Err(err) => fail(&format!("echo-server on {listen} failed: {err}")),
            }
        }
        Commands::Show {
            socket,
            json,
            watch,
            pid,
            port,
        } => show_command(&socket.resolve(), json, watch, show::Filter { pid, port }),
        Commands::Status { socket, json } => status_command(&socket.resolve(), json),
        Commands::Perf {
            socket,
            json,
            export,
            run,
            rounds,
            peer_delay_ms,
        } => {
            if run {
                perf_run_command(rounds, Duration::from_millis(peer_delay_ms))
            } else {
                perf_command(&socket.resolve(), json, export.as_deref())
            }
        }
        Commands::Pingpong {
            connect,
            rounds,
            size,
            seconds,
            json,
        } => {
            let max_duration = Duration::from_secs(seconds);
            let size = size as usize;
            pingpong_command(
                &PingpongOptions {
                    connect,
                    rounds,
                    size,
                    max_duration,
                },
                json,
            )
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn run_command(
    socket: Option<PathBuf>,
    preload: Option<PathBuf>,
    isolate: bool,
    command: Vec<OsString>,
) -> i32 {
    let mut command = command.into_iter();
    let options = RunOptions {
        socket: socket.unwrap_or_else(netcon_control::path::socket_path_from_env),
        preload: preload.unwrap_or_else(|| binary_path("libnetcon_preload.so")),
        program: command.next().expect("clap requires a program"),
        args: command.collect(),
        isolate,
    };
    match run::run(&options) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("netcon-ctl: error: {err}");
            err.exit_code()
        }
    }
}

/// Runs the demo, or `perf --run` (which `command` names in an error), and prints its report.
fn demo_command(options: &DemoOptions, command: &str) -> i32 {
    match demo::demo(options) {
        Ok(report) => {
            for line in report.lines() {
                println!("{line}");
            }
            0
        }
        Err(err) => {
            eprintln!("netcon-ctl {command}: error: {err}");
            err.exit_code()
        }
    }
}

fn pingpong_command(options: &PingpongOptions, json: bool) -> i32 {
    match pingpong::pingpong(options) {
        Ok(summary) if json => {
            println!("{}", summary.to_json());
            0
        }
        Ok(summary) => {
            println!("{summary}");
            0
        }
        Err(err) => fail(&format!("pingpong to {} failed: {err}", options.connect)),
    }
}

fn show_command(
    socket: &std::path::Path,
    json: bool,
    watch: Option<u64>,
    filter: show::Filter,
) -> i32 {
    loop {
        let document = match inspect::query(socket, netcon_control::Op::Show) {
            Ok(document) => show::filtered(&document, filter),
            Err(err) => return fail(&err.to_string()),
        };
        if watch.is_some() && std::io::stdout().is_terminal() {
            // Clear the screen and go home, as watch(1) does.
            print!("\x1b[2J\x1b[H");
        }
        if json {
            println!("{document}");
        } else {
            show::format(&document)
                .iter()
                .for_each(|line| println!("{line}"));
        }
        match watch {
            Some(seconds) => std::thread::sleep(Duration::from_secs(seconds)),
            None => return 0,
        }
    }
}

fn status_command(socket: &std::path::Path, json: bool) -> i32 {
    match inspect::query(socket, netcon_control::Op::Status) {
        Ok(document) if json => {
            println!("{document}");
            0
        }
        Ok(document) => {
            status::format(&document)
                .iter()
                .for_each(|line| println!("{line}"));
            0
        }
        Err(err) => fail(&err.to_string()),
    }
}

fn perf_command(socket: &std::path::Path, json: bool, export: Option<&std::path::Path>) -> i32 {
    let document = match inspect::query(socket, netcon_control::Op::Perf) {
        Ok(document) => document,
        Err(err) => return fail(&err.to_string()),
    };
    if let Some(dir) = export
        && let Err(err) = export_histograms(&document, dir)
    {
        return fail(&format!("cannot export to {}: {err}", dir.display()));
    }
    if json {
        println!("{document}");
    } else {
        perf::format(&document)
            .iter()
            .for_each(|line| println!("{line}"));
    }
    0
}

/// Writes one `.hgrm` file per histogram into `dir`, named after the histogram.
fn export_histograms(document: &serde_json::Value, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, entry) in perf::histograms(document) {
        let Some(histogram) = perf::rebuild(entry) else {
            continue;
        };
        let file: String = name
            .split(" (")
            .next()
            .unwrap_or(&name)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        std::fs::write(
            dir.join(format!("{file}.hgrm")),
            perf::percentile_distribution(&histogram),
        )?;
    }
    Ok(())
}

fn perf_run_command(rounds: u64, echo_delay: Duration) -> i32 {
    let options = DemoOptions {
        mtu: 1500,
        seconds: 0,
        rounds,
        size: 64,
        throughput: false,
        echo_delay,
        command: "perf --run",
    };
    demo_command(&options, "perf --run")
}

fn fail(message: &str) -> i32 {
    eprintln!("netcon-ctl: error: {message}");
    1
}
