//! The exec family: a program run through netcon may start other programs, and the preload
//! must see the sockets of each, by the rules `netcon-ctl run` applies to the first program
//! (the `netcon-program-check` crate). A program that fails them is not started: the call
//! fails with EACCES, as exec fails for a file that may not be executed, and one line on
//! stderr names the program, the reason and the fix.
//!
//! glibc's `execv`, `execvp`, `execvpe`, `execl*`, `fexecve`, `posix_spawn*`, `system` and
//! `popen` reach the kernel through glibc-internal calls, not the exported `execve`, so each is
//! replaced here (`execl`, `execle` and `execlp` in `variadic.c`, as stable Rust cannot define
//! variadic functions). `syscall(SYS_execve, …)` and `syscall(SYS_execveat, …)` come here
//! through the `syscall` replacement.
//!
//! `execve` and its relatives may run in a `vfork` child (Python's subprocess uses one) or a
//! signal handler, where only async-signal-safe functions may run. So these checks allocate
//! nothing, take no lock and call only system calls and libc functions resolved when the
//! library loaded. `posix_spawn*`, `system` and `popen` start their child with glibc's
//! internal exec, so they check in the caller, before the child exists.
//!
//! Under `netcon-ctl run --isolate`, statically linked and Go programs are allowed as that
//! option allows them. The variable that says so is inherited and any program can set it, so
//! it counts only together with the fact that makes such a program harmless: the process's
//! network namespace has no interface but loopback, so the program reaches that loopback at
//! most, as under `--isolate`. A program that makes such a namespace itself gains nothing it
//! could not do without netcon.
//!
//! Each exec also passes an environment that keeps the child on netcon ([`environment`]).

mod environment;
mod namespace;
mod spawn;

use std::ffi::CStr;
use std::fmt::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use libc::{c_char, c_int, c_long};
use netcon_program_check::{
    CStringArray, FileId, ISOLATED_ENV, Launch, PATH_MAX, Passed, Rejection, Scratch,
};

use crate::real;

/// The search path `execvp` uses when `PATH` is not set (glibc's `_CS_PATH`).
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// Whether `netcon-ctl run --isolate` started this process's first program.
static ISOLATED: AtomicBool = AtomicBool::new(false);

/// The device and inode of the dynamic loader, with 0 for the device until they are known.
static LOADER: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Prepares the checks when the library loads: resolves the libc functions they call, finds
/// the dynamic loader (which the checks tell apart from statically linked programs) and reads
/// whether `--isolate` is in force.
pub fn on_load() {
    real::resolve_for_exec();
    if let Some(loader) = netcon_program_check::running_loader() {
        LOADER[1].store(loader.inode, Ordering::Relaxed);
        LOADER[0].store(loader.device, Ordering::Relaxed);
    }
    // SAFETY: the name is NUL-terminated; constructors run before the program can change the
    // environment.
    let value = unsafe { libc::getenv(ISOLATED_ENV.as_ptr()) };
    // SAFETY: getenv returns null or a NUL-terminated string.
    let isolated = !value.is_null() && unsafe { CStr::from_ptr(value) } == c"1";
    ISOLATED.store(isolated, Ordering::Relaxed);
}

/// Prepares the environment entries every exec adds when they are missing. Runs while the
/// library loads, once the origin connection is named in the environment.
pub fn prepare_environment() {
    environment::prepare(ISOLATED.load(Ordering::Relaxed));
}

/// Calls `exec` with `envp` completed by [`environment::with_netcon_environment`]. Fails with
/// ENOMEM, after printing why, when the completed environment cannot be built.
///
/// # Safety
/// `envp` must be null or a null-terminated array of NUL-terminated strings.
unsafe fn exec_with_environment(
    envp: *const *mut c_char,
    exec: impl FnOnce(*const *mut c_char) -> c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    match unsafe { environment::with_netcon_environment(envp, exec) } {
        Ok(result) => result,
        Err(environment::NoMemory) => {
            print_line(format_args!(
                "netcon: exec failed with ENOMEM: no memory to add the netcon preload's \
                 variables to the program's environment"
            ));
            real::set_errno(libc::ENOMEM);
            -1
        }
    }
}

/// Returns the dynamic loader's identity, once [`on_load`] has found it.
fn loader() -> Option<FileId> {
    let device = LOADER[0].load(Ordering::Relaxed);
    let inode = LOADER[1].load(Ordering::Relaxed);
    (device != 0 || inode != 0).then_some(FileId { device, inode })
}

/// An exec's `argv` and `envp`, read only when the program turns out to be the dynamic
/// loader, whose arguments name the program it runs.
struct Arguments<'a> {
    args: CStringArray<'a>,
    env: CStringArray<'a>,
}

impl<'a> Arguments<'a> {
    /// # Safety
    /// `argv` and `envp` must each be null or a null-terminated array of NUL-terminated
    /// strings, as exec requires.
    unsafe fn new(argv: *const *mut c_char, envp: *const *mut c_char) -> Arguments<'a> {
        // SAFETY: the caller's contract; exec's arguments stay unchanged during the call.
        unsafe {
            Arguments {
                args: CStringArray::new(argv.cast()),
                env: CStringArray::new(envp.cast()),
            }
        }
    }

    fn launch(&'a self) -> Launch<'a> {
        Launch {
            args: &self.args,
            env: &self.env,
            loader: loader(),
        }
    }
}

/// Returns whether the program at `path` may run with `arguments`, after printing why when
/// it may not.
///
/// # Safety
/// `path` must be null or a NUL-terminated string.
unsafe fn path_permitted(path: *const c_char, arguments: &Arguments<'_>) -> bool {
    if path.is_null() {
        // exec fails with EFAULT itself.
        return true;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let path = unsafe { CStr::from_ptr(path) };
    let mut scratch = Scratch::new();
    let launch = arguments.launch();
    permitted(netcon_program_check::check_path(
        path,
        &launch,
        &mut scratch,
    ))
}

/// Returns whether the program `execvp(file, …)` would run may run: `file` itself when it
/// contains a slash, else the first executable of that name on the caller's `PATH`.
///
/// # Safety
/// `file` must be null or a NUL-terminated string.
unsafe fn search_permitted(file: *const c_char, arguments: &Arguments<'_>) -> bool {
    if file.is_null() {
        return true;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(file) };
    if name.to_bytes().contains(&b'/') {
        // SAFETY: as above.
        return unsafe { path_permitted(file, arguments) };
    }
    // SAFETY: the name is NUL-terminated. getenv reads the environment without allocating.
    let value = unsafe { libc::getenv(c"PATH".as_ptr()) };
    let search_path = match value.is_null() {
        true => DEFAULT_PATH,
        // SAFETY: getenv returned a NUL-terminated string.
        false => unsafe { CStr::from_ptr(value) }.to_bytes(),
    };
    let mut found = [0u8; PATH_MAX];
    match netcon_program_check::find_in_path(name.to_bytes(), search_path, &mut found) {
        // SAFETY: the found path is NUL-terminated.
        Some(path) => unsafe { path_permitted(path.as_ptr(), arguments) },
        // exec fails with ENOENT or EACCES itself.
        None => true,
    }
}

/// Returns whether the program open as `fd` may run, after printing why when it may not.
fn fd_permitted(fd: c_int, arguments: &Arguments<'_>) -> bool {
    let mut scratch = Scratch::new();
    let launch = arguments.launch();
    permitted(netcon_program_check::check_fd(fd, &launch, &mut scratch))
}

/// Returns whether a checked program may run: it passed, or it fails only in ways
/// `--isolate` allows and this process is isolated. Prints the reason either way it did not
/// pass.
fn permitted(result: Result<Passed, Rejection<'_>>) -> bool {
    let Err(rejection) = result else {
        return true;
    };
    let first_report = first_report(rejection.file);
    if rejection.reason.allowed_isolated()
        && ISOLATED.load(Ordering::Relaxed)
        && namespace::holds_only_loopback()
    {
        if first_report {
            let warning = rejection.isolated_warning();
            print_line(format_args!("netcon: warning: {warning}"));
        }
        return true;
    }
    if first_report {
        print_line(format_args!("netcon: exec failed with EACCES: {rejection}"));
    }
    false
}

/// Returns whether `file` is not the file this process reported last, and records it. A
/// `PATH` search may meet one file under two names (`/usr/bin/hey` and `/bin/hey` where
/// `/bin` links to `/usr/bin`), and then prints one line. The pid is part of the record
/// because a `vfork` child writes its parent's memory.
fn first_report(file: FileId) -> bool {
    static LAST: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u64;
    let record = [pid, file.device, file.inode];
    let repeated = LAST
        .iter()
        .zip(record)
        .all(|(slot, value)| slot.load(Ordering::Relaxed) == value);
    for (slot, value) in LAST.iter().zip(record) {
        slot.store(value, Ordering::Relaxed);
    }
    !repeated
}

/// Fails an exec call that was not allowed.
fn reject() -> c_int {
    real::set_errno(libc::EACCES);
    -1
}

/// Writes one line to stderr, formatted into a buffer on the stack that is written out each
/// time it fills, so nothing is allocated.
fn print_line(args: fmt::Arguments<'_>) {
    let mut line = StderrLine {
        buffer: [0; 512],
        len: 0,
    };
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    line.flush();
}

struct StderrLine {
    buffer: [u8; 512],
    len: usize,
}

impl StderrLine {
    fn flush(&mut self) {
        let mut written = 0;
        while written < self.len {
            let rest = &self.buffer[written..self.len];
            // SAFETY: rest is valid for reads of its length.
            let count = unsafe { real::write(2, rest.as_ptr().cast(), rest.len()) };
            if count <= 0 {
                break;
            }
            written += count as usize;
        }
        self.len = 0;
    }
}

impl Write for StderrLine {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            if self.len == self.buffer.len() {
                self.flush();
            }
            self.buffer[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

/// Replaces `execve(2)`: runs the program only if the preload will see its sockets.
///
/// # Safety
/// The same contract as `execve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: exec's contract: path is null or NUL-terminated, argv and envp are arrays.
    let permitted = unsafe { path_permitted(path, &Arguments::new(argv, envp)) };
    if !permitted {
        return reject();
    }
    // SAFETY: the program's own arguments, with the environment completed.
    unsafe { exec_with_environment(envp, |envp| real::execve(path, argv, envp)) }
}

/// Replaces `execv(3)`, which is `execve` with the process's environment (`environ`).
///
/// # Safety
/// The same contract as `execv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *mut c_char) -> c_int {
    let envp = environment::current_environ();
    // SAFETY: as for execve.
    let permitted = unsafe { path_permitted(path, &Arguments::new(argv, envp)) };
    if !permitted {
        return reject();
    }
    // SAFETY: the program's own arguments, with its environment completed.
    unsafe { exec_with_environment(envp, |envp| real::execve(path, argv, envp)) }
}

/// Replaces `execvp(3)`: checks the file a `PATH` search finds, then lets glibc search and
/// exec as usual.
///
/// # Safety
/// The same contract as `execvp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *mut c_char) -> c_int {
    // execvp is execvpe with the process's environment.
    let envp = environment::current_environ();
    // SAFETY: exec's contract: file is null or NUL-terminated, argv an array.
    let permitted = unsafe { search_permitted(file, &Arguments::new(argv, envp)) };
    if !permitted {
        return reject();
    }
    // SAFETY: the program's own arguments, with its environment completed.
    unsafe { exec_with_environment(envp, |envp| real::execvpe(file, argv, envp)) }
}

/// Replaces `execvpe(3)`, which searches the caller's `PATH` (not the one in `envp`), as
/// `execvp` does.
///
/// # Safety
/// The same contract as `execvpe`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: as for execvp.
    let permitted = unsafe { search_permitted(file, &Arguments::new(argv, envp)) };
    if !permitted {
        return reject();
    }
    // SAFETY: the program's own arguments, with the environment completed.
    unsafe { exec_with_environment(envp, |envp| real::execvpe(file, argv, envp)) }
}

/// Replaces `fexecve(3)`: the program is the open file `fd`.
///
/// # Safety
/// The same contract as `fexecve`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fexecve(
    fd: c_int,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: exec's contract: argv and envp are arrays.
    let arguments = unsafe { Arguments::new(argv, envp) };
    if !fd_permitted(fd, &arguments) {
        return reject();
    }
    // SAFETY: the program's own arguments, with the environment completed.
    unsafe { exec_with_environment(envp, |envp| real::fexecve(fd, argv, envp)) }
}

/// Replaces `execveat(2)` (a glibc function since 2.34): the program is `path` relative to
/// `dirfd`, or `dirfd` itself with `AT_EMPTY_PATH` and an empty path.
///
/// # Safety
/// The same contract as `execveat`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
    flags: c_int,
) -> c_int {
    // SAFETY: execveat's contract: path is null or NUL-terminated, argv and envp arrays.
    let permitted = unsafe { at_permitted(dirfd, path, flags, &Arguments::new(argv, envp)) };
    if !permitted {
        return reject();
    }
    let exec = |envp: *const *mut c_char| {
        let args = [
            dirfd as c_long,
            path as c_long,
            argv as c_long,
            envp as c_long,
            flags as c_long,
            0,
        ];
        // SAFETY: the program's own arguments, with the environment completed, passed to the
        // system call glibc's execveat makes.
        unsafe { real::syscall(libc::SYS_execveat, args) as c_int }
    };
    // SAFETY: execveat's contract: envp is null or a null-terminated array.
    unsafe { exec_with_environment(envp, exec) }
}

/// Returns whether the program `execveat(dirfd, path, …, flags)` would run may run.
///
/// # Safety
/// `path` must be null or a NUL-terminated string.
unsafe fn at_permitted(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    arguments: &Arguments<'_>,
) -> bool {
    if path.is_null() {
        return true;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(path) };
    if name.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        return fd_permitted(dirfd, arguments);
    }
    let nofollow = flags & libc::AT_SYMLINK_NOFOLLOW != 0;
    let mut scratch = Scratch::new();
    let launch = arguments.launch();
    let result = netcon_program_check::check_path_at(dirfd, name, nofollow, &launch, &mut scratch);
    permitted(result)
}

/// Handles `syscall(SYS_execve, …)` and `syscall(SYS_execveat, …)` for the `syscall`
/// replacement; `None` for other numbers.
///
/// # Safety
/// The same contract as the system call `number`.
pub unsafe fn exec_syscall(number: c_long, args: [c_long; 6]) -> Option<c_long> {
    let result = match number {
        // SAFETY: the arguments are execve's, as the caller's contract says.
        libc::SYS_execve => unsafe {
            execve(
                args[0] as *const c_char,
                args[1] as *const *mut c_char,
                args[2] as *const *mut c_char,
            )
        },
        // SAFETY: the arguments are execveat's.
        libc::SYS_execveat => unsafe {
            execveat(
                args[0] as c_int,
                args[1] as *const c_char,
                args[2] as *const *mut c_char,
                args[3] as *const *mut c_char,
                args[4] as c_int,
            )
        },
        _ => return None,
    };
    Some(c_long::from(result))
}
