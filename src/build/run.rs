//! RUN: the step's command as a container of berth's runtime core over the step's root, its
//! standard output and error streamed to the build's output, its exit status returned.

use super::interrupt;
use crate::engine::seccomp_default::default_seccomp;
use crate::engine::security::DEFAULT_CAPABILITIES;
use crate::image::bundle::resolve_user;
use crate::network::attach::{self, Request as AttachRequest};
use crate::network::store::{Lease, Network as NetRecord, Store as NetStore};
use crate::runtime::container::{self as runtime, CreateOptions, Globals};
use crate::runtime::fsutil::write_atomically;
use crate::runtime::inroot::{self, Create};
use crate::runtime::spec_template::default_spec;
use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{dup, dup2_stderr, dup2_stdin, dup2_stdout, Pid};
use oci_spec::runtime::{LinuxCapabilities, LinuxNamespaceType, Mount, Spec};
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Files berth binds over the step's root: the layer leaves them out.
pub const BOUND_FILES: [&str; 3] = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"];

/// Where a RUN heredoc with its own interpreter (`#!`) is put, as BuildKit does.
pub const SCRIPT_DIR: &str = "/dev/pipes";

/// A RUN step's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// berth's default network (`berth`, bridge `berth0`, NAT to the outside), as Docker's
    /// build puts RUN on its default bridge: a namespace of its own with `eth0` on the bridge.
    Default,
    /// The host's network namespace.
    Host,
    /// A namespace of its own with only the loopback.
    None,
}

impl Network {
    /// `--network` of `build` and `RUN --network`.
    pub fn parse(s: &str) -> Result<Network> {
        match s {
            "default" | "" => Ok(Network::Default),
            "host" => Ok(Network::Host),
            "none" => Ok(Network::None),
            other => anyhow::bail!(
                "network mode {other:?} not supported by berth build (default, host or none)"
            ),
        }
    }

    /// Its word in the cache key.
    pub fn key(self) -> &'static str {
        match self {
            Network::Default => "default",
            Network::Host => "host",
            Network::None => "none",
        }
    }
}

/// berth's default network as RUN steps join it: its record and the data root's network
/// store (the leases).
pub struct Bridge {
    pub store: NetStore,
    pub net: NetRecord,
    /// The host's resolv.conf as Docker picks it (path, text).
    resolv: (PathBuf, String),
}

impl Bridge {
    /// The default network of `data_root`, recorded and brought up (bridge and firewall
    /// rules) when missing.
    pub fn open(data_root: &Path) -> Result<Bridge> {
        let store = NetStore::open(data_root)?;
        let net = crate::network::publish::default_network(&store)?;
        crate::network::publish::network_up(&net)?;
        Ok(Bridge {
            store,
            net,
            resolv: crate::network::names::host_resolv_conf(data_root),
        })
    }
}

/// What a RUN step runs.
pub struct RunRequest<'a> {
    /// The container's runtime id.
    pub id: String,
    /// The mounted root of the step.
    pub rootfs: &'a Path,
    /// A directory of the step's own for the bundle's config.json and the bound files.
    pub bundle: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub network: Network,
    /// The default network, for [`Network::Default`].
    pub bridge: Option<&'a Bridge>,
    /// Heredoc programs (name, content), bound read-only under [`SCRIPT_DIR`].
    pub scripts: Vec<(String, String)>,
    /// `RUN --mount`s.
    pub mounts: Vec<RunMount>,
}

/// A `RUN --mount` as the container gets it.
#[derive(Debug, Clone, PartialEq)]
pub enum RunMount {
    /// A directory of the build's data root, bound at `target`.
    Cache {
        host: PathBuf,
        target: String,
        readonly: bool,
    },
    Tmpfs {
        target: String,
    },
    /// A path (an fd's, resolved inside its tree beforehand) bound at `target`.
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
}

/// How a RUN ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, 128+N for a command killed by signal N.
    pub code: i32,
}

/// Runs the step's container; every byte it writes goes to `out`. Returns once it exited and
/// was deleted. An interrupt kills it and fails with [`interrupt::Interrupted`].
pub fn run(g: &Globals, req: &RunRequest, out: &mut dyn FnMut(&[u8])) -> Result<Exit> {
    let spec = spec_for(req)?;
    fs::create_dir_all(req.bundle)
        .with_context(|| format!("cannot create {}", req.bundle.display()))?;
    write_atomically(
        &req.bundle.join("config.json"),
        serde_json::to_string(&spec)?.as_bytes(),
    )?;
    let opts = CreateOptions {
        id: req.id.clone(),
        bundle: req.bundle.to_path_buf(),
        ..Default::default()
    };
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let devnull: OwnedFd = fs::File::open("/dev/null")?.into();
    // The container's standard streams are this process's while it is created.
    let saved = [
        dup(std::io::stdin())?,
        dup(std::io::stdout())?,
        dup(std::io::stderr())?,
    ];
    let pending = (|| {
        dup2_stdin(&devnull)?;
        dup2_stdout(&out_w)?;
        dup2_stderr(&out_w)?;
        Ok::<_, anyhow::Error>(runtime::create_supervised(g, &opts))
    })();
    let _ = dup2_stdin(&saved[0]);
    let _ = dup2_stdout(&saved[1]);
    let _ = dup2_stderr(&saved[2]);
    drop(out_w);
    let pending = pending??;
    let pid = pending.pid();
    let mut guard = ContainerGuard {
        g,
        id: &req.id,
        pid: Some(pid),
        lease: None,
    };
    match req.network {
        Network::None => crate::network::loopback::bring_up_in(pid)?,
        Network::Host => {}
        Network::Default => {
            let bridge = req
                .bridge
                .context("internal: a RUN on the default network without its record")?;
            // The lease names the step's container: the network sweep keeps it while the
            // container's runtime record (under the build's runtime root) says it may run.
            let lease = attach::attach(
                &bridge.store,
                &AttachRequest {
                    network: &bridge.net,
                    container: &req.id,
                    pid,
                    interface: "eth0",
                    ip: None,
                    mac: None,
                    default_route: true,
                },
            )
            .context("cannot put the RUN container on the default network")?;
            let ip = lease.ip;
            guard.lease = Some((&bridge.store, lease));
            // Its hosts file with its address, as Docker's: written in place (the file is
            // bound already).
            let hostname: String = req.id.chars().take(12).collect();
            fs::write(
                req.bundle.join("hosts"),
                crate::network::names::hosts_text(&[], &hostname, "", &[ip]),
            )?;
        }
    }
    pending.start()?;
    stream(&out_r, out)?;
    let status = loop {
        match waitpid(Pid::from_raw(pid), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    guard.pid = None;
    let code = match status.context("waiting for the RUN container")? {
        WaitStatus::Exited(_, c) => c,
        WaitStatus::Signaled(_, s, _) => 128 + s as i32,
        other => anyhow::bail!("the RUN container ended oddly: {other:?}"),
    };
    drop(guard);
    interrupt::check()?;
    Ok(Exit { code })
}

/// Copies the container's output to `out` until it closes (the container's init exits, and
/// its pid namespace with it), or an interrupt comes.
fn stream(r: &OwnedFd, out: &mut dyn FnMut(&[u8])) -> Result<()> {
    let mut file = fs::File::from(r.try_clone()?);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        interrupt::check()?;
        let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e).context("polling the RUN container's output"),
        }
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => out(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the RUN container's output"),
        }
    }
}

/// Kills (if still running) and reaps the container's process, detaches it from the
/// default network (its veth and lease), and deletes the container.
struct ContainerGuard<'a> {
    g: &'a Globals,
    id: &'a str,
    pid: Option<i32>,
    lease: Option<(&'a NetStore, Lease)>,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            // Our own child: no other process can take its pid before we reap it.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some((store, lease)) = self.lease.take() {
            // The host end explicitly: the kernel would remove the pair with the namespace,
            // but in the background, after the build may have ended.
            let _ = attach::detach(store, &lease);
        }
        let _ = runtime::delete(self.g, self.id, true);
    }
}

/// The runtime config of a RUN container: Docker's defaults for a container (capabilities,
/// seccomp profile, no terminal), the step's command, environment, working directory and user,
/// and the host's or its own network.
fn spec_for(req: &RunRequest) -> Result<Spec> {
    let user = resolve_user(req.rootfs, &req.user)
        .with_context(|| format!("unable to find user {}", req.user))?;
    if req.cwd != "/" && !req.cwd.is_empty() {
        // Docker makes the working directory when the image lacks it; inside the root.
        let root: OwnedFd = fs::File::open(req.rootfs)?.into();
        inroot::resolve(root.as_fd(), Path::new(&req.cwd), Create::Dir)
            .with_context(|| format!("cannot make the working directory {}", req.cwd))?;
    }
    let mut spec = default_spec();
    let caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    let mut process = spec
        .process()
        .clone()
        .context("template without a process")?;
    process.set_terminal(Some(false));
    process.set_args(Some(req.args.clone()));
    process.set_env(Some(req.env.clone()));
    process.set_cwd(PathBuf::from(if req.cwd.is_empty() {
        "/"
    } else {
        &req.cwd
    }));
    let mut u = process.user().clone();
    u.set_uid(user.uid);
    u.set_gid(user.gid);
    let groups = crate::engine::create::supplementary_groups(&user);
    u.set_additional_gids((!groups.is_empty()).then_some(groups));
    process.set_user(u);
    // As the engine gives them: root gets Docker's set; another user, as execve(2) leaves
    // it, only the bounding set.
    let pc: LinuxCapabilities = if user.uid == 0 {
        serde_json::from_value(
            serde_json::json!({"bounding": caps, "effective": caps, "permitted": caps}),
        )
    } else {
        serde_json::from_value(serde_json::json!({"bounding": caps}))
    }
    .context("capability names")?;
    process.set_capabilities(Some(pc));
    process.set_no_new_privileges(Some(false));
    // The build's own limits, as Docker's daemon passes its own on.
    process.set_rlimits(None);
    spec.set_process(Some(process));
    let mut root = spec.root().clone().context("template without a root")?;
    root.set_path(req.rootfs.to_path_buf());
    root.set_readonly(Some(false));
    spec.set_root(Some(root));
    spec.set_hostname(Some(req.id.chars().take(12).collect()));

    let mut linux = spec.linux().clone().context("template without linux")?;
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    if req.network == Network::Host {
        namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network);
    }
    let hostname: String = spec.hostname().clone().unwrap_or_default();
    linux.set_namespaces(Some(namespaces));
    linux.set_seccomp(Some(default_seccomp(&caps)));
    spec.set_linux(Some(linux));

    let (hosts, resolv) = match (req.network, req.bridge) {
        (Network::Host, _) => (
            fs::read_to_string("/etc/hosts").unwrap_or_default(),
            fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        ),
        (Network::None, _) => (
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".into(),
            fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        ),
        // The address is added once the container has it (see `run`).
        (Network::Default, Some(b)) => (
            crate::network::names::hosts_text(&[], &hostname, "", &[]),
            // Docker's default bridge: the host's servers, loopback ones left out.
            crate::network::names::resolv_conf(
                &b.resolv.0,
                &b.resolv.1,
                crate::network::names::Kind::Legacy,
                &[],
                &[],
                &[],
            )
            .0,
        ),
        (Network::Default, None) => {
            anyhow::bail!("internal: a RUN on the default network without its record")
        }
    };
    let hostname = format!("{hostname}\n");
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (name, text, dest) in [
        ("hosts", hosts, BOUND_FILES[0]),
        ("resolv.conf", resolv, BOUND_FILES[1]),
        ("hostname", hostname, BOUND_FILES[2]),
    ] {
        let file = req.bundle.join(name);
        fs::create_dir_all(req.bundle)?;
        write_atomically(&file, text.as_bytes())?;
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(dest));
        m.set_typ(Some("bind".into()));
        m.set_source(Some(file));
        m.set_options(Some(vec!["rbind".into(), "rprivate".into()]));
        mounts.push(m);
    }
    for (name, content) in &req.scripts {
        use std::os::unix::fs::PermissionsExt;
        if name.contains('/') || name.is_empty() {
            anyhow::bail!("invalid heredoc name {name:?}");
        }
        let file = req.bundle.join(format!("script-{name}"));
        write_atomically(&file, content.as_bytes())?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755))?;
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(format!("{SCRIPT_DIR}/{name}")));
        m.set_typ(Some("bind".into()));
        m.set_source(Some(file));
        m.set_options(Some(vec!["rbind".into(), "rprivate".into(), "ro".into()]));
        mounts.push(m);
    }
    for rm in &req.mounts {
        let mut m = Mount::default();
        match rm {
            RunMount::Cache {
                host: source,
                target,
                readonly,
            }
            | RunMount::Bind {
                source,
                target,
                readonly,
            } => {
                m.set_destination(PathBuf::from(target));
                m.set_typ(Some("bind".into()));
                m.set_source(Some(source.clone()));
                let mut opts = vec!["rbind".to_string(), "rprivate".to_string()];
                if *readonly {
                    opts.push("ro".into());
                }
                m.set_options(Some(opts));
            }
            RunMount::Tmpfs { target } => {
                m.set_destination(PathBuf::from(target));
                m.set_typ(Some("tmpfs".into()));
                m.set_source(Some(PathBuf::from("tmpfs")));
                m.set_options(Some(vec![
                    "nosuid".into(),
                    "nodev".into(),
                    "mode=1777".into(),
                ]));
            }
        }
        mounts.push(m);
    }
    spec.set_mounts(Some(mounts));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes() {
        assert_eq!(Network::parse("default").unwrap(), Network::Default);
        assert_eq!(Network::parse("host").unwrap(), Network::Host);
        assert_eq!(Network::parse("none").unwrap(), Network::None);
        assert!(Network::parse("bridge2").is_err());
    }
}
