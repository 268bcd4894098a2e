//! Loading and validating a bundle's `config.json`.
//!
//! Parsing goes through `serde_path_to_error` so that a type error names the JSON field
//! (`process.user.uid: invalid type ...`) instead of only a line and column. Validation then
//! catches what the kernel would otherwise reject with a bare EINVAL deep inside the child.

use crate::runtime::inroot;
use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, Mode, SFlag};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::collections::HashSet;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// The oldest and newest runtime-spec versions berth accepts (major 1, minor 0 to 3).
pub const OCI_VERSION_MIN: &str = "1.0.0";
pub const OCI_VERSION_MAX: &str = "1.3.0";

/// A bundle ready to run: the parsed spec and the absolute paths it refers to.
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
}

/// Reads `<dir>/config.json`, parses and validates it.
pub fn load_bundle(dir: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(dir)
        .with_context(|| format!("--bundle {}: cannot open bundle directory", dir.display()))?;
    let config = dir.join("config.json");
    let bytes = std::fs::read(&config)
        .with_context(|| format!("{}: cannot read config.json", config.display()))?;
    let spec = parse_spec(&bytes).with_context(|| format!("{}", config.display()))?;
    let root = spec
        .root()
        .as_ref()
        .context("root: missing (the spec needs root.path on Linux)")?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    open_rootfs(&dir, root.path())?;
    validate(&spec)?;
    Ok(Bundle { dir, rootfs, spec })
}

/// Opens the directory `root.path` names (`O_PATH`), without letting what the bundle holds
/// send it elsewhere: a relative path must resolve inside the bundle directory (symlinks on the
/// way included, `..` and absolute links leaving it refused), and the last component must not
/// be a symlink, whether the path is relative or absolute (an absolute one is the caller's
/// explicit choice, as Podman passes). Magic links are never followed.
///
/// The parent checks the bundle with it; the child opens the rootfs again with it in its own
/// mount namespace and binds it from that descriptor.
pub fn open_rootfs(bundle_dir: &Path, root_path: &Path) -> Result<OwnedFd> {
    // A trailing '/' would make the kernel follow a last-component symlink despite O_NOFOLLOW.
    let shown = root_path.display();
    let root_path: PathBuf = root_path.components().collect();
    let bundle;
    let (dir, resolve) = if root_path.is_absolute() {
        (nix::fcntl::AT_FDCWD, libc::RESOLVE_NO_MAGICLINKS)
    } else {
        bundle = nix::fcntl::open(
            bundle_dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("--bundle {}: cannot open", bundle_dir.display()))?;
        (
            bundle.as_fd(),
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
        )
    };
    let fd = inroot::openat2(dir, &root_path, libc::O_PATH | libc::O_NOFOLLOW, resolve).map_err(
        |e| match e {
            Errno::EXDEV => anyhow::anyhow!(
                "root.path: {shown:?} leads outside the bundle directory {} (a relative \
                 root.path must stay inside it)",
                bundle_dir.display()
            ),
            Errno::ELOOP => anyhow::anyhow!(
                "root.path: {shown:?}: too many symlinks, or a magic link on the way"
            ),
            e => anyhow::Error::new(e).context(format!("root.path: {shown}: cannot access rootfs")),
        },
    )?;
    let kind = SFlag::from_bits_truncate(
        fstat(&fd)
            .with_context(|| format!("root.path: {shown}"))?
            .st_mode,
    ) & SFlag::S_IFMT;
    if kind == SFlag::S_IFLNK {
        bail!(
            "root.path: {shown:?} is a symlink; berth does not follow it (name the rootfs \
             directory itself)"
        );
    }
    if kind != SFlag::S_IFDIR {
        bail!("root.path: {shown} is not a directory");
    }
    Ok(fd)
}

/// Parses config.json bytes; errors name the JSON path of the offending field.
pub fn parse_spec(bytes: &[u8]) -> Result<Spec> {
    let fixed = crate::runtime::sched::oci_spec_flag_names(bytes, true);
    let bytes = fixed.as_deref().unwrap_or(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let spec: Spec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            anyhow::anyhow!("invalid config.json: {inner}")
        } else {
            anyhow::anyhow!("{path}: {inner}")
        }
    })?;
    Ok(spec)
}

/// Checks the spec for what berth cannot honour, naming the field at fault.
pub fn validate(spec: &Spec) -> Result<()> {
    check_version(spec.version())?;
    let process = spec.process().as_ref().context("process: missing")?;
    match process.args() {
        Some(args) if !args.is_empty() => {}
        _ => bail!("process.args: must name at least the program to run"),
    }
    if !process.cwd().is_absolute() {
        bail!(
            "process.cwd: {:?} is not an absolute path",
            process.cwd().display()
        );
    }
    if let Some(env) = process.env() {
        for (i, e) in env.iter().enumerate() {
            if !e.contains('=') || e.starts_with('=') {
                bail!("process.env[{i}]: {e:?} is not of the form KEY=VALUE");
            }
        }
    }
    if let Some(rlimits) = process.rlimits() {
        for (i, r) in rlimits.iter().enumerate() {
            if r.soft() > r.hard() {
                bail!(
                    "process.rlimits[{i}]: soft limit {} is above hard limit {}",
                    r.soft(),
                    r.hard()
                );
            }
        }
    }
    check_user(process)?;
    check_hooks(spec)?;
    if let Some(mounts) = spec.mounts() {
        for (i, m) in mounts.iter().enumerate() {
            if !m.destination().is_absolute() {
                bail!(
                    "mounts[{i}].destination: {:?} is not an absolute path",
                    m.destination().display()
                );
            }
        }
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    let mut has_user_ns = false;
    let mut own_uts = false;
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            bail!(
                "linux.namespaces[{i}]: namespace {:?} is listed twice",
                ns.typ().to_string()
            );
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                bail!(
                    "linux.namespaces[{i}].path: {:?} is not absolute",
                    p.display()
                );
            }
        }
        has_user_ns |= ns.typ() == LinuxNamespaceType::User;
        // New or joined by path: either way not the runtime's own (runc sets the name in a
        // joined one too).
        own_uts |= ns.typ() == LinuxNamespaceType::Uts;
    }
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    let new_user_ns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if new_user_ns && !has_maps {
        bail!("linux.uidMappings: a new user namespace needs uidMappings and gidMappings");
    }
    if has_maps && !has_user_ns {
        bail!("linux.uidMappings: mappings are given but linux.namespaces has no user namespace");
    }
    let named = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if (named(spec.hostname()) || named(spec.domainname())) && !own_uts {
        let field = if named(spec.hostname()) {
            "hostname"
        } else {
            "domainname"
        };
        bail!("{field}: setting it needs a uts namespace (new, or joined by path) in linux.namespaces, not the host's");
    }
    if linux.time_offsets().is_some() && !seen.contains(&LinuxNamespaceType::Time) {
        bail!("linux.timeOffsets: needs a time namespace in linux.namespaces");
    }
    if let Some(p) = linux.rootfs_propagation() {
        if !matches!(
            p.as_str(),
            "" | "private"
                | "rprivate"
                | "slave"
                | "rslave"
                | "shared"
                | "rshared"
                | "unbindable"
                | "runbindable"
        ) {
            bail!("linux.rootfsPropagation: unknown propagation {p:?}");
        }
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            check_sysctl(key, spec, linux)?;
        }
    }
    for field in [
        ("linux.maskedPaths", linux.masked_paths()),
        ("linux.readonlyPaths", linux.readonly_paths()),
    ] {
        if field.1.as_ref().is_some_and(|v| !v.is_empty())
            && !seen.contains(&LinuxNamespaceType::Mount)
        {
            bail!(
                "{}: needs a mount namespace in linux.namespaces (without one they would \
                 change the host's mounts)",
                field.0
            );
        }
        for (i, p) in field.1.iter().flatten().enumerate() {
            if !Path::new(p).is_absolute()
                || Path::new(p).components().any(|c| c == Component::ParentDir)
            {
                bail!(
                    "{}[{i}]: {p:?} must be an absolute path without ..",
                    field.0
                );
            }
        }
    }
    Ok(())
}

/// uid and gid 4294967295 are -1 to setresuid/setresgid: "leave unchanged", so the process
/// would silently keep berth's root. runc refuses them too.
pub(crate) fn check_user(process: &oci_spec::runtime::Process) -> Result<()> {
    let user = process.user();
    if user.uid() == u32::MAX {
        bail!("process.user.uid: {} is not a valid uid", u32::MAX);
    }
    if user.gid() == u32::MAX {
        bail!("process.user.gid: {} is not a valid gid", u32::MAX);
    }
    for (i, g) in user.additional_gids().iter().flatten().enumerate() {
        if *g == u32::MAX {
            bail!("process.user.additionalGids[{i}]: {g} is not a valid gid");
        }
    }
    Ok(())
}

/// The spec requires absolute hook paths; a relative one would run whatever the caller's
/// working directory holds under that name.
fn check_hooks(spec: &Spec) -> Result<()> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    #[allow(deprecated)]
    let kinds = [
        ("prestart", hooks.prestart()),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
        ("startContainer", hooks.start_container()),
        ("poststart", hooks.poststart()),
        ("poststop", hooks.poststop()),
    ];
    for (kind, list) in kinds {
        for (i, h) in list.iter().flatten().enumerate() {
            if !h.path().is_absolute() {
                bail!(
                    "hooks.{kind}[{i}].path: {:?} is not an absolute path",
                    h.path().display()
                );
            }
        }
    }
    Ok(())
}

/// The sysctls that belong to a namespace the container can have its own of (runc's list).
/// Anything else is the host's, whatever path berth writes it through.
const IPC_SYSCTLS: [&str; 8] = [
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// A sysctl is only written when the container has its own namespace of the kind the sysctl
/// belongs to: otherwise the write would change the host.
fn check_sysctl(key: &str, spec: &Spec, linux: &oci_spec::runtime::Linux) -> Result<()> {
    if key.is_empty() || key.split(['.', '/']).any(|c| c.is_empty() || c == "..") {
        bail!("linux.sysctl: invalid key {key:?}");
    }
    let dotted = key.replace('/', ".");
    let ns = |t: LinuxNamespaceType| linux.namespaces().iter().flatten().find(|n| n.typ() == t);
    let field = format!("linux.sysctl[{key:?}]");
    if IPC_SYSCTLS.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
        if ns(LinuxNamespaceType::Ipc).is_none() {
            bail!("{field}: not allowed in the host's ipc namespace (linux.namespaces has no ipc)");
        }
        return Ok(());
    }
    if dotted.starts_with("net.") {
        match ns(LinuxNamespaceType::Network) {
            None => bail!(
                "{field}: not allowed in the host's network namespace (linux.namespaces has no network)"
            ),
            Some(n) => {
                if let Some(path) = n.path() {
                    if is_own_namespace(path, "net") {
                        bail!("{field}: not allowed in the host's network namespace ({} is berth's own)", path.display());
                    }
                }
            }
        }
        return Ok(());
    }
    if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
        if ns(LinuxNamespaceType::Uts).is_none() {
            bail!("{field}: not allowed in the host's uts namespace (linux.namespaces has no uts)");
        }
        let conflicting = if dotted == "kernel.hostname" {
            spec.hostname().is_some().then_some("hostname")
        } else {
            spec.domainname().is_some().then_some("domainname")
        };
        if let Some(other) = conflicting {
            bail!("{field}: conflicts with the {other} field; set one of them");
        }
        return Ok(());
    }
    bail!("{field}: not in a namespace of the container's own: it would change the host")
}

/// Whether the namespace file at `path` is berth's own namespace of that kind.
fn is_own_namespace(path: &Path, kind: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata(format!("/proc/self/ns/{kind}"));
    match (std::fs::metadata(path), own) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn check_version(version: &str) -> Result<()> {
    let mut parts = version.split(['.', '-', '+']);
    let major = parts.next().and_then(|s| s.parse::<u32>().ok());
    let minor = parts.next().and_then(|s| s.parse::<u32>().ok());
    match (major, minor) {
        (Some(1), Some(minor)) if minor <= 3 => Ok(()),
        (Some(_), Some(_)) => bail!(
            "ociVersion: {version:?} is not supported (berth accepts {OCI_VERSION_MIN} to 1.3.x)"
        ),
        _ => bail!("ociVersion: {version:?} is not a version number"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}"#;

    #[test]
    fn minimal_spec_is_valid() {
        validate(&parse_spec(MINIMAL.as_bytes()).unwrap()).unwrap();
    }

    #[test]
    fn type_error_names_the_field() {
        let bad = MINIMAL.replace(r#""uid":0"#, r#""uid":"zero""#);
        let err = parse_spec(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("process.user.uid:"), "{err}");
    }

    #[test]
    fn version_checks() {
        for ok in ["1.0.0", "1.0.2-dev", "1.2.0", "1.3.1"] {
            check_version(ok).unwrap();
        }
        for bad in ["2.0.0", "1.4.0", "0.9", "abc"] {
            let err = check_version(bad).unwrap_err().to_string();
            assert!(err.starts_with("ociVersion:"), "{err}");
        }
    }

    #[test]
    fn empty_args_named() {
        let bad = MINIMAL.replace(r#"["sh"]"#, "[]");
        let err = validate(&parse_spec(bad.as_bytes()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("process.args:"), "{err}");
    }

    #[test]
    fn root_path_stays_in_the_bundle_and_is_no_symlink() {
        use std::os::unix::fs::symlink;
        let base = std::env::temp_dir().join(format!("berth-rootpath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let bundle = base.join("bundle");
        std::fs::create_dir_all(bundle.join("layers/real")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        symlink("layers", bundle.join("via")).unwrap();
        symlink(base.join("outside"), bundle.join("out")).unwrap();
        symlink("layers/real", bundle.join("inside")).unwrap();
        let open = |p: &str| open_rootfs(&bundle, Path::new(p)).map_err(|e| format!("{e:#}"));
        assert!(open("layers/real").is_ok());
        assert!(
            open("./via/real/").is_ok(),
            "a link on the way, inside the bundle"
        );
        assert!(
            open(base.join("outside").to_str().unwrap()).is_ok(),
            "absolute: the caller's"
        );
        for (p, says) in [
            ("out", "is a symlink"),
            ("out/", "is a symlink"),
            ("inside", "is a symlink"),
            ("inside/", "is a symlink"),
            ("../outside", "outside the bundle"),
            ("missing", "cannot access rootfs"),
        ] {
            let e = open(p).expect_err(p);
            assert!(e.starts_with("root.path: ") && e.contains(says), "{p}: {e}");
        }
        let abs_link = bundle.join("out");
        let e = open(abs_link.to_str().unwrap()).unwrap_err();
        assert!(e.contains("is a symlink"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
