//! Image management over the store: listing, inspecting, tagging and removing images, and
//! deleting the content only removed images held.

use super::bundle::live_bundles;
use super::config::ImageConfig;
use super::digest::Digest;
use super::reference::Reference;
use super::store::{manifest_kind, ManifestKind, Store};
use anyhow::{bail, Context, Result};
use oci_spec::image::Descriptor;
use serde_json::json;
use std::collections::BTreeSet;

/// One named image as `images` shows it.
pub struct ImageSummary {
    pub reference: Reference,
    /// The manifest (or index) digest the name points at.
    pub digest: Digest,
    /// Docker's image id: the config digest of this host's image.
    pub id: Digest,
    pub created: Option<String>,
    /// Compressed size of config and layers.
    pub size: u64,
}

impl Store {
    /// The image id of a manifest or index: the config digest of the host's image, or the
    /// descriptor's own digest when that cannot be read.
    pub fn image_id(&self, desc: &Descriptor) -> Digest {
        self.image_manifest(desc, None)
            .ok()
            .and_then(|(_, m)| Digest::try_from(m.config().digest()).ok())
            .unwrap_or_else(|| Digest::try_from(desc.digest()).expect("store digests are sha256"))
    }

    pub fn summaries(&self) -> Result<Vec<ImageSummary>> {
        let mut out = Vec::new();
        for (reference, desc) in self.references()? {
            let digest = Digest::try_from(desc.digest())?;
            let (id, created, size) = match self.image_manifest(&desc, None) {
                Ok((_, m)) => {
                    let config = Digest::try_from(m.config().digest())?;
                    let created = self
                        .read_json::<ImageConfig>(&config)
                        .ok()
                        .and_then(|c| c.created);
                    let size = m.config().size() + m.layers().iter().map(|l| l.size()).sum::<u64>();
                    (config, created, size)
                }
                Err(_) => (digest.clone(), None, desc.size()),
            };
            out.push(ImageSummary {
                reference,
                digest,
                id,
                created,
                size,
            });
        }
        Ok(out)
    }

    /// Finds the names meant by `arg`: a reference, or an image id (or unique prefix of one).
    pub fn lookup(&self, arg: &str) -> Result<Vec<(Reference, Descriptor)>> {
        let parsed = Reference::parse(arg);
        if let Ok(r) = &parsed {
            if let Ok(d) = self.resolve(r) {
                if r.digest.is_some() {
                    let named: Vec<_> = self
                        .references()?
                        .into_iter()
                        .filter(|(_, e)| e.digest() == d.digest())
                        .collect();
                    // A manifest the store holds under no name is still found by its digest.
                    return Ok(if named.is_empty() {
                        vec![(r.clone(), d)]
                    } else {
                        named
                    });
                }
                return Ok(vec![(r.clone(), d)]);
            }
        }
        let hex = arg.strip_prefix("sha256:").unwrap_or(arg);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<_> = self
                .references()?
                .into_iter()
                .filter(|(_, d)| {
                    self.image_id(d).hex().starts_with(hex)
                        || d.digest()
                            .to_string()
                            .trim_start_matches("sha256:")
                            .starts_with(hex)
                })
                .collect();
            if !hits.is_empty() {
                return Ok(hits);
            }
        }
        match parsed {
            Ok(r) => bail!(
                "image {r} is not in the store ({})",
                self.data_root().display()
            ),
            Err(e) => Err(e)
                .with_context(|| format!("no image with id {arg:?} and not a valid reference")),
        }
    }

    /// Every blob a manifest or index holds (itself included), as far as the store has them.
    pub fn blobs_of(&self, d: &Digest, into: &mut BTreeSet<Digest>) {
        if !into.insert(d.clone()) || !self.has_blob(d) {
            return;
        }
        let Ok(bytes) = self.read_manifest_bytes(d) else {
            return;
        };
        let kind = super::store::sniff_manifest_media_type(&bytes)
            .ok()
            .and_then(|m| manifest_kind(&m));
        match kind {
            Some(ManifestKind::Image) => {
                if let Ok(m) = self.read_manifest(d) {
                    for desc in std::iter::once(m.config()).chain(m.layers()) {
                        if let Ok(x) = Digest::try_from(desc.digest()) {
                            into.insert(x);
                        }
                    }
                }
            }
            Some(ManifestKind::Index) => {
                if let Ok(i) = self.read_image_index(d) {
                    for child in i.manifests() {
                        if let Ok(x) = Digest::try_from(child.digest()) {
                            self.blobs_of(&x, into);
                        }
                    }
                }
            }
            None => {}
        }
    }

    /// Deletes the blobs and snapshots of `removed` (manifest or index digests) that no
    /// remaining name and no live bundle still needs. Returns the blobs deleted.
    pub fn delete_unused(&self, removed: &[Digest]) -> Result<Vec<Digest>> {
        let _lock = self.lock()?;
        let mut keep = BTreeSet::new();
        for (_, d) in self.references()? {
            self.blobs_of(&Digest::try_from(d.digest())?, &mut keep);
        }
        for b in live_bundles(self)? {
            for d in [&b.manifest, &b.resolved] {
                if let Ok(d) = Digest::parse(d) {
                    self.blobs_of(&d, &mut keep);
                }
            }
        }
        let mut candidates = BTreeSet::new();
        for d in removed {
            self.blobs_of(d, &mut candidates);
        }
        // Snapshots are named by diff id: keep those of every image still kept.
        let kept_snapshots = self.diff_ids_of(&keep);
        let dropped_snapshots = self.diff_ids_of(&candidates);
        for id in dropped_snapshots.difference(&kept_snapshots) {
            let p = self.snapshot_path(id);
            if p.exists() {
                std::fs::remove_dir_all(&p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        let mut deleted = Vec::new();
        for d in candidates.difference(&keep) {
            if std::fs::remove_file(self.blob_path(d)).is_ok() {
                deleted.push(d.clone());
            }
        }
        Ok(deleted)
    }

    /// Deletes the layer blobs and snapshots `layers` (blob, diff id) that no named image and
    /// no live bundle needs (the build cache's layers, when it is pruned). Returns how many
    /// blobs were deleted.
    pub fn delete_unused_layers(&self, layers: &[(Digest, Digest)]) -> Result<usize> {
        let _lock = self.lock()?;
        let mut keep = BTreeSet::new();
        for (_, d) in self.references()? {
            self.blobs_of(&Digest::try_from(d.digest())?, &mut keep);
        }
        for b in live_bundles(self)? {
            for d in [&b.manifest, &b.resolved] {
                if let Ok(d) = Digest::parse(d) {
                    self.blobs_of(&d, &mut keep);
                }
            }
        }
        let kept_snapshots = self.diff_ids_of(&keep);
        let mut deleted = 0;
        for (blob, diff_id) in layers {
            if !kept_snapshots.contains(diff_id) {
                let p = self.snapshot_path(diff_id);
                if p.exists() {
                    std::fs::remove_dir_all(&p)
                        .with_context(|| format!("cannot remove {}", p.display()))?;
                }
            }
            if !keep.contains(blob) && std::fs::remove_file(self.blob_path(blob)).is_ok() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    fn diff_ids_of(&self, blobs: &BTreeSet<Digest>) -> BTreeSet<Digest> {
        let mut ids = BTreeSet::new();
        // Only manifests name layers; image_layers refuses large (layer) blobs unread.
        for d in blobs {
            if let Ok(img) = self.image_layers(d) {
                ids.extend(img.layers.into_iter().map(|(_, id)| id));
            }
        }
        ids
    }

    /// `rmi`: removes the names `arg` means. When that leaves an image unnamed, it must not be
    /// used by a live bundle (unless `force`), and its content no other image needs is deleted.
    /// Returns Docker's report lines (`Untagged: ...`, `Deleted: ...`).
    pub fn remove_image(&self, arg: &str, force: bool) -> Result<Vec<String>> {
        let names = self.lookup(arg)?;
        let by_id = Reference::parse(arg).map_or(true, |r| self.resolve(&r).is_err());
        if by_id && names.len() > 1 && !force {
            let shown: Vec<String> = names.iter().map(|(r, _)| r.to_string()).collect();
            bail!(
                "image {arg} is referenced by several names ({}): remove them by name or use --force",
                shown.join(", ")
            );
        }
        let mut report = Vec::new();
        let mut orphaned = Vec::new();
        for (r, desc) in names {
            let digest = desc.digest().to_string();
            let others = self
                .references()?
                .into_iter()
                .filter(|(o, d)| o != &r && d.digest().to_string() == digest)
                .count();
            if others == 0 && !force {
                let manifest = self
                    .image_manifest(&desc, None)
                    .map(|(d, _)| d.to_string())
                    .unwrap_or_else(|_| digest.clone());
                let bundles: Vec<std::path::PathBuf> = live_bundles(self)?
                    .into_iter()
                    .filter(|b| b.uses(&digest) || b.uses(&manifest))
                    .map(|b| b.dir)
                    .collect();
                // The engine's containers keep their bundle in containers/ID/bundle.
                let containers = self.data_root().join("containers");
                if let Some(id) = bundles.iter().find_map(|b| {
                    let parent = b.parent()?;
                    (b.file_name()? == "bundle" && parent.parent()? == containers)
                        .then(|| parent.file_name())?
                }) {
                    let id = id.to_string_lossy();
                    bail!(
                        "conflict: unable to remove repository reference \"{arg}\" (must force) - \
                         container {} is using its referenced image {}",
                        &id[..id.len().min(12)],
                        &self.image_id(&desc).hex()[..12]
                    );
                }
                let users: Vec<String> = bundles.iter().map(|b| b.display().to_string()).collect();
                if !users.is_empty() {
                    bail!(
                        "cannot remove image {r}: in use by bundle {} (berth rm-bundle it first, or use --force)",
                        users.join(", ")
                    );
                }
            }
            self.remove_reference(&r)?;
            report.push(format!("Untagged: {r}"));
            if others == 0 {
                orphaned.push(Digest::parse(&digest)?);
            }
        }
        for d in self.delete_unused(&orphaned)? {
            report.push(format!("Deleted: {d}"));
        }
        Ok(report)
    }

    /// `tag SRC DST`.
    pub fn tag(&self, src: &str, dst: &Reference) -> Result<()> {
        if dst.digest.is_some() {
            bail!("cannot tag with a digest reference {dst}");
        }
        let names = self.lookup(src)?;
        let (_, desc) = names.first().context("no such image")?;
        self.set_reference(dst, desc)
    }

    /// `image inspect`: Docker's fields where they apply, plus the manifest and its layers.
    pub fn inspect(&self, arg: &str) -> Result<serde_json::Value> {
        let names = self.lookup(arg)?;
        let (_, desc) = names.first().context("no such image")?;
        let (manifest_digest, manifest) = self.image_manifest(desc, None)?;
        let config_digest = Digest::try_from(manifest.config().digest())?;
        let config: ImageConfig = self.read_json(&config_digest)?;
        let all_names: Vec<String> = self
            .references()?
            .into_iter()
            .filter(|(_, d)| d.digest() == desc.digest())
            .map(|(r, _)| r.to_string())
            .collect();
        let size: u64 =
            manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
        Ok(json!({
            "Id": config_digest.to_string(),
            "RepoTags": all_names.iter().filter(|n| !n.contains('@')).collect::<Vec<_>>(),
            "RepoDigests": all_names.iter().map(|n| {
                let r = Reference::parse(n).expect("stored names parse");
                format!("{}@{}", r.name(), desc.digest())
            }).collect::<BTreeSet<_>>(),
            "Digest": desc.digest().to_string(),
            "MediaType": desc.media_type().to_string(),
            "ManifestDigest": manifest_digest.to_string(),
            "Created": config.created,
            "Author": config.author,
            "Architecture": config.architecture,
            "Os": config.os,
            "Variant": config.variant,
            "Config": config.config,
            "RootFS": { "Type": config.rootfs.kind, "Layers": config.rootfs.diff_ids },
            "Layers": manifest.layers(),
            "Size": size,
        }))
    }
}
