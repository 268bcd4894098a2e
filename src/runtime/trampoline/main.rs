//! berth's exec trampoline: the container process's last step before its program.
//!
//! berth's container process does not execve the container's program itself: while it runs,
//! /proc/self/exe is berth's binary on the host, and an execve that ends up running
//! /proc/self/exe (a `#!/proc/self/exe` script, an interpreter symlinked to it) would run
//! berth's own file inside the container, where it can be reopened and overwritten
//! (CVE-2019-5736). Instead berth execs this program from a sealed memfd, and this program
//! execs the container's: from then on /proc/self/exe of anything in the container is at
//! worst this sealed memfd.
//!
//! argv: [TRAMPOLINE_MARKER, program path, report fd, LSM label or "", program argv...]; the
//! environment is the program's. The label, if any, is written to /proc/self/attr/exec just
//! before the program's exec, so that the program (not this trampoline) starts confined. The report descriptor (berth's sync channel or the `start` connection) is
//! made close-on-exec, so that it closes when the program's exec succeeds (how berth learns
//! it did); if the exec fails, the error goes to it as a sync message and the exit is 127.
//! Started any other way, it says so on stderr and exits 126, exec'ing nothing.
//!
//! No std, no libc: a few KB of raw system calls, built by build.rs and embedded in berth.
#![no_std]
#![no_main]
// Nothing here may become a call to memset, strlen and the like: there is no libc to link.
#![no_builtins]

mod start;
use start::{exit, syscall3};

include!("shared.rs");

const EBADF: isize = 9;
const F_SETFD: usize = 2;
const FD_CLOEXEC: usize = 1;
const AT_FDCWD: isize = -100;
const O_WRONLY: usize = 1;
const O_CLOEXEC: usize = 0o2000000;
const STDERR: usize = 2;

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const EXECVE: usize = 59;
    pub const FCNTL: usize = 72;
    pub const OPENAT: usize = 257;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const FCNTL: usize = 25;
    pub const OPENAT: usize = 56;
    pub const CLOSE: usize = 57;
    pub const WRITE: usize = 64;
    pub const EXECVE: usize = 221;
}

fn write_all(fd: usize, bytes: &[u8]) {
    // One write: on the sync channel (SOCK_SEQPACKET) one write is one message.
    // SAFETY: the pointer and length describe `bytes`.
    unsafe { syscall3(nr::WRITE, fd, bytes.as_ptr() as usize, bytes.len()) };
}

/// The exit status of a panic (there is none to expect): as a failed exec.
const PANIC_EXIT: i32 = TRAMPOLINE_EXEC_FAILED_EXIT;

const MESSAGE_ROOM: usize = 4608;

/// A message put together on the stack (no allocator here); what does not fit is cut.
/// Left uninitialized (zeroing would be a memset): only the first `len` bytes are read.
struct Message {
    bytes: core::mem::MaybeUninit<[u8; MESSAGE_ROOM]>,
    len: usize,
}

impl Message {
    fn push(&mut self, b: u8) {
        if self.len < MESSAGE_ROOM {
            // SAFETY: in bounds of the buffer; writing through a raw pointer into MaybeUninit.
            unsafe { (self.bytes.as_mut_ptr() as *mut u8).add(self.len).write(b) };
            self.len += 1;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        // SAFETY: the first `len` bytes were written by `push`.
        unsafe { core::slice::from_raw_parts(self.bytes.as_ptr() as *const u8, self.len) }
    }

    fn push_all(&mut self, s: &[u8]) {
        for &b in s {
            self.push(b);
        }
    }

    /// A byte as Rust's `escape_ascii` writes it (how `{:?}` shows a `CStr`).
    fn push_escaped(&mut self, b: u8) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        match b {
            b'\t' => self.push_all(b"\\t"),
            b'\r' => self.push_all(b"\\r"),
            b'\n' => self.push_all(b"\\n"),
            b'\\' | b'\'' | b'"' => {
                self.push(b'\\');
                self.push(b);
            }
            0x20..=0x7e => self.push(b),
            _ => {
                self.push_all(b"\\x");
                self.push(HEX[(b >> 4) as usize]);
                self.push(HEX[(b & 15) as usize]);
            }
        }
    }

    fn push_number(&mut self, mut n: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push_all(&digits[i..]);
    }
}

/// The bytes of a NUL-terminated string.
///
/// # Safety
/// `p` points to a NUL-terminated string that lives as long as the program (argv's do).
unsafe fn c_bytes(p: *const u8) -> &'static [u8] {
    let mut len = 0;
    // SAFETY: reading up to and excluding the terminating NUL the caller guarantees.
    unsafe {
        while *p.add(len) != 0 {
            len += 1;
        }
        core::slice::from_raw_parts(p, len)
    }
}

/// `a == b` by hand: slice equality may become a call to memcmp.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn parse_fd(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    let mut n = 0usize;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as usize;
    }
    Some(n)
}

fn misuse() -> ! {
    write_all(
        STDERR,
        b"berth exec trampoline: not started by berth, nothing to run\n",
    );
    exit(TRAMPOLINE_MISUSE_EXIT)
}

impl Message {
    /// `"bytes"`, as `{:?}` quotes a `CStr`; cut to leave room for the error's text.
    fn push_quoted(&mut self, bytes: &[u8]) {
        self.push(b'"');
        for &b in bytes.iter().take(1024) {
            self.push_escaped(b);
        }
        self.push(b'"');
    }
}

/// Reports a failed step to berth as a sync-protocol error (what `describe` writes, then the
/// errno's text) and exits.
fn report(fd: usize, describe: impl FnOnce(&mut Message), errno: isize) -> ! {
    let mut m = Message {
        bytes: core::mem::MaybeUninit::uninit(),
        len: 0,
    };
    m.push(SYNC_ERROR_TAG);
    describe(&mut m);
    match EXEC_ERRNO_TEXT.iter().find(|(n, _)| *n as isize == errno) {
        Some((_, text)) => m.push_all(text.as_bytes()),
        None => {
            m.push_all(b"errno ");
            m.push_number(errno as usize);
        }
    }
    write_all(fd, m.as_bytes());
    exit(TRAMPOLINE_EXEC_FAILED_EXIT)
}

fn report_exec(fd: usize, path: &[u8], step: &[u8], errno: isize) -> ! {
    report(
        fd,
        |m| {
            m.push_all(EXEC_FAILED_PREFIX.as_bytes());
            m.push_quoted(path);
            m.push_all(b": ");
            m.push_all(step);
        },
        errno,
    )
}

/// Writes the LSM label the program is to run under (AppArmor's `exec PROFILE`, an SELinux
/// context) to /proc/self/attr/exec: it applies at the next execve, so berth cannot write it
/// before exec'ing this program, which would then be the one to run under it.
fn set_exec_label(report_fd: usize, label: &[u8]) {
    let fail = |errno: isize| -> ! {
        report(
            report_fd,
            |m| {
                m.push_all(b"cannot set the LSM label ");
                m.push_quoted(label);
                m.push_all(b" for exec: ");
            },
            errno,
        )
    };
    // SAFETY: a NUL-terminated path; no mode is read without O_CREAT.
    let fd = unsafe {
        syscall3(
            nr::OPENAT,
            AT_FDCWD as usize,
            c"/proc/self/attr/exec".as_ptr() as usize,
            O_WRONLY | O_CLOEXEC,
        )
    };
    if fd < 0 {
        fail(-fd);
    }
    // SAFETY: the pointer and length describe `label`.
    let r = unsafe { syscall3(nr::WRITE, fd as usize, label.as_ptr() as usize, label.len()) };
    if r < 0 {
        fail(-r);
    }
    // SAFETY: closing the descriptor opened above.
    unsafe { syscall3(nr::CLOSE, fd as usize, 0, 0) };
}

/// # Safety
/// Called once, from `_start`, with the stack pointer the kernel gave the program.
unsafe extern "C" fn entry(sp: *const usize) -> ! {
    // SAFETY: the kernel's initial stack: argc, then argc argv pointers and a NULL, then the
    // environment's pointers and a NULL; every string NUL-terminated.
    let (argc, argv, envp) = unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const u8;
        (argc, argv, argv.add(argc + 1))
    };
    // SAFETY: argv[0..argc] are valid strings (checked count).
    let arg = |i: usize| unsafe { c_bytes(*argv.add(i)) };
    if argc <= TRAMPOLINE_ARGS || !same_bytes(arg(0), TRAMPOLINE_MARKER) {
        misuse();
    }
    let path = arg(1);
    let Some(report_fd) = parse_fd(arg(2)) else {
        misuse()
    };
    let label = arg(3);
    // SAFETY: fcntl on a descriptor number only changes its flags.
    let r = unsafe { syscall3(nr::FCNTL, report_fd, F_SETFD, FD_CLOEXEC) };
    if r == -EBADF {
        misuse();
    }
    if r < 0 {
        report_exec(report_fd, path, b"fcntl(FD_CLOEXEC): ", -r);
    }
    if !label.is_empty() {
        set_exec_label(report_fd, label);
    }
    // SAFETY: path, the program's argv and envp are the kernel's NUL-terminated strings and
    // NULL-terminated arrays.
    let r = unsafe {
        syscall3(
            nr::EXECVE,
            path.as_ptr() as usize,
            argv.add(TRAMPOLINE_ARGS) as usize,
            envp as usize,
        )
    };
    report_exec(report_fd, path, b"", -r)
}
