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

// ---------------------------------------------------------------------------
// The engine: `berth container ...` against `docker ...`
// ---------------------------------------------------------------------------

/// Exit codes as Docker's: the command's own, 125 for the engine's errors (a bad flag or flag
/// value, an image that is not there), 126 for a command that cannot be executed, 127 for one
/// that is not found; and a failed `run` leaves no container behind.
#[test]
fn exit_codes_match_docker() {
    let Some(d) = Differ::new("exit") else { return };
    let cases: &[(&[&str], i32, &str)] = &[
        (&["true"], 0, "a command that succeeds"),
        (&["sh", "-c", "exit 3"], 3, "a command's own exit code"),
        (&["/etc/passwd"], 126, "a file that is not executable"),
        (&["/bin"], 126, "a directory"),
        (&["no-such-command"], 127, "a command not in PATH"),
        (&["/no/such/file"], 127, "a path that does not exist"),
    ];
    for (i, (command, code, what)) in cases.iter().enumerate() {
        let name = d.name(&format!("case{i}"));
        let mut args = vec!["run", "--rm", "--name", &name, "--network", "none", BUSYBOX];
        args.extend_from_slice(command);
        d.both(&args).assert_code(*code, what);
    }
    let bad: &[(&[&str], &str)] = &[
        (&["--no-such-flag"], "an unknown flag"),
        (&["--restart", "sometimes"], "a bad --restart"),
        (&["--memory", "lots"], "a bad --memory"),
        (&["--network", "no-such-network"], "an unknown network"),
    ];
    for (i, (flags, what)) in bad.iter().enumerate() {
        let name = d.name(&format!("bad{i}"));
        let mut args = vec!["run", "--name", &name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[BUSYBOX, "true"]);
        d.both(&args).assert_code(125, what);
    }
    let name = d.name("noimage");
    d.both(&[
        "run",
        "--name",
        &name,
        "--pull",
        "never",
        "berth-tests/no-such-image:1",
        "true",
    ])
    .assert_code(125, "an image that is not there (and not pulled)");
    // berth kept no container of any of these runs. (Docker 20.10 does keep one: a run on an
    // unknown network leaves its container Created.)
    assert_eq!(
        d.berth.all_ids(),
        Vec::<String>::new(),
        "berth kept containers"
    );
}

/// The fields of `inspect -f` that the flags of `run` and `create` and the image decide, for
/// a container that exited, one that runs and one only created; and the state fields.
#[test]
fn inspect_values_match_docker() {
    let Some(d) = Differ::new("inspect") else {
        return;
    };
    let exited = d.name("exited");
    let running = d.name("running");
    let created = d.name("created");
    let common = ["--network", "none", "-e", "FOO=bar", "-l", "team=core"];
    let mut run_exited = vec!["run", "--name", &exited, "-w", "/tmp", "-u", "1000:1000"];
    run_exited.extend_from_slice(&common);
    run_exited.extend_from_slice(&[BUSYBOX, "sh", "-c", "exit 3"]);
    d.both(&run_exited).assert_code(3, "run exiting 3");
    let mut run_running = vec![
        "run",
        "-d",
        "--name",
        &running,
        "--restart",
        "on-failure:2",
        "--stop-signal",
        "SIGUSR1",
    ];
    run_running.extend_from_slice(&common);
    run_running.extend_from_slice(&[BUSYBOX, "sleep", "1000"]);
    d.both(&run_running).assert_code(0, "run -d");
    let mut create = vec![
        "create",
        "--name",
        &created,
        "--restart",
        "unless-stopped",
        "--entrypoint",
        "/bin/echo",
    ];
    create.extend_from_slice(&common);
    create.extend_from_slice(&[BUSYBOX, "hello", "world"]);
    d.both(&create).assert_code(0, "create");
    d.wait_status(&running, "running");

    let fields = [
        ".State.Status",
        ".State.ExitCode",
        ".State.Running",
        ".State.Paused",
        ".State.OOMKilled",
        ".Path",
        ".Args",
        ".Name",
        ".RestartCount",
        ".Config.Cmd",
        ".Config.WorkingDir",
        ".Config.User",
        ".Config.Labels",
        ".Config.StopSignal",
        ".Config.Image",
        ".Config.Tty",
        ".Config.OpenStdin",
        ".HostConfig.RestartPolicy",
        ".HostConfig.NetworkMode",
        ".HostConfig.AutoRemove",
        ".HostConfig.LogConfig.Type",
    ];
    let mut differ = Vec::new();
    for name in [&exited, &running, &created] {
        for field in fields {
            let (docker, berth) = d.inspect_json(name, field);
            if docker != berth {
                differ.push(format!("{name} {field}: docker {docker}, berth {berth}"));
            }
        }
    }
    assert!(differ.is_empty(), "inspect differs:\n{}", differ.join("\n"));
}

/// `Config.Env` and `Config.Entrypoint` as Docker has them: the `-e` variables before the
/// image's, no HOSTNAME (Docker adds it to the process's environment only), and a null
/// Entrypoint where neither the image nor `--entrypoint` gives one.
#[test]
fn inspect_env_and_entrypoint_match_docker() {
    let Some(d) = Differ::new("inspect-env") else {
        return;
    };
    let name = d.name("c");
    d.both(&[
        "create",
        "--name",
        &name,
        "-e",
        "FOO=bar",
        "-e",
        "PATH=/bin",
        BUSYBOX,
        "env",
    ])
    .assert_code(0, "create");
    let with_entrypoint = d.name("ep");
    d.both(&[
        "create",
        "--name",
        &with_entrypoint,
        "--entrypoint",
        "/bin/echo",
        BUSYBOX,
        "hi",
    ])
    .assert_code(0, "create --entrypoint");
    let mut differ = Vec::new();
    for (n, field) in [
        (&name, ".Config.Env"),
        (&name, ".Config.Entrypoint"),
        (&with_entrypoint, ".Config.Entrypoint"),
        (&with_entrypoint, ".Config.Cmd"),
    ] {
        let (mut docker, mut berth) = d.inspect_json(n, field);
        if field == ".Config.Env" {
            // This dockerd orders the variables differently from one run to the next (the
            // user's first or the image's): compared as sets.
            for v in [&mut docker, &mut berth] {
                if let Some(a) = v.as_array_mut() {
                    a.sort_by_key(|x| x.to_string());
                }
            }
        }
        if docker != berth {
            differ.push(format!("{n} {field}: docker {docker}, berth {berth}"));
        }
    }
    assert!(differ.is_empty(), "inspect differs:\n{}", differ.join("\n"));
}

/// `logs` gives what the container wrote, each stream on its own (the order between stdout
/// and stderr is not kept by either engine: two pipes), `--tail N` the last N lines, and `-t`
/// a timestamp before each.
#[test]
fn logs_match_docker() {
    let Some(d) = Differ::new("logs") else { return };
    let streams = d.name("streams");
    let run = d.both(&[
        "run",
        "--name",
        &streams,
        "--network",
        "none",
        BUSYBOX,
        "sh",
        "-c",
        "for i in 1 2 3 4 5; do echo out$i; done; echo err1 >&2; echo err2 >&2",
    ]);
    run.assert_same("run");
    assert_eq!(run.docker.stdout, "out1\nout2\nout3\nout4\nout5\n");
    let logs = d.both(&["logs", &streams]);
    logs.assert_same("logs (stdout)");
    assert_eq!(logs.berth.stderr, logs.docker.stderr, "logs (stderr)");
    assert_eq!(logs.docker.stderr, "err1\nerr2\n");

    let lines = d.name("lines");
    d.both(&[
        "run",
        "--name",
        &lines,
        "--network",
        "none",
        BUSYBOX,
        "seq",
        "1",
        "10",
    ])
    .assert_same("run seq");
    for tail in ["2", "0", "all", "20"] {
        d.both(&["logs", "--tail", tail, &lines])
            .assert_same(&format!("logs --tail {tail}"));
    }
    // -f follows a running container to its end.
    let follow = d.name("follow");
    d.both(&[
        "run",
        "-d",
        "--name",
        &follow,
        "--network",
        "none",
        BUSYBOX,
        "sh",
        "-c",
        "echo before; sleep 1; echo after",
    ])
    .assert_code(0, "run -d");
    let followed = d.both_at_once(&["logs", "-f", &follow]);
    followed.assert_same("logs -f");
    assert_eq!(followed.docker.stdout, "before\nafter\n");
    let stamped = d.both(&["logs", "-t", "--tail", "3", &lines]);
    stamped.assert_code(0, "logs -t");
    for out in [&stamped.docker, &stamped.berth] {
        let text: Vec<&str> = out
            .stdout
            .lines()
            .map(|l| {
                let (stamp, text) = l.split_once(' ').unwrap_or(("", l));
                // RFC 3339 in UTC with nanoseconds, as Docker writes them.
                assert!(
                    stamp.len() == 30 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
                    "timestamp {stamp:?} in {l:?}"
                );
                text
            })
            .collect();
        assert_eq!(text, ["8", "9", "10"]);
    }
}

/// The STATUS column of `ps` (its wording up to the time: "Up", "Exited (N)", "Created"), for
/// containers in every state, from a table parsed by its header; and which ones `ps` without
/// `-a` lists.
#[test]
fn ps_statuses_match_docker() {
    let Some(d) = Differ::new("statuses") else {
        return;
    };
    let created = d.name("created");
    let running = d.name("running");
    let exited0 = d.name("exited0");
    let exited3 = d.name("exited3");
    let killed = d.name("killed");
    let net = ["--network", "none"];
    let run = |flags: &[&str], name: &str, cmd: &[&str], code: i32| {
        let mut args = flags.to_vec();
        args.extend_from_slice(&["--name", name]);
        args.extend_from_slice(&net);
        args.push(BUSYBOX);
        args.extend_from_slice(cmd);
        d.both(&args).assert_code(code, &format!("{args:?}"));
    };
    run(&["create"], &created, &["true"], 0);
    run(&["run", "-d"], &running, &["sleep", "1000"], 0);
    run(&["run"], &exited0, &["true"], 0);
    run(&["run"], &exited3, &["sh", "-c", "exit 3"], 3);
    run(&["run", "-d"], &killed, &["sleep", "1000"], 0);
    d.both(&["kill", &killed]).assert_code(0, "kill");
    let waited = d.both(&["wait", &killed]);
    waited.assert_same("wait for the killed container");
    assert_eq!(waited.docker.stdout, "137\n");

    let statuses = |out: &Outcome| -> std::collections::BTreeMap<String, String> {
        let mut lines = out.stdout.lines();
        let header = lines.next().unwrap_or_default();
        let status_at = header.find("STATUS").expect("a STATUS column");
        let ports_at = header.find("PORTS").expect("a PORTS column");
        lines
            .map(|l| {
                let status = l.get(status_at..ports_at).unwrap_or_default().trim();
                let name = l.split_whitespace().last().unwrap_or_default();
                let kept = match status.split_once(')') {
                    Some((code, _)) if status.starts_with("Exited (") => format!("{code})"),
                    _ => status.split(' ').next().unwrap_or_default().to_string(),
                };
                (name.to_string(), kept)
            })
            .collect()
    };
    let all = d.both(&["ps", "-a", "--filter", "name=statuses-"]);
    all.assert_code(0, "ps -a");
    let want: std::collections::BTreeMap<String, String> = [
        (&created, "Created"),
        (&running, "Up"),
        (&exited0, "Exited (0)"),
        (&exited3, "Exited (3)"),
        (&killed, "Exited (137)"),
    ]
    .into_iter()
    .map(|(n, s)| (n.clone(), s.to_string()))
    .collect();
    assert_eq!(statuses(&all.docker), want, "docker: {}", all.docker.stdout);
    assert_eq!(statuses(&all.berth), want, "berth: {}", all.berth.stdout);
    // The same through --format, and the columns that do not move with time, as they print.
    let formatted = d.both(&[
        "ps",
        "-a",
        "--filter",
        "name=statuses-",
        "--format",
        "{{.Names}}|{{.Status}}",
    ]);
    formatted.assert_code(0, "ps --format");
    let from_format = |o: &Outcome| -> std::collections::BTreeMap<String, String> {
        o.stdout
            .lines()
            .map(|l| {
                let (name, status) = l.split_once('|').unwrap_or((l, ""));
                let kept = match status.split_once(')') {
                    Some((code, _)) if status.starts_with("Exited (") => format!("{code})"),
                    _ => status.split(' ').next().unwrap_or_default().to_string(),
                };
                (name.to_string(), kept)
            })
            .collect()
    };
    assert_eq!(from_format(&formatted.docker), want);
    assert_eq!(from_format(&formatted.berth), want);
    let columns = d.both(&[
        "ps",
        "-a",
        "--filter",
        "name=statuses-",
        "--format",
        "{{.Names}} {{.Image}} {{.Command}} {{.Ports}}",
    ]);
    let sorted = |o: &Outcome| {
        let mut l: Vec<String> = o.stdout.lines().map(str::to_string).collect();
        l.sort();
        l
    };
    assert_eq!(
        sorted(&columns.berth),
        sorted(&columns.docker),
        "{columns:#?}"
    );
    let up = d.both(&["ps", "--filter", "name=statuses-"]);
    let names = |o: &Outcome| statuses(o).into_keys().collect::<Vec<_>>();
    assert_eq!(names(&up.docker), std::slice::from_ref(&running));
    assert_eq!(names(&up.berth), std::slice::from_ref(&running));
}

/// `stop` sends the stop signal and kills after `-t`: busybox's `sleep` as pid 1 ignores
/// SIGTERM, so it is killed (137) after the timeout; `--stop-signal SIGKILL` ends it at once.
#[test]
fn stop_matches_docker() {
    let Some(d) = Differ::new("stop") else { return };
    let term = d.name("term");
    let kill = d.name("kill");
    for (name, signal) in [(&term, "SIGTERM"), (&kill, "SIGKILL")] {
        d.both(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--stop-signal",
            signal,
            BUSYBOX,
            "sleep",
            "1000",
        ])
        .assert_code(0, "run -d");
    }
    d.wait_status(&term, "running");
    for name in [&term, &kill] {
        let stop = d.both(&["stop", "-t", "1", name]);
        stop.assert_same("stop");
        assert_eq!(stop.docker.stdout, format!("{name}\n"));
        let (docker, berth) = d.inspect_json(name, ".State.ExitCode");
        assert_eq!(
            (&docker, &berth),
            (&serde_json::json!(137), &docker),
            "{name}"
        );
    }
}

/// A real server in a real distribution userland, run as Docker runs it: the Debian image's
/// nginx detached with `--network none` (its loopback up), checked from `exec`: it serves its
/// page to curl, its configuration tests good, its worker runs as www-data; its access log
/// reaches `logs`; `stop` sends the image's StopSignal (SIGQUIT) and nginx exits 0.
#[test]
fn nginx_runs_detached_from_the_debian_image_as_under_docker() {
    let Some(d) = Differ::new("nginx").and_then(Differ::with_debian) else {
        return;
    };
    let web = d.name("web");
    d.both(&["run", "-d", "--name", &web, "--network", "none", DEBIAN])
        .assert_code(0, "run -d nginx");
    d.wait_status(&web, "running");
    // nginx listens a moment after it starts.
    let fetch = [
        "exec",
        &web,
        "sh",
        "-c",
        "for i in $(seq 50); do curl -sS localhost 2>/dev/null && exit; sleep 0.1; done; exit 7",
    ];
    let page = d.both(&fetch);
    page.assert_same("exec curl localhost");
    assert_eq!(page.docker.stdout, format!("{DEBIAN_INDEX}\n"));
    let config_test = d.both(&["exec", &web, "nginx", "-t"]);
    config_test.assert_code(0, "exec nginx -t");
    assert_eq!(config_test.berth.stderr, config_test.docker.stderr);
    d.both(&["exec", &web, "ps", "-o", "user=,args=", "-C", "nginx"])
        .assert_same("exec ps");
    d.both(&["exec", &web, "ip", "-br", "addr"])
        .assert_same("exec ip -br addr");
    d.both(&[
        "exec", "-u", "www-data", "-w", "/var/www", &web, "sh", "-c", "id; pwd",
    ])
    .assert_same("exec -u -w");
    d.both(&["exec", &web, "sh", "-c", "exit 5"])
        .assert_code(5, "exec's own exit code");
    let logs = d.both(&["logs", &web]);
    logs.assert_code(0, "logs");
    for out in [&logs.docker, &logs.berth] {
        let requests: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains("\"GET / HTTP/1.1\" 200 43"))
            .collect();
        assert_eq!(requests.len(), 1, "the access log in `logs`: {out:?}");
    }
    let stop = d.both(&["stop", &web]);
    stop.assert_same("stop");
    let (docker, berth) = d.inspect_json(&web, ".State.ExitCode");
    assert_eq!(docker, serde_json::json!(0), "nginx's exit on SIGQUIT");
    assert_eq!(berth, docker);
}

/// Errors on containers as Docker has them: an unknown container (exit 1; `rm -f` of one
/// succeeds), a running one that `rm` refuses, a taken name and a bad name (125, Docker's
/// messages). The wording of "No such container" is not compared: Docker 20.10's client words
/// it per verb ("Error: No such container: X" for rm), later clients as the daemon does, as
/// berth does.
#[test]
fn container_errors_match_docker() {
    let Some(d) = Differ::new("errors") else {
        return;
    };
    let running = d.name("running");
    d.both(&[
        "run",
        "-d",
        "--name",
        &running,
        "--network",
        "none",
        BUSYBOX,
        "sleep",
        "1000",
    ])
    .assert_code(0, "run -d");
    for args in unknown_container_commands() {
        d.both(&args).assert_code(1, &format!("{args:?}"));
    }
    d.both(&["rm", "-f", UNKNOWN])
        .assert_code(0, "rm -f of an unknown container");
    let rm = d.both(&["rm", &running]);
    rm.assert_code(1, "rm of a running container");
    // Docker 20.10's wording ("You cannot remove a running container ID. Stop the container
    // before attempting removal or force remove") or later Docker's, which berth has.
    for out in [&rm.docker, &rm.berth] {
        assert!(
            out.stderr.contains("running container") || out.stderr.contains("container is running"),
            "{out:?}"
        );
        assert!(out.stderr.contains("or force remove"), "{out:?}");
    }
    d.wait_status(&running, "running");
    let taken = d.both(&["run", "--name", &running, BUSYBOX]);
    taken.assert_code(125, "run with a taken name");
    for out in [&taken.docker, &taken.berth] {
        assert!(
            out.stderr.contains(&format!(
                "Conflict. The container name \"/{running}\" is already in use by container"
            )),
            "{out:?}"
        );
    }
    let bad = d.both(&["run", "--name", "x", BUSYBOX]);
    bad.assert_code(125, "run with a one-letter name");
    for out in [&bad.docker, &bad.berth] {
        assert!(
            out.stderr
                .contains("Invalid container name (x), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
            "{out:?}"
        );
    }
}

/// `create` exits as Docker's: 125 for a bad flag value (the client's parse error), 1 for an
/// error of the engine (a taken name, a bad name, an unknown image): only `run` gives 125 for
/// those.
#[test]
fn create_exit_codes_match_docker() {
    let Some(d) = Differ::new("create") else {
        return;
    };
    let taken = d.name("taken");
    d.both(&["create", "--name", &taken, BUSYBOX])
        .assert_code(0, "create");
    let cases: &[(&[&str], &str)] = &[
        (&["--memory", "lots", BUSYBOX], "a bad flag value"),
        (&["--name", &taken, BUSYBOX], "a taken name"),
        (&["--name", "x", BUSYBOX], "a bad name"),
        (
            &["--pull", "never", "berth-tests/no-such-image:1"],
            "an unknown image",
        ),
    ];
    let mut differ = Vec::new();
    for (flags, what) in cases {
        let mut args = vec!["create"];
        args.extend_from_slice(flags);
        let both = d.both(&args);
        if both.docker.code != both.berth.code {
            differ.push(format!(
                "{what}: docker {}, berth {}",
                both.docker.code, both.berth.code
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "create's exit codes differ:\n{}",
        differ.join("\n")
    );
}

const UNKNOWN: &str = "errors-no-such-container";

/// Every verb on a container that does not exist.
fn unknown_container_commands() -> Vec<Vec<&'static str>> {
    [
        &["rm"][..],
        &["logs"],
        &["inspect"],
        &["stop"],
        &["start"],
        &["kill"],
        &["wait"],
        &["restart"],
        &["exec", "-e", "X=1", UNKNOWN, "true"],
    ]
    .iter()
    .map(|verb| {
        let mut args = verb.to_vec();
        if verb[0] != "exec" {
            args.push(UNKNOWN);
        }
        args
    })
    .collect()
}

/// `exec` runs in the container as Docker's does: `-u`, `-w` and `-e` applied, the container's
/// environment with them, the command's own exit code, 126 for a file that is not executable.
#[test]
fn exec_matches_docker() {
    let Some(d) = Differ::new("exec") else { return };
    let name = d.name("c");
    d.both(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "-e",
        "FROM_RUN=1",
        BUSYBOX,
        "sleep",
        "1000",
    ])
    .assert_code(0, "run -d");
    d.wait_status(&name, "running");
    d.both(&[
        "exec",
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "-e",
        "X=from exec",
        &name,
        "sh",
        "-c",
        "id -u; id -g; pwd; env | grep -v ^HOSTNAME= | sort",
    ])
    .assert_same("exec -u -w -e");
    d.both(&["exec", &name, "sh", "-c", "exit 5"])
        .assert_code(5, "exec's own exit code");
    d.both(&["exec", &name, "/etc/passwd"])
        .assert_code(126, "exec of a file that is not executable");
    // The hostname Docker gives: the container's short id, in the environment too.
    let host = d.both(&["exec", &name, "sh", "-c", "echo $HOSTNAME; hostname"]);
    host.assert_code(0, "exec hostname");
    for out in [&host.docker, &host.berth] {
        let lines = out.lines();
        assert_eq!(lines.len(), 2, "{out:?}");
        assert_eq!(lines[0], lines[1]);
        assert_eq!(lines[0].len(), 12, "a short id: {out:?}");
    }
}

/// The groups of a process run as `-u UID:GID` (by `run` and by `exec`): Docker gives it the
/// group GID as a supplementary group too, as `id` shows, and `--group-add`'s.
#[test]
fn user_groups_match_docker() {
    let Some(d) = Differ::new("groups") else {
        return;
    };
    d.both(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "1000:1000",
        BUSYBOX,
        "id",
    ])
    .assert_same("run -u");
    d.both(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "1000:1000",
        "--group-add",
        "44",
        BUSYBOX,
        "id",
    ])
    .assert_same("run -u --group-add");
    let name = d.name("c");
    d.both(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        BUSYBOX,
        "sleep",
        "1000",
    ])
    .assert_code(0, "run -d");
    d.wait_status(&name, "running");
    d.both(&["exec", "-u", "1000:1000", &name, "id"])
        .assert_same("exec -u");
}

/// The Debian image's userland answers alike under both: dpkg's database of the packages
/// debootstrap and apt installed, the passwd and group files, the whiteout of the image's second
/// layer, file modes and symlinks, procps and iproute2 reading the container's /proc.
#[test]
fn the_debian_userland_runs_the_same_under_berth_and_docker() {
    let Some(d) = Differ::new("userland").and_then(Differ::with_debian) else {
        return;
    };
    let script = "set -e; head -n 1 /etc/os-release; cat /etc/debian_version; \
                  dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n' nginx-light procps iproute2 curl apt; \
                  nginx -v 2>&1; getent passwd www-data; id www-data; \
                  stat -c '%n %U:%G %a' /tmp /var/www/html /var/log/nginx; \
                  readlink /var/log/nginx/access.log /var/log/nginx/error.log; \
                  ls /var/www/html; ps -o pid=,user=,comm= -p 1; ip -br link show lo | cut -d' ' -f1; \
                  curl --version | head -n 1 | cut -d' ' -f1-2";
    let both = d.both(&[
        "run",
        "--rm",
        "--network",
        "none",
        DEBIAN,
        "sh",
        "-c",
        script,
    ]);
    both.assert_same("the Debian userland");
    assert!(
        both.docker.stdout.contains("nginx-light ii "),
        "{}",
        both.docker.stdout
    );
    assert!(both.docker.stdout.contains("\nindex.html\n"));
}

/// The Debian image's VOLUME (/var/www/html) becomes an anonymous volume, filled from the
/// image as Docker fills a new volume, mounted read-write in the container and listed in
/// inspect's Mounts.
#[test]
fn the_image_volume_matches_docker() {
    let Some(d) = Differ::new("volume").and_then(Differ::with_debian) else {
        return;
    };
    let name = d.name("web");
    d.both(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        DEBIAN,
        "sleep",
        "1000",
    ])
    .assert_code(0, "run -d");
    d.wait_status(&name, "running");
    for field in [
        "len .Mounts",
        "(index .Mounts 0).Type",
        "(index .Mounts 0).Destination",
        "(index .Mounts 0).RW",
        "(index .Mounts 0).Driver",
    ] {
        let (docker, berth) = d.inspect_json(&name, field);
        assert_eq!(berth, docker, "inspect {field}");
    }
    d.both(&[
        "exec",
        &name,
        "sh",
        "-c",
        "cat /var/www/html/index.html; awk '$5 == \"/var/www/html\" { print $5, $6 }' /proc/self/mountinfo | cut -d, -f1",
    ])
    .assert_same("the volume from inside");
}
