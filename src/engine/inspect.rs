//! A container as Docker shows it: `inspect`'s JSON and the fields of a `ps` row.

use super::record::{short_id, Container, Engine, Status};
use crate::image::time::parse_rfc3339;
use serde_json::{json, Map, Value};

/// Docker's `inspect` document of a container.
pub fn inspect(engine: &Engine, c: &Container) -> Value {
    let r = &c.record;
    let st = &c.state;
    let status = c.status(engine);
    let args: Vec<String> = r
        .config
        .entrypoint
        .iter()
        .chain(&r.config.cmd)
        .cloned()
        .collect();
    let mut state = json!({
        "Status": status.as_str(),
        "Running": matches!(status, Status::Running | Status::Paused | Status::Restarting),
        "Paused": status == Status::Paused,
        "Restarting": status == Status::Restarting,
        "OOMKilled": st.oom_killed,
        "Dead": status == Status::Dead,
        "Pid": if status.is_active() { st.pid } else { 0 },
        "ExitCode": c.exit_code(engine),
        "Error": st.error,
        "StartedAt": or_zero(&st.started_at),
        "FinishedAt": or_zero(&st.finished_at),
    });
    if let Some(h) = &st.health {
        state["Health"] = serde_json::to_value(h).unwrap_or(Value::Null);
    }
    let mut host_config = serde_json::to_value(&r.host_config).unwrap_or_else(|_| json!({}));
    for part in r.options.values() {
        if let (Some(hc), Some(extra)) = (
            host_config.as_object_mut(),
            part.get("HostConfig").and_then(Value::as_object),
        ) {
            for (k, v) in extra {
                hc.insert(k.clone(), v.clone());
            }
        }
    }
    let upper = c.upper_dir();
    let (networks, legacy) = crate::network::endpoints::inspect_networks(engine, c);
    json!({
        "Id": r.id,
        "Created": r.created,
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.get(1..).unwrap_or(&[]),
        "State": state,
        "Image": r.image,
        "ResolvConfPath": c.dir.join("resolv.conf"),
        "HostnamePath": c.dir.join("hostname"),
        "HostsPath": c.dir.join("hosts"),
        "LogPath": if r.host_config.log_config.kind == "none" { Value::from("") } else { json!(c.log_path()) },
        "Name": format!("/{}", r.name),
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": Value::Null,
        "HostConfig": host_config,
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "MergedDir": c.rootfs(),
                "UpperDir": upper,
                "WorkDir": c.bundle_dir().join(".berth").join("work"),
            }
        },
        "Mounts": r.mounts,
        "Config": r.config,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "Ports": crate::network::publish::network_ports(engine, c),
            "SandboxKey": "",
            "Gateway": legacy["Gateway"],
            "IPAddress": legacy["IPAddress"],
            "IPPrefixLen": legacy["IPPrefixLen"],
            "MacAddress": legacy["MacAddress"],
            "Networks": networks,
        },
    })
}

fn or_zero(t: &str) -> &str {
    if t.is_empty() {
        super::record::ZERO_TIME
    } else {
        t
    }
}

/// The fields of a `ps` row, under Docker's `--format` names (ID, Image, Command, ...).
pub fn ps_row(engine: &Engine, c: &Container, no_trunc: bool) -> Map<String, Value> {
    let r = &c.record;
    let now = crate::image::time::now_secs();
    let created = parse_rfc3339(&r.created).unwrap_or(now);
    let command: Vec<String> = r
        .config
        .entrypoint
        .iter()
        .chain(&r.config.cmd)
        .cloned()
        .collect();
    // Docker's list shows the arguments that have spaces in single quotes.
    let command = command
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if i > 0 && a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let command = if no_trunc {
        format!("\"{command}\"")
    } else {
        format!("\"{}\"", truncate(&command, 20))
    };
    let status = c.status(engine);
    let labels: Vec<String> = r
        .config
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut m = Map::new();
    let id = if no_trunc {
        r.id.clone()
    } else {
        short_id(&r.id).to_string()
    };
    m.insert("ID".into(), id.into());
    m.insert("Image".into(), r.config.image.clone().into());
    m.insert("Command".into(), command.into());
    m.insert(
        "CreatedAt".into(),
        crate::image::time::format_rfc3339(created).into(),
    );
    m.insert(
        "RunningFor".into(),
        format!("{} ago", super::humanize::human_duration(now - created)).into(),
    );
    m.insert("Status".into(), status_text(engine, c).into());
    m.insert("State".into(), status.as_str().into());
    m.insert("Names".into(), r.name.clone().into());
    m.insert(
        "Ports".into(),
        crate::network::publish::ports_column(engine, c).into(),
    );
    m.insert("Labels".into(), labels.join(",").into());
    m.insert("Mounts".into(), "".into());
    m.insert("Networks".into(), r.host_config.network_mode.clone().into());
    m
}

/// Cuts `s` to `n` characters with Docker's ellipsis.
fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let cut: String = s.chars().take(n - 1).collect();
        format!("{cut}…")
    }
}

/// `ps`'s STATUS column: "Up 3 seconds", "Exited (0) 2 minutes ago", "Created", ...
pub fn status_text(engine: &Engine, c: &Container) -> String {
    use super::humanize::{parse_timestamp, status, Health, StateSummary};
    let st = &c.state;
    let s = c.status(engine);
    let time = |t: &str| {
        (t != super::record::ZERO_TIME)
            .then(|| parse_timestamp(t))
            .flatten()
    };
    let summary = StateSummary {
        running: s.is_active(),
        paused: s == Status::Paused,
        restarting: s == Status::Restarting,
        removal_in_progress: s == Status::Removing,
        dead: s == Status::Dead,
        exit_code: c.exit_code(engine),
        started_at: time(&st.started_at),
        // Exited with no time recorded (its monitor died): shown as just now.
        finished_at: time(&st.finished_at)
            .or_else(|| (s == Status::Exited).then(std::time::SystemTime::now)),
        health: match st.health.as_ref().map(|h| h.status.as_str()) {
            Some("starting") => Some(Health::Starting),
            Some("healthy") => Some(Health::Healthy),
            Some("unhealthy") => Some(Health::Unhealthy),
            _ => None,
        },
    };
    status(&summary, std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    #[test]
    fn commands_are_cut_as_docker_cuts_them() {
        assert_eq!(super::truncate("sleep 1000", 20), "sleep 1000");
        assert_eq!(
            super::truncate("sh -c 'while true; do date; done'", 20),
            "sh -c 'while true; …"
        );
    }
}
