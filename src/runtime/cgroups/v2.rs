//! cgroup v2 files: one tree, controllers enabled per subtree through `cgroup.subtree_control`,
//! "max" for "no limit", and several values per file (`cpu.max`, `io.max`).

use super::resources::{
    blkio_entry, cpu_weight_from_shares, debug_ignored, device_number, flat_keyed, hugepage_sizes,
    hugetlb_entry, io_weight_from_blkio, memory_entry, nonzero_i, nonzero_u, parse_cpu_list,
    put_nonzero, read_number, read_optional, read_string, wait_until, write_error,
    write_interdependent, write_raw, write_value, Mode, FREEZE_TIMEOUT,
};
use crate::runtime::log;
use anyhow::{bail, Context, Result};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// Enables, in every ancestor of `dir` from the mount point down, all the controllers the
/// ancestor has, so that `dir` can be limited. runc and crun do the same on v2 hosts.
pub(super) fn enable_controllers(mount_point: &Path, dir: &Path) -> Result<()> {
    let rel = dir.strip_prefix(mount_point).with_context(|| {
        format!(
            "cgroup {} is not below its mount point {}",
            dir.display(),
            mount_point.display()
        )
    })?;
    let mut ancestor = mount_point.to_path_buf();
    for component in rel.components() {
        enable_for_children(&ancestor);
        ancestor.push(component);
    }
    Ok(())
}

fn enable_for_children(dir: &Path) {
    let words = |file: &str| -> Vec<String> {
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let enabled = words("cgroup.subtree_control");
    let missing: Vec<String> = words("cgroup.controllers")
        .into_iter()
        .filter(|c| !enabled.contains(c))
        .collect();
    if missing.is_empty() {
        return;
    }
    let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    if write_raw(dir, "cgroup.subtree_control", &all.join(" ")).is_ok() {
        return;
    }
    // One at a time: a controller that cannot be enabled here (a threaded subtree, or a
    // parent holding processes) must not keep the others off. A limit that needs it fails
    // later, naming its field.
    for c in missing {
        if let Err(e) = write_raw(dir, "cgroup.subtree_control", &format!("+{c}")) {
            log::debug(&format!(
                "cannot enable the {c} controller in {}: {e}",
                dir.display()
            ));
        }
    }
}

/// memory.swap.max for the spec's memory+swap total `swap` and memory `limit` (both already
/// stripped of the "not set" zero). `None`: leave it alone.
pub(super) fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>> {
    const FIELD: &str = "linux.resources.memory.swap";
    Ok(match (limit, swap) {
        // "No memory limit" without a word on swap means no swap limit either, as on v1.
        (Some(-1), None) => Some("max".into()),
        (_, None) => None,
        (_, Some(-1)) => Some("max".into()),
        (None | Some(-1), Some(_)) => {
            bail!("{FIELD}: a swap limit on cgroup v2 needs memory.limit too (v2 limits swap alone, berth gives it swap - limit)")
        }
        (Some(l), Some(s)) if s < l => {
            bail!("{FIELD}: {s} is below memory.limit {l} (swap is the memory+swap total)")
        }
        (Some(l), Some(s)) => Some((s - l).to_string()),
    })
}

fn limit_text(v: i64) -> String {
    if v == -1 {
        "max".into()
    } else {
        v.to_string()
    }
}

pub(super) fn set_memory(dir: &Path, m: &LinuxMemory, mode: Mode) -> Result<()> {
    let limit = nonzero_i(m.limit());
    if let Some(value) = swap_max(limit, nonzero_i(m.swap()))? {
        match write_raw(dir, "memory.swap.max", &value) {
            Ok(()) => {}
            // Without swap accounting there is no swap to lift a limit from or to forbid.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && (value == "max" || value == "0") =>
            {
                debug_ignored(
                    "linux.resources.memory.swap",
                    "this kernel does not account swap",
                )
            }
            Err(e) => {
                return Err(write_error(
                    e,
                    dir,
                    "memory.swap.max",
                    &value,
                    "linux.resources.memory.swap",
                ))
            }
        }
    }
    if let Some(l) = limit {
        // A v2 limit below the usage makes the kernel reclaim and then OOM-kill rather than
        // refuse, which is what checkBeforeUpdate is there to prevent.
        if mode == Mode::Update && m.check_before_update() == Some(true) && l > 0 {
            let usage = read_number(dir, "memory.current")?;
            if (l as u64) < usage {
                bail!("linux.resources.memory.limit: {l} is below the current usage of {usage} bytes (checkBeforeUpdate)");
            }
        }
        write_value(
            dir,
            "memory.max",
            &limit_text(l),
            "linux.resources.memory.limit",
        )?;
    }
    if let Some(r) = nonzero_i(m.reservation()) {
        write_value(
            dir,
            "memory.low",
            &limit_text(r),
            "linux.resources.memory.reservation",
        )?;
    }
    if nonzero_i(m.kernel()).is_some() {
        debug_ignored(
            "linux.resources.memory.kernel",
            "cgroup v2 counts kernel memory in memory.max",
        );
    }
    if nonzero_i(m.kernel_tcp()).is_some() {
        debug_ignored(
            "linux.resources.memory.kernelTCP",
            "cgroup v2 counts socket memory in memory.max",
        );
    }
    if m.swappiness().is_some() {
        debug_ignored(
            "linux.resources.memory.swappiness",
            "cgroup v2 has no per-cgroup swappiness",
        );
    }
    if m.disable_oom_killer() == Some(true) {
        debug_ignored(
            "linux.resources.memory.disableOOMKiller",
            "cgroup v2 cannot disable the OOM killer",
        );
    }
    Ok(())
}

pub(super) fn set_cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    const IDLE: &str = "linux.resources.cpu.idle";
    // As on v1, an idle cgroup refuses weights: leave idle first, enter it last.
    let idle = c.idle();
    if idle == Some(0) && dir.join("cpu.idle").exists() {
        write_value(dir, "cpu.idle", "0", IDLE)?;
    }
    if let Some(shares) = nonzero_u(c.shares()) {
        write_value(
            dir,
            "cpu.weight",
            &cpu_weight_from_shares(shares).to_string(),
            "linux.resources.cpu.shares",
        )?;
    }
    let quota = nonzero_i(c.quota());
    let period = nonzero_u(c.period());
    let mut bandwidth = Vec::new();
    if quota.is_some() || period.is_some() {
        let quota_text = match quota {
            Some(q) if q > 0 => q.to_string(),
            Some(_) => "max".to_string(),
            // Only the period changes: keep the quota (runc would reset it to "max").
            None => read_optional(dir, "cpu.max")?
                .and_then(|t| t.split_whitespace().next().map(str::to_string))
                .unwrap_or_else(|| "max".to_string()),
        };
        let value = match period {
            Some(p) => format!("{quota_text} {p}"),
            None => quota_text,
        };
        let field = if quota.is_some() {
            "linux.resources.cpu.quota"
        } else {
            "linux.resources.cpu.period"
        };
        bandwidth.push(("cpu.max", value, field));
    }
    if let Some(b) = c.burst() {
        bandwidth.push(("cpu.max.burst", b.to_string(), "linux.resources.cpu.burst"));
    }
    write_interdependent(dir, &bandwidth)?;
    if nonzero_i(c.realtime_runtime()).is_some() || nonzero_u(c.realtime_period()).is_some() {
        let field = if nonzero_i(c.realtime_runtime()).is_some() {
            "realtimeRuntime"
        } else {
            "realtimePeriod"
        };
        bail!("linux.resources.cpu.{field}: cgroup v2 has no real-time group scheduling");
    }
    if let Some(i) = idle.filter(|&i| i != 0) {
        write_value(dir, "cpu.idle", &i.to_string(), IDLE)?;
    }
    Ok(())
}

pub(super) fn set_io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // BFQ's io.bfq.weight takes the v1 range (1..=1000) as is; io.weight (io.cost) has
    // 1..=10000 and gets the converted value.
    let bfq = dir.join("io.bfq.weight").exists();
    let weight_text = |w: u16| {
        if bfq {
            w.to_string()
        } else {
            io_weight_from_blkio(w).to_string()
        }
    };
    let weight_file = if bfq { "io.bfq.weight" } else { "io.weight" };
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        const FIELD: &str = "linux.resources.blockIO.weight";
        if !dir.join(weight_file).exists() {
            bail!("{FIELD}: neither io.bfq.weight nor io.weight exists in {} (no BFQ scheduler and no io.cost)", dir.display());
        }
        write_value(dir, weight_file, &weight_text(w), FIELD)?;
    }
    if b.leaf_weight().is_some_and(|w| w != 0)
        || b.weight_device()
            .iter()
            .flatten()
            .any(|d| d.leaf_weight().is_some())
    {
        debug_ignored(
            "linux.resources.blockIO.leafWeight",
            "cgroup v2 has no leaf weights",
        );
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        let field = format!("linux.resources.blockIO.weightDevice[{i}]");
        let device = device_number(d.major(), d.minor(), &field)?;
        if let Some(w) = d.weight() {
            write_value(
                dir,
                weight_file,
                &format!("{device} {}", weight_text(w)),
                &format!("{field}.weight"),
            )?;
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "rbps",
            "throttleReadBpsDevice",
        ),
        (
            b.throttle_write_bps_device(),
            "wbps",
            "throttleWriteBpsDevice",
        ),
        (
            b.throttle_read_iops_device(),
            "riops",
            "throttleReadIOPSDevice",
        ),
        (
            b.throttle_write_iops_device(),
            "wiops",
            "throttleWriteIOPSDevice",
        ),
    ];
    for (list, key, name) in throttles {
        for (i, t) in list.iter().flatten().enumerate() {
            let field = format!("linux.resources.blockIO.{name}[{i}]");
            let device = device_number(t.major(), t.minor(), &field)?;
            // 0 lifts the limit, as writing 0 does on v1.
            let rate = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            write_value(dir, "io.max", &format!("{device} {key}={rate}"), &field)?;
        }
    }
    Ok(())
}

pub(super) fn set_hugepages(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for (i, l) in limits.iter().enumerate() {
        let field = format!("linux.resources.hugepageLimits[{i}].limit");
        let size = l.page_size();
        let value = limit_text(l.limit());
        write_value(dir, &format!("hugetlb.{size}.max"), &value, &field)?;
        let rsvd = format!("hugetlb.{size}.rsvd.max");
        if dir.join(&rsvd).exists() {
            write_value(dir, &rsvd, &value, &field)?;
        }
    }
    Ok(())
}

/// Raw `linux.resources.unified` settings: each key a file of the container's cgroup.
pub(super) fn set_unified(dir: &Path, unified: &HashMap<String, String>) -> Result<()> {
    let mut entries: Vec<_> = unified.iter().collect();
    entries.sort();
    for (key, value) in entries {
        let field = format!("linux.resources.unified.{key}");
        if key.is_empty() || key.contains('/') || key.contains("..") || !key.contains('.') {
            bail!("linux.resources.unified: {key:?} is not a cgroup file name (\"controller.setting\", no '/' or '..')");
        }
        match write_raw(dir, key, value) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let controller = key.split('.').next().unwrap_or_default();
                let enabled = read_optional(dir, "cgroup.controllers")?.unwrap_or_default();
                if controller != "cgroup" && !enabled.split_whitespace().any(|c| c == controller) {
                    bail!("{field}: the {controller} controller is not enabled in this cgroup");
                }
                bail!("{field}: this kernel has no cgroup file {key:?}");
            }
            Err(e) => return Err(write_error(e, dir, key, value, &field)),
        }
    }
    Ok(())
}

/// Writes cgroup.freeze and waits for cgroup.events to report the new state.
pub(super) fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    let (value, verb) = if frozen {
        ("1", "pause")
    } else {
        ("0", "resume")
    };
    write_value(dir, "cgroup.freeze", value, "cgroup.freeze")
        .with_context(|| format!("cannot {verb} the container"))?;
    let want = u64::from(frozen);
    let reached = wait_until(FREEZE_TIMEOUT, || {
        let events = flat_keyed(&read_string(dir, "cgroup.events")?);
        Ok(events.get("frozen").copied() == Some(want))
    })?;
    if !reached {
        if frozen {
            let _ = write_raw(dir, "cgroup.freeze", "0");
        }
        bail!(
            "cannot {verb} the container: {} did not report frozen {want} within {}s",
            dir.display(),
            FREEZE_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

// ---- statistics ----

pub(super) fn stats(dir: &Path, data: &mut Value) -> Result<()> {
    // cpu.stat's usage lines exist without the cpu controller; the throttling ones with it.
    let cpu = flat_keyed(&read_optional(dir, "cpu.stat")?.unwrap_or_default());
    let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
    let mut usage = Map::new();
    put_nonzero(&mut usage, "total", us("usage_usec"));
    usage.insert("kernel".into(), json!(us("system_usec")));
    usage.insert("user".into(), json!(us("user_usec")));
    data["cpu"]["usage"] = Value::Object(usage);
    let mut throttling = Map::new();
    put_nonzero(
        &mut throttling,
        "periods",
        cpu.get("nr_periods").copied().unwrap_or(0),
    );
    put_nonzero(
        &mut throttling,
        "throttledPeriods",
        cpu.get("nr_throttled").copied().unwrap_or(0),
    );
    put_nonzero(&mut throttling, "throttledTime", us("throttled_usec"));
    data["cpu"]["throttling"] = Value::Object(throttling);

    for (key, file) in [
        ("cpus", "cpuset.cpus.effective"),
        ("mems", "cpuset.mems.effective"),
    ] {
        let list = parse_cpu_list(&read_optional(dir, file)?.unwrap_or_default());
        if !list.is_empty() {
            data["cpuset"][key] = json!(list);
        }
    }

    if dir.join("memory.current").exists() {
        data["memory"] = memory_stats(dir)?;
    }

    if dir.join("pids.current").exists() {
        let mut p = Map::new();
        put_nonzero(&mut p, "current", read_number(dir, "pids.current")?);
        let limit = read_number(dir, "pids.max")?;
        put_nonzero(&mut p, "limit", if limit == u64::MAX { 0 } else { limit });
        data["pids"] = Value::Object(p);
    }

    if let Some(text) = read_optional(dir, "io.stat")? {
        data["blkio"] = io_stats(&text);
    }

    let mut hugetlb = Map::new();
    for size in hugepage_sizes() {
        let current = format!("hugetlb.{size}.current");
        if !dir.join(&current).exists() {
            continue;
        }
        let events =
            flat_keyed(&read_optional(dir, &format!("hugetlb.{size}.events"))?.unwrap_or_default());
        let entry = hugetlb_entry(
            read_number(dir, &current)?,
            0,
            events.get("max").copied().unwrap_or(0),
        );
        hugetlb.insert(size, entry);
    }
    if !hugetlb.is_empty() {
        data["hugetlb"] = Value::Object(hugetlb);
    }
    Ok(())
}

fn memory_stats(dir: &Path) -> Result<Value> {
    let raw = flat_keyed(&read_optional(dir, "memory.stat")?.unwrap_or_default());
    let events = |file: &str| -> Result<u64> {
        let e = flat_keyed(&read_optional(dir, file)?.unwrap_or_default());
        Ok(e.get("max").copied().unwrap_or(0))
    };
    let usage = read_number(dir, "memory.current")?;
    let peak = read_number(dir, "memory.peak")?;
    let limit = read_number(dir, "memory.max")?;
    let mut m = Map::new();
    put_nonzero(&mut m, "cache", raw.get("file").copied().unwrap_or(0));
    m.insert(
        "usage".into(),
        memory_entry(limit, usage, peak, events("memory.events")?),
    );
    // v1's "swap" is memory+swap; runc reports v2 the same way so that consumers need not
    // care which version they read.
    if dir.join("memory.swap.current").exists() {
        let swap_limit = read_number(dir, "memory.swap.max")?;
        let total_limit = if swap_limit == u64::MAX || limit == u64::MAX {
            u64::MAX
        } else {
            swap_limit + limit
        };
        let swap_peak = read_number(dir, "memory.swap.peak")?;
        m.insert(
            "swap".into(),
            memory_entry(
                total_limit,
                read_number(dir, "memory.swap.current")? + usage,
                if swap_peak == 0 { 0 } else { swap_peak + peak },
                events("memory.swap.events")?,
            ),
        );
    } else {
        m.insert("swap".into(), memory_entry(0, 0, 0, 0));
    }
    m.insert("kernel".into(), memory_entry(0, 0, 0, 0));
    m.insert("kernelTCP".into(), memory_entry(0, 0, 0, 0));
    if !raw.is_empty() {
        m.insert("raw".into(), json!(raw));
    }
    Ok(Value::Object(m))
}

/// io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...") as v1-style Read/Write entries.
fn io_stats(text: &str) -> Value {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse::<u64>(), minor.parse::<u64>()) else {
            continue;
        };
        for kv in fields {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            match k {
                "rbytes" => bytes.push(blkio_entry(major, minor, "Read", v)),
                "wbytes" => bytes.push(blkio_entry(major, minor, "Write", v)),
                "rios" => ios.push(blkio_entry(major, minor, "Read", v)),
                "wios" => ios.push(blkio_entry(major, minor, "Write", v)),
                _ => {}
            }
        }
    }
    let mut b = Map::new();
    if !bytes.is_empty() {
        b.insert("ioServiceBytesRecursive".into(), Value::Array(bytes));
    }
    if !ios.is_empty() {
        b.insert("ioServicedRecursive".into(), Value::Array(ios));
    }
    Value::Object(b)
}

#[cfg(test)]
mod tests {
    //! v2 cannot be enabled on a hybrid host, so these write into a temporary directory laid
    //! out like a cgroup2 one and check the files and the order of the writes.
    use super::super::resources::test_support::{error_of, resources};
    use super::super::resources::{empty_stats, ControllerDirs, Mode, UnifiedDir, WRITES};
    use super::*;
    use anyhow::Result;
    use oci_spec::runtime::LinuxResources;
    use std::path::PathBuf;

    // ---- cgroup v2, in a temporary directory laid out like cgroup2 ----

    /// A cgroup2-like tree under /tmp: root and berth/ with cgroup.controllers and
    /// cgroup.subtree_control, and the container's leaf berth/c with the interface files a
    /// real leaf has. Removed on drop.
    struct FakeV2 {
        root: PathBuf,
        leaf: PathBuf,
    }

    const FAKE_V2_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids rdma misc";

    impl FakeV2 {
        fn new(name: &str, with_bfq: bool) -> FakeV2 {
            let root = std::env::temp_dir()
                .join(format!("berth-fake-cgroup2-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            let leaf = root.join("berth/c");
            std::fs::create_dir_all(&leaf).unwrap();
            for dir in [root.clone(), root.join("berth")] {
                std::fs::write(dir.join("cgroup.controllers"), FAKE_V2_CONTROLLERS).unwrap();
                std::fs::write(dir.join("cgroup.subtree_control"), "").unwrap();
            }
            std::fs::write(leaf.join("cgroup.controllers"), FAKE_V2_CONTROLLERS).unwrap();
            let mut files = vec![
                "cgroup.freeze",
                "cgroup.subtree_control",
                "cpu.weight",
                "cpu.max",
                "cpu.max.burst",
                "cpu.idle",
                "cpu.stat",
                "cpuset.cpus",
                "cpuset.mems",
                "io.weight",
                "io.max",
                "io.stat",
                "memory.max",
                "memory.low",
                "memory.high",
                "memory.swap.max",
                "memory.current",
                "memory.stat",
                "memory.events",
                "pids.max",
                "pids.current",
                "hugetlb.2MB.max",
                "hugetlb.2MB.rsvd.max",
                "hugetlb.1GB.max",
                "rdma.max",
            ];
            if with_bfq {
                files.push("io.bfq.weight");
            }
            for f in files {
                std::fs::write(leaf.join(f), "").unwrap();
            }
            std::fs::write(leaf.join("cpu.max"), "max 100000").unwrap();
            std::fs::write(leaf.join("cgroup.events"), "populated 0\nfrozen 1\n").unwrap();
            FakeV2 { root, leaf }
        }

        fn dirs(&self) -> ControllerDirs {
            ControllerDirs::new(
                Vec::new(),
                Some(UnifiedDir::new(self.leaf.clone(), self.root.clone())),
            )
        }

        fn read(&self, file: &str) -> String {
            std::fs::read_to_string(self.leaf.join(file)).unwrap()
        }

        fn apply(&self, r: &LinuxResources, mode: Mode) -> Result<()> {
            let mut dirs = self.dirs();
            if mode == Mode::Create {
                dirs.enable_v2_controllers()?;
            }
            dirs.set(r, mode)
        }
    }

    impl Drop for FakeV2 {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn take_writes() -> Vec<(String, String)> {
        WRITES.with(|w| {
            w.borrow_mut()
                .drain(..)
                .map(|(p, v)| (p.file_name().unwrap().to_string_lossy().into_owned(), v))
                .collect()
        })
    }

    #[test]
    fn v2_writes_every_field() {
        let fake = FakeV2::new("every-field", false);
        let r = resources(json!({
            "memory": {"limit": 67108864, "reservation": 33554432, "swap": 100663296,
                       "kernel": 1048576, "swappiness": 10, "disableOOMKiller": true},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 10000,
                    "cpus": "0-1", "mems": "0", "idle": 1},
            "blockIO": {"weight": 500,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 0}]},
            "pids": {"limit": 0},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 1000}},
            "network": {"classID": 1048577},
            "unified": {"memory.high": "50331648"}
        }));
        take_writes();
        fake.apply(&r, Mode::Create).unwrap();
        // The controllers were enabled for the ancestors, in one write each.
        for dir in [fake.root.clone(), fake.root.join("berth")] {
            let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap();
            assert_eq!(
                enabled,
                "+cpuset +cpu +io +memory +hugetlb +pids +rdma +misc"
            );
        }
        assert_eq!(fake.read("memory.max"), "67108864");
        assert_eq!(fake.read("memory.low"), "33554432");
        assert_eq!(fake.read("memory.swap.max"), "33554432");
        assert_eq!(fake.read("memory.high"), "50331648");
        assert_eq!(fake.read("cpu.weight"), "39");
        assert_eq!(fake.read("cpu.max"), "50000 100000");
        assert_eq!(fake.read("cpu.max.burst"), "10000");
        assert_eq!(fake.read("cpu.idle"), "1");
        assert_eq!(fake.read("cpuset.cpus"), "0-1");
        assert_eq!(fake.read("cpuset.mems"), "0");
        assert_eq!(fake.read("pids.max"), "max");
        assert_eq!(fake.read("hugetlb.2MB.max"), "4194304");
        assert_eq!(fake.read("hugetlb.2MB.rsvd.max"), "4194304");
        assert_eq!(fake.read("rdma.max"), "mlx5_0 hca_handle=3 hca_object=1000");
        let writes = take_writes();
        let to = |file: &str| -> Vec<String> {
            writes
                .iter()
                .filter(|(f, _)| f == file)
                .map(|(_, v)| v.clone())
                .collect()
        };
        // io.weight gets the converted weight, for the default and for the device.
        assert_eq!(to("io.weight"), ["4950", "8:0 10000"]);
        assert_eq!(to("io.max"), ["8:0 rbps=1048576", "8:16 wiops=max"]);
        // unified comes last, so it wins over what the structured fields wrote.
        assert_eq!(writes.last().unwrap().0, "memory.high");
        // Idle is entered after the weight, which an idle group refuses.
        let pos = |file: &str| writes.iter().position(|(f, _)| f == file).unwrap();
        assert!(pos("cpu.weight") < pos("cpu.idle"));
        // Swappiness, kernel memory, disableOOMKiller and network have no v2 file: no write.
        assert!(!writes
            .iter()
            .any(|(f, _)| f.contains("swappiness") || f.contains("net")));
    }

    #[test]
    fn v2_bfq_takes_the_v1_weight() {
        let fake = FakeV2::new("bfq", true);
        let r = resources(json!({"blockIO": {"weight": 500,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 200}]}}));
        take_writes();
        fake.apply(&r, Mode::Create).unwrap();
        let writes = take_writes();
        let bfq: Vec<&str> = writes
            .iter()
            .filter(|(f, _)| f == "io.bfq.weight")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(bfq, ["500", "8:0 200"]);
        assert!(!writes.iter().any(|(f, _)| f == "io.weight"));
    }

    #[test]
    fn v2_update_leaves_zeros_alone() {
        let fake = FakeV2::new("update", false);
        std::fs::write(fake.leaf.join("cpu.max"), "20000 100000").unwrap();
        std::fs::write(fake.leaf.join("pids.max"), "7").unwrap();
        take_writes();
        let r = resources(json!({
            "memory": {"limit": 0, "reservation": 0, "swap": 0},
            "cpu": {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""},
            "blockIO": {"weight": 0},
            "pids": {"limit": 0}
        }));
        fake.apply(&r, Mode::Update).unwrap();
        assert_eq!(take_writes(), Vec::<(String, String)>::new());
        // A new period alone keeps the quota.
        let r = resources(json!({"cpu": {"period": 50000}, "pids": {"limit": -1}}));
        fake.apply(&r, Mode::Update).unwrap();
        assert_eq!(fake.read("cpu.max"), "20000 50000");
        assert_eq!(fake.read("pids.max"), "max");
        // checkBeforeUpdate refuses a limit below the usage.
        std::fs::write(fake.leaf.join("memory.current"), "10485760").unwrap();
        let r = resources(json!({"memory": {"limit": 8388608, "checkBeforeUpdate": true}}));
        let e = error_of(fake.apply(&r, Mode::Update));
        assert!(e.contains("linux.resources.memory.limit") && e.contains("checkBeforeUpdate"));
        let r = resources(json!({"memory": {"limit": 16777216, "checkBeforeUpdate": true}}));
        fake.apply(&r, Mode::Update).unwrap();
        assert_eq!(fake.read("memory.max"), "16777216");
        let r = resources(json!({"memory": {"limit": -1}}));
        fake.apply(&r, Mode::Update).unwrap();
        assert_eq!(fake.read("memory.max"), "max");
        assert_eq!(fake.read("memory.swap.max"), "max");
    }

    #[test]
    fn v2_rejects_what_it_cannot_do() {
        let fake = FakeV2::new("reject", false);
        let check = |json: Value, needle: &str| {
            let e = error_of(fake.apply(&resources(json), Mode::Create));
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        };
        check(
            json!({"unified": {"../cpu.max": "1"}}),
            "linux.resources.unified",
        );
        check(
            json!({"unified": {"cpu/max": "1"}}),
            "linux.resources.unified",
        );
        check(
            json!({"unified": {"memory.nonesuch": "1"}}),
            "linux.resources.unified.memory.nonesuch: this kernel has no cgroup file",
        );
        check(
            json!({"unified": {"perf_event.x": "1"}}),
            "the perf_event controller is not enabled",
        );
        check(
            json!({"cpu": {"realtimeRuntime": 1000}}),
            "linux.resources.cpu.realtimeRuntime",
        );
        check(
            json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}),
            "linux.resources.hugepageLimits[0].pageSize",
        );
        check(
            json!({"devices": [{"allow": true, "type": "c", "major": 1, "access": "x"}]}),
            "linux.resources.devices[0].access",
        );
        // A controller the cgroup lacks: the error names the field.
        std::fs::write(fake.leaf.join("cgroup.controllers"), "cpu").unwrap();
        let dirs = fake.dirs();
        let e = error_of(dirs.set(&resources(json!({"pids": {"limit": 5}})), Mode::Create));
        assert!(e.contains("linux.resources.pids.limit: the pids controller is not enabled"));
        // ...but asking for "no limit" of a missing controller is no error.
        dirs.set(&resources(json!({"pids": {"limit": -1}})), Mode::Create)
            .unwrap();
    }

    #[test]
    fn v2_freeze_writes_cgroup_freeze() {
        let fake = FakeV2::new("freeze", false);
        freeze(&fake.leaf, true).unwrap();
        assert_eq!(fake.read("cgroup.freeze"), "1");
        std::fs::write(fake.leaf.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        freeze(&fake.leaf, false).unwrap();
        assert_eq!(fake.read("cgroup.freeze"), "0");
    }

    #[test]
    fn v2_stats_have_runc_shape() {
        let fake = FakeV2::new("stats", false);
        let w = |f: &str, v: &str| std::fs::write(fake.leaf.join(f), v).unwrap();
        w(
            "cpu.stat",
            "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 30\n",
        );
        w("memory.current", "4096");
        w("memory.max", "max");
        w("memory.stat", "anon 1024\nfile 2048\n");
        w("memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n");
        w("pids.current", "3");
        w("pids.max", "10");
        w(
            "io.stat",
            "254:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        );
        let mut data = empty_stats();
        stats(&fake.leaf, &mut data).unwrap();
        assert_eq!(data["cpu"]["usage"]["total"], 2_000_000);
        assert_eq!(data["cpu"]["usage"]["user"], 1_500_000);
        assert_eq!(data["cpu"]["usage"]["kernel"], 500_000);
        assert_eq!(data["cpu"]["throttling"]["throttledTime"], 30_000);
        assert_eq!(data["memory"]["usage"]["usage"], 4096);
        assert_eq!(data["memory"]["usage"]["limit"], u64::MAX);
        assert_eq!(data["memory"]["usage"]["failcnt"], 2);
        assert_eq!(data["memory"]["cache"], 2048);
        assert_eq!(data["memory"]["raw"]["anon"], 1024);
        assert_eq!(data["pids"], json!({"current": 3, "limit": 10}));
        assert_eq!(
            data["blkio"]["ioServiceBytesRecursive"],
            json!([{"major": 254, "op": "Read", "value": 4096}, {"major": 254, "op": "Write"}])
        );
        assert_eq!(data["network_interfaces"], Value::Null);
    }
}
