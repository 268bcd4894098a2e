//! A container's networks, as the engine sees them: its first network (`--network`, the
//! record's `NetworkMode`, `eth0`) and those `network connect` added (recorded in the record's
//! options under `networks`, `eth1`, `eth2` ... in the order they were connected). The monitor
//! joins them all before the program runs; `connect` and `disconnect` change a running
//! container's at once, and a stopped one's from its next start.

use super::attach::{self, Request};
use super::store::{Lease, Network, Store, DEFAULT_NETWORK};
use crate::engine::record::{Container, Engine, Status};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// The key of `Record::options` holding the connected networks.
pub const NETWORKS_KEY: &str = "networks";

/// How a container is connected to one network beyond its first (Docker's EndpointSettings,
/// the parts berth uses).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Connection {
    pub network: String,
    #[serde(
        rename = "IPv4Address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Whether a network mode is a bridge network's name.
pub fn is_bridge_mode(mode: &str) -> bool {
    !(mode.is_empty() || mode == "none" || mode == "host" || mode.starts_with("container:"))
}

/// The networks `network connect` added.
pub fn connections(c: &Container) -> Vec<Connection> {
    c.record
        .options
        .get(NETWORKS_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

fn save_connections(c: &mut Container, list: &[Connection]) -> Result<()> {
    if list.is_empty() {
        c.record.options.remove(NETWORKS_KEY);
    } else {
        c.record
            .options
            .insert(NETWORKS_KEY.into(), serde_json::to_value(list)?);
    }
    c.save_record()
}

fn network_of(store: &Store, name: &str) -> Result<Network> {
    if name == DEFAULT_NETWORK {
        store.default_network()
    } else {
        store.get(name)
    }
}

/// `--ip` and `--mac-address` of the first network, as `create` recorded its flags.
fn create_flag(c: &Container, key: &str) -> Option<String> {
    c.record
        .options
        .get("create")?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

/// Joins the process `pid` (the container's init, waiting to start) to every network of the
/// container: its first as `eth0` with the default route, then the connected ones. On failure,
/// what was joined is undone.
pub fn join_all(engine: &Engine, c: &Container, pid: i32) -> Result<Vec<Lease>> {
    let mode = c.record.host_config.network_mode.as_str();
    let conns = connections(c);
    if !is_bridge_mode(mode) && conns.is_empty() {
        return Ok(Vec::new());
    }
    let store = Store::open(&engine.data_root)?;
    if create_flag(c, "ip").is_some() || conns.iter().any(|x| x.ip.is_some()) {
        // An address asked for may still be held by a container whose monitor was killed:
        // the sweep gives such addresses back first.
        super::cli::sweep(engine, &store)?;
    }
    let mut made: Vec<Lease> = Vec::new();
    let r = (|| -> Result<()> {
        if is_bridge_mode(mode) {
            let first = network_of(&store, mode)?;
            let names =
                super::names::dns_names(c, &first.name, &super::names::first_network_aliases(c));
            made.push(attach::attach_named(
                &store,
                &Request {
                    network: &first,
                    container: c.id(),
                    pid,
                    interface: "eth0",
                    ip: create_flag(c, "ip").map(|s| s.parse()).transpose()?,
                    mac: create_flag(c, "mac_address")
                        .map(|s| super::netlink::parse_mac(&s))
                        .transpose()?,
                    default_route: true,
                },
                &names,
            )?);
        }
        let base = made.len();
        for (i, conn) in conns.iter().enumerate() {
            let net = network_of(&store, &conn.network)?;
            let names = super::names::dns_names(c, &net.name, &conn.aliases);
            made.push(attach::attach_named(
                &store,
                &Request {
                    network: &net,
                    container: c.id(),
                    pid,
                    interface: &format!("eth{}", base + i),
                    ip: conn.ip,
                    mac: None,
                    default_route: base + i == 0,
                },
                &names,
            )?);
        }
        Ok(())
    })();
    match r {
        Ok(()) => Ok(made),
        Err(e) => {
            for l in &made {
                let _ = attach::detach(&store, l);
            }
            Err(e)
        }
    }
}

/// The next free `ethN` of a running container: one past the highest its leases name.
fn next_interface(leases: &[Lease]) -> String {
    let n = leases
        .iter()
        .filter_map(|l| l.interface.strip_prefix("eth")?.parse::<u32>().ok())
        .map(|n| n + 1)
        .max()
        .unwrap_or(0);
    format!("eth{n}")
}

/// `network connect [--ip IP] [--alias A] NET CTR`.
pub fn connect(
    engine: &Engine,
    network: &str,
    container: &str,
    ip: Option<Ipv4Addr>,
    aliases: &[String],
) -> Result<()> {
    let store = Store::open(&engine.data_root)?;
    let net = network_of(&store, network)?;
    super::publish::network_up(&net)?;
    let mut c = engine.lookup(container)?;
    let _lock = c.lock()?;
    c.reload();
    let mode = c.record.host_config.network_mode.clone();
    if mode == "host" {
        bail!("container cannot be disconnected from host network or connected to host network");
    }
    if mode.starts_with("container:") {
        bail!("container sharing network namespace with another container or host cannot be connected to any other network");
    }
    let mut list = connections(&c);
    if mode == net.name || list.iter().any(|x| x.network == net.name) {
        bail!(
            "endpoint with name {} already exists in network {}",
            c.record.name,
            net.name
        );
    }
    if ip.is_some() && net.name == DEFAULT_NETWORK {
        bail!("user specified IP address is supported on user defined networks only");
    }
    if c.status(engine) == Status::Running {
        let mine = attach::endpoints_of(&store, c.id())?;
        attach::attach_named(
            &store,
            &Request {
                network: &net,
                container: c.id(),
                pid: c.state.pid,
                interface: &next_interface(&mine),
                ip,
                mac: None,
                default_route: mine.is_empty(),
            },
            &super::names::dns_names(&c, &net.name, aliases),
        )?;
        super::names::refresh_hosts(engine, &c)?;
    }
    list.push(Connection {
        network: net.name.clone(),
        ip,
        aliases: aliases.to_vec(),
    });
    save_connections(&mut c, &list)
}

/// `network disconnect [-f] NET CTR`: a connected network, or the first one (the container
/// keeps its own network namespace, with its loopback, as `none`).
pub fn disconnect(engine: &Engine, network: &str, container: &str, force: bool) -> Result<()> {
    let store = Store::open(&engine.data_root)?;
    let net = match network_of(&store, network) {
        Ok(n) => n.name,
        Err(_) if force => network.to_string(),
        Err(e) => return Err(e),
    };
    let mut c = engine.lookup(container)?;
    let _lock = c.lock()?;
    c.reload();
    let mut list = connections(&c);
    let first = c.record.host_config.network_mode == net;
    if !first && !list.iter().any(|x| x.network == net) {
        bail!(
            "container {} is not connected to network {net}",
            crate::engine::record::short_id(c.id())
        );
    }
    for l in attach::endpoints_of(&store, c.id())?
        .iter()
        .filter(|l| l.network == net)
    {
        attach::detach(&store, l).with_context(|| format!("network {net}"))?;
    }
    if first {
        c.record.host_config.network_mode = "none".into();
    }
    list.retain(|x| x.network != net);
    save_connections(&mut c, &list)?;
    if c.status(engine) == Status::Running {
        super::names::refresh_hosts(engine, &c)?;
    }
    Ok(())
}

/// The container's `NetworkSettings.Networks` entries, Docker's fields, with the address of
/// each endpoint while the container has one; and the legacy top-level fields (`IPAddress`,
/// `Gateway`, `MacAddress`, `IPPrefixLen`), which Docker fills for the default network only.
pub fn inspect_networks(
    engine: &Engine,
    c: &Container,
) -> (
    serde_json::Map<String, serde_json::Value>,
    serde_json::Value,
) {
    let mut out = serde_json::Map::new();
    let mode = c.record.host_config.network_mode.as_str();
    let empty =
        serde_json::json!({"Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": ""});
    let mut names: Vec<(String, Option<Ipv4Addr>, Vec<String>)> = Vec::new();
    if !mode.is_empty() && !mode.starts_with("container:") {
        names.push((
            mode.to_string(),
            create_flag(c, "ip").and_then(|s| s.parse().ok()),
            super::names::first_network_aliases(c),
        ));
    }
    for conn in connections(c) {
        names.push((conn.network, conn.ip, conn.aliases));
    }
    let store = match Store::open(&engine.data_root) {
        Ok(s) => s,
        Err(_) => return (out, empty),
    };
    let mut legacy = empty.clone();
    for (name, ip, aliases) in names {
        let net = if is_bridge_mode(&name) {
            network_of(&store, &name).ok()
        } else {
            None
        };
        let lease = net.as_ref().and_then(|n| {
            store
                .leases(&n.name)
                .ok()?
                .into_iter()
                .find(|l| l.container == c.id())
        });
        let prefix = net.as_ref().and_then(|n| n.subnet().ok()).map(|s| s.prefix);
        let gateway = net.as_ref().and_then(|n| n.gateway().ok());
        let entry = serde_json::json!({
            "IPAMConfig": ip.map(|ip| serde_json::json!({"IPv4Address": ip.to_string()})),
            "Links": null,
            "Aliases": if aliases.is_empty() { serde_json::Value::Null } else { aliases.into() },
            "MacAddress": lease.as_ref().map(|l| l.mac_address.clone()).unwrap_or_default(),
            "DriverOpts": null,
            "NetworkID": net.as_ref().map(|n| n.id.clone()).unwrap_or_default(),
            "EndpointID": lease.as_ref().map(|l| l.host_veth.clone()).unwrap_or_default(),
            "Gateway": lease.as_ref().and(gateway).map(|g| g.to_string()).unwrap_or_default(),
            "IPAddress": lease.as_ref().map(|l| l.ip.to_string()).unwrap_or_default(),
            "IPPrefixLen": lease.as_ref().and(prefix).unwrap_or(0),
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": lease.as_ref().filter(|l| !l.names.is_empty()).map(|l| l.names.clone()),
        });
        if name == DEFAULT_NETWORK && lease.is_some() {
            for k in ["Gateway", "IPAddress", "IPPrefixLen", "MacAddress"] {
                legacy[k] = entry[k].clone();
            }
        }
        out.insert(name, entry);
    }
    (out, legacy)
}
