//! linux.namespaces: new ones, joined ones, user ns mappings, time ns.
mod common;
use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;

/// OCI namespace type -> /proc/PID/ns entry.
const NS: &[(&str, &str)] = &[
    ("pid", "pid"),
    ("network", "net"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("mount", "mnt"),
    ("cgroup", "cgroup"),
];

#[test]
fn pid_namespace_makes_the_process_pid_1() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("pidns");
    let out = ctx.sh_ok("echo $$; readlink /proc/self/ns/pid; ps -o pid,comm | tail -n +2");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1", "{out}");
    assert_ne!(lines[1], ns_link("self", "pid"), "same pid ns as the host");
    // Only the container's own processes are visible: sh (1) and ps.
    let procs: Vec<&str> = lines[2..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(procs.contains(&"1") && procs.len() <= 3, "{out}");
}

#[test]
fn namespaces_seen_from_outside() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("nsoutside");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    let id = ctx.id("all");
    let pid = ctx.create(&b, &id).to_string();
    for (ty, proc_name) in NS {
        assert!(b.has_namespace(ty));
        assert_ne!(
            ns_link(&pid, proc_name),
            ns_link("self", proc_name),
            "{ty} namespace not new"
        );
    }
    // The mounts the runtime made live in the container's mount ns only.
    assert!(
        ctx.leaked_mounts().is_empty(),
        "container mounts visible on the host: {:?}",
        ctx.leaked_mounts()
    );

    // Namespaces not asked for are shared with the host.
    let mut b2 = ctx.bundle();
    b2.args(&["sleep", "1000"]);
    b2.remove_namespace("ipc")
        .remove_namespace("cgroup")
        .remove_namespace("network");
    let id2 = ctx.id("some");
    let pid2 = ctx.create(&b2, &id2).to_string();
    for proc_name in ["ipc", "cgroup", "net"] {
        assert_eq!(
            ns_link(&pid2, proc_name),
            ns_link("self", proc_name),
            "{proc_name} should be the host's"
        );
    }
    for proc_name in ["pid", "uts", "mnt"] {
        assert_ne!(
            ns_link(&pid2, proc_name),
            ns_link("self", proc_name),
            "{proc_name} should be new"
        );
    }
}

#[test]
fn uts_namespace_hostname_and_domainname() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("utsns");
    let host_name = nix::unistd::gethostname().unwrap();
    let mut b =
        ctx.sh_bundle("hostname; cat /proc/sys/kernel/domainname; readlink /proc/self/ns/uts");
    b.config["hostname"] = json!("berth-uts-test");
    b.config["domainname"] = json!("example.test");
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "berth-uts-test", "{out}");
    // runc 1.1 ignores "domainname" (runc 1.2 sets it).
    if is_berth() {
        assert_eq!(lines[1], "example.test", "{out}");
    } else {
        eprintln!("note: domainname not checked under {}", runtime_name());
    }
    assert_ne!(lines[2], ns_link("self", "uts"));
    assert_eq!(
        nix::unistd::gethostname().unwrap(),
        host_name,
        "host's hostname changed"
    );
}

#[test]
fn ipc_namespace_is_private() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("ipcns");
    let out = ctx.sh_ok("readlink /proc/self/ns/ipc; cat /proc/sysvipc/shm | wc -l");
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], ns_link("self", "ipc"));
    // A new ipc namespace has no shared memory segments (only the header line).
    assert_eq!(lines[1].trim(), "1", "{out}");
}

#[test]
fn network_namespace_has_only_lo() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("netns");
    let out = ctx.sh_ok("ls /sys/class/net; echo ---; tail -n +3 /proc/net/dev | cut -d: -f1; echo ---; readlink /proc/self/ns/net");
    let parts: Vec<&str> = out.split("---\n").collect();
    assert_eq!(
        parts[0].split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "{out}"
    );
    assert_eq!(
        parts[1].split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "{out}"
    );
    assert_ne!(parts[2].trim(), ns_link("self", "net"));
}

#[test]
fn no_network_namespace_shares_the_hosts() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hostnet");
    let mut b = ctx.sh_bundle("readlink /proc/self/ns/net");
    b.remove_namespace("network");
    assert_eq!(ctx.run_ok(&b).trim(), ns_link("self", "net"));
}

#[test]
fn mount_namespace_root_is_the_bundle_rootfs() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("mntns");
    let out = ctx.sh_ok("readlink /proc/self/ns/mnt; ls /; cat /etc/passwd | cut -d: -f1");
    assert_ne!(out.lines().next().unwrap(), ns_link("self", "mnt"));
    assert!(out.contains("\nbin\n"), "{out}");
    assert!(
        out.contains("\nberth\n"),
        "not our rootfs's /etc/passwd: {out}"
    );
}

#[test]
fn cgroup_namespace_hides_the_cgroup_path() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("cgroupns");
    let out = ctx.sh_ok("cat /proc/self/cgroup");
    for line in out.lines() {
        assert!(
            line.ends_with(":/"),
            "cgroup path not / inside a cgroup ns: {line}\n{out}"
        );
    }

    // Without a cgroup ns the container sees the same paths the host sees for it.
    let mut b = ctx.bundle();
    b.remove_namespace("cgroup");
    b.args(&["sleep", "1000"]);
    let (id, pid) = ctx.sleeper_from(&b, "nocgns");
    let outside = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let inside = ctx.rt(&["exec", &id, "cat", "/proc/1/cgroup"]).ok().stdout;
    assert_eq!(inside, outside);
}

#[test]
fn user_namespace_with_mappings() {
    if skip() {
        return;
    }
    if !std::path::Path::new("/proc/self/ns/user").exists() {
        eprintln!("SKIPPED: kernel without user namespaces");
        return;
    }
    let ctx = Ctx::new("userns");
    let out_dir = ctx.dir("out");
    host("chown", &["100000:100000", out_dir.to_str().unwrap()]);
    let mut b = ctx.bundle();
    host(
        "chown",
        &["-R", "100000:100000", b.rootfs().to_str().unwrap()],
    );
    b.namespace("user", None);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.bind(&out_dir, "/mnt", &[]);
    b.sh("(cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; stat -c '%u:%g' /bin/busybox) > /mnt/info; touch /mnt/made-inside; exec sleep 1000");
    let (id, pid) = ctx.sleeper_from(&b, "u");
    wait_until("the container to write /mnt/made-inside", || {
        out_dir.join("made-inside").exists()
    });

    // Outside: the process runs as host uid 100000, in a new user ns.
    let p = pid.to_string();
    assert_ne!(ns_link(&p, "user"), ns_link("self", "user"));
    let uid = proc_status(&p, "Uid").unwrap();
    assert!(uid.split_whitespace().all(|u| u == "100000"), "Uid: {uid}");
    let map = fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    let meta = fs::metadata(out_dir.join("made-inside")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (100000, 100000),
        "file made by container root"
    );

    ctx.rt(&["kill", &id, "KILL"]).ok();
    ctx.wait_status(&id, "stopped");
    let out = fs::read_to_string(out_dir.join("info")).unwrap();
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(lines[0], "0 100000 65536", "{out}");
    assert_eq!(lines[1], "0 100000 65536", "{out}");
    assert_eq!(lines[2], "0", "{out}");
    assert_eq!(lines[3], "0", "{out}");
    assert_eq!(
        lines[4], "0:0",
        "rootfs owned by 100000 should look root-owned: {out}"
    );
    ctx.delete(&id);
}

#[test]
fn join_network_namespace_by_path() {
    if skip() {
        return;
    }
    if which("ip").is_none() {
        eprintln!("SKIPPED: needs ip (iproute2)");
        return;
    }
    let ctx = Ctx::new("joinnet");
    let nsfile = ctx.netns();
    let ino = fs::metadata(&nsfile).unwrap().ino();
    let mut b = ctx.sh_bundle("readlink /proc/self/ns/net; ls /sys/class/net");
    b.namespace("network", Some(nsfile.to_str().unwrap()));
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("net:[{ino}]"), "{out}");
    assert_eq!(&lines[1..], ["lo"], "{out}");
}

#[test]
fn join_another_containers_uts_and_ipc_namespaces() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("joinuts");
    let mut a = ctx.bundle();
    a.args(&["sleep", "1000"]);
    a.config["hostname"] = json!("pod-host");
    let (_ida, pida) = ctx.sleeper_from(&a, "a");

    let mut b = ctx.sh_bundle("hostname; readlink /proc/self/ns/ipc");
    b.config.as_object_mut().unwrap().remove("hostname");
    b.namespace("uts", Some(&format!("/proc/{pida}/ns/uts")));
    b.namespace("ipc", Some(&format!("/proc/{pida}/ns/ipc")));
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pod-host", "{out}");
    assert_eq!(lines[1], ns_link(&pida.to_string(), "ipc"), "{out}");
}

#[test]
fn time_namespace_offsets() {
    if skip() {
        return;
    }
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        eprintln!("SKIPPED: kernel without time namespaces");
        return;
    }
    if !is_berth() && !features_have_namespace("time") {
        eprintln!(
            "SKIPPED: {} does not support the time namespace",
            runtime_name()
        );
        return;
    }
    let ctx = Ctx::new("timens");
    let mut b = ctx.sh_bundle(
        "cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime; readlink /proc/self/ns/time",
    );
    b.namespace("time", None);
    b.config["linux"]["timeOffsets"] = json!({
        "monotonic": {"secs": 86400, "nanosecs": 0},
        "boottime": {"secs": 864000, "nanosecs": 0}
    });
    let out = ctx.run_ok(&b);
    let norm: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(norm.contains(&"monotonic 86400 0".to_string()), "{out}");
    assert!(norm.contains(&"boottime 864000 0".to_string()), "{out}");
    let host_up: u64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let inside_up: u64 = norm[2].parse().unwrap();
    assert!(
        inside_up >= host_up + 864000 - 5,
        "uptime inside {inside_up} vs host {host_up}"
    );
    assert_ne!(norm[3], ns_link("self", "time"));
}
