//! Attaching a container to a bridge network, from outside, before its program runs: the
//! container is its process waiting to start (the pid the engine's monitor has between
//! `create_supervised` and `Pending::start`).
//!
//! The bridge is made on first use with the gateway's address. An endpoint is a veth pair made
//! in one request: the host end (`vethXXXXXXX`) up on the bridge, the peer made directly in the
//! container's namespace under its final name (`eth0`), with its MAC. Then, in the
//! container's namespace: the loopback up, IPv6 off, the address and the default route via the
//! gateway, the peer up. The lease naming the veth is on disk before the veth exists; detaching removes the
//! host end (the peer goes with it) and the lease, and nothing else.

use super::netlink::{Netlink, Veth};
use super::store::{Lease, Network, Store};
use anyhow::{Context, Result};
use std::net::Ipv4Addr;

/// The MTU option of a network, as Docker's.
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// What to attach.
pub struct Request<'a> {
    pub network: &'a Network,
    /// The container's id, recorded in the lease.
    pub container: &'a str,
    /// A process in the container's network namespace.
    pub pid: i32,
    /// The interface's name in the container (`eth0`, `eth1` ...).
    pub interface: &'a str,
    /// `--ip`.
    pub ip: Option<Ipv4Addr>,
    /// `--mac-address`; Docker's 02:42:IP otherwise.
    pub mac: Option<[u8; 6]>,
    /// Whether the container's default route goes via this network's gateway (its first
    /// network; never for an `--internal` one).
    pub default_route: bool,
}

fn is_errno(e: &anyhow::Error, errno: i32) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
            == Some(errno)
    })
}

/// The bridge of `net`, made (with the gateway's address, up) when missing; its index.
pub fn ensure_bridge(nl: &mut Netlink, net: &Network) -> Result<u32> {
    let name = net.bridge();
    let subnet = net.subnet()?;
    let gateway = net.gateway()?;
    let link = match nl.link(name)? {
        Some(l) => l,
        None => {
            if let Err(e) = nl.add_bridge(name) {
                // Another berth made it in the meantime: use it.
                if !is_errno(&e, libc::EEXIST) {
                    return Err(e);
                }
            }
            nl.link(name)?
                .with_context(|| format!("bridge {name} vanished as it was made"))?
        }
    };
    let has_gateway = nl
        .addresses()?
        .iter()
        .any(|(i, a, p)| *i == link.index && *a == gateway && *p == subnet.prefix);
    if !has_gateway {
        if let Err(e) = nl.add_address(link.index, gateway, subnet.prefix) {
            if !is_errno(&e, libc::EEXIST) {
                return Err(e).with_context(|| format!("bridge {name}"));
            }
        }
    }
    if !link.up {
        nl.set_up(link.index)
            .with_context(|| format!("bridge {name}"))?;
    }
    Ok(link.index)
}

/// Attaches the container to the network; on failure, removes what it made.
pub fn attach(store: &Store, req: &Request) -> Result<Lease> {
    attach_named(store, req, &[])
}

/// [`attach`], the lease naming the endpoint's DNS names on the network.
pub fn attach_named(store: &Store, req: &Request, names: &[String]) -> Result<Lease> {
    let net = req.network;
    // No `network rm` while this runs; and the network must still be the one asked for.
    let _shared = store.lock_shared()?;
    if store.get(&net.name).map(|n| n.id != net.id).unwrap_or(true) {
        anyhow::bail!("network {} not found", net.name);
    }
    let mut host = Netlink::open()?;
    let bridge = ensure_bridge(&mut host, net)?;
    let lease = store.lease_named(net, req.container, req.ip, req.mac, req.interface, names)?;
    match plumb(&mut host, bridge, net, &lease, req) {
        Ok(()) => Ok(lease),
        Err(e) => {
            let _ = host.del_link(&lease.host_veth);
            let _ = store.release(&net.name, lease.ip);
            Err(e)
        }
    }
}

fn plumb(
    host: &mut Netlink,
    bridge: u32,
    net: &Network,
    lease: &Lease,
    req: &Request,
) -> Result<()> {
    let subnet = net.subnet()?;
    let gateway = net.gateway()?;
    let mtu = match net.options.get(MTU_OPTION) {
        Some(m) => Some(
            m.parse::<u32>()
                .with_context(|| format!("network {}: bad MTU {m}", net.name))?,
        ),
        None => None,
    };
    let ns_path = format!("/proc/{}/ns/net", req.pid);
    let ns = std::fs::File::open(&ns_path)
        .with_context(|| format!("cannot open the network namespace of process {}", req.pid))?;
    let mac = super::netlink::parse_mac(&lease.mac_address)?;
    host.add_veth_with(&Veth {
        name: &lease.host_veth,
        peer_name: &lease.interface,
        peer_ns: Some(&ns),
        peer_mac: Some(mac),
        mtu,
        controller: Some(bridge),
        up: true,
    })?;
    let mut inner = Netlink::open_in_then(&ns, || {
        for conf in ["all", "default", "lo"] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
        }
        Ok(())
    })?;
    let lo = inner.index("lo")?;
    inner.set_up(lo).context("in the container: lo")?;
    let eth = inner.index(&lease.interface)?;
    inner
        .set_up(eth)
        .with_context(|| format!("in the container: {}", lease.interface))?;
    inner
        .add_address(eth, lease.ip, subnet.prefix)
        .with_context(|| format!("in the container: {}", lease.interface))?;
    if req.default_route && !net.internal {
        inner
            .add_route(Ipv4Addr::UNSPECIFIED, 0, Some(gateway), Some(eth))
            .with_context(|| format!("in the container: {}", lease.interface))?;
    }
    Ok(())
}

/// Detaches an endpoint: its host veth (and with it the container's end) and its lease.
pub fn detach(store: &Store, lease: &Lease) -> Result<()> {
    let mut host = Netlink::open()?;
    host.del_link(&lease.host_veth)?;
    store.release(&lease.network, lease.ip)
}

/// Gives back the addresses of a container whose processes have all ended, without deleting
/// its veth pairs: the kernel removes both ends with the container's network namespace (an
/// explicit delete costs ~18 ms of the kernel's on this machine, against ~0.7 ms to make the
/// pair). A host end the kernel has not removed yet is named by no lease, but it goes with its
/// namespace all the same.
pub fn release_exited(store: &Store, container: &str) -> Result<()> {
    store.release_container(container)
}

/// The leases of one container on every network.
pub fn endpoints_of(store: &Store, container: &str) -> Result<Vec<Lease>> {
    let mut out = Vec::new();
    for net in store.list()? {
        out.extend(
            store
                .leases(&net.name)?
                .into_iter()
                .filter(|l| l.container == container),
        );
    }
    Ok(out)
}

/// Detaches a container from every network it is on.
pub fn detach_all(store: &Store, container: &str) -> Result<()> {
    for l in endpoints_of(store, container)? {
        detach(store, &l)?;
    }
    Ok(())
}
