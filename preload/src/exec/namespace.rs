//! Whether this process's network namespace has no interface but loopback, read from
//! `/proc/self/net/dev` (which lists the interfaces of the reader's own namespace) with plain
//! system calls, because exec may run in a `vfork` child.

/// The maximum number of bytes of the interface list read. A namespace with only `lo` lists
/// three lines of about 350 bytes, so a list that fills the buffer has more interfaces.
const LIST_MAX: usize = 1024;

/// Returns whether every interface of the process's network namespace is `lo`. Returns
/// false when the list cannot be read.
pub fn holds_only_loopback() -> bool {
    let mut list = [0u8; LIST_MAX];
    match read_list(&mut list) {
        Some(len) if len < LIST_MAX => only_loopback(&list[..len]),
        _ => false,
    }
}

/// Reads `/proc/self/net/dev` into `list` and returns the bytes read.
fn read_list(list: &mut [u8; LIST_MAX]) -> Option<usize> {
    let path = c"/proc/self/net/dev";
    // SAFETY: path is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut len = 0;
    while len < list.len() {
        let rest = &mut list[len..];
        // SAFETY: rest is valid for writes of its length. pread leaves this library's `read`
        // replacement out, which would classify the fd.
        let read = unsafe { libc::pread(fd, rest.as_mut_ptr().cast(), rest.len(), len as i64) };
        if read <= 0 {
            break;
        }
        len += read as usize;
    }
    // SAFETY: fd was opened above and is closed once.
    unsafe { crate::real::close(fd) };
    Some(len)
}

/// Returns whether the interface lines of a `/proc/net/dev` listing (after its two header
/// lines) all name `lo`, and the listing has at least one.
fn only_loopback(list: &[u8]) -> bool {
    let mut interfaces = 0;
    for line in list.split(|&b| b == b'\n').skip(2) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].trim_ascii() != b"lo" {
            return false;
        }
        interfaces += 1;
    }
    interfaces > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Inter-|   Receive                            |  Transmit\n \
        face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n";

    #[test]
    fn loopback_alone() {
        let list = format!("{HEADER}    lo:       0       0    0    0    0     0          0\n");
        assert!(only_loopback(list.as_bytes()));
    }

    #[test]
    fn other_interface_seen() {
        let list = format!("{HEADER}    lo: 0 0 0\n  eth0: 1 2 3\n");
        assert!(!only_loopback(list.as_bytes()));
        assert!(!only_loopback(HEADER.as_bytes()));
    }
}
