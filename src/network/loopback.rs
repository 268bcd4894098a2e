//! A new network namespace has its loopback down; Docker's containers get it up (127.0.0.1/8),
//! with IPv6 off unless asked for. Done from outside the container, before its program runs,
//! by a child that joins the namespace: the caller stays in its own.

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;
use std::os::fd::AsRawFd;

/// Brings `lo` up in the network namespace of process `pid` and turns IPv6 off there.
pub fn bring_up_in(pid: i32) -> Result<()> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .with_context(|| format!("cannot open the network namespace of process {pid}"))?;
    // SAFETY: the caller is single-threaded; the child only makes system calls and exits.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Child => {
            let code = match configure(&ns) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            other => bail!(
                "cannot bring the loopback up in the container's network namespace ({other:?})"
            ),
        },
    }
}

fn configure(ns: &std::fs::File) -> Result<()> {
    setns(ns, CloneFlags::CLONE_NEWNET)?;
    // /proc/sys/net shows the namespace of whoever opens it: this child's, now.
    for conf in ["all", "default", "lo"] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
    }
    up_here()
}

/// Brings `lo` up in the calling thread's network namespace (the kernel gives it 127.0.0.1/8).
pub fn up_here() -> Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data; zeroed it names no interface and has no flags.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write the ifreq the pointer names, which
    // lives across both calls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            bail!("SIOCGIFFLAGS lo: {}", std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            bail!("SIOCSIFFLAGS lo: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}
