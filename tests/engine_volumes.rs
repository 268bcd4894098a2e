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
        mode: 0o755,
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

// ---- Through the engine's commands: `berth container ...` and `berth volume ...`. ----

/// A scratch data root whose containers are all removed (`rm -f`) when dropped, also on panic.
struct Engine {
    s: Scratch,
}

impl Engine {
    fn new(name: &str) -> Engine {
        Engine {
            s: Scratch::new(name),
        }
    }

    /// `berth ARGS`: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.s.berth(args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "berth {args:?}: {out}{err}");
        out
    }

    fn volumes(&self) -> Vec<String> {
        self.ok(&["volume", "ls", "-q"])
            .lines()
            .map(String::from)
            .collect()
    }

    fn containers(&self) -> Vec<String> {
        self.ok(&["container", "ls", "-a", "-q", "--no-trunc"])
            .lines()
            .map(String::from)
            .collect()
    }

    fn id_of(&self, name: &str) -> String {
        self.ok(&["container", "inspect", "-f", "{{.Id}}", name])
            .trim()
            .to_string()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Ok(out) = self
            .s
            .command(&["container", "ls", "-a", "-q", "--no-trunc"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.s.berth(&["container", "rm", "-f", "-v", id]);
            }
        }
    }
}

fn data_image(e: &Engine, name: &str) {
    make_image(
        &e.s.store(),
        name,
        &[busybox_tar(&e.s), data_layer()],
        config_with_volumes(&["/srv/data"]),
    );
}

#[test]
fn volume_commands_as_dockers() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let e = Engine::new("vol-cli");
    assert_eq!(
        e.ok(&["volume", "create", "-l", "team=db", "dbdata"]),
        "dbdata\n"
    );
    assert_eq!(e.ok(&["volume", "create", "--name", "other"]), "other\n");
    let anon = e.ok(&["volume", "create"]).trim().to_string();
    assert_eq!(anon.len(), 64);
    assert!(e.s.data_root().join("volumes/dbdata/_data").is_dir());

    let mut all = vec!["dbdata".to_string(), "other".to_string(), anon.clone()];
    all.sort();
    assert_eq!(e.volumes(), all);
    let table = e.ok(&["volume", "ls"]);
    assert_eq!(table.lines().next(), Some("DRIVER    VOLUME NAME"));
    assert!(table.contains("local     dbdata\n"), "{table}");
    assert_eq!(
        e.ok(&[
            "volume",
            "ls",
            "-f",
            "label=team=db",
            "--format",
            "{{.Name}} {{.Labels}}"
        ]),
        "dbdata team=db\n"
    );
    assert_eq!(
        e.ok(&["volume", "ls", "-q", "--filter", "name=oth"]),
        "other\n"
    );

    let inspect: serde_json::Value =
        serde_json::from_str(&e.ok(&["volume", "inspect", "dbdata"])).unwrap();
    let v = &inspect[0];
    assert_eq!(v["Name"], "dbdata");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["team"], "db");
    assert_eq!(v["Options"], serde_json::Value::Null);
    assert_eq!(
        v["Mountpoint"],
        e.s.data_root()
            .join("volumes/dbdata/_data")
            .to_str()
            .unwrap()
    );
    assert_eq!(
        e.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}}",
            "dbdata",
            "other"
        ]),
        "dbdata local\nother local\n"
    );

    // Docker's errors, exit code 1, nothing made.
    let (code, _, err) = e.run(&["volume", "create", "x"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "Error response from daemon: create x: volume name is too short, names should be \
             at least two alphanumeric characters\n"
        )
    );
    let (code, _, err) = e.run(&["volume", "create", "-d", "foo", "zz"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "Error response from daemon: create zz: error looking up volume plugin foo: plugin \
             \"foo\" not found\n"
        )
    );
    let (code, _, err) = e.run(&["volume", "create", "--name", "a1", "a2"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with(
        "conflicting options: cannot specify a volume-name through both --name and as a \
         positional arg"
    ));
    let (code, out, err) = e.run(&["volume", "inspect", "nope"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            1,
            "[]\n",
            "Error response from daemon: get nope: no such volume\n"
        )
    );
    let (code, out, err) = e.run(&["volume", "rm", "nope", "other"]);
    assert_eq!(code, 1);
    assert_eq!(out, "other\n", "the others are still removed");
    assert_eq!(
        err,
        "Error response from daemon: get nope: no such volume\n"
    );
    assert_eq!(e.ok(&["volume", "rm", "-f", "nope"]), "nope\n");
    let (code, _, err) = e.run(&["volume", "ls", "-f", "colour=red"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "Error response from daemon: Invalid filter 'colour'\n")
    );

    // prune: the anonymous volume only, then -a for the named one too.
    std::fs::write(
        e.s.data_root().join(format!("volumes/{anon}/_data/f")),
        vec![1u8; 2000],
    )
    .unwrap();
    assert_eq!(
        e.ok(&["volume", "prune", "-f"]),
        format!("Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 2kB\n")
    );
    assert_eq!(
        e.ok(&["volume", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    assert_eq!(
        e.ok(&["volume", "prune", "-a", "-f"]),
        "Deleted Volumes:\ndbdata\n\nTotal reclaimed space: 0B\n"
    );
    assert!(e.volumes().is_empty());
    assert!(!e.s.data_root().join("volumes/dbdata").exists());

    // Berth commands at once: one volume, made once, and each sees it whole.
    let children: Vec<_> = (0..8)
        .map(|i| {
            let args: Vec<&str> = if i % 2 == 0 {
                vec!["volume", "create", "-l", "n=1", "racevol"]
            } else {
                vec!["volume", "inspect", "-f", "{{.Name}}", "racevol"]
            };
            e.s.command(&args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        if i % 2 == 0 || out.status.success() {
            assert_eq!(text, "racevol\n", "{i}: {err}");
        } else {
            assert_eq!(
                err,
                "Error response from daemon: get racevol: no such volume\n"
            );
        }
    }
    assert_eq!(e.volumes(), ["racevol"]);
    let names = std::fs::read_dir(e.s.data_root().join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') && n != ".lock")
        .count();
    assert_eq!(names, 0, "no half-made volume left");
}

#[test]
fn containers_use_named_anonymous_bind_and_tmpfs_mounts() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let e = Engine::new("vol-run");
    data_image(&e, "localhost/voldata:run");
    let image = "localhost/voldata:run";

    // A named volume, made on first use and filled from the image. (As the owner of the
    // image's directory: the test does not rest on root's capabilities.)
    let out = e.ok(&[
        "container",
        "run",
        "--name",
        "writer",
        "-u",
        "1000:1001",
        "-v",
        "appdata:/srv/data",
        image,
        "sh",
        "-c",
        "cat /srv/data/conf; stat -c '%a %u %g' /srv/data; echo hi > /srv/data/new",
    ]);
    assert_eq!(out, "from the image\n750 1000 1001\n");
    let data = e.s.data_root().join("volumes/appdata/_data");
    assert_eq!(std::fs::read(data.join("new")).unwrap(), b"hi\n");
    assert_eq!(
        e.volumes(),
        ["appdata"],
        "-v covers the image's VOLUME: no anonymous one"
    );
    let writer = e.id_of("writer");

    // In use by a container (even stopped): Docker's error.
    let (code, _, err) = e.run(&["volume", "rm", "appdata"]);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        format!("Error response from daemon: remove appdata: volume is in use - [{writer}]\n")
    );

    // Inspect's Mounts.
    let inspect: serde_json::Value =
        serde_json::from_str(&e.ok(&["container", "inspect", "writer"])).unwrap();
    let m = &inspect[0]["Mounts"][0];
    assert_eq!(m["Type"], "volume");
    assert_eq!(m["Name"], "appdata");
    assert_eq!(m["Source"], data.to_str().unwrap());
    assert_eq!(m["Destination"], "/srv/data");
    assert_eq!(m["Driver"], "local");
    assert_eq!(m["Mode"], "z");
    assert_eq!(m["RW"], true);
    assert_eq!(inspect[0]["HostConfig"]["Binds"][0], "appdata:/srv/data");

    // Another container sees what the first wrote; --volumes-from with :ro.
    let out = e.ok(&[
        "container",
        "run",
        "--rm",
        "-u",
        "1000",
        "--volumes-from",
        "writer:ro",
        image,
        "sh",
        "-c",
        "cat /srv/data/new; touch /srv/data/x 2>/dev/null && echo rw || echo ro",
    ]);
    assert_eq!(out, "hi\nro\n");

    // The image's VOLUME alone: an anonymous volume filled from the image; `rm -v` removes it.
    e.ok(&["container", "create", "--name", "anon", image, "true"]);
    let vols = e.volumes();
    assert_eq!(vols.len(), 2);
    let anon = vols.iter().find(|v| *v != "appdata").unwrap().clone();
    assert_eq!(anon.len(), 64);
    assert_eq!(
        std::fs::read(e.s.data_root().join(format!("volumes/{anon}/_data/conf"))).unwrap(),
        b"from the image\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&e.ok(&["volume", "inspect", &anon])).unwrap();
    assert_eq!(
        inspect[0]["Labels"],
        serde_json::json!({"com.docker.volume.anonymous": ""})
    );
    assert_eq!(
        e.ok(&["container", "inspect", "-f", "{{json .Mounts}}", "anon"])
            .trim(),
        serde_json::json!([{
            "Type": "volume", "Name": anon,
            "Source": e.s.data_root().join(format!("volumes/{anon}/_data")),
            "Destination": "/srv/data", "Driver": "local", "Mode": "", "RW": true,
            "Propagation": ""
        }])
        .to_string()
    );
    e.ok(&["container", "rm", "-v", "anon"]);
    assert_eq!(e.volumes(), ["appdata"]);

    // `rm` without -v leaves the anonymous volume; `prune` then removes it.
    e.ok(&["container", "create", "--name", "anon2", image, "true"]);
    e.ok(&["container", "rm", "anon2"]);
    assert_eq!(e.volumes().len(), 2);
    e.ok(&["volume", "prune", "-f"]);
    assert_eq!(e.volumes(), ["appdata"]);

    // `run --rm`: its anonymous volumes go with it.
    e.ok(&["container", "run", "--rm", image, "true"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while e.volumes().len() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(e.volumes(), ["appdata"]);

    // Binds (ro with -v, --mount), tmpfs (--tmpfs, --mount) and nocopy, seen from inside.
    let host = e.s.path("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("hello"), b"from the host\n").unwrap();
    let ro = format!("{}:/host:ro", host.display());
    let rw = format!("type=bind,src={},dst=/host-rw", host.display());
    let out = e.ok(&[
        "container",
        "run",
        "--rm",
        "-v",
        &ro,
        "--mount",
        &rw,
        "--tmpfs",
        "/fast:size=2m,exec",
        "--mount",
        "type=tmpfs,dst=/scratch,tmpfs-mode=1777",
        "-v",
        "empty:/srv/data:nocopy",
        image,
        "sh",
        "-c",
        "cat /host/hello; touch /host/x 2>/dev/null || echo host-ro; echo w > /host-rw/w; \
         grep -E ' /(fast|scratch|host|srv/data) ' /proc/self/mountinfo; stat -c %a /scratch; \
         ls /srv/data | wc -l",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["from the host", "host-ro"], "{out}");
    assert_eq!(std::fs::read(host.join("w")).unwrap(), b"w\n");
    let line = |dest: &str| {
        *lines
            .iter()
            .find(|l| l.split(' ').nth(4) == Some(dest))
            .unwrap_or_else(|| panic!("no {dest} in {out}"))
    };
    assert!(
        line("/host").split(' ').nth(5).unwrap().starts_with("ro"),
        "{out}"
    );
    let fast = line("/fast");
    assert!(
        fast.contains("tmpfs") && fast.contains("size=2048k"),
        "{fast}"
    );
    assert!(
        !fast.split(' ').nth(5).unwrap().contains("noexec"),
        "exec given: {fast}"
    );
    let scratch = line("/scratch");
    assert!(
        scratch.split(' ').nth(5).unwrap().contains("noexec"),
        "{scratch}"
    );
    line("/srv/data");
    assert_eq!(lines[lines.len() - 2..], ["1777", "0"], "{out}");

    // A volume over /etc: filled with the image's /etc, and the files berth writes there
    // (hostname, hosts, resolv.conf) still mounted over it.
    let out = e.ok(&[
        "container",
        "run",
        "--rm",
        "--hostname",
        "etc-test",
        "-v",
        "etcvol:/etc",
        image,
        "sh",
        "-c",
        "cat /etc/hostname; grep -c '^root:' /etc/passwd",
    ]);
    assert_eq!(out, "etc-test\n1\n");
    assert!(e.s.data_root().join("volumes/etcvol/_data/passwd").exists());
}

#[test]
fn bad_mount_flags_fail_and_leave_nothing() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let e = Engine::new("vol-bad");
    data_image(&e, "localhost/voldata:bad");
    let image = "localhost/voldata:bad";
    for (args, want) in [
        (
            vec!["-v", "a:/x"],
            "create a: volume name is too short, names should be at least two alphanumeric \
             characters",
        ),
        (
            vec!["--mount", "type=bind,src=/nonexistent-berth,dst=/x"],
            "invalid mount config for type \"bind\": bind source path does not exist: \
             /nonexistent-berth",
        ),
        (
            vec!["-v", "v1:/d", "-v", "v2:/d"],
            "Duplicate mount point: /d",
        ),
        (
            vec!["-v", "v1:rel"],
            "invalid volume specification: 'v1:rel': invalid mount config for type \
             \"volume\": invalid mount path: 'rel' mount path must be absolute",
        ),
        (vec!["-v", "v1:/d:bogus"], "invalid mode: bogus"),
        (vec!["--volumes-from", "ghost"], "No such container: ghost"),
        (
            vec!["-v", "madehere:/srv/data/conf"],
            "cannot mount volume over existing file, file exists /srv/data/conf",
        ),
    ] {
        let mut argv = vec!["container", "run", "--rm"];
        argv.extend(&args);
        argv.extend([image, "true"]);
        let (code, _, err) = e.run(&argv);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(e.containers().is_empty(), "{args:?}: a container was left");
        assert!(e.volumes().is_empty(), "{args:?}: a volume was left");
    }
}

/// `-v SRC:DST:rshared` needs SRC on a shared mount (Docker's error otherwise); then a mount
/// made on the host under SRC after the start shows inside the container.
#[test]
fn shared_propagation_reaches_the_container() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    use nix::mount::{mount, MsFlags};
    let e = Engine::new("vol-prop");
    data_image(&e, "localhost/voldata:prop");
    let dir = e.s.path("prop");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let none = None::<&str>;
    mount(Some(&dir), &dir, none, MsFlags::MS_BIND, none).unwrap();
    mount(none, &dir, none, MsFlags::MS_PRIVATE, none).unwrap();
    let spec = format!("{}:/p:rshared", dir.display());
    let (code, _, err) = e.run(&[
        "container",
        "run",
        "--rm",
        "-v",
        &spec,
        "localhost/voldata:prop",
        "true",
    ]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains(&format!(
            "path {0} is mounted on {0} but it is not a shared mount",
            dir.display()
        )),
        "{err}"
    );
    assert!(e.containers().is_empty());

    mount(none, &dir, none, MsFlags::MS_SHARED, none).unwrap();
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "prop",
        "-v",
        &spec,
        "localhost/voldata:prop",
        "sleep",
        "60",
    ]);
    mount(
        Some("tmpfs"),
        &dir.join("sub"),
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m"),
    )
    .unwrap();
    let out = e.ok(&[
        "container",
        "exec",
        "prop",
        "sh",
        "-c",
        "grep -c ' /p/sub ' /proc/self/mountinfo",
    ]);
    assert_eq!(
        out, "1\n",
        "the host's new mount propagated into the container"
    );
}

/// A volume made with the local driver's options (`type`, `device`, `o`) is that filesystem,
/// mounted on its data directory while a container uses it; and volumes mount on a read-only
/// rootfs at paths the image lacks.
#[test]
fn volume_options_and_a_read_only_rootfs() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let e = Engine::new("vol-opts");
    data_image(&e, "localhost/voldata:opts");
    let image = "localhost/voldata:opts";
    e.ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m,uid=1000",
        "tmpvol",
    ]);
    let inspect: serde_json::Value =
        serde_json::from_str(&e.ok(&["volume", "inspect", "tmpvol"])).unwrap();
    assert_eq!(
        inspect[0]["Options"],
        serde_json::json!({"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000"})
    );
    let data = e.s.data_root().join("volumes/tmpvol/_data");
    let out = e.ok(&[
        "container",
        "run",
        "--name",
        "ro-t",
        "--read-only",
        "-v",
        "tmpvol:/new/place",
        "-v",
        "other:/srv/data",
        image,
        "sh",
        "-c",
        "grep ' /new/place ' /proc/self/mountinfo; stat -c %u /new/place; \
         touch /rootfs-write 2>/dev/null || echo rootfs-ro",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains(" - tmpfs ") && lines[0].contains("size=1024k"),
        "{out}"
    );
    assert_eq!(lines[1..], ["1000", "rootfs-ro"], "{out}");
    let host_view = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        host_view.contains(&format!(" {} ", data.display())),
        "mounted on the host while the container exists"
    );
    assert_eq!(
        e.ok(&["volume", "ls", "-q", "-f", "dangling=false"]),
        "other\ntmpvol\n"
    );
    e.ok(&["container", "rm", "ro-t"]);
    let host_view = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host_view.contains(&format!(" {} ", data.display())),
        "unmounted with its last user"
    );
    assert_eq!(
        e.ok(&["volume", "ls", "-q", "-f", "dangling=true"]),
        "other\ntmpvol\n"
    );

    // A device that cannot be mounted: the run fails and leaves no container.
    e.ok(&[
        "volume",
        "create",
        "-o",
        "type=ext4",
        "-o",
        "device=/nonexistent-dev",
        "badvol",
    ]);
    let (code, _, err) = e.run(&["container", "run", "--rm", "-v", "badvol:/b", image, "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("error while mounting volume"), "{err}");
    assert!(e.containers().is_empty());
    let (code, _, err) = e.run(&["volume", "create", "-o", "color=red", "colorful"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "Error response from daemon: create colorful: invalid option: \"color\"\n"
        )
    );
}

/// A berth killed at any instant of a create with volumes: `rm -f` clears the container and
/// the volumes made for it that its record knows; whatever it had not yet recorded is a
/// dangling anonymous volume that `volume prune` removes. No volume stays busy.
#[test]
fn a_killed_create_leaves_no_busy_volume() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let e = Engine::new("vol-kill");
    data_image(&e, "localhost/voldata:kill");
    for delay_ms in [0u64, 5, 10, 20, 40, 80, 160, 320] {
        let mut child =
            e.s.command(&["container", "create", "localhost/voldata:kill", "true"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        for id in e.containers() {
            e.ok(&["container", "rm", "-f", &id]);
        }
        assert_eq!(
            e.ok(&["volume", "ls", "-q", "-f", "dangling=false"]),
            "",
            "{delay_ms} ms: a volume is still in use"
        );
        e.ok(&["volume", "prune", "-f"]);
        assert!(e.volumes().is_empty(), "{delay_ms} ms");
    }
}

/// As Docker at each start: a volume found empty is filled again from the container's rootfs
/// (the image's content, and what the container changed there).
#[test]
fn an_emptied_volume_is_filled_again_at_the_next_start() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let e = Engine::new("vol-refill");
    data_image(&e, "localhost/voldata:refill");
    let out = e.ok(&[
        "container",
        "run",
        "--name",
        "emptier",
        "-u",
        "1000",
        "-v",
        "refill:/srv/data",
        "localhost/voldata:refill",
        "sh",
        "-c",
        "ls /srv/data",
    ]);
    assert_eq!(out, "conf\nlink\nsub\n");
    let data = e.s.data_root().join("volumes/refill/_data");
    for entry in std::fs::read_dir(&data).unwrap().flatten() {
        let p = entry.path();
        if entry.file_type().unwrap().is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }
    let out = e.ok(&["container", "start", "-a", "emptier"]);
    assert_eq!(out, "conf\nlink\nsub\n");
}
