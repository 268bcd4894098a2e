//! `berth bundle REF DIR`: an OCI bundle made from an image (a root filesystem over the image's
//! snapshots and a config.json from the image config) that `berth run` runs as it is.
//!
//! The rootfs is an overlay mount by default, as Docker and Podman give each container, with
//! the container's changes in `DIR/.berth/upper`; `--copy` (or a host without overlayfs) gives a
//! plain copy instead. `berth rm-bundle DIR` unmounts and removes it. Each bundle is recorded in
//! the store (`image/bundles/<sha256 of DIR>.json`) until removed: that record is how `rmi`
//! knows an image is in use.

use super::config::ImageConfig;
use super::digest::Digest;
use super::reference::Reference;
use super::rootfs::{copy_snapshots, mount_overlay, unmount, RootfsKind};
use super::store::Store;
use crate::runtime::container::{self, Globals};
use crate::runtime::fsutil::write_atomically;
use crate::runtime::inroot::{self, Create};
use crate::runtime::spec_template::{default_spec, spec_to_pretty_json};
use crate::runtime::state::Status;
use anyhow::{bail, Context, Result};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Default, Clone, Debug)]
pub struct BundleOptions {
    /// Copy the layers instead of mounting an overlay.
    pub copy: bool,
    /// `os/arch[/variant]` when the reference names an index (default: this host's).
    pub platform: Option<String>,
    /// The process's arguments, instead of the image's Entrypoint and Cmd (the engine's
    /// `run IMAGE COMMAND`).
    pub args: Option<Vec<String>>,
}

/// What the store remembers of a bundle made from an image.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct BundleRecord {
    pub dir: PathBuf,
    pub reference: String,
    /// What the reference resolved to (a manifest or an index).
    pub resolved: String,
    /// The image manifest the rootfs was made from.
    pub manifest: String,
    pub rootfs: RootfsKind,
}

impl BundleRecord {
    /// True while the bundle directory is still there.
    pub fn is_live(&self) -> bool {
        self.dir.join("config.json").exists() || self.dir.join("rootfs").exists()
    }

    /// True when this bundle was made from `digest` (a manifest or the index it was chosen from).
    pub fn uses(&self, digest: &str) -> bool {
        self.manifest == digest || self.resolved == digest
    }
}

fn record_path(store: &Store, dir: &Path) -> PathBuf {
    let key = Digest::of_bytes(dir.as_os_str().as_encoded_bytes());
    store.bundles_dir().join(format!("{}.json", key.hex()))
}

/// Every bundle recorded and still present; records of bundles deleted by hand are dropped.
pub fn live_bundles(store: &Store) -> Result<Vec<BundleRecord>> {
    let mut out = Vec::new();
    for e in fs::read_dir(store.bundles_dir())? {
        let path = e?.path();
        let Ok(text) = fs::read(&path) else { continue };
        match serde_json::from_slice::<BundleRecord>(&text) {
            Ok(r) if r.is_live() => out.push(r),
            _ => {
                let _ = fs::remove_file(&path);
            }
        }
    }
    Ok(out)
}

/// Removes what a failed `create_bundle` made.
struct BundleGuard {
    dir: PathBuf,
    made_dir: bool,
    armed: bool,
}

impl Drop for BundleGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = unmount(&self.dir.join("rootfs"));
        if self.made_dir {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            for name in ["rootfs", ".berth", "config.json"] {
                let p = self.dir.join(name);
                let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
            }
        }
    }
}

/// Writes an OCI bundle for image `r` in `dir` (which must not exist or be empty).
pub fn create_bundle(
    store: &Store,
    r: &Reference,
    dir: &Path,
    opts: &BundleOptions,
) -> Result<BundleRecord> {
    make_bundle(store, r, dir, opts, true).map(|(record, _)| record)
}

/// [`create_bundle`] but for its `config.json`: the image's spec is returned for the caller
/// to complete and write (the engine), rather than written, read back and written again.
pub fn create_bundle_unwritten(
    store: &Store,
    r: &Reference,
    dir: &Path,
    opts: &BundleOptions,
) -> Result<(BundleRecord, Spec)> {
    make_bundle(store, r, dir, opts, false)
}

fn make_bundle(
    store: &Store,
    r: &Reference,
    dir: &Path,
    opts: &BundleOptions,
    write_spec: bool,
) -> Result<(BundleRecord, Spec)> {
    let resolved = store.resolve(r)?;
    let (manifest, _) = store.image_manifest(&resolved, opts.platform.as_deref())?;
    let image = store.image_layers(&manifest)?;
    if opts.args.is_none()
        && image.config.config.entrypoint.is_empty()
        && image.config.config.cmd.is_empty()
    {
        bail!("image {r} has neither Entrypoint nor Cmd: no command to run");
    }
    // Unpack without the store's lock (it may take a while), then hold it until this bundle is
    // recorded, so that a concurrent rmi cannot delete the snapshots between the two.
    store
        .unpack_image(&manifest)
        .with_context(|| format!("image {r}"))?;
    let _lock = store.lock()?;
    let lowers = store
        .snapshot_dirs(&manifest)
        .with_context(|| format!("image {r}"))?;

    let made_dir = match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("bundle directory {} is not empty", dir.display());
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            true
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let dir = dir.canonicalize()?;
    let mut guard = BundleGuard {
        dir: dir.clone(),
        made_dir,
        armed: true,
    };
    let rootfs = dir.join("rootfs");
    let kind = if opts.copy || lowers.is_empty() {
        copy_snapshots(&lowers, &rootfs)?;
        RootfsKind::Copy
    } else {
        let private = dir.join(".berth");
        match mount_overlay(
            &lowers,
            &private.join("upper"),
            &private.join("work"),
            &rootfs,
        ) {
            Ok(()) => RootfsKind::Overlay,
            Err(e) => {
                eprintln!("berth: {e:#}; copying the layers instead");
                let _ = fs::remove_dir_all(&private);
                copy_snapshots(&lowers, &rootfs)?;
                RootfsKind::Copy
            }
        }
    };
    let spec = spec_from_image(&image.config, &rootfs, r, opts.args.as_deref())?;
    if write_spec {
        write_atomically(
            &dir.join("config.json"),
            spec_to_pretty_json(&spec)?.as_bytes(),
        )?;
    }
    let record = BundleRecord {
        dir: dir.clone(),
        reference: r.to_string(),
        resolved: resolved.digest().to_string(),
        manifest: manifest.to_string(),
        rootfs: kind,
    };
    write_atomically(
        &record_path(store, &dir),
        &serde_json::to_vec_pretty(&record)?,
    )?;
    guard.armed = false;
    Ok((record, spec))
}

/// Forgets the store's record of a bundle (its owner removes the directory).
pub fn forget_bundle(store: &Store, dir: &Path) {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let _ = fs::remove_file(record_path(store, &dir));
}

/// Unmounts and removes a bundle made by [`create_bundle`], and forgets it. A container under
/// `state_root` that runs from it (not stopped) makes this fail, naming it, unless `force`.
pub fn remove_bundle(store: &Store, dir: &Path, state_root: &Path, force: bool) -> Result<()> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("bundle directory {}", dir.display()))?;
    if !force {
        let globals = Globals::at(state_root.to_path_buf());
        let users: Vec<String> = container::list(&globals)
            .unwrap_or_default()
            .into_iter()
            .filter(|(st, status)| {
                *status != Status::Stopped && st.bundle.canonicalize().is_ok_and(|b| b == dir)
            })
            .map(|(st, _)| st.id)
            .collect();
        if !users.is_empty() {
            bail!(
                "bundle {} is used by container {} (delete it first, or use --force)",
                dir.display(),
                users.join(", ")
            );
        }
    }
    let record_file = record_path(store, &dir);
    if !record_file.exists() {
        bail!(
            "{} is not a bundle made by `berth bundle` with data root {}",
            dir.display(),
            store.data_root().display()
        );
    }
    let rootfs = dir.join("rootfs");
    unmount(&rootfs)?;
    let dev = |p: &Path| {
        fs::symlink_metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            .ok()
    };
    if rootfs.exists() && dev(&rootfs) != dev(&dir) {
        bail!(
            "{} is still a mount point; not removing it",
            rootfs.display()
        );
    }
    fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    let _ = fs::remove_file(record_file);
    Ok(())
}

/// The runtime config for a container of this image, starting from berth's spec template.
pub fn spec_from_image(
    config: &ImageConfig,
    rootfs: &Path,
    r: &Reference,
    args: Option<&[String]>,
) -> Result<Spec> {
    let c = &config.config;
    let args: Vec<String> = match args {
        Some(a) => a.to_vec(),
        None => c.entrypoint.iter().chain(&c.cmd).cloned().collect(),
    };
    if args.is_empty() {
        bail!("image {r} has neither Entrypoint nor Cmd: no command to run");
    }
    let mut env = c.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let user =
        resolve_user(rootfs, &c.user).with_context(|| format!("image {r}: User {:?}", c.user))?;

    let mut spec = default_spec();
    let mut process = spec
        .process()
        .clone()
        .context("template without a process")?;
    process.set_terminal(Some(false));
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(if c.working_dir.is_empty() {
        "/"
    } else {
        &c.working_dir
    }));
    let mut u = process.user().clone();
    u.set_uid(user.uid);
    u.set_gid(user.gid);
    u.set_additional_gids(if user.groups.is_empty() {
        None
    } else {
        Some(user.groups)
    });
    process.set_user(u);
    spec.set_process(Some(process));
    let mut root = spec.root().clone().context("template without a root")?;
    root.set_readonly(Some(false));
    spec.set_root(Some(root));

    // As the OCI image spec's conversion rules say: labels become annotations, with the
    // image's ports and facts under org.opencontainers.image.*.
    let mut notes: HashMap<String, String> = c.labels.clone().into_iter().collect();
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            notes.insert(k.to_string(), v);
        }
    };
    put("org.opencontainers.image.ref.name", r.to_string());
    put("org.opencontainers.image.os", config.os.clone());
    put(
        "org.opencontainers.image.architecture",
        config.architecture.clone(),
    );
    put(
        "org.opencontainers.image.author",
        config.author.clone().unwrap_or_default(),
    );
    put(
        "org.opencontainers.image.created",
        config.created.clone().unwrap_or_default(),
    );
    put("org.opencontainers.image.stopSignal", c.stop_signal.clone());
    put(
        "org.opencontainers.image.exposedPorts",
        c.exposed_ports
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(","),
    );
    put(
        "berth.image.volumes",
        c.volumes.keys().cloned().collect::<Vec<_>>().join(","),
    );
    spec.set_annotations(Some(notes));
    Ok(spec)
}

/// A user resolved against the image's /etc/passwd and /etc/group.
#[derive(Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Resolves Docker's `User` forms (`name`, `uid`, `name:group`, `uid:gid`, mixed) against the
/// image's own files, read inside the root: a symlinked /etc/passwd cannot point at the host's.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    let root: OwnedFd = fs::File::open(rootfs)
        .with_context(|| format!("cannot open {}", rootfs.display()))?
        .into();
    let passwd = read_in_root(&root, "/etc/passwd")?;
    let group = read_in_root(&root, "/etc/group")?;
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd_entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 4)
        .collect();
    let group_entries: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 3)
        .collect();

    let (uid, mut gid, name) = if user_part.is_empty() {
        (0, 0, Some("root".to_string()))
    } else if let Ok(uid) = user_part.parse::<u32>() {
        let found = passwd_entries.iter().find(|f| f[2].parse() == Ok(uid));
        (
            uid,
            found.and_then(|f| f[3].parse().ok()).unwrap_or(0),
            found.map(|f| f[0].to_string()),
        )
    } else {
        let f = passwd_entries
            .iter()
            .find(|f| f[0] == user_part)
            .with_context(|| format!("no user {user_part:?} in the image's /etc/passwd"))?;
        let uid = f[2]
            .parse()
            .with_context(|| format!("invalid uid for {user_part:?} in /etc/passwd"))?;
        let gid = f[3]
            .parse()
            .with_context(|| format!("invalid gid for {user_part:?} in /etc/passwd"))?;
        (uid, gid, Some(user_part.to_string()))
    };
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries
                .iter()
                .find(|f| f[0] == g)
                .with_context(|| format!("no group {g:?} in the image's /etc/group"))?[2]
                .parse()
                .with_context(|| format!("invalid gid for group {g:?} in /etc/group"))?,
        };
    }
    // Supplementary groups: those listing the user as a member (only when no group was forced).
    let mut groups = Vec::new();
    if let (Some(name), None) = (&name, group_part) {
        for f in &group_entries {
            if f.get(3).is_some_and(|m| m.split(',').any(|m| m == name)) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if g != gid && !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser { uid, gid, groups })
}

/// The text of a file inside the root (symlinks resolved there); empty when missing.
fn read_in_root(root: &OwnedFd, path: &str) -> Result<String> {
    let fd = match inroot::resolve(root.as_fd(), Path::new(path), Create::Nothing) {
        Ok(fd) => fd,
        Err(_) => return Ok(String::new()),
    };
    let kind = nix::sys::stat::fstat(&fd)?.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG {
        bail!("the image's {path} is not a regular file");
    }
    let mut text = String::new();
    fs::File::open(inroot::fd_path(&fd))
        .with_context(|| format!("cannot open the image's {path}"))?
        .take(16 << 20)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the image's {path}"))?;
    Ok(text)
}
