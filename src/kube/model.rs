//! The Kubernetes objects `kube play` takes, as typed serde structs. Every struct refuses a
//! field it does not know (`deny_unknown_fields`), so an unsupported field is an error that
//! names it, with the file, the document and the line, never a silent skip.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Written by `kube generate` and podman's; ignored.
    #[serde(default)]
    pub creation_timestamp: Option<Value>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pod {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    pub spec: PodSpec,
    /// Written by generators (`status: {}`); ignored.
    #[serde(default)]
    pub status: Option<Value>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSpec {
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Vec<Container>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub restart_policy: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(default)]
    pub security_context: Option<PodSecurityContext>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub env_from: Vec<EnvFrom>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub security_context: Option<SecurityContext>,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default)]
    pub image_pull_policy: Option<String>,
    #[serde(default)]
    pub liveness_probe: Option<Probe>,
    #[serde(default)]
    pub readiness_probe: Option<Probe>,
    #[serde(default)]
    pub tty: Option<bool>,
    #[serde(default)]
    pub stdin: Option<bool>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub value_from: Option<EnvSource>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvSource {
    #[serde(default)]
    pub config_map_key_ref: Option<KeyRef>,
    #[serde(default)]
    pub secret_key_ref: Option<KeyRef>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyRef {
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub optional: Option<bool>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvFrom {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub config_map_ref: Option<NameRef>,
    #[serde(default)]
    pub secret_ref: Option<NameRef>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NameRef {
    pub name: String,
    #[serde(default)]
    pub optional: Option<bool>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerPort {
    pub container_port: u16,
    #[serde(default)]
    pub host_port: Option<u16>,
    #[serde(default, rename = "hostIP")]
    pub host_ip: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    #[serde(default)]
    pub limits: BTreeMap<String, Value>,
    #[serde(default)]
    pub requests: BTreeMap<String, Value>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    pub privileged: Option<bool>,
    pub capabilities: Option<Capabilities>,
    pub read_only_root_filesystem: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default)]
    pub read_only: Option<bool>,
    #[serde(default)]
    pub sub_path: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    #[serde(default)]
    pub empty_dir: Option<EmptyDir>,
    #[serde(default)]
    pub host_path: Option<HostPath>,
    #[serde(default)]
    pub config_map: Option<ConfigMapVolume>,
    #[serde(default)]
    pub secret: Option<SecretVolume>,
    #[serde(default)]
    pub persistent_volume_claim: Option<ClaimRef>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmptyDir {
    #[serde(default)]
    pub medium: Option<String>,
    #[serde(default)]
    pub size_limit: Option<Value>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostPath {
    pub path: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigMapVolume {
    pub name: String,
    #[serde(default)]
    pub items: Vec<KeyToPath>,
    #[serde(default)]
    pub optional: Option<bool>,
    #[serde(default)]
    pub default_mode: Option<u32>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretVolume {
    pub secret_name: String,
    #[serde(default)]
    pub items: Vec<KeyToPath>,
    #[serde(default)]
    pub optional: Option<bool>,
    #[serde(default)]
    pub default_mode: Option<u32>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimRef {
    pub claim_name: String,
    #[serde(default)]
    pub read_only: Option<bool>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Probe {
    #[serde(default)]
    pub exec: Option<ExecAction>,
    #[serde(default)]
    pub http_get: Option<HttpGet>,
    #[serde(default)]
    pub tcp_socket: Option<TcpSocket>,
    #[serde(default)]
    pub initial_delay_seconds: Option<i64>,
    #[serde(default)]
    pub period_seconds: Option<i64>,
    #[serde(default)]
    pub timeout_seconds: Option<i64>,
    #[serde(default)]
    pub failure_threshold: Option<i64>,
    #[serde(default)]
    pub success_threshold: Option<i64>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ExecAction {
    pub command: Vec<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct HttpGet {
    #[serde(default)]
    pub path: Option<String>,
    pub port: Value,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub scheme: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TcpSocket {
    pub port: Value,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Template {
    #[serde(default)]
    pub metadata: Meta,
    pub spec: PodSpec,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadSpec {
    #[serde(default)]
    pub replicas: Option<u32>,
    #[serde(default)]
    pub selector: Option<Value>,
    pub template: Template,
    /// Deployment's rollout strategy: one host, nothing to roll; accepted.
    #[serde(default)]
    pub strategy: Option<Value>,
    /// Job's.
    #[serde(default)]
    pub backoff_limit: Option<u32>,
    #[serde(default)]
    pub completions: Option<u32>,
    #[serde(default)]
    pub parallelism: Option<u32>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Workload {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    pub spec: WorkloadSpec,
    #[serde(default)]
    pub status: Option<Value>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    pub spec: ServiceSpec,
    #[serde(default)]
    pub status: Option<Value>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServicePort {
    #[serde(default)]
    pub name: Option<String>,
    pub port: u16,
    #[serde(default)]
    pub target_port: Option<Value>,
    #[serde(default)]
    pub node_port: Option<u16>,
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigMap {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    #[serde(default)]
    pub immutable: Option<bool>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Secret {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    #[serde(default)]
    pub string_data: BTreeMap<String, String>,
    #[serde(default, rename = "type")]
    pub kind_of: Option<String>,
    #[serde(default)]
    pub immutable: Option<bool>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Claim {
    pub api_version: String,
    pub kind: String,
    pub metadata: Meta,
    /// accessModes, resources, storageClassName: a named volume has none of them; accepted.
    #[serde(default)]
    pub spec: Option<Value>,
    #[serde(default)]
    pub status: Option<Value>,
}

/// One document of a file.
#[derive(Debug, Clone)]
pub enum Object {
    Pod(Box<Pod>),
    Workload(Box<Workload>),
    Service(Service),
    ConfigMap(ConfigMap),
    Secret(Secret),
    Claim(Claim),
}

/// Where a document came from, for errors.
#[derive(Debug, Clone)]
pub struct Doc {
    pub file: String,
    pub index: usize,
    pub object: Object,
}

/// Reads every document of `path`. Errors name the file, the document (from 0, as podman
/// counts) and, from the YAML parser, the line and column (in the file) and the field.
pub fn read_file(path: &Path) -> Result<Vec<Doc>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&path.display().to_string(), &text)
}

pub fn parse(file: &str, text: &str) -> Result<Vec<Doc>> {
    let mut out = Vec::new();
    let mut index = 0;
    for (first_line, doc) in split_documents(text) {
        let at = |e: serde_yaml_ng::Error| -> anyhow::Error {
            let msg = e.to_string();
            match e.location() {
                Some(l) => anyhow::anyhow!(
                    "{file}: document {index}: line {}, column {}: {}",
                    l.line() + first_line,
                    l.column(),
                    strip_location(&msg)
                ),
                None => anyhow::anyhow!("{file}: document {index}: {msg}"),
            }
        };
        let value: Value = serde_yaml_ng::from_str(&doc).map_err(at)?;
        if value.is_null() {
            continue; // an empty document (a leading `---`)
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .with_context(|| format!("{file}: document {index}: no `kind`"))?
            .to_string();
        let object = match kind.as_str() {
            "Pod" => Object::Pod(Box::new(serde_yaml_ng::from_str(&doc).map_err(at)?)),
            "Deployment" | "ReplicaSet" | "DaemonSet" | "Job" => {
                Object::Workload(Box::new(serde_yaml_ng::from_str(&doc).map_err(at)?))
            }
            "Service" => Object::Service(serde_yaml_ng::from_str(&doc).map_err(at)?),
            "ConfigMap" => Object::ConfigMap(serde_yaml_ng::from_str(&doc).map_err(at)?),
            "Secret" => Object::Secret(serde_yaml_ng::from_str(&doc).map_err(at)?),
            "PersistentVolumeClaim" => Object::Claim(serde_yaml_ng::from_str(&doc).map_err(at)?),
            k => bail!(
                "{file}: document {index}: unsupported kind {k:?} (berth kube plays Pod, \
                 Deployment, ReplicaSet, DaemonSet, Job, Service, ConfigMap, Secret, \
                 PersistentVolumeClaim)"
            ),
        };
        out.push(Doc {
            file: file.to_string(),
            index,
            object,
        });
        index += 1;
    }
    Ok(out)
}

/// serde_yaml's message ends with " at line L column C" counted in the document; the file's
/// line is given in front instead.
fn strip_location(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    }
}

/// The documents of a multi-document stream with the 0-based file line each starts at.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    for (n, line) in text.lines().enumerate() {
        if line == "---" || line.starts_with("--- ") || line == "..." {
            if !cur.trim().is_empty() {
                docs.push((start, std::mem::take(&mut cur)));
            }
            cur.clear();
            start = n + 1;
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        docs.push((start, cur));
    }
    docs
}

impl Meta {
    /// The name, which every object needs.
    pub fn require_name(&self, d: &Doc, kind: &str) -> Result<&str> {
        if self.name.is_empty() {
            bail!(
                "{}: document {}: {kind} without metadata.name",
                d.file,
                d.index
            );
        }
        // One host, one namespace: another is refused rather than merged into it.
        if let Some(ns) = self.namespace.as_deref().filter(|n| *n != "default") {
            bail!(
                "{}: document {} ({kind} {}): field metadata.namespace: {ns:?} is not supported \
                 (only \"default\")",
                d.file,
                d.index,
                self.name
            );
        }
        Ok(&self.name)
    }
}

/// A YAML scalar (a number or a string) as text: resource quantities, ports.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
