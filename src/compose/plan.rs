//! The plan: names and labels as Docker Compose v2 makes them, the config hash, and a
//! service turned into the engine's create flags.

use super::load::{scalar_string, Loaded};
use super::model::{key_error, string_map, Model, Service};
use crate::engine::create::CreateFlags;
use crate::engine::resources::ResourceFlags;
use crate::engine::security::SecurityFlags;
use anyhow::Result;
use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

pub const PROJECT: &str = "com.docker.compose.project";
pub const SERVICE: &str = "com.docker.compose.service";
pub const NUMBER: &str = "com.docker.compose.container-number";
pub const HASH: &str = "com.docker.compose.config-hash";
pub const ONEOFF: &str = "com.docker.compose.oneoff";
pub const NETWORK: &str = "com.docker.compose.network";
pub const VOLUME: &str = "com.docker.compose.volume";

/// Compose's project name: lower case, `[a-z0-9_-]`, starting with a letter or digit.
pub fn normalize_project(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect::<String>()
        .trim_start_matches(['_', '-'])
        .to_string()
}

pub fn container_name(project: &str, s: &Service, n: u32) -> String {
    match s.raw.get("container_name") {
        Some(v) => scalar_string(v),
        None => format!("{project}-{}-{n}", s.name),
    }
}

/// The hash of the service's resolved configuration (without its replica count).
pub fn config_hash(s: &Service) -> String {
    let mut raw = s.raw.clone();
    raw.remove("scale");
    if let Some(Value::Mapping(d)) = raw.get_mut("deploy") {
        d.remove("replicas");
    }
    let json = serde_json::to_string(&raw).unwrap_or_default();
    hex(&Sha256::digest(json.as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What one container of a service is made with.
pub struct ContainerPlan {
    pub name: String,
    pub image: String,
    /// The service's command (the image's when empty).
    pub command: Vec<String>,
    /// An entrypoint list's elements after the first: the engine's entrypoint is one program,
    /// these go before the command.
    pub entry_rest: Vec<String>,
    pub flags: CreateFlags,
    pub security: SecurityFlags,
    pub resources: ResourceFlags,
    /// Networks beyond the first: (engine name, aliases, ipv4).
    pub more_networks: Vec<(String, Vec<String>, Option<String>)>,
}

fn strings(l: &Loaded, v: &Value, path: &[&str]) -> Result<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Sequence(s) => Ok(s.iter().map(scalar_string).collect()),
        Value::Null => Ok(vec![]),
        Value::Number(_) | Value::Bool(_) => Ok(vec![scalar_string(v)]),
        _ => Err(key_error(l, path, "must be a string or a list")),
    }
}

/// A command: a list as it is, a string split as a shell would (Compose's shlex split).
fn command_of(l: &Loaded, v: &Value, path: &[&str]) -> Result<Vec<String>> {
    match v {
        Value::String(s) => shell_split(s).ok_or_else(|| key_error(l, path, "unbalanced quotes")),
        _ => strings(l, v, path),
    }
}

pub fn shell_split(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => cur.push(chars.next()?),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn seconds(l: &Loaded, v: &Value, path: &[&str]) -> Result<i64> {
    let s = scalar_string(v);
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    crate::engine::logs::parse_duration(&s)
        .map(|d| d.as_secs() as i64)
        .ok_or_else(|| key_error(l, path, &format!("invalid duration {s:?}")))
}

/// The container `n` of service `s`.
pub fn container_plan(
    l: &Loaded,
    m: &Model,
    project: &str,
    s: &Service,
    n: u32,
    oneoff: bool,
) -> Result<ContainerPlan> {
    let name = &s.name;
    let p = |k: &'static str| -> Vec<String> { vec!["services".into(), name.clone(), k.into()] };
    let err = |k: &'static str, msg: &str| {
        let path = p(k);
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        key_error(l, &refs, msg)
    };
    let path_of = |k: &'static str| -> Vec<String> { p(k) };
    let mut f = CreateFlags {
        restart: "no".into(),
        pull: "missing".into(),
        log_driver: "json-file".into(),
        ..Default::default()
    };
    let mut sec = SecurityFlags::default();
    let mut res = ResourceFlags::default();
    let image = s.image.clone();
    let mut command = Vec::new();
    let mut more_networks = Vec::new();
    let mut entry_rest: Vec<String> = Vec::new();
    let cname = container_name(project, s, n);
    f.name = Some(cname.clone());
    let project_dir = &l.project_dir;
    let rel = |x: &str| -> String {
        let x = x
            .strip_prefix("~/")
            .map(|r| format!("{}/{r}", std::env::var("HOME").unwrap_or_default()))
            .unwrap_or_else(|| x.to_string());
        if Path::new(&x).is_absolute() {
            x
        } else {
            project_dir.join(&x).to_string_lossy().replace("/./", "/")
        }
    };
    let mut first_network_done = false;
    let mut labels = vec![
        format!("{PROJECT}={project}"),
        format!("{SERVICE}={name}"),
        format!("{NUMBER}={n}"),
        format!("{HASH}={}", config_hash(s)),
        format!("{ONEOFF}={}", if oneoff { "True" } else { "False" }),
        format!(
            "com.docker.compose.project.working_dir={}",
            project_dir.display()
        ),
        format!(
            "com.docker.compose.project.config_files={}",
            l.sources
                .iter()
                .map(|x| x.path.display().to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        format!("com.docker.compose.image={image}"),
        format!(
            "com.docker.compose.depends_on={}",
            s.depends_on
                .iter()
                .map(|(k, c)| format!("{k}:{c}:false"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    ];
    for (key, v) in &s.raw {
        let key = scalar_string(key);
        let k: &'static str = super::model::SERVICE_KEYS
            .iter()
            .find(|x| **x == key)
            .copied()
            .unwrap_or("x-");
        let pth = path_of(k);
        let pr: Vec<&str> = pth.iter().map(String::as_str).collect();
        match k {
            "image" | "depends_on" | "profiles" | "scale" | "x-" | "container_name" | "build" => {}
            "pull_policy" => {
                f.pull = match scalar_string(v).as_str() {
                    "always" => "always".into(),
                    "missing" | "if_not_present" => "missing".into(),
                    "never" => "never".into(),
                    other => {
                        return Err(err(
                            "pull_policy",
                            &format!(
                                "pull_policy {other:?} is not supported (always, missing, never)"
                            ),
                        ))
                    }
                }
            }
            "command" => command = command_of(l, v, &pr)?,
            "entrypoint" => {
                let e = command_of(l, v, &pr)?;
                f.entrypoint = Some(e.first().cloned().unwrap_or_default());
                entry_rest = e.into_iter().skip(1).collect();
            }
            "environment" => {
                for (ek, ev) in string_map(l, Some(v), &pr)? {
                    match v.get(&ek) {
                        Some(Value::Null) => {
                            if let Some(x) = l.vars.get(&ek) {
                                f.env.push(format!("{ek}={x}"));
                            }
                        }
                        _ => f.env.push(format!("{ek}={ev}")),
                    }
                }
            }
            "env_file" => {
                for e in strings(l, v, &pr)? {
                    f.env_file.push(rel(&e).into());
                }
            }
            "ports" => {
                let Value::Sequence(seq) = v else {
                    return Err(err("ports", "must be a list"));
                };
                for item in seq {
                    match item {
                        Value::Mapping(pm) => {
                            let target = pm
                                .get("target")
                                .map(scalar_string)
                                .ok_or_else(|| err("ports", "long syntax needs target"))?;
                            let mut spec = String::new();
                            if let Some(ip) = pm.get("host_ip") {
                                spec.push_str(&format!("{}:", scalar_string(ip)));
                            }
                            if let Some(pb) = pm.get("published") {
                                spec.push_str(&format!("{}:", scalar_string(pb)));
                            } else if !spec.is_empty() {
                                spec.push(':');
                            }
                            spec.push_str(&target);
                            if let Some(pr) = pm.get("protocol") {
                                spec.push_str(&format!("/{}", scalar_string(pr)));
                            }
                            for pk in pm.keys() {
                                let pk = scalar_string(pk);
                                if !matches!(
                                    pk.as_str(),
                                    "target"
                                        | "published"
                                        | "host_ip"
                                        | "protocol"
                                        | "mode"
                                        | "name"
                                        | "app_protocol"
                                ) {
                                    return Err(err(
                                        "ports",
                                        &format!("unsupported port key {pk:?}"),
                                    ));
                                }
                            }
                            f.publish.push(spec);
                        }
                        other => f.publish.push(scalar_string(other)),
                    }
                }
            }
            "expose" => f.expose = strings(l, v, &pr)?,
            "volumes" => {
                let Value::Sequence(seq) = v else {
                    return Err(err("volumes", "must be a list"));
                };
                for item in seq {
                    match item {
                        Value::String(sv) => {
                            let parts: Vec<&str> = sv.splitn(3, ':').collect();
                            if parts.len() == 1 {
                                f.mounts.volume.push(sv.clone());
                                continue;
                            }
                            let src = parts[0];
                            let src = if src.starts_with('.')
                                || src.starts_with('/')
                                || src.starts_with('~')
                            {
                                let abs = rel(src);
                                let _ = std::fs::create_dir_all(&abs);
                                abs
                            } else {
                                let vol = m.volumes.get(src).ok_or_else(|| {
                                    err(
                                        "volumes",
                                        &format!(
                                            "service {name:?} refers to undefined volume {src}"
                                        ),
                                    )
                                })?;
                                vol.name.clone()
                            };
                            let rest = parts[1..].join(":");
                            f.mounts.volume.push(format!("{src}:{rest}"));
                        }
                        Value::Mapping(vm) => {
                            let ty = vm
                                .get("type")
                                .map(scalar_string)
                                .unwrap_or_else(|| "volume".into());
                            let target = vm
                                .get("target")
                                .map(scalar_string)
                                .ok_or_else(|| err("volumes", "long syntax needs target"))?;
                            let ro = vm
                                .get("read_only")
                                .and_then(Value::as_bool)
                                .unwrap_or(false);
                            for vk in vm.keys() {
                                let vk = scalar_string(vk);
                                if !matches!(
                                    vk.as_str(),
                                    "type"
                                        | "source"
                                        | "target"
                                        | "read_only"
                                        | "tmpfs"
                                        | "bind"
                                        | "volume"
                                ) {
                                    return Err(err(
                                        "volumes",
                                        &format!("unsupported volume key {vk:?}"),
                                    ));
                                }
                            }
                            match ty.as_str() {
                                "tmpfs" => {
                                    let size = vm
                                        .get("tmpfs")
                                        .and_then(|t| t.get("size"))
                                        .map(scalar_string);
                                    f.mounts.tmpfs.push(match size {
                                        Some(sz) => format!("{target}:size={sz}"),
                                        None => target,
                                    });
                                }
                                "bind" => {
                                    let src = vm
                                        .get("source")
                                        .map(scalar_string)
                                        .ok_or_else(|| err("volumes", "bind needs source"))?;
                                    let abs = rel(&src);
                                    if vm
                                        .get("bind")
                                        .and_then(|b| b.get("create_host_path"))
                                        .and_then(Value::as_bool)
                                        != Some(false)
                                    {
                                        let _ = std::fs::create_dir_all(&abs);
                                    }
                                    f.mounts.volume.push(format!(
                                        "{abs}:{target}{}",
                                        if ro { ":ro" } else { "" }
                                    ));
                                }
                                "volume" => match vm.get("source").map(scalar_string) {
                                    None => f.mounts.volume.push(target),
                                    Some(src) => {
                                        let vol = m.volumes.get(&src).ok_or_else(|| err("volumes", &format!("service {name:?} refers to undefined volume {src}")))?;
                                        f.mounts.volume.push(format!(
                                            "{}:{target}{}",
                                            vol.name,
                                            if ro { ":ro" } else { "" }
                                        ));
                                    }
                                },
                                other => {
                                    return Err(err(
                                        "volumes",
                                        &format!("volume type {other:?} is not supported"),
                                    ))
                                }
                            }
                        }
                        _ => return Err(err("volumes", "entries are strings or mappings")),
                    }
                }
            }
            "tmpfs" => f.mounts.tmpfs.extend(strings(l, v, &pr)?),
            "networks" => {
                let entries: Vec<(String, Value)> = match v {
                    Value::Sequence(seq) => seq
                        .iter()
                        .map(|x| (scalar_string(x), Value::Null))
                        .collect(),
                    Value::Mapping(mm) => mm
                        .iter()
                        .map(|(a, b)| (scalar_string(a), b.clone()))
                        .collect(),
                    _ => return Err(err("networks", "must be a list or a mapping")),
                };
                for (nk, nv) in entries {
                    let net = m.networks.get(&nk).ok_or_else(|| {
                        err(
                            "networks",
                            &format!("service {name:?} refers to undefined network {nk}"),
                        )
                    })?;
                    let mut aliases = vec![name.clone()];
                    let mut ip = None;
                    if let Value::Mapping(nm) = &nv {
                        for (a, b) in nm {
                            match scalar_string(a).as_str() {
                                "aliases" => aliases.extend(strings(l, b, &pr)?),
                                "ipv4_address" => ip = Some(scalar_string(b)),
                                other => {
                                    return Err(err(
                                        "networks",
                                        &format!("unsupported service network key {other:?}"),
                                    ))
                                }
                            }
                        }
                    }
                    if !first_network_done {
                        f.network = Some(net.name.clone());
                        f.network_alias = aliases;
                        f.ip = ip;
                        first_network_done = true;
                    } else {
                        more_networks.push((net.name.clone(), aliases, ip));
                    }
                }
            }
            "network_mode" => {
                let nm = scalar_string(v);
                f.network = Some(if let Some(svc) = nm.strip_prefix("service:") {
                    let other = m
                        .services
                        .get(svc)
                        .ok_or_else(|| err("network_mode", &format!("undefined service {svc}")))?;
                    format!("container:{}", container_name(project, other, 1))
                } else {
                    nm
                });
                first_network_done = true;
            }
            "healthcheck" => {
                let hm = v
                    .as_mapping()
                    .ok_or_else(|| err("healthcheck", "must be a mapping"))?;
                for (a, b) in hm {
                    let a = scalar_string(a);
                    match a.as_str() {
                        "test" => match b {
                            Value::String(t) => f.health_cmd = Some(t.clone()),
                            Value::Sequence(t) => {
                                let t: Vec<String> = t.iter().map(scalar_string).collect();
                                match t.first().map(String::as_str) {
                                    Some("NONE") => f.no_healthcheck = true,
                                    Some("CMD-SHELL") => f.health_cmd = Some(t[1..].join(" ")),
                                    Some("CMD") => {
                                        f.health_cmd = Some(
                                            t[1..]
                                                .iter()
                                                .map(|x| shell_quote(x))
                                                .collect::<Vec<_>>()
                                                .join(" "),
                                        )
                                    }
                                    _ => {
                                        return Err(err(
                                            "healthcheck",
                                            "test must start with CMD, CMD-SHELL or NONE",
                                        ))
                                    }
                                }
                            }
                            _ => return Err(err("healthcheck", "test must be a string or a list")),
                        },
                        "interval" => f.health_interval = Some(scalar_string(b)),
                        "timeout" => f.health_timeout = Some(scalar_string(b)),
                        "start_period" => f.health_start_period = Some(scalar_string(b)),
                        "retries" => f.health_retries = b.as_i64(),
                        "disable" => f.no_healthcheck = b.as_bool().unwrap_or(false),
                        _ => {
                            return Err(err(
                                "healthcheck",
                                &format!("unsupported healthcheck key {a:?}"),
                            ))
                        }
                    }
                }
            }
            "restart" => f.restart = scalar_string(v),
            "deploy" => {
                if let Some(r) = v.get("resources") {
                    for (a, b) in r.as_mapping().into_iter().flatten() {
                        let a = scalar_string(a);
                        for (x, y) in b.as_mapping().into_iter().flatten() {
                            let x = scalar_string(x);
                            match (a.as_str(), x.as_str()) {
                                ("limits", "cpus") => res.cpus = Some(scalar_string(y)),
                                ("limits", "memory") => res.memory = Some(scalar_string(y)),
                                ("limits", "pids") => res.pids_limit = Some(scalar_string(y)),
                                ("reservations", "memory") => {
                                    res.memory_reservation = Some(scalar_string(y))
                                }
                                _ => {
                                    return Err(err(
                                        "deploy",
                                        &format!("resources.{a}.{x} is not supported"),
                                    ))
                                }
                            }
                        }
                    }
                }
                if let Some(rp) = v.get("restart_policy") {
                    let cond = rp
                        .get("condition")
                        .map(scalar_string)
                        .unwrap_or_else(|| "any".into());
                    f.restart = match cond.as_str() {
                        "none" => "no".into(),
                        "any" => "always".into(),
                        "on-failure" => match rp.get("max_attempts") {
                            Some(n) => format!("on-failure:{}", scalar_string(n)),
                            None => "on-failure".into(),
                        },
                        other => {
                            return Err(err(
                                "deploy",
                                &format!("restart_policy condition {other:?}"),
                            ))
                        }
                    };
                }
            }
            "links" => {
                for x in strings(l, v, &pr)? {
                    let (svc, alias) = x.split_once(':').unwrap_or((&x, &x));
                    let other = m
                        .services
                        .get(svc)
                        .ok_or_else(|| err("links", &format!("undefined service {svc}")))?;
                    f.link
                        .push(format!("{}:{alias}", container_name(project, other, 1)));
                }
            }
            "hostname" => f.hostname = Some(scalar_string(v)),
            "domainname" => f.domainname = Some(scalar_string(v)),
            "user" => f.user = Some(scalar_string(v)),
            "working_dir" => f.workdir = Some(scalar_string(v)),
            "labels" => {
                for (a, b) in string_map(l, Some(v), &pr)? {
                    labels.push(format!("{a}={b}"));
                }
            }
            "init" => f.init = v.as_bool().unwrap_or(false),
            "stop_signal" => f.stop_signal = Some(scalar_string(v)),
            "stop_grace_period" => f.stop_timeout = Some(seconds(l, v, &pr)?),
            "ulimits" => {
                for (a, b) in v
                    .as_mapping()
                    .ok_or_else(|| err("ulimits", "must be a mapping"))?
                {
                    let a = scalar_string(a);
                    match b {
                        Value::Mapping(_) => sec.ulimit.push(format!(
                            "{a}={}:{}",
                            b.get("soft").map(scalar_string).unwrap_or_default(),
                            b.get("hard").map(scalar_string).unwrap_or_default()
                        )),
                        _ => sec.ulimit.push(format!("{a}={}", scalar_string(b))),
                    }
                }
            }
            "cap_add" => sec.cap_add = strings(l, v, &pr)?,
            "cap_drop" => sec.cap_drop = strings(l, v, &pr)?,
            "privileged" => sec.privileged = v.as_bool().unwrap_or(false),
            "security_opt" => sec.security_opt = strings(l, v, &pr)?,
            "devices" => sec.device = strings(l, v, &pr)?,
            "sysctls" => {
                for (a, b) in string_map(l, Some(v), &pr)? {
                    sec.sysctl.push(format!("{a}={b}"));
                }
            }
            "read_only" => f.read_only = v.as_bool().unwrap_or(false),
            "extra_hosts" => {
                for (a, b) in match v {
                    Value::Mapping(_) => {
                        string_map(l, Some(v), &pr)?.into_iter().collect::<Vec<_>>()
                    }
                    _ => strings(l, v, &pr)?
                        .into_iter()
                        .map(|x| {
                            let (h, ip) = x.split_once(['=', ':']).unwrap_or((&x, ""));
                            (h.to_string(), ip.to_string())
                        })
                        .collect(),
                } {
                    f.add_host.push(format!("{a}:{b}"));
                }
            }
            "dns" => f.dns = strings(l, v, &pr)?,
            "dns_search" => f.dns_search = strings(l, v, &pr)?,
            "dns_opt" => f.dns_option = strings(l, v, &pr)?,
            "logging" => {
                if let Some(d) = v.get("driver") {
                    f.log_driver = scalar_string(d);
                }
                for (a, b) in string_map(l, v.get("options"), &pr)? {
                    f.log_opt.push(format!("{a}={b}"));
                }
            }
            "configs" | "secrets" => {
                let objs = if k == "configs" {
                    &m.configs
                } else {
                    &m.secrets
                };
                for item in v.as_sequence().ok_or_else(|| err(k, "must be a list"))? {
                    let (src, target) = match item {
                        Value::Mapping(im) => (
                            im.get("source").map(scalar_string).unwrap_or_default(),
                            im.get("target").map(scalar_string),
                        ),
                        other => (scalar_string(other), None),
                    };
                    let o = objs.get(&src).ok_or_else(|| {
                        err(
                            k,
                            &format!("service {name:?} refers to undefined {k} {src}"),
                        )
                    })?;
                    let target = match target {
                        Some(t) if t.starts_with('/') => t,
                        Some(t) if k == "secrets" => format!("/run/secrets/{t}"),
                        Some(t) => format!("/{t}"),
                        None if k == "secrets" => format!("/run/secrets/{src}"),
                        None => format!("/{src}"),
                    };
                    f.mounts
                        .volume
                        .push(format!("{}:{target}:ro", o.file.display()));
                }
            }
            "stdin_open" => f.interactive = v.as_bool().unwrap_or(false),
            "tty" => f.tty = v.as_bool().unwrap_or(false),
            "shm_size" => f.shm_size = Some(scalar_string(v)),
            "mem_limit" => res.memory = Some(scalar_string(v)),
            "mem_reservation" => res.memory_reservation = Some(scalar_string(v)),
            "cpus" => res.cpus = Some(scalar_string(v)),
            "pids_limit" => res.pids_limit = Some(scalar_string(v)),
            "pid" => f.pid = Some(scalar_string(v)),
            "ipc" => f.ipc = Some(scalar_string(v)),
            "group_add" => f.group_add = strings(l, v, &pr)?,
            _ => return Err(err("x-", &format!("unhandled key {key}"))),
        }
    }
    if !first_network_done {
        let net = &m.networks["default"];
        f.network = Some(net.name.clone());
        f.network_alias = vec![name.clone()];
    }
    if s.replicas > 1 && s.raw.contains_key("container_name") {
        return Err(err(
            "container_name",
            "a service with container_name cannot have more than one replica",
        ));
    }
    f.label = labels;
    Ok(ContainerPlan {
        name: cname,
        image,
        command,
        entry_rest,
        flags: f,
        security: sec,
        resources: res,
        more_networks,
    })
}
