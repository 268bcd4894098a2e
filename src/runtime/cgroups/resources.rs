//! Resource limits: writing OCI `linux.resources` into a container's cgroup, reading its
//! statistics, freezing it and counting its OOM kills.
//!
//! Each controller is looked up first among the v1 hierarchies and then among the controllers
//! enabled in the unified (cgroup2) directory, so one code path serves v1 hosts, hybrid hosts
//! (v1 controllers plus a cgroup2 mount that usually has none enabled) and v2-only hosts. The
//! per-version file formats live in `v1.rs` and `v2.rs`.
//!
//! Zero means "not set" for the numeric fields runc treats that way (memory limits, cpu shares,
//! quota, period, real-time values, block-I/O weight), both on create and on update, which is
//! what `docker update` relies on when it sends 0 for everything it does not change. The one
//! difference between the two: `pids.limit` 0 is "no limit" on create and "unchanged" on update.
//!
//! Where runc ignores a field the kernel cannot honour (kernel memory on new kernels, CFQ leaf
//! weights, v2 swappiness), berth ignores it too with a debug-log line; a controller that is
//! missing but asked for is an error naming the field.

use super::{ebpf, hierarchies, v1, v2, CgroupPaths, Hierarchy};
use crate::runtime::log;
use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory, LinuxNetwork,
    LinuxResources,
};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How the host mounts its cgroup hierarchies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Only v1 hierarchies.
    V1,
    /// v1 controllers plus a cgroup2 mount (normally /sys/fs/cgroup/unified).
    Hybrid,
    /// Only cgroup2: every controller in one tree.
    V2,
}

/// Writes `linux.resources` into a new container's cgroup directories.
///
/// Call it after `CgroupPaths::create` and before the container's process joins, so that the
/// process never runs unlimited. On a v2-only host it first enables the available controllers
/// in the `cgroup.subtree_control` of every ancestor, without which no limit can be written.
/// On v2 the device rules are validated here but enforced by the eBPF program (see
/// [`device_rules`]).
pub fn apply_resources(paths: &CgroupPaths, r: &LinuxResources) -> Result<()> {
    apply_resources_on(paths, &hierarchies()?, r)
}

/// [`apply_resources`] with the hierarchies the caller already read for
/// `CgroupPaths::create_on`: `create` reads /proc/self/mountinfo once.
pub fn apply_resources_on(
    paths: &CgroupPaths,
    mounted: &[Hierarchy],
    r: &LinuxResources,
) -> Result<()> {
    let mut dirs = ControllerDirs::from_hierarchies(paths, mounted)?;
    if dirs.layout == Layout::V2 {
        dirs.enable_v2_controllers()?;
    }
    dirs.set(r, Mode::Create)
}

/// Changes the limits of a live container (`berth update`): only the fields present are
/// written, and 0 leaves a numeric limit unchanged (also `pids.limit`, which on create means
/// "no limit").
pub fn update_resources(paths: &CgroupPaths, r: &LinuxResources) -> Result<()> {
    ControllerDirs::of(paths)?.set(r, Mode::Update)
}

/// The host's layout as seen from the container's directories.
pub fn layout(paths: &CgroupPaths) -> Result<Layout> {
    Ok(ControllerDirs::of(paths)?.layout)
}

/// Statistics in the shape runc's `events --stats` prints under `"data"`.
pub fn stats(paths: &CgroupPaths) -> Result<Value> {
    ControllerDirs::of(paths)?.stats()
}

/// Freezes every process of the container and waits until the kernel reports them frozen.
pub fn freeze(paths: &CgroupPaths) -> Result<()> {
    let dir = paths
        .freezer
        .as_ref()
        .context("cannot pause: the container has no freezer cgroup")?;
    if paths.freezer_is_v2 {
        v2::freeze(dir, true)
    } else {
        v1::freeze(dir)
    }
}

/// Thaws the container and waits until the kernel reports it thawed.
pub fn thaw(paths: &CgroupPaths) -> Result<()> {
    let dir = paths
        .freezer
        .as_ref()
        .context("cannot resume: the container has no freezer cgroup")?;
    if paths.freezer_is_v2 {
        v2::freeze(dir, false)
    } else {
        v1::thaw(dir)
    }
}

/// How many processes of the container the OOM killer has killed so far (0 without a memory
/// controller). Comparing two readings tells whether an OOM kill happened in between.
pub fn oom_kill_count(paths: &CgroupPaths) -> Result<u64> {
    let dirs = ControllerDirs::of(paths)?;
    let (dir, file) = match dirs.locate("memory") {
        ControllerDir::V1(d) => (d, "memory.oom_control"),
        ControllerDir::V2(d) => (d, "memory.events"),
        ControllerDir::Missing => return Ok(0),
    };
    let text = read_string(dir, file)?;
    Ok(flat_keyed(&text).get("oom_kill").copied().unwrap_or(0))
}

/// Whether a numeric field of zero means "leave as is" (update) or "the default" (create).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Create,
    Update,
}

/// The container's directory for each controller.
pub(super) struct ControllerDirs {
    pub layout: Layout,
    /// (controller, directory) for every v1 controller; "cpu" and "cpuacct" may share one.
    v1: Vec<(String, PathBuf)>,
    unified: Option<UnifiedDir>,
}

pub(super) struct UnifiedDir {
    pub dir: PathBuf,
    pub mount_point: PathBuf,
    /// Controllers usable in `dir` (its `cgroup.controllers`).
    pub controllers: Vec<String>,
}

pub(super) enum ControllerDir<'a> {
    V1(&'a Path),
    V2(&'a Path),
    Missing,
}

impl ControllerDirs {
    pub fn of(paths: &CgroupPaths) -> Result<ControllerDirs> {
        Self::from_hierarchies(paths, &hierarchies()?)
    }

    fn from_hierarchies(paths: &CgroupPaths, mounted: &[Hierarchy]) -> Result<ControllerDirs> {
        if paths.dirs.is_empty() {
            bail!("the container has no cgroup");
        }
        let mut v1 = Vec::new();
        let mut unified = None;
        for dir in &paths.dirs {
            // The deepest mount holding the directory is its hierarchy (/sys/fs/cgroup/unified
            // sits below a v2-only host's /sys/fs/cgroup).
            let hierarchy = mounted
                .iter()
                .filter(|h| dir.starts_with(&h.mount_point))
                .max_by_key(|h| h.mount_point.as_os_str().len())
                .with_context(|| {
                    format!(
                        "cgroup directory {} is on no mounted cgroup hierarchy",
                        dir.display()
                    )
                })?;
            if hierarchy.unified {
                unified = Some(UnifiedDir::new(dir.clone(), hierarchy.mount_point.clone()));
            } else {
                for c in &hierarchy.controllers {
                    v1.push((c.clone(), dir.clone()));
                }
            }
        }
        Ok(Self::new(v1, unified))
    }

    pub(super) fn new(v1: Vec<(String, PathBuf)>, unified: Option<UnifiedDir>) -> ControllerDirs {
        let v1_controllers = v1.iter().any(|(c, _)| !c.starts_with("name="));
        let layout = match (v1_controllers, unified.is_some()) {
            (true, true) => Layout::Hybrid,
            (true, false) => Layout::V1,
            (false, _) => Layout::V2,
        };
        ControllerDirs {
            layout,
            v1,
            unified,
        }
    }

    pub fn locate(&self, controller: &str) -> ControllerDir<'_> {
        if let Some((_, dir)) = self.v1.iter().find(|(c, _)| c == controller) {
            return ControllerDir::V1(dir);
        }
        match &self.unified {
            Some(u) if u.controllers.iter().any(|c| c == controller) => ControllerDir::V2(&u.dir),
            _ => ControllerDir::Missing,
        }
    }

    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_ref().map(|u| u.dir.as_path())
    }

    pub(super) fn enable_v2_controllers(&mut self) -> Result<()> {
        if let Some(u) = &mut self.unified {
            v2::enable_controllers(&u.mount_point, &u.dir)?;
            u.controllers = read_controllers(&u.dir);
        }
        Ok(())
    }

    pub(super) fn set(&self, r: &LinuxResources, mode: Mode) -> Result<()> {
        if let Some(m) = r.memory() {
            self.set_memory(m, mode)?;
        }
        if let Some(c) = r.cpu() {
            self.set_cpu(c)?;
            self.set_cpuset(c)?;
        }
        if let Some(p) = r.pids() {
            self.set_pids(p.limit(), mode)?;
        }
        if let Some(b) = r.block_io() {
            self.set_block_io(b)?;
        }
        if let Some(limits) = r.hugepage_limits() {
            self.set_hugepages(limits)?;
        }
        if let Some(n) = r.network() {
            self.set_network(n)?;
        }
        if let Some(rdma) = r.rdma() {
            self.set_rdma(rdma)?;
        }
        match (r.devices(), mode) {
            (Some(rules), _) => self.set_devices(rules)?,
            // A container always gets the device allow-list (deny all, then the default
            // devices), as with runc: without it CAP_MKNOD would open the host's disks.
            (None, Mode::Create) if self.has_device_control() => self.set_devices(&[])?,
            (None, _) => {}
        }
        // Last, so that a raw value overrides what the structured fields wrote, as in runc.
        if let Some(unified) = r.unified() {
            self.set_unified(unified)?;
        }
        Ok(())
    }

    fn set_memory(&self, m: &LinuxMemory, mode: Mode) -> Result<()> {
        validate_memory(m, mode)?;
        let requested = first_requested(&[
            ("limit", nonzero_i(m.limit()).is_some()),
            ("reservation", nonzero_i(m.reservation()).is_some()),
            ("swap", nonzero_i(m.swap()).is_some()),
            ("swappiness", m.swappiness().is_some()),
            ("disableOOMKiller", m.disable_oom_killer() == Some(true)),
        ]);
        match self.locate("memory") {
            ControllerDir::V1(dir) => v1::set_memory(dir, m, mode),
            ControllerDir::V2(dir) => v2::set_memory(dir, m, mode),
            ControllerDir::Missing => match requested {
                Some(field) => bail!("linux.resources.memory.{field}: {}", self.missing("memory")),
                None => Ok(()),
            },
        }
    }

    fn set_cpu(&self, c: &LinuxCpu) -> Result<()> {
        let requested = first_requested(&[
            ("shares", nonzero_u(c.shares()).is_some()),
            ("quota", nonzero_i(c.quota()).is_some()),
            ("period", nonzero_u(c.period()).is_some()),
            ("burst", c.burst().is_some_and(|b| b != 0)),
            ("realtimeRuntime", nonzero_i(c.realtime_runtime()).is_some()),
            ("realtimePeriod", nonzero_u(c.realtime_period()).is_some()),
            ("idle", c.idle().is_some_and(|i| i != 0)),
        ]);
        if let Some(q) = c.quota() {
            if q < -1 {
                bail!("linux.resources.cpu.quota: {q} is invalid (-1 means no limit)");
            }
        }
        match self.locate("cpu") {
            ControllerDir::V1(dir) => v1::set_cpu(dir, c),
            ControllerDir::V2(dir) => v2::set_cpu(dir, c),
            ControllerDir::Missing => match requested {
                Some(field) => bail!("linux.resources.cpu.{field}: {}", self.missing("cpu")),
                None => Ok(()),
            },
        }
    }

    fn set_cpuset(&self, c: &LinuxCpu) -> Result<()> {
        let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
        let mems = c.mems().as_deref().filter(|s| !s.is_empty());
        if cpus.is_none() && mems.is_none() {
            return Ok(());
        }
        let dir = match self.locate("cpuset") {
            ControllerDir::V1(dir) | ControllerDir::V2(dir) => dir,
            ControllerDir::Missing => {
                let field = if cpus.is_some() { "cpus" } else { "mems" };
                bail!("linux.resources.cpu.{field}: {}", self.missing("cpuset"))
            }
        };
        if let Some(cpus) = cpus {
            write_value(dir, "cpuset.cpus", cpus, "linux.resources.cpu.cpus")?;
        }
        if let Some(mems) = mems {
            write_value(dir, "cpuset.mems", mems, "linux.resources.cpu.mems")?;
        }
        Ok(())
    }

    fn set_pids(&self, limit: i64, mode: Mode) -> Result<()> {
        let value = match (limit, mode) {
            (0, Mode::Update) => return Ok(()),
            (l, _) if l <= 0 => "max".to_string(),
            (l, _) => l.to_string(),
        };
        match self.locate("pids") {
            ControllerDir::V1(dir) | ControllerDir::V2(dir) => {
                write_value(dir, "pids.max", &value, "linux.resources.pids.limit")
            }
            // No controller means no limit, which is what was asked for.
            ControllerDir::Missing if value == "max" => Ok(()),
            ControllerDir::Missing => {
                bail!("linux.resources.pids.limit: {}", self.missing("pids"))
            }
        }
    }

    fn set_block_io(&self, b: &LinuxBlockIo) -> Result<()> {
        let requested = first_requested(&[
            ("weight", b.weight().is_some_and(|w| w != 0)),
            ("weightDevice", non_empty(b.weight_device())),
            (
                "throttleReadBpsDevice",
                non_empty(b.throttle_read_bps_device()),
            ),
            (
                "throttleWriteBpsDevice",
                non_empty(b.throttle_write_bps_device()),
            ),
            (
                "throttleReadIOPSDevice",
                non_empty(b.throttle_read_iops_device()),
            ),
            (
                "throttleWriteIOPSDevice",
                non_empty(b.throttle_write_iops_device()),
            ),
        ]);
        match (self.locate("blkio"), self.locate("io")) {
            (ControllerDir::V1(dir), _) => v1::set_block_io(dir, b),
            (_, ControllerDir::V2(dir)) => v2::set_io(dir, b),
            _ => match requested {
                Some(field) => bail!(
                    "linux.resources.blockIO.{field}: {}",
                    self.missing(if self.layout == Layout::V2 {
                        "io"
                    } else {
                        "blkio"
                    })
                ),
                None => Ok(()),
            },
        }
    }

    fn set_hugepages(&self, limits: &[oci_spec::runtime::LinuxHugepageLimit]) -> Result<()> {
        if limits.is_empty() {
            return Ok(());
        }
        let sizes = hugepage_sizes();
        for (i, l) in limits.iter().enumerate() {
            if !sizes.iter().any(|s| s == l.page_size()) {
                bail!(
                    "linux.resources.hugepageLimits[{i}].pageSize: {:?} is not a huge page size of this host (it has {})",
                    l.page_size(),
                    if sizes.is_empty() { "none".to_string() } else { sizes.join(", ") }
                );
            }
            if l.limit() < -1 {
                bail!(
                    "linux.resources.hugepageLimits[{i}].limit: {} is invalid",
                    l.limit()
                );
            }
        }
        match self.locate("hugetlb") {
            ControllerDir::V1(dir) => v1::set_hugepages(dir, limits),
            ControllerDir::V2(dir) => v2::set_hugepages(dir, limits),
            ControllerDir::Missing => {
                bail!(
                    "linux.resources.hugepageLimits: {}",
                    self.missing("hugetlb")
                )
            }
        }
    }

    fn set_network(&self, n: &LinuxNetwork) -> Result<()> {
        let class_id = n.class_id().filter(|&c| c != 0);
        let priorities = n.priorities().as_deref().unwrap_or_default();
        if class_id.is_none() && priorities.is_empty() {
            return Ok(());
        }
        if self.layout == Layout::V2 {
            // cgroup2 has no net_cls/net_prio; runc ignores these fields there too.
            debug_ignored(
                "linux.resources.network",
                "cgroup v2 has no net_cls or net_prio controller",
            );
            return Ok(());
        }
        if let Some(id) = class_id {
            match self.locate("net_cls") {
                ControllerDir::V1(dir) => write_value(
                    dir,
                    "net_cls.classid",
                    &id.to_string(),
                    "linux.resources.network.classID",
                )?,
                _ => bail!(
                    "linux.resources.network.classID: {}",
                    self.missing("net_cls")
                ),
            }
        }
        if !priorities.is_empty() {
            let ControllerDir::V1(dir) = self.locate("net_prio") else {
                bail!(
                    "linux.resources.network.priorities: {}",
                    self.missing("net_prio")
                );
            };
            for (i, p) in priorities.iter().enumerate() {
                let field = format!("linux.resources.network.priorities[{i}]");
                if p.name().is_empty() || p.name().contains(char::is_whitespace) {
                    bail!("{field}.name: {:?} is not an interface name", p.name());
                }
                // The kernel takes one "interface priority" pair per write.
                let line = format!("{} {}", p.name(), p.priority());
                write_value(dir, "net_prio.ifpriomap", &line, &field)?;
            }
        }
        Ok(())
    }

    fn set_rdma(&self, rdma: &HashMap<String, oci_spec::runtime::LinuxRdma>) -> Result<()> {
        if rdma.is_empty() {
            return Ok(());
        }
        let dir = match self.locate("rdma") {
            ControllerDir::V1(d) | ControllerDir::V2(d) => d,
            ControllerDir::Missing => bail!("linux.resources.rdma: {}", self.missing("rdma")),
        };
        let mut devices: Vec<_> = rdma.iter().collect();
        devices.sort_by(|a, b| a.0.cmp(b.0));
        for (device, limits) in devices {
            let field = format!("linux.resources.rdma.{device}");
            if device.is_empty() || device.contains(char::is_whitespace) {
                bail!("{field}: {device:?} is not an RDMA device name");
            }
            let mut line = device.clone();
            if let Some(h) = limits.hca_handles() {
                line.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = limits.hca_objects() {
                line.push_str(&format!(" hca_object={o}"));
            }
            if line.len() > device.len() {
                write_value(dir, "rdma.max", &line, &field)?;
            }
        }
        Ok(())
    }

    /// Whether this host can restrict devices for the container: a v1 devices controller, or a
    /// real cgroup2 directory to attach the eBPF program to.
    fn has_device_control(&self) -> bool {
        match self.locate("devices") {
            ControllerDir::V1(_) => true,
            _ if self.layout == Layout::V2 => self.unified_dir().is_some_and(|d| {
                nix::sys::statfs::statfs(d)
                    .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            }),
            _ => false,
        }
    }

    fn set_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<()> {
        let rules = device_rules(rules)?;
        match self.locate("devices") {
            ControllerDir::V1(dir) => v1::set_devices(dir, &rules),
            // cgroup2 has no devices controller: an eBPF program attached to the directory
            // enforces the rules instead.
            _ if self.layout == Layout::V2 => match self.unified_dir() {
                Some(dir) => match ebpf::set_device_filter(dir, &rules) {
                    // A non-root user may not load eBPF programs (in a cgroup delegated to
                    // them, as under a user's systemd instance). As runc for rootless
                    // containers: go without the filter. The container, in a user namespace
                    // of that user, can create no device node and open only those the user
                    // can open anyway.
                    Err(e)
                        if !nix::unistd::geteuid().is_root() && super::is_permission_error(&e) =>
                    {
                        log::debug(&format!(
                            "linux.resources.devices: not enforced for a non-root user ({e:#})"
                        ));
                        Ok(())
                    }
                    r => r.context("linux.resources.devices"),
                },
                None => bail!("linux.resources.devices: the container has no cgroup2 directory"),
            },
            _ => bail!("linux.resources.devices: {}", self.missing("devices")),
        }
    }

    fn set_unified(&self, unified: &HashMap<String, String>) -> Result<()> {
        if unified.is_empty() {
            return Ok(());
        }
        let dir = match (self.layout, self.unified_dir()) {
            (Layout::V2, Some(dir)) => dir,
            _ => bail!(
                "linux.resources.unified: raw cgroup v2 settings need a cgroup v2 host; this one mounts {} cgroups",
                if self.layout == Layout::Hybrid { "hybrid (v1 controllers)" } else { "v1" }
            ),
        };
        v2::set_unified(dir, unified)
    }

    /// Why a controller cannot be used, for an error message.
    fn missing(&self, controller: &str) -> String {
        match self.layout {
            Layout::V2 => format!(
                "the {controller} controller is not enabled in this cgroup (cgroup.controllers lacks it)"
            ),
            _ => format!("the {controller} cgroup controller is not mounted on this host"),
        }
    }

    fn stats(&self) -> Result<Value> {
        let mut data = empty_stats();
        match self.layout {
            Layout::V2 => {
                if let Some(dir) = self.unified_dir() {
                    v2::stats(dir, &mut data)?;
                }
            }
            _ => v1::stats(self, &mut data)?,
        }
        Ok(data)
    }
}

impl UnifiedDir {
    pub(super) fn new(dir: PathBuf, mount_point: PathBuf) -> UnifiedDir {
        let controllers = read_controllers(&dir);
        UnifiedDir {
            dir,
            mount_point,
            controllers,
        }
    }
}

fn read_controllers(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn non_empty<T>(list: &Option<Vec<T>>) -> bool {
    list.as_ref().is_some_and(|l| !l.is_empty())
}

/// The name of the first field the spec actually asks for, if any.
fn first_requested<'a>(fields: &[(&'a str, bool)]) -> Option<&'a str> {
    fields.iter().find(|(_, set)| *set).map(|(name, _)| *name)
}

fn validate_memory(m: &LinuxMemory, mode: Mode) -> Result<()> {
    for (name, value) in [
        ("limit", m.limit()),
        ("reservation", m.reservation()),
        ("swap", m.swap()),
        ("kernel", m.kernel()),
        ("kernelTCP", m.kernel_tcp()),
    ] {
        if let Some(v) = value.filter(|&v| v < -1) {
            bail!("linux.resources.memory.{name}: {v} is invalid (-1 means no limit)");
        }
    }
    if let Some(s) = m.swappiness().filter(|&s| s > 100) {
        bail!("linux.resources.memory.swappiness: {s} is not within 0..=100");
    }
    let limit = nonzero_i(m.limit());
    if let Some(swap) = nonzero_i(m.swap()).filter(|&s| s > 0) {
        match limit {
            Some(l) if l > 0 && swap < l => bail!(
                "linux.resources.memory.swap: {swap} is below memory.limit {l} (swap is the memory+swap total)"
            ),
            Some(-1) => bail!(
                "linux.resources.memory.swap: a swap limit needs a memory limit, but memory.limit is -1 (unlimited)"
            ),
            None if mode == Mode::Create => {
                bail!("linux.resources.memory.swap: a swap limit needs memory.limit too")
            }
            _ => {}
        }
    }
    Ok(())
}

// ---- device rules ----

/// Which devices a rule is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// Every device, block and character: only valid as `a *:* rwm`.
    All,
    Char,
    Block,
}

/// The accesses a rule allows or denies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DeviceAccess {
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl DeviceAccess {
    pub const ALL: DeviceAccess = DeviceAccess {
        read: true,
        write: true,
        mknod: true,
    };
}

/// One validated device-cgroup rule. Rules apply in order on top of "deny everything"; for
/// a device, the last rule that matches decides. `None` major/minor mean "any".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: DeviceAccess,
}

impl DeviceRule {
    const fn char(major: u32, minor: Option<u32>) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind: DeviceKind::Char,
            major: Some(major),
            minor,
            access: DeviceAccess::ALL,
        }
    }

    /// The rule as a v1 `devices.allow`/`devices.deny` line ("c 1:3 rwm").
    pub fn v1_line(&self) -> String {
        let kind = match self.kind {
            DeviceKind::All => return "a *:* rwm".to_string(),
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        let number = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let mut access = String::new();
        for (on, c) in [
            (self.access.read, 'r'),
            (self.access.write, 'w'),
            (self.access.mknod, 'm'),
        ] {
            if on {
                access.push(c);
            }
        }
        format!(
            "{kind} {}:{} {access}",
            number(self.major),
            number(self.minor)
        )
    }
}

/// What runc allows after the spec's own rules, so that a container whose spec only says
/// "deny everything" (as `runc spec` writes) still has its standard /dev nodes: mknod of any
/// node (creating one grants no access to it), /dev/null, zero, full, random, urandom, tty,
/// the pseudo-terminals and /dev/ptmx.
pub const DEFAULT_DEVICE_RULES: [DeviceRule; 10] = [
    DeviceRule {
        allow: true,
        kind: DeviceKind::Char,
        major: None,
        minor: None,
        access: DeviceAccess {
            read: false,
            write: false,
            mknod: true,
        },
    },
    DeviceRule {
        allow: true,
        kind: DeviceKind::Block,
        major: None,
        minor: None,
        access: DeviceAccess {
            read: false,
            write: false,
            mknod: true,
        },
    },
    DeviceRule::char(1, Some(3)),
    DeviceRule::char(1, Some(5)),
    DeviceRule::char(1, Some(7)),
    DeviceRule::char(1, Some(8)),
    DeviceRule::char(1, Some(9)),
    DeviceRule::char(5, Some(0)),
    DeviceRule::char(136, None),
    DeviceRule::char(5, Some(2)),
];

/// The rules to enforce for `linux.resources.devices`: the spec's rules, validated, followed
/// by [`DEFAULT_DEVICE_RULES`]; everything else is denied. The v1 writer and the v2 eBPF
/// builder both take this list.
pub fn device_rules(spec_rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>> {
    let mut rules = Vec::with_capacity(spec_rules.len() + DEFAULT_DEVICE_RULES.len());
    for (i, r) in spec_rules.iter().enumerate() {
        rules.push(parse_device_rule(
            r,
            &format!("linux.resources.devices[{i}]"),
        )?);
    }
    rules.extend_from_slice(&DEFAULT_DEVICE_RULES);
    Ok(rules)
}

fn parse_device_rule(r: &LinuxDeviceCgroup, field: &str) -> Result<DeviceRule> {
    let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => DeviceKind::All,
        LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
        LinuxDeviceType::B => DeviceKind::Block,
        LinuxDeviceType::P => {
            bail!("{field}.type: \"p\" (FIFO) is not a device the devices cgroup controls")
        }
    };
    let number = |n: Option<i64>, name: &str| -> Result<Option<u32>> {
        match n {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| anyhow::anyhow!("{field}.{name}: {n} is not a device number")),
        }
    };
    let major = number(r.major(), "major")?;
    let minor = number(r.minor(), "minor")?;
    let access_text = r.access().as_deref().unwrap_or("");
    let access = if access_text.is_empty() {
        // As crun: an omitted access means all of it.
        DeviceAccess::ALL
    } else {
        let mut a = DeviceAccess::default();
        for c in access_text.chars() {
            match c {
                'r' => a.read = true,
                'w' => a.write = true,
                'm' => a.mknod = true,
                _ => bail!("{field}.access: {access_text:?} may only hold r, w and m"),
            }
        }
        a
    };
    if kind == DeviceKind::All
        && (major.is_some() || minor.is_some() || access != DeviceAccess::ALL)
    {
        // The kernel reads type "a" as "every device, every access" whatever follows it.
        bail!("{field}: a rule for all device types must be for all numbers and all access (\"a *:* rwm\"); give type \"c\" or \"b\" to narrow it");
    }
    Ok(DeviceRule {
        allow: r.allow(),
        kind,
        major,
        minor,
        access,
    })
}

// ---- conversions ----

/// cgroup v1 cpu.shares (2..=262144, default 1024) to v2 cpu.weight (1..=10000, default
/// 100), the linear mapping runc and crun use.
pub fn cpu_weight_from_shares(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// v1 blkio.weight (10..=1000) to v2 io.weight (1..=10000), as runc does.
pub fn io_weight_from_blkio(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + ((weight - 10) * 9999) / 990
}

/// The huge page sizes of this host in the spec's notation ("2MB", "1GB").
pub fn hugepage_sizes() -> Vec<String> {
    let mut sizes: Vec<(u64, String)> = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some((kb, hugepage_size_name(kb)))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, n)| n).collect()
}

pub(super) fn hugepage_size_name(kb: u64) -> String {
    if kb >= 1 << 20 && kb.is_multiple_of(1 << 20) {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb.is_multiple_of(1 << 10) {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// "major:minor" of a spec device entry.
pub(super) fn device_number(major: i64, minor: i64, field: &str) -> Result<String> {
    if major < 0 || minor < 0 || major > u32::MAX.into() || minor > u32::MAX.into() {
        bail!("{field}: {major}:{minor} is not a device number");
    }
    Ok(format!("{major}:{minor}"))
}

pub(super) fn nonzero_i(v: Option<i64>) -> Option<i64> {
    v.filter(|&v| v != 0)
}

pub(super) fn nonzero_u(v: Option<u64>) -> Option<u64> {
    v.filter(|&v| v != 0)
}

/// A field runc ignores on this host: say so in the debug log and go on.
pub(super) fn debug_ignored(field: &str, why: &str) {
    log::debug(&format!("{field}: ignored: {why}"));
}

// ---- files ----

#[cfg(test)]
thread_local! {
    /// Every write this thread made, for tests that check what went where and in which order.
    pub(super) static WRITES: std::cell::RefCell<Vec<(PathBuf, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// One write(2) of `value` into an existing cgroup file; the file is never created, so a
/// missing controller file is an error rather than a stray file.
/// Unit tests see every value written to a cgroup file.
pub(super) fn record_write(_path: &Path, _value: &str) {
    #[cfg(test)]
    WRITES.with(|w| {
        w.borrow_mut()
            .push((_path.to_path_buf(), _value.to_string()))
    });
}

pub(super) fn write_raw(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    let path = dir.join(file);
    record_write(&path, value);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)?;
    f.write_all(value.as_bytes())
}

/// Writes `value`; an error names the spec field, the value and the file.
pub(super) fn write_value(dir: &Path, file: &str, value: &str, field: &str) -> Result<()> {
    write_raw(dir, file, value).map_err(|e| write_error(e, dir, file, value, field))
}

pub(super) fn write_error(
    e: std::io::Error,
    dir: &Path,
    file: &str,
    value: &str,
    field: &str,
) -> anyhow::Error {
    let path = dir.join(file);
    if e.kind() == ErrorKind::NotFound {
        anyhow::anyhow!(
            "{field}: this kernel or cgroup does not support it ({} does not exist)",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!(
            "{field}: cannot write {value:?} to {}",
            path.display()
        ))
    }
}

/// Writes values the kernel checks against each other (cpu period, quota and burst). One that
/// fails with EINVAL is retried once after the others: which order keeps every intermediate
/// state valid depends on the old values.
pub(super) fn write_interdependent(dir: &Path, writes: &[(&str, String, &str)]) -> Result<()> {
    let mut retry = Vec::new();
    for (file, value, field) in writes {
        match write_raw(dir, file, value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && writes.len() > 1 => {
                retry.push((file, value, field))
            }
            Err(e) => return Err(write_error(e, dir, file, value, field)),
        }
    }
    for (file, value, field) in retry {
        write_value(dir, file, value, field)?;
    }
    Ok(())
}

pub(super) fn read_string(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// The file's text, or `None` when the kernel does not provide it.
pub(super) fn read_optional(dir: &Path, file: &str) -> Result<Option<String>> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A single-number file ("max" reads as u64::MAX); 0 when the file does not exist.
pub(super) fn read_number(dir: &Path, file: &str) -> Result<u64> {
    let Some(text) = read_optional(dir, file)? else {
        return Ok(0);
    };
    parse_number(text.trim())
        .with_context(|| format!("{}: {:?} is not a number", dir.join(file).display(), text))
}

pub(super) fn parse_number(s: &str) -> Option<u64> {
    if s == "max" {
        return Some(u64::MAX);
    }
    // v1 prints -1 for "no limit" in a few files (cpu.cfs_quota_us).
    s.parse::<u64>()
        .ok()
        .or_else(|| s.parse::<i64>().ok().map(|v| v as u64))
}

/// "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
pub(super) fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), parse_number(v.trim())?))
        })
        .collect()
}

/// "0-3,5" to [0, 1, 2, 3, 5].
pub(super) fn parse_cpu_list(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u16>().ok()),
        }
    }
    out
}

/// Waits until `done` holds, polling with a growing pause; false on timeout.
pub(super) fn wait_until(
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(100);
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

pub(super) const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

// ---- statistics ----

/// Sets `key` unless `value` is 0: Go's `omitempty`, which shapes runc's output.
pub(super) fn put_nonzero(obj: &mut Map<String, Value>, key: &str, value: u64) {
    if value != 0 {
        obj.insert(key.to_string(), json!(value));
    }
}

/// runc's MemoryEntry: limit and failcnt always, usage and max when not 0.
pub(super) fn memory_entry(limit: u64, usage: u64, max: u64, failcnt: u64) -> Value {
    let mut e = Map::new();
    e.insert("limit".into(), json!(limit));
    put_nonzero(&mut e, "usage", usage);
    put_nonzero(&mut e, "max", max);
    e.insert("failcnt".into(), json!(failcnt));
    Value::Object(e)
}

pub(super) fn hugetlb_entry(usage: u64, max: u64, failcnt: u64) -> Value {
    let mut e = Map::new();
    put_nonzero(&mut e, "usage", usage);
    put_nonzero(&mut e, "max", max);
    e.insert("failcnt".into(), json!(failcnt));
    Value::Object(e)
}

pub(super) fn blkio_entry(major: u64, minor: u64, op: &str, value: u64) -> Value {
    let mut e = Map::new();
    put_nonzero(&mut e, "major", major);
    put_nonzero(&mut e, "minor", minor);
    if !op.is_empty() {
        e.insert("op".into(), json!(op));
    }
    put_nonzero(&mut e, "value", value);
    Value::Object(e)
}

pub(super) fn empty_stats() -> Value {
    let zero_entry = memory_entry(0, 0, 0, 0);
    json!({
        "cpu": { "usage": { "kernel": 0, "user": 0 }, "throttling": {} },
        "cpuset": {
            "cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0, "memory_migrate": 0,
            "memory_spread_page": 0, "memory_spread_slab": 0, "memory_pressure": 0,
            "sched_load_balance": 0, "sched_relax_domain_level": 0
        },
        "memory": {
            "usage": zero_entry.clone(), "swap": zero_entry.clone(),
            "kernel": zero_entry.clone(), "kernelTCP": zero_entry
        },
        "pids": {},
        "blkio": {},
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": null
    })
}

/// Helpers shared by the tests of resources.rs, v1.rs and v2.rs.
#[cfg(test)]
pub(super) mod test_support {
    use anyhow::Result;
    use oci_spec::runtime::LinuxResources;
    use serde_json::Value;

    pub fn resources(json: Value) -> LinuxResources {
        serde_json::from_value(json).expect("test JSON is a valid LinuxResources")
    }

    pub fn error_of(result: Result<()>) -> String {
        format!("{:#}", result.expect_err("expected an error"))
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{error_of, resources};
    use super::*;

    // ---- pure functions ----

    #[test]
    fn converts_shares_to_weight_like_runc() {
        assert_eq!(cpu_weight_from_shares(2), 1);
        assert_eq!(cpu_weight_from_shares(1024), 39);
        assert_eq!(cpu_weight_from_shares(262_144), 10_000);
        // Out of range values are clamped rather than wrapped.
        assert_eq!(cpu_weight_from_shares(1), 1);
        assert_eq!(cpu_weight_from_shares(1 << 30), 10_000);
    }

    #[test]
    fn converts_blkio_weight_to_io_weight_like_runc() {
        assert_eq!(io_weight_from_blkio(10), 1);
        assert_eq!(io_weight_from_blkio(500), 4950);
        assert_eq!(io_weight_from_blkio(1000), 10_000);
        assert_eq!(io_weight_from_blkio(1), 1);
    }

    #[test]
    fn converts_swap_to_v2_swap_max() {
        let f = v2::swap_max;
        assert_eq!(f(Some(100), Some(300)).unwrap().as_deref(), Some("200"));
        assert_eq!(f(Some(100), Some(100)).unwrap().as_deref(), Some("0"));
        assert_eq!(f(Some(100), Some(-1)).unwrap().as_deref(), Some("max"));
        assert_eq!(f(Some(-1), None).unwrap().as_deref(), Some("max"));
        assert_eq!(f(Some(100), None).unwrap(), None);
        assert_eq!(f(None, None).unwrap(), None);
        assert!(f(None, Some(300)).is_err());
        assert!(f(Some(-1), Some(300)).is_err());
        assert!(f(Some(300), Some(100)).is_err());
    }

    #[test]
    fn names_hugepage_sizes_like_the_spec() {
        assert_eq!(hugepage_size_name(2048), "2MB");
        assert_eq!(hugepage_size_name(1_048_576), "1GB");
        assert_eq!(hugepage_size_name(64), "64KB");
        assert_eq!(hugepage_size_name(32_768), "32MB");
    }

    #[test]
    fn parses_lists_and_keyed_files() {
        assert_eq!(parse_cpu_list("0-3,5\n"), vec![0, 1, 2, 3, 5]);
        assert_eq!(parse_cpu_list(""), Vec::<u16>::new());
        let k = flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
        assert_eq!(k["oom_kill"], 3);
        assert_eq!(parse_number("max"), Some(u64::MAX));
        assert_eq!(parse_number("-1"), Some(u64::MAX));
    }

    #[test]
    fn parses_v1_blkio_counters() {
        let text = "254:0 Read 4096\n254:0 Write 0\n254:0 Total 4096\nTotal 4096\n";
        assert_eq!(
            v1::parse_blkio_entries(text),
            [
                json!({"major": 254, "op": "Read", "value": 4096}),
                json!({"major": 254, "op": "Write"}),
                json!({"major": 254, "op": "Total", "value": 4096}),
            ]
        );
    }

    #[test]
    fn parses_device_rules() {
        let spec: Vec<LinuxDeviceCgroup> = serde_json::from_value(json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            {"allow": true, "type": "b", "major": 7, "access": "r"},
            {"allow": true, "type": "u", "major": 4, "minor": -1},
        ]))
        .unwrap();
        let rules = device_rules(&spec).unwrap();
        assert_eq!(rules.len(), 4 + DEFAULT_DEVICE_RULES.len());
        let lines: Vec<String> = rules.iter().map(DeviceRule::v1_line).collect();
        assert_eq!(
            lines[..4],
            ["a *:* rwm", "c 1:3 rw", "b 7:* r", "c 4:* rwm"]
        );
        assert!(!rules[0].allow && rules[1].allow);
        assert_eq!(rules[4].v1_line(), "c *:* m");
        assert_eq!(rules.last().unwrap().v1_line(), "c 5:2 rwm");
    }

    #[test]
    fn rejects_bad_device_rules() {
        let check = |rule: Value, needle: &str| {
            let spec: Vec<LinuxDeviceCgroup> = serde_json::from_value(json!([rule])).unwrap();
            let e = format!("{:#}", device_rules(&spec).unwrap_err());
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        };
        check(
            json!({"allow": true, "type": "c", "major": 1, "access": "rwx"}),
            "linux.resources.devices[0].access",
        );
        check(
            json!({"allow": true, "type": "p", "access": "r"}),
            "linux.resources.devices[0].type",
        );
        check(
            json!({"allow": true, "major": 1, "minor": 3, "access": "rwm"}),
            "linux.resources.devices[0]: a rule for all device types",
        );
        check(
            json!({"allow": false, "access": "r"}),
            "linux.resources.devices[0]: a rule for all device types",
        );
        check(
            json!({"allow": true, "type": "c", "major": -5, "access": "r"}),
            "linux.resources.devices[0].major",
        );
    }

    #[test]
    fn validates_memory_fields() {
        let check = |json: Value, mode: Mode, needle: &str| {
            let r = resources(json!({ "memory": json }));
            let e = error_of(validate_memory(r.memory().as_ref().unwrap(), mode));
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        };
        check(
            json!({"limit": 100, "swap": 50}),
            Mode::Create,
            "linux.resources.memory.swap",
        );
        check(
            json!({"swap": 50}),
            Mode::Create,
            "linux.resources.memory.swap",
        );
        check(
            json!({"limit": -2}),
            Mode::Create,
            "linux.resources.memory.limit",
        );
        check(
            json!({"swappiness": 101}),
            Mode::Create,
            "linux.resources.memory.swappiness",
        );
        // On update a swap change alone is the kernel's to judge against the current limit.
        let r = resources(json!({"memory": {"swap": 50}}));
        validate_memory(r.memory().as_ref().unwrap(), Mode::Update).unwrap();
    }

    #[test]
    fn finds_each_controllers_directory() {
        let mounted = super::super::parse_hierarchies(
            "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 25 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate",
        );
        let paths = CgroupPaths {
            dirs: vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/c"),
                PathBuf::from("/sys/fs/cgroup/memory/c"),
                PathBuf::from("/sys/fs/cgroup/systemd/c"),
                PathBuf::from("/sys/fs/cgroup/unified/c"),
            ],
            ..CgroupPaths::default()
        };
        let dirs = ControllerDirs::from_hierarchies(&paths, &mounted).unwrap();
        assert_eq!(dirs.layout, Layout::Hybrid);
        let v1 = |c| match dirs.locate(c) {
            ControllerDir::V1(d) => d.to_path_buf(),
            _ => panic!("{c} is not v1"),
        };
        assert_eq!(v1("cpuacct"), Path::new("/sys/fs/cgroup/cpu,cpuacct/c"));
        assert_eq!(v1("memory"), Path::new("/sys/fs/cgroup/memory/c"));
        assert!(matches!(dirs.locate("pids"), ControllerDir::Missing));
        assert_eq!(
            dirs.unified_dir(),
            Some(Path::new("/sys/fs/cgroup/unified/c"))
        );

        let v2_only = CgroupPaths {
            dirs: vec![PathBuf::from("/sys/fs/cgroup/berth/c")],
            ..CgroupPaths::default()
        };
        let v2_mount = [Hierarchy {
            mount_point: PathBuf::from("/sys/fs/cgroup"),
            mount_root: PathBuf::from("/"),
            controllers: Vec::new(),
            unified: true,
        }];
        let dirs = ControllerDirs::from_hierarchies(&v2_only, &v2_mount).unwrap();
        assert_eq!(dirs.layout, Layout::V2);
    }

    #[test]
    fn v1_and_hybrid_refuse_unified() {
        for (layout, v1_dirs) in [
            (
                Layout::V1,
                vec![("memory".to_string(), PathBuf::from("/nonexistent"))],
            ),
            (
                Layout::Hybrid,
                vec![("memory".to_string(), PathBuf::from("/nonexistent"))],
            ),
        ] {
            let unified = (layout == Layout::Hybrid)
                .then(|| UnifiedDir::new(PathBuf::from("/nonexistent/u"), PathBuf::from("/")));
            let dirs = ControllerDirs::new(v1_dirs, unified);
            assert_eq!(dirs.layout, layout);
            let e = error_of(dirs.set(
                &resources(json!({"unified": {"memory.high": "1"}})),
                Mode::Create,
            ));
            assert!(e.starts_with("linux.resources.unified: "), "{e}");
        }
    }
}
