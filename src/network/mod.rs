//! Networks: what the engine does to a container's network namespace. The loopback of a
//! container's own namespace (Docker's `none` network); bridge networks: a small synchronous
//! rtnetlink client, the records of networks and their address leases, the attaching of a
//! container to a bridge; the firewall of berth's bridges (NAT, isolation, published ports) in
//! nftables; Docker's `-p`/`-P` and their outputs; a container's /etc/hosts and resolv.conf, and
//! names on user networks through Docker's embedded DNS server (127.0.0.11) in its monitor.
pub mod attach;
pub mod cli;
pub mod endpoints;
pub mod firewall;
pub mod loopback;
pub mod names;
pub mod netlink;
pub mod nftables;
pub mod ports;
pub mod publish;
pub mod resolver;
pub mod store;

/// Docker's rule for network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_network_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}
