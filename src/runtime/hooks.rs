//! OCI lifecycle hooks (prestart, createRuntime, createContainer,
//! startContainer, poststart, poststop).
//!
//! Each hook is forked and exec'ed with exactly the spec's argv and env, the
//! container state JSON on stdin, and an optional timeout, waited for with a
//! pidfd and poll (the runtime has no threads).
//!
//! Output: the hook's stdout goes to the runtime's stderr (the runtime's stdout
//! may carry machine-readable output, e.g. `state`); its stderr is read by the
//! runtime, copied to the runtime's stderr as it arrives and its last
//! [`STDERR_TAIL`] bytes kept for the error message if the hook fails.
//!
//! The hook runs with the runtime's working directory (runc runs hooks from the
//! bundle directory), in its own process group so that a timeout kills
//! anything it started too.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{pipe2, Pid};
use oci_spec::runtime::Hook;

use super::trampoline::Trampoline;
use super::tty::{dup_cloexec_above_stdio, write_without_sigpipe};

/// How much of a failed hook's stderr ends up in the error (its last bytes).
const STDERR_TAIL: usize = 4096;
/// Upper bound for reading stderr left in the pipe after the hook exited, in
/// case something it left behind keeps writing.
const STDERR_DRAIN_LIMIT: usize = 1024 * 1024;

/// Runs `hooks` in order, each with `state_json` on stdin; stops at the first
/// failure. `kind` names the hook list in errors ("prestart",
/// "createRuntime", ...). All timeouts are checked before any hook runs.
///
/// The caller must not have SIGCHLD set to SIG_IGN (the hook could not be
/// reaped for its status) and must not reap unknown children while this runs.
pub fn run_hooks(kind: &str, hooks: &[Hook], state_json: &[u8]) -> Result<()> {
    run_hooks_via(kind, hooks, state_json, None)
}

/// [`run_hooks`] for hooks whose path resolves in the container (startContainer): the runtime's
/// process is still berth's binary there, so an image's `#!/proc/self/exe` script as the hook
/// would run berth's host binary inside the container (CVE-2019-5736). The hook is exec'd
/// through the sealed memfd `trampoline` instead, as the container's own program is.
pub fn run_hooks_via(
    kind: &str,
    hooks: &[Hook],
    state_json: &[u8],
    trampoline: Option<&Trampoline>,
) -> Result<()> {
    for (index, hook) in hooks.iter().enumerate() {
        if let Some(timeout) = hook.timeout() {
            if timeout <= 0 {
                bail!("invalid hooks.{kind}[{index}].timeout: {timeout} (must be greater than 0)");
            }
        }
    }
    for (index, hook) in hooks.iter().enumerate() {
        let name = format!("hook {kind}[{index}] ({})", hook.path().display());
        run_hook(&name, hook, state_json, trampoline)?;
    }
    Ok(())
}

/// Runs every hook even when some fail (poststop: the runtime-spec has the rest run after a
/// failure); the errors, in order.
pub fn run_all_hooks(kind: &str, hooks: &[Hook], state_json: &[u8]) -> Vec<anyhow::Error> {
    let mut errors = Vec::new();
    for (index, hook) in hooks.iter().enumerate() {
        if let Some(timeout) = hook.timeout().filter(|t| *t <= 0) {
            errors.push(anyhow::anyhow!(
                "invalid hooks.{kind}[{index}].timeout: {timeout} (must be greater than 0)"
            ));
            continue;
        }
        let name = format!("hook {kind}[{index}] ({})", hook.path().display());
        if let Err(e) = run_hook(&name, hook, state_json, None) {
            errors.push(e);
        }
    }
    errors
}

/// Everything execve needs, built before fork so the child doesn't allocate.
struct ExecImage {
    path: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// Own the strings `argv` and `envp` point into.
    _strings: Vec<CString>,
}

impl ExecImage {
    /// With `via` (the trampoline and the exec-error descriptor), the image is the trampoline's
    /// arguments followed by the hook's, for [`exec_hook_child`] to exec the memfd with.
    fn new(hook: &Hook, via: Option<(&Trampoline, RawFd)>) -> Result<Self> {
        let path_bytes = hook.path().as_os_str().as_bytes();
        let path = CString::new(path_bytes).context("path contains a NUL byte")?;
        let leading: Vec<CString> = via
            .map(|(_, report)| Trampoline::leading_args(&path, report, None))
            .unwrap_or_default();
        let hook_args: Vec<&[u8]> = match hook.args() {
            Some(args) if !args.is_empty() => args.iter().map(|arg| arg.as_bytes()).collect(),
            _ => vec![path_bytes],
        };
        let args: Vec<&[u8]> = leading
            .iter()
            .map(|a| a.as_bytes())
            .chain(hook_args)
            .collect();
        let env: Vec<&[u8]> = hook
            .env()
            .iter()
            .flatten()
            .map(|var| var.as_bytes())
            .collect();

        let mut strings = Vec::with_capacity(args.len() + env.len());
        for (index, arg) in args.iter().enumerate() {
            strings.push(
                CString::new(*arg).with_context(|| format!("args[{index}] contains a NUL byte"))?,
            );
        }
        for (index, var) in env.iter().enumerate() {
            strings.push(
                CString::new(*var).with_context(|| format!("env[{index}] contains a NUL byte"))?,
            );
        }
        // CString data lives on the heap, so the pointers stay valid when
        // `strings` moves into the struct.
        let pointers = |range: &[CString]| {
            let mut pointers: Vec<_> = range.iter().map(|s| s.as_ptr()).collect();
            pointers.push(std::ptr::null());
            pointers
        };
        let argv = pointers(&strings[..args.len()]);
        let envp = pointers(&strings[args.len()..]);
        Ok(ExecImage {
            path,
            argv,
            envp,
            _strings: strings,
        })
    }
}

/// The fds the hook gets as 0, 1 and 2, all numbered above 2 so the child's
/// dup2 calls cannot clobber each other.
struct ChildStdio {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Which step of the child failed, reported through the exec-error pipe.
const STEP_STDIO: i32 = 1;
const STEP_EXEC: i32 = 2;

fn run_hook(
    name: &str,
    hook: &Hook,
    state_json: &[u8],
    trampoline: Option<&Trampoline>,
) -> Result<()> {
    let timeout = hook.timeout().map(|seconds| seconds as u64);

    let (stdin_read, stdin_write) =
        pipe_above_stdio().with_context(|| format!("{name}: creating its stdin pipe"))?;
    let (stderr_read, stderr_write) =
        pipe_above_stdio().with_context(|| format!("{name}: creating its stderr pipe"))?;
    let (exec_error_read, exec_error_write) =
        pipe_above_stdio().with_context(|| format!("{name}: creating its exec-error pipe"))?;
    let via = trampoline.map(|t| (t, exec_error_write.as_raw_fd()));
    let image = ExecImage::new(hook, via).with_context(|| format!("{name}: invalid hook"))?;
    let stdout =
        runtime_stderr_or_null().with_context(|| format!("{name}: preparing its stdout"))?;
    let child_stdio = ChildStdio {
        stdin: stdin_read,
        stdout,
        stderr: stderr_write,
    };
    let empty_mask = SigSet::empty();
    // The child looks at it to tell whether we are still alive: its getppid() cannot tell when
    // it is born in another pid namespace than ours (0, whoever its parent), as the
    // createContainer hooks of a container joining a pid namespace are.
    let runtime =
        pidfd_open(nix::unistd::getpid()).with_context(|| format!("{name}: pidfd_open failed"))?;

    // SAFETY: the child only runs exec_hook_child, which uses data prepared
    // above, makes async-signal-safe calls only and ends in execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        exec_hook_child(
            &image,
            &child_stdio,
            (
                exec_error_write.as_raw_fd(),
                trampoline.map(Trampoline::memfd),
            ),
            empty_mask.as_ref(),
            runtime.as_raw_fd(),
        );
    }
    if pid < 0 {
        return Err(Errno::last()).with_context(|| format!("{name}: fork failed"));
    }
    let mut child = HookProcess {
        pid: Pid::from_raw(pid),
        name,
        reaped: false,
    };
    // Our copies of the child's ends must go, or we would never see EOF.
    drop(child_stdio);
    drop(exec_error_write);

    let deadline = timeout.map(|seconds| Instant::now() + Duration::from_secs(seconds));
    let exec_result = match read_exec_error(exec_error_read, deadline) {
        Ok(result) => result,
        Err(error) => {
            child.kill_and_reap()?;
            return Err(error).with_context(|| format!("{name}: waiting for it to start"));
        }
    };
    match exec_result {
        None => {}
        Some(ExecFailure::Step(step, errno)) => {
            child.reap()?;
            let what = if step == STEP_EXEC {
                "cannot execute"
            } else {
                "cannot set up stdio"
            };
            bail!(
                "{name}: {what}: {}",
                std::io::Error::from_raw_os_error(errno)
            );
        }
        Some(ExecFailure::Trampoline(text)) => {
            child.reap()?;
            // The trampoline words it for the container's program.
            let text = text.strip_prefix("process.args[0]: ").unwrap_or(&text);
            bail!("{name}: {text}");
        }
    }

    let pidfd = pidfd_open(child.pid).with_context(|| format!("{name}: pidfd_open failed"))?;
    set_nonblocking(stdin_write.as_fd()).with_context(|| format!("{name}: stdin pipe"))?;
    set_nonblocking(stderr_read.as_fd()).with_context(|| format!("{name}: stderr pipe"))?;

    let mut stdin = Some(stdin_write);
    let mut unwritten = state_json;
    let mut stderr = Some(stderr_read);
    let mut tail = StderrTail::default();

    loop {
        if unwritten.is_empty() {
            stdin = None; // EOF for the hook
        }
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    child.kill_and_reap()?;
                    bail!(
                        "{name} timed out after {} s{}",
                        timeout.unwrap_or_default(),
                        tail.describe()
                    );
                }
                // Round up so we don't spin on a sub-millisecond remainder.
                let millis = left.as_micros().div_ceil(1000);
                PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
            }
        };

        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        let stdin_slot = stdin.as_ref().map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
            fds.len() - 1
        });
        let stderr_slot = stderr.as_ref().map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        match poll(&mut fds, wait) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno).with_context(|| format!("{name}: poll failed")),
        }
        let ready = |slot: Option<usize>| {
            slot.and_then(|slot| fds[slot].revents())
                .is_some_and(|events| !events.is_empty())
        };
        let exited = ready(Some(0));
        let stdin_ready = ready(stdin_slot);
        let stderr_ready = ready(stderr_slot);
        drop(fds);

        if stdin_ready {
            if let Some(fd) = &stdin {
                match write_without_sigpipe(fd.as_fd(), unwritten) {
                    Ok(written) => unwritten = &unwritten[written..],
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    // The hook closed stdin without reading it all: its business.
                    Err(Errno::EPIPE) => unwritten = &[],
                    Err(errno) => {
                        return Err(errno)
                            .with_context(|| format!("{name}: writing the state to its stdin"));
                    }
                }
            }
        }
        if stderr_ready {
            if let Some(fd) = &stderr {
                if !copy_stderr(fd.as_fd(), &mut tail) {
                    stderr = None;
                }
            }
        }
        if exited {
            break;
        }
    }

    let status = child.reap()?;
    // Whatever the hook wrote just before exiting; don't wait for EOF, since
    // something it started may still hold the pipe.
    if let Some(fd) = &stderr {
        let mut drained = 0;
        while drained < STDERR_DRAIN_LIMIT {
            let before = tail.total;
            if !copy_stderr(fd.as_fd(), &mut tail) || tail.total == before {
                break;
            }
            drained += tail.total - before;
        }
    }
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code) => {
            bail!("{name} exited with status {code}{}", tail.describe())
        }
        WaitStatus::Signaled(_, signal, _) => {
            bail!("{name} was killed by signal {signal}{}", tail.describe())
        }
        other => bail!("{name} ended with unexpected wait status {other:?}"),
    }
}

/// Runs in the forked child. Only async-signal-safe calls: the parent may have
/// other threads (tests do) whose locks are frozen in the child.
fn exec_hook_child(
    image: &ExecImage,
    stdio: &ChildStdio,
    (exec_error, trampoline): (RawFd, Option<RawFd>),
    empty_mask: &libc::sigset_t,
    runtime: RawFd,
) -> ! {
    // SAFETY: plain syscalls on fds we hold and on pointers to data prepared
    // before fork that stays alive (this process never returns from here).
    unsafe {
        // The runtime may ignore SIGPIPE (Rust does) and block signals for its
        // signalfd; both would survive execve.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::sigprocmask(libc::SIG_SETMASK, empty_mask, std::ptr::null_mut());
        libc::setpgid(0, 0);
        // The hook dies with the runtime, which waits for it: a berth killed while a hook
        // runs leaves no hook behind. If the runtime died before this, its pidfd says so.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        let mut alive = libc::pollfd {
            fd: runtime,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut alive, 1, 0) != 0 {
            libc::_exit(1);
        }

        let targets = [
            (stdio.stdin.as_raw_fd(), libc::STDIN_FILENO),
            (stdio.stdout.as_raw_fd(), libc::STDOUT_FILENO),
            (stdio.stderr.as_raw_fd(), libc::STDERR_FILENO),
        ];
        for (from, to) in targets {
            if libc::dup2(from, to) < 0 {
                report_child_failure(exec_error, STEP_STDIO);
            }
        }
        // Don't leak the runtime's fds (sync sockets, the exec fifo...) into
        // the hook, except the exec-error pipe, which closes on exec, and the
        // trampoline's memfd (close-on-exec too). Errors (e.g. ENOSYS before
        // Linux 5.9) leave us relying on O_CLOEXEC.
        let mut keep = [exec_error, trampoline.unwrap_or(exec_error)];
        keep.sort_unstable();
        let mut from = 3 as libc::c_uint;
        for fd in keep {
            let fd = fd as libc::c_uint;
            if fd > from {
                libc::syscall(libc::SYS_close_range, from, fd - 1, 0u32);
            }
            from = from.max(fd + 1);
        }
        libc::syscall(libc::SYS_close_range, from, u32::MAX, 0u32);

        match trampoline {
            None => {
                libc::execve(
                    image.path.as_ptr(),
                    image.argv.as_ptr(),
                    image.envp.as_ptr(),
                );
            }
            Some(memfd) => {
                // The trampoline reports a failed exec of the hook on the pipe, which it
                // makes close-on-exec again before that exec.
                libc::fcntl(exec_error, libc::F_SETFD, 0);
                libc::syscall(
                    libc::SYS_execveat,
                    memfd,
                    c"".as_ptr(),
                    image.argv.as_ptr(),
                    image.envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
            }
        }
        report_child_failure(exec_error, STEP_EXEC)
    }
}

/// Child side: sends (step, errno) to the parent and exits.
fn report_child_failure(exec_error: RawFd, step: i32) -> ! {
    let errno = Errno::last_raw();
    let mut message = [0u8; 8];
    message[..4].copy_from_slice(&step.to_ne_bytes());
    message[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: write and _exit are async-signal-safe; the buffer is a live local.
    unsafe {
        libc::write(exec_error, message.as_ptr().cast(), message.len());
        libc::_exit(127)
    }
}

/// How the hook's exec failed: berth's child reports (step, errno); the exec trampoline, which
/// runs in between for hooks in the container, a sync `Error` message.
enum ExecFailure {
    Step(i32, i32),
    Trampoline(String),
}

/// Parent side: EOF means execve succeeded (the pipe is close-on-exec).
/// Bounded by the hook's deadline, in case execve itself hangs (e.g. on a
/// dead network filesystem).
fn read_exec_error(pipe: OwnedFd, deadline: Option<Instant>) -> Result<Option<ExecFailure>> {
    let mut message = [0u8; 1024];
    let mut filled = 0;
    while filled < message.len() {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            let millis = left.as_micros().div_ceil(1000);
            let wait = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, wait) {
                Ok(0) => bail!("timed out before execve completed"),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(errno) => return Err(errno).context("polling the exec-error pipe"),
            }
            if fds[0].revents().is_none_or(|events| events.is_empty()) {
                continue;
            }
        }
        match nix::unistd::read(&pipe, &mut message[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno).context("reading the hook's exec-error pipe"),
        }
    }
    let message = &message[..filled];
    if let Some(text) = Trampoline::failure_text(message) {
        return Ok(Some(ExecFailure::Trampoline(text)));
    }
    if message.len() < 8 {
        return Ok(None);
    }
    let step = i32::from_ne_bytes(message[..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(message[4..8].try_into().expect("4 bytes"));
    Ok(Some(ExecFailure::Step(step, errno)))
}

/// The forked hook; killed (with its process group) and reaped on drop if it
/// has not been reaped, so early returns leave no process or zombie.
struct HookProcess<'a> {
    pid: Pid,
    /// The hook's name for errors.
    name: &'a str,
    reaped: bool,
}

impl HookProcess<'_> {
    fn reap(&mut self) -> Result<WaitStatus> {
        loop {
            match waitpid(self.pid, None) {
                Err(Errno::EINTR) => continue,
                Ok(WaitStatus::StillAlive) => continue,
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.reaped = true;
                    return Ok(status);
                }
                Ok(_) => continue, // stop/continue reports (only with WUNTRACED etc.)
                Err(errno) => {
                    self.reaped = true; // ECHILD: someone else reaped it
                    return Err(errno).with_context(|| {
                        format!(
                            "{}: waiting for process {} (is SIGCHLD ignored?)",
                            self.name, self.pid
                        )
                    });
                }
            }
        }
    }

    fn kill_and_reap(&mut self) -> Result<WaitStatus> {
        // The hook leads its own process group (set before exec); the second
        // kill covers a child that died before setpgid.
        let _ = kill(Pid::from_raw(-self.pid.as_raw()), Signal::SIGKILL);
        let _ = kill(self.pid, Signal::SIGKILL);
        self.reap()
    }
}

impl Drop for HookProcess<'_> {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.kill_and_reap();
        }
    }
}

#[derive(Default)]
struct StderrTail {
    last: Vec<u8>,
    total: usize,
}

impl StderrTail {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len();
        self.last.extend_from_slice(data);
        if self.last.len() > STDERR_TAIL {
            self.last.drain(..self.last.len() - STDERR_TAIL);
        }
    }

    /// ": stderr: ..." for error messages, or nothing if the hook was silent.
    fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.last);
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else if self.total > self.last.len() {
            format!(": stderr (last {STDERR_TAIL} bytes): {text}")
        } else {
            format!(": stderr: {text}")
        }
    }
}

/// One read from the hook's stderr, copied to the runtime's stderr and kept in
/// `tail`. Returns false at EOF or on a read error.
fn copy_stderr(pipe: BorrowedFd, tail: &mut StderrTail) -> bool {
    let mut buffer = [0u8; 4096];
    match nix::unistd::read(pipe, &mut buffer) {
        Ok(0) => false,
        Ok(read) => {
            let data = &buffer[..read];
            tail.push(data);
            // Best effort: the runtime's stderr may be closed or broken.
            let mut rest = data;
            while let Ok(written @ 1..) = write_without_sigpipe(std::io::stderr().as_fd(), rest) {
                rest = &rest[written..];
            }
            true
        }
        Err(Errno::EAGAIN | Errno::EINTR) => true,
        Err(_) => false,
    }
}

fn pipe_above_stdio() -> nix::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    Ok((above_stdio(read)?, above_stdio(write)?))
}

fn above_stdio(fd: OwnedFd) -> nix::Result<OwnedFd> {
    if fd.as_raw_fd() > libc::STDERR_FILENO {
        Ok(fd)
    } else {
        dup_cloexec_above_stdio(fd.as_fd())
    }
}

/// The hook's stdout: the runtime's stderr, or /dev/null if that is closed.
fn runtime_stderr_or_null() -> Result<OwnedFd> {
    match dup_cloexec_above_stdio(std::io::stderr().as_fd()) {
        Ok(fd) => Ok(fd),
        Err(Errno::EBADF) => {
            let null = nix::fcntl::open(
                "/dev/null",
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .context("opening /dev/null")?;
            Ok(above_stdio(null)?)
        }
        Err(errno) => Err(errno).context("duplicating the runtime's stderr"),
    }
}

fn set_nonblocking(fd: BorrowedFd) -> Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).context("reading pipe flags")?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).context("making a pipe non-blocking")?;
    Ok(())
}

pub(crate) fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    Errno::result(fd)?;
    // SAFETY: the kernel just created this fd (it fits a c_int) and nothing
    // else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;
    use std::path::{Path, PathBuf};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("berth-hooks-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn shell_hook(script: &str, env: &[String], timeout: Option<i64>) -> Hook {
        let mut builder = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".to_string(), "-c".to_string(), script.to_string()])
            .env(env.to_vec());
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        builder.build().unwrap()
    }

    fn process_exists(pid: i32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn hook_receives_exact_state_on_stdin() {
        let dir = TempDir::new("state");
        let out = dir.file("state.json");
        let state =
            br#"{"ociVersion":"1.2.0","id":"c1","status":"created","pid":42,"bundle":"/b"}"#;
        let hook = shell_hook(r#"cat > "$OUT""#, &[format!("OUT={}", out.display())], None);
        run_hooks("prestart", &[hook], state).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), state);
    }

    #[test]
    fn large_state_is_written_in_full_or_ignored() {
        let dir = TempDir::new("large");
        let out = dir.file("state.json");
        let state: Vec<u8> = (0..1_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let reader = shell_hook(
            r#"cat > "$OUT""#,
            &[format!("OUT={}", out.display())],
            Some(10),
        );
        run_hooks("createRuntime", &[reader], &state).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), state);

        // A hook that never reads stdin: EPIPE, no SIGPIPE death, success.
        let ignorer = HookBuilder::default().path("/bin/true").build().unwrap();
        run_hooks("createRuntime", &[ignorer], &state).unwrap();
    }

    #[test]
    fn unread_stdin_never_raises_sigpipe_in_the_runtime() {
        let state = vec![b'x'; 1_000_000];
        let ignorer = HookBuilder::default().path("/bin/true").build().unwrap();
        // SAFETY: the child runs the checks below and leaves with _exit; glibc
        // keeps malloc usable in a child of a threaded process.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let mut sigpipe = SigSet::empty();
                sigpipe.add(Signal::SIGPIPE);
                // SAFETY: restoring the default action installs no handler.
                let default = unsafe {
                    nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl)
                };
                // Default action: an unguarded EPIPE write would kill us.
                let first = default.is_ok()
                    && run_hooks("prestart", std::slice::from_ref(&ignorer), &state).is_ok();
                // Blocked, as for a signalfd: nothing may be left pending.
                let blocked = sigpipe.thread_block().is_ok();
                let second = run_hooks("prestart", &[ignorer], &state).is_ok();
                let mut pending = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
                // SAFETY: sigpending fills the set, read only on success.
                let clean = unsafe {
                    libc::sigpending(pending.as_mut_ptr()) == 0
                        && libc::sigismember(pending.as_ptr(), libc::SIGPIPE) == 0
                };
                let code = if first && blocked && second && clean {
                    0
                } else {
                    1
                };
                // SAFETY: leave the forked test child without running the test harness.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                assert_eq!(waitpid(child, None).unwrap(), WaitStatus::Exited(child, 0));
            }
        }
    }

    #[test]
    fn args_and_env_are_exactly_the_spec() {
        let dir = TempDir::new("args-env");
        let out = dir.file("out");
        let script =
            r#"/usr/bin/tr '\0' '\n' < /proc/$$/cmdline > "$OUT"; /usr/bin/env > "$OUT.env""#;
        let hook = HookBuilder::default()
            .path("/bin/sh")
            .args(vec![
                "my-hook".to_string(),
                "-c".to_string(),
                script.to_string(),
                "first".to_string(),
                "second arg".to_string(),
            ])
            .env(vec![
                format!("OUT={}", out.display()),
                "FOO=bar baz".to_string(),
            ])
            .build()
            .unwrap();
        run_hooks("createContainer", &[hook], b"{}").unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("my-hook\n-c\n{script}\nfirst\nsecond arg\n")
        );
        let env = std::fs::read_to_string(dir.file("out.env")).unwrap();
        let mut vars: Vec<&str> = env
            .lines()
            .filter(|line| !line.starts_with("PWD=")) // set by the shell itself
            .collect();
        vars.sort();
        assert_eq!(
            vars,
            ["FOO=bar baz".to_string(), format!("OUT={}", out.display())]
        );
    }

    #[test]
    fn default_argv_is_the_path() {
        let dir = TempDir::new("argv0");
        let out = dir.file("out");
        // dash reads the script from stdin when run without arguments.
        let hook = HookBuilder::default()
            .path("/bin/sh")
            .env(vec![format!("OUT={}", out.display())])
            .build()
            .unwrap();
        run_hooks("poststop", &[hook], br#"echo "$0" > "$OUT""#).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "/bin/sh\n");
    }

    #[test]
    fn failure_names_hook_status_and_stderr_tail() {
        let dir = TempDir::new("fail");
        let marker = dir.file("second-ran");
        let failing = shell_hook(
            "echo to-stdout; echo 'oops: no network' >&2; exit 3",
            &[],
            None,
        );
        let second = shell_hook(
            r#"touch "$OUT""#,
            &[format!("OUT={}", marker.display())],
            None,
        );
        let error = run_hooks("prestart", &[failing, second], b"{}").unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("hook prestart[0] (/bin/sh)"), "{message}");
        assert!(message.contains("exited with status 3"), "{message}");
        assert!(message.contains("oops: no network"), "{message}");
        assert!(!message.contains("to-stdout"), "{message}");
        assert!(!marker.exists(), "hooks after a failure must not run");
    }

    #[test]
    fn stderr_tail_is_bounded() {
        let hook = shell_hook(
            "i=0; while [ $i -lt 2000 ]; do echo line-$i >&2; i=$((i+1)); done; exit 1",
            &[],
            None,
        );
        let message = format!("{:#}", run_hooks("poststart", &[hook], b"{}").unwrap_err());
        assert!(message.contains("line-1999"), "{message}");
        assert!(!message.contains("line-0\n"), "{message}");
        assert!(message.len() < STDERR_TAIL + 200, "{}", message.len());
    }

    #[test]
    fn death_by_signal_is_reported() {
        let hook = shell_hook("kill -TERM $$", &[], None);
        let message = format!(
            "{:#}",
            run_hooks("startContainer", &[hook], b"{}").unwrap_err()
        );
        assert!(message.contains("hook startContainer[0]"), "{message}");
        assert!(message.contains("killed by signal SIGTERM"), "{message}");
    }

    #[test]
    fn timeout_kills_hook_and_what_it_started() {
        let dir = TempDir::new("timeout");
        let pids = dir.file("pids");
        let hook = shell_hook(
            r#"sleep 5 & echo $$ $! > "$OUT"; wait"#,
            &[format!("OUT={}", pids.display())],
            Some(1),
        );
        let started = Instant::now();
        let error = run_hooks("prestart", &[hook], b"{}").unwrap_err();
        let elapsed = started.elapsed();
        let message = format!("{error:#}");
        assert!(
            message.contains("hook prestart[0] (/bin/sh) timed out after 1 s"),
            "{message}"
        );
        assert!(elapsed >= Duration::from_millis(950), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(2000), "{elapsed:?}");

        let pids: Vec<i32> = std::fs::read_to_string(&pids)
            .unwrap()
            .split_whitespace()
            .map(|pid| pid.parse().unwrap())
            .collect();
        // The hook itself is reaped by us: no zombie, no process.
        assert!(!process_exists(pids[0]), "hook {} still exists", pids[0]);
        // Its background sleep died with the process group (and was reaped by
        // init once orphaned).
        let deadline = Instant::now() + Duration::from_secs(2);
        while process_exists(pids[1]) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!process_exists(pids[1]), "sleep {} survived", pids[1]);
    }

    #[test]
    fn exec_failure_is_reported_clearly() {
        let hook = HookBuilder::default()
            .path("/nonexistent/hook")
            .build()
            .unwrap();
        let message = format!(
            "{:#}",
            run_hooks("createRuntime", &[hook], b"{}").unwrap_err()
        );
        assert!(
            message.contains("hook createRuntime[0] (/nonexistent/hook): cannot execute"),
            "{message}"
        );
        assert!(message.contains("No such file or directory"), "{message}");
    }

    #[test]
    fn invalid_timeout_is_rejected_before_running_anything() {
        let dir = TempDir::new("bad-timeout");
        let marker = dir.file("ran");
        let first = shell_hook(
            r#"touch "$OUT""#,
            &[format!("OUT={}", marker.display())],
            None,
        );
        let second = shell_hook("true", &[], Some(0));
        let message = format!(
            "{:#}",
            run_hooks("prestart", &[first, second], b"{}").unwrap_err()
        );
        assert!(message.contains("hooks.prestart[1].timeout"), "{message}");
        assert!(!marker.exists());
    }

    #[test]
    fn lingering_background_process_does_not_delay_success() {
        // The background sleep keeps the stderr pipe open after the hook exits.
        let hook = shell_hook("sleep 3 & echo started >&2; exit 0", &[], Some(10));
        let started = Instant::now();
        run_hooks("poststart", &[hook], b"{}").unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn hook_does_not_inherit_runtime_fds() {
        let dir = TempDir::new("fds");
        let out = dir.file("fds");
        let (_keep_read, _keep_write) = nix::unistd::pipe().unwrap(); // not CLOEXEC
        let hook = shell_hook(
            r#"ls /proc/self/fd > "$OUT""#,
            &[format!("OUT={}", out.display())],
            None,
        );
        run_hooks("prestart", &[hook], b"{}").unwrap();
        let fds = std::fs::read_to_string(&out).unwrap();
        let mut fds: Vec<u32> = fds.lines().map(|fd| fd.parse().unwrap()).collect();
        fds.sort();
        // 0-2, plus the fd of "$OUT" and the one `ls` opens for /proc/self/fd.
        assert!(fds.iter().filter(|&&fd| fd > 2).count() <= 2, "{fds:?}");
    }
}
