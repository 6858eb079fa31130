//! An executable file opened for the check and read with `pread`. Its first bytes are read
//! once and kept on the stack, because the `#!` line, the ELF file header and, in most
//! programs, the program headers and note segments lie in them.

use core::ffi::{CStr, c_int};

use crate::FileId;

/// The bytes read at open. In C programs the GNU notes follow the program headers, so 2 KiB
/// usually covers all three. Go programs keep their note near the end of the first 4 KiB,
/// which costs one more read.
pub(crate) const HEAD_LEN: usize = 2048;

/// An errno value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Errno(pub(crate) c_int);

/// An open file and its first [`HEAD_LEN`] bytes (fewer when the file is shorter).
pub(crate) struct ExecFile {
    fd: c_int,
    /// Whether the check opened `fd` itself and must close it.
    owned: bool,
    stat: libc::stat64,
    head: [u8; HEAD_LEN],
    head_len: usize,
}

impl ExecFile {
    /// Opens `path` for reading, relative to `dirfd` (or the working directory for
    /// `AT_FDCWD`), and reads its head. `nofollow` rejects a final symbolic link, as exec with
    /// `AT_SYMLINK_NOFOLLOW` does. Only a regular file is opened (exec runs nothing else), so
    /// a FIFO cannot block the check and a device sees no open.
    pub(crate) fn open_at(dirfd: c_int, path: &CStr, nofollow: bool) -> Result<ExecFile, Errno> {
        // SAFETY: an all-zero stat is a valid value for fstatat to overwrite.
        let mut stat: libc::stat64 = unsafe { core::mem::zeroed() };
        let stat_flags = if nofollow {
            libc::AT_SYMLINK_NOFOLLOW
        } else {
            0
        };
        // SAFETY: path is NUL-terminated and stat is valid for writes.
        if unsafe { libc::fstatat64(dirfd, path.as_ptr(), &mut stat, stat_flags) } != 0 {
            return Err(errno());
        }
        if !is_regular(&stat) {
            return Err(Errno(libc::EACCES));
        }

        let mut flags = libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
        if nofollow {
            flags |= libc::O_NOFOLLOW;
        }
        // SAFETY: path is NUL-terminated; openat has no other memory preconditions.
        let fd = unsafe { libc::openat(dirfd, path.as_ptr(), flags) };
        if fd < 0 {
            return Err(errno());
        }
        ExecFile::with_fd(fd, true, stat)
    }

    /// Reads the head of the caller's open `fd`, which stays open. An fd opened with `O_PATH`
    /// cannot be read, so it is reopened through `/proc/self/fd`.
    pub(crate) fn borrow_fd(fd: c_int) -> Result<ExecFile, Errno> {
        // SAFETY: an all-zero stat is a valid value for fstat to overwrite.
        let mut stat: libc::stat64 = unsafe { core::mem::zeroed() };
        // SAFETY: stat is valid for writes.
        if unsafe { libc::fstat64(fd, &mut stat) } != 0 {
            return Err(errno());
        }
        if !is_regular(&stat) {
            return Err(Errno(libc::EACCES));
        }
        match ExecFile::with_fd(fd, false, stat) {
            Err(Errno(libc::EBADF)) if fd >= 0 => {
                let name = ProcFdPath::new(fd);
                ExecFile::open_at(libc::AT_FDCWD, name.as_c_str(), false)
            }
            other => other,
        }
    }

    fn with_fd(fd: c_int, owned: bool, stat: libc::stat64) -> Result<ExecFile, Errno> {
        let mut file = ExecFile {
            fd,
            owned,
            stat,
            head: [0; HEAD_LEN],
            head_len: 0,
        };
        // On failure, dropping `file` closes an owned fd.
        file.head_len = pread_full(fd, 0, &mut file.head)?;
        Ok(file)
    }

    /// Returns the bytes read at open.
    pub(crate) fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }

    /// Returns the file's status, taken before it was opened (or read from a borrowed fd).
    pub(crate) fn stat(&self) -> &libc::stat64 {
        &self.stat
    }

    /// Returns the file's device and inode.
    pub(crate) fn id(&self) -> FileId {
        FileId {
            device: self.stat.st_dev,
            inode: self.stat.st_ino,
        }
    }

    /// Returns the open fd.
    pub(crate) fn fd(&self) -> c_int {
        self.fd
    }

    /// Fills `buf` from `offset`, failing with EIO when the file ends first.
    pub(crate) fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or(Errno(libc::EIO))?;
        if end <= self.head_len as u64 {
            buf.copy_from_slice(&self.head[offset as usize..end as usize]);
            return Ok(());
        }
        match pread_full(self.fd, offset, buf)? {
            read if read == buf.len() => Ok(()),
            _ => Err(Errno(libc::EIO)),
        }
    }
}

impl Drop for ExecFile {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: the fd was opened by this value and is closed once.
            unsafe { __close(self.fd) };
        }
    }
}

unsafe extern "C" {
    /// glibc's exported alias of `close` (since glibc 2.2.5). The netcon preload replaces
    /// `close` to reset the fd's entry in its socket table, and in a `vfork` child that table
    /// is the parent's, where this fd number may be a netcon socket still. Nothing replaces
    /// the alias.
    fn __close(fd: c_int) -> c_int;
}

fn is_regular(stat: &libc::stat64) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Reads from `offset` until `buf` is full or the file ends, and returns the bytes read.
fn pread_full(fd: c_int, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        let Ok(at) = libc::off64_t::try_from(at) else {
            break;
        };
        let rest = &mut buf[done..];
        // SAFETY: rest is valid for writes of its length.
        let read = unsafe { libc::pread64(fd, rest.as_mut_ptr().cast(), rest.len(), at) };
        match read {
            0 => break,
            read if read > 0 => done += read as usize,
            _ if errno() == Errno(libc::EINTR) => {}
            _ => return Err(errno()),
        }
    }
    Ok(done)
}

/// `/proc/self/fd/N` as a NUL-terminated string built without allocating.
struct ProcFdPath {
    bytes: [u8; 32],
}

impl ProcFdPath {
    fn new(fd: c_int) -> ProcFdPath {
        let mut bytes = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        bytes[..prefix.len()].copy_from_slice(prefix);
        write_decimal(fd as u32, &mut bytes[prefix.len()..]);
        ProcFdPath { bytes }
    }

    fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.bytes).expect("the buffer ends with NUL")
    }
}

/// Writes `value` in decimal at the start of `out` and returns the digit count. `out` must
/// have room for ten digits.
pub(crate) fn write_decimal(value: u32, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 10];
    let mut rest = value;
    let mut count = 0;
    loop {
        digits[count] = b'0' + (rest % 10) as u8;
        count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for (slot, digit) in out.iter_mut().zip(digits[..count].iter().rev()) {
        *slot = *digit;
    }
    count
}

/// Reads this thread's errno.
pub(crate) fn errno() -> Errno {
    // SAFETY: __errno_location always returns this thread's errno slot.
    Errno(unsafe { *libc::__errno_location() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits() {
        let mut out = [0u8; 10];
        let count = write_decimal(4_294_967_295, &mut out);
        assert_eq!(&out[..count], b"4294967295");
        let count = write_decimal(0, &mut out);
        assert_eq!(&out[..count], b"0");
    }

    #[test]
    fn proc_fd_path() {
        let name = ProcFdPath::new(17);
        assert_eq!(name.as_c_str(), c"/proc/self/fd/17");
    }
}
