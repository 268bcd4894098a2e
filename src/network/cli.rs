//! `berth network create|ls|inspect|rm|prune`, with Docker's flags, output and errors.

use super::store::{CreateOptions, Lease, Network, Store, DEFAULT_NETWORK};
use crate::engine::present::{indented_json, key_values};
use crate::engine::record::Engine;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks.
    Inspect(InspectArgs),
    /// Remove one or more networks.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks.
    Prune(PruneArgs),
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
}

#[derive(Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container.
    #[arg(long)]
    alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104").
    #[arg(long)]
    ip: Option<String>,
    network: String,
    container: String,
}

#[derive(Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network.
    #[arg(short, long)]
    force: bool,
    network: String,
    container: String,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Driver to manage the Network.
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment.
    #[arg(long)]
    subnet: Option<String>,
    /// IPv4 Gateway for the master subnet.
    #[arg(long)]
    gateway: Option<String>,
    /// Allocate container ip from a sub-range.
    #[arg(long = "ip-range")]
    ip_range: Option<String>,
    /// Restrict external access to the network.
    #[arg(long)]
    internal: bool,
    /// Enable manual container attachment.
    #[arg(long)]
    attachable: bool,
    /// Set metadata on a network.
    #[arg(short, long)]
    label: Vec<String>,
    /// Set driver specific options.
    #[arg(short, long)]
    opt: Vec<String>,
    name: String,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display network IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate the output.
    #[arg(long = "no-trunc")]
    no_trunc: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// A network as `network inspect` prints it, in Docker's order: the record, and its
/// endpoints as `Containers`.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectView<'a> {
    name: &'a str,
    id: &'a str,
    created: &'a str,
    scope: &'a str,
    driver: &'a str,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: &'a super::store::Ipam,
    internal: bool,
    attachable: bool,
    ingress: bool,
    config_from: serde_json::Value,
    config_only: bool,
    containers: BTreeMap<String, serde_json::Value>,
    options: &'a BTreeMap<String, String>,
    labels: &'a BTreeMap<String, String>,
}

pub fn inspect_view<'a>(
    engine: &Engine,
    net: &'a Network,
    leases: &[Lease],
) -> Result<InspectView<'a>> {
    let prefix = net.subnet()?.prefix;
    let mut containers = BTreeMap::new();
    for l in leases {
        let name = engine
            .open(&l.container)
            .map(|c| c.record.name.trim_start_matches('/').to_string())
            .unwrap_or_default();
        containers.insert(
            l.container.clone(),
            serde_json::json!({
                "Name": name,
                "EndpointID": l.host_veth,
                "MacAddress": l.mac_address,
                "IPv4Address": format!("{}/{prefix}", l.ip),
                "IPv6Address": "",
            }),
        );
    }
    Ok(InspectView {
        name: &net.name,
        id: &net.id,
        created: &net.created,
        scope: &net.scope,
        driver: &net.driver,
        enable_ipv6: net.enable_ipv6,
        ipam: &net.ipam,
        internal: net.internal,
        attachable: net.attachable,
        ingress: net.ingress,
        config_from: serde_json::json!({"Network": ""}),
        config_only: false,
        containers,
        options: &net.options,
        labels: &net.labels,
    })
}

/// Runs a network command; returns the exit code.
pub fn run(engine: &Engine, cmd: NetworkCommand) -> Result<i32> {
    let store = Store::open(&engine.data_root)?;
    if !matches!(cmd, NetworkCommand::Create(_)) {
        // The repair: endpoints of containers whose processes are gone (a monitor or berth
        // killed before it cleaned up) lose their veth and lease.
        sweep(engine, &store)?;
        super::publish::sweep(engine)?;
    }
    let out = &mut std::io::stdout().lock();
    match cmd {
        NetworkCommand::Create(a) => {
            let net = super::publish::create_network(
                &store,
                &CreateOptions {
                    name: a.name.clone(),
                    driver: Some(a.driver.clone()),
                    subnet: a.subnet.clone(),
                    gateway: a.gateway.clone(),
                    ip_range: a.ip_range.clone(),
                    internal: a.internal,
                    attachable: a.attachable,
                    labels: key_values(&a.label),
                    options: key_values(&a.opt),
                },
            );
            match net {
                Ok(n) => {
                    writeln!(out, "{}", n.id)?;
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("Error response from daemon: {e:#}");
                    Ok(1)
                }
            }
        }
        NetworkCommand::Ls(a) => {
            // The default network is there from the first look, as Docker's `bridge`.
            store.default_network()?;
            let list = store.list()?;
            let id = |n: &Network| {
                if a.no_trunc {
                    n.id.clone()
                } else {
                    n.id[..12].to_string()
                }
            };
            if a.quiet {
                for n in &list {
                    writeln!(out, "{}", id(n))?;
                }
                return Ok(0);
            }
            let rows: Vec<[String; 4]> = list
                .iter()
                .map(|n| [id(n), n.name.clone(), n.driver.clone(), n.scope.clone()])
                .collect();
            crate::table::write_table(out, ["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows)?;
            Ok(0)
        }
        NetworkCommand::Inspect(a) => {
            let mut nets = Vec::new();
            let mut code = 0;
            for name in &a.networks {
                // `bridge` is Docker's name of its default network.
                let default = name == DEFAULT_NETWORK
                    || (name == "bridge" && !store.list()?.iter().any(|n| n.name == "bridge"));
                let got = if default {
                    store.default_network()
                } else {
                    store.get(name)
                };
                match got {
                    Ok(n) => {
                        let leases = store.leases(&n.name)?;
                        nets.push((n, leases));
                    }
                    Err(e) => {
                        eprintln!("Error response from daemon: {e:#}");
                        code = 1;
                    }
                }
            }
            let found = nets
                .iter()
                .map(|(n, l)| inspect_view(engine, n, l))
                .collect::<Result<Vec<_>>>()?;
            writeln!(out, "{}", indented_json(&found)?)?;
            Ok(code)
        }
        NetworkCommand::Rm(a) => {
            let mut code = 0;
            for name in &a.networks {
                let r = if name == DEFAULT_NETWORK {
                    Err(anyhow::anyhow!(
                        "{name} is a pre-defined network and cannot be removed"
                    ))
                } else {
                    super::publish::remove_network(&store, name)
                };
                match r {
                    Ok(_) => writeln!(out, "{name}")?,
                    Err(e) if a.force && e.to_string().ends_with("not found") => {}
                    Err(e) => {
                        eprintln!("Error response from daemon: {e:#}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        NetworkCommand::Connect(a) => {
            let ip = match &a.ip {
                Some(s) => Some(
                    s.parse()
                        .map_err(|_| anyhow::anyhow!("invalid IPv4 address: {s}"))?,
                ),
                None => None,
            };
            daemon(super::endpoints::connect(
                engine,
                &a.network,
                &a.container,
                ip,
                &a.alias,
            ))
        }
        NetworkCommand::Disconnect(a) => daemon(super::endpoints::disconnect(
            engine,
            &a.network,
            &a.container,
            a.force,
        )),
        NetworkCommand::Prune(a) => {
            if !a.force {
                write!(
                    out,
                    "WARNING! This will remove all custom networks not used by at least one \
                     container.\nAre you sure you want to continue? [y/N] "
                )?;
                out.flush()?;
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y") {
                    return Ok(0);
                }
            }
            let mut deleted = Vec::new();
            for n in store.list()? {
                if n.name == DEFAULT_NETWORK || !store.leases(&n.name)?.is_empty() {
                    continue;
                }
                super::publish::remove_network(&store, &n.name)?;
                deleted.push(n.name);
            }
            if !deleted.is_empty() {
                writeln!(out, "Deleted Networks:")?;
                for n in &deleted {
                    writeln!(out, "{n}")?;
                }
            }
            Ok(0)
        }
    }
}

/// Docker's daemon errors: printed with its prefix, exit 1.
fn daemon(r: Result<()>) -> Result<i32> {
    match r {
        Ok(()) => Ok(0),
        Err(e) => {
            eprintln!("Error response from daemon: {e:#}");
            Ok(1)
        }
    }
}

/// Removes the endpoints of containers that have no process left (or no record): the
/// engine's containers, and `berth build`'s RUN steps.
pub fn sweep(engine: &Engine, store: &Store) -> Result<Vec<Lease>> {
    store.sweep(|id| {
        engine
            .open(id)
            .map(|c| c.may_have_processes(engine))
            .unwrap_or(false)
            || build_step_may_run(engine, id)
    })
}

/// Whether `id` is a RUN step of `berth build` whose process may be alive: a runtime
/// container under the build's runtime root whose record says created, running or paused
/// (or is not yet readable: its birth is under way). A killed build's steps are deleted by
/// the next build's repair, which also gives back their leases.
fn build_step_may_run(engine: &Engine, id: &str) -> bool {
    use crate::runtime::state::{derive_status, read_state, Status as R};
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return false;
    }
    let dir = engine
        .state_root
        .join(crate::engine::record::BUILD_RUNTIME_ROOT)
        .join(id);
    if !dir.is_dir() {
        return false;
    }
    match read_state(&dir) {
        Ok(st) => matches!(
            derive_status(&dir, &st),
            R::Creating | R::Created | R::Running | R::Paused
        ),
        Err(_) => true,
    }
}

/// Checks `--network NAME` for create: the default network for `bridge`/`default`/`berth`
/// (recorded on first use), else a user network; returns the name the container records.
pub fn resolve(engine: &Engine, name: &str) -> Result<String> {
    let store = Store::open(&engine.data_root)?;
    match name {
        "bridge" | "default" | DEFAULT_NETWORK => Ok(super::publish::default_network(&store)?.name),
        n => match store.get(n) {
            Ok(net) => Ok(net.name),
            Err(_) => bail!("network {n} not found"),
        },
    }
}
