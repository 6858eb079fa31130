//! The dynamic loader run as a program: `ld.so [OPTION]... PROGRAM [ARGUMENT]...`, as `ldd`
//! runs it. The loader has no PT_INTERP header, like a statically linked program, but it
//! honours `LD_PRELOAD` and runs the program its arguments name. That program may be
//! statically linked, and the loader runs such a program too, without the preload seeing its
//! sockets. So the check recognises the loader by device and inode, reads its options as
//! glibc's ld.so 2.36 reads them, and checks the program it would run. Listing or verifying a
//! program's libraries (`--list`, `--verify`, or `LD_TRACE_LOADED_OBJECTS` in the
//! environment, which `ldd` sets) runs none of the program's code and passes.
//!
//! NOTE: only the loader of the checking process is recognised. Another architecture's
//! loader (`/lib/ld-linux.so.2`) or musl's is checked as the statically linked program it
//! appears to be, and rejected.

use core::ffi::CStr;

use crate::elf::ElfHeader;
use crate::file::ExecFile;
use crate::search::PATH_MAX;
use crate::{FileId, Launch, Passed, Reason, StringList};

/// The variable that makes the loader list a program's libraries instead of running it. Any
/// value counts, the empty one too.
const TRACE_ENV: &[u8] = b"LD_TRACE_LOADED_OBJECTS=";

/// Options that make the loader list or verify the program's libraries instead of running it.
const LISTING_OPTIONS: [&[u8]; 2] = [b"--list", b"--verify"];

/// The other options without a value. glibc's loader exits after `--help`, `--version`,
/// `--list-tunables` and `--list-diagnostics` without running a program, but a program named
/// after them is checked all the same.
const FLAG_OPTIONS: [&[u8]; 5] = [
    b"--inhibit-cache",
    b"--help",
    b"--version",
    b"--list-tunables",
    b"--list-diagnostics",
];

/// The options followed by a value.
const VALUE_OPTIONS: [&[u8]; 7] = [
    b"--library-path",
    b"--inhibit-rpath",
    b"--audit",
    b"--preload",
    b"--argv0",
    b"--glibc-hwcaps-prepend",
    b"--glibc-hwcaps-mask",
];

/// A reason the check cannot tell which program the loader would run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoaderProblem {
    /// An argument before the program starts with `--` but is no option of glibc 2.36's
    /// loader. That loader stops at such an argument, but a later one might take a value
    /// after it.
    UnknownOption,
    /// The program is named without a slash, so the loader looks it up in its cache of
    /// libraries (`/etc/ld.so.cache`), not in the working directory or `PATH`.
    NameWithoutSlash,
    /// A `#!` line names the loader as the interpreter of a script, so the loader's arguments
    /// come from that line and the script's own arguments.
    Script,
}

/// The outcome of the loader's arguments: no program, or the program it runs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LoaderRun<'a> {
    /// It runs no program: it lists or verifies one, or prints usage, help or its version.
    Nothing,
    /// It runs the program at this path, which contains a slash.
    Program(&'a CStr),
}

/// A rejection of a loader run: about the loader's arguments, or about the program it would
/// run (its path as given, and its identity).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LoaderRejection<'a> {
    Arguments(LoaderProblem),
    Program {
        path: &'a CStr,
        reason: Reason,
        file: FileId,
    },
}

/// Reads the loader's options from `args` (its own name first) as glibc's ld.so 2.36 does,
/// and returns what it would do. `--` ends the options (ld.so 2.36 rejects it as an unknown
/// option, so treating it as the end checks more, not less).
pub(crate) fn parse_arguments<'a>(
    args: &'a dyn StringList,
    env: &dyn StringList,
) -> Result<LoaderRun<'a>, LoaderProblem> {
    let mut listing = (0..env.len())
        .filter_map(|index| env.get(index))
        .any(|entry| entry.to_bytes().starts_with(TRACE_ENV));
    let mut index = 1;
    let program = loop {
        // Without a program the loader prints its usage, and with an option missing its
        // value too.
        let Some(argument) = args.get(index) else {
            return Ok(LoaderRun::Nothing);
        };
        let bytes = argument.to_bytes();
        if LISTING_OPTIONS.contains(&bytes) {
            listing = true;
            index += 1;
        } else if FLAG_OPTIONS.contains(&bytes) {
            index += 1;
        } else if VALUE_OPTIONS.contains(&bytes) {
            index += 2;
        } else if bytes == b"--" {
            match args.get(index + 1) {
                Some(program) => break program,
                None => return Ok(LoaderRun::Nothing),
            }
        } else if bytes.starts_with(b"--") {
            return Err(LoaderProblem::UnknownOption);
        } else {
            break argument;
        }
    };

    if listing {
        return Ok(LoaderRun::Nothing);
    }
    if !program.to_bytes().contains(&b'/') {
        return Err(LoaderProblem::NameWithoutSlash);
    }
    Ok(LoaderRun::Program(program))
}

/// Checks the program the loader would run when started with `launch`'s arguments. The
/// loader ignores that program's PT_INTERP header and its set-user-ID and set-group-ID bits
/// (exec runs the loader, not the program), so only the statically linked and Go checks
/// apply. A program the check cannot open or that is not ELF passes: the loader fails on it.
pub(crate) fn check_run<'a>(launch: &Launch<'a>) -> Result<Passed, LoaderRejection<'a>> {
    let run = parse_arguments(launch.args, launch.env).map_err(LoaderRejection::Arguments)?;
    let LoaderRun::Program(path) = run else {
        return Ok(Passed::LoaderAlone);
    };
    let Ok(file) = ExecFile::open_at(libc::AT_FDCWD, path, false) else {
        return Ok(Passed::Program);
    };
    let id = file.id();
    if launch.loader == Some(id) {
        // glibc's loader stops with "loader cannot load itself".
        return Ok(Passed::LoaderAlone);
    }
    let Some(header) = ElfHeader::parse(file.head()) else {
        return Ok(Passed::Program);
    };
    let reason = match (header.has_interp(&file), header.is_go(&file)) {
        (Ok(false), _) => Reason::StaticElf,
        (_, Ok(true)) => Reason::GoProgram,
        _ => return Ok(Passed::Program),
    };
    Err(LoaderRejection::Program {
        path,
        reason,
        file: id,
    })
}

/// Returns the identity of the dynamic loader that the ELF file at `path` names in its
/// PT_INTERP header. Returns `None` when the file cannot be read or has no such header, or
/// the loader's path cannot be found. For `/proc/self/exe` this is the loader of the calling
/// process, unless that process is the loader itself (started as `ld.so PROGRAM`).
pub fn interpreter_id(path: &CStr) -> Option<FileId> {
    let file = ExecFile::open_at(libc::AT_FDCWD, path, false).ok()?;
    let header = ElfHeader::parse(file.head())?;
    let mut interpreter = [0u8; PATH_MAX];
    let interpreter = header.interpreter(&file, &mut interpreter).ok()??;
    file_id(interpreter)
}

/// Returns the identity of the dynamic loader running the calling process, which must be
/// dynamically linked (the preload is loaded into such processes only). That is the loader
/// the PT_INTERP header of `/proc/self/exe` names, or the program file itself when it has no
/// such header, because then the loader was started as a program (`ld.so PROGRAM`). Returns
/// `None` when `/proc` is not mounted or the files cannot be read.
pub fn running_loader() -> Option<FileId> {
    let file = ExecFile::open_at(libc::AT_FDCWD, c"/proc/self/exe", false).ok()?;
    let header = ElfHeader::parse(file.head())?;
    if !header.has_interp(&file).ok()? {
        return Some(file.id());
    }
    let mut interpreter = [0u8; PATH_MAX];
    let interpreter = header.interpreter(&file, &mut interpreter).ok()??;
    file_id(interpreter)
}

/// Returns the device and inode of the file at `path`, after following symbolic links.
pub fn file_id(path: &CStr) -> Option<FileId> {
    // SAFETY: an all-zero stat is a valid value for stat to overwrite.
    let mut stat: libc::stat64 = unsafe { core::mem::zeroed() };
    // SAFETY: path is NUL-terminated and stat is valid for writes.
    let found = unsafe { libc::stat64(path.as_ptr(), &mut stat) } == 0;
    found.then_some(FileId {
        device: stat.st_dev,
        inode: stat.st_ino,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strings::NO_STRINGS;
    use std::ffi::CString;

    /// Parses `args` with the environment `env`.
    fn parse<'a>(
        args: &'a dyn StringList,
        env: &dyn StringList,
    ) -> Result<LoaderRun<'a>, LoaderProblem> {
        parse_arguments(args, env)
    }

    #[test]
    fn program_after_options() {
        let args = [
            c"ld.so",
            c"--inhibit-cache",
            c"--library-path",
            c"/opt/lib",
            c"--argv0",
            c"name",
            c"--preload",
            c"/lib/a.so",
            c"/usr/bin/curl",
            c"--list",
        ];
        assert_eq!(
            parse(&args, NO_STRINGS),
            Ok(LoaderRun::Program(c"/usr/bin/curl"))
        );
    }

    #[test]
    fn every_value_option_skips_value() {
        for option in VALUE_OPTIONS {
            let option = CString::new(option).unwrap();
            let args = [c"ld.so", &option, c"--list", c"./prog"];
            // The value is "--list", which therefore is no option here.
            assert_eq!(
                parse(&args, NO_STRINGS),
                Ok(LoaderRun::Program(c"./prog")),
                "{option:?}"
            );
        }
    }

    #[test]
    fn listing_runs_nothing() {
        for args in [
            &[c"ld.so", c"--list", c"/static"][..],
            &[c"ld.so", c"--verify", c"/static"],
            &[c"ld.so", c"--audit", c"/a.so", c"--list", c"static"],
        ] {
            assert_eq!(parse(&args, NO_STRINGS), Ok(LoaderRun::Nothing), "{args:?}");
        }
        let args = [c"ld.so", c"/static"];
        let tracing = [c"HOME=/root", c"LD_TRACE_LOADED_OBJECTS="];
        assert_eq!(parse(&args, &tracing), Ok(LoaderRun::Nothing));
        let other = [
            c"LD_TRACE_LOADED_OBJECTS_X=1",
            c"XLD_TRACE_LOADED_OBJECTS=1",
        ];
        assert_eq!(parse(&args, &other), Ok(LoaderRun::Program(c"/static")));
    }

    #[test]
    fn missing_program_runs_nothing() {
        for args in [
            &[c"ld.so"][..],
            &[c"ld.so", c"--version"],
            &[c"ld.so", c"--library-path"],
            &[c"ld.so", c"--"],
        ] {
            assert_eq!(parse(&args, NO_STRINGS), Ok(LoaderRun::Nothing), "{args:?}");
        }
    }

    #[test]
    fn help_still_checks_program() {
        let args = [c"ld.so", c"--help", c"/static"];
        assert_eq!(parse(&args, NO_STRINGS), Ok(LoaderRun::Program(c"/static")));
    }

    #[test]
    fn double_dash_ends_options() {
        let args = [c"ld.so", c"--", c"--list"];
        assert_eq!(
            parse(&args, NO_STRINGS),
            Err(LoaderProblem::NameWithoutSlash)
        );
        let args = [c"ld.so", c"--", c"./--list"];
        assert_eq!(
            parse(&args, NO_STRINGS),
            Ok(LoaderRun::Program(c"./--list"))
        );
    }

    #[test]
    fn unknown_option_rejected() {
        for option in [c"--glibc-hwcaps-prefix", c"--lists", c"---"] {
            let args = [c"ld.so", option, c"/static"];
            assert_eq!(
                parse(&args, NO_STRINGS),
                Err(LoaderProblem::UnknownOption),
                "{option:?}"
            );
        }
    }

    #[test]
    fn name_without_slash_rejected() {
        for name in [c"true", c"libc.so.6", c"", c"-x"] {
            let args = [c"ld.so", name];
            assert_eq!(
                parse(&args, NO_STRINGS),
                Err(LoaderProblem::NameWithoutSlash),
                "{name:?}"
            );
        }
    }

    #[test]
    fn own_loader_found() {
        let loader = interpreter_id(c"/proc/self/exe").expect("this test program has a loader");
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(file_id(c"/lib64/ld-linux-x86-64.so.2"), Some(loader));
            assert_eq!(interpreter_id(c"/lib64/ld-linux-x86-64.so.2"), None);
        }
        assert_eq!(interpreter_id(c"/nonexistent"), None);
        assert_eq!(running_loader(), Some(loader));
    }
}
