//! Names with real containers (busybox): the embedded DNS server of user networks (Docker's
//! 127.0.0.11, in each container's monitor) by name, `--network-alias`, `network connect
//! --alias`, short id, per network, gone after `disconnect` and exit; forwarding to a fake
//! upstream server of the test's own (on a loopback address, named by the data root's
//! network-config.json `resolv-conf`); no query lost while many containers start; `--link`
//! and `--add-host` in /etc/hosts; resolv.conf. Root only; one test at a time (they compare
//! the host's links, routes and firewall before and after).

mod engine_support;

use berth::network::resolver;
use berth::network::store::{self, Subnet};
use engine_support::{Scratch, BUSYBOX};
use serde_json::Value;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn cmd_out(prog: &str, args: &[&str]) -> String {
    Command::new(prog)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// What of the host's links, addresses, routes, firewall and forwarding sysctls is of this
/// test's kind: the machine is shared (other sessions run podman, Docker and berth meanwhile),
/// so only the test's bridges (`bn-*`) and what is on them, its subnets (10.202.0.0/16), rules
/// naming its bridges and ip_forward are compared.
fn snapshot() -> Value {
    let ours = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("bn-") || l.contains("10.202."))
            .map(|l| l.to_string())
            .collect()
    };
    // (Another session's tests may hold berth's own table meanwhile: only this test's
    // bridges in it count.)
    let nft = cmd_out("nft", &["list", "ruleset"]);
    serde_json::json!({
        "link": ours(cmd_out("ip", &["-o", "link"])),
        "addr": ours(cmd_out("ip", &["-o", "addr"])),
        "route": ours(cmd_out("ip", &["route", "show", "table", "all"])),
        "nft": nft.lines().filter(|l| l.contains("bn-")).collect::<Vec<_>>(),
        "ip_forward": std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default(),
    })
}

/// Removes what the test made (containers, networks: their bridges), then compares the host.
struct Guard {
    before: Value,
    scratch: Scratch,
    bridges: Vec<String>,
}

impl Guard {
    fn new(tag: &str) -> Guard {
        let before = snapshot();
        let scratch = Scratch::new(&format!("netnames-{tag}"));
        engine_support::load_busybox(&scratch);
        Guard {
            before,
            scratch,
            bridges: Vec::new(),
        }
    }

    fn berth_ok(&self, args: &[&str]) -> String {
        self.scratch.berth_ok(args)
    }

    fn berth(&self, args: &[&str]) -> std::process::Output {
        self.scratch.berth(args)
    }

    /// A user network on a /24 of 10.202.0.0/16 no host route overlaps, bridge `bridge`.
    fn network(&mut self, name: &str, bridge: &str, n: u8, extra: &[&str]) -> Subnet {
        let s = free_subnet(n);
        self.bridges.push(bridge.into());
        let mut args = vec![
            "network".to_string(),
            "create".into(),
            "--subnet".into(),
            s.to_string(),
            "-o".into(),
            format!("com.docker.network.bridge.name={bridge}"),
        ];
        args.extend(extra.iter().map(|x| x.to_string()));
        args.push(name.into());
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        self.berth_ok(&a);
        s
    }

    fn cleanup(&mut self) {
        let ids = self.scratch.berth(&["container", "ls", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.scratch.berth(&["container", "rm", "-f", id]);
        }
        let _ = self.scratch.berth(&["network", "prune", "-f"]);
        // The default network too, which prune keeps (its bridge and firewall rules).
        if let Err(e) = berth::network::publish::remove_all_networks(&self.scratch.data_root()) {
            eprintln!("cleanup: networks: {e:#}");
        }
        for b in &self.bridges {
            let _ = Command::new("ip").args(["link", "del", b]).output();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.cleanup();
        let after = snapshot();
        if !std::thread::panicking() {
            assert_eq!(
                self.before, after,
                "the host's links, routes, firewall or sysctls changed"
            );
        }
    }
}

fn free_subnet(n: u8) -> Subnet {
    let host = store::host_subnets().unwrap();
    for third in (u16::from(n) * 20)..=255 {
        let s = Subnet::parse(&format!("10.202.{third}.0/24")).unwrap();
        if !host.iter().any(|h| h.overlaps(&s)) {
            return s;
        }
    }
    panic!("no free /24 in 10.202.0.0/16");
}

fn sh(g: &Guard, net: &str, script: &str) -> String {
    g.berth_ok(&[
        "container",
        "run",
        "--rm",
        "--network",
        net,
        BUSYBOX,
        "sh",
        "-c",
        script,
    ])
}

/// The address `nslookup NAME` gives in a container, or None (NXDOMAIN, nothing).
fn addresses_of(out: &str) -> Vec<String> {
    // busybox nslookup: "Name:\tweb\nAddress: 10.202.0.2" after the server's lines.
    let mut seen_name = false;
    let mut v = Vec::new();
    for l in out.lines() {
        if l.starts_with("Name:") {
            seen_name = true;
        } else if l.starts_with("Server:") {
            seen_name = false;
        } else if seen_name {
            if let Some(a) = l.strip_prefix("Address:") {
                v.push(a.trim().split(' ').next().unwrap_or("").to_string());
            }
        }
    }
    v
}

fn ip_of(g: &Guard, ctr: &str, net: &str) -> String {
    let v: Value = serde_json::from_str(&g.berth_ok(&["container", "inspect", ctr])).unwrap();
    v[0]["NetworkSettings"]["Networks"][net]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn containers_resolve_each_other_on_a_user_network() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Guard::new("resolve");
    g.network("names-a", "bn-a0", 1, &[]);
    g.network("names-b", "bn-b0", 2, &[]);
    // A server with a name and an alias; busybox httpd answers wget.
    let id = g.berth_ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "names-a",
        "--network-alias",
        "www",
        "--hostname",
        "webhost",
        BUSYBOX,
        "sh",
        "-c",
        "echo hello-from-web > /tmp/index.html; httpd -f -p 80 -h /tmp",
    ]);
    let short = &id.trim()[..12];
    let web_ip = ip_of(&g, "web", "names-a");
    // Docker 28's inspect: the endpoint's aliases and DNS names.
    let v: Value = serde_json::from_str(&g.berth_ok(&["container", "inspect", "web"])).unwrap();
    let ep = &v[0]["NetworkSettings"]["Networks"]["names-a"];
    assert_eq!(ep["Aliases"], serde_json::json!(["www"]), "{ep}");
    assert_eq!(
        ep["DNSNames"],
        serde_json::json!(["web", "www", short, "webhost"]),
        "{ep}"
    );
    // The client's resolv.conf is Docker's for a user network.
    let rc = sh(&g, "names-a", "cat /etc/resolv.conf");
    assert!(
        rc.contains("\nnameserver 127.0.0.11\noptions ndots:0\n"),
        "{rc}"
    );
    assert!(rc.contains("(internal resolver)"), "{rc}");
    // By name, alias and short id; nslookup (the resolver through 127.0.0.11:53, DNAT'ed),
    // ping and wget (libc's lookups).
    let out = sh(
        &g,
        "names-a",
        &format!(
            "nslookup web; nslookup www; nslookup {short}; nslookup webhost; \
             ping -c1 -W2 web >/dev/null && echo PING-OK; \
             wget -q -O- http://www/index.html; wget -q -O- http://{short}/index.html"
        ),
    );
    let found = addresses_of(&out);
    assert_eq!(found, vec![web_ip.clone(); 4], "{out}");
    assert!(out.contains("PING-OK"), "{out}");
    assert_eq!(out.matches("hello-from-web").count(), 2, "{out}");
    // NAME.NETWORK, and the reverse (PTR) of its address.
    let out = sh(
        &g,
        "names-a",
        &format!("nslookup web.names-a; nslookup {web_ip}"),
    );
    assert!(out.contains(&web_ip), "{out}");
    assert!(out.contains("web.names-a"), "{out}");
    // Another network does not know it.
    let out = g.berth(&[
        "container",
        "run",
        "--rm",
        "--network",
        "names-b",
        BUSYBOX,
        "nslookup",
        "web",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(addresses_of(&text).is_empty(), "{out:?}");

    // A container on both networks; `connect --alias` on the second.
    g.berth_ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "both",
        "--network",
        "names-b",
        BUSYBOX,
        "sleep",
        "300",
    ]);
    g.berth_ok(&["network", "connect", "--alias", "db", "names-a", "both"]);
    let both_a = ip_of(&g, "both", "names-a");
    let both_b = ip_of(&g, "both", "names-b");
    // From names-a: `both` and `db` are its names-a address; from names-b: its names-b one,
    // and `db` is not known there (the alias is of names-a).
    let out = sh(&g, "names-a", "nslookup both; nslookup db");
    assert_eq!(
        addresses_of(&out),
        vec![both_a.clone(), both_a.clone()],
        "{out}"
    );
    let out = sh(&g, "names-b", "nslookup both");
    assert_eq!(addresses_of(&out), vec![both_b.clone()], "{out}");
    let out = sh(&g, "names-b", "nslookup db; true");
    assert!(addresses_of(&out).is_empty(), "{out}");
    // `both` itself sees web (names-a) by name and has both addresses in its hosts file.
    let out = g.berth_ok(&[
        "container",
        "exec",
        "both",
        "sh",
        "-c",
        "nslookup web; cat /etc/hosts",
    ]);
    assert_eq!(addresses_of(&out), vec![web_ip.clone()], "{out}");
    assert!(out.contains(&format!("{both_b}\t")), "{out}");
    assert!(out.contains(&format!("{both_a}\t")), "{out}");

    // disconnect: the name stops resolving at once, and the hosts line goes.
    g.berth_ok(&["network", "disconnect", "names-a", "both"]);
    let out = sh(&g, "names-a", "nslookup both; nslookup db; true");
    assert!(addresses_of(&out).is_empty(), "{out}");
    let hosts = g.berth_ok(&["container", "exec", "both", "cat", "/etc/hosts"]);
    assert!(!hosts.contains(&format!("{both_a}\t")), "{hosts}");
    // stop: the server's name goes too.
    g.berth_ok(&["container", "stop", "-t", "1", "web"]);
    let out = sh(&g, "names-a", "nslookup web; true");
    assert!(addresses_of(&out).is_empty(), "{out}");
}

/// A fake upstream DNS server of the test's, on a loopback address of the host: answers
/// `outside.example` with 192.0.2.77 (no data for other names); counts the queries.
struct Upstream {
    stop: Arc<AtomicBool>,
    pub queries: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const UPSTREAM_IP: &str = "127.77.0.1";

impl Upstream {
    fn start() -> Upstream {
        let sock = UdpSocket::bind((UPSTREAM_IP, 53)).expect("binding 127.77.0.1:53");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (s, q) = (stop.clone(), queries.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Some(query) = resolver::parse_query(&buf[..n]) else {
                    continue;
                };
                q.lock().unwrap().push(query.name.clone());
                let ips: Vec<Ipv4Addr> = if query.name == "outside.example" && query.qtype == 1 {
                    vec![Ipv4Addr::new(192, 0, 2, 77)]
                } else {
                    vec![]
                };
                let _ = sock.send_to(&resolver::a_reply(&buf[..n], &query, &ips), from);
            }
        });
        Upstream {
            stop,
            queries,
            thread: Some(thread),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set_config(g: &Guard, config: Value) {
    std::fs::write(
        g.scratch.data_root().join("network-config.json"),
        config.to_string(),
    )
    .unwrap();
}

/// Other names go to the host's upstream servers (here the test's, named by the test's
/// resolv.conf through network-config.json's `resolv-conf`), relayed from the host's
/// namespace even on a loopback address (Docker's `host(...)`); an `--internal` network's
/// containers get no answer from outside.
#[test]
fn other_names_are_forwarded_upstream() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Guard::new("upstream");
    let up = Upstream::start();
    let rc = g.scratch.data_root().join("test-resolv.conf");
    std::fs::write(
        &rc,
        format!("nameserver {UPSTREAM_IP}\nsearch example.test\n"),
    )
    .unwrap();
    set_config(&g, serde_json::json!({"resolv-conf": rc}));
    g.network("names-up", "bn-up0", 3, &[]);
    g.network("names-int", "bn-int0", 4, &["--internal"]);
    let out = sh(
        &g,
        "names-up",
        "cat /etc/resolv.conf; nslookup outside.example",
    );
    assert!(
        out.contains(&format!("# ExtServers: [host({UPSTREAM_IP})]")),
        "{out}"
    );
    assert!(out.contains("search example.test\n"), "{out}");
    assert_eq!(addresses_of(&out), vec!["192.0.2.77"], "{out}");
    assert!(up
        .queries
        .lock()
        .unwrap()
        .iter()
        .any(|q| q == "outside.example"));
    // libc's lookup through the same path.
    let out = sh(&g, "names-up", "ping -c1 -W1 outside.example 2>&1; true");
    assert!(out.contains("192.0.2.77"), "{out}");
    // Internal: nothing from outside.
    let before = up.queries.lock().unwrap().len();
    let out = g.berth(&[
        "container",
        "run",
        "--rm",
        "--network",
        "names-int",
        BUSYBOX,
        "nslookup",
        "outside.example",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(addresses_of(&text).is_empty(), "{out:?}");
    assert_eq!(up.queries.lock().unwrap().len(), before);
    // Legacy networks (none): the host's servers without loopback ones, Google's instead.
    let out = g.berth_ok(&[
        "container",
        "run",
        "--rm",
        "--network",
        "none",
        BUSYBOX,
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(
        out.contains("nameserver 8.8.8.8\nnameserver 8.8.4.4\nsearch example.test\n"),
        "{out}"
    );
    assert!(out.contains("# Used default nameservers."), "{out}");
}

/// Sends `name` queries into the namespace of `pid` to 127.0.0.11:53 until `stop`, each with
/// `wait` to be answered; returns (answered, lost, wrong answers).
fn ask_in(pid: i32, name: &str, want: Ipv4Addr, stop: Arc<AtomicBool>) -> (u32, u32, u32) {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect("127.0.0.11:53").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let (mut ok, mut lost, mut wrong) = (0, 0, 0);
    let mut id: u16 = 0;
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        id = id.wrapping_add(1);
        sock.send(&resolver::make_query(id, name, 1)).unwrap();
        let deadline = Instant::now() + Duration::from_millis(1000);
        let mut answered = false;
        while Instant::now() < deadline {
            match sock.recv(&mut buf) {
                Ok(n) if buf[..2] == id.to_be_bytes() => {
                    match resolver::reply_addresses(&buf[..n]) {
                        Some((0, ips)) if ips == [want] => ok += 1,
                        _ => wrong += 1,
                    }
                    answered = true;
                    break;
                }
                _ => {}
            }
        }
        if !answered {
            lost += 1;
        }
    }
    (ok, lost, wrong)
}

fn pid_of(g: &Guard, ctr: &str) -> i32 {
    let v: Value = serde_json::from_str(&g.berth_ok(&["container", "inspect", ctr])).unwrap();
    v[0]["State"]["Pid"].as_i64().unwrap() as i32
}

/// aardvark-dns dropped a query in flight at each reload; here containers start and go on the
/// network while a client asks without pause: every query is answered, rightly. A new
/// container's name answers as soon as its `run -d` returns. Also the resolver's latency.
#[test]
fn no_query_is_lost_while_containers_come_and_go() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Guard::new("churn");
    g.network("names-churn", "bn-churn0", 5, &[]);
    for n in ["web", "probe"] {
        g.berth_ok(&[
            "container",
            "run",
            "-d",
            "--name",
            n,
            "--network",
            "names-churn",
            BUSYBOX,
            "sleep",
            "300",
        ]);
    }
    let web: Ipv4Addr = ip_of(&g, "web", "names-churn").parse().unwrap();
    let pid = pid_of(&g, "probe");
    // Latency of one answer, warm.
    let lat = {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || ask_in(pid, "web", web, s));
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let (ok, lost, wrong) = t.join().unwrap();
        assert_eq!((lost, wrong), (0, 0));
        Duration::from_millis(300) / ok.max(1)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let asker = std::thread::spawn(move || ask_in(pid, "web", web, s));
    let root = g.scratch.data_root();
    let run = g.scratch.dir.join("run");
    let berth = |args: Vec<String>| {
        let (root, run) = (root.clone(), run.clone());
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_berth"))
                .arg("--data-root")
                .arg(root)
                .arg("--root")
                .arg(run)
                .args(args)
                .output()
                .unwrap()
        })
    };
    let n = 8;
    for round in 0..2 {
        let starts: Vec<_> = (0..n)
            .map(|i| {
                berth(
                    [
                        "container",
                        "run",
                        "-d",
                        "--name",
                        &format!("c{round}-{i}"),
                        "--network",
                        "names-churn",
                        BUSYBOX,
                        "sleep",
                        "300",
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                )
            })
            .collect();
        for t in starts {
            let o = t.join().unwrap();
            assert!(o.status.success(), "{o:?}");
        }
        // Each new name answers at once.
        let out = g.berth_ok(&[
            "container",
            "exec",
            "probe",
            "nslookup",
            &format!("c{round}-{}", n - 1),
        ]);
        assert_eq!(addresses_of(&out).len(), 1, "{out}");
        let stops: Vec<_> = (0..n)
            .map(|i| {
                berth(
                    ["container", "rm", "-f", &format!("c{round}-{i}")]
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                )
            })
            .collect();
        for t in stops {
            let o = t.join().unwrap();
            assert!(o.status.success(), "{o:?}");
        }
        let out = g.berth_ok(&[
            "container",
            "exec",
            "probe",
            "sh",
            "-c",
            &format!("nslookup c{round}-0; true"),
        ]);
        assert!(addresses_of(&out).is_empty(), "{out}");
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, lost, wrong) = asker.join().unwrap();
    eprintln!(
        "resolver: {ok} queries answered during {} starts and removals, {lost} lost, {wrong} \
         wrong; warm answer {lat:?}",
        4 * n
    );
    assert!(ok > 50, "{ok}");
    assert_eq!((lost, wrong), (0, 0));
}

/// The default network: `--link NAME:ALIAS` and `--add-host` (with `host-gateway`) in
/// /etc/hosts as Docker writes them, the link reaches its container; no DNS server there.
#[test]
fn links_and_extra_hosts_on_the_default_network() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Guard::new("link");
    let subnet = free_subnet(6);
    let gw = Ipv4Addr::from(subnet.first() + 1);
    g.bridges.push("bn-dflt0".into());
    let rc = g.scratch.data_root().join("test-resolv.conf");
    std::fs::write(
        &rc,
        "nameserver 192.0.2.53\nnameserver 127.0.0.53\noptions edns0\n",
    )
    .unwrap();
    set_config(
        &g,
        serde_json::json!({"bridge": "bn-dflt0", "bip": format!("{gw}/24"), "resolv-conf": rc}),
    );
    g.berth_ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "srv",
        "--hostname",
        "srvhost",
        "--network",
        "bridge",
        BUSYBOX,
        "sh",
        "-c",
        "echo linked > /tmp/index.html; httpd -f -p 80 -h /tmp",
    ]);
    let srv = ip_of(&g, "srv", "berth");
    let out = g.berth_ok(&[
        "container", "run", "--rm", "--network", "bridge", "--link", "srv:al",
        "--add-host", "h1:192.0.2.5", "--add-host", "gw:host-gateway", "--hostname", "me",
        "--domainname", "example.org", BUSYBOX, "sh", "-c",
        "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; wget -q -O- http://al/index.html",
    ]);
    let parts: Vec<&str> = out.split("---\n").collect();
    let mine = Ipv4Addr::from(subnet.first() + 3);
    assert_eq!(
        parts[0],
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\n\
             ff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n\
             192.0.2.5\th1\n{gw}\tgw\n{srv}\tal srvhost srv\n{mine}\tme.example.org me\n"
        )
    );
    assert!(
        parts[1].contains("\nnameserver 192.0.2.53\noptions edns0\n\n# Based on host file:"),
        "{}",
        parts[1]
    );
    assert!(parts[1].contains("(legacy)"), "{}", parts[1]);
    assert_eq!(parts[2].trim(), "linked");
    // A link to a container that does not run: Docker's error.
    g.berth_ok(&["container", "stop", "-t", "1", "srv"]);
    let e = g.berth(&[
        "container",
        "run",
        "--rm",
        "--network",
        "bridge",
        "--link",
        "srv:al",
        BUSYBOX,
        "true",
    ]);
    assert!(!e.status.success());
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("Cannot link to a non running container"),
        "{e:?}"
    );
}

/// `--link` on a user network is an alias for the linking container only (Docker's rule).
#[test]
fn links_on_a_user_network_are_the_containers_own_aliases() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Guard::new("userlink");
    g.network("names-ul", "bn-ul0", 7, &[]);
    g.berth_ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "names-ul",
        BUSYBOX,
        "sleep",
        "300",
    ]);
    let db = ip_of(&g, "db", "names-ul");
    let out = g.berth_ok(&[
        "container",
        "run",
        "--rm",
        "--network",
        "names-ul",
        "--link",
        "db:database",
        BUSYBOX,
        "nslookup",
        "database",
    ]);
    assert_eq!(addresses_of(&out), vec![db], "{out}");
    let out = sh(&g, "names-ul", "nslookup database; true");
    assert!(addresses_of(&out).is_empty(), "{out}");
}

/// Makes a bridge with `addr` (for a private dockerd's default network), removed by the guard.
fn test_bridge(g: &mut Guard, name: &str, addr: &str) {
    g.bridges.push(name.into());
    for args in [
        vec!["link", "add", name, "type", "bridge"],
        vec!["addr", "add", addr, "dev", name],
        vec!["link", "set", name, "up"],
    ] {
        let o = Command::new("ip").args(&args).output().unwrap();
        assert!(o.status.success(), "ip {args:?}: {o:?}");
    }
}

/// Replaces the addresses of `subnet` by `NET.N`, and `ids` by `ID`.
fn normalize(text: &str, subnets: &[Subnet], ids: &[&str]) -> String {
    let mut t = text.to_string();
    for s in subnets {
        let o = s.addr.octets();
        t = t.replace(&format!("{}.{}.{}.", o[0], o[1], o[2]), "NET.");
    }
    for id in ids {
        if !id.is_empty() {
            t = t.replace(id, "ID");
        }
    }
    t
}

/// `network inspect` of one network under Docker (`di`) and berth (`bi`): the same keys, and
/// the same values but for ids, times, the bridge's name, `subnets`' addresses and the
/// containers' `ids`; IPAM.Config where both have a gateway (dockerd 20.10 leaves out one it
/// chose), and the subnets' sizes unless `same_size` is false (Docker's default is a /16).
fn network_inspect_matches(
    di: &Value,
    bi: &Value,
    subnets: &[Subnet],
    ids: &[&str],
    same_size: bool,
) {
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(di), keys(bi), "network inspect's keys");
    for k in [
        "Scope",
        "Driver",
        "EnableIPv6",
        "Internal",
        "Attachable",
        "Ingress",
        "ConfigFrom",
        "ConfigOnly",
        "Labels",
    ] {
        assert_eq!(di[k], bi[k], "network inspect's {k}");
    }
    let opts = |v: &Value| {
        let mut o = v["Options"].clone();
        o["com.docker.network.bridge.name"] = "BRIDGE".into();
        o
    };
    assert_eq!(opts(di), opts(bi), "network inspect's Options");
    assert_eq!(di["IPAM"]["Driver"], bi["IPAM"]["Driver"]);
    assert_eq!(di["IPAM"]["Options"], bi["IPAM"]["Options"]);
    let dgw = di["IPAM"]["Config"][0].get("Gateway").is_some();
    let conf = |v: &Value| {
        let mut c = v["IPAM"]["Config"].clone();
        let c0 = c[0].as_object_mut().unwrap();
        if !dgw {
            c0.remove("Gateway");
        }
        if !same_size {
            for x in c0.values_mut() {
                *x = x.as_str().unwrap_or("").split('/').next().unwrap().into();
            }
        }
        normalize(&c.to_string(), subnets, &[])
    };
    assert_eq!(conf(di), conf(bi), "network inspect's IPAM.Config");
    let eps = |v: &Value| -> Vec<String> {
        v["Containers"]
            .as_object()
            .unwrap()
            .values()
            .map(|e| {
                let mut e = e.clone();
                e["EndpointID"] = "EP".into();
                let mac = e["MacAddress"].as_str().unwrap_or("").to_string();
                e["MacAddress"] = (mac.len() == 17).into();
                if !same_size {
                    let ip = e["IPv4Address"].as_str().unwrap_or("").to_string();
                    e["IPv4Address"] = ip.split('/').next().unwrap().into();
                }
                normalize(&e.to_string(), subnets, ids)
            })
            .collect()
    };
    assert_eq!(eps(di), eps(bi), "network inspect's Containers");
}

/// Docker 20.10 (the daemon here) writes no comments in resolv.conf, and `fe00::0` where
/// Docker 28 (berth's model) writes `fe00::`: compared without them.
fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.replace("::0\t", "::\t"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The same scenario under a private dockerd and berth: `network inspect` of a user network
/// with a container on it, and a container's /etc/hosts and /etc/resolv.conf on the user
/// network (with --hostname, --add-host, names) and on the default network (with --link).
#[test]
fn hosts_resolv_conf_and_network_inspect_match_docker() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Guard::new("docker");
    let docker_default = free_subnet(8);
    let dgw = Ipv4Addr::from(docker_default.first() + 1);
    test_bridge(&mut g, "bn-dkd0", &format!("{dgw}/24"));
    let Some(d) = engine_support::Dockerd::start_with(serde_json::json!({"bridge": "bn-dkd0"}))
    else {
        return;
    };
    d.load_busybox(&g.scratch);
    let berth_default = free_subnet(9);
    let bgw = Ipv4Addr::from(berth_default.first() + 1);
    g.bridges.push("bn-bdf0".into());
    set_config(
        &g,
        serde_json::json!({"bridge": "bn-bdf0", "bip": format!("{bgw}/24")}),
    );
    let berth_user = g.network("names-diff", "bn-bu0", 10, &[]);
    let docker_user = free_subnet(11);
    g.bridges.push("bn-dku0".into());
    d.docker_ok(&[
        "network",
        "create",
        "--subnet",
        &docker_user.to_string(),
        "-o",
        "com.docker.network.bridge.name=bn-dku0",
        "names-diff",
    ]);
    let subnets = [docker_default, berth_default, berth_user, docker_user];

    // Both engines, the same commands.
    let both = |args: &[&str]| -> (String, String) {
        let dk = d.docker_ok(args);
        let bt = g.berth_ok(&[&["container"], args].concat());
        (dk, bt)
    };
    let (dsrv, bsrv) = both(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "names-diff",
        "--network-alias",
        "svc",
        BUSYBOX,
        "sleep",
        "300",
    ]);
    let (ddef, bdef) = both(&[
        "run",
        "-d",
        "--name",
        "dsrv",
        "--network",
        "bridge",
        BUSYBOX,
        "sleep",
        "300",
    ]);
    let ids: Vec<&str> = [&dsrv, &bsrv, &ddef, &bdef]
        .iter()
        .map(|s| &s.trim()[..12])
        .collect();
    let script = "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; \
                  nslookup srv >/dev/null 2>&1 && echo srv-found; \
                  nslookup svc >/dev/null 2>&1 && echo svc-found; true";
    let (dk, bt) = both(&[
        "run",
        "--rm",
        "--network",
        "names-diff",
        "--hostname",
        "h1",
        "--add-host",
        "x:192.0.2.9",
        BUSYBOX,
        "sh",
        "-c",
        script,
    ]);
    eprintln!("docker, user network:\n{dk}\nberth, user network:\n{bt}");
    assert_eq!(
        without_comments(&normalize(&dk, &subnets, &ids)),
        without_comments(&normalize(&bt, &subnets, &ids)),
        "user network: /etc/hosts, resolv.conf or names differ"
    );
    // berth's resolv.conf has Docker 28's comments.
    assert!(bt.contains("# Generated by Docker Engine.\n"), "{bt}");
    // (Docker 28's client puts a link in the endpoint's settings when `--network bridge` is
    // given, which dockerd 20.10 refuses: Docker's default network without the flag.)
    let script = "cat /etc/hosts; echo ---; cat /etc/resolv.conf";
    let tail = [
        "--link",
        "dsrv:al",
        "--hostname",
        "h2",
        "--domainname",
        "example.org",
        BUSYBOX,
        "sh",
        "-c",
        script,
    ];
    let dk = d.docker_ok(&[&["run", "--rm"][..], &tail].concat());
    let bt = g.berth_ok(
        &[
            &["container", "run", "--rm", "--network", "bridge"][..],
            &tail,
        ]
        .concat(),
    );
    eprintln!("docker, default network:\n{dk}\nberth, default network:\n{bt}");
    assert_eq!(
        without_comments(&normalize(&dk, &subnets, &ids)),
        without_comments(&normalize(&bt, &subnets, &ids)),
        "default network: /etc/hosts or resolv.conf differ"
    );

    // The host's network and none.
    for net in ["host", "none"] {
        let args = [
            "run",
            "--rm",
            "--network",
            net,
            BUSYBOX,
            "sh",
            "-c",
            "cat /etc/hosts; echo ---; cat /etc/resolv.conf",
        ];
        let (dk, bt) = both(&args);
        eprintln!("docker, {net}:\n{dk}\nberth, {net}:\n{bt}");
        assert_eq!(
            without_comments(&dk),
            without_comments(&bt),
            "--network {net}"
        );
    }

    // network inspect: the same fields and values but for ids, times, subnets and bridges.
    let di: Value =
        serde_json::from_str(&d.docker_ok(&["network", "inspect", "names-diff"])).unwrap();
    let bi: Value =
        serde_json::from_str(&g.berth_ok(&["network", "inspect", "names-diff"])).unwrap();
    let (di, bi) = (&di[0], &bi[0]);
    eprintln!(
        "docker: {}\nberth: {}",
        serde_json::to_string_pretty(di).unwrap(),
        serde_json::to_string_pretty(bi).unwrap()
    );
    assert_eq!(di["Name"], bi["Name"], "network inspect's Name");
    network_inspect_matches(di, bi, &subnets, &[], true);

    for n in ["srv", "dsrv"] {
        let _ = d.docker(&["rm", "-f", n]);
    }
    d.docker_ok(&["network", "rm", "names-diff"]);
}

/// One DNS exchange over TCP with 127.0.0.11:53 in the namespace of `pid`.
fn tcp_ask_in(pid: i32, name: &str) -> Option<(u8, Vec<Ipv4Addr>)> {
    use std::io::{Read, Write};
    let name = name.to_string();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut s = std::net::TcpStream::connect_timeout(
            &"127.0.0.11:53".parse().unwrap(),
            Duration::from_secs(2),
        )
        .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let q = resolver::make_query(77, &name, 1);
        let mut m = (q.len() as u16).to_be_bytes().to_vec();
        m.extend_from_slice(&q);
        s.write_all(&m).ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut r).ok()?;
        resolver::reply_addresses(&r)
    })
    .join()
    .unwrap()
}

/// TCP: local names answered, others relayed to the upstream over TCP; and a container may
/// bind port 53 itself (the resolver is on another port, DNAT'ed), its lookups still work.
#[test]
fn tcp_queries_and_a_container_of_its_own_on_port_53() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Guard::new("tcp");
    // The fake upstream over TCP: tcp.example is 192.0.2.78.
    let listener = std::net::TcpListener::bind((UPSTREAM_IP, 53)).expect("127.77.0.1:53");
    let asked = Arc::new(Mutex::new(Vec::<String>::new()));
    let a = asked.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let mut len = [0u8; 2];
            if s.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            if s.read_exact(&mut q).is_err() {
                continue;
            }
            let Some(query) = resolver::parse_query(&q) else {
                continue;
            };
            a.lock().unwrap().push(query.name.clone());
            let r = resolver::a_reply(&q, &query, &[Ipv4Addr::new(192, 0, 2, 78)]);
            let mut m = (r.len() as u16).to_be_bytes().to_vec();
            m.extend_from_slice(&r);
            let _ = s.write_all(&m);
        }
    });
    let rc = g.scratch.data_root().join("test-resolv.conf");
    std::fs::write(&rc, format!("nameserver {UPSTREAM_IP}\n")).unwrap();
    set_config(&g, serde_json::json!({"resolv-conf": rc}));
    g.network("names-tcp", "bn-tcp0", 12, &[]);
    g.berth_ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "own53",
        "--network",
        "names-tcp",
        BUSYBOX,
        "sh",
        "-c",
        "sleep 300",
    ]);
    let pid = pid_of(&g, "own53");
    let me: Ipv4Addr = ip_of(&g, "own53", "names-tcp").parse().unwrap();
    assert_eq!(tcp_ask_in(pid, "own53"), Some((0, vec![me])));
    assert_eq!(
        tcp_ask_in(pid, "tcp.example"),
        Some((0, vec![Ipv4Addr::new(192, 0, 2, 78)]))
    );
    assert_eq!(asked.lock().unwrap().as_slice(), ["tcp.example"]);
    // Sockets of its own hold 0.0.0.0:53 (UDP and TCP: busybox has no UDP server, so the
    // test makes them in its namespace), and its lookups still reach berth's.
    let own = std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        (
            UdpSocket::bind("0.0.0.0:53").expect("UDP 0.0.0.0:53 in the container"),
            std::net::TcpListener::bind("0.0.0.0:53").expect("TCP 0.0.0.0:53 in the container"),
        )
    })
    .join()
    .unwrap();
    let out = g.berth_ok(&[
        "container",
        "exec",
        "own53",
        "sh",
        "-c",
        "netstat -lnu; netstat -lnt; nslookup own53",
    ]);
    assert_eq!(out.matches("0.0.0.0:53 ").count(), 2, "{out}");
    drop(own);
    assert_eq!(addresses_of(&out), vec![me.to_string()], "{out}");
}

/// A resolver's setup, as a container's start makes it, on namespaces of the test's own: its two
/// sockets made in the namespace by a thread, and the DNAT (a forked child that loads
/// libnftables there) from 127.0.0.11:53 to them. Each query reaches the socket and the answer
/// comes back from port 53. The setup's cost is printed (--nocapture) for reading, never
/// asserted: speed is scripts/bench-names.sh's job.
#[test]
fn resolver_setup_redirects_127_0_0_11_to_its_sockets() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut sockets = Vec::new();
    let mut dnat = Vec::new();
    for _ in 0..10 {
        let mut child = Command::new("unshare")
            .args(["--net", "sh", "-c", "ip link set lo up; exec sleep 30"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let me = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .ok()
            .as_ref()
            == Some(&me)
            || !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .starts_with("sleep")
        {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(2));
        }
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
        let t = Instant::now();
        let s = berth::network::names::in_netns(&ns, || resolver::Sockets::bind(0)).unwrap();
        sockets.push(t.elapsed());
        let t = Instant::now();
        berth::network::names::dnat(&ns, s.udp_port(), s.tcp_port()).unwrap();
        dnat.push(t.elapsed());
        // The redirection works: 127.0.0.11:53 reaches the socket.
        let port = s.udp_port();
        let got = std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.send_to(b"ping", "127.0.0.11:53").unwrap();
            let mut buf = [0u8; 8];
            s.udp.set_nonblocking(false).unwrap();
            s.udp
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let (n, from) = s.udp.recv_from(&mut buf).unwrap();
            s.udp.send_to(b"pong", from).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let (m, src) = c.recv_from(&mut buf[n..]).unwrap();
            (n, m, src.port())
        })
        .join()
        .unwrap();
        // The answer comes from port 53 (conntrack undoes the DNAT), not the resolver's own.
        assert_eq!(got, (4, 4, 53), "resolver port {port}");
        let _ = child.kill();
        let _ = child.wait();
    }
    sockets.sort();
    dnat.sort();
    eprintln!(
        "resolver setup: sockets in the namespace {:?} (median), DNAT {:?} (median), max {:?} / {:?}",
        sockets[5], dnat[5], sockets[9], dnat[9]
    );
}

/// A container restarted by its policy gets a new address, its name follows, and its new
/// namespace has a resolver again.
#[test]
fn a_restarted_container_resolves_and_is_resolved_again() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Guard::new("restart");
    g.network("names-rs", "bn-rs0", 0, &[]);
    g.berth_ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "names-rs",
        BUSYBOX,
        "sleep",
        "300",
    ]);
    // The first run ends at once (exit 1), the restart lives: it asks for `other` then.
    g.berth_ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        "--network",
        "names-rs",
        BUSYBOX,
        "sh",
        "-c",
        "[ -e /tmp/ran ] || { touch /tmp/ran; exit 1; }; nslookup other > /tmp/answer; sleep 300",
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let o = g.berth(&["container", "exec", "flaky", "cat", "/tmp/answer"]);
        if o.status.success() && !o.stdout.is_empty() {
            break String::from_utf8_lossy(&o.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "flaky did not restart: {o:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let other = ip_of(&g, "other", "names-rs");
    assert_eq!(addresses_of(&out), vec![other], "{out}");
    let flaky = ip_of(&g, "flaky", "names-rs");
    let out = g.berth_ok(&["container", "exec", "other", "nslookup", "flaky"]);
    assert_eq!(addresses_of(&out), vec![flaky], "{out}");
}

/// A container killed with its monitor (SIGKILL to both: no exit handling, its lease stays
/// until a sweep) stops resolving once its namespace is gone: the resolver checks the
/// endpoint's veth.
#[test]
fn a_container_killed_with_its_monitor_stops_resolving() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Guard::new("killed");
    g.network("names-kill", "bn-kill0", 1, &[]);
    for n in ["victim", "probe"] {
        g.berth_ok(&[
            "container",
            "run",
            "-d",
            "--name",
            n,
            "--network",
            "names-kill",
            BUSYBOX,
            "sleep",
            "300",
        ]);
    }
    let out = g.berth_ok(&["container", "exec", "probe", "nslookup", "victim"]);
    assert_eq!(addresses_of(&out).len(), 1, "{out}");
    let init = pid_of(&g, "victim");
    let status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let monitor: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    for pid in [monitor, init] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let o = g.berth(&["container", "exec", "probe", "nslookup", "victim"]);
        if addresses_of(&String::from_utf8_lossy(&o.stdout)).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "victim still resolves: {o:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its lease is still there (no sweep ran): the name went with the veth.
    let leases = std::fs::read_dir(g.scratch.data_root().join("networks/names-kill.leases"))
        .unwrap()
        .count();
    assert_eq!(leases, 2);
}

/// A TCP port free on the host for TCP and UDP, with `n - 1` free ports after it.
fn free_ports(n: u16) -> u16 {
    'next: for _ in 0..200 {
        let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        if p > 65535 - n {
            continue;
        }
        for q in p..p + n {
            if std::net::TcpListener::bind(("0.0.0.0", q)).is_err()
                || UdpSocket::bind(("0.0.0.0", q)).is_err()
            {
                continue 'next;
            }
        }
        return p;
    }
    panic!("no {n} free ports in a row");
}

/// The host ports an engine chose itself (`auto`: `80/udp` ...) in a container's `port`
/// output, replaced by `AUTO` in `text` (`IP:PORT->80/udp`, `80/udp -> IP:PORT`); each
/// checked to be in the kernel's ephemeral range, where both engines pick them.
fn auto_ports(text: &str, port_output: &str, auto: &[&str]) -> String {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let r: Vec<u32> = range
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let mut t = text.to_string();
    for l in port_output.lines() {
        let Some((key, hostport)) = l.split_once(" -> ") else {
            continue;
        };
        if !auto.contains(&key) {
            continue;
        }
        let (ip, port) = hostport.rsplit_once(':').unwrap();
        let n: u32 = port.parse().unwrap();
        assert!(
            r[0] <= n && n <= r[1],
            "{key} got host port {n}, outside {range}"
        );
        t = t
            .replace(&format!("{hostport}->{key}"), &format!("{ip}:AUTO->{key}"))
            .replace(
                &format!("{key} -> {hostport}"),
                &format!("{key} -> {ip}:AUTO"),
            )
            .replace(
                &format!("\"HostPort\": \"{port}\""),
                "\"HostPort\": \"AUTO\"",
            );
    }
    t
}

/// `docker ARGS` under another docker client (`client`), against the same daemon.
fn client_output(d: &engine_support::Dockerd, client: &str, args: &[&str]) -> String {
    let dc = d.command(args);
    let out = Command::new(client)
        .args(dc.get_args())
        .envs(dc.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{client} {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Published ports against a dockerd with Docker's own network defaults (its docker0,
/// iptables, docker-proxy), all inside a network namespace of the test's: `port` (all, one
/// port, a port not published: Docker's error), the PORTS column under both Docker clients'
/// rules, and inspect's `NetworkSettings.Ports` and `HostConfig.PortBindings`, for `-p H:C`,
/// `-p 127.0.0.1::C/udp`, a range `H1-H3:C1-C3`, a same-number UDP range, a host range for one
/// port, and `-P` with the image's EXPOSE and `--expose`; host ports the engines choose are
/// compared as `AUTO` (in the ephemeral range). Then the default bridge's `network inspect`
/// and a container's /etc/hosts and /etc/resolv.conf on it.
#[test]
fn published_ports_and_the_default_bridge_match_docker_in_its_own_netns() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Guard::new("ports-docker");
    let ns = format!("bn-dkns{}", std::process::id());
    let Some(d) = engine_support::Dockerd::start_in_netns(&ns) else {
        return;
    };
    d.load_busybox(&g.scratch);
    let berth_default = free_subnet(9);
    let bgw = Ipv4Addr::from(berth_default.first() + 1);
    g.bridges.push("bn-bpd0".into());
    set_config(
        &g,
        serde_json::json!({"bridge": "bn-bpd0", "bip": format!("{bgw}/24")}),
    );
    // Both engines, the same commands (berth's under `container`).
    let both = |args: &[&str]| -> (String, String) {
        let dk = d.docker_ok(args);
        let bt = g.berth_ok(&[&["container"], args].concat());
        (dk, bt)
    };
    // An image with EXPOSE, made the same way in both.
    both(&["create", "--name", "exp-src", BUSYBOX, "true"]);
    both(&[
        "commit",
        "--change",
        "EXPOSE 80 53/udp",
        "exp-src",
        "berth-tests/exposing:latest",
    ]);
    both(&["rm", "exp-src"]);

    // Host ports free on the host (berth's); Docker's namespace has all of them free.
    let p = free_ports(1);
    let r = free_ports(3);
    let u = free_ports(2);
    let h = free_ports(3);
    let specs: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "pa",
            vec![
                "-p".into(),
                format!("{p}:80"),
                "-p".into(),
                "127.0.0.1::80/udp".into(),
                "-p".into(),
                format!("{r}-{}:7000-7002", r + 2),
                "-p".into(),
                format!("{u}-{}:{u}-{}/udp", u + 1, u + 1),
                "-p".into(),
                format!("127.0.0.1:{h}-{}:9090", h + 2),
            ],
            vec!["80/udp"],
        ),
        (
            "pb",
            vec!["-P".into(), "--expose".into(), "81".into()],
            vec!["80/tcp", "53/udp", "81/tcp"],
        ),
        ("pc", vec!["--expose".into(), "82-83/udp".into()], vec![]),
    ];
    let mut auto_of = std::collections::BTreeMap::new();
    for (name, flags, auto) in &specs {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend(flags.iter().map(String::as_str));
        args.extend(["berth-tests/exposing:latest", "sleep", "300"]);
        both(&args);
        auto_of.insert(*name, auto.clone());
    }
    let port_all = |name: &str| both(&["port", name]);
    let mut ports = std::collections::BTreeMap::new();
    for (name, _, _) in &specs {
        ports.insert(*name, port_all(name));
    }
    let norm = |name: &str, dk: &str, bt: &str| -> (String, String) {
        let (dp, bp) = &ports[name];
        (
            auto_ports(dk, dp, &auto_of[name]),
            auto_ports(bt, bp, &auto_of[name]),
        )
    };
    // Debian's client (20.10) prints `port`'s lines in Go's map order, which changes from run
    // to run: compared as sets. Docker 28's client sorts them (natural order): compared as
    // they are, where there is one.
    let newer = Some("/usr/local/bin/docker").filter(|p| std::path::Path::new(p).exists());
    let sorted = |t: &str| {
        let mut v: Vec<&str> = t.lines().collect();
        v.sort();
        v.join("\n")
    };
    for (name, _, _) in &specs {
        let (dk, bt) = &ports[name];
        eprintln!("port {name}:\ndocker:\n{dk}berth:\n{bt}");
        let (dk, bt) = norm(name, dk, bt);
        assert_eq!(sorted(&dk), sorted(&bt), "`port {name}`");
        if let Some(client) = newer {
            let out = client_output(&d, client, &["port", name]);
            let (dk28, bt) = norm(name, &out, &ports[name].1);
            assert_eq!(dk28, bt, "`port {name}` under Docker 28's client");
        }
    }
    for (name, which) in [
        ("pa", "80"),
        ("pa", "80/tcp"),
        ("pa", "7001"),
        ("pa", &format!("{u}/udp")),
        ("pa", "9090"),
        ("pb", "53/udp"),
    ] {
        let (dk, bt) = both(&["port", name, which]);
        let key = if which.contains('/') {
            which.to_string()
        } else {
            format!("{which}/tcp")
        };
        // A bare `IP:PORT`: given its key to be normalized as the listing is.
        let (dk, bt) = norm(
            name,
            &format!("{key} -> {}", dk.trim()),
            &format!("{key} -> {}", bt.trim()),
        );
        assert_eq!(dk, bt, "`port {name} {which}`");
    }
    for (name, which) in [("pa", "81"), ("pc", "82/udp"), ("pa", "7000/udp")] {
        let dk = d.docker(&["port", name, which]);
        let bt = g.berth(&["container", "port", name, which]);
        let bt_err = String::from_utf8_lossy(&bt.stderr);
        eprintln!("port {name} {which}: docker {dk:?}\nberth: {bt_err}");
        assert_ne!(dk.code, 0);
        assert_eq!(
            Some(dk.code),
            bt.status.code(),
            "`port {name} {which}`'s exit code"
        );
        assert_eq!(
            dk.stderr.trim().trim_start_matches("Error: "),
            bt_err.trim().trim_start_matches("Error: "),
            "`port {name} {which}`'s error"
        );
    }
    // The PORTS column, computed by the client: under Debian's client (the daemon's own
    // version) and, where there is one, Docker 28's.
    let format = "{{.Names}}\t{{.Ports}}";
    let bt_ls = g.berth_ok(&["container", "ls", "--format", format]);
    for client in [None].into_iter().chain(newer.map(Some)) {
        let dk_ls = match client {
            Some(path) => client_output(&d, path, &["ps", "--format", format]),
            None => d.docker_ok(&["ps", "--format", format]),
        };
        eprintln!("ps ({client:?}):\ndocker:\n{dk_ls}berth:\n{bt_ls}");
        let lines = |t: &str, dk: bool| -> Vec<String> {
            let mut v: Vec<String> = t
                .lines()
                .map(|l| {
                    let name = l.split('\t').next().unwrap();
                    let (dp, bp) = &ports[name];
                    auto_ports(l, if dk { dp } else { bp }, &auto_of[name])
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            lines(&dk_ls, true),
            lines(&bt_ls, false),
            "the PORTS column ({})",
            client.unwrap_or("Debian's client")
        );
    }
    // inspect's port fields.
    for (name, _, _) in &specs {
        let f = "{{json .NetworkSettings.Ports}} {{json .HostConfig.PortBindings}} \
                 {{json .Config.ExposedPorts}} {{.HostConfig.PublishAllPorts}}";
        let (dk, bt) = both(&["inspect", "-f", f, name]);
        // Each as one JSON text with keys sorted, `"HostPort": "N"` spaced for auto_ports.
        let canon = |t: &str| -> String {
            t.split(' ')
                .map(|j| {
                    serde_json::from_str::<Value>(j)
                        .map(|v| serde_json::to_string_pretty(&v).unwrap())
                        .unwrap_or_else(|_| j.to_string())
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let (dk, bt) = norm(name, &canon(dk.trim()), &canon(bt.trim()));
        assert_eq!(dk, bt, "inspect {name}'s port fields");
    }
    for (name, _, _) in &specs {
        both(&["rm", "-f", name]);
    }

    // The default bridge: network inspect, with a container on it.
    let (dsrv, bsrv) = both(&["run", "-d", "--name", "dsrv", BUSYBOX, "sleep", "300"]);
    let ids: Vec<&str> = [&dsrv, &bsrv].iter().map(|s| &s.trim()[..12]).collect();
    let di: Value = serde_json::from_str(&d.docker_ok(&["network", "inspect", "bridge"])).unwrap();
    let bi: Value = serde_json::from_str(&g.berth_ok(&["network", "inspect", "bridge"])).unwrap();
    let (di, bi) = (&di[0], &bi[0]);
    eprintln!(
        "docker: {}\nberth: {}",
        serde_json::to_string_pretty(di).unwrap(),
        serde_json::to_string_pretty(bi).unwrap()
    );
    // Docker's default network is `bridge`; berth's is `berth` (the name).
    assert_eq!(
        (di["Name"].as_str(), bi["Name"].as_str()),
        (Some("bridge"), Some("berth"))
    );
    let docker_default = Subnet::parse(di["IPAM"]["Config"][0]["Subnet"].as_str().unwrap())
        .expect("Docker's default subnet");
    // 172.17.0.0/16 against a /24: the first three octets normalized, the sizes not compared.
    let subnets = [docker_default, berth_default];
    network_inspect_matches(di, bi, &subnets, &ids, false);
    let script = "cat /etc/hosts; echo ---; cat /etc/resolv.conf";
    let (dk, bt) = both(&[
        "run",
        "--rm",
        "--hostname",
        "h3",
        BUSYBOX,
        "sh",
        "-c",
        script,
    ]);
    eprintln!("docker, default bridge:\n{dk}\nberth, default bridge:\n{bt}");
    assert_eq!(
        without_comments(&normalize(&dk, &subnets, &ids)),
        without_comments(&normalize(&bt, &subnets, &ids)),
        "default bridge: /etc/hosts or resolv.conf differ"
    );
    let _ = d.docker(&["rm", "-f", "dsrv"]);
    drop(d);
    assert!(
        !cmd_out("ip", &["netns", "list"]).contains(&ns),
        "dockerd's namespace {ns} is left"
    );
}
