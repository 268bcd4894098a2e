//! The container lifecycle: what each command does, as a Rust API the CLI (and the layers
//! above the runtime) call.

use crate::runtime::birth::{self, BirthPlan, Born, Release};
use crate::runtime::cgroups::{self, container_cgroup_path, CgroupPaths};
use crate::runtime::foreground;
use crate::runtime::fsutil::StagedFile;
use crate::runtime::hooks;
use crate::runtime::log;
use crate::runtime::namespaces::{self, NamespacePlan};
use crate::runtime::process::ProcessPlan;
use crate::runtime::rootfs::RootfsPlan;
use crate::runtime::spec;
use crate::runtime::state::{
    self, derive_status, oci_state_json, ContainerDir, ContainerState, Locking, ProcessId, Status,
};
use crate::runtime::sync::{self, Msg};
use crate::runtime::tty;
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, Hooks, LinuxNamespaceType, Process};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The container's `linux.seccomp`, which `exec` processes get too.
const SECCOMP_FILE: &str = "seccomp.json";

/// Options every command shares.
pub struct Globals {
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    /// runc's `--rootless`: whether cgroup permission errors are tolerated (a container
    /// without limits then stays in the caller's cgroup). None: auto, i.e. when not root.
    pub rootless: Option<bool>,
}

impl Globals {
    /// The defaults of every flag but `--root`.
    pub fn at(root: PathBuf) -> Globals {
        Globals {
            root,
            systemd_cgroup: false,
            rootless: None,
        }
    }
}

#[derive(Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    /// runc 1.2's `--pidfd-socket`: a Unix socket that is sent a pidfd of the init.
    pub pidfd_socket: Option<PathBuf>,
    /// `run --no-subreaper`: berth does not adopt the container's orphans.
    pub no_subreaper: bool,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: i32,
}

/// `create`: set the container up and leave its process waiting for `start`.
pub fn create(g: &Globals, o: &CreateOptions) -> Result<()> {
    crate::runtime::process::record_callers_fds(o.preserve_fds);
    let (_dir, _born, _state) = create_container(g, o, false)?;
    Ok(())
}

/// `run`: create and start; in the foreground, wait and return the container's exit status.
pub fn run(g: &Globals, o: &CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    crate::runtime::process::record_callers_fds(o.preserve_fds);
    let fg = if detach {
        None
    } else {
        Some(foreground::Foreground::prepare(!o.no_subreaper)?)
    };
    let started = create_and_start(g, o)?;
    let Some(fg) = fg else { return Ok(0) };
    let status = fg.wait(started.pid, started.pty_master)?;
    if !keep {
        delete(g, &o.id, true)?;
    }
    Ok(status)
}

/// A container started for a caller that supervises it (the engine's monitor): its process is
/// the caller's child, and the caller waits for it and deletes the container after.
pub struct Started {
    pub pid: i32,
    /// The terminal's master side, when `process.terminal` is set and no console socket given.
    pub pty_master: Option<OwnedFd>,
}

/// `run --detach` for a supervisor: create and start, and hand back the process and terminal.
/// The process inherits the caller's standard streams (0, 1, 2).
pub fn run_supervised(g: &Globals, o: &CreateOptions) -> Result<Started> {
    create_supervised(g, o)?.start()
}

/// A container created for a supervisor, its process set up in its namespaces and waiting for
/// [`Pending::start`]: the supervisor may act on its namespaces first (the engine brings the
/// loopback up in a new network namespace). Dropped unstarted, the container is deleted.
pub struct Pending {
    root: PathBuf,
    id: String,
    dir: Option<ContainerDir>,
    born: Option<Born>,
    state: ContainerState,
}

/// The first half of [`run_supervised`].
pub fn create_supervised(g: &Globals, o: &CreateOptions) -> Result<Pending> {
    crate::runtime::process::record_callers_fds(o.preserve_fds);
    let (dir, born, state) = create_container(g, o, true)?;
    Ok(Pending {
        root: g.root.clone(),
        id: o.id.clone(),
        dir: Some(dir),
        born: Some(born),
        state,
    })
}

impl Pending {
    /// The container's process (the supervisor's child).
    pub fn pid(&self) -> i32 {
        self.born.as_ref().map_or(0, |b| b.pid)
    }

    /// Lets the process exec its program; returns once it has.
    pub fn start(mut self) -> Result<Started> {
        let born = self.born.take().expect("started once");
        sync::send(born.sync.as_fd(), &Msg::Start)
            .and_then(|()| wait_for_exec(born.sync.as_fd()))?;
        // A failure leaves `self` to its drop, which deletes the container (runc's `run` too).
        run_poststart(&self.state)?;
        self.dir = None; // unlock: `kill`, `exec`, `delete` from elsewhere must not wait for us
        self.born = None;
        let started = Started {
            pid: born.pid,
            pty_master: born.pty_master,
        };
        // Started: nothing for the drop to undo.
        self.id.clear();
        Ok(started)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.id.is_empty() {
            return;
        }
        self.dir = None;
        let g = Globals::at(self.root.clone());
        let _ = delete(&g, &self.id, true);
    }
}

fn create_and_start(g: &Globals, o: &CreateOptions) -> Result<Started> {
    let (dir, born, state) = create_container(g, o, true)?;
    Pending {
        root: g.root.clone(),
        id: o.id.clone(),
        dir: Some(dir),
        born: Some(born),
        state,
    }
    .start()
}

/// What `create` and `run` share: everything up to a process waiting to be started.
fn create_container(
    g: &Globals,
    o: &CreateOptions,
    for_run: bool,
) -> Result<(ContainerDir, Born, ContainerState)> {
    let dir = ContainerDir::create(&g.root, &o.id)?;
    let mut cleanup = Cleanup {
        dir: Some(dir),
        cgroup: None,
        host_mounts: None,
    };
    let (born, state) = create_in(g, o, for_run, &mut cleanup)?;
    cleanup.cgroup = None;
    cleanup.host_mounts = None;
    let dir = cleanup.dir.take().expect("held until success");
    Ok((dir, born, state))
}

/// Undoes a failed create: cgroup, mounts in the host's namespace, state directory.
struct Cleanup {
    dir: Option<ContainerDir>,
    cgroup: Option<CgroupPaths>,
    host_mounts: Option<(PathBuf, u64)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(cg) = &self.cgroup {
            // A process may be in some hierarchies only, caught while joining.
            cg.kill_everything();
            for e in cg.destroy() {
                log::warn(&format!("{e:#}"));
            }
        }
        if let Some((rootfs, base)) = &self.host_mounts {
            if let Err(e) = crate::runtime::hostmounts::detach_above(rootfs, *base) {
                log::warn(&format!("{e:#}"));
            }
        }
        if let Some(dir) = self.dir.take() {
            remove_rdt_group(&dir.path);
            let _ = dir.remove();
        }
    }
}

fn create_in(
    g: &Globals,
    o: &CreateOptions,
    for_run: bool,
    cleanup: &mut Cleanup,
) -> Result<(Born, ContainerState)> {
    let bundle = spec::load_bundle(&o.bundle)?;
    let spec = &bundle.spec;
    let linux = spec.linux().as_ref();
    let process = spec.process().as_ref().expect("validated");
    let ns = NamespacePlan::new(linux)?;
    // No mount namespace listed: the container's mounts go in the host's, under a bind of the
    // rootfs that `delete` detaches (runc leaves them behind).
    let rootfs_mount_base = if ns.has(LinuxNamespaceType::Mount) {
        None
    } else {
        Some(crate::runtime::hostmounts::mount_id(&bundle.rootfs).context("root.path")?)
    };
    let terminal = process.terminal().unwrap_or(false);
    if terminal && o.console_socket.is_none() && !for_run {
        bail!("process.terminal: a terminal needs --console-socket when the container is created detached");
    }
    let seccomp = linux.and_then(|l| l.seccomp().as_ref());
    let mut process_plan = ProcessPlan::new(process, o.preserve_fds, seccomp)?;
    process_plan
        .sched
        .check_start_hooks(spec.hooks().as_ref())?;
    process_plan.task_attrs = crate::runtime::taskattrs::TaskAttrs::new(linux)?;
    let net_devices = crate::runtime::netdev::NetDevices::new(linux)?;
    let rdt = crate::runtime::rdt::RdtPlan::new(linux, &o.id)?;
    for w in &process_plan.warnings {
        log::debug(w);
    }
    let mounted = cgroups::hierarchies()?;
    let root = nix::unistd::geteuid().is_root();
    if g.systemd_cgroup && !root && cgroups::layout_of(&mounted) != cgroups::Layout::V2 {
        bail!(
            "--systemd-cgroup as a non-root user needs a cgroup v2 host: a user's systemd \
             instance is delegated no v1 hierarchy (leave out --systemd-cgroup)"
        );
    }
    let rel = container_cgroup_path(
        linux.and_then(|l| l.cgroups_path().as_deref()),
        &o.id,
        g.systemd_cgroup,
    )?;
    let systemd_unit = g
        .systemd_cgroup
        .then(|| cgroups::systemd_unit(linux.and_then(|l| l.cgroups_path().as_deref()), &o.id))
        .transpose()?;
    let resources = linux.and_then(|l| l.resources().as_ref());
    let rootless = g.rootless.unwrap_or(!root);
    let mut cgroup = CgroupPaths::plan(&rel, &mounted)?;
    // A cgroup that holds processes already is another container's (or anyone's): sharing it
    // shares its limits, its freezer and the kill of every process at a delete. runc (since
    // 1.1) warns and goes on, for configurations that share a cgroup on purpose; so does berth.
    let found = cgroup.processes_in_existing();
    if found > 0 {
        log::warn(&format!(
            "container's cgroup is not empty: {found} process(es) found"
        ));
    }
    // systemd makes the scope's cgroup (and its slices) and removes it with the unit: the
    // record names the unit instead of the directories.
    cgroup.systemd_scope = systemd_unit.as_ref().map(|u| u.scope.clone());
    let made_early = |h: &cgroups::Hierarchy| systemd_unit.is_none() && made_before_clone(h, root);
    let all_hooks = spec.hooks().clone().unwrap_or_default();
    let mut state = ContainerState {
        id: o.id.clone(),
        pid: 0,
        pid_start_time: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: log::now_rfc3339(),
        owner: owner_name(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        cgroup: CgroupPaths {
            created: if systemd_unit.is_some() {
                Vec::new()
            } else {
                cgroup.to_be_made(&mounted)
            },
            ..cgroup.clone()
        },
        namespaces: ns.types.clone(),
        hooks: Some(kept_hooks(&all_hooks)),
        process: process.clone(),
        shares_host_pid_ns: !ns.has(LinuxNamespaceType::Pid),
        rootfs_mount_base,
        creating: Some(ProcessId::me()?),
    };
    // The record first: whatever is made from here on, a `delete --force` after berth is
    // killed at any instant finds it from this.
    cleanup
        .dir
        .as_ref()
        .expect("held until success")
        .write_record(&state)?;
    cleanup.host_mounts = rootfs_mount_base.map(|base| (state.rootfs.clone(), base));
    let state_dir = &cleanup.dir.as_ref().expect("held until success").path;
    process_plan.task_attrs.save(state_dir)?;
    process_plan.rdt = rdt.map(|r| r.make(state_dir)).transpose()?;
    let made = cgroup.make(&mounted, made_early);
    if let Err(e) = made {
        cgroup.remove_created();
        // Rootless without delegation: like runc, go on in the caller's cgroup when nothing
        // is to be limited.
        if !rootless || !cgroups::is_permission_error(&e) {
            return Err(e);
        }
        if asks_for_limits(resources) {
            return Err(e.context(
                "linux.resources: limits need a cgroup, and a non-root user cannot create \
                 one here (no delegation); remove the limits or run as root",
            ));
        }
        log::debug(&format!(
            "rootless: no cgroup for the container, it stays in berth's ({e:#})"
        ));
        cgroup = CgroupPaths::default();
    }
    cleanup.cgroup = Some(cgroup.clone());
    let cgroup_binds = if !cgroup.dirs.is_empty() {
        cgroup
            .names
            .iter()
            .cloned()
            .zip(cgroup.dirs.iter().cloned())
            .collect()
    } else {
        cgroups::own_cgroup_binds()?
    };
    let in_user_ns = ns.has(LinuxNamespaceType::User);
    let rootfs = RootfsPlan::new(
        spec,
        &bundle.dir,
        &bundle.rootfs,
        cgroup_binds,
        in_user_ns,
        o.no_pivot,
    )?;
    let console = o
        .console_socket
        .as_deref()
        .map(tty::connect_console_socket)
        .transpose()?;
    let dir = cleanup.dir.as_ref().expect("held until success");
    let release = if for_run {
        Release::Sync
    } else {
        Release::StartSocket(listen_for_start(dir)?)
    };
    state.cgroup = cgroup.clone();
    let plan = BirthPlan {
        state: state.clone(),
        ns,
        rootfs,
        process: process_plan,
        // Empty is unset, as runc has it.
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        domainname: spec.domainname().clone().filter(|d| !d.is_empty()),
        sysctl: linux
            .and_then(|l| l.sysctl().clone())
            .unwrap_or_default()
            .into_iter()
            .collect(),
        hooks: all_hooks,
        cgroup,
        console,
        release,
        session_keyring: (!o.no_new_keyring).then(|| format!("_ses.{}", o.id)),
        close_in_child: vec![dir.lock_fd()],
        net_devices,
    };
    let no_resources = oci_spec::runtime::LinuxResources::default();
    let mut work = CreateWork {
        cgroup: cleanup.cgroup.as_mut().expect("set above"),
        systemd: systemd_unit.as_ref(),
        root,
        mounted: &mounted,
        resources: resources.unwrap_or(&no_resources),
        dir,
        state,
        seccomp,
        staged: None,
    };
    let born = birth::give_birth(&plan, &mut work)?;
    work.staged
        .take()
        .context("internal: the container's state was not recorded")?
        .commit()?;
    if let Some(f) = &o.pid_file {
        write_pid_file(f, born.pid)?;
    }
    if let Some(sock) = &o.pidfd_socket {
        send_pidfd(sock, born.pid)?;
    }
    if !for_run {
        // The container is on record: its process may outlive us now (`run` tells it with
        // `Start`, and stays). Without this, our exit tells it to give up.
        sync::send(born.sync.as_fd(), &Msg::Handover)
            .context("the container process did not take over")?;
    }
    Ok((born, work.state))
}

/// What `create` does while the container process sets itself up.
struct CreateWork<'a> {
    cgroup: &'a mut CgroupPaths,
    /// With `--systemd-cgroup`: the scope to start with the container's process in it.
    systemd: Option<&'a cgroups::systemd::Unit>,
    root: bool,
    mounted: &'a [cgroups::Hierarchy],
    resources: &'a oci_spec::runtime::LinuxResources,
    dir: &'a ContainerDir,
    state: ContainerState,
    seccomp: Option<&'a oci_spec::runtime::LinuxSeccomp>,
    /// state.json, written ahead and put in place once the process is ready.
    staged: Option<StagedFile>,
}

impl birth::ParentWork for CreateWork<'_> {
    fn prepare_cgroup(&mut self, pid: i32) -> Result<()> {
        if self.cgroup.dirs.is_empty() {
            return Ok(()); // rootless, in berth's own cgroup
        }
        if let Some(unit) = self.systemd {
            let limits = cgroups::systemd::resource_properties(
                self.resources,
                cgroups::layout_of(self.mounted),
            )?;
            cgroups::systemd::start_scope(unit, pid, limits)?;
            // Hierarchies systemd does not manage (v1 only) are berth's to make.
            self.cgroup.make(self.mounted, |_| true)?;
        } else {
            let root = self.root;
            self.cgroup
                .make(self.mounted, |h| !made_before_clone(h, root))?;
        }
        // Limits go on before the process joins, so it never runs unlimited. Written without
        // resources too: on a v2 host that enables the controllers down to the container's
        // cgroup.
        cgroups::apply_resources_on(self.cgroup, self.mounted, self.resources)
    }

    fn record(&mut self, pid: i32) -> Result<()> {
        self.state.cgroup = self.cgroup.clone();
        self.state.creating = None;
        self.state.pid = pid;
        self.state.pid_start_time = state::process_start_time(pid)
            .context("the container process vanished during set-up")?;
        if let Some(filter) = self.seccomp {
            // Kept apart from state.json (read by every command): only `exec` needs it.
            std::fs::write(
                self.dir.path.join(SECCOMP_FILE),
                serde_json::to_vec(filter)?,
            )
            .context("cannot save the seccomp profile")?;
        }
        self.staged = Some(self.dir.stage(&self.state)?);
        Ok(())
    }
}

/// Made before the clone: the cgroup2 directory the process is cloned into and, when berth is
/// not root, everything (whether it may make a cgroup at all decides the mounts). The rest is
/// made after the clone, while the process makes its namespaces.
fn made_before_clone(h: &cgroups::Hierarchy, root: bool) -> bool {
    h.unified || !root
}

/// Whether `linux.resources` sets any limit. Device rules do not count: without a cgroup
/// they cannot be enforced, and runc ignores them for rootless containers as well (a user
/// namespace cannot mknod, and only host devices bound in are reachable).
fn asks_for_limits(r: Option<&oci_spec::runtime::LinuxResources>) -> bool {
    r.is_some_and(|r| {
        let mut r = r.clone();
        r.set_devices(None);
        r != oci_spec::runtime::LinuxResources::default()
    })
}

/// Only poststart and poststop are needed after `create`; the rest ran already.
fn kept_hooks(h: &Hooks) -> Hooks {
    let mut kept = Hooks::default();
    kept.set_poststart(h.poststart().clone());
    kept.set_poststop(h.poststop().clone());
    kept
}

fn owner_name() -> String {
    let uid = nix::unistd::getuid().as_raw();
    crate::runtime::process::passwd_field(uid, 0)
        .ok()
        .flatten()
        .unwrap_or_else(|| uid.to_string())
}

/// The path by which a socket in `dir` can be bound or reached: sun_path holds 108 bytes, and
/// a container's state directory can be longer, so go through /proc/self/fd when needed.
fn socket_path(dir: &Path, dir_fd: &OwnedFd) -> PathBuf {
    let direct = dir.join(state::START_SOCKET);
    if direct.as_os_str().len() < 100 {
        direct
    } else {
        PathBuf::from(format!(
            "/proc/self/fd/{}/{}",
            dir_fd.as_raw_fd(),
            state::START_SOCKET
        ))
    }
}

fn listen_for_start(dir: &ContainerDir) -> Result<OwnedFd> {
    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };
    let dir_fd: OwnedFd = std::fs::File::open(&dir.path)?.into();
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("start socket")?;
    let addr = UnixAddr::new(&socket_path(&dir.path, &dir_fd)).context("start socket address")?;
    bind(sock.as_raw_fd(), &addr).context("cannot bind the start socket")?;
    listen(&sock, Backlog::new(1).expect("valid backlog"))
        .context("cannot listen on the start socket")?;
    Ok(sock)
}

/// `--pidfd-socket`: the process as a pidfd, sent as runc sends it (SCM_RIGHTS, named "pidfd"),
/// so the receiver can signal and wait for exactly this process whatever pid reuse follows.
fn send_pidfd(socket: &Path, pid: i32) -> Result<()> {
    let pidfd = hooks::pidfd_open(Pid::from_raw(pid))
        .with_context(|| format!("--pidfd-socket: pidfd_open({pid})"))?;
    let sock = tty::connect_unix(socket, "--pidfd-socket")?;
    tty::send_fd(sock.as_fd(), pidfd.as_fd(), "pidfd").context("--pidfd-socket")
}

fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    crate::runtime::fsutil::write_atomically(path, pid.to_string().as_bytes())
        .with_context(|| format!("--pid-file {}", path.display()))
}

/// Waits until the process has exec'd (its end of `fd` closes) or reports why it could not.
fn wait_for_exec(fd: std::os::fd::BorrowedFd) -> Result<()> {
    match sync::recv(fd)? {
        None => Ok(()),
        Some(Msg::Error(e)) => bail!("{e}"),
        Some(other) => bail!("sync channel: unexpected {other:?} while starting"),
    }
}

/// runtime-spec 1.3: a failing poststart hook is an error, and the container is stopped (by
/// the caller); the remaining hooks do not run.
fn run_poststart(st: &ContainerState) -> Result<()> {
    let hooks = st
        .hooks
        .as_ref()
        .and_then(|h| h.poststart().clone())
        .unwrap_or_default();
    if hooks.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_vec(&oci_state_json(st, Status::Running))?;
    hooks::run_hooks("poststart", &hooks, &json)
}

/// poststop: a failure is a warning, and the other hooks still run (runtime-spec).
fn run_poststop(list: &[Hook], st: &ContainerState) {
    if list.is_empty() {
        return;
    }
    let json = serde_json::to_vec(&oci_state_json(st, Status::Stopped)).unwrap_or_default();
    for e in hooks::run_all_hooks("poststop", list, &json) {
        log::warn(&format!("{e:#}"));
    }
}

/// `start`: release a created container's process.
pub fn start(g: &Globals, id: &str) -> Result<()> {
    let dir = ContainerDir::open(&g.root, id)?;
    let st = dir.load()?;
    let status = derive_status(&dir.path, &st);
    if status != Status::Created {
        bail!(
            "container {id:?} cannot be started: it is {}",
            status.as_str()
        );
    }
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let dir_fd: OwnedFd = std::fs::File::open(&dir.path)?.into();
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(&socket_path(&dir.path, &dir_fd))?;
    connect(sock.as_raw_fd(), &addr)
        .with_context(|| format!("container {id:?}: its process is not waiting to start"))?;
    // From here on the container counts as running.
    std::fs::remove_file(dir.start_socket()).context("cannot remove the start socket")?;
    wait_for_exec(sock.as_fd()).with_context(|| format!("container {id:?} failed to start"))?;
    if let Err(e) = run_poststart(&st) {
        drop(dir);
        // Stopped, as the runtime-spec asks; `delete` removes it.
        let _ = kill_container(g, id, Signal::SIGKILL, true);
        return Err(e);
    }
    Ok(())
}

/// `state`: the OCI state of a container.
pub fn state(g: &Globals, id: &str) -> Result<serde_json::Value> {
    state::validate_id(id)?;
    let dir = g.root.join(id);
    let st =
        state::read_state(&dir).map_err(|_| anyhow::anyhow!("container {id:?} does not exist"))?;
    Ok(oci_state_json(&st, derive_status(&dir, &st)))
}

/// `list`: every container with its status.
pub fn list(g: &Globals) -> Result<Vec<(ContainerState, Status)>> {
    let mut out = Vec::new();
    for id in state::list_ids(&g.root)? {
        let dir = g.root.join(&id);
        if let Ok(st) = state::read_state(&dir) {
            let status = derive_status(&dir, &st);
            out.push((st, status));
        }
    }
    Ok(out)
}

/// `kill`: signal the container's init, or with `all` every process in its cgroup.
pub fn kill_container(g: &Globals, id: &str, signal: Signal, all: bool) -> Result<()> {
    state::validate_id(id)?;
    let dir = g.root.join(id);
    let st =
        state::read_state(&dir).map_err(|_| anyhow::anyhow!("container {id:?} does not exist"))?;
    let status = derive_status(&dir, &st);
    if all {
        signal_all(&st, signal)?;
        return Ok(());
    }
    if status == Status::Stopped {
        bail!("container {id:?} is not running");
    }
    signal_init(&st, signal)
}

/// Signals the init through a pidfd, after checking it is still the same process.
fn signal_init(st: &ContainerState, signal: Signal) -> Result<()> {
    let init = ProcessId {
        pid: st.pid,
        start_time: st.pid_start_time,
    };
    match signal_process(init, signal) {
        Ok(true) => Ok(()),
        Ok(false) => bail!("container {:?} is not running", st.id),
        Err(e) => Err(e).with_context(|| format!("cannot signal container {:?}", st.id)),
    }
}

/// Signals `p` through a pidfd, after checking it is still the same process: between the
/// check and the signal, a pidfd cannot come to name another process. False if it is gone.
fn signal_process(p: ProcessId, signal: Signal) -> Result<bool> {
    if p.pid <= 0 {
        return Ok(false);
    }
    let Ok(pidfd) = hooks::pidfd_open(Pid::from_raw(p.pid)) else {
        return Ok(false);
    };
    if !p.alive() {
        return Ok(false);
    }
    // SAFETY: sends a signal through a pidfd we own; null siginfo means a plain kill.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(true)
}

fn signal_all(st: &ContainerState, signal: Signal) -> Result<()> {
    if st.cgroup.dirs.is_empty() {
        // A rootless container placed in no cgroup: its processes cannot be told from the
        // caller's, so only the init is signalled (in a pid namespace, SIGKILL ends them all).
        return match signal_init(st, signal) {
            Err(_) if state::process_start_time(st.pid) != Some(st.pid_start_time) => Ok(()),
            r => r,
        };
    }
    let pids = st.cgroup.pids()?;
    for p in pids {
        match kill(Pid::from_raw(p), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot signal pid {p}")),
        }
    }
    Ok(())
}

/// `delete`: remove a stopped container (or, with `force`, kill it first).
pub fn delete(g: &Globals, id: &str, force: bool) -> Result<()> {
    if force {
        return delete_forced(g, id);
    }
    let dir = ContainerDir::open(&g.root, id)?;
    let st = dir.load()?;
    match derive_status(&dir.path, &st) {
        Status::Stopped => {}
        Status::Created => kill_and_wait(&st)?,
        status => bail!(
            "container {id:?} cannot be deleted: it is {} (use --force)",
            status.as_str()
        ),
    }
    remove_container(dir, &st)
}

/// How long `delete --force` waits for the command holding a container's lock (a create
/// stuck part-way, say) before it acts without it.
const FORCED_LOCK_WAIT: Duration = Duration::from_secs(2);

/// `delete --force`: whatever the container's state (being created, created, running, paused,
/// stopped, a record left by a berth killed at any instant, a create stuck and holding the
/// lock), kill every process of it, wait for them to die, remove its cgroups and its state.
/// An id that does not exist is no error (runc).
fn delete_forced(g: &Globals, id: &str) -> Result<()> {
    let dir = match ContainerDir::lock_within(&g.root, id, Duration::ZERO)? {
        Locking::Locked(dir) => dir,
        Locking::Gone => return Ok(()),
        Locking::Busy => match unblock_and_lock(g, id)? {
            Some(dir) => dir,
            None => return Ok(()),
        },
    };
    let Ok(st) = dir.load() else {
        // Made by a create killed before it wrote the record: nothing else exists yet.
        return dir.remove();
    };
    if derive_status(&dir.path, &st) != Status::Stopped {
        kill_and_wait(&st)?;
    }
    remove_container(dir, &st)
}

/// Another command holds the container's lock; the usual holder that does not let go is a
/// create waiting for something of the container (its process, blocked; a hook it runs).
/// Kill the container's processes first, which makes such a create fail and clean up after
/// itself; if it still holds the lock, kill the create itself (its container process dies
/// with it: the parent-death signal). Returns the locked directory, or None if it is gone.
fn unblock_and_lock(g: &Globals, id: &str) -> Result<Option<ContainerDir>> {
    let dir = g.root.join(id);
    let seen = state::read_state(&dir).ok();
    if let Some(st) = &seen {
        st.cgroup.kill_everything();
        let _ = signal_init(st, Signal::SIGKILL);
    }
    let mut killed_creator = false;
    loop {
        match ContainerDir::lock_within(&g.root, id, FORCED_LOCK_WAIT)? {
            Locking::Locked(dir) => return Ok(Some(dir)),
            Locking::Gone => {
                // The create gave up and removed what it made; what it could not is ours.
                if let Some(st) = &seen {
                    if let Some(e) = st.cgroup.destroy().into_iter().next() {
                        return Err(e);
                    }
                }
                return Ok(None);
            }
            Locking::Busy if !killed_creator => {
                let creator = state::read_state(&dir)
                    .ok()
                    .or(seen.clone())
                    .and_then(|st| st.creating);
                match creator {
                    Some(c) if c.alive() => {
                        signal_process(c, Signal::SIGKILL).with_context(|| {
                            format!("container {id:?}: cannot kill the berth creating it")
                        })?;
                        killed_creator = true;
                    }
                    _ => bail!("container {id:?} is locked by another berth command"),
                }
            }
            Locking::Busy => {
                bail!("container {id:?} is still locked after its creator was killed")
            }
        }
    }
}

/// What every delete ends with: whatever is left in the cgroups (the container shared the
/// host pid namespace, exec'd processes outlived the init, a process caught joining) is
/// killed, the cgroups and the state directory removed.
fn remove_container(dir: ContainerDir, st: &ContainerState) -> Result<()> {
    let mut errors = st.cgroup.destroy();
    remove_rdt_group(&dir.path);
    if let Some(base) = st.rootfs_mount_base {
        if let Err(e) = crate::runtime::hostmounts::detach_above(&st.rootfs, base) {
            errors.push(e);
        }
    }
    // A container that never finished its creation never ran: no poststop for it.
    if st.creating.is_none() {
        let poststop = st
            .hooks
            .as_ref()
            .and_then(|h| h.poststop().clone())
            .unwrap_or_default();
        run_poststop(&poststop, st);
    }
    dir.remove()?;
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    Ok(())
}

/// Removes the resctrl group berth made for the container, if any (its processes are gone).
fn remove_rdt_group(state_dir: &Path) {
    let group = crate::runtime::rdt::RdtGroup::load(state_dir);
    if let Err(e) = group.and_then(|g| g.map_or(Ok(()), |g| g.remove())) {
        log::warn(&format!("{e:#}"));
    }
}

fn kill_and_wait(st: &ContainerState) -> Result<()> {
    if st.cgroup.is_frozen() {
        // A frozen process cannot die.
        let _ = cgroups::thaw(&st.cgroup);
    }
    let _ = signal_init(st, Signal::SIGKILL);
    let _ = signal_all(st, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while state::process_start_time(st.pid) == Some(st.pid_start_time) {
        if Instant::now() > deadline {
            bail!(
                "container {:?}: its process {} did not die after SIGKILL",
                st.id,
                st.pid
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

#[derive(Default)]
pub struct ExecOptions {
    pub id: String,
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
    pub no_new_privs: bool,
    pub caps: Vec<String>,
    /// Join a paused container (the process stays frozen until `resume`).
    pub ignore_paused: bool,
    /// runc's `--cgroup [CONTROLLERS:]PATH`: existing sub-cgroups of the container's.
    pub cgroup: Vec<String>,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    pub pidfd_socket: Option<PathBuf>,
}

/// `exec`: run a new process in a running container.
pub fn exec(g: &Globals, o: &ExecOptions) -> Result<i32> {
    crate::runtime::process::record_callers_fds(o.preserve_fds);
    state::validate_id(&o.id)?;
    let dir = g.root.join(&o.id);
    let st = state::read_state(&dir)
        .map_err(|_| anyhow::anyhow!("container {:?} does not exist", o.id))?;
    match derive_status(&dir, &st) {
        Status::Running | Status::Created => {}
        Status::Paused if o.ignore_paused => {}
        Status::Paused => bail!(
            "cannot exec in a paused container {:?} (use --ignore-paused to override)",
            o.id
        ),
        s => bail!("cannot exec in container {:?}: it is {}", o.id, s.as_str()),
    }
    let mut st = st;
    if !o.cgroup.is_empty() {
        st.cgroup = cgroups::sub_cgroups(&st.cgroup, &o.cgroup)?;
    }
    let process = exec_process(&st, o)?;
    let seccomp: Option<oci_spec::runtime::LinuxSeccomp> =
        match std::fs::read(dir.join(SECCOMP_FILE)) {
            Ok(bytes) => {
                Some(serde_json::from_slice(&bytes).context("corrupt seccomp.json in the state")?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).context("cannot read the container's seccomp profile"),
        };
    let mut plan = ProcessPlan::new(&process, o.preserve_fds, seccomp.as_ref())?;
    plan.task_attrs = crate::runtime::taskattrs::TaskAttrs::load(&dir)?;
    plan.rdt = crate::runtime::rdt::RdtGroup::load(&dir)?;
    for w in &plan.warnings {
        log::debug(w);
    }
    if plan.terminal && o.detach && o.console_socket.is_none() {
        bail!("--tty: a detached exec with a terminal needs --console-socket");
    }
    let console = o
        .console_socket
        .as_deref()
        .map(tty::connect_console_socket)
        .transpose()?;
    let fg = if o.detach {
        None
    } else {
        Some(foreground::Foreground::prepare(true)?)
    };
    let joins = namespaces::open_container_namespaces(st.pid, &st.namespaces)?;
    let root = match st.rootfs_mount_base {
        // The init's root, as the kernel holds it (not the rootfs path looked up again).
        Some(_) => Some(
            nix::fcntl::open(
                format!("/proc/{}/root", st.pid).as_str(),
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .context("cannot open the container's root")?,
        ),
        None => None,
    };
    let (pid, pty_master) = birth::exec_into(&st, joins, root, &plan, console)?;
    if let Some(f) = &o.pid_file {
        write_pid_file(f, pid)?;
    }
    if let Some(sock) = &o.pidfd_socket {
        send_pidfd(sock, pid)?;
    }
    match fg {
        None => Ok(0),
        Some(fg) => fg.wait(pid, pty_master),
    }
}

/// The process spec of an exec: `--process FILE`, or the container's own process with the
/// command line's changes (as runc does).
fn exec_process(st: &ContainerState, o: &ExecOptions) -> Result<Process> {
    if let Some(file) = &o.process_file {
        let bytes = std::fs::read(file).with_context(|| format!("--process {}", file.display()))?;
        let bytes = crate::runtime::sched::oci_spec_flag_names(&bytes, false).unwrap_or(bytes);
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let p: Process = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            anyhow::anyhow!("--process {}: {}: {}", file.display(), e.path(), e.inner())
        })?;
        if o.tty {
            let mut p = p;
            p.set_terminal(Some(true));
            return Ok(p);
        }
        return Ok(p);
    }
    if o.args.is_empty() {
        bail!("exec: give a command after the container id, or --process FILE");
    }
    let mut p = st.process.clone();
    p.set_args(Some(o.args.clone()));
    p.set_terminal(Some(o.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for e in &o.env {
        if !e.contains('=') {
            bail!("--env {e:?}: not of the form KEY=VALUE");
        }
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &o.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &o.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        let uid: u32 = uid
            .parse()
            .with_context(|| format!("--user {u:?}: the uid must be a number"))?;
        let gid: u32 = gid
            .map(|g| {
                g.parse()
                    .with_context(|| format!("--user {u:?}: the gid must be a number"))
            })
            .transpose()?
            .unwrap_or(0);
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        p.set_user(user);
    }
    if !o.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(o.additional_gids.clone()));
        p.set_user(user);
    }
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &o.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &o.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    if !o.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let extra: Vec<String> = o.caps.clone();
        let add = |set: Option<&oci_spec::runtime::Capabilities>| -> Result<oci_spec::runtime::Capabilities> {
            let mut s = set.cloned().unwrap_or_default();
            for c in &extra {
                s.insert(parse_capability(c)?);
            }
            Ok(s)
        };
        caps.set_bounding(Some(add(caps.bounding().as_ref())?));
        caps.set_effective(Some(add(caps.effective().as_ref())?));
        caps.set_permitted(Some(add(caps.permitted().as_ref())?));
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// `update --l3-cache-schema/--mem-bw-schema`: a schemata line for the container's resctrl
/// group (the one its `linux.intelRdt` made or found), as runc's update writes it.
pub fn update_rdt_schema(g: &Globals, id: &str, flag: &str, schema: &str) -> Result<()> {
    let (dir, _, status) = load_live(g, id)?;
    if !matches!(status, Status::Running | Status::Created | Status::Paused) {
        bail!(
            "container {id:?} is {}: {flag} needs it alive",
            status.as_str()
        );
    }
    crate::runtime::rdt::host_has_resctrl().map_err(|e| {
        anyhow::anyhow!(
            "{flag}: {}",
            format!("{e:#}").trim_start_matches("linux.intelRdt: ")
        )
    })?;
    let Some(group) = crate::runtime::rdt::RdtGroup::load(&dir)? else {
        bail!("{flag}: container {id:?} has no resctrl group (its config has no linux.intelRdt)");
    };
    std::fs::write(group.dir.join("schemata"), format!("{}\n", schema.trim()))
        .with_context(|| format!("{flag} {schema:?}: the kernel refused the schema"))
}

/// `--cap`: `CAP_KILL`, `KILL` or `kill`, as runc takes them.
fn parse_capability(name: &str) -> Result<oci_spec::runtime::Capability> {
    // oci-spec parses the bare name (`KILL`); the config's JSON has the prefixed one.
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse()
        .map_err(|_| anyhow::anyhow!("--cap {name:?}: unknown capability"))
}

/// Reads a container's state for a command that needs it alive (not locked: read-only).
fn load_live(g: &Globals, id: &str) -> Result<(PathBuf, ContainerState, Status)> {
    state::validate_id(id)?;
    let dir = g.root.join(id);
    let st =
        state::read_state(&dir).map_err(|_| anyhow::anyhow!("container {id:?} does not exist"))?;
    let status = derive_status(&dir, &st);
    Ok((dir, st, status))
}

/// `pause`: freeze every process of the container.
pub fn pause(g: &Globals, id: &str) -> Result<()> {
    let dir = ContainerDir::open(&g.root, id)?;
    let st = dir.load()?;
    match derive_status(&dir.path, &st) {
        Status::Running | Status::Created => cgroups::freeze(&st.cgroup),
        s => bail!("container {id:?} cannot be paused: it is {}", s.as_str()),
    }
}

/// `resume`: thaw a paused container.
pub fn resume(g: &Globals, id: &str) -> Result<()> {
    let dir = ContainerDir::open(&g.root, id)?;
    let st = dir.load()?;
    match derive_status(&dir.path, &st) {
        Status::Paused => cgroups::thaw(&st.cgroup),
        s => bail!("container {id:?} cannot be resumed: it is {}", s.as_str()),
    }
}

/// `ps`: the host pids of the container's processes.
pub fn pids(g: &Globals, id: &str) -> Result<Vec<i32>> {
    let (_, st, status) = load_live(g, id)?;
    if status == Status::Stopped {
        return Ok(Vec::new());
    }
    st.cgroup.pids()
}

/// `update`: change the limits of a live container.
pub fn update(g: &Globals, id: &str, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
    let dir = ContainerDir::open(&g.root, id)?;
    let st = dir.load()?;
    if derive_status(&dir.path, &st) == Status::Stopped {
        bail!("container {id:?} cannot be updated: it is stopped");
    }
    if let Some(scope) = &st.cgroup.systemd_scope {
        let layout = cgroups::layout(&st.cgroup)?;
        let props = cgroups::systemd::resource_properties(r, layout)?;
        cgroups::systemd::set_properties(scope, &props)?;
    }
    cgroups::update_resources(&st.cgroup, r)
}

/// `events`: with `stats_once`, one stats event; otherwise stats every `interval` and OOM
/// events as they happen, until the container stops. Each event is one JSON line.
pub fn events(
    g: &Globals,
    id: &str,
    stats_once: bool,
    interval: Duration,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let (dir, st, status) = load_live(g, id)?;
    if status == Status::Stopped {
        bail!("container {id:?} is not running");
    }
    let stats_event = |st: &ContainerState| -> Result<serde_json::Value> {
        Ok(serde_json::json!({"type": "stats", "id": id, "data": cgroups::stats(&st.cgroup)?}))
    };
    if stats_once {
        writeln!(out, "{}", stats_event(&st)?)?;
        return Ok(());
    }
    let mut ooms = cgroups::oom_kill_count(&st.cgroup).unwrap_or(0);
    let poll = Duration::from_millis(100).min(interval);
    let mut next_stats = Instant::now() + interval;
    while derive_status(&dir, &st) != Status::Stopped {
        let now_ooms = cgroups::oom_kill_count(&st.cgroup).unwrap_or(ooms);
        if now_ooms > ooms {
            writeln!(out, "{}", serde_json::json!({"type": "oom", "id": id}))?;
            ooms = now_ooms;
        }
        if Instant::now() >= next_stats {
            if let Ok(ev) = stats_event(&st) {
                writeln!(out, "{ev}")?;
            }
            next_stats += interval;
        }
        out.flush()?;
        std::thread::sleep(poll);
    }
    Ok(())
}
