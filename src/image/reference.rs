//! Image references as Docker writes them: `busybox`, `library/busybox:1.36`,
//! `localhost:5000/team/app:v1`, `ghcr.io/x/y@sha256:...`, normalized to a canonical form.

use super::digest::Digest;
use anyhow::{bail, Context, Result};
use std::fmt;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";

/// A named image. `tag` is `latest` when neither a tag nor a digest is given.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes a reference, Docker's way: a first component with a `.` or `:`, or
    /// `localhost`, is a registry; otherwise the registry is docker.io, and a one-component name
    /// there lives under `library/`.
    pub fn parse(s: &str) -> Result<Reference> {
        parse(s).with_context(|| format!("invalid image reference {s:?}"))
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker shows: `busybox` for docker.io/library/busybox,
    /// `user/app` for docker.io/user/app, the full name elsewhere.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The same name with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same name pinned to a digest (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

fn parse(s: &str) -> Result<Reference> {
    if s.is_empty() {
        bail!("empty reference");
    }
    if s.len() > 4096 {
        bail!("reference longer than 4096 bytes");
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(Digest::parse(d)?)),
        None => (s, None),
    };
    // A tag is what follows the last ':' after the last '/' (a ':' before it is a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        check_tag(t)?;
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, remainder))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            check_registry(first)?;
            (first.to_string(), remainder.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
        DEFAULT_REGISTRY.to_string()
    } else {
        registry
    };
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    check_repository(&repository)?;
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (None, Some(_)) => None,
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

fn check_tag(t: &str) -> Result<()> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        bail!("invalid tag {t:?}: [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}");
    }
    Ok(())
}

fn check_registry(r: &str) -> Result<()> {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]".contains(&b))
    {
        bail!("invalid registry host {host:?}");
    }
    if let Some(p) = port {
        p.parse::<u16>()
            .map_err(|_| anyhow::anyhow!("invalid registry port {p:?}"))?;
    }
    Ok(())
}

/// Path components: lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn check_repository(repo: &str) -> Result<()> {
    if repo.len() > 255 {
        bail!("repository name longer than 255 characters");
    }
    for component in repo.split('/') {
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let mut ok = !bytes.is_empty() && alnum(bytes[0]) && alnum(bytes[bytes.len() - 1]);
        let mut i = 0;
        while ok && i < bytes.len() {
            let b = bytes[i];
            if alnum(b) {
                i += 1;
                continue;
            }
            // A separator: one '.', one or two '_', or any run of '-', then an alphanumeric.
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let sep = &component[start..i];
            ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        }
        if !ok {
            bail!(
                "invalid repository path component {component:?}: lowercase letters, digits \
                 and separators (. _ __ -) between them"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_short_names() {
        assert_eq!(canon("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(canon("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(canon("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            canon("index.docker.io/library/x"),
            "docker.io/library/x:latest"
        );
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar_name(),
            "busybox"
        );
        assert_eq!(Reference::parse("u/app").unwrap().familiar_name(), "u/app");
    }

    #[test]
    fn registries_ports_and_digests() {
        assert_eq!(canon("localhost:5000/x/y:z"), "localhost:5000/x/y:z");
        assert_eq!(canon("localhost/x"), "localhost/x:latest");
        assert_eq!(canon("ghcr.io/a/b"), "ghcr.io/a/b:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:5000/app@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().unwrap().to_string(), d);
        assert_eq!(
            canon(&format!("app:v1@{d}")),
            format!("docker.io/library/app:v1@{d}")
        );
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn bad_references_are_named() {
        for bad in [
            "",
            "UPPER",
            "a//b",
            "a:",
            "a:-x",
            "a@sha256:12",
            "x/../y",
            "a__-b",
            "-a",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(
                format!("{e:#}").contains(&format!("{bad:?}")),
                "{bad}: {e:#}"
            );
        }
    }
}
