//! Building the planned stages: each once the stages it needs are built; stages that do not
//! need each other at the same time.
//!
//! The builder is single-threaded and stays so: a runtime container must not be born of a
//! multi-threaded process (its clone child could inherit a lock another thread held). When
//! more than one stage can build, the builder forks one worker process per ready stage. A
//! worker builds its stage exactly as the builder would (its RUN containers are its
//! children, its layers go to the content-addressed store and its steps to the cache), prints
//! its lines prefixed by the stage's name, and sends the stage's result (the image state and
//! the cache key) back through a pipe, then ends with `_exit` (the build's work directory is
//! the builder's to remove). A worker dies with the builder (`PR_SET_PDEATHSIG`, SIGINT: it
//! removes its container first; the work directory is not swept while a worker lives); when
//! one fails, the builder interrupts the others, waits
//! for them, and fails with its error. A lone ready stage is built in the builder itself.

use super::cache::CacheKey;
use super::dockerfile::plan::PlannedStage;
use super::executor::{Executor, RunFailed, StageResult};
use super::image_state::ImageState;
use super::interrupt::{self, Interrupted};
use crate::image::Digest;
use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

/// What a worker sends back.
#[derive(Serialize, Deserialize)]
enum Outcome {
    Built { state: ImageState, key: String },
    RunFailed { command: String, code: i32 },
    Interrupted,
    Failed { message: String },
}

impl Outcome {
    fn of(r: Result<StageResult>) -> Outcome {
        match r {
            Ok(s) => Outcome::Built {
                state: s.state,
                key: s.key.0.to_string(),
            },
            Err(e) => {
                if let Some(f) = e.downcast_ref::<RunFailed>() {
                    Outcome::RunFailed {
                        command: f.command.clone(),
                        code: f.code,
                    }
                } else if e.downcast_ref::<Interrupted>().is_some() {
                    Outcome::Interrupted
                } else {
                    Outcome::Failed {
                        message: format!("{e:#}"),
                    }
                }
            }
        }
    }

    fn into_result(self) -> Result<StageResult> {
        match self {
            Outcome::Built { state, key } => Ok(StageResult {
                state,
                key: CacheKey(Digest::parse(&key)?),
            }),
            Outcome::RunFailed { command, code } => Err(RunFailed { command, code }.into()),
            Outcome::Interrupted => Err(Interrupted.into()),
            Outcome::Failed { message } => Err(anyhow::anyhow!(message)),
        }
    }
}

/// A stage building in a worker process.
struct Worker {
    index: usize,
    pid: Pid,
    /// The pipe its outcome comes through; None once it closed.
    pipe: Option<OwnedFd>,
    got: Vec<u8>,
    /// Its exit, once collected.
    reaped: Option<WaitStatus>,
}

/// The name a stage's lines are prefixed with.
fn label(ps: &PlannedStage) -> String {
    ps.name
        .clone()
        .unwrap_or_else(|| format!("stage-{}", ps.index))
}

/// Builds every planned stage into `ex.results`.
pub(super) fn build_all(ex: &mut Executor, stages: &[PlannedStage]) -> Result<()> {
    let first = ex.first_steps(stages);
    let mut pending: Vec<&PlannedStage> = stages.iter().collect();
    let mut running: Vec<Worker> = Vec::new();
    let r = (|| -> Result<()> {
        loop {
            interrupt::check()?;
            let (ready, waiting): (Vec<&PlannedStage>, Vec<&PlannedStage>) =
                pending.iter().partition(|ps| {
                    ps.depends_on
                        .iter()
                        .all(|d| *d == ps.index || ex.results.contains_key(d))
                });
            pending = waiting;
            if ready.is_empty() && running.is_empty() {
                if pending.is_empty() {
                    return Ok(());
                }
                bail!("internal: the stages left wait on each other");
            }
            if ready.len() == 1 && running.is_empty() {
                let ps = ready[0];
                let r = ex.stage(ps, first[&ps.index])?;
                ex.results.insert(ps.index, r);
                continue;
            }
            for ps in ready {
                running.push(spawn(ex, ps, first[&ps.index])?);
            }
            let (index, outcome) = wait_any(&mut running)?;
            let r = outcome.into_result()?;
            ex.results.insert(index, r);
        }
    })();
    if r.is_err() {
        stop(&mut running);
    }
    r
}

/// Forks the worker of stage `ps`.
fn spawn(ex: &mut Executor, ps: &PlannedStage, first: usize) -> Result<Worker> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let builder = nix::unistd::getpid();
    let _ = std::io::stdout().flush();
    // SAFETY: the builder is single-threaded, so no lock is held by a thread the child lacks;
    // the child builds the stage with the builder's own code and ends with _exit.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Child => {
            drop(r);
            // SAFETY: prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) };
            // Recorded before the check: a builder killed after it leaves the work directory
            // to this worker until it has removed what it made.
            let noted = ex.work.note_worker();
            let outcome = if let Err(e) = noted {
                Outcome::Failed {
                    message: format!("{e:#}"),
                }
            } else if nix::unistd::getppid() != builder {
                Outcome::Interrupted
            } else {
                ex.out.set_prefix(&label(ps));
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ex.stage(ps, first)))
                {
                    Ok(r) => Outcome::of(r),
                    Err(_) => Outcome::Failed {
                        message: format!("the worker of stage {} panicked", label(ps)),
                    },
                }
            };
            ex.out.end_partial();
            let code = match serde_json::to_vec(&outcome) {
                Ok(bytes) => match std::fs::File::from(w).write_all(&bytes) {
                    Ok(()) => 0,
                    Err(_) => 1,
                },
                Err(_) => 1,
            };
            let _ = std::io::stdout().flush();
            // SAFETY: ends the worker without the builder's destructors (its work directory
            // and containers are the builder's to remove).
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            Ok(Worker {
                index: ps.index,
                pid: child,
                pipe: Some(r),
                got: Vec::new(),
                reaped: None,
            })
        }
    }
}

/// Reads the workers' pipes until one closes; returns that worker's stage and outcome (and
/// forgets it). An interrupt fails with [`Interrupted`].
fn wait_any(running: &mut Vec<Worker>) -> Result<(usize, Outcome)> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        interrupt::check()?;
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = running
                .iter()
                .filter_map(|w| w.pipe.as_ref())
                .map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN))
                .collect();
            match poll(&mut fds, PollTimeout::from(200u16)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(e).context("polling the stage workers"),
            }
            fds.iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect()
        };
        for (w, readable) in running.iter_mut().filter(|w| w.pipe.is_some()).zip(ready) {
            if !readable {
                continue;
            }
            let pipe = w.pipe.as_ref().expect("filtered");
            match nix::unistd::read(pipe, &mut buf) {
                Ok(0) => w.pipe = None,
                Ok(n) => w.got.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("reading a stage worker's outcome"),
            }
        }
        // A worker that ended is done even if its pipe is not closed yet (a process it made
        // may still hold the write end): what it wrote is in the pipe, read to the end.
        for w in running.iter_mut().filter(|w| w.pipe.is_some()) {
            match waitpid(w.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => continue,
                Ok(status) => w.reaped = Some(status),
            }
            if let Some(pipe) = w.pipe.take() {
                let _ = nix::fcntl::fcntl(
                    &pipe,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                );
                while let Ok(n @ 1..) = nix::unistd::read(&pipe, &mut buf) {
                    w.got.extend_from_slice(&buf[..n]);
                }
            }
        }
        if let Some(pos) = running.iter().position(|w| w.pipe.is_none()) {
            let w = running.remove(pos);
            let status = match w.reaped {
                Some(status) => Ok(status),
                None => reap(w.pid),
            };
            let outcome = match serde_json::from_slice::<Outcome>(&w.got) {
                Ok(o) => o,
                Err(_) => Outcome::Failed {
                    message: format!("the worker of stage {} ended: {status:?}", w.index),
                },
            };
            return Ok((w.index, outcome));
        }
    }
}

fn reap(pid: Pid) -> nix::Result<WaitStatus> {
    loop {
        match waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other,
        }
    }
}

/// Interrupts the running workers (each removes its container and mounts) and waits for
/// them.
fn stop(running: &mut Vec<Worker>) {
    for w in running.iter() {
        let _ = kill(w.pid, Signal::SIGINT);
    }
    for w in running.drain(..) {
        // Their outcome is not wanted; the pipe goes with the worker.
        drop(w.pipe);
        if w.reaped.is_none() {
            let _ = reap(w.pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_cross_the_pipe_with_their_kind() {
        let failed = Outcome::of(Err(RunFailed {
            command: "false".into(),
            code: 3,
        }
        .into()));
        let back: Outcome = serde_json::from_slice(&serde_json::to_vec(&failed).unwrap()).unwrap();
        let e = back.into_result().err().unwrap();
        assert_eq!(e.downcast_ref::<RunFailed>().unwrap().code, 3);
        let e = Outcome::of(Err(Interrupted.into()))
            .into_result()
            .err()
            .unwrap();
        assert!(e.downcast_ref::<Interrupted>().is_some());
        let built = Outcome::of(Ok(StageResult {
            state: ImageState::scratch(),
            key: CacheKey::base("scratch", "linux/amd64"),
        }));
        let back: Outcome = serde_json::from_slice(&serde_json::to_vec(&built).unwrap()).unwrap();
        let r = back.into_result().unwrap();
        assert_eq!(r.key, CacheKey::base("scratch", "linux/amd64"));
    }
}
