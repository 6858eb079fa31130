//! netcon-ctl: runs programs through netcon and runs the demo.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use netcon_tools::run::{self, RunOptions};
use netcon_tools::topology::binary_path;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Commands::Run {
            socket,
            preload,
            command,
        } => run_command(socket, preload, command),
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
