//! Checks, before a program is started, that the netcon preload will see its sockets: the
//! program (or its script interpreter) must be a dynamically linked ELF that does not run in
//! secure-execution mode, and not a Go program, whose runtime makes socket system calls
//! without libc.

mod elf;

use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Linux follows at most this many `#!` interpreters (BINPRM_MAX_RECURSION in fs/exec.c).
const MAX_SCRIPT_DEPTH: usize = 4;

use elf::ElfHeader;
#[cfg(test)]
use elf::PT_INTERP;

/// A reason the preload library would not see a program's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The program is an ELF file without a PT_INTERP header, so no dynamic loader runs.
    StaticElf { path: PathBuf },
    /// The Go linker built the program. Go's runtime makes socket system calls itself, not
    /// through libc, so the preload loads but never sees its connections.
    GoProgram { path: PathBuf },
    /// Exec would change the effective user or group id (to `id`), so the loader ignores
    /// `LD_PRELOAD`.
    SetId {
        path: PathBuf,
        bit: &'static str,
        id: u32,
    },
    /// The file has capabilities and the caller is not root, so exec runs in secure mode.
    FileCapabilities { path: PathBuf },
}

impl Rejection {
    /// Returns whether `netcon-ctl run --isolate` runs the program anyway: its sockets bypass
    /// netcon, but in a namespace holding only loopback they reach nothing else. Programs that
    /// would gain privileges stay rejected.
    pub fn allowed_isolated(&self) -> bool {
        matches!(
            self,
            Rejection::StaticElf { .. } | Rejection::GoProgram { .. }
        )
    }

    /// Returns whether the dynamic loader still loads the preload into the program, so its
    /// ready line can be awaited.
    pub fn preload_loads(&self) -> bool {
        matches!(self, Rejection::GoProgram { .. })
    }

    /// Returns the warning printed when `--isolate` runs a program despite this rejection.
    pub fn isolated_warning(&self) -> String {
        let what = match self {
            Rejection::StaticElf { path } => format!("{} is statically linked", path.display()),
            Rejection::GoProgram { path } => format!("{} is a Go program", path.display()),
            Rejection::SetId { path, .. } | Rejection::FileCapabilities { path } => {
                format!("{} runs in secure mode", path.display())
            }
        };
        format!(
            "{what}, so its sockets bypass netcon; with --isolate it has loopback only and no \
             network"
        )
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::StaticElf { path } => write!(
                f,
                "{} is statically linked (no ELF interpreter), so LD_PRELOAD cannot load the \
                 netcon preload into it and its connections would bypass netcon; use a \
                 dynamically linked build of the program, or add --isolate to run it with \
                 loopback only and no network",
                path.display()
            ),
            Rejection::GoProgram { path } => write!(
                f,
                "{} is a Go program: Go makes its socket system calls directly instead of \
                 through libc, so the netcon preload cannot intercept its connections and they \
                 would bypass netcon; add --isolate to run it with loopback only and no network",
                path.display()
            ),
            Rejection::SetId { path, bit, id } => write!(
                f,
                "{} is {bit} (to id {id}), so the dynamic loader runs it in secure mode \
                 and ignores LD_PRELOAD; run a copy without the {bit} bit",
                path.display()
            ),
            Rejection::FileCapabilities { path } => write!(
                f,
                "{} has file capabilities, so the dynamic loader runs it in secure mode and \
                 ignores LD_PRELOAD; run it as root or run a copy without capabilities",
                path.display()
            ),
        }
    }
}

/// Finds `program` the way `execvp` does: as given when it contains a slash, else in the first
/// `PATH` directory holding an executable regular file of that name.
///
/// Returns `None` when there is no such file.
pub fn find_program(program: &OsStr) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
}

/// Checks that the preload can load into the program at `path`, following `#!` interpreters.
///
/// Files that cannot be read or are not ELF pass: exec reports their errors itself, and
/// `netcon-ctl run` still waits for the preload's ready line.
pub fn check_program(path: &Path) -> Result<(), Rejection> {
    let mut current = path.to_path_buf();
    for _ in 0..=MAX_SCRIPT_DEPTH {
        match read_kind(&current) {
            Ok(FileKind::Script { interpreter }) => current = interpreter,
            Ok(FileKind::Elf {
                has_interpreter,
                is_go,
            }) => {
                if !has_interpreter {
                    return Err(Rejection::StaticElf { path: current });
                }
                check_secure_exec(&current)?;
                if is_go {
                    return Err(Rejection::GoProgram { path: current });
                }
                return Ok(());
            }
            Ok(FileKind::Other) | Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// The kind of executable a file's first bytes show.
#[derive(Debug, PartialEq, Eq)]
enum FileKind {
    Script { interpreter: PathBuf },
    Elf { has_interpreter: bool, is_go: bool },
    Other,
}

fn read_kind(path: &Path) -> io::Result<FileKind> {
    let mut file = File::open(path)?;
    let mut head = [0u8; 256];
    let len = read_up_to(&mut file, &mut head)?;
    let head = &head[..len];

    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
        let interpreter = line
            .split(|&b| b == b' ' || b == b'\t')
            .find(|word| !word.is_empty())
            .unwrap_or_default();
        let interpreter = PathBuf::from(OsStr::from_bytes(interpreter));
        return Ok(FileKind::Script { interpreter });
    }
    match ElfHeader::parse(head) {
        Some(header) => Ok(FileKind::Elf {
            has_interpreter: header.has_interp(&mut file)?,
            // A section table that cannot be read shows no Go sections.
            is_go: header.is_go(&mut file).unwrap_or(false),
        }),
        None => Ok(FileKind::Other),
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..])? {
            0 => break,
            n => len += n,
        }
    }
    Ok(len)
}

/// Rejects an ELF file whose exec would set AT_SECURE: a set-user-ID bit for another user, a
/// set-group-ID bit for another group, or file capabilities gained by a non-root caller.
fn check_secure_exec(path: &Path) -> Result<(), Rejection> {
    let Ok(meta) = fs::metadata(path) else {
        return Ok(());
    };
    // SAFETY: getuid and getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let set_ids_honoured = !on_nosuid_mount(path);

    let mode = meta.mode();
    if set_ids_honoured && mode & libc::S_ISUID != 0 && meta.uid() != uid {
        let path = path.to_path_buf();
        return Err(Rejection::SetId {
            path,
            bit: "set-user-ID",
            id: meta.uid(),
        });
    }
    // Without group execute permission the set-group-ID bit means mandatory locking instead.
    let setgid = mode & libc::S_ISGID != 0 && mode & libc::S_IXGRP != 0;
    if set_ids_honoured && setgid && meta.gid() != gid {
        let path = path.to_path_buf();
        return Err(Rejection::SetId {
            path,
            bit: "set-group-ID",
            id: meta.gid(),
        });
    }
    if uid != 0 && has_file_capabilities(path) {
        return Err(Rejection::FileCapabilities {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

fn on_nosuid_mount(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c_path is a valid NUL-terminated string and stat points to writable memory of
    // the right type; statvfs writes only into it.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        libc::statvfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_flag & libc::ST_NOSUID != 0
    }
}

fn has_file_capabilities(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: both strings are NUL-terminated. With a null buffer of size 0 getxattr only
    // returns the value's size, so nothing is written.
    let size = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c"security.capability".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    size > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_elf_passes() {
        assert_eq!(check_program(Path::new("/bin/true")), Ok(()));
    }

    #[test]
    fn shell_script_follows_interpreter() {
        let dir = scratch_dir("script");
        let script = dir.join("script.sh");
        fs::write(&script, "#!/bin/sh -e\nexit 0\n").unwrap();
        let kind = read_kind(&script).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            kind,
            FileKind::Script {
                interpreter: PathBuf::from("/bin/sh")
            }
        );
    }

    #[test]
    fn dynamic_elf_has_interpreter() {
        let kind = read_kind(Path::new("/bin/true")).unwrap();
        assert_eq!(
            kind,
            FileKind::Elf {
                has_interpreter: true,
                is_go: false,
            }
        );
    }

    #[test]
    fn text_file_is_other() {
        let kind = read_kind(Path::new("/etc/hostname")).unwrap();
        assert_eq!(kind, FileKind::Other);
    }

    /// Returns a little-endian ELF64 file header followed by program headers of `types`.
    fn elf64_with_headers(types: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2; // ELFCLASS64
        bytes[5] = 1; // ELFDATA2LSB
        bytes[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        bytes[56..58].copy_from_slice(&(types.len() as u16).to_le_bytes()); // e_phnum
        for &kind in types {
            let mut entry = vec![0u8; 56];
            entry[..4].copy_from_slice(&kind.to_le_bytes());
            bytes.extend(entry);
        }
        bytes
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("netcon-check-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn elf_without_interp_is_static() {
        let dir = scratch_dir("static");
        let path = dir.join("static");
        let pt_load = 1;
        fs::write(&path, elf64_with_headers(&[pt_load])).unwrap();
        let result = check_program(&path);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(result, Err(Rejection::StaticElf { path }));
    }

    #[test]
    fn elf_with_interp_is_dynamic() {
        let dir = scratch_dir("dynamic");
        let path = dir.join("dynamic");
        fs::write(&path, elf64_with_headers(&[6, PT_INTERP, 1])).unwrap();
        let kind = read_kind(&path).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            kind,
            FileKind::Elf {
                has_interpreter: true,
                is_go: false,
            }
        );
    }

    #[test]
    fn setuid_other_owner_rejected() {
        if !crate::topology::require_root("setuid_other_owner_rejected") {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch_dir("setuid");
        let path = dir.join("true");
        fs::copy("/bin/true", &path).unwrap();
        let nobody = 65534;
        std::os::unix::fs::chown(&path, Some(nobody), None).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o4755)).unwrap();
        let other_owner = check_program(&path);

        // Root running a set-user-ID-root file keeps its ids, so the loader honours LD_PRELOAD.
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o4755)).unwrap();
        let own = check_program(&path);
        fs::remove_dir_all(&dir).unwrap();

        let bit = "set-user-ID";
        let expected = Rejection::SetId {
            path: path.clone(),
            bit,
            id: nobody,
        };
        if on_nosuid_mount(&std::env::temp_dir()) {
            assert_eq!(other_owner, Ok(()));
        } else {
            assert_eq!(other_owner, Err(expected));
        }
        assert_eq!(own, Ok(()));
    }

    #[test]
    fn short_header_is_not_elf() {
        assert!(ElfHeader::parse(b"\x7fELF\x02\x01").is_none());
    }

    #[test]
    fn find_program_searches_path() {
        let found = find_program(OsStr::new("sh")).expect("sh is on PATH");
        assert!(found.ends_with("sh"), "found {}", found.display());
        assert!(find_program(OsStr::new("netcon-no-such-program")).is_none());
    }

    #[test]
    fn find_program_keeps_slash_paths() {
        let found = find_program(OsStr::new("./relative/prog"));
        assert_eq!(found, Some(PathBuf::from("./relative/prog")));
    }
}
