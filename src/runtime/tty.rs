//! Terminals for container processes.
//!
//! With `process.terminal: true` the container process gets a pty slave as its
//! stdio and controlling terminal. The pty is created inside the container
//! (after `/dev/pts` is mounted and the root pivoted) so that it belongs to the
//! container's devpts instance; the master is then handed out over a unix
//! socket with SCM_RIGHTS, runc-style: to `--console-socket` if given, or to
//! berth itself, which proxies its own stdio to it ([`PtyProxy`]).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{
    connect, recvmsg, sendmsg, socket, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::stat::Mode;
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fchown, getpid, getsid, setsid};
use nix::unistd::{Gid, Uid};

/// Parent side, before clone: connect to the console socket (SOCK_STREAM
/// unix) so the child can still use it after pivot_root. The fd is
/// close-on-exec, so the container process never inherits it.
pub fn connect_console_socket(path: &Path) -> Result<OwnedFd> {
    connect_unix(path, "--console-socket")
}

/// A stream connection to the Unix socket a flag (`what`) names.
pub fn connect_unix(path: &Path, what: &str) -> Result<OwnedFd> {
    let address =
        UnixAddr::new(path).with_context(|| format!("invalid {what} path {}", path.display()))?;
    let socket = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .with_context(|| format!("creating a unix socket for {what}"))?;
    connect(socket.as_raw_fd(), &address)
        .with_context(|| format!("connecting to {what} {}", path.display()))?;
    Ok(socket)
}

/// A freshly created pty pair. `slave_name` is the slave's path as seen in the
/// mount namespace that opened it (e.g. "/dev/pts/0").
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
    pub slave_name: String,
}

/// Child side, after /dev/pts is mounted and the root is pivoted: open
/// /dev/ptmx, unlock it and open its slave. Both fds are close-on-exec;
/// [`make_controlling_stdio`] puts the slave on 0/1/2.
///
/// grantpt() is not called: on devpts it has nothing to do (the kernel sets the
/// slave's owner and mode from the devpts mount options); the slave is
/// chowned to the process user by [`make_controlling_stdio`] instead.
pub fn open_pty() -> Result<Pty> {
    let master = open(
        "/dev/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("opening /dev/ptmx")?;

    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one c_int through the pointer, which points to a
    // live local for the duration of the call.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })
        .context("unlocking the pty slave (TIOCSPTLCK)")?;

    let mut index: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one c_uint through the pointer, which points to a
    // live local for the duration of the call.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut index) })
        .context("reading the pty number (TIOCGPTN)")?;
    let slave_name = format!("/dev/pts/{index}");

    let slave = open_slave(master.as_fd(), &slave_name)?;
    Ok(Pty {
        master,
        slave,
        slave_name,
    })
}

/// Opens the slave of `master`. TIOCGPTPEER (Linux 4.13+) is preferred because
/// it is guaranteed to return the slave of this very master, even if
/// `/dev/pts` is not the devpts instance /dev/ptmx belongs to; the path is
/// only a fallback for older kernels.
fn open_slave(master: BorrowedFd, slave_name: &str) -> Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes its flags by value and returns a new fd or -1.
    let peer = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    match Errno::result(peer) {
        // SAFETY: the kernel just created this fd for us and nothing else owns it.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(Errno::EINVAL | Errno::ENOTTY) => open(
            slave_name,
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening the pty slave {slave_name}")),
        Err(errno) => {
            Err(errno).with_context(|| format!("opening the pty slave {slave_name} (TIOCGPTPEER)"))
        }
    }
}

/// Sets a terminal's window size (for `process.consoleSize`). Works on either
/// side of a pty; on the master it also sends SIGWINCH to the slave's
/// foreground process group.
pub fn set_window_size(tty: BorrowedFd, rows: u16, cols: u16) -> Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize through the pointer, which points to
    // a live local for the duration of the call.
    Errno::result(unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &size) })
        .context("setting the terminal window size (TIOCSWINSZ)")?;
    Ok(())
}

pub fn window_size(tty: BorrowedFd) -> Result<libc::winsize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize through the pointer, which points
    // to a live local for the duration of the call.
    Errno::result(unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCGWINSZ, &mut size) })
        .context("reading the terminal window size (TIOCGWINSZ)")?;
    Ok(size)
}

/// Child side, while the process may still change owners: gives the pty slave to `uid`:`gid`
/// (container-side IDs, which must be mapped if in a user namespace).
pub fn give_slave_to(slave: BorrowedFd, uid: u32, gid: u32) -> Result<()> {
    fchown(slave, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .with_context(|| format!("changing the pty slave's owner to {uid}:{gid}"))
}

/// Child side, in the process that execs: make `slave` the controlling terminal and
/// stdin/stdout/stderr of the calling process.
///
/// Calls setsid() itself unless the caller already is a session leader (a
/// controlling terminal can only be acquired by a session leader without
/// one). TIOCSCTTY needs no privilege for a pty no session holds yet. Call it
/// before closing the stdio the runtime wants to keep, since 0/1/2 are replaced.
pub fn make_controlling_stdio(slave: OwnedFd) -> Result<()> {
    let session = getsid(None).context("reading the session id (getsid)")?;
    if session != getpid() {
        setsid().context("starting a new session for the terminal (setsid)")?;
    }
    // SAFETY: TIOCSCTTY takes an int by value; 0 means "do not steal the
    // terminal from another session".
    Errno::result(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) })
        .context("making the pty slave the controlling terminal (TIOCSCTTY)")?;

    // If the slave already sits on 0..=2, dup2 onto itself would keep its
    // close-on-exec flag and closing it afterwards would close the new stdio.
    let slave = if slave.as_raw_fd() <= libc::STDERR_FILENO {
        dup_cloexec_above_stdio(slave.as_fd()).context("moving the pty slave fd above stdio")?
    } else {
        slave
    };
    dup2_stdin(&slave).context("making the pty slave stdin")?;
    dup2_stdout(&slave).context("making the pty slave stdout")?;
    dup2_stderr(&slave).context("making the pty slave stderr")?;
    Ok(())
}

/// `/dev/console` for a container with a terminal, as runc makes it: the pty slave bound over
/// it, so that programs writing to the console reach the terminal. The init calls it after
/// pivot_root, before the root may turn read-only. `/dev` and `/dev/console` are looked up
/// without following any symlink (an image's link there is refused, not followed), the file is
/// made if missing, and the bind goes from descriptor to descriptor (`open_tree` +
/// `move_mount`), so nothing is looked up twice.
pub fn mount_console(slave: BorrowedFd) -> Result<()> {
    let dev = open(
        "/dev",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("/dev in the rootfs must be a directory, not a symlink")?;
    let target = match nix::fcntl::openat(
        &dev,
        "console",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        // O_EXCL: a file (or link) that appears meanwhile is an error, never followed.
        Err(Errno::ENOENT) => nix::fcntl::openat(
            &dev,
            "console",
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o666),
        )
        .context("cannot create /dev/console")?,
        Err(e) => return Err(e).context("cannot open /dev/console"),
    };
    let kind = nix::sys::stat::fstat(&target)
        .context("cannot stat /dev/console")?
        .st_mode
        & libc::S_IFMT;
    if kind != libc::S_IFREG && kind != libc::S_IFCHR {
        bail!("/dev/console in the rootfs is not a file or a device (a symlink?): refusing to mount the terminal there");
    }
    bind_by_fd(slave, target.as_fd()).context("cannot bind the pty slave onto /dev/console")
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// Binds the file `source` is open on over the file `target` is open on.
fn bind_by_fd(source: BorrowedFd, target: BorrowedFd) -> Result<()> {
    // SAFETY: open_tree reads the NUL-terminated empty path and returns a new fd or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            source.as_raw_fd(),
            c"".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    };
    if tree < 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOSYS) {
            return Err(err).context("open_tree");
        }
        // Before Linux 5.2: the same bind through the descriptors' magic links.
        return nix::mount::mount(
            Some(format!("/proc/self/fd/{}", source.as_raw_fd()).as_str()),
            format!("/proc/self/fd/{}", target.as_raw_fd()).as_str(),
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .context("mount --bind");
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    // SAFETY: move_mount reads the two NUL-terminated empty paths; the fds are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("move_mount");
    }
    Ok(())
}

/// Send `fd` over the unix socket `sock` with SCM_RIGHTS; the data payload is
/// `name` (runc's console-socket protocol sends the pty slave's path).
///
/// An empty `name` is sent as a single NUL byte, because a stream socket
/// carries no ancillary data without at least one data byte.
pub fn send_fd(sock: BorrowedFd, fd: BorrowedFd, name: &str) -> Result<()> {
    let payload: &[u8] = if name.is_empty() {
        b"\0"
    } else {
        name.as_bytes()
    };
    let fds = [fd.as_raw_fd()];
    let rights = [ControlMessage::ScmRights(&fds)];
    let sent = loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(payload)],
            &rights,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(Errno::EINTR) => continue,
            result => {
                break result.with_context(|| format!("sending fd for {name:?} (sendmsg)"))?;
            }
        }
    };
    // The fd travelled with the first byte; a short send only leaves data.
    let mut rest = &payload[sent..];
    while !rest.is_empty() {
        match nix::sys::socket::send(sock.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => rest = &rest[n..],
            Err(Errno::EINTR) => {}
            Err(errno) => {
                return Err(errno).with_context(|| format!("sending the name {name:?} (send)"));
            }
        }
    }
    Ok(())
}

/// Longest name [`recv_fd`] accepts; a pty path is far shorter.
const MAX_FD_NAME: usize = 4096;

/// Receive one fd sent by [`send_fd`]; returns it (close-on-exec) and the
/// name that came with it.
///
/// One recvmsg reads the name: on SOCK_STREAM it may also swallow bytes of a
/// message sent right after, so a socket that carries more than this one
/// message should be SOCK_SEQPACKET.
pub fn recv_fd(sock: BorrowedFd) -> Result<(OwnedFd, String)> {
    let mut name = [0u8; MAX_FD_NAME];
    // Room for a few fds, so a peer sending extras doesn't truncate the one we
    // want; extras are closed.
    let mut control = nix::cmsg_space!([RawFd; 4]);
    let (length, received) = loop {
        let mut iov = [IoSliceMut::new(&mut name)];
        let message = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            result => result.context("receiving a file descriptor (recvmsg)")?,
        };
        let mut received = Vec::new();
        let truncated = message.flags.contains(MsgFlags::MSG_CTRUNC);
        for cmsg in message.cmsgs().into_iter().flatten() {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: SCM_RIGHTS just installed this fd in our table;
                    // nothing else owns it.
                    received.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        if truncated {
            bail!("receiving a file descriptor: control data truncated (MSG_CTRUNC)");
        }
        break (message.bytes, received);
    };

    let mut fds = received.into_iter();
    let Some(fd) = fds.next() else {
        if length == 0 {
            bail!("receiving a file descriptor: peer closed the socket");
        }
        bail!("receiving a file descriptor: message carried no fd");
    };
    if fds.next().is_some() {
        bail!("receiving a file descriptor: message carried more than one fd");
    }
    let name = String::from_utf8_lossy(&name[..length])
        .trim_end_matches('\0')
        .to_string();
    Ok((fd, name))
}

/// The runtime's terminal in raw mode, so that keystrokes (including ^C and
/// ^Z) go to the container's pty instead of being interpreted by the host's
/// line discipline. The previous settings are restored on drop.
///
/// Window size: no signal handler is installed here; the caller puts SIGWINCH
/// in its signalfd set and calls [`PtyProxy::resize_from`] with this terminal
/// once at start and on every SIGWINCH.
pub struct RawTerminal {
    /// A dup of the terminal; termios belong to the terminal, not the fd.
    tty: OwnedFd,
    saved: Termios,
}

impl RawTerminal {
    /// Puts the runtime's stdin in raw mode if it is a terminal; `None` if not.
    pub fn enter() -> Result<Option<RawTerminal>> {
        Self::enter_on(std::io::stdin().as_fd())
    }

    /// Like [`RawTerminal::enter`] for any fd.
    pub fn enter_on(fd: BorrowedFd) -> Result<Option<RawTerminal>> {
        if !nix::unistd::isatty(fd).unwrap_or(false) {
            return Ok(None);
        }
        let saved = tcgetattr(fd).context("reading the terminal's settings (tcgetattr)")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let tty = dup_cloexec_above_stdio(fd).context("duplicating the terminal fd")?;
        tcsetattr(&tty, SetArg::TCSANOW, &raw)
            .context("putting the terminal in raw mode (tcsetattr)")?;
        Ok(Some(RawTerminal { tty, saved }))
    }
}

impl AsFd for RawTerminal {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tty.as_fd()
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // Nothing useful to do on failure: the terminal may already be gone.
        let _ = tcsetattr(&self.tty, SetArg::TCSANOW, &self.saved);
    }
}

/// Bytes buffered per direction before the proxy stops reading that side.
const PROXY_BUFFER: usize = 16 * 1024;
/// Largest single write to the output. The output may be a blocking pipe or
/// terminal that poll called writable; a pipe with room for one page takes
/// PIPE_BUF bytes without blocking.
const OUTPUT_CHUNK: usize = libc::PIPE_BUF;
/// Upper bound for [`PtyProxy::drain`], in case something left in the
/// container keeps writing; the pty itself buffers far less.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Copies the runtime's stdin to a pty master and the master's output to the
/// runtime's stdout, one non-blocking step at a time, driven by the caller's
/// poll loop (which also watches its signalfd). No threads, no signal handlers.
///
/// Only the master is switched to O_NONBLOCK (it is ours alone); stdin and
/// stdout are shared with the invoking shell, so they are only touched when
/// poll says they are ready, with bounded reads and writes. If the output
/// breaks (e.g. EPIPE), further container output is discarded so the
/// container never blocks on a full pty. EOF on stdin stops the input side;
/// nothing is sent to the container for it (like runc).
///
/// Usage (SIGWINCH and SIGCHLD are in the caller's signalfd set):
///
/// ```ignore
/// let raw = RawTerminal::enter()?; // None if stdin is not a terminal
/// let mut proxy = PtyProxy::new(master)?;
/// if let Some(terminal) = &raw {
///     proxy.resize_from(terminal.as_fd())?; // before letting the container start
/// }
/// loop {
///     let mut fds = vec![libc::pollfd { fd: signal_fd, events: libc::POLLIN, revents: 0 }];
///     fds.extend(proxy.poll_fds());
///     // poll(&mut fds, -1), retrying on EINTR
///     proxy.on_ready(&fds[1..])?; // true once the container closed its side
///     if fds[0].revents & libc::POLLIN != 0 {
///         // SIGWINCH: if let Some(t) = &raw { proxy.resize_from(t.as_fd())? }
///         // SIGCHLD: if the container process exited, break
///         // anything else: forward to the container
///     }
/// }
/// proxy.drain()?; // output still in the pty after the exit
/// drop(raw); // restore the terminal before printing anything
/// ```
pub struct PtyProxy {
    master: OwnedFd,
    /// None after EOF or a read error.
    input: Option<OwnedFd>,
    /// None after a write error; container output is discarded from then on.
    output: Option<OwnedFd>,
    to_master: Vec<u8>,
    to_output: Vec<u8>,
    master_open: bool,
}

impl PtyProxy {
    /// Proxies the runtime's own stdin and stdout (duplicated, so the proxy can
    /// close its copies without closing the runtime's 0 and 1).
    pub fn new(master: OwnedFd) -> Result<Self> {
        let input =
            dup_cloexec_above_stdio(std::io::stdin().as_fd()).context("duplicating stdin")?;
        let output =
            dup_cloexec_above_stdio(std::io::stdout().as_fd()).context("duplicating stdout")?;
        Self::with_stdio(master, input, output)
    }

    /// Proxies `input` → `master` → `output`.
    pub fn with_stdio(master: OwnedFd, input: OwnedFd, output: OwnedFd) -> Result<Self> {
        let flags = fcntl(&master, FcntlArg::F_GETFL).context("reading the pty master's flags")?;
        let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
        fcntl(&master, FcntlArg::F_SETFL(flags)).context("making the pty master non-blocking")?;
        Ok(PtyProxy {
            master,
            input: Some(input),
            output: Some(output),
            to_master: Vec::with_capacity(PROXY_BUFFER),
            to_output: Vec::with_capacity(PROXY_BUFFER),
            master_open: true,
        })
    }

    /// The pty master, e.g. for a final resize.
    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    /// What to poll now: input, master and output, in that order; an entry
    /// with fd -1 is not needed this round (poll ignores it). Call before every
    /// poll, since the wanted events change as buffers fill and drain.
    pub fn poll_fds(&self) -> [libc::pollfd; 3] {
        let entry = |fd: Option<BorrowedFd>, events: libc::c_short| libc::pollfd {
            fd: match fd {
                Some(fd) if events != 0 => fd.as_raw_fd(),
                _ => -1,
            },
            events,
            revents: 0,
        };
        let mut master_events = 0;
        if self.master_open && self.to_output.len() < PROXY_BUFFER {
            master_events |= libc::POLLIN;
        }
        if self.master_open && !self.to_master.is_empty() {
            master_events |= libc::POLLOUT;
        }
        let input_events = if self.to_master.len() < PROXY_BUFFER {
            libc::POLLIN
        } else {
            0
        };
        let output_events = if self.to_output.is_empty() {
            0
        } else {
            libc::POLLOUT
        };
        [
            entry(self.input.as_ref().map(|fd| fd.as_fd()), input_events),
            entry(Some(self.master.as_fd()), master_events),
            entry(self.output.as_ref().map(|fd| fd.as_fd()), output_events),
        ]
    }

    /// Does the I/O that the polled entries (as returned by
    /// [`PtyProxy::poll_fds`], with revents filled in) allow. Returns true once
    /// the master has hung up, i.e. the container closed every slave fd; the
    /// caller then only needs to wait for the process to exit.
    pub fn on_ready(&mut self, ready: &[libc::pollfd]) -> Result<bool> {
        let ready_events = |fd: Option<RawFd>| -> libc::c_short {
            ready
                .iter()
                .filter(|entry| fd.is_some_and(|fd| entry.fd == fd))
                .fold(0, |events, entry| events | entry.revents)
        };
        let input_events = ready_events(self.input.as_ref().map(|fd| fd.as_raw_fd()));
        let master_events = ready_events(Some(self.master.as_raw_fd()));
        let output_events = ready_events(self.output.as_ref().map(|fd| fd.as_raw_fd()));
        let hangup = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;

        if input_events & (libc::POLLIN | hangup) != 0 {
            self.read_input();
        }
        if master_events & (libc::POLLIN | hangup) != 0 {
            self.read_master()?;
        }
        // The master is non-blocking, so input just read can go out right away
        // instead of waiting for the next poll to report POLLOUT.
        if self.master_open && !self.to_master.is_empty() {
            self.write_master()?;
        }
        if output_events & (libc::POLLOUT | hangup) != 0 {
            self.write_output_chunk();
        }
        Ok(!self.master_open)
    }

    /// After the container process exited: copy what is still buffered in the
    /// pty and in the proxy to the output, blocking on the output if needed.
    pub fn drain(&mut self) -> Result<()> {
        let mut drained = 0;
        loop {
            let read = if self.master_open && drained < DRAIN_LIMIT {
                self.read_master()?
            } else {
                0
            };
            drained += read;
            while !self.to_output.is_empty() && self.output.is_some() {
                if !self.write_output_chunk() {
                    self.wait_output_writable();
                }
            }
            if read == 0 {
                return Ok(());
            }
        }
    }

    /// Copies the window size of the terminal `tty` to the pty (which sends
    /// SIGWINCH to the container's foreground process group). Call it once
    /// at start and whenever the runtime receives SIGWINCH.
    pub fn resize_from(&self, tty: BorrowedFd) -> Result<()> {
        let size = window_size(tty)?;
        set_window_size(self.master.as_fd(), size.ws_row, size.ws_col)
    }

    fn read_input(&mut self) {
        let Some(input) = &self.input else { return };
        let start = self.to_master.len();
        let room = PROXY_BUFFER.saturating_sub(start);
        if room == 0 {
            return;
        }
        self.to_master.resize(start + room, 0);
        let result = nix::unistd::read(input, &mut self.to_master[start..]);
        self.to_master
            .truncate(start + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => self.input = None,
            Ok(_) | Err(Errno::EINTR | Errno::EAGAIN) => {}
            // An unreadable stdin ends the input side like EOF would.
            Err(_) => self.input = None,
        }
    }

    /// Returns how many bytes were read.
    fn read_master(&mut self) -> Result<usize> {
        if !self.master_open {
            return Ok(0);
        }
        if self.output.is_none() {
            self.to_output.clear();
        }
        let start = self.to_output.len();
        let room = PROXY_BUFFER.saturating_sub(start);
        if room == 0 {
            return Ok(0);
        }
        self.to_output.resize(start + room, 0);
        let result = nix::unistd::read(&self.master, &mut self.to_output[start..]);
        self.to_output
            .truncate(start + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) | Err(Errno::EIO) => {
                // EIO: every slave fd is closed.
                self.master_open = false;
                self.to_master.clear();
                Ok(0)
            }
            Ok(read) => Ok(read),
            Err(Errno::EINTR | Errno::EAGAIN) => Ok(0),
            Err(errno) => Err(errno).context("reading from the pty master"),
        }
    }

    fn write_master(&mut self) -> Result<()> {
        if self.to_master.is_empty() {
            return Ok(());
        }
        match write_without_sigpipe(self.master.as_fd(), &self.to_master) {
            Ok(written) => {
                self.to_master.drain(..written);
                Ok(())
            }
            Err(Errno::EINTR | Errno::EAGAIN) => Ok(()),
            Err(Errno::EIO) => {
                // The container closed its side; its input no longer matters.
                self.to_master.clear();
                Ok(())
            }
            Err(errno) => Err(errno).context("writing to the pty master"),
        }
    }

    /// Writes at most one chunk; returns false if the output was not ready.
    fn write_output_chunk(&mut self) -> bool {
        let Some(output) = &self.output else {
            self.to_output.clear();
            return true;
        };
        let chunk = self.to_output.len().min(OUTPUT_CHUNK);
        match write_without_sigpipe(output.as_fd(), &self.to_output[..chunk]) {
            Ok(written) => {
                self.to_output.drain(..written);
                true
            }
            Err(Errno::EINTR) => true,
            Err(Errno::EAGAIN) => false,
            Err(_) => {
                // Nobody can read the output anymore (EPIPE, EIO, ...).
                self.output = None;
                self.to_output.clear();
                true
            }
        }
    }

    fn wait_output_writable(&self) {
        if let Some(output) = &self.output {
            let mut fds = [nix::poll::PollFd::new(
                output.as_fd(),
                nix::poll::PollFlags::POLLOUT,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
        }
    }
}

/// write(2), except that a pipe or socket without readers yields EPIPE and no
/// SIGPIPE, whatever the process's SIGPIPE disposition: SIGPIPE is blocked
/// around the write and one it raised is consumed, so it neither kills the
/// runtime nor shows up in a signalfd as a signal to forward.
pub(crate) fn write_without_sigpipe(fd: BorrowedFd, data: &[u8]) -> nix::Result<usize> {
    let mut sigpipe = SigSet::empty();
    sigpipe.add(Signal::SIGPIPE);
    let old_mask = sigpipe.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    let was_pending = sigpipe_pending();
    let result = nix::unistd::write(fd, data);
    if result == Err(Errno::EPIPE) && !was_pending {
        let no_wait = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: both pointers refer to live values; a null siginfo is allowed.
        unsafe { libc::sigtimedwait(sigpipe.as_ref(), std::ptr::null_mut(), &no_wait) };
    }
    old_mask.thread_set_mask()?;
    result
}

fn sigpipe_pending() -> bool {
    let mut pending = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending fills the sigset_t it is given; it is only read
    // (by sigismember) after sigpending reported success.
    unsafe {
        libc::sigpending(pending.as_mut_ptr()) == 0
            && libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 1
    }
}

/// Duplicates `fd` to a close-on-exec fd numbered 3 or higher, so that it can
/// never be confused with (or dup2'ed onto) stdin, stdout or stderr.
pub(crate) fn dup_cloexec_above_stdio(fd: BorrowedFd) -> nix::Result<OwnedFd> {
    let duplicate = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(libc::STDERR_FILENO + 1))?;
    // SAFETY: F_DUPFD_CLOEXEC just created this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(duplicate) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::socketpair;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, pipe2, ForkResult};
    use std::time::{Duration, Instant};

    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    fn pty_number(master: BorrowedFd) -> u32 {
        let mut index: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes one c_uint into a live local.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut index) };
        assert_eq!(rc, 0);
        index
    }

    #[test]
    fn pty_master_travels_over_a_socket_with_its_name() {
        let pty = open_pty().unwrap();
        assert!(
            pty.slave_name.starts_with("/dev/pts/"),
            "{}",
            pty.slave_name
        );
        assert!(Path::new(&pty.slave_name).exists());

        let (left, right) = seqpacket_pair();
        send_fd(left.as_fd(), pty.master.as_fd(), &pty.slave_name).unwrap();
        let (master, name) = recv_fd(right.as_fd()).unwrap();
        assert_eq!(name, pty.slave_name);
        assert_eq!(pty_number(master.as_fd()), pty_number(pty.master.as_fd()));
        assert_ne!(master.as_raw_fd(), pty.master.as_raw_fd());
        let flags = fcntl(&master, FcntlArg::F_GETFD).unwrap();
        assert!(
            flags & libc::FD_CLOEXEC != 0,
            "received fd must be close-on-exec"
        );
    }

    #[test]
    fn fd_with_empty_name_over_a_stream_socket() {
        let (left, right) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).unwrap();
        send_fd(left.as_fd(), write_end.as_fd(), "").unwrap();
        let (received, name) = recv_fd(right.as_fd()).unwrap();
        assert_eq!(name, "");
        nix::unistd::write(&received, b"x").unwrap();
        let mut buf = [0u8; 1];
        nix::unistd::read(&read_end, &mut buf).unwrap();
        assert_eq!(&buf, b"x");

        drop(left);
        let error = recv_fd(right.as_fd()).unwrap_err();
        assert!(format!("{error:#}").contains("peer closed"), "{error:#}");
    }

    #[test]
    fn console_socket_connect_errors_name_the_flag_and_path() {
        let error = connect_console_socket(Path::new("/nonexistent/console.sock")).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("--console-socket"), "{message}");
        assert!(message.contains("/nonexistent/console.sock"), "{message}");
    }

    #[test]
    fn console_socket_receives_master_from_child_side() {
        let dir = std::env::temp_dir().join(format!("berth-tty-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();

        let sock = connect_console_socket(&path).unwrap();
        let pty = open_pty().unwrap();
        send_fd(sock.as_fd(), pty.master.as_fd(), &pty.slave_name).unwrap();

        let (accepted, _) = listener.accept().unwrap();
        let (master, name) = recv_fd(accepted.as_fd()).unwrap();
        assert_eq!(name, pty.slave_name);
        assert_eq!(pty_number(master.as_fd()), pty_number(pty.master.as_fd()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn child_with_controlling_pty_writes_to_received_master() {
        let pty = open_pty().unwrap();
        let (left, right) = seqpacket_pair();
        send_fd(left.as_fd(), pty.master.as_fd(), &pty.slave_name).unwrap();
        let (master, name) = recv_fd(right.as_fd()).unwrap();
        let Pty {
            master: original_master,
            slave,
            slave_name,
        } = pty;
        drop(original_master);
        let (release_read, release_write) = pipe2(OFlag::O_CLOEXEC).unwrap();

        // SAFETY: the child only runs the code below and leaves with _exit;
        // glibc keeps malloc usable in a child of a threaded process.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                drop(release_write);
                let code = match give_slave_to(slave.as_fd(), 4321, 4321)
                    .and_then(|()| make_controlling_stdio(slave))
                {
                    Ok(()) => {
                        let _ = nix::unistd::write(std::io::stdout(), b"hello");
                        // Stay alive (and the session leader) until released.
                        let mut byte = [0u8; 1];
                        let _ = nix::unistd::read(&release_read, &mut byte);
                        0
                    }
                    Err(_) => 1,
                };
                // SAFETY: leave the forked test child without running the
                // parent's atexit handlers or test harness.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(slave);
                drop(release_read);
                let mut got = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(5);
                while got.len() < 5 && Instant::now() < deadline {
                    let mut fds = [nix::poll::PollFd::new(
                        master.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap();
                    let mut buf = [0u8; 64];
                    if let Ok(n) = nix::unistd::read(&master, &mut buf) {
                        got.extend_from_slice(&buf[..n]);
                    }
                }
                assert_eq!(got, b"hello");
                assert_eq!(name, slave_name);

                // The child's session owns the terminal.
                let mut session: libc::pid_t = 0;
                // SAFETY: TIOCGSID writes one pid_t into a live local.
                let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGSID, &mut session) };
                assert_eq!(rc, 0);
                assert_eq!(session, child.as_raw());

                use std::os::unix::fs::MetadataExt;
                let metadata = std::fs::metadata(&slave_name).unwrap();
                assert_eq!((metadata.uid(), metadata.gid()), (4321, 4321));

                drop(release_write);
                assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
            }
        }
    }

    #[test]
    fn raw_terminal_is_entered_and_restored() {
        let pty = open_pty().unwrap();
        let before = tcgetattr(&pty.slave).unwrap();
        assert!(before
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ICANON));
        {
            let raw = RawTerminal::enter_on(pty.slave.as_fd()).unwrap().unwrap();
            let during = tcgetattr(&pty.slave).unwrap();
            assert!(!during
                .local_flags
                .contains(nix::sys::termios::LocalFlags::ICANON));
            assert!(!during
                .local_flags
                .contains(nix::sys::termios::LocalFlags::ECHO));

            set_window_size(pty.slave.as_fd(), 42, 117).unwrap();
            let proxy = PtyProxy::with_stdio(
                dup_cloexec_above_stdio(pty.master.as_fd()).unwrap(),
                dup_cloexec_above_stdio(pty.slave.as_fd()).unwrap(),
                dup_cloexec_above_stdio(pty.slave.as_fd()).unwrap(),
            )
            .unwrap();
            // The "host terminal" here is the pty itself; resizing copies the
            // size onto the master, which reads it back identically.
            proxy.resize_from(raw.as_fd()).unwrap();
            let size = window_size(proxy.master()).unwrap();
            assert_eq!((size.ws_row, size.ws_col), (42, 117));
        }
        let after = tcgetattr(&pty.slave).unwrap();
        assert!(after
            .local_flags
            .contains(nix::sys::termios::LocalFlags::ICANON));

        let (read_end, _write_end) = pipe2(OFlag::O_CLOEXEC).unwrap();
        assert!(RawTerminal::enter_on(read_end.as_fd()).unwrap().is_none());
    }

    /// Runs the proxy until `done` says so, or fails after a few seconds.
    fn pump(proxy: &mut PtyProxy, mut done: impl FnMut(&mut PtyProxy, bool) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut master_closed = false;
        while !done(proxy, master_closed) {
            assert!(Instant::now() < deadline, "proxy made no progress");
            let mut fds = proxy.poll_fds();
            // SAFETY: fds is a live array of pollfd of the given length.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
            assert!(rc >= 0 || Errno::last() == Errno::EINTR);
            master_closed = proxy.on_ready(&fds).unwrap();
        }
    }

    fn read_available(fd: &OwnedFd, into: &mut Vec<u8>) {
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() > 0 {
            let mut buf = [0u8; 4096];
            if let Ok(n) = nix::unistd::read(fd, &mut buf) {
                into.extend_from_slice(&buf[..n]);
            }
        }
    }

    #[test]
    fn proxy_copies_both_ways_and_drains_after_hangup() {
        let pty = open_pty().unwrap();
        let mut raw = tcgetattr(&pty.slave).unwrap();
        cfmakeraw(&mut raw);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &raw).unwrap();

        let (stdin_read, stdin_write) = pipe2(OFlag::O_CLOEXEC).unwrap();
        let (stdout_read, stdout_write) = pipe2(OFlag::O_CLOEXEC).unwrap();
        let mut proxy = PtyProxy::with_stdio(pty.master, stdin_read, stdout_write).unwrap();

        // stdin → master → slave
        nix::unistd::write(&stdin_write, b"ping").unwrap();
        drop(stdin_write); // EOF on stdin must not disturb the output side
        let mut at_slave = Vec::new();
        pump(&mut proxy, |_, _| {
            read_available(&pty.slave, &mut at_slave);
            at_slave == b"ping"
        });

        // slave → master → stdout, including more than one pipe page
        let big: Vec<u8> = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut at_stdout = Vec::new();
        let mut written = 0;
        pump(&mut proxy, |_, _| {
            if written < big.len() {
                let end = (written + 1024).min(big.len());
                written += nix::unistd::write(&pty.slave, &big[written..end]).unwrap();
            }
            read_available(&stdout_read, &mut at_stdout);
            at_stdout.len() >= big.len()
        });
        assert_eq!(at_stdout, big);

        // Output left in the pty when the container side closes is drained.
        nix::unistd::write(&pty.slave, b"bye").unwrap();
        drop(pty.slave);
        proxy.drain().unwrap();
        let mut rest = Vec::new();
        read_available(&stdout_read, &mut rest);
        assert_eq!(rest, b"bye");
        pump(&mut proxy, |_, master_closed| master_closed);
    }

    #[test]
    fn proxy_survives_a_closed_stdout() {
        let pty = open_pty().unwrap();
        let (stdin_read, _stdin_write) = pipe2(OFlag::O_CLOEXEC).unwrap();
        let (stdout_read, stdout_write) = pipe2(OFlag::O_CLOEXEC).unwrap();
        drop(stdout_read);
        let mut proxy = PtyProxy::with_stdio(pty.master, stdin_read, stdout_write).unwrap();
        nix::unistd::write(&pty.slave, b"nobody reads this\n").unwrap();
        drop(pty.slave);
        // EPIPE on the output must neither kill the test nor be an error.
        pump(&mut proxy, |_, master_closed| master_closed);
        proxy.drain().unwrap();
        assert!(!sigpipe_pending());
    }
}
