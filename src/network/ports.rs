//! Published ports as Docker writes them: `-p [IP:][HOSTPORT:]CPORT[/PROTO]` with ranges,
//! `-P` (every exposed port to a free host port), the PORTS column of `ps`
//! (`0.0.0.0:8080->80/tcp, :::8080->80/tcp`) and the output of `port`.
//!
//! A host port is held by a bound socket (a [`Reservation`]) for as long as the container
//! publishes it, as Podman's conmon and Docker's proxy do: this is how a port already taken,
//! by a host program or by another container, is found and refused, with Docker's words.

use anyhow::{bail, Context, Result};
use nix::sys::socket::SockaddrIn6;
use nix::sys::socket::{bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::OwnedFd;
use std::str::FromStr;

/// A transport protocol a port is published for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" | "" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => bail!("invalid proto: {s}"),
        }
    }
}

/// An inclusive range of ports; a single port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn single(p: u16) -> Self {
        PortRange { start: p, end: p }
    }
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    fn parse(s: &str, what: &str) -> Result<Self> {
        let port = |p: &str| -> Result<u16> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("invalid {what}: {s}"),
            }
        };
        let r = match s.split_once('-') {
            Some((a, b)) => PortRange {
                start: port(a)?,
                end: port(b)?,
            },
            None => PortRange::single(port(s)?),
        };
        if r.end < r.start {
            bail!("invalid range specified for {what}: {s}");
        }
        Ok(r)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One `-p` argument, as written: host address and ports optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSpec {
    pub host_ip: Option<IpAddr>,
    pub host_ports: Option<PortRange>,
    pub container_ports: PortRange,
    pub proto: Proto,
}

/// Parses `-p`/`--publish` as Docker does: `CPORT`, `HPORT:CPORT`, `IP:HPORT:CPORT`,
/// `IP::CPORT`, `[V6]:HPORT:CPORT`, each port a number or a range, `/tcp`, `/udp` or `/sctp`.
pub fn parse_publish(arg: &str) -> Result<PublishSpec> {
    let (rest, proto) = match arg.rsplit_once('/') {
        Some((r, p)) => (r, p.parse::<Proto>()?),
        None => (arg, Proto::Tcp),
    };
    // The container port is after the last colon; what is before is [IP:]HOSTPORT.
    let (front, cport) = match rest.rsplit_once(':') {
        Some((f, c)) => (Some(f), c),
        None => (None, rest),
    };
    if cport.is_empty() {
        bail!("no port specified: {arg}<empty>");
    }
    let container_ports = PortRange::parse(cport, "containerPort")?;
    let (host_ip, host_ports) = match front {
        None => (None, None),
        Some(front) => {
            let (ip, hport) = match front.rsplit_once(':') {
                // A bare IPv6 address without brackets has colons of its own: Docker wants
                // brackets around it, and so do we.
                Some((ip, h)) if !ip.contains(':') || ip.starts_with('[') => (Some(ip), h),
                Some(_) => bail!("invalid IP address: {front}"),
                None => (None, front),
            };
            let ip = match ip {
                None | Some("") => None,
                Some(ip) => {
                    let bare = ip
                        .strip_prefix('[')
                        .and_then(|i| i.strip_suffix(']'))
                        .unwrap_or(ip);
                    Some(
                        bare.parse::<IpAddr>()
                            .map_err(|_| anyhow::anyhow!("invalid IP address: {ip}"))?,
                    )
                }
            };
            let hp = if hport.is_empty() {
                None
            } else {
                Some(PortRange::parse(hport, "hostPort")?)
            };
            (ip, hp)
        }
    };
    if let Some(h) = host_ports {
        // Docker: a host range for one container port is a choice among them; otherwise the
        // two ranges are paired port by port and must be as long.
        if container_ports.len() > 1 && h.len() != container_ports.len() {
            bail!(
                "invalid ranges specified for container and host Ports: {container_ports} and {h}"
            );
        }
    }
    Ok(PublishSpec {
        host_ip,
        host_ports,
        container_ports,
        proto,
    })
}

/// One published port: what `port` prints on one line.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub container_port: u16,
    pub proto: Proto,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

/// A host port held for a published port: a bound socket, never listened on nor read. Dropping
/// it frees the port.
#[derive(Debug)]
pub struct Reservation {
    pub binding: PortBinding,
    pub fd: OwnedFd,
}

fn sock_type(p: Proto) -> SockType {
    match p {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
        Proto::Sctp => SockType::SeqPacket,
    }
}

/// Binds `ip:port` (port 0: the kernel's choice among its ephemeral ports, as Docker's `-P`
/// gets from the same range) for `proto`; the error is Docker's when the port is taken.
pub fn reserve(ip: IpAddr, port: u16, proto: Proto) -> Result<(u16, OwnedFd)> {
    reserve_as(ip, port, proto, false)
}

/// Binds `ip:port` with `SO_REUSEPORT`: held together by the members of a balanced port (the
/// pods behind a Service's NodePort, each monitor holding its own socket), and refused, as
/// with [`reserve`], when a program or an ordinary published port has it.
pub fn reserve_shared(ip: IpAddr, port: u16, proto: Proto) -> Result<OwnedFd> {
    if port == 0 {
        bail!("a balanced port needs its host port");
    }
    reserve_as(ip, port, proto, true).map(|(_, fd)| fd)
}

fn reserve_as(ip: IpAddr, port: u16, proto: Proto, shared: bool) -> Result<(u16, OwnedFd)> {
    let (family, proto_num) = (
        if ip.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        },
        match proto {
            Proto::Sctp => Some(nix::sys::socket::SockProtocol::Sctp),
            _ => None,
        },
    );
    let fd = socket(family, sock_type(proto), SockFlag::SOCK_CLOEXEC, proto_num)
        .with_context(|| format!("cannot open a {proto} socket"))?;
    if shared {
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReusePort, &true)
            .context("SO_REUSEPORT")?;
    }
    let res = match ip {
        IpAddr::V4(v4) => bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::from(SocketAddrV4::new(v4, port)),
        ),
        IpAddr::V6(v6) => {
            // Only the IPv6 port: the IPv4 one is reserved on its own, as Docker does.
            nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::Ipv6V6Only, &true)
                .context("IPV6_V6ONLY")?;
            bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &SockaddrIn6::from(SocketAddrV6::new(v6, port, 0, 0)),
            )
        }
    };
    match res {
        Ok(()) => {}
        Err(nix::errno::Errno::EADDRINUSE) => bail!(
            "Bind for {}:{port} failed: port is already allocated",
            display_ip(ip)
        ),
        Err(e) => bail!("Bind for {}:{port} failed: {e}", display_ip(ip)),
    }
    let port = if port == 0 {
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        match ip {
            IpAddr::V4(_) => getsockname::<SockaddrIn>(raw)?.port(),
            IpAddr::V6(_) => getsockname::<SockaddrIn6>(raw)?.port(),
        }
    } else {
        port
    };
    Ok((port, fd))
}

/// Docker's way of writing an address in `port`'s output: IPv6 in brackets.
fn display_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Turns the `-p` specs and, with `-P`, the image's exposed ports into bindings, each with its
/// host port held. The host address defaults to `default_ip` (0.0.0.0). A host port range
/// for one container port takes the first free port in it; no host port takes a free one.
/// On error nothing stays held.
pub fn allocate(
    specs: &[PublishSpec],
    publish_all: bool,
    exposed: &[(u16, Proto)],
    default_ip: IpAddr,
) -> Result<Vec<Reservation>> {
    let mut out: Vec<Reservation> = Vec::new();
    let take = |out: &mut Vec<Reservation>,
                ip: IpAddr,
                port: u16,
                cport: u16,
                proto: Proto|
     -> Result<()> {
        let (port, fd) = reserve(ip, port, proto)?;
        out.push(Reservation {
            binding: PortBinding {
                container_port: cport,
                proto,
                host_ip: ip,
                host_port: port,
            },
            fd,
        });
        Ok(())
    };
    for s in specs {
        let ip = s.host_ip.unwrap_or(default_ip);
        match s.host_ports {
            None => {
                for c in s.container_ports.start..=s.container_ports.end {
                    take(&mut out, ip, 0, c, s.proto)?;
                }
            }
            Some(h) if s.container_ports.len() == 1 && h.len() > 1 => {
                let c = s.container_ports.start;
                let mut last = None;
                let mut done = false;
                for p in h.start..=h.end {
                    match take(&mut out, ip, p, c, s.proto) {
                        Ok(()) => {
                            done = true;
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                if !done {
                    return Err(last.unwrap_or_else(|| {
                        anyhow::anyhow!("no free port in {h} for {c}/{}", s.proto)
                    }));
                }
            }
            Some(h) => {
                for (i, c) in (s.container_ports.start..=s.container_ports.end).enumerate() {
                    take(&mut out, ip, h.start + i as u16, c, s.proto)?;
                }
            }
        }
    }
    if publish_all {
        for &(c, proto) in exposed {
            let already = out
                .iter()
                .any(|r| r.binding.container_port == c && r.binding.proto == proto);
            if !already {
                take(&mut out, default_ip, 0, c, proto)?;
            }
        }
    }
    Ok(out)
}

/// Parses an EXPOSE entry of an image's config (`80/tcp`, `53/udp`, `8000-8002`).
pub fn parse_exposed(s: &str) -> Result<Vec<(u16, Proto)>> {
    let (p, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, proto.parse()?),
        None => (s, Proto::Tcp),
    };
    let r = PortRange::parse(p, "port")?;
    Ok((r.start..=r.end).map(|p| (p, proto)).collect())
}

/// The PORTS column of `ps`, as Docker's client writes it (its `DisplayablePorts`): the ports
/// sorted by container port, address (as text), host port and protocol; those published on
/// the same port number as the container's, and the exposed ones not published, folded into
/// ranges per address and protocol (`0.0.0.0:80-81->80-81/tcp`, `443/tcp`), first; then each
/// other binding alone (`0.0.0.0:8080->80/tcp`, `:::8080->80/tcp`); ", " between them.
pub fn ports_column(bindings: &[PortBinding], exposed: &[(u16, Proto)]) -> String {
    // Docker's API list: the bindings, then the exposed ports without one (no address).
    struct Port {
        ip: String,
        private: u16,
        public: u16,
        proto: &'static str,
    }
    let mut ports: Vec<Port> = bindings
        .iter()
        .map(|b| Port {
            ip: b.host_ip.to_string(),
            private: b.container_port,
            public: b.host_port,
            proto: b.proto.as_str(),
        })
        .collect();
    for &(c, p) in exposed {
        let published = bindings
            .iter()
            .any(|b| b.container_port == c && b.proto == p);
        let listed = ports
            .iter()
            .any(|x| x.ip.is_empty() && x.private == c && x.proto == p.as_str());
        if !published && !listed {
            ports.push(Port {
                ip: String::new(),
                private: c,
                public: 0,
                proto: p.as_str(),
            });
        }
    }
    ports.sort_by(|a, b| {
        (a.private, &a.ip, a.public, a.proto).cmp(&(b.private, &b.ip, b.public, b.proto))
    });
    let form = |ip: &str, proto: &str, first: u16, last: u16| {
        let mut g = first.to_string();
        if first != last {
            g = format!("{g}-{last}");
        }
        if ip.is_empty() {
            format!("{g}/{proto}")
        } else {
            format!("{ip}:{g}->{g}/{proto}")
        }
    };
    let mut result = Vec::new();
    let mut mappings = Vec::new();
    // (address, protocol) -> (first, last), in the order the keys came.
    type Group<'a> = ((String, &'a str), (u16, u16));
    let mut groups: Vec<Group> = Vec::new();
    for p in &ports {
        if !p.ip.is_empty() && p.public != p.private {
            mappings.push(format!("{}:{}->{}/{}", p.ip, p.public, p.private, p.proto));
            continue;
        }
        let key = (p.ip.clone(), p.proto);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            None => groups.push((key, (p.private, p.private))),
            Some((_, g)) if p.private == g.1 + 1 => g.1 = p.private,
            Some((k, g)) => {
                result.push(form(&k.0, k.1, g.0, g.1));
                *g = (p.private, p.private);
            }
        }
    }
    for ((ip, proto), (first, last)) in &groups {
        result.push(form(ip, proto, *first, *last));
    }
    result.extend(mappings);
    result.join(", ")
}

/// The PORTS column read back: the bindings, then the exposed ports not published.
pub type PortsColumn = (Vec<PortBinding>, Vec<(u16, Proto)>);

/// Reads back the PORTS column (the differential tests compare it with Docker's).
pub fn parse_ports_column(s: &str) -> Result<PortsColumn> {
    let mut bindings = Vec::new();
    let mut exposed = Vec::new();
    for part in s.split(", ").map(str::trim).filter(|p| !p.is_empty()) {
        let (left, cont) = match part.split_once("->") {
            Some((l, c)) => (Some(l), c),
            None => (None, part),
        };
        let (cports, proto) = cont
            .split_once('/')
            .with_context(|| format!("no protocol in {part:?}"))?;
        let proto: Proto = proto.parse()?;
        let cports = PortRange::parse(cports, "containerPort")?;
        match left {
            None => exposed.extend((cports.start..=cports.end).map(|c| (c, proto))),
            Some(l) => {
                let (ip, h) = l
                    .rsplit_once(':')
                    .with_context(|| format!("no host port in {part:?}"))?;
                let ip: IpAddr = if ip == "::" {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    ip.parse()
                        .with_context(|| format!("bad address in {part:?}"))?
                };
                let h = PortRange::parse(h, "hostPort")?;
                if h.len() != cports.len() {
                    bail!("ranges of different lengths in {part:?}");
                }
                for i in 0..cports.len() as u16 {
                    bindings.push(PortBinding {
                        container_port: cports.start + i,
                        proto,
                        host_ip: ip,
                        host_port: h.start + i,
                    });
                }
            }
        }
    }
    Ok((bindings, exposed))
}

/// `port CONTAINER [PRIVATE_PORT[/PROTO]]`'s output: without a port, one line per binding,
/// `80/tcp -> 0.0.0.0:8080`, sorted by container port then protocol; with one, the host ends
/// alone (`0.0.0.0:8080`). An unpublished port asked for is Docker's error (without the
/// "Error: " berth's main adds), with the port as given and the container as named.
pub fn port_output(
    bindings: &[PortBinding],
    filter: Option<&str>,
    container: &str,
) -> Result<String> {
    let mut b = bindings.to_vec();
    b.sort_by_key(|x| {
        (
            x.container_port,
            x.proto,
            x.host_ip.is_ipv6(),
            x.host_ip,
            x.host_port,
        )
    });
    let mut out = String::new();
    match filter {
        None => {
            for x in &b {
                out.push_str(&format!(
                    "{}/{} -> {}:{}\n",
                    x.container_port,
                    x.proto,
                    display_ip(x.host_ip),
                    x.host_port
                ));
            }
        }
        Some(f) => {
            let (p, proto) = match f.split_once('/') {
                Some((p, proto)) => (p, proto.parse::<Proto>()?),
                None => (f, Proto::Tcp),
            };
            let p: u16 = p
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid port ({p}): invalid syntax"))?;
            let hits: Vec<_> = b
                .iter()
                .filter(|x| x.container_port == p && x.proto == proto)
                .collect();
            if hits.is_empty() {
                bail!("No public port '{p}/{proto}' published for {container}");
            }
            for x in hits {
                out.push_str(&format!("{}:{}\n", display_ip(x.host_ip), x.host_port));
            }
        }
    }
    Ok(out)
}

/// `"80/tcp"`: Docker's key for a container port.
fn port_key(port: u16, proto: Proto) -> String {
    format!("{port}/{proto}")
}

/// `HostConfig.PortBindings` of `inspect`: the `-p` specs as given, one entry per container
/// port (an address or port not given is ""; a host range for one port stays a range).
pub fn port_bindings_json(specs: &[PublishSpec]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for s in specs {
        let ip = s.host_ip.map(|i| i.to_string()).unwrap_or_default();
        for (i, c) in (s.container_ports.start..=s.container_ports.end).enumerate() {
            let host = match s.host_ports {
                None => String::new(),
                Some(h) if s.container_ports.len() == 1 => h.to_string(),
                Some(h) => (h.start + i as u16).to_string(),
            };
            let entry = m
                .entry(port_key(c, s.proto))
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(v) = entry {
                v.push(serde_json::json!({ "HostIp": ip, "HostPort": host }));
            }
        }
    }
    serde_json::Value::Object(m)
}

/// `Config.ExposedPorts`: the image's exposed ports and every published one.
pub fn exposed_ports_json(specs: &[PublishSpec], exposed: &[(u16, Proto)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for &(c, p) in exposed {
        m.insert(port_key(c, p), serde_json::json!({}));
    }
    for s in specs {
        for c in s.container_ports.start..=s.container_ports.end {
            m.insert(port_key(c, s.proto), serde_json::json!({}));
        }
    }
    serde_json::Value::Object(m)
}

/// `NetworkSettings.Ports` of a running container: each exposed or published port, with its
/// bindings (`{"HostIp": "0.0.0.0", "HostPort": "8080"}`) or null.
pub fn network_ports_json(bindings: &[PortBinding], exposed: &[(u16, Proto)]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for &(c, p) in exposed {
        m.insert(port_key(c, p), serde_json::Value::Null);
    }
    let mut b = bindings.to_vec();
    b.sort_by_key(|x| {
        (
            x.container_port,
            x.proto,
            x.host_ip.is_ipv6(),
            x.host_ip,
            x.host_port,
        )
    });
    for x in &b {
        let entry = m
            .entry(port_key(x.container_port, x.proto))
            .or_insert(serde_json::Value::Null);
        if entry.is_null() {
            *entry = serde_json::Value::Array(Vec::new());
        }
        if let serde_json::Value::Array(v) = entry {
            v.push(serde_json::json!({
                "HostIp": x.host_ip.to_string(),
                "HostPort": x.host_port.to_string(),
            }));
        }
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn publish_forms() {
        let p = parse_publish("80").unwrap();
        assert_eq!(
            (p.host_ip, p.host_ports, p.container_ports, p.proto),
            (None, None, PortRange::single(80), Proto::Tcp)
        );
        let p = parse_publish("8080:80/udp").unwrap();
        assert_eq!(p.host_ports, Some(PortRange::single(8080)));
        assert_eq!(p.proto, Proto::Udp);
        let p = parse_publish("127.0.0.1:8080:80").unwrap();
        assert_eq!(p.host_ip, Some(v4("127.0.0.1")));
        let p = parse_publish("127.0.0.1::80").unwrap();
        assert_eq!((p.host_ip, p.host_ports), (Some(v4("127.0.0.1")), None));
        let p = parse_publish("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip, Some(v4("::1")));
        let p = parse_publish("8000-8002:80-82/tcp").unwrap();
        assert_eq!(
            p.host_ports,
            Some(PortRange {
                start: 8000,
                end: 8002
            })
        );
        assert_eq!(p.container_ports, PortRange { start: 80, end: 82 });
        let p = parse_publish("8000-8010:80").unwrap();
        assert_eq!(p.container_ports.len(), 1);
        assert!(parse_publish("8000-8001:80-82").is_err());
        assert!(parse_publish("0:80").is_err());
        assert!(parse_publish("70000").is_err());
        assert!(parse_publish("80/icmp").is_err());
        assert!(parse_publish("::1:8080:80").is_err());
        assert!(parse_publish("8080:").is_err());
        assert!(parse_publish("90-80").is_err());
    }

    #[test]
    fn column_and_port_output() {
        let b = |ip: &str, h, c, proto| PortBinding {
            container_port: c,
            proto,
            host_ip: v4(ip),
            host_port: h,
        };
        let list = vec![
            b("0.0.0.0", 8080, 80, Proto::Tcp),
            b("::", 8080, 80, Proto::Tcp),
            b("0.0.0.0", 9001, 91, Proto::Tcp),
            b("0.0.0.0", 9000, 90, Proto::Tcp),
            b("127.0.0.1", 5353, 53, Proto::Udp),
        ];
        let col = ports_column(&list, &[(443, Proto::Tcp), (80, Proto::Tcp)]);
        assert_eq!(
            col,
            "443/tcp, 127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp, :::8080->80/tcp, \
             0.0.0.0:9000->90/tcp, 0.0.0.0:9001->91/tcp"
        );
        // Same numbers fold into ranges; exposed ports too, per protocol.
        let same = vec![
            b("0.0.0.0", 81, 81, Proto::Tcp),
            b("0.0.0.0", 80, 80, Proto::Tcp),
            b("0.0.0.0", 83, 83, Proto::Tcp),
            b("::", 80, 80, Proto::Tcp),
        ];
        assert_eq!(
            ports_column(
                &same,
                &[(7000, Proto::Udp), (7001, Proto::Udp), (8000, Proto::Tcp)]
            ),
            "0.0.0.0:80-81->80-81/tcp, 0.0.0.0:83->83/tcp, :::80->80/tcp, 7000-7001/udp, 8000/tcp"
        );
        let (back, exp) = parse_ports_column(&col).unwrap();
        let mut l2 = list.clone();
        l2.sort();
        let mut back = back;
        back.sort();
        assert_eq!(back, l2);
        assert_eq!(exp, vec![(443, Proto::Tcp)]);
        assert_eq!(
            port_output(&list, None, "web").unwrap(),
            "53/udp -> 127.0.0.1:5353\n80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n\
             90/tcp -> 0.0.0.0:9000\n91/tcp -> 0.0.0.0:9001\n"
        );
        assert_eq!(
            port_output(&list, Some("80"), "web").unwrap(),
            "0.0.0.0:8080\n[::]:8080\n"
        );
        assert_eq!(
            port_output(&list, Some("81/tcp"), "web")
                .unwrap_err()
                .to_string(),
            "No public port '81/tcp' published for web"
        );
    }

    #[test]
    fn inspect_fields() {
        let specs = [
            parse_publish("8080:80").unwrap(),
            parse_publish("127.0.0.1::53/udp").unwrap(),
            parse_publish("9000-9001:90-91").unwrap(),
            parse_publish("7000-7010:70").unwrap(),
        ];
        assert_eq!(
            port_bindings_json(&specs).to_string(),
            r#"{"53/udp":[{"HostIp":"127.0.0.1","HostPort":""}],"70/tcp":[{"HostIp":"","HostPort":"7000-7010"}],"80/tcp":[{"HostIp":"","HostPort":"8080"}],"90/tcp":[{"HostIp":"","HostPort":"9000"}],"91/tcp":[{"HostIp":"","HostPort":"9001"}]}"#
        );
        assert_eq!(
            exposed_ports_json(&specs[..1], &[(443, Proto::Tcp)]).to_string(),
            r#"{"443/tcp":{},"80/tcp":{}}"#
        );
        let b = |ip: &str, h, c| PortBinding {
            container_port: c,
            proto: Proto::Tcp,
            host_ip: ip.parse().unwrap(),
            host_port: h,
        };
        assert_eq!(
            network_ports_json(
                &[b("::", 8080, 80), b("0.0.0.0", 8080, 80)],
                &[(443, Proto::Tcp)]
            )
            .to_string(),
            r#"{"443/tcp":null,"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"::","HostPort":"8080"}]}"#
        );
    }

    #[test]
    fn exposed() {
        assert_eq!(
            parse_exposed("8000-8001/udp").unwrap(),
            vec![(8000, Proto::Udp), (8001, Proto::Udp)]
        );
        assert_eq!(parse_exposed("80").unwrap(), vec![(80, Proto::Tcp)]);
    }
}
