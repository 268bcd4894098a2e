//! Run inside a container by tests/spec_fields.rs (compiled by the test as a static binary):
//! prints what the kernel says of the calling process, one `key=value` a line, with the
//! system calls that read each attribute back: ioprio_get, sched_getattr, get_mempolicy,
//! personality and sched_getaffinity.
use std::ffi::c_long;

extern "C" {
    fn syscall(n: c_long, ...) -> c_long;
}

const SYS_IOPRIO_GET: c_long = 252;
const SYS_SCHED_GETATTR: c_long = 315;
const SYS_GET_MEMPOLICY: c_long = 239;
const SYS_PERSONALITY: c_long = 135;
const SYS_SCHED_GETAFFINITY: c_long = 204;

#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

fn main() {
    // SAFETY: raw system calls with valid pointers to locals of the sizes passed.
    unsafe {
        let io = syscall(SYS_IOPRIO_GET, 1 as c_long, 0 as c_long);
        println!("ioprio={}:{}", io >> 13, io & 0x1fff);

        let mut a = SchedAttr::default();
        let r = syscall(
            SYS_SCHED_GETATTR,
            0 as c_long,
            &mut a as *mut SchedAttr,
            std::mem::size_of::<SchedAttr>() as c_long,
            0 as c_long,
        );
        if r == 0 {
            println!(
                "sched={} nice={} prio={} flags={} dl={}/{}/{}",
                a.policy, a.nice, a.priority, a.flags, a.runtime, a.deadline, a.period
            );
        } else {
            println!("sched=error");
        }

        let mut mode: i32 = -1;
        let mut mask = [0u64; 16];
        let r = syscall(
            SYS_GET_MEMPOLICY,
            &mut mode as *mut i32,
            mask.as_mut_ptr(),
            (mask.len() * 64) as c_long,
            0 as c_long,
            0 as c_long,
        );
        if r == 0 {
            println!("mempolicy={mode} nodes={:#x}", mask[0]);
        } else {
            println!("mempolicy=error");
        }

        let p = syscall(SYS_PERSONALITY, 0xffff_ffff as c_long);
        println!("personality={p:#x}");

        let mut set = [0u64; 16];
        let n = syscall(
            SYS_SCHED_GETAFFINITY,
            0 as c_long,
            std::mem::size_of_val(&set) as c_long,
            set.as_mut_ptr(),
        );
        let cpus: Vec<String> = if n > 0 {
            (0..1024)
                .filter(|c| set[c / 64] & (1 << (c % 64)) != 0)
                .map(|c| c.to_string())
                .collect()
        } else {
            vec!["error".into()]
        };
        println!("cpus={}", cpus.join(","));
    }
    if std::env::args().nth(1).as_deref() == Some("sleep") {
        std::thread::sleep(std::time::Duration::from_secs(1000));
    }
}
