//! The same bundle under runc and under the runtime under test must look the
//! same from inside. Skipped when the runtime under test is runc itself.
mod common;
use common::*;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

const PROBE: &str = r#"
echo "== hostname"; hostname
echo "== id"; id
echo "== status"; grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Uid|Gid|Groups):' /proc/self/status
echo "== pid"; echo $$
echo "== cwd"; pwd
echo "== umask"; umask
echo "== env"; env | grep -v '^PWD=' | sort
echo "== mounts"; cut -d' ' -f5- /proc/self/mountinfo
echo "== dev"; ls -A /dev
echo "== devnodes"; for f in /dev/* /dev/pts/ptmx; do stat -c '%n %F %a %u:%g %t:%T' "$f"; done
echo "== ulimit"; ulimit -a
echo "== cgroup"; cat /proc/self/cgroup
echo "== uid_map"; cat /proc/self/uid_map
echo "== net"; ls /sys/class/net
echo "== oom"; cat /proc/self/oom_score_adj
echo "== end"
"#;

/// Split the probe's output into sections.
fn sections(out: &str) -> BTreeMap<String, Vec<String>> {
    let mut m = BTreeMap::new();
    let mut cur = String::new();
    for line in out.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            cur = name.to_string();
            m.insert(cur.clone(), vec![]);
        } else if !cur.is_empty() {
            m.get_mut(&cur)
                .unwrap()
                .push(line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    m
}

/// Mount points with their filesystem type, from mountinfo (fields 5-), sorted
/// (read-only-ness is checked by tests/rootfs.rs).
fn mount_summary(lines: &[String]) -> Vec<String> {
    let text: String = lines.iter().map(|l| format!("0 0 0:0 / {l}\n")).collect();
    let mut v: Vec<String> = parse_mountinfo(&text)
        .iter()
        .map(|m| format!("{} {}", m.mount_point, m.fstype))
        .collect();
    v.sort();
    v
}

fn run_with_runc(ctx: &Ctx, b: &Bundle, id: &str) -> String {
    b.write();
    let root = ctx.dir("runc-root");
    let out = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle", b.path().to_str().unwrap(), id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn compare(ctx: &Ctx, configure: impl Fn(&mut Bundle)) {
    let mut ours = ctx.bundle();
    configure(&mut ours);
    ours.sh(PROBE);
    let ours_has_cgroupns = ours.has_namespace("cgroup");
    let mut theirs = ctx.bundle();
    configure(&mut theirs);
    theirs.sh(PROBE);
    // Container ids show up in cgroup paths: name them both "ID".
    let (our_id, their_id) = (ctx.id("ours"), ctx.id("runc"));
    let out = ctx.run(&ours, &our_id);
    assert_eq!(out.code(), 0, "{out}");
    let a = sections(&out.stdout.replace(&our_id, "ID"));
    let b = sections(&run_with_runc(ctx, &theirs, &their_id).replace(&their_id, "ID"));
    assert!(
        a.contains_key("end") && b.contains_key("end"),
        "probe did not finish: {a:?} / {b:?}"
    );
    let mut diffs = vec![];
    for (name, theirs) in &b {
        // Without a cgroup namespace the paths show where each runtime puts
        // its cgroups by default, a naming choice.
        if name == "cgroup" && !ours_has_cgroupns {
            continue;
        }
        let ours = a.get(name).cloned().unwrap_or_default();
        let (o, t) = if name == "mounts" {
            // A deliberate difference: on a hybrid host berth also shows the container its
            // cgroup2 (unified) hierarchy, as it shows every v1 one; runc 1.1 leaves it out.
            let mut o = mount_summary(&ours);
            o.retain(|m| !m.starts_with("/sys/fs/cgroup/unified "));
            (o, mount_summary(theirs))
        } else {
            (ours, theirs.clone())
        };
        if o != *t {
            diffs.push(format!(
                "section {name}:\n  {}: {o:#?}\n  runc: {t:#?}",
                runtime_name()
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differs from runc:\n{}",
        runtime_name(),
        diffs.join("\n")
    );
}

fn skip_differential() -> bool {
    if runtime_name() == "runc" {
        eprintln!("SKIPPED: the runtime under test is runc itself");
        return true;
    }
    if which("runc").is_none() {
        eprintln!("SKIPPED: runc is not installed");
        return true;
    }
    false
}

#[test]
fn same_as_runc_default_bundle() {
    if skip() || skip_differential() {
        return;
    }
    let ctx = Ctx::new("diffdefault");
    compare(&ctx, |_| {});
}

#[test]
fn same_as_runc_customised_bundle() {
    if skip() || skip_differential() {
        return;
    }
    let ctx = Ctx::new("diffcustom");
    let data = ctx.dir("data");
    compare(&ctx, |b| {
        b.config["hostname"] = json!("diff-host");
        b.config["process"]["user"] =
            json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 65534], "umask": 18});
        b.config["process"]["cwd"] = json!("/home/berth");
        b.config["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "soft": 256, "hard": 512},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]);
        b.config["process"]["oomScoreAdj"] = json!(100);
        b.config["process"]["noNewPrivileges"] = json!(false);
        b.env("EXTRA=1");
        b.bind(&data, "/mnt/data", &["ro"]);
        b.add_mount(json!({"destination": "/mnt/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]}));
        b.remove_namespace("cgroup");
    });
}

#[test]
fn same_as_runc_docker_capabilities() {
    if skip() || skip_differential() {
        return;
    }
    let ctx = Ctx::new("diffcaps");
    compare(&ctx, |b| {
        let caps = json!([
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
        b.config["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps});
        b.readonly_root(false);
    });
}
