//! Linux capabilities of the container process (`process.capabilities`), with the `caps` crate.
//!
//! # Parse time (in the runtime, before any fork/clone)
//!
//! [`parse_capabilities_json`] (from the raw config JSON, preferred) or [`parse_capabilities`]
//! (from an already deserialized oci-spec `LinuxCapabilities`) turn the five lists into
//! [`CapabilitySets`] and a list of warnings for the caller to print. They fail when:
//! - a name is not a capability at all (names are matched exactly as runc does: `CAP_` prefix,
//!   upper case; `"chown"` or `"SYS_ADMIN"` are errors);
//! - `effective` holds a capability missing from `permitted` (capset(2) would refuse it).
//!
//! They warn and skip when:
//! - a capability is real but newer than the running kernel (above
//!   `/proc/sys/kernel/cap_last_cap`), as runc does;
//! - an `ambient` capability is not also in both `permitted` and `inheritable`, which the
//!   kernel requires for raising it (runc warns and goes on too).
//!
//! oci-spec 0.10 note: its `Capability` enum fails deserialization of the whole `Spec` on an
//! unknown name ("no variant for CAP_FOO (converted to FOO)"), and it also accepts names runc
//! rejects (`"chown"`, `"cap_chown"`). Its sets are hash sets, so list positions are lost. To
//! report `process.capabilities.bounding[2]: unknown capability "CAP_FOO"` run
//! [`parse_capabilities_json`] on the raw JSON before deserializing the `Spec`.
//!
//! A missing `process.capabilities`, or a missing set inside it, means an empty set (runc): the
//! process then runs without any capability and with an empty bounding set.
//!
//! # In the container process (single-threaded, before exec)
//!
//! 1. [`drop_bounding_set`], while still uid 0 with full capabilities (it needs CAP_SETPCAP);
//!    it also sets PR_SET_KEEPCAPS so that the permitted set survives the uid switch.
//! 2. setgroups / setgid / setuid to `process.user` (these need CAP_SETGID/CAP_SETUID, which
//!    are still effective here).
//! 3. [`apply_process_capabilities`]: inheritable, permitted, effective, ambient; clears
//!    keepcaps again.

use std::sync::OnceLock;

use ::caps::{CapSet, Capability, CapsHashSet};
use anyhow::{anyhow, bail, Result};
use oci_spec::runtime::LinuxCapabilities;

/// The five capability sets of `process.capabilities`, already checked against each other and
/// the running kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

/// Every capability the `caps` crate knows, in kernel number order (as `features` lists them).
pub fn known_capabilities() -> Vec<Capability> {
    let mut all: Vec<Capability> = ::caps::all().into_iter().collect();
    all.sort_by_key(|cap| cap.index());
    all
}

/// The highest capability number the running kernel knows.
fn kernel_last_cap() -> u8 {
    static LAST_CAP: OnceLock<u8> = OnceLock::new();
    *LAST_CAP.get_or_init(|| {
        let from_procfs = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|text| text.trim().parse::<u8>().ok());
        // Without /proc, ask the kernel directly which capabilities it can report
        // (PR_CAPBSET_READ fails with EINVAL past the last one).
        from_procfs.unwrap_or_else(|| {
            ::caps::runtime::thread_all_supported()
                .iter()
                .map(|cap| cap.index())
                .max()
                .unwrap_or(0)
        })
    })
}

/// Parse a list of capability names (e.g. `"CAP_SYS_ADMIN"`) into a set.
///
/// `field` names the list in messages, e.g. `"process.capabilities.effective"`; each message
/// names the entry as `field[index]`. A name that is no capability at all is an error; a real
/// capability that the running kernel does not know is skipped with a warning (returned, for
/// the caller to print). Duplicates are harmless.
pub fn parse_capability_set<S: AsRef<str>>(
    names: &[S],
    field: &str,
) -> Result<(CapsHashSet, Vec<String>)> {
    parse_names(
        names
            .iter()
            .enumerate()
            .map(|(index, name)| (format!("{field}[{index}]"), name.as_ref())),
        kernel_last_cap(),
    )
}

/// The shared parser: `entries` are (label for messages, name) pairs.
fn parse_names<'a>(
    entries: impl Iterator<Item = (String, &'a str)>,
    last_cap: u8,
) -> Result<(CapsHashSet, Vec<String>)> {
    let mut set = CapsHashSet::new();
    let mut warnings = Vec::new();
    for (label, name) in entries {
        let cap: Capability = match name.parse() {
            Ok(cap) => cap,
            Err(_) => {
                // runc matches the exact kernel spelling; point at the likely intended name.
                let hint = match ::caps::to_canonical(name).parse::<Capability>() {
                    Ok(cap) => format!(" (did you mean \"{cap}\"?)"),
                    Err(_) => String::new(),
                };
                bail!("{label}: unknown capability {name:?}{hint}");
            }
        };
        if cap.index() > last_cap {
            warnings.push(format!(
                "{label}: ignoring {cap}: not supported by the running kernel (its last capability is number {last_cap})"
            ));
            continue;
        }
        set.insert(cap);
    }
    Ok((set, warnings))
}

/// Parse all five sets of an oci-spec `process.capabilities` (see the module documentation for
/// what is an error and what a warning). `field_prefix` is normally `"process.capabilities"`.
///
/// oci-spec keeps hash sets, so messages name the set (`process.capabilities.bounding`) but not
/// a position; use [`parse_capabilities_json`] for positions.
pub fn parse_capabilities(
    capabilities: Option<&LinuxCapabilities>,
    field_prefix: &str,
) -> Result<(CapabilitySets, Vec<String>)> {
    let last_cap = kernel_last_cap();
    let mut warnings = Vec::new();
    let mut parse_one = |set_name: &str, set: &Option<oci_spec::runtime::Capabilities>| {
        let field = format!("{field_prefix}.{set_name}");
        // oci-spec serializes its enum to the kernel name ("CAP_CHOWN"); its Display drops the
        // prefix, so go through serde.
        let names = set
            .iter()
            .flatten()
            .map(|cap| match serde_json::to_value(cap) {
                Ok(serde_json::Value::String(name)) => Ok(name),
                other => Err(anyhow!(
                    "{field}: cannot name capability {cap:?}: {other:?}"
                )),
            })
            .collect::<Result<Vec<String>>>()?;
        let (parsed, mut set_warnings) = parse_names(
            names.iter().map(|name| (field.clone(), name.as_str())),
            last_cap,
        )?;
        warnings.append(&mut set_warnings);
        Ok::<_, anyhow::Error>(parsed)
    };
    let sets = match capabilities {
        None => CapabilitySets::default(),
        Some(caps) => CapabilitySets {
            bounding: parse_one("bounding", caps.bounding())?,
            effective: parse_one("effective", caps.effective())?,
            permitted: parse_one("permitted", caps.permitted())?,
            inheritable: parse_one("inheritable", caps.inheritable())?,
            ambient: parse_one("ambient", caps.ambient())?,
        },
    };
    finish_sets(sets, field_prefix, warnings)
}

/// Parse `process.capabilities` from the raw config JSON (`value` is that object, or `None` /
/// JSON null when absent). Same rules as [`parse_capabilities`], but messages give the position
/// in the list (`process.capabilities.effective[2]`), and it runs before oci-spec would reject
/// an unknown name with a less helpful message.
pub fn parse_capabilities_json(
    value: Option<&serde_json::Value>,
    field_prefix: &str,
) -> Result<(CapabilitySets, Vec<String>)> {
    let object = match value {
        None | Some(serde_json::Value::Null) => {
            return finish_sets(CapabilitySets::default(), field_prefix, Vec::new())
        }
        Some(serde_json::Value::Object(object)) => object,
        Some(_) => bail!("{field_prefix}: expected an object with capability lists"),
    };
    let last_cap = kernel_last_cap();
    let mut warnings = Vec::new();
    let mut parse_one = |set_name: &str| -> Result<CapsHashSet> {
        let field = format!("{field_prefix}.{set_name}");
        let names = match object.get(set_name) {
            None | Some(serde_json::Value::Null) => return Ok(CapsHashSet::new()),
            Some(serde_json::Value::Array(names)) => names,
            Some(_) => bail!("{field}: expected a list of capability names"),
        };
        let entries = names
            .iter()
            .enumerate()
            .map(|(index, name)| match name.as_str() {
                Some(name) => Ok((format!("{field}[{index}]"), name)),
                None => Err(anyhow!(
                    "{field}[{index}]: expected a capability name string, found {name}"
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let (parsed, mut set_warnings) = parse_names(entries.into_iter(), last_cap)?;
        warnings.append(&mut set_warnings);
        Ok(parsed)
    };
    let sets = CapabilitySets {
        bounding: parse_one("bounding")?,
        effective: parse_one("effective")?,
        permitted: parse_one("permitted")?,
        inheritable: parse_one("inheritable")?,
        ambient: parse_one("ambient")?,
    };
    finish_sets(sets, field_prefix, warnings)
}

/// The checks between sets, shared by both parsers.
fn finish_sets(
    mut sets: CapabilitySets,
    field_prefix: &str,
    mut warnings: Vec<String>,
) -> Result<(CapabilitySets, Vec<String>)> {
    let not_permitted = sorted_names(sets.effective.difference(&sets.permitted));
    if !not_permitted.is_empty() {
        bail!(
            "{field_prefix}.effective: {} not in {field_prefix}.permitted (the kernel allows only permitted capabilities to be effective)",
            not_permitted.join(", ")
        );
    }
    // PR_CAP_AMBIENT_RAISE needs the capability in both permitted and inheritable.
    let raisable: CapsHashSet = sets
        .permitted
        .intersection(&sets.inheritable)
        .copied()
        .collect();
    let unraisable = sorted_names(sets.ambient.difference(&raisable));
    if !unraisable.is_empty() {
        warnings.push(format!(
            "{field_prefix}.ambient: ignoring {}: an ambient capability must also be in {field_prefix}.permitted and {field_prefix}.inheritable",
            unraisable.join(", ")
        ));
        sets.ambient.retain(|cap| raisable.contains(cap));
    }
    Ok((sets, warnings))
}

fn sorted_names<'a>(caps: impl Iterator<Item = &'a Capability>) -> Vec<String> {
    let mut caps: Vec<&Capability> = caps.collect();
    caps.sort_by_key(|cap| cap.index());
    caps.iter().map(|cap| cap.to_string()).collect()
}

/// In the container process, as uid 0 (in its user namespace) and before the uid switch: drop
/// from the bounding set every capability not in `sets.bounding`, and set PR_SET_KEEPCAPS so
/// the permitted set survives setuid to a non-zero uid.
///
/// Must run while CAP_SETPCAP is still effective, so before [`apply_process_capabilities`].
pub fn drop_bounding_set(sets: &CapabilitySets) -> Result<()> {
    // One prctl per capability to drop, no reads: reading the set first would cost one more
    // per capability the kernel knows. Dropping an already dropped capability needs
    // CAP_SETPCAP all the same; such a failure is fine when the capability is gone anyway.
    let last = kernel_last_cap();
    for cap in known_capabilities()
        .into_iter()
        .filter(|cap| cap.index() <= last && !sets.bounding.contains(cap))
    {
        if let Err(e) = ::caps::drop(None, CapSet::Bounding, cap) {
            if ::caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(true) {
                bail!("process.capabilities.bounding: dropping {cap} from the bounding set: {e}");
            }
        }
    }
    ::caps::securebits::set_keepcaps(true)
        .map_err(|e| anyhow!("keeping capabilities across the uid switch: {e}"))?;
    Ok(())
}

/// In the container process, after setgroups/setgid/setuid: set the inheritable, permitted and
/// effective sets, then raise the ambient capabilities, then clear keepcaps.
///
/// Works whether or not the uid changed (a uid-0 process still has everything effective here).
pub fn apply_process_capabilities(sets: &CapabilitySets) -> Result<()> {
    // The bounding set is the config's by now, less what the host never gave berth: a
    // capability the config bounds but the process no longer has is the host's doing, and
    // the error says so rather than blame the config field.
    let host_lacks = sorted_names(
        sets.permitted
            .iter()
            .chain(sets.inheritable.iter())
            .chain(sets.ambient.iter())
            .filter(|cap| {
                sets.bounding.contains(cap)
                    && !::caps::has_cap(None, CapSet::Bounding, **cap).unwrap_or(true)
            })
            .copied()
            .collect::<CapsHashSet>()
            .iter(),
    );
    if !host_lacks.is_empty() {
        bail!(
            "this host does not give berth {} (not in berth's own bounding set: the machine, \
             or the container or VM berth runs in, took it away); the container cannot have it \
             (process.capabilities)",
            host_lacks.join(", ")
        );
    }
    // The kernel allows a new inheritable set only within the current bounding set (plus what
    // is already inheritable); say which capability is at fault rather than just EPERM.
    let inheritable_now = ::caps::read(None, CapSet::Inheritable)
        .map_err(|e| anyhow!("reading the inheritable set: {e}"))?;
    let outside = sorted_names(sets.inheritable.iter().filter(|cap| {
        !inheritable_now.contains(cap)
            && !::caps::has_cap(None, CapSet::Bounding, **cap).unwrap_or(false)
    }));
    if !outside.is_empty() {
        bail!(
            "process.capabilities.inheritable: {} not in the bounding set (process.capabilities.bounding)",
            outside.join(", ")
        );
    }

    // Order matters because each capset(2) call must be valid on its own: inheritable first
    // (while the permitted set is still the full one it may need), then an empty effective set
    // so the permitted set can shrink below it, then permitted, then effective.
    ::caps::set(None, CapSet::Inheritable, &sets.inheritable)
        .map_err(|e| anyhow!("process.capabilities.inheritable: {e}"))?;
    ::caps::clear(None, CapSet::Effective)
        .map_err(|e| anyhow!("clearing the effective set: {e}"))?;
    ::caps::set(None, CapSet::Permitted, &sets.permitted)
        .map_err(|e| anyhow!("process.capabilities.permitted: {e}"))?;
    ::caps::set(None, CapSet::Effective, &sets.effective)
        .map_err(|e| anyhow!("process.capabilities.effective: {e}"))?;

    // Ambient capabilities are what a non-root process keeps across execve; every one here is
    // permitted and inheritable (checked at parse time).
    ::caps::clear(None, CapSet::Ambient).map_err(|e| anyhow!("clearing the ambient set: {e}"))?;
    for cap in sorted_caps(&sets.ambient) {
        ::caps::raise(None, CapSet::Ambient, cap)
            .map_err(|e| anyhow!("process.capabilities.ambient: raising {cap}: {e}"))?;
    }

    ::caps::securebits::set_keepcaps(false)
        .map_err(|e| anyhow!("clearing keepcaps after setting the capabilities: {e}"))?;
    Ok(())
}

fn sorted_caps(set: &CapsHashSet) -> Vec<Capability> {
    let mut caps: Vec<Capability> = set.iter().copied().collect();
    caps.sort_by_key(|cap| cap.index());
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(caps: &[Capability]) -> CapsHashSet {
        caps.iter().copied().collect()
    }

    #[test]
    fn parses_kernel_names() {
        let (set, warnings) =
            parse_capability_set(&["CAP_CHOWN", "CAP_KILL", "CAP_KILL"], "f").unwrap();
        assert_eq!(set, set_of(&[Capability::CAP_CHOWN, Capability::CAP_KILL]));
        assert!(warnings.is_empty());
        let empty: &[&str] = &[];
        assert!(parse_capability_set(empty, "f").unwrap().0.is_empty());
    }

    #[test]
    fn unknown_name_is_an_error_naming_the_entry() {
        let names = vec!["CAP_CHOWN".to_string(), "CAP_KILL".into(), "CAP_FOO".into()];
        let err = parse_capability_set(&names, "process.capabilities.effective")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "process.capabilities.effective[2]: unknown capability \"CAP_FOO\""
        );
    }

    #[test]
    fn runc_spelling_is_required_with_a_hint() {
        for name in ["SYS_ADMIN", "cap_sys_admin", "sys_admin"] {
            let err = parse_capability_set(&[name], "process.capabilities.bounding")
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                format!("process.capabilities.bounding[0]: unknown capability {name:?} (did you mean \"CAP_SYS_ADMIN\"?)")
            );
        }
    }

    #[test]
    fn capability_newer_than_the_kernel_is_a_warning() {
        // Pretend the kernel stops at CAP_AUDIT_READ (37): PERFMON (38) and BPF (39) are skipped.
        let entries = ["CAP_KILL", "CAP_PERFMON", "CAP_BPF"]
            .into_iter()
            .enumerate()
            .map(|(i, name)| (format!("process.capabilities.permitted[{i}]"), name));
        let (set, warnings) = parse_names(entries, 37).unwrap();
        assert_eq!(set, set_of(&[Capability::CAP_KILL]));
        assert_eq!(warnings.len(), 2);
        assert!(
            warnings[0].starts_with("process.capabilities.permitted[1]: ignoring CAP_PERFMON"),
            "{}",
            warnings[0]
        );
        assert!(warnings[1].starts_with("process.capabilities.permitted[2]: ignoring CAP_BPF"));
    }

    #[test]
    fn json_sets_and_errors() {
        let value = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]
        });
        let (sets, warnings) =
            parse_capabilities_json(Some(&value), "process.capabilities").unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            sets.bounding,
            set_of(&[Capability::CAP_CHOWN, Capability::CAP_KILL])
        );
        assert_eq!(sets.ambient, set_of(&[Capability::CAP_KILL]));

        let (none, _) = parse_capabilities_json(None, "process.capabilities").unwrap();
        assert_eq!(none, CapabilitySets::default());

        let bad = serde_json::json!({"effective": ["CAP_KILL", "CAP_NET_RAW", "CAP_FOO"]});
        let err = parse_capabilities_json(Some(&bad), "process.capabilities").unwrap_err();
        assert_eq!(
            err.to_string(),
            "process.capabilities.effective[2]: unknown capability \"CAP_FOO\""
        );

        let not_string = serde_json::json!({"ambient": [7]});
        let err = parse_capabilities_json(Some(&not_string), "process.capabilities").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("process.capabilities.ambient[0]: "),
            "{err}"
        );

        let not_list = serde_json::json!({"bounding": "CAP_KILL"});
        let err = parse_capabilities_json(Some(&not_list), "process.capabilities").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("process.capabilities.bounding: "),
            "{err}"
        );
    }

    #[test]
    fn effective_must_be_permitted() {
        let value =
            serde_json::json!({"effective": ["CAP_KILL", "CAP_CHOWN"], "permitted": ["CAP_KILL"]});
        let err = parse_capabilities_json(Some(&value), "process.capabilities").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "process.capabilities.effective: CAP_CHOWN not in process.capabilities.permitted"
            ),
            "{err}"
        );
    }

    #[test]
    fn ambient_outside_permitted_and_inheritable_is_skipped_with_a_warning() {
        // runc spec's own default: ambient without inheritable.
        let value = serde_json::json!({
            "permitted": ["CAP_KILL", "CAP_AUDIT_WRITE"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL", "CAP_AUDIT_WRITE", "CAP_NET_BIND_SERVICE"]
        });
        let (sets, warnings) =
            parse_capabilities_json(Some(&value), "process.capabilities").unwrap();
        assert_eq!(sets.ambient, set_of(&[Capability::CAP_KILL]));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with(
                "process.capabilities.ambient: ignoring CAP_NET_BIND_SERVICE, CAP_AUDIT_WRITE"
            ),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn oci_spec_capabilities() {
        // oci-spec's default: the three runc defaults in all five sets.
        let default = LinuxCapabilities::default();
        let (sets, warnings) = parse_capabilities(Some(&default), "process.capabilities").unwrap();
        assert!(warnings.is_empty());
        let expected = set_of(&[
            Capability::CAP_AUDIT_WRITE,
            Capability::CAP_KILL,
            Capability::CAP_NET_BIND_SERVICE,
        ]);
        assert_eq!(sets.bounding, expected);
        assert_eq!(sets.ambient, expected);
        assert_eq!(
            parse_capabilities(None, "p").unwrap().0,
            CapabilitySets::default()
        );

        // Every name oci-spec can produce is one the caps crate knows.
        let all_names: Vec<String> = known_capabilities().iter().map(|c| c.to_string()).collect();
        let every: LinuxCapabilities =
            serde_json::from_value(serde_json::json!({ "bounding": all_names })).unwrap();
        let (sets, _) = parse_capabilities(Some(&every), "process.capabilities").unwrap();
        let kernel_known = known_capabilities()
            .iter()
            .filter(|c| c.index() <= kernel_last_cap())
            .count();
        assert_eq!(sets.bounding.len(), kernel_known);
    }

    #[test]
    fn oci_spec_rejects_unknown_names_itself() {
        // Documented behaviour we rely on: oci-spec fails the whole deserialization.
        let result: Result<LinuxCapabilities, _> =
            serde_json::from_value(serde_json::json!({ "bounding": ["CAP_FOO"] }));
        assert!(result.is_err());
    }

    /// The Cap* lines of this thread's status as (name, value) pairs (capabilities are per thread,
    /// and libtest may run the test off the main thread).
    fn capability_status() -> Result<Vec<(String, u64)>> {
        let status = std::fs::read_to_string("/proc/thread-self/status")?;
        status
            .lines()
            .filter(|line| line.starts_with("Cap"))
            .map(|line| {
                let (name, hex) = line
                    .split_once(':')
                    .ok_or_else(|| anyhow!("bad line {line}"))?;
                Ok((name.to_string(), u64::from_str_radix(hex.trim(), 16)?))
            })
            .collect()
    }

    fn status_value(status: &str, name: &str) -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in {status}"))
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn restricted_sets() -> CapabilitySets {
        let value = serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]
        });
        let (sets, warnings) =
            parse_capabilities_json(Some(&value), "process.capabilities").unwrap();
        assert!(warnings.is_empty());
        sets
    }

    fn report_status() -> Result<String> {
        Ok(capability_status()?
            .iter()
            .map(|(name, value)| format!("{name}={value}\n"))
            .collect())
    }

    #[test]
    fn applies_restricted_sets_across_a_uid_switch() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let sets = restricted_sets();
        let status = crate::runtime::testutil::in_child_process(
            module_path!(),
            "applies_restricted_sets_across_a_uid_switch",
            || {
                drop_bounding_set(&sets)?;
                let uid = nix::unistd::Uid::from_raw(1000);
                let gid = nix::unistd::Gid::from_raw(1000);
                nix::unistd::setgroups(&[])?;
                nix::unistd::setgid(gid)?;
                nix::unistd::setuid(uid)?;
                apply_process_capabilities(&sets)?;
                let keepcaps = ::caps::securebits::has_keepcaps().map_err(|e| anyhow!("{e}"))?;
                Ok(format!(
                    "{}keepcaps={}\n",
                    report_status()?,
                    u8::from(keepcaps)
                ))
            },
        )
        .unwrap();
        let chown_kill = (1 << 0) | (1 << 5);
        let kill = 1 << 5;
        assert_eq!(status_value(&status, "CapBnd"), chown_kill, "{status}");
        assert_eq!(status_value(&status, "CapEff"), kill, "{status}");
        assert_eq!(status_value(&status, "CapPrm"), kill, "{status}");
        assert_eq!(status_value(&status, "CapInh"), kill, "{status}");
        assert_eq!(status_value(&status, "CapAmb"), kill, "{status}");
        assert_eq!(status_value(&status, "keepcaps"), 0, "{status}");
    }

    #[test]
    fn applies_restricted_sets_without_a_uid_switch() {
        // uid 0 keeps its full effective set through the uid step; the order of the capset
        // calls must still let the permitted set shrink below it.
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let sets = restricted_sets();
        let status = crate::runtime::testutil::in_child_process(
            module_path!(),
            "applies_restricted_sets_without_a_uid_switch",
            || {
                drop_bounding_set(&sets)?;
                apply_process_capabilities(&sets)?;
                report_status()
            },
        )
        .unwrap();
        assert_eq!(status_value(&status, "CapBnd"), 0x21, "{status}");
        assert_eq!(status_value(&status, "CapEff"), 0x20, "{status}");
        assert_eq!(status_value(&status, "CapPrm"), 0x20, "{status}");
        assert_eq!(status_value(&status, "CapInh"), 0x20, "{status}");
        assert_eq!(status_value(&status, "CapAmb"), 0x20, "{status}");
    }

    #[test]
    fn empty_sets_leave_no_capability() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let sets = CapabilitySets::default();
        let status = crate::runtime::testutil::in_child_process(
            module_path!(),
            "empty_sets_leave_no_capability",
            || {
                drop_bounding_set(&sets)?;
                apply_process_capabilities(&sets)?;
                report_status()
            },
        )
        .unwrap();
        for name in ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"] {
            assert_eq!(status_value(&status, name), 0, "{name}: {status}");
        }
    }

    #[test]
    fn inheritable_outside_bounding_names_the_field() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let sets = CapabilitySets {
            bounding: set_of(&[Capability::CAP_KILL]),
            inheritable: set_of(&[Capability::CAP_CHOWN]),
            ..Default::default()
        };
        let error = crate::runtime::testutil::in_child_process(
            module_path!(),
            "inheritable_outside_bounding_names_the_field",
            || {
                drop_bounding_set(&sets)?;
                apply_process_capabilities(&sets)?;
                Ok(String::new())
            },
        )
        .unwrap_err();
        assert!(
            error
                .starts_with("process.capabilities.inheritable: CAP_CHOWN not in the bounding set"),
            "{error}"
        );
    }
}
