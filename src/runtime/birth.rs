//! A container's birth, in one straight line.
//!
//! Parent (berth): make the exec trampoline's sealed memfd, open the sync channel, clone (into
//! the pid namespace), make the cgroup and write its limits → "cgroup ready", then serve the child's requests in the order it makes
//! them (uid/gid maps, cgroup, prestart and createRuntime hooks) until it reports it is ready
//! and waiting to be started.
//!
//! Child, in order: not dumpable → its new namespaces (while the parent makes the cgroup) →
//! wait for "cgroup ready" → join the cgroup → namespaces it joins, or a user namespace →
//! cgroup namespace → sysctl (through a procfs of its own) → mounts and devices → [parent
//! runs prestart/createRuntime hooks] → createContainer hooks → pivot_root → hostname,
//! domainname → terminal, bound on /dev/console → read-only and masked paths, read-only root
//! → rlimits → capabilities bounding set → groups, gid, uid → capabilities → umask → cwd →
//! no_new_privs → program lookup → session and controlling terminal → fds closed on exec →
//! "ready" → wait for start → startContainer hooks → exec, through the exec trampoline
//! (trampoline.rs).
//!
//! `exec` ([`exec_into`]) does the same in two processes, so that nothing in the container can
//! reach it before it is confined: the first, invisible from the container, joins and drops
//! everything; only then does it fork the one that enters the pid namespace and execs.
//!
//! A container that joins another's pid namespace by path does the same where the kernel
//! allows it ([`NamespacePlan::late_pid_fork`]): the cloned process, in berth's pid namespace,
//! does the whole set-up above up to no_new_privs and the seccomp filter, then forks (once, at
//! that point instead of on entering the namespaces) the process that is born in the joined
//! namespace, reports its pid, takes the session and terminal, and waits. Until that fork the
//! container's pid is the cloned process's: the prestart, createRuntime and createContainer
//! hooks are given that pid in the state (a process in every namespace of the container but
//! the pid one); createContainer hooks, forked from it, are born in the joined namespace.
//! startContainer hooks are given the pid of the process that execs.
//!
//! Killed at any instant, berth leaves nothing unrecorded: its record is written before the
//! clone, and the child dies with it (parent-death signal) until it is set up; then, waiting,
//! it exits if the channel closes before berth says the container is on record ("handover").

use crate::runtime::cgroups::{self, CgroupPaths};
use crate::runtime::hooks;
use crate::runtime::namespaces::{self, NamespacePlan};
use crate::runtime::process::{self, ProcessPlan, PtyDestination};
use crate::runtime::rootfs::{self, RootfsPlan};
use crate::runtime::state::{oci_state_json, ContainerState, Status};
use crate::runtime::sync::{self, Msg};
use crate::runtime::trampoline::Trampoline;
use crate::runtime::tty;
use anyhow::{anyhow, bail, Context, Result};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, Hooks, LinuxNamespaceType};
use std::convert::Infallible;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// How the waiting container process is told to exec.
pub enum Release {
    /// `create`: it accepts a connection on this listening socket (from `start`).
    StartSocket(OwnedFd),
    /// `run`: berth sends `Start` over the sync channel.
    Sync,
}

/// Everything about a container, checked and prepared before the clone.
pub struct BirthPlan {
    pub state: ContainerState,
    pub ns: NamespacePlan,
    pub rootfs: RootfsPlan,
    pub process: ProcessPlan,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub sysctl: Vec<(String, String)>,
    pub hooks: Hooks,
    pub cgroup: CgroupPaths,
    pub console: Option<OwnedFd>,
    pub release: Release,
    /// A fresh session keyring (`_ses.<id>`) so containers do not share the host's keys.
    pub session_keyring: Option<String>,
    /// berth's descriptors the child must close at once: the state directory's lock, which a
    /// forked copy would otherwise hold until exec, blocking `start`.
    pub close_in_child: Vec<std::os::fd::RawFd>,
    /// `linux.netDevices`, moved in by berth when the process's namespaces exist.
    pub net_devices: crate::runtime::netdev::NetDevices,
}

/// The container process, set up and waiting to be started.
pub struct Born {
    pub pid: i32,
    /// berth's end of the sync channel (`run` sends `Start` on it).
    pub sync: OwnedFd,
    /// The pty master, for a foreground `run` with a terminal.
    pub pty_master: Option<OwnedFd>,
}

impl BirthPlan {
    fn hooks_of(list: &Option<Vec<Hook>>) -> &[Hook] {
        list.as_deref().unwrap_or_default()
    }

    fn needs_hook_round_trip(&self) -> bool {
        let h = &self.hooks;
        [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
        ]
        .iter()
        .any(|l| !Self::hooks_of(l).is_empty())
    }
}

/// What berth does for a container while its process sets itself up, on another CPU.
pub trait ParentWork {
    /// Make what is left of the container's cgroup and write its limits. The process (`pid`,
    /// just cloned) makes its namespaces meanwhile, then waits for this
    /// ([`Msg::CgroupReady`]) to join it. With the systemd driver this is where the scope is
    /// started with `pid` in it, as runc does after its clone.
    fn prepare_cgroup(&mut self, pid: i32) -> Result<()>;
    /// The container's init is `pid` and sets up its mounts: record what needs the pid.
    fn record(&mut self, pid: i32) -> Result<()>;
}

/// Parent side: clones the container process and walks it through set-up.
pub fn give_birth(plan: &BirthPlan, work: &mut dyn ParentWork) -> Result<Born> {
    let trampoline = Trampoline::new()?;
    let (parent_end, child_end) = sync::channel()?;
    let initial_affinity = crate::runtime::sched::InitialAffinity::set(&plan.process.sched)?;
    let (pid, entry) = clone_process(plan.ns.clone_flags(), &plan.cgroup)?;
    if pid == 0 {
        drop(parent_end);
        child_main(plan, child_end, entry, &trampoline);
    }
    drop(initial_affinity);
    drop(child_end);
    drop(trampoline);
    let mut guard = KillOnError {
        cloned: pid,
        init: pid,
        armed: true,
    };
    let parallel = work
        .prepare_cgroup(pid)
        .and_then(|()| sync::send(parent_end.as_fd(), &Msg::CgroupReady))
        // On the general path the init is a second fork, recorded when its pid arrives.
        .and_then(|()| {
            if plan.ns.two_step {
                Ok(())
            } else {
                work.record(pid)
            }
        });
    if let Err(e) = parallel {
        // The process may have failed first (say, making its namespaces) and gone.
        return Err(sync::pending_error(parent_end.as_fd()).map_or(e, |why| anyhow!(why)));
    }
    let mut pty_master = None;
    // On the late-fork path the seccomp filter is loaded before the fork: its listener waits
    // here for the pid of the process the filter is for, unless a call blocks on the agent
    // first (as for `exec`).
    let mut held_listener: Option<OwnedFd> = None;
    loop {
        if let Some(listener) = &held_listener {
            if notification_first(parent_end.as_fd(), listener.as_fd())? {
                let listener = held_listener.take().expect("held");
                hand_init_listener(plan, listener.as_fd(), guard.init)?;
                continue;
            }
        }
        let msg = sync::recv(parent_end.as_fd())?;
        match msg {
            Some(Msg::MapsNeeded) => {
                reply(parent_end.as_fd(), namespaces::write_id_maps(pid, &plan.ns))?;
            }
            // Once, from the cloned process, naming the process it forked (a child of berth's
            // through CLONE_PARENT): on the late-fork path that process is visible in the
            // joined pid namespace, whose processes may reach the channel through it.
            Some(Msg::Pid(p)) if plan.ns.two_step && guard.init == pid => {
                if !is_forked_sibling(p, pid) {
                    bail!(
                        "sync channel: pid {p} is not the container process berth is waiting for"
                    );
                }
                guard.adopt(p);
                work.record(p)?;
                if let Some(listener) = held_listener.take() {
                    hand_init_listener(plan, listener.as_fd(), p)?;
                }
                sync::send(parent_end.as_fd(), &Msg::Pid(p))?;
            }
            Some(Msg::CgroupNeeded) => {
                let r = entry.finish(&plan.cgroup, guard.init, plan.process.oom_score_adj);
                reply(parent_end.as_fd(), r)?;
            }
            Some(Msg::HooksNeeded) => {
                let mut state = plan.state.clone();
                state.pid = guard.init;
                let json = serde_json::to_vec(&oci_state_json(&state, Status::Creating))?;
                let h = &plan.hooks;
                let r = hooks::run_hooks("prestart", BirthPlan::hooks_of(h.prestart()), &json)
                    .and_then(|()| {
                        hooks::run_hooks(
                            "createRuntime",
                            BirthPlan::hooks_of(h.create_runtime()),
                            &json,
                        )
                    });
                match r {
                    Ok(()) => {
                        sync::send(parent_end.as_fd(), &Msg::State(String::from_utf8(json)?))?
                    }
                    Err(e) => {
                        let _ = sync::send(parent_end.as_fd(), &Msg::Error(format!("{e:#}")));
                        return Err(e);
                    }
                }
            }
            Some(Msg::PtyFollows) => pty_master = Some(tty::recv_fd(parent_end.as_fd())?.0),
            Some(Msg::NetDevicesNeeded) if guard.init == pid => {
                reply(parent_end.as_fd(), plan.net_devices.move_into(pid))?;
            }
            Some(Msg::SeccompListenerFollows) if plan.ns.late_pid_fork && guard.init == pid => {
                let (listener, _) = tty::recv_fd(parent_end.as_fd())?;
                let r = agent_of(&plan.process).map(|_| held_listener = Some(listener));
                reply(parent_end.as_fd(), r)?;
            }
            Some(Msg::SeccompListenerFollows) => {
                let mut state = plan.state.clone();
                state.pid = guard.init;
                let state = oci_state_json(&state, Status::Creating);
                let r =
                    pass_listener_to_agent(parent_end.as_fd(), &plan.process, guard.init, state);
                reply(parent_end.as_fd(), r)?;
            }
            Some(Msg::Ready) => {
                // Set up and waiting for start, in its cgroup, forking no more.
                plan.process.place(guard.init)?;
                break;
            }
            Some(Msg::Error(e)) => bail!("{e}"),
            Some(other) => bail!("sync channel: unexpected {other:?} from the container process"),
            None => {
                if plan.ns.late_pid_fork && guard.init == pid {
                    // Not forked yet: the channel closed with the cloned process, which is
                    // dying or dead.
                    let status = waitpid(Pid::from_raw(pid), None);
                    guard.armed = false; // reaped: nothing left to kill
                    if let Ok(nix::sys::wait::WaitStatus::Signaled(_, Signal::SIGSYS, _)) = status {
                        bail!("the container process was killed by linux.seccomp before it could fork into the joined pid namespace: the filter must allow clone(2)");
                    }
                    bail!("the container process exited during set-up ({status:?})");
                }
                let status = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
                bail!("the container process exited during set-up ({status:?})");
            }
        }
    }
    guard.armed = false;
    Ok(Born {
        pid: guard.init,
        sync: parent_end,
        pty_master,
    })
}

/// Sends the container's seccomp listener, with its state naming `pid`, to the agent.
fn hand_init_listener(plan: &BirthPlan, listener: BorrowedFd, pid: i32) -> Result<()> {
    let mut state = plan.state.clone();
    state.pid = pid;
    let state = oci_state_json(&state, Status::Creating);
    crate::runtime::seccomp::send_to_agent(agent_of(&plan.process)?, listener, pid, state)
}

fn reply(fd: BorrowedFd, r: Result<()>) -> Result<()> {
    match r {
        Ok(()) => sync::send(fd, &Msg::Done),
        Err(e) => {
            let _ = sync::send(fd, &Msg::Error(format!("{e:#}")));
            Err(e)
        }
    }
}

/// Sends the error of `r`, if any, to the process waiting on the channel, and returns it.
fn reply_err(fd: BorrowedFd, r: Result<()>) -> Result<()> {
    if let Err(e) = r {
        let _ = sync::send(fd, &Msg::Error(format!("{e:#}")));
        return Err(e);
    }
    Ok(())
}

fn set_oom_score_adj(pid: &str, adj: Option<i32>) -> Result<()> {
    if let Some(adj) = adj {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
            .with_context(|| format!("process.oomScoreAdj: cannot set {adj}"))?;
    }
    Ok(())
}

/// Kills the half-born container if the parent gives up on it.
struct KillOnError {
    cloned: i32,
    init: i32,
    armed: bool,
}

impl KillOnError {
    /// After a second fork the cloned process reports the container process's pid and exits:
    /// from then on that pid is the one to kill, and the intermediate one is reaped.
    fn adopt(&mut self, pid: i32) {
        self.init = pid;
        let _ = waitpid(Pid::from_raw(self.cloned), None);
        self.cloned = 0;
    }
}

/// How a new process gets into the container's cgroups, decided before the clone so that both
/// sides agree. When berth is privileged, the process joins the v1 hierarchies itself before
/// it enters any namespace ([`CgroupPaths::join_self_v1`]: a write from outside costs an RCU
/// grace period) and is cloned straight into the cgroup2 directory (`CLONE_INTO_CGROUP`);
/// berth adds it from outside (`CgroupNeeded`) only for what that did not do. Unprivileged,
/// berth does it all from outside, as the process may lose the right once in its namespaces.
#[derive(Debug, Clone, Copy)]
struct CgroupEntry {
    self_join_v1: bool,
    cloned_into_v2: bool,
}

impl CgroupEntry {
    /// Child side, before entering namespaces.
    fn join_self(self, cgroup: &CgroupPaths, oom_score_adj: Option<i32>) -> Result<()> {
        if self.self_join_v1 {
            cgroup.join_self_v1()?;
            set_oom_score_adj("self", oom_score_adj)?;
        }
        Ok(())
    }

    fn needs_berth(self, cgroup: &CgroupPaths) -> bool {
        !self.self_join_v1 || (!self.cloned_into_v2 && cgroup.v2_dir().is_some())
    }

    /// Parent side of `CgroupNeeded`: the rest of the joining, and the oom_score_adj (which
    /// needs privileges the process may not keep).
    fn finish(self, cgroup: &CgroupPaths, pid: i32, oom_score_adj: Option<i32>) -> Result<()> {
        if self.self_join_v1 {
            return cgroup.join_v2(pid);
        }
        if let Err(e) = cgroup.join(pid) {
            // A non-root user's container in a scope of their systemd instance: the new
            // process is in the caller's cgroup, outside the instance's subtree, and moving it
            // needs the common ancestor's cgroup.procs, which is root's. systemd moves it
            // (asking pid 1 as it does for a new scope's process).
            match &cgroup.systemd_scope {
                Some(scope) if cgroups::is_permission_error(&e) => {
                    cgroups::systemd::attach_process(scope, pid)
                        .with_context(|| format!("{e:#}"))?
                }
                _ => return Err(e),
            }
        }
        set_oom_score_adj(&pid.to_string(), oom_score_adj)
    }
}

impl Drop for KillOnError {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = kill(Pid::from_raw(self.init), Signal::SIGKILL);
        for pid in [self.cloned, self.init] {
            if pid > 0 {
                let _ = waitpid(Pid::from_raw(pid), None);
            }
        }
    }
}

/// clone3 with fork semantics (no new stack: the child continues from here on a copy of ours,
/// which is safe because berth is single-threaded). Falls back to clone(2) where a seccomp
/// filter answers ENOSYS for clone3.
///
/// When berth is privileged and the container has a cgroup2 directory, the process is cloned
/// into it (`CLONE_INTO_CGROUP`), falling back to a plain clone where the kernel refuses.
fn clone_process(flags: libc::c_int, cgroup: &CgroupPaths) -> Result<(i32, CgroupEntry)> {
    let self_join_v1 = nix::unistd::geteuid().is_root() && !cgroup.dirs.is_empty();
    let v2_dir = cgroup
        .v2_dir()
        .filter(|_| self_join_v1)
        .and_then(|dir| std::fs::File::open(dir).ok());
    if let Some(dir) = &v2_dir {
        let into = flags as u32 as u64 | CLONE_INTO_CGROUP;
        if let Ok(pid) = clone3(into, std::os::fd::AsRawFd::as_raw_fd(dir) as u64) {
            let entry = CgroupEntry {
                self_join_v1,
                cloned_into_v2: true,
            };
            return Ok((pid, entry));
        }
    }
    let entry = CgroupEntry {
        self_join_v1,
        cloned_into_v2: false,
    };
    let pid = match clone3(flags as u32 as u64, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            // SAFETY: fork semantics as for clone3; a null stack makes clone(2) behave like fork.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_clone,
                    (flags | libc::SIGCHLD) as libc::c_ulong,
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                )
            };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(r as i32)
            }
        }
        other => other,
    };
    let pid = pid.context("cannot clone the container process")?;
    Ok((pid, entry))
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3(2) with fork semantics: no new stack, SIGCHLD at exit.
fn clone3(flags: u64, cgroup_fd: u64) -> std::io::Result<i32> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_fd,
        ..Default::default()
    };
    // SAFETY: fork semantics (berth is single-threaded, the child continues on a copy of our
    // stack); `args` outlives the call and its size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as i32)
}

/// Child side: never returns. Any failure is reported to the parent, then the process exits.
fn child_main(
    plan: &BirthPlan,
    sync_fd: OwnedFd,
    entry: CgroupEntry,
    trampoline: &Trampoline,
) -> ! {
    for fd in &plan.close_in_child {
        // SAFETY: the descriptor is berth's, copied into this child; this process never runs
        // the destructor of the copied owner (it execs or _exits), so nothing closes it twice.
        unsafe { libc::close(*fd) };
    }
    let steps = tie_to_creator(sync_fd.as_fd())
        .and_then(|()| child_steps(plan, sync_fd.as_fd(), entry, trampoline));
    let err = match steps {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = sync::send(sync_fd.as_fd(), &Msg::Error(format!("{err:#}")));
    // SAFETY: leaving the child without unwinding into the parent's copied stack frames.
    unsafe { libc::_exit(1) }
}

fn child_steps(
    plan: &BirthPlan,
    sync_fd: BorrowedFd,
    entry: CgroupEntry,
    trampoline: &Trampoline,
) -> Result<Infallible> {
    // Until exec nobody in the container may ptrace us or open /proc/<pid>/exe (CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE)")?;
    let own = plan.ns.unshared_by_child();
    if own != 0 {
        unshare(CloneFlags::from_bits_retain(own)).context("cannot create namespaces")?;
    }
    match sync::recv(sync_fd)? {
        Some(Msg::CgroupReady) => {}
        other => bail!("sync channel: expected CgroupReady, got {other:?}"),
    }
    // Still with the host's mounts and privileges.
    entry.join_self(&plan.cgroup, plan.process.oom_score_adj)?;
    namespaces::enter(&plan.ns, sync_fd)?;
    if plan.ns.two_step || plan.ns.new_user() {
        // Born of a second fork, or given new ids (which clear the parent-death signal).
        tie_to_creator(sync_fd)?;
    }
    if entry.needs_berth(&plan.cgroup) {
        sync::request(sync_fd, &Msg::CgroupNeeded)?;
    }
    // In its network namespace now, before any mount or hook: berth moves the devices in.
    if !plan.net_devices.is_empty() {
        sync::request(sync_fd, &Msg::NetDevicesNeeded)?;
    }
    if plan.ns.new_cgroup {
        unshare(CloneFlags::CLONE_NEWCGROUP).context("cannot create cgroup namespace")?;
    }
    write_sysctls(&plan.sysctl)?;
    if let Some(name) = &plan.session_keyring {
        join_session_keyring(name)?;
    }
    // Device nodes get exactly the mode the spec gives; the process's umask is set later.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    // On the late-fork path this process is not in the joined pid namespace (only its
    // children will be): its procfs mounts are made for that namespace.
    let proc_pidns = plan
        .ns
        .joins
        .iter()
        .find(|(t, _)| *t == LinuxNamespaceType::Pid && plan.ns.late_pid_fork)
        .map(|(_, fd)| fd.as_fd());
    let root = rootfs::prepare(&plan.rootfs, proc_pidns)?;
    let mut state_json = Vec::new();
    if plan.needs_hook_round_trip() {
        sync::send(sync_fd, &Msg::HooksNeeded)?;
        match sync::recv(sync_fd)? {
            Some(Msg::State(s)) => state_json = s.into_bytes(),
            Some(Msg::Error(e)) => bail!("{e}"),
            other => bail!("sync channel: unexpected {other:?} after hooks"),
        }
        hooks::run_hooks(
            "createContainer",
            BirthPlan::hooks_of(plan.hooks.create_container()),
            &state_json,
        )?;
    }
    rootfs::pivot(&root, &plan.rootfs)?;
    drop(root);
    if let Some(h) = &plan.hostname {
        nix::unistd::sethostname(h).context("hostname: sethostname failed")?;
    }
    if let Some(d) = &plan.domainname {
        set_domainname(d)?;
    }
    let pty = match (&plan.console, &plan.release) {
        (Some(c), _) => Some(PtyDestination::ConsoleSocket(c.as_fd())),
        (None, Release::Sync) => Some(PtyDestination::Berth(sync_fd)),
        (None, Release::StartSocket(_)) => None,
    };
    let terminal = process::open_terminal(&plan.process, pty)?;
    if let Some(slave) = &terminal {
        // Before the root may turn read-only, as runc does.
        tty::mount_console(slave.as_fd()).context("process.terminal: /dev/console")?;
    }
    rootfs::finish(&plan.rootfs)?;
    let mut dropped = process::drop_privileges(&plan.process, terminal, sync_fd)?;
    if plan.ns.late_pid_fork {
        // Confined as the container's process will be: only now may the joined pid
        // namespace see it. The filter too goes on before the fork, which it must allow.
        process::load_pending_seccomp(&plan.process, &mut dropped, sync_fd)?;
        let pid = namespaces::fork_into_pid_namespace(plan.process.seccomp.is_some(), sync_fd)?;
        // A fork does not inherit the parent-death signal.
        tie_to_creator(sync_fd)?;
        if !state_json.is_empty() {
            // From startContainer on, the hooks are given the process that execs.
            let mut state: serde_json::Value = serde_json::from_slice(&state_json)?;
            state["pid"] = pid.into();
            state_json = serde_json::to_vec(&state)?;
        }
    }
    let ready = process::finish(&plan.process, dropped, true, sync_fd)?;
    // Set up, the process only waits now, on the channel: if berth dies before the container
    // is on record (`Handover`, or `Start` for `run`), the channel closes unread and it
    // exits. So the parent-death signal can go before berth is told it is ready, and berth
    // need not wait for it to go (which would cost a round trip on every create).
    untie_from_creator()?;
    sync::send(sync_fd, &Msg::Ready)?;
    // Whoever released the process learns the exec's outcome: berth (`run`) on the sync
    // channel, `start` on its connection.
    match &plan.release {
        Release::Sync => match sync::recv(sync_fd)? {
            Some(Msg::Start) => finish_start(plan, &ready, &state_json, (trampoline, sync_fd)),
            other => bail!("sync channel: expected Start, got {other:?}"),
        },
        Release::StartSocket(listener) => {
            match sync::recv(sync_fd)? {
                Some(Msg::Handover) => {}
                other => bail!(
                    "sync channel: berth exited before the container was on record ({other:?})"
                ),
            }
            let conn = accept(listener.as_fd())?;
            let exec = (trampoline, conn.as_fd());
            let err = match finish_start(plan, &ready, &state_json, exec) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            // `start` is the one waiting for the outcome now.
            let _ = sync::send(conn.as_fd(), &Msg::Error(format!("{err:#}")));
            Err(err)
        }
    }
}

/// The sysctls, written in the container's namespaces (which decide what a sysctl file
/// changes) before any of the image's mounts exist, through berth's own procfs.
fn write_sysctls(sysctl: &[(String, String)]) -> Result<()> {
    if sysctl.is_empty() {
        return Ok(());
    }
    let proc = crate::runtime::procfs::PrivateProc::new()
        .context("linux.sysctl: cannot mount a procfs to write sysctls through")?;
    for (key, value) in sysctl {
        proc.write_sysctl(key, value)
            .with_context(|| format!("linux.sysctl[{key:?}]: cannot set {value:?}"))?;
    }
    Ok(())
}

/// While it sets itself up, the container process dies with the berth creating it
/// (`PR_SET_PDEATHSIG`): killed at any instant, berth leaves no process that nothing records.
/// Set again after anything that clears it (new ids; a second fork). berth may have died
/// before the call: its end of the sync channel is closed then (a dying process's files are
/// closed before its children are told), so look. getppid() cannot tell: in a new pid
/// namespace it is 0 whoever the parent is.
fn tie_to_creator(sync_fd: BorrowedFd) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_PDEATHSIG)");
    }
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&sync_fd),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n > 0 && pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) != 0 {
        bail!("berth exited while the container was being created");
    }
    Ok(())
}

/// Set-up done: from here the sync channel ties the process to berth until the handover.
fn untie_from_creator() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0 as libc::c_ulong) } != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_PDEATHSIG)");
    }
    Ok(())
}

fn finish_start(
    plan: &BirthPlan,
    ready: &process::ReadyToExec,
    state_json: &[u8],
    (trampoline, report): (&Trampoline, BorrowedFd),
) -> Result<Infallible> {
    let hooks = BirthPlan::hooks_of(plan.hooks.start_container());
    if hooks.is_empty() {
        return process::exec(ready, trampoline, report);
    }
    // The container is created by now; the hooks see it so.
    let mut state: serde_json::Value = serde_json::from_slice(state_json)?;
    state["status"] = Status::Created.as_str().into();
    // A hook that names no env gets the container process's, as runc's (its init has taken
    // that environment by then, and Go gives a command without Env its parent's).
    let container_env: Vec<String> = plan
        .process
        .env
        .iter()
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let hooks: Vec<Hook> = hooks
        .iter()
        .map(|h| {
            let mut h = h.clone();
            if h.env().is_none() {
                h.set_env(Some(container_env.clone()));
            }
            h
        })
        .collect();
    hooks::run_hooks_via(
        "startContainer",
        &hooks,
        &serde_json::to_vec(&state)?,
        Some(trampoline),
    )?;
    process::exec(ready, trampoline, report)
}

fn accept(listener: BorrowedFd) -> Result<OwnedFd> {
    loop {
        match nix::sys::socket::accept4(
            std::os::fd::AsRawFd::as_raw_fd(&listener),
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        ) {
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            Ok(fd) => return Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("waiting for start: accept failed"),
        }
    }
}

/// Receives the seccomp notify listener from the container process and sends it, with the
/// container process state, to the agent at `listenerPath`.
fn pass_listener_to_agent(
    sync_fd: BorrowedFd,
    process: &ProcessPlan,
    pid: i32,
    state: serde_json::Value,
) -> Result<()> {
    let (listener_fd, _) = tty::recv_fd(sync_fd)?;
    let agent = process
        .seccomp
        .as_ref()
        .and_then(|s| s.listener())
        .context(
            "sync channel: a seccomp listener arrived, but the profile has no SCMP_ACT_NOTIFY",
        )?;
    crate::runtime::seccomp::send_to_agent(agent, listener_fd.as_fd(), pid, state)
}

fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes for the duration of the call.
    if unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("domainname: setdomainname failed");
    }
    Ok(())
}

fn join_session_keyring(name: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let cname = std::ffi::CString::new(name).context("container id holds a NUL byte")?;
    // SAFETY: keyctl reads the NUL-terminated name for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            cname.as_ptr(),
        )
    };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        // Kernels without keys, or keyrings refused in a user namespace: runc goes on too.
        if !matches!(
            err.raw_os_error(),
            Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::EDQUOT)
        ) {
            return Err(err).context("cannot create a session keyring (use --no-new-keyring)");
        }
    }
    Ok(())
}

/// `exec`: a new process in a running container's namespaces and cgroup. Returns its pid and,
/// for a foreground terminal, the pty master.
///
/// The process berth clones stays in the host's pid namespace, where nothing in the container
/// can name it (nor ptrace it): it joins the container's cgroup and every namespace (the pid
/// and time namespaces apply to its children), opens the terminal, and drops all there is to
/// drop: rlimits, bounding set, groups, gid, uid, capabilities, no_new_privs, the seccomp
/// filter. Only then does it fork the process that is born in the container's pid namespace,
/// as berth's own child (CLONE_PARENT, so berth waits for it), report that process's pid and
/// exit. The new process takes a session and its controlling terminal, and execs.
/// `root`: the container's root directory to chroot into, for a container in the host's
/// mount namespace (joining the mount namespace does it for the others).
pub fn exec_into(
    st: &ContainerState,
    joins: Vec<(LinuxNamespaceType, OwnedFd)>,
    root: Option<OwnedFd>,
    plan: &ProcessPlan,
    console: Option<OwnedFd>,
) -> Result<(i32, Option<OwnedFd>)> {
    let trampoline = Trampoline::new()?;
    let (parent_end, child_end) = sync::channel()?;
    let initial_affinity = crate::runtime::sched::InitialAffinity::set(&plan.sched)?;
    let (pid, entry) = clone_process(0, &st.cgroup)?;
    if pid == 0 {
        drop(parent_end);
        let err = match exec_child(
            joins,
            root.as_ref(),
            (&st.cgroup, entry),
            plan,
            console.as_ref(),
            (&trampoline, child_end.as_fd()),
        ) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let _ = sync::send(child_end.as_fd(), &Msg::Error(format!("{err:#}")));
        // SAFETY: leaving the child without unwinding into the parent's copied stack frames.
        unsafe { libc::_exit(1) }
    }
    drop(initial_affinity);
    drop(child_end);
    drop(joins);
    drop(root);
    drop(trampoline);
    let mut guard = KillOnError {
        cloned: pid,
        init: pid,
        armed: true,
    };
    // The cloned process makes each request once, before it forks. From the fork on, the new
    // process, which the container can reach, holds this channel too: a request that comes
    // again, or after the pid, is not the cloned process's and is refused.
    let mut exec_pid = None;
    let mut cgroup_joined = false;
    let mut listener_received = false;
    // The seccomp agent is told the pid of the process the filter is for: the listener waits
    // here for the fork, unless a call waits on the agent before that.
    let mut held_listener: Option<OwnedFd> = None;
    let mut pty_master = None;
    loop {
        if let Some(listener) = &held_listener {
            if notification_first(parent_end.as_fd(), listener.as_fd())? {
                let listener = held_listener.take().expect("held");
                hand_listener_to_agent(plan, listener.as_fd(), pid, st)?;
                continue;
            }
        }
        let before_fork = exec_pid.is_none();
        match sync::recv(parent_end.as_fd())? {
            Some(Msg::CgroupNeeded) if before_fork && !cgroup_joined => {
                cgroup_joined = true;
                let r = entry.finish(&st.cgroup, pid, plan.oom_score_adj);
                reply(parent_end.as_fd(), r)?;
            }
            Some(Msg::PtyFollows)
                if before_fork && plan.terminal && console.is_none() && pty_master.is_none() =>
            {
                pty_master = Some(tty::recv_fd(parent_end.as_fd())?.0);
            }
            Some(Msg::SeccompListenerFollows) if before_fork && !listener_received => {
                listener_received = true;
                let (listener, _) = tty::recv_fd(parent_end.as_fd())?;
                let r = agent_of(plan).map(|_| held_listener = Some(listener));
                reply(parent_end.as_fd(), r)?;
            }
            Some(Msg::Pid(p)) if before_fork => {
                if !is_forked_sibling(p, pid) {
                    bail!("sync channel: pid {p} is not the exec process berth is waiting for");
                }
                guard.adopt(p);
                exec_pid = Some(p);
                // It waits for its pid back before anything else: set what berth sets from
                // outside now, before it can exec.
                reply_err(parent_end.as_fd(), plan.place(p))?;
                if let Some(listener) = held_listener.take() {
                    hand_listener_to_agent(plan, listener.as_fd(), p, st)?;
                }
                sync::send(parent_end.as_fd(), &Msg::Pid(p))?;
            }
            Some(Msg::Error(e)) => bail!("{e}"),
            Some(other) => bail!("sync channel: unexpected {other:?} from the exec process"),
            // Both ends closed: the cloned process exited, the new one exec'd.
            None if exec_pid.is_some() => break,
            None => {
                let status = waitpid(Pid::from_raw(pid), None);
                guard.armed = false; // reaped: nothing left to kill
                if let Ok(nix::sys::wait::WaitStatus::Signaled(_, Signal::SIGSYS, _)) = status {
                    bail!("the exec process was killed by linux.seccomp before it could fork into the container's pid namespace: the filter must allow clone(2)");
                }
                bail!("the exec process exited during set-up ({status:?})");
            }
        }
    }
    guard.armed = false;
    Ok((guard.init, pty_master))
}

/// Whether `pid` is the process the cloned one (`cloned`) forked: a child of berth's
/// (CLONE_PARENT), other than `cloned`. berth has no other children during `exec`, so a pid
/// sent by anything else (a process in the container holding the channel) fails this.
fn is_forked_sibling(pid: i32, cloned: i32) -> bool {
    if pid <= 0 || pid == cloned {
        return false;
    }
    // SAFETY: siginfo_t is plain data; waitid fills it in. WNOWAIT leaves the child unreaped,
    // WNOHANG returns at once: this only asks whether `pid` is our child.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid siginfo_t for the duration of the call.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    r == 0
}

/// Waits for a message on the sync channel or a notification on the seccomp listener; true
/// when a notification waits and no message does (a call of the process's blocks on the agent).
fn notification_first(sync_fd: BorrowedFd, listener: BorrowedFd) -> Result<bool> {
    use std::os::fd::AsRawFd;
    let mut fds = [
        libc::pollfd {
            fd: sync_fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } >= 0 {
            return Ok(fds[0].revents == 0 && fds[1].revents & libc::POLLIN != 0);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err).context("sync channel: poll failed");
        }
    }
}

fn agent_of(plan: &ProcessPlan) -> Result<&crate::runtime::seccomp::NotifyListener> {
    plan.seccomp
        .as_ref()
        .and_then(|s| s.listener())
        .context("sync channel: a seccomp listener arrived, but the profile has no SCMP_ACT_NOTIFY")
}

/// Sends an exec process's seccomp listener, with the container's state, to the agent.
fn hand_listener_to_agent(
    plan: &ProcessPlan,
    listener: BorrowedFd,
    pid: i32,
    st: &ContainerState,
) -> Result<()> {
    let state = oci_state_json(st, Status::Running);
    crate::runtime::seccomp::send_to_agent(agent_of(plan)?, listener, pid, state)
}

/// The order `exec` joins namespaces in: the user namespace first (it owns the others), the
/// mount namespace next; pid and time last (they apply to the children).
fn join_rank(t: LinuxNamespaceType) -> u8 {
    match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Mount => 1,
        LinuxNamespaceType::Network => 2,
        LinuxNamespaceType::Ipc => 3,
        LinuxNamespaceType::Uts => 4,
        LinuxNamespaceType::Cgroup => 5,
        LinuxNamespaceType::Pid => 6,
        LinuxNamespaceType::Time => 7,
    }
}

/// The cloned process of `exec`, in the host's pid namespace until it forks.
fn exec_child(
    mut joins: Vec<(LinuxNamespaceType, OwnedFd)>,
    root: Option<&OwnedFd>,
    (cgroup, entry): (&CgroupPaths, CgroupEntry),
    plan: &ProcessPlan,
    console: Option<&OwnedFd>,
    (trampoline, sync_fd): (&Trampoline, BorrowedFd),
) -> Result<Infallible> {
    nix::sys::prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE)")?;
    // Still with the host's mounts and privileges.
    entry.join_self(cgroup, plan.oom_score_adj)?;
    if entry.needs_berth(cgroup) {
        sync::request(sync_fd, &Msg::CgroupNeeded)?;
    }
    if let Some(root) = root {
        nix::unistd::fchdir(root).context("cannot enter the container's root")?;
        nix::unistd::chroot(".").context("chroot into the container's root")?;
    }
    joins.sort_by_key(|(t, _)| join_rank(*t));
    for (t, fd) in &joins {
        nix::sched::setns(fd, CloneFlags::from_bits_retain(namespaces::clone_flag(*t)))
            .with_context(|| {
                format!(
                    "cannot join the container's {} namespace",
                    namespaces::proc_name(*t)
                )
            })?;
    }
    drop(joins);
    let pty = match console {
        Some(c) => Some(PtyDestination::ConsoleSocket(c.as_fd())),
        None => Some(PtyDestination::Berth(sync_fd)),
    };
    let terminal = process::open_terminal(plan, pty)?;
    let mut dropped = process::drop_privileges(plan, terminal, sync_fd)?;
    process::load_pending_seccomp(plan, &mut dropped, sync_fd)?;
    namespaces::fork_into_pid_namespace(plan.seccomp.is_some(), sync_fd)?;
    let ready = process::finish(plan, dropped, false, sync_fd)?;
    process::exec(&ready, trampoline, sync_fd)
}
