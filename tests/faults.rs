//! Faults must leave nothing (issue 12). berth is killed with SIGKILL at random instants of
//! `create`, `run`, `start`, `exec` and `delete`, or a `create` is stuck part-way; then
//! `delete --force` of the id must leave no process, state directory, cgroup directory or
//! mount of the container.
//!
//! Every process the container may have is found after the berth that made it is gone: berth's
//! own processes (a container process still running berth's code) carry the harness's
//! `BERTH_TEST_MARK` in their environment, the container's processes and hooks carry
//! `FAULTS_MARK`, and any of them may sit in the container's cgroup. The instants are random;
//! `FAULTS_SEED=N` repeats a run.
mod common;
use common::*;
use std::ffi::OsString;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const MARK_VAR: &str = "FAULTS_MARK";

/// How long leftovers may take to go after `delete --force` returned (a process killed by its
/// parent-death signal is gone within microseconds; this is for a loaded machine).
const SETTLE: Duration = Duration::from_secs(3);

/// xorshift64*: no dependency, and a seed printed so that a failing run can be repeated.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Rng {
        let seed = std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{test}: FAULTS_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }

    /// When to kill, after the spawn: three rounds in four over the first `span` (at least
    /// 10 ms), every fourth over the twice as long after it.
    fn instant(&mut self, round: usize, span: Duration) -> Duration {
        let span = span.max(Duration::from_millis(10)).as_micros() as u64;
        if round % 4 == 3 {
            Duration::from_micros(span + self.below(2 * span))
        } else {
            Duration::from_micros(self.below(span))
        }
    }
}

/// A test's context, its marker and a bundle whose process is `sleep 1000`.
struct Faults {
    ctx: Ctx,
    mark: String,
    rng: Rng,
    /// How many rounds killed the command before it finished, and how many after.
    killed: usize,
    finished: usize,
}

impl Faults {
    fn new(name: &str) -> Faults {
        let ctx = Ctx::new(name);
        let mark = ctx.marker.clone();
        Faults {
            ctx,
            mark,
            rng: Rng::new(name),
            killed: 0,
            finished: 0,
        }
    }

    fn sleeper_bundle(&self) -> Bundle {
        let mut b = self.ctx.bundle();
        b.args(&["sleep", "1000"]);
        b.env(&format!("{MARK_VAR}={}", self.mark));
        b.write();
        b
    }

    /// A hook running `sleep 1000` (with our marker), which never returns.
    fn sleeping_hook(&self) -> Value {
        json!({
            "path": "/bin/sleep",
            "args": ["sleep", "1000"],
            "env": [format!("{MARK_VAR}={}", self.mark)]
        })
    }

    /// Spawns berth with `args` and SIGKILLs it `after` the spawn (if still running).
    fn kill_after(&mut self, args: &[OsString], after: Duration) {
        let start = Instant::now();
        let mut bg = self.ctx.rt_bg(args);
        if let Some(left) = after.checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
        if let Ok(None) = bg.child.try_wait() {
            let _ = bg.child.kill();
            self.killed += 1;
        } else {
            self.finished += 1;
        }
        bg.try_wait(CMD_TIMEOUT)
            .expect("berth did not end after SIGKILL");
    }

    /// Spawns berth with `args`, waits until `trigger` holds (or berth ends), then SIGKILLs
    /// it `after` that.
    fn kill_once(&mut self, args: &[OsString], trigger: impl Fn() -> bool, after: Duration) {
        let mut bg = self.ctx.rt_bg(args);
        let deadline = Instant::now() + CMD_TIMEOUT;
        while !trigger() && matches!(bg.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(50));
        }
        std::thread::sleep(after);
        if let Ok(None) = bg.child.try_wait() {
            let _ = bg.child.kill();
            self.killed += 1;
        } else {
            self.finished += 1;
        }
        bg.try_wait(CMD_TIMEOUT)
            .expect("berth did not end after SIGKILL");
    }

    /// Before the container is on record as created, its process dies with the berth that
    /// was creating it, with no `delete` needed (nothing else would find it without a cgroup).
    #[track_caller]
    fn dies_with_its_creator(&self, id: &str, what: &str) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let left = self.processes(id);
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                let desc: Vec<String> = left.iter().map(|&p| describe_process(p)).collect();
                panic!("{what}: processes outlived the create: {desc:#?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `delete --force ID` must succeed, soon, and leave nothing of the container.
    #[track_caller]
    fn delete_and_check(&self, id: &str, what: &str) {
        let out = self
            .ctx
            .rt_bg(&["delete", "--force", id])
            .try_wait(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("{what}: `delete --force {id}` hung"));
        assert!(out.success(), "{what}: {out}");
        let deadline = Instant::now() + SETTLE;
        loop {
            let left = self.leftovers(id);
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: after `delete --force {id}`, left: {left:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whatever of container `id` is still there.
    fn leftovers(&self, id: &str) -> Vec<String> {
        let mut left = Vec::new();
        if self.ctx.state_dir(id).exists() {
            left.push(format!(
                "state directory {}",
                self.ctx.state_dir(id).display()
            ));
        }
        for pid in self.processes(id) {
            left.push(format!("process {pid}: {}", describe_process(pid)));
        }
        for dir in cgroup_dirs(id) {
            left.push(format!("cgroup {}", dir.display()));
        }
        for m in self.ctx.leaked_mounts() {
            left.push(format!("mount {m}"));
        }
        left
    }

    /// Live processes that are berth's (the harness's marker), the container's (ours), or in
    /// the container's cgroup in any hierarchy.
    fn processes(&self, id: &str) -> Vec<i32> {
        let berth = format!("BERTH_TEST_MARK={}", self.ctx.marker);
        let ours = format!("{MARK_VAR}={}", self.mark);
        let cgroup = format!("/berth/{id}");
        let me = std::process::id() as i32;
        let mut found = Vec::new();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if pid == me || !pid_alive(pid) {
                continue;
            }
            let env = fs::read(e.path().join("environ")).unwrap_or_default();
            let marked = env
                .split(|&b| b == 0)
                .any(|kv| kv == berth.as_bytes() || kv == ours.as_bytes());
            let in_cgroup = fs::read_to_string(e.path().join("cgroup"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.splitn(3, ':').nth(2))
                .any(|p| p == cgroup || p.starts_with(&format!("{cgroup}/")));
            if (marked || in_cgroup) && pid_alive(pid) {
                found.push(pid);
            }
        }
        found
    }

    fn report(&self, test: &str) {
        eprintln!(
            "{test}: {} rounds killed berth part-way, {} found it done",
            self.killed, self.finished
        );
        assert!(self.killed > 0, "{test}: no round caught berth at work");
    }
}

fn describe_process(pid: i32) -> String {
    let ppid = proc_status(&pid.to_string(), "PPid").unwrap_or_default();
    let exe = fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!("{} (exe {exe}, parent {ppid})", cmdline(pid))
}

/// The container's cgroup directory in every hierarchy where it exists (the tests place
/// containers under berth's default parent, `berth/<id>`; cgroup2 is `unified` here or the
/// root itself on a v2-only host).
fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/sys/fs/cgroup/berth").join(id)];
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            dirs.push(e.path().join("berth").join(id));
        }
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn create_args(b: &Bundle, id: &str) -> Vec<OsString> {
    vec![
        "create".into(),
        "--bundle".into(),
        b.path().into(),
        id.into(),
    ]
}

/// How long a whole `create` of `b` takes here (the quickest of three): the kills are spread
/// over it, whatever the build.
fn create_time(f: &Faults, b: &Bundle) -> Duration {
    let mut quickest = Duration::MAX;
    for _ in 0..3 {
        let id = f.ctx.id("t");
        let start = Instant::now();
        f.ctx.rt(&create_args(b, &id)).ok();
        quickest = quickest.min(start.elapsed());
        f.ctx.rt(&["delete", "--force", &id]).ok();
    }
    eprintln!("a create takes {quickest:?} here");
    quickest
}

/// `create` killed at random instants, `rounds` times, with bundle `b`.
fn kill_creates(f: &mut Faults, b: &Bundle, rounds: usize, test: &str) {
    let span = create_time(f, b);
    let mut phases = std::collections::BTreeMap::<&str, usize>::new();
    for round in 0..rounds {
        let id = f.ctx.id("c");
        let what = if round % 2 == 0 {
            let at = f.rng.instant(round / 2, span);
            f.kill_after(&create_args(b, &id), at);
            format!("create killed {at:?} after its start")
        } else {
            // Every other round aims at what follows the first cgroup directory: the process
            // and the rest of the cgroup, where a create has the most to leave.
            let at = Duration::from_micros(f.rng.below(span.as_micros() as u64 / 2 + 1));
            f.kill_once(&create_args(b, &id), || !cgroup_dirs(&id).is_empty(), at);
            format!("create killed {at:?} after its first cgroup directory")
        };
        let phase = phase(&f.ctx, &id);
        *phases.entry(phase).or_default() += 1;
        if phase != "container created" {
            f.dies_with_its_creator(&id, &what);
        }
        f.delete_and_check(&id, &what);
    }
    eprintln!("{test}: what the kills left before delete --force: {phases:?}");
    f.report(test);
}

/// How far a killed create got, from what it left on record.
fn phase(ctx: &Ctx, id: &str) -> &'static str {
    let dir = ctx.state_dir(id);
    match fs::read_to_string(dir.join("state.json")) {
        Ok(text) if text.contains("\"creating\"") => "record of a create under way",
        Ok(_) => "container created",
        Err(_) if dir.exists() => "state directory without a record",
        Err(_) => "nothing",
    }
}

#[test]
fn create_killed_at_any_instant_leaves_nothing() {
    if skip() {
        return;
    }
    let mut f = Faults::new("fcreate");
    let b = f.sleeper_bundle();
    kill_creates(&mut f, &b, 60, "create");
}

/// The general birth path (a time namespace: the cloned process forks once more, and the
/// container process is that second child).
#[test]
fn create_killed_on_the_two_step_path_leaves_nothing() {
    if skip() {
        return;
    }
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        eprintln!("SKIPPED: kernel without time namespaces");
        return;
    }
    if !is_berth() && !features_have_namespace("time") {
        eprintln!("SKIPPED: {} has no time namespace", runtime_name());
        return;
    }
    let mut f = Faults::new("ftwostep");
    let mut b = f.sleeper_bundle();
    b.namespace("time", None);
    b.write();
    kill_creates(&mut f, &b, 20, "create (two-step)");
}

/// Joining another container's pid namespace by path: where the kernel takes procfs `pidns`
/// the cloned process sets the container up out of that namespace's sight and forks into it
/// last (the process that execs is tied to berth again after that fork).
#[test]
fn create_killed_joining_a_pid_namespace_leaves_nothing() {
    if skip() {
        return;
    }
    let mut f = Faults::new("fpidjoin");
    let (_helper, helper_pid) = f.ctx.sleeper("h");
    let mut b = f.sleeper_bundle();
    let path = format!("/proc/{helper_pid}/ns/pid");
    b.remove_namespace("pid").namespace("pid", Some(&path));
    b.write();
    kill_creates(&mut f, &b, 20, "create (joining a pid namespace)");
}

/// A new user namespace: the container process takes new ids part-way, which clears a
/// parent-death signal.
#[test]
fn create_killed_in_a_user_namespace_leaves_nothing() {
    if skip() {
        return;
    }
    if !std::path::Path::new("/proc/self/ns/user").exists() {
        eprintln!("SKIPPED: kernel without user namespaces");
        return;
    }
    let mut f = Faults::new("fuserns");
    let mut b = f.sleeper_bundle();
    host(
        "chown",
        &["-R", "100000:100000", b.rootfs().to_str().unwrap()],
    );
    b.namespace("user", None);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.write();
    kill_creates(&mut f, &b, 20, "create (user namespace)");
}

#[test]
fn run_killed_at_any_instant_leaves_nothing() {
    if skip() {
        return;
    }
    let mut f = Faults::new("frun");
    let b = f.sleeper_bundle();
    let span = create_time(&f, &b);
    for round in 0..30 {
        let id = f.ctx.id("r");
        let args = vec![
            "run".into(),
            "--bundle".into(),
            b.path().into(),
            OsString::from(&id),
        ];
        let what = if round % 2 == 0 {
            let at = f.rng.instant(round / 2, span);
            f.kill_after(&args, at);
            format!("run killed {at:?} after its start")
        } else {
            let at = Duration::from_micros(f.rng.below(span.as_micros() as u64 / 2 + 1));
            f.kill_once(&args, || !cgroup_dirs(&id).is_empty(), at);
            format!("run killed {at:?} after its first cgroup directory")
        };
        if phase(&f.ctx, &id) != "container created" {
            f.dies_with_its_creator(&id, &what);
        }
        f.delete_and_check(&id, &what);
    }
    // A foreground run never finishes by itself here: every round killed it.
    f.report("run");
}

#[test]
fn start_killed_at_any_instant_leaves_nothing() {
    if skip() {
        return;
    }
    let mut f = Faults::new("fstart");
    let b = f.sleeper_bundle();
    for round in 0..25 {
        let id = f.ctx.id("s");
        f.ctx.create(&b, &id);
        let at = Duration::from_micros(f.rng.below(if round % 4 == 3 { 20_000 } else { 6_000 }));
        f.kill_after(&os(&["start", &id]), at);
        f.delete_and_check(&id, &format!("start killed after {at:?}"));
    }
    f.report("start");
}

#[test]
fn exec_killed_at_any_instant_leaves_nothing() {
    if skip() {
        return;
    }
    let mut f = Faults::new("fexec");
    let b = f.sleeper_bundle();
    for round in 0..20 {
        let (id, _) = f.ctx.sleeper_from(&b, "e");
        let at = f.rng.instant(round, Duration::ZERO);
        f.kill_after(&os(&["exec", &id, "sleep", "999"]), at);
        f.delete_and_check(&id, &format!("exec killed after {at:?}"));
    }
    f.report("exec");
}

#[test]
fn delete_killed_at_any_instant_leaves_nothing() {
    if skip() {
        return;
    }
    let mut f = Faults::new("fdelete");
    let b = f.sleeper_bundle();
    for round in 0..20 {
        let (id, _) = f.ctx.sleeper_from(&b, "d");
        // Something besides the init, as a container usually has.
        let exec = f.ctx.rt_bg(&["exec", &id, "sleep", "999"]);
        wait_until("the exec'd process", || {
            f.ctx.rt(&["ps", &id]).stdout.lines().count() > 2
        });
        let at = Duration::from_micros(f.rng.below(if round % 4 == 3 { 20_000 } else { 5_000 }));
        f.kill_after(&os(&["delete", "--force", &id]), at);
        f.delete_and_check(&id, &format!("delete killed after {at:?}"));
        drop(exec);
    }
    f.report("delete");
}

/// Waits until a process carrying our marker runs `sleep 1000` (the stuck hook).
fn wait_for_hook(f: &Faults, id: &str) {
    wait_until("the hook to run", || {
        f.processes(id).iter().any(|&p| cmdline(p) == "sleep 1000")
    });
}

/// A create stuck in a hook that never returns: `delete --force` from elsewhere removes
/// everything, and the stuck create ends (and its hook with it).
fn stuck_create_is_ended_by_delete_force(name: &str, hook_kind: &str) {
    if skip() {
        return;
    }
    let f = Faults::new(name);
    let mut b = f.sleeper_bundle();
    b.add_hook(hook_kind, f.sleeping_hook());
    b.write();
    let id = f.ctx.id("h");
    let create = f.ctx.rt_bg(&create_args(&b, &id));
    wait_for_hook(&f, &id);
    f.delete_and_check(&id, &format!("create stuck in a {hook_kind} hook"));
    let out = create
        .try_wait(Duration::from_secs(10))
        .expect("the stuck create did not end after delete --force");
    assert!(!out.success(), "the stuck create succeeded: {out}");
}

/// Stuck in the container's own set-up: a createContainer hook, run by the container process
/// (an image's /etc/passwd that is a FIFO was another way).
#[test]
fn delete_force_ends_a_create_stuck_in_the_container() {
    stuck_create_is_ended_by_delete_force("fstuckin", "createContainer");
}

/// Stuck in berth itself: a prestart hook, run by berth while the container process waits.
#[test]
fn delete_force_ends_a_create_stuck_in_a_runtime_hook() {
    stuck_create_is_ended_by_delete_force("fstuckrt", "prestart");
}

/// `delete --force` whatever the state: paused (a frozen process cannot die until thawed),
/// with the init gone but an exec'd process left in the cgroup, and an id that never existed.
#[test]
fn delete_force_whatever_the_state() {
    if skip() {
        return;
    }
    let f = Faults::new("fstates");
    let b = f.sleeper_bundle();

    let (id, _) = f.ctx.sleeper_from(&b, "p");
    let _exec = f.ctx.rt_bg(&["exec", "--detach", &id, "sleep", "999"]);
    wait_until("the exec'd process", || {
        f.ctx.rt(&["ps", &id]).stdout.lines().count() > 2
    });
    f.ctx.rt(&["pause", &id]).ok();
    assert_eq!(f.ctx.status(&id), "paused");
    f.delete_and_check(&id, "paused container");

    // The container shares the host's pid namespace, so its init's death does not end the
    // exec'd process: only the cgroup finds it.
    let mut shared = f.sleeper_bundle();
    shared.remove_namespace("pid");
    shared.write();
    let (id, init) = f.ctx.sleeper_from(&shared, "g");
    f.ctx.rt(&["exec", "--detach", &id, "sleep", "999"]).ok();
    wait_until("the exec'd process", || {
        f.ctx.rt(&["ps", &id]).stdout.lines().count() > 2
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the init to die", || !pid_alive(init));
    assert_eq!(f.ctx.status(&id), "stopped");
    f.delete_and_check(&id, "container whose init is gone");

    let never = format!("never-{}", f.mark);
    f.ctx.rt(&["delete", "--force", &never]).ok();
}

/// A create killed while its container process waits on something (a createContainer hook,
/// here): the process and the hook die with it, before any `delete`.
#[test]
fn a_create_killed_while_stuck_takes_its_process_along() {
    if skip() {
        return;
    }
    let f = Faults::new("fstuckkill");
    let mut b = f.sleeper_bundle();
    b.add_hook("createContainer", f.sleeping_hook());
    b.write();
    let id = f.ctx.id("h");
    let mut create = f.ctx.rt_bg(&create_args(&b, &id));
    wait_for_hook(&f, &id);
    create.child.kill().unwrap();
    create.try_wait(CMD_TIMEOUT).unwrap();
    f.dies_with_its_creator(&id, "create killed while its hook ran");
    f.delete_and_check(&id, "create killed while its hook ran");
}
