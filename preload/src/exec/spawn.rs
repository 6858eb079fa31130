//! `posix_spawn`, `posix_spawnp`, `system` and `popen`: glibc starts their child with a
//! `clone(CLONE_VM | CLONE_VFORK)` and its internal exec, which this library cannot replace,
//! so the program is checked here, in the caller, before the child is made. `system` and
//! `popen` run `/bin/sh -c COMMAND`, so they check the shell. The shell then runs with the
//! preload, whose exec checks cover the programs the command starts.
//!
//! `posix_spawn*` get the completed environment as exec does. `system` and `popen` pass the
//! process's own environment through glibc-internal calls, so the preload's missing variables
//! are put back into that environment first.
//!
//! NOTE: a relative path given to `posix_spawn` is checked against the caller's working
//! directory, also when a `posix_spawn_file_actions_addchdir_np` action changes the child's
//! before exec.

use libc::{FILE, c_char, c_int, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t};

use super::environment::{self, NoMemory};
use super::{Arguments, path_permitted, print_line, search_permitted};
use crate::real;

/// The shell `system` and `popen` run (`_PATH_BSHELL`).
const SHELL: &std::ffi::CStr = c"/bin/sh";

/// The status `system` returns when the shell cannot be executed: as if it had called
/// `_exit(127)`, as POSIX asks.
const SHELL_NOT_EXECUTED: c_int = 127 << 8;

/// Replaces `posix_spawn(3)`: returns EACCES without starting a child when the program fails
/// the check.
///
/// # Safety
/// The same contract as `posix_spawn`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attributes: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: posix_spawn's contract: path is NUL-terminated, argv and envp are arrays.
    let permitted = unsafe { path_permitted(path, &Arguments::new(argv, envp)) };
    if !permitted {
        return libc::EACCES;
    }
    // SAFETY: the program's own arguments, with the environment completed.
    unsafe {
        spawn_with_environment(envp, |envp| {
            real::posix_spawn(pid, path, actions, attributes, argv, envp)
        })
    }
}

/// Replaces `posix_spawnp(3)`, which searches the caller's `PATH` as `execvp` does.
///
/// # Safety
/// The same contract as `posix_spawnp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attributes: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: posix_spawnp's contract: file is NUL-terminated, argv and envp are arrays.
    let permitted = unsafe { search_permitted(file, &Arguments::new(argv, envp)) };
    if !permitted {
        return libc::EACCES;
    }
    // SAFETY: the program's own arguments, with the environment completed.
    unsafe {
        spawn_with_environment(envp, |envp| {
            real::posix_spawnp(pid, file, actions, attributes, argv, envp)
        })
    }
}

/// Calls a `posix_spawn` function with `envp` completed, and returns its result, or ENOMEM
/// when the completed environment cannot be built.
///
/// # Safety
/// `envp` must be null or a null-terminated array of NUL-terminated strings.
unsafe fn spawn_with_environment(
    envp: *const *mut c_char,
    spawn: impl FnOnce(*const *mut c_char) -> c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    match unsafe { environment::with_netcon_environment(envp, spawn) } {
        Ok(result) => result,
        Err(NoMemory) => {
            print_line(format_args!(
                "netcon: posix_spawn failed with ENOMEM: no memory to add the netcon \
                 preload's variables to the program's environment"
            ));
            libc::ENOMEM
        }
    }
}

/// Returns whether `/bin/sh -c COMMAND` may run, after printing why when it may not.
fn shell_permitted(command: *const c_char) -> bool {
    let argv = [c"sh".as_ptr(), c"-c".as_ptr(), command, std::ptr::null()];
    let envp = environment::current_environ();
    // SAFETY: argv is a null-terminated array of NUL-terminated strings (command is one, by
    // the contracts of system and popen), and envp is libc's environment.
    unsafe { path_permitted(SHELL.as_ptr(), &Arguments::new(argv.as_ptr().cast(), envp)) }
}

/// Replaces `system(3)`: returns the status of a shell that could not be executed when
/// `/bin/sh` fails the check. `system(NULL)`, which only asks whether a shell exists, is
/// passed on.
///
/// # Safety
/// The same contract as `system`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn system(command: *const c_char) -> c_int {
    if !command.is_null() && !shell_permitted(command) {
        real::set_errno(libc::EACCES);
        return SHELL_NOT_EXECUTED;
    }
    if !command.is_null() {
        environment::repair_process_environment();
    }
    // SAFETY: the program's own argument, passed on unchanged.
    unsafe { real::system(command) }
}

/// Replaces `popen(3)`: fails with EACCES when `/bin/sh` fails the check.
///
/// # Safety
/// The same contract as `popen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn popen(command: *const c_char, mode: *const c_char) -> *mut FILE {
    if !shell_permitted(command) {
        real::set_errno(libc::EACCES);
        return std::ptr::null_mut();
    }
    environment::repair_process_environment();
    // SAFETY: the program's own arguments, passed on unchanged.
    unsafe { real::popen(command, mode) }
}
