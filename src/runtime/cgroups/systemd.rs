//! The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is a transient
//! scope unit that systemd makes (`StartTransientUnit`, `Delegate=yes`) in the slice that
//! `linux.cgroupsPath` (`slice:prefix:name`) names, holding the container's init from the
//! start. The limits systemd knows as unit properties are given to it, so that a reload of
//! systemd keeps them; all of them are then written to the cgroup files as well, as runc does
//! (systemd rounds some, and knows nothing of the others).
//!
//! The D-Bus client is berth's own, blocking and single-threaded: the start path forks with
//! clone3 and no new stack, which needs a single-threaded process, and the release binary is
//! static. `zbus` runs its connection on an executor thread (its blocking API too), and the
//! `dbus` crate links libdbus-1 dynamically. berth speaks to systemd's private socket
//! (`/run/systemd/private`, root only): one peer, no bus daemon in between, no `Hello` and no
//! match rules, so a start costs an authentication line and two calls (`Subscribe`,
//! `StartTransientUnit`) plus the job's end signal.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::LinuxResources;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::resources::{cpu_weight_from_shares, io_weight_from_blkio, Layout};

/// systemd's private D-Bus socket, served by pid 1 to root.
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";

/// The private socket of the systemd instance that keeps this user's units: pid 1's for
/// root; for any other user, as runc's rootless driver does, the user's own instance
/// (`user@UID.service`, running while the user is logged in or lingers), whose socket is
/// `$XDG_RUNTIME_DIR/systemd/private` (`/run/user/UID/systemd/private` without the variable).
pub fn private_socket() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from(PRIVATE_SOCKET);
    }
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(format!("/run/user/{uid}")), PathBuf::from);
    runtime_dir.join("systemd/private")
}

/// The slice a scope goes in when `linux.cgroupsPath` names none: `system.slice` of pid 1
/// for root, the user instance's `user.slice` for others (as runc).
fn default_slice() -> &'static str {
    if nix::unistd::geteuid().is_root() {
        "system.slice"
    } else {
        "user.slice"
    }
}

/// The cgroup of the systemd instance that keeps this user's units, relative to the
/// hierarchy's root: empty for pid 1 (root), `user.slice/user-UID.slice/user@UID.service`
/// or wherever the user's instance runs, as it says itself (its `ControlGroup` property).
/// A scope's cgroup is its slices' path below this.
pub fn manager_cgroup() -> Result<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Ok(PathBuf::new());
    }
    let mut bus = Bus::connect()?;
    let mut body = Writer::new();
    body.string(MANAGER_INTERFACE);
    body.string("ControlGroup");
    let reply = bus
        .call(PROPERTIES_INTERFACE, "Get", "ss", body)
        .context("systemd: cannot read the user instance's ControlGroup")?;
    let mut r = Reader::new(&reply.body);
    let sig = r.signature()?;
    if sig != "s" {
        bail!("systemd: ControlGroup is of type {sig:?}, not a string");
    }
    let cgroup = r.string()?;
    if cgroup.is_empty() {
        bail!("systemd: the user instance reports no cgroup of its own (is it running in a cgroup v2 hierarchy?)");
    }
    Ok(PathBuf::from(cgroup.trim_start_matches('/')))
}

/// How long a job of systemd's (a scope's start or stop) may take.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// The scope unit a container is in, and the slice that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub slice: String,
    pub scope: String,
}

impl Unit {
    /// The unit `linux.cgroupsPath` names under `--systemd-cgroup`: `slice:prefix:name`
    /// (`system.slice`, or `user.slice` for a non-root user, for an empty slice,
    /// `prefix-name.scope`), or that slice and `berth-ID.scope` without one, as runc does
    /// with its own name.
    pub fn from_cgroups_path(cgroups_path: Option<&str>, id: &str) -> Result<Unit> {
        let Some(s) = cgroups_path else {
            return Ok(Unit {
                slice: default_slice().into(),
                scope: format!("berth-{id}.scope"),
            });
        };
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 3 {
            bail!("linux.cgroupsPath: {s:?} is not of the form slice:prefix:name required with --systemd-cgroup");
        }
        let slice = if parts[0].is_empty() {
            default_slice()
        } else {
            parts[0]
        };
        check_slice(slice)?;
        let name = parts[2];
        if name.is_empty() || name.ends_with(".slice") || name.contains('/') {
            bail!("linux.cgroupsPath: {s:?}: the name after the last ':' must be a scope's name (not empty, no '/', not a .slice)");
        }
        let scope = if parts[1].is_empty() {
            format!("{name}.scope")
        } else {
            format!("{}-{name}.scope", parts[1])
        };
        Ok(Unit {
            slice: slice.to_string(),
            scope,
        })
    }

    /// The scope's cgroup path relative to a hierarchy's root, as systemd makes it: each
    /// dash of a slice's name is a level (`a-b.slice` is `a.slice/a-b.slice`).
    pub fn cgroup_path(&self) -> PathBuf {
        let mut path = slice_path(&self.slice);
        path.push(&self.scope);
        path
    }
}

/// A slice's name as systemd takes it: `NAME.slice`, dash-separated parts none of them empty,
/// or the root slice `-.slice`.
fn check_slice(slice: &str) -> Result<()> {
    if slice == "-.slice" {
        return Ok(());
    }
    let stem = slice
        .strip_suffix(".slice")
        .with_context(|| format!("linux.cgroupsPath: {slice:?} is not a .slice"))?;
    if stem.is_empty() || stem.split('-').any(str::is_empty) || slice.contains('/') {
        bail!("linux.cgroupsPath: {slice:?} is not a valid slice name (empty part, a '--', a leading or trailing '-', or a '/')");
    }
    Ok(())
}

/// The cgroup path of a slice: `a-b-c.slice` is `a.slice/a-b.slice/a-b-c.slice`; the root
/// slice is the hierarchy's root.
pub fn slice_path(slice: &str) -> PathBuf {
    let mut path = PathBuf::new();
    if slice == "-.slice" {
        return path;
    }
    let stem = slice.strip_suffix(".slice").unwrap_or(slice);
    let mut acc = String::new();
    for (i, piece) in stem.split('-').enumerate() {
        if i > 0 {
            acc.push('-');
        }
        acc.push_str(piece);
        path.push(format!("{acc}.slice"));
    }
    path
}

/// A unit property's value, with its D-Bus type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Str(String),
    U64(u64),
    /// `au`: a list of pids.
    U32s(Vec<u32>),
    /// `ay`: a cpu or memory node bitmask.
    Bytes(Vec<u8>),
}

impl Value {
    fn signature(&self) -> &'static str {
        match self {
            Value::Bool(_) => "b",
            Value::Str(_) => "s",
            Value::U64(_) => "t",
            Value::U32s(_) => "au",
            Value::Bytes(_) => "ay",
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Value::Bool(b) => w.u32(u32::from(*b)),
            Value::Str(s) => w.string(s),
            Value::U64(v) => w.u64(*v),
            Value::U32s(list) => {
                let at = w.array_start(4);
                for v in list {
                    w.u32(*v);
                }
                w.array_end(at);
            }
            Value::Bytes(bytes) => {
                let at = w.array_start(1);
                w.buf.extend_from_slice(bytes);
                w.array_end(at);
            }
        }
    }
}

pub type Property = (&'static str, Value);

/// "infinity" for systemd's limits.
const INFINITY: u64 = u64::MAX;

/// The limits of `r` that systemd manages, as unit properties, under the names the host's
/// layout has (cgroup v2's `MemoryMax`, `CPUWeight`, `IOWeight`; v1's `MemoryLimit`,
/// `CPUShares`, `BlockIOWeight`). With `update`, zero fields are left out as they leave the
/// limit unchanged; on create they mean "not set" as well.
pub fn resource_properties(r: &LinuxResources, layout: Layout) -> Result<Vec<Property>> {
    let v2 = layout == Layout::V2;
    let mut props = Vec::new();
    if let Some(m) = r.memory() {
        let limit = m.limit().filter(|l| *l != 0);
        if let Some(l) = limit {
            let v = if l < 0 { INFINITY } else { l as u64 };
            props.push((if v2 { "MemoryMax" } else { "MemoryLimit" }, Value::U64(v)));
        }
        if v2 {
            if let Some(low) = m.reservation().filter(|l| *l > 0) {
                props.push(("MemoryLow", Value::U64(low as u64)));
            }
            // runtime-spec swap is memory+swap; cgroup v2's is the swap alone.
            match (m.swap(), limit) {
                (Some(s), _) if s < 0 => props.push(("MemorySwapMax", Value::U64(INFINITY))),
                (Some(s), Some(l)) if s > 0 && l > 0 => {
                    if s < l {
                        bail!("linux.resources.memory.swap ({s}) must not be below memory.limit ({l})");
                    }
                    props.push(("MemorySwapMax", Value::U64((s - l) as u64)));
                }
                _ => {}
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(shares) = c.shares().filter(|s| *s != 0) {
            if v2 {
                props.push(("CPUWeight", Value::U64(cpu_weight_from_shares(shares))));
            } else {
                props.push(("CPUShares", Value::U64(shares)));
            }
        }
        let period = c.period().filter(|p| *p != 0);
        let quota = c.quota().filter(|q| *q != 0);
        if let Some(p) = period {
            if v2 {
                props.push(("CPUQuotaPeriodUSec", Value::U64(p)));
            }
        }
        if quota.is_some() || period.is_some() {
            props.push((
                "CPUQuotaPerSecUSec",
                Value::U64(quota_per_sec(quota, period.unwrap_or(100_000))),
            ));
        }
        if v2 {
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                let mask = list_to_bitmask(cpus)
                    .with_context(|| format!("linux.resources.cpu.cpus: {cpus:?}"))?;
                props.push(("AllowedCPUs", Value::Bytes(mask)));
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                let mask = list_to_bitmask(mems)
                    .with_context(|| format!("linux.resources.cpu.mems: {mems:?}"))?;
                props.push(("AllowedMemoryNodes", Value::Bytes(mask)));
            }
        }
    }
    if let Some(p) = r.pids() {
        let limit = p.limit();
        if limit > 0 {
            props.push(("TasksMax", Value::U64(limit as u64)));
        } else if limit < 0 {
            props.push(("TasksMax", Value::U64(INFINITY)));
        }
    }
    if let Some(w) = r.block_io().as_ref().and_then(|b| b.weight()) {
        if w != 0 {
            if v2 {
                props.push(("IOWeight", Value::U64(io_weight_from_blkio(w))));
            } else {
                props.push(("BlockIOWeight", Value::U64(u64::from(w))));
            }
        }
    }
    Ok(props)
}

/// `CPUQuotaPerSecUSec` from a quota and period in µs: systemd keeps it in steps of 10 ms
/// and rounds down, which runc rounds up; the exact quota is written to the file afterwards.
fn quota_per_sec(quota: Option<i64>, period: u64) -> u64 {
    match quota {
        Some(q) if q > 0 => {
            let per_sec = (q as u64).saturating_mul(1_000_000) / period.max(1);
            per_sec.div_ceil(10_000) * 10_000
        }
        _ => INFINITY,
    }
}

/// A cpu or memory node list ("0-2,5") as systemd's bitmask: bit n of byte n/8 for each.
pub fn list_to_bitmask(list: &str) -> Result<Vec<u8>> {
    let mut mask = Vec::new();
    for part in list.trim().split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>()?, b.trim().parse::<usize>()?),
            None => {
                let n = part.trim().parse::<usize>()?;
                (n, n)
            }
        };
        if lo > hi || hi >= 8192 {
            bail!("bad range {part:?}");
        }
        for n in lo..=hi {
            if mask.len() <= n / 8 {
                mask.resize(n / 8 + 1, 0);
            }
            mask[n / 8] |= 1 << (n % 8);
        }
    }
    Ok(mask)
}

/// The properties of a new scope holding `pid` in `slice`.
pub fn scope_properties(unit: &Unit, pid: i32, limits: Vec<Property>) -> Vec<Property> {
    let mut props = vec![
        (
            "Description",
            Value::Str(format!("berth container {}", unit.scope)),
        ),
        ("Slice", Value::Str(unit.slice.clone())),
        ("Delegate", Value::Bool(true)),
        // Ordered against nothing, stopped with nothing: the container's life is berth's.
        ("DefaultDependencies", Value::Bool(false)),
        ("PIDs", Value::U32s(vec![pid as u32])),
    ];
    props.extend(limits);
    props
}

/// Starts the scope `unit` with `pid` in it and waits for systemd to have made its cgroup
/// and moved the process there.
pub fn start_scope(unit: &Unit, pid: i32, limits: Vec<Property>) -> Result<()> {
    let mut bus = Bus::connect()?;
    bus.subscribe()?;
    let mut body = Writer::new();
    body.string(&unit.scope);
    body.string("fail");
    write_properties(&mut body, &scope_properties(unit, pid, limits));
    // No auxiliary units.
    let at = body.array_start(8);
    body.array_end(at);
    let reply = bus
        .call_manager("StartTransientUnit", "ssa(sv)a(sa(sv))", body)
        .with_context(|| format!("systemd: cannot start the scope {}", unit.scope))?;
    let job = Reader::new(&reply.body).string()?;
    let result = bus.wait_job(&job)?;
    if result != "done" {
        bail!(
            "systemd: starting the scope {} ended in {result:?} (see journalctl -u {})",
            unit.scope,
            unit.scope
        );
    }
    Ok(())
}

/// Moves `pid` into the scope's cgroup (`AttachProcessesToUnit`, for a delegated unit): where
/// the caller may not write the process into it itself (a non-root user's `exec`).
pub fn attach_process(scope: &str, pid: i32) -> Result<()> {
    let mut bus = Bus::connect()?;
    let mut body = Writer::new();
    body.string(scope);
    body.string(""); // the scope's own cgroup, no sub-cgroup
    let at = body.array_start(4);
    body.u32(pid as u32);
    body.array_end(at);
    bus.call_manager("AttachProcessesToUnit", "ssau", body)
        .with_context(|| format!("systemd: cannot move pid {pid} into {scope}"))?;
    Ok(())
}

/// `update`: sets the unit's properties (for the unit's lifetime, not saved to disk).
pub fn set_properties(scope: &str, props: &[Property]) -> Result<()> {
    if props.is_empty() {
        return Ok(());
    }
    let mut bus = Bus::connect()?;
    let mut body = Writer::new();
    body.string(scope);
    body.u32(1); // runtime
    write_properties(&mut body, props);
    bus.call_manager("SetUnitProperties", "sba(sv)", body)
        .with_context(|| format!("systemd: cannot set the properties of {scope}"))?;
    Ok(())
}

/// Stops the scope (systemd kills what is left in it and removes its cgroup) and forgets it
/// if it failed. A unit already gone is no error.
pub fn stop_scope(scope: &str) -> Result<()> {
    if !private_socket().exists() {
        // No systemd (it never started, or the create failed for want of it): no unit.
        return Ok(());
    }
    let mut bus = Bus::connect()?;
    bus.subscribe()?;
    let mut body = Writer::new();
    body.string(scope);
    body.string("replace");
    match bus.call_manager("StopUnit", "ss", body) {
        Ok(reply) => {
            let job = Reader::new(&reply.body).string()?;
            bus.wait_job(&job)?;
        }
        Err(e) if is_no_such_unit(&e) => {}
        Err(e) => return Err(e.context(format!("systemd: cannot stop the scope {scope}"))),
    }
    // A scope whose processes were killed may be left "failed", and listed: forget it.
    let mut body = Writer::new();
    body.string(scope);
    match bus.call_manager("ResetFailedUnit", "s", body) {
        Ok(_) => Ok(()),
        Err(e) if is_no_such_unit(&e) || is_error(&e, "org.freedesktop.systemd1.UnitNotFailed") => {
            Ok(())
        }
        Err(e) => Err(e.context(format!("systemd: cannot reset the failed scope {scope}"))),
    }
}

fn is_no_such_unit(e: &anyhow::Error) -> bool {
    is_error(e, "org.freedesktop.systemd1.NoSuchUnit")
}

fn is_error(e: &anyhow::Error, name: &str) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<BusError>())
        .any(|b| b.name == name)
}

fn write_properties(w: &mut Writer, props: &[Property]) {
    let at = w.array_start(8);
    for (name, value) in props {
        w.align(8);
        w.string(name);
        w.signature(value.signature());
        value.write(w);
    }
    w.array_end(at);
}

/// An error systemd answered with.
#[derive(Debug)]
pub struct BusError {
    pub name: String,
    pub message: String,
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for BusError {}

// --- the D-Bus wire protocol (little-endian) ----------------------------------------------

/// Marshals D-Bus values into a message body or header.
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn new() -> Writer {
        Writer { buf: Vec::new() }
    }

    fn align(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }

    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    fn signature(&mut self, s: &str) {
        self.u8(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }

    /// Starts an array whose elements align to `elem_align`; returns where its length goes.
    fn array_start(&mut self, elem_align: usize) -> (usize, usize) {
        self.u32(0);
        let len_at = self.buf.len() - 4;
        self.align(elem_align);
        (len_at, self.buf.len())
    }

    fn array_end(&mut self, (len_at, start): (usize, usize)) {
        let len = (self.buf.len() - start) as u32;
        self.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Reads D-Bus values from a message (offsets count from the message's start, as alignment
/// does).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn align(&mut self, n: usize) {
        self.pos = self.pos.div_ceil(n) * n;
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.context("systemd: D-Bus message truncated")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        self.align(4);
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn string(&mut self) -> Result<String> {
        let len = self.u32()? as usize;
        let s = self.take(len + 1)?;
        Ok(String::from_utf8_lossy(&s[..len]).into_owned())
    }

    fn signature(&mut self) -> Result<String> {
        let len = self.u8()? as usize;
        let s = self.take(len + 1)?;
        Ok(String::from_utf8_lossy(&s[..len]).into_owned())
    }
}

/// A message received: its type, header fields that matter here, and body.
#[derive(Debug, Default)]
struct Message {
    kind: u8,
    reply_serial: Option<u32>,
    error_name: Option<String>,
    member: Option<String>,
    signature: String,
    body: Vec<u8>,
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;

/// Parses one whole message (header and body).
fn parse_message(buf: &[u8]) -> Result<Message> {
    let mut r = Reader::new(buf);
    if r.u8()? != b'l' {
        bail!("systemd: D-Bus message not little-endian");
    }
    let kind = r.u8()?;
    let _flags = r.u8()?;
    let _version = r.u8()?;
    let body_len = r.u32()? as usize;
    let _serial = r.u32()?;
    let fields_len = r.u32()? as usize;
    let fields_end = r.pos + fields_len;
    let mut m = Message {
        kind,
        ..Message::default()
    };
    while r.pos < fields_end {
        r.align(8);
        let code = r.u8()?;
        let sig = r.signature()?;
        match sig.as_str() {
            "s" | "o" => {
                let v = r.string()?;
                match code {
                    3 => m.member = Some(v),
                    4 => m.error_name = Some(v),
                    _ => {}
                }
            }
            "g" => {
                let v = r.signature()?;
                if code == 8 {
                    m.signature = v;
                }
            }
            "u" => {
                let v = r.u32()?;
                if code == 5 {
                    m.reply_serial = Some(v);
                }
            }
            other => bail!("systemd: D-Bus header field {code} of unexpected type {other:?}"),
        }
    }
    r.pos = fields_end;
    r.align(8);
    m.body = r.take(body_len)?.to_vec();
    Ok(m)
}

/// The size of the message whose fixed 16-byte header is `head`.
fn message_len(head: &[u8; 16]) -> Result<usize> {
    if head[0] != b'l' {
        bail!("systemd: D-Bus message not little-endian");
    }
    let body = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
    let fields = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes")) as usize;
    let len = (16 + fields).div_ceil(8) * 8 + body;
    if len > 128 << 20 {
        bail!("systemd: D-Bus message of {len} bytes");
    }
    Ok(len)
}

const MANAGER_INTERFACE: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES_INTERFACE: &str = "org.freedesktop.DBus.Properties";

/// A method call to systemd's manager object.
fn method_call(
    serial: u32,
    interface: &str,
    member: &str,
    signature: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(b'l');
    w.u8(METHOD_CALL);
    w.u8(0);
    w.u8(1);
    w.u32(body.len() as u32);
    w.u32(serial);
    let at = w.array_start(8);
    let fields: [(u8, &str, &str); 4] = [
        (1, "o", "/org/freedesktop/systemd1"),
        (2, "s", interface),
        (3, "s", member),
        (6, "s", "org.freedesktop.systemd1"),
    ];
    for (code, sig, value) in fields {
        w.align(8);
        w.u8(code);
        w.signature(sig);
        w.string(value);
    }
    if !signature.is_empty() {
        w.align(8);
        w.u8(8);
        w.signature("g");
        w.signature(signature);
    }
    w.array_end(at);
    w.align(8);
    w.buf.extend_from_slice(body);
    w.buf
}

/// A connection to systemd's private socket.
struct Bus {
    sock: UnixStream,
    serial: u32,
    /// Signals read while waiting for a reply.
    pending: Vec<Message>,
}

impl Bus {
    fn connect() -> Result<Bus> {
        Self::connect_to(&private_socket())
    }

    fn connect_to(path: &Path) -> Result<Bus> {
        let sock = UnixStream::connect(path).map_err(|e| {
            anyhow::anyhow!(
                "--systemd-cgroup: cannot reach systemd at {}: {e} (root needs systemd as \
                 pid 1, another user their own systemd instance, user@UID.service, with \
                 XDG_RUNTIME_DIR set to its runtime directory; without systemd, leave out \
                 --systemd-cgroup)",
                path.display()
            )
        })?;
        sock.set_read_timeout(Some(JOB_TIMEOUT))?;
        let mut bus = Bus {
            sock,
            serial: 0,
            pending: Vec::new(),
        };
        bus.authenticate()
            .with_context(|| format!("systemd: authentication on {} failed", path.display()))?;
        Ok(bus)
    }

    /// SASL EXTERNAL with our uid: the credentials the kernel passes are what is checked.
    /// BEGIN goes with the AUTH line, as sd-bus's own clients send it: systemd's server
    /// reads both at once, and the first message then arrives on its own (sent in a second
    /// write after the OK, it was found to sit unprocessed in systemd's auth buffer: no
    /// answer, under qemu).
    fn authenticate(&mut self) -> Result<()> {
        let uid = nix::unistd::geteuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        self.sock
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\nBEGIN\r\n").as_bytes())?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if self.sock.read(&mut byte)? == 0 || line.len() > 512 {
                bail!("connection closed during authentication");
            }
            line.push(byte[0]);
        }
        if !line.starts_with(b"OK ") {
            bail!("refused: {}", String::from_utf8_lossy(&line).trim());
        }
        Ok(())
    }

    fn read_message(&mut self) -> Result<Message> {
        let mut head = [0u8; 16];
        self.sock.read_exact(&mut head).map_err(|e| {
            anyhow::anyhow!("systemd: no answer on D-Bus within {JOB_TIMEOUT:?}: {e}")
        })?;
        let len = message_len(&head)?;
        let mut buf = vec![0u8; len];
        buf[..16].copy_from_slice(&head);
        self.sock.read_exact(&mut buf[16..])?;
        parse_message(&buf)
    }

    fn call_manager(&mut self, member: &str, signature: &str, body: Writer) -> Result<Message> {
        self.call(MANAGER_INTERFACE, member, signature, body)
    }

    /// Calls `interface.member` on systemd's manager object and waits for the answer.
    fn call(
        &mut self,
        interface: &str,
        member: &str,
        signature: &str,
        body: Writer,
    ) -> Result<Message> {
        self.serial += 1;
        let serial = self.serial;
        self.sock.write_all(&method_call(
            serial, interface, member, signature, &body.buf,
        ))?;
        loop {
            let m = self.read_message()?;
            match m.kind {
                METHOD_RETURN if m.reply_serial == Some(serial) => return Ok(m),
                ERROR if m.reply_serial == Some(serial) => {
                    let message = if m.signature.starts_with('s') {
                        Reader::new(&m.body).string().unwrap_or_default()
                    } else {
                        String::new()
                    };
                    return Err(BusError {
                        name: m.error_name.unwrap_or_default(),
                        message,
                    }
                    .into());
                }
                SIGNAL => self.pending.push(m),
                _ => {}
            }
        }
    }

    /// Asks for the manager's signals (JobRemoved among them).
    fn subscribe(&mut self) -> Result<()> {
        self.call_manager("Subscribe", "", Writer::new())
            .context("systemd: Subscribe failed")?;
        Ok(())
    }

    /// Waits for `JobRemoved` of `job`; returns its result ("done", "failed", ...).
    fn wait_job(&mut self, job: &str) -> Result<String> {
        let mut pending = std::mem::take(&mut self.pending).into_iter();
        loop {
            let m = match pending.next() {
                Some(m) => m,
                None => self.read_message()?,
            };
            if m.kind != SIGNAL || m.member.as_deref() != Some("JobRemoved") {
                continue;
            }
            // JobRemoved(u id, o job, s unit, s result)
            let mut r = Reader::new(&m.body);
            r.u32()?;
            if r.string()? == job {
                r.string()?;
                return r.string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBlockIoBuilder, LinuxResourcesBuilder};
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder};

    #[test]
    fn units_from_cgroups_path() {
        let u = Unit::from_cgroups_path(
            Some("kubepods-besteffort-pod1.slice:cri-containerd:abc"),
            "c",
        )
        .unwrap();
        assert_eq!(u.slice, "kubepods-besteffort-pod1.slice");
        assert_eq!(u.scope, "cri-containerd-abc.scope");
        assert_eq!(
            u.cgroup_path(),
            Path::new("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope")
        );
        let u = Unit::from_cgroups_path(Some("::abc"), "c").unwrap();
        let slice = default_slice();
        assert_eq!(u.cgroup_path(), Path::new(slice).join("abc.scope"));
        let u = Unit::from_cgroups_path(None, "c1").unwrap();
        assert_eq!(u.cgroup_path(), Path::new(slice).join("berth-c1.scope"));
        let u = Unit::from_cgroups_path(Some("-.slice:p:n"), "c").unwrap();
        assert_eq!(u.cgroup_path(), Path::new("p-n.scope"));
        for bad in [
            "/abs/path",
            "a.slice:b",
            "a--b.slice:p:n",
            "-a.slice:p:n",
            "a:p:n",
            "a.slice:p:",
            "a.slice:p:x.slice",
        ] {
            let e = Unit::from_cgroups_path(Some(bad), "c").unwrap_err();
            assert!(
                format!("{e:#}").contains("linux.cgroupsPath"),
                "{bad}: {e:#}"
            );
        }
    }

    #[test]
    fn bitmasks_as_systemd_reads_them() {
        assert_eq!(list_to_bitmask("0").unwrap(), [1]);
        assert_eq!(list_to_bitmask("0-2,5").unwrap(), [0b10_0111]);
        assert_eq!(list_to_bitmask("9").unwrap(), [0, 2]);
        assert!(list_to_bitmask("3-1").is_err());
        assert!(list_to_bitmask("x").is_err());
    }

    #[test]
    fn limits_as_unit_properties() {
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .reservation(32 << 20)
                    .swap(96 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(25_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(20).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let props = resource_properties(&r, Layout::V2).unwrap();
        let get = |n: &str| props.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone());
        assert_eq!(get("MemoryMax"), Some(Value::U64(64 << 20)));
        assert_eq!(get("MemoryLow"), Some(Value::U64(32 << 20)));
        assert_eq!(get("MemorySwapMax"), Some(Value::U64(32 << 20)));
        assert_eq!(get("CPUWeight"), Some(Value::U64(39)));
        assert_eq!(get("CPUQuotaPeriodUSec"), Some(Value::U64(100_000)));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Value::U64(250_000)));
        assert_eq!(get("AllowedCPUs"), Some(Value::Bytes(vec![1])));
        assert_eq!(get("AllowedMemoryNodes"), Some(Value::Bytes(vec![1])));
        assert_eq!(get("TasksMax"), Some(Value::U64(20)));
        assert_eq!(get("IOWeight"), Some(Value::U64(io_weight_from_blkio(500))));
        let v1 = resource_properties(&r, Layout::V1).unwrap();
        let names: Vec<&str> = v1.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "MemoryLimit",
                "CPUShares",
                "CPUQuotaPerSecUSec",
                "TasksMax",
                "BlockIOWeight"
            ]
        );
        // Rounded up to systemd's 10 ms steps; no quota is infinity.
        assert_eq!(quota_per_sec(Some(12_345), 100_000), 130_000);
        assert_eq!(quota_per_sec(None, 100_000), INFINITY);
        assert_eq!(quota_per_sec(Some(-1), 100_000), INFINITY);
    }

    /// The bytes of a StartTransientUnit call, checked against the D-Bus wire format by hand:
    /// header fields and body aligned from the message's start.
    #[test]
    fn encodes_a_method_call() {
        let mut body = Writer::new();
        body.string("x.scope");
        body.string("fail");
        write_properties(
            &mut body,
            &[
                ("Delegate", Value::Bool(true)),
                ("PIDs", Value::U32s(vec![7])),
                ("MemoryMax", Value::U64(1 << 20)),
            ],
        );
        let at = body.array_start(8);
        body.array_end(at);
        let msg = method_call(
            3,
            MANAGER_INTERFACE,
            "StartTransientUnit",
            "ssa(sv)a(sa(sv))",
            &body.buf,
        );
        assert_eq!(&msg[..4], b"l\x01\x00\x01");
        assert_eq!(
            message_len(&msg[..16].try_into().unwrap()).unwrap(),
            msg.len()
        );
        let head_len = msg.len() - body.buf.len();
        assert_eq!(head_len % 8, 0);
        // The body: "x.scope", "fail", then the properties' array.
        let b = &body.buf;
        assert_eq!(&b[..12], b"\x07\0\0\0x.scope\0");
        assert_eq!(&b[12..21], b"\x04\0\0\0fail\0");
        // Array length at 24, elements from 32 (8-aligned): "Delegate" as (sv) with b true.
        let len = u32::from_le_bytes(b[24..28].try_into().unwrap()) as usize;
        assert_eq!(&b[32..45], b"\x08\0\0\0Delegate\0");
        assert_eq!(&b[45..48], b"\x01b\0");
        assert_eq!(&b[48..52], &1u32.to_le_bytes());
        // Then PIDs (au, one element) and MemoryMax (t, 8-aligned).
        assert_eq!(&b[56..65], b"\x04\0\0\0PIDs\0");
        assert_eq!(&b[65..69], b"\x02au\0");
        assert_eq!(&b[72..76], &4u32.to_le_bytes());
        assert_eq!(&b[76..80], &7u32.to_le_bytes());
        assert_eq!(&b[80..94], b"\x09\0\0\0MemoryMax\0");
        assert_eq!(&b[94..97], b"\x01t\0");
        assert_eq!(&b[104..112], &(1u64 << 20).to_le_bytes());
        assert_eq!(32 + len, 112);
        // The empty auxiliary array: its length, padding to 8, nothing.
        assert_eq!(&b[112..116], &0u32.to_le_bytes());
        assert_eq!(b.len(), 120);
        // The header parses back: its signature, and nothing else expected of a call.
        let m = parse_message(&msg).unwrap();
        assert_eq!(m.kind, METHOD_CALL);
        assert_eq!(m.member.as_deref(), Some("StartTransientUnit"));
        assert_eq!(m.signature, "ssa(sv)a(sa(sv))");
        assert_eq!(m.body, body.buf);
    }

    #[test]
    fn without_systemd_the_error_names_it() {
        let e = Bus::connect_to(Path::new("/nonexistent/systemd/private"))
            .err()
            .unwrap();
        let text = format!("{e:#}");
        assert!(
            text.contains("--systemd-cgroup") && text.contains("systemd"),
            "{text}"
        );
    }
}
