//! The engine's security and resource flags, run for real: a bundle made by `berth bundle` from
//! a busybox image, its config.json passed through `apply_security` / `apply_resources` as the
//! engine does, then `berth run` (checked from inside: /proc/self/status, ulimit, denied
//! calls, device nodes) or `berth create` (checked from outside: the container's cgroup
//! files on the host).

mod engine_support;

use berth::engine::resources::{apply_resources, ResourceFlags};
use berth::engine::security::{all_capabilities, apply_security, SecurityFlags};
use berth::runtime::spec_template::spec_to_pretty_json;
use engine_support::{busybox_tar, cmd, is_root, make_image, Scratch};
use oci_spec::runtime::Spec;
use std::path::PathBuf;
use std::process::Output;

/// A busybox bundle made by `berth bundle` in a scratch data root; the containers it runs are
/// deleted when it is dropped (before the scratch directory is unmounted and removed).
struct Fixture {
    containers: std::cell::RefCell<Vec<String>>,
    bundle: PathBuf,
    scratch: Scratch,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let scratch = Scratch::new(&format!("sec-{name}"));
        let tar = busybox_tar(&scratch);
        make_image(&scratch.store(), "localhost/bb:1", &[tar], cmd(&["sh"]));
        let bundle = scratch.path("bundle");
        scratch.berth_ok(&["bundle", "localhost/bb:1", bundle.to_str().unwrap()]);
        Fixture {
            containers: Default::default(),
            bundle,
            scratch,
        }
    }

    /// The bundle's config.json with the flags applied as the engine applies them, running
    /// `sh -c script`.
    fn configure(&self, script: &str, security: &SecurityFlags, resources: &ResourceFlags) {
        let path = self.bundle.join("config.json");
        let mut spec: Spec =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(vec!["sh".into(), "-c".into(), script.into()]));
        spec.set_process(Some(process));
        apply_security(&mut spec, security).unwrap();
        apply_resources(&mut spec, resources).unwrap();
        std::fs::write(&path, spec_to_pretty_json(&spec).unwrap()).unwrap();
    }

    fn id(&self, suffix: &str) -> String {
        let id = format!("sec-{suffix}-{}", std::process::id());
        self.containers.borrow_mut().push(id.clone());
        id
    }

    /// `berth run` of the configured bundle.
    fn run(&self, suffix: &str) -> Output {
        let id = self.id(suffix);
        self.scratch
            .berth(&["run", "--bundle", self.bundle.to_str().unwrap(), &id])
    }

    /// `berth run`, which must succeed; its stdout.
    fn run_ok(&self, suffix: &str) -> String {
        let out = self.run(suffix);
        assert!(
            out.status.success(),
            "run failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `berth create`: the container exists, in its cgroups, waiting for `start`. Its pid.
    fn create(&self, suffix: &str) -> (String, i32) {
        let id = self.id(suffix);
        // The container's init inherits stdio and lives on: its errors go to a file, as a
        // pipe would not see its end until the container is gone.
        let log = self.scratch.path(&format!("{id}.stderr"));
        let status = self
            .scratch
            .command(&["create", "--bundle", self.bundle.to_str().unwrap(), &id])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "create: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let state: serde_json::Value =
            serde_json::from_str(&self.scratch.berth_ok(&["state", &id])).unwrap();
        (id, state["pid"].as_i64().unwrap() as i32)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.containers.borrow().iter() {
            let _ = self.scratch.berth(&["delete", "--force", id]);
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `Key:\tvalue` lines of /proc/PID/status text.
fn status_field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .trim()
        .to_string()
}

/// The capability mask of a list of names.
fn mask(names: &[String]) -> u64 {
    names
        .iter()
        .map(|n| n.parse::<caps::Capability>().unwrap().bitmask())
        .fold(0, |a, b| a | b)
}

fn hex(text: &str) -> u64 {
    u64::from_str_radix(text, 16).unwrap()
}

/// Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
/// NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP, as Docker shows it.
const DOCKER_DEFAULT_CAPEFF: u64 = 0xa80425fb;

macro_rules! root_only {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

#[test]
fn docker_defaults_from_inside() {
    root_only!();
    let fx = Fixture::new("defaults");
    fx.configure(
        "grep -E '^(CapEff|CapPrm|CapBnd|CapInh|Seccomp|NoNewPrivs):' /proc/self/status; \
         echo interrupts=$(wc -c < /proc/interrupts); \
         (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo sys=rw || echo sys=ro; \
         unshare -U true 2>/dev/null && echo unshare=ok || echo unshare=denied; \
         mount -t tmpfs none /mnt 2>/dev/null && echo mount=ok || echo mount=denied; \
         chroot / true && echo chroot=ok",
        &SecurityFlags::default(),
        &ResourceFlags::default(),
    );
    let out = fx.run_ok("defaults");
    assert_eq!(
        hex(&status_field(&out, "CapEff")),
        DOCKER_DEFAULT_CAPEFF,
        "{out}"
    );
    assert_eq!(
        hex(&status_field(&out, "CapBnd")),
        DOCKER_DEFAULT_CAPEFF,
        "{out}"
    );
    assert_eq!(hex(&status_field(&out, "CapInh")), 0, "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0", "{out}");
    for line in [
        "interrupts=0",
        "sys=ro",
        "unshare=denied",
        "mount=denied",
        "chroot=ok",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} in {out}");
    }
}

#[test]
fn seccomp_follows_added_capabilities() {
    root_only!();
    let fx = Fixture::new("capadd");
    let script = "grep -E '^(CapEff|Seccomp):' /proc/self/status; \
        mount -t tmpfs none /mnt && echo mount=ok; \
        unshare -U true && echo unshare=ok; \
        chown 1 /tmp 2>/dev/null && echo chown=ok || echo chown=denied";
    let sec = SecurityFlags {
        cap_add: strings(&["sys_admin"]),
        cap_drop: strings(&["CHOWN"]),
        ..Default::default()
    };
    fx.configure(script, &sec, &ResourceFlags::default());
    let out = fx.run_ok("capadd");
    let want = (DOCKER_DEFAULT_CAPEFF | caps::Capability::CAP_SYS_ADMIN.bitmask())
        & !caps::Capability::CAP_CHOWN.bitmask();
    assert_eq!(hex(&status_field(&out, "CapEff")), want, "{out}");
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    for line in ["mount=ok", "unshare=ok", "chown=denied"] {
        assert!(out.lines().any(|l| l == line), "{line} in {out}");
    }
}

#[test]
fn unconfined_seccomp_and_no_new_privileges() {
    root_only!();
    let fx = Fixture::new("unconfined");
    let sec = SecurityFlags {
        security_opt: strings(&["seccomp=unconfined", "no-new-privileges:true"]),
        ..Default::default()
    };
    fx.configure(
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; unshare -U true && echo unshare=ok",
        &sec,
        &ResourceFlags::default(),
    );
    let out = fx.run_ok("unconfined");
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1", "{out}");
    assert!(out.lines().any(|l| l == "unshare=ok"), "{out}");
}

#[test]
fn custom_seccomp_profile_file() {
    root_only!();
    let fx = Fixture::new("profile");
    let profile = fx.scratch.path("deny-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [
              {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
              {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    let mut sec = SecurityFlags {
        security_opt: vec![format!("seccomp={}", profile.display())],
        ..Default::default()
    };
    sec.prepare().unwrap();
    // The profile travels in the flags from here on, as with Docker.
    std::fs::remove_file(&profile).unwrap();
    fx.configure("mkdir /tmp/x; echo rc=$?", &sec, &ResourceFlags::default());
    let out = fx.run("profile");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("rc=1"), "{stdout}{stderr}");
    assert!(
        stderr.contains("Permission denied"),
        "EACCES from the profile: {stderr}"
    );
}

#[test]
fn privileged_container() {
    root_only!();
    let fx = Fixture::new("privileged");
    let sec = SecurityFlags {
        privileged: true,
        ..Default::default()
    };
    fx.configure(
        "grep -E '^(CapEff|Seccomp):' /proc/self/status; \
         grep ' /sys ' /proc/self/mountinfo; \
         echo interrupts=$(wc -c < /proc/interrupts); \
         ls /dev",
        &sec,
        &ResourceFlags::default(),
    );
    let out = fx.run_ok("privileged");
    assert_eq!(
        hex(&status_field(&out, "CapEff")),
        mask(&all_capabilities()),
        "{out}"
    );
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    let sys = out.lines().find(|l| l.contains(" /sys ")).unwrap();
    assert!(sys.split(' ').nth(5).unwrap().starts_with("rw"), "{sys}");
    assert!(
        !out.lines().any(|l| l == "interrupts=0"),
        "/proc/interrupts is not masked: {out}"
    );
    // A device node of the host's that no unprivileged container has.
    let host_only = ["loop-control", "kmsg", "mem"]
        .into_iter()
        .find(|d| std::path::Path::new("/dev").join(d).exists())
        .expect("a host device node");
    assert!(
        out.lines().any(|l| l == host_only),
        "/dev/{host_only} in {out}"
    );
}

#[test]
fn ulimits_and_sysctls() {
    root_only!();
    let fx = Fixture::new("ulimit");
    let sec = SecurityFlags {
        ulimit: strings(&["nofile=1234:2345", "core=-1"]),
        sysctl: strings(&["net.ipv4.ip_forward=1", "kernel.shmmax=123456789"]),
        ..Default::default()
    };
    fx.configure(
        "echo nofile=$(ulimit -n):$(ulimit -Hn) core=$(ulimit -c); \
         echo fwd=$(cat /proc/sys/net/ipv4/ip_forward) shmmax=$(cat /proc/sys/kernel/shmmax)",
        &sec,
        &ResourceFlags::default(),
    );
    let out = fx.run_ok("ulimit");
    assert!(out.contains("nofile=1234:2345 core=unlimited"), "{out}");
    assert!(out.contains("fwd=1 shmmax=123456789"), "{out}");
}

#[test]
fn devices_and_their_rules() {
    root_only!();
    let fx = Fixture::new("device");
    // /dev/fuse: denied by Docker's default rules, allowed read-only by the mapping (runc's
    // own allowed list covers null, zero and the like, so it must be another device).
    let sec = SecurityFlags {
        device: strings(&["/dev/null:/dev/mynull:rwm", "/dev/fuse:/dev/rofuse:r"]),
        ..Default::default()
    };
    fx.configure(
        "stat -c '%n %t:%T %F' /dev/mynull /dev/rofuse; \
         echo hi > /dev/mynull && echo mynull=written; \
         (exec 3< /dev/rofuse) && echo rofuse=readable; \
         (exec 3> /dev/rofuse) 2>/dev/null && echo rofuse=writable || echo rofuse=denied",
        &sec,
        &ResourceFlags::default(),
    );
    let out = fx.run_ok("device");
    assert!(
        out.contains("/dev/mynull 1:3 character special file"),
        "{out}"
    );
    assert!(
        out.contains("/dev/rofuse a:e5 character special file"),
        "{out}"
    );
    for line in ["mynull=written", "rofuse=readable", "rofuse=denied"] {
        assert!(out.lines().any(|l| l == line), "{line} in {out}");
    }
}

/// The container's directory in a cgroup v1 hierarchy (None on a cgroup2-only host).
fn v1_cgroup_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| PathBuf::from(format!("/sys/fs/cgroup/{controller}{path}")))
    })
}

fn read_trim(path: PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

#[test]
fn resource_limits_in_the_cgroups() {
    root_only!();
    let fx = Fixture::new("resources");
    let res = ResourceFlags {
        memory: Some("64m".into()),
        memory_reservation: Some("32m".into()),
        cpus: Some("1.5".into()),
        cpu_shares: Some("512".into()),
        cpuset_cpus: Some("0".into()),
        pids_limit: Some("50".into()),
        ..Default::default()
    };
    fx.configure("true", &SecurityFlags::default(), &res);
    let (_, pid) = fx.create("resources");
    let Some(memory) = v1_cgroup_dir(pid, "memory") else {
        // cgroup2: the same limits under one directory.
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        let dir = PathBuf::from(format!("/sys/fs/cgroup{path}"));
        assert_eq!(read_trim(dir.join("memory.max")), "67108864");
        assert_eq!(read_trim(dir.join("cpu.max")), "150000 100000");
        assert_eq!(read_trim(dir.join("pids.max")), "50");
        return;
    };
    assert_eq!(read_trim(memory.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(
        read_trim(memory.join("memory.soft_limit_in_bytes")),
        "33554432"
    );
    if memory.join("memory.memsw.limit_in_bytes").exists() {
        // Docker's default: as much swap again as memory.
        assert_eq!(
            read_trim(memory.join("memory.memsw.limit_in_bytes")),
            "134217728"
        );
    }
    let cpu = v1_cgroup_dir(pid, "cpu").unwrap();
    assert_eq!(read_trim(cpu.join("cpu.cfs_quota_us")), "150000");
    assert_eq!(read_trim(cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read_trim(cpu.join("cpu.shares")), "512");
    assert_eq!(
        read_trim(v1_cgroup_dir(pid, "cpuset").unwrap().join("cpuset.cpus")),
        "0"
    );
    assert_eq!(
        read_trim(v1_cgroup_dir(pid, "pids").unwrap().join("pids.max")),
        "50"
    );
    // The device rules: Docker's list (null allowed, fuse not), with runc's additions.
    let devices = read_trim(v1_cgroup_dir(pid, "devices").unwrap().join("devices.list"));
    assert!(devices.lines().any(|l| l == "c 1:3 rwm"), "{devices}");
    assert!(
        !devices.lines().any(|l| l.starts_with("c 10:229")),
        "{devices}"
    );
    assert!(!devices.lines().any(|l| l.starts_with("a ")), "{devices}");
}

#[test]
fn memory_limit_from_inside() {
    root_only!();
    let fx = Fixture::new("meminside");
    let res = ResourceFlags {
        memory: Some("48m".into()),
        pids_limit: Some("20".into()),
        ..Default::default()
    };
    fx.configure(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max \
             /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max 2>/dev/null",
        &SecurityFlags::default(),
        &res,
    );
    let out = fx.run("meminside");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l == "50331648"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "20"), "{stdout}");
}

// ---------------------------------------------------------------------------------------------
// Through `berth container run|create|update|inspect`.

/// A scratch data root with a busybox image for `berth container ...`; its containers are
/// removed when it is dropped.
struct Engine {
    s: Scratch,
}

impl Engine {
    fn new(name: &str) -> Engine {
        let s = Scratch::new(&format!("sec-engine-{name}"));
        let tar = busybox_tar(&s);
        let mut cfg = cmd(&["sh"]);
        cfg.env = vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()];
        make_image(&s.store(), "busybox:latest", &[tar], cfg);
        Engine { s }
    }

    /// `berth ARGS`, its stdio piped; killed after a minute.
    fn run(&self, args: &[&str]) -> Output {
        let child = self
            .s
            .command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let watchdog = std::thread::spawn(move || {
            for _ in 0..600 {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
                    return;
                }
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        });
        let out = child.wait_with_output().unwrap();
        let _ = watchdog.join();
        out
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

    /// Runs `berth ARGS`, which must fail with `code`; its stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "berth {args:?}: {stderr}");
        stderr
    }

    fn inspect(&self, c: &str, template: &str) -> String {
        self.ok(&["container", "inspect", "-f", template, c])
            .trim_end()
            .to_string()
    }

    fn container_ids(&self) -> Vec<String> {
        self.ok(&["container", "ls", "-aq", "--no-trunc"])
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let out = self.run(&["container", "ls", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.run(&["container", "rm", "-f", id]);
        }
    }
}

#[test]
fn container_run_applies_the_security_flags() {
    root_only!();
    let e = Engine::new("flags");
    let status = "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status";
    let out = e.ok(&["container", "run", "--rm", "busybox", "sh", "-c", status]);
    assert_eq!(
        hex(&status_field(&out, "CapEff")),
        DOCKER_DEFAULT_CAPEFF,
        "{out}"
    );
    assert_eq!(status_field(&out, "Seccomp"), "2", "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "0", "{out}");

    let out = e.ok(&[
        "container",
        "run",
        "--rm",
        "--cap-add",
        "sys_admin",
        "--cap-drop",
        "CHOWN",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "sh",
        "-c",
        &format!("{status}; mount -t tmpfs none /mnt && echo mounted"),
    ]);
    let want = (DOCKER_DEFAULT_CAPEFF | caps::Capability::CAP_SYS_ADMIN.bitmask())
        & !caps::Capability::CAP_CHOWN.bitmask();
    assert_eq!(hex(&status_field(&out, "CapEff")), want, "{out}");
    assert_eq!(status_field(&out, "NoNewPrivs"), "1", "{out}");
    assert!(out.lines().any(|l| l == "mounted"), "{out}");

    let out = e.ok(&[
        "container",
        "run",
        "--rm",
        "--device",
        "/dev/null:/dev/mynull",
        "--ulimit",
        "nofile=1234:2345",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "busybox",
        "sh",
        "-c",
        "echo hi > /dev/mynull && echo dev=ok; echo nofile=$(ulimit -n):$(ulimit -Hn); \
         echo fwd=$(cat /proc/sys/net/ipv4/ip_forward)",
    ]);
    for line in ["dev=ok", "nofile=1234:2345", "fwd=1"] {
        assert!(out.lines().any(|l| l == line), "{line} in {out}");
    }

    let out = e.ok(&[
        "container",
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        &format!("{status}; ls /dev"),
    ]);
    assert_eq!(
        hex(&status_field(&out, "CapEff")),
        mask(&all_capabilities()),
        "{out}"
    );
    assert_eq!(status_field(&out, "Seccomp"), "0", "{out}");
    assert!(out.lines().any(|l| l == "loop-control"), "{out}");
}

#[test]
fn inspect_shows_dockers_host_config() {
    root_only!();
    let e = Engine::new("inspect");
    let plain = e
        .ok(&["container", "create", "busybox", "true"])
        .trim()
        .to_string();
    let fields =
        "{{.HostConfig.Privileged}} {{json .HostConfig.CapAdd}} {{json .HostConfig.CapDrop}} \
        {{json .HostConfig.SecurityOpt}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} \
        {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}} {{.HostConfig.PidsLimit}} \
        {{len .HostConfig.MaskedPaths}} \
        {{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}:{{.Hard}}{{end}}.";
    assert_eq!(
        e.inspect(&plain, fields),
        "false null null null 0 0 0 0 <nil> 12 ."
    );
    let shaped = e
        .ok(&[
            "container",
            "create",
            "--cap-add",
            "net_admin",
            "--cap-drop",
            "mknod",
            "--security-opt",
            "seccomp=unconfined",
            "-m",
            "64m",
            "--cpus",
            "1.5",
            "-c",
            "512",
            "--pids-limit",
            "50",
            "--ulimit",
            "nofile=10:20",
            "busybox",
            "true",
        ])
        .trim()
        .to_string();
    assert_eq!(
        e.inspect(&shaped, fields),
        "false [\"CAP_NET_ADMIN\"] [\"CAP_MKNOD\"] [\"seccomp=unconfined\"] 67108864 134217728 \
         1500000000 512 50 12 nofile=10:20."
    );
    let privileged = e
        .ok(&["container", "create", "--privileged", "busybox", "true"])
        .trim()
        .to_string();
    assert_eq!(
        e.inspect(&privileged, "{{.HostConfig.Privileged}} {{.HostConfig.SecurityOpt}} {{len .HostConfig.MaskedPaths}}"),
        "true [label=disable] 0"
    );
}

#[test]
fn limits_in_the_cgroups_and_container_update() {
    root_only!();
    let e = Engine::new("update");
    let id = e
        .ok(&[
            "container",
            "run",
            "-d",
            "-m",
            "64m",
            "--cpus",
            "1.5",
            "--pids-limit",
            "50",
            "busybox",
            "sleep",
            "1000",
        ])
        .trim()
        .to_string();
    let pid: i32 = e.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    let memory = v1_cgroup_dir(pid, "memory");
    let Some(memory) = memory else {
        eprintln!("skipped the cgroup v1 checks: no memory hierarchy");
        return;
    };
    let pids = v1_cgroup_dir(pid, "pids").unwrap();
    let cpu = v1_cgroup_dir(pid, "cpu").unwrap();
    assert_eq!(read_trim(memory.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read_trim(cpu.join("cpu.cfs_quota_us")), "150000");
    assert_eq!(read_trim(pids.join("pids.max")), "50");

    assert_eq!(
        e.ok(&[
            "container",
            "update",
            "-m",
            "128m",
            "--pids-limit",
            "80",
            &id
        ])
        .trim(),
        id
    );
    assert_eq!(read_trim(memory.join("memory.limit_in_bytes")), "134217728");
    if memory.join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(
            read_trim(memory.join("memory.memsw.limit_in_bytes")),
            "268435456"
        );
    }
    assert_eq!(read_trim(pids.join("pids.max")), "80");
    assert_eq!(read_trim(cpu.join("cpu.cfs_quota_us")), "150000", "kept");
    assert_eq!(
        e.inspect(
            &id,
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}"
        ),
        "134217728 80 1500000000"
    );

    // Kept for the next start.
    e.ok(&["container", "stop", "-t", "1", &id]);
    e.ok(&["container", "start", &id]);
    let pid: i32 = e.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    let memory = v1_cgroup_dir(pid, "memory").unwrap();
    assert_eq!(read_trim(memory.join("memory.limit_in_bytes")), "134217728");
    assert_eq!(
        read_trim(v1_cgroup_dir(pid, "pids").unwrap().join("pids.max")),
        "80"
    );

    // Bad values: Docker's message, nothing changed.
    let err = e.fails(&["container", "update", "-m", "4m", &id], 1);
    assert!(err.contains("Minimum memory limit allowed is 6MB"), "{err}");
    assert_eq!(read_trim(memory.join("memory.limit_in_bytes")), "134217728");
    let err = e.fails(&["container", "update", &id], 1);
    assert!(err.contains("you must provide one or more flags"), "{err}");
}

#[test]
fn bad_flags_get_dockers_errors_and_leave_nothing() {
    root_only!();
    let e = Engine::new("errors");
    for (args, want) in [
        (&["-m", "4m"][..], "Minimum memory limit allowed is 6MB"),
        (&["-m", "lots"], "invalid argument \"lots\" for \"-m, --memory\" flag: invalid size: 'lots'"),
        (&["--cpus", "1", "--cpu-quota", "50000"], "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
        (&["--cap-add", "foo"], "invalid CapAdd: unknown capability: \"CAP_FOO\""),
        (&["--ulimit", "nofile=abc"], "invalid argument \"nofile=abc\" for \"--ulimit\" flag: strconv.ParseInt: parsing \"abc\": invalid syntax"),
        (&["--security-opt", "foo=bar"], "invalid --security-opt 2: \"foo=bar\""),
        (&["--sysctl", "kernel.hostname=x"], "sysctl 'kernel.hostname=x' is not allowed"),
        (&["--device", "/dev/berth-nope"], "error gathering device information while adding custom device \"/dev/berth-nope\": no such file or directory"),
        (&["--security-opt", "seccomp=/nonexistent.json"], "opening seccomp profile (/nonexistent.json) failed"),
    ] {
        let mut full = vec!["container", "run", "--rm"];
        full.extend_from_slice(args);
        full.extend(["busybox", "true"]);
        let err = e.fails(&full, 125);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(e.container_ids(), Vec::<String>::new(), "no container left");
}

// ---------------------------------------------------------------------------------------------
// Against Docker: the same flags under a private dockerd and under berth.

/// What both print: exit code, stdout, and (for failures) nothing more, as the wording of
/// daemon errors differs in its prefix.
fn outcome(o: &Output) -> (Option<i32>, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn same_capabilities_seccomp_and_limits_as_docker() {
    root_only!();
    let Some(docker) =
        engine_support::Dockerd::start().map(engine_support::Dockerd::with_client_in_path)
    else {
        return;
    };
    let e = Engine::new("vs-docker");
    let tar = e.s.path("busybox.tar");
    std::fs::write(&tar, busybox_tar(&e.s)).unwrap();
    let import = docker.output(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        tar.to_str().unwrap(),
        "busybox:latest",
    ]);
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );

    let status =
        "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|Seccomp|NoNewPrivs):' /proc/self/status; \
        echo nofile=$(ulimit -n):$(ulimit -Hn) core=$(ulimit -c); \
        unshare -U true 2>/dev/null && echo unshare=ok || echo unshare=denied";
    let flag_sets: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--cap-add", "SYS_ADMIN"],
        vec![
            "--cap-add",
            "sys_ptrace",
            "--cap-drop",
            "chown",
            "--cap-drop",
            "CAP_KILL",
        ],
        vec!["--cap-drop", "ALL", "--cap-add", "net_bind_service"],
        vec!["--cap-drop", "ALL"],
        vec!["--user", "1000"],
        vec!["--security-opt", "no-new-privileges"],
        vec![
            "--security-opt",
            "no-new-privileges:true",
            "--security-opt",
            "seccomp=unconfined",
        ],
        vec!["--ulimit", "nofile=100:200", "--ulimit", "core=-1"],
    ];
    for flags in &flag_sets {
        let mut docker_args = vec!["run", "--rm", "--network", "none"];
        docker_args.extend(flags);
        docker_args.extend(["busybox", "sh", "-c", status]);
        let mut berth_args = vec!["container"];
        berth_args.extend(&docker_args);
        let theirs = docker.output(&docker_args);
        let ours = e.run(&berth_args);
        // The limits neither sets come from the daemon and from berth's caller: compare the
        // nofile line only where the flags set it.
        let strip = |(code, out): (Option<i32>, String)| {
            let keep_nofile = flags.contains(&"--ulimit");
            let out: Vec<String> = out
                .lines()
                .filter(|l| keep_nofile || !l.starts_with("nofile="))
                .map(String::from)
                .collect();
            (code, out)
        };
        assert_eq!(
            strip(outcome(&ours)),
            strip(outcome(&theirs)),
            "flags {flags:?}\nberth stderr: {}\ndocker stderr: {}",
            String::from_utf8_lossy(&ours.stderr),
            String::from_utf8_lossy(&theirs.stderr)
        );
    }

    // The HostConfig fields inspect shows for the same flags.
    let template = "{{json .HostConfig.CapAdd}} {{json .HostConfig.CapDrop}} \
        {{json .HostConfig.SecurityOpt}} {{.HostConfig.Privileged}} {{.HostConfig.Memory}} \
        {{.HostConfig.MemorySwap}} {{.HostConfig.MemoryReservation}} {{.HostConfig.NanoCpus}} \
        {{.HostConfig.CpuShares}} {{.HostConfig.CpuPeriod}} {{.HostConfig.CpuQuota}} \
        {{.HostConfig.CpusetCpus}} {{.HostConfig.BlkioWeight}} {{json .HostConfig.PidsLimit}} \
        {{.HostConfig.OomKillDisable}} {{range .HostConfig.Ulimits}}{{.Name}}={{.Soft}}:{{.Hard}} {{end}}\
        {{range .HostConfig.Devices}}{{.PathOnHost}}>{{.PathInContainer}}:{{.CgroupPermissions}} {{end}}";
    let create_sets: Vec<Vec<&str>> = vec![
        vec![],
        vec![
            "--cap-add",
            "sys_admin",
            "--cap-drop",
            "mknod",
            "--cap-drop",
            "sys_admin",
        ],
        vec!["--cap-add", "ALL", "--cap-drop", "ALL"],
        vec![
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "no-new-privileges",
        ],
        vec![
            "-m",
            "64m",
            "--memory-reservation",
            "32m",
            "--cpus",
            "1.5",
            "-c",
            "512",
            "--pids-limit",
            "50",
        ],
        vec![
            "-m",
            "64m",
            "--memory-swap",
            "-1",
            "--cpu-period",
            "50000",
            "--cpu-quota",
            "25000",
            "--cpuset-cpus",
            "0",
        ],
        vec![
            "--ulimit",
            "nofile=10:20",
            "--device",
            "/dev/null:/dev/xnull:rw",
            "--sysctl",
            "net.ipv4.ip_forward=1",
        ],
        vec!["--privileged"],
        vec!["--pid", "host"],
        vec!["--ipc", "host", "--security-opt", "no-new-privileges"],
    ];
    for flags in &create_sets {
        let mut docker_args = vec!["create", "--network", "none"];
        docker_args.extend(flags);
        docker_args.push("busybox");
        let mut berth_args = vec!["container"];
        berth_args.extend(&docker_args);
        let theirs = docker.output(&docker_args);
        assert!(
            theirs.status.success(),
            "docker {flags:?}: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let ours = e.ok(&berth_args);
        let their_id = String::from_utf8_lossy(&theirs.stdout).trim().to_string();
        // Docker leaves Sysctls out when empty (a template naming it then fails).
        let template = if flags.contains(&"--sysctl") {
            format!("{template} {{{{.HostConfig.Sysctls}}}}")
        } else {
            template.to_string()
        };
        let template = template.as_str();
        let their_fields = docker.output(&["inspect", "-f", template, &their_id]);
        assert_eq!(
            e.inspect(ours.trim(), template),
            String::from_utf8_lossy(&their_fields.stdout).trim_end(),
            "inspect of {flags:?}: {}",
            String::from_utf8_lossy(&their_fields.stderr)
        );
    }

    // Every field of these flags as JSON, for a container made without any of them (Docker's
    // zero values: null, [] or 0) and for one with some.
    let fields = [
        "Privileged",
        "CapAdd",
        "CapDrop",
        "SecurityOpt",
        "Devices",
        "DeviceCgroupRules",
        "Ulimits",
        "Memory",
        "MemorySwap",
        "MemoryReservation",
        "MemorySwappiness",
        "NanoCpus",
        "CpuShares",
        "CpuPeriod",
        "CpuQuota",
        "CpuRealtimePeriod",
        "CpuRealtimeRuntime",
        "CpusetCpus",
        "CpusetMems",
        "BlkioWeight",
        "BlkioWeightDevice",
        "BlkioDeviceReadBps",
        "BlkioDeviceWriteBps",
        "BlkioDeviceReadIOps",
        "BlkioDeviceWriteIOps",
        "PidsLimit",
        "OomKillDisable",
        "ReadonlyPaths",
    ];
    let template: String = fields
        .iter()
        .map(|f| format!("{f}={{{{json .HostConfig.{f}}}}}\n"))
        .collect();
    for flags in [
        vec![],
        vec![
            "--pids-limit",
            "-1",
            "--memory-swappiness",
            "10",
            "--cap-drop",
            "ALL",
        ],
    ] {
        let mut docker_args = vec!["create", "--network", "none"];
        docker_args.extend(&flags);
        docker_args.push("busybox");
        let mut berth_args = vec!["container"];
        berth_args.extend(&docker_args);
        let theirs = docker.output(&docker_args);
        assert!(
            theirs.status.success(),
            "{}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let their_id = String::from_utf8_lossy(&theirs.stdout).trim().to_string();
        let ours = e.ok(&berth_args);
        let their_fields = docker.output(&["inspect", "-f", &template, &their_id]);
        assert_eq!(
            e.inspect(ours.trim(), &template),
            String::from_utf8_lossy(&their_fields.stdout).trim_end(),
            "{flags:?}"
        );
    }

    // Refused by both, with exit code 125.
    for flags in [
        vec!["-m", "4m"],
        vec!["--cpus", "1", "--cpu-quota", "50000"],
        vec!["--cap-add", "foo"],
        vec!["--ulimit", "nofile=abc"],
        vec!["--security-opt", "foo=bar"],
        vec!["--sysctl", "kernel.hostname=x"],
        vec!["--device", "/dev/berth-nope"],
        vec!["--device", "/dev/null:relative"],
    ] {
        let mut docker_args = vec!["run", "--rm", "--network", "none"];
        docker_args.extend(&flags);
        docker_args.extend(["busybox", "true"]);
        let mut berth_args = vec!["container"];
        berth_args.extend(&docker_args);
        let theirs = docker.output(&docker_args);
        let ours = e.run(&berth_args);
        // Docker checks devices only when it starts the container, and its client turns a
        // start error mentioning "no such file or directory" into 127; berth refuses the
        // container before making it, with 125.
        let want_code = if flags[1] == "/dev/berth-nope" {
            Some(125)
        } else {
            theirs.status.code()
        };
        assert_eq!(ours.status.code(), want_code, "{flags:?}");
        // Docker's message is berth's, between Docker's own prefix and suffix.
        let their_text = String::from_utf8_lossy(&theirs.stderr);
        let our_text = String::from_utf8_lossy(&ours.stderr);
        let ours_bare = our_text
            .trim()
            .strip_prefix("berth: ")
            .unwrap_or(our_text.trim());
        assert!(
            their_text.contains(ours_bare),
            "{flags:?}: docker said {their_text:?}, berth {our_text:?}"
        );
    }
}

/// A file named `name` in a directory named `id`, anywhere under `dir`.
fn find_bundle_file(dir: &std::path::Path, id: &str, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if !kind.is_dir() {
            continue;
        }
        if entry.file_name() == id && path.join(name).exists() {
            return Some(path.join(name));
        }
        if let Some(found) = find_bundle_file(&path, id, name) {
            return Some(found);
        }
    }
    None
}

/// The seccomp entries of a config.json, one per call name: (name, action, errnoRet, args).
fn seccomp_entries(config: &serde_json::Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for entry in config["linux"]["seccomp"]["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for name in entry["names"].as_array().into_iter().flatten() {
            let args: Vec<String> = entry["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    format!(
                        "{}:{}:{}:{}",
                        a["index"],
                        a["value"],
                        a.get("valueTwo").cloned().unwrap_or(serde_json::json!(0)),
                        a["op"]
                    )
                })
                .collect();
            let errno = entry
                .get("errnoRet")
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            out.insert(format!(
                "{} {} {} {:?}",
                name.as_str().unwrap(),
                entry["action"],
                errno,
                args
            ));
        }
    }
    out
}

fn sorted_strings(value: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = value
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            x.as_str()
                .map(String::from)
                .unwrap_or_else(|| x.to_string())
        })
        .collect();
    v.sort();
    v
}

/// The runtime spec berth writes against the one Docker hands to runc, for the same flags:
/// the capability sets, no_new_privs, read-only paths, device rules and seccomp entries.
/// Docker here may be older than the profile berth carries: every seccomp entry of Docker's
/// must be berth's, and berth's others may only allow calls Docker's profile never names.
#[test]
fn same_runtime_spec_as_docker() {
    root_only!();
    let Some(docker) =
        engine_support::Dockerd::start().map(engine_support::Dockerd::with_client_in_path)
    else {
        return;
    };
    let e = Engine::new("spec-vs-docker");
    let tar = e.s.path("busybox.tar");
    std::fs::write(&tar, busybox_tar(&e.s)).unwrap();
    let import = docker.output(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        tar.to_str().unwrap(),
        "busybox:latest",
    ]);
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    for flags in [
        vec![],
        vec!["--cap-add", "SYS_ADMIN"],
        vec![
            "--cap-add",
            "SYS_PTRACE",
            "--cap-drop",
            "SYS_CHROOT",
            "--cap-add",
            "sys_time",
        ],
        vec!["--cap-drop", "ALL", "--security-opt", "no-new-privileges"],
        vec!["--user", "1000", "--device", "/dev/null:/dev/xnull:r"],
    ] {
        let mut docker_args = vec!["run", "-d", "--network", "none"];
        docker_args.extend(&flags);
        docker_args.extend(["busybox", "sleep", "1000"]);
        let theirs = docker.output(&docker_args);
        assert!(
            theirs.status.success(),
            "docker {flags:?}: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let their_id = String::from_utf8_lossy(&theirs.stdout).trim().to_string();
        let their_config = find_bundle_file(&docker.dir, &their_id, "config.json")
            .unwrap_or_else(|| panic!("docker's config.json for {their_id}"));
        let theirs: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(their_config).unwrap()).unwrap();

        let mut berth_args = vec!["container", "create", "--network", "none"];
        berth_args.extend(&flags);
        berth_args.extend(["busybox", "sleep", "1000"]);
        let our_id = e.ok(&berth_args).trim().to_string();
        let our_config =
            e.s.data_root()
                .join("containers")
                .join(&our_id)
                .join("bundle/config.json");
        let ours: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(our_config).unwrap()).unwrap();

        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            assert_eq!(
                sorted_strings(&ours["process"]["capabilities"][set]),
                sorted_strings(&theirs["process"]["capabilities"][set]),
                "{flags:?}: capabilities.{set}"
            );
        }
        assert_eq!(
            ours["process"]["noNewPrivileges"]
                .as_bool()
                .unwrap_or(false),
            theirs["process"]["noNewPrivileges"]
                .as_bool()
                .unwrap_or(false),
            "{flags:?}: noNewPrivileges"
        );
        assert_eq!(
            ours["linux"]["readonlyPaths"], theirs["linux"]["readonlyPaths"],
            "{flags:?}"
        );
        for masked in sorted_strings(&theirs["linux"]["maskedPaths"]) {
            assert!(
                sorted_strings(&ours["linux"]["maskedPaths"]).contains(&masked),
                "{flags:?}: {masked} masked by Docker"
            );
        }
        assert_eq!(
            ours["linux"]["resources"]["devices"], theirs["linux"]["resources"]["devices"],
            "{flags:?}"
        );
        let strip_host_specific = |devices: &serde_json::Value| -> Vec<(String, String, i64, i64)> {
            devices
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    (
                        d["path"].as_str().unwrap_or("").to_string(),
                        d["type"].as_str().unwrap_or("").to_string(),
                        d["major"].as_i64().unwrap_or(-1),
                        d["minor"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        };
        assert_eq!(
            strip_host_specific(&ours["linux"]["devices"]),
            strip_host_specific(&theirs["linux"]["devices"]),
            "{flags:?}: linux.devices"
        );

        let (our_seccomp, their_seccomp) = (&ours["linux"]["seccomp"], &theirs["linux"]["seccomp"]);
        for key in ["defaultAction", "architectures"] {
            assert_eq!(
                our_seccomp[key], their_seccomp[key],
                "{flags:?}: seccomp.{key}"
            );
        }
        // Older Docker leaves out defaultErrnoRet, which means EPERM.
        let errno = |s: &serde_json::Value| s["defaultErrnoRet"].as_i64().unwrap_or(1);
        assert_eq!(
            errno(our_seccomp),
            errno(their_seccomp),
            "{flags:?}: defaultErrnoRet"
        );
        // Calls whose rule newer profiles changed: socket(2) refuses AF_VSOCK since Docker 25.
        let unchanged_since_docker_20 = |entry: &String| !entry.starts_with("socket ");
        let our_entries: std::collections::BTreeSet<String> = seccomp_entries(&ours)
            .into_iter()
            .filter(unchanged_since_docker_20)
            .collect();
        let their_entries: std::collections::BTreeSet<String> = seccomp_entries(&theirs)
            .into_iter()
            .filter(unchanged_since_docker_20)
            .collect();
        let missing: Vec<&String> = their_entries.difference(&our_entries).collect();
        assert!(
            missing.is_empty(),
            "{flags:?}: Docker's entries berth lacks: {missing:?}"
        );
        let docker_names: std::collections::BTreeSet<&str> = their_entries
            .iter()
            .map(|e| e.split(' ').next().unwrap())
            .collect();
        for extra in our_entries.difference(&their_entries) {
            let name = extra.split(' ').next().unwrap();
            assert!(
                !docker_names.contains(name)
                    && extra.contains("SCMP_ACT_ALLOW")
                    && extra.ends_with("[]"),
                "{flags:?}: berth's entry {extra} differs from Docker's for a call it names"
            );
        }
    }
}
