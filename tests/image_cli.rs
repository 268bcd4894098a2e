//! The image commands end to end: import, images (table, json, -q), tag, inspect, rmi
//! (refused while a bundle uses the image), bundle with the image config's user, env and
//! workdir resolved, and clear errors for bad input.

mod image_support;

use berth::image::bundle::resolve_user;
use berth::image::config::ContainerConfig;
use image_support::*;

fn import_busybox(s: &Scratch, name: &str, changes: &[&str]) -> String {
    let tarball = s.path("rootfs.tar.gz");
    if !tarball.exists() {
        std::fs::write(&tarball, gzip(&busybox_tar(s))).unwrap();
    }
    let mut args = vec!["import"];
    for c in changes {
        args.extend(["--change", c]);
    }
    args.extend([tarball.to_str().unwrap(), name]);
    s.berth_ok(&args).trim().to_string()
}

#[test]
fn import_list_tag_inspect_and_remove() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let s = Scratch::new("cli");
    let id = import_busybox(
        &s,
        "localhost:5000/team/bb:v1",
        &["CMD [\"sh\"]", "LABEL team=core", "EXPOSE 8080"],
    );
    assert!(id.starts_with("sha256:"), "{id}");
    s.berth_ok(&["tag", "localhost:5000/team/bb:v1", "bb"]);

    let table = s.berth_ok(&["images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY") && lines[0].contains("IMAGE ID"),
        "{table}"
    );
    assert!(
        table.contains("localhost:5000/team/bb") && table.contains(" v1 "),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bb ") && l.contains("latest")),
        "{table}"
    );
    assert_eq!(
        s.berth_ok(&["images", "-q"]).trim(),
        &id["sha256:".len()..][..12],
        "one id for two names"
    );
    let json_lines: Vec<serde_json::Value> = s
        .berth_ok(&["image", "ls", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json_lines.len(), 2);
    assert!(json_lines
        .iter()
        .any(|j| j["Repository"] == "bb" && j["Tag"] == "latest"));

    let inspect: serde_json::Value =
        serde_json::from_str(&s.berth_ok(&["image", "inspect", "bb"])).unwrap();
    let doc = &inspect[0];
    assert_eq!(doc["Id"], id.as_str());
    assert_eq!(doc["Config"]["Cmd"][0], "sh");
    assert_eq!(doc["Config"]["Labels"]["team"], "core");
    assert_eq!(doc["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        doc["Layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert!(doc["Size"].as_u64().unwrap() > 100_000);
    let tags = doc["RepoTags"].as_array().unwrap();
    assert!(
        tags.contains(&"docker.io/library/bb:latest".into()) && tags.len() == 2,
        "{doc}"
    );
    // By id prefix too.
    let by_id: serde_json::Value =
        serde_json::from_str(&s.berth_ok(&["image", "inspect", &id["sha256:".len()..][..8]]))
            .unwrap();
    assert_eq!(by_id[0]["Digest"], doc["Digest"]);

    // An id naming two images is refused without --force; by name, only the name goes.
    let err = s.berth_err(&["rmi", &id]);
    assert!(err.contains("several names"), "{err}");
    let out = s.berth_ok(&["rmi", "bb"]);
    assert_eq!(out.trim(), "Untagged: docker.io/library/bb:latest");
    assert!(!names_in(&s.data_root().join("image/blobs/sha256")).is_empty());

    // In use by a bundle: refused, named; after rm-bundle it goes, with its blobs.
    let bundle = s.path("bundle");
    s.berth_ok(&[
        "bundle",
        "localhost:5000/team/bb:v1",
        bundle.to_str().unwrap(),
    ]);
    let err = s.berth_err(&["rmi", "localhost:5000/team/bb:v1"]);
    assert!(
        err.contains("in use by bundle") && err.contains(bundle.to_str().unwrap()),
        "{err}"
    );
    s.berth_ok(&["rm-bundle", bundle.to_str().unwrap()]);
    let out = s.berth_ok(&["image", "rm", "localhost:5000/team/bb:v1"]);
    assert!(
        out.contains("Untagged: localhost:5000/team/bb:v1") && out.contains("Deleted: "),
        "{out}"
    );
    assert!(names_in(&s.data_root().join("image/blobs/sha256")).is_empty());
    assert!(names_in(&s.data_root().join("image/snapshots")).is_empty());
    assert_eq!(s.berth_ok(&["images", "-q"]), "");
}

#[test]
fn rmi_force_removes_an_image_in_use_but_keeps_its_snapshots_for_the_bundle() {
    if !is_root() {
        return;
    }
    let s = Scratch::new("force");
    import_busybox(&s, "localhost/bb:1", &["CMD [\"echo\", \"still here\"]"]);
    let bundle = s.path("b");
    s.berth_ok(&["bundle", "localhost/bb:1", bundle.to_str().unwrap()]);
    s.berth_ok(&["rmi", "--force", "localhost/bb:1"]);
    assert_eq!(s.berth_ok(&["images", "-q"]), "");
    // The overlay's lower layers are still there: the container runs.
    assert_eq!(
        s.berth_ok(&["run", "--bundle", bundle.to_str().unwrap(), "force-run"]),
        "still here\n"
    );
    s.berth_ok(&["rm-bundle", bundle.to_str().unwrap()]);
}

#[test]
fn bundle_config_follows_the_image_config() {
    if !is_root() {
        return;
    }
    let s = Scratch::new("config");
    let mut passwd_layer = RawTar::default();
    passwd_layer
        .add(Entry::dir("etc/"))
        .add(Entry::file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
        ))
        .add(Entry::file(
            "etc/group",
            b"root:x:0:\napp:x:1002:\nextra:x:1003:app,other\n",
        ))
        .add(Entry {
            mode: 0o1777,
            ..Entry::dir("work/")
        });
    let store = s.store();
    let config = ContainerConfig {
        user: "app".into(),
        env: vec!["GREETING=hi there".into()],
        entrypoint: vec!["sh".into(), "-c".into()],
        cmd: vec!["echo $GREETING; id -u; id -g; id -G; pwd".into()],
        working_dir: "/work".into(),
        labels: [("org.example.team".to_string(), "core".to_string())].into(),
        exposed_ports: [("80/tcp".to_string(), serde_json::json!({}))].into(),
        volumes: [("/data".to_string(), serde_json::json!({}))].into(),
        ..Default::default()
    };
    make_image(
        &store,
        "localhost/app:1",
        &[busybox_tar(&s), passwd_layer.finish()],
        config,
    );
    let bundle = s.path("bundle");
    s.berth_ok(&["bundle", "localhost/app:1", bundle.to_str().unwrap()]);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["user"]["uid"], 1001);
    assert_eq!(spec["process"]["user"]["gid"], 1002);
    assert_eq!(
        spec["process"]["user"]["additionalGids"],
        serde_json::json!([1003])
    );
    assert_eq!(spec["process"]["cwd"], "/work");
    assert_eq!(spec["annotations"]["org.example.team"], "core");
    assert_eq!(
        spec["annotations"]["org.opencontainers.image.exposedPorts"],
        "80/tcp"
    );
    assert_eq!(spec["annotations"]["berth.image.volumes"], "/data");
    assert!(spec["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().starts_with("PATH=")));
    let out = s.berth_ok(&["run", "--bundle", bundle.to_str().unwrap(), "config-run"]);
    assert_eq!(out, "hi there\n1001\n1002\n1002 1003\n/work\n");
    s.berth_ok(&["rm-bundle", bundle.to_str().unwrap()]);

    // Every User form, against that image's files.
    let rootfs = s.path("users");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/passwd"), "app:x:1001:1002::/:/bin/sh\n").unwrap();
    std::fs::write(rootfs.join("etc/group"), "app:x:1002:\nextra:x:1003:app\n").unwrap();
    let u = |spec: &str| resolve_user(&rootfs, spec).map(|u| (u.uid, u.gid, u.groups));
    assert_eq!(u("").unwrap(), (0, 0, vec![]));
    assert_eq!(u("app").unwrap(), (1001, 1002, vec![1003]));
    assert_eq!(u("app:extra").unwrap(), (1001, 1003, vec![]));
    assert_eq!(u("1001").unwrap(), (1001, 1002, vec![1003]));
    assert_eq!(u("4000:4001").unwrap(), (4000, 4001, vec![]));
    assert_eq!(u("1001:app").unwrap(), (1001, 1002, vec![]));
    let e = u("nobody").unwrap_err();
    assert!(format!("{e:#}").contains("\"nobody\""), "{e:#}");
    assert!(u("app:nogroup").is_err());
    // An /etc/passwd symlinked to the host's is read inside the root: the host's users are unknown.
    std::fs::remove_file(rootfs.join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink("/../../../../etc/passwd", rootfs.join("etc/passwd")).unwrap();
    assert!(
        u("root").is_err(),
        "the host's /etc/passwd must not be read"
    );
}

#[test]
fn bad_input_gets_clear_errors_and_leaves_nothing() {
    if !is_root() {
        return;
    }
    let s = Scratch::new("badinput");
    let err = s.berth_err(&["image", "inspect", "localhost/missing:1"]);
    assert!(
        err.contains("localhost/missing:1") && err.contains("not in the store"),
        "{err}"
    );
    let err = s.berth_err(&["tag", "x", "Bad Name"]);
    assert!(err.contains("\"Bad Name\""), "{err}");
    let err = s.berth_err(&[
        "bundle",
        "localhost/missing:1",
        s.path("b").to_str().unwrap(),
    ]);
    assert!(err.contains("localhost/missing:1"), "{err}");
    assert!(!s.path("b").exists());
    // Not a tarball: refused, and nothing kept.
    std::fs::write(s.path("junk.tar"), vec![b'j'; 2000]).unwrap();
    let err = s.berth_err(&[
        "import",
        s.path("junk.tar").to_str().unwrap(),
        "localhost/junk:1",
    ]);
    assert!(err.contains("junk.tar"), "{err}");
    assert!(names_in(&s.data_root().join("image/blobs/sha256")).is_empty());
    let err = s.berth_err(&[
        "import",
        s.path("nope.tar").to_str().unwrap(),
        "localhost/junk:1",
    ]);
    assert!(err.contains("nope.tar"), "{err}");
    // An image without a command cannot become a bundle.
    let tar = s.path("t.tar");
    std::fs::write(&tar, busybox_tar(&s)).unwrap();
    s.berth_ok(&["import", tar.to_str().unwrap(), "localhost/nocmd:1"]);
    let err = s.berth_err(&["bundle", "localhost/nocmd:1", s.path("b").to_str().unwrap()]);
    assert!(err.contains("neither Entrypoint nor Cmd"), "{err}");
    assert!(!s.path("b").exists(), "no half-made bundle");
    assert!(
        names_in(&s.data_root().join("image/snapshots")).is_empty(),
        "checked before unpacking"
    );
    assert!(names_in(&s.data_root().join("image/bundles")).is_empty());
    // A non-empty bundle directory is refused and left alone.
    std::fs::create_dir_all(s.path("full")).unwrap();
    std::fs::write(s.path("full/keep"), b"mine").unwrap();
    s.berth_ok(&[
        "import",
        "-c",
        "CMD [\"sh\"]",
        tar.to_str().unwrap(),
        "localhost/cmd:1",
    ]);
    let err = s.berth_err(&[
        "bundle",
        "localhost/cmd:1",
        s.path("full").to_str().unwrap(),
    ]);
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(names_in(&s.path("full")), ["keep"]);
    let err = s.berth_err(&["rm-bundle", s.path("full").to_str().unwrap()]);
    assert!(err.contains("not a bundle made by"), "{err}");
    assert!(names_in(&s.data_root().join("image/ingest")).is_empty());
}

/// Deletes a container when dropped, so a failing test leaves no process behind.
struct ContainerGuard<'a>(&'a Scratch, &'a str);
impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.berth(&["delete", "--force", self.1]);
    }
}

#[test]
fn rm_bundle_refuses_a_bundle_a_container_runs_from() {
    if !is_root() {
        return;
    }
    let s = Scratch::new("busy");
    import_busybox(&s, "localhost/bb:1", &["CMD [\"sleep\", \"300\"]"]);
    let bundle = s.path("b");
    s.berth_ok(&["bundle", "localhost/bb:1", bundle.to_str().unwrap()]);
    let guard = ContainerGuard(&s, "busy-sleeper");
    s.berth_quiet(&[
        "run",
        "--detach",
        "--bundle",
        bundle.to_str().unwrap(),
        "busy-sleeper",
    ]);
    let err = s.berth_err(&["rm-bundle", bundle.to_str().unwrap()]);
    assert!(
        err.contains("busy-sleeper") && err.contains("delete it first"),
        "{err}"
    );
    assert!(bundle.join("rootfs/bin/busybox").exists(), "left alone");
    s.berth_ok(&["delete", "--force", "busy-sleeper"]);
    drop(guard);
    s.berth_ok(&["rm-bundle", bundle.to_str().unwrap()]);
    assert!(!bundle.exists());
}
