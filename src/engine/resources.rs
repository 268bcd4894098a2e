//! The resource flags of `container run|create|update` (`-m`, `--memory-swap`, `--cpus`,
//! `--cpu-shares`, `--cpuset-cpus`, `--blkio-weight`, `--device-read-bps`, `--pids-limit`, ...):
//! parsed with Docker's units and checked as Docker's client and daemon check them, with their
//! messages, then turned into the runtime spec's `linux.resources` as Docker does.
//!
//! Docker's adjustments are made too: a memory limit without `--memory-swap` allows as much
//! swap again (MemorySwap = 2 × Memory); `--cpus N` is a CFS quota of N × 100000 µs per
//! 100000 µs period; a limit the host's cgroups cannot apply is dropped with Docker's warning
//! (for the caller to print) rather than failing the container.

use anyhow::{anyhow, bail, Result};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources, LinuxThrottleDevice,
    LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder, Spec,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Docker's resource flags of `run`, `create` and `update`, as typed (they are parsed and
/// checked by [`to_linux_resources`], which names the flag in its errors).
#[derive(clap::Args, Serialize, Deserialize, Clone, Default, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct ResourceFlags {
    /// Memory limit
    #[arg(short = 'm', long = "memory", value_name = "bytes")]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "bytes", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_name = "bytes")]
    pub memory_reservation: Option<String>,
    /// Tune container memory swappiness (0 to 100)
    #[arg(
        long = "memory-swappiness",
        value_name = "int",
        allow_hyphen_values = true
    )]
    pub memory_swappiness: Option<String>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Number of CPUs
    #[arg(long = "cpus", value_name = "decimal")]
    pub cpus: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", value_name = "int", allow_hyphen_values = true)]
    pub cpu_period: Option<String>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", value_name = "int", allow_hyphen_values = true)]
    pub cpu_quota: Option<String>,
    /// CPU shares (relative weight)
    #[arg(
        short = 'c',
        long = "cpu-shares",
        value_name = "int",
        allow_hyphen_values = true
    )]
    pub cpu_shares: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "string")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "string")]
    pub cpuset_mems: Option<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)
    #[arg(long = "blkio-weight", value_name = "uint16")]
    pub blkio_weight: Option<String>,
    /// Block IO weight (relative device weight)
    #[arg(long = "blkio-weight-device", value_name = "list")]
    pub blkio_weight_device: Vec<String>,
    /// Limit read rate (bytes per second) from a device
    #[arg(long = "device-read-bps", value_name = "list")]
    pub device_read_bps: Vec<String>,
    /// Limit write rate (bytes per second) to a device
    #[arg(long = "device-write-bps", value_name = "list")]
    pub device_write_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device
    #[arg(long = "device-read-iops", value_name = "list")]
    pub device_read_iops: Vec<String>,
    /// Limit write rate (IO per second) to a device
    #[arg(long = "device-write-iops", value_name = "list")]
    pub device_write_iops: Vec<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", value_name = "int", allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
}

/// The flags parsed: Docker's `Resources` fields, with Docker's zero values for "not set".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: bool,
    pub nano_cpus: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub blkio_weight: u16,
    pub blkio_weight_device: Vec<(String, u16)>,
    pub device_read_bps: Vec<(String, u64)>,
    pub device_write_bps: Vec<(String, u64)>,
    pub device_read_iops: Vec<(String, u64)>,
    pub device_write_iops: Vec<(String, u64)>,
    pub pids_limit: Option<i64>,
}

/// Docker's smallest memory limit and reservation (6 MiB).
const MIN_MEMORY: i64 = 6 * 1024 * 1024;
const MIN_CPU_SHARES: i64 = 2;
const MAX_CPU_SHARES: i64 = 262144;

/// The way pflag names a flag in its errors: `-m, --memory` when it has a short form.
fn flag_name(long: &str) -> String {
    match long {
        "--memory" => "-m, --memory".into(),
        "--cpu-shares" => "-c, --cpu-shares".into(),
        other => other.into(),
    }
}

/// Docker's error for a bad flag value (its command-line parser's wording).
fn bad_flag(long: &str, value: &str, reason: impl std::fmt::Display) -> anyhow::Error {
    anyhow!(
        "invalid argument {value:?} for \"{}\" flag: {reason}",
        flag_name(long)
    )
}

/// Parses a size as Docker's `RAMInBytes`: a number (decimals allowed) with an optional
/// binary suffix `b`, `k`, `m`, `g`, `t`, `p` (any case, with an optional `b` or `ib`
/// after it): `512m`, `1.5g`, `64KiB`, `100`.
pub fn parse_bytes(s: &str) -> Result<u64> {
    let size = ram_in_bytes(s).map_err(|e| anyhow!(e))?;
    Ok(size as u64)
}

/// go-units' RAMInBytes, with its error texts.
fn ram_in_bytes(text: &str) -> std::result::Result<i64, String> {
    let Some(sep) = text.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
        return Err(format!("invalid size: '{text}'"));
    };
    let (number, suffix) = if text.as_bytes()[sep] == b' ' {
        (&text[..sep], &text[sep + 1..])
    } else {
        (&text[..sep + 1], &text[sep + 1..])
    };
    let size: f64 = parse_go_float(number)?;
    if size < 0.0 {
        return Err(format!("invalid size: '{text}'"));
    }
    let bad_suffix = |s: &str| format!("invalid suffix: '{s}'");
    let multiplier: f64 = if suffix.is_empty() {
        1.0
    } else {
        if suffix.len() > 3 {
            return Err(bad_suffix(suffix));
        }
        let lower = suffix.to_lowercase();
        let mut chars = lower.chars();
        let first = chars.next().unwrap_or('b');
        let rest: String = chars.collect();
        if first == 'b' {
            if !rest.is_empty() {
                return Err(bad_suffix(&lower));
            }
            1.0
        } else {
            let power = match first {
                'k' => 1,
                'm' => 2,
                'g' => 3,
                't' => 4,
                'p' => 5,
                _ => return Err(bad_suffix(&lower)),
            };
            if !(rest.is_empty() || rest == "b" || rest == "ib") {
                return Err(bad_suffix(&lower));
            }
            1024f64.powi(power)
        }
    };
    let bytes = size * multiplier;
    if bytes >= i64::MAX as f64 {
        return Err(format!("invalid size: '{text}'"));
    }
    Ok(bytes as i64)
}

/// Go's strconv.ParseFloat for the decimal forms, with its error text.
fn parse_go_float(text: &str) -> std::result::Result<f64, String> {
    let plain = !text.is_empty()
        && text
            .trim_start_matches(['+', '-'])
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    match text.parse::<f64>() {
        Ok(v) if plain => Ok(v),
        _ => Err(format!(
            "strconv.ParseFloat: parsing {text:?}: invalid syntax"
        )),
    }
}

/// Go's strconv.ParseInt (base 10, 64 bits), with its error text.
fn parse_go_int(text: &str) -> std::result::Result<i64, String> {
    text.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        format!("strconv.ParseInt: parsing {text:?}: {why}")
    })
}

/// Go's strconv.ParseUint for a uint16 flag, with its error text.
fn parse_go_u16(text: &str) -> std::result::Result<u16, String> {
    match text.parse::<u64>() {
        Ok(v) => u16::try_from(v)
            .map_err(|_| format!("strconv.ParseUint: parsing {text:?}: value out of range")),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Err(format!(
            "strconv.ParseUint: parsing {text:?}: value out of range"
        )),
        Err(_) => Err(format!(
            "strconv.ParseUint: parsing {text:?}: invalid syntax"
        )),
    }
}

/// `--cpus`: a decimal number of CPUs as an exact count of billionths (Docker's NanoCPUs).
fn parse_nano_cpus(text: &str) -> std::result::Result<i64, String> {
    let not_rational = || format!("failed to parse {text} as a rational number");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if (whole.is_empty() && fraction.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(not_rational());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 9 {
        return Err("value is too precise".into());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| not_rational())?
    };
    let fraction_nanos: i64 = format!("{fraction:0<9}")
        .parse()
        .map_err(|_| not_rational())?;
    let nanos = whole
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(fraction_nanos))
        .ok_or_else(not_rational)?;
    Ok(if negative { -nanos } else { nanos })
}

/// `DEVICE:VALUE` of the per-device flags; Docker wants the device under /dev.
fn split_device<'a>(flag: &str, text: &'a str) -> Result<(&'a str, &'a str)> {
    match text.split_once(':') {
        Some((path, value)) if !path.is_empty() => {
            if !path.starts_with("/dev/") {
                return Err(bad_flag(
                    flag,
                    text,
                    format!("bad format for device path: {text}"),
                ));
            }
            Ok((path, value))
        }
        _ => Err(bad_flag(flag, text, format!("bad format: {text}"))),
    }
}

impl ResourceFlags {
    /// Parses every flag (Docker's client-side parsing and checks).
    pub fn parse(&self) -> Result<Resources> {
        let bytes = |flag: &str, v: &Option<String>| -> Result<i64> {
            match v {
                None => Ok(0),
                Some(v) => ram_in_bytes(v).map_err(|e| bad_flag(flag, v, e)),
            }
        };
        let int = |flag: &str, v: &Option<String>| -> Result<i64> {
            match v {
                None => Ok(0),
                Some(v) => parse_go_int(v).map_err(|e| bad_flag(flag, v, e)),
            }
        };
        let mut r = Resources {
            memory: bytes("--memory", &self.memory)?,
            memory_swap: match self.memory_swap.as_deref() {
                Some("-1") => -1,
                _ => bytes("--memory-swap", &self.memory_swap)?,
            },
            memory_reservation: bytes("--memory-reservation", &self.memory_reservation)?,
            oom_kill_disable: self.oom_kill_disable,
            cpu_period: int("--cpu-period", &self.cpu_period)?,
            cpu_quota: int("--cpu-quota", &self.cpu_quota)?,
            cpu_shares: int("--cpu-shares", &self.cpu_shares)?,
            cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
            cpuset_mems: self.cpuset_mems.clone().unwrap_or_default(),
            ..Default::default()
        };
        // Docker's client sends a swappiness only when it is not the default -1.
        let swappiness = int("--memory-swappiness", &self.memory_swappiness)?;
        if self.memory_swappiness.is_some() && swappiness != -1 {
            r.memory_swappiness = Some(swappiness);
        }
        if let Some(cpus) = &self.cpus {
            r.nano_cpus = parse_nano_cpus(cpus).map_err(|e| bad_flag("--cpus", cpus, e))?;
        }
        if let Some(w) = &self.blkio_weight {
            r.blkio_weight = parse_go_u16(w).map_err(|e| bad_flag("--blkio-weight", w, e))?;
        }
        // Docker's client sends a pids limit only when it is not 0.
        let pids = int("--pids-limit", &self.pids_limit)?;
        if pids != 0 {
            r.pids_limit = Some(pids);
        }
        for text in &self.blkio_weight_device {
            let (path, weight) = split_device("--blkio-weight-device", text)?;
            let bad = || {
                bad_flag(
                    "--blkio-weight-device",
                    text,
                    format!("invalid weight for device: {text}"),
                )
            };
            let weight: u16 = weight.parse().map_err(|_| bad())?;
            if weight > 0 && !(10..=1000).contains(&weight) {
                return Err(bad());
            }
            r.blkio_weight_device.push((path.to_string(), weight));
        }
        for (flag, list, out) in [
            (
                "--device-read-bps",
                &self.device_read_bps,
                &mut r.device_read_bps,
            ),
            (
                "--device-write-bps",
                &self.device_write_bps,
                &mut r.device_write_bps,
            ),
        ] {
            for text in list {
                let (path, rate) = split_device(flag, text)?;
                let rate = ram_in_bytes(rate).map_err(|_| bad_flag(flag, text, format!("invalid rate for device: {text}. The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb")))?;
                out.push((path.to_string(), rate as u64));
            }
        }
        for (flag, list, out) in [
            (
                "--device-read-iops",
                &self.device_read_iops,
                &mut r.device_read_iops,
            ),
            (
                "--device-write-iops",
                &self.device_write_iops,
                &mut r.device_write_iops,
            ),
        ] {
            for text in list {
                let (path, rate) = split_device(flag, text)?;
                let rate: u64 = rate.parse().map_err(|_| bad_flag(flag, text, format!("invalid rate for device: {text}. The correct format is <device-path>:<number>. Number must be a positive integer")))?;
                out.push((path.to_string(), rate));
            }
        }
        Ok(r)
    }

    /// The flags that `update` changes, laid over `self` (the container's current flags):
    /// each flag given in `change` replaces the current one.
    pub fn updated_with(&self, change: &ResourceFlags) -> ResourceFlags {
        let pick = |new: &Option<String>, old: &Option<String>| new.clone().or_else(|| old.clone());
        let pick_list = |new: &Vec<String>, old: &Vec<String>| {
            if new.is_empty() {
                old.clone()
            } else {
                new.clone()
            }
        };
        ResourceFlags {
            memory: pick(&change.memory, &self.memory),
            memory_swap: pick(&change.memory_swap, &self.memory_swap),
            memory_reservation: pick(&change.memory_reservation, &self.memory_reservation),
            memory_swappiness: pick(&change.memory_swappiness, &self.memory_swappiness),
            oom_kill_disable: change.oom_kill_disable || self.oom_kill_disable,
            cpus: pick(&change.cpus, &self.cpus),
            cpu_period: pick(&change.cpu_period, &self.cpu_period),
            cpu_quota: pick(&change.cpu_quota, &self.cpu_quota),
            cpu_shares: pick(&change.cpu_shares, &self.cpu_shares),
            cpuset_cpus: pick(&change.cpuset_cpus, &self.cpuset_cpus),
            cpuset_mems: pick(&change.cpuset_mems, &self.cpuset_mems),
            blkio_weight: pick(&change.blkio_weight, &self.blkio_weight),
            blkio_weight_device: pick_list(&change.blkio_weight_device, &self.blkio_weight_device),
            device_read_bps: pick_list(&change.device_read_bps, &self.device_read_bps),
            device_write_bps: pick_list(&change.device_write_bps, &self.device_write_bps),
            device_read_iops: pick_list(&change.device_read_iops, &self.device_read_iops),
            device_write_iops: pick_list(&change.device_write_iops, &self.device_write_iops),
            pids_limit: pick(&change.pids_limit, &self.pids_limit),
        }
    }

    /// Docker's `HostConfig` resource fields, with Docker's zero values (and its adjustment:
    /// MemorySwap twice Memory when not given).
    pub fn host_config_fields(&self) -> Map<String, Value> {
        let mut r = self.parse().unwrap_or_default();
        adapt(&mut r);
        let devices = |list: &[(String, u64)]| -> Value {
            json!(list
                .iter()
                .map(|(path, rate)| json!({"Path": path, "Rate": rate}))
                .collect::<Vec<_>>())
        };
        let mut map = Map::new();
        map.insert("Memory".into(), json!(r.memory));
        map.insert("MemorySwap".into(), json!(r.memory_swap));
        map.insert("MemoryReservation".into(), json!(r.memory_reservation));
        map.insert("MemorySwappiness".into(), json!(r.memory_swappiness));
        map.insert("OomKillDisable".into(), json!(r.oom_kill_disable));
        map.insert("NanoCpus".into(), json!(r.nano_cpus));
        map.insert("CpuShares".into(), json!(r.cpu_shares));
        map.insert("CpuPeriod".into(), json!(r.cpu_period));
        map.insert("CpuQuota".into(), json!(r.cpu_quota));
        map.insert("CpuRealtimePeriod".into(), json!(0));
        map.insert("CpuRealtimeRuntime".into(), json!(0));
        map.insert("CpusetCpus".into(), json!(r.cpuset_cpus));
        map.insert("CpusetMems".into(), json!(r.cpuset_mems));
        map.insert("BlkioWeight".into(), json!(r.blkio_weight));
        map.insert(
            "BlkioWeightDevice".into(),
            json!(r
                .blkio_weight_device
                .iter()
                .map(|(path, weight)| json!({"Path": path, "Weight": weight}))
                .collect::<Vec<_>>()),
        );
        map.insert("BlkioDeviceReadBps".into(), devices(&r.device_read_bps));
        map.insert("BlkioDeviceWriteBps".into(), devices(&r.device_write_bps));
        map.insert("BlkioDeviceReadIOps".into(), devices(&r.device_read_iops));
        map.insert("BlkioDeviceWriteIOps".into(), devices(&r.device_write_iops));
        // Docker keeps no limit for 0 and below ("unlimited").
        map.insert(
            "PidsLimit".into(),
            json!(r.pids_limit.filter(|&limit| limit > 0)),
        );
        map
    }
}

/// Docker's create-time adjustments (`adaptContainerSettings`).
fn adapt(r: &mut Resources) {
    if r.memory > 0 && r.memory_swap == 0 {
        r.memory_swap = r.memory * 2;
    }
    if r.cpu_shares < 0 {
        r.cpu_shares = MIN_CPU_SHARES;
    } else if r.cpu_shares > MAX_CPU_SHARES {
        r.cpu_shares = MAX_CPU_SHARES;
    }
}

/// What the host's cgroups can limit (Docker's `sysinfo`).
#[derive(Clone, Debug)]
pub struct HostSupport {
    pub memory_limit: bool,
    pub swap_limit: bool,
    pub memory_reservation: bool,
    pub memory_swappiness: bool,
    pub oom_kill_disable: bool,
    pub cpu_shares: bool,
    pub cpu_cfs: bool,
    pub cpuset: bool,
    pub blkio_weight: bool,
    pub blkio_weight_device: bool,
    pub blkio_throttle: bool,
    pub pids: bool,
    /// The CPUs and memory nodes there are (cpuset lists).
    pub cpus: String,
    pub mems: String,
    pub num_cpus: i64,
}

impl HostSupport {
    /// This host, from the cgroup files: cgroup v1 hierarchies where mounted, else cgroup2.
    pub fn detect() -> HostSupport {
        let root = Path::new("/sys/fs/cgroup");
        let exists = |p: &str| root.join(p).exists();
        let num_cpus = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .map(|set| {
                (0..nix::sched::CpuSet::count())
                    .filter(|&i| set.is_set(i).unwrap_or(false))
                    .count() as i64
            })
            .unwrap_or(1);
        let read = |paths: &[&str], fallback: &str| -> String {
            paths
                .iter()
                .find_map(|p| std::fs::read_to_string(p).ok())
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| fallback.to_string())
        };
        let cpus = read(
            &[
                "/sys/fs/cgroup/cpuset/cpuset.cpus",
                "/sys/fs/cgroup/cpuset.cpus.effective",
                "/sys/devices/system/cpu/online",
            ],
            "0",
        );
        let mems = read(
            &[
                "/sys/fs/cgroup/cpuset/cpuset.mems",
                "/sys/fs/cgroup/cpuset.mems.effective",
                "/sys/devices/system/node/online",
            ],
            "0",
        );
        let v2_controllers =
            std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let v2 = |c: &str| v2_controllers.split_whitespace().any(|x| x == c);
        let memory_v1 = exists("memory/memory.limit_in_bytes");
        let cpu_v1 = exists("cpu/cpu.shares");
        let blkio_v1 = exists("blkio");
        HostSupport {
            memory_limit: memory_v1 || v2("memory"),
            swap_limit: exists("memory/memory.memsw.limit_in_bytes")
                || (!memory_v1 && v2("memory")),
            memory_reservation: exists("memory/memory.soft_limit_in_bytes")
                || (!memory_v1 && v2("memory")),
            memory_swappiness: exists("memory/memory.swappiness"),
            oom_kill_disable: exists("memory/memory.oom_control"),
            cpu_shares: cpu_v1 || v2("cpu"),
            cpu_cfs: exists("cpu/cpu.cfs_quota_us") || (!cpu_v1 && v2("cpu")),
            cpuset: exists("cpuset/cpuset.cpus") || v2("cpuset"),
            blkio_weight: exists("blkio/blkio.weight") || (!blkio_v1 && v2("io")),
            blkio_weight_device: exists("blkio/blkio.weight_device") || (!blkio_v1 && v2("io")),
            blkio_throttle: exists("blkio/blkio.throttle.read_bps_device")
                || (!blkio_v1 && v2("io")),
            pids: exists("pids") || v2("pids"),
            cpus,
            mems,
            num_cpus,
        }
    }
}

/// A cpuset list (`0-3,5`), as Docker's ParseUintList reads it.
fn parse_uint_list(text: &str) -> std::result::Result<Vec<u32>, String> {
    let invalid = || format!("invalid format: {text}");
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            None => out.push(part.parse().map_err(|_| invalid())?),
            Some((lo, hi)) => {
                let (lo, hi): (u32, u32) = (
                    lo.parse().map_err(|_| invalid())?,
                    hi.parse().map_err(|_| invalid())?,
                );
                if hi < lo || hi - lo > 65536 {
                    return Err(invalid());
                }
                out.extend(lo..=hi);
            }
        }
    }
    Ok(out)
}

/// Docker's daemon-side checks on `r` for this host (`verifyPlatformContainerResources`):
/// errors for what cannot be right anywhere, a warning and the limit dropped for what this
/// host cannot apply. `update` relaxes what `container update` allows.
pub fn verify(r: &mut Resources, host: &HostSupport, update: bool) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    if r.memory != 0 && r.memory < MIN_MEMORY {
        bail!("Minimum memory limit allowed is 6MB");
    }
    if r.memory > 0 && !host.memory_limit {
        warnings.push("Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.".to_string());
        r.memory = 0;
        r.memory_swap = -1;
    }
    if r.memory > 0 && r.memory_swap != -1 && !host.swap_limit {
        warnings.push("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.".to_string());
        r.memory_swap = -1;
    }
    if r.memory > 0 && r.memory_swap > 0 && r.memory_swap < r.memory {
        bail!("Minimum memoryswap limit should be larger than memory limit, see usage");
    }
    if r.memory == 0 && r.memory_swap > 0 && !update {
        bail!("You should always set the Memory limit when using Memoryswap limit, see usage");
    }
    if r.memory_swappiness.is_some() && !host.memory_swappiness {
        warnings.push("Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.".to_string());
        r.memory_swappiness = None;
    }
    if let Some(swappiness) = r.memory_swappiness {
        if !(0..=100).contains(&swappiness) {
            bail!("Invalid value: {swappiness}, valid memory swappiness range is 0-100");
        }
    }
    if r.memory_reservation > 0 && !host.memory_reservation {
        warnings.push("Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded.".to_string());
        r.memory_reservation = 0;
    }
    if r.memory_reservation > 0 && r.memory_reservation < MIN_MEMORY {
        bail!("Minimum memory reservation allowed is 6MB");
    }
    if r.memory > 0 && r.memory_reservation > 0 && r.memory < r.memory_reservation {
        bail!("Minimum memory limit can not be less than memory reservation limit, see usage");
    }
    if r.oom_kill_disable && !host.oom_kill_disable {
        warnings.push(
            "Your kernel does not support OomKillDisable. OomKillDisable discarded.".to_string(),
        );
        r.oom_kill_disable = false;
    }
    if r.oom_kill_disable && r.memory == 0 {
        warnings.push("OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.".to_string());
    }
    if r.pids_limit.is_some() && !host.pids {
        warnings.push("Your kernel does not support PIDs limit capabilities or the cgroup is not mounted. PIDs limit discarded.".to_string());
        r.pids_limit = None;
    }

    if r.nano_cpus > 0 && r.cpu_period > 0 {
        bail!("Conflicting options: Nano CPUs and CPU Period cannot both be set");
    }
    if r.nano_cpus > 0 && r.cpu_quota > 0 {
        bail!("Conflicting options: Nano CPUs and CPU Quota cannot both be set");
    }
    if r.nano_cpus > 0 && !host.cpu_cfs {
        bail!("NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the cgroup is not mounted");
    }
    // Below 0.01 CPU the quota would be under the kernel's 1 ms minimum.
    if r.nano_cpus < 0
        || (r.nano_cpus > 0 && r.nano_cpus < 10_000_000)
        || r.nano_cpus > host.num_cpus * 1_000_000_000
    {
        bail!(
            "Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available",
            n = host.num_cpus
        );
    }
    if r.cpu_shares > 0 && !host.cpu_shares {
        warnings.push("Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded.".to_string());
        r.cpu_shares = 0;
    }
    if (r.cpu_period != 0 || r.cpu_quota != 0) && !host.cpu_cfs {
        warnings.push(
            "Your kernel does not support CPU CFS scheduler. CPU period/quota discarded."
                .to_string(),
        );
        r.cpu_period = 0;
        r.cpu_quota = 0;
    }
    if r.cpu_period != 0 && !(1000..=1_000_000).contains(&r.cpu_period) {
        bail!(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        );
    }
    if r.cpu_quota > 0 && r.cpu_quota < 1000 {
        bail!("CPU cfs quota can not be less than 1ms (i.e. 1000)");
    }
    if (!r.cpuset_cpus.is_empty() || !r.cpuset_mems.is_empty()) && !host.cpuset {
        warnings.push(
            "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded."
                .to_string(),
        );
        r.cpuset_cpus.clear();
        r.cpuset_mems.clear();
    }
    let available = |list: &str| parse_uint_list(list).unwrap_or_default();
    let requested = parse_uint_list(&r.cpuset_cpus)
        .map_err(|e| anyhow!("Invalid value {} for cpuset cpus: {e}", r.cpuset_cpus))?;
    if requested.iter().any(|c| !available(&host.cpus).contains(c)) {
        bail!(
            "Requested CPUs are not available - requested {}, available: {}",
            r.cpuset_cpus,
            host.cpus
        );
    }
    let requested = parse_uint_list(&r.cpuset_mems)
        .map_err(|e| anyhow!("Invalid value {} for cpuset mems: {e}", r.cpuset_mems))?;
    if requested.iter().any(|m| !available(&host.mems).contains(m)) {
        bail!(
            "Requested memory nodes are not available - requested {}, available: {}",
            r.cpuset_mems,
            host.mems
        );
    }

    if r.blkio_weight > 0 && !host.blkio_weight {
        warnings.push("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.".to_string());
        r.blkio_weight = 0;
    }
    if r.blkio_weight > 0 && !(10..=1000).contains(&r.blkio_weight) {
        bail!("Range of blkio weight is from 10 to 1000");
    }
    if !r.blkio_weight_device.is_empty() && !host.blkio_weight_device {
        warnings.push("Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.".to_string());
        r.blkio_weight_device.clear();
    }
    for (list, what) in [
        (&mut r.device_read_bps, "BPS Block I/O read limit or the cgroup is not mounted. Block I/O BPS read limit discarded."),
        (&mut r.device_write_bps, "BPS Block I/O write limit or the cgroup is not mounted. Block I/O BPS write limit discarded."),
        (&mut r.device_read_iops, "IOPS Block read limit or the cgroup is not mounted. Block I/O IOPS read limit discarded."),
        (&mut r.device_write_iops, "IOPS Block write limit or the cgroup is not mounted. Block I/O IOPS write limit discarded."),
    ] {
        if !list.is_empty() && !host.blkio_throttle {
            warnings.push(format!("Your kernel does not support {what}"));
            list.clear();
        }
    }
    Ok(warnings)
}

/// A block device's major and minor numbers, from the host's node.
fn block_device_numbers(path: &str) -> Result<(i64, i64)> {
    let meta = std::fs::metadata(path).map_err(|e| {
        let reason = e
            .raw_os_error()
            .map(|c| nix::errno::Errno::from_raw(c).desc().to_lowercase())
            .unwrap_or_else(|| e.to_string());
        anyhow!("stat {path}: {reason}")
    })?;
    let rdev = meta.rdev();
    Ok((libc::major(rdev) as i64, libc::minor(rdev) as i64))
}

/// The spec's `linux.resources` (all but the device rules) for parsed and verified
/// resources, as Docker makes them.
pub fn linux_resources(r: &Resources) -> Result<LinuxResources> {
    let mut memory = LinuxMemory::default();
    memory.set_limit((r.memory > 0).then_some(r.memory));
    memory.set_reservation((r.memory_reservation > 0).then_some(r.memory_reservation));
    memory.set_swap((r.memory_swap != 0).then_some(r.memory_swap));
    memory.set_swappiness(r.memory_swappiness.map(|s| s as u64));
    memory.set_disable_oom_killer(r.oom_kill_disable.then_some(true));

    let mut cpu = LinuxCpu::default();
    if r.cpu_shares < 0 {
        bail!("shares: invalid argument");
    }
    cpu.set_shares((r.cpu_shares > 0).then_some(r.cpu_shares as u64));
    cpu.set_cpus((!r.cpuset_cpus.is_empty()).then(|| r.cpuset_cpus.clone()));
    cpu.set_mems((!r.cpuset_mems.is_empty()).then(|| r.cpuset_mems.clone()));
    if r.nano_cpus > 0 {
        let period: u64 = 100_000;
        cpu.set_period(Some(period));
        cpu.set_quota(Some(r.nano_cpus * period as i64 / 1_000_000_000));
    }
    if r.cpu_period != 0 {
        cpu.set_period(Some(r.cpu_period as u64));
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
    }

    let mut blkio = LinuxBlockIo::default();
    blkio.set_weight((r.blkio_weight > 0).then_some(r.blkio_weight));
    let mut weights = Vec::new();
    for (path, weight) in &r.blkio_weight_device {
        let (major, minor) = block_device_numbers(path)
            .map_err(|e| anyhow!("--blkio-weight-device {path}:{weight}: {e}"))?;
        let w = LinuxWeightDeviceBuilder::default()
            .major(major)
            .minor(minor)
            .weight(*weight)
            .build()?;
        weights.push(w);
    }
    blkio.set_weight_device((!weights.is_empty()).then_some(weights));
    let throttle =
        |flag: &str, list: &[(String, u64)]| -> Result<Option<Vec<LinuxThrottleDevice>>> {
            let mut out = Vec::new();
            for (path, rate) in list {
                let (major, minor) =
                    block_device_numbers(path).map_err(|e| anyhow!("{flag} {path}:{rate}: {e}"))?;
                let t = LinuxThrottleDeviceBuilder::default()
                    .major(major)
                    .minor(minor)
                    .rate(*rate)
                    .build()?;
                out.push(t);
            }
            Ok((!out.is_empty()).then_some(out))
        };
    blkio.set_throttle_read_bps_device(throttle("--device-read-bps", &r.device_read_bps)?);
    blkio.set_throttle_write_bps_device(throttle("--device-write-bps", &r.device_write_bps)?);
    blkio.set_throttle_read_iops_device(throttle("--device-read-iops", &r.device_read_iops)?);
    blkio.set_throttle_write_iops_device(throttle("--device-write-iops", &r.device_write_iops)?);

    let mut resources = LinuxResources::default();
    if memory != LinuxMemory::default() {
        resources.set_memory(Some(memory));
    }
    if cpu != LinuxCpu::default() {
        resources.set_cpu(Some(cpu));
    }
    if blkio != LinuxBlockIo::default() {
        resources.set_block_io(Some(blkio));
    }
    if let Some(limit) = r.pids_limit {
        let mut pids = LinuxPids::default();
        // Docker takes 0 and below as "no limit", which runc writes as -1 ("max").
        pids.set_limit(if limit <= 0 { -1 } else { limit });
        resources.set_pids(Some(pids));
    }
    Ok(resources)
}

/// Parses, adjusts and checks the flags for this host and gives the spec's resources and
/// Docker's warnings (for the caller to print as `WARNING: ...`). `update` is true for
/// `container update` (which may set a swap limit alone).
pub fn resources_with_warnings(
    f: &ResourceFlags,
    update: bool,
) -> Result<(LinuxResources, Vec<String>)> {
    let mut r = f.parse()?;
    if !update {
        adapt(&mut r);
    }
    let warnings = verify(&mut r, &HostSupport::detect(), update)?;
    Ok((linux_resources(&r)?, warnings))
}

/// The spec's `linux.resources` for these flags (device rules aside), after Docker's checks;
/// also what `container update` passes to the runtime.
pub fn to_linux_resources(f: &ResourceFlags) -> Result<LinuxResources> {
    resources_with_warnings(f, false).map(|(resources, _)| resources)
}

/// Sets the spec's resources from the flags, keeping its device rules (see
/// `security::apply_security`).
pub fn apply_resources(spec: &mut Spec, f: &ResourceFlags) -> Result<()> {
    let mut resources = to_linux_resources(f)?;
    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    if let Some(current) = linux.resources() {
        resources.set_devices(current.devices().clone());
        if resources.hugepage_limits().is_none() {
            resources.set_hugepage_limits(current.hugepage_limits().clone());
        }
        if resources.network().is_none() {
            resources.set_network(current.network().clone());
        }
    }
    linux.set_resources(Some(resources));
    Ok(())
}

/// The key of the resource flags in a container's record (`Record::options`).
pub const RECORD_KEY: &str = "resources";

impl super::create::SpecPart for ResourceFlags {
    fn key(&self) -> &'static str {
        RECORD_KEY
    }

    fn record(&self) -> Value {
        super::security::option_record(
            serde_json::to_value(self).unwrap_or(Value::Null),
            self.host_config_fields(),
        )
    }

    fn apply(&self, spec: &mut Spec, _ctx: &super::create::SpecContext) -> Result<()> {
        apply_resources(spec, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(set: impl FnOnce(&mut ResourceFlags)) -> ResourceFlags {
        let mut f = ResourceFlags::default();
        set(&mut f);
        f
    }

    fn host() -> HostSupport {
        HostSupport {
            memory_limit: true,
            swap_limit: true,
            memory_reservation: true,
            memory_swappiness: true,
            oom_kill_disable: true,
            cpu_shares: true,
            cpu_cfs: true,
            cpuset: true,
            blkio_weight: true,
            blkio_weight_device: true,
            blkio_throttle: true,
            pids: true,
            cpus: "0-3".into(),
            mems: "0".into(),
            num_cpus: 4,
        }
    }

    /// Parse, adapt and verify as for `create` against [`host`].
    fn checked(f: &ResourceFlags) -> Result<(Resources, Vec<String>)> {
        let mut r = f.parse()?;
        adapt(&mut r);
        let w = verify(&mut r, &host(), false)?;
        Ok((r, w))
    }

    fn err(f: &ResourceFlags) -> String {
        format!("{:#}", checked(f).unwrap_err())
    }

    #[test]
    fn ram_in_bytes_like_go_units() {
        for (text, want) in [
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("32k", 32 * 1024),
            ("32K", 32 * 1024),
            ("32kb", 32 * 1024),
            ("32Kb", 32 * 1024),
            ("32KiB", 32 * 1024),
            ("32Mb", 32 << 20),
            ("32Gb", 32 << 30),
            ("32Tb", 32 << 40),
            ("32PB", 32 << 50),
            ("0.3MB", 314572),
            ("1.5g", 3 << 29),
            ("32.3 mb", 33869004),
            ("6m", 6 << 20),
        ] {
            assert_eq!(ram_in_bytes(text), Ok(want), "{text}");
        }
        assert_eq!(ram_in_bytes(""), Err("invalid size: ''".into()));
        assert_eq!(ram_in_bytes("hello"), Err("invalid size: 'hello'".into()));
        assert_eq!(ram_in_bytes("-32"), Err("invalid size: '-32'".into()));
        assert_eq!(ram_in_bytes("32bm"), Err("invalid suffix: 'bm'".into()));
        assert_eq!(ram_in_bytes("32MiBB"), Err("invalid suffix: 'MiBB'".into()));
        assert_eq!(ram_in_bytes("10x"), Err("invalid suffix: 'x'".into()));
        assert_eq!(
            ram_in_bytes("1.2.3m"),
            Err("strconv.ParseFloat: parsing \"1.2.3\": invalid syntax".into())
        );
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert!(parse_bytes("99999999999p").is_err());
    }

    #[test]
    fn cpus_are_exact() {
        assert_eq!(parse_nano_cpus("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_nano_cpus("0.01"), Ok(10_000_000));
        assert_eq!(parse_nano_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_nano_cpus(".5"), Ok(500_000_000));
        assert_eq!(
            parse_nano_cpus("0.0000000001"),
            Err("value is too precise".into())
        );
        assert_eq!(
            parse_nano_cpus("abc"),
            Err("failed to parse abc as a rational number".into())
        );
        let r =
            linux_resources(&checked(&flags(|f| f.cpus = Some("1.5".into()))).unwrap().0).unwrap();
        let cpu = r.cpu().clone().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(150_000), Some(100_000)));
    }

    #[test]
    fn flag_errors_name_flag_and_value() {
        assert_eq!(
            err(&flags(|f| f.memory = Some("abc".into()))),
            "invalid argument \"abc\" for \"-m, --memory\" flag: invalid size: 'abc'"
        );
        assert_eq!(
            err(&flags(|f| f.cpu_shares = Some("x".into()))),
            "invalid argument \"x\" for \"-c, --cpu-shares\" flag: strconv.ParseInt: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            err(&flags(|f| f.blkio_weight = Some("70000".into()))),
            "invalid argument \"70000\" for \"--blkio-weight\" flag: strconv.ParseUint: parsing \"70000\": value out of range"
        );
        assert_eq!(
            err(&flags(|f| f.device_read_bps = vec!["sda:1mb".into()])),
            "invalid argument \"sda:1mb\" for \"--device-read-bps\" flag: bad format for device path: sda:1mb"
        );
        assert!(err(&flags(
            |f| f.device_write_iops = vec!["/dev/sda:fast".into()]
        ))
        .contains("invalid rate for device: /dev/sda:fast"));
        assert_eq!(
            err(&flags(|f| f.blkio_weight_device = vec!["/dev/sda:5".into()])),
            "invalid argument \"/dev/sda:5\" for \"--blkio-weight-device\" flag: invalid weight for device: /dev/sda:5"
        );
        assert_eq!(
            err(&flags(|f| f.cpus = Some("1/2".into()))),
            "invalid argument \"1/2\" for \"--cpus\" flag: failed to parse 1/2 as a rational number"
        );
    }

    #[test]
    fn daemon_checks() {
        let cases: Vec<(ResourceFlags, &str)> = vec![
            (flags(|f| f.memory = Some("4m".into())), "Minimum memory limit allowed is 6MB"),
            (
                flags(|f| {
                    f.memory = Some("64m".into());
                    f.memory_swap = Some("32m".into())
                }),
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ),
            (
                flags(|f| f.memory_swap = Some("64m".into())),
                "You should always set the Memory limit when using Memoryswap limit, see usage",
            ),
            (flags(|f| f.memory_reservation = Some("1m".into())), "Minimum memory reservation allowed is 6MB"),
            (
                flags(|f| {
                    f.memory = Some("64m".into());
                    f.memory_reservation = Some("128m".into())
                }),
                "Minimum memory limit can not be less than memory reservation limit, see usage",
            ),
            (
                flags(|f| {
                    f.cpus = Some("1".into());
                    f.cpu_quota = Some("50000".into())
                }),
                "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
            ),
            (
                flags(|f| {
                    f.cpus = Some("1".into());
                    f.cpu_period = Some("50000".into())
                }),
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ),
            (
                flags(|f| f.cpus = Some("8".into())),
                "Range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available",
            ),
            (
                flags(|f| f.cpu_period = Some("500".into())),
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
            ),
            (flags(|f| f.cpu_quota = Some("999".into())), "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
            (
                flags(|f| f.cpuset_cpus = Some("1-a".into())),
                "Invalid value 1-a for cpuset cpus: invalid format: 1-a",
            ),
            (
                flags(|f| f.cpuset_cpus = Some("7".into())),
                "Requested CPUs are not available - requested 7, available: 0-3",
            ),
            (
                flags(|f| f.cpuset_mems = Some("1".into())),
                "Requested memory nodes are not available - requested 1, available: 0",
            ),
            (flags(|f| f.blkio_weight = Some("5".into())), "Range of blkio weight is from 10 to 1000"),
            (
                flags(|f| f.memory_swappiness = Some("101".into())),
                "Invalid value: 101, valid memory swappiness range is 0-100",
            ),
        ];
        for (f, want) in cases {
            assert_eq!(err(&f), want, "{f:?}");
        }
    }

    #[test]
    fn docker_adjustments_and_spec() {
        let f = flags(|f| {
            f.memory = Some("64m".into());
            f.memory_reservation = Some("32m".into());
            f.cpu_shares = Some("512".into());
            f.cpuset_cpus = Some("0,1".into());
            f.pids_limit = Some("50".into());
            f.oom_kill_disable = true;
        });
        let (r, warnings) = checked(&f).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(r.memory_swap, 128 << 20, "swap twice the memory by default");
        let spec = linux_resources(&r).unwrap();
        let memory = spec.memory().unwrap();
        assert_eq!(memory.limit(), Some(64 << 20));
        assert_eq!(memory.swap(), Some(128 << 20));
        assert_eq!(memory.reservation(), Some(32 << 20));
        assert_eq!(memory.disable_oom_killer(), Some(true));
        let cpu = spec.cpu().clone().unwrap();
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0,1"));
        assert_eq!(spec.pids().unwrap().limit(), 50);

        let unlimited = checked(&flags(|f| {
            f.memory = Some("64m".into());
            f.memory_swap = Some("-1".into());
            f.pids_limit = Some("-1".into());
        }))
        .unwrap()
        .0;
        let spec = linux_resources(&unlimited).unwrap();
        assert_eq!(spec.memory().unwrap().swap(), Some(-1));
        assert_eq!(spec.pids().unwrap().limit(), -1);

        // Nothing given: no resources at all.
        let none = linux_resources(&checked(&ResourceFlags::default()).unwrap().0).unwrap();
        assert_eq!(none, LinuxResources::default());
    }

    #[test]
    fn host_without_support_warns_and_drops() {
        let mut limited = host();
        limited.swap_limit = false;
        limited.blkio_weight = false;
        limited.oom_kill_disable = false;
        let mut r = flags(|f| {
            f.memory = Some("64m".into());
            f.blkio_weight = Some("300".into());
            f.oom_kill_disable = true;
        })
        .parse()
        .unwrap();
        adapt(&mut r);
        let warnings = verify(&mut r, &limited, false).unwrap();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("swap limit"));
        assert_eq!(
            (r.memory_swap, r.blkio_weight, r.oom_kill_disable),
            (-1, 0, false)
        );
    }

    #[test]
    fn block_devices_from_the_host() {
        // /dev/null is a character device: the kernel's numbers come through stat.
        let (major, minor) = block_device_numbers("/dev/null").unwrap();
        assert_eq!((major, minor), (1, 3));
        let e = block_device_numbers("/dev/berth-no-such").unwrap_err();
        assert_eq!(
            e.to_string(),
            "stat /dev/berth-no-such: no such file or directory"
        );
    }

    #[test]
    fn update_lays_changes_over() {
        let current = flags(|f| {
            f.memory = Some("64m".into());
            f.cpu_shares = Some("100".into());
        });
        let change = flags(|f| f.memory = Some("128m".into()));
        let merged = current.updated_with(&change);
        assert_eq!(merged.memory.as_deref(), Some("128m"));
        assert_eq!(merged.cpu_shares.as_deref(), Some("100"));
        // update may set swap without memory.
        let mut r = flags(|f| f.memory_swap = Some("1g".into()))
            .parse()
            .unwrap();
        assert!(verify(&mut r, &host(), true).is_ok());
    }

    #[test]
    fn inspect_fields() {
        let fields = flags(|f| {
            f.memory = Some("64m".into());
            f.cpus = Some("0.5".into());
            f.device_read_bps = vec!["/dev/sda:1mb".into()];
        })
        .host_config_fields();
        assert_eq!(fields["Memory"], 64 << 20);
        assert_eq!(fields["MemorySwap"], 128 << 20);
        assert_eq!(fields["NanoCpus"], 500_000_000);
        assert_eq!(
            fields["BlkioDeviceReadBps"],
            json!([{"Path": "/dev/sda", "Rate": 1048576}])
        );
        let zero = ResourceFlags::default().host_config_fields();
        assert_eq!(zero["Memory"], 0);
        assert_eq!(zero["PidsLimit"], Value::Null);
        assert_eq!(zero["MemorySwappiness"], Value::Null);
        assert_eq!(zero["CpusetCpus"], "");
        assert_eq!(zero["BlkioWeightDevice"], json!([]));
    }

    #[test]
    fn parses_through_clap() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            resources: ResourceFlags,
        }
        let cli = Cli::try_parse_from([
            "x",
            "-m",
            "64m",
            "--memory-swap",
            "-1",
            "-c",
            "512",
            "--cpus",
            "1.5",
            "--device-read-bps",
            "/dev/sda:1mb",
            "--pids-limit",
            "-1",
        ])
        .unwrap();
        assert_eq!(cli.resources.memory.as_deref(), Some("64m"));
        assert_eq!(cli.resources.memory_swap.as_deref(), Some("-1"));
        assert_eq!(cli.resources.cpu_shares.as_deref(), Some("512"));
        assert_eq!(cli.resources.pids_limit.as_deref(), Some("-1"));
        assert_eq!(cli.resources.device_read_bps, ["/dev/sda:1mb"]);
    }
}
