//! Bad input from registries: wrong digests and sizes, dropped connections, unknown media
//! types, 401/403/404 and unreachable registries. Each error names the reference and the URL,
//! berth exits non-zero, and nothing partial becomes visible in the store.

mod registry_support;

use registry_support::*;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A small valid image: a config and two gzip tar layers, served by a fake registry.
struct FakeImage {
    manifest: Vec<u8>,
    manifest_digest: String,
    config_digest: String,
    layer_digests: Vec<String>,
    blobs: HashMap<String, Vec<u8>>,
}

fn gzip_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append_data(&mut header, name, *content).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn fake_image() -> FakeImage {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let layers = [
        gzip_tar(&[("etc/one.txt", b"one\n")]),
        gzip_tar(&[("data/big.bin", &big)]),
    ];
    let mut blobs = HashMap::new();
    let mut layer_digests = Vec::new();
    let mut layer_descriptors = Vec::new();
    for l in &layers {
        let d = format!("sha256:{}", sha256_hex(l));
        layer_descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d, "size": l.len()
        }));
        layer_digests.push(d.clone());
        blobs.insert(d, l.clone());
    }
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| {
            let mut tar = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&l[..]), &mut tar)
                .unwrap();
            format!("sha256:{}", sha256_hex(&tar))
        })
        .collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .unwrap();
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": layer_descriptors,
    }))
    .unwrap();
    blobs.insert(config_digest.clone(), config);
    FakeImage {
        manifest_digest: format!("sha256:{}", sha256_hex(&manifest)),
        manifest,
        config_digest,
        layer_digests,
        blobs,
    }
}

/// Serves `image` as `repo:v1`; `tamper` may change the response for a blob (by digest) on
/// its n-th request (counting from 0).
fn serve_image(
    image: &FakeImage,
    tamper: impl Fn(&str, usize, Response) -> Response + Send + Sync + 'static,
) -> FakeServer {
    let manifest = image.manifest.clone();
    let blobs = image.blobs.clone();
    let counts: Arc<std::sync::Mutex<HashMap<String, usize>>> = Default::default();
    FakeServer::start(move |r| {
        let path = r.target.split('?').next().unwrap();
        if path == "/v2/" {
            return Response::new(200, "{}");
        }
        if path.ends_with("/manifests/v1") {
            return Response::new(200, manifest.clone()).header("Content-Type", OCI_MANIFEST);
        }
        if let Some((_, digest)) = path.split_once("/blobs/") {
            if let Some(bytes) = blobs.get(digest) {
                let n = {
                    let mut c = counts.lock().unwrap();
                    let e = c.entry(digest.to_string()).or_insert(0);
                    *e += 1;
                    *e - 1
                };
                return tamper(digest, n, Response::new(200, bytes.clone()));
            }
        }
        Response::new(
            404,
            r#"{"errors":[{"code":"NOT_FOUND","message":"no such thing"}]}"#,
        )
    })
}

fn assert_nothing_named_or_partial(root: &std::path::Path) {
    assert!(
        store_names(root).is_empty(),
        "a name appeared: {:?}",
        store_names(root)
    );
    assert!(
        ingest_leftovers(root).is_empty(),
        "partial files: {:?}",
        ingest_leftovers(root)
    );
}

#[test]
fn a_blob_with_the_wrong_digest_or_size_is_rejected_and_never_stored() {
    let image = fake_image();
    let work = TempDir::new("bad-blob");
    let bad_layer = image.layer_digests[0].clone();

    // Same size, other bytes.
    let target = bad_layer.clone();
    let server = serve_image(&image, move |d, _, mut resp| {
        if d == target {
            resp.body[10] ^= 0xff;
        }
        resp
    });
    let root = work.join("root1");
    let reference = format!("{}/bad/digest:v1", server.addr);
    let out = berth(&root, &["pull", "--tls-verify=false", &reference]).fails();
    assert!(
        out.stderr.contains("digest mismatch")
            && out.stderr.contains(&reference)
            && out
                .stderr
                .contains(&format!("/v2/bad/digest/blobs/{bad_layer}")),
        "{}",
        out.stderr
    );
    assert!(!store_has_blob(&root, &bad_layer));
    assert!(!store_has_blob(&root, &image.manifest_digest));
    assert_nothing_named_or_partial(&root);

    // Longer than the manifest says (and announced so): refused before reading.
    let target = bad_layer.clone();
    let server = serve_image(&image, move |d, _, mut resp| {
        if d == target {
            resp.body.extend_from_slice(b"trailing junk");
        }
        resp
    });
    let root = work.join("root2");
    let reference = format!("{}/bad/size:v1", server.addr);
    let out = berth(&root, &["pull", "--tls-verify=false", &reference]).fails();
    assert!(
        out.stderr.contains("the manifest says") && out.stderr.contains(&reference),
        "{}",
        out.stderr
    );
    assert!(!store_has_blob(&root, &bad_layer));
    assert_nothing_named_or_partial(&root);
}

#[test]
fn an_interrupted_pull_leaves_no_image_and_the_next_pull_completes_it() {
    let image = fake_image();
    let work = TempDir::new("interrupted");
    let big_layer = image.layer_digests[1].clone();
    let target = big_layer.clone();
    // The first download of the big layer drops after 1000 bytes; later ones are whole.
    let server = serve_image(&image, move |d, n, mut resp| {
        if d == target && n == 0 {
            resp.cut_after = Some(1000);
        }
        resp
    });
    let root = work.join("root");
    let reference = format!("{}/flaky/app:v1", server.addr);
    let out = berth(
        &root,
        &["pull", "--tls-verify=false", "--jobs", "1", &reference],
    )
    .fails();
    assert!(out.stderr.contains(&reference), "{}", out.stderr);
    assert!(!store_has_blob(&root, &big_layer));
    assert!(!store_has_blob(&root, &image.manifest_digest));
    assert_nothing_named_or_partial(&root);
    let fetched_before = server
        .requests()
        .iter()
        .filter(|r| r.contains("/blobs/"))
        .count();

    let out = berth(&root, &["pull", "--tls-verify=false", &reference]).ok();
    assert_eq!(out.digest(), image.manifest_digest);
    assert_eq!(store_names(&root), vec![reference.clone()]);
    assert!(store_has_blob(&root, &big_layer) && store_has_blob(&root, &image.config_digest));
    // Only what was missing was fetched again.
    let present = out
        .stdout
        .split(", ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("{}", out.stdout));
    let fetched_again = server
        .requests()
        .iter()
        .filter(|r| r.contains("/blobs/"))
        .count()
        - fetched_before;
    assert_eq!(present + fetched_again, 3, "{}", out.stdout);
    assert!(fetched_again >= 1 && present >= 1, "{}", out.stdout);
}

#[test]
fn unknown_media_type_names_reference_and_url() {
    let server = FakeServer::start(|r| {
        if r.target == "/v2/" {
            return Response::new(200, "{}");
        }
        Response::new(
            200,
            r#"{"schemaVersion":2,"mediaType":"application/x-strange"}"#,
        )
        .header("Content-Type", "application/x-strange")
    });
    let work = TempDir::new("media");
    let root = work.join("root");
    let reference = format!("{}/odd/thing:v1", server.addr);
    let out = berth(&root, &["pull", "--tls-verify=false", &reference]).fails();
    assert!(
        out.stderr
            .contains("unknown manifest media type \"application/x-strange\"")
            && out.stderr.contains(&reference)
            && out
                .stderr
                .contains(&format!("http://{}/v2/odd/thing/manifests/v1", server.addr)),
        "{}",
        out.stderr
    );
    assert_nothing_named_or_partial(&root);
}

#[test]
fn a_manifest_whose_bytes_do_not_match_the_digest_asked_for_is_refused() {
    let image = fake_image();
    let server = serve_image(&image, |_, _, r| r);
    let work = TempDir::new("manifest-digest");
    let root = work.join("root");
    // The fake answers every manifest request with the same bytes, whatever the digest.
    let other = format!("sha256:{}", "ab".repeat(32));
    let wanted = format!("{}/x/y@{other}", server.addr);
    let out = berth(&root, &["pull", "--tls-verify=false", &wanted]).fails();
    // The fake serves manifests only under the tag v1: a 404 naming the URL.
    assert!(
        out.stderr.contains(&format!("/v2/x/y/manifests/{other}")),
        "{}",
        out.stderr
    );

    let liar = FakeServer::start(move |r| {
        if r.target == "/v2/" {
            return Response::new(200, "{}");
        }
        Response::new(200, image.manifest.clone()).header("Content-Type", OCI_MANIFEST)
    });
    let wanted = format!("{}/x/y@{other}", liar.addr);
    let out = berth(&root, &["pull", "--tls-verify=false", &wanted]).fails();
    assert!(
        out.stderr.contains("not the sha256:abab") && out.stderr.contains(&wanted),
        "{}",
        out.stderr
    );
    assert_nothing_named_or_partial(&root);
}

#[test]
fn status_401_403_404_and_unreachable_name_reference_and_url() {
    let work = TempDir::new("statuses");
    let root = work.join("root");

    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let server = FakeServer::start(move |r| {
        h.fetch_add(1, Ordering::SeqCst);
        match r.target.as_str() {
            "/v2/" => Response::new(200, "{}"),
            t if t.contains("/locked/") => Response::new(
                401,
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
            .header("WWW-Authenticate", r#"Basic realm="fake""#),
            _ => Response::new(
                403,
                r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
            ),
        }
    });
    let locked = format!("{}/locked/app:v1", server.addr);
    let out = berth(&root, &["pull", "--tls-verify=false", &locked]).fails();
    assert!(
        out.stderr.contains("401 Unauthorized")
            && out.stderr.contains("berth login")
            && out.stderr.contains(&locked)
            && out.stderr.contains(&format!(
                "http://{}/v2/locked/app/manifests/v1",
                server.addr
            )),
        "{}",
        out.stderr
    );
    let denied = format!("{}/denied/app:v1", server.addr);
    let out = berth(&root, &["pull", "--tls-verify=false", &denied]).fails();
    assert!(
        out.stderr.contains("403 Forbidden")
            && out.stderr.contains("DENIED")
            && out.stderr.contains(&denied)
            && out.stderr.contains("/v2/denied/app/manifests/v1"),
        "{}",
        out.stderr
    );

    let registry = Registry::start();
    let missing = format!("{}/no/such:image", registry.addr);
    let out = berth(&root, &["pull", "--tls-verify=false", &missing]).fails();
    assert!(
        out.stderr.contains("404 Not Found")
            && out.stderr.contains("MANIFEST_UNKNOWN")
            && out.stderr.contains(&missing)
            && out.stderr.contains(&format!(
                "http://{}/v2/no/such/manifests/image",
                registry.addr
            )),
        "{}",
        out.stderr
    );

    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("127.0.0.1:{port}/some/app:v1");
    let out = berth(&root, &["pull", &nowhere]).fails();
    assert!(
        out.stderr.contains("cannot reach the registry at")
            && out
                .stderr
                .contains(&format!("https://127.0.0.1:{port}/v2/"))
            && out.stderr.contains(&format!("pulling {nowhere}")),
        "{}",
        out.stderr
    );
    // HTTPS to a plain-HTTP registry with verification on: no silent downgrade.
    let out = berth(&root, &["pull", &format!("{}/test/x:v1", registry.addr)]).fails();
    assert!(
        out.stderr
            .contains(&format!("https://{}/v2/", registry.addr))
            && out.stderr.contains("use --tls-verify=false"),
        "{}",
        out.stderr
    );
    assert!(
        !registry.log().contains("/v2/test/x/"),
        "no request went out over HTTP"
    );

    let out = berth(&root, &["pull", "--tls-verify=false", "Bad//Ref"]).fails();
    assert!(out.stderr.contains("\"Bad//Ref\""), "{}", out.stderr);
    assert_nothing_named_or_partial(&root);
}

#[test]
fn a_broken_token_server_or_challenge_is_named() {
    let work = TempDir::new("bad-token");
    let root = work.join("root");
    let tokens = FakeServer::start(|r| {
        if r.target.contains("scope=repository%3Aempty") {
            Response::new(200, "{}")
        } else {
            Response::new(200, "not json")
        }
    });
    let realm = format!("http://{}/token", tokens.addr);
    let registry = FakeServer::start(move |r| {
        let challenge = if r.target.contains("/norealm/") {
            r#"Bearer service="x""#.to_string()
        } else {
            format!(r#"Bearer realm="{realm}",service="fake""#)
        };
        if r.target == "/v2/" {
            return Response::new(200, "{}");
        }
        Response::new(401, "").header("WWW-Authenticate", &challenge)
    });
    for (repo, expected) in [
        ("empty/app", "answered without a token"),
        ("garbage/app", "invalid JSON answer"),
        ("norealm/app", "Bearer challenge has no realm"),
    ] {
        let reference = format!("{}/{repo}:v1", registry.addr);
        let out = berth(&root, &["pull", "--tls-verify=false", &reference]).fails();
        assert!(
            out.stderr.contains(expected)
                && out.stderr.contains(&reference)
                && out.stderr.contains(&format!("/v2/{repo}/manifests/v1")),
            "{repo}: {}",
            out.stderr
        );
    }
    assert_nothing_named_or_partial(&root);
}
