//! The systemd cgroup driver (`--systemd-cgroup`), CRI with `SystemdCgroup = true` and Docker
//! Swarm's routing mesh, inside a qemu VM in which systemd is pid 1 (the hosts the suite runs
//! on have no systemd as init, and may have no IPVS).
//!
//! Runs `scripts/vm-systemd-test.sh` three times on a Debian bookworm userland with systemd,
//! containerd and docker.io made by `scripts/mkroot-systemd.sh` (debootstrap, once, then
//! cached: a few minutes the first time), booted from an initramfs with this berth inside:
//! - on cgroup v2: `systemd-cgroup.sh` (the transient scope: Delegate, slice, nested slices,
//!   the init in it; the limits as unit properties and in the cgroup files, `update` of both,
//!   `delete` and a failed create leaving no unit and no cgroup); `rootless-systemd.sh` (the
//!   same for a non-root user through their own lingering systemd instance, with the
//!   controllers it delegates by default and with cpuset and io delegated too); `cri.sh`
//!   (tests/cri.rs, its executable built beside this one, with containerd's
//!   `SystemdCgroup = true`: each pod and container a scope in the pod's slice, gone when
//!   removed); `swarm.sh` (scripts/clients/swarm.sh with its published-port checks required:
//!   the routing mesh answers on 127.0.0.1 and the VM's address, balanced over the replicas);
//! - on cgroup v1, hybrid (`systemd.unified_cgroup_hierarchy=0`, systemd's own tracking on a v2
//!   mount) and legacy (`systemd.legacy_systemd_cgroup_controller=1` too): `systemd-cgroup.sh`
//!   again, with v1's property names and each controller's files, and a non-root user refused.
//!
//! Needs root, qemu-system-x86_64, a kernel in /boot, busybox and debootstrap; skipped with a
//! note without them, except under CI (`CI=true`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

fn missing(what: &str) {
    assert!(!in_ci(), "systemd VM test cannot run under CI: {what}");
    eprintln!("SKIPPED: systemd VM test: {what}");
}

fn in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The newest build of tests/cri.rs beside this test's executable (cargo builds every test
/// target before it runs any).
fn cri_test_executable() -> Option<PathBuf> {
    let deps = std::env::current_exe().ok()?.parent()?.to_path_buf();
    std::fs::read_dir(deps)
        .ok()?
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("cri-") && !name.contains('.')
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}

#[test]
fn systemd_driver_checks_pass_in_a_vm_with_systemd() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: systemd VM test: needs root");
        return;
    }
    for (tool, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("debootstrap", "debootstrap"),
    ] {
        if in_path(tool).is_none() {
            return missing(&format!("{tool} not found (apt-get install {package})"));
        }
    }
    let has_kernel = std::fs::read_dir("/boot").is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
    });
    if !has_kernel {
        return missing("no /boot/vmlinuz-* (apt-get install linux-image-amd64)");
    }
    if !Path::new("/bin/busybox").exists() {
        return missing("/bin/busybox not found (apt-get install busybox-static)");
    }
    let cri = cri_test_executable();
    if cri.is_none() {
        assert!(!in_ci(), "tests/cri.rs is not built beside this test");
        eprintln!("note: tests/cri.rs not built (cargo test --no-run --test cri): the CRI check in the VM skips");
    }
    // One boot on cgroup v2 for the driver, CRI, Swarm and a user's instance; two on v1.
    run_vm(
        &[
            "systemd-cgroup.sh",
            "rootless-systemd.sh",
            "cri.sh",
            "swarm.sh",
        ],
        "",
        cri.as_deref(),
    );
    // systemd 252 of Debian: v1 controllers with its own tracking on a v2 mount (hybrid),
    // then v1 alone (legacy, name=systemd).
    run_vm(
        &["systemd-cgroup.sh"],
        "systemd.unified_cgroup_hierarchy=0",
        None,
    );
    run_vm(
        &["systemd-cgroup.sh"],
        "systemd.unified_cgroup_hierarchy=0 systemd.legacy_systemd_cgroup_controller=1",
        None,
    );
}

/// Boots the VM with `cmdline` added to the kernel's and runs the `scripts` of
/// scripts/vm-tests-systemd in it; every check must pass.
fn run_vm(scripts: &[&str], cmdline: &str, cri: Option<&Path>) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(repo.join("scripts/vm-systemd-test.sh"))
        .args(
            scripts
                .iter()
                .map(|s| repo.join("scripts/vm-tests-systemd").join(s)),
        )
        .current_dir(repo)
        .env("BERTH", env!("CARGO_BIN_EXE_berth"))
        .env("VM_CMDLINE", cmdline);
    if let Some(exe) = cri {
        cmd.env("VM_CRI_TEST", exe);
    }
    let out = cmd
        .output()
        .expect("cannot run bash scripts/vm-systemd-test.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(
        out.status.success(),
        "scripts/vm-systemd-test.sh ({cmdline:?}) failed ({}):\n{}",
        out.status,
        failures.join("\n")
    );
    let summary = stdout.lines().last().unwrap_or("");
    assert!(
        summary.ends_with(" 0 failed") && !summary.starts_with("0 passed"),
        "unexpected summary line {summary:?}"
    );
}
