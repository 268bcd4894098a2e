//! The config.json that `berth spec` writes: the same example container as `runc spec` (a
//! read-only `rootfs`, `sh` on a terminal, the three default capabilities, the standard /proc,
//! /dev and /sys mounts, masked and read-only paths), and its `--rootless` variant.
//!
//! Write it with [`spec_to_pretty_json`]: oci-spec keeps capabilities in hash sets, so plain
//! `serde_json::to_string_pretty(&spec)` would list them in a different order on every run.

use std::path::{Path, PathBuf};

use anyhow::Result;
use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Mount, Spec};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::features::OCI_VERSION_MAX;

/// The example spec, as `runc spec` writes it but with berth's hostname and the newest
/// runtime-spec version berth accepts.
pub fn default_spec() -> Spec {
    let default_capabilities = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let template = json!({
        "ociVersion": OCI_VERSION_MAX,
        "process": {
            "terminal": true,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": default_capabilities,
                "effective": default_capabilities,
                "permitted": default_capabilities
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "berth",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            {
                "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
            },
            {
                "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
            },
            {
                "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
            },
            {
                "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"]
            },
            {
                "destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"]
            },
            {
                "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]
            }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" },
                { "type": "network" },
                { "type": "ipc" },
                { "type": "uts" },
                { "type": "mount" },
                { "type": "cgroup" }
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
                "/sys/devices/virtual/tpm"
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger"
            ]
        }
    });
    // A fixed literal: failing here is a bug in the template, caught by the tests.
    serde_json::from_value(template).expect("the built-in spec template is a valid config")
}

/// Convert a spec for a rootless container run by the current effective user, as
/// `runc spec --rootless` does: a user namespace mapping container root to that user (and
/// group), no network namespace, /sys bind-mounted from the host (sysfs cannot be mounted
/// without owning the network namespace), no `uid=`/`gid=` mount options (those ids do not
/// exist in the one-id mapping), and no cgroup resources (an unprivileged user usually cannot
/// set them). The cgroup mount stays, as in runc: with a cgroup namespace it is mountable.
pub fn rootless(spec: &mut Spec) {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    rootless_for(spec, uid, gid);
}

fn rootless_for(spec: &mut Spec, host_uid: u32, host_gid: u32) {
    let linux = spec.linux_mut().get_or_insert_with(Default::default);

    let mut namespaces: Vec<LinuxNamespace> = linux
        .namespaces()
        .iter()
        .flatten()
        .filter(|ns| {
            !matches!(
                ns.typ(),
                LinuxNamespaceType::Network | LinuxNamespaceType::User
            )
        })
        .cloned()
        .collect();
    let mut user_namespace = LinuxNamespace::default();
    user_namespace.set_typ(LinuxNamespaceType::User);
    namespaces.push(user_namespace);
    linux.set_namespaces(Some(namespaces));

    // oci-spec offers only a builder for LinuxIdMapping; with every field given it cannot fail.
    let one_id = |host_id: u32| {
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host_id)
            .size(1u32)
            .build()
            .expect("a LinuxIdMapping with all fields set")
    };
    linux.set_uid_mappings(Some(vec![one_id(host_uid)]));
    linux.set_gid_mappings(Some(vec![one_id(host_gid)]));
    linux.set_resources(None);

    let mounts = spec.mounts().iter().flatten().map(|mount| {
        if clean(mount.destination()) == Path::new("/sys") {
            return sys_bind_mount();
        }
        let mut mount = mount.clone();
        if let Some(options) = mount.options_mut() {
            options.retain(|o| !o.starts_with("uid=") && !o.starts_with("gid="));
        }
        mount
    });
    let mounts: Vec<Mount> = mounts.collect();
    spec.set_mounts(Some(mounts));
}

/// /sys bind-mounted read-only from the host, replacing the sysfs mount in rootless specs.
fn sys_bind_mount() -> Mount {
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from("/sys"));
    mount.set_typ(Some("none".to_string()));
    mount.set_source(Some(PathBuf::from("/sys")));
    mount.set_options(Some(
        ["rbind", "nosuid", "noexec", "nodev", "ro"]
            .map(String::from)
            .to_vec(),
    ));
    mount
}

/// Lexical path cleanup ("/sys/", "/sys/." and "//sys" are all /sys), like Go's filepath.Clean
/// for the cases a destination can take; no filesystem access.
fn clean(path: &Path) -> PathBuf {
    let mut cleaned = PathBuf::from("/");
    for component in path.components() {
        match component {
            std::path::Component::Normal(part) => cleaned.push(part),
            std::path::Component::ParentDir => {
                cleaned.pop();
            }
            _ => {}
        }
    }
    cleaned
}

/// The spec as pretty-printed JSON for config.json, the same text on every run: fields in
/// oci-spec's order (ociVersion, root, mounts, process, hostname, linux, ...) and the
/// `process.capabilities` lists sorted by name.
pub fn spec_to_pretty_json(spec: &Spec) -> Result<String> {
    // Going through serde_json::Value would sort every object's keys alphabetically (serde_json
    // is built without preserve_order here), so use a value type that keeps the order.
    let text = serde_json::to_string(spec)?;
    let mut document: OrderedJson = serde_json::from_str(&text)?;
    if let Some(OrderedJson::Object(sets)) = document
        .get_mut("process")
        .and_then(|p| p.get_mut("capabilities"))
    {
        for (_, set) in sets.iter_mut() {
            if let OrderedJson::Array(names) = set {
                names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    Ok(serde_json::to_string_pretty(&document)?)
}

/// A JSON value whose objects keep their keys in document order.
enum OrderedJson {
    Scalar(serde_json::Value),
    Array(Vec<OrderedJson>),
    Object(Vec<(String, OrderedJson)>),
}

impl OrderedJson {
    fn get_mut(&mut self, key: &str) -> Option<&mut OrderedJson> {
        match self {
            OrderedJson::Object(entries) => {
                entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            OrderedJson::Scalar(value) => value.as_str(),
            _ => None,
        }
    }
}

impl Serialize for OrderedJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            OrderedJson::Scalar(value) => value.serialize(serializer),
            OrderedJson::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            OrderedJson::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for OrderedJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor;
        impl<'de> serde::de::Visitor<'de> for OrderedVisitor {
            type Value = OrderedJson;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<OrderedJson, E> {
                Ok(OrderedJson::Scalar(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<OrderedJson, E> {
                Ok(OrderedJson::Scalar(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<OrderedJson, E> {
                Ok(OrderedJson::Scalar(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<OrderedJson, E> {
                Ok(OrderedJson::Scalar(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<OrderedJson, E> {
                Ok(OrderedJson::Scalar(v.into()))
            }
            fn visit_unit<E>(self) -> Result<OrderedJson, E> {
                Ok(OrderedJson::Scalar(serde_json::Value::Null))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OrderedJson, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OrderedJson::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedJson, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry()? {
                    entries.push((key, value));
                }
                Ok(OrderedJson::Object(entries))
            }
        }
        deserializer.deserialize_any(OrderedVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The spec as written to config.json, read back as a plain JSON value.
    fn as_json(spec: &Spec) -> Value {
        serde_json::from_str(&spec_to_pretty_json(spec).unwrap()).unwrap()
    }

    #[test]
    fn round_trips_through_json() {
        let spec = default_spec();
        let text = spec_to_pretty_json(&spec).unwrap();
        let parsed: Spec = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, spec);
        assert_eq!(spec_to_pretty_json(&parsed).unwrap(), text);
    }

    #[test]
    fn written_text_is_stable_and_ordered() {
        let text = spec_to_pretty_json(&default_spec()).unwrap();
        for _ in 0..5 {
            assert_eq!(spec_to_pretty_json(&default_spec()).unwrap(), text);
        }
        assert!(text.starts_with("{\n  \"ociVersion\": "), "{text}");
        let bounding = text.find("\"bounding\"").unwrap();
        let audit = text[bounding..].find("CAP_AUDIT_WRITE").unwrap();
        let kill = text[bounding..].find("CAP_KILL").unwrap();
        assert!(audit < kill);
    }

    #[test]
    fn key_parts() {
        let spec = as_json(&default_spec());
        assert_eq!(spec["ociVersion"], OCI_VERSION_MAX);
        assert_eq!(spec["hostname"], "berth");
        assert_eq!(spec["root"], json!({"path": "rootfs", "readonly": true}));
        let process = &spec["process"];
        assert_eq!(process["terminal"], true);
        assert_eq!(process["args"], json!(["sh"]));
        assert_eq!(process["noNewPrivileges"], true);
        assert_eq!(process["rlimits"][0]["type"], "RLIMIT_NOFILE");
        let mut bounding: Vec<&str> = process["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        bounding.sort_unstable();
        assert_eq!(
            bounding,
            ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        );
        assert!(process["capabilities"].get("ambient").is_none());
        assert_eq!(spec["mounts"].as_array().unwrap().len(), 7);
        assert_eq!(spec["linux"]["namespaces"].as_array().unwrap().len(), 6);
        assert_eq!(spec["linux"]["resources"]["devices"][0]["access"], "rwm");
    }

    #[test]
    fn its_capabilities_and_mount_options_parse() {
        let spec = default_spec();
        let process = spec.process().as_ref().unwrap();
        let (sets, warnings) = super::super::caps::parse_capabilities(
            process.capabilities().as_ref(),
            "process.capabilities",
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(sets.effective.len(), 3);
        for (i, mount) in spec.mounts().iter().flatten().enumerate() {
            let options = mount.options().clone().unwrap_or_default();
            super::super::mount_options::parse_mount_options(
                &options,
                &format!("mounts[{i}].options"),
            )
            .unwrap();
        }
    }

    #[test]
    fn rootless_conversion() {
        let mut spec = default_spec();
        rootless_for(&mut spec, 1234, 5678);
        let json = as_json(&spec);
        let linux = &json["linux"];
        assert_eq!(
            linux["uidMappings"],
            json!([{"containerID": 0, "hostID": 1234, "size": 1}])
        );
        assert_eq!(
            linux["gidMappings"],
            json!([{"containerID": 0, "hostID": 5678, "size": 1}])
        );
        assert!(linux.get("resources").is_none());
        let types: Vec<&str> = linux["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ns| ns["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["pid", "ipc", "uts", "mount", "cgroup", "user"]);
        let mounts = json["mounts"].as_array().unwrap();
        let sys = mounts.iter().find(|m| m["destination"] == "/sys").unwrap();
        assert_eq!(
            sys,
            &json!({"destination": "/sys", "type": "none", "source": "/sys",
                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
        );
        let pts = mounts
            .iter()
            .find(|m| m["destination"] == "/dev/pts")
            .unwrap();
        assert!(!pts["options"].as_array().unwrap().contains(&json!("gid=5")));
        // Converting twice keeps one user namespace.
        rootless_for(&mut spec, 1234, 5678);
        let again = as_json(&spec);
        assert_eq!(again["linux"]["namespaces"].as_array().unwrap().len(), 6);
    }

    #[test]
    fn clean_destination() {
        for path in ["/sys", "/sys/", "//sys", "/sys/.", "/proc/../sys"] {
            assert_eq!(clean(Path::new(path)), Path::new("/sys"), "{path}");
        }
    }

    /// `runc spec` output in a fresh temporary directory, if runc is installed.
    fn runc_spec(rootless: bool) -> Option<Value> {
        let dir = std::env::temp_dir().join(format!(
            "berth-spec-test-{}-{}",
            std::process::id(),
            u8::from(rootless)
        ));
        std::fs::create_dir_all(&dir).ok()?;
        let _ = std::fs::remove_file(dir.join("config.json"));
        let mut command = std::process::Command::new("runc");
        command.arg("spec").current_dir(&dir);
        if rootless {
            command.arg("--rootless");
        }
        let status = command.status().ok()?;
        let text = std::fs::read_to_string(dir.join("config.json")).ok();
        let _ = std::fs::remove_dir_all(&dir);
        if !status.success() {
            return None;
        }
        serde_json::from_str(&text?).ok()
    }

    #[test]
    fn matches_runc_spec() {
        let Some(runc) = runc_spec(false) else {
            eprintln!("skipped: runc not installed");
            return;
        };
        let ours = as_json(&default_spec());
        for pointer in [
            "/process/terminal",
            "/process/user",
            "/process/args",
            "/process/env",
            "/process/cwd",
            "/process/rlimits",
            "/process/noNewPrivileges",
            "/process/capabilities/bounding",
            "/process/capabilities/effective",
            "/process/capabilities/permitted",
            "/root",
            "/mounts",
            "/linux/resources",
            "/linux/readonlyPaths",
        ] {
            assert_eq!(ours.pointer(pointer), runc.pointer(pointer), "{pointer}");
        }
        // Newer runc releases add to these lists; ours must hold at least what runc has.
        for list in ["/linux/maskedPaths", "/linux/namespaces"] {
            let ours = ours.pointer(list).unwrap().as_array().unwrap();
            for item in runc.pointer(list).unwrap().as_array().unwrap() {
                assert!(ours.contains(item), "{list}: runc has {item}");
            }
        }
    }

    #[test]
    fn rootless_matches_runc_spec_rootless() {
        let Some(runc) = runc_spec(true) else {
            eprintln!("skipped: runc not installed");
            return;
        };
        let mut spec = default_spec();
        rootless(&mut spec);
        let ours = as_json(&spec);
        for pointer in [
            "/mounts",
            "/linux/uidMappings",
            "/linux/gidMappings",
            "/linux/resources",
        ] {
            assert_eq!(ours.pointer(pointer), runc.pointer(pointer), "{pointer}");
        }
        let types = |spec: &Value| -> Vec<Value> {
            spec["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ns| ns["type"].clone())
                .collect()
        };
        // Same namespaces apart from the cgroup one that older runc adds only on cgroup v2.
        let ours_types: Vec<Value> = types(&ours).into_iter().filter(|t| t != "cgroup").collect();
        let runc_types: Vec<Value> = types(&runc).into_iter().filter(|t| t != "cgroup").collect();
        assert_eq!(ours_types, runc_types);
    }
}
