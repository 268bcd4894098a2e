//! A container's writable layer and rootfs, on a real overlay: `berth bundle` makes one from a
//! two-layer busybox image, `berth run` changes it from inside, and then diff, commit, export
//! and cp are checked against it (and a committed image is run). cp is also raced against a
//! container process swapping symlinks (CVE-2018-15664): the host must stay untouched.

mod engine_support;

use berth::engine::copy::{copy_from_container, copy_to_container, ContainerFs, CopyOptions};
use berth::image::changes::{changes, format_changes};
use berth::image::commit::{commit, export_rootfs, write_layer_tar, CommitOptions};
use berth::image::config::ImageConfig;
use berth::image::{Digest, Reference};
use engine_support::*;
use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The image's second layer: /etc/motd, a web root, a directory the container replaces, and
/// a hard link.
fn app_layer() -> Vec<u8> {
    let mut t = RawTar::default();
    t.add(Entry::dir("etc/"))
        .add(Entry::file("etc/motd", b"welcome\n"))
        .add(Entry::dir("srv/"))
        .add(Entry::dir("srv/www/"))
        .add(Entry::file("srv/www/index.html", b"<h1>hi</h1>\n"))
        .add(Entry::hardlink("srv/www/index.htm", "srv/www/index.html"))
        .add(Entry::dir("srv/old/"))
        .add(Entry::file("srv/old/stale", b"stale"))
        .add(Entry::file("srv/www/mode.txt", b"m\n"))
        .add(Entry::file("srv/www/a.txt", b"shared\n"))
        .add(Entry::hardlink("srv/www/b.txt", "srv/www/a.txt"))
        .add(Entry {
            mode: 0o640,
            uid: 33,
            gid: 33,
            xattrs: &[("user.origin", "layer2")],
            ..Entry::file("srv/www/secret.conf", b"key=1\n")
        });
    t.finish()
}

/// What the container does to its root filesystem.
const CHANGES: &str = "echo x > /new; rm /etc/motd; echo more >> /srv/www/index.html; \
                       rm -rf /srv/old; mkdir /srv/old; echo fresh > /srv/old/fresh; \
                       ln -s /etc/passwd /plink; mkdir -p /var/cache/app; \
                       chmod 600 /srv/www/mode.txt";

/// A container made the way the engine makes them: an overlay bundle of the image, run once
/// with `script`. Unmounted and removed with the scratch directory.
struct Container {
    s: Scratch,
    manifest: Digest,
    bundle: PathBuf,
}

impl Container {
    fn new(name: &str, script: &str) -> Container {
        let s = Scratch::new(name);
        let store = s.store();
        let manifest = make_image(
            &store,
            "localhost/layers:1",
            &[busybox_tar(&s), app_layer()],
            cmd(&["sh", "-c", script]),
        );
        let bundle = s.path("bundle");
        s.berth_ok(&["bundle", "localhost/layers:1", bundle.to_str().unwrap()]);
        let c = Container {
            s,
            manifest,
            bundle,
        };
        assert!(c.upper().is_dir(), "bundle has an overlay rootfs");
        c.run();
        c
    }

    fn run(&self) -> String {
        // An id of the test's own: tests run at once, each in a scratch root of its own, but
        // a container's default cgroup is named by its id alone (as runc's is), and the
        // delete of a namesake would kill this one with it.
        let id = format!(
            "layers-{}",
            self.s.dir.file_name().unwrap().to_string_lossy()
        );
        self.s
            .berth_ok(&["run", "--bundle", self.bundle.to_str().unwrap(), &id])
    }

    /// Runs the bundle again with another command.
    fn run_with(&self, args: &[&str]) -> String {
        let config = self.bundle.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
        spec["process"]["args"] = serde_json::json!(args);
        std::fs::write(&config, serde_json::to_vec(&spec).unwrap()).unwrap();
        self.run()
    }

    fn upper(&self) -> PathBuf {
        self.bundle.join(".berth/upper")
    }

    fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    fn lowers(&self) -> Vec<PathBuf> {
        self.s.store().snapshot_dirs(&self.manifest).unwrap()
    }
}

fn skip_unless_root() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root (overlay mounts, containers)");
        return true;
    }
    false
}

/// The entries of a tar stream: name, type, and data.
fn tar_entries(bytes: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>, String)> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let kind = e.header().entry_type();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, kind, data, link));
    }
    out
}

#[test]
fn diff_lists_the_containers_changes_in_dockers_order() {
    if skip_unless_root() {
        return;
    }
    let c = Container::new("diff", CHANGES);
    let got = changes(&c.upper(), &c.lowers()).unwrap();
    let text = format_changes(&got);
    // Docker's list for the same changes (its CLI prints this set; see the differential test
    // below), depth first with names sorted: each directory holding a change is listed
    // before it; /srv/old, removed and made again, is changed, its old file deleted. The
    // other name of the changed file (a hard link in the image) is no change.
    assert_eq!(
        text,
        "C /etc\n\
         D /etc/motd\n\
         A /new\n\
         A /plink\n\
         C /srv\n\
         C /srv/old\n\
         A /srv/old/fresh\n\
         D /srv/old/stale\n\
         C /srv/www\n\
         C /srv/www/index.html\n\
         C /srv/www/mode.txt\n\
         C /var\n\
         A /var/cache\n\
         A /var/cache/app\n",
        "got:\n{text}"
    );
}

#[test]
fn commit_makes_an_image_that_runs_and_skopeo_reads() {
    if skip_unless_root() {
        return;
    }
    let c = Container::new("commit", CHANGES);
    let store = c.s.store();
    // The layer itself: OCI whiteouts for the deletion and the re-made directory.
    let mut layer = Vec::new();
    write_layer_tar(&c.upper(), &mut layer).unwrap();
    let entries = tar_entries(&layer);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    for want in [
        "etc/.wh.motd",
        "srv/old/",
        "srv/old/.wh..wh..opq",
        "srv/old/fresh",
        "new",
        "plink",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("trusted.overlay")));

    let r = Reference::parse("localhost/committed:1").unwrap();
    let committed = commit(
        &store,
        Some(&c.manifest),
        &c.upper(),
        &CommitOptions {
            author: Some("Ada <ada@example.com>".into()),
            message: Some("added /new".into()),
            changes: vec![
                "CMD [\"sh\", \"-c\", \"cat /new /srv/old/fresh; ls /srv/old; ls /etc; cat /srv/www/index.htm\"]".into(),
                "ENV FOO=bar".into(),
                "LABEL stage=committed".into(),
            ],
            created_by: Some("sh -c ...".into()),
            reference: Some(r.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(committed.id.to_string().starts_with("sha256:"));
    let (manifest, m) = store
        .image_manifest(&store.resolve(&r).unwrap(), None)
        .unwrap();
    assert_eq!(
        manifest.to_string(),
        committed.manifest.digest().to_string()
    );
    assert_eq!(m.config().digest().to_string(), committed.id.to_string());
    assert_eq!(m.layers().len(), 3);
    let config: ImageConfig = store.read_json(&committed.id).unwrap();
    assert_eq!(config.rootfs.diff_ids.len(), 3);
    assert_eq!(
        config.rootfs.diff_ids[2],
        committed.layer.as_ref().unwrap().diff_id.to_string()
    );
    assert_eq!(config.author.as_deref(), Some("Ada <ada@example.com>"));
    assert!(config.config.env.contains(&"FOO=bar".to_string()));
    assert_eq!(
        config.config.labels.get("stage").map(String::as_str),
        Some("committed")
    );
    let last = config.history.last().unwrap();
    assert_eq!(last["comment"], "added /new");
    assert_eq!(last["created_by"], "sh -c ...");

    // The committed image runs: its layer's whiteouts hide what the container removed.
    let b2 = c.s.path("bundle2");
    c.s.berth_ok(&["bundle", "localhost/committed:1", b2.to_str().unwrap()]);
    let out =
        c.s.berth_ok(&["run", "--bundle", b2.to_str().unwrap(), "committed-run"]);
    assert_eq!(
        out, "x\nfresh\nfresh\ngroup\npasswd\n<h1>hi</h1>\n",
        "ran the committed image"
    );
    c.s.berth_ok(&["rm-bundle", b2.to_str().unwrap()]);

    // skopeo reads the store's layout and copies the image out whole.
    if Path::new("/usr/bin/skopeo").exists() {
        let out_dir = c.s.path("skopeo-out");
        let st = std::process::Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--quiet"])
            .arg(format!(
                "oci:{}:{}",
                store.layout_dir().display(),
                "localhost/committed:1"
            ))
            .arg(format!("oci:{}:copied", out_dir.display()))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }

    // Nothing changed since: a second commit adds no layer, only a history entry.
    let clean = c.s.path("clean-upper");
    std::fs::create_dir_all(&clean).unwrap();
    let again = commit(&store, Some(&manifest), &clean, &CommitOptions::default()).unwrap();
    assert!(again.layer.is_none());
    let config2: ImageConfig = store.read_json(&again.id).unwrap();
    assert_eq!(config2.rootfs.diff_ids, config.rootfs.diff_ids);
    assert_eq!(config2.history.last().unwrap()["empty_layer"], true);
    assert!(
        config2.author.is_none(),
        "the author is commit's, not inherited"
    );
}

#[test]
fn export_tars_the_whole_root_filesystem() {
    if skip_unless_root() {
        return;
    }
    let c = Container::new("export", CHANGES);
    let mut tar = Vec::new();
    export_rootfs(&c.rootfs(), &mut tar).unwrap();
    let entries = tar_entries(&tar);
    let names: BTreeSet<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    // The merged view, Docker's names: no root entry, no `./`, directories with a slash.
    for want in [
        "bin/",
        "bin/busybox",
        "etc/passwd",
        "new",
        "srv/old/fresh",
        "srv/www/index.html",
    ] {
        assert!(names.contains(want), "{want} missing");
    }
    for gone in ["etc/motd", "srv/old/stale", "./", "/"] {
        assert!(!names.contains(gone), "{gone} exported");
    }
    assert!(!names
        .iter()
        .any(|n| n.starts_with("./") || n.contains(".wh.")));
    // Everything on the merged tree is there, nothing else.
    let mut on_disk = BTreeSet::new();
    fn collect(dir: &Path, rel: &str, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = format!("{rel}{}", e.file_name().to_string_lossy());
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{name}/"));
                collect(&e.path(), &format!("{name}/"), out);
            } else {
                out.insert(name);
            }
        }
    }
    collect(&c.rootfs(), "", &mut on_disk);
    assert_eq!(
        names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        on_disk
    );
    // Data, hard links, symlinks and metadata as they are in the container.
    let find = |n: &str| entries.iter().find(|e| e.0 == n).unwrap();
    assert_eq!(find("srv/www/index.html").2, b"<h1>hi</h1>\nmore\n");
    let b = find("srv/www/b.txt");
    assert_eq!(
        b.1,
        tar::EntryType::Link,
        "the other name of the same inode"
    );
    assert_eq!(b.3, "srv/www/a.txt");
    // Copying index.html up split it from its hard link: two files now, as in the container.
    assert_eq!(find("srv/www/index.htm").1, tar::EntryType::Regular);
    assert_eq!(find("plink").3, "/etc/passwd");
    let mut archive = tar::Archive::new(&tar[..]);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if &*e.path_bytes() == b"srv/www/secret.conf" {
            let h = e.header();
            assert_eq!(
                (h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
                (0o640, 33, 33)
            );
            let xattrs: Vec<(String, Vec<u8>)> = e
                .pax_extensions()
                .unwrap()
                .unwrap()
                .map(|x| {
                    let x = x.unwrap();
                    (x.key().unwrap().to_string(), x.value_bytes().to_vec())
                })
                .collect();
            assert!(xattrs.contains(&("SCHILY.xattr.user.origin".into(), b"layer2".to_vec())));
        }
    }
}

#[test]
fn cp_copies_both_ways_and_the_container_sees_it() {
    if skip_unless_root() {
        return;
    }
    let c = Container::new("cp", CHANGES);
    let fs = ContainerFs {
        rootfs: &c.rootfs(),
        name: "c1",
    };
    let host = c.s.path("host");
    std::fs::create_dir_all(host.join("in/sub")).unwrap();
    std::fs::write(host.join("in/sub/file"), b"from the host\n").unwrap();
    nix::unistd::chown(
        &host.join("in/sub/file"),
        Some(nix::unistd::Uid::from_raw(1000)),
        Some(nix::unistd::Gid::from_raw(1000)),
    )
    .unwrap();
    let o = CopyOptions::default();
    let a = CopyOptions { archive: true, ..o };
    // Out: a directory, its contents, a file by a symlink (-L), as a tar stream.
    copy_from_container(
        &fs,
        "/srv/www",
        host.to_str().unwrap(),
        &mut std::io::sink(),
        o,
    )
    .unwrap();
    assert_eq!(
        std::fs::read(host.join("www/index.html")).unwrap(),
        b"<h1>hi</h1>\nmore\n"
    );
    assert_eq!(
        std::fs::metadata(host.join("www/b.txt")).unwrap().ino(),
        std::fs::metadata(host.join("www/a.txt")).unwrap().ino()
    );
    let m = std::fs::metadata(host.join("www/secret.conf")).unwrap();
    assert_eq!(
        (m.uid(), m.mode() & 0o7777),
        (0, 0o640),
        "owned by the caller without -a"
    );
    copy_from_container(
        &fs,
        "/srv/www/secret.conf",
        host.join("kept").to_str().unwrap(),
        &mut std::io::sink(),
        a,
    )
    .unwrap();
    assert_eq!(std::fs::metadata(host.join("kept")).unwrap().uid(), 33);
    let follow = CopyOptions {
        follow_link: true,
        ..o
    };
    copy_from_container(
        &fs,
        "/plink",
        host.to_str().unwrap(),
        &mut std::io::sink(),
        follow,
    )
    .unwrap();
    assert!(std::fs::read_to_string(host.join("plink"))
        .unwrap()
        .starts_with("root:"));
    let mut stream = Vec::new();
    copy_from_container(&fs, "/srv/old", "-", &mut stream, o).unwrap();
    let names: Vec<String> = tar_entries(&stream).into_iter().map(|e| e.0).collect();
    assert_eq!(names, vec!["old/", "old/fresh"]);

    // In: a directory under a new name (-a keeps its owner), then a tar stream into /tmp.
    copy_to_container(
        &fs,
        host.join("in").to_str().unwrap(),
        &mut std::io::empty(),
        "/copied",
        a,
    )
    .unwrap();
    copy_to_container(&fs, "-", &mut &stream[..], "/tmp", o).unwrap();
    let err = copy_to_container(
        &fs,
        host.join("in").to_str().unwrap(),
        &mut std::io::empty(),
        "/nope/x",
        o,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Could not find the file /nope in container c1"
    );
    // The container sees both, with their owners.
    let out = c.run_with(&[
        "sh",
        "-c",
        "cat /copied/sub/file /tmp/old/fresh; stat -c '%u:%g' /copied/sub/file /tmp/old/fresh",
    ]);
    assert_eq!(out, "from the host\nfresh\n1000:1000\n0:0\n");
    // And the copies are the container's changes.
    let text = format_changes(&changes(&c.upper(), &c.lowers()).unwrap());
    assert!(
        text.contains("A /copied/sub/file\n") && text.contains("A /tmp/old/fresh\n"),
        "{text}"
    );
}

/// CVE-2018-15664: while cp runs, a process flips a directory of the container's tree with a
/// symlink to a host directory (absolute, and by `..`). Neither direction may read or write
/// the host directory: its canary stays as it was, nothing lands beside it, and no copy out
/// ever holds its content.
#[test]
fn cp_raced_by_a_symlink_swap_stays_inside_the_root() {
    if skip_unless_root() {
        return;
    }
    let c = Container::new("race", "mkdir -p /w/d; echo inside > /w/d/secret");
    let canary_dir = c.s.path("host-canary");
    std::fs::create_dir_all(&canary_dir).unwrap();
    std::fs::write(canary_dir.join("secret"), b"HOST SECRET\n").unwrap();
    let rootfs = c.rootfs();
    let depth = rootfs.components().count() + 2;
    let climbing = format!(
        "{}{}",
        "../".repeat(depth),
        canary_dir.strip_prefix("/").unwrap().display()
    );
    // The swapper works on the container's tree as a process in it would (from the host
    // side of the same overlay): rename the real directory away, put a symlink in its
    // place, put the directory back, forever.
    let w = rootfs.join("w");
    let script = format!(
        "cd {w}; while :; do mv d d.real; ln -s {abs} d; rm d; ln -s {rel} d; rm d; mv d.real d; done",
        w = w.display(),
        abs = canary_dir.display(),
        rel = climbing,
    );
    let swapper = std::process::Command::new(busybox_rootfs().join("bin/busybox"))
        .args(["sh", "-c", &script])
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(swapper);
    let fs = ContainerFs {
        rootfs: &rootfs,
        name: "c1",
    };
    let payload = c.s.path("payload");
    std::fs::write(&payload, b"payload from cp\n").unwrap();
    let out_dir = c.s.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let (mut wrote, mut read) = (0, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    let mut i = 0;
    while std::time::Instant::now() < deadline {
        i += 1;
        if copy_to_container(
            &fs,
            payload.to_str().unwrap(),
            &mut std::io::empty(),
            "/w/d/secret",
            CopyOptions::default(),
        )
        .is_ok()
        {
            wrote += 1;
        }
        let dest = out_dir.join(format!("got{i}"));
        let follow = CopyOptions {
            follow_link: i % 2 == 0,
            ..Default::default()
        };
        if copy_from_container(
            &fs,
            "/w/d/secret",
            dest.to_str().unwrap(),
            &mut std::io::sink(),
            follow,
        )
        .is_ok()
        {
            read += 1;
            if let Ok(bytes) = std::fs::read(&dest) {
                assert_ne!(bytes, b"HOST SECRET\n", "cp read the host's file");
            }
        }
        // The whole directory too (the walk holds fds as it goes).
        let _ = copy_from_container(
            &fs,
            "/w",
            out_dir.join(format!("tree{i}")).to_str().unwrap(),
            &mut std::io::sink(),
            CopyOptions::default(),
        );
    }
    drop(_guard);
    assert!(
        wrote > 0 && read > 0,
        "the race ran ({wrote} writes, {read} reads)"
    );
    assert_eq!(
        std::fs::read(canary_dir.join("secret")).unwrap(),
        b"HOST SECRET\n"
    );
    assert_eq!(
        names_in(&canary_dir),
        vec!["secret".to_string()],
        "nothing written beside it"
    );
    for e in walkdir(&out_dir) {
        if e.is_file() {
            assert_ne!(
                std::fs::read(&e).unwrap(),
                b"HOST SECRET\n",
                "{} holds the host's secret",
                e.display()
            );
        }
    }
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walkdir(&p));
        }
        out.push(p);
    }
    out
}

// ---- Through the engine's commands: `berth container diff|commit|export|cp` and aliases.

/// A data root with the two-layer image as `localhost/layers:1`; its containers are removed
/// when dropped.
struct Eng {
    s: Scratch,
}

impl Eng {
    fn new(name: &str) -> Option<Eng> {
        if skip_unless_root() {
            return None;
        }
        let s = Scratch::new(&format!("englayers-{name}"));
        let store = s.store();
        let mut cfg = cmd(&["sh"]);
        cfg.env = vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()];
        make_image(
            &store,
            "localhost/layers:1",
            &[busybox_tar(&s), app_layer()],
            cfg,
        );
        Some(Eng { s })
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.s.berth(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn ok_bytes(&self, args: &[&str]) -> Vec<u8> {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Exit code and stderr of a command that must fail.
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

    fn wait_running(&self, c: &str) {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.inspect(c, "{{.State.Status}}") != "running" {
            assert!(std::time::Instant::now() < end, "{c} never ran");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
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

#[test]
fn container_diff_and_commit_through_the_cli() {
    let Some(e) = Eng::new("commit") else { return };
    e.ok(&[
        "container",
        "run",
        "--name",
        "c1",
        "localhost/layers:1",
        "sh",
        "-c",
        CHANGES,
    ]);
    let diff = e.ok(&["container", "diff", "c1"]);
    for want in [
        "C /etc\nD /etc/motd\n",
        "A /new\n",
        "C /srv/old\nA /srv/old/fresh\nD /srv/old/stale\n",
        "C /srv/www/mode.txt\n",
    ] {
        assert!(diff.contains(want), "{want:?} missing from:\n{diff}");
    }
    assert_eq!(
        e.ok(&["diff", "c1"]),
        diff,
        "the top-level alias says the same"
    );
    // The mount points of the files berth bind-mounts are not the container's changes.
    assert!(
        !diff.contains("/etc/hosts") && !diff.contains("/etc/resolv.conf"),
        "{diff}"
    );

    // commit: the image id on stdout, the config edited, the image runs.
    let out = e.ok(&[
        "container",
        "commit",
        "-a",
        "Ada",
        "-m",
        "from c1",
        "-c",
        "ENV X=1",
        "-c",
        "CMD [\"cat\", \"/new\"]",
        "c1",
        "localhost/committed:2",
    ]);
    let id = out.trim_end();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out:?}");
    let store = e.s.store();
    let desc = store
        .resolve(&Reference::parse("localhost/committed:2").unwrap())
        .unwrap();
    assert_eq!(store.image_id(&desc).to_string(), id);
    let config: ImageConfig = store.read_json(&Digest::parse(id).unwrap()).unwrap();
    assert_eq!(config.author.as_deref(), Some("Ada"));
    assert_eq!(config.config.cmd, vec!["cat", "/new"]);
    assert!(config.config.env.contains(&"X=1".to_string()));
    assert_eq!(
        config.history.last().unwrap()["created_by"],
        format!("sh -c {CHANGES}")
    );
    // The new layer holds the container's changes, not the mount points berth made.
    let (_, m) = store.image_manifest(&desc, None).unwrap();
    let top = Digest::try_from(m.layers().last().unwrap().digest()).unwrap();
    let (_, mut raw) = berth::image::unpack::decompress(store.open_blob(&top).unwrap()).unwrap();
    let mut layer = Vec::new();
    raw.read_to_end(&mut layer).unwrap();
    let in_layer: Vec<String> = tar_entries(&layer).into_iter().map(|e| e.0).collect();
    assert!(
        in_layer.contains(&"etc/.wh.motd".to_string()) && in_layer.contains(&"new".to_string())
    );
    assert!(
        !in_layer
            .iter()
            .any(|n| n == "etc/hosts" || n == "etc/resolv.conf" || n == "etc/hostname"),
        "{in_layer:?}"
    );
    assert_eq!(
        e.ok(&["container", "run", "--rm", "localhost/committed:2"]),
        "x\n"
    );
    let out = e.ok(&[
        "container",
        "run",
        "--rm",
        "localhost/committed:2",
        "sh",
        "-c",
        "echo $X; test -e /etc/motd || echo motd gone; cat /srv/old/fresh; ls /srv/old",
    ]);
    assert_eq!(out, "1\nmotd gone\nfresh\nfresh\n");

    // A running container is paused for the commit and runs on after it.
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "live",
        "localhost/layers:1",
        "sh",
        "-c",
        "echo during > /during; exec sleep 1000",
    ]);
    e.wait_running("live");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !e.ok(&["diff", "live"]).contains("A /during") {
        assert!(
            std::time::Instant::now() < end,
            "the container never wrote /during"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    e.ok(&["commit", "live", "localhost/live:1"]);
    assert_eq!(e.inspect("live", "{{.State.Status}}"), "running");
    assert_eq!(
        e.ok(&[
            "container",
            "run",
            "--rm",
            "localhost/live:1",
            "cat",
            "/during"
        ]),
        "during\n"
    );

    // Bad input: Docker's words, exit 1, no image made.
    let (code, err) = e.fails(&["container", "diff", "nosuch"]);
    assert_eq!(
        (code, err.trim_end()),
        (1, "Error response from daemon: No such container: nosuch")
    );
    let (code, err) = e.fails(&["commit", "-c", "RUN rm -rf /", "c1", "localhost/bad:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("run is not a valid change command"), "{err}");
    assert!(store
        .resolve(&Reference::parse("localhost/bad:1").unwrap())
        .is_err());
}

#[test]
fn container_export_and_cp_through_the_cli() {
    let Some(e) = Eng::new("cp") else { return };
    e.ok(&[
        "container",
        "run",
        "--name",
        "c1",
        "localhost/layers:1",
        "sh",
        "-c",
        CHANGES,
    ]);
    // export: to a file with -o, or to stdout; the same tar either way.
    let file = e.s.path("c1.tar");
    e.ok(&["container", "export", "-o", file.to_str().unwrap(), "c1"]);
    let tar = std::fs::read(&file).unwrap();
    assert_eq!(e.ok_bytes(&["export", "c1"]), tar);
    let names: BTreeSet<String> = tar_entries(&tar).into_iter().map(|e| e.0).collect();
    assert!(names.contains("new") && names.contains("bin/busybox") && !names.contains("etc/motd"));

    // cp out of the exited container: a file, a directory, a tar stream.
    let host = e.s.path("host");
    std::fs::create_dir_all(&host).unwrap();
    e.ok(&["container", "cp", "c1:/new", host.to_str().unwrap()]);
    assert_eq!(std::fs::read(host.join("new")).unwrap(), b"x\n");
    e.ok(&["cp", "c1:/srv/www/.", host.join("www").to_str().unwrap()]);
    assert!(host.join("www/index.html").is_file() && host.join("www/b.txt").is_file());
    let stream = e.ok_bytes(&["cp", "c1:/srv/old", "-"]);
    let listed: Vec<String> = tar_entries(&stream).into_iter().map(|e| e.0).collect();
    assert_eq!(listed, vec!["old/", "old/fresh"]);

    // Its rootfs unmounted (as after a reboot): cp mounts it again.
    let id = e.inspect("c1", "{{.Id}}");
    let rootfs =
        e.s.data_root()
            .join(format!("containers/{id}/bundle/rootfs"));
    nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH).unwrap();
    let again = tar_entries(&e.ok_bytes(&["cp", "c1:/srv/old/fresh", "-"]));
    assert_eq!(
        (again[0].0.as_str(), &again[0].2[..]),
        ("fresh", &b"fresh\n"[..])
    );

    // cp into a running container; it sees the files from inside.
    std::fs::create_dir_all(host.join("in/sub")).unwrap();
    std::fs::write(host.join("in/sub/file"), b"from the host\n").unwrap();
    nix::unistd::chown(
        &host.join("in/sub/file"),
        Some(nix::unistd::Uid::from_raw(1000)),
        Some(nix::unistd::Gid::from_raw(1000)),
    )
    .unwrap();
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "live",
        "localhost/layers:1",
        "sleep",
        "1000",
    ]);
    e.wait_running("live");
    e.ok(&["cp", host.join("in").to_str().unwrap(), "live:/copied"]);
    e.ok(&[
        "cp",
        "-a",
        host.join("in/sub/file").to_str().unwrap(),
        "live:/kept",
    ]);
    let mut piped = e.s.command(&["container", "cp", "-", "live:/tmp"]);
    piped.stdin(std::process::Stdio::piped());
    let mut child = piped.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &stream).unwrap();
    assert!(child.wait().unwrap().success());
    let inside = e.ok(&[
        "container",
        "exec",
        "live",
        "sh",
        "-c",
        "cat /copied/sub/file /tmp/old/fresh; stat -c '%u:%g' /copied/sub/file /kept",
    ]);
    assert_eq!(inside, "from the host\nfresh\n0:0\n1000:1000\n");

    // Docker's errors.
    let (code, err) = e.fails(&["cp", "c1:/nope", host.to_str().unwrap()]);
    assert_eq!(
        (code, err.trim_end()),
        (
            1,
            "Error response from daemon: Could not find the file /nope in container c1"
        )
    );
    let (_, err) = e.fails(&["cp", host.to_str().unwrap(), "/tmp/x"]);
    assert_eq!(err.trim_end(), "must specify at least one container source");
    let (_, err) = e.fails(&["cp", "c1:/new", "live:/new"]);
    assert_eq!(
        err.trim_end(),
        "copying between containers is not supported"
    );
    let (_, err) = e.fails(&["cp", "-", "live:/etc/passwd"]);
    assert_eq!(
        err.trim_end(),
        "destination \"live:/etc/passwd\" must be a directory"
    );
    let (_, err) = e.fails(&["cp", "nosuch:/x", host.to_str().unwrap()]);
    assert_eq!(
        err.trim_end(),
        "Error response from daemon: No such container: nosuch"
    );
}

/// cp reaches the container's volumes and bind mounts (`-v`) as Docker's daemon does, through
/// mounts only its own process sees, and the container sees what it copied there; read-only
/// mounts and a read-only rootfs refuse copies in.
#[test]
fn cp_reaches_volumes_and_refuses_read_only_places() {
    let Some(e) = Eng::new("volumes") else { return };
    let bind = e.s.path("bind");
    let ro = e.s.path("ro");
    std::fs::create_dir_all(&bind).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(bind.join("inside"), b"in the bind mount\n").unwrap();
    let bind_arg = format!("{}:/srv/data", bind.display());
    let ro_arg = format!("{}:/srv/data/ro:ro", ro.display());
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "vc",
        "-v",
        &bind_arg,
        "-v",
        &ro_arg,
        "-v",
        "named:/vol",
        "localhost/layers:1",
        "sleep",
        "1000",
    ]);
    e.wait_running("vc");

    let host = e.s.path("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), b"payload\n").unwrap();
    e.ok(&["cp", host.join("f").to_str().unwrap(), "vc:/srv/data/"]);
    assert_eq!(
        std::fs::read(bind.join("f")).unwrap(),
        b"payload\n",
        "landed in the bind mount"
    );
    e.ok(&["cp", host.join("f").to_str().unwrap(), "vc:/vol/g"]);
    let tar = e.ok_bytes(&["cp", "vc:/srv/data/inside", "-"]);
    assert_eq!(tar_entries(&tar)[0].2, b"in the bind mount\n");
    let inside = e.ok(&["container", "exec", "vc", "cat", "/srv/data/f", "/vol/g"]);
    assert_eq!(
        inside, "payload\npayload\n",
        "the container sees the copies"
    );
    let (code, err) = e.fails(&["cp", host.join("f").to_str().unwrap(), "vc:/srv/data/ro/f"]);
    assert_eq!(
        (code, err.trim_end()),
        (
            1,
            "Error response from daemon: mounted volume is marked read-only"
        )
    );
    assert!(!ro.join("f").exists());
    // The mounts were the cp process's own.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(bind.to_str().unwrap()),
        "a volume mount leaked"
    );
    // export leaves the volumes out, as Docker's does.
    let names: BTreeSet<String> = tar_entries(&e.ok_bytes(&["export", "vc"]))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert!(
        names.contains("srv/data/") && !names.contains("srv/data/f") && !names.contains("vol/g")
    );

    e.ok(&[
        "container",
        "create",
        "--read-only",
        "--name",
        "rc",
        "localhost/layers:1",
        "true",
    ]);
    let (_, err) = e.fails(&["cp", host.join("f").to_str().unwrap(), "rc:/f"]);
    assert_eq!(
        err.trim_end(),
        "Error response from daemon: container rootfs is marked read-only"
    );
    e.ok(&[
        "cp",
        "rc:/etc/passwd",
        host.join("passwd").to_str().unwrap(),
    ]);
}

// ---- Differential: the same image, changes and commands under a private dockerd.

/// Docker and berth run the same image and the same changes; diff's list, cp's path rules
/// and errors, export's names, and commit's config edits must agree. (Docker's diff order
/// follows a Go map's where its overlay2 driver compares whole trees, so the lists are
/// compared as sets; berth's order is the depth-first one of its native overlay walk.)
#[test]
fn cp_export_commit_and_diff_agree_with_docker() {
    let Some(e) = Eng::new("docker") else { return };
    let Some(dk) =
        engine_support::Dockerd::start().map(engine_support::Dockerd::with_client_in_path)
    else {
        return;
    };
    let archive = e.s.path("layers.tar");
    e.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "localhost/layers:1",
    ]);
    dk.ok_bytes(&["load", "-i", archive.to_str().unwrap()]);

    let script = CHANGES;
    e.ok(&[
        "container",
        "run",
        "--name",
        "c1",
        "localhost/layers:1",
        "sh",
        "-c",
        script,
    ]);
    dk.ok_bytes(&[
        "run",
        "--name",
        "c1",
        "--network",
        "none",
        "localhost/layers:1",
        "sh",
        "-c",
        script,
    ]);

    // diff, as sets.
    let set = |b: Vec<u8>| -> BTreeSet<String> {
        String::from_utf8(b)
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    };
    let ours = set(e.ok_bytes(&["container", "diff", "c1"]));
    let theirs = set(dk.ok_bytes(&["diff", "c1"]));
    // Docker's init layer hides its own mount points, as berth's diff hides its stubs.
    assert_eq!(ours, theirs, "diff");
    assert!(ours.contains("D /srv/old/stale"), "{ours:?}");

    // cp: the same cases give the same results and the same messages.
    let host = e.s.path("cp");
    for side in ["berth", "docker"] {
        std::fs::create_dir_all(host.join(side)).unwrap();
        std::fs::write(host.join(side).join("file"), b"f\n").unwrap();
    }
    let cases: &[&[&str]] = &[
        &["c1:/nope", "{h}/x"],
        &["c1:/etc/passwd", "{h}/nonexist/x"],
        &["c1:/etc", "{h}/file"],
        &["c1:/etc/passwd", "{h}/newdir/"],
        &["{h}/file", "c1:/nope/x"],
        &["{h}/nofile", "c1:/"],
        &["c1:/a", "c1:/b"],
        &["{h}/a", "{h}/b"],
        &["c1:/srv/www", "{h}/"],
        &["c1:/srv/www/.", "{h}/contents"],
        &["c1:/srv/www/index.html", "{h}/renamed"],
        &["-L", "c1:/plink", "{h}/"],
        &["c1:/plink", "{h}/link"],
        &["{h}/file", "c1:/srv/www/"],
        &["{h}/file", "c1:/srv/www/a.txt"],
        &["{h}/contents", "c1:/copied"],
    ];
    for case in cases {
        let mut outs = Vec::new();
        for side in ["berth", "docker"] {
            let h = host.join(side);
            let args: Vec<String> = case
                .iter()
                .map(|a| a.replace("{h}", h.to_str().unwrap()))
                .collect();
            let mut argv: Vec<&str> = vec!["cp"];
            argv.extend(args.iter().map(String::as_str));
            let out = if side == "berth" {
                e.run(&argv)
            } else {
                dk.output(&argv)
            };
            let err = String::from_utf8_lossy(&out.stderr).replace(h.to_str().unwrap(), "{h}");
            // Docker's daemon names its own overlay path in an lstat error; nothing here
            // should reach one.
            outs.push((out.status.code(), err.trim_end().to_string()));
        }
        assert_eq!(outs[0], outs[1], "docker cp {case:?}: berth vs docker");
    }
    // The host trees the copies made are alike (names, types, contents, modes).
    let tree = |root: &Path| -> BTreeSet<String> {
        walkdir(root)
            .into_iter()
            .map(|p| {
                let m = std::fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let what = if m.file_type().is_symlink() {
                    format!("-> {}", std::fs::read_link(&p).unwrap().display())
                } else if m.is_file() {
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned()
                } else {
                    "dir".into()
                };
                format!("{rel} {:o} {what}", m.mode() & 0o7777)
            })
            .collect()
    };
    assert_eq!(
        tree(&host.join("berth")),
        tree(&host.join("docker")),
        "copied trees"
    );

    // export: the same names, but for what each engine adds of its own.
    let names = |tar: Vec<u8>| -> BTreeSet<String> {
        tar_entries(&tar)
            .into_iter()
            .map(|e| e.0)
            .filter(|n| {
                n != ".dockerenv"
                    && n != "etc/mtab"
                    && !n.starts_with("dev/")
                    && !n.starts_with("etc/host")
                    && n != "etc/resolv.conf"
            })
            .collect()
    };
    assert_eq!(
        names(e.ok_bytes(&["export", "c1"])),
        names(dk.ok_bytes(&["export", "c1"])),
        "export names"
    );

    // commit with the same changes: the same config edits (Docker 20.10 takes no
    // STOPSIGNAL in --change; berth does, as newer Docker).
    let changes = [
        "ENV X=1 Y=\"two words\"",
        "ENTRYPOINT [\"/bin/sh\"]",
        "EXPOSE 80 53/udp",
        "LABEL a=b",
        "WORKDIR /srv",
        "USER 33:33",
        "VOLUME /data",
    ];
    let mut ours_args = vec!["commit".to_string()];
    for c in changes {
        ours_args.push("-c".into());
        ours_args.push(c.into());
    }
    ours_args.extend(["c1".to_string(), "localhost/committed:1".to_string()]);
    let argv: Vec<&str> = ours_args.iter().map(String::as_str).collect();
    e.ok(&argv);
    dk.ok_bytes(&argv);
    let store = e.s.store();
    let desc = store
        .resolve(&Reference::parse("localhost/committed:1").unwrap())
        .unwrap();
    let ours: serde_json::Value = store.read_json(&store.image_id(&desc)).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_slice(&dk.ok_bytes(&["image", "inspect", "localhost/committed:1"]))
            .unwrap();
    for key in [
        "Env",
        "Entrypoint",
        "Cmd",
        "ExposedPorts",
        "Labels",
        "WorkingDir",
        "User",
        "StopSignal",
        "Volumes",
    ] {
        let null_if_empty = |v: &serde_json::Value| match v {
            serde_json::Value::Object(m) if m.is_empty() => serde_json::Value::Null,
            serde_json::Value::Array(a) if a.is_empty() => serde_json::Value::Null,
            serde_json::Value::String(s) if s.is_empty() => serde_json::Value::Null,
            v => v.clone(),
        };
        assert_eq!(
            null_if_empty(&ours["config"][key]),
            null_if_empty(&theirs[0]["Config"][key]),
            "committed Config.{key}"
        );
    }
}

/// A container's symlinks to the host's tree (`/`, by `..`, to /etc/shadow) are recorded as
/// symlinks by diff, commit's layer and export, and never followed: nothing of the host's
/// files gets into what they write.
#[test]
fn symlinks_out_of_the_container_are_never_followed() {
    if skip_unless_root() {
        return;
    }
    let c = Container::new(
        "symlinks",
        "ln -s / /hostroot; ln -s ../../../../../../../../etc /climb; mkdir /d; \
         ln -s /etc/shadow /d/shadow; ln -s /proc/self/root /procroot",
    );
    let links = ["hostroot", "climb", "d/shadow", "procroot"];
    // The image's own /etc/passwd and /etc/group are exported as themselves.
    let check = |what: &str, tar: &[u8]| {
        for (name, kind, data, _) in tar_entries(tar) {
            if name == "etc/passwd" || name == "etc/group" {
                continue;
            }
            for l in links {
                assert!(
                    !name.starts_with(&format!("{l}/")),
                    "{what} followed {l}: {name}"
                );
                if name == l {
                    assert_eq!(kind, tar::EntryType::Symlink, "{what}: {name}");
                }
            }
            assert!(
                !String::from_utf8_lossy(&data).contains("root:"),
                "{what}: {name} holds a passwd or shadow"
            );
        }
    };
    let mut layer = Vec::new();
    write_layer_tar(&c.upper(), &mut layer).unwrap();
    check("the layer", &layer);
    let mut export = Vec::new();
    export_rootfs(&c.rootfs(), &mut export).unwrap();
    check("export", &export);
    let text = format_changes(&changes(&c.upper(), &c.lowers()).unwrap());
    for want in [
        "A /climb\n",
        "A /d\n",
        "A /d/shadow\n",
        "A /hostroot\n",
        "A /procroot\n",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    assert_eq!(text.lines().count(), 5, "{text}");
}
