//! `process.ioPriority`, `process.scheduler` and `process.execCPUAffinity`: how the container's
//! process is scheduled, for the init and for each `exec`.
//!
//! Where they are applied, and why:
//! - `execCPUAffinity.initial`: berth pins itself to those CPUs just before it clones the
//!   process ([`InitialAffinity`], undone right after), so the process is born on them and
//!   stays on them until it is in the container's cgroup: the spec's "runtime parent process,
//!   before the transition to the container's cgroup". The clone may be straight into the
//!   cgroup (`CLONE_INTO_CGROUP`), so the child setting it itself would be too late.
//! - `execCPUAffinity.final`, `scheduler`, `ioPriority`: berth sets them from outside
//!   ([`SchedPlan::apply_to`]) on the process that will exec, once it is in the cgroup (which
//!   resets the affinity where it has a cpuset) and forks no more, and before it may exec:
//!   the init when it reports ready (it then waits for `start`), an `exec`'s process when it
//!   reports its pid (it waits for berth to send it back). From outside because a process in a
//!   new user namespace has no CAP_SYS_NICE in the host's, which real-time policies, a lower
//!   nice and the real-time I/O class need (set from inside, they fail there with EPERM); and
//!   after the last fork because a SCHED_DEADLINE process cannot fork and
//!   SCHED_RESET_ON_FORK would be lost by the fork into the pid namespace.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    ExecCPUAffinity, IOPriorityClass, LinuxIOPriority, LinuxSchedulerFlag, LinuxSchedulerPolicy,
    Process, Scheduler,
};

/// The scheduling of one process, checked in the parent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedPlan {
    /// CPUs berth runs on while it clones the process (`execCPUAffinity.initial`).
    pub initial_cpus: Option<Vec<usize>>,
    /// CPUs of the process once in its cgroup (`execCPUAffinity.final`).
    pub final_cpus: Option<Vec<usize>>,
    /// `sched_setattr(2)`'s argument.
    pub attr: Option<SchedAttr>,
    /// `ioprio_set(2)`'s value: class << 13 | priority.
    pub ioprio: Option<i32>,
}

/// The fields of `struct sched_attr` (SCHED_ATTR_SIZE_VER0) the spec can set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

const IOPRIO_CLASS_SHIFT: i32 = 13;
const IOPRIO_WHO_PROCESS: libc::c_int = 1;

impl SchedPlan {
    pub fn new(p: &Process) -> Result<SchedPlan> {
        let (initial_cpus, final_cpus) = match p.exec_cpu_affinity() {
            Some(a) => affinity(a)?,
            None => (None, None),
        };
        Ok(SchedPlan {
            initial_cpus,
            final_cpus,
            attr: p.scheduler().as_ref().map(sched_attr).transpose()?,
            ioprio: p.io_priority().as_ref().map(ioprio).transpose()?,
        })
    }

    /// startContainer hooks are forked by the container's process once berth has set its
    /// policy: a SCHED_DEADLINE process cannot fork (EAGAIN) unless it resets on fork.
    pub fn check_start_hooks(&self, hooks: Option<&oci_spec::runtime::Hooks>) -> Result<()> {
        let deadline = self
            .attr
            .is_some_and(|a| a.policy == 6 && a.flags & 0x01 == 0);
        let hooks = hooks
            .and_then(|h| h.start_container().as_ref())
            .is_some_and(|l| !l.is_empty());
        if deadline && hooks {
            bail!("process.scheduler: a SCHED_DEADLINE process cannot fork its startContainer hooks; add SCHED_FLAG_RESET_ON_FORK to the flags, or drop the hooks");
        }
        Ok(())
    }

    /// Parent side: gives process `pid` (not yet exec'd, in its cgroup, forking no more) its
    /// final affinity, scheduling policy and I/O priority.
    pub fn apply_to(&self, pid: i32) -> Result<()> {
        if let Some(cpus) = &self.final_cpus {
            set_affinity(pid, cpus).with_context(|| {
                format!("process.execCPUAffinity.final: cannot run process {pid} on CPUs {cpus:?}")
            })?;
        }
        if let Some(attr) = &self.attr {
            sched_setattr(pid, attr).map_err(|e| {
                let hint = match e.raw_os_error() {
                    Some(libc::EPERM) if rt_group_sched() && matches!(attr.policy as i32, libc::SCHED_FIFO | libc::SCHED_RR) => " (this host schedules real-time tasks by cgroup: the container's cpu cgroup needs a budget, linux.resources.cpu.realtimeRuntime, which its parents must leave room for)",
                    Some(libc::EPERM) => " (real-time policies and a lower nice need CAP_SYS_NICE on the host, or RLIMIT_RTPRIO/RLIMIT_NICE; SCHED_DEADLINE needs the process allowed on every CPU of its root domain)",
                    Some(libc::EBUSY) => " (not enough SCHED_DEADLINE bandwidth left: see /proc/sys/kernel/sched_rt_runtime_us)",
                    Some(libc::EINVAL) => " (the kernel refuses these values for this policy)",
                    _ => "",
                };
                anyhow::Error::new(e).context(format!("process.scheduler: sched_setattr failed{hint}"))
            })?;
        }
        if let Some(value) = self.ioprio {
            // SAFETY: integer arguments only.
            let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, pid, value) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                let hint = if e.raw_os_error() == Some(libc::EPERM) {
                    " (IOPRIO_CLASS_RT needs CAP_SYS_ADMIN or CAP_SYS_NICE on the host)"
                } else {
                    ""
                };
                return Err(e).context(format!("process.ioPriority: ioprio_set failed{hint}"));
            }
        }
        Ok(())
    }
}

/// Whether the kernel gives real-time tasks a budget per cgroup (CONFIG_RT_GROUP_SCHED, seen
/// as cpu.rt_runtime_us in a cgroup v1 cpu hierarchy or cgroup2 root).
fn rt_group_sched() -> bool {
    [
        "/sys/fs/cgroup/cpu/cpu.rt_runtime_us",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.rt_runtime_us",
        "/sys/fs/cgroup/cpu.rt_runtime_us",
    ]
    .iter()
    .any(|p| std::path::Path::new(p).exists())
}

/// `execCPUAffinity.initial`, held while berth clones the process: berth's own affinity is
/// set to those CPUs and put back when this is dropped.
pub struct InitialAffinity {
    saved: Option<libc::cpu_set_t>,
}

impl InitialAffinity {
    pub fn set(plan: &SchedPlan) -> Result<InitialAffinity> {
        let Some(cpus) = &plan.initial_cpus else {
            return Ok(InitialAffinity { saved: None });
        };
        // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it in.
        let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `saved` is a valid cpu_set_t of the size passed.
        if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&saved), &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_getaffinity");
        }
        set_affinity(0, cpus).with_context(|| {
            format!("process.execCPUAffinity.initial: cannot run on CPUs {cpus:?}")
        })?;
        Ok(InitialAffinity { saved: Some(saved) })
    }
}

impl Drop for InitialAffinity {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: `saved` is the valid set sched_getaffinity gave.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(saved), saved) };
        }
    }
}

fn set_affinity(pid: i32, cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE, so the bit is inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn sched_setattr(pid: i32, a: &SchedAttr) -> std::io::Result<()> {
    #[repr(C)]
    struct Raw {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let raw = Raw {
        size: std::mem::size_of::<Raw>() as u32,
        policy: a.policy,
        flags: a.flags,
        nice: a.nice,
        priority: a.priority,
        runtime: a.runtime,
        deadline: a.deadline,
        period: a.period,
    };
    // SAFETY: `raw` is a valid SCHED_ATTR_SIZE_VER0 struct that outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, pid, &raw as *const Raw, 0u32) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// runtime-spec's names of two scheduler flags, and the ones oci-spec 0.10 takes instead
/// (its derived names drop "FLAG" from the first and split "DL").
const FLAG_NAMES: [(&str, &str); 2] = [
    ("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"),
    ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN"),
];

/// A config.json (`in_config`) or a `--process` file whose `scheduler.flags` use the spec's
/// names oci-spec 0.10 refuses, rewritten to the names it takes; None when there are none
/// (the common case costs one search of the bytes).
pub fn oci_spec_flag_names(bytes: &[u8], in_config: bool) -> Option<Vec<u8>> {
    let has = |name: &str| bytes.windows(name.len()).any(|w| w == name.as_bytes());
    if !FLAG_NAMES.iter().any(|(spec, _)| has(spec)) {
        return None;
    }
    let mut v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let process = if in_config {
        v.get_mut("process")?
    } else {
        &mut v
    };
    let flags = process
        .get_mut("scheduler")?
        .get_mut("flags")?
        .as_array_mut()?;
    for f in flags.iter_mut() {
        if let Some((_, ours)) = FLAG_NAMES.iter().find(|(spec, _)| f == spec) {
            *f = serde_json::Value::from(*ours);
        }
    }
    serde_json::to_vec(&v).ok()
}

/// A CPU list as the spec writes it ("0-3,7").
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>()?, b.trim().parse::<usize>()?),
            None => {
                let n = part.trim().parse::<usize>()?;
                (n, n)
            }
        };
        if lo > hi {
            bail!("{part:?}: the range is reversed");
        }
        if hi >= libc::CPU_SETSIZE as usize {
            bail!("{part:?}: CPU numbers go up to {}", libc::CPU_SETSIZE - 1);
        }
        cpus.extend(lo..=hi);
    }
    Ok(cpus)
}

type Cpus = Option<Vec<usize>>;

fn affinity(a: &ExecCPUAffinity) -> Result<(Cpus, Cpus)> {
    let list = |v: &Option<String>, field: &str| -> Result<Cpus> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => parse_cpu_list(s)
                .map(Some)
                .with_context(|| format!("process.execCPUAffinity.{field}: {s:?}")),
        }
    };
    Ok((
        list(a.initial(), "initial")?,
        list(a.cpu_affinity_final(), "final")?,
    ))
}

fn ioprio(io: &LinuxIOPriority) -> Result<i32> {
    let class = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let prio = io.priority();
    if !(0..=7).contains(&prio) {
        bail!("process.ioPriority.priority: {prio} is out of range (0 to 7)");
    }
    // The idle class has no levels: the kernel takes 0 only.
    let data = if class == 3 { 0 } else { prio as i32 };
    Ok(class << IOPRIO_CLASS_SHIFT | data)
}

fn sched_attr(s: &Scheduler) -> Result<SchedAttr> {
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => libc::SCHED_OTHER,
        LinuxSchedulerPolicy::SchedFifo => libc::SCHED_FIFO,
        LinuxSchedulerPolicy::SchedRr => libc::SCHED_RR,
        LinuxSchedulerPolicy::SchedBatch => libc::SCHED_BATCH,
        LinuxSchedulerPolicy::SchedIdle => libc::SCHED_IDLE,
        LinuxSchedulerPolicy::SchedDeadline => 6,
        LinuxSchedulerPolicy::SchedIso => {
            bail!("process.scheduler.policy: SCHED_ISO is reserved, Linux does not implement it")
        }
    } as u32;
    let realtime = matches!(
        s.policy(),
        LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr
    );
    let deadline = *s.policy() == LinuxSchedulerPolicy::SchedDeadline;
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        bail!("process.scheduler.nice: {nice} is out of range (-20 to 19)");
    }
    let priority = s.priority().unwrap_or(0);
    if realtime && !(1..=99).contains(&priority) {
        bail!(
            "process.scheduler.priority: {:?} takes a priority from 1 to 99, not {priority}",
            s.policy().to_string()
        );
    }
    if !realtime && priority != 0 {
        bail!(
            "process.scheduler.priority: {:?} takes no priority (only SCHED_FIFO and SCHED_RR do), got {priority}",
            s.policy().to_string()
        );
    }
    let (runtime, dl, period) = (
        s.runtime().unwrap_or(0),
        s.deadline().unwrap_or(0),
        s.period().unwrap_or(0),
    );
    if deadline {
        if runtime == 0 || dl == 0 {
            bail!("process.scheduler: SCHED_DEADLINE needs runtime and deadline");
        }
        let period_or_deadline = if period == 0 { dl } else { period };
        if !(runtime <= dl && dl <= period_or_deadline) {
            bail!("process.scheduler: SCHED_DEADLINE needs runtime <= deadline <= period (got {runtime}, {dl}, {period})");
        }
    } else if runtime != 0 || dl != 0 || period != 0 {
        bail!("process.scheduler: runtime, deadline and period are for SCHED_DEADLINE only");
    }
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin
            | LinuxSchedulerFlag::SchedFlagUtilClampMax => bail!(
                "process.scheduler.flags: {:?} needs a clamp value, which the spec has no field for",
                f.to_string()
            ),
        };
    }
    Ok(SchedAttr {
        policy,
        flags,
        nice,
        priority: priority as u32,
        runtime,
        deadline: dl,
        period,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,7").unwrap(), [0, 1, 2, 3, 7]);
        assert_eq!(parse_cpu_list("1").unwrap(), [1]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("0-99999").is_err());
    }

    fn process(json: serde_json::Value) -> Process {
        let mut base =
            serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["sh"]});
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn plans() {
        let p = process(serde_json::json!({
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 5},
            "scheduler": {"policy": "SCHED_BATCH", "nice": 7},
            "execCPUAffinity": {"initial": "0", "final": "1"}
        }));
        let plan = SchedPlan::new(&p).unwrap();
        assert_eq!(plan.ioprio, Some(3 << 13));
        assert_eq!(plan.attr.unwrap().policy, libc::SCHED_BATCH as u32);
        assert_eq!(plan.attr.unwrap().nice, 7);
        assert_eq!(plan.initial_cpus, Some(vec![0]));
        assert_eq!(plan.final_cpus, Some(vec![1]));
        let bad = [
            serde_json::json!({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}),
            serde_json::json!({"scheduler": {"policy": "SCHED_FIFO"}}),
            serde_json::json!({"scheduler": {"policy": "SCHED_OTHER", "priority": 3}}),
            serde_json::json!({"scheduler": {"policy": "SCHED_OTHER", "nice": 20}}),
            serde_json::json!({"scheduler": {"policy": "SCHED_ISO"}}),
            serde_json::json!({"scheduler": {"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 5}}),
        ];
        for b in bad {
            assert!(SchedPlan::new(&process(b.clone())).is_err(), "{b}");
        }
    }

    #[test]
    fn the_specs_flag_names() {
        let config = br#"{"process": {"args": ["SCHED_FLAG_RESET_ON_FORK"], "scheduler": {"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_RECLAIM"]}}}"#;
        let fixed = oci_spec_flag_names(config, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fixed).unwrap();
        assert_eq!(
            v["process"]["scheduler"]["flags"],
            serde_json::json!([
                "SCHED_RESET_ON_FORK",
                "SCHED_FLAG_D_L_OVERRUN",
                "SCHED_FLAG_RECLAIM"
            ])
        );
        assert_eq!(
            v["process"]["args"][0], "SCHED_FLAG_RESET_ON_FORK",
            "only the flags"
        );
        let p: Scheduler = serde_json::from_value(v["process"]["scheduler"].clone()).unwrap();
        let attr = sched_attr(&p).unwrap();
        assert_eq!(attr.flags, 0x01 | 0x04 | 0x02);
        assert!(oci_spec_flag_names(br#"{"process": {}}"#, true).is_none());
        let process =
            br#"{"scheduler": {"policy": "SCHED_BATCH", "flags": ["SCHED_FLAG_RESET_ON_FORK"]}}"#;
        assert!(oci_spec_flag_names(process, false).is_some());
    }
}
