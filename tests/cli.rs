//! Command-line surface: spec, features, --version, --help, global flags.
mod common;
use common::*;
use std::fs;
use std::process::{Command, Stdio};

const COMMANDS: &[&str] = &[
    "create", "start", "state", "kill", "delete", "run", "exec", "list", "spec", "features",
];

fn as_set(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn spec_writes_a_config_that_runs() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("spec");
    let dir = ctx.dir("specbundle");
    let out = ctx.rt(&["spec", "--bundle", dir.to_str().unwrap()]).ok();
    assert!(out.stdout.trim().is_empty(), "{out}");
    let cfg_path = dir.join("config.json");
    let text = fs::read_to_string(&cfg_path).expect("spec wrote no config.json");
    let mut cfg: Value = serde_json::from_str(&text).expect("spec wrote invalid JSON");
    assert!(
        cfg["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{cfg}"
    );
    assert_eq!(cfg["root"]["path"], "rootfs");
    assert!(cfg["process"]["args"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    assert!(cfg["mounts"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(cfg["linux"]["namespaces"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));

    // It refuses to overwrite.
    fs::write(&cfg_path, "keep me").unwrap();
    let out = ctx.rt(&["spec", "--bundle", dir.to_str().unwrap()]);
    assert!(!out.success(), "spec overwrote config.json: {out}");
    assert_eq!(out.err_lines().len(), 1, "{out}");
    assert_eq!(fs::read_to_string(&cfg_path).unwrap(), "keep me");

    // With args and terminal adjusted, it runs under the runtime and under runc.
    cp_a(&shared_rootfs(), &dir.join("rootfs"));
    cfg["process"]["args"] = json!(["sh", "-c", "echo spec-ok"]);
    cfg["process"]["terminal"] = json!(false);
    fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    let id = ctx.id("run");
    let out = ctx.rt(&["run", "--bundle", dir.to_str().unwrap(), &id]);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "spec-ok\n");
    ctx.assert_no_trace(&id);
    if runtime_name() != "runc" && which("runc").is_some() {
        let rroot = ctx.dir("runc-root");
        let rid = ctx.id("runc");
        let out = Command::new("runc")
            .arg("--root")
            .arg(&rroot)
            .args(["run", "--bundle", dir.to_str().unwrap(), &rid])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "runc could not run the spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "spec-ok\n");
    }
}

#[test]
fn spec_matches_runcs_defaults() {
    if skip() || berth_only("compares berth spec with runc spec") {
        return;
    }
    if which("runc").is_none() {
        eprintln!("SKIPPED: runc not installed");
        return;
    }
    let ctx = Ctx::new("specruncs");
    let ours = ctx.dir("ours");
    let theirs = ctx.dir("theirs");
    ctx.rt(&["spec", "--bundle", ours.to_str().unwrap()]).ok();
    host("runc", &["spec", "--bundle", theirs.to_str().unwrap()]);
    let read = |d: &std::path::Path| -> Value {
        serde_json::from_str(&fs::read_to_string(d.join("config.json")).unwrap()).unwrap()
    };
    let (o, t) = (read(&ours), read(&theirs));
    assert_eq!(o["process"]["args"], t["process"]["args"]);
    assert_eq!(o["process"]["terminal"], t["process"]["terminal"]);
    assert_eq!(o["root"], t["root"]);
    assert_eq!(
        o["process"]["capabilities"]["bounding"],
        t["process"]["capabilities"]["bounding"]
    );
    assert_eq!(o["process"]["rlimits"], t["process"]["rlimits"]);
    assert_eq!(o["process"]["noNewPrivileges"], true);
    let dests = |v: &Value| -> Vec<String> {
        v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        dests(&o),
        dests(&t),
        "mount destinations differ from runc spec"
    );
    for key in ["maskedPaths", "readonlyPaths"] {
        let ours = as_set(&o["linux"][key]);
        for p in as_set(&t["linux"][key]) {
            assert!(ours.contains(&p), "berth spec {key} lacks {p}");
        }
    }
    let ns = |v: &Value| -> Vec<String> {
        v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap().to_string())
            .collect()
    };
    for n in ns(&t) {
        assert!(ns(&o).contains(&n), "berth spec lacks the {n} namespace");
    }
}

#[test]
fn features_json() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("features");
    let out = ctx.rt(&["features"]).ok();
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("features is not JSON ({e}): {out}"));
    assert!(
        v["ociVersionMin"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{v}"
    );
    assert!(
        v["ociVersionMax"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{v}"
    );
    let ns = as_set(&v["linux"]["namespaces"]);
    for n in ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"] {
        assert!(
            ns.contains(&n.to_string()),
            "features lacks namespace {n}: {v}"
        );
    }
    let mo = as_set(&v["mountOptions"]);
    for o in ["ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec"] {
        assert!(
            mo.contains(&o.to_string()),
            "features lacks mount option {o}"
        );
    }
    let hooks = as_set(&v["hooks"]);
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h.to_string()), "features lacks hook {h}");
    }
    if is_berth() {
        assert_eq!(v["ociVersionMin"], "1.0.0", "{v}");
        assert!(
            v["ociVersionMax"].as_str().unwrap().starts_with("1.3"),
            "{v}"
        );
        if std::path::Path::new("/proc/self/ns/time").exists() {
            assert!(
                ns.contains(&"time".to_string()),
                "berth supports time namespaces: {v}"
            );
        }
        let caps = as_set(&v["linux"]["capabilities"]);
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()), "{v}");
    } else {
        eprintln!(
            "note: berth-specific features values not checked under {}",
            runtime_name()
        );
    }
}

#[test]
fn version_mentions_the_spec_version() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("version");
    let out = ctx.rt(&["--version"]).ok();
    let text = out.stdout.to_lowercase();
    let spec_line = text
        .lines()
        .find(|l| l.contains("spec"))
        .unwrap_or_else(|| panic!("no spec version in {out}"));
    assert!(spec_line.contains("1."), "{out}");
    if is_berth() {
        assert!(text.contains("berth"), "{out}");
        assert!(spec_line.contains("spec: 1."), "{out}");
    }
}

#[test]
fn help_lists_the_commands() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("help");
    let out = ctx.rt(&["--help"]).ok();
    for c in COMMANDS {
        assert!(
            out.stdout.lines().any(|l| l
                .split_whitespace()
                .next()
                .map(|w| w.trim_end_matches(','))
                == Some(c)),
            "--help does not list {c}: {out}"
        );
    }
    for g in ["--root", "--log", "--log-format", "--debug"] {
        assert!(out.stdout.contains(g), "--help does not mention {g}");
    }
}

#[test]
fn unknown_command_fails() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("unknowncmd");
    let out = ctx.rt(&["no-such-command"]);
    assert!(!out.success(), "{out}");
}

#[test]
fn global_flags_are_accepted() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("globalflags");
    let log = ctx.tmp.join("debug.log");
    let out = ctx
        .rt(&[
            "--debug",
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "text",
            "list",
            "-q",
        ])
        .ok();
    assert_eq!(out.stdout.trim(), "", "{out}");
    let b = ctx.sh_bundle("echo with-debug");
    b.write();
    let id = ctx.id("d");
    let out = ctx.rt(&[
        "--debug",
        "--log",
        log.to_str().unwrap(),
        "run",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "with-debug\n");
    ctx.assert_no_trace(&id);
}

#[test]
fn state_json_fields() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("statejson");
    let (id, pid) = ctx.sleeper("s");
    let st = ctx.state(&id);
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{st}"
    );
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["status"], "running");
    assert_eq!(st["pid"], pid);
    assert!(
        st["bundle"].as_str().is_some_and(|b| b.starts_with('/')),
        "bundle must be absolute: {st}"
    );
}
