//! `stats`: a running container's resource use, computed and printed as Docker does.
//!
//! A [`Sample`] is one reading: the cgroup's counters through the runtime core
//! ([`crate::runtime::cgroups::stats`], cgroup v1 and v2), the host's CPU time from /proc/stat,
//! and the network counters of the container's init from /proc/PID/net/dev. Two samples give
//! the CPU %; the rest is Docker's arithmetic (docker/cli's `calculate*` functions): memory
//! is usage less the inactive file cache, the limit is the host's memory when there is none,
//! block I/O adds up the Read and Write bytes of every device.

use crate::engine::humanize::{bytes_size, human_size_with_precision};
use crate::engine::template::{format_rows, STATS_HEADERS, STATS_TABLE};
use crate::runtime::cgroups::{self, CgroupPaths};
use crate::runtime::state::{derive_status, read_state, validate_id, Status};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often Docker's daemon reads a container's stats: the interval between the two
/// samples of `--no-stream` and between the redraws of the streaming table.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Clears the terminal and homes the cursor before each table of the streaming `stats`, as
/// docker's does.
pub const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";

/// One reading of a container's resource use.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// CPU time of the container's processes, nanoseconds.
    pub cpu_total_ns: u64,
    /// CPU time of the whole host (all CPUs, idle included), nanoseconds: the first seven
    /// columns of /proc/stat's "cpu" line, as Docker's daemon reads it.
    pub system_cpu_ns: u64,
    pub online_cpus: u32,
    /// Memory in use, less the inactive file cache (what Docker shows).
    pub memory_usage: u64,
    /// The memory limit, or the host's memory when the container has none.
    pub memory_limit: u64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub block_read: u64,
    pub block_write: u64,
    pub pids: u64,
}

impl Sample {
    /// Docker's MEM %.
    pub fn memory_percent(&self) -> f64 {
        if self.memory_limit == 0 {
            return 0.0;
        }
        self.memory_usage as f64 / self.memory_limit as f64 * 100.0
    }
}

/// Docker's CPU %: the container's share of the host's CPU time between two samples, times
/// the number of online CPUs (a container using two CPUs fully shows 200%).
pub fn cpu_percent(previous: &Sample, current: &Sample) -> f64 {
    let cpu_delta = current.cpu_total_ns as f64 - previous.cpu_total_ns as f64;
    let system_delta = current.system_cpu_ns as f64 - previous.system_cpu_ns as f64;
    if cpu_delta > 0.0 && system_delta > 0.0 {
        cpu_delta / system_delta * f64::from(current.online_cpus) * 100.0
    } else {
        0.0
    }
}

/// Reads one sample of the container whose cgroup is `cgroup` and whose init is `pid`.
pub fn sample(cgroup: &CgroupPaths, pid: i32) -> Result<Sample> {
    let data = cgroups::stats(cgroup).context("cannot read the container's cgroup")?;
    let (system_cpu_ns, online_cpus) = host_cpu()?;
    let (net_rx, net_tx) = network(pid)?;
    let mut s = from_cgroup_stats(&data, host_memory()?);
    s.system_cpu_ns = system_cpu_ns;
    s.online_cpus = online_cpus;
    s.net_rx = net_rx;
    s.net_tx = net_tx;
    Ok(s)
}

/// The cgroup part of a sample, from the runtime's stats (runc's `events --stats` shape).
fn from_cgroup_stats(data: &Value, host_memory: u64) -> Sample {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let usage = n(&data["memory"]["usage"]["usage"]);
    let raw = &data["memory"]["raw"];
    // Docker: v1's total_inactive_file when present and below usage, else v2's
    // inactive_file when below usage, else the whole usage.
    let v1 = raw.get("total_inactive_file").and_then(Value::as_u64);
    let v2 = raw.get("inactive_file").and_then(Value::as_u64);
    let memory_usage = match (v1, v2) {
        (Some(i), _) if i < usage => usage - i,
        (_, Some(i)) if i < usage => usage - i,
        _ => usage,
    };
    let limit = n(&data["memory"]["usage"]["limit"]);
    let memory_limit = if limit == 0 || (host_memory > 0 && limit > host_memory) {
        host_memory
    } else {
        limit
    };
    let (mut block_read, mut block_write) = (0, 0);
    if let Some(entries) = data["blkio"]["ioServiceBytesRecursive"].as_array() {
        for e in entries {
            match e["op"].as_str().and_then(|op| op.chars().next()) {
                Some('r' | 'R') => block_read += n(&e["value"]),
                Some('w' | 'W') => block_write += n(&e["value"]),
                _ => {}
            }
        }
    }
    Sample {
        cpu_total_ns: n(&data["cpu"]["usage"]["total"]),
        memory_usage,
        memory_limit,
        block_read,
        block_write,
        pids: n(&data["pids"]["current"]),
        ..Default::default()
    }
}

/// The host's CPU time in nanoseconds and its online CPUs, from /proc/stat.
fn host_cpu() -> Result<(u64, u32)> {
    let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    parse_proc_stat(&text).context("/proc/stat has no cpu line")
}

fn parse_proc_stat(text: &str) -> Option<(u64, u32)> {
    // SAFETY: sysconf only reads a constant of the C library.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut total_ticks = None;
    let mut cpus = 0u32;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                // user nice system idle iowait irq softirq (steal and guests are left out).
                let ticks: u64 = fields.take(7).filter_map(|f| f.parse::<u64>().ok()).sum();
                total_ticks = Some(ticks);
            }
            Some(name) if name.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    Some((total_ticks? * (1_000_000_000 / ticks_per_second), cpus))
}

/// The host's memory in bytes (MemTotal).
fn host_memory() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024))
}

/// Bytes received and sent on the interfaces of the process's network namespace, loopback
/// left out. A container in the host's namespace has no networks of its own: 0, as Docker
/// shows for `--network host` and `none`.
fn network(pid: i32) -> Result<(u64, u64)> {
    let own = std::fs::read_link(format!("/proc/{pid}/ns/net"));
    let host = std::fs::read_link("/proc/1/ns/net");
    if let (Ok(own), Ok(host)) = (&own, &host) {
        if own == host {
            return Ok((0, 0));
        }
    }
    let path = format!("/proc/{pid}/net/dev");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    Ok(parse_net_dev(&text))
}

fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    // Two header lines, then "  eth0: rx_bytes packets errs drop fifo frame compressed
    // multicast tx_bytes ...".
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = counters
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .collect();
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

/// A container `stats` shows.
#[derive(Clone, Debug)]
pub struct Target {
    /// The container as the user named it (the CONTAINER column); its short id when listed.
    pub container: String,
    /// Its full id.
    pub id: String,
    /// Its name, without Docker's leading '/'.
    pub name: String,
    /// Where the runtime core keeps it: `--root` and the runtime's container id.
    pub runtime_root: PathBuf,
    pub runtime_id: String,
}

/// Samples a container through the runtime core's state; None when it is not running.
pub fn sample_runtime_container(root: &Path, id: &str) -> Result<Option<Sample>> {
    validate_id(id)?;
    let dir = root.join(id);
    let state = match read_state(&dir) {
        Ok(s) => s,
        Err(_) if !dir.exists() => return Ok(None),
        Err(e) => return Err(e),
    };
    match derive_status(&dir, &state) {
        Status::Running | Status::Paused => {}
        _ => return Ok(None),
    }
    // The container can stop between the status check and the reads.
    match sample(&state.cgroup, state.pid) {
        Ok(s) => Ok(Some(s)),
        Err(_) if derive_status(&dir, &state) == Status::Stopped => Ok(None),
        Err(e) => Err(e),
    }
}

/// One row of the table: Docker's stats fields, formatted as its CLI formats them. A
/// container that is not running shows zeros, as with Docker.
pub fn row(
    target: &Target,
    previous: Option<&Sample>,
    current: Option<&Sample>,
    trunc: bool,
) -> Value {
    let zero = Sample::default();
    let cur = current.unwrap_or(&zero);
    let cpu = match (previous, current) {
        (Some(p), Some(c)) => cpu_percent(p, c),
        _ => 0.0,
    };
    let id = if trunc {
        target.id.chars().take(12).collect()
    } else {
        target.id.clone()
    };
    let name = target.name.strip_prefix('/').unwrap_or(&target.name);
    let io = |a: u64, b: u64| {
        format!(
            "{} / {}",
            human_size_with_precision(a as f64, 3),
            human_size_with_precision(b as f64, 3)
        )
    };
    json!({
        "Container": target.container,
        "ID": id,
        "Name": name,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(cur.memory_usage as f64), bytes_size(cur.memory_limit as f64)),
        "MemPerc": format!("{:.2}%", cur.memory_percent()),
        "NetIO": io(cur.net_rx, cur.net_tx),
        "BlockIO": io(cur.block_read, cur.block_write),
        "PIDs": cur.pids.to_string(),
    })
}

/// What `stats` was asked for.
pub struct Options<'a> {
    /// `--format` ("" for the default table).
    pub format: &'a str,
    pub no_stream: bool,
    pub no_trunc: bool,
    pub interval: Duration,
}

/// `stats`: with `no_stream`, one table of one sample per container (CPU % measured over
/// `interval`); otherwise a fresh table every `interval`, the screen cleared before each, until
/// writing fails (the reader went away). `targets` is asked again before each table, so that
/// containers started or removed in between come and go, as with `docker stats`.
pub fn run(
    targets: &mut dyn FnMut() -> Result<Vec<Target>>,
    opts: &Options,
    out: &mut dyn Write,
) -> Result<()> {
    // A bad template is reported before anything is sampled.
    format_rows(opts.format, STATS_TABLE, STATS_HEADERS, &[])?;
    let mut previous: Vec<(String, Option<Sample>)> = Vec::new();
    let read_all = |list: &[Target]| -> Result<Vec<(String, Option<Sample>)>> {
        list.iter()
            .map(|t| {
                Ok((
                    t.id.clone(),
                    sample_runtime_container(&t.runtime_root, &t.runtime_id)?,
                ))
            })
            .collect()
    };
    if opts.no_stream {
        let list = targets()?;
        previous = read_all(&list)?;
        std::thread::sleep(opts.interval);
    }
    loop {
        let list = targets()?;
        let current = read_all(&list)?;
        let rows: Vec<Value> = list
            .iter()
            .zip(&current)
            .map(|(t, (_, cur))| {
                let prev = previous
                    .iter()
                    .find(|(id, _)| *id == t.id)
                    .and_then(|(_, s)| s.as_ref());
                row(t, prev, cur.as_ref(), !opts.no_trunc)
            })
            .collect();
        let table = format_rows(opts.format, STATS_TABLE, STATS_HEADERS, &rows)?;
        if !opts.no_stream {
            out.write_all(CLEAR_SCREEN.as_bytes())?;
        }
        out.write_all(table.as_bytes())?;
        out.flush()?;
        if opts.no_stream {
            return Ok(());
        }
        previous = current;
        std::thread::sleep(opts.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_is_dockers() {
        let a = Sample {
            cpu_total_ns: 1_000_000_000,
            system_cpu_ns: 100_000_000_000,
            online_cpus: 4,
            ..Default::default()
        };
        // Half a CPU second over 4 CPUs' 1 second (4 s of host CPU time): 50%.
        let b = Sample {
            cpu_total_ns: 1_500_000_000,
            system_cpu_ns: 104_000_000_000,
            ..a.clone()
        };
        assert!((cpu_percent(&a, &b) - 50.0).abs() < 1e-9);
        assert_eq!(cpu_percent(&b, &a), 0.0);
        assert_eq!(cpu_percent(&a, &a), 0.0);
    }

    #[test]
    fn memory_less_inactive_file_as_docker_computes_it() {
        let v1 = json!({
            "cpu": {"usage": {"total": 5}},
            "memory": {"usage": {"usage": 10_000_000, "limit": 9_223_372_036_854_771_712_u64},
                       "raw": {"total_inactive_file": 4_000_000, "inactive_file": 1}},
            "pids": {"current": 3},
            "blkio": {"ioServiceBytesRecursive": [
                {"major": 8, "op": "Read", "value": 4096},
                {"major": 8, "op": "Write", "value": 100},
                {"major": 8, "minor": 16, "op": "Read", "value": 4096},
                {"major": 8, "op": "Sync", "value": 9},
                {"major": 8, "op": "Total", "value": 8292}]}
        });
        let s = from_cgroup_stats(&v1, 8_000_000_000);
        assert_eq!(s.memory_usage, 6_000_000);
        // No limit: the host's memory.
        assert_eq!(s.memory_limit, 8_000_000_000);
        assert_eq!((s.block_read, s.block_write), (8192, 100));
        assert_eq!((s.cpu_total_ns, s.pids), (5, 3));
        let v2 = json!({
            "memory": {"usage": {"usage": 10_000_000, "limit": 64 * 1024 * 1024},
                       "raw": {"inactive_file": 2_000_000}}
        });
        let s = from_cgroup_stats(&v2, 8_000_000_000);
        assert_eq!(
            (s.memory_usage, s.memory_limit),
            (8_000_000, 64 * 1024 * 1024)
        );
        // Inactive file above usage (counted at different instants): the whole usage.
        let odd =
            json!({"memory": {"usage": {"usage": 10, "limit": 100}, "raw": {"inactive_file": 20}}});
        assert_eq!(from_cgroup_stats(&odd, 1000).memory_usage, 10);
    }

    #[test]
    fn proc_files() {
        let stat = "cpu  100 0 50 1000 10 0 5 7 0 0\ncpu0 50 0 25 500 5 0 3 0 0 0\ncpu1 50 0 25 500 5 0 2 0 0 0\nintr 1 2\n";
        // SAFETY: sysconf only reads a constant of the C library.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(
            parse_proc_stat(stat),
            Some((1165 * (1_000_000_000 / hz), 2))
        );
        let dev = "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  \
eth0:    2048      20    0    0    0     0          0         0      512       5    0    0    0     0       0          0\n  \
eth1:       2       1    0    0    0     0          0         0        1       1    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(dev), (2050, 513));
    }

    #[test]
    fn rows_as_docker_prints_them() {
        let t = Target {
            container: "web".into(),
            id: "4f2b8e7c0a1d9e8f7a6b5c4d3e2f1a0b4f2b8e7c0a1d9e8f7a6b5c4d3e2f1a0b".into(),
            name: "/web".into(),
            runtime_root: PathBuf::from("/run/berth"),
            runtime_id: "x".into(),
        };
        let prev = Sample {
            cpu_total_ns: 0,
            system_cpu_ns: 0,
            online_cpus: 2,
            ..Default::default()
        };
        let cur = Sample {
            cpu_total_ns: 250_000_000,
            system_cpu_ns: 2_000_000_000,
            online_cpus: 2,
            memory_usage: 1_572_864,
            memory_limit: 64 * 1024 * 1024,
            net_rx: 1234,
            net_tx: 0,
            block_read: 4_300_000,
            block_write: 12,
            pids: 3,
        };
        let r = row(&t, Some(&prev), Some(&cur), true);
        assert_eq!(
            r,
            json!({"Container": "web", "ID": "4f2b8e7c0a1d", "Name": "web", "CPUPerc": "25.00%",
                   "MemUsage": "1.5MiB / 64MiB", "MemPerc": "2.34%", "NetIO": "1.23kB / 0B",
                   "BlockIO": "4.3MB / 12B", "PIDs": "3"})
        );
        let table = format_rows("", STATS_TABLE, STATS_HEADERS, &[r]).unwrap();
        assert_eq!(
            table,
            "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O       BLOCK I/O     PIDS\n\
             4f2b8e7c0a1d   web       25.00%    1.5MiB / 64MiB      2.34%     1.23kB / 0B   4.3MB / 12B   3\n"
        );
        // Stopped: zeros.
        let r = row(&t, None, None, false);
        assert_eq!(r["CPUPerc"], "0.00%");
        assert_eq!(r["MemUsage"], "0B / 0B");
        assert_eq!(r["ID"].as_str().unwrap().len(), 64);
    }
}
