//! The container's process: its attributes (user, groups, rlimits, capabilities, terminal,
//! cwd, no_new_privs), the lookup of its program, and the exec. Shared by the init process and
//! by `exec`.

use crate::runtime::caps::{self, CapabilitySets};
use crate::runtime::seccomp::{self, SeccompProgram};
use crate::runtime::sync::{self, Msg};
use crate::runtime::trampoline::Trampoline;
use crate::runtime::tty;
use anyhow::{bail, Context, Result};
use oci_spec::runtime::{PosixRlimitType, Process};
use std::convert::Infallible;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A process spec checked and turned into what the syscalls take, in the parent.
pub struct ProcessPlan {
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: u32,
    pub rlimits: Vec<(i32, libc::rlimit, String)>,
    /// None: the process keeps the capabilities it has (the spec gave no `capabilities`).
    pub caps: Option<CapabilitySets>,
    pub no_new_privs: bool,
    pub oom_score_adj: Option<i32>,
    pub terminal: bool,
    /// `process.consoleSize` as (rows, columns).
    pub console_size: Option<(u16, u16)>,
    /// The fds beyond stdio the process inherits: of 3..3+N (`--preserve-fds` plus
    /// LISTEN_FDS), those berth's caller handed it, never one of berth's own.
    pub inherited_fds: Vec<RawFd>,
    /// The container's seccomp filter, compiled in the parent.
    pub seccomp: Option<SeccompProgram>,
    /// What to write to /proc/self/attr/exec (AppArmor `exec PROFILE` or an SELinux label),
    /// so the program starts confined.
    pub lsm_exec_label: Option<String>,
    /// `process.ioPriority`, `scheduler`, `execCPUAffinity`: set from outside ([`Self::place`]).
    pub sched: crate::runtime::sched::SchedPlan,
    /// The container's `linux.personality` and `linux.memoryPolicy` (set by the caller).
    pub task_attrs: crate::runtime::taskattrs::TaskAttrs,
    /// The container's resctrl group (`linux.intelRdt`), set by the caller.
    pub rdt: Option<crate::runtime::rdt::RdtGroup>,
    pub warnings: Vec<String>,
}

impl ProcessPlan {
    /// `extra_fds`: `--preserve-fds`; LISTEN_FDS from berth's own environment adds to it and is
    /// passed on (socket activation, as runc does).
    pub fn new(
        p: &Process,
        extra_fds: i32,
        seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    ) -> Result<ProcessPlan> {
        crate::runtime::spec::check_user(p)?;
        let args = p
            .args()
            .as_ref()
            .filter(|a| !a.is_empty())
            .context("process.args: must name at least the program to run")?;
        let argv = args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                CString::new(a.as_str())
                    .with_context(|| format!("process.args[{i}]: contains a NUL byte"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut env_strings: Vec<String> = p.env().clone().unwrap_or_default();
        let mut inherited_count = extra_fds;
        if let Some(n) = listen_fds() {
            inherited_count += n;
            env_strings.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
            env_strings.push(format!("LISTEN_FDS={n}"));
            env_strings.push("LISTEN_PID=1".to_string());
        }
        let env = env_strings
            .iter()
            .enumerate()
            .map(|(i, e)| {
                CString::new(e.as_str())
                    .with_context(|| format!("process.env[{i}]: contains a NUL byte"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut rlimits = Vec::new();
        for (i, r) in p.rlimits().iter().flatten().enumerate() {
            if r.soft() > r.hard() {
                bail!(
                    "process.rlimits[{i}]: soft limit {} is above hard limit {}",
                    r.soft(),
                    r.hard()
                );
            }
            rlimits.push((
                rlimit_resource(r.typ()),
                libc::rlimit {
                    rlim_cur: r.soft(),
                    rlim_max: r.hard(),
                },
                format!("process.rlimits[{i}] ({:?})", r.typ()),
            ));
        }
        let (caps, warnings) = match p.capabilities() {
            Some(c) => {
                let (sets, warnings) = caps::parse_capabilities(Some(c), "process.capabilities")?;
                (Some(sets), warnings)
            }
            None => (None, Vec::new()),
        };
        let mut warnings = warnings;
        let seccomp = seccomp.map(seccomp::compile).transpose()?;
        if let Some(s) = &seccomp {
            if !s.skipped_syscalls().is_empty() {
                warnings.push(format!(
                    "linux.seccomp: syscalls unknown to berth's table, skipped: {}",
                    s.skipped_syscalls().join(", ")
                ));
            }
            warnings.extend(s.notes().iter().cloned());
        }
        let lsm_exec_label = lsm_exec_label(p)?;
        let user = p.user();
        Ok(ProcessPlan {
            argv,
            env,
            cwd: p.cwd().clone(),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask().unwrap_or(0o022),
            rlimits,
            caps,
            no_new_privs: p.no_new_privileges().unwrap_or(false),
            oom_score_adj: p.oom_score_adj(),
            terminal: p.terminal().unwrap_or(false),
            console_size: p.console_size().map(|b| {
                (
                    b.height().min(u16::MAX as u64) as u16,
                    b.width().min(u16::MAX as u64) as u16,
                )
            }),
            inherited_fds: take_callers_fds(inherited_count),
            seccomp,
            lsm_exec_label,
            sched: crate::runtime::sched::SchedPlan::new(p)?,
            task_attrs: Default::default(),
            rdt: None,
            warnings,
        })
    }

    /// Parent side: what berth sets on process `pid` from outside, once it is in the
    /// container's cgroup, forks no more and has not exec'd yet: its scheduling
    /// (sched.rs says why from outside) and its resctrl group.
    pub fn place(&self, pid: i32) -> Result<()> {
        self.sched.apply_to(pid)?;
        if let Some(group) = &self.rdt {
            group.add(pid)?;
        }
        Ok(())
    }
}

/// `process.apparmorProfile` / `process.selinuxLabel`: applied where the host runs that LSM,
/// a clear error where it does not (running unconfined instead would be a silent downgrade).
fn lsm_exec_label(p: &Process) -> Result<Option<String>> {
    let apparmor = p.apparmor_profile().as_deref().filter(|s| !s.is_empty());
    let selinux = p.selinux_label().as_deref().filter(|s| !s.is_empty());
    if apparmor.is_some() && selinux.is_some() {
        bail!(
            "process.apparmorProfile and process.selinuxLabel: only one LSM label can be applied"
        );
    }
    if let Some(profile) = apparmor {
        let enabled = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|s| s.trim() == "Y");
        if !enabled {
            bail!("process.apparmorProfile: {profile:?} is set but AppArmor is not enabled on this host");
        }
        return Ok(Some(format!("exec {profile}")));
    }
    if let Some(label) = selinux {
        if !Path::new("/sys/fs/selinux/enforce").exists() {
            bail!("process.selinuxLabel: {label:?} is set but SELinux is not enabled on this host");
        }
        return Ok(Some(label.to_string()));
    }
    Ok(None)
}

fn rlimit_resource(t: PosixRlimitType) -> i32 {
    (match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }) as i32
}

/// Where the pty master goes when the process has a terminal.
pub enum PtyDestination<'a> {
    /// `--console-socket`: to the caller's socket, as runc does.
    ConsoleSocket(BorrowedFd<'a>),
    /// Foreground `run`/`exec` with no console socket: back to berth, which proxies it.
    Berth(BorrowedFd<'a>),
}

/// The program, resolved and ready for execve.
pub struct ReadyToExec {
    path: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    lsm_exec_label: Option<CString>,
}

/// A process whose privileges are dropped (ids, capabilities, rlimits, no_new_privs, and the
/// seccomp filter unless it is still pending): all of it is inherited by a fork. What is left
/// is bound to the process that execs ([`finish`]).
pub struct Dropped {
    /// The pty slave, owned by the process's user, to become the controlling terminal.
    terminal: Option<OwnedFd>,
    /// The filter is loaded last when no_new_privs allows it; still to load if true.
    seccomp_pending: bool,
    ready: ReadyToExec,
}

/// Child side, in the container's mount namespace: opens the process's pty and sends its
/// master on. Returns the slave (None without `process.terminal`).
pub fn open_terminal(plan: &ProcessPlan, pty: Option<PtyDestination>) -> Result<Option<OwnedFd>> {
    if !plan.terminal {
        return Ok(None);
    }
    let dest = pty.context(
        "process.terminal: set, but there is no --console-socket to send the terminal to",
    )?;
    let p = tty::open_pty().context("process.terminal: cannot open a pty")?;
    let name = p.slave_name.clone();
    if let Some((rows, cols)) = plan.console_size {
        tty::set_window_size(p.master.as_fd(), rows, cols).context("process.consoleSize")?;
    }
    match dest {
        PtyDestination::ConsoleSocket(sock) => tty::send_fd(sock, p.master.as_fd(), &name)
            .context("--console-socket: cannot send the pty")?,
        PtyDestination::Berth(sync_fd) => {
            sync::send(sync_fd, &Msg::PtyFollows)?;
            tty::send_fd(sync_fd, p.master.as_fd(), &name)?;
        }
    }
    Ok(Some(p.slave))
}

/// Child side, in the container's namespaces and root: gives the process its rlimits, user,
/// capabilities, umask, cwd and no_new_privs, and finds its program. Everything here is
/// inherited by a fork, so `exec` does it before the process becomes visible in the container.
pub fn drop_privileges(
    plan: &ProcessPlan,
    terminal: Option<OwnedFd>,
    sync_fd: BorrowedFd,
) -> Result<Dropped> {
    if let Some(slave) = &terminal {
        // Before capabilities go: fchown to another user needs CAP_CHOWN.
        tty::give_slave_to(slave.as_fd(), plan.uid, plan.gid).context("process.terminal")?;
    }
    // Before the seccomp filter, which may refuse personality(2) or set_mempolicy(2).
    plan.task_attrs.apply()?;
    for (resource, limit, field) in &plan.rlimits {
        // SAFETY: setrlimit reads the struct we pass; the resource number comes from our table.
        if unsafe { libc::setrlimit(*resource as _, limit) } != 0 {
            let err = std::io::Error::last_os_error();
            bail!(
                "{field}: cannot set soft {} hard {}: {err}",
                limit.rlim_cur,
                limit.rlim_max
            );
        }
    }
    // Without no_new_privs the kernel requires CAP_SYS_ADMIN to load a filter: load it while
    // we still have it (the filter then also governs the set-up calls below).
    if let (Some(filter), false) = (&plan.seccomp, plan.no_new_privs) {
        load_seccomp(filter, sync_fd)?;
    }
    if let Some(c) = &plan.caps {
        caps::drop_bounding_set(c)?;
    }
    let gids: Vec<nix::unistd::Gid> = plan
        .additional_gids
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    match nix::unistd::setgroups(&gids) {
        Ok(()) => {}
        // setgroups is denied in some user namespaces; nothing to drop then.
        Err(nix::errno::Errno::EPERM) if gids.is_empty() => {}
        Err(e) => return Err(e).context("process.user.additionalGids: setgroups failed"),
    }
    let gid = nix::unistd::Gid::from_raw(plan.gid);
    nix::unistd::setresgid(gid, gid, gid)
        .with_context(|| format!("process.user.gid: cannot set gid {}", plan.gid))?;
    let uid = nix::unistd::Uid::from_raw(plan.uid);
    nix::unistd::setresuid(uid, uid, uid)
        .with_context(|| format!("process.user.uid: cannot set uid {}", plan.uid))?;
    if let Some(c) = &plan.caps {
        caps::apply_process_capabilities(c)?;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(plan.umask));
    nix::unistd::chdir(&plan.cwd)
        .with_context(|| format!("process.cwd: cannot enter {}", plan.cwd.display()))?;
    // The exec trampoline writes it to /proc/self/attr/exec just before the program's exec:
    // it applies at the next execve, and berth's next is the trampoline's.
    let lsm_exec_label = plan
        .lsm_exec_label
        .as_deref()
        .map(CString::new)
        .transpose()
        .context("process.apparmorProfile or process.selinuxLabel: contains a NUL byte")?;
    if plan.no_new_privs {
        nix::sys::prctl::set_no_new_privs().context("process.noNewPrivileges")?;
    }
    let mut env = plan.env.clone();
    if !env.iter().any(|e| e.as_bytes().starts_with(b"HOME=")) {
        env.push(
            CString::new(format!("HOME={}", home_of(plan.uid)?))
                .context("/etc/passwd: the home directory holds a NUL byte")?,
        );
    }
    let path = find_program(&plan.argv[0], &env)?;
    Ok(Dropped {
        terminal,
        seccomp_pending: plan.seccomp.is_some() && plan.no_new_privs,
        ready: ReadyToExec {
            path,
            argv: plan.argv.clone(),
            env,
            lsm_exec_label,
        },
    })
}

/// Loads the filter [`drop_privileges`] left for last, now: `exec` loads it before it forks
/// the process that enters the container's pid namespace.
pub fn load_pending_seccomp(
    plan: &ProcessPlan,
    dropped: &mut Dropped,
    sync_fd: BorrowedFd,
) -> Result<()> {
    if let (Some(filter), true) = (&plan.seccomp, dropped.seccomp_pending) {
        load_seccomp(filter, sync_fd)?;
        dropped.seccomp_pending = false;
    }
    Ok(())
}

/// Child side, in the process that execs: a new session and the controlling terminal,
/// default signals, the descriptors handed on, and last the seccomp filter if still pending. What remains after this is
/// waiting to be started and the exec.
pub fn finish(
    plan: &ProcessPlan,
    dropped: Dropped,
    new_session: bool,
    sync_fd: BorrowedFd,
) -> Result<ReadyToExec> {
    if new_session || dropped.terminal.is_some() {
        nix::unistd::setsid().context("setsid")?;
    }
    if let Some(slave) = dropped.terminal {
        tty::make_controlling_stdio(slave).context("process.terminal")?;
    }
    reset_signals();
    close_fds_on_exec(3);
    pass_inherited_fds(&plan.inherited_fds);
    // As late as possible: what remains is waiting to be started and the exec.
    if let (Some(filter), true) = (&plan.seccomp, dropped.seccomp_pending) {
        load_seccomp(filter, sync_fd)?;
    }
    Ok(dropped.ready)
}

/// Loads the filter; a notify listener goes to berth, which passes it to the agent before
/// this process makes another call the agent may have to answer.
fn load_seccomp(filter: &SeccompProgram, sync_fd: BorrowedFd) -> Result<()> {
    let Some(listener) = seccomp::install(filter).context("linux.seccomp")? else {
        return Ok(());
    };
    sync::send(sync_fd, &Msg::SeccompListenerFollows)?;
    tty::send_fd(sync_fd, listener.as_fd(), "seccomp")?;
    drop(listener);
    match sync::recv(sync_fd)? {
        Some(Msg::Done) => Ok(()),
        Some(Msg::Error(e)) => bail!("{e}"),
        other => bail!("sync channel: unexpected {other:?} after passing the seccomp listener"),
    }
}

/// The end of the line: becomes the container's program, through the exec trampoline (never
/// exec'ing anything itself while /proc/self/exe is berth's binary). A failed exec of the
/// program is reported by the trampoline on `report`, which berth (`run`, `exec`) or `start`
/// reads; success closes it.
pub fn exec(
    ready: &ReadyToExec,
    trampoline: &Trampoline,
    report: BorrowedFd,
) -> Result<Infallible> {
    let label = ready.lsm_exec_label.as_deref();
    Err(trampoline.exec(&ready.path, &ready.argv, &ready.env, label, report))
}

/// The program's path, looked up like execvp does but in the container's PATH, so a missing
/// program fails `create` rather than `start`. The errors carry runc's words (Go's lowercase
/// errno text, "executable file not found in $PATH"): Docker and Podman match on them to exit
/// 127 (not found) or 126 (permission denied) as they do with runc.
fn find_program(arg0: &CStr, env: &[CString]) -> Result<CString> {
    let name = Path::new(std::ffi::OsStr::from_bytes(arg0.to_bytes()));
    if name.as_os_str().as_bytes().contains(&b'/') {
        return match why_not_executable(name) {
            None => Ok(arg0.to_owned()),
            Some(why) => bail!(
                "process.args[0]: exec {:?}: {why}",
                name.display().to_string()
            ),
        };
    }
    let path_var = env
        .iter()
        .find_map(|e| {
            e.to_str()
                .ok()
                .and_then(|s| s.strip_prefix("PATH="))
                .map(str::to_string)
        })
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if why_not_executable(&candidate).is_none() {
            return Ok(
                CString::new(candidate.as_os_str().as_bytes()).expect("built from C strings")
            );
        }
    }
    bail!(
        "process.args[0]: exec {:?}: executable file not found in $PATH ({path_var})",
        name.display().to_string()
    )
}

/// Why `path` cannot be exec'd, as runc says it (`stat P: no such file or directory`,
/// `permission denied`), or None when it can.
fn why_not_executable(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Err(e) => {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
            Some(format!("stat {}: {}", path.display(), errno_text(errno)))
        }
        // execve(2) gives EACCES for a directory or other non-regular file.
        Ok(m) if !m.is_file() => Some(errno_text(nix::errno::Errno::EACCES)),
        Ok(_) => nix::unistd::access(path, nix::unistd::AccessFlags::X_OK)
            .err()
            .map(errno_text),
    }
}

/// An errno's text as Go (and so runc) writes it: strerror with a lowercase first letter.
fn errno_text(errno: nix::errno::Errno) -> String {
    let desc = errno.desc();
    let mut chars = desc.chars();
    chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The home directory of `uid` in the container's /etc/passwd, or "/".
fn home_of(uid: u32) -> Result<String> {
    Ok(passwd_field(uid, 5)?
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string()))
}

/// The most of /etc/passwd berth reads: a real one is a few KiB.
const PASSWD_MAX: u64 = 4 << 20;

/// Field `index` of `uid`'s line in /etc/passwd (0 is the name, 5 the home directory), read
/// directly: going through NSS would make berth load shared libraries at run time. In the
/// container the file is the image's: a FIFO would block the read forever and a device such
/// as /dev/zero never end, so only a regular file of sane size is read.
pub fn passwd_field(uid: u32, index: usize) -> Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open("/etc/passwd")
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("/etc/passwd: cannot open"),
    };
    let meta = file.metadata().context("/etc/passwd: cannot stat")?;
    if !meta.is_file() {
        // A masked /etc/passwd is /dev/null: no users. Any other device, FIFO or socket could
        // block or never end, and a device's contents are not the image's to read.
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3) {
            return Ok(None);
        }
        bail!("/etc/passwd: not a regular file (a FIFO or device cannot be a user database)");
    }
    if meta.len() > PASSWD_MAX {
        bail!(
            "/etc/passwd: {} bytes, larger than {PASSWD_MAX}",
            meta.len()
        );
    }
    let mut passwd = String::new();
    file.take(PASSWD_MAX)
        .read_to_string(&mut passwd)
        .context("/etc/passwd: cannot read")?;
    Ok(passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > index.max(2) && f[2].parse::<u32>().ok() == Some(uid))
        .map(|f| f[index].to_string()))
}

/// Signal dispositions and the mask survive exec: give the program the defaults (Rust's
/// runtime ignores SIGPIPE, and `run` blocks the signals it forwards).
fn reset_signals() {
    for sig in 1..32 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting a default disposition has no memory-safety preconditions.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let empty = nix::sys::signal::SigSet::empty();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&empty),
        None,
    );
}

/// The descriptors handed on (`--preserve-fds`, LISTEN_FDS) survive exec even if the caller
/// opened them close-on-exec.
fn pass_inherited_fds(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: F_SETFD on a descriptor number only clears a flag.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
}

/// LISTEN_FDS in berth's own environment (socket activation), when positive.
fn listen_fds() -> Option<i32> {
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|n| *n > 0)
}

/// Which of the descriptors 3..3+N berth's caller handed it (`--preserve-fds N`, LISTEN_FDS),
/// recorded by [`record_callers_fds`] before berth opens anything of its own, until
/// [`ProcessPlan::new`] takes it: the numbers in that range that berth opens later (its sync
/// channel, the start socket, the console socket, the exec trampoline...) must not reach the
/// container. (count, the open ones.)
static CALLERS_FDS: std::sync::Mutex<Option<(i32, Vec<RawFd>)>> = std::sync::Mutex::new(None);

/// Called first thing by `create`, `run` and `exec`. Costs one fcntl per descriptor in the
/// range, and nothing without `--preserve-fds` or LISTEN_FDS.
pub fn record_callers_fds(preserve_fds: i32) {
    let count = preserve_fds.max(0) + listen_fds().unwrap_or(0);
    let open = open_fds_among(count);
    *CALLERS_FDS.lock().unwrap_or_else(|e| e.into_inner()) = Some((count, open));
}

/// The recorded descriptors for a plan that passes `count`; when nothing was recorded for that
/// count (a library caller that did not record), those open now.
fn take_callers_fds(count: i32) -> Vec<RawFd> {
    let recorded = CALLERS_FDS.lock().unwrap_or_else(|e| e.into_inner()).take();
    match recorded {
        Some((n, open)) if n == count => open,
        _ => open_fds_among(count),
    }
}

/// The open descriptors among 3..3+count.
fn open_fds_among(count: i32) -> Vec<RawFd> {
    (3..3 + count.max(0))
        // SAFETY: F_GETFD on a descriptor number only reads its flags.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
        .collect()
}
/// No descriptor of berth's (nor the caller's, beyond those handed on) reaches the program.
fn close_fds_on_exec(first: i32) {
    // SAFETY: close_range only changes flags of our own descriptors.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if r != 0 {
        // Kernels before 5.11: mark each open descriptor by hand.
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd >= first)
                .collect();
            for fd in fds {
                // SAFETY: F_SETFD on a descriptor number only sets a flag; a closed one fails harmlessly.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}
