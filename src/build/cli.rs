//! `berth build` (and `berth image build`, `berth builder prune`): Docker's flags and
//! messages. `main.rs` flattens [`BuildCommand`] into its command list and calls [`run`].

use super::cache::Cache;
use super::context::{self, ContextArg, DockerfileArg};
use super::executor::{self, BuildRequest, RunFailed};
use super::interrupt::{self, Interrupted};
use super::output::Output;
use super::run::Network;
use super::workdir::{self, BuildRoots, BuildWork};
use crate::image::archive::{self, ArchiveFormat};
use crate::image::reference::Reference;
use crate::image::store::Store;
use crate::image::Digest;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::io::{Read, Write};

use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum BuildCommand {
    /// Build an image from a Dockerfile.
    Build(Box<BuildArgs>),
    /// Manage the build cache.
    #[command(subcommand)]
    Builder(BuilderSub),
}

#[derive(Subcommand)]
pub enum BuilderSub {
    /// Remove the build cache, and the layers only it held.
    Prune {
        /// Do not prompt for confirmation (accepted for Docker's sake; berth never prompts).
        #[arg(short, long)]
        force: bool,
        /// Accepted for Docker's sake: all of the cache is removed.
        #[arg(short, long)]
        all: bool,
    },
}

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the `name:tag` format (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: `CONTEXT/Dockerfile`; `-`: read it from stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Set a build-time variable (`K=V`, or `K` to take the environment's value).
    #[arg(long = "build-arg", value_name = "K[=V]")]
    pub build_args: Vec<String>,
    /// Build the stage of this name, and what it needs.
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Always try to pull the base images.
    #[arg(long)]
    pub pull: bool,
    /// The platform to build for (`os/arch[/variant]`).
    #[arg(long)]
    pub platform: Option<String>,
    /// Set metadata on the image (`K=V`, repeatable).
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// The network of RUN steps: `default` (berth's default network, bridge berth0), `host`
    /// or `none`.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Write the image id to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
    /// Also write the image as an archive: `type=docker|oci,dest=FILE`.
    #[arg(short, long, value_name = "type=docker|oci,dest=FILE")]
    pub output: Option<String>,
    /// The build context: a directory, or `-` (a Dockerfile or a tar context on stdin).
    #[arg(value_name = "CONTEXT|-")]
    pub context: Vec<String>,
}

/// Commands this module serves (their bad arguments exit 125, as Docker's client does).
pub fn is_build_command(name: &str) -> bool {
    matches!(name, "build" | "builder")
}

/// `--output type=oci|docker,dest=FILE`.
#[derive(Debug, PartialEq)]
pub struct OutputSpec {
    pub format: ArchiveFormat,
    pub dest: PathBuf,
}

pub fn parse_output(s: &str) -> Result<OutputSpec> {
    let mut kind = None;
    let mut dest = None;
    for field in s.split(',') {
        let (k, v) = field
            .split_once('=')
            .with_context(|| format!("invalid value {field:?} in --output (want key=value)"))?;
        match k.trim() {
            "type" => kind = Some(v.trim().to_string()),
            "dest" => dest = Some(PathBuf::from(v.trim())),
            other => bail!("--output: unknown key {other:?} (berth knows type and dest)"),
        }
    }
    let format = match kind.as_deref() {
        Some("docker") => ArchiveFormat::DockerArchive,
        Some("oci") => ArchiveFormat::OciArchive,
        Some(other) => bail!("--output: unsupported type {other:?} (berth writes docker or oci)"),
        None => bail!("--output: type is required (type=docker|oci,dest=FILE)"),
    };
    let dest = dest.context("--output: dest is required (type=docker|oci,dest=FILE)")?;
    Ok(OutputSpec { format, dest })
}

/// `--build-arg K=V`, or `K` alone: the environment's value (an unset one is left out, as
/// Docker does).
pub fn parse_build_args(list: &[String]) -> Result<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for a in list {
        match a.split_once('=') {
            Some(("", _)) => bail!("invalid key/value pair {a:?}: empty key"),
            Some((k, v)) => {
                m.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Ok(v) = std::env::var(a) {
                    m.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(m)
}

fn parse_labels(list: &[String]) -> Result<Vec<(String, String)>> {
    list.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            if k.is_empty() {
                bail!("invalid label {l:?}: a label needs a key");
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// A flag's value Docker's client refuses: message and exit 125.
fn usage_error(message: &str) -> i32 {
    eprintln!("{message}\nSee 'berth build --help'.");
    125
}

pub fn run(data_root: &Path, state_root: &Path, cmd: BuildCommand) -> i32 {
    match cmd {
        BuildCommand::Build(a) => build_cmd(data_root, state_root, *a),
        BuildCommand::Builder(BuilderSub::Prune { .. }) => match prune(data_root, state_root) {
            Ok((records, blobs)) => {
                println!("Deleted build cache records: {records}");
                println!("Deleted blobs: {blobs}");
                0
            }
            Err(e) => {
                eprintln!("Error: {e:#}");
                1
            }
        },
    }
}

/// `build`: one image from a context and a Dockerfile, as the flags say; its errors printed,
/// its exit code returned (also what `compose build` calls, with the flags a service asks).
pub fn build_cmd(data_root: &Path, state_root: &Path, a: BuildArgs) -> i32 {
    if a.context.len() != 1 {
        eprintln!(
            "\"berth build\" requires exactly 1 argument.\nSee 'berth build --help'.\n\n\
             Usage:  berth build [OPTIONS] PATH | -\n\nBuild an image from a Dockerfile"
        );
        return 1;
    }
    let mut tags = Vec::new();
    for t in &a.tags {
        match Reference::parse(t) {
            Ok(r) if r.digest.is_none() => tags.push(
                r.tag
                    .as_ref()
                    .map_or_else(|| r.with_tag("latest"), |_| r.clone()),
            ),
            Ok(_) => {
                return usage_error(&format!(
                    "invalid argument {t:?} for \"-t, --tag\" flag: a tag cannot hold a digest"
                ))
            }
            Err(e) => {
                return usage_error(&format!(
                    "invalid argument {t:?} for \"-t, --tag\" flag: {e:#}"
                ))
            }
        }
    }
    let output = match a.output.as_deref().map(parse_output).transpose() {
        Ok(o) => o,
        Err(e) => return usage_error(&format!("{e:#}")),
    };
    let network = match Network::parse(&a.network) {
        Ok(n) => n,
        Err(e) => return usage_error(&format!("{e:#}")),
    };
    let mut build_args = match parse_build_args(&a.build_args) {
        Ok(b) => b,
        Err(e) => return usage_error(&format!("{e:#}")),
    };
    // The environment's SOURCE_DATE_EPOCH is passed on as a build arg, as buildx does; an
    // explicit --build-arg wins.
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        build_args.entry("SOURCE_DATE_EPOCH".into()).or_insert(v);
    }
    if let Err(e) = executor::source_date_epoch(&build_args) {
        return usage_error(&format!("{e:#}"));
    }
    let labels = match parse_labels(&a.labels) {
        Ok(l) => l,
        Err(e) => return usage_error(&format!("{e:#}")),
    };
    if let Some(p) = &a.platform {
        if let Err(e) = crate::image::pull::check_platform(p) {
            return usage_error(&format!("{e:#}"));
        }
    }
    let mut out = Output::new(a.quiet);
    let result = (|| -> Result<()> {
        let roots = BuildRoots::new(data_root, state_root);
        let contexts = roots.dir.join("contexts");
        std::fs::create_dir_all(&contexts)
            .with_context(|| format!("cannot create {}", contexts.display()))?;
        context::sweep_stale(&contexts)?;
        let context_arg = match a.context[0].as_str() {
            "-" => ContextArg::Stdin,
            dir => ContextArg::Dir(Path::new(dir)),
        };
        let dockerfile_arg = match a.file.as_deref() {
            None => DockerfileArg::Default,
            Some("-") => DockerfileArg::Stdin,
            Some(f) => DockerfileArg::File(Path::new(f)),
        };
        let (ctx, text) = context::prepare(
            context_arg,
            dockerfile_arg,
            &mut std::io::stdin(),
            &contexts,
        )?;
        let dockerfile = super::dockerfile::parse(&text.text, &text.name)?;
        let warnings = super::dockerfile::lint::lint(&text.text, &dockerfile);
        workdir::private_mounts()?;
        interrupt::install();
        let store = Store::open(data_root)?;
        workdir::sweep(&roots);
        let work = BuildWork::create(&roots)?;
        let req = BuildRequest {
            dockerfile: &dockerfile,
            context: &ctx,
            build_args,
            target: a.target.clone(),
            no_cache: a.no_cache,
            pull: a.pull,
            platform: a.platform.clone(),
            labels,
            network,
        };
        let started = std::time::Instant::now();
        let built = executor::build(&store, &work, roots.cache_dir(), &req, &mut out)?;
        let id = built.id.to_string();
        let mut replaced = Vec::new();
        for t in &tags {
            if let Ok(old) = store.resolve(t) {
                if old.digest() != built.manifest.digest() {
                    replaced.push(Digest::try_from(old.digest())?);
                }
            }
            store.set_reference(t, &built.manifest)?;
        }
        // An image a tag no longer names is deleted with what only it held, as `rmi` would.
        if !replaced.is_empty() {
            let still_named: Vec<String> = store
                .references()?
                .into_iter()
                .map(|(_, d)| d.digest().to_string())
                .collect();
            let orphans: Vec<Digest> = replaced
                .into_iter()
                .filter(|d| !still_named.contains(&d.to_string()))
                .collect();
            store.delete_unused(&orphans)?;
        }
        if let Some(f) = &a.iidfile {
            std::fs::write(f, &id).with_context(|| format!("--iidfile {}", f.display()))?;
        }
        if let Some(o) = &output {
            let names: Vec<String> = if tags.is_empty() {
                let d = Digest::try_from(built.manifest.digest())?;
                vec![format!("berth-build@{d}")]
            } else {
                tags.iter().map(|t| t.to_string()).collect()
            };
            write_archive(&store, &names, o)?;
        }
        let shown: Vec<String> = tags
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t.familiar_name(),
                    t.tag.as_deref().unwrap_or("latest")
                )
            })
            .collect();
        out.finished(&id, &shown, started.elapsed());
        if !warnings.is_empty() {
            let n = warnings.len();
            eprintln!("{n} warning{} found:", if n == 1 { "" } else { "s" });
            for w in &warnings {
                eprintln!(" - {w}");
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => 0,
        Err(e) => {
            if e.downcast_ref::<Interrupted>().is_some() {
                eprintln!("berth build: interrupted; the finished steps are kept as cache");
                return 130;
            }
            if let Some(f) = e.downcast_ref::<RunFailed>() {
                eprintln!("{f}");
                return 1;
            }
            eprintln!("Error: {e:#}");
            1
        }
    }
}

/// Writes the archive next to its destination and renames it there when complete.
fn write_archive(store: &Store, names: &[String], o: &OutputSpec) -> Result<()> {
    let temp = o.dest.with_file_name(format!(
        ".{}.berth-partial",
        o.dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let result = (|| -> Result<()> {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&temp)
                .with_context(|| format!("--output: cannot create {}", temp.display()))?,
        );
        archive::save(store, names, o.format, &mut f)?;
        f.flush()?;
        std::fs::rename(&temp, &o.dest)
            .with_context(|| format!("--output: cannot write {}", o.dest.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// `builder prune`: removes every cache record, then the blobs and snapshots only records
/// held (no named image, no live bundle needs them). Returns (records, blobs) removed.
fn prune(data_root: &Path, state_root: &Path) -> Result<(usize, usize)> {
    let roots = BuildRoots::new(data_root, state_root);
    workdir::sweep(&roots);
    let store = Store::open(data_root)?;
    let cache_dir = roots.cache_dir();
    let mut layers = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&cache_dir) {
        for e in entries.flatten() {
            let mut text = String::new();
            if std::fs::File::open(e.path())
                .and_then(|mut f| f.read_to_string(&mut text))
                .is_ok()
            {
                if let Ok(s) = serde_json::from_str::<super::image_state::ImageState>(&text) {
                    layers.extend(s.layers);
                }
            }
        }
    }
    let records = Cache::new(cache_dir, false).clear()?;
    let blobs = store.delete_unused_layers(
        &layers
            .iter()
            .filter_map(|l| {
                Some((
                    Digest::parse(&l.digest).ok()?,
                    Digest::parse(&l.diff_id).ok()?,
                ))
            })
            .collect::<Vec<_>>(),
    )?;
    Ok((records, blobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs_parse_as_docker_writes_them() {
        assert_eq!(
            parse_output("type=oci,dest=/tmp/x.tar").unwrap(),
            OutputSpec {
                format: ArchiveFormat::OciArchive,
                dest: "/tmp/x.tar".into()
            }
        );
        assert_eq!(
            parse_output("dest=a.tar,type=docker").unwrap().format,
            ArchiveFormat::DockerArchive
        );
        assert!(parse_output("type=local,dest=x").is_err());
        assert!(parse_output("type=oci").is_err());
        assert!(parse_output("dest").is_err());
    }

    #[test]
    fn build_args_take_the_environment_for_a_bare_name() {
        std::env::set_var("BERTH_TEST_BUILD_ARG", "from-env");
        let m = parse_build_args(&[
            "A=1".into(),
            "B=".into(),
            "BERTH_TEST_BUILD_ARG".into(),
            "BERTH_TEST_UNSET_ARG".into(),
        ])
        .unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "");
        assert_eq!(m["BERTH_TEST_BUILD_ARG"], "from-env");
        assert!(!m.contains_key("BERTH_TEST_UNSET_ARG"));
        assert!(parse_build_args(&["=x".into()]).is_err());
        assert!(parse_labels(&["=x".into()]).is_err());
        assert_eq!(
            parse_labels(&["a".into()]).unwrap(),
            vec![("a".into(), "".into())]
        );
    }
}
