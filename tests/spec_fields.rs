//! Runtime-spec 1.2/1.3 fields berth applies (issue 18, part A): process.ioPriority,
//! process.scheduler, process.execCPUAffinity, linux.personality, linux.memoryPolicy,
//! linux.netDevices, linux.intelRdt; and `features` listing them.
//!
//! Each is checked from inside the container (a static probe reading the attributes back with
//! ioprio_get, sched_getattr, get_mempolicy, personality and sched_getaffinity; `uname -m`;
//! `ip`) and from outside (/proc/PID/..., the host's chrt, ionice, ip), for the init and for
//! an `exec`. runc 1.1.5 (the one installed) predates all of them but intelRdt: it runs such a
//! config as if the fields were not there, which the differential test shows.
mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The probe (tests/spec_fields/probe.rs), compiled once per test binary as a static binary
/// into cargo's scratch directory for tests (built under another name, then renamed: another
/// run of this binary may be doing the same).
fn probe_binary() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join("spec-fields-probe");
        let building = dir.join(format!("spec-fields-probe.{}", std::process::id()));
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let st = Command::new(rustc)
            .args([
                "--edition",
                "2021",
                "-O",
                "-C",
                "target-feature=+crt-static",
                "-o",
            ])
            .arg(&building)
            .arg(repo_dir().join("tests/spec_fields/probe.rs"))
            .status()
            .expect("run rustc");
        assert!(st.success(), "rustc failed on the probe");
        std::fs::rename(&building, &out).unwrap();
        out
    })
}

/// A bundle whose rootfs holds the probe at /probe.
fn probe_bundle(ctx: &Ctx) -> Bundle {
    let b = ctx.bundle();
    std::fs::copy(probe_binary(), b.rootfs().join("probe")).unwrap();
    b
}

/// The probe's `key=value` words.
fn parse(out: &str) -> BTreeMap<String, String> {
    out.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn proc_field(pid: i32, file: &str, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/{file}:\n{text}"))
}

/// Where the kernel schedules real-time tasks by cgroup (CONFIG_RT_GROUP_SCHED, a cgroup v1
/// cpu hierarchy here), a real-time policy needs a budget in the container's cgroup, which
/// berth's own parent cgroup does not have: put the container right under the root, with one.
fn give_realtime_budget(ctx: &Ctx, b: &mut Bundle) -> String {
    let id = ctx.id("rt");
    if Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
        b.config["linux"]["cgroupsPath"] = json!(format!("/{id}"));
        b.config["linux"]["resources"]["cpu"] =
            json!({"realtimeRuntime": 10000, "realtimePeriod": 1000000});
    }
    id
}

fn spec13(what: &str) -> bool {
    berth_only(&format!(
        "{what}: a runtime-spec 1.2/1.3 field that runc 1.1 does not apply"
    ))
}

#[test]
fn io_priority_and_scheduler_for_init_and_exec() {
    if skip() || spec13("ioPriority, scheduler") {
        return;
    }
    let ctx = Ctx::new("sched");
    let mut b = probe_bundle(&ctx);
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 5});
    b.args(&["/probe", "sleep"]);
    let (id, pid) = ctx.sleeper_from(&b, "s");
    // Outside: the kernel's view of the container's init, and the host's tools.
    assert_eq!(proc_field(pid, "sched", "policy"), "3", "SCHED_BATCH");
    assert!(host("chrt", &["-p", &pid.to_string()]).contains("SCHED_BATCH"));
    assert_eq!(
        host("ionice", &["-p", &pid.to_string()]).trim(),
        "best-effort: prio 6"
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let nice = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(16)
        .unwrap();
    assert_eq!(nice, "5", "nice in /proc/{pid}/stat");
    // Inside: the init and an exec'd process read the same back.
    for out in [
        ctx.rt(&["exec", &id, "/probe"]).ok().stdout,
        ctx.rt(&["exec", &id, "sh", "-c", "ionice; cat /proc/self/sched"])
            .ok()
            .stdout,
    ] {
        if out.contains("ioprio=") {
            let p = parse(&out);
            assert_eq!(p["ioprio"], "2:6", "{out}");
            assert_eq!(p["sched"], "3", "{out}");
            assert_eq!(p["nice"], "5", "{out}");
        } else {
            assert!(out.starts_with("best-effort: prio 6"), "{out}");
        }
    }

    // An exec with a process of its own gets its own values (the spec's flag name again).
    let file = ctx.dir("proc").join("process.json");
    std::fs::write(
        &file,
        json!({"args": ["/probe"], "cwd": "/", "user": {"uid": 0, "gid": 0},
               "scheduler": {"policy": "SCHED_IDLE", "flags": ["SCHED_FLAG_RESET_ON_FORK"]},
               "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0},
               "execCPUAffinity": {"final": "0"}})
        .to_string(),
    )
    .unwrap();
    let out = ctx
        .rt(&["exec", "--process", file.to_str().unwrap(), &id])
        .ok()
        .stdout;
    let p = parse(&out);
    assert_eq!(
        (
            p["sched"].as_str(),
            p["flags"].as_str(),
            p["ioprio"].as_str(),
            p["cpus"].as_str()
        ),
        ("5", "1", "3:0", "0"),
        "{out}"
    );

    // Real-time: the I/O class and a FIFO policy with its priority.
    let mut b = probe_bundle(&ctx);
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_RT", "priority": 2});
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_FIFO", "priority": 10});
    b.args(&["/probe"]);
    let id = give_realtime_budget(&ctx, &mut b);
    let out = ctx.run(&b, &id);
    assert_eq!(out.code(), 0, "{out}");
    let p = parse(&out.stdout);
    assert_eq!(p["ioprio"], "1:2");
    assert_eq!((p["sched"].as_str(), p["prio"].as_str()), ("1", "10"));

    // SCHED_IDLE with reset-on-fork, by the spec's name (oci-spec 0.10 knows it by another):
    // the container's program keeps it, as berth forks no more after setting it.
    let mut b = probe_bundle(&ctx);
    b.config["process"]["scheduler"] =
        json!({"policy": "SCHED_IDLE", "flags": ["SCHED_FLAG_RESET_ON_FORK"]});
    b.sh("exec /probe");
    let p = parse(&ctx.run_ok(&b));
    assert_eq!((p["sched"].as_str(), p["flags"].as_str()), ("5", "1"));

    // SCHED_DEADLINE: a deadline process cannot fork, so it must be set after berth's last
    // fork, as it is (the probe does not fork).
    let mut b = probe_bundle(&ctx);
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_DEADLINE",
        "runtime": 10_000_000u64, "deadline": 30_000_000u64, "period": 30_000_000u64});
    b.args(&["/probe"]);
    let p = parse(&ctx.run_ok(&b));
    assert_eq!(
        (p["sched"].as_str(), p["dl"].as_str()),
        ("6", "10000000/30000000/30000000")
    );
    // ... nor fork a startContainer hook: refused at create, not an EAGAIN at start.
    b.add_hook("startContainer", json!({"path": "/bin/true"}));
    let out = ctx.try_create(&b, &ctx.id("dlhook")).fails();
    assert!(
        out.stderr.contains("cannot fork its startContainer hooks"),
        "{out}"
    );
}

#[test]
fn scheduler_and_io_priority_are_checked() {
    if skip() || spec13("ioPriority, scheduler") {
        return;
    }
    let ctx = Ctx::new("schedbad");
    for (field, value, says) in [
        (
            "ioPriority",
            json!({"class": "IOPRIO_CLASS_BE", "priority": 8}),
            "process.ioPriority.priority: 8 is out of range",
        ),
        (
            "scheduler",
            json!({"policy": "SCHED_FIFO"}),
            "process.scheduler.priority",
        ),
        (
            "scheduler",
            json!({"policy": "SCHED_OTHER", "nice": 20}),
            "process.scheduler.nice: 20",
        ),
        ("scheduler", json!({"policy": "SCHED_ISO"}), "SCHED_ISO"),
        (
            "scheduler",
            json!({"policy": "SCHED_DEADLINE", "runtime": 2000000, "deadline": 1000000}),
            "SCHED_DEADLINE needs runtime <= deadline",
        ),
        (
            "execCPUAffinity",
            json!({"final": "4096"}),
            "process.execCPUAffinity.final",
        ),
    ] {
        let mut b = ctx.bundle();
        b.config["process"][field] = value;
        b.args(&["true"]);
        let id = ctx.id("bad");
        let out = ctx.try_create(&b, &id).fails();
        assert!(out.stderr.contains(says), "{field}: {out}");
        assert!(
            !ctx.state_dir(&id).exists(),
            "a refused config leaves no state"
        );
    }
}

#[test]
fn real_time_policy_in_a_user_namespace() {
    // A process in a new user namespace has no CAP_SYS_NICE on the host: set from inside,
    // SCHED_RR and the real-time I/O class fail with EPERM. berth sets them from outside.
    if skip() || spec13("scheduler") {
        return;
    }
    let ctx = Ctx::new("schedus");
    let mut b = probe_bundle(&ctx);
    host(
        "chown",
        &["-R", "100000:100000", b.rootfs().to_str().unwrap()],
    );
    b.namespace("user", None);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_RR", "priority": 7});
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_RT", "priority": 0});
    b.args(&["/probe"]);
    let id = give_realtime_budget(&ctx, &mut b);
    let out = ctx.run(&b, &id);
    assert_eq!(out.code(), 0, "{out}");
    let p = parse(&out.stdout);
    assert_eq!((p["sched"].as_str(), p["prio"].as_str()), ("2", "7"));
    assert_eq!(p["ioprio"], "1:0");
}

#[test]
fn exec_cpu_affinity_initial_and_final() {
    if skip() || spec13("execCPUAffinity") {
        return;
    }
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    if online.trim() == "0" {
        eprintln!("SKIPPED: one CPU only, no affinity to tell apart");
        return;
    }
    let ctx = Ctx::new("affinity");
    let berth_before = proc_field(std::process::id() as i32, "status", "Cpus_allowed_list");
    for (affinity, want) in [
        (json!({"initial": "0"}), "0"),
        (json!({"final": "1"}), "1"),
        (json!({"initial": "0", "final": "1"}), "1"),
        (json!({"initial": "1", "final": "0"}), "0"),
    ] {
        let mut b = probe_bundle(&ctx);
        b.config["process"]["execCPUAffinity"] = affinity.clone();
        b.args(&["/probe", "sleep"]);
        let (id, pid) = ctx.sleeper_from(&b, "a");
        assert_eq!(
            proc_field(pid, "status", "Cpus_allowed_list"),
            want,
            "{affinity} (init, outside)"
        );
        let p = parse(&ctx.rt(&["exec", &id, "/probe"]).ok().stdout);
        assert_eq!(p["cpus"], want, "{affinity} (exec, inside)");
        let inside = ctx
            .rt(&["exec", &id, "grep", "Cpus_allowed_list", "/proc/1/status"])
            .ok()
            .stdout;
        assert!(inside.trim().ends_with(want), "{affinity}: {inside}");
        ctx.rt(&["delete", "--force", &id]).ok();
    }
    // berth pins itself to `initial` only while it clones: a foreground `run`, which stays
    // with its container, is back on the CPUs it had.
    let mut b = ctx.bundle();
    b.config["process"]["execCPUAffinity"] = json!({"initial": "0"});
    b.args(&["sleep", "1000"]);
    b.write();
    let id = ctx.id("fg");
    let run = ctx.rt_bg(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    ctx.wait_status(&id, "running");
    let pid = ctx.pid(&id);
    assert_eq!(proc_field(pid, "status", "Cpus_allowed_list"), "0");
    assert_eq!(
        proc_field(run.pid(), "status", "Cpus_allowed_list"),
        berth_before,
        "berth's own affinity after the clone"
    );
    ctx.rt(&["kill", &id, "KILL"]).ok();
    run.wait(CMD_TIMEOUT);
}

#[test]
fn personality_linux32_for_init_and_exec() {
    if skip() || spec13("personality") {
        return;
    }
    let ctx = Ctx::new("pers");
    let mut b = probe_bundle(&ctx);
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    b.sh("uname -m; exec /probe sleep");
    let (id, pid) = ctx.sleeper_from(&b, "p");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/personality"))
            .unwrap()
            .trim(),
        "00000008",
        "PER_LINUX32 seen from outside"
    );
    let out = ctx.rt(&["exec", &id, "uname", "-m"]).ok().stdout;
    assert_eq!(out.trim(), "i686", "exec");
    let p = parse(&ctx.rt(&["exec", &id, "/probe"]).ok().stdout);
    assert_eq!(p["personality"], "0x8");
    // The init's own output.
    let mut b = ctx.bundle();
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    b.args(&["uname", "-m"]);
    assert_eq!(ctx.run_ok(&b).trim(), "i686");
    b.config["linux"]["personality"] = json!({"domain": "LINUX"});
    assert_eq!(ctx.run_ok(&b).trim(), "x86_64");
    b.config["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["SHORT_INODE"]});
    let out = ctx.run(&b, &ctx.id("f")).fails();
    assert!(out.stderr.contains("linux.personality.flags"), "{out}");
}

#[test]
fn memory_policy_for_init_and_exec() {
    if skip() || spec13("memoryPolicy") {
        return;
    }
    let ctx = Ctx::new("mempol");
    let mut b = probe_bundle(&ctx);
    b.config["linux"]["memoryPolicy"] =
        json!({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]});
    b.args(&["/probe", "sleep"]);
    let (id, pid) = ctx.sleeper_from(&b, "m");
    // MPOL_BIND (2) | MPOL_F_STATIC_NODES (1 << 15), node 0.
    let p = parse(&ctx.rt(&["exec", &id, "/probe"]).ok().stdout);
    assert_eq!(
        (p["mempolicy"].as_str(), p["nodes"].as_str()),
        ("32770", "0x1")
    );
    let maps = std::fs::read_to_string(format!("/proc/{pid}/numa_maps")).unwrap();
    assert!(
        maps.lines().next().unwrap().contains(" bind=static:0 "),
        "outside: {maps}"
    );
    ctx.rt(&["delete", "--force", &id]).ok();

    b.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"});
    b.args(&["/probe"]);
    assert_eq!(parse(&ctx.run_ok(&b))["mempolicy"], "3");
    b.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_LOCAL"});
    assert_eq!(parse(&ctx.run_ok(&b))["mempolicy"], "4");

    // A node the host does not have: refused, naming it, before anything is made.
    b.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0,63"});
    let id = ctx.id("absent");
    let out = ctx.try_create(&b, &id).fails();
    assert!(
        out.stderr
            .contains("NUMA node 63 is not online on this host"),
        "{out}"
    );
    assert!(!ctx.state_dir(&id).exists());
}

/// A veth pair the test makes, deleted when dropped if it is still there.
struct Veth {
    a: String,
    b: String,
}

impl Veth {
    fn new(tag: &str) -> Veth {
        let n = std::process::id() % 100000;
        let v = Veth {
            a: format!("bt{tag}{n}a"),
            b: format!("bt{tag}{n}b"),
        };
        host(
            "ip",
            &["link", "add", &v.a, "type", "veth", "peer", "name", &v.b],
        );
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        for name in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["link", "del", name]).output();
        }
    }
}

fn host_has_link(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn net_devices_moved_renamed_with_addresses_and_up() {
    if skip() || spec13("netDevices") {
        return;
    }
    let ctx = Ctx::new("netdev");
    let veth = Veth::new("n");
    host("ip", &["addr", "add", "10.231.7.1/24", "dev", &veth.a]);
    host(
        "ip",
        &[
            "-6",
            "addr",
            "add",
            "fd00:231:7::1/64",
            "dev",
            &veth.a,
            "nodad",
        ],
    );
    let mut b = ctx.bundle();
    b.config["linux"]["netDevices"] = json!({ &veth.a: {"name": "ceth0"} });
    b.sh("ip -o link show ceth0; ip -o addr show dev ceth0; exec sleep 1000");
    let (id, pid) = ctx.sleeper_from(&b, "n");
    // Outside: gone from the host, in the container's namespace, under its new name.
    assert!(!host_has_link(&veth.a), "{} still on the host", veth.a);
    let inside = host(
        "nsenter",
        &[
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "-o",
            "addr",
            "show",
            "dev",
            "ceth0",
        ],
    );
    assert!(inside.contains("inet 10.231.7.1/24"), "{inside}");
    assert!(inside.contains("inet6 fd00:231:7::1/64"), "{inside}");
    // Inside, from the exec'd process: up, with its permanent global addresses.
    let out = ctx
        .rt(&[
            "exec",
            &id,
            "sh",
            "-c",
            "ip -o link show ceth0; ip -o addr show dev ceth0",
        ])
        .ok()
        .stdout;
    let link = out.lines().next().unwrap();
    assert!(link.contains("ceth0") && link.contains(",UP"), "{out}");
    assert!(out.contains("inet 10.231.7.1/24"), "{out}");
    // Delete: berth does not move it out (runtime-spec 1.3: MUST NOT); the namespace dies
    // with the container and the kernel destroys a veth there, its host peer with it.
    ctx.rt(&["delete", "--force", &id]).ok();
    wait_until(
        "the kernel to destroy the veth pair with the namespace",
        || !host_has_link(&veth.a) && !host_has_link(&veth.b),
    );

    // Kept name, and a %d template.
    let veth = Veth::new("k");
    let veth2 = Veth::new("t");
    let mut b = ctx.bundle();
    b.config["linux"]["netDevices"] = json!({ &veth.a: {}, &veth2.a: {"name": "net%d"} });
    b.sh("ip -o link | cut -d: -f2 | tr -d ' ' | cut -d@ -f1 | sort | tr '\\n' ' '");
    let out = ctx.run_ok(&b);
    assert_eq!(out.trim(), format!("{} lo net0", veth.a), "{out}");
    wait_until("the pairs to go with the namespace", || {
        !host_has_link(&veth.b) && !host_has_link(&veth2.b)
    });

    // Into the network namespace of a new user namespace: berth moves it from the host.
    let veth = Veth::new("u");
    host("ip", &["addr", "add", "10.231.8.1/24", "dev", &veth.a]);
    let mut b = ctx.bundle();
    host(
        "chown",
        &["-R", "100000:100000", b.rootfs().to_str().unwrap()],
    );
    b.namespace("user", None);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["netDevices"] = json!({ &veth.a: {"name": "eth0"} });
    b.sh("ip -o link show eth0; ip -o addr show dev eth0");
    let out = ctx.run_ok(&b);
    assert!(out.lines().next().unwrap().contains(",UP"), "{out}");
    assert!(out.contains("inet 10.231.8.1/24"), "{out}");
    wait_until("the pair to go with the namespace", || {
        !host_has_link(&veth.b)
    });
}

#[test]
fn net_devices_errors() {
    if skip() || spec13("netDevices") {
        return;
    }
    let ctx = Ctx::new("netdeverr");
    // No such device on the host.
    let mut b = ctx.bundle();
    b.config["linux"]["netDevices"] = json!({"bt-nosuchdev": {}});
    b.args(&["true"]);
    let id = ctx.id("none");
    let out = ctx.try_create(&b, &id).fails();
    assert!(
        out.stderr
            .contains("the host has no network device named \"bt-nosuchdev\""),
        "{out}"
    );
    assert!(!ctx.state_dir(&id).exists());
    // The container shares the host's network namespace.
    let veth = Veth::new("e");
    let mut b = ctx.bundle();
    b.remove_namespace("network");
    b.config["linux"]["netDevices"] = json!({ &veth.a: {} });
    b.args(&["true"]);
    let out = ctx.try_create(&b, &ctx.id("hostns")).fails();
    assert!(
        out.stderr.contains("shares the host's network namespace"),
        "{out}"
    );
    // The name is taken in the container's namespace: `lo`.
    b.namespace("network", None);
    b.config["linux"]["netDevices"] = json!({ &veth.a: {"name": "lo"} });
    let out = ctx.try_create(&b, &ctx.id("taken")).fails();
    assert!(
        out.stderr.contains("already has a device named \"lo\""),
        "{out}"
    );
    // Refused before or at the move: the device is still on the host, untouched.
    assert!(host_has_link(&veth.a));
}

#[test]
fn intel_rdt_where_resctrl_is_missing() {
    if skip() {
        return;
    }
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" - resctrl ");
    if mounted {
        eprintln!("SKIPPED: this host has resctrl mounted; the refusal is for hosts without");
        return;
    }
    let ctx = Ctx::new("rdt");
    let mut b = ctx.bundle();
    b.config["linux"]["intelRdt"] = json!({"closID": "berthtest", "l3CacheSchema": "L3:0=f"});
    b.args(&["true"]);
    let id = ctx.id("r");
    let out = ctx.try_create(&b, &id).fails();
    if is_berth() {
        let has_fs = std::fs::read_to_string("/proc/filesystems")
            .unwrap()
            .contains("resctrl");
        let want = if has_fs {
            "the resctrl filesystem is not mounted at /sys/fs/resctrl"
        } else {
            "this host's kernel has no resctrl filesystem (Intel RDT / AMD QoS: CONFIG_X86_CPU_RESCTRL"
        };
        assert!(out.stderr.contains(want), "{out}");
        assert!(
            !ctx.state_dir(&id).exists(),
            "refused before anything is made"
        );
    }
}

#[test]
fn features_lists_what_is_applied() {
    if skip() || berth_only("berth's features document") {
        return;
    }
    let ctx = Ctx::new("features");
    let f: Value = serde_json::from_str(&ctx.rt(&["features"]).ok().stdout).unwrap();
    let linux = &f["linux"];
    assert_eq!(linux["netDevices"]["enabled"], true);
    assert_eq!(linux["intelRdt"]["enabled"], true);
    assert_eq!(
        linux["mountExtensions"]["idmap"]["enabled"], false,
        "idmap mounts are refused"
    );
    let modes = linux["memoryPolicy"]["modes"].as_array().unwrap();
    assert!(modes.contains(&json!("MPOL_BIND")) && modes.contains(&json!("MPOL_LOCAL")));
    assert_eq!(
        linux["cgroup"]["systemd"], true,
        "the systemd driver (transient scopes)"
    );
}

/// runc 1.1.5 on the same bundles: intelRdt, the one field it knows, is refused by both on a
/// host without resctrl; the 1.2/1.3 fields it does not know it runs without (uname -m says
/// x86_64, the policy is the default): berth applies them.
#[test]
fn differential_with_runc() {
    if skip() || !is_berth() {
        return;
    }
    let Some(runc) = which("runc") else {
        eprintln!("SKIPPED: runc is not installed");
        return;
    };
    let version = String::from_utf8_lossy(
        &Command::new(&runc)
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    let ctx = Ctx::new("specdiff");
    let run_runc = |b: &Bundle, id: &str| {
        b.write();
        let root = ctx.dir("runc-root");
        Command::new(&runc)
            .arg("--root")
            .arg(&root)
            .args(["run", "--bundle", b.path().to_str().unwrap(), id])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let mut b = probe_bundle(&ctx);
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    b.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "0"});
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 3});
    b.sh("uname -m; /probe");
    let ours = ctx.run_ok(&b);
    let theirs = run_runc(&b, &ctx.id("runc"));
    let theirs_out = String::from_utf8_lossy(&theirs.stdout).into_owned();
    let (o, t) = (parse(&ours), parse(&theirs_out));
    assert!(ours.starts_with("i686\n"), "{ours}");
    assert_eq!(
        (
            o["personality"].as_str(),
            o["mempolicy"].as_str(),
            o["ioprio"].as_str(),
            o["sched"].as_str(),
            o["nice"].as_str()
        ),
        ("0x8", "2", "3:0", "3", "3")
    );
    if version.contains("version 1.1.") {
        assert!(theirs.status.success(), "runc 1.1 runs it: {theirs:?}");
        eprintln!("runc 1.1 ignores the 1.2/1.3 fields:\n{theirs_out}");
        assert!(theirs_out.starts_with("x86_64\n"), "{theirs_out}");
        assert_eq!(t["personality"], "0x0");
        assert_eq!(t["mempolicy"], "0");
    } else if theirs.status.success() {
        // A runc that knows them must show what berth shows.
        assert_eq!(o, t, "berth vs {version}");
    }

    // intelRdt: both refuse it on a host without resctrl.
    if !std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" - resctrl ")
    {
        let mut b = ctx.bundle();
        b.config["linux"]["intelRdt"] = json!({"l3CacheSchema": "L3:0=f"});
        b.args(&["true"]);
        let theirs = run_runc(&b, &ctx.id("runc-rdt"));
        assert!(
            !theirs.status.success(),
            "runc with intelRdt and no resctrl: {theirs:?}"
        );
        let ours = ctx.run(&b, &ctx.id("rdt")).fails();
        assert!(ours.stderr.contains("resctrl"), "{ours}");
        eprintln!(
            "runc says: {}berth says: {}",
            String::from_utf8_lossy(&theirs.stderr),
            ours.stderr
        );
    }
}
