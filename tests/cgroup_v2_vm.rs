//! berth on a pure cgroup v2 host, inside a qemu VM.
//!
//! The hosts the suite runs on may have v1 or hybrid cgroups, where berth's v2 code (resource
//! files, eBPF device filter, freezer, stats) is never exercised. This test boots the host's
//! Debian kernel in qemu with an initramfs holding this berth and busybox, mounts cgroup2 on
//! /sys/fs/cgroup with every controller enabled, and runs `scripts/vm-tests/cgroup-v2.sh`
//! there (see `scripts/vm-test.sh`), then `scripts/vm-tests/mounts.sh`: the new mount API and
//! openat2 rules on Debian's older kernel, with hostile rootfs refusals. It needs root, `qemu-system-x86_64` (Debian:
//! qemu-system-x86) and a kernel in /boot (linux-image-amd64); without them it is skipped with
//! a note, except under CI (`CI=true`), where a missing qemu, kernel or busybox is a failure.
//!
//! `BERTH_TEST_RUNTIME=runc` runs the same checks against runc, as for the rest of the suite.

use std::path::{Path, PathBuf};
use std::process::Command;

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// Skip with a note, or fail under CI.
fn missing(what: &str) {
    if in_ci() {
        panic!("cgroup v2 VM test cannot run under CI: {what}");
    }
    eprintln!("SKIPPED: cgroup v2 VM test: {what}");
}

fn in_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name)).filter(|p| p.exists());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn newest_kernel() -> Option<PathBuf> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    kernels.pop()
}

/// The runtime to test: `$BERTH_TEST_RUNTIME` (a path or a name in PATH), else our berth.
fn runtime() -> PathBuf {
    match std::env::var("BERTH_TEST_RUNTIME") {
        Ok(r) if !r.is_empty() => {
            in_path(&r).unwrap_or_else(|| panic!("BERTH_TEST_RUNTIME={r}: not found"))
        }
        _ => PathBuf::from(env!("CARGO_BIN_EXE_berth")),
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn cgroup_v2_checks_pass_in_a_vm() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // As for the rest of the suite, which needs root too.
        eprintln!("SKIPPED: cgroup v2 VM test: needs root");
        return;
    }
    if in_path("qemu-system-x86_64").is_none() {
        return missing("qemu-system-x86_64 not found (apt-get install qemu-system-x86)");
    }
    let Some(kernel) = newest_kernel() else {
        return missing("no /boot/vmlinuz-* (apt-get install linux-image-amd64)");
    };
    if !Path::new("/bin/busybox").exists() {
        return missing("/bin/busybox not found (apt-get install busybox-static)");
    }

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let berth = runtime();
    let log = std::env::temp_dir().join(format!("berth-cgroup-v2-vm.{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    eprintln!(
        "running scripts/vm-test.sh scripts/vm-tests/{{cgroup-v2,mounts}}.sh with BERTH={} and kernel {}",
        berth.display(),
        kernel.display()
    );

    let out = Command::new("bash")
        .arg(repo.join("scripts/vm-test.sh"))
        .arg(repo.join("scripts/vm-tests/cgroup-v2.sh"))
        .arg(repo.join("scripts/vm-tests/mounts.sh"))
        .current_dir(repo)
        .env("BERTH", &berth)
        .env("VM_LOG", &log)
        .output()
        .expect("cannot run bash scripts/vm-test.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with --nocapture, and by cargo when the test fails.
    println!("{stdout}");
    if !stderr.is_empty() {
        eprintln!("{stderr}");
    }
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);

    if !out.status.success() {
        let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
        panic!(
            "scripts/vm-test.sh failed ({}): {}\n\nfailed checks:\n{}\n\nconsole log tail:\n{}\n\nstderr:\n{}",
            out.status,
            stdout.lines().last().unwrap_or(""),
            failures.join("\n"),
            tail(&console, 60),
            tail(&stderr, 20),
        );
    }
    let summary = stdout.lines().last().unwrap_or("");
    assert!(
        summary.ends_with(" 0 failed") && !summary.starts_with("0 passed"),
        "unexpected summary line {summary:?}"
    );
}
