//! `save` and `load`: images to and from Docker's archive format (`manifest.json`, a config
//! file and an uncompressed `layer.tar` per layer) and the OCI archive format (a tarred OCI
//! image layout), as `docker save`/`docker load` and `skopeo` read and write them.

use super::config::ImageConfig;
use super::digest::Digest;
use super::import::{describe_layer, manifest_over};
use super::reference::Reference;
use super::store::{Store, REF_NAME_ANNOTATION};
use super::unpack::decompress;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// JSON members of an archive larger than this are refused rather than read into memory.
const MAX_JSON: u64 = 64 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum ArchiveFormat {
    /// Docker's `docker save` format.
    DockerArchive,
    /// A tarred OCI image layout.
    OciArchive,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default, deserialize_with = "null_vec")]
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

fn null_vec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

fn append(
    tar: &mut tar::Builder<&mut dyn Write>,
    path: &str,
    size: u64,
    data: &mut dyn Read,
) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, path, data)
        .with_context(|| format!("writing {path} to the archive"))
}

fn append_dir(tar: &mut tar::Builder<&mut dyn Write>, path: &str) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Directory);
    tar.append_data(&mut h, path, io::empty())
        .with_context(|| format!("writing {path} to the archive"))
}

/// Writes the images `args` name to `out` in `format`.
pub fn save(
    store: &Store,
    args: &[String],
    format: ArchiveFormat,
    out: &mut dyn Write,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    match format {
        ArchiveFormat::DockerArchive => save_docker(store, args, &mut tar)?,
        ArchiveFormat::OciArchive => save_oci(store, args, &mut tar)?,
    }
    tar.finish().context("finishing the archive")?;
    Ok(())
}

fn save_docker(
    store: &Store,
    args: &[String],
    tar: &mut tar::Builder<&mut dyn Write>,
) -> Result<()> {
    let mut entries: Vec<DockerManifestEntry> = Vec::new();
    let mut written = BTreeSet::new();
    for arg in args {
        let names = store.lookup(arg)?;
        let (_, desc) = &names[0];
        let (manifest, _) = store
            .image_manifest(desc, None)
            .with_context(|| format!("image {arg}"))?;
        let image = store.image_layers(&manifest)?;
        let config_name = format!("{}.json", image.config_digest.hex());
        if written.insert(config_name.clone()) {
            let bytes = store.read_manifest_bytes(&image.config_digest)?;
            append(tar, &config_name, bytes.len() as u64, &mut &bytes[..])?;
        }
        let mut layers = Vec::new();
        for (desc, diff_id) in &image.layers {
            let dir = diff_id.hex().to_string();
            let path = format!("{dir}/layer.tar");
            if written.insert(path.clone()) {
                append_dir(tar, &dir)?;
                write_uncompressed_layer(
                    store,
                    &Digest::try_from(desc.digest())?,
                    diff_id,
                    &path,
                    tar,
                )?;
            }
            layers.push(path);
        }
        let repo_tags = names
            .iter()
            .filter_map(|(r, _)| r.tag.as_ref().map(|t| format!("{}:{t}", r.familiar_name())))
            .collect();
        match entries.iter_mut().find(|e| e.config == config_name) {
            Some(e) => e.repo_tags.extend::<Vec<String>>(repo_tags),
            None => entries.push(DockerManifestEntry {
                config: config_name,
                repo_tags,
                layers,
            }),
        }
    }
    let bytes = serde_json::to_vec(&entries)?;
    append(tar, "manifest.json", bytes.len() as u64, &mut &bytes[..])
}

/// A docker archive holds layers uncompressed; the tar header needs the size first, so a
/// compressed blob is inflated to a temporary file in the store (checked against its diff id).
fn write_uncompressed_layer(
    store: &Store,
    blob: &Digest,
    diff_id: &Digest,
    path: &str,
    tar: &mut tar::Builder<&mut dyn Write>,
) -> Result<()> {
    if blob == diff_id {
        let size = store.blob_size(blob)?;
        return append(tar, path, size, &mut store.open_blob(blob)?);
    }
    let temp = store.temp_ingest("save")?;
    let (_, mut stream) = decompress(store.open_blob(blob)?)?;
    let mut f = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(temp.path())?;
    let mut w = super::digest::DigestingWriter::new(&mut f);
    io::copy(&mut stream, &mut w).with_context(|| format!("inflating layer {blob}"))?;
    let (got, size, _) = w.finish();
    if &got != diff_id {
        bail!("layer {blob}: uncompressed digest {got} differs from diff id {diff_id}");
    }
    use std::io::Seek;
    f.seek(io::SeekFrom::Start(0))?;
    append(tar, path, size, &mut f)
}

fn save_oci(store: &Store, args: &[String], tar: &mut tar::Builder<&mut dyn Write>) -> Result<()> {
    let mut manifests = Vec::new();
    let mut blobs = BTreeSet::new();
    for arg in args {
        for (r, desc) in store.lookup(arg)? {
            let d = Digest::try_from(desc.digest())?;
            store.blobs_of(&d, &mut blobs);
            let mut notes = serde_json::Map::new();
            notes.insert(CONTAINERD_NAME_ANNOTATION.into(), json!(r.to_string()));
            notes.insert(REF_NAME_ANNOTATION.into(), json!(r.to_string()));
            manifests.push(json!({
                "mediaType": desc.media_type().to_string(),
                "digest": d.to_string(),
                "size": desc.size(),
                "annotations": notes,
            }));
        }
    }
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    append(tar, "oci-layout", layout.len() as u64, &mut &layout[..])?;
    append_dir(tar, "blobs")?;
    append_dir(tar, "blobs/sha256")?;
    for d in &blobs {
        // Blobs of other platforms an index names may be absent: the archive holds what we have.
        if store.has_blob(d) {
            append(
                tar,
                &format!("blobs/sha256/{}", d.hex()),
                store.blob_size(d)?,
                &mut store.open_blob(d)?,
            )?;
        }
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))?;
    append(tar, "index.json", index.len() as u64, &mut &index[..])
}

/// What a pass over an archive found.
#[derive(Default)]
struct ArchiveContents {
    /// Small JSON members, by path.
    json: HashMap<PathBuf, Vec<u8>>,
    /// Other regular members, stored as blobs, by path.
    blobs: HashMap<PathBuf, Digest>,
    /// Symlinks, by path, to their target (resolved relative to the link's directory).
    links: HashMap<PathBuf, PathBuf>,
    /// Blobs this load added to the store.
    fresh: Vec<Digest>,
}

impl ArchiveContents {
    fn follow(&self, p: &Path) -> PathBuf {
        let mut p = clean(p);
        for _ in 0..40 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        p
    }

    fn json(&self, p: &Path, store: &Store) -> Result<Vec<u8>> {
        let p = self.follow(p);
        if let Some(b) = self.json.get(&p) {
            return Ok(b.clone());
        }
        match self.blobs.get(&p) {
            Some(d) => store.read_manifest_bytes(d),
            None => bail!("the archive has no {}", p.display()),
        }
    }

    fn blob(&self, p: &Path, store: &Store) -> Result<Digest> {
        let p = self.follow(p);
        if let Some(d) = self.blobs.get(&p) {
            return Ok(d.clone());
        }
        match self.json.get(&p) {
            Some(b) => store.ingest_bytes(b),
            None => bail!("the archive has no {}", p.display()),
        }
    }
}

/// A member path without `.`/`..`/leading `/` (`..` clamped: these are only lookup keys).
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Loads every image of an archive (either format, optionally compressed); returns the names
/// loaded, Docker's way (`Loaded image: ...`). Blobs the archive added but no name ended up
/// using (members no image refers to, or everything when the load fails) are taken back.
pub fn load(store: &Store, src: &mut dyn Read) -> Result<Vec<String>> {
    let mut contents = ArchiveContents::default();
    let result = load_into(store, src, &mut contents);
    store.delete_unused(&contents.fresh)?;
    result
}

fn load_into(
    store: &Store,
    src: &mut dyn Read,
    contents: &mut ArchiveContents,
) -> Result<Vec<String>> {
    let (_, stream) = decompress(src)?;
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries().context("not a tar archive")? {
        let mut entry = entry.context("reading the archive")?;
        let path = clean(&entry.path().context("invalid member path")?);
        let shown = path.display().to_string();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                let blob_hex = path
                    .strip_prefix("blobs/sha256")
                    .ok()
                    .and_then(|h| h.to_str())
                    .filter(|h| !h.contains('/'));
                if let Some(hex) = blob_hex {
                    let d =
                        Digest::from_hex(hex).with_context(|| format!("archive member {shown}"))?;
                    if !store.has_blob(&d) {
                        contents.fresh.push(d.clone());
                    }
                    store
                        .ingest_blob(&d, Some(size), &mut entry)
                        .with_context(|| format!("archive member {shown}"))?;
                    contents.blobs.insert(path, d);
                } else if shown.ends_with(".json")
                    || shown == "oci-layout"
                    || shown == "repositories"
                {
                    if size > MAX_JSON {
                        bail!("archive member {shown} is larger than {MAX_JSON} bytes");
                    }
                    let mut b = Vec::with_capacity(size as usize);
                    entry
                        .read_to_end(&mut b)
                        .with_context(|| format!("archive member {shown}"))?;
                    contents.json.insert(path, b);
                } else {
                    let (d, _, new) = store
                        .ingest_stream_new(&mut entry)
                        .with_context(|| format!("archive member {shown}"))?;
                    if new {
                        contents.fresh.push(d.clone());
                    }
                    contents.blobs.insert(path, d);
                }
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .context("link without a target")?
                    .into_owned();
                let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                    clean(&path.parent().unwrap_or(Path::new("")).join(target))
                } else {
                    clean(&target)
                };
                contents.links.insert(path, resolved);
            }
            _ => {}
        }
    }
    let contents = &*contents;
    if contents.json.contains_key(Path::new("index.json"))
        && contents.json.contains_key(Path::new("oci-layout"))
    {
        load_oci(store, contents)
    } else if contents.json.contains_key(Path::new("manifest.json")) {
        load_docker(store, contents)
    } else {
        bail!("neither a docker archive (no manifest.json) nor an OCI archive (no oci-layout and index.json)")
    }
}

fn load_oci(store: &Store, contents: &ArchiveContents) -> Result<Vec<String>> {
    let index: oci_spec::image::ImageIndex =
        serde_json::from_slice(&contents.json[Path::new("index.json")])
            .context("the archive's index.json")?;
    let mut loaded = Vec::new();
    for desc in index.manifests() {
        let d = Digest::try_from(desc.digest())?;
        // Every blob of the host's image must be there (other platforms may be left out).
        let (manifest, m) = store
            .image_manifest(desc, None)
            .with_context(|| format!("the archive's image {d}"))?;
        for l in std::iter::once(m.config()).chain(m.layers()) {
            let ld = Digest::try_from(l.digest())?;
            if !store.has_blob(&ld) {
                bail!("the archive's image {manifest} lacks blob {ld}");
            }
        }
        let notes = desc.annotations().clone().unwrap_or_default();
        let name = notes
            .get(CONTAINERD_NAME_ANNOTATION)
            .or_else(|| notes.get(REF_NAME_ANNOTATION))
            .with_context(|| {
                format!("the archive's image {d} has no name (no {REF_NAME_ANNOTATION} annotation)")
            })?;
        let r = Reference::parse(name).with_context(|| format!("the archive's image {d}"))?;
        store.set_reference(&r, desc)?;
        loaded.push(r.to_string());
    }
    Ok(loaded)
}

fn load_docker(store: &Store, contents: &ArchiveContents) -> Result<Vec<String>> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&contents.json[Path::new("manifest.json")])
            .context("the archive's manifest.json")?;
    let mut loaded = Vec::new();
    for e in entries {
        let config_bytes = contents.json(Path::new(&e.config), store)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .with_context(|| format!("the archive's {}", e.config))?;
        let config_digest = store.ingest_bytes(&config_bytes)?;
        let mut layers = Vec::new();
        for (i, path) in e.layers.iter().enumerate() {
            let blob = contents.blob(Path::new(path), store)?;
            let layer =
                describe_layer(store, &blob).with_context(|| format!("the archive's {path}"))?;
            let expected = config.rootfs.diff_ids.get(i).map(String::as_str);
            if expected != Some(layer.diff_id.to_string().as_str()) {
                bail!(
                    "the archive's {path}: digest {} is not diff id {} of its config {}",
                    layer.diff_id,
                    expected.unwrap_or("(none)"),
                    e.config
                );
            }
            layers.push(layer);
        }
        if layers.len() != config.rootfs.diff_ids.len() {
            bail!(
                "the archive's {}: {} layers for {} diff ids",
                e.config,
                layers.len(),
                config.rootfs.diff_ids.len()
            );
        }
        let desc = manifest_over(store, &config_digest, config_bytes.len() as u64, &layers)?;
        if e.repo_tags.is_empty() {
            bail!("the archive's image {config_digest} has no RepoTags: berth keeps only named images");
        }
        for tag in &e.repo_tags {
            let r = Reference::parse(tag)
                .with_context(|| format!("the archive's RepoTags of {}", e.config))?;
            store.set_reference(&r, &desc)?;
            loaded.push(r.to_string());
        }
    }
    Ok(loaded)
}
