//! `berth kube play/down/generate` and `berth pod` with real containers from the busybox image:
//! a pod of two containers talking over localhost with ConfigMap-fed env and files, a Secret
//! volume, an init container filling an emptyDir, a hostPort; replay and --replace; pod
//! stop/start; a Deployment of 2 behind a NodePort Service answering on 127.0.0.1 from both;
//! a NodePort and a LoadBalancer port balanced over 3, then 4, then 2 replicas (from the host
//! and from a pod; pods stopped, started, removed, replaced; no rule left); Jobs that
//! complete and that fail past their backoffLimit; errors for unknown kinds and fields with
//! nothing made; `kube down` leaving nothing; `kube generate` played back; and the same YAML
//! under `podman kube play` (names and env compared). Root only.

mod engine_support;

use engine_support::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn kube(s: &EngineScratch, args: &[&str]) -> Outcome {
    let mut full = vec!["kube"];
    full.extend_from_slice(args);
    run_bounded(&s.scratch.command(&full))
}

fn pod(s: &EngineScratch, args: &[&str]) -> Outcome {
    let mut full = vec!["pod"];
    full.extend_from_slice(args);
    run_bounded(&s.scratch.command(&full))
}

fn write(s: &EngineScratch, name: &str, text: &str) -> String {
    let p = s.path(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Writes `yaml` to `name`, plays it, and checks that the play fails with every one of
/// `needles` in its error.
#[track_caller]
fn play_fails(s: &EngineScratch, name: &str, yaml: &str, needles: &[&str]) {
    let file = write(s, name, yaml);
    let out = kube(s, &["play", &file]);
    assert!(out.code != 0, "{name} was played: {}", out.stderr);
    for n in needles {
        assert!(out.stderr.contains(n), "{n:?} missing from {}", out.stderr);
    }
}

/// `exec` in a container, retried while the answer is not there yet.
fn exec_until(s: &EngineScratch, ctr: &str, cmd: &[&str], want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut args = vec!["exec", ctr];
    args.extend_from_slice(cmd);
    loop {
        let out = s.container(&args);
        if out.stdout.contains(want) || Instant::now() > deadline {
            return out.stdout;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ids(s: &EngineScratch) -> Vec<String> {
    let mut v = s.all_ids();
    v.sort();
    v
}

fn volumes(s: &EngineScratch) -> Vec<String> {
    s.berth_ok(&["volume", "ls", "-q"])
        .split_whitespace()
        .map(String::from)
        .collect()
}

const POD_YAML: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  GREETING: hello from a configmap
  index.html: served by kube play
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
type: Opaque
data:
  password: czNjcjN0
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  restartPolicy: Always
  initContainers:
  - name: prep
    image: berth-tests/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "echo init ran > /shared/mark"]
    volumeMounts:
    - name: shared
      mountPath: /shared
  containers:
  - name: srv
    image: berth-tests/busybox:latest
    imagePullPolicy: Never
    command: ["httpd"]
    args: ["-f", "-p", "8080", "-h", "/www"]
    ports:
    - containerPort: 8080
      hostPort: 18480
    volumeMounts:
    - name: site
      mountPath: /www
      readOnly: true
    - name: host
      mountPath: /host
    resources:
      limits:
        memory: 64Mi
        cpu: 500m
  - name: cli
    image: berth-tests/busybox:latest
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    env:
    - name: PLAIN
      value: plain value
    - name: GREETING
      valueFrom:
        configMapKeyRef:
          name: web-config
          key: GREETING
    - name: PASSWORD
      valueFrom:
        secretKeyRef:
          name: web-secret
          key: password
    securityContext:
      runAsUser: 1000
      capabilities:
        drop: ["NET_RAW"]
    volumeMounts:
    - name: shared
      mountPath: /shared
    - name: secret
      mountPath: /etc/secret
  volumes:
  - name: site
    configMap:
      name: web-config
      items:
      - key: index.html
        path: index.html
  - name: secret
    secret:
      secretName: web-secret
  - name: shared
    emptyDir: {}
  - name: host
    hostPath:
      path: HOSTDIR
      type: DirectoryOrCreate
"#;

#[test]
fn pod_of_two_containers_configmap_secret_replay_and_down() {
    if skip_without(&[], "kube play") {
        return;
    }
    let s = EngineScratch::new("kube-pod");
    load_busybox(&s);
    let vols_before = volumes(&s);
    let hostdir = s.path("hostdir").join("made");
    let pod_yaml = POD_YAML.replace("HOSTDIR", hostdir.to_str().unwrap());
    let file = write(&s, "pod.yaml", &pod_yaml);
    let out = kube(&s, &["play", &file]).ok("kube play");
    assert!(out.contains("Pod web created"), "{out}");

    // The containers, named as podman names them; the init container is gone.
    let names = s.container_ok(&["ls", "-a", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names.contains(&"web-srv") && names.contains(&"web-cli"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with("-infra")), "{names:?}");

    // Localhost is shared: the client reaches the server on 127.0.0.1.
    let page = exec_until(
        &s,
        "web-cli",
        &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"],
        "served by kube play",
    );
    assert_eq!(page.trim(), "served by kube play");
    // env from the ConfigMap and the Secret; the Secret and the emptyDir as files.
    let env = s.container_ok(&["exec", "web-cli", "env"]);
    assert!(env.contains("GREETING=hello from a configmap"), "{env}");
    assert!(env.contains("PASSWORD=s3cr3t"), "{env}");
    assert!(env.contains("PLAIN=plain value"), "{env}");
    let secret = s.container_ok(&["exec", "web-cli", "cat", "/etc/secret/password"]);
    assert_eq!(secret, "s3cr3t");
    let mark = s.container_ok(&["exec", "web-cli", "cat", "/shared/mark"]);
    assert_eq!(mark.trim(), "init ran");
    assert_eq!(
        s.container_ok(&["exec", "web-cli", "id", "-u"]).trim(),
        "1000"
    );
    // The hostPath, made (DirectoryOrCreate) and shared with the host.
    s.container_ok(&["exec", "web-srv", "sh", "-c", "echo from the pod > /host/f"]);
    assert_eq!(
        std::fs::read_to_string(hostdir.join("f")).unwrap(),
        "from the pod\n"
    );
    // The hostPort, from the host.
    assert!(http_get(18480, "/index.html").contains("served by kube play"));
    // The memory limit reached the engine.
    let mem = s.container_ok(&["inspect", "-f", "{{.HostConfig.Memory}}", "web-srv"]);
    assert_eq!(mem.trim(), (64u64 << 20).to_string());

    // pod ls and inspect.
    let ls = pod(&s, &["ls"]).ok("pod ls");
    assert!(
        ls.lines()
            .any(|l| l.contains("web") && l.contains("Running")),
        "{ls}"
    );
    let insp: serde_json::Value =
        serde_json::from_str(&pod(&s, &["inspect", "web"]).ok("pod inspect")).unwrap();
    assert_eq!(insp[0]["NumContainers"], 3);

    // Replay: nothing changes; --replace: made again.
    let before = ids(&s);
    let out = kube(&s, &["play", &file]).ok("kube play again");
    assert!(out.contains("Pod web unchanged"), "{out}");
    assert_eq!(ids(&s), before);
    let out = kube(&s, &["play", "--replace", &file]).ok("kube play --replace");
    assert!(out.contains("Pod web created"), "{out}");
    let after = ids(&s);
    assert_eq!(after.len(), 3);
    assert!(
        after.iter().all(|i| !before.contains(i)),
        "{before:?} {after:?}"
    );
    // A changed ConfigMap recreates the pod that reads it.
    let changed = pod_yaml.replace("served by kube play", "served again");
    let file2 = write(&s, "pod.yaml", &changed);
    assert_eq!(file, file2);
    kube(&s, &["play", &file]).ok("kube play changed");
    assert!(ids(&s).iter().all(|i| !after.contains(i)));
    exec_until(
        &s,
        "web-cli",
        &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"],
        "served again",
    );

    // stop and start: the members join the new infra's namespaces again.
    pod(&s, &["stop", "-t", "1", "web"]).ok("pod stop");
    let ls = pod(&s, &["ls"]).ok("pod ls");
    assert!(
        ls.lines()
            .any(|l| l.contains("web") && l.contains("Exited")),
        "{ls}"
    );
    pod(&s, &["start", "web"]).ok("pod start");
    let page = exec_until(
        &s,
        "web-cli",
        &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"],
        "served again",
    );
    assert_eq!(page.trim(), "served again");
    assert!(http_get(18480, "/index.html").contains("served again"));

    // pod rm refuses a running pod without -f.
    let out = pod(&s, &["rm", "web"]);
    assert!(out.code != 0, "pod rm of a running pod succeeded");
    assert!(out.stderr.contains("running"), "{}", out.stderr);

    // kube down: nothing left.
    let out = kube(&s, &["down", &file]).ok("kube down");
    assert!(out.contains("Pod web removed"), "{out}");
    assert!(ids(&s).is_empty(), "{:?}", ids(&s));
    assert_eq!(pod(&s, &["ls", "-q"]).ok("pod ls").trim(), "");
    assert_eq!(volumes(&s), vols_before);
    assert!(!has_network(&s, "kube"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", 18480)).is_err());
}

const APP_YAML: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: front
  labels:
    app: front
spec:
  replicas: 2
  selector:
    matchLabels:
      app: front
  template:
    metadata:
      labels:
        app: front
    spec:
      containers:
      - name: httpd
        image: berth-tests/busybox:latest
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
        ports:
        - containerPort: 80
          name: http
        livenessProbe:
          tcpSocket:
            port: http
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: front
spec:
  type: NodePort
  selector:
    app: front
  ports:
  - port: 80
    targetPort: http
    nodePort: 18481
---
apiVersion: v1
kind: Service
metadata:
  name: backend
spec:
  selector:
    app: front
  ports:
  - port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  containers:
  - name: sh
    image: berth-tests/busybox:latest
    imagePullPolicy: Never
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: front-data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
---
apiVersion: batch/v1
kind: Job
metadata:
  name: once
spec:
  backoffLimit: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: berth-tests/busybox:latest
        imagePullPolicy: Never
        command: ["sh", "-c", "echo job wrote this > /data/out"]
        volumeMounts:
        - name: data
          mountPath: /data
      volumes:
      - name: data
        persistentVolumeClaim:
          claimName: front-data
"#;

#[test]
fn deployment_nodeport_service_job_and_claim() {
    if skip_without(&[], "kube play") {
        return;
    }
    let s = EngineScratch::new("kube-app");
    load_busybox(&s);
    let vols_before = volumes(&s);
    let file = write(&s, "app.yaml", APP_YAML);
    let t = Instant::now();
    let out = kube(&s, &["play", &file]).ok("kube play");
    eprintln!(
        "kube play of app.yaml (5 pods, a Job run): {:?}",
        t.elapsed()
    );
    assert!(out.contains("Pod front-pod-0 created"), "{out}");
    assert!(out.contains("Pod front-pod-1 created"), "{out}");
    assert!(out.contains("Job pod once-pod completed (exit 0"), "{out}");
    let ls = pod(&s, &["ls"]).ok("pod ls");
    for p in ["front-pod-0", "front-pod-1", "once-pod", "client"] {
        assert!(ls.contains(p), "{ls}");
    }
    // The NodePort answers on 127.0.0.1, from either replica.
    let seen = answering(Ipv4Addr::LOCALHOST, 18481, 60);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["front-pod-0", "front-pod-1"],
        "{seen:?}"
    );
    // The ClusterIP Service is a name on the play's network: the client reaches a replica by
    // it, and each pod by its name.
    let by_service = exec_until(
        &s,
        "client-sh",
        &["wget", "-q", "-O", "-", "http://backend/"],
        "front-pod-",
    );
    assert!(by_service.contains("front-pod-"), "{by_service}");
    let by_pod = exec_until(
        &s,
        "client-sh",
        &["wget", "-q", "-O", "-", "http://front-pod-1/"],
        "front-pod-1",
    );
    assert_eq!(by_pod.trim(), "front-pod-1");
    // The probe became the engine's healthcheck, and it passes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = s.container_ok(&[
            "inspect",
            "-f",
            "{{.State.Health.Status}}",
            "front-pod-1-httpd",
        ]);
        if h.trim() == "healthy" {
            break;
        }
        assert!(Instant::now() < deadline, "health: {h}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // Replayed: nothing made again, the completed Job not run again.
    let before = ids(&s);
    let again = kube(&s, &["play", &file]).ok("kube play again");
    for p in ["front-pod-0", "front-pod-1", "once-pod", "client"] {
        assert!(again.contains(&format!("Pod {p} unchanged")), "{again}");
    }
    assert_eq!(ids(&s), before);
    // The Job wrote to the claim's named volume.
    assert!(volumes(&s).contains(&"front-data".to_string()));
    let out = s.container_ok(&[
        "run",
        "--rm",
        "-v",
        "front-data:/d",
        BUSYBOX,
        "cat",
        "/d/out",
    ]);
    assert_eq!(out.trim(), "job wrote this");

    // A failing Job: retried backoffLimit times, then an error that says so.
    let failing = write(
        &s,
        "fail.yaml",
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: bad
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: berth-tests/busybox:latest
        imagePullPolicy: Never
        command: ["sh", "-c", "exit 3"]
"#,
    );
    let out = kube(&s, &["play", &failing]);
    assert!(out.code != 0);
    assert!(
        out.stderr
            .contains("backoffLimit reached after 2 attempt(s), last exit code 3"),
        "{}",
        out.stderr
    );
    kube(&s, &["down", &failing]).ok("kube down failing job");

    let t = Instant::now();
    let out = kube(&s, &["down", &file]).ok("kube down");
    eprintln!("kube down of app.yaml: {:?}", t.elapsed());
    assert!(out.contains("Network kube removed"), "{out}");
    assert!(ids(&s).is_empty(), "{:?}", ids(&s));
    assert_eq!(pod(&s, &["ls", "-q"]).ok("pod ls").trim(), "");
    assert_eq!(volumes(&s), vols_before);
    assert!(!has_network(&s, "kube"));
}

/// `GET /` `n` times on `addr`:`port`: how many times each body (a pod's hostname) came.
/// First, until ten answers in a row came (a pod's server may still be starting: its pod is
/// in the set from its infra's start), then `n` that must all answer.
fn answering(addr: Ipv4Addr, port: u16, n: usize) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut in_a_row = 0;
    while in_a_row < 10 {
        match http_get_once(addr.into(), port, "/") {
            Ok(_) => in_a_row += 1,
            Err(e) => {
                assert!(Instant::now() < deadline, "GET {addr}:{port}: {e}");
                in_a_row = 0;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let out = http_get_once(addr.into(), port, "/")
            .unwrap_or_else(|e| panic!("GET {addr}:{port}: {e}"));
        let body = out.rsplit("\r\n\r\n").next().unwrap_or_default().trim();
        *seen.entry(body.to_string()).or_insert(0) += 1;
    }
    seen
}

/// The elements of berth's table that name `port` (its balanced chain, map elements, members).
fn rules_naming(port: u16) -> Vec<String> {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "ip", "berth"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!(" {port} ")) || l.contains(&format!("_{port}")))
        .map(|l| l.trim().to_string())
        .collect()
}

fn balanced_yaml(replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: hello
  template:
    metadata:
      labels:
        app: hello
    spec:
      containers:
      - name: httpd
        image: berth-tests/busybox:latest
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  type: NodePort
  selector:
    app: hello
  ports:
  - port: 80
    targetPort: 8080
    nodePort: 18486
---
apiVersion: v1
kind: Service
metadata:
  name: hello-lb
spec:
  type: LoadBalancer
  selector:
    app: hello
  ports:
  - port: 18487
    targetPort: 8080
---
{client}"#,
        client = client_pod()
    )
}

/// The client pod of [`APP_YAML`] (a busybox shell that sleeps), one YAML document.
fn client_pod() -> &'static str {
    APP_YAML
        .split("---\n")
        .find(|d| d.contains("  name: client\n"))
        .expect("APP_YAML's client pod")
}

#[test]
fn nodeport_balances_over_every_running_pod() {
    if skip_without(&["nft"], "kube play") {
        return;
    }
    let s = EngineScratch::new("kube-balance");
    load_busybox(&s);
    // The LoadBalancer's port taken by a program of the host: refused, nothing made.
    let taken = std::net::TcpListener::bind("0.0.0.0:18488").unwrap();
    let file = write(
        &s,
        "taken.yaml",
        &balanced_yaml(2).replace("port: 18487", "port: 18488"),
    );
    let out = kube(&s, &["play", &file]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("Bind for 0.0.0.0:18488 failed: port is already allocated"),
        "{}",
        out.stderr
    );
    assert!(ids(&s).is_empty(), "{:?}", ids(&s));
    assert_eq!(rules_naming(18486), Vec::<String>::new());
    assert_eq!(rules_naming(18488), Vec::<String>::new());
    drop(taken);

    let file = write(&s, "hello.yaml", &balanced_yaml(3));
    kube(&s, &["play", &file]).ok("kube play");
    let three = ["hello-pod-0", "hello-pod-1", "hello-pod-2"];
    // From the host: on 127.0.0.1 and on another address of the host (the play network's
    // gateway), the NodePort and the LoadBalancer port reach all three replicas.
    let net: serde_json::Value =
        serde_json::from_str(&s.berth_ok(&["network", "inspect", "kube"])).unwrap();
    let gateway: Ipv4Addr = net[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    for (addr, port) in [
        (Ipv4Addr::LOCALHOST, 18486),
        (gateway, 18486),
        (Ipv4Addr::LOCALHOST, 18487),
    ] {
        let seen = answering(addr, port, 60);
        eprintln!("60 GETs on {addr}:{port}: {seen:?}");
        assert_eq!(
            seen.keys().collect::<Vec<_>>(),
            three,
            "{addr}:{port}: {seen:?}"
        );
    }
    // From a container, through the host's address (prerouting, not output).
    let mut from_client = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let out = s.container(&[
            "exec",
            "client-sh",
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{gateway}:18486/"),
        ]);
        assert_eq!(out.code, 0, "wget from the client: {out:?}");
        from_client.insert(out.stdout.trim().to_string());
    }
    assert_eq!(from_client.iter().collect::<Vec<_>>(), three);
    // The host port is the pods': a program cannot take it.
    assert!(std::net::TcpListener::bind("0.0.0.0:18486").is_err());

    // A pod stopped leaves the set; started again, it is back.
    pod(&s, &["stop", "hello-pod-1"]).ok("pod stop");
    let chain = std::process::Command::new("nft")
        .args(["list", "chain", "ip", "berth", "lb_tcp_18486"])
        .output()
        .unwrap();
    let chain = String::from_utf8_lossy(&chain.stdout);
    assert!(chain.contains("numgen random mod 2 map"), "{chain}");
    let seen = answering(Ipv4Addr::LOCALHOST, 18486, 40);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["hello-pod-0", "hello-pod-2"],
        "{seen:?}"
    );
    pod(&s, &["start", "hello-pod-1"]).ok("pod start");
    let seen = answering(Ipv4Addr::LOCALHOST, 18486, 60);
    assert_eq!(seen.keys().collect::<Vec<_>>(), three, "{seen:?}");

    // Scaled to 4 (a replay): the new replica joins; --replace: new pods, the same set.
    let file4 = write(&s, "hello.yaml", &balanced_yaml(4));
    let out = kube(&s, &["play", &file4]).ok("kube play 4");
    assert!(out.contains("Pod hello-pod-3 created"), "{out}");
    let four = ["hello-pod-0", "hello-pod-1", "hello-pod-2", "hello-pod-3"];
    let seen = answering(Ipv4Addr::LOCALHOST, 18486, 80);
    assert_eq!(seen.keys().collect::<Vec<_>>(), four, "{seen:?}");
    kube(&s, &["play", "--replace", &file4]).ok("kube play --replace");
    let seen = answering(Ipv4Addr::LOCALHOST, 18487, 80);
    assert_eq!(seen.keys().collect::<Vec<_>>(), four, "{seen:?}");
    // Scaled down to 2: the other replicas go, and leave the set.
    let file2 = write(&s, "hello.yaml", &balanced_yaml(2));
    let out = kube(&s, &["play", &file2]).ok("kube play 2");
    for p in ["hello-pod-2", "hello-pod-3"] {
        assert!(
            out.contains(&format!("Pod {p} removed (hello scaled to 2)")),
            "{out}"
        );
    }
    let seen = answering(Ipv4Addr::LOCALHOST, 18486, 40);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["hello-pod-0", "hello-pod-1"],
        "{seen:?}"
    );
    // A pod removed leaves the set.
    pod(&s, &["rm", "-f", "hello-pod-0"]).ok("pod rm");
    let seen = answering(Ipv4Addr::LOCALHOST, 18486, 20);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["hello-pod-1"], "{seen:?}");

    // down: no rule, element or member of either port is left, and the ports are free.
    kube(&s, &["down", &file2]).ok("kube down");
    for port in [18486, 18487] {
        assert_eq!(rules_naming(port), Vec::<String>::new(), "port {port}");
        assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());
    }
    assert!(ids(&s).is_empty(), "{:?}", ids(&s));
}

/// Whether network `name` exists.
fn has_network(s: &EngineScratch, name: &str) -> bool {
    s.berth(&["network", "inspect", name]).status.success()
}

#[test]
fn errors_name_kind_field_and_line_and_make_nothing() {
    if skip_without(&[], "kube play") {
        return;
    }
    let s = EngineScratch::new("kube-errors");
    load_busybox(&s);
    play_fails(
        &s,
        "kind.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: x\nspec: {}\n",
        &[
            "kind.yaml: document 1",
            "unsupported kind \"StatefulSet\"",
        ],
    );

    play_fails(
        &s,
        "field.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: berth-tests/busybox:latest\n    lifecycle: {}\n",
        &[
            "field.yaml: document 0: line 9",
            "unknown field `lifecycle`",
        ],
    );

    play_fails(
        &s,
        "ns.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: prod\ndata: {}\n",
        &["ns.yaml: document 0 (ConfigMap a): field metadata.namespace: \"prod\""],
    );

    // A valid first pod and a second one with a missing ConfigMap key: checked before
    // anything is made, so neither exists.
    play_fails(
        &s,
        "half.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: good\nspec:\n  containers:\n  - name: c\n    image: berth-tests/busybox:latest\n    command: [sleep, '60']\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n    image: berth-tests/busybox:latest\n    env:\n    - name: X\n      valueFrom:\n        configMapKeyRef: {name: nope, key: k}\n",
        &[
            "document 1 (Pod bad)",
            "ConfigMap \"nope\" has no key \"k\"",
        ],
    );
    // An image not in the store with imagePullPolicy: Never: the pod made so far is removed.
    play_fails(
        &s,
        "never.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nv\nspec:\n  containers:\n  - name: a\n    image: berth-tests/busybox:latest\n    imagePullPolicy: Never\n    command: [sleep, '60']\n  - name: b\n    image: berth-tests/absent:latest\n    imagePullPolicy: Never\n",
        &[
            "nv",
        ],
    );
    assert!(ids(&s).is_empty(), "{:?}", ids(&s));
    assert_eq!(pod(&s, &["ls", "-q"]).ok("pod ls").trim(), "");

    // A host port taken: a clear error, the pods made before it removed.
    let taken = std::net::TcpListener::bind("127.0.0.1:18484").unwrap();
    play_fails(
        &s,
        "conflict.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: first\nspec:\n  containers:\n  - name: c\n    image: berth-tests/busybox:latest\n    imagePullPolicy: Never\n    command: [sleep, '60']\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: second\nspec:\n  containers:\n  - name: c\n    image: berth-tests/busybox:latest\n    imagePullPolicy: Never\n    command: [sleep, '60']\n    ports:\n    - {containerPort: 80, hostPort: 18484, hostIP: 127.0.0.1}\n",
        &[
            "Pod second",
            "18484",
        ],
    );
    drop(taken);
    assert!(ids(&s).is_empty(), "{:?}", ids(&s));
    assert_eq!(pod(&s, &["ls", "-q"]).ok("pod ls").trim(), "");
    // The network the failed plays made went with them.
    assert!(!has_network(&s, "kube"));
}

#[test]
fn generate_plays_back() {
    if skip_without(&[], "kube generate") {
        return;
    }
    let s = EngineScratch::new("kube-generate");
    load_busybox(&s);
    let file = write(
        &s,
        "g.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gen\n  labels: {app: gen}\nspec:\n  containers:\n  - name: main\n    image: berth-tests/busybox:latest\n    imagePullPolicy: Never\n    command: [sleep]\n    args: ['600']\n    env:\n    - {name: COLOR, value: blue}\n    ports:\n    - {containerPort: 80, hostPort: 18482}\n",
    );
    kube(&s, &["play", &file]).ok("kube play");
    let yaml = kube(&s, &["generate", "gen"]).ok("kube generate");
    for want in [
        "kind: Pod",
        "name: gen",
        "name: main",
        "COLOR",
        "blue",
        "hostPort: 18482",
        "'600'",
    ] {
        assert!(yaml.contains(want), "{want}: {yaml}");
    }
    kube(&s, &["down", &file]).ok("kube down");
    let again = write(&s, "again.yaml", &yaml);
    kube(&s, &["play", "--infra-image", BUSYBOX, &again]).ok("kube play of the generated YAML");
    let env = s.container_ok(&["exec", "gen-main", "env"]);
    assert!(env.contains("COLOR=blue"), "{env}");
    kube(&s, &["down", &again]).ok("kube down");
    assert!(ids(&s).is_empty());
}

/// `podman` on a storage of the test's own (vfs, under the scratch dir).
fn podman(s: &EngineScratch, args: &[&str]) -> Outcome {
    let root = s.path("podman-root");
    let run = s.path("podman-run");
    let mut c = std::process::Command::new("podman");
    c.arg("--root")
        .arg(&root)
        .arg("--runroot")
        .arg(&run)
        .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
        .args(["--events-backend", "file"])
        .args(args);
    run_bounded(&c)
}

const DIFF_YAML: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: diff-config
data:
  COLOR: green
---
apiVersion: v1
kind: Pod
metadata:
  name: diffpod
spec:
  containers:
  - name: one
    image: berth-tests/busybox:latest
    imagePullPolicy: Never
    command: ["sleep", "600"]
    env:
    - name: PLAIN
      value: a plain value
    - name: COLOR
      valueFrom:
        configMapKeyRef: {name: diff-config, key: COLOR}
    ports:
    - containerPort: 8080
      hostPort: 18490
  - name: two
    image: berth-tests/busybox:latest
    imagePullPolicy: Never
    command: ["sleep"]
    args: ["601"]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: rep
spec:
  replicas: 2
  selector:
    matchLabels: {app: rep}
  template:
    metadata:
      labels: {app: rep}
    spec:
      containers:
      - name: c
        image: berth-tests/busybox:latest
        imagePullPolicy: Never
        command: ["sleep", "602"]
        env:
        - {name: REPLICA_ENV, value: "yes"}
"#;

/// A container's name, the env the YAML gave it, its entrypoint and command as one list.
type Summary = (String, Vec<String>, Vec<String>);

/// The names (infra containers as one pattern), and per container the env the YAML gave and
/// the command, of `ls`/`inspect` output in Docker's and podman's common format.
fn summarize(
    names: &str,
    inspect: &dyn Fn(&str) -> serde_json::Value,
) -> (Vec<String>, Vec<Summary>) {
    let mut out = Vec::new();
    let mut all: Vec<String> = Vec::new();
    for n in names.split_whitespace() {
        let is_infra = n.len() == 18 && n.ends_with("-infra");
        all.push(if is_infra {
            "<id>-infra".into()
        } else {
            n.to_string()
        });
        if is_infra {
            continue;
        }
        let v = inspect(n);
        let mut env: Vec<String> = v[0]["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e.as_str())
            .filter(|e| {
                ["PLAIN=", "COLOR=", "REPLICA_ENV="]
                    .iter()
                    .any(|p| e.starts_with(p))
            })
            .map(String::from)
            .collect();
        env.sort();
        let mut cmd: Vec<String> = Vec::new();
        for k in ["Entrypoint", "Cmd"] {
            match &v[0]["Config"][k] {
                serde_json::Value::Array(a) => {
                    cmd.extend(a.iter().filter_map(|x| x.as_str().map(String::from)))
                }
                // podman 4 shows the entrypoint as one string, its words joined by spaces.
                serde_json::Value::String(x) => cmd.extend(x.split_whitespace().map(String::from)),
                _ => {}
            }
        }
        out.push((n.to_string(), env, cmd));
    }
    all.sort();
    out.sort();
    (all, out)
}

#[test]
fn differential_against_podman_kube_play() {
    if skip_without(&["podman"], "kube play against podman") {
        return;
    }
    let s = EngineScratch::new("kube-diff");
    load_busybox(&s);
    let archive = busybox_archive(&s);
    let file = write(&s, "diff.yaml", DIFF_YAML);
    let loaded = podman(&s, &["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(loaded.code, 0, "podman load: {}", loaded.stderr);
    // podman may fail to start the containers where it cannot raise RLIMIT_NOFILE (this
    // machine): what it created is compared, not what runs.
    let p = podman(&s, &["kube", "play", &file]);
    let pnames = podman(&s, &["ps", "-a", "--format", "{{.Names}}"]).stdout;
    let ppods = podman(&s, &["pod", "ls", "--format", "{{.Name}}"]).stdout;
    kube(&s, &["play", &file]).ok("berth kube play");
    let bnames = s.container_ok(&["ls", "-a", "--format", "{{.Names}}"]);
    let bpods = pod(&s, &["ls"]).ok("pod ls");

    // The pod's published ports: on its infra container, in both.
    let pports: serde_json::Value =
        serde_json::from_str(&podman(&s, &["pod", "inspect", "diffpod"]).stdout).unwrap();
    let pports = pports["InfraConfig"]["PortBindings"].clone();
    let binfra = pod(&s, &["inspect", "diffpod"]).ok("pod inspect");
    let binfra: serde_json::Value = serde_json::from_str(&binfra).unwrap();
    let binfra = binfra[0]["Infra"].as_str().unwrap().to_string();
    let bports: serde_json::Value = serde_json::from_str(&s.container_ok(&[
        "inspect",
        "-f",
        "{{json .HostConfig.PortBindings}}",
        &binfra,
    ]))
    .unwrap();
    let host_ports = |v: &serde_json::Value| -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, list) in v.as_object().into_iter().flatten() {
            for b in list.as_array().into_iter().flatten() {
                out.push((k.clone(), b["HostPort"].as_str().unwrap_or("").to_string()));
            }
        }
        out
    };
    eprintln!("ports: podman {pports} berth {bports}");
    let pinspect = |n: &str| -> serde_json::Value {
        serde_json::from_str(&podman(&s, &["container", "inspect", n]).stdout).unwrap()
    };
    let binspect = |n: &str| -> serde_json::Value {
        serde_json::from_str(&s.container_ok(&["inspect", n])).unwrap()
    };
    let (pn, pc) = summarize(&pnames, &pinspect);
    let (bn, bc) = summarize(&bnames, &binspect);
    let cleanup = || {
        let _ = podman(&s, &["kube", "down", &file]);
        let _ = podman(&s, &["pod", "rm", "-af"]);
        let _ = podman(&s, &["rm", "-af"]);
        let _ = podman(&s, &["rmi", "-af"]);
    };
    if pn.is_empty() {
        cleanup();
        panic!("podman made nothing: {} {}", p.stdout, p.stderr);
    }
    cleanup();
    assert_eq!(bn, pn, "container names (berth, podman)");
    let mut pp: Vec<&str> = ppods.split_whitespace().collect();
    pp.sort();
    for name in &pp {
        assert!(
            bpods.contains(name),
            "pod {name} of podman's not in berth's {bpods}"
        );
    }
    assert_eq!(pp, ["diffpod", "rep-pod-0", "rep-pod-1"]);
    assert_eq!(bc, pc, "env and command per container (berth, podman)");
    assert_eq!(
        host_ports(&bports),
        host_ports(&pports),
        "the pod's ports (berth, podman)"
    );
    assert_eq!(
        host_ports(&bports),
        [("8080/tcp".to_string(), "18490".to_string())]
    );
    // The host port is the infra's in both: berth's answers on it.
    let pb = s.container_ok(&[
        "inspect",
        "-f",
        "{{json .HostConfig.PortBindings}}",
        "diffpod-one",
    ]);
    assert!(!pb.contains("18490"), "a member holds the pod's port: {pb}");
    kube(&s, &["down", &file]).ok("kube down");
    assert!(ids(&s).is_empty());
}

#[test]
fn down_after_an_interrupted_play_leaves_nothing() {
    if skip_without(&[], "kube play") {
        return;
    }
    let s = EngineScratch::new("kube-interrupted");
    load_busybox(&s);
    let vols_before = volumes(&s);
    let file = write(
        &s,
        "many.yaml",
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: a
        image: berth-tests/busybox:latest
        imagePullPolicy: Never
        command: ["sleep", "600"]
        volumeMounts:
        - {name: scratch, mountPath: /scratch}
      volumes:
      - name: scratch
        emptyDir: {}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: many
spec:
  replicas: 3
  selector:
    matchLabels: {app: many}
  template:
    metadata:
      labels: {app: many}
    spec:
      containers:
      - name: a
        image: berth-tests/busybox:latest
        imagePullPolicy: Never
        command: ["sleep", "600"]
"#,
    );
    // A whole play first: the DaemonSet's one pod and the ReplicaSet's three, named as
    // podman names them.
    let out = kube(&s, &["play", &file]).ok("kube play");
    for p in ["agent-pod", "many-pod-0", "many-pod-1", "many-pod-2"] {
        assert!(out.contains(&format!("Pod {p} created")), "{out}");
    }
    kube(&s, &["down", &file]).ok("kube down");
    assert!(ids(&s).is_empty());
    // Then plays killed at several instants; `down` removes whatever each left.
    let mut partial = 0;
    for delay_ms in [5u64, 20, 50, 100, 200, 400] {
        let mut child = s
            .scratch
            .command(&["kube", "play", &file])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let left = ids(&s).len();
        if left > 0 && left < 8 {
            partial += 1;
        }
        kube(&s, &["down", &file]).ok("kube down after a killed play");
        let left = ids(&s);
        if !left.is_empty() {
            let mut args = vec![
                "inspect",
                "-f",
                "{{.Name}} {{.State.Status}} {{.Config.Labels}}",
            ];
            args.extend(left.iter().map(String::as_str));
            let why = s.container(&args);
            let pods = std::fs::read_dir(s.data_root().join("pods"))
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                .unwrap_or_default();
            panic!(
                "after {delay_ms} ms: {left:?}: {} {} pods {pods:?}",
                why.stdout, why.stderr
            );
        }
        assert_eq!(
            pod(&s, &["ls", "-q"]).ok("pod ls").trim(),
            "",
            "after {delay_ms} ms"
        );
        assert_eq!(volumes(&s), vols_before, "after {delay_ms} ms");
        assert!(!has_network(&s, "kube"), "after {delay_ms} ms");
    }
    eprintln!("plays killed part-way: {partial} of 6");
}

#[test]
fn pod_verbs() {
    if skip_without(&[], "berth pod") {
        return;
    }
    let s = EngineScratch::new("kube-podverbs");
    load_busybox(&s);
    let id = pod(
        &s,
        &[
            "create",
            "--name",
            "lone",
            "--infra-image",
            BUSYBOX,
            "--label",
            "tier=x",
        ],
    )
    .ok("pod create");
    assert_eq!(id.trim().len(), 64, "{id}");
    let dup = pod(&s, &["create", "--name", "lone", "--infra-image", BUSYBOX]);
    assert!(
        dup.code != 0 && dup.stderr.contains("already exists"),
        "{}",
        dup.stderr
    );
    let ls = pod(&s, &["ls"]).ok("pod ls");
    let row = ls.lines().find(|l| l.contains("lone")).unwrap_or_default();
    assert!(
        row.contains("Running") && row.trim_end().ends_with('1'),
        "{ls}"
    );
    let insp: serde_json::Value =
        serde_json::from_str(&pod(&s, &["inspect", &id.trim()[..12]]).ok("pod inspect")).unwrap();
    assert_eq!(insp[0]["Name"], "lone");
    assert_eq!(insp[0]["Labels"]["tier"], "x");
    assert_eq!(insp[0]["Containers"][0]["State"], "running");
    // The infra container's hostname is the pod's name.
    let infra = insp[0]["Infra"].as_str().unwrap().to_string();
    assert_eq!(s.container_ok(&["exec", &infra, "hostname"]).trim(), "lone");
    pod(&s, &["stop", "lone"]).ok("pod stop");
    assert_eq!(
        s.container_ok(&["inspect", "-f", "{{.State.Status}}", &infra])
            .trim(),
        "exited"
    );
    pod(&s, &["start", "lone"]).ok("pod start");
    assert_eq!(
        s.container_ok(&["inspect", "-f", "{{.State.Status}}", &infra])
            .trim(),
        "running"
    );
    let missing = pod(&s, &["rm", "nosuchpod"]);
    assert!(
        missing.code != 0 && missing.stderr.contains("no such pod"),
        "{}",
        missing.stderr
    );
    pod(&s, &["rm", "-f", "lone"]).ok("pod rm -f");
    assert_eq!(pod(&s, &["ls", "-q"]).ok("pod ls").trim(), "");

    // Without --infra-image: berth's pause program, from the image berth makes of it; it ends
    // on the stop signal (SIGTERM) with 0; a kill at the stop timeout would leave 137.
    pod(&s, &["create", "--name", "paused"]).ok("pod create");
    let insp: serde_json::Value =
        serde_json::from_str(&pod(&s, &["inspect", "paused"]).ok("pod inspect")).unwrap();
    let infra = insp[0]["Infra"].as_str().unwrap().to_string();
    let image = s.container_ok(&["inspect", "-f", "{{.Config.Image}}", &infra]);
    assert!(
        image.trim().starts_with("localhost/berth-pause:"),
        "{image}"
    );
    pod(&s, &["stop", "-t", "20", "paused"]).ok("pod stop");
    let code = s.container_ok(&["inspect", "-f", "{{.State.ExitCode}}", &infra]);
    assert_eq!(code.trim(), "0");
    pod(&s, &["rm", "paused"]).ok("pod rm of a stopped pod");
    assert!(ids(&s).is_empty());
}
