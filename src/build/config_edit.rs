//! The instructions that change only the image config (ENV, CMD, ENTRYPOINT, USER, EXPOSE,
//! VOLUME, LABEL, STOPSIGNAL, HEALTHCHECK, ONBUILD, SHELL, MAINTAINER, and WORKDIR's path), as
//! Docker applies them, on already expanded values; and the history text Docker writes.

use super::dockerfile::ast::Command;
use super::image_state::ImageState;
use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The shell of shell-form commands unless SHELL says otherwise.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into()]
}

/// The stage's SHELL.
pub fn shell_of(state: &ImageState) -> Vec<String> {
    state
        .config
        .pointer("/config/Shell")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(default_shell)
}

/// A command as the config holds it: the shell form through the stage's SHELL.
pub fn command_args(state: &ImageState, c: &Command) -> Vec<String> {
    match c {
        Command::Exec(args) => args.clone(),
        Command::Shell(s) => {
            let mut a = shell_of(state);
            a.push(s.clone());
            a
        }
    }
}

/// Docker's `created_by` for an instruction that adds no layer: `/bin/sh -c #(nop)  TEXT`.
pub fn nop(text: &str) -> String {
    format!("/bin/sh -c #(nop)  {text}")
}

/// Sets `NAME=value` in an environment list, replacing an earlier value in place.
pub fn set_env(env: &mut Vec<String>, name: &str, value: &str) {
    let entry = format!("{name}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == name)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

pub fn env(state: &mut ImageState, pairs: &[(String, String)]) {
    let c = state.container_config_mut();
    let mut env = strings(c.get("Env"));
    for (k, v) in pairs {
        set_env(&mut env, k, v);
    }
    c.insert("Env".into(), json!(env));
}

/// CMD; `cmd_set` notes that the stage set one (ENTRYPOINT then keeps it).
pub fn cmd(state: &mut ImageState, c: &Command, cmd_set: &mut bool) {
    let args = command_args(state, c);
    state
        .container_config_mut()
        .insert("Cmd".into(), json!(args));
    *cmd_set = true;
}

/// ENTRYPOINT: replaces the entrypoint, and drops a Cmd the stage did not set itself (the
/// base image's), as Docker does.
pub fn entrypoint(state: &mut ImageState, c: &Command, cmd_set: bool) {
    let args = command_args(state, c);
    let cc = state.container_config_mut();
    cc.insert("Entrypoint".into(), json!(args));
    if !cmd_set {
        cc.insert("Cmd".into(), Value::Null);
    }
}

/// WORKDIR's new path: absolute, or relative to the current one; cleaned.
pub fn workdir_path(state: &ImageState, dir: &str) -> String {
    let current = state
        .config
        .pointer("/config/WorkingDir")
        .and_then(Value::as_str)
        .unwrap_or("");
    let joined = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{}/{dir}", if current.is_empty() { "/" } else { current })
    };
    clean_path(&joined)
}

/// Go's path.Clean for absolute paths.
pub fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

pub fn workdir(state: &mut ImageState, path: &str) {
    state
        .container_config_mut()
        .insert("WorkingDir".into(), json!(path));
}

pub fn user(state: &mut ImageState, user: &str) {
    state
        .container_config_mut()
        .insert("User".into(), json!(user));
}

fn map_member<'a>(c: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let m = c.entry(key).or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().expect("made an object above")
}

/// EXPOSE: `80`, `80/tcp`, `53/udp`, ranges `8000-8002`; the protocol defaults to tcp.
pub fn expose(state: &mut ImageState, ports: &[String]) -> Result<()> {
    let mut keys = Vec::new();
    for p in ports {
        let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
        let proto = proto.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            bail!("invalid proto: {proto}");
        }
        let (lo, hi) = port.split_once('-').unwrap_or((port, port));
        let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) else {
            bail!("invalid containerPort: {port}");
        };
        if hi < lo {
            bail!("invalid containerPort: {port}");
        }
        for n in lo..=hi {
            keys.push(format!("{n}/{proto}"));
        }
    }
    let m = map_member(state.container_config_mut(), "ExposedPorts");
    for k in keys {
        m.insert(k, json!({}));
    }
    Ok(())
}

pub fn volume(state: &mut ImageState, paths: &[String]) -> Result<()> {
    let m = map_member(state.container_config_mut(), "Volumes");
    for p in paths {
        if p.trim().is_empty() {
            bail!("VOLUME specified can not be an empty string");
        }
        m.insert(p.clone(), json!({}));
    }
    Ok(())
}

pub fn label(state: &mut ImageState, pairs: &[(String, String)]) {
    let m = map_member(state.container_config_mut(), "Labels");
    for (k, v) in pairs {
        m.insert(k.clone(), json!(v));
    }
}

pub fn stop_signal(state: &mut ImageState, sig: &str) -> Result<()> {
    crate::engine::create::parse_signal(sig)
        .map_err(|_| anyhow::anyhow!("Invalid signal: {sig}"))?;
    state
        .container_config_mut()
        .insert("StopSignal".into(), json!(sig));
    Ok(())
}

/// HEALTHCHECK: Docker's `Healthcheck` object (durations in nanoseconds, CMD-SHELL for the
/// shell form, `["NONE"]` to disable).
pub fn healthcheck(state: &mut ImageState, h: &super::dockerfile::ast::Healthcheck) {
    use super::dockerfile::ast::Healthcheck;
    let value = match h {
        Healthcheck::Disable => json!({"Test": ["NONE"]}),
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test: Vec<String> = match test {
                Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                Command::Exec(a) => std::iter::once("CMD".to_string())
                    .chain(a.iter().cloned())
                    .collect(),
            };
            let mut m = Map::new();
            m.insert("Test".into(), json!(test));
            let nanos = |d: &Option<Duration>| d.map(|d| d.as_nanos() as u64);
            for (k, v) in [
                ("Interval", nanos(interval)),
                ("Timeout", nanos(timeout)),
                ("StartPeriod", nanos(start_period)),
                ("StartInterval", nanos(start_interval)),
            ] {
                if let Some(v) = v.filter(|v| *v > 0) {
                    m.insert(k.into(), json!(v));
                }
            }
            if let Some(r) = retries.filter(|r| *r > 0) {
                m.insert("Retries".into(), json!(r));
            }
            Value::Object(m)
        }
    };
    state
        .container_config_mut()
        .insert("Healthcheck".into(), value);
}

/// ONBUILD: the trigger's text, kept for images built FROM this one.
pub fn onbuild(state: &mut ImageState, trigger: &str) {
    let cc = state.container_config_mut();
    let mut list = strings(cc.get("OnBuild"));
    list.push(trigger.to_string());
    cc.insert("OnBuild".into(), json!(list));
}

/// The triggers of a base image (then cleared: they run once, in the image built FROM it).
pub fn take_onbuild(state: &mut ImageState) -> Vec<String> {
    let cc = state.container_config_mut();
    let list = strings(cc.get("OnBuild"));
    cc.remove("OnBuild");
    list
}

pub fn shell(state: &mut ImageState, shell: &[String]) -> Result<()> {
    if shell.is_empty() {
        bail!("SHELL requires at least one argument");
    }
    state
        .container_config_mut()
        .insert("Shell".into(), json!(shell));
    Ok(())
}

pub fn maintainer(state: &mut ImageState, who: &str) {
    if let Some(root) = state.config.as_object_mut() {
        root.insert("author".into(), json!(who));
    }
}

/// `--label` of the command line, applied to the final image.
pub fn labels_from_cli(state: &mut ImageState, labels: &[(String, String)]) {
    label(state, labels);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(s: &ImageState) -> &Value {
        &s.config["config"]
    }

    #[test]
    fn env_replaces_in_place_and_appends() {
        let mut s = ImageState::scratch();
        env(
            &mut s,
            &[("A".into(), "1".into()), ("B".into(), "2".into())],
        );
        env(
            &mut s,
            &[("A".into(), "3".into()), ("PATH".into(), "/bin".into())],
        );
        assert_eq!(cc(&s)["Env"], json!(["PATH=/bin", "A=3", "B=2"]));
    }

    #[test]
    fn entrypoint_resets_a_base_cmd_but_not_one_of_the_stage() {
        let mut s = ImageState::scratch();
        s.container_config_mut().insert("Cmd".into(), json!(["sh"]));
        entrypoint(&mut s, &Command::Exec(vec!["/app".into()]), false);
        assert_eq!(cc(&s)["Cmd"], Value::Null);
        let mut set = false;
        cmd(&mut s, &Command::Shell("run it".into()), &mut set);
        assert!(set);
        entrypoint(&mut s, &Command::Exec(vec!["/app2".into()]), set);
        assert_eq!(cc(&s)["Cmd"], json!(["/bin/sh", "-c", "run it"]));
        assert_eq!(cc(&s)["Entrypoint"], json!(["/app2"]));
    }

    #[test]
    fn shell_changes_the_shell_form() {
        let mut s = ImageState::scratch();
        shell(&mut s, &["/bin/bash".into(), "-eux".into(), "-c".into()]).unwrap();
        let mut set = false;
        cmd(&mut s, &Command::Shell("echo hi".into()), &mut set);
        assert_eq!(cc(&s)["Cmd"], json!(["/bin/bash", "-eux", "-c", "echo hi"]));
        assert!(shell(&mut s, &[]).is_err());
    }

    #[test]
    fn workdir_is_relative_to_the_last() {
        let mut s = ImageState::scratch();
        assert_eq!(workdir_path(&s, "app"), "/app");
        workdir(&mut s, "/srv/a");
        assert_eq!(workdir_path(&s, "../b/./c"), "/srv/b/c");
        assert_eq!(workdir_path(&s, "/x//y/"), "/x/y");
    }

    #[test]
    fn expose_volume_label_stopsignal() {
        let mut s = ImageState::scratch();
        expose(&mut s, &["80".into(), "53/udp".into(), "8000-8001".into()]).unwrap();
        assert_eq!(
            cc(&s)["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}})
        );
        assert!(expose(&mut s, &["x".into()]).is_err());
        assert!(expose(&mut s, &["80/foo".into()]).is_err());
        volume(&mut s, &["/data".into()]).unwrap();
        assert_eq!(cc(&s)["Volumes"], json!({"/data": {}}));
        label(&mut s, &[("a".into(), "b c".into())]);
        assert_eq!(cc(&s)["Labels"], json!({"a": "b c"}));
        stop_signal(&mut s, "SIGQUIT").unwrap();
        assert_eq!(cc(&s)["StopSignal"], json!("SIGQUIT"));
        assert!(stop_signal(&mut s, "SIGNOPE").is_err());
    }

    #[test]
    fn healthcheck_onbuild_maintainer() {
        use crate::build::dockerfile::ast::Healthcheck;
        let mut s = ImageState::scratch();
        healthcheck(
            &mut s,
            &Healthcheck::Check {
                test: Command::Shell("wget -q localhost".into()),
                interval: Some(Duration::from_secs(5)),
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: Some(3),
            },
        );
        assert_eq!(
            cc(&s)["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 5_000_000_000u64, "Retries": 3})
        );
        healthcheck(&mut s, &Healthcheck::Disable);
        assert_eq!(cc(&s)["Healthcheck"], json!({"Test": ["NONE"]}));
        onbuild(&mut s, "RUN echo hi");
        assert_eq!(take_onbuild(&mut s), vec!["RUN echo hi".to_string()]);
        assert!(take_onbuild(&mut s).is_empty());
        maintainer(&mut s, "me");
        assert_eq!(s.config["author"], json!("me"));
    }
}
