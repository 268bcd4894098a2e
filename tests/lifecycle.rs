//! create / start / state / kill / delete / run / list, as runc does them.
mod common;
use common::*;
use std::fs;

#[test]
fn create_start_kill_delete() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("lifecycle");
    let out = ctx.dir("out");
    let mut b = ctx.bundle();
    b.bind(&out, "/mnt", &[]);
    b.sh(
        "trap 'echo term > /mnt/term; exit 0' TERM; echo started > /mnt/started; sleep 1000 & wait",
    );
    let id = ctx.id("c");

    // create: the process exists but is blocked before running the user's program.
    let pid = ctx.create(&b, &id);
    let st = ctx.state(&id);
    assert_eq!(st["id"], id.as_str(), "{st}");
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(
        st["bundle"].as_str().map(|p| fs::canonicalize(p).unwrap()),
        Some(fs::canonicalize(b.path()).unwrap()),
        "{st}"
    );
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{st}"
    );
    assert!(pid_alive(pid), "created container's pid {pid} is not alive");
    assert!(ctx.state_dir(&id).is_dir(), "no state dir under --root");
    assert!(
        !cmdline(pid).contains("trap"),
        "the container program already runs: {}",
        cmdline(pid)
    );
    assert!(
        !out.join("started").exists(),
        "the container program ran before start"
    );
    assert_eq!(ctx.status(&id), "created");

    // start: the program runs.
    ctx.start(&id);
    // The shell creates the file before it writes to it: wait for the whole line.
    wait_until("the container to write /mnt/started", || {
        fs::read_to_string(out.join("started")).is_ok_and(|s| s == "started\n")
    });
    assert_eq!(ctx.status(&id), "running");
    assert_eq!(ctx.pid(&id), pid, "pid changed across start");
    assert!(
        cmdline(pid).starts_with("sh -c trap"),
        "pid {pid} runs {:?}",
        cmdline(pid)
    );

    // kill TERM: the trap runs and the container stops.
    ctx.rt(&["kill", &id, "TERM"]).ok();
    ctx.wait_status(&id, "stopped");
    assert_eq!(fs::read_to_string(out.join("term")).unwrap(), "term\n");
    wait_until("the container process to exit", || !pid_alive(pid));

    // delete: state dir gone, state fails.
    ctx.delete(&id);
    ctx.assert_no_trace(&id);
}

#[test]
fn kill_by_name_prefixed_name_and_number() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("killsig");
    for sig in ["KILL", "SIGKILL", "9"] {
        let (id, pid) = ctx.sleeper("k");
        ctx.rt(&["kill", &id, sig]).ok();
        ctx.wait_status(&id, "stopped");
        wait_until("the killed process to go", || !pid_alive(pid));
        ctx.delete(&id);
    }
    ctx.assert_no_marked_process();
}

#[test]
fn kill_default_signal_is_term() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("killdef");
    let out = ctx.dir("out");
    let mut b = ctx.bundle();
    b.bind(&out, "/mnt", &[]);
    b.sh("trap 'echo got-term > /mnt/sig; exit 0' TERM; touch /mnt/ready; sleep 1000 & wait");
    let (id, _pid) = ctx.sleeper_from(&b, "d");
    wait_until("the trap to be set", || out.join("ready").exists());
    ctx.rt(&["kill", &id]).ok();
    ctx.wait_status(&id, "stopped");
    assert_eq!(fs::read_to_string(out.join("sig")).unwrap(), "got-term\n");
    ctx.delete(&id);
}

#[test]
fn run_passes_stdout_and_exit_code() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("runexit");
    let b = ctx.sh_bundle("echo hello from the container; echo to-stderr >&2; exit 3");
    let id = ctx.id("r");
    let out = ctx.run(&b, &id);
    assert_eq!(out.code(), 3, "{out}");
    assert_eq!(out.stdout, "hello from the container\n", "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");
    // A foreground run deletes the container when it exits.
    ctx.assert_no_trace(&id);
}

#[test]
fn run_default_bundle_prints_hostname_and_pid1() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("rundefault");
    let b = ctx.bundle();
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("hostname: berth"), "{out}");
    assert_eq!(lines.get(1).copied(), Some("pid: 1"), "{out}");
    let mounts = parse_mountinfo(&out);
    assert!(
        find_mount(&mounts, "/").is_some(),
        "no / in the container's mountinfo:\n{out}"
    );
    assert!(
        find_mount(&mounts, "/proc").is_some(),
        "no /proc in the container's mountinfo:\n{out}"
    );
}

#[test]
fn run_exit_code_of_a_signal_is_128_plus_n() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("runsig");
    // Without a pid namespace the shell is not an init and can kill itself.
    let mut b = ctx.sh_bundle("kill -USR1 $$; sleep 5");
    b.remove_namespace("pid");
    let id = ctx.id("r");
    let out = ctx.run(&b, &id);
    assert_eq!(out.code(), 128 + libc::SIGUSR1, "{out}");
    ctx.assert_no_trace(&id);
}

#[test]
fn run_killed_from_outside_exits_137() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("runkilled");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let id = ctx.id("r");
    let bg = ctx.rt_bg(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    ctx.wait_status(&id, "running");
    let pid = ctx.pid(&id);
    ctx.rt(&["kill", &id, "KILL"]).ok();
    let out = bg.wait(CMD_TIMEOUT);
    assert_eq!(out.code(), 128 + libc::SIGKILL, "{out}");
    ctx.assert_gone(&id, pid);
    ctx.assert_no_trace(&id);
}

#[test]
fn run_detach_and_pid_file() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("rundetach");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let id = ctx.id("d");
    let pidfile = ctx.tmp.join("run.pid");
    let out = ctx
        .rt(&[
            "run",
            "--detach",
            "--pid-file",
            pidfile.to_str().unwrap(),
            "--bundle",
            b.path().to_str().unwrap(),
            &id,
        ])
        .ok();
    assert!(out.stdout.is_empty(), "run -d printed {out}");
    assert_eq!(ctx.status(&id), "running");
    let pid = ctx.pid(&id);
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string()
    );
    assert_eq!(cmdline(pid), "sleep 1000");
    ctx.rt(&["kill", &id, "KILL"]).ok();
    ctx.wait_status(&id, "stopped");
    ctx.delete(&id);
    ctx.assert_no_trace(&id);
}

#[test]
fn create_pid_file() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("createpid");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let id = ctx.id("c");
    let pidfile = ctx.tmp.join("create.pid");
    ctx.rt(&[
        "create",
        "--pid-file",
        pidfile.to_str().unwrap(),
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ])
    .ok();
    let pid = ctx.pid(&id);
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap().trim(),
        pid.to_string()
    );
    // Deleting a created (never started) container is allowed without --force.
    ctx.delete(&id);
    ctx.assert_no_trace(&id);
}

#[test]
fn delete_running_needs_force() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("delforce");
    let (id, pid) = ctx.sleeper("s");
    let out = ctx.rt(&["delete", &id]).fails();
    assert!(!out.err_lines().is_empty(), "no error message: {out}");
    assert_eq!(ctx.status(&id), "running");
    assert!(pid_alive(pid));
    ctx.rt(&["delete", "--force", &id]).ok();
    ctx.assert_gone(&id, pid);
    ctx.assert_no_trace(&id);
}

#[test]
fn process_killed_from_outside_is_stopped() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("outsidekill");
    let (id, pid) = ctx.sleeper("s");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    ctx.wait_status(&id, "stopped");
    let st = ctx.state(&id);
    assert_eq!(st["status"], "stopped", "{st}");
    // A stopped container deletes without --force.
    ctx.delete(&id);
    ctx.assert_no_trace(&id);
}

#[test]
fn list_table_json_and_quiet() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("list");
    let (running, rpid) = ctx.sleeper("run");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let created = ctx.id("cre");
    let cpid = ctx.create(&b, &created);

    let table = ctx.rt(&["list"]).ok();
    let lines = table.lines();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    for (id, pid, status) in [(&running, rpid, "running"), (&created, cpid, "created")] {
        let row = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not listed: {table}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], pid.to_string(), "{row}");
        assert_eq!(cols[2], status, "{row}");
        assert!(
            cols[3].ends_with(b.path().file_name().unwrap().to_str().unwrap())
                || cols[3].starts_with('/'),
            "{row}"
        );
    }

    let json = ctx.rt(&["list", "--format", "json"]).ok();
    let v: Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}: {json}"));
    let arr = v.as_array().expect("list --format json is an array");
    assert_eq!(arr.len(), 2, "{v}");
    let entry = arr
        .iter()
        .find(|e| e["id"] == running.as_str())
        .expect("running container in JSON list");
    assert_eq!(entry["pid"], rpid);
    assert_eq!(entry["status"], "running");
    assert!(
        entry["bundle"].as_str().is_some_and(|s| s.starts_with('/')),
        "{entry}"
    );
    let entry = arr
        .iter()
        .find(|e| e["id"] == created.as_str())
        .expect("created container in JSON list");
    assert_eq!(entry["status"], "created");
    assert_eq!(entry["pid"], cpid);

    let quiet = ctx.rt(&["list", "-q"]).ok();
    let mut ids: Vec<&str> = quiet.lines();
    ids.sort();
    let mut want = vec![running.as_str(), created.as_str()];
    want.sort();
    assert_eq!(ids, want, "{quiet}");

    ctx.rt(&["delete", "--force", &running]).ok();
    ctx.delete(&created);
    let empty = ctx.rt(&["list", "-q"]).ok();
    assert_eq!(empty.stdout.trim(), "", "{empty}");
}

/// Pids of all processes in pid namespace `ns` (e.g. "pid:[4026532]").
fn pids_in_pidns(ns: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|p| {
            fs::read_link(format!("/proc/{p}/ns/pid"))
                .map(|l| l.to_string_lossy() == ns)
                .unwrap_or(false)
        })
        .filter(|p| pid_alive(*p))
        .collect()
}

#[test]
fn kill_all_reaches_every_process() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("killall");
    let out = ctx.dir("out");
    let mut b = ctx.bundle();
    b.bind(&out, "/mnt", &[]);
    // Two children besides the init: kill --all must reach all three.
    b.sh("sleep 1000 & sleep 1000 & touch /mnt/ready; wait");
    let (id, pid) = ctx.sleeper_from(&b, "a");
    wait_until("the children to start", || out.join("ready").exists());
    let ns = ns_link(&pid.to_string(), "pid");
    wait_until("three processes in the container", || {
        pids_in_pidns(&ns).len() >= 3
    });
    let procs = pids_in_pidns(&ns);
    ctx.rt(&["kill", "--all", &id, "KILL"]).ok();
    ctx.wait_status(&id, "stopped");
    for p in procs {
        wait_until("every container process to die", || !pid_alive(p));
    }
    ctx.delete(&id);
    ctx.assert_no_trace(&id);
}

#[test]
fn start_twice_fails() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("starttwice");
    let (id, _) = ctx.sleeper("s");
    let out = ctx.rt(&["start", &id]).fails();
    assert!(!out.err_lines().is_empty(), "{out}");
    assert_eq!(ctx.status(&id), "running");
}

#[test]
fn state_is_stopped_when_the_pid_is_reused() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("pidreuse");
    let (id, pid) = ctx.sleeper("s");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    ctx.wait_status(&id, "stopped");
    wait_until("the dead init to be reaped", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    // Make a new process get the dead container's pid (ns_last_pid is the
    // last pid handed out; the next fork gets the one after it).
    let mut impostor = None;
    for _ in 0..50 {
        if fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            break;
        }
        let child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        if child.id() as i32 == pid {
            impostor = Some(child);
            break;
        }
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
    }
    let Some(mut impostor) = impostor else {
        eprintln!("SKIPPED: could not get pid {pid} again");
        return;
    };
    let st = ctx.state(&id);
    let _ = impostor.kill();
    let _ = impostor.wait();
    assert_eq!(
        st["status"], "stopped",
        "a reused pid made the container look alive: {st}"
    );
    ctx.delete(&id);
}
