//! berth under Kubernetes' container runtime interface: containerd's CRI plugin with a runtime
//! handler `berth` (the runc shim v2 with `BinaryName` = this berth), driven over its gRPC
//! socket by a CRI v1 client (k8s-cri, tonic), as kubelet drives it. No kubelet or crictl is
//! needed. Every call's effect is checked on berth's side: its `--root` state and the
//! container's cgroup files.
//!
//! containerd runs as this test's own daemon (config, root, state and socket in a temp dir),
//! under the client suites' lock (containerd 1.6 puts its shims' sockets in /run/containerd
//! whatever its config says). The images are made here: busybox from bundles/busybox/rootfs,
//! and a pause image holding a static pause binary built from tests/cri_support/pause.c. The
//! pod uses the host's network (no CNI plugin is configured), and so, as kubelet sends it, no
//! hostname of its own: the host's UTS namespace cannot take one (runc refuses that spec too). The cgroup driver is cgroupfs,
//! under a cgroup parent of the test's own. Needs root, containerd, ctr,
//! containerd-shim-runc-v2 and a C compiler; skipped with a note without them, except under CI.

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const HANDLER: &str = "berth";
const BUSYBOX: &str = "docker.io/library/busybox:berth-cri";
const PAUSE: &str = "docker.io/library/pause:berth-cri";
const CLIENTS_LOCK: &str = "/run/lock/berth-clients.lock";
/// Host paths containerd 1.6 makes whatever its config says.
const HOST_PATHS: &[&str] = &["/run/containerd"];

fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The berth the shim runs: this build's, or `BERTH_CRI_BERTH` (the systemd VM's copy).
fn berth() -> PathBuf {
    std::env::var_os("BERTH_CRI_BERTH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth")))
}

/// `BERTH_CRI_SYSTEMD=1` (the systemd VM, scripts/vm-tests-systemd/cri.sh): containerd's
/// `SystemdCgroup = true`, so that berth runs with `--systemd-cgroup`, the pod's cgroup parent
/// a slice as kubelet's systemd driver makes it.
fn systemd_mode() -> bool {
    std::env::var("BERTH_CRI_SYSTEMD").as_deref() == Ok("1")
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A docker-archive (`docker save` format) of one layer, tagged `reference`.
fn docker_archive(out: &Path, reference: &str, layer: Vec<u8>, config: serde_json::Value) {
    let layer_sha = sha256_hex(&layer);
    let mut config = config;
    config["architecture"] = "amd64".into();
    config["os"] = "linux".into();
    config["rootfs"] =
        serde_json::json!({"type": "layers", "diff_ids": [format!("sha256:{layer_sha}")]});
    let config = serde_json::to_vec(&config).unwrap();
    let config_sha = sha256_hex(&config);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{config_sha}.json"),
        "RepoTags": [reference],
        "Layers": [format!("{layer_sha}/layer.tar")],
    }]))
    .unwrap();
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    for (name, data) in [
        (format!("{layer_sha}/layer.tar"), &layer),
        (format!("{config_sha}.json"), &config),
        ("manifest.json".to_string(), &manifest),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    b.finish().unwrap();
}

/// The busybox rootfs as a layer.
fn busybox_layer() -> Vec<u8> {
    let rootfs = std::env::var_os("BERTH_CRI_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/busybox/rootfs"));
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", &rootfs).unwrap();
    b.into_inner().unwrap()
}

/// A layer holding /pause, built static from tests/cri_support/pause.c.
fn pause_layer(work: &Path) -> Vec<u8> {
    // Built already where there is no compiler (the systemd VM): BERTH_CRI_PAUSE.
    let bin = match std::env::var_os("BERTH_CRI_PAUSE") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => {
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cri_support/pause.c");
            let bin = work.join("pause");
            let st = Command::new("cc")
                .args(["-static", "-Os", "-o"])
                .arg(&bin)
                .arg(&src)
                .status()
                .expect("cc");
            assert!(st.success(), "cc -static {} failed", src.display());
            bin
        }
    };
    let data = std::fs::read(&bin).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o755);
    h.set_cksum();
    b.append_data(&mut h, "pause", data.as_slice()).unwrap();
    b.into_inner().unwrap()
}

/// containerd with the CRI plugin, of the test's own; dropping it removes every container,
/// process, mount, cgroup and path it made.
struct Containerd {
    dir: PathBuf,
    socket: PathBuf,
    runtime_root: PathBuf,
    cgroup_parent: String,
    child: Option<Child>,
    made_host_paths: Vec<PathBuf>,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Containerd {
    fn start() -> Option<Containerd> {
        let cc = std::env::var_os("BERTH_CRI_PAUSE")
            .is_none()
            .then_some("cc");
        let missing: Vec<&str> = ["containerd", "ctr", "containerd-shim-runc-v2"]
            .into_iter()
            .chain(cc)
            .filter(|t| which(t).is_none())
            .collect();

        if !missing.is_empty() || !nix::unistd::geteuid().is_root() {
            let why = format!("CRI test needs root and {missing:?}");
            assert!(!in_ci(), "{why}");
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let lock = lock_exclusive(CLIENTS_LOCK, Duration::from_secs(900));
        let made_host_paths = HOST_PATHS
            .iter()
            .map(PathBuf::from)
            .filter(|p| !p.exists())
            .collect();
        let dir = std::env::temp_dir().join(format!("berth-cri-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("containerd.sock");
        let runtime_root = dir.join("berth-root");
        let cgroup_parent = if systemd_mode() {
            format!("berthcri{}.slice", std::process::id())
        } else {
            format!("/berth-cri-test-{}", std::process::id())
        };
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{d}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  # Not below containerd's own score: the machines this runs on may lack CAP_SYS_RESOURCE,
  # without which the pause container's -998 cannot be set (by runc either).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "{HANDLER}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{HANDLER}.options]
        BinaryName = "{berth}"
        Root = "{root}"
        SystemdCgroup = {systemd}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
"#,
            d = dir.display(),
            sock = socket.display(),
            berth = berth().display(),
            root = runtime_root.display(),
            systemd = systemd_mode(),
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();

        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd");
        let d = Containerd {
            dir,
            socket,
            runtime_root,
            cgroup_parent,
            child: Some(child),
            made_host_paths,
            _lock: lock,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(d)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// berth's view of a container: `berth state` under the shim's root (Root/NAMESPACE).
    fn berth_state(&self, id: &str) -> Option<serde_json::Value> {
        let out = Command::new(berth())
            .arg("--root")
            .arg(self.runtime_root.join("k8s.io"))
            .args(["state", id])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).unwrap())
    }

    /// With the systemd driver: whether systemd lists the scope of `id` (in any state).
    fn scope_listed(&self, id: &str) -> bool {
        let out = Command::new("systemctl")
            .args(["list-units", "--all", "--no-legend"])
            .arg(format!("cri-containerd-{id}.scope"))
            .output()
            .expect("systemctl");
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    }

    fn berth_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.runtime_root.join("k8s.io"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A cgroup file of the container `id` (cgroupfs: the pod's parent, then the id), in the
    /// v1 hierarchy `controller` or the cgroup2 tree.
    fn cgroup_file(&self, id: &str, controller: &str, v1: &str, v2: &str) -> Option<String> {
        let rel = if systemd_mode() {
            // containerd's cgroupsPath: slice:cri-containerd:ID, the scope in the slice.
            format!("{}/cri-containerd-{id}.scope", self.cgroup_parent)
        } else {
            format!("{}/{id}", self.cgroup_parent.trim_start_matches('/'))
        };
        [
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(&rel)
                .join(v1),
            Path::new("/sys/fs/cgroup").join(&rel).join(v2),
            Path::new("/sys/fs/cgroup/unified").join(&rel).join(v2),
        ]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let name = self.cgroup_parent.trim_start_matches('/');
        let mut dirs = vec![Path::new("/sys/fs/cgroup").join(name)];
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            dirs.extend(rd.flatten().map(|e| e.path().join(name)));
        }
        dirs.into_iter().filter(|d| d.is_dir()).collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // berth's containers first, so that the shims exit; then containerd and any shim left.
        for id in self.berth_ids() {
            let _ = Command::new(berth())
                .arg("--root")
                .arg(self.runtime_root.join("k8s.io"))
                .args(["delete", "--force", &id])
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let sock = self.socket.to_string_lossy().into_owned();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.starts_with("/usr/bin/containerd-shim-runc-v2") && cmd.contains(&sock) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        // Mounts containerd made under its root and state (snapshots, rootfs, shm).
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        for d in self.cgroup_dirs() {
            // Deepest first: the pod's containers' directories, then the parent.
            let mut all: Vec<PathBuf> = std::fs::read_dir(&d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            all.push(d.clone());
            for dir in all {
                let _ = std::fs::remove_dir(dir);
            }
        }
        if systemd_mode() {
            // The pod's slice, which systemd made for its scopes.
            let _ = Command::new("systemctl")
                .args(["stop", &self.cgroup_parent])
                .status();
        }
        for p in &self.made_host_paths {
            let _ = std::fs::remove_dir_all(p);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn lock_exclusive(path: &str, patience: Duration) -> nix::fcntl::Flock<std::fs::File> {
    use nix::fcntl::{Flock, FlockArg};
    let start = Instant::now();
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
                assert!(start.elapsed() < patience, "{path} held for {patience:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((_, e)) => panic!("flock {path}: {e}"),
        }
    }
}

async fn connect(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    tonic::transport::Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connect to containerd's CRI socket")
}

fn pod_config(d: &Containerd) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "pod1".into(),
            uid: "uid-pod1".into(),
            namespace: "berth-test".into(),
            attempt: 0,
        }),
        log_directory: d.dir.join("logs").to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: d.cgroup_parent.clone(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Pod as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn cri_pod_lifecycle_through_berth() {
    let Some(d) = Containerd::start() else {
        return;
    };
    // The images, made here and imported into the CRI plugin's namespace.
    let busybox = d.dir.join("busybox.tar");
    let pause = d.dir.join("pause.tar");
    docker_archive(
        &busybox,
        BUSYBOX,
        busybox_layer(),
        serde_json::json!({"config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]}}),
    );
    docker_archive(
        &pause,
        PAUSE,
        pause_layer(&d.dir),
        serde_json::json!({"config": {"Entrypoint": ["/pause"]}}),
    );
    d.ctr(&["images", "import", busybox.to_str().unwrap()]);
    d.ctr(&["images", "import", pause.to_str().unwrap()]);
    std::fs::create_dir_all(d.dir.join("logs")).unwrap();

    let channel = connect(&d.socket).await;
    let mut rt = RuntimeServiceClient::new(channel.clone());
    let mut images = ImageServiceClient::new(channel);
    let version = rt
        .version(VersionRequest::default())
        .await
        .expect("CRI Version")
        .into_inner();
    assert_eq!(version.runtime_api_version, "v1");
    let listed = images
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed
            .images
            .iter()
            .any(|i| i.repo_tags.contains(&BUSYBOX.to_string())),
        "the CRI plugin does not list {BUSYBOX}: {listed:?}"
    );

    // RunPodSandbox: the pause container is a berth container, running, in the pod's cgroup.
    let config = pod_config(&d);
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: HANDLER.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", d.log()))
        .into_inner()
        .pod_sandbox_id;
    let st = d.berth_state(&pod).expect("berth knows the sandbox");
    assert_eq!(st["status"], "running", "{st}");
    let pause_pid = st["pid"].as_i64().expect("a pid").to_string();
    assert!(
        d.cgroup_file(&pod, "pids", "cgroup.procs", "cgroup.procs")
            .is_some_and(|p| p.lines().any(|l| l == pause_pid)),
        "the pause process is not in {}/{pod}",
        d.cgroup_parent
    );

    if systemd_mode() {
        assert!(d.scope_listed(&pod), "no scope for the sandbox {pod}");
    }

    // CreateContainer + StartContainer: a busybox container with limits, in the pod.
    let log_path = "c1.log";
    let created = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "c1".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                command: vec!["sh".into()],
                args: vec![
                    "-c".into(),
                    "while true; do echo tick; sleep 0.2; done".into(),
                ],
                log_path: log_path.into(),
                linux: Some(LinuxContainerConfig {
                    resources: Some(LinuxContainerResources {
                        memory_limit_in_bytes: 64 << 20,
                        cpu_shares: 512,
                        cpu_quota: 50_000,
                        cpu_period: 100_000,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(config.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", d.log()))
        .into_inner()
        .container_id;
    // containerd makes its record only: berth's container is made at StartContainer.
    assert!(d.berth_state(&created).is_none());
    rt.start_container(StartContainerRequest {
        container_id: created.clone(),
    })
    .await
    .expect("StartContainer");
    let st = d.berth_state(&created).unwrap();
    assert_eq!(st["status"], "running", "{st}");
    if systemd_mode() {
        assert!(
            d.scope_listed(&created),
            "no scope for the container {created}"
        );
    }
    assert_eq!(
        d.cgroup_file(&created, "memory", "memory.limit_in_bytes", "memory.max")
            .as_deref(),
        Some("67108864")
    );
    assert_eq!(
        d.cgroup_file(&created, "cpu", "cpu.cfs_quota_us", "cpu.max")
            .as_deref()
            .map(|s| s.split(' ').next().unwrap_or_default().to_string())
            .as_deref(),
        Some("50000")
    );

    // ExecSync: runs in the container (in the pod's pid namespace, where the pause process is
    // pid 1) and returns its output and status.
    let exec = rt
        .exec_sync(ExecSyncRequest {
            container_id: created.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat /proc/1/cmdline; exit 3".into(),
            ],
            timeout: 20,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "/pause\0");
    assert_eq!(exec.exit_code, 3);

    // ContainerStatus and ContainerStats: what berth reports.
    let status = rt
        .container_status(ContainerStatusRequest {
            container_id: created.clone(),
            verbose: false,
        })
        .await
        .expect("ContainerStatus")
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    let stats = rt
        .container_stats(ContainerStatsRequest {
            container_id: created.clone(),
        })
        .await
        .expect("ContainerStats")
        .into_inner()
        .stats
        .unwrap();
    let mem = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value);
    assert!(mem.is_some_and(|m| m > 0), "no memory in {:?}", stats.cpu);

    // UpdateContainerResources: through `berth update`, into the cgroup.
    rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: created.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 128 << 20,
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("UpdateContainerResources");
    assert_eq!(
        d.cgroup_file(&created, "memory", "memory.limit_in_bytes", "memory.max")
            .as_deref(),
        Some("134217728")
    );

    // ReopenContainerLog: the log moved away, a new one is written.
    let log = d.dir.join("logs").join(log_path);
    wait_until("the container's log", || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("tick"))
    });
    std::fs::rename(&log, d.dir.join("logs/c1.log.1")).unwrap();
    rt.reopen_container_log(ReopenContainerLogRequest {
        container_id: created.clone(),
    })
    .await
    .expect("ReopenContainerLog");
    wait_until("the reopened log", || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("tick"))
    });

    // StopContainer, RemoveContainer: berth's container is stopped, then gone with its cgroup.
    rt.stop_container(StopContainerRequest {
        container_id: created.clone(),
        timeout: 2,
    })
    .await
    .expect("StopContainer");
    let st = d.berth_state(&created);
    assert!(
        st.as_ref().is_none_or(|s| s["status"] == "stopped"),
        "after StopContainer: {st:?}"
    );
    rt.remove_container(RemoveContainerRequest {
        container_id: created.clone(),
    })
    .await
    .expect("RemoveContainer");
    assert!(d.berth_state(&created).is_none());
    assert!(d
        .cgroup_file(&created, "memory", "cgroup.procs", "cgroup.procs")
        .is_none());
    if systemd_mode() {
        assert!(!d.scope_listed(&created), "the container's scope is left");
    }

    // StopPodSandbox, RemovePodSandbox: nothing of berth's is left.
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("RemovePodSandbox");
    assert_eq!(d.berth_ids(), Vec::<String>::new());
    assert!(d
        .cgroup_file(&pod, "pids", "cgroup.procs", "cgroup.procs")
        .is_none());
    if systemd_mode() {
        assert!(!d.scope_listed(&pod), "the sandbox's scope is left");
    }
}
