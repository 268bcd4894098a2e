//! `berth compose` with real containers (busybox): a web app (httpd) and a client that reaches
//! it by its service name on the project network, published ports answering on 127.0.0.1,
//! named volumes surviving `down`/`up`, depends_on order and service_healthy, idempotent `up`,
//! `down` removing everything; and the errors (unknown dependency, a cycle, `${X:?err}`,
//! malformed YAML naming file and line, unknown keys, a port conflict leaving nothing made).
//! Root only.

mod engine_support;
mod registry_support;

use engine_support::{Scratch, BUSYBOX};
use std::path::PathBuf;
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
    /// Variables for the compose file, in berth compose's environment.
    env: Vec<(String, String)>,
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
            env: Vec::new(),
        })
    }

    fn write(&self, yaml: &str) {
        std::fs::write(self.dir.join("compose.yaml"), yaml).unwrap();
    }

    fn compose(&self, args: &[&str]) -> Output {
        let mut c = self.scratch.command(&["compose"]);
        c.current_dir(&self.dir).args(args);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
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
"#,
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
    // `$$` stays escaped: the output loads again to the same project.
    assert_eq!(v["services"]["s"]["command"][1], "hi $${LITERAL}");
    std::fs::write(p.dir.join("resolved.yaml"), &cfg).unwrap();
    assert_eq!(p.ok(&["-f", "resolved.yaml", "config"]), cfg);
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
}

/// The same file under Debian's docker-compose 1.29 on a private dockerd and under berth
/// compose: the same services running with the same labels, networks, volumes and ports, the
/// same HTTP answers on the published port and by the service's name
/// (1.29 names containers PROJECT_SERVICE_N where Compose v2 writes PROJECT-SERVICE-N: compared
/// with that one difference), and the same resolved services in `config`.
#[test]
fn same_project_as_docker_compose() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !is_root()
        || engine_support::skip_without(&["docker-compose", "dockerd"], "compose differential")
    {
        return;
    }
    let Some(d) = engine_support::Dockerd::shared() else {
        return;
    };
    // dockerd's proxy and berth each hold their own host ports: the file names them by variable.
    let (d1, d2, b1, b2) = (free_port(), free_port(), free_port(), free_port());
    let yaml = format!(
        r#"
version: "3.8"
services:
  web:
    image: {BUSYBOX}
    command: ["sh", "-c", "echo hello from $$MODE > /www/index.html; exec httpd -f -p 80 -h /www"]
    ports:
      - "127.0.0.1:${{P1}}:80"
    volumes:
      - www:/www
    environment:
      MODE: production
    labels:
      tier: front
  worker:
    image: {BUSYBOX}
    command: sleep 1000
    ports:
      - "127.0.0.1:${{P2}}:81/tcp"
    depends_on:
      - web
volumes:
  www:
"#
    );
    let Some(mut p) = Project::new("diffproj", &yaml) else {
        return;
    };
    p.env = vec![("P1".into(), b1.to_string()), ("P2".into(), b2.to_string())];
    d.load_busybox(&p.scratch);
    let dc = |args: &[&str]| {
        let mut c = std::process::Command::new("docker-compose");
        c.current_dir(&p.dir)
            .env("DOCKER_HOST", format!("unix://{}", d.socket().display()))
            .env("P1", d1.to_string())
            .env("P2", d2.to_string())
            .args(["-p", "diffproj"])
            .args(args)
            .stdin(std::process::Stdio::null());
        engine_support::run_bounded(&c)
    };
    // Timings of the same up and down, printed for the record (`--nocapture`).
    let t = Instant::now();
    let up = dc(&["up", "-d"]);
    let docker_up = t.elapsed();
    assert_eq!(up.code, 0, "docker-compose up: {up:?}");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = Instant::now();
        p.ok(&["up", "-d"]);
        eprintln!(
            "up -d: docker-compose {docker_up:?}, berth compose {:?}",
            t.elapsed()
        );
        let docker_names: Vec<String> = {
            let out = d.docker_ok(&[
                "ps",
                "-a",
                "--filter",
                "label=com.docker.compose.project=diffproj",
                "--format",
                "{{.Names}}",
            ]);
            let mut v: Vec<String> = out.lines().map(|n| n.replace('_', "-")).collect();
            v.sort();
            v
        };
        assert_eq!(p.names(), docker_names);
        for name in &docker_names {
            let theirs: serde_json::Value =
                serde_json::from_str(&d.docker_ok(&["inspect", &name.replace('-', "_")])).unwrap();
            let theirs = &theirs[0];
            let ours = p.inspect(name);
            same_container(
                name,
                &ours,
                theirs,
                &["com.docker.compose.oneoff"],
                &[(b1, "P1"), (b2, "P2")],
                &[(d1, "P1"), (d2, "P2")],
            );
        }
        let docker_vols = d.docker_ok(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=com.docker.compose.project=diffproj",
        ]);
        assert_eq!(docker_vols.trim(), "diffproj_www");
        // Reachable alike: the published port from the host, the service's name from worker.
        assert_eq!(
            http_body(&http_get(d1)),
            http_body(&http_get(b1)),
            "the web service's answer on its published port (docker, berth)"
        );
        let fetch = [
            "sh",
            "-c",
            "wget -qO- http://web/ && wget -qO- http://web:80/",
        ];
        let mut exec = vec!["exec", "diffproj_worker_1"];
        exec.extend_from_slice(&fetch);
        let theirs = d.docker_ok(&exec);
        let mut exec = vec!["exec", "worker"];
        exec.extend_from_slice(&fetch);
        assert_eq!(p.ok(&exec), theirs);
        assert_eq!(theirs, "hello from production\nhello from production\n");
        assert!(p.volumes().contains(&"diffproj_www".to_string()));
        // `config`: the same services, images, commands and environment.
        let theirs: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&dc(&["config"]).stdout).unwrap();
        let ours: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&p.ok(&["-p", "diffproj", "config"])).unwrap();
        for svc in ["web", "worker"] {
            for key in ["image", "command", "environment"] {
                let norm = |v: &serde_yaml_ng::Value| -> serde_yaml_ng::Value {
                    match v {
                        serde_yaml_ng::Value::String(s) if key == "command" => {
                            serde_yaml_ng::Value::Sequence(
                                s.split_whitespace().map(|x| x.into()).collect(),
                            )
                        }
                        other => other.clone(),
                    }
                };
                assert_eq!(
                    norm(&ours["services"][svc][key]),
                    norm(&theirs["services"][svc][key]),
                    "config {svc}.{key}"
                );
            }
        }
    }));
    let t = Instant::now();
    let down = dc(&["down", "-v"]);
    let docker_down = t.elapsed();
    let t = Instant::now();
    p.ok(&["down", "-v"]);
    eprintln!(
        "down -v: docker-compose {docker_down:?}, berth compose {:?}",
        t.elapsed()
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert_eq!(down.code, 0, "docker-compose down: {down:?}");
}

/// The other verbs and keys: `run --rm` (its output and exit code, nothing left), `top`,
/// `stop`/`start`/`restart`, `pause`/`unpause`, `kill`, `rm`; service_completed_successfully,
/// long port syntax, tmpfs, configs and secrets, profiles, container_name, hostname, user,
/// working_dir, entrypoint as a list, env_file, several `-f` files merged.
#[test]
fn verbs_and_more_keys() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let port = free_port();
    let yaml = format!(
        r#"
services:
  init:
    image: {BUSYBOX}
    command: ["sh", "-c", "echo init done"]
  app:
    image: {BUSYBOX}
    entrypoint: ["sh", "-c"]
    command: ["echo started; exec httpd -f -p 8080 -h /tmp"]
    container_name: the-app
    hostname: apphost
    user: "1000:1000"
    working_dir: /tmp
    env_file: app.env
    tmpfs: /scratch
    ports:
      - target: 8080
        published: {port}
        host_ip: 127.0.0.1
    configs:
      - site
    secrets:
      - source: token
        target: tok
    depends_on:
      init:
        condition: service_completed_successfully
  debug:
    image: {BUSYBOX}
    command: sleep 1000
    profiles: [debug]
configs:
  site:
    file: ./site.txt
secrets:
  token:
    file: ./token.txt
"#
    );
    let Some(p) = Project::new("verbs", &yaml) else {
        return;
    };
    std::fs::write(p.dir.join("app.env"), "FROM_FILE=yes\n").unwrap();
    std::fs::write(p.dir.join("site.txt"), "site config\n").unwrap();
    std::fs::write(p.dir.join("token.txt"), "s3cret\n").unwrap();
    // An override file: merged over compose.yaml.
    std::fs::write(
        p.dir.join("compose.override.yaml"),
        "services:\n  app:\n    environment:\n      OVERRIDDEN: \"1\"\n",
    )
    .unwrap();
    p.ok(&["up", "-d"]);
    // The profile's service is not started; init ran to completion first.
    assert_eq!(p.names(), vec!["the-app", "verbs-init-1"]);
    let init = p.inspect("verbs-init-1");
    assert_eq!(init["State"]["Status"], "exited");
    assert!(
        init["State"]["FinishedAt"].as_str().unwrap()
            <= p.inspect("the-app")["State"]["StartedAt"].as_str().unwrap()
    );
    let sh = |cmd: &str| p.ok(&["exec", "app", "sh", "-c", cmd]).trim().to_string();
    assert_eq!(
        sh("id -u; id -g; hostname; pwd; echo $FROM_FILE $OVERRIDDEN"),
        "1000\n1000\napphost\n/tmp\nyes 1"
    );
    assert_eq!(sh("cat /site"), "site config");
    assert_eq!(sh("cat /run/secrets/tok"), "s3cret");
    assert!(sh("grep ' /scratch ' /proc/mounts").contains("tmpfs"));
    assert_eq!(
        p.ok(&["port", "app", "8080"]).trim(),
        format!("127.0.0.1:{port}")
    );
    let logs = p.ok(&["logs", "--tail", "1", "init", "app"]);
    assert!(logs.contains("verbs-init-1  | init done"), "{logs}");
    assert!(logs.contains("the-app       | started"), "{logs}");

    // top lists the service's processes.
    let top = p.ok(&["top", "app"]);
    assert!(top.contains("httpd"), "{top}");
    // run --rm: the command's output and exit code, nothing left behind.
    let out = p.compose(&["run", "--rm", "--no-deps", "app", "echo one-off; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stdout).contains("one-off"));
    assert_eq!(p.names(), vec!["the-app", "verbs-init-1"]);
    // stop/start/restart, pause/unpause, kill, rm.
    p.ok(&["stop", "app"]);
    assert_eq!(p.inspect("the-app")["State"]["Status"], "exited");
    p.ok(&["start", "app"]);
    assert_eq!(p.inspect("the-app")["State"]["Status"], "running");
    p.ok(&["pause", "app"]);
    assert_eq!(p.inspect("the-app")["State"]["Status"], "paused");
    p.ok(&["unpause", "app"]);
    let before = started_at(&p, "the-app");
    p.ok(&["restart", "app"]);
    assert!(started_at(&p, "the-app") > before);
    p.ok(&["kill", "app"]);
    // The kill is sent; its exit is recorded by the container's monitor just after.
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.inspect("the-app")["State"]["Status"] != "exited" {
        assert!(Instant::now() < deadline, "not exited after kill");
        std::thread::sleep(Duration::from_millis(50));
    }
    p.ok(&["rm", "app"]);
    assert_eq!(p.names(), vec!["verbs-init-1"]);
    // The profile enables its service.
    p.ok(&["--profile", "debug", "up", "-d", "debug"]);
    assert!(p.names().contains(&"verbs-debug-1".to_string()));
    p.ok(&["down"]);
    assert!(p.names().is_empty());
}

/// `build:`: `up` builds a missing image (named PROJECT-SERVICE without `image:`) with its
/// args and target; `up --build` builds again; `compose build`.
#[test]
fn up_builds_images() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let yaml = r#"
services:
  app:
    build:
      context: ./ctx
      dockerfile: Containerfile
      args:
        GREETING: built-by-compose
      target: final
    command: sleep 1000
"#;
    let Some(p) = Project::new("buildproj", yaml) else {
        return;
    };
    std::fs::create_dir_all(p.dir.join("ctx")).unwrap();
    std::fs::write(
        p.dir.join("ctx/Containerfile"),
        format!(
            "FROM {BUSYBOX} AS base\nRUN echo base > /base\nFROM base AS final\nARG GREETING\nRUN echo $GREETING > /greeting\n"
        ),
    )
    .unwrap();
    p.ok(&["up", "-d"]);
    let out = p.ok(&["exec", "app", "cat", "/base", "/greeting"]);
    assert_eq!(out, "base\nbuilt-by-compose\n");
    assert_eq!(
        p.inspect("buildproj-app-1")["Config"]["Image"],
        "buildproj-app"
    );
    // --build makes the image again; the container is kept when its config did not change.
    let id = p.inspect("buildproj-app-1")["Id"].clone();
    p.ok(&["up", "-d", "--build"]);
    assert_eq!(p.inspect("buildproj-app-1")["Id"], id);
    // A changed Dockerfile: `build` makes another image, and `up` recreates the container.
    let mut df = std::fs::read_to_string(p.dir.join("ctx/Containerfile")).unwrap();
    df.push_str("RUN echo again > /again\n");
    std::fs::write(p.dir.join("ctx/Containerfile"), df).unwrap();
    p.ok(&["build"]);
    p.ok(&["up", "-d"]);
    assert_ne!(p.inspect("buildproj-app-1")["Id"], id);
    assert_eq!(p.ok(&["exec", "app", "cat", "/again"]), "again\n");
    p.ok(&["down"]);
}

/// An `up` killed while it waits for a dependency's health: `down -v` removes everything the
/// project made (containers, network, volume).
#[test]
fn down_after_an_interrupted_up() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let yaml = format!(
        r#"
services:
  slow:
    image: {BUSYBOX}
    command: sleep 1000
    volumes: [data:/data]
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      retries: 1000
  after:
    image: {BUSYBOX}
    command: sleep 1000
    depends_on:
      slow:
        condition: service_healthy
volumes:
  data:
"#
    );
    let Some(p) = Project::new("intr", &yaml) else {
        return;
    };
    let mut c = p.scratch.command(&["compose", "up", "-d"]);
    c.current_dir(&p.dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.names().contains(&"intr-slow-1".to_string())
        || p.inspect("intr-slow-1")["State"]["Status"] != "running"
    {
        assert!(Instant::now() < deadline, "slow never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(p.names(), vec!["intr-slow-1"]);
    assert_eq!(p.networks(), vec!["intr_default"]);
    assert!(p.volumes().contains(&"intr_data".to_string()));
    p.ok(&["down", "-v"]);
    assert!(p.names().is_empty());
    assert!(p.networks().is_empty());
    assert!(!p.volumes().contains(&"intr_data".to_string()));
}

/// `up` without -d: the containers' prefixed output until ^C, which stops them.
#[test]
fn attached_up_relays_logs_and_stops_on_interrupt() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let yaml = format!(
        "services:\n  talk:\n    image: {BUSYBOX}\n    command: [\"sh\", \"-c\", \"echo hello attached; exec sleep 1000\"]\n"
    );
    let Some(p) = Project::new("attached", &yaml) else {
        return;
    };
    let mut c = p.scratch.command(&["compose", "up"]);
    c.current_dir(&p.dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.names().contains(&"attached-talk-1".to_string())
        || p.inspect("attached-talk-1")["State"]["Status"] != "running"
    {
        assert!(Instant::now() < deadline, "talk never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("attached-talk-1  | hello attached"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(p.inspect("attached-talk-1")["State"]["Status"], "exited");
}

/// Debian's podman-compose (1.0.3) on a podman of the test's own: storage, run root, tmp dir,
/// containers.conf and network configs under the scratch dir, cgroupfs, file events, runc as
/// its runtime and nofile/nproc within this host's hard limits (crun's setrlimit of podman's
/// default nofile fails without CAP_SYS_RESOURCE). podman 4.3 cannot name a network's bridge,
/// so the wrapper podman-compose calls renames it in the network's config right after
/// `network create`, before any container brings it up. Dropping it removes every container,
/// network, volume and image it made, and sets net.ipv4.ip_forward (netavark sets it) back.
struct PodmanCompose {
    dir: PathBuf,
    wrapper: PathBuf,
    bridge: String,
    ip_forward: String,
    /// podman 4.3's fixed paths (netavark's ipam.db and aardvark-dns's configs, the blob info
    /// cache of `load`): removed at the end when the test made them.
    own_paths: Vec<PathBuf>,
    cleaned: bool,
}

impl PodmanCompose {
    fn new(scratch: &Scratch) -> PodmanCompose {
        let dir = scratch.path("podman");
        for d in ["networks", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let bridge = format!("bpc{:x}n", std::process::id() & 0xffffff);
        let w = dir.display();
        std::fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n\
                 [network]\nnetwork_backend = \"netavark\"\nnetwork_config_dir = \"{w}/networks\"\n"
            ),
        )
        .unwrap();
        let wrapper = dir.join("podman");
        std::fs::write(
            &wrapper,
            format!(
                r#"#!/bin/sh
export CONTAINERS_CONF={w}/containers.conf
P="podman --root {w}/storage --runroot {w}/run --tmpdir {w}/tmp --storage-driver vfs
    --cgroup-manager cgroupfs --events-backend file --network-config-dir {w}/networks"
if [ "$1" = network ] && [ "$2" = create ]; then
    eval "name=\${{$#}}"
    n=$(ls {w}/networks | grep -c '\.json$')
    $P "$@" || exit
    sed -i "s/\"network_interface\": \"[^\"]*\"/\"network_interface\": \"{bridge}$n\"/" "{w}/networks/$name.json"
    exit
fi
exec $P "$@"
"#
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let own_paths = ["/run/containers", "/run/libpod", "/var/lib/containers"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| !p.exists())
            .collect();
        PodmanCompose {
            dir,
            wrapper,
            bridge,
            ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
            own_paths,
            cleaned: false,
        }
    }

    fn podman(&self, args: &[&str]) -> engine_support::Outcome {
        let mut c = std::process::Command::new(&self.wrapper);
        c.args(args);
        engine_support::run_bounded(&c)
    }

    fn podman_ok(&self, args: &[&str]) -> String {
        self.podman(args).ok(&format!("podman {args:?}"))
    }

    /// podman-compose ARGS in `dir`, with `env` for the file's variables.
    fn compose(&self, dir: &std::path::Path, env: &[(&str, String)], args: &[&str]) -> String {
        let mut c = std::process::Command::new("podman-compose");
        c.current_dir(dir)
            .arg("--podman-path")
            .arg(&self.wrapper)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)));
        engine_support::run_bounded(&c).ok(&format!("podman-compose {args:?}"))
    }

    /// What is left of it on the host: its bridges' links, firewall rules naming them,
    /// processes running from its directory.
    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let links = std::fs::read_dir("/sys/class/net").unwrap();
        for l in links.flatten() {
            let name = l.file_name().to_string_lossy().into_owned();
            if name.starts_with(&self.bridge) {
                left.push(format!("link {name}"));
            }
        }
        for table in ["filter", "nat"] {
            let rules = std::process::Command::new("iptables")
                .args(["-w", "-t", table, "-S"])
                .output()
                .unwrap();
            for r in String::from_utf8_lossy(&rules.stdout).lines() {
                if r.contains(&self.bridge) {
                    left.push(format!("iptables -t {table}: {r}"));
                }
            }
        }
        let w = self.dir.display().to_string();
        for pid in engine_support::processes_naming(&w) {
            left.push(format!("process {pid}"));
        }
        left
    }
}

impl PodmanCompose {
    /// Removes everything it made; returns what is left on the host.
    fn finish(mut self) -> Vec<String> {
        self.clean();
        self.leftovers()
    }

    fn clean(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        let _ = self.podman(&["rm", "-af", "-t", "0"]);
        let nets = self
            .podman(&[
                "network",
                "ls",
                "-q",
                "--filter",
                "label=com.docker.compose.project",
            ])
            .stdout;
        for n in nets.split_whitespace() {
            let _ = self.podman(&["network", "rm", "-f", n]);
        }
        let _ = self.podman(&["system", "reset", "-f"]);
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
        for p in &self.own_paths {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

impl Drop for PodmanCompose {
    fn drop(&mut self) {
        self.clean();
    }
}

/// The same file under podman-compose (1.0.3, on a podman of its own, see [`PodmanCompose`])
/// and berth compose: the same containers (podman-compose names them PROJECT_SERVICE_N, as
/// docker-compose 1.29 does), labels, command, env, networks, port bindings and volume; the same
/// answers over HTTP from the host on each one's published port and from the client by the
/// service's name on the project network. podman-compose 1.0.3 has no `config` verb and takes
/// no per-network aliases (its networks are a list of names), so neither is compared.
#[test]
fn same_services_as_podman_compose() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if engine_support::skip_without(
        &["podman", "podman-compose", "runc", "iptables"],
        "compose differential against podman-compose",
    ) {
        return;
    }
    let (pp, bp) = (free_port(), free_port());
    let yaml = format!(
        r#"
services:
  web:
    image: {BUSYBOX}
    command: ["sh", "-c", "echo hello from $$MODE > /www/index.html; exec httpd -f -p 80 -h /www"]
    environment:
      MODE: production
    ports:
      - "127.0.0.1:${{P1}}:80"
    volumes: [www:/www]
    networks: [front, back]
    labels:
      tier: front
  client:
    image: {BUSYBOX}
    command: sleep 1000
    depends_on: [web]
    networks: [back]
volumes:
  www:
networks:
  back:
  front:
"#
    );
    let Some(mut p) = Project::new("pcdiff", &yaml) else {
        return;
    };
    p.env = vec![("P1".into(), bp.to_string())];
    let pc = PodmanCompose::new(&p.scratch);
    let archive = engine_support::busybox_archive(&p.scratch);
    pc.podman_ok(&["load", "-i", archive.to_str().unwrap()]);
    let penv = [("P1", pp.to_string())];
    let t = Instant::now();
    pc.compose(&p.dir, &penv, &["-p", "pcdiff", "up", "-d"]);
    let podman_up = t.elapsed();
    let t = Instant::now();
    p.ok(&["up", "-d"]);
    eprintln!(
        "up -d: podman-compose {podman_up:?}, berth compose {:?}",
        t.elapsed()
    );

    // The same containers, by name.
    let mut pnames: Vec<String> = pc
        .podman_ok(&["ps", "-a", "--format", "{{.Names}}"])
        .lines()
        .map(|n| n.replace('_', "-"))
        .collect();
    pnames.sort();
    assert_eq!(p.names(), pnames);
    assert_eq!(pnames, vec!["pcdiff-client-1", "pcdiff-web-1"]);
    for name in &pnames {
        let theirs: serde_json::Value =
            serde_json::from_str(&pc.podman_ok(&["container", "inspect", &name.replace('-', "_")]))
                .unwrap();
        let theirs = &theirs[0];
        let ours = p.inspect(name);
        same_container(name, &ours, theirs, &[], &[(bp, "P1")], &[(pp, "P1")]);
    }
    // The project's networks and volume under the same names.
    let mut pnets: Vec<String> = pc
        .podman_ok(&["network", "ls", "--format", "{{.Name}}"])
        .lines()
        .filter(|n| n.starts_with("pcdiff_"))
        .map(String::from)
        .collect();
    pnets.sort();
    let mut bnets = p.networks();
    bnets.sort();
    assert_eq!(bnets, pnets);
    assert_eq!(bnets, vec!["pcdiff_back", "pcdiff_front"]);
    let pvols = pc.podman_ok(&["volume", "ls", "--format", "{{.Name}}"]);
    assert_eq!(pvols.trim(), "pcdiff_www");
    assert!(p.volumes().contains(&"pcdiff_www".to_string()));

    // Reachable alike: the published port from the host, the service's name from the client.
    assert_eq!(
        http_body(&http_get(pp)),
        http_body(&http_get(bp)),
        "the web service's answer on its published port (podman, berth)"
    );
    let fetch = "wget -qO- http://web/ && wget -qO- http://web:80/";
    let theirs = pc.podman_ok(&["exec", "pcdiff_client_1", "sh", "-c", fetch]);
    let ours = p.ok(&["exec", "client", "sh", "-c", fetch]);
    assert_eq!(ours, theirs);
    assert_eq!(ours, "hello from production\nhello from production\n");

    let t = Instant::now();
    pc.compose(&p.dir, &penv, &["-p", "pcdiff", "down"]);
    let podman_down = t.elapsed();
    let t = Instant::now();
    p.ok(&["down", "-v"]);
    eprintln!(
        "down: podman-compose {podman_down:?}, berth compose {:?}",
        t.elapsed()
    );
    assert!(pc.podman_ok(&["ps", "-aq"]).trim().is_empty());
    let left = pc.finish();
    assert!(left.is_empty(), "podman left: {left:?}");
}

/// The body of an HTTP answer.
fn http_body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// `build`, `push` and `pull` with a real registry on 127.0.0.1 (Debian's docker-registry over
/// plain HTTP, which Docker's engine allows on loopback without configuration): `push` sends
/// only the images the project builds and names, `pull` skips a service without `image:`,
/// the pulled images run (a removed image comes back with the file the build put in it), `up`
/// pulls a missing image itself, and an image that is nowhere fails naming its service.
#[test]
fn push_and_pull_through_a_local_registry() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if engine_support::skip_without(&["docker-registry"], "compose push and pull") {
        return;
    }
    let yaml = r#"
services:
  app:
    image: ${REG}/compose/app:v1
    build: ./ctx
    command: sleep 1000
  cache:
    image: ${REG}/compose/cache:v1
    command: sleep 1000
  local:
    build: ./ctx
    command: sleep 1000
  missing:
    image: ${REG}/compose/none:v1
    profiles: [extra]
"#;
    let Some(mut p) = Project::new("pushpull", yaml) else {
        return;
    };
    let reg = registry_support::Registry::start();
    p.env = vec![("REG".into(), reg.addr.clone())];
    std::fs::create_dir_all(p.dir.join("ctx")).unwrap();
    std::fs::write(
        p.dir.join("ctx/Dockerfile"),
        format!("FROM {BUSYBOX}\nRUN echo built here > /marker\n"),
    )
    .unwrap();
    let app = format!("{}/compose/app:v1", reg.addr);
    let cache = format!("{}/compose/cache:v1", reg.addr);
    // The registry's copy of `cache`: busybox, put there by berth's own push.
    p.scratch.berth_ok(&["image", "tag", BUSYBOX, &cache]);
    p.scratch
        .berth_ok(&["push", "--tls-verify=false", &cache, &cache]);

    p.ok(&["build"]);
    let out = p.compose(&["push"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "push: {err}");
    assert!(err.contains("app Pushed"), "{err}");
    assert!(
        !err.contains("cache Push") && !err.contains("local Push"),
        "{err}"
    );
    let log = reg.log();
    assert!(
        log.lines().any(|l| l.contains("http.request.method=PUT")
            && l.contains("http.request.uri=/v2/compose/app/manifests/v1")
            && l.contains("http.response.status=201")),
        "{log}"
    );
    assert!(!log.contains("pushpull-local"), "{log}");

    // Both images gone from the store; `pull` brings them back.
    p.scratch.berth_ok(&["image", "rm", &app, &cache]);
    let out = p.compose(&["pull"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pull: {err}");
    for want in [
        "app Pulled",
        "cache Pulled",
        "local Skipped - No image to be pulled",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
    let images = p.scratch.berth_ok(&["image", "ls"]);
    assert!(
        images.contains(&format!("{}/compose/app", reg.addr)) && images.contains("v1"),
        "{images}"
    );
    p.ok(&["up", "-d", "--no-build", "app", "cache"]);
    assert_eq!(p.ok(&["exec", "app", "cat", "/marker"]), "built here\n");
    p.ok(&["down"]);

    // `up` pulls an image the store lacks.
    p.scratch.berth_ok(&["image", "rm", &cache]);
    p.ok(&["up", "-d", "cache"]);
    assert_eq!(p.inspect("pushpull-cache-1")["State"]["Status"], "running");
    p.ok(&["down"]);

    // An image in no registry, and no build to fall back on.
    let e = p.err(&["--profile", "extra", "pull", "missing"]);
    assert!(
        e.contains("service missing") && e.contains("compose/none"),
        "{e}"
    );
}

/// `logs --since` and `--until` in Docker's three forms (an RFC 3339 time, here with an offset;
/// a Unix time with a fraction; a duration before now), and a value of none of them refused
/// naming the flag; `down --rmi local` removes only the images built under the project's own
/// names, `--rmi all` every service's image, and `--rmi` takes nothing else.
#[test]
fn logs_since_and_down_rmi() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let yaml = format!(
        r#"
services:
  talk:
    image: {BUSYBOX}
    command: ["sh", "-c", "echo early; until [ -f /tmp/go ]; do sleep 0.1; done; echo late; exec sleep 1000"]
  built:
    build: ./ctx
    command: sleep 1000
  named:
    build: ./ctx
    image: rmi-test/named:v1
    command: sleep 1000
"#
    );
    let Some(p) = Project::new("rmi", &yaml) else {
        return;
    };
    std::fs::create_dir_all(p.dir.join("ctx")).unwrap();
    std::fs::write(
        p.dir.join("ctx/Dockerfile"),
        format!("FROM {BUSYBOX}\nRUN echo x > /x\n"),
    )
    .unwrap();
    p.ok(&["up", "-d"]);
    let logs_of = |args: &[&str]| {
        let mut a = vec!["logs", "--no-log-prefix"];
        a.extend_from_slice(args);
        a.push("talk");
        p.ok(&a)
    };
    let wait_for = |line: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !logs_of(&[]).contains(line) {
            assert!(Instant::now() < deadline, "no {line:?} in the logs");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("early");
    // A time well between the two lines.
    std::thread::sleep(Duration::from_secs(3));
    let between = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    p.ok(&["exec", "talk", "touch", "/tmp/go"]);
    wait_for("late");
    // Relative: the last 3 s hold `late` only (`early` is 6 s old or more).
    assert_eq!(logs_of(&["--since", "3s"]), "late\n");
    assert_eq!(logs_of(&["--since", "1h"]), "early\nlate\n");
    let unix = format!("{}.{:03}", between.as_secs(), between.subsec_millis());
    assert_eq!(logs_of(&["--since", &unix]), "late\n");
    assert_eq!(logs_of(&["--until", &unix]), "early\n");
    // RFC 3339 in another zone: the same instant (rounded up to the second) at +01:00.
    let secs = between.as_secs() + 1;
    let out = std::process::Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}", secs + 3600),
            "+%Y-%m-%dT%H:%M:%S+01:00",
        ])
        .output()
        .unwrap();
    let rfc = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(logs_of(&["--since", &rfc]), "late\n", "{rfc}");
    let e = p.err(&["logs", "--since", "yesterday", "talk"]);
    assert!(
        e.contains("invalid value for \"since\": \"yesterday\""),
        "{e}"
    );

    let images = || -> Vec<String> {
        let out = p.scratch.berth_ok(&["image", "ls"]);
        out.lines()
            .skip(1)
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some(format!("{}:{}", w.next()?, w.next()?))
            })
            .collect()
    };
    let have = |name: &str| images().iter().any(|l| l == name);
    assert!(
        have("rmi-built:latest") && have("rmi-test/named:v1"),
        "{:?}",
        images()
    );
    // Anything but local or all is refused before anything is removed.
    let e = p.err(&["down", "--rmi", "some"]);
    assert!(e.contains("--rmi"), "{e}");
    assert_eq!(p.names().len(), 3);
    p.ok(&["down", "--rmi", "local"]);
    assert!(p.names().is_empty());
    assert!(!have("rmi-built:latest"), "{:?}", images());
    assert!(have("rmi-test/named:v1") && have(BUSYBOX), "{:?}", images());
    p.ok(&["up", "-d"]);
    assert!(have("rmi-built:latest"));
    p.ok(&["down", "--rmi", "all"]);
    assert!(p.names().is_empty());
    for name in ["rmi-built:latest", "rmi-test/named:v1", BUSYBOX] {
        assert!(!have(name), "{name}: {:?}", images());
    }
}

/// The same container under berth and another compose: the compose labels (`extra` besides the
/// project, service and number) and the file's `tier`, Cmd, the file's MODE in Env, the
/// networks, and the port bindings with each side's host ports named (PORT, NAME).
fn same_container(
    name: &str,
    ours: &serde_json::Value,
    theirs: &serde_json::Value,
    extra: &[&str],
    our_ports: &[(u16, &str)],
    their_ports: &[(u16, &str)],
) {
    let labels = [
        "com.docker.compose.project",
        "com.docker.compose.service",
        "com.docker.compose.container-number",
        "tier",
    ];
    for key in labels.iter().chain(extra) {
        assert_eq!(
            ours["Config"]["Labels"][key], theirs["Config"]["Labels"][key],
            "{name}: label {key}"
        );
    }
    assert_eq!(
        ours["Config"]["Cmd"], theirs["Config"]["Cmd"],
        "{name}: Cmd"
    );
    let mode = |v: &serde_json::Value| -> Vec<String> {
        v["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x.as_str())
            .filter(|x| x.starts_with("MODE="))
            .map(String::from)
            .collect()
    };
    assert_eq!(mode(ours), mode(theirs), "{name}: Env");
    let nets = |v: &serde_json::Value| -> Vec<String> {
        let mut n: Vec<String> = v["NetworkSettings"]["Networks"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        n.sort();
        n
    };
    assert_eq!(nets(ours), nets(theirs), "{name}: networks");
    let ports = |v: &serde_json::Value, named: &[(u16, &str)]| {
        let mut out = Vec::new();
        for (k, binds) in v["HostConfig"]["PortBindings"]
            .as_object()
            .into_iter()
            .flatten()
        {
            for b in binds.as_array().into_iter().flatten() {
                let hp = b["HostPort"].as_str().unwrap_or("");
                let hp = named
                    .iter()
                    .find(|(p, _)| p.to_string() == hp)
                    .map_or(hp, |(_, n)| n);
                let ip = b["HostIp"].as_str().unwrap_or("");
                out.push((k.clone(), ip.to_string(), hp.to_string()));
            }
        }
        out.sort();
        out
    };
    assert_eq!(
        ports(ours, our_ports),
        ports(theirs, their_ports),
        "{name}: PortBindings"
    );
}
