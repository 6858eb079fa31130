//! Finding a program in a `PATH` list as `execvp` does, into a fixed buffer.

use core::ffi::CStr;

/// The longest path Linux accepts, its NUL included (PATH_MAX).
pub const PATH_MAX: usize = libc::PATH_MAX as usize;

/// Finds `name` (which must not contain a slash) in the first directory of `search_path`, a
/// colon-separated list, that contains an executable regular file of that name, and returns
/// its path, written into `buf`. An empty directory in the list means the working directory, as
/// for `execvp`. Directories whose path would not fit in PATH_MAX are skipped.
///
/// Returns `None` when no directory holds such a file.
pub fn find_in_path<'b>(
    name: &[u8],
    search_path: &[u8],
    buf: &'b mut [u8; PATH_MAX],
) -> Option<&'b CStr> {
    if name.is_empty() || name.contains(&0) {
        return None;
    }
    let mut found = None;
    for dir in search_path.split(|&byte| byte == b':') {
        let Some(len) = join(dir, name, buf) else {
            continue;
        };
        let candidate = CStr::from_bytes_with_nul(&buf[..=len]).ok()?;
        if is_executable_file(candidate) {
            found = Some(len);
            break;
        }
    }
    let len = found?;
    CStr::from_bytes_with_nul(&buf[..=len]).ok()
}

/// Writes `dir/name` (or `name` alone for an empty `dir`) and a NUL into `buf`, and returns
/// the length without the NUL. Returns `None` when it does not fit or `dir` contains a NUL.
fn join(dir: &[u8], name: &[u8], buf: &mut [u8; PATH_MAX]) -> Option<usize> {
    if dir.contains(&0) {
        return None;
    }
    let separator = usize::from(!dir.is_empty());
    let len = dir.len() + separator + name.len();
    if len >= PATH_MAX {
        return None;
    }
    buf[..dir.len()].copy_from_slice(dir);
    if separator == 1 {
        buf[dir.len()] = b'/';
    }
    buf[dir.len() + separator..len].copy_from_slice(name);
    buf[len] = 0;
    Some(len)
}

/// Returns whether `path` is a regular file with an execute bit set.
pub fn is_executable_file(path: &CStr) -> bool {
    // SAFETY: an all-zero stat is a valid value for stat to overwrite.
    let mut stat: libc::stat64 = unsafe { core::mem::zeroed() };
    // SAFETY: path is NUL-terminated and stat is valid for writes.
    let found = unsafe { libc::stat64(path.as_ptr(), &mut stat) } == 0;
    found && stat.st_mode & libc::S_IFMT == libc::S_IFREG && stat.st_mode & 0o111 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_first_executable() {
        let mut buf = [0u8; PATH_MAX];
        let found = find_in_path(b"sh", b"/nonexistent:/etc:/bin:/usr/bin", &mut buf);
        assert_eq!(found, Some(c"/bin/sh"));
    }

    #[test]
    fn skips_files_that_are_not_executable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::tests::scratch_dir("search");
        let file = dir.join("prog");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let search_path = dir.as_os_str().as_encoded_bytes();
        let mut buf = [0u8; PATH_MAX];
        let plain = find_in_path(b"prog", search_path, &mut buf).is_some();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o744)).unwrap();
        let executable = find_in_path(b"prog", search_path, &mut buf).is_some();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!plain, "a file without execute bits was found");
        assert!(executable, "an executable file was not found");
        assert_eq!(find_in_path(b"", b"/bin", &mut buf), None);
    }

    #[test]
    fn empty_entry_means_working_directory() {
        let mut buf = [0u8; PATH_MAX];
        assert_eq!(join(b"", b"prog", &mut buf), Some(4));
        assert_eq!(&buf[..5], b"prog\0");
        assert_eq!(join(b"/usr/bin", b"prog", &mut buf), Some(13));
        assert_eq!(&buf[..14], b"/usr/bin/prog\0");
    }

    #[test]
    fn overlong_candidate_skipped() {
        let mut buf = [0u8; PATH_MAX];
        let long_dir = [b'd'; PATH_MAX];
        assert_eq!(join(&long_dir, b"prog", &mut buf), None);
    }
}
