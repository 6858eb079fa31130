//! The words `netcon-ctl run` and the preload use for a rejected program, written with
//! `core::fmt` so the preload can format them without allocating.

use core::fmt;

use crate::{LoaderProblem, Reason, Rejection, SetIdBit};

impl fmt::Display for SetIdBit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SetIdBit::User => "set-user-ID",
            SetIdBit::Group => "set-group-ID",
        })
    }
}

impl fmt::Display for Rejection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = DisplayPath(self.path);
        match self.reason {
            Reason::StaticElf => write!(
                f,
                "{path} is statically linked (no ELF interpreter), so LD_PRELOAD cannot load the \
                 netcon preload into it and its connections would bypass netcon; use a \
                 dynamically linked build of the program, or run it with \
                 `netcon-ctl run --isolate`, which gives it loopback only and no network"
            ),
            Reason::GoProgram => write!(
                f,
                "{path} is a Go program: Go makes its socket system calls directly instead of \
                 through libc, so the netcon preload cannot intercept its connections and they \
                 would bypass netcon; run it with `netcon-ctl run --isolate`, which gives it \
                 loopback only and no network"
            ),
            Reason::SetId { bit, id } => write!(
                f,
                "{path} is {bit} (to id {id}), so the dynamic loader runs it in secure mode \
                 and ignores LD_PRELOAD; run a copy without the {bit} bit"
            ),
            Reason::FileCapabilities => write!(
                f,
                "{path} has file capabilities, so the dynamic loader runs it in secure mode and \
                 ignores LD_PRELOAD; run it as root or run a copy without capabilities"
            ),
            Reason::LoaderArguments(problem) => {
                let (cause, fix) = problem.cause_and_fix();
                write!(
                    f,
                    "{path} is the dynamic loader, and netcon cannot tell which program it \
                     would run: {cause}; {fix}, or run it with `netcon-ctl run --isolate`, \
                     which gives it loopback only and no network"
                )
            }
        }
    }
}

impl LoaderProblem {
    /// Returns why the loader's program is unknown, and what to do instead.
    fn cause_and_fix(self) -> (&'static str, &'static str) {
        match self {
            LoaderProblem::UnknownOption => (
                "an argument before the program starts with `--` but is not an option of \
                 glibc 2.36's loader",
                "pass only the options `ld.so --help` lists",
            ),
            LoaderProblem::NameWithoutSlash => (
                "the program is named without a slash, which the loader looks up in \
                 /etc/ld.so.cache",
                "name it by a path such as ./NAME",
            ),
            LoaderProblem::Script => (
                "a script's #! line names the loader as its interpreter",
                "start the loader with the program as its argument instead",
            ),
        }
    }
}

/// The warning printed when a program runs under `--isolate` despite a rejection.
#[derive(Debug)]
pub struct IsolatedWarning<'a>(pub(crate) Rejection<'a>);

impl fmt::Display for IsolatedWarning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = DisplayPath(self.0.path);
        match self.0.reason {
            Reason::StaticElf => write!(f, "{path} is statically linked")?,
            Reason::GoProgram => write!(f, "{path} is a Go program")?,
            Reason::SetId { .. } | Reason::FileCapabilities => {
                write!(f, "{path} runs in secure mode")?
            }
            Reason::LoaderArguments(_) => {
                write!(
                    f,
                    "{path} is the dynamic loader running an unchecked program"
                )?;
                return f.write_str(
                    ", whose sockets may bypass netcon; with --isolate it has loopback only and \
                     no network",
                );
            }
        }
        f.write_str(
            ", so its sockets bypass netcon; with --isolate it has loopback only and no network",
        )
    }
}

/// A path's bytes shown as UTF-8, with U+FFFD for each invalid sequence, as
/// `std::path::Path::display` shows them.
struct DisplayPath<'a>(&'a [u8]);

impl fmt::Display for DisplayPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileId;
    use std::string::ToString;

    #[test]
    fn static_names_path_and_fix() {
        let rejection = Rejection {
            path: b"/opt/probe",
            reason: Reason::StaticElf,
            file: FileId::default(),
        };
        let text = rejection.to_string();
        assert!(
            text.starts_with("/opt/probe is statically linked"),
            "{text}"
        );
        assert!(text.contains("`netcon-ctl run --isolate`"), "{text}");
    }

    #[test]
    fn set_id_names_bit_and_id() {
        let rejection = Rejection {
            path: b"/bin/x",
            reason: Reason::SetId {
                bit: SetIdBit::Group,
                id: 42,
            },
            file: FileId::default(),
        };
        let text = rejection.to_string();
        assert!(
            text.starts_with("/bin/x is set-group-ID (to id 42)"),
            "{text}"
        );
        assert!(text.ends_with("without the set-group-ID bit"), "{text}");
    }

    #[test]
    fn loader_problem_names_fix() {
        let rejection = Rejection {
            path: b"/lib64/ld-linux-x86-64.so.2",
            reason: Reason::LoaderArguments(LoaderProblem::NameWithoutSlash),
            file: FileId::default(),
        };
        let text = rejection.to_string();
        assert!(
            text.starts_with("/lib64/ld-linux-x86-64.so.2 is the dynamic loader, and"),
            "{text}"
        );
        assert!(text.contains("such as ./NAME"), "{text}");
        assert!(text.contains("`netcon-ctl run --isolate`"), "{text}");
        let warning = rejection.isolated_warning().to_string();
        assert!(warning.contains("may bypass netcon"), "{warning}");
    }

    #[test]
    fn invalid_utf8_path_shown_lossily() {
        let rejection = Rejection {
            path: b"/tmp/a\xffb",
            reason: Reason::GoProgram,
            file: FileId::default(),
        };
        let warning = rejection.isolated_warning().to_string();
        assert!(
            warning.starts_with("/tmp/a\u{fffd}b is a Go program, so"),
            "{warning}"
        );
    }
}
