//! The container verbs on its writable layer and rootfs: `diff`, `commit`, `export` and `cp`
//! (under `berth container` and as top-level aliases), with Docker's flags, output and errors.
//! The work is done by [`crate::image::changes`], [`crate::image::commit`] and
//! [`super::copy`]; this is their command line.

use super::copy::{self, ContainerFs, CopyOptions, InContainer, VolumeMount};
use super::lifecycle;
use super::record::{Container, Engine, NoSuchContainer, Status};
use crate::image::changes::{changes_hiding, format_changes};
use crate::image::commit::{commit, export_rootfs, CommitOptions};
use crate::image::{Digest, Reference, Store};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct DiffArgs {
    container: String,
}

#[derive(Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>").
    #[arg(short, long)]
    author: Option<String>,
    /// Apply Dockerfile instruction to the created image.
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message.
    #[arg(short, long)]
    message: Option<String>,
    /// Pause container during commit.
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pause: bool,
    container: String,
    /// REPOSITORY[:TAG]
    repository: Option<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short, long)]
    output: Option<PathBuf>,
    container: String,
}

#[derive(Args)]
pub struct CpArgs {
    /// Always follow symbol link in SRC_PATH.
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Archive mode (copy all uid/gid information).
    #[arg(short, long)]
    archive: bool,
    /// Suppress progress output during copy.
    #[arg(short, long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH or SRC_PATH|-
    #[arg(allow_hyphen_values = true)]
    source: String,
    /// DEST_PATH|- or CONTAINER:DEST_PATH
    #[arg(allow_hyphen_values = true)]
    destination: String,
}

/// Prints an error as Docker's CLI does: what its daemon reports (a container or a path in
/// it) after "Error response from daemon: ", its own errors as they are. Returns 1.
fn report(e: &anyhow::Error) -> i32 {
    let from_daemon = e.chain().any(|c| {
        c.downcast_ref::<NoSuchContainer>().is_some() || c.downcast_ref::<InContainer>().is_some()
    });
    if from_daemon {
        eprintln!("Error response from daemon: {e:#}");
    } else {
        eprintln!("{e:#}");
    }
    1
}

fn done(r: Result<()>) -> Result<i32> {
    Ok(match r {
        Ok(()) => 0,
        Err(e) => report(&e),
    })
}

/// The container's rootfs, mounted again if it is not (a host rebooted since it ran).
fn mounted_rootfs(engine: &Engine, c: &Container) -> Result<PathBuf> {
    let store = Store::open(&engine.data_root)?;
    lifecycle::ensure_rootfs(&store, c)
        .with_context(|| format!("container {}: cannot mount its root filesystem", c.id()))?;
    Ok(c.rootfs())
}

/// The container's writable layer and the image's snapshots beneath it.
fn layers(engine: &Engine, c: &Container) -> Result<(Store, Digest, PathBuf, Vec<PathBuf>)> {
    let store = Store::open(&engine.data_root)?;
    let upper = c.upper_dir();
    if !upper.is_dir() {
        bail!(
            "container {}: its root filesystem is a copy, not an overlay; it has no separate \
             writable layer",
            c.id()
        );
    }
    let manifest: Digest = c
        .record
        .manifest
        .parse()
        .with_context(|| format!("container {}: the record's manifest", c.id()))?;
    let lowers = store
        .snapshot_dirs(&manifest)
        .with_context(|| format!("image {}", c.record.config.image))?;
    Ok((store, manifest, upper, lowers))
}

/// The destinations of the files bind-mounted into the container (its /etc/hosts, hostname
/// and resolv.conf, and `-v FILE:PATH`): the runtime makes empty mount points for them in the
/// writable layer, which diff and commit leave out (Docker keeps them in an "init" layer).
fn bind_mounted_files(c: &Container) -> Vec<String> {
    let Ok(bytes) = std::fs::read(c.bundle_dir().join("config.json")) else {
        return Vec::new();
    };
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    let mounts = spec["mounts"].as_array().cloned().unwrap_or_default();
    mounts
        .iter()
        .filter(|m| {
            let bind = m["type"] == "bind"
                || m["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"));
            bind && m["source"].as_str().is_some_and(|s| Path::new(s).is_file())
        })
        .filter_map(|m| m["destination"].as_str().map(String::from))
        .collect()
}

/// `container diff CONTAINER`.
pub fn diff_cmd(engine: &Engine, a: &DiffArgs) -> Result<i32> {
    done((|| {
        let c = engine.lookup(&a.container)?;
        let (_, _, upper, lowers) = layers(engine, &c)?;
        let list = changes_hiding(&upper, &lowers, &bind_mounted_files(&c))?;
        std::io::stdout()
            .write_all(format_changes(&list).as_bytes())
            .context("writing the changes")
    })())
}

/// Pauses a running container for the time it is held (Docker's `commit --pause`).
struct Paused<'a> {
    engine: &'a Engine,
    c: &'a Container,
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        if let Err(e) = lifecycle::unpause(self.engine, self.c) {
            eprintln!("berth: container {}: cannot unpause it: {e:#}", self.c.id());
        }
    }
}

/// `container commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]`: prints the new image's id.
pub fn commit_cmd(engine: &Engine, a: &CommitArgs) -> Result<i32> {
    let result = (|| -> Result<Digest> {
        let reference = a.repository.as_deref().map(Reference::parse).transpose()?;
        let c = engine.lookup(&a.container)?;
        let (store, manifest, upper, _) = layers(engine, &c)?;
        let _paused = if a.pause && c.status(engine) == Status::Running {
            lifecycle::pause(engine, &c)?;
            Some(Paused { engine, c: &c })
        } else {
            None
        };
        let config = serde_json::to_value(&c.record.config)?;
        let opts = CommitOptions {
            author: a.author.clone(),
            message: a.message.clone(),
            changes: a.change.clone(),
            container_config: Some(config),
            created_by: Some(c.record.config.cmd.join(" ")),
            reference,
            hidden: bind_mounted_files(&c),
        };
        Ok(commit(&store, Some(&manifest), &upper, &opts)?.id)
    })();
    match result {
        Ok(id) => {
            println!("{id}");
            Ok(0)
        }
        Err(e) => Ok(report(&e)),
    }
}

/// `container export [-o FILE] CONTAINER`.
pub fn export_cmd(engine: &Engine, a: &ExportArgs) -> Result<i32> {
    done((|| {
        if a.output.is_none() && std::io::stdout().is_terminal() {
            bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
        }
        let c = engine.lookup(&a.container)?;
        let rootfs = mounted_rootfs(engine, &c)?;
        match &a.output {
            None => export_rootfs(&rootfs, &mut std::io::stdout().lock()),
            Some(path) => write_then_rename(path, |out| export_rootfs(&rootfs, out)),
        }
    })())
}

/// Writes a file through a temporary sibling renamed over it at the end, so a failed export
/// leaves no half-written file.
fn write_then_rename(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("invalid output path {}", path.display()))?;
    let temp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&temp)
            .with_context(|| format!("cannot create {}", path.display()))?;
        write(&mut f)?;
        f.sync_all()
            .with_context(|| format!("cannot write {}", path.display()))?;
        std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The container's volumes and bind mounts, from its record's Docker-shaped `Mounts`
/// entries (tmpfs mounts hold nothing to copy and are left out).
fn volumes_of(c: &Container) -> Vec<VolumeMount> {
    c.record
        .mounts
        .iter()
        .filter(|m| matches!(m["Type"].as_str(), Some("volume" | "bind")))
        .filter_map(|m| {
            Some(VolumeMount {
                source: PathBuf::from(m["Source"].as_str()?),
                destination: m["Destination"].as_str()?.to_string(),
                read_only: m["RW"] == false,
            })
        })
        .filter(|v| v.source.exists())
        .collect()
}

/// `container cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-` and
/// `container cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH`.
pub fn cp_cmd(engine: &Engine, a: &CpArgs) -> Result<i32> {
    done((|| {
        if a.source.is_empty() {
            bail!("source can not be empty");
        }
        if a.destination.is_empty() {
            bail!("destination can not be empty");
        }
        let opts = CopyOptions {
            follow_link: a.follow_link,
            archive: a.archive,
        };
        let _ = a.quiet; // No progress is printed: berth copies without a daemon in between.
        match (
            copy::split_cp_arg(&a.source),
            copy::split_cp_arg(&a.destination),
        ) {
            ((Some(_), _), (Some(_), _)) => bail!("copying between containers is not supported"),
            ((None, _), (None, _)) => bail!("must specify at least one container source"),
            ((Some(name), src), (None, dest)) => {
                let c = engine.lookup(name)?;
                let rootfs = mounted_rootfs(engine, &c)?;
                copy::mount_volumes(&rootfs, &volumes_of(&c))?;
                let fs = ContainerFs {
                    rootfs: &rootfs,
                    name,
                };
                let mut out = std::io::stdout().lock();
                copy::copy_from_container(&fs, src, dest, &mut out, opts)?;
                out.flush().context("writing to stdout")
            }
            ((None, src), (Some(name), dest)) => {
                let c = engine.lookup(name)?;
                let volumes = volumes_of(&c);
                copy::check_writable(dest, c.record.host_config.readonly_rootfs, &volumes)?;
                let rootfs = mounted_rootfs(engine, &c)?;
                copy::mount_volumes(&rootfs, &volumes)?;
                let fs = ContainerFs {
                    rootfs: &rootfs,
                    name,
                };
                copy::copy_to_container(&fs, src, &mut std::io::stdin().lock(), dest, opts)
            }
        }
    })())
}
