//! Runtime-spec 1.3 and runc's command line where berth used to refuse or ignore them: a
//! config without namespaces, a hostname in a joined uts namespace, time offsets with a new
//! user namespace, unbindable root propagation, the hooks' failure rules, runc's flags
//! (`--version`, `exec --cap/--ignore-paused/--cgroup`, `--pidfd-socket`, `--no-subreaper`,
//! `--rootless`, `update --l3-cache-schema`, `checkpoint`) and runc's error lines.
mod common;
use common::*;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

fn proc_field(pid: &str, key: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

#[test]
fn version_has_runcs_shape() {
    if skip() || berth_only("berth's version text") {
        return;
    }
    let ctx = Ctx::new("version-shape");
    for flag in ["--version", "-v"] {
        let out = ctx.rt(&[flag]).ok();
        let lines = out.lines();
        assert!(
            lines[0].starts_with("berth version "),
            "{flag}: first line {:?}",
            lines[0]
        );
        let commit = lines[1].strip_prefix("commit: ").expect("a commit line");
        assert!(
            commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
            "commit {commit:?}"
        );
        assert_eq!(lines[2], "spec: 1.3.0");
    }
    // dockerd's rule (parseRuntimeVersion): the name before "version", the version after.
    if let Some(runc) = which("runc") {
        let theirs = host(runc.to_str().unwrap(), &["--version"]);
        let first = theirs.lines().next().unwrap_or_default();
        assert!(first.starts_with("runc version "), "runc said {first:?}");
    }
}

#[test]
fn errors_on_stderr_are_runcs_log_lines() {
    if skip() || berth_only("compared with runc's shape, not text") {
        return;
    }
    let ctx = Ctx::new("error-lines");
    let out = ctx.rt(&["state", "nosuch"]);
    assert_eq!(out.code(), 1);
    let line = out
        .raw_stderr
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        line.starts_with("time=\"") && line.contains(" level=error msg="),
        "{line:?}"
    );
    assert!(
        line.ends_with(r#"msg="container \"nosuch\" does not exist""#),
        "{line:?}"
    );
    if let Some(runc) = which("runc") {
        let theirs = std::process::Command::new(runc)
            .args([
                "--root",
                ctx.dir("runc-root").to_str().unwrap(),
                "state",
                "nosuch",
            ])
            .output()
            .unwrap();
        let theirs = String::from_utf8_lossy(&theirs.stderr);
        assert!(theirs.starts_with("time=\"") && theirs.contains(" level=error msg="));
        assert_eq!(log_line_message(theirs.trim()), "container does not exist");
    }
    assert_eq!(out.stderr.trim(), r#"container "nosuch" does not exist"#);
    {}
    // With a log file: the JSON line there, the plain message on stderr.
    let log = ctx.tmp.join("log.json");
    let out = ctx.rt(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nosuch",
    ]);
    assert_eq!(out.stderr.trim(), r#"container "nosuch" does not exist"#);
    let logged: Value = serde_json::from_str(fs::read_to_string(&log).unwrap().trim()).unwrap();
    assert_eq!(logged["level"], "error");
    assert_eq!(logged["msg"], r#"container "nosuch" does not exist"#);
}

#[test]
fn checkpoint_and_restore_are_a_clear_error() {
    if skip() || berth_only("berth has no CRIU") {
        return;
    }
    let ctx = Ctx::new("checkpoint");
    for cmd in ["checkpoint", "restore"] {
        let out = ctx.rt(&[cmd, "--image-path", "/tmp/x", "some-id"]);
        assert_eq!(out.code(), 1, "{out}");
        assert!(out.stderr.contains("no CRIU"), "{out}");
    }
}

#[test]
fn exec_takes_capabilities_with_or_without_the_prefix() {
    if skip() || berth_only("runc 1.1.5 takes only CAP_-prefixed names") {
        return;
    }
    let ctx = Ctx::new("exec-cap");
    let (id, _) = ctx.sleeper("c");
    const NET_ADMIN: u64 = 1 << 12;
    const SYS_TIME: u64 = 1 << 25;
    let caps = ctx
        .rt(&[
            "exec",
            "--cap",
            "NET_ADMIN",
            "--cap",
            "CAP_SYS_TIME",
            &id,
            "grep",
            "CapEff",
            "/proc/self/status",
        ])
        .ok();
    let eff = u64::from_str_radix(caps.stdout.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(eff & (NET_ADMIN | SYS_TIME), NET_ADMIN | SYS_TIME, "{caps}");
    let plain = ctx
        .rt(&["exec", &id, "grep", "CapEff", "/proc/self/status"])
        .ok();
    let eff = u64::from_str_radix(plain.stdout.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_eq!(
        eff & (NET_ADMIN | SYS_TIME),
        0,
        "the container's own set grew: {plain}"
    );
    if is_berth() {
        let bad = ctx.rt(&["exec", "--cap", "NOT_A_CAP", &id, "true"]).fails();
        assert!(bad.stderr.contains("NOT_A_CAP"), "{bad}");
    }
}

#[test]
fn exec_in_a_paused_container_needs_ignore_paused() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("exec-paused");
    let (id, _) = ctx.sleeper("p");
    ctx.rt(&["pause", &id]).ok();
    let refused = ctx.rt(&["exec", &id, "true"]).fails();
    assert!(refused.stderr.contains("paused"), "{refused}");
    // Let in, it stays frozen until the container is resumed, then runs.
    let marker = "/dev/shm/exec-while-paused";
    let bg = ctx.rt_bg(&[
        "exec",
        "--ignore-paused",
        &id,
        "sh",
        "-c",
        &format!("echo ran > {marker}"),
    ]);
    // Frozen meanwhile: it has not run.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!bg_done_marker(&ctx, &id, marker));
    ctx.rt(&["resume", &id]).ok();
    let out = bg.wait(CMD_TIMEOUT);
    assert_eq!(out.code(), 0, "{out}");
    let read = ctx.rt(&["exec", &id, "cat", marker]).ok();
    assert_eq!(read.stdout.trim(), "ran");
}

/// Whether the paused container's exec has run yet (read from the host, through the
/// container's root: an exec would be frozen).
fn bg_done_marker(ctx: &Ctx, id: &str, marker: &str) -> bool {
    let pid = ctx.pid(id);
    Path::new(&format!("/proc/{pid}/root{marker}")).exists()
}

#[test]
fn exec_into_an_existing_sub_cgroup() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("exec-cgroup");
    let (id, pid) = ctx.sleeper("g");
    // The container's pids cgroup, as the host sees it.
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let Some(rel) = own
        .lines()
        .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()))
    else {
        eprintln!("SKIPPED: no cgroup v1 pids hierarchy");
        return;
    };
    let sub = Path::new("/sys/fs/cgroup/pids")
        .join(rel.trim_start_matches('/'))
        .join("sub");
    fs::create_dir(&sub).unwrap();
    let pid_file = ctx.tmp.join("exec.pid");
    ctx.rt(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--cgroup",
        "pids:sub",
        &id,
        "sleep",
        "1000",
    ])
    .ok();
    let exec_pid = fs::read_to_string(&pid_file).unwrap();
    let theirs = fs::read_to_string(format!("/proc/{}/cgroup", exec_pid.trim())).unwrap();
    let pids_line = theirs.lines().find(|l| l.contains(":pids:")).unwrap();
    assert!(pids_line.ends_with("/sub"), "{pids_line}");
    // Other hierarchies keep the container's own cgroup.
    let mem_line = theirs.lines().find(|l| l.contains(":memory:"));
    if let Some(mem) = mem_line {
        assert!(!mem.ends_with("/sub"), "{mem}");
    }
    let missing = ctx.rt(&["exec", "--cgroup", "nosuch", &id, "true"]).fails();
    assert!(missing.stderr.contains("nosuch"), "{missing}");
    if is_berth() {
        let escape = ctx
            .rt(&["exec", "--cgroup", "pids:../..", &id, "true"])
            .fails();
        assert!(escape.stderr.contains("--cgroup"), "{escape}");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exec_pid.trim().parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The sub-cgroup empties once the process is reaped; then it can go.
    for _ in 0..200 {
        if fs::remove_dir(&sub).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!sub.exists(), "{} still there", sub.display());
}

/// Receives one descriptor over a Unix stream socket, as runc's pidfd-socket peer does.
fn receive_fd(listener: std::os::unix::net::UnixListener) -> (OwnedFd, String) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .unwrap();
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            fd = fds.first().copied();
        }
    }
    let n = msg.bytes;
    let name = String::from_utf8_lossy(&buf[..n])
        .trim_end_matches('\0')
        .to_string();
    // SAFETY: the descriptor was just received and nothing else owns it.
    (
        unsafe { OwnedFd::from_raw_fd(fd.expect("a descriptor")) },
        name,
    )
}

fn pidfd_pid(fd: &OwnedFd) -> String {
    fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Pid:").map(|p| p.trim().to_string()))
        .expect("a pidfd has a Pid: line")
}

#[test]
fn pidfd_socket_receives_the_process() {
    if skip() || berth_only("runc 1.1 has no --pidfd-socket") {
        return;
    }
    let ctx = Ctx::new("pidfd-socket");
    let sock = ctx.tmp.join("pidfd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || receive_fd(listener));
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let id = ctx.id("c");
    ctx.rt(&[
        "create",
        "--pidfd-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ])
    .ok();
    let (pidfd, name) = receiver.join().unwrap();
    assert_eq!(name, "pidfd");
    assert_eq!(pidfd_pid(&pidfd), ctx.pid(&id).to_string());
    ctx.start(&id);
    ctx.wait_status(&id, "running");
    // exec too.
    fs::remove_file(&sock).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let receiver = std::thread::spawn(move || receive_fd(listener));
    let pid_file = ctx.tmp.join("exec.pid");
    ctx.rt(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--pidfd-socket",
        sock.to_str().unwrap(),
        &id,
        "sleep",
        "1000",
    ])
    .ok();
    let (pidfd, _) = receiver.join().unwrap();
    assert_eq!(
        pidfd_pid(&pidfd),
        fs::read_to_string(&pid_file).unwrap().trim()
    );
}

#[test]
fn run_without_subreaper_leaves_orphans_to_init() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("no-subreaper");
    // In the host's pid namespace an orphan goes to the nearest subreaper: `run` itself, or
    // with --no-subreaper the host's init. Each container reports its orphan's parent and its
    // own parent (runc or berth).
    let script = "sh -c 'sleep 30 & echo $! > /tmp/orphan'; read p < /tmp/orphan; \
                  echo $(grep PPid /proc/$p/status | cut -f2) $(grep PPid /proc/$$/status | cut -f2); \
                  kill $p";
    for (flag, adopted_by_runtime) in [(None, true), (Some("--no-subreaper"), false)] {
        let mut b = ctx.bundle();
        b.remove_namespace("pid");
        b.readonly_root(false);
        b.sh(script);
        b.write();
        let id = ctx.id("r");
        let mut args = vec!["run"];
        args.extend(flag);
        args.extend(["--bundle", b.path().to_str().unwrap(), &id]);
        let out = ctx.rt(&args).ok();
        let fields: Vec<&str> = out.stdout.split_whitespace().collect();
        let (orphan_parent, runtime) = (fields[0], fields[1]);
        if adopted_by_runtime {
            assert_eq!(orphan_parent, runtime, "{flag:?}: {out}");
        } else {
            assert_ne!(orphan_parent, runtime, "{flag:?}: {out}");
        }
    }
}

#[test]
fn rootless_flag_is_accepted_and_checked() {
    if skip() || berth_only("the value's error wording") {
        return;
    }
    let ctx = Ctx::new("rootless-flag");
    for v in ["true", "false", "auto"] {
        let b = ctx.sh_bundle("echo ok");
        b.write();
        let id = ctx.id("r");
        let out = ctx
            .rt(&[
                "--rootless",
                v,
                "run",
                "--bundle",
                b.path().to_str().unwrap(),
                &id,
            ])
            .ok();
        assert_eq!(out.stdout.trim(), "ok");
    }
    let bad = ctx.rt(&["--rootless", "maybe", "list"]).fails();
    assert!(bad.stderr.contains("--rootless"), "{bad}");
}

#[test]
fn rdt_schema_update_names_the_missing_kernel_feature() {
    if skip() || berth_only("berth's wording") {
        return;
    }
    if Path::new("/sys/fs/resctrl/schemata").exists() {
        eprintln!("SKIPPED: this host has resctrl (the error path is for hosts without)");
        return;
    }
    let ctx = Ctx::new("rdt-update");
    let (id, _) = ctx.sleeper("r");
    for flag in ["--l3-cache-schema", "--mem-bw-schema"] {
        let out = ctx.rt(&["update", flag, "L3:0=f", &id]).fails();
        assert!(out.stderr.contains("resctrl"), "{flag}: {out}");
        assert!(out.stderr.contains(flag), "{flag}: {out}");
    }
}

#[test]
fn failing_poststart_hook_fails_start_and_stops_the_container() {
    if skip() || berth_only("runc 1.1.5 predates runtime-spec 1.3's poststart rule") {
        return;
    }
    let ctx = Ctx::new("poststart-fails");
    let d = ctx.dir("marks");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let mark = |name: &str, then: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}/{name}; {then}", d.display())]});
    b.add_hook("poststart", mark("first", "exit 3"));
    b.add_hook("poststart", mark("second", "true"));
    let id = ctx.id("c");
    let pid = ctx.create(&b, &id);
    let out = ctx.rt(&["start", &id]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(d.join("first").exists());
    assert!(!d.join("second").exists(), "a hook ran after a failed one");
    wait_until("the container to be stopped", || !pid_alive(pid));
    assert_eq!(ctx.state(&id)["status"], "stopped");
    ctx.rt(&["delete", &id]).ok();
    ctx.assert_no_trace(&id);
    // `run` fails the same way and removes the container.
    let id = ctx.id("r");
    let out = ctx.run(&b, &id);
    assert_eq!(out.code(), 1, "{out}");
    ctx.assert_no_trace(&id);
}

#[test]
fn every_poststop_hook_runs_after_one_fails() {
    if skip() || berth_only("runc 1.1.5 stops at the first failing poststop hook") {
        return;
    }
    let ctx = Ctx::new("poststop-all");
    let d = ctx.dir("marks");
    let mut b = ctx.bundle();
    b.args(&["true"]);
    for (name, then) in [("one", "exit 1"), ("two", "exit 2"), ("three", "true")] {
        b.add_hook(
            "poststop",
            json!({"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}/{name}; {then}", d.display())]}),
        );
    }
    let id = ctx.id("c");
    let out = ctx.run(&b, &id);
    assert_eq!(out.code(), 0, "{out}");
    for name in ["one", "two", "three"] {
        assert!(d.join(name).exists(), "poststop hook {name} did not run");
    }
}

#[test]
fn start_container_hooks_get_the_containers_environment() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("startcontainer-env");
    let d = ctx.dir("out");
    let mut b = ctx.bundle();
    b.args(&["true"]);
    b.env("GREETING=from-the-config");
    b.bind(&d, d.to_str().unwrap(), &[]);
    let dump = |file: &str| format!("echo \"$GREETING|$PATH\" > {}/{file}", d.display());
    b.add_hook(
        "startContainer",
        json!({"path": "/bin/sh", "args": ["sh", "-c", dump("inherited")]}),
    );
    b.add_hook(
        "startContainer",
        json!({"path": "/bin/sh", "args": ["sh", "-c", dump("own")], "env": ["GREETING=own"]}),
    );
    let out = ctx.run(&b, &ctx.id("c"));
    assert_eq!(out.code(), 0, "{out}");
    let inherited = fs::read_to_string(d.join("inherited")).unwrap();
    assert!(inherited.starts_with("from-the-config|/"), "{inherited:?}");
    let own = fs::read_to_string(d.join("own")).unwrap();
    assert!(
        own.starts_with("own|"),
        "a hook with env gets only it: {own:?}"
    );
}

fn root_mount_line(out: &str) -> String {
    out.lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn unbindable_root_propagation() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("unbindable");
    for (propagation, proc_too) in [("unbindable", false), ("runbindable", true)] {
        let mut b = ctx.sh_bundle("cat /proc/self/mountinfo");
        b.config["linux"]["rootfsPropagation"] = json!(propagation);
        let out = ctx.run(&b, &ctx.id("u"));
        if !is_berth() {
            // runc 1.1 fails here with EINVAL; berth does better.
            eprintln!("{} with {propagation}: {}", runtime_name(), out.code());
            continue;
        }
        assert_eq!(out.code(), 0, "{propagation}: {out}");
        let root = root_mount_line(&out.stdout);
        assert!(root.contains(" unbindable "), "{propagation}: {root}");
        let proc_line = out
            .stdout
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some("/proc"))
            .unwrap()
            .to_string();
        assert_eq!(proc_line.contains(" unbindable "), proc_too, "{proc_line}");
    }
}

#[test]
fn relative_masked_and_readonly_paths_get_one_rule() {
    if skip() || berth_only("berth's validation wording") {
        return;
    }
    let ctx = Ctx::new("relative-paths");
    for field in ["maskedPaths", "readonlyPaths"] {
        let mut b = ctx.sh_bundle("true");
        b.config["linux"][field] = json!(["proc/kcore"]);
        let out = ctx.run(&b, &ctx.id("p"));
        assert_eq!(out.code(), 1, "{field}: {out}");
        assert!(
            out.stderr.contains(&format!("linux.{field}[0]")) && out.stderr.contains("absolute"),
            "{field}: {out}"
        );
    }
}

#[test]
fn time_offsets_with_a_new_user_namespace() {
    if skip() || berth_only("runc 1.1.5 has no time namespaces") {
        return;
    }
    if !Path::new("/proc/self/timens_offsets").exists() {
        eprintln!("SKIPPED: kernel without time namespaces");
        return;
    }
    let ctx = Ctx::new("timens-userns");
    let mut b = ctx.sh_bundle("cut -d' ' -f1 /proc/uptime; id -u");
    host(
        "chown",
        &["-R", "100000:100000", b.rootfs().to_str().unwrap()],
    );
    b.namespace("user", None);
    b.namespace("time", None);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 864000, "nanosecs": 0}});
    let out = ctx.run(&b, &ctx.id("t"));
    assert_eq!(out.code(), 0, "{out}");
    let inside: f64 = out.lines()[0].parse().unwrap();
    let host_uptime: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        inside >= host_uptime + 864000.0 - 60.0,
        "boottime offset not applied: {inside} vs host {host_uptime}"
    );
    assert_eq!(out.lines()[1], "0");
}

#[test]
fn hostname_in_a_joined_uts_namespace() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("joined-uts");
    let mut holder = std::process::Command::new("unshare");
    holder.args(["--uts", "sleep", "1000"]);
    let holder = ctx.spawn_cmd(holder);
    let hpid = holder.pid();
    wait_until("the holder's own uts namespace", || {
        fs::read_link(format!("/proc/{hpid}/ns/uts")).ok()
            != fs::read_link("/proc/self/ns/uts").ok()
    });
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut b = ctx.sh_bundle("hostname");
    b.namespace("uts", Some(&format!("/proc/{hpid}/ns/uts")));
    b.config["hostname"] = json!("joined-name");
    let out = ctx.run(&b, &ctx.id("h"));
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout.trim(), "joined-name");
    let seen = host("nsenter", &["-t", &hpid.to_string(), "-u", "hostname"]);
    assert_eq!(seen.trim(), "joined-name");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name
    );
    // The host's own uts namespace is still refused.
    if is_berth() {
        let mut b = ctx.sh_bundle("hostname");
        b.remove_namespace("uts");
        b.config["hostname"] = json!("not-on-the-host");
        let out = ctx.run(&b, &ctx.id("h"));
        assert_eq!(out.code(), 1, "{out}");
        assert!(out.stderr.contains("hostname"), "{out}");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hpid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// A bundle with no namespaces at all (the spec: each is then the runtime's own).
fn no_namespaces(ctx: &Ctx, script: &str) -> Bundle {
    let mut b = ctx.sh_bundle(script);
    b.config["linux"]["namespaces"] = json!([]);
    b.config["linux"]["maskedPaths"] = json!([]);
    b.config["linux"]["readonlyPaths"] = json!([]);
    b.config.as_object_mut().unwrap().remove("hostname");
    fs::write(b.rootfs().join("in-the-rootfs"), "yes\n").unwrap();
    b
}

fn host_mounts_under(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_config_without_namespaces_runs_in_the_runtimes() {
    if skip() || berth_only("runc 1.1.5 leaves the container's mounts in the host's namespace") {
        return;
    }
    let ctx = Ctx::new("no-namespaces");
    let b = no_namespaces(
        &ctx,
        "cat /in-the-rootfs; for n in mnt pid net ipc uts; do readlink /proc/self/ns/$n; done",
    );
    let out = ctx.run(&b, &ctx.id("n"));
    assert_eq!(out.code(), 0, "{out}");
    let lines = out.lines();
    assert_eq!(lines[0], "yes", "not in the bundle's rootfs: {out}");
    for (line, ns) in lines[1..].iter().zip(["mnt", "pid", "net", "ipc", "uts"]) {
        let host_ns = fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_eq!(*line, host_ns.to_str().unwrap(), "{ns}");
    }
    assert!(
        host_mounts_under(&ctx.tmp).is_empty(),
        "mounts left in the host's namespace: {:?}",
        host_mounts_under(&ctx.tmp)
    );
    // A detached one: its mounts exist while it lives, exec lands in its root, delete takes
    // them all away.
    let mut b = no_namespaces(&ctx, "sleep 1000");
    b.args(&["sleep", "1000"]);
    let id = ctx.id("d");
    ctx.run_detached(&b, &id);
    assert!(!host_mounts_under(&ctx.tmp).is_empty());
    let seen = ctx.rt(&["exec", &id, "cat", "/in-the-rootfs"]).ok();
    assert_eq!(seen.stdout.trim(), "yes");
    ctx.rt(&["delete", "--force", &id]).ok();
    assert!(
        host_mounts_under(&ctx.tmp).is_empty(),
        "{:?}",
        host_mounts_under(&ctx.tmp)
    );
    ctx.assert_no_trace(&id);
    // maskedPaths would mask the host's own files: refused.
    let mut b = no_namespaces(&ctx, "true");
    b.config["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
    let out = ctx.run(&b, &ctx.id("m"));
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("linux.maskedPaths"), "{out}");
}

#[test]
fn a_killed_create_without_a_mount_namespace_leaves_no_mount_after_delete() {
    if skip() || berth_only("berth's cleanup of host mounts") {
        return;
    }
    let ctx = Ctx::new("no-mountns-kill");
    let d = ctx.dir("marks");
    let mut b = no_namespaces(&ctx, "true");
    // The mounts exist by the time prestart hooks run: berth is killed there.
    b.add_hook(
        "prestart",
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}/in-hook; sleep 1000", d.display())]}),
    );
    b.write();
    let id = ctx.id("k");
    let mut bg = ctx.rt_bg(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    wait_until("the prestart hook", || d.join("in-hook").exists());
    assert!(
        !host_mounts_under(&b.rootfs()).is_empty(),
        "no mount to leak?"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(bg.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = bg.exited();
    let _ = bg.try_wait(Duration::from_secs(10));
    ctx.rt(&["delete", "--force", &id]).ok();
    assert!(
        host_mounts_under(&b.rootfs()).is_empty(),
        "{:?}",
        host_mounts_under(&b.rootfs())
    );
    ctx.assert_no_trace(&id);
}

#[test]
fn a_capability_the_host_lacks_is_blamed_on_the_host() {
    if skip() || berth_only("berth's wording") {
        return;
    }
    const SYS_RESOURCE: u32 = 24;
    let bnd = u64::from_str_radix(&proc_field("self", "CapBnd"), 16).unwrap();
    if bnd & (1 << SYS_RESOURCE) != 0 {
        eprintln!("SKIPPED: this host gives CAP_SYS_RESOURCE");
        return;
    }
    let ctx = Ctx::new("host-lacks-cap");
    let mut b = ctx.sh_bundle("true");
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_SYS_RESOURCE"));
    }
    let out = ctx.run(&b, &ctx.id("c"));
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr
            .contains("this host does not give berth CAP_SYS_RESOURCE"),
        "{out}"
    );
}

#[test]
fn output_to_a_reader_that_left_is_no_crash() {
    if skip() || berth_only("berth ignores SIGPIPE; runc dies of it") {
        return;
    }
    let ctx = Ctx::new("epipe");
    let (id, _) = ctx.sleeper("e");
    for args in [format!("state {id}"), "features".to_string()] {
        // The reader (`true`) is gone before berth starts: its write meets EPIPE. Its status
        // goes out on fd 3.
        let script = format!(
            "exec 3>&1; {{ sleep 0.2; {} --root {} {args}; echo $? >&3; }} | true",
            runtime().display(),
            ctx.root.display()
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stdout.trim(), "0", "{args}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args}: {stderr}");
    }
}
