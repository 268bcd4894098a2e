//! Health checks, run by the monitor as Docker runs them: the image's or `--health-cmd`'s test
//! every interval as an `exec` in the container, a timeout, a start period whose failures do
//! not count, `retries` failures in a row for "unhealthy", the last five results kept.
//!
//! A check runs in a child of the monitor (forked, no second program), whose output comes back
//! through a pipe the monitor polls with the container's streams.

use super::record::{Container, Engine, Health, HealthLog, Healthcheck};
use crate::image::time::now_rfc3339_nanos;
use crate::runtime::container::{self as runtime, ExecOptions};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
const KEPT_RESULTS: usize = 5;
const MAX_OUTPUT: usize = 4096;

/// A check that is not `NONE` and has a command.
pub fn is_enabled(h: &Healthcheck) -> bool {
    !h.test.is_empty() && h.test[0] != "NONE"
}

/// The command a check runs: `CMD args...` as they are, `CMD-SHELL cmd` through /bin/sh.
pub fn command_of(h: &Healthcheck) -> Vec<String> {
    match h.test.first().map(String::as_str) {
        Some("CMD") => h.test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")],
        _ => h.test.clone(),
    }
}

fn nanos_or(n: i64, default: Duration) -> Duration {
    if n > 0 {
        Duration::from_nanos(n as u64)
    } else {
        default
    }
}

struct Probe {
    pid: i32,
    output: Option<OwnedFd>,
    collected: Vec<u8>,
    started: Instant,
    start_time: String,
}

pub struct HealthChecker {
    check: Healthcheck,
    born: Instant,
    next: Instant,
    probe: Option<Probe>,
}

impl HealthChecker {
    pub fn new(check: Healthcheck, now: Instant) -> HealthChecker {
        let interval = nanos_or(check.interval, DEFAULT_INTERVAL);
        HealthChecker {
            check,
            born: now,
            next: now + interval,
            probe: None,
        }
    }

    fn timeout(&self) -> Duration {
        nanos_or(self.check.timeout, DEFAULT_TIMEOUT)
    }

    /// The pipe of the running check's output, to poll.
    pub fn poll_fd(&self) -> Option<RawFd> {
        self.probe
            .as_ref()
            .and_then(|p| p.output.as_ref())
            .map(|f| f.as_raw_fd())
    }

    /// How long the monitor may sleep before this needs it (poll's timeout).
    pub fn next_timeout_ms(&self, now: Instant) -> i32 {
        let due = match &self.probe {
            // The output pipe wakes the monitor when the check ends; the deadline when it hangs.
            Some(p) if p.output.is_some() => p.started + self.timeout(),
            Some(_) => now + Duration::from_millis(10),
            None => self.next,
        };
        due.saturating_duration_since(now)
            .as_millis()
            .min(i32::MAX as u128) as i32
    }

    /// Starts a check when due, reads a running one, and returns the new health when one ended.
    pub fn step(&mut self, engine: &Engine, c: &Container, now: Instant) -> Option<Health> {
        if self.probe.is_none() {
            if now >= self.next {
                self.probe = spawn(engine, c, &command_of(&self.check));
                if self.probe.is_none() {
                    self.next = now + nanos_or(self.check.interval, DEFAULT_INTERVAL);
                }
            }
            return None;
        }
        let timeout = self.timeout();
        let probe = self.probe.as_mut()?;
        if let Some(fd) = &probe.output {
            let mut buf = [0u8; 4096];
            loop {
                match nix::unistd::read(fd.as_fd(), &mut buf) {
                    Ok(0) => {
                        probe.output = None;
                        break;
                    }
                    Ok(n) => {
                        let room = MAX_OUTPUT.saturating_sub(probe.collected.len());
                        probe.collected.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => break,
                }
            }
        }
        let result = match waitpid(Pid::from_raw(probe.pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Some((code, None)),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some((128 + sig as i32, None)),
            Ok(_) if now >= probe.started + timeout => {
                let _ = kill(Pid::from_raw(probe.pid), Signal::SIGKILL);
                let _ = waitpid(Pid::from_raw(probe.pid), None);
                Some((
                    -1,
                    Some(format!(
                        "Health check exceeded timeout ({}s)",
                        timeout.as_secs()
                    )),
                ))
            }
            Ok(_) => None,
            Err(_) => Some((-1, None)),
        };
        let (code, message) = result?;
        let probe = self.probe.take()?;
        self.next = now + nanos_or(self.check.interval, DEFAULT_INTERVAL);
        let output = message.unwrap_or_else(|| String::from_utf8_lossy(&probe.collected).into());
        let entry = HealthLog {
            start: probe.start_time,
            end: now_rfc3339_nanos(),
            exit_code: code,
            output,
        };
        let mut health = c.state.health.clone().unwrap_or_else(|| Health {
            status: "starting".into(),
            ..Default::default()
        });
        let in_start_period =
            now < self.born + Duration::from_nanos(self.check.start_period.max(0) as u64);
        if code == 0 {
            health.status = "healthy".into();
            health.failing_streak = 0;
        } else if !in_start_period || health.status != "starting" {
            health.failing_streak += 1;
            let retries = u32::try_from(self.check.retries)
                .ok()
                .filter(|r| *r > 0)
                .unwrap_or(DEFAULT_RETRIES);
            if health.failing_streak >= retries {
                health.status = "unhealthy".into();
            }
        }
        health.log.push(entry);
        let extra = health.log.len().saturating_sub(KEPT_RESULTS);
        health.log.drain(..extra);
        Some(health)
    }

    /// Kills a check still running (the container is gone).
    pub fn abandon(&mut self) {
        if let Some(p) = self.probe.take() {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(p.pid), None);
        }
    }
}

/// Forks a child that runs `args` in the container through the runtime's `exec`, its output
/// going to a pipe.
fn spawn(engine: &Engine, c: &Container, args: &[String]) -> Option<Probe> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    let start_time = now_rfc3339_nanos();
    // SAFETY: the monitor is single-threaded; the child runs this process's own code and exits.
    match unsafe { nix::unistd::fork() }.ok()? {
        ForkResult::Child => {
            let _ = nix::unistd::dup2_stdout(&w);
            let _ = nix::unistd::dup2_stderr(&w);
            let o = ExecOptions {
                id: c.record.id.clone(),
                process_file: None,
                args: args.to_vec(),
                env: Vec::new(),
                cwd: None,
                user: None,
                additional_gids: Vec::new(),
                tty: false,
                detach: false,
                pid_file: None,
                console_socket: None,
                preserve_fds: 0,
                no_new_privs: false,
                caps: Vec::new(),
                ..Default::default()
            };
            let code = match runtime::exec(&engine.runtime_globals(), &o) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("{e:#}");
                    super::monitor::start_failure_code(&format!("{e:#}"))
                }
            };
            // SAFETY: ends the child without running the monitor's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            let _ = nix::fcntl::fcntl(
                r.as_fd(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
            Some(Probe {
                pid: child.as_raw(),
                output: Some(r),
                collected: Vec::new(),
                started: Instant::now(),
                start_time,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_follow_dockers_forms() {
        let h = |t: &[&str]| Healthcheck {
            test: t.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(command_of(&h(&["CMD", "true", "x"])), ["true", "x"]);
        assert_eq!(
            command_of(&h(&["CMD-SHELL", "wget -q localhost"])),
            ["/bin/sh", "-c", "wget -q localhost"]
        );
        assert!(!is_enabled(&h(&["NONE"])));
        assert!(!is_enabled(&h(&[])));
    }
}
