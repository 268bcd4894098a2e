//! OCI hooks: prestart, createRuntime, createContainer, startContainer,
//! poststart, poststop.
mod common;
use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const KINDS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook that records its stdin (the state), its mount and pid namespaces,
/// and its position in D/order.
fn recording_hook(d: &Path, kind: &str) -> Value {
    let d = d.display();
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!(
            "cat > {d}/{kind}.json; readlink /proc/self/ns/mnt > {d}/{kind}.mnt; \
             readlink /proc/self/ns/pid > {d}/{kind}.pidns; echo {kind} >> {d}/order")]
    })
}

/// A bundle whose hooks all record into a host dir that is also bind-mounted
/// at the same path inside the container (for the in-container hooks).
fn hooked_bundle(ctx: &Ctx) -> (Bundle, PathBuf) {
    let d = ctx.dir("hooks");
    let mut b = ctx.bundle();
    b.bind(&d, d.to_str().unwrap(), &[]);
    for k in KINDS {
        b.add_hook(k, recording_hook(&d, k));
    }
    (b, d)
}

fn read_state(d: &Path, kind: &str) -> Value {
    let p = d.join(format!("{kind}.json"));
    let text = fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{kind} hook did not run ({}: {e})", p.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{kind} hook got bad state JSON {text:?}: {e}"))
}

fn read(d: &Path, name: &str) -> String {
    fs::read_to_string(d.join(name))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn all_hooks_run_with_the_state_in_the_right_namespaces() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hooksall");
    let (mut b, d) = hooked_bundle(&ctx);
    b.args(&["sleep", "1000"]);
    let id = ctx.id("h");
    let pid = ctx.create(&b, &id);
    for k in ["prestart", "createRuntime", "createContainer"] {
        assert!(
            d.join(format!("{k}.json")).exists(),
            "{k} did not run during create"
        );
    }
    // runc 1.1 runs poststart hooks in `create` (a bug fixed in runc 1.2);
    // the spec and berth run them in `start`.
    let early: &[&str] = if is_berth() {
        &["startContainer", "poststart", "poststop"]
    } else {
        &["startContainer", "poststop"]
    };
    for k in early {
        assert!(
            !d.join(format!("{k}.json")).exists(),
            "{k} ran during create"
        );
    }
    ctx.start(&id);
    wait_until("startContainer and poststart to run", || {
        d.join("startContainer.json").exists() && d.join("poststart.json").exists()
    });
    assert!(
        !d.join("poststop.json").exists(),
        "poststop ran before the container stopped"
    );
    ctx.rt(&["kill", &id, "KILL"]).ok();
    ctx.wait_status(&id, "stopped");
    ctx.delete(&id);
    assert!(
        d.join("poststop.json").exists(),
        "poststop did not run on delete"
    );

    let bundle = fs::canonicalize(b.path()).unwrap();
    let host_mnt = ns_link("self", "mnt");
    let want_status: &[(&str, &[&str])] = &[
        ("prestart", &["creating"]),
        ("createRuntime", &["creating"]),
        ("createContainer", &["creating"]),
        ("startContainer", &["created"]),
        (
            "poststart",
            if is_berth() {
                &["running"]
            } else {
                &["created", "running"]
            },
        ),
        ("poststop", &["stopped"]),
    ];
    let container_mnt = read(&d, "startContainer.mnt");
    for (k, statuses) in want_status {
        let st = read_state(&d, k);
        assert_eq!(st["id"], id.as_str(), "{k}: {st}");
        assert!(st["ociVersion"].is_string(), "{k}: {st}");
        assert_eq!(
            fs::canonicalize(st["bundle"].as_str().unwrap()).unwrap(),
            bundle,
            "{k}: {st}"
        );
        assert!(
            statuses.contains(&st["status"].as_str().unwrap_or("")),
            "{k}: status {} not in {statuses:?}",
            st["status"]
        );
        let mnt = read(&d, &format!("{k}.mnt"));
        match *k {
            "createContainer" | "startContainer" => {
                assert_ne!(mnt, host_mnt, "{k} ran in the host's mount namespace");
                assert_eq!(
                    mnt, container_mnt,
                    "{k} not in the container's mount namespace"
                );
                assert_ne!(
                    read(&d, &format!("{k}.pidns")),
                    ns_link("self", "pid"),
                    "{k} not in the container's pid ns"
                );
                assert!(st["pid"].as_i64().unwrap_or(0) > 0, "{k}: {st}");
            }
            _ => {
                assert_eq!(
                    mnt, host_mnt,
                    "{k} did not run in the runtime's mount namespace"
                );
                if *k != "poststop" {
                    assert_eq!(st["pid"], pid, "{k}: {st}");
                }
            }
        }
    }
    let order: Vec<String> = read(&d, "order").lines().map(String::from).collect();
    let pos = |k: &str| {
        order
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k} not in {order:?}"))
    };
    assert!(pos("prestart") < pos("createContainer"), "{order:?}");
    assert!(pos("createRuntime") < pos("createContainer"), "{order:?}");
    assert!(pos("createContainer") < pos("startContainer"), "{order:?}");
    assert!(pos("createContainer") < pos("poststart"), "{order:?}");
    assert_eq!(
        order.last().map(String::as_str),
        Some("poststop"),
        "{order:?}"
    );
    assert_eq!(order.len(), 6, "a hook ran twice: {order:?}");
}

#[test]
fn hooks_run_with_run_too() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hooksrun");
    let (mut b, d) = hooked_bundle(&ctx);
    b.sh("echo main");
    let id = ctx.id("r");
    let out = ctx.run(&b, &id);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "main\n");
    let order: Vec<String> = read(&d, "order").lines().map(String::from).collect();
    for k in KINDS {
        assert!(order.iter().any(|x| x == k), "{k} did not run: {order:?}");
    }
    assert_eq!(
        order.last().map(String::as_str),
        Some("poststop"),
        "{order:?}"
    );
    ctx.assert_no_trace(&id);
}

#[test]
fn hook_args_and_env() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hookargs");
    let d = ctx.dir("out");
    let mut b = ctx.sh_bundle("true");
    b.add_hook(
        "createRuntime",
        json!({"path": "/bin/sh",
               "args": ["sh", "-c", format!("echo \"$0|$1|$HOOKVAR|$OTHER\" > {}/args", d.display()), "arg-zero", "arg-one"],
               "env": ["HOOKVAR=hook value", "OTHER=2"]}),
    );
    ctx.run_ok(&b);
    assert_eq!(read(&d, "args"), "arg-zero|arg-one|hook value|2");
}

#[test]
fn runtime_hook_path_is_resolved_on_the_host() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hookhostpath");
    let d = ctx.dir("out");
    // Exists on the host only, not in the rootfs.
    let script = ctx.tmp.join("host-only-hook.sh");
    fs::write(
        &script,
        format!("#!/bin/sh\necho ran > {}/host-hook\n", d.display()),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let mut b = ctx.sh_bundle("true");
    b.add_hook("prestart", json!({"path": script}));
    b.add_hook("poststop", json!({"path": script}));
    ctx.run_ok(&b);
    assert_eq!(read(&d, "host-hook"), "ran");
}

#[test]
fn start_container_hook_path_is_resolved_in_the_container() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hookctrpath");
    let d = ctx.dir("out");
    let mut b = ctx.sh_bundle("echo main");
    b.bind(&d, "/mnt", &[]);
    // Exists in the rootfs only, not on the host.
    let script = b.rootfs().join("bin/berth-start-hook");
    fs::write(
        &script,
        "#!/bin/sh\necho \"in-container $(hostname)\" > /mnt/start-hook\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    b.add_hook("startContainer", json!({"path": "/bin/berth-start-hook"}));
    assert_eq!(ctx.run_ok(&b), "main\n");
    assert_eq!(read(&d, "start-hook"), "in-container berth");
}

/// runtime-spec: "The createContainer hooks' path MUST resolve in the runtime namespace" (they
/// run in the container's namespaces, before pivot_root). A hook that exists only on the host
/// runs; one that exists only in the rootfs is not found.
#[test]
fn create_container_hook_path_is_resolved_in_the_runtime_namespace() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hookccpath");
    let d = ctx.dir("out");
    let host_hook = ctx.tmp.join("cc-hook-on-host");
    fs::write(
        &host_hook,
        format!("#!/bin/sh\necho on-host > {}/cc-hook\n", d.display()),
    )
    .unwrap();
    fs::set_permissions(&host_hook, fs::Permissions::from_mode(0o755)).unwrap();
    let mut b = ctx.sh_bundle("echo main");
    b.add_hook(
        "createContainer",
        json!({"path": host_hook.to_str().unwrap()}),
    );
    assert_eq!(ctx.run_ok(&b), "main\n");
    assert_eq!(read(&d, "cc-hook"), "on-host");

    let mut b = ctx.sh_bundle("echo main");
    let in_rootfs = b.rootfs().join("bin/berth-cc-hook-only-in-rootfs");
    fs::write(&in_rootfs, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&in_rootfs, fs::Permissions::from_mode(0o755)).unwrap();
    b.add_hook(
        "createContainer",
        json!({"path": "/bin/berth-cc-hook-only-in-rootfs"}),
    );
    let id = ctx.id("f");
    let out = ctx.try_create(&b, &id);
    assert!(
        !out.success(),
        "a hook path only in the rootfs was found: {out}"
    );
}

/// create must fail and leave nothing behind.
fn create_fails(ctx: &Ctx, b: &Bundle) -> Out {
    let id = ctx.id("f");
    let out = ctx.try_create(b, &id);
    assert!(
        !out.success(),
        "create succeeded despite a failing hook: {out}"
    );
    assert!(!out.err_lines().is_empty(), "no error message: {out}");
    ctx.assert_no_trace(&id);
    out
}

/// A hook that leaves D/NAME behind (so we know it ran), then runs `then`.
fn marking_hook(d: &Path, name: &str, then: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}/{name}; {then}", d.display())]})
}

/// A bundle with D bind-mounted at the same path (for in-container hooks).
fn bundle_with_hook_dir(ctx: &Ctx) -> (Bundle, PathBuf) {
    let d = ctx.dir("hooks");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.bind(&d, d.to_str().unwrap(), &[]);
    (b, d)
}

#[test]
fn failing_prestart_hook_fails_create() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hookprefail");
    let (mut b, d) = bundle_with_hook_dir(&ctx);
    b.add_hook("prestart", marking_hook(&d, "ran", "exit 1"));
    create_fails(&ctx, &b);
    assert!(
        d.join("ran").exists(),
        "the hook did not run: create failed for another reason"
    );
}

#[test]
fn failing_create_runtime_hook_fails_create() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hookcrfail");
    let (mut b, d) = bundle_with_hook_dir(&ctx);
    b.add_hook(
        "createRuntime",
        marking_hook(&d, "ran", "echo hook-error-output >&2; exit 3"),
    );
    // Later hooks must not run.
    b.add_hook(
        "createContainer",
        marking_hook(&d, "createContainer", "true"),
    );
    b.add_hook("poststart", marking_hook(&d, "poststart", "true"));
    create_fails(&ctx, &b);
    assert!(
        d.join("ran").exists(),
        "the hook did not run: create failed for another reason"
    );
    assert!(
        !d.join("createContainer").exists(),
        "createContainer ran after createRuntime failed"
    );
    assert!(
        !d.join("poststart").exists(),
        "poststart ran after createRuntime failed"
    );
}

#[test]
fn failing_create_container_hook_fails_create() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hookccfail");
    let (mut b, d) = bundle_with_hook_dir(&ctx);
    b.add_hook("createContainer", marking_hook(&d, "ran", "exit 1"));
    create_fails(&ctx, &b);
    assert!(
        d.join("ran").exists(),
        "the hook did not run: create failed for another reason"
    );
}

#[test]
fn hook_timeout_fails_create() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hooktimeout");
    let (mut b, d) = bundle_with_hook_dir(&ctx);
    let mut hook = marking_hook(&d, "ran", "exec sleep 5");
    hook["timeout"] = json!(1);
    b.add_hook("prestart", hook);
    create_fails(&ctx, &b);
    assert!(
        d.join("ran").exists(),
        "the hook did not run: create failed for another reason"
    );
}

#[test]
fn hook_within_its_timeout_is_fine() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("hookintime");
    let d = ctx.dir("out");
    let mut b = ctx.sh_bundle("echo main");
    b.add_hook("createRuntime", json!({"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}/ok", d.display())], "timeout": 10}));
    assert_eq!(ctx.run_ok(&b), "main\n");
    assert!(d.join("ok").exists());
}
