//! berth's firewall: NAT for egress, isolation between networks and published ports, in
//! nftables, in a table of berth's own (`table ip berth`) that no other engine or the host
//! touches, and that touches none of theirs.
//!
//! Every change is one nftables transaction (one buffer of nft's language, given to
//! libnftables in-process or to `nft -f -`: all of it or nothing, see [`nftables`]). The rules
//! never change per container: what a network or a container adds are elements of maps and
//! sets, looked up by a few fixed rules:
//!
//! - `forward`: `iifname vmap @fwd_in` and `oifname vmap @fwd_out` jump to a network's chains:
//!   `in-BR` drops what goes from the bridge to another berth bridge (isolation: published
//!   ports excepted, as they are published to all) and, for an `--internal` network,
//!   anything leaving it; `out-BR` lets into the bridge only replies
//!   (`ct state established,related`) and published ports (`ct status dnat`).
//! - `postrouting`: `iifname vmap @nat_src` masquerades what leaves the subnet for elsewhere
//!   (not for `--internal`); `oifname vmap @nat_dst` masquerades what the host sends to a
//!   published port from 127.0.0.0/8 (the bridge gets `route_localnet`, as Docker's does
//!   without its userland proxy) and the hairpin of a container to a port of its own network.
//! - `prerouting` and `output`: for a host address (`fib daddr type local`), DNAT through the
//!   maps `pub_addr` (`proto . host IP . host port`) then `pub_any` (`proto . host port`, for a
//!   port published on every address) to `container IP . container port`.
//!
//! - Balanced ports (a Service's NodePort over its pods, as kube-proxy makes them): in base
//!   chains of their own just before those (`balance_pre`, `balance_out`, which a berth of
//!   before them leaves alone when it writes the others again), for a host address,
//!   `pub_lb` (`proto . host port`, every address) jumps to the port's own chain
//!   `lb_PROTO_PORT`, whose one rule DNATs to `numgen random mod N` over the N members'
//!   `container IP . container port`. The members are the elements of the set `lb_members`
//!   (`proto . host port . container IP . container port`, with the container's tag as
//!   comment); the chain is written again from them whenever one joins or leaves, in the same
//!   transaction.
//! - `guard` (prerouting, before conntrack): drops what comes from a bridge for 127.0.0.0/8.
//!   The bridges have `route_localnet` (for the host's own 127.0.0.1 to reach published
//!   ports), which would otherwise let a container (with CAP_NET_RAW, a default) reach the
//!   host's loopback services (CVE-2020-8558, which Docker and kube-proxy guard the same way).
//!
//! A container with no published port costs nothing here; one with ports is one transaction
//! of map elements, each carrying the container's id as its comment, so that a sweep after a
//! SIGKILL deletes exactly that container's elements.
//!
//! `net.ipv4.ip_forward` is turned on with the first network and its value before recorded in
//! the state directory, and put back when the last network goes.

use crate::network::nftables::{self, Backend};
use crate::network::ports::{PortBinding, Proto};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// The table berth's rules live in.
pub const TABLE: &str = "berth";

const IP_FORWARD: &str = "net.ipv4.ip_forward";

/// One network's part of the firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    /// The bridge's name.
    pub bridge: String,
    /// The subnet's address and prefix length.
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    /// `--internal`: no egress, no masquerade.
    pub internal: bool,
}

impl NetworkRules {
    fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }
}

/// One published port as the firewall holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub container: String,
    pub binding: PortBinding,
    pub container_ip: Ipv4Addr,
}

/// berth's firewall in one table, with its state (the sysctls it changed) in a directory.
#[derive(Debug, Clone)]
pub struct Firewall {
    table: String,
    state_dir: PathBuf,
    backend: Backend,
}

fn check_name(what: &str, s: &str, max: usize) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !ok {
        bail!("invalid {what} for the firewall: {s:?}");
    }
    Ok(())
}

impl Firewall {
    /// berth's own table, `ip berth`, with its state in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Firewall {
            table: TABLE.to_string(),
            state_dir: state_dir.into(),
            backend: Backend::Auto,
        }
    }

    /// Another table name (tests).
    pub fn with_table(table: &str, state_dir: impl Into<PathBuf>) -> Result<Self> {
        check_name("table", table, 64)?;
        Ok(Firewall {
            table: table.to_string(),
            state_dir: state_dir.into(),
            backend: Backend::Auto,
        })
    }

    /// Runs nft's commands this way (libnftables in-process by default).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Runs one nftables transaction.
    fn apply(&self, script: &str) -> Result<()> {
        nftables::run(self.backend, script, false).map(drop)
    }

    /// `list WHAT` in JSON, None if the table is not there.
    fn list(&self, what: &[&str]) -> Result<Option<Value>> {
        match nftables::run(self.backend, &format!("list {}", what.join(" ")), true) {
            Ok(out) => Ok(Some(serde_json::from_str(&out).context("nft's JSON")?)),
            Err(e) if e.to_string().contains("No such file or directory") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The table, its maps and base chains: idempotent (the base chains are flushed and
    /// filled again in the same transaction), so every network change starts with it.
    fn prelude(&self) -> String {
        let t = format!("ip {}", self.table);
        format!(
            "add table {t}\n\
             add set {t} bridges {{ type ifname; }}\n\
             add map {t} fwd_in {{ type ifname : verdict; }}\n\
             add map {t} fwd_out {{ type ifname : verdict; }}\n\
             add map {t} nat_src {{ type ifname : verdict; }}\n\
             add map {t} nat_dst {{ type ifname : verdict; }}\n\
             add map {t} pub_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             add map {t} pub_addr {{ type inet_proto . ipv4_addr . inet_service : ipv4_addr . inet_service; }}\n\
             add map {t} pub_lb {{ type inet_proto . inet_service : verdict; }}\n\
             add set {t} lb_members {{ type inet_proto . inet_service . ipv4_addr . inet_service; }}\n\
             add chain {t} forward {{ type filter hook forward priority filter; policy accept; }}\n\
             add chain {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
             add chain {t} output {{ type nat hook output priority -100; policy accept; }}\n\
             add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
             add chain {t} publish\n\
             add chain {t} balance_pre {{ type nat hook prerouting priority dstnat - 1; policy accept; }}\n\
             add chain {t} balance_out {{ type nat hook output priority -101; policy accept; }}\n\
             flush chain {t} balance_pre\n\
             flush chain {t} balance_out\n\
             add rule {t} balance_pre fib daddr type local meta l4proto . th dport vmap @pub_lb\n\
             add rule {t} balance_out fib daddr type local meta l4proto . th dport vmap @pub_lb\n\
             add chain {t} guard {{ type filter hook prerouting priority raw; policy accept; }}\n\
             flush chain {t} guard\n\
             add rule {t} guard iifname @bridges ip daddr 127.0.0.0/8 drop\n\
             flush chain {t} forward\n\
             flush chain {t} prerouting\n\
             flush chain {t} output\n\
             flush chain {t} postrouting\n\
             flush chain {t} publish\n\
             add rule {t} forward iifname vmap @fwd_in\n\
             add rule {t} forward oifname vmap @fwd_out\n\
             add rule {t} prerouting fib daddr type local jump publish\n\
             add rule {t} output fib daddr type local jump publish\n\
             add rule {t} publish dnat ip to meta l4proto . ip daddr . th dport map @pub_addr\n\
             add rule {t} publish dnat ip to meta l4proto . th dport map @pub_any\n\
             add rule {t} postrouting iifname vmap @nat_src\n\
             add rule {t} postrouting oifname vmap @nat_dst\n"
        )
    }

    fn lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>> {
        std::fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("cannot create {}", self.state_dir.display()))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.state_dir.join(format!("{}.lock", self.table)))
            .context("firewall lock")?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("cannot lock the firewall state: {e}"))
    }

    fn sysctl_record(&self) -> PathBuf {
        self.state_dir.join(format!("{}.sysctl.json", self.table))
    }

    /// Adds (or sets again) a network's rules, turning forwarding on (recording its value
    /// before) and `route_localnet` on the bridge (which goes with the bridge). The bridge
    /// must exist.
    pub fn add_network(&self, n: &NetworkRules) -> Result<()> {
        check_name("bridge name", &n.bridge, 15)?;
        if n.prefix > 32 {
            bail!("invalid prefix length {}", n.prefix);
        }
        let _lock = self.lock()?;
        self.enable_forwarding()?;
        let t = format!("ip {}", self.table);
        let b = &n.bridge;
        let cidr = n.cidr();
        let mut s = self.prelude();
        for c in ["in", "out", "snat", "dnat"] {
            s.push_str(&format!("add chain {t} {c}-{b}\nflush chain {t} {c}-{b}\n"));
        }
        s.push_str(&format!("add rule {t} in-{b} oifname \"{b}\" accept\n"));
        if n.internal {
            s.push_str(&format!("add rule {t} in-{b} drop\n"));
        } else {
            // A published port is published to all, other networks' containers included
            // (through a host address); their own addresses stay out of reach.
            s.push_str(&format!("add rule {t} in-{b} ct status dnat accept\n"));
            s.push_str(&format!("add rule {t} in-{b} oifname @bridges drop\n"));
            s.push_str(&format!(
                "add rule {t} snat-{b} oifname != \"{b}\" ip saddr {cidr} masquerade\n"
            ));
        }
        s.push_str(&format!(
            "add rule {t} out-{b} ct state established,related accept\n\
             add rule {t} out-{b} ct status dnat accept\n\
             add rule {t} out-{b} drop\n\
             add rule {t} dnat-{b} ip saddr 127.0.0.0/8 masquerade\n\
             add rule {t} dnat-{b} ct status dnat ip saddr {cidr} masquerade\n\
             add element {t} bridges {{ \"{b}\" }}\n\
             add element {t} fwd_in {{ \"{b}\" : jump in-{b} }}\n\
             add element {t} fwd_out {{ \"{b}\" : jump out-{b} }}\n\
             add element {t} nat_src {{ \"{b}\" : jump snat-{b} }}\n\
             add element {t} nat_dst {{ \"{b}\" : jump dnat-{b} }}\n"
        ));
        self.apply(&s)?;
        // Last: a bridge with route_localnet on has its rules (see [`Firewall::has_network`]).
        write_sysctl(&format!("net.ipv4.conf.{}.route_localnet", n.bridge), "1")
    }

    /// Whether the bridge's rules were added since the bridge was made, without asking
    /// nftables: [`Firewall::add_network`] turns the bridge's `route_localnet` on as its last
    /// step, and a new bridge has it off.
    pub fn has_network(bridge: &str) -> bool {
        check_name("bridge name", bridge, 15).is_ok()
            && std::fs::read(format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"))
                .is_ok_and(|v| v.trim_ascii() == b"1")
    }

    /// Removes a network's rules (what of them is there: this is also the sweep after a
    /// crash); with the last network, the table goes and the sysctls are put back.
    pub fn remove_network(&self, bridge: &str) -> Result<()> {
        check_name("bridge name", bridge, 15)?;
        let _lock = self.lock()?;
        let t = format!("ip {}", self.table);
        let Some(table) = self.list(&["table", "ip", &self.table])? else {
            return self.restore_sysctls();
        };
        let items = table["nftables"].as_array().cloned().unwrap_or_default();
        let mut bridges = Vec::new();
        let mut vmaps: Vec<String> = Vec::new();
        let mut chains = Vec::new();
        for it in &items {
            if let Some(set) = it.get("set") {
                if set["name"] == "bridges" {
                    for e in set["elem"].as_array().into_iter().flatten() {
                        if let Some(s) = e.as_str() {
                            bridges.push(s.to_string());
                        }
                    }
                }
            }
            if let Some(map) = it.get("map") {
                let name = map["name"].as_str().unwrap_or_default();
                for e in map["elem"].as_array().into_iter().flatten() {
                    if e[0].as_str() == Some(bridge) {
                        vmaps.push(name.to_string());
                    }
                }
            }
            if let Some(ch) = it.get("chain") {
                let name = ch["name"].as_str().unwrap_or_default();
                if let Some((_, b)) = name.split_once('-') {
                    if b == bridge {
                        chains.push(name.to_string());
                    }
                }
            }
        }
        let others = bridges.iter().filter(|b| *b != bridge).count();
        if others == 0 {
            // The last network: the whole table goes (published ports left by containers
            // of this network go with it), and forwarding is put back as it was.
            self.apply(&format!("delete table {t}\n"))?;
            return self.restore_sysctls();
        }
        let mut s = String::new();
        if bridges.iter().any(|b| b == bridge) {
            s.push_str(&format!("delete element {t} bridges {{ \"{bridge}\" }}\n"));
        }
        for m in &vmaps {
            s.push_str(&format!("delete element {t} {m} {{ \"{bridge}\" }}\n"));
        }
        for c in &chains {
            s.push_str(&format!("delete chain {t} {c}\n"));
        }
        if s.is_empty() {
            return Ok(());
        }
        self.apply(&s)
    }

    /// The bridges berth's firewall knows.
    pub fn bridges(&self) -> Result<Vec<String>> {
        let Some(v) = self.list(&["set", "ip", &self.table, "bridges"])? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for it in v["nftables"].as_array().into_iter().flatten() {
            for e in it["set"]["elem"].as_array().into_iter().flatten() {
                if let Some(s) = e.as_str() {
                    out.push(s.to_string());
                }
            }
        }
        Ok(out)
    }

    /// Publishes a container's ports (IPv4 host addresses; 0.0.0.0 is every address) to
    /// `container_ip`, in one transaction. A host port another container publishes already
    /// is Docker's error; the host's own programs are found by [`crate::network::ports`]'s
    /// reservations, which the caller holds for the container's life.
    pub fn publish(
        &self,
        container: &str,
        container_ip: Ipv4Addr,
        bindings: &[PortBinding],
    ) -> Result<()> {
        check_name("container id", container, 128)?;
        if bindings.is_empty() {
            return Ok(());
        }
        // The check and the transaction under the lock: two berths publishing the same port
        // at once see each other. (Without it, the kernel would still refuse the second
        // element with another container's address: `add` takes an element again only with
        // the same value, as a restarted container's.)
        let _lock = self.lock()?;
        let mut taken = self.published()?;
        taken.extend(self.balanced()?);
        let t = format!("ip {}", self.table);
        let mut s = String::new();
        for b in bindings {
            let host_ip = match b.host_ip {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => bail!("publishing on an IPv6 address is not supported yet"),
            };
            if b.proto == Proto::Sctp {
                bail!("publishing SCTP ports is not supported yet");
            }
            // Its own elements are no clash: a restarted container publishes them again.
            let clash = taken.iter().any(|p| {
                p.container != container
                    && p.binding.proto == b.proto
                    && p.binding.host_port == b.host_port
                    && (p.binding.host_ip == b.host_ip
                        || p.binding.host_ip.is_unspecified()
                        || host_ip.is_unspecified())
            });
            if clash {
                bail!(
                    "Bind for {}:{} failed: port is already allocated",
                    host_ip,
                    b.host_port
                );
            }
            let (map, key) = if host_ip.is_unspecified() {
                ("pub_any", format!("{} . {}", b.proto, b.host_port))
            } else {
                (
                    "pub_addr",
                    format!("{} . {} . {}", b.proto, host_ip, b.host_port),
                )
            };
            s.push_str(&format!(
                "add element {t} {map} {{ {key} comment \"{container}\" : {container_ip} . {} }}\n",
                b.container_port
            ));
        }
        self.apply(&s)
    }

    /// Publishes a container's ports whose host ports the caller holds (bound sockets, see
    /// [`crate::network::ports::allocate`]): an element of the maps for the same host port
    /// is then stale by construction (left by a container whose monitor was killed, or by
    /// one whose exit is still being cleaned up, or the container's own from before a
    /// restart, with another address) and is replaced in the same transaction.
    pub fn publish_held(
        &self,
        container: &str,
        container_ip: Ipv4Addr,
        bindings: &[PortBinding],
    ) -> Result<()> {
        check_name("container id", container, 128)?;
        if bindings.is_empty() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let present = self.published()?;
        let t = format!("ip {}", self.table);
        let mut s = String::new();
        let mut gone: Vec<&Published> = Vec::new();
        let mut adds = String::new();
        for b in bindings {
            let host_ip = match b.host_ip {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => bail!("publishing on an IPv6 address is not supported yet"),
            };
            if b.proto == Proto::Sctp {
                bail!("publishing SCTP ports is not supported yet");
            }
            for p in &present {
                let same_key = p.binding.proto == b.proto
                    && p.binding.host_port == b.host_port
                    && (p.binding.host_ip == b.host_ip
                        || p.binding.host_ip.is_unspecified()
                        || host_ip.is_unspecified());
                let identical =
                    p.container == container && p.binding == *b && p.container_ip == container_ip;
                if same_key && !identical && !gone.contains(&p) {
                    gone.push(p);
                }
            }
            let (map, key) = if host_ip.is_unspecified() {
                ("pub_any", format!("{} . {}", b.proto, b.host_port))
            } else {
                (
                    "pub_addr",
                    format!("{} . {} . {}", b.proto, host_ip, b.host_port),
                )
            };
            adds.push_str(&format!(
                "add element {t} {map} {{ {key} comment \"{container}\" : {container_ip} . {} }}\n",
                b.container_port
            ));
        }
        for p in &gone {
            s.push_str(&delete_element(&t, &p.binding));
        }
        // The same for a balanced port's members: the caller holds the port alone.
        let stale: Vec<Published> = self
            .balanced()?
            .into_iter()
            .filter(|m| {
                bindings
                    .iter()
                    .any(|b| b.proto == m.binding.proto && b.host_port == m.binding.host_port)
            })
            .collect();
        s.push_str(&self.balance_script(&stale, &[]));
        s.push_str(&adds);
        self.apply(&s)
    }

    /// Adds a container to the balanced ports `bindings` (host ports on every address, which
    /// the caller holds shared with the port's other members: see
    /// [`crate::network::ports::reserve_shared`]): connections to the port are spread over
    /// the members at random, as kube-proxy spreads a Service's. Its elements from before (a
    /// restart with another address) and any other published port on the same host port
    /// (stale: the caller's reservation excludes a live one) are replaced in the same
    /// transaction.
    pub fn join_balanced(
        &self,
        container: &str,
        container_ip: Ipv4Addr,
        bindings: &[PortBinding],
    ) -> Result<()> {
        check_name("container id", container, 128)?;
        if bindings.is_empty() {
            return Ok(());
        }
        for b in bindings {
            if !b.host_ip.is_unspecified() || !b.host_ip.is_ipv4() {
                bail!(
                    "a balanced port is published on every IPv4 address (0.0.0.0), not on {}",
                    b.host_ip
                );
            }
            if b.proto == Proto::Sctp {
                bail!("publishing SCTP ports is not supported yet");
            }
        }
        let _lock = self.lock()?;
        let same_port = |p: &PortBinding| {
            bindings
                .iter()
                .any(|b| b.proto == p.proto && b.host_port == p.host_port)
        };
        let t = format!("ip {}", self.table);
        let mut s = String::new();
        for p in self.published()? {
            if same_port(&p.binding) {
                s.push_str(&delete_element(&t, &p.binding));
            }
        }
        let (mut gone, mut kept) = (Vec::new(), Vec::new());
        for m in self.balanced()? {
            let own_old = m.container == container && same_port(&m.binding);
            if own_old {
                gone.push(m);
            } else {
                kept.push(m);
            }
        }
        for b in bindings {
            kept.push(Published {
                container: container.to_string(),
                binding: *b,
                container_ip,
            });
        }
        kept.retain(|m| same_port(&m.binding));
        let adds: Vec<&Published> = kept.iter().filter(|m| m.container == container).collect();
        s.push_str(&self.balance_script(&gone, &kept));
        for m in &adds {
            s.push_str(&format!(
                "add element {t} lb_members {{ {} comment \"{}\" }}\n",
                member_key(m),
                m.container
            ));
        }
        self.apply(&s)
    }

    /// Every member of every balanced port.
    pub fn balanced(&self) -> Result<Vec<Published>> {
        let Some(v) = self.list(&["table", "ip", &self.table])? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for it in v["nftables"].as_array().into_iter().flatten() {
            if it["set"]["name"] == "lb_members" {
                for e in it["set"]["elem"].as_array().into_iter().flatten() {
                    out.extend(parse_member(e));
                }
            }
        }
        Ok(out)
    }

    /// The commands removing the members `gone` and writing again the chain of every port
    /// they or `kept` are on (`kept`: every member those ports have after): one DNAT over the port's members, or, with
    /// none left, no chain and no `pub_lb` element.
    fn balance_script(&self, gone: &[Published], kept: &[Published]) -> String {
        let t = format!("ip {}", self.table);
        let mut s = String::new();
        for m in gone {
            s.push_str(&format!(
                "delete element {t} lb_members {{ {} }}\n",
                member_key(m)
            ));
        }
        let mut ports: Vec<(Proto, u16)> = gone
            .iter()
            .chain(kept)
            .map(|m| (m.binding.proto, m.binding.host_port))
            .collect();
        ports.sort();
        ports.dedup();
        for (proto, port) in ports {
            let chain = format!("lb_{proto}_{port}");
            let mut members: Vec<&Published> = kept
                .iter()
                .filter(|m| m.binding.proto == proto && m.binding.host_port == port)
                .collect();
            // Both nft's add and its delete fail on what is (not) there: an add first makes
            // either one right whatever the table holds.
            s.push_str(&format!(
                "add chain {t} {chain}\nflush chain {t} {chain}\n\
                 add element {t} pub_lb {{ {proto} . {port} : jump {chain} }}\n"
            ));
            if members.is_empty() {
                s.push_str(&format!(
                    "delete element {t} pub_lb {{ {proto} . {port} }}\ndelete chain {t} {chain}\n"
                ));
                continue;
            }
            members.sort_by(|a, b| a.container.cmp(&b.container));
            let to: Vec<String> = members
                .iter()
                .enumerate()
                .map(|(i, m)| format!("{i} : {} . {}", m.container_ip, m.binding.container_port))
                .collect();
            s.push_str(&format!(
                "add rule {t} {chain} meta l4proto {proto} dnat ip to numgen random mod {} map {{ {} }}\n",
                members.len(),
                to.join(", ")
            ));
        }
        s
    }

    /// Every published port in the table, with the container it belongs to.
    pub fn published(&self) -> Result<Vec<Published>> {
        let mut out = Vec::new();
        let Some(v) = self.list(&["table", "ip", &self.table])? else {
            return Ok(out);
        };
        for it in v["nftables"].as_array().into_iter().flatten() {
            let map = &it["map"];
            if map["name"] == "pub_any" || map["name"] == "pub_addr" {
                for e in map["elem"].as_array().into_iter().flatten() {
                    if let Some(p) = parse_element(e) {
                        out.push(p);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Removes every port `container` publishes (its `rm`, its monitor's end, or the sweep
    /// after a SIGKILL); returns how many.
    pub fn unpublish(&self, container: &str) -> Result<usize> {
        check_name("container id", container, 128)?;
        self.unpublish_where(|c| c == container)
    }

    /// The repair's sweep: removes the ports of every container `live` does not accept (those
    /// whose monitor died without cleaning up); returns how many ports.
    pub fn retain(&self, live: impl Fn(&str) -> bool) -> Result<usize> {
        self.unpublish_where(|c| !live(c))
    }

    fn unpublish_where(&self, gone: impl Fn(&str) -> bool) -> Result<usize> {
        let _lock = self.lock()?;
        let t = format!("ip {}", self.table);
        let mine: Vec<Published> = self
            .published()?
            .into_iter()
            .filter(|p| gone(&p.container))
            .collect();
        let (left, mut kept): (Vec<Published>, Vec<Published>) = self
            .balanced()?
            .into_iter()
            .partition(|m| gone(&m.container));
        kept.retain(|k| {
            left.iter().any(|m| {
                m.binding.proto == k.binding.proto && m.binding.host_port == k.binding.host_port
            })
        });
        if mine.is_empty() && left.is_empty() {
            return Ok(0);
        }
        let mut s = String::new();
        for p in &mine {
            s.push_str(&delete_element(&t, &p.binding));
        }
        s.push_str(&self.balance_script(&left, &kept));
        self.apply(&s)?;
        Ok(mine.len() + left.len())
    }

    fn enable_forwarding(&self) -> Result<()> {
        let now = read_sysctl(IP_FORWARD)?;
        let rec = self.sysctl_record();
        if !rec.exists() {
            let v = serde_json::json!({ IP_FORWARD: now });
            write_atomic(&rec, &serde_json::to_vec(&v)?)?;
        }
        if now != "1" {
            write_sysctl(IP_FORWARD, "1")?;
        }
        Ok(())
    }

    fn restore_sysctls(&self) -> Result<()> {
        let rec = self.sysctl_record();
        let data = match std::fs::read(&rec) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).context("reading the recorded sysctls"),
        };
        let v: Value = serde_json::from_slice(&data).context("the recorded sysctls")?;
        for (k, val) in v.as_object().into_iter().flatten() {
            if let Some(val) = val.as_str() {
                if read_sysctl(k)? != val {
                    write_sysctl(k, val)?;
                }
            }
        }
        std::fs::remove_file(&rec).context("removing the recorded sysctls")?;
        Ok(())
    }
}

/// The command deleting a published port's element from table `t` (`ip NAME`).
fn delete_element(t: &str, b: &PortBinding) -> String {
    if b.host_ip.is_unspecified() {
        format!(
            "delete element {t} pub_any {{ {} . {} }}\n",
            b.proto, b.host_port
        )
    } else {
        format!(
            "delete element {t} pub_addr {{ {} . {} . {} }}\n",
            b.proto, b.host_ip, b.host_port
        )
    }
}

/// A balanced port's member as an element of `lb_members`.
fn member_key(m: &Published) -> String {
    format!(
        "{} . {} . {} . {}",
        m.binding.proto, m.binding.host_port, m.container_ip, m.binding.container_port
    )
}

fn parse_proto(v: &Value) -> Option<Proto> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => match n.as_u64()? {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            132 => Some(Proto::Sctp),
            _ => None,
        },
        _ => None,
    }
}

/// One element of `lb_members` as nft's JSON writes it:
/// `{"elem": {"val": {"concat": ["tcp", 30080, "10.0.0.2", 80]}, "comment": "ID"}}`.
fn parse_member(e: &Value) -> Option<Published> {
    let key = &e["elem"];
    let k = key["val"]["concat"].as_array()?;
    Some(Published {
        container: key["comment"].as_str()?.to_string(),
        binding: PortBinding {
            proto: parse_proto(k.first()?)?,
            host_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            host_port: k.get(1)?.as_u64()? as u16,
            container_port: k.get(3)?.as_u64()? as u16,
        },
        container_ip: k.get(2)?.as_str()?.parse().ok()?,
    })
}

/// One element of `pub_any`/`pub_addr` as nft's JSON writes it:
/// `[{"elem": {"val": {"concat": ["tcp", 8080]}, "comment": "ID"}}, {"concat": ["10.0.0.2", 80]}]`.
fn parse_element(e: &Value) -> Option<Published> {
    let key = &e[0]["elem"];
    let container = key["comment"].as_str()?.to_string();
    let k = key["val"]["concat"].as_array()?;
    let v = e[1]["concat"].as_array()?;
    let proto = parse_proto(&k[0])?;
    let (host_ip, host_port) = if k.len() == 3 {
        (k[1].as_str()?.parse().ok()?, k[2].as_u64()? as u16)
    } else {
        (IpAddr::V4(Ipv4Addr::UNSPECIFIED), k[1].as_u64()? as u16)
    };
    Some(Published {
        container,
        binding: PortBinding {
            container_port: v[1].as_u64()? as u16,
            proto,
            host_ip,
            host_port,
        },
        container_ip: v[0].as_str()?.parse().ok()?,
    })
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Reads a sysctl (`net.ipv4.ip_forward`).
pub fn read_sysctl(key: &str) -> Result<String> {
    let p = sysctl_path(key);
    Ok(std::fs::read_to_string(&p)
        .with_context(|| format!("cannot read {}", p.display()))?
        .trim()
        .to_string())
}

fn write_sysctl(key: &str, value: &str) -> Result<()> {
    // An interface's name may hold dots: only the prefix's dots are separators.
    let p = match key.strip_prefix("net.ipv4.conf.") {
        Some(rest) => match rest.rsplit_once('.') {
            Some((dev, k)) => Path::new("/proc/sys/net/ipv4/conf").join(dev).join(k),
            None => sysctl_path(key),
        },
        None => sysctl_path(key),
    };
    std::fs::write(&p, value).with_context(|| format!("cannot set {}", p.display()))
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_from_json() {
        let e: Value = serde_json::from_str(
            r#"[{"elem": {"val": {"concat": ["udp", "127.0.0.1", 5353]}, "comment": "c1"}},
                {"concat": ["10.99.0.2", 53]}]"#,
        )
        .unwrap();
        let p = parse_element(&e).unwrap();
        assert_eq!(p.container, "c1");
        assert_eq!(p.binding.proto, Proto::Udp);
        assert_eq!(p.binding.host_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((p.binding.host_port, p.binding.container_port), (5353, 53));
        assert_eq!(p.container_ip, Ipv4Addr::new(10, 99, 0, 2));
        let m: Value = serde_json::from_str(
            r#"{"elem": {"val": {"concat": ["tcp", 30080, "10.99.0.3", 80]}, "comment": "c2"}}"#,
        )
        .unwrap();
        let m = parse_member(&m).unwrap();
        assert_eq!((m.container.as_str(), m.binding.host_port), ("c2", 30080));
        assert_eq!(m.binding.container_port, 80);
        assert_eq!(m.container_ip, Ipv4Addr::new(10, 99, 0, 3));
        assert_eq!(member_key(&m), "tcp . 30080 . 10.99.0.3 . 80");
        assert!(check_name("bridge name", "br0; flush ruleset", 15).is_err());
        assert!(check_name("bridge name", "berth0", 15).is_ok());
    }
}
