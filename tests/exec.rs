//! `exec`: a new process in a running container.
//! (runc 1.1 takes `exec [OPTIONS] ID CMD ARGS...` with no `--`; berth also
//! accepts `exec ID -- CMD ARGS`, checked by a berth-only test.)
mod common;
use common::*;
use std::fs;
use std::time::Duration;

const NS: &[&str] = &["pid", "net", "ipc", "uts", "mnt", "cgroup"];

#[test]
fn exec_joins_the_containers_namespaces_and_root() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("execns");
    let (id, pid) = ctx.sleeper("e");
    let out = ctx
        .rt(&["exec", &id, "sh", "-c", "for n in pid net ipc uts mnt cgroup; do readlink /proc/self/ns/$n; done; hostname; cut -d: -f1 /etc/passwd | tr '\\n' ' '"])
        .ok();
    let lines = out.lines();
    for (i, n) in NS.iter().enumerate() {
        assert_eq!(
            lines[i],
            ns_link(&pid.to_string(), n),
            "exec'd process not in the container's {n} ns"
        );
        assert_ne!(lines[i], ns_link("self", n));
    }
    assert_eq!(lines[NS.len()], "berth");
    assert_eq!(lines[NS.len() + 1].trim(), "root berth nobody");
    // The init is untouched.
    assert_eq!(ctx.status(&id), "running");
    assert_eq!(cmdline(pid), "sleep 1000");
}

#[test]
fn exec_gets_the_containers_process_settings() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("execdefaults");
    let (id, _) = ctx.sleeper("e");
    let out = ctx.rt(&["exec", &id, "sh", "-c", "echo \"$PATH\"; echo $$; grep -E '^(CapBnd|CapEff|NoNewPrivs):' /proc/self/status; id -u; pwd"]).ok();
    let cfg = base_config();
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines[0],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_ne!(lines[1], "1", "exec'd process is pid 1");
    let status = lines[2..5].join("\n");
    let field = |k: &str| status_field(&status, k).unwrap_or_else(|| panic!("{k} missing: {out}"));
    assert_eq!(
        parse_hex(&field("CapBnd")),
        cap_mask(&cfg["process"]["capabilities"]["bounding"])
    );
    assert_eq!(
        parse_hex(&field("CapEff")),
        cap_mask(&cfg["process"]["capabilities"]["effective"])
    );
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(lines[5], "0");
    assert_eq!(lines[6], "/");
}

#[test]
fn exec_env_cwd_user() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("execopts");
    let (id, _) = ctx.sleeper("e");
    let out = ctx
        .rt(&[
            "exec",
            "--env",
            "FOO=bar",
            "--env",
            "SECOND=two words",
            "--cwd",
            "/home/berth",
            "--user",
            "1000:1000",
            "--additional-gids",
            "5",
            &id,
            "sh",
            "-c",
            "echo \"$FOO|$SECOND\"; pwd; id -u; id -g; grep '^Groups:' /proc/self/status",
        ])
        .ok();
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        ["bar|two words", "/home/berth", "1000", "1000", "Groups: 5"],
        "{out}"
    );
}

#[test]
fn exec_exit_code_is_propagated() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("execexit");
    let (id, _) = ctx.sleeper("e");
    let out = ctx.rt(&["exec", &id, "sh", "-c", "echo before; exit 7"]);
    assert_eq!(out.code(), 7, "{out}");
    assert_eq!(out.stdout, "before\n");
    let out = ctx.rt(&["exec", &id, "false"]);
    assert_eq!(out.code(), 1, "{out}");
    assert_eq!(ctx.status(&id), "running");
}

#[test]
fn exec_missing_binary_fails() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("execmissing");
    let (id, _) = ctx.sleeper("e");
    let out = ctx.rt(&["exec", &id, "/no/such/binary"]).fails();
    assert!(!out.err_lines().is_empty(), "{out}");
    assert_eq!(ctx.status(&id), "running");
}

#[test]
fn exec_detach_pid_file() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("execdetach");
    let (id, pid) = ctx.sleeper("e");
    let pidfile = ctx.tmp.join("exec.pid");
    ctx.rt(&[
        "exec",
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
        "sleep",
        "999",
    ])
    .ok();
    let epid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    ctx.note_pid(epid);
    assert_ne!(epid, pid);
    wait_until("the exec'd sleep to run", || cmdline(epid) == "sleep 999");
    for n in NS {
        assert_eq!(
            ns_link(&epid.to_string(), n),
            ns_link(&pid.to_string(), n),
            "{n}"
        );
    }
    // Killing the container takes the exec'd process along (pid ns init exits).
    ctx.rt(&["kill", &id, "KILL"]).ok();
    ctx.wait_status(&id, "stopped");
    wait_until("the exec'd process to die with the container", || {
        !pid_alive(epid)
    });
    ctx.delete(&id);
}

#[test]
fn exec_tty_with_console_socket() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("exectty");
    let (id, _) = ctx.sleeper("e");
    let sock = ConsoleSocket::new(&ctx.tmp);
    let pidfile = ctx.tmp.join("exec.pid");
    ctx.rt(&[
        "exec",
        "--tty",
        "--detach",
        "--console-socket",
        sock.path.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        "tty; test -t 0 && echo stdin-is-tty; echo done",
    ])
    .ok();
    let master = sock.recv_master(Duration::from_secs(10));
    let out = read_pty(master, Duration::from_secs(20));
    let lines: Vec<&str> = out
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines.len() == 3, "{out:?}");
    assert!(lines[0].starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(&lines[1..], ["stdin-is-tty", "done"], "{out:?}");
}

#[test]
fn exec_process_json() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("execprocess");
    let (id, _) = ctx.sleeper("e");
    let src = repo_dir().join("../shared/testdata/containerd-1.6-exec-process.json");
    let text = fs::read_to_string(&src)
        .or_else(|_| fs::read_to_string("/work/shared/testdata/containerd-1.6-exec-process.json"));
    let Ok(text) = text else {
        eprintln!("SKIPPED: containerd-1.6-exec-process.json not found");
        return;
    };
    let mut p: Value = serde_json::from_str(&text).unwrap();
    let f = ctx.tmp.join("process.json");
    fs::write(&f, serde_json::to_string(&p).unwrap()).unwrap();
    let out = ctx
        .rt(&["exec", "--process", f.to_str().unwrap(), &id])
        .ok();
    assert_eq!(out.stdout, "exec-hello\n", "{out}");

    // The same process, checked from inside.
    p["args"] = json!([
        "sh",
        "-c",
        "grep -E '^(CapBnd|CapEff|CapPrm|NoNewPrivs):' /proc/self/status; ulimit -n"
    ]);
    p["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("FROM_PROCESS_JSON=1"));
    fs::write(&f, serde_json::to_string(&p).unwrap()).unwrap();
    let out = ctx
        .rt(&["exec", "--process", f.to_str().unwrap(), &id])
        .ok();
    let caps = cap_mask(&p["capabilities"]["bounding"]);
    let kv: Vec<(String, String)> = out
        .stdout
        .lines()
        .map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .unwrap_or(("ulimit".into(), l.to_string()))
        })
        .collect();
    for (k, v) in &kv {
        match k.as_str() {
            "CapBnd" | "CapEff" | "CapPrm" => assert_eq!(parse_hex(v), caps, "{k}: {out}"),
            "NoNewPrivs" => assert_eq!(v, "1"),
            _ => assert_eq!(v, "1024", "ulimit -n: {out}"),
        }
    }
    assert_eq!(kv.len(), 5, "{out}");
}

#[test]
fn exec_in_stopped_container_fails() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("execstopped");
    let (id, _) = ctx.sleeper("e");
    ctx.rt(&["kill", &id, "KILL"]).ok();
    ctx.wait_status(&id, "stopped");
    let out = ctx.rt(&["exec", &id, "true"]).fails();
    assert!(!out.err_lines().is_empty(), "{out}");
    ctx.delete(&id);
}

#[test]
fn exec_accepts_double_dash() {
    if skip() || berth_only("runc 1.1 has no `exec ID -- CMD`") {
        return;
    }
    let ctx = Ctx::new("execdashdash");
    let (id, _) = ctx.sleeper("e");
    let out = ctx
        .rt(&["exec", &id, "--", "sh", "-c", "echo \"$0 $1\"", "-x", "--y"])
        .ok();
    assert_eq!(out.stdout, "-x --y\n", "{out}");
}
