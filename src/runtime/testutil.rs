//! Test support shared by the unit tests of the runtime modules.

/// Run `body` in a new process, a copy of this test binary that runs only `test_name`, and
/// return what it reported (or its error). The test that calls this must pass its own name.
///
/// Not a plain fork: a fork of the multi-threaded test harness can inherit a lock that
/// another test thread held at that moment (anyhow's backtrace capture takes one) and hang.
pub fn in_child_process(
    module_path: &str,
    test_name: &str,
    body: impl FnOnce() -> anyhow::Result<String>,
) -> Result<String, String> {
    const CHILD_ENV: &str = "BERTH_TEST_CHILD";
    const START: &str = "\n--- child report start ---\n";
    const END: &str = "\n--- child report end ---\n";
    // libtest names tests by module path without the crate name.
    let module = module_path.split_once("::").map_or("", |(_, rest)| rest);
    let full_name = format!("{module}::{test_name}");
    if std::env::var(CHILD_ENV).as_deref() == Ok(full_name.as_str()) {
        use std::io::Write;
        let report = match body() {
            Ok(text) => format!("ok\n{text}"),
            Err(e) => format!("err\n{e:#}"),
        };
        print!("{START}{report}{END}");
        let _ = std::io::stdout().flush();
        // Leave before the test's parent-side assertions run in the child.
        std::process::exit(0);
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &full_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &full_name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout
        .split_once(START)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(report, _)| report.to_string())
        .ok_or_else(|| {
            format!(
                "child reported nothing; stdout: {stdout}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    match report.split_once('\n') {
        Some(("ok", text)) => Ok(text.to_string()),
        Some((_, error)) => Err(error.to_string()),
        None => Err(format!("malformed child report {report:?}")),
    }
}

/// In a test's child process: a mount namespace of its own, private, so that what the test
/// mounts neither reaches the host nor receives the host's mounts.
pub fn private_mount_namespace() -> anyhow::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    Ok(())
}
