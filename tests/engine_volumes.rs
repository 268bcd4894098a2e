//! Volumes and the mount flags of run/create, for real: images made here, bundles made by
//! `berth bundle`, volumes made and filled from the bundle's rootfs by the engine's functions,
//! and the resulting OCI mounts run by `berth run`; checked from inside the container and from
//! outside (the volume directories, mountinfo).

mod image_support;

use berth::engine::mounts::{
    fill_volumes, inspect_mounts, oci_mounts, prepare_volumes, release_volumes, resolve, MountArgs,
    MountRequest,
};
use berth::engine::volume::{FillOutcome, VolumeStore};
use berth::image::config::ContainerConfig;
use image_support::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn config_with_volumes(volumes: &[&str]) -> ContainerConfig {
    ContainerConfig {
        cmd: vec!["sh".into()],
        volumes: volumes
            .iter()
            .map(|v| (v.to_string(), serde_json::json!({})))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

/// The image's content under /srv/data: owners, modes, an xattr, a symlink, a hard link.
fn data_layer() -> Vec<u8> {
    let mut t = RawTar::default();
    t.add(Entry {
        mode: 0o770,
        uid: 1000,
        gid: 1001,
        ..Entry::dir("srv/")
    })
    .add(Entry {
        mode: 0o750,
        uid: 1000,
        gid: 1001,
        ..Entry::dir("srv/data/")
    })
    .add(Entry {
        mode: 0o640,
        uid: 1000,
        gid: 1001,
        xattrs: &[("user.berth", "kept")],
        ..Entry::file("srv/data/conf", b"from the image\n")
    })
    .add(Entry::symlink("srv/data/link", "conf"))
    .add(Entry::dir("srv/data/sub/"))
    .add(Entry::hardlink("srv/data/sub/same", "srv/data/conf"));
    t.finish()
}

/// A bundle made by `berth bundle`, removed when dropped.
struct Bundle<'a> {
    scratch: &'a Scratch,
    dir: PathBuf,
}

impl<'a> Bundle<'a> {
    fn new(scratch: &'a Scratch, image: &str, name: &str) -> Bundle<'a> {
        let dir = scratch.path(name);
        scratch.berth_ok(&["bundle", image, dir.to_str().unwrap()]);
        Bundle { scratch, dir }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Runs `script` in the bundle with `mounts` added to its config; returns stdout and
    /// stderr, and whether it succeeded.
    fn run(&self, id: &str, mounts: &[oci_spec::runtime::Mount], script: &str) -> (bool, String) {
        let path = self.dir.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        spec["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        // Root in the container may write where the image's owners are others.
        let caps = serde_json::json!(["CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER"]);
        for set in ["bounding", "effective", "permitted"] {
            spec["process"]["capabilities"][set] = caps.clone();
        }
        let list = spec["mounts"].as_array_mut().unwrap();
        for m in mounts {
            list.push(serde_json::to_value(m).unwrap());
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        let out = self
            .scratch
            .berth(&["run", "--bundle", self.dir.to_str().unwrap(), id]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }
}

impl Drop for Bundle<'_> {
    fn drop(&mut self) {
        let _ = self
            .scratch
            .berth(&["rm-bundle", "--force", self.dir.to_str().unwrap()]);
    }
}

fn args(volume: &[&str], mount: &[&str], tmpfs: &[&str]) -> MountArgs {
    let s = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
    MountArgs {
        volume: s(volume),
        mount: s(mount),
        tmpfs: s(tmpfs),
        volumes_from: Vec::new(),
    }
}

fn no_containers(name: &str) -> anyhow::Result<Vec<MountRequest>> {
    anyhow::bail!("No such container: {name}")
}

fn xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let k = std::ffi::CString::new(key).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// Every path under `dir` (not following symlinks), relative.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn volumes_are_filled_from_the_image_and_mounted() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let s = Scratch::new("vol-fill");
    let store = s.store();
    make_image(
        &store,
        "localhost/voldata:1",
        &[busybox_tar(&s), data_layer()],
        config_with_volumes(&["/srv/data", "/cache"]),
    );
    let bundle = Bundle::new(&s, "localhost/voldata:1", "b1");
    let host = s.path("host-share");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("hello"), b"from the host\n").unwrap();

    let volumes = VolumeStore::open(&s.data_root()).unwrap();
    let bind = format!("{}:/host:ro", host.display());
    let mut mounts = resolve(
        &args(
            &["appdata:/srv/data", &bind],
            &["type=tmpfs,dst=/scratch,tmpfs-size=1m,tmpfs-mode=1770"],
            &["/fast:size=2m"],
        ),
        &mut no_containers,
        &["/srv/data".to_string(), "/cache".to_string()],
    )
    .unwrap();
    let prepared = prepare_volumes(&volumes, "c1", &mut mounts).unwrap();
    assert_eq!(prepared.made.len(), 2, "appdata and the anonymous /cache");
    let cache = mounts
        .iter()
        .find(|m| m.destination == "/cache")
        .unwrap()
        .source
        .clone();
    assert_eq!(cache.len(), 64);
    let filled = fill_volumes(&volumes, &mounts, &bundle.rootfs()).unwrap();
    assert_eq!(
        filled,
        [
            ("appdata".to_string(), FillOutcome::Filled),
            (cache.clone(), FillOutcome::Missing)
        ]
    );

    // From outside: the copy kept what the image had.
    let data = volumes.data_path("appdata");
    let top = std::fs::metadata(&data).unwrap();
    assert_eq!(
        (top.uid(), top.gid(), top.permissions().mode() & 0o7777),
        (1000, 1001, 0o750)
    );
    let conf = std::fs::metadata(data.join("conf")).unwrap();
    assert_eq!(
        (conf.uid(), conf.gid(), conf.permissions().mode() & 0o7777),
        (1000, 1001, 0o640)
    );
    assert_eq!(
        xattr(&data.join("conf"), "user.berth").as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(
        std::fs::read_link(data.join("link")).unwrap(),
        Path::new("conf")
    );
    assert_eq!(
        std::fs::metadata(data.join("sub/same")).unwrap().ino(),
        conf.ino()
    );

    let oci = oci_mounts(&volumes, &mounts).unwrap();
    let script = "cat /srv/data/conf; stat -c '%a %u %g' /srv/data; readlink /srv/data/link; \
                  echo written > /srv/data/new; echo c > /cache/x; cat /host/hello; \
                  touch /host/x 2>/dev/null && echo host-writable || echo host-read-only; \
                  grep -E ' /(scratch|fast) ' /proc/self/mountinfo; stat -c '%a' /scratch";
    let (ok, out) = bundle.run("vol-fill-1", &oci, script);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "from the image",
            "750 1000 1001",
            "conf",
            "from the host",
            "host-read-only",
        ]
    );
    let scratch = lines.iter().find(|l| l.contains(" /scratch ")).unwrap();
    let fast = lines.iter().find(|l| l.contains(" /fast ")).unwrap();
    for l in [scratch, fast] {
        for opt in ["nosuid", "nodev", "noexec"] {
            assert!(l.contains(opt), "{opt} missing: {l}");
        }
    }
    assert!(scratch.contains("size=1024k"), "{scratch}");
    assert!(fast.contains("size=2048k"), "{fast}");
    assert_eq!(*lines.last().unwrap(), "1770");

    // From outside: what the container wrote is in the volumes.
    assert_eq!(std::fs::read(data.join("new")).unwrap(), b"written\n");
    assert_eq!(
        std::fs::read(volumes.data_path(&cache).join("x")).unwrap(),
        b"c\n"
    );
    assert!(!host.join("x").exists());

    let inspect = serde_json::to_value(inspect_mounts(&volumes, &mounts)).unwrap();
    let names: Vec<(&str, &str)> = inspect
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Destination"].as_str().unwrap(),
                m["Type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("/cache", "volume"),
            ("/host", "bind"),
            ("/scratch", "tmpfs"),
            ("/srv/data", "volume")
        ],
        "--tmpfs is not in Mounts, as in Docker"
    );

    // In use: refused with Docker's error; `rm -v` takes the anonymous volume only.
    let exists = |id: &str| id == "c1";
    assert_eq!(
        volumes
            .remove("appdata", false, &exists)
            .unwrap_err()
            .to_string(),
        "remove appdata: volume is in use - [c1]"
    );
    release_volumes(&volumes, "c1", &mounts, true, &|_| false).unwrap();
    let left: Vec<String> = volumes
        .list()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(left, ["appdata"]);
    volumes.remove("appdata", false, &|_| false).unwrap();
    assert!(!data.exists());
}

#[test]
fn nocopy_and_volumes_with_content_are_left_alone() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let s = Scratch::new("vol-nocopy");
    let store = s.store();
    make_image(
        &store,
        "localhost/voldata:2",
        &[busybox_tar(&s), data_layer()],
        config_with_volumes(&[]),
    );
    let bundle = Bundle::new(&s, "localhost/voldata:2", "b2");
    let volumes = VolumeStore::open(&s.data_root()).unwrap();
    let kept = volumes
        .create(Some("kept"), &BTreeMap::new(), &BTreeMap::new())
        .unwrap();
    std::fs::write(kept.mountpoint.join("mine"), b"mine\n").unwrap();

    let mut mounts = resolve(
        &args(
            &["kept:/srv/data", "empty:/srv/other:nocopy"],
            &["type=volume,src=nc,dst=/srv/third,volume-nocopy"],
            &[],
        ),
        &mut no_containers,
        &[],
    )
    .unwrap();
    prepare_volumes(&volumes, "c2", &mut mounts).unwrap();
    let filled = fill_volumes(&volumes, &mounts, &bundle.rootfs()).unwrap();
    assert_eq!(filled, [("kept".to_string(), FillOutcome::NotEmpty)]);
    let oci = oci_mounts(&volumes, &mounts).unwrap();
    let (ok, out) = bundle.run("vol-nocopy", &oci, "ls /srv/data; ls /srv/other | wc -l");
    assert!(ok, "{out}");
    assert_eq!(out, "mine\n0\n");
    release_volumes(&volumes, "c2", &mounts, true, &|_| false).unwrap();
    assert_eq!(
        volumes.list().unwrap().len(),
        3,
        "named volumes stay after rm -v"
    );
}

/// An image whose VOLUME paths lead out of the rootfs (absolute and relative symlinks, `..`)
/// must not make the fill copy host files: the paths resolve inside the rootfs.
#[test]
fn a_hostile_image_cannot_make_the_fill_copy_host_files() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let s = Scratch::new("vol-hostile");
    let canary_dir = s.path("host-canary");
    std::fs::create_dir_all(&canary_dir).unwrap();
    std::fs::write(canary_dir.join("secret"), b"host secret").unwrap();
    let canary = canary_dir.to_str().unwrap().to_string();
    let up = "../../../../../../../../..".to_string() + &canary;
    let mut t = RawTar::default();
    t.add(Entry::symlink("abs", &canary))
        .add(Entry::symlink("rel", &up))
        .add(Entry::symlink("etc-link", "/etc"))
        .add(Entry::dir("d/"))
        .add(Entry::symlink("d/inner", "/"));
    let hostile = t.finish();
    let store = s.store();
    let dots = format!("/../../..{canary}");
    make_image(
        &store,
        "localhost/hostile:1",
        &[busybox_tar(&s), hostile],
        config_with_volumes(&["/abs", "/rel", "/etc-link", &dots, "/d/inner/etc"]),
    );
    let bundle = Bundle::new(&s, "localhost/hostile:1", "b3");
    let volumes = VolumeStore::open(&s.data_root()).unwrap();
    let image_volumes: Vec<String> = ["/abs", "/rel", "/etc-link", &dots, "/d/inner/etc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut mounts = resolve(&args(&[], &[], &[]), &mut no_containers, &image_volumes).unwrap();
    prepare_volumes(&volumes, "c3", &mut mounts).unwrap();
    let filled = fill_volumes(&volumes, &mounts, &bundle.rootfs()).unwrap();
    let outcomes: Vec<FillOutcome> = filled.iter().map(|(_, o)| *o).collect();
    assert_eq!(
        outcomes,
        [
            FillOutcome::Missing,
            FillOutcome::Missing,
            FillOutcome::Filled,
            FillOutcome::Missing,
            FillOutcome::Filled
        ],
        "{mounts:#?}"
    );
    let image_etc = walk(&bundle.rootfs().join("etc"));
    for m in &mounts {
        let got = walk(&volumes.data_path(&m.source));
        assert!(
            !got.iter().any(|p| p.contains("secret")),
            "{}: the host's canary was copied",
            m.destination
        );
        if m.destination.ends_with("etc") || m.destination == "/etc-link" {
            assert_eq!(
                got, image_etc,
                "{}: the image's /etc, not the host's",
                m.destination
            );
        }
    }
    // Inside, the volumes are where the image's symlinks lead inside the rootfs.
    let oci = oci_mounts(&volumes, &mounts).unwrap();
    let script = format!("cat {canary}/secret 2>/dev/null || echo no-secret; ls /etc");
    let (ok, out) = bundle.run("vol-hostile", &oci, &script);
    assert!(ok, "{out}");
    assert!(out.starts_with("no-secret\n"), "{out}");
    release_volumes(&volumes, "c3", &mounts, true, &|_| false).unwrap();
    assert!(volumes.list().unwrap().is_empty());
    assert_eq!(
        std::fs::read(canary_dir.join("secret")).unwrap(),
        b"host secret"
    );
}
