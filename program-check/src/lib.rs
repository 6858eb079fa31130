//! Decides whether the netcon preload will see a program's sockets, before the program is
//! executed. It will not see them when the program, or the interpreter its `#!` line names,
//! is one of three kinds of ELF file. A statically linked one runs no dynamic loader. A Go
//! program's runtime makes socket system calls without libc. And where exec runs in secure
//! mode, the loader ignores `LD_PRELOAD`. The dynamic loader itself, run as a program, is
//! judged by the program its arguments name ([`loader`]).
//!
//! `netcon-ctl run` checks the program it starts, and the preload checks every program a
//! program starts through the exec family. Exec may be called in a `vfork` child or a signal
//! handler, where only async-signal-safe functions may run, so this crate uses no allocator
//! (it is `no_std` without `alloc`), takes no lock, and makes only plain system calls: open,
//! pread, fstat, fstatvfs, fgetxattr, stat and close. Its stack holds the file's first
//! 2 KiB, a 512-byte read buffer and small fields, besides the caller's [`Scratch`].

#![no_std]

#[cfg(test)]
extern crate std;

mod elf;
mod file;
mod loader;
mod message;
mod search;
mod strings;

use core::ffi::{CStr, c_int};

pub use loader::{LoaderProblem, file_id, interpreter_id, running_loader};
pub use message::IsolatedWarning;
pub use search::{PATH_MAX, find_in_path, is_executable_file};
pub use strings::{CStringArray, NO_STRINGS, StringList};

use elf::ElfHeader;
use file::ExecFile;
use loader::LoaderRejection;

/// The environment variable `netcon-ctl run --isolate` sets (to `1`) for the program it
/// starts, so the preload lets that program start the statically linked and Go programs that
/// [`Reason::allowed_isolated`] names.
pub const ISOLATED_ENV: &CStr = c"NETCON_ISOLATED";

/// Linux follows at most this many `#!` interpreters (BINPRM_MAX_RECURSION in fs/exec.c).
const MAX_SCRIPT_DEPTH: usize = 4;

/// The bytes Linux reads to find a `#!` line (BINPRM_BUF_SIZE in linux/binfmts.h), so an
/// interpreter path is shorter.
const SCRIPT_HEAD: usize = 256;

/// A reason the preload would not see a program's sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The program is an ELF file without a PT_INTERP header, so no dynamic loader runs.
    StaticElf,
    /// The Go linker built the program. Go's runtime makes socket system calls itself, not
    /// through libc, so the preload loads but never sees its connections.
    GoProgram,
    /// Exec would change the effective user or group id (to `id`), so the loader ignores
    /// `LD_PRELOAD`.
    SetId { bit: SetIdBit, id: u32 },
    /// The file has capabilities and the caller is not root, so exec runs in secure mode.
    FileCapabilities,
    /// The program is the dynamic loader, and its arguments do not show which program it
    /// would run.
    LoaderArguments(LoaderProblem),
}

/// The mode bit behind [`Reason::SetId`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetIdBit {
    User,
    Group,
}

impl Reason {
    /// Returns whether `netcon-ctl run --isolate` runs the program anyway: its sockets bypass
    /// netcon, but in a namespace holding only loopback they reach nothing else. Programs that
    /// would gain privileges stay rejected.
    pub fn allowed_isolated(self) -> bool {
        matches!(
            self,
            Reason::StaticElf | Reason::GoProgram | Reason::LoaderArguments(_)
        )
    }

    /// Returns whether the dynamic loader still loads the preload into the program.
    pub fn preload_loads(self) -> bool {
        matches!(self, Reason::GoProgram)
    }
}

/// A program the preload would not see into, and why. `path` is the file the reason is
/// about: the program, the interpreter its `#!` line names, or the program the dynamic loader
/// is asked to run, and `file` identifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection<'a> {
    pub path: &'a [u8],
    pub reason: Reason,
    pub file: FileId,
}

/// A file's device and inode numbers, which tell whether two paths name the same file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileId {
    pub device: u64,
    pub inode: u64,
}

/// The outcome of a check that passed: the program runs, or the dynamic loader alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passed {
    /// The program, with the preload loaded. A file the check cannot read or does not
    /// recognise passes this way too, and exec or the loader reports its errors.
    Program,
    /// The dynamic loader alone: it lists or verifies a program's libraries (`ldd`), or prints
    /// its usage or version, and runs no program, so no preload reports that it loaded.
    LoaderAlone,
}

/// The arguments and environment of an exec, and the system's dynamic loader. The loader, run
/// as a program, reads them to choose the program it runs.
#[derive(Clone, Copy)]
pub struct Launch<'a> {
    /// The arguments exec passes, the program's name first.
    pub args: &'a dyn StringList,
    /// The environment exec passes.
    pub env: &'a dyn StringList,
    /// The dynamic loader of this system (see [`interpreter_id`]). Without it, the loader is
    /// checked as the statically linked program it appears to be, and rejected.
    pub loader: Option<FileId>,
}

impl<'a> Launch<'a> {
    /// Returns a launch with no arguments or environment, for a program that is surely not
    /// the dynamic loader.
    pub fn without_arguments(loader: Option<FileId>) -> Launch<'a> {
        Launch {
            args: NO_STRINGS,
            env: NO_STRINGS,
            loader,
        }
    }
}

impl<'a> Rejection<'a> {
    /// Returns the warning printed when `--isolate` runs the program despite the rejection.
    pub fn isolated_warning(self) -> IsolatedWarning<'a> {
        IsolatedWarning(self)
    }
}

/// Memory a check writes names into, which a [`Rejection`] may borrow: the interpreter of a
/// script, or `/dev/fd/N` for a program given as an open fd.
#[derive(Debug)]
pub struct Scratch {
    interpreter: [u8; SCRIPT_HEAD],
    fd_name: [u8; 24],
}

impl Scratch {
    /// Returns zeroed scratch memory.
    pub const fn new() -> Scratch {
        Scratch {
            interpreter: [0; SCRIPT_HEAD],
            fd_name: [0; 24],
        }
    }
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch::new()
    }
}

/// Checks the program at `path`, relative to the working directory, following `#!`
/// interpreters as exec does.
///
/// Files that cannot be opened or read, and files that are neither ELF nor scripts, pass:
/// exec reports their errors itself, and a file the check cannot read (mode `--x`) is not
/// checked.
pub fn check_path<'a>(
    path: &'a CStr,
    launch: &Launch<'a>,
    scratch: &'a mut Scratch,
) -> Result<Passed, Rejection<'a>> {
    check_path_at(libc::AT_FDCWD, path, false, launch, scratch)
}

/// Checks the program `execveat(dirfd, path, …)` would run: `path` relative to the directory
/// `dirfd` (or the working directory for `AT_FDCWD`), and with `nofollow` not through a
/// final symbolic link (`AT_SYMLINK_NOFOLLOW`).
pub fn check_path_at<'a>(
    dirfd: c_int,
    path: &'a CStr,
    nofollow: bool,
    launch: &Launch<'a>,
    scratch: &'a mut Scratch,
) -> Result<Passed, Rejection<'a>> {
    let Ok(file) = ExecFile::open_at(dirfd, path, nofollow) else {
        return Ok(Passed::Program);
    };
    follow(file, Named::Given, launch, scratch).map_err(|(reason, named, file)| Rejection {
        path: named.resolve(path.to_bytes(), scratch),
        reason,
        file,
    })
}

/// Checks the program open as `fd` (for `fexecve`, or `execveat` with `AT_EMPTY_PATH`),
/// which is named `/dev/fd/N` in a rejection, as Linux names such a program.
pub fn check_fd<'a>(
    fd: c_int,
    launch: &Launch<'a>,
    scratch: &'a mut Scratch,
) -> Result<Passed, Rejection<'a>> {
    let Ok(file) = ExecFile::borrow_fd(fd) else {
        return Ok(Passed::Program);
    };
    let prefix = b"/dev/fd/";
    scratch.fd_name[..prefix.len()].copy_from_slice(prefix);
    let digits = file::write_decimal(fd as u32, &mut scratch.fd_name[prefix.len()..]);
    let name_len = prefix.len() + digits;
    follow(file, Named::Fd(name_len), launch, scratch).map_err(|(reason, named, file)| Rejection {
        path: named.resolve(b"", scratch),
        reason,
        file,
    })
}

/// The name a rejection carries: the caller's path, the interpreter copied into the scratch
/// memory, or the fd name written there (each with its length), or an argument of the dynamic
/// loader.
#[derive(Clone, Copy)]
enum Named<'a> {
    Given,
    Interpreter(usize),
    Fd(usize),
    Argument(&'a [u8]),
}

impl<'a> Named<'a> {
    fn resolve(self, given: &'a [u8], scratch: &'a Scratch) -> &'a [u8] {
        match self {
            Named::Given => given,
            Named::Interpreter(len) => &scratch.interpreter[..len],
            Named::Fd(len) => &scratch.fd_name[..len],
            Named::Argument(argument) => argument,
        }
    }
}

/// A rejected program's reason, name and identity.
type Found<'a> = (Reason, Named<'a>, FileId);

/// Follows `#!` lines from `file` to an ELF file and checks it. Returns what runs when the
/// program passes, else the reason and the name and identity of the file it is about.
fn follow<'a>(
    mut file: ExecFile,
    mut named: Named<'a>,
    launch: &Launch<'a>,
    scratch: &mut Scratch,
) -> Result<Passed, Found<'a>> {
    for _ in 0..=MAX_SCRIPT_DEPTH {
        if let Some(line) = file.head().strip_prefix(b"#!") {
            let Some(next) = open_interpreter(line, scratch) else {
                return Ok(Passed::Program);
            };
            (file, named) = next;
            continue;
        }
        if launch.loader == Some(file.id()) {
            return check_loader(&file, named, launch);
        }
        let Some(header) = ElfHeader::parse(file.head()) else {
            return Ok(Passed::Program);
        };
        return match check_elf(&file, &header) {
            Some(reason) => Err((reason, named, file.id())),
            None => Ok(Passed::Program),
        };
    }
    Ok(Passed::Program)
}

/// Opens the interpreter a `#!` line names, after copying its path into the scratch memory.
/// Returns `None` when the line names none or the file cannot be opened.
fn open_interpreter<'a>(line: &[u8], scratch: &mut Scratch) -> Option<(ExecFile, Named<'a>)> {
    let len = copy_interpreter(line, &mut scratch.interpreter)?;
    let path = CStr::from_bytes_with_nul(&scratch.interpreter[..=len]).ok()?;
    let file = ExecFile::open_at(libc::AT_FDCWD, path, false).ok()?;
    Some((file, Named::Interpreter(len)))
}

/// Checks a run of the dynamic loader (`file`): the loader itself for secure mode, then the
/// program its arguments name. A script whose `#!` line names the loader is rejected, because
/// the loader's arguments then come from that line.
fn check_loader<'a>(
    file: &ExecFile,
    named: Named<'a>,
    launch: &Launch<'a>,
) -> Result<Passed, Found<'a>> {
    if let Named::Interpreter(_) = named {
        let reason = Reason::LoaderArguments(LoaderProblem::Script);
        return Err((reason, named, file.id()));
    }
    if let Some(reason) = check_secure_exec(file) {
        return Err((reason, named, file.id()));
    }
    loader::check_run(launch).map_err(|rejection| match rejection {
        LoaderRejection::Arguments(problem) => (Reason::LoaderArguments(problem), named, file.id()),
        LoaderRejection::Program { path, reason, file } => {
            (reason, Named::Argument(path.to_bytes()), file)
        }
    })
}

/// Copies the interpreter path of a `#!` line (the bytes after `#!`) into `out` with a NUL
/// after it, and returns its length. Returns `None` when the line names none. The path is
/// the first word of the line, as Linux reads it.
fn copy_interpreter(line: &[u8], out: &mut [u8; SCRIPT_HEAD]) -> Option<usize> {
    let line = &line[..line.len().min(SCRIPT_HEAD - 3)];
    let start = line.iter().position(|&b| b != b' ' && b != b'\t')?;
    let word = &line[start..];
    let len = word
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\0'))
        .unwrap_or(word.len());
    if len == 0 {
        return None;
    }
    out[..len].copy_from_slice(&word[..len]);
    out[len] = 0;
    Some(len)
}

/// Checks an ELF file and returns the reason it is rejected, if any. A file whose program
/// headers cannot be read passes, and one whose sections cannot be read shows no Go sections.
fn check_elf(file: &ExecFile, header: &ElfHeader) -> Option<Reason> {
    if !header.has_interp(file).ok()? {
        return Some(Reason::StaticElf);
    }
    if let Some(reason) = check_secure_exec(file) {
        return Some(reason);
    }
    match header.is_go(file) {
        Ok(true) => Some(Reason::GoProgram),
        Ok(false) | Err(_) => None,
    }
}

/// Returns the reason an exec of the file would set AT_SECURE, if any. A set-user-ID bit for
/// another user or a set-group-ID bit for another group does, unless the file system is
/// mounted nosuid. So do file capabilities, for a caller other than root.
fn check_secure_exec(file: &ExecFile) -> Option<Reason> {
    let stat = file.stat();
    // SAFETY: getuid and getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };

    let mode = stat.st_mode;
    let setuid = mode & libc::S_ISUID != 0 && stat.st_uid != uid;
    // Without group execute permission the set-group-ID bit means mandatory locking instead.
    let setgid = mode & libc::S_ISGID != 0 && mode & libc::S_IXGRP != 0 && stat.st_gid != gid;
    if (setuid || setgid) && !on_nosuid_mount(file) {
        let (bit, id) = match setuid {
            true => (SetIdBit::User, stat.st_uid),
            false => (SetIdBit::Group, stat.st_gid),
        };
        return Some(Reason::SetId { bit, id });
    }
    if uid != 0 && has_file_capabilities(file) {
        return Some(Reason::FileCapabilities);
    }
    None
}

fn on_nosuid_mount(file: &ExecFile) -> bool {
    // SAFETY: an all-zero statvfs is a valid value for fstatvfs to overwrite.
    let mut stat: libc::statvfs64 = unsafe { core::mem::zeroed() };
    // SAFETY: stat is valid for writes.
    let found = unsafe { libc::fstatvfs64(file.fd(), &mut stat) } == 0;
    found && stat.f_flag & libc::ST_NOSUID != 0
}

fn has_file_capabilities(file: &ExecFile) -> bool {
    // SAFETY: the name is NUL-terminated. With a null buffer of size 0 fgetxattr only returns
    // the value's size, so nothing is written.
    let size = unsafe {
        libc::fgetxattr(
            file.fd(),
            c"security.capability".as_ptr(),
            core::ptr::null_mut(),
            0,
        )
    };
    size > 0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::vec::Vec;
    use std::{format, fs, vec};

    /// Checks the file at `path` and returns the rejection's path and reason.
    pub(crate) fn check(path: &Path) -> Result<(), (PathBuf, Reason)> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let mut scratch = Scratch::new();
        let launch = Launch::without_arguments(None);
        let result = check_path(&c_path, &launch, &mut scratch).map_err(|rejection| {
            let bytes = std::os::unix::ffi::OsStrExt::from_bytes(rejection.path);
            (PathBuf::from(bytes as &std::ffi::OsStr), rejection.reason)
        });
        result.map(|passed| assert_eq!(passed, Passed::Program))
    }

    /// Checks the file at `path` started with `args` and `env`, with this system's dynamic
    /// loader known, and returns what runs or the rejection's path and reason.
    fn check_launch(
        path: &CStr,
        args: &[&CStr],
        env: &[&CStr],
    ) -> Result<Passed, (Vec<u8>, Reason)> {
        let loader = interpreter_id(c"/proc/self/exe");
        assert!(loader.is_some(), "the test program's loader was not found");
        let launch = Launch {
            args: &args,
            env: &env,
            loader,
        };
        let mut scratch = Scratch::new();
        check_path(path, &launch, &mut scratch).map_err(|r| (r.path.to_vec(), r.reason))
    }

    /// The dynamic loader of x86_64 Linux, as `ldd` names it.
    const LOADER: &CStr = c"/lib64/ld-linux-x86-64.so.2";

    #[test]
    fn loader_runs_dynamic_program() {
        let args = [LOADER, c"--argv0", c"true", c"/bin/true", c"--version"];
        assert_eq!(check_launch(LOADER, &args, &[]), Ok(Passed::Program));
    }

    #[test]
    fn loader_with_static_program_rejected() {
        let path = scratch_file("loader-static", &ElfBuilder::new(true, false).build());
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let run = [LOADER, c"--library-path", c"/tmp", c_path.as_c_str(), c"x"];
        let run_result = check_launch(LOADER, &run, &[]);
        let list = [LOADER, c"--list", c_path.as_c_str()];
        let list_result = check_launch(LOADER, &list, &[]);
        let traced = check_launch(LOADER, &run, &[c"LD_TRACE_LOADED_OBJECTS=1"]);
        fs::remove_file(&path).unwrap();

        let name = c_path.as_bytes().to_vec();
        assert_eq!(run_result, Err((name, Reason::StaticElf)));
        assert_eq!(list_result, Ok(Passed::LoaderAlone));
        assert_eq!(traced, Ok(Passed::LoaderAlone));
    }

    #[test]
    fn loader_with_go_program_rejected() {
        let go = ElfBuilder::new(true, false)
            .segment(elf::PT_INTERP, b"/lib64/ld-linux-x86-64.so.2\0".to_vec())
            .section(".gopclntab", vec![0; 8])
            .build();
        let path = scratch_file("loader-go", &go);
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let result = check_launch(LOADER, &[LOADER, c_path.as_c_str()], &[]);
        fs::remove_file(&path).unwrap();
        assert_eq!(result, Err((c_path.as_bytes().to_vec(), Reason::GoProgram)));
    }

    #[test]
    fn loader_arguments_problems_rejected() {
        let loader = LOADER.to_bytes().to_vec();
        let unknown = [LOADER, c"--new-option", c"/bin/true"];
        let expected = Reason::LoaderArguments(LoaderProblem::UnknownOption);
        assert_eq!(
            check_launch(LOADER, &unknown, &[]),
            Err((loader.clone(), expected))
        );
        let bare = [LOADER, c"true"];
        let expected = Reason::LoaderArguments(LoaderProblem::NameWithoutSlash);
        assert_eq!(check_launch(LOADER, &bare, &[]), Err((loader, expected)));
    }

    #[test]
    fn loader_without_program_alone() {
        assert_eq!(
            check_launch(LOADER, &[LOADER], &[]),
            Ok(Passed::LoaderAlone)
        );
        let itself = [LOADER, LOADER, c"/bin/true"];
        assert_eq!(check_launch(LOADER, &itself, &[]), Ok(Passed::LoaderAlone));
        let missing = [LOADER, c"/nonexistent/program"];
        assert_eq!(check_launch(LOADER, &missing, &[]), Ok(Passed::Program));
    }

    #[test]
    fn loader_unknown_is_static() {
        // Without the loader's identity the check finds an ELF file without PT_INTERP.
        let mut scratch = Scratch::new();
        let args = [LOADER, c"/bin/true"];
        let launch = Launch {
            args: &args,
            env: NO_STRINGS,
            loader: None,
        };
        let result = check_path(LOADER, &launch, &mut scratch).map_err(|r| r.reason);
        assert_eq!(result, Err(Reason::StaticElf));
    }

    #[test]
    fn loader_as_script_interpreter_rejected() {
        let dir = scratch_dir("loader-script");
        let script = dir.join("script");
        fs::write(&script, "#!/lib64/ld-linux-x86-64.so.2 /bin/true\n").unwrap();
        let c_script = CString::new(script.as_os_str().as_encoded_bytes()).unwrap();
        let result = check_launch(&c_script, &[c_script.as_c_str()], &[]);
        fs::remove_dir_all(&dir).unwrap();
        let expected = Reason::LoaderArguments(LoaderProblem::Script);
        assert_eq!(result, Err((LOADER.to_bytes().to_vec(), expected)));
    }

    #[test]
    fn dynamic_elf_passes() {
        assert_eq!(check(Path::new("/bin/true")), Ok(()));
    }

    #[test]
    fn text_file_passes() {
        assert_eq!(check(Path::new("/etc/hostname")), Ok(()));
        assert_eq!(check(Path::new("/nonexistent/program")), Ok(()));
    }

    #[test]
    fn interpreter_is_first_word() {
        let mut out = [0u8; SCRIPT_HEAD];
        assert_eq!(
            copy_interpreter(b" \t/bin/sh -e\nexit 0\n", &mut out),
            Some(7)
        );
        assert_eq!(&out[..8], b"/bin/sh\0");
        assert_eq!(
            copy_interpreter(b"/usr/bin/env\0python3", &mut out),
            Some(12)
        );
        assert_eq!(copy_interpreter(b"   \n/bin/sh", &mut out), None);
        assert_eq!(copy_interpreter(b"", &mut out), None);
    }

    #[test]
    fn script_names_static_interpreter() {
        let dir = scratch_dir("script");
        let interpreter = dir.join("static-interpreter");
        fs::write(&interpreter, ElfBuilder::new(true, false).build()).unwrap();
        let script = dir.join("script.sh");
        fs::write(&script, format!("#!{} -e\nexit 0\n", interpreter.display())).unwrap();
        let result = check(&script);
        let fine = dir.join("fine.sh");
        fs::write(&fine, "#!/bin/sh -e\nexit 0\n").unwrap();
        let fine_result = check(&fine);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(result, Err((interpreter, Reason::StaticElf)));
        assert_eq!(fine_result, Ok(()));
    }

    #[test]
    fn script_loop_passes() {
        // Linux fails such a loop with ELOOP, and the check leaves that to exec.
        let dir = scratch_dir("loop");
        let script = dir.join("self.sh");
        fs::write(&script, format!("#!{}\n", script.display())).unwrap();
        let result = check(&script);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn elf_without_interp_is_static() {
        let dir = scratch_dir("static");
        let path = dir.join("static");
        fs::write(
            &path,
            ElfBuilder::new(true, false).segment(1, vec![]).build(),
        )
        .unwrap();
        let result = check(&path);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(result, Err((path, Reason::StaticElf)));
    }

    #[test]
    fn go_programs_rejected() {
        let dynamic = ElfBuilder::new(true, false)
            .segment(elf::PT_INTERP, b"/lib64/ld-linux-x86-64.so.2\0".to_vec())
            .section(".go.buildinfo", vec![0; 32])
            .build();
        let path = scratch_file("go-dynamic", &dynamic);
        let result = check(&path);
        fs::remove_file(&path).unwrap();
        assert_eq!(result, Err((path, Reason::GoProgram)));
        assert!(Reason::GoProgram.allowed_isolated());
        assert!(Reason::GoProgram.preload_loads());

        // A statically linked Go program is rejected as static: the preload never loads.
        let fully_static = ElfBuilder::new(true, false)
            .section(".go.buildinfo", vec![0; 32])
            .build();
        let path = scratch_file("go-static", &fully_static);
        let result = check(&path);
        fs::remove_file(&path).unwrap();
        assert_eq!(result, Err((path, Reason::StaticElf)));
        assert!(Reason::StaticElf.allowed_isolated());
        assert!(!Reason::StaticElf.preload_loads());
    }

    #[test]
    fn fd_named_as_dev_fd() {
        let path = scratch_file("fd-static", &ElfBuilder::new(true, false).build());
        let file = fs::File::open(&path).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let mut scratch = Scratch::new();
        let launch = Launch::without_arguments(None);
        let result = check_fd(fd, &launch, &mut scratch).map_err(|r| (r.path.to_vec(), r.reason));
        let inode = std::os::unix::fs::MetadataExt::ino(&file.metadata().unwrap());
        fs::remove_file(&path).unwrap();
        let name = format!("/dev/fd/{fd}").into_bytes();
        assert_eq!(result, Err((name, Reason::StaticElf)));
        let id = check_fd(fd, &launch, &mut scratch).unwrap_err().file;
        assert_eq!(id.inode, inode);
        // The caller's fd stays open.
        assert!(file.metadata().is_ok());
    }

    #[test]
    fn fifo_passes_without_blocking() {
        // Opening a FIFO for reading blocks until a writer comes; exec fails on it anyway.
        let dir = scratch_dir("fifo");
        let fifo = dir.join("fifo");
        let c_fifo = CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c_fifo is NUL-terminated.
        assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o755) }, 0);
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || sender.send(check(&fifo)));
        let result = receiver.recv_timeout(std::time::Duration::from_secs(5));
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(result, Ok(Ok(())), "the check blocked on the FIFO");
    }

    #[test]
    fn unreadable_program_passes() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Root reads files of any mode, so the case cannot be made.
            return;
        }
        let path = scratch_file("unreadable", &ElfBuilder::new(true, false).build());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o111)).unwrap();
        let result = check(&path);
        fs::remove_file(&path).unwrap();
        assert_eq!(result, Ok(()));
    }

    pub(crate) fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("netcon-check-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    pub(crate) fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
        let file_name = format!("netcon-elf-{}-{name}", std::process::id());
        let path = std::env::temp_dir().join(file_name);
        fs::write(&path, bytes).unwrap();
        path
    }

    /// Builds an ELF file of either class and byte order with the given segments (type and
    /// contents) and named sections (name and contents).
    pub(crate) struct ElfBuilder {
        is_64: bool,
        big_endian: bool,
        segments: Vec<(u32, Vec<u8>)>,
        sections: Vec<(&'static str, Vec<u8>)>,
    }

    impl ElfBuilder {
        pub(crate) fn new(is_64: bool, big_endian: bool) -> ElfBuilder {
            ElfBuilder {
                is_64,
                big_endian,
                segments: Vec::new(),
                sections: Vec::new(),
            }
        }

        pub(crate) fn segment(mut self, kind: u32, contents: Vec<u8>) -> ElfBuilder {
            self.segments.push((kind, contents));
            self
        }

        pub(crate) fn section(mut self, name: &'static str, contents: Vec<u8>) -> ElfBuilder {
            self.sections.push((name, contents));
            self
        }

        /// Writes `value` as `width` bytes at `at` in the builder's byte order.
        fn put(&self, bytes: &mut [u8], at: usize, width: usize, value: u64) {
            let all = if self.big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            let field = if self.big_endian {
                &all[8 - width..]
            } else {
                &all[..width]
            };
            bytes[at..at + width].copy_from_slice(field);
        }

        pub(crate) fn build(&self) -> Vec<u8> {
            let (word, phentsize, shentsize) = if self.is_64 { (8, 56, 64) } else { (4, 32, 40) };
            let mut file = vec![0u8; 64];
            file[..4].copy_from_slice(b"\x7fELF");
            file[4] = if self.is_64 { 2 } else { 1 };
            file[5] = if self.big_endian { 2 } else { 1 };

            // Program headers, then each segment's contents.
            let phoff = file.len();
            file.resize(phoff + phentsize * self.segments.len(), 0);
            for (index, (kind, contents)) in self.segments.iter().enumerate() {
                let entry = phoff + index * phentsize;
                let offset = file.len() as u64;
                file.extend(contents);
                self.put(&mut file, entry, 4, u64::from(*kind));
                if self.is_64 {
                    self.put(&mut file, entry + 8, 8, offset);
                    self.put(&mut file, entry + 32, 8, contents.len() as u64);
                } else {
                    self.put(&mut file, entry + 4, 4, offset);
                    self.put(&mut file, entry + 16, 4, contents.len() as u64);
                }
            }

            // Section contents, the name table last, then the section headers with the null
            // section first.
            let mut names = vec![0u8];
            let mut placed = Vec::new();
            for (name, contents) in &self.sections {
                placed.push((names.len() as u64, file.len() as u64, contents.len() as u64));
                names.extend(name.as_bytes());
                names.push(0);
                file.extend(contents);
            }
            placed.push((0, file.len() as u64, names.len() as u64));
            file.extend(&names);
            let shoff = file.len();
            file.resize(shoff + shentsize * (placed.len() + 1), 0);
            for (index, (name, offset, size)) in placed.iter().enumerate() {
                let entry = shoff + (index + 1) * shentsize;
                self.put(&mut file, entry, 4, *name);
                let (offset_at, size_at) = if self.is_64 { (24, 32) } else { (16, 20) };
                self.put(&mut file, entry + offset_at, word, *offset);
                self.put(&mut file, entry + size_at, word, *size);
            }

            let header = if self.is_64 {
                [
                    (32, 8, phoff),
                    (40, 8, shoff),
                    (54, 2, phentsize),
                    (58, 2, shentsize),
                ]
            } else {
                [
                    (28, 4, phoff),
                    (32, 4, shoff),
                    (42, 2, phentsize),
                    (46, 2, shentsize),
                ]
            };
            for (at, width, value) in header {
                self.put(&mut file, at, width, value as u64);
            }
            let (phnum_at, shnum_at, shstrndx_at) = if self.is_64 {
                (56, 60, 62)
            } else {
                (44, 48, 50)
            };
            self.put(&mut file, phnum_at, 2, self.segments.len() as u64);
            self.put(&mut file, shnum_at, 2, placed.len() as u64 + 1);
            self.put(&mut file, shstrndx_at, 2, placed.len() as u64);
            file
        }
    }

    /// Returns one note with `name` (NUL-terminated in the file), `kind` and an 8-byte
    /// description, in the given byte order.
    pub(crate) fn note(name: &str, kind: u32, big_endian: bool) -> Vec<u8> {
        let word = |value: u32| {
            if big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            }
        };
        let mut name = name.as_bytes().to_vec();
        name.push(0);
        let mut bytes = Vec::new();
        bytes.extend(word(name.len() as u32));
        bytes.extend(word(8));
        bytes.extend(word(kind));
        bytes.extend(&name);
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        bytes.extend(b"buildid!");
        bytes
    }
}
