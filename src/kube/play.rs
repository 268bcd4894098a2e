//! `kube play` and `kube down`: the documents of the files become pods (a Pod, a
//! Deployment's or ReplicaSet's replicas, a DaemonSet's one pod, a Job's pod run to completion),
//! with the ConfigMaps, Secrets and claims they use and the host ports of the Services that
//! select them (a NodePort's or LoadBalancer's host port balanced over all the pods it
//! selects, see [`crate::network::firewall::Firewall::join_balanced`]). A replay with fewer
//! replicas removes the pods past the count. Everything is checked before anything is made; a failure while making removes
//! the pods this play made.

use super::model::{self, Object};
use super::pod::{self, Member, PodRecord, MADE_BY_LABEL};
use crate::engine::create::CreateFlags;
use crate::engine::lifecycle;
use crate::engine::record::Engine;
use crate::engine::resources::ResourceFlags;
use crate::engine::security::SecurityFlags;
use crate::engine::volume::VolumeStore;
use crate::image::store::Store;
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use sha2::Digest;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The network a play's pods join unless told otherwise: a user network, so that its DNS
/// resolves the pods (by hostname, the pod's name) and the Services (aliases of the pods they
/// select).
pub const DEFAULT_NETWORK: &str = "kube";

#[derive(Default, Clone)]
pub struct PlayOptions {
    /// Recreate every pod even when unchanged.
    pub replace: bool,
    /// The network the pods join (made, and removed by `down`, when the play makes it).
    pub network: String,
    /// An image whose `sleep` the infra containers run (default: berth's pause image).
    pub infra_image: Option<String>,
}

type Data = BTreeMap<String, Vec<u8>>;

/// Everything of a play's files, resolved.
#[derive(Default)]
pub struct Plan {
    pub config_maps: BTreeMap<String, Data>,
    pub secrets: BTreeMap<String, Data>,
    /// Claims defined by the files (made as named volumes).
    pub claims: Vec<String>,
    pub pods: Vec<PodPlan>,
    pub warnings: Vec<String>,
    /// The absolute paths of the files.
    pub files: Vec<String>,
    /// The Deployments and ReplicaSets: (file, name, replicas). A replay removes the pods
    /// of a smaller count.
    pub replica_sets: Vec<(String, String, u32)>,
}

#[derive(Debug, Clone)]
pub struct PodPlan {
    /// "file: document N (Kind NAME)" for errors.
    pub origin: String,
    pub file: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: model::PodSpec,
    /// The balanced host ports (`HOST:TARGET/PROTO`) of the NodePort and LoadBalancer
    /// Services that select it: each is shared by all the pods a Service selects.
    pub balanced_ports: Vec<String>,
    /// A Job's backoff limit: the pod runs to completion, retried this many times.
    pub job: Option<u32>,
    /// The names of the Services that select it: its DNS aliases on the play's network.
    pub aliases: Vec<String>,
}

/// Reads and resolves `files`.
pub fn plan(files: &[std::path::PathBuf]) -> Result<Plan> {
    let mut docs = Vec::new();
    let mut plan = Plan::default();
    for f in files {
        let abs = fs::canonicalize(f).with_context(|| format!("cannot read {}", f.display()))?;
        plan.files.push(abs.display().to_string());
        for mut d in model::read_file(f)? {
            d.file = abs.display().to_string();
            docs.push(d);
        }
    }
    let mut services = Vec::new();
    // The host ports of the NodePort and LoadBalancer Services, with the Service's name.
    let mut host_ports: BTreeMap<(u16, String), String> = BTreeMap::new();
    for d in &docs {
        let at =
            |kind: &str, name: &str| format!("{}: document {} ({kind} {name})", d.file, d.index);
        match &d.object {
            Object::ConfigMap(c) => {
                let name = c.metadata.require_name(d, "ConfigMap")?.to_string();
                let data = c
                    .data
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                    .collect();
                plan.config_maps.insert(name, data);
            }
            Object::Secret(s) => {
                let name = s.metadata.require_name(d, "Secret")?.to_string();
                if let Some(t) = &s.kind_of {
                    if t != "Opaque" {
                        bail!(
                            "{}: field type: {t:?} is not supported (Opaque is)",
                            at("Secret", &name)
                        );
                    }
                }
                let mut data = Data::new();
                for (k, v) in &s.data {
                    let b = base64::engine::general_purpose::STANDARD
                        .decode(v.trim())
                        .with_context(|| {
                            format!("{}: data.{k}: not base64", at("Secret", &name))
                        })?;
                    data.insert(k.clone(), b);
                }
                for (k, v) in &s.string_data {
                    data.insert(k.clone(), v.clone().into_bytes());
                }
                plan.secrets.insert(name, data);
            }
            Object::Claim(c) => {
                plan.claims.push(
                    c.metadata
                        .require_name(d, "PersistentVolumeClaim")?
                        .to_string(),
                );
            }
            Object::Service(s) => {
                s.metadata.require_name(d, "Service")?;
                services.push((d, s))
            }
            Object::Pod(p) => {
                let name = p.metadata.require_name(d, "Pod")?;
                plan.pods.push(PodPlan {
                    origin: at("Pod", name),
                    file: d.file.clone(),
                    name: name.to_string(),
                    labels: p.metadata.labels.clone(),
                    spec: p.spec.clone(),
                    balanced_ports: Vec::new(),
                    job: None,
                    aliases: Vec::new(),
                });
            }
            Object::Workload(w) => {
                let kind = w.kind.as_str();
                let name = w.metadata.require_name(d, kind)?;
                let origin = at(kind, name);
                let s = &w.spec;
                let only = |field: &str, set: bool| -> Result<()> {
                    if set {
                        bail!("{origin}: field spec.{field} is not supported for a {kind}");
                    }
                    Ok(())
                };
                let mut labels = w.metadata.labels.clone();
                labels.extend(s.template.metadata.labels.clone());
                let (names, job): (Vec<String>, Option<u32>) = match kind {
                    "Deployment" | "ReplicaSet" => {
                        only("backoffLimit", s.backoff_limit.is_some())?;
                        only("completions", s.completions.is_some())?;
                        only("parallelism", s.parallelism.is_some())?;
                        let n = s.replicas.unwrap_or(1);
                        plan.replica_sets
                            .push((d.file.clone(), name.to_string(), n));
                        ((0..n).map(|i| format!("{name}-pod-{i}")).collect(), None)
                    }
                    "DaemonSet" => {
                        only("replicas", s.replicas.is_some())?;
                        only("backoffLimit", s.backoff_limit.is_some())?;
                        only("completions", s.completions.is_some())?;
                        only("parallelism", s.parallelism.is_some())?;
                        (vec![format!("{name}-pod")], None)
                    }
                    _ => {
                        // Job
                        only("replicas", s.replicas.is_some())?;
                        only("strategy", s.strategy.is_some())?;
                        if s.completions.unwrap_or(1) != 1 || s.parallelism.unwrap_or(1) != 1 {
                            bail!("{origin}: completions and parallelism other than 1 are not supported");
                        }
                        match s.template.spec.restart_policy.as_deref() {
                            Some("Never") | Some("OnFailure") => {}
                            other => bail!(
                                "{origin}: spec.template.spec.restartPolicy must be Never or OnFailure for a Job, not {other:?}"
                            ),
                        }
                        (
                            vec![format!("{name}-pod")],
                            Some(s.backoff_limit.unwrap_or(6)),
                        )
                    }
                };
                for n in names {
                    plan.pods.push(PodPlan {
                        origin: origin.clone(),
                        file: d.file.clone(),
                        name: n,
                        labels: labels.clone(),
                        spec: s.template.spec.clone(),
                        balanced_ports: Vec::new(),
                        job,
                        aliases: Vec::new(),
                    });
                }
            }
        }
    }
    for (d, s) in services {
        let name = &s.metadata.name;
        let origin = format!("{}: document {} (Service {name})", d.file, d.index);
        let kind = s.spec.kind.as_deref().unwrap_or("ClusterIP");
        if !matches!(kind, "NodePort" | "LoadBalancer" | "ClusterIP") {
            bail!("{origin}: field spec.type: {:?} is not supported", kind);
        }
        if s.spec.cluster_ip.as_deref().is_some_and(|ip| ip != "None") {
            bail!("{origin}: field spec.clusterIP: a fixed address is not supported (the name resolves to the pods' addresses)");
        }
        if s.spec.selector.is_empty() {
            bail!("{origin}: a Service needs spec.selector");
        }
        // Every Service is a DNS name on the play's network: an alias of the pods it selects.
        // There is no virtual address: a port is reached on the pods' own (the targetPort).
        for sp in &s.spec.ports {
            let t = sp.target_port.as_ref().and_then(model::scalar);
            if t.as_deref().is_some_and(|t| t != sp.port.to_string()) {
                plan.warnings.push(format!(
                    "{origin}: port {} goes to targetPort {}: by the name {name}, reach the \
                     pods on {} (no virtual address translates ports)",
                    sp.port,
                    t.unwrap_or_default(),
                    sp.target_port
                        .as_ref()
                        .and_then(model::scalar)
                        .unwrap_or_default()
                ));
            }
        }
        for p in plan.pods.iter_mut() {
            if s.spec
                .selector
                .iter()
                .all(|(k, v)| p.labels.get(k) == Some(v))
            {
                p.aliases.push(name.clone());
            }
        }
        if kind == "ClusterIP" {
            continue;
        }
        // One host port for the Service, balanced over every pod it selects (as kube-proxy
        // spreads a NodePort's connections over the Service's endpoints).
        for sp in &s.spec.ports {
            let proto = sp.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            let host = match (kind, sp.node_port) {
                ("NodePort", Some(n)) => n,
                ("NodePort", None) => node_port(name, sp.port, &proto),
                _ => sp.port,
            };
            if let Some(other) = host_ports.insert((host, proto.clone()), name.clone()) {
                bail!("{origin}: host port {host}/{proto} is already the port of Service {other}");
            }
            for p in plan.pods.iter_mut() {
                if !s
                    .spec
                    .selector
                    .iter()
                    .all(|(k, v)| p.labels.get(k) == Some(v))
                {
                    continue;
                }
                let target = match &sp.target_port {
                    None => sp.port,
                    Some(v) => match model::scalar(v) {
                        Some(t) => match t.parse::<u16>() {
                            Ok(n) => n,
                            Err(_) => p
                                .spec
                                .containers
                                .iter()
                                .flat_map(|c| &c.ports)
                                .find(|cp| cp.name.as_deref() == Some(t.as_str()))
                                .map(|cp| cp.container_port)
                                .with_context(|| {
                                    format!("{origin}: targetPort {t:?}: no container port of pod {} has that name", p.name)
                                })?,
                        },
                        None => bail!("{origin}: targetPort must be a number or a name"),
                    },
                };
                p.balanced_ports.push(format!("{host}:{target}/{proto}"));
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for p in &plan.pods {
        if !seen.insert(p.name.clone()) {
            bail!("{}: a second pod named {}", p.origin, p.name);
        }
    }
    Ok(plan)
}

/// A pod ready to be made: the infra's spec and the members.
struct Built {
    spec: pod::PodSpec,
    init: Vec<Member>,
    members: Vec<Member>,
    volumes: Vec<VolumePlan>,
}

enum VolumePlan {
    /// A named volume: (name, made for this pod only, tmpfs).
    Named(String, bool, bool),
    /// Files written for the pod (configMap, secret): (dir, files, mode).
    Files(std::path::PathBuf, Vec<(String, Vec<u8>)>, u32),
    /// A host path to make first (DirectoryOrCreate, FileOrCreate).
    Host(String, bool),
}

/// A NodePort Service's port without `nodePort`: one of Kubernetes' range (30000-32767),
/// from a hash of the Service's name and port, so that a replay keeps it.
fn node_port(service: &str, port: u16, proto: &str) -> u16 {
    let h = sha2::Sha256::digest(format!("{service}|{port}|{proto}").as_bytes());
    30000 + (u16::from_be_bytes([h[0], h[1]]) % 2768)
}

fn restart_flag(origin: &str, p: Option<&str>) -> Result<String> {
    Ok(match p.unwrap_or("Always") {
        "Always" => "always",
        "OnFailure" => "on-failure",
        "Never" => "no",
        o => bail!("{origin}: field restartPolicy: {o:?} is not one of Always, OnFailure, Never"),
    }
    .into())
}

/// Kubernetes quantities: memory ("128Mi", "1G", "1e6"), cpu ("500m", "2").
fn memory_bytes(q: &str) -> Option<u64> {
    let units: [(&str, u64); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    for (u, m) in units {
        if let Some(n) = q.strip_suffix(u) {
            return n.parse::<f64>().ok().map(|v| (v * m as f64) as u64);
        }
    }
    q.parse::<f64>().ok().map(|v| v as u64)
}

fn cpus(q: &str) -> Option<String> {
    if let Some(m) = q.strip_suffix('m') {
        return m
            .parse::<u64>()
            .ok()
            .map(|v| format!("{}", v as f64 / 1000.0));
    }
    q.parse::<f64>().ok().map(|v| v.to_string())
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn port_of(origin: &str, v: &serde_yaml_ng::Value, c: &model::Container) -> Result<u16> {
    let s = model::scalar(v)
        .with_context(|| format!("{origin}: a probe's port must be a number or a name"))?;
    if let Ok(n) = s.parse() {
        return Ok(n);
    }
    c.ports
        .iter()
        .find(|p| p.name.as_deref() == Some(s.as_str()))
        .map(|p| p.container_port)
        .with_context(|| {
            format!(
                "{origin}: probe port {s:?}: no port of container {} has that name",
                c.name
            )
        })
}

/// The engine's healthcheck for a probe (the liveness probe, else the readiness probe).
fn probe(origin: &str, c: &model::Container, f: &mut CreateFlags) -> Result<()> {
    let Some(p) = c.liveness_probe.as_ref().or(c.readiness_probe.as_ref()) else {
        return Ok(());
    };
    if c.liveness_probe.is_some() && c.readiness_probe.is_some() {
        eprintln!(
            "WARNING: {origin}: container {}: one healthcheck per container: the livenessProbe \
             is it, the readinessProbe is not run",
            c.name
        );
    }
    if p.success_threshold.is_some_and(|n| n != 1) {
        bail!(
            "{origin}: container {}: field successThreshold: only 1 is supported",
            c.name
        );
    }
    let cmd = match (&p.exec, &p.http_get, &p.tcp_socket) {
        (Some(e), None, None) => e
            .command
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
        (None, Some(h), None) => {
            if h.scheme.as_deref().is_some_and(|s| s != "HTTP") {
                bail!(
                    "{origin}: container {}: httpGet.scheme {:?} is not supported",
                    c.name,
                    h.scheme
                );
            }
            let host = h.host.clone().unwrap_or_else(|| "127.0.0.1".into());
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            format!(
                "wget -q -O /dev/null {}",
                shell_quote(&format!(
                    "http://{host}:{}{path}",
                    port_of(origin, &h.port, c)?
                ))
            )
        }
        (None, None, Some(t)) => {
            // busybox's nc has no -z: connect, then end at stdin's end.
            format!(
                "nc -w 1 127.0.0.1 {} </dev/null >/dev/null",
                port_of(origin, &t.port, c)?
            )
        }
        _ => bail!(
            "{origin}: container {}: a probe needs exactly one of exec, httpGet, tcpSocket",
            c.name
        ),
    };
    f.health_cmd = Some(cmd);
    f.health_interval = Some(format!("{}s", p.period_seconds.unwrap_or(10)));
    f.health_timeout = Some(format!("{}s", p.timeout_seconds.unwrap_or(1)));
    f.health_retries = Some(p.failure_threshold.unwrap_or(3));
    if let Some(d) = p.initial_delay_seconds {
        f.health_start_period = Some(format!("{d}s"));
    }
    Ok(())
}

fn lookup_key<'a>(
    origin: &str,
    what: &str,
    maps: &'a BTreeMap<String, Data>,
    r: &model::KeyRef,
) -> Result<Option<&'a Vec<u8>>> {
    let found = maps.get(&r.name).and_then(|m| m.get(&r.key));
    if found.is_none() && !r.optional.unwrap_or(false) {
        bail!(
            "{origin}: {what} {:?} has no key {:?} (or is not in the files)",
            r.name,
            r.key
        );
    }
    Ok(found)
}

fn member(
    plan: &Plan,
    p: &PodPlan,
    c: &model::Container,
    restart: &str,
    mounts: &BTreeMap<String, (String, bool)>,
) -> Result<Member> {
    let origin = &p.origin;
    let mut f = CreateFlags {
        name: Some(format!("{}-{}", p.name, c.name)),
        restart: restart.into(),
        log_driver: "json-file".into(),
        workdir: c.working_dir.clone(),
        tty: c.tty.unwrap_or(false),
        interactive: c.stdin.unwrap_or(false),
        label: p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        ..Default::default()
    };
    f.pull = match c.image_pull_policy.as_deref() {
        None | Some("IfNotPresent") => "missing",
        Some("Never") => "never",
        Some("Always") => "always",
        Some(o) => bail!("{origin}: container {}: field imagePullPolicy: {o:?} is not one of Always, IfNotPresent, Never", c.name),
    }
    .into();
    if let Some(g) = p.spec.termination_grace_period_seconds {
        f.stop_timeout = Some(g);
    }
    let text = |b: &Vec<u8>| String::from_utf8_lossy(b).into_owned();
    for ef in &c.env_from {
        let prefix = ef.prefix.clone().unwrap_or_default();
        let (maps, r, what) = match (&ef.config_map_ref, &ef.secret_ref) {
            (Some(r), None) => (&plan.config_maps, r, "ConfigMap"),
            (None, Some(r)) => (&plan.secrets, r, "Secret"),
            _ => bail!(
                "{origin}: container {}: envFrom needs one of configMapRef, secretRef",
                c.name
            ),
        };
        match maps.get(&r.name) {
            Some(m) => f
                .env
                .extend(m.iter().map(|(k, v)| format!("{prefix}{k}={}", text(v)))),
            None if r.optional.unwrap_or(false) => {}
            None => bail!(
                "{origin}: container {}: envFrom: no {what} {:?} in the files",
                c.name,
                r.name
            ),
        }
    }
    for e in &c.env {
        match (&e.value, &e.value_from) {
            (_, None) => f.env.push(format!(
                "{}={}",
                e.name,
                e.value.clone().unwrap_or_default()
            )),
            (None, Some(src)) => {
                let v = match (&src.config_map_key_ref, &src.secret_key_ref) {
                    (Some(r), None) => lookup_key(origin, "ConfigMap", &plan.config_maps, r)?,
                    (None, Some(r)) => lookup_key(origin, "Secret", &plan.secrets, r)?,
                    _ => bail!("{origin}: container {}: env {}: valueFrom needs one of configMapKeyRef, secretKeyRef (fieldRef and resourceFieldRef are not supported)", c.name, e.name),
                };
                if let Some(v) = v {
                    f.env.push(format!("{}={}", e.name, text(v)));
                }
            }
            (Some(_), Some(_)) => bail!(
                "{origin}: container {}: env {}: both value and valueFrom",
                c.name,
                e.name
            ),
        }
    }
    let mut res = ResourceFlags::default();
    if let Some(r) = &c.resources {
        for (k, v) in &r.limits {
            let q = model::scalar(v)
                .with_context(|| format!("{origin}: resources.limits.{k}: not a quantity"))?;
            match k.as_str() {
                "memory" => res.memory = Some(memory_bytes(&q).with_context(|| format!("{origin}: resources.limits.memory {q:?}"))?.to_string()),
                "cpu" => res.cpus = Some(cpus(&q).with_context(|| format!("{origin}: resources.limits.cpu {q:?}"))?),
                o => bail!("{origin}: container {}: field resources.limits.{o} is not supported (cpu and memory are)", c.name),
            }
        }
        for (k, v) in &r.requests {
            let q = model::scalar(v)
                .with_context(|| format!("{origin}: resources.requests.{k}: not a quantity"))?;
            match k.as_str() {
                "memory" => res.memory_reservation = Some(memory_bytes(&q).with_context(|| format!("{origin}: resources.requests.memory {q:?}"))?.to_string()),
                // A share of the CPU on one host: as podman, cpu shares of 1024 per CPU.
                "cpu" => {
                    let n: f64 = cpus(&q).and_then(|s| s.parse().ok()).with_context(|| format!("{origin}: resources.requests.cpu {q:?}"))?;
                    res.cpu_shares = Some(((n * 1024.0) as u64).max(2).to_string());
                }
                o => bail!("{origin}: container {}: field resources.requests.{o} is not supported (cpu and memory are)", c.name),
            }
        }
    }
    let mut sec = SecurityFlags::default();
    let pod_sc = p.spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let uid = sc.run_as_user.or(pod_sc.run_as_user);
    let gid = sc.run_as_group.or(pod_sc.run_as_group);
    f.user = match (uid, gid) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        (None, Some(g)) => Some(format!("0:{g}")),
        (None, None) => None,
    };
    sec.privileged = sc.privileged.unwrap_or(false);
    if let Some(caps) = &sc.capabilities {
        sec.cap_add = caps.add.clone();
        sec.cap_drop = caps.drop.clone();
    }
    f.read_only = sc.read_only_root_filesystem.unwrap_or(false);
    if sc.allow_privilege_escalation == Some(false) {
        sec.security_opt.push("no-new-privileges".into());
    }
    probe(origin, c, &mut f)?;
    for m in &c.volume_mounts {
        let (src, is_path) = mounts.get(&m.name).with_context(|| {
            format!(
                "{origin}: container {}: volumeMounts: no volume {:?} in the pod",
                c.name, m.name
            )
        })?;
        let src = match &m.sub_path {
            Some(sp) if *is_path => format!("{src}/{sp}"),
            // A named volume's directory, bound (its path is known once it is made).
            Some(sp) => format!("{{volume:{src}}}/{sp}"),
            None => src.clone(),
        };
        let ro = if m.read_only.unwrap_or(false) {
            ":ro"
        } else {
            ""
        };
        f.mounts.volume.push(format!("{src}:{}{ro}", m.mount_path));
    }
    // command is the entrypoint, args the command: Docker's --entrypoint takes one word, the
    // rest of `command` goes in front of `args`.
    let mut command = Vec::new();
    if let Some((first, rest)) = c.command.split_first() {
        f.entrypoint = Some(first.clone());
        command.extend(rest.iter().cloned());
    }
    command.extend(c.args.iter().cloned());
    Ok(Member {
        flags: f,
        security: sec,
        resources: res,
        image: c.image.clone(),
        command,
    })
}

fn build(engine: &Engine, plan: &Plan, p: &PodPlan, network: &str) -> Result<Built> {
    let origin = &p.origin;
    if p.spec.containers.is_empty() {
        bail!("{origin}: spec.containers is empty");
    }
    // Volumes: the source each mount gets.
    let mut volumes = Vec::new();
    let mut mounts: BTreeMap<String, (String, bool)> = BTreeMap::new();
    let files = pod::files_dir(engine, &p.name);
    for v in &p.spec.volumes {
        let set = [
            v.empty_dir.is_some(),
            v.host_path.is_some(),
            v.config_map.is_some(),
            v.secret.is_some(),
            v.persistent_volume_claim.is_some(),
        ];
        if set.iter().filter(|b| **b).count() != 1 {
            bail!("{origin}: volume {:?}: exactly one of emptyDir, hostPath, configMap, secret, persistentVolumeClaim is supported", v.name);
        }
        let items = |data: &Data,
                     items: &[model::KeyToPath],
                     what: &str,
                     name: &str|
         -> Result<Vec<(String, Vec<u8>)>> {
            if items.is_empty() {
                return Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            }
            items
                .iter()
                .map(|i| {
                    data.get(&i.key)
                        .map(|b| (i.path.clone(), b.clone()))
                        .with_context(|| {
                            format!(
                                "{origin}: volume {:?}: {what} {name:?} has no key {:?}",
                                v.name, i.key
                            )
                        })
                })
                .collect()
        };
        if let Some(e) = &v.empty_dir {
            let tmpfs = match e.medium.as_deref() {
                None | Some("") => false,
                Some("Memory") => true,
                Some(m) => bail!(
                    "{origin}: volume {:?}: emptyDir.medium {m:?} is not supported",
                    v.name
                ),
            };
            if e.size_limit.is_some() {
                bail!(
                    "{origin}: volume {:?}: field emptyDir.sizeLimit is not supported",
                    v.name
                );
            }
            let name = format!("{}-{}", p.name, v.name);
            volumes.push(VolumePlan::Named(name.clone(), true, tmpfs));
            mounts.insert(v.name.clone(), (name, false));
        } else if let Some(h) = &v.host_path {
            if !h.path.starts_with('/') {
                bail!(
                    "{origin}: volume {:?}: hostPath.path must be absolute",
                    v.name
                );
            }
            match h.kind.as_deref().unwrap_or("") {
                "" => {}
                "DirectoryOrCreate" => volumes.push(VolumePlan::Host(h.path.clone(), true)),
                "FileOrCreate" => volumes.push(VolumePlan::Host(h.path.clone(), false)),
                "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice" => {
                    if !Path::new(&h.path).exists() {
                        bail!(
                            "{origin}: volume {:?}: hostPath {} does not exist",
                            v.name,
                            h.path
                        );
                    }
                }
                t => bail!(
                    "{origin}: volume {:?}: hostPath.type {t:?} is not supported",
                    v.name
                ),
            }
            mounts.insert(v.name.clone(), (h.path.clone(), true));
        } else if let Some(cm) = &v.config_map {
            let dir = files.join(&v.name);
            let list = match plan.config_maps.get(&cm.name) {
                Some(d) => items(d, &cm.items, "ConfigMap", &cm.name)?,
                None if cm.optional.unwrap_or(false) => Vec::new(),
                None => bail!(
                    "{origin}: volume {:?}: no ConfigMap {:?} in the files",
                    v.name,
                    cm.name
                ),
            };
            volumes.push(VolumePlan::Files(
                dir.clone(),
                list,
                cm.default_mode.unwrap_or(0o644),
            ));
            mounts.insert(v.name.clone(), (dir.display().to_string(), true));
        } else if let Some(s) = &v.secret {
            let dir = files.join(&v.name);
            let list = match plan.secrets.get(&s.secret_name) {
                Some(d) => items(d, &s.items, "Secret", &s.secret_name)?,
                None if s.optional.unwrap_or(false) => Vec::new(),
                None => bail!(
                    "{origin}: volume {:?}: no Secret {:?} in the files",
                    v.name,
                    s.secret_name
                ),
            };
            volumes.push(VolumePlan::Files(
                dir.clone(),
                list,
                s.default_mode.unwrap_or(0o644),
            ));
            mounts.insert(v.name.clone(), (dir.display().to_string(), true));
        } else if let Some(c) = &v.persistent_volume_claim {
            volumes.push(VolumePlan::Named(c.claim_name.clone(), false, false));
            mounts.insert(v.name.clone(), (c.claim_name.clone(), false));
        }
    }
    let restart = restart_flag(origin, p.spec.restart_policy.as_deref())?;
    let mut ports = Vec::new();
    let mut members = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for c in &p.spec.containers {
        if !names.insert(c.name.clone()) {
            bail!("{origin}: two containers named {:?}", c.name);
        }
        for cp in &c.ports {
            let proto = cp.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            if !matches!(proto.as_str(), "tcp" | "udp") {
                bail!(
                    "{origin}: container {}: port protocol {proto:?} is not supported",
                    c.name
                );
            }
            if let Some(h) = cp.host_port {
                let ip = cp
                    .host_ip
                    .as_deref()
                    .map(|i| format!("{i}:"))
                    .unwrap_or_default();
                ports.push(format!("{ip}{h}:{}/{proto}", cp.container_port));
            }
        }
        members.push(member(plan, p, c, &restart, &mounts)?);
    }
    let mut init = Vec::new();
    for c in &p.spec.init_containers {
        if !names.insert(c.name.clone()) {
            bail!("{origin}: two containers named {:?}", c.name);
        }
        if c.liveness_probe.is_some() || c.readiness_probe.is_some() {
            bail!(
                "{origin}: init container {}: probes are not supported on init containers",
                c.name
            );
        }
        init.push(member(plan, p, c, "no", &mounts)?);
    }

    // The hash: the pod's spec as resolved (with the ConfigMaps and Secrets it reads).
    let mut h = sha2::Sha256::new();
    h.update(
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{network}",
            p.spec, p.labels, ports, p.balanced_ports, p.job, p.aliases
        )
        .as_bytes(),
    );
    for m in init.iter().chain(&members) {
        h.update(
            format!(
                "{:?}{:?}{:?}{:?}",
                m.flags.env, m.flags.mounts.volume, m.command, m.flags.entrypoint
            )
            .as_bytes(),
        );
    }
    for v in &volumes {
        if let VolumePlan::Files(_, files, mode) = v {
            h.update(format!("{files:?}{mode}").as_bytes());
        }
    }
    let hash = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Built {
        spec: pod::PodSpec {
            name: p.name.clone(),
            labels: p.labels.clone(),
            ports,
            balanced_ports: p.balanced_ports.clone(),
            hostname: p.spec.hostname.clone(),
            infra_image: None,
            pull: "missing".into(),
            config_hash: hash,
            file: p.file.clone(),
            network: Some(network.to_string()),
            aliases: p.aliases.clone(),
        },
        init,
        members,
        volumes,
    })
}

/// `kube play`: makes the pods of `files`; a pod that exists with the same configuration is
/// left as it is (started if stopped), a changed one (or any with `replace`) made again.
pub fn play(
    engine: &Engine,
    store: &Store,
    files: &[std::path::PathBuf],
    o: PlayOptions,
) -> Result<Vec<String>> {
    let plan = plan(files)?;
    for w in &plan.warnings {
        eprintln!("WARNING: {w}");
    }
    // Everything is checked before anything is made.
    let built: Vec<(PodPlan, Built)> = plan
        .pods
        .iter()
        .map(|p| {
            let mut b = build(engine, &plan, p, &o.network)?;
            b.spec.infra_image = o.infra_image.clone();
            if let Some(i) = &o.infra_image {
                // Another infra is another pod.
                let h = sha2::Sha256::digest(format!("{}|{i}", b.spec.config_hash).as_bytes());
                b.spec.config_hash = h.iter().map(|b| format!("{b:02x}")).collect();
            }
            Ok((p.clone(), b))
        })
        .collect::<Result<_>>()?;
    let vols = VolumeStore::open(&engine.data_root)?;
    let made_by: BTreeMap<String, String> =
        [(MADE_BY_LABEL.to_string(), plan.files.join(","))].into();
    let nets = crate::network::store::Store::open(&engine.data_root)?;
    let made_network = !plan.pods.is_empty() && nets.get(&o.network).is_err();
    if made_network {
        crate::network::publish::create_network(
            &nets,
            &crate::network::store::CreateOptions {
                name: o.network.clone(),
                driver: Some("bridge".into()),
                labels: made_by.clone(),
                ..Default::default()
            },
        )
        .with_context(|| format!("the play's network {}", o.network))?;
    }
    let mut made_claims = Vec::new();
    for c in &plan.claims {
        if vols.lookup(c)?.is_none() {
            vols.create(Some(c), &made_by, &BTreeMap::new())?;
            made_claims.push(c.clone());
        }
    }
    // After an error: what this play made goes again (a Job's failed pod stays, for its logs).
    let undo = |made: &[String]| {
        for n in made.iter().rev() {
            let _ = pod::remove_pod(engine, n, true);
        }
        let alive = |id: &str| engine.container_dir(id).exists();
        for c in &made_claims {
            let _ = vols.remove(c, true, &alive);
        }
        if made_network {
            let _ = crate::network::cli::sweep(engine, &nets);
            if nets.leases(&o.network).is_ok_and(|l| l.is_empty()) {
                let _ = crate::network::publish::remove_network(&nets, &o.network);
            }
        }
    };
    let mut made: Vec<String> = Vec::new();
    let mut report = Vec::new();
    for (p, b) in built {
        if let Some(old) = pod::load(engine, &p.name)? {
            if old.config_hash == b.spec.config_hash && !o.replace {
                // A Job's pod ran to completion once: not run again.
                if p.job.is_none() {
                    pod::start(engine, store, &p.name)?;
                }
                report.push(format!("Pod {} unchanged", p.name));
                continue;
            }
            pod::remove_pod(engine, &p.name, true)?;
        }
        let attempts = p.job.map(|n| n + 1).unwrap_or(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            made.push(p.name.clone());
            let r = make_pod(engine, store, &vols, &b, &made_by);
            let r = r.and_then(|rec| match p.job {
                None => Ok(None),
                Some(_) => wait_job(engine, &rec).map(Some),
            });
            match r {
                Ok(None) => {
                    report.push(format!("Pod {} created", p.name));
                    break;
                }
                Ok(Some(0)) => {
                    report.push(format!(
                        "Job pod {} completed (exit 0, attempt {attempt})",
                        p.name
                    ));
                    break;
                }
                Ok(Some(code)) if attempt < attempts => {
                    eprintln!("{}: attempt {attempt} exited with {code}: retried", p.name);
                    pod::remove_pod(engine, &p.name, true)?;
                }
                Ok(Some(code)) => {
                    bail!("{}: the Job failed: backoffLimit reached after {attempt} attempt(s), last exit code {code} (pod {} kept for its logs)", p.origin, p.name);
                }
                Err(e) => {
                    undo(&made);
                    return Err(e.context(format!("{}: pod {}", p.origin, p.name)));
                }
            }
        }
    }
    // Scaled down: the replicas past the count go (and leave their Services' ports).
    for r in pod::list(engine)? {
        let past = plan.replica_sets.iter().find(|(file, name, n)| {
            *file == r.file
                && r.name
                    .strip_prefix(name.as_str())
                    .and_then(|rest| rest.strip_prefix("-pod-"))
                    .and_then(|i| i.parse::<u32>().ok())
                    .is_some_and(|i| i >= *n)
        });
        if let Some((_, name, n)) = past {
            pod::remove_pod(engine, &r.name, true)?;
            report.push(format!("Pod {} removed ({name} scaled to {n})", r.name));
        }
    }
    Ok(report)
}

fn make_pod(
    engine: &Engine,
    store: &Store,
    vols: &VolumeStore,
    b: &Built,
    made_by: &BTreeMap<String, String>,
) -> Result<PodRecord> {
    let mut rec = pod::create(engine, store, &b.spec)?;
    let r = (|| {
        for v in &b.volumes {
            match v {
                VolumePlan::Named(name, own, tmpfs) => {
                    if vols.lookup(name)?.is_none() {
                        let opts: BTreeMap<String, String> = if *tmpfs {
                            [
                                ("type".into(), "tmpfs".into()),
                                ("device".into(), "tmpfs".into()),
                            ]
                            .into()
                        } else {
                            BTreeMap::new()
                        };
                        vols.create(Some(name), made_by, &opts)?;
                        if *own {
                            rec.volumes.push(name.clone());
                        }
                    }
                }
                VolumePlan::Files(dir, files, mode) => {
                    let _ = fs::remove_dir_all(dir);
                    fs::create_dir_all(dir)?;
                    rec.dirs.push(dir.clone());
                    for (k, data) in files {
                        let path = dir.join(k);
                        if let Some(parent) = path.parent() {
                            fs::create_dir_all(parent)?;
                        }
                        fs::write(&path, data)?;
                        fs::set_permissions(&path, fs::Permissions::from_mode(*mode))?;
                    }
                }
                VolumePlan::Host(path, dir) => {
                    if *dir {
                        fs::create_dir_all(path)?;
                    } else if !Path::new(path).exists() {
                        if let Some(parent) = Path::new(path).parent() {
                            fs::create_dir_all(parent)?;
                        }
                        fs::write(path, b"")?;
                    }
                }
            }
        }
        pod::save(engine, &rec)?;
        let sub = |m: &Member| -> Member {
            let mut flags = m.flags.clone();
            for v in flags.mounts.volume.iter_mut() {
                if let Some(rest) = v.strip_prefix("{volume:") {
                    if let Some((name, tail)) = rest.split_once('}') {
                        *v = format!("{}{tail}", vols.data_path(name).display());
                    }
                }
            }
            Member {
                flags,
                security: m.security.clone(),
                resources: m.resources.clone(),
                image: m.image.clone(),
                command: m.command.clone(),
            }
        };
        for m in &b.init {
            let mut m = sub(m);
            let mut c = pod::add_container(engine, store, &mut rec, &mut m, true)?;
            let code = lifecycle::wait(engine, &mut c)?;
            if code != 0 {
                bail!("init container {} exited with {code}", c.record.name);
            }
            crate::engine::remove::remove(engine, &mut c, crate::engine::remove::Caller::Command)?;
            rec.containers.retain(|n| n != &c.record.name);
            pod::save(engine, &rec)?;
        }
        for m in &b.members {
            let mut m = sub(m);
            pod::add_container(engine, store, &mut rec, &mut m, true)?;
        }
        Ok(())
    })();
    if let Err(e) = r {
        let _ = pod::remove_pod(engine, &b.spec.name, true);
        return Err(e);
    }
    Ok(rec)
}

/// Waits for a Job's containers; the first non-zero exit code, or 0.
fn wait_job(engine: &Engine, rec: &PodRecord) -> Result<i32> {
    let mut worst = 0;
    for n in &rec.containers {
        let mut c = engine.lookup(n)?;
        let code = lifecycle::wait(engine, &mut c)?;
        if worst == 0 {
            worst = code;
        }
    }
    Ok(worst)
}

/// `kube down`: removes the pods of `files` (those the files name now, and those made from
/// them before), and the volumes the play made.
pub fn down(engine: &Engine, files: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let plan = plan(files)?;
    let mut names: Vec<String> = plan.pods.iter().map(|p| p.name.clone()).collect();
    for r in pod::list(engine)? {
        if plan.files.contains(&r.file) && !names.contains(&r.name) {
            names.push(r.name);
        }
    }
    let mut out = Vec::new();
    for n in &names {
        if pod::load(engine, n)?.is_some() || !pod::containers(engine, n)?.is_empty() {
            pod::remove_pod(engine, n, true)?;
            out.push(format!("Pod {n} removed"));
        }
    }
    let vols = VolumeStore::open(&engine.data_root)?;
    let alive = |id: &str| engine.container_dir(id).exists();
    let tag = plan.files.join(",");
    for v in vols.list()? {
        if v.labels.get(MADE_BY_LABEL) == Some(&tag) {
            vols.remove(&v.name, true, &alive)?;
            out.push(format!("Volume {} removed", v.name));
        }
    }
    // The network the play made, once nothing else is on it.
    let nets = crate::network::store::Store::open(&engine.data_root)?;
    crate::network::cli::sweep(engine, &nets)?;
    for n in nets.list()? {
        if n.labels.get(MADE_BY_LABEL) == Some(&tag) && nets.leases(&n.name)?.is_empty() {
            crate::network::publish::remove_network(&nets, &n.name)?;
            out.push(format!("Network {} removed", n.name));
        }
    }
    Ok(out)
}
