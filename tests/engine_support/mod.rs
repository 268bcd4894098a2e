//! Shared by the engine's tests: the two test images as docker-archives that both berth and
//! Docker load (the busybox image, made from `bundles/busybox/rootfs`, and the Debian image made
//! by `scripts/mkimage-debian.sh`), loading them into a [`Scratch`] data root, and a private
//! dockerd for differential tests ([`Dockerd`]), with everything it makes removed at drop.
//!
//! A test that needs a tool the machine lacks (dockerd, debootstrap) is skipped with a printed
//! `SKIPPED:` line, except under CI (`CI=true`), where it fails: CI installs them (`.ci/run`).
#![allow(dead_code)]

#[path = "../image_support/mod.rs"]
mod image_support;
pub use image_support::*;

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The busybox image's name, the same in berth's store and in Docker's.
pub const BUSYBOX: &str = "berth-tests/busybox:latest";
/// The Debian image's name (the tag `scripts/mkimage-debian.sh` gives it).
pub const DEBIAN: &str = "berth-tests/debian-nginx:bookworm";
/// What the Debian image's nginx serves at `/`.
pub const DEBIAN_INDEX: &str = "berth test image: nginx on Debian bookworm";
/// Docker's default capability set (moby's `oci/caps/defaults.go`), for bundles that should
/// run what a `docker run` runs.
pub const DOCKER_DEFAULT_CAPS: &[&str] = &berth::engine::security::DEFAULT_CAPABILITIES;
/// How long one docker or berth command of a test may take before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// Path of a program found in $PATH.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// True (after printing why) when a test cannot run here: not root, or one of `tools` is not
/// installed. Under CI a missing tool is a failure, not a skip.
pub fn skip_without(tools: &[&str], what: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED: {what} needs root");
        return true;
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return false;
    }
    let why = format!("{what} needs {} (see .ci/run)", missing.join(", "));
    assert!(!in_ci(), "{why}");
    eprintln!("SKIPPED: {why}");
    true
}

/// A command's exit code and output, as text.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The exit code; 128+N for a command killed by signal N.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn of(out: Output) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        Outcome {
            code: out
                .status
                .code()
                .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The stdout, panicking with everything known unless the command succeeded.
    pub fn ok(self, what: &str) -> String {
        assert_eq!(self.code, 0, "{what} failed: {self:?}");
        self.stdout
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs `cmd` (stdin from /dev/null) under coreutils' `timeout`, which kills it after
/// [`COMMAND_TIMEOUT`]: a hung daemon fails the test instead of hanging the suite.
pub fn run_bounded(cmd: &Command) -> Outcome {
    run_within(cmd, COMMAND_TIMEOUT)
}

/// Like [`run_bounded`], with a limit of its own.
pub fn run_within(cmd: &Command, limit: Duration) -> Outcome {
    let mut bounded = Command::new("timeout");
    bounded
        .args(["-k", "10", &limit.as_secs().to_string()])
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => bounded.env(k, v),
            None => bounded.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        bounded.current_dir(d);
    }
    let out = bounded
        .output()
        .unwrap_or_else(|e| panic!("running {:?}: {e}", cmd.get_program()));
    let outcome = Outcome::of(out);
    assert_ne!(
        outcome.code,
        124,
        "{:?} {:?} took more than {limit:?}",
        cmd.get_program(),
        cmd.get_args().collect::<Vec<_>>()
    );
    outcome
}

/// The cache of test images made here (`BERTH_TEST_CACHE`, as the scripts making images use).
pub fn test_cache_dir() -> PathBuf {
    std::env::var_os("BERTH_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/berth-tests"))
}

/// One `GET path` (HTTP/1.0) to `addr`:`port`: the whole answer, headers included.
pub fn http_get_once(addr: std::net::IpAddr, port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut t = std::net::TcpStream::connect_timeout(&(addr, port).into(), Duration::from_secs(3))?;
    t.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(t, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    t.read_to_string(&mut out)?;
    Ok(out)
}

/// GET `path` from 127.0.0.1:`port`, retried for a few seconds (a server starting) until it
/// answers 200.
pub fn http_get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http_get_once(std::net::Ipv4Addr::LOCALHOST.into(), port, path);
        match r {
            Ok(out) if out.contains("200") => return out,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("GET 127.0.0.1:{port}{path}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// The images
// ---------------------------------------------------------------------------

/// The busybox image's config: what Docker Hub's busybox has (PATH and `sh`).
pub fn busybox_config() -> serde_json::Value {
    serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
    })
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a docker-archive (`docker save`'s format: manifest.json, the config as `ID.json`, one
/// uncompressed `layer.tar` per layer) of an image with these layers and container config,
/// tagged `tag`. Returns the image id (`sha256:` and the config's digest), which Docker and
/// berth both report for it.
pub fn write_docker_archive(
    out: &Path,
    tag: &str,
    layers: &[Vec<u8>],
    config: serde_json::Value,
) -> String {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256_hex(l)).collect();
    let image = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": config,
        "rootfs": {
            "type": "layers",
            "diff_ids": diff_ids.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>(),
        },
        "history": diff_ids.iter().map(|d| serde_json::json!({
            "created": "2024-01-02T03:04:05Z",
            "created_by": format!("berth tests: layer {}", &d[..12]),
        })).collect::<Vec<_>>(),
    });
    let config_bytes = serde_json::to_vec(&image).unwrap();
    let config_hex = sha256_hex(&config_bytes);
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [tag],
        "Layers": diff_ids.iter().map(|d| format!("{d}/layer.tar")).collect::<Vec<_>>(),
    }]);
    let file = File::create(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let mut builder = tar::Builder::new(file);
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        builder.append_data(&mut h, path, data).unwrap();
    };
    for (d, layer) in diff_ids.iter().zip(layers) {
        add(&format!("{d}/layer.tar"), layer);
    }
    add(&format!("{config_hex}.json"), &config_bytes);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    builder.into_inner().unwrap();
    format!("sha256:{config_hex}")
}

/// The busybox image ([`BUSYBOX`], [`busybox_config`]) as a docker-archive in the scratch dir.
pub fn busybox_archive(scratch: &Scratch) -> PathBuf {
    let out = scratch.path("busybox-image.tar");
    if !out.exists() {
        let layer = busybox_tar(scratch);
        write_docker_archive(&out, BUSYBOX, &[layer], busybox_config());
    }
    out
}

/// The Debian image ([`DEBIAN`]) as a docker-archive in the scratch dir, from
/// `scripts/mkimage-debian.sh` (debootstrap the first time, its cache after); `None`, after a
/// printed reason, where debootstrap is not installed (a failure under CI).
pub fn debian_archive(scratch: &Scratch) -> Option<PathBuf> {
    if skip_without(&["debootstrap"], "the Debian test image") {
        return None;
    }
    let out = scratch.path("debian-image.tar");
    if out.exists() {
        return Some(out);
    }
    let mut cmd = Command::new(repo_dir().join("scripts/mkimage-debian.sh"));
    cmd.arg(&out);
    // Its few lines of progress (and debootstrap's errors) go to the test's output. Made
    // afresh, the image takes about 35 s here (debootstrap unpacking and configuring its 120
    // packages, about as long when they are in its cache).
    let made = run_within(&cmd, Duration::from_secs(900));
    eprint!("{}", made.stderr);
    assert_eq!(made.code, 0, "scripts/mkimage-debian.sh failed: {made:?}");
    Some(out)
}

/// `berth load -i ARCHIVE` into the scratch data root; returns the names it loaded.
pub fn berth_load(scratch: &Scratch, archive: &Path) -> Vec<String> {
    let out = scratch.berth_ok(&["load", "-i", archive.to_str().unwrap()]);
    out.lines()
        .filter_map(|l| l.strip_prefix("Loaded image: "))
        .map(str::to_string)
        .collect()
}

/// The busybox image, loaded into the scratch data root as [`BUSYBOX`].
pub fn load_busybox(scratch: &Scratch) {
    let archive = busybox_archive(scratch);
    let names = berth_load(scratch, &archive);
    assert_eq!(
        names.len(),
        1,
        "berth load of the busybox archive: {names:?}"
    );
}

/// The Debian image, loaded into the scratch data root as [`DEBIAN`]; false (after a printed
/// reason) where it cannot be made here.
pub fn load_debian(scratch: &Scratch) -> bool {
    let Some(archive) = debian_archive(scratch) else {
        return false;
    };
    let names = berth_load(scratch, &archive);
    assert_eq!(
        names.len(),
        1,
        "berth load of the Debian archive: {names:?}"
    );
    true
}

// ---------------------------------------------------------------------------
// berth's own containers before the engine: `berth bundle` + `berth run`
// ---------------------------------------------------------------------------

/// A bundle made by `berth bundle` in a scratch dir, removed (`rm-bundle --force`) at drop.
pub struct ImageBundle<'a> {
    scratch: &'a Scratch,
    pub dir: PathBuf,
}

impl<'a> ImageBundle<'a> {
    pub fn new(scratch: &'a Scratch, image: &str, name: &str) -> ImageBundle<'a> {
        let dir = scratch.path(name);
        scratch.berth_ok(&["bundle", image, dir.to_str().unwrap()]);
        ImageBundle { scratch, dir }
    }

    pub fn config(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("config.json")).unwrap()).unwrap()
    }

    /// Changes config.json.
    pub fn edit(&self, change: impl FnOnce(&mut serde_json::Value)) {
        let mut config = self.config();
        change(&mut config);
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
    }

    /// The process gets Docker's default capabilities (as a `docker run` would).
    pub fn with_docker_caps(&self, extra: &[&str]) {
        let caps: Vec<&str> = DOCKER_DEFAULT_CAPS.iter().chain(extra).copied().collect();
        self.edit(|c| {
            for set in ["bounding", "effective", "permitted"] {
                c["process"]["capabilities"][set] = serde_json::json!(caps);
            }
        });
    }

    /// `berth run --bundle DIR ID`, in the foreground: the container's exit code and output.
    pub fn run(&self, id: &str) -> Outcome {
        let mut cmd = self.scratch.command(&["run", "--bundle"]);
        cmd.arg(&self.dir).arg(id);
        let out = run_bounded(&cmd);
        // A container that outlived a killed `run` must not keep the bundle busy.
        if out.code != 0 {
            let _ = self.scratch.berth(&["delete", "--force", id]);
        }
        out
    }
}

impl Drop for ImageBundle<'_> {
    fn drop(&mut self) {
        let _ = self
            .scratch
            .berth(&["rm-bundle", "--force", self.dir.to_str().unwrap()]);
    }
}

// ---------------------------------------------------------------------------
// A private dockerd
// ---------------------------------------------------------------------------

/// The lock the client suites (scripts/clients/lib.sh) take: dockerd and containerd use a few
/// fixed host paths (/run/containerd, /run/docker) whatever their flags say, so only one of
/// these daemons runs at a time, across test binaries and checkouts.
const CLIENTS_LOCK: &str = "/run/lock/berth-clients.lock";
/// Host paths dockerd makes whatever its flags say; removed at the end if they were not there.
const DOCKERD_HOST_PATHS: &[&str] = &["/run/containerd", "/run/docker", "/etc/docker/key.json"];

/// A dockerd of the test's own: its data root, exec root, pid file, socket and config in a temp
/// dir; no bridge and no iptables rules (`"bridge": "none"`, `"iptables": false`), runc as
/// its runtime, the cgroupfs driver under a cgroup parent of its own. Dropping it removes its
/// containers, stops it, and removes every process, mount, cgroup and host path it made.
pub struct Dockerd {
    pub dir: PathBuf,
    socket: PathBuf,
    cgroup_parent: String,
    daemon: Mutex<Option<Child>>,
    made_host_paths: Vec<PathBuf>,
    loaded: Mutex<HashSet<String>>,
    /// The docker client the commands run: Debian's (the daemon's own version) unless
    /// [`Dockerd::with_client_in_path`] chose the one first in PATH.
    client: PathBuf,
    /// The network namespace the daemon runs in ([`Dockerd::start_in_netns`]), removed after
    /// it stops.
    netns: Option<String>,
    _lock: nix::fcntl::Flock<File>,
}

static SHARED_DOCKERD: Mutex<Weak<Dockerd>> = Mutex::new(Weak::new());

fn docker_cli() -> PathBuf {
    // Debian's docker.io client, the daemon's own version, before any other in PATH.
    let debian = PathBuf::from("/usr/bin/docker");
    if debian.exists() {
        return debian;
    }
    which("docker").expect("docker CLI")
}

pub fn lock_exclusive(path: &str, patience: Duration) -> nix::fcntl::Flock<File> {
    use nix::fcntl::{Flock, FlockArg};
    let start = Instant::now();
    let mut said = false;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return lock,
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                file = f;
                assert!(
                    start.elapsed() < patience,
                    "{path} was held for {patience:?} (a client suite or another dockerd)"
                );
                if !said {
                    eprintln!("waiting for {path} (a client suite or another dockerd holds it)");
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((_, e)) => panic!("flock {path}: {e}"),
        }
    }
}

impl Dockerd {
    /// One dockerd shared by the tests of this binary that run at the same time: it is
    /// stopped when the last of them drops its handle. `None` (after a printed reason) where
    /// Docker is not installed, a failure under CI.
    pub fn shared() -> Option<Arc<Dockerd>> {
        let mut shared = SHARED_DOCKERD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = shared.upgrade() {
            return Some(d);
        }
        let d = Arc::new(Dockerd::start()?);
        *shared = Arc::downgrade(&d);
        Some(d)
    }

    /// A dockerd of its own; `None` (after a printed reason) where Docker is not installed.
    pub fn start() -> Option<Dockerd> {
        Dockerd::start_with(serde_json::json!({}))
    }

    /// [`Dockerd::start`] with daemon.json keys of the test's over the defaults (a network
    /// test's `{"bridge": "BRIDGE_IT_MADE"}`).
    pub fn start_with(overrides: serde_json::Value) -> Option<Dockerd> {
        Dockerd::start_inner(overrides, None)
    }

    /// A dockerd with Docker's own network defaults (its default bridge `docker0` on
    /// 172.17.0.0/16, iptables rules, ip_forward, masquerade, docker-proxy), all inside a network
    /// namespace `netns` made here (`ip netns add`) and removed after the daemon stops: its
    /// bridge, rules and published ports never touch the host's. IPv6 is off in the namespace,
    /// so that Docker binds published ports on IPv4 only (berth has no IPv6).
    pub fn start_in_netns(netns: &str) -> Option<Dockerd> {
        Dockerd::start_inner(serde_json::json!({}), Some(netns.to_string()))
    }

    fn start_inner(overrides: serde_json::Value, netns: Option<String>) -> Option<Dockerd> {
        if skip_without(&["dockerd", "containerd", "runc"], "a differential test") {
            return None;
        }
        if !docker_cli().exists() {
            assert!(!in_ci(), "no docker CLI (apt-get install docker.io)");
            eprintln!("SKIPPED: no docker CLI (apt-get install docker.io)");
            return None;
        }
        let lock = lock_exclusive(CLIENTS_LOCK, Duration::from_secs(900));
        let made_host_paths = DOCKERD_HOST_PATHS
            .iter()
            .map(PathBuf::from)
            .filter(|p| !p.exists())
            .collect();
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berth-dockerd-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        cleanup(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cgroup_parent = format!("berth-test-dockerd-{}", std::process::id());
        let config = serde_json::json!({
            "bridge": "none",
            "iptables": false,
            "ip6tables": false,
            "ip-forward": false,
            "ip-masq": false,
            "exec-opts": ["native.cgroupdriver=cgroupfs"],
            "cgroup-parent": format!("/{cgroup_parent}"),
            "log-driver": "json-file",
        });
        let mut config = config;
        if let (Some(c), Some(o)) = (config.as_object_mut(), overrides.as_object()) {
            c.extend(o.clone());
            if netns.is_some() {
                for k in ["bridge", "iptables", "ip6tables", "ip-forward", "ip-masq"] {
                    c.remove(k);
                }
            }
        }
        if let Some(ns) = &netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            let script = "ip link set lo up && \
                          echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && \
                          echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6";
            let ok = Command::new("ip")
                .args(["netns", "add", ns])
                .status()
                .is_ok_and(|s| s.success())
                && Command::new("nsenter")
                    .arg(format!("--net=/run/netns/{ns}"))
                    .args(["sh", "-c", script])
                    .status()
                    .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
                panic!("could not make the network namespace {ns} for dockerd");
            }
        }
        std::fs::write(dir.join("daemon.json"), config.to_string()).unwrap();
        let socket = dir.join("docker.sock");
        let log = File::create(dir.join("dockerd.log")).unwrap();
        // In the namespace by setns alone (nsenter execs dockerd): `ip netns exec` would also
        // mount a /sys of its own, without the cgroup hierarchies mounted under it.
        let mut cmd = match &netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("dockerd");
                c
            }
            None => Command::new("dockerd"),
        };
        cmd.arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group: a ^C of the test run reaches the test, whose cleanup
            // stops the daemon in order, not the daemon first.
            .process_group(0);
        let child = cmd.spawn().expect("spawning dockerd");
        eprintln!(
            "dockerd {} started in {} (pid {})",
            dockerd_version(),
            dir.display(),
            child.id()
        );
        let d = Dockerd {
            client: docker_cli(),
            dir,
            socket,
            cgroup_parent,
            daemon: Mutex::new(Some(child)),
            made_host_paths,
            loaded: Mutex::new(HashSet::new()),
            netns,
            _lock: lock,
        };
        d.wait_ready();
        Some(d)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.command(&["version"]).output().unwrap();
            if out.status.success() {
                return;
            }
            let exited = self
                .daemon
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "dockerd did not start ({}): {}",
                    exited.map_or("timed out".to_string(), |s| s.to_string()),
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of dockerd's log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `docker -H unix://SOCKET ARGS`, the client's config in the temp dir, stdin from
    /// /dev/null.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.client);
        c.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .stdin(Stdio::null());
        c
    }

    /// The docker client first in PATH instead of Debian's (a newer client words some errors
    /// otherwise: the tests written against it).
    pub fn with_client_in_path(mut self) -> Dockerd {
        self.client = which("docker").unwrap_or_else(docker_cli);
        self
    }

    /// `docker ARGS`, its output as it is (a tar on stdout stays bytes).
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Like [`Dockerd::output`], panicking unless it succeeds; its stdout as bytes.
    pub fn ok_bytes(&self, args: &[&str]) -> Vec<u8> {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}\ndockerd's log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(10)
        );
        out.stdout
    }

    /// `docker ARGS` (bounded by [`COMMAND_TIMEOUT`]).
    pub fn docker(&self, args: &[&str]) -> Outcome {
        run_bounded(&self.command(args))
    }

    /// `docker ARGS`, panicking (with dockerd's last log lines) unless it succeeds; its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.code == 0,
            "docker {args:?} failed: {out:?}\ndockerd's log:\n{}",
            self.log_tail(10)
        );
        out.stdout
    }

    /// `docker load -i ARCHIVE`, once per image name and daemon.
    pub fn load(&self, name: &str, archive: &Path) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.contains(name) {
            return;
        }
        let out = self.docker_ok(&["load", "-i", archive.to_str().unwrap()]);
        assert!(
            out.contains(&format!("Loaded image: {name}")),
            "docker load of {} did not load {name}: {out}",
            archive.display()
        );
        loaded.insert(name.to_string());
    }

    /// The busybox image, loaded as [`BUSYBOX`].
    pub fn load_busybox(&self, scratch: &Scratch) {
        self.load(BUSYBOX, &busybox_archive(scratch));
    }

    /// The Debian image, loaded as [`DEBIAN`]; false (after a printed reason) where it cannot
    /// be made here.
    pub fn load_debian(&self, scratch: &Scratch) -> bool {
        match debian_archive(scratch) {
            Some(archive) => {
                self.load(DEBIAN, &archive);
                true
            }
            None => false,
        }
    }

    /// The pids of every process whose command line names the temp dir (the daemon, its
    /// containerd, the shims).
    fn processes(&self) -> Vec<i32> {
        processes_naming(&self.dir.to_string_lossy())
    }

    /// The cgroup directories of the daemon's cgroup parent, in every hierarchy.
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        let top = Path::new("/sys/fs/cgroup");
        if top.join(&self.cgroup_parent).is_dir() {
            dirs.push(top.join(&self.cgroup_parent));
        }
        for entry in std::fs::read_dir(top).into_iter().flatten().flatten() {
            let d = entry.path().join(&self.cgroup_parent);
            if d.is_dir() {
                dirs.push(d);
            }
        }
        dirs
    }

    /// What the daemon left on the host after it stopped (empty when it is clean): processes,
    /// cgroups, mounts, host paths. For the tests of this module.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = self
            .processes()
            .iter()
            .map(|p| format!("process {p}"))
            .collect();
        left.extend(
            self.cgroup_dirs()
                .iter()
                .map(|d| format!("cgroup {}", d.display())),
        );
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        left.extend(
            info.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| Path::new(p).starts_with(&self.dir))
                .map(|p| format!("mount {p}")),
        );
        if !other_docker_daemons_run() {
            left.extend(
                self.made_host_paths
                    .iter()
                    .filter(|p| p.exists())
                    .map(|p| format!("host path {}", p.display())),
            );
        }
        left
    }

    /// Removes the containers, stops the daemon (TERM, KILL after 20 s) and removes what it
    /// made on the host, except the temp dir. Idempotent.
    pub fn stop(&self) {
        let Some(mut child) = self.daemon.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let ids = run_bounded(&self.command(&["ps", "-aq"])).stdout;
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids);
                let _ = run_bounded(&self.command(&args));
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
        // What outlived the daemon (its containerd, shims of a daemon killed mid-way).
        for pid in self.processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for dir in self.cgroup_dirs() {
            remove_cgroup_tree(&dir);
        }
        // The host paths it made, unless another daemon (one that did not take the lock) may
        // use them now; even then only as far as they are empty, for a shim of such a daemon
        // may have put its socket in /run/containerd/s since.
        if !other_docker_daemons_run() {
            for p in &self.made_host_paths {
                if p.is_dir() {
                    remove_empty_dirs(p);
                } else {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
        cleanup_mounts_under(&self.dir);
        // Its bridge, veths and rules go with its namespace.
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        cleanup(&self.dir);
    }
}

fn dockerd_version() -> String {
    Command::new("dockerd")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Whether a dockerd or containerd runs on the host (another test's, which did not take the
/// lock, or the host's own): then the fixed host paths may be theirs.
fn other_docker_daemons_run() -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            matches!(comm.trim_end(), "dockerd" | "containerd")
        })
}

/// Removes `top` and the directories under it, deepest first, as far as they are empty.
fn remove_empty_dirs(top: &Path) {
    for e in std::fs::read_dir(top).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_empty_dirs(&e.path());
        }
    }
    let _ = std::fs::remove_dir(top);
}

/// Kills what is left in a cgroup tree, then removes its directories, deepest first.
fn remove_cgroup_tree(top: &Path) {
    let mut dirs = Vec::new();
    let mut todo = vec![top.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                todo.push(e.path());
            }
        }
        dirs.push(d);
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for _ in 0..50 {
        let mut busy = false;
        for d in &dirs {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                busy = true;
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if !busy {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for d in &dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// Lazily unmounts every mount point under `dir`, deepest first.
fn cleanup_mounts_under(dir: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

// ---------------------------------------------------------------------------
// The engine: `berth container ...` on a scratch data root
// ---------------------------------------------------------------------------

/// A scratch data root and runtime root for the engine. Dropping it removes every container
/// (`container rm -f -v`), then whatever a failed test left: monitors and runtime containers
/// that name the scratch dir, its mounts, the dir.
pub struct EngineScratch {
    pub scratch: Scratch,
}

impl std::ops::Deref for EngineScratch {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.scratch
    }
}

impl EngineScratch {
    pub fn new(name: &str) -> EngineScratch {
        EngineScratch {
            scratch: Scratch::new(name),
        }
    }

    /// `berth container ARGS` (bounded by [`COMMAND_TIMEOUT`]).
    pub fn container(&self, args: &[&str]) -> Outcome {
        let mut full = vec!["container"];
        full.extend_from_slice(args);
        run_bounded(&self.scratch.command(&full))
    }

    /// `berth container ARGS`, panicking unless it succeeds; its stdout.
    pub fn container_ok(&self, args: &[&str]) -> String {
        self.container(args)
            .ok(&format!("berth container {args:?}"))
    }

    /// Every container's full id.
    pub fn all_ids(&self) -> Vec<String> {
        let out = self.container(&["ls", "-aq", "--no-trunc"]);
        out.stdout.split_whitespace().map(str::to_string).collect()
    }
}

/// The pids of the processes whose command line contains `needle`, this process excepted.
pub fn processes_naming(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

impl Drop for EngineScratch {
    fn drop(&mut self) {
        let ids = self.all_ids();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids.iter().map(String::as_str));
            let _ = self.container(&args);
        }
        // A monitor (a fork of the berth command, whose command line it keeps) outliving rm.
        for pid in processes_naming(&self.scratch.dir.to_string_lossy()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Runtime containers whose records are gone.
        for id in names_in(&self.scratch.dir.join("run")) {
            let _ = self.scratch.berth(&["delete", "--force", &id]);
        }
    }
}

// ---------------------------------------------------------------------------
// Differential runs: the same arguments under Docker and under berth
// ---------------------------------------------------------------------------

/// What `docker ARGS` and `berth container ARGS` gave.
#[derive(Debug)]
pub struct Both {
    pub docker: Outcome,
    pub berth: Outcome,
}

impl Both {
    /// Both exited with `code`.
    pub fn assert_code(&self, code: i32, what: &str) {
        assert!(
            self.docker.code == code && self.berth.code == code,
            "{what}: want exit {code} from both, got docker {}, berth {}\n{self:#?}",
            self.docker.code,
            self.berth.code
        );
    }

    /// Both exited alike and printed the same on stdout.
    pub fn assert_same(&self, what: &str) {
        assert_eq!(
            (self.berth.code, &self.berth.stdout),
            (self.docker.code, &self.docker.stdout),
            "{what}: berth (left) differs from docker (right)\n{self:#?}"
        );
    }
}

/// A test's pair of engines: the shared private dockerd and a berth data root, each with the
/// busybox image loaded (and the Debian one with [`Differ::with_debian`]). The names a test
/// takes from [`Differ::name`] are removed from Docker at drop (berth's data root goes whole).
pub struct Differ {
    pub docker: Arc<Dockerd>,
    pub berth: EngineScratch,
    prefix: String,
    names: Mutex<Vec<String>>,
}

impl Differ {
    /// `None` (after a printed reason) where Docker is not installed; a failure under CI.
    pub fn new(test: &str) -> Option<Differ> {
        let docker = Dockerd::shared()?;
        let berth = EngineScratch::new(test);
        load_busybox(&berth);
        docker.load_busybox(&berth);
        Some(Differ {
            docker,
            berth,
            prefix: test.to_string(),
            names: Mutex::new(Vec::new()),
        })
    }

    /// Also the Debian image in both; `None` where it cannot be made here.
    pub fn with_debian(self) -> Option<Differ> {
        if !load_debian(&self.berth) || !self.docker.load_debian(&self.berth) {
            return None;
        }
        Some(self)
    }

    /// A container name of this test's own (tests share the daemon).
    pub fn name(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.prefix);
        self.names.lock().unwrap().push(name.clone());
        name
    }

    /// `docker ARGS` and `berth container ARGS`.
    pub fn both(&self, args: &[&str]) -> Both {
        Both {
            docker: self.docker.docker(args),
            berth: self.berth.container(args),
        }
    }

    /// `docker ARGS` and `berth container ARGS` at the same time (for commands that wait on
    /// the container, such as `logs -f` and `wait`, so that each waits on a live one).
    pub fn both_at_once(&self, args: &[&str]) -> Both {
        std::thread::scope(|scope| {
            let docker = scope.spawn(|| self.docker.docker(args));
            let berth = self.berth.container(args);
            Both {
                docker: docker.join().expect("the docker command's thread"),
                berth,
            }
        })
    }

    /// `inspect -f '{{json FIELD}}' NAME` under both, parsed; FIELD is a field (`.State.Pid`)
    /// or an expression (`len .Mounts`).
    pub fn inspect_json(&self, name: &str, field: &str) -> (serde_json::Value, serde_json::Value) {
        // A plain field as `json .A.B`, an expression (`len .Mounts`) in parentheses.
        let format = if field.starts_with('.') && !field.contains(' ') {
            format!("{{{{json {field}}}}}")
        } else {
            format!("{{{{json ({field})}}}}")
        };
        let both = self.both(&["inspect", "-f", &format, name]);
        both.assert_code(0, &format!("inspect {field} of {name}"));
        let parse = |o: &Outcome| {
            serde_json::from_str(o.stdout.trim())
                .unwrap_or_else(|e| panic!("inspect {field}: {e}: {:?}", o.stdout))
        };
        (parse(&both.docker), parse(&both.berth))
    }

    /// Waits until `inspect -f '{{.State.Status}}'` is `status` under both (10 s at most).
    pub fn wait_status(&self, name: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let both = self.both(&["inspect", "-f", "{{.State.Status}}", name]);
            if both.docker.stdout.trim() == status && both.berth.stdout.trim() == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not become {status}: {both:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Differ {
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(|e| e.into_inner()));
        if !names.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(names.iter().map(String::as_str));
            let _ = self.docker.docker(&args);
        }
    }
}
