//! The image store: an OCI image layout under `<data-root>/image` (blobs by sha256, `index.json`
//! naming manifests), plus the unpacked layer snapshots and the record of bundles made from images.
//!
//! Blobs become visible only complete and verified: they stream to `ingest/`, are hashed on the
//! way, and are renamed into `blobs/sha256/` only when digest and size match. Names are added
//! last, so an interrupted pull leaves at most unnamed blobs that a second pull reuses.

use super::digest::{Digest, DigestingWriter};
use super::reference::Reference;
use crate::runtime::fsutil::write_atomically;
use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";
/// The annotation that names a manifest in `index.json` (the full canonical reference).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Manifests, indexes and configs larger than this are refused rather than read into memory
/// (the distribution spec lets registries refuse manifests over 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
const MAX_INDEX_DEPTH: usize = 4;

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The image store under one data root.
pub struct Store {
    data_root: PathBuf,
    layout: PathBuf,
}

/// What a named manifest is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ManifestKind {
    Image,
    Index,
}

/// Classifies a manifest media type; anything else is not a manifest.
pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        "application/vnd.oci.image.manifest.v1+json" | DOCKER_MANIFEST_V2 => {
            Some(ManifestKind::Image)
        }
        "application/vnd.oci.image.index.v1+json" | DOCKER_MANIFEST_LIST => {
            Some(ManifestKind::Index)
        }
        _ => None,
    }
}

impl Store {
    /// Opens (creating when missing) the store under `data_root`, and removes ingest files left
    /// by processes that died mid-write.
    pub fn open(data_root: &Path) -> Result<Store> {
        let layout = data_root.join("image");
        for dir in ["blobs/sha256", "ingest", "snapshots", "bundles"] {
            fs::create_dir_all(layout.join(dir))
                .with_context(|| format!("cannot create {}", layout.join(dir).display()))?;
        }
        let oci_layout = layout.join("oci-layout");
        if !oci_layout.exists() {
            write_atomically(&oci_layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let store = Store {
            data_root: data_root.to_path_buf(),
            layout,
        };
        if !store.index_path().exists() {
            store.write_index(&[])?;
        }
        store.remove_dead_ingests();
        Ok(store)
    }

    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    /// The OCI image layout directory (`skopeo ... oci:<this>:<ref>` reads it).
    pub fn layout_dir(&self) -> &Path {
        &self.layout
    }

    pub fn snapshots_dir(&self) -> PathBuf {
        self.layout.join("snapshots")
    }

    pub fn bundles_dir(&self) -> PathBuf {
        self.layout.join("bundles")
    }

    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.layout.join("ingest")
    }

    fn index_path(&self) -> PathBuf {
        self.layout.join("index.json")
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.layout.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        fs::read(self.blob_path(d)).with_context(|| format!("blob {d} is not in the store"))
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        File::open(self.blob_path(d)).with_context(|| format!("blob {d} is not in the store"))
    }

    pub fn blob_size(&self, d: &Digest) -> Result<u64> {
        Ok(fs::metadata(self.blob_path(d))
            .with_context(|| format!("blob {d} is not in the store"))?
            .len())
    }

    /// Streams `src` to a temporary file in the store while hashing it, checks the digest and
    /// (if given) the size, and only then renames it into `blobs/sha256/<hex>`. On a mismatch the
    /// error names both digests and nothing becomes visible. A blob already present is kept and
    /// `src` is not read. Returns the blob's size.
    pub fn ingest_blob(
        &self,
        expected: &Digest,
        expected_size: Option<u64>,
        src: &mut dyn Read,
    ) -> Result<u64> {
        if self.has_blob(expected) {
            return self.blob_size(expected);
        }
        let temp = self.temp_ingest(expected.hex())?;
        // A source longer than announced is cut one byte past the size, enough to reject it.
        let mut limited: Box<dyn Read> = match expected_size {
            Some(n) => Box::new(src.take(n.saturating_add(1))),
            None => Box::new(src),
        };
        let (got, size) = temp.write_from(&mut limited)?;
        if let Some(n) = expected_size {
            if size != n {
                bail!(
                    "blob {expected}: size mismatch: expected {n} bytes, got {size}{}",
                    if size > n { " or more" } else { "" }
                );
            }
        }
        if &got != expected {
            bail!("blob digest mismatch: expected {expected}, got {got}");
        }
        temp.commit(&self.blob_path(expected))?;
        Ok(size)
    }

    /// Stores bytes whose digest is not known in advance; returns their digest.
    pub fn ingest_bytes(&self, b: &[u8]) -> Result<Digest> {
        let d = Digest::of_bytes(b);
        self.ingest_blob(&d, Some(b.len() as u64), &mut &b[..])?;
        Ok(d)
    }

    /// Stores a stream whose digest is not known in advance; returns its digest and size.
    pub fn ingest_stream(&self, src: &mut dyn Read) -> Result<(Digest, u64)> {
        self.ingest_stream_new(src).map(|(d, n, _)| (d, n))
    }

    /// Like [`Store::ingest_stream`], also telling whether the blob is new to the store (so a
    /// failed import or load can take back exactly what it added).
    pub fn ingest_stream_new(&self, src: &mut dyn Read) -> Result<(Digest, u64, bool)> {
        let temp = self.temp_ingest("stream")?;
        let (d, size) = temp.write_from(src)?;
        if self.has_blob(&d) {
            return Ok((d, size, false));
        }
        temp.commit(&self.blob_path(&d))?;
        Ok((d, size, true))
    }

    pub(crate) fn temp_ingest(&self, what: &str) -> Result<TempFile> {
        TempFile::create(&self.ingest_dir(), what)
    }

    /// Removes `ingest/<pid>-...` files whose writer is gone (a pull killed mid-blob).
    fn remove_dead_ingests(&self) {
        let Ok(entries) = fs::read_dir(self.ingest_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
            if let Some(pid) = pid {
                if pid != std::process::id() as i32 && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = fs::remove_file(e.path()).or_else(|_| fs::remove_dir_all(e.path()));
                }
            }
        }
    }

    /// Takes the store's lock for changes to names, snapshots and bundle records.
    pub(crate) fn lock(&self) -> Result<Flock<File>> {
        crate::runtime::fsutil::lock_file(&self.layout.join("lock"), FlockArg::LockExclusive)
    }

    fn read_index(&self) -> Result<Vec<Descriptor>> {
        let path = self.index_path();
        let index = ImageIndex::from_file(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(index.manifests().clone())
    }

    fn write_index(&self, manifests: &[Descriptor]) -> Result<()> {
        let index = oci_spec::image::ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests.to_vec())
            .build()?;
        write_atomically(&self.index_path(), index.to_string_pretty()?.as_bytes())
    }

    /// Points a name at a manifest (or index) already in the store, replacing what it named.
    pub fn set_reference(&self, r: &Reference, manifest: &Descriptor) -> Result<()> {
        let d = Digest::try_from(manifest.digest())?;
        if !self.has_blob(&d) {
            bail!("cannot name {r}: manifest {d} is not in the store");
        }
        if manifest_kind(manifest.media_type().as_ref()).is_none() {
            bail!(
                "cannot name {r}: {d} has media type {}, not an image manifest or index",
                manifest.media_type()
            );
        }
        let _lock = self.lock()?;
        let name = r.to_string();
        let mut entries = self.read_index()?;
        entries.retain(|e| ref_name(e) != Some(name.as_str()));
        let mut desc = Descriptor::new(manifest.media_type().clone(), manifest.size(), &d);
        if let Some(p) = manifest.platform() {
            desc.set_platform(Some(p.clone()));
        }
        desc.set_annotations(Some(HashMap::from([(
            REF_NAME_ANNOTATION.to_string(),
            name,
        )])));
        entries.push(desc);
        self.write_index(&entries)
    }

    /// The manifest a name points at. A reference with a digest resolves to that digest when the
    /// store holds it.
    pub fn resolve(&self, r: &Reference) -> Result<Descriptor> {
        let entries = self.read_index()?;
        if let Some(d) = &r.digest {
            if let Some(e) = entries
                .iter()
                .find(|e| e.digest().to_string() == d.to_string())
            {
                return Ok(strip_name(e));
            }
            if self.has_blob(d) {
                let bytes = self.read_manifest_bytes(d)?;
                let media_type = sniff_manifest_media_type(&bytes)
                    .with_context(|| format!("{r}: blob {d} is not a manifest"))?;
                return Ok(Descriptor::new(
                    media_type.as_str().into(),
                    bytes.len() as u64,
                    d,
                ));
            }
            bail!(
                "image {r} is not in the store ({})",
                self.data_root.display()
            );
        }
        let name = r.to_string();
        entries
            .iter()
            .find(|e| ref_name(e) == Some(name.as_str()))
            .map(strip_name)
            .with_context(|| {
                format!(
                    "image {r} is not in the store ({})",
                    self.data_root.display()
                )
            })
    }

    /// Removes a name; returns what it pointed at. Blobs stay until [`Store::prune`].
    pub fn remove_reference(&self, r: &Reference) -> Result<Descriptor> {
        let _lock = self.lock()?;
        let name = r.to_string();
        let mut entries = self.read_index()?;
        let Some(pos) = entries
            .iter()
            .position(|e| ref_name(e) == Some(name.as_str()))
        else {
            bail!(
                "image {r} is not in the store ({})",
                self.data_root.display()
            );
        };
        let removed = entries.remove(pos);
        self.write_index(&entries)?;
        Ok(strip_name(&removed))
    }

    /// Every name with the manifest it points at, in the order they were named.
    pub fn references(&self) -> Result<Vec<(Reference, Descriptor)>> {
        let mut out = Vec::new();
        for e in self.read_index()? {
            if let Some(name) = ref_name(&e) {
                // Names not written by berth (a foreign layout) are skipped, not fatal.
                if let Ok(r) = Reference::parse(name) {
                    out.push((r, strip_name(&e)));
                }
            }
        }
        Ok(out)
    }

    pub fn read_manifest(&self, d: &Digest) -> Result<ImageManifest> {
        ImageManifest::from_reader(&self.read_manifest_bytes(d)?[..])
            .with_context(|| format!("manifest {d} is not a valid image manifest"))
    }

    pub fn read_image_index(&self, d: &Digest) -> Result<ImageIndex> {
        ImageIndex::from_reader(&self.read_manifest_bytes(d)?[..])
            .with_context(|| format!("{d} is not a valid image index"))
    }

    pub fn read_json<T: serde::de::DeserializeOwned>(&self, d: &Digest) -> Result<T> {
        let bytes = self.read_manifest_bytes(d)?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).with_context(|| format!("blob {d}: invalid JSON"))
    }

    /// From a manifest or index descriptor, the image manifest for this host's platform (or
    /// `platform` as `os/arch[/variant]`), with its digest.
    pub fn image_manifest(
        &self,
        desc: &Descriptor,
        platform: Option<&str>,
    ) -> Result<(Digest, ImageManifest)> {
        let mut d = Digest::try_from(desc.digest())?;
        // Indexes may nest, but a few levels is all real images use; a cycle is an error.
        for _ in 0..MAX_INDEX_DEPTH {
            let bytes = self.read_manifest_bytes(&d)?;
            let media_type = sniff_manifest_media_type(&bytes).unwrap_or_default();
            match manifest_kind(&media_type) {
                Some(ManifestKind::Image) => {
                    let m = ImageManifest::from_reader(&bytes[..])
                        .with_context(|| format!("manifest {d} is not a valid image manifest"))?;
                    return Ok((d, m));
                }
                Some(ManifestKind::Index) => {
                    let index = ImageIndex::from_reader(&bytes[..])
                        .with_context(|| format!("{d} is not a valid image index"))?;
                    let want = platform.map(str::to_string).unwrap_or_else(host_platform);
                    let chosen = choose_platform(index.manifests(), &want)
                        .with_context(|| format!("index {d} has no image for platform {want}"))?;
                    d = Digest::try_from(chosen.digest())?;
                }
                None => bail!("{d}: unknown manifest media type {media_type:?}"),
            }
        }
        bail!(
            "{}: indexes nested more than {MAX_INDEX_DEPTH} deep",
            desc.digest()
        )
    }

    /// A manifest or index blob, refused when too large to be one (it would be read whole).
    pub fn read_manifest_bytes(&self, d: &Digest) -> Result<Vec<u8>> {
        let size = self.blob_size(d)?;
        if size > MAX_MANIFEST_SIZE {
            bail!("{d} is {size} bytes: too large for a manifest (at most {MAX_MANIFEST_SIZE})");
        }
        self.read_blob(d)
    }
}

/// The `os/arch[/variant]` of this host, in OCI's names.
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64/v8",
        "x86" => "386",
        "arm" => "arm/v7",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

/// The entry of an index matching `os/arch[/variant]` (a missing variant matches any).
pub fn choose_platform<'a>(entries: &'a [Descriptor], want: &str) -> Option<&'a Descriptor> {
    let mut parts = want.split('/');
    let (os, arch, variant) = (parts.next()?, parts.next()?, parts.next());
    let matches = |e: &&Descriptor| {
        e.platform().as_ref().is_some_and(|p| {
            p.os().to_string() == os
                && p.architecture().to_string() == arch
                && variant.is_none_or(|v| p.variant().as_deref().is_none_or(|pv| pv == v))
        })
    };
    entries.iter().find(matches)
}

/// A manifest's media type, from its `mediaType` field or, when absent (allowed for OCI), from
/// its shape.
pub fn sniff_manifest_media_type(bytes: &[u8]) -> Result<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(bytes).context("not a JSON manifest")?;
    Ok(match (p.media_type, p.manifests, p.layers) {
        (Some(m), _, _) => m,
        (None, Some(_), _) => "application/vnd.oci.image.index.v1+json".to_string(),
        (None, None, Some(_)) => "application/vnd.oci.image.manifest.v1+json".to_string(),
        _ => bail!("neither a manifest nor an index"),
    })
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

fn strip_name(d: &Descriptor) -> Descriptor {
    let mut out = Descriptor::new(d.media_type().clone(), d.size(), d.digest().clone());
    out.set_platform(d.platform().clone());
    out
}

/// A file being written in the store's ingest directory, removed unless committed.
pub(crate) struct TempFile {
    path: PathBuf,
    committed: bool,
}

impl TempFile {
    pub(crate) fn create(dir: &Path, what: &str) -> Result<TempFile> {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{seq}-{what}", std::process::id()));
        Ok(TempFile {
            path,
            committed: false,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Copies `src` into the file, returning the digest and length of what was written.
    fn write_from(&self, src: &mut dyn Read) -> Result<(Digest, u64)> {
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)
            .with_context(|| format!("cannot create {}", self.path.display()))?;
        let mut w = DigestingWriter::new(io::BufWriter::with_capacity(1 << 20, f));
        io::copy(src, &mut w).context("reading the blob")?;
        let (d, n, mut buf) = w.finish();
        buf.flush()
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok((d, n))
    }

    /// Renames the file to `dest`; from then on it is no longer removed.
    pub(crate) fn commit(mut self, dest: &Path) -> Result<()> {
        fs::rename(&self.path, dest).with_context(|| {
            format!("cannot move {} to {}", self.path.display(), dest.display())
        })?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path).or_else(|_| fs::remove_dir_all(&self.path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempRoot(PathBuf);
    impl TempRoot {
        fn new(name: &str) -> TempRoot {
            let d = std::env::temp_dir().join(format!("berth-store-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            TempRoot(d)
        }
    }
    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn ingest_is_empty(s: &Store) -> bool {
        fs::read_dir(s.ingest_dir()).unwrap().next().is_none()
    }

    #[test]
    fn ingest_verifies_digest_and_size() {
        let root = TempRoot::new("ingest");
        let s = Store::open(&root.0).unwrap();
        let data = b"hello layer".to_vec();
        let d = Digest::of_bytes(&data);
        let wrong = Digest::of_bytes(b"other");
        let e = s.ingest_blob(&wrong, None, &mut &data[..]).unwrap_err();
        assert!(
            e.to_string().contains(&wrong.to_string()) && e.to_string().contains(&d.to_string()),
            "{e}"
        );
        assert!(!s.has_blob(&wrong) && !s.has_blob(&d));
        let e = s.ingest_blob(&d, Some(5), &mut &data[..]).unwrap_err();
        assert!(e.to_string().contains("size mismatch"), "{e}");
        let e = s.ingest_blob(&d, Some(100), &mut &data[..]).unwrap_err();
        assert!(e.to_string().contains("size mismatch"), "{e}");
        assert!(!s.has_blob(&d));
        assert!(ingest_is_empty(&s), "no temp file left");
        assert_eq!(s.ingest_blob(&d, Some(11), &mut &data[..]).unwrap(), 11);
        assert_eq!(s.read_blob(&d).unwrap(), data);
        assert_eq!(s.ingest_bytes(&data).unwrap(), d);
        let (d2, n) = s.ingest_stream(&mut &b"streamed"[..]).unwrap();
        assert_eq!((d2.clone(), n), (Digest::of_bytes(b"streamed"), 8));
        assert!(s.has_blob(&d2));
        assert!(ingest_is_empty(&s));
    }

    #[test]
    fn ingest_files_of_dead_writers_are_removed_on_open() {
        let root = TempRoot::new("dead");
        let s = Store::open(&root.0).unwrap();
        // A pid above the kernel's maximum (4194304) belongs to no process.
        let dead = s.ingest_dir().join("4194305-0-abc");
        let dead_dir = s.ingest_dir().join("4194305-1-snapshot-abc");
        let ours = s
            .ingest_dir()
            .join(format!("{}-99-abc", std::process::id()));
        fs::write(&dead, b"half a blob").unwrap();
        fs::create_dir_all(dead_dir.join("usr/bin")).unwrap();
        fs::write(&ours, b"in progress").unwrap();
        drop(Store::open(&root.0).unwrap());
        assert!(!dead.exists() && !dead_dir.exists());
        assert!(ours.exists(), "a live writer's file is left alone");
    }

    #[test]
    fn names_point_at_manifests() {
        let root = TempRoot::new("names");
        let s = Store::open(&root.0).unwrap();
        let cfg = s.ingest_bytes(b"{}").unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":2}},"layers":[]}}"#
        );
        let md = s.ingest_bytes(manifest.as_bytes()).unwrap();
        let desc = Descriptor::new(MediaType::ImageManifest, manifest.len() as u64, &md);
        let r = Reference::parse("localhost:5000/app:v1").unwrap();
        let e = s.resolve(&r).unwrap_err();
        assert!(e.to_string().contains("localhost:5000/app:v1"), "{e}");
        s.set_reference(&r, &desc).unwrap();
        assert_eq!(s.resolve(&r).unwrap().digest().to_string(), md.to_string());
        let by_digest = Reference::parse(&format!("localhost:5000/app@{md}")).unwrap();
        assert_eq!(s.resolve(&by_digest).unwrap().size(), manifest.len() as u64);
        let (d, m) = s.image_manifest(&desc, None).unwrap();
        assert_eq!((d, m.layers().len()), (md.clone(), 0));
        assert_eq!(s.references().unwrap().len(), 1);
        // Naming a manifest the store lacks is refused.
        let missing = Descriptor::new(MediaType::ImageManifest, 3, &Digest::of_bytes(b"nope"));
        assert!(s.set_reference(&r, &missing).is_err());
        s.remove_reference(&r).unwrap();
        assert!(s.resolve(&r).is_err());
        assert!(s.remove_reference(&r).is_err());
    }
}
