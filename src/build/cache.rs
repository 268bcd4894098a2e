//! The build cache, keyed as BuildKit keys it: each step's key is the digest of its parent's
//! key, the instruction as expanded, the build args in scope a RUN sees, and for COPY and ADD
//! the digest of the sources' content and metadata. A record maps a key to the image state
//! after the step (config and layers), under `<data-root>/build/cache/`.
//!
//! Records do not hold blobs alive: `rmi` deletes the layers no named image needs, and a record
//! whose layers are gone is a miss (and is removed). Records are written as each step ends,
//! so a failed or interrupted build's finished steps are cache for the next.

use super::image_state::ImageState;
use crate::image::store::Store;
use crate::image::Digest;
use crate::runtime::fsutil::write_atomically;
use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;

/// A step's cache key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey(pub Digest);

impl CacheKey {
    /// The key of a stage's base: what it starts from (an image's manifest digest, an
    /// earlier stage's last key, `scratch`) and the platform.
    pub fn base(what: &str, platform: &str) -> CacheKey {
        CacheKey(Digest::of_bytes(
            format!("berth-build-v1\0from\0{what}\0{platform}").as_bytes(),
        ))
    }

    /// The key of a step after `self`: `parts` say all the step depends on.
    pub fn child(&self, parts: &[&str]) -> CacheKey {
        let mut text = self.0.to_string();
        for p in parts {
            // Lengths first: no two lists of parts give the same text.
            text.push_str(&format!("\0{}\0{p}", p.len()));
        }
        CacheKey(Digest::of_bytes(text.as_bytes()))
    }
}

pub struct Cache {
    dir: PathBuf,
    /// `--no-cache`: look nothing up (records are still written).
    disabled: bool,
}

impl Cache {
    pub fn new(dir: PathBuf, disabled: bool) -> Cache {
        Cache { dir, disabled }
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.0.hex()))
    }

    /// The state a step with this key produced before, if its layers are still in the store.
    pub fn lookup(&self, store: &Store, key: &CacheKey) -> Option<ImageState> {
        if self.disabled {
            return None;
        }
        let path = self.path(key);
        let bytes = fs::read(&path).ok()?;
        match serde_json::from_slice::<ImageState>(&bytes) {
            Ok(state) if state.blobs_present(store) => Some(state),
            _ => {
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    pub fn record(&self, key: &CacheKey, state: &ImageState) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        write_atomically(&self.path(key), &serde_json::to_vec(state)?)
    }

    /// Removes every record (`builder prune`); returns how many there were.
    pub fn clear(&self) -> Result<usize> {
        let mut n = 0;
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if fs::remove_file(e.path()).is_ok() {
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_parent_and_every_part() {
        let a = CacheKey::base("scratch", "linux/amd64");
        assert_ne!(a, CacheKey::base("scratch", "linux/arm64"));
        let b = a.child(&["RUN echo hi"]);
        assert_eq!(b, a.child(&["RUN echo hi"]));
        assert_ne!(b, a.child(&["RUN echo ho"]));
        assert_ne!(b, b.child(&["RUN echo hi"]));
        // Parts are delimited: ["ab", "c"] and ["a", "bc"] differ.
        assert_ne!(a.child(&["ab", "c"]), a.child(&["a", "bc"]));
    }

    #[test]
    fn records_are_found_and_stale_ones_dropped() {
        let root = std::env::temp_dir().join(format!("berth-cache-test-{}", std::process::id()));
        let store = Store::open(&root.join("data")).unwrap();
        let cache = Cache::new(root.join("cache"), false);
        let key = CacheKey::base("scratch", "linux/amd64").child(&["CMD x"]);
        assert!(cache.lookup(&store, &key).is_none());
        let state = ImageState::scratch();
        cache.record(&key, &state).unwrap();
        assert_eq!(cache.lookup(&store, &key), Some(state.clone()));
        assert!(Cache::new(root.join("cache"), true)
            .lookup(&store, &key)
            .is_none());
        // A layer no longer in the store: a miss, and the record goes.
        let mut gone = state;
        gone.push_layer(super::super::image_state::Layer {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            digest: format!("sha256:{}", "c".repeat(64)),
            size: 1,
            diff_id: format!("sha256:{}", "d".repeat(64)),
        });
        cache.record(&key, &gone).unwrap();
        assert!(cache.lookup(&store, &key).is_none());
        assert!(!cache.path(&key).exists());
        assert_eq!(cache.clear().unwrap(), 0);
        let _ = fs::remove_dir_all(&root);
    }
}
