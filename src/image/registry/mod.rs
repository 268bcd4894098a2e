//! A client for the OCI distribution API (and Docker's registry API, the same thing): manifests
//! and blobs fetched, checked for existence and uploaded, for one repository of one registry.

pub mod auth;
pub mod client;

use crate::image::digest::Digest;
use crate::image::reference::Reference;
use crate::image::store::{manifest_kind, ManifestKind, MAX_MANIFEST_SIZE};
use anyhow::{bail, Context, Result};
use auth::Credential;
pub use client::TransportOptions;
use client::{status_error, Body, Transport};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use ureq::http::{Method, StatusCode};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub use crate::image::store::{DOCKER_MANIFEST_LIST, DOCKER_MANIFEST_V2 as DOCKER_MANIFEST};

/// Every manifest type we can use, for the Accept header.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Is this a manifest kind we pull and push (an image manifest or an index, OCI or Docker)?
pub fn is_manifest_media_type(media_type: &str) -> bool {
    manifest_kind(media_type).is_some()
}

pub fn is_index_media_type(media_type: &str) -> bool {
    manifest_kind(media_type) == Some(ManifestKind::Index)
}

/// A manifest as the registry sent it: its exact bytes (the digest is over them), its media type
/// and where it came from.
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
    pub url: String,
}

/// A blob being downloaded: read it to the end; `size` is the announced Content-Length.
pub struct BlobStream {
    pub reader: Box<dyn Read + Send>,
    pub size: Option<u64>,
    pub url: String,
}

/// One repository (`library/busybox`) on one registry, with the authentication it needs.
#[derive(Clone)]
pub struct Repository {
    transport: Arc<Transport>,
    pub name: String,
    scope: String,
    /// Where blobs may be mounted from on push (see [`Repository::with_mount_source`]).
    mount_source: Option<String>,
}

impl Repository {
    /// Connects to the reference's registry (deciding HTTPS or, when allowed, HTTP). `push`
    /// asks for push rights as well as pull.
    pub fn open(
        reference: &Reference,
        options: &TransportOptions,
        credential: Option<Credential>,
        push: bool,
    ) -> Result<Repository> {
        let transport = Transport::connect(&reference.registry, options, credential)?;
        Ok(Repository {
            transport,
            name: reference.repository.clone(),
            scope: auth::repository_scope(&reference.repository, push),
            mount_source: None,
        })
    }

    pub fn manifest_url(&self, tag_or_digest: &str) -> String {
        self.transport
            .url(&format!("/v2/{}/manifests/{tag_or_digest}", self.name))
    }

    pub fn blob_url(&self, digest: &Digest) -> String {
        self.transport
            .url(&format!("/v2/{}/blobs/{digest}", self.name))
    }

    /// GETs a manifest by tag or digest and checks its digest: against the digest asked for, and
    /// against the registry's `Docker-Content-Digest` header.
    pub fn fetch_manifest(&self, tag_or_digest: &str) -> Result<FetchedManifest> {
        let url = self.manifest_url(tag_or_digest);
        let mut response = self.transport.send(
            Method::GET,
            &url,
            &self.scope,
            &[("Accept", MANIFEST_ACCEPT)],
            &Body::Empty,
        )?;
        if response.status() != StatusCode::OK {
            return Err(status_error("GET", &url, response));
        }
        let header_digest = header(&response, "docker-content-digest");
        let content_type = header(&response, "content-type")
            .map(|t| t.split(';').next().unwrap_or("").trim().to_string());
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_MANIFEST_SIZE)
            .read_to_vec()
            .with_context(|| format!("GET {url}: reading the manifest"))?;
        let digest = Digest::of_bytes(&bytes);
        if let Ok(asked) = Digest::parse(tag_or_digest) {
            if asked != digest {
                bail!("GET {url}: the manifest's digest is {digest}, not the {asked} asked for");
            }
        }
        if let Some(d) = header_digest.and_then(|h| Digest::parse(&h).ok()) {
            if d != digest {
                bail!(
                    "GET {url}: the registry says the manifest is {d} but its bytes are {digest}"
                );
            }
        }
        let media_type = manifest_media_type(content_type.as_deref(), &bytes)
            .with_context(|| format!("GET {url}"))?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
            url,
        })
    }

    /// Starts downloading a blob. The caller verifies digest and size as it reads (the store's
    /// ingest does); the stream is cut one byte past `expected_size` so a longer blob is seen.
    pub fn fetch_blob(&self, digest: &Digest, expected_size: u64) -> Result<BlobStream> {
        let url = self.blob_url(digest);
        let response = self
            .transport
            .send(Method::GET, &url, &self.scope, &[], &Body::Empty)?;
        if response.status() != StatusCode::OK {
            return Err(status_error("GET", &url, response));
        }
        let size = header(&response, "content-length").and_then(|l| l.parse().ok());
        let reader = response
            .into_body()
            .into_with_config()
            .limit(expected_size.saturating_add(1))
            .reader();
        Ok(BlobStream {
            reader: Box::new(reader),
            size,
            url,
        })
    }

    /// HEAD on a blob: does the registry already have it?
    pub fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let url = self.blob_url(digest);
        let response = self
            .transport
            .send(Method::HEAD, &url, &self.scope, &[], &Body::Empty)?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error("HEAD", &url, response)),
        }
    }

    /// The same repository, also allowed to mount blobs from `source` (another repository of
    /// the same registry): the token asked for then covers pulling from it too.
    pub fn with_mount_source(&self, source: &str) -> Repository {
        Repository {
            scope: format!("{} {}", self.scope, auth::repository_scope(source, false)),
            mount_source: Some(source.to_string()),
            ..self.clone()
        }
    }

    /// Uploads the blob held in `path`: in one PUT, or in PATCHes of `chunk_size` bytes when
    /// the blob is larger than that (0: never chunked). `progress` is told of bytes sent. With a
    /// mount source, the registry is first asked to link the blob from there (no bytes sent);
    /// returns true when it did.
    pub fn upload_blob(
        &self,
        digest: &Digest,
        path: &Path,
        chunk_size: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<bool> {
        let mut start_url = self
            .transport
            .url(&format!("/v2/{}/blobs/uploads/", self.name));
        if let Some(source) = &self.mount_source {
            start_url = format!("{start_url}?mount={}&from={source}", encode_digest(digest));
        }
        let response =
            self.transport
                .send(Method::POST, &start_url, &self.scope, &[], &Body::Empty)?;
        if self.mount_source.is_some() && response.status() == StatusCode::CREATED {
            return Ok(true);
        }
        // A registry that cannot mount opens an ordinary upload session instead.
        if response.status() != StatusCode::ACCEPTED {
            return Err(status_error("POST", &start_url, response));
        }
        let mut location = self.location(&response, "POST", &start_url)?;
        let size = std::fs::metadata(path)
            .with_context(|| format!("blob {digest}: {}", path.display()))?
            .len();
        let octets = [("Content-Type", "application/octet-stream")];
        let finish_body;
        if chunk_size > 0 && size > chunk_size {
            let mut file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let mut chunk = Vec::with_capacity(chunk_size.min(64 << 20) as usize);
            let mut offset = 0u64;
            while offset < size {
                chunk.clear();
                (&mut file)
                    .take(chunk_size)
                    .read_to_end(&mut chunk)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if chunk.is_empty() {
                    bail!("{} shrank while being pushed", path.display());
                }
                let range = format!("{}-{}", offset, offset + chunk.len() as u64 - 1);
                let response = self.transport.send(
                    Method::PATCH,
                    &location,
                    &self.scope,
                    &[octets[0], ("Content-Range", &range)],
                    &Body::Bytes(&chunk),
                )?;
                if response.status() != StatusCode::ACCEPTED {
                    return Err(status_error("PATCH", &location, response));
                }
                location = self.location(&response, "PATCH", &location)?;
                offset += chunk.len() as u64;
                progress(chunk.len() as u64);
            }
            finish_body = Body::Empty;
        } else {
            finish_body = Body::File(path, progress);
        }
        let separator = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{separator}digest={}", encode_digest(digest));
        let response =
            self.transport
                .send(Method::PUT, &put_url, &self.scope, &octets, &finish_body)?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error("PUT", &put_url, response));
        }
        Ok(false)
    }

    /// PUTs a manifest (or index) under a tag or its digest, with its media type.
    pub fn put_manifest(&self, tag_or_digest: &str, media_type: &str, bytes: &[u8]) -> Result<()> {
        let url = self.manifest_url(tag_or_digest);
        let response = self.transport.send(
            Method::PUT,
            &url,
            &self.scope,
            &[("Content-Type", media_type)],
            &Body::Bytes(bytes),
        )?;
        if response.status() != StatusCode::CREATED {
            return Err(status_error("PUT", &url, response));
        }
        let ours = Digest::of_bytes(bytes);
        if let Some(d) =
            header(&response, "docker-content-digest").and_then(|h| Digest::parse(&h).ok())
        {
            if d != ours {
                bail!("PUT {url}: the registry stored the manifest as {d}, not {ours}");
            }
        }
        Ok(())
    }

    /// The upload URL a 202 answer points to (absolute or relative to the registry).
    fn location(
        &self,
        response: &ureq::http::Response<ureq::Body>,
        method: &str,
        url: &str,
    ) -> Result<String> {
        let location = header(response, "location")
            .with_context(|| format!("{method} {url}: the registry gave no upload Location"))?;
        Ok(self.transport.url(&location))
    }
}

/// Checks that credentials are accepted by a registry: `GET /v2/`, authenticating when asked.
pub fn check_login(
    registry: &str,
    options: &TransportOptions,
    credential: Credential,
) -> Result<()> {
    let transport = Transport::connect(registry, options, Some(credential))?;
    let url = transport.url("/v2/");
    let response = transport.send(Method::GET, &url, "", &[], &Body::Empty)?;
    if response.status() != StatusCode::OK {
        return Err(status_error("GET", &url, response));
    }
    Ok(())
}

/// Runs `work` on every item with up to `jobs` threads; the first error stops the others from
/// starting new items and is returned once every thread has finished.
pub fn for_each_parallel<T: Sync>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let first_error: std::sync::Mutex<Option<anyhow::Error>> = std::sync::Mutex::new(None);
    let worker = || {
        use std::sync::atomic::Ordering::SeqCst;
        while !failed.load(SeqCst) {
            let i = next.fetch_add(1, SeqCst);
            let Some(item) = items.get(i) else { break };
            if let Err(e) = work(item) {
                failed.store(true, SeqCst);
                first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
            }
        }
    };
    let threads = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(worker);
        }
        worker();
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `sha256:<hex>` with the colon percent-encoded, for a query string.
fn encode_digest(digest: &Digest) -> String {
    digest.to_string().replace(':', "%3A")
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The manifest's media type: the Content-Type when it names a manifest kind, else the
/// document's own `mediaType` (some registries send `application/json`), else its shape.
fn manifest_media_type(content_type: Option<&str>, bytes: &[u8]) -> Result<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    if let Some(t) = content_type.filter(|t| is_manifest_media_type(t)) {
        return Ok(t.to_string());
    }
    let probe: Probe = serde_json::from_slice(bytes).context("the manifest is not valid JSON")?;
    let media_type = match (&probe.media_type, &probe.manifests, &probe.layers) {
        (Some(t), _, _) => t.clone(),
        (None, Some(_), _) => OCI_INDEX.to_string(),
        (None, None, Some(_)) if probe.schema_version == Some(2) => OCI_MANIFEST.to_string(),
        _ => content_type.unwrap_or("none").to_string(),
    };
    if is_manifest_media_type(&media_type) {
        return Ok(media_type);
    }
    if probe.schema_version == Some(1) || media_type.contains("manifest.v1+") {
        bail!("unsupported manifest media type {media_type:?} (Docker schema 1 is obsolete)");
    }
    bail!("unknown manifest media type {media_type:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_work_runs_every_item_or_stops_at_the_first_error() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let items: Vec<usize> = (0..50).collect();
        let sum = AtomicUsize::new(0);
        for_each_parallel(&items, 4, |i| {
            sum.fetch_add(*i, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(sum.into_inner(), (0..50).sum::<usize>());

        let started = AtomicUsize::new(0);
        let err = for_each_parallel(&items, 1, |i| {
            started.fetch_add(1, Ordering::SeqCst);
            if *i == 3 {
                bail!("item {i} failed");
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "item 3 failed");
        assert_eq!(started.into_inner(), 4, "nothing started after the failure");
        for_each_parallel(&[] as &[u8], 8, |_| bail!("never called")).unwrap();
    }

    #[test]
    fn media_type_from_header_body_or_shape() {
        let oci = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            manifest_media_type(Some(DOCKER_MANIFEST), oci).unwrap(),
            DOCKER_MANIFEST
        );
        assert_eq!(
            manifest_media_type(Some("application/json"), oci).unwrap(),
            OCI_MANIFEST
        );
        let list = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(manifest_media_type(None, list).unwrap(), OCI_INDEX);
        let odd = br#"{"schemaVersion":2,"mediaType":"application/x-strange"}"#;
        let err = manifest_media_type(None, odd).unwrap_err().to_string();
        assert!(
            err.contains("unknown manifest media type") && err.contains("x-strange"),
            "{err}"
        );
        let v1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(manifest_media_type(
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            v1
        )
        .unwrap_err()
        .to_string()
        .contains("schema 1"));
    }
}
