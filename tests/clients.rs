//! Real clients drive the runtime unchanged: containerd (its runc shim, through `ctr`), Docker
//! Engine (dockerd with a `runtimes` entry) and Podman (through conmon).
//!
//! Each test runs one suite in `scripts/clients/` with `CLIENT_RUNTIME` set to the runtime under
//! test: the suite starts its daemon with all its state in a temp dir, imports a busybox image
//! made from `bundles/busybox/rootfs`, runs its checks (one `ok NAME` / `FAIL NAME: ...` line
//! each), stops the daemon and restores the host (iptables rules and chains, the FORWARD policy,
//! `net.ipv4.ip_forward`, the bridges it made). The suites run one at a time, also across
//! checkouts (a lock in /run/lock, taken by the scripts): the host's iptables and
//! `ip_forward` are shared.
//!
//! The clients come from Debian packages (containerd, docker.io, podman, conmon, ...; see
//! `.ci/run`). Without them a suite is skipped with a note, except under CI (`CI=true`), where
//! a missing client is a failure. `BERTH_TEST_RUNTIME=runc` runs the suites against runc, the
//! oracle. `make test-clients` runs only these tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
/// A suite's checks are each bounded by the script; this bounds the whole suite (up to 10
/// minutes waiting for another checkout's suite to release the host-wide lock, daemon start and
/// stop included), after which `timeout` sends TERM and the script's trap cleans up.
const SUITE_TIMEOUT_SECS: u32 = 1200;

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// The runtime to test: `$BERTH_TEST_RUNTIME` (a path, or a name looked up in PATH), else our berth.
fn runtime_path() -> PathBuf {
    let runtime = common::runtime();
    if runtime.components().count() == 1 {
        return common::which(&runtime.to_string_lossy())
            .unwrap_or_else(|| panic!("BERTH_TEST_RUNTIME={}: not found", runtime.display()));
    }
    runtime
}

/// Run `scripts/clients/<suite>.sh` if every tool it needs is installed; panic if it fails.
fn run_suite(suite: &str, tools: &[&str]) {
    if !common::is_root() {
        eprintln!("SKIPPED: the {suite} client suite needs root");
        return;
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| common::which(t).is_none())
        .collect();
    if !missing.is_empty() {
        let what = format!("the {suite} client suite needs {}", missing.join(", "));
        assert!(!in_ci(), "{what} (see .ci/run's install line)");
        eprintln!("SKIPPED: {what}");
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = repo.join("scripts/clients").join(format!("{suite}.sh"));
    let out = Command::new("timeout")
        .args(["-k", "30", &SUITE_TIMEOUT_SECS.to_string(), "bash"])
        .arg(&script)
        .env("CLIENT_RUNTIME", runtime_path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    let failures: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(
        out.status.success() && failures.is_empty(),
        "{suite} suite failed ({}): {}\n{}",
        out.status,
        failures.join("\n"),
        stderr.lines().last().unwrap_or("")
    );
    let summary = format!("{suite}: ");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&summary) && l.contains(" 0 failed")),
        "{suite} suite printed no summary line"
    );
}

#[test]
fn containerd_runs_containers_through_its_runc_shim() {
    run_suite(
        "containerd",
        &["containerd", "ctr", "containerd-shim-runc-v2", "script"],
    );
}

#[test]
fn docker_engine_runs_containers_with_a_runtimes_entry() {
    run_suite(
        "docker",
        &[
            "dockerd",
            "containerd",
            "docker-init",
            "docker-proxy",
            "iptables",
            "script",
            "curl",
        ],
    );
}

#[test]
fn podman_runs_containers_through_conmon() {
    run_suite(
        "podman",
        &["podman", "conmon", "iptables", "script", "curl"],
    );
}

/// Docker Swarm with berth as dockerd's default runtime: a service's tasks, scaling, an
/// update and a stack are berth containers (scripts/clients/swarm.sh).
#[test]
fn docker_swarm_runs_its_tasks_on_berth() {
    run_suite(
        "swarm",
        &["dockerd", "containerd", "docker-init", "iptables", "curl"],
    );
}
