//! Shared by the `image_*` tests: a scratch directory that unmounts and removes everything
//! under it when dropped (also on panic), a tar writer giving full control of every header
//! (for hostile layers), images built straight into a store, and the berth binary.
#![allow(dead_code)]

use berth::image::config::{ContainerConfig, ImageConfig};
use berth::image::import::{assemble_image, describe_layer};
use berth::image::{Digest, Reference, Store};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The berth built by cargo, or `$BERTH_TEST_ENGINE` (another build of berth: an earlier
/// commit's, to see a test fail on the code it was written against).
pub fn berth_bin() -> PathBuf {
    match std::env::var_os("BERTH_TEST_ENGINE") {
        Some(b) if !b.is_empty() => PathBuf::from(b),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_berth")),
    }
}

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The busybox rootfs `make rootfs` makes.
pub fn busybox_rootfs() -> PathBuf {
    let p = repo_dir().join("bundles/busybox/rootfs");
    assert!(p.join("bin/busybox").exists(), "run `make rootfs` first");
    p
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A scratch directory: `data/` is the data root, `run/` the runtime's --root.
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("berth-image-{name}-{}", std::process::id()));
        cleanup(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        // The default network's bridge is the data root's own (test binaries run at once,
        // each scratch with its default network); `cleanup` removes it with its rules.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bridge = format!("bt{:x}x{n:x}", std::process::id());
        std::fs::write(
            dir.join("data/network-config.json"),
            format!("{{\"bridge\": \"{bridge}\"}}"),
        )
        .unwrap();
        Scratch { dir }
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn store(&self) -> Store {
        Store::open(&self.data_root()).unwrap()
    }

    /// `berth --data-root D --root R ARGS`, stdin from /dev/null.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("--data-root")
            .arg(self.data_root())
            .arg("--root")
            .arg(self.dir.join("run"))
            .args(args)
            .stdin(std::process::Stdio::null());
        c
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Like [`Scratch::berth`], panicking with its stderr unless it succeeds; returns stdout.
    pub fn berth_ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `berth ARGS` with no stdio at all (for `run --detach`, whose container keeps
    /// whatever it inherits); panics unless it succeeds.
    pub fn berth_quiet(&self, args: &[&str]) {
        let st = self
            .command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "berth {args:?} failed");
    }

    /// Runs `berth ARGS`, expecting failure; returns stderr.
    pub fn berth_err(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(!out.status.success(), "berth {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        cleanup(&self.dir);
    }
}

/// Removes the networks of the data root under `dir` (bridges, leases, firewall rules),
/// unmounts everything under `dir` (deepest first), then removes it.
pub fn cleanup(dir: &Path) {
    if is_root() && dir.join("data/networks").exists() {
        if let Err(e) = berth::network::publish::remove_all_networks(&dir.join("data")) {
            eprintln!("cleanup of {}: networks: {e:#}", dir.display());
        }
    }
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A tar archive written header by header, with nothing checked or normalized.
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

pub struct Entry<'a> {
    pub path: &'a str,
    pub kind: u8,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub link: &'a str,
    pub data: &'a [u8],
    pub xattrs: &'a [(&'a str, &'a str)],
}

impl<'a> Entry<'a> {
    pub fn file(path: &'a str, data: &'a [u8]) -> Self {
        Entry {
            path,
            kind: b'0',
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            link: "",
            data,
            xattrs: &[],
        }
    }
    pub fn dir(path: &'a str) -> Self {
        Entry {
            kind: b'5',
            mode: 0o755,
            ..Entry::file(path, b"")
        }
    }
    pub fn symlink(path: &'a str, target: &'a str) -> Self {
        Entry {
            kind: b'2',
            mode: 0o777,
            link: target,
            ..Entry::file(path, b"")
        }
    }
    pub fn hardlink(path: &'a str, target: &'a str) -> Self {
        Entry {
            kind: b'1',
            link: target,
            ..Entry::file(path, b"")
        }
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}\0", v, width = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

impl RawTar {
    pub fn add(&mut self, e: Entry) -> &mut Self {
        if !e.xattrs.is_empty() {
            let mut pax = Vec::new();
            for (k, v) in e.xattrs {
                let body = format!(" SCHILY.xattr.{k}={v}\n");
                // The length prefix counts its own digits.
                let mut n = body.len() + 1;
                while n != body.len() + n.to_string().len() {
                    n = body.len() + n.to_string().len();
                }
                pax.extend_from_slice(format!("{n}{body}").as_bytes());
            }
            self.header("././@PaxHeader", b'x', 0o644, 0, 0, 0, "", pax.len() as u64);
            self.data(&pax);
        }
        self.header(
            e.path,
            e.kind,
            e.mode,
            e.uid,
            e.gid,
            e.mtime,
            e.link,
            e.data.len() as u64,
        );
        self.data(e.data);
        self
    }

    #[allow(clippy::too_many_arguments)]
    fn header(
        &mut self,
        path: &str,
        kind: u8,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: u64,
        link: &str,
        size: u64,
    ) {
        assert!(
            path.len() <= 100 && link.len() <= 100,
            "keep test paths short"
        );
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        octal(&mut h[100..108], mode as u64);
        octal(&mut h[108..116], uid as u64);
        octal(&mut h[116..124], gid as u64);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], mtime);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        self.bytes.extend_from_slice(&h);
    }

    fn data(&mut self, d: &[u8]) {
        self.bytes.extend_from_slice(d);
        let pad = (512 - d.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = self.bytes.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A tar of the busybox rootfs, made by tar(1).
pub fn busybox_tar(scratch: &Scratch) -> Vec<u8> {
    let out = scratch.path("busybox.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(busybox_rootfs())
        .arg("-cf")
        .arg(&out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(out).unwrap()
}

/// Stores `layers` (tar bytes, gzipped on the way in) as an image named `name`.
pub fn make_image(
    store: &Store,
    name: &str,
    layers: &[Vec<u8>],
    config: ContainerConfig,
) -> Digest {
    let mut blobs = Vec::new();
    for l in layers {
        let d = store.ingest_bytes(&gzip(l)).unwrap();
        blobs.push(describe_layer(store, &d).unwrap());
    }
    let image = ImageConfig {
        created: Some("2024-01-02T03:04:05Z".into()),
        architecture: "amd64".into(),
        os: "linux".into(),
        config,
        ..Default::default()
    };
    let desc = assemble_image(store, &blobs, image).unwrap();
    store
        .set_reference(&Reference::parse(name).unwrap(), &desc)
        .unwrap();
    Digest::try_from(desc.digest()).unwrap()
}

pub fn cmd(args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        cmd: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// The names in a directory, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
