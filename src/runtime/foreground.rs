//! `run` and `exec` in the foreground: forward signals to the container process, proxy its
//! terminal, and return its exit status (128+N when killed by signal N).
//!
//! Signals are blocked before the clone and read from a signalfd afterwards, so none is lost
//! between the clone and the wait loop and no handler runs asynchronously. berth is also made a
//! child subreaper: where the container process was born of a second fork it is still ours to
//! wait for.

use crate::runtime::tty::{PtyProxy, RawTerminal};
use anyhow::{Context, Result};
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

pub struct Foreground {
    signals: SignalFd,
    old_mask: SigSet,
}

/// The signals berth forwards (and SIGCHLD and SIGWINCH, which it handles itself).
fn forwarded() -> SigSet {
    let mut set = SigSet::all();
    for s in [
        Signal::SIGKILL,
        Signal::SIGSTOP,
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGTRAP,
        Signal::SIGSYS,
    ] {
        set.remove(s);
    }
    set
}

impl Foreground {
    /// Call before the clone. `subreaper`: become the child subreaper (runc's default; its
    /// `--no-subreaper` leaves orphans to the host's init).
    pub fn prepare(subreaper: bool) -> Result<Foreground> {
        if subreaper {
            nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")?;
        }
        let set = forwarded();
        let mut old_mask = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old_mask))
            .context("sigprocmask")?;
        let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context("signalfd")?;
        Ok(Foreground { signals, old_mask })
    }

    /// Waits for `pid` to exit, forwarding signals and proxying its pty if it has one.
    pub fn wait(self, pid: i32, pty_master: Option<OwnedFd>) -> Result<i32> {
        let raw = if pty_master.is_some() {
            RawTerminal::enter()?
        } else {
            None
        };
        let mut proxy = pty_master.map(PtyProxy::new).transpose()?;
        if let (Some(p), Some(t)) = (&proxy, &raw) {
            let _ = p.resize_from(t.as_fd());
        }
        let status = loop {
            if let Some(code) = reap(pid)? {
                break code;
            }
            let mut fds = vec![libc::pollfd {
                fd: self.signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(p) = &proxy {
                fds.extend(p.poll_fds());
            }
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e).context("poll");
            }
            if let Some(p) = proxy.as_mut() {
                p.on_ready(&fds[1..])?;
            }
            if fds[0].revents & libc::POLLIN != 0 {
                while let Some(info) = self.signals.read_signal().context("signalfd read")? {
                    let sig = info.ssi_signo as i32;
                    if sig == libc::SIGCHLD {
                        continue; // reaped at the top of the loop
                    }
                    if sig == libc::SIGWINCH {
                        if let (Some(p), Some(t)) = (&proxy, &raw) {
                            let _ = p.resize_from(t.as_fd());
                        }
                        continue;
                    }
                    if let Ok(s) = Signal::try_from(sig) {
                        let _ = kill(Pid::from_raw(pid), s);
                    }
                }
            }
        };
        if let Some(p) = proxy.as_mut() {
            let _ = p.drain();
        }
        drop(raw);
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old_mask), None);
        Ok(status)
    }
}

/// Reaps every exited child (berth is a subreaper); returns `pid`'s exit status once it is gone.
fn reap(pid: i32) -> Result<Option<i32>> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                return Ok(Some(128 + sig as i32))
            }
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            // No children at all: the process is not ours to wait for (should not happen).
            Err(nix::errno::Errno::ECHILD) => return Ok(Some(255)),
            Err(e) => return Err(e).context("waitpid"),
        }
    }
}
