//! netcon-bench: runs throughput, latency and connection-rate workloads through kernel veth,
//! slirp4netns, pasta and netcon side by side, and writes a table, a JSON file and a plot.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use netcon_bench::connect_rate::{ConnectRateOptions, connect_rate};
use netcon_bench::contender::{Contender, Stack};
use netcon_bench::idle::{self, IdleOptions};
use netcon_bench::plan::{INSTANCE_WORKERS, NETCON_WORKERS, Plan};
use netcon_bench::plot::DEFAULT_FONT;
use netcon_bench::runner::{self, progress};
use netcon_bench::serial_echo;
use netcon_bench::table::markdown;

#[derive(Debug, Parser)]
#[command(
    name = "netcon-bench",
    version,
    about = "Compare netcon with kernel veth, slirp4netns and pasta on this machine (needs root)",
    long_about = "Sets up each contender in network namespaces made for the run, runs the same \
                  iperf3 throughput, round-trip and connection-rate workloads through each, \
                  removes everything it made, and writes a Markdown table (also printed on \
                  stdout), a JSON file and a PNG plot. Progress goes to stderr.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Commands>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Run a short subset: MTU 1500, 2 s tests, one stream each way (about a minute)
    #[arg(long)]
    quick: bool,
    /// Also measure instance to instance: two netcon-dp instances on one bridge, each run by
    /// its own unprivileged user (nobody and daemon), with the same --workers on both ends,
    /// next to the kernel path over that bridge [default: on, with --quick off]
    #[arg(long, overrides_with = "no_instances")]
    instances: bool,
    /// Leave out instance to instance
    #[arg(long, overrides_with = "instances")]
    no_instances: bool,
    /// Directory the table, JSON file and plot are written to
    #[arg(long, value_name = "DIR", default_value = "bench/results")]
    output: PathBuf,
    /// Time of each iperf3 test and connection-rate run, in seconds [default: 5, with --quick 2]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: Option<u64>,
    /// Measured round trips per latency run [default: 20000, with --quick 2000]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    rounds: Option<u64>,
    /// Link MTU in bytes, repeated for several [default: 1500 and 65520, with --quick 1500]
    #[arg(long = "mtu", value_name = "BYTES", value_parser = clap::value_parser!(u32).range(576..=65535))]
    mtus: Vec<u32>,
    /// Stack to compare, repeated for several [default: all]
    #[arg(long = "stack", value_enum)]
    stacks: Vec<Stack>,
    /// netcon-dp worker count, repeated for several [default: 1, 2 and 4; instance to instance
    /// 1 and 2]
    #[arg(long = "workers", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Vec<u16>,
    /// Workload to run, repeated for several [default: all of the full or quick plan]
    #[arg(long = "workload", value_name = "KEY", value_parser = WORKLOAD_KEYS)]
    workloads: Vec<String>,
    /// TrueType font the plot's text is drawn with
    #[arg(long, value_name = "PATH", default_value = DEFAULT_FONT)]
    font: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Open idle connections through netcon in steps and, after each, measure the connection
    /// rate and netcon-dp's resident memory (needs root)
    Idle {
        /// netcon-dp worker count
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        workers: u16,
        /// Link MTU in bytes
        #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(576..=65520))]
        mtu: u32,
        /// Idle connection counts to measure at, in increasing order
        #[arg(
            long = "idle",
            value_name = "COUNT",
            value_delimiter = ',',
            default_value = "0,1000,10000"
        )]
        counts: Vec<u32>,
        /// Time of each connection-rate run, in seconds
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=600))]
        seconds: u64,
    },
    /// Accept connections on ADDR:PORT and keep them open, for a bounded time (the peer of
    /// `idle`).
    #[command(hide = true)]
    HoldServer {
        /// Address and port to listen on
        #[arg(long, value_name = "ADDR:PORT")]
        listen: SocketAddr,
        /// Time after which the server exits, in seconds
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Open COUNT connections to ADDR:PORT one after another, print the time that took as
    /// JSON, and keep them open for a bounded time.
    #[command(hide = true)]
    HoldConnections {
        /// Server address and port
        #[arg(long, value_name = "ADDR:PORT")]
        connect: SocketAddr,
        /// Connections to open
        #[arg(long)]
        count: u32,
        /// Time the connections are kept open, in seconds
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Open short connections (connect, request, reply, close) to an echo server one after
    /// another and print the rate.
    #[command(hide = true)]
    ConnectRate {
        /// Echo server address and port
        #[arg(long, value_name = "ADDR:PORT")]
        connect: SocketAddr,
        /// Time after which no new connection starts, in seconds
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
        seconds: u64,
        /// Connections after which the run stops even before the time is up
        #[arg(long, default_value_t = 1_000_000)]
        max_connections: u64,
        /// Request size in bytes
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
        size: u64,
        /// Print the summary as JSON
        #[arg(long)]
        json: bool,
    },
    /// Serve TCP echo on ADDR:PORT one connection at a time, for a bounded time (the
    /// connection-rate peer).
    #[command(hide = true)]
    SerialEchoServer {
        /// Address and port to listen on
        #[arg(long, value_name = "ADDR:PORT")]
        listen: SocketAddr,
        /// Time after which the server exits, in seconds
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

/// The keys `--workload` accepts: those of the full plan's workloads.
const WORKLOAD_KEYS: [&str; 6] = [
    "up-1",
    "down-1",
    "up-4",
    "down-4",
    "latency",
    "connect-rate",
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(Commands::ConnectRate {
            connect,
            seconds,
            max_connections,
            size,
            json,
        }) => connect_rate_command(
            &ConnectRateOptions {
                connect,
                duration: Duration::from_secs(seconds),
                max_connections,
                size: size as usize,
            },
            json,
        ),
        Some(Commands::SerialEchoServer { listen, seconds }) => {
            match serial_echo::serve(listen, Duration::from_secs(seconds)) {
                Ok(()) => 0,
                Err(err) => {
                    eprintln!("netcon-bench: error: serial-echo-server on {listen} failed: {err}");
                    1
                }
            }
        }
        Some(Commands::Idle {
            workers,
            mtu,
            counts,
            seconds,
        }) => idle_command(&IdleOptions {
            workers: usize::from(workers),
            mtu,
            counts,
            seconds,
        }),
        Some(Commands::HoldServer { listen, seconds }) => {
            match idle::hold_server(listen, Duration::from_secs(seconds)) {
                Ok(()) => 0,
                Err(err) => {
                    eprintln!("netcon-bench: error: hold-server on {listen} failed: {err}");
                    1
                }
            }
        }
        Some(Commands::HoldConnections {
            connect,
            count,
            seconds,
        }) => match idle::hold_connections(connect, count, Duration::from_secs(seconds)) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("netcon-bench: error: hold-connections to {connect} failed: {err}");
                1
            }
        },
        None => run_command(&cli.run),
    };
    ExitCode::from(code)
}

fn run_command(args: &RunArgs) -> u8 {
    let plan = plan_from(args);
    let command = std::iter::once("netcon-bench".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let report = match runner::run(&plan, command) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("netcon-bench: error: {err}");
            return 1;
        }
    };

    print!("{}", markdown(&report));
    let outputs = match runner::write_outputs(&report, &args.output, &args.font) {
        Ok(outputs) => outputs,
        Err(err) => {
            eprintln!("netcon-bench: error: {err}");
            return 1;
        }
    };
    progress(&format!("table written to {}", outputs.markdown.display()));
    progress(&format!("results written to {}", outputs.json.display()));
    match &outputs.plot {
        Ok(path) => progress(&format!("plot written to {}", path.display())),
        Err(reason) => eprintln!("netcon-bench: warning: no plot: {reason}"),
    }
    if report.interrupted { 130 } else { 0 }
}

/// Returns the plan the options select: the full or quick plan, narrowed or changed by the
/// other options.
fn plan_from(args: &RunArgs) -> Plan {
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(seconds) = args.seconds {
        plan.seconds = seconds;
    }
    if let Some(rounds) = args.rounds {
        plan.rounds = rounds;
    }
    if !args.mtus.is_empty() {
        plan.mtus = args.mtus.clone();
    }
    if !args.workloads.is_empty() {
        plan.workloads = Plan::full()
            .workloads
            .into_iter()
            .filter(|workload| args.workloads.contains(&workload.key()))
            .collect();
    }
    let workers: Vec<usize> = if args.workers.is_empty() {
        NETCON_WORKERS.to_vec()
    } else {
        args.workers.iter().map(|&n| usize::from(n)).collect()
    };
    let mut contenders = Vec::new();
    for stack in [Stack::Veth, Stack::Slirp4netns, Stack::Pasta, Stack::Netcon] {
        if !args.stacks.is_empty() && !args.stacks.contains(&stack) {
            continue;
        }
        match stack {
            Stack::Netcon => contenders.extend(workers.iter().map(|&n| Contender::netcon(n))),
            _ => contenders.push(Contender::new(stack)),
        }
    }
    plan.contenders = contenders;

    let netcon_chosen = args.stacks.is_empty() || args.stacks.contains(&Stack::Netcon);
    if args.no_instances || (!args.instances && !netcon_chosen) {
        plan.instance_workers.clear();
    } else if args.instances || !plan.instance_workers.is_empty() {
        plan.instance_workers = if args.workers.is_empty() {
            INSTANCE_WORKERS.to_vec()
        } else {
            workers
        };
    }
    plan
}

fn idle_command(options: &IdleOptions) -> u8 {
    if let Err(err) = runner::check_prerequisites() {
        eprintln!("netcon-bench: error: {err}");
        return 1;
    }
    if let Err(err) = netcon_tools::signals::install_flag() {
        eprintln!("netcon-bench: error: cannot install signal handlers: {err}");
        return 1;
    }
    println!(
        "netcon-dp --workers {} --mtu {}, connection rate over {} s after each step",
        options.workers, options.mtu, options.seconds
    );
    println!("{}", idle::TABLE_HEADER);
    match idle::run_idle(options, &mut |row| println!("{row}")) {
        Ok(_) => 0,
        Err(err) => {
            eprintln!("netcon-bench: error: {err}");
            1
        }
    }
}

fn connect_rate_command(options: &ConnectRateOptions, json: bool) -> u8 {
    match connect_rate(options) {
        Ok(summary) if json => {
            println!("{}", summary.to_json());
            0
        }
        Ok(summary) => {
            println!("{summary}");
            0
        }
        Err(err) => {
            eprintln!(
                "netcon-bench: error: connect-rate to {} failed: {err}",
                options.connect
            );
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_keys_match_full_plan() {
        let keys: Vec<String> = Plan::full().workloads.iter().map(|w| w.key()).collect();
        assert_eq!(keys, WORKLOAD_KEYS);
    }

    #[test]
    fn workload_option_narrows_plan() {
        let cli = Cli::parse_from(["netcon-bench", "--workload", "up-4", "--workload", "down-4"]);
        let keys: Vec<String> = plan_from(&cli.run)
            .workloads
            .iter()
            .map(|w| w.key())
            .collect();
        assert_eq!(keys, ["up-4", "down-4"]);
    }
}
