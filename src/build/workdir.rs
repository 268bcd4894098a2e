//! A build's private working space: `<data-root>/build/work/<build id>/`, holding each step's
//! upper, work and rootfs directories, and an `owner.json` naming the build's process. The
//! build's RUN containers live under their own runtime root (`<state-root>/build`), with ids
//! that start with the build's id.
//!
//! A build killed at any instant (SIGKILL included) leaves at most: its work directory, its
//! containers' runtime records (and their processes and cgroups), and overlay mounts, which
//! live only in the build's private mount namespace ([`private_mounts`]) and die with it.
//! The next build sweeps whatever an owner no longer alive left ([`sweep`]).

use crate::runtime::container::{self as runtime, Globals};
use crate::runtime::state::ProcessId;
use anyhow::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The file naming the build that owns a work directory.
const OWNER_FILE: &str = "owner.json";

/// The files naming the build's worker processes (`worker-PID.json`).
const WORKER_PREFIX: &str = "worker-";

/// Where builds keep their things.
pub struct BuildRoots {
    /// The data root (its network store holds the leases of RUN steps on the default
    /// network).
    pub data_root: PathBuf,
    /// `<data-root>/build`: cache records and work directories.
    pub dir: PathBuf,
    /// The runtime root of RUN containers.
    pub state: PathBuf,
}

impl BuildRoots {
    pub fn new(data_root: &Path, state_root: &Path) -> BuildRoots {
        BuildRoots {
            data_root: data_root.to_path_buf(),
            dir: data_root.join("build"),
            state: state_root.join(crate::engine::record::BUILD_RUNTIME_ROOT),
        }
    }

    pub fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    pub fn runtime_globals(&self) -> Globals {
        Globals::at(self.state.clone())
    }
}

#[derive(Serialize, Deserialize)]
struct Owner {
    pid: i32,
    start_time: u64,
}

impl Owner {
    fn alive(&self) -> bool {
        ProcessId {
            pid: self.pid,
            start_time: self.start_time,
        }
        .alive()
    }
}

/// Whether a worker of the build in `dir` still lives.
fn workers_alive(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name().to_string_lossy().starts_with(WORKER_PREFIX)
            && fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Owner>(&b).ok())
                .is_some_and(|o| o.alive())
    })
}

/// One build's work directory; removed (with its containers) when dropped.
pub struct BuildWork {
    pub id: String,
    pub dir: PathBuf,
    pub data_root: PathBuf,
    globals: Globals,
}

impl BuildWork {
    /// Makes the work directory of a new build, its owner recorded before anything else
    /// exists in it.
    pub fn create(roots: &BuildRoots) -> Result<BuildWork> {
        let me = ProcessId::me()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let id = format!("b{:x}{:08x}", me.pid, nanos);
        let dir = roots.work_dir().join(&id);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let owner = Owner {
            pid: me.pid,
            start_time: me.start_time,
        };
        crate::runtime::fsutil::write_atomically(
            &dir.join(OWNER_FILE),
            &serde_json::to_vec(&owner)?,
        )?;
        fs::create_dir_all(&roots.state)
            .with_context(|| format!("cannot create {}", roots.state.display()))?;
        Ok(BuildWork {
            id,
            dir,
            data_root: roots.data_root.clone(),
            globals: roots.runtime_globals(),
        })
    }

    /// The runtime id of the container of step `n` of stage `stage` (stages may build at
    /// once, in worker processes).
    pub fn container_id(&self, stage: usize, n: usize) -> String {
        format!("{}-{stage}-{n}", self.id)
    }

    pub fn step_dir(&self, stage: usize, n: usize) -> PathBuf {
        self.dir.join(format!("step-{stage}-{n}"))
    }

    pub fn globals(&self) -> &Globals {
        &self.globals
    }

    /// Records this process as a worker of the build (a stage built beside others): the
    /// work directory is not swept while it lives, even after the builder died (the worker
    /// is then removing its container).
    pub fn note_worker(&self) -> Result<()> {
        let me = ProcessId::me()?;
        let owner = Owner {
            pid: me.pid,
            start_time: me.start_time,
        };
        crate::runtime::fsutil::write_atomically(
            &self.dir.join(format!("{WORKER_PREFIX}{}.json", me.pid)),
            &serde_json::to_vec(&owner)?,
        )
    }
}

impl Drop for BuildWork {
    fn drop(&mut self) {
        remove_work(&self.globals, &self.data_root, &self.id, &self.dir);
    }
}

/// Removes a build's containers (killing what still runs), their endpoints on the default
/// network (veth and lease), unmounts what is mounted below its work directory, and removes
/// the directory.
fn remove_work(g: &Globals, data_root: &Path, id: &str, dir: &Path) {
    let prefix = format!("{id}-");
    if let Ok(list) = runtime::list(g) {
        for (st, _) in list {
            if st.id.starts_with(&prefix) {
                let _ = runtime::delete(g, &st.id, true);
            }
        }
    }
    // Runtime records whose state was never written are not listed: remove them too.
    if let Ok(entries) = fs::read_dir(&g.root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) {
                let _ = runtime::delete(g, &name, true);
            }
        }
    }
    release_leases(data_root, &prefix);
    unmount_below(dir);
    if !mounted_below(dir) {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Detaches the build's containers (ids starting with `prefix`) from every network of the
/// data root: what a killed build's RUN steps held.
fn release_leases(data_root: &Path, prefix: &str) {
    use crate::network::store::Store;
    if !data_root.join("networks").is_dir() {
        return;
    }
    let Ok(store) = Store::open(data_root) else {
        return;
    };
    for net in store.list().unwrap_or_default() {
        for l in store.leases(&net.name).unwrap_or_default() {
            if l.container.starts_with(prefix) {
                let _ = crate::network::attach::detach(&store, &l);
            }
        }
    }
}

/// Mount points at or below `dir` in this mount namespace, deepest first.
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn mounted_below(dir: &Path) -> bool {
    !mounts_below(dir).is_empty()
}

fn unmount_below(dir: &Path) {
    for m in mounts_below(dir) {
        let _ = umount2(&m, MntFlags::MNT_DETACH);
    }
}

/// Removes what builds no longer running left: their containers, mounts and work
/// directories. A work directory without a readable owner is left alone while young (its
/// build may be writing the record).
pub fn sweep(roots: &BuildRoots) {
    let Ok(entries) = fs::read_dir(roots.work_dir()) else {
        return;
    };
    let g = roots.runtime_globals();
    for e in entries.flatten() {
        let dir = e.path();
        let owner: Option<Owner> = fs::read(dir.join(OWNER_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let alive = match owner {
            Some(o) => o.alive() || workers_alive(&dir),
            None => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() < 60),
        };
        if !alive {
            let id = e.file_name().to_string_lossy().into_owned();
            remove_work(&g, &roots.data_root, &id, &dir);
        }
    }
}

/// Puts this process in a mount namespace of its own, its mounts private: the overlays of the
/// build's steps are then seen by no one else and vanish with the process, however it ends.
pub fn private_mounts() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .context("cannot make a mount namespace for the build")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("cannot make the build's mounts private")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_removes_dead_builds_only() {
        let base = std::env::temp_dir().join(format!("berth-workdir-test-{}", std::process::id()));
        let roots = BuildRoots::new(&base.join("data"), &base.join("run"));
        let live = BuildWork::create(&roots).unwrap();
        fs::write(live.step_dir(0, 1).with_extension("marker"), b"x").unwrap();
        let dead = roots.work_dir().join("bdead");
        fs::create_dir_all(dead.join("step-1/upper")).unwrap();
        let owner = Owner {
            pid: i32::MAX - 1,
            start_time: 1,
        };
        fs::write(dead.join(OWNER_FILE), serde_json::to_vec(&owner).unwrap()).unwrap();
        sweep(&roots);
        assert!(!dead.exists(), "a dead build's work directory was kept");
        assert!(
            live.dir.exists(),
            "a live build's work directory was removed"
        );
        let dir = live.dir.clone();
        drop(live);
        assert!(!dir.exists(), "a finished build's work directory was kept");
        let _ = fs::remove_dir_all(&base);
    }
}
