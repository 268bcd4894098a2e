//! A container that joins another's pid namespace by path (a pod sharing its pid namespace,
//! `--pid container:X`) must not be reachable from that namespace before it is confined
//! (issue 12, item 2, second form).
//!
//! The attack: container A holds CAP_SYS_PTRACE (as Docker allows) and runs a hostile program
//! (tests/ptrace_attack/attacker.rs, compiled as a static binary) that seizes every new process
//! of its pid namespace as early as it can, compares its capabilities with A's, and injects
//! `openat(CANARY, O_CREAT)` into it, CANARY being a host path. Container B, whose
//! `linux.namespaces` joins A's pid namespace by path, is then created and started many times.
//! A B process that becomes visible in A's namespace while it still has the host's mounts or
//! all its capabilities is caught there, and the canary appears on the host.
//!
//! berth puts the fork into the joined pid namespace after the whole set-up (mounts, pivot_root,
//! dropped privileges) where the kernel can mount a procfs for another pid namespace (`pidns`,
//! Linux 6.15); elsewhere it keeps the early fork, and the attack test is skipped.
mod common;
mod ptrace_attack;
use common::*;
use ptrace_attack::*;
use std::fs;

use std::time::{Duration, Instant};

const CREATIONS: usize = 100;

/// Whether this kernel makes a procfs for a given pid namespace (fsconfig `pidns`, 6.15+).
fn procfs_takes_pidns() -> bool {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let ns = fs::File::open("/proc/self/ns/pid").unwrap();
    // SAFETY: the type is a NUL-terminated literal.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, c"proc".as_ptr(), 1 as libc::c_uint) };
    if r < 0 {
        return false;
    }
    // SAFETY: fsopen returned a new descriptor that nothing else owns.
    let fs_ctx = unsafe { OwnedFd::from_raw_fd(r as i32) };
    const FSCONFIG_SET_FD: libc::c_uint = 5;
    // SAFETY: the key is NUL-terminated; both descriptors are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs_ctx.as_raw_fd(),
            FSCONFIG_SET_FD,
            c"pidns".as_ptr(),
            std::ptr::null::<libc::c_char>(),
            ns.as_raw_fd(),
        )
    };
    r == 0
}

fn skip_without_pidns() -> bool {
    if procfs_takes_pidns() {
        return false;
    }
    eprintln!(
        "SKIP: this kernel cannot mount a procfs for another pid namespace (procfs `pidns`, \
         Linux 6.15); berth keeps the early fork into a joined pid namespace there"
    );
    true
}

/// A bundle whose pid namespace is `pid`'s, its other namespaces new.
fn joining_bundle(ctx: &Ctx, pid: i32) -> Bundle {
    let mut b = ctx.bundle();
    let path = format!("/proc/{pid}/ns/pid");
    b.remove_namespace("pid").namespace("pid", Some(&path));
    assert!(
        !b.has_namespace("user"),
        "the attack needs no user namespace"
    );
    b
}

#[cfg(target_arch = "x86_64")]
#[test]
fn pid_joining_container_is_never_caught_before_it_is_confined() {
    if skip() || skip_without_pidns() {
        return;
    }
    let ctx = Ctx::new("escpidjoin");
    let attacker = Attacker::start(&ctx);
    let mut b = joining_bundle(&ctx, attacker.pid);
    b.args(&["true"]);
    let mut failed = Vec::new();
    for i in 0..CREATIONS {
        let id = ctx.id(&format!("b{i}"));
        let o = ctx.try_create(&b, &id);
        if o.success() {
            let s = ctx.rt(&["start", &id]);
            if !s.success() {
                failed.push(s.to_string());
            }
        } else {
            failed.push(o.to_string());
        }
        ctx.rt(&["delete", "--force", &id]);
    }
    // B's processes are in B's mount namespace, not A's (`mnt=outside` is expected): what must
    // never be is a process with more capabilities than A's (B's are a subset), and the canary
    // (written only by a process still on the host's mounts).
    attacker.verdict(CREATIONS, &failed, |l| field(l, "extra") != "0x0");
}

/// The joining container is in A's pid namespace, its /proc shows that namespace (A's init is
/// there, and its own /proc/self), `run` returns its exit status, and `create` reports the pid
/// of the process that execs.
#[test]
fn pid_joining_container_sees_the_joined_namespace() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("pidjoin");
    let (_a_id, a_pid) = ctx.sleeper("a");
    let mut b = joining_bundle(&ctx, a_pid);
    b.sh(
        "readlink /proc/self/ns/pid; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
         ls /proc | grep -c '^[0-9]'; exit 7",
    );
    let id = ctx.id("b");
    let out = ctx.run(&b, &id);
    assert_eq!(out.code(), 7, "{out}");
    let lines = out.lines();
    assert_eq!(lines[0], ns_link(&a_pid.to_string(), "pid"), "{out}");
    assert_eq!(
        lines[1].trim(),
        "sleep 1000",
        "A's init is not B's /proc/1: {out}"
    );
    let seen: usize = lines[2].parse().unwrap();
    assert!(seen >= 2, "B's /proc shows too few processes: {out}");

    // create: the state's pid is the process in the joined namespace, which execs.
    let mut b = joining_bundle(&ctx, a_pid);
    b.args(&["sleep", "1000"]);
    let (id, pid) = ctx.sleeper_from(&b, "c");
    assert_eq!(
        ns_link(&pid.to_string(), "pid"),
        ns_link(&a_pid.to_string(), "pid")
    );
    let cmd = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmd, "sleep\u{0}1000\u{0}");
    let ppid = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:").map(|v| v.trim().to_string()))
        .unwrap();
    assert_ne!(
        ppid,
        a_pid.to_string(),
        "B's process is a child of A's init"
    );
    ctx.rt(&["delete", "--force", &id]).ok();
    ctx.assert_gone(&id, pid);
}

/// A terminal works in a container that joins a pid namespace: the process's stdin is the
/// pty, which is also /dev/console and its controlling terminal.
#[test]
fn pid_joining_container_with_a_terminal() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("pidjointty");
    let (_a_id, a_pid) = ctx.sleeper("a");
    let mut b = joining_bundle(&ctx, a_pid);
    b.sh("tty; stat -L -c %t:%T /dev/console /proc/self/fd/0; echo done");
    b.config["process"]["terminal"] = json!(true);
    b.write();
    let id = ctx.id("t");
    let out = ctx.run_on_console(&b, &id);
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines.len() >= 4, "{out:?}");
    assert!(
        lines[0].starts_with("/dev/pts/"),
        "no controlling tty: {out:?}"
    );
    assert_eq!(
        lines[1], lines[2],
        "/dev/console is not the terminal: {out:?}"
    );
    assert_eq!(lines[3], "done", "{out:?}");
    ctx.wait_status(&id, "stopped");
    ctx.delete(&id);
}

/// A seccomp filter that refuses the fork into the joined pid namespace fails `create` clearly
/// and leaves nothing.
#[test]
fn pid_joining_create_fails_clearly_when_the_seccomp_filter_refuses_the_fork() {
    if skip() || berth_only("error wording") || skip_without_pidns() {
        return;
    }
    let ctx = Ctx::new("pidjoinsc");
    let (a_id, a_pid) = ctx.sleeper("a");
    for action in ["SCMP_ACT_ERRNO", "SCMP_ACT_KILL"] {
        let mut b = joining_bundle(&ctx, a_pid);
        b.args(&["true"]);
        b.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["clone", "clone3"], "action": action}]
        });
        let id = ctx.id("s");
        let out = ctx.try_create(&b, &id);
        assert!(!out.success(), "{action}: {out}");
        assert!(
            out.stderr.contains("linux.seccomp") && out.stderr.contains("clone(2)"),
            "{action}: {out}"
        );
        ctx.assert_no_trace_except(&id, &[&a_id]);
    }
}

/// The seccomp agent of a container joining a pid namespace is told the pid of the process
/// its filter is for (the one that execs, in the joined namespace), though the filter is
/// loaded before that process is forked; and it answers that process's calls.
#[test]
fn seccomp_agent_gets_the_pid_of_the_joining_container_process() {
    if skip() || berth_only("berth's listener hand-off") {
        return;
    }
    let ctx = Ctx::new("pidjoinagent");
    let (_a_id, a_pid) = ctx.sleeper("a");
    let sock = ctx.dir("agent").join("agent.sock");
    let rx = spawn_seccomp_agent(&sock);
    // The filter is loaded early without noNewPrivileges, last with it: before the fork
    // into the joined namespace either way.
    for nnp in [false, true] {
        let mut b = joining_bundle(&ctx, a_pid);
        b.sh("mkdir /dev/shm/z && echo mkdir-ok; exec sleep 1000");
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        });
        let (id, pid) = ctx.sleeper_from(&b, "g");
        let state = rx.recv_timeout(WAIT_TIMEOUT).expect("no listener");
        assert_eq!(state["pid"], pid, "noNewPrivileges {nnp}: {state}");
        assert_eq!(state["state"]["pid"], pid, "noNewPrivileges {nnp}: {state}");
        assert_eq!(
            ns_link(&pid.to_string(), "pid"),
            ns_link(&a_pid.to_string(), "pid")
        );
        // The shell's mkdir, answered by the agent, let it go on to exec sleep.
        let deadline = Instant::now() + WAIT_TIMEOUT;
        while fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default()
            != "sleep\u{0}1000\u{0}"
        {
            assert!(
                Instant::now() < deadline,
                "noNewPrivileges {nnp}: the mkdir hangs"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ctx.rt(&["delete", "--force", &id]).ok();
    }
}

/// The hooks of a container joining a pid namespace run where the spec places them: prestart
/// and createRuntime in berth's namespaces, createContainer and startContainer in the
/// container's, both in the joined pid namespace. Until the fork the state's pid is that of
/// berth's set-up process, in all the container's namespaces but the pid one; from
/// startContainer on it is the process that execs.
#[test]
fn pid_joining_container_hooks() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("pidjoinhooks");
    let (_a_id, a_pid) = ctx.sleeper("a");
    let d = ctx.dir("hooks");
    let mut b = joining_bundle(&ctx, a_pid);
    b.bind(&d, d.to_str().unwrap(), &[]);
    b.args(&["sleep", "1000"]);
    let kinds = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
    ];
    for kind in kinds {
        let d = d.display();
        b.add_hook(
            kind,
            json!({
                "path": "/bin/sh",
                "args": ["sh", "-c", format!(
                    "cat > {d}/{kind}.json; readlink /proc/self/ns/pid > {d}/{kind}.pidns; \
                     readlink /proc/self/ns/mnt > {d}/{kind}.mnt")]
            }),
        );
    }
    let (id, pid) = ctx.sleeper_from(&b, "h");
    let read = |name: &str| {
        fs::read_to_string(d.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .trim()
            .to_string()
    };
    let joined = ns_link(&a_pid.to_string(), "pid");
    let host_pidns = ns_link("self", "pid");
    assert_eq!(read("prestart.pidns"), host_pidns);
    assert_eq!(read("createRuntime.pidns"), host_pidns);
    assert_eq!(read("createContainer.pidns"), joined);
    assert_eq!(read("startContainer.pidns"), joined);
    assert_eq!(
        read("createContainer.mnt"),
        ns_link(&pid.to_string(), "mnt")
    );
    assert_eq!(read("startContainer.mnt"), ns_link(&pid.to_string(), "mnt"));
    let state =
        |kind: &str| -> Value { serde_json::from_str(&read(&format!("{kind}.json"))).unwrap() };
    let setup_pid = state("prestart")["pid"].as_i64().unwrap();
    assert!(setup_pid > 0 && setup_pid != pid as i64);
    assert_eq!(state("createContainer")["pid"], setup_pid);
    assert_eq!(state("startContainer")["pid"], pid);
    ctx.rt(&["delete", "--force", &id]).ok();
}
