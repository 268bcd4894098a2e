//! Layers: whiteouts and opaque directories across layers, metadata kept, snapshots shared,
//! overlay and copy root filesystems, and hostile layers that must write nothing outside.

mod image_support;

use berth::image::unpack::{apply_layer, UnpackOptions};
use image_support::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn layer_one() -> Vec<u8> {
    let mut t = RawTar::default();
    t.add(Entry::dir("a/"))
        .add(Entry::file("a/x", b"x"))
        .add(Entry::file("a/y", b"y"))
        .add(Entry::dir("b/"))
        .add(Entry::file("b/z", b"z"))
        .add(Entry::file("f", b"plain file"))
        .add(Entry::symlink("l", "f"))
        .add(Entry::hardlink("h", "f"))
        .add(Entry {
            mode: 0o640,
            uid: 1234,
            gid: 5678,
            mtime: 1_000_000,
            xattrs: &[("user.berth", "kept")],
            ..Entry::file("meta", b"m")
        });
    t.finish()
}

fn layer_two() -> Vec<u8> {
    let mut t = RawTar::default();
    t.add(Entry::file("a/.wh.x", b""))
        .add(Entry::dir("b/"))
        .add(Entry::file("b/.wh..wh..opq", b""))
        .add(Entry::file("b/new", b"new in b"))
        .add(Entry::file(".wh.f", b""))
        .add(Entry::dir("c/"))
        .add(Entry::file("c/added", b"added"));
    t.finish()
}

/// What the merged tree must look like, whichever way it was made.
fn check_merged(root: &Path) {
    assert!(!root.join("a/x").exists(), "whiteout a/.wh.x hides a/x");
    assert_eq!(std::fs::read(root.join("a/y")).unwrap(), b"y");
    assert!(!root.join("b/z").exists(), "opaque b/ hides the lower b/z");
    assert_eq!(std::fs::read(root.join("b/new")).unwrap(), b"new in b");
    assert!(!root.join("f").exists(), ".wh.f removes f");
    assert_eq!(
        std::fs::read_link(root.join("l")).unwrap(),
        Path::new("f"),
        "the symlink stays, dangling"
    );
    assert_eq!(
        std::fs::read(root.join("h")).unwrap(),
        b"plain file",
        "the hard link keeps the data"
    );
    assert_eq!(std::fs::read(root.join("c/added")).unwrap(), b"added");
    let m = std::fs::metadata(root.join("meta")).unwrap();
    assert_eq!(
        (m.permissions().mode() & 0o7777, m.uid(), m.gid(), m.mtime()),
        (0o640, 1234, 5678, 1_000_000)
    );
    assert_eq!(
        xattr(&root.join("meta"), "user.berth").as_deref(),
        Some(&b"kept"[..])
    );
    assert!(root.join("bin/busybox").exists());
}

fn xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let k = std::ffi::CString::new(key).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn whiteouts_and_opaque_dirs_in_overlay_and_copy_rootfs() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let s = Scratch::new("whiteouts");
    let store = s.store();
    let script = "ls /a; cat /b/new; echo; ls /b; test -e /f || echo no-f";
    make_image(
        &store,
        "localhost/layers:v1",
        &[busybox_tar(&s), layer_one(), layer_two()],
        cmd(&["sh", "-c", script]),
    );

    for (how, flags) in [("overlay", &[][..]), ("copy", &["--copy"][..])] {
        let dir = s.path(&format!("bundle-{how}"));
        let mut args = vec!["bundle"];
        args.extend_from_slice(flags);
        args.extend(["localhost/layers:v1", dir.to_str().unwrap()]);
        s.berth_ok(&args);
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                std::fs::read_dir(s.data_root().join("image/bundles"))
                    .unwrap()
                    .flatten()
                    .find(|e| {
                        std::fs::read_to_string(e.path())
                            .unwrap()
                            .contains(dir.to_str().unwrap())
                    })
                    .unwrap()
                    .path(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(record["rootfs"], how, "{record}");
        check_merged(&dir.join("rootfs"));
        let id = format!("layers-{how}");
        let out = s.berth_ok(&["run", "--bundle", dir.to_str().unwrap(), &id]);
        assert_eq!(out, "y\nnew in b\nnew\nno-f\n");
        s.berth_ok(&["rm-bundle", dir.to_str().unwrap()]);
        assert!(!dir.exists());
    }
    // Three layers, unpacked once and shared by both bundles.
    assert_eq!(names_in(&s.data_root().join("image/snapshots")).len(), 3);
    assert!(names_in(&s.data_root().join("image/ingest")).is_empty());
}

#[test]
fn a_layer_shared_by_two_images_is_unpacked_once() {
    if !is_root() {
        return;
    }
    let s = Scratch::new("shared");
    let store = s.store();
    let base = busybox_tar(&s);
    let a = make_image(
        &store,
        "localhost/a:1",
        &[base.clone(), layer_one()],
        cmd(&["true"]),
    );
    let b = make_image(
        &store,
        "localhost/b:1",
        &[base, layer_two()],
        cmd(&["true"]),
    );
    store.unpack_image(&a).unwrap();
    let busybox_snapshot = store.snapshot_dirs(&a).unwrap()[0].clone();
    let before = std::fs::metadata(&busybox_snapshot).unwrap().ino();
    store.unpack_image(&b).unwrap();
    assert_eq!(store.snapshot_dirs(&b).unwrap()[0], busybox_snapshot);
    assert_eq!(
        std::fs::metadata(&busybox_snapshot).unwrap().ino(),
        before,
        "not unpacked again"
    );
    assert_eq!(names_in(&s.data_root().join("image/snapshots")).len(), 3);
    // Removing one image keeps the shared snapshot for the other.
    s.berth_ok(&["rmi", "localhost/a:1"]);
    assert!(busybox_snapshot.is_dir());
    assert_eq!(names_in(&s.data_root().join("image/snapshots")).len(), 2);
    s.berth_ok(&["rmi", "localhost/b:1"]);
    assert!(names_in(&s.data_root().join("image/snapshots")).is_empty());
    assert!(names_in(&s.data_root().join("image/blobs/sha256")).is_empty());
}

/// Applies `layer` to a fresh snapshot dir beside an `outside` dir holding a sentinel; returns
/// the result. Whatever happens, nothing outside may change.
fn apply_hostile(s: &Scratch, name: &str, layer: Vec<u8>) -> anyhow::Result<()> {
    let snap = s.path(&format!("{name}/snap"));
    let outside = s.path(&format!("{name}/outside"));
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("sentinel"), b"host").unwrap();
    let result = apply_layer(&snap, &mut &layer[..], UnpackOptions::default());
    assert_eq!(
        names_in(&outside),
        ["sentinel"],
        "{name}: something was written outside"
    );
    assert_eq!(
        std::fs::read(outside.join("sentinel")).unwrap(),
        b"host",
        "{name}: sentinel changed"
    );
    assert_eq!(
        names_in(s.path(name).as_path()),
        ["outside", "snap"],
        "{name}: written beside the snapshot"
    );
    result
}

#[test]
fn hostile_layers_write_nothing_outside_their_snapshot() {
    if !is_root() {
        return;
    }
    let s = Scratch::new("hostile");
    let shadow_before = std::fs::read("/etc/shadow").ok();
    let outside_abs = s.path("symlink-out/outside");
    let outside_abs = outside_abs.to_str().unwrap();

    let tar = |entries: Vec<Entry>| {
        let mut t = RawTar::default();
        for e in entries {
            t.add(e);
        }
        t.finish()
    };

    let e = apply_hostile(
        &s,
        "dotdot",
        tar(vec![Entry::file("../outside/sentinel", b"pwned")]),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains(".."), "{e:#}");
    apply_hostile(
        &s,
        "dotdot-deep",
        tar(vec![Entry::file("a/../../outside/x", b"pwned")]),
    )
    .unwrap_err();

    // A symlink to an absolute host path, then a file through it: lands inside the snapshot.
    apply_hostile(
        &s,
        "symlink-out",
        tar(vec![
            Entry::symlink("evil", outside_abs),
            Entry::file("evil/pwned", b"p"),
        ]),
    )
    .unwrap();
    let inside = s
        .path("symlink-out/snap")
        .join(outside_abs.trim_start_matches('/'))
        .join("pwned");
    assert!(
        inside.exists(),
        "absolute symlink target resolved inside the root"
    );

    // A relative symlink climbing out: clamped at the snapshot root.
    apply_hostile(
        &s,
        "symlink-rel",
        tar(vec![
            Entry::symlink("up", "../../../../../../outside"),
            Entry::file("up/pwned", b"p"),
        ]),
    )
    .unwrap();
    assert!(s.path("symlink-rel/snap/outside/pwned").exists());

    // A file over an existing symlink replaces the link instead of writing through it.
    apply_hostile(
        &s,
        "overwrite",
        tar(vec![
            Entry::symlink(
                "target",
                &format!("{}/sentinel", s.path("overwrite/outside").display()),
            ),
            Entry::file("target", b"pwned"),
        ]),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(s.path("overwrite/snap/target")).unwrap(),
        b"pwned"
    );
    assert!(!std::fs::symlink_metadata(s.path("overwrite/snap/target"))
        .unwrap()
        .file_type()
        .is_symlink());

    // Hard links to host files: refused (the target is not in the layer).
    let e = apply_hostile(
        &s,
        "hardlink-abs",
        tar(vec![Entry::hardlink("shadow", "/etc/shadow")]),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("not in the layer"), "{e:#}");
    apply_hostile(
        &s,
        "hardlink-up",
        tar(vec![Entry::hardlink("x", "../outside/sentinel")]),
    )
    .unwrap_err();
    // ... also through a symlinked directory: resolved inside, so the target is missing.
    apply_hostile(
        &s,
        "hardlink-via-link",
        tar(vec![
            Entry::symlink("etc", "/etc"),
            Entry::hardlink("shadow", "etc/shadow"),
        ]),
    )
    .unwrap_err();

    // Whiteouts of `..` and `.`, and a whiteout through a symlink pointing out.
    apply_hostile(&s, "whiteout-dotdot", tar(vec![Entry::file(".wh...", b"")])).unwrap_err();
    apply_hostile(&s, "whiteout-dot", tar(vec![Entry::file("a/.wh..", b"")])).unwrap_err();
    apply_hostile(
        &s,
        "whiteout-via-link",
        tar(vec![
            Entry::symlink(
                "out",
                &format!("{}", s.path("whiteout-via-link/outside").display()),
            ),
            Entry::file("out/.wh.sentinel", b""),
        ]),
    )
    .unwrap();

    // A device node is made only where allowed.
    let dev = tar(vec![Entry {
        kind: b'3',
        ..Entry::file("null", b"")
    }]);
    let snap = s.path("devices/snap");
    std::fs::create_dir_all(&snap).unwrap();
    apply_layer(
        &snap,
        &mut &dev[..],
        UnpackOptions {
            devices: false,
            ownership: true,
        },
    )
    .unwrap();
    assert!(!snap.join("null").exists());

    assert_eq!(std::fs::read("/etc/shadow").ok(), shadow_before);
}

#[test]
fn a_hostile_or_corrupt_layer_leaves_no_snapshot() {
    if !is_root() {
        return;
    }
    let s = Scratch::new("corrupt");
    let store = s.store();
    let mut t = RawTar::default();
    t.add(Entry::file("ok", b"fine"))
        .add(Entry::file("../escape", b"x"));
    let image = make_image(&store, "localhost/evil:1", &[t.finish()], cmd(&["true"]));
    let e = store.unpack_image(&image).unwrap_err();
    assert!(format!("{e:#}").contains("escape"), "{e:#}");
    assert!(names_in(&s.data_root().join("image/snapshots")).is_empty());
    assert!(names_in(&s.data_root().join("image/ingest")).is_empty());
    let err = s.berth_err(&["bundle", "localhost/evil:1", s.path("b").to_str().unwrap()]);
    assert!(
        err.contains("localhost/evil:1") && err.contains("escape"),
        "{err}"
    );
    assert!(!s.path("b").exists(), "no bundle dir left");
    assert!(!s.dir.join("escape").exists() && !s.data_root().join("image/escape").exists());
}

#[test]
fn zstd_and_plain_layers_unpack_and_bad_layers_are_named() {
    if !is_root() {
        return;
    }
    let s = Scratch::new("formats");
    let store = s.store();
    let busybox = busybox_tar(&s);
    // zstd by the zstd tool (the decoder is ruzstd, a different implementation).
    let plain = s.path("l.tar");
    std::fs::write(&plain, layer_one()).unwrap();
    assert!(std::process::Command::new("zstd")
        .args(["-q", "-f"])
        .arg(&plain)
        .status()
        .unwrap()
        .success());
    let zst = std::fs::read(s.path("l.tar.zst")).unwrap();
    let base = store.ingest_bytes(&gzip(&busybox)).unwrap();
    let zblob = store.ingest_bytes(&zst).unwrap();
    let pblob = store.ingest_bytes(&layer_two()).unwrap();
    let layers: Vec<_> = [base, zblob, pblob]
        .iter()
        .map(|d| berth::image::import::describe_layer(&store, d).unwrap())
        .collect();
    assert_eq!(
        layers[1].media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        layers[2].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    let config = berth::image::config::ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        config: cmd(&["true"]),
        ..Default::default()
    };
    let desc = berth::image::import::assemble_image(&store, &layers, config.clone()).unwrap();
    let manifest = berth::image::Digest::try_from(desc.digest()).unwrap();
    let dirs = store.snapshot_dirs(&manifest).unwrap();
    let root = s.path("merged");
    berth::image::rootfs::copy_snapshots(&dirs, &root).unwrap();
    check_merged(&root);

    // A layer whose content is not what the config's diff id says is refused, and not kept.
    // (A diff id whose snapshot exists is not re-checked: the snapshot is that content.)
    let mut lying = layers.clone();
    lying[2].diff_id = berth::image::Digest::of_bytes(b"some other layer");
    let mut c = config.clone();
    c.config.cmd = vec!["lie".into()];
    let desc = berth::image::import::assemble_image(&store, &lying, c).unwrap();
    let lying_manifest = berth::image::Digest::try_from(desc.digest()).unwrap();
    let e = store.unpack_image(&lying_manifest).unwrap_err();
    assert!(
        format!("{e:#}").contains("does not match the diff id"),
        "{e:#}"
    );
    assert!(!store.snapshot_path(&lying[2].diff_id).exists());
    assert!(names_in(&s.data_root().join("image/ingest")).is_empty());

    // An unknown layer media type is named.
    let m = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/x-weird","digest":"{}","size":1}}]}}"#,
        store.ingest_bytes(br#"{"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#).unwrap(),
        layers[2].blob
    );
    let md = store.ingest_bytes(m.as_bytes()).unwrap();
    let e = store.unpack_image(&md).unwrap_err();
    assert!(format!("{e:#}").contains("application/x-weird"), "{e:#}");
}
