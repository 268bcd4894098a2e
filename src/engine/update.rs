//! `container update`: new resource limits for containers, applied to a running container's
//! cgroups at once and kept for its next starts (in its bundle's config.json and its record,
//! where `inspect` finds them).

use super::record::{Container, Engine};
use super::resources::{apply_resources, resources_with_warnings, ResourceFlags, RECORD_KEY};
use crate::runtime::fsutil::write_atomically;
use anyhow::{bail, Context, Result};
use clap::Args;
use oci_spec::runtime::Spec;

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// CONTAINER [CONTAINER...]
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// Updates each container, printing its name as given on success, as Docker does; a failure
/// is printed and makes the exit code 1.
pub fn update_cmd(engine: &Engine, a: &UpdateArgs) -> Result<i32> {
    if a.resources == ResourceFlags::default() {
        bail!("you must provide one or more flags when using this command");
    }
    let mut code = 0;
    for name in &a.containers {
        let result = engine
            .lookup(name)
            .and_then(|mut c| update(engine, &mut c, &a.resources));
        match result {
            Ok(warnings) => {
                for w in warnings {
                    eprintln!("WARNING: {w}");
                }
                println!("{name}");
            }
            Err(e) => {
                eprintln!("Error response from daemon: Cannot update container {name}: {e:#}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// The flags a container was made (or last updated) with.
pub fn recorded_resources(c: &Container) -> ResourceFlags {
    c.record
        .options
        .get(RECORD_KEY)
        .and_then(|v| v.get("Flags"))
        .and_then(|f| serde_json::from_value(f.clone()).ok())
        .unwrap_or_default()
}

/// Lays `change` over the container's flags, checks the result as `create` would, and applies
/// it: to the cgroups when the container is running, to its config.json and record always.
/// Docker's warnings come back for the caller to print.
pub fn update(engine: &Engine, c: &mut Container, change: &ResourceFlags) -> Result<Vec<String>> {
    let _lock = c.lock()?;
    let merged = recorded_resources(c).updated_with(change);
    let (resources, warnings) = resources_with_warnings(&merged, false)?;

    let config = c.bundle_dir().join("config.json");
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let mut spec: Spec = serde_json::from_str(&text)
        .with_context(|| format!("cannot parse {}", config.display()))?;
    apply_resources(&mut spec, &merged)?;

    if c.status(engine).is_active() {
        crate::runtime::container::update(&engine.runtime_globals(), c.id(), &resources)?;
    }
    write_atomically(&config, serde_json::to_string_pretty(&spec)?.as_bytes())?;
    c.record
        .options
        .insert(RECORD_KEY.into(), super::create::SpecPart::record(&merged));
    c.save_record()?;
    Ok(warnings)
}
