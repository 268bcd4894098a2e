//! Rootless containers: the runtime run by an unprivileged user, with a bundle from
//! `spec --rootless` (a user namespace mapping that user to root). The suite runs as root; each
//! test drops to the test user (uid 1500, `berthtest`) with setpriv for every runtime command.
mod common;
use common::*;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

const TEST_UID: u32 = 1500;
const TEST_USER: &str = "berthtest";

/// The test user's uid and gid, made once; Err says why the tests cannot run here.
fn test_user() -> Result<(u32, u32), String> {
    static USER: OnceLock<Result<(u32, u32), String>> = OnceLock::new();
    USER.get_or_init(|| {
        let lookup = || nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(TEST_UID));
        match lookup() {
            Ok(Some(u)) if u.name != TEST_USER => {
                return Err(format!("uid {TEST_UID} is taken by {}", u.name));
            }
            Ok(Some(_)) => {}
            _ => {
                let st = Command::new("useradd")
                    .args(["-M", "-U", "-s", "/usr/sbin/nologin", "-u"])
                    .arg(TEST_UID.to_string())
                    .arg(TEST_USER)
                    .status()
                    .map_err(|e| format!("useradd: {e}"))?;
                if !st.success() {
                    return Err(format!("useradd {TEST_USER} failed: {st}"));
                }
            }
        }
        let u = lookup()
            .ok()
            .flatten()
            .ok_or_else(|| format!("user {TEST_USER} not found after useradd"))?;
        // Can an unprivileged user make a user namespace on this kernel at all?
        let probe = Command::new("setpriv")
            .args(drop_args(u.uid.as_raw(), u.gid.as_raw()))
            .args(["unshare", "--user", "true"])
            .output()
            .map_err(|e| format!("setpriv: {e}"))?;
        if !probe.status.success() {
            let sysctl = |p: &str| {
                fs::read_to_string(p)
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "absent".into())
            };
            return Err(format!(
                "an unprivileged user cannot create a user namespace ({}); \
                 user.max_user_namespaces={}, kernel.unprivileged_userns_clone={}, \
                 kernel.apparmor_restrict_unprivileged_userns={}",
                String::from_utf8_lossy(&probe.stderr).trim(),
                sysctl("/proc/sys/user/max_user_namespaces"),
                sysctl("/proc/sys/kernel/unprivileged_userns_clone"),
                sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            ));
        }
        Ok((u.uid.as_raw(), u.gid.as_raw()))
    })
    .clone()
}

fn drop_args(uid: u32, gid: u32) -> Vec<String> {
    vec![
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".into(),
    ]
}

/// A test's rootless world: a home owned by the test user, holding its bundle and its
/// XDG_RUNTIME_DIR (so the runtime's default --root is under it).
struct Rootless {
    ctx: Ctx,
    uid: u32,
    gid: u32,
    home: PathBuf,
    bundle: PathBuf,
    ids: std::cell::RefCell<Vec<String>>,
}

impl Rootless {
    /// None (after printing why) when the tests cannot run here.
    fn new(name: &str) -> Option<Rootless> {
        if skip() {
            return None;
        }
        let (uid, gid) = match test_user() {
            Ok(ids) => ids,
            Err(why) => {
                eprintln!("SKIPPED: rootless tests: {why}");
                return None;
            }
        };
        let ctx = Ctx::new(name);
        let home = ctx.dir("home");
        let bundle = home.join("bundle");
        fs::create_dir(&bundle).unwrap();
        cp_a(&shared_rootfs(), &bundle.join("rootfs"));
        host(
            "chown",
            &["-R", &format!("{uid}:{gid}"), home.to_str().unwrap()],
        );
        let r = Rootless {
            ctx,
            uid,
            gid,
            home,
            bundle,
            ids: Default::default(),
        };
        r.rt(&["spec", "--rootless", "--bundle", r.bundle.to_str().unwrap()])
            .ok();
        Some(r)
    }

    /// The runtime's default --root for this user.
    fn state_root(&self) -> PathBuf {
        let name = if is_berth() { "berth" } else { "runc" };
        self.home.join("xdg").join(name)
    }

    /// The runtime as the test user, without --root.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("setpriv");
        c.args(drop_args(self.uid, self.gid));
        c.arg(runtime()).args(args);
        c.env("XDG_RUNTIME_DIR", self.home.join("xdg"));
        c.env("BERTH_TEST_MARK", &self.ctx.marker);
        c.stdin(std::process::Stdio::null());
        c
    }

    fn rt(&self, args: &[&str]) -> Out {
        self.ctx.output(self.cmd(args))
    }

    fn id(&self, suffix: &str) -> String {
        let id = format!(
            "rl-{suffix}-{}-{}",
            std::process::id(),
            self.ids.borrow().len()
        );
        self.ids.borrow_mut().push(id.clone());
        id
    }

    fn config(&self) -> Value {
        let text = fs::read_to_string(self.bundle.join("config.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn write_config(&self, config: &Value) {
        let path = self.bundle.join("config.json");
        fs::write(&path, serde_json::to_string_pretty(config).unwrap()).unwrap();
        host(
            "chown",
            &[
                &format!("{}:{}", self.uid, self.gid),
                path.to_str().unwrap(),
            ],
        );
    }

    fn bundle_arg(&self) -> &str {
        self.bundle.to_str().unwrap()
    }

    fn status(&self, id: &str) -> String {
        let out = self.rt(&["state", id]).ok();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        v["status"].as_str().unwrap_or_default().to_string()
    }

    fn wait_status(&self, id: &str, want: &str) {
        let deadline = std::time::Instant::now() + WAIT_TIMEOUT;
        while self.status(id) != want {
            assert!(
                std::time::Instant::now() < deadline,
                "container {id} never became {want}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self
                .cmd(&["delete", "--force", id])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// A process-args config with no terminal and the given hostname.
fn with_process(mut config: Value, args: &[&str]) -> Value {
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(args);
    config["hostname"] = json!("rootless-box");
    config
}

#[test]
fn spec_rootless_maps_the_caller_to_root() {
    let Some(r) = Rootless::new("rlspec") else {
        return;
    };
    let c = r.config();
    let types: Vec<&str> = c["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"user"), "{types:?}");
    assert!(!types.contains(&"network"), "{types:?}");
    assert_eq!(
        c["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": r.uid, "size": 1}])
    );
    assert_eq!(
        c["linux"]["gidMappings"],
        json!([{"containerID": 0, "hostID": r.gid, "size": 1}])
    );
    assert!(c["linux"]["resources"].is_null(), "{}", c["linux"]);
}

#[test]
fn rootless_run_is_root_inside_but_not_on_the_host() {
    let Some(r) = Rootless::new("rlrun") else {
        return;
    };
    // Owned by host root, mode 0755: the container's root is uid 1500 there.
    let host_dir = r.ctx.dir("rootowned");
    let mut c = with_process(
        r.config(),
        &[
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; hostname; \
             touch /hostdir/x 2>&1 && echo WROTE; stat -c %u /",
        ],
    );
    c["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/hostdir", "type": "bind", "source": host_dir,
        "options": ["rbind", "rw"]
    }));
    r.write_config(&c);
    let id = r.id("run");
    let out = r.rt(&["run", "--bundle", r.bundle_arg(), &id]);
    assert_eq!(out.code(), 0, "{out}");
    let lines = out.lines();
    assert_eq!(lines[0], "0", "id -u: {out}");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", "1500", "1"], "uid_map: {out}");
    assert_eq!(lines[2], "rootless-box", "{out}");
    assert!(
        out.stdout.contains("Permission denied") && !out.stdout.contains("WROTE"),
        "wrote into a root-owned host dir: {out}"
    );
    assert!(!host_dir.join("x").exists());
    // The rootfs, owned by the user on the host, is root's inside.
    assert_eq!(lines.last().copied(), Some("0"), "{out}");
    assert!(
        fs::read_dir(r.state_root()).unwrap().next().is_none(),
        "left under --root {}",
        r.state_root().display()
    );
    r.ctx.assert_no_marked_process();
}

#[test]
fn rootless_lifecycle_and_exec() {
    let Some(r) = Rootless::new("rllife") else {
        return;
    };
    r.write_config(&with_process(r.config(), &["sleep", "1000"]));
    let id = r.id("life");
    r.rt(&["create", "--bundle", r.bundle_arg(), &id]).ok();
    assert_eq!(r.status(&id), "created");
    assert!(r.state_root().join(&id).is_dir());
    let list = r.rt(&["list", "--format", "json"]).ok();
    assert!(list.stdout.contains(&id), "{list}");
    r.rt(&["start", &id]).ok();
    assert_eq!(r.status(&id), "running");
    let exec = r
        .rt(&["exec", &id, "--", "sh", "-c", "id -u; hostname; echo $$"])
        .ok();
    let lines = exec.lines();
    assert_eq!(lines[0], "0", "{exec}");
    assert_eq!(lines[1], "rootless-box", "{exec}");
    assert_ne!(lines[2], "1", "exec'd process is not the init: {exec}");
    r.rt(&["kill", &id, "KILL"]).ok();
    r.wait_status(&id, "stopped");
    r.rt(&["delete", &id]).ok();
    assert!(!r.rt(&["state", &id]).success());
    let left: Vec<_> = fs::read_dir(r.state_root()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left under --root: {left:?}");
    r.ctx.assert_no_marked_process();
}

#[test]
fn rootless_limits_need_a_cgroup() {
    let Some(r) = Rootless::new("rllimits") else {
        return;
    };
    if berth_only("the error names linux.resources") {
        return;
    }
    let mut c = with_process(r.config(), &["true"]);
    c["linux"]["resources"] = json!({"pids": {"limit": 10}});
    r.write_config(&c);
    let id = r.id("limits");
    let out = r.rt(&["run", "--bundle", r.bundle_arg(), &id]);
    if out.success() {
        // Delegated cgroups (the user may create them): limits are fine then.
        return;
    }
    assert!(out.stderr.contains("linux.resources"), "{out}");
    assert!(!r.state_root().join(&id).exists());
}

#[test]
fn rootless_multi_range_maps_need_newuidmap() {
    let Some(r) = Rootless::new("rlmaps") else {
        return;
    };
    if berth_only("berth's error message") {
        return;
    }
    let mut c = with_process(r.config(), &["cat", "/proc/self/uid_map"]);
    c["linux"]["uidMappings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"containerID": 1, "hostID": 100000, "size": 1000}));
    r.write_config(&c);
    let id = r.id("maps");
    let out = r.rt(&["run", "--bundle", r.bundle_arg(), &id]);
    let granted = fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("{TEST_USER}:100000:")));
    if which("newuidmap").is_some() && granted {
        assert_eq!(out.code(), 0, "{out}");
        assert!(
            out.stdout.contains("100000") && out.stdout.contains("1500"),
            "{out}"
        );
    } else {
        assert!(!out.success(), "{out}");
        assert!(out.stderr.contains("linux.uidMappings"), "{out}");
    }
}
