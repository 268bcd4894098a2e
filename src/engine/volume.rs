//! Volumes: directories under the data root that outlive containers, with Docker's `local`
//! driver's behaviour.
//!
//! `DATA_ROOT/volumes/NAME/` holds `_data` (what containers see), `volume.json` (Name, Driver,
//! CreatedAt, Labels, Options, Scope) and `users/CONTAINER_ID` (one empty file per container that
//! mounts it). A volume is made in a `.new-*` directory and renamed into place, and removed by a
//! rename to `.gone-*` first, so a berth killed half-way leaves nothing that looks like a volume;
//! the leftovers are swept the next time the store is opened. Every change happens under an
//! exclusive `flock` of `volumes/.lock`, so two berth commands at once see each other's work
//! whole. A user whose container no longer exists (a crash between the container's removal and
//! the release) is found through the caller's `is_container` and dropped, so it cannot keep the
//! volume busy for ever.
//!
//! Filling an empty volume from the image ([`VolumeStore::fill_from_rootfs`], at create and at
//! each start, as Docker copies whenever a volume it mounts is empty) reads the rootfs as
//! hostile: the path is resolved inside the root (openat2 `RESOLVE_IN_ROOT`), and the copy walks
//! file descriptors, never following a symlink.

use crate::image::time::now_rfc3339;
use crate::runtime::fsutil::write_atomically;
use crate::runtime::inroot;
use anyhow::{bail, Context, Result};
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, Flock, FlockArg, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags,
    FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The label Docker (23+) puts on the volumes it makes without a name; `volume prune` removes
/// only these unless told `--all`.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The characters Docker allows in a volume name (its `RestrictedNameChars`), as it prints them.
const NAME_CHARS: &str = "[a-zA-Z0-9][a-zA-Z0-9_.-]";

/// The options the local driver takes (`type`, `device` and `o` name a filesystem to mount on
/// the volume's data directory; `size` needs quota support, which berth does not have).
const VALID_OPTIONS: [&str; 3] = ["type", "device", "o"];

/// A volume as `volume inspect` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub created_at: String,
    pub driver: String,
    #[serde(serialize_with = "null_if_empty", deserialize_with = "empty_if_null")]
    pub labels: BTreeMap<String, String>,
    /// Not stored: it is where the volume's data is under this data root.
    #[serde(default)]
    pub mountpoint: PathBuf,
    pub name: String,
    #[serde(serialize_with = "null_if_empty", deserialize_with = "empty_if_null")]
    pub options: BTreeMap<String, String>,
    pub scope: String,
}

impl Volume {
    /// True for a volume made without a name (a `-v /path`, `--mount` without source, or an
    /// image VOLUME).
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

fn null_if_empty<S: Serializer>(m: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    if m.is_empty() {
        s.serialize_none()
    } else {
        m.serialize(s)
    }
}

fn empty_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// Checks a volume name against Docker's rule, with its words.
pub fn validate_name(name: &str) -> Result<()> {
    if name.len() == 1 {
        bail!("volume name is too short, names should be at least two alphanumeric characters");
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        bail!(
            "{name:?} includes invalid characters for a local volume name, only {NAME_CHARS:?} \
             are allowed. If you intended to pass a host directory, use absolute path"
        );
    }
    Ok(())
}

/// Checks the local driver's options as Docker does.
pub fn validate_options(options: &BTreeMap<String, String>) -> Result<()> {
    if options.is_empty() {
        return Ok(());
    }
    for key in options.keys() {
        if key == "size" {
            bail!("quota size requested but no quota support");
        }
        if !VALID_OPTIONS.contains(&key.as_str()) {
            bail!("invalid option: {key:?}");
        }
    }
    for required in ["type", "device"] {
        if options.get(required).is_none_or(|v| v.is_empty()) {
            bail!("missing required option: {required:?}");
        }
    }
    Ok(())
}

/// 64 random hex digits: the name of an anonymous volume, as Docker makes them.
pub fn random_name() -> Result<String> {
    let mut bytes = [0u8; 32];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `bytes`.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e).context("getrandom"),
            }
        }
        filled += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What [`VolumeStore::fill_from_rootfs`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillOutcome {
    /// The image's directory was copied in.
    Filled,
    /// The volume already had content: left as it is.
    NotEmpty,
    /// The image has nothing at that path.
    Missing,
}

/// What `volume prune` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    pub reclaimed_bytes: u64,
}

/// `volume ls --filter` / `volume prune --filter` terms.
#[derive(Clone, Debug, Default)]
pub struct VolumeFilter {
    /// `dangling=true|false`: no container uses it, or some does.
    pub dangling: Option<bool>,
    /// `driver=NAME`.
    pub driver: Vec<String>,
    /// `label=KEY` or `label=KEY=VALUE`: all must match.
    pub labels: Vec<(String, Option<String>)>,
    /// `label!=KEY` or `label!=KEY=VALUE`: none may match.
    pub not_labels: Vec<(String, Option<String>)>,
    /// `name=PART`: the name contains it (any of them).
    pub names: Vec<String>,
}

impl VolumeFilter {
    /// Parses `--filter` arguments (`KEY=VALUE`), with Docker's error for anything else.
    pub fn parse(args: &[String]) -> Result<VolumeFilter> {
        let mut f = VolumeFilter::default();
        for arg in args {
            let Some((key, value)) = arg.split_once('=') else {
                bail!("bad format of filter (expected name=value)");
            };
            let label = |v: &str| match v.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (v.to_string(), None),
            };
            // `label!=x` splits as key `label!`, value `x`.
            match key {
                "dangling" => {
                    f.dangling = Some(match value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => bail!("Invalid filter 'dangling={value}'"),
                    })
                }
                "driver" => f.driver.push(value.to_string()),
                "label" => f.labels.push(label(value)),
                "label!" => f.not_labels.push(label(value)),
                "name" => f.names.push(value.to_string()),
                _ => bail!("Invalid filter '{key}'"),
            }
        }
        Ok(f)
    }

    fn label_matches(v: &Volume, (key, value): &(String, Option<String>)) -> bool {
        match (v.labels.get(key), value) {
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
            (None, _) => false,
        }
    }

    /// True when `v` (used by containers when `in_use`) passes every term.
    pub fn matches(&self, v: &Volume, in_use: bool) -> bool {
        self.dangling.is_none_or(|d| d != in_use)
            && (self.driver.is_empty() || self.driver.contains(&v.driver))
            && self.labels.iter().all(|l| Self::label_matches(v, l))
            && !self.not_labels.iter().any(|l| Self::label_matches(v, l))
            && (self.names.is_empty() || self.names.iter().any(|n| v.name.contains(n.as_str())))
    }
}

/// The volumes under one data root.
pub struct VolumeStore {
    dir: PathBuf,
}

impl VolumeStore {
    /// Opens (making when missing) `DATA_ROOT/volumes`, and sweeps what a killed berth left.
    pub fn open(data_root: &Path) -> Result<VolumeStore> {
        let dir = data_root.join("volumes");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Absolute and without symlinks: mountinfo (where option volumes are found mounted)
        // names mount points so.
        let dir =
            fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
        let store = VolumeStore { dir };
        let _lock = store.lock()?;
        for entry in fs::read_dir(&store.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".new-") || name.starts_with(".gone-") {
                unmount_data(&entry.path().join("_data"));
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(store)
    }

    /// The directory holding the volumes (`DATA_ROOT/volumes`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<Flock<fs::File>> {
        crate::runtime::fsutil::lock_file(&self.dir.join(".lock"), FlockArg::LockExclusive)
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Where a volume's data is: the source of its bind mounts.
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    fn load(&self, name: &str) -> Result<Option<Volume>> {
        let path = self.volume_dir(name).join("volume.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut v: Volume = serde_json::from_slice(&bytes)
            .with_context(|| format!("cannot parse {}", path.display()))?;
        v.mountpoint = self.data_path(name);
        Ok(Some(v))
    }

    /// The volume `name`, with Docker's error when there is none.
    pub fn get(&self, name: &str) -> Result<Volume> {
        match self.lookup(name)? {
            Some(v) => Ok(v),
            None => bail!("get {name}: no such volume"),
        }
    }

    /// The volume `name`, if there is one.
    pub fn lookup(&self, name: &str) -> Result<Option<Volume>> {
        // A name that cannot be a volume's is not looked up as a path (`..`, `/x`).
        if validate_name(name).is_err() {
            return Ok(None);
        }
        self.load(name)
    }

    /// Every volume, sorted by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || validate_name(name).is_err() {
                continue;
            }
            if let Some(v) = self.load(name)? {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// `volume create`: makes the volume `name` (a random name when None, which then gets the
    /// anonymous label). Creating a name that exists returns the existing volume unchanged, as
    /// Docker does.
    pub fn create(
        &self,
        name: Option<&str>,
        labels: &BTreeMap<String, String>,
        options: &BTreeMap<String, String>,
    ) -> Result<Volume> {
        let _lock = self.lock()?;
        self.create_locked(name, labels, options)
    }

    fn create_locked(
        &self,
        name: Option<&str>,
        labels: &BTreeMap<String, String>,
        options: &BTreeMap<String, String>,
    ) -> Result<Volume> {
        let (name, mut labels) = match name {
            Some(n) => {
                validate_name(n).with_context(|| format!("create {n}"))?;
                (n.to_string(), labels.clone())
            }
            None => {
                let mut l = labels.clone();
                l.insert(ANONYMOUS_LABEL.to_string(), String::new());
                (random_name()?, l)
            }
        };
        validate_options(options).with_context(|| format!("create {name}"))?;
        if let Some(v) = self.load(&name)? {
            return Ok(v);
        }
        labels.retain(|k, _| !k.is_empty());
        let volume = Volume {
            created_at: now_rfc3339(),
            driver: "local".into(),
            labels,
            mountpoint: self.data_path(&name),
            name: name.clone(),
            options: options.clone(),
            scope: "local".into(),
        };
        let staging = self.dir.join(format!(".new-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        let made = (|| -> Result<()> {
            fs::create_dir(&staging)?;
            set_mode(&staging, 0o701)?;
            fs::create_dir(staging.join("_data"))?;
            set_mode(&staging.join("_data"), 0o755)?;
            fs::create_dir(staging.join("users"))?;
            write_atomically(
                &staging.join("volume.json"),
                &serde_json::to_vec_pretty(&volume)?,
            )?;
            fs::rename(&staging, self.volume_dir(&name))?;
            Ok(())
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&staging);
            return Err(e).with_context(|| format!("create {name}"));
        }
        Ok(volume)
    }

    /// Makes the volume (`None`: an anonymous one) unless it exists, and records `container_id`
    /// as a user, in one step: a prune running at the same time cannot take the volume away
    /// between the two. Docker's `Create` with a reference. The flag says whether the volume was
    /// made here (and is the caller's to remove if what it was made for fails).
    pub fn create_and_acquire(
        &self,
        name: Option<&str>,
        labels: &BTreeMap<String, String>,
        options: &BTreeMap<String, String>,
        container_id: &str,
    ) -> Result<(Volume, bool)> {
        let _lock = self.lock()?;
        let existed = name.is_some_and(|n| self.dir.join(n).join("volume.json").exists());
        let v = self.create_locked(name, labels, options)?;
        if let Err(e) = self.acquire_locked(&v, container_id) {
            if !existed {
                let _ = self.remove_locked(&v.name);
            }
            return Err(e);
        }
        Ok((v, !existed))
    }

    /// Records `container_id` as a user of `name`, which then cannot be removed.
    pub fn acquire(&self, name: &str, container_id: &str) -> Result<()> {
        let _lock = self.lock()?;
        let v = self.get(name)?;
        self.acquire_locked(&v, container_id)
    }

    fn acquire_locked(&self, v: &Volume, container_id: &str) -> Result<()> {
        check_container_id(container_id)?;
        let users = self.volume_dir(&v.name).join("users");
        fs::create_dir_all(&users)?;
        fs::write(users.join(container_id), b"")
            .with_context(|| format!("cannot record a user of volume {}", v.name))?;
        if !v.options.is_empty() {
            if let Err(e) = mount_options_volume(v) {
                let _ = fs::remove_file(users.join(container_id));
                return Err(e);
            }
        }
        Ok(())
    }

    /// Mounts what a volume's options name on its data directory where it is not mounted (a
    /// reboot unmounted it); nothing for a plain volume.
    pub fn ensure_mounted(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        let v = self.get(name)?;
        if v.options.is_empty() {
            return Ok(());
        }
        mount_options_volume(&v)
    }

    /// Drops `container_id` from the users of `name` (nothing if it was not one, or the volume
    /// is gone). A volume with mount options is unmounted when its last user goes.
    pub fn release(&self, name: &str, container_id: &str) -> Result<()> {
        let _lock = self.lock()?;
        self.release_locked(name, container_id)
    }

    fn release_locked(&self, name: &str, container_id: &str) -> Result<()> {
        check_container_id(container_id)?;
        let Some(v) = self.lookup(name)? else {
            return Ok(());
        };
        match fs::remove_file(self.volume_dir(name).join("users").join(container_id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot release volume {name}")),
        }
        if !v.options.is_empty() && self.recorded_users(name)?.is_empty() {
            unmount_data(&v.mountpoint);
        }
        Ok(())
    }

    fn recorded_users(&self, name: &str) -> Result<Vec<String>> {
        let dir = self.volume_dir(name).join("users");
        let mut out = Vec::new();
        match fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries {
                    if let Some(id) = e?.file_name().to_str() {
                        out.push(id.to_string());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        }
        out.sort();
        Ok(out)
    }

    /// The containers using `name` that still exist; stale users are dropped on the way.
    pub fn users(&self, name: &str, is_container: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let _lock = self.lock()?;
        self.live_users_locked(name, is_container)
    }

    fn live_users_locked(
        &self,
        name: &str,
        is_container: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let mut live = Vec::new();
        for id in self.recorded_users(name)? {
            if is_container(&id) {
                live.push(id);
            } else {
                let _ = fs::remove_file(self.volume_dir(name).join("users").join(&id));
            }
        }
        Ok(live)
    }

    /// `volume rm`: removes `name` and its data. Refused, with Docker's error, while a container
    /// uses it; with `force`, a missing volume is not an error.
    pub fn remove(
        &self,
        name: &str,
        force: bool,
        is_container: &dyn Fn(&str) -> bool,
    ) -> Result<()> {
        let _lock = self.lock()?;
        if self.lookup(name)?.is_none() {
            if force {
                return Ok(());
            }
            bail!("get {name}: no such volume");
        }
        let users = self.live_users_locked(name, is_container)?;
        if !users.is_empty() {
            bail!("remove {name}: volume is in use - [{}]", users.join(", "));
        }
        self.remove_locked(name)
    }

    fn remove_locked(&self, name: &str) -> Result<()> {
        let dir = self.volume_dir(name);
        let gone = self
            .dir
            .join(format!(".gone-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&gone);
        unmount_data(&dir.join("_data"));
        fs::rename(&dir, &gone).with_context(|| format!("remove {name}"))?;
        fs::remove_dir_all(&gone).with_context(|| format!("remove {name}"))?;
        Ok(())
    }

    /// Removes the anonymous volumes among `names` once `container_id` has let them go and no
    /// other container uses them (`rm -v`, and `run --rm`). Named volumes are only released.
    pub fn release_and_remove_anonymous(
        &self,
        names: &[String],
        container_id: &str,
        is_container: &dyn Fn(&str) -> bool,
    ) -> Result<()> {
        let _lock = self.lock()?;
        for name in names {
            self.release_locked(name, container_id)?;
            let Some(v) = self.lookup(name)? else {
                continue;
            };
            if v.is_anonymous() && self.live_users_locked(name, is_container)?.is_empty() {
                self.remove_locked(name)?;
            }
        }
        Ok(())
    }

    /// `volume prune`: removes the volumes no container uses that pass `filter`: only the
    /// anonymous ones unless `all` (Docker 23+).
    pub fn prune(
        &self,
        all: bool,
        filter: &VolumeFilter,
        is_container: &dyn Fn(&str) -> bool,
    ) -> Result<PruneReport> {
        let _lock = self.lock()?;
        let mut report = PruneReport::default();
        for v in self.list()? {
            if !all && !v.is_anonymous() {
                continue;
            }
            if !self.live_users_locked(&v.name, is_container)?.is_empty()
                || !filter.matches(&v, false)
            {
                continue;
            }
            let size = self.size(&v.name).unwrap_or(0);
            self.remove_locked(&v.name)?;
            report.deleted.push(v.name);
            report.reclaimed_bytes += size;
        }
        Ok(report)
    }

    /// `volume ls`: the volumes passing `filter`, sorted by name.
    pub fn list_filtered(
        &self,
        filter: &VolumeFilter,
        is_container: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Volume>> {
        let _lock = self.lock()?;
        let mut out = Vec::new();
        for v in self.list()? {
            let in_use = !self.live_users_locked(&v.name, is_container)?.is_empty();
            if filter.matches(&v, in_use) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The bytes a volume's files hold (each inode once; directories not counted), as Docker's
    /// reclaimed space counts them. Containers write the data: it is walked without following
    /// any symlink.
    pub fn size(&self, name: &str) -> Result<u64> {
        let dir = open_dir_nofollow(None, self.data_path(name).as_os_str())?;
        let mut seen = HashSet::new();
        tree_size(dir, &mut seen)
    }

    /// Fills the empty volume `name` with what the image has at `container_path` in `rootfs`
    /// (modes, owners, xattrs, times, hard links; symlinks as links), and gives the volume's
    /// directory the owner and mode of the image's, as Docker does when it mounts a volume
    /// that is empty. A volume with content is left alone; a fill cut short by a crash is done
    /// again from the start. The path is resolved inside `rootfs` and nothing on the way out
    /// of the image is followed. A file (not a directory) at the path gets Docker's error.
    pub fn fill_from_rootfs(
        &self,
        name: &str,
        rootfs: &Path,
        container_path: &str,
    ) -> Result<FillOutcome> {
        self.get(name)?;
        let vol_dir = open_dir_nofollow(None, self.volume_dir(name).as_os_str())
            .with_context(|| format!("volume {name}"))?;
        // One fill of a volume at a time; other volumes and commands go on meanwhile.
        let vol_dir = Flock::lock(vol_dir, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("cannot lock volume {name}: {e}"))?;
        let marker = self.volume_dir(name).join("filling");
        let data = open_dir_nofollow(Some(vol_dir.as_fd()), OsStr::new("_data"))
            .with_context(|| format!("volume {name}"))?;
        if marker.exists() {
            clear_dir(&self.data_path(name))?;
        } else if !dir_is_empty(&data)? {
            return Ok(FillOutcome::NotEmpty);
        }

        let root: OwnedFd = openat(
            nix::fcntl::AT_FDCWD,
            rootfs,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open the rootfs {}", rootfs.display()))?;
        let src_path = Path::new(container_path);
        let src = match inroot::openat2(
            root.as_fd(),
            src_path,
            libc::O_PATH,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(FillOutcome::Missing),
            Err(e) => return Err(inroot::resolve_error(e, src_path)),
        };
        let st = fstat(&src)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
            bail!("cannot mount volume over existing file, file exists {container_path}");
        }
        let src = openat(
            &src,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;

        fs::write(&marker, b"").with_context(|| format!("cannot write {}", marker.display()))?;
        let mut copier = Copier {
            dst_root: data.try_clone()?,
            links: HashMap::new(),
            as_root: nix::unistd::geteuid().is_root(),
        };
        copier
            .copy_dir(&src, &data, Path::new(""))
            .with_context(|| format!("copying {container_path} of the image into volume {name}"))?;
        copier
            .copy_meta_fd(&src, &data, &st)
            .with_context(|| format!("volume {name}"))?;
        fs::remove_file(&marker)?;
        Ok(FillOutcome::Filled)
    }
}

/// A container id is a file name under `users/`: nothing that could climb out.
fn check_container_id(id: &str) -> Result<()> {
    if id.is_empty() || id.starts_with('.') || id.contains('/') || id.contains('\0') {
        bail!("invalid container id {id:?}");
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// Mounts the filesystem a volume's options name (`type`, `device`, `o`) on its data
/// directory, unless something is mounted there already (another user's mount).
fn mount_options_volume(v: &Volume) -> Result<()> {
    if is_mountpoint(&v.mountpoint) {
        return Ok(());
    }
    let fstype = &v.options["type"];
    let device = &v.options["device"];
    let o: Vec<String> = v
        .options
        .get("o")
        .map(|o| {
            o.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let parsed = crate::runtime::mount_options::parse_mount_options(&o, "o")
        .with_context(|| format!("volume {}: option o", v.name))?;
    let data = (!parsed.data.is_empty()).then_some(parsed.data.as_str());
    nix::mount::mount(
        Some(device.as_str()),
        &v.mountpoint,
        Some(fstype.as_str()),
        parsed.flags,
        data,
    )
    .with_context(|| {
        format!(
            "error while mounting volume '{}': type {fstype}, device {device}",
            v.mountpoint.display()
        )
    })
}

/// True when `path` is a mount point (a different mount from its parent's).
fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|p| unescape_mountinfo(p) == path.as_os_str().as_bytes())
    })
}

/// A mountinfo path field with its octal escapes (a space is `\040`) undone.
pub(crate) fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Unmounts whatever a volume's options put on its data directory.
fn unmount_data(data: &Path) {
    while is_mountpoint(data) {
        if nix::mount::umount2(data, nix::mount::MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
}

fn open_dir_nofollow(dir: Option<BorrowedFd>, name: &OsStr) -> Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match dir {
        Some(d) => openat(d, name, flags, Mode::empty()),
        None => openat(nix::fcntl::AT_FDCWD, name, flags, Mode::empty()),
    };
    fd.with_context(|| format!("cannot open directory {}", Path::new(name).display()))
}

fn dir_is_empty(dir: &OwnedFd) -> Result<bool> {
    let mut d = Dir::from_fd(dir.try_clone()?)?;
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Removes everything in `dir` (our own data directory; std's removal does not follow
/// symlinks).
fn clear_dir(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        }
        .with_context(|| format!("cannot remove {}", p.display()))?;
    }
    Ok(())
}

/// The names in a directory fd, without `.` and `..`.
fn entries(dir: &OwnedFd) -> Result<Vec<(OsString, Option<Type>)>> {
    let mut d = Dir::from_fd(dir.try_clone()?)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        out.push((OsStr::from_bytes(n).to_os_string(), e.file_type()));
    }
    Ok(out)
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn tree_size(dir: OwnedFd, seen: &mut HashSet<(u64, u64)>) -> Result<u64> {
    let mut total = 0;
    for (name, _) in entries(&dir)? {
        let st = match fstatat(
            &dir,
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        if kind_of(&st) == SFlag::S_IFDIR {
            if let Ok(child) = open_dir_nofollow(Some(dir.as_fd()), &name) {
                total += tree_size(child, seen)?;
            }
        } else if seen.insert((st.st_dev, st.st_ino)) {
            total += st.st_size as u64;
        }
    }
    Ok(total)
}

/// The copy of an image directory into a volume, on fds.
struct Copier {
    dst_root: OwnedFd,
    /// Source inode → where its first copy went (relative to `dst_root`), to keep hard links.
    links: HashMap<(u64, u64), PathBuf>,
    as_root: bool,
}

impl Copier {
    fn copy_dir(&mut self, src: &OwnedFd, dst: &OwnedFd, rel: &Path) -> Result<()> {
        for (name, _) in entries(src)? {
            let name = name.as_os_str();
            let st = fstatat(src, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .with_context(|| format!("cannot stat {}", rel.join(name).display()))?;
            let kind = kind_of(&st);
            let here = rel.join(name);
            if kind == SFlag::S_IFDIR {
                let child_src = open_dir_nofollow(Some(src.as_fd()), name)?;
                // The checked stat and the opened directory must be the same object.
                let opened = fstat(&child_src)?;
                if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) {
                    bail!("{} changed while being copied", here.display());
                }
                mkdirat(dst, name, Mode::from_bits_truncate(0o700))
                    .with_context(|| format!("cannot create {}", here.display()))?;
                let child_dst = open_dir_nofollow(Some(dst.as_fd()), name)?;
                self.copy_dir(&child_src, &child_dst, &here)?;
                self.copy_meta_fd(&child_src, &child_dst, &st)
                    .with_context(|| here.display().to_string())?;
                continue;
            }
            if kind != SFlag::S_IFLNK && st.st_nlink > 1 {
                if let Some(first) = self.links.get(&(st.st_dev, st.st_ino)) {
                    if self.link_to(first, dst, name).is_ok() {
                        continue;
                    }
                }
                self.links.insert((st.st_dev, st.st_ino), here.clone());
            }
            match kind {
                SFlag::S_IFREG => {
                    let from = openat(
                        src,
                        name,
                        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .with_context(|| format!("cannot open {}", here.display()))?;
                    let opened = fstat(&from)?;
                    if kind_of(&opened) != SFlag::S_IFREG
                        || (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino)
                    {
                        bail!("{} changed while being copied", here.display());
                    }
                    let to = openat(
                        dst,
                        name,
                        OFlag::O_WRONLY
                            | OFlag::O_CREAT
                            | OFlag::O_EXCL
                            | OFlag::O_NOFOLLOW
                            | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o600),
                    )
                    .with_context(|| format!("cannot create {}", here.display()))?;
                    let mut from = fs::File::from(from);
                    let mut to_file = fs::File::from(to);
                    std::io::copy(&mut from, &mut to_file)
                        .with_context(|| format!("cannot copy {}", here.display()))?;
                    let to = OwnedFd::from(to_file);
                    self.copy_meta_fd(&OwnedFd::from(from), &to, &st)
                        .with_context(|| here.display().to_string())?;
                }
                SFlag::S_IFLNK => {
                    let target = readlinkat(src, name)?;
                    symlinkat(target.as_os_str(), dst, name)
                        .with_context(|| format!("cannot create {}", here.display()))?;
                    self.meta_at(dst, name, &st, true)
                        .with_context(|| here.display().to_string())?;
                }
                SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
                    mknodat(dst, name, kind, Mode::from_bits_truncate(0o600), st.st_rdev)
                        .with_context(|| format!("cannot create {}", here.display()))?;
                    self.meta_at(dst, name, &st, false)
                        .with_context(|| here.display().to_string())?;
                }
                // Sockets are endpoints of processes, not content: not copied.
                _ => {}
            }
        }
        Ok(())
    }

    fn link_to(&self, first: &Path, dst: &OwnedFd, name: &OsStr) -> Result<()> {
        let parent = first.parent().unwrap_or(Path::new(""));
        let dir = if parent.as_os_str().is_empty() {
            self.dst_root.try_clone()?
        } else {
            inroot::resolve(self.dst_root.as_fd(), parent, inroot::Create::Nothing)?
        };
        let first_name = first.file_name().context("hard link without a name")?;
        linkat(&dir, first_name, dst, name, nix::fcntl::AtFlags::empty())?;
        Ok(())
    }

    /// Owner, mode, xattrs and times of a regular file or directory, through its fds.
    fn copy_meta_fd(&self, src: &OwnedFd, dst: &OwnedFd, st: &FileStat) -> Result<()> {
        if self.as_root {
            fchown(
                dst,
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
            )
            .context("cannot set the owner")?;
        }
        // After the chown, which clears set-id bits.
        fchmod(dst, Mode::from_bits_truncate(st.st_mode & 0o7777))
            .context("cannot set the mode")?;
        copy_xattrs(src, dst)?;
        futimens(
            dst,
            &TimeSpec::new(st.st_atime, st.st_atime_nsec),
            &TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
        )
        .context("cannot set the times")?;
        Ok(())
    }

    /// Owner, mode and times of a symlink or device node made in `dir`.
    fn meta_at(&self, dir: &OwnedFd, name: &OsStr, st: &FileStat, is_link: bool) -> Result<()> {
        if self.as_root {
            fchownat(
                dir,
                name,
                Some(Uid::from_raw(st.st_uid)),
                Some(Gid::from_raw(st.st_gid)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .context("cannot set the owner")?;
        }
        if !is_link {
            // A node we just made in our own directory: nothing can have swapped it.
            fchmodat(
                dir,
                name,
                Mode::from_bits_truncate(st.st_mode & 0o7777),
                FchmodatFlags::FollowSymlink,
            )
            .context("cannot set the mode")?;
        }
        utimensat(
            dir,
            name,
            &TimeSpec::new(st.st_atime, st.st_atime_nsec),
            &TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
            UtimensatFlags::NoFollowSymlink,
        )
        .context("cannot set the times")?;
        Ok(())
    }
}

/// Copies the extended attributes of `src` to `dst` (both open files or directories). The
/// SELinux label is the host's business, and overlay's own attributes are not content; a
/// filesystem without xattrs is not an error, as in Docker.
fn copy_xattrs(src: &OwnedFd, dst: &OwnedFd) -> Result<()> {
    let mut names = vec![0u8; 1024];
    let len = loop {
        // SAFETY: the buffer is valid for its length; the fd is open.
        let n =
            unsafe { libc::flistxattr(src.as_raw_fd(), names.as_mut_ptr().cast(), names.len()) };
        if n >= 0 {
            break n as usize;
        }
        match Errno::last() {
            Errno::ERANGE => names.resize(names.len() * 4, 0),
            Errno::ENOTSUP => return Ok(()),
            e => return Err(e).context("cannot list xattrs"),
        }
    };
    for key in names[..len].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        if key == b"security.selinux" || key.starts_with(b"trusted.overlay.") {
            continue;
        }
        let ckey = CString::new(key)?;
        let mut value = vec![0u8; 256];
        let vlen = loop {
            // SAFETY: key is NUL-terminated, the buffer valid for its length, the fd open.
            let n = unsafe {
                libc::fgetxattr(
                    src.as_raw_fd(),
                    ckey.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            if n >= 0 {
                break Some(n as usize);
            }
            match Errno::last() {
                Errno::ERANGE => value.resize(value.len() * 16, 0),
                Errno::ENODATA => break None,
                e => {
                    return Err(e).with_context(|| {
                        format!("cannot read xattr {}", String::from_utf8_lossy(key))
                    })
                }
            }
        };
        let Some(vlen) = vlen else { continue };
        // SAFETY: key is NUL-terminated, the value slice valid for vlen bytes, the fd open.
        let rc = unsafe {
            libc::fsetxattr(
                dst.as_raw_fd(),
                ckey.as_ptr(),
                value.as_ptr().cast(),
                vlen,
                0,
            )
        };
        if rc != 0 {
            match Errno::last() {
                Errno::ENOTSUP => {}
                e => {
                    return Err(e).with_context(|| {
                        format!("cannot set xattr {}", String::from_utf8_lossy(key))
                    })
                }
            }
        }
    }
    Ok(())
}

/// A size as Docker's CLI prints it (decimal units, four significant digits: `0B`, `1.5kB`,
/// `12.35MB`).
pub fn human_size(bytes: u64) -> String {
    super::humanize::human_size(bytes as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let d =
                std::env::temp_dir().join(format!("berth-volume-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn none() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["ab", "a1", "my_vol.2-x", "0a"] {
            validate_name(ok).unwrap();
        }
        assert_eq!(
            validate_name("a").unwrap_err().to_string(),
            "volume name is too short, names should be at least two alphanumeric characters"
        );
        for bad in ["", "_ab", ".x", "a/b", "..", "a b", "é1"] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(
                e.contains(
                    "includes invalid characters for a local volume name, only \
                     \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
                ),
                "{bad:?}: {e}"
            );
        }
        let n = random_name().unwrap();
        assert!(n.len() == 64 && n.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(n, random_name().unwrap());
    }

    #[test]
    fn create_inspect_list_remove() {
        let t = TempDir::new("crud");
        let store = VolumeStore::open(&t.0).unwrap();
        let labels = BTreeMap::from([("team".to_string(), "db".to_string())]);
        let v = store.create(Some("pgdata"), &labels, &none()).unwrap();
        assert_eq!(v.mountpoint, t.0.join("volumes/pgdata/_data"));
        assert!(v.mountpoint.is_dir());
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["Driver"], "local");
        assert_eq!(json["Scope"], "local");
        assert_eq!(json["Labels"]["team"], "db");
        assert_eq!(json["Options"], serde_json::Value::Null);
        assert_eq!(json["Mountpoint"], v.mountpoint.to_str().unwrap());
        assert!(crate::image::time::parse_rfc3339(json["CreatedAt"].as_str().unwrap()).is_some());

        // Creating again returns the volume as it was.
        let again = store.create(Some("pgdata"), &none(), &none()).unwrap();
        assert_eq!(again, v);
        let anon = store.create(None, &none(), &none()).unwrap();
        assert!(anon.is_anonymous() && anon.name.len() == 64);
        assert_eq!(
            serde_json::to_value(&anon).unwrap()["Labels"],
            serde_json::json!({ANONYMOUS_LABEL: ""})
        );
        let names: Vec<String> = store.list().unwrap().into_iter().map(|v| v.name).collect();
        let mut want = vec![anon.name.clone(), "pgdata".to_string()];
        want.sort();
        assert_eq!(names, want);

        assert_eq!(
            format!(
                "{:#}",
                store.create(Some("x"), &none(), &none()).unwrap_err()
            ),
            "create x: volume name is too short, names should be at least two alphanumeric \
             characters"
        );
        let opts = BTreeMap::from([("color".to_string(), "red".to_string())]);
        assert_eq!(
            format!(
                "{:#}",
                store.create(Some("vv"), &none(), &opts).unwrap_err()
            ),
            "create vv: invalid option: \"color\""
        );
        assert_eq!(
            store.get("nope").unwrap_err().to_string(),
            "get nope: no such volume"
        );
        assert_eq!(
            store.get("../volumes").unwrap_err().to_string(),
            "get ../volumes: no such volume"
        );
        let yes = |_: &str| true;
        store.remove("pgdata", false, &yes).unwrap();
        assert!(!t.0.join("volumes/pgdata").exists());
        assert_eq!(
            store.remove("pgdata", false, &yes).unwrap_err().to_string(),
            "get pgdata: no such volume"
        );
        store.remove("pgdata", true, &yes).unwrap();
    }

    #[test]
    fn users_keep_a_volume_until_released_or_gone() {
        let t = TempDir::new("users");
        let store = VolumeStore::open(&t.0).unwrap();
        let (v, made) = store
            .create_and_acquire(Some("busy"), &none(), &none(), "c1")
            .unwrap();
        assert!(made);
        let (_, made) = store
            .create_and_acquire(Some("busy"), &none(), &none(), "c2")
            .unwrap();
        assert!(!made, "the second user finds it made");
        let live = |id: &str| id == "c1" || id == "c2";
        assert_eq!(
            store.remove("busy", false, &live).unwrap_err().to_string(),
            "remove busy: volume is in use - [c1, c2]"
        );
        assert_eq!(
            store.remove("busy", true, &live).unwrap_err().to_string(),
            "remove busy: volume is in use - [c1, c2]",
            "-f does not remove a volume in use, as in Docker"
        );
        store.release("busy", "c1").unwrap();
        // c2 was removed without releasing (a crash): its reference is stale.
        let only_c1 = |id: &str| id == "c1";
        assert_eq!(store.users("busy", &only_c1).unwrap(), Vec::<String>::new());
        assert!(
            !t.0.join("volumes/busy/users/c2").exists(),
            "stale user dropped"
        );
        store.remove("busy", false, &only_c1).unwrap();
        assert!(!v.mountpoint.exists());
        assert!(store.acquire("busy", "c1").is_err());
        assert!(store.acquire("..", "c1").is_err());
        store.create(Some("okv"), &none(), &none()).unwrap();
        assert!(store.acquire("okv", "../escape").is_err());
    }

    #[test]
    fn prune_takes_unused_anonymous_volumes_unless_all() {
        let t = TempDir::new("prune");
        let store = VolumeStore::open(&t.0).unwrap();
        let named = store.create(Some("keepme"), &none(), &none()).unwrap();
        let unused = store.create(None, &none(), &none()).unwrap();
        let (used, _) = store
            .create_and_acquire(None, &none(), &none(), "running")
            .unwrap();
        fs::write(unused.mountpoint.join("f"), vec![0u8; 1500]).unwrap();
        fs::hard_link(unused.mountpoint.join("f"), unused.mountpoint.join("g")).unwrap();
        fs::write(named.mountpoint.join("h"), b"12345").unwrap();
        let live = |id: &str| id == "running";
        let r = store.prune(false, &VolumeFilter::default(), &live).unwrap();
        assert_eq!(r.deleted, [unused.name]);
        assert_eq!(r.reclaimed_bytes, 1500, "a hard link counts once");
        assert_eq!(human_size(r.reclaimed_bytes), "1.5kB");
        let r = store.prune(true, &VolumeFilter::default(), &live).unwrap();
        assert_eq!(r.deleted, ["keepme".to_string()]);
        assert_eq!(r.reclaimed_bytes, 5);
        assert_eq!(store.list().unwrap(), std::slice::from_ref(&used));
        let r = store
            .prune(true, &VolumeFilter::default(), &|_| false)
            .unwrap();
        assert_eq!(r.deleted, [used.name]);
    }

    #[test]
    fn anonymous_volumes_go_with_rm_v() {
        let t = TempDir::new("rmv");
        let store = VolumeStore::open(&t.0).unwrap();
        let (anon, _) = store
            .create_and_acquire(None, &none(), &none(), "c1")
            .unwrap();
        let (shared, _) = store
            .create_and_acquire(None, &none(), &none(), "c1")
            .unwrap();
        store.acquire(&shared.name, "c2").unwrap();
        store
            .create_and_acquire(Some("named"), &none(), &none(), "c1")
            .unwrap();
        let names = vec![anon.name.clone(), shared.name.clone(), "named".to_string()];
        store
            .release_and_remove_anonymous(&names, "c1", &|id| id == "c2")
            .unwrap();
        let left: Vec<String> = store.list().unwrap().into_iter().map(|v| v.name).collect();
        let mut want = vec![shared.name.clone(), "named".to_string()];
        want.sort();
        assert_eq!(left, want, "the one c2 uses and the named one stay");
        assert!(store.users("named", &|_| true).unwrap().is_empty());
    }

    #[test]
    fn filters() {
        let f = VolumeFilter::parse(&[
            "label=a".to_string(),
            "label!=b=2".to_string(),
            "name=ke".to_string(),
            "dangling=true".to_string(),
        ])
        .unwrap();
        let mut v = Volume {
            created_at: String::new(),
            driver: "local".into(),
            labels: BTreeMap::from([("a".to_string(), "1".to_string())]),
            mountpoint: PathBuf::new(),
            name: "keep".into(),
            options: BTreeMap::new(),
            scope: "local".into(),
        };
        assert!(f.matches(&v, false));
        assert!(!f.matches(&v, true), "dangling=true: no users");
        v.labels.insert("b".into(), "2".into());
        assert!(!f.matches(&v, false));
        assert_eq!(
            VolumeFilter::parse(&["colour=red".to_string()])
                .unwrap_err()
                .to_string(),
            "Invalid filter 'colour'"
        );
        assert_eq!(
            VolumeFilter::parse(&["dangling=maybe".to_string()])
                .unwrap_err()
                .to_string(),
            "Invalid filter 'dangling=maybe'"
        );
    }

    #[test]
    fn sizes_print_as_dockers() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1234), "1.234kB");
        assert_eq!(human_size(12_345_678), "12.35MB");
        assert_eq!(human_size(100_000_000_000), "100GB");
    }

    #[test]
    fn leftovers_of_a_killed_berth_are_swept() {
        let t = TempDir::new("sweep");
        fs::create_dir_all(t.0.join("volumes/.new-half-123/_data")).unwrap();
        fs::create_dir_all(t.0.join("volumes/.gone-old-456/_data/x")).unwrap();
        let store = VolumeStore::open(&t.0).unwrap();
        assert_eq!(
            fs::read_dir(store.dir()).unwrap().count(),
            1,
            "only the lock file"
        );
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn concurrent_creates_make_one_volume() {
        let t = TempDir::new("race");
        let root = t.0.clone();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let root = root.clone();
                std::thread::spawn(move || {
                    let store = VolumeStore::open(&root).unwrap();
                    store
                        .create_and_acquire(Some("shared"), &none(), &none(), &format!("c{i}"))
                        .unwrap()
                        .1
                })
            })
            .collect();
        let made: usize = threads
            .into_iter()
            .map(|t| t.join().unwrap() as usize)
            .sum();
        assert_eq!(made, 1);
        let store = VolumeStore::open(&root).unwrap();
        assert_eq!(store.users("shared", &|_| true).unwrap().len(), 8);
    }

    /// A rootfs built by hand: content to copy, and symlinks that try to lead the copy out.
    fn hostile_rootfs(base: &Path, canary: &Path) -> PathBuf {
        let root = base.join("rootfs");
        let data = root.join("srv/data");
        fs::create_dir_all(data.join("sub")).unwrap();
        fs::write(data.join("file"), b"content").unwrap();
        fs::set_permissions(data.join("file"), fs::Permissions::from_mode(0o4751)).unwrap();
        fs::hard_link(data.join("file"), data.join("sub/hardlink")).unwrap();
        symlink("/etc/passwd", data.join("abs-link")).unwrap();
        symlink(canary, data.join("canary-link")).unwrap();
        nix::unistd::mkfifo(&data.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o750)).unwrap();
        nix::unistd::chown(&data, Some(Uid::from_raw(123)), Some(Gid::from_raw(456))).unwrap();
        nix::unistd::chown(
            &data.join("sub"),
            Some(Uid::from_raw(7)),
            Some(Gid::from_raw(8)),
        )
        .unwrap();
        // Paths that would leave the root if followed on the host.
        symlink(canary.parent().unwrap(), root.join("escape-abs")).unwrap();
        symlink("../../../../../../..", root.join("escape-rel")).unwrap();
        root
    }

    #[test]
    fn fill_copies_the_image_directory_and_nothing_outside() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (owners)");
            return;
        }
        let t = TempDir::new("fill");
        let canary_dir = t.0.join("host-secrets");
        fs::create_dir_all(&canary_dir).unwrap();
        let canary = canary_dir.join("canary");
        fs::write(&canary, b"host secret").unwrap();
        let rootfs = hostile_rootfs(&t.0, &canary);
        let store = VolumeStore::open(&t.0.join("data")).unwrap();

        let v = store.create(Some("filled"), &none(), &none()).unwrap();
        assert_eq!(
            store
                .fill_from_rootfs("filled", &rootfs, "/srv/data")
                .unwrap(),
            FillOutcome::Filled
        );
        let d = &v.mountpoint;
        assert_eq!(fs::read(d.join("file")).unwrap(), b"content");
        let m = fs::metadata(d.join("file")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4751);
        assert_eq!(
            fs::metadata(d.join("sub/hardlink")).unwrap().ino(),
            m.ino(),
            "hard links kept"
        );
        assert_eq!(
            fs::read_link(d.join("abs-link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(fs::read_link(d.join("canary-link")).unwrap(), canary);
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(d.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        let sub = fs::metadata(d.join("sub")).unwrap();
        assert_eq!((sub.uid(), sub.gid()), (7, 8));
        let top = fs::metadata(d).unwrap();
        assert_eq!(
            (top.uid(), top.gid(), top.mode() & 0o7777),
            (123, 456, 0o750),
            "the volume takes the owner and mode of the image's directory"
        );

        // Once it has content, a second fill leaves it alone.
        fs::remove_file(d.join("file")).unwrap();
        assert_eq!(
            store
                .fill_from_rootfs("filled", &rootfs, "/srv/data")
                .unwrap(),
            FillOutcome::NotEmpty
        );
        assert!(!d.join("file").exists());

        // Paths that leave the root on the host stay inside it here: nothing there.
        for (i, path) in [
            "/escape-abs".to_string(),
            "/escape-rel/".to_string() + canary_dir.strip_prefix("/").unwrap().to_str().unwrap(),
            format!("/../../../..{}", canary_dir.display()),
        ]
        .iter()
        .enumerate()
        {
            let name = format!("esc{i}");
            let v = store.create(Some(&name), &none(), &none()).unwrap();
            assert_eq!(
                store.fill_from_rootfs(&name, &rootfs, path).unwrap(),
                FillOutcome::Missing,
                "{path}"
            );
            assert_eq!(fs::read_dir(&v.mountpoint).unwrap().count(), 0, "{path}");
        }
        // A file where the volume goes: Docker's error.
        store.create(Some("onfile"), &none(), &none()).unwrap();
        assert_eq!(
            store
                .fill_from_rootfs("onfile", &rootfs, "/srv/data/file")
                .unwrap_err()
                .to_string(),
            "cannot mount volume over existing file, file exists /srv/data/file"
        );
    }

    #[test]
    fn a_fill_cut_short_is_done_again() {
        let t = TempDir::new("refill");
        let rootfs = t.0.join("rootfs");
        fs::create_dir_all(rootfs.join("d")).unwrap();
        fs::write(rootfs.join("d/a"), b"a").unwrap();
        let store = VolumeStore::open(&t.0.join("data")).unwrap();
        let v = store.create(Some("half"), &none(), &none()).unwrap();
        // What a berth killed mid-copy leaves: the marker and part of the content.
        fs::write(t.0.join("data/volumes/half/filling"), b"").unwrap();
        fs::write(v.mountpoint.join("partial"), b"x").unwrap();
        assert_eq!(
            store.fill_from_rootfs("half", &rootfs, "/d").unwrap(),
            FillOutcome::Filled
        );
        let mut names: Vec<_> = fs::read_dir(&v.mountpoint)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["a"]);
        assert!(!t.0.join("data/volumes/half/filling").exists());
    }
}
