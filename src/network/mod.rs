//! Networks: what the engine does to a container's network namespace. The loopback of a
//! container's own namespace (Docker's `none` network); the firewall of berth's bridges (NAT,
//! isolation, published ports) in nftables; Docker's `-p`/`-P` and their outputs; names on user
//! networks through aardvark-dns.
pub mod dns;
pub mod firewall;
pub mod loopback;
pub mod nftables;
pub mod ports;
