//! The container's filesystem: mounts, root.readonly, masked and read-only
//! paths, devices, symlinks, --no-pivot, rootfsPropagation.
mod common;
use common::*;
use std::fs;
use std::path::Path;

#[test]
fn default_mounts_and_their_options() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("defmounts");
    let out = ctx.sh_ok("cat /proc/self/mountinfo");
    let m = parse_mountinfo(&out);
    let get = |mp: &str| {
        find_mount(&m, mp)
            .unwrap_or_else(|| panic!("no mount at {mp}:\n{out}"))
            .clone()
    };

    let root = get("/");
    assert!(
        root.has_opt("ro"),
        "root.readonly but / is {:?}",
        root.mount_opts
    );

    let proc = get("/proc");
    assert_eq!(proc.fstype, "proc");

    let dev = get("/dev");
    assert_eq!(dev.fstype, "tmpfs");
    assert!(dev.has_opt("nosuid"), "{dev:?}");
    assert!(
        dev.has_super_opt("mode=755") && dev.has_super_opt("size=65536k"),
        "{dev:?}"
    );

    let pts = get("/dev/pts");
    assert_eq!(pts.fstype, "devpts");
    assert!(pts.has_opt("nosuid") && pts.has_opt("noexec"), "{pts:?}");
    for o in ["mode=620", "ptmxmode=666", "gid=5"] {
        assert!(pts.has_super_opt(o), "devpts without {o}: {pts:?}");
    }

    let shm = get("/dev/shm");
    assert_eq!(shm.fstype, "tmpfs");
    assert!(
        shm.has_opt("nosuid") && shm.has_opt("nodev") && shm.has_opt("noexec"),
        "{shm:?}"
    );
    assert!(shm.has_super_opt("size=65536k"), "{shm:?}");

    let mq = get("/dev/mqueue");
    assert_eq!(mq.fstype, "mqueue");
    assert!(
        mq.has_opt("nosuid") && mq.has_opt("nodev") && mq.has_opt("noexec"),
        "{mq:?}"
    );

    let sys = get("/sys");
    assert_eq!(sys.fstype, "sysfs");
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(sys.has_opt(o), "/sys without {o}: {sys:?}");
    }

    // /sys/fs/cgroup: a cgroup2 mount, or (v1/hybrid) a tmpfs with one cgroup
    // mount per hierarchy; every cgroup mount read-only.
    get("/sys/fs/cgroup");
    let cg: Vec<&MountInfo> = m
        .iter()
        .filter(|x| {
            x.mount_point.starts_with("/sys/fs/cgroup")
                && (x.fstype == "cgroup" || x.fstype == "cgroup2")
        })
        .collect();
    assert!(
        !cg.is_empty(),
        "no cgroup filesystem under /sys/fs/cgroup:\n{out}"
    );
    for c in cg {
        assert!(c.has_opt("ro"), "cgroup mount not read-only: {c:?}");
    }
}

#[test]
fn tmpfs_size_and_mode() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("tmpfsopts");
    let mut b = ctx.sh_bundle(
        "grep ' /mnt/t ' /proc/self/mountinfo; stat -c '%a' /mnt/t; \
         if dd if=/dev/zero of=/mnt/t/big bs=1024 count=2048 2>/dev/null; then echo fit; else echo full; fi",
    );
    // A new destination: runc gives an existing directory's mode to the tmpfs.
    b.add_mount(
        json!({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "size=1m", "mode=1770"]}),
    );
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    let m = parse_mountinfo(lines[0]);
    let t = find_mount(&m, "/mnt/t").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(t.fstype, "tmpfs");
    assert!(t.has_opt("nosuid") && t.has_opt("nodev"), "{t:?}");
    assert!(t.has_super_opt("size=1024k"), "{t:?}");
    assert!(t.has_super_opt("mode=1770"), "{t:?}");
    assert_eq!(lines[1], "1770", "{out}");
    assert_eq!(lines[2], "full", "a 2 MiB file fit in a 1 MiB tmpfs: {out}");
}

#[test]
fn bind_mounts_read_only_and_read_write() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("bindro");
    let rw = ctx.dir("rw");
    let ro = ctx.dir("ro");
    fs::write(rw.join("file"), "rw-content\n").unwrap();
    fs::write(ro.join("file"), "ro-content\n").unwrap();
    let single = ctx.tmp.join("single-file");
    fs::write(&single, "single\n").unwrap();
    let mut b = ctx.sh_bundle(
        "cat /mnt/rw/file /mnt/ro/file /etc/single; \
         touch /mnt/rw/new && echo rw-write-ok; \
         touch /mnt/ro/new 2>/dev/null || echo ro-write-failed; \
         grep -E ' /mnt/(rw|ro) ' /proc/self/mountinfo",
    );
    // Destinations that do not exist in the rootfs are created.
    b.bind(&rw, "/mnt/rw", &[]);
    b.bind(&ro, "/mnt/ro", &["ro"]);
    b.add_mount(json!({"destination": "/etc/single", "type": "bind", "source": single, "options": ["bind", "ro"]}));
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..5],
        [
            "rw-content",
            "ro-content",
            "single",
            "rw-write-ok",
            "ro-write-failed"
        ],
        "{out}"
    );
    let m = parse_mountinfo(&out);
    assert!(find_mount(&m, "/mnt/ro").unwrap().has_opt("ro"), "{out}");
    assert!(find_mount(&m, "/mnt/rw").unwrap().has_opt("rw"), "{out}");
    assert!(
        rw.join("new").exists(),
        "write through the rw bind did not reach the host"
    );
    assert!(
        !ro.join("new").exists(),
        "write through the ro bind reached the host"
    );
}

#[test]
fn rbind_brings_submounts_bind_does_not() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("rbind");
    let src = ctx.dir("src");
    fs::create_dir(src.join("sub")).unwrap();
    ctx.host_mount(
        &["-t", "tmpfs", "-o", "size=1m", "berthtest"],
        &src.join("sub"),
    );
    fs::write(src.join("sub/f"), "in-submount\n").unwrap();
    let mut b = ctx.sh_bundle(
        "cat /mnt/r/sub/f; ls -A /mnt/b/sub | wc -l; grep -E ' /mnt/(r|b)/sub ' /proc/self/mountinfo",
    );
    b.add_mount(
        json!({"destination": "/mnt/r", "type": "bind", "source": src, "options": ["rbind"]}),
    );
    b.add_mount(
        json!({"destination": "/mnt/b", "type": "bind", "source": src, "options": ["bind"]}),
    );
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "in-submount", "{out}");
    assert_eq!(
        lines[1].trim(),
        "0",
        "plain bind brought the submount: {out}"
    );
    let m = parse_mountinfo(&out);
    assert_eq!(
        find_mount(&m, "/mnt/r/sub").map(|x| x.fstype.as_str()),
        Some("tmpfs"),
        "{out}"
    );
    assert!(find_mount(&m, "/mnt/b/sub").is_none(), "{out}");
}

#[test]
fn readonly_root() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("roroot");
    // The default bundle has root.readonly = true.
    let out = ctx.sh_ok("touch /x 2>&1 && echo wrote || echo failed");
    assert!(
        out.contains("failed") && out.contains("Read-only file system"),
        "{out}"
    );

    let mut b = ctx.sh_bundle("touch /made-inside && echo wrote");
    b.readonly_root(false);
    assert_eq!(ctx.run_ok(&b), "wrote\n");
    assert!(b.rootfs().join("made-inside").exists());
}

#[test]
fn masked_paths() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("masked");
    // Masked /proc files of the default config that have content on this host.
    let proc_files: Vec<&str> = ["/proc/timer_list", "/proc/sched_debug", "/proc/keys"]
        .into_iter()
        .filter(|p| fs::read(p).map(|c| !c.is_empty()).unwrap_or(false))
        .collect();
    let mut script = String::new();
    for p in &proc_files {
        script.push_str(&format!("echo \"{p} $(cat {p} | wc -c)\"; "));
    }
    script.push_str(
        "echo \"/sys/firmware $(ls -A /sys/firmware | wc -l)\"; echo \"/etc/passwd $(cat /etc/passwd | wc -c)\"; \
         echo \"/home $(ls -A /home | wc -l)\"",
    );
    let mut b = ctx.sh_bundle(&script);
    let masked = b.config["linux"]["maskedPaths"].as_array_mut().unwrap();
    masked.push(json!("/etc/passwd")); // a file
    masked.push(json!("/home")); // a directory
    masked.push(json!("/does/not/exist")); // ignored
    let out = ctx.run_ok(&b);
    let mut want: Vec<String> = proc_files.iter().map(|p| format!("{p} 0")).collect();
    want.extend(["/sys/firmware 0", "/etc/passwd 0", "/home 0"].map(String::from));
    let got: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(got, want, "{out}");
    // Not masked in the rootfs itself.
    assert!(fs::read_to_string(b.rootfs().join("etc/passwd"))
        .unwrap()
        .contains("berth"));
    assert!(b.rootfs().join("home/berth").is_dir());
}

#[test]
fn readonly_paths() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("ropaths");
    let data = ctx.dir("data");
    let mut b = ctx.sh_bundle(
        "grep ' /proc/sys ' /proc/self/mountinfo; \
         touch /mnt/data/x 2>/dev/null && echo wrote || echo data-ro; \
         echo 1 2>/dev/null > /proc/sys/kernel/ns_last_pid && echo wrote || echo procsys-ro",
    );
    b.bind(&data, "/mnt/data", &[]);
    let ro = b.config["linux"]["readonlyPaths"].as_array_mut().unwrap();
    ro.push(json!("/mnt/data"));
    ro.push(json!("/does/not/exist"));
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    let m = parse_mountinfo(lines[0]);
    assert!(
        find_mount(&m, "/proc/sys").is_some_and(|x| x.has_opt("ro")),
        "{out}"
    );
    assert_eq!(&lines[1..], ["data-ro", "procsys-ro"], "{out}");
    assert!(!data.join("x").exists());
}

#[test]
fn default_devices_and_dev_symlinks() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("devices");
    let out = ctx.sh_ok(
        "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T %a' /dev/$d; done; \
         for l in ptmx fd stdin stdout stderr; do echo \"$l -> $(readlink /dev/$l)\"; done; \
         test -c /dev/pts/ptmx && echo pts-ptmx; \
         head -c 5 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; \
         echo x 2>/dev/null > /dev/full || echo full-enospc; head -c 8 /dev/urandom | wc -c",
    );
    let want_dev = [
        "/dev/null character special file 1:3 666",
        "/dev/zero character special file 1:5 666",
        "/dev/full character special file 1:7 666",
        "/dev/random character special file 1:8 666",
        "/dev/urandom character special file 1:9 666",
        "/dev/tty character special file 5:0 666",
        "ptmx -> pts/ptmx",
        "fd -> /proc/self/fd",
        "stdin -> /proc/self/fd/0",
        "stdout -> /proc/self/fd/1",
        "stderr -> /proc/self/fd/2",
        "pts-ptmx",
        "5",
        "null-ok",
        "full-enospc",
        "8",
    ];
    let lines: Vec<&str> = out.lines().map(|l| l.trim()).collect();
    assert_eq!(lines, want_dev, "{out}");
}

#[test]
fn linux_devices_are_created() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("linuxdev");
    let mut b = ctx.sh_bundle(
        "stat -c '%F %t:%T %a %u:%g' /dev/berth-null /dev/sub/berth-zero; stat -c '%F %a' /dev/berth-fifo; \
         head -c 3 /dev/sub/berth-zero | wc -c",
    );
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/berth-null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1000, "gid": 1000},
        {"path": "/dev/sub/berth-zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o600, "uid": 0, "gid": 0},
        {"path": "/dev/berth-fifo", "type": "p", "fileMode": 0o644}
    ]);
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().map(|l| l.trim()).collect();
    assert_eq!(
        lines,
        [
            "character special file 1:3 640 1000:1000",
            "character special file 1:5 600 0:0",
            "fifo 644",
            "3"
        ],
        "{out}"
    );
}

/// A mount whose destination is a symlink out of the rootfs must stay inside.
fn symlink_escape(ctx: &Ctx, link_target: impl Fn(&Path) -> String) {
    let host_target = ctx.dir("host-target");
    fs::write(host_target.join("marker"), "host\n").unwrap();
    let mut b = ctx.bundle();
    b.readonly_root(false);
    std::os::unix::fs::symlink(link_target(&host_target), b.rootfs().join("evil")).unwrap();
    b.sh("touch /evil/pwned; echo done");
    b.add_mount(
        json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}),
    );
    let id = ctx.id("evil");
    let out = ctx.run(&b, &id);
    // Like runc, the symlink is resolved inside the rootfs and the mount made
    // there; the host directory must not be touched.
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "done\n", "{out}");
    let entries: Vec<String> = fs::read_dir(&host_target)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries,
        ["marker"],
        "the host directory was written through the symlink: {out}"
    );
    assert_eq!(
        fs::read_to_string(host_target.join("marker")).unwrap(),
        "host\n"
    );
    let hs = host_target.to_string_lossy().into_owned();
    assert!(
        mountinfo_of("self").iter().all(|m| m.mount_point != hs),
        "something is mounted on the host dir"
    );
    ctx.assert_no_trace(&id);
}

#[test]
fn mount_on_absolute_symlink_stays_in_rootfs() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("symabs");
    symlink_escape(&ctx, |t| t.to_string_lossy().into_owned());
}

#[test]
fn mount_on_relative_symlink_stays_in_rootfs() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("symrel");
    symlink_escape(&ctx, |t| {
        format!("../../../../../../../../../..{}", t.display())
    });
}

#[test]
fn no_pivot() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("nopivot");
    let b = ctx.sh_bundle("cat /etc/passwd | cut -d: -f1 | tr '\\n' ' '; echo; grep -c ' /proc ' /proc/self/mountinfo");
    b.write();
    let id = ctx.id("np");
    let out = ctx.rt(&[
        "run",
        "--no-pivot",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    assert_eq!(out.code(), 0, "{out}");
    let lines: Vec<&str> = out.lines();
    assert_eq!(lines[0].trim(), "root berth nobody", "{out}");
    assert_eq!(lines[1], "1", "{out}");
    ctx.assert_no_trace(&id);
}

/// With the bundle on a shared mount, does a host mount made into the rootfs
/// after create show up in the container?
fn propagation_case(ctx: &Ctx, prop: Option<&str>) -> (bool, MountInfo) {
    let shared = ctx.dir("shared");
    ctx.host_mount(&["--bind", shared.to_str().unwrap()], &shared);
    host("mount", &["--make-shared", shared.to_str().unwrap()]);
    let out = ctx.dir("out");
    let mut b = ctx.bundle_in(&shared);
    b.bind(&out, "/run", &[]);
    b.sh("cat /proc/self/mountinfo > /run/info");
    if let Some(p) = prop {
        b.config["linux"]["rootfsPropagation"] = json!(p);
    }
    let id = ctx.id("prop");
    ctx.create(&b, &id);
    ctx.host_mount(
        &["-t", "tmpfs", "-o", "size=1m", "berthprop"],
        &b.rootfs().join("mnt"),
    );
    ctx.start(&id);
    ctx.wait_status(&id, "stopped");
    ctx.delete(&id);
    let info = fs::read_to_string(out.join("info")).unwrap();
    let m = parse_mountinfo(&info);
    let seen = find_mount(&m, "/mnt").is_some_and(|x| x.fstype == "tmpfs");
    (seen, find_mount(&m, "/").unwrap().clone())
}

#[test]
fn rootfs_propagation_private() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("propprivate");
    let (seen, root) = propagation_case(&ctx, Some("private"));
    assert!(!seen, "host mount propagated into a private rootfs");
    assert!(
        !root
            .optional
            .iter()
            .any(|o| o.starts_with("master:") || o.starts_with("shared:")),
        "{root:?}"
    );
}

#[test]
fn rootfs_propagation_rslave() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("propslave");
    let (seen, root) = propagation_case(&ctx, Some("rslave"));
    assert!(seen, "host mount did not propagate into an rslave rootfs");
    assert!(
        root.optional.iter().any(|o| o.starts_with("master:")),
        "{root:?}"
    );
}

#[test]
fn rootfs_propagation_default_is_rslave() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("propdefault");
    let (seen, _) = propagation_case(&ctx, None);
    assert!(
        seen,
        "runc's default (rslave) lets host mounts propagate in"
    );
}

/// A non-bind mount's source goes to mount(2) as written ("proc", "tmpfs"), not as a path in
/// the bundle; a relative bind source is a path in the bundle.
#[test]
fn mount_sources_are_passed_as_written() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("mountsrc");
    let mut b = ctx.sh_bundle("awk '$5 == \"/proc\" || $5 == \"/dev\" {print $5, $(NF-1)}' /proc/self/mountinfo; cat /mnt/marker");
    fs::write(b.path().join("marker"), "from-bundle\n").unwrap();
    b.add_mount(json!({"destination": "/mnt/marker", "type": "bind", "source": "marker", "options": ["bind", "ro"]}));
    let out = ctx.run_ok(&b);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["/proc proc", "/dev tmpfs", "from-bundle"],
        "{out}"
    );
}
