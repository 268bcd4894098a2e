//! Seccomp: the OCI `linux.seccomp` object compiled into one kernel seccomp-BPF filter.
//!
//! # Parent side, before clone: [`compile`]
//!
//! Validates the whole object, naming the JSON field at fault
//! (`linux.seccomp.syscalls[3].args[0].index: ...`), resolves system call names with the
//! table generated from the kernel headers (`seccomp_syscalls.rs`, made by
//! `scripts/gen-syscall-table.sh`), and returns a [`SeccompProgram`]: the BPF instructions,
//! the seccomp(2) flags, the names it skipped and notes for the caller to log at debug level.
//!
//! # Child side, as late as possible before exec: [`install`]
//!
//! Loads the filter with seccomp(2) `SECCOMP_SET_MODE_FILTER`. The kernel accepts it only
//! from a process that has `no_new_privs` set or holds `CAP_SYS_ADMIN` in its user
//! namespace, so the caller must follow one of two orders (as runc does):
//! - `process.noNewPrivileges` true: drop capabilities, switch user, set `no_new_privs`, then
//!   call [`install`] last, so that the runtime's own system calls after it are few;
//! - `process.noNewPrivileges` false: call [`install`] *before* dropping capabilities and
//!   switching user (they clear `CAP_SYS_ADMIN`); the profile then also governs capset(2),
//!   setuid(2), setgroups(2) and prctl(2) made after it.
//!
//! Every system call the child makes after [`install`] is filtered: waiting for `start` on
//! the sync channel (read/write/close/poll), `startContainer` hooks, and execve(2). A profile
//! that denies those stops the container from starting, as with runc. [`install`] does not
//! touch `dumpable`; keep the process dumpable if a tracer is meant to receive
//! `SCMP_ACT_TRACE` events (ptrace needs it). If [`install`] fails the child must exit without
//! exec.
//!
//! # Why a small BPF generator of our own rather than seccompiler's filters
//!
//! seccompiler 0.5 builds filters with a single match action. Expressing a profile with it
//! takes one filter per distinct action stacked on each other, and stacking has costs that
//! one filter does not:
//! - every filter after the first is loaded with seccomp(2), which the filters installed
//!   before it already govern: a profile that denies seccomp(2) itself (as one recorded from
//!   an application's own calls may) can break the installation half way;
//! - among stacked filters the kernel picks the strongest action, so overlapping entries
//!   could not follow the listing order the runtime spec and runc users expect;
//! - its architecture check kills foreign-arch calls but it never checks the x32 bit, so an
//!   x32 system call (number | 0x40000000, arch x86_64) would bypass a deny list;
//! - its `MaskedEq` compares `arg & mask` with `valueTwo & mask`, not with `valueTwo` as
//!   libseccomp does; and it cannot express `SCMP_ACT_NOTIFY` later.
//!
//! The generator below is one linear pass with an assembler that resolves labels; it
//! emits a single program:
//! 1. load `seccomp_data.arch`; not the native arch: kill the process;
//! 2. (x86_64) the x32 bit set in the number: kill the process;
//! 3. one `jeq nr` per system call that has a rule, jumping to that call's rule chain;
//!    no match: `defaultAction`;
//! 4. the chains: each rule's argument comparisons (64-bit, in two 32-bit halves), then its
//!    action; a failed comparison falls through to the next rule, the last to the default.
//!
//! Steps 1-3 only read the number and the arch, which lets the kernel's seccomp action cache
//! (Linux 5.11+) skip the filter entirely for calls that are always allowed.
//!
//! # Semantics
//!
//! - The first entry of `syscalls` that matches a call (name and all its `args`) decides; an
//!   entry whose action equals the default is kept (it still shadows later entries). runc
//!   (libseccomp) drops such entries instead and ranks overlapping entries its own way; the
//!   profiles Docker and Podman send have no overlapping entries, so both agree on them.
//! - Several `args` in one entry must all hold (AND), also when they compare the same
//!   argument (runc turns those into OR); several entries for one call are alternatives (OR).
//! - Comparisons are unsigned and 64 bits wide, as libseccomp does on 64-bit architectures.
//!   `SCMP_CMP_MASKED_EQ` holds when `arg & value == valueTwo`; `valueTwo` is ignored by the
//!   other operators.
//! - `SCMP_ACT_KILL` is `SCMP_ACT_KILL_THREAD`; `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE` take
//!   `errnoRet` (`defaultErrnoRet` for the default), EPERM when absent (runc and libseccomp);
//!   `errnoRet` is ignored for other actions. Without a tracer, `SCMP_ACT_TRACE` makes the
//!   call fail with ENOSYS (kernel behavior).
//! - A name the table does not know is skipped ([`SeccompProgram::skipped_syscalls`]), as
//!   runc does for calls its libseccomp does not know.
//! - Only the native architecture is translated. `architectures` may list x86_64, x86 and x32
//!   (Docker and Podman list all three) and aarch64 and arm; a call made through another ABI
//!   than the native one (i386 `int 0x80`, x32, arm32 compat) kills the process with SIGSYS;
//!   on x86_64 that is any number with the x32 bit 0x40000000 set, -1 included. Any other
//!   architecture is an error.
//! - Flags: `SECCOMP_FILTER_FLAG_LOG`, `SECCOMP_FILTER_FLAG_SPEC_ALLOW` and
//!   `SECCOMP_FILTER_FLAG_TSYNC` go to seccomp(2); `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`
//!   too when an action is `SCMP_ACT_NOTIFY`, else it is noted and not passed (the kernel
//!   takes it only with a notify listener).
//! - `SCMP_ACT_NOTIFY`: the filter is loaded with `SECCOMP_FILTER_FLAG_NEW_LISTENER`; the
//!   container process passes the listener to berth, which sends it with the container
//!   process state to the agent at `listenerPath` (runtime spec, "Seccomp notify") before the
//!   process goes on. It cannot be the default action, nor apply to the calls that pass the
//!   listener on (see `CALLS_PASSING_THE_LISTENER`).
//!
//! Not supported: runc's trick of answering ENOSYS for calls newer than the profile is not done.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

// Generated; only the running machine's table is used.
#[rustfmt::skip]
#[allow(dead_code)]
#[path = "seccomp_syscalls.rs"]
mod syscall_table;

/// A compiled `linux.seccomp`: made by [`compile`] in the parent, loaded by [`install`] in
/// the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompProgram {
    instructions: Vec<BpfInstruction>,
    /// `SECCOMP_FILTER_FLAG_*` bits for seccomp(2).
    flags: libc::c_ulong,
    skipped_syscalls: Vec<String>,
    notes: Vec<String>,
    /// Where the notify listener goes (`listenerPath`), when an action is `SCMP_ACT_NOTIFY`.
    listener: Option<NotifyListener>,
}

/// The seccomp agent's socket and the opaque string it is given with the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyListener {
    pub path: std::path::PathBuf,
    pub metadata: String,
}

impl SeccompProgram {
    /// System call names of `linux.seccomp.syscalls` that the table does not know, each once,
    /// in the order they first appear. Their entries were skipped for those names.
    pub fn skipped_syscalls(&self) -> &[String] {
        &self.skipped_syscalls
    }

    /// What was accepted but not translated (foreign architectures, flags without effect),
    /// one sentence each, naming the field.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The agent that gets the notify listener, when the profile uses `SCMP_ACT_NOTIFY`.
    pub fn listener(&self) -> Option<&NotifyListener> {
        self.listener.as_ref()
    }

    /// The number of BPF instructions of the filter (the kernel takes at most 4096).
    pub fn instruction_count(&self) -> usize {
        self.instructions.len()
    }
}

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BpfInstruction {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// The kernel's `struct sock_fprog`, pointing at a program for seccomp(2).
#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const BpfInstruction,
}

const LOAD_WORD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const AND_CONSTANT: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JUMP_ALWAYS: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JUMP_IF_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JUMP_IF_GREATER: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JUMP_IF_GREATER_OR_EQUAL: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JUMP_IF_ANY_BIT: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RETURN_CONSTANT: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets in the kernel's `struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }`.
const SYSCALL_NUMBER_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const ARGS_OFFSET: u32 = 16;

/// The kernel's limit on one filter (`BPF_MAXINSNS`).
const MAX_INSTRUCTIONS: usize = 4096;
/// Conditions of one entry; each compiles to at most 7 instructions and a failed one jumps
/// past the rest of its entry with an 8-bit offset.
const MAX_CONDITIONS_PER_ENTRY: usize = 32;
/// x86_64's marker of x32 system calls (`__X32_SYSCALL_BIT`).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// What berth knows of the machine it runs on.
struct NativeArch {
    /// `AUDIT_ARCH_*`, as the kernel puts it in `seccomp_data.arch` for native calls.
    audit_arch: u32,
    /// Native-arch system calls with this bit in the number belong to another ABI (x32).
    foreign_abi_bit: Option<u32>,
    name: &'static str,
    syscalls: &'static [(&'static str, u32)],
    /// `architectures` values for this machine: the native one first, then compat ABIs whose
    /// calls the filter kills.
    own: &'static [Arch],
}

#[cfg(target_arch = "x86_64")]
const NATIVE: Option<NativeArch> = Some(NativeArch {
    audit_arch: 0xc000_003e, // AUDIT_ARCH_X86_64
    foreign_abi_bit: Some(X32_SYSCALL_BIT),
    name: "x86_64",
    syscalls: syscall_table::X86_64,
    own: &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
});

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
const NATIVE: Option<NativeArch> = Some(NativeArch {
    audit_arch: 0xc000_00b7, // AUDIT_ARCH_AARCH64
    foreign_abi_bit: None,
    name: "aarch64",
    syscalls: syscall_table::AARCH64,
    own: &[Arch::ScmpArchAarch64, Arch::ScmpArchArm],
});

#[cfg(not(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_endian = "little")
)))]
const NATIVE: Option<NativeArch> = None;

/// `architectures` values accepted on every machine (the others are errors).
const ACCEPTED_ARCHES: [Arch; 6] = [
    Arch::ScmpArchNative,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX86,
    Arch::ScmpArchX32,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchArm,
];

/// The number of a system call on this machine, if the table knows the name.
fn syscall_number(table: &[(&str, u32)], name: &str) -> Option<u32> {
    table
        .binary_search_by(|(known, _)| (*known).cmp(name))
        .ok()
        .map(|index| table[index].1)
}

/// What the filter returns for a call; `u16` is the `SECCOMP_RET_DATA` part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Action {
    KillProcess,
    KillThread,
    Trap,
    Errno(u16),
    Trace(u16),
    Log,
    Allow,
    Notify,
}

impl Action {
    /// `errno_field` names the action's errno value for messages.
    fn from_spec(
        action: LinuxSeccompAction,
        errno_ret: Option<u32>,
        errno_field: &str,
    ) -> Result<Self> {
        let data = || -> Result<u16> {
            match errno_ret {
                // runc and libseccomp default to EPERM for both ERRNO and TRACE.
                None => Ok(libc::EPERM as u16),
                Some(value) => u16::try_from(value).map_err(|_| {
                    anyhow::anyhow!(
                        "{errno_field}: {value} does not fit in the 16 bits the kernel passes on (SECCOMP_RET_DATA)"
                    )
                }),
            }
        };
        Ok(match action {
            LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
                Action::KillThread
            }
            LinuxSeccompAction::ScmpActKillProcess => Action::KillProcess,
            LinuxSeccompAction::ScmpActTrap => Action::Trap,
            LinuxSeccompAction::ScmpActErrno => Action::Errno(data()?),
            LinuxSeccompAction::ScmpActTrace => Action::Trace(data()?),
            LinuxSeccompAction::ScmpActLog => Action::Log,
            LinuxSeccompAction::ScmpActAllow => Action::Allow,
            LinuxSeccompAction::ScmpActNotify => Action::Notify,
        })
    }

    /// The filter's return value (`SECCOMP_RET_*`).
    fn return_value(self) -> u32 {
        match self {
            Action::KillProcess => libc::SECCOMP_RET_KILL_PROCESS,
            Action::KillThread => libc::SECCOMP_RET_KILL_THREAD,
            Action::Trap => libc::SECCOMP_RET_TRAP,
            Action::Errno(errno) => libc::SECCOMP_RET_ERRNO | u32::from(errno),
            Action::Trace(message) => libc::SECCOMP_RET_TRACE | u32::from(message),
            Action::Log => libc::SECCOMP_RET_LOG,
            Action::Allow => libc::SECCOMP_RET_ALLOW,
            Action::Notify => libc::SECCOMP_RET_USER_NOTIF,
        }
    }
}

/// How one argument is compared; all comparisons are unsigned 64-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Comparison {
    NotEqual(u64),
    Less(u64),
    LessOrEqual(u64),
    Equal(u64),
    GreaterOrEqual(u64),
    Greater(u64),
    /// `arg & mask == value`.
    MaskedEqual {
        mask: u64,
        value: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ArgCondition {
    /// 0 to 5.
    index: u8,
    comparison: Comparison,
}

impl ArgCondition {
    /// `field` names the `args[i]` object for messages.
    fn from_spec(arg: &LinuxSeccompArg, field: &str) -> Result<Self> {
        let index = match u8::try_from(arg.index()) {
            Ok(index) if index <= 5 => index,
            _ => bail!(
                "{field}.index: {} is out of range: a system call has arguments 0 to 5",
                arg.index()
            ),
        };
        let value = arg.value();
        let comparison = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => Comparison::NotEqual(value),
            LinuxSeccompOperator::ScmpCmpLt => Comparison::Less(value),
            LinuxSeccompOperator::ScmpCmpLe => Comparison::LessOrEqual(value),
            LinuxSeccompOperator::ScmpCmpEq => Comparison::Equal(value),
            LinuxSeccompOperator::ScmpCmpGe => Comparison::GreaterOrEqual(value),
            LinuxSeccompOperator::ScmpCmpGt => Comparison::Greater(value),
            // libseccomp's SCMP_CMP_MASKED_EQ: `value` is the mask, `valueTwo` the datum.
            LinuxSeccompOperator::ScmpCmpMaskedEq => Comparison::MaskedEqual {
                mask: value,
                value: arg.value_two().unwrap_or(0),
            },
        };
        Ok(ArgCondition { index, comparison })
    }
}

/// One entry of `syscalls` as it applies to one system call: all conditions hold → action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Rule {
    conditions: Vec<ArgCondition>,
    action: Action,
}

/// Validate `seccomp` and compile it for the machine berth runs on (see the module
/// documentation for the semantics). Errors name the field at fault.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<SeccompProgram> {
    let Some(native) = NATIVE else {
        bail!(
            "linux.seccomp: seccomp filters are not supported on {} (berth builds them for x86_64 and aarch64)",
            std::env::consts::ARCH
        );
    };
    let mut notes = Vec::new();
    check_architectures(
        seccomp.architectures().as_deref().unwrap_or(&[]),
        &native,
        &mut notes,
    )?;
    let default_action = Action::from_spec(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    if default_action == Action::Notify {
        bail!("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action: berth's own calls between loading the filter and passing the listener on would wait for an agent that does not have it yet");
    }

    // The rule chain of each system call, in listing order: the first matching rule decides.
    let mut chains: BTreeMap<u32, Vec<Rule>> = BTreeMap::new();
    let mut skipped_syscalls: Vec<String> = Vec::new();
    for (entry_index, entry) in seccomp.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{entry_index}]");
        let action = Action::from_spec(
            entry.action(),
            entry.errno_ret(),
            &format!("{field}.errnoRet"),
        )?;
        let args = entry.args().as_deref().unwrap_or(&[]);
        if args.len() > MAX_CONDITIONS_PER_ENTRY {
            bail!(
                "{field}.args: {} conditions are more than berth compiles into one entry ({MAX_CONDITIONS_PER_ENTRY})",
                args.len()
            );
        }
        let conditions = args
            .iter()
            .enumerate()
            .map(|(arg_index, arg)| {
                ArgCondition::from_spec(arg, &format!("{field}.args[{arg_index}]"))
            })
            .collect::<Result<Vec<_>>>()?;
        if entry.names().is_empty() {
            bail!("{field}.names: empty: an entry must name at least one system call");
        }
        for (name_index, name) in entry.names().iter().enumerate() {
            if name.is_empty() {
                bail!("{field}.names[{name_index}]: an empty string is not a system call name");
            }
            let Some(number) = syscall_number(native.syscalls, name) else {
                if !skipped_syscalls.contains(name) {
                    skipped_syscalls.push(name.clone());
                }
                continue;
            };
            if action == Action::Notify && CALLS_PASSING_THE_LISTENER.contains(&name.as_str()) {
                bail!("{field}.names[{name_index}]: SCMP_ACT_NOTIFY on {name} would deadlock: berth makes that call to pass the listener to the agent");
            }
            let chain = chains.entry(number).or_default();
            // After an unconditional rule nothing later in the chain can match.
            if chain.last().is_some_and(|rule| rule.conditions.is_empty()) {
                continue;
            }
            chain.push(Rule {
                conditions: conditions.clone(),
                action,
            });
        }
    }

    let uses_notify = chains
        .values()
        .flatten()
        .any(|rule| rule.action == Action::Notify);
    let mut flags = filter_flags(
        seccomp.flags().as_deref().unwrap_or(&[]),
        uses_notify,
        &mut notes,
    );
    let listener = match (uses_notify, seccomp.listener_path()) {
        (false, _) => None,
        (true, None) => bail!(
            "linux.seccomp.listenerPath: required: an action is SCMP_ACT_NOTIFY, and the notify listener must go to an agent"
        ),
        (true, Some(path)) if !path.is_absolute() => bail!(
            "linux.seccomp.listenerPath: {} is not an absolute path",
            path.display()
        ),
        (true, Some(path)) => {
            flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
            Some(NotifyListener {
                path: path.clone(),
                metadata: seccomp.listener_metadata().clone().unwrap_or_default(),
            })
        }
    };
    let instructions = generate(&native, default_action, &chains)?;
    if instructions.len() > MAX_INSTRUCTIONS {
        bail!(
            "linux.seccomp: the profile compiles to {} BPF instructions; the kernel accepts at most {MAX_INSTRUCTIONS} in one filter",
            instructions.len()
        );
    }
    Ok(SeccompProgram {
        instructions,
        flags,
        skipped_syscalls,
        notes,
        listener,
    })
}

/// Check `linux.seccomp.architectures` and note those whose calls the filter does not
/// translate.
fn check_architectures(
    arches: &[Arch],
    native: &NativeArch,
    notes: &mut Vec<String>,
) -> Result<()> {
    for (index, arch) in arches.iter().enumerate() {
        let field = format!("linux.seccomp.architectures[{index}]");
        if !ACCEPTED_ARCHES.contains(arch) {
            bail!(
                "{field}: {arch} is not supported (berth accepts SCMP_ARCH_X86_64, SCMP_ARCH_X86, SCMP_ARCH_X32, SCMP_ARCH_AARCH64 and SCMP_ARCH_ARM, and filters the native {} system calls)",
                native.name
            );
        }
        if *arch == Arch::ScmpArchNative || *arch == native.own[0] {
            continue;
        }
        if native.own.contains(arch) {
            notes.push(format!(
                "{field}: {arch} system calls are not translated: a process making one is killed with SIGSYS"
            ));
        } else {
            notes.push(format!(
                "{field}: {arch} ignored: no such system call reaches a filter on this {} machine",
                native.name
            ));
        }
    }
    Ok(())
}

/// Sends the notify `listener` to the seccomp agent: one message on a new connection to
/// `listenerPath`, holding the container process state (runtime spec, "Seccomp") as JSON and
/// the listener as SCM_RIGHTS, named by `fds`.
pub fn send_to_agent(
    agent: &NotifyListener,
    listener: std::os::fd::BorrowedFd,
    pid: i32,
    state: serde_json::Value,
) -> Result<()> {
    let message = serde_json::json!({
        "ociVersion": state["ociVersion"].clone(),
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": agent.metadata,
        "state": state,
    });
    let socket = std::os::unix::net::UnixStream::connect(&agent.path).with_context(|| {
        format!(
            "linux.seccomp.listenerPath: cannot connect to the seccomp agent at {}",
            agent.path.display()
        )
    })?;
    crate::runtime::tty::send_fd(
        std::os::fd::AsFd::as_fd(&socket),
        listener,
        &message.to_string(),
    )
    .with_context(|| {
        format!(
            "linux.seccomp.listenerPath: cannot send the listener to {}",
            agent.path.display()
        )
    })
}

/// The calls berth makes between loading a filter and the agent holding its listener
/// (sending the listener over the sync channel and waiting for the reply): notifying one of
/// them would wait forever.
const CALLS_PASSING_THE_LISTENER: &[&str] = &["sendmsg", "sendto", "recvmsg", "recvfrom"];

/// The seccomp(2) flags for `linux.seccomp.flags`.
fn filter_flags(
    flags: &[LinuxSeccompFilterFlag],
    uses_notify: bool,
    notes: &mut Vec<String>,
) -> libc::c_ulong {
    let mut bits = 0;
    for (index, flag) in flags.iter().enumerate() {
        bits |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv if uses_notify => {
                libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                // The kernel rejects it without SECCOMP_FILTER_FLAG_NEW_LISTENER.
                notes.push(format!(
                    "linux.seccomp.flags[{index}]: {flag} has no effect without SCMP_ACT_NOTIFY"
                ));
                0
            }
        };
    }
    bits
}

/// Emit the filter: arch check, dispatch on the system call number, rule chains.
fn generate(
    native: &NativeArch,
    default_action: Action,
    chains: &BTreeMap<u32, Vec<Rule>>,
) -> Result<Vec<BpfInstruction>> {
    let mut asm = Assembler::default();

    // Calls through another ABI are killed right here (conditional jumps are short).
    let native_arch = asm.new_label();
    asm.load(ARCH_OFFSET);
    asm.jump(
        JUMP_IF_EQUAL,
        native.audit_arch,
        Target::To(native_arch),
        Target::Next,
    );
    asm.ret(libc::SECCOMP_RET_KILL_PROCESS);
    asm.place(native_arch);
    asm.load(SYSCALL_NUMBER_OFFSET);
    if let Some(bit) = native.foreign_abi_bit {
        let native_abi = asm.new_label();
        asm.jump(JUMP_IF_ANY_BIT, bit, Target::Next, Target::To(native_abi));
        asm.ret(libc::SECCOMP_RET_KILL_PROCESS);
        asm.place(native_abi);
    }

    // Calls with identical chains (most often "allow") share one copy of it.
    let mut chain_labels: HashMap<&[Rule], Label> = HashMap::new();
    let mut chain_order: Vec<(&[Rule], Label)> = Vec::new();
    for (&number, chain) in chains {
        let same_as_no_rule = matches!(chain.as_slice(),
            [rule] if rule.conditions.is_empty() && rule.action == default_action);
        if same_as_no_rule {
            continue;
        }
        let chain_label = *chain_labels.entry(chain.as_slice()).or_insert_with(|| {
            let label = asm.new_label();
            chain_order.push((chain.as_slice(), label));
            label
        });
        let next_number = asm.new_label();
        asm.jump(JUMP_IF_EQUAL, number, Target::Next, Target::To(next_number));
        asm.goto(chain_label);
        asm.place(next_number);
    }
    asm.ret(default_action.return_value());

    for (chain, label) in chain_order {
        asm.place(label);
        for rule in chain {
            let next_rule = asm.new_label();
            for condition in &rule.conditions {
                emit_condition(&mut asm, condition, next_rule);
            }
            asm.ret(rule.action.return_value());
            asm.place(next_rule);
        }
        if !chain.last().is_some_and(|rule| rule.conditions.is_empty()) {
            asm.ret(default_action.return_value());
        }
    }
    asm.finish()
}

/// Emit one 64-bit comparison of an argument: fall through when it holds, jump to `fail`
/// when not. BPF words are 32 bits, so the high halves are compared first and the low halves
/// only when the high halves do not decide.
fn emit_condition(asm: &mut Assembler, condition: &ArgCondition, fail: Label) {
    // x86_64 and aarch64 are little-endian: the low half comes first.
    let low_offset = ARGS_OFFSET + 8 * u32::from(condition.index);
    let high_offset = low_offset + 4;
    let high = |value: u64| (value >> 32) as u32;
    let low = |value: u64| value as u32;
    let fail = Target::To(fail);
    let next = Target::Next;
    let holds = asm.new_label();
    let hold = Target::To(holds);
    match condition.comparison {
        Comparison::Equal(value) => {
            asm.load(high_offset);
            asm.jump(JUMP_IF_EQUAL, high(value), next, fail);
            asm.load(low_offset);
            asm.jump(JUMP_IF_EQUAL, low(value), next, fail);
        }
        Comparison::NotEqual(value) => {
            asm.load(high_offset);
            asm.jump(JUMP_IF_EQUAL, high(value), next, hold);
            asm.load(low_offset);
            asm.jump(JUMP_IF_EQUAL, low(value), fail, next);
        }
        Comparison::Greater(value) | Comparison::GreaterOrEqual(value) => {
            let low_jump = if matches!(condition.comparison, Comparison::Greater(_)) {
                JUMP_IF_GREATER
            } else {
                JUMP_IF_GREATER_OR_EQUAL
            };
            asm.load(high_offset);
            asm.jump(JUMP_IF_GREATER, high(value), hold, next);
            asm.jump(JUMP_IF_EQUAL, high(value), next, fail);
            asm.load(low_offset);
            asm.jump(low_jump, low(value), next, fail);
        }
        Comparison::Less(value) | Comparison::LessOrEqual(value) => {
            // "arg < v" fails when "arg >= v" holds, and "arg <= v" when "arg > v" does.
            let low_jump = if matches!(condition.comparison, Comparison::Less(_)) {
                JUMP_IF_GREATER_OR_EQUAL
            } else {
                JUMP_IF_GREATER
            };
            asm.load(high_offset);
            asm.jump(JUMP_IF_GREATER, high(value), fail, next);
            asm.jump(JUMP_IF_EQUAL, high(value), next, hold);
            asm.load(low_offset);
            asm.jump(low_jump, low(value), fail, next);
        }
        Comparison::MaskedEqual { mask, value } => {
            // A `value` bit outside `mask` can never match, as with libseccomp.
            asm.load(high_offset);
            asm.and(high(mask));
            asm.jump(JUMP_IF_EQUAL, high(value), next, fail);
            asm.load(low_offset);
            asm.and(low(mask));
            asm.jump(JUMP_IF_EQUAL, low(value), next, fail);
        }
    }
    asm.place(holds);
}

/// A position in the program, known once the program is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Label(usize);

/// Where a conditional jump goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The next instruction.
    Next,
    To(Label),
}

#[derive(Debug)]
enum Item {
    Instruction(BpfInstruction),
    Jump {
        code: u16,
        k: u32,
        if_true: Target,
        if_false: Target,
    },
    Goto(Label),
    Place(Label),
}

/// Collects instructions with symbolic forward jumps and resolves them in [`Self::finish`].
/// Conditional jumps have 8-bit offsets, so they only go to nearby labels; far ones use
/// [`Self::goto`] (32-bit offset).
#[derive(Debug, Default)]
struct Assembler {
    items: Vec<Item>,
    label_count: usize,
}

impl Assembler {
    fn new_label(&mut self) -> Label {
        self.label_count += 1;
        Label(self.label_count - 1)
    }

    fn place(&mut self, label: Label) {
        self.items.push(Item::Place(label));
    }

    fn instruction(&mut self, code: u16, k: u32) {
        self.items.push(Item::Instruction(BpfInstruction {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }

    /// Load the 32-bit word at `offset` of `seccomp_data`.
    fn load(&mut self, offset: u32) {
        self.instruction(LOAD_WORD, offset);
    }

    fn and(&mut self, mask: u32) {
        self.instruction(AND_CONSTANT, mask);
    }

    fn ret(&mut self, value: u32) {
        self.instruction(RETURN_CONSTANT, value);
    }

    fn jump(&mut self, code: u16, k: u32, if_true: Target, if_false: Target) {
        self.items.push(Item::Jump {
            code,
            k,
            if_true,
            if_false,
        });
    }

    fn goto(&mut self, label: Label) {
        self.items.push(Item::Goto(label));
    }

    fn finish(self) -> Result<Vec<BpfInstruction>> {
        let mut positions = vec![None; self.label_count];
        let mut position = 0;
        for item in &self.items {
            match item {
                Item::Place(label) => positions[label.0] = Some(position),
                _ => position += 1,
            }
        }
        let length = position;
        // Offsets count from the instruction after the jump; BPF only jumps forward.
        let distance = |label: Label, from: usize| -> Result<usize> {
            match positions[label.0] {
                Some(to) if to > from && to < length => Ok(to - from - 1),
                _ => bail!("linux.seccomp: internal error: BPF jump from {from} to a bad label"),
            }
        };
        let mut program = Vec::with_capacity(length);
        for item in self.items {
            let from = program.len();
            let instruction = match item {
                Item::Place(_) => continue,
                Item::Instruction(instruction) => instruction,
                Item::Jump {
                    code,
                    k,
                    if_true,
                    if_false,
                } => {
                    let offset = |target: Target| -> Result<u8> {
                        let offset = match target {
                            Target::Next => 0,
                            Target::To(label) => distance(label, from)?,
                        };
                        u8::try_from(offset).context(
                            "linux.seccomp: internal error: a conditional BPF jump is too far",
                        )
                    };
                    BpfInstruction {
                        code,
                        jt: offset(if_true)?,
                        jf: offset(if_false)?,
                        k,
                    }
                }
                Item::Goto(label) => BpfInstruction {
                    code: JUMP_ALWAYS,
                    jt: 0,
                    jf: 0,
                    k: u32::try_from(distance(label, from)?)?,
                },
            };
            program.push(instruction);
        }
        Ok(program)
    }
}

/// Load the compiled filter into the calling thread (see the module documentation for where
/// the caller must call it). The kernel copies the program; `program` may be dropped after.
pub fn install(program: &SeccompProgram) -> Result<Option<OwnedFd>> {
    let fprog = SockFprog {
        // compile() keeps programs within 4096 instructions.
        len: program.instructions.len() as libc::c_ushort,
        filter: program.instructions.as_ptr(),
    };
    // SAFETY: seccomp(2) reads `fprog` and the instructions it points to during the call only;
    // both outlive it and the layout matches the kernel's struct sock_fprog / sock_filter.
    let result = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            program.flags,
            &fprog as *const SockFprog,
        )
    };
    if program.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 && result >= 0 {
        // SAFETY: with NEW_LISTENER seccomp(2) returns a new fd that nothing else owns.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(result as RawFd) }));
    }
    if result == 0 {
        return Ok(None);
    }
    if result > 0 {
        bail!("seccomp(2): thread {result} could not be synchronized to the filter (SECCOMP_FILTER_FLAG_TSYNC)");
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        // Kernels before 3.17 lack seccomp(2) but take flag-less filters through prctl(2).
        Some(libc::ENOSYS) if program.flags == 0 => {
            // SAFETY: as above: prctl(2) reads `fprog` and the instructions during the call.
            let result = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const SockFprog,
                )
            };
            if result != 0 {
                let error = std::io::Error::last_os_error();
                bail!("prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER): {error}");
            }
            Ok(None)
        }
        Some(libc::EACCES) => bail!(
            "seccomp(2): {error}: the process has neither no_new_privs nor CAP_SYS_ADMIN; load the filter after prctl(PR_SET_NO_NEW_PRIVS) or before dropping capabilities"
        ),
        Some(libc::EINVAL | libc::ENOSYS) if program.flags != 0 => bail!(
            "seccomp(2) with flags {}: {error}: the running kernel may not support one of linux.seccomp.flags",
            flag_names(program.flags)
        ),
        _ => bail!("seccomp(2) SECCOMP_SET_MODE_FILTER: {error}"),
    }
}

/// `SECCOMP_FILTER_FLAG_*` names of `bits`, for messages.
fn flag_names(bits: libc::c_ulong) -> String {
    [
        (libc::SECCOMP_FILTER_FLAG_TSYNC, "SECCOMP_FILTER_FLAG_TSYNC"),
        (libc::SECCOMP_FILTER_FLAG_LOG, "SECCOMP_FILTER_FLAG_LOG"),
        (
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        ),
        (
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            "SECCOMP_FILTER_FLAG_NEW_LISTENER",
        ),
        (
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        ),
    ]
    .iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, name)| *name)
    .collect::<Vec<_>>()
    .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::ffi::CString;
    use std::os::unix::process::ExitStatusExt;
    use std::path::PathBuf;
    use std::process::{Command, Output};

    fn profile(value: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(value).expect("a valid linux.seccomp object")
    }

    fn compile_error(value: serde_json::Value) -> String {
        format!("{:#}", compile(&profile(value)).unwrap_err())
    }

    fn native() -> NativeArch {
        NATIVE.expect("tests run on x86_64 or aarch64")
    }

    fn number(name: &str) -> u32 {
        syscall_number(native().syscalls, name).unwrap()
    }

    /// Run a filter the way the kernel does, on one `seccomp_data`.
    fn run_filter(program: &[BpfInstruction], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (index, arg) in args.iter().enumerate() {
            data[16 + 8 * index..24 + 8 * index].copy_from_slice(&arg.to_le_bytes());
        }
        let mut accumulator = 0u32;
        let mut pc = 0usize;
        loop {
            let BpfInstruction { code, jt, jf, k } = program[pc];
            pc += 1;
            let condition = match code {
                LOAD_WORD => {
                    let at = k as usize;
                    assert!(
                        at.is_multiple_of(4) && at + 4 <= data.len(),
                        "bad load offset {at}"
                    );
                    accumulator = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                    continue;
                }
                AND_CONSTANT => {
                    accumulator &= k;
                    continue;
                }
                RETURN_CONSTANT => return k,
                JUMP_ALWAYS => {
                    pc += k as usize;
                    continue;
                }
                JUMP_IF_EQUAL => accumulator == k,
                JUMP_IF_GREATER => accumulator > k,
                JUMP_IF_GREATER_OR_EQUAL => accumulator >= k,
                JUMP_IF_ANY_BIT => accumulator & k != 0,
                other => panic!("unexpected BPF code {other:#x}"),
            };
            pc += usize::from(if condition { jt } else { jf });
        }
    }

    /// What `linux.seccomp` says about one native call, straight from the spec objects: the
    /// first entry naming the call whose args all hold, else the default. Action values come
    /// from oci-spec's own conversion, independent of [`Action`].
    fn reference_verdict(seccomp: &LinuxSeccomp, nr: u32, args: [u64; 6]) -> u32 {
        let table = native().syscalls;
        for entry in seccomp.syscalls().iter().flatten() {
            if !entry
                .names()
                .iter()
                .any(|name| syscall_number(table, name) == Some(nr))
            {
                continue;
            }
            let holds = entry.args().iter().flatten().all(|arg| {
                let (a, v) = (args[arg.index()], arg.value());
                match arg.op() {
                    LinuxSeccompOperator::ScmpCmpNe => a != v,
                    LinuxSeccompOperator::ScmpCmpLt => a < v,
                    LinuxSeccompOperator::ScmpCmpLe => a <= v,
                    LinuxSeccompOperator::ScmpCmpEq => a == v,
                    LinuxSeccompOperator::ScmpCmpGe => a >= v,
                    LinuxSeccompOperator::ScmpCmpGt => a > v,
                    LinuxSeccompOperator::ScmpCmpMaskedEq => a & v == arg.value_two().unwrap_or(0),
                }
            });
            if holds {
                return entry.action().as_u32(entry.errno_ret());
            }
        }
        seccomp.default_action().as_u32(seccomp.default_errno_ret())
    }

    /// A small deterministic generator (xorshift64*), enough to vary test profiles.
    struct Random(u64);
    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick<T: Clone>(&mut self, items: &[T]) -> T {
            items[(self.next() % items.len() as u64) as usize].clone()
        }
    }

    /// Values around the 32-bit boundaries, where split 64-bit comparisons go wrong.
    const EDGE_VALUES: [u64; 12] = [
        0,
        1,
        5,
        0x7fff_ffff,
        0x8000_0000,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0005,
        0x1_ffff_ffff,
        0x7fff_ffff_ffff_ffff,
        0x8000_0000_0000_0000,
        u64::MAX,
    ];

    #[test]
    fn generated_filter_agrees_with_the_spec_semantics() {
        let mut random = Random(0x5eed_1234_abcd_0042);
        let names = ["close", "dup", "fcntl", "read", "mkdirat"];
        let ops = [
            "SCMP_CMP_NE",
            "SCMP_CMP_LT",
            "SCMP_CMP_LE",
            "SCMP_CMP_EQ",
            "SCMP_CMP_GE",
            "SCMP_CMP_GT",
            "SCMP_CMP_MASKED_EQ",
        ];
        let actions = [
            json!({"action": "SCMP_ACT_ALLOW"}),
            json!({"action": "SCMP_ACT_ERRNO"}),
            json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 38}),
            json!({"action": "SCMP_ACT_KILL_PROCESS"}),
            json!({"action": "SCMP_ACT_KILL"}),
            json!({"action": "SCMP_ACT_TRAP"}),
            json!({"action": "SCMP_ACT_TRACE", "errnoRet": 7}),
            json!({"action": "SCMP_ACT_LOG"}),
        ];
        let near = |random: &mut Random| {
            let base = random.pick(&EDGE_VALUES);
            match random.next() % 3 {
                0 => base.wrapping_sub(1),
                1 => base,
                _ => base.wrapping_add(1),
            }
        };
        let audit_arch = native().audit_arch;
        for _ in 0..300 {
            let mut entries = Vec::new();
            for _ in 0..1 + random.next() % 6 {
                let mut entry = random.pick(&actions);
                let count = 1 + random.next() % 2;
                let entry_names: Vec<&str> = (0..count).map(|_| random.pick(&names)).collect();
                let args: Vec<_> = (0..random.next() % 4)
                    .map(|_| {
                        json!({"index": random.next() % 3, "value": near(&mut random),
                               "valueTwo": near(&mut random), "op": random.pick(&ops)})
                    })
                    .collect();
                entry["names"] = json!(entry_names);
                entry["args"] = json!(args);
                entries.push(entry);
            }
            let mut seccomp = random.pick(&actions);
            seccomp["defaultAction"] = seccomp["action"].take();
            if let Some(errno) = seccomp.get("errnoRet").cloned() {
                seccomp["defaultErrnoRet"] = errno;
            }
            seccomp["syscalls"] = json!(entries);
            let seccomp = profile(seccomp);
            let program = compile(&seccomp).unwrap();
            for _ in 0..200 {
                let nr = number(random.pick(&names));
                let args = [0; 6].map(|_: u64| near(&mut random));
                assert_eq!(
                    run_filter(&program.instructions, audit_arch, nr, args),
                    reference_verdict(&seccomp, nr, args),
                    "nr {nr} args {args:x?} profile {seccomp:?}"
                );
            }
            // Another ABI never gets the profile's verdict: it is killed.
            let foreign = run_filter(&program.instructions, 0x4000_0003, number("close"), [0; 6]);
            assert_eq!(foreign, libc::SECCOMP_RET_KILL_PROCESS);
        }
    }

    #[test]
    fn x32_system_calls_are_killed() {
        let Some(bit) = native().foreign_abi_bit else {
            return;
        };
        let seccomp = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}));
        let program = compile(&seccomp).unwrap();
        let run = |nr| run_filter(&program.instructions, native().audit_arch, nr, [0; 6]);
        assert_eq!(
            run(number("mkdir")),
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32
        );
        assert_eq!(run(number("getpid")), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(number("mkdir") | bit), libc::SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn actions_and_errno_values() {
        let verdict = |entry: serde_json::Value| {
            let mut entry = entry;
            entry["names"] = json!(["close"]);
            let program = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [entry]})))
            .unwrap();
            run_filter(
                &program.instructions,
                native().audit_arch,
                number("close"),
                [0; 6],
            )
        };
        let cases = [
            (
                json!({"action": "SCMP_ACT_KILL"}),
                libc::SECCOMP_RET_KILL_THREAD,
            ),
            (
                json!({"action": "SCMP_ACT_KILL_THREAD"}),
                libc::SECCOMP_RET_KILL_THREAD,
            ),
            (
                json!({"action": "SCMP_ACT_KILL_PROCESS"}),
                libc::SECCOMP_RET_KILL_PROCESS,
            ),
            (json!({"action": "SCMP_ACT_TRAP"}), libc::SECCOMP_RET_TRAP),
            (
                json!({"action": "SCMP_ACT_ERRNO"}),
                libc::SECCOMP_RET_ERRNO | 1,
            ),
            (
                json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 38}),
                libc::SECCOMP_RET_ERRNO | 38,
            ),
            (
                json!({"action": "SCMP_ACT_ERRNO", "errnoRet": 0}),
                libc::SECCOMP_RET_ERRNO,
            ),
            (
                json!({"action": "SCMP_ACT_TRACE"}),
                libc::SECCOMP_RET_TRACE | 1,
            ),
            (
                json!({"action": "SCMP_ACT_TRACE", "errnoRet": 99}),
                libc::SECCOMP_RET_TRACE | 99,
            ),
            (json!({"action": "SCMP_ACT_LOG"}), libc::SECCOMP_RET_LOG),
            (
                json!({"action": "SCMP_ACT_LOG", "errnoRet": 5}),
                libc::SECCOMP_RET_LOG,
            ),
        ];
        for (entry, expected) in cases {
            assert_eq!(verdict(entry.clone()), expected, "{entry}");
        }
        let default = |seccomp: serde_json::Value| {
            let program = compile(&profile(seccomp)).unwrap();
            run_filter(
                &program.instructions,
                native().audit_arch,
                number("close"),
                [0; 6],
            )
        };
        assert_eq!(
            default(json!({"defaultAction": "SCMP_ACT_ERRNO"})),
            libc::SECCOMP_RET_ERRNO | 1
        );
        assert_eq!(
            default(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38})),
            libc::SECCOMP_RET_ERRNO | 38
        );
    }

    #[test]
    fn the_first_matching_entry_decides() {
        let seccomp = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["close"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 3, "op": "SCMP_CMP_EQ"}]},
            {"names": ["close"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["close"], "action": "SCMP_ACT_ALLOW"},
        ]}));
        let program = compile(&seccomp).unwrap();
        let run = |fd| {
            run_filter(
                &program.instructions,
                native().audit_arch,
                number("close"),
                [fd, 0, 0, 0, 0, 0],
            )
        };
        assert_eq!(run(3), libc::SECCOMP_RET_ALLOW);
        assert_eq!(run(4), libc::SECCOMP_RET_KILL_PROCESS);
    }

    #[test]
    fn unknown_names_are_skipped_and_reported() {
        let seccomp = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["close", "no_such_call", "socketcall"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["no_such_call"], "action": "SCMP_ACT_ALLOW"},
        ]}));
        let program = compile(&seccomp).unwrap();
        let expected_skipped = match native().name {
            "x86_64" => vec!["no_such_call", "socketcall"],
            _ => vec!["no_such_call"],
        };
        assert_eq!(program.skipped_syscalls(), expected_skipped);
        let close = run_filter(
            &program.instructions,
            native().audit_arch,
            number("close"),
            [0; 6],
        );
        assert_eq!(close, libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn errors_name_the_field() {
        let error = compile_error(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_MIPS"]}));
        assert!(
            error.starts_with("linux.seccomp.architectures[1]: SCMP_ARCH_MIPS is not supported"),
            "{error}"
        );
        for arch in ["SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390X", "SCMP_ARCH_RISCV64"] {
            let error = compile_error(json!({"defaultAction": "SCMP_ACT_ALLOW",
                "architectures": [arch]}));
            assert!(
                error.starts_with(&format!(
                    "linux.seccomp.architectures[0]: {arch} is not supported"
                )),
                "{error}"
            );
        }
        assert_eq!(
            compile_error(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a"})),
            "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action: berth's own calls between loading the filter and passing the listener on would wait for an agent that does not have it yet"
        );
        assert_eq!(
            compile_error(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["close"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["openat"], "action": "SCMP_ACT_NOTIFY"}]})),
            "linux.seccomp.listenerPath: required: an action is SCMP_ACT_NOTIFY, and the notify listener must go to an agent"
        );
        assert_eq!(
            compile_error(
                json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "agent.sock",
                "syscalls": [{"names": ["openat"], "action": "SCMP_ACT_NOTIFY"}]})
            ),
            "linux.seccomp.listenerPath: agent.sock is not an absolute path"
        );
        assert_eq!(
            compile_error(json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a",
                "syscalls": [{"names": ["mkdir", "sendmsg"], "action": "SCMP_ACT_NOTIFY"}]})),
            "linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY on sendmsg would deadlock: berth makes that call to pass the listener to the agent"
        );
        assert_eq!(
            compile_error(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["close"], "action": "SCMP_ACT_ERRNO", "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]})),
            "linux.seccomp.syscalls[0].args[1].index: 6 is out of range: a system call has arguments 0 to 5"
        );
        let error = compile_error(json!({"defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 70000}));
        assert!(
            error.starts_with("linux.seccomp.defaultErrnoRet: 70000 does not fit"),
            "{error}"
        );
        let error = compile_error(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["close"], "action": "SCMP_ACT_TRACE", "errnoRet": 65536}]}));
        assert!(
            error.starts_with("linux.seccomp.syscalls[0].errnoRet: 65536 does not fit"),
            "{error}"
        );
        let error = compile_error(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": [], "action": "SCMP_ACT_ERRNO"}]}));
        assert!(
            error.starts_with("linux.seccomp.syscalls[0].names: empty"),
            "{error}"
        );
        let error = compile_error(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["close", ""], "action": "SCMP_ACT_ERRNO"}]}));
        assert!(
            error.starts_with("linux.seccomp.syscalls[0].names[1]: "),
            "{error}"
        );
        let many: Vec<_> = (0..40)
            .map(|_| json!({"index": 0, "value": 1, "op": "SCMP_CMP_NE"}))
            .collect();
        let error = compile_error(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["close"], "action": "SCMP_ACT_ERRNO", "args": many}]}));
        assert!(
            error.starts_with("linux.seccomp.syscalls[0].args: 40 conditions"),
            "{error}"
        );
    }

    #[test]
    fn the_longest_entry_allowed_compiles() {
        let conditions: Vec<_> = (0..MAX_CONDITIONS_PER_ENTRY)
            .map(|i| json!({"index": i % 6, "value": 1, "op": "SCMP_CMP_LE"}))
            .collect();
        let seccomp = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["close"], "action": "SCMP_ACT_ERRNO", "args": conditions}]}));
        let program = compile(&seccomp).unwrap();
        let run = |args| {
            run_filter(
                &program.instructions,
                native().audit_arch,
                number("close"),
                args,
            )
        };
        assert_eq!(run([0; 6]), libc::SECCOMP_RET_ERRNO | 1);
        assert_eq!(run([0, 0, 0, 0, 0, 2]), libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn architectures_and_flags_are_accepted_and_noted() {
        let seccomp = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                              "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_NATIVE"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                      "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"]}));
        let program = compile(&seccomp).unwrap();
        assert_eq!(
            program.flags,
            libc::SECCOMP_FILTER_FLAG_LOG
                | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
                | libc::SECCOMP_FILTER_FLAG_TSYNC
        );
        // Four foreign architectures and the flag without effect.
        assert_eq!(program.notes().len(), 5, "{:?}", program.notes());
        assert!(program
            .notes()
            .iter()
            .any(|note| note.starts_with("linux.seccomp.flags[2]: ")));
        if native().name == "x86_64" {
            assert!(program.notes().contains(&"linux.seccomp.architectures[1]: SCMP_ARCH_X86 system calls are not translated: a process making one is killed with SIGSYS".to_string()));
        }
    }

    #[test]
    fn syscall_tables_are_sorted_and_match_libc() {
        for table in [syscall_table::X86_64, syscall_table::AARCH64] {
            assert!(table.windows(2).all(|pair| pair[0].0 < pair[1].0));
        }
        let known = [
            ("read", libc::SYS_read),
            ("close", libc::SYS_close),
            ("mkdirat", libc::SYS_mkdirat),
            ("personality", libc::SYS_personality),
            ("clone3", libc::SYS_clone3),
            ("seccomp", libc::SYS_seccomp),
            ("openat2", libc::SYS_openat2),
        ];
        for (name, libc_number) in known {
            assert_eq!(i64::from(number(name)), libc_number, "{name}");
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(i64::from(number("mkdir")), libc::SYS_mkdir);
    }

    fn testdata(name: &str) -> Option<LinuxSeccomp> {
        let path = [
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/testdata")
                .join(name),
            PathBuf::from("/work/shared/testdata").join(name),
        ]
        .into_iter()
        .find(|path| path.is_file());
        let Some(path) = path else {
            eprintln!("SKIPPED: shared/testdata/{name} not found");
            return None;
        };
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        Some(profile(config["linux"]["seccomp"].clone()))
    }

    #[test]
    fn docker_and_podman_profiles_compile() {
        for name in ["docker-20.10-config.json", "podman-4.3-config.json"] {
            let Some(seccomp) = testdata(name) else {
                continue;
            };
            let program = compile(&seccomp).unwrap();
            assert!(
                program.instruction_count() < 2000,
                "{name}: {}",
                program.instruction_count()
            );
            // Both list x86 and x32 besides x86_64.
            assert_eq!(program.notes().len(), 2, "{name}: {:?}", program.notes());
            let audit_arch = native().audit_arch;
            let run = |call: &str, args| {
                run_filter(&program.instructions, audit_arch, number(call), args)
            };
            assert_eq!(run("read", [0; 6]), libc::SECCOMP_RET_ALLOW, "{name}");
            assert_eq!(
                run("personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
                libc::SECCOMP_RET_ALLOW
            );
            let default = seccomp.default_action().as_u32(seccomp.default_errno_ret());
            assert_eq!(
                run("personality", [0x1_ffff_ffff, 0, 0, 0, 0, 0]),
                default,
                "{name}"
            );
            for (call, args) in [
                ("personality", [4, 0, 0, 0, 0, 0]),
                ("clone3", [0; 6]),
                ("swapoff", [0; 6]),
            ] {
                let nr = number(call);
                assert_eq!(
                    run(call, args),
                    reference_verdict(&seccomp, nr, args),
                    "{name} {call}"
                );
            }
        }
    }

    // ---- Tests that load filters into a real kernel. ----
    //
    // The test harness is multi-threaded, so a filter is never loaded in it nor in a fork of
    // it: the test binary runs itself again for one test (`--exact`) with CHILD_PARAMETER set,
    // and that fresh process loads the filter and execs a program or probes system calls.

    const CHILD_PARAMETER: &str = "BERTH_SECCOMP_CHILD";

    /// In the re-run child: the parameter the parent passed.
    fn child_parameter() -> Option<String> {
        std::env::var(CHILD_PARAMETER).ok()
    }

    /// Run test `name` again in a child process with `parameter`; a child that has not ended
    /// after a minute is killed and the test fails.
    fn rerun_as_child(name: &str, parameter: &str) -> Output {
        let module = module_path!();
        let module = module.split_once("::").map_or(module, |(_, rest)| rest);
        let scratch =
            std::env::temp_dir().join(format!("berth-seccomp-child-{}-{name}", std::process::id()));
        let stdout_path = scratch.with_extension("stdout");
        let stderr_path = scratch.with_extension("stderr");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("{module}::{name}"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_PARAMETER, parameter)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let stdout = std::fs::read(&stdout_path).unwrap_or_default();
        let stderr = std::fs::read(&stderr_path).unwrap_or_default();
        let _ = std::fs::remove_file(&stdout_path);
        let _ = std::fs::remove_file(&stderr_path);
        let text = String::from_utf8_lossy(&stdout);
        let Some(status) = status else {
            panic!("{name} {parameter}: the child hung: {text}");
        };
        assert!(
            text.contains("running 1 test"),
            "the child ran no test: {text}"
        );
        Output {
            status,
            stdout,
            stderr,
        }
    }

    /// Load `seccomp` into this (child) process with no_new_privs set, as the runtime does.
    fn load(seccomp: &LinuxSeccomp) {
        let program = compile(seccomp).expect("compile");
        // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
            0
        );
        install(&program).expect("install");
    }

    /// Child side: load `seccomp`, then exec `argv`.
    fn load_then_exec(seccomp: &LinuxSeccomp, argv: &[&str]) -> ! {
        let args: Vec<CString> = argv.iter().map(|arg| CString::new(*arg).unwrap()).collect();
        let mut pointers: Vec<*const libc::c_char> = args.iter().map(|arg| arg.as_ptr()).collect();
        pointers.push(std::ptr::null());
        // The harness printed "test NAME ... " without a newline.
        println!();
        load(seccomp);
        // SAFETY: `pointers` is a null-terminated array of pointers into `args`, both alive.
        unsafe { libc::execv(pointers[0], pointers.as_ptr()) };
        eprintln!("execv {}: {}", argv[0], std::io::Error::last_os_error());
        // SAFETY: _exit ends the process without running the harness's teardown.
        unsafe { libc::_exit(127) }
    }

    /// Child side: load `seccomp`, run `probe`, print its lines and exit.
    fn load_then_probe(seccomp: &LinuxSeccomp, probe: impl FnOnce() -> String) -> ! {
        load(seccomp);
        // The harness printed "test NAME ... " without a newline.
        let report = format!("\n{}", probe());
        let mut written = 0;
        while written < report.len() {
            // SAFETY: writes bytes of `report`, which lives across the call.
            let count = unsafe {
                libc::write(1, report[written..].as_ptr().cast(), report.len() - written)
            };
            if count <= 0 {
                break;
            }
            written += count as usize;
        }
        // SAFETY: as in load_then_exec.
        unsafe { libc::_exit(0) }
    }

    /// The errno of a raw system call (0 when it succeeded).
    fn errno_of(nr: u32, args: [u64; 3]) -> i32 {
        // SAFETY: the probed calls (close, fcntl, personality, clone3, swapoff, getpid) take
        // integers or accept null pointers; the values are chosen so none succeeds harmfully.
        let result =
            unsafe { libc::syscall(libc::c_long::from(nr as i32), args[0], args[1], args[2]) };
        if result < 0 {
            std::io::Error::last_os_error().raw_os_error().unwrap()
        } else {
            0
        }
    }

    fn probe_lines(output: &Output) -> Vec<String> {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("probe ").map(str::to_string))
            .collect()
    }

    fn busybox() -> Option<&'static str> {
        let path = "/bin/busybox";
        if std::path::Path::new(path).is_file() {
            Some(path)
        } else {
            eprintln!("SKIPPED: {path} not found (apt-get install -y busybox-static)");
            None
        }
    }

    #[test]
    fn kernel_docker_and_podman_profiles_run_sh() {
        if let Some(name) = child_parameter() {
            load_then_exec(&testdata(&name).unwrap(), &["/bin/sh", "-c", "echo ok"]);
        }
        for name in ["docker-20.10-config.json", "podman-4.3-config.json"] {
            if testdata(name).is_none() {
                continue;
            }
            let output = rerun_as_child("kernel_docker_and_podman_profiles_run_sh", name);
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{name}: {output:?}");
            assert!(stdout.lines().any(|line| line == "ok"), "{name}: {stdout}");
        }
    }

    #[test]
    fn kernel_docker_profile_arguments_and_errno() {
        let name = "docker-20.10-config.json";
        let Some(seccomp) = testdata(name) else {
            return;
        };
        let probes: [(&str, u64); 6] = [
            ("personality", 0xffff_ffff),
            ("personality", 0x1_ffff_ffff),
            ("personality", 4),
            ("personality", 0),
            ("clone3", 0),
            ("swapoff", 0),
        ];
        if child_parameter().is_some() {
            load_then_probe(&seccomp, || {
                probes
                    .iter()
                    .map(|(call, arg)| {
                        format!(
                            "probe {call} {arg:#x} {}\n",
                            errno_of(number(call), [*arg, 0, 0])
                        )
                    })
                    .collect()
            });
        }
        let output = rerun_as_child("kernel_docker_profile_arguments_and_errno", "1");
        assert!(output.status.success(), "{output:?}");
        let expected: Vec<String> = probes
            .iter()
            .zip([0, libc::EPERM, libc::EPERM, 0, libc::ENOSYS, libc::EPERM])
            .map(|((call, arg), errno)| format!("{call} {arg:#x} {errno}"))
            .collect();
        assert_eq!(probe_lines(&output), expected);
    }

    #[test]
    fn kernel_errno_rule_denies_mkdir() {
        let seccomp = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}));
        if let Some(dir) = child_parameter() {
            load_then_exec(&seccomp, &["/bin/busybox", "mkdir", &dir]);
        }
        let Some(_) = busybox() else { return };
        let dir = std::env::temp_dir().join(format!("berth-seccomp-mkdir-{}", std::process::id()));
        let output = rerun_as_child("kernel_errno_rule_denies_mkdir", dir.to_str().unwrap());
        let exists = dir.exists();
        let _ = std::fs::remove_dir(&dir);
        assert!(!output.status.success(), "{output:?}");
        assert!(!exists, "{} was made", dir.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("Function not implemented"), "{stderr}");
    }

    #[test]
    fn kernel_kill_process_rule_kills_with_sigsys() {
        let seccomp = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]}));
        if let Some(dir) = child_parameter() {
            load_then_exec(&seccomp, &["/bin/busybox", "mkdir", &dir]);
        }
        let Some(_) = busybox() else { return };
        let dir = std::env::temp_dir().join(format!("berth-seccomp-kill-{}", std::process::id()));
        let output = rerun_as_child(
            "kernel_kill_process_rule_kills_with_sigsys",
            dir.to_str().unwrap(),
        );
        let exists = dir.exists();
        let _ = std::fs::remove_dir(&dir);
        assert_eq!(output.status.signal(), Some(libc::SIGSYS), "{output:?}");
        assert!(!exists, "{} was made", dir.display());
    }

    #[test]
    fn kernel_actions() {
        // Each action on mkdir(2), seen through `busybox mkdir`: how it ends and what it says.
        // A single-threaded program is needed: KILL_THREAD in a thread of the harness would
        // leave the process waiting for that thread.
        let cases: [(serde_json::Value, Result<&str, i32>); 6] = [
            (json!({"action": "SCMP_ACT_KILL"}), Err(libc::SIGSYS)),
            (json!({"action": "SCMP_ACT_KILL_THREAD"}), Err(libc::SIGSYS)),
            (json!({"action": "SCMP_ACT_TRAP"}), Err(libc::SIGSYS)),
            (json!({"action": "SCMP_ACT_LOG"}), Ok("")),
            // No tracer: the kernel fails the call with ENOSYS.
            (
                json!({"action": "SCMP_ACT_TRACE"}),
                Ok("Function not implemented"),
            ),
            (
                json!({"action": "SCMP_ACT_ERRNO"}),
                Ok("Operation not permitted"),
            ),
        ];
        let seccomp_for = |entry: &serde_json::Value| {
            let mut entry = entry.clone();
            entry["names"] = json!(["mkdir", "mkdirat"]);
            profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [entry]}))
        };
        if let Some(parameter) = child_parameter() {
            let (index, dir) = parameter.split_once(' ').unwrap();
            let seccomp = seccomp_for(&cases[index.parse::<usize>().unwrap()].0);
            load_then_exec(&seccomp, &["/bin/busybox", "mkdir", dir]);
        }
        let Some(_) = busybox() else { return };
        for (index, (entry, expected)) in cases.iter().enumerate() {
            let dir = std::env::temp_dir().join(format!(
                "berth-seccomp-action-{}-{index}",
                std::process::id()
            ));
            let output = rerun_as_child("kernel_actions", &format!("{index} {}", dir.display()));
            let made = std::fs::remove_dir(&dir).is_ok();
            let stderr = String::from_utf8_lossy(&output.stderr);
            match expected {
                Err(signal) => {
                    assert_eq!(output.status.signal(), Some(*signal), "{entry}: {output:?}");
                    assert!(!made, "{entry}");
                }
                Ok("") => assert!(output.status.success() && made, "{entry}: {output:?}"),
                Ok(message) => {
                    assert_eq!(output.status.code(), Some(1), "{entry}: {output:?}");
                    assert!(stderr.contains(message) && !made, "{entry}: {stderr}");
                }
            }
        }
    }

    #[test]
    fn kernel_flags_are_passed_and_one_filter_is_loaded() {
        let seccomp = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                      "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
                         {"names": ["getppid"], "action": "SCMP_ACT_LOG"}]}));
        if child_parameter().is_some() {
            load_then_exec(
                &seccomp,
                &["/bin/busybox", "grep", "^Seccomp", "/proc/self/status"],
            );
        }
        let Some(_) = busybox() else { return };
        let output = rerun_as_child("kernel_flags_are_passed_and_one_filter_is_loaded", "1");
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.lines().any(|line| line == "Seccomp:\t2"), "{stdout}");
        assert!(
            stdout.lines().any(|line| line == "Seccomp_filters:\t1"),
            "{stdout}"
        );
    }

    #[test]
    fn kernel_x32_system_call_is_killed() {
        let Some(bit) = native().foreign_abi_bit else {
            return;
        };
        let seccomp = profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
        if child_parameter().is_some() {
            load_then_probe(&seccomp, || {
                format!("probe {}\n", errno_of(number("getpid") | bit, [0; 3]))
            });
        }
        let output = rerun_as_child("kernel_x32_system_call_is_killed", "1");
        assert_eq!(output.status.signal(), Some(libc::SIGSYS), "{output:?}");
    }

    /// Profiles whose verdicts on close(2) and fcntl(2) the kernel must give as
    /// [`reference_verdict`] says: all operators with 64-bit values, AND, OR, listing order.
    fn argument_profiles() -> Vec<LinuxSeccomp> {
        let value: u64 = 0x1_8000_0000;
        let mut profiles: Vec<_> = [
            "SCMP_CMP_NE",
            "SCMP_CMP_LT",
            "SCMP_CMP_LE",
            "SCMP_CMP_EQ",
            "SCMP_CMP_GE",
            "SCMP_CMP_GT",
        ]
        .iter()
        .map(|op| {
            json!([{"names": ["close"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
                "args": [{"index": 0, "value": value, "op": op}]}])
        })
        .collect();
        profiles.push(
            json!([{"names": ["close"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
            "args": [{"index": 0, "value": 0x3_f000_0000_u64, "valueTwo": value,
                      "op": "SCMP_CMP_MASKED_EQ"}]}]),
        );
        profiles.push(
            json!([{"names": ["fcntl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
            "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"},
                     {"index": 1, "value": libc::F_GETFD, "op": "SCMP_CMP_EQ"}]}]),
        );
        profiles.push(json!([
            {"names": ["close"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
             "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]},
            {"names": ["close"], "action": "SCMP_ACT_ERRNO", "errnoRet": 77,
             "args": [{"index": 0, "value": 0x9000_0000_u64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["close", "fcntl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 78,
             "args": [{"index": 0, "value": value, "op": "SCMP_CMP_GE"}]}]));
        profiles
            .into_iter()
            .map(|syscalls| {
                profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls}))
            })
            .collect()
    }

    /// (call, args) probed under each argument profile; the low 32 bits of every fd are never
    /// an open descriptor, so an allowed call fails with EBADF.
    fn argument_probes() -> Vec<(&'static str, [u64; 3])> {
        let fds = [
            0x8000_0000,
            0x1_7fff_ffff,
            0x1_8000_0000,
            0x1_8000_0001,
            0x2_7000_0000,
            0x9000_0000,
            0xffff_ffff,
            u64::MAX,
        ];
        let mut probes: Vec<_> = fds.iter().map(|fd| ("close", [*fd, 0, 0])).collect();
        for fd in fds {
            for command in [libc::F_GETFD, libc::F_GETFL] {
                probes.push(("fcntl", [fd, command as u64, 0]));
            }
        }
        probes
    }

    #[test]
    fn kernel_argument_conditions() {
        if let Some(index) = child_parameter() {
            let seccomp = &argument_profiles()[index.parse::<usize>().unwrap()];
            load_then_probe(seccomp, || {
                argument_probes()
                    .iter()
                    .map(|(call, args)| format!("probe {}\n", errno_of(number(call), *args)))
                    .collect()
            });
        }
        for (index, seccomp) in argument_profiles().iter().enumerate() {
            let output = rerun_as_child("kernel_argument_conditions", &index.to_string());
            assert!(output.status.success(), "profile {index}: {output:?}");
            let expected: Vec<String> = argument_probes()
                .iter()
                .map(|(call, args)| {
                    let args = [args[0], args[1], args[2], 0, 0, 0];
                    let verdict = reference_verdict(seccomp, number(call), args);
                    let errno = if verdict == libc::SECCOMP_RET_ALLOW {
                        libc::EBADF
                    } else {
                        assert_eq!(
                            verdict & libc::SECCOMP_RET_ACTION_FULL,
                            libc::SECCOMP_RET_ERRNO
                        );
                        (verdict & libc::SECCOMP_RET_DATA) as i32
                    };
                    errno.to_string()
                })
                .collect();
            assert_eq!(
                probe_lines(&output),
                expected,
                "profile {index}: {seccomp:?}"
            );
        }
    }

    #[test]
    fn install_needs_no_new_privs_or_cap_sys_admin() {
        // Checked in a child that drops CAP_SYS_ADMIN and has no no_new_privs.
        if child_parameter().is_some() {
            let program = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).unwrap();
            caps::drop(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_SYS_ADMIN,
            )
            .unwrap();
            let message = format!("{:#}", install(&program).unwrap_err());
            print!("\nprobe {message}\n");
            // SAFETY: as in load_then_exec.
            unsafe { libc::_exit(0) }
        }
        let output = rerun_as_child("install_needs_no_new_privs_or_cap_sys_admin", "1");
        let lines = probe_lines(&output);
        assert_eq!(lines.len(), 1, "{output:?}");
        assert!(
            lines[0].contains("neither no_new_privs nor CAP_SYS_ADMIN"),
            "{lines:?}"
        );
    }
}
