//! The exec trampoline: how the container process becomes its program without ever exec'ing
//! anything while its /proc/self/exe is berth's binary on the host (CVE-2019-5736).
//!
//! An execve from berth's process can end up running /proc/self/exe: a `#!/proc/self/exe`
//! script, or an interpreter that is a symlink to it. The kernel resolves that while the
//! process is still berth, so berth's host binary would run inside the container, where a
//! process can open it through /proc/PID/exe and, once it exits, reopen it for writing. So the
//! last step is in two: berth execs a tiny program (src/runtime/trampoline/main.rs, built by
//! build.rs and embedded here) from a sealed memfd, and that program execs the container's.
//! From then on /proc/self/exe of anything in the container is at worst the sealed memfd,
//! which cannot be written, grown or shrunk, and is not the host's file anyway.
//!
//! The memfd is made by berth before the clone: there it is not subject to the container's
//! rlimits (RLIMIT_FSIZE, RLIMIT_NOFILE), memory cgroup or seccomp filter, and the child only
//! inherits it (close-on-exec).

use anyhow::{Context, Result};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// What berth and the trampoline agree on. berth itself needs only the marker; the tests check
/// that the rest (the error's wording) matches berth's.
#[cfg_attr(not(test), allow(dead_code))]
mod shared {
    include!("trampoline/shared.rs");
}
use shared::*;

/// The trampoline program, built by build.rs for this target.
static TRAMPOLINE_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/exec-trampoline"));

/// memfd_create's "this memfd may be executed" (Linux 6.3). Older kernels reject the unknown
/// flag with EINVAL, and there every memfd is executable.
const MFD_EXEC: libc::c_uint = 0x10;

/// The trampoline in a sealed memfd, ready to be exec'd by a container process.
pub struct Trampoline {
    memfd: OwnedFd,
}

impl Trampoline {
    pub fn new() -> Result<Trampoline> {
        let memfd = memfd_create().map_err(|e| {
            let hint = if e.raw_os_error() == Some(libc::EACCES) {
                " (vm.memfd_noexec=2 forbids executable memfds)"
            } else {
                ""
            };
            anyhow::Error::new(e).context(format!(
                "cannot make the exec trampoline: memfd_create{hint}"
            ))
        })?;
        let mut written = 0;
        while written < TRAMPOLINE_ELF.len() {
            let rest = &TRAMPOLINE_ELF[written..];
            // SAFETY: the pointer and length describe `rest`.
            let n = unsafe { libc::write(memfd.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(err).context("cannot make the exec trampoline: write");
            }
            written += n as usize;
        }
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: F_ADD_SEALS takes an integer and changes only the memfd's seals.
        if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("cannot make the exec trampoline: sealing the memfd");
        }
        Ok(Trampoline { memfd })
    }

    /// The end of the line: execs the trampoline, which writes `lsm_exec_label` (if any) to
    /// /proc/self/attr/exec and execs `path` with `argv` and `env`. If a step fails, the trampoline writes a sync `Error` message to `report` and exits
    /// 127; if it succeeds, `report` closes (it is close-on-exec in the program). Returns only
    /// if the trampoline itself could not be exec'd.
    pub fn exec(
        &self,
        path: &CStr,
        argv: &[CString],
        env: &[CString],
        lsm_exec_label: Option<&CStr>,
        report: BorrowedFd,
    ) -> anyhow::Error {
        let prefix = Self::leading_args(path, report.as_raw_fd(), lsm_exec_label);
        let mut args: Vec<*const libc::c_char> =
            Vec::with_capacity(TRAMPOLINE_ARGS + argv.len() + 1);
        args.extend(prefix.iter().map(|a| a.as_ptr()));
        args.extend(argv.iter().map(|a| a.as_ptr()));
        args.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        // The report descriptor must reach the trampoline, which makes it close-on-exec again.
        // SAFETY: F_SETFD on our own descriptor only changes its flags.
        if unsafe { libc::fcntl(report.as_raw_fd(), libc::F_SETFD, 0) } != 0 {
            return anyhow::Error::new(std::io::Error::last_os_error())
                .context("exec trampoline: cannot pass the sync descriptor");
        }
        // SAFETY: the arrays are NULL-terminated and point to NUL-terminated strings that
        // outlive the call; "" with AT_EMPTY_PATH names the memfd itself.
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                self.memfd.as_raw_fd(),
                c"".as_ptr(),
                args.as_ptr(),
                envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        let mut err = std::io::Error::last_os_error();
        // A seccomp profile that denies execveat (or a kernel before 3.19): the same memfd
        // through /proc. Never the program directly: that is what the trampoline is for.
        if matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
            let via_proc = CString::new(format!("/proc/self/fd/{}", self.memfd.as_raw_fd()))
                .expect("no NUL in a path");
            // SAFETY: as above, with a NUL-terminated path.
            unsafe { libc::execve(via_proc.as_ptr(), args.as_ptr(), envp.as_ptr()) };
            err = std::io::Error::last_os_error();
        }
        anyhow::Error::new(err).context("cannot exec berth's exec trampoline")
    }
}

impl Trampoline {
    /// The trampoline's own arguments, before the program's argv: the marker, the program's
    /// path, the report descriptor's number and the LSM label ("" for none).
    pub fn leading_args(path: &CStr, report: RawFd, lsm_exec_label: Option<&CStr>) -> Vec<CString> {
        vec![
            CString::new(TRAMPOLINE_MARKER).expect("no NUL in the marker"),
            path.to_owned(),
            CString::new(report.to_string()).expect("no NUL in a number"),
            lsm_exec_label.unwrap_or(c"").to_owned(),
        ]
    }

    /// The sealed memfd, for a caller that execs it itself (a forked hook, which may make
    /// only async-signal-safe calls).
    pub fn memfd(&self) -> RawFd {
        self.memfd.as_raw_fd()
    }

    /// Reads a trampoline's report of a failed exec: the sync `Error` tag and its text.
    pub fn failure_text(report: &[u8]) -> Option<String> {
        let (&tag, text) = report.split_first()?;
        (tag == SYNC_ERROR_TAG).then(|| String::from_utf8_lossy(text).into_owned())
    }
}

fn memfd_create() -> std::io::Result<OwnedFd> {
    let create = |flags: libc::c_uint| {
        // SAFETY: memfd_create reads the NUL-terminated name and returns a new descriptor.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_memfd_create,
                c"berth-exec-trampoline".as_ptr(),
                flags,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    };
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    match create(flags | MFD_EXEC) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => create(flags),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sync::{self, Msg};
    use std::ffi::OsStr;
    use std::os::fd::AsFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, ExitStatus, Stdio};

    /// Runs the trampoline program from a sealed memfd (through /proc: std's Command has no
    /// execveat) with the argv `argv(report_fd)` gives, where `report_fd` is the child end of
    /// a sync channel left open across the exec. Returns what arrived on the channel, the exit
    /// status and stderr.
    fn run(argv: impl Fn(i32) -> Vec<Vec<u8>>) -> (Option<Msg>, ExitStatus, String) {
        let t = Trampoline::new().unwrap();
        let (parent, child) = sync::channel().unwrap();
        let child_fd = child.as_raw_fd();
        let argv = argv(child_fd);
        let mut cmd = Command::new(format!("/proc/self/fd/{}", t.memfd.as_raw_fd()));
        cmd.arg0(OsStr::from_bytes(&argv[0]))
            .args(argv[1..].iter().map(|a| OsStr::from_bytes(a)))
            .stderr(Stdio::piped());
        // SAFETY: fcntl is async-signal-safe; the descriptor is the test's own.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(child_fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let out = cmd.output().unwrap();
        drop(child);
        let msg = sync::recv(parent.as_fd()).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (msg, out.status, stderr)
    }

    fn berths_argv(path: &[u8], fd: i32, argv: &[&[u8]]) -> Vec<Vec<u8>> {
        labelled_argv(path, fd, b"", argv)
    }

    fn labelled_argv(path: &[u8], fd: i32, label: &[u8], argv: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut v = vec![
            TRAMPOLINE_MARKER.to_vec(),
            path.to_vec(),
            fd.to_string().into_bytes(),
            label.to_vec(),
        ];
        v.extend(argv.iter().map(|a| a.to_vec()));
        v
    }

    #[test]
    fn the_embedded_program_is_a_small_elf() {
        assert_eq!(&TRAMPOLINE_ELF[..4], b"\x7fELF");
        assert!(TRAMPOLINE_ELF.len() < 16 * 1024, "{}", TRAMPOLINE_ELF.len());
    }

    #[test]
    fn the_errno_table_words_errors_as_berth_does() {
        for (n, text) in EXEC_ERRNO_TEXT {
            assert_eq!(nix::errno::Errno::from_raw(*n).to_string(), *text);
        }
    }

    #[test]
    fn the_error_tag_is_the_sync_protocols() {
        let (a, b) = sync::channel().unwrap();
        sync::send(a.as_fd(), &Msg::Error("x".into())).unwrap();
        let mut buf = [0u8; 8];
        // SAFETY: recv writes at most buf.len() bytes into buf.
        let n = unsafe { libc::recv(b.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert_eq!(&buf[..n as usize], &[SYNC_ERROR_TAG, b'x']);
    }

    #[test]
    fn the_memfd_cannot_be_written_or_resized() {
        let t = Trampoline::new().unwrap();
        let fd = t.memfd.as_raw_fd();
        // SAFETY: writing one byte from a valid buffer to our descriptor.
        assert!(unsafe { libc::pwrite(fd, b"x".as_ptr().cast(), 1, 0) } < 0);
        // SAFETY: ftruncate on our descriptor.
        assert!(unsafe { libc::ftruncate(fd, 0) } < 0);
        // Nor through a new open for writing, as /proc/PID/exe would be reopened.
        let path = format!("/proc/self/fd/{fd}");
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&path) {
            use std::io::Write;
            assert!(f.write_all(b"canary").is_err());
        }
        assert_eq!(std::fs::read(&path).unwrap(), TRAMPOLINE_ELF);
    }

    #[test]
    fn the_program_runs_with_its_argv_and_the_report_descriptor_closed() {
        let (msg, status, stderr) = run(|fd| {
            let script = format!(
                "[ \"$0 $1\" = 'zero one' ] || exit 1; [ -e /proc/self/fd/{fd} ] && exit 2; exit 7"
            );
            berths_argv(
                b"/bin/sh",
                fd,
                &[b"sh", b"-c", script.as_bytes(), b"zero", b"one"],
            )
        });
        assert_eq!(msg, None, "{stderr}");
        assert_eq!(status.code(), Some(7), "{stderr}");
    }

    #[test]
    fn a_failed_exec_is_reported_as_berth_words_it() {
        let path = b"/no/such/pro\"gram\xff";
        let (msg, status, _) = run(|fd| berths_argv(path, fd, &[b"x"]));
        let expected = format!(
            "{EXEC_FAILED_PREFIX}{:?}: {}",
            CString::new(&path[..]).unwrap(),
            nix::errno::Errno::ENOENT
        );
        assert_eq!(msg, Some(Msg::Error(expected)));
        assert_eq!(status.code(), Some(TRAMPOLINE_EXEC_FAILED_EXIT));
    }

    /// The label is written just before the program's exec, and a failure to is reported.
    /// (This host's LSM, if any, does not know the label "berth-test-label".)
    #[test]
    fn an_lsm_label_that_cannot_be_set_is_reported() {
        let (msg, status, _) =
            run(|fd| labelled_argv(b"/bin/true", fd, b"berth-test-label", &[b"true"]));
        let Some(Msg::Error(e)) = msg else {
            panic!("no error reported: {msg:?}")
        };
        assert!(
            e.starts_with("cannot set the LSM label \"berth-test-label\" for exec: "),
            "{e}"
        );
        assert_eq!(status.code(), Some(TRAMPOLINE_EXEC_FAILED_EXIT));
    }

    #[test]
    fn started_any_other_way_it_execs_nothing() {
        for argv in [
            vec![b"/proc/self/exe".to_vec(), b"/bin/true".to_vec()],
            vec![TRAMPOLINE_MARKER.to_vec()],
            vec![
                TRAMPOLINE_MARKER.to_vec(),
                b"/bin/true".to_vec(),
                b"not-a-number".to_vec(),
                b"".to_vec(),
                b"true".to_vec(),
            ],
            // No program argv after the label.
            vec![
                TRAMPOLINE_MARKER.to_vec(),
                b"/bin/true".to_vec(),
                b"1".to_vec(),
                b"".to_vec(),
            ],
        ] {
            let (msg, status, stderr) = run(|_| argv.clone());
            assert_eq!(msg, None);
            assert_eq!(status.code(), Some(TRAMPOLINE_MISUSE_EXIT), "{argv:?}");
            assert!(stderr.contains("not started by berth"), "{stderr}");
        }
    }

    /// A `#!/proc/self/exe` script exec'd by the trampoline gets the trampoline (the memfd) as
    /// its interpreter, which refuses: no loop, nothing run.
    #[test]
    fn as_the_interpreter_of_a_script_it_refuses() {
        let dir = std::env::temp_dir().join(format!("berth-trampoline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("script");
        std::fs::write(&script, "#!/proc/self/exe\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let path = script.as_os_str().as_bytes().to_vec();
        let (msg, status, stderr) = run(|fd| berths_argv(&path, fd, &[&path]));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(msg, None);
        assert_eq!(status.code(), Some(TRAMPOLINE_MISUSE_EXIT));
        assert!(stderr.contains("not started by berth"), "{stderr}");
    }
}
