//! The engine: containers from images with Docker's verbs, run for real as root from a busybox
//! image made here, checked from inside the container and from outside (the records, /proc,
//! mountinfo, the runtime's state, the monitor process).

mod image_support;

use image_support::{busybox_tar, is_root, make_image, Scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A scratch data root with a busybox image, whose containers are removed (and checked gone)
/// when dropped.
struct Eng {
    s: Scratch,
}

impl Eng {
    fn new(name: &str) -> Option<Eng> {
        if !is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        let s = Scratch::new(&format!("engine-{name}"));
        let tar = busybox_tar(&s);
        let store = s.store();
        let mut cfg = image_support::cmd(&["sh"]);
        cfg.env = vec![
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin".into(),
            "FROM_IMAGE=1".into(),
        ];
        make_image(&store, "busybox:latest", &[tar], cfg);
        Some(Eng { s })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        self.s.command(args)
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        wait_output(child, Duration::from_secs(60), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(!out.status.success(), "berth {args:?} should have failed");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn inspect(&self, c: &str, template: &str) -> String {
        self.ok(&["container", "inspect", "-f", template, c])
            .trim_end()
            .to_string()
    }

    fn status(&self, c: &str) -> String {
        self.inspect(c, "{{.State.Status}}")
    }

    fn wait_status(&self, c: &str, want: &str) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            // A container being made by a command still running has no record yet.
            if !self.run(&["container", "inspect", c]).status.success() {
                assert!(Instant::now() < end, "{c} never appeared");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let s = self.status(c);
            if s == want {
                return;
            }
            assert!(Instant::now() < end, "{c}: status {s}, waited for {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn data(&self) -> PathBuf {
        self.s.data_root()
    }

    fn run_root(&self) -> PathBuf {
        self.s.dir.join("run")
    }

    fn container_dirs(&self) -> Vec<String> {
        names(&self.data().join("containers"))
    }

    /// Nothing of any container is left: records, names, runtime state, mounts, monitors.
    fn assert_nothing_left(&self) {
        assert_eq!(
            self.container_dirs(),
            Vec::<String>::new(),
            "container records left"
        );
        assert_eq!(
            names(&self.data().join("names")),
            Vec::<String>::new(),
            "names left"
        );
        assert_eq!(
            names(&self.run_root()),
            Vec::<String>::new(),
            "runtime state left"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let ours: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(self.data().join("containers").to_str().unwrap()))
            .collect();
        assert!(ours.is_empty(), "mounts left: {ours:?}");
        assert_eq!(
            monitors_of(&self.data()),
            Vec::<i32>::new(),
            "monitors left"
        );
    }
}

impl Drop for Eng {
    fn drop(&mut self) {
        let ids = self.run(&["container", "ls", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.run(&["container", "rm", "-f", id]);
        }
    }
}

fn wait_output(mut child: std::process::Child, limit: Duration, what: &[&str]) -> Output {
    let end = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "berth {what:?} did not finish in {limit:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The berth monitors whose working set is this data root: processes whose cmdline is berth's
/// and that hold a file under `data`.
fn monitors_of(data: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(data.join("containers")))
        });
        if holds && pid != std::process::id() as i32 {
            out.push(pid);
        }
    }
    out
}

/// No such process, or a zombie waiting for whoever inherited it.
fn gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')').next().unwrap().split_whitespace().next() == Some("Z")
    })
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn run_in_the_foreground_gives_output_and_exit_code_and_rm_leaves_nothing() {
    let Some(e) = Eng::new("fg") else { return };
    let out = e.run(&[
        "container",
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    e.assert_nothing_left();
    // Without --rm the container stays, exited with its code.
    let out = e.run(&[
        "container",
        "run",
        "--name",
        "three",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        e.inspect("three", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 3"
    );
    let ls = e.ok(&["container", "ls", "-a"]);
    assert!(ls.contains("Exited (3)"), "{ls}");
    assert!(!e.ok(&["container", "ls"]).contains("three"));
    e.ok(&["rm", "three"]);
    e.assert_nothing_left();
}

#[test]
fn a_detached_container_runs_under_its_monitor_logs_and_stops() {
    let Some(e) = Eng::new("detached") else {
        return;
    };
    let id = e
        .ok(&[
            "container",
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    e.wait_status("web", "running");
    // The monitor is the parent of the container's init, on its own session.
    let pid: i32 = e.inspect("web", "{{.State.Pid}}").parse().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: i32 = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let monitors = monitors_of(&e.data());
    assert_eq!(monitors, vec![ppid], "the init's parent is the one monitor");
    let parent_cmd = std::fs::read_to_string(format!("/proc/{ppid}/cmdline")).unwrap();
    assert!(parent_cmd.contains("berth"), "{parent_cmd}");
    // Its hostname is its short id; HOSTNAME and the image's env are set.
    let out = e.ok(&[
        "container",
        "exec",
        "web",
        "sh",
        "-c",
        "hostname; echo $HOSTNAME $FROM_IMAGE",
    ]);
    assert_eq!(out, format!("{}\n{} 1\n", &id[..12], &id[..12]));
    let ls = e.ok(&["container", "ls"]);
    assert!(
        ls.contains(&id[..12]) && ls.contains("Up ") && ls.contains("web"),
        "{ls}"
    );
    // The log is Docker's json-file.
    let end = Instant::now() + Duration::from_secs(10);
    while !e.ok(&["logs", "web"]).contains("started") {
        assert!(Instant::now() < end, "no log line");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log =
        std::fs::read_to_string(e.data().join(format!("containers/{id}/{id}-json.log"))).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["log"], "started\n");
    assert_eq!(first["stream"], "stdout");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    // stop: the stop signal, which the trap answers; exit 0 and the log has the goodbye.
    e.ok(&["stop", "web"]);
    assert_eq!(
        e.inspect("web", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    assert!(e.ok(&["logs", "web"]).ends_with("started\nbye\n"));
    assert!(gone(pid), "the init is gone");
    assert!(gone(ppid), "the monitor is gone");
    assert_eq!(
        names(&e.run_root()),
        Vec::<String>::new(),
        "the runtime's container is deleted"
    );
    e.ok(&["rm", "web"]);
    e.assert_nothing_left();
}

#[test]
fn stop_kills_after_the_timeout_and_kill_sends_the_signal() {
    let Some(e) = Eng::new("stop") else { return };
    // sh as pid 1 ignores SIGTERM without a trap: stop must fall back to SIGKILL.
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "stubborn",
        "busybox",
        "sleep",
        "1000",
    ]);
    let t = Instant::now();
    e.ok(&["stop", "-t", "1", "stubborn"]);
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(e.inspect("stubborn", "{{.State.ExitCode}}"), "137");
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "kk",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 42' USR1; while true; do sleep 0.1; done",
    ]);
    e.wait_status("kk", "running");
    std::thread::sleep(Duration::from_millis(200));
    e.ok(&["container", "kill", "-s", "USR1", "kk"]);
    e.wait_status("kk", "exited");
    assert_eq!(e.inspect("kk", "{{.State.ExitCode}}"), "42");
    let (code, err) = e.fails(&["container", "kill", "kk"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not running"), "{err}");
}

#[test]
fn the_writable_layer_survives_stop_and_start_and_rm_removes_it() {
    let Some(e) = Eng::new("layer") else { return };
    e.ok(&[
        "container",
        "run",
        "--name",
        "wr",
        "busybox",
        "sh",
        "-c",
        "echo kept > /kept",
    ]);
    let id = e.inspect("wr", "{{.Id}}");
    let upper = e
        .data()
        .join(format!("containers/{id}/bundle/.berth/upper"));
    assert_eq!(
        std::fs::read_to_string(upper.join("kept")).unwrap(),
        "kept\n"
    );
    // start -a runs the same command again, over the same layer.
    let out = e.run(&["container", "start", "-a", "wr"]);
    assert!(out.status.success());
    e.ok(&[
        "container",
        "create",
        "--name",
        "reader",
        "busybox",
        "cat",
        "/kept",
    ]);
    assert_eq!(e.status("reader"), "created");
    let out = e.run(&["container", "start", "-a", "reader"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "another container does not see w's layer"
    );
    e.ok(&["rm", "wr", "reader"]);
    assert!(!upper.exists());
    e.assert_nothing_left();
}

#[test]
fn bad_input_gets_dockers_codes_and_leaves_nothing() {
    let Some(e) = Eng::new("bad") else { return };
    let (code, err) = e.fails(&["container", "run", "--rm", "nosuchimage:1", "true"]);
    assert_eq!(code, 125, "{err}");
    let (code, err) = e.fails(&[
        "container",
        "run",
        "--rm",
        "--pull",
        "never",
        "nosuch",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("No such image"), "{err}");
    let (code, err) = e.fails(&["container", "run", "--rm", "busybox", "/no/such/command"]);
    assert_eq!(code, 127, "{err}");
    let (code, err) = e.fails(&["container", "run", "--rm", "busybox", "/etc"]);
    assert_eq!(code, 126, "{err}");
    let (code, err) = e.fails(&[
        "container",
        "run",
        "--rm",
        "--restart",
        "sometimes",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid restart policy 'sometimes'"), "{err}");
    let (code, _) = e.fails(&["container", "run", "--no-such-flag", "busybox"]);
    assert_eq!(code, 125);
    let (code, err) = e.fails(&["container", "run", "--name", "a!b", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("Invalid container name (a!b)"), "{err}");
    e.assert_nothing_left();
    // A command that is not there, without --rm: the container stays created, with the error.
    let (code, _) = e.fails(&["container", "run", "--name", "nocmd", "busybox", "nope"]);
    assert_eq!(code, 127);
    assert_eq!(
        e.inspect("nocmd", "{{.State.Status}} {{.State.ExitCode}}"),
        "created 127"
    );
    assert!(e.inspect("nocmd", "{{.State.Error}}").contains("nope"));
    // A taken name.
    let (code, err) = e.fails(&["container", "create", "--name", "nocmd", "busybox", "true"]);
    assert_eq!(code, 1, "Docker's create: 1 for what its daemon refuses");
    assert!(
        err.contains("The container name \"/nocmd\" is already in use"),
        "{err}"
    );
    let (code, err) = e.fails(&["rm", "nosuch"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such container: nosuch"), "{err}");
    e.ok(&["rm", "-f", "nosuch", "nocmd"]);
    e.assert_nothing_left();
}

#[test]
fn restart_policies_restart_with_backoff_and_stop_ends_them() {
    let Some(e) = Eng::new("restart") else { return };
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo try; exit 5",
    ]);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = e.inspect("flaky", "{{.State.Status}} {{.RestartCount}}");
        if s == "exited 2" {
            break;
        }
        assert!(Instant::now() < end, "{s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(e.ok(&["logs", "flaky"]), "try\ntry\ntry\n");
    assert_eq!(e.inspect("flaky", "{{.State.ExitCode}}"), "5");
    // always: it comes back after its process is killed from outside, not after `stop`.
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "1000",
    ]);
    e.wait_status("always", "running");
    let pid = e.inspect("always", "{{.State.Pid}}");
    Command::new("kill").args(["-9", &pid]).status().unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = e.inspect(
            "always",
            "{{.State.Status}} {{.RestartCount}} {{.State.Pid}}",
        );
        if s.starts_with("running 1 ") && !s.ends_with(&format!(" {pid}")) {
            break;
        }
        assert!(Instant::now() < end, "{s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    e.ok(&["stop", "-t", "1", "always"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(e.status("always"), "exited");
}

#[test]
fn exec_runs_in_the_container_with_its_env_user_and_workdir() {
    let Some(e) = Eng::new("exec") else { return };
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "box",
        "-e",
        "A=1",
        "busybox",
        "sleep",
        "1000",
    ]);
    e.wait_status("box", "running");
    let out = e.ok(&[
        "container",
        "exec",
        "-e",
        "B=2",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        "box",
        "sh",
        "-c",
        "echo $A $B $(id -u) $(pwd)",
    ]);
    assert_eq!(out, "1 2 65534 /tmp\n");
    let out = e.run(&["container", "exec", "box", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let out = e.run(&["container", "exec", "box", "nope"]);
    assert_eq!(
        out.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Piped stdin with -i.
    let mut c = e.cmd(&["container", "exec", "-i", "box", "cat"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = wait_output(child, Duration::from_secs(20), &["exec -i"]);
    assert_eq!(stdout(&out), "piped\n");
    e.ok(&["container", "pause", "box"]);
    assert_eq!(e.status("box"), "paused");
    assert!(e.ok(&["container", "ls"]).contains("(Paused)"));
    e.ok(&["container", "unpause", "box"]);
    assert_eq!(e.status("box"), "running");
    e.ok(&["rename", "box", "crate"]);
    assert_eq!(e.inspect("crate", "{{.Name}}"), "/crate");
    e.fails(&["container", "inspect", "box"]);
    let (_, err) = e.fails(&["rm", "crate"]);
    assert!(err.contains("container is running"), "{err}");
    e.ok(&["rm", "-f", "crate"]);
    e.assert_nothing_left();
}

#[test]
fn run_with_piped_stdin_and_the_container_files_docker_writes() {
    let Some(e) = Eng::new("stdin") else { return };
    let mut c = e.cmd(&["container", "run", "--rm", "-i", "busybox", "sh", "-c",
        "cat; cat /etc/hostname; grep -c localhost /etc/hosts; grep nameserver /etc/resolv.conf | head -1; df -k /dev/shm | tail -1"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = wait_output(child, Duration::from_secs(20), &["run -i"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "through stdin", "{text}");
    assert_eq!(lines[1].len(), 12, "hostname is the short id: {text}");
    assert_eq!(lines[2], "2", "{text}");
    assert!(lines[3].starts_with("nameserver "), "{text}");
    assert!(
        lines[4].split_whitespace().nth(1) == Some("65536"),
        "/dev/shm is 64 MB: {text}"
    );
    e.assert_nothing_left();
}

#[test]
fn wait_inspect_and_ps_filters_read_as_dockers() {
    let Some(e) = Eng::new("wait") else { return };
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "w1",
        "-l",
        "tier=web",
        "busybox",
        "sh",
        "-c",
        "sleep 0.3; exit 4",
    ]);
    assert_eq!(e.ok(&["wait", "w1"]), "4\n");
    let doc: serde_json::Value = serde_json::from_str(&e.ok(&["inspect", "w1"])).unwrap();
    let d = &doc[0];
    assert_eq!(d["Name"], "/w1");
    assert_eq!(d["Path"], "sh");
    assert_eq!(d["Args"][0], "-c");
    assert_eq!(d["State"]["Status"], "exited");
    assert_eq!(d["State"]["ExitCode"], 4);
    assert_eq!(d["Config"]["Labels"]["tier"], "web");
    assert_eq!(d["HostConfig"]["RestartPolicy"]["Name"], "no");
    assert!(d["Image"].as_str().unwrap().starts_with("sha256:"));
    assert!(d["State"]["FinishedAt"].as_str().unwrap() > d["State"]["StartedAt"].as_str().unwrap());
    e.ok(&["container", "create", "--name", "c2", "busybox", "true"]);
    let q = |f: &str| e.ok(&["container", "ls", "-a", "--filter", f, "--format", "x"]);
    let _ = q;
    let names = |f: &str| {
        let out = e.ok(&["container", "ls", "-aq", "--filter", f]);
        out.lines().count()
    };
    assert_eq!(names("label=tier=web"), 1);
    assert_eq!(names("status=created"), 1);
    assert_eq!(names("exited=4"), 1);
    assert_eq!(names("name=c2"), 1);
    let (code, _) = e.fails(&["container", "ls", "--filter", "colour=red"]);
    assert_eq!(code, 1);
    // Without -f it asks; no answer is no.
    let before = e.ok(&["container", "ls", "-aq"]);
    e.ok(&["container", "prune"]);
    assert_eq!(e.ok(&["container", "ls", "-aq"]), before);
    let pruned = e.ok(&["container", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Containers:\n"), "{pruned}");
    e.assert_nothing_left();
}

#[test]
fn health_checks_mark_a_container_healthy_or_unhealthy() {
    let Some(e) = Eng::new("health") else { return };
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "good",
        "--health-cmd",
        "test -e /tmp/up",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sh",
        "-c",
        "touch /tmp/up; sleep 1000",
    ]);
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "bad",
        "--health-cmd",
        "echo sick; exit 1",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "1000",
    ]);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let g = e.inspect("good", "{{.State.Health.Status}}");
        let b = e.inspect("bad", "{{.State.Health.Status}}");
        if g == "healthy" && b == "unhealthy" {
            break;
        }
        assert!(Instant::now() < end, "good {g}, bad {b}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = e.inspect("bad", "{{json .State.Health.Log}}");
    assert!(log.contains("sick"), "{log}");
    assert!(e.ok(&["container", "ls"]).contains("(unhealthy)"));
}

#[test]
fn a_killed_monitor_or_creator_leaves_a_truthful_record_that_rm_f_clears() {
    let Some(e) = Eng::new("faults") else { return };
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "orphan",
        "busybox",
        "sleep",
        "1000",
    ]);
    e.wait_status("orphan", "running");
    let monitors = monitors_of(&e.data());
    assert_eq!(monitors.len(), 1);
    Command::new("kill")
        .args(["-9", &monitors[0].to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Its process still runs: the record says so, and rm -f removes everything.
    assert_eq!(e.status("orphan"), "running");
    e.ok(&["rm", "-f", "orphan"]);
    e.assert_nothing_left();
    // A berth killed while it creates: whatever instant, `ls -a` shows the container and
    // `rm -f` clears it.
    for (verb, delay_ms) in [0u64, 2, 5, 10, 20, 40, 80]
        .iter()
        .flat_map(|d| [("create", *d), ("run", *d)])
    {
        let args: &[&str] = if verb == "create" {
            &["container", "create", "busybox", "true"]
        } else {
            &["container", "run", "-d", "busybox", "sleep", "1000"]
        };
        let mut child = e
            .cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        for id in e.ok(&["container", "ls", "-aq", "--no-trunc"]).lines() {
            e.ok(&["rm", "-f", id]);
        }
        e.assert_nothing_left();
    }
    // A berth killed while it removes: the next `rm -f` finishes the job.
    for delay_ms in [0u64, 2, 5, 10, 20] {
        e.ok(&[
            "container",
            "run",
            "-d",
            "--name",
            "victim",
            "busybox",
            "sleep",
            "1000",
        ]);
        let mut child = e
            .cmd(&["rm", "-f", "victim"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let left = e.ok(&["container", "ls", "-aq", "--no-trunc"]);
        for id in left.lines() {
            e.ok(&["rm", "-f", id]);
        }
        e.assert_nothing_left();
    }
}

#[test]
fn two_starts_at_once_make_one_monitor() {
    let Some(e) = Eng::new("twostarts") else {
        return;
    };
    e.ok(&[
        "container",
        "create",
        "--name",
        "once",
        "busybox",
        "sleep",
        "1000",
    ]);
    let starts: Vec<_> = (0..3)
        .map(|_| {
            e.cmd(&["container", "start", "once"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for s in starts {
        let out = wait_output(s, Duration::from_secs(30), &["start"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(e.status("once"), "running");
    assert_eq!(monitors_of(&e.data()).len(), 1);
}

/// Runs `berth ARGS` on a terminal (script(1) gives it one of `rows`x`cols`), typing `input`
/// step by step: each step waits for its text in the output, then types its bytes.
fn on_terminal(e: &Eng, args: &[&str], steps: &[(&str, &[u8])]) -> (Option<i32>, String) {
    let mut cmd = format!(
        "stty rows 22 cols 77; exec {} --data-root {} --root {}",
        image_support::berth_bin().display(),
        e.data().display(),
        e.run_root().display()
    );
    for a in args {
        cmd.push_str(&format!(" '{a}'"));
    }
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let out = out.clone();
        let mut so = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut so, &mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    for (wait_for, typed) in steps {
        let end = Instant::now() + Duration::from_secs(20);
        while !String::from_utf8_lossy(&out.lock().unwrap()).contains(wait_for) {
            assert!(
                Instant::now() < end,
                "no {wait_for:?} in {:?}",
                String::from_utf8_lossy(&out.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        use std::io::Write;
        stdin.write_all(typed).unwrap();
        stdin.flush().unwrap();
    }
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "berth on the terminal did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    reader.join().unwrap();
    let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    (status.code(), text)
}

#[test]
fn a_terminal_follows_the_window_detaches_with_ctrl_p_ctrl_q_and_reattaches() {
    let Some(e) = Eng::new("tty") else { return };
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("script(1) is needed (apt-get install util-linux)");
    }
    let (code, text) = on_terminal(
        &e,
        &["container", "run", "-it", "--name", "tty", "busybox", "sh"],
        &[
            ("", b"stty size; tty; echo mark-$((6*7))\r"),
            ("mark-42", b"\x10\x11"),
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("22 77"), "the window size: {text}");
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert_eq!(e.status("tty"), "running", "detached, not stopped");
    // attach again: the same shell, whose exit ends the attach with its code.
    let (code, text) = on_terminal(
        &e,
        &["attach", "tty"],
        &[("", b"\r"), ("#", b"echo again-$((2*3)); exit 5\r")],
    );
    assert!(text.contains("again-6"), "{text}");
    assert_eq!(code, Some(5), "{text}");
    e.wait_status("tty", "exited");
    assert_eq!(e.inspect("tty", "{{.State.ExitCode}}"), "5");
    // The terminal's output is in the log too.
    assert!(e.ok(&["logs", "tty"]).contains("mark-42"));
}

fn ns_of(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn run_options_shape_the_container_as_dockers_do() {
    let Some(e) = Eng::new("options") else { return };
    // --init: pid 1 is the init, the command its child; --read-only; -w made; -u; --hostname;
    // --add-host; --dns; --entrypoint "".
    let out = e.ok(&[
        "container",
        "run",
        "--rm",
        "--init",
        "--read-only",
        "-w",
        "/made/here",
        "-u",
        "nobody",
        "--hostname",
        "box1",
        "--add-host",
        "db:10.1.2.3",
        "--dns",
        "9.9.9.9",
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; pwd; id -u; hostname; grep db /etc/hosts; \
         grep ^nameserver /etc/resolv.conf; touch /x 2>/dev/null && echo writable || echo read-only",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("/sbin/docker-init -- sh -c"), "{out}");
    assert_eq!(
        &lines[1..],
        [
            "/made/here",
            "65534",
            "box1",
            "10.1.2.3\tdb",
            "nameserver 9.9.9.9",
            "read-only"
        ],
        "{out}"
    );
    let (code, err) = e.fails(&["container", "run", "--rm", "--entrypoint", "", "busybox"]);
    assert_eq!(code, 125);
    assert!(err.contains("No command specified"), "{err}");
    // Namespaces: the default network has eth0 and lo; host shares the host's; container:
    // shares another's.
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "netowner",
        "busybox",
        "sleep",
        "1000",
    ]);
    e.wait_status("netowner", "running");
    let owner_pid = e.inspect("netowner", "{{.State.Pid}}");
    assert_eq!(
        e.ok(&["container", "exec", "netowner", "ls", "/sys/class/net"]),
        "eth0\nlo\n"
    );
    assert_eq!(
        e.ok(&[
            "container",
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "ls",
            "/sys/class/net"
        ]),
        "lo\n"
    );
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "joiner",
        "--network",
        "container:netowner",
        "--pid",
        "host",
        "--uts",
        "host",
        "busybox",
        "sleep",
        "1000",
    ]);
    e.wait_status("joiner", "running");
    let joiner_pid = e.inspect("joiner", "{{.State.Pid}}");
    assert_eq!(ns_of(&joiner_pid, "net"), ns_of(&owner_pid, "net"));
    assert_eq!(ns_of(&joiner_pid, "pid"), ns_of("self", "pid"));
    assert_eq!(ns_of(&joiner_pid, "uts"), ns_of("self", "uts"));
    assert_ne!(ns_of(&joiner_pid, "mnt"), ns_of(&owner_pid, "mnt"));
    let host_links = names(Path::new("/sys/class/net"));
    let out = e.ok(&[
        "container",
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    // Containers' veths come and go on the host meanwhile (other tests' containers on their
    // default networks, and their scratch data roots' bridges): the rest must be the same.
    let steady = |l: &str| !l.starts_with("veth") && !l.starts_with("bt");
    assert_eq!(
        out.lines().filter(|l| steady(l)).collect::<Vec<_>>(),
        host_links
            .iter()
            .map(|l| l.as_str())
            .filter(|l| steady(l))
            .collect::<Vec<_>>()
    );
    // The container's cgroup exists while it runs (outside view), and goes with it.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            e.run_root()
                .join(e.inspect("netowner", "{{.Id}}"))
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let dirs: Vec<PathBuf> = state["cgroup"]["dirs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| PathBuf::from(d.as_str().unwrap()))
        .collect();
    assert!(!dirs.is_empty() && dirs.iter().all(|d| d.exists()));
    let procs = std::fs::read_to_string(dirs[0].join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|p| p == owner_pid), "{procs}");
    e.ok(&["rm", "-f", "joiner", "netowner"]);
    assert!(dirs.iter().all(|d| !d.exists()), "cgroups left: {dirs:?}");
    // --cidfile, --stop-signal, --log-opt rotation.
    let cid = e.s.path("cid");
    e.ok(&["container", "run", "-d", "--name", "sig", "--cidfile", cid.to_str().unwrap(),
        "--stop-signal", "USR1", "--log-opt", "max-size=1k", "--log-opt", "max-file=2",
        "busybox", "sh", "-c",
        "trap 'echo got-usr1; exit 9' USR1; i=0; while [ $i -lt 100 ]; do echo line-$i; i=$((i+1)); done; while true; do sleep 0.1; done"]);
    let id = std::fs::read_to_string(&cid).unwrap();
    assert_eq!(e.inspect("sig", "{{.Id}}"), id);
    let (code, err) = e.fails(&[
        "container",
        "run",
        "--cidfile",
        cid.to_str().unwrap(),
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("Container ID file found"), "{err}");
    e.wait_status("sig", "running");
    let end = Instant::now() + Duration::from_secs(10);
    while !e.ok(&["logs", "sig"]).contains("line-99") {
        assert!(Instant::now() < end);
        std::thread::sleep(Duration::from_millis(50));
    }
    e.ok(&["stop", "sig"]);
    assert_eq!(e.inspect("sig", "{{.State.ExitCode}}"), "9");
    let log = e.data().join(format!("containers/{id}/{id}-json.log"));
    assert!(std::fs::metadata(&log).unwrap().len() <= 1024);
    assert!(PathBuf::from(format!("{}.1", log.display())).exists());
    assert!(!PathBuf::from(format!("{}.2", log.display())).exists());
    let logs = e.ok(&["logs", "sig"]);
    assert!(logs.ends_with("line-99\ngot-usr1\n"), "{logs}");
    assert!(!logs.contains("line-0\n"), "rotated away: {logs}");
    // An image a container uses cannot be removed.
    let (_, err) = e.fails(&["rmi", "busybox"]);
    assert!(
        err.contains(&format!(
            "container {} is using its referenced image",
            &id[..12]
        )),
        "{err}"
    );
}

#[test]
fn system_df_counts_and_system_prune_removes_what_nothing_uses() {
    let Some(e) = Eng::new("system") else { return };
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "up",
        "busybox",
        "sleep",
        "1000",
    ]);
    e.ok(&[
        "container",
        "run",
        "--name",
        "down",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/y bs=1000 count=50 2>/dev/null",
    ]);
    let df = e.ok(&["system", "df"]);
    let row = |kind: &str| -> Vec<String> {
        df.lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("{kind} in {df}"))[kind.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("Images")[..2], ["1", "1"], "{df}");
    assert_eq!(
        row("Containers"),
        ["2", "1", "50kB", "50kB", "(100%)"],
        "{df}"
    );
    let pruned = e.ok(&["system", "prune", "-f"]);
    let down = e.inspect("up", "{{.Id}}");
    assert!(pruned.starts_with("Deleted Containers:\n"), "{pruned}");
    assert!(
        !pruned.contains(&down),
        "the running container stays: {pruned}"
    );
    assert!(
        pruned.ends_with("Total reclaimed space: 50kB\n"),
        "{pruned}"
    );
    assert_eq!(e.ok(&["container", "ls", "-aq"]).lines().count(), 1);
    // Without -f, a prune asks; no answer is no.
    e.ok(&["container", "stop", "-t", "0", "up"]);
    e.ok(&["system", "prune"]);
    assert_eq!(e.ok(&["container", "ls", "-aq"]).lines().count(), 1);
    // -a: images no container uses go too (once the last container is gone).
    e.ok(&["rm", "up"]);
    let pruned = e.ok(&["system", "prune", "-a", "-f"]);
    assert!(
        pruned.contains("Deleted Images:\nuntagged: docker.io/library/busybox:latest\n"),
        "{pruned}"
    );
    assert!(e
        .ok(&["system", "df"])
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("Images          0"));
}

#[test]
fn a_foreground_run_passes_its_signals_to_the_container() {
    let Some(e) = Eng::new("sigproxy") else {
        return;
    };
    let child = e
        .cmd(&[
            "container",
            "run",
            "--name",
            "sig",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-int; exit 7' INT; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    e.wait_status("sig", "running");
    let end = Instant::now() + Duration::from_secs(10);
    while !e.ok(&["logs", "sig"]).contains("ready") {
        assert!(Instant::now() < end, "the container did not start its loop");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(20), &["run (SIGINT)"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "ready\ngot-int\n");
    // --sig-proxy=false: the signal is berth's own (it ends; the container goes on).
    let child = e
        .cmd(&[
            "container",
            "run",
            "--sig-proxy=false",
            "--name",
            "nosig",
            "busybox",
            "sleep",
            "1000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    e.wait_status("nosig", "running");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(20), &["run --sig-proxy=false"]);
    assert!(!out.status.success());
    assert_eq!(e.status("nosig"), "running");
}

#[test]
fn an_image_is_found_by_its_id_as_by_its_name() {
    let Some(e) = Eng::new("byid") else { return };
    let images = e.ok(&["images", "-q"]);
    let id = images.lines().next().unwrap().trim().to_string();
    assert!(id.len() >= 12, "{images}");
    let out = e.ok(&["container", "run", "--rm", &id[..12], "echo", "by-id"]);
    assert_eq!(out, "by-id\n");
    let out = e.ok(&[
        "container",
        "run",
        "--rm",
        "--pull",
        "never",
        &format!("sha256:{}", &id[..8]),
        "echo",
        "by-prefix",
    ]);
    assert_eq!(out, "by-prefix\n");
    e.assert_nothing_left();
}

/// A hostile image: its WorkingDir goes through a symlink to a host directory, its /etc/hosts,
/// /etc/hostname and /etc/resolv.conf are symlinks out of the root (absolute and `../`), and
/// its /etc/passwd is a symlink to the host's /etc/shadow. The engine makes the working
/// directory, the runtime mounts berth's files and `-u` is resolved: all inside the root.
#[test]
fn a_hostile_image_cannot_reach_the_host_through_its_symlinks() {
    let Some(e) = Eng::new("hostile") else { return };
    let canary = e.s.path("canary");
    std::fs::create_dir_all(&canary).unwrap();
    std::fs::write(canary.join("hosts"), "host canary\n").unwrap();
    let abs = canary.display().to_string();
    let up = format!("../../../../../../../..{abs}");
    let (work, hosts, hostname, resolv) = (
        format!("{abs}/workdir"),
        format!("{up}/hosts"),
        format!("{abs}/hostname"),
        format!("{up}/resolv.conf"),
    );
    let mut layer = image_support::RawTar::default();
    layer
        .add(image_support::Entry::symlink("work", &work))
        .add(image_support::Entry::symlink("etc/hosts", &hosts))
        .add(image_support::Entry::symlink("etc/hostname", &hostname))
        .add(image_support::Entry::symlink("etc/resolv.conf", &resolv))
        .add(image_support::Entry::symlink("etc/passwd", "/etc/shadow"));
    let mut cfg = image_support::cmd(&["sh", "-c", "pwd; cat /etc/hosts | head -1; id -u"]);
    cfg.working_dir = "/work/sub".into();
    cfg.env = vec!["PATH=/bin".into()];
    make_image(
        &e.s.store(),
        "hostile:1",
        &[busybox_tar(&e.s), layer.finish()],
        cfg,
    );
    let out = e.run(&["container", "run", "--rm", "hostile:1"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The working directory is where the link leads inside the root (the kernel's getcwd
    // shows it so), and the hosts file is berth's.
    assert_eq!(text, format!("{work}/sub\n127.0.0.1\tlocalhost\n0\n"));
    // Nothing was made or written on the host.
    assert_eq!(names(&canary), ["hosts"]);
    assert_eq!(
        std::fs::read_to_string(canary.join("hosts")).unwrap(),
        "host canary\n"
    );
    // -u by name reads the image's /etc/passwd inside the root: a link to the host's
    // /etc/shadow finds no such file there, so no user of the host is found.
    let (code, err) = e.fails(&["container", "run", "--rm", "-u", "root", "hostile:1"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("unable to find user root"), "{err}");
    e.assert_nothing_left();
}
