//! Making images from layer tarballs: `import TARBALL REF` (a rootfs tarball becomes a one-layer
//! image), and the manifest + config assembly docker-archive loading shares.

use super::config::{ContainerConfig, ImageConfig, RootFs};
use super::digest::{Digest, DigestingReader};
use super::reference::Reference;
use super::store::{host_platform, Store};
use super::time::now_rfc3339;
use super::unpack::{decompress, Compression};
use anyhow::{bail, Context, Result};
use oci_spec::image::{Descriptor, MediaType};
use serde_json::json;
use std::io::{self, Read};

/// A layer blob in the store with what a manifest and config need to know of it.
#[derive(Clone, Debug)]
pub struct LayerBlob {
    pub blob: Digest,
    pub size: u64,
    pub media_type: &'static str,
    pub diff_id: Digest,
}

/// Reads a layer blob once: checks that it is a tar archive (optionally compressed) and computes
/// its diff id, the digest of the uncompressed tar.
pub fn describe_layer(store: &Store, blob: &Digest) -> Result<LayerBlob> {
    let size = store.blob_size(blob)?;
    let (compression, stream) = decompress(store.open_blob(blob)?)?;
    let mut hashed = DigestingReader::new(stream);
    {
        let mut archive = tar::Archive::new(&mut hashed);
        for entry in archive.entries().context("not a tar archive")? {
            entry.context("not a valid tar archive")?;
        }
    }
    io::copy(&mut hashed, &mut io::sink()).context("reading the layer")?;
    let (diff_id, _) = hashed.finish();
    let media_type = match compression {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    };
    Ok(LayerBlob {
        blob: blob.clone(),
        size,
        media_type,
        diff_id,
    })
}

/// Stores a config (its diff ids set from `layers`) and an OCI manifest over them; returns the
/// manifest's descriptor.
pub fn assemble_image(
    store: &Store,
    layers: &[LayerBlob],
    mut config: ImageConfig,
) -> Result<Descriptor> {
    config.rootfs = RootFs {
        kind: "layers".to_string(),
        diff_ids: layers.iter().map(|l| l.diff_id.to_string()).collect(),
    };
    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = store.ingest_bytes(&config_bytes)?;
    manifest_over(store, &config_digest, config_bytes.len() as u64, layers)
}

/// Stores an OCI manifest for a config already in the store.
pub fn manifest_over(
    store: &Store,
    config: &Digest,
    config_size: u64,
    layers: &[LayerBlob],
) -> Result<Descriptor> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.to_string(),
            "size": config_size,
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.blob.to_string(),
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest)?;
    let digest = store.ingest_bytes(&bytes)?;
    Ok(Descriptor::new(
        MediaType::ImageManifest,
        bytes.len() as u64,
        &digest,
    ))
}

/// `import TARBALL REF`: the tarball (plain, gzip or zstd; `-` for stdin) becomes the one layer
/// of a new image named `r`, with `changes` (Dockerfile-style `CMD`, `ENTRYPOINT`, `ENV`,
/// `WORKDIR`, `USER`, `LABEL`, `EXPOSE`, `VOLUME`, `STOPSIGNAL`) applied to its config.
pub fn import_tarball(
    store: &Store,
    src: &mut dyn Read,
    r: &Reference,
    changes: &[String],
) -> Result<Digest> {
    let (blob, _, new) = store.ingest_stream_new(src)?;
    let result = image_from_layer(store, &blob, r, changes);
    if result.is_err() && new {
        store.delete_unused(&[blob])?;
    }
    result
}

fn image_from_layer(
    store: &Store,
    blob: &Digest,
    r: &Reference,
    changes: &[String],
) -> Result<Digest> {
    let layer = describe_layer(store, blob).context("the tarball")?;
    let (os, arch) = host_platform()
        .split_once('/')
        .map(|(o, a)| (o.to_string(), a.to_string()))
        .expect("os/arch");
    let (arch, variant) = match arch.split_once('/') {
        Some((a, v)) => (a.to_string(), Some(v.to_string())),
        None => (arch, None),
    };
    let mut config = ImageConfig {
        created: Some(now_rfc3339()),
        architecture: arch,
        os,
        variant,
        history: vec![
            json!({"created": now_rfc3339(), "created_by": "berth import", "comment": "Imported from tarball"}),
        ],
        ..Default::default()
    };
    for change in changes {
        apply_change(&mut config.config, change).with_context(|| format!("--change {change:?}"))?;
    }
    let desc = assemble_image(store, &[layer], config)?;
    store.set_reference(r, &desc)?;
    Ok(store.image_id(&desc))
}

/// One Dockerfile instruction applied to a config.
pub fn apply_change(c: &mut ContainerConfig, change: &str) -> Result<()> {
    let change = change.trim();
    let (op, rest) = change
        .split_once(char::is_whitespace)
        .unwrap_or((change, ""));
    let rest = rest.trim();
    let words = |rest: &str| -> Result<Vec<String>> {
        if rest.starts_with('[') {
            serde_json::from_str(rest).context("invalid JSON array")
        } else {
            Ok(vec![
                "/bin/sh".to_string(),
                "-c".to_string(),
                rest.to_string(),
            ])
        }
    };
    let pairs = |rest: &str| -> Vec<(String, String)> {
        rest.split_whitespace()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.trim_matches('"').to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect()
    };
    match op.to_ascii_uppercase().as_str() {
        "CMD" => c.cmd = words(rest)?,
        "ENTRYPOINT" => c.entrypoint = words(rest)?,
        "ENV" => {
            for (k, v) in pairs(rest) {
                c.env.retain(|e| e.split('=').next() != Some(&k));
                c.env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => c.labels.extend(pairs(rest)),
        "WORKDIR" => c.working_dir = rest.to_string(),
        "USER" => c.user = rest.to_string(),
        "STOPSIGNAL" => c.stop_signal = rest.to_string(),
        "EXPOSE" => {
            for p in rest.split_whitespace() {
                let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                c.exposed_ports.insert(p, json!({}));
            }
        }
        "VOLUME" => {
            let vols: Vec<String> = if rest.starts_with('[') {
                serde_json::from_str(rest).context("invalid JSON array")?
            } else {
                rest.split_whitespace().map(str::to_string).collect()
            };
            for v in vols {
                c.volumes.insert(v, json!({}));
            }
        }
        other => bail!("unsupported instruction {other:?} (CMD ENTRYPOINT ENV LABEL WORKDIR USER STOPSIGNAL EXPOSE VOLUME)"),
    }
    Ok(())
}
