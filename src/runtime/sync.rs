//! The channel between berth and the container process it is creating.
//!
//! A SOCK_SEQPACKET socketpair: message boundaries are kept, and both ends are close-on-exec,
//! so when the container process execs its program the parent reads end-of-file: that is how
//! `run` and `start` learn that the exec happened without any extra message.

use anyhow::{bail, Context, Result};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Child → parent: I am in a new user namespace; write my uid/gid maps.
    MapsNeeded,
    /// Child → parent: the container process is this pid (after a second fork). The parent
    /// sends it back to that new process, which waits for it before any message of its own.
    Pid(i32),
    /// Child → parent: put me in the container's cgroup.
    CgroupNeeded,
    /// Child → parent: mounts are done; run prestart and createRuntime hooks.
    HooksNeeded,
    /// Child → parent: set-up is complete, I wait to be started.
    Ready,
    /// Parent → child: the step asked for is done / go on.
    Done,
    /// Parent → child (`run`): exec the program now.
    Start,
    /// Either way: what failed.
    Error(String),
    /// Child → parent: the pty master follows as an SCM_RIGHTS message.
    PtyFollows,
    /// Parent → child, in reply to HooksNeeded: hooks ran; the OCI state for the container's hooks.
    State(String),
    /// Child → parent: the seccomp notify listener follows as an SCM_RIGHTS message; pass it
    /// to the agent and reply `Done`.
    SeccompListenerFollows,
    /// Parent → child: the cgroup is made and limited; join it.
    CgroupReady,
    /// Parent → child (`create`): the container is on record and berth is about to exit;
    /// wait for `start` (had berth died before, the channel would close unread).
    Handover,
    /// Child → parent: my network namespace exists; move `linux.netDevices` into it.
    NetDevicesNeeded,
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        let (tag, payload): (u8, Vec<u8>) = match self {
            Msg::MapsNeeded => (1, vec![]),
            Msg::Pid(p) => (2, p.to_le_bytes().to_vec()),
            Msg::CgroupNeeded => (3, vec![]),
            Msg::HooksNeeded => (4, vec![]),
            Msg::Ready => (5, vec![]),
            Msg::Done => (6, vec![]),
            Msg::Start => (7, vec![]),
            Msg::Error(s) => (8, s.as_bytes().to_vec()),
            Msg::PtyFollows => (9, vec![]),
            Msg::State(s) => (10, s.as_bytes().to_vec()),
            Msg::SeccompListenerFollows => (11, vec![]),
            Msg::CgroupReady => (12, vec![]),
            Msg::Handover => (13, vec![]),
            Msg::NetDevicesNeeded => (14, vec![]),
        };
        let mut v = Vec::with_capacity(1 + payload.len());
        v.push(tag);
        v.extend_from_slice(&payload);
        v
    }

    fn decode(b: &[u8]) -> Result<Msg> {
        let Some((&tag, p)) = b.split_first() else {
            bail!("empty sync message")
        };
        Ok(match tag {
            1 => Msg::MapsNeeded,
            2 => Msg::Pid(i32::from_le_bytes(p.try_into().context("bad pid message")?)),
            3 => Msg::CgroupNeeded,
            4 => Msg::HooksNeeded,
            5 => Msg::Ready,
            6 => Msg::Done,
            7 => Msg::Start,
            8 => Msg::Error(String::from_utf8_lossy(p).into_owned()),
            9 => Msg::PtyFollows,
            10 => Msg::State(String::from_utf8_lossy(p).into_owned()),
            11 => Msg::SeccompListenerFollows,
            12 => Msg::CgroupReady,
            13 => Msg::Handover,
            14 => Msg::NetDevicesNeeded,
            t => bail!("unknown sync message {t}"),
        })
    }
}

/// Makes the pair: (parent end, child end).
pub fn channel() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("cannot create sync socketpair")
}

pub fn send(fd: BorrowedFd, msg: &Msg) -> Result<()> {
    let bytes = msg.encode();
    loop {
        // SAFETY: `bytes` is a valid buffer of the given length for the duration of the call.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err).context("sync channel: send failed");
        }
    }
}

/// Receives one message; `None` at end-of-file (the peer exited or exec'd).
pub fn recv(fd: BorrowedFd) -> Result<Option<Msg>> {
    recv_with(fd, 0)
}

/// The error the peer sent before it went away, if one waits to be read: when berth's own
/// step fails because the container process is gone, the process's reason is the one to tell.
pub fn pending_error(fd: BorrowedFd) -> Option<String> {
    match recv_with(fd, libc::MSG_DONTWAIT) {
        Ok(Some(Msg::Error(e))) => Some(e),
        _ => None,
    }
}

fn recv_with(fd: BorrowedFd, flags: libc::c_int) -> Result<Option<Msg>> {
    // Room for the largest message, but not zeroed: recv writes what arrives, and pages
    // never written never become resident.
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        // SAFETY: `buf` owns `capacity` writable bytes for the duration of the call.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.capacity(),
                flags,
            )
        };
        if n > 0 {
            // SAFETY: recv initialized the first n bytes, and n <= capacity.
            unsafe { buf.set_len(n as usize) };
            return Msg::decode(&buf).map(Some);
        }
        if n == 0 {
            return Ok(None);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            // The peer closed with a message of ours unread. The kernel says so once, ahead
            // of what the peer sent before it closed (often the reason it failed): read on.
            Some(libc::ECONNRESET) => {}
            _ => return Err(err).context("sync channel: receive failed"),
        }
    }
}

/// Sends a request and waits for `Done` (or the peer's error).
pub fn request(fd: BorrowedFd, msg: &Msg) -> Result<()> {
    send(fd, msg)?;
    match recv(fd)? {
        Some(Msg::Done) => Ok(()),
        Some(Msg::Error(e)) => bail!("{e}"),
        Some(other) => bail!("sync channel: unexpected {other:?} in reply to {msg:?}"),
        None => bail!("sync channel: the runtime went away during {msg:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn round_trip() {
        let (a, b) = channel().unwrap();
        for m in [
            Msg::MapsNeeded,
            Msg::Pid(-7),
            Msg::Ready,
            Msg::Handover,
            Msg::Error("boom".into()),
        ] {
            send(a.as_fd(), &m).unwrap();
            assert_eq!(recv(b.as_fd()).unwrap(), Some(m));
        }
        drop(a);
        assert_eq!(recv(b.as_fd()).unwrap(), None);
    }

    #[test]
    fn what_the_peer_sent_before_closing_is_read_past_the_reset() {
        let (parent, child) = channel().unwrap();
        send(parent.as_fd(), &Msg::CgroupReady).unwrap();
        send(
            child.as_fd(),
            &Msg::Error("cannot create namespaces".into()),
        )
        .unwrap();
        drop(child); // with CgroupReady unread: the parent's next recv is reset first
        assert_eq!(
            pending_error(parent.as_fd()).as_deref(),
            Some("cannot create namespaces")
        );
        assert_eq!(recv(parent.as_fd()).unwrap(), None);
    }
}
