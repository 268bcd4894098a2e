//! Resource control on this host (cgroup v1 controllers plus an empty cgroup2: "hybrid"):
//! `linux.resources` read back from the cgroup files and checked by effect, `update`, `pause`,
//! `resume`, `ps`, `events`, `kill --all`, and no cgroup left behind. cgroup v2 is tested in a
//! VM (tests/cgroup_v2_vm.rs).
mod common;
use common::*;
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const V1: &str = "/sys/fs/cgroup";

fn v1_host() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

fn skip_v1() -> bool {
    if skip() {
        return true;
    }
    if !v1_host() {
        eprintln!("SKIPPED: no cgroup v1 memory controller on this host");
        return true;
    }
    false
}

/// The container's directory in one v1 hierarchy, for `linux.cgroupsPath` = `path`.
fn cg(controller: &str, path: &str) -> PathBuf {
    Path::new(V1)
        .join(controller)
        .join(path.trim_start_matches('/'))
}

fn read(p: PathBuf) -> String {
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// A bundle running `sleep 1000` in the cgroup `/berth-test/<ctx>/<suffix>`.
fn sleeper_in(ctx: &Ctx, suffix: &str, resources: serde_json::Value) -> (Bundle, String) {
    let path = format!("/berth-test/{}/{suffix}", ctx.marker);
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.config["linux"]["cgroupsPath"] = json!(path);
    b.config["linux"]["resources"] = resources;
    (b, path)
}

fn assert_cgroup_gone(path: &str) {
    for c in [
        "memory", "cpu", "pids", "freezer", "devices", "blkio", "cpuset", "systemd", "unified",
    ] {
        let dir = cg(c, path);
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}

/// Removes the per-test parent directories under /berth-test (berth removes only what it
/// created, and a parent it created while a sibling still used it stays).
fn remove_test_parents(ctx: &Ctx) {
    for c in [
        "memory", "cpu", "cpuacct", "pids", "freezer", "devices", "blkio", "cpuset", "systemd",
        "unified",
    ] {
        let _ = fs::remove_dir(Path::new(V1).join(c).join("berth-test").join(&ctx.marker));
        // Shared by the tests running in parallel: whichever finishes last removes it.
        let _ = fs::remove_dir(Path::new(V1).join(c).join("berth-test"));
    }
}

#[test]
fn resources_are_written_to_the_v1_controllers() {
    if skip_v1() {
        return;
    }
    let ctx = Ctx::new("cgres");
    let resources = json!({
        "memory": {"limit": 67108864, "reservation": 33554432, "swappiness": 10, "disableOOMKiller": false},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 42},
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        ],
    });
    let (b, path) = sleeper_in(&ctx, "c", resources);
    let (id, pid) = ctx.sleeper_from(&b, "res");
    assert_eq!(
        read(cg("memory", &path).join("memory.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(
        read(cg("memory", &path).join("memory.soft_limit_in_bytes")),
        "33554432"
    );
    assert_eq!(read(cg("memory", &path).join("memory.swappiness")), "10");
    assert_eq!(read(cg("cpu", &path).join("cpu.shares")), "512");
    assert_eq!(read(cg("cpu", &path).join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(cg("cpu", &path).join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(cg("cpuset", &path).join("cpuset.cpus")), "0");
    assert_eq!(read(cg("cpuset", &path).join("cpuset.mems")), "0");
    assert_eq!(read(cg("pids", &path).join("pids.max")), "42");
    let devices = read(cg("devices", &path).join("devices.list"));
    assert!(devices.lines().any(|l| l == "c 1:3 rwm"), "{devices}");
    assert!(
        !devices.lines().any(|l| l == "a *:* rwm"),
        "deny-all was not applied: {devices}"
    );
    // The init is in the cgroup of every hierarchy.
    let own = read(PathBuf::from(format!("/proc/{pid}/cgroup")));
    for c in ["memory", "cpu", "pids", "devices"] {
        assert!(
            own.lines().any(|l| l.contains(c) && l.ends_with(&path)),
            "{c} missing in {own}"
        );
    }
    // Seen from inside, through the container's cgroup mount.
    let inside = ctx
        .rt(&[
            "exec",
            &id,
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ])
        .ok();
    assert_eq!(inside.stdout.trim(), "67108864");
    ctx.rt(&["delete", "--force", &id]).ok();
    assert_cgroup_gone(&path);
    remove_test_parents(&ctx);
}

#[test]
fn a_pids_limit_stops_a_fork_bomb() {
    if skip_v1() {
        return;
    }
    let ctx = Ctx::new("cgpids");
    let path = format!("/berth-test/{}/p", ctx.marker);
    let mut b = ctx.bundle();
    b.config["linux"]["cgroupsPath"] = json!(path);
    b.config["linux"]["resources"] = json!({"pids": {"limit": 8}});
    // The forks run in a subshell, which dies at the first refused fork (ash gives up); after
    // it only shell builtins run, since at the limit even a command substitution cannot fork.
    b.sh("(for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 30 & done) 2>/dev/null; \
          read c < /sys/fs/cgroup/pids/pids.current; echo current=$c; kill -9 -1 2>/dev/null; exit 0");
    let out = ctx.run_ok(&b);
    let current: u32 = out
        .trim()
        .trim_start_matches("current=")
        .parse()
        .unwrap_or_else(|_| panic!("{out}"));
    assert!(current <= 8, "pids.current {current} is above the limit");
    assert!(
        current >= 7,
        "the forks stopped before the limit: {current}"
    );
    assert_cgroup_gone(&path);
    remove_test_parents(&ctx);
}

#[test]
fn a_memory_limit_oom_kills_and_events_report_it() {
    if skip_v1() {
        return;
    }
    let ctx = Ctx::new("cgoom");
    let path = format!("/berth-test/{}/m", ctx.marker);
    let mut b = ctx.bundle();
    b.config["linux"]["cgroupsPath"] = json!(path);
    b.config["linux"]["resources"] = json!({"memory": {"limit": 33554432, "swap": 33554432}});
    // The shell waits for `events` to start, then a pipeline holds 200 MiB and is OOM-killed;
    // the shell itself lives on.
    b.sh("while [ ! -e /dev/shm/go ]; do sleep 0.05; done; head -c 200m /dev/zero | tail > /dev/null; echo survived; sleep 1000");
    let id = ctx.id("oom");
    ctx.create(&b, &id);
    ctx.start(&id);
    let mut events = ctx.rt_bg(&["events", "--interval", "1s", &id]);
    // Its first stats event says `events` is up and has counted the OOM kills so far: only
    // then is the OOM set off (on a loaded machine a fixed pause was not always enough).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !events.stdout_so_far().contains("\"stats\"") {
        assert!(
            Instant::now() < deadline && !events.exited(),
            "events printed no stats event: {}; stderr: {}; container: {}",
            events.stdout_so_far(),
            events.stderr_so_far(),
            ctx.status(&id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ctx.rt(&["exec", &id, "touch", "/dev/shm/go"]).ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !events.stdout_so_far().contains("\"oom\"") {
        assert!(
            Instant::now() < deadline,
            "no oom event; events printed: {}; stderr: {}; exited: {}; container: {}",
            events.stdout_so_far(),
            events.stderr_so_far(),
            events.exited(),
            ctx.status(&id)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let oom_line = events
        .stdout_so_far()
        .lines()
        .find(|l| l.contains("\"oom\""))
        .unwrap()
        .to_string();
    let ev: serde_json::Value = serde_json::from_str(&oom_line).unwrap();
    assert_eq!(ev["type"], "oom");
    assert_eq!(ev["id"], id.as_str());
    let oom_control = read(cg("memory", &path).join("memory.oom_control"));
    assert!(
        oom_control
            .lines()
            .any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"),
        "{oom_control}"
    );
    ctx.rt(&["kill", &id, "KILL"]).ok();
    let out = events.wait(Duration::from_secs(10));
    assert!(
        out.success(),
        "events did not end cleanly once the container stopped: {out}"
    );
    ctx.delete(&id);
    assert_cgroup_gone(&path);
    remove_test_parents(&ctx);
}

#[test]
fn a_denied_device_cannot_be_opened() {
    if skip_v1() {
        return;
    }
    let ctx = Ctx::new("cgdev");
    let mut b = ctx.bundle();
    // /dev/kmsg (c 1:11) exists in the container but the cgroup denies it; the default
    // devices (null, zero, urandom, ...) stay allowed whatever the config says, as with runc.
    b.config["linux"]["devices"] =
        json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 438}]);
    b.config["linux"]["resources"] = json!({"devices": [
        {"allow": true, "access": "rwm"},
        {"allow": false, "type": "c", "major": 1, "minor": 11, "access": "rw"},
    ]});
    b.sh("dd if=/dev/kmsg of=/dev/null count=0 2>/dev/shm/err; echo kmsg=$?; grep -c 'not permitted' /dev/shm/err; \
          dd if=/dev/urandom of=/dev/null count=1 2>/dev/null; echo urandom=$?");
    let out = ctx.run_ok(&b);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["kmsg=1", "1", "urandom=0"],
        "{out}"
    );
}

#[test]
fn update_changes_a_live_container() {
    if skip_v1() {
        return;
    }
    let ctx = Ctx::new("cgupdate");
    let (b, path) = sleeper_in(
        &ctx,
        "u",
        json!({"memory": {"limit": 67108864}, "cpu": {"shares": 512}, "pids": {"limit": 40}}),
    );
    let (id, _) = ctx.sleeper_from(&b, "u");
    ctx.rt(&[
        "update",
        "--memory",
        "100m",
        "--pids-limit",
        "30",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        &id,
    ])
    .ok();
    assert_eq!(
        read(cg("memory", &path).join("memory.limit_in_bytes")),
        (100u64 << 20).to_string()
    );
    assert_eq!(read(cg("pids", &path).join("pids.max")), "30");
    assert_eq!(read(cg("cpu", &path).join("cpu.cfs_quota_us")), "20000");
    // What Docker sends: a whole resources object where 0 means "leave unchanged", with the
    // kernel memory field that newer kernels no longer have.
    let file = ctx.tmp.join("update.json");
    fs::write(&file, r#"{"memory":{"limit":0,"reservation":0,"kernel":0,"kernelTCP":0,"swap":0},"cpu":{"shares":1024,"quota":0,"period":0},"pids":{"limit":0},"blockIO":{"weight":0}}"#).unwrap();
    ctx.rt(&["update", "--resources", file.to_str().unwrap(), &id])
        .ok();
    assert_eq!(read(cg("cpu", &path).join("cpu.shares")), "1024");
    assert_eq!(
        read(cg("memory", &path).join("memory.limit_in_bytes")),
        (100u64 << 20).to_string()
    );
    assert_eq!(read(cg("pids", &path).join("pids.max")), "30");
    let bad = ctx.rt(&["update", "--memory", "lots", &id]).fails();
    assert!(bad.stderr.contains("--memory"), "{bad}");
    ctx.rt(&["delete", "--force", &id]).ok();
    assert_cgroup_gone(&path);
    remove_test_parents(&ctx);
}

#[test]
fn pause_and_resume_freeze_the_container() {
    if skip_v1() {
        return;
    }
    let ctx = Ctx::new("cgpause");
    let (b, path) = sleeper_in(&ctx, "f", json!({}));
    let (id, pid) = ctx.sleeper_from(&b, "f");
    ctx.rt(&["pause", &id]).ok();
    assert_eq!(ctx.status(&id), "paused");
    assert_eq!(read(cg("freezer", &path).join("freezer.state")), "FROZEN");
    let proc_state = read(PathBuf::from(format!("/proc/{pid}/stat")));
    assert!(
        proc_state.contains(") D") || proc_state.contains(") S"),
        "{proc_state}"
    );
    // A paused container cannot be paused again or exec'd into.
    assert!(!ctx.rt(&["pause", &id]).success());
    ctx.rt(&["resume", &id]).ok();
    assert_eq!(ctx.status(&id), "running");
    assert_eq!(read(cg("freezer", &path).join("freezer.state")), "THAWED");
    assert!(
        !ctx.rt(&["resume", &id]).success(),
        "resume of a running container succeeded"
    );
    // A paused container is killed and deleted with --force.
    ctx.rt(&["pause", &id]).ok();
    ctx.rt(&["delete", "--force", &id]).ok();
    ctx.assert_gone(&id, pid);
    assert_cgroup_gone(&path);
    remove_test_parents(&ctx);
}

#[test]
fn ps_lists_the_container_processes() {
    if skip_v1() {
        return;
    }
    let ctx = Ctx::new("cgps");
    let mut b = ctx.bundle();
    b.sh("sleep 1001 & sleep 1002 & wait");
    let (id, pid) = ctx.sleeper_from(&b, "ps");
    let deadline = Instant::now() + Duration::from_secs(10);
    let pids = loop {
        let out = ctx.rt(&["ps", "--format", "json", &id]).ok();
        let pids: Vec<i32> =
            serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
        if pids.len() == 3 || Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(pids.contains(&pid));
    let table = ctx.rt(&["ps", &id]).ok().stdout;
    assert!(
        table.lines().next().unwrap_or_default().contains("PID"),
        "{table}"
    );
    assert!(
        table.contains("sleep 1001") && table.contains("sleep 1002"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 4, "{table}");
    ctx.rt(&["delete", "--force", &id]).ok();
}

#[test]
fn events_stats_reports_memory_cpu_and_pids() {
    if skip_v1() {
        return;
    }
    let ctx = Ctx::new("cgstats");
    let (id, _) = ctx.sleeper("st");
    let out = ctx.rt(&["events", "--stats", &id]).ok();
    let ev: serde_json::Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], id.as_str());
    assert!(
        ev["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{ev}"
    );
    assert!(
        ev["data"]["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{ev}"
    );
    assert!(ev["data"]["cpu"]["usage"]["total"].is_u64(), "{ev}");
    ctx.rt(&["delete", "--force", &id]).ok();
}

#[test]
fn kill_all_and_delete_force_reach_every_process() {
    if skip_v1() {
        return;
    }
    let ctx = Ctx::new("cgkillall");
    // No pid namespace: killing the init would not take the others with it. (sh execs the
    // last command, so there are three processes.)
    let mut b = ctx.bundle();
    b.remove_namespace("pid");
    b.sh("sleep 1003 & sleep 1004 & sleep 1000");
    let (id, _) = ctx.sleeper_from(&b, "ka");
    let deadline = Instant::now() + Duration::from_secs(10);
    let pids = loop {
        let out = ctx.rt(&["ps", "--format", "json", &id]).ok();
        let pids: Vec<i32> = serde_json::from_str(out.stdout.trim()).unwrap();
        if pids.len() == 3 || Instant::now() > deadline {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pids.len(), 3, "{pids:?}");
    ctx.rt(&["kill", "--all", &id, "KILL"]).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| pid_alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "kill --all left processes: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    ctx.delete(&id);
}

#[test]
fn delete_force_cleans_up_after_the_init_was_killed_from_outside() {
    if skip_v1() {
        return;
    }
    let ctx = Ctx::new("cgcrash");
    let (b, path) = sleeper_in(&ctx, "x", json!({"pids": {"limit": 10}}));
    let (id, pid) = ctx.sleeper_from(&b, "x");
    host("kill", &["-9", &pid.to_string()]);
    ctx.wait_status(&id, "stopped");
    ctx.rt(&["delete", "--force", &id]).ok();
    assert_cgroup_gone(&path);
    assert!(!ctx.state_dir(&id).exists());
    remove_test_parents(&ctx);
}

#[test]
fn a_default_cgroup_lives_under_the_kept_berth_parent() {
    if skip_v1() || berth_only("the berth/ parent cgroup") {
        return;
    }
    let ctx = Ctx::new("cgparent");
    let (id, pid) = ctx.sleeper("p");
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = own
        .lines()
        .find(|l| l.split(':').nth(1) == Some("memory"))
        .unwrap_or_else(|| panic!("no memory line in {own}"));
    assert_eq!(
        line.rsplit(':').next(),
        Some(format!("/berth/{id}").as_str()),
        "{own}"
    );
    // Made once with clone_children, so that a new container's cpuset inherits cpus and mems.
    let parent = Path::new(V1).join("cpuset/berth");
    assert_eq!(read(parent.join("cgroup.clone_children")), "1");
    let cpus = read(parent.join("cpuset.cpus"));
    assert!(!cpus.is_empty());
    assert_eq!(read(parent.join(&id).join("cpuset.cpus")), cpus);
    ctx.rt(&["delete", "--force", &id]).ok();
    for c in [
        "memory", "cpu", "cpuset", "pids", "devices", "freezer", "systemd",
    ] {
        let leaf = Path::new(V1).join(c).join("berth").join(&id);
        assert!(!leaf.exists(), "{} is left behind", leaf.display());
        assert!(
            Path::new(V1).join(c).join("berth").is_dir(),
            "berth/ in {c} was removed"
        );
    }
}

/// Two containers given one `linux.cgroupsPath`: the second is created, as runc creates it, with
/// runc's warning that the cgroup already holds a process (the first's init); a cgroup of its
/// own gets no warning.
#[test]
fn a_cgroup_that_holds_processes_already_is_warned_about() {
    if skip_v1() {
        return;
    }
    let ctx = Ctx::new("cgshared");
    let (b, path) = sleeper_in(&ctx, "shared", json!({}));
    let first = ctx.id("first");
    let out = ctx.try_create(&b, &first).ok();
    assert!(
        !out.stderr.contains("cgroup is not empty"),
        "a new cgroup was warned about: {out}"
    );
    let second = ctx.id("second");
    let out = ctx.try_create(&b, &second).ok();
    assert!(
        out.stderr
            .contains("container's cgroup is not empty: 1 process(es) found"),
        "no warning for a cgroup holding the first container's init: {out}"
    );
    for id in [&second, &first] {
        ctx.rt(&["delete", "--force", id]).ok();
    }
    assert_cgroup_gone(&path);
    remove_test_parents(&ctx);
}
