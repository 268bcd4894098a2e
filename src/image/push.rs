//! `berth push`: an image from the store to a registry. Each blob is first checked with a HEAD
//! (a blob the registry has is not sent again), then uploaded in one PUT or, when larger than
//! the chunk size, in PATCHes; the manifest goes last, under the tag, with its own media type.
//! An index is pushed with each of its manifests, by digest, before it.

use super::credentials;
use super::digest::Digest;
use super::progress::Progress;
use super::reference::Reference;
use super::registry::{self, Repository, TransportOptions};
use super::store::{sniff_manifest_media_type, Store};
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

/// Blobs above this size are sent in chunks of this size unless `--chunk-size` says otherwise.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 << 20;

pub struct PushOptions {
    pub transport: TransportOptions,
    pub auth_file: Option<PathBuf>,
    pub quiet: bool,
    /// Blobs larger than this go up in PATCH chunks of this size; 0: always one PUT.
    pub chunk_size: u64,
    /// How many blobs are uploaded at once.
    pub jobs: usize,
}

/// What a push did.
pub struct Pushed {
    /// The digest of the manifest (or index) now under the destination's tag.
    pub digest: Digest,
    pub blobs: BlobCounts,
}

/// What became of each blob: sent, mounted from the source repository, or already there.
#[derive(Default, Clone, Copy, Debug)]
pub struct BlobCounts {
    pub uploaded: usize,
    pub mounted: usize,
    pub present: usize,
}

/// Pushes the image named `source` in the store to `destination` (often the same name).
pub fn push(
    store: &Store,
    source: &Reference,
    destination: &Reference,
    options: &PushOptions,
) -> Result<Pushed> {
    push_image(store, source, destination, options)
        .with_context(|| format!("pushing {source} to {destination}"))
}

fn push_image(
    store: &Store,
    source: &Reference,
    destination: &Reference,
    options: &PushOptions,
) -> Result<Pushed> {
    let top = store.resolve(source)?;
    let digest = Digest::try_from(top.digest())?;
    let tag = match (&destination.digest, &destination.tag) {
        (Some(d), _) if *d != digest => {
            bail!("{destination} names digest {d}, but {source} is {digest}")
        }
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    let credential = credentials::lookup(&destination.registry, options.auth_file.as_deref())?;
    let mut repository = Repository::open(destination, &options.transport, credential, true)?;
    // Within one registry, blobs come from the source repository by a mount, not a copy.
    if source.registry == destination.registry && source.repository != destination.repository {
        repository = repository.with_mount_source(&source.repository);
    }
    let progress = Progress::new(options.quiet);
    let mut counts = BlobCounts::default();
    let (bytes, media_type) = manifest_bytes(store, &top)?;
    if registry::is_index_media_type(&media_type) {
        let index = ImageIndex::from_reader(&bytes[..])
            .with_context(|| format!("{digest} is not a valid image index"))?;
        for child in index.manifests() {
            let child_digest = Digest::try_from(child.digest())?;
            if !store.has_blob(&child_digest) {
                bail!("index {digest} lists manifest {child_digest}, which is not in the store");
            }
            let (child_bytes, child_type) = manifest_bytes(store, child)?;
            let c = push_manifest(
                store,
                &repository,
                (&child_digest, &child_bytes, &child_type),
                &child_digest.to_string(),
                options,
                &progress,
            )?;
            counts.uploaded += c.uploaded;
            counts.mounted += c.mounted;
            counts.present += c.present;
        }
        repository.put_manifest(&tag, &media_type, &bytes)?;
    } else {
        counts = push_manifest(
            store,
            &repository,
            (&digest, &bytes, &media_type),
            &tag,
            options,
            &progress,
        )?;
    }
    Ok(Pushed {
        digest,
        blobs: counts,
    })
}

/// A manifest's exact bytes and media type (from its descriptor, else its own content).
fn manifest_bytes(store: &Store, descriptor: &Descriptor) -> Result<(Vec<u8>, String)> {
    let digest = Digest::try_from(descriptor.digest())?;
    let bytes = store.read_blob(&digest)?;
    let declared = descriptor.media_type().to_string();
    let media_type = if registry::is_manifest_media_type(&declared) {
        declared
    } else {
        sniff_manifest_media_type(&bytes)?
    };
    if !registry::is_manifest_media_type(&media_type) {
        bail!("{digest} has media type {media_type:?}, not an image manifest or index");
    }
    Ok((bytes, media_type))
}

/// Pushes a manifest's config and layers, then the manifest under `tag`.
fn push_manifest(
    store: &Store,
    repository: &Repository,
    (digest, bytes, media_type): (&Digest, &[u8], &str),
    tag: &str,
    options: &PushOptions,
    progress: &Progress,
) -> Result<BlobCounts> {
    let image = ImageManifest::from_reader(bytes)
        .with_context(|| format!("{digest} is not a valid image manifest"))?;
    let mut blobs = vec![image.config().clone()];
    blobs.extend(image.layers().iter().cloned());
    let present = AtomicUsize::new(0);
    let mounted = AtomicUsize::new(0);
    registry::for_each_parallel(&blobs, options.jobs, |blob| {
        let blob_digest = Digest::try_from(blob.digest())?;
        let bar = progress.bar(blob_digest.short(), blob.size());
        if !store.has_blob(&blob_digest) {
            bail!("manifest {digest} lists blob {blob_digest}, which is not in the store");
        }
        if repository.has_blob(&blob_digest)? {
            present.fetch_add(1, SeqCst);
            bar.finish("exists");
            return Ok(());
        }
        let count = |n| bar.inc(n);
        let sent = repository.upload_blob(
            &blob_digest,
            &store.blob_path(&blob_digest),
            options.chunk_size,
            &count,
        );
        match sent {
            Ok(true) => {
                mounted.fetch_add(1, SeqCst);
                bar.finish("mounted");
            }
            Ok(false) => bar.finish("pushed"),
            Err(_) => bar.abandon("failed"),
        }
        sent.map(drop)
    })?;
    repository.put_manifest(tag, media_type, bytes)?;
    let (present, mounted) = (present.into_inner(), mounted.into_inner());
    Ok(BlobCounts {
        uploaded: blobs.len() - present - mounted,
        mounted,
        present,
    })
}
