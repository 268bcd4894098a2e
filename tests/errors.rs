//! Errors: each fails with a non-zero exit and one clear line on stderr, and
//! leaves no state dir, no process and no mount behind. For berth the message
//! must also name the offending field or argument.
mod common;
use common::*;
use std::fs;

/// The command failed cleanly: non-zero, one error line, nothing left.
#[track_caller]
fn expect_error(ctx: &Ctx, out: &Out, id: &str) {
    assert!(!out.success(), "expected a failure: {out}");
    let lines = out.err_lines();
    assert_eq!(
        lines.len(),
        1,
        "want exactly one error line on stderr: {out}"
    );
    ctx.assert_no_trace(id);
}

/// For berth, the error line names each of `words`.
#[track_caller]
fn berth_names(out: &Out, words: &[&str]) {
    if !is_berth() {
        return;
    }
    for w in words {
        assert!(
            out.stderr.contains(w),
            "error message does not name {w:?}: {out}"
        );
    }
}

/// `create` of bundle `b` (config written as is) must fail cleanly.
#[track_caller]
fn create_fails(ctx: &Ctx, b: &Bundle) -> Out {
    let id = ctx.id("e");
    let out = ctx.try_create(b, &id);
    expect_error(ctx, &out, &id);
    // `run` fails the same way.
    let id2 = ctx.id("r");
    let out2 = ctx.run(b, &id2);
    expect_error(ctx, &out2, &id2);
    out
}

#[test]
fn missing_config_json() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("noconfig");
    let b = ctx.bundle();
    let id = ctx.id("e");
    let out = ctx.rt(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    expect_error(&ctx, &out, &id);
    berth_names(&out, &["config.json"]);
}

#[test]
fn malformed_config_json() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("badjson");
    let b = ctx.bundle();
    fs::write(
        b.config_path(),
        "{\"ociVersion\": \"1.0.2\", \"process\": {",
    )
    .unwrap();
    let id = ctx.id("e");
    let out = ctx.rt(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    expect_error(&ctx, &out, &id);
    berth_names(&out, &["config.json"]);
}

#[test]
fn wrong_type_names_the_field() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("badtype");
    let mut b = ctx.bundle();
    b.config["process"]["args"] = json!("sh -c true"); // must be an array
    let out = create_fails(&ctx, &b);
    berth_names(&out, &["process.args"]);
}

#[test]
fn unknown_oci_version_major() {
    if skip() || berth_only("runc 1.1 accepts any ociVersion") {
        return;
    }
    let ctx = Ctx::new("ociversion");
    let mut b = ctx.bundle();
    b.config["ociVersion"] = json!("2.0.0");
    let out = create_fails(&ctx, &b);
    berth_names(&out, &["ociVersion", "2.0.0"]);
}

#[test]
fn missing_rootfs() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("norootfs");
    let mut b = ctx.bundle();
    b.config["root"]["path"] = json!("no-such-rootfs");
    let out = create_fails(&ctx, &b);
    berth_names(&out, &["root.path", "no-such-rootfs"]);
}

#[test]
fn empty_args() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("emptyargs");
    let mut b = ctx.bundle();
    b.config["process"]["args"] = json!([]);
    let out = create_fails(&ctx, &b);
    berth_names(&out, &["process.args"]);
}

#[test]
fn relative_cwd() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("relcwd");
    let mut b = ctx.bundle();
    b.config["process"]["cwd"] = json!("tmp");
    let out = create_fails(&ctx, &b);
    berth_names(&out, &["process.cwd"]);
}

#[test]
fn unknown_rlimit() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("badrlimit");
    let mut b = ctx.bundle();
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
    let out = create_fails(&ctx, &b);
    berth_names(&out, &["RLIMIT_BOGUS"]);
}

#[test]
fn missing_executable() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("nobinary");
    let mut b = ctx.bundle();
    b.args(&["/no/such/program"]);
    let out = create_fails(&ctx, &b);
    berth_names(&out, &["/no/such/program"]);
}

/// Docker and Podman turn a runtime's create error into exit 127 when it says "no such file or
/// directory" or "executable file not found", 126 when it says "permission denied" (Docker
/// matches case-sensitively): the words runc uses, for both runtimes.
#[test]
fn unrunnable_program_is_worded_as_clients_expect() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("execwords");
    for (args, words) in [
        (
            "/no/such/program",
            &["/no/such/program", "no such file or directory"][..],
        ),
        (
            "no-such-program",
            &["no-such-program", "executable file not found in $PATH"][..],
        ),
        ("/etc/passwd", &["/etc/passwd", "permission denied"][..]),
        ("/etc", &["/etc", "permission denied"][..]),
    ] {
        let mut b = ctx.bundle();
        b.args(&[args]);
        let id = ctx.id("w");
        let out = ctx.try_create(&b, &id);
        expect_error(&ctx, &out, &id);
        for w in words {
            assert!(out.stderr.contains(w), "error does not say {w:?}: {out}");
        }
    }
}

#[test]
fn missing_bind_source_leaves_no_mount() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("badbind");
    let mut b = ctx.bundle();
    let data = ctx.dir("data");
    b.bind(&data, "/mnt/ok", &[]); // mounted before the failing one
    b.add_mount(json!({"destination": "/mnt/bad", "type": "bind", "source": "/no/such/source", "options": ["rbind"]}));
    let out = create_fails(&ctx, &b);
    berth_names(&out, &["/no/such/source"]);
}

#[test]
fn missing_namespace_path() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("badnspath");
    let mut b = ctx.bundle();
    b.namespace("network", Some("/no/such/netns"));
    let out = create_fails(&ctx, &b);
    berth_names(&out, &["/no/such/netns"]);
}

#[test]
fn invalid_container_ids() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("badid");
    let b = ctx.bundle();
    b.write();
    for id in ["a/b", "..", "../escape", "/abs"] {
        let out = ctx.rt(&["create", "--bundle", b.path().to_str().unwrap(), id]);
        assert!(!out.success(), "id {id:?} accepted: {out}");
        assert_eq!(out.err_lines().len(), 1, "{out}");
        berth_names(&out, &[id]);
        let left: Vec<_> = fs::read_dir(&ctx.root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "id {id:?} left {left:?} in --root");
        assert!(
            !ctx.tmp.join("escape").exists(),
            "id {id:?} wrote outside --root"
        );
        assert!(!std::path::Path::new("/abs").exists());
    }
    ctx.assert_no_marked_process();
    assert!(ctx.leaked_mounts().is_empty());
}

#[test]
fn id_already_in_use() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("idinuse");
    let mut first = ctx.bundle();
    first.args(&["sleep", "1000"]);
    let (id, pid) = ctx.sleeper_from(&first, "s");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let out = ctx.try_create(&b, &id);
    assert!(!out.success(), "{out}");
    assert_eq!(out.err_lines().len(), 1, "{out}");
    berth_names(&out, &[&id]);
    // The first container is untouched.
    let st = ctx.state(&id);
    assert_eq!(st["status"], "running");
    assert_eq!(st["pid"], pid);
    assert_eq!(
        fs::canonicalize(st["bundle"].as_str().unwrap()).unwrap(),
        fs::canonicalize(first.path()).unwrap()
    );
    let out = ctx.run(&b, &id);
    assert!(!out.success(), "{out}");
    assert_eq!(ctx.pid(&id), pid);
    ctx.rt(&["delete", "--force", &id]).ok();
    ctx.assert_no_trace(&id);
}

#[test]
fn unknown_signal() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("badsignal");
    let (id, pid) = ctx.sleeper("s");
    for sig in ["NOPE", "SIGNOPE", "99999"] {
        let out = ctx.rt(&["kill", &id, sig]);
        assert!(!out.success(), "kill {sig} succeeded: {out}");
        assert_eq!(out.err_lines().len(), 1, "{out}");
        berth_names(&out, &[sig]);
    }
    assert_eq!(ctx.status(&id), "running");
    assert!(pid_alive(pid));
}

#[test]
fn kill_stopped_container_fails() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("killstopped");
    let (id, _) = ctx.sleeper("s");
    ctx.rt(&["kill", &id, "KILL"]).ok();
    ctx.wait_status(&id, "stopped");
    let out = ctx.rt(&["kill", &id, "KILL"]);
    assert!(!out.success(), "{out}");
    assert_eq!(out.err_lines().len(), 1, "{out}");
    ctx.delete(&id);
}

#[test]
fn commands_on_an_unknown_container() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("unknown");
    let id = format!("no-such-container-{}", std::process::id());
    for args in [
        vec!["state", id.as_str()],
        vec!["start", id.as_str()],
        vec!["kill", id.as_str(), "KILL"],
        vec!["delete", id.as_str()],
        vec!["exec", id.as_str(), "true"],
    ] {
        let out = ctx.rt(&args);
        assert!(!out.success(), "{args:?} succeeded: {out}");
        assert_eq!(out.err_lines().len(), 1, "{out}");
        assert!(out.stdout.trim().is_empty(), "{out}");
        berth_names(&out, &[&id]);
    }
    ctx.assert_no_trace(&id);
}

#[test]
fn json_log_file() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("jsonlog");
    let log = ctx.tmp.join("runtime.log");
    let id = format!("no-such-container-{}", std::process::id());
    let out = ctx.rt(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        &id,
    ]);
    assert!(!out.success(), "{out}");
    let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("no log file: {e}; {out}"));
    let mut errors = vec![];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line:?}"));
        assert!(v["level"].is_string() && v["msg"].is_string(), "{line}");
        if v["level"] == "error" {
            errors.push(v);
        }
    }
    assert!(
        !errors.is_empty(),
        "no \"level\":\"error\" line in {text:?}"
    );
    assert!(errors
        .iter()
        .all(|e| !e["msg"].as_str().unwrap().is_empty()));
    if is_berth() {
        assert!(
            errors
                .iter()
                .any(|e| e["msg"].as_str().unwrap().contains(&id)),
            "{text}"
        );
        assert!(errors.iter().all(|e| e["time"].is_string()), "{text}");
    }

    // A failing create logs too (this bundle has no config.json).
    let b = ctx.bundle();
    let log2 = ctx.tmp.join("create.log");
    let cid = ctx.id("e");
    let out = ctx.rt(&[
        "--log",
        log2.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        &cid,
    ]);
    assert!(!out.success());
    let text = fs::read_to_string(&log2).unwrap();
    assert!(
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["level"] == "error"),
        "{text}"
    );
    ctx.assert_no_trace(&cid);
}

/// berth runs with a seccomp filter that answers unshare(2) with EPERM: its container process,
/// which makes its namespaces itself while berth makes the cgroup, then cannot.
fn refusing_unshare(mut cmd: std::process::Command) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
    let filter = [
        stmt((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 4), // arch
        jump(
            (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            AUDIT_ARCH_X86_64,
            0,
            3,
        ),
        stmt((libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, 0), // nr
        jump(
            (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            libc::SYS_unshare as u32,
            0,
            1,
        ),
        stmt(
            (libc::BPF_RET | libc::BPF_K) as u16,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        ),
        stmt(
            (libc::BPF_RET | libc::BPF_K) as u16,
            libc::SECCOMP_RET_ALLOW,
        ),
    ];
    // SAFETY: between fork and exec the closure makes only two prctl calls, which are
    // async-signal-safe; `filter` lives in the closure, which outlives them.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn namespaces_the_process_cannot_make_fail_the_create_with_its_reason() {
    if skip() || berth_only("the container process makes its own namespaces") {
        return;
    }
    let ctx = Ctx::new("nounshare");
    let b = ctx.bundle();
    b.write();
    for command in ["create", "run"] {
        let id = ctx.id(command);
        let cmd = ctx.cmd(&[command, "--bundle", b.path().to_str().unwrap(), &id]);
        let out = ctx.output(refusing_unshare(cmd));
        expect_error(&ctx, &out, &id);
        assert!(
            out.stderr.contains("cannot create namespaces")
                && out.stderr.contains("Operation not permitted"),
            "the process's reason is not the one reported: {out}"
        );
        // The cgroup berth made meanwhile is gone with it.
        for c in ["memory", "cpu", "pids", "devices", "freezer", "systemd"] {
            let leaf = std::path::Path::new("/sys/fs/cgroup")
                .join(c)
                .join("berth")
                .join(&id);
            assert!(!leaf.exists(), "{} is left behind", leaf.display());
        }
    }
}
