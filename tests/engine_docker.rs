//! Differential tests: the same images, loaded from the same archives, under Docker (a private
//! dockerd with runc, see `engine_support::Dockerd`) and under berth, must give the same
//! results. The images are made here: busybox from `bundles/busybox/rootfs`, and a Debian
//! bookworm userland with nginx made by `scripts/mkimage-debian.sh` (debootstrap).
//!
//! Where dockerd or debootstrap is missing the tests are skipped with a printed reason, except
//! under CI, where that is a failure.

mod engine_support;

use engine_support::*;
use std::collections::BTreeSet;

/// `docker image inspect -f '{{json .FIELD}}'`, parsed.
fn docker_image_field(d: &Dockerd, image: &str, field: &str) -> serde_json::Value {
    let out = d.docker_ok(&[
        "image",
        "inspect",
        "-f",
        &format!("{{{{json .{field}}}}}"),
        image,
    ]);
    serde_json::from_str(out.trim()).unwrap()
}

/// `berth image inspect IMAGE`, parsed (the first and only document).
fn berth_image_inspect(s: &Scratch, image: &str) -> serde_json::Value {
    let out = s.berth_ok(&["image", "inspect", image]);
    let docs: serde_json::Value = serde_json::from_str(&out).unwrap();
    docs[0].clone()
}

/// Both loaded the same image from one archive: the same id (the config's digest), the same
/// layers (diff ids), the same config, field by field.
fn assert_same_image(s: &Scratch, d: &Dockerd, image: &str) {
    let berth = berth_image_inspect(s, image);
    assert_eq!(
        berth["Id"],
        docker_image_field(d, image, "Id"),
        "image id of {image}"
    );
    assert_eq!(
        berth["RootFS"]["Layers"],
        docker_image_field(d, image, "RootFS.Layers"),
        "layers of {image}"
    );
    let docker_config = docker_image_field(d, image, "Config");
    for field in [
        "Cmd",
        "Env",
        "ExposedPorts",
        "StopSignal",
        "Volumes",
        "Labels",
        "User",
        "WorkingDir",
    ] {
        // Docker leaves out what the image does not set; berth writes it empty.
        let empty = |v: &serde_json::Value| match v {
            serde_json::Value::Null => true,
            serde_json::Value::String(s) => s.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::Object(o) => o.is_empty(),
            _ => false,
        };
        let (b, k) = (&berth["Config"][field], &docker_config[field]);
        assert!(
            b == k || (empty(b) && empty(k)),
            "Config.{field} of {image}: berth {b}, docker {k}"
        );
    }
}

#[test]
fn both_engines_load_the_same_images_from_the_same_archives() {
    let Some(d) = Dockerd::shared() else { return };
    let s = Scratch::new("engine-docker-load");
    load_busybox(&s);
    d.load_busybox(&s);
    assert_same_image(&s, &d, BUSYBOX);
    if !load_debian(&s) || !d.load_debian(&s) {
        return;
    }
    assert_same_image(&s, &d, DEBIAN);
    // What the Debian image says it is (scripts/mkimage-debian.sh), as Docker reads it.
    assert_eq!(
        docker_image_field(&d, DEBIAN, "Config.Cmd"),
        serde_json::json!(["nginx", "-g", "daemon off;"])
    );
    assert_eq!(
        docker_image_field(&d, DEBIAN, "Config.StopSignal"),
        "SIGQUIT"
    );
    assert_eq!(
        docker_image_field(&d, DEBIAN, "RootFS.Layers")
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// What the nginx check prints besides nginx's access log line, and that line.
fn split_access_log(out: &str) -> (BTreeSet<String>, Vec<String>) {
    let (log, rest): (Vec<&str>, Vec<&str>) =
        out.lines().partition(|l| l.contains("\"GET / HTTP/1.1\""));
    (
        rest.into_iter().map(str::to_string).collect(),
        log.into_iter().map(str::to_string).collect(),
    )
}

/// A real server in a real distribution userland: nginx from the Debian image serves its page
/// to curl inside the container, its access log reaches the container's stdout through the
/// image's symlink, its worker runs as www-data (a name procps looks up in the image's
/// passwd), and the second layer's whiteout hides Debian's default page. Docker runs it with
/// `--network none`; berth (before the engine) through `berth bundle` + `berth run`, with
/// Docker's default capabilities and NET_ADMIN to bring up the loopback that Docker brings up.
#[test]
fn nginx_serves_from_the_debian_image_under_berth_and_docker() {
    let Some(d) = Dockerd::shared() else { return };
    let s = Scratch::new("engine-docker-nginx");
    if !load_debian(&s) || !d.load_debian(&s) {
        return;
    }
    let check = "nginx && curl -sS localhost && ps -o user=,args= -C nginx | sort \
                 && test ! -e /var/www/html/index.nginx-debian.html && echo default page deleted \
                 && nginx -s quit";
    let docker = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        DEBIAN,
        "sh",
        "-c",
        check,
    ]);
    let bundle = ImageBundle::new(&s, DEBIAN, "nginx-bundle");
    bundle.with_docker_caps(&["CAP_NET_ADMIN"]);
    let berth_check = format!("ip link set lo up && {check}");
    bundle.edit(|c| c["process"]["args"] = serde_json::json!(["sh", "-c", berth_check]));
    let berth = bundle.run("nginx");

    assert_eq!(docker.code, 0, "docker: {docker:?}");
    assert_eq!(berth.code, 0, "berth: {berth:?}");
    let (docker_lines, docker_log) = split_access_log(&docker.stdout);
    let (berth_lines, berth_log) = split_access_log(&berth.stdout);
    let want: BTreeSet<String> = [
        DEBIAN_INDEX,
        "root     nginx: master process nginx",
        "www-data nginx: worker process",
        "default page deleted",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(docker_lines, want, "docker: {docker:?}");
    assert_eq!(berth_lines, want, "berth: {berth:?}");
    // One request each, logged in the same format by the same curl.
    for log in [&docker_log, &berth_log] {
        assert_eq!(log.len(), 1, "access log lines: {log:?}");
        assert!(
            log[0].starts_with("127.0.0.1 - - [") && log[0].contains("\" 200 43 \"-\" \"curl/"),
            "access log line: {}",
            log[0]
        );
    }
    let after_date = |l: &str| l.split_once(']').unwrap().1.to_string();
    assert_eq!(after_date(&docker_log[0]), after_date(&berth_log[0]));
}

/// The busybox image under `docker run` and `berth bundle` + `berth run` with Docker's default
/// capabilities: the same exit code, output on each stream, environment and capability sets
/// (which also checks `DOCKER_DEFAULT_CAPS` against Docker's own).
#[test]
fn busybox_runs_the_same_under_berth_run_and_docker_run() {
    let Some(d) = Dockerd::shared() else { return };
    let s = Scratch::new("engine-docker-busybox");
    load_busybox(&s);
    d.load_busybox(&s);
    let script = "grep -E '^(Cap(Prm|Eff|Bnd)|NoNewPrivs)' /proc/self/status; echo PATH=$PATH; \
                  pwd; echo to stderr >&2; exit 3";
    let docker = d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        BUSYBOX,
        "sh",
        "-c",
        script,
    ]);
    let bundle = ImageBundle::new(&s, BUSYBOX, "busybox-bundle");
    bundle.with_docker_caps(&[]);
    // Docker sets no_new_privs only when asked (--security-opt no-new-privileges).
    bundle.edit(|c| {
        c["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        c["process"]["noNewPrivileges"] = serde_json::json!(false);
    });
    let berth = bundle.run("busybox");
    assert_eq!(docker.code, 3, "docker: {docker:?}");
    assert_eq!(berth.code, 3, "berth: {berth:?}");
    assert_eq!(docker.stderr, "to stderr\n");
    assert_eq!(berth.stderr, "to stderr\n");
    assert_eq!(berth.stdout, docker.stdout);
    assert!(
        docker.stdout.contains("CapEff:\t00000000a80425fb"),
        "Docker's default capabilities: {}",
        docker.stdout
    );
}

/// The Debian image is made once per version of its script: a second call is served from the
/// cache, and prints so.
#[test]
fn the_debian_image_is_made_once_and_cached() {
    if skip_without(&["debootstrap"], "the Debian test image") {
        return;
    }
    let s = Scratch::new("engine-docker-cache");
    let first = debian_archive(&s).unwrap();
    let again = s.path("again.tar");
    let out = run_bounded(
        std::process::Command::new(repo_dir().join("scripts/mkimage-debian.sh")).arg(&again),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("mkimage-debian: cached: "),
        "{}",
        out.stderr
    );
    assert!(
        std::fs::read(&first).unwrap() == std::fs::read(&again).unwrap(),
        "the cached archive changed between two calls"
    );
}

/// The private dockerd leaves nothing behind: after a container ran (and one still runs when
/// it stops), no process, cgroup, mount or host path it made is left.
#[test]
fn the_private_dockerd_leaves_nothing_behind() {
    let Some(d) = Dockerd::start() else { return };
    let s = Scratch::new("engine-docker-leftovers");
    d.load_busybox(&s);
    assert_eq!(
        d.docker_ok(&["run", "--rm", "--network", "none", BUSYBOX, "echo", "ran"]),
        "ran\n"
    );
    let id = d.docker_ok(&["run", "-d", "--network", "none", BUSYBOX, "sleep", "1000"]);
    let pid = d.docker_ok(&["inspect", "-f", "{{.State.Pid}}", id.trim()]);
    let pid: i32 = pid.trim().parse().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!d.leftovers().is_empty(), "a running daemon makes things");
    d.stop();
    assert_eq!(d.leftovers(), Vec::<String>::new());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the container's process {pid} outlived the daemon"
    );
}
