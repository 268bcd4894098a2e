//! Pods: an infra container holding the network and IPC namespaces, and the containers that
//! join them (`--network/--ipc/--uts container:INFRA`), as podman makes them. A pod is
//! a record under the data root (`pods/NAME.json`); its containers carry the label
//! `io.berth.pod=NAME`, which is what `pod rm` goes by (a record written before a crash names
//! nothing that a label does not).
//!
//! The infra container runs berth's pause program (src/kube/pause: static, no libc, ~1 KB,
//! embedded in berth) from the local image `localhost/berth-pause:VERSION`, which berth makes
//! from it on first use, as podman builds its pause image from catatonit: nothing to pull, no
//! shell, any architecture berth runs on, and it ends on SIGTERM. `--infra-image IMG` runs
//! `sleep` from IMG instead (a busybox-like image), stopped with SIGKILL (a PID 1 `sleep`
//! ignores SIGTERM).

use crate::engine::create::{self, CreateFlags, CreateRequest};
use crate::engine::lifecycle;
use crate::engine::record::{Container, Engine, Status};
use crate::engine::remove;
use crate::engine::resources::ResourceFlags;
use crate::engine::security::SecurityFlags;
use crate::engine::volume::VolumeStore;
use crate::image::store::Store;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

/// The label every container of a pod carries.
pub const POD_LABEL: &str = "io.berth.pod";
/// The label of the volumes a pod made (emptyDir) or a play made (claims).
pub const MADE_BY_LABEL: &str = "io.berth.kube.made-by";

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "PascalCase")]
pub struct PodRecord {
    pub name: String,
    pub id: String,
    pub created: String,
    pub labels: BTreeMap<String, String>,
    /// The infra container's name.
    pub infra: String,
    /// The containers, in start order (init containers are gone once they ran).
    pub containers: Vec<String>,
    /// The published ports of the infra container (`-p` syntax).
    pub ports: Vec<String>,
    /// The hash of what made it (`kube play` recreates a pod only when it changed).
    pub config_hash: String,
    /// The file `kube play` made it from.
    pub file: String,
    /// The volumes made for it alone (emptyDir), removed with it.
    pub volumes: Vec<String>,
    /// Directories made for it (configMap and secret volumes), removed with it.
    pub dirs: Vec<PathBuf>,
}

pub fn pods_dir(engine: &Engine) -> PathBuf {
    engine.data_root.join("pods")
}

fn record_path(engine: &Engine, name: &str) -> PathBuf {
    pods_dir(engine).join(format!("{name}.json"))
}

/// Where the files of a pod's configMap and secret volumes go.
pub fn files_dir(engine: &Engine, name: &str) -> PathBuf {
    pods_dir(engine).join(format!("{name}.d"))
}

pub fn save(engine: &Engine, r: &PodRecord) -> Result<()> {
    fs::create_dir_all(pods_dir(engine))?;
    crate::runtime::fsutil::write_atomically(
        &record_path(engine, &r.name),
        serde_json::to_string_pretty(r)?.as_bytes(),
    )?;
    Ok(())
}

pub fn load(engine: &Engine, name: &str) -> Result<Option<PodRecord>> {
    match fs::read(record_path(engine, name)) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).with_context(|| format!("pod record {name}"))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("pod {name}")),
    }
}

/// The pod `arg` names: its name or a prefix of its id.
pub fn lookup(engine: &Engine, arg: &str) -> Result<PodRecord> {
    if let Some(r) = load(engine, arg)? {
        return Ok(r);
    }
    let found: Vec<PodRecord> = list(engine)?
        .into_iter()
        .filter(|p| !arg.is_empty() && p.id.starts_with(arg))
        .collect();
    match found.len() {
        1 => Ok(found.into_iter().next().unwrap()),
        0 => bail!("no pod with name or ID {arg} found: no such pod"),
        _ => bail!("more than one pod matches {arg}"),
    }
}

pub fn list(engine: &Engine) -> Result<Vec<PodRecord>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(pods_dir(engine)) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for e in rd {
        let n = e?.file_name().to_string_lossy().into_owned();
        if let Some(name) = n.strip_suffix(".json") {
            if let Some(r) = load(engine, name)? {
                out.push(r);
            }
        }
    }
    out.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(out)
}

/// The pod's containers, the infra container first, then by creation: those labelled as the
/// pod's, and those its record names (a create killed before the labels were written leaves
/// a container with its name only; the record names it before it is made).
pub fn containers(engine: &Engine, name: &str) -> Result<Vec<Container>> {
    let named: Vec<String> = match load(engine, name)? {
        Some(r) => std::iter::once(r.infra).chain(r.containers).collect(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for id in engine.ids()? {
        let Ok(c) = engine.open(&id) else { continue };
        if c.record.config.labels.get(POD_LABEL).map(String::as_str) == Some(name)
            || named.contains(&c.record.name)
        {
            out.push(c);
        }
    }
    out.sort_by(|a, b| {
        let infra = |c: &Container| !c.record.config.labels.contains_key(INFRA_LABEL);
        (infra(a), &a.record.created).cmp(&(infra(b), &b.record.created))
    });
    Ok(out)
}

const INFRA_LABEL: &str = "io.berth.pod.infra";

/// The pause program, built by build.rs.
static PAUSE_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// The pause image's name.
pub fn pause_image() -> String {
    format!("localhost/berth-pause:{}", env!("CARGO_PKG_VERSION"))
}

/// Makes the pause image in the store unless it is there: one layer with `/pause`.
pub fn ensure_pause_image(store: &Store) -> Result<String> {
    let name = pause_image();
    let r: crate::image::reference::Reference = name.parse()?;
    if store.resolve(&r).is_ok() {
        return Ok(name);
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(PAUSE_ELF.len() as u64);
    h.set_mode(0o755);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "pause", PAUSE_ELF)?;
    let layer = tar.into_inner()?;
    crate::image::import::import_tarball(
        store,
        &mut std::io::Cursor::new(layer),
        &r,
        &["CMD [\"/pause\"]".to_string()],
    )
    .context("making the pause image")?;
    Ok(name)
}

/// What a pod is made with.
pub struct PodSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<String>,
    /// Host ports shared with other pods, balanced over them (`HOST:CPORT/PROTO`).
    pub balanced_ports: Vec<String>,
    pub hostname: Option<String>,
    /// An image whose `sleep` the infra container runs; None: berth's pause image.
    pub infra_image: Option<String>,
    pub pull: String,
    pub config_hash: String,
    pub file: String,
    /// The network the infra container joins (the default network when None).
    pub network: Option<String>,
    /// Its DNS aliases there (the Services that select the pod).
    pub aliases: Vec<String>,
}

/// One container of a pod: the engine's flags, less the namespaces the pod gives.
pub struct Member {
    pub flags: CreateFlags,
    pub security: SecurityFlags,
    pub resources: ResourceFlags,
    pub image: String,
    pub command: Vec<String>,
}

pub fn status(engine: &Engine, name: &str) -> Result<&'static str> {
    let cs = containers(engine, name)?;
    if cs.is_empty() {
        return Ok("Created");
    }
    let st: Vec<Status> = cs.iter().map(|c| c.status(engine)).collect();
    let running = st.iter().filter(|s| s.is_active()).count();
    Ok(if running == st.len() {
        "Running"
    } else if running == 0 {
        if st.iter().all(|s| *s == Status::Created) {
            "Created"
        } else {
            "Exited"
        }
    } else if running == 1 && cs[0].record.config.labels.contains_key(INFRA_LABEL) {
        // Only the infra container runs: the pod's work is done (a Job) or stopped.
        "Exited"
    } else {
        "Degraded"
    })
}

/// `pod create`: the record and the infra container, started (its namespaces exist only
/// while it runs). On failure everything made is removed.
pub fn create(engine: &Engine, store: &Store, spec: &PodSpec) -> Result<PodRecord> {
    if !crate::engine::record::valid_name(&spec.name) {
        bail!("invalid pod name {:?}", spec.name);
    }
    if load(engine, &spec.name)?.is_some() {
        bail!("pod {} already exists", spec.name);
    }
    let id = engine.new_id()?;
    let infra = format!("{}-infra", &id[..12]);
    let rec = PodRecord {
        name: spec.name.clone(),
        id,
        created: crate::image::time::now_rfc3339_nanos(),
        labels: spec.labels.clone(),
        infra: infra.clone(),
        containers: Vec::new(),
        ports: spec
            .ports
            .iter()
            .chain(&spec.balanced_ports)
            .cloned()
            .collect(),
        config_hash: spec.config_hash.clone(),
        file: spec.file.clone(),
        volumes: Vec::new(),
        dirs: Vec::new(),
    };
    save(engine, &rec)?;
    let made = (|| {
        let mut labels = vec![
            format!("{POD_LABEL}={}", spec.name),
            format!("{INFRA_LABEL}=true"),
        ];
        labels.extend(spec.labels.iter().map(|(k, v)| format!("{k}={v}")));
        let (image, command, stop_signal) = match &spec.infra_image {
            Some(i) => (
                i.clone(),
                vec!["sleep".to_string(), "2147483647".to_string()],
                "SIGKILL",
            ),
            None => (ensure_pause_image(store)?, Vec::new(), "SIGTERM"),
        };
        let flags = CreateFlags {
            name: Some(infra.clone()),
            hostname: Some(spec.hostname.clone().unwrap_or_else(|| spec.name.clone())),
            label: labels,
            restart: "no".into(),
            stop_signal: Some(stop_signal.into()),
            pull: if spec.infra_image.is_some() {
                spec.pull.clone()
            } else {
                "never".into()
            },
            publish: spec.ports.clone(),
            publish_balanced: spec.balanced_ports.clone(),
            ipc: Some("shareable".into()),
            network: spec.network.clone(),
            network_alias: spec.aliases.clone(),
            log_driver: "json-file".into(),
            ..Default::default()
        };
        let mut c = create::create(
            engine,
            store,
            &CreateRequest {
                flags: &flags,
                image: &image,
                command: &command,
                attach_stdin_once: false,
                extra: &[],
            },
        )
        .context("the pod's infra container")?;
        lifecycle::start(engine, store, &mut c, None)
            .map_err(|e| anyhow::anyhow!("the pod's infra container: {}", e.message))?;
        Ok(())
    })();
    if let Err(e) = made {
        let _ = remove_pod(engine, &spec.name, true);
        return Err(e);
    }
    Ok(rec)
}

/// Makes container `m` in pod `pod` (joining its namespaces); `start` starts it.
pub fn add_container(
    engine: &Engine,
    store: &Store,
    pod: &mut PodRecord,
    m: &mut Member,
    start: bool,
) -> Result<Container> {
    m.flags.network = Some(format!("container:{}", pod.infra));
    m.flags.ipc = Some(format!("container:{}", pod.infra));
    m.flags.uts = Some(format!("container:{}", pod.infra));
    m.flags.label.push(format!("{POD_LABEL}={}", pod.name));
    if !pod.config_hash.is_empty() {
        m.flags
            .label
            .push(format!("io.berth.kube.config-hash={}", pod.config_hash));
    }
    m.security.shares_host_pid_or_ipc = false;
    for w in crate::engine::security::prepare_options(&mut m.security, &m.resources)? {
        eprintln!("WARNING: {w}");
    }
    // Named in the record before it is made: a `rm` after a crash finds it.
    let name = m
        .flags
        .name
        .clone()
        .context("a pod's container needs a name")?;
    pod.containers.push(name.clone());
    save(engine, pod)?;
    let made = create::create(
        engine,
        store,
        &CreateRequest {
            flags: &m.flags,
            image: &m.image,
            command: &m.command,
            attach_stdin_once: false,
            extra: &[&m.security, &m.resources],
        },
    );
    let mut c = match made {
        Ok(c) => c,
        Err(e) => {
            pod.containers.retain(|n| n != &name);
            save(engine, pod)?;
            return Err(e);
        }
    };
    if start {
        lifecycle::start(engine, store, &mut c, None)
            .map_err(|e| anyhow::anyhow!("{}: {}", c.record.name, e.message))?;
    }
    Ok(c)
}

/// `pod start`: the infra container, then the others in their order.
pub fn start(engine: &Engine, store: &Store, name: &str) -> Result<()> {
    for mut c in containers(engine, name)? {
        if c.status(engine).is_active() {
            continue;
        }
        lifecycle::start(engine, store, &mut c, None)
            .map_err(|e| anyhow::anyhow!("{}: {}", c.record.name, e.message))?;
    }
    Ok(())
}

/// `pod stop`: the containers, then the infra container.
pub fn stop(engine: &Engine, name: &str, timeout: Option<i64>) -> Result<()> {
    let mut cs = containers(engine, name)?;
    cs.reverse();
    for mut c in cs {
        lifecycle::stop(engine, &mut c, timeout)
            .with_context(|| format!("stopping {}", c.record.name))?;
    }
    Ok(())
}

/// `pod rm`: refused while a container runs unless `force`; removes the containers, the
/// volumes and directories made for the pod, and its record.
pub fn remove_pod(engine: &Engine, name: &str, force: bool) -> Result<()> {
    let rec = load(engine, name)?;
    let mut cs = containers(engine, name)?;
    if !force {
        if let Some(c) = cs.iter().find(|c| c.status(engine).is_active()) {
            bail!(
                "pod {name} has running container {}: stop it first or use --force",
                c.record.name
            );
        }
    }
    cs.reverse();
    for c in &mut cs {
        remove::remove_with_volumes(engine, c, remove::Caller::Command, true)
            .with_context(|| format!("removing {}", c.record.name))?;
    }
    if let Some(rec) = &rec {
        // A name the record has that no container has: its create was killed, maybe before
        // the engine wrote any record (a directory without one, dead, which only `rm -f`
        // clears). Those directories go too.
        let interrupted = std::iter::once(&rec.infra)
            .chain(&rec.containers)
            .any(|n| engine.lookup(n).is_err());
        if interrupted {
            for id in engine.ids()? {
                let Ok(mut c) = engine.open(&id) else {
                    continue;
                };
                if !c.dir.join(crate::engine::record::RECORD_FILE).exists()
                    && c.status(engine) == Status::Dead
                {
                    let _ = remove::remove(engine, &mut c, remove::Caller::Command);
                }
            }
        }
    }
    if let Some(rec) = rec {
        let vols = VolumeStore::open(&engine.data_root)?;
        let alive = |id: &str| engine.container_dir(id).exists();
        for v in &rec.volumes {
            vols.remove(v, true, &alive)
                .with_context(|| format!("removing volume {v}"))?;
        }
        for d in &rec.dirs {
            let _ = fs::remove_dir_all(d);
        }
    }
    let _ = fs::remove_dir_all(files_dir(engine, name));
    match fs::remove_file(record_path(engine, name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}
