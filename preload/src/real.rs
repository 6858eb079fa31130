//! The libc functions this library replaces, resolved once with `dlsym(RTLD_NEXT, …)`.
//!
//! Inside this library every call to one of these must go through here: a plain `libc::close`
//! or `libc::connect` would bind to this library's own exported symbol and recurse.

use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{
    FILE, addrinfo, c_char, c_int, c_long, c_uint, c_void, ifaddrs, iovec, mmsghdr, msghdr, off_t,
    pid_t, posix_spawn_file_actions_t, posix_spawnattr_t, size_t, sockaddr, socklen_t, ssize_t,
    timespec,
};

/// Looks up the next definition of `name` (NUL-terminated) after this library.
fn resolve(name: &'static str) -> usize {
    // SAFETY: name is NUL-terminated; RTLD_NEXT asks for the definition after this object.
    let ptr = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) };
    if ptr.is_null() {
        let message = b"netcon: libc symbol missing; cannot run with the netcon preload\n";
        // SAFETY: writing a static buffer to stderr, then exiting: nothing else can work.
        unsafe {
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(127);
        }
    }
    ptr as usize
}

macro_rules! real {
    ($( $name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty; )*) => {
        /// The address of each function, 0 until it is first resolved.
        #[allow(non_upper_case_globals)]
        mod address {
            use std::sync::atomic::AtomicUsize;
            $( pub static $name: AtomicUsize = AtomicUsize::new(0); )*
        }

        $(
            /// Calls libc's own
            #[doc = concat!("`", stringify!($name), "`.")]
            ///
            /// # Safety
            /// The same contract as the libc function.
            pub unsafe fn $name($($arg: $ty),*) -> $ret {
                let address = lookup(&address::$name, concat!(stringify!($name), "\0"));
                // SAFETY: the address is libc's definition of this very function, whose C
                // signature the declared type matches.
                let function: unsafe extern "C" fn($($ty),*) -> $ret = unsafe { std::mem::transmute(address) };
                // SAFETY: the caller upholds the libc contract.
                unsafe { function($($arg),*) }
            }
        )*
    };
}

/// Returns the address kept in `slot`, resolving `name` (NUL-terminated) on first use.
fn lookup(slot: &AtomicUsize, name: &'static str) -> usize {
    let mut address = slot.load(Ordering::Relaxed);
    if address == 0 {
        address = resolve(name);
        slot.store(address, Ordering::Relaxed);
    }
    address
}

/// Resolves now the functions that the exec family's replacements call. Exec may run in a
/// `vfork` child, where `dlsym` must not: it takes the loader's lock, which another thread of
/// the parent may hold, and may allocate.
pub fn resolve_for_exec() {
    let functions = [
        (&address::execve, "execve\0"),
        (&address::execvpe, "execvpe\0"),
        (&address::fexecve, "fexecve\0"),
        (&address::close, "close\0"),
        (&address::write, "write\0"),
        (&SYSCALL, "syscall\0"),
    ];
    for (slot, name) in functions {
        lookup(slot, name);
    }
}

real! {
    socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    bind(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int;
    listen(fd: c_int, backlog: c_int) -> c_int;
    accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int;
    getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int;
    getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut socklen_t) -> c_int;
    setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: socklen_t) -> c_int;
    shutdown(fd: c_int, how: c_int) -> c_int;
    close(fd: c_int) -> c_int;
    dup(old: c_int) -> c_int;
    dup2(old: c_int, new: c_int) -> c_int;
    dup3(old: c_int, new: c_int, flags: c_int) -> c_int;
    sendfile(out_fd: c_int, in_fd: c_int, offset: *mut off_t, count: size_t) -> ssize_t;
    splice(fd_in: c_int, off_in: *mut off_t, fd_out: c_int, off_out: *mut off_t, len: size_t, flags: c_uint) -> ssize_t;
    read(fd: c_int, buf: *mut c_void, len: size_t) -> ssize_t;
    write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t;
    readv(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t;
    writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t;
    recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t;
    send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t;
    recvfrom(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int, addr: *mut sockaddr, addr_len: *mut socklen_t) -> ssize_t;
    sendto(fd: c_int, buf: *const c_void, len: size_t, flags: c_int, addr: *const sockaddr, addr_len: socklen_t) -> ssize_t;
    recvmsg(fd: c_int, message: *mut msghdr, flags: c_int) -> ssize_t;
    sendmsg(fd: c_int, message: *const msghdr, flags: c_int) -> ssize_t;
    recvmmsg(fd: c_int, messages: *mut mmsghdr, count: c_uint, flags: c_int, timeout: *mut timespec) -> c_int;
    sendmmsg(fd: c_int, messages: *mut mmsghdr, count: c_uint, flags: c_int) -> c_int;
    __read_chk(fd: c_int, buf: *mut c_void, len: size_t, buf_len: size_t) -> ssize_t;
    __recv_chk(fd: c_int, buf: *mut c_void, len: size_t, buf_len: size_t, flags: c_int) -> ssize_t;
    __recvfrom_chk(fd: c_int, buf: *mut c_void, len: size_t, buf_len: size_t, flags: c_int, addr: *mut sockaddr, addr_len: *mut socklen_t) -> ssize_t;
    getaddrinfo(node: *const c_char, service: *const c_char, hints: *const addrinfo, result: *mut *mut addrinfo) -> c_int;
    getnameinfo(addr: *const sockaddr, len: socklen_t, host: *mut c_char, host_len: socklen_t, service: *mut c_char, service_len: socklen_t, flags: c_int) -> c_int;
    execve(path: *const c_char, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    execvpe(file: *const c_char, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    fexecve(fd: c_int, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    posix_spawn(pid: *mut pid_t, path: *const c_char, actions: *const posix_spawn_file_actions_t, attributes: *const posix_spawnattr_t, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    posix_spawnp(pid: *mut pid_t, file: *const c_char, actions: *const posix_spawn_file_actions_t, attributes: *const posix_spawnattr_t, argv: *const *mut c_char, envp: *const *mut c_char) -> c_int;
    system(command: *const c_char) -> c_int;
    popen(command: *const c_char, mode: *const c_char) -> *mut FILE;
    getifaddrs(list: *mut *mut ifaddrs) -> c_int;
    freeifaddrs(list: *mut ifaddrs) -> ();
    if_nameindex() -> *mut libc::if_nameindex;
    if_nametoindex(name: *const c_char) -> c_uint;
    if_indextoname(index: c_uint, name: *mut c_char) -> *mut c_char;
}

/// The address of libc's `syscall`, 0 until it is first resolved.
static SYSCALL: AtomicUsize = AtomicUsize::new(0);

/// Calls libc's `syscall` with six argument registers (see `intercept::syscall` for why six
/// fixed arguments are sound on x86_64).
///
/// # Safety
/// The same contract as the system call `number`.
pub unsafe fn syscall(number: c_long, a: [c_long; 6]) -> c_long {
    let address = lookup(&SYSCALL, "syscall\0");
    // SAFETY: libc's syscall is variadic; Rust may call a variadic function through a pointer
    // of variadic type, which sets up the call as C requires.
    let function: unsafe extern "C" fn(c_long, ...) -> c_long =
        unsafe { std::mem::transmute(address) };
    // SAFETY: the caller upholds the system call's contract.
    unsafe { function(number, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// Calls libc's `fcntl` with one argument after the command.
///
/// # Safety
/// The same contract as `fcntl` with `command`.
pub unsafe fn fcntl(fd: c_int, command: c_int, arg: c_long) -> c_int {
    static ADDRESS: AtomicUsize = AtomicUsize::new(0);
    let mut address = ADDRESS.load(Ordering::Relaxed);
    if address == 0 {
        address = resolve("fcntl\0");
        ADDRESS.store(address, Ordering::Relaxed);
    }
    // SAFETY: libc's fcntl is variadic; a pointer of variadic type makes a C variadic call.
    let function: unsafe extern "C" fn(c_int, c_int, ...) -> c_int =
        unsafe { std::mem::transmute(address) };
    // SAFETY: the caller upholds fcntl's contract for `command`.
    unsafe { function(fd, command, arg) }
}

/// Calls libc's `ioctl` with one argument after the request.
///
/// # Safety
/// The same contract as `ioctl` with `request`.
pub unsafe fn ioctl(fd: c_int, request: libc::c_ulong, arg: c_long) -> c_int {
    static ADDRESS: AtomicUsize = AtomicUsize::new(0);
    let mut address = ADDRESS.load(Ordering::Relaxed);
    if address == 0 {
        address = resolve("ioctl\0");
        ADDRESS.store(address, Ordering::Relaxed);
    }
    // SAFETY: libc's ioctl is variadic; a pointer of variadic type makes a C variadic call.
    let function: unsafe extern "C" fn(c_int, libc::c_ulong, ...) -> c_int =
        unsafe { std::mem::transmute(address) };
    // SAFETY: the caller upholds ioctl's contract for `request`.
    unsafe { function(fd, request, arg) }
}

/// Reads errno.
pub fn errno() -> c_int {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Sets errno.
pub fn set_errno(value: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value };
}
