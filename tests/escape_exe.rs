//! The runtime binary is never reachable from inside the container (CVE-2019-5736 class), and
//! `--preserve-fds` hands on only what berth itself was given.
//!
//! The attack, for real: the container's program (or an exec'd one) is a script whose
//! interpreter is `/proc/self/exe`, directly or through a symlink. Were the runtime to exec it
//! from its own process, the kernel would run the runtime's host binary inside the container.
//! A helper process in the container (sharing the victim's pid namespace) watches for it,
//! opens `/proc/PID/exe`, waits for it to exit and reopens that descriptor for writing to
//! append a canary. The hostile image ships the glibc loader and libraries the runtime needs
//! (as an image can), so a dynamically linked runtime runs there too.
//!
//! Every runtime command here runs a COPY of the binary under test, which the attack may
//! destroy; the test checks the copy is unchanged, and (from outside, while the victim runs)
//! that its /proc/PID/exe is not the copy.
mod common;
use common::*;
use serde_json::json;
use std::ffi::OsStr;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The helper, pid 1 of the container it runs in. It finds the victim by its command line
/// (`INTERPRETER /victim.sh`; the pattern `*/vict[i]m.sh*` does not match the helper's own),
/// reports where /proc/PID/exe leads, keeps it open, and once the victim is gone tries to write
/// through it until told to stop (the runtime's binary is busy, ETXTBSY, until the last
/// runtime process exits).
const HELPER: &str = r#"
s=/shared
while :; do
  for d in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" in */vict[i]m.sh*) pid=${d#/proc/}; break 2;; esac
  done
  sleep 0.02
done
readlink /proc/$pid/exe > $s/exe-link 2>&1
# (A failed redirection of `exec` would end the shell, and with it the pid namespace.)
if (exec 5</proc/$pid/exe) 2>/dev/null; then
  exec 5</proc/$pid/exe; echo opened > $s/opened
else
  echo open-failed > $s/opened
fi
while [ -e /proc/$pid ]; do sleep 0.02; done
while :; do
  if printf CANARY 2>/dev/null >>/proc/self/fd/5; then echo wrote > $s/result; break; fi
  if [ -e $s/stop ]; then echo write-failed > $s/result; break; fi
  sleep 0.05
done
exec sleep 1000
"#;

struct Attack {
    ctx: Ctx,
    /// The copy of the runtime every command here runs.
    copy: PathBuf,
    original: Vec<u8>,
    /// Bind-mounted at /shared in the helper's container: its reports.
    shared: PathBuf,
}

impl Attack {
    fn new(name: &str) -> Attack {
        let ctx = Ctx::new(name);
        let bin = ctx.dir("bin");
        let copy = bin.join("berth");
        fs::copy(runtime(), &copy).unwrap();
        let original = fs::read(&copy).unwrap();
        let shared = ctx.dir("shared");
        Attack {
            ctx,
            copy,
            original,
            shared,
        }
    }

    fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.copy);
        c.arg("--root").arg(&self.ctx.root).args(args);
        c.env("BERTH_TEST_MARK", &self.ctx.marker);
        c.stdin(Stdio::null());
        c
    }

    fn rt<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        self.ctx.output(self.cmd(args))
    }

    /// A container running HELPER as its process; returns its id and host pid.
    fn helper(&self) -> (String, i32) {
        let mut b = self.ctx.bundle();
        fs::write(b.rootfs().join("helper.sh"), HELPER).unwrap();
        b.args(&["sh", "/helper.sh"]);
        b.bind(&self.shared, "/shared", &[]);
        b.write();
        let id = self.ctx.id("helper");
        let bundle = b.path().to_str().unwrap().to_string();
        self.rt(&["create", "--bundle", &bundle, &id]).ok();
        self.rt(&["start", &id]).ok();
        let st: Value = serde_json::from_str(&self.rt(&["state", &id]).ok().stdout).unwrap();
        let pid = st["pid"].as_i64().unwrap() as i32;
        self.ctx.note_pid(pid);
        (id, pid)
    }

    /// Makes `rootfs` hostile: `/victim.sh` whose interpreter is /proc/self/exe (through the
    /// symlink /evil-interpreter when `via_symlink`), and the host's copies of the libraries
    /// the runtime binary needs, so that it can run there if it is ever exec'd.
    fn hostile_image(&self, rootfs: &Path, via_symlink: bool) -> String {
        let interpreter = if via_symlink {
            std::os::unix::fs::symlink("/proc/self/exe", rootfs.join("evil-interpreter")).unwrap();
            "/evil-interpreter"
        } else {
            "/proc/self/exe"
        };
        let script = rootfs.join("victim.sh");
        fs::write(&script, format!("#!{interpreter}\n")).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let ldd = Command::new("ldd").arg(&self.copy).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let dest = rootfs.join(lib.trim_start_matches('/'));
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(lib, &dest).unwrap();
        }
        "/victim.sh".to_string()
    }

    /// Waits for the helper's report `name`.
    fn report(&self, name: &str, timeout: Duration) -> String {
        let path = self.shared.join(name);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(s) = fs::read_to_string(&path) {
                if !s.is_empty() {
                    return s.trim().to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the helper never reported {name:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// While the victim (host pid `pid`) is blocked: is its exe the runtime's copy?
    fn exe_is_the_copy(&self, pid: i32) -> bool {
        let exe = fs::metadata(format!("/proc/{pid}/exe")).unwrap();
        let copy = fs::metadata(&self.copy).unwrap();
        (exe.dev(), exe.ino()) == (copy.dev(), copy.ino())
    }

    /// The attack's outcome, once every runtime process of the copy has exited.
    fn verdict(&self, exe_was_copy: bool) {
        fs::write(self.shared.join("stop"), "").unwrap();
        let result = self.report("result", Duration::from_secs(20));
        let link = fs::read_to_string(self.shared.join("exe-link")).unwrap_or_default();
        let opened = fs::read_to_string(self.shared.join("opened")).unwrap_or_default();
        let unchanged = fs::read(&self.copy).unwrap() == self.original;
        eprintln!(
            "the victim's /proc/PID/exe: {:?}, open: {}, write: {result}",
            link.trim(),
            opened.trim()
        );
        assert!(
            unchanged && result != "wrote" && !exe_was_copy,
            "the container reached the runtime's binary: copy unchanged: {unchanged}, write: \
             {result}, /proc/PID/exe was the host binary: {exe_was_copy} (link {:?}, open: {})",
            link.trim(),
            opened.trim()
        );
    }
}

/// A pipe already full: a process writing to it blocks until the read end is closed, so the
/// victim stays alive for as long as the test needs.
fn full_pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let fd = w.as_raw_fd();
    // SAFETY: fcntl on our own pipe descriptor; write from a valid buffer.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        let chunk = [b'x'; 4096];
        while libc::write(fd, chunk.as_ptr().cast(), chunk.len()) > 0 {}
        libc::fcntl(fd, libc::F_SETFL, flags);
    }
    (r, w)
}

/// The victim is the container's own process: `run`, or `create` and `start`, in the
/// helper's pid namespace.
fn container_process_attack(name: &str, via_symlink: bool, create_and_start: bool) {
    if skip() {
        return;
    }
    let a = Attack::new(name);
    let (_helper, helper_pid) = a.helper();
    let mut b = a.ctx.bundle();
    let victim = a.hostile_image(&b.rootfs(), via_symlink);
    b.args(&[&victim]);
    b.namespace("pid", Some(&format!("/proc/{helper_pid}/ns/pid")));
    b.write();
    let id = a.ctx.id("victim");
    let bundle = b.path().to_str().unwrap().to_string();
    // The victim's stderr (inherited from `create` or `run`) is a full pipe: whatever runs
    // there blocks on its first message.
    let (read_end, write_end) = full_pipe();
    let mut first = a.cmd(&[
        if create_and_start { "create" } else { "run" },
        "--bundle",
        &bundle,
        &id,
    ]);
    first.stdout(Stdio::null()).stderr(write_end);
    let mut first = first.spawn().unwrap();
    if create_and_start {
        assert!(first.wait().unwrap().success(), "create failed");
        a.rt(&["start", &id]).ok();
    }
    a.report("opened", Duration::from_secs(20));
    let st: Value = serde_json::from_str(&a.rt(&["state", &id]).ok().stdout).unwrap();
    let pid = st["pid"].as_i64().unwrap() as i32;
    let exe_was_copy = a.exe_is_the_copy(pid);
    drop(read_end); // the victim's write fails: it exits
    if !create_and_start {
        let deadline = Instant::now() + CMD_TIMEOUT;
        while first.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "run did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = first.wait();
    a.rt(&["delete", "--force", &id]);
    a.verdict(exe_was_copy);
}

#[test]
fn run_of_a_script_interpreted_by_proc_self_exe_cannot_reach_the_runtime_binary() {
    container_process_attack("exerun", false, false);
}

#[test]
fn run_of_a_script_interpreted_by_a_symlink_to_proc_self_exe_cannot_reach_the_runtime_binary() {
    container_process_attack("exelink", true, false);
}

#[test]
fn create_and_start_of_such_a_script_cannot_reach_the_runtime_binary() {
    container_process_attack("execreate", false, true);
}

/// The victim is a process `exec`'d into the helper's container.
#[test]
fn exec_of_such_a_script_cannot_reach_the_runtime_binary() {
    if skip() {
        return;
    }
    let a = Attack::new("exeexec");
    let mut b = a.ctx.bundle();
    let victim = a.hostile_image(&b.rootfs(), false);
    fs::write(b.rootfs().join("helper.sh"), HELPER).unwrap();
    b.args(&["sh", "/helper.sh"]);
    b.bind(&a.shared, "/shared", &[]);
    b.write();
    let id = a.ctx.id("helper");
    let bundle = b.path().to_str().unwrap().to_string();
    a.rt(&["create", "--bundle", &bundle, &id]).ok();
    a.rt(&["start", &id]).ok();
    let pid_file = a.ctx.tmp.join("victim.pid");
    let (read_end, write_end) = full_pipe();
    let mut exec = a.cmd(&[
        "exec",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        &victim,
    ]);
    exec.stdout(Stdio::null()).stderr(write_end);
    let mut exec = exec.spawn().unwrap();
    a.report("opened", Duration::from_secs(20));
    let deadline = Instant::now() + CMD_TIMEOUT;
    let pid = loop {
        if let Some(p) = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "exec wrote no pid file");
        std::thread::sleep(Duration::from_millis(10));
    };
    let exe_was_copy = a.exe_is_the_copy(pid);
    drop(read_end);
    while exec.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "exec did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    a.verdict(exe_was_copy);
}

/// A startContainer hook's path resolves in the container: an image can make it a
/// `#!/proc/self/exe` script. Exec'd from berth's process, that would run the runtime's host
/// binary inside the container (its CLI then complains about the script's path); through the
/// trampoline, the interpreter is the sealed trampoline, which refuses and execs nothing.
#[test]
fn a_start_container_hook_from_the_image_cannot_run_the_runtime_binary() {
    if skip() || berth_only("the trampoline's words") {
        return;
    }
    let a = Attack::new("exehook");
    let mut b = a.ctx.bundle();
    let victim = a.hostile_image(&b.rootfs(), false);
    b.args(&["true"]);
    b.add_hook("startContainer", json!({"path": victim}));
    b.write();
    let id = a.ctx.id("hook");
    let bundle = b.path().to_str().unwrap().to_string();
    let out = a.rt(&["run", "--bundle", &bundle, &id]);
    a.rt(&["delete", "--force", &id]);
    assert!(!out.success(), "{out}");
    assert!(
        !out.stderr.contains("unrecognized subcommand") && !out.stderr.contains("Usage: "),
        "the runtime's own binary ran inside the container as the hook: {out}"
    );
    assert!(out.stderr.contains("berth exec trampoline"), "{out}");
    assert_eq!(fs::read(&a.copy).unwrap(), a.original);
}

/// `--preserve-fds 100` hands on what the caller gave berth at 3.. (here a pipe at 3 and a
/// file at 4), and nothing of berth's own that happens to sit in 3..103 (its sync channel,
/// start socket, exec trampoline, ...): checked by the container listing its descriptors.
#[test]
fn preserve_fds_hands_on_only_what_the_caller_passed() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("presfds");
    let file = ctx.tmp.join("passed-file");
    fs::write(&file, "").unwrap();
    let out_dir = ctx.dir("out");
    // `exec >FILE` rather than a redirection of the loop, which would park the old stdout on
    // a high descriptor while it runs.
    let list = "exec >/out/listing; echo through-the-pipe >&3; \
                for f in /proc/self/fd/*; do echo \"${f##*/} $(readlink $f)\"; done";
    let mut leaks: Vec<String> = Vec::new();
    for how in ["run", "create+start", "exec"] {
        let mut b = ctx.bundle();
        b.bind(&out_dir, "/out", &[]);
        let _ = fs::remove_file(out_dir.join("listing"));
        let (pipe_read, pipe_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let pipe_ino = fs::metadata(format!("/proc/self/fd/{}", pipe_write.as_raw_fd()))
            .unwrap()
            .ino();
        let passed_file = fs::File::open(&file).unwrap();
        // The caller's descriptors at 3 and 4 (berth clears close-on-exec on what it hands on).
        let with_fds = |mut cmd: Command| {
            let (p, f) = (pipe_write.as_raw_fd(), passed_file.as_raw_fd());
            // SAFETY: dup2 is async-signal-safe; the descriptors are the test's own.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                    if libc::dup2(p, 3) < 0 || libc::dup2(f, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            cmd
        };
        let bundle = b.path().to_str().unwrap().to_string();
        let id = ctx.id("c");
        match how {
            "run" => {
                b.sh(list);
                b.write();
                let cmd = ctx.cmd(&["run", "--preserve-fds", "100", "--bundle", &bundle, &id]);
                ctx.output(with_fds(cmd)).ok();
            }
            "create+start" => {
                b.sh(list);
                b.write();
                let cmd = ctx.cmd(&["create", "--preserve-fds", "100", "--bundle", &bundle, &id]);
                ctx.output(with_fds(cmd)).ok();
                ctx.start(&id);
                ctx.wait_status(&id, "stopped");
                ctx.delete(&id);
            }
            _ => {
                b.args(&["sleep", "1000"]);
                let (id, _) = ctx.sleeper_from(&b, "s");
                let cmd = ctx.cmd(&["exec", "--preserve-fds", "100", &id, "sh", "-c", list]);
                ctx.output(with_fds(cmd)).ok();
            }
        }
        drop(pipe_write);
        let mut through = String::new();
        std::io::Read::read_to_string(&mut fs::File::from(pipe_read), &mut through).unwrap();
        assert_eq!(
            through, "through-the-pipe\n",
            "{how}: the passed pipe did not arrive"
        );
        let listing = fs::read_to_string(out_dir.join("listing")).unwrap();
        let fds: Vec<(i32, &str)> = listing
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(n, link)| Some((n.parse().ok()?, link)))
            .collect();
        assert!(
            fds.contains(&(3, &format!("pipe:[{pipe_ino}]")[..])),
            "{how}: fd 3 is not the caller's pipe: {fds:?}"
        );
        assert!(
            fds.iter()
                .any(|&(n, l)| n == 4 && l.ends_with("passed-file")),
            "{how}: fd 4 is not the caller's file: {fds:?}"
        );
        // Beyond stdio and what was passed, only the shell's own: its reading of /proc/self/fd
        // (gone, so unreadable, in readlink's process) and its copy of stdin (/dev/null).
        let others: Vec<_> = fds
            .iter()
            .filter(|&&(n, l)| n > 4 && !l.is_empty() && !l.starts_with("/proc/"))
            .filter(|&&(_, l)| l != "/dev/null")
            .collect();
        if !others.is_empty() {
            leaks.push(format!("{how}: {others:?}"));
        }
    }
    assert!(leaks.is_empty(), "berth's descriptors leaked: {leaks:?}");
}

/// The program's exec happens in the trampoline now: when it fails, `run`, `start` and `exec`
/// still report it, in the words they always used (Docker and Podman map "no such file or
/// directory" to 127 and "permission denied" to 126).
#[test]
fn a_failed_exec_of_the_program_is_still_reported() {
    if skip() || berth_only("berth's wording of a failed exec") {
        return;
    }
    let ctx = Ctx::new("exefail");
    let programs = [
        // Executable, but neither ELF nor `#!`.
        ("/garbage", "garbage\n", "ENOEXEC: Exec format error"),
        // A script whose interpreter is missing.
        (
            "/badinterp",
            "#!/no/such/interpreter\n",
            "ENOENT: No such file or directory",
        ),
    ];
    let prepare = |b: &Bundle| {
        for (path, text, _) in programs {
            let file = b.rootfs().join(path.trim_start_matches('/'));
            fs::write(&file, text).unwrap();
            fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        }
    };
    let mut sleeper = ctx.bundle();
    prepare(&sleeper);
    sleeper.args(&["sleep", "1000"]);
    let (running, _) = ctx.sleeper_from(&sleeper, "s");
    for (path, _, why) in programs {
        let expected = format!("process.args[0]: cannot exec \"{path}\": {why}");
        let mut b = ctx.bundle();
        prepare(&b);
        b.args(&[path]);
        let id = ctx.id("run");
        let out = ctx.run(&b, &id);
        assert!(
            !out.success() && out.stderr.contains(&expected),
            "run: {out}"
        );
        assert!(
            !ctx.state_dir(&id).exists(),
            "run left its container: {out}"
        );

        let id = ctx.id("start");
        ctx.create(&b, &id);
        let out = ctx.rt(&["start", &id]);
        assert!(
            !out.success() && out.stderr.contains(&expected),
            "start: {out}"
        );

        let out = ctx.rt(&["exec", &running, path]);
        assert!(
            !out.success() && out.stderr.contains(&expected),
            "exec: {out}"
        );
    }
}

/// A seccomp profile that denies execveat: the trampoline is exec'd from its memfd through
/// /proc/self/fd instead, and the program runs.
#[test]
fn a_profile_denying_execveat_still_runs_the_program() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("exeseccomp");
    let mut b = ctx.bundle();
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["execveat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    b.sh("echo ran; readlink /proc/self/exe");
    assert_eq!(
        ctx.run_ok(&b).lines().collect::<Vec<_>>(),
        ["ran", "/bin/busybox"]
    );
}
