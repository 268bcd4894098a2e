//! The presenting commands' command-line side: `stats`, `top`, and the `--format` paths of
//! `ps` and `inspect` (the templates are [`super::template`], the wording
//! [`super::humanize`], the numbers [`super::stats`] and [`super::top`]).

use super::humanize::ps_size;
use super::record::{short_id, Container, Engine, Status};
use super::stats::{self, Target};
use super::template::{format_rows, Template, PS_HEADERS, PS_SIZE_COLUMN, PS_TABLE};
use anyhow::{bail, Context, Result};
use clap::Args;
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    all: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a Go
    /// template.
    #[arg(long)]
    format: Option<String>,
    /// Disable streaming stats and only pull the first result.
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output.
    #[arg(long)]
    no_trunc: bool,
    containers: Vec<String>,
}

#[derive(Args)]
pub struct TopArgs {
    container: String,
    /// [ps OPTIONS]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_options: Vec<String>,
}

/// `stats [OPTIONS] [CONTAINER...]`.
pub fn stats_cmd(engine: &Engine, a: &StatsArgs) -> Result<i32> {
    // Named containers must exist now; listed ones are found again before each table.
    let mut named = Vec::new();
    let mut missing = Vec::new();
    for name in &a.containers {
        match engine.lookup(name) {
            Ok(c) => named.push((name.clone(), c.id().to_string())),
            Err(e) => missing.push(format!("{e:#}")),
        }
    }
    if !missing.is_empty() {
        for m in missing {
            eprintln!("Error response from daemon: {m}");
        }
        return Ok(1);
    }
    let list_all = a.containers.is_empty();
    let show_all = a.all;
    let mut targets = || -> Result<Vec<Target>> {
        if list_all {
            let mut list = engine.all()?;
            // Docker lists the newest first.
            list.sort_by(|x, y| y.record.created.cmp(&x.record.created));
            Ok(list
                .iter()
                .filter(|c| show_all || c.status(engine).is_active())
                .map(|c| target(engine, c, short_id(c.id())))
                .collect())
        } else {
            Ok(named
                .iter()
                .filter_map(|(name, id)| engine.open(id).ok().map(|c| target(engine, &c, name)))
                .collect())
        }
    };
    let opts = stats::Options {
        format: a.format.as_deref().unwrap_or(""),
        no_stream: a.no_stream,
        no_trunc: a.no_trunc,
        interval: stats::INTERVAL,
    };
    match stats::run(&mut targets, &opts, &mut std::io::stdout().lock()) {
        Ok(()) => Ok(0),
        // The reader went away (`stats | head`): done.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

fn target(engine: &Engine, c: &Container, shown_as: &str) -> Target {
    Target {
        container: shown_as.to_string(),
        id: c.id().to_string(),
        name: c.record.name.clone(),
        runtime_root: engine.state_root.clone(),
        runtime_id: c.id().to_string(),
    }
}

/// `top CONTAINER [ps OPTIONS]`.
pub fn top_cmd(engine: &Engine, a: &TopArgs) -> Result<i32> {
    let result = (|| -> Result<String> {
        let c = engine.lookup(&a.container)?;
        match c.status(engine) {
            Status::Running | Status::Paused => {}
            Status::Restarting => bail!(
                "Container {} is restarting, wait until the container is running",
                c.id()
            ),
            _ => bail!("container {} is not running", c.id()),
        }
        let pids = crate::runtime::container::pids(&engine.runtime_globals(), c.id())?;
        let top = super::top::top(&pids, &a.ps_options.join(" "))?;
        Ok(super::top::format_top(&top))
    })();
    match result {
        Ok(table) => {
            std::io::stdout().lock().write_all(table.as_bytes())?;
            Ok(0)
        }
        Err(e) => {
            eprintln!("Error response from daemon: {e:#}");
            Ok(1)
        }
    }
}

/// `ps` rows printed as `--format` asks ("" is Docker's table, with SIZE after `-s`); sizes
/// are measured only when shown, as Docker does.
pub fn ps_output(
    engine: &Engine,
    list: &[Container],
    format: Option<&str>,
    size: bool,
    no_trunc: bool,
) -> Result<String> {
    let format = format.unwrap_or("");
    let with_size = size || format.contains(".Size");
    let store = if with_size {
        crate::image::store::Store::open(&engine.data_root).ok()
    } else {
        None
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|c| {
            let mut row: Map<String, Value> = super::inspect::ps_row(engine, c, no_trunc);
            complete_ps_row(&mut row, c);
            if with_size {
                let (rw, root_fs) = container_sizes(store.as_ref(), c);
                row.insert("Size".into(), ps_size(rw, root_fs).into());
            }
            Value::Object(row)
        })
        .collect();
    let default = if size {
        format!("{PS_TABLE}{PS_SIZE_COLUMN}")
    } else {
        PS_TABLE.to_string()
    };
    format_rows(format, &default, PS_HEADERS, &rows)
}

/// The fields of Docker's `ps` row that the engine's row leaves to this module, in Docker's
/// forms: CreatedAt as Go prints a time, LocalVolumes (the local volumes mounted), Size ("0B"
/// until measured) and Platform (null, as the Docker CLI prints it for a daemon that sends
/// none).
fn complete_ps_row(row: &mut Map<String, Value>, c: &Container) {
    if let Some(t) = super::humanize::parse_timestamp(&c.record.created) {
        row.insert("CreatedAt".into(), super::humanize::created_at(t).into());
    }
    let local_volumes = c
        .record
        .mounts
        .iter()
        .filter(|m| m["Type"] == "volume" && m["Driver"].as_str().is_none_or(|d| d == "local"))
        .count();
    row.insert("LocalVolumes".into(), local_volumes.to_string().into());
    row.insert("Size".into(), "0B".into());
    row.insert("Platform".into(), Value::Null);
}

/// The writable layer's size and the whole rootfs's (image layers plus writable layer), as
/// Docker counts them: regular files, symlinks and the like, each inode once.
pub fn container_sizes(store: Option<&crate::image::store::Store>, c: &Container) -> (u64, u64) {
    let rw = tree_size(&c.upper_dir()).unwrap_or(0);
    let lowers = store.and_then(|s| {
        let manifest = crate::image::Digest::parse(&c.record.manifest).ok()?;
        s.snapshot_dirs(&manifest).ok()
    });
    let image: u64 = lowers
        .iter()
        .flatten()
        .map(|d| tree_size(d).unwrap_or(0))
        .sum();
    (rw, if image > 0 { image + rw } else { 0 })
}

/// The apparent size of everything under `dir` but directories, hard links counted once.
/// Walked through directory descriptors opened without following symlinks, so a container
/// that swaps a directory for a symlink cannot send the walk outside its tree.
pub fn tree_size(dir: &Path) -> Result<u64> {
    let root = Dir::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", dir.display()))?;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![root];
    while let Some(mut d) = stack.pop() {
        let names: Vec<std::ffi::CString> = d
            .iter()
            .flatten()
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        let mut subdirs = Vec::new();
        for name in names {
            let Ok(st) = fstatat(d.as_fd(), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                continue;
            };
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                subdirs.push(name);
                continue;
            }
            if st.st_size > 0 && seen.insert((st.st_dev, st.st_ino)) {
                total += st.st_size as u64;
            }
        }
        for name in subdirs {
            if let Ok(sub) = Dir::openat(
                d.as_fd(),
                name.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                stack.push(sub);
            }
        }
    }
    Ok(total)
}

/// `inspect -f`: parses the template first (a bad one is exit code 64, as Docker's), then
/// prints it run on each document, a newline after each.
pub fn inspect_format(format: &str, docs: &[Value], out: &mut dyn Write) -> Result<i32> {
    let tmpl = match Template::parse(format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(64);
        }
    };
    for d in docs {
        let text = tmpl
            .render(&typed_view(d))
            .map_err(|e| anyhow::anyhow!("template parsing error: {e:#}"))?;
        writeln!(out, "{text}")?;
    }
    Ok(0)
}

/// The inspect document as Docker's templates see it: Docker runs them on its Go structs first,
/// where a container without a health check has `State.Health` (left out of the JSON) as a nil
/// pointer, which prints `<nil>` and is false in an `if`.
fn typed_view(doc: &Value) -> std::borrow::Cow<'_, Value> {
    match doc.get("State").and_then(Value::as_object) {
        Some(state) if !state.contains_key("Health") => {
            let mut doc = doc.clone();
            doc["State"]["Health"] = Value::Null;
            std::borrow::Cow::Owned(doc)
        }
        _ => std::borrow::Cow::Borrowed(doc),
    }
}

/// `KEY=VALUE` arguments (a bare `KEY` has an empty value), as `-l` and `-o` take them.
pub fn key_values(args: &[String]) -> std::collections::BTreeMap<String, String> {
    args.iter()
        .map(|a| {
            let (k, v) = a.split_once('=').unwrap_or((a, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Docker's JSON output: 4-space indented.
pub fn indented_json<T: serde::Serialize>(v: &T) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_size_counts_files_and_links_once_and_never_follows_symlinks() {
        let dir = std::env::temp_dir().join(format!("berth-tree-size-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/f"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.join("a/b/g"), vec![0u8; 24]).unwrap();
        std::fs::hard_link(dir.join("a/f"), dir.join("a/b/f2")).unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        // A symlink to a big tree outside counts as its own length, and is not walked.
        std::os::unix::fs::symlink("/usr", dir.join("out")).unwrap();
        assert_eq!(tree_size(&dir).unwrap(), 1000 + 24 + "/usr".len() as u64);
        assert!(tree_size(&dir.join("out")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn inspect_format_exit_codes() {
        let docs = [serde_json::json!({"Name": "/a", "State": {"Status": "running"}})];
        let mut out = Vec::new();
        assert_eq!(
            inspect_format("{{.Name}} {{.State.Status}}", &docs, &mut out).unwrap(),
            0
        );
        assert_eq!(String::from_utf8(out).unwrap(), "/a running\n");
        let mut out = Vec::new();
        let t = "{{.State.Health}} {{json .State.Health}} {{if .State.Health}}h{{else}}none{{end}}";
        assert_eq!(inspect_format(t, &docs, &mut out).unwrap(), 0);
        assert_eq!(String::from_utf8(out).unwrap(), "<nil> null none\n");
        let mut out = Vec::new();
        assert_eq!(inspect_format("{{.Name", &docs, &mut out).unwrap(), 64);
        assert!(out.is_empty());
    }
}
