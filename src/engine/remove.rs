//! Removing a container and everything made for it: its monitor, the runtime's container (its
//! processes and cgroups), the rootfs mount, the bundle and its record in the image store, its
//! volumes as asked, its name and its directory. Each step tolerates what an earlier, killed
//! removal or creation already did or never did, so `rm -f` always finishes the job.

use super::record::{Container, Engine, Status};
use crate::image::store::Store;
use anyhow::{Context, Result};
use std::fs;
use std::os::fd::AsRawFd;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Caller {
    /// `rm`: kills the monitor first.
    Command,
    /// The monitor of a `--rm` container, after the exit.
    Monitor,
    /// A `create` that failed part-way.
    Creator,
}

/// Removes container `c`; its anonymous volumes go too when the monitor of a `--rm` container
/// or a failed create removes it.
pub fn remove(engine: &Engine, c: &mut Container, caller: Caller) -> Result<()> {
    remove_with_volumes(engine, c, caller, caller != Caller::Command)
}

/// Removes container `c`, and its anonymous volumes nobody else uses when `volumes` (`rm -v`).
pub fn remove_with_volumes(
    engine: &Engine,
    c: &mut Container,
    caller: Caller,
    volumes: bool,
) -> Result<()> {
    if c.dir.join(super::record::RECORD_FILE).exists() {
        // (The monitor of a `--rm` container recorded the exit as Removing already.)
        let _ = c.update_state_if(|s| {
            let change = s.status != Status::Removing;
            s.status = Status::Removing;
            change
        });
    }
    if caller == Caller::Command {
        // The monitor the state names, and one that recorded itself at the start of a start
        // still in flight (read after the mark: a monitor that had not recorded itself by then
        // finds the mark and makes nothing).
        let early = super::monitor::recorded_monitor(c);
        for m in c.state.monitor.into_iter().chain(early) {
            kill_verified(m.pid, m.start_time);
        }
    }
    crate::runtime::container::delete(&engine.runtime_globals(), c.id(), true)
        .with_context(|| format!("cannot remove the runtime's container {}", c.id()))?;
    // Its processes are gone: so are its veth pairs (with its network namespace); a monitor
    // killed before it gave the addresses back leaves them to this. (A monitor removing its
    // `--rm` container gave them back at the exit.)
    if caller != Caller::Monitor {
        super::monitor::release_addresses(engine, c);
    }
    crate::network::publish::forget(engine, c, caller == Caller::Monitor);
    remove_bundle(engine, c)?;
    if !c.record.name.is_empty() {
        engine.release_name(&c.record.name, c.id());
    }
    fs::remove_dir_all(&c.dir)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .with_context(|| format!("cannot remove {}", c.dir.display()))?;
    // Once the record is gone, the container no longer holds its volumes. A creation that
    // failed or never completed (its berth was killed) is undone whole: the volumes made for
    // it go too.
    let undo = caller == Caller::Creator || !c.record.complete;
    super::mounts::release_container(engine, &c.record, volumes || undo, undo)
}

/// Unmounts the rootfs and removes the bundle and the store's record of it.
fn remove_bundle(engine: &Engine, c: &Container) -> Result<()> {
    let bundle = c.bundle_dir();
    if !bundle.exists() {
        return Ok(());
    }
    let rootfs = c.rootfs();
    if rootfs.exists() {
        // Detached: no process of the container is left to use it, and a synchronous
        // unmount of an overlay waits for its upper layer's writeback for nothing.
        match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot unmount {}", rootfs.display()))
            }
        }
    }
    let dev = |p: &std::path::Path| {
        fs::symlink_metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            .ok()
    };
    if rootfs.exists() && dev(&rootfs) != dev(&bundle) {
        anyhow::bail!(
            "{} is still a mount point; not removing it",
            rootfs.display()
        );
    }
    if let Ok(store) = Store::open(&engine.data_root) {
        crate::image::bundle::forget_bundle(&store, &bundle);
    }
    fs::remove_dir_all(&bundle).with_context(|| format!("cannot remove {}", bundle.display()))
}

/// Sends SIGKILL to `pid` if it is still the process that started at `start_time` (a pidfd
/// pins it, so a reused pid is never hit), and waits for it to die.
pub fn kill_verified(pid: i32, start_time: u64) {
    let Ok(fd) = super::monitor::pidfd_open(pid) else {
        return;
    };
    if crate::runtime::state::process_start_time(pid) != Some(start_time) {
        return;
    }
    // SAFETY: pidfd_send_signal takes a pidfd, a signal, a null siginfo and no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 5000) };
}
