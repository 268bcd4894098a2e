//! `linux.personality` and `linux.memoryPolicy`: attributes of the container's processes that
//! only a process can set on itself, and that fork and execve keep.
//!
//! Applied by the process itself, first thing in [`crate::runtime::process::drop_privileges`]:
//! in the container's cgroup by then (a cpuset's mems bound what `MPOL_BIND` may name), and
//! before the container's seccomp filter can refuse `personality(2)` or `set_mempolicy(2)`.
//! Neither needs a privilege. The init and every `exec`'d process get them: the container's
//! values are kept in its state directory for `exec` ([`TaskAttrs::save`]), so that
//! `uname -m` does not change between `run` and `exec`.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    Linux, LinuxMemoryPolicy, LinuxPersonality, LinuxPersonalityDomain, MemoryPolicyFlagType,
    MemoryPolicyModeType,
};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where a container's values are kept for `exec`, in its state directory.
const FILE: &str = "task-attrs.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAttrs {
    /// personality(2)'s argument.
    pub personality: Option<u64>,
    pub memory_policy: Option<MemPolicy>,
}

/// set_mempolicy(2)'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemPolicy {
    /// The mode with its flags.
    pub mode: i32,
    /// The node mask, 64 nodes a word.
    pub nodemask: Vec<u64>,
}

const PER_LINUX: u64 = 0x0000;
const PER_LINUX32: u64 = 0x0008;

const MPOL_F_NUMA_BALANCING: i32 = 1 << 13;
const MPOL_F_RELATIVE_NODES: i32 = 1 << 14;
const MPOL_F_STATIC_NODES: i32 = 1 << 15;

impl TaskAttrs {
    /// Checks `linux.personality` and `linux.memoryPolicy` against this host.
    pub fn new(linux: Option<&Linux>) -> Result<TaskAttrs> {
        let Some(linux) = linux else {
            return Ok(TaskAttrs::default());
        };
        Ok(TaskAttrs {
            personality: linux.personality().as_ref().map(personality).transpose()?,
            memory_policy: linux
                .memory_policy()
                .as_ref()
                .map(memory_policy)
                .transpose()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == TaskAttrs::default()
    }

    /// Keeps the container's values in its state directory, for `exec`.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        std::fs::write(state_dir.join(FILE), serde_json::to_vec(self)?)
            .context("cannot save linux.personality and linux.memoryPolicy for exec")
    }

    /// The container's values, for an `exec` in it.
    pub fn load(state_dir: &Path) -> Result<TaskAttrs> {
        match std::fs::read(state_dir.join(FILE)) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).context("corrupt task-attrs.json in the state")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TaskAttrs::default()),
            Err(e) => Err(e).context("cannot read the container's task-attrs.json"),
        }
    }

    /// Child side: sets them on the calling process.
    pub fn apply(&self) -> Result<()> {
        if let Some(p) = self.personality {
            // SAFETY: integer argument only.
            if unsafe { libc::personality(p as libc::c_ulong) } == -1 {
                return Err(std::io::Error::last_os_error())
                    .context("linux.personality: personality(2) failed");
            }
        }
        if let Some(m) = &self.memory_policy {
            let maxnode = (m.nodemask.len() * 64) as libc::c_ulong + 1;
            let mask = if m.nodemask.is_empty() {
                std::ptr::null()
            } else {
                m.nodemask.as_ptr()
            };
            // SAFETY: `mask` is null or points to nodemask's words, which hold maxnode - 1 bits.
            let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, m.mode, mask, maxnode) };
            if r != 0 {
                return Err(std::io::Error::last_os_error()).context(
                    "linux.memoryPolicy: set_mempolicy(2) failed (are the nodes in the container's cpuset.mems?)",
                );
            }
        }
        Ok(())
    }
}

fn personality(p: &LinuxPersonality) -> Result<u64> {
    if let Some(flag) = p.flags().iter().flatten().next() {
        bail!("linux.personality.flags: {flag:?}: runtime-spec 1.3 defines no personality flags");
    }
    Ok(match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    })
}

fn memory_policy(m: &LinuxMemoryPolicy) -> Result<MemPolicy> {
    let mode = m.mode();
    let mut value = match mode {
        MemoryPolicyModeType::MpolDefault => 0,
        MemoryPolicyModeType::MpolPreferred => 1,
        MemoryPolicyModeType::MpolBind => 2,
        MemoryPolicyModeType::MpolInterleave => 3,
        MemoryPolicyModeType::MpolLocal => 4,
        MemoryPolicyModeType::MpolPreferredMany => 5,
        MemoryPolicyModeType::MpolWeightedInterleave => 6,
    };
    for f in m.flags().iter().flatten() {
        value |= match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => MPOL_F_NUMA_BALANCING,
            MemoryPolicyFlagType::MpolFRelativeNodes => MPOL_F_RELATIVE_NODES,
            MemoryPolicyFlagType::MpolFStaticNodes => MPOL_F_STATIC_NODES,
        };
    }
    let nodes_text = m.nodes().as_deref().map(str::trim).unwrap_or("");
    let takes_nodes = !matches!(
        mode,
        MemoryPolicyModeType::MpolDefault | MemoryPolicyModeType::MpolLocal
    );
    if !takes_nodes && !nodes_text.is_empty() {
        bail!("linux.memoryPolicy.nodes: {mode} takes no nodes, got {nodes_text:?}");
    }
    // MPOL_PREFERRED without nodes means the local node; the others need some.
    if takes_nodes && nodes_text.is_empty() && mode != MemoryPolicyModeType::MpolPreferred {
        bail!("linux.memoryPolicy.nodes: {mode} needs nodes");
    }
    let nodes = if nodes_text.is_empty() {
        Vec::new()
    } else {
        crate::runtime::sched::parse_cpu_list(nodes_text)
            .with_context(|| format!("linux.memoryPolicy.nodes: {nodes_text:?}"))?
    };
    // With MPOL_F_RELATIVE_NODES the numbers are relative to the allowed nodes, not ids.
    if value & MPOL_F_RELATIVE_NODES == 0 {
        let online = std::fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
        let online_nodes = crate::runtime::sched::parse_cpu_list(online.trim()).unwrap_or_default();
        for n in &nodes {
            if !online_nodes.is_empty() && !online_nodes.contains(n) {
                bail!(
                    "linux.memoryPolicy.nodes: NUMA node {n} is not online on this host (online: {})",
                    online.trim()
                );
            }
        }
    }
    let mut nodemask = Vec::new();
    for n in nodes {
        let word = n / 64;
        if nodemask.len() <= word {
            nodemask.resize(word + 1, 0u64);
        }
        nodemask[word] |= 1u64 << (n % 64);
    }
    Ok(MemPolicy {
        mode: value,
        nodemask,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(json: serde_json::Value) -> Linux {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn checks() {
        let a = TaskAttrs::new(Some(&linux(serde_json::json!({
            "personality": {"domain": "LINUX32"},
            "memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}
        }))))
        .unwrap();
        assert_eq!(a.personality, Some(PER_LINUX32));
        let m = a.memory_policy.unwrap();
        assert_eq!(m.mode, 2 | MPOL_F_STATIC_NODES);
        assert_eq!(m.nodemask, [1]);
        for bad in [
            serde_json::json!({"personality": {"domain": "LINUX", "flags": ["X"]}}),
            serde_json::json!({"memoryPolicy": {"mode": "MPOL_BIND"}}),
            serde_json::json!({"memoryPolicy": {"mode": "MPOL_LOCAL", "nodes": "0"}}),
            serde_json::json!({"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "1000"}}),
        ] {
            assert!(TaskAttrs::new(Some(&linux(bad.clone()))).is_err(), "{bad}");
        }
    }
}
