//! The image commands of the `berth` binary, with Docker's names and habits. `main.rs` flattens
//! [`ImageCommand`] into its command list and calls [`run`].

use super::archive::{self, ArchiveFormat};
use super::bundle::{self, BundleOptions};
use super::import::import_tarball;
use super::reference::Reference;
use super::store::{Store, DEFAULT_DATA_ROOT};
use super::time;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// List images.
    Images(ImagesArgs),
    /// Manage images (ls, inspect, rm, tag, save, load, import).
    #[command(subcommand)]
    Image(ImageSub),
    /// Remove images (refused for an image a bundle uses, unless --force).
    Rmi(RmiArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Write images to a docker-archive (default) or oci-archive tar file.
    Save(SaveArgs),
    /// Load images from a docker-archive or oci-archive tar file (optionally compressed).
    Load(LoadArgs),
    /// Make a one-layer image from a root filesystem tarball.
    Import(ImportArgs),
    /// Write an OCI bundle (rootfs + config.json) from an image, for `berth run`.
    Bundle(BundleArgs),
    /// Unmount and remove a bundle made by `berth bundle`.
    RmBundle(RmBundleArgs),
}

#[derive(Subcommand)]
pub enum ImageSub {
    /// List images.
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Show an image's config, layers, digest and size as JSON.
    Inspect {
        references: Vec<String>,
    },
    /// Remove images.
    Rm(RmiArgs),
    Tag(TagArgs),
    Save(SaveArgs),
    Load(LoadArgs),
    Import(ImportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ImagesFormat {
    Table,
    Json,
}

#[derive(Args)]
pub struct ImagesArgs {
    /// Only image ids.
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: ImagesFormat,
    /// Show full image ids.
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args)]
pub struct RmiArgs {
    /// Remove even when a bundle uses the image, or an id names several images.
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub references: Vec<String>,
}

#[derive(Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to this file (default: standard output when it is not a terminal).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "docker-archive")]
    pub format: ArchiveFormat,
    #[arg(required = true)]
    pub references: Vec<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from this file (default: standard input).
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Dockerfile instructions to apply (CMD, ENTRYPOINT, ENV, WORKDIR, USER, ...).
    #[arg(short, long)]
    pub change: Vec<String>,
    /// A tar, tar.gz or tar.zst file, or `-` for standard input.
    pub tarball: PathBuf,
    pub reference: String,
}

#[derive(Args)]
pub struct BundleArgs {
    /// Copy the layers into DIR/rootfs instead of mounting an overlay.
    #[arg(long)]
    pub copy: bool,
    /// os/arch[/variant] to choose from a multi-platform image.
    #[arg(long)]
    pub platform: Option<String>,
    pub reference: String,
    pub dir: PathBuf,
}

#[derive(Args)]
pub struct RmBundleArgs {
    /// Remove it even when a container still runs from it.
    #[arg(short, long)]
    pub force: bool,
    pub dir: PathBuf,
}

/// The data root: `--data-root`, or /var/lib/berth.
pub fn data_root(flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(|| PathBuf::from(DEFAULT_DATA_ROOT), Path::to_path_buf)
}

/// Runs an image command with containers' state under the default `--root`.
pub fn run(data_root: &Path, cmd: ImageCommand) -> Result<i32> {
    run_in(data_root, &crate::runtime::state::default_root(), cmd)
}

/// Runs an image command; `state_root` is the runtime's `--root`, where `rm-bundle` looks for
/// containers still running from the bundle. Returns the exit code.
pub fn run_in(data_root: &Path, state_root: &Path, cmd: ImageCommand) -> Result<i32> {
    let store = Store::open(data_root)?;
    let out = &mut std::io::stdout().lock();
    match cmd {
        ImageCommand::Images(a) | ImageCommand::Image(ImageSub::Ls(a)) => images(&store, &a, out)?,
        ImageCommand::Image(ImageSub::Inspect { references }) => {
            if references.is_empty() {
                bail!("image inspect: give at least one image");
            }
            let docs = references
                .iter()
                .map(|r| store.inspect(r))
                .collect::<Result<Vec<_>>>()?;
            writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?;
        }
        ImageCommand::Rmi(a) | ImageCommand::Image(ImageSub::Rm(a)) => {
            for r in &a.references {
                for line in store.remove_image(r, a.force)? {
                    writeln!(out, "{line}")?;
                }
            }
        }
        ImageCommand::Tag(a) | ImageCommand::Image(ImageSub::Tag(a)) => {
            let dst = Reference::parse(&a.target)?;
            store.tag(&a.source, &dst)?;
        }
        ImageCommand::Save(a) | ImageCommand::Image(ImageSub::Save(a)) => save(&store, &a)?,
        ImageCommand::Load(a) | ImageCommand::Image(ImageSub::Load(a)) => {
            let loaded = match &a.input {
                Some(p) => archive::load(
                    &store,
                    &mut std::fs::File::open(p)
                        .with_context(|| format!("cannot open {}", p.display()))?,
                )
                .with_context(|| format!("loading {}", p.display()))?,
                None => archive::load(&store, &mut std::io::stdin().lock())
                    .context("loading standard input")?,
            };
            if !a.quiet {
                for name in loaded {
                    writeln!(out, "Loaded image: {name}")?;
                }
            }
        }
        ImageCommand::Import(a) | ImageCommand::Image(ImageSub::Import(a)) => {
            let r = Reference::parse(&a.reference)?;
            let id = if a.tarball == Path::new("-") {
                import_tarball(&store, &mut std::io::stdin().lock(), &r, &a.change)
            } else {
                let mut f = std::fs::File::open(&a.tarball)
                    .with_context(|| format!("cannot open {}", a.tarball.display()))?;
                import_tarball(&store, &mut f, &r, &a.change)
            }
            .with_context(|| format!("importing {}", a.tarball.display()))?;
            writeln!(out, "{id}")?;
        }
        ImageCommand::Bundle(a) => {
            let r = Reference::parse(&a.reference)?;
            let opts = BundleOptions {
                copy: a.copy,
                platform: a.platform,
                args: None,
            };
            bundle::create_bundle(&store, &r, &a.dir, &opts)?;
        }
        ImageCommand::RmBundle(a) => bundle::remove_bundle(&store, &a.dir, state_root, a.force)?,
    }
    Ok(0)
}

fn images(store: &Store, a: &ImagesArgs, out: &mut dyn Write) -> Result<()> {
    let all = store.summaries()?;
    let id_of = |d: &super::Digest| {
        if a.no_trunc {
            d.to_string()
        } else {
            d.short().to_string()
        }
    };
    if a.quiet {
        let mut seen = BTreeSet::new();
        for s in &all {
            if seen.insert(s.id.clone()) {
                writeln!(out, "{}", id_of(&s.id))?;
            }
        }
        return Ok(());
    }
    let created = |s: &super::manage::ImageSummary| {
        s.created
            .as_deref()
            .and_then(time::parse_rfc3339)
            .map_or("N/A".to_string(), time::ago)
    };
    match a.format {
        ImagesFormat::Json => {
            for s in &all {
                let doc = serde_json::json!({
                    "Repository": s.reference.familiar_name(),
                    "Tag": s.reference.tag.clone().unwrap_or_else(|| "<none>".into()),
                    "Digest": s.digest.to_string(),
                    "ID": id_of(&s.id),
                    "CreatedAt": s.created.clone().unwrap_or_default(),
                    "CreatedSince": created(s),
                    "Size": human_size(s.size),
                    "VirtualSize": s.size,
                });
                writeln!(out, "{doc}")?;
            }
        }
        ImagesFormat::Table => {
            let rows: Vec<[String; 5]> = all
                .iter()
                .map(|s| {
                    [
                        s.reference.familiar_name(),
                        s.reference.tag.clone().unwrap_or_else(|| "<none>".into()),
                        id_of(&s.id),
                        created(s),
                        human_size(s.size),
                    ]
                })
                .collect();
            crate::table::write_table(
                out,
                ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
                &rows,
            )?;
        }
    }
    Ok(())
}

fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[i]).replace(".000", "")
    }
}

/// `save`: to a temporary file beside the output, renamed when complete, so a failure leaves
/// no partial archive.
fn save(store: &Store, a: &SaveArgs) -> Result<()> {
    match &a.output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let temp = dir.join(format!(
                ".{}.{}.tmp",
                path.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            let result = (|| {
                let f = std::fs::File::create(&temp)
                    .with_context(|| format!("cannot create {}", temp.display()))?;
                let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                archive::save(store, &a.references, a.format, &mut w)?;
                w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                std::fs::rename(&temp, path)
                    .with_context(|| format!("cannot write {}", path.display()))
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            result
        }
        None => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("save: refusing to write an archive to a terminal; use -o FILE");
            }
            archive::save(store, &a.references, a.format, &mut stdout.lock())
        }
    }
}
