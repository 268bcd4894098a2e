//! The config.json files real clients send (shared/testdata), with our rootfs
//! and our own bind sources, must run with their seccomp profiles. Hooks that
//! call the client back and host-specific paths are taken out.
mod common;
use common::*;
use std::fs;
use std::path::PathBuf;

fn testdata(name: &str) -> Option<PathBuf> {
    [
        repo_dir().join("../shared/testdata").join(name),
        PathBuf::from("/work/shared/testdata").join(name),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// Load a client's config and make it runnable here.
fn adapt(ctx: &Ctx, name: &str, id: &str) -> Option<Bundle> {
    let Some(path) = testdata(name) else {
        eprintln!("SKIPPED: shared/testdata/{name} not found");
        return None;
    };
    let mut cfg: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let mut b = ctx.bundle();
    cfg["root"] = json!({"path": "rootfs"});
    cfg["process"]["args"] = json!(["echo", "hello"]);
    cfg["process"]["terminal"] = json!(false);
    if let Some(o) = cfg.as_object_mut() {
        o.remove("hooks");
    }
    let linux = cfg["linux"].as_object_mut().unwrap();
    // Our own cgroup, removed by the harness even if the runtime leaks it.
    linux.insert("cgroupsPath".into(), json!(format!("/berthtest-{id}")));
    for ns in linux.get_mut("namespaces").unwrap().as_array_mut().unwrap() {
        ns.as_object_mut().unwrap().remove("path");
    }
    // Never ask for more than our hard limits (no CAP_SYS_RESOURCE here).
    if let Some(rl) = cfg["process"]["rlimits"].as_array_mut() {
        for r in rl {
            let res = match r["type"].as_str().unwrap() {
                "RLIMIT_NOFILE" => nix::sys::resource::Resource::RLIMIT_NOFILE,
                "RLIMIT_NPROC" => nix::sys::resource::Resource::RLIMIT_NPROC,
                _ => continue,
            };
            let (_, hard) = rlimit(res);
            for k in ["soft", "hard"] {
                if r[k].as_u64().unwrap() > hard {
                    r[k] = json!(hard);
                }
            }
        }
    }
    // Bind sources: our own files and dirs.
    let src_dir = ctx.dir("binds");
    for (i, m) in cfg["mounts"].as_array_mut().unwrap().iter_mut().enumerate() {
        let is_bind = m["type"] == "bind"
            || m["options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
        if !is_bind {
            continue;
        }
        let dest = m["destination"].as_str().unwrap().to_string();
        let src = src_dir.join(format!(
            "{i}-{}",
            dest.trim_start_matches('/').replace('/', "_")
        ));
        if dest == "/dev/shm" {
            fs::create_dir(&src).unwrap();
        } else {
            fs::write(&src, format!("{dest} from the test\n")).unwrap();
        }
        m["source"] = json!(src);
    }
    b.config = cfg;
    Some(b)
}

fn run_client_config(name: &str, test: &str) {
    let ctx = Ctx::new(test);
    let id = ctx.id("c");
    let Some(b) = adapt(&ctx, name, &id) else {
        return;
    };
    let out = ctx.run(&b, &id);
    assert_eq!(out.code(), 0, "{name}: {out}");
    assert_eq!(out.stdout, "hello\n", "{name}: {out}");
    ctx.assert_no_trace(&id);

    // And it looks as configured from inside.
    let mut b = b;
    let hostname = b.config["hostname"].as_str().unwrap_or("").to_string();
    b.config["process"]["args"] = json!(["sh", "-c", "hostname; cat /proc/self/oom_score_adj; grep NoNewPrivs /proc/self/status; ls /sys/class/net"]);
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    if !hostname.is_empty() {
        assert_eq!(lines[0], hostname, "{out}");
    }
    let nnp = if b.config["process"]["noNewPrivileges"] == true {
        "1"
    } else {
        "0"
    };
    assert_eq!(lines[2].split_whitespace().last(), Some(nnp), "{out}");
    assert_eq!(&lines[3..], ["lo"], "{out}");
}

#[test]
fn containerd_1_6_config_runs() {
    if skip() {
        return;
    }
    run_client_config("containerd-1.6-config.json", "containerd");
}

#[test]
fn podman_4_3_config_runs() {
    if skip() {
        return;
    }
    run_client_config("podman-4.3-config.json", "podman");
}

#[test]
fn docker_20_10_config_runs() {
    if skip() {
        return;
    }
    run_client_config("docker-20.10-config.json", "docker");
}
