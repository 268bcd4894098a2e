//! `berth compose` with real containers (busybox): a web app (httpd) and a client that reaches
//! it by its service name on the project network, published ports answering on 127.0.0.1,
//! named volumes surviving `down`/`up`, depends_on order and service_healthy, idempotent `up`,
//! `down` removing everything; and the errors (unknown dependency, a cycle, `${X:?err}`,
//! malformed YAML naming file and line, unknown keys, a port conflict leaving nothing made).
//! Root only.

mod engine_support;

use engine_support::{Scratch, BUSYBOX};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

struct Project {
    scratch: Scratch,
    dir: PathBuf,
    name: String,
}

impl Project {
    fn new(tag: &str, yaml: &str) -> Option<Project> {
        if !is_root() {
            eprintln!("SKIPPED: compose tests need root");
            return None;
        }
        let scratch = Scratch::new(&format!("compose-{tag}"));
        engine_support::load_busybox(&scratch);
        let dir = scratch.path(tag);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("compose.yaml"), yaml).unwrap();
        Some(Project {
            scratch,
            dir,
            name: tag.to_string(),
        })
    }

    fn write(&self, yaml: &str) {
        std::fs::write(self.dir.join("compose.yaml"), yaml).unwrap();
    }

    fn compose(&self, args: &[&str]) -> Output {
        let mut c = self.scratch.command(&["compose"]);
        c.current_dir(&self.dir).args(args);
        c.output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "compose {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn err(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(!out.status.success(), "compose {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.scratch.berth_ok(&["container", "inspect", name]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
    }

    fn names(&self) -> Vec<String> {
        let out = self
            .scratch
            .berth_ok(&["container", "ls", "-a", "--format", "{{.Names}}"]);
        let mut v: Vec<String> = out.lines().map(String::from).collect();
        v.sort();
        v
    }

    fn networks(&self) -> Vec<String> {
        let out = self.scratch.berth_ok(&["network", "ls"]);
        out.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|n| n.starts_with(&format!("{}_", self.name)))
            .map(String::from)
            .collect()
    }

    fn volumes(&self) -> Vec<String> {
        let out = self
            .scratch
            .berth_ok(&["volume", "ls", "--format", "{{.Name}}"]);
        out.lines().map(String::from).collect()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v"]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET / on 127.0.0.1:port, retried for a few seconds.
fn http_get(port: u16) -> String {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })();
        match r {
            Ok(s) if s.contains("200") => return s,
            _ if Instant::now() > deadline => panic!("no HTTP answer on port {port}: {r:?}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn web_app(port: u16) -> String {
    format!(
        r#"
services:
  web:
    image: {BUSYBOX}
    command: ["sh", "-c", "[ -f /www/index.html ] || echo hello from web > /www/index.html; exec httpd -f -p 80 -h /www"]
    ports:
      - "127.0.0.1:{port}:80"
    volumes:
      - www:/www
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1/"]
      interval: 1s
      retries: 20
    labels:
      tier: front
  client:
    image: {BUSYBOX}
    command: sleep 1000
    environment:
      - TARGET=http://web/
    depends_on:
      web:
        condition: service_healthy
volumes:
  www:
"#
    )
}

fn started_at(p: &Project, name: &str) -> String {
    p.inspect(name)["State"]["StartedAt"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn web_app_up_ps_logs_idempotent_down() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let Some(p) = Project::new("webapp", &web_app(port)) else {
        return;
    };
    p.ok(&["up", "-d"]);
    assert_eq!(p.names(), vec!["webapp-client-1", "webapp-web-1"]);
    assert_eq!(p.networks(), vec!["webapp_default"]);
    assert!(p.volumes().contains(&"webapp_www".to_string()));

    // The compose labels and the service's own.
    let web = p.inspect("webapp-web-1");
    let labels = &web["Config"]["Labels"];
    assert_eq!(labels["com.docker.compose.project"], "webapp");
    assert_eq!(labels["com.docker.compose.service"], "web");
    assert_eq!(labels["com.docker.compose.container-number"], "1");
    assert_eq!(labels["com.docker.compose.oneoff"], "False");
    assert_eq!(labels["tier"], "front");
    assert_eq!(
        labels["com.docker.compose.config-hash"]
            .as_str()
            .unwrap()
            .len(),
        64
    );
    // The dependency was healthy before the client started.
    assert_eq!(web["State"]["Health"]["Status"], "healthy");
    assert!(started_at(&p, "webapp-web-1") < started_at(&p, "webapp-client-1"));

    // From outside: the published port; from the client: the service's name.
    assert!(http_get(port).contains("hello from web"));
    let got = p.ok(&["exec", "client", "sh", "-c", "wget -qO- $TARGET"]);
    assert_eq!(got.trim(), "hello from web");
    let port_out = p.ok(&["port", "web", "80"]);
    assert_eq!(port_out.trim(), format!("127.0.0.1:{port}"));

    // ps, logs with prefixes.
    let ps = p.ok(&["ps"]);
    assert!(ps.lines().next().unwrap().starts_with("NAME"), "{ps}");
    assert!(
        ps.contains("webapp-web-1") && ps.contains("webapp-client-1"),
        "{ps}"
    );
    assert_eq!(p.ok(&["ps", "-q"]).lines().count(), 2);
    p.ok(&["exec", "client", "sh", "-c", "echo logged > /proc/1/fd/1"]);
    let logs = p.ok(&["logs", "client"]);
    assert!(
        logs.lines()
            .any(|l| l.starts_with("webapp-client-1") && l.ends_with("| logged")),
        "{logs}"
    );

    // Idempotent: nothing changed, nothing recreated.
    let (web_id, client_id) = (
        p.inspect("webapp-web-1")["Id"].clone(),
        p.inspect("webapp-client-1")["Id"].clone(),
    );
    p.ok(&["up", "-d"]);
    assert_eq!(p.inspect("webapp-web-1")["Id"], web_id);
    assert_eq!(p.inspect("webapp-client-1")["Id"], client_id);
    // One service changed: only it is recreated.
    p.write(&web_app(port).replace("TARGET=http://web/", "TARGET=http://web:80/"));
    p.ok(&["up", "-d"]);
    assert_eq!(p.inspect("webapp-web-1")["Id"], web_id);
    assert_ne!(p.inspect("webapp-client-1")["Id"], client_id);

    // The named volume survives down/up; down -v removes it.
    p.ok(&["exec", "web", "sh", "-c", "echo kept > /www/index.html"]);
    p.ok(&["down"]);
    assert!(p.names().is_empty());
    assert!(p.networks().is_empty());
    assert!(p.volumes().contains(&"webapp_www".to_string()));
    p.ok(&["up", "-d"]);
    assert!(http_get(port).contains("kept"));
    p.ok(&["down", "-v"]);
    assert!(p.names().is_empty());
    assert!(p.networks().is_empty());
    assert!(!p.volumes().contains(&"webapp_www".to_string()));
}

#[test]
fn service_aliases_and_network_shape() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let yaml = format!(
        r#"
name: shape
services:
  db:
    image: {BUSYBOX}
    command: sleep 1000
    networks:
      back:
        aliases: [database]
  app:
    image: {BUSYBOX}
    command: sleep 1000
    deploy:
      replicas: 2
    networks: [back, default]
    depends_on: [db]
networks:
  back:
"#
    );
    let Some(p) = Project::new("shape", &yaml) else {
        return;
    };
    p.ok(&["up", "-d"]);
    assert_eq!(p.names(), vec!["shape-app-1", "shape-app-2", "shape-db-1"]);
    let mut nets = p.networks();
    nets.sort();
    assert_eq!(nets, vec!["shape_back", "shape_default"]);
    // The alias and the service's name resolve on the network.
    for name in ["db", "database"] {
        let out = p.ok(&[
            "exec", "--index", "2", "app", "ping", "-c", "1", "-W", "2", name,
        ]);
        assert!(out.contains("1 packets received"), "{name}: {out}");
    }
    // --scale down removes the second replica.
    p.ok(&["up", "-d", "--scale", "app=1"]);
    assert_eq!(p.names(), vec!["shape-app-1", "shape-db-1"]);
    p.ok(&["down"]);
    assert!(p.names().is_empty() && p.networks().is_empty());
}

#[test]
fn interpolation_env_file_and_config() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let yaml = String::from(
        r#"
services:
  s:
    image: ${IMG}
    command: ["echo", "${GREETING:-hi} $${LITERAL}"]
    environment:
      A: ${A_VALUE}
"#
    );
    let Some(p) = Project::new("interp", &yaml) else {
        return;
    };
    std::fs::write(
        p.dir.join(".env"),
        format!("IMG={BUSYBOX}\nA_VALUE=from-dotenv\n"),
    )
    .unwrap();
    let cfg = p.ok(&["config"]);
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&cfg).unwrap();
    assert_eq!(v["name"], "interp");
    assert_eq!(v["services"]["s"]["image"].as_str(), Some(BUSYBOX));
    assert_eq!(v["services"]["s"]["command"][1], "hi ${LITERAL}");
    assert_eq!(v["services"]["s"]["environment"]["A"], "from-dotenv");
    assert_eq!(v["networks"]["default"]["name"], "interp_default");
    p.write(
        &yaml
            .replace("${IMG}", "${IMG:?the image is needed}")
            .replace("IMG", "NOPE"),
    );
    let e = p.err(&["config"]);
    assert!(
        e.contains("required variable NOPE is missing a value: the image is needed"),
        "{e}"
    );
}

#[test]
fn errors_name_file_line_and_key_and_make_nothing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(p) = Project::new("errs", "services: {}\n") else {
        return;
    };
    let file = p.dir.join("compose.yaml");
    let f = file.display().to_string();
    // Malformed YAML: file and line.
    p.write("services:\n  a:\n    image: x\n   bad: [\n");
    let e = p.err(&["up", "-d"]);
    assert!(
        e.contains(&format!("{f}:4")) && e.contains("malformed YAML"),
        "{e}"
    );
    // An unknown key: file, line, key.
    p.write(&format!(
        "services:\n  a:\n    image: {BUSYBOX}\n    bogus_key: 1\n"
    ));
    let e = p.err(&["up", "-d"]);
    assert!(
        e.contains(&format!(
            "{f}:4: services.a.bogus_key: unsupported service key"
        )),
        "{e}"
    );
    // An unknown dependency.
    p.write(&format!(
        "services:\n  a:\n    image: {BUSYBOX}\n    depends_on: [nope]\n"
    ));
    let e = p.err(&["up", "-d"]);
    assert!(e.contains("depends on undefined service \"nope\""), "{e}");
    // A cycle.
    p.write(&format!(
        "services:\n  a:\n    image: {BUSYBOX}\n    depends_on: [b]\n  b:\n    image: {BUSYBOX}\n    depends_on: [a]\n"
    ));
    let e = p.err(&["up", "-d"]);
    assert!(e.contains("dependency cycle detected: a -> b -> a"), "{e}");
    assert!(p.names().is_empty());
    // A port conflict with something already listening: what this up made is removed again.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    p.write(&format!(
        "services:\n  first:\n    image: {BUSYBOX}\n    command: sleep 1000\n  second:\n    image: {BUSYBOX}\n    command: sleep 1000\n    ports: [\"127.0.0.1:{port}:80\"]\n    depends_on: [first]\nvolumes:\n  data:\n"
    ));
    let e = p.err(&["up", "-d"]);
    assert!(e.contains(&port.to_string()), "{e}");
    assert!(p.names().is_empty(), "left: {:?}", p.names());
    assert!(p.networks().is_empty());
    assert!(!p.volumes().contains(&"errs_data".to_string()));
    drop(held);
    // The same port asked by two services: refused before anything is made.
    let port = free_port();
    p.write(&format!(
        "services:\n  a:\n    image: {BUSYBOX}\n    ports: [\"127.0.0.1:{port}:80\"]\n  b:\n    image: {BUSYBOX}\n    ports: [\"127.0.0.1:{port}:81\"]\n"
    ));
    let e = p.err(&["up", "-d"]);
    assert!(e.contains("port conflict"), "{e}");
    assert!(p.names().is_empty());
    let _ = Path::new("");
}
