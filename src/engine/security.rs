//! The security side of `container run|create`: Docker's defaults and the flags that change
//! them (`--privileged`, `--cap-add/--cap-drop`, `--security-opt`, `--device`,
//! `--device-cgroup-rule`, `--ulimit`, `--sysctl`), turned into the runtime spec as Docker turns
//! them into its own, and into the `HostConfig` fields `inspect` shows.
//!
//! What a container gets from [`apply_security`] without any flag, as with Docker:
//! - Docker's 14 capabilities, in the bounding, effective and permitted sets for root; for
//!   another user in the bounding set only (as execve(2) gives a non-root user nothing);
//! - Docker's default seccomp profile ([`super::seccomp_default`]), decided from that set;
//! - `no_new_privs` off, Docker's masked and read-only paths, /sys read-only;
//! - the device rules of Docker's default spec (the runtime core adds runc's usual ones);
//! - no rlimits of its own (the container inherits berth's, as Docker's inherit containerd's).
//!
//! `--privileged` gives every capability the kernel knows, no seccomp and no AppArmor, no
//! masked or read-only paths, a writable /sys and cgroup mount, and every device node of the
//! host's /dev with a device rule allowing all.
//!
//! Not applied here: SELinux labels (`--security-opt label=...` is accepted and recorded, as
//! Docker does on a host without SELinux), and Docker's `docker-default` AppArmor profile
//! (berth does not load profiles; `apparmor=NAME` is applied when the host runs AppArmor).

use super::resources::ResourceFlags;
use super::seccomp_default::{self, default_seccomp, parse_profile, ResolveContext};
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{
    LinuxCapabilities, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, PosixRlimit, Spec,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Docker's security flags of `run` and `create`.
#[derive(clap::Args, Serialize, Deserialize, Clone, Default, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct SecurityFlags {
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "list")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "list")]
    pub cap_drop: Vec<String>,
    /// Security Options
    #[arg(long = "security-opt", value_name = "list")]
    pub security_opt: Vec<String>,
    /// Add a host device to the container
    #[arg(long = "device", value_name = "list")]
    pub device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list
    #[arg(long = "device-cgroup-rule", value_name = "list")]
    pub device_cgroup_rule: Vec<String>,
    /// Ulimit options
    #[arg(long = "ulimit", value_name = "ulimit")]
    pub ulimit: Vec<String>,
    /// Sysctl options
    #[arg(long = "sysctl", value_name = "map")]
    pub sysctl: Vec<String>,
    /// Set by the engine, not a flag: the container shares the host's pid or ipc namespace
    /// (Docker then records `label=disable` in SecurityOpt).
    #[arg(skip)]
    #[serde(skip)]
    pub shares_host_pid_or_ipc: bool,
}

/// Docker's error for a bad flag value (the wording of its command-line parser).
fn bad_flag(flag: &str, value: &str, reason: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("invalid argument {value:?} for \"{flag}\" flag: {reason}")
}

// ---------------------------------------------------------------------------------------------
// Capabilities

/// The capabilities Docker gives a container by default.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability a container can be given (`--privileged`, `--cap-add ALL`), by number:
/// those the running kernel knows, less any berth's own bounding set lacks (when berth itself
/// runs confined, asking for those would make capset(2) fail the container's start).
pub fn all_capabilities() -> Vec<String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse::<u8>().ok());
    let bounding = ::caps::read(None, ::caps::CapSet::Bounding).ok();
    crate::runtime::caps::known_capabilities()
        .into_iter()
        .filter(|c| last.is_none_or(|last| c.index() <= last))
        .filter(|c| bounding.as_ref().is_none_or(|b| b.contains(c)))
        .map(|c| c.to_string())
        .collect()
}

/// Docker's client-side normalization: upper case, a `CAP_` prefix (but for `ALL`), and `ALL`
/// alone when present. These are the `CapAdd` and `CapDrop` that `inspect` shows (a
/// capability both added and dropped stays in both lists, as with Docker; it is added).
pub fn cap_add_drop(flags: &SecurityFlags) -> (Vec<String>, Vec<String>) {
    let normalize = |caps: &[String]| -> Vec<String> {
        let mut out: Vec<String> = caps
            .iter()
            .map(|c| {
                let c = c.trim().to_uppercase();
                if c == "ALL" || c.starts_with("CAP_") {
                    c
                } else {
                    format!("CAP_{c}")
                }
            })
            .collect();
        if out.iter().any(|c| c == "ALL") {
            out = vec!["ALL".to_string()];
        }
        out
    };
    (normalize(&flags.cap_add), normalize(&flags.cap_drop))
}

/// Checks that every name is a capability (Docker: `unknown capability: "CAP_FOO"`).
fn check_capability_names(caps: &[String], field: &str) -> Result<()> {
    let known: Vec<String> = crate::runtime::caps::known_capabilities()
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    for c in caps {
        if c != "ALL" && !known.contains(c) {
            bail!("invalid {field}: unknown capability: {c:?}");
        }
    }
    Ok(())
}

/// The container's capability set after `--privileged`, `--cap-add` and `--cap-drop`
/// (Docker's `TweakCapabilities`).
pub fn effective_capabilities(flags: &SecurityFlags) -> Result<Vec<String>> {
    let (add, drop) = cap_add_drop(flags);
    check_capability_names(&add, "CapAdd")?;
    check_capability_names(&drop, "CapDrop")?;
    if flags.privileged {
        return Ok(all_capabilities());
    }
    let mut caps: Vec<String> = if add.iter().any(|c| c == "ALL") {
        all_capabilities()
            .into_iter()
            .filter(|c| !drop.contains(c))
            .collect()
    } else if drop.iter().any(|c| c == "ALL") {
        add
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .chain(add)
            .collect()
    };
    let mut seen = std::collections::HashSet::new();
    caps.retain(|c| seen.insert(c.clone()));
    Ok(caps)
}

// ---------------------------------------------------------------------------------------------
// --security-opt

/// Which seccomp profile a container gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeccompChoice {
    /// Docker's default profile (no option, or `seccomp=builtin`).
    Default,
    Unconfined,
    /// A profile in Docker's format: a file's path, or its content as Docker's client sends
    /// it (compact JSON).
    Profile(String),
}

/// `--security-opt` values, parsed as Docker's daemon parses them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityOptions {
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
    pub apparmor: Option<String>,
    pub labels: Vec<String>,
    /// `systempaths=unconfined`: no masked or read-only paths.
    pub unconfined_system_paths: bool,
    /// `writable-cgroups=true`: the cgroup mount read-write.
    pub writable_cgroups: bool,
}

/// Parses the `--security-opt` list (the client's check and the daemon's, with their errors).
pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOptions> {
    let mut parsed = SecurityOptions {
        no_new_privileges: false,
        seccomp: SeccompChoice::Default,
        apparmor: None,
        labels: Vec::new(),
        unconfined_system_paths: false,
        writable_cgroups: false,
    };
    for opt in opts {
        if opt == "no-new-privileges" {
            parsed.no_new_privileges = true;
            continue;
        }
        if opt == "systempaths=unconfined" {
            parsed.unconfined_system_paths = true;
            continue;
        }
        // `key=value`, or the old `key:value`.
        let (key, value) = match opt.split_once('=').or_else(|| opt.split_once(':')) {
            Some((k, v)) if !v.is_empty() => (k, v),
            _ => bail!("Invalid --security-opt: {opt:?}"),
        };
        let invalid = || anyhow!("invalid --security-opt 2: {opt:?}");
        match key {
            "label" => parsed.labels.push(value.to_string()),
            "apparmor" => parsed.apparmor = Some(value.to_string()),
            "seccomp" => {
                parsed.seccomp = match value {
                    "builtin" => SeccompChoice::Default,
                    "unconfined" => SeccompChoice::Unconfined,
                    profile => SeccompChoice::Profile(profile.to_string()),
                }
            }
            "no-new-privileges" => {
                parsed.no_new_privileges = parse_go_bool(value).ok_or_else(invalid)?
            }
            "writable-cgroups" => {
                parsed.writable_cgroups = parse_go_bool(value).ok_or_else(invalid)?
            }
            _ => return Err(invalid()),
        }
    }
    Ok(parsed)
}

/// Go's strconv.ParseBool.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl SecurityFlags {
    /// Checks every flag, and replaces `seccomp=FILE` by the file's content as compact JSON,
    /// as Docker's client does before it sends the options: the container keeps the profile
    /// it was created with whatever becomes of the file.
    pub fn prepare(&mut self) -> Result<()> {
        for opt in self.security_opt.iter_mut() {
            let Some(path) = opt
                .strip_prefix("seccomp=")
                .or_else(|| opt.strip_prefix("seccomp:"))
            else {
                continue;
            };
            if matches!(path, "builtin" | "unconfined" | "") || path.starts_with('{') {
                continue;
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow!("opening seccomp profile ({path}) failed: {e}"))?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| anyhow!("compacting json for seccomp profile ({path}) failed: {e}"))?;
            *opt = format!("seccomp={value}");
        }
        self.validate()
    }

    /// Checks every flag without changing anything (Docker's client and daemon checks).
    pub fn validate(&self) -> Result<()> {
        effective_capabilities(self)?;
        let opts = parse_security_opts(&self.security_opt)?;
        if let SeccompChoice::Profile(profile) = &opts.seccomp {
            load_profile_text(profile)?;
        }
        for d in &self.device {
            parse_device(d)?;
        }
        for r in &self.device_cgroup_rule {
            parse_device_cgroup_rule(r)?;
        }
        parse_ulimits(&self.ulimit)?;
        parse_sysctls(&self.sysctl)?;
        Ok(())
    }
}

/// The text of a profile given as `seccomp=...`: its content, or the file it names.
fn load_profile_text(profile: &str) -> Result<String> {
    if profile.starts_with('{') {
        return Ok(profile.to_string());
    }
    std::fs::read_to_string(profile)
        .map_err(|e| anyhow!("opening seccomp profile ({profile}) failed: {e}"))
}

// ---------------------------------------------------------------------------------------------
// --device, --device-cgroup-rule

/// A `--device HOST[:CONTAINER][:PERMISSIONS]` mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// `r`, `w`, `m`, each at most once, in any order.
fn valid_device_mode(mode: &str) -> bool {
    !mode.is_empty()
        && mode.len() <= 3
        && mode.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        && !mode.char_indices().any(|(i, c)| mode[i + 1..].contains(c))
}

/// Go's path.Clean for absolute and relative paths.
fn clean_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Parses `--device` as Docker's client does (its path check, then the mapping), with its
/// errors, which name the value only (`bad format for path: X`, `X is not an absolute path`).
pub fn parse_device(spec: &str) -> Result<DeviceMapping> {
    let bad = |reason: String| anyhow!(reason);
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() > 3 || parts[0].is_empty() {
        return Err(bad(format!("bad format for path: {spec}")));
    }
    let mut permissions = "rwm".to_string();
    let mut container_path = None;
    match parts.len() {
        3 => {
            if !valid_device_mode(parts[2]) {
                return Err(bad(format!("bad mode specified: {}", parts[2])));
            }
            permissions = parts[2].to_string();
            container_path = Some(parts[1]);
        }
        2 => {
            if valid_device_mode(parts[1]) {
                permissions = parts[1].to_string();
            } else {
                container_path = Some(parts[1]);
            }
        }
        _ => {}
    }
    let in_container = container_path.unwrap_or(parts[0]);
    if !in_container.starts_with('/') {
        return Err(bad(format!("{in_container} is not an absolute path")));
    }
    Ok(DeviceMapping {
        path_on_host: parts[0].to_string(),
        path_in_container: if container_path.is_some() {
            clean_path(in_container)
        } else {
            parts[0].to_string()
        },
        cgroup_permissions: permissions,
    })
}

/// A device node as the spec wants it, read from the host.
fn device_from_path(
    host: &Path,
    in_container: &Path,
    permissions: &str,
) -> Option<(LinuxDevice, LinuxDeviceCgroup)> {
    let meta = std::fs::symlink_metadata(host).ok()?;
    let typ = if meta.file_type().is_char_device() {
        LinuxDeviceType::C
    } else if meta.file_type().is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
    let mut device = LinuxDevice::default();
    device.set_path(in_container.to_path_buf());
    device.set_typ(typ);
    device.set_major(major);
    device.set_minor(minor);
    device.set_file_mode(Some(meta.mode() & 0o7777));
    device.set_uid(Some(meta.uid()));
    device.set_gid(Some(meta.gid()));
    let rule = device_rule(true, typ, Some(major), Some(minor), permissions);
    Some((device, rule))
}

fn device_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(allow);
    rule.set_typ(Some(typ));
    rule.set_major(major);
    rule.set_minor(minor);
    rule.set_access(Some(access.to_string()));
    rule
}

/// The devices of one `--device` mapping: the node itself, or every node under a directory
/// (Docker's `DevicesFromPath`). A symlink on the host is followed, as Docker does.
pub fn devices_from_mapping(m: &DeviceMapping) -> Result<Vec<(LinuxDevice, LinuxDeviceCgroup)>> {
    let host = Path::new(&m.path_on_host);
    let resolved = std::fs::canonicalize(host).unwrap_or_else(|_| host.to_path_buf());
    if let Some(found) = device_from_path(
        &resolved,
        Path::new(&m.path_in_container),
        &m.cgroup_permissions,
    ) {
        return Ok(vec![found]);
    }
    let meta = std::fs::metadata(&resolved).map_err(|e| {
        anyhow!(
            "error gathering device information while adding custom device {:?}: {}",
            m.path_on_host,
            io_reason(&e)
        )
    })?;
    let mut found = Vec::new();
    if meta.is_dir() {
        walk_devices(&resolved, &mut |path| {
            let Ok(rest) = path.strip_prefix(&resolved) else {
                return;
            };
            let target = Path::new(&m.path_in_container).join(rest);
            if let Some(device) = device_from_path(path, &target, &m.cgroup_permissions) {
                found.push(device);
            }
        });
    }
    if found.is_empty() {
        bail!(
            "error gathering device information while adding custom device {:?}: not a device node",
            m.path_on_host
        );
    }
    Ok(found)
}

/// An io::Error's reason in Go's words ("no such file or directory").
fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_lowercase(),
        None => e.to_string(),
    }
}

/// Calls `visit` on every entry under `dir`, without following symlinks, skipping what
/// cannot be read.
fn walk_devices(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk_devices(&path, visit),
            Ok(_) => visit(&path),
            Err(_) => {}
        }
    }
}

/// Every device node of the host's /dev, as runc's `HostDevices` lists them for a privileged
/// container: not under pts, shm, fd, mqueue (the container has its own), nor /dev/console.
pub fn host_devices() -> Vec<LinuxDevice> {
    fn walk(dir: &Path, out: &mut Vec<LinuxDevice>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                if !matches!(
                    name.to_str(),
                    Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
                ) {
                    walk(&path, out);
                }
                continue;
            }
            if name == "console" {
                continue;
            }
            if let Some((device, _)) = device_from_path(&path, &path, "rwm") {
                out.push(device);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/dev"), &mut out);
    out
}

/// Parses a `--device-cgroup-rule` (`TYPE MAJOR:MINOR ACCESS`, `*` for any number).
pub fn parse_device_cgroup_rule(text: &str) -> Result<LinuxDeviceCgroup> {
    let bad = || {
        bad_flag(
            "--device-cgroup-rule",
            text,
            format!("invalid device cgroup format '{text}'"),
        )
    };
    let fields: Vec<&str> = text.split(' ').collect();
    let [typ, numbers, access] = fields[..] else {
        return Err(bad());
    };
    let typ = match typ {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return Err(bad()),
    };
    let number = |n: &str| -> Result<Option<i64>> {
        if n == "*" {
            return Ok(None);
        }
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        n.parse().map(Some).map_err(|_| bad())
    };
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    let (major, minor) = (number(major)?, number(minor)?);
    if access.is_empty()
        || access.len() > 3
        || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
    {
        return Err(bad());
    }
    Ok(device_rule(true, typ, major, minor, access))
}

/// The device rules of Docker's default spec: deny all, allow the standard nodes, deny
/// /dev/fuse (10:229) unless a later rule allows it.
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false);
    deny_all.set_access(Some("rwm".into()));
    let mut rules = vec![deny_all];
    for (major, minor) in [(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)] {
        rules.push(device_rule(
            true,
            LinuxDeviceType::C,
            Some(major),
            Some(minor),
            "rwm",
        ));
    }
    rules.push(device_rule(
        false,
        LinuxDeviceType::C,
        Some(10),
        Some(229),
        "rwm",
    ));
    rules
}

// ---------------------------------------------------------------------------------------------
// --ulimit, --sysctl

/// A `--ulimit NAME=SOFT[:HARD]`; -1 is unlimited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

const ULIMIT_NAMES: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Go's strconv.ParseInt error text.
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

/// Parses one `--ulimit` as Docker does (go-units' ParseUlimit).
pub fn parse_ulimit(text: &str) -> Result<Ulimit> {
    let bad = |reason: String| bad_flag("--ulimit", text, reason);
    let Some((name, values)) = text.split_once('=') else {
        return Err(bad(format!("invalid ulimit argument: {text}")));
    };
    if !ULIMIT_NAMES.contains(&name) {
        return Err(bad(format!("invalid ulimit type: {name}")));
    }
    let limits: Vec<&str> = values.split(':').collect();
    let (soft, hard) = match limits[..] {
        [soft] => {
            let soft = parse_go_int(soft).map_err(bad)?;
            (soft, soft)
        }
        [soft, hard] => {
            let hard = parse_go_int(hard).map_err(bad)?;
            (parse_go_int(soft).map_err(bad)?, hard)
        }
        _ => {
            return Err(bad(format!(
                "too many limit value arguments - {values}, can only have up to two, `soft[:hard]`"
            )))
        }
    };
    if hard != -1 && soft > hard {
        return Err(bad(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// All `--ulimit`s, a later one of a name replacing an earlier one (Docker keeps a map).
pub fn parse_ulimits(list: &[String]) -> Result<Vec<Ulimit>> {
    let mut out: Vec<Ulimit> = Vec::new();
    for text in list {
        let u = parse_ulimit(text)?;
        match out.iter_mut().find(|o| o.name == u.name) {
            Some(existing) => *existing = u,
            None => out.push(u),
        }
    }
    Ok(out)
}

/// The sysctls Docker's client lets through: the IPC namespace's and the network's.
fn sysctl_allowed(key: &str) -> bool {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    IPC.contains(&key) || key.starts_with("net.") || key.starts_with("fs.mqueue.")
}

/// Parses the `--sysctl K=V` list (a later key replaces an earlier one).
pub fn parse_sysctls(list: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for text in list {
        let bad = || bad_flag("--sysctl", text, format!("sysctl '{text}' is not allowed"));
        let (key, value) = text.split_once('=').ok_or_else(bad)?;
        if !sysctl_allowed(key) {
            return Err(bad());
        }
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The spec

/// Docker's masked paths.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|t| t.trim_start().starts_with('Y'))
}

/// Turns `spec` (berth's template with the image's process, see
/// `image::bundle::spec_from_image`; the process user must be set already) into what Docker
/// gives a container with these flags. Call it before resource flags and mounts are added.
pub fn apply_security(spec: &mut Spec, f: &SecurityFlags) -> Result<()> {
    let caps = effective_capabilities(f)?;
    let opts = parse_security_opts(&f.security_opt)?;
    let ulimits = parse_ulimits(&f.ulimit)?;
    let sysctls = parse_sysctls(&f.sysctl)?;
    let mappings = f
        .device
        .iter()
        .map(|d| parse_device(d))
        .collect::<Result<Vec<_>>>()?;
    let extra_rules = f
        .device_cgroup_rule
        .iter()
        .map(|r| parse_device_cgroup_rule(r))
        .collect::<Result<Vec<_>>>()?;

    let mut process = spec.process().clone().context("the spec has no process")?;
    let capabilities: LinuxCapabilities = if process.user().uid() == 0 {
        serde_json::from_value(json!({"bounding": caps, "effective": caps, "permitted": caps}))
    } else {
        // What execve(2) gives a non-root user: nothing but the bounding set.
        serde_json::from_value(json!({"bounding": caps}))
    }
    .context("capability names")?;
    process.set_capabilities(Some(capabilities));
    process.set_no_new_privileges(Some(opts.no_new_privileges));
    let apparmor = match opts.apparmor.as_deref() {
        _ if f.privileged => None,
        Some("unconfined") | None => None,
        Some(profile) => apparmor_enabled().then(|| profile.to_string()),
    };
    process.set_apparmor_profile(apparmor);
    let rlimits: Vec<PosixRlimit> = ulimits
        .iter()
        .map(|u| {
            serde_json::from_value(json!({
                "type": format!("RLIMIT_{}", u.name.to_uppercase()),
                // -1 (unlimited) is RLIM_INFINITY, all bits set.
                "soft": u.soft as u64,
                "hard": u.hard as u64,
            }))
            .with_context(|| format!("--ulimit {}", u.name))
        })
        .collect::<Result<_>>()?;
    process.set_rlimits((!rlimits.is_empty()).then_some(rlimits));
    spec.set_process(Some(process));

    let seccomp = match &opts.seccomp {
        _ if f.privileged => None,
        SeccompChoice::Unconfined => None,
        SeccompChoice::Default => Some(default_seccomp(&caps)),
        SeccompChoice::Profile(profile) => {
            let text = load_profile_text(profile)?;
            let profile = parse_profile(&text)?;
            seccomp_default::resolve(&profile, &ResolveContext::host(caps.clone()))?
        }
    };

    // Privileged: /sys and the cgroup mount writable (Docker clears their "ro").
    let writable_sys = f.privileged;
    let writable_cgroup = f.privileged || opts.writable_cgroups;
    if let Some(mounts) = spec.mounts_mut() {
        for m in mounts.iter_mut() {
            let is_sys = m.destination() == Path::new("/sys");
            let is_cgroup =
                m.typ().as_deref() == Some("cgroup") || m.typ().as_deref() == Some("cgroup2");
            if (is_sys && writable_sys) || (is_cgroup && writable_cgroup) {
                if let Some(options) = m.options_mut() {
                    options.retain(|o| o != "ro");
                }
            }
        }
    }

    let mut devices = Vec::new();
    let mut rules = Vec::new();
    if f.privileged {
        devices = host_devices();
        for m in &mappings {
            // The host's /dev is there already; a mapping to another path is added.
            if m.path_on_host != m.path_in_container {
                let all = DeviceMapping {
                    cgroup_permissions: "rwm".into(),
                    ..m.clone()
                };
                devices.extend(devices_from_mapping(&all)?.into_iter().map(|(d, _)| d));
            }
        }
        let mut allow_all = LinuxDeviceCgroup::default();
        allow_all.set_allow(true);
        allow_all.set_access(Some("rwm".into()));
        rules.push(allow_all);
    } else {
        rules = default_device_rules();
        for m in &mappings {
            for (device, rule) in devices_from_mapping(m)? {
                devices.push(device);
                rules.push(rule);
            }
        }
        rules.extend(extra_rules);
    }

    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    linux.set_seccomp(seccomp);
    let confined_paths = !f.privileged && !opts.unconfined_system_paths;
    linux.set_masked_paths(confined_paths.then(|| MASKED_PATHS.map(String::from).to_vec()));
    linux.set_readonly_paths(confined_paths.then(|| READONLY_PATHS.map(String::from).to_vec()));
    linux.set_devices((!devices.is_empty()).then_some(devices));
    let mut resources = linux.resources().clone().unwrap_or_default();
    resources.set_devices(Some(rules));
    linux.set_resources(Some(resources));
    let mut all_sysctls: HashMap<String, String> = linux.sysctl().clone().unwrap_or_default();
    all_sysctls.extend(sysctls);
    linux.set_sysctl((!all_sysctls.is_empty()).then_some(all_sysctls));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// inspect

impl SecurityFlags {
    /// Docker's `HostConfig` fields for these flags, with Docker's zero values: Privileged,
    /// CapAdd, CapDrop, SecurityOpt, Devices, DeviceCgroupRules, Ulimits, Sysctls (left out
    /// when empty, as Docker does), MaskedPaths, ReadonlyPaths. `host_pid_or_ipc` is whether
    /// the container shares the host's pid or ipc namespace (Docker then records
    /// `label=disable`, as for a privileged one).
    pub fn host_config_fields(&self, host_pid_or_ipc: bool) -> Map<String, Value> {
        let mut map = Map::new();
        let (cap_add, cap_drop) = cap_add_drop(self);
        let list_or_null = |v: Vec<String>| if v.is_empty() { Value::Null } else { json!(v) };
        map.insert("Privileged".into(), json!(self.privileged));
        map.insert("CapAdd".into(), list_or_null(cap_add));
        map.insert("CapDrop".into(), list_or_null(cap_drop));
        // Docker's client takes systempaths=unconfined out of SecurityOpt (it becomes empty
        // MaskedPaths and ReadonlyPaths instead).
        let mut security_opt: Vec<String> = self
            .security_opt
            .iter()
            .filter(|o| o.as_str() != "systempaths=unconfined")
            .cloned()
            .collect();
        // Unless a label option is given, Docker adds this one.
        let has_label = security_opt
            .iter()
            .any(|o| o.split('=').next() == Some("label"));
        if !has_label && (self.privileged || host_pid_or_ipc) {
            security_opt.push("label=disable".into());
        }
        map.insert("SecurityOpt".into(), list_or_null(security_opt));
        let devices: Vec<Value> = self
            .device
            .iter()
            .filter_map(|d| parse_device(d).ok())
            .map(|d| {
                json!({
                    "PathOnHost": d.path_on_host,
                    "PathInContainer": d.path_in_container,
                    "CgroupPermissions": d.cgroup_permissions,
                })
            })
            .collect();
        map.insert("Devices".into(), json!(devices));
        map.insert(
            "DeviceCgroupRules".into(),
            list_or_null(self.device_cgroup_rule.clone()),
        );
        let ulimits: Vec<Value> = parse_ulimits(&self.ulimit)
            .unwrap_or_default()
            .into_iter()
            .map(|u| json!({"Name": u.name, "Hard": u.hard, "Soft": u.soft}))
            .collect();
        map.insert("Ulimits".into(), json!(ulimits));
        let sysctls = parse_sysctls(&self.sysctl).unwrap_or_default();
        if !sysctls.is_empty() {
            map.insert("Sysctls".into(), json!(sysctls));
        }
        let unconfined = self.privileged
            || parse_security_opts(&self.security_opt).is_ok_and(|o| o.unconfined_system_paths);
        let (masked, readonly): (Vec<&str>, Vec<&str>) = if unconfined {
            (Vec::new(), Vec::new())
        } else {
            (MASKED_PATHS.to_vec(), READONLY_PATHS.to_vec())
        };
        map.insert("MaskedPaths".into(), json!(masked));
        map.insert("ReadonlyPaths".into(), json!(readonly));
        map
    }
}

/// Docker's `HostConfig` fields for the security and the resource flags together (see
/// [`SecurityFlags::host_config_fields`] and [`ResourceFlags::host_config_fields`]).
pub fn host_config_fields(
    sec: &SecurityFlags,
    res: &ResourceFlags,
    host_pid_or_ipc: bool,
) -> Map<String, Value> {
    let mut map = sec.host_config_fields(host_pid_or_ipc);
    map.extend(res.host_config_fields());
    map
}

/// Checks the security and resource flags of `run`/`create` before anything is made (and
/// reads a `seccomp=FILE` profile into the flags, as Docker's client does). Gives Docker's
/// warnings for the caller to print (`WARNING: ...`).
pub fn prepare_options(sec: &mut SecurityFlags, res: &ResourceFlags) -> Result<Vec<String>> {
    sec.prepare()?;
    let (_, warnings) = super::resources::resources_with_warnings(res, false)?;
    Ok(warnings)
}

/// The key of the security flags in a container's record (`Record::options`).
pub const RECORD_KEY: &str = "security";

/// The record of an option group: the flags as given (`Flags`) and Docker's `HostConfig`
/// fields for them, which `inspect` merges into its HostConfig.
pub(crate) fn option_record(flags: Value, host_config: Map<String, Value>) -> Value {
    json!({"Flags": flags, "HostConfig": host_config})
}

impl super::create::SpecPart for SecurityFlags {
    fn key(&self) -> &'static str {
        RECORD_KEY
    }

    fn record(&self) -> Value {
        option_record(
            serde_json::to_value(self).unwrap_or(Value::Null),
            self.host_config_fields(self.shares_host_pid_or_ipc),
        )
    }

    fn apply(&self, spec: &mut Spec, _ctx: &super::create::SpecContext) -> Result<()> {
        apply_security(spec, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec_template::default_spec;

    fn flags(set: impl FnOnce(&mut SecurityFlags)) -> SecurityFlags {
        let mut f = SecurityFlags::default();
        set(&mut f);
        f
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// A capability set of the spec as sorted names.
    fn cap_set(spec: &Spec, which: &str) -> Vec<String> {
        let value = serde_json::to_value(spec.process().as_ref().unwrap().capabilities()).unwrap();
        let mut names: Vec<String> = value[which]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn applied(f: &SecurityFlags) -> Spec {
        let mut spec = default_spec();
        apply_security(&mut spec, f).unwrap();
        spec
    }

    #[test]
    fn docker_defaults() {
        let spec = applied(&SecurityFlags::default());
        let mut want = strings(&DEFAULT_CAPABILITIES);
        want.sort();
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(cap_set(&spec, set), want, "{set}");
        }
        assert!(cap_set(&spec, "inheritable").is_empty());
        assert!(cap_set(&spec, "ambient").is_empty());
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.no_new_privileges(), Some(false));
        assert!(process.rlimits().is_none(), "no rlimits of Docker's own");
        let linux = spec.linux().as_ref().unwrap();
        let seccomp = linux.seccomp().as_ref().expect("default seccomp");
        assert_eq!(seccomp.default_errno_ret(), Some(1));
        assert_eq!(
            linux.masked_paths().as_ref().unwrap().len(),
            MASKED_PATHS.len()
        );
        assert_eq!(
            linux.readonly_paths().as_ref().unwrap(),
            &strings(&READONLY_PATHS)
        );
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert_eq!(rules.len(), 8);
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        assert!(!rules[0].allow());
        assert_eq!(rules[7].to_string(), "c 10:229 rwm");
        let sys = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));
    }

    #[test]
    fn non_root_user_gets_bounding_only() {
        let mut spec = default_spec();
        let mut process = spec.process().clone().unwrap();
        let mut user = process.user().clone();
        user.set_uid(1000);
        process.set_user(user);
        spec.set_process(Some(process));
        apply_security(&mut spec, &SecurityFlags::default()).unwrap();
        assert_eq!(cap_set(&spec, "bounding").len(), 14);
        assert!(cap_set(&spec, "effective").is_empty());
        assert!(cap_set(&spec, "permitted").is_empty());
    }

    #[test]
    fn cap_add_and_drop() {
        let caps = |set: fn(&mut SecurityFlags)| {
            let mut c = effective_capabilities(&flags(set)).unwrap();
            c.sort();
            c
        };
        let with = caps(|f| {
            f.cap_add = strings(&["sys_admin", "CAP_NET_ADMIN"]);
            f.cap_drop = strings(&["chown", "Cap_Kill"]);
        });
        assert!(with.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(with.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!with.contains(&"CAP_CHOWN".to_string()));
        assert!(!with.contains(&"CAP_KILL".to_string()));
        assert_eq!(with.len(), 14);

        assert_eq!(
            caps(|f| {
                f.cap_drop = strings(&["ALL"]);
                f.cap_add = strings(&["net_bind_service"]);
            }),
            ["CAP_NET_BIND_SERVICE"]
        );
        let all = caps(|f| {
            f.cap_add = strings(&["all"]);
            f.cap_drop = strings(&["mknod"]);
        });
        assert_eq!(all.len(), all_capabilities().len() - 1);
        assert!(!all.contains(&"CAP_MKNOD".to_string()));
        // Added and dropped: added.
        assert!(caps(|f| {
            f.cap_add = strings(&["chown"]);
            f.cap_drop = strings(&["chown"]);
        })
        .contains(&"CAP_CHOWN".to_string()));
        assert_eq!(caps(|f| f.privileged = true), {
            let mut k = all_capabilities();
            k.sort();
            k
        });

        let e = effective_capabilities(&flags(|f| f.cap_add = strings(&["foo"]))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid CapAdd: unknown capability: \"CAP_FOO\""
        );
        let e = effective_capabilities(&flags(|f| f.cap_drop = strings(&["CAP_BAR"]))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid CapDrop: unknown capability: \"CAP_BAR\""
        );
    }

    #[test]
    fn seccomp_follows_the_final_capabilities() {
        let has = |spec: &Spec, call: &str| {
            spec.linux()
                .as_ref()
                .unwrap()
                .seccomp()
                .as_ref()
                .unwrap()
                .syscalls()
                .iter()
                .flatten()
                .any(|s| {
                    s.names().iter().any(|n| n == call)
                        && s.args().is_none()
                        && s.action() == oci_spec::runtime::LinuxSeccompAction::ScmpActAllow
                })
        };
        let plain = applied(&SecurityFlags::default());
        assert!(!has(&plain, "mount") && has(&plain, "chroot"));
        let admin = applied(&flags(|f| f.cap_add = strings(&["SYS_ADMIN"])));
        assert!(has(&admin, "mount") && has(&admin, "unshare"));
        let no_chroot = applied(&flags(|f| f.cap_drop = strings(&["SYS_CHROOT"])));
        assert!(!has(&no_chroot, "chroot"));
    }

    #[test]
    fn security_opts() {
        let o = parse_security_opts(&strings(&["no-new-privileges"])).unwrap();
        assert!(o.no_new_privileges);
        let o = parse_security_opts(&strings(&["no-new-privileges:true"])).unwrap();
        assert!(o.no_new_privileges);
        let o = parse_security_opts(&strings(&["no-new-privileges=false"])).unwrap();
        assert!(!o.no_new_privileges);
        let o = parse_security_opts(&strings(&[
            "seccomp=unconfined",
            "apparmor=unconfined",
            "label=disable",
        ]))
        .unwrap();
        assert_eq!(o.seccomp, SeccompChoice::Unconfined);
        assert_eq!(o.apparmor.as_deref(), Some("unconfined"));
        assert_eq!(o.labels, ["disable"]);
        assert_eq!(
            parse_security_opts(&strings(&["seccomp=builtin"]))
                .unwrap()
                .seccomp,
            SeccompChoice::Default
        );
        assert_eq!(
            parse_security_opts(&strings(&["foo"]))
                .unwrap_err()
                .to_string(),
            "Invalid --security-opt: \"foo\""
        );
        assert_eq!(
            parse_security_opts(&strings(&["foo=bar"]))
                .unwrap_err()
                .to_string(),
            "invalid --security-opt 2: \"foo=bar\""
        );
        assert_eq!(
            parse_security_opts(&strings(&["no-new-privileges=maybe"]))
                .unwrap_err()
                .to_string(),
            "invalid --security-opt 2: \"no-new-privileges=maybe\""
        );
        assert_eq!(
            parse_security_opts(&strings(&["seccomp="]))
                .unwrap_err()
                .to_string(),
            "Invalid --security-opt: \"seccomp=\""
        );

        let spec = applied(&flags(|f| {
            f.security_opt = strings(&[
                "no-new-privileges",
                "seccomp=unconfined",
                "systempaths=unconfined",
            ])
        }));
        assert_eq!(
            spec.process().as_ref().unwrap().no_new_privileges(),
            Some(true)
        );
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none());
        assert!(linux.masked_paths().is_none() && linux.readonly_paths().is_none());
    }

    #[test]
    fn seccomp_profile_files() {
        let dir = std::env::temp_dir().join(format!("berth-secprofile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("profile.json");
        std::fs::write(
            &path,
            r#"{ "defaultAction": "SCMP_ACT_ALLOW",
                 "syscalls": [ { "names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13 } ] }"#,
        )
        .unwrap();
        let mut f = flags(|f| f.security_opt = vec![format!("seccomp={}", path.display())]);
        f.prepare().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // The content is kept, compact, as Docker's client sends it: the file is gone now.
        assert!(
            f.security_opt[0].starts_with("seccomp={\"defaultAction\""),
            "{:?}",
            f.security_opt
        );
        let spec = applied(&f);
        let seccomp = spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
        assert_eq!(
            seccomp.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActAllow
        );
        assert_eq!(
            seccomp.syscalls().as_ref().unwrap()[0].errno_ret(),
            Some(13)
        );

        let mut missing = flags(|f| f.security_opt = strings(&["seccomp=/nonexistent/p.json"]));
        let e = missing.prepare().unwrap_err();
        assert_eq!(
            e.to_string(),
            "opening seccomp profile (/nonexistent/p.json) failed: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn privileged() {
        let spec = applied(&flags(|f| {
            f.privileged = true;
            f.security_opt = strings(&["apparmor=docker-default"]);
        }));
        assert_eq!(cap_set(&spec, "bounding").len(), all_capabilities().len());
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none());
        assert!(linux.masked_paths().is_none() && linux.readonly_paths().is_none());
        assert!(spec
            .process()
            .as_ref()
            .unwrap()
            .apparmor_profile()
            .is_none());
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].allow());
        assert_eq!(rules[0].to_string(), "a *:* rwm");
        let devices = linux.devices().clone().unwrap();
        assert!(devices.iter().any(|d| d.path() == Path::new("/dev/null")));
        assert!(!devices.iter().any(|d| d.path().starts_with("/dev/pts")));
        for m in spec.mounts().as_ref().unwrap() {
            if m.destination() == Path::new("/sys")
                || m.destination() == Path::new("/sys/fs/cgroup")
            {
                assert!(
                    !m.options().as_ref().unwrap().contains(&"ro".to_string()),
                    "{m:?}"
                );
            }
        }
    }

    #[test]
    fn devices() {
        assert_eq!(
            parse_device("/dev/fuse").unwrap(),
            DeviceMapping {
                path_on_host: "/dev/fuse".into(),
                path_in_container: "/dev/fuse".into(),
                cgroup_permissions: "rwm".into()
            }
        );
        let m = parse_device("/dev/null:/dev/xnull/../ynull:r").unwrap();
        assert_eq!(
            (m.path_in_container.as_str(), m.cgroup_permissions.as_str()),
            ("/dev/ynull", "r")
        );
        assert_eq!(
            parse_device("/dev/null:mw").unwrap().cgroup_permissions,
            "mw"
        );
        for (bad, why) in [
            ("", "bad format for path: "),
            ("/dev/a:/b:/c:rw", "bad format for path: /dev/a:/b:/c:rw"),
            ("/dev/a:/b:rwx", "bad mode specified: rwx"),
            ("/dev/a:/b:rr", "bad mode specified: rr"),
            ("/dev/a:relative", "relative is not an absolute path"),
        ] {
            assert_eq!(parse_device(bad).unwrap_err().to_string(), why);
        }

        let spec = applied(&flags(|f| f.device = strings(&["/dev/null:/dev/xnull:rw"])));
        let linux = spec.linux().as_ref().unwrap();
        let devices = linux.devices().clone().unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].path(), Path::new("/dev/xnull"));
        assert_eq!((devices[0].major(), devices[0].minor()), (1, 3));
        assert_eq!(devices[0].typ(), LinuxDeviceType::C);
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert_eq!(rules.last().unwrap().to_string(), "c 1:3 rw");

        let mut spec = default_spec();
        let e = apply_security(
            &mut spec,
            &flags(|f| f.device = strings(&["/dev/berth-nope"])),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "error gathering device information while adding custom device \"/dev/berth-nope\": no such file or directory"
        );
        let e = apply_security(
            &mut spec,
            &flags(|f| f.device = strings(&["/etc/hostname"])),
        )
        .unwrap_err();
        assert!(e.to_string().ends_with("not a device node"), "{e}");

        let rule = parse_device_cgroup_rule("c 42:* rmw").unwrap();
        assert_eq!(rule.to_string(), "c 42:* rmw");
        assert_eq!(
            parse_device_cgroup_rule("x 1:2 rw").unwrap_err().to_string(),
            "invalid argument \"x 1:2 rw\" for \"--device-cgroup-rule\" flag: invalid device cgroup format 'x 1:2 rw'"
        );
    }

    #[test]
    fn ulimits() {
        assert_eq!(
            parse_ulimit("nofile=512:1024").unwrap(),
            Ulimit {
                name: "nofile".into(),
                soft: 512,
                hard: 1024
            }
        );
        assert_eq!(
            parse_ulimit("nproc=100").unwrap(),
            Ulimit {
                name: "nproc".into(),
                soft: 100,
                hard: 100
            }
        );
        assert_eq!(parse_ulimit("core=-1").unwrap().hard, -1);
        for (bad, why) in [
            ("nofile", "invalid ulimit argument: nofile"),
            ("files=1", "invalid ulimit type: files"),
            (
                "nofile=abc",
                "strconv.ParseInt: parsing \"abc\": invalid syntax",
            ),
            (
                "nofile=1:2:3",
                "too many limit value arguments - 1:2:3, can only have up to two, `soft[:hard]`",
            ),
            (
                "nofile=2048:1024",
                "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024",
            ),
        ] {
            assert_eq!(
                parse_ulimit(bad).unwrap_err().to_string(),
                format!("invalid argument {bad:?} for \"--ulimit\" flag: {why}")
            );
        }
        let spec = applied(&flags(|f| {
            f.ulimit = strings(&["nofile=100:200", "core=-1", "nofile=300:400"])
        }));
        let rlimits = spec.process().as_ref().unwrap().rlimits().clone().unwrap();
        let json = serde_json::to_value(&rlimits).unwrap();
        assert_eq!(
            json,
            json!([
                {"type": "RLIMIT_NOFILE", "soft": 300, "hard": 400},
                {"type": "RLIMIT_CORE", "soft": u64::MAX, "hard": u64::MAX}
            ])
        );
    }

    #[test]
    fn sysctls() {
        let spec = applied(&flags(|f| {
            f.sysctl = strings(&[
                "net.ipv4.ip_forward=1",
                "kernel.shmmax=1000",
                "fs.mqueue.msg_max=20",
            ])
        }));
        let sysctl = spec.linux().as_ref().unwrap().sysctl().clone().unwrap();
        assert_eq!(sysctl.len(), 3);
        assert_eq!(sysctl["net.ipv4.ip_forward"], "1");
        for bad in [
            "kernel.hostname=x",
            "net.ipv4.ip_forward",
            "vm.swappiness=1",
        ] {
            assert_eq!(
                parse_sysctls(&strings(&[bad])).unwrap_err().to_string(),
                format!(
                    "invalid argument {bad:?} for \"--sysctl\" flag: sysctl '{bad}' is not allowed"
                )
            );
        }
    }

    #[test]
    fn inspect_fields() {
        let zero = host_config_fields(&SecurityFlags::default(), &ResourceFlags::default(), false);
        assert_eq!(zero["Privileged"], false);
        assert_eq!(zero["CapAdd"], Value::Null);
        assert_eq!(zero["SecurityOpt"], Value::Null);
        assert_eq!(zero["Devices"], json!([]));
        assert_eq!(zero["Ulimits"], json!([]));
        assert!(zero.get("Sysctls").is_none());
        assert_eq!(
            zero["MaskedPaths"].as_array().unwrap().len(),
            MASKED_PATHS.len()
        );
        assert_eq!(zero["Memory"], 0);

        let f = flags(|f| {
            f.privileged = true;
            f.cap_add = strings(&["net_admin"]);
            f.cap_drop = strings(&["mknod", "net_admin"]);
            f.device = strings(&["/dev/null:/dev/xnull"]);
            f.ulimit = strings(&["nofile=10:20"]);
            f.sysctl = strings(&["net.ipv4.ip_forward=1"]);
        });
        let m = host_config_fields(&f, &ResourceFlags::default(), false);
        assert_eq!(m["CapAdd"], json!(["CAP_NET_ADMIN"]));
        assert_eq!(m["CapDrop"], json!(["CAP_MKNOD", "CAP_NET_ADMIN"]));
        assert_eq!(m["SecurityOpt"], json!(["label=disable"]));
        assert_eq!(
            m["Devices"],
            json!([{"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull", "CgroupPermissions": "rwm"}])
        );
        assert_eq!(
            m["Ulimits"],
            json!([{"Name": "nofile", "Hard": 20, "Soft": 10}])
        );
        assert_eq!(m["Sysctls"], json!({"net.ipv4.ip_forward": "1"}));
        assert_eq!(m["MaskedPaths"], json!([]));
    }

    #[test]
    fn parses_through_clap() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            security: SecurityFlags,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--privileged",
            "--cap-add",
            "SYS_ADMIN",
            "--cap-add",
            "NET_ADMIN",
            "--security-opt",
            "no-new-privileges",
            "--device",
            "/dev/fuse",
            "--ulimit",
            "nofile=1:2",
            "--sysctl",
            "net.x=1",
        ])
        .unwrap();
        assert!(cli.security.privileged);
        assert_eq!(cli.security.cap_add, ["SYS_ADMIN", "NET_ADMIN"]);
        assert_eq!(cli.security.ulimit, ["nofile=1:2"]);
        let json = serde_json::to_string(&cli.security).unwrap();
        assert_eq!(
            serde_json::from_str::<SecurityFlags>(&json).unwrap(),
            cli.security
        );
        assert_eq!(
            serde_json::from_str::<SecurityFlags>("{}").unwrap(),
            SecurityFlags::default()
        );
    }
}
