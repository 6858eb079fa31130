//! The environment a started program gets. The preload reaches a program only through
//! `LD_PRELOAD` and finds netcon-dp through `NETCON_SOCKET` and `NETCON_CONTROL_FD`, so a
//! child started with an environment built anew (`env -i`, `subprocess.run(env={})`, sshd's
//! session environment) would run without netcon and reach the host's network directly.
//! Every exec therefore gets an environment with the missing variables added: the program's
//! own entries come first, unchanged and in their order, and the missing ones follow.
//!
//! - `LD_PRELOAD` must list this library. An `LD_PRELOAD` the program set to something else
//!   keeps its libraries, and this library is appended after them. The dynamic loader loads
//!   the program's choices first, so their functions take precedence, and calls they pass on
//!   with `dlsym(RTLD_NEXT, …)` reach this library before libc. A program cannot start a child
//!   without netcon by setting `LD_PRELOAD`.
//! - `NETCON_SOCKET` gets the path this process uses, also when it came from the default,
//!   because a child's default can differ (another uid, no `XDG_RUNTIME_DIR`).
//! - `NETCON_CONTROL_FD` and `NETCON_ISOLATED` are added when this process has them.
//!
//! A variable the program set itself (other than `LD_PRELOAD`) is kept as it is. The strings
//! are made when the library loads. Exec may run in a `vfork` child, where `malloc` must not
//! be called, so the new `envp` array is built on the stack, or in memory mapped with `mmap`
//! when it does not fit there. Linux (`bprm_stack_limits` in fs/exec.c) limits the strings
//! and pointers of argv and envp together to a quarter of the stack limit, but to at least
//! 128 KiB and at most 6 MiB, so such a mapping is a few MiB at most.
//! (`sysconf(_SC_ARG_MAX)` is 2 MiB with the default 8 MiB stack limit.)

use std::ffi::{CStr, CString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::OnceLock;

use libc::{c_char, c_void};

/// The variable naming the libraries the dynamic loader loads first.
const PRELOAD_NAME: &[u8] = b"LD_PRELOAD";

/// The pointer-sized words of the stack buffer an `envp` is built in: 4 KiB, room for about
/// 500 entries, far more than the environments programs build by hand.
const STACK_WORDS: usize = 512;

/// The strings that put a child on netcon, made when the library loads.
#[derive(Debug)]
struct Prepared {
    /// This library's path, which the child's `LD_PRELOAD` must list.
    library: Vec<u8>,
    /// `LD_PRELOAD=LIBRARY`, for an environment without `LD_PRELOAD`.
    preload_entry: CString,
    /// `NAME=VALUE` entries added when the environment has no variable `NAME`.
    entries: Vec<CString>,
}

static PREPARED: OnceLock<Prepared> = OnceLock::new();

/// Prepares the entries added to a child's environment. Runs while the library loads, after
/// the origin connection has been named in `NETCON_CONTROL_FD`. Without a usable path of this
/// library (a path that contains a space or colon cannot be listed in `LD_PRELOAD`),
/// environments are passed on unchanged.
pub fn prepare(isolated: bool) {
    let Some(library) = library_path() else {
        return;
    };
    let mut entries = Vec::new();
    let socket = crate::rpc::socket_path().as_bytes();
    if !socket.is_empty() {
        entries.push(entry(netcon_control::path::SOCKET_ENV.as_bytes(), socket));
    }
    if let Some(value) = std::env::var_os(crate::rpc::CONTROL_FD_ENV) {
        entries.push(entry(
            crate::rpc::CONTROL_FD_ENV.as_bytes(),
            value.as_bytes(),
        ));
    }
    if isolated {
        let name = netcon_program_check::ISOLATED_ENV.to_bytes();
        entries.push(entry(name, b"1"));
    }
    let preload_entry = entry(PRELOAD_NAME, &library);
    let _ = PREPARED.set(Prepared {
        library,
        preload_entry,
        entries,
    });
}

/// Returns `NAME=VALUE` as a C string; a NUL byte cuts the value short.
fn entry(name: &[u8], value: &[u8]) -> CString {
    let value = value.split(|&b| b == 0).next().unwrap_or_default();
    let mut bytes = Vec::with_capacity(name.len() + 1 + value.len());
    bytes.extend_from_slice(name);
    bytes.push(b'=');
    bytes.extend_from_slice(value);
    CString::new(bytes).expect("NUL bytes were cut off")
}

/// Returns the absolute path this library was loaded from, as the dynamic loader names it.
fn library_path() -> Option<Vec<u8>> {
    // SAFETY: an all-zero Dl_info is a valid value for dladdr to overwrite.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let address = prepare as *const c_void;
    // SAFETY: address lies in this library; info is valid for writes.
    if unsafe { libc::dladdr(address, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr returned a NUL-terminated name that lives as long as the library.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes();
    let path = match name.first() {
        Some(b'/') => name.to_vec(),
        _ => {
            let relative = std::ffi::OsStr::from_bytes(name);
            std::fs::canonicalize(relative)
                .ok()?
                .into_os_string()
                .into_vec()
        }
    };
    let listable = !path.is_empty() && !path.iter().any(|&b| b == b' ' || b == b':');
    listable.then_some(path)
}

/// A failure to build the child's environment, which fails the exec with ENOMEM.
#[derive(Debug, PartialEq, Eq)]
pub struct NoMemory;

/// Calls `exec` with `envp`, or, when `envp` lacks a variable that keeps the child on netcon,
/// with a copy that has it, and returns what `exec` returns (an exec returns only when it
/// failed). A null `envp` counts as empty, as Linux treats it.
///
/// # Safety
/// `envp` must be null or a null-terminated array of NUL-terminated strings.
pub unsafe fn with_netcon_environment<R>(
    envp: *const *mut c_char,
    exec: impl FnOnce(*const *mut c_char) -> R,
) -> Result<R, NoMemory> {
    let Some(prepared) = PREPARED.get() else {
        // The library has not finished loading: nothing is known to add.
        return Ok(exec(envp));
    };
    // SAFETY: the caller's contract.
    let environment = unsafe { Environment::new(envp) };
    let Some(plan) = Plan::new(&environment, prepared) else {
        return Ok(exec(envp));
    };

    let words = plan.words();
    if words <= STACK_WORDS {
        let mut buffer = [0usize; STACK_WORDS];
        let envp = plan.build(&environment, prepared, &mut buffer[..words]);
        return Ok(exec(envp));
    }
    let mut mapping = Mapping::new(words).ok_or(NoMemory)?;
    let envp = plan.build(&environment, prepared, mapping.words());
    // NOTE: after a successful exec in a `vfork` child, this mapping stays in the parent's
    // memory, which the child shared. Only environments too large for the stack buffer are
    // mapped.
    Ok(exec(envp))
}

/// Puts the missing variables into this process's own environment, for `system` and
/// `popen`, which start `/bin/sh` with it through glibc-internal calls that take no `envp`.
/// Unlike the exec functions, neither may run in a `vfork` child, so this may allocate.
pub fn repair_process_environment() {
    let Some(prepared) = PREPARED.get() else {
        return;
    };
    // SAFETY: environ is libc's current environment array.
    let environment = unsafe { Environment::new(current_environ()) };
    let Some(plan) = Plan::new(&environment, prepared) else {
        return;
    };
    if plan.preload_fixes > 0 || plan.missing_preload {
        let value = match std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
            Some(old) => [old.as_bytes(), b":", &prepared.library].concat(),
            None => prepared.library.clone(),
        };
        // SAFETY: system and popen are not async-signal-safe, and glibc's setenv locks.
        // NOTE: another thread reading the environment without the lock (getenv) races with
        // this as with any setenv.
        unsafe { std::env::set_var("LD_PRELOAD", std::ffi::OsStr::from_bytes(&value)) };
    }
    for (entry, missing) in prepared.entries.iter().zip(plan.missing) {
        if !missing {
            continue;
        }
        let bytes = entry.as_bytes();
        let equals = bytes.iter().position(|&b| b == b'=').unwrap_or(bytes.len());
        let name = std::ffi::OsStr::from_bytes(&bytes[..equals]);
        let value = std::ffi::OsStr::from_bytes(&bytes[(equals + 1).min(bytes.len())..]);
        // SAFETY: as above.
        unsafe { std::env::set_var(name, value) };
    }
}

/// Returns libc's `environ`, the environment `execv`, `execvp`, `system` and `popen` pass on.
pub fn current_environ() -> *const *mut c_char {
    unsafe extern "C" {
        static mut environ: *const *mut c_char;
    }
    // SAFETY: reads the pointer libc keeps; a concurrent setenv may replace it, which is the
    // race any reader of environ has.
    unsafe { std::ptr::addr_of!(environ).read() }
}

/// An `envp` array and its length.
struct Environment {
    entries: *const *mut c_char,
    len: usize,
}

impl Environment {
    /// # Safety
    /// `entries` must be null or a null-terminated array of NUL-terminated strings.
    unsafe fn new(entries: *const *mut c_char) -> Environment {
        let mut len = 0;
        if !entries.is_null() {
            // SAFETY: the array is null-terminated, so every index up to the null is valid.
            while !unsafe { *entries.add(len) }.is_null() {
                len += 1;
            }
        }
        Environment { entries, len }
    }

    fn pointer(&self, index: usize) -> *mut c_char {
        debug_assert!(index < self.len);
        // SAFETY: index is below the length counted in new.
        unsafe { *self.entries.add(index) }
    }

    fn entry(&self, index: usize) -> &[u8] {
        // SAFETY: every entry below len is a NUL-terminated string.
        unsafe { CStr::from_ptr(self.pointer(index)) }.to_bytes()
    }
}

/// The changes a copy of an environment needs: the `LD_PRELOAD` entries to rewrite and the
/// entries to append.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// The environment's entries.
    len: usize,
    /// `LD_PRELOAD` entries that do not list this library.
    preload_fixes: usize,
    /// The bytes of those entries, each rewritten with `:LIBRARY` and a NUL after it.
    fix_bytes: usize,
    /// The environment has no `LD_PRELOAD` entry at all.
    missing_preload: bool,
    /// For each prepared entry, whether the environment lacks its name.
    missing: [bool; 3],
}

impl Plan {
    /// Returns what to change in `environment`, or `None` when it keeps the child on netcon
    /// as it is.
    fn new(environment: &Environment, prepared: &Prepared) -> Option<Plan> {
        let mut plan = Plan {
            len: environment.len,
            preload_fixes: 0,
            fix_bytes: 0,
            missing_preload: true,
            missing: [false; 3],
        };
        for (slot, entry) in plan.missing.iter_mut().zip(&prepared.entries) {
            *slot = !has_name(environment, name_of(entry.as_bytes()));
        }
        for index in 0..environment.len {
            let entry = environment.entry(index);
            let Some(list) = value_of(entry, PRELOAD_NAME) else {
                continue;
            };
            plan.missing_preload = false;
            if !lists_library(list, &prepared.library) {
                plan.preload_fixes += 1;
                plan.fix_bytes += entry.len() + 1 + prepared.library.len() + 1;
            }
        }
        let unchanged = !plan.missing_preload
            && plan.preload_fixes == 0
            && !plan.missing.iter().any(|&missing| missing);
        (!unchanged).then_some(plan)
    }

    /// Returns the entries of the new `envp`, its terminating null pointer included.
    fn pointers(&self) -> usize {
        let added = usize::from(self.missing_preload) + self.missing.iter().filter(|m| **m).count();
        self.len + added + 1
    }

    /// Returns the words of the buffer [`Plan::build`] needs.
    fn words(&self) -> usize {
        self.pointers() + self.fix_bytes.div_ceil(size_of::<usize>())
    }

    /// Writes the new `envp` into `buffer` (of [`Plan::words`] words) and returns it. The
    /// pointers come first and the rewritten `LD_PRELOAD` entries after them.
    fn build(
        &self,
        environment: &Environment,
        prepared: &Prepared,
        buffer: &mut [usize],
    ) -> *const *mut c_char {
        let (pointers, strings) = buffer.split_at_mut(self.pointers());
        // SAFETY: the words after the pointers are plain memory of their length in bytes.
        let strings = unsafe {
            std::slice::from_raw_parts_mut(
                strings.as_mut_ptr().cast::<u8>(),
                std::mem::size_of_val(strings),
            )
        };
        let mut next = 0;
        let mut written = 0;
        let mut push = |pointer: *const c_char| {
            pointers[next] = pointer as usize;
            next += 1;
        };

        for index in 0..environment.len {
            let entry = environment.entry(index);
            match value_of(entry, PRELOAD_NAME) {
                Some(list) if !lists_library(list, &prepared.library) => {
                    let start = written;
                    written += write_preload_entry(entry, &prepared.library, &mut strings[start..]);
                    push(strings[start..].as_ptr().cast());
                }
                _ => push(environment.pointer(index)),
            }
        }
        if self.missing_preload {
            push(prepared.preload_entry.as_ptr());
        }
        for (entry, missing) in prepared.entries.iter().zip(self.missing) {
            if missing {
                push(entry.as_ptr());
            }
        }
        push(std::ptr::null());
        pointers.as_ptr().cast()
    }
}

/// Writes `entry` (`LD_PRELOAD=LIST`) with `:LIBRARY` appended, or `LD_PRELOAD=LIBRARY` when
/// the list is empty, and a NUL into `out`, and returns the bytes written.
fn write_preload_entry(entry: &[u8], library: &[u8], out: &mut [u8]) -> usize {
    let mut len = entry.len();
    out[..len].copy_from_slice(entry);
    if entry.len() > PRELOAD_NAME.len() + 1 {
        out[len] = b':';
        len += 1;
    }
    out[len..len + library.len()].copy_from_slice(library);
    len += library.len();
    out[len] = 0;
    len + 1
}

/// Returns whether a list in the syntax of `LD_PRELOAD` (names separated by spaces or colons,
/// as the dynamic loader splits it) names `library` exactly. Another name for the same file
/// does not count: the library is then listed twice, and the loader loads it once.
fn lists_library(list: &[u8], library: &[u8]) -> bool {
    list.split(|&b| b == b':' || b == b' ')
        .any(|name| name == library)
}

/// Returns the value of `entry` when it is `NAME=VALUE`.
fn value_of<'e>(entry: &'e [u8], name: &[u8]) -> Option<&'e [u8]> {
    entry.strip_prefix(name)?.strip_prefix(b"=")
}

/// Returns the name of a `NAME=VALUE` entry.
fn name_of(entry: &[u8]) -> &[u8] {
    let equals = entry.iter().position(|&b| b == b'=').unwrap_or(entry.len());
    &entry[..equals]
}

/// Returns whether `environment` has an entry for the variable `name`.
fn has_name(environment: &Environment, name: &[u8]) -> bool {
    (0..environment.len).any(|index| value_of(environment.entry(index), name).is_some())
}

/// Anonymous memory mapped for an `envp` too large for the stack, unmapped when dropped.
struct Mapping {
    address: *mut c_void,
    len: usize,
}

impl Mapping {
    /// Maps `words` pointer-sized words, or returns `None` when the kernel refuses.
    fn new(words: usize) -> Option<Mapping> {
        let len = words.checked_mul(size_of::<usize>())?;
        // SAFETY: an anonymous private mapping at an address the kernel picks touches no
        // existing memory.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        (address != libc::MAP_FAILED).then_some(Mapping { address, len })
    }

    fn words(&mut self) -> &mut [usize] {
        let words = self.len / size_of::<usize>();
        // SAFETY: the mapping is readable, writable, page-aligned and `len` bytes long, and
        // this value owns it.
        unsafe { std::slice::from_raw_parts_mut(self.address.cast(), words) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in new and is unmapped once.
        unsafe { libc::munmap(self.address, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBRARY: &[u8] = b"/opt/netcon/libnetcon_preload.so";

    fn prepared() -> Prepared {
        Prepared {
            library: LIBRARY.to_vec(),
            preload_entry: entry(PRELOAD_NAME, LIBRARY),
            entries: vec![
                entry(b"NETCON_SOCKET", b"/run/netcon/control.sock"),
                entry(b"NETCON_CONTROL_FD", b"3:1234:/run/netcon/control.sock"),
            ],
        }
    }

    /// Builds the environment a program would get from `entries` and returns its entries.
    fn rebuilt(entries: &[&str], prepared: &Prepared) -> Option<Vec<String>> {
        let strings: Vec<CString> = entries.iter().map(|e| CString::new(*e).unwrap()).collect();
        let mut pointers: Vec<*mut c_char> =
            strings.iter().map(|s| s.as_ptr().cast_mut()).collect();
        pointers.push(std::ptr::null_mut());
        // SAFETY: pointers is a null-terminated array of the strings above.
        let environment = unsafe { Environment::new(pointers.as_ptr()) };
        let plan = Plan::new(&environment, prepared)?;
        let mut buffer = vec![0usize; plan.words()];
        let envp = plan.build(&environment, prepared, &mut buffer);
        // SAFETY: build returned a null-terminated array of NUL-terminated strings.
        let built = unsafe { Environment::new(envp) };
        Some(
            (0..built.len)
                .map(|i| String::from_utf8(built.entry(i).to_vec()).unwrap())
                .collect(),
        )
    }

    #[test]
    fn empty_environment_gets_all() {
        let built = rebuilt(&[], &prepared()).expect("a new environment");
        assert_eq!(
            built,
            [
                "LD_PRELOAD=/opt/netcon/libnetcon_preload.so",
                "NETCON_SOCKET=/run/netcon/control.sock",
                "NETCON_CONTROL_FD=3:1234:/run/netcon/control.sock",
            ]
        );
    }

    #[test]
    fn own_variables_keep_order() {
        let built = rebuilt(&["PATH=/bin", "HOME=/root", "TERM=dumb"], &prepared()).unwrap();
        assert_eq!(&built[..3], ["PATH=/bin", "HOME=/root", "TERM=dumb"]);
        assert_eq!(built.len(), 6);
    }

    #[test]
    fn complete_environment_unchanged() {
        let entries = [
            "A=1",
            "LD_PRELOAD=/lib/other.so:/opt/netcon/libnetcon_preload.so",
            "NETCON_SOCKET=/elsewhere.sock",
            "NETCON_CONTROL_FD=7:1:/elsewhere.sock",
        ];
        assert_eq!(rebuilt(&entries, &prepared()), None);
    }

    #[test]
    fn other_preload_gets_library_appended() {
        let entries = [
            "LD_PRELOAD=/lib/other.so /lib/third.so",
            "B=2",
            "NETCON_SOCKET=/s",
            "NETCON_CONTROL_FD=x",
        ];
        let built = rebuilt(&entries, &prepared()).unwrap();
        assert_eq!(
            built,
            [
                "LD_PRELOAD=/lib/other.so /lib/third.so:/opt/netcon/libnetcon_preload.so",
                "B=2",
                "NETCON_SOCKET=/s",
                "NETCON_CONTROL_FD=x",
            ]
        );
    }

    #[test]
    fn empty_preload_replaced() {
        let entries = ["LD_PRELOAD=", "NETCON_SOCKET=/s", "NETCON_CONTROL_FD=x"];
        let built = rebuilt(&entries, &prepared()).unwrap();
        assert_eq!(built[0], "LD_PRELOAD=/opt/netcon/libnetcon_preload.so");
        assert_eq!(built.len(), 3);
    }

    #[test]
    fn every_preload_entry_fixed() {
        // The dynamic loader takes the last LD_PRELOAD entry and getenv the first, so both
        // must list the library.
        let entries = ["LD_PRELOAD=/a.so", "X=1", "LD_PRELOAD=/b.so"];
        let built = rebuilt(&entries, &prepared()).unwrap();
        assert_eq!(
            built[0],
            "LD_PRELOAD=/a.so:/opt/netcon/libnetcon_preload.so"
        );
        assert_eq!(built[1], "X=1");
        assert_eq!(
            built[2],
            "LD_PRELOAD=/b.so:/opt/netcon/libnetcon_preload.so"
        );
        assert_eq!(built.len(), 5);
    }

    #[test]
    fn similar_names_not_taken() {
        // LD_PRELOAD_X is another variable, and a list naming the library's file name alone
        // or a longer path does not load this library.
        let entries = [
            "LD_PRELOAD_X=/opt/netcon/libnetcon_preload.so",
            "LD_PRELOAD=libnetcon_preload.so:/opt/netcon/libnetcon_preload.so.1",
            "NETCON_SOCKETS=/s",
        ];
        let built = rebuilt(&entries, &prepared()).unwrap();
        assert_eq!(built[0], entries[0]);
        assert_eq!(
            built[1],
            "LD_PRELOAD=libnetcon_preload.so:/opt/netcon/libnetcon_preload.so.1:\
             /opt/netcon/libnetcon_preload.so"
        );
        assert_eq!(built[2], entries[2]);
        assert_eq!(built[3], "NETCON_SOCKET=/run/netcon/control.sock");
    }

    #[test]
    fn null_environment_counts_as_empty() {
        // SAFETY: a null envp is allowed.
        let environment = unsafe { Environment::new(std::ptr::null()) };
        let plan = Plan::new(&environment, &prepared()).unwrap();
        assert_eq!(plan.pointers(), 4);
    }

    #[test]
    fn large_environment_mapped() {
        let entries: Vec<String> = (0..2 * STACK_WORDS).map(|i| format!("V{i}=x")).collect();
        let names: Vec<&str> = entries.iter().map(String::as_str).collect();
        let built = rebuilt(&names, &prepared()).unwrap();
        assert_eq!(built.len(), entries.len() + 3);
        assert_eq!(built[..entries.len()], entries[..]);

        let mut mapping = Mapping::new(3 * STACK_WORDS).expect("mmap failed");
        let words = mapping.words();
        words[3 * STACK_WORDS - 1] = 7;
        assert_eq!(words.len(), 3 * STACK_WORDS);
    }
}
