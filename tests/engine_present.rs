//! How the engine presents containers, checked on real ones: `stats` numbers against the
//! container's cgroup files and /proc, `top` against the cgroup's processes, and the
//! `--format` paths of `ps`, `stats` and `inspect` in Docker's words and layouts.
//!
//! The first tests run containers with the runtime core (`berth run -d` on a bundle) and call
//! the engine's library; the rest go through `berth container ...` on an image made here.

mod common;
mod engine_support;

use berth::engine::humanize::bytes_size;
use berth::engine::stats::{cpu_percent, sample_runtime_container};
use common::{Bundle, Ctx};
use engine_support::{busybox_tar, cmd, make_image, Scratch};
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ---- helpers ----

/// The container's cgroup directory holding `file` (v1: that controller's; v2: the one).
fn find_cgroup_dir(state_dir: &Path, file: &str) -> Option<PathBuf> {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(state_dir.join("state.json")).ok()?).ok()?;
    state["cgroup"]["dirs"]
        .as_array()?
        .iter()
        .filter_map(|d| d.as_str().map(PathBuf::from))
        .find(|d| d.join(file).exists())
}

fn cgroup_dir_with(state_dir: &Path, file: &str) -> PathBuf {
    find_cgroup_dir(state_dir, file)
        .unwrap_or_else(|| panic!("no cgroup directory of the container has {file}"))
}

fn read_u64(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    match text.trim() {
        "max" => u64::MAX,
        t => t
            .parse()
            .unwrap_or_else(|e| panic!("{}: {t:?}: {e}", path.display())),
    }
}

fn flat_keyed(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The memory figures straight from the cgroup files: (usage, inactive file, limit).
fn memory_files(state_dir: &Path) -> (u64, u64, u64) {
    if let Some(dir) = find_cgroup_dir(state_dir, "memory.usage_in_bytes") {
        return (
            read_u64(&dir.join("memory.usage_in_bytes")),
            flat_keyed(&dir.join("memory.stat"), "total_inactive_file").unwrap_or(0),
            read_u64(&dir.join("memory.limit_in_bytes")),
        );
    }
    let dir = cgroup_dir_with(state_dir, "memory.current");
    (
        read_u64(&dir.join("memory.current")),
        flat_keyed(&dir.join("memory.stat"), "inactive_file").unwrap_or(0),
        read_u64(&dir.join("memory.max")),
    )
}

fn host_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A shell holding 20 MB in a variable; the echo after the sleep keeps busybox's shell from
/// exec'ing the sleep (and so from freeing the memory).
const MEM_HOG: &str = "x=$(head -c 20000000 /dev/zero | tr '\\0' a); sleep 1000; echo ${#x}";

fn memory_bundle(ctx: &Ctx, limit: u64) -> Bundle {
    let mut b = ctx.sh_bundle(MEM_HOG);
    b.config["linux"]["resources"]["memory"] = json!({ "limit": limit });
    b
}

// ---- the runtime core's containers, through the engine's library ----

#[test]
fn stats_sample_matches_the_cgroup_files() {
    if common::skip() {
        return;
    }
    let ctx = Ctx::new("present-stats");
    let limit = 128 * 1024 * 1024;
    let b = memory_bundle(&ctx, limit);
    let id = ctx.id("mem");
    ctx.run_detached(&b, &id);
    let state_dir = ctx.state_dir(&id);
    let pids_dir = cgroup_dir_with(&state_dir, "pids.current");
    wait_for(
        "sh holding 20 MB and its sleep",
        Duration::from_secs(20),
        || {
            memory_files(&state_dir).0 >= 20_000_000
                && read_u64(&pids_dir.join("pids.current")) == 2
        },
    );
    let s = sample_runtime_container(&ctx.root, &id)
        .unwrap()
        .expect("a running container gives a sample");
    let (usage, inactive, file_limit) = memory_files(&state_dir);
    assert_eq!(file_limit, limit);
    assert_eq!(s.memory_limit, limit);
    // Docker's figure: usage less inactive file; both read moments apart, so within 1 MiB.
    let want = usage - inactive.min(usage);
    assert!(
        s.memory_usage.abs_diff(want) < 1 << 20,
        "sample {} against cgroup files {want}",
        s.memory_usage
    );
    assert!(s.memory_usage >= 20_000_000, "{s:?}");
    assert_eq!(s.pids, read_u64(&pids_dir.join("pids.current")));
    assert_eq!(s.pids, 2, "sh and sleep");
    // Block I/O: the Read and Write bytes of every device, from the throttle counters (v1)
    // or io.stat (v2).
    let (mut read, mut write) = (0u64, 0u64);
    if let Some(dir) = find_cgroup_dir(&state_dir, "blkio.throttle.io_service_bytes_recursive") {
        let text =
            std::fs::read_to_string(dir.join("blkio.throttle.io_service_bytes_recursive")).unwrap();
        for l in text.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [_, "Read", n] => read += n.parse::<u64>().unwrap(),
                [_, "Write", n] => write += n.parse::<u64>().unwrap(),
                _ => {}
            }
        }
    } else if let Some(dir) = find_cgroup_dir(&state_dir, "io.stat") {
        for kv in std::fs::read_to_string(dir.join("io.stat"))
            .unwrap()
            .split_whitespace()
        {
            match kv.split_once('=') {
                Some(("rbytes", n)) => read += n.parse::<u64>().unwrap(),
                Some(("wbytes", n)) => write += n.parse::<u64>().unwrap(),
                _ => {}
            }
        }
    }
    assert_eq!((s.block_read, s.block_write), (read, write));
    // The container has its own network namespace with only lo: nothing counted.
    assert_eq!((s.net_rx, s.net_tx), (0, 0));
    assert!(s.online_cpus >= 1);
    assert!((s.memory_percent() - s.memory_usage as f64 / limit as f64 * 100.0).abs() < 1e-9);
}

#[test]
fn stats_without_a_limit_show_the_hosts_memory_and_a_busy_cpu() {
    if common::skip() {
        return;
    }
    let ctx = Ctx::new("present-cpu");
    let b = ctx.sh_bundle("while :; do :; done");
    let id = ctx.id("busy");
    ctx.run_detached(&b, &id);
    let first = sample_runtime_container(&ctx.root, &id).unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let second = sample_runtime_container(&ctx.root, &id).unwrap().unwrap();
    assert_eq!(second.memory_limit, host_memory());
    assert!(second.cpu_total_ns > first.cpu_total_ns);
    let cpu = cpu_percent(&first, &second);
    // One shell spinning: about 100% of one CPU, less when the shared machine is busy.
    assert!(
        cpu > 20.0 && cpu <= 100.0 * second.online_cpus as f64 + 1.0,
        "{cpu}% ({first:?} -> {second:?})"
    );
    // A stopped container gives no sample.
    ctx.rt(&["kill", &id, "KILL"]).ok();
    ctx.wait_status(&id, "stopped");
    assert_eq!(sample_runtime_container(&ctx.root, &id).unwrap(), None);
}

#[test]
fn top_shows_exactly_the_containers_processes() {
    if common::skip() {
        return;
    }
    let ctx = Ctx::new("present-top");
    let b = ctx.sh_bundle("sleep 1000 & sleep 1001 & wait");
    let id = ctx.id("top");
    ctx.run_detached(&b, &id);
    let g = berth::runtime::container::Globals::at(ctx.root.clone());
    let procs_dir = cgroup_dir_with(&ctx.state_dir(&id), "cgroup.procs");
    wait_for("three processes", Duration::from_secs(10), || {
        std::fs::read_to_string(procs_dir.join("cgroup.procs"))
            .unwrap()
            .lines()
            .count()
            == 3
    });
    let pids = berth::runtime::container::pids(&g, &id).unwrap();
    let top = berth::engine::top::top(&pids, "").unwrap();
    assert_eq!(
        top.titles,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    let mut shown: Vec<i32> = top
        .processes
        .iter()
        .map(|p| p[1].parse().unwrap())
        .collect();
    shown.sort();
    let mut want: Vec<i32> = std::fs::read_to_string(procs_dir.join("cgroup.procs"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    want.sort();
    assert_eq!(shown, want);
    let cmds: Vec<&str> = top.processes.iter().map(|p| p[7].as_str()).collect();
    assert!(
        cmds.contains(&"sleep 1000") && cmds.contains(&"sleep 1001"),
        "{cmds:?}"
    );
    // Each line is the host's ps line for that pid.
    let table = berth::engine::top::format_top(&top);
    assert!(
        table.starts_with("UID                 PID                 PPID"),
        "{table}"
    );
}

// ---- berth container ... ----

/// A scratch data root with the busybox image, and the containers to remove at the end.
struct Engine {
    s: Scratch,
}

impl Engine {
    fn new(name: &str) -> Engine {
        let s = Scratch::new(&format!("present-{name}"));
        let store = s.store();
        make_image(&store, "busybox:latest", &[busybox_tar(&s)], cmd(&["sh"]));
        Engine { s }
    }

    fn berth(&self, args: &[&str]) -> std::process::Output {
        self.s.berth(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.s.berth_ok(args)
    }

    fn run_d(&self, name: &str, script: &str) -> String {
        self.ok(&[
            "container",
            "run",
            "-d",
            "--name",
            name,
            "-e",
            "GREETING=hello",
            "busybox",
            "sh",
            "-c",
            script,
        ])
        .trim()
        .to_string()
    }

    fn runtime_dir(&self, id: &str) -> PathBuf {
        self.s.dir.join("run").join(id)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Ok(out) = self
            .s
            .command(&["container", "ls", "-aq", "--no-trunc"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = self.s.command(&["container", "rm", "-f", id]).output();
            }
        }
    }
}

/// A table line's cells: they are at least three spaces apart.
fn columns(line: &str) -> Vec<&str> {
    line.split("   ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn container_stats_table_and_json_match_the_cgroup() {
    if common::skip() {
        return;
    }
    let e = Engine::new("stats");
    let id = e.run_d("hog", MEM_HOG);
    let state_dir = e.runtime_dir(&id);
    wait_for("the shell to hold 20 MB", Duration::from_secs(20), || {
        find_cgroup_dir(&state_dir, "pids.current").is_some_and(|d| {
            memory_files(&state_dir).0 >= 20_000_000 && read_u64(&d.join("pids.current")) == 2
        })
    });

    let table = e.ok(&["container", "stats", "--no-stream"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        columns(lines[0]),
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ],
        "{table}"
    );
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[1].starts_with(&id[..12]), "{table}");
    assert!(lines[1].contains(" hog "), "{table}");

    let json_line = e.ok(&["stats", "--no-stream", "--format", "json", "hog"]);
    let row: Value = serde_json::from_str(json_line.trim()).unwrap();
    assert_eq!(row["Container"], "hog");
    assert_eq!(row["Name"], "hog");
    assert_eq!(row["ID"], &id[..12]);
    assert_eq!(row["PIDs"], "2");
    // On the default network: eth0's bytes (a few hundred received from the bridge at
    // most), in go-units' form.
    let net = row["NetIO"].as_str().unwrap();
    let (rx, tx) = net.split_once(" / ").unwrap();
    for v in [rx, tx] {
        let num = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        assert!(
            v.ends_with('B') && num.parse::<f64>().is_ok(),
            "NetIO {net}"
        );
    }
    // No -m: the limit is the host's memory, printed as go-units' BytesSize.
    let mem = row["MemUsage"].as_str().unwrap();
    let (used, limit) = mem.split_once(" / ").unwrap();
    assert_eq!(limit, bytes_size(host_memory() as f64));
    let (usage, inactive, _) = memory_files(&state_dir);
    let want = (usage - inactive.min(usage)) as f64;
    let used_mib: f64 = used
        .trim_end_matches("MiB")
        .parse()
        .unwrap_or_else(|_| panic!("{mem}"));
    assert!(
        (used_mib * 1048576.0 - want).abs() < 2.0 * 1048576.0,
        "{mem} against {want} bytes from the cgroup files"
    );
    assert!(row["CPUPerc"].as_str().unwrap().ends_with('%'));

    let custom = e.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}: {{.PIDs}}",
        "hog",
    ]);
    assert_eq!(custom, "hog: 2\n");
    let custom = e.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "table {{.Name}}\\t{{.PIDs}}",
        "hog",
    ]);
    assert_eq!(custom, "NAME      PIDS\nhog       2\n");

    let (_, err) = text(&e.berth(&["stats", "--no-stream", "nosuch"]));
    assert!(err.contains("No such container: nosuch"), "{err}");
    let out = e.berth(&["stats", "--no-stream", "--format", "{{.Nope}}", "hog"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains(
            "failed to execute template: template: executing \"\": can't evaluate field Nope"
        ),
        "{}",
        text(&out).1
    );
    let out = e.berth(&["stats", "--no-stream", "--format", "{{.Name", "hog"]);
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("template parsing error: template: :1: unclosed action"),
        "{}",
        text(&out).1
    );
}

#[test]
fn container_stats_streams_with_a_cleared_screen() {
    if common::skip() {
        return;
    }
    let e = Engine::new("stream");
    e.run_d("sleeper", "sleep 1000");
    let mut child =
        e.s.command(&["container", "stats", "sleeper"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match stdout.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if String::from_utf8_lossy(&buf)
                .matches("\x1b[2J\x1b[H")
                .count()
                >= 3
            {
                break;
            }
        }
        buf
    });
    let buf = reader.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let out = String::from_utf8_lossy(&buf);
    let frames: Vec<&str> = out
        .split("\x1b[2J\x1b[H")
        .filter(|f| !f.is_empty())
        .collect();
    assert!(frames.len() >= 3, "{out:?}");
    for f in &frames[..3] {
        assert!(f.starts_with("CONTAINER ID   NAME"), "{f:?}");
        assert!(f.contains("sleeper"), "{f:?}");
    }
}

#[test]
fn container_top_runs_ps_on_the_containers_processes() {
    if common::skip() {
        return;
    }
    let e = Engine::new("top");
    let id = e.run_d("tops", "sleep 1000 & sleep 1001 & wait");
    let procs_dir = cgroup_dir_with(&e.runtime_dir(&id), "cgroup.procs");
    wait_for("three processes", Duration::from_secs(10), || {
        std::fs::read_to_string(procs_dir.join("cgroup.procs"))
            .unwrap()
            .lines()
            .count()
            == 3
    });
    let mut want: Vec<String> = std::fs::read_to_string(procs_dir.join("cgroup.procs"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    want.sort();

    let out = e.ok(&["container", "top", "tops"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("UID                 PID"), "{out}");
    let mut pids: Vec<String> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    pids.sort();
    assert_eq!(pids, want, "{out}");
    assert!(out.contains("sleep 1001"), "{out}");

    // ps options, through the top-level alias.
    let out = e.ok(&["top", "tops", "-o", "pid,comm"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.ends_with("sh") || l.ends_with("sleep")),
        "{out}"
    );

    let out = e.berth(&["top", "tops", "-o", "user=PID"]);
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("specifying \"user=PID\" is not allowed"),
        "{:?}",
        text(&out)
    );

    e.ok(&["container", "kill", "tops"]);
    wait_for("the container to exit", Duration::from_secs(10), || {
        e.ok(&["inspect", "-f", "{{.State.Status}}", "tops"]).trim() == "exited"
    });
    let out = e.berth(&["container", "top", "tops"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains(&format!("container {id} is not running")),
        "{:?}",
        text(&out)
    );
}

#[test]
fn ps_and_inspect_formats() {
    if common::skip() {
        return;
    }
    let e = Engine::new("format");
    let id = e.run_d("web", "head -c 1000 /dev/zero > /payload; sleep 1000");
    let state_dir = e.runtime_dir(&id);
    wait_for("the container's state", Duration::from_secs(10), || {
        state_dir.join("state.json").exists()
    });

    // A template per row.
    let out = e.ok(&[
        "container",
        "ls",
        "--format",
        "{{.Names}}|{{.Status}}|{{.State}}",
    ]);
    let fields: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(fields[0], "web");
    assert!(fields[1].starts_with("Up "), "{out}");
    assert_eq!(fields[2], "running");
    // A table of chosen columns, laid out as Docker's tabwriter does.
    let out = e.ok(&[
        "container",
        "ps",
        "--format",
        "table {{.ID}}\\t{{.Names}}\\t{{upper .State}}",
    ]);
    assert_eq!(
        out,
        format!(
            "CONTAINER ID   NAMES     STATE\n{}   web       RUNNING\n",
            &id[..12]
        )
    );
    // The default table has Docker's columns.
    let out = e.ok(&["container", "ls"]);
    let header = out.lines().next().unwrap();
    assert_eq!(
        columns(header),
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ]
    );
    // json: one object a line with Docker's field names.
    let out = e.ok(&["container", "ls", "--format", "json"]);
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["Names"], "web");
    assert_eq!(row["ID"], &id[..12]);
    assert_eq!(row["Command"], "\"sh -c 'head -c 1000…\"");

    // -s: the writable layer's size against find(1)'s count of its files.
    wait_for("the payload", Duration::from_secs(10), || {
        let out = e.ok(&["container", "ls", "-s", "--format", "{{.Size}}"]);
        out.starts_with("1kB") || out.starts_with("1.")
    });
    let upper =
        e.s.data_root()
            .join("containers")
            .join(&id)
            .join("bundle/.berth/upper");
    let find = Command::new("find")
        .arg(&upper)
        .args(["!", "-type", "d", "-printf", "%s\\n"])
        .output()
        .unwrap();
    let rw: u64 = String::from_utf8_lossy(&find.stdout)
        .lines()
        .map(|l| l.parse::<u64>().unwrap())
        .sum();
    let out = e.ok(&["container", "ls", "-s", "--format", "{{.Size}}"]);
    let want_rw = berth::engine::humanize::human_size_with_precision(rw as f64, 3);
    assert!(
        out.starts_with(&format!("{want_rw} (virtual ")),
        "{out} against {rw} bytes"
    );
    let out = e.ok(&["container", "ls", "-s"]);
    assert!(out.lines().next().unwrap().ends_with("SIZE"), "{out}");

    // inspect -f: Go templates on the inspect document.
    let pid: i32 = serde_json::from_str::<Value>(
        &std::fs::read_to_string(state_dir.join("state.json")).unwrap(),
    )
    .unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    let out = e.ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Pid}} {{.Name}} {{json .Config.Cmd}} {{.Config.Cmd}} {{if .State.Running}}up{{end}}",
        "web",
    ]);
    assert_eq!(
        out,
        format!(
            "running {pid} /web [\"sh\",\"-c\",\"head -c 1000 /dev/zero > /payload; sleep 1000\"] [sh -c head -c 1000 /dev/zero > /payload; sleep 1000] up\n"
        )
    );
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let out = e.ok(&[
        "container",
        "inspect",
        "--format",
        "{{range .Config.Env}}{{println .}}{{end}}",
        "web",
    ]);
    assert_eq!(
        out, "GREETING=hello\n\n",
        "the image's (none) and the user's: {out}"
    );
    let out = e.ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"nope\"}}|{{len .Config.Cmd}}",
        "web",
    ]);
    assert_eq!(out, "|3\n");
    // A bad template: Docker's words and exit code 64, before anything is printed.
    let out = e.berth(&["inspect", "-f", "{{.State.Status", "web"]);
    assert_eq!(out.status.code(), Some(64));
    let (stdout, stderr) = text(&out);
    assert!(stdout.is_empty());
    assert!(stderr.starts_with("template parsing error: "), "{stderr}");
    let out = e.berth(&["container", "ps", "--format", "{{.Nope}}"]);
    assert!(!out.status.success());
    assert!(
        text(&out).1.contains(
            "failed to execute template: template: executing \"\": can't evaluate field Nope"
        ),
        "{:?}",
        text(&out)
    );
}

// ---- against Docker ----

/// The same containers under Docker and under berth, and the same templates, tables and
/// wording printed by both.
#[test]
fn formats_and_wording_match_dockers() {
    if common::skip() {
        return;
    }
    let Some(docker) =
        engine_support::Dockerd::start().map(engine_support::Dockerd::with_client_in_path)
    else {
        return;
    };
    let e = Engine::new("vs-docker");
    let tar = e.s.path("busybox.tar");
    std::fs::write(&tar, busybox_tar(&e.s)).unwrap();
    docker.docker_ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        tar.to_str().unwrap(),
        "busybox:latest",
    ]);
    let web = [
        "-l",
        "b=2",
        "-l",
        "a=1",
        "busybox",
        "sh",
        "-c",
        "head -c 1000 /dev/zero > /payload; sleep 1000",
    ];
    let ex = ["busybox", "sh", "-c", "exit 3"];
    let mut args = vec!["run", "-d", "--network", "none", "--name", "web"];
    args.extend(web);
    docker.docker_ok(&args);
    // Both on `none`: the test's dockerd has no bridge (berth's default is its bridge).
    let mut args = vec![
        "container",
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "web",
    ];
    args.extend(web);
    e.ok(&args);
    let mut args = vec!["run", "--network", "none", "--name", "ex"];
    args.extend(ex);
    let _ = docker.output(&args);
    let mut args = vec!["container", "run", "--network", "none", "--name", "ex"];
    args.extend(ex);
    let _ = e.berth(&args);
    wait_for("both payloads", Duration::from_secs(20), || {
        docker
            .docker_ok(&["ps", "-s", "--format", "{{.Size}}"])
            .starts_with("1kB")
            && e.ok(&["container", "ps", "-s", "--format", "{{.Size}}"])
                .starts_with("1kB")
    });

    let mut differences = Vec::new();
    let mut compare = |what: String, d: String, b: String| {
        if d != b {
            differences.push(format!("{what}\n  docker: {d:?}\n  berth:  {b:?}"));
        }
    };
    for t in [
        "{{.State.Status}} {{.State.Running}} {{.State.Paused}} {{.State.ExitCode}} {{.State.OOMKilled}}",
        "{{.Name}} {{.RestartCount}} {{.HostConfig.NetworkMode}} {{.Config.Tty}} {{.Config.OpenStdin}}",
        "{{.State.Health}} {{if .State.Health}}health{{else}}no health{{end}}",
        "{{index .Config.Labels \"a\"}}|{{index .Config.Labels \"zz\"}}|{{.Config.Labels.a}}",
        "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}",
        "{{json .Config.Labels}} {{.Config.Labels}} {{len .Config.Labels}}",
        "{{.Config.Cmd}} {{json .Config.Cmd}} {{join .Config.Cmd \",\"}}",
        "{{range .Config.Cmd}}{{.}} {{else}}none{{end}}|{{range .Mounts}}x{{else}}no mounts{{end}}",
        "{{if .State.Running}}up{{else}}down{{end}} {{upper .State.Status}} {{title \"hello world\"}} {{lower \"ABC\"}}",
        "{{pad .State.Status 1 1}}|{{truncate .Name 3}}|{{split .Name \"/\"}}",
        "{{println .Name}}{{printf \"%s-%v\" .Name .State.Running}} {{print .State.ExitCode .RestartCount}}",
    ] {
        for c in ["web", "ex"] {
            let d = docker.docker_ok(&["inspect", "-f", t, c]);
            let b = e.ok(&["inspect", "-f", t, c]);
            compare(format!("inspect -f {t:?} {c}"), d, b);
        }
    }
    for f in [
        "{{.Names}}|{{.Image}}|{{.Command}}|{{.State}}|{{.Labels}}|{{.Networks}}|{{.Mounts}}|{{.LocalVolumes}}|{{.Ports}}",
        "{{.Status}}",
        "{{.Size}}",
        "table {{.Names}}\\t{{.Command}}\\t{{.Size}}",
    ] {
        let d = docker.docker_ok(&["ps", "-a", "-s", "--format", f]);
        let b = e.ok(&["container", "ps", "-a", "-s", "--format", f]);
        // "Up 2 seconds" against "Up 1 second": the two started moments apart.
        let settle = |s: String| {
            s.lines()
                .map(|l| {
                    if f == "{{.Status}}" {
                        l.split(' ').take(1).collect::<Vec<_>>().join(" ")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        compare(format!("ps -a -s --format {f:?}"), settle(d), settle(b));
    }
    let keys = |line: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(line).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    };
    compare(
        "ps --format json keys".into(),
        format!(
            "{:?}",
            keys(docker.docker_ok(&["ps", "--format", "json"]).trim())
        ),
        format!(
            "{:?}",
            keys(e.ok(&["container", "ps", "--format", "json"]).trim())
        ),
    );
    // The Exited wording, to the word before the duration.
    let exited = |s: String| s.split(' ').take(2).collect::<Vec<_>>().join(" ");
    compare(
        "ps STATUS of an exited container".into(),
        exited(docker.docker_ok(&["ps", "-a", "--filter", "name=ex", "--format", "{{.Status}}"])),
        exited(e.ok(&[
            "container",
            "ps",
            "-a",
            "--filter",
            "name=ex",
            "--format",
            "{{.Status}}",
        ])),
    );

    let d = docker.docker_ok(&["stats", "--no-stream", "--format", "json", "web"]);
    let b = e.ok(&["stats", "--no-stream", "--format", "json", "web"]);
    compare(
        "stats json keys".into(),
        format!("{:?}", keys(d.trim())),
        format!("{:?}", keys(b.trim())),
    );
    let same_fields = |s: &str| {
        let v: Value = serde_json::from_str(s.trim()).unwrap();
        let limit = v["MemUsage"]
            .as_str()
            .unwrap()
            .split(" / ")
            .nth(1)
            .unwrap()
            .to_string();
        (
            v["Container"].clone(),
            v["Name"].clone(),
            v["NetIO"].clone(),
            v["PIDs"].clone(),
            limit,
        )
    };
    compare(
        "stats fields".into(),
        format!("{:?}", same_fields(&d)),
        format!("{:?}", same_fields(&b)),
    );
    let header = |s: String| s.lines().next().unwrap_or("").to_string();
    compare(
        "stats header".into(),
        header(docker.docker_ok(&["stats", "--no-stream", "web"])),
        header(e.ok(&["stats", "--no-stream", "web"])),
    );
    let no_pid = |s: String| {
        s.lines()
            .map(|l| {
                columns(l)
                    .into_iter()
                    .filter(|c| c.parse::<u32>().is_err())
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    compare(
        "top -o pid,comm".into(),
        no_pid(docker.docker_ok(&["top", "web", "-o", "pid,comm"])),
        no_pid(e.ok(&["top", "web", "-o", "pid,comm"])),
    );
    compare(
        "top header".into(),
        header(docker.docker_ok(&["top", "web"])),
        header(e.ok(&["top", "web"])),
    );
    docker.docker_ok(&["pause", "web"]);
    e.ok(&["container", "pause", "web"]);
    let paused = |s: String| s.trim().rsplit(' ').next().unwrap_or("").to_string();
    compare(
        "ps STATUS of a paused container".into(),
        paused(docker.docker_ok(&["ps", "--filter", "name=web", "--format", "{{.Status}}"])),
        paused(e.ok(&[
            "container",
            "ps",
            "--filter",
            "name=web",
            "--format",
            "{{.Status}}",
        ])),
    );
    docker.docker_ok(&["unpause", "web"]);
    e.ok(&["container", "unpause", "web"]);
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
