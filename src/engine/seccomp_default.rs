//! Docker's seccomp profiles: the profile file format (`--security-opt seccomp=FILE`) and
//! Docker's default profile, built in, both resolved into the runtime-spec `linux.seccomp`
//! that the runtime core compiles.
//!
//! Docker's format is the runtime-spec object plus three things, decided here and not by the
//! runtime: `archMap` (the native architecture and the ones its kernel also runs), `name` as
//! well as `names`, and per-entry `includes`/`excludes` filters on the architecture, the
//! container's capabilities (its bounding set, as Docker checks) and the kernel version. An
//! entry is kept when every `includes` condition holds and no `excludes` condition does.
//!
//! The default profile denies with EPERM (`SCMP_ACT_ERRNO`, errno 1) whatever it does not list,
//! answers `clone3` with ENOSYS unless the container holds CAP_SYS_ADMIN (so that C libraries
//! fall back to `clone`, whose namespace flags it can check), allows `clone` only without the
//! namespace flags, `personality` only for a few domains, `socket` for all but AF_VSOCK, and
//! the calls of a privileged kind (mount, ptrace, reboot, ...) only when the container holds
//! the capability that governs them. The lists follow moby's `profiles/seccomp/default.json`.

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A seccomp profile in Docker's format.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DockerSeccompProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<LinuxSeccompAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<Arch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMapEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<LinuxSeccompFilterFlag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    #[serde(default)]
    pub syscalls: Vec<ProfileSyscall>,
}

/// One `archMap` entry: a native architecture and those whose calls its kernel also takes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArchMapEntry {
    pub architecture: Arch,
    #[serde(default)]
    pub sub_architectures: Option<Vec<Arch>>,
}

/// One `syscalls` entry of a Docker profile.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileSyscall {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    pub action: LinuxSeccompAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<ProfileFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<ProfileFilter>,
}

/// The conditions of `includes` / `excludes`. Architectures are named as Go names them
/// (`amd64`, `arm64`, ...); `minKernel` is `MAJOR.MINOR`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProfileFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// What a profile is resolved against: the machine and the container's bounding set.
#[derive(Clone, Debug)]
pub struct ResolveContext {
    /// Go's name of the native architecture (`amd64`, `arm64`, ...).
    pub arch: String,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
    /// The container's bounding capabilities, `CAP_` names.
    pub bounding: Vec<String>,
}

impl ResolveContext {
    /// This machine, for a container with the bounding set `bounding`.
    pub fn host(bounding: Vec<String>) -> ResolveContext {
        ResolveContext {
            arch: go_arch(std::env::consts::ARCH).to_string(),
            kernel: running_kernel(),
            bounding,
        }
    }
}

/// Go's GOARCH name for a Rust target architecture (Docker's profiles use Go's names).
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The libseccomp architecture of a Go architecture name, for `archMap`.
fn seccomp_arch(go_arch: &str) -> Option<Arch> {
    Some(match go_arch {
        "amd64" => Arch::ScmpArchX86_64,
        "arm64" => Arch::ScmpArchAarch64,
        "x86" => Arch::ScmpArchX86,
        "arm" => Arch::ScmpArchArm,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "s390x" => Arch::ScmpArchS390x,
        "riscv64" => Arch::ScmpArchRiscv64,
        "loong64" => Arch::ScmpArchLoongarch64,
        "mips64" => Arch::ScmpArchMips64,
        "mips64le" => Arch::ScmpArchMipsel64,
        _ => return None,
    })
}

/// The running kernel's (major, minor), from uname(2); (0, 0) if it cannot be read.
fn running_kernel() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| parse_kernel_version(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}

/// `6.1.0-18-amd64` → (6, 1); `4.8` → (4, 8).
fn parse_kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().unwrap_or(0);
    Some((major, minor))
}

/// Parses a profile file's text (Docker's format; a plain runtime-spec `linux.seccomp` object
/// is one too).
pub fn parse_profile(text: &str) -> Result<DockerSeccompProfile> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            anyhow::anyhow!("decoding seccomp profile failed: {}", e.into_inner())
        } else {
            anyhow::anyhow!(
                "decoding seccomp profile failed: {path}: {}",
                e.into_inner()
            )
        }
    })
}

/// Resolves a Docker profile for one container, as Docker does (`setupSeccomp`): keeps the
/// native architecture's `archMap` entry and the entries whose filters hold. `None` when the
/// profile has neither a default action nor any call (Docker then runs without seccomp).
pub fn resolve(
    profile: &DockerSeccompProfile,
    ctx: &ResolveContext,
) -> Result<Option<LinuxSeccomp>> {
    let Some(default_action) = profile.default_action else {
        if profile.syscalls.is_empty() {
            return Ok(None);
        }
        bail!("decoding seccomp profile failed: defaultAction: missing");
    };
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        bail!("both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'");
    }
    let mut architectures = profile.architectures.clone();
    if let Some(native) = seccomp_arch(&ctx.arch) {
        if let Some(entry) = profile.arch_map.iter().find(|a| a.architecture == native) {
            architectures.push(entry.architecture);
            architectures.extend(entry.sub_architectures.iter().flatten().copied());
        }
    }

    let mut syscalls = Vec::new();
    for (index, call) in profile.syscalls.iter().enumerate() {
        let mut names = call.names.clone();
        if !call.name.is_empty() {
            if !names.is_empty() {
                bail!("seccomp profile: syscalls[{index}]: use either 'name' or 'names'");
            }
            names.push(call.name.clone());
        }
        if let Some(excludes) = &call.excludes {
            if excludes.arches.contains(&ctx.arch) {
                continue;
            }
            if excludes.caps.iter().any(|c| ctx.bounding.contains(c)) {
                continue;
            }
            if let Some(min) = &excludes.min_kernel {
                if ctx.kernel >= min_kernel(min, index)? {
                    continue;
                }
            }
        }
        if let Some(includes) = &call.includes {
            if !includes.arches.is_empty() && !includes.arches.contains(&ctx.arch) {
                continue;
            }
            if !includes.caps.iter().all(|c| ctx.bounding.contains(c)) {
                continue;
            }
            if let Some(min) = &includes.min_kernel {
                if ctx.kernel < min_kernel(min, index)? {
                    continue;
                }
            }
        }
        let mut entry = LinuxSyscall::default();
        entry.set_names(names);
        entry.set_action(call.action);
        entry.set_errno_ret(call.errno_ret);
        entry.set_args(call.args.clone());
        syscalls.push(entry);
    }

    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(default_action);
    seccomp.set_default_errno_ret(profile.default_errno_ret);
    seccomp.set_architectures((!architectures.is_empty()).then_some(architectures));
    seccomp.set_flags((!profile.flags.is_empty()).then(|| profile.flags.clone()));
    seccomp.set_listener_path(profile.listener_path.clone());
    seccomp.set_listener_metadata(profile.listener_metadata.clone());
    seccomp.set_syscalls(Some(syscalls));
    Ok(Some(seccomp))
}

fn min_kernel(text: &str, index: usize) -> Result<(u32, u32)> {
    let (major, minor) = text
        .split_once('.')
        .with_context(|| format!("seccomp profile: syscalls[{index}]: invalid kernel version: {text:?} (want MAJOR.MINOR)"))?;
    match (major.parse(), minor.parse()) {
        (Ok(major), Ok(minor)) => Ok((major, minor)),
        _ => bail!("seccomp profile: syscalls[{index}]: invalid kernel version: {text:?} (want MAJOR.MINOR)"),
    }
}

/// Docker's default profile resolved for a container whose bounding set is `bounding`.
pub fn default_seccomp(bounding: &[String]) -> LinuxSeccomp {
    let ctx = ResolveContext::host(bounding.to_vec());
    resolve(&default_profile(), &ctx)
        .ok()
        .flatten()
        // The built-in profile has a default action and well-formed filters: resolving it
        // cannot fail; the unit tests hold it to that.
        .expect("the built-in seccomp profile resolves")
}

/// The calls the default profile allows to every container.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// The namespace flags of clone(2) (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
/// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET): without CAP_SYS_ADMIN a
/// clone must have none of them.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// AF_VSOCK: the one socket family the default profile refuses.
const AF_VSOCK: u64 = 40;

/// The personality(2) domains allowed: PER_LINUX, UNAME26, PER_LINUX32, UNAME26|PER_LINUX32
/// and 0xffffffff (a query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Calls allowed only to a container holding one capability.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Calls allowed on some architectures only (Go's names).
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
    (&["riscv64"], &["riscv_flush_icache"]),
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn allow(names: &[&str]) -> ProfileSyscall {
    ProfileSyscall {
        name: String::new(),
        names: strings(names),
        action: LinuxSeccompAction::ScmpActAllow,
        errno_ret: None,
        args: None,
        comment: String::new(),
        includes: None,
        excludes: None,
    }
}

fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    arg_with(index, value, None, op)
}

fn arg_with(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> LinuxSeccompArg {
    let builder = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let builder = match value_two {
        Some(two) => builder.value_two(two),
        None => builder,
    };
    // oci-spec offers only a builder here; every field has a default, so it cannot fail.
    builder
        .build()
        .expect("a LinuxSeccompArg builder with defaults")
}

fn only_with(caps: &[&str]) -> Option<ProfileFilter> {
    Some(ProfileFilter {
        caps: strings(caps),
        ..Default::default()
    })
}

/// Docker's default profile, in Docker's format.
pub fn default_profile() -> DockerSeccompProfile {
    let mut syscalls = vec![allow(ALLOWED)];
    // ptrace and process_vm_* are harmless since Linux 4.8 (seccomp is checked again after a
    // tracer changes a call), so allowed to all from there on.
    syscalls.push(ProfileSyscall {
        includes: Some(ProfileFilter {
            min_kernel: Some("4.8".into()),
            ..Default::default()
        }),
        ..allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
    });
    syscalls.push(ProfileSyscall {
        args: Some(vec![arg(0, AF_VSOCK, LinuxSeccompOperator::ScmpCmpNe)]),
        ..allow(&["socket"])
    });
    for domain in PERSONALITIES {
        syscalls.push(ProfileSyscall {
            args: Some(vec![arg(0, domain, LinuxSeccompOperator::ScmpCmpEq)]),
            ..allow(&["personality"])
        });
    }
    for (arches, names) in BY_ARCH {
        syscalls.push(ProfileSyscall {
            includes: Some(ProfileFilter {
                arches: strings(arches),
                ..Default::default()
            }),
            ..allow(names)
        });
    }
    // Order as Docker's: the DAC_READ_SEARCH and SYS_ADMIN entries, then the clone rules for
    // containers without SYS_ADMIN, then the other capabilities.
    let (first, rest) = BY_CAPABILITY.split_at(2);
    for (cap, names) in first {
        syscalls.push(ProfileSyscall {
            includes: only_with(&[cap]),
            ..allow(names)
        });
    }
    syscalls.push(ProfileSyscall {
        args: Some(vec![clone_flags_arg(0)]),
        excludes: Some(ProfileFilter {
            caps: strings(&["CAP_SYS_ADMIN"]),
            arches: strings(&["s390", "s390x"]),
            min_kernel: None,
        }),
        ..allow(&["clone"])
    });
    syscalls.push(ProfileSyscall {
        args: Some(vec![clone_flags_arg(1)]),
        comment: "s390 parameter ordering for clone is different".into(),
        includes: Some(ProfileFilter {
            arches: strings(&["s390", "s390x"]),
            ..Default::default()
        }),
        excludes: only_with(&["CAP_SYS_ADMIN"]),
        ..allow(&["clone"])
    });
    syscalls.push(ProfileSyscall {
        action: LinuxSeccompAction::ScmpActErrno,
        errno_ret: Some(libc::ENOSYS as u32),
        excludes: only_with(&["CAP_SYS_ADMIN"]),
        ..allow(&["clone3"])
    });
    for (cap, names) in rest {
        syscalls.push(ProfileSyscall {
            includes: only_with(&[cap]),
            ..allow(names)
        });
    }
    DockerSeccompProfile {
        default_action: Some(LinuxSeccompAction::ScmpActErrno),
        default_errno_ret: Some(libc::EPERM as u32),
        arch_map: vec![
            arch_map(
                Arch::ScmpArchX86_64,
                &[Arch::ScmpArchX86, Arch::ScmpArchX32],
            ),
            arch_map(Arch::ScmpArchAarch64, &[Arch::ScmpArchArm]),
            arch_map(
                Arch::ScmpArchMips64,
                &[Arch::ScmpArchMips, Arch::ScmpArchMips64n32],
            ),
            arch_map(
                Arch::ScmpArchMips64n32,
                &[Arch::ScmpArchMips, Arch::ScmpArchMips64],
            ),
            arch_map(
                Arch::ScmpArchMipsel64,
                &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64n32],
            ),
            arch_map(
                Arch::ScmpArchMipsel64n32,
                &[Arch::ScmpArchMipsel, Arch::ScmpArchMipsel64],
            ),
            arch_map(Arch::ScmpArchS390x, &[Arch::ScmpArchS390]),
            ArchMapEntry {
                architecture: Arch::ScmpArchRiscv64,
                sub_architectures: None,
            },
        ],
        syscalls,
        ..Default::default()
    }
}

fn arch_map(architecture: Arch, subs: &[Arch]) -> ArchMapEntry {
    ArchMapEntry {
        architecture,
        sub_architectures: Some(subs.to_vec()),
    }
}

/// `flags & CLONE_NAMESPACE_FLAGS == 0` on argument `index`.
fn clone_flags_arg(index: usize) -> LinuxSeccompArg {
    arg_with(
        index,
        CLONE_NAMESPACE_FLAGS,
        Some(0),
        LinuxSeccompOperator::ScmpCmpMaskedEq,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(arch: &str, kernel: (u32, u32), caps: &[&str]) -> ResolveContext {
        ResolveContext {
            arch: arch.into(),
            kernel,
            bounding: strings(caps),
        }
    }

    /// Every entry of the resolved profile that names `call`.
    fn entries_for<'a>(seccomp: &'a LinuxSeccomp, call: &str) -> Vec<&'a LinuxSyscall> {
        seccomp
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == call))
            .collect()
    }

    const DEFAULT_CAPS: &[&str] = &crate::engine::security::DEFAULT_CAPABILITIES;

    #[test]
    fn default_denies_with_eperm_on_x86_64() {
        let seccomp = resolve(&default_profile(), &ctx("amd64", (6, 1), DEFAULT_CAPS))
            .unwrap()
            .unwrap();
        assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(seccomp.default_errno_ret(), Some(1));
        assert_eq!(
            seccomp.architectures().clone().unwrap(),
            [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        // The plain allow list, arch_prctl and modify_ldt (amd64), chroot (CAP_SYS_CHROOT).
        for call in [
            "read",
            "arch_prctl",
            "modify_ldt",
            "chroot",
            "ptrace",
            "fchmodat2",
        ] {
            let found = entries_for(&seccomp, call);
            assert!(!found.is_empty(), "{call} allowed");
            assert!(found
                .iter()
                .all(|e| e.action() == LinuxSeccompAction::ScmpActAllow && e.args().is_none()));
        }
        // Not held: SYS_ADMIN, SYS_MODULE, SYS_TIME, ...; arm-only calls.
        for call in [
            "mount",
            "unshare",
            "setns",
            "init_module",
            "settimeofday",
            "reboot",
            "set_tls",
            "kcmp",
        ] {
            assert!(
                entries_for(&seccomp, call).is_empty(),
                "{call} must be denied"
            );
        }
        // clone only without namespace flags; clone3 → ENOSYS.
        let clone = entries_for(&seccomp, "clone");
        assert_eq!(clone.len(), 1);
        let args = clone[0].args().clone().unwrap();
        assert_eq!(args[0].index(), 0);
        assert_eq!(args[0].value(), 2114060288);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        let clone3 = entries_for(&seccomp, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
        // personality: five domains; socket: all but AF_VSOCK.
        assert_eq!(entries_for(&seccomp, "personality").len(), 5);
        let socket = entries_for(&seccomp, "socket");
        let socket_args = socket[0].args().clone().unwrap();
        assert_eq!(
            (socket_args[0].value(), socket_args[0].op()),
            (40, LinuxSeccompOperator::ScmpCmpNe)
        );
    }

    #[test]
    fn capabilities_decide_the_privileged_calls() {
        let mut caps = DEFAULT_CAPS.to_vec();
        caps.extend(["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]);
        let seccomp = resolve(&default_profile(), &ctx("amd64", (6, 1), &caps))
            .unwrap()
            .unwrap();
        for call in [
            "mount",
            "unshare",
            "setns",
            "kcmp",
            "pidfd_getfd",
            "bpf",
            "clone3",
        ] {
            let found = entries_for(&seccomp, call);
            assert!(
                found
                    .iter()
                    .any(|e| e.action() == LinuxSeccompAction::ScmpActAllow && e.args().is_none()),
                "{call} allowed with SYS_ADMIN and SYS_PTRACE"
            );
        }
        // With SYS_ADMIN the masked clone rule and clone3's ENOSYS are gone.
        assert!(entries_for(&seccomp, "clone")
            .iter()
            .all(|e| e.args().is_none()));
        assert!(entries_for(&seccomp, "clone3")
            .iter()
            .all(|e| e.action() == LinuxSeccompAction::ScmpActAllow));
        assert!(entries_for(&seccomp, "reboot").is_empty());
    }

    #[test]
    fn arch_and_kernel_filters() {
        let arm = resolve(&default_profile(), &ctx("arm64", (4, 4), DEFAULT_CAPS))
            .unwrap()
            .unwrap();
        assert_eq!(
            arm.architectures().clone().unwrap(),
            [Arch::ScmpArchAarch64, Arch::ScmpArchArm]
        );
        assert!(!entries_for(&arm, "set_tls").is_empty());
        assert!(entries_for(&arm, "arch_prctl").is_empty());
        // Before 4.8 ptrace is for CAP_SYS_PTRACE only.
        assert!(entries_for(&arm, "ptrace").is_empty());
    }

    #[test]
    fn docker_profile_files() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
                 "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["getpid"], "action": "SCMP_ACT_KILL", "excludes": {"minKernel": "3.0"},
                 "comment": "never on a current kernel"}
            ]
        }"#;
        let profile = parse_profile(text).unwrap();
        let seccomp = resolve(&profile, &ctx("amd64", (6, 1), DEFAULT_CAPS))
            .unwrap()
            .unwrap();
        let calls = seccomp.syscalls().clone().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].names(), &["mkdir".to_string()]);
        assert_eq!(calls[0].errno_ret(), Some(13));
        assert_eq!(
            seccomp.architectures().clone().unwrap(),
            [Arch::ScmpArchX86_64]
        );

        // An empty profile means no seccomp at all, as in Docker.
        assert!(
            resolve(&parse_profile("{}").unwrap(), &ctx("amd64", (6, 1), &[]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_profiles_are_named() {
        let err = parse_profile(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).unwrap_err();
        assert!(err.to_string().contains("defaultAction"), "{err}");
        let both = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
            "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":[]}]}"#;
        let err = resolve(&parse_profile(both).unwrap(), &ctx("amd64", (6, 1), &[])).unwrap_err();
        assert!(
            err.to_string()
                .contains("both 'architectures' and 'archMap'"),
            "{err}"
        );
        let names = r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}"#;
        let err = resolve(&parse_profile(names).unwrap(), &ctx("amd64", (6, 1), &[])).unwrap_err();
        assert!(
            err.to_string().contains("use either 'name' or 'names'"),
            "{err}"
        );
        let kernel = r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "syscalls":[{"name":"a","action":"SCMP_ACT_ERRNO","includes":{"minKernel":"six"}}]}"#;
        let err = resolve(&parse_profile(kernel).unwrap(), &ctx("amd64", (6, 1), &[])).unwrap_err();
        assert!(err.to_string().contains("\"six\""), "{err}");
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v1272"), Some((6, 18)));
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel_version("5"), Some((5, 0)));
        assert_eq!(parse_kernel_version("x"), None);
    }

    /// The runtime core compiles the resolved default for this machine.
    #[test]
    fn runtime_core_compiles_it() {
        let seccomp = default_seccomp(&strings(DEFAULT_CAPS));
        let program = crate::runtime::seccomp::compile(&seccomp).unwrap();
        assert!(program.instruction_count() > 100);
    }
}
