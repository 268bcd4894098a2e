//! Issue 12, the mount half: hostile images and co-tenants against the rootfs code.
//!
//! Each test builds a hostile rootfs (a copy of busybox with symlinks planted), or races the
//! runtime from a host process, and checks the effect where it would show: a host file, the
//! container's mount table, what a masked file reads.
mod common;
use common::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Replaces `path` inside the bundle's rootfs (whatever it is) with a symlink to `target`.
fn plant_symlink(b: &Bundle, path: &str, target: &str) {
    let p = b.rootfs().join(path.trim_start_matches('/'));
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&p).unwrap(),
        Ok(_) => fs::remove_file(&p).unwrap(),
        Err(_) => {}
    }
    symlink(target, &p).unwrap();
}

/// `create` must fail; under berth, its message must hold every one of `words`. Then nothing
/// of the container may be left.
#[track_caller]
fn assert_refused(ctx: &Ctx, out: &Out, id: &str, words: &[&str]) {
    assert!(!out.success(), "create was not refused: {out}");
    eprintln!("refused: {}", out.stderr.trim());
    if is_berth() {
        for w in words {
            assert!(out.stderr.contains(w), "error does not say {w:?}: {out}");
        }
    }
    ctx.assert_no_trace(id);
}

/// A bind whose destination an image symlink sends into /proc (an image link, or a link in a
/// volume mounted just before) is refused: with it, the sysctl written after the mounts went
/// through the bind into a host file.
#[test]
fn mount_into_proc_through_a_symlink_is_refused() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("procdest");
    let canary = ctx.dir("canary").join("file");
    // (how the destination reaches /proc, the sysctl berth would write through it)
    for case in ["image-link", "volume-link"] {
        fs::write(&canary, "host-original\n").unwrap();
        let mut b = ctx.bundle();
        b.args(&["true"]);
        let (dest, key) = if case == "image-link" {
            plant_symlink(&b, "/mnt", "/proc/sys/kernel");
            ("/mnt/domainname", "kernel.domainname")
        } else {
            let volume = ctx.dir("volume");
            symlink("/proc/sys/kernel", volume.join("k")).unwrap();
            b.bind(&volume, "/vol", &[]);
            ("/vol/k/domainname", "kernel.domainname")
        };
        let index = b.config["mounts"].as_array().unwrap().len();
        b.add_mount(
            json!({"destination": dest, "type": "bind", "source": canary,
            "options": ["bind"]}),
        );
        b.config["linux"]["sysctl"] = json!({ key: "escaped" });
        let id = ctx.id(case);
        let out = ctx.try_create(&b, &id);
        assert_eq!(
            fs::read_to_string(&canary).unwrap(),
            "host-original\n",
            "{case}: the container's sysctl was written into a host file: {out}"
        );
        assert_refused(
            &ctx,
            &out,
            &id,
            &[&format!("mounts[{index}].destination"), "inside /proc"],
        );
    }
}

/// The script that reports each of the default config's masked paths: "masked" when a mount
/// covers it, "OPEN" when it exists uncovered; then how much /proc/timer_list reads.
const REPORT_MASKS: &str = "for p in /proc/acpi /proc/asound /proc/kcore /proc/keys \
    /proc/latency_stats /proc/timer_list /proc/timer_stats /proc/sched_debug /sys/firmware \
    /proc/scsi; do \
      if grep -q \" $p \" /proc/self/mountinfo; then echo \"masked $p\"; \
      elif [ -e $p ]; then echo \"OPEN $p\"; fi; \
    done; echo \"timer_list $(head -c 4096 /proc/timer_list | wc -c)\"";

/// Either the run failed (then its message must hold `words`), or every masked path is really
/// covered and /proc/timer_list reads nothing.
#[track_caller]
fn assert_masked_or_refused(ctx: &Ctx, out: &Out, id: &str, words: &[&str]) {
    if !out.success() {
        eprintln!("refused: {}", out.stderr.trim());
        if is_berth() {
            for w in words {
                assert!(out.stderr.contains(w), "error does not say {w:?}: {out}");
            }
        }
        ctx.assert_no_trace(id);
        return;
    }
    assert!(
        !out.stdout.contains("OPEN"),
        "masked paths left open: {out}"
    );
    assert!(
        out.stdout.contains("timer_list 0"),
        "/proc/timer_list still readable: {out}"
    );
}

/// An image whose /dev is a symlink to a magic link: masking must not silently not happen.
#[test]
fn dev_as_a_magic_link_does_not_unmask() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("devmagic");
    for target in [
        "/proc/self/cwd",
        "/proc/1/root/tmp",
        "../proc/self/root/tmp",
    ] {
        let mut b = ctx.sh_bundle(REPORT_MASKS);
        plant_symlink(&b, "/dev", target);
        b.readonly_root(false);
        let id = ctx.id("run");
        let out = ctx.run(&b, &id);
        assert_masked_or_refused(&ctx, &out, &id, &["magic link"]);
    }
}

/// With /dev bound from the bundle, the image decides what /dev/null is: a symlink to the file
/// to be masked, a plain file, another device. None may serve as the mask.
#[test]
fn a_fake_dev_null_is_not_the_mask() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("fakenull");
    for fake in ["symlink", "file", "zero-device"] {
        let mut b = ctx.sh_bundle(REPORT_MASKS);
        let dev = b.path().join("fakedev");
        fs::create_dir(&dev).unwrap();
        let null = dev.join("null");
        match fake {
            "symlink" => symlink("/proc/timer_list", &null).unwrap(),
            "file" => fs::write(&null, "image content\n").unwrap(),
            _ => nix::sys::stat::mknod(
                &null,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                nix::sys::stat::makedev(1, 5),
            )
            .unwrap(),
        }
        b.config["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
        b.add_mount(
            json!({"destination": "/dev", "type": "bind", "source": "fakedev",
            "options": ["rbind"]}),
        );
        let id = ctx.id(fake);
        let out = ctx.run(&b, &id);
        assert_masked_or_refused(&ctx, &out, &id, &["/dev/null", "null device"]);
    }
}

/// A co-tenant (here a host process) swaps the directory holding `ro` binds' destinations with
/// a symlink to /dev while containers are created: the binds must be read-only every time.
/// Before, the remount looked the destination up again and could land on /dev/shm instead
/// (4 to 18 writable binds in 100 creations here).
#[test]
fn ro_bind_stays_read_only_while_its_parent_is_swapped() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("rorace");
    let volume = ctx.dir("volume");
    let source_name = format!("berthrorace{}", std::process::id());
    ctx.host_mount(&["-t", "tmpfs", &source_name], &volume);
    let mut b = ctx.bundle();
    b.args(&["true"]);
    let mnt = b.rootfs().join("mnt");
    // Three binds, three chances a creation for the race; each name is a mount under /dev too.
    for name in ["shm", "pts", "mqueue"] {
        fs::create_dir_all(mnt.join("a").join(name)).unwrap();
        b.bind(&volume, &format!("/mnt/a/{name}"), &["ro"]);
    }
    symlink("/dev", mnt.join("b")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = {
        let (stop, swaps) = (stop.clone(), swaps.clone());
        let (a, bb) = (mnt.join("a"), mnt.join("b"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &a,
                    nix::fcntl::AT_FDCWD,
                    &bb,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .is_ok()
                {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let (mut created, mut failed, mut writable) = (0, 0, Vec::new());
    for _ in 0..100 {
        let id = ctx.id("c");
        let out = ctx.try_create(&b, &id);
        if !out.success() {
            failed += 1;
            continue;
        }
        created += 1;
        let pid = ctx.pid(&id);
        for m in mountinfo_of(&pid.to_string()) {
            if m.source == source_name && !m.has_opt("ro") {
                writable.push(format!("{id}: {} {:?}", m.mount_point, m.mount_opts));
            }
        }
        ctx.rt(&["delete", "--force", &id]).ok();
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    eprintln!(
        "{created} created, {failed} failed, {} swaps, {} writable",
        swaps.load(Ordering::Relaxed),
        writable.len()
    );
    assert!(
        swaps.load(Ordering::Relaxed) > 100,
        "the swapper did not run"
    );
    assert!(
        writable.is_empty(),
        "`ro` binds left writable: {writable:#?}"
    );
    assert!(created > 0, "no container could be created");
}

/// An image whose /proc or /sys is a symlink: proc and sysfs are mounted only on a directory
/// that is really there (runc: "must be mounted on ordinary directory").
#[test]
fn proc_or_sys_as_a_symlink_is_refused() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("procsym");
    for (dir, fstype) in [("/proc", "proc"), ("/sys", "sysfs")] {
        let b = ctx.bundle();
        let elsewhere = format!("/mnt{dir}");
        fs::create_dir_all(b.rootfs().join(elsewhere.trim_start_matches('/'))).unwrap();
        plant_symlink(&b, dir, &elsewhere);
        let index = b.config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .position(|m| m["destination"] == dir)
            .unwrap();
        let id = ctx.id(fstype);
        let out = ctx.try_create(&b, &id);
        if out.success() {
            let pid = ctx.pid(&id);
            let landed: Vec<String> = mountinfo_of(&pid.to_string())
                .into_iter()
                .filter(|m| m.fstype == fstype)
                .map(|m| m.mount_point)
                .collect();
            panic!("{fstype} on the image's symlink {dir} was mounted at {landed:?}");
        }
        assert_refused(
            &ctx,
            &out,
            &id,
            &[
                &format!("mounts[{index}].destination"),
                "must be mounted on ordinary directory",
            ],
        );
    }
}

/// Lists every path under `dir`, for "nothing changed" checks.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            out.push(e.path().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// `root.path` may not lead out of the bundle: not by a symlink named as the rootfs, not by
/// `..`; an absolute root.path is the caller's choice, but not a symlink either.
#[test]
fn root_path_does_not_follow_a_symlink_out_of_the_bundle() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("rootsym");
    let outside = ctx.dir("outside");
    cp_a(&shared_rootfs(), &outside.join("rootfs"));
    fs::write(outside.join("rootfs/marker"), "outside\n").unwrap();
    let before = tree(&outside);
    let outside_rootfs = outside.join("rootfs");
    let relative_up = format!(
        "../{}/rootfs",
        outside.file_name().unwrap().to_string_lossy()
    );
    for case in ["symlink", "dotdot", "absolute-symlink"] {
        let mut b = ctx.bundle();
        b.args(&["true"]);
        fs::remove_dir_all(b.rootfs()).unwrap();
        let words: &[&str] = match case {
            "symlink" => {
                symlink(&outside_rootfs, b.path().join("rootfs")).unwrap();
                &["root.path", "symlink"]
            }
            "dotdot" => {
                b.config["root"]["path"] = json!(relative_up);
                &["root.path", "outside the bundle"]
            }
            _ => {
                symlink(&outside_rootfs, b.path().join("rootfs")).unwrap();
                b.config["root"]["path"] = json!(b.path().join("rootfs"));
                &["root.path", "symlink"]
            }
        };
        let id = ctx.id(case);
        let out = ctx.try_create(&b, &id);
        if out.success() {
            let pid = ctx.pid(&id);
            let seen = fs::read_to_string(format!("/proc/{pid}/root/marker")).unwrap_or_default();
            panic!("{case}: the container was created on the rootfs outside the bundle (its /marker: {seen:?})");
        }
        assert_refused(&ctx, &out, &id, words);
        assert_eq!(tree(&outside), before, "{case}: the outside rootfs changed");
    }
    // An absolute root.path naming a real directory is the caller's explicit choice (Podman).
    let mut b = ctx.bundle();
    b.args(&["cat", "/marker"]);
    b.config["root"]["path"] = json!(outside_rootfs);
    assert_eq!(ctx.run_ok(&b), "outside\n");
}
