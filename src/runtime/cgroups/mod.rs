//! Control groups: where a container's processes are accounted and limited.
//!
//! The host layout (v1, v2 unified, or hybrid: v1 controllers plus a cgroup2 mount) is found
//! from /proc/self/cgroup at the usual places, or else in /proc/self/mountinfo. A container
//! gets one directory per hierarchy; berth records the directories it made so that `delete`
//! removes exactly those, also after a crash.
//! Limits (`linux.resources`) are written by [`resources`] through the v1 and v2 back ends.

mod ebpf;
pub mod resources;
pub mod systemd;
mod v1;
mod v2;

pub use resources::{
    apply_resources, apply_resources_on, device_rules, freeze, layout, oom_kill_count, stats, thaw,
    update_resources, DeviceRule, Layout,
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub mount_point: PathBuf,
    /// The cgroup path (within the hierarchy) at the mount's root, "/" on the host.
    pub mount_root: PathBuf,
    /// v1 controllers of this hierarchy ("cpu", "memory", "name=systemd"); empty for cgroup2.
    pub controllers: Vec<String>,
    pub unified: bool,
}

/// Every cgroup hierarchy mounted on this host.
///
/// Found where systemd and every distribution mount them, /sys/fs/cgroup/<controllers>, when
/// the hierarchies this process is in are all there and show its own cgroup: reading
/// /proc/self/mountinfo instead costs about 2 ms per create on a host with a thousand mounts
/// (a Kubernetes node), measured, and /proc/self/cgroup is a few lines. Anything else (a
/// hierarchy elsewhere or not mounted, one mounted at a sub-cgroup as in a container without
/// its own cgroup namespace) is read from mountinfo.
pub fn hierarchies() -> Result<Vec<Hierarchy>> {
    if let Some(found) = conventional_hierarchies(Path::new(CGROUP_ROOT)) {
        return Ok(found);
    }
    let mountinfo = crate::runtime::procfs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    Ok(parse_hierarchies(&mountinfo))
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The hierarchies of /proc/self/cgroup at their usual places under `root`, if each is a
/// cgroup file system there in which this process's own cgroup is found.
fn conventional_hierarchies(root: &Path) -> Option<Vec<Hierarchy>> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, TMPFS_MAGIC};
    let own = crate::runtime::procfs::read_to_string("/proc/self/cgroup").ok()?;
    let root_type = statfs(root).ok()?.filesystem_type();
    let mut found = Vec::new();
    // Last line first: that is cgroup2's, the one most often not at its usual place (hidden,
    // as crun needs it on a hybrid host), and a miss is then found before the other checks.
    for (controllers, path) in own_cgroups(&own).rev() {
        let unified = controllers.is_empty();
        let mount_point = match (unified, root_type) {
            (true, t) if t == CGROUP2_SUPER_MAGIC => root.to_path_buf(),
            (true, t) if t == TMPFS_MAGIC => root.join("unified"),
            (false, t) if t == TMPFS_MAGIC => {
                root.join(controllers.strip_prefix("name=").unwrap_or(controllers))
            }
            _ => return None,
        };
        let want = if unified {
            CGROUP2_SUPER_MAGIC
        } else {
            CGROUP_SUPER_MAGIC
        };
        if statfs(&mount_point).ok()?.filesystem_type() != want
            || !mount_point
                .join(path.trim_start_matches('/'))
                .join("cgroup.procs")
                .exists()
        {
            return None;
        }
        found.push(Hierarchy {
            mount_point,
            mount_root: PathBuf::from("/"),
            controllers: if unified {
                Vec::new()
            } else {
                controllers.split(',').map(str::to_string).collect()
            },
            unified,
        });
    }
    (!found.is_empty()).then_some(found)
}

/// The lines of /proc/self/cgroup, `ID:CONTROLLERS:PATH`, as (controllers, path); cgroup2's
/// line has no controllers.
fn own_cgroups(text: &str) -> impl DoubleEndedIterator<Item = (&str, &str)> {
    text.lines().filter_map(|l| {
        let mut f = l.splitn(3, ':');
        f.next()?;
        Some((f.next()?, f.next()?))
    })
}

fn parse_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut found: Vec<Hierarchy> = Vec::new();
    for line in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional...] - fstype source super-options
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let (fstype, super_opts) = (r[0], r[2]);
        let unified = match fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if unified {
            Vec::new()
        } else {
            super_opts
                .split(',')
                .filter(|o| {
                    !matches!(*o, "rw" | "ro") && (!o.contains('=') || o.starts_with("name="))
                })
                .filter(|o| {
                    !matches!(
                        *o,
                        "noprefix" | "clone_children" | "xattr" | "cpuset_v2_mode"
                    )
                })
                .map(str::to_string)
                .collect()
        };
        let h = Hierarchy {
            mount_point: PathBuf::from(unescape(l[4])),
            mount_root: PathBuf::from(unescape(l[3])),
            controllers,
            unified,
        };
        // The same hierarchy can be mounted twice (e.g. inside a container): keep the first.
        if !found
            .iter()
            .any(|f| f.controllers == h.controllers && f.unified == h.unified)
        {
            found.push(h);
        }
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// berth's parent cgroup in each hierarchy, made by the first container placed under it and
/// then kept, as Docker keeps `docker/` and systemd its slices: removing it with the last
/// container cost every start a second mkdir and every delete a second rmdir per hierarchy,
/// and raced with containers being created under it. In the cpuset hierarchy it has
/// `cgroup.clone_children` set, so that a new container's cpuset starts with its cpus and mems.
pub const BERTH_PARENT: &str = "berth";

/// Turns `linux.cgroupsPath` into a cgroup path relative to each hierarchy's root.
/// Absolute paths are taken as they are; relative ones (and none) land under `berth/`.
/// With `--systemd-cgroup`, the path is `slice:prefix:name` and this is where systemd puts
/// that scope (`a-b.slice` → `a.slice/a-b.slice`, then `prefix-name.scope`): see [`systemd`].
pub fn container_cgroup_path(
    cgroups_path: Option<&Path>,
    id: &str,
    systemd: bool,
) -> Result<PathBuf> {
    if systemd {
        // Below the cgroup of the systemd instance that makes the scope: a user's own
        // instance for a non-root user.
        let unit = systemd_unit(cgroups_path, id)?;
        return Ok(systemd::manager_cgroup()?.join(unit.cgroup_path()));
    }
    let Some(p) = cgroups_path else {
        return Ok(PathBuf::from(BERTH_PARENT).join(id));
    };
    let s = p.to_str().context("linux.cgroupsPath: not valid UTF-8")?;
    let rel = Path::new(s.trim_start_matches('/'));
    if rel
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        bail!("linux.cgroupsPath: {s:?} must not contain '..' or '.'");
    }
    if s.starts_with('/') {
        Ok(rel.to_path_buf())
    } else {
        Ok(PathBuf::from(BERTH_PARENT).join(rel))
    }
}

/// The layout of the hierarchies `all`.
pub fn layout_of(all: &[Hierarchy]) -> Layout {
    match (
        all.iter().any(|h| h.unified),
        all.iter().any(|h| !h.unified),
    ) {
        (true, false) => Layout::V2,
        (true, true) => Layout::Hybrid,
        _ => Layout::V1,
    }
}

/// The scope unit `linux.cgroupsPath` names under `--systemd-cgroup`.
pub fn systemd_unit(cgroups_path: Option<&Path>, id: &str) -> Result<systemd::Unit> {
    let s = cgroups_path
        .map(|p| p.to_str().context("linux.cgroupsPath: not valid UTF-8"))
        .transpose()?;
    systemd::Unit::from_cgroups_path(s, id)
}

/// The directories of one container's cgroup, as kept in its state.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct CgroupPaths {
    /// The container's directory in each hierarchy.
    pub dirs: Vec<PathBuf>,
    /// For each of `dirs`, the name the hierarchy has under /sys/fs/cgroup ("cpu", "unified";
    /// empty on a v2-only host where the hierarchy is /sys/fs/cgroup itself).
    pub names: Vec<String>,
    /// Directories berth created, deepest last; removed in reverse on delete. berth's own
    /// parent (`berth/`) is never among them: see [`BERTH_PARENT`].
    pub created: Vec<PathBuf>,
    /// The v1 freezer directory, or the cgroup2 directory on a v2-only host.
    pub freezer: Option<PathBuf>,
    pub freezer_is_v2: bool,
    /// The index in `dirs` of the cgroup2 directory (v2-only and hybrid hosts).
    #[serde(default)]
    pub unified: Option<usize>,
    /// With `--systemd-cgroup`, the scope unit systemd keeps the cgroup as (named in the
    /// record before it is started, so that a `delete --force` after a crash stops it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_scope: Option<String>,
}

impl CgroupPaths {
    /// Creates the container's cgroup in every hierarchy (not yet joined).
    pub fn create(rel: &Path) -> Result<CgroupPaths> {
        Self::create_on(rel, &hierarchies()?)
    }

    /// [`CgroupPaths::create`] on hierarchies the caller has already read.
    pub fn create_on(rel: &Path, all: &[Hierarchy]) -> Result<CgroupPaths> {
        let mut paths = Self::plan(rel, all)?;
        if let Err(e) = paths.make(all, |_| true) {
            paths.remove_created();
            return Err(e);
        }
        Ok(paths)
    }

    /// The most processes any of the container's directories that exist already holds (before
    /// it is made: a cgroup someone else is using).
    pub fn processes_in_existing(&self) -> usize {
        self.dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|procs| procs.lines().filter(|l| !l.trim().is_empty()).count())
            .max()
            .unwrap_or(0)
    }

    /// Where the container's cgroup is in each of `all` (in that order); nothing is made yet
    /// ([`CgroupPaths::make`]).
    pub fn plan(rel: &Path, all: &[Hierarchy]) -> Result<CgroupPaths> {
        if all.is_empty() {
            bail!("no cgroup hierarchy is mounted");
        }
        let mut paths = CgroupPaths::default();
        let v1_present = all.iter().any(|h| !h.unified);
        for h in all {
            let dir = h.mount_point.join(rel_from_mount_root(h, rel));
            if h.controllers.iter().any(|c| c == "freezer") || (h.unified && !v1_present) {
                paths.freezer = Some(dir.clone());
                paths.freezer_is_v2 = h.unified;
            }
            if h.unified {
                paths.unified = Some(paths.dirs.len());
            }
            paths.dirs.push(dir);
            let v2_only = h.unified && !v1_present;
            let name = h
                .mount_point
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            paths.names.push(if v2_only {
                String::new()
            } else {
                name.to_string()
            });
        }
        Ok(paths)
    }

    /// Makes the planned directory, and any missing parent, in the hierarchies of `all` that
    /// `which` picks; what it made is added to `created` (also when it fails part-way, so
    /// that [`CgroupPaths::remove_created`] undoes it).
    pub fn make(&mut self, all: &[Hierarchy], which: impl Fn(&Hierarchy) -> bool) -> Result<()> {
        for (h, dir) in all.iter().zip(&self.dirs) {
            if !which(h) {
                continue;
            }
            let base = dir.strip_prefix(&h.mount_point).unwrap_or(dir);
            make_dirs(
                &h.mount_point,
                base,
                h.controllers.iter().any(|c| c == "cpuset"),
                &mut self.created,
            )?;
        }
        Ok(())
    }

    /// The directories [`CgroupPaths::make`] would create in `all` now (missing parents first,
    /// berth's kept parent left out): what the container's record lists before any is made,
    /// so that a `delete --force` after a crash removes them.
    pub fn to_be_made(&self, all: &[Hierarchy]) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for (h, dir) in all.iter().zip(&self.dirs) {
            let start = out.len();
            let kept = h.mount_point.join(BERTH_PARENT);
            let mut d = dir.as_path();
            // Up to berth's kept parent, which is never listed (nor looked at: one stat per
            // hierarchy for the usual `berth/<id>`).
            while d.starts_with(&h.mount_point) && d != h.mount_point && d != kept && !d.exists() {
                out.insert(start, d.to_path_buf());
                let Some(parent) = d.parent() else { break };
                d = parent;
            }
        }
        out
    }

    /// Moves a process into the container's cgroup in every hierarchy.
    pub fn join(&self, pid: i32) -> Result<()> {
        self.dirs.iter().try_for_each(|dir| add_process(dir, pid))
    }

    /// Adds `pid` to the container's cgroup2 directory only.
    pub fn join_v2(&self, pid: i32) -> Result<()> {
        self.v2_dir().map_or(Ok(()), |dir| add_process(dir, pid))
    }

    /// The container's cgroup2 directory, on a v2-only or hybrid host.
    pub fn v2_dir(&self) -> Option<&Path> {
        (0..self.dirs.len())
            .find(|i| self.is_v2(*i))
            .map(|i| self.dirs[i].as_path())
    }

    fn is_v2(&self, index: usize) -> bool {
        // State written before `unified` existed: the hierarchy's name tells.
        Some(index) == self.unified
            || self
                .names
                .get(index)
                .is_some_and(|n| n.is_empty() || n == "unified")
    }

    /// The calling process, which must be single-threaded, joins the container's cgroup in
    /// every v1 hierarchy by writing 0 to `tasks`. The kernel then moves just the calling
    /// thread and skips the global threadgroup lock: taking it for writing waits for an RCU
    /// grace period, which makes each `cgroup.procs` write from outside take milliseconds
    /// (the largest single cost of a container start on a v1 host).
    pub fn join_self_v1(&self) -> Result<()> {
        for (i, dir) in self.dirs.iter().enumerate() {
            if self.is_v2(i) {
                continue;
            }
            let tasks = dir.join("tasks");
            std::fs::write(&tasks, "0")
                .with_context(|| format!("cannot join {}", tasks.display()))?;
        }
        Ok(())
    }

    /// The pids in the container's cgroup (taken from the freezer or first hierarchy).
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = self
            .freezer
            .as_ref()
            .or(self.dirs.first())
            .context("container has no cgroup")?;
        let procs = dir.join("cgroup.procs");
        let text = match std::fs::read_to_string(&procs) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", procs.display())),
        };
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    pub fn is_frozen(&self) -> bool {
        let Some(dir) = &self.freezer else {
            return false;
        };
        if self.freezer_is_v2 {
            std::fs::read_to_string(dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        } else {
            std::fs::read_to_string(dir.join("freezer.state")).is_ok_and(|s| s.trim() != "THAWED")
        }
    }

    /// Kills every process in the container's cgroups, in every hierarchy and in any cgroup
    /// the container made below them, thawing a frozen one (a frozen process cannot die).
    /// For a container caught part-way through its creation, which may be in some
    /// hierarchies only. Only in the directories berth made: one it did not (a
    /// `cgroupsPath` naming an existing cgroup) may hold others' processes.
    pub fn kill_everything(&self) {
        for (i, dir) in self.dirs.iter().enumerate() {
            if self.created.contains(dir) {
                kill_tree(dir, self.is_v2(i));
            }
        }
    }

    /// Kills whatever is left in the container's cgroups, waits for it to be gone and removes
    /// every directory berth created, with any the container made below them. The usual case
    /// (the cgroups are empty or hold the container's last dying processes) costs a read and
    /// one rmdir per directory; only a directory that stays busy is searched in every
    /// hierarchy and below.
    pub fn destroy(&self) -> Vec<anyhow::Error> {
        if let Ok(pids) = self.pids() {
            for p in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let deadline = std::time::Instant::now() + DESTROY_WAIT;
        let mut errors = Vec::new();
        for dir in self.created.iter().rev() {
            let own = self.dirs.iter().position(|d| d == dir);
            loop {
                let e = match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e) => e,
                };
                let busy = matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY));
                match own {
                    // Processes still in it, dying or not yet signalled (a process that was
                    // joining when the others were killed), or cgroups the container made.
                    // A frozen process does not die until thawed: thaw the freezer too.
                    Some(i) if busy && std::time::Instant::now() < deadline => {
                        kill_tree(dir, self.is_v2(i));
                        if let Some(freezer) = &self.freezer {
                            thaw_dir(freezer);
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    // A parent berth made, still used by other containers.
                    None if busy => break,
                    _ => {
                        errors.push(anyhow::anyhow!(
                            "cannot remove cgroup {}: {e}",
                            dir.display()
                        ));
                        break;
                    }
                }
            }
        }
        if let Some(scope) = &self.systemd_scope {
            match systemd::stop_scope(scope) {
                Err(e) => errors.push(e),
                // systemd removes the scope's cgroup as the unit goes: gone when this returns.
                Ok(()) => {
                    for dir in &self.dirs {
                        while dir.exists() && std::time::Instant::now() < deadline {
                            std::thread::sleep(std::time::Duration::from_millis(2));
                        }
                        if dir.exists() {
                            errors.push(anyhow::anyhow!(
                                "systemd stopped {scope} but its cgroup {} is still there",
                                dir.display()
                            ));
                        }
                    }
                }
            }
        }
        errors
    }

    /// Removes the directories berth created, deepest first. A directory still holding
    /// processes (EBUSY) is retried briefly: exiting processes leave their cgroup a moment late.
    pub fn remove_created(&self) -> Vec<anyhow::Error> {
        let mut errors = Vec::new();
        for dir in self.created.iter().rev() {
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    // The container's own directory may hold a dying process a moment
                    // longer; a parent it made is busy because of other containers: no wait.
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY)
                            && tries < 200
                            && self.dirs.contains(dir) =>
                    {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    // A shared parent such as berth/ still used by another container.
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY)
                            || e.raw_os_error() == Some(libc::ENOTEMPTY) =>
                    {
                        if self.dirs.contains(dir) {
                            errors.push(anyhow::anyhow!(
                                "cannot remove cgroup {}: {e}",
                                dir.display()
                            ));
                        }
                        break;
                    }
                    Err(e) => {
                        errors.push(anyhow::anyhow!(
                            "cannot remove cgroup {}: {e}",
                            dir.display()
                        ));
                        break;
                    }
                }
            }
        }
        errors
    }
}

/// How long [`CgroupPaths::destroy`] waits for killed processes to leave a cgroup: they
/// leave it as they exit, which can take a while for one blocked in the kernel.
const DESTROY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// SIGKILLs every process in the cgroup `dir` and in the cgroups below it, thaws them, and
/// removes those below that are empty.
fn kill_tree(dir: &Path, v2: bool) {
    // cgroup2 kills the whole subtree in one write (Linux 5.14), also a process forking.
    if v2 {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    thaw_dir(dir);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let sub = e.path();
            kill_tree(&sub, v2);
            let _ = std::fs::remove_dir(&sub);
        }
    }
}

/// Thaws a cgroup if it has a freezer (v1 `freezer.state`, v2 `cgroup.freeze`): a frozen
/// process does not die of SIGKILL until then. Not waited for: the caller retries.
fn thaw_dir(dir: &Path) {
    for (file, value) in [("freezer.state", "THAWED"), ("cgroup.freeze", "0")] {
        let path = dir.join(file);
        if path.exists() {
            let _ = std::fs::write(&path, value);
        }
    }
}

/// Whether creating a cgroup failed for want of permission (no delegation to a non-root user,
/// or a read-only cgroupfs): then a rootless container without limits goes without one.
pub fn is_permission_error(e: &anyhow::Error) -> bool {
    has_io_error(e, |io| {
        matches!(
            io.raw_os_error(),
            Some(libc::EACCES | libc::EPERM | libc::EROFS)
        )
    })
}

/// Whether any cause in `e`'s chain is an I/O error for which `what` holds.
fn has_io_error(e: &anyhow::Error, what: impl Fn(&std::io::Error) -> bool) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(what)
}

fn add_process(dir: &Path, pid: i32) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string())
        .with_context(|| format!("cannot add pid {pid} to {}", procs.display()))
}

/// runc's `exec --cgroup`: the container's cgroups with existing sub-cgroups in their place.
/// An entry is `PATH` (every hierarchy) or `CONTROLLER[,CONTROLLER...]:PATH` (the v1
/// hierarchies holding one of those controllers); PATH is relative to the container's cgroup
/// and stays inside it.
pub fn sub_cgroups(paths: &CgroupPaths, entries: &[String]) -> Result<CgroupPaths> {
    let mut everywhere: Option<&str> = None;
    let mut by_controller: Vec<(Vec<&str>, &str, bool)> = Vec::new();
    for entry in entries {
        let (controllers, sub) = match entry.split_once(':') {
            Some((c, p)) => (Some(c), p),
            None => (None, entry.as_str()),
        };
        let plain = !sub.is_empty()
            && Path::new(sub)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            bail!("--cgroup {entry:?}: the path must be relative to the container's cgroup, without ..");
        }
        match controllers {
            None if everywhere.is_some() => {
                bail!("--cgroup {entry:?}: only one path may be given without controllers")
            }
            None => everywhere = Some(sub),
            Some(c) => by_controller.push((c.split(',').collect(), sub, false)),
        }
    }
    let mut out = paths.clone();
    for (i, dir) in out.dirs.iter_mut().enumerate() {
        let name = paths.names.get(i).map(String::as_str).unwrap_or_default();
        let mut sub = everywhere;
        if paths.unified != Some(i) {
            let held: Vec<&str> = name.split(',').collect();
            if let Some(hit) = by_controller
                .iter_mut()
                .find(|(c, _, _)| c.iter().any(|c| held.contains(c)))
            {
                hit.2 = true;
                sub = Some(hit.1);
            }
        }
        if let Some(sub) = sub {
            let target = dir.join(sub);
            if !target.is_dir() {
                bail!("--cgroup: {} does not exist", target.display());
            }
            *dir = target;
        }
    }
    if let Some((c, sub, _)) = by_controller.iter().find(|(_, _, used)| !used) {
        bail!(
            "--cgroup {}:{sub}: no cgroup v1 hierarchy of the container has these controllers",
            c.join(",")
        );
    }
    Ok(out)
}

/// For a container placed in no cgroup of its own: berth's own cgroup in each hierarchy (which
/// the container process inherits), named as in [`CgroupPaths::names`], for the `cgroup` mount.
/// runc binds the same in that case.
pub fn own_cgroup_binds() -> Result<Vec<(String, PathBuf)>> {
    let all = hierarchies()?;
    let v1_present = all.iter().any(|h| !h.unified);
    let own = crate::runtime::procfs::read_to_string("/proc/self/cgroup")
        .context("cannot read /proc/self/cgroup")?;
    let mut binds = Vec::new();
    for h in &all {
        let path = own_cgroups(&own).find_map(|(ctrls, path)| {
            let same = if h.unified {
                ctrls.is_empty()
            } else {
                let mut listed: Vec<&str> = ctrls.split(',').collect();
                let mut ours: Vec<&str> = h.controllers.iter().map(String::as_str).collect();
                listed.sort_unstable();
                ours.sort_unstable();
                listed == ours
            };
            same.then_some(path)
        });
        let Some(path) = path else { continue };
        let rel = rel_from_mount_root(h, Path::new(path.trim_start_matches('/')));
        let name = if h.unified && !v1_present {
            String::new()
        } else {
            h.mount_point
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string()
        };
        binds.push((name, h.mount_point.join(rel)));
    }
    Ok(binds)
}

fn rel_from_mount_root(h: &Hierarchy, rel: &Path) -> PathBuf {
    // A hierarchy mounted at a non-root cgroup (nested runtimes) already sits inside it.
    let root = h.mount_root.strip_prefix("/").unwrap_or(&h.mount_root);
    rel.strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| rel.to_path_buf())
}

/// mkdir -p that records what it made (but for berth's parent, which stays); in a v1 cpuset
/// hierarchy each new directory gets its parent's cpus and mems, without which no process may
/// join it.
fn make_dirs(
    mount_point: &Path,
    rel: &Path,
    cpuset: bool,
    created: &mut Vec<PathBuf>,
) -> Result<()> {
    // Usually every parent is there (berth/ is kept): then one mkdir does.
    let leaf = mount_point.join(rel);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {
            created.push(leaf.clone());
            if cpuset {
                fill_cpus_and_mems(mount_point, &leaf)?;
            }
            return Ok(());
        }
        // A parent is missing, or the cgroup exists (then its parents are checked as well).
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::AlreadyExists) => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create cgroup {}", leaf.display()))
        }
    }
    let kept = mount_point.join(BERTH_PARENT);
    // A shared parent can be removed by someone else between our mkdirs: start over when a
    // parent vanishes.
    let mut attempts = 0;
    'again: loop {
        let mut dir = mount_point.to_path_buf();
        for comp in rel.components() {
            dir.push(comp);
            let new = match std::fs::create_dir(&dir) {
                Ok(()) => true,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
                Err(e) if e.kind() == ErrorKind::NotFound && attempts < 10 => {
                    attempts += 1;
                    continue 'again;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create cgroup {}", dir.display()))
                }
            };
            if new && dir != kept {
                created.push(dir.clone());
            }
            if cpuset {
                match fill_cpus_and_mems(mount_point, &dir) {
                    Ok(()) => {}
                    // A parent went away under us: the same race as above.
                    Err(e)
                        if has_io_error(&e, |io| io.kind() == ErrorKind::NotFound)
                            && attempts < 10 =>
                    {
                        attempts += 1;
                        continue 'again;
                    }
                    Err(e) => return Err(e),
                }
                if new && dir == kept {
                    let flag = dir.join("cgroup.clone_children");
                    std::fs::write(&flag, "1")
                        .with_context(|| format!("cannot set {}", flag.display()))?;
                }
            }
        }
        return Ok(());
    }
}

fn fill_cpus_and_mems(mount_point: &Path, dir: &Path) -> Result<()> {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        fill_cpuset(mount_point, dir, f)?;
    }
    Ok(())
}

/// A v1 cpuset directory takes no process until its cpus and mems are set. A directory that
/// another container made a moment ago may not have them yet either: fill it, and any empty
/// ancestor, from the nearest ancestor that has them.
fn fill_cpuset(mount_point: &Path, dir: &Path, file: &str) -> Result<String> {
    let current = std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .trim()
        .to_string();
    if !current.is_empty() || dir == mount_point {
        return Ok(current);
    }
    let parent = dir.parent().context("cgroup directory without a parent")?;
    let value = fill_cpuset(mount_point, parent, file)?;
    std::fs::write(dir.join(file), &value)
        .with_context(|| format!("cannot set {}", dir.join(file).display()))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str =
        "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:5 - cgroup cgroup rw,cpu
31 25 0:27 / /sys/fs/cgroup/cpuset rw,relatime shared:6 - cgroup cgroup rw,cpuset,clone_children
32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
34 25 0:30 / /mnt/with\\040space rw - ext4 /dev/vda rw";

    /// Where the host has its hierarchies at the usual places (this one and the cgroup v2 VM
    /// do), the quick probe finds what mountinfo says.
    #[test]
    fn the_usual_places_agree_with_mountinfo() {
        let Some(mut quick) = conventional_hierarchies(Path::new(CGROUP_ROOT)) else {
            eprintln!("SKIPPED: the hierarchies are not all at their usual places here");
            return;
        };
        let mountinfo = crate::runtime::procfs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut full = parse_hierarchies(&mountinfo);
        let key = |h: &Hierarchy| h.mount_point.clone();
        quick.sort_by_key(key);
        full.sort_by_key(key);
        let show = |v: &[Hierarchy]| format!("{v:?}");
        assert_eq!(show(&quick), show(&full));
    }

    /// The record made before any cgroup lists what will be made: missing parents first,
    /// never berth's kept parent, nothing that exists already.
    #[test]
    fn to_be_made_lists_the_missing_directories() {
        let mount = std::env::temp_dir().join(format!("berth-to-be-made-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&mount);
        std::fs::create_dir_all(&mount).unwrap();
        let h = Hierarchy {
            mount_point: mount.clone(),
            mount_root: PathBuf::from("/"),
            controllers: vec!["cpu".into()],
            unified: false,
        };
        let plan = CgroupPaths::plan(Path::new("berth/a/b"), std::slice::from_ref(&h)).unwrap();
        let made = |p: &CgroupPaths| p.to_be_made(std::slice::from_ref(&h));
        assert_eq!(
            made(&plan),
            [mount.join("berth/a"), mount.join("berth/a/b")]
        );
        std::fs::create_dir_all(mount.join("berth/a")).unwrap();
        assert_eq!(made(&plan), [mount.join("berth/a/b")]);
        std::fs::create_dir_all(mount.join("berth/a/b")).unwrap();
        assert!(made(&plan).is_empty());
        std::fs::remove_dir_all(&mount).unwrap();
    }

    #[test]
    fn parses_hybrid_layout() {
        let h = parse_hierarchies(HYBRID);
        assert_eq!(h.len(), 4);
        assert_eq!(h[0].controllers, vec!["cpu"]);
        assert_eq!(h[1].controllers, vec!["cpuset"]);
        assert_eq!(h[2].controllers, vec!["name=systemd"]);
        assert!(h[3].unified && h[3].mount_point == Path::new("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn cgroup_paths() {
        assert_eq!(
            container_cgroup_path(None, "c1", false).unwrap(),
            Path::new("berth/c1")
        );
        assert_eq!(
            container_cgroup_path(Some(Path::new("/default/c1")), "c1", false).unwrap(),
            Path::new("default/c1")
        );
        assert_eq!(
            container_cgroup_path(Some(Path::new("a/b")), "c1", false).unwrap(),
            Path::new("berth/a/b")
        );
        assert!(container_cgroup_path(Some(Path::new("/a/../b")), "c1", false).is_err());
        assert_eq!(
            container_cgroup_path(
                Some(Path::new("machine-libpod.slice:libpod:abc")),
                "c1",
                true
            )
            .unwrap(),
            Path::new("machine.slice/machine-libpod.slice/libpod-abc.scope")
        );
    }
}
