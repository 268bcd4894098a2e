//! A small synchronous rtnetlink client: the link, address and route operations berth's
//! networks need, spoken over a plain netlink socket (netlink-sys) with the message types of
//! netlink-packet-route. No async runtime: one request, one acknowledgement, on the caller's
//! thread. Errors name the operation and the interface.
//!
//! A `Netlink` talks to the network namespace its socket was made in: `Netlink::open()` to the
//! caller's, `Netlink::open_in(&ns)` to another's (the socket is made by a short-lived thread
//! that joins that namespace, so the caller never leaves its own).

use anyhow::{anyhow, bail, Context, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

/// The main routing table.
const RT_TABLE_MAIN: u8 = 254;

/// A link as a dump shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    /// The index of the bridge (or other controller) this link is a port of.
    pub controller: Option<u32>,
}

/// An IPv4 route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route4 {
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

/// A veth pair to make (see `Netlink::add_veth_with`).
#[derive(Default)]
pub struct Veth<'a> {
    pub name: &'a str,
    pub peer_name: &'a str,
    /// The namespace the peer is made in (an open nsfs file); the caller's when None.
    pub peer_ns: Option<&'a dyn AsRawFd>,
    pub peer_mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// The bridge (an index) the host end is a port of.
    pub controller: Option<u32>,
    /// The host end up. (The peer cannot be: a veth opens only once it has its peer, which
    /// it has after both are configured, so the kernel answers ENOTCONN. `set_up` it after.)
    pub up: bool,
}

/// A rtnetlink connection to one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// A connection to the caller's network namespace.
    pub fn open() -> Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("netlink: cannot open a socket")?;
        socket.bind_auto().context("netlink: bind")?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .context("netlink: connect")?;
        socket.set_ext_ack(true).ok();
        Ok(Netlink {
            socket,
            seq: 0,
            buf: vec![0; 32 * 1024],
        })
    }

    /// A connection to the network namespace `ns` (an open `/proc/PID/ns/net` or
    /// `/run/netns/NAME`). A socket belongs to the namespace it was made in: a thread joins `ns`,
    /// makes it and ends; the calling thread stays where it is.
    pub fn open_in(ns: &impl AsFd) -> Result<Netlink> {
        Self::open_in_then(ns, || Ok(()))
    }

    /// As `open_in`, and runs `also` in the namespace on the way (sysctls under /proc/sys/net
    /// show the namespace of the thread that opens them).
    pub fn open_in_then(
        ns: &impl AsFd,
        also: impl FnOnce() -> Result<()> + Send,
    ) -> Result<Netlink> {
        let ns = ns.as_fd();
        let fd: Result<OwnedFd> = std::thread::scope(|s| {
            // A small stack: the thread makes a few system calls (the default 2 MiB would be
            // mapped for nothing in a monitor that keeps its memory small).
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn_scoped(s, || -> Result<OwnedFd> {
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .context("netlink: cannot join the network namespace")?;
                    also()?;
                    let socket =
                        Socket::new(NETLINK_ROUTE).context("netlink: cannot open a socket")?;
                    // SAFETY: into_raw_fd hands over the socket's only owner.
                    Ok(unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) })
                })
                .context("netlink: cannot start a thread")?
                .join()
                .map_err(|_| anyhow!("netlink: the thread joining the namespace panicked"))?
        });
        // SAFETY: the descriptor is a netlink socket this process owns alone.
        let mut socket = unsafe { Socket::from_raw_fd(fd?.into_raw_fd()) };
        socket.bind_auto().context("netlink: bind")?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .context("netlink: connect")?;
        socket.set_ext_ack(true).ok();
        Ok(Netlink {
            socket,
            seq: 0,
            buf: vec![0; 32 * 1024],
        })
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        packet.header.flags = NLM_F_REQUEST | flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;
        Ok(self.seq)
    }

    /// Sends a request and waits for its acknowledgement.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> std::io::Result<()> {
        let seq = self
            .send(msg, flags | NLM_F_ACK)
            .map_err(std::io::Error::other)?;
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let m: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&self.buf[off..n])
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                let len = m.header.length as usize;
                if m.header.sequence_number == seq {
                    if let NetlinkPayload::Error(e) = m.payload {
                        return match e.code {
                            None => Ok(()),
                            Some(code) => Err(std::io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }

    /// Sends a dump request and collects the answers.
    fn dump(&mut self, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_DUMP)?;
        let mut all = Vec::new();
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let m: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&self.buf[off..n])
                        .map_err(|e| anyhow!("netlink: cannot parse a dump: {e}"))?;
                let len = m.header.length as usize;
                if m.header.sequence_number == seq {
                    match m.payload {
                        NetlinkPayload::Done(_) => return Ok(all),
                        NetlinkPayload::Error(e) if e.code.is_some() => {
                            return Err(std::io::Error::from_raw_os_error(
                                -e.code.map_or(0, |c| c.get()),
                            )
                            .into())
                        }
                        NetlinkPayload::InnerMessage(i) => all.push(i),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let msgs = self
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .context("netlink: list links")?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(&l)),
                _ => None,
            })
            .collect())
    }

    /// The link named `name`, if there is one.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut packet = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(RouteNetlinkMessage::GetLink(msg)),
        );
        packet.header.flags = NLM_F_REQUEST;
        packet.header.sequence_number = seq;
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let m: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&self.buf[off..n])
                        .map_err(|e| anyhow!("netlink: get link {name}: {e}"))?;
                let len = m.header.length as usize;
                if m.header.sequence_number == seq {
                    match m.payload {
                        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                            return Ok(Some(link_of(&l)))
                        }
                        NetlinkPayload::Error(e) => {
                            let code = e.code.map_or(0, |c| -c.get());
                            if code == libc::ENODEV {
                                return Ok(None);
                            }
                            return Err(std::io::Error::from_raw_os_error(code))
                                .with_context(|| format!("netlink: get link {name}"));
                        }
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }

    /// The index of the link named `name`; an error naming it when there is none.
    pub fn index(&mut self, name: &str) -> Result<u32> {
        match self.link(name)? {
            Some(l) => Ok(l.index),
            None => bail!("netlink: no link named {name}"),
        }
    }

    /// Makes a bridge named `name` (down, as a new link is).
    pub fn add_bridge(&mut self, name: &str) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .with_context(|| format!("netlink: create bridge {name}"))
    }

    /// Makes a veth pair: `name` here, its peer `peer_name` here or, with `peer_ns`, made
    /// directly in that network namespace (one request, no move afterwards).
    pub fn add_veth(
        &mut self,
        name: &str,
        peer_name: &str,
        peer_ns: Option<&dyn AsRawFd>,
    ) -> Result<()> {
        self.add_veth_with(&Veth {
            name,
            peer_name,
            peer_ns,
            ..Default::default()
        })
    }

    /// Makes a veth pair set up in one request: each end's name and MTU, the host end's bridge
    /// and up state, the peer's namespace and MAC.
    pub fn add_veth_with(&mut self, v: &Veth) -> Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(v.peer_name.into()));
        if let Some(ns) = v.peer_ns {
            peer.attributes.push(LinkAttribute::NetNsFd(ns.as_raw_fd()));
        }
        if let Some(mac) = v.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        if let Some(mtu) = v.mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(v.name.into()));
        if let Some(mtu) = v.mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(b) = v.controller {
            msg.attributes.push(LinkAttribute::Controller(b));
        }
        if v.up {
            msg.header.flags = LinkFlags::Up;
            msg.header.change_mask = LinkFlags::Up;
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .with_context(|| {
                format!(
                    "netlink: create veth pair {} (peer {})",
                    v.name, v.peer_name
                )
            })
    }

    fn set_link(&mut self, index: u32, what: &str, f: impl FnOnce(&mut LinkMessage)) -> Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        f(&mut msg);
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
            .with_context(|| format!("netlink: {what} (link {index})"))
    }

    /// Moves link `index` into the network namespace `ns`.
    pub fn set_netns(&mut self, index: u32, ns: &dyn AsRawFd) -> Result<()> {
        let fd = ns.as_raw_fd();
        self.set_link(index, "move to another network namespace", |m| {
            m.attributes.push(LinkAttribute::NetNsFd(fd))
        })
    }

    /// Renames link `index` (it must be down).
    pub fn set_name(&mut self, index: u32, name: &str) -> Result<()> {
        self.set_link(index, &format!("rename to {name}"), |m| {
            m.attributes.push(LinkAttribute::IfName(name.into()))
        })
    }

    /// Makes link `index` a port of the bridge `bridge` (an index).
    pub fn set_controller(&mut self, index: u32, bridge: u32) -> Result<()> {
        self.set_link(index, &format!("attach to bridge {bridge}"), |m| {
            m.attributes.push(LinkAttribute::Controller(bridge))
        })
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.set_link(index, &format!("set mtu {mtu}"), |m| {
            m.attributes.push(LinkAttribute::Mtu(mtu))
        })
    }

    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> Result<()> {
        self.set_link(index, &format!("set address {}", format_mac(&mac)), |m| {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()))
        })
    }

    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.set_link(index, "set up", |m| {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Changes several things of link `index` in one request: name, MAC, MTU, up.
    pub fn configure(
        &mut self,
        index: u32,
        name: Option<&str>,
        mac: Option<[u8; 6]>,
        mtu: Option<u32>,
        up: bool,
    ) -> Result<()> {
        self.set_link(index, "configure", |m| {
            if let Some(n) = name {
                m.attributes.push(LinkAttribute::IfName(n.into()));
            }
            if let Some(mac) = mac {
                m.attributes.push(LinkAttribute::Address(mac.to_vec()));
            }
            if let Some(mtu) = mtu {
                m.attributes.push(LinkAttribute::Mtu(mtu));
            }
            if up {
                m.header.flags = LinkFlags::Up;
                m.header.change_mask = LinkFlags::Up;
            }
        })
    }

    /// Deletes link `name`; Ok(false) when there was none (a veth's peer goes with it).
    pub fn del_link(&mut self, name: &str) -> Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("netlink: delete link {name}")),
        }
    }

    fn address_message(index: u32, addr: Ipv4Addr, prefix: u8) -> AddressMessage {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes
            .push(AddressAttribute::Local(IpAddr::V4(addr)));
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        if prefix < 31 {
            let bits = u32::from(addr) | (u32::MAX >> prefix);
            msg.attributes
                .push(AddressAttribute::Broadcast(Ipv4Addr::from(bits)));
        }
        msg
    }

    /// Adds `addr/prefix` (with its broadcast) to link `index`.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewAddress(Self::address_message(index, addr, prefix)),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(|| format!("netlink: add address {addr}/{prefix} to link {index}"))
    }

    /// Removes `addr/prefix` from link `index`; Ok(false) when it was not there.
    pub fn del_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<bool> {
        match self.request(
            RouteNetlinkMessage::DelAddress(Self::address_message(index, addr, prefix)),
            0,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(e).with_context(|| {
                format!("netlink: delete address {addr}/{prefix} of link {index}")
            }),
        }
    }

    /// The IPv4 addresses of the namespace: (link index, address, prefix).
    pub fn addresses(&mut self) -> Result<Vec<(u32, Ipv4Addr, u8)>> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        let msgs = self
            .dump(RouteNetlinkMessage::GetAddress(req))
            .context("netlink: list addresses")?;
        let mut out = Vec::new();
        for m in msgs {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                for attr in &a.attributes {
                    if let AddressAttribute::Local(IpAddr::V4(ip)) = attr {
                        out.push((a.header.index, *ip, a.header.prefix_len));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Adds a route to `dest/prefix` (0.0.0.0/0: the default route) via `gateway` or, without
    /// one, on link `oif` directly.
    pub fn add_route(
        &mut self,
        dest: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
    ) -> Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = prefix;
        msg.header.table = RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if prefix > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(dest)));
        }
        if let Some(gw) = gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        if let Some(oif) = oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        let via = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .with_context(|| format!("netlink: add route {dest}/{prefix}{via}"))
    }

    /// The IPv4 routes of the main table.
    pub fn routes(&mut self) -> Result<Vec<Route4>> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let msgs = self
            .dump(RouteNetlinkMessage::GetRoute(req))
            .context("netlink: list routes")?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewRoute(r) = m else {
                continue;
            };
            if r.header.table != RT_TABLE_MAIN {
                continue;
            }
            let mut route = Route4 {
                destination: Ipv4Addr::UNSPECIFIED,
                prefix: r.header.destination_prefix_length,
                gateway: None,
                oif: None,
            };
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => route.destination = *d,
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => route.gateway = Some(*g),
                    RouteAttribute::Oif(o) => route.oif = Some(*o),
                    _ => {}
                }
            }
            out.push(route);
        }
        Ok(out)
    }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        up: l.header.flags.contains(LinkFlags::Up),
        mtu: 0,
        mac: None,
        controller: None,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut mac = [0; 6];
                mac.copy_from_slice(a);
                link.mac = Some(mac);
            }
            LinkAttribute::Controller(c) => link.controller = Some(*c),
            _ => {}
        }
    }
    link
}

/// `02:42:0a:58:00:02`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        bail!("invalid MAC address: {s}");
    }
    let mut mac = [0u8; 6];
    for (d, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            bail!("invalid MAC address: {s}");
        }
        *d = u8::from_str_radix(p, 16).map_err(|_| anyhow!("invalid MAC address: {s}"))?;
    }
    Ok(mac)
}
