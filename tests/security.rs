//! The container as a security boundary: seccomp, exec inheriting the container's confinement,
//! and regression tests for what runc learned the hard way (CVE-2019-5736: a non-dumpable
//! init; CVE-2024-21626: no host descriptor or cwd inside; masked /proc stays masked).
mod common;
use common::*;
use std::fs;
use std::os::unix::process::CommandExt;

fn status_field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn seccomp_errno_rule_fails_the_syscall_with_the_configured_errno() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("scerrno");
    let mut b = ctx.bundle();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    });
    b.sh("grep Seccomp: /proc/self/status; mkdir /dev/shm/x 2>&1; test -d /dev/shm/x && echo made || echo not-made");
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(status_field(lines[0], "Seccomp"), "2", "{out}");
    assert!(lines[1].contains("Function not implemented"), "{out}");
    assert_eq!(lines[2], "not-made", "{out}");
}

#[test]
fn seccomp_kill_rule_kills_the_process() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("sckill");
    let mut b = ctx.bundle();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]
    });
    b.args(&["mkdir", "/dev/shm/x"]);
    let id = ctx.id("k");
    let out = ctx.run(&b, &id);
    assert_eq!(out.code(), 128 + 31, "expected death by SIGSYS: {out}");
}

#[test]
fn docker_seccomp_profile_is_enforced() {
    if skip() {
        return;
    }
    let Ok(text) =
        fs::read_to_string(repo_dir().join("../shared/testdata/docker-20.10-config.json"))
            .or_else(|_| fs::read_to_string("/work/shared/testdata/docker-20.10-config.json"))
    else {
        eprintln!("SKIPPED: shared/testdata not found");
        return;
    };
    let docker: Value = serde_json::from_str(&text).unwrap();
    let ctx = Ctx::new("scdocker");
    let mut b = ctx.bundle();
    b.config["linux"]["seccomp"] = docker["linux"]["seccomp"].clone();
    // Docker's profile allows personality(0) but not other personalities.
    b.sh("grep Seccomp: /proc/self/status; echo ok; setarch linux32 true 2>&1 || echo personality-denied");
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(status_field(lines[0], "Seccomp"), "2", "{out}");
    assert_eq!(lines[1], "ok", "{out}");
    assert!(out.contains("personality-denied"), "{out}");
}

#[test]
fn bad_seccomp_input_names_the_field_and_leaves_nothing() {
    if skip() || berth_only("error wording") {
        return;
    }
    let ctx = Ctx::new("scbad");
    let mut b = ctx.bundle();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_MIPS"],
    });
    let id = ctx.id("b");
    let out = ctx.try_create(&b, &id);
    assert!(!out.success());
    assert!(
        out.stderr.contains("linux.seccomp.architectures[0]"),
        "{out}"
    );
    assert!(!ctx.state_dir(&id).exists());
}

#[test]
fn exec_gets_the_namespaces_caps_seccomp_and_no_new_privs_of_the_container() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("secexec");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let (id, pid) = ctx.sleeper_from(&b, "e");
    let init = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let out = ctx.rt(&["exec", &id, "sh", "-c", "cat /proc/self/status; for n in mnt pid net ipc uts cgroup; do readlink /proc/self/ns/$n; done; mkdir /dev/shm/y 2>&1 || true"]).ok();
    for key in [
        "CapBnd",
        "CapEff",
        "CapPrm",
        "CapInh",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
    ] {
        assert_eq!(
            status_field(&out.stdout, key),
            status_field(&init, key),
            "{key} differs: {out}"
        );
    }
    assert_eq!(status_field(&out.stdout, "Seccomp"), "2");
    for n in ["mnt", "pid", "net", "ipc", "uts", "cgroup"] {
        let theirs = fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
        assert!(
            out.stdout.contains(theirs.to_str().unwrap()),
            "exec is not in the container's {n} namespace: {out}"
        );
    }
    assert!(
        out.stdout.contains("Operation not permitted"),
        "mkdir was not filtered in exec: {out}"
    );
    ctx.rt(&["delete", "--force", &id]).ok();
}

#[test]
fn no_host_descriptor_reaches_the_container() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("secfds");
    let b = ctx.sh_bundle("ls /proc/self/fd; readlink /proc/self/cwd");
    b.write();
    let id = ctx.id("f");
    // The runtime is started with host directories open at 7 and 8, not close-on-exec.
    let host_dir = fs::File::open("/").unwrap();
    let cgroup_dir = fs::File::open("/sys/fs/cgroup").unwrap();
    let mut cmd = ctx.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let (a, c) = (
        std::os::fd::AsRawFd::as_raw_fd(&host_dir),
        std::os::fd::AsRawFd::as_raw_fd(&cgroup_dir),
    );
    // SAFETY: dup2 only in the child before exec; both descriptors are open in the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(a, 7) < 0 || libc::dup2(c, 8) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = ctx.output(cmd);
    assert_eq!(out.code(), 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    // 0, 1, 2 and the descriptor ls opens to read the directory.
    assert_eq!(&lines[..lines.len() - 1], ["0", "1", "2", "3"], "{out}");
    assert_eq!(lines[lines.len() - 1], "/", "cwd: {out}");
}

#[test]
fn the_init_is_not_dumpable_until_it_execs() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("secdump");
    let mut b = ctx.bundle();
    host(
        "chown",
        &["-R", "100000:100000", b.rootfs().to_str().unwrap()],
    );
    b.namespace("user", None);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.args(&["sleep", "1000"]);
    let id = ctx.id("d");
    let pid = ctx.create(&b, &id);
    // Not dumpable: /proc/PID belongs to host root, so nothing in the container (host uid
    // 100000) can open the runtime's /proc/PID/exe or ptrace it while it sets up.
    let owner = |pid: i32| {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(format!("/proc/{pid}/environ")).unwrap().uid()
    };
    assert_eq!(owner(pid), 0, "the created init is dumpable");
    ctx.start(&id);
    ctx.wait_status(&id, "running");
    wait_until("the exec'd program to become dumpable", || {
        owner(pid) == 100000
    });
    ctx.rt(&["delete", "--force", &id]).ok();
}

#[test]
fn masked_proc_paths_cannot_be_unmasked() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("secmask");
    let out = ctx.sh_ok(
        "wc -c < /proc/timer_list; umount /proc/timer_list 2>/dev/null && echo unmounted || echo kept; \
         echo 1 > /proc/sys/kernel/core_uses_pid 2>/dev/null && echo wrote || echo read-only; \
         mount -t proc proc /mnt 2>/dev/null && echo mounted || echo no-new-proc",
    );
    assert_eq!(
        out.lines().map(str::trim).collect::<Vec<_>>(),
        ["0", "kept", "read-only", "no-new-proc"],
        "{out}"
    );
}

#[test]
fn apparmor_or_selinux_asked_for_on_a_host_without_them_is_an_error() {
    if skip() || berth_only("error wording") {
        return;
    }
    if std::path::Path::new("/sys/module/apparmor/parameters/enabled").exists()
        || std::path::Path::new("/sys/fs/selinux/enforce").exists()
    {
        eprintln!("SKIPPED: this host has an LSM");
        return;
    }
    let ctx = Ctx::new("seclsm");
    for (field, value) in [
        ("apparmorProfile", "docker-default"),
        ("selinuxLabel", "system_u:system_r:container_t:s0"),
    ] {
        let mut b = ctx.bundle();
        b.config["process"][field] = json!(value);
        let id = ctx.id("l");
        let out = ctx.try_create(&b, &id);
        assert!(!out.success(), "{out}");
        assert!(out.stderr.contains(&format!("process.{field}")), "{out}");
        assert!(!ctx.state_dir(&id).exists());
    }
}

/// A seccomp agent (runtime spec, "Seccomp notify"): accepts connections on `listenerPath`,
/// records each container process state it is sent, and answers every notified call with a
/// faked success (return value 0, the call not made).
struct SeccompAgent {
    path: std::path::PathBuf,
    states: std::sync::mpsc::Receiver<(Value, usize)>,
}

// struct seccomp_notif and seccomp_notif_resp (linux/seccomp.h) and their ioctls.
#[repr(C)]
#[derive(Default)]
struct SeccompNotif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    instruction_pointer: u64,
    args: [u64; 6],
}
#[repr(C)]
struct SeccompNotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}
const SECCOMP_IOCTL_NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const SECCOMP_IOCTL_NOTIF_SEND: libc::c_ulong = 0xc018_2101;

impl SeccompAgent {
    fn start(ctx: &Ctx) -> SeccompAgent {
        let path = ctx.dir("agent").join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let (tx, states) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let (state, fd) = Self::receive(&conn);
                    let answered = Self::answer_until_hangup(&fd);
                    let _ = tx.send((state, answered));
                });
            }
        });
        SeccompAgent { path, states }
    }

    /// The container process state and the listener, in one message.
    fn receive(conn: &std::os::unix::net::UnixStream) -> (Value, std::os::fd::OwnedFd) {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::{AsRawFd, FromRawFd};
        let mut buf = vec![0u8; 64 * 1024];
        let mut control = nix::cmsg_space!([std::os::fd::RawFd; 2]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::empty(),
        )
        .unwrap();
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(r) = c {
                fds.extend(r);
            }
        }
        let len = msg.bytes;
        assert_eq!(fds.len(), 1, "one listener per message");
        // SAFETY: SCM_RIGHTS just installed this fd in our table; nothing else owns it.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) };
        // The sender may split a long message: read the rest until it closes.
        let mut text = buf[..len].to_vec();
        std::io::Read::read_to_end(&mut &*conn, &mut text).unwrap();
        (serde_json::from_slice(&text).unwrap(), fd)
    }

    /// Answers notifications until no process uses the filter any more; returns how many.
    fn answer_until_hangup(fd: &std::os::fd::OwnedFd) -> usize {
        use std::os::fd::AsRawFd;
        let mut answered = 0;
        loop {
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            if unsafe { libc::poll(&mut pfd, 1, 30_000) } <= 0 || pfd.revents & libc::POLLIN == 0 {
                return answered;
            }
            let mut notif = SeccompNotif::default();
            // SAFETY: the kernel fills the zeroed struct seccomp_notif we own.
            if unsafe { libc::ioctl(fd.as_raw_fd(), SECCOMP_IOCTL_NOTIF_RECV, &mut notif) } != 0 {
                continue; // the caller went away (ENOENT) or a signal: poll again
            }
            let resp = SeccompNotifResp {
                id: notif.id,
                val: 0,
                error: 0,
                flags: 0,
            };
            // SAFETY: the kernel reads the struct seccomp_notif_resp we own.
            if unsafe { libc::ioctl(fd.as_raw_fd(), SECCOMP_IOCTL_NOTIF_SEND, &resp) } == 0 {
                answered += 1;
            }
        }
    }

    fn profile(&self) -> Value {
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": self.path,
            "listenerMetadata": "berth-test-metadata",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        })
    }

    /// The next container process state the agent was sent, and how many calls it answered
    /// for that process before its filter's last user went away.
    fn next(&self) -> (Value, usize) {
        self.states
            .recv_timeout(WAIT_TIMEOUT)
            .expect("the seccomp agent got no listener")
    }
}

#[test]
fn seccomp_notify_sends_the_listener_and_state_to_the_agent() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("scnotify");
    let agent = SeccompAgent::start(&ctx);
    let mut b = ctx.bundle();
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.config["linux"]["seccomp"] = agent.profile();
    // The agent fakes success: mkdir "works" but makes nothing.
    b.sh("mkdir /dev/shm/x && echo mkdir-ok; test -d /dev/shm/x && echo exists || echo absent");
    let id = ctx.id("n");
    let out = ctx.run(&b, &id);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.lines(), ["mkdir-ok", "absent"], "{out}");
    let (state, answered) = agent.next();
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "berth-test-metadata", "{state}");
    assert!(state["pid"].as_i64().unwrap() > 1, "{state}");
    assert_eq!(state["state"]["id"], id.as_str(), "{state}");
    assert_eq!(state["state"]["status"], "creating", "{state}");
    assert_eq!(state["state"]["pid"], state["pid"], "{state}");
    assert!(state["ociVersion"].is_string(), "{state}");
    assert_eq!(answered, 1, "{state}");
}

#[test]
fn seccomp_notify_reaches_the_agent_for_exec_too() {
    if skip() || berth_only("runc 1.1 sends exec listeners too, but the test agent is berth's") {
        return;
    }
    let ctx = Ctx::new("scnotexec");
    let agent = SeccompAgent::start(&ctx);
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.config["linux"]["seccomp"] = agent.profile();
    let (id, pid) = ctx.sleeper_from(&b, "e");
    let out = ctx
        .rt(&[
            "exec",
            &id,
            "sh",
            "-c",
            "mkdir /dev/shm/y && echo mkdir-ok; test -d /dev/shm/y || echo absent",
        ])
        .ok();
    assert_eq!(out.lines(), ["mkdir-ok", "absent"], "{out}");
    // The exec process's listener: it is gone now, so its answer count is final.
    let (exec_state, answered) = agent.next();
    assert_eq!(exec_state["state"]["status"], "running", "{exec_state}");
    assert_eq!(exec_state["state"]["pid"], pid, "{exec_state}");
    assert_ne!(exec_state["pid"], pid, "{exec_state}");
    assert_eq!(answered, 1, "{exec_state}");
    ctx.rt(&["delete", "--force", &id]).ok();
    let (init_state, answered) = agent.next();
    assert_eq!(init_state["pid"], pid, "{init_state}");
    assert_eq!(answered, 0, "{init_state}");
}

#[test]
fn seccomp_notify_without_an_agent_fails_clearly_and_leaves_nothing() {
    if skip() || berth_only("error wording") {
        return;
    }
    let ctx = Ctx::new("scnoagent");
    let mut b = ctx.bundle();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": ctx.dir("agent").join("nobody.sock"),
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let id = ctx.id("x");
    let out = ctx.try_create(&b, &id);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr
            .contains("linux.seccomp.listenerPath: cannot connect to the seccomp agent"),
        "{out}"
    );
    ctx.assert_no_trace(&id);
}

#[test]
fn the_runtime_binary_cannot_be_reopened_from_inside_the_container() {
    if skip() || berth_only("runc 1.1 answers CVE-2019-5736 with a memfd copy instead") {
        return;
    }
    let ctx = Ctx::new("secexe");
    let mut b = ctx.bundle();
    b.args(&["true"]);
    let id = ctx.id("c");
    // Created, not started: the container's pid 1 is still berth, waiting to exec.
    let pid = ctx.create(&b, &id);
    assert!(fs::read_link(format!("/proc/{pid}/exe"))
        .unwrap()
        .ends_with("berth"));
    // A process in the container (root, default capabilities) tries to read, write and
    // follow berth's executable through /proc/1/exe, as CVE-2019-5736's exploit did.
    let out = ctx.rt(&[
        "exec",
        &id,
        "sh",
        "-c",
        "readlink /proc/1/exe || echo no-readlink; cat /proc/1/exe >/dev/null || echo no-read; \
         echo x >>/proc/1/exe || echo no-write; \
         for f in /proc/1/fd/*; do readlink $f || cat $f </dev/null >/dev/null || echo no-fd; done",
    ]);
    assert_eq!(out.code(), 0, "{out}");
    let lines = out.lines();
    assert_eq!(lines[..3], ["no-readlink", "no-read", "no-write"], "{out}");
    // Its descriptors (stdio, the start socket) can be neither followed nor reopened.
    assert!(
        lines.len() > 3 && lines[3..].iter().all(|l| *l == "no-fd"),
        "{out}"
    );
    assert!(out.stderr.contains("Permission denied"), "{out}");
    ctx.rt(&["delete", "--force", &id]).ok();
}
