//! What the container verbs do to a container on record: start (through a new monitor), stop,
//! kill, wait, pause, rename, exec. Each reads the record, acts through the runtime core's API,
//! and leaves the record true.

use super::attach::{self, ClientOptions, Ended};
use super::monitor::{self, StartError};
use super::record::{Container, Engine, Status};
use crate::image::rootfs::mount_overlay;
use crate::image::store::Store;
use crate::runtime::container::{self as runtime, ExecOptions};
use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Docker's default `stop` timeout.
pub const DEFAULT_STOP_TIMEOUT: i64 = 10;

/// How a started container's session ended, for `run` and `start -a`.
pub enum Outcome {
    /// Detached: the container goes on.
    Detached,
    /// The container's exit code.
    Exited(i32),
}

/// Starts a created or exited container. With `attach`, relays its streams until it exits (or
/// the user detaches) and returns how it ended.
pub fn start(
    engine: &Engine,
    store: &Store,
    c: &mut Container,
    attach: Option<&ClientOptions>,
) -> std::result::Result<Outcome, StartError> {
    let internal = |e: anyhow::Error| StartError {
        code: 125,
        message: format!("{e:#}"),
    };
    // One start at a time: a second `start` waits, then finds the container running.
    let starting = c.lock_named("start").map_err(internal)?;
    c.reload();
    match c.status(engine) {
        Status::Running | Status::Restarting => return Ok(Outcome::Detached),
        Status::Paused => {
            return Err(internal(anyhow::anyhow!(
                "cannot start a paused container, try unpause instead"
            )))
        }
        Status::Removing | Status::Dead => {
            return Err(internal(anyhow::anyhow!(
                "container {} is marked for removal and cannot be started",
                c.id()
            )))
        }
        Status::Created | Status::Exited => {}
    }
    // A runtime container left by a monitor that was killed.
    let _ = runtime::delete(&engine.runtime_globals(), c.id(), true);
    ensure_rootfs(store, c).map_err(internal)?;
    super::create::refresh_joined_namespaces(engine, c).map_err(internal)?;
    super::mounts::prepare_start(engine, c).map_err(internal)?;
    crate::network::publish::networks_up(engine, c).map_err(internal)?;
    let Some(o) = attach else {
        monitor::launch(engine, c, None)?;
        return Ok(Outcome::Detached);
    };
    let (mine, theirs) = UnixStream::pair().map_err(|e| internal(e.into()))?;
    monitor::launch(engine, c, Some(theirs))?;
    drop(starting);
    match attach::run_client(mine, o).map_err(internal)? {
        Ended::Exited(code) => Ok(Outcome::Exited(code)),
        Ended::Failed { code, message } => Err(StartError { code, message }),
        Ended::Detached => Ok(Outcome::Detached),
        Ended::Lost => {
            c.reload();
            Ok(Outcome::Exited(c.exit_code(engine)))
        }
    }
}

/// Mounts the container's overlay again where it is not mounted (after a reboot).
pub(crate) fn ensure_rootfs(store: &Store, c: &Container) -> Result<()> {
    let rootfs = c.rootfs();
    let dev = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            .ok()
    };
    let private = c.bundle_dir().join(".berth");
    if !private.join("upper").exists() || dev(&rootfs) != dev(&c.bundle_dir()) {
        return Ok(()); // mounted, or a copied rootfs
    }
    let manifest = c.record.manifest.parse().context("the record's manifest")?;
    let lowers = store
        .snapshot_dirs(&manifest)
        .with_context(|| format!("image {}", c.record.config.image))?;
    mount_overlay(
        &lowers,
        &private.join("upper"),
        &private.join("work"),
        &rootfs,
    )
}

/// `stop`: the stop signal, then SIGKILL after `timeout` seconds (-1: wait for ever).
pub fn stop(engine: &Engine, c: &mut Container, timeout: Option<i64>) -> Result<()> {
    if !c.status(engine).is_active() {
        return Ok(());
    }
    c.update_state(|s| s.stopped_by_user = true)?;
    let timeout = timeout
        .or(c.record.config.stop_timeout)
        .unwrap_or(DEFAULT_STOP_TIMEOUT);
    let signal = if c.record.config.stop_signal.is_empty() {
        Signal::SIGTERM
    } else {
        super::create::parse_signal(&c.record.config.stop_signal).unwrap_or(Signal::SIGTERM)
    };
    let g = engine.runtime_globals();
    if c.status(engine) == Status::Paused {
        let _ = runtime::resume(&g, c.id());
    }
    let init = runtime_init(engine, c.id());
    let mut sent = None;
    if let Some(pid) = &init {
        if runtime::kill_container(&g, c.id(), signal, false).is_ok() {
            sent = Some(signal);
        }
        let limit = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
        if !pid.wait(limit) {
            let _ = runtime::kill_container(&g, c.id(), Signal::SIGKILL, true);
            sent = Some(Signal::SIGKILL);
            pid.wait(Some(Duration::from_secs(10)));
        }
    }
    finish_stop(engine, c, sent)
}

/// Waits for the monitor to record the exit and end; records the exit itself when the monitor
/// is gone.
fn finish_stop(engine: &Engine, c: &mut Container, sent: Option<Signal>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let monitor = c.state.monitor;
    let monitor_fd = monitor
        .as_ref()
        .and_then(|m| monitor::pidfd_open(m.pid).ok().filter(|_| m.alive()));
    if let Some(fd) = monitor_fd {
        // The monitor ends once the exit is recorded and the runtime's container deleted.
        let left = deadline.saturating_duration_since(Instant::now());
        let exited = Init { pidfd: fd }.wait(Some(left));
        if exited {
            c.reload();
            if !c.state.status.is_active() {
                return Ok(());
            }
        } else {
            bail!("container {}: its monitor did not record the exit", c.id());
        }
    }
    // The monitor may have recorded the exit and ended before we looked.
    c.reload();
    if !c.state.status.is_active() {
        return Ok(());
    }
    // The monitor died: the container's exit is ours to record.
    runtime::delete(&engine.runtime_globals(), c.id(), true)?;
    let code = sent.map_or(255, |s| 128 + s as i32);
    c.update_state(|s| {
        // Checked again under the lock: a record written meanwhile stands.
        if s.status.is_active() {
            s.status = Status::Exited;
            s.pid = 0;
            s.exit_code = code;
            s.monitor = None;
            s.finished_at = crate::image::time::now_rfc3339_nanos();
        }
    })
}

/// The runtime container's init process, pinned by a pidfd.
struct Init {
    pidfd: std::os::fd::OwnedFd,
}

impl Init {
    /// Waits for the process to exit; false on timeout.
    fn wait(&self, limit: Option<Duration>) -> bool {
        let mut p = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = limit.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
        loop {
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, ms) };
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return n > 0;
        }
    }
}

fn runtime_init(engine: &Engine, id: &str) -> Option<Init> {
    let st = crate::runtime::state::read_state(&engine.state_root.join(id)).ok()?;
    if st.pid <= 0 {
        return None;
    }
    let pidfd = monitor::pidfd_open(st.pid).ok()?;
    // The pid is the container's only if it started when the runtime recorded.
    (crate::runtime::state::process_start_time(st.pid) == Some(st.pid_start_time))
        .then_some(Init { pidfd })
}

/// Whether a signal ends a container as `stop` would: the restart policy then does not apply.
fn ends_it(s: Signal, c: &Container) -> bool {
    matches!(
        s,
        Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT
    ) || super::create::parse_signal(&c.record.config.stop_signal).ok() == Some(s)
}

/// `kill`: a signal to the container's init.
pub fn kill(engine: &Engine, c: &mut Container, signal: Signal) -> Result<()> {
    if !matches!(c.status(engine), Status::Running | Status::Paused) {
        bail!(
            "cannot kill container: {}: container {} is not running",
            c.record.name,
            c.id()
        );
    }
    if ends_it(signal, c) {
        c.update_state(|s| s.stopped_by_user = true)?;
    }
    runtime::kill_container(&engine.runtime_globals(), c.id(), signal, false)
        .with_context(|| format!("cannot kill container: {}", c.record.name))
}

/// `wait`: blocks until the container is not running and returns its exit code.
pub fn wait(engine: &Engine, c: &mut Container) -> Result<i32> {
    loop {
        c.reload();
        if !c.dir.exists() {
            // Removed meanwhile (`--rm`): the last code seen.
            return Ok(c.state.exit_code);
        }
        let s = c.status(engine);
        if !s.is_active() && s != Status::Removing {
            return Ok(c.exit_code(engine));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn pause(engine: &Engine, c: &Container) -> Result<()> {
    match c.status(engine) {
        Status::Running => {}
        Status::Paused => bail!("Container {} is already paused", c.id()),
        _ => bail!("Container {} is not running", c.id()),
    }
    runtime::pause(&engine.runtime_globals(), c.id())
}

pub fn unpause(engine: &Engine, c: &Container) -> Result<()> {
    if c.status(engine) != Status::Paused {
        bail!("Container {} is not paused", c.id());
    }
    runtime::resume(&engine.runtime_globals(), c.id())
}

/// `rename`: the new name is claimed before the old one is given up.
pub fn rename(engine: &Engine, c: &mut Container, new: &str) -> Result<()> {
    let new = new.strip_prefix('/').unwrap_or(new);
    if new == c.record.name {
        bail!("Renaming a container with the same name as its current name");
    }
    engine.claim_name(new, c.id())?;
    let old = std::mem::replace(&mut c.record.name, new.to_string());
    if let Err(e) = c.save_record() {
        engine.release_name(new, c.id());
        return Err(e);
    }
    engine.release_name(&old, c.id());
    Ok(())
}

/// What `exec` was asked.
pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub detach: bool,
}

/// `exec`: a new process in a running container, through the runtime's `exec`; returns its
/// exit code (or Docker's 126/127 when it cannot be run).
pub fn exec(engine: &Engine, c: &Container, r: &ExecRequest) -> Result<i32> {
    match c.status(engine) {
        Status::Running => {}
        Status::Paused => bail!(
            "Container {} is paused, unpause the container before exec",
            c.id()
        ),
        _ => bail!("container {} is not running", c.id()),
    }
    if r.args.is_empty() {
        bail!("exec: no command given");
    }
    let (user, additional_gids) = match &r.user {
        Some(u) => {
            let ru = crate::image::bundle::resolve_user(&c.rootfs(), u)
                .map_err(|e| anyhow::anyhow!("unable to find user {u}: {e:#}"))?;
            (
                Some(format!("{}:{}", ru.uid, ru.gid)),
                super::create::supplementary_groups(&ru),
            )
        }
        None => (None, Vec::new()),
    };
    let mut env = r.env.clone();
    if r.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let o = ExecOptions {
        id: c.id().to_string(),
        process_file: None,
        args: r.args.clone(),
        env,
        cwd: r.workdir.as_ref().map(Into::into),
        user,
        additional_gids,
        tty: r.tty,
        detach: r.detach,
        pid_file: None,
        console_socket: None,
        preserve_fds: 0,
        no_new_privs: false,
        caps: Vec::new(),
        ..Default::default()
    };
    runtime::exec(&engine.runtime_globals(), &o)
}
