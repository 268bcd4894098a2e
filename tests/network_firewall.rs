//! berth's firewall (src/network/firewall.rs) and published ports (src/network/ports.rs) with
//! real traffic. Each test makes its own "host": a network namespace with a bridge or two,
//! "containers" (namespaces with a veth on a bridge) and a "remote host" (a namespace behind a
//! veth of the host's, with no route to the bridges' subnets). berth's firewall is applied in
//! that host namespace, so the machine's own links, rules and sysctls are never touched; a
//! guard checks it anyway (the machine's `nft list ruleset`, `iptables-save` and sysctls before
//! and after), and checks that the test host's firewall and sysctls are back as they were once
//! berth's networks are gone.
//!
//! Servers and clients are sockets of the test's own, in threads that join a namespace.

use berth::network::firewall::{read_sysctl, Firewall, NetworkRules};
use berth::network::nftables::{self, Backend};
use berth::network::ports::{self, allocate, parse_publish, Proto};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One test at a time: they share the machine's view (the guard's snapshots).
static SERIAL: Mutex<()> = Mutex::new(());

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) {
    run("ip", args);
}

/// Runs `f` in a thread that has joined the network namespace `ns` (its children too).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// What the machine's own firewall and sysctls look like (counters left out).
fn machine_snapshot() -> String {
    let nft = run("nft", &["list", "ruleset"]);
    let ipt: String = run("iptables-save", &[])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.find(" [") {
            Some(i) if l.starts_with(':') => l[..i].to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut s = format!("{nft}\n--\n{ipt}\n--\n");
    for k in [
        "net.ipv4.ip_forward",
        "net.ipv4.conf.all.route_localnet",
        "net.ipv4.conf.all.forwarding",
    ] {
        s.push_str(&format!("{k}={}\n", read_sysctl(k).unwrap()));
    }
    s
}

/// The machine as before, but for what other programs changed meanwhile: the machine is
/// shared (another session's dockerd may add its rules while a test runs), so a difference
/// fails only if it is one berth could have made here: its table, the test's interfaces or
/// subnets, or a sysctl.
fn check_machine(before: &str, after: &str) {
    if before == after {
        return;
    }
    let (b_rules, b_sysctl) = before.rsplit_once("--\n").unwrap();
    let (a_rules, a_sysctl) = after.rsplit_once("--\n").unwrap();
    assert_eq!(a_sysctl, b_sysctl, "the machine's sysctls changed");
    let b: std::collections::HashSet<&str> = b_rules.lines().collect();
    let a: std::collections::HashSet<&str> = a_rules.lines().collect();
    let marks = [
        "berth {",
        "10.199.",
        "192.168.199.",
        "\"br1\"",
        "\"br2\"",
        "vremote",
        "@pub_",
    ];
    for l in a.symmetric_difference(&b) {
        assert!(
            !marks.iter().any(|m| l.contains(m)),
            "the machine's firewall changed in berth's way: {l:?}"
        );
    }
    eprintln!("note: the machine's firewall changed meanwhile, by another program");
}

/// A ruleset without its counters (`counter packets N bytes M`): they move with traffic.
fn strip_counters(s: &str) -> String {
    let mut out = String::new();
    for l in s.lines() {
        let mut rest = l;
        while let Some(i) = rest.find("counter packets ") {
            out.push_str(&rest[..i + "counter".len()]);
            // Past "packets N bytes M".
            let tail = &rest[i + "counter ".len()..];
            let mut words = 0;
            let mut cut = tail.len();
            for (j, c) in tail.char_indices() {
                if c == ' ' {
                    words += 1;
                    if words == 4 {
                        cut = j;
                        break;
                    }
                }
            }
            rest = &tail[cut..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// A test's host namespace with its namespaces; dropping it deletes them all (and with them
/// every link and rule made in them), after checking the machine is as it was.
struct TestHost {
    host: String,
    spaces: Vec<String>,
    machine_before: String,
    state: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("berth-fw-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl TestHost {
    fn new(tag: &str) -> TestHost {
        let machine_before = machine_snapshot();
        let host = format!("bfw{}{tag}h", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &host]).output();
        ip(&["netns", "add", &host]);
        ip(&["-n", &host, "link", "set", "lo", "up"]);
        let t = TestHost {
            spaces: vec![host.clone()],
            host,
            machine_before,
            state: tempdir::Dir::new(tag),
        };
        // A new namespace inherits the machine's forwarding: off here, so that berth is
        // seen turning it on and putting it back.
        in_ns(&t.host, || {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap()
        });
        assert_eq!(t.forwarding(), "0");
        t
    }

    fn firewall(&self) -> Firewall {
        Firewall::new(&self.state.0)
    }

    fn forwarding(&self) -> String {
        in_ns(&self.host, || read_sysctl("net.ipv4.ip_forward").unwrap())
    }

    /// The test host's whole ruleset.
    fn ruleset(&self) -> String {
        in_ns(&self.host, || run("nft", &["list", "ruleset"]))
    }

    fn bridge(&self, name: &str, addr: &str) {
        let h = &self.host;
        ip(&["-n", h, "link", "add", name, "type", "bridge"]);
        ip(&["-n", h, "addr", "add", addr, "dev", name]);
        ip(&["-n", h, "link", "set", name, "up"]);
    }

    fn space(&mut self, name: &str) -> String {
        let ns = format!("bfw{}{name}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        self.spaces.push(ns.clone());
        ns
    }

    /// A "container": a namespace with eth0 on `bridge`, address `addr`, default route `gw`.
    fn container(&mut self, name: &str, bridge: &str, addr: &str, gw: &str) -> String {
        let ns = self.space(name);
        let h = self.host.clone();
        let hostside = format!("v{name}");
        ip(&[
            "-n", &h, "link", "add", &hostside, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&["-n", &h, "link", "set", &hostside, "master", bridge, "up"]);
        ip(&["-n", &ns, "addr", "add", addr, "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "route", "add", "default", "via", gw]);
        ns
    }

    /// The "remote host": 192.168.199.2 behind the test host's 192.168.199.1, with no route
    /// to the bridges' subnets (only masquerade lets their replies come back).
    fn remote(&mut self) -> String {
        let ns = self.space("r");
        let h = self.host.clone();
        ip(&[
            "-n", &h, "link", "add", "vremote", "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&[
            "-n",
            &h,
            "addr",
            "add",
            "192.168.199.1/24",
            "dev",
            "vremote",
        ]);
        ip(&["-n", &h, "link", "set", "vremote", "up"]);
        ip(&["-n", &ns, "addr", "add", "192.168.199.2/24", "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ns
    }

    /// Removes berth's networks and checks the test host's firewall is `expected` again
    /// (compared through `norm`) and forwarding as before berth's first network.
    fn remove_networks_keeping(
        &self,
        bridges: &[&str],
        expected: &str,
        norm: &dyn Fn(&str) -> String,
    ) {
        let fw = self.firewall();
        for b in bridges {
            let (fw, b) = (fw.clone(), b.to_string());
            in_ns(&self.host, move || fw.remove_network(&b).unwrap());
        }
        assert_eq!(
            norm(&self.ruleset()),
            norm(expected),
            "berth's table is gone"
        );
        assert_eq!(self.forwarding(), "0", "ip_forward put back");
    }

    /// Removes berth's networks and checks the test host's firewall and forwarding are back
    /// as they were before berth's first network.
    fn remove_networks(&self, bridges: &[&str]) {
        let fw = self.firewall();
        for b in bridges {
            let (fw, b) = (fw.clone(), b.to_string());
            in_ns(&self.host, move || fw.remove_network(&b).unwrap());
        }
        assert_eq!(self.ruleset().trim(), "", "berth's table is gone");
        assert_eq!(self.forwarding(), "0", "ip_forward put back");
        assert!(
            std::fs::read_dir(&self.state.0).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")),
            "no sysctl record left"
        );
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        for ns in self.spaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if !std::thread::panicking() {
            check_machine(&self.machine_before, &machine_snapshot());
        }
    }
}

fn net(bridge: &str, subnet: [u8; 4], internal: bool) -> NetworkRules {
    NetworkRules {
        bridge: bridge.to_string(),
        subnet: Ipv4Addr::from(subnet),
        prefix: 24,
        internal,
    }
}

fn add_network(t: &TestHost, n: NetworkRules) {
    let fw = t.firewall();
    in_ns(&t.host, move || fw.add_network(&n).unwrap());
}

/// A TCP server in `ns` on `port` that answers each connection with its peer's address.
fn tcp_server(ns: &str, port: u16) {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            let peer = c.peer_addr().unwrap();
            let _ = c.write_all(format!("hello {}", peer.ip()).as_bytes());
        }
    });
    rx.recv().unwrap();
}

/// A UDP server in `ns` on `port` that sends back "echo " and what it got.
fn udp_server(ns: &str, port: u16) {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let mut reply = b"echo ".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&reply, from);
        }
    });
    rx.recv().unwrap();
}

/// Connects from `ns` to `addr` and returns what the server said, or None.
fn tcp_get(ns: &str, addr: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    in_ns(ns, move || {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_millis(800)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).ok()?;
        Some(s)
    })
}

fn udp_ask(ns: &str, addr: &str, msg: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    let msg = msg.to_string();
    in_ns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        s.send_to(msg.as_bytes(), addr).ok()?;
        let mut buf = [0u8; 512];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

#[test]
fn masquerade_gives_egress_and_internal_has_none() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = TestHost::new("egress");
    t.bridge("br1", "10.199.1.1/24");
    t.bridge("br2", "10.199.2.1/24");
    let c1 = t.container("c1", "br1", "10.199.1.2/24", "10.199.1.1");
    let c2 = t.container("c2", "br2", "10.199.2.2/24", "10.199.2.1");
    let r = t.remote();
    tcp_server(&r, 7000);
    // Without berth's network: no forwarding, and no way back from the remote host.
    assert_eq!(tcp_get(&c1, "192.168.199.2:7000"), None);

    add_network(&t, net("br1", [10, 199, 1, 0], false));
    add_network(&t, net("br2", [10, 199, 2, 0], true));
    assert_eq!(t.forwarding(), "1");
    // br1 reaches the remote host, which sees the host's address (masquerade).
    assert_eq!(
        tcp_get(&c1, "192.168.199.2:7000").as_deref(),
        Some("hello 192.168.199.1")
    );
    // The internal br2 does not, even with a route the remote host could use to answer.
    ip(&[
        "-n",
        &r,
        "route",
        "add",
        "10.199.2.0/24",
        "via",
        "192.168.199.1",
    ]);
    assert_eq!(tcp_get(&c2, "192.168.199.2:7000"), None);
    // The rules are berth's own table's only.
    let rules = t.ruleset();
    assert!(rules.starts_with("table ip berth {"), "{rules}");
    assert_eq!(rules.matches("\ntable ").count(), 0, "{rules}");

    t.remove_networks(&["br2", "br1"]);
    assert_eq!(tcp_get(&c1, "192.168.199.2:7000"), None, "no egress left");
}

#[test]
fn networks_are_isolated() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = TestHost::new("iso");
    t.bridge("br1", "10.199.1.1/24");
    t.bridge("br2", "10.199.2.1/24");
    let c1 = t.container("c1", "br1", "10.199.1.2/24", "10.199.1.1");
    let c2 = t.container("c2", "br2", "10.199.2.2/24", "10.199.2.1");
    let c3 = t.container("c3", "br1", "10.199.1.3/24", "10.199.1.1");
    tcp_server(&c2, 80);
    tcp_server(&c1, 80);
    // Plain forwarding (the control): the two bridges reach each other.
    in_ns(&t.host, || {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap()
    });
    assert_eq!(
        tcp_get(&c1, "10.199.2.2:80").as_deref(),
        Some("hello 10.199.1.2")
    );
    in_ns(&t.host, || {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "0").unwrap()
    });

    add_network(&t, net("br1", [10, 199, 1, 0], false));
    add_network(&t, net("br2", [10, 199, 2, 0], false));
    assert_eq!(tcp_get(&c1, "10.199.2.2:80"), None, "br1 -> br2 dropped");
    assert_eq!(tcp_get(&c2, "10.199.1.2:80"), None, "br2 -> br1 dropped");
    // Within a network, containers talk (bridged, not forwarded).
    assert_eq!(
        tcp_get(&c3, "10.199.1.2:80").as_deref(),
        Some("hello 10.199.1.3")
    );
    // A network removed is isolated no more from what remains... and has no rules left.
    let fw = t.firewall();
    in_ns(&t.host, move || fw.remove_network("br2").unwrap());
    assert_eq!(
        in_ns(&t.host, {
            let fw = t.firewall();
            move || fw.bridges().unwrap()
        }),
        vec!["br1".to_string()]
    );
    assert!(!t.ruleset().contains("br2"), "{}", t.ruleset());
    t.remove_networks(&["br1"]);
}

#[test]
fn published_tcp_port_answers_everywhere() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = TestHost::new("pub");
    t.bridge("br1", "10.199.1.1/24");
    t.bridge("br2", "10.199.2.1/24");
    let c1 = t.container("c1", "br1", "10.199.1.2/24", "10.199.1.1");
    let c2 = t.container("c2", "br1", "10.199.1.3/24", "10.199.1.1");
    let c3 = t.container("c3", "br2", "10.199.2.2/24", "10.199.2.1");
    let r = t.remote();
    tcp_server(&c1, 80);
    add_network(&t, net("br1", [10, 199, 1, 0], false));
    add_network(&t, net("br2", [10, 199, 2, 0], false));

    // `-p 8080:80`: the port held on the host, then the map element.
    let spec = parse_publish("8080:80").unwrap();
    let fw = t.firewall();
    let held = in_ns(&t.host, move || {
        let started = Instant::now();
        let held = allocate(&[spec], false, &[], IpAddr::V4(Ipv4Addr::UNSPECIFIED)).unwrap();
        let b: Vec<_> = held.iter().map(|r| r.binding).collect();
        fw.publish("c1abc", Ipv4Addr::new(10, 199, 1, 2), &b)
            .unwrap();
        eprintln!("publish 1 port: {:?}", started.elapsed());
        held
    });
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].binding.host_port, 8080);

    // The host itself, on loopback and on the bridge's address.
    assert_eq!(
        tcp_get(&t.host, "127.0.0.1:8080").as_deref(),
        Some("hello 10.199.1.1"),
        "127.0.0.1 (masqueraded to the bridge's address)"
    );
    assert_eq!(
        tcp_get(&t.host, "10.199.1.1:8080").as_deref(),
        Some("hello 10.199.1.1")
    );
    // The remote host, on the host's address it knows (the client's own address seen).
    assert_eq!(
        tcp_get(&r, "192.168.199.1:8080").as_deref(),
        Some("hello 192.168.199.2")
    );
    // Another container of the network, through its gateway (hairpin, masqueraded).
    assert_eq!(
        tcp_get(&c2, "10.199.1.1:8080").as_deref(),
        Some("hello 10.199.1.1")
    );
    // A container of another network, through the host's address: a published port is
    // published to all (leaving its network, the client is masqueraded, as Docker's are);
    // the container's own address stays out of reach.
    assert_eq!(
        tcp_get(&c3, "10.199.2.1:8080").as_deref(),
        Some("hello 10.199.1.1")
    );
    assert_eq!(tcp_get(&c3, "10.199.1.2:80"), None);
    // The remote host cannot reach the container's own address, published or not.
    ip(&[
        "-n",
        &r,
        "route",
        "add",
        "10.199.1.0/24",
        "via",
        "192.168.199.1",
    ]);
    assert_eq!(tcp_get(&r, "10.199.1.2:80"), None);

    // Unpublished: gone, and the port free again once the reservation is dropped.
    let fw = t.firewall();
    let n = in_ns(&t.host, move || fw.unpublish("c1abc").unwrap());
    assert_eq!(n, 1);
    drop(held);
    assert_eq!(tcp_get(&r, "192.168.199.1:8080"), None);
    t.remove_networks(&["br1", "br2"]);
}

#[test]
fn published_udp_port_on_one_address() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = TestHost::new("udp");
    t.bridge("br1", "10.199.1.1/24");
    let c1 = t.container("c1", "br1", "10.199.1.2/24", "10.199.1.1");
    let r = t.remote();
    udp_server(&c1, 53);
    add_network(&t, net("br1", [10, 199, 1, 0], false));
    let fw = t.firewall();
    let held = in_ns(&t.host, move || {
        let specs = [
            parse_publish("127.0.0.1:5353:53/udp").unwrap(),
            parse_publish("192.168.199.1:6000-6001:53-54/udp").unwrap(),
        ];
        let held = allocate(&specs, false, &[], IpAddr::V4(Ipv4Addr::UNSPECIFIED)).unwrap();
        let b: Vec<_> = held.iter().map(|r| r.binding).collect();
        fw.publish("c1udp", Ipv4Addr::new(10, 199, 1, 2), &b)
            .unwrap();
        held
    });
    assert_eq!(held.len(), 3);
    assert_eq!(
        udp_ask(&t.host, "127.0.0.1:5353", "hi").as_deref(),
        Some("echo hi")
    );
    assert_eq!(
        udp_ask(&r, "192.168.199.1:6000", "there").as_deref(),
        Some("echo there")
    );
    // Published on 127.0.0.1 only: not on the address the remote host sees.
    assert_eq!(udp_ask(&r, "192.168.199.1:5353", "no"), None);
    // TCP is not published.
    tcp_server(&c1, 53);
    assert_eq!(tcp_get(&t.host, "127.0.0.1:5353"), None);
    // The PORTS column and `port` of these bindings.
    let b: Vec<_> = held.iter().map(|r| r.binding).collect();
    assert_eq!(
        ports::ports_column(&b, &[]),
        "127.0.0.1:5353->53/udp, 192.168.199.1:6000->53/udp, 192.168.199.1:6001->54/udp"
    );
    assert_eq!(
        ports::port_output(&b, Some("53/udp"), "c1").unwrap(),
        "127.0.0.1:5353\n192.168.199.1:6000\n"
    );
    t.remove_networks(&["br1"]);
}

#[test]
fn a_taken_port_is_refused_and_sweeps_are_per_container() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = TestHost::new("taken");
    t.bridge("br1", "10.199.1.1/24");
    add_network(&t, net("br1", [10, 199, 1, 0], false));
    let fw = t.firewall();
    in_ns(&t.host, move || {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        // A host program on the port.
        let _l = TcpListener::bind("0.0.0.0:8081").unwrap();
        let err = allocate(&[parse_publish("8081:80").unwrap()], false, &[], any).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Bind for 0.0.0.0:8081 failed: port is already allocated"
        );
        // UDP on the same number is another port.
        assert!(allocate(&[parse_publish("8081:80/udp").unwrap()], false, &[], any).is_ok());
        // Another container holding it.
        let a = allocate(&[parse_publish("8082:80").unwrap()], false, &[], any).unwrap();
        let err = allocate(
            &[parse_publish("127.0.0.1:8082:80").unwrap()],
            false,
            &[],
            any,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Bind for 127.0.0.1:8082 failed: port is already allocated"
        );
        // A host range takes the first free port in it.
        let r = allocate(&[parse_publish("8081-8083:80").unwrap()], false, &[], any).unwrap();
        assert_eq!(r[0].binding.host_port, 8083);
        // -P: the exposed ports not published get ports of the kernel's ephemeral range.
        let exposed = [(80, Proto::Tcp), (53, Proto::Udp)];
        let p = allocate(&[parse_publish("9000:80").unwrap()], true, &exposed, any).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].binding.host_port, 9000);
        assert_eq!(p[1].binding.container_port, 53);
        assert!(p[1].binding.host_port >= 1024);

        // In the firewall: a port a container publishes (its reservation gone with a
        // SIGKILLed monitor, its elements still there) is refused to another.
        let b: Vec<_> = a.iter().map(|r| r.binding).collect();
        fw.publish("ctra", Ipv4Addr::new(10, 199, 1, 2), &b)
            .unwrap();
        let pb: Vec<_> = p.iter().map(|r| r.binding).collect();
        fw.publish("ctrb", Ipv4Addr::new(10, 199, 1, 3), &pb)
            .unwrap();
        drop(a);
        let again = allocate(
            &[parse_publish("127.0.0.1:8082:80").unwrap()],
            false,
            &[],
            any,
        )
        .unwrap();
        let b2: Vec<_> = again.iter().map(|r| r.binding).collect();
        let err = fw
            .publish("ctrc", Ipv4Addr::new(10, 199, 1, 4), &b2)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Bind for 127.0.0.1:8082 failed: port is already allocated"
        );
        // The sweep of one container removes its elements and no other's.
        assert_eq!(fw.published().unwrap().len(), 3);
        assert_eq!(fw.unpublish("ctra").unwrap(), 1);
        assert_eq!(fw.unpublish("ctra").unwrap(), 0);
        let left = fw.published().unwrap();
        assert_eq!(left.len(), 2);
        assert!(left.iter().all(|p| p.container == "ctrb"));
        // Now free for the third.
        fw.publish("ctrc", Ipv4Addr::new(10, 199, 1, 4), &b2)
            .unwrap();
        // A restarted container publishes its ports again: no clash with itself.
        fw.publish("ctrc", Ipv4Addr::new(10, 199, 1, 4), &b2)
            .unwrap();
        // The repair's sweep: only the live container's ports stay.
        assert_eq!(fw.retain(|c| c == "ctrc").unwrap(), 2);
        let left = fw.published().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].container, "ctrc");
        assert_eq!(left[0].binding.host_port, 8082);
        assert_eq!(left[0].container_ip, Ipv4Addr::new(10, 199, 1, 4));
    });
    // The last network's removal takes the remaining elements with the table.
    t.remove_networks(&["br1"]);
}

/// The cost of berth's firewall work, printed (`--nocapture`) and bounded loosely: a network
/// is made once, a container without ports costs nothing, one with ports one transaction
/// (after one listing, for clashes). Both ways of running nft's commands.
#[test]
fn firewall_costs_a_few_milliseconds() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rss = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
            .unwrap()
    };
    let (before, s) = (rss(), Instant::now());
    assert!(
        nftables::in_process_available(),
        "libnftables.so.1 (package libnftables1) loads"
    );
    eprintln!(
        "dlopen libnftables: {:?}, VmRSS {before} -> {} (if not loaded before)",
        s.elapsed(),
        rss()
    );
    let t = TestHost::new("cost");
    t.bridge("br1", "10.199.1.1/24");
    for backend in [Backend::Auto, Backend::Exec] {
        let fw = t.firewall().backend(backend);
        let times = in_ns(&t.host, move || {
            let n = net("br1", [10, 199, 1, 0], false);
            let s = Instant::now();
            fw.add_network(&n).unwrap();
            let add_net = s.elapsed();
            let mut publish = Vec::new();
            let mut unpublish = Vec::new();
            for i in 0..10u16 {
                let s = Instant::now();
                let held = allocate(
                    &[parse_publish(&format!("{}:80", 20000 + i)).unwrap()],
                    false,
                    &[],
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                )
                .unwrap();
                let b: Vec<_> = held.iter().map(|r| r.binding).collect();
                fw.publish("cost", Ipv4Addr::new(10, 199, 1, 2), &b)
                    .unwrap();
                publish.push(s.elapsed());
                let s = Instant::now();
                assert_eq!(fw.unpublish("cost").unwrap(), 1);
                unpublish.push(s.elapsed());
            }
            let s = Instant::now();
            fw.remove_network("br1").unwrap();
            let rm_net = s.elapsed();
            publish.sort();
            unpublish.sort();
            (add_net, publish[5], unpublish[5], rm_net)
        });
        eprintln!(
            "{backend:?}: add_network {:?}, publish (median of 10) {:?}, unpublish {:?}, \
             remove_network {:?}",
            times.0, times.1, times.2, times.3
        );
        for d in [times.0, times.1, times.2, times.3] {
            assert!(d < Duration::from_millis(300), "{times:?}");
        }
        assert_eq!(t.ruleset().trim(), "");
        assert_eq!(t.forwarding(), "0");
    }
}

/// berth's table beside other engines' and the host's own: Docker's iptables-nft rules and
/// an `inet filter` table of the host's are left exactly as they were, through a network's
/// life with published ports, and do not keep berth's rules from working.
#[test]
fn coexists_with_other_engines_tables() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = TestHost::new("coex");
    t.bridge("br1", "10.199.1.1/24");
    let c1 = t.container("c1", "br1", "10.199.1.2/24", "10.199.1.1");
    let r = t.remote();
    tcp_server(&c1, 80);
    tcp_server(&r, 7000);
    let others = in_ns(&t.host, || {
        for args in [
            &["-t", "nat", "-N", "DOCKER"][..],
            &[
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "-j",
                "DOCKER",
            ],
            &[
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                "172.17.0.0/16",
                "!",
                "-o",
                "docker0",
                "-j",
                "MASQUERADE",
            ],
            &["-t", "filter", "-N", "DOCKER-USER"],
            &["-t", "filter", "-A", "FORWARD", "-j", "DOCKER-USER"],
            &["-t", "filter", "-A", "DOCKER-USER", "-j", "RETURN"],
        ] {
            run("iptables", args);
        }
        let host_table = "table inet filter {\n chain input { type filter hook input priority 0; policy accept; tcp dport 22 accept; }\n}\n";
        let mut nft = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        nft.stdin
            .take()
            .unwrap()
            .write_all(host_table.as_bytes())
            .unwrap();
        assert!(nft.wait().unwrap().success());
        (run("nft", &["list", "ruleset"]), run("iptables-save", &[]))
    });
    add_network(&t, net("br1", [10, 199, 1, 0], false));
    let fw = t.firewall();
    let held = in_ns(&t.host, move || {
        let held = allocate(
            &[parse_publish("8080:80").unwrap()],
            false,
            &[],
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        )
        .unwrap();
        let b: Vec<_> = held.iter().map(|r| r.binding).collect();
        fw.publish("c1", Ipv4Addr::new(10, 199, 1, 2), &b).unwrap();
        held
    });
    assert_eq!(
        tcp_get(&r, "192.168.199.1:8080").as_deref(),
        Some("hello 192.168.199.2")
    );
    assert_eq!(
        tcp_get(&c1, "192.168.199.2:7000").as_deref(),
        Some("hello 192.168.199.1")
    );
    // The others' tables, as they were, with berth's beside them.
    let now = t.ruleset();
    assert!(now.contains("table ip berth {"));
    let without_berth = {
        let start = now.find("table ip berth {").unwrap();
        let end = now[start..].find("\n}\n").unwrap() + start + 3;
        format!("{}{}", &now[..start], &now[end..])
    };
    let strip = |s: &str| strip_counters(s);
    assert_eq!(strip(&without_berth), strip(&others.0));
    drop(held);
    t.remove_networks_keeping(&["br1"], &others.0, &strip);
    let ipt = in_ns(&t.host, || run("iptables-save", &[]));
    let norm = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.find(" [") {
                Some(i) if l.starts_with(':') => l[..i].to_string(),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(norm(&ipt), norm(&others.1));
}

/// The bridges' `route_localnet` (for 127.0.0.1 to reach published ports) must not open the
/// host's loopback services to containers (CVE-2020-8558): a container that routes
/// 127.0.0.0/8 to its gateway (what CAP_NET_RAW's forged packets amount to) reaches a
/// 127.0.0.1 service of the host with route_localnet alone, and not with berth's rules.
#[test]
fn containers_cannot_reach_the_hosts_loopback() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut t = TestHost::new("lo");
    t.bridge("br1", "10.199.1.1/24");
    let c1 = t.container("c1", "br1", "10.199.1.2/24", "10.199.1.1");
    // The host's loopback service.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = format!("/run/netns/{}", t.host);
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind("127.0.0.1:9999").unwrap();
        tx.send(()).unwrap();
        for c in l.incoming() {
            let Ok(mut c) = c else { break };
            let _ = c.write_all(b"secret");
        }
    });
    rx.recv().unwrap();
    // The container sends 127.0.0.1 out of eth0 to the host.
    ip(&["-n", &c1, "addr", "flush", "dev", "lo"]);
    in_ns(&c1, || {
        std::fs::write("/proc/sys/net/ipv4/conf/eth0/route_localnet", "1").unwrap();
        std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1").unwrap();
    });
    ip(&[
        "-n",
        &c1,
        "route",
        "add",
        "127.0.0.1/32",
        "via",
        "10.199.1.1",
        "src",
        "10.199.1.2",
    ]);
    // The control: route_localnet on the bridge alone lets it in.
    in_ns(&t.host, || {
        std::fs::write("/proc/sys/net/ipv4/conf/br1/route_localnet", "1").unwrap()
    });
    assert_eq!(tcp_get(&c1, "127.0.0.1:9999").as_deref(), Some("secret"));
    add_network(&t, net("br1", [10, 199, 1, 0], false));
    assert_eq!(tcp_get(&c1, "127.0.0.1:9999"), None);
    t.remove_networks(&["br1"]);
}
