//! The engine's side of bridges, firewall and published ports: the hooks `create`, the
//! monitor, `rm` and the network commands call (one line each), so that what a container
//! needs of the network is made and unmade at the right instants.
//!
//! - A bridge network is *up* when its bridge exists and its rules are in berth's table
//!   ([`network_up`]): done when `network create` makes it, when `create` first uses the
//!   default network, and checked (one netlink query and one sysctl read) before each start.
//!   The rules live as long as the bridge, which lives as long as the network's record
//!   (`network rm`/`prune` remove both, [`remove_network`]): no teardown when the last
//!   container leaves, as Docker keeps docker0 and its rules.
//! - Published ports: `-p`/`-P`/`--expose` are checked and recorded by `create`. At each
//!   start the monitor holds the host ports ([`reserve`]: bound sockets, which is how a port
//!   already taken is refused before anything is made, and how nothing is left when the
//!   monitor dies: the kernel closes them), then, once the container has its address, puts
//!   the DNAT elements in the maps ([`publish`]) and records the bindings in the state. After
//!   the exit status is delivered, the elements go ([`after_exit`]); `rm` removes what a
//!   killed monitor left ([`forget`]), and the network commands sweep what no container of
//!   this data root still runs ([`sweep`]).
//!
//! The table is the host's, shared by every data root: its lock and the sysctls it recorded
//! are in [`FIREWALL_STATE`], and each element's comment is the container's id after a tag
//! of its data root, so that a sweep judges only its own data root's containers.
//!
//! The monitor does its firewall work in a child process it forks for the purpose, so that
//! libnftables (loaded on first use) is never mapped in the monitors that live as long as
//! their containers.

use super::attach;
use super::firewall::{Firewall, NetworkRules};
use super::netlink::Netlink;
use super::ports::{self, PortBinding, Proto, PublishSpec, Reservation};
use super::store::{Lease, Network, Store, DEFAULT_NETWORK};
use crate::engine::record::{Container, Engine};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::sync::Mutex;

/// Where berth's firewall keeps its lock and the sysctls it changed: one place for the whole
/// host, as its table is.
pub const FIREWALL_STATE: &str = "/run/berth-firewall";

/// Docker's warning for `-p` with `--network host`.
pub const HOST_MODE_WARNING: &str = "Published ports are discarded when using host network mode";

/// berth's firewall, the host's table.
pub fn firewall() -> Firewall {
    Firewall::new(FIREWALL_STATE)
}

/// A host-wide lock held while a network is recorded and its bridge made: another data root
/// choosing a subnet at the same instant then sees this one's route.
fn host_lock() -> Result<nix::fcntl::Flock<std::fs::File>> {
    std::fs::create_dir_all(FIREWALL_STATE)
        .with_context(|| format!("cannot create {FIREWALL_STATE}"))?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{FIREWALL_STATE}/networks.lock"))
        .context("the networks' host lock")?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {FIREWALL_STATE}/networks.lock: {e}"))
}

/// The firewall's rules of a network.
pub fn rules(net: &Network) -> Result<NetworkRules> {
    let subnet = net.subnet()?;
    Ok(NetworkRules {
        bridge: net.bridge().to_string(),
        subnet: subnet.addr,
        prefix: subnet.prefix,
        internal: net.internal,
    })
}

/// Brings a network up: its bridge (with the gateway's address) and its rules, each only
/// when missing.
pub fn network_up(net: &Network) -> Result<()> {
    // A bridge with its rules (one sysctl read): nothing to do; the attach checks the
    // bridge's address and state.
    if Firewall::has_network(net.bridge()) {
        return Ok(());
    }
    let mut nl = Netlink::open()?;
    attach::ensure_bridge(&mut nl, net)?;
    if !Firewall::has_network(net.bridge()) {
        // In a child: the command may fork a monitor next, which must not inherit
        // libnftables' mappings.
        let r = rules(net)?;
        in_child(|| {
            firewall().add_network(&r)?;
            if let Some(w) = forward_dropped_warning(&r.bridge) {
                eprintln!("WARNING: {w}");
            }
            Ok(())
        })
        .with_context(|| format!("network {}: the firewall", net.name))?;
    }
    Ok(())
}

/// A warning when the host's iptables `FORWARD` chain drops what it does not accept (Docker
/// sets its policy to DROP when it turns forwarding on itself): a packet berth's table
/// accepts is still dropped there, so containers reach no other host and published ports
/// answer only the host itself. berth does not edit another program's chains; the user
/// allows berth's bridges in Docker's `DOCKER-USER` chain (made for the user's rules), as
/// Podman documents for its own networks.
pub fn forward_dropped_warning(bridge: &str) -> Option<String> {
    let out = super::nftables::run(
        super::nftables::Backend::Auto,
        "list chain ip filter FORWARD",
        true,
    )
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let drops = v["nftables"].as_array()?.iter().any(|it| {
        it["chain"]["name"] == "FORWARD" && it["chain"]["policy"].as_str() == Some("drop")
    });
    drops.then(|| {
        format!(
            "the host's iptables FORWARD chain drops forwarded packets (policy DROP, as \
             dockerd sets it): containers on {bridge} reach no other host and their \
             published ports answer only this host. To let them through: iptables -I \
             DOCKER-USER -i {bridge} -j ACCEPT; iptables -I DOCKER-USER -o {bridge} -j ACCEPT"
        )
    })
}

/// `network create`: the record, then the bridge and its rules.
pub fn create_network(store: &Store, opts: &super::store::CreateOptions) -> Result<Network> {
    let _host = host_lock()?;
    let net = store.create(opts)?;
    if let Err(e) = network_up(&net) {
        let _ = remove_network(store, &net.name);
        return Err(e);
    }
    Ok(net)
}

/// The default network, recorded and brought up on first use.
pub fn default_network(store: &Store) -> Result<Network> {
    if let Ok(net) = store.get(DEFAULT_NETWORK) {
        return Ok(net);
    }
    let _host = host_lock()?;
    let net = store.default_network()?;
    network_up(&net)?;
    Ok(net)
}

/// `network rm`/`prune` of one network: refused while in use; its bridge, record and rules.
pub fn remove_network(store: &Store, name: &str) -> Result<Network> {
    let net = store.remove(name)?;
    firewall()
        .remove_network(net.bridge())
        .with_context(|| format!("network {}: the firewall", net.name))?;
    Ok(net)
}

/// Before a start: every bridge network of the container up (a host rebooted, a bridge
/// deleted by hand).
pub fn networks_up(engine: &Engine, c: &Container) -> Result<()> {
    use super::endpoints::{connections, is_bridge_mode};
    let mode = c.record.host_config.network_mode.as_str();
    let conns = connections(c);
    if !is_bridge_mode(mode) && conns.is_empty() {
        return Ok(());
    }
    let store = Store::open(&engine.data_root)?;
    let names = is_bridge_mode(mode)
        .then_some(mode.to_string())
        .into_iter()
        .chain(conns.into_iter().map(|x| x.network));
    for name in names {
        let net = if name == DEFAULT_NETWORK {
            default_network(&store)?
        } else {
            store
                .get(&name)
                .map_err(|_| anyhow::anyhow!("network {name} not found"))?
        };
        network_up(&net)?;
    }
    Ok(())
}

/// Removes every network of a data root (tests, and a data root thrown away): bridges,
/// records and rules, leases included.
pub fn remove_all_networks(data_root: &std::path::Path) -> Result<()> {
    let store = Store::open(data_root)?;
    for net in store.list()? {
        for l in store.leases(&net.name)? {
            let _ = attach::detach(&store, &l);
        }
        let _ = Netlink::open().and_then(|mut nl| nl.del_link(net.bridge()));
        firewall().remove_network(net.bridge())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// create: -p, -P, --expose
// ---------------------------------------------------------------------------------------

/// The port flags of `create` and `run`, as recorded with its other flags.
pub struct PortFlags<'a> {
    pub publish: &'a [String],
    pub publish_all: bool,
    pub expose: &'a [String],
    /// Balanced ports (`HOSTPORT:CPORT[/PROTO]`), see [`Firewall::join_balanced`].
    pub balanced: &'a [String],
}

/// A balanced port's spec: one host port (on every address) to one container port.
fn parse_balanced(s: &str) -> Result<PublishSpec> {
    let spec = ports::parse_publish(s)?;
    let one = |r: &ports::PortRange| r.len() == 1;
    match spec.host_ports {
        Some(h) if one(&h) && one(&spec.container_ports) && spec.host_ip.is_none() => Ok(spec),
        _ => bail!("invalid balanced port {s:?}: HOSTPORT:CPORT[/PROTO] with one port each"),
    }
}

/// Checks the port flags against the network mode, as Docker's client and daemon do;
/// prints Docker's warning for host mode. Returns the `-p` specs that apply.
pub fn check(f: &PortFlags, network: &str) -> Result<Vec<PublishSpec>> {
    let specs = f
        .publish
        .iter()
        .map(|p| ports::parse_publish(p))
        .collect::<Result<Vec<_>>>()?;
    for e in f.expose {
        ports::parse_exposed(e)
            .with_context(|| format!("invalid range format for --expose: {e}"))?;
    }
    for b in f.balanced {
        parse_balanced(b)?;
    }
    if !f.balanced.is_empty() && !super::endpoints::is_bridge_mode(network) {
        bail!("balanced ports need a bridge network, not {network:?}");
    }
    if network.starts_with("container:") {
        if !specs.is_empty() || f.publish_all {
            bail!("conflicting options: port publishing and the container type network mode");
        }
        if !f.expose.is_empty() {
            bail!("conflicting options: port exposing and the container type network mode");
        }
    }
    if network == "host" && (!specs.is_empty() || f.publish_all) {
        eprintln!("WARNING: {HOST_MODE_WARNING}");
        return Ok(Vec::new());
    }
    Ok(specs)
}

fn port_key(port: u16, proto: Proto) -> String {
    format!("{port}/{proto}")
}

/// `Config.ExposedPorts`: the image's, `--expose`'s and the published container ports.
pub fn exposed_ports(
    f: &PortFlags,
    image: &BTreeMap<String, serde_json::Value>,
    network: &str,
) -> Result<BTreeMap<String, serde_json::Value>> {
    let mut out = BTreeMap::new();
    let mut add = |list: Vec<(u16, Proto)>| {
        for (p, proto) in list {
            out.insert(port_key(p, proto), serde_json::json!({}));
        }
    };
    for k in image.keys() {
        add(ports::parse_exposed(k).with_context(|| format!("the image's exposed port {k}"))?);
    }
    for e in f.expose {
        add(ports::parse_exposed(e)?);
    }
    if network != "host" {
        for s in check_quiet(f)?
            .into_iter()
            .chain(f.balanced.iter().filter_map(|b| parse_balanced(b).ok()))
        {
            add((s.container_ports.start..=s.container_ports.end)
                .map(|c| (c, s.proto))
                .collect());
        }
    }
    Ok(out)
}

fn check_quiet(f: &PortFlags) -> Result<Vec<PublishSpec>> {
    f.publish.iter().map(|p| ports::parse_publish(p)).collect()
}

/// What `create` records of the ports beside its flags: `HostConfig.PortBindings` and
/// `PublishAllPorts` (merged into inspect's HostConfig).
pub fn record(f: &PortFlags, network: &str) -> Result<serde_json::Value> {
    let specs = if network == "host" {
        Vec::new()
    } else {
        check_quiet(f)?
    };
    Ok(serde_json::json!({
        "HostConfig": {
            "PortBindings": ports::port_bindings_json(&specs),
            "PublishAllPorts": f.publish_all,
        }
    }))
}

// ---------------------------------------------------------------------------------------
// The monitor: reserve, publish, after the exit
// ---------------------------------------------------------------------------------------

/// The host ports the monitor holds for its container, across its restarts.
static HELD: Mutex<Vec<Reservation>> = Mutex::new(Vec::new());

/// The balanced host ports the monitor holds (shared with the port's other members).
static HELD_BALANCED: Mutex<Vec<Reservation>> = Mutex::new(Vec::new());

fn held_balanced() -> std::sync::MutexGuard<'static, Vec<Reservation>> {
    HELD_BALANCED.lock().unwrap_or_else(|e| e.into_inner())
}

fn held() -> std::sync::MutexGuard<'static, Vec<Reservation>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

fn create_flag<'a>(c: &'a Container, key: &str) -> Option<&'a serde_json::Value> {
    c.record.options.get("create")?.get(key)
}

/// The balanced ports of a container as `create` recorded them.
fn balanced_request(c: &Container) -> Result<Vec<PublishSpec>> {
    create_flag(c, "publish_balanced")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .map(parse_balanced)
        .collect()
}

/// The `-p` specs and `-P` of a container as `create` recorded them (none off a bridge).
fn port_request(c: &Container) -> Result<(Vec<PublishSpec>, bool)> {
    use super::endpoints::{connections, is_bridge_mode};
    let mode = c.record.host_config.network_mode.as_str();
    if !is_bridge_mode(mode) && connections(c).is_empty() {
        return Ok((Vec::new(), false));
    }
    let specs = create_flag(c, "publish")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .map(ports::parse_publish)
        .collect::<Result<Vec<_>>>()?;
    let all = create_flag(c, "publish_all")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok((specs, all))
}

/// Whether the container was made with ports to publish.
pub fn has_ports(c: &Container) -> bool {
    port_request(c).is_ok_and(|(s, all)| !s.is_empty() || all)
        || balanced_request(c).is_ok_and(|b| !b.is_empty())
}

fn exposed(c: &Container) -> Vec<(u16, Proto)> {
    c.record
        .config
        .exposed_ports
        .keys()
        .filter_map(|k| ports::parse_exposed(k).ok())
        .flatten()
        .collect()
}

/// The container's ports lock, held by its monitor for its whole life once it publishes.
static PORTS_LOCK: Mutex<Option<nix::fcntl::Flock<std::fs::File>>> = Mutex::new(None);

/// The monitor, before the container is made: holds its host ports (once: a restart keeps
/// them). A port taken is Docker's error, and nothing is made.
///
/// A `start` right after the container exited may find the previous monitor still giving its
/// ports back (after the exit was delivered): the container's `ports.lock`, which a monitor
/// holds from here to its end, makes the new one wait for that.
pub fn reserve(c: &Container) -> Result<()> {
    let mut h = held();
    let mut hb = held_balanced();
    if !h.is_empty() || !hb.is_empty() {
        return Ok(());
    }
    let (specs, all) = port_request(c)?;
    let balanced = balanced_request(c)?;
    if specs.is_empty() && !all && balanced.is_empty() {
        return Ok(());
    }
    let mut lock = PORTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if lock.is_none() {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(c.dir.join("ports.lock"))
            .context("the container's ports lock")?;
        *lock = Some(
            nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| anyhow::anyhow!("cannot lock the container's ports: {e}"))?,
        );
    }
    let failed = |e: anyhow::Error| {
        anyhow::anyhow!(
            "driver failed programming external connectivity on endpoint {} ({}): {e:#}",
            c.record.name,
            crate::engine::record::short_id(c.id())
        )
    };
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let got = ports::allocate(&specs, all, &exposed(c), any).map_err(failed)?;
    let mut shared = Vec::new();
    for b in &balanced {
        let (host_port, container_port) =
            (b.host_ports.map_or(0, |h| h.start), b.container_ports.start);
        let fd = ports::reserve_shared(any, host_port, b.proto).map_err(failed)?;
        shared.push(Reservation {
            binding: PortBinding {
                container_port,
                proto: b.proto,
                host_ip: any,
                host_port,
            },
            fd,
        });
    }
    *h = got;
    *hb = shared;
    Ok(())
}

/// The bindings held, for the container's state.
pub fn bindings() -> Vec<PortBinding> {
    held()
        .iter()
        .chain(held_balanced().iter())
        .map(|r| r.binding)
        .collect()
}

/// The tag of a container's elements in the table: its data root's and its id.
pub fn tag(engine: &Engine, id: &str) -> String {
    format!("{}-{id}", root_tag(engine))
}

fn root_tag(engine: &Engine) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(engine.data_root.as_os_str().as_encoded_bytes());
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The monitor, once the container has its addresses (`leases`, its first network's
/// first): the DNAT elements of the ports it holds, replacing whatever stale element had
/// the same host port.
pub fn publish(engine: &Engine, c: &Container, leases: &[Lease]) -> Result<()> {
    let list: Vec<PortBinding> = held().iter().map(|r| r.binding).collect();
    let balanced: Vec<PortBinding> = held_balanced().iter().map(|r| r.binding).collect();
    if list.is_empty() && balanced.is_empty() {
        return Ok(());
    }
    let ip = leases
        .first()
        .map(|l| l.ip)
        .context("published ports need a bridge network")?;
    let tag = tag(engine, c.id());
    in_child(|| {
        let fw = firewall();
        fw.publish_held(&tag, ip, &list)?;
        fw.join_balanced(&tag, ip, &balanced)
    })
}

/// The monitor, once the container has exited for good: the host ports go back (before the
/// exit is delivered, so that a next `run -p` of the same port finds it free).
pub fn release_ports() {
    held().clear();
    held_balanced().clear();
}

/// The monitor, after the exit status was delivered (off `run --rm`'s path): the elements
/// go.
pub fn after_exit(engine: &Engine, c: &mut Container) {
    release_ports();
    if !has_ports(c) {
        return;
    }
    let tag = tag(engine, c.id());
    let _ = in_child(|| firewall().unpublish(&tag).map(drop));
    if c.dir.join(crate::engine::record::RECORD_FILE).exists() {
        let _ = c.update_state(|s| s.ports.clear());
    }
}

/// `rm` (and a failed `run --rm`): what a killed monitor left in the table. The monitor's
/// own removal of a `--rm` container leaves it to [`after_exit`].
pub fn forget(engine: &Engine, c: &Container, by_monitor: bool) {
    if by_monitor || !has_ports(c) {
        return;
    }
    let _ = firewall().unpublish(&tag(engine, c.id()));
}

/// The network commands' sweep: the elements of this data root's containers that no longer
/// run, and the rules of bridges that are gone from the host.
pub fn sweep(engine: &Engine) -> Result<()> {
    let fw = firewall();
    let mine = format!("{}-", root_tag(engine));
    fw.retain(|t| match t.strip_prefix(&mine) {
        Some(id) => engine
            .open(id)
            .map(|c| c.may_have_processes(engine))
            .unwrap_or(false),
        None => true,
    })?;
    let mut nl = Netlink::open()?;
    for b in fw.bridges()? {
        if nl.link(&b)?.is_none() {
            fw.remove_network(&b)?;
        }
    }
    Ok(())
}

/// Runs `f` in a child process (the monitor's firewall work, and a starting command's:
/// libnftables is loaded there and goes with it); its error comes back as text. Only for
/// single-threaded callers (berth's commands and its monitors are).
fn in_child(f: impl FnOnce() -> Result<()>) -> Result<()> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    let parent = nix::unistd::getpid();
    // SAFETY: the monitor is single-threaded; the child runs this process's own code and
    // ends with _exit.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            die_with_parent(parent);
            // Nothing of the parent's but the pipe: a lock it holds (the runtime's, during a
            // start) must not outlive it in this child.
            let w_fd = w.as_raw_fd() as u32;
            // SAFETY: close_range closes descriptors this child does not use; `w` is kept.
            unsafe {
                libc::syscall(libc::SYS_close_range, 3u32, w_fd - 1, 0u32);
                libc::syscall(libc::SYS_close_range, w_fd + 1, u32::MAX, 0u32);
            }
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    let _ = std::fs::File::from(w).write_all(format!("{e:#}").as_bytes());
                    1
                }
                Err(_) => 2,
            };
            // SAFETY: ends the child without running the monitor's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut msg = String::new();
            let _ = std::fs::File::from(r).read_to_string(&mut msg);
            let status = loop {
                match nix::sys::wait::waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            match status {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                _ if !msg.is_empty() => Err(anyhow::anyhow!(msg)),
                other => bail!("the firewall's process failed: {other:?}"),
            }
        }
    }
}

/// In a child just forked by `parent`: dies (SIGKILL) when `parent` does, or at once when it
/// is already gone. A monitor killed by `rm -f` takes its firewall child with it, so that
/// nothing it was about to add outlives the `rm`: the child holds the firewall's lock while
/// it works, so the `rm`'s own cleanup, under the same lock, comes after it in any case.
pub(crate) fn die_with_parent(parent: nix::unistd::Pid) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; _exit ends this child at once.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent.as_raw() {
            libc::_exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// What the commands show
// ---------------------------------------------------------------------------------------

/// The bindings of a running container (none when it does not run).
pub fn current(engine: &Engine, c: &Container) -> Vec<PortBinding> {
    if c.status(engine).is_active() {
        c.state.ports.clone()
    } else {
        Vec::new()
    }
}

/// The PORTS column of `container ls`.
pub fn ports_column(engine: &Engine, c: &Container) -> String {
    if !c.status(engine).is_active() {
        return String::new();
    }
    ports::ports_column(&c.state.ports, &exposed(c))
}

/// inspect's `NetworkSettings.Ports`: `{}` for a container that does not run.
pub fn network_ports(engine: &Engine, c: &Container) -> serde_json::Value {
    if !c.status(engine).is_active() {
        return serde_json::json!({});
    }
    ports::network_ports_json(&c.state.ports, &exposed(c))
}

/// `port CONTAINER [PORT[/PROTO]]`'s output.
pub fn port_output(
    engine: &Engine,
    c: &Container,
    filter: Option<&str>,
    named: &str,
) -> Result<String> {
    ports::port_output(&current(engine, c), filter, named)
}
