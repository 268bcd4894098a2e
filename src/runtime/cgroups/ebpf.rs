//! cgroup v2 device control: cgroup2 has no devices controller; instead an eBPF program of
//! type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the container's directory answers "may this
//! process use this device?" for every open(2) and mknod(2) of a device node.
//!
//! berth assembles the program itself from the validated [`DeviceRule`] list, so it needs no
//! compiler, no libbpf and no maps, and loads it with bpf(2).
//!
//! # Semantics
//! The kernel asks with a device (type, major, minor) and the accesses wanted (read, write,
//! mknod; an `O_RDWR` open asks for read and write at once). Each access is decided on its own:
//! the **last** rule that matches the device (type, or any type for `a`; major and minor, or
//! any for `*`) and names that access decides it; with no such rule it is denied. The request
//! is allowed only if every access it asks for is allowed.
//!
//! This is "default deny, then the rules in order, the last match wins", extended to partial
//! access. Where runc (whose emulator mimics the v1 kernel's exception list) differs:
//! - A deny that is narrower than an earlier allow punches a hole in it (allow `c 1:* rwm`,
//!   deny `c 1:5 w` denies writing /dev/zero). v1 ignores such a deny and runc rejects the
//!   spec; berth does what the list says.
//! - Accesses granted by different rules combine: allow `c 1:* r` and allow `c 1:5 w` let a
//!   process open /dev/zero read-write. v1 and runc want one rule holding both; the process
//!   could open it twice (read-only and write-only) anyway, so nothing more is granted.
//! - After allow `a`, deny `c 1:5 w` also refuses an `O_RDWR` open, as v1 does; runc's v2
//!   program lets it through because it only matches rules that hold every wanted access.
//!
//! # Replacing the filter
//! Programs are attached with `BPF_F_ALLOW_MULTI` (a device is usable only if every attached
//! program allows it) and named [`PROGRAM_NAME`]. On every call the new program is attached
//! first and then the programs of that name already attached to the directory are detached,
//! so `update` replaces the filter without a moment unfiltered. Programs others attached
//! (systemd, a container manager) are left alone: they can only restrict further.

use super::resources::{DeviceAccess, DeviceKind, DeviceRule};
use crate::runtime::log;
use anyhow::{Context, Result};
use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The name berth gives its device programs, how it finds its own on a later call.
pub const PROGRAM_NAME: &str = "berth_devices";

/// Builds a `BPF_PROG_TYPE_CGROUP_DEVICE` program from the rules (see the module documentation
/// for how they are evaluated), loads it, attaches it to the cgroup2 directory with
/// `BPF_F_ALLOW_MULTI`, and then detaches the device programs berth attached there before,
/// so that a second call replaces the filter rather than stacking a new one on it.
pub fn set_device_filter(cgroup2_dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let program = device_program(rules)?;
    let cgroup = open_cgroup_dir(cgroup2_dir)?;
    let cgroup_name = || format!("the cgroup {}", cgroup2_dir.display());
    // Looked up before the new program is attached, so that it is not among them.
    let previous = berth_programs(&cgroup).with_context(|| {
        format!(
            "cannot list the device programs attached to {}",
            cgroup_name()
        )
    })?;
    let loaded = load_program(&program, PROGRAM_NAME)?;
    attach(&cgroup, &loaded).with_context(|| {
        format!(
            "cannot attach the device eBPF program (BPF_PROG_ATTACH) to {}",
            cgroup_name()
        )
    })?;
    for old in &previous {
        detach(&cgroup, old).with_context(|| {
            format!(
                "the new device filter is attached to {}, but the previous one cannot be detached (BPF_PROG_DETACH)",
                cgroup_name()
            )
        })?;
    }
    Ok(())
}

// ---- the program ----

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Insn {
    code: u8,
    /// dst_reg and src_reg, 4 bits each; which nibble is which follows the C bitfield order.
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcode parts: instruction class | operation | operand source (or size | mode for loads).
const CLASS_LDX: u8 = 0x01;
const CLASS_ALU32: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;
const SIZE_W: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const OP_AND: u8 = 0x50;
const OP_RSH: u8 = 0x70;
const OP_MOV: u8 = 0xb0;
const OP_JEQ: u8 = 0x10;
const OP_JSET: u8 = 0x40;
const OP_JNE: u8 = 0x50;
const OP_EXIT: u8 = 0x90;
const SRC_IMM: u8 = 0x00;
const SRC_REG: u8 = 0x08;

// Registers: r0 holds the verdict, r1 the context on entry; the rest are berth's choice.
const R_VERDICT: u8 = 0;
const R_CONTEXT: u8 = 1;
const R_DEVICE_TYPE: u8 = 2;
/// The accesses asked for that no rule has decided yet; a rule clears what it allows.
const R_UNDECIDED: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }, access_type being
// (access << 16) | type.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const DEVCG_DEV_BLOCK: i32 = 1;
const DEVCG_DEV_CHAR: i32 = 2;
const DEVCG_ACC_MKNOD: i32 = 1;
const DEVCG_ACC_READ: i32 = 2;
const DEVCG_ACC_WRITE: i32 = 4;

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        #[cfg(target_endian = "little")]
        let regs = (src << 4) | dst;
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | src;
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    /// dst = *(u32 *)(src + off)
    const fn load_u32(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(CLASS_LDX | SIZE_W | MODE_MEM, dst, src, off, 0)
    }

    /// 32-bit `dst <op>= imm` (the upper half of dst is cleared).
    const fn alu32_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(CLASS_ALU32 | op | SRC_IMM, dst, 0, 0, imm)
    }

    /// 32-bit dst = src
    const fn mov32_reg(dst: u8, src: u8) -> Insn {
        Insn::new(CLASS_ALU32 | OP_MOV | SRC_REG, dst, src, 0, 0)
    }

    /// dst = imm, all 64 bits
    const fn mov64_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(CLASS_ALU64 | OP_MOV | SRC_IMM, dst, 0, 0, imm)
    }

    /// Jump if `dst <op> imm`; the offset is filled in once the target is known.
    const fn jump_imm(op: u8, dst: u8, imm: i32) -> Insn {
        Insn::new(CLASS_JMP | op | SRC_IMM, dst, 0, 0, imm)
    }

    const fn exit() -> Insn {
        Insn::new(CLASS_JMP | OP_EXIT, 0, 0, 0, 0)
    }

    #[cfg(test)]
    fn dst_src(&self) -> (usize, usize) {
        let (high, low) = (usize::from(self.regs >> 4), usize::from(self.regs & 0xf));
        if cfg!(target_endian = "little") {
            (low, high)
        } else {
            (high, low)
        }
    }
}

/// Where a rule that decides jumps to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Everything asked for is allowed.
    Allow,
    /// An access asked for is denied; also where the program ends when no rule decides.
    Deny,
}

/// The filter program for `rules`. Rules are checked from the last to the first; each
/// matching rule either clears the accesses it allows from R_UNDECIDED (and the program
/// allows once nothing is left) or denies if it names an access still undecided.
pub(super) fn device_program(rules: &[DeviceRule]) -> Result<Vec<Insn>> {
    let mut program = vec![
        Insn::load_u32(R_DEVICE_TYPE, R_CONTEXT, CTX_ACCESS_TYPE),
        Insn::mov32_reg(R_UNDECIDED, R_DEVICE_TYPE),
        Insn::alu32_imm(OP_AND, R_DEVICE_TYPE, 0xffff),
        Insn::alu32_imm(OP_RSH, R_UNDECIDED, 16),
        Insn::load_u32(R_MAJOR, R_CONTEXT, CTX_MAJOR),
        Insn::load_u32(R_MINOR, R_CONTEXT, CTX_MINOR),
    ];
    let mut exit_jumps: Vec<(usize, Exit)> = Vec::new();
    for rule in rules.iter().rev() {
        let bits = access_bits(rule.access);
        if bits == 0 {
            // Names no access, so it decides nothing.
            continue;
        }
        // Device numbers are 12 (major) and 20 (minor) bits: a larger one matches no device,
        // and leaving it out keeps every immediate a positive i32.
        let (Ok(major), Ok(minor)) = (
            rule.major.map(i32::try_from).transpose(),
            rule.minor.map(i32::try_from).transpose(),
        ) else {
            continue;
        };
        let mut conditions = Vec::new();
        match rule.kind {
            DeviceKind::All => {}
            DeviceKind::Char => conditions.push((R_DEVICE_TYPE, DEVCG_DEV_CHAR)),
            DeviceKind::Block => conditions.push((R_DEVICE_TYPE, DEVCG_DEV_BLOCK)),
        }
        conditions.extend(major.map(|m| (R_MAJOR, m)));
        conditions.extend(minor.map(|m| (R_MINOR, m)));
        let mut mismatch_jumps = Vec::new();
        for (register, value) in conditions {
            mismatch_jumps.push(program.len());
            program.push(Insn::jump_imm(OP_JNE, register, value));
        }
        if rule.allow {
            program.push(Insn::alu32_imm(OP_AND, R_UNDECIDED, !bits));
            exit_jumps.push((program.len(), Exit::Allow));
            program.push(Insn::jump_imm(OP_JEQ, R_UNDECIDED, 0));
        } else {
            exit_jumps.push((program.len(), Exit::Deny));
            program.push(Insn::jump_imm(OP_JSET, R_UNDECIDED, bits));
        }
        // A device the rule does not match goes on to the next rule, which starts here.
        for at in mismatch_jumps {
            program[at].off = jump_offset(at, program.len())?;
        }
    }
    let deny = program.len();
    program.extend([Insn::mov64_imm(R_VERDICT, 0), Insn::exit()]);
    let allow = program.len();
    // Only when some rule jumps there: the verifier rejects unreachable instructions.
    if exit_jumps.iter().any(|&(_, exit)| exit == Exit::Allow) {
        program.extend([Insn::mov64_imm(R_VERDICT, 1), Insn::exit()]);
    }
    for (at, exit) in exit_jumps {
        let to = match exit {
            Exit::Allow => allow,
            Exit::Deny => deny,
        };
        program[at].off = jump_offset(at, to)?;
    }
    Ok(program)
}

fn access_bits(access: DeviceAccess) -> i32 {
    let mut bits = 0;
    for (on, bit) in [
        (access.read, DEVCG_ACC_READ),
        (access.write, DEVCG_ACC_WRITE),
        (access.mknod, DEVCG_ACC_MKNOD),
    ] {
        if on {
            bits |= bit;
        }
    }
    bits
}

/// A jump's offset counts from the instruction after it.
fn jump_offset(from: usize, to: usize) -> Result<i16> {
    i16::try_from(to - from - 1).context(
        "too many device rules: the eBPF program's jumps would exceed the 16-bit offset limit",
    )
}

// ---- bpf(2) ----

// enum bpf_cmd
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
/// No license is needed for the instructions berth emits (it calls no GPL-only helper).
const LICENSE: &[u8] = b"Apache\0";
const BPF_OBJ_NAME_LEN: usize = 16;
/// The kernel's limit of programs per cgroup and attach type (BPF_CGROUP_MAX_PROGS).
const MAX_PROGRAMS_PER_CGROUP: usize = 64;
const VERIFIER_LOG_SIZE: usize = 256 * 1024;

// The `union bpf_attr` members berth uses, each the prefix of the kernel's struct that
// berth fills in; the kernel zero-fills the rest. No implicit padding: every byte is set.

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; BPF_OBJ_NAME_LEN],
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    padding: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct ObjInfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The start of `struct bpf_prog_info`, up to the program's name.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; BPF_OBJ_NAME_LEN],
}

/// bpf(2); returns its non-negative result (an fd for the commands that make one).
///
/// # Safety
/// `attr` must be the attribute struct of `cmd` above, and every address stored in it must
/// point to a live buffer of the length given beside it, writable where the kernel writes.
unsafe fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: the kernel reads and writes at most size_of::<A>() bytes of `attr`, which is a
    // valid exclusive borrow; the buffers it points to are the caller's promise.
    let result =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, std::mem::size_of::<A>()) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Takes ownership of the fd a bpf(2) command just returned.
fn owned_fd(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel made this fd for us just now and nothing else holds it.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

fn open_cgroup_dir(dir: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .with_context(|| format!("cannot open the cgroup directory {}", dir.display()))
}

/// Loads the program; a permission error is retried once with a raised RLIMIT_MEMLOCK, and a
/// rejected program is loaded again with the verifier's log, which goes into the error.
fn load_program(program: &[Insn], name: &str) -> Result<OwnedFd> {
    let error = match prog_load(program, name, None) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    if error.raw_os_error() == Some(libc::EPERM) {
        // Before Linux 5.11 program memory counts against RLIMIT_MEMLOCK, and running out of
        // it reads as EPERM; later kernels charge the memory cgroup instead.
        if let Some(_restore) = MemlockRaised::raise() {
            if let Ok(fd) = prog_load(program, name, None) {
                return Ok(fd);
            }
        }
        return Err(error).context(
            "cannot load the device eBPF program (BPF_PROG_LOAD): it needs CAP_SYS_ADMIN (or CAP_BPF), and before Linux 5.11 enough RLIMIT_MEMLOCK",
        );
    }
    let mut log = vec![0u8; VERIFIER_LOG_SIZE];
    match prog_load(program, name, Some(&mut log)) {
        // Whatever failed the first time did not happen again.
        Ok(fd) => Ok(fd),
        Err(e) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            Err(e).context(format!(
                "the kernel rejected the device eBPF program (BPF_PROG_LOAD); verifier log:\n{}",
                text.trim_end()
            ))
        }
    }
}

fn prog_load(program: &[Insn], name: &str, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: program
            .len()
            .try_into()
            .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        insns: program.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        ..ProgLoadAttr::default()
    };
    // The kernel keeps a NUL within the 16 bytes.
    for (to, from) in attr
        .prog_name
        .iter_mut()
        .zip(name.bytes().take(BPF_OBJ_NAME_LEN - 1))
    {
        *to = from;
    }
    if let Some(log) = log {
        attr.log_level = 1;
        attr.log_size = log.len().try_into().unwrap_or(u32::MAX);
        attr.log_buf = log.as_mut_ptr() as u64;
    }
    // SAFETY: ProgLoadAttr is BPF_PROG_LOAD's attribute; insns, license and log_buf point to
    // `program`, LICENSE (NUL-terminated) and `log`, all alive for the call, with their
    // lengths in insn_cnt and log_size.
    unsafe { bpf(BPF_PROG_LOAD, &mut attr) }.map(owned_fd)
}

/// RLIMIT_MEMLOCK raised for one retry, put back on drop.
struct MemlockRaised {
    soft: u64,
    hard: u64,
}

impl MemlockRaised {
    /// `None` when the limit is already infinite (so not the cause) or cannot be raised.
    fn raise() -> Option<MemlockRaised> {
        let (soft, hard) = getrlimit(Resource::RLIMIT_MEMLOCK).ok()?;
        if soft == RLIM_INFINITY {
            return None;
        }
        // Infinity needs CAP_SYS_RESOURCE; up to the hard limit is always allowed.
        let raised = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY).is_ok()
            || (soft < hard && setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard).is_ok());
        raised.then_some(MemlockRaised { soft, hard })
    }
}

impl Drop for MemlockRaised {
    fn drop(&mut self) {
        let _ = setrlimit(Resource::RLIMIT_MEMLOCK, self.soft, self.hard);
    }
}

fn attach(cgroup: &File, program: &OwnedFd) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: ProgAttachAttr is BPF_PROG_ATTACH's attribute and holds no addresses.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

fn detach(cgroup: &File, program: &OwnedFd) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    // SAFETY: ProgAttachAttr is also BPF_PROG_DETACH's attribute and holds no addresses.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr) }.map(drop)
}

/// The ids of the device programs attached to this very directory (not its ancestors').
pub(super) fn attached_program_ids(cgroup: &File) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; MAX_PROGRAMS_PER_CGROUP];
    loop {
        let mut attr = ProgQueryAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..ProgQueryAttr::default()
        };
        // SAFETY: ProgQueryAttr is BPF_PROG_QUERY's attribute; prog_ids points to `ids`,
        // alive for the call, of prog_cnt u32s.
        match unsafe { bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // More than we had room for (a future kernel with a higher limit): prog_cnt now
            // holds how many there are.
            Err(e)
                if e.raw_os_error() == Some(libc::ENOSPC) && attr.prog_cnt as usize > ids.len() =>
            {
                ids = vec![0; attr.prog_cnt as usize];
            }
            Err(e) => return Err(e),
        }
    }
}

/// The device programs named [`PROGRAM_NAME`] attached to the directory, opened so that they
/// can be detached.
fn berth_programs(cgroup: &File) -> Result<Vec<OwnedFd>> {
    let mut found = Vec::new();
    for id in attached_program_ids(cgroup).context("BPF_PROG_QUERY failed")? {
        let mut attr = GetFdByIdAttr {
            prog_id: id,
            ..GetFdByIdAttr::default()
        };
        // SAFETY: GetFdByIdAttr is BPF_PROG_GET_FD_BY_ID's attribute and holds no addresses.
        let program = match unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) } {
            Ok(fd) => owned_fd(fd),
            // Detached meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            // An LSM may deny access to another agent's program; it cannot be berth's own.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                log::debug(&format!(
                    "ignoring the device eBPF program {id} attached to the cgroup: cannot open it: {e}"
                ));
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("BPF_PROG_GET_FD_BY_ID {id} failed")),
        };
        if program_name(&program)
            .with_context(|| format!("BPF_OBJ_GET_INFO_BY_FD of program {id} failed"))?
            == PROGRAM_NAME
        {
            found.push(program);
        }
    }
    Ok(found)
}

fn program_name(program: &OwnedFd) -> io::Result<String> {
    let mut info = ProgInfo::default();
    let mut attr = ObjInfoAttr {
        bpf_fd: program.as_raw_fd() as u32,
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    // SAFETY: ObjInfoAttr is BPF_OBJ_GET_INFO_BY_FD's attribute; info points to `info`, alive
    // for the call, of info_len bytes. Its buffer lengths are 0, so the kernel follows none
    // of its addresses.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    let end = info
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(BPF_OBJ_NAME_LEN);
    Ok(String::from_utf8_lossy(&info.name[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::super::resources::{DeviceAccess, DeviceKind, DeviceRule, DEFAULT_DEVICE_RULES};
    use super::*;

    // ---- the program, run by a small interpreter of the instructions berth emits ----

    /// Runs `program` on one request as the kernel would, and checks on the way what the
    /// verifier checks for such a program: forward jumps that stay inside it, no unknown
    /// opcode, only the context read, a 0 or 1 verdict.
    fn run(program: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let context = [((access as u32) << 16) | kind as u32, major, minor];
        let mut reg = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let insn = program[pc];
            let (dst, src) = insn.dst_src();
            let imm = i64::from(insn.imm) as u64;
            pc += 1;
            let mut jump_if = |taken: bool| {
                assert!(insn.off >= 0, "backward jump at {}", pc - 1);
                let to = pc + insn.off as usize;
                assert!(to < program.len(), "jump out of the program at {}", pc - 1);
                if taken {
                    pc = to;
                }
            };
            match insn.code {
                c if c == CLASS_LDX | SIZE_W | MODE_MEM => {
                    assert_eq!(src, usize::from(R_CONTEXT), "loads only from the context");
                    assert!(insn.off % 4 == 0 && (0..12).contains(&insn.off));
                    reg[dst] = u64::from(context[insn.off as usize / 4]);
                }
                c if c == CLASS_ALU32 | OP_MOV | SRC_REG => reg[dst] = u64::from(reg[src] as u32),
                c if c == CLASS_ALU32 | OP_AND | SRC_IMM => {
                    reg[dst] = u64::from(reg[dst] as u32 & insn.imm as u32)
                }
                c if c == CLASS_ALU32 | OP_RSH | SRC_IMM => {
                    reg[dst] = u64::from((reg[dst] as u32) >> insn.imm)
                }
                c if c == CLASS_ALU64 | OP_MOV | SRC_IMM => reg[dst] = imm,
                // Jump immediates are sign-extended to 64 bits.
                c if c == CLASS_JMP | OP_JEQ | SRC_IMM => jump_if(reg[dst] == imm),
                c if c == CLASS_JMP | OP_JNE | SRC_IMM => jump_if(reg[dst] != imm),
                c if c == CLASS_JMP | OP_JSET | SRC_IMM => jump_if(reg[dst] & imm != 0),
                c if c == CLASS_JMP | OP_EXIT => {
                    assert!(reg[0] <= 1, "verdict {}", reg[0]);
                    return reg[0];
                }
                c => panic!("unknown opcode {c:#x} at {}", pc - 1),
            }
        }
    }

    /// The verifier refuses a program with an instruction no path reaches.
    fn assert_all_reachable(program: &[Insn]) {
        let mut reached = vec![false; program.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            if std::mem::replace(&mut reached[pc], true) {
                continue;
            }
            let insn = program[pc];
            if insn.code == CLASS_JMP | OP_EXIT {
                continue;
            }
            if insn.code & 0x07 == CLASS_JMP {
                todo.push(pc + 1 + insn.off as usize);
            }
            todo.push(pc + 1);
        }
        let unreached: Vec<usize> = (0..program.len()).filter(|&i| !reached[i]).collect();
        assert!(
            unreached.is_empty(),
            "unreachable instructions {unreached:?}"
        );
    }

    /// The semantics of the module documentation, written the plain way.
    fn expected(
        rules: &[DeviceRule],
        kind: DeviceKind,
        access: i32,
        major: u32,
        minor: u32,
    ) -> bool {
        [DEVCG_ACC_READ, DEVCG_ACC_WRITE, DEVCG_ACC_MKNOD]
            .into_iter()
            .filter(|bit| access & bit != 0)
            .all(|bit| {
                rules
                    .iter()
                    .rev()
                    .find(|r| {
                        (r.kind == DeviceKind::All || r.kind == kind)
                            && r.major.is_none_or(|m| m == major)
                            && r.minor.is_none_or(|m| m == minor)
                            && access_bits(r.access) & bit != 0
                    })
                    .is_some_and(|r| r.allow)
            })
    }

    fn allowed(program: &[Insn], kind: DeviceKind, access: &str, major: u32, minor: u32) -> bool {
        let kind = match kind {
            DeviceKind::Char => DEVCG_DEV_CHAR,
            DeviceKind::Block => DEVCG_DEV_BLOCK,
            DeviceKind::All => panic!("the kernel asks about a char or block device"),
        };
        run(program, kind, access_bits(access_of(access)), major, minor) == 1
    }

    fn access_of(text: &str) -> DeviceAccess {
        DeviceAccess {
            read: text.contains('r'),
            write: text.contains('w'),
            mknod: text.contains('m'),
        }
    }

    /// A rule from its v1 line ("c 1:5 rw") and whether it allows.
    fn rule(allow: bool, line: &str) -> DeviceRule {
        let parts: Vec<&str> = line.split(' ').collect();
        let (major, minor) = parts[1].split_once(':').unwrap();
        let number = |n: &str| (n != "*").then(|| n.parse().unwrap());
        DeviceRule {
            allow,
            kind: match parts[0] {
                "a" => DeviceKind::All,
                "c" => DeviceKind::Char,
                "b" => DeviceKind::Block,
                k => panic!("kind {k}"),
            },
            major: number(major),
            minor: number(minor),
            access: access_of(parts[2]),
        }
    }

    const C: DeviceKind = DeviceKind::Char;
    const B: DeviceKind = DeviceKind::Block;

    #[test]
    fn no_rules_deny_everything() {
        let program = device_program(&[]).unwrap();
        assert_all_reachable(&program);
        assert!(!allowed(&program, C, "r", 1, 3));
        assert!(!allowed(&program, B, "m", 8, 0));
    }

    #[test]
    fn allows_only_what_a_rule_names() {
        let program = device_program(&[rule(true, "c 1:3 rw")]).unwrap();
        assert_all_reachable(&program);
        assert!(allowed(&program, C, "r", 1, 3));
        assert!(allowed(&program, C, "rw", 1, 3));
        assert!(!allowed(&program, C, "m", 1, 3));
        assert!(!allowed(&program, C, "rwm", 1, 3));
        assert!(!allowed(&program, C, "r", 1, 5));
        assert!(!allowed(&program, B, "r", 1, 3));
    }

    #[test]
    fn wildcards_match_any_number_and_type() {
        let program = device_program(&[rule(true, "c 136:* rwm"), rule(true, "b *:* m")]).unwrap();
        assert!(allowed(&program, C, "rw", 136, 0));
        assert!(allowed(&program, C, "rw", 136, 99_999));
        assert!(!allowed(&program, C, "r", 137, 0));
        assert!(allowed(&program, B, "m", 8, 1));
        assert!(!allowed(&program, B, "r", 8, 1));
        let program = device_program(&[rule(true, "a *:* rwm")]).unwrap();
        assert!(allowed(&program, B, "rwm", 8, 1));
        assert!(allowed(&program, C, "rwm", 4095, 1_048_575));
    }

    #[test]
    fn the_last_matching_rule_wins_for_each_access() {
        // A deny after allow-all.
        let program = device_program(&[rule(true, "a *:* rwm"), rule(false, "c 1:5 w")]).unwrap();
        assert!(allowed(&program, C, "r", 1, 5));
        assert!(!allowed(&program, C, "w", 1, 5));
        assert!(
            !allowed(&program, C, "rw", 1, 5),
            "any denied access refuses the open"
        );
        assert!(allowed(&program, C, "rw", 1, 3));
        // A narrower deny punches a hole in an earlier allow, and a later allow fills it.
        let rules = [rule(true, "c 1:* rwm"), rule(false, "c 1:5 rwm")];
        let program = device_program(&rules).unwrap();
        assert!(!allowed(&program, C, "r", 1, 5));
        assert!(allowed(&program, C, "r", 1, 3));
        let program = device_program(&[rules[0], rules[1], rule(true, "c 1:5 r")]).unwrap();
        assert!(allowed(&program, C, "r", 1, 5));
        assert!(!allowed(&program, C, "w", 1, 5));
        // Accesses granted by different rules combine.
        let program = device_program(&[rule(true, "c 1:* r"), rule(true, "c 1:5 w")]).unwrap();
        assert!(allowed(&program, C, "rw", 1, 5));
        assert!(!allowed(&program, C, "rw", 1, 3));
        // A later deny-all undoes everything before it.
        let program = device_program(&[rule(true, "c 1:3 rwm"), rule(false, "a *:* rwm")]).unwrap();
        assert!(!allowed(&program, C, "r", 1, 3));
    }

    #[test]
    fn the_default_rules_give_the_standard_nodes() {
        let mut rules = vec![rule(false, "a *:* rwm")];
        rules.extend_from_slice(&DEFAULT_DEVICE_RULES);
        let program = device_program(&rules).unwrap();
        assert_all_reachable(&program);
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 2),
            (136, 4),
        ] {
            assert!(allowed(&program, C, "rw", major, minor), "{major}:{minor}");
        }
        assert!(allowed(&program, C, "m", 10, 200), "mknod of any node");
        assert!(!allowed(&program, C, "rw", 10, 200));
        assert!(!allowed(&program, B, "r", 8, 0));
    }

    #[test]
    fn skips_rules_that_decide_nothing_or_match_no_device() {
        let none = DeviceRule {
            access: DeviceAccess::default(),
            ..rule(false, "c 1:3 rwm")
        };
        let huge = DeviceRule {
            major: Some(u32::MAX),
            ..rule(false, "c 1:3 rwm")
        };
        let program = device_program(&[rule(true, "c 1:3 rwm"), none, huge]).unwrap();
        assert!(allowed(&program, C, "rwm", 1, 3));
        assert_eq!(program, device_program(&[rule(true, "c 1:3 rwm")]).unwrap());
    }

    #[test]
    fn too_many_rules_are_an_error() {
        let rules = vec![rule(false, "c 1:3 r"); 20_000];
        let e = format!("{:#}", device_program(&rules).unwrap_err());
        assert!(e.contains("too many device rules"), "{e}");
    }

    /// Random rule lists checked on every request over a small universe of devices.
    #[test]
    fn matches_the_plain_semantics_on_random_rules() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move |n: u64| {
            // xorshift64*
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
        };
        let numbers = [None, Some(1), Some(5)];
        for _ in 0..3000 {
            let count = random(8);
            let rules: Vec<DeviceRule> = (0..count)
                .map(|_| {
                    let kind = [DeviceKind::All, C, B][random(3) as usize];
                    let bits = random(7) as i32 + 1;
                    let access = DeviceAccess {
                        read: bits & DEVCG_ACC_READ != 0,
                        write: bits & DEVCG_ACC_WRITE != 0,
                        mknod: bits & DEVCG_ACC_MKNOD != 0,
                    };
                    DeviceRule {
                        allow: random(2) == 0,
                        kind,
                        major: numbers[random(3) as usize],
                        minor: numbers[random(3) as usize],
                        access,
                    }
                })
                .collect();
            let program = device_program(&rules).unwrap();
            assert_all_reachable(&program);
            for (kind, type_code) in [(C, DEVCG_DEV_CHAR), (B, DEVCG_DEV_BLOCK)] {
                for major in [1, 5, 7] {
                    for minor in [1, 5, 7] {
                        for access in 1..=7 {
                            let want = expected(&rules, kind, access, major, minor);
                            let got = run(&program, type_code, access, major, minor) == 1;
                            assert_eq!(
                                got, want,
                                "{kind:?} {major}:{minor} access {access} under {rules:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    // ---- for real: cgroup2, as root ----

    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::{Mutex, MutexGuard};

    /// One test at a time: they share berth-test-<pid>.
    static REAL_CGROUPS: Mutex<()> = Mutex::new(());

    /// `<cgroup2 mount>/berth-test-<pid>/<name>` and a scratch directory for mknod; on drop
    /// the cgroup's processes are killed and both directories removed (berth-test-<pid> too
    /// once empty).
    struct TestCgroup {
        dir: PathBuf,
        parent: PathBuf,
        scratch: PathBuf,
        _serial: MutexGuard<'static, ()>,
    }

    impl TestCgroup {
        /// `None` (with a note) where the real tests cannot run.
        fn new(name: &str) -> Option<TestCgroup> {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                eprintln!("note: not root: skipping the real eBPF device test {name}");
                return None;
            }
            let Some(unified) = super::super::hierarchies()
                .unwrap()
                .into_iter()
                .find(|h| h.unified)
            else {
                eprintln!("note: no cgroup2 mount: skipping the real eBPF device test {name}");
                return None;
            };
            let serial = REAL_CGROUPS.lock().unwrap_or_else(|e| e.into_inner());
            let parent = unified
                .mount_point
                .join(format!("berth-test-{}", std::process::id()));
            let scratch =
                std::env::temp_dir().join(format!("berth-ebpf-{}-{name}", std::process::id()));
            let cgroup = TestCgroup {
                dir: parent.join(name),
                parent,
                scratch,
                _serial: serial,
            };
            match std::fs::create_dir(&cgroup.parent) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create {}: {e}", cgroup.parent.display()),
            }
            std::fs::create_dir(&cgroup.dir).unwrap();
            std::fs::create_dir_all(&cgroup.scratch).unwrap();
            Some(cgroup)
        }

        /// Runs `script` with busybox sh after it moved itself into the cgroup: Ok(stdout)
        /// or Err(stderr).
        fn run(&self, script: &str) -> Result<String, String> {
            let procs = self.dir.join("cgroup.procs");
            let full = format!("echo $$ > {} || exit 99\n{script}", procs.display());
            let out = Command::new("/bin/busybox")
                .args(["sh", "-c", &full])
                .output()
                .expect("cannot run /bin/busybox");
            assert_ne!(
                out.status.code(),
                Some(99),
                "could not join {}",
                self.dir.display()
            );
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        }

        fn assert_allowed(&self, script: &str) {
            if let Err(e) = self.run(script) {
                panic!("{script:?} failed in {}: {e}", self.dir.display());
            }
        }

        fn assert_denied(&self, script: &str) {
            match self.run(script) {
                Ok(_) => panic!("{script:?} succeeded in {}", self.dir.display()),
                Err(e) => assert!(e.contains("Operation not permitted"), "{script:?}: {e}"),
            }
        }

        fn mknod(&self, node: &str, kind: &str, major: u32, minor: u32) -> String {
            let path = self.scratch.join(node);
            format!("busybox mknod {} {kind} {major} {minor}", path.display())
        }

        fn program_ids(&self) -> Vec<u32> {
            attached_program_ids(&open_cgroup_dir(&self.dir).unwrap()).unwrap()
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let procs = self.dir.join("cgroup.procs");
            for _ in 0..200 {
                let pids: Vec<i32> = std::fs::read_to_string(&procs)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect();
                for pid in &pids {
                    // SAFETY: kill has no memory preconditions; the pid is a member of this
                    // test's own cgroup.
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                }
                // Programs attached to it go with the cgroup.
                match std::fs::remove_dir(&self.dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    _ => break,
                }
            }
            // Still in use by another test process's run, or already gone: both fine.
            let _ = std::fs::remove_dir(&self.parent);
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }

    #[test]
    fn denies_and_allows_devices_for_real() {
        let Some(cg) = TestCgroup::new("deny-allow") else {
            return;
        };
        // Default deny plus /dev/null for reading and writing.
        set_device_filter(&cg.dir, &[rule(true, "c 1:3 rw")]).unwrap();
        assert_eq!(cg.program_ids().len(), 1);
        cg.assert_allowed("busybox head -c1 /dev/null");
        cg.assert_allowed("printf x > /dev/null");
        cg.assert_denied("busybox head -c1 /dev/zero");
        cg.assert_denied("busybox head -c1 /dev/full");
        cg.assert_denied(&cg.mknod("null", "c", 1, 3));

        // Replaced: allow everything, then deny /dev/zero.
        let first = cg.program_ids();
        let rules = [rule(true, "a *:* rwm"), rule(false, "c 1:5 rwm")];
        set_device_filter(&cg.dir, &rules).unwrap();
        let second = cg.program_ids();
        assert_eq!(second.len(), 1, "exactly one program after the update");
        assert_ne!(first, second);
        cg.assert_denied("busybox head -c1 /dev/zero");
        cg.assert_allowed("busybox head -c1 /dev/full");
        cg.assert_allowed("printf x > /dev/null");
        cg.assert_denied(&cg.mknod("zero", "c", 1, 5));
        cg.assert_allowed(&cg.mknod("null", "c", 1, 3));
        cg.assert_allowed(&cg.mknod("loop", "b", 7, 0));
    }

    #[test]
    fn partial_access_for_real() {
        let Some(cg) = TestCgroup::new("partial") else {
            return;
        };
        let rules = [rule(true, "c 1:5 r"), rule(true, "c *:* m")];
        set_device_filter(&cg.dir, &rules).unwrap();
        cg.assert_allowed("busybox head -c1 /dev/zero");
        cg.assert_denied("printf x > /dev/zero");
        cg.assert_denied("exec 3<> /dev/zero");
        cg.assert_allowed(&cg.mknod("mem", "c", 1, 1));
        cg.assert_denied(&cg.mknod("loop", "b", 7, 0));

        // Read and write from two rules make a read-write open.
        let rules = [rule(true, "c 1:* r"), rule(true, "c 1:5 w")];
        set_device_filter(&cg.dir, &rules).unwrap();
        assert_eq!(cg.program_ids().len(), 1);
        cg.assert_allowed("exec 3<> /dev/zero");
        cg.assert_denied("exec 3<> /dev/null");
        cg.assert_allowed("busybox head -c1 /dev/null");
        cg.assert_denied(&cg.mknod("zero", "c", 1, 5));
    }

    #[test]
    fn the_default_rules_for_real() {
        let Some(cg) = TestCgroup::new("defaults") else {
            return;
        };
        let mut rules = vec![rule(false, "a *:* rwm")];
        rules.extend_from_slice(&DEFAULT_DEVICE_RULES);
        set_device_filter(&cg.dir, &rules).unwrap();
        for device in [
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
        ] {
            cg.assert_allowed(&format!("busybox head -c1 {device} && : > {device}"));
        }
        cg.assert_allowed(&cg.mknod("kmsg", "c", 1, 11));
        cg.assert_denied("busybox head -c1 /dev/kmsg");
        cg.assert_allowed(&cg.mknod("loop", "b", 7, 0));
    }

    #[test]
    fn leaves_other_programs_attached() {
        let Some(cg) = TestCgroup::new("others") else {
            return;
        };
        let allow_all = [Insn::mov64_imm(R_VERDICT, 1), Insn::exit()];
        let other = load_program(&allow_all, "other_filter").unwrap();
        attach(&open_cgroup_dir(&cg.dir).unwrap(), &other).unwrap();
        let other_id = cg.program_ids();
        assert_eq!(other_id.len(), 1);
        set_device_filter(&cg.dir, &[rule(true, "a *:* rwm")]).unwrap();
        set_device_filter(&cg.dir, &[rule(true, "a *:* rwm"), rule(false, "c 1:7 r")]).unwrap();
        let ids = cg.program_ids();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids.contains(&other_id[0]));
        cg.assert_denied("busybox head -c1 /dev/full");
        cg.assert_allowed("busybox head -c1 /dev/zero");
    }

    #[test]
    fn the_kernel_accepts_the_programs() {
        let Some(_cg) = TestCgroup::new("verifier") else {
            return;
        };
        let mut rules = vec![rule(false, "a *:* rwm")];
        rules.extend_from_slice(&DEFAULT_DEVICE_RULES);
        let lists = [
            vec![],
            vec![rule(true, "a *:* rwm")],
            vec![rule(false, "c 1:5 w")],
            vec![rule(true, "b 8:* r"), rule(false, "b 8:1 r")],
            rules,
        ];
        for rules in lists {
            let program = device_program(&rules).unwrap();
            if let Err(e) = load_program(&program, PROGRAM_NAME) {
                panic!("{rules:?}: {e:#}");
            }
        }
    }

    #[test]
    fn a_rejected_program_carries_the_verifier_log() {
        let Some(_cg) = TestCgroup::new("rejected") else {
            return;
        };
        // Exits without setting r0.
        let e = format!(
            "{:#}",
            load_program(&[Insn::exit()], PROGRAM_NAME).unwrap_err()
        );
        assert!(e.contains("verifier log:") && e.contains("R0"), "{e}");
    }

    #[test]
    fn names_the_directory_on_error() {
        let e = format!(
            "{:#}",
            set_device_filter(Path::new("/nonexistent/berth-cgroup"), &[]).unwrap_err()
        );
        assert!(e.contains("/nonexistent/berth-cgroup"), "{e}");
    }
}
