//! The compose model: the merged file read into services, networks, volumes, configs and
//! secrets. Every key is either understood or refused with its file, line and name.

use super::load::{scalar_string, Loaded};
use anyhow::{anyhow, bail, Result};
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The service keys berth applies.
pub const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "networks",
    "network_mode",
    "depends_on",
    "healthcheck",
    "restart",
    "deploy",
    "links",
    "container_name",
    "hostname",
    "domainname",
    "user",
    "working_dir",
    "labels",
    "init",
    "stop_signal",
    "stop_grace_period",
    "tmpfs",
    "ulimits",
    "cap_add",
    "cap_drop",
    "privileged",
    "read_only",
    "extra_hosts",
    "dns",
    "dns_search",
    "dns_opt",
    "logging",
    "profiles",
    "scale",
    "configs",
    "secrets",
    "stdin_open",
    "tty",
    "shm_size",
    "mem_limit",
    "mem_reservation",
    "cpus",
    "pids_limit",
    "security_opt",
    "sysctls",
    "pid",
    "ipc",
    "group_add",
    "pull_policy",
    "devices",
    "build",
];
const TOP_KEYS: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "configs", "secrets",
];

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// The resolved keys, as merged and interpolated.
    pub raw: Mapping,
    pub depends_on: BTreeMap<String, String>,
    pub profiles: Vec<String>,
    pub replicas: u32,
    /// `image:`, else the name a build gives it.
    pub image: String,
    pub build: Option<Build>,
}

/// `build:` (a context, or context, dockerfile, args, target).
#[derive(Debug, Clone)]
pub struct Build {
    pub context: PathBuf,
    pub dockerfile: Option<String>,
    pub args: Vec<String>,
    pub target: Option<String>,
    pub labels: Vec<String>,
}

impl Build {
    fn read(l: &Loaded, service: &str, v: &Value) -> Result<Build> {
        let p = ["services", service, "build"];
        let mut b = Build {
            context: l.project_dir.clone(),
            dockerfile: None,
            args: vec![],
            target: None,
            labels: vec![],
        };
        match v {
            Value::String(c) => b.context = l.project_dir.join(c),
            Value::Mapping(m) => {
                for (k, x) in m {
                    let k = scalar_string(k);
                    match k.as_str() {
                        "context" => b.context = l.project_dir.join(scalar_string(x)),
                        "dockerfile" => b.dockerfile = Some(scalar_string(x)),
                        "target" => b.target = Some(scalar_string(x)),
                        "args" => {
                            for (a, y) in string_map(l, Some(x), &p)? {
                                b.args.push(if x.get(&a).is_some_and(Value::is_null) {
                                    a
                                } else {
                                    format!("{a}={y}")
                                });
                            }
                        }
                        "labels" => {
                            for (a, y) in string_map(l, Some(x), &p)? {
                                b.labels.push(format!("{a}={y}"));
                            }
                        }
                        _ => {
                            return Err(key_error(
                                l,
                                &["services", service, "build", &k],
                                "unsupported build key (context, dockerfile, args, target, labels)",
                            ))
                        }
                    }
                }
            }
            _ => return Err(key_error(l, &p, "must be a string or a mapping")),
        }
        Ok(b)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Network {
    pub key: String,
    /// The name on the engine (`PROJECT_KEY`, or `name:`, or the external name).
    pub name: String,
    pub external: bool,
    pub driver: Option<String>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub subnet: Option<String>,
    pub internal: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Volume {
    pub key: String,
    pub name: String,
    pub external: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// A config or secret: a file bind-mounted read-only.
#[derive(Debug, Clone)]
pub struct FileObject {
    pub key: String,
    pub file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub name: Option<String>,
    pub services: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, Network>,
    pub volumes: BTreeMap<String, Volume>,
    pub configs: BTreeMap<String, FileObject>,
    pub secrets: BTreeMap<String, FileObject>,
}

/// An error naming where the key is.
pub fn key_error(l: &Loaded, path: &[&str], msg: &str) -> anyhow::Error {
    anyhow!("{}: {}: {msg}", l.locate(path), path.join("."))
}

fn map_of<'a>(l: &Loaded, v: &'a Value, path: &[&str]) -> Result<&'a Mapping> {
    v.as_mapping()
        .ok_or_else(|| key_error(l, path, "must be a mapping"))
}

pub fn string_map(
    l: &Loaded,
    v: Option<&Value>,
    path: &[&str],
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                out.insert(scalar_string(k), scalar_string(v));
            }
        }
        Some(Value::Sequence(s)) => {
            for i in s {
                let i = scalar_string(i);
                let (k, v) = i.split_once('=').unwrap_or((&i, ""));
                out.insert(k.to_string(), v.to_string());
            }
        }
        Some(_) => return Err(key_error(l, path, "must be a mapping or a list")),
    }
    Ok(out)
}

impl Model {
    pub fn read(l: &Loaded, project: &str) -> Result<Model> {
        let doc = &l.doc;
        for k in doc.keys() {
            let k = scalar_string(k);
            if !TOP_KEYS.contains(&k.as_str()) && !k.starts_with("x-") {
                return Err(key_error(l, &[&k], "unsupported top-level key"));
            }
        }
        let mut m = Model {
            name: doc.get("name").map(scalar_string),
            services: BTreeMap::new(),
            networks: BTreeMap::new(),
            volumes: BTreeMap::new(),
            configs: BTreeMap::new(),
            secrets: BTreeMap::new(),
        };
        if let Some(nets) = doc.get("networks").filter(|v| !v.is_null()) {
            for (k, v) in map_of(l, nets, &["networks"])? {
                let key = scalar_string(k);
                let p = ["networks", key.as_str()];
                let empty = Mapping::new();
                let v = if v.is_null() {
                    &empty
                } else {
                    map_of(l, v, &p)?
                };
                let mut n = Network {
                    key: key.clone(),
                    name: format!("{project}_{key}"),
                    ..Default::default()
                };
                for (a, b) in v {
                    let a = scalar_string(a);
                    match a.as_str() {
                        "external" => n.external = b.as_bool().unwrap_or(false) || b.is_mapping(),
                        "name" => n.name = scalar_string(b),
                        "driver" => {
                            let d = scalar_string(b);
                            if d != "bridge" {
                                return Err(key_error(
                                    l,
                                    &["networks", &key, "driver"],
                                    &format!("driver {d:?} is not supported (bridge only)"),
                                ));
                            }
                            n.driver = Some(d)
                        }
                        "driver_opts" => {
                            n.options = string_map(l, Some(b), &["networks", &key, "driver_opts"])?
                        }
                        "labels" => {
                            n.labels = string_map(l, Some(b), &["networks", &key, "labels"])?
                        }
                        "internal" => n.internal = b.as_bool().unwrap_or(false),
                        "attachable" | "enable_ipv6"
                            if !b.as_bool().unwrap_or(false) || a == "attachable" => {}
                        "ipam" => {
                            let cfgs = b.get("config").and_then(Value::as_sequence);
                            if let Some(first) = cfgs.and_then(|c| c.first()) {
                                n.subnet = first.get("subnet").map(scalar_string);
                            }
                        }
                        _ => {
                            return Err(key_error(
                                l,
                                &["networks", &key, &a],
                                "unsupported network key",
                            ))
                        }
                    }
                }
                if n.external && !v.contains_key("name") {
                    n.name = key.clone();
                }
                m.networks.insert(key, n);
            }
        }
        m.networks
            .entry("default".into())
            .or_insert_with(|| Network {
                key: "default".into(),
                name: format!("{project}_default"),
                ..Default::default()
            });
        if let Some(vols) = doc.get("volumes").filter(|v| !v.is_null()) {
            for (k, v) in map_of(l, vols, &["volumes"])? {
                let key = scalar_string(k);
                let empty = Mapping::new();
                let v = if v.is_null() {
                    &empty
                } else {
                    map_of(l, v, &["volumes", &key])?
                };
                let mut vol = Volume {
                    key: key.clone(),
                    name: format!("{project}_{key}"),
                    ..Default::default()
                };
                for (a, b) in v {
                    let a = scalar_string(a);
                    match a.as_str() {
                        "external" => vol.external = b.as_bool().unwrap_or(false) || b.is_mapping(),
                        "name" => vol.name = scalar_string(b),
                        "driver" if scalar_string(b) == "local" => {}
                        "driver_opts" => {
                            vol.options = string_map(l, Some(b), &["volumes", &key, "driver_opts"])?
                        }
                        "labels" => {
                            vol.labels = string_map(l, Some(b), &["volumes", &key, "labels"])?
                        }
                        _ => {
                            return Err(key_error(
                                l,
                                &["volumes", &key, &a],
                                "unsupported volume key (driver: local only)",
                            ))
                        }
                    }
                }
                if vol.external && !v.contains_key("name") {
                    vol.name = key.clone();
                }
                m.volumes.insert(key, vol);
            }
        }
        for (top, dest) in [("configs", &mut m.configs), ("secrets", &mut m.secrets)] {
            let Some(objs) = doc.get(top).filter(|v| !v.is_null()) else {
                continue;
            };
            for (k, v) in map_of(l, objs, &[top])? {
                let key = scalar_string(k);
                let v = map_of(l, v, &[top, &key])?;
                let mut file = None;
                for (a, b) in v {
                    let a = scalar_string(a);
                    match a.as_str() {
                        "file" => file = Some(l.project_dir.join(scalar_string(b))),
                        "name" => {}
                        _ => {
                            return Err(key_error(
                                l,
                                &[top, &key, &a],
                                &format!("unsupported {top} key (file: only)"),
                            ))
                        }
                    }
                }
                let file = file.ok_or_else(|| key_error(l, &[top, &key], "needs file:"))?;
                dest.insert(key.clone(), FileObject { key, file });
            }
        }
        let services = doc
            .get("services")
            .ok_or_else(|| anyhow!("{}: no services", l.locate(&[])))?;
        for (k, v) in map_of(l, services, &["services"])? {
            let name = scalar_string(k);
            let p = ["services", name.as_str()];
            let raw = map_of(l, v, &p)?.clone();
            for key in raw.keys() {
                let key = scalar_string(key);
                if !SERVICE_KEYS.contains(&key.as_str()) && !key.starts_with("x-") {
                    return Err(key_error(
                        l,
                        &["services", &name, &key],
                        "unsupported service key",
                    ));
                }
            }
            let build = match raw.get("build") {
                None => None,
                Some(b) => Some(Build::read(l, &name, b)?),
            };
            if !raw.contains_key("image") && build.is_none() {
                return Err(key_error(l, &p, "has neither image nor build"));
            }
            // Compose v2's name for a built image without `image:`.
            let image = raw
                .get("image")
                .map(scalar_string)
                .unwrap_or_else(|| format!("{project}-{name}"));
            let mut depends_on = BTreeMap::new();
            if let Some(d) = raw.get("depends_on") {
                for (dk, dv) in map_of(l, d, &["services", &name, "depends_on"])? {
                    let dep = scalar_string(dk);
                    for key in dv.as_mapping().into_iter().flat_map(|m| m.iter()) {
                        let (k, v) = (scalar_string(key.0), key.1);
                        match k.as_str() {
                            "condition" => {}
                            "required" if v.as_bool() == Some(true) => {}
                            _ => {
                                return Err(key_error(
                                    l,
                                    &["services", &name, "depends_on", &dep, &k],
                                    "unsupported depends_on key (condition, required: true)",
                                ))
                            }
                        }
                    }
                    let cond = dv
                        .get("condition")
                        .map(scalar_string)
                        .unwrap_or_else(|| "service_started".into());
                    if !matches!(
                        cond.as_str(),
                        "service_started" | "service_healthy" | "service_completed_successfully"
                    ) {
                        return Err(key_error(
                            l,
                            &["services", &name, "depends_on", &dep, "condition"],
                            &format!("unknown condition {cond:?}"),
                        ));
                    }
                    depends_on.insert(dep, cond);
                }
            }
            let profiles = match raw.get("profiles") {
                Some(Value::Sequence(s)) => s.iter().map(scalar_string).collect(),
                _ => vec![],
            };
            let mut replicas = 1u32;
            if let Some(s) = raw.get("scale") {
                replicas = s.as_u64().ok_or_else(|| {
                    key_error(l, &["services", &name, "scale"], "must be a number")
                })? as u32;
            }
            if let Some(r) = raw.get("deploy").and_then(|d| d.get("replicas")) {
                replicas = r.as_u64().ok_or_else(|| {
                    key_error(
                        l,
                        &["services", &name, "deploy", "replicas"],
                        "must be a number",
                    )
                })? as u32;
            }
            if let Some(d) = raw.get("deploy") {
                for dk in map_of(l, d, &["services", &name, "deploy"])?.keys() {
                    let dk = scalar_string(dk);
                    if !matches!(dk.as_str(), "replicas" | "resources" | "restart_policy") {
                        return Err(key_error(
                            l,
                            &["services", &name, "deploy", &dk],
                            "unsupported deploy key",
                        ));
                    }
                }
            }
            m.services.insert(
                name.clone(),
                Service {
                    name,
                    raw,
                    depends_on,
                    profiles,
                    replicas,
                    image,
                    build,
                },
            );
        }
        m.check(l)?;
        Ok(m)
    }

    /// Dependencies that exist, no cycle, networks and volumes declared.
    fn check(&self, l: &Loaded) -> Result<()> {
        for s in self.services.values() {
            for d in s.depends_on.keys() {
                if !self.services.contains_key(d) {
                    return Err(key_error(
                        l,
                        &["services", &s.name, "depends_on"],
                        &format!("service {:?} depends on undefined service {d:?}", s.name),
                    ));
                }
            }
        }
        self.order(&self.services.keys().cloned().collect::<Vec<_>>())?;
        Ok(())
    }

    /// `names` and what they depend on, dependencies first; a cycle is an error.
    pub fn order(&self, names: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut state: BTreeMap<String, u8> = BTreeMap::new();
        fn visit(
            m: &Model,
            n: &str,
            state: &mut BTreeMap<String, u8>,
            out: &mut Vec<String>,
            stack: &mut Vec<String>,
        ) -> Result<()> {
            match state.get(n) {
                Some(2) => return Ok(()),
                Some(1) => {
                    stack.push(n.to_string());
                    let from = stack.iter().position(|x| x == n).unwrap_or(0);
                    bail!("dependency cycle detected: {}", stack[from..].join(" -> "));
                }
                _ => {}
            }
            let Some(s) = m.services.get(n) else {
                bail!("no such service: {n}");
            };
            state.insert(n.to_string(), 1);
            stack.push(n.to_string());
            for d in s.depends_on.keys() {
                visit(m, d, state, out, stack)?;
            }
            stack.pop();
            state.insert(n.to_string(), 2);
            out.push(n.to_string());
            Ok(())
        }
        for n in names {
            visit(self, n, &mut state, &mut out, &mut Vec::new())?;
        }
        Ok(out)
    }
}
