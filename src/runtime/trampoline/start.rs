//! The start of berth's small programs without std or libc (the exec trampoline beside this
//! file, and a pod's pause program, src/kube/pause, which takes this file by `#[path]`): the
//! `_start` symbol, which calls the program's `entry(stack)` (`stack`: the kernel's initial
//! stack pointer, at argc, then argv, NULL, envp, NULL), raw system calls, `exit`, and a panic
//! handler exiting with the program's `PANIC_EXIT`.

use core::arch::{asm, global_asm};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("berth's programs without libc are written for x86_64 and aarch64 only");

#[cfg(target_arch = "x86_64")]
const EXIT_GROUP: usize = 231;
#[cfg(target_arch = "aarch64")]
const EXIT_GROUP: usize = 94;

#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym crate::entry,
);

#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov x0, sp",
    "bl {entry}",
    "brk #0",
    entry = sym crate::entry,
);

/// A raw system call of up to four arguments; the kernel's return (negative errno on failure).
#[cfg(target_arch = "x86_64")]
pub unsafe fn syscall4(nr: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for system call `nr`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
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
pub unsafe fn syscall4(nr: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller passes arguments valid for system call `nr`.
    unsafe {
        asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a as isize => ret,
            in("x1") b,
            in("x2") c,
            in("x3") d,
            options(nostack),
        );
    }
    ret
}

/// A raw system call of up to three arguments.
pub unsafe fn syscall3(nr: usize, a: usize, b: usize, c: usize) -> isize {
    // SAFETY: the caller's promise, passed on (the fourth argument is unused).
    unsafe { syscall4(nr, a, b, c, 0) }
}

/// Ends the program (every thread) with `code`.
pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group takes a plain integer and does not return.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        asm!("syscall", in("rax") EXIT_GROUP, in("rdi") code as usize, options(noreturn, nostack));
        #[cfg(target_arch = "aarch64")]
        asm!("svc 0", in("x8") EXIT_GROUP, in("x0") code as usize, options(noreturn, nostack));
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(crate::PANIC_EXIT)
}
