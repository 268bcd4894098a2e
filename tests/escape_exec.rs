//! `exec` must not be reachable from the container before it is in it (issue 12, item 2), and a
//! container with a terminal gets a `/dev/console` that is that terminal (item 6).
//!
//! The exec test is the attack itself: a container whose process holds CAP_SYS_PTRACE (as
//! Docker allows) runs a hostile program (tests/ptrace_attack/attacker.rs, compiled here as a
//! static binary) that seizes every new process of the container's pid namespace as early as
//! it can, checks whether it is still on the host's mounts or holds more capabilities than the
//! container, and injects `openat(CANARY, O_CREAT)` into it, CANARY being a host path. Then
//! `exec` runs many times. An `exec` that becomes visible in the container before it has joined
//! the mount namespace and dropped its capabilities is caught there, and the canary appears.
mod common;
mod ptrace_attack;
use common::*;
use ptrace_attack::*;
use std::fs;

const EXECS: usize = 200;

#[cfg(target_arch = "x86_64")]
#[test]
fn exec_is_never_caught_outside_the_container() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("escexec");
    let attacker = Attacker::start(&ctx);
    let mut failed_execs = Vec::new();
    for _ in 0..EXECS {
        let o = ctx.rt(&["exec", &attacker.id, "true"]);
        if !o.success() {
            failed_execs.push(o.to_string());
        }
    }
    // An exec process is caught where it must not be if it is still on another mount
    // namespace (the host's) or holds more capabilities than the container.
    attacker.verdict(EXECS, &failed_execs, |l| {
        field(l, "mnt") != "container" || field(l, "extra") != "0x0"
    });
}

/// The reordered `exec` still ends up in every namespace of the container, with a user and a
/// time namespace too (the user namespace is joined first, pid and time apply to the fork),
/// and its process is berth's child, with no parent inside the container.
#[test]
fn exec_joins_every_namespace_with_user_and_time_namespaces() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("execns");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.namespace("user", None).namespace("time", None);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let (id, pid) = ctx.sleeper_from(&b, "u");
    let kinds = ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"];
    let script = format!(
        "for n in {}; do readlink /proc/self/ns/$n; done; id -u; grep PPid /proc/self/status",
        kinds.join(" ")
    );
    let out = ctx.rt(&["exec", &id, "sh", "-c", &script]).ok();
    let lines = out.lines();
    for (i, kind) in kinds.iter().enumerate() {
        assert_eq!(lines[i], ns_link(&pid.to_string(), kind), "{kind}: {out}");
    }
    assert_eq!(lines[kinds.len()], "0", "{out}");
    assert_eq!(
        lines[kinds.len() + 1].split_whitespace().nth(1),
        Some("0"),
        "{out}"
    );
}

/// A seccomp filter that refuses the fork `exec` makes after loading it fails the `exec`
/// clearly (the filter is never loaded later instead), and leaves no process behind.
#[test]
fn exec_fails_clearly_when_the_seccomp_filter_refuses_the_fork() {
    if skip() || berth_only("error wording") {
        return;
    }
    for action in ["SCMP_ACT_ERRNO", "SCMP_ACT_KILL"] {
        let ctx = Ctx::new("execscfork");
        let mut b = ctx.bundle();
        b.args(&["sleep", "1000"]);
        b.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["clone", "clone3"], "action": action}]
        });
        let (id, pid) = ctx.sleeper_from(&b, "s");
        let before = ctx.rt(&["ps", &id]).ok().stdout;
        let out = ctx.rt(&["exec", &id, "true"]).fails();
        assert!(
            out.stderr.contains("linux.seccomp") && out.stderr.contains("clone(2)"),
            "{action}: {out}"
        );
        assert_eq!(
            ctx.rt(&["ps", &id]).ok().stdout,
            before,
            "{action}: a process stayed"
        );
        assert!(pid_alive(pid));
    }
}

/// With `process.terminal`, /dev/console is the container's terminal (runc binds the pty
/// there): a character device with the terminal's numbers, and what is written to it comes
/// out of the pty.
#[test]
fn dev_console_is_the_terminal() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("console");
    let mut b = ctx.sh_bundle(
        "[ -c /dev/console ] && echo char-device; stat -L -c %t:%T /dev/console /proc/self/fd/0; \
         echo through-the-console > /dev/console; echo done",
    );
    b.config["process"]["terminal"] = json!(true);
    b.write();
    let id = ctx.id("c");
    let out = ctx.run_on_console(&b, &id);
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.first(), Some(&"char-device"), "{out:?}");
    assert!(lines.len() >= 5, "{out:?}");
    assert_eq!(
        lines[1], lines[2],
        "/dev/console is not stdin's terminal: {out:?}"
    );
    assert_eq!(lines[3], "through-the-console", "{out:?}");
    assert_eq!(lines[4], "done", "{out:?}");
    ctx.wait_status(&id, "stopped");
    ctx.delete(&id);
}

/// An image whose /dev/console is a symlink (no /dev tmpfs hides it) does not get the terminal
/// mounted where the link points: the create fails and the link's target is untouched.
#[test]
fn dev_console_symlink_in_the_image_is_refused() {
    if skip() || berth_only("error wording") {
        return;
    }
    let ctx = Ctx::new("consolelink");
    let mut b = ctx.sh_bundle("echo ran");
    b.config["process"]["terminal"] = json!(true);
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/dev");
    b.readonly_root(false);
    let rootfs = b.rootfs();
    fs::create_dir_all(rootfs.join("dev/pts")).unwrap();
    let _ = fs::remove_file(rootfs.join("dev/console"));
    fs::write(rootfs.join("victim"), "untouched\n").unwrap();
    std::os::unix::fs::symlink("/victim", rootfs.join("dev/console")).unwrap();
    b.write();
    let sock = ConsoleSocket::new(&ctx.tmp);
    let id = ctx.id("l");
    let out = ctx.rt(&[
        "create",
        "--console-socket",
        sock.path.to_str().unwrap(),
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("/dev/console"), "{out}");
    assert!(ctx.leaked_mounts().is_empty(), "{:?}", ctx.leaked_mounts());
    assert_eq!(
        fs::read_to_string(rootfs.join("victim")).unwrap(),
        "untouched\n"
    );
    ctx.assert_no_trace(&id);
}

/// The seccomp agent of an `exec` is told the pid of the process its filter is for (the one
/// that execs the program), though the filter is loaded before that process is forked.
#[test]
fn seccomp_agent_gets_the_exec_process_pid() {
    if skip() || berth_only("berth's exec listener hand-off") {
        return;
    }
    let ctx = Ctx::new("execagent");
    let sock = ctx.dir("agent").join("agent.sock");
    let rx = spawn_seccomp_agent(&sock);
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let (id, init_pid) = ctx.sleeper_from(&b, "g");
    let init_state = rx
        .recv_timeout(WAIT_TIMEOUT)
        .expect("no listener for the init");
    assert_eq!(init_state["pid"], init_pid, "{init_state}");
    let pid_file = ctx.tmp.join("exec.pid");
    let script = "mkdir /dev/shm/z && echo mkdir-ok";
    let out = ctx
        .rt(&[
            "exec",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            "sh",
            "-c",
            script,
        ])
        .ok();
    assert_eq!(out.lines(), ["mkdir-ok"], "{out}");
    let exec_state = rx
        .recv_timeout(WAIT_TIMEOUT)
        .expect("no listener for the exec");
    let exec_pid: i64 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(exec_state["pid"], exec_pid, "{exec_state}");
    assert_eq!(exec_state["state"]["pid"], init_pid, "{exec_state}");
}
