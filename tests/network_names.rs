//! Names with real containers (busybox): the embedded DNS server of user networks (Docker's
//! 127.0.0.11, in each container's monitor) by name, `--network-alias`, `network connect
//! --alias`, short id, per network, gone after `disconnect` and exit; forwarding to a fake
//! upstream server of the test's own (on a loopback address, named by the data root's
//! network-config.json `resolv-conf`); no query lost while many containers start; `--link`
//! and `--add-host` in /etc/hosts; resolv.conf. Root only; one test at a time (they compare
//! the host's links, routes and firewall before and after).

mod engine_support;

use berth::network::resolver;
use berth::network::store::{self, Store, Subnet};
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

/// The host's links, addresses, routes, firewall and forwarding sysctls.
fn snapshot() -> Value {
    let nft: String = cmd_out("nft", &["list", "ruleset"])
        .lines()
        // Counters move with other programs' traffic.
        .map(|l| match l.find(" counter packets") {
            Some(i) => l[..i].to_string(),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::json!({
        "link": cmd_out("ip", &["-o", "link"]).lines().map(|l| {
            // The link's state flags aside: `ip -o link` lines by name.
            l.split(':').nth(1).unwrap_or("").trim().to_string()
        }).collect::<Vec<_>>(),
        "addr": cmd_out("ip", &["-o", "addr"]),
        "route": cmd_out("ip", &["route", "show", "table", "all"]),
        "berth_nft": nft.contains("table ip berth"),
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
        BUSYBOX,
        "sh",
        "-c",
        "echo hello-from-web > /tmp/index.html; httpd -f -p 80 -h /tmp",
    ]);
    let short = &id.trim()[..12];
    let web_ip = ip_of(&g, "web", "names-a");
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
            "nslookup web; nslookup www; nslookup {short}; ping -c1 -W2 web >/dev/null && echo PING-OK; \
             wget -q -O- http://www/index.html; wget -q -O- http://{short}/index.html"
        ),
    );
    let found = addresses_of(&out);
    assert_eq!(found, vec![web_ip.clone(); 3], "{out}");
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
