//! `system df` and `system prune`: what images, containers and volumes take on disk, and the
//! removal of what nothing uses, with Docker's tables and reports.

use super::humanize::human_size;
use super::present::{container_sizes, tree_size};
use super::record::{Engine, Status};
use super::remove;
use super::volume::VolumeStore;
use crate::image::store::Store;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Show docker disk usage.
    Df(DfArgs),
    /// Remove unused data.
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct DfArgs {
    /// Show detailed information on space usage.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
    /// Prune anonymous volumes.
    #[arg(long)]
    volumes: bool,
}

pub fn run(engine: &Engine, cmd: SystemCommand) -> Result<i32> {
    match cmd {
        SystemCommand::Df(a) => df(engine, &a),
        SystemCommand::Prune(a) => prune(engine, &a),
    }
}

/// One row of `system df`.
struct Usage {
    kind: &'static str,
    total: usize,
    active: usize,
    size: u64,
    reclaimable: u64,
}

fn usage(engine: &Engine) -> Result<Vec<Usage>> {
    let store = Store::open(&engine.data_root)?;
    let containers = engine.all()?;
    // Images: by id, their layers counted once over all of them.
    let used_ids: BTreeSet<String> = containers.iter().map(|c| c.record.image.clone()).collect();
    let mut images: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in store.summaries()? {
        images
            .entry(s.id.to_string())
            .or_default()
            .push(s.reference.to_string());
    }
    let mut blobs_all = BTreeSet::new();
    let mut blobs_used = BTreeSet::new();
    for (_, desc) in store.references()? {
        let id = store.image_id(&desc).to_string();
        let mut set = BTreeSet::new();
        store.blobs_of(&crate::image::Digest::try_from(desc.digest())?, &mut set);
        if used_ids.contains(&id) {
            blobs_used.extend(set.iter().cloned());
        }
        blobs_all.extend(set);
    }
    let size_of = |set: &BTreeSet<crate::image::Digest>| -> u64 {
        set.iter().map(|d| store.blob_size(d).unwrap_or(0)).sum()
    };
    let images_size = size_of(&blobs_all);
    let images_used = size_of(&blobs_used);
    let active_images = images.keys().filter(|id| used_ids.contains(*id)).count();

    let mut c_size = 0;
    let mut c_reclaim = 0;
    let mut running = 0;
    for c in &containers {
        let (rw, _) = container_sizes(None, c);
        c_size += rw;
        if c.status(engine).is_active() {
            running += 1;
        } else {
            c_reclaim += rw;
        }
    }

    let vs = VolumeStore::open(&engine.data_root)?;
    let is_container = |id: &str| engine.container_dir(id).exists();
    let mut v_total = 0;
    let mut v_active = 0;
    let mut v_size = 0;
    let mut v_reclaim = 0;
    for v in vs.list()? {
        v_total += 1;
        let size = vs.size(&v.name).unwrap_or(0);
        v_size += size;
        if vs.users(&v.name, &is_container)?.is_empty() {
            v_reclaim += size;
        } else {
            v_active += 1;
        }
    }
    Ok(vec![
        Usage {
            kind: "Images",
            total: images.len(),
            active: active_images,
            size: images_size,
            reclaimable: images_size - images_used,
        },
        Usage {
            kind: "Containers",
            total: containers.len(),
            active: running,
            size: c_size,
            reclaimable: c_reclaim,
        },
        Usage {
            kind: "Local Volumes",
            total: v_total,
            active: v_active,
            size: v_size,
            reclaimable: v_reclaim,
        },
        Usage {
            kind: "Build Cache",
            total: 0,
            active: 0,
            size: 0,
            reclaimable: 0,
        },
    ])
}

/// Docker's RECLAIMABLE column: the size and, where there is any, its share in percent.
fn reclaimable(u: &Usage) -> String {
    let size = human_size(u.reclaimable as f64);
    if u.size == 0 || u.kind == "Build Cache" {
        return size;
    }
    format!("{size} ({}%)", u.reclaimable * 100 / u.size)
}

fn df(engine: &Engine, a: &DfArgs) -> Result<i32> {
    let rows: Vec<[String; 5]> = usage(engine)?
        .iter()
        .map(|u| {
            [
                u.kind.to_string(),
                u.total.to_string(),
                u.active.to_string(),
                human_size(u.size as f64),
                reclaimable(u),
            ]
        })
        .collect();
    let out = &mut std::io::stdout().lock();
    crate::table::write_table(
        out,
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        &rows,
    )?;
    if a.verbose {
        writeln!(out, "\nContainers space usage:\n")?;
        let rows: Vec<[String; 4]> = engine
            .all()?
            .iter()
            .map(|c| {
                [
                    super::record::short_id(c.id()).to_string(),
                    c.record.config.image.clone(),
                    human_size(tree_size(&c.upper_dir()).unwrap_or(0) as f64),
                    c.record.name.clone(),
                ]
            })
            .collect();
        crate::table::write_table(out, ["CONTAINER ID", "IMAGE", "SIZE", "NAMES"], &rows)?;
    }
    Ok(0)
}

/// Asks on stdin, as Docker does; no answer (or no terminal) is no.
pub fn confirm(what: &[&str]) -> Result<bool> {
    let mut err = std::io::stderr().lock();
    writeln!(err, "WARNING! This will remove:")?;
    for w in what {
        writeln!(err, "  - {w}")?;
    }
    write!(err, "\nAre you sure you want to continue? [y/N] ")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

fn prune(engine: &Engine, a: &PruneArgs) -> Result<i32> {
    let mut what = vec!["all stopped containers"];
    if a.volumes {
        what.push("all anonymous volumes not used by at least one container");
    }
    what.push(if a.all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    });
    if !a.force && !confirm(&what)? {
        return Ok(0);
    }
    let out = &mut std::io::stdout().lock();
    let mut reclaimed = 0u64;
    let mut deleted = Vec::new();
    for mut c in engine.all()? {
        if !matches!(
            c.status(engine),
            Status::Exited | Status::Created | Status::Dead
        ) || (c.status(engine) == Status::Created && c.state.monitor.is_some_and(|m| m.alive()))
        {
            continue;
        }
        let (rw, _) = container_sizes(None, &c);
        let id = c.id().to_string();
        if remove::remove(engine, &mut c, remove::Caller::Command).is_ok() {
            reclaimed += rw;
            deleted.push(id);
        }
    }
    if !deleted.is_empty() {
        writeln!(out, "Deleted Containers:")?;
        for id in &deleted {
            writeln!(out, "{id}")?;
        }
        writeln!(out)?;
    }
    if a.volumes {
        let vs = VolumeStore::open(&engine.data_root)?;
        let is_container = |id: &str| engine.container_dir(id).exists();
        let report = vs.prune(false, &Default::default(), &is_container)?;
        if !report.deleted.is_empty() {
            writeln!(out, "Deleted Volumes:")?;
            for v in &report.deleted {
                writeln!(out, "{v}")?;
            }
            writeln!(out)?;
        }
        reclaimed += report.reclaimed_bytes;
    }
    if a.all {
        let store = Store::open(&engine.data_root)?;
        let used: BTreeSet<String> = engine
            .all()?
            .iter()
            .map(|c| c.record.image.clone())
            .collect();
        let mut lines = Vec::new();
        for s in store.summaries()? {
            if used.contains(&s.id.to_string()) {
                continue;
            }
            match store.remove_image(&s.reference.to_string(), false) {
                Ok(report) => {
                    reclaimed += s.size;
                    lines.extend(report);
                }
                Err(e) => bail!("cannot remove image {}: {e:#}", s.reference),
            }
        }
        if !lines.is_empty() {
            writeln!(out, "Deleted Images:")?;
            for l in lines {
                // Docker's prune report writes its verbs in lower case.
                let l = l
                    .replacen("Untagged:", "untagged:", 1)
                    .replacen("Deleted:", "deleted:", 1);
                writeln!(out, "{l}")?;
            }
            writeln!(out)?;
        }
    }
    writeln!(
        out,
        "Total reclaimed space: {}",
        human_size(reclaimed as f64)
    )?;
    Ok(0)
}
