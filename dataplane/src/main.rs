//! netcon-dp entry point: parse the command line, install the stop signals, run.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use netcon_dataplane::config::Args;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::Release);
}

/// Makes SIGINT, SIGTERM, SIGHUP (the terminal closed) and SIGQUIT stop netcon-dp cleanly, so
/// its control socket file is removed.
fn install_stop_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, request_stop as *const () as libc::sighandler_t) };
    }
    // SAFETY: ignoring SIGPIPE has no preconditions; writes to closed sockets then fail with
    // EPIPE, which the workers handle.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    install_stop_signals();
    match netcon_dataplane::run::run(&args, &STOP) {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netcon-dp: error: {e}");
            ExitCode::FAILURE
        }
    }
}
