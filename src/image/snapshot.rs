//! Layer snapshots: each layer unpacked once into `snapshots/<diff-id hex>/`, shared by every
//! image that has it and never changed afterwards. A snapshot holds only its layer's changes,
//! in overlayfs's format, so an image's root filesystem is an overlay of its snapshots.

use super::config::ImageConfig;
use super::digest::{Digest, DigestingReader};
use super::store::{Store, TempFile};
use super::unpack::{apply_layer, decompress, UnpackOptions};
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageManifest};
use std::io;
use std::path::PathBuf;

/// Layer media types berth can unpack (OCI and Docker schema2; compression is sniffed).
pub fn is_layer_media_type(m: &str) -> bool {
    matches!(
        m,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// An image ready to be turned into a root filesystem.
pub struct ImageLayers {
    pub manifest: Digest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    /// The layers' descriptors and their diff ids, base first.
    pub layers: Vec<(Descriptor, Digest)>,
}

impl Store {
    /// The config and layers of an image manifest, checked against each other.
    pub fn image_layers(&self, manifest: &Digest) -> Result<ImageLayers> {
        let m = self.read_manifest(manifest)?;
        let (config_digest, config, diff_ids) = self.config_of(&m, &format!("image {manifest}"))?;
        let mut layers = Vec::new();
        for (desc, diff_id) in m.layers().iter().zip(diff_ids) {
            let media_type = desc.media_type().to_string();
            if !is_layer_media_type(&media_type) {
                bail!(
                    "image {manifest}: layer {} has unknown media type {media_type:?}",
                    desc.digest()
                );
            }
            layers.push((desc.clone(), diff_id));
        }
        Ok(ImageLayers {
            manifest: manifest.clone(),
            config_digest,
            config,
            layers,
        })
    }

    /// The config an image manifest names (already in the store) and the diff ids of its
    /// layers, one per layer of the manifest. `what` names the image in errors.
    pub fn config_of(
        &self,
        m: &ImageManifest,
        what: &str,
    ) -> Result<(Digest, ImageConfig, Vec<Digest>)> {
        let config_digest = Digest::try_from(m.config().digest())?;
        let config: ImageConfig = self
            .read_json(&config_digest)
            .with_context(|| format!("{what}: config {config_digest}"))?;
        if config.rootfs.diff_ids.len() != m.layers().len() {
            bail!(
                "{what}: the manifest has {} layers but the config lists {} diff ids",
                m.layers().len(),
                config.rootfs.diff_ids.len()
            );
        }
        let diff_ids = config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| {
                Digest::parse(d).with_context(|| format!("{what}: config {config_digest}: diff id"))
            })
            .collect::<Result<_>>()?;
        Ok((config_digest, config, diff_ids))
    }

    pub fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.snapshots_dir().join(diff_id.hex())
    }

    /// Unpacks every layer of an image (by its manifest digest) into shared snapshots; layers
    /// already unpacked are skipped.
    pub fn unpack_image(&self, manifest: &Digest) -> Result<()> {
        let image = self.image_layers(manifest)?;
        for (desc, diff_id) in &image.layers {
            let blob = Digest::try_from(desc.digest())?;
            self.ensure_snapshot(&blob, diff_id)
                .with_context(|| format!("image {manifest}: unpacking layer {blob}"))?;
        }
        Ok(())
    }

    /// The snapshot directories of an image, base first, unpacking what is missing.
    pub fn snapshot_dirs(&self, manifest: &Digest) -> Result<Vec<PathBuf>> {
        self.unpack_image(manifest)?;
        let image = self.image_layers(manifest)?;
        Ok(image
            .layers
            .iter()
            .map(|(_, id)| self.snapshot_path(id))
            .collect())
    }

    /// Unpacks one layer blob into `snapshots/<diff id>` unless it is there. The layer goes to a
    /// temporary directory first and is renamed into place only when its uncompressed digest
    /// equals `diff_id`; a concurrent unpacker of the same layer simply loses the rename.
    pub fn ensure_snapshot(&self, blob: &Digest, diff_id: &Digest) -> Result<PathBuf> {
        let dest = self.snapshot_path(diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let temp = TempFile::create(&self.ingest_dir(), &format!("snapshot-{}", diff_id.short()))?;
        std::fs::create_dir(temp.path())
            .with_context(|| format!("cannot create {}", temp.path().display()))?;
        let (_, stream) = decompress(self.open_blob(blob)?)?;
        let mut hashed = DigestingReader::new(stream);
        apply_layer(temp.path(), &mut hashed, UnpackOptions::default())?;
        // The tar stream may end before the blob does (padding): hash all of it.
        io::copy(&mut hashed, &mut io::sink()).context("reading the layer")?;
        let (got, _) = hashed.finish();
        if &got != diff_id {
            bail!("layer {blob}: uncompressed digest {got} does not match the diff id {diff_id} in the image config");
        }
        match temp.commit(&dest) {
            Ok(()) => Ok(dest),
            Err(_) if dest.is_dir() => Ok(dest), // Another process unpacked it meanwhile.
            Err(e) => Err(e),
        }
    }
}
