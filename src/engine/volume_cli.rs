//! `berth volume create|ls|inspect|rm|prune`, with Docker's flags, output and errors.

use super::mounts::container_exists;
use super::present::{indented_json, key_values};
use super::record::Engine;
use super::template;
use super::volume::{human_size, Volume, VolumeFilter, VolumeStore};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::collections::HashMap;
use std::io::{BufRead, Write};

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes.
    Inspect(InspectArgs),
    /// Remove one or more volumes.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Remove unused local volumes.
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Specify volume driver name.
    #[arg(short, long, default_value = "local")]
    driver: String,
    /// Set metadata for a volume.
    #[arg(short, long)]
    label: Vec<String>,
    /// Specify volume name.
    #[arg(long)]
    name: Option<String>,
    /// Set driver specific options.
    #[arg(short, long)]
    opt: Vec<String>,
    volume: Option<String>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display volume names.
    #[arg(short, long)]
    quiet: bool,
    /// Provide filter values (e.g. "dangling=true").
    #[arg(short, long)]
    filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE').
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template.
    #[arg(short, long)]
    format: Option<String>,
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones.
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "label=<label>").
    #[arg(long)]
    filter: Vec<String>,
}

/// An error Docker's daemon would have given (the CLI prints it after
/// `Error response from daemon: `).
#[derive(Debug)]
struct DaemonError(anyhow::Error);

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for DaemonError {}

fn daemon<T>(r: Result<T>) -> Result<T> {
    r.map_err(|e| DaemonError(e).into())
}

/// Runs a volume command; returns the exit code. Errors are printed as Docker's CLI prints
/// them; those of single volumes make the code 1 and the others go on.
pub fn run(engine: &Engine, cmd: VolumeCommand) -> Result<i32> {
    match run_inner(engine, cmd) {
        Ok(code) => Ok(code),
        Err(e) if e.downcast_ref::<DaemonError>().is_some() => {
            eprintln!("Error response from daemon: {e:#}");
            Ok(1)
        }
        // The CLI's own errors come bare, as Docker's.
        Err(e) => {
            eprintln!("{e:#}");
            Ok(1)
        }
    }
}

fn run_inner(engine: &Engine, cmd: VolumeCommand) -> Result<i32> {
    let store = VolumeStore::open(&engine.data_root)?;
    let exists = container_exists(engine);
    let out = &mut std::io::stdout().lock();
    match cmd {
        VolumeCommand::Create(a) => {
            let name = match (&a.name, &a.volume) {
                (Some(_), Some(_)) => bail!(
                    "conflicting options: cannot specify a volume-name through both --name and \
                     as a positional arg"
                ),
                (n, v) => n.clone().or(v.clone()),
            };
            if a.driver != "local" {
                let op = match &name {
                    Some(n) => format!("create {n}"),
                    None => "create".into(),
                };
                return daemon(Err(anyhow::anyhow!(
                    "{op}: error looking up volume plugin {0}: plugin \"{0}\" not found",
                    a.driver
                )));
            }
            let labels = key_values(&a.label);
            let options = key_values(&a.opt);
            let v = daemon(store.create(name.as_deref(), &labels, &options))?;
            writeln!(out, "{}", v.name)?;
            Ok(0)
        }
        VolumeCommand::Ls(a) => {
            let filter = daemon(VolumeFilter::parse(&a.filter))?;
            let list = store.list_filtered(&filter, &exists)?;
            if a.quiet {
                for v in &list {
                    writeln!(out, "{}", v.name)?;
                }
                return Ok(0);
            }
            let format = a.format.as_deref().unwrap_or("table");
            write!(out, "{}", format_list(&list, format)?)?;
            Ok(0)
        }
        VolumeCommand::Inspect(a) => {
            let mut found = Vec::new();
            let mut code = 0;
            for name in &a.volumes {
                match store.get(name) {
                    Ok(v) => found.push(v),
                    Err(e) => {
                        eprintln!("Error response from daemon: {e:#}");
                        code = 1;
                    }
                }
            }
            match a.format.as_deref() {
                Some(f) if f != "json" => {
                    for v in &found {
                        let data = serde_json::to_value(v)?;
                        writeln!(out, "{}", template::render(&unescape(f), &data)?)?;
                    }
                }
                // Docker's CLI prints the array even when empty (`[]`), errors or not.
                _ => writeln!(out, "{}", indented_json(&found)?)?,
            }
            Ok(code)
        }
        VolumeCommand::Rm(a) => {
            let mut code = 0;
            for name in &a.volumes {
                match store.remove(name, a.force, &exists) {
                    Ok(()) => writeln!(out, "{name}")?,
                    Err(e) => {
                        eprintln!("Error response from daemon: {e:#}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        VolumeCommand::Prune(a) => {
            let filter = daemon(VolumeFilter::parse(&a.filter))?;
            if !a.force {
                let what = if a.all { "all" } else { "anonymous" };
                write!(
                    out,
                    "WARNING! This will remove {what} local volumes not used by at least one \
                     container.\nAre you sure you want to continue? [y/N] "
                )?;
                out.flush()?;
                let mut answer = String::new();
                std::io::stdin().lock().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y") {
                    return Ok(0);
                }
            }
            let report = store.prune(a.all, &filter, &exists)?;
            // A blank line after the list, none without one: Docker's CLI.
            if !report.deleted.is_empty() {
                writeln!(out, "Deleted Volumes:")?;
                for name in &report.deleted {
                    writeln!(out, "{name}")?;
                }
                writeln!(out)?;
            }
            writeln!(
                out,
                "Total reclaimed space: {}",
                human_size(report.reclaimed_bytes)
            )?;
            Ok(0)
        }
    }
}

/// The fields `volume ls --format` offers, as Docker's volume formatter names them.
fn list_row(v: &Volume) -> HashMap<String, String> {
    let labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    HashMap::from([
        ("Name".into(), v.name.clone()),
        ("Driver".into(), v.driver.clone()),
        ("Scope".into(), v.scope.clone()),
        ("Mountpoint".into(), v.mountpoint.display().to_string()),
        ("Labels".into(), labels.join(",")),
        ("Links".into(), "N/A".into()),
        ("Size".into(), "N/A".into()),
        ("Group".into(), "N/A".into()),
        ("Availability".into(), "N/A".into()),
        ("Status".into(), "N/A".into()),
    ])
}

/// `\t` and `\n` typed in a format mean tab and newline, as in Docker's CLI.
fn unescape(f: &str) -> String {
    f.replace("\\t", "\t").replace("\\n", "\n")
}

/// `volume ls` output for `--format` (`table [TEMPLATE]`, `json`, or a template).
pub fn format_list(list: &[Volume], format: &str) -> Result<String> {
    let rows: Vec<serde_json::Value> = list
        .iter()
        .map(|v| serde_json::to_value(list_row(v)))
        .collect::<std::result::Result<_, _>>()?;
    template::format_rows(
        format,
        template::VOLUME_TABLE,
        template::VOLUME_HEADERS,
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(name: &str, labels: &[(&str, &str)]) -> Volume {
        Volume {
            created_at: "2024-01-02T03:04:05Z".into(),
            driver: "local".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mountpoint: format!("/var/lib/berth/volumes/{name}/_data").into(),
            name: name.into(),
            options: std::collections::BTreeMap::new(),
            scope: "local".into(),
        }
    }

    #[test]
    fn ls_formats_as_dockers() {
        let list = [
            vol("a-long-volume-name", &[]),
            vol("b2", &[("x", "1"), ("y", "")]),
        ];
        assert_eq!(
            format_list(&list, "table").unwrap(),
            "DRIVER    VOLUME NAME\nlocal     a-long-volume-name\nlocal     b2\n"
        );
        assert_eq!(
            format_list(&list, "table {{.Name}}\\t{{.Labels}}").unwrap(),
            // Go's tabwriter pads a cell before a tab even when the row's last cell is empty.
            "VOLUME NAME          LABELS\na-long-volume-name   \nb2                   x=1,y=\n"
        );
        assert_eq!(
            format_list(&list, "{{.Name}}:{{.Scope}}").unwrap(),
            "a-long-volume-name:local\nb2:local\n"
        );
        let json = format_list(&list[..1], "json").unwrap();
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["Name"], "a-long-volume-name");
        assert_eq!(v["Driver"], "local");
        assert_eq!(
            format_list(&[], "table").unwrap(),
            "DRIVER    VOLUME NAME\n"
        );
        assert!(format_list(&list, "{{.Name").is_err());
    }

    #[test]
    fn inspect_templates_see_dockers_fields() {
        let v = vol("dbdata", &[("team", "db")]);
        assert_eq!(
            template::render(
                "{{.Name}} {{.Driver}} {{.Labels.team}}",
                &serde_json::to_value(&v).unwrap()
            )
            .unwrap(),
            "dbdata local db"
        );
        let json = indented_json(&[v]).unwrap();
        assert!(
            json.starts_with("[\n    {\n        \"CreatedAt\""),
            "{json}"
        );
    }
}
