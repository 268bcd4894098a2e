//! Test harness for berth's integration tests.
//!
//! Every test runs real containers, as root, from a copy of `bundles/busybox`.
//! The runtime under test is `$BERTH_TEST_RUNTIME` (e.g. `runc`) when set, else
//! the `berth` binary cargo built for this package.
//!
//! A [`Ctx`] owns everything a test makes: a temp dir (`/tmp/berth-test-*`)
//! holding the `--root` state dir, the bundles and scratch files; the
//! container ids it handed out; network namespaces and host mounts the test
//! made. Dropping it (also when the test panics) deletes the containers with
//! `delete --force`, removes our mounts, netns and cgroups, kills leftover
//! processes and removes the temp dir. When the test did not panic, the drop
//! also fails the test if the runtime leaked a state dir, a mount or a
//! process.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use serde_json::{json, Value};

/// How long a runtime command may take before the harness kills it.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a cleanup command (`delete --force`) may take.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `wait_status` and friends poll.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The runtime under test
// ---------------------------------------------------------------------------

/// The runtime binary: `$BERTH_TEST_RUNTIME` or the berth built by cargo.
pub fn runtime() -> PathBuf {
    match std::env::var_os("BERTH_TEST_RUNTIME") {
        Some(r) if !r.is_empty() => PathBuf::from(r),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_berth")),
    }
}

/// True when the runtime under test is berth (not runc/crun/...).
pub fn is_berth() -> bool {
    runtime().file_name() == Some(OsStr::new("berth"))
}

/// Short name of the runtime under test, for messages.
pub fn runtime_name() -> String {
    runtime()
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `if common::skip() { return; }` at the top of every test: the tests need root.
pub fn skip() -> bool {
    if !is_root() {
        eprintln!("SKIPPED: berth integration tests need root");
        return true;
    }
    false
}

/// `if common::berth_only("why") { return; }`: for berth-specific behaviour.
pub fn berth_only(what: &str) -> bool {
    if !is_berth() {
        eprintln!("SKIPPED under {}: berth-only check: {what}", runtime_name());
        return true;
    }
    false
}

/// Path of a program found in $PATH, if any.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

// ---------------------------------------------------------------------------
// Paths, the shared rootfs
// ---------------------------------------------------------------------------

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn base_bundle_dir() -> PathBuf {
    repo_dir().join("bundles/busybox")
}

/// The busybox rootfs made by scripts/mkrootfs.sh, built once (under a lock,
/// since several test binaries run at the same time).
pub fn shared_rootfs() -> PathBuf {
    let rootfs = base_bundle_dir().join("rootfs");
    let done = |r: &Path| r.join("bin/busybox").is_file() && r.join("etc/group").is_file();
    if done(&rootfs) {
        return rootfs;
    }
    let lock_path = std::env::temp_dir().join("berth-test-rootfs.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(&lock_path)
        .expect("open rootfs lock");
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .expect("flock rootfs lock");
    if !done(&rootfs) {
        let st = Command::new(repo_dir().join("scripts/mkrootfs.sh"))
            .arg(&rootfs)
            .stdin(Stdio::null())
            .status()
            .expect("run scripts/mkrootfs.sh");
        assert!(
            st.success(),
            "scripts/mkrootfs.sh {} failed",
            rootfs.display()
        );
    }
    rootfs
}

/// The committed `bundles/busybox/config.json`.
pub fn base_config() -> Value {
    let p = base_bundle_dir().join("config.json");
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique() -> u32 {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

/// `cp -a SRC DST`.
pub fn cp_a(src: &Path, dst: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .expect("cp -a");
    assert!(
        st.success(),
        "cp -a {} {} failed",
        src.display(),
        dst.display()
    );
}

/// Run a host command, panic unless it succeeds, return its stdout.
pub fn host(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------
// Command output
// ---------------------------------------------------------------------------

/// What a runtime command did.
#[derive(Debug, Clone)]
pub struct Out {
    pub cmd: String,
    pub status: ExitStatus,
    pub stdout: String,
    /// stderr with runc's log lines (`time="..." level=error msg="..."`, berth's too when
    /// it has no --log) given as their messages, unquoted: what tests look for.
    pub stderr: String,
    /// stderr as printed.
    pub raw_stderr: String,
}

/// A logrus text line's `msg`, unquoted (Go's strconv.Quote undone); other lines as they are.
pub fn log_line_message(line: &str) -> String {
    let Some(start) = line.find(" msg=\"").filter(|_| line.starts_with("time=\"")) else {
        return line.to_string();
    };
    let mut out = String::new();
    let mut chars = line[start + 6..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.push(u8::from_str_radix(&hex, 16).unwrap_or(b'?') as char);
                }
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

fn decode_log_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(&log_line_message(line));
        out.push('\n');
    }
    out
}

impl Out {
    /// Exit code, or 128+signal if the runtime itself was killed.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }
    pub fn success(&self) -> bool {
        self.status.success()
    }
    /// Panics (with the command, its stdout and stderr) unless it succeeded.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert!(self.success(), "command failed: {self}");
        self
    }
    /// Panics unless it failed.
    #[track_caller]
    pub fn fails(self) -> Out {
        assert!(!self.success(), "command unexpectedly succeeded: {self}");
        self
    }
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
    /// The non-empty lines of stderr.
    pub fn err_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> {} (code {})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd,
            self.status,
            self.code(),
            self.stdout,
            self.stderr
        )
    }
}

/// A runtime command running in the background, stdout/stderr going to files.
pub struct Bg {
    pub child: Child,
    cmd: String,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl Bg {
    /// Wait for the command (killing it after `timeout`) and collect its output.
    #[track_caller]
    pub fn wait(self, timeout: Duration) -> Out {
        let cmd = self.cmd.clone();
        let err_path = self.err_path.clone();
        match self.try_wait(timeout) {
            Some(out) => out,
            None => panic!(
                "`{cmd}` did not finish within {timeout:?} (killed); stderr:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            ),
        }
    }

    /// Like `wait`, but never panics: None if it had to be killed.
    pub fn try_wait(mut self, timeout: Duration) -> Option<Out> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                Err(_) => return None,
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let raw_stderr = fs::read_to_string(&self.err_path).unwrap_or_default();
        Some(Out {
            cmd: self.cmd.clone(),
            status,
            stdout: fs::read_to_string(&self.out_path).unwrap_or_default(),
            stderr: decode_log_lines(&raw_stderr),
            raw_stderr,
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the command printed so far.
    pub fn stdout_so_far(&self) -> String {
        fs::read_to_string(&self.out_path).unwrap_or_default()
    }

    /// What the command wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        fs::read_to_string(&self.err_path).unwrap_or_default()
    }

    /// Whether the command has exited (reaped here if so).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------

/// A bundle in the test's temp dir: a copy of bundles/busybox (config.json as
/// JSON to mutate, rootfs copied with `cp -a`).
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    /// Path of the bundle directory (the `--bundle` argument).
    pub fn path(&self) -> &Path {
        &self.dir
    }
    pub fn rootfs(&self) -> PathBuf {
        let p = self.config["root"]["path"].as_str().unwrap_or("rootfs");
        self.dir.join(p)
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// Write `config` to `config.json` (done by the Ctx helpers before each use).
    pub fn write(&self) {
        let text = serde_json::to_string_pretty(&self.config).unwrap();
        fs::write(self.config_path(), text).expect("write config.json");
    }
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = json!(args);
        self
    }
    /// Run `sh -c SCRIPT` in the container.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }
    /// Append `KEY=VALUE` to process.env.
    pub fn env(&mut self, kv: &str) -> &mut Self {
        self.config["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!(kv));
        self
    }
    pub fn add_mount(&mut self, m: Value) -> &mut Self {
        self.config["mounts"].as_array_mut().unwrap().push(m);
        self
    }
    /// Bind-mount host `src` at `dst` with extra options (e.g. "ro").
    pub fn bind(&mut self, src: &Path, dst: &str, opts: &[&str]) -> &mut Self {
        let mut options = vec!["rbind".to_string()];
        options.extend(opts.iter().map(|s| s.to_string()));
        self.add_mount(
            json!({"destination": dst, "type": "bind", "source": src, "options": options}),
        )
    }
    pub fn has_namespace(&self, ty: &str) -> bool {
        self.config["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == ty)
    }
    pub fn remove_namespace(&mut self, ty: &str) -> &mut Self {
        self.config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != ty);
        self
    }
    /// Add (or replace) a namespace, optionally joined by path.
    pub fn namespace(&mut self, ty: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(ty);
        let ns = match path {
            Some(p) => json!({"type": ty, "path": p}),
            None => json!({"type": ty}),
        };
        self.config["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(ns);
        self
    }
    pub fn add_hook(&mut self, kind: &str, hook: Value) -> &mut Self {
        if !self.config["hooks"].is_object() {
            self.config["hooks"] = json!({});
        }
        let hooks = &mut self.config["hooks"];
        if !hooks[kind].is_array() {
            hooks[kind] = json!([]);
        }
        hooks[kind].as_array_mut().unwrap().push(hook);
        self
    }
    pub fn readonly_root(&mut self, ro: bool) -> &mut Self {
        self.config["root"]["readonly"] = json!(ro);
        self
    }
}

// ---------------------------------------------------------------------------
// The test context
// ---------------------------------------------------------------------------

pub struct Ctx {
    pub name: String,
    /// Everything the test makes lives under here.
    pub tmp: PathBuf,
    /// The runtime's `--root`.
    pub root: PathBuf,
    /// Set in the runtime's environment, to find processes it leaked.
    pub marker: String,
    ids: RefCell<Vec<String>>,
    netns: RefCell<Vec<String>>,
    mounts: RefCell<Vec<PathBuf>>,
    pids: RefCell<Vec<(i32, u64)>>,
    n: Cell<u32>,
}

impl Ctx {
    /// A fresh context for test `name`.
    pub fn new(name: &str) -> Ctx {
        let marker = format!("{}-{}-{}", name, std::process::id(), unique());
        let tmp = PathBuf::from(format!("/tmp/berth-test-{marker}"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).expect("create test temp dir");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
        let root = tmp.join("state");
        fs::create_dir_all(&root).unwrap();
        Ctx {
            name: name.to_string(),
            tmp,
            root,
            marker,
            ids: RefCell::new(Vec::new()),
            netns: RefCell::new(Vec::new()),
            mounts: RefCell::new(Vec::new()),
            pids: RefCell::new(Vec::new()),
            n: Cell::new(0),
        }
    }

    fn next(&self) -> u32 {
        let n = self.n.get();
        self.n.set(n + 1);
        n
    }

    /// A new unique container id (deleted with --force when the test ends).
    pub fn id(&self, suffix: &str) -> String {
        let id = format!(
            "{}-{}-{}-{}",
            self.name,
            suffix,
            std::process::id(),
            self.next()
        );
        self.ids.borrow_mut().push(id.clone());
        id
    }

    /// Register an id that the test made up itself, for cleanup.
    pub fn track_id(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_string());
    }

    /// A fresh directory under the test's temp dir.
    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.join(format!("{}-{}", name, self.next()));
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    /// A new bundle: bundles/busybox/config.json and a `cp -a` of the rootfs.
    pub fn bundle(&self) -> Bundle {
        self.bundle_in(&self.tmp)
    }

    /// Like `bundle`, but the bundle directory is made under `parent`.
    pub fn bundle_in(&self, parent: &Path) -> Bundle {
        let rootfs = shared_rootfs();
        let dir = parent.join(format!("bundle-{}", self.next()));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        cp_a(&rootfs, &dir.join("rootfs"));
        let mut config = base_config();
        config["root"]["path"] = json!("rootfs");
        Bundle { dir, config }
    }

    /// A bundle with `sh -c SCRIPT` as its process.
    pub fn sh_bundle(&self, script: &str) -> Bundle {
        let mut b = self.bundle();
        b.sh(script);
        b
    }

    /// The state dir the runtime keeps for `id` under --root.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    // ----- running the runtime -----

    /// `RUNTIME --root ROOT ARGS...` with our marker in its environment.
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(runtime());
        c.arg("--root").arg(&self.root);
        c.args(args);
        c.env("BERTH_TEST_MARK", &self.marker);
        c.stdin(Stdio::null());
        c
    }

    /// Spawn `cmd` with stdout/stderr going to files; the caller waits.
    pub fn spawn_cmd(&self, cmd: Command) -> Bg {
        let desc = describe(&cmd);
        self.try_spawn_cmd(cmd)
            .unwrap_or_else(|e| panic!("spawn {desc}: {e}"))
    }

    fn try_spawn_cmd(&self, mut cmd: Command) -> std::io::Result<Bg> {
        let n = self.next();
        let out_path = self.tmp.join(format!("cmd-{n}.out"));
        let err_path = self.tmp.join(format!("cmd-{n}.err"));
        let desc = describe(&cmd);
        // Files, not pipes: a detached container keeps its stdio open, and a
        // pipe would never reach EOF.
        cmd.stdout(fs::File::create(&out_path)?);
        cmd.stderr(fs::File::create(&err_path)?);
        let child = cmd.spawn()?;
        Ok(Bg {
            child,
            cmd: desc,
            out_path,
            err_path,
        })
    }

    /// For cleanup code (which may run while a test panics): never panics.
    fn rt_quiet(&self, args: &[&str], timeout: Duration) -> Option<Out> {
        self.try_spawn_cmd(self.cmd(args)).ok()?.try_wait(timeout)
    }

    /// Run `cmd` to completion (at most CMD_TIMEOUT).
    pub fn output(&self, cmd: Command) -> Out {
        self.spawn_cmd(cmd).wait(CMD_TIMEOUT)
    }

    /// Run the runtime with `args` (after the global --root).
    pub fn rt<S: AsRef<OsStr>>(&self, args: &[S]) -> Out {
        self.output(self.cmd(args))
    }

    /// Spawn the runtime with `args` in the background.
    pub fn rt_bg<S: AsRef<OsStr>>(&self, args: &[S]) -> Bg {
        self.spawn_cmd(self.cmd(args))
    }

    // ----- container operations -----

    /// `create --bundle B ID`, not checked.
    pub fn try_create(&self, b: &Bundle, id: &str) -> Out {
        b.write();
        self.rt(&[
            OsStr::new("create"),
            OsStr::new("--bundle"),
            b.path().as_os_str(),
            OsStr::new(id),
        ])
    }

    /// `create --bundle B ID`, must succeed; returns the container's pid.
    /// Creates `b` (its process with a terminal) with a console socket, starts it and returns
    /// what it wrote to the terminal.
    pub fn run_on_console(&self, b: &Bundle, id: &str) -> String {
        b.write();
        let sock = ConsoleSocket::new(&self.tmp);
        self.rt(&[
            "create",
            "--console-socket",
            sock.path.to_str().unwrap(),
            "--bundle",
            b.path().to_str().unwrap(),
            id,
        ])
        .ok();
        let master = sock.recv_master(Duration::from_secs(10));
        self.start(id);
        read_pty(master, Duration::from_secs(20))
    }

    #[track_caller]
    pub fn create(&self, b: &Bundle, id: &str) -> i32 {
        self.try_create(b, id).ok();
        let st = self.state(id);
        assert_eq!(st["status"], "created", "state after create: {st}");
        self.pid(id)
    }

    #[track_caller]
    pub fn start(&self, id: &str) {
        self.rt(&["start", id]).ok();
    }

    /// `run --bundle B ID` in the foreground, not checked.
    pub fn run(&self, b: &Bundle, id: &str) -> Out {
        b.write();
        self.rt(&[
            OsStr::new("run"),
            OsStr::new("--bundle"),
            b.path().as_os_str(),
            OsStr::new(id),
        ])
    }

    /// Run bundle `b` in the foreground under a fresh id; must exit 0.
    /// Returns the container's stdout.
    #[track_caller]
    pub fn run_ok(&self, b: &Bundle) -> String {
        let id = self.id("run");
        let out = self.run(b, &id);
        assert_eq!(out.code(), 0, "container failed: {out}");
        out.stdout
    }

    /// Run `sh -c SCRIPT` in a default bundle; must exit 0; returns stdout.
    #[track_caller]
    pub fn sh_ok(&self, script: &str) -> String {
        self.run_ok(&self.sh_bundle(script))
    }

    /// `run --detach --bundle B ID`; must succeed; returns the pid.
    #[track_caller]
    pub fn run_detached(&self, b: &Bundle, id: &str) -> i32 {
        b.write();
        self.rt(&[
            OsStr::new("run"),
            OsStr::new("--detach"),
            OsStr::new("--bundle"),
            b.path().as_os_str(),
            OsStr::new(id),
        ])
        .ok();
        self.wait_status(id, "running");
        self.pid(id)
    }

    /// Create and start a container whose process is `sleep 1000`.
    /// Returns (id, pid) once it is running.
    #[track_caller]
    pub fn sleeper(&self, suffix: &str) -> (String, i32) {
        let mut b = self.bundle();
        b.args(&["sleep", "1000"]);
        self.sleeper_from(&b, suffix)
    }

    /// Create and start bundle `b` (whose process should keep running).
    #[track_caller]
    pub fn sleeper_from(&self, b: &Bundle, suffix: &str) -> (String, i32) {
        let id = self.id(suffix);
        let pid = self.create(b, &id);
        self.start(&id);
        self.wait_status(&id, "running");
        (id, pid)
    }

    /// `state ID` parsed; panics if the command fails.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let out = self.rt(&["state", id]).ok();
        let v: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("state JSON: {e}: {out}"));
        if let Some(pid) = v["pid"].as_i64() {
            if pid > 0 {
                self.note_pid(pid as i32);
            }
        }
        v
    }

    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[track_caller]
    pub fn pid(&self, id: &str) -> i32 {
        let st = self.state(id);
        let pid = st["pid"].as_i64().unwrap_or(0) as i32;
        assert!(pid > 0, "state has no pid: {st}");
        pid
    }

    /// Poll `state` until the status is `want` (panics after WAIT_TIMEOUT).
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            // `state` may fail while a background `run` is still creating it.
            let out = self.rt(&["state", id]);
            let st = if out.success() {
                let v: Value = serde_json::from_str(&out.stdout)
                    .unwrap_or_else(|e| panic!("state JSON: {e}: {out}"));
                if let Some(pid) = v["pid"].as_i64().filter(|&p| p > 0) {
                    self.note_pid(pid as i32);
                }
                v["status"].as_str().unwrap_or_default().to_string()
            } else {
                format!("(state failed: {})", out.stderr.trim())
            };
            if st == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} still {st:?}, wanted {want:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `delete ID` must succeed and leave no state dir and no process.
    #[track_caller]
    pub fn delete(&self, id: &str) {
        let pid = self.state(id)["pid"].as_i64().unwrap_or(0) as i32;
        self.rt(&["delete", id]).ok();
        self.assert_gone(id, pid);
    }

    /// After delete: no state dir, `state` fails, the pid is gone.
    #[track_caller]
    pub fn assert_gone(&self, id: &str, pid: i32) {
        assert!(
            !self.state_dir(id).exists(),
            "state dir {} left after delete",
            self.state_dir(id).display()
        );
        let out = self.rt(&["state", id]);
        assert!(
            !out.success(),
            "state of a deleted container succeeded: {out}"
        );
        if pid > 0 {
            wait_until("container process to go away", || !pid_alive(pid));
        }
    }

    /// Remember a container pid, to kill it on drop if it is still there.
    pub fn note_pid(&self, pid: i32) {
        let start = proc_start_time(pid);
        if let Some(start) = start {
            let mut pids = self.pids.borrow_mut();
            if !pids.iter().any(|&(p, s)| p == pid && s == start) {
                pids.push((pid, start));
            }
        }
    }

    // ----- other things a test can make -----

    /// A named network namespace `berthtest-...` (`ip netns add`), deleted on
    /// drop. Returns its path (/run/netns/NAME).
    pub fn netns(&self) -> PathBuf {
        let name = format!("berthtest-{}-{}", std::process::id(), unique());
        host("ip", &["netns", "add", &name]);
        self.netns.borrow_mut().push(name.clone());
        PathBuf::from("/run/netns").join(name)
    }

    /// Mount `fstype` at `target` on the host (unmounted on drop).
    pub fn host_mount(&self, args: &[&str], target: &Path) {
        let mut a: Vec<&str> = args.to_vec();
        let t = target.to_str().unwrap();
        a.push(t);
        host("mount", &a);
        self.mounts.borrow_mut().push(target.to_path_buf());
    }

    /// Processes (other than zombies) whose environment carries our marker.
    pub fn marked_processes(&self) -> Vec<i32> {
        let needle = format!("BERTH_TEST_MARK={}", self.marker);
        let mut found = vec![];
        let Ok(procs) = fs::read_dir("/proc") else {
            return found;
        };
        for e in procs.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == std::process::id() as i32 {
                continue;
            }
            if let Ok(env) = fs::read(e.path().join("environ")) {
                if env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()) {
                    found.push(pid);
                }
            }
        }
        found
    }

    /// No process started by the runtime for this test is still alive.
    #[track_caller]
    pub fn assert_no_marked_process(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.marked_processes();
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                let desc: Vec<String> = left
                    .iter()
                    .map(|p| format!("{p}: {}", cmdline(*p)))
                    .collect();
                panic!("runtime left processes behind: {desc:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Mount points (in our mount namespace) under the test's temp dir that
    /// the test did not make itself.
    pub fn leaked_mounts(&self) -> Vec<String> {
        let prefix = self.tmp.to_string_lossy().into_owned();
        let own = self.mounts.borrow();
        mountinfo_of("self")
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|mp| mp == &prefix || mp.starts_with(&(prefix.clone() + "/")))
            .filter(|mp| !own.iter().any(|o| o.as_os_str() == OsStr::new(mp)))
            .collect()
    }

    /// The runtime left no state dir for `id`, nothing else under --root,
    /// no process and no mount.
    #[track_caller]
    pub fn assert_no_trace(&self, id: &str) {
        self.assert_no_trace_except(id, &[]);
    }

    /// Like `assert_no_trace`, but containers `others` may still exist.
    #[track_caller]
    pub fn assert_no_trace_except(&self, id: &str, others: &[&str]) {
        assert!(
            !self.state_dir(id).exists(),
            "state dir {} left behind",
            self.state_dir(id).display()
        );
        let leftovers: Vec<_> = fs::read_dir(&self.root)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !others.contains(&n.as_str()))
            .collect();
        assert!(
            leftovers.is_empty(),
            "--root {} holds {leftovers:?}",
            self.root.display()
        );
        self.assert_no_marked_process();
        let m = self.leaked_mounts();
        assert!(m.is_empty(), "runtime left mounts behind: {m:?}");
    }

    fn cleanup(&self) -> Vec<String> {
        let mut problems = vec![];
        for id in self.ids.borrow().iter() {
            if self
                .rt_quiet(&["delete", "--force", id], CLEANUP_TIMEOUT)
                .is_none()
            {
                problems.push(format!("`delete --force {id}` hung"));
            }
            if self.state_dir(id).exists() {
                problems.push(format!("state dir of {id} left after delete --force"));
                let _ = fs::remove_dir_all(self.state_dir(id));
            }
        }
        // Processes the runtime left.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = self.marked_processes();
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                problems.push(format!("processes left behind: {left:?}"));
                for p in left {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::SIGKILL,
                    );
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for &(pid, start) in self.pids.borrow().iter() {
            if proc_start_time(pid) == Some(start) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
            }
        }
        // Mounts: the runtime's leaks first (a failure), then ours.
        let leaked = self.leaked_mounts();
        if !leaked.is_empty() {
            problems.push(format!("mounts left behind: {leaked:?}"));
        }
        let mut all: Vec<String> = leaked;
        all.extend(
            self.mounts
                .borrow()
                .iter()
                .map(|p| p.to_string_lossy().into_owned()),
        );
        all.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for mp in all {
            let _ = nix::mount::umount2(Path::new(&mp), nix::mount::MntFlags::MNT_DETACH);
        }
        for ns in self.netns.borrow().iter() {
            let _ = Command::new("ip")
                .args(["netns", "delete", ns])
                .stderr(Stdio::null())
                .status();
        }
        // cgroups named after our ids (runc's default path is /<id>), if the
        // runtime left them.
        for id in self.ids.borrow().iter() {
            remove_cgroups_named(id);
            remove_cgroups_named(&format!("berth/{id}"));
            remove_cgroups_named(&format!("berthtest-{id}"));
        }
        problems
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // A panic in here while the test is already panicking would abort
        // the whole test binary (and skip every other test's cleanup).
        let problems = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.cleanup()))
            .unwrap_or_else(|_| vec!["cleanup itself panicked".to_string()]);
        // Never remove_dir_all through a mount still there.
        let still: Vec<String> = {
            let prefix = self.tmp.to_string_lossy().into_owned();
            mountinfo_of("self")
                .into_iter()
                .map(|m| m.mount_point)
                .filter(|m| m.starts_with(&prefix))
                .collect()
        };
        if still.is_empty() {
            let _ = fs::remove_dir_all(&self.tmp);
        } else {
            eprintln!(
                "not removing {}: still mounted: {still:?}",
                self.tmp.display()
            );
        }
        if !problems.is_empty() && !std::thread::panicking() {
            panic!("cleanup of {} found leaks: {problems:#?}", self.name);
        }
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// rmdir `/sys/fs/cgroup/*/NAME`, and `NAME` under our own cgroup in each
/// hierarchy (runc nests a relative default path there). Only empty cgroups
/// named after our container ids go.
fn remove_cgroups_named(name: &str) {
    let Ok(ctrls) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let own: Vec<String> = fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .filter(|p| *p != "/")
        .map(|p| p.trim_start_matches('/').to_string())
        .collect();
    for c in ctrls.flatten() {
        let mut dirs = vec![c.path().join(name)];
        dirs.extend(own.iter().map(|p| c.path().join(p).join(name)));
        for d in dirs {
            if d.is_dir() {
                let _ = fs::remove_dir(&d);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// /proc helpers
// ---------------------------------------------------------------------------

/// Poll `cond` until it is true; panics after WAIT_TIMEOUT.
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The process exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
            !after.trim_start().starts_with('Z') && !after.trim_start().starts_with('X')
        }
        Err(_) => false,
    }
}

/// Field 22 of /proc/PID/stat (start time), to tell a reused pid apart.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// argv of a process joined with spaces.
pub fn cmdline(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `readlink /proc/PID/ns/KIND`, e.g. "net:[4026531840]". PID may be "self".
pub fn ns_link(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{kind}: {e}"))
        .to_string_lossy()
        .into_owned()
}

/// A key of /proc/PID/status ("CapEff", "NoNewPrivs", ...).
pub fn proc_status(pid: &str, key: &str) -> Option<String> {
    status_field(
        &fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        key,
    )
}

/// A key of a /proc/*/status text.
pub fn status_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

/// One line of /proc/*/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub root: String,
    pub mount_point: String,
    pub mount_opts: Vec<String>,
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    pub super_opts: Vec<String>,
}

impl MountInfo {
    pub fn has_opt(&self, o: &str) -> bool {
        self.mount_opts.iter().any(|x| x == o)
    }
    pub fn has_super_opt(&self, o: &str) -> bool {
        self.super_opts.iter().any(|x| x == o)
    }
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 6 || post.len() < 3 {
                return None;
            }
            Some(MountInfo {
                root: unescape_mountinfo(pre[3]),
                mount_point: unescape_mountinfo(pre[4]),
                mount_opts: pre[5].split(',').map(String::from).collect(),
                optional: pre[6..].iter().map(|s| s.to_string()).collect(),
                fstype: post[0].to_string(),
                source: unescape_mountinfo(post[1]),
                super_opts: post[2].split(',').map(String::from).collect(),
            })
        })
        .collect()
}

pub fn mountinfo_of(pid: &str) -> Vec<MountInfo> {
    parse_mountinfo(&fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default())
}

/// The last (topmost) mount at `mp` in a parsed mountinfo.
pub fn find_mount<'a>(mounts: &'a [MountInfo], mp: &str) -> Option<&'a MountInfo> {
    mounts.iter().rev().find(|m| m.mount_point == mp)
}

// ---------------------------------------------------------------------------
// Capabilities
// ---------------------------------------------------------------------------

pub const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Bit mask of a list of capability names (a JSON array).
pub fn cap_mask(names: &Value) -> u64 {
    let mut m = 0u64;
    for n in names.as_array().map(|a| a.as_slice()).unwrap_or(&[]) {
        let n = n.as_str().unwrap();
        let bit = CAPS
            .iter()
            .position(|c| *c == n)
            .unwrap_or_else(|| panic!("unknown cap {n}"));
        m |= 1 << bit;
    }
    m
}

pub fn parse_hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim(), 16).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

/// Capabilities this kernel knows (from /proc/sys/kernel/cap_last_cap).
pub fn kernel_caps() -> Vec<&'static str> {
    let last: usize = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    CAPS[..=last.min(CAPS.len() - 1)].to_vec()
}

// ---------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------

/// Current (soft, hard) limit of a resource.
pub fn rlimit(res: nix::sys::resource::Resource) -> (u64, u64) {
    nix::sys::resource::getrlimit(res).unwrap()
}

/// Parse `KEY=VALUE` lines.
pub fn kv_lines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Spawn `cmd` with `fd` installed as fd 3 in the child (for --preserve-fds
/// and LISTEN_FDS tests).
pub fn with_fd3(cmd: &mut Command, fd: std::os::fd::RawFd) {
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A pipe whose read end carries `data` (write end closed), O_CLOEXEC.
pub fn pipe_with(data: &[u8]) -> std::os::fd::OwnedFd {
    use std::io::Write;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let mut wf = fs::File::from(w);
    wf.write_all(data).unwrap();
    drop(wf);
    r
}

/// Read everything from a pty master until the other side is gone (EIO/EOF)
/// or `timeout`.
pub fn read_pty(master: std::os::fd::OwnedFd, timeout: Duration) -> String {
    use std::os::fd::AsFd;
    let deadline = Instant::now() + timeout;
    let mut f = fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds = [nix::poll::PollFd::new(
            f.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::try_from(ms).unwrap()) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break, // EIO: the slave side closed
        }
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

/// Read from `master` until `needle` shows up (or timeout); returns all read.
pub fn read_pty_until(master: &std::os::fd::OwnedFd, needle: &str, timeout: Duration) -> String {
    use std::os::fd::AsFd;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::try_from(ms).unwrap()) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        match nix::unistd::read(master, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

/// A unix socket listening at `path`, for --console-socket.
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    pub fn new(dir: &Path) -> ConsoleSocket {
        let path = dir.join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind console socket");
        ConsoleSocket { path, listener }
    }

    /// Accept the runtime's connection and receive the pty master via
    /// SCM_RIGHTS (the runtime has already sent it when create/exec -d returns).
    pub fn recv_master(&self, timeout: Duration) -> std::os::fd::OwnedFd {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::{AsRawFd, FromRawFd};
        self.listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "nobody connected to the console socket"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept console socket: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg on console socket");
        for c in msg.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    for &extra in &fds[1..] {
                        unsafe { libc::close(extra) };
                    }
                    return unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
                }
            }
        }
        panic!("no fd received on the console socket");
    }
}

/// Host's value of a sysctl file under /proc/sys.
pub fn host_sysctl(path: &str) -> String {
    fs::read_to_string(Path::new("/proc/sys").join(path))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// True if the runtime's `features` lists namespace `ns`.
pub fn features_have_namespace(ns: &str) -> bool {
    let out = Command::new(runtime())
        .arg("features")
        .stdin(Stdio::null())
        .output();
    let Ok(out) = out else { return false };
    let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
        return false;
    };
    v["linux"]["namespaces"]
        .as_array()
        .map(|a| a.iter().any(|n| n == ns))
        .unwrap_or(false)
}
