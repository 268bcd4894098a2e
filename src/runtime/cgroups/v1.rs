//! cgroup v1 files: one hierarchy per controller (or group of controllers), mostly one number
//! per file, -1 for "no limit".

use super::resources::{
    blkio_entry, debug_ignored, device_number, flat_keyed, hugepage_sizes, hugetlb_entry,
    memory_entry, nonzero_i, nonzero_u, parse_cpu_list, put_nonzero, read_number, read_optional,
    read_string, record_write, wait_until, write_error, write_interdependent, write_raw,
    write_value, ControllerDir, ControllerDirs, DeviceRule, Mode, FREEZE_TIMEOUT,
};
use anyhow::{bail, Result};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::Path;

const MEMORY_LIMIT: &str = "memory.limit_in_bytes";
const MEMSW_LIMIT: &str = "memory.memsw.limit_in_bytes";

pub(super) fn set_memory(dir: &Path, m: &LinuxMemory, mode: Mode) -> Result<()> {
    let limit = nonzero_i(m.limit());
    let mut swap = nonzero_i(m.swap());
    let memsw_present = dir.join(MEMSW_LIMIT).exists();
    // "No memory limit" without a word on swap lifts the memory+swap limit too; otherwise the
    // old memsw value would still cap the memory (runc does the same).
    if limit == Some(-1) && swap.is_none() && memsw_present {
        swap = Some(-1);
    }
    if let Some(s) = swap {
        if !memsw_present {
            if s != -1 {
                bail!("linux.resources.memory.swap: this kernel does not account swap ({MEMSW_LIMIT} is missing; it needs swapaccount=1)");
            }
            swap = None;
        }
    }
    if mode == Mode::Update && m.check_before_update() == Some(true) {
        if let Some(l) = limit.filter(|&l| l > 0) {
            let usage = read_number(dir, "memory.usage_in_bytes")?;
            if (l as u64) < usage {
                bail!("linux.resources.memory.limit: {l} is below the current usage of {usage} bytes (checkBeforeUpdate)");
            }
        }
    }
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // The kernel keeps memory <= memory+swap at every step: raise memsw first when it
            // stays above the current memory limit, else lower the memory limit first.
            let current_limit = read_number(dir, MEMORY_LIMIT)?;
            if s == -1 || s as u64 >= current_limit {
                write_swap(dir, s)?;
                write_memory_limit(dir, l)?;
            } else {
                write_memory_limit(dir, l)?;
                write_swap(dir, s)?;
            }
        }
        (Some(l), None) => write_memory_limit(dir, l)?,
        (None, Some(s)) => write_swap(dir, s)?,
        (None, None) => {}
    }
    if let Some(r) = nonzero_i(m.reservation()) {
        write_value(
            dir,
            "memory.soft_limit_in_bytes",
            &r.to_string(),
            "linux.resources.memory.reservation",
        )?;
    }
    if let Some(k) = nonzero_i(m.kernel()) {
        set_kernel_memory(dir, k)?;
    }
    if let Some(k) = nonzero_i(m.kernel_tcp()) {
        const TCP: &str = "memory.kmem.tcp.limit_in_bytes";
        if dir.join(TCP).exists() {
            write_value(dir, TCP, &k.to_string(), "linux.resources.memory.kernelTCP")?;
        } else {
            debug_ignored(
                "linux.resources.memory.kernelTCP",
                "this kernel has no memory.kmem.tcp.limit_in_bytes",
            );
        }
    }
    if let Some(s) = m.swappiness() {
        write_value(
            dir,
            "memory.swappiness",
            &s.to_string(),
            "linux.resources.memory.swappiness",
        )?;
    }
    match (m.disable_oom_killer(), mode) {
        (Some(true), _) => write_value(
            dir,
            "memory.oom_control",
            "1",
            "linux.resources.memory.disableOOMKiller",
        )?,
        // On create the OOM killer is on already; on update "false" turns it back on.
        (Some(false), Mode::Update) => write_value(
            dir,
            "memory.oom_control",
            "0",
            "linux.resources.memory.disableOOMKiller",
        )?,
        _ => {}
    }
    if let Some(h) = m.use_hierarchy() {
        match write_raw(dir, "memory.use_hierarchy", if h { "1" } else { "0" }) {
            Ok(()) => {}
            // Since Linux 5.10 accounting is always hierarchical and "0" is refused; runc
            // does not handle this field at all.
            Err(e) if !h && e.raw_os_error() == Some(libc::EINVAL) => debug_ignored(
                "linux.resources.memory.useHierarchy",
                "this kernel always accounts memory hierarchically",
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => debug_ignored(
                "linux.resources.memory.useHierarchy",
                "this kernel has no memory.use_hierarchy",
            ),
            Err(e) => {
                return Err(write_error(
                    e,
                    dir,
                    "memory.use_hierarchy",
                    if h { "1" } else { "0" },
                    "linux.resources.memory.useHierarchy",
                ))
            }
        }
    }
    Ok(())
}

fn write_memory_limit(dir: &Path, limit: i64) -> Result<()> {
    const FIELD: &str = "linux.resources.memory.limit";
    let value = limit.to_string();
    match write_raw(dir, MEMORY_LIMIT, &value) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let usage = read_number(dir, "memory.usage_in_bytes").unwrap_or(0);
            bail!("{FIELD}: cannot lower the limit to {limit}: the container uses {usage} bytes and the kernel could not reclaim enough")
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && dir.join(MEMSW_LIMIT).exists() => {
            let memsw = read_number(dir, MEMSW_LIMIT).unwrap_or(0);
            let e = write_error(e, dir, MEMORY_LIMIT, &value, FIELD);
            bail!("{e:#} (the memory+swap limit is {memsw}: raise linux.resources.memory.swap with it)")
        }
        Err(e) => Err(write_error(e, dir, MEMORY_LIMIT, &value, FIELD)),
    }
}

fn write_swap(dir: &Path, swap: i64) -> Result<()> {
    write_value(
        dir,
        MEMSW_LIMIT,
        &swap.to_string(),
        "linux.resources.memory.swap",
    )
}

/// Kernel-memory limits are deprecated since Linux 5.4 and ignored (or refused) since 5.16;
/// like runc, berth then ignores the field.
fn set_kernel_memory(dir: &Path, limit: i64) -> Result<()> {
    const FIELD: &str = "linux.resources.memory.kernel";
    const KMEM: &str = "memory.kmem.limit_in_bytes";
    if !dir.join(KMEM).exists() {
        debug_ignored(FIELD, "this kernel has no memory.kmem.limit_in_bytes");
        return Ok(());
    }
    match write_raw(dir, KMEM, &limit.to_string()) {
        Ok(()) => {
            if limit > 0 && read_number(dir, KMEM)? != limit as u64 {
                debug_ignored(FIELD, "this kernel no longer enforces kernel-memory limits");
            }
            Ok(())
        }
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::EBUSY)
            ) =>
        {
            debug_ignored(
                FIELD,
                &format!("the kernel refuses kernel-memory limits ({e})"),
            );
            Ok(())
        }
        Err(e) => Err(write_error(e, dir, KMEM, &limit.to_string(), FIELD)),
    }
}

pub(super) fn set_cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    const IDLE: &str = "linux.resources.cpu.idle";
    // A cgroup marked idle refuses cpu.shares: leave idle first, enter it last.
    let idle = c.idle();
    if idle == Some(0) && dir.join("cpu.idle").exists() {
        write_value(dir, "cpu.idle", "0", IDLE)?;
    }
    if let Some(shares) = nonzero_u(c.shares()) {
        const FIELD: &str = "linux.resources.cpu.shares";
        write_value(dir, "cpu.shares", &shares.to_string(), FIELD)?;
        let taken = read_number(dir, "cpu.shares")?;
        if taken != shares {
            bail!("{FIELD}: the kernel took {shares} as {taken}; shares must be within 2..=262144");
        }
    }
    let mut bandwidth = Vec::new();
    if let Some(p) = nonzero_u(c.period()) {
        bandwidth.push((
            "cpu.cfs_period_us",
            p.to_string(),
            "linux.resources.cpu.period",
        ));
    }
    if let Some(q) = nonzero_i(c.quota()) {
        bandwidth.push((
            "cpu.cfs_quota_us",
            q.to_string(),
            "linux.resources.cpu.quota",
        ));
    }
    // No burst is what a kernel without burst support gives anyway.
    if let Some(b) = c
        .burst()
        .filter(|&b| b != 0 || dir.join("cpu.cfs_burst_us").exists())
    {
        bandwidth.push((
            "cpu.cfs_burst_us",
            b.to_string(),
            "linux.resources.cpu.burst",
        ));
    }
    write_interdependent(dir, &bandwidth)?;
    let mut realtime = Vec::new();
    if let Some(p) = nonzero_u(c.realtime_period()) {
        realtime.push((
            "cpu.rt_period_us",
            p.to_string(),
            "linux.resources.cpu.realtimePeriod",
        ));
    }
    if let Some(r) = nonzero_i(c.realtime_runtime()) {
        realtime.push((
            "cpu.rt_runtime_us",
            r.to_string(),
            "linux.resources.cpu.realtimeRuntime",
        ));
    }
    if !realtime.is_empty() && !dir.join("cpu.rt_runtime_us").exists() {
        bail!(
            "{}: this kernel has no real-time group scheduling (CONFIG_RT_GROUP_SCHED)",
            realtime[0].2
        );
    }
    write_interdependent(dir, &realtime).map_err(|e| {
        let einval = e
            .root_cause()
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::EINVAL));
        if einval {
            // Real-time budget is handed down from the parent, never created.
            anyhow::anyhow!("{e:#} (the parent cgroup's cpu.rt_runtime_us must leave room for it)")
        } else {
            e
        }
    })?;
    if let Some(i) = idle.filter(|&i| i != 0) {
        write_value(dir, "cpu.idle", &i.to_string(), IDLE)?;
    }
    Ok(())
}

pub(super) fn set_block_io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // CFQ had blkio.weight; BFQ, its successor, has blkio.bfq.weight with the same range.
    let bfq = !dir.join("blkio.weight").exists() && dir.join("blkio.bfq.weight").exists();
    let (weight_file, weight_device_file) = if bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        write_value(
            dir,
            weight_file,
            &w.to_string(),
            "linux.resources.blockIO.weight",
        )?;
    }
    if let Some(w) = b.leaf_weight().filter(|&w| w != 0) {
        set_leaf_weight(dir, "blkio.leaf_weight", &w.to_string(), "leafWeight")?;
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        let field = format!("linux.resources.blockIO.weightDevice[{i}]");
        let device = device_number(d.major(), d.minor(), &field)?;
        if let Some(w) = d.weight() {
            write_value(
                dir,
                weight_device_file,
                &format!("{device} {w}"),
                &format!("{field}.weight"),
            )?;
        }
        if let Some(w) = d.leaf_weight() {
            set_leaf_weight(
                dir,
                "blkio.leaf_weight_device",
                &format!("{device} {w}"),
                &format!("weightDevice[{i}].leafWeight"),
            )?;
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
            "throttleReadBpsDevice",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
            "throttleWriteBpsDevice",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
            "throttleReadIOPSDevice",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
            "throttleWriteIOPSDevice",
        ),
    ];
    for (list, file, name) in throttles {
        for (i, t) in list.iter().flatten().enumerate() {
            let field = format!("linux.resources.blockIO.{name}[{i}]");
            let device = device_number(t.major(), t.minor(), &field)?;
            // A rate of 0 removes the device's limit.
            write_value(dir, file, &format!("{device} {}", t.rate()), &field)?;
        }
    }
    Ok(())
}

/// Leaf weights belonged to CFQ, removed in Linux 5.0; runc ignores them where unsupported.
fn set_leaf_weight(dir: &Path, file: &str, value: &str, name: &str) -> Result<()> {
    let field = format!("linux.resources.blockIO.{name}");
    if dir.join(file).exists() {
        write_value(dir, file, value, &field)
    } else {
        debug_ignored(
            &field,
            "leaf weights went with the CFQ scheduler (Linux 5.0)",
        );
        Ok(())
    }
}

pub(super) fn set_hugepages(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for (i, l) in limits.iter().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}].limit");
        let size = l.page_size();
        let value = l.limit().to_string();
        write_value(
            dir,
            &format!("hugetlb.{size}.limit_in_bytes"),
            &value,
            &field,
        )?;
        // Reservations count too since Linux 5.7: limit them alike, or a reserved but not yet
        // faulted mapping escapes the limit.
        let rsvd = format!("hugetlb.{size}.rsvd.limit_in_bytes");
        if dir.join(&rsvd).exists() {
            write_value(dir, &rsvd, &value, &field)?;
        }
    }
    Ok(())
}

/// Replaces the cgroup's device list: deny everything, then each rule in order.
pub(super) fn set_devices(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    // The kernel takes one rule per write(2): each file is opened once for all of them.
    let open = |file: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join(file))
            .map_err(|e| write_error(e, dir, file, "", "linux.resources.devices"))
    };
    let (mut allow, mut deny) = (open("devices.allow")?, open("devices.deny")?);
    let lines = std::iter::once((
        false,
        "a".to_string(),
        "linux.resources.devices".to_string(),
    ))
    .chain(rules.iter().enumerate().map(|(i, rule)| {
        let field = format!("linux.resources.devices[{i}]");
        (rule.allow, rule.v1_line(), field)
    }));
    for (allowed, line, field) in lines {
        let (f, file) = if allowed {
            (&mut allow, "devices.allow")
        } else {
            (&mut deny, "devices.deny")
        };
        record_write(&dir.join(file), &line);
        f.write_all(line.as_bytes())
            .map_err(|e| write_error(e, dir, file, &line, &field))?;
    }
    Ok(())
}

pub(super) fn freeze(dir: &Path) -> Result<()> {
    let frozen = wait_until(FREEZE_TIMEOUT, || {
        // Writing FROZEN again also catches tasks forked while the cgroup was FREEZING.
        write_value(dir, "freezer.state", "FROZEN", "freezer.state")?;
        Ok(read_string(dir, "freezer.state")?.trim() == "FROZEN")
    })?;
    if !frozen {
        let _ = write_raw(dir, "freezer.state", "THAWED");
        bail!(
            "cannot pause: processes in {} did not freeze within {}s",
            dir.display(),
            FREEZE_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

pub(super) fn thaw(dir: &Path) -> Result<()> {
    write_value(dir, "freezer.state", "THAWED", "freezer.state")?;
    let thawed = wait_until(FREEZE_TIMEOUT, || {
        Ok(read_string(dir, "freezer.state")?.trim() == "THAWED")
    })?;
    if !thawed {
        bail!(
            "cannot resume: {} did not thaw within {}s",
            dir.display(),
            FREEZE_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

// ---- statistics ----

pub(super) fn stats(dirs: &ControllerDirs, data: &mut Value) -> Result<()> {
    if let ControllerDir::V1(dir) = dirs.locate("cpuacct") {
        data["cpu"]["usage"] = cpu_usage(dir)?;
    }
    if let ControllerDir::V1(dir) = dirs.locate("cpu") {
        let s = flat_keyed(&read_optional(dir, "cpu.stat")?.unwrap_or_default());
        let mut t = Map::new();
        put_nonzero(&mut t, "periods", s.get("nr_periods").copied().unwrap_or(0));
        put_nonzero(
            &mut t,
            "throttledPeriods",
            s.get("nr_throttled").copied().unwrap_or(0),
        );
        put_nonzero(
            &mut t,
            "throttledTime",
            s.get("throttled_time").copied().unwrap_or(0),
        );
        data["cpu"]["throttling"] = Value::Object(t);
    }
    if let ControllerDir::V1(dir) = dirs.locate("cpuset") {
        cpuset_stats(dir, &mut data["cpuset"])?;
    }
    if let ControllerDir::V1(dir) = dirs.locate("memory") {
        data["memory"] = memory_stats(dir)?;
    }
    if let ControllerDir::V1(dir) = dirs.locate("pids") {
        let mut p = Map::new();
        put_nonzero(&mut p, "current", read_number(dir, "pids.current")?);
        let limit = read_number(dir, "pids.max")?;
        // runc reports "max" as 0, i.e. leaves it out.
        put_nonzero(&mut p, "limit", if limit == u64::MAX { 0 } else { limit });
        data["pids"] = Value::Object(p);
    }
    if let ControllerDir::V1(dir) = dirs.locate("blkio") {
        data["blkio"] = blkio_stats(dir)?;
    }
    if let ControllerDir::V1(dir) = dirs.locate("hugetlb") {
        let mut h = Map::new();
        for size in hugepage_sizes() {
            let file = |f: &str| format!("hugetlb.{size}.{f}");
            let entry = hugetlb_entry(
                read_number(dir, &file("usage_in_bytes"))?,
                read_number(dir, &file("max_usage_in_bytes"))?,
                read_number(dir, &file("failcnt"))?,
            );
            h.insert(size, entry);
        }
        data["hugetlb"] = Value::Object(h);
    }
    Ok(())
}

fn cpu_usage(dir: &Path) -> Result<Value> {
    let numbers = |file: &str| -> Result<Vec<u64>> {
        Ok(read_optional(dir, file)?
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect())
    };
    let mut u = Map::new();
    put_nonzero(&mut u, "total", read_number(dir, "cpuacct.usage")?);
    for (key, file) in [
        ("percpu", "cpuacct.usage_percpu"),
        ("percpu_kernel", "cpuacct.usage_percpu_sys"),
        ("percpu_user", "cpuacct.usage_percpu_user"),
    ] {
        let list = numbers(file)?;
        if !list.is_empty() {
            u.insert(key.into(), json!(list));
        }
    }
    // cpuacct.stat counts clock ticks; runc reports nanoseconds.
    // SAFETY: sysconf only reads a constant of the C library.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let stat = flat_keyed(&read_optional(dir, "cpuacct.stat")?.unwrap_or_default());
    let ns = |key: &str| stat.get(key).copied().unwrap_or(0) * (1_000_000_000 / ticks_per_second);
    u.insert("kernel".into(), json!(ns("system")));
    u.insert("user".into(), json!(ns("user")));
    Ok(Value::Object(u))
}

fn cpuset_stats(dir: &Path, out: &mut Value) -> Result<()> {
    for (key, file) in [("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")] {
        let list = parse_cpu_list(&read_optional(dir, file)?.unwrap_or_default());
        if !list.is_empty() {
            out[key] = json!(list);
        }
    }
    for key in [
        "cpu_exclusive",
        "mem_hardwall",
        "mem_exclusive",
        "memory_migrate",
        "memory_spread_page",
        "memory_spread_slab",
        "memory_pressure",
        "sched_load_balance",
    ] {
        out[key] = json!(read_number(dir, &format!("cpuset.{key}"))?);
    }
    let level = read_optional(dir, "cpuset.sched_relax_domain_level")?
        .and_then(|t| t.trim().parse::<i64>().ok())
        .unwrap_or(0);
    out["sched_relax_domain_level"] = json!(level);
    Ok(())
}

fn memory_stats(dir: &Path) -> Result<Value> {
    let raw = flat_keyed(&read_optional(dir, "memory.stat")?.unwrap_or_default());
    let entry = |prefix: &str| -> Result<Value> {
        let file = |f: &str| format!("{prefix}{f}");
        Ok(memory_entry(
            read_number(dir, &file("limit_in_bytes"))?,
            read_number(dir, &file("usage_in_bytes"))?,
            read_number(dir, &file("max_usage_in_bytes"))?,
            read_number(dir, &file("failcnt"))?,
        ))
    };
    let mut m = Map::new();
    put_nonzero(&mut m, "cache", raw.get("cache").copied().unwrap_or(0));
    m.insert("usage".into(), entry("memory.")?);
    // As in runc, v1 "swap" is the memory+swap counter.
    m.insert("swap".into(), entry("memory.memsw.")?);
    m.insert("kernel".into(), entry("memory.kmem.")?);
    m.insert("kernelTCP".into(), entry("memory.kmem.tcp.")?);
    if !raw.is_empty() {
        m.insert("raw".into(), json!(raw));
    }
    Ok(Value::Object(m))
}

/// The throttle layer's counters see every I/O of the cgroup whatever the device's scheduler;
/// BFQ's only what BFQ schedules, so they are the fallback.
fn blkio_stats(dir: &Path) -> Result<Value> {
    let mut b = Map::new();
    for (key, names) in [
        (
            "ioServiceBytesRecursive",
            [
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.bfq.io_service_bytes_recursive",
            ],
        ),
        (
            "ioServicedRecursive",
            [
                "blkio.throttle.io_serviced_recursive",
                "blkio.bfq.io_serviced_recursive",
            ],
        ),
    ] {
        for name in names {
            let entries = parse_blkio_entries(&read_optional(dir, name)?.unwrap_or_default());
            if !entries.is_empty() {
                b.insert(key.into(), Value::Array(entries));
                break;
            }
        }
    }
    Ok(Value::Object(b))
}

/// "8:0 Read 4096" lines; the closing "Total N" line has no device and is skipped.
pub(super) fn parse_blkio_entries(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (device, op, value) = (f.next()?, f.next()?, f.next()?);
            let (major, minor) = device.split_once(':')?;
            Some(blkio_entry(
                major.parse().ok()?,
                minor.parse().ok()?,
                op,
                value.parse().ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Real cgroups, as root, on a v1 or hybrid host: limits read back from the files, and
    //! their effects on forked children.
    use super::super::resources::test_support::{error_of, resources};
    use super::super::resources::{
        apply_resources, freeze, hugepage_sizes, oom_kill_count, stats, thaw, update_resources,
        wait_until, ControllerDir, ControllerDirs,
    };
    use super::super::{hierarchies, CgroupPaths};
    use serde_json::{json, Value};
    use std::path::PathBuf;
    use std::sync::{Mutex, MutexGuard};
    use std::time::Duration;

    // ---- cgroup v1, real, as root on a v1 or hybrid host ----

    /// Real cgroup tests run one at a time: they share berth-test-<pid> and the root's
    /// real-time budget.
    static REAL_CGROUPS: Mutex<()> = Mutex::new(());

    /// The container cgroup `berth-test-<pid>/<name>` in every hierarchy, made by
    /// `CgroupPaths::create` as for a container; on drop its processes are killed and every
    /// directory it made is removed, berth-test-<pid> included.
    struct TestCgroup {
        paths: CgroupPaths,
        children: Vec<i32>,
        _serial: MutexGuard<'static, ()>,
    }

    impl TestCgroup {
        /// `None` (with a note) where the real tests cannot run.
        fn new(name: &str) -> Option<TestCgroup> {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                eprintln!("note: not root: skipping the real cgroup test {name}");
                return None;
            }
            let mounted = hierarchies().ok()?;
            if !mounted
                .iter()
                .any(|h| !h.unified && h.controllers.iter().any(|c| c == "memory"))
            {
                eprintln!("note: no v1 memory hierarchy: skipping the real cgroup test {name}");
                return None;
            }
            let serial = REAL_CGROUPS.lock().unwrap_or_else(|e| e.into_inner());
            let rel = PathBuf::from(format!("berth-test-{}/{name}", std::process::id()));
            let paths = CgroupPaths::create(&rel).expect("create the test cgroup");
            Some(TestCgroup {
                paths,
                children: Vec::new(),
                _serial: serial,
            })
        }

        fn dir(&self, controller: &str) -> Option<PathBuf> {
            match ControllerDirs::of(&self.paths).unwrap().locate(controller) {
                ControllerDir::V1(d) => Some(d.to_path_buf()),
                _ => None,
            }
        }

        fn read(&self, controller: &str, file: &str) -> String {
            let dir = self.dir(controller).unwrap();
            std::fs::read_to_string(dir.join(file))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
                .trim()
                .to_string()
        }

        /// Forks a child that waits to be started, then runs `body(arg)` and exits with its
        /// result; the child is moved into the test cgroup before it starts.
        fn spawn(&mut self, body: fn(usize) -> i32, arg: usize) -> Started {
            let mut fds = [0; 2];
            // SAFETY: pipe2 fills the two-element array it is given.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: the child of this multi-threaded test process makes only raw system
            // calls (async-signal-safe) until _exit.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let mut byte = 0u8;
                // SAFETY: a one-byte read into a local; _exit never returns.
                unsafe {
                    libc::read(fds[0], (&mut byte as *mut u8).cast(), 1);
                    libc::_exit(body(arg));
                }
            }
            self.children.push(pid);
            // SAFETY: closing our copy of the read end, which we own.
            unsafe { libc::close(fds[0]) };
            self.paths
                .join(pid)
                .expect("move the child into the test cgroup");
            // SAFETY: a one-byte write from a local, then closing the fd we own.
            unsafe {
                libc::write(fds[1], [1u8].as_ptr().cast(), 1);
                libc::close(fds[1]);
            }
            Started { pid }
        }

        /// Waits for a child; its raw wait status.
        fn wait(&mut self, child: Started) -> i32 {
            let mut status = 0;
            // SAFETY: waiting for our own child into a local.
            let r = unsafe { libc::waitpid(child.pid, &mut status, 0) };
            assert_eq!(r, child.pid);
            self.children.retain(|&p| p != child.pid);
            status
        }
    }

    struct Started {
        pid: i32,
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            // A frozen v1 task cannot die: thaw first.
            if self.paths.is_frozen() {
                let _ = thaw(&self.paths);
            }
            // Every process in the cgroup, grandchildren included: one left behind would keep
            // the directories busy (and the test's output pipe open).
            let _ = wait_until(Duration::from_secs(5), || {
                let pids = self.paths.pids()?;
                for &pid in &pids {
                    // SAFETY: signalling a process of our own test cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                Ok(pids.is_empty())
            });
            for &pid in &self.children {
                // SAFETY: reaping our own child.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            }
            for e in self.paths.remove_created() {
                eprintln!("cleanup: {e:#}");
            }
            // The shared parent, which remove_created leaves to whoever made it.
            for h in hierarchies().unwrap_or_default() {
                let _ = std::fs::remove_dir(
                    h.mount_point
                        .join(format!("berth-test-{}", std::process::id())),
                );
            }
        }
    }

    /// major:minor of the whole disk holding /, for the throttle tests.
    fn root_disk() -> Option<(u32, u32)> {
        let mountinfo = crate::runtime::procfs::read_to_string("/proc/self/mountinfo").ok()?;
        let device = mountinfo.lines().find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(4) == Some(&"/")).then(|| f[2].to_string())
        })?;
        let sys = PathBuf::from(format!("/sys/dev/block/{device}"));
        // Throttling applies to disks, not partitions.
        let disk = if sys.join("partition").exists() {
            std::fs::read_to_string(sys.join("../dev")).ok()?
        } else {
            device
        };
        let (major, minor) = disk.trim().split_once(':')?;
        let (major, minor) = (major.parse().ok()?, minor.parse().ok()?);
        (major != 0).then_some((major, minor))
    }

    #[test]
    fn v1_applies_every_supported_field() {
        let Some(cg) = TestCgroup::new("every-field") else {
            return;
        };
        let disk = root_disk();
        if disk.is_none() {
            eprintln!("note: / is not on a block device: no blockIO throttle check");
        }
        let (major, minor) = disk.unwrap_or((0, 0));
        let throttle = |rate: u64| -> Value {
            if disk.is_some() {
                json!([{"major": major, "minor": minor, "rate": rate}])
            } else {
                json!([])
            }
        };
        let memsw = cg
            .dir("memory")
            .unwrap()
            .join("memory.memsw.limit_in_bytes")
            .exists();
        let mut memory = json!({
            "limit": 67108864, "reservation": 33554432, "kernel": 100663296,
            "kernelTCP": 16777216, "swappiness": 30, "disableOOMKiller": true,
            "useHierarchy": true
        });
        if memsw {
            memory["swap"] = json!(134217728);
        }
        // Weights need an I/O scheduler that takes them (CFQ's blkio.weight, BFQ's
        // blkio.bfq.weight); a host with neither (virtio disks on "none") has no such file.
        let blkio_root = cg.dir("blkio").unwrap().parent().unwrap().to_path_buf();
        let weights = blkio_root.join("blkio.weight").exists()
            || blkio_root.join("blkio.bfq.weight").exists();
        let weight = if weights { 300 } else { 0 };
        let r = resources(json!({
            "memory": memory,
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 10000,
                    "realtimeRuntime": 10000, "realtimePeriod": 1000000,
                    "cpus": "0", "mems": "0", "idle": 0},
            "blockIO": {"weight": weight, "leafWeight": 300,
                        "throttleReadBpsDevice": throttle(1048576),
                        "throttleWriteBpsDevice": throttle(2097152),
                        "throttleReadIOPSDevice": throttle(100),
                        "throttleWriteIOPSDevice": throttle(200)},
            "pids": {"limit": 42},
            "devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                {"allow": true, "type": "b", "major": 7, "access": "r"},
                {"allow": false, "type": "c", "major": 10, "minor": 229, "access": "w"}
            ]
        }));
        // A real-time budget must come from the parent, which has none of its own.
        let cpu_dir = cg.dir("cpu").unwrap();
        let parent = cpu_dir.parent().unwrap();
        std::fs::write(parent.join("cpu.rt_runtime_us"), "10000").unwrap();
        apply_resources(&cg.paths, &r).unwrap();

        assert_eq!(cg.read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(cg.read("memory", "memory.soft_limit_in_bytes"), "33554432");
        if memsw {
            assert_eq!(
                cg.read("memory", "memory.memsw.limit_in_bytes"),
                "134217728"
            );
        } else {
            eprintln!("note: no swap accounting (memory.memsw.*): swap not checked");
        }
        assert_eq!(cg.read("memory", "memory.swappiness"), "30");
        assert!(cg
            .read("memory", "memory.oom_control")
            .contains("oom_kill_disable 1"));
        assert_eq!(cg.read("memory", "memory.use_hierarchy"), "1");
        if cg
            .dir("memory")
            .unwrap()
            .join("memory.kmem.tcp.limit_in_bytes")
            .exists()
        {
            assert_eq!(
                cg.read("memory", "memory.kmem.tcp.limit_in_bytes"),
                "16777216"
            );
        }
        assert_eq!(cg.read("cpu", "cpu.shares"), "512");
        assert_eq!(cg.read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(cg.read("cpu", "cpu.cfs_period_us"), "100000");
        if cg.dir("cpu").unwrap().join("cpu.cfs_burst_us").exists() {
            assert_eq!(cg.read("cpu", "cpu.cfs_burst_us"), "10000");
        }
        assert_eq!(cg.read("cpu", "cpu.rt_runtime_us"), "10000");
        assert_eq!(cg.read("cpu", "cpu.rt_period_us"), "1000000");
        assert_eq!(cg.read("cpuset", "cpuset.cpus"), "0");
        assert_eq!(cg.read("cpuset", "cpuset.mems"), "0");
        let blkio = cg.dir("blkio").unwrap();
        if !weights {
            eprintln!("note: no scheduler takes blkio weights here: weight not checked");
        } else if blkio.join("blkio.weight").exists() {
            assert_eq!(cg.read("blkio", "blkio.weight"), "300");
        } else {
            eprintln!("note: no CFQ blkio.weight; checking blkio.bfq.weight");
            // BFQ prints "default 300".
            assert!(cg.read("blkio", "blkio.bfq.weight").ends_with("300"));
        }
        if disk.is_some() {
            for (file, rate) in [
                ("blkio.throttle.read_bps_device", 1048576),
                ("blkio.throttle.write_bps_device", 2097152),
                ("blkio.throttle.read_iops_device", 100),
                ("blkio.throttle.write_iops_device", 200),
            ] {
                assert_eq!(cg.read("blkio", file), format!("{major}:{minor} {rate}"));
            }
        }
        assert_eq!(cg.read("pids", "pids.max"), "42");
        let list = cg.read("devices", "devices.list");
        let lines: Vec<&str> = list.lines().collect();
        for want in [
            "c 10:229 r",
            "b 7:* r",
            "c *:* m",
            "b *:* m",
            "c 1:3 rwm",
            "c 136:* rwm",
        ] {
            assert!(
                lines.contains(&want),
                "devices.list lacks {want:?}: {lines:?}"
            );
        }
        assert!(!lines.contains(&"a *:* rwm"), "{lines:?}");

        // cpu.idle on its own: an idle group refuses shares, so it goes last.
        let idle = resources(json!({"cpu": {"idle": 1}}));
        update_resources(&cg.paths, &idle).unwrap();
        assert_eq!(cg.read("cpu", "cpu.idle"), "1");
        let busy = resources(json!({"cpu": {"idle": 0, "shares": 256}}));
        update_resources(&cg.paths, &busy).unwrap();
        assert_eq!(cg.read("cpu", "cpu.shares"), "256");
    }

    #[test]
    fn v1_update_changes_only_what_is_given() {
        let Some(cg) = TestCgroup::new("update") else {
            return;
        };
        let memsw = cg
            .dir("memory")
            .unwrap()
            .join("memory.memsw.limit_in_bytes")
            .exists();
        let start = if memsw {
            json!({"limit": 67108864, "swap": 134217728})
        } else {
            json!({"limit": 67108864})
        };
        apply_resources(
            &cg.paths,
            &resources(
                json!({"memory": start, "cpu": {"shares": 512, "quota": 20000},
                              "pids": {"limit": 9}}),
            ),
        )
        .unwrap();
        // Docker's update JSON: zeros for everything it does not change.
        let zeros = resources(json!({
            "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                    "realtimePeriod": 0, "cpus": "", "mems": ""},
            "blockIO": {"weight": 0},
            "pids": {"limit": 0}
        }));
        update_resources(&cg.paths, &zeros).unwrap();
        assert_eq!(cg.read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(cg.read("cpu", "cpu.shares"), "512");
        assert_eq!(cg.read("cpu", "cpu.cfs_quota_us"), "20000");
        assert_eq!(cg.read("pids", "pids.max"), "9");
        if memsw {
            // Raising both above the old memory+swap needs memsw first...
            let up = json!({"memory": {"limit": 268435456, "swap": 536870912}});
            update_resources(&cg.paths, &resources(up)).unwrap();
            assert_eq!(cg.read("memory", "memory.limit_in_bytes"), "268435456");
            assert_eq!(
                cg.read("memory", "memory.memsw.limit_in_bytes"),
                "536870912"
            );
            // ...and lowering both below the old memory limit needs the limit first.
            let down = json!({"memory": {"limit": 16777216, "swap": 16777216}});
            update_resources(&cg.paths, &resources(down)).unwrap();
            assert_eq!(cg.read("memory", "memory.limit_in_bytes"), "16777216");
            assert_eq!(cg.read("memory", "memory.memsw.limit_in_bytes"), "16777216");
            // A memory limit above the memory+swap limit names both fields.
            let e = error_of(update_resources(
                &cg.paths,
                &resources(json!({"memory": {"limit": 33554432}})),
            ));
            assert!(e.contains("linux.resources.memory.limit") && e.contains("memory.swap"));
            // Unlimited memory lifts memory+swap too.
            let unlimited = json!({"memory": {"limit": -1}});
            update_resources(&cg.paths, &resources(unlimited)).unwrap();
            let max = cg.read("memory", "memory.limit_in_bytes");
            assert_eq!(cg.read("memory", "memory.memsw.limit_in_bytes"), max);
        }
        update_resources(&cg.paths, &resources(json!({"pids": {"limit": -1}}))).unwrap();
        assert_eq!(cg.read("pids", "pids.max"), "max");
        // cpu.shares out of the kernel's range is an error, not a silent clamp.
        let e = error_of(update_resources(
            &cg.paths,
            &resources(json!({"cpu": {"shares": 1}})),
        ));
        assert!(e.contains("linux.resources.cpu.shares"), "{e}");
    }

    #[test]
    fn v1_missing_controllers_are_errors_naming_the_field() {
        let Some(cg) = TestCgroup::new("missing") else {
            return;
        };
        let mut cases = vec![(
            json!({"unified": {"memory.high": "1"}}),
            "linux.resources.unified",
        )];
        if cg.dir("net_cls").is_none() {
            cases.push((
                json!({"network": {"classID": 1048577}}),
                "linux.resources.network.classID",
            ));
        }
        if cg.dir("net_prio").is_none() {
            cases.push((
                json!({"network": {"priorities": [{"name": "lo", "priority": 1}]}}),
                "linux.resources.network.priorities",
            ));
        }
        if cg.dir("hugetlb").is_none() && !hugepage_sizes().is_empty() {
            let size = hugepage_sizes()[0].clone();
            cases.push((
                json!({"hugepageLimits": [{"pageSize": size, "limit": 2097152}]}),
                "linux.resources.hugepageLimits",
            ));
        }
        if cg.dir("rdma").is_none() {
            cases.push((
                json!({"rdma": {"mlx5_0": {"hcaHandles": 1}}}),
                "linux.resources.rdma",
            ));
        }
        for (json, field) in cases {
            let e = error_of(apply_resources(&cg.paths, &resources(json)));
            assert!(e.starts_with(field), "{e:?} does not start with {field:?}");
            eprintln!("as expected on this host: {e}");
        }
        // Fields runc ignores where the kernel lacks them do not fail.
        let ignored = json!({"blockIO": {"leafWeight": 500}, "memory": {"kernel": 1048576}});
        apply_resources(&cg.paths, &resources(ignored)).unwrap();
    }

    #[test]
    fn v1_optional_controllers_when_mounted() {
        let Some(cg) = TestCgroup::new("optional") else {
            return;
        };
        if cg.dir("net_cls").is_some() {
            let r = resources(json!({"network": {"classID": 1048577}}));
            apply_resources(&cg.paths, &r).unwrap();
            assert_eq!(cg.read("net_cls", "net_cls.classid"), "1048577");
        } else {
            eprintln!("note: net_cls is not mounted here: classID not applied");
        }
        if cg.dir("net_prio").is_some() {
            let r = resources(json!({"network": {"priorities": [{"name": "lo", "priority": 5}]}}));
            apply_resources(&cg.paths, &r).unwrap();
            assert!(cg.read("net_prio", "net_prio.ifpriomap").contains("lo 5"));
        } else {
            eprintln!("note: net_prio is not mounted here: priorities not applied");
        }
        if let (Some(_), Some(size)) = (cg.dir("hugetlb"), hugepage_sizes().first().cloned()) {
            let r = resources(json!({"hugepageLimits": [{"pageSize": size, "limit": 4194304}]}));
            apply_resources(&cg.paths, &r).unwrap();
            assert_eq!(
                cg.read("hugetlb", &format!("hugetlb.{size}.limit_in_bytes")),
                "4194304"
            );
        } else {
            eprintln!("note: hugetlb is not mounted as v1 here: hugepageLimits not applied");
        }
        if cg.dir("rdma").is_none() {
            eprintln!("note: rdma is not mounted here: rdma not applied");
        }
        // BFQ per-device weights only take on devices BFQ schedules.
        if let (Some((major, minor)), Some(dir)) = (root_disk(), cg.dir("blkio")) {
            let r = resources(json!({"blockIO": {"weightDevice": [
                {"major": major, "minor": minor, "weight": 200}]}}));
            match apply_resources(&cg.paths, &r) {
                Ok(()) => {
                    let file = if dir.join("blkio.weight_device").exists() {
                        "blkio.weight_device"
                    } else {
                        "blkio.bfq.weight_device"
                    };
                    assert!(cg
                        .read("blkio", file)
                        .contains(&format!("{major}:{minor} 200")));
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    assert!(e.starts_with("linux.resources.blockIO.weightDevice[0].weight"));
                    eprintln!("note: the root disk's scheduler takes no weights: {e}");
                }
            }
        }
    }

    fn fork_until_refused(_: usize) -> i32 {
        let mut forked = [0i32; 16];
        let mut count = 0;
        for slot in forked.iter_mut() {
            // SAFETY: raw fork in a forked child; the grandchild only pauses.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: pause and _exit are async-signal-safe.
                unsafe {
                    libc::pause();
                    libc::_exit(0);
                }
            }
            if pid < 0 {
                break;
            }
            *slot = pid;
            count += 1;
        }
        for &pid in &forked[..count as usize] {
            // SAFETY: killing and reaping our own children.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        count
    }

    #[test]
    fn v1_pids_limit_stops_forks() {
        let Some(mut cg) = TestCgroup::new("pids") else {
            return;
        };
        apply_resources(&cg.paths, &resources(json!({"pids": {"limit": 5}}))).unwrap();
        let child = cg.spawn(fork_until_refused, 0);
        let status = cg.wait(child);
        assert!(libc::WIFEXITED(status));
        // The child itself is one of the five.
        assert_eq!(libc::WEXITSTATUS(status), 4);
        // The refused forks were counted.
        assert_ne!(cg.read("pids", "pids.events"), "max 0");
    }

    fn allocate_100m(_: usize) -> i32 {
        const SIZE: usize = 100 << 20;
        // SAFETY: a fresh private anonymous mapping, written only within its bounds.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return 2;
            }
            let bytes = p.cast::<u8>();
            let mut i = 0;
            while i < SIZE {
                bytes.add(i).write_volatile(1);
                i += 4096;
            }
        }
        0
    }

    #[test]
    fn v1_memory_limit_oom_kills() {
        let Some(mut cg) = TestCgroup::new("oom") else {
            return;
        };
        let r = resources(json!({"memory": {"limit": 33554432, "swap": 33554432}}));
        let r = if cg
            .dir("memory")
            .unwrap()
            .join("memory.memsw.limit_in_bytes")
            .exists()
        {
            r
        } else {
            resources(json!({"memory": {"limit": 33554432}}))
        };
        apply_resources(&cg.paths, &r).unwrap();
        assert_eq!(oom_kill_count(&cg.paths).unwrap(), 0);
        let child = cg.spawn(allocate_100m, 0);
        let status = cg.wait(child);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "the child was not OOM-killed (status {status:#x})"
        );
        assert!(oom_kill_count(&cg.paths).unwrap() >= 1);
        let data = stats(&cg.paths).unwrap();
        assert_eq!(data["memory"]["usage"]["limit"], 33554432);
        // The peak reached the limit (failcnt is no longer counted by recent kernels).
        assert_eq!(data["memory"]["usage"]["max"], 33554432);
    }

    fn count_forever(counter: usize) -> i32 {
        let counter = counter as *const std::sync::atomic::AtomicU64;
        loop {
            // SAFETY: `counter` points into a shared mapping that outlives this child.
            unsafe { &*counter }.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn v1_freeze_stops_and_thaw_resumes() {
        let Some(mut cg) = TestCgroup::new("freeze") else {
            return;
        };
        use std::sync::atomic::{AtomicU64, Ordering};
        // SAFETY: a fresh shared anonymous page, unmapped at the end of this test.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        // SAFETY: the page is zeroed, aligned, and lives until the munmap below.
        let counter = unsafe { &*page.cast::<AtomicU64>() };
        let _child = cg.spawn(count_forever, page as usize);
        let progressed = |from: u64| {
            wait_until(Duration::from_secs(5), || {
                Ok(counter.load(Ordering::Relaxed) > from)
            })
            .unwrap()
        };
        assert!(progressed(0), "the child never ran");
        freeze(&cg.paths).unwrap();
        assert_eq!(cg.read("freezer", "freezer.state"), "FROZEN");
        assert!(cg.paths.is_frozen());
        let frozen_at = counter.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            counter.load(Ordering::Relaxed),
            frozen_at,
            "a frozen child ran"
        );
        // Stats read fine while frozen.
        let data = stats(&cg.paths).unwrap();
        assert!(data["cpu"]["usage"]["total"].as_u64().unwrap() > 0);
        assert_eq!(data["pids"]["current"], 1);
        thaw(&cg.paths).unwrap();
        assert_eq!(cg.read("freezer", "freezer.state"), "THAWED");
        assert!(progressed(frozen_at), "the thawed child did not resume");
        drop(cg);
        // SAFETY: the child is dead (TestCgroup's drop), so nobody uses the page any more.
        unsafe { libc::munmap(page, 4096) };
    }

    fn burn_then_pause(_: usize) -> i32 {
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        // SAFETY: pause is async-signal-safe; the test kills us.
        unsafe { libc::pause() };
        (x & 1) as i32
    }

    #[test]
    fn v1_stats_have_runc_shape() {
        let Some(mut cg) = TestCgroup::new("stats") else {
            return;
        };
        let r = resources(json!({"memory": {"limit": 67108864}, "pids": {"limit": 10}}));
        apply_resources(&cg.paths, &r).unwrap();
        let _child = cg.spawn(burn_then_pause, 0);
        // Until the child has run a little, cpu usage may still be 0.
        wait_until(Duration::from_secs(5), || {
            Ok(cg.read("cpuacct", "cpuacct.usage") != "0")
        })
        .unwrap();
        let data = stats(&cg.paths).unwrap();
        for key in [
            "cpu",
            "cpuset",
            "memory",
            "pids",
            "blkio",
            "hugetlb",
            "intel_rdt",
        ] {
            assert!(data[key].is_object(), "{key} missing: {data}");
        }
        assert!(data["cpu"]["usage"]["kernel"].is_u64());
        assert!(data["cpu"]["usage"]["user"].is_u64());
        assert!(data["cpu"]["usage"]["percpu"].is_array());
        assert_eq!(data["memory"]["usage"]["limit"], 67108864);
        assert!(data["memory"]["raw"]["total_rss"].is_u64());
        assert!(data["memory"]["swap"]["limit"].is_u64());
        assert_eq!(data["pids"]["limit"], 10);
        assert!(data["pids"]["current"].as_u64().unwrap() >= 1);
        assert_eq!(
            data["cpuset"]["cpus"].as_array().map(Vec::is_empty),
            Some(false)
        );
        assert!(data.get("network_interfaces").is_some());
        eprintln!("stats: {data}");
    }
}
