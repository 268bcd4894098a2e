//! Names on user-defined networks (Docker's embedded resolver) through aardvark-dns, the
//! resolver netavark uses (Debian's `aardvark-dns`): one process for every network, which
//! answers each network's names on that network's gateway addresses only and forwards other
//! names to the host's resolvers. Its configuration is a directory with a file per network
//! (first line: the addresses it listens on; then one line per container:
//! `ID IPV4S IPV6S NAMES`); SIGHUP reloads it, and it exits by itself once no network file is
//! left. berth writes those files (atomically), starts the process with the first network and
//! signals it on every change.
//!
//! Measured here (tests/network_firewall.rs, `--nocapture`, a loaded 2-core machine): starting
//! it (`run` forks the server) takes 3-13 ms and the first answer comes 15-24 ms later; a
//! name added is answered 16-23 ms after the SIGHUP; a query takes about 40 µs warm; the
//! process is 1.9 MB Pss for all networks. But every reload drops a query: in each of five
//! runs, exactly one of the queries asked (in a loop, 20 ms timeout) in the 300 ms after a
//! SIGHUP got no answer (aardvark-dns 1.4 rebinds its sockets on SIGHUP) - a lookup of
//! glibc's then waits its 5 s timeout. Every container that starts or goes on any network is
//! a reload. The SIGHUP is sent only once the process catches it: sent right after the start
//! it ends the process (SIGHUP's default action), which the first version of the test hit.
//! A container need not wait for any of it on `run`'s path.

use anyhow::{bail, Context, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Debian puts aardvark-dns (a helper of Podman's, not on PATH).
const AARDVARK: &[&str] = &[
    "/usr/lib/podman/aardvark-dns",
    "/usr/libexec/podman/aardvark-dns",
];

/// A container's entry on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The container's full id (aardvark-dns keys its entries by it).
    pub id: String,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// Its name, network aliases and short id: what others resolve it by.
    pub names: Vec<String>,
}

/// berth's aardvark-dns: its configuration directory and the port it serves.
#[derive(Debug, Clone)]
pub struct Dns {
    dir: PathBuf,
    port: u16,
}

fn check_word(what: &str, s: &str) -> Result<()> {
    if s.is_empty()
        || s.len() > 253
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        || s == "aardvark.pid"
    {
        bail!("invalid {what} for the DNS: {s:?}");
    }
    Ok(())
}

impl Dns {
    /// The configuration in `dir` (berth's state: `<root>/dns`), served on port 53.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Dns {
            dir: dir.into(),
            port: 53,
        }
    }

    /// The aardvark-dns program, if installed.
    pub fn binary() -> Option<&'static Path> {
        AARDVARK.iter().map(Path::new).find(|p| p.exists())
    }

    fn lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        // Beside the directory: aardvark-dns reads every file in it as a network.
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.with_extension("lock"))
            .context("DNS lock")?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("cannot lock the DNS state: {e}"))
    }

    /// The running aardvark-dns's pid, if it runs.
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir.join("aardvark.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| r.starts_with('Z'));
        (comm.trim() == "aardvark-dns" && !zombie).then_some(pid)
    }

    /// Sets a network's whole file: where it listens (its gateways) and its containers.
    pub fn set_network(&self, network: &str, listen: &[IpAddr], records: &[Record]) -> Result<()> {
        check_word("network name", network)?;
        if listen.is_empty() {
            bail!("a network's DNS needs an address to listen on");
        }
        let _lock = self.lock()?;
        let mut text = listen
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",");
        text.push('\n');
        for r in records {
            text.push_str(&record_line(r)?);
        }
        write_atomic(&self.dir.join(network), text.as_bytes())?;
        self.reload()
    }

    /// Adds (or replaces) a container's entry on a network that has a file.
    pub fn add(&self, network: &str, record: &Record) -> Result<()> {
        check_word("network name", network)?;
        let line = record_line(record)?;
        let _lock = self.lock()?;
        let path = self.dir.join(network);
        let old = std::fs::read_to_string(&path)
            .with_context(|| format!("no DNS for network {network}"))?;
        let mut text: String = keep_lines(&old, |id| id != record.id);
        text.push_str(&line);
        write_atomic(&path, text.as_bytes())?;
        self.reload()
    }

    /// Removes a container's entries from every network (its `rm`, `disconnect`, or the
    /// sweep after a SIGKILL); returns how many networks had one.
    pub fn remove_container(&self, id: &str) -> Result<usize> {
        check_word("container id", id)?;
        self.remove_where(|i| i == id)
    }

    /// The repair's sweep: removes the entries of every container `live` does not accept;
    /// returns how many networks changed.
    pub fn retain(&self, live: impl Fn(&str) -> bool) -> Result<usize> {
        self.remove_where(|i| !live(i))
    }

    fn remove_where(&self, gone: impl Fn(&str) -> bool) -> Result<usize> {
        let _lock = self.lock()?;
        let mut n = 0;
        for net in self.networks()? {
            let path = self.dir.join(&net);
            let old = std::fs::read_to_string(&path)?;
            let text = keep_lines(&old, |i| !gone(i));
            if text.len() != old.len() {
                write_atomic(&path, text.as_bytes())?;
                n += 1;
            }
        }
        if n > 0 {
            self.reload()?;
        }
        Ok(n)
    }

    /// Removes a network's file; aardvark-dns exits with the last.
    pub fn remove_network(&self, network: &str) -> Result<()> {
        check_word("network name", network)?;
        let _lock = self.lock()?;
        match std::fs::remove_file(self.dir.join(network)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).context("removing a network's DNS"),
        }
        if let Some(pid) = self.pid() {
            self.hup(pid)?;
        }
        Ok(())
    }

    /// The networks that have a file.
    pub fn networks(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).context("the DNS directory"),
        };
        for e in rd {
            let name = e?.file_name().to_string_lossy().into_owned();
            if name != "aardvark.pid" && !name.ends_with(".tmp") {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Sends SIGHUP once the process catches it: sent earlier, right after the start,
    /// it would end the process (SIGHUP's default action).
    fn hup(&self, pid: i32) -> Result<()> {
        let started = std::time::Instant::now();
        while !catches_sighup(pid) {
            if started.elapsed() > std::time::Duration::from_secs(2) {
                bail!("aardvark-dns (pid {pid}) does not handle SIGHUP");
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .context("signalling aardvark-dns")
    }

    /// Signals the running aardvark-dns to read its files again, or starts it.
    fn reload(&self) -> Result<()> {
        if let Some(pid) = self.pid() {
            return self.hup(pid);
        }
        let bin = Dns::binary().context("aardvark-dns is not installed (package aardvark-dns)")?;
        // `run` forks the server and returns; the server writes aardvark.pid.
        let out = Command::new(bin)
            .arg("--config")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("cannot start aardvark-dns")?;
        if !out.status.success() {
            bail!(
                "aardvark-dns failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Stops aardvark-dns (SIGTERM), whatever files are left.
    pub fn stop(&self) -> Result<()> {
        if let Some(pid) = self.pid() {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            )
            .context("stopping aardvark-dns")?;
        }
        Ok(())
    }
}

/// Whether process `pid` has a handler for SIGHUP (`SigCgt` of /proc/PID/status).
fn catches_sighup(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (libc::SIGHUP - 1)) != 0)
}

fn record_line(r: &Record) -> Result<String> {
    check_word("container id", &r.id)?;
    if r.names.is_empty() {
        bail!("a DNS entry needs a name");
    }
    for n in &r.names {
        check_word("name", n)?;
    }
    let join = |v: Vec<String>| v.join(",");
    Ok(format!(
        "{} {} {} {}\n",
        r.id,
        join(r.ipv4.iter().map(|a| a.to_string()).collect()),
        join(r.ipv6.iter().map(|a| a.to_string()).collect()),
        r.names.join(",")
    ))
}

/// The first line and the entries whose id `keep` accepts.
fn keep_lines(text: &str, keep: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for (i, l) in text.lines().enumerate() {
        if i == 0 || keep(l.split(' ').next().unwrap_or_default()) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let r = Record {
            id: "abc".into(),
            ipv4: vec![Ipv4Addr::new(10, 0, 0, 2)],
            ipv6: vec![],
            names: vec!["web".into(), "alias".into()],
        };
        assert_eq!(record_line(&r).unwrap(), "abc 10.0.0.2  web,alias\n");
        let t = "10.0.0.1\nabc 10.0.0.2  web\ndef 10.0.0.3  db\n";
        assert_eq!(
            keep_lines(t, |i| i != "abc"),
            "10.0.0.1\ndef 10.0.0.3  db\n"
        );
        assert!(check_word("name", "a b").is_err());
        assert!(check_word("network name", "aardvark.pid").is_err());
    }
}
