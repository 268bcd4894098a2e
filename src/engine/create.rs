//! `container create` (and the first half of `run`): a container made from an image. The
//! record comes first (so a berth killed at any instant leaves something `rm -f` finds), then
//! the name, the bundle (an overlay rootfs over the image's snapshots and a config.json), and
//! the files berth writes for it (hosts, hostname, resolv.conf).

use super::record::{
    Config, Container, Engine, HostConfig, LogConfig, Record, RestartPolicy, State, Status,
};
use super::remove;
use crate::image::bundle::{self, BundleOptions};
use crate::image::reference::Reference;
use crate::image::store::Store;
use crate::image::time::now_rfc3339_nanos;
use crate::runtime::fsutil::write_atomically;
use crate::runtime::inroot::{self, Create};
use crate::runtime::state::ProcessId;
use anyhow::{bail, Context, Result};
use clap::Args;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Mount, Spec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Docker's default `--shm-size`.
const DEFAULT_SHM: u64 = 64 << 20;

/// The flags of `container create` and `run`, with Docker's names.
#[derive(Args, Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateFlags {
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Automatically remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Container host name.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    #[arg(long)]
    pub domainname: Option<String>,
    /// Set environment variables.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Add additional groups to join.
    #[arg(long)]
    pub group_add: Vec<String>,
    /// Overwrite the default ENTRYPOINT of the image ("" clears it).
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Set meta data on a container.
    #[arg(short, long)]
    pub label: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// Restart policy to apply when a container exits.
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Signal to stop the container.
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container.
    #[arg(long, allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    /// Command to run to check health.
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h).
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h).
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Start period for the container to initialize before starting health-retries countdown.
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Consecutive failures needed to report unhealthy.
    #[arg(long)]
    pub health_retries: Option<i64>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Write the container ID to the file.
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// Pull image before running ("always", "missing", "never").
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Set platform if server is multi-platform capable.
    #[arg(long)]
    pub platform: Option<String>,
    /// Mount the container's root filesystem as read only.
    #[arg(long)]
    pub read_only: bool,
    /// Size of /dev/shm.
    #[arg(long)]
    pub shm_size: Option<String>,
    /// PID namespace to use (host, container:NAME).
    #[arg(long)]
    pub pid: Option<String>,
    /// IPC mode to use (private, shareable, host, container:NAME).
    #[arg(long)]
    pub ipc: Option<String>,
    /// UTS namespace to use (host).
    #[arg(long)]
    pub uts: Option<String>,
    /// Connect a container to a network (none, host, container:NAME, bridge or a network's
    /// name).
    #[arg(long, visible_alias = "net")]
    pub network: Option<String>,
    /// IPv4 address (e.g., 172.30.100.104), on a user-defined network.
    #[arg(long)]
    #[serde(default)]
    pub ip: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33).
    #[arg(long = "mac-address")]
    #[serde(default)]
    pub mac_address: Option<String>,
    /// Publish a container's port(s) to the host ([IP:][HOSTPORT:]CPORT[/PROTO]).
    #[arg(short = 'p', long)]
    #[serde(default)]
    pub publish: Vec<String>,
    /// Balanced ports (`HOSTPORT:CPORT[/PROTO]`, on every address): the host port is shared
    /// with the other containers publishing it so, and connections spread over them all (a
    /// Service's NodePort over its pods). Set by `kube play`, not a flag of Docker's.
    #[arg(skip)]
    #[serde(default)]
    pub publish_balanced: Vec<String>,
    /// Publish all exposed ports to random ports.
    #[arg(short = 'P', long)]
    #[serde(default)]
    pub publish_all: bool,
    /// Expose a port or a range of ports.
    #[arg(long)]
    #[serde(default)]
    pub expose: Vec<String>,
    /// Set custom DNS servers.
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains.
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Set DNS options.
    #[arg(long)]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip).
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Add link to another container (NAME[:ALIAS]).
    #[arg(long)]
    #[serde(default)]
    pub link: Vec<String>,
    /// Add network-scoped alias for the container.
    #[arg(long = "network-alias")]
    #[serde(default)]
    pub network_alias: Vec<String>,
    /// Logging driver for the container (json-file, none).
    #[arg(long, default_value = "json-file")]
    pub log_driver: String,
    /// Log driver options.
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// -v, --mount, --tmpfs, --volumes-from (engine::mounts).
    #[command(flatten)]
    #[serde(flatten)]
    pub mounts: super::mounts::MountArgs,
}

impl CreateFlags {
    /// `-p`, `-P` and `--expose`.
    pub fn port_flags(&self) -> crate::network::publish::PortFlags<'_> {
        crate::network::publish::PortFlags {
            publish: &self.publish,
            publish_all: self.publish_all,
            balanced: &self.publish_balanced,
            expose: &self.expose,
        }
    }
}

/// What `create` was asked to make, beyond the flags: the image and the command.
pub struct CreateRequest<'a> {
    pub flags: &'a CreateFlags,
    pub image: &'a str,
    pub command: &'a [String],
    /// `run` attaches stdin and closes it at its end (Docker's StdinOnce).
    pub attach_stdin_once: bool,
    /// Other option groups, recorded for `inspect` and applied to the spec by their owners.
    pub extra: &'a [&'a dyn SpecPart],
}

/// A group of options that shapes the runtime spec (security, resources, mounts...).
pub trait SpecPart {
    /// The key its options are recorded under.
    fn key(&self) -> &'static str;
    fn record(&self) -> serde_json::Value;
    fn apply(&self, spec: &mut Spec, ctx: &SpecContext) -> Result<()>;
}

/// What a [`SpecPart`] may need of the container being made.
pub struct SpecContext<'a> {
    pub engine: &'a Engine,
    pub store: &'a Store,
    pub container: &'a Container,
    pub rootfs: &'a Path,
}

/// Makes the container; on any failure, everything made for it is removed again.
pub fn create(engine: &Engine, store: &Store, req: &CreateRequest) -> Result<Container> {
    let f = req.flags;
    let checked = check_flags(engine, f).map_err(|e| anyhow::Error::new(FlagError(e)))?;
    let reference = image_reference(store, req.image)?;
    ensure_image(store, &reference, &f.pull, f.platform.as_deref())?;
    if let Some(cid) = &f.cidfile {
        if cid.exists() {
            bail!(
                "Container ID file found, make sure the other container isn't running or \
                 delete {}",
                cid.display()
            );
        }
    }

    let id = engine.new_id()?;
    let dir = engine.container_dir(&id);
    fs::create_dir_all(engine.containers_dir()).context("cannot make the containers directory")?;
    fs::create_dir(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let name = match &f.name {
        Some(n) => n.strip_prefix('/').unwrap_or(n).to_string(),
        None => generate_name(engine),
    };
    let mut c = Container {
        dir,
        record: Record {
            id: id.clone(),
            name: name.clone(),
            created: now_rfc3339_nanos(),
            creator: Some(ProcessId::me()?),
            ..Default::default()
        },
        state: State::default(),
    };
    // From here on, a failure removes what was made; a SIGKILL leaves a record `rm -f` clears.
    // (No state file yet: a missing one reads as the default state, and the first one written
    // at the end is a new file, not one replaced, which ext4 would flush.)
    let result = (|| {
        c.save_record()?;
        engine.claim_name(&name, &id)?;
        build(engine, store, req, &reference, &checked, &mut c)
    })();
    if let Err(e) = result {
        let _ = remove::remove(engine, &mut c, remove::Caller::Creator);
        return Err(e);
    }
    if let Some(cid) = &f.cidfile {
        fs::write(cid, &id).with_context(|| format!("--cidfile {}", cid.display()))?;
    }
    Ok(c)
}

/// An error in the flags themselves (Docker's client refuses those, with 125).
#[derive(Debug)]
pub struct FlagError(pub anyhow::Error);

impl std::fmt::Display for FlagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for FlagError {}

/// The flags checked before anything is made.
struct Checked {
    restart: RestartPolicy,
    log: LogConfig,
    network: String,
    shm: u64,
    healthcheck: Option<super::record::Healthcheck>,
}

fn check_flags(engine: &Engine, f: &CreateFlags) -> Result<Checked> {
    let restart = parse_restart(&f.restart)?;
    if f.rm && !matches!(restart.name.as_str(), "" | "no") {
        bail!("Conflicting options: --restart and --rm");
    }
    if !matches!(f.pull.as_str(), "missing" | "always" | "never") {
        bail!(
            "invalid pull option: '{}': must be one of \"always\", \"missing\" or \"never\"",
            f.pull
        );
    }
    let kind = f.log_driver.clone();
    if !matches!(kind.as_str(), "json-file" | "none") {
        bail!("--log-driver {kind}: berth supports the json-file and none log drivers");
    }
    let mut config = BTreeMap::new();
    for o in &f.log_opt {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("invalid log opt: {o:?}: expected KEY=VALUE"))?;
        config.insert(k.to_string(), v.to_string());
    }
    if kind == "json-file" {
        super::logs::Rotation::from_opts(&config)?;
    } else if !config.is_empty() {
        bail!("the none log driver takes no --log-opt");
    }
    // Without --network, the default network (Docker's `bridge`).
    let mut network = f.network.clone().unwrap_or_else(|| "bridge".into());
    match network.as_str() {
        "none" | "host" => {}
        n if n.starts_with("container:") => {}
        // A bridge network: the default one or a user's (`berth network create`), joined by
        // the monitor before the container's program runs.
        n => network = crate::network::cli::resolve(engine, n)?,
    }
    crate::network::publish::check(&f.port_flags(), &network)?;
    let bridge = !(network == "none" || network == "host" || network.starts_with("container:"));
    if let Some(ip) = &f.ip {
        ip.parse::<std::net::Ipv4Addr>()
            .map_err(|_| anyhow::anyhow!("invalid IPv4 address: {ip}"))?;
        if !bridge || network == crate::network::store::DEFAULT_NETWORK {
            bail!("user specified IP address is supported on user defined networks only");
        }
    }
    if let Some(mac) = &f.mac_address {
        crate::network::netlink::parse_mac(mac)?;
        if !bridge {
            bail!("conflicting options: mac-address and the network mode");
        }
    }
    for (flag, v) in [("--pid", &f.pid), ("--uts", &f.uts)] {
        if let Some(v) = v {
            if !(v == "host" || v == "private" || v.starts_with("container:")) {
                bail!("invalid {flag} mode: {v}");
            }
        }
    }
    if let Some(v) = &f.ipc {
        if !matches!(v.as_str(), "host" | "private" | "shareable" | "none")
            && !v.starts_with("container:")
        {
            bail!("invalid IPC mode: {v}");
        }
    }
    if let Some(s) = &f.stop_signal {
        parse_signal(s).with_context(|| format!("invalid signal: {s}"))?;
    }
    let shm = match &f.shm_size {
        Some(s) => {
            let n = parse_ram(s).with_context(|| {
                format!("invalid argument {s:?} for \"--shm-size\" flag: invalid size")
            })?;
            if n == 0 {
                DEFAULT_SHM
            } else {
                n
            }
        }
        None => DEFAULT_SHM,
    };
    let uts_shared = f
        .uts
        .as_deref()
        .is_some_and(|u| u == "host" || u.starts_with("container:"));
    if uts_shared && f.hostname.is_some() {
        bail!("Conflicting options: hostname and the UTS mode");
    }
    if network.starts_with("container:") && (f.hostname.is_some() || !f.dns.is_empty()) {
        bail!("Conflicting options: hostname/dns and the network mode");
    }
    crate::network::names::check_flags(f, &network)?;
    let healthcheck = health_from_flags(f)?;
    Ok(Checked {
        restart,
        log: LogConfig { kind, config },
        network,
        shm,
        healthcheck,
    })
}

/// `--restart`: no, always, unless-stopped, on-failure[:N].
pub fn parse_restart(s: &str) -> Result<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (n, Some(c)),
        None => (s, None),
    };
    let maximum_retry_count = match (name, count) {
        ("on-failure", Some(c)) => c
            .parse()
            .map_err(|_| anyhow::anyhow!("maximum retry count must be an integer"))?,
        (_, Some(_)) => bail!("maximum retry count cannot be used with restart policy '{name}'"),
        _ => 0,
    };
    match name {
        "no" | "" | "always" | "unless-stopped" | "on-failure" => Ok(RestartPolicy {
            name: if name.is_empty() { "no" } else { name }.to_string(),
            maximum_retry_count,
        }),
        _ => bail!("invalid restart policy '{name}'"),
    }
}

/// A signal by name (`SIGTERM`, `TERM`) or number, as `--stop-signal` and `kill -s` take it.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal> {
    use std::str::FromStr;
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| anyhow::anyhow!("{n}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    nix::sys::signal::Signal::from_str(&name).map_err(|_| anyhow::anyhow!("{s}"))
}

/// Docker's RAMInBytes: a number with an optional b, k, m, g, t, p suffix (powers of 1024).
pub fn parse_ram(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult): (&str, u64) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        'p' => (&t[..t.len() - 1], 1 << 50),
        _ => (t, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

fn health_from_flags(f: &CreateFlags) -> Result<Option<super::record::Healthcheck>> {
    if f.no_healthcheck {
        if f.health_cmd.is_some() {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        return Ok(Some(super::record::Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        }));
    }
    let dur = |flag: &str, v: &Option<String>| -> Result<i64> {
        match v {
            None => Ok(0),
            Some(v) => {
                let d = super::logs::parse_duration(v).with_context(|| {
                    format!("invalid argument {v:?} for \"{flag}\" flag: invalid duration")
                })?;
                if !d.is_zero() && d < std::time::Duration::from_millis(1) {
                    bail!("{flag} cannot be less than 1ms");
                }
                Ok(d.as_nanos() as i64)
            }
        }
    };
    let interval = dur("--health-interval", &f.health_interval)?;
    let timeout = dur("--health-timeout", &f.health_timeout)?;
    let start_period = dur("--health-start-period", &f.health_start_period)?;
    if let Some(r) = f.health_retries {
        if r < 0 {
            bail!("--health-retries cannot be negative");
        }
    }
    let any = f.health_cmd.is_some()
        || interval != 0
        || timeout != 0
        || start_period != 0
        || f.health_retries.is_some();
    if !any {
        return Ok(None);
    }
    Ok(Some(super::record::Healthcheck {
        test: f
            .health_cmd
            .as_ref()
            .map(|c| vec!["CMD-SHELL".to_string(), c.clone()])
            .unwrap_or_default(),
        interval,
        timeout,
        start_period,
        retries: f.health_retries.unwrap_or(0),
    }))
}

/// The image `arg` names: a reference the store has, else an image id (or a unique prefix of
/// one, `sha256:` or not) of an image it has, else a reference to pull.
fn image_reference(store: &Store, arg: &str) -> Result<Reference> {
    let parsed = Reference::parse(arg);
    if let Ok(r) = &parsed {
        if store.resolve(r).is_ok() {
            return Ok(r.clone());
        }
    }
    let hex = arg.strip_prefix("sha256:").unwrap_or(arg);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        if let Some((r, _)) = store
            .lookup(arg)
            .ok()
            .and_then(|hits| hits.into_iter().next())
        {
            return Ok(r);
        }
    }
    parsed.map_err(|_| anyhow::anyhow!("invalid reference format: {arg:?}"))
}

/// Makes sure the store has the image, pulling it as `--pull` says.
fn ensure_image(store: &Store, r: &Reference, pull: &str, platform: Option<&str>) -> Result<()> {
    let have = store.resolve(r).is_ok();
    if have && pull != "always" {
        return Ok(());
    }
    if pull == "never" {
        bail!("No such image: {r}");
    }
    if !have {
        eprintln!("Unable to find image '{r}' locally");
    }
    let options = crate::image::pull::PullOptions {
        platform: platform.map(str::to_string),
        transport: crate::image::registry::client::TransportOptions::docker_engine(&r.registry),
        auth_file: None,
        quiet: false,
        jobs: 4,
    };
    crate::image::pull::pull(store, r, &options)?;
    Ok(())
}

fn build(
    engine: &Engine,
    store: &Store,
    req: &CreateRequest,
    reference: &Reference,
    checked: &Checked,
    c: &mut Container,
) -> Result<()> {
    let f = req.flags;
    let resolved = store.resolve(reference)?;
    let (manifest, _) = store.image_manifest(&resolved, f.platform.as_deref())?;
    let image = store.image_layers(&manifest)?;
    let ic = &image.config.config;

    // Docker's rules: --entrypoint replaces the image's and drops its Cmd; a command given
    // replaces the Cmd.
    let entrypoint: Vec<String> = match &f.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => ic.entrypoint.clone(),
    };
    let cmd: Vec<String> = if !req.command.is_empty() {
        req.command.to_vec()
    } else if f.entrypoint.is_some() {
        Vec::new()
    } else {
        ic.cmd.clone()
    };
    if entrypoint.is_empty() && cmd.is_empty() {
        bail!("No command specified");
    }
    let args: Vec<String> = entrypoint.iter().chain(&cmd).cloned().collect();

    let bundle_dir = c.bundle_dir();
    // The image's spec, completed below and written once.
    let (made, mut spec) = bundle::create_bundle_unwritten(
        store,
        reference,
        &bundle_dir,
        &BundleOptions {
            copy: false,
            platform: f.platform.clone(),
            args: Some(args.clone()),
        },
    )?;
    let rootfs = c.rootfs();

    let short = super::record::short_id(&c.record.id).to_string();
    let host_uts = f.uts.as_deref() == Some("host") || checked.network == "host";
    // `--uts container:X` (podman's, for pods): X's hostname, in X's namespace.
    let joined_uts = match f.uts.as_deref().and_then(|u| u.strip_prefix("container:")) {
        Some(other) => Some(engine.lookup(other)?.record.config.hostname),
        None => None,
    };
    let hostname = match (&f.hostname, host_uts) {
        _ if joined_uts.is_some() => joined_uts.clone().unwrap_or_default(),
        (Some(h), _) => h.clone(),
        (None, true) => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        (None, false) => short.clone(),
    };

    // Config.Env: the user's, then the image's they do not override (Docker's merge); the
    // process gets Docker's defaults under them.
    let mut env = Vec::new();
    for file in &f.env_file {
        let text = fs::read_to_string(file)
            .with_context(|| format!("open {}: no such file or directory", file.display()))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            add_env_arg(&mut env, line, file.display().to_string().as_str())?;
        }
    }
    for e in &f.env {
        add_env_arg(&mut env, e, "--env")?;
    }
    for e in &ic.env {
        let key = e.split('=').next().unwrap_or(e);
        if !env.iter().any(|u| u.split('=').next() == Some(key)) {
            env.push(e.clone());
        }
    }

    let mut labels = ic.labels.clone();
    for l in &f.label {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        if k.is_empty() {
            bail!("invalid label: {l:?}: a label needs a key");
        }
        labels.insert(k.to_string(), v.to_string());
    }

    let user = f.user.clone().unwrap_or_else(|| ic.user.clone());
    let working_dir = f.workdir.clone().unwrap_or_else(|| ic.working_dir.clone());
    if let Some(w) = &f.workdir {
        if !w.starts_with('/') {
            bail!("the working directory '{w}' is invalid, it needs to be an absolute path");
        }
    }
    let healthcheck = match &checked.healthcheck {
        Some(h) => {
            // Flags given only partly take the rest from the image's check.
            let mut h = h.clone();
            if let Some(img) = image_healthcheck(ic) {
                if h.test.is_empty() {
                    h.test = img.test;
                }
            }
            Some(h)
        }
        None => image_healthcheck(ic),
    };
    let stop_signal = f
        .stop_signal
        .clone()
        .or_else(|| (!ic.stop_signal.is_empty()).then(|| ic.stop_signal.clone()))
        .unwrap_or_default();

    c.record.image = image.config_digest.to_string();
    c.record.manifest = made.manifest.clone();
    c.record.config = Config {
        hostname: hostname.clone(),
        domainname: f.domainname.clone().unwrap_or_default(),
        user: user.clone(),
        attach_stdin: req.attach_stdin_once,
        attach_stdout: req.attach_stdin_once || !f.interactive,
        attach_stderr: req.attach_stdin_once || !f.interactive,
        tty: f.tty,
        open_stdin: f.interactive,
        stdin_once: req.attach_stdin_once && f.interactive,
        env: env.clone(),
        cmd: cmd.clone(),
        image: req.image.to_string(),
        volumes: ic.volumes.clone(),
        working_dir: working_dir.clone(),
        entrypoint: entrypoint.clone(),
        labels: labels.clone(),
        stop_signal,
        stop_timeout: f.stop_timeout,
        healthcheck,
        exposed_ports: crate::network::publish::exposed_ports(
            &f.port_flags(),
            &ic.exposed_ports,
            &checked.network,
        )?,
    };
    c.record.host_config = HostConfig {
        binds: Vec::new(),
        network_mode: checked.network.clone(),
        restart_policy: checked.restart.clone(),
        auto_remove: f.rm,
        log_config: checked.log.clone(),
        pid_mode: f.pid.clone().unwrap_or_default(),
        ipc_mode: f.ipc.clone().unwrap_or_else(|| "private".into()),
        uts_mode: f.uts.clone().unwrap_or_default(),
        readonly_rootfs: f.read_only,
        shm_size: checked.shm,
        init: f.init.then_some(true),
        dns: f.dns.clone(),
        dns_search: f.dns_search.clone(),
        extra_hosts: f.add_host.clone(),
        group_add: f.group_add.clone(),
        tmpfs: BTreeMap::new(),
        volumes_from: Vec::new(),
    };
    c.record
        .options
        .insert("create".into(), serde_json::to_value(f)?);
    c.record.options.insert(
        "ports".into(),
        crate::network::publish::record(&f.port_flags(), &checked.network)?,
    );
    for part in req.extra {
        c.record.options.insert(part.key().into(), part.record());
    }

    // The process.
    let mut process = spec.process().clone().context("bundle without a process")?;
    let mut final_args = args;
    if f.init {
        let init = find_init()?;
        final_args = [INIT_PATH.to_string(), "--".to_string()]
            .into_iter()
            .chain(final_args)
            .collect();
        add_mount(&mut spec, bind_mount(&init, INIT_PATH, true));
    }
    process.set_args(Some(final_args));
    let mut process_env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        format!("HOSTNAME={hostname}"),
    ];
    if f.tty {
        process_env.push("TERM=xterm".into());
    }
    for e in &env {
        set_env(&mut process_env, e);
    }
    process.set_env(Some(process_env));
    process.set_terminal(Some(f.tty));
    process.set_cwd(PathBuf::from(if working_dir.is_empty() {
        "/"
    } else {
        &working_dir
    }));
    if !working_dir.is_empty() {
        // Docker makes the working directory when the image lacks it; inside the root.
        let root: OwnedFd = fs::File::open(&rootfs)?.into();
        inroot::resolve(root.as_fd(), Path::new(&working_dir), Create::Dir)
            .with_context(|| format!("cannot make the working directory {working_dir}"))?;
    }
    let resolved = bundle::resolve_user(&rootfs, &user)
        .map_err(|e| anyhow::anyhow!("unable to find user {user}: {e:#}"))?;
    let mut u = process.user().clone();
    u.set_uid(resolved.uid);
    u.set_gid(resolved.gid);
    let mut groups = supplementary_groups(&resolved);
    for g in &f.group_add {
        groups.push(group_id(&rootfs, g)?);
    }
    u.set_additional_gids((!groups.is_empty()).then_some(groups));
    process.set_user(u);
    process.set_no_new_privileges(Some(false));
    spec.set_process(Some(process));
    spec.set_hostname((!host_uts && joined_uts.is_none()).then(|| hostname.clone()));
    if let Some(d) = &f.domainname {
        spec.set_domainname(Some(d.clone()));
    }
    let mut root = spec.root().clone().context("bundle without a root")?;
    root.set_readonly(Some(f.read_only));
    spec.set_root(Some(root));
    let mut notes = spec.annotations().clone().unwrap_or_default();
    notes.insert("org.opencontainers.image.ref.name".into(), req.image.into());
    notes.insert("berth.container.name".into(), c.record.name.clone());
    spec.set_annotations(Some(notes));

    // Namespaces.
    namespaces(engine, &mut spec, f, &checked.network, host_uts)?;

    // /dev/shm at the size asked, and the files berth writes for the container.
    set_shm_size(&mut spec, checked.shm);
    let etc = crate::network::names::etc_files(engine, c, f, &checked.network, &hostname)?;
    for (file, dest) in etc {
        add_mount(&mut spec, bind_mount(&file, dest, false));
    }

    // Volumes, binds and tmpfs mounts (-v, --mount, --tmpfs, --volumes-from, VOLUME).
    super::mounts::apply_to_container(engine, c, &f.mounts, &mut spec, &rootfs)?;

    let ctx = SpecContext {
        engine,
        store,
        container: c,
        rootfs: &rootfs,
    };
    for part in req.extra {
        part.apply(&mut spec, &ctx)?;
    }
    write_atomically(
        &bundle_dir.join("config.json"),
        serde_json::to_string_pretty(&spec)?.as_bytes(),
    )?;
    c.record.complete = true;
    c.record.creator = None;
    c.save_record()?;
    c.state = State {
        status: Status::Created,
        started_at: super::record::ZERO_TIME.into(),
        finished_at: super::record::ZERO_TIME.into(),
        ..Default::default()
    };
    c.save_state()?;
    Ok(())
}

fn image_healthcheck(
    ic: &crate::image::config::ContainerConfig,
) -> Option<super::record::Healthcheck> {
    ic.healthcheck
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Sets a variable in place (Docker's ReplaceOrAppendEnvValues), or appends it.
fn set_env(env: &mut Vec<String>, kv: &str) {
    let key = kv.split('=').next().unwrap_or(kv);
    match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
        Some(e) => *e = kv.to_string(),
        None => env.push(kv.to_string()),
    }
}

/// `-e KEY=VALUE` sets, `-e KEY` takes the caller's value (or nothing when unset).
fn add_env_arg(env: &mut Vec<String>, arg: &str, from: &str) -> Result<()> {
    match arg.split_once('=') {
        Some(("", _)) => bail!("invalid environment variable: {arg} ({from})"),
        Some(_) => set_env(env, arg),
        None => {
            if arg.contains(char::is_whitespace) {
                bail!("variable '{arg}' contains whitespaces ({from})");
            }
            if let Ok(v) = std::env::var(arg) {
                set_env(env, &format!("{arg}={v}"));
            }
        }
    }
    Ok(())
}

/// The supplementary groups Docker gives a user: its groups in /etc/group or, in none, its
/// primary group (as runc's user lookup does for Docker).
pub fn supplementary_groups(u: &bundle::ResolvedUser) -> Vec<u32> {
    if u.groups.is_empty() {
        vec![u.gid]
    } else {
        u.groups.clone()
    }
}

fn group_id(rootfs: &Path, g: &str) -> Result<u32> {
    if let Ok(n) = g.parse() {
        return Ok(n);
    }
    bundle::resolve_user(rootfs, &format!("0:{g}"))
        .map(|u| u.gid)
        .map_err(|_| anyhow::anyhow!("--group-add {g}: Unable to find group {g}"))
}

/// Where `--init` puts the init in the container, as Docker does.
const INIT_PATH: &str = "/sbin/docker-init";

/// The host's small init for `--init`: Docker's docker-init, or catatonit or tini, each
/// linked statically (it runs in the container's userland).
fn find_init() -> Result<PathBuf> {
    for p in [
        "/usr/bin/docker-init",
        "/usr/libexec/docker/docker-init",
        "/usr/libexec/podman/catatonit",
        "/usr/bin/catatonit",
        "/usr/bin/tini-static",
    ] {
        if Path::new(p).exists() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("--init: no init found on this host (install docker-init, catatonit or tini)")
}

fn bind_mount(source: &Path, dest: &str, readonly: bool) -> Mount {
    let mut opts = vec!["rbind".to_string(), "rprivate".to_string()];
    if readonly {
        opts.push("ro".into());
    }
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some("bind".into()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(opts));
    m
}

/// Adds a mount, replacing one at the same destination.
pub fn add_mount(spec: &mut Spec, m: Mount) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.retain(|x| x.destination() != m.destination());
    mounts.push(m);
    spec.set_mounts(Some(mounts));
}

fn set_shm_size(spec: &mut Spec, size: u64) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in mounts.iter_mut() {
        if m.destination() == Path::new("/dev/shm") {
            let mut opts: Vec<String> = m
                .options()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|o| !o.starts_with("size="))
                .collect();
            opts.push(format!("size={}k", size.div_ceil(1024)));
            m.set_options(Some(opts));
        }
    }
    spec.set_mounts(Some(mounts));
}

/// Sets the namespaces for the network, pid, ipc and uts modes.
fn namespaces(
    engine: &Engine,
    spec: &mut Spec,
    f: &CreateFlags,
    network: &str,
    host_uts: bool,
) -> Result<()> {
    let mut linux = spec.linux().clone().context("bundle without linux")?;
    let mut list = linux.namespaces().clone().unwrap_or_default();
    let mut set = |kind: LinuxNamespaceType, mode: Option<&str>, what: &str| -> Result<()> {
        list.retain(|n| n.typ() != kind);
        match mode {
            Some("host") => {}
            Some(m) if m.starts_with("container:") => {
                let other = engine.lookup(&m["container:".len()..])?;
                if other.status(engine) != Status::Running {
                    bail!(
                        "cannot join {what} of a non running container: {}",
                        other.record.name
                    );
                }
                let mut ns = LinuxNamespace::default();
                ns.set_typ(kind);
                ns.set_path(Some(PathBuf::from(format!(
                    "/proc/{}/ns/{}",
                    other.state.pid,
                    ns_file(kind)
                ))));
                list.push(ns);
            }
            _ => {
                let mut ns = LinuxNamespace::default();
                ns.set_typ(kind);
                list.push(ns);
            }
        }
        Ok(())
    };
    set(LinuxNamespaceType::Network, Some(network), "network stack")?;
    set(LinuxNamespaceType::Pid, f.pid.as_deref(), "PID namespace")?;
    set(LinuxNamespaceType::Ipc, f.ipc.as_deref(), "IPC namespace")?;
    let uts = match f.uts.as_deref() {
        Some(m) if m.starts_with("container:") => Some(m),
        _ if host_uts => Some("host"),
        _ => None,
    };
    set(LinuxNamespaceType::Uts, uts, "UTS namespace")?;
    linux.set_namespaces(Some(list));
    if network == "host" {
        // The host's network: its sysfs shows the host's interfaces, as Docker mounts it.
        linux.set_sysctl(None);
    }
    spec.set_linux(Some(linux));
    Ok(())
}

fn ns_file(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// A name like Docker's (an adjective and a noun), not yet taken.
fn generate_name(engine: &Engine) -> String {
    const ADJECTIVES: &[&str] = &[
        "amber", "brave", "calm", "clever", "dapper", "eager", "fervent", "gentle", "happy",
        "jolly", "keen", "lucid", "merry", "nimble", "noble", "plucky", "quiet", "rapid", "serene",
        "sharp", "steady", "sunny", "tidy", "upbeat", "vivid", "wise", "witty", "zesty",
    ];
    const NOUNS: &[&str] = &[
        "anchor", "beacon", "bollard", "buoy", "capstan", "cutter", "dinghy", "dock", "ferry",
        "galley", "harbor", "helm", "jetty", "keel", "ketch", "lantern", "marina", "mast",
        "mooring", "pier", "quay", "rudder", "schooner", "sloop", "tender", "tugboat", "wharf",
        "yawl",
    ];
    let mut seed = [0u8; 4];
    let _ = fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed));
    let mut n = u32::from_le_bytes(seed) as usize;
    for attempt in 0.. {
        let name = format!(
            "{}_{}",
            ADJECTIVES[n % ADJECTIVES.len()],
            NOUNS[(n / ADJECTIVES.len()) % NOUNS.len()]
        );
        let name = if attempt > 20 {
            format!("{name}{attempt}")
        } else {
            name
        };
        if !engine.names_dir().join(&name).exists() {
            return name;
        }
        n = n.wrapping_mul(2_654_435_761).wrapping_add(1);
    }
    unreachable!("the loop returns")
}

/// A container that joins another's namespaces (`--network`/`--ipc`/`--pid container:X`) has
/// that container's `/proc/PID/ns/...` in its bundle; when X was restarted since, its PID
/// changed: the paths are made again from X's current process before each start (Docker
/// resolves them at start too). Fails when X is not running.
pub fn refresh_joined_namespaces(engine: &Engine, c: &Container) -> Result<()> {
    let h = &c.record.host_config;
    let modes = [
        (LinuxNamespaceType::Network, h.network_mode.as_str()),
        (LinuxNamespaceType::Ipc, h.ipc_mode.as_str()),
        (LinuxNamespaceType::Pid, h.pid_mode.as_str()),
        (LinuxNamespaceType::Uts, h.uts_mode.as_str()),
    ];
    if !modes.iter().any(|(_, m)| m.starts_with("container:")) {
        return Ok(());
    }
    let path = c.bundle_dir().join("config.json");
    let mut spec = Spec::load(&path).context("cannot read the bundle's config.json")?;
    let mut linux = spec.linux().clone().context("bundle without linux")?;
    let mut list = linux.namespaces().clone().unwrap_or_default();
    for (kind, mode) in modes {
        let Some(other) = mode.strip_prefix("container:") else {
            continue;
        };
        let o = engine.lookup(other)?;
        if o.status(engine) != Status::Running {
            bail!(
                "cannot join the namespaces of a non running container: {}",
                o.record.name
            );
        }
        for n in list.iter_mut().filter(|n| n.typ() == kind) {
            n.set_path(Some(PathBuf::from(format!(
                "/proc/{}/ns/{}",
                o.state.pid,
                ns_file(kind)
            ))));
        }
    }
    linux.set_namespaces(Some(list));
    spec.set_linux(Some(linux));
    spec.save(&path)
        .context("cannot write the bundle's config.json")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_as_dockers() {
        assert_eq!(parse_restart("always").unwrap().name, "always");
        let p = parse_restart("on-failure:3").unwrap();
        assert_eq!((p.name.as_str(), p.maximum_retry_count), ("on-failure", 3));
        assert!(parse_restart("sometimes")
            .unwrap_err()
            .to_string()
            .contains("invalid restart policy 'sometimes'"));
        assert!(parse_restart("always:2").is_err());
        assert!(parse_restart("on-failure:x").is_err());
    }

    #[test]
    fn sizes_and_signals() {
        assert_eq!(parse_ram("64m"), Some(64 << 20));
        assert_eq!(parse_ram("1g"), Some(1 << 30));
        assert_eq!(parse_ram("512"), Some(512));
        assert_eq!(parse_ram("lots"), None);
        assert_eq!(
            parse_signal("TERM").unwrap(),
            nix::sys::signal::Signal::SIGTERM
        );
        assert_eq!(
            parse_signal("9").unwrap(),
            nix::sys::signal::Signal::SIGKILL
        );
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn env_flags_set_replace_and_take_the_callers_value() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        add_env_arg(&mut env, "A=2", "--env").unwrap();
        std::env::set_var("BERTH_TEST_ENV_PASS", "yes");
        add_env_arg(&mut env, "BERTH_TEST_ENV_PASS", "--env").unwrap();
        add_env_arg(&mut env, "BERTH_TEST_UNSET_VAR", "--env").unwrap();
        assert_eq!(env, ["PATH=/bin", "A=2", "BERTH_TEST_ENV_PASS=yes"]);
        assert!(add_env_arg(&mut env, "=x", "--env").is_err());
    }
}
