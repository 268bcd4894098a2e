//! `linux.intelRdt`: cache allocation (L3 CAT), memory bandwidth allocation (MBA) and
//! monitoring through the kernel's resctrl filesystem.
//!
//! Where the host has no resctrl (a kernel without CONFIG_X86_CPU_RESCTRL, a CPU without RDT
//! or AMD QoS, or the filesystem not mounted), a config that asks for it is refused before
//! anything is made, naming what is missing: running the container without the limits would
//! be silent. Where it has, berth makes the container's group (`closID`, else the container
//! id) unless it exists, writes its schemata, and puts the container's processes in it from
//! outside, as it does with the cgroup: the init before it is started, each `exec`'d process
//! before it execs. A group berth made is removed on delete; a `closID` group that existed is
//! shared and left.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Linux, LinuxIntelRdt};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const RESCTRL: &str = "/sys/fs/resctrl";
/// What berth made, in the container's state directory (for `exec` and `delete`).
const FILE: &str = "intel-rdt.json";

/// The container's resctrl group, as made (or found) at create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdtGroup {
    /// The group's directory under /sys/fs/resctrl.
    pub dir: PathBuf,
    /// berth made it (and removes it on delete).
    pub made: bool,
    /// Its monitoring group (mon_groups/<id>), when `enableMonitoring` asked for one.
    pub mon_dir: Option<PathBuf>,
}

/// `linux.intelRdt`, checked in the parent.
#[derive(Debug, Clone, Default)]
pub struct RdtPlan {
    /// Where resctrl is mounted (/sys/fs/resctrl; elsewhere in tests).
    root: PathBuf,
    group: String,
    schemata: Vec<String>,
    monitoring: bool,
    container_id: String,
}

impl RdtPlan {
    pub fn new(linux: Option<&Linux>, container_id: &str) -> Result<Option<RdtPlan>> {
        let Some(rdt) = linux.and_then(|l| l.intel_rdt().as_ref()) else {
            return Ok(None);
        };
        if *rdt == LinuxIntelRdt::default() {
            return Ok(None);
        }
        host_has_resctrl()?;
        let group = match rdt.clos_id().as_deref() {
            Some(c) if !c.is_empty() => {
                if c.contains('/') || c == "." || c == ".." || c == "info" || c == "mon_groups" {
                    bail!("linux.intelRdt.closID: {c:?} is not a resctrl group name");
                }
                c.to_string()
            }
            _ => container_id.to_string(),
        };
        // The older fields first: `schemata`, written last, overrides what they say.
        let mut schemata: Vec<String> = Vec::new();
        schemata.extend(rdt.l3_cache_schema().iter().cloned());
        schemata.extend(rdt.mem_bw_schema().iter().cloned());
        schemata.extend(rdt.schemata().iter().flatten().cloned());
        #[allow(deprecated)]
        let monitoring = rdt.enable_monitoring().unwrap_or(false)
            || rdt.enable_cmt().unwrap_or(false)
            || rdt.enable_mbm().unwrap_or(false);
        Ok(Some(RdtPlan {
            root: PathBuf::from(RESCTRL),
            group,
            schemata,
            monitoring,
            container_id: container_id.to_string(),
        }))
    }

    /// Parent side, before the container's process runs: makes (or finds) the group, writes
    /// its schemata, and records it in the state directory.
    pub fn make(&self, state_dir: &Path) -> Result<RdtGroup> {
        let dir = self.root.join(&self.group);
        let made = match std::fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "linux.intelRdt: cannot make the resctrl group {}",
                        dir.display()
                    )
                })
            }
        };
        let mut group = RdtGroup {
            dir: dir.clone(),
            made,
            mon_dir: None,
        };
        // Recorded first: a failure below leaves what delete removes.
        save(&group, state_dir)?;
        for line in &self.schemata {
            std::fs::write(dir.join("schemata"), format!("{line}\n")).with_context(|| {
                format!("linux.intelRdt: the kernel refuses the schema {line:?} (see {RESCTRL}/info/last_cmd_status)")
            })?;
        }
        if self.monitoring {
            let mon = dir.join("mon_groups").join(&self.container_id);
            std::fs::create_dir(&mon).with_context(|| {
                format!("linux.intelRdt.enableMonitoring: cannot make {} (does the CPU support RDT monitoring?)", mon.display())
            })?;
            group.mon_dir = Some(mon);
            save(&group, state_dir)?;
        }
        Ok(group)
    }
}

impl RdtGroup {
    /// The container's group, if it has one (for `exec` and `delete`).
    pub fn load(state_dir: &Path) -> Result<Option<RdtGroup>> {
        match std::fs::read(state_dir.join(FILE)) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).context("corrupt intel-rdt.json in the state")?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("cannot read the container's intel-rdt.json"),
        }
    }

    /// Puts process `pid` in the group (and its monitoring group).
    pub fn add(&self, pid: i32) -> Result<()> {
        let dir = self.mon_dir.as_ref().unwrap_or(&self.dir);
        std::fs::write(dir.join("tasks"), pid.to_string()).with_context(|| {
            format!(
                "linux.intelRdt: cannot add process {pid} to {}",
                dir.display()
            )
        })
    }

    /// On delete: removes what berth made.
    pub fn remove(&self) -> Result<()> {
        if let Some(mon) = &self.mon_dir {
            remove_dir(mon)?;
        }
        if self.made {
            remove_dir(&self.dir)?;
        }
        Ok(())
    }
}

fn remove_dir(d: &Path) -> Result<()> {
    match std::fs::remove_dir(d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("cannot remove the resctrl group {}", d.display()))
        }
    }
}

fn save(g: &RdtGroup, state_dir: &Path) -> Result<()> {
    std::fs::write(state_dir.join(FILE), serde_json::to_vec(g)?)
        .context("cannot record the container's resctrl group")
}

/// Whether resctrl is mounted at /sys/fs/resctrl; if not, an error naming what is missing.
pub fn host_has_resctrl() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounted = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-");
        f.get(4) == Some(&RESCTRL) && sep.and_then(|i| f.get(i + 1)) == Some(&"resctrl")
    });
    if mounted {
        return Ok(());
    }
    let known = std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some("resctrl"));
    if !known {
        bail!("linux.intelRdt: this host's kernel has no resctrl filesystem (Intel RDT / AMD QoS: CONFIG_X86_CPU_RESCTRL, and a CPU with RDT); the limits cannot be applied");
    }
    bail!("linux.intelRdt: the resctrl filesystem is not mounted at {RESCTRL} (mount -t resctrl resctrl {RESCTRL}); the limits cannot be applied")
}

/// Whether this host can apply `linux.intelRdt` (for `features`: berth supports it, the host
/// may not).
pub fn available() -> bool {
    host_has_resctrl().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory standing in for resctrl: this checks berth's group logic (made or found,
    /// recorded, removed only if made), not the kernel's (no resctrl on the hosts we test on).
    fn plan(root: &Path, rdt: serde_json::Value) -> RdtPlan {
        let linux: Linux = serde_json::from_value(serde_json::json!({ "intelRdt": rdt })).unwrap();
        let rdt = linux.intel_rdt().as_ref().unwrap();
        let mut schemata = Vec::new();
        schemata.extend(rdt.l3_cache_schema().iter().cloned());
        schemata.extend(rdt.mem_bw_schema().iter().cloned());
        schemata.extend(rdt.schemata().iter().flatten().cloned());
        RdtPlan {
            root: root.to_path_buf(),
            group: rdt.clos_id().clone().unwrap_or_else(|| "ctr".into()),
            schemata,
            monitoring: rdt.enable_monitoring().unwrap_or(false),
            container_id: "ctr".into(),
        }
    }

    #[test]
    fn group_made_recorded_and_removed() {
        let tmp = std::env::temp_dir().join(format!("berth-rdt-test-{}", std::process::id()));
        let (root, state) = (tmp.join("resctrl"), tmp.join("state"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&state).unwrap();

        // An existing group, with monitoring: found, recorded; only the monitoring group goes.
        let p = plan(
            &root,
            serde_json::json!({"l3CacheSchema": "L3:0=f", "schemata": ["MB:0=50"], "enableMonitoring": true}),
        );
        assert_eq!(
            p.schemata,
            ["L3:0=f", "MB:0=50"],
            "schemata last: it overrides"
        );
        // A group that exists already (the kernel gives a group its mon_groups).
        let made = {
            std::fs::create_dir(root.join("ctr")).unwrap();
            std::fs::create_dir(root.join("ctr/mon_groups")).unwrap();
            let g = p.make(&state).unwrap();
            assert!(!g.made, "it existed: not berth's to remove");
            g
        };
        assert_eq!(
            std::fs::read_to_string(root.join("ctr/schemata")).unwrap(),
            "MB:0=50\n"
        );
        assert_eq!(
            made.mon_dir.as_deref(),
            Some(root.join("ctr/mon_groups/ctr").as_path())
        );
        assert_eq!(RdtGroup::load(&state).unwrap().as_ref(), Some(&made));
        made.add(42).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("ctr/mon_groups/ctr/tasks")).unwrap(),
            "42"
        );
        std::fs::remove_file(root.join("ctr/mon_groups/ctr/tasks")).unwrap();
        made.remove().unwrap();
        assert!(
            !root.join("ctr/mon_groups/ctr").exists(),
            "the monitoring group is berth's"
        );
        assert!(root.join("ctr").exists(), "a group that existed is left");

        // A closID group berth makes is removed with the container.
        let p = plan(
            &root,
            serde_json::json!({"closID": "shared", "memBwSchema": "MB:0=20"}),
        );
        let g = p.make(&state).unwrap();
        assert!(g.made);
        assert_eq!(
            std::fs::read_to_string(root.join("shared/schemata")).unwrap(),
            "MB:0=20\n"
        );
        std::fs::remove_file(root.join("shared/schemata")).unwrap();
        g.remove().unwrap();
        assert!(!root.join("shared").exists());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
