//! The attach protocol between a container's monitor and the berth commands that attach to it
//! (`run` in the foreground, `start -a`, `attach`): frames of `[kind u8][length u32 BE][data]`
//! over a Unix socket. The monitor sends output and, last, the exit code; a client sends input,
//! end of input and window sizes.
//!
//! A command that starts the container gets its end of a socket pair before the container
//! exists, so no output is missed; `attach` connects to the monitor's `attach.sock` later.

use crate::runtime::tty::{window_size, RawTerminal};
use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub const SOCKET: &str = "attach.sock";

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Stdin(Vec<u8>),
    StdinEof,
    Resize {
        rows: u16,
        cols: u16,
    },
    /// The container's exit code: the last frame the monitor sends.
    Exit(i32),
    /// The container could not be started: the message, then the exit code Docker would give.
    Failed {
        code: i32,
        message: String,
    },
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Stdout(_) => 1,
            Frame::Stderr(_) => 2,
            Frame::Stdin(_) => 3,
            Frame::StdinEof => 4,
            Frame::Resize { .. } => 5,
            Frame::Exit(_) => 6,
            Frame::Failed { .. } => 7,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let data: Vec<u8> = match self {
            Frame::Stdout(d) | Frame::Stderr(d) | Frame::Stdin(d) => d.clone(),
            Frame::StdinEof => Vec::new(),
            Frame::Resize { rows, cols } => [rows.to_be_bytes(), cols.to_be_bytes()].concat(),
            Frame::Exit(code) => code.to_be_bytes().to_vec(),
            Frame::Failed { code, message } => {
                [&code.to_be_bytes()[..], message.as_bytes()].concat()
            }
        };
        let mut out = Vec::with_capacity(5 + data.len());
        out.push(self.kind());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&data);
        out
    }

    /// Reads one frame; `None` at the end of the stream.
    pub fn read(r: &mut dyn Read) -> Result<Option<Frame>> {
        let mut head = [0u8; 5];
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e).context("attach: reading a frame"),
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        anyhow::ensure!(len <= 1 << 20, "attach: a frame of {len} bytes");
        let mut data = vec![0u8; len];
        r.read_exact(&mut data).context("attach: reading a frame")?;
        let int = |d: &[u8]| {
            d.get(..4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        Ok(Some(match head[0] {
            1 => Frame::Stdout(data),
            2 => Frame::Stderr(data),
            3 => Frame::Stdin(data),
            4 => Frame::StdinEof,
            5 if len == 4 => Frame::Resize {
                rows: u16::from_be_bytes([data[0], data[1]]),
                cols: u16::from_be_bytes([data[2], data[3]]),
            },
            6 => Frame::Exit(int(&data).context("attach: short exit frame")?),
            7 => Frame::Failed {
                code: int(&data).context("attach: short failure frame")?,
                message: String::from_utf8_lossy(&data[4..]).into_owned(),
            },
            k => anyhow::bail!("attach: unknown frame kind {k}"),
        }))
    }
}

/// The path to reach the socket in `dir` by: sun_path holds 108 bytes, and the data root may be
/// deep, so a long one goes through an fd of the directory.
pub fn socket_path(dir: &Path, dir_fd: BorrowedFd) -> PathBuf {
    let direct = dir.join(SOCKET);
    if direct.as_os_str().len() < 100 {
        direct
    } else {
        PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", dir_fd.as_raw_fd()))
    }
}

/// Connects to a running container's monitor.
pub fn connect(dir: &Path) -> Result<UnixStream> {
    let d = std::fs::File::open(dir)?;
    UnixStream::connect(socket_path(dir, d.as_fd()))
        .context("cannot attach: the container's monitor does not answer")
}

/// What the client side does with its terminal and input.
pub struct ClientOptions {
    pub stdin: bool,
    pub tty: bool,
    /// ctrl-p ctrl-q, as Docker's default; empty to disable.
    pub detach_keys: Vec<u8>,
    /// Where the signals this command receives go (Docker's `--sig-proxy`, without a
    /// terminal: with one, ^C and friends travel as keys).
    pub proxy_signals: Option<Box<dyn Fn(Signal)>>,
}

/// The signals `--sig-proxy` forwards.
const PROXIED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// How an attached session ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Exited(i32),
    Failed {
        code: i32,
        message: String,
    },
    Detached,
    /// The monitor closed the connection without an exit code.
    Lost,
}

/// Relays this process's stdin to the container and its output to stdout and stderr until the
/// container exits or the user detaches.
pub fn run_client(sock: UnixStream, o: &ClientOptions) -> Result<Ended> {
    let stdin = std::io::stdin();
    let raw = if o.tty && o.stdin {
        RawTerminal::enter_on(stdin.as_fd())?
    } else {
        None
    };
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    if o.proxy_signals.is_some() && !o.tty {
        for s in PROXIED {
            set.add(s);
        }
    }
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old))?;
    let signals = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    let result = relay(&sock, o, raw.as_ref(), &signals);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    drop(raw);
    result
}

fn send_size(mut sock: &UnixStream, tty: &RawTerminal) {
    if let Ok(ws) = window_size(tty.as_fd()) {
        let _ = sock.write_all(
            &Frame::Resize {
                rows: ws.ws_row,
                cols: ws.ws_col,
            }
            .encode(),
        );
    }
}

fn relay(
    sock: &UnixStream,
    o: &ClientOptions,
    raw: Option<&RawTerminal>,
    signals: &SignalFd,
) -> Result<Ended> {
    if let Some(t) = raw {
        send_size(sock, t);
    }
    let mut stdin_open = o.stdin;
    let mut reader = std::io::BufReader::new(sock);
    let mut seen_prefix = false;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    loop {
        let mut fds = vec![
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: signals.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if stdin_open {
            fds.push(libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // A frame may already sit in the reader's buffer.
        if reader.buffer().is_empty() {
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e).context("poll");
            }
        } else {
            fds[0].revents = libc::POLLIN;
        }
        if fds[1].revents != 0 {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) => {
                        if let Some(t) = raw {
                            send_size(sock, t);
                        }
                    }
                    Ok(s) => {
                        if let Some(forward) = &o.proxy_signals {
                            forward(s);
                        }
                    }
                    Err(_) => {}
                }
            }
        }
        if stdin_open && fds[2].revents != 0 {
            let mut buf = [0u8; 8192];
            let n = match nix::unistd::read(std::io::stdin().as_fd(), &mut buf) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
                Err(_) => 0,
            };
            if n == 0 {
                stdin_open = false;
                let _ = (&*sock).write_all(&Frame::StdinEof.encode());
            } else {
                let data = &buf[..n];
                if o.tty && !o.detach_keys.is_empty() {
                    let (pass, detach) = scan_detach(data, &o.detach_keys, &mut seen_prefix);
                    if !pass.is_empty() {
                        let _ = (&*sock).write_all(&Frame::Stdin(pass).encode());
                    }
                    if detach {
                        return Ok(Ended::Detached);
                    }
                } else {
                    let _ = (&*sock).write_all(&Frame::Stdin(data.to_vec()).encode());
                }
            }
        }
        if fds[0].revents != 0 {
            match Frame::read(&mut reader)? {
                Some(Frame::Stdout(d)) => {
                    let mut out = stdout.lock();
                    out.write_all(&d)?;
                    out.flush()?;
                }
                Some(Frame::Stderr(d)) => {
                    let mut err = stderr.lock();
                    err.write_all(&d)?;
                    err.flush()?;
                }
                Some(Frame::Exit(code)) => {
                    wait_for_close(sock);
                    return Ok(Ended::Exited(code));
                }
                Some(Frame::Failed { code, message }) => {
                    wait_for_close(sock);
                    return Ok(Ended::Failed { code, message });
                }
                Some(_) => {}
                None => return Ok(Ended::Lost),
            }
        }
    }
}

/// Waits (briefly) for the monitor to close its end: it exits right after its last frame, so
/// that a command that returns has nothing of the container left running behind it.
fn wait_for_close(sock: &UnixStream) {
    let _ = sock.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut buf = [0u8; 256];
    while matches!((&*sock).read(&mut buf), Ok(n) if n > 0) {}
}

/// Passes input through until the detach sequence is typed; a prefix of it is held back until
/// the next key shows whether the sequence goes on.
fn scan_detach(data: &[u8], keys: &[u8], seen: &mut bool) -> (Vec<u8>, bool) {
    // Docker's sequences are two keys long; longer ones match from their first two keys on.
    let (first, second) = (keys[0], *keys.get(1).unwrap_or(&keys[0]));
    let mut out = Vec::with_capacity(data.len() + 1);
    for &b in data {
        if *seen {
            *seen = false;
            if b == second {
                return (out, true);
            }
            out.push(first);
            if b == first {
                *seen = true;
                continue;
            }
            out.push(b);
        } else if b == first {
            *seen = true;
        } else {
            out.push(b);
        }
    }
    (out, false)
}

/// `--detach-keys`: Docker's syntax, `ctrl-p,ctrl-q` or single characters.
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>> {
    s.split(',')
        .map(|k| {
            if let Some(c) = k.strip_prefix("ctrl-") {
                let c = c.as_bytes();
                match c {
                    [c @ b'a'..=b'z'] => Ok(c - b'a' + 1),
                    [b'@'] => Ok(0),
                    [b'['] => Ok(27),
                    [b'\\'] => Ok(28),
                    [b']'] => Ok(29),
                    [b'^'] => Ok(30),
                    [b'_'] => Ok(31),
                    _ => anyhow::bail!("Unknown character: '{k}'"),
                }
            } else if k.len() == 1 {
                Ok(k.as_bytes()[0])
            } else {
                anyhow::bail!("Unknown character: '{k}'")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Stdout(b"out".to_vec()),
            Frame::Stderr(Vec::new()),
            Frame::Stdin(b"in".to_vec()),
            Frame::StdinEof,
            Frame::Resize {
                rows: 40,
                cols: 132,
            },
            Frame::Exit(-3),
            Frame::Failed {
                code: 127,
                message: "not found".into(),
            },
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut r = &bytes[..];
        for f in &frames {
            assert_eq!(Frame::read(&mut r).unwrap().as_ref(), Some(f));
        }
        assert_eq!(Frame::read(&mut r).unwrap(), None);
    }

    #[test]
    fn detach_keys_are_found_across_reads_and_lone_prefixes_pass() {
        let keys = parse_detach_keys("ctrl-p,ctrl-q").unwrap();
        assert_eq!(keys, [16, 17]);
        let mut seen = false;
        assert_eq!(
            scan_detach(b"ab\x10", &keys, &mut seen),
            (b"ab".to_vec(), false)
        );
        assert!(seen);
        assert_eq!(scan_detach(b"\x11", &keys, &mut seen), (Vec::new(), true));
        let mut seen = false;
        assert_eq!(
            scan_detach(b"\x10x\x10\x10", &keys, &mut seen),
            (b"\x10x\x10".to_vec(), false)
        );
        assert!(parse_detach_keys("ctrl-7").is_err());
    }
}
