//! `berth build`: real builds of real contexts, their images run under `container run`; the
//! cache's hits and misses; every bad input; interrupts and kills leaving nothing behind; and
//! the same contexts built by buildah (`buildah bud`) giving the same file tree and config.
//!
//! Run as root: `cargo test --test build`. The Debian tests make the image with debootstrap
//! the first time (cached after) and install packages from Debian's archive.

#[path = "engine_support/mod.rs"]
mod engine_support;

use engine_support::*;
use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The busybox image's short name inside Dockerfiles.
const BB: &str = "berth-tests/busybox";

/// Held by the tests whose RUN steps join berth's default network: its bridge (`berth0`)
/// is the host's, one at a time.
const NETWORK_LOCK: &str = "/run/berth-tests-build-network.lock";

/// A scratch data root with the busybox image, and contexts made in it.
struct Builds {
    scratch: Scratch,
    /// For the tests that build on the default network ([`Builds::networked`]): the host's
    /// lock of it. The others build with `--network none` (unless they say otherwise), so
    /// that only these touch the host's bridge. Dropped after the scratch (its networks).
    network: Option<nix::fcntl::Flock<fs::File>>,
}

impl Builds {
    fn new(name: &str) -> Option<Builds> {
        if !is_root() {
            eprintln!("SKIPPED: berth build tests need root");
            return None;
        }
        let scratch = Scratch::new(&format!("build-{name}"));
        load_busybox(&scratch);
        Some(Builds {
            scratch,
            network: None,
        })
    }

    /// [`Builds::new`] for a test whose builds use the default network.
    fn networked(name: &str) -> Option<Builds> {
        if !is_root() {
            eprintln!("SKIPPED: berth build tests need root");
            return None;
        }
        let lock = lock_exclusive(NETWORK_LOCK, Duration::from_secs(1800));
        let mut b = Builds::new(name)?;
        b.network = Some(lock);
        Some(b)
    }

    /// `build ARGS`: `--network none` first unless the test builds on the default network
    /// or names a network itself.
    fn build_args<'a>(&self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["build"];
        if self.network.is_none() && !args.iter().any(|a| a.starts_with("--network")) {
            all.extend(["--network", "none"]);
        }
        all.extend_from_slice(args);
        all
    }

    /// A context directory `name` holding `files` (path, content).
    fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.scratch.path(&format!("ctx-{name}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for (p, content) in files {
            let path = dir.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
        }
        dir
    }

    fn berth(&self, args: &[&str]) -> Outcome {
        run_within(&self.scratch.command(args), Duration::from_secs(900))
    }

    /// `berth build ARGS CONTEXT`, as it goes.
    fn attempt(&self, ctx: &Path, args: &[&str]) -> Outcome {
        let mut all = self.build_args(args);
        all.push(ctx.to_str().unwrap());
        self.berth(&all)
    }

    /// `berth build ARGS CONTEXT`, which must succeed; returns its outcome.
    fn build(&self, ctx: &Path, args: &[&str]) -> Outcome {
        let out = self.attempt(ctx, args);
        assert_eq!(out.code, 0, "berth build {args:?} failed: {out:?}");
        out
    }

    /// `-q` build: the image id.
    fn build_id(&self, ctx: &Path, args: &[&str]) -> String {
        let mut a = vec!["-q"];
        a.extend_from_slice(args);
        let out = self.build(ctx, &a);
        let id = out.stdout.trim().to_string();
        assert!(
            id.starts_with("sha256:") && id.len() == 71,
            "-q printed {out:?}"
        );
        id
    }

    fn run(&self, args: &[&str]) -> String {
        let mut all = vec!["container", "run", "--rm", "--network", "none"];
        all.extend_from_slice(args);
        self.berth(&all).ok(&format!("container run {args:?}"))
    }

    fn config(&self, image: &str) -> serde_json::Value {
        let text = self.berth(&["image", "inspect", image]).ok("image inspect");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v[0]["Config"].clone()
    }

    /// The build's leftovers: runtime records of build containers, work directories, mounts
    /// below the data root, cgroups of build containers.
    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for dir in [
            self.scratch.path("run/build"),
            self.scratch.data_root().join("build/work"),
        ] {
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd.flatten() {
                    found.push(e.path().display().to_string());
                }
            }
        }
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.scratch.dir.display().to_string();
        found.extend(
            info.lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&root))
                .map(|p| format!("mount {p}")),
        );
        found
    }
}

fn step_lines(out: &Outcome) -> Vec<String> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("STEP ") || l.starts_with("--> "))
        .map(str::to_string)
        .collect()
}

fn cached_count(out: &Outcome) -> usize {
    out.stdout.lines().filter(|l| *l == "--> CACHED").count()
}

// ---------------------------------------------------------------------------
// The course's builds
// ---------------------------------------------------------------------------

#[test]
fn static_site_served_by_busybox_httpd() {
    let Some(b) = Builds::new("site") else { return };
    let ctx = b.context(
        "site",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {BB}\nCOPY site/ /www/\nEXPOSE 8080\n\
                     CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
                ),
            ),
            ("site/index.html", "<h1>built by berth</h1>\n"),
            ("site/css/style.css", "h1 { color: teal }\n"),
        ],
    );
    let out = b.build(&ctx, &["-t", "site:1"]);
    assert!(out.stdout.contains("Successfully tagged site:1"), "{out:?}");
    assert!(out.stdout.contains("STEP 2/4: COPY site/ /www/"), "{out:?}");
    let served = b.run(&[
        "site:1",
        "sh",
        "-c",
        "httpd -p 8080 -h /www && sleep 0.5 && wget -qO- http://127.0.0.1:8080/ && \
         wget -qO- http://127.0.0.1:8080/css/style.css",
    ]);
    assert_eq!(served, "<h1>built by berth</h1>\nh1 { color: teal }\n");
    assert_eq!(
        b.config("site:1")["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}})
    );
}

const HELLO_C: &str =
    "#include <stdio.h>\nint main(void) { printf(\"hello from a scratch image\\n\"); return 0; }\n";

#[test]
fn multi_stage_gcc_build_into_scratch() {
    // Its RUN installs gcc from Debian's archive: on the default network.
    let Some(b) = Builds::networked("gcc") else {
        return;
    };
    if !load_debian(&b.scratch) {
        return;
    }
    let ctx = b.context(
        "gcc",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {DEBIAN} AS build\n\
                     RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
                         && rm -rf /var/lib/apt/lists/*\n\
                     WORKDIR /src\n\
                     COPY hello.c .\n\
                     RUN gcc -static -O2 -o /hello hello.c\n\
                     \n\
                     FROM scratch\n\
                     COPY --from=build /hello /hello\n\
                     ENTRYPOINT [\"/hello\"]\n"
                ),
            ),
            ("hello.c", HELLO_C),
        ],
    );
    b.build(&ctx, &["-t", "hello:static"]);
    assert_eq!(b.run(&["hello:static"]), "hello from a scratch image\n");
    // The final image is only the binary: one layer, one file.
    let inspect: serde_json::Value =
        serde_json::from_str(&b.berth(&["image", "inspect", "hello:static"]).ok("inspect"))
            .unwrap();
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    // Rebuilt: every step from the cache, the same image.
    let again = b.build(&ctx, &["-t", "hello:static"]);
    assert_eq!(cached_count(&again), 6, "{again:?}");
}

#[test]
fn app_installs_packages_from_debian() {
    let Some(b) = Builds::networked("apt") else {
        return;
    };
    if !load_debian(&b.scratch) {
        return;
    }
    let ctx = b.context(
        "apt",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {DEBIAN}\n\
                     ENV DEBIAN_FRONTEND=noninteractive\n\
                     RUN cat /proc/net/route && apt-get update \
                         && apt-get install -y --no-install-recommends jq \
                         && rm -rf /var/lib/apt/lists/*\n\
                     COPY data.json /data.json\n\
                     CMD [\"jq\", \"-r\", \".greeting\", \"/data.json\"]\n"
                ),
            ),
            ("data.json", "{\"greeting\": \"packages installed\"}\n"),
        ],
    );
    let out = b.build(&ctx, &["-t", "app:apt"]);
    assert_eq!(b.run(&["app:apt"]), "packages installed\n");
    // The packages came over berth's bridge: the RUN's default route was via its gateway.
    let (_, gateway) = default_network(&b);
    assert_eq!(
        route_gateway(&out.stdout),
        Some(gateway),
        "the RUN's default route is not via the bridge: {out:?}"
    );
    assert_no_endpoints(&b, &[]);
}

/// The subnet (address, prefix) and gateway of the data root's default network.
fn default_network(b: &Builds) -> ((Ipv4Addr, u32), Ipv4Addr) {
    let text = b
        .berth(&["network", "inspect", "berth"])
        .ok("network inspect");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cfg = &v[0]["IPAM"]["Config"][0];
    let (addr, prefix) = cfg["Subnet"].as_str().unwrap().split_once('/').unwrap();
    (
        (addr.parse().unwrap(), prefix.parse().unwrap()),
        cfg["Gateway"].as_str().unwrap().parse().unwrap(),
    )
}

fn in_subnet(ip: Ipv4Addr, (net, prefix): (Ipv4Addr, u32)) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// The gateway of the default route in a `/proc/net/route` a RUN printed.
fn route_gateway(output: &str) -> Option<Ipv4Addr> {
    output.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000" && f[0].starts_with("eth"))
            .then(|| Ipv4Addr::from(u32::from_str_radix(f[2], 16).unwrap().to_le_bytes()))
    })
}

/// The host's links: name by index.
fn host_links() -> BTreeMap<u32, String> {
    fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let i = fs::read_to_string(e.path().join("ifindex")).ok()?;
            Some((
                i.trim().parse().ok()?,
                e.file_name().to_string_lossy().into_owned(),
            ))
        })
        .collect()
}

/// The data root's leases on its networks.
fn leases(b: &Builds) -> Vec<String> {
    let store = berth::network::store::Store::open(&b.scratch.data_root()).unwrap();
    let mut out = Vec::new();
    for n in store.list().unwrap() {
        out.extend(
            store
                .leases(&n.name)
                .unwrap()
                .into_iter()
                .map(|l| format!("{} {} {}", l.container, l.ip, l.host_veth)),
        );
    }
    out
}

/// No lease of the data root, none of the host ends `veths` (host ifindex, as a RUN saw it
/// as eth0's iflink) on the host, no element of the data root's containers in berth's
/// table.
fn assert_no_endpoints(b: &Builds, veths: &[u32]) {
    assert!(leases(b).is_empty(), "leases left: {:?}", leases(b));
    let links = host_links();
    for v in veths {
        assert!(
            !links.contains_key(v),
            "the step's veth is left on the host: {:?}",
            links.get(v)
        );
    }
    let engine =
        berth::engine::record::Engine::new(&b.scratch.data_root(), &b.scratch.dir.join("run"));
    let tag = berth::network::publish::tag(&engine, "");
    let nft = Command::new("nft")
        .args(["list", "table", "ip", "berth"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&nft.stdout);
    assert!(
        !table.contains(&tag),
        "berth's table holds elements of the build's containers: {table}"
    );
}

/// What follows `word ` on the line of the output that starts with it.
fn field<'a>(out: &'a Outcome, word: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{word} ")))
        .unwrap_or_else(|| panic!("no {word:?} line in {out:?}"))
        .trim()
}

#[test]
fn run_steps_join_the_default_bridge_or_none_or_the_host() {
    let Some(b) = Builds::networked("net") else {
        return;
    };
    // A server of the test's on every host address: a RUN reaches it at its gateway.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut req = [0u8; 1024];
            let _ = conn.read(&mut req);
            let _ =
                conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 19\r\n\r\nreached-the-gateway");
        }
    });
    let ctx = b.context(
        "net",
        &[(
            "Dockerfile",
            &format!(
                "FROM {BB}\nARG PORT\n\
                 RUN echo \"addr $(ip -o -4 addr show eth0 | awk '{{print $4}}')\"; \
                     gw=$(ip route | awk '/^default/{{print $3}}'); echo \"gw $gw\"; \
                     echo \"iflink $(cat /sys/class/net/eth0/iflink)\"; \
                     echo \"got $(wget -q -O- http://$gw:$PORT/)\"\n"
            ),
        )],
    );
    let port_arg = format!("PORT={port}");
    let out = b.build(&ctx, &["--no-cache", "--build-arg", &port_arg]);
    let (subnet, gateway) = default_network(&b);
    let addr: Ipv4Addr = field(&out, "addr")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        in_subnet(addr, subnet),
        "eth0 has {addr}, not in berth's subnet {subnet:?}: {out:?}"
    );
    assert_ne!(addr, gateway);
    assert_eq!(field(&out, "gw"), gateway.to_string(), "{out:?}");
    assert_eq!(field(&out, "got"), "reached-the-gateway", "{out:?}");
    let veth: u32 = field(&out, "iflink").parse().unwrap();
    assert_no_endpoints(&b, &[veth]);
    // The same with --network default, said.
    let said = b.build(
        &ctx,
        &[
            "--no-cache",
            "--network",
            "default",
            "--build-arg",
            &port_arg,
        ],
    );
    assert_eq!(field(&said, "got"), "reached-the-gateway", "{said:?}");

    // none: only the loopback. host: the host's links.
    let links = b.context(
        "links",
        &[(
            "Dockerfile",
            &format!("FROM {BB}\nRUN echo \"links $(ls /sys/class/net | tr '\\n' ' ')\"\n"),
        )],
    );
    let none = b.build(&links, &["--no-cache", "--network", "none"]);
    assert_eq!(field(&none, "links"), "lo", "{none:?}");
    let before: std::collections::BTreeSet<String> = host_links().into_values().collect();
    let host = b.build(&links, &["--no-cache", "--network", "host"]);
    let after: std::collections::BTreeSet<String> = host_links().into_values().collect();
    let seen: std::collections::BTreeSet<String> = field(&host, "links")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    for l in before.intersection(&after) {
        assert!(seen.contains(l), "--network host: {l} missing in {seen:?}");
    }
    // RUN --network in the Dockerfile overrides the build's.
    let per_step = b.context(
        "per-step",
        &[(
            "Dockerfile",
            &format!("FROM {BB}\nRUN --network=none echo \"links $(ls /sys/class/net | tr '\\n' ' ')\"\n"),
        )],
    );
    let out = b.build(&per_step, &["--no-cache"]);
    assert_eq!(field(&out, "links"), "lo", "{out:?}");
    assert_no_endpoints(&b, &[veth]);
}

// ---------------------------------------------------------------------------
// Instructions
// ---------------------------------------------------------------------------

#[test]
fn every_instruction() {
    let Some(b) = Builds::new("every") else {
        return;
    };
    // A tar for ADD to extract.
    let tar_dir = b.scratch.path("tar-src");
    fs::create_dir_all(tar_dir.join("pkg")).unwrap();
    fs::write(tar_dir.join("pkg/readme"), "from a tarball\n").unwrap();
    let ctx = b.context(
        "every",
        &[
            (
                "Dockerfile",
                &format!(
                    "# syntax=docker/dockerfile:1\n\
                     ARG BASE={BB}\n\
                     FROM ${{BASE}} AS base\n\
                     MAINTAINER someone@example.com\n\
                     ARG WHO=world\n\
                     ENV GREETING=\"hello ${{WHO}}\" OTHER=${{UNSET:-fallback}}\n\
                     ENV LEGACY value with spaces\n\
                     LABEL org.example.kind=test \"with space\"=\"a b\"\n\
                     RUN echo 'app:x:1234:1234::/home/app:/bin/sh' >> /etc/passwd && \
                         echo 'app:x:1234:' >> /etc/group\n\
                     WORKDIR /srv\n\
                     WORKDIR app\n\
                     COPY --chown=app:app --chmod=640 conf.txt ./\n\
                     ADD pkg.tar /opt/\n\
                     RUN [\"/bin/sh\", \"-c\", \"echo exec-form > /srv/app/exec.txt\"]\n\
                     RUN <<EOF\n\
                     echo heredoc-$WHO > /srv/app/heredoc.txt\n\
                     EOF\n\
                     SHELL [\"/bin/sh\", \"-e\", \"-c\"]\n\
                     RUN echo \"$GREETING\" > greeting.txt\n\
                     EXPOSE 8080 53/udp\n\
                     VOLUME /data\n\
                     STOPSIGNAL SIGQUIT\n\
                     HEALTHCHECK --interval=5s --retries=2 CMD true\n\
                     ONBUILD RUN echo triggered > /tmp/onbuild.txt\n\
                     USER app\n\
                     ENTRYPOINT [\"/bin/sh\", \"-c\"]\n\
                     CMD [\"cat greeting.txt\"]\n"
                ),
            ),
            ("conf.txt", "conf\n"),
        ],
    );
    let tar = ctx.join("pkg.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&tar_dir)
        .arg("-cf")
        .arg(&tar)
        .arg("pkg")
        .status()
        .unwrap();
    assert!(st.success());
    b.build(&ctx, &["-t", "every:1", "--build-arg", "WHO=berth"]);
    let c = b.config("every:1");
    let env: Vec<String> = serde_json::from_value(c["Env"].clone()).unwrap();
    assert!(env.contains(&"GREETING=hello berth".to_string()), "{env:?}");
    assert!(env.contains(&"OTHER=fallback".to_string()), "{env:?}");
    assert!(
        env.contains(&"LEGACY=value with spaces".to_string()),
        "{env:?}"
    );
    assert_eq!(c["Labels"]["org.example.kind"], "test");
    assert_eq!(c["Labels"]["with space"], "a b");
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["User"], "app");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}, "53/udp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["cat greeting.txt"]));
    // What image inspect shows less of: the raw config.
    let store = b.scratch.store();
    let manifest = store
        .image_manifest(&store.lookup("every:1").unwrap()[0].1, None)
        .unwrap()
        .0;
    let layers = store.image_layers(&manifest).unwrap();
    let raw: serde_json::Value = store.read_json(&layers.config_digest).unwrap();
    assert_eq!(raw["author"], "someone@example.com");
    assert_eq!(
        raw["config"]["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64, "Retries": 2})
    );
    assert_eq!(
        raw["config"]["OnBuild"],
        serde_json::json!(["RUN echo triggered > /tmp/onbuild.txt"])
    );
    assert_eq!(
        raw["config"]["Shell"],
        serde_json::json!(["/bin/sh", "-e", "-c"])
    );
    let history = raw["history"].as_array().unwrap();
    assert!(history.iter().any(
        |h| h["created_by"] == "/bin/sh -c #(nop)  STOPSIGNAL SIGQUIT" && h["empty_layer"] == true
    ));
    assert!(
        history.iter().any(|h| h["created_by"]
            .as_str()
            .unwrap_or("")
            .starts_with("|1 WHO=berth /bin/sh -c echo 'app:x")),
        "RUN's history names the args it saw: {history:?}"
    );
    // The files, as the user `app`.
    let listing = b.run(&[
        "every:1",
        "id -u; cat greeting.txt exec.txt heredoc.txt /opt/pkg/readme conf.txt; \
         stat -c '%a %U:%G %n' conf.txt; pwd",
    ]);
    assert_eq!(
        listing,
        "1234\nhello berth\nexec-form\nheredoc-berth\nfrom a tarball\nconf\n640 app:app conf.txt\n/srv/app\n"
    );

    // ONBUILD: the trigger runs in an image built FROM this one, and is not inherited further.
    let child = b.context(
        "child",
        &[("Dockerfile", "FROM every:1\nRUN cat /tmp/onbuild.txt\n")],
    );
    let out = b.build(&child, &["-t", "child:1"]);
    assert!(
        out.stdout.contains("RUN echo triggered > /tmp/onbuild.txt"),
        "{out:?}"
    );
    assert_eq!(b.run(&["child:1", "cat /tmp/onbuild.txt"]), "triggered\n");
    let store = b.scratch.store();
    let manifest = store
        .image_manifest(&store.lookup("child:1").unwrap()[0].1, None)
        .unwrap()
        .0;
    let layers = store.image_layers(&manifest).unwrap();
    let raw: serde_json::Value = store.read_json(&layers.config_digest).unwrap();
    assert!(
        raw["config"].get("OnBuild").is_none_or(|v| v.is_null()),
        "{raw}"
    );
}

#[test]
fn entrypoint_resets_the_base_cmd_and_targets_pick_stages() {
    let Some(b) = Builds::new("targets") else {
        return;
    };
    let ctx = b.context(
        "targets",
        &[(
            "Dockerfile",
            &format!(
                "FROM {BB} AS first\nRUN echo first > /stage\nCMD [\"base-cmd\"]\n\
                 FROM first AS second\nENTRYPOINT [\"cat\"]\n\
                 FROM {BB} AS unused\nRUN exit 9\n\
                 FROM second\nCMD [\"/stage\"]\n"
            ),
        )],
    );
    // `unused` is not needed by the last stage: its failing RUN never runs.
    let out = b.build(&ctx, &["-t", "t:last"]);
    assert!(!out.stdout.contains("exit 9"), "{out:?}");
    assert_eq!(b.run(&["t:last"]), "first\n");
    b.build(&ctx, &["-t", "t:second", "--target", "second"]);
    let c = b.config("t:second");
    assert_eq!(c["Entrypoint"], serde_json::json!(["cat"]));
    assert!(
        c["Cmd"].is_null() || c["Cmd"] == serde_json::json!([]),
        "{c}"
    );
    let bad = b.attempt(&ctx, &["--target", "nope"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("nope"), "{bad:?}");
}

// ---------------------------------------------------------------------------
// The cache
// ---------------------------------------------------------------------------

#[test]
fn cache_hits_and_misses_after_each_kind_of_change() {
    let Some(b) = Builds::new("cache") else {
        return;
    };
    let dockerfile = format!(
        "FROM {BB}\nARG V=1\nCOPY a.txt /a.txt\nRUN echo v=$V > /v.txt\nCOPY b.txt /b.txt\nCMD [\"cat\", \"/v.txt\"]\n"
    );
    let ctx = b.context(
        "cache",
        &[
            ("Dockerfile", &dockerfile),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
        ],
    );
    let first = b.build(&ctx, &["-t", "c:1"]);
    assert_eq!(cached_count(&first), 0, "{first:?}");
    let id1 = b.build_id(&ctx, &[]);
    // Fully cached: every step CACHED, the very same image.
    let again = b.build(&ctx, &["-t", "c:1"]);
    assert_eq!(cached_count(&again), 5, "{again:?}");
    assert_eq!(b.build_id(&ctx, &[]), id1);

    // A change to the last COPY's source: the steps before it hit, it misses.
    fs::write(ctx.join("b.txt"), "b2\n").unwrap();
    let out = b.build(&ctx, &[]);
    let steps = step_lines(&out);
    assert_eq!(cached_count(&out), 3, "{steps:?}");
    assert!(steps.iter().position(|l| l.contains("COPY b.txt")).unwrap() < steps.len());
    // Only a file's mode changes: a miss too (metadata is content); the ARG before it hits.
    fs::set_permissions(ctx.join("a.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    let out = b.build(&ctx, &[]);
    assert_eq!(cached_count(&out), 1, "{:?}", step_lines(&out));
    // Only a file's mtime changes: still a hit, as BuildKit.
    let a = ctx.join("a.txt");
    let st = Command::new("touch")
        .args(["-d", "2001-01-01"])
        .arg(&a)
        .status()
        .unwrap();
    assert!(st.success());
    let out = b.build(&ctx, &[]);
    assert_eq!(cached_count(&out), 5, "{:?}", step_lines(&out));
    // A build arg the RUN sees: the RUN and what follows miss.
    let out = b.build(&ctx, &["--build-arg", "V=2"]);
    assert_eq!(cached_count(&out), 2, "{:?}", step_lines(&out));
    // The instruction's text.
    fs::write(
        ctx.join("Dockerfile"),
        dockerfile.replace("CMD [\"cat\", \"/v.txt\"]", "CMD [\"cat\", \"/a.txt\"]"),
    )
    .unwrap();
    let out = b.build(&ctx, &[]);
    assert_eq!(cached_count(&out), 4, "{:?}", step_lines(&out));
    // --no-cache: nothing from the cache.
    fs::write(ctx.join("Dockerfile"), &dockerfile).unwrap();
    let out = b.build(&ctx, &["--no-cache", "-t", "c:1"]);
    assert_eq!(cached_count(&out), 0, "{:?}", step_lines(&out));
    // The image removed: its layers go, and the steps that made them run again (the ARG,
    // which has no layer, still hits).
    b.berth(&["rmi", "c:1"]).ok("rmi");
    let out = b.build(&ctx, &["-t", "c:1"]);
    let steps = step_lines(&out);
    let after = |what: &str| {
        let i = steps.iter().position(|l| l.contains(what)).unwrap();
        steps[i + 1].clone()
    };
    assert_eq!(after("ARG V=1"), "--> CACHED", "{steps:?}");
    assert_ne!(after("COPY a.txt"), "--> CACHED", "{steps:?}");
    assert_ne!(after("RUN echo"), "--> CACHED", "{steps:?}");
    assert_eq!(b.run(&["c:1"]), "v=1\n");
    // builder prune: no record left, the named image intact.
    b.berth(&["builder", "prune", "-f"]).ok("builder prune");
    let out = b.build(&ctx, &[]);
    assert_eq!(cached_count(&out), 0, "{:?}", step_lines(&out));
    assert_eq!(b.run(&["c:1"]), "v=1\n");
}

/// A hostile RUN under SOURCE_DATE_EPOCH: it plants symlinks to the host's files and
/// directories (absolute host paths, which mean the host's tree to a walk on the host) at the
/// top of its layer and below. The clamp of the layer's times sets the links' own times and
/// follows none of them: the host canaries keep their times.
#[test]
fn source_date_epoch_clamp_follows_no_link_out_of_the_layer() {
    let Some(b) = Builds::new("epoch-links") else {
        return;
    };
    let canary = std::env::temp_dir().join(format!("berth-epoch-canary-{}", std::process::id()));
    let _ = fs::remove_dir_all(&canary);
    fs::create_dir_all(canary.join("d")).unwrap();
    fs::write(canary.join("victim"), "host\n").unwrap();
    fs::write(canary.join("d/inner"), "host\n").unwrap();
    let watched = ["", "victim", "d", "d/inner"].map(|n| canary.join(n));
    let before: Vec<i64> = watched
        .iter()
        .map(|p| fs::symlink_metadata(p).unwrap().mtime())
        .collect();
    let c = canary.display();
    let ctx = b.context(
        "epoch-links",
        &[(
            "Dockerfile",
            &format!(
                "FROM {BB}\n\
                 RUN ln -s {c}/victim /link-file && ln -s {c} /link-dir \
                     && mkdir -p /sub/deeper && ln -s {c}/d /sub/link-sub \
                     && ln -s {c}/d/inner /sub/deeper/link-inner\n"
            ),
        )],
    );
    b.build_id(
        &ctx,
        &["--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"],
    );
    let after: Vec<i64> = watched
        .iter()
        .map(|p| fs::symlink_metadata(p).unwrap().mtime())
        .collect();
    let _ = fs::remove_dir_all(&canary);
    assert_eq!(after, before, "the clamp changed host times through a link");
    assert!(before.iter().all(|t| *t > 1_700_000_000), "{before:?}");
}

#[test]
fn source_date_epoch_makes_the_image_reproducible() {
    let Some(b) = Builds::new("epoch") else {
        return;
    };
    const EPOCH: i64 = 1_700_000_000;
    let ctx = b.context(
        "epoch",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {BB}\nCOPY f.txt /f.txt\n\
                     RUN mkdir -p /made/sub && echo x > /made/sub/file && touch /made/touched \
                         && touch /etc/passwd\n\
                     ENV A=1\nCMD [\"cat\", \"/f.txt\"]\n"
                ),
            ),
            ("f.txt", "same\n"),
        ],
    );
    let layers = |id: &str| -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&b.berth(&["image", "inspect", id]).ok("inspect")).unwrap();
        v[0]["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect()
    };
    let args = ["--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"];
    let first = b.build_id(&ctx, &[&args[..], &["-t", "e:1"]].concat());
    // Another second, and the context's file touched: only times differ.
    std::thread::sleep(Duration::from_millis(1100));
    fs::write(ctx.join("f.txt"), "same\n").unwrap();
    let second = b.build_id(&ctx, &[&args[..], &["-t", "e:2"]].concat());
    assert_eq!(
        first, second,
        "two --no-cache builds with SOURCE_DATE_EPOCH differ"
    );
    assert_eq!(layers("e:1"), layers("e:2"));
    // From the environment, as buildx passes it on: the same image.
    let mut c = b.scratch.command(&[
        "build",
        "--network",
        "none",
        "--no-cache",
        "-q",
        ctx.to_str().unwrap(),
    ]);
    c.env("SOURCE_DATE_EPOCH", EPOCH.to_string());
    let from_env = run_within(&c, Duration::from_secs(300)).ok("build with the env's epoch");
    assert_eq!(from_env.trim(), first);
    let store = b.scratch.store();
    let config: serde_json::Value = store
        .read_json(&berth::image::Digest::parse(&first).unwrap())
        .unwrap();
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    for h in config["history"].as_array().unwrap().iter().skip(1) {
        assert_eq!(h["created"], "2023-11-14T22:13:20Z", "{h}");
    }
    // In a container of the image: no file the build made is later than the epoch. (Not
    // /etc: the container's own /etc/hosts mount points are made in it as it starts.)
    let made = "/f.txt /made /made/sub /made/sub/file /made/touched /etc/passwd";
    let times = |image: &str| -> Vec<i64> {
        b.run(&[image, "sh", "-c", &format!("stat -c %Y {made}")])
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    };
    let clamped = times("e:1");
    assert_eq!(clamped.len(), 6);
    assert!(clamped.iter().all(|t| *t <= EPOCH), "{clamped:?}");
    // Without it, the times are real: another image, files of the build's time.
    let real = b.build_id(&ctx, &["--no-cache", "-t", "e:real"]);
    assert_ne!(real, first);
    assert_ne!(layers("e:real")[1..], layers("e:1")[1..]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // (What the RUN made or touched.)
    let times = times("e:real");
    assert!(
        [1, 2, 3, 4, 5]
            .iter()
            .all(|&i| times[i] > EPOCH && times[i] <= now),
        "{times:?}"
    );
    // A bad value is refused, naming it.
    let out = b.attempt(&ctx, &["--build-arg", "SOURCE_DATE_EPOCH=yesterday"]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(out.stderr.contains("SOURCE_DATE_EPOCH"), "{out:?}");
}

/// A RUN of stage `me` that meets stage `other`: it notes its start (the kernel's uptime) in
/// the cache mount `meet`, waits (at most 60 s) for `other` to have started, then notes its
/// end. Run one after the other, the first would wait in vain and fail.
fn meeting_run(me: &str, other: &str, then: &str) -> String {
    format!(
        "RUN --mount=type=cache,id=meet,target=/meet \
             cut -d' ' -f1 /proc/uptime > /meet/{me}-start; i=0; \
             while [ ! -e /meet/{other}-start ]; do \
                 i=$((i+1)); if [ $i -gt 600 ]; then echo {me} waited alone; exit 9; fi; \
                 usleep 100000; \
             done; \
             echo {me}-met-{other}; cut -d' ' -f1 /proc/uptime > /meet/{me}-end; {then}\n"
    )
}

/// The cache mount `meet` of the data root, emptied.
fn meeting_place(b: &Builds) -> PathBuf {
    let dir = b
        .scratch
        .data_root()
        .join("build/cache-mounts")
        .join(berth::image::Digest::of_bytes(b"meet").hex());
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn independent_stages_build_at_once() {
    let Some(b) = Builds::new("parallel") else {
        return;
    };
    let ctx = b.context(
        "parallel",
        &[(
            "Dockerfile",
            &format!(
                "FROM {BB} AS left\n{}\
                 FROM {BB} AS right\n{}\
                 FROM {BB}\nCOPY --from=left /left /left\nCOPY --from=right /right /right\n\
                 CMD [\"cat\", \"/left\", \"/right\"]\n",
                meeting_run("left", "right", "echo L > /left"),
                meeting_run("right", "left", "echo R > /right"),
            ),
        )],
    );
    let meet = meeting_place(&b);
    let out = b.build(&ctx, &["--no-cache", "-t", "both:1"]);
    let time = |name: &str| -> f64 {
        fs::read_to_string(meet.join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (ls, le, rs, re) = (
        time("left-start"),
        time("left-end"),
        time("right-start"),
        time("right-end"),
    );
    // Each started before the other ended: they ran at once.
    assert!(
        ls <= re && rs <= le,
        "left {ls}..{le}, right {rs}..{re}: {out:?}"
    );
    // Each stage's lines carry its name; the last stage ran after both.
    assert!(out.stdout.contains("[left] left-met-right"), "{out:?}");
    assert!(out.stdout.contains("[right] right-met-left"), "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("[left] STEP 2/") && l.contains("RUN")),
        "{out:?}"
    );
    assert_eq!(b.run(&["both:1"]), "L\nR\n");
    assert!(b.leftovers().is_empty(), "{:?}", b.leftovers());
}

#[test]
fn a_failing_stage_fails_the_build_and_stops_the_other() {
    let Some(b) = Builds::new("parallel-fail") else {
        return;
    };
    let ctx = b.context(
        "parallel-fail",
        &[(
            "Dockerfile",
            &format!(
                "FROM {BB} AS good\n{}\
                 FROM {BB} AS bad\n{}\
                 FROM {BB}\nCOPY --from=good /x /x\nCOPY --from=bad /y /y\n",
                meeting_run("good", "bad", "sleep 7393"),
                meeting_run("bad", "good", "echo bad-stage-fails; exit 3"),
            ),
        )],
    );
    let meet = meeting_place(&b);
    let out = b.attempt(&ctx, &["--no-cache"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("[bad] bad-stage-fails"), "{out:?}");
    assert!(
        out.stderr.contains("returned a non-zero code: 3"),
        "{out:?}"
    );
    // (The good stage was running: the bad one met it.)
    assert!(meet.join("good-start").exists(), "{out:?}");
    assert!(b.leftovers().is_empty(), "{:?}", b.leftovers());
    assert_no_process("sleep 7393", "the other stage's RUN");
}

#[test]
fn stage_workers_go_with_a_killed_build() {
    let Some(b) = Builds::new("parallel-kill") else {
        return;
    };
    let ctx = b.context(
        "parallel-kill",
        &[(
            "Dockerfile",
            &format!(
                "FROM {BB} AS one\n{}FROM {BB} AS two\n{}\
                 FROM {BB}\nCOPY --from=one /x /x\nCOPY --from=two /y /y\n",
                meeting_run("one", "two", "sleep 7394"),
                meeting_run("two", "one", "sleep 7394"),
            ),
        )],
    );
    meeting_place(&b);
    let mut child = Interrupting(
        b.scratch
            .command(&["build", "--network", "none", ctx.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // One met the other: both stages' RUNs are running, each in its worker.
    wait_for_output(&mut child.0, "-met-");
    // SAFETY: signals our own child, which has not been reaped.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) };
    child.0.wait().unwrap();
    // The workers interrupt themselves (their parent died); the next build sweeps the rest.
    // A build at once: it must not sweep the work directory under the workers' feet.
    let ok = b.context("after-kill", &[("Dockerfile", &format!("FROM {BB}\n"))]);
    b.build(&ok, &[]);
    // (A worker's command line is the builder's: it names the context.)
    let workers = ctx.to_str().unwrap().to_string();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while !processes_naming(&workers).is_empty() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_no_process(&workers, "a worker of the killed build");
    assert_no_process("sleep 7394", "a killed build's RUN");
    b.build(&ok, &[]);
    let left = b.leftovers();
    let listing = Command::new("find")
        .args(left.iter().filter(|l| !l.starts_with("mount ")))
        .output()
        .unwrap();
    assert!(
        left.is_empty(),
        "{left:?}: {}",
        String::from_utf8_lossy(&listing.stdout)
    );
}

/// No process's command line holds `needle` (a RUN's command, unique to the test).
fn assert_no_process(needle: &str, what: &str) {
    let pids = processes_naming(needle);
    assert!(pids.is_empty(), "{what} survived: {pids:?}");
}

#[test]
fn run_cache_and_tmpfs_mounts_stay_out_of_the_image() {
    let Some(b) = Builds::new("mounts") else {
        return;
    };
    let ctx = b.context(
        "mounts",
        &[(
            "Dockerfile",
            &format!(
                "FROM {BB}\n\
                 RUN --mount=type=cache,target=/var/cache/app --mount=type=tmpfs,target=/scratch \
                     echo run >> /var/cache/app/runs && wc -l < /var/cache/app/runs > /seen && \
                     touch /scratch/junk\n"
            ),
        )],
    );
    b.build(&ctx, &["--no-cache", "-t", "m:1"]);
    b.build(&ctx, &["--no-cache", "-t", "m:1"]);
    // The cache mount kept the first build's line for the second; the image has neither
    // the cache's file nor the tmpfs's.
    assert_eq!(b.run(&["m:1", "cat", "/seen"]).trim(), "2");
    let listing = b.run(&[
        "m:1",
        "sh",
        "-c",
        "ls -A /var/cache/app /scratch 2>&1; true",
    ]);
    assert!(
        !listing.contains("runs") && !listing.contains("junk"),
        "{listing}"
    );
    // Bind mounts: the context (read-only) and another stage's root.
    let binds = b.context(
        "mounts-bind",
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {BB} AS tools\nRUN echo from-stage > /tool.txt\n\
                     FROM {BB}\n\
                     RUN --mount=type=bind,source=src,target=/src \
                         --mount=type=bind,from=tools,source=/tool.txt,target=/mnt/tool.txt \
                         cat /src/a.txt /mnt/tool.txt > /out.txt && ! touch /src/new 2>/dev/null\n"
                ),
            ),
            ("src/a.txt", "from-context\n"),
        ],
    );
    b.build(&binds, &["-t", "m:2"]);
    assert_eq!(
        b.run(&["m:2", "cat", "/out.txt"]),
        "from-context\nfrom-stage\n"
    );
    assert!(!binds.join("src/new").exists());
    let escape = b.context(
        "mounts-escape",
        &[(
            "Dockerfile",
            &format!("FROM {BB}\nRUN --mount=type=bind,source=../..,target=/h ls /h\n"),
        )],
    );
    let out = b.attempt(&escape, &[]);
    assert_eq!(out.code, 1, "a bind mount left the context: {out:?}");
    let bad = b.context(
        "mounts-bad",
        &[(
            "Dockerfile",
            &format!("FROM {BB}\nRUN --mount=type=secret,id=x true\n"),
        )],
    );
    let out = b.attempt(&bad, &[]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("Dockerfile:2"), "{out:?}");
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

#[test]
fn quiet_iidfile_output_archives_and_stdin() {
    let Some(b) = Builds::new("output") else {
        return;
    };
    let ctx = b.context(
        "output",
        &[(
            "Dockerfile",
            &format!("FROM {BB}\nRUN echo noisy\nCMD [\"echo\", \"ok\"]\n"),
        )],
    );
    let iid = b.scratch.path("iid");
    let oci = b.scratch.path("out-oci.tar");
    let docker = b.scratch.path("out-docker.tar");
    let out = b.build(
        &ctx,
        &[
            "-q",
            "--iidfile",
            iid.to_str().unwrap(),
            "-t",
            "o:1",
            "--label",
            "from=cli",
            "--output",
            &format!("type=oci,dest={}", oci.display()),
        ],
    );
    let id = out.stdout.trim();
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "-q prints only the id: {out:?}"
    );
    assert!(!out.stdout.contains("noisy"));
    assert_eq!(fs::read_to_string(&iid).unwrap(), id);
    assert_eq!(b.config("o:1")["Labels"]["from"], "cli");
    let listing = Command::new("tar").arg("-tf").arg(&oci).output().unwrap();
    let names = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        names.contains("index.json") && names.contains("oci-layout"),
        "{names}"
    );
    b.build(
        &ctx,
        &[
            "-t",
            "o:2",
            "--output",
            &format!("type=docker,dest={}", docker.display()),
        ],
    );
    // The docker archive loads into another store and runs.
    let other = Scratch::new("build-output-load");
    other.berth_ok(&["load", "-i", docker.to_str().unwrap()]);
    // Dockerfile on stdin, no context; `image build` is `build`.
    let mut c = b
        .scratch
        .command(&["image", "build", "--network", "none", "-q", "-"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("FROM {BB}\nRUN echo from-stdin > /f\n").as_bytes())
        .unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(done.status.success(), "{done:?}");
    assert!(String::from_utf8_lossy(&done.stdout).starts_with("sha256:"));
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[test]
fn bad_inputs_name_what_is_wrong() {
    let Some(b) = Builds::new("bad") else { return };
    let try_build = |name: &str, dockerfile: &str, files: &[(&str, &str)], args: &[&str]| {
        let mut all_files = vec![("Dockerfile", dockerfile)];
        all_files.extend_from_slice(files);
        let ctx = b.context(name, &all_files);
        b.attempt(&ctx, args)
    };
    let out = try_build(
        "unknown",
        &format!("FROM {BB}\nRUN true\nFOO bar\n"),
        &[],
        &[],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("Dockerfile:3: unknown instruction: FOO"),
        "{out:?}"
    );

    let out = try_build(
        "missing",
        &format!("FROM {BB}\nCOPY nothere.txt /x\n"),
        &[],
        &[],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nothere.txt"), "{out:?}");

    let out = try_build(
        "failing",
        &format!("FROM {BB}\nRUN echo about to fail; exit 3\n"),
        &[],
        &[],
    );
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("about to fail"), "{out:?}");
    assert!(
        out.stderr.contains(
            "The command '/bin/sh -c echo about to fail; exit 3' returned a non-zero code: 3"
        ),
        "{out:?}"
    );
    // Quiet: the failing step's output is shown with the error.
    let out = try_build(
        "failing-q",
        &format!("FROM {BB}\nRUN echo quiet-fail; exit 4\n"),
        &[],
        &["-q"],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("quiet-fail") && out.stderr.contains("non-zero code: 4"),
        "{out:?}"
    );

    let out = try_build("noimage", "FROM berth-tests/nope:1\n", &[], &[]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("berth-tests/nope:1"), "{out:?}");

    let out = try_build(
        "escape",
        &format!("FROM {BB}\nCOPY ../secret /x\n"),
        &[],
        &[],
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("../secret"), "{out:?}");

    // Arguments: Docker's codes (1 for the count, 125 for bad values).
    let out = b.berth(&["build"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("requires exactly 1 argument"),
        "{out:?}"
    );
    let ctx = b.context("args", &[("Dockerfile", &format!("FROM {BB}\n"))]);
    let c = ctx.to_str().unwrap();
    for bad in [
        vec!["build", "-t", "Bad:Tag", c],
        vec!["build", "--output", "type=local,dest=x", c],
        vec!["build", "--network", "bridge2", c],
        vec!["build", "--platform", "linux//amd64", c],
        vec!["build", "--no-such-flag", c],
    ] {
        let out = b.berth(&bad);
        assert_eq!(out.code, 125, "{bad:?}: {out:?}");
    }
    let out = b.berth(&["build", "/nonexistent-context-dir"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("/nonexistent-context-dir"), "{out:?}");
    assert!(b.leftovers().is_empty(), "{:?}", b.leftovers());
}

#[test]
fn hostile_context_and_image_reach_nothing_on_the_host() {
    let Some(b) = Builds::new("hostile") else {
        return;
    };
    let canary_dir = b.scratch.path("host-canary");
    fs::create_dir_all(&canary_dir).unwrap();
    fs::write(canary_dir.join("secret"), "host secret\n").unwrap();
    // A context symlink pointing out of the context.
    let ctx = b.context(
        "hostile",
        &[("Dockerfile", &format!("FROM {BB}\nCOPY link /stolen\n"))],
    );
    std::os::unix::fs::symlink(canary_dir.join("secret"), ctx.join("link")).unwrap();
    let out = b.attempt(&ctx, &[]);
    assert_ne!(
        out.code, 0,
        "a symlink out of the context was followed: {out:?}"
    );
    // A RUN that makes /etc a symlink to the host's canary directory: the layer code that
    // removes bind-mount stubs must not follow it.
    let ctx = b.context(
        "hostile-run",
        &[(
            "Dockerfile",
            &format!(
                "FROM {BB}\nRUN rm -rf /etc && ln -s {} /etc\n",
                canary_dir.display()
            ),
        )],
    );
    let out = b.attempt(&ctx, &[]);
    // The RUN may fail (the runtime cannot bind over a dangling /etc) or succeed; either way
    // the host's file is untouched.
    let _ = out;
    assert_eq!(
        fs::read_to_string(canary_dir.join("secret")).unwrap(),
        "host secret\n"
    );
    // WORKDIR through a symlink to the host makes nothing there.
    let ctx = b.context(
        "hostile-workdir",
        &[(
            "Dockerfile",
            &format!(
                "FROM {BB}\nRUN ln -s {} /escape\nWORKDIR /escape/made-by-build\n",
                canary_dir.display()
            ),
        )],
    );
    let _ = b.attempt(&ctx, &[]);
    assert!(
        !canary_dir.join("made-by-build").exists(),
        "WORKDIR followed a link out of the root"
    );
    assert!(b.leftovers().is_empty(), "{:?}", b.leftovers());
}

// ---------------------------------------------------------------------------
// Interrupts
// ---------------------------------------------------------------------------

fn wait_for_output(child: &mut std::process::Child, marker: &str) -> String {
    use std::io::Read;
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&seen).contains(marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {marker:?} in {seen:?}"
        );
        let n = out.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "the build ended before {marker:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    child.stdout = Some(out);
    String::from_utf8_lossy(&seen).into_owned()
}

/// A build the test runs; interrupted (it then cleans up) if the test fails before it ends.
struct Interrupting(std::process::Child);

impl Drop for Interrupting {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // SAFETY: signals our own child, which has not been reaped.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
            let _ = self.0.wait();
        }
    }
}

#[test]
fn interrupt_and_kill_leave_nothing_and_keep_finished_steps() {
    // On the default network: a RUN's endpoint (veth, lease) is among what must not stay.
    let Some(b) = Builds::networked("interrupt") else {
        return;
    };
    let ctx = b.context(
        "interrupt",
        &[(
            "Dockerfile",
            &format!(
                "FROM {BB}\nRUN echo done > /first\n\
                 RUN echo \"iflink $(cat /sys/class/net/eth0/iflink)\"; \
                     echo long-step-$((6*7)); sleep 7391\n"
            ),
        )],
    );
    for signal in [libc::SIGINT, libc::SIGKILL] {
        let mut child = Interrupting(
            b.scratch
                .command(&["build", ctx.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let child = &mut child.0;
        // (The step's own line names the command: wait for what it prints.)
        let seen = wait_for_output(child, "long-step-42");
        let veth: u32 = seen
            .lines()
            .find_map(|l| l.strip_prefix("iflink "))
            .unwrap_or_else(|| panic!("no iflink in {seen:?}"))
            .trim()
            .parse()
            .unwrap();
        // The network commands' sweep leaves a running step's endpoint alone.
        assert_eq!(leases(&b).len(), 1, "{:?}", leases(&b));
        b.berth(&["network", "ls"]).ok("network ls");
        assert_eq!(
            leases(&b).len(),
            1,
            "the sweep took a running RUN's lease: {:?}",
            leases(&b)
        );
        assert!(host_links().contains_key(&veth), "the step's veth is gone");
        // SAFETY: signals our own child, which has not been reaped.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        if signal == libc::SIGINT {
            assert_eq!(status.code(), Some(130), "{status:?}");
            assert!(
                b.leftovers().is_empty(),
                "after SIGINT: {:?}",
                b.leftovers()
            );
            assert_no_endpoints(&b, &[veth]);
        } else {
            assert_eq!(status.signal(), Some(libc::SIGKILL));
        }
        // The next build sweeps what a killed one left, and finds the first RUN cached.
        let ok = b.context(
            "after",
            &[(
                "Dockerfile",
                &format!("FROM {BB}\nRUN echo done > /first\n"),
            )],
        );
        let out = b.build(&ok, &[]);
        assert_eq!(cached_count(&out), 1, "{out:?}");
        assert!(
            b.leftovers().is_empty(),
            "after {signal}: {:?}",
            b.leftovers()
        );
        assert_no_process("sleep 7391", "the RUN's process");
        b.berth(&["network", "ls"]).ok("network ls");
        assert_no_endpoints(&b, &[veth]);
    }
}

// ---------------------------------------------------------------------------
// Differential: buildah
// ---------------------------------------------------------------------------

/// What two builds of a context must agree on: each path's kind, mode, owner, content or
/// link target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_file() {
                use sha2::Digest;
                let data = fs::read(&p).unwrap();
                let h: String = sha2::Sha256::digest(&data)
                    .iter()
                    .take(8)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("file {} {h}", data.len())
            } else {
                format!("other {:o}", m.mode() & libc::S_IFMT)
            };
            out.insert(
                rel,
                format!("{what} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()),
            );
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

struct Buildah {
    root: PathBuf,
}

impl Buildah {
    fn cmd(&self, args: &[&str]) -> Outcome {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(self.root.join("storage"))
            .arg("--runroot")
            .arg(self.root.join("runroot"))
            .arg("--storage-driver")
            .arg("vfs")
            .args(args);
        run_within(&c, Duration::from_secs(600))
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = self.cmd(&["rm", "--all"]);
        let _ = self.cmd(&["rmi", "--all", "--force"]);
        cleanup(&self.root);
    }
}

/// The config members both must agree on; buildah's own label left out.
fn comparable(config: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for k in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
    ] {
        let mut v = config.get(k).cloned().unwrap_or(serde_json::Value::Null);
        if let Some(labels) = v.as_object_mut() {
            labels.remove("io.buildah.version");
        }
        let empty = v.is_null()
            || v.as_array().is_some_and(|a| a.is_empty())
            || v.as_object().is_some_and(|o| o.is_empty())
            || v.as_str() == Some("");
        if !empty {
            out.insert(k.to_string(), v);
        }
    }
    serde_json::Value::Object(out)
}

#[test]
fn same_tree_and_config_as_buildah() {
    if skip_without(&["buildah", "runc"], "the buildah differential") {
        return;
    }
    let Some(b) = Builds::new("buildah") else {
        return;
    };
    let buildah = Buildah {
        root: b.scratch.path("buildah"),
    };
    let archive = busybox_archive(&b.scratch);
    buildah
        .cmd(&["pull", &format!("docker-archive:{}", archive.display())])
        .ok("buildah pull");
    let _ = buildah.cmd(&[
        "tag",
        "docker.io/berth-tests/busybox:latest",
        "localhost/berth-tests/busybox:latest",
    ]);
    compare_with_buildah(
        &b,
        &buildah,
        "diff",
        &[
            (
                "Dockerfile",
                "FROM berth-tests/busybox\n\
                 ARG V=1\n\
                 ENV A=1 B=\"two words\"\n\
                 LABEL k=v\n\
                 WORKDIR /app\n\
                 COPY site/ ./site/\n\
                 COPY --chmod=600 one.txt /etc/one.txt\n\
                 RUN mkdir -p /data/x && echo $V > /data/x/v && chmod 700 /data/x && \
                     rm /etc/group && ln -s /data/x/v /vlink && echo 'u1:x:1234:1234::/home/u1:/bin/sh' >> /etc/passwd\n\
                 RUN chown -R u1 /data\n\
                 USER u1\n\
                 EXPOSE 80 53/udp\n\
                 VOLUME /data\n\
                 STOPSIGNAL SIGTERM\n\
                 ENTRYPOINT [\"/bin/sh\"]\n\
                 CMD [\"-c\", \"cat /data/x/v\"]\n",
            ),
            ("site/index.html", "<p>hi</p>\n"),
            ("site/sub/a.txt", "a\n"),
            ("one.txt", "one\n"),
        ]
    );
    compare_with_buildah(
        &b,
        &buildah,
        "site",
        &[
            (
                "Dockerfile",
                "FROM berth-tests/busybox\nCOPY site/ /www/\nEXPOSE 8080\n\
                 CMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
            ),
            ("site/index.html", "<h1>site</h1>\n"),
            ("site/css/a.css", "h1 {}\n"),
        ],
    );
    compare_with_buildah(
        &b,
        &buildah,
        "stages",
        &[(
            "Dockerfile",
            "FROM berth-tests/busybox AS build\n\
             RUN mkdir -p /out/bin && echo built > /out/result && cp /bin/busybox /out/bin/\n\
             FROM scratch\n\
             COPY --from=build /out/ /\n\
             ENTRYPOINT [\"/bin/busybox\", \"cat\"]\n\
             CMD [\"/result\"]\n",
        )],
    );
}

/// Builds the context of `files` with berth and with buildah, and compares the configs and
/// the final root filesystems.
fn compare_with_buildah(b: &Builds, buildah: &Buildah, name: &str, files: &[(&str, &str)]) {
    let ctx = b.context(name, files);
    let ours_tag = format!("{name}:berth");
    let theirs_tag = format!("{name}:buildah");
    b.build(&ctx, &["-t", &ours_tag]);
    buildah
        .cmd(&[
            "bud",
            // crun refuses this host's hybrid cgroups; runc copes.
            "--runtime",
            "runc",
            "--network",
            "host",
            "--layers",
            "-t",
            &theirs_tag,
            ctx.to_str().unwrap(),
        ])
        .ok("buildah bud");

    // Configs.
    let ours = comparable(&b.config(&ours_tag));
    let theirs_text = buildah
        .cmd(&["inspect", "--type", "image", &theirs_tag])
        .ok("inspect");
    let theirs_all: serde_json::Value = serde_json::from_str(&theirs_text).unwrap();
    let theirs = comparable(&theirs_all["OCIv1"]["config"]);
    assert_eq!(ours, theirs, "{name}: the configs differ");

    // Trees: berth's image as a copied rootfs, buildah's through a mounted container.
    let bundle = b.scratch.path(&format!("{name}-bundle"));
    b.scratch
        .berth_ok(&["bundle", "--copy", &ours_tag, bundle.to_str().unwrap()]);
    let ours = tree(&bundle.join("rootfs"));
    let cid = buildah.cmd(&["from", &theirs_tag]).ok("buildah from");
    let mnt = buildah.cmd(&["mount", cid.trim()]).ok("buildah mount");
    let mut theirs = tree(Path::new(mnt.trim()));
    // buildah leaves in the image the empty files it bound /etc/hosts, /etc/hostname and
    // /etc/resolv.conf over during RUN (Docker's builder and berth leave them out).
    for stub in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        if !ours.contains_key(stub) && theirs.get(stub).is_some_and(|v| v.starts_with("file 0 ")) {
            theirs.remove(stub);
        }
    }
    let _ = buildah.cmd(&["umount", cid.trim()]);
    b.scratch
        .berth_ok(&["rm-bundle", "--force", bundle.to_str().unwrap()]);
    let differing: Vec<String> = ours
        .keys()
        .chain(theirs.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| ours.get(*k) != theirs.get(*k))
        .map(|k| format!("{k}: berth {:?} buildah {:?}", ours.get(k), theirs.get(k)))
        .collect();
    assert!(
        differing.is_empty(),
        "{name}: the trees differ:\n{}",
        differing.join("\n")
    );
}
