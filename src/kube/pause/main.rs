//! berth's pause program: what a pod's infra container runs. It holds the pod's namespaces
//! and does nothing else: SIGINT, SIGTERM and SIGHUP are blocked and waited for
//! (rt_sigtimedwait, no handler needed), and the first one ends it with 0; every other signal
//! is ignored by the kernel for a PID 1 without a handler, SIGKILL aside.
//!
//! No std, no libc: a few hundred bytes of raw system calls, static, built by build.rs and
//! embedded in berth, which makes the local image `localhost/berth-pause` of it.
#![no_std]
#![no_main]
#![no_builtins]

use core::arch::{asm, global_asm};

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const RT_SIGPROCMASK: usize = 14;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const EXIT_GROUP: usize = 231;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const RT_SIGPROCMASK: usize = 135;
    pub const RT_SIGTIMEDWAIT: usize = 137;
    pub const EXIT_GROUP: usize = 94;
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("berth's pause program is written for x86_64 and aarch64 only");

#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    "_start:",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    "_start:",
    "bl {entry}",
    "brk #0",
    entry = sym entry,
);

/// A raw system call of up to four arguments.
#[cfg(target_arch = "x86_64")]
unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for system call `n`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall4(n: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for system call `n`.
    unsafe {
        asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            in("x3") d,
            options(nostack),
        );
    }
    ret
}

fn exit(code: usize) -> ! {
    loop {
        // SAFETY: exit_group takes a plain integer and does not return.
        unsafe { syscall4(nr::EXIT_GROUP, code, 0, 0, 0) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(2)
}

const SIG_BLOCK: usize = 0;

extern "C" fn entry() -> ! {
    // SIGHUP (1), SIGINT (2), SIGTERM (15): bit N-1 of the kernel's 64-bit set.
    let set: u64 = (1 << 0) | (1 << 1) | (1 << 14);
    let p = &set as *const u64 as usize;
    // SAFETY: `set` lives through both calls; the size is the kernel's sigset (8 bytes).
    unsafe {
        syscall4(nr::RT_SIGPROCMASK, SIG_BLOCK, p, 0, 8);
        loop {
            // No timeout: returns when one of the set is pending (or on EINTR: waited again).
            if syscall4(nr::RT_SIGTIMEDWAIT, p, 0, 0, 8) > 0 {
                exit(0);
            }
        }
    }
}
