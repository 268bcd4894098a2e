//! `berth pull`: a manifest (the host's platform, or `--platform`, chosen from an index), its
//! config and layers fetched in parallel into the store, each verified by digest and size before
//! it is committed and each layer unpacked into its snapshot as soon as it is in, then the name. Blobs already in the store are not fetched again, so a pull
//! that was interrupted is completed by the next one; the name is set last, so an interrupted
//! pull leaves no image behind, only verified blobs.

use super::config::ImageConfig;
use super::credentials;
use super::digest::Digest;
use super::progress::Progress;
use super::reference::Reference;
use super::registry::client::CountingReader;
use super::registry::{self, FetchedManifest, Repository, TransportOptions};
use super::snapshot::is_layer_media_type;
use super::store::{choose_platform, host_platform, Store};
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, Platform};
use std::path::PathBuf;

pub struct PullOptions {
    /// `os/arch[/variant]`; default the host's.
    pub platform: Option<String>,
    pub transport: TransportOptions,
    /// Docker's config.json to read credentials from (default: the user's).
    pub auth_file: Option<PathBuf>,
    pub quiet: bool,
    /// How many blobs are fetched at once.
    pub jobs: usize,
}

/// What a pull did.
pub struct Pulled {
    /// The image manifest now named by the reference.
    pub manifest: Descriptor,
    pub digest: Digest,
    /// Blobs fetched, and blobs the store already had.
    pub fetched: usize,
    pub present: usize,
}

pub fn pull(store: &Store, reference: &Reference, options: &PullOptions) -> Result<Pulled> {
    pull_image(store, reference, options).with_context(|| format!("pulling {reference}"))
}

fn pull_image(store: &Store, reference: &Reference, options: &PullOptions) -> Result<Pulled> {
    let want = match &options.platform {
        Some(p) => check_platform(p)?,
        None => host_platform(),
    };
    let credential = credentials::lookup(&reference.registry, options.auth_file.as_deref())?;
    let repository = Repository::open(reference, &options.transport, credential, false)?;
    let tag_or_digest = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    let top = repository.fetch_manifest(&tag_or_digest)?;
    let (manifest, platform) = if registry::is_index_media_type(&top.media_type) {
        let index = ImageIndex::from_reader(&top.bytes[..])
            .with_context(|| format!("GET {}: not a valid image index", top.url))?;
        let chosen = choose_platform(index.manifests(), &want).with_context(|| {
            format!(
                "GET {}: no image for platform {want} (the index has: {})",
                top.url,
                platforms(&index)
            )
        })?;
        let child = repository.fetch_manifest(chosen.digest().as_ref())?;
        if registry::is_index_media_type(&child.media_type) {
            bail!(
                "GET {}: an index inside an index is not supported",
                child.url
            );
        }
        (child, chosen.platform().clone())
    } else {
        (top, None)
    };
    let image = ImageManifest::from_reader(&manifest.bytes[..])
        .with_context(|| format!("GET {}: not a valid image manifest", manifest.url))?;

    let progress = Progress::new(options.quiet);
    let mut blobs = vec![image.config().clone()];
    blobs.extend(image.layers().iter().cloned());
    let present = blobs
        .iter()
        .filter(|b| Digest::try_from(b.digest()).is_ok_and(|d| store.has_blob(&d)))
        .count();
    for layer in image.layers() {
        let media_type = layer.media_type().to_string();
        if !is_layer_media_type(&media_type) {
            bail!(
                "GET {}: layer {} has unknown media type {media_type:?}",
                manifest.url,
                layer.digest()
            );
        }
    }
    // The config first: its diff ids let each layer be unpacked as soon as it has arrived.
    fetch_blob(store, &repository, image.config(), &progress)?;
    let (_, config, diff_ids) = store.config_of(&image, &manifest.url)?;
    // A single-platform image asked for by --platform must be of that platform (an index entry
    // was chosen by it already).
    if options.platform.is_some() && platform.is_none() && !platform_matches(&config, &want) {
        bail!(
            "GET {}: the image is for {}/{}, not the platform {want} asked for",
            manifest.url,
            config.os,
            config.architecture
        );
    }
    let layers: Vec<(&Descriptor, Digest)> = image.layers().iter().zip(diff_ids).collect();
    registry::for_each_parallel(&layers, options.jobs, |(layer, diff_id)| {
        fetch_blob(store, &repository, layer, &progress)?;
        let blob = Digest::try_from(layer.digest())?;
        store
            .ensure_snapshot(&blob, diff_id)
            .with_context(|| format!("unpacking layer {blob} from {}", manifest.url))
            .map(drop)
    })?;

    // The manifest goes in after its blobs, and the name after the manifest.
    store
        .ingest_blob(
            &manifest.digest,
            Some(manifest.bytes.len() as u64),
            &mut &manifest.bytes[..],
        )
        .with_context(|| format!("storing the manifest from {}", manifest.url))?;
    let descriptor = manifest_descriptor(&manifest, platform);
    store.set_reference(reference, &descriptor)?;
    Ok(Pulled {
        manifest: descriptor,
        digest: manifest.digest,
        fetched: blobs.len() - present,
        present,
    })
}

fn fetch_blob(
    store: &Store,
    repository: &Repository,
    blob: &Descriptor,
    progress: &Progress,
) -> Result<()> {
    let digest = Digest::try_from(blob.digest())?;
    let bar = progress.bar(digest.short(), blob.size());
    if store.has_blob(&digest) {
        bar.finish("exists");
        return Ok(());
    }
    let mut stream = repository.fetch_blob(&digest, blob.size())?;
    if let Some(n) = stream.size.filter(|n| *n != blob.size()) {
        bar.abandon("wrong size");
        bail!(
            "GET {}: the registry sends {n} bytes but the manifest says {} for {digest}",
            stream.url,
            blob.size()
        );
    }
    let count = |n| bar.inc(n);
    let mut counted = CountingReader {
        inner: &mut stream.reader,
        progress: &count,
    };
    match store.ingest_blob(&digest, Some(blob.size()), &mut counted) {
        Ok(_) => {
            bar.finish("done");
            Ok(())
        }
        Err(e) => {
            bar.abandon("failed");
            Err(e.context(format!("GET {}", stream.url)))
        }
    }
}

/// Does the config's os/architecture[/variant] match `want` (a missing variant matches any)?
fn platform_matches(config: &ImageConfig, want: &str) -> bool {
    let mut parts = want.split('/');
    let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
    os == Some(config.os.as_str())
        && arch == Some(config.architecture.as_str())
        && match (variant, config.variant.as_deref()) {
            (Some(w), Some(c)) => w == c,
            _ => true,
        }
}

fn manifest_descriptor(manifest: &FetchedManifest, platform: Option<Platform>) -> Descriptor {
    let mut d = Descriptor::new(
        manifest.media_type.as_str().into(),
        manifest.bytes.len() as u64,
        &manifest.digest,
    );
    d.set_platform(platform);
    d
}

/// `os/arch[/variant]`, each part non-empty.
pub fn check_platform(p: &str) -> Result<String> {
    let parts: Vec<&str> = p.split('/').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|s| s.is_empty()) {
        bail!("--platform {p:?}: expected os/arch or os/arch/variant (linux/amd64, linux/arm/v7)");
    }
    Ok(p.to_string())
}

fn platforms(index: &ImageIndex) -> String {
    let names: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|m| m.platform().as_ref())
        .map(|p| {
            let base = format!("{}/{}", p.os(), p.architecture());
            match p.variant() {
                Some(v) => format!("{base}/{v}"),
                None => base,
            }
        })
        .collect();
    if names.is_empty() {
        "no platforms".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_platform_matching() {
        let config: ImageConfig = serde_json::from_str(
            r#"{"os":"linux","architecture":"arm","variant":"v7","rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert!(platform_matches(&config, "linux/arm"));
        assert!(platform_matches(&config, "linux/arm/v7"));
        assert!(!platform_matches(&config, "linux/arm/v6"));
        assert!(!platform_matches(&config, "linux/amd64"));
        assert!(!platform_matches(&config, "windows/arm"));
    }

    #[test]
    fn platform_must_be_os_arch_variant() {
        assert_eq!(check_platform("linux/arm64").unwrap(), "linux/arm64");
        assert_eq!(check_platform("linux/arm/v7").unwrap(), "linux/arm/v7");
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            let err = check_platform(bad).unwrap_err().to_string();
            assert!(err.contains("--platform"), "{err}");
        }
    }
}
