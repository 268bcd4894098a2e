//! What the ptrace attack tests share (tests/escape_exec.rs, tests/escape_pidjoin.rs): the
//! attacker program (attacker.rs here, compiled by the test as a static binary), reading its
//! reports, and a seccomp agent that answers every notification.
#![allow(dead_code)]

use crate::common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Compiles the attacker into `dir` as a static binary.
pub fn build_attacker(dir: &Path) -> PathBuf {
    let src = repo_dir().join("tests/ptrace_attack/attacker.rs");
    let out = dir.join("attacker");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let st = std::process::Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run rustc");
    assert!(st.success(), "rustc failed on {}", src.display());
    out
}

/// Waits until `path` holds a line starting with `prefix`.
pub fn wait_for_line(path: &Path, prefix: &str) {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    while !fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(prefix))
    {
        assert!(
            Instant::now() < deadline,
            "no {prefix:?} line in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of `key=` in a report line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or("")
}

/// Answers every notification on a seccomp listener with success (the call not made), until
/// no process uses the filter.
pub fn answer_notifications(fd: std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    #[derive(Default)]
    struct Notif {
        id: u64,
        pid: u32,
        flags: u32,
        nr: i32,
        arch: u32,
        ip: u64,
        args: [u64; 6],
    }
    #[repr(C)]
    struct Resp {
        id: u64,
        val: i64,
        error: i32,
        flags: u32,
    }
    const RECV: libc::c_ulong = 0xc050_2100;
    const SEND: libc::c_ulong = 0xc018_2101;
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut pfd, 1, 30_000) } <= 0 || pfd.revents & libc::POLLIN == 0 {
            return;
        }
        let mut n = Notif::default();
        // SAFETY: the kernel fills the zeroed struct seccomp_notif we own.
        if unsafe { libc::ioctl(fd.as_raw_fd(), RECV, &mut n) } != 0 {
            continue;
        }
        let r = Resp {
            id: n.id,
            val: 0,
            error: 0,
            flags: 0,
        };
        // SAFETY: the kernel reads the struct seccomp_notif_resp we own.
        unsafe { libc::ioctl(fd.as_raw_fd(), SEND, &r) };
    }
}
