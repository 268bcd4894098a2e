//! berth's pause program: what a pod's infra container runs. It holds the pod's namespaces
//! and does nothing else: SIGINT, SIGTERM and SIGHUP are blocked and waited for
//! (rt_sigtimedwait, no handler needed), and the first one ends it with 0; every other signal
//! is ignored by the kernel for a PID 1 without a handler, SIGKILL aside.
//!
//! No std, no libc: a few hundred bytes of raw system calls (its start is the exec
//! trampoline's, src/runtime/trampoline/start.rs), static, built by build.rs and
//! embedded in berth, which makes the local image `localhost/berth-pause` of it.
#![no_std]
#![no_main]
#![no_builtins]

#[path = "../../runtime/trampoline/start.rs"]
mod start;
use start::{exit, syscall4};

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const RT_SIGPROCMASK: usize = 14;
    pub const RT_SIGTIMEDWAIT: usize = 128;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const RT_SIGPROCMASK: usize = 135;
    pub const RT_SIGTIMEDWAIT: usize = 137;
}

/// The exit status of a panic (there is none to expect).
const PANIC_EXIT: i32 = 2;

const SIG_BLOCK: usize = 0;

extern "C" fn entry(_stack: *const usize) -> ! {
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
