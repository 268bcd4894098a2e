//! A running container's monitor (conmon's job): a process forked by the berth command that
//! starts the container, on its own session, the parent of the container's init. It holds the
//! container's standard streams (pipes, or the terminal's master side), writes the log, serves
//! `attach`, records the exit code and time, applies the restart policy with Docker's backoff,
//! and removes a `--rm` container. It is berth's own code in a forked process: no second
//! program is executed, and it stays out of the container's start path but for the fork.
//!
//! The starting command learns whether the container started through a pipe: `ok`, or
//! `err CODE MESSAGE` with the exit code Docker gives for that failure.

use super::attach::{self, Frame};
use super::health::HealthChecker;
use super::logs;
use super::record::{Container, Engine, Status};
use super::remove;
use crate::image::time::now_rfc3339_nanos;
use crate::runtime::container::{self as runtime, CreateOptions};
use crate::runtime::state::ProcessId;
use anyhow::{bail, Context, Result};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, ForkResult, Pid};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Starts container `c`: forks its monitor, which creates and starts it. Returns when the
/// container runs, or with the error that kept it from starting (and the exit code for it).
/// `attached` is handed to the monitor as a client from before the start.
pub fn launch(
    engine: &Engine,
    c: &Container,
    attached: Option<UnixStream>,
) -> std::result::Result<(), StartError> {
    let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| StartError::internal(format!("pipe: {e}")))?;
    // SAFETY: berth is single-threaded here; the child only runs this process's own code.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(StartError::internal(format!("fork: {e}"))),
        Ok(ForkResult::Child) => {
            drop(status_r);
            // The monitor is a grandchild on its own session: the starting command may exit
            // at once, and the container is nobody's job control business.
            let _ = nix::unistd::setsid();
            // SAFETY: as above; the intermediate process exits without running destructors.
            match unsafe { nix::unistd::fork() } {
                Ok(ForkResult::Child) => {
                    // Never unwind into the starting command's frames, which this process
                    // shares but whose fds it closed.
                    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        monitor_main(engine, c.clone(), status_w, attached)
                    }))
                    .unwrap_or(101);
                    // SAFETY: ends the monitor without running the starting command's
                    // destructors (its stdout was flushed before the fork).
                    unsafe { libc::_exit(code) }
                }
                // SAFETY: _exit ends the intermediate at once, as a child of fork must.
                _ => unsafe { libc::_exit(0) },
            }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(status_w);
            drop(attached);
            let _ = waitpid(child, None);
            let mut answer = String::new();
            let _ = std::fs::File::from(status_r).read_to_string(&mut answer);
            parse_answer(&answer)
        }
    }
}

/// Why a container did not start, with the exit code Docker gives for it.
#[derive(Debug)]
pub struct StartError {
    pub code: i32,
    pub message: String,
}

impl StartError {
    fn internal(message: String) -> StartError {
        StartError { code: 125, message }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StartError {}

fn parse_answer(answer: &str) -> std::result::Result<(), StartError> {
    if answer == "ok" {
        return Ok(());
    }
    if let Some(rest) = answer.strip_prefix("err ") {
        let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
        return Err(StartError {
            code: code.parse().unwrap_or(125),
            message: message.to_string(),
        });
    }
    Err(StartError::internal(
        "the container's monitor died before it could start the container".into(),
    ))
}

/// Docker's exit codes for a container that could not start: 127 for a command that is not
/// there, 126 for one that cannot be run, 125 for the rest.
pub fn start_failure_code(message: &str) -> i32 {
    let m = message.to_ascii_lowercase();
    if m.contains("executable file not found") || m.contains("no such file or directory") {
        127
    } else if m.contains("permission denied")
        || m.contains("is a directory")
        || m.contains("exec format error")
        || m.contains("not executable")
    {
        126
    } else {
        125
    }
}

/// The monitor's life; returns its exit code.
fn monitor_main(
    engine: &Engine,
    mut c: Container,
    status_w: OwnedFd,
    attached: Option<UnixStream>,
) -> i32 {
    let keep: Vec<RawFd> = [status_w.as_raw_fd()]
        .into_iter()
        .chain(attached.as_ref().map(|s| s.as_raw_fd()))
        .collect();
    close_inherited_fds(&keep);
    // Before anything else, the monitor records itself: from here on `rm -f` kills it
    // (and its children with it) before it removes what the start made. A `rm` that marked
    // the container first wins: the monitor then makes nothing.
    if let Err(message) = record_monitor(&mut c) {
        let _ = std::fs::File::from(status_w).write_all(format!("err 125 {message}").as_bytes());
        return 1;
    }
    let _ = std::env::set_current_dir("/");
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let devnull = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        Ok(f) => OwnedFd::from(f),
        Err(_) => return 1,
    };
    let monitor_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(c.dir.join("monitor.log"))
        .map(OwnedFd::from)
        .unwrap_or_else(|_| devnull.try_clone().expect("dup /dev/null"));
    let quiet = Quiet {
        devnull: &devnull,
        log: &monitor_log,
    };
    quiet.apply();
    give_back_inherited_memory();
    let mut m = Monitor {
        engine,
        clients: attached.into_iter().map(Client::new).collect(),
        listener: None,
        status_w: Some(status_w),
        quiet,
        dns: None,
    };
    match m.run(&mut c) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "berth monitor: {e:#}");
            1
        }
    }
}

/// The file where a starting monitor records itself before the state says it runs.
pub const MONITOR_FILE: &str = "monitor.json";

/// Records this process as the container's monitor (in [`MONITOR_FILE`], under the
/// container's lock), unless a `rm` has already marked the container for removal (or removed
/// it). A file made anew, not the state replaced: ext4 flushes a file renamed over another.
fn record_monitor(c: &mut Container) -> std::result::Result<(), String> {
    let me = ProcessId::me().map_err(|e| format!("{e:#}"))?;
    let id = c.id().to_string();
    let fail = |e: &dyn std::fmt::Display| format!("container {id}: {e}");
    let _lock = c.lock().map_err(|e| format!("{e:#}"))?;
    c.reload();
    if c.state.status == Status::Removing {
        return Err(format!(
            "container {id} is marked for removal and cannot be started"
        ));
    }
    let path = c.dir.join(MONITOR_FILE);
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| fail(&e))?;
    f.write_all(&serde_json::to_vec(&me).map_err(|e| fail(&e))?)
        .map_err(|e| fail(&e))
}

/// The monitor a start recorded in [`MONITOR_FILE`], if any (read under the container's lock).
pub fn recorded_monitor(c: &Container) -> Option<ProcessId> {
    serde_json::from_slice(&std::fs::read(c.dir.join(MONITOR_FILE)).ok()?).ok()
}

/// Closes every fd this process got from the command that forked it but `keep`: a lock it
/// held (a container's, the store's) must not stay held for the container's life.
fn close_inherited_fds(keep: &[RawFd]) {
    let fds: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing an fd this process inherited and no Rust object owns.
            unsafe { libc::close(fd) };
        }
    }
}

/// Returns to the kernel what the monitor inherited from the command that forked it and will
/// not use: the heap's free pages and the stack below this frame (the command's deeper calls,
/// argument parsing above all). A monitor lives as long as its container, one per container.
fn give_back_inherited_memory() {
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe { libc::malloc_trim(0) };
    let here = 0u8;
    let sp = std::ptr::addr_of!(here) as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some(low) = maps.lines().find(|l| l.ends_with("[stack]")).and_then(|l| {
        let (range, _) = l.split_once(' ')?;
        usize::from_str_radix(range.split_once('-')?.0, 16).ok()
    }) else {
        return;
    };
    // What lies below the stack pointer is free; a margin stays for the calls to come.
    let page = 4096;
    let top = (sp.saturating_sub(32 * 1024)) & !(page - 1);
    if top > low {
        // SAFETY: the range is inside the stack mapping and below every live frame (the
        // margin covers the monitor's own calls); MADV_DONTNEED gives zero pages on next use.
        unsafe { libc::madvise(low as *mut libc::c_void, top - low, libc::MADV_DONTNEED) };
    }
}

/// Where the monitor's own stdio points outside the instants the runtime gives it to the
/// container: input and output nowhere, errors to `monitor.log`.
struct Quiet<'a> {
    devnull: &'a OwnedFd,
    log: &'a OwnedFd,
}

impl Quiet<'_> {
    fn apply(&self) {
        let _ = dup2_stdin(self.devnull);
        let _ = dup2_stdout(self.devnull);
        let _ = dup2_stderr(self.log);
    }
}

struct Client {
    sock: UnixStream,
    /// Bytes read that do not yet make a whole frame.
    buf: Vec<u8>,
}

impl Client {
    fn new(sock: UnixStream) -> Client {
        Client {
            sock,
            buf: Vec::new(),
        }
    }
}

/// One run of the container's process.
struct Running {
    pid: i32,
    pidfd: OwnedFd,
    /// stdout and stderr pipes, or the terminal's master side (as stdout).
    outputs: Vec<(usize, OwnedFd)>,
    /// Where input goes: the stdin pipe or the terminal's master side.
    stdin: Option<OwnedFd>,
    tty: bool,
}

struct Monitor<'a> {
    engine: &'a Engine,
    clients: Vec<Client>,
    listener: Option<UnixListener>,
    status_w: Option<OwnedFd>,
    quiet: Quiet<'a>,
    /// The container's DNS server (Docker's 127.0.0.11) on user networks.
    dns: Option<crate::network::resolver::Resolver>,
}

impl Monitor<'_> {
    fn run(&mut self, c: &mut Container) -> Result<()> {
        let rotation = if c.record.host_config.log_config.kind == "none" {
            None
        } else {
            Some(logs::Rotation::from_opts(
                &c.record.host_config.log_config.config,
            )?)
        };
        let mut log = rotation
            .map(|r| logs::Writer::open(&c.log_path(), r))
            .transpose()?;
        self.listener = Some(listen(&c.dir)?);
        let mut backoff = Duration::from_millis(100);
        loop {
            let started_at = Instant::now();
            let exit = match self.start(c) {
                Ok(running) => {
                    self.answer("ok");
                    self.supervise(c, running, log.as_mut())?
                }
                Err(e) => {
                    let message = format!("{e:#}");
                    let code = start_failure_code(&message);
                    let first = self.status_w.is_some();
                    c.update_state(|s| {
                        s.status = if first && s.status == Status::Created {
                            Status::Created
                        } else {
                            Status::Exited
                        };
                        s.pid = 0;
                        s.exit_code = code;
                        s.error = message.clone();
                        s.monitor = None;
                        s.finished_at = now_rfc3339_nanos();
                    })?;
                    release_addresses(self.engine, c);
                    if first {
                        self.answer(&format!("err {code} {message}"));
                        self.send_all(&Frame::Failed { code, message });
                        return Ok(());
                    }
                    code
                }
            };
            // Its processes are gone, and with its network namespace its veth pairs: the
            // addresses go back (a restart takes new ones).
            release_addresses(self.engine, c);
            c.reload();
            if !self.restarts(c, exit) {
                break;
            }
            // Docker's backoff: doubling from 100 ms, back to the start after a run of 10 s.
            if started_at.elapsed() >= Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            c.update_state(|s| {
                s.status = Status::Restarting;
                s.restart_count += 1;
            })?;
            if !self.wait_out(c, backoff) {
                break;
            }
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
        if let Some(l) = log.as_mut() {
            let _ = l.flush();
        }
        self.listener = None;
        let _ = std::fs::remove_file(c.dir.join(attach::SOCKET));
        let code = c.state.exit_code;
        crate::network::publish::release_ports();
        if c.record.host_config.auto_remove {
            remove::remove(self.engine, c, remove::Caller::Monitor)?;
        } else {
            // Unless a later start's monitor has recorded itself meanwhile (a start may
            // follow once the exit is recorded).
            let me = std::process::id() as i32;
            c.update_state_if(|s| {
                let mine = s.monitor.is_some_and(|m| m.pid == me);
                if mine {
                    s.monitor = None;
                }
                mine
            })?;
        }
        self.send_all(&Frame::Exit(code));
        crate::network::publish::after_exit(self.engine, c);
        Ok(())
    }

    fn answer(&mut self, text: &str) {
        if let Some(fd) = self.status_w.take() {
            let _ = std::fs::File::from(fd).write_all(text.as_bytes());
        }
    }

    /// Creates and starts the container's process through the runtime core.
    fn start(&mut self, c: &mut Container) -> Result<Running> {
        let tty = c.record.config.tty;
        let (stdin_pipe, out_pipe, err_pipe) = if tty {
            (None, None, None)
        } else {
            let stdin = if c.record.config.open_stdin {
                Some(cloexec_pipe()?)
            } else {
                None
            };
            (stdin, Some(cloexec_pipe()?), Some(cloexec_pipe()?))
        };
        let opts = CreateOptions {
            id: c.record.id.clone(),
            bundle: c.bundle_dir(),
            pid_file: None,
            console_socket: None,
            no_pivot: false,
            no_new_keyring: false,
            preserve_fds: 0,
            ..Default::default()
        };
        // The container's standard streams are this process's while it is created.
        if let Some((r, _)) = &stdin_pipe {
            dup2_stdin(r)?;
        }
        if let (Some((_, out)), Some((_, err))) = (&out_pipe, &err_pipe) {
            dup2_stdout(out)?;
            dup2_stderr(err)?;
        }
        // Published ports: the host's sockets held before anything is made.
        crate::network::publish::reserve(c)?;
        let pending = runtime::create_supervised(&self.engine.runtime_globals(), &opts);
        self.quiet.apply();
        let pending = pending?;
        let mode = c.record.host_config.network_mode.as_str();
        if mode == "none" {
            // Its own network namespace: the loopback up, as Docker's `none` has it.
            crate::network::loopback::bring_up_in(pending.pid())?;
        }
        // Bridge networks: eth0 (and eth1 ... for those `network connect` added) on their
        // bridges, before the program runs.
        // On a user network its DNS server's sockets and DNAT, made while the networks are
        // joined; then its /etc/hosts with its addresses, and the server; then its published
        // ports.
        let dns = crate::network::names::prepare(c, pending.pid())?;
        let leases = crate::network::endpoints::join_all(self.engine, c, pending.pid())?;
        self.dns = crate::network::names::on_start(self.engine, c, &leases, dns)?;
        crate::network::publish::publish(self.engine, c, &leases)?;
        let started = pending.start()?;
        let pidfd = pidfd_open(started.pid)?;
        let now = now_rfc3339_nanos();
        let me = ProcessId::me()?;
        let health = c
            .record
            .config
            .healthcheck
            .as_ref()
            .filter(|h| super::health::is_enabled(h))
            .map(|_| super::record::Health {
                status: "starting".into(),
                ..Default::default()
            });
        c.update_state(|s| {
            s.status = Status::Running;
            s.pid = started.pid;
            s.started_at = now;
            s.finished_at = super::record::ZERO_TIME.to_string();
            s.exit_code = 0;
            s.error.clear();
            s.oom_killed = false;
            s.monitor = Some(me);
            s.stopped_by_user = false;
            s.health = health;
            s.ports = crate::network::publish::bindings();
        })?;
        Ok(match started.pty_master {
            Some(master) => {
                set_nonblocking(master.as_fd())?;
                Running {
                    pid: started.pid,
                    pidfd,
                    stdin: Some(master.try_clone()?),
                    outputs: vec![(0, master)],
                    tty: true,
                }
            }
            None => {
                let out = out_pipe.context("internal: no stdout pipe")?.0;
                let err = err_pipe.context("internal: no stderr pipe")?.0;
                set_nonblocking(out.as_fd())?;
                set_nonblocking(err.as_fd())?;
                Running {
                    pid: started.pid,
                    pidfd,
                    stdin: stdin_pipe.map(|(_, w)| w),
                    outputs: vec![(0, out), (1, err)],
                    tty: false,
                }
            }
        })
    }

    /// Relays output to the log and the clients and input from the clients until the process
    /// exits; then removes the runtime's container and records the exit. Returns the exit code.
    fn supervise(
        &mut self,
        c: &mut Container,
        mut run: Running,
        mut log: Option<&mut logs::Writer>,
    ) -> Result<i32> {
        let mut health = c
            .record
            .config
            .healthcheck
            .clone()
            .filter(super::health::is_enabled)
            .map(|h| HealthChecker::new(h, Instant::now()));
        let stdin_once = c.record.config.stdin_once;
        let code = loop {
            let mut fds: Vec<libc::pollfd> = Vec::new();
            let mut push = |fd: RawFd| {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
            };
            push(run.pidfd.as_raw_fd());
            push(self.listener.as_ref().map_or(-1, |l| l.as_raw_fd()));
            for (_, fd) in &run.outputs {
                push(fd.as_raw_fd());
            }
            for cl in &self.clients {
                push(cl.sock.as_raw_fd());
            }
            if let Some(h) = &health {
                if let Some(fd) = h.poll_fd() {
                    push(fd);
                }
            }
            let dns_at = fds.len();
            for (fd, events) in self.dns.as_ref().map(|d| d.fds()).unwrap_or_default() {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
            }
            let timeout = health
                .as_ref()
                .map_or(-1, |h| h.next_timeout_ms(Instant::now()));
            let timeout = match self.dns.as_ref().map(|d| d.timeout_ms(Instant::now())) {
                None | Some(-1) => timeout,
                Some(t) if timeout == -1 => t,
                Some(t) => t.min(timeout),
            };
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e).context("poll");
            }
            let nout = run.outputs.len();
            // Output first, so that what the process wrote before it exited is kept.
            // Backwards: reading at its end drops an output from the list.
            for i in (0..nout).rev() {
                if fds[2 + i].revents != 0 {
                    self.read_output(&mut run, i, log.as_deref_mut());
                }
            }
            let client_ready: Vec<bool> = fds[2 + nout..2 + nout + self.clients.len()]
                .iter()
                .map(|p| p.revents != 0)
                .collect();
            self.serve_clients(&client_ready, &mut run, stdin_once);
            if fds[1].revents != 0 {
                if let Some(Ok((sock, _))) = self.listener.as_ref().map(|l| l.accept()) {
                    self.clients.push(Client::new(sock));
                }
            }
            if let Some(d) = self.dns.as_mut() {
                d.serve(
                    &fds[dns_at..]
                        .iter()
                        .map(|p| p.revents != 0)
                        .collect::<Vec<_>>(),
                );
            }
            if let Some(h) = health.as_mut() {
                if let Some(change) = h.step(self.engine, c, Instant::now()) {
                    c.update_state(|s| s.health = Some(change))?;
                }
            }
            if fds[0].revents != 0 {
                break wait_exit(run.pid)?;
            }
        };
        if let Some(h) = health.as_mut() {
            h.abandon();
        }
        self.dns = None;
        let oom = super::oom::oom_killed(self.engine, c.id());
        // Whatever the init left (children holding the pipes open) dies with the runtime's
        // container; then the pipes reach their end.
        let _ = runtime::delete(&self.engine.runtime_globals(), c.id(), true);
        let deadline = Instant::now() + Duration::from_secs(2);
        while !run.outputs.is_empty() && Instant::now() < deadline {
            let mut fds: Vec<libc::pollfd> = run
                .outputs
                .iter()
                .map(|(_, fd)| libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
            for i in (0..fds.len()).rev() {
                if fds[i].revents != 0 {
                    self.read_output(&mut run, i, log.as_deref_mut());
                }
            }
        }
        if let Some(l) = log {
            l.flush()?;
        }
        let now = now_rfc3339_nanos();
        // A `--rm` container (which has no restart policy) is removed next: its exit is
        // recorded as the removal's start, one state write instead of two.
        let removed_next = c.record.host_config.auto_remove
            && matches!(c.record.host_config.restart_policy.name.as_str(), "" | "no");
        c.update_state(|s| {
            if s.status != Status::Removing {
                s.status = if removed_next {
                    Status::Removing
                } else {
                    Status::Exited
                };
            }
            s.pid = 0;
            s.exit_code = code;
            s.finished_at = now;
            s.oom_killed = oom;
            if let Some(h) = s.health.as_mut() {
                h.status = "unhealthy".into();
            }
        })?;
        Ok(code)
    }

    /// Reads what output `i` has; at its end (or error) it is dropped from the set.
    fn read_output(&mut self, run: &mut Running, i: usize, log: Option<&mut logs::Writer>) {
        let mut buf = [0u8; 32 * 1024];
        let (stream, fd) = &run.outputs[i];
        let stream = *stream;
        match nix::unistd::read(fd.as_fd(), &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => {
                run.outputs.remove(i);
            }
            Ok(n) => {
                let data = &buf[..n];
                if let Some(l) = log {
                    let _ = l.write(stream, data);
                }
                let frame = if stream == 0 {
                    Frame::Stdout(data.to_vec())
                } else {
                    Frame::Stderr(data.to_vec())
                };
                self.send_all(&frame);
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(_) => {
                run.outputs.remove(i);
            }
        }
    }

    fn send_all(&mut self, frame: &Frame) {
        let bytes = frame.encode();
        // A client that cannot take it is gone.
        self.clients
            .retain_mut(|cl| (&cl.sock).write_all(&bytes).is_ok());
    }

    fn serve_clients(&mut self, ready: &[bool], run: &mut Running, stdin_once: bool) {
        let mut gone = Vec::new();
        for (i, cl) in self.clients.iter_mut().enumerate() {
            if !ready.get(i).copied().unwrap_or(false) {
                continue;
            }
            let mut buf = [0u8; 16 * 1024];
            match (&cl.sock).read(&mut buf) {
                Ok(0) | Err(_) => {
                    gone.push(i);
                    continue;
                }
                Ok(n) => cl.buf.extend_from_slice(&buf[..n]),
            }
            loop {
                let mut r = &cl.buf[..];
                let before = r.len();
                if before < 5 {
                    break;
                }
                let len = u32::from_be_bytes([r[1], r[2], r[3], r[4]]) as usize;
                if before < 5 + len {
                    break;
                }
                let frame = Frame::read(&mut r);
                cl.buf.drain(..5 + len);
                match frame {
                    Ok(Some(Frame::Stdin(d))) => {
                        if let Some(w) = &run.stdin {
                            let _ = write_all_fd(w.as_fd(), &d);
                        }
                    }
                    Ok(Some(Frame::StdinEof)) => {
                        if run.tty {
                            // A terminal has no end of input of its own: ^D is the user's.
                        } else if stdin_once {
                            run.stdin = None;
                        }
                    }
                    Ok(Some(Frame::Resize { rows, cols })) => {
                        if let (true, Some(w)) = (run.tty, &run.stdin) {
                            let _ = crate::runtime::tty::set_window_size(w.as_fd(), rows, cols);
                        }
                    }
                    _ => {}
                }
            }
        }
        for i in gone.into_iter().rev() {
            self.clients.remove(i);
        }
    }

    /// Whether the restart policy starts the container again after it exited with `code`.
    fn restarts(&self, c: &Container, code: i32) -> bool {
        if c.state.stopped_by_user || c.state.status == Status::Removing {
            return false;
        }
        let p = &c.record.host_config.restart_policy;
        match p.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                code != 0
                    && (p.maximum_retry_count == 0 || c.state.restart_count < p.maximum_retry_count)
            }
            _ => false,
        }
    }

    /// Waits `d` before a restart, serving attach; false when a `stop` or `rm` came meanwhile.
    fn wait_out(&mut self, c: &mut Container, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
            c.reload();
            if c.state.stopped_by_user || c.state.status == Status::Removing {
                let _ = c.update_state(|s| {
                    if s.status == Status::Restarting {
                        s.status = Status::Exited;
                    }
                });
                return false;
            }
        }
        true
    }
}

fn listen(dir: &std::path::Path) -> Result<UnixListener> {
    let _ = std::fs::remove_file(dir.join(attach::SOCKET));
    let d = std::fs::File::open(dir)?;
    let l = UnixListener::bind(attach::socket_path(dir, d.as_fd()))
        .context("cannot make the attach socket")?;
    Ok(l)
}

fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")
}

fn set_nonblocking(fd: BorrowedFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

fn write_all_fd(fd: BorrowedFd, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => bail!("write: {e}"),
        }
    }
    Ok(())
}

pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("pidfd_open");
    }
    // SAFETY: the kernel just returned this fd, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Reaps `pid` and gives its status as a shell does: the code, or 128 + the signal.
fn wait_exit(pid: i32) -> Result<i32> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("waitpid({pid}): {e}"),
        }
    }
}

/// Gives back the addresses of a container whose processes have ended (none for the networks
/// that are not bridges).
pub fn release_addresses(engine: &Engine, c: &Container) {
    use crate::network::endpoints;
    if !endpoints::is_bridge_mode(&c.record.host_config.network_mode)
        && endpoints::connections(c).is_empty()
    {
        return;
    }
    if let Ok(networks) = crate::network::store::Store::open(&engine.data_root) {
        let _ = crate::network::attach::release_exited(&networks, c.id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_get_dockers_exit_codes() {
        assert_eq!(
            start_failure_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_failure_code("exec /etc: permission denied"), 126);
        assert_eq!(start_failure_code("cgroup: no space left"), 125);
        assert!(parse_answer("ok").is_ok());
        let e = parse_answer("err 127 exec: nope").unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (127, "exec: nope"));
        assert_eq!(parse_answer("").unwrap_err().code, 125);
    }
}
