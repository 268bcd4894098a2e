//! Docker's embedded DNS server, inside a container's monitor: a UDP and a TCP socket made in
//! the container's network namespace (bound to 127.0.0.11 on ports the kernel picks, with an
//! nftables DNAT of 127.0.0.11:53 to them in that namespace, as Docker's iptables rules do, so
//! the container may still bind port 53 itself), served from the monitor's poll loop: no
//! thread, no other process.
//!
//! Names are answered from the leases of the networks the container is on (each lease
//! names its container's DNS names on that network: its name, network aliases and short id):
//! a container sees the names of its own networks only, and a name goes with its lease (the
//! container's exit, `disconnect`, `rm`, the sweep after a SIGKILL) or its veth (a container
//! killed with its monitor). A network's leases are
//! read again when its directory's mtime changes (checked on each query): nothing to reload,
//! no query dropped. Other names are relayed, bytes as they are, to the host's upstream
//! servers through sockets of the monitor's own (host) namespace, a new socket (port) per
//! query; a query waits at most 2 s an upstream, then the next is tried.
//!
//! Only the answers berth gives itself are encoded here (A; no data for the other types of a
//! known name; PTR; SERVFAIL when nothing upstream answers): a name not known here is relayed
//! as it is, so no DNS crate is needed.

use super::store::{Lease, DEFAULT_NETWORK};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Docker's address for its resolver, in every container's namespace.
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// How long an upstream server has to answer before the next one is asked.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded queries in flight at most (more are answered SERVFAIL).
const MAX_PENDING: usize = 256;
/// TCP clients at most.
const MAX_TCP: usize = 32;
/// Docker's TTL for the names it answers.
const TTL: u32 = 600;

/// The sockets of a resolver, made in the container's network namespace.
pub struct Sockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

impl Sockets {
    /// Binds 127.0.0.11 on ports of the kernel's choice (`port` 0) or on `port`, in the
    /// calling thread's network namespace.
    /// The namespace's loopback must be up: bound before, a socket's answers would leave from
    /// 127.0.0.1, which the DNAT's reverse does not match.
    pub fn bind(port: u16) -> Result<Sockets> {
        use nix::sys::socket::{
            bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, SockaddrIn,
        };
        let addr = SockaddrIn::from(SocketAddrV4::new(RESOLVER_IP, port));
        let make = |ty: SockType| -> Result<std::os::fd::OwnedFd> {
            let fd = socket(
                AddressFamily::Inet,
                ty,
                SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
                None,
            )
            .context("DNS: socket")?;
            bind(fd.as_raw_fd(), &addr)
                .with_context(|| format!("DNS: cannot bind {RESOLVER_IP}:{port}"))?;
            Ok(fd)
        };
        let udp = UdpSocket::from(make(SockType::Datagram)?);
        let tcp_fd = make(SockType::Stream)?;
        listen(&tcp_fd, Backlog::new(64).expect("backlog")).context("DNS: listen")?;
        Ok(Sockets {
            udp,
            tcp: TcpListener::from(tcp_fd),
        })
    }

    pub fn udp_port(&self) -> u16 {
        self.udp.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn tcp_port(&self) -> u16 {
        self.tcp.local_addr().map(|a| a.port()).unwrap_or(0)
    }
}

/// A network's names, as last read.
struct NetNames {
    /// The directory's mtime when read, and when it was read.
    mtime: Option<SystemTime>,
    read_at: SystemTime,
    internal: bool,
    leases: Vec<Lease>,
}

/// How a query goes upstream: UDP, or TCP for a TCP client (a long answer comes whole).
enum Via {
    Udp(UdpSocket),
    Tcp {
        stream: TcpStream,
        /// Whether the query was written (once the connection is made).
        sent: bool,
        buf: Vec<u8>,
    },
}

impl Via {
    fn fd(&self) -> RawFd {
        match self {
            Via::Udp(s) => s.as_raw_fd(),
            Via::Tcp { stream, .. } => stream.as_raw_fd(),
        }
    }

    /// What poll waits for.
    fn events(&self) -> i16 {
        match self {
            Via::Tcp { sent: false, .. } => libc::POLLOUT,
            _ => libc::POLLIN,
        }
    }
}

/// A query relayed upstream, waiting for its answer.
struct Pending {
    via: Via,
    /// Where the answer goes: a UDP client, or a TCP client (its index's connection id).
    client: Client,
    query: Vec<u8>,
    /// The upstream servers tried so far.
    tried: usize,
    deadline: Instant,
}

enum Client {
    Udp(SocketAddr),
    Tcp(u64),
}

struct TcpConn {
    id: u64,
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
}

/// The resolver of one container.
pub struct Resolver {
    me: String,
    networks_dir: PathBuf,
    /// `--link NAME:ALIAS` on user networks: ALIAS resolves as NAME, for this container only.
    links: Vec<(String, String)>,
    sockets: Sockets,
    upstreams: Vec<SocketAddr>,
    nets: HashMap<String, NetNames>,
    pending: Vec<Pending>,
    conns: Vec<TcpConn>,
    next_conn: u64,
}

impl Resolver {
    pub fn new(
        me: &str,
        data_root: &Path,
        links: Vec<(String, String)>,
        sockets: Sockets,
        upstreams: Vec<SocketAddr>,
    ) -> Resolver {
        Resolver {
            me: me.to_string(),
            networks_dir: data_root.join("networks"),
            links: links
                .into_iter()
                .map(|(n, a)| (n.to_ascii_lowercase(), a.to_ascii_lowercase()))
                .collect(),
            sockets,
            upstreams,
            nets: HashMap::new(),
            pending: Vec::new(),
            conns: Vec::new(),
            next_conn: 0,
        }
    }

    /// The descriptors to poll and their events.
    pub fn fds(&self) -> Vec<(RawFd, i16)> {
        let mut v = vec![
            (self.sockets.udp.as_raw_fd(), libc::POLLIN),
            (self.sockets.tcp.as_raw_fd(), libc::POLLIN),
        ];
        v.extend(self.pending.iter().map(|p| (p.via.fd(), p.via.events())));
        v.extend(
            self.conns
                .iter()
                .map(|c| (c.stream.as_raw_fd(), libc::POLLIN)),
        );
        v
    }

    /// How long poll may wait for the resolver's sake (ms, -1: no limit).
    pub fn timeout_ms(&self, now: Instant) -> i32 {
        self.pending
            .iter()
            .map(|p| p.deadline)
            .chain(self.conns.iter().map(|c| c.deadline))
            .min()
            .map_or(-1, |d| {
                d.saturating_duration_since(now).as_millis().min(60_000) as i32 + 1
            })
    }

    /// Serves what is ready: `ready[i]` says whether `fds()[i]` polled readable.
    pub fn serve(&mut self, ready: &[bool]) {
        let get = |i: usize| ready.get(i).copied().unwrap_or(false);
        let npend = self.pending.len();
        let nconn = self.conns.len();
        // Answers from upstream, then TCP clients (backwards: either may leave the lists).
        for i in (0..npend).rev() {
            if get(2 + i) {
                self.upstream_answer(i);
            }
        }
        for i in (0..nconn).rev() {
            if get(2 + npend + i) {
                self.tcp_read(i);
            }
        }
        if get(0) {
            self.udp_queries();
        }
        if get(1) {
            self.tcp_accept();
        }
        self.expire(Instant::now());
    }

    fn udp_queries(&mut self) {
        let mut buf = [0u8; 4096];
        // A bounded batch: the monitor has other work.
        for _ in 0..64 {
            match self.sockets.udp.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let q = buf[..n].to_vec();
                    match self.answer(&q) {
                        Answer::Local(r) => {
                            let _ = self.sockets.udp.send_to(&r, from);
                        }
                        Answer::Forward => self.forward(q, Client::Udp(from), 0),
                        Answer::Ignore => {}
                    }
                }
                Err(_) => break,
            }
        }
    }

    fn tcp_accept(&mut self) {
        for _ in 0..16 {
            match self.sockets.tcp.accept() {
                Ok((stream, _)) => {
                    if self.conns.len() >= MAX_TCP || stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.next_conn += 1;
                    self.conns.push(TcpConn {
                        id: self.next_conn,
                        stream,
                        buf: Vec::new(),
                        deadline: Instant::now() + Duration::from_secs(10),
                    });
                }
                Err(_) => break,
            }
        }
    }

    fn tcp_read(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        let conn = &mut self.conns[i];
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                self.conns.remove(i);
                return;
            }
            Ok(n) => conn.buf.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return
            }
            Err(_) => {
                self.conns.remove(i);
                return;
            }
        }
        while self.conns[i].buf.len() >= 2 {
            let len = u16::from_be_bytes([self.conns[i].buf[0], self.conns[i].buf[1]]) as usize;
            if self.conns[i].buf.len() < 2 + len {
                break;
            }
            let q: Vec<u8> = self.conns[i].buf.drain(..2 + len).skip(2).collect();
            let id = self.conns[i].id;
            self.conns[i].deadline = Instant::now() + Duration::from_secs(10);
            match self.answer(&q) {
                Answer::Local(r) => self.tcp_reply(id, &r),
                Answer::Forward => self.forward(q, Client::Tcp(id), 0),
                Answer::Ignore => {}
            }
        }
    }

    fn tcp_reply(&mut self, id: u64, msg: &[u8]) {
        if let Some(pos) = self.conns.iter().position(|c| c.id == id) {
            let mut out = (msg.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(msg);
            // A short answer to a fresh connection fits its send buffer; a client that
            // does not read it is dropped.
            let _ = self.conns[pos].stream.set_nonblocking(false);
            let _ = self.conns[pos]
                .stream
                .set_write_timeout(Some(Duration::from_millis(200)));
            if self.conns[pos].stream.write_all(&out).is_err() {
                self.conns.remove(pos);
                return;
            }
            let _ = self.conns[pos].stream.set_nonblocking(true);
        }
    }

    fn reply(&mut self, client: &Client, msg: &[u8]) {
        match client {
            Client::Udp(to) => {
                let _ = self.sockets.udp.send_to(msg, to);
            }
            Client::Tcp(id) => self.tcp_reply(*id, msg),
        }
    }

    /// Relays `query` to the upstream server `from` on (and the next ones on timeout).
    fn forward(&mut self, query: Vec<u8>, client: Client, from: usize) {
        if query.len() < 12 {
            return;
        }
        if self.pending.len() >= MAX_PENDING || self.upstreams.is_empty() || !self.may_forward() {
            let r = error_reply(&query, RCODE_SERVFAIL);
            self.reply(&client, &r);
            return;
        }
        for (k, server) in self.upstreams.iter().enumerate().skip(from) {
            let via = match client {
                Client::Udp(_) => match udp_to(server, &query) {
                    Some(s) => Via::Udp(s),
                    None => continue,
                },
                Client::Tcp(_) => match tcp_to(server) {
                    Some(stream) => Via::Tcp {
                        stream,
                        sent: false,
                        buf: Vec::new(),
                    },
                    None => continue,
                },
            };
            self.pending.push(Pending {
                via,
                client,
                query,
                tried: k + 1,
                deadline: Instant::now() + UPSTREAM_TIMEOUT,
            });
            return;
        }
        let r = error_reply(&query, RCODE_SERVFAIL);
        self.reply(&client, &r);
    }

    fn upstream_answer(&mut self, i: usize) {
        if let Via::Tcp { .. } = self.pending[i].via {
            return self.upstream_tcp(i);
        }
        let Via::Udp(sock) = &self.pending[i].via else {
            return;
        };
        // The answer's length first (MSG_TRUNC): a buffer of its size only when it is long,
        // so that the monitor's stack does not grow by 64 KiB for good.
        let mut small = [0u8; 4096];
        let len = nix::sys::socket::recv(
            sock.as_raw_fd(),
            &mut small[..1],
            nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_TRUNC,
        )
        .unwrap_or(0);
        let mut big = Vec::new();
        let buf: &mut [u8] = if len > small.len() {
            big.resize(len, 0);
            &mut big
        } else {
            &mut small
        };
        let n = match sock.recv(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            // An ICMP error (nobody at that server): the next one.
            Err(_) => {
                let p = self.pending.remove(i);
                self.forward(p.query, p.client, p.tried);
                return;
            }
        };
        // The answer must be to this query (its id): anything else is ignored.
        if n < 12 || buf[..2] != self.pending[i].query[..2] {
            return;
        }
        let p = self.pending.remove(i);
        self.reply(&p.client, &buf[..n]);
    }

    /// A TCP relay made progress: connected (the query goes), or the answer came (whole:
    /// length first).
    fn upstream_tcp(&mut self, i: usize) {
        let p = &mut self.pending[i];
        let Via::Tcp { stream, sent, buf } = &mut p.via else {
            return;
        };
        let failed = if !*sent {
            let mut out = (p.query.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&p.query);
            // A short query on a fresh connection fits its send buffer at once.
            let ok = matches!(stream.take_error(), Ok(None))
                && matches!(stream.write(&out), Ok(n) if n == out.len());
            *sent = ok;
            !ok
        } else {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => true,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    false
                }
                Err(e) => e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::Interrupted,
            }
        };
        if failed {
            let p = self.pending.remove(i);
            return self.forward(p.query, p.client, p.tried);
        }
        let Via::Tcp { buf, .. } = &self.pending[i].via else {
            return;
        };
        if buf.len() >= 2 {
            let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
            if buf.len() >= 2 + len {
                let answer = buf[2..2 + len].to_vec();
                let p = self.pending.remove(i);
                self.reply(&p.client, &answer);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].deadline <= now {
                let p = self.pending.remove(i);
                self.forward(p.query, p.client, p.tried);
            } else {
                i += 1;
            }
        }
        self.conns.retain(|c| c.deadline > now);
    }

    /// Whether names not known here go upstream: not for a container whose networks are all
    /// `--internal` (Docker's rule: no way out).
    fn may_forward(&mut self) -> bool {
        let mine = self.my_networks();
        mine.is_empty() || mine.iter().any(|n| !self.nets[n].internal)
    }

    /// Reads again the networks whose leases changed; returns those this container is on
    /// (the default network aside: Docker's has no names).
    fn my_networks(&mut self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.networks_dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| {
                let n = e.ok()?.file_name().to_string_lossy().into_owned();
                let net = n.strip_suffix(".leases")?.to_string();
                (net != DEFAULT_NETWORK).then_some(net)
            })
            .collect();
        names.sort();
        self.nets.retain(|k, _| names.contains(k));
        for n in &names {
            self.refresh(n);
        }
        names
            .into_iter()
            .filter(|n| self.nets[n].leases.iter().any(|l| l.container == self.me))
            .collect()
    }

    fn refresh(&mut self, net: &str) {
        let dir = self.networks_dir.join(format!("{net}.leases"));
        let mtime = std::fs::metadata(&dir).and_then(|m| m.modified()).ok();
        if let Some(n) = self.nets.get(net) {
            // A cached read is trusted only if it was made well after the change it saw: two
            // changes within one tick of the file system's clock give one mtime.
            let settled = n
                .mtime
                .zip(Some(n.read_at))
                .and_then(|(m, r)| r.duration_since(m).ok())
                .is_some_and(|d| d > Duration::from_millis(50));
            if n.mtime == mtime && settled {
                return;
            }
        }
        let read_at = SystemTime::now();
        let leases = read_leases(&dir);
        let internal = std::fs::read(self.networks_dir.join(format!("{net}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("Internal")?.as_bool())
            .unwrap_or(false);
        self.nets.insert(
            net.to_string(),
            NetNames {
                mtime,
                read_at,
                internal,
                leases,
            },
        );
    }

    /// The addresses of `name` on this container's networks; None when not known here.
    pub fn lookup(&mut self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mine = self.my_networks();
        let target = self
            .links
            .iter()
            .find(|(_, alias)| *alias == name)
            .map(|(n, _)| n.clone());
        let mut out = Vec::new();
        let mut find = |net: &str, n: &str| {
            for l in &self.nets[net].leases {
                if l.names.iter().any(|x| x.eq_ignore_ascii_case(n))
                    && !out.contains(&l.ip)
                    && alive(l)
                {
                    out.push(l.ip);
                }
            }
        };
        for net in &mine {
            find(net, &name);
            if let Some(t) = &target {
                find(net, t);
            }
            // NAME.NETWORK: NAME on that network only.
            if let Some(stem) = name.strip_suffix(&format!(".{}", net.to_ascii_lowercase())) {
                find(net, stem);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// The name (`NAME.NETWORK`, as Docker answers) of an address of this container's
    /// networks.
    fn reverse(&mut self, ip: Ipv4Addr) -> Option<String> {
        let mine = self.my_networks();
        for net in &mine {
            if let Some(l) = self.nets[net]
                .leases
                .iter()
                .find(|l| l.ip == ip && alive(l))
            {
                if let Some(n) = l.names.first() {
                    return Some(format!("{n}.{net}"));
                }
            }
        }
        None
    }

    fn answer(&mut self, q: &[u8]) -> Answer {
        let Some(query) = parse_query(q) else {
            // Not a query berth can read: upstream may (a malformed one is dropped there).
            return if q.len() >= 12 && q[2] & 0x80 == 0 {
                Answer::Forward
            } else {
                Answer::Ignore
            };
        };
        if query.class != CLASS_IN {
            return Answer::Forward;
        }
        match query.qtype {
            TYPE_A | TYPE_AAAA | TYPE_ANY => match self.lookup(&query.name) {
                Some(ips) => {
                    let ips = if query.qtype == TYPE_AAAA {
                        vec![]
                    } else {
                        ips
                    };
                    Answer::Local(a_reply(q, &query, &ips))
                }
                None => Answer::Forward,
            },
            TYPE_PTR => match ptr_ip(&query.name).and_then(|ip| self.reverse(ip)) {
                Some(name) => Answer::Local(ptr_reply(q, &query, &name)),
                None => Answer::Forward,
            },
            _ => {
                if self.lookup(&query.name).is_some() {
                    // A name of the network, a type it has not: no data.
                    Answer::Local(a_reply(q, &query, &[]))
                } else {
                    Answer::Forward
                }
            }
        }
    }
}

/// A UDP socket of the calling namespace connected to `server`, the query sent.
fn udp_to(server: &SocketAddr, query: &[u8]) -> Option<UdpSocket> {
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).ok()?;
    sock.connect(server).ok()?;
    sock.set_nonblocking(true).ok()?;
    sock.send(query).ok()?;
    Some(sock)
}

/// A TCP connection to `server` being made (non-blocking: poll says when it is).
fn tcp_to(server: &SocketAddr) -> Option<TcpStream> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType, SockaddrStorage};
    let family = if server.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    match nix::sys::socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(*server)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Some(TcpStream::from(fd)),
        Err(_) => None,
    }
}

/// Whether a lease's endpoint still exists: its host-side veth goes with the container's
/// namespace, so a container that died with its monitor (SIGKILL, no release) stops
/// resolving at once, before any sweep removes its lease.
fn alive(l: &Lease) -> bool {
    Path::new("/sys/class/net").join(&l.host_veth).exists()
}

fn read_leases(dir: &Path) -> Vec<Lease> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Lease> = rd
        .filter_map(|e| {
            let e = e.ok()?;
            if e.file_name().to_string_lossy().starts_with('.') {
                return None;
            }
            serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()
        })
        .collect();
    out.sort_by_key(|l| u32::from(l.ip));
    out
}

enum Answer {
    Local(Vec<u8>),
    Forward,
    Ignore,
}

const TYPE_A: u16 = 1;
const TYPE_PTR: u16 = 12;
const TYPE_AAAA: u16 = 28;
const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;
const RCODE_SERVFAIL: u8 = 2;

/// The one question of a query.
#[derive(Debug, PartialEq)]
pub struct Query {
    pub name: String,
    pub qtype: u16,
    pub class: u16,
    /// Where the question ends in the message.
    pub end: usize,
}

/// Reads a standard query with one question (names without compression, as in questions).
pub fn parse_query(m: &[u8]) -> Option<Query> {
    if m.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([m[2], m[3]]);
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([m[4], m[5]]);
    if qr || opcode != 0 || qdcount != 1 {
        return None;
    }
    let mut i = 12;
    let mut name = String::new();
    loop {
        let len = *m.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let label = m.get(i..i + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(std::str::from_utf8(label).ok()?);
        i += len;
        if name.len() > 253 {
            return None;
        }
    }
    let qtype = u16::from_be_bytes([*m.get(i)?, *m.get(i + 1)?]);
    let class = u16::from_be_bytes([*m.get(i + 2)?, *m.get(i + 3)?]);
    Some(Query {
        name,
        qtype,
        class,
        end: i + 4,
    })
}

/// A reply's header and question, copied from the query, with `ancount` answers to follow.
fn reply_head(q: &[u8], query: &Query, rcode: u8, ancount: u16) -> Vec<u8> {
    let mut r = Vec::with_capacity(query.end + 64);
    r.extend_from_slice(&q[..2]);
    // QR, the query's opcode and RD; RA; the code.
    r.push(0x80 | (q[2] & 0x79));
    r.push(0x80 | rcode);
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&ancount.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&q[12..query.end]);
    r
}

fn answer_head(r: &mut Vec<u8>, rtype: u16, rdlen: usize) {
    // The name: a pointer to the question's (offset 12).
    r.extend_from_slice(&[0xc0, 0x0c]);
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&CLASS_IN.to_be_bytes());
    r.extend_from_slice(&TTL.to_be_bytes());
    r.extend_from_slice(&(rdlen as u16).to_be_bytes());
}

/// An answer with the addresses (none: no data).
pub fn a_reply(q: &[u8], query: &Query, ips: &[Ipv4Addr]) -> Vec<u8> {
    let mut r = reply_head(q, query, 0, ips.len() as u16);
    for ip in ips {
        answer_head(&mut r, TYPE_A, 4);
        r.extend_from_slice(&ip.octets());
    }
    r
}

fn ptr_reply(q: &[u8], query: &Query, name: &str) -> Vec<u8> {
    let mut data = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        data.push(l.len() as u8);
        data.extend_from_slice(l);
    }
    data.push(0);
    let mut r = reply_head(q, query, 0, 1);
    answer_head(&mut r, TYPE_PTR, data.len());
    r.extend_from_slice(&data);
    r
}

/// A reply with no answer and `rcode`, for any query with a readable header.
fn error_reply(q: &[u8], rcode: u8) -> Vec<u8> {
    match parse_query(q) {
        Some(query) => reply_head(q, &query, rcode, 0),
        None => {
            let mut r = q[..12].to_vec();
            r[2] = 0x80 | (q[2] & 0x79);
            r[3] = 0x80 | rcode;
            r[4..12].fill(0);
            r
        }
    }
}

/// The address of an `in-addr.arpa` name.
fn ptr_ip(name: &str) -> Option<Ipv4Addr> {
    let rest = name
        .trim_end_matches('.')
        .to_ascii_lowercase()
        .strip_suffix(".in-addr.arpa")?
        .to_string();
    let parts: Vec<u8> = rest
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<u8>>>()?;
    match parts.as_slice() {
        [d, c, b, a] => Some(Ipv4Addr::new(*a, *b, *c, *d)),
        _ => None,
    }
}

/// A query for `name` of `qtype` (tests and tools).
pub fn make_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    m
}

/// The A records of a reply (tests and tools): its code and addresses.
pub fn reply_addresses(r: &[u8]) -> Option<(u8, Vec<Ipv4Addr>)> {
    if r.len() < 12 || r[2] & 0x80 == 0 {
        return None;
    }
    let rcode = r[3] & 0xf;
    let ancount = u16::from_be_bytes([r[6], r[7]]);
    // Skip the question.
    let mut i = 12;
    while *r.get(i)? != 0 {
        if r[i] & 0xc0 == 0xc0 {
            i += 1;
            break;
        }
        i += 1 + r[i] as usize;
    }
    i += 5;
    let mut out = Vec::new();
    for _ in 0..ancount {
        // A name: a pointer, or labels.
        loop {
            let b = *r.get(i)?;
            if b & 0xc0 == 0xc0 {
                i += 2;
                break;
            }
            i += 1;
            if b == 0 {
                break;
            }
            i += b as usize;
        }
        let rtype = u16::from_be_bytes([*r.get(i)?, *r.get(i + 1)?]);
        let rdlen = u16::from_be_bytes([*r.get(i + 8)?, *r.get(i + 9)?]) as usize;
        i += 10;
        if rtype == TYPE_A && rdlen == 4 {
            let d = r.get(i..i + 4)?;
            out.push(Ipv4Addr::new(d[0], d[1], d[2], d[3]));
        }
        i += rdlen;
    }
    Some((rcode, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_answers() {
        let q = make_query(0x1234, "web.example", TYPE_A);
        let p = parse_query(&q).unwrap();
        assert_eq!(p.name, "web.example");
        assert_eq!((p.qtype, p.class, p.end), (TYPE_A, CLASS_IN, q.len()));
        let ips = [Ipv4Addr::new(10, 89, 0, 2), Ipv4Addr::new(10, 90, 0, 3)];
        let r = a_reply(&q, &p, &ips);
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(reply_addresses(&r), Some((0, ips.to_vec())));
        let e = error_reply(&q, RCODE_SERVFAIL);
        assert_eq!(reply_addresses(&e), Some((2, vec![])));
        // A reply is not a query; a query of two questions is not read.
        assert!(parse_query(&r).is_none());
        let mut two = q.clone();
        two[5] = 2;
        assert!(parse_query(&two).is_none());
        assert!(parse_query(&q[..q.len() - 1]).is_none());
        assert_eq!(
            ptr_ip("2.0.89.10.in-addr.arpa"),
            Some(Ipv4Addr::new(10, 89, 0, 2))
        );
        assert_eq!(ptr_ip("example.org"), None);
        let pq = make_query(7, "2.0.89.10.in-addr.arpa", TYPE_PTR);
        let pr = ptr_reply(&pq, &parse_query(&pq).unwrap(), "web.net1");
        assert!(pr.ends_with(b"\x03web\x04net1\x00"));
    }
}
