//! Container state on disk: one directory per container under `--root`.
//!
//! `state.json` is written atomically (temp file + rename); every command that changes a
//! container holds an exclusive `flock` on the container's directory. The status is never taken
//! from the file alone: it is derived from the init process (alive, and the same process, checked
//! by its start time so a reused pid is not mistaken for the container), the start socket (present
//! only between create and start) and the freezer.

use crate::runtime::cgroups::CgroupPaths;
use crate::runtime::fsutil::StagedFile;
use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Hooks, LinuxNamespaceType, Process};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/run/berth";

/// `--root` when none is given: /run/berth for root; for any other user a directory of its
/// own, `$XDG_RUNTIME_DIR/berth` or else `/tmp/berth-<uid>` (runc uses `$XDG_RUNTIME_DIR/runc`).
pub fn default_root() -> PathBuf {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        return PathBuf::from(DEFAULT_ROOT);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("berth"),
        _ => PathBuf::from(format!("/tmp/berth-{euid}")),
    }
}
const STATE_FILE: &str = "state.json";
/// The socket the created-but-not-started init listens on; `start` connects and removes it.
pub const START_SOCKET: &str = "start.sock";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What berth remembers about a container between commands.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    /// Start time of the init process in clock ticks since boot (field 22 of /proc/PID/stat).
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    pub cgroup: CgroupPaths,
    /// The namespace types the container has, in config order (what `exec` joins).
    pub namespaces: Vec<LinuxNamespaceType>,
    /// poststart and poststop hooks, run after `start` and on `delete`.
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// The config's process, the defaults for `exec -- CMD` (capabilities, user, env, ...).
    pub process: Process,
    /// Whether the container shares the host's pid namespace (then `kill --all` is needed to
    /// reach every process, and `delete --force` kills the whole cgroup).
    pub shares_host_pid_ns: bool,
    /// Without a mount namespace of its own: the id of the mount that was on top of the rootfs
    /// before the container's bind; everything stacked above it is the container's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_mount_base: Option<u64>,
    /// The berth process still creating the container: set in the record written before
    /// anything of the container exists (its cgroup paths planned, no pid yet), gone from the
    /// record that `create` commits once the container is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating: Option<ProcessId>,
}

/// A process, told apart from a later one given the same pid by its start time.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    /// The calling process.
    pub fn me() -> Result<ProcessId> {
        let pid = std::process::id() as i32;
        let start_time =
            process_start_time(pid).context("cannot read this process's start time")?;
        Ok(ProcessId { pid, start_time })
    }

    pub fn alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }
}

/// The outcome of trying to lock a container's directory.
pub enum Locking {
    Locked(ContainerDir),
    /// Another berth command holds the lock.
    Busy,
    /// There is no such directory (any more).
    Gone,
}

/// A container's directory under the root, locked for the lifetime of this value.
pub struct ContainerDir {
    pub path: PathBuf,
    pub id: String,
    _lock: File,
}

/// Checks a container id: `[A-Za-z0-9][A-Za-z0-9_.+-]*`, at most 1024 bytes.
pub fn validate_id(id: &str) -> Result<()> {
    let ok_first = id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    let ok_rest = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'));
    if id.is_empty() || id.len() > 1024 || !ok_first || !ok_rest {
        bail!(
            "container id {id:?}: invalid (must match [A-Za-z0-9][A-Za-z0-9_.+-]*, at most 1024 bytes)"
        );
    }
    Ok(())
}

impl ContainerDir {
    /// Makes a new container directory and locks it; fails if the id is taken.
    pub fn create(root: &Path, id: &str) -> Result<ContainerDir> {
        validate_id(id)?;
        // 0700 as runc does: a shared /tmp must not let others into a rootless user's state.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .with_context(|| format!("--root {}: cannot create state root", root.display()))?;
        let euid = nix::unistd::geteuid();
        if !euid.is_root() {
            let owner = std::fs::metadata(root)
                .with_context(|| format!("--root {}", root.display()))?
                .uid();
            if owner != euid.as_raw() {
                bail!(
                    "--root {}: owned by uid {owner}, not by the caller (uid {euid})",
                    root.display()
                );
            }
        }
        let path = root.join(id);
        if let Err(e) = std::fs::create_dir(&path) {
            if e.kind() == ErrorKind::AlreadyExists {
                bail!("container {id:?} already exists");
            }
            return Err(e).with_context(|| format!("cannot create {}", path.display()));
        }
        let lock = lock_dir(&path)?;
        Ok(ContainerDir {
            path,
            id: id.to_string(),
            _lock: lock,
        })
    }

    /// Opens and locks an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<ContainerDir> {
        validate_id(id)?;
        let path = root.join(id);
        let lock = match lock_dir(&path) {
            Ok(l) => l,
            Err(_) if !path.exists() => bail!("container {id:?} does not exist"),
            Err(e) => return Err(e),
        };
        // A concurrent delete may have removed the directory while we waited for the lock.
        if !path.join(STATE_FILE).exists() {
            bail!("container {id:?} does not exist");
        }
        Ok(ContainerDir {
            path,
            id: id.to_string(),
            _lock: lock,
        })
    }

    /// Locks a container's directory whether or not it holds a state file yet (`delete
    /// --force`), waiting at most `wait` for a command that holds it.
    pub fn lock_within(root: &Path, id: &str, wait: std::time::Duration) -> Result<Locking> {
        validate_id(id)?;
        let path = root.join(id);
        let deadline = std::time::Instant::now() + wait;
        let dir = match File::open(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Locking::Gone),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        loop {
            match dir.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
            if std::time::Instant::now() >= deadline {
                return Ok(Locking::Busy);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The holder may have removed the directory before it let go.
        if !path.exists() {
            return Ok(Locking::Gone);
        }
        Ok(Locking::Locked(ContainerDir {
            path,
            id: id.to_string(),
            _lock: dir,
        }))
    }

    /// Writes `state.json` now (the record made before anything else of the container).
    pub fn write_record(&self, state: &ContainerState) -> Result<()> {
        let bytes = serde_json::to_vec(state)?;
        crate::runtime::fsutil::write_atomically(&self.path.join(STATE_FILE), &bytes)
    }

    pub fn load(&self) -> Result<ContainerState> {
        read_state(&self.path)
    }

    /// `state.json`'s new content, written but not yet in place ([`StagedFile::commit`]).
    pub fn stage(&self, state: &ContainerState) -> Result<StagedFile> {
        let bytes = serde_json::to_vec(state)?;
        StagedFile::write(&self.path.join(STATE_FILE), &bytes)
    }

    /// The descriptor holding the lock. A forked child shares the lock until it closes its copy.
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self._lock)
    }

    pub fn start_socket(&self) -> PathBuf {
        self.path.join(START_SOCKET)
    }

    /// Removes the directory and everything in it (the lock dies with the file handle).
    pub fn remove(self) -> Result<()> {
        std::fs::remove_dir_all(&self.path)
            .with_context(|| format!("cannot remove {}", self.path.display()))
    }
}

fn lock_dir(path: &Path) -> Result<File> {
    let dir = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    dir.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(dir)
}

pub fn read_state(dir: &Path) -> Result<ContainerState> {
    let file = dir.join(STATE_FILE);
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: corrupt state", file.display()))
}

/// Start time (clock ticks since boot) of a live process, or None if it is gone or a zombie.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = crate::runtime::procfs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); starttime is field 22.
    fields.nth(18)?.parse().ok()
}

/// The status of a container, derived from its live process.
pub fn derive_status(dir: &Path, state: &ContainerState) -> Status {
    if let Some(creator) = &state.creating {
        // Left so by a create that was killed: nothing of it is alive (its process died with
        // it), or soon will not be.
        return if creator.alive() {
            Status::Creating
        } else {
            Status::Stopped
        };
    }
    if state.pid <= 0 || process_start_time(state.pid) != Some(state.pid_start_time) {
        return Status::Stopped;
    }
    if state.cgroup.is_frozen() {
        return Status::Paused;
    }
    if dir.join(START_SOCKET).exists() {
        Status::Created
    } else {
        Status::Running
    }
}

/// The OCI state document (runtime-spec "State"), as `state` prints it and hooks receive it.
pub fn oci_state_json(state: &ContainerState, status: Status) -> serde_json::Value {
    let pid = if status == Status::Stopped {
        0
    } else {
        state.pid
    };
    serde_json::json!({
        "ociVersion": crate::runtime::spec::OCI_VERSION_MAX,
        "id": state.id,
        "pid": pid,
        "status": status.as_str(),
        "bundle": state.bundle,
        "rootfs": state.rootfs,
        "created": state.created,
        "owner": state.owner,
        "annotations": state.annotations,
    })
}

/// The ids of all containers under a root (directories holding a state file).
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("--root {}", root.display())),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-1.2_3+x", "0"] {
            validate_id(ok).unwrap();
        }
        for bad in ["", "a/b", "..", ".a", "-a", "a b", &"x".repeat(1025)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_start_time_is_read() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert_eq!(process_start_time(me), process_start_time(me));
    }
}
