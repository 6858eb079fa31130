//! Checks, before a program is started, that the netcon preload will see its sockets (the
//! rules are in the `netcon-program-check` crate, which the preload applies to every program
//! a program starts), and finds programs on `PATH`.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use netcon_program_check::{FileId, Launch};
pub use netcon_program_check::{LoaderProblem, Passed, Reason, SetIdBit};

/// The search path used when `PATH` is not set.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A program the preload would not see into: the file the reason is about (the program, or
/// the interpreter its `#!` line names) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub path: PathBuf,
    pub reason: Reason,
}

impl Rejection {
    /// Returns whether `netcon-ctl run --isolate` runs the program anyway: its sockets bypass
    /// netcon, but in a namespace holding only loopback they reach nothing else. Programs that
    /// would gain privileges stay rejected.
    pub fn allowed_isolated(&self) -> bool {
        self.reason.allowed_isolated()
    }

    /// Returns whether the dynamic loader still loads the preload into the program, so its
    /// ready line can be awaited.
    pub fn preload_loads(&self) -> bool {
        self.reason.preload_loads()
    }

    /// Returns the warning printed when `--isolate` runs a program despite this rejection.
    pub fn isolated_warning(&self) -> String {
        self.shared().isolated_warning().to_string()
    }

    fn shared(&self) -> netcon_program_check::Rejection<'_> {
        netcon_program_check::Rejection {
            path: self.path.as_os_str().as_bytes(),
            reason: self.reason,
            file: FileId::default(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared().fmt(f)
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
    let search_path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let mut buf = Box::new([0u8; netcon_program_check::PATH_MAX]);
    let found =
        netcon_program_check::find_in_path(program.as_bytes(), search_path.as_bytes(), &mut buf)?;
    Some(PathBuf::from(OsStr::from_bytes(found.to_bytes())))
}

/// Checks that the preload can load into the program at `path`, following `#!` interpreters,
/// when it is started with `args` (its name first) and this process's environment. When the
/// program is the dynamic loader, the program its arguments name is checked.
///
/// Files that cannot be read or are not ELF pass: exec reports their errors itself, and
/// `netcon-ctl run` still waits for the preload's ready line.
pub fn check_program(path: &Path, args: &[OsString]) -> Result<Passed, Rejection> {
    // A path or argument holding a NUL cannot be executed at all.
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return Ok(Passed::Program);
    };
    let Some(args) = c_strings(args.iter().map(|arg| arg.as_bytes().to_vec())) else {
        return Ok(Passed::Program);
    };
    let env = c_strings(
        std::env::vars_os().map(|(name, value)| [name.as_bytes(), b"=", value.as_bytes()].concat()),
    )
    .unwrap_or_default();
    let args: Vec<&CStr> = args.iter().map(CString::as_c_str).collect();
    let env: Vec<&CStr> = env.iter().map(CString::as_c_str).collect();
    let launch = Launch {
        args: &args.as_slice(),
        env: &env.as_slice(),
        loader: netcon_program_check::interpreter_id(c"/proc/self/exe"),
    };

    let mut scratch = netcon_program_check::Scratch::new();
    let result = netcon_program_check::check_path(&c_path, &launch, &mut scratch);
    result.map_err(|rejection| Rejection {
        path: PathBuf::from(OsStr::from_bytes(rejection.path)),
        reason: rejection.reason,
    })
}

/// Returns the strings as C strings, or `None` when one contains a NUL byte.
fn c_strings(strings: impl Iterator<Item = Vec<u8>>) -> Option<Vec<CString>> {
    strings.map(|bytes| CString::new(bytes).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("netcon-check-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn dynamic_elf_passes() {
        let args = ["true".into()];
        assert_eq!(
            check_program(Path::new("/bin/true"), &args),
            Ok(Passed::Program)
        );
    }

    #[test]
    fn loader_checks_its_program() {
        let loader = Path::new("/lib64/ld-linux-x86-64.so.2");
        let run = [loader.into(), "/bin/true".into()];
        assert_eq!(check_program(loader, &run), Ok(Passed::Program));
        let list = [loader.into(), "--list".into(), "/bin/true".into()];
        assert_eq!(check_program(loader, &list), Ok(Passed::LoaderAlone));

        let dir = scratch_dir("loader-static");
        let path = dir.join("static");
        fs::write(&path, static_elf()).unwrap();
        let run = [loader.into(), path.clone().into()];
        let result = check_program(loader, &run);
        fs::remove_dir_all(&dir).unwrap();
        let rejection = result.expect_err("the loader's static program passed");
        assert_eq!(rejection.path, path);
        assert_eq!(rejection.reason, Reason::StaticElf);
    }

    /// Returns an ELF file header without program headers: no PT_INTERP.
    fn static_elf() -> Vec<u8> {
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        header
    }

    #[test]
    fn static_rejection_names_fix() {
        let dir = scratch_dir("static-tools");
        let path = dir.join("static");
        fs::write(&path, static_elf()).unwrap();
        let result = check_program(&path, &[]);
        fs::remove_dir_all(&dir).unwrap();
        let rejection = result.expect_err("a static ELF file passed");
        assert_eq!(rejection.path, path);
        assert_eq!(rejection.reason, Reason::StaticElf);
        assert!(rejection.allowed_isolated());
        let message = rejection.to_string();
        assert!(message.contains("is statically linked"), "{message}");
        assert!(message.contains("`netcon-ctl run --isolate`"), "{message}");
        let warning = rejection.isolated_warning();
        assert!(
            warning.ends_with("loopback only and no network"),
            "{warning}"
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
        let other_owner = check_program(&path, &[]);

        // Root running a set-user-ID-root file keeps its ids, so the loader honours LD_PRELOAD.
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o4755)).unwrap();
        let own = check_program(&path, &[]);
        fs::remove_dir_all(&dir).unwrap();

        let expected = Rejection {
            path: path.clone(),
            reason: Reason::SetId {
                bit: SetIdBit::User,
                id: nobody,
            },
        };
        if on_nosuid_mount(&std::env::temp_dir()) {
            assert_eq!(other_owner, Ok(Passed::Program));
        } else {
            assert_eq!(other_owner, Err(expected));
        }
        assert_eq!(own, Ok(Passed::Program));
    }

    fn on_nosuid_mount(path: &Path) -> bool {
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: c_path is NUL-terminated and stat is valid for writes.
        unsafe {
            let mut stat: libc::statvfs = std::mem::zeroed();
            libc::statvfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_flag & libc::ST_NOSUID != 0
        }
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
