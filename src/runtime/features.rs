//! The runtime-spec "features" document that `berth features` prints (runtime-spec
//! features.md; compare `runc features`).
//!
//! Lists come from the tables the runtime works from (mount options, capabilities, the hooks
//! and namespaces below), so the document cannot drift from what is implemented. When a feature
//! is added (seccomp, AppArmor, idmapped mounts, ...), flip it here.

use oci_spec::runtime::LinuxNamespaceType;
use serde_json::{json, Value};

use super::caps::known_capabilities;
use super::mount_options::supported_mount_options;

/// The oldest runtime-spec version whose configs berth accepts.
pub const OCI_VERSION_MIN: &str = "1.0.0";
/// The newest runtime-spec version berth knows (any 1.3.x patch release is accepted).
pub const OCI_VERSION_MAX: &str = "1.3.0";

/// The hooks berth runs, in the order of the container lifecycle.
pub const SUPPORTED_HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The namespace types berth can create or join.
pub const SUPPORTED_NAMESPACES: &[LinuxNamespaceType] = &[
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Uts,
];

/// The `linux.memoryPolicy` modes and flags berth applies (taskattrs.rs).
pub const MEMORY_POLICY_MODES: &[&str] = &[
    "MPOL_DEFAULT",
    "MPOL_BIND",
    "MPOL_INTERLEAVE",
    "MPOL_WEIGHTED_INTERLEAVE",
    "MPOL_PREFERRED",
    "MPOL_PREFERRED_MANY",
    "MPOL_LOCAL",
];
pub const MEMORY_POLICY_FLAGS: &[&str] = &[
    "MPOL_F_NUMA_BALANCING",
    "MPOL_F_RELATIVE_NODES",
    "MPOL_F_STATIC_NODES",
];

/// Annotation giving berth's version, in the style of runc's `org.opencontainers.runc.version`.
pub const VERSION_ANNOTATION: &str = "io.github.berth.version";

/// True if a config's `ociVersion` is one berth accepts: 1.0 up to 1.3, any patch level and any
/// pre-release or build suffix (runc's own `runc spec` wrote "1.0.2-dev" for years).
pub fn is_supported_oci_version(version: &str) -> bool {
    let mut parts = version.split(['.', '-', '+']);
    let major = parts.next().and_then(|p| p.parse::<u64>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u64>().ok());
    let patch = parts.next().and_then(|p| p.parse::<u64>().ok());
    matches!((major, minor, patch), (Some(1), Some(0..=3), Some(_)))
}

/// The features document as JSON (print it with `serde_json::to_string_pretty`).
pub fn features_json() -> Value {
    // Names as they appear in config.json ("network", not "net"), sorted like runc's output.
    let mut namespaces: Vec<Value> = SUPPORTED_NAMESPACES
        .iter()
        .map(|ns| serde_json::to_value(ns).expect("a namespace type serializes to a string"))
        .collect();
    namespaces.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    let capabilities: Vec<String> = known_capabilities()
        .iter()
        .map(|cap| cap.to_string())
        .collect();

    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": SUPPORTED_HOOKS,
        "mountOptions": supported_mount_options(),
        "linux": {
            "namespaces": namespaces,
            "capabilities": capabilities,
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": true,
                "systemdUser": false,
                "rdma": true
            },
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
            },
            // Applied where the host runs that LSM, refused where it does not (process.rs).
            "apparmor": { "enabled": true },
            "selinux": { "enabled": true },
            // Applied where the host has resctrl, refused where it has not (rdt.rs).
            "intelRdt": { "enabled": true, "schemata": true, "monitoring": true },
            "memoryPolicy": { "modes": MEMORY_POLICY_MODES, "flags": MEMORY_POLICY_FLAGS },
            "netDevices": { "enabled": true },
            "mountExtensions": { "idmap": { "enabled": false } }
        },
        "annotations": {
            VERSION_ANNOTATION: env!("CARGO_PKG_VERSION")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_documented_keys() {
        let features = features_json();
        assert_eq!(features["ociVersionMin"], "1.0.0");
        assert_eq!(features["ociVersionMax"], "1.3.0");
        assert_eq!(features["hooks"].as_array().unwrap().len(), 6);
        let linux = &features["linux"];
        assert_eq!(
            linux["namespaces"],
            json!(["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"])
        );
        assert_eq!(linux["capabilities"][0], "CAP_CHOWN");
        assert!(linux["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("CAP_CHECKPOINT_RESTORE")));
        assert_eq!(linux["cgroup"]["v2"], true);
        assert_eq!(linux["cgroup"]["systemd"], true);
        assert_eq!(linux["seccomp"]["enabled"], true);
        assert_eq!(linux["mountExtensions"]["idmap"]["enabled"], false);
        assert_eq!(linux["netDevices"]["enabled"], true);
        assert_eq!(linux["intelRdt"]["enabled"], true);
        assert_eq!(
            features["annotations"][VERSION_ANNOTATION],
            env!("CARGO_PKG_VERSION")
        );
    }

    #[test]
    fn lists_come_from_the_tables() {
        let features = features_json();
        let mount_options: Vec<&str> = features["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(mount_options, supported_mount_options());
        assert_eq!(
            features["linux"]["capabilities"].as_array().unwrap().len(),
            ::caps::all().len()
        );
    }

    #[test]
    fn parses_as_oci_spec_features() {
        let text = serde_json::to_string_pretty(&features_json()).unwrap();
        let parsed: oci_spec::runtime::Features = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.oci_version_min(), OCI_VERSION_MIN);
        let linux = parsed.linux().as_ref().unwrap();
        assert_eq!(
            linux.namespaces().as_ref().unwrap().len(),
            SUPPORTED_NAMESPACES.len()
        );
        let idmap = linux
            .mount_extensions()
            .as_ref()
            .unwrap()
            .idmap()
            .as_ref()
            .unwrap();
        assert_eq!(*idmap.enabled(), Some(false));
        // Every mode and flag listed is one the config parser takes and taskattrs applies.
        let policy = linux.memory_policy().as_ref().unwrap();
        for mode in policy.modes().as_ref().unwrap() {
            let m: oci_spec::runtime::LinuxMemoryPolicy =
                serde_json::from_value(json!({"mode": mode, "nodes": "0"})).unwrap();
            let _ = m;
        }
        for flag in policy.flags().as_ref().unwrap() {
            let _: oci_spec::runtime::MemoryPolicyFlagType =
                serde_json::from_value(json!(flag)).unwrap();
        }
        assert_eq!(*linux.net_devices().as_ref().unwrap().enabled(), Some(true));
    }

    #[test]
    fn covers_what_runc_reports() {
        // Where runc is installed, everything it lists for mount options and capabilities
        // should be in ours too.
        let Ok(output) = std::process::Command::new("runc").arg("features").output() else {
            eprintln!("skipped: runc not installed");
            return;
        };
        let Ok(runc) = serde_json::from_slice::<Value>(&output.stdout) else {
            eprintln!("skipped: runc features gave no JSON");
            return;
        };
        let ours = features_json();
        for (list, path) in [
            ("mountOptions", "/mountOptions"),
            ("capabilities", "/linux/capabilities"),
        ] {
            let our_list = ours.pointer(path).unwrap().as_array().unwrap();
            for item in runc
                .pointer(path)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert!(
                    our_list.contains(item),
                    "{list}: runc has {item}, berth does not"
                );
            }
        }
        for hook in runc["hooks"].as_array().unwrap() {
            assert!(ours["hooks"].as_array().unwrap().contains(hook), "{hook}");
        }
    }

    #[test]
    fn version_range() {
        for ok in [
            "1.0.0",
            "1.0.2-dev",
            "1.1.0",
            "1.2.1",
            "1.3.0",
            "1.3.7",
            "1.2.0+build",
        ] {
            assert!(is_supported_oci_version(ok), "{ok}");
        }
        for bad in ["0.6.0", "1.4.0", "2.0.0", "1.0", "", "one", "1.x.0"] {
            assert!(!is_supported_oci_version(bad), "{bad}");
        }
    }
}
