//! Network records and address leases under the data root.
//!
//! `DATA_ROOT/networks/NAME.json` holds a network as Docker's `network inspect` shows it (the
//! bridge's name in its options); `DATA_ROOT/networks/NAME.leases/IP` is one address given to one
//! container's endpoint, naming the host end of its veth pair. Both are written before the
//! object they name is made (the bridge on first use, the veth pair on attach), so a sweep after
//! any crash finds everything berth made. Changes to the set of networks hold an exclusive
//! `flock` of `networks/.lock`; a lease is written whole to a file of its own and linked under its
//! address (link(2) fails if the name exists), so two starting containers cannot both take one
//! address and no reader sees a lease half written.

use super::netlink::Netlink;
use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The default network's name and bridge.
pub const DEFAULT_NETWORK: &str = "berth";
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The option naming a network's bridge, as Docker's.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// An IPv4 subnet: its network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Result<Subnet> {
        let (a, p) = s
            .split_once('/')
            .with_context(|| format!("invalid subnet {s}: no prefix length"))?;
        let addr: Ipv4Addr = a
            .parse()
            .with_context(|| format!("invalid subnet {s}: not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .with_context(|| format!("invalid subnet {s}: bad prefix length"))?;
        Ok(Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    pub fn first(&self) -> u32 {
        u32::from(self.addr)
    }

    pub fn last(&self) -> u32 {
        self.first() | !mask(self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.first()
    }

    pub fn overlaps(&self, o: &Subnet) -> bool {
        self.first() <= o.last() && o.first() <= self.last()
    }

    /// The addresses a host may have: not the network's, not the broadcast.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let (a, b) = if self.prefix >= 31 {
            (self.first(), self.last())
        } else {
            (self.first() + 1, self.last() - 1)
        };
        (a..=b).map(Ipv4Addr::from)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    pub subnet: String,
    #[serde(rename = "IPRange", default, skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    pub driver: String,
    /// `null` for the default network, as Docker's default bridge has it.
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    pub config: Vec<IpamConfig>,
}

/// A network, as Docker's `network inspect` has it (less `Containers`, which comes from the
/// leases).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl Network {
    pub fn bridge(&self) -> &str {
        self.options
            .get(BRIDGE_NAME_OPTION)
            .map(String::as_str)
            .unwrap_or(DEFAULT_BRIDGE)
    }

    pub fn subnet(&self) -> Result<Subnet> {
        let c = self
            .ipam
            .config
            .first()
            .with_context(|| format!("network {} has no subnet", self.name))?;
        Subnet::parse(&c.subnet)
    }

    pub fn gateway(&self) -> Result<Ipv4Addr> {
        let c = self
            .ipam
            .config
            .first()
            .with_context(|| format!("network {} has no subnet", self.name))?;
        c.gateway
            .parse()
            .with_context(|| format!("network {}: bad gateway {}", self.name, c.gateway))
    }

    /// Where leases are taken from: `--ip-range`, or the whole subnet.
    pub fn range(&self) -> Result<Subnet> {
        match self.ipam.config.first() {
            Some(c) if !c.ip_range.is_empty() => Subnet::parse(&c.ip_range),
            _ => self.subnet(),
        }
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: String,
    pub driver: Option<String>,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// One container's endpoint on a network, recorded before its veth pair is made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Lease {
    pub network: String,
    pub container: String,
    #[serde(rename = "IPv4Address")]
    pub ip: Ipv4Addr,
    pub mac_address: String,
    /// The host end of the veth pair (Docker's `vethXXXXXXX`).
    pub host_veth: String,
    /// The container's end, in its namespace (`eth0`).
    pub interface: String,
    /// What other containers of the network resolve it by (Docker's `DNSNames`: its name,
    /// network aliases and short id); none on the default network.
    #[serde(rename = "DNSNames", default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// Where the subnets of new networks come from (Docker's `default-address-pools`): `base` cut
/// into subnets of `size` bits. The first free one that overlaps no route of the host and no
/// other network is taken.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Pool {
    pub base: String,
    pub size: u8,
}

/// The pools when the data root's `network-config.json` names none: 10.89.0.0/16 up to
/// 10.127.0.0/16 (clear of Docker's 172.17-31 and podman's 10.88.0.0/16).
pub fn default_pools() -> Vec<Pool> {
    vec![Pool {
        base: "10.89.0.0/16".into(),
        size: 16,
    }]
    .into_iter()
    .chain((90..=127).map(|b| Pool {
        base: format!("10.{b}.0.0/16"),
        size: 16,
    }))
    .collect()
}

/// `DATA_ROOT/network-config.json`: `{"default-address-pools": [{"base": CIDR, "size": N}],
/// "bip": CIDR, "bridge": NAME}` (Docker's daemon.json keys): the pools of new networks and,
/// with `bip`, the default network's gateway address and subnet, with `bridge` its bridge.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct NetworkConfig {
    #[serde(rename = "default-address-pools", default)]
    pub pools: Vec<Pool>,
    #[serde(default)]
    pub bip: Option<String>,
    /// The default network's bridge (`berth0` when unset).
    #[serde(default)]
    pub bridge: Option<String>,
    /// berth's own key: the resolv.conf whose name servers containers get (and their
    /// resolvers forward to); by default the host's, as Docker chooses it.
    #[serde(rename = "resolv-conf", default)]
    pub resolv_conf: Option<PathBuf>,
}

pub struct Store {
    dir: PathBuf,
    config: NetworkConfig,
}

impl Store {
    /// The networks of a data root; makes the directory.
    pub fn open(data_root: &Path) -> Result<Store> {
        let dir = data_root.join("networks");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let cfg = data_root.join("network-config.json");
        let config = match fs::read(&cfg) {
            Ok(b) => {
                serde_json::from_slice(&b).with_context(|| format!("corrupt {}", cfg.display()))?
            }
            Err(e) if e.kind() == ErrorKind::NotFound => NetworkConfig::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", cfg.display())),
        };
        Ok(Store { dir, config })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data root's `network-config.json`.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// An exclusive lock on the set of networks, held while it lives.
    pub fn lock(&self) -> Result<Flock<fs::File>> {
        self.lock_as(FlockArg::LockExclusive)
    }

    /// A shared lock on the set of networks: attaches hold it, so that no network is removed
    /// under them (attaches do not wait for each other).
    pub fn lock_shared(&self) -> Result<Flock<fs::File>> {
        self.lock_as(FlockArg::LockShared)
    }

    fn lock_as(&self, how: FlockArg) -> Result<Flock<fs::File>> {
        crate::runtime::fsutil::lock_file(&self.dir.join(".lock"), how)
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn leases_dir(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.leases"))
    }

    /// Every network, by name.
    pub fn list(&self) -> Result<Vec<Network>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read {}", self.dir.display()))?
        {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_suffix(".json") {
                if !n.starts_with('.') {
                    out.push(self.read(n)?);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn read(&self, name: &str) -> Result<Network> {
        crate::engine::record::read_json(&self.record_path(name))
    }

    /// A network by name, full id or a unique prefix of its id (Docker's lookup order).
    pub fn get(&self, arg: &str) -> Result<Network> {
        if super::valid_network_name(arg) && self.record_path(arg).exists() {
            return self.read(arg);
        }
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.id == arg) {
            return Ok(n.clone());
        }
        let matches: Vec<&Network> = all.iter().filter(|n| n.id.starts_with(arg)).collect();
        match matches.as_slice() {
            [one] if !arg.is_empty() => Ok((*one).clone()),
            [] | [_] => bail!("network {arg} not found"),
            _ => bail!(
                "network {arg} is ambiguous ({} matches found based on ID prefix)",
                matches.len()
            ),
        }
    }

    /// Records a new network; its bridge is made when the first container joins it.
    pub fn create(&self, opts: &CreateOptions) -> Result<Network> {
        let _lock = self.lock()?;
        self.create_locked(opts)
    }

    fn create_locked(&self, opts: &CreateOptions) -> Result<Network> {
        if !super::valid_network_name(&opts.name) {
            bail!("invalid network name {:?}", opts.name);
        }
        if self.record_path(&opts.name).exists() {
            bail!("network with name {} already exists", opts.name);
        }
        match opts.driver.as_deref() {
            None | Some("bridge") => {}
            Some(d) => bail!("plugin \"{d}\" not found (berth has the bridge driver only)"),
        }
        let others = self.list()?;
        let id = new_id()?;
        let mut options = opts.options.clone();
        let bridge = match options.get(BRIDGE_NAME_OPTION) {
            Some(b) => b.clone(),
            None if opts.name == DEFAULT_NETWORK => self
                .config
                .bridge
                .clone()
                .unwrap_or_else(|| DEFAULT_BRIDGE.to_string()),
            None => format!("br-{}", &id[..12]),
        };
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            bail!("invalid bridge name {bridge:?}");
        }
        if let Some(o) = others.iter().find(|n| n.bridge() == bridge) {
            bail!("bridge name {bridge} is already used by network {}", o.name);
        }
        // A link of that name that berth did not make (another engine's bridge, the host's)
        // is not taken over: `network rm` deletes the bridge, and must delete only its own.
        if Netlink::open()?.link(&bridge)?.is_some() {
            bail!("bridge name {bridge} is already in use on the host");
        }
        options.insert(BRIDGE_NAME_OPTION.into(), bridge);
        if opts.name == DEFAULT_NETWORK {
            // What Docker's default bridge says of itself, all true of berth's: containers on
            // it reach each other, leave through NAT, publish on 0.0.0.0, with Docker's MTU.
            for (k, v) in [
                ("com.docker.network.bridge.default_bridge", "true"),
                ("com.docker.network.bridge.enable_icc", "true"),
                ("com.docker.network.bridge.enable_ip_masquerade", "true"),
                ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
                (super::attach::MTU_OPTION, "1500"),
            ] {
                options.entry(k.into()).or_insert_with(|| v.into());
            }
        }

        let taken: Vec<Subnet> = others.iter().filter_map(|n| n.subnet().ok()).collect();
        let subnet = match &opts.subnet {
            Some(s) => {
                let s = Subnet::parse(s)?;
                if s.prefix > 30 {
                    bail!("subnet {s} is too small for a network");
                }
                if let Some(o) = others
                    .iter()
                    .find(|n| n.subnet().map(|t| t.overlaps(&s)).unwrap_or(false))
                {
                    bail!(
                        "Pool overlaps with other one on this address space (network {})",
                        o.name
                    );
                }
                s
            }
            None => {
                if opts.gateway.is_some() || opts.ip_range.is_some() {
                    bail!("--gateway and --ip-range need --subnet");
                }
                let host = host_subnets()?;
                let bip = (opts.name == DEFAULT_NETWORK)
                    .then(|| self.config.bip.clone())
                    .flatten();
                match bip {
                    Some(b) => Subnet::parse(&b)?,
                    None => self.free_subnet(&taken, &host)?,
                }
            }
        };
        let gateway = match &opts.gateway {
            Some(g) => {
                let g: Ipv4Addr = g.parse().with_context(|| format!("invalid gateway {g}"))?;
                if !subnet.contains(g) {
                    bail!("no matching subnet for gateway {g}");
                }
                g
            }
            None => match (opts.name == DEFAULT_NETWORK)
                .then(|| self.config.bip.clone())
                .flatten()
            {
                Some(b) => b.split('/').next().unwrap_or_default().parse()?,
                None => subnet
                    .hosts()
                    .next()
                    .context("subnet has no host address")?,
            },
        };
        let ip_range = match &opts.ip_range {
            Some(r) => {
                let r = Subnet::parse(r)?;
                if !(subnet.contains(r.addr) && r.prefix >= subnet.prefix) {
                    bail!("ip-range {r} is not in subnet {subnet}");
                }
                r.to_string()
            }
            None => String::new(),
        };
        let net = Network {
            name: opts.name.clone(),
            id,
            created: crate::image::time::now_rfc3339_nanos(),
            scope: "local".into(),
            driver: "bridge".into(),
            enable_ipv6: false,
            ipam: Ipam {
                driver: "default".into(),
                options: (opts.name != DEFAULT_NETWORK).then(BTreeMap::new),
                config: vec![IpamConfig {
                    subnet: subnet.to_string(),
                    ip_range,
                    gateway: gateway.to_string(),
                }],
            },
            internal: opts.internal,
            attachable: opts.attachable,
            ingress: false,
            options,
            labels: opts.labels.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&net)?;
        crate::runtime::fsutil::write_atomically(&self.record_path(&net.name), &bytes)?;
        Ok(net)
    }

    /// The default network, recorded on first use.
    pub fn default_network(&self) -> Result<Network> {
        if self.record_path(DEFAULT_NETWORK).exists() {
            return self.read(DEFAULT_NETWORK);
        }
        let _lock = self.lock()?;
        if self.record_path(DEFAULT_NETWORK).exists() {
            return self.read(DEFAULT_NETWORK);
        }
        self.create_locked(&CreateOptions {
            name: DEFAULT_NETWORK.into(),
            ..Default::default()
        })
    }

    fn free_subnet(&self, taken: &[Subnet], host: &[Subnet]) -> Result<Subnet> {
        let pools = if self.config.pools.is_empty() {
            default_pools()
        } else {
            self.config.pools.clone()
        };
        for p in &pools {
            let base = Subnet::parse(&p.base)?;
            if p.size < base.prefix || p.size > 30 {
                bail!("address pool {}: size {} does not fit", p.base, p.size);
            }
            let step = 1u64 << (32 - p.size);
            let mut a = base.first() as u64;
            while a <= base.last() as u64 {
                let s = Subnet {
                    addr: Ipv4Addr::from(a as u32),
                    prefix: p.size,
                };
                if !taken.iter().chain(host).any(|t| t.overlaps(&s)) {
                    return Ok(s);
                }
                a += step;
            }
        }
        bail!("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")
    }

    /// Removes a network: refused while a container has an address on it; its bridge goes
    /// first, then its record.
    pub fn remove(&self, arg: &str) -> Result<Network> {
        let _lock = self.lock()?;
        let net = self.get(arg)?;
        let leases = self.leases(&net.name)?;
        if let Some(l) = leases.first() {
            bail!(
                "error while removing network: network {} id {} has active endpoints (container {})",
                net.name,
                net.id,
                crate::engine::record::short_id(&l.container)
            );
        }
        let mut nl = Netlink::open()?;
        nl.del_link(net.bridge())?;
        let _ = fs::remove_dir_all(self.leases_dir(&net.name));
        fs::remove_file(self.record_path(&net.name))
            .with_context(|| format!("cannot remove the record of network {}", net.name))?;
        Ok(net)
    }

    /// The leases of a network.
    pub fn leases(&self, name: &str) -> Result<Vec<Lease>> {
        let dir = self.leases_dir(name);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        let mut out: Vec<Lease> = Vec::new();
        for e in rd {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let mut s = String::new();
            fs::File::open(e.path())?.read_to_string(&mut s)?;
            out.push(
                serde_json::from_str(&s)
                    .with_context(|| format!("corrupt lease {}", e.path().display()))?,
            );
        }
        out.sort_by_key(|l| u32::from(l.ip));
        Ok(out)
    }

    /// Takes an address on `net` for a container's endpoint: `want` (`--ip`) or the first free
    /// one of the network's range, never the gateway. The lease names the veth that is about to
    /// be made, so it is on disk before the veth is.
    pub fn lease(
        &self,
        net: &Network,
        container: &str,
        want: Option<Ipv4Addr>,
        mac: Option<[u8; 6]>,
        interface: &str,
    ) -> Result<Lease> {
        self.lease_named(net, container, want, mac, interface, &[])
    }

    /// [`Store::lease`], the lease naming the endpoint's DNS names (what the resolvers of
    /// the network's containers answer, for as long as the lease exists).
    pub fn lease_named(
        &self,
        net: &Network,
        container: &str,
        want: Option<Ipv4Addr>,
        mac: Option<[u8; 6]>,
        interface: &str,
        names: &[String],
    ) -> Result<Lease> {
        let subnet = net.subnet()?;
        let gateway = net.gateway()?;
        let dir = self.leases_dir(&net.name);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let host_veth = veth_name()?;
        // The lease is written whole to a file of its own, then linked under its address:
        // link(2) fails when the name exists, so of two takers of one address one wins, and no
        // reader ever sees a lease half written.
        let tmp = dir.join(format!(".{host_veth}"));
        let try_take = |ip: Ipv4Addr| -> Result<Option<Lease>> {
            let target = dir.join(ip.to_string());
            if target.exists() {
                return Ok(None);
            }
            let mac = mac.unwrap_or_else(|| mac_of(ip));
            let lease = Lease {
                network: net.name.clone(),
                container: container.into(),
                ip,
                mac_address: super::netlink::format_mac(&mac),
                host_veth: host_veth.clone(),
                interface: interface.into(),
                names: names.to_vec(),
            };
            fs::write(&tmp, serde_json::to_vec(&lease)?)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            let r = fs::hard_link(&tmp, &target);
            let _ = fs::remove_file(&tmp);
            match r {
                Ok(()) => Ok(Some(lease)),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(None),
                Err(e) => {
                    Err(e).with_context(|| format!("cannot record a lease in {}", dir.display()))
                }
            }
        };
        match want {
            Some(ip) => {
                if !subnet.contains(ip) || ip == gateway || subnet.hosts().all(|h| h != ip) {
                    bail!(
                        "invalid address {ip}: it does not belong to any of this network's subnets"
                    );
                }
                match try_take(ip)? {
                    Some(l) => Ok(l),
                    None => bail!("Address already in use: {ip} on network {}", net.name),
                }
            }
            None => {
                for ip in net
                    .range()?
                    .hosts()
                    .filter(|ip| *ip != gateway && subnet.contains(*ip))
                {
                    if let Some(l) = try_take(ip)? {
                        return Ok(l);
                    }
                }
                bail!("no available IPv4 addresses on network {}", net.name)
            }
        }
    }

    /// Gives a lease's address back.
    /// Gives back every lease of `container`, on every network, in one pass over the leases:
    /// also the lease files a taker killed between writing and linking left (`.VETH`, never
    /// read as leases).
    pub fn release_container(&self, container: &str) -> Result<()> {
        for net in self.list()? {
            let dir = self.leases_dir(&net.name);
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
            };
            for e in rd {
                let p = e?.path();
                let mine = fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Lease>(&b).ok())
                    .is_some_and(|l| l.container == container);
                if mine {
                    match fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("cannot release {}", p.display()))
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub fn release(&self, network: &str, ip: Ipv4Addr) -> Result<()> {
        match fs::remove_file(self.leases_dir(network).join(ip.to_string())) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot release {ip} on network {network}")),
        }
    }

    /// Removes what berth made for endpoints whose container is gone (`alive` says which are
    /// not): the host end of the veth pair (its peer goes with it) and the lease. Returns the
    /// leases swept.
    pub fn sweep(&self, alive: impl Fn(&str) -> bool) -> Result<Vec<Lease>> {
        let mut swept = Vec::new();
        let mut nl = None;
        for net in self.list()? {
            for l in self.leases(&net.name)? {
                if alive(&l.container) {
                    continue;
                }
                if nl.is_none() {
                    nl = Some(Netlink::open()?);
                }
                if let Some(nl) = nl.as_mut() {
                    nl.del_link(&l.host_veth)?;
                }
                self.release(&net.name, l.ip)?;
                swept.push(l);
            }
        }
        Ok(swept)
    }
}

/// Docker's MAC for an address: 02:42 and the address's four bytes.
pub fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("cannot read /dev/urandom")?;
    Ok(b)
}

/// A network id: 64 hex digits.
pub fn new_id() -> Result<String> {
    Ok(random_bytes::<32>()?
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect())
}

/// Docker's host-side veth name: `veth` and 7 hex digits.
pub fn veth_name() -> Result<String> {
    let b = random_bytes::<4>()?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("veth{}", &hex[..7]))
}

/// The subnets the host already routes (its own networks and other engines'), which a new
/// network must not overlap. The default route is not one of them.
pub fn host_subnets() -> Result<Vec<Subnet>> {
    let mut nl = Netlink::open()?;
    Ok(nl
        .routes()?
        .into_iter()
        .filter(|r| r.prefix > 0)
        .map(|r| Subnet {
            addr: r.destination,
            prefix: r.prefix,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let s = Subnet::parse("10.89.3.7/16").unwrap();
        assert_eq!(s.to_string(), "10.89.0.0/16");
        assert!(s.contains("10.89.255.1".parse().unwrap()));
        assert!(!s.contains("10.90.0.1".parse().unwrap()));
        assert!(s.overlaps(&Subnet::parse("10.0.0.0/8").unwrap()));
        assert!(!s.overlaps(&Subnet::parse("10.90.0.0/24").unwrap()));
        let h: Vec<_> = Subnet::parse("192.168.5.0/30").unwrap().hosts().collect();
        assert_eq!(
            h,
            vec![Ipv4Addr::new(192, 168, 5, 1), Ipv4Addr::new(192, 168, 5, 2)]
        );
        assert!(Subnet::parse("10.0.0.0/33").is_err());
        assert!(Subnet::parse("10.0.0.0").is_err());
    }

    #[test]
    fn subnets_from_the_pools_avoid_the_host_and_other_networks() {
        let dir = std::env::temp_dir().join(format!("berth-store-pools-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("network-config.json"),
            r#"{"default-address-pools": [{"base": "10.50.0.0/22", "size": 24}]}"#,
        )
        .unwrap();
        let st = Store::open(&dir).unwrap();
        let taken = [Subnet::parse("10.50.0.0/24").unwrap()];
        let host = [Subnet::parse("10.50.1.128/25").unwrap()];
        assert_eq!(
            st.free_subnet(&taken, &host).unwrap().to_string(),
            "10.50.2.0/24"
        );
        let all = [Subnet::parse("10.50.0.0/22").unwrap()];
        let e = st.free_subnet(&all, &[]).unwrap_err().to_string();
        assert!(e.contains("non-overlapping"), "{e}");
        // The defaults are clear of Docker's and podman's.
        let first = Subnet::parse(&default_pools()[0].base).unwrap();
        for other in ["172.17.0.0/16", "10.88.0.0/16", "192.168.0.0/16"] {
            assert!(!first.overlaps(&Subnet::parse(other).unwrap()), "{other}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn docker_mac_and_names() {
        assert_eq!(
            mac_of(Ipv4Addr::new(172, 17, 0, 2)),
            [2, 0x42, 172, 17, 0, 2]
        );
        let v = veth_name().unwrap();
        assert_eq!(v.len(), 11);
        assert!(v.starts_with("veth"));
        assert_eq!(new_id().unwrap().len(), 64);
    }
}
