//! POSIX access ACLs, written as the `system.posix_acl_access` extended attribute in the
//! layout of Linux's `include/uapi/linux/posix_acl_xattr.h`: a little-endian version word, then
//! one (tag, permissions, id) entry per subject, sorted by tag and then by id. The ACL crates
//! link libacl for this; one fixed-layout write does not need it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::cvt;

const NAME: &[u8] = b"system.posix_acl_access\0";
const VERSION: u32 = 2;

const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
/// The id of entries that name no user or group.
const UNDEFINED_ID: u32 = u32::MAX;

/// Read and write permission.
const READ_WRITE: u16 = 0o6;

/// Returns the ACL that gives the owner and each of `users` read and write permission, and
/// the owning group and others none.
pub fn read_write_for(users: &[u32]) -> Vec<u8> {
    let mut named = users.to_vec();
    named.sort_unstable();
    named.dedup();
    let mut entries = vec![(USER_OBJ, READ_WRITE, UNDEFINED_ID)];
    entries.extend(named.iter().map(|&uid| (USER, READ_WRITE, uid)));
    entries.push((GROUP_OBJ, 0, UNDEFINED_ID));
    if !named.is_empty() {
        entries.push((MASK, READ_WRITE, UNDEFINED_ID));
    }
    entries.push((OTHER, 0, UNDEFINED_ID));

    let mut out = VERSION.to_le_bytes().to_vec();
    for (tag, permissions, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&permissions.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    out
}

/// Replaces the access ACL of `path` with `acl`. Fails with EOPNOTSUPP on a filesystem
/// without POSIX ACLs.
pub fn set_access_acl(path: &Path, acl: &[u8]) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: both names are NUL-terminated and acl is readable for its length.
    cvt(unsafe {
        libc::setxattr(
            path.as_ptr(),
            NAME.as_ptr().cast(),
            acl.as_ptr().cast(),
            acl.len(),
            0,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the uids that an encoded ACL gives an entry of their own, or `None` when the bytes
    /// are not an ACL of this layout.
    pub fn named_users(acl: &[u8]) -> Option<Vec<u32>> {
        let (version, entries) = acl.split_first_chunk::<4>()?;
        if u32::from_le_bytes(*version) != VERSION || entries.len() % 8 != 0 {
            return None;
        }
        let users = entries
            .chunks_exact(8)
            .filter(|entry| u16::from_le_bytes([entry[0], entry[1]]) == USER)
            .map(|entry| u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]))
            .collect();
        Some(users)
    }

    #[test]
    fn acl_lists_entries_in_kernel_order() {
        let acl = read_write_for(&[1000, 33, 1000]);
        assert_eq!(&acl[..4], &2u32.to_le_bytes());
        let tags: Vec<u16> = acl[4..]
            .chunks_exact(8)
            .map(|entry| u16::from_le_bytes([entry[0], entry[1]]))
            .collect();
        assert_eq!(tags, [USER_OBJ, USER, USER, GROUP_OBJ, MASK, OTHER]);
        assert_eq!(named_users(&acl), Some(vec![33, 1000]));
    }

    #[test]
    fn acl_without_users_has_no_mask() {
        let acl = read_write_for(&[]);
        assert_eq!(acl.len(), 4 + 3 * 8);
        assert_eq!(named_users(&acl), Some(vec![]));
    }

    #[test]
    fn malformed_acl_names_nobody() {
        assert_eq!(named_users(&[2, 0, 0]), None);
        assert_eq!(named_users(&[1, 0, 0, 0]), None);
        assert_eq!(named_users(&[2, 0, 0, 0, 1]), None);
    }
}
