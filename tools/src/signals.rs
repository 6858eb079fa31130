//! Signal handling for `netcon-ctl`: forwarding SIGINT/SIGTERM/SIGHUP to a wrapped program, or
//! recording them in a flag that long-running commands poll.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The signals `run` forwards and `demo` treats as a stop request.
const HANDLED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The pid signals are forwarded to, or 0 before the program is started.
static FORWARD_PID: AtomicI32 = AtomicI32::new(0);

/// The last handled signal received, or 0.
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Set once any handled signal arrives.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs handlers that record SIGINT, SIGTERM and SIGHUP and forward them to the pid given to
/// [`forward_to`].
///
/// A signal the terminal sent (Ctrl-C) reaches the whole foreground process group, the program
/// included, so only signals sent with `kill` and similar calls are forwarded. That way the
/// program receives each signal once.
pub fn install_forwarding() -> io::Result<()> {
    install(record_and_forward)
}

/// Installs handlers that only record SIGINT, SIGTERM and SIGHUP, for [`interrupted`].
pub fn install_flag() -> io::Result<()> {
    install(record)
}

/// Sets the pid that [`install_forwarding`]'s handlers forward to. Passing 0 stops
/// forwarding.
pub fn forward_to(pid: u32) {
    FORWARD_PID.store(pid as i32, Ordering::SeqCst);
}

/// Returns whether SIGINT, SIGTERM or SIGHUP arrived since the handlers were installed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Returns the last handled signal received, if any.
pub fn last_signal() -> Option<libc::c_int> {
    match LAST_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

fn install(handler: Handler) -> io::Result<()> {
    for signal in HANDLED {
        // SAFETY: the sigaction struct is zeroed and then filled in completely enough for
        // SA_SIGINFO; the handler only touches atomics and calls kill, which is
        // async-signal-safe.
        let result = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

extern "C" fn record(
    signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    LAST_SIGNAL.store(signal, Ordering::SeqCst);
    INTERRUPTED.store(true, Ordering::SeqCst);
}

extern "C" fn record_and_forward(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    record(signal, info, context);

    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo_t.
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    let pid = FORWARD_PID.load(Ordering::SeqCst);
    if pid > 0 && !from_kernel {
        // SAFETY: kill is async-signal-safe. The program is reaped only after forwarding is
        // switched off, so the pid still names it.
        unsafe { libc::kill(pid, signal) };
    }
}
