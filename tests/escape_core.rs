//! Issue 12: what a hostile image or config could make berth do on the host through its own
//! writes and reads — sysctls redirected or written on the host, uid -1, a relative hook
//! path, an /etc/passwd that never ends. Each test tries the attack and checks its effect.

mod common;

use common::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

/// A volume mounted inside /proc/sys (as an engine passes a user's `-v`) holding a symlink
/// where berth writes a sysctl: the write must not land in the host file the link points at.
#[test]
fn sysctl_writes_cannot_be_redirected_into_a_host_file() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("sysredir");
    let data = ctx.dir("data");
    fs::write(data.join("victim"), "canary\n").unwrap();
    let vol = ctx.dir("vol");
    fs::create_dir(vol.join("ipv4")).unwrap();
    symlink("/data/victim", vol.join("ipv4/ip_forward")).unwrap();
    let mut b = ctx.sh_bundle("true");
    b.bind(&vol, "/proc/sys/net", &[]);
    b.bind(&data, "/data", &[]);
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    let id = ctx.id("r");
    // Refusing the mount into /proc is as good an answer as writing through berth's own procfs.
    let _ = ctx.run(&b, &id);
    assert_eq!(
        fs::read_to_string(data.join("victim")).unwrap(),
        "canary\n",
        "the sysctl write followed the volume's symlink into a host file"
    );
}

/// Written through berth's own procfs, sysctls still land in the container's namespaces
/// (network, ipc, uts) and only there.
#[test]
fn sysctls_are_applied_in_the_container_namespaces() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("sysok");
    let mut b = ctx.sh_bundle(
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni /proc/sys/kernel/domainname",
    );
    b.config["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": "1",
        "kernel/shmmni": "1234",
        "kernel.domainname": "berth.test",
    });
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["1", "1234", "berth.test"], "{out}");
    let host_shmmni = fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    assert_ne!(
        host_shmmni.trim(),
        "1234",
        "the host's ipc namespace was written"
    );
}

/// Sysctls that no namespace of the container's own holds would change the host: refused,
/// naming the key, leaving nothing. The values are the host's current ones so that a runtime
/// without the check changes nothing while it fails this test.
#[test]
fn sysctls_of_the_host_are_refused() {
    if skip() || berth_only("error wording") {
        return;
    }
    let ctx = Ctx::new("syshost");
    let current = |key: &str| {
        fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/")))
            .unwrap()
            .trim()
            .to_string()
    };
    let cases: [(&str, Option<&str>); 4] = [
        ("kernel.core_pattern", None),
        ("vm.overcommit_memory", None),
        ("net.ipv4.ip_forward", Some("network")),
        ("kernel.shmmni", Some("ipc")),
    ];
    for (key, without_ns) in cases {
        let mut b = ctx.sh_bundle("true");
        if let Some(ns) = without_ns {
            b.remove_namespace(ns);
        }
        b.config["linux"]["sysctl"] = json!({ key: current(key) });
        let id = ctx.id("h");
        let out = ctx.try_create(&b, &id);
        assert!(!out.success(), "{key} was accepted: {out}");
        assert!(
            out.stderr.contains(&format!("linux.sysctl[{key:?}]")),
            "{key}: {out}"
        );
        assert!(!ctx.state_dir(&id).exists(), "{key}: state left behind");
    }
    // Joining berth's own network namespace by path is the host's too.
    let mut b = ctx.sh_bundle("true");
    let own = format!("/proc/{}/ns/net", std::process::id());
    b.namespace("network", Some(&own));
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": current("net.ipv4.ip_forward")});
    let out = ctx.try_create(&b, &ctx.id("p"));
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("host's network namespace"), "{out}");
}

/// uid and gid 4294967295 mean "unchanged" to setresuid/setresgid: the process would keep
/// root. Refused for the init and for exec.
#[test]
fn uid_and_gid_minus_one_are_refused() {
    if skip() || berth_only("error wording") {
        return;
    }
    let ctx = Ctx::new("uidm1");
    for (field, path) in [
        ("process.user.uid", ["user", "uid"]),
        ("process.user.gid", ["user", "gid"]),
    ] {
        let mut b = ctx.sh_bundle("id -u; id -g");
        b.config["process"][path[0]][path[1]] = json!(4294967295u32);
        let id = ctx.id("c");
        let out = ctx.try_create(&b, &id);
        assert!(!out.success(), "{field} -1 accepted: {out}");
        assert!(out.stderr.contains(field), "{out}");
        assert!(!ctx.state_dir(&id).exists());
    }
    let (id, _) = ctx.sleeper("s");
    let out = ctx.rt(&["exec", "--user", "4294967295:0", &id, "id", "-u"]);
    assert!(!out.success(), "exec as uid -1 ran: {out}");
    assert!(out.stderr.contains("process.user.uid"), "{out}");
    let out = ctx.rt(&["exec", "--user", "1000:4294967295", &id, "id", "-g"]);
    assert!(!out.success(), "exec as gid -1 ran: {out}");
}

/// A relative hook path would run whatever the caller's working directory holds.
#[test]
fn relative_hook_paths_are_refused() {
    if skip() || berth_only("error wording") {
        return;
    }
    let ctx = Ctx::new("relhook");
    let cwd = ctx.dir("cwd");
    let canary = cwd.join("ran");
    fs::write(
        cwd.join("hook.sh"),
        format!("#!/bin/sh\ntouch {}\n", canary.display()),
    )
    .unwrap();
    fs::set_permissions(
        cwd.join("hook.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for kind in ["prestart", "createRuntime", "poststop"] {
        let mut b = ctx.sh_bundle("true");
        b.add_hook(kind, json!({"path": "hook.sh"}));
        b.write();
        let id = ctx.id("h");
        let mut cmd = ctx.cmd(&["run", "--bundle"]);
        cmd.arg(b.path()).arg(&id).current_dir(&cwd);
        let out = ctx.output(cmd);
        assert!(!out.success(), "{kind}: {out}");
        assert!(
            out.stderr.contains(&format!("hooks.{kind}[0].path")),
            "{kind}: {out}"
        );
        assert!(!canary.exists(), "{kind}: the relative hook ran");
        assert!(!ctx.state_dir(&id).exists());
    }
}

/// berth reads the image's /etc/passwd for HOME: a FIFO there must not hang `create`, and a
/// link to /dev/zero must not be read until the memory limit.
#[test]
fn a_hostile_etc_passwd_neither_hangs_nor_floods_create() {
    if skip() || berth_only("error wording") {
        return;
    }
    let ctx = Ctx::new("passwd");
    for kind in ["fifo", "zero"] {
        let mut b = ctx.sh_bundle("echo $HOME");
        let passwd = b.rootfs().join("etc/passwd");
        fs::remove_file(&passwd).unwrap();
        if kind == "fifo" {
            nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        } else {
            symlink("/dev/zero", &passwd).unwrap();
        }
        // A runtime that reads /dev/zero stops at this limit rather than the host's memory.
        b.config["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}});
        b.write();
        let id = ctx.id(kind);
        let create = ctx.rt_bg(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
        let out = create.try_wait(Duration::from_secs(15));
        let Some(out) = out else {
            let _ = ctx.rt(&["delete", "--force", &id]);
            panic!("{kind}: create hung on the image's /etc/passwd");
        };
        assert!(!out.success(), "{kind}: {out}");
        assert!(out.stderr.contains("/etc/passwd"), "{kind}: {out}");
        assert!(!ctx.state_dir(&id).exists(), "{kind}: state left behind");
    }
}
