//! Loading the steering eBPF program and attaching it to a multi-queue TAP or TUN
//! (TUNSETSTEERINGEBPF).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;
use crate::steer_bpf::Insn;

/// `bpf()` command that loads a program.
const BPF_PROG_LOAD: libc::c_long = 5;
/// Program type of socket filters, which TUNSETSTEERINGEBPF takes.
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
/// `_IOR('T', 224, int)`.
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;
/// The license the program is declared under, the project's own.
const LICENSE: &[u8] = b"MIT OR Apache-2.0\0";

/// The fields of `union bpf_attr` that BPF_PROG_LOAD reads, in its layout; the kernel takes
/// the unused rest as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// Loads `program` as a socket filter and makes the TAP that `queue` belongs to pick each
/// frame's queue with it. The TAP keeps the program until it is removed or replaced.
///
/// Fails with EPERM without CAP_BPF (or CAP_SYS_ADMIN) where unprivileged eBPF is disabled,
/// and with EINVAL when the kernel rejects the program or the ioctl.
pub fn attach_steering(queue: BorrowedFd<'_>, program: &[Insn]) -> io::Result<()> {
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    let name = b"netcon_steer";
    attr.prog_name[..name.len()].copy_from_slice(name);
    // SAFETY: attr is a valid BPF_PROG_LOAD attribute whose pointers (instructions, license)
    // outlive the call; the kernel reads size_of::<ProgLoadAttr>() bytes of it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &mut attr as *mut ProgLoadAttr,
            size_of::<ProgLoadAttr>() as libc::c_uint,
        )
    };
    let fd = cvt(fd as libc::c_int)?;
    // SAFETY: BPF_PROG_LOAD returned a fresh fd that nothing else owns.
    let program_fd = unsafe { OwnedFd::from_raw_fd(fd) };

    let raw = program_fd.as_raw_fd();
    // SAFETY: TUNSETSTEERINGEBPF reads one int, the program fd; the TAP takes its own
    // reference to the program, so the fd may be closed afterwards.
    cvt(unsafe { libc::ioctl(queue.as_raw_fd(), TUNSETSTEERINGEBPF, &raw) })?;
    Ok(())
}
