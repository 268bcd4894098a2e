//! Pull and push against a real registry (Debian's docker-registry), with skopeo on the other
//! side: what skopeo puts in the registry berth pulls with equal digests, and what berth pushes
//! skopeo reads with equal digests. Test images are made here with umoci from the busybox rootfs.

mod registry_support;

use registry_support::*;
use serde_json::{json, Value};

/// An image made with umoci and copied into `registry` by skopeo as `repo:tag`.
fn seed(registry: &Registry, work: &TempDir, repo_tag: &str, skopeo_flags: &[&str]) -> String {
    let reference = format!("{}/{repo_tag}", registry.addr);
    seed_image(work.path(), &reference, skopeo_flags);
    reference
}

#[test]
fn pull_what_skopeo_pushed_digests_equal_and_blobs_verified() {
    let registry = Registry::start();
    let work = TempDir::new("pull");
    let reference = seed(&registry, &work, "test/busybox:v1", &[]);
    let root = work.join("root");

    let pulled = berth(&root, &["pull", "--tls-verify=false", &reference]).ok();
    assert_eq!(pulled.digest(), skopeo_digest(&reference));
    assert!(
        pulled.stdout.contains("4 blobs fetched"),
        "{}",
        pulled.stdout
    );
    assert_eq!(store_names(&root), vec![reference.clone()]);

    // Every blob the manifest names is in the store, with the bytes the registry holds.
    let manifest = skopeo_raw(&reference);
    let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    for layer in manifest["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().to_string());
    }
    assert_eq!(digests.len(), 4);
    for d in &digests {
        let stored = std::fs::read(root.join("image/blobs/sha256").join(&d[7..])).unwrap();
        assert_eq!(format!("sha256:{}", sha256_hex(&stored)), *d);
    }
    assert!(store_has_blob(&root, &pulled.digest()));

    // The layers were unpacked during the pull: one snapshot each, and a bundle made from the
    // image shows the added file and not the one the whiteout removed.
    let snapshots = std::fs::read_dir(root.join("image/snapshots"))
        .unwrap()
        .count();
    assert_eq!(snapshots, 3);
    let bundle = work.join("bundle");
    berth(
        &root,
        &["bundle", "--copy", &reference, bundle.to_str().unwrap()],
    )
    .ok();
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("bin/busybox").is_file());
    assert!(std::fs::read_to_string(rootfs.join("etc/hello.txt"))
        .unwrap()
        .starts_with("hello from v1"));
    assert!(
        !rootfs.join("etc/group").exists(),
        "removed by the third layer's whiteout"
    );
    berth(&root, &["rm-bundle", bundle.to_str().unwrap()]).ok();

    // A second pull fetches nothing; a pull by digest names the same manifest.
    let again = berth(&root, &["pull", "--tls-verify=false", &reference]).ok();
    assert!(
        again.stdout.contains("0 blobs fetched, 4 already present"),
        "{}",
        again.stdout
    );
    let by_digest = format!(
        "{}/test/busybox@{}",
        registry.addr,
        skopeo_digest(&reference)
    );
    let quiet = berth(&root, &["pull", "-q", "--tls-verify=false", &by_digest]).ok();
    assert_eq!(quiet.stdout.trim(), by_digest);
    assert!(
        quiet.stderr.is_empty(),
        "no progress when not a terminal: {}",
        quiet.stderr
    );
}

#[test]
fn pull_docker_schema2_zstd_and_uncompressed_layers() {
    let registry = Registry::start();
    let work = TempDir::new("formats");
    let source = make_test_image(work.path(), "v1");
    let root = work.join("root");

    // zstd layers (first: skopeo would reuse gzip blobs already in the registry).
    let zstd = format!("{}/fmt/zstd:v1", registry.addr);
    skopeo_copy(
        &source,
        &format!("docker://{zstd}"),
        &["--dest-compress", "--dest-compress-format", "zstd"],
    );
    let raw = skopeo_raw(&zstd);
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let pulled = berth(&root, &["pull", "--tls-verify=false", &zstd]).ok();
    assert_eq!(pulled.digest(), skopeo_digest(&zstd));

    // Docker schema 2 (manifest and gzip layers with Docker's media types).
    let docker = format!("{}/fmt/docker:v1", registry.addr);
    skopeo_copy(
        &source,
        &format!("docker://{docker}"),
        &["--format", "v2s2"],
    );
    let raw = skopeo_raw(&docker);
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let pulled = berth(&root, &["pull", "--tls-verify=false", &docker]).ok();
    assert_eq!(pulled.digest(), skopeo_digest(&docker));

    // Uncompressed layers: the gzip image's layers decompressed and put in by hand.
    let gzip = skopeo_raw(&docker);
    let mut layers = Vec::new();
    for layer in gzip["layers"].as_array().unwrap() {
        let compressed = get_blob(
            &registry.addr,
            "fmt/docker",
            layer["digest"].as_str().unwrap(),
        );
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut tar)
            .unwrap();
        let digest = put_blob(&registry.addr, "fmt/plain", &tar);
        layers.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest, "size": tar.len()
        }));
    }
    let config = get_blob(
        &registry.addr,
        "fmt/docker",
        gzip["config"]["digest"].as_str().unwrap(),
    );
    let config_digest = put_blob(&registry.addr, "fmt/plain", &config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = put_manifest(
        &registry.addr,
        "fmt/plain",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &bytes,
    );
    let plain = format!("{}/fmt/plain:v1", registry.addr);
    let pulled = berth(&root, &["pull", "--tls-verify=false", &plain]).ok();
    assert_eq!(pulled.digest(), digest);
    for l in &layers {
        assert!(store_has_blob(&root, l["digest"].as_str().unwrap()));
    }
}

/// An index (OCI or Docker manifest list) with an amd64 and an arm64 image: the host's platform
/// by default, the other with --platform, a clear error for one it lacks.
#[test]
fn pull_chooses_the_platform_from_an_index_or_manifest_list() {
    let registry = Registry::start();
    let work = TempDir::new("platform");
    let amd64 = seed(&registry, &work, "multi/app:amd64", &[]);
    let amd64_manifest = skopeo_raw(&amd64);
    let amd64_digest = skopeo_digest(&amd64);
    let amd64_size = get_manifest(&registry.addr, "multi/app", "amd64").len();
    // A single-platform image: --platform must match its config.
    let root = work.join("root-single");
    berth(
        &root,
        &[
            "pull",
            "--tls-verify=false",
            "--platform",
            "linux/amd64",
            &amd64,
        ],
    )
    .ok();
    let out = berth(
        &root,
        &[
            "pull",
            "--tls-verify=false",
            "--platform",
            "linux/arm64",
            &amd64,
        ],
    )
    .fails();
    assert!(
        out.stderr
            .contains("the image is for linux/amd64, not the platform linux/arm64")
            && out.stderr.contains(&amd64),
        "{}",
        out.stderr
    );

    // An arm64 variant: same layers, a config saying arm64.
    let config_digest = amd64_manifest["config"]["digest"].as_str().unwrap();
    let mut config: Value =
        serde_json::from_slice(&get_blob(&registry.addr, "multi/app", config_digest)).unwrap();
    config["architecture"] = json!("arm64");
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let arm_config = put_blob(&registry.addr, "multi/app", &config_bytes);
    let mut arm_manifest = amd64_manifest.clone();
    arm_manifest["config"]["digest"] = json!(arm_config);
    arm_manifest["config"]["size"] = json!(config_bytes.len());
    let arm_bytes = serde_json::to_vec(&arm_manifest).unwrap();
    let oci_manifest = "application/vnd.oci.image.manifest.v1+json";
    let arm_digest = put_manifest(
        &registry.addr,
        "multi/app",
        "arm64",
        oci_manifest,
        &arm_bytes,
    );
    for (index_type, entry_type, tag) in [
        (
            "application/vnd.oci.image.index.v1+json",
            oci_manifest,
            "oci-index",
        ),
        (
            "application/vnd.docker.distribution.manifest.list.v2+json",
            oci_manifest,
            "docker-list",
        ),
    ] {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": [
                {"mediaType": entry_type, "digest": arm_digest, "size": arm_bytes.len(),
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": entry_type, "digest": amd64_digest, "size": amd64_size,
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        });
        let index_bytes = serde_json::to_vec(&index).unwrap();
        put_manifest(&registry.addr, "multi/app", tag, index_type, &index_bytes);
        let reference = format!("{}/multi/app:{tag}", registry.addr);

        let root = work.join(&format!("root-{tag}"));
        let host = berth(&root, &["pull", "--tls-verify=false", &reference]).ok();
        assert_eq!(
            host.digest(),
            amd64_digest,
            "{tag}: the host's platform (linux/amd64)"
        );
        let arm = berth(
            &root,
            &[
                "pull",
                "--tls-verify=false",
                "--platform",
                "linux/arm64",
                &reference,
            ],
        )
        .ok();
        assert_eq!(arm.digest(), arm_digest, "{tag}: --platform linux/arm64");
        assert!(store_has_blob(&root, &arm_config));

        let missing = berth(
            &root,
            &[
                "pull",
                "--tls-verify=false",
                "--platform",
                "linux/s390x",
                &reference,
            ],
        )
        .fails();
        assert!(
            missing.stderr.contains("no image for platform linux/s390x")
                && missing.stderr.contains("linux/arm64/v8, linux/amd64")
                && missing.stderr.contains(&reference)
                && missing
                    .stderr
                    .contains(&format!("/v2/multi/app/manifests/{tag}")),
            "{}",
            missing.stderr
        );
        let bad = berth(&root, &["pull", "--platform", "linux", &reference]).fails();
        assert!(
            bad.stderr.contains("--platform \"linux\""),
            "{}",
            bad.stderr
        );
    }

    // An index in the store (loaded from an OCI archive skopeo wrote with --all) is pushed with
    // both its manifests; the registry then holds the very same index.
    let index_ref = format!("{}/multi/app:oci-index", registry.addr);
    let index_digest = skopeo_digest(&index_ref);
    let archive = work.join("multi.tar");
    let loaded_name = format!("{}/loaded/multi:idx", registry.addr);
    skopeo_copy(
        &format!("docker://{index_ref}"),
        &format!("oci-archive:{}:{loaded_name}", archive.display()),
        &["--all"],
    );
    let root = work.join("root-index");
    berth(&root, &["load", "-i", archive.to_str().unwrap()]).ok();
    let target = format!("{}/pushed/multi:v1", registry.addr);
    let pushed = berth(
        &root,
        &["push", "--tls-verify=false", &loaded_name, &target],
    )
    .ok();
    assert_eq!(pushed.digest(), index_digest);
    assert_eq!(skopeo_digest(&target), index_digest);
    assert_eq!(
        skopeo_digest(&format!("{}/pushed/multi@{arm_digest}", registry.addr)),
        arm_digest
    );
}

#[test]
fn push_monolithic_chunked_and_mounted_read_back_by_skopeo() {
    let registry = Registry::start();
    // Pushes to another registry send the bytes; within the first one they are mounted.
    let other = Registry::start();
    let work = TempDir::new("push");
    let reference = seed(&registry, &work, "src/busybox:v1", &[]);
    let root = work.join("root");
    let pulled = berth(&root, &["pull", "--tls-verify=false", &reference]).ok();
    let digest = pulled.digest();

    // One PUT per blob (blobs are below the default chunk size).
    let mono = format!("{}/dst/mono:v1", other.addr);
    let pushed = berth(&root, &["push", "--tls-verify=false", &reference, &mono]).ok();
    assert_eq!(pushed.digest(), digest);
    assert!(
        pushed
            .stdout
            .contains("4 blobs pushed, 0 mounted, 0 already there"),
        "{}",
        pushed.stdout
    );
    assert_eq!(skopeo_digest(&mono), digest);

    // Chunks of 64 KiB: the 1 MB busybox layer goes up in PATCHes.
    let patches_before = other.log().matches("http.request.method=PATCH").count();
    let chunked = format!("{}/dst/chunked:v1", other.addr);
    let pushed = berth(
        &root,
        &[
            "push",
            "-q",
            "--chunk-size",
            "64k",
            "--tls-verify=false",
            &reference,
            &chunked,
        ],
    )
    .ok();
    assert!(
        pushed.stdout.contains(&format!("Pushed {chunked}")),
        "{}",
        pushed.stdout
    );
    assert_eq!(skopeo_digest(&chunked), digest);
    let patches = other.log().matches("http.request.method=PATCH").count() - patches_before;
    assert!(
        patches >= 10,
        "expected many PATCH requests, the log shows {patches}"
    );

    // skopeo copies both back out into an OCI layout (it verifies every blob) and the
    // layers are byte-for-byte the source's.
    for pushed_ref in [&mono, &chunked] {
        let out = work.join(&format!("out-{}", pushed_ref.len()));
        skopeo_copy(
            &format!("docker://{pushed_ref}"),
            &format!("oci:{}:x", out.display()),
            &[],
        );
        let index: Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    }

    // Pushing again: every blob is already there (HEAD), only the manifest is put.
    let again = berth(&root, &["push", "--tls-verify=false", &reference, &mono]).ok();
    assert!(
        again
            .stdout
            .contains("0 blobs pushed, 0 mounted, 4 already there"),
        "{}",
        again.stdout
    );

    // Push by its own name (no destination) to the same registry.
    let same = berth(&root, &["push", "--tls-verify=false", &reference]).ok();
    assert_eq!(same.digest(), digest);

    // Another repository of the source's registry: every blob mounted, none sent.
    let mounted = format!("{}/dst/mounted:v1", registry.addr);
    let out = berth(&root, &["push", "--tls-verify=false", &reference, &mounted]).ok();
    assert!(
        out.stdout
            .contains("0 blobs pushed, 4 mounted, 0 already there"),
        "{}",
        out.stdout
    );
    assert_eq!(skopeo_digest(&mounted), digest);
}

#[test]
fn push_of_an_image_not_in_the_store_or_to_a_wrong_digest_fails_clearly() {
    let registry = Registry::start();
    let work = TempDir::new("push-bad");
    let root = work.join("root");
    let missing = format!("{}/nothing/here:v1", registry.addr);
    let out = berth(&root, &["push", "--tls-verify=false", &missing]).fails();
    assert!(
        out.stderr.contains(&missing) && out.stderr.contains("not in the store"),
        "{}",
        out.stderr
    );

    let reference = seed(&registry, &work, "src/busybox:v1", &[]);
    berth(&root, &["pull", "--tls-verify=false", &reference]).ok();
    let wrong = format!("{}/dst/x@sha256:{}", registry.addr, "0".repeat(64));
    let out = berth(&root, &["push", "--tls-verify=false", &reference, &wrong]).fails();
    assert!(
        out.stderr.contains("names digest sha256:000"),
        "{}",
        out.stderr
    );
    let out = berth(&root, &["push", "--chunk-size", "12q", &reference]).fails();
    assert!(out.stderr.contains("--chunk-size"), "{}", out.stderr);
}

/// Progress bars are drawn on a terminal (here a pty made by script(1)) and not with -q.
#[test]
fn progress_bars_on_a_terminal_only() {
    let registry = Registry::start();
    let work = TempDir::new("progress");
    let reference = seed(&registry, &work, "bars/busybox:v1", &[]);
    let on_tty = |root: &str, quiet: bool| {
        let line = format!(
            "{} --data-root {} pull --tls-verify=false {} {reference}",
            env!("CARGO_BIN_EXE_berth"),
            work.join(root).display(),
            if quiet { "-q" } else { "" }
        );
        ok("script", &["-qefc", &line, "/dev/null"])
    };
    let shown = on_tty("root1", false);
    assert!(shown.contains("Pulled"), "{shown}");
    assert!(
        shown.contains("done") && shown.contains("[===") && shown.contains("MiB"),
        "bars expected on a terminal:\n{shown}"
    );
    let quiet = on_tty("root2", true);
    assert_eq!(quiet.trim(), reference, "-q prints only the name");
}
