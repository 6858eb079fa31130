//! netcon-ctl: runs programs through netcon and runs the demo.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use netcon_tools::demo::{self, DemoOptions};
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
    /// Run a program with the netcon preload, so its IPv4 TCP sockets go through netcon-dp.
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
    /// Serve TCP echo on ADDR:PORT for a bounded time (the demo's round-trip peer).
    #[command(hide = true)]
    EchoServer {
        /// Address and port to listen on
        #[arg(long, value_name = "ADDR:PORT")]
        listen: SocketAddr,
        /// Time after which the server exits, in seconds
        #[arg(long, default_value_t = 60)]
        seconds: u64,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Commands::Run {
            socket,
            preload,
            command,
        } => run_command(socket, preload, command),
        Commands::Demo {
            mtu,
            seconds,
            rounds,
            size,
        } => {
            let size = size as usize;
            demo_command(&DemoOptions {
                mtu,
                seconds,
                rounds,
                size,
            })
        }
        Commands::EchoServer { listen, seconds } => {
            match echo_server::serve(listen, Duration::from_secs(seconds)) {
                Ok(()) => 0,
                Err(err) => fail(&format!("echo-server on {listen} failed: {err}")),
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

fn run_command(socket: Option<PathBuf>, preload: Option<PathBuf>, command: Vec<OsString>) -> i32 {
    let mut command = command.into_iter();
    let options = RunOptions {
        socket: socket.unwrap_or_else(netcon_control::path::socket_path_from_env),
        preload: preload.unwrap_or_else(|| binary_path("libnetcon_preload.so")),
        program: command.next().expect("clap requires a program"),
        args: command.collect(),
    };
    match run::run(&options) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("netcon-ctl: error: {err}");
            err.exit_code()
        }
    }
}

fn demo_command(options: &DemoOptions) -> i32 {
    match demo::demo(options) {
        Ok(report) => {
            for line in report.lines() {
                println!("{line}");
            }
            0
        }
        Err(err) => {
            eprintln!("netcon-ctl demo: error: {err}");
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

fn fail(message: &str) -> i32 {
    eprintln!("netcon-ctl: error: {message}");
    1
}
