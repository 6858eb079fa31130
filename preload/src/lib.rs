//! libnetcon_preload.so: loaded with LD_PRELOAD, it replaces the program's socket calls so
//! that IPv4 TCP sockets are served by netcon-dp instead of the kernel.
//!
//! Every netcon socket is a real kernel fd (one end of a Unix socketpair), so reads, writes,
//! poll, epoll, select, sendfile, dup, fork and exec keep it working as it is. Only calls that
//! concern the TCP connection itself (connect, bind, listen, accept, names, options) are sent
//! to the service as RPCs ([`rpc`]); which fds are netcon sockets is cached in [`fdtable`].
//!
//! Programs the program starts get the library too, through `LD_PRELOAD`, which [`exec`]
//! puts back into an environment that lacks it. [`exec`] also checks each program before exec
//! and fails the exec of one the library would not see into.

mod exec;
mod fdtable;
mod info;
mod intercept;
mod interfaces;
mod real;
mod resolve;
mod rpc;

/// The environment variable naming an fd on which the constructor reports that it loaded.
const READY_FD_ENV: &str = "NETCON_READY_FD";

/// Runs when the library is loaded, before the program's `main`: tells `netcon-ctl run` (if it
/// is waiting) that the preload took hold in this process, finds or opens the origin control
/// connection while the program still runs as the user it started as (see [`rpc`]), opens
/// this thread's connection (see [`rpc::connect_early`]), and identifies the netcon sockets
/// inherited across exec before the program can restrict its system calls.
extern "C" fn on_load() {
    exec::on_load();
    report_loaded();
    // Resolve the path now: a child after fork should not need to allocate for it.
    let _ = rpc::socket_path();
    rpc::establish_at_load();
    exec::prepare_environment();
    rpc::connect_early();
    intercept::check_inherited();
    // SAFETY: registers a plain function with no arguments; null means "no handler".
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
}

/// Runs in the child right after `fork`, in the thread that forked: the child needs a control
/// connection of its own (see [`rpc::connect_early`]). (`vfork`, `posix_spawn` and raw
/// `clone` do not run fork handlers; their children exec or get one on first use.)
extern "C" fn after_fork_in_child() {
    rpc::connect_early();
}

/// Writes the ready line to the fd named by `NETCON_READY_FD`, then closes it.
fn report_loaded() {
    let Some(value) = std::env::var_os(READY_FD_ENV) else {
        return;
    };
    // SAFETY: still single-threaded (constructors run before main), so changing the
    // environment cannot race with a reader.
    unsafe { std::env::remove_var(READY_FD_ENV) };
    let Some(fd) = value
        .to_str()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|fd| *fd > 2)
    else {
        return;
    };
    // SAFETY: getpid has no preconditions.
    let line = format!("netcon-preload {}\n", unsafe { libc::getpid() });
    // SAFETY: writes a valid buffer to the fd netcon-ctl passed, then closes it; an invalid fd
    // only makes both calls fail.
    unsafe {
        libc::write(fd, line.as_ptr().cast(), line.len());
        real::close(fd);
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static ON_LOAD: extern "C" fn() = on_load;
