//! The engine's networks with real containers from a busybox image: the default network,
//! published ports (TCP from 127.0.0.1, from the host's own address and from a "test host" in
//! a network namespace of the test's own, behind a test bridge; UDP; `-P`), a port taken,
//! egress through NAT (to the test host), `--internal`, isolation between user networks, a
//! container on two networks, `network rm` of a network in use, host and container network
//! modes with `-p`, and berth or its monitor killed at several instants of a start with `-p`.
//!
//! These run on the machine's own network namespace (berth's table is the host's): a guard
//! snapshots the machine's links, routes, nftables ruleset, iptables rules and sysctls, and
//! after the test (its containers, networks and test host removed) compares, failing on any
//! difference of berth's kind (its bridges, veths, subnets, container tags, the test host's
//! names) and tolerating what other programs (another engine) changed meanwhile. Root only;
//! one test at a time.

mod image_support;

use image_support::{busybox_tar, is_root, make_image, Scratch};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// busybox's web server on port 80, serving /etc (its `index` answers with the hostname).
const HTTPD: [&str; 6] = ["httpd", "-f", "-p", "80", "-h", "/etc"];

fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap()
}

fn must(cmd: &str, args: &[&str]) -> String {
    let out = sh(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// The machine's state berth could change.
#[derive(Clone)]
struct Snapshot {
    links: BTreeSet<String>,
    routes: BTreeSet<String>,
    nft: BTreeSet<String>,
    iptables: BTreeSet<String>,
    sysctls: String,
}

fn snapshot() -> Snapshot {
    let links: serde_json::Value = serde_json::from_str(&must("ip", &["-j", "link"])).unwrap();
    let routes: serde_json::Value =
        serde_json::from_str(&must("ip", &["-j", "route", "show", "table", "all"])).unwrap();
    let nft = must("nft", &["list", "ruleset"]);
    let ipt = if which("iptables-save") {
        must("iptables-save", &[])
    } else {
        String::new()
    };
    let mut sysctls = String::new();
    for k in [
        "ip_forward",
        "conf/all/route_localnet",
        "conf/all/forwarding",
    ] {
        let v = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{k}")).unwrap();
        sysctls.push_str(&format!("{k}={}", v.trim()));
        sysctls.push('\n');
    }
    Snapshot {
        links: links
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect(),
        routes: routes
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect(),
        nft: nft
            .lines()
            .map(|l| l.split(" counter packets").next().unwrap().to_string())
            .collect(),
        iptables: ipt
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(" [").next().unwrap().to_string())
            .collect(),
        sysctls,
    }
}

const REMOTE_NET: &str = "192.168.197";

/// A scratch data root with the busybox images, a test host, and the machine's snapshot;
/// at drop its containers and networks go, then the test host, and the machine is compared.
struct Env {
    s: Scratch,
    before: Snapshot,
    /// The test host's namespace, bridge and veth (host end).
    ns: String,
    tbridge: String,
    tveth: String,
    /// Names berth used in this test (bridges, veths, subnets, tags): none may remain.
    marks: BTreeSet<String>,
    checked: bool,
}

impl Env {
    fn new(tag: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Env)> {
        if !is_root() || !which("nft") {
            eprintln!("SKIPPED: needs root and nft");
            return None;
        }
        let lock = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let before = snapshot();
        let s = Scratch::new(&format!("netengine-{tag}"));
        let tar = busybox_tar(&s);
        let store = s.store();
        let cfg = image_support::cmd(&["sh"]);
        make_image(
            &store,
            "busybox:latest",
            std::slice::from_ref(&tar),
            cfg.clone(),
        );
        let mut exposing = cfg;
        exposing
            .exposed_ports
            .insert("80/tcp".into(), serde_json::json!({}));
        make_image(&store, "exposing:latest", &[tar], exposing);
        let pid = std::process::id();
        let mut e = Env {
            s,
            before,
            ns: format!("bne{pid}"),
            tbridge: format!("bnt{pid}"),
            tveth: format!("bnv{pid}"),
            marks: BTreeSet::new(),
            checked: false,
        };
        e.test_host();
        e.marks.insert(e.tag());
        Some((lock, e))
    }

    /// The test host: a namespace behind a veth on a test bridge of the host's
    /// (192.168.197.1/24), its address 192.168.197.2, its default route via the bridge.
    fn test_host(&mut self) {
        let (ns, br, v) = (self.ns.clone(), self.tbridge.clone(), self.tveth.clone());
        let _ = sh("ip", &["netns", "del", &ns]);
        let _ = sh("ip", &["link", "del", &br]);
        must("ip", &["netns", "add", &ns]);
        must("ip", &["link", "add", &br, "type", "bridge"]);
        must(
            "ip",
            &["addr", "add", &format!("{REMOTE_NET}.1/24"), "dev", &br],
        );
        must("ip", &["link", "set", &br, "up"]);
        must(
            "ip",
            &[
                "link", "add", &v, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        );
        must("ip", &["link", "set", &v, "master", &br, "up"]);
        must("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        must(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{REMOTE_NET}.2/24"),
                "dev",
                "eth0",
            ],
        );
        must("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        must(
            "ip",
            &[
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &format!("{REMOTE_NET}.1"),
            ],
        );
        for m in [&ns, &br, &v] {
            self.marks.insert(m.to_string());
        }
        self.marks.insert(format!("{REMOTE_NET}."));
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = self.s.command(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let out = Command::new("timeout")
            .arg("60")
            .arg(c.get_program())
            .args(c.get_args())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_ne!(out.status.code(), Some(124), "berth {args:?} hung");
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(!out.status.success(), "berth {args:?} should have failed");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn inspect(&self, c: &str, f: &str) -> String {
        self.ok(&["container", "inspect", "-f", f, c])
            .trim()
            .to_string()
    }

    /// Runs a detached container and records its network names.
    fn start(&mut self, args: &[&str]) -> String {
        let mut a = vec!["container", "run", "-d"];
        a.extend_from_slice(args);
        let id = self.ok(&a).trim().to_string();
        self.note_networks();
        self.marks.insert(id.clone());
        id
    }

    fn data(&self) -> PathBuf {
        self.s.data_root()
    }

    /// Remembers the bridges, subnets and veths of the data root's networks.
    fn note_networks(&mut self) {
        let dir = self.data().join("networks");
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            if p.extension().is_some_and(|x| x == "json") {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                if let Some(b) = v["Options"]["com.docker.network.bridge.name"].as_str() {
                    self.marks.insert(format!("\"{b}\""));
                    self.marks.insert(b.to_string());
                }
                if let Some(sn) = v["IPAM"]["Config"][0]["Subnet"].as_str() {
                    self.marks.insert(sn.to_string());
                }
            } else if p.is_dir() {
                for l in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                    let t = std::fs::read_to_string(l.path()).unwrap_or_default();
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                        if let Some(h) = v["HostVeth"].as_str() {
                            self.marks.insert(h.to_string());
                        }
                    }
                }
            }
        }
    }

    fn leases(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.data().join("networks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().is_dir() {
                for l in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                    out.push(l.file_name().to_string_lossy().into_owned());
                }
            }
        }
        out
    }

    /// The prefix of this data root's tags in the table.
    fn tag(&self) -> String {
        berth::network::publish::tag(
            &berth::engine::record::Engine::new(&self.data(), &self.s.dir.join("run")),
            "",
        )
    }

    /// The table's elements tagged with this data root's containers.
    fn elements(&self) -> Vec<String> {
        let out = sh("nft", &["list", "table", "ip", "berth"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let tag = self.tag();
        text.split(',')
            .filter(|e| e.contains(&tag))
            .map(str::to_string)
            .collect()
    }

    /// The veths attached to the data root's bridges.
    fn veths(&self) -> Vec<String> {
        let mut out = Vec::new();
        for m in self.marks.iter().filter(|m| m.starts_with("bt")) {
            let o = sh("ip", &["-o", "link", "show", "master", m]);
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                out.push(l.to_string());
            }
        }
        out
    }

    /// Waits for the host ends of the data root's veths to go: the kernel removes a pair
    /// with its namespace, in the background, once the container's last process is gone.
    fn veths_gone(&self, what: &str) {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.veths();
            if v.is_empty() {
                return;
            }
            assert!(Instant::now() < end, "{what}: veths left {v:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cleanup(&mut self) {
        let ids = self.run(&["container", "ls", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.run(&["container", "rm", "-f", id]);
        }
        self.note_networks();
        let _ = berth::network::publish::remove_all_networks(&self.data());
        let _ = sh("ip", &["netns", "del", &self.ns]);
        let _ = sh("ip", &["link", "del", &self.tbridge]);
        let _ = sh("ip", &["link", "del", &self.tveth]);
    }

    fn compare(&self) {
        let after = snapshot();
        let b = &self.before;
        let ours = |l: &str| self.marks.iter().any(|m| l.contains(m.as_str()));
        let mut bad = Vec::new();
        for (what, x, y) in [
            ("link", &b.links, &after.links),
            ("route", &b.routes, &after.routes),
            ("nft", &b.nft, &after.nft),
            ("iptables", &b.iptables, &after.iptables),
        ] {
            for l in x.symmetric_difference(y) {
                if ours(l) || (what == "nft" && l.contains("pub_") && l.contains("comment")) {
                    bad.push(format!("{what}: {l}"));
                }
            }
        }
        // Forwarding stays on while other networks of berth's (other data roots) remain.
        let berth_left = after.nft.iter().any(|l| l.starts_with("table ip berth"));
        if b.sysctls != after.sysctls && !berth_left {
            bad.push(format!("sysctls: {} -> {}", b.sysctls, after.sysctls));
        }
        assert!(
            bad.is_empty(),
            "the machine changed in berth's way: {bad:#?}"
        );
        if b.links != after.links || b.nft != after.nft || b.iptables != after.iptables {
            eprintln!(
                "note: the machine's links or firewall changed meanwhile, by another program"
            );
        }
    }

    fn check(mut self) {
        self.cleanup();
        self.checked = true;
        self.compare();
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if !self.checked {
            self.cleanup();
            if !std::thread::panicking() {
                self.compare();
            }
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let p = l.local_addr().unwrap().port();
    // Also free for UDP.
    if UdpSocket::bind(("0.0.0.0", p)).is_err() {
        return free_port();
    }
    p
}

/// `GET /hostname` over HTTP/1.0: curl when installed, else a socket of our own.
fn http_get(host: &str, port: u16, ns: Option<&str>) -> Result<String, String> {
    let url = format!("http://{host}:{port}/hostname");
    if which("curl") {
        let mut args: Vec<&str> = Vec::new();
        if let Some(ns) = ns {
            args.extend(["netns", "exec", ns]);
        }
        args.extend(["curl", "-sS", "-m", "3", &url]);
        let (prog, rest) = if ns.is_some() {
            ("ip", &args[..])
        } else {
            ("curl", &args[1..])
        };
        let out = sh(prog, rest);
        return if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        };
    }
    let host = host.to_string();
    let get = move || -> Result<String, String> {
        let addr: SocketAddr = format!("{host}:{port}").parse().unwrap();
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"GET /hostname HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut r = String::new();
        s.read_to_string(&mut r).map_err(|e| e.to_string())?;
        Ok(r.split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default())
    };
    match ns {
        Some(ns) => in_ns(&format!("/run/netns/{ns}"), get),
        None => get(),
    }
}

/// Runs `f` in a thread joined to the network namespace at `path`.
fn in_ns<T: Send + 'static>(path: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_string();
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Waits until `GET /hostname` answers.
fn wait_http(host: &str, port: u16) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(host, port, None) {
            Ok(body) if !body.is_empty() => return body,
            r => assert!(Instant::now() < end, "{host}:{port} never answered: {r:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A global IPv4 address of the host on no bridge of berth's or the test's.
fn host_address(e: &Env) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(&must("ip", &["-j", "-4", "addr"])).unwrap();
    v.as_array()?.iter().find_map(|l| {
        let name = l["ifname"].as_str()?;
        if name == "lo" || name.starts_with("bt") || name == e.tbridge {
            return None;
        }
        l["addr_info"].as_array()?.iter().find_map(|a| {
            (a["scope"] == "global").then(|| a["local"].as_str().unwrap().to_string())
        })
    })
}

/// Whether the host's other firewall drops forwarded packets (Docker's `iptables -P FORWARD
/// DROP`): what berth's table accepts, another base chain may still drop.
fn forwarding_dropped() -> bool {
    let out = sh("iptables", &["-S", "FORWARD"]);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().any(|l| l == "-P FORWARD DROP")
}

#[test]
fn published_tcp_port_answers_on_loopback_the_host_address_and_from_a_test_host() {
    let Some((_l, mut e)) = Env::new("tcp") else {
        return;
    };
    let hp = free_port();
    let publish = format!("{hp}:80");
    let id = e.start(&[&["--name", "web", "-p", &publish, "busybox"][..], &HTTPD].concat());
    let short = &id[..12];
    assert_eq!(wait_http("127.0.0.1", hp).trim(), short);
    let addr = host_address(&e).expect("a global address of the host");
    assert_eq!(http_get(&addr, hp, None).unwrap().trim(), short);
    // The test host, through the host's addresses (forwarded to the bridge).
    if forwarding_dropped() {
        eprintln!(
            "note: the host's FORWARD policy is DROP (another engine's): test host part skipped"
        );
    } else {
        let via_bridge = http_get(&format!("{REMOTE_NET}.1"), hp, Some(&e.ns));
        assert_eq!(via_bridge.unwrap().trim(), short);
        let via_addr = http_get(&addr, hp, Some(&e.ns));
        assert_eq!(via_addr.unwrap().trim(), short);
    }
    // The container's own address is not reachable from the test host.
    let cip = e.inspect("web", "{{.NetworkSettings.IPAddress}}");
    assert!(cip.starts_with("10."), "{cip}");
    assert!(http_get(&cip, 80, Some(&e.ns)).is_err());
    // What the commands show.
    assert_eq!(e.ok(&["port", "web"]), format!("80/tcp -> 0.0.0.0:{hp}\n"));
    assert_eq!(e.ok(&["port", "web", "80/tcp"]), format!("0.0.0.0:{hp}\n"));
    let (code, err) = e.fails(&["port", "web", "81"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("No public port '81/tcp' published for web"),
        "{err}"
    );
    let ls = e.ok(&["container", "ls", "--format", "{{.Ports}}"]);
    assert_eq!(ls.trim(), format!("0.0.0.0:{hp}->80/tcp"));
    assert_eq!(
        e.inspect("web", "{{json .NetworkSettings.Ports}}"),
        format!(r#"{{"80/tcp":[{{"HostIp":"0.0.0.0","HostPort":"{hp}"}}]}}"#)
    );
    assert_eq!(
        e.inspect("web", "{{json .HostConfig.PortBindings}}"),
        format!(r#"{{"80/tcp":[{{"HostIp":"","HostPort":"{hp}"}}]}}"#)
    );
    assert_eq!(
        e.inspect("web", "{{json .Config.ExposedPorts}}"),
        r#"{"80/tcp":{}}"#
    );
    assert_eq!(e.elements().len(), 1, "{:?}", e.elements());
    // The monitor published through a child of its own: libnftables is not in its maps.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(e.data().join("containers").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let monitor = state["Monitor"]["pid"].as_i64().unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{monitor}/maps")).unwrap();
    assert!(
        !maps.contains("libnftables"),
        "the monitor maps libnftables"
    );

    // Egress: NAT to the test host, which sees the host's address on its link.
    if !forwarding_dropped() {
        let server = TcpListenerIn::new(&e.ns, 8000);
        let got = e.ok(&[
            "container",
            "exec",
            "web",
            "timeout",
            "5",
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{REMOTE_NET}.2:8000/"),
        ]);
        assert_eq!(got.trim(), format!("{REMOTE_NET}.1"));
        server.stop();
    }

    // -P: the image's EXPOSE, and --expose, to free host ports.
    e.start(&[
        "--name", "exp", "-P", "exposing", "httpd", "-f", "-p", "80", "-h", "/etc",
    ]);
    let p = e.ok(&["port", "exp", "80"]);
    let port: u16 = p.trim().strip_prefix("0.0.0.0:").unwrap().parse().unwrap();
    assert_eq!(wait_http("127.0.0.1", port).trim().len(), 12);
    e.start(&[
        "--name", "exp2", "--expose", "81", "-P", "busybox", "httpd", "-f", "-p", "81", "-h",
        "/etc",
    ]);
    let p = e.ok(&["port", "exp2", "81/tcp"]);
    let port2: u16 = p.trim().strip_prefix("0.0.0.0:").unwrap().parse().unwrap();
    assert_eq!(wait_http("127.0.0.1", port2).trim().len(), 12);
    // Exposed without -P: in the PORTS column, not published.
    e.start(&[
        "--name", "exp3", "--expose", "82", "busybox", "sleep", "1000",
    ]);
    assert_eq!(e.ok(&["port", "exp3"]), "");
    let ls = e.ok(&[
        "container",
        "ls",
        "--filter",
        "name=exp3",
        "--format",
        "{{.Ports}}",
    ]);
    assert_eq!(ls.trim(), "82/tcp");

    // rm -f: the elements go and the host ports are free again.
    e.ok(&["rm", "-f", "web", "exp", "exp2", "exp3"]);
    assert!(e.elements().is_empty(), "{:?}", e.elements());
    for p in [hp, port, port2] {
        TcpListener::bind(("0.0.0.0", p)).unwrap();
    }
    assert!(e.leases().is_empty(), "{:?}", e.leases());
    e.veths_gone("");
    e.check();
}

/// A TCP server in a namespace that answers each request with the client's address.
struct TcpListenerIn {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpListenerIn {
    fn new(ns: &str, port: u16) -> TcpListenerIn {
        let path = format!("/run/netns/{ns}");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let st = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf);
                        let body = peer.ip().to_string();
                        let _ = write!(
                            s,
                            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        rx.recv().unwrap();
        TcpListenerIn {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TcpListenerIn {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn published_udp_port_and_a_taken_port() {
    let Some((_l, mut e)) = Env::new("udp") else {
        return;
    };
    let up = free_port();
    e.start(&[
        "--name",
        "udp1",
        "-p",
        &format!("{up}:5353/udp"),
        "busybox",
        "sleep",
        "1000",
    ]);
    // busybox has no UDP server: one of the test's own in the container's namespace.
    let pid = e.inspect("udp1", "{{.State.Pid}}");
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = format!("/proc/{pid}/ns/net");
    let server = std::thread::spawn(move || {
        let fd = std::fs::File::open(&ns).unwrap();
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = UdpSocket::bind("0.0.0.0:5353").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 100];
        for _ in 0..2 {
            let (n, peer) = s.recv_from(&mut buf).unwrap();
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            s.send_to(&reply, peer).unwrap();
        }
    });
    rx.recv().unwrap();
    let addr = host_address(&e).unwrap();
    for (i, host) in ["127.0.0.1", addr.as_str()].iter().enumerate() {
        let c = UdpSocket::bind("0.0.0.0:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let msg = format!("ping{i}");
        c.send_to(msg.as_bytes(), (*host, up)).unwrap();
        let mut buf = [0u8; 100];
        let n = c.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("echo:{msg}").as_bytes(), "via {host}");
    }
    server.join().unwrap();
    // Only UDP is published.
    assert!(TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, up)),
        Duration::from_secs(1)
    )
    .is_err());
    assert_eq!(
        e.ok(&["port", "udp1"]),
        format!("5353/udp -> 0.0.0.0:{up}\n")
    );

    // A host port in use: Docker's error, nothing made, nothing left.
    let taken = TcpListener::bind("0.0.0.0:0").unwrap();
    let tp = taken.local_addr().unwrap().port();
    let before = (e.leases(), e.elements());
    let (code, err) = e.fails(&[
        "container",
        "run",
        "--rm",
        "-p",
        &format!("{tp}:80"),
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(
        err.contains(&format!(
            "Bind for 0.0.0.0:{tp} failed: port is already allocated"
        )),
        "{err}"
    );
    // A port another container publishes: the same.
    let (code, err) = e.fails(&[
        "container",
        "run",
        "--name",
        "second",
        "-p",
        &format!("{up}:53/udp"),
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(
        err.contains(&format!(
            "Bind for 0.0.0.0:{up} failed: port is already allocated"
        )),
        "{err}"
    );
    assert_eq!(e.inspect("second", "{{.State.Status}}"), "created");
    assert_eq!(e.ok(&["port", "second"]), "");
    assert_eq!((e.leases(), e.elements()), before);
    let ls = e.ok(&["container", "ls", "-aq"]);
    assert_eq!(ls.lines().count(), 2, "{ls}");
    drop(taken);
    e.ok(&["rm", "-f", "udp1", "second"]);
    UdpSocket::bind(("0.0.0.0", up)).unwrap();
    assert!(e.elements().is_empty());
    e.check();
}

#[test]
fn internal_networks_isolation_two_networks_and_rm_in_use() {
    let Some((_l, mut e)) = Env::new("iso") else {
        return;
    };
    e.ok(&["network", "create", "na"]);
    e.ok(&["network", "create", "nb"]);
    e.ok(&["network", "create", "--internal", "ni"]);
    e.note_networks();
    let httpd = ["httpd", "-f", "-p", "80", "-h", "/etc"];
    let mut a = vec!["--name", "a1", "--network", "na", "busybox"];
    a.extend(httpd);
    e.start(&a);
    let mut b = vec!["--name", "b1", "--network", "nb", "busybox"];
    b.extend(httpd);
    e.start(&b);
    e.start(&[
        "--name",
        "i1",
        "--network",
        "ni",
        "busybox",
        "sleep",
        "1000",
    ]);
    e.start(&[
        "--name",
        "ab",
        "--network",
        "na",
        "busybox",
        "sleep",
        "1000",
    ]);
    e.ok(&["network", "connect", "nb", "ab"]);
    let ip_of = |c: &str, n: &str| {
        e.inspect(
            c,
            &format!("{{{{(index .NetworkSettings.Networks \"{n}\").IPAddress}}}}"),
        )
    };
    let (a1, b1) = (ip_of("a1", "na"), ip_of("b1", "nb"));
    let wget = |c: &str, ip: &str| {
        e.run(&[
            "container",
            "exec",
            c,
            "timeout",
            "2",
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{ip}/hostname"),
        ])
    };
    // The same network talks; a container on two reaches both.
    let end = Instant::now() + Duration::from_secs(10);
    while !wget("ab", &a1).status.success() {
        assert!(Instant::now() < end, "ab never reached a1");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(wget("ab", &b1).status.success(), "ab -> b1");
    // Different networks do not.
    assert!(!wget("b1", &a1).status.success(), "b1 reached a1");
    assert!(!wget("a1", &b1).status.success(), "a1 reached b1");
    assert!(!wget("i1", &a1).status.success(), "i1 reached a1");
    // Egress: na has it, ni (--internal) has none.
    if forwarding_dropped() {
        eprintln!(
            "note: the host's FORWARD policy is DROP (another engine's): egress part skipped"
        );
    } else {
        let server = TcpListenerIn::new(&e.ns, 8001);
        let url = format!("http://{REMOTE_NET}.2:8001/");
        let got = e.ok(&[
            "container",
            "exec",
            "a1",
            "timeout",
            "5",
            "wget",
            "-q",
            "-O",
            "-",
            &url,
        ]);
        assert_eq!(got.trim(), format!("{REMOTE_NET}.1"));
        let out = e.run(&[
            "container",
            "exec",
            "i1",
            "timeout",
            "2",
            "wget",
            "-q",
            "-O",
            "-",
            &url,
        ]);
        assert!(
            !out.status.success(),
            "an --internal network reached the test host"
        );
        server.stop();
    }
    // network rm of a network in use: refused, with Docker's words.
    let (code, err) = e.fails(&["network", "rm", "na"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Error response from daemon: error while removing network: network na id"),
        "{err}"
    );
    assert!(err.contains("has active endpoints"), "{err}");
    e.ok(&["rm", "-f", "a1", "b1", "i1", "ab"]);
    assert_eq!(e.ok(&["network", "rm", "na", "nb", "ni"]), "na\nnb\nni\n");
    e.check();
}

#[test]
fn host_none_and_container_modes_with_published_ports() {
    let Some((_l, mut e)) = Env::new("modes") else {
        return;
    };
    let hp = free_port();
    let out = e.run(&[
        "container",
        "run",
        "--rm",
        "--network",
        "host",
        "-p",
        &format!("{hp}:80"),
        "busybox",
        "true",
    ]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARNING: Published ports are discarded when using host network mode"),
        "{err}"
    );
    e.start(&["--name", "owner", "busybox", "sleep", "1000"]);
    let (code, err) = e.fails(&[
        "container",
        "run",
        "--rm",
        "--network",
        "container:owner",
        "-p",
        "80",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(
        err.contains("conflicting options: port publishing and the container type network mode"),
        "{err}"
    );
    let (code, err) = e.fails(&[
        "container",
        "create",
        "--network",
        "container:owner",
        "--expose",
        "80",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(
        err.contains("conflicting options: port exposing and the container type network mode"),
        "{err}"
    );
    // --network none: nothing published, no error (Docker's none has no endpoint).
    e.start(&[
        "--name",
        "lone",
        "--network",
        "none",
        "-p",
        &format!("{hp}:80"),
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(e.ok(&["port", "lone"]), "");
    TcpListener::bind(("0.0.0.0", hp)).unwrap();
    // The default network by its Docker names.
    for n in ["bridge", "default"] {
        let out = e.ok(&[
            "container",
            "run",
            "--rm",
            "--network",
            n,
            "busybox",
            "ip",
            "-4",
            "route",
        ]);
        assert!(out.starts_with("default via 10."), "{out}");
    }
    let out = e.ok(&["container", "run", "--rm", "busybox", "ip", "-4", "route"]);
    assert!(out.starts_with("default via 10."), "{out}");
    e.check();
}

/// Kills every process of this data root's berth commands and monitors (their command lines
/// name it), or only the `run` command.
fn kill_berths(data: &str, only_command: bool, command: Option<u32>) {
    if only_command {
        if let Some(pid) = command {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        return;
    }
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline);
        if text.contains(data) && text.contains("killme") {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Whether a process of this data root's start of `name` is still there (berth or a monitor
/// that has not recorded itself yet).
fn starting(data: &str, name: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline);
        text.contains(data) && text.split('\0').any(|a| a == name)
    })
}

#[test]
fn berth_or_its_monitor_killed_during_a_start_with_ports_leaves_nothing_after_rm_f() {
    let Some((_l, mut e)) = Env::new("kill") else {
        return;
    };
    // The default network up first, so that the instants fall in the container's start.
    e.ok(&["container", "run", "--rm", "busybox", "true"]);
    e.note_networks();
    let data = e.data().to_string_lossy().into_owned();
    // The instants: fractions of how long a whole start with -p takes here and now (the
    // machine's load changes it), and a few past it.
    let hp = free_port();
    let t = Instant::now();
    e.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "timing",
        "-p",
        &format!("{hp}:80"),
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    let full = t.elapsed().as_millis() as u64;
    e.ok(&["rm", "-f", "timing"]);
    let instants: Vec<u64> = (0..16).map(|k| full * k / 12).collect();
    eprintln!("a start with -p takes {full} ms here");
    let mut outcomes = Vec::new();
    for (i, ms) in instants.iter().enumerate() {
        let hp = free_port();
        let name = format!("killme{i}");
        let only_command = i % 3 == 2;
        let mut c = e.s.command(&[
            "container",
            "run",
            "-d",
            "--name",
            &name,
            "-p",
            &format!("{hp}:80"),
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/etc",
        ]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(*ms));
        kill_berths(&data, only_command, Some(child.id()));
        let _ = child.wait();
        if only_command {
            // A monitor already forked goes on with the start: `rm -f` comes once it is done
            // (the record says so), or once no process of the start is left.
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                let s = e.run(&["container", "inspect", "-f", "{{.State.Status}}", &name]);
                let s = String::from_utf8_lossy(&s.stdout).trim().to_string();
                if matches!(s.as_str(), "running" | "exited" | "dead") || !starting(&data, &name) {
                    break;
                }
                assert!(Instant::now() < end, "{name}: the start never ended");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        e.note_networks();
        let state = e.run(&["container", "inspect", "-f", "{{.State.Status}}", &name]);
        outcomes.push(format!(
            "{ms} ms{}: {} leases, {} elements -> {}",
            if only_command { " (berth only)" } else { "" },
            e.leases().len(),
            e.elements().len(),
            String::from_utf8_lossy(&state.stdout).trim()
        ));
        let _ = e.run(&["container", "rm", "-f", &name]);
        assert!(
            e.leases().is_empty(),
            "{name} after {ms} ms: leases {:?}",
            e.leases()
        );
        assert!(
            e.elements().is_empty(),
            "{name} after {ms} ms: elements {:?}",
            e.elements()
        );
        e.veths_gone(&format!("{name} after {ms} ms"));
        let end = Instant::now() + Duration::from_secs(5);
        while TcpListener::bind(("0.0.0.0", hp)).is_err() {
            assert!(Instant::now() < end, "{name}: port {hp} still held");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    eprintln!("killed at:\n  {}", outcomes.join("\n  "));
    e.check();
}

#[test]
fn another_firewalls_forward_drop_policy_is_warned_about() {
    if !is_root() || !which("iptables") || !which("nft") {
        eprintln!("SKIPPED: needs root, iptables and nft");
        return;
    }
    // In a namespace of the test's own: the machine's firewall is not touched.
    let ns = format!("bnw{}", std::process::id());
    let _ = sh("ip", &["netns", "del", &ns]);
    must("ip", &["netns", "add", &ns]);
    let got = in_ns(&format!("/run/netns/{ns}"), || {
        let before = berth::network::publish::forward_dropped_warning("berth0");
        let out = Command::new("iptables")
            .args(["-P", "FORWARD", "DROP"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            before,
            berth::network::publish::forward_dropped_warning("berth0"),
        )
    });
    must("ip", &["netns", "del", &ns]);
    assert_eq!(got.0, None);
    let w = got.1.expect("a warning with FORWARD DROP");
    assert!(
        w.contains("iptables -I DOCKER-USER -i berth0 -j ACCEPT"),
        "{w}"
    );
}

#[test]
fn ports_are_published_again_at_each_start_and_restart() {
    let Some((_l, mut e)) = Env::new("restart") else {
        return;
    };
    let hp = free_port();
    let cmd = "httpd -p 80 -h /etc; sleep 1";
    e.start(&[
        "--name",
        "r1",
        "-p",
        &format!("{hp}:80"),
        "busybox",
        "sh",
        "-c",
        cmd,
    ]);
    let id = e.inspect("r1", "{{.Id}}");
    assert_eq!(wait_http("127.0.0.1", hp).trim(), &id[..12]);
    for round in 0..3 {
        // Started again as soon as it exited: the previous monitor may still be giving the
        // ports back.
        let end = Instant::now() + Duration::from_secs(10);
        while e.inspect("r1", "{{.State.Status}}") != "exited" {
            assert!(Instant::now() < end, "r1 never exited");
            std::thread::sleep(Duration::from_millis(5));
        }
        e.ok(&["container", "start", "r1"]);
        assert_eq!(
            wait_http("127.0.0.1", hp).trim(),
            &id[..12],
            "round {round}"
        );
        assert_eq!(e.ok(&["port", "r1"]), format!("80/tcp -> 0.0.0.0:{hp}\n"));
        assert_eq!(e.elements().len(), 1, "{:?}", e.elements());
    }
    e.ok(&["container", "restart", "-t", "0", "r1"]);
    assert_eq!(wait_http("127.0.0.1", hp).trim(), &id[..12]);
    assert_eq!(e.elements().len(), 1, "{:?}", e.elements());
    // A stopped container shows no ports.
    e.ok(&["container", "stop", "-t", "0", "r1"]);
    assert_eq!(e.ok(&["port", "r1"]), "");
    assert_eq!(e.inspect("r1", "{{json .NetworkSettings.Ports}}"), "{}");
    assert!(e.elements().is_empty(), "{:?}", e.elements());
    TcpListener::bind(("0.0.0.0", hp)).unwrap();
    e.ok(&["rm", "r1"]);
    e.check();
}

/// What of container `id` is left in the table (its elements) and the leases (which are also
/// its DNS records on user networks).
fn traces_of(e: &Env, id: &str) -> Vec<String> {
    let mut left: Vec<String> = e
        .elements()
        .into_iter()
        .filter(|x| x.contains(id))
        .map(|x| format!("element {}", x.trim()))
        .collect();
    for net in std::fs::read_dir(e.data().join("networks"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for l in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let t = std::fs::read_to_string(l.path()).unwrap_or_default();
            if t.contains(id) {
                left.push(format!("lease {}: {t}", l.path().display()));
            }
        }
    }
    left
}

/// `rm -f` at random instants of a `start` with `-p` (on the default network and on a user
/// network, whose leases are its DNS records), running beside it, and every third time after
/// a SIGKILL of the starting berth: right after `rm -f` returns, nothing of the container is
/// left in the table or the leases and its host port can be bound; nothing appears later
/// either (a monitor that outlived the rm would add it), and its veths go (the kernel removes
/// them with the namespace, in the background).
#[test]
fn rm_f_at_random_instants_of_a_start_with_ports_leaves_nothing() {
    let Some((_l, mut e)) = Env::new("rmrace") else {
        return;
    };
    e.ok(&["container", "run", "--rm", "busybox", "true"]);
    let br = format!("btr{}", std::process::id());
    // A subnet of its own, out of the default pools: the guard judges the machine's routes
    // and rules by it, and another data root's default network may take a pool's next.
    let subnet = format!("10.203.{}.0/24", std::process::id() % 250);
    e.ok(&[
        "network",
        "create",
        "--subnet",
        &subnet,
        "-o",
        &format!("com.docker.network.bridge.name={br}"),
        "racenet",
    ]);
    e.note_networks();
    let data = e.data().to_string_lossy().into_owned();
    let create = |e: &Env, name: &str, hp: u16, net: &str| -> String {
        let publish = format!("{hp}:80");
        let head = [
            "container",
            "create",
            "--name",
            name,
            "--network",
            net,
            "-p",
            &publish,
            "busybox",
        ];
        e.ok(&[&head[..], &HTTPD].concat()).trim().to_string()
    };
    // How long a start with -p takes here and now.
    let hp = free_port();
    create(&e, "timing", hp, "racenet");
    let t = Instant::now();
    e.ok(&["container", "start", "timing"]);
    let full = t.elapsed().as_micros() as u64;
    e.ok(&["rm", "-f", "timing"]);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("a start with -p takes {} ms here; seed {seed}", full / 1000);
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut outcomes = Vec::new();
    for i in 0..30 {
        let hp = free_port();
        let name = format!("race{i}");
        let net = if i % 2 == 0 { "bridge" } else { "racenet" };
        let id = create(&e, &name, hp, net);
        let kill_berth = i % 3 == 2;
        let at = random(full * 13 / 10);
        let mut c = e.s.command(&["container", "start", &name]);
        c.stdout(Stdio::null()).stderr(Stdio::null());
        let mut start = c.spawn().unwrap();
        std::thread::sleep(Duration::from_micros(at));
        if kill_berth {
            let _ = start.kill();
        }
        let out = e.run(&["container", "rm", "-f", &name]);
        let removed_at = Instant::now();
        // Right after `rm -f`.
        let left = traces_of(&e, &id);
        let port_free = TcpListener::bind(("0.0.0.0", hp)).is_ok();
        let status = start.wait().unwrap();
        let what = format!(
            "{name} ({net}, rm -f at {} ms{}, start {status})",
            at / 1000,
            if kill_berth {
                " after a SIGKILL of berth"
            } else {
                ""
            }
        );
        assert!(
            out.status.success(),
            "{what}: rm -f failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(left.is_empty(), "{what}: right after rm -f: {left:#?}");
        assert!(port_free, "{what}: port {hp} still held right after rm -f");
        // A process of the start still there (a monitor that had not recorded itself) ends
        // without making anything.
        let end = Instant::now() + Duration::from_secs(5);
        while starting(&data, &name) {
            assert!(
                Instant::now() < end,
                "{what}: a process of the start is left"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        let left = traces_of(&e, &id);
        assert!(left.is_empty(), "{what}: after rm -f: {left:#?}");
        assert!(
            TcpListener::bind(("0.0.0.0", hp)).is_ok(),
            "{what}: port {hp} held after rm -f"
        );
        e.veths_gone(&what);
        outcomes.push(format!(
            "{what}: clean ({} ms)",
            removed_at.elapsed().as_millis()
        ));
    }
    eprintln!("{}", outcomes.join("\n"));
    e.ok(&["network", "rm", "racenet"]);
    e.check();
}
