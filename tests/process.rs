//! The container process: args, env, cwd, user, umask, rlimits, oom score,
//! sysctl, no_new_privs, capabilities, --preserve-fds, LISTEN_FDS, terminal.
mod common;
use common::*;
use std::os::fd::AsRawFd;
use std::process::Command;

#[test]
fn args_env_and_cwd() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("argsenv");
    let mut b = ctx.bundle();
    b.args(&[
        "sh",
        "-c",
        "echo \"$0|$1|$2\"; echo \"FOO=$FOO\"; echo \"SPACED=$SPACED\"; pwd; echo \"PATH=$PATH\"",
        "zero",
        "one",
        "two words",
    ]);
    b.env("FOO=bar").env("SPACED=a b  c");
    b.config["process"]["cwd"] = json!("/home/berth");
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "zero|one|two words",
            "FOO=bar",
            "SPACED=a b  c",
            "/home/berth",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ],
        "{out}"
    );
}

#[test]
fn args0_is_looked_up_in_path() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("pathlookup");
    let mut b = ctx.bundle();
    // "echo" lives in /bin, "id" in /usr/bin: both found through PATH.
    b.args(&["id", "-u"]);
    assert_eq!(ctx.run_ok(&b), "0\n");
    b.args(&["/bin/echo", "absolute"]);
    assert_eq!(ctx.run_ok(&b), "absolute\n");
}

#[test]
fn user_uid_gid_and_additional_gids() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("user");
    let mut b =
        ctx.sh_bundle("id -u; id -g; grep -E '^(Uid|Gid|Groups):' /proc/self/status; id -un");
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 65534]});
    let out = ctx.run_ok(&b);
    let lines: Vec<String> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "1000",
            "1000",
            "Uid: 1000 1000 1000 1000",
            "Gid: 1000 1000 1000 1000",
            "Groups: 5 65534",
            "berth"
        ],
        "{out}"
    );
}

#[test]
fn user_without_additional_gids_has_no_supplementary_groups() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("nogroups");
    let mut b = ctx.sh_bundle("grep '^Groups:' /proc/self/status");
    b.config["process"]["user"] = json!({"uid": 65534, "gid": 65534});
    let out = ctx.run_ok(&b);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["Groups:"],
        "host groups leaked in: {out}"
    );
}

#[test]
fn umask() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("umask");
    let mut b = ctx
        .sh_bundle("umask; mkdir /dev/shm/d; touch /dev/shm/f; stat -c '%a' /dev/shm/d /dev/shm/f");
    b.config["process"]["user"]["umask"] = json!(0o077);
    let out = ctx.run_ok(&b);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0077", "700", "600"],
        "{out}"
    );
}

#[test]
fn rlimits() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("rlimits");
    let (_, nproc_hard) = rlimit(nix::sys::resource::Resource::RLIMIT_NPROC);
    let nproc = nproc_hard.min(4096);
    let mut b = ctx.sh_bundle("ulimit -n; ulimit -Hn; ulimit -c; cat /proc/self/limits");
    b.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_NPROC", "soft": nproc / 2, "hard": nproc}
    ]);
    let out = ctx.run_ok(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], ["512", "1024", "0"], "{out}");
    let limit = |name: &str| -> Vec<String> {
        let l = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not in {out}"));
        l[name.len()..]
            .split_whitespace()
            .take(2)
            .map(String::from)
            .collect()
    };
    assert_eq!(limit("Max open files"), ["512", "1024"]);
    assert_eq!(limit("Max core file size"), ["0", "0"]);
    assert_eq!(
        limit("Max processes"),
        [(nproc / 2).to_string(), nproc.to_string()]
    );
}

#[test]
fn oom_score_adj() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("oomscore");
    let mut b = ctx.sh_bundle("cat /proc/self/oom_score_adj");
    b.config["process"]["oomScoreAdj"] = json!(123);
    assert_eq!(ctx.run_ok(&b), "123\n");
    // The runtime's own value is not changed.
    let own = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    assert_ne!(own.trim(), "123");
}

#[test]
fn sysctl_in_new_namespaces() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("sysctl");
    let host_fwd = host_sysctl("net/ipv4/ip_forward");
    let host_shm = host_sysctl("kernel/shm_rmid_forced");
    let want_fwd = if host_fwd == "1" { "0" } else { "1" };
    let want_shm = if host_shm == "1" { "0" } else { "1" };
    let mut b = ctx.sh_bundle("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced");
    b.config["linux"]["sysctl"] =
        json!({"net.ipv4.ip_forward": want_fwd, "kernel.shm_rmid_forced": want_shm});
    let out = ctx.run_ok(&b);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [want_fwd, want_shm],
        "{out}"
    );
    assert_eq!(
        host_sysctl("net/ipv4/ip_forward"),
        host_fwd,
        "host's ip_forward changed"
    );
    assert_eq!(
        host_sysctl("kernel/shm_rmid_forced"),
        host_shm,
        "host's shm_rmid_forced changed"
    );
}

#[test]
fn no_new_privileges() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("nnp");
    let mut b = ctx.sh_bundle("grep NoNewPrivs /proc/self/status");
    assert_eq!(b.config["process"]["noNewPrivileges"], true);
    assert_eq!(
        ctx.run_ok(&b).split_whitespace().collect::<Vec<_>>(),
        ["NoNewPrivs:", "1"]
    );
    b.config["process"]["noNewPrivileges"] = json!(false);
    assert_eq!(
        ctx.run_ok(&b).split_whitespace().collect::<Vec<_>>(),
        ["NoNewPrivs:", "0"]
    );
}

fn caps_inside(ctx: &Ctx, b: &mut Bundle) -> std::collections::BTreeMap<String, u64> {
    b.sh("grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' /proc/self/status");
    let out = ctx.run_ok(b);
    out.lines()
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), parse_hex(v))
        })
        .collect()
}

fn set_caps(b: &mut Bundle, caps: Value) {
    b.config["process"]["capabilities"] = caps;
}

#[test]
fn capabilities_default_config() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("capsdefault");
    let mut b = ctx.bundle();
    let c = b.config["process"]["capabilities"].clone();
    let got = caps_inside(&ctx, &mut b);
    assert_eq!(got["CapBnd"], cap_mask(&c["bounding"]), "{got:x?}");
    assert_eq!(got["CapEff"], cap_mask(&c["effective"]), "{got:x?}");
    assert_eq!(got["CapPrm"], cap_mask(&c["permitted"]), "{got:x?}");
    assert_eq!(got["CapInh"], cap_mask(&c["inheritable"]), "{got:x?}");
    // The kernel only keeps ambient caps that are also permitted and inheritable.
    let amb = cap_mask(&c["ambient"]) & cap_mask(&c["inheritable"]) & cap_mask(&c["permitted"]);
    assert_eq!(got["CapAmb"], amb, "{got:x?}");
}

#[test]
fn capabilities_docker_set_as_root() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("capsdocker");
    let mut b = ctx.bundle();
    let docker = json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE"
    ]);
    set_caps(
        &mut b,
        json!({"bounding": docker, "effective": docker, "permitted": docker}),
    );
    let got = caps_inside(&ctx, &mut b);
    let m = cap_mask(&docker);
    assert_eq!(
        (got["CapBnd"], got["CapEff"], got["CapPrm"]),
        (m, m, m),
        "{got:x?}"
    );
    assert_eq!((got["CapInh"], got["CapAmb"]), (0, 0), "{got:x?}");
}

#[test]
fn capabilities_all_sets_for_a_non_root_user() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("capsuser");
    let mut b = ctx.bundle();
    let set = json!(["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_NET_RAW"]);
    set_caps(
        &mut b,
        json!({"bounding": set, "effective": set, "permitted": set, "inheritable": set, "ambient": set}),
    );
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let got = caps_inside(&ctx, &mut b);
    let m = cap_mask(&set);
    for k in ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(got[k], m, "{k}: {got:x?}");
    }
}

#[test]
fn capabilities_sets_differ_as_root() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("capsbnd");
    let mut b = ctx.bundle();
    let bnd = json!(["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"]);
    let eff = json!(["CAP_CHOWN", "CAP_KILL"]);
    let inh = json!(["CAP_KILL"]);
    set_caps(
        &mut b,
        json!({"bounding": bnd, "effective": eff, "permitted": eff, "inheritable": inh, "ambient": inh}),
    );
    let got = caps_inside(&ctx, &mut b);
    assert_eq!(got["CapBnd"], cap_mask(&bnd), "{got:x?}");
    assert_eq!(got["CapInh"], cap_mask(&inh), "{got:x?}");
    assert_eq!(got["CapAmb"], cap_mask(&inh), "{got:x?}");
    assert_eq!(got["CapPrm"], cap_mask(&eff), "{got:x?}");
    assert_eq!(got["CapEff"], cap_mask(&eff), "{got:x?}");
}

/// The fds of a running process, each with its link target.
fn fds_of(pid: i32) -> Vec<(i32, String)> {
    let mut v: Vec<(i32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| {
            let n: i32 = e.file_name().to_string_lossy().parse().unwrap();
            (
                n,
                std::fs::read_link(e.path())
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

fn own_fd_link(fd: &std::os::fd::OwnedFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn preserve_fds() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("preservefds");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let pipe = pipe_with(b"preserved-data\n");
    let id = ctx.id("p");
    let mut cmd = ctx.cmd(&[
        "create",
        "--preserve-fds",
        "1",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    with_fd3(&mut cmd, pipe.as_raw_fd());
    ctx.output(cmd).ok();
    ctx.start(&id);
    let pid = ctx.pid(&id);
    wait_until("sleep to run", || cmdline(pid) == "sleep 1000");
    let fds = fds_of(pid);
    assert_eq!(
        fds.iter().map(|f| f.0).collect::<Vec<_>>(),
        [0, 1, 2, 3],
        "{fds:?}"
    );
    assert_eq!(
        fds[3].1,
        own_fd_link(&pipe),
        "fd 3 is not the preserved pipe"
    );

    // Without --preserve-fds the extra fd is not passed.
    let id = ctx.id("np");
    let mut cmd = ctx.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    with_fd3(&mut cmd, pipe.as_raw_fd());
    ctx.output(cmd).ok();
    ctx.start(&id);
    let pid = ctx.pid(&id);
    wait_until("sleep to run", || cmdline(pid) == "sleep 1000");
    let fds = fds_of(pid);
    assert_eq!(
        fds.iter().map(|f| f.0).collect::<Vec<_>>(),
        [0, 1, 2],
        "fd 3 leaked into the container: {fds:?}"
    );
}

#[test]
fn preserve_fds_content_is_readable() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("preservecat");
    let b = ctx.sh_bundle("cat <&3");
    b.write();
    let pipe = pipe_with(b"preserved-data\n");
    let id = ctx.id("p");
    let mut cmd = ctx.cmd(&[
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    with_fd3(&mut cmd, pipe.as_raw_fd());
    let out = ctx.output(cmd);
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout, "preserved-data\n", "{out}");
}

#[test]
fn listen_fds() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("listenfds");
    let mut b = ctx.bundle();
    b.args(&["sleep", "1000"]);
    b.write();
    let pipe = pipe_with(b"socket-activated\n");
    let id = ctx.id("l");
    // LISTEN_PID must be the runtime's own pid: set it in a shell that execs it.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\"", "sh"])
        .arg(runtime())
        .arg("--root")
        .arg(&ctx.root)
        .args(["create", "--bundle", b.path().to_str().unwrap(), &id])
        .env("BERTH_TEST_MARK", &ctx.marker)
        .stdin(std::process::Stdio::null());
    with_fd3(&mut cmd, pipe.as_raw_fd());
    ctx.output(cmd).ok();
    ctx.start(&id);
    let pid = ctx.pid(&id);
    wait_until("sleep to run", || cmdline(pid) == "sleep 1000");
    let fds = fds_of(pid);
    assert_eq!(
        fds.iter().map(|f| f.0).collect::<Vec<_>>(),
        [0, 1, 2, 3],
        "{fds:?}"
    );
    assert_eq!(fds[3].1, own_fd_link(&pipe), "fd 3 is not the listen fd");
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let env: Vec<String> = env
        .split(|&c| c == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect();
    assert!(env.contains(&"LISTEN_FDS=1".to_string()), "{env:?}");
    assert!(env.contains(&"LISTEN_PID=1".to_string()), "{env:?}");
}

#[test]
fn terminal_with_console_socket() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("terminal");
    let mut b = ctx.sh_bundle("tty; stty size; ls -l /proc/self/fd/0 | sed 's/.*-> //'; echo done");
    b.config["process"]["terminal"] = json!(true);
    b.config["process"]["consoleSize"] = json!({"height": 31, "width": 101});
    b.write();
    let id = ctx.id("t");
    let out = ctx.run_on_console(&b, &id);
    let lines: Vec<&str> = out
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines.len() >= 4, "{out:?}");
    assert!(lines[0].starts_with("/dev/pts/"), "tty said {out:?}");
    assert_eq!(lines[1], "31 101", "{out:?}");
    assert_eq!(lines[2], lines[0], "stdin is not the tty: {out:?}");
    assert_eq!(lines[3], "done");
    ctx.wait_status(&id, "stopped");
    ctx.delete(&id);
}

#[test]
fn no_terminal_means_no_tty() {
    if skip() {
        return;
    }
    let ctx = Ctx::new("noterminal");
    let out = ctx.sh_ok("tty || true; test -e /dev/console && echo console || echo no-console");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["not a tty", "no-console"],
        "{out}"
    );
}
