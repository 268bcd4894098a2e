//! `linux.netDevices`: host network interfaces moved into the container's network namespace,
//! renamed if asked, with their permanent global addresses and up (runtime-spec 1.3).
//!
//! berth moves them itself, from the host's namespace, when the container process asks
//! (`NetDevicesNeeded`, once its namespaces exist and before its mounts, so the devices are
//! there for every hook and for the program). Moving a device takes it down and drops its
//! addresses: berth reads the permanent, global-scope ones first and adds them back in the
//! container's namespace, then sets the device up, through a netlink socket opened there.
//!
//! berth does not move them back: the spec says the runtime MUST NOT move them out before the
//! namespace is deleted. When the namespace dies, the kernel moves physical devices back to the
//! host's initial namespace and destroys virtual ones (a veth takes its peer with it).

use anyhow::{bail, Context, Result};
use oci_spec::runtime::{Linux, LinuxNamespaceType};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// (name on the host, name in the container), checked in the parent.
#[derive(Debug, Clone, Default)]
pub struct NetDevices(pub Vec<(String, String)>);

impl NetDevices {
    pub fn new(linux: Option<&Linux>) -> Result<NetDevices> {
        let Some(devs) = linux.and_then(|l| l.net_devices().as_ref()) else {
            return Ok(NetDevices::default());
        };
        if devs.is_empty() {
            return Ok(NetDevices::default());
        }
        let own_netns = linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::Network);
        if !own_netns {
            bail!("linux.netDevices: the container shares the host's network namespace (no \"network\" in linux.namespaces): there is nowhere to move a device to");
        }
        let mut list: Vec<(String, String)> = Vec::new();
        for (host, d) in devs {
            check_name(host).with_context(|| format!("linux.netDevices: {host:?}"))?;
            let inside = d
                .name()
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(host);
            check_name(inside)
                .with_context(|| format!("linux.netDevices[{host:?}].name: {inside:?}"))?;
            if let Some((other, _)) = list
                .iter()
                .find(|(_, n)| n == inside && !inside.contains("%d"))
            {
                bail!("linux.netDevices: {host:?} and {other:?} would both be {inside:?} in the container");
            }
            list.push((host.clone(), inside.to_string()));
        }
        list.sort();
        Ok(NetDevices(list))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parent side: moves the devices into the network namespace of `pid`.
    pub fn move_into(&self, pid: i32) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let target = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .context("linux.netDevices: cannot open the container's network namespace")?;
        let host = Netlink::open()?;
        let inside = Netlink::open_in(&target)?;
        for (from, to) in &self.0 {
            move_one(&host, &inside, &target, from, to)
                .with_context(|| format!("linux.netDevices: {from:?}"))?;
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        bail!("an interface name has 1 to {} bytes", libc::IFNAMSIZ - 1);
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        bail!("not a valid interface name");
    }
    Ok(())
}

fn move_one(
    host: &Netlink,
    inside: &Netlink,
    target: &std::fs::File,
    from: &str,
    to: &str,
) -> Result<()> {
    let index = host
        .link_index(from)?
        .with_context(|| format!("the host has no network device named {from:?}"))?;
    // The kernel moves the device first and renames it after: a name taken in the container
    // would fail the rename with the device already moved. So look first.
    if !to.contains("%d") && inside.link_index(to)?.is_some() {
        bail!("the container's network namespace already has a device named {to:?} (append %d to the name to let the kernel number it)");
    }
    let addrs = host.permanent_global_addrs(index)?;
    let mut req = Request::new(libc::RTM_NEWLINK, libc::NLM_F_ACK);
    req.ifinfo(index, 0, 0);
    req.attr(IFLA_NET_NS_FD, &(target.as_raw_fd() as u32).to_ne_bytes());
    req.attr_str(libc::IFLA_IFNAME, to);
    host.call(req).map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => anyhow::anyhow!(
            "the container's network namespace already has a device named {to:?} (append %d to the name to let the kernel number it)"
        ),
        _ => anyhow::Error::new(e).context("cannot move it into the container's network namespace"),
    })?;
    // The kernel keeps the index unless the namespace has it taken; with a %d template the
    // name is the kernel's, so look the device up by index first.
    let moved = match inside.link_name(index)? {
        Some(_) => index,
        None => inside
            .link_index(to)?
            .context("moved, but not found in the container's network namespace")?,
    };
    for a in &addrs {
        let mut req = Request::new(
            libc::RTM_NEWADDR,
            libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL,
        );
        req.ifaddr(a.family, a.prefixlen, a.scope, moved as u32);
        for (ty, data) in &a.attrs {
            req.attr(*ty, data);
        }
        inside
            .call(req)
            .context("cannot give it back its address in the container's network namespace")?;
    }
    let mut req = Request::new(libc::RTM_NEWLINK, libc::NLM_F_ACK);
    req.ifinfo(moved, libc::IFF_UP as u32, libc::IFF_UP as u32);
    inside
        .call(req)
        .context("cannot set it up in the container's network namespace")?;
    Ok(())
}

const IFLA_NET_NS_FD: u16 = 28;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
const IFA_F_PERMANENT: u32 = 0x80;
const NLMSG_HDRLEN: usize = 16;

struct Addr {
    family: u8,
    prefixlen: u8,
    scope: u8,
    attrs: Vec<(u16, Vec<u8>)>,
}

/// A netlink request being built: header, family header, attributes.
struct Request {
    buf: Vec<u8>,
}

impl Request {
    /// Every request but a dump asks for an ack: a reply alone has no end to wait for.
    fn new(ty: u16, flags: libc::c_int) -> Request {
        let flags = if flags & libc::NLM_F_DUMP == 0 {
            flags | libc::NLM_F_ACK
        } else {
            flags
        };
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | flags) as u16).to_ne_bytes());
        buf[8..12].copy_from_slice(&1u32.to_ne_bytes());
        Request { buf }
    }

    /// struct ifinfomsg.
    fn ifinfo(&mut self, index: i32, flags: u32, change: u32) {
        self.buf
            .extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
    }

    /// struct ifaddrmsg.
    fn ifaddr(&mut self, family: u8, prefixlen: u8, scope: u8, index: u32) {
        self.buf.extend_from_slice(&[family, prefixlen, 0, scope]);
        self.buf.extend_from_slice(&index.to_ne_bytes());
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
    }

    fn attr_str(&mut self, ty: u16, s: &str) {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.attr(ty, &data);
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// A NETLINK_ROUTE socket, bound to the network namespace it was opened in.
struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    fn open() -> Result<Netlink> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("cannot open a netlink socket");
        }
        // SAFETY: a new descriptor nothing else owns.
        Ok(Netlink {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// A socket in the namespace `ns`: berth (single-threaded) enters it for the one call
    /// and goes back to its own at once.
    fn open_in(ns: &std::fs::File) -> Result<Netlink> {
        let own = std::fs::File::open("/proc/thread-self/ns/net")
            .context("cannot open berth's own network namespace")?;
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .context("cannot enter the container's network namespace")?;
        let sock = Netlink::open();
        nix::sched::setns(&own, nix::sched::CloneFlags::CLONE_NEWNET)
            .context("cannot go back to berth's network namespace")?;
        sock
    }

    fn send(&self, req: Request) -> std::io::Result<()> {
        let msg = req.finish();
        // SAFETY: `msg` is a valid buffer of the length passed; a zeroed sockaddr_nl is the kernel.
        let r = unsafe {
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as u16;
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends `req` and collects the replies (type, payload after the netlink header) until
    /// the ack or the end of a dump; a netlink error comes back as the errno.
    fn exchange(&self, req: Request) -> std::io::Result<Vec<(u16, Vec<u8>)>> {
        self.send(req)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf)?;
            let mut off = 0;
            while off + NLMSG_HDRLEN <= n {
                let len =
                    u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
                let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2 bytes"));
                if len < NLMSG_HDRLEN || off + len > n {
                    return Err(std::io::Error::from_raw_os_error(libc::EBADMSG));
                }
                let payload = &buf[off + NLMSG_HDRLEN..off + len];
                match ty as libc::c_int {
                    libc::NLMSG_DONE => return Ok(out),
                    libc::NLMSG_ERROR => {
                        let errno = i32::from_ne_bytes(payload[0..4].try_into().expect("4 bytes"));
                        if errno == 0 {
                            return Ok(out);
                        }
                        return Err(std::io::Error::from_raw_os_error(-errno));
                    }
                    _ => out.push((ty, payload.to_vec())),
                }
                off += len.next_multiple_of(4);
            }
        }
    }

    fn call(&self, req: Request) -> std::io::Result<()> {
        self.exchange(req).map(|_| ())
    }

    /// The index of the device named `name`, if there is one.
    fn link_index(&self, name: &str) -> Result<Option<i32>> {
        let mut req = Request::new(libc::RTM_GETLINK, 0);
        req.ifinfo(0, 0, 0);
        req.attr_str(libc::IFLA_IFNAME, name);
        match self.exchange(req) {
            Ok(replies) => Ok(replies
                .iter()
                .find(|(t, p)| *t == libc::RTM_NEWLINK && p.len() >= 16)
                .map(|(_, p)| i32::from_ne_bytes(p[4..8].try_into().expect("4 bytes")))),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot look up network device {name:?}")),
        }
    }

    /// The name of the device with index `index`, if there is one.
    fn link_name(&self, index: i32) -> Result<Option<String>> {
        let mut req = Request::new(libc::RTM_GETLINK, 0);
        req.ifinfo(index, 0, 0);
        match self.exchange(req) {
            Ok(replies) => Ok(replies
                .iter()
                .find(|(t, p)| *t == libc::RTM_NEWLINK && p.len() >= 16)
                .and_then(|(_, p)| {
                    attrs(&p[16..])
                        .into_iter()
                        .find(|(t, _)| *t == libc::IFLA_IFNAME)
                        .map(|(_, d)| {
                            String::from_utf8_lossy(d.split(|b| *b == 0).next().unwrap_or_default())
                                .into_owned()
                        })
                })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot look up network device {index}")),
        }
    }

    /// The permanent, global-scope addresses of device `index`, as the spec says to keep.
    fn permanent_global_addrs(&self, index: i32) -> Result<Vec<Addr>> {
        let mut req = Request::new(libc::RTM_GETADDR, libc::NLM_F_DUMP);
        req.ifaddr(libc::AF_UNSPEC as u8, 0, 0, 0);
        let replies = self
            .exchange(req)
            .context("cannot list the device's addresses")?;
        let mut out = Vec::new();
        for (ty, p) in replies {
            if ty != libc::RTM_NEWADDR || p.len() < 8 {
                continue;
            }
            let (family, prefixlen, flags8, scope) = (p[0], p[1], p[2], p[3]);
            let ifindex = u32::from_ne_bytes(p[4..8].try_into().expect("4 bytes"));
            if ifindex != index as u32 || scope != libc::RT_SCOPE_UNIVERSE {
                continue;
            }
            let all = attrs(&p[8..]);
            let flags = all
                .iter()
                .find(|(t, d)| *t == IFA_FLAGS && d.len() == 4)
                .map(|(_, d)| u32::from_ne_bytes(d[..4].try_into().expect("4 bytes")))
                .unwrap_or(flags8 as u32);
            if flags & IFA_F_PERMANENT == 0 {
                continue;
            }
            let attrs = all
                .into_iter()
                .filter(|(t, _)| matches!(*t, IFA_ADDRESS | IFA_LOCAL | IFA_BROADCAST | IFA_FLAGS))
                .map(|(t, d)| (t, d.to_vec()))
                .collect();
            out.push(Addr {
                family,
                prefixlen,
                scope,
                attrs,
            });
        }
        Ok(out)
    }
}

fn recv(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// The attributes (type, data) in `b`.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(json: serde_json::Value) -> Linux {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn checks() {
        let l = linux(serde_json::json!({
            "namespaces": [{"type": "network"}],
            "netDevices": {"veth1": {"name": "eth5"}, "veth2": {}}
        }));
        let d = NetDevices::new(Some(&l)).unwrap();
        assert_eq!(
            d.0,
            [
                ("veth1".to_string(), "eth5".to_string()),
                ("veth2".to_string(), "veth2".to_string())
            ]
        );
        for bad in [
            serde_json::json!({"netDevices": {"veth1": {}}}),
            serde_json::json!({"namespaces": [{"type": "network"}], "netDevices": {"a": {"name": "x"}, "b": {"name": "x"}}}),
            serde_json::json!({"namespaces": [{"type": "network"}], "netDevices": {"a": {"name": "much-too-long-name"}}}),
            serde_json::json!({"namespaces": [{"type": "network"}], "netDevices": {"a/b": {}}}),
        ] {
            assert!(NetDevices::new(Some(&linux(bad.clone()))).is_err(), "{bad}");
        }
    }

    #[test]
    fn attributes_round_trip() {
        let mut r = Request::new(libc::RTM_GETLINK, 0);
        r.ifinfo(3, 0, 0);
        r.attr_str(libc::IFLA_IFNAME, "eth0");
        let msg = r.finish();
        assert_eq!(msg.len() % 4, 0);
        let a = attrs(&msg[NLMSG_HDRLEN + 16..]);
        assert_eq!(a, [(libc::IFLA_IFNAME, &b"eth0\0"[..])]);
    }
}
