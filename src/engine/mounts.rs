//! The mount flags of `container run|create` as Docker reads them (`-v`, `--mount`, `--tmpfs`,
//! `--volumes-from`, and the image's VOLUME list), resolved into one list of [`MountRequest`]s
//! with Docker's precedence and errors; then made real ([`prepare_volumes`],
//! [`fill_volumes`]), turned into the OCI spec's mounts ([`oci_mounts`]) and into `inspect`'s
//! `Mounts` ([`inspect_mounts`]).
//!
//! Precedence, as in Docker: the mounts of `--volumes-from` containers first; a `-v` or
//! `--mount` at the same destination replaces them, but two of those at one destination are an
//! error (`Duplicate mount point`), as is a `--tmpfs` there; the anonymous volumes (`-v /path`
//! and the image's VOLUMEs) only where nothing else is mounted at that path.

use super::record::{Container, Engine, Record, RECORD_FILE};
use super::volume::{validate_name, FillOutcome, VolumeStore, ANONYMOUS_LABEL};
use anyhow::{anyhow, bail, Context, Result};
use oci_spec::runtime::{Mount, MountBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The mount flags of `run` and `create`.
#[derive(clap::Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MountArgs {
    /// Bind mount a volume (NAME:/path[:opts], /host:/path[:opts], or /path for an anonymous one)
    #[arg(short = 'v', long = "volume", value_name = "LIST")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount to the container (type=bind|volume|tmpfs,source=,target=,...)
    #[arg(long = "mount", value_name = "MOUNT")]
    pub mount: Vec<String>,
    /// Mount a tmpfs directory (/path[:options])
    #[arg(long = "tmpfs", value_name = "LIST")]
    pub tmpfs: Vec<String>,
    /// Mount volumes from the specified container(s) (CONTAINER[:ro|rw])
    #[arg(long = "volumes-from", value_name = "LIST")]
    pub volumes_from: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Volume,
    Tmpfs,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Propagation {
    Private,
    Rprivate,
    Shared,
    Rshared,
    Slave,
    Rslave,
}

impl Propagation {
    pub fn parse(s: &str) -> Option<Propagation> {
        Some(match s {
            "private" => Propagation::Private,
            "rprivate" => Propagation::Rprivate,
            "shared" => Propagation::Shared,
            "rshared" => Propagation::Rshared,
            "slave" => Propagation::Slave,
            "rslave" => Propagation::Rslave,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Private => "private",
            Propagation::Rprivate => "rprivate",
            Propagation::Shared => "shared",
            Propagation::Rshared => "rshared",
            Propagation::Slave => "slave",
            Propagation::Rslave => "rslave",
        }
    }
}

/// Which flag a mount came from: it decides precedence and what `inspect` shows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// `-v SRC:DST[:MODE]`.
    VolumeFlag,
    /// `--mount`.
    MountFlag,
    /// `--tmpfs` (Docker keeps these out of `Mounts`).
    TmpfsFlag,
    /// `--volumes-from`.
    VolumesFrom,
    /// An anonymous volume from `-v /path` or the image's VOLUME list.
    ImageVolume,
}

/// One mount of a container, resolved from the flags. Stored in the container's record.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MountRequest {
    pub kind: MountType,
    /// Bind: the host path. Volume: its name (empty for an anonymous volume until
    /// [`prepare_volumes`] makes it). Tmpfs: empty.
    pub source: String,
    /// The path in the container, absolute and clean.
    pub destination: String,
    pub read_only: bool,
    /// The mode as inspect's `Mode` shows it: `-v`'s third field (`"ro,z"`), `"z"` for a local
    /// volume given by `-v` or `--mount` without one, else `""`.
    pub mode: String,
    /// Bind mounts only (default rprivate).
    pub propagation: Option<Propagation>,
    /// Volumes only: fill a new, empty volume with the image's content at the destination
    /// (off with `nocopy` / `volume-nocopy`).
    pub copy_data: bool,
    /// `--mount volume-label=`: labels for a volume this mount makes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_labels: BTreeMap<String, String>,
    /// `--mount volume-opt=`: driver options for a volume this mount makes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_options: BTreeMap<String, String>,
    /// Tmpfs only: the options after Docker's defaults (`size=`, `mode=`, `exec`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tmpfs_options: Vec<String>,
    /// `--tmpfs`: the options as given (HostConfig.Tmpfs shows them so).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tmpfs_given: String,
    /// A `-v` bind source that is made on the host when missing (`--mount` requires it).
    #[serde(default)]
    pub create_source: bool,
    /// True for a volume made without a name.
    #[serde(default)]
    pub anonymous: bool,
    pub origin: Origin,
}

impl MountRequest {
    fn new(kind: MountType, source: &str, destination: String, origin: Origin) -> MountRequest {
        MountRequest {
            kind,
            source: source.to_string(),
            destination,
            read_only: false,
            mode: String::new(),
            propagation: None,
            copy_data: kind == MountType::Volume,
            volume_labels: BTreeMap::new(),
            volume_options: BTreeMap::new(),
            tmpfs_options: Vec::new(),
            tmpfs_given: String::new(),
            create_source: false,
            anonymous: false,
            origin,
        }
    }
}

/// Docker's `path.Clean` of a mount path, with `\` read as `/` as Docker does.
fn clean(p: &str) -> String {
    let p = p.replace('\\', "/");
    let mut parts: Vec<&str> = Vec::new();
    let absolute = p.starts_with('/');
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// The checks Docker makes of any mount's target.
fn check_target(target: &str) -> Result<String> {
    if target.is_empty() {
        bail!("field Target must not be empty");
    }
    if clean(target) == "/" {
        bail!("invalid specification: destination can't be '/'");
    }
    if !target.replace('\\', "/").starts_with('/') {
        bail!("invalid mount path: '{target}' mount path must be absolute");
    }
    Ok(clean(target))
}

fn mount_config_error(kind: &str, e: anyhow::Error) -> anyhow::Error {
    anyhow!("invalid mount config for type \"{kind}\": {e}")
}

fn invalid_spec(raw: &str) -> anyhow::Error {
    anyhow!("invalid volume specification: '{raw}'")
}

/// The parts of a `-v` mode (`ro,z,nocopy`), each class at most once, as Docker checks them.
#[derive(Default)]
struct Mode {
    read_only: bool,
    propagation: Option<Propagation>,
    nocopy: bool,
}

fn parse_mode(mode: &str) -> Option<Mode> {
    let mut out = Mode::default();
    if mode.is_empty() {
        return Some(out);
    }
    let mut counts = [0u8; 5];
    for o in mode.split(',') {
        let class = match o {
            "rw" | "ro" => {
                out.read_only = o == "ro";
                0
            }
            "z" | "Z" => 1,
            "nocopy" => {
                out.nocopy = true;
                3
            }
            "consistent" | "cached" | "delegated" => 4,
            o => {
                out.propagation = Some(Propagation::parse(o)?);
                2
            }
        };
        counts[class] += 1;
    }
    counts.iter().all(|c| *c <= 1).then_some(out)
}

/// Parses one `-v`/`--volume` argument: `NAME:/path[:opts]`, `/host:/path[:opts]`, or `/path`
/// (an anonymous volume).
pub fn parse_volume_flag(raw: &str) -> Result<MountRequest> {
    let parts: Vec<&str> = raw.splitn(4, ':').collect();
    if parts[0].is_empty() {
        return Err(invalid_spec(raw));
    }
    let (source, target, mode) = match parts.len() {
        1 => {
            // `-v /path`: an anonymous volume, as if the image had declared it.
            let target = check_target(parts[0])
                .map_err(|e| mount_config_error("volume", e))
                .map_err(|e| anyhow!("{}: {e}", invalid_spec(raw)))?;
            let mut m = MountRequest::new(MountType::Volume, "", target, Origin::ImageVolume);
            m.anonymous = true;
            return Ok(m);
        }
        2 => {
            // `/foo:rw` names no source: a destination and a mode are not a volume.
            if parse_mode(parts[1]).is_some() {
                return Err(invalid_spec(raw));
            }
            (parts[0], parts[1], "")
        }
        3 => (parts[0], parts[1], parts[2]),
        _ => return Err(invalid_spec(raw)),
    };
    let Some(parsed) = parse_mode(mode) else {
        bail!("invalid mode: {mode}");
    };
    let kind = if source.starts_with('/') {
        MountType::Bind
    } else {
        MountType::Volume
    };
    let wrap = |e: anyhow::Error| {
        anyhow!(
            "{}: {}",
            invalid_spec(raw),
            mount_config_error(kind.as_str(), e)
        )
    };
    let target = check_target(target).map_err(wrap)?;
    let mut m = MountRequest::new(kind, source, target, Origin::VolumeFlag);
    m.read_only = parsed.read_only;
    m.mode = mode.to_string();
    match kind {
        MountType::Bind => {
            if parsed.nocopy {
                return Err(wrap(anyhow!("field VolumeOptions must not be specified")));
            }
            m.source = clean(source);
            m.propagation = Some(parsed.propagation.unwrap_or(Propagation::Rprivate));
            m.create_source = true;
        }
        _ => {
            if parsed.propagation.is_some() {
                return Err(wrap(anyhow!("field BindOptions must not be specified")));
            }
            validate_name(source).with_context(|| format!("create {source}"))?;
            m.copy_data = !parsed.nocopy;
            if m.mode.is_empty() {
                m.mode = "z".into();
            }
        }
    }
    Ok(m)
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A size as Docker's `RAMInBytes` reads it: a number with an optional binary unit
/// (`64m`, `1.5g`, `100KiB`, `512`).
pub fn parse_ram_size(s: &str) -> Option<i64> {
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let mut u = unit.as_str();
    let mult: i64 = match u.chars().next() {
        Some('k') => 1 << 10,
        Some('m') => 1 << 20,
        Some('g') => 1 << 30,
        Some('t') => 1 << 40,
        Some('p') => 1 << 50,
        _ => 1,
    };
    if mult != 1 {
        u = &u[1..];
    }
    u = u.strip_prefix('i').unwrap_or(u);
    u = u.strip_prefix('b').unwrap_or(u);
    if !u.is_empty() {
        return None;
    }
    Some((value * mult as f64) as i64)
}

/// Splits one CSV record as Go's `encoding/csv` does for a `--mount` value: fields separated
/// by commas, a field in double quotes may hold commas, `""` inside quotes is one quote.
fn split_csv(s: &str) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = s.chars().peekable();
    let mut at_start = true;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                    if chars.peek().is_some_and(|n| *n != ',') {
                        bail!("parse error: extraneous or missing \" in quoted-field");
                    }
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            '"' => bail!("parse error: bare \" in non-quoted-field"),
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        bail!("parse error: extraneous or missing \" in quoted-field");
    }
    fields.push(field);
    Ok(fields)
}

/// The `source`/`src` a `--mount` value names (for messages before it is parsed whole).
fn fields_source(raw: &str) -> String {
    split_csv(raw)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.split_once('='))
        .filter(|(k, _)| matches!(k.to_ascii_lowercase().as_str(), "source" | "src"))
        .map(|(_, v)| v.to_string())
        .next_back()
        .unwrap_or_default()
}

/// Parses one `--mount` argument, with the Docker CLI's and daemon's errors.
pub fn parse_mount_flag(raw: &str) -> Result<MountRequest> {
    let mut kind = "volume".to_string();
    let mut source = String::new();
    let mut target = String::new();
    let mut read_only = false;
    let mut propagation: Option<String> = None;
    let mut nocopy = false;
    let mut labels = BTreeMap::new();
    let mut options = BTreeMap::new();
    let mut tmpfs_size: Option<i64> = None;
    let mut tmpfs_mode: Option<u32> = None;
    let (mut volume_opts, mut bind_opts, mut tmpfs_opts) = (false, false, false);
    let set_map = |map: &mut BTreeMap<String, String>, v: &str| {
        let (k, v) = v.split_once('=').unwrap_or((v, ""));
        if !k.is_empty() {
            map.insert(k.to_string(), v.to_string());
        }
    };
    for field in split_csv(raw)? {
        let Some((key, value)) = field.split_once('=') else {
            match field.to_ascii_lowercase().as_str() {
                "readonly" | "ro" => read_only = true,
                "volume-nocopy" => {
                    nocopy = true;
                    volume_opts = true;
                }
                "bind-nonrecursive" => bail!("bind-nonrecursive is not supported by berth"),
                _ => bail!("invalid field '{field}' must be a key=value pair"),
            }
            continue;
        };
        let key = key.to_ascii_lowercase();
        let bad_value = || anyhow!("invalid value for {key}: {value}");
        match key.as_str() {
            "type" => kind = value.to_ascii_lowercase(),
            "source" | "src" => {
                source = value.to_string();
                if value == "." || value.starts_with("./") {
                    if let Ok(abs) = std::path::absolute(value) {
                        source = clean(&abs.to_string_lossy());
                    }
                }
            }
            "target" | "dst" | "destination" => target = value.to_string(),
            "readonly" | "ro" => read_only = parse_bool(value).ok_or_else(bad_value)?,
            "consistency" => {}
            "bind-propagation" => {
                bind_opts = true;
                propagation = Some(value.to_ascii_lowercase());
            }
            "volume-driver" => {
                volume_opts = true;
                if value != "local" {
                    let name = fields_source(raw);
                    let op = if name.is_empty() {
                        "create".to_string()
                    } else {
                        format!("create {name}")
                    };
                    bail!(
                        "{op}: error looking up volume plugin {value}: plugin \"{value}\" not found"
                    );
                }
            }
            "volume-nocopy" => {
                volume_opts = true;
                nocopy = parse_bool(value)
                    .ok_or_else(|| anyhow!("invalid value for volume-nocopy: {value}"))?;
            }
            "volume-label" => {
                volume_opts = true;
                set_map(&mut labels, value);
            }
            "volume-opt" => {
                volume_opts = true;
                set_map(&mut options, value);
            }
            "tmpfs-size" => {
                tmpfs_opts = true;
                tmpfs_size = Some(parse_ram_size(value).ok_or_else(bad_value)?);
            }
            "tmpfs-mode" => {
                tmpfs_opts = true;
                tmpfs_mode = Some(
                    u32::from_str_radix(value, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(bad_value)?,
                );
            }
            _ => bail!("unexpected key '{key}' in '{field}'"),
        }
    }
    if kind.is_empty() {
        bail!("type is required");
    }
    if target.is_empty() {
        bail!("target is required");
    }
    if volume_opts && kind != "volume" {
        bail!("cannot mix 'volume-*' options with mount type '{kind}'");
    }
    if bind_opts && kind != "bind" {
        bail!("cannot mix 'bind-*' options with mount type '{kind}'");
    }
    if tmpfs_opts && kind != "tmpfs" {
        bail!("cannot mix 'tmpfs-*' options with mount type '{kind}'");
    }
    let mount_type = match kind.as_str() {
        "bind" => MountType::Bind,
        "volume" => MountType::Volume,
        "tmpfs" => MountType::Tmpfs,
        _ => return Err(mount_config_error(&kind, anyhow!("mount type unknown"))),
    };
    let err = |e: anyhow::Error| mount_config_error(&kind, e);
    let destination = check_target(&target).map_err(err)?;
    let mut m = MountRequest::new(mount_type, "", destination, Origin::MountFlag);
    m.read_only = read_only;
    match mount_type {
        MountType::Bind => {
            if source.is_empty() {
                return Err(err(anyhow!("field Source must not be empty")));
            }
            let propagation = match propagation {
                Some(p) => Some(
                    Propagation::parse(&p)
                        .ok_or_else(|| err(anyhow!("invalid propagation mode: {p}")))?,
                ),
                None => Some(Propagation::Rprivate),
            };
            if !source.replace('\\', "/").starts_with('/') {
                return Err(err(anyhow!(
                    "invalid mount path: '{source}' mount path must be absolute"
                )));
            }
            if std::fs::symlink_metadata(&source).is_err() {
                return Err(err(anyhow!("bind source path does not exist: {source}")));
            }
            m.source = clean(&source);
            m.propagation = propagation;
        }
        MountType::Volume => {
            if source.is_empty() {
                if read_only {
                    return Err(err(anyhow!(
                        "must not set ReadOnly mode when using anonymous volumes"
                    )));
                }
                m.anonymous = true;
            } else {
                validate_name(&source).with_context(|| format!("create {source}"))?;
                m.source = source;
            }
            super::volume::validate_options(&options)
                .with_context(|| format!("create {}", m.source))?;
            m.copy_data = !nocopy;
            m.volume_labels = labels;
            m.volume_options = options;
            m.mode = "z".into();
        }
        MountType::Tmpfs => {
            if !source.is_empty() {
                return Err(err(anyhow!("field Source must not be specified")));
            }
            let mut data = Vec::new();
            if read_only {
                data.push("ro".to_string());
            }
            if let Some(mode) = tmpfs_mode.filter(|m| *m != 0) {
                data.push(format!("mode={mode:o}"));
            }
            if let Some(size) = tmpfs_size.filter(|s| *s != 0) {
                data.push(format!("size={}", size_with_suffix(size)));
            }
            m.tmpfs_options = merge_tmpfs_options(&data).map_err(err)?;
        }
    }
    Ok(m)
}

/// A byte count with the largest binary suffix that divides it, as Docker writes `size=`.
fn size_with_suffix(size: i64) -> String {
    for (suffix, divisor) in [("g", 1i64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
        if size % divisor == 0 {
            return format!("{}{suffix}", size / divisor);
        }
    }
    size.to_string()
}

/// The mount flags a tmpfs option list may hold, with the key two options share when they set
/// the same flag (`exec`/`noexec`); all propagation modes share one key.
fn tmpfs_flag_key(o: &str) -> Option<&'static str> {
    Some(match o {
        "ro" | "rw" => "ro",
        "suid" | "nosuid" => "suid",
        "dev" | "nodev" => "dev",
        "exec" | "noexec" => "exec",
        "sync" | "async" => "sync",
        "dirsync" => "dirsync",
        "remount" => "remount",
        "mand" | "nomand" => "mand",
        "atime" | "noatime" => "atime",
        "diratime" | "nodiratime" => "diratime",
        "relatime" | "norelatime" => "relatime",
        "strictatime" | "nostrictatime" => "strictatime",
        "bind" => "bind",
        "rbind" => "rbind",
        "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
        | "runbindable" => "propagation",
        _ => return None,
    })
}

/// The filesystem options tmpfs takes (`key=value`).
const TMPFS_DATA: [&str; 7] = [
    "size",
    "mode",
    "uid",
    "gid",
    "nr_inodes",
    "nr_blocks",
    "mpol",
];

/// Docker's defaults for a tmpfs (`noexec,nosuid,nodev,rprivate`) with `user` after them, a
/// later option replacing an earlier one of the same kind (so `exec` undoes `noexec`), in
/// Docker's order and with its error for an option tmpfs does not take.
pub fn merge_tmpfs_options(user: &[String]) -> Result<Vec<String>> {
    let mut all: Vec<&str> = vec!["noexec", "nosuid", "nodev", "rprivate"];
    all.extend(user.iter().map(String::as_str).filter(|o| !o.is_empty()));
    let mut flags_seen = Vec::new();
    let mut data_seen = Vec::new();
    let mut out: Vec<String> = Vec::new();
    for o in all.iter().rev() {
        if *o == "defaults" {
            continue;
        }
        if let Some(key) = tmpfs_flag_key(o) {
            if !flags_seen.contains(&key) {
                flags_seen.push(key);
                out.insert(0, o.to_string());
            }
            continue;
        }
        let key = o.split_once('=').map(|(k, _)| k);
        match key {
            Some(k) if TMPFS_DATA.contains(&k) => {
                if !data_seen.contains(&k) {
                    data_seen.push(k);
                    out.insert(0, o.to_string());
                }
            }
            _ => {
                // Go's %q of a []string: ["key" "value"].
                let parts: Vec<String> = o.splitn(2, '=').map(|p| format!("{p:?}")).collect();
                bail!("invalid tmpfs option [{}]", parts.join(" "));
            }
        }
    }
    Ok(out)
}

/// Parses one `--tmpfs` argument: `/path[:options]`.
pub fn parse_tmpfs_flag(raw: &str) -> Result<MountRequest> {
    let (path, options) = raw.split_once(':').unwrap_or((raw, ""));
    let destination = check_target(path).with_context(|| format!("--tmpfs {raw}"))?;
    let user: Vec<String> = options.split(',').map(String::from).collect();
    let mut m = MountRequest::new(MountType::Tmpfs, "", destination, Origin::TmpfsFlag);
    m.tmpfs_options = merge_tmpfs_options(&user)?;
    m.tmpfs_given = options.to_string();
    m.read_only = m.tmpfs_options.iter().any(|o| o == "ro");
    Ok(m)
}

/// Parses one `--volumes-from` argument into the container and the mode (`ro` or `rw`).
pub fn parse_volumes_from(raw: &str) -> Result<(String, String)> {
    if raw.is_empty() {
        bail!("volumes-from specification cannot be an empty string");
    }
    let (id, mode) = raw.split_once(':').unwrap_or((raw, ""));
    if mode.is_empty() {
        return Ok((id.to_string(), "rw".into()));
    }
    let parsed = parse_mode(mode).ok_or_else(|| anyhow!("invalid mode: {mode}"))?;
    // Propagation and copy modes come from the other container's mounts, not from here.
    if parsed.propagation.is_some() || parsed.nocopy {
        bail!("invalid mode: {mode}");
    }
    Ok((id.to_string(), mode.to_string()))
}

/// Resolves the mount flags into the container's mounts. `volumes_from` gives the mounts of
/// the container a `--volumes-from` names (and fails, naming it, when there is none);
/// `image_volumes` is the image config's VOLUME list. Nothing is made here.
pub fn resolve(
    args: &MountArgs,
    volumes_from: &mut dyn FnMut(&str) -> Result<Vec<MountRequest>>,
    image_volumes: &[String],
) -> Result<Vec<MountRequest>> {
    let mut out: Vec<MountRequest> = Vec::new();
    for spec in &args.volumes_from {
        let (container, mode) = parse_volumes_from(spec)?;
        let read_only = mode.split(',').any(|o| o == "ro");
        for theirs in volumes_from(&container)? {
            if theirs.origin == Origin::TmpfsFlag {
                continue;
            }
            let mut m = theirs.clone();
            m.read_only = m.read_only || read_only;
            m.copy_data = false;
            m.mode = String::new();
            m.create_source = false;
            m.origin = Origin::VolumesFrom;
            out.retain(|o| o.destination != m.destination);
            out.push(m);
        }
    }

    let mut anonymous: Vec<String> = Vec::new();
    let mut explicit: Vec<String> = Vec::new();
    let tmpfs: Vec<MountRequest> = args
        .tmpfs
        .iter()
        .map(|t| parse_tmpfs_flag(t))
        .collect::<Result<_>>()?;
    let mut take = |m: MountRequest, out: &mut Vec<MountRequest>| -> Result<()> {
        if explicit.contains(&m.destination) || tmpfs.iter().any(|t| t.destination == m.destination)
        {
            bail!("Duplicate mount point: {}", m.destination);
        }
        explicit.push(m.destination.clone());
        out.retain(|o| o.destination != m.destination);
        out.push(m);
        Ok(())
    };
    for raw in &args.volume {
        let m = parse_volume_flag(raw)?;
        if m.origin == Origin::ImageVolume {
            anonymous.push(m.destination);
            continue;
        }
        take(m, &mut out)?;
    }
    for raw in &args.mount {
        take(parse_mount_flag(raw)?, &mut out)?;
    }
    for t in &tmpfs {
        if tmpfs[..]
            .iter()
            .filter(|o| o.destination == t.destination)
            .count()
            > 1
        {
            bail!("Duplicate mount point: {}", t.destination);
        }
    }
    out.retain(|o| !tmpfs.iter().any(|t| t.destination == o.destination));
    out.extend(tmpfs);

    // The image's VOLUMEs (relative ones are taken from /, as Docker joins them to the rootfs)
    // and `-v /path`, each an anonymous volume unless something is mounted there already.
    for v in image_volumes {
        let abs = if v.starts_with('/') {
            v.clone()
        } else {
            format!("/{v}")
        };
        let dest = clean(&abs);
        if dest != "/" {
            anonymous.push(dest);
        }
    }
    for dest in anonymous {
        if out.iter().any(|o| o.destination == dest) {
            continue;
        }
        let mut m = MountRequest::new(MountType::Volume, "", dest, Origin::ImageVolume);
        m.anonymous = true;
        out.push(m);
    }
    Ok(out)
}

/// What [`prepare_volumes`] made, to be undone if the container's creation fails later.
#[derive(Default, Debug)]
pub struct Prepared {
    /// Volumes this container acquired.
    pub acquired: Vec<String>,
    /// Volumes made for it (anonymous ones, and named ones that did not exist).
    pub made: Vec<String>,
    /// Host directories made for `-v` bind sources (the topmost new one of each).
    pub made_dirs: Vec<PathBuf>,
}

impl Prepared {
    /// Releases and removes what was made, in reverse.
    pub fn undo(self, store: &VolumeStore, container_id: &str) {
        for name in &self.acquired {
            let _ = store.release(name, container_id);
        }
        for name in &self.made {
            let _ = store.remove(name, true, &|_| false);
        }
        for dir in self.made_dirs.iter().rev() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Makes what the mounts need: each volume (named ones on first use, anonymous ones always)
/// with `container_id` recorded as its user, and the missing host directories of `-v` binds.
/// Fills in the names of anonymous volumes. On failure, everything made is undone.
pub fn prepare_volumes(
    store: &VolumeStore,
    container_id: &str,
    mounts: &mut [MountRequest],
) -> Result<Prepared> {
    let mut done = Prepared::default();
    for m in mounts.iter_mut() {
        if let Err(e) = prepare_one(store, container_id, m, &mut done) {
            done.undo(store, container_id);
            return Err(e);
        }
    }
    Ok(done)
}

fn prepare_one(
    store: &VolumeStore,
    container_id: &str,
    m: &mut MountRequest,
    done: &mut Prepared,
) -> Result<()> {
    match m.kind {
        MountType::Volume if m.origin == Origin::VolumesFrom => {
            store.acquire(&m.source, container_id)?;
            done.acquired.push(m.source.clone());
        }
        MountType::Volume => {
            let name = (!m.source.is_empty()).then_some(m.source.as_str());
            let (v, made) = store.create_and_acquire(
                name,
                &m.volume_labels,
                &m.volume_options,
                container_id,
            )?;
            if made {
                done.made.push(v.name.clone());
            }
            done.acquired.push(v.name.clone());
            m.anonymous = v.labels.contains_key(ANONYMOUS_LABEL);
            m.source = v.name;
        }
        MountType::Bind if m.create_source => {
            let source = Path::new(&m.source);
            if std::fs::symlink_metadata(source).is_err() {
                let mut top = source.to_path_buf();
                while let Some(parent) = top.parent() {
                    if std::fs::symlink_metadata(parent).is_ok() {
                        break;
                    }
                    top = parent.to_path_buf();
                }
                std::fs::create_dir_all(source).with_context(|| {
                    format!("error while creating mount source path '{}'", m.source)
                })?;
                done.made_dirs.push(top);
            }
        }
        MountType::Bind | MountType::Tmpfs => {}
    }
    Ok(())
}

/// Fills each new, empty volume whose mount copies data with what the image has at its
/// destination in `rootfs` (Docker's copy-up). Returns what happened to each volume filled.
pub fn fill_volumes(
    store: &VolumeStore,
    mounts: &[MountRequest],
    rootfs: &Path,
) -> Result<Vec<(String, FillOutcome)>> {
    let mut out = Vec::new();
    for m in mounts {
        if m.kind != MountType::Volume || !m.copy_data || m.source.is_empty() {
            continue;
        }
        let outcome = store.fill_from_rootfs(&m.source, rootfs, &m.destination)?;
        out.push((m.source.clone(), outcome));
    }
    Ok(out)
}

/// The names of the volumes among the mounts.
pub fn volume_names(mounts: &[MountRequest]) -> Vec<String> {
    mounts
        .iter()
        .filter(|m| m.kind == MountType::Volume && !m.source.is_empty())
        .map(|m| m.source.clone())
        .collect()
}

/// Lets the container go of its volumes (`rm`), removing its anonymous ones nobody else uses
/// when `remove_anonymous` (`rm -v`, `run --rm`).
pub fn release_volumes(
    store: &VolumeStore,
    container_id: &str,
    mounts: &[MountRequest],
    remove_anonymous: bool,
    is_container: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let names = volume_names(mounts);
    if remove_anonymous {
        store.release_and_remove_anonymous(&names, container_id, is_container)
    } else {
        for n in &names {
            store.release(n, container_id)?;
        }
        Ok(())
    }
}

fn depth(p: &str) -> usize {
    Path::new(p)
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// The OCI spec's mounts for the container's mounts: binds as `rbind` with their propagation
/// (default rprivate), volumes as binds of their data directory, tmpfs with Docker's defaults;
/// parents before children.
pub fn oci_mounts(store: &VolumeStore, mounts: &[MountRequest]) -> Result<Vec<Mount>> {
    let mut sorted: Vec<&MountRequest> = mounts.iter().collect();
    sorted.sort_by_key(|m| depth(&m.destination));
    let mut out = Vec::new();
    for m in sorted {
        let (typ, source, options) = match m.kind {
            MountType::Bind | MountType::Volume => {
                let source = if m.kind == MountType::Bind {
                    PathBuf::from(&m.source)
                } else {
                    if m.source.is_empty() {
                        bail!("volume for {} was not made", m.destination);
                    }
                    store.data_path(&m.source)
                };
                let mut options = vec!["rbind".to_string()];
                if m.read_only {
                    options.push("ro".into());
                }
                if let Some(p) = m.propagation {
                    options.push(p.as_str().into());
                }
                ("bind", source, options)
            }
            MountType::Tmpfs => ("tmpfs", PathBuf::from("tmpfs"), m.tmpfs_options.clone()),
        };
        out.push(
            MountBuilder::default()
                .destination(&m.destination)
                .typ(typ)
                .source(source)
                .options(options)
                .build()
                .with_context(|| format!("mount at {}", m.destination))?,
        );
    }
    Ok(out)
}

/// The rootfs propagation the container needs for its bind mounts' propagation to work, as
/// Docker sets it: `rshared` if one is shared, else `rslave` if one is a slave; None when the
/// default will do.
pub fn rootfs_propagation(mounts: &[MountRequest]) -> Option<&'static str> {
    let props: Vec<Propagation> = mounts.iter().filter_map(|m| m.propagation).collect();
    if props
        .iter()
        .any(|p| matches!(p, Propagation::Shared | Propagation::Rshared))
    {
        Some("rshared")
    } else if props
        .iter()
        .any(|p| matches!(p, Propagation::Slave | Propagation::Rslave))
    {
        Some("rslave")
    } else {
        None
    }
}

/// The mount (its mount point and optional fields) that holds `path`, from mountinfo: the
/// entry with the longest mount point above it (the last such, a later mount hiding an
/// earlier one).
fn source_mount(path: &Path) -> Result<(PathBuf, String)> {
    use std::os::unix::ffi::OsStringExt;
    let real = std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve {}", path.display()))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .context("cannot read /proc/self/mountinfo")?;
    let mut best: Option<(PathBuf, String)> = None;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < 7 || sep < 6 {
            continue;
        }
        let point = PathBuf::from(std::ffi::OsString::from_vec(
            super::volume::unescape_mountinfo(fields[4]),
        ));
        if real.starts_with(&point)
            && best
                .as_ref()
                .is_none_or(|(b, _)| point.as_os_str().len() >= b.as_os_str().len())
        {
            best = Some((point, fields[6..sep].join(" ")));
        }
    }
    best.with_context(|| format!("no mount holds {}", real.display()))
}

/// Docker's check of a bind's propagation: a shared one needs its source on a shared mount,
/// a slave one on a shared or slave mount (else the propagation could not happen).
pub fn check_propagation_sources(mounts: &[MountRequest]) -> Result<()> {
    for m in mounts {
        let Some(p) = m.propagation else { continue };
        let (shared, slave_ok) = match p {
            Propagation::Shared | Propagation::Rshared => (true, false),
            Propagation::Slave | Propagation::Rslave => (false, true),
            _ => continue,
        };
        let (point, optional) = source_mount(Path::new(&m.source))?;
        let is_shared = optional.split(' ').any(|o| o.starts_with("shared:"));
        let is_slave = optional.split(' ').any(|o| o.starts_with("master:"));
        if shared && !is_shared {
            bail!(
                "path {} is mounted on {} but it is not a shared mount",
                m.source,
                point.display()
            );
        }
        if slave_ok && !is_shared && !is_slave {
            bail!(
                "path {} is mounted on {} but it is not a shared or slave mount",
                m.source,
                point.display()
            );
        }
    }
    Ok(())
}

/// One entry of `inspect`'s `Mounts`, Docker's `MountPoint`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub source: String,
    pub destination: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
}

/// `inspect`'s `Mounts` for the container's mounts (the `--tmpfs` ones are not there, as in
/// Docker: they show in HostConfig.Tmpfs), sorted by destination.
pub fn inspect_mounts(store: &VolumeStore, mounts: &[MountRequest]) -> Vec<MountPoint> {
    let mut out: Vec<MountPoint> = mounts
        .iter()
        .filter(|m| m.origin != Origin::TmpfsFlag)
        .map(|m| {
            let (name, source, driver) = match m.kind {
                MountType::Volume => (
                    m.source.clone(),
                    store.data_path(&m.source).to_string_lossy().into_owned(),
                    "local".to_string(),
                ),
                MountType::Bind => (String::new(), m.source.clone(), String::new()),
                MountType::Tmpfs => (String::new(), String::new(), String::new()),
            };
            MountPoint {
                kind: m.kind.as_str().into(),
                name,
                source,
                destination: m.destination.clone(),
                driver,
                mode: m.mode.clone(),
                rw: !m.read_only,
                propagation: m
                    .propagation
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.destination.cmp(&b.destination));
    out
}

/// HostConfig.Tmpfs: the `--tmpfs` mounts, destination to the options as given.
pub fn host_config_tmpfs(mounts: &[MountRequest]) -> BTreeMap<String, String> {
    mounts
        .iter()
        .filter(|m| m.origin == Origin::TmpfsFlag)
        .map(|m| (m.destination.clone(), m.tmpfs_given.clone()))
        .collect()
}

/// Where a container's record keeps its resolved mounts (`Record::options`).
pub const RECORD_KEY: &str = "mounts";

/// What a container's record holds of its mounts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct MountsRecord {
    pub mounts: Vec<MountRequest>,
    /// The volumes made for this container (removed again if its creation fails).
    pub made: Vec<String>,
}

/// The mounts recorded for a container (none for a record made before they were).
pub fn recorded_mounts(record: &Record) -> MountsRecord {
    record
        .options
        .get(RECORD_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

/// True while a container's record exists: a volume user that is not one is stale.
pub fn container_exists(engine: &Engine) -> impl Fn(&str) -> bool + '_ {
    move |id: &str| engine.container_dir(id).join(RECORD_FILE).exists()
}

/// `create`'s part for the mount flags, once the bundle is made and the record's Config and
/// HostConfig are set: resolves the flags (the image's VOLUMEs from the record's Config), makes
/// and acquires the volumes, records them (so a failure or a kill from here on leaves what
/// `rm` needs to let them go), fills new volumes from `rootfs`, adds the mounts to `spec`, and
/// fills in inspect's `Mounts`, `HostConfig.Binds/Tmpfs/VolumesFrom` and `Config.Volumes`.
pub fn apply_to_container(
    engine: &Engine,
    c: &mut Container,
    args: &MountArgs,
    spec: &mut oci_spec::runtime::Spec,
    rootfs: &Path,
) -> Result<()> {
    let image_volumes: Vec<String> = c.record.config.volumes.keys().cloned().collect();
    let mut lookup = |name: &str| -> Result<Vec<MountRequest>> {
        let other = engine.lookup(name)?;
        Ok(recorded_mounts(&other.record).mounts)
    };
    let mut mounts = resolve(args, &mut lookup, &image_volumes)?;
    let store = VolumeStore::open(&engine.data_root)?;
    let prepared = prepare_volumes(&store, c.id(), &mut mounts)?;
    // After the `-v` bind sources are made: a source made here is checked too.
    if let Err(e) = check_propagation_sources(&mounts) {
        prepared.undo(&store, c.id());
        return Err(e);
    }
    let record = MountsRecord {
        mounts: mounts.clone(),
        made: prepared.made.clone(),
    };
    c.record
        .options
        .insert(RECORD_KEY.into(), serde_json::to_value(&record)?);
    // Recorded now only when there is something to let go after a kill: `create` writes the
    // whole record at its end anyway (and each record replaced costs ext4 a flush).
    let nothing = record.mounts.is_empty() && record.made.is_empty();
    if let Err(e) = if nothing { Ok(()) } else { c.save_record() } {
        prepared.undo(&store, c.id());
        return Err(e);
    }
    fill_volumes(&store, &mounts, rootfs)?;

    let mut list = spec.mounts().clone().unwrap_or_default();
    for m in oci_mounts(&store, &mounts)? {
        list.retain(|x| x.destination() != m.destination());
        // What berth mounts below a user's mount (a `/etc` volume and /etc/hosts) goes after
        // it, so that it stays visible, as in Docker, which sorts them together.
        let (below, rest): (Vec<_>, Vec<_>) = list
            .into_iter()
            .partition(|x| x.destination().starts_with(m.destination()));
        list = rest;
        list.push(m);
        list.extend(below);
    }
    spec.set_mounts(Some(list));
    if let Some(p) = rootfs_propagation(&mounts) {
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_rootfs_propagation(Some(p.to_string()));
        spec.set_linux(Some(linux));
    }

    c.record.mounts = inspect_mounts(&store, &mounts)
        .iter()
        .map(serde_json::to_value)
        .collect::<std::result::Result<_, _>>()?;
    let volume = |anonymous: bool| -> Vec<String> {
        mounts
            .iter()
            .filter(|m| m.kind == MountType::Volume && m.anonymous == anonymous)
            .map(|m| m.source.clone())
            .collect()
    };
    c.record.anonymous_volumes = volume(true);
    c.record.named_volumes = volume(false);
    // Docker keeps `-v /path` in Config.Volumes, beside the image's, and the others in Binds.
    for raw in &args.volume {
        if raw.contains(':') {
            c.record.host_config.binds.push(raw.clone());
        } else {
            c.record
                .config
                .volumes
                .insert(raw.clone(), serde_json::json!({}));
        }
    }
    c.record.host_config.tmpfs = host_config_tmpfs(&mounts);
    c.record.host_config.volumes_from = args.volumes_from.clone();
    Ok(())
}

/// What a start does for the container's volumes, as Docker at each start: a volume with
/// mount options is mounted again where it is not (after a reboot), and a volume that copies
/// data and is empty is filled from the container's rootfs. Nothing for a container without
/// volumes.
pub fn prepare_start(engine: &Engine, c: &Container) -> Result<()> {
    let recorded = recorded_mounts(&c.record);
    if !recorded.mounts.iter().any(|m| m.kind == MountType::Volume) {
        return Ok(());
    }
    let store = VolumeStore::open(&engine.data_root)?;
    for m in &recorded.mounts {
        if m.kind == MountType::Volume && !m.source.is_empty() {
            store.ensure_mounted(&m.source)?;
        }
    }
    fill_volumes(&store, &recorded.mounts, &c.rootfs())?;
    Ok(())
}

/// Lets a removed container's volumes go: with `remove_anonymous` (`rm -v`, `--rm`) its
/// anonymous volumes nobody else uses are removed, with `remove_made` (a failed create) also
/// the named volumes made for it.
pub fn release_container(
    engine: &Engine,
    record: &Record,
    remove_anonymous: bool,
    remove_made: bool,
) -> Result<()> {
    let recorded = recorded_mounts(record);
    if recorded.mounts.is_empty() {
        return Ok(());
    }
    let store = VolumeStore::open(&engine.data_root)?;
    let exists = container_exists(engine);
    release_volumes(
        &store,
        &record.id,
        &recorded.mounts,
        remove_anonymous,
        &exists,
    )?;
    if remove_made {
        for name in &recorded.made {
            // Another container may have started using it meanwhile: then it stays.
            match store.remove(name, true, &exists) {
                Ok(()) => {}
                Err(e) if e.to_string().contains("volume is in use") => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<MountRequest>) -> String {
        format!("{:#}", r.expect_err("should fail"))
    }

    #[test]
    fn volume_flag_forms() {
        let m = parse_volume_flag("data:/var/lib/data").unwrap();
        assert_eq!(
            (m.kind, m.source.as_str(), m.destination.as_str()),
            (MountType::Volume, "data", "/var/lib/data")
        );
        assert!(m.copy_data && !m.read_only && !m.anonymous);
        assert_eq!(m.mode, "z", "Docker's mode for a local volume given by -v");

        let m = parse_volume_flag("data:/d/:ro,nocopy").unwrap();
        assert_eq!(m.destination, "/d");
        assert!(m.read_only && !m.copy_data);
        assert_eq!(m.mode, "ro,nocopy");

        let m = parse_volume_flag("/srv//www/../web:/w:ro,rshared").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert_eq!(m.source, "/srv/web");
        assert_eq!(m.propagation, Some(Propagation::Rshared));
        assert!(m.read_only && m.create_source);

        let m = parse_volume_flag("/h:/c").unwrap();
        assert_eq!(m.propagation, Some(Propagation::Rprivate));
        assert_eq!(m.mode, "");

        let m = parse_volume_flag("/cache").unwrap();
        assert!(m.anonymous && m.source.is_empty());
        assert_eq!(m.origin, Origin::ImageVolume);
    }

    #[test]
    fn volume_flag_errors_are_dockers() {
        assert_eq!(
            err(parse_volume_flag("")),
            "invalid volume specification: ''"
        );
        assert_eq!(
            err(parse_volume_flag(":/x")),
            "invalid volume specification: ':/x'"
        );
        assert_eq!(
            err(parse_volume_flag("/foo:rw")),
            "invalid volume specification: '/foo:rw'"
        );
        assert_eq!(
            err(parse_volume_flag("a:/b:c:d")),
            "invalid volume specification: 'a:/b:c:d'"
        );
        assert_eq!(err(parse_volume_flag("data:/x:rx")), "invalid mode: rx");
        assert_eq!(
            err(parse_volume_flag("data:/x:ro,rw")),
            "invalid mode: ro,rw"
        );
        assert_eq!(
            err(parse_volume_flag("data:rel")),
            "invalid volume specification: 'data:rel': invalid mount config for type \
             \"volume\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            err(parse_volume_flag("rel")),
            "invalid volume specification: 'rel': invalid mount config for type \
             \"volume\": invalid mount path: 'rel' mount path must be absolute"
        );
        assert_eq!(
            err(parse_volume_flag("/h:/")),
            "invalid volume specification: '/h:/': invalid mount config for type \"bind\": \
             invalid specification: destination can't be '/'"
        );
        assert_eq!(
            err(parse_volume_flag("data:/x:shared")),
            "invalid volume specification: 'data:/x:shared': invalid mount config for type \
             \"volume\": field BindOptions must not be specified"
        );
        assert_eq!(
            err(parse_volume_flag("/h:/x:nocopy")),
            "invalid volume specification: '/h:/x:nocopy': invalid mount config for type \
             \"bind\": field VolumeOptions must not be specified"
        );
        assert_eq!(
            err(parse_volume_flag("a:/x")),
            "create a: volume name is too short, names should be at least two alphanumeric \
             characters"
        );
        assert!(err(parse_volume_flag("./rel:/x")).starts_with(
            "create ./rel: \"./rel\" includes invalid characters for a local volume name"
        ));
    }

    #[test]
    fn mount_flag_forms() {
        let m = parse_mount_flag("type=volume,src=vol1,dst=/data,volume-nocopy").unwrap();
        assert_eq!((m.kind, m.source.as_str()), (MountType::Volume, "vol1"));
        assert!(!m.copy_data);
        assert_eq!(m.mode, "z");

        let m = parse_mount_flag("target=/anon").unwrap();
        assert!(
            m.anonymous && m.kind == MountType::Volume,
            "type defaults to volume"
        );

        let m = parse_mount_flag(
            "type=volume,source=v2,target=/v,volume-label=a=b,\"volume-opt=o=size=1m,uid=1\",\
             volume-opt=type=tmpfs,volume-opt=device=tmpfs,readonly=true",
        )
        .unwrap();
        assert_eq!(m.volume_labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(
            m.volume_options.get("o").map(String::as_str),
            Some("size=1m,uid=1")
        );
        assert!(m.read_only);

        let m =
            parse_mount_flag("type=bind,source=/tmp,target=/t,bind-propagation=rslave,ro").unwrap();
        assert_eq!(m.propagation, Some(Propagation::Rslave));
        assert!(m.read_only && !m.create_source);
        assert_eq!(m.mode, "");

        let m = parse_mount_flag("type=tmpfs,dst=/scratch,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!(
            m.tmpfs_options,
            [
                "noexec",
                "nosuid",
                "nodev",
                "rprivate",
                "mode=1770",
                "size=64m"
            ]
        );
    }

    #[test]
    fn mount_flag_errors_are_dockers() {
        let e = |s: &str| err(parse_mount_flag(s));
        assert_eq!(
            e("type=bind,source=/nonexistent-berth-path,target=/x"),
            "invalid mount config for type \"bind\": bind source path does not exist: \
             /nonexistent-berth-path"
        );
        assert_eq!(
            e("type=bind,target=/x"),
            "invalid mount config for type \"bind\": field Source must not be empty"
        );
        assert_eq!(e("type=bind,source=/tmp"), "target is required");
        assert_eq!(
            e("type=tmpfs,source=x,target=/x"),
            "invalid mount config for type \"tmpfs\": field Source must not be specified"
        );
        assert_eq!(
            e("type=nfs,target=/x"),
            "invalid mount config for type \"nfs\": mount type unknown"
        );
        assert_eq!(
            e("type=bind,bogus=1,target=/x"),
            "unexpected key 'bogus' in 'bogus=1'"
        );
        assert_eq!(
            e("type=bind,junk"),
            "invalid field 'junk' must be a key=value pair"
        );
        assert_eq!(
            e("target=/x,readonly=maybe"),
            "invalid value for readonly: maybe"
        );
        assert_eq!(
            e("type=tmpfs,target=/x,tmpfs-size=lots"),
            "invalid value for tmpfs-size: lots"
        );
        assert_eq!(
            e("type=tmpfs,target=/x,tmpfs-mode=99"),
            "invalid value for tmpfs-mode: 99"
        );
        assert_eq!(
            e("type=bind,source=/tmp,target=/x,volume-nocopy"),
            "cannot mix 'volume-*' options with mount type 'bind'"
        );
        assert_eq!(
            e("type=volume,target=/x,bind-propagation=shared"),
            "cannot mix 'bind-*' options with mount type 'volume'"
        );
        assert_eq!(
            e("type=bind,source=/tmp,target=/x,tmpfs-size=1m"),
            "cannot mix 'tmpfs-*' options with mount type 'bind'"
        );
        assert_eq!(
            e("type=bind,source=/tmp,target=/x,bind-propagation=weird"),
            "invalid mount config for type \"bind\": invalid propagation mode: weird"
        );
        assert_eq!(
            e("type=volume,target=/x,ro"),
            "invalid mount config for type \"volume\": must not set ReadOnly mode when using \
             anonymous volumes"
        );
        assert_eq!(
            e("type=volume,source=v,target=rel"),
            "invalid mount config for type \"volume\": invalid mount path: 'rel' mount path \
             must be absolute"
        );
        assert_eq!(
            e("type=volume,source=vv,target=/x,volume-opt=color=red"),
            "create vv: invalid option: \"color\""
        );
        assert_eq!(
            e("type=volume,source=vv,target=/x,volume-opt=type=tmpfs"),
            "create vv: missing required option: \"device\""
        );
    }

    #[test]
    fn tmpfs_options_merge_as_docker() {
        let m = parse_tmpfs_flag("/run:exec,size=1m,size=2m").unwrap();
        assert_eq!(
            m.tmpfs_options,
            ["nosuid", "nodev", "rprivate", "exec", "size=2m"]
        );
        assert_eq!(m.tmpfs_given, "exec,size=1m,size=2m");
        let m = parse_tmpfs_flag("/run").unwrap();
        assert_eq!(m.tmpfs_options, ["noexec", "nosuid", "nodev", "rprivate"]);
        assert_eq!(
            format!("{:#}", parse_tmpfs_flag("/run:color=red").unwrap_err()),
            "invalid tmpfs option [\"color\" \"red\"]"
        );
        assert!(parse_tmpfs_flag("run").is_err());
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(parse_ram_size("64m"), Some(64 << 20));
        assert_eq!(parse_ram_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_ram_size("100KiB"), Some(100 << 10));
        assert_eq!(parse_ram_size("512"), Some(512));
        assert_eq!(parse_ram_size("1 MB"), Some(1 << 20));
        assert_eq!(parse_ram_size("m"), None);
        assert_eq!(parse_ram_size("12x"), None);
        assert_eq!(size_with_suffix(3 << 29), "1536m");
        assert_eq!(size_with_suffix(1000), "1000");
    }

    fn args(v: &[&str], m: &[&str], t: &[&str], from: &[&str]) -> MountArgs {
        let s = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        MountArgs {
            volume: s(v),
            mount: s(m),
            tmpfs: s(t),
            volumes_from: s(from),
        }
    }

    fn no_containers(name: &str) -> Result<Vec<MountRequest>> {
        bail!("No such container: {name}")
    }

    #[test]
    fn resolve_precedence_and_duplicates() {
        let image = vec![
            "/data".to_string(),
            "logs".to_string(),
            "/cache/".to_string(),
        ];
        let got = resolve(
            &args(
                &["named:/data", "/var/cache"],
                &["type=tmpfs,dst=/t"],
                &["/run"],
                &[],
            ),
            &mut no_containers,
            &image,
        )
        .unwrap();
        let dests: Vec<(&str, MountType, bool)> = got
            .iter()
            .map(|m| (m.destination.as_str(), m.kind, m.anonymous))
            .collect();
        assert_eq!(
            dests,
            [
                ("/data", MountType::Volume, false),
                ("/t", MountType::Tmpfs, false),
                ("/run", MountType::Tmpfs, false),
                ("/var/cache", MountType::Volume, true),
                ("/logs", MountType::Volume, true),
                ("/cache", MountType::Volume, true),
            ],
            "the image's /data is covered by the named volume"
        );

        let dup = |a: MountArgs| {
            format!(
                "{:#}",
                resolve(&a, &mut no_containers, &[]).expect_err("duplicate")
            )
        };
        assert_eq!(
            dup(args(&["a1:/d", "/h:/d/"], &[], &[], &[])),
            "Duplicate mount point: /d"
        );
        assert_eq!(
            dup(args(&["a1:/d"], &["target=/d"], &[], &[])),
            "Duplicate mount point: /d"
        );
        assert_eq!(
            dup(args(&["a1:/d"], &[], &["/d"], &[])),
            "Duplicate mount point: /d"
        );
        assert_eq!(
            dup(args(&[], &[], &["/d", "/d:size=1m"], &[])),
            "Duplicate mount point: /d"
        );
        assert_eq!(
            dup(args(&[], &[], &[], &["gone"])),
            "No such container: gone"
        );
    }

    #[test]
    fn volumes_from_takes_the_other_mounts() {
        let theirs = resolve(
            &args(
                &["shared:/s", "/h:/bind:ro"],
                &["type=tmpfs,dst=/mt"],
                &["/tf"],
                &[],
            ),
            &mut no_containers,
            &[],
        )
        .unwrap();
        let mut lookup = |name: &str| -> Result<Vec<MountRequest>> {
            assert_eq!(name, "donor");
            Ok(theirs.clone())
        };
        let got = resolve(
            &args(&["other:/s"], &[], &[], &["donor:ro"]),
            &mut lookup,
            &[],
        )
        .unwrap();
        let summary: Vec<(&str, &str, bool, Origin)> = got
            .iter()
            .map(|m| {
                (
                    m.destination.as_str(),
                    m.source.as_str(),
                    m.read_only,
                    m.origin,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("/bind", "/h", true, Origin::VolumesFrom),
                ("/mt", "", true, Origin::VolumesFrom),
                ("/s", "other", false, Origin::VolumeFlag),
            ],
            "-v replaces the donor's /s; --tmpfs mounts are not passed on"
        );
        assert!(got
            .iter()
            .filter(|m| m.origin == Origin::VolumesFrom)
            .all(|m| !m.copy_data && m.mode.is_empty()));
        assert_eq!(
            format!("{:#}", parse_volumes_from("c:nocopy").unwrap_err()),
            "invalid mode: nocopy"
        );
        assert_eq!(
            format!("{:#}", parse_volumes_from("").unwrap_err()),
            "volumes-from specification cannot be an empty string"
        );
        assert_eq!(parse_volumes_from("c").unwrap(), ("c".into(), "rw".into()));
    }

    #[test]
    fn oci_and_inspect_shapes() {
        let dir = std::env::temp_dir().join(format!("berth-mounts-oci-{}", std::process::id()));
        let store = VolumeStore::open(&dir).unwrap();
        let mut mounts = resolve(
            &args(
                &["vol9:/a/b/c:ro", "/h:/a:shared"],
                &["type=tmpfs,dst=/t,tmpfs-size=1k"],
                &["/tf:exec"],
                &[],
            ),
            &mut no_containers,
            &[],
        )
        .unwrap();
        // As prepare_volumes would have named it.
        mounts[0].source = "vol9".into();
        let oci = oci_mounts(&store, &mounts).unwrap();
        let shape: Vec<(String, String, String, Vec<String>)> = oci
            .iter()
            .map(|m| {
                (
                    m.destination().display().to_string(),
                    m.typ().clone().unwrap(),
                    m.source().as_ref().unwrap().display().to_string(),
                    m.options().clone().unwrap(),
                )
            })
            .collect();
        let data = store.data_path("vol9").display().to_string();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shape,
            [
                (
                    "/a".into(),
                    "bind".into(),
                    "/h".into(),
                    s(&["rbind", "shared"])
                ),
                (
                    "/t".into(),
                    "tmpfs".into(),
                    "tmpfs".into(),
                    s(&["noexec", "nosuid", "nodev", "rprivate", "size=1k"])
                ),
                (
                    "/tf".into(),
                    "tmpfs".into(),
                    "tmpfs".into(),
                    s(&["nosuid", "nodev", "rprivate", "exec"])
                ),
                (
                    "/a/b/c".into(),
                    "bind".into(),
                    data.clone(),
                    s(&["rbind", "ro"])
                ),
            ]
        );
        assert_eq!(rootfs_propagation(&mounts), Some("rshared"));

        let json = serde_json::to_value(inspect_mounts(&store, &mounts)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"Type": "bind", "Source": "/h", "Destination": "/a", "Mode": "shared",
                 "RW": true, "Propagation": "shared"},
                {"Type": "volume", "Name": "vol9", "Source": data, "Destination": "/a/b/c",
                 "Driver": "local", "Mode": "ro", "RW": false, "Propagation": ""},
                {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": true,
                 "Propagation": ""},
            ])
        );
        assert_eq!(
            host_config_tmpfs(&mounts),
            BTreeMap::from([("/tf".to_string(), "exec".to_string())])
        );
        // A record survives a round trip through JSON (the container's record holds it).
        let back: Vec<MountRequest> =
            serde_json::from_str(&serde_json::to_string(&mounts).unwrap()).unwrap();
        assert_eq!(back, mounts);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
