//! A container's record on disk: what it was made from and with (`container.json`, written once
//! and changed only by `rename`), and what it is doing (`state.json`, written by whoever changes
//! it: the monitor, `stop`, `rm`). Both are written atomically; `lock` serialises the writers.
//!
//! Layout under the data root:
//! ```text
//! containers/ID/container.json   the record (Docker's Config and HostConfig)
//! containers/ID/state.json       status, pids, exit code, times
//! containers/ID/bundle/          config.json and the overlay rootfs (upper in .berth/upper)
//! containers/ID/ID-json.log      the log (json-file)
//! containers/ID/hosts, hostname, resolv.conf
//! names/NAME                     the id holding NAME (made with O_EXCL: a name is taken once)
//! ```
//! The container directory is made before the name is claimed, so a name file whose
//! container is gone is stale and can be reclaimed.

use crate::runtime::fsutil::write_atomically;
use crate::runtime::state::ProcessId;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

pub const RECORD_FILE: &str = "container.json";
pub const STATE_FILE: &str = "state.json";
/// Docker's zero time, which `inspect` shows for what has not happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The runtime root of `berth build`'s RUN containers, below the engine's state root: the
/// network sweep judges a lease of such a container by its runtime record there.
pub const BUILD_RUNTIME_ROOT: &str = "build";

/// Where the engine keeps its records.
#[derive(Clone, Debug)]
pub struct Engine {
    pub data_root: PathBuf,
    /// The runtime core's state root (`--root`).
    pub state_root: PathBuf,
}

/// Docker's `Config` of a container (the parts berth keeps).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Config {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Vec<String>,
    #[serde(with = "null_when_empty")]
    pub cmd: Vec<String>,
    pub image: String,
    pub volumes: BTreeMap<String, serde_json::Value>,
    pub working_dir: String,
    #[serde(with = "null_when_empty")]
    pub entrypoint: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: String,
    pub stop_timeout: Option<i64>,
    pub healthcheck: Option<Healthcheck>,
    /// The image's exposed ports, `--expose` and the published ones (`"80/tcp": {}`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
}

/// An empty list as Docker writes it (`null`), read back from either form.
mod null_when_empty {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        if v.is_empty() {
            s.serialize_none()
        } else {
            s.collect_seq(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
    }
}

/// Docker's health check (durations in nanoseconds, as Docker stores them).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub retries: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    /// "no", "always", "on-failure", "unless-stopped" ("" counts as "no").
    pub name: String,
    pub maximum_retry_count: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: BTreeMap<String, String>,
}

/// Docker's `HostConfig` (the parts berth keeps; the security and resource flags are kept
/// beside it and merged into it by `inspect`).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Vec<String>,
    pub network_mode: String,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub log_config: LogConfig,
    pub pid_mode: String,
    pub ipc_mode: String,
    #[serde(rename = "UTSMode")]
    pub uts_mode: String,
    pub readonly_rootfs: bool,
    pub shm_size: u64,
    pub init: Option<bool>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub group_add: Vec<String>,
    pub tmpfs: BTreeMap<String, String>,
    pub volumes_from: Vec<String>,
}

/// What a container was made from and with.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Record {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub created: String,
    /// The image id (`sha256:` + the config's digest), as Docker shows it.
    pub image: String,
    /// The manifest the rootfs was made from.
    pub manifest: String,
    pub config: Config,
    pub host_config: HostConfig,
    /// Docker's `Mounts` entries.
    pub mounts: Vec<serde_json::Value>,
    /// Anonymous volumes this container made (`rm -v` removes them).
    pub anonymous_volumes: Vec<String>,
    /// Named volumes this container uses.
    pub named_volumes: Vec<String>,
    /// The engine's option structs, as given (security, resources, ...), by name.
    pub options: BTreeMap<String, serde_json::Value>,
    /// Set once everything the container needs is made; a record without it was left by a
    /// berth killed while creating (`ps -a` shows it as dead, `rm -f` removes it).
    pub complete: bool,
    /// The berth process making the container, while it does.
    pub creator: Option<ProcessId>,
}

/// Where the container is in its life, as Docker names it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// A process of the container may be alive.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthLog {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Health {
    /// "starting", "healthy" or "unhealthy".
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<HealthLog>,
}

/// What a container is doing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub restart_count: u32,
    /// The monitor of the running container.
    pub monitor: Option<ProcessId>,
    /// Stopped by `stop`, `kill` or `rm`: the restart policy does not apply.
    pub stopped_by_user: bool,
    pub health: Option<Health>,
    /// The ports the running container publishes (network::publish), host ports chosen.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::network::ports::PortBinding>,
}

impl Engine {
    pub fn new(data_root: &Path, state_root: &Path) -> Engine {
        Engine {
            data_root: data_root.to_path_buf(),
            state_root: state_root.to_path_buf(),
        }
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.data_root.join("containers")
    }

    pub fn names_dir(&self) -> PathBuf {
        self.data_root.join("names")
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    pub fn runtime_globals(&self) -> crate::runtime::container::Globals {
        crate::runtime::container::Globals::at(self.state_root.clone())
    }

    /// Every container id on record.
    pub fn ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        match fs::read_dir(self.containers_dir()) {
            Ok(rd) => {
                for e in rd {
                    let name = e?.file_name().to_string_lossy().into_owned();
                    if is_full_id(&name) {
                        ids.push(name);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("cannot list the containers"),
        }
        Ok(ids)
    }

    /// The container `arg` names: a name (with or without `/`), a full id or a unique prefix
    /// of one, as Docker resolves them.
    pub fn lookup(&self, arg: &str) -> Result<Container> {
        let name = arg.strip_prefix('/').unwrap_or(arg);
        if is_full_id(arg) && self.container_dir(arg).exists() {
            return self.open(arg);
        }
        if valid_name(name) {
            if let Ok(id) = fs::read_to_string(self.names_dir().join(name)) {
                if let Ok(c) = self.open(id.trim()) {
                    if c.record.name == name {
                        return Ok(c);
                    }
                }
            }
        }
        if !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
            let found: Vec<String> = self
                .ids()?
                .into_iter()
                .filter(|id| id.starts_with(arg))
                .collect();
            match found.len() {
                1 => return self.open(&found[0]),
                0 => {}
                _ => bail!("multiple containers found with provided prefix: {arg}"),
            }
        }
        bail!(NoSuchContainer(arg.to_string()))
    }

    pub fn open(&self, id: &str) -> Result<Container> {
        let dir = self.container_dir(id);
        if !dir.is_dir() {
            bail!(NoSuchContainer(id.to_string()));
        }
        // A directory without a readable record was left by a berth killed as it began to
        // create the container: it shows as dead, and `rm -f` removes it.
        let record: Record = read_json(&dir.join(RECORD_FILE)).unwrap_or_else(|_| Record {
            id: id.to_string(),
            ..Default::default()
        });
        let state: State = read_json(&dir.join(STATE_FILE)).unwrap_or_default();
        Ok(Container { dir, record, state })
    }

    /// Every container on record, newest first (as `ps` lists them).
    pub fn all(&self) -> Result<Vec<Container>> {
        let mut out: Vec<Container> = self
            .ids()?
            .iter()
            .filter_map(|id| self.open(id).ok())
            .collect();
        out.sort_by(|a, b| b.record.created.cmp(&a.record.created));
        Ok(out)
    }

    /// Claims `name` for container `id`: Docker's conflict error when another container holds
    /// it. A claim whose container is gone (berth was killed between the two) is reclaimed.
    pub fn claim_name(&self, name: &str, id: &str) -> Result<()> {
        check_name(name)?;
        fs::create_dir_all(self.names_dir()).context("cannot make the names directory")?;
        let path = self.names_dir().join(name);
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(id.as_bytes())?;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path).unwrap_or_default();
                    let holder = holder.trim();
                    if !holder.is_empty() && self.container_dir(holder).exists() {
                        bail!(
                            "Conflict. The container name \"/{name}\" is already in use by \
                             container \"{holder}\". You have to remove (or rename) that \
                             container to be able to reuse that name."
                        );
                    }
                    let _ = fs::remove_file(&path);
                }
                Err(e) => return Err(e).with_context(|| format!("cannot claim the name {name}")),
            }
        }
        bail!("cannot claim the name {name}: another berth is claiming it")
    }

    /// Gives up `name` if `id` holds it.
    pub fn release_name(&self, name: &str, id: &str) {
        let path = self.names_dir().join(name);
        if fs::read_to_string(&path).is_ok_and(|h| h.trim() == id) {
            let _ = fs::remove_file(path);
        }
    }

    /// A new container id: 64 hex digits from the kernel's random source, not all digits (a
    /// short id that looks like a number confuses tools, as Docker avoids too).
    pub fn new_id(&self) -> Result<String> {
        loop {
            let mut b = [0u8; 32];
            fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut b))
                .context("cannot read /dev/urandom")?;
            let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
            if id[..12].bytes().all(|c| c.is_ascii_digit()) || self.container_dir(&id).exists() {
                continue;
            }
            return Ok(id);
        }
    }
}

/// Docker's "No such container" error, which callers tell apart (exit codes, `rm -f`).
#[derive(Debug)]
pub struct NoSuchContainer(pub String);

impl std::fmt::Display for NoSuchContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "No such container: {}", self.0)
    }
}

impl std::error::Error for NoSuchContainer {}

pub fn is_full_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

pub fn check_name(name: &str) -> Result<()> {
    if !valid_name(name) {
        bail!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
    }
    Ok(())
}

/// A container read from disk.
#[derive(Clone, Debug)]
pub struct Container {
    pub dir: PathBuf,
    pub record: Record,
    pub state: State,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn bundle_dir(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle_dir().join("rootfs")
    }

    /// The writable layer (overlay's upper directory).
    pub fn upper_dir(&self) -> PathBuf {
        self.bundle_dir().join(".berth").join("upper")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-json.log", self.record.id))
    }

    /// Reads the state again (after another process may have changed it).
    pub fn reload(&mut self) {
        if let Ok(s) = read_json(&self.dir.join(STATE_FILE)) {
            self.state = s;
        }
    }

    pub fn save_record(&self) -> Result<()> {
        write_atomically(
            &self.dir.join(RECORD_FILE),
            &serde_json::to_vec_pretty(&self.record)?,
        )
        .with_context(|| format!("container {}: cannot write its record", self.record.id))
    }

    pub fn save_state(&self) -> Result<()> {
        write_atomically(
            &self.dir.join(STATE_FILE),
            &serde_json::to_vec_pretty(&self.state)?,
        )
        .with_context(|| format!("container {}: cannot write its state", self.record.id))
    }

    /// Reads, changes and writes the state under the container's lock.
    pub fn update_state(&mut self, change: impl FnOnce(&mut State)) -> Result<()> {
        let _lock = self.lock()?;
        self.reload();
        change(&mut self.state);
        self.save_state()
    }

    /// [`Container::update_state`], writing only when `change` says it changed something (a
    /// state file replaced costs ext4 a flush of the new file).
    pub fn update_state_if(&mut self, change: impl FnOnce(&mut State) -> bool) -> Result<()> {
        let _lock = self.lock()?;
        self.reload();
        if change(&mut self.state) {
            self.save_state()?;
        }
        Ok(())
    }

    /// The container's lock, held while its state is read and written.
    pub fn lock(&self) -> Result<nix::fcntl::Flock<fs::File>> {
        self.lock_named("lock")
    }

    /// A lock of the container's, by name (`start` holds its own while the monitor starts).
    pub fn lock_named(&self, name: &str) -> Result<nix::fcntl::Flock<fs::File>> {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(name))
            .with_context(|| format!("container {}: cannot open its lock", self.record.id))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("container {}: cannot lock it", self.record.id))
    }

    /// The status as it really is: a record saying "running" whose monitor and process are
    /// gone (berth or the monitor was killed) is exited.
    pub fn status(&self, engine: &Engine) -> Status {
        let st = &self.state;
        if !self.record.complete {
            return match &self.record.creator {
                Some(p) if p.alive() => Status::Created,
                _ => Status::Dead,
            };
        }
        if !st.status.is_active() {
            return st.status;
        }
        if st.monitor.as_ref().is_some_and(|m| m.alive()) {
            if st.status == Status::Running && self.runtime_paused(engine) {
                return Status::Paused;
            }
            return st.status;
        }
        // The monitor is gone: the runtime's record tells whether the process still runs.
        match self.runtime_status(engine) {
            Some(crate::runtime::state::Status::Running) => Status::Running,
            Some(crate::runtime::state::Status::Paused) => Status::Paused,
            _ => Status::Exited,
        }
    }

    /// Whether a process of the container may be alive, its init waiting to start included
    /// (what it holds, such as its network endpoints, is in use).
    pub fn may_have_processes(&self, engine: &Engine) -> bool {
        use crate::runtime::state::Status as R;
        self.status(engine).is_active()
            || matches!(
                self.runtime_status(engine),
                Some(R::Creating | R::Created | R::Running | R::Paused)
            )
    }

    fn runtime_status(&self, engine: &Engine) -> Option<crate::runtime::state::Status> {
        let dir = engine.state_root.join(&self.record.id);
        let st = crate::runtime::state::read_state(&dir).ok()?;
        Some(crate::runtime::state::derive_status(&dir, &st))
    }

    fn runtime_paused(&self, engine: &Engine) -> bool {
        self.runtime_status(engine) == Some(crate::runtime::state::Status::Paused)
    }

    /// The exit code to show: a container whose monitor died without recording one exited
    /// unseen, which Docker shows as 255.
    pub fn exit_code(&self, engine: &Engine) -> i32 {
        if self.state.status.is_active() && self.status(engine) == Status::Exited {
            255
        } else {
            self.state.exit_code
        }
    }
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("corrupt {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert!(valid_name("web"));
        assert!(valid_name("a1_b.c-d"));
        assert!(!valid_name("a"));
        assert!(!valid_name("_web"));
        assert!(!valid_name("we b"));
        assert!(!valid_name("web/1"));
        let e = check_name("-x").unwrap_err().to_string();
        assert!(e.contains("Invalid container name (-x)"), "{e}");
    }

    #[test]
    fn a_name_is_taken_once_and_a_stale_claim_is_reclaimed() {
        let dir = std::env::temp_dir().join(format!("berth-names-{}", std::process::id()));
        let engine = Engine::new(&dir, &dir.join("run"));
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        fs::create_dir_all(engine.container_dir(&a)).unwrap();
        engine.claim_name("web", &a).unwrap();
        let e = engine.claim_name("web", &b).unwrap_err().to_string();
        assert!(
            e.contains("\"/web\" is already in use by container \"aaaa"),
            "{e}"
        );
        // The holder's directory is gone: the claim was left by a crash.
        fs::remove_dir_all(engine.container_dir(&a)).unwrap();
        engine.claim_name("web", &b).unwrap();
        assert_eq!(
            fs::read_to_string(engine.names_dir().join("web")).unwrap(),
            b
        );
        engine.release_name("web", &a); // not the holder: nothing happens
        assert!(engine.names_dir().join("web").exists());
        engine.release_name("web", &b);
        assert!(!engine.names_dir().join("web").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
