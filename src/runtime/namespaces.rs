//! Linux namespaces: which to create, which to join by path, and entering them.
//!
//! Most containers only create namespaces: then the clone makes the pid namespace, with the
//! container process as its pid 1, and the process makes the others itself with one unshare,
//! on its own CPU while berth makes the cgroup (a new user namespace, which must own the
//! others, goes into the clone with them). Joining a user or pid namespace
//! by path, a new user namespace together with joined ones, or a time namespace (whose offsets
//! must be written before any process enters it) need the general path: the cloned process joins
//! and unshares in the right order, then forks once more so the container process is born inside
//! its pid and time namespaces.
//!
//! A pid namespace joined by path is another container's, with its processes in it: a process
//! born there at once would be visible to them (and ptrace-able with CAP_SYS_PTRACE) while it
//! still has the host's mounts and all its privileges. So where no user namespace is made and
//! no time namespace given, and the kernel can make a procfs for a pid namespace other than the
//! mounter's (`pidns`, Linux 6.15), the cloned process does not fork here: it sets the whole
//! container up from berth's pid namespace, where the container cannot name it, and forks into
//! the joined one only once it has dropped its privileges ([`NamespacePlan::late_pid_fork`]).
//! Older kernels (Debian 12's 6.1) fork here, as the container's procfs must be mounted by a
//! process of its pid namespace.

use crate::runtime::sync::{self, Msg};
use anyhow::{bail, Context, Result};
use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// CLONE_NEWTIME: not in nix's CloneFlags (it collides with CSIGNAL in clone(2)).
pub const CLONE_NEWTIME: libc::c_int = 0x80;

pub fn clone_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => CLONE_NEWTIME,
    }
}

/// The name of a namespace under /proc/PID/ns/.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// What the container's namespaces are to be, prepared in the parent before clone.
pub struct NamespacePlan {
    /// Every namespace type the container has, in config order.
    pub types: Vec<LinuxNamespaceType>,
    /// CLONE_NEW* flags of the namespaces to create (cgroup excluded: it is unshared after the
    /// process has joined its cgroup, so that the cgroup is the namespace's root).
    pub new_flags: libc::c_int,
    pub new_cgroup: bool,
    /// Namespaces to join, opened (and type-checked) in the parent; the user namespace first.
    pub joins: Vec<(LinuxNamespaceType, OwnedFd)>,
    pub uid_map: String,
    pub gid_map: String,
    /// `monotonic S N\nboottime S N\n` for /proc/self/timens_offsets.
    pub time_offsets: String,
    /// Whether set-up needs the clone-then-fork path described in the module comment.
    pub two_step: bool,
    /// On that path, the fork into a joined pid namespace is put off until the container is
    /// set up and its privileges dropped (module comment): [`enter`] does not fork.
    pub late_pid_fork: bool,
}

impl NamespacePlan {
    pub fn new(linux: Option<&Linux>) -> Result<NamespacePlan> {
        let mut plan = NamespacePlan {
            types: Vec::new(),
            new_flags: 0,
            new_cgroup: false,
            joins: Vec::new(),
            uid_map: String::new(),
            gid_map: String::new(),
            time_offsets: String::new(),
            two_step: false,
            late_pid_fork: false,
        };
        let Some(linux) = linux else { return Ok(plan) };
        for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
            plan.types.push(ns.typ());
            match ns.path() {
                None if ns.typ() == LinuxNamespaceType::Cgroup => plan.new_cgroup = true,
                None => plan.new_flags |= clone_flag(ns.typ()),
                Some(path) => {
                    let fd = std::fs::File::open(path).with_context(|| {
                        format!("linux.namespaces[{i}].path: cannot open {}", path.display())
                    })?;
                    check_ns_type(fd.as_fd(), ns.typ()).with_context(|| {
                        format!("linux.namespaces[{i}].path: {}", path.display())
                    })?;
                    plan.joins.push((ns.typ(), fd.into()));
                }
            }
        }
        // The user namespace is joined first: the others may be owned by it.
        plan.joins
            .sort_by_key(|(t, _)| *t != LinuxNamespaceType::User);
        plan.uid_map = id_map_text(linux.uid_mappings().as_deref());
        plan.gid_map = id_map_text(linux.gid_mappings().as_deref());
        if let Some(offsets) = linux.time_offsets() {
            for (clock, off) in offsets {
                if clock != "monotonic" && clock != "boottime" {
                    bail!("linux.timeOffsets: unknown clock {clock:?} (monotonic or boottime)");
                }
                plan.time_offsets.push_str(&format!(
                    "{clock} {} {}\n",
                    off.secs().unwrap_or(0),
                    off.nanosecs().unwrap_or(0)
                ));
            }
        }
        let joins_user_or_pid = plan.joins.iter().any(|(t, _)| {
            matches!(
                t,
                LinuxNamespaceType::User | LinuxNamespaceType::Pid | LinuxNamespaceType::Time
            )
        });
        plan.two_step = joins_user_or_pid
            || plan.new_flags & CLONE_NEWTIME != 0
            || (plan.new_user() && !plan.joins.is_empty());
        // A new user namespace could not mount a procfs for a pid namespace its parent owns,
        // and a time namespace applies to children only, so these keep the early fork: there
        // the pid namespace is new and empty, nothing can see the process. The kernel is asked
        // only here, never on the usual path.
        let joined_pid = plan
            .joins
            .iter()
            .find(|(t, _)| *t == LinuxNamespaceType::Pid);
        plan.late_pid_fork = match joined_pid {
            Some((_, pidns)) if !plan.new_user() && !plan.has(LinuxNamespaceType::Time) => {
                crate::runtime::mountfd::procfs_takes_pidns(pidns.as_fd())
            }
            _ => false,
        };
        Ok(plan)
    }

    pub fn new_user(&self) -> bool {
        self.new_flags & libc::CLONE_NEWUSER != 0
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.types.contains(&t)
    }

    /// The flags for the one clone: on the direct path the new namespaces the process cannot
    /// make itself afterwards (pid, which applies to children only), none on the general path.
    pub fn clone_flags(&self) -> libc::c_int {
        if self.two_step {
            0
        } else {
            self.new_flags & !self.unshared_by_child()
        }
    }

    /// The new namespaces the container process makes itself, first thing after the clone:
    /// a network namespace alone takes about a millisecond to set up, and made there it is
    /// set up while berth makes the cgroup, on another CPU. Not with a user namespace, which
    /// must own the others and is made on the way in ([`enter`]).
    pub fn unshared_by_child(&self) -> libc::c_int {
        if self.two_step || self.new_user() {
            0
        } else {
            self.new_flags & !libc::CLONE_NEWPID
        }
    }
}

fn id_map_text(maps: Option<&[LinuxIdMapping]>) -> String {
    maps.unwrap_or_default()
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// NS_GET_NSTYPE: which kind of namespace an fd refers to.
fn check_ns_type(fd: BorrowedFd, want: LinuxNamespaceType) -> Result<()> {
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    // SAFETY: the ioctl takes no argument and only inspects the fd.
    let got = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    if got < 0 {
        bail!("not a namespace file");
    }
    if got != clone_flag(want) {
        bail!("is not a {} namespace", proc_name(want));
    }
    Ok(())
}

/// Parent side: writes the uid and gid maps of a process in a new user namespace.
pub fn write_id_maps(pid: i32, plan: &NamespacePlan) -> Result<()> {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        std::fs::write(format!("/proc/{pid}/uid_map"), &plan.uid_map)
            .context("linux.uidMappings: cannot write uid_map")?;
        std::fs::write(format!("/proc/{pid}/gid_map"), &plan.gid_map)
            .context("linux.gidMappings: cannot write gid_map")?;
        return Ok(());
    }
    // Unprivileged: the kernel lets us write only a one-line map of our own id, and a gid map
    // only once setgroups is denied; anything else goes through the setuid helpers (uidmap).
    let egid = nix::unistd::getegid().as_raw();
    if is_own_id_only(&plan.uid_map, euid.as_raw()) {
        std::fs::write(format!("/proc/{pid}/uid_map"), &plan.uid_map)
            .context("linux.uidMappings: cannot write uid_map")?;
    } else {
        run_id_map_helper(
            "newuidmap",
            pid,
            &plan.uid_map,
            "linux.uidMappings",
            euid.as_raw(),
        )?;
    }
    if is_own_id_only(&plan.gid_map, egid) {
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny")
            .context("linux.gidMappings: cannot write \"deny\" to setgroups")?;
        std::fs::write(format!("/proc/{pid}/gid_map"), &plan.gid_map)
            .context("linux.gidMappings: cannot write gid_map")?;
    } else {
        run_id_map_helper("newgidmap", pid, &plan.gid_map, "linux.gidMappings", egid)?;
    }
    Ok(())
}

/// Whether a map is the single line `N <id> 1`, which an unprivileged user may write itself.
fn is_own_id_only(map: &str, id: u32) -> bool {
    let lines: Vec<&str> = map.lines().collect();
    let [line] = lines.as_slice() else {
        return false;
    };
    let fields: Vec<&str> = line.split_whitespace().collect();
    matches!(fields.as_slice(), [_, host, "1"] if *host == id.to_string())
}

/// newuidmap/newgidmap PID C H S...: setuid helpers allowed to map the ranges /etc/subuid and
/// /etc/subgid grant the caller.
fn run_id_map_helper(helper: &str, pid: i32, map: &str, field: &str, own_id: u32) -> Result<()> {
    // Looked up by hand: an unreadable directory in $PATH (say /root/bin after su) would make
    // a plain spawn fail with EACCES rather than say the helper is missing.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(helper))
        .find(|p| p.is_file());
    let Some(found) = found else {
        bail!(
            "{field}: as a non-root user berth can map only its own id ({own_id}) to one \
             container id; other mappings need {helper} (package uidmap), which is not installed"
        );
    };
    let out = std::process::Command::new(&found)
        .arg(pid.to_string())
        .args(map.split_whitespace())
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("{field}: cannot run {}", found.display()))?;
    if !out.status.success() {
        bail!(
            "{field}: {helper} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Child side: puts the calling process in the container's namespaces. On the general path this
/// forks (unless [`NamespacePlan::late_pid_fork`]); the function then returns only in the new
/// process (the container process), while the intermediate process reports the new pid to the
/// parent and exits.
pub fn enter(plan: &NamespacePlan, sync_fd: BorrowedFd) -> Result<()> {
    if !plan.two_step {
        for (t, fd) in &plan.joins {
            setns(fd, CloneFlags::from_bits_retain(clone_flag(*t)))
                .with_context(|| format!("cannot join {} namespace", proc_name(*t)))?;
        }
        if plan.new_user() {
            become_root_in_new_userns(sync_fd)?;
        }
        return Ok(());
    }
    // The kernel checks CAP_SYS_TIME over the new time namespace against the credentials the
    // file was opened with, and a non-dumpable process's /proc/self files belong to the host's
    // root: opened now, with the host's privileges, it can still be written once a new user
    // namespace has taken them away.
    let mut time_offsets = if plan.time_offsets.is_empty() {
        None
    } else {
        Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/proc/self/timens_offsets")
                .context("linux.timeOffsets: cannot open /proc/self/timens_offsets")?,
        )
    };
    // General path. Joined namespaces other than the user one first, while we still have the
    // host's privileges over them; pid and time joins only apply to children, hence the fork.
    for (t, fd) in plan
        .joins
        .iter()
        .filter(|(t, _)| *t != LinuxNamespaceType::User)
    {
        setns(fd, CloneFlags::from_bits_retain(clone_flag(*t)))
            .with_context(|| format!("cannot join {} namespace", proc_name(*t)))?;
    }
    if let Some((_, fd)) = plan
        .joins
        .iter()
        .find(|(t, _)| *t == LinuxNamespaceType::User)
    {
        setns(fd, CloneFlags::CLONE_NEWUSER).context("cannot join user namespace")?;
        set_root_ids()?;
    } else if plan.new_user() {
        unshare(CloneFlags::CLONE_NEWUSER).context("cannot create user namespace")?;
        become_root_in_new_userns(sync_fd)?;
    }
    let rest = plan.new_flags & !libc::CLONE_NEWUSER;
    if rest != 0 {
        unshare(CloneFlags::from_bits_retain(rest)).context("cannot create namespaces")?;
    }
    if let Some(file) = &mut time_offsets {
        std::io::Write::write_all(file, plan.time_offsets.as_bytes())
            .context("linux.timeOffsets: cannot write timens_offsets")?;
    }
    if plan.late_pid_fork {
        // Set up from here, out of the joined pid namespace's sight; forked into it last.
        return Ok(());
    }
    fork_into_pid_namespace(false, sync_fd).map(drop)
}

/// Forks the process that is born in the container's pid (and time) namespace, as berth's
/// child (CLONE_PARENT: its parent-death signal ties it to berth, and berth reaps it, while
/// this process exits). Returns only in the new process, once berth has its pid: this one
/// reports it ([`Msg::Pid`]) and exits, berth sends it back to the new one, which gets it
/// as berth sees it (its own getpid() is its pid in the namespace it is born in). Plain clone(2): a seccomp filter (Docker's, say) answers ENOSYS for
/// clone3; `filtered` says the filter is loaded by now, for the error.
pub fn fork_into_pid_namespace(filtered: bool, sync_fd: BorrowedFd) -> Result<i32> {
    // SAFETY: fork semantics (berth is single-threaded, so the child may run arbitrary code
    // after it; a null stack makes clone(2) continue on a copy of ours).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        if filtered {
            bail!("cannot fork into the container's pid namespace (clone: {err}); the seccomp filter is loaded by then, and linux.seccomp must allow clone(2)");
        }
        bail!("cannot fork into the container's pid namespace (clone: {err})");
    }
    if r == 0 {
        // Nothing of ours may reach berth before the pid (a `Ready` first would find the
        // container unrecorded): berth says when it has it, and tells it back.
        return match sync::recv(sync_fd)? {
            Some(Msg::Pid(p)) => Ok(p),
            Some(Msg::Error(e)) => bail!("{e}"),
            other => bail!("sync channel: expected the pid back, got {other:?}"),
        };
    }
    let child = r as i32;
    if sync::send(sync_fd, &Msg::Pid(child)).is_err() {
        // berth is gone: nobody would wait for the process.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child),
            nix::sys::signal::Signal::SIGKILL,
        );
        // SAFETY: _exit ends this intermediate process without running destructors twice.
        unsafe { libc::_exit(1) }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

fn become_root_in_new_userns(sync_fd: BorrowedFd) -> Result<()> {
    // A non-dumpable process's /proc files belong to root: an unprivileged parent could not
    // open our uid_map. Dumpable just while the parent writes the maps, as runc does.
    nix::sys::prctl::set_dumpable(true).context("prctl(PR_SET_DUMPABLE)")?;
    sync::request(sync_fd, &Msg::MapsNeeded)?;
    nix::sys::prctl::set_dumpable(false).context("prctl(PR_SET_DUMPABLE)")?;
    set_root_ids()
}

/// Takes uid/gid 0 inside the user namespace (the ids the process had are not mapped there).
fn set_root_ids() -> Result<()> {
    let root_u = nix::unistd::Uid::from_raw(0);
    let root_g = nix::unistd::Gid::from_raw(0);
    nix::unistd::setresgid(root_g, root_g, root_g)
        .context("cannot become gid 0 in the user namespace (is 0 in gidMappings?)")?;
    nix::unistd::setresuid(root_u, root_u, root_u)
        .context("cannot become uid 0 in the user namespace (is 0 in uidMappings?)")?;
    Ok(())
}

/// `exec` side: opens the namespaces of a running container's init that differ from ours.
pub fn open_container_namespaces(
    pid: i32,
    types: &[LinuxNamespaceType],
) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
    let mut out = Vec::new();
    let mut ordered: Vec<LinuxNamespaceType> = types.to_vec();
    ordered.sort_by_key(|t| *t != LinuxNamespaceType::User);
    for t in ordered {
        let name = proc_name(t);
        let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{name}"));
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"));
        if let (Ok(a), Ok(b)) = (&theirs, &ours) {
            use std::os::unix::fs::MetadataExt;
            if a.ino() == b.ino() && a.dev() == b.dev() {
                continue; // already there: setns into the same user ns would fail with EINVAL
            }
        }
        let fd = std::fs::File::open(format!("/proc/{pid}/ns/{name}"))
            .with_context(|| format!("cannot open the container's {name} namespace"))?;
        out.push((t, fd.into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_id_only_maps() {
        assert!(is_own_id_only("0 1500 1\n", 1500));
        assert!(is_own_id_only("5 1500 1\n", 1500));
        assert!(!is_own_id_only("0 1500 2\n", 1500));
        assert!(!is_own_id_only("0 1501 1\n", 1500));
        assert!(!is_own_id_only("0 1500 1\n1 100000 1000\n", 1500));
        assert!(!is_own_id_only("", 1500));
    }
}
