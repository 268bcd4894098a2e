//! The image a build step starts from and ends with: the whole image config (Docker's JSON,
//! members berth does not know kept) and its layers. A stage's state goes from its base
//! image through each step; the cache records states; the last one is stored as the image.

use crate::image::config::{ContainerConfig, ImageConfig};
use crate::image::import::LayerBlob;
use crate::image::store::{host_platform, Store, DOCKER_CONFIG, DOCKER_MANIFEST_V2};
use crate::image::Digest;
use anyhow::{bail, Context, Result};
use oci_spec::image::Descriptor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// One layer of an image: its blob and the digest of its uncompressed tar.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Layer {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
}

impl From<&LayerBlob> for Layer {
    fn from(l: &LayerBlob) -> Layer {
        Layer {
            media_type: l.media_type.to_string(),
            digest: l.blob.to_string(),
            size: l.size,
            diff_id: l.diff_id.to_string(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ImageState {
    /// The image config, as it will be stored.
    pub config: Value,
    pub layers: Vec<Layer>,
    /// The base was a Docker schema 2 image: the result keeps its format, as `docker commit`.
    pub docker_format: bool,
}

impl ImageState {
    /// `FROM scratch`: no layers, a config for this host's platform with only the PATH.
    pub fn scratch() -> ImageState {
        let platform = host_platform();
        let mut parts = platform.split('/');
        let os = parts.next().unwrap_or("linux");
        let arch = parts.next().unwrap_or("amd64");
        // The default PATH in its Env, as BuildKit and buildah give a stage from scratch.
        let mut config = json!({"architecture": arch, "os": os,
                                "config": {"Env": [DEFAULT_PATH]},
                                "rootfs": {"type": "layers", "diff_ids": []}});
        if let Some(v) = parts.next() {
            config["variant"] = json!(v);
        }
        ImageState {
            config,
            layers: Vec::new(),
            docker_format: false,
        }
    }

    /// The image of manifest `manifest` in the store.
    pub fn from_store(store: &Store, manifest: &Digest) -> Result<ImageState> {
        let image = store.image_layers(manifest)?;
        let config: Value = store.read_json(&image.config_digest)?;
        if !config.is_object() {
            bail!("image {manifest}: its config is not a JSON object");
        }
        let raw: Value = store.read_json(manifest)?;
        let docker_format =
            raw.get("mediaType").and_then(Value::as_str) == Some(DOCKER_MANIFEST_V2);
        let layers = image
            .layers
            .iter()
            .map(|(d, diff_id)| Layer {
                media_type: d.media_type().to_string(),
                digest: d.digest().to_string(),
                size: d.size(),
                diff_id: diff_id.to_string(),
            })
            .collect();
        let mut state = ImageState {
            config,
            layers,
            docker_format,
        };
        // What Docker wrote of the base's own build container says nothing of this image.
        let root = state.root_mut();
        root.remove("container");
        root.remove("container_config");
        Ok(state)
    }

    fn root_mut(&mut self) -> &mut Map<String, Value> {
        if !self.config.is_object() {
            self.config = json!({});
        }
        self.config.as_object_mut().expect("made an object above")
    }

    /// Docker's `config` member (`Env`, `Cmd`, ...), made when missing or null.
    pub fn container_config_mut(&mut self) -> &mut Map<String, Value> {
        let root = self.root_mut();
        let c = root.entry("config").or_insert_with(|| json!({}));
        if !c.is_object() {
            *c = json!({});
        }
        c.as_object_mut().expect("made an object above")
    }

    /// The `config` member read with berth's lenient types.
    pub fn container_config(&self) -> ContainerConfig {
        serde_json::from_value::<ImageConfig>(self.config.clone())
            .map(|c| c.config)
            .unwrap_or_default()
    }

    /// The config's bytes as stored; their digest is the image id.
    pub fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.config).expect("a JSON value serializes")
    }

    pub fn id(&self) -> Digest {
        Digest::of_bytes(&self.config_bytes())
    }

    /// Adds a layer on top, with its diff id in the config.
    pub fn push_layer(&mut self, layer: Layer) {
        let diff_id = layer.diff_id.clone();
        self.layers.push(layer);
        let root = self.root_mut();
        let rootfs = root
            .entry("rootfs")
            .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
        match rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
            Some(ids) => ids.push(json!(diff_id)),
            None => rootfs["diff_ids"] = json!([diff_id]),
        }
    }

    /// Adds a history entry (and sets the image's `created` to its time).
    pub fn push_history(&mut self, created: &str, created_by: &str, empty_layer: bool) {
        let author = self
            .config
            .get("author")
            .and_then(Value::as_str)
            .map(String::from);
        let mut entry = Map::new();
        entry.insert("created".into(), json!(created));
        if let Some(a) = author {
            entry.insert("author".into(), json!(a));
        }
        entry.insert("created_by".into(), json!(created_by));
        if empty_layer {
            entry.insert("empty_layer".into(), json!(true));
        }
        let root = self.root_mut();
        root.insert("created".into(), json!(created));
        match root.get_mut("history").and_then(Value::as_array_mut) {
            Some(h) => h.push(Value::Object(entry)),
            None => {
                root.insert("history".into(), json!([entry]));
            }
        }
    }

    /// The snapshot directories of the layers, base first, unpacking those missing.
    pub fn lowers(&self, store: &Store) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for l in &self.layers {
            let blob = Digest::parse(&l.digest)?;
            let diff_id = Digest::parse(&l.diff_id)?;
            out.push(
                store
                    .ensure_snapshot(&blob, &diff_id)
                    .with_context(|| format!("unpacking layer {blob}"))?,
            );
        }
        Ok(out)
    }

    /// True when every blob of the state is still in the store (an `rmi` may have deleted
    /// a cached state's layers).
    pub fn blobs_present(&self, store: &Store) -> bool {
        self.layers
            .iter()
            .all(|l| Digest::parse(&l.digest).is_ok_and(|d| store.has_blob(&d)))
    }

    /// Stores the config and a manifest; returns the manifest's descriptor.
    pub fn write(&self, store: &Store) -> Result<Descriptor> {
        let config_bytes = self.config_bytes();
        let config_digest = store.ingest_bytes(&config_bytes)?;
        let (manifest_type, config_type) = if self.docker_format {
            (DOCKER_MANIFEST_V2, DOCKER_CONFIG)
        } else {
            (OCI_MANIFEST, OCI_CONFIG)
        };
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size}))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": config_digest.to_string(),
                       "size": config_bytes.len()},
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest)?;
        let digest = store.ingest_bytes(&bytes)?;
        Ok(Descriptor::new(
            manifest_type.into(),
            bytes.len() as u64,
            &digest,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_and_history_go_into_the_config() {
        let mut s = ImageState::scratch();
        let before = s.id();
        s.push_layer(Layer {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 3,
            diff_id: format!("sha256:{}", "b".repeat(64)),
        });
        s.push_history("2024-01-01T00:00:00Z", "/bin/sh -c true", false);
        s.push_history(
            "2024-01-01T00:00:01Z",
            "/bin/sh -c #(nop)  CMD [\"sh\"]",
            true,
        );
        assert_ne!(s.id(), before);
        assert_eq!(
            s.config["rootfs"]["diff_ids"],
            json!([format!("sha256:{}", "b".repeat(64))])
        );
        assert_eq!(s.config["history"][1]["empty_layer"], json!(true));
        assert_eq!(s.config["created"], json!("2024-01-01T00:00:01Z"));
        s.container_config_mut().insert("Cmd".into(), json!(["sh"]));
        assert_eq!(s.container_config().cmd, vec!["sh".to_string()]);
    }
}
