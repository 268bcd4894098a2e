//! What the ptrace attack tests share (tests/escape_exec.rs, tests/escape_pidjoin.rs): the
//! attacker program (attacker.rs here, compiled by the test as a static binary), run as the
//! process of a container holding CAP_SYS_PTRACE, the verdict on what it caught, and a seccomp
//! agent that answers every notification.
#![allow(dead_code)]

use crate::common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Compiles the attacker into `dir` as a static binary.
pub fn build_attacker(dir: &Path) -> PathBuf {
    let src = repo_dir().join("tests/ptrace_attack/attacker.rs");
    let out = dir.join("attacker");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let st = std::process::Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run rustc");
    assert!(st.success(), "rustc failed on {}", src.display());
    out
}

/// Waits until `path` holds a line starting with `prefix`.
pub fn wait_for_line(path: &Path, prefix: &str) {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    while !fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(prefix))
    {
        assert!(
            Instant::now() < deadline,
            "no {prefix:?} line in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of `key=` in a report line.
pub fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or("")
}

/// Answers every notification on a seccomp listener with success (the call not made), until
/// no process uses the filter.
pub fn answer_notifications(fd: std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    #[derive(Default)]
    struct Notif {
        id: u64,
        pid: u32,
        flags: u32,
        nr: i32,
        arch: u32,
        ip: u64,
        args: [u64; 6],
    }
    #[repr(C)]
    struct Resp {
        id: u64,
        val: i64,
        error: i32,
        flags: u32,
    }
    const RECV: libc::c_ulong = 0xc050_2100;
    const SEND: libc::c_ulong = 0xc018_2101;
    loop {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut pfd, 1, 30_000) } <= 0 || pfd.revents & libc::POLLIN == 0 {
            return;
        }
        let mut n = Notif::default();
        // SAFETY: the kernel fills the zeroed struct seccomp_notif we own.
        if unsafe { libc::ioctl(fd.as_raw_fd(), RECV, &mut n) } != 0 {
            continue;
        }
        let r = Resp {
            id: n.id,
            val: 0,
            error: 0,
            flags: 0,
        };
        // SAFETY: the kernel reads the struct seccomp_notif_resp we own.
        unsafe { libc::ioctl(fd.as_raw_fd(), SEND, &r) };
    }
}

/// A seccomp agent listening at `sock`: each connection's container state arrives on the
/// returned channel, and the listener it brings is answered by [`answer_notifications`] in a
/// thread of its own (the init's stays in use while an exec's arrives).
pub fn spawn_seccomp_agent(sock: &Path) -> std::sync::mpsc::Receiver<Value> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let listener = std::os::unix::net::UnixListener::bind(sock).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut control = nix::cmsg_space!([std::os::fd::RawFd; 2]);
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let msg = nix::sys::socket::recvmsg::<()>(
                    conn.as_raw_fd(),
                    &mut iov,
                    Some(&mut control),
                    nix::sys::socket::MsgFlags::empty(),
                )
                .unwrap();
                let mut fds = Vec::new();
                for c in msg.cmsgs().unwrap() {
                    if let nix::sys::socket::ControlMessageOwned::ScmRights(r) = c {
                        fds.extend(r);
                    }
                }
                let len = msg.bytes;
                let mut text = buf[..len].to_vec();
                std::io::Read::read_to_end(&mut &conn, &mut text).unwrap();
                // SAFETY: SCM_RIGHTS just put this descriptor in our table; nothing else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
                let state: Value = serde_json::from_slice(&text).unwrap();
                let _ = tx.send(state);
                answer_notifications(fd);
            });
        }
    });
    rx
}

/// The attacker running as the process of a container (no user namespace, CAP_SYS_PTRACE
/// added, as Docker allows), ready: it seizes every new process of that pid namespace.
pub struct Attacker {
    pub id: String,
    pub pid: i32,
    /// A host path the attacker makes each caught process try to create.
    canary: PathBuf,
    report: PathBuf,
}

impl Attacker {
    pub fn start(ctx: &Ctx) -> Attacker {
        let canary = ctx.dir("host").join("canary");
        let out = ctx.dir("out");
        let mut b = ctx.bundle();
        fs::copy(build_attacker(&ctx.tmp), b.rootfs().join("attacker")).unwrap();
        assert!(
            !b.has_namespace("user"),
            "the attack needs no user namespace"
        );
        for set in ["bounding", "effective", "permitted"] {
            b.config["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!("CAP_SYS_PTRACE"));
        }
        b.bind(&out, "/out", &[]);
        b.args(&["/attacker", canary.to_str().unwrap(), "/out/report", "2"]);
        let (id, pid) = ctx.sleeper_from(&b, "a");
        let report = out.join("report");
        wait_for_line(&report, "ready");
        Attacker {
            id,
            pid,
            canary,
            report,
        }
    }

    /// After `attempts` processes were made in its sight (`failed` of them failing): no
    /// caught process may be `escaped` (a report line judged so) and no canary may exist on
    /// the host, and the attack must have really run: caught enough, written their memory,
    /// and had its injected call run there.
    pub fn verdict(&self, attempts: usize, failed: &[String], escaped: impl Fn(&str) -> bool) {
        // The attacker writes its line once it has let the last process go.
        std::thread::sleep(Duration::from_millis(200));
        let text = fs::read_to_string(&self.report).unwrap();
        let caught: Vec<&str> = text.lines().filter(|l| l.starts_with("caught")).collect();
        let escaped: Vec<&str> = caught.iter().copied().filter(|l| escaped(l)).collect();
        eprintln!(
            "{attempts} attempts: the attacker caught {} processes, {} of them where they must \
             not be; {} attempts failed; canary {}",
            caught.len(),
            escaped.len(),
            failed.len(),
            if self.canary.exists() {
                "WRITTEN"
            } else {
                "absent"
            }
        );
        if let Some(first) = caught.first() {
            eprintln!("first caught: {first}");
        }
        assert!(
            !self.canary.exists(),
            "a caught process created {} on the host:\n{text}",
            self.canary.display()
        );
        assert!(
            escaped.is_empty(),
            "processes were reachable outside the container's mount namespace or with more \
             capabilities than the container's:\n{}",
            escaped.join("\n")
        );
        assert!(
            caught.len() >= attempts / 10,
            "the attacker caught too little:\n{text}"
        );
        assert!(
            caught.iter().any(|l| field(l, "memory_writable") == "true"
                && field(l, "injected_openat").starts_with('-')),
            "{text}"
        );
        assert!(failed.len() <= attempts / 10, "{}", failed.join("\n"));
    }
}
