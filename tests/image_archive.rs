//! save/load in docker-archive and oci-archive form: round trips through berth, and interop
//! with skopeo (Debian's) as the oracle, digests equal both ways.

mod image_support;

use berth::image::Digest;
use image_support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `berth save --format oci-archive IMAGE` into FILE of the scratch directory.
fn save_oci_archive(s: &Scratch, file: &str, image: &str) -> PathBuf {
    let oci = s.path(file);
    s.berth_ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        oci.to_str().unwrap(),
        image,
    ]);
    oci
}

/// The manifest (or index) skopeo reads from an OCI archive, as stored.
fn skopeo_raw(oci: &Path) -> Vec<u8> {
    skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}", oci.display()),
    ])
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("skopeo is installed by .ci/run");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn three_layer_image(s: &Scratch, name: &str) -> (String, String) {
    let store = s.store();
    let mut second = RawTar::default();
    second
        .add(Entry::dir("srv/"))
        .add(Entry::file("srv/one", b"1"))
        .add(Entry::file("srv/two", b"2"));
    let mut third = RawTar::default();
    third
        .add(Entry::file("srv/.wh.one", b""))
        .add(Entry::file("srv/three", b"3"));
    let manifest = make_image(
        &store,
        name,
        &[busybox_tar(s), second.finish(), third.finish()],
        cmd(&["ls", "/srv"]),
    );
    let config = store.image_layers(&manifest).unwrap().config_digest;
    (manifest.to_string(), config.to_string())
}

/// A scratch store holding the three-layer image, saved as a docker-archive: (scratch,
/// manifest digest, config digest, archive path).
fn saved_docker_archive(name: &str) -> (Scratch, String, String, std::path::PathBuf) {
    let s = Scratch::new(name);
    let (manifest, config) = three_layer_image(&s, "localhost/three:1");
    let docker = s.path("docker.tar");
    s.berth_ok(&["save", "-o", docker.to_str().unwrap(), "localhost/three:1"]);
    (s, manifest, config, docker)
}

fn inspect(s: &Scratch, name: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(&s.berth_ok(&["image", "inspect", name])).unwrap()[0]
        .clone()
}

fn run_image(s: &Scratch, name: &str, id: &str) -> String {
    let bundle = s.path(&format!("bundle-{id}"));
    s.berth_ok(&["bundle", name, bundle.to_str().unwrap()]);
    let out = s.berth_ok(&["run", "--bundle", bundle.to_str().unwrap(), id]);
    s.berth_ok(&["rm-bundle", bundle.to_str().unwrap()]);
    out
}

#[test]
fn save_and_load_round_trip_in_both_formats() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let s = Scratch::new("roundtrip");
    let (manifest, config) = three_layer_image(&s, "localhost/three:1");
    for format in ["docker-archive", "oci-archive"] {
        let file = s.path(&format!("{format}.tar"));
        s.berth_ok(&[
            "save",
            "--format",
            format,
            "-o",
            file.to_str().unwrap(),
            "localhost/three:1",
        ]);
        let other = Scratch::new(&format!("roundtrip-{format}"));
        let out = other.berth_ok(&["load", "-i", file.to_str().unwrap()]);
        assert_eq!(out, "Loaded image: localhost/three:1\n");
        let doc = inspect(&other, "localhost/three:1");
        assert_eq!(doc["Id"], config.as_str(), "{format}: same config digest");
        if format == "oci-archive" {
            assert_eq!(
                doc["Digest"],
                manifest.as_str(),
                "oci-archive keeps the manifest byte for byte"
            );
        }
        assert_eq!(
            run_image(&other, "localhost/three:1", &format!("rt-{format}")),
            "three\ntwo\n"
        );
    }
    // Through a pipe: save to standard output, load from standard input.
    let other = Scratch::new("roundtrip-pipe");
    let mut save = s
        .command(&["save", "localhost/three:1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let load = other
        .command(&["load"])
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(save.wait().unwrap().success());
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert_eq!(inspect(&other, "localhost/three:1")["Id"], config.as_str());

    // A save that fails leaves no file behind.
    let err = s.berth_err(&[
        "save",
        "-o",
        s.path("bad.tar").to_str().unwrap(),
        "localhost/three:1",
        "localhost/none:1",
    ]);
    assert!(err.contains("localhost/none:1"), "{err}");
    assert!(!s.path("bad.tar").exists());
    assert!(
        names_in(&s.dir).iter().all(|n| !n.ends_with(".tmp")),
        "{:?}",
        names_in(&s.dir)
    );
}

#[test]
fn skopeo_reads_what_berth_saves_and_stores() {
    if !is_root() {
        return;
    }
    let (s, manifest, config, docker) = saved_docker_archive("skopeo-reads");
    // docker-archive: skopeo finds the same config, byte for byte.
    let raw_config = skopeo(&[
        "inspect",
        "--config",
        "--raw",
        &format!("docker-archive:{}", docker.display()),
    ]);
    assert_eq!(Digest::of_bytes(&raw_config).to_string(), config);

    // oci-archive: the same manifest, and skopeo can copy it (checking every blob's digest).
    let oci = save_oci_archive(&s, "oci.tar", "localhost/three:1");
    let raw_manifest = skopeo_raw(&oci);
    assert_eq!(Digest::of_bytes(&raw_manifest).to_string(), manifest);
    skopeo(&[
        "copy",
        &format!("oci-archive:{}", oci.display()),
        &format!("oci:{}:copied", s.path("layout").display()),
    ]);

    // The store itself is an OCI image layout skopeo reads by name.
    let layout = s.data_root().join("image");
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}:localhost/three:1", layout.display()),
    ]);
    assert_eq!(Digest::of_bytes(&raw).to_string(), manifest);
}

#[test]
fn berth_loads_what_skopeo_writes() {
    if !is_root() {
        return;
    }
    let (s, _, config, docker) = saved_docker_archive("skopeo-writes");
    let src = format!("docker-archive:{}", docker.display());

    // skopeo's oci-archive (it recompresses nothing: layers stay as skopeo writes them).
    let oci = s.path("from-skopeo-oci.tar");
    skopeo(&[
        "copy",
        &src,
        &format!("oci-archive:{}:localhost/from-skopeo:oci", oci.display()),
    ]);
    // skopeo's docker-archive.
    let dock = s.path("from-skopeo-docker.tar");
    skopeo(&[
        "copy",
        &src,
        &format!(
            "docker-archive:{}:localhost/from-skopeo:docker",
            dock.display()
        ),
    ]);
    // An OCI layout directory written by skopeo, with gzip-compressed layers, tarred by us.
    let dir = s.path("skopeo-layout");
    skopeo(&[
        "copy",
        "--dest-compress-format",
        "gzip",
        &src,
        &format!("oci:{}:localhost/from-skopeo:layout", dir.display()),
    ]);
    let layout_tar = s.path("layout.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&layout_tar)
        .arg(".")
        .status()
        .unwrap()
        .success());

    let other = Scratch::new("skopeo-writes-load");
    for (file, name, transport) in [
        (
            &oci,
            "localhost/from-skopeo:oci",
            format!("oci-archive:{}", oci.display()),
        ),
        (
            &dock,
            "localhost/from-skopeo:docker",
            format!("docker-archive:{}", dock.display()),
        ),
        (
            &layout_tar,
            "localhost/from-skopeo:layout",
            format!("oci:{}:localhost/from-skopeo:layout", dir.display()),
        ),
    ] {
        let out = other.berth_ok(&["load", "-i", file.to_str().unwrap()]);
        assert!(out.contains(name), "{out}");
        let doc = inspect(&other, name);
        // skopeo converts Docker's config to OCI's when it changes format, so the oracle is
        // what skopeo itself reads from the file it wrote.
        let want_config = Digest::of_bytes(&skopeo(&["inspect", "--config", "--raw", &transport]));
        assert_eq!(
            doc["Id"],
            want_config.to_string().as_str(),
            "{name}: config digest"
        );
        if !transport.starts_with("docker-archive") {
            let want = Digest::of_bytes(&skopeo(&["inspect", "--raw", &transport]));
            assert_eq!(
                doc["Digest"],
                want.to_string().as_str(),
                "{name}: manifest digest"
            );
        }
    }
    // Through the docker-archive of a docker-archive, the original config survives unchanged.
    assert_eq!(
        inspect(&other, "localhost/from-skopeo:docker")["Id"],
        config.as_str()
    );
    assert_eq!(
        run_image(&other, "localhost/from-skopeo:layout", "from-skopeo"),
        "three\ntwo\n"
    );
}

#[test]
fn a_corrupt_archive_loads_nothing() {
    if !is_root() {
        return;
    }
    let s = Scratch::new("corrupt-archive");
    three_layer_image(&s, "localhost/three:1");
    let oci = save_oci_archive(&s, "oci.tar", "localhost/three:1");
    // Flip one byte inside the largest blob: its digest no longer matches its name.
    let mut bytes = std::fs::read(&oci).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&oci, &bytes).unwrap();
    let other = Scratch::new("corrupt-archive-load");
    let err = other.berth_err(&["load", "-i", oci.to_str().unwrap()]);
    assert!(
        err.contains("digest mismatch") || err.contains("size mismatch"),
        "{err}"
    );
    assert!(err.contains("oci.tar"), "{err}");
    assert_eq!(other.berth_ok(&["images", "-q"]), "");
    assert!(names_in(&other.data_root().join("image/ingest")).is_empty());
    assert!(
        names_in(&other.data_root().join("image/blobs/sha256")).is_empty(),
        "the blobs loaded before the corrupt one are taken back"
    );
    let err = other.berth_err(&["load", "-i", s.path("missing.tar").to_str().unwrap()]);
    assert!(err.contains("missing.tar"), "{err}");
    std::fs::write(s.path("empty.tar"), vec![0u8; 1024]).unwrap();
    let err = other.berth_err(&["load", "-i", s.path("empty.tar").to_str().unwrap()]);
    assert!(err.contains("neither a docker archive"), "{err}");
}

#[test]
fn multi_platform_index_chooses_the_platform() {
    if !is_root() {
        return;
    }
    let s = Scratch::new("index");
    let (manifest, config) = three_layer_image(&s, "localhost/single:1");
    let store = s.store();
    let size = store.blob_size(&Digest::parse(&manifest).unwrap()).unwrap();
    let absent = Digest::of_bytes(b"an arm64 manifest this store never fetched");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": absent.to_string(), "size": 500,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest, "size": size,
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    let index_digest = store.ingest_bytes(&bytes).unwrap();
    let desc = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::ImageIndex,
        bytes.len() as u64,
        &index_digest,
    );
    store
        .set_reference(
            &berth::image::Reference::parse("localhost/multi:1").unwrap(),
            &desc,
        )
        .unwrap();

    let doc = inspect(&s, "localhost/multi:1");
    assert_eq!(doc["Digest"], index_digest.to_string().as_str());
    assert_eq!(doc["ManifestDigest"], manifest.as_str());
    assert_eq!(doc["Id"], config.as_str());
    let b = s.path("b");
    let err = s.berth_err(&[
        "bundle",
        "--platform",
        "linux/s390x",
        "localhost/multi:1",
        b.to_str().unwrap(),
    ]);
    assert!(
        err.contains("linux/s390x") && err.contains(&index_digest.to_string()),
        "{err}"
    );
    let err = s.berth_err(&[
        "bundle",
        "--platform",
        "linux/arm64",
        "localhost/multi:1",
        b.to_str().unwrap(),
    ]);
    assert!(err.contains(&absent.to_string()), "{err}");
    assert!(!b.exists());
    if std::env::consts::ARCH == "x86_64" {
        assert_eq!(run_image(&s, "localhost/multi:1", "multi"), "three\ntwo\n");
    }
    // Saved as an OCI archive the index stays whole; skopeo sees the same index.
    let oci = save_oci_archive(&s, "multi.tar", "localhost/multi:1");
    let raw = skopeo_raw(&oci);
    assert_eq!(Digest::of_bytes(&raw), index_digest);
    let other = Scratch::new("index-load");
    other.berth_ok(&["load", "-i", oci.to_str().unwrap()]);
    assert_eq!(
        inspect(&other, "localhost/multi:1")["Digest"],
        index_digest.to_string().as_str()
    );
    // The index's image is in use by a bundle made through it.
    other.berth_ok(&[
        "bundle",
        "localhost/multi:1",
        other.path("b").to_str().unwrap(),
    ]);
    let err = other.berth_err(&["rmi", "localhost/multi:1"]);
    assert!(err.contains("in use"), "{err}");
    other.berth_ok(&["rm-bundle", other.path("b").to_str().unwrap()]);
    other.berth_ok(&["rmi", "localhost/multi:1"]);
    assert!(names_in(&other.data_root().join("image/blobs/sha256")).is_empty());
}
