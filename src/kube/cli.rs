//! `berth kube play|down|generate` and `berth pod create|ls|inspect|start|stop|rm`.

use super::{generate, play, pod};
use crate::engine::record::Engine;
use crate::image::store::Store;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum KubeCommand {
    /// Create pods, containers and volumes from Kubernetes YAML.
    Play(PlayArgs),
    /// Remove the pods, containers and volumes a `kube play` of FILE made.
    Down(DownArgs),
    /// Write the Kubernetes YAML of a pod or container.
    Generate(GenerateArgs),
}

#[derive(Args)]
pub struct PlayArgs {
    /// Tear down what the files made instead (`kube down`).
    #[arg(long)]
    down: bool,
    /// Remove and make again the pods that exist, changed or not.
    #[arg(long)]
    replace: bool,
    /// The network the pods join, made when missing (its DNS resolves pods and Services).
    #[arg(long, default_value = play::DEFAULT_NETWORK)]
    network: String,
    /// An image whose `sleep` each pod's infra container runs (default: berth's pause
    /// image).
    #[arg(long = "infra-image")]
    infra_image: Option<String>,
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct DownArgs {
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// A pod or a container.
    name: String,
}

#[derive(Subcommand)]
pub enum PodCommand {
    /// Create a new empty pod (its infra container, running).
    Create(PodCreateArgs),
    /// List pods.
    #[command(visible_aliases = ["ps", "list"])]
    Ls(PodLsArgs),
    /// Display a pod's configuration and state as JSON.
    Inspect(PodNames),
    /// Start one or more pods.
    Start(PodNames),
    /// Stop one or more pods.
    Stop(PodStopArgs),
    /// Remove one or more pods.
    Rm(PodRmArgs),
}

#[derive(Args)]
pub struct PodCreateArgs {
    /// The pod's name.
    #[arg(long)]
    name: String,
    /// Publish a port of the pod (Docker's -p syntax).
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// A label KEY=VALUE.
    #[arg(long = "label")]
    label: Vec<String>,
    /// An image whose `sleep` the infra container runs (default: berth's pause image).
    #[arg(long = "infra-image")]
    infra_image: Option<String>,
    /// The hostname of the pod.
    #[arg(long)]
    hostname: Option<String>,
    /// The network the pod joins (default: berth's default network).
    #[arg(long)]
    network: Option<String>,
}

#[derive(Args)]
pub struct PodLsArgs {
    /// Only the IDs.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct PodNames {
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct PodStopArgs {
    /// Seconds to wait before killing.
    #[arg(short = 't', long = "time")]
    time: Option<i64>,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct PodRmArgs {
    /// Stop running containers first.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

fn report(r: Result<i32>) -> i32 {
    r.unwrap_or_else(|e| {
        eprintln!("berth: {e:#}");
        125
    })
}

pub fn run_kube(data_root: &Path, state_root: &Path, cmd: KubeCommand) -> i32 {
    let engine = Engine::new(data_root, state_root);
    report((|| match cmd {
        KubeCommand::Play(a) if a.down => down(&engine, &a.files),
        KubeCommand::Play(a) => {
            let store = Store::open(&engine.data_root)?;
            for line in play::play(
                &engine,
                &store,
                &a.files,
                play::PlayOptions {
                    replace: a.replace,
                    network: a.network,
                    infra_image: a.infra_image,
                },
            )? {
                println!("{line}");
            }
            Ok(0)
        }
        KubeCommand::Down(a) => down(&engine, &a.files),
        KubeCommand::Generate(a) => {
            print!("{}", generate::generate(&engine, &a.name)?);
            Ok(0)
        }
    })())
}

fn down(engine: &Engine, files: &[PathBuf]) -> Result<i32> {
    for line in play::down(engine, files)? {
        println!("{line}");
    }
    Ok(0)
}

pub fn run_pod(data_root: &Path, state_root: &Path, cmd: PodCommand) -> i32 {
    let engine = Engine::new(data_root, state_root);
    let e = &engine;
    report((|| match cmd {
        PodCommand::Create(a) => {
            let store = Store::open(&e.data_root)?;
            let mut labels = std::collections::BTreeMap::new();
            for l in &a.label {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                labels.insert(k.to_string(), v.to_string());
            }
            let r = pod::create(
                e,
                &store,
                &pod::PodSpec {
                    name: a.name,
                    labels,
                    ports: a.publish,
                    balanced_ports: Vec::new(),
                    hostname: a.hostname,
                    infra_image: a.infra_image,
                    pull: "missing".into(),
                    config_hash: String::new(),
                    file: String::new(),
                    network: a.network,
                    aliases: Vec::new(),
                },
            )?;
            println!("{}", r.id);
            Ok(0)
        }
        PodCommand::Ls(a) => {
            let pods = pod::list(e)?;
            if a.quiet {
                for p in pods {
                    println!("{}", &p.id[..12]);
                }
                return Ok(0);
            }
            let mut rows = vec![vec![
                "POD ID".to_string(),
                "NAME".into(),
                "STATUS".into(),
                "CREATED".into(),
                "INFRA ID".into(),
                "# OF CONTAINERS".into(),
            ]];
            for p in pods {
                let cs = pod::containers(e, &p.name)?;
                let infra = cs
                    .iter()
                    .find(|c| c.record.name == p.infra)
                    .map(|c| c.id()[..12].to_string())
                    .unwrap_or_default();
                rows.push(vec![
                    p.id[..12].to_string(),
                    p.name.clone(),
                    pod::status(e, &p.name)?.to_string(),
                    p.created.clone(),
                    infra,
                    cs.len().to_string(),
                ]);
            }
            print_table(&rows);
            Ok(0)
        }
        PodCommand::Inspect(a) => {
            let mut out = Vec::new();
            for n in &a.names {
                let p = pod::lookup(e, n)?;
                let cs: Vec<serde_json::Value> = pod::containers(e, &p.name)?
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "Id": c.id(),
                            "Name": c.record.name,
                            "State": c.status(e).as_str(),
                        })
                    })
                    .collect();
                let mut v = serde_json::to_value(&p)?;
                v["State"] = pod::status(e, &p.name)?.into();
                v["NumContainers"] = cs.len().into();
                v["Containers"] = serde_json::Value::Array(cs);
                out.push(v);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        PodCommand::Start(a) => {
            let store = Store::open(&e.data_root)?;
            for n in &a.names {
                let p = pod::lookup(e, n)?;
                pod::start(e, &store, &p.name)?;
                println!("{}", p.id);
            }
            Ok(0)
        }
        PodCommand::Stop(a) => {
            for n in &a.names {
                let p = pod::lookup(e, n)?;
                pod::stop(e, &p.name, a.time)?;
                println!("{}", p.id);
            }
            Ok(0)
        }
        PodCommand::Rm(a) => {
            for n in &a.names {
                let p = pod::lookup(e, n)?;
                pod::remove_pod(e, &p.name, a.force)?;
                println!("{}", p.id);
            }
            Ok(0)
        }
    })())
}

fn print_table(rows: &[Vec<String>]) {
    let n = rows[0].len();
    let widths: Vec<usize> = (0..n)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == n {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i] + 2)
                }
            })
            .collect();
        println!("{}", line.join("").trim_end());
    }
}
