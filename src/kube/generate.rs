//! `kube generate CTR|POD`: the Pod YAML of a running pod or container, which `kube play`
//! takes back (podman's output has the same shape).

use super::pod;
use crate::engine::record::{Container, Engine};
use anyhow::Result;
use serde_json::{json, Map, Value};

/// The containers' fields: name, image, command/args (the entrypoint and command as
/// recorded), env (what differs from the image's), ports, securityContext, workingDir.
fn container(engine: &Engine, c: &Container, pod_name: &str, ports: &[String]) -> Value {
    let r = &c.record;
    let mut m = Map::new();
    let name = r
        .name
        .strip_prefix(&format!("{pod_name}-"))
        .unwrap_or(&r.name)
        .to_string();
    m.insert("name".into(), json!(name));
    m.insert("image".into(), json!(r.config.image));
    if !r.config.entrypoint.is_empty() {
        m.insert("command".into(), json!(r.config.entrypoint));
    }
    if !r.config.cmd.is_empty() {
        m.insert("args".into(), json!(r.config.cmd));
    }
    let image_env = image_env(engine, c);
    let env: Vec<Value> = r
        .config
        .env
        .iter()
        .filter(|e| !image_env.contains(e))
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    if !env.is_empty() {
        m.insert("env".into(), Value::Array(env));
    }
    if !r.config.working_dir.is_empty() && r.config.working_dir != "/" {
        m.insert("workingDir".into(), json!(r.config.working_dir));
    }
    let ports: Vec<Value> = ports
        .iter()
        .filter_map(|p| {
            let (spec, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let parts: Vec<&str> = spec.split(':').collect();
            let (host, ctr) = match parts.as_slice() {
                [c] => (None, *c),
                [h, c] => (Some(*h), *c),
                [_, h, c] => (Some(*h), *c),
                _ => return None,
            };
            let mut o = Map::new();
            o.insert("containerPort".into(), json!(ctr.parse::<u16>().ok()?));
            if let Some(h) = host.and_then(|h| h.parse::<u16>().ok()) {
                o.insert("hostPort".into(), json!(h));
            }
            if proto != "tcp" {
                o.insert("protocol".into(), json!(proto.to_ascii_uppercase()));
            }
            Some(Value::Object(o))
        })
        .collect();
    if !ports.is_empty() {
        m.insert("ports".into(), Value::Array(ports));
    }
    let mut sc = Map::new();
    if let Some(u) = r
        .config
        .user
        .split(':')
        .next()
        .and_then(|u| u.parse::<u32>().ok())
    {
        sc.insert("runAsUser".into(), json!(u));
    }
    if let Some(sec) = r.options.get("security") {
        if sec.get("privileged").and_then(Value::as_bool) == Some(true) {
            sc.insert("privileged".into(), json!(true));
        }
        let caps = |k: &str| {
            sec.get(k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let (add, drop) = (caps("cap_add"), caps("cap_drop"));
        if !add.is_empty() || !drop.is_empty() {
            let mut c = Map::new();
            if !add.is_empty() {
                c.insert("add".into(), Value::Array(add));
            }
            if !drop.is_empty() {
                c.insert("drop".into(), Value::Array(drop));
            }
            sc.insert("capabilities".into(), Value::Object(c));
        }
    }
    if !sc.is_empty() {
        m.insert("securityContext".into(), Value::Object(sc));
    }
    Value::Object(m)
}

fn image_env(engine: &Engine, c: &Container) -> Vec<String> {
    let Ok(store) = crate::image::store::Store::open(&engine.data_root) else {
        return Vec::new();
    };
    let env = || -> Option<Vec<String>> {
        let manifest: crate::image::digest::Digest = c.record.manifest.parse().ok()?;
        let m: Value = serde_json::from_slice(&store.read_manifest_bytes(&manifest).ok()?).ok()?;
        let config: crate::image::digest::Digest = m["config"]["digest"].as_str()?.parse().ok()?;
        let cfg: Value = store.read_json(&config).ok()?;
        Some(
            cfg["config"]["Env"]
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
        )
    };
    env().unwrap_or_default()
}

fn restart_policy(c: &Container) -> &'static str {
    match c.record.host_config.restart_policy.name.as_str() {
        "always" | "unless-stopped" => "Always",
        "on-failure" => "OnFailure",
        _ => "Never",
    }
}

/// The YAML for pod or container `arg`.
pub fn generate(engine: &Engine, arg: &str) -> Result<String> {
    let (name, labels, members, ports) = match pod::load(engine, arg)? {
        Some(p) => {
            let cs: Vec<Container> = pod::containers(engine, &p.name)?
                .into_iter()
                .filter(|c| c.record.name != p.infra)
                .collect();
            (p.name.clone(), p.labels.clone(), cs, p.ports.clone())
        }
        None => {
            let c = engine.lookup(arg)?;
            let ports = c
                .record
                .options
                .get("create")
                .and_then(|f| f.get("publish"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            (
                format!("{}-pod", c.record.name),
                Default::default(),
                vec![c],
                ports,
            )
        }
    };
    let mut containers = Vec::new();
    for (i, c) in members.iter().enumerate() {
        // The pod's ports belong to its first container in the YAML.
        let p: &[String] = if i == 0 { &ports } else { &[] };
        containers.push(container(engine, c, &name, p));
    }
    let mut meta = Map::new();
    meta.insert("name".into(), json!(name));
    if !labels.is_empty() {
        meta.insert("labels".into(), json!(labels));
    }
    let restart = members.first().map(restart_policy).unwrap_or("Always");
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "containers": containers,
            "restartPolicy": restart,
        },
    });
    Ok(format!(
        "# Generated by berth {}\n{}",
        env!("CARGO_PKG_VERSION"),
        serde_yaml_ng::to_string(&doc)?
    ))
}
