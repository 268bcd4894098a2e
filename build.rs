//! Three jobs.
//!
//! The commit berth is built from, for `--version` (dockerd parses runc's `commit:` line).
//!
//! The release link reads two files that cargo does not see (Makefile: the symbol ordering
//! file and the linker script): told here, cargo relinks berth when either changes, rather
//! than keep a binary laid out by the previous order.
//!
//! The exec trampoline (src/runtime/trampoline/main.rs, see there) is a separate program of
//! a few KB, embedded in berth: built here with the same rustc for the same target, static,
//! not position-independent, without std, libc or start files, stripped.
use std::path::PathBuf;
use std::process::Command;

const TRAMPOLINE_SOURCE: &str = "src/runtime/trampoline";
/// A pod's infra program (src/kube/pause/main.rs), built the same way, with the same start
/// (src/runtime/trampoline/start.rs, watched with the trampoline's folder).
const PAUSE_SOURCE: &str = "src/kube/pause";

fn main() {
    println!("cargo:rerun-if-changed=scripts/symbol-order.txt");
    println!("cargo:rerun-if-changed=scripts/cold-code.ld");
    println!("cargo:rerun-if-changed={TRAMPOLINE_SOURCE}");
    println!("cargo:rerun-if-changed={PAUSE_SOURCE}");
    build_static(
        "berth_exec_trampoline",
        TRAMPOLINE_SOURCE,
        "exec-trampoline",
    );
    build_static("berth_pause", PAUSE_SOURCE, "pause");
    record_commit();
}

/// `BERTH_COMMIT`: the git commit of the tree, "unknown" outside a git checkout.
fn record_commit() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // HEAD moves on checkout, the branch's ref (in the common dir of a worktree) on commit.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
    }
    if let (Some(common), Some(head)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        println!("cargo:rerun-if-changed={common}/{head}");
    }
    println!("cargo:rustc-env=BERTH_COMMIT={commit}");
}

/// Builds `SOURCE/main.rs` as a static program without std, libc or start files into
/// OUT_DIR/`output`.
fn build_static(crate_name: &str, source: &str, output: &str) {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let mut cmd = Command::new(rustc);
    cmd.args(["--edition", "2021", "--crate-type", "bin"])
        .args(["--crate-name", crate_name, "--target", &target])
        .args(["-C", "panic=abort", "-C", "opt-level=z", "-C", "lto=fat"])
        .args([
            "-C",
            "codegen-units=1",
            "-C",
            "debuginfo=0",
            "-C",
            "strip=symbols",
        ])
        .args([
            "-C",
            "relocation-model=static",
            "-C",
            "target-feature=+crt-static",
        ])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args([
            "-C",
            "link-arg=-static",
            "-C",
            "link-arg=-Wl,--build-id=none",
        ]);
    // The linker cargo was told to use for this target, if any (a cross build).
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        let mut arg = std::ffi::OsString::from("linker=");
        arg.push(linker);
        cmd.arg("-C").arg(arg);
    }
    cmd.arg("-o")
        .arg(out.join(output))
        .arg(format!("{source}/main.rs"));
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run rustc to build {output}: {e}"));
    assert!(
        status.success(),
        "building {output} ({source}/main.rs) failed: {status}"
    );
}
