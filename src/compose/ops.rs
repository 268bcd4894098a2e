//! What the commands do to a project: `up` (networks, volumes, then each service's containers
//! in dependency order, waiting for their conditions; unchanged containers kept, changed ones
//! recreated; on an error everything this `up` made is removed again), `down`, and the
//! per-container verbs over the project's containers (found by their labels).

use super::load::Loaded;
use super::model::Model;
use super::plan::{self, HASH, NETWORK, NUMBER, PROJECT, SERVICE, VOLUME};
use crate::engine::create::{self, CreateRequest};
use crate::engine::lifecycle;
use crate::engine::record::{Container, Engine, Status};
use crate::engine::remove;
use crate::engine::volume::VolumeStore;
use crate::image::store::Store;
use crate::network::publish;
use crate::network::store::{CreateOptions, Store as NetStore};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub struct Project {
    pub name: String,
    pub loaded: Loaded,
    pub model: Model,
    pub profiles: Vec<String>,
}

impl Project {
    /// The services `up` and friends act on: the named ones (else all enabled by the active
    /// profiles), with their dependencies unless `no_deps`, in dependency order.
    pub fn select(&self, names: &[String], no_deps: bool) -> Result<Vec<String>> {
        for n in names {
            if !self.model.services.contains_key(n) {
                bail!("no such service: {n}");
            }
        }
        let wanted: Vec<String> = if names.is_empty() {
            self.model
                .services
                .values()
                .filter(|s| {
                    s.profiles.is_empty() || s.profiles.iter().any(|p| self.profiles.contains(p))
                })
                .map(|s| s.name.clone())
                .collect()
        } else {
            names.to_vec()
        };
        let ordered = self.model.order(&wanted)?;
        Ok(if no_deps {
            ordered.into_iter().filter(|n| wanted.contains(n)).collect()
        } else {
            ordered
        })
    }
}

/// The project's containers (by label), ordered by service and number.
pub fn containers(
    engine: &Engine,
    project: &str,
    services: &[String],
    oneoff: bool,
) -> Result<Vec<Container>> {
    let mut list: Vec<Container> = engine
        .all()?
        .into_iter()
        .filter(|c| c.record.config.labels.get(PROJECT).map(String::as_str) == Some(project))
        .filter(|c| {
            services.is_empty()
                || c.record
                    .config
                    .labels
                    .get(SERVICE)
                    .is_some_and(|s| services.contains(s))
        })
        .filter(|c| {
            oneoff || c.record.config.labels.get(plan::ONEOFF).map(String::as_str) != Some("True")
        })
        .collect();
    list.sort_by_key(|c| {
        (
            c.record
                .config
                .labels
                .get(SERVICE)
                .cloned()
                .unwrap_or_default(),
            c.record
                .config
                .labels
                .get(NUMBER)
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    Ok(list)
}

/// What an `up` made, removed again when it fails.
#[derive(Default)]
struct Made {
    containers: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

#[derive(Default, Clone)]
pub struct UpOptions {
    pub services: Vec<String>,
    pub no_deps: bool,
    pub force_recreate: bool,
    pub no_recreate: bool,
    pub remove_orphans: bool,
    pub scale: BTreeMap<String, u32>,
    pub no_start: bool,
    pub wait: bool,
    /// Build images first (`--build`); `no_build`: never build, a missing image is an error.
    pub build: bool,
    pub no_build: bool,
}

/// Builds a service's image with the build layer (tagged with the service's image name).
pub fn build_service(engine: &Engine, p: &Project, name: &str) -> Result<()> {
    let s = &p.model.services[name];
    let Some(b) = &s.build else {
        return Ok(());
    };
    eprintln!(" Service {name}  Building");
    let args = crate::build::cli::BuildArgs {
        tags: vec![s.image.clone()],
        file: b
            .dockerfile
            .as_ref()
            .map(|d| b.context.join(d).to_string_lossy().into_owned()),
        build_args: b.args.clone(),
        target: b.target.clone(),
        no_cache: false,
        pull: false,
        platform: None,
        labels: b.labels.clone(),
        network: "default".into(),
        iidfile: None,
        quiet: true,
        output: None,
        context: vec![b.context.to_string_lossy().into_owned()],
    };
    match crate::build::cli::build_cmd(&engine.data_root, &engine.state_root, args) {
        0 => Ok(()),
        code => bail!("service {name:?}: building its image failed ({code})"),
    }
}

pub fn up(engine: &Engine, p: &Project, o: &UpOptions) -> Result<()> {
    let mut made = Made::default();
    let r = up_inner(engine, p, o, &mut made);
    if let Err(e) = r {
        undo(engine, &made);
        return Err(e);
    }
    Ok(())
}

fn undo(engine: &Engine, made: &Made) {
    for id in made.containers.iter().rev() {
        if let Ok(mut c) = engine.open(id) {
            let _ = lifecycle::stop(engine, &mut c, Some(0));
            let _ = remove::remove_with_volumes(engine, &mut c, remove::Caller::Command, true);
        }
    }
    if let Ok(ns) = NetStore::open(&engine.data_root) {
        for n in &made.networks {
            let _ = publish::remove_network(&ns, n);
        }
    }
    if let Ok(vs) = VolumeStore::open(&engine.data_root) {
        for v in &made.volumes {
            let _ = vs.remove(v, false, &|id| engine.container_dir(id).exists());
        }
    }
}

fn up_inner(engine: &Engine, p: &Project, o: &UpOptions, made: &mut Made) -> Result<()> {
    let order = p.select(&o.services, o.no_deps)?;
    // Images: built when asked, or when a service with build: has none yet.
    let images = Store::open(&engine.data_root)?;
    for name in &order {
        let s = &p.model.services[name];
        if s.build.is_none() {
            continue;
        }
        let have = s
            .image
            .parse::<crate::image::reference::Reference>()
            .ok()
            .is_some_and(|r| images.resolve(&r).is_ok());
        if o.build || (!have && !o.no_build) {
            build_service(engine, p, name)?;
        } else if !have {
            bail!(
                "service {name:?} has no image {} and --no-build was given",
                s.image
            );
        }
    }
    // Every container's flags first: a bad key fails before anything is made.
    let mut plans = Vec::new();
    let mut ports_seen: BTreeMap<String, String> = BTreeMap::new();
    for name in &order {
        let s = &p.model.services[name];
        let n = o.scale.get(name).copied().unwrap_or(s.replicas);
        let mut list = Vec::new();
        for i in 1..=n {
            let cp = plan::container_plan(&p.loaded, &p.model, &p.name, s, i, false)?;
            for spec in &cp.flags.publish {
                // A fixed host port asked twice is refused before anything starts.
                let parts: Vec<&str> = spec.split('/').next().unwrap_or("").split(':').collect();
                if parts.len() >= 2 && !parts[parts.len() - 2].is_empty() {
                    let key = format!(
                        "{}/{}",
                        parts[..parts.len() - 1].join(":"),
                        spec.split('/').nth(1).unwrap_or("tcp")
                    );
                    if let Some(other) = ports_seen.insert(key.clone(), cp.name.clone()) {
                        bail!("port conflict: {other} and {} both publish {key}", cp.name);
                    }
                }
            }
            list.push(cp);
        }
        plans.push((name.clone(), n, list));
    }
    let ns = NetStore::open(&engine.data_root)?;
    let vs = VolumeStore::open(&engine.data_root)?;
    // Networks the selected services use.
    let mut used_nets: Vec<&super::model::Network> = Vec::new();
    for (_, _, list) in &plans {
        for cp in list {
            let mut names: Vec<&String> = cp.more_networks.iter().map(|(n, _, _)| n).collect();
            if let Some(n) = &cp.flags.network {
                names.push(n);
            }
            for n in names {
                if let Some(net) = p.model.networks.values().find(|x| &x.name == n) {
                    if !used_nets.iter().any(|u| u.name == net.name) {
                        used_nets.push(net);
                    }
                }
            }
        }
    }
    for net in used_nets {
        if ns.get(&net.name).is_ok() {
            continue;
        }
        if net.external {
            bail!(
                "network {} declared as external, but could not be found",
                net.name
            );
        }
        let mut labels = net.labels.clone();
        labels.insert(PROJECT.into(), p.name.clone());
        labels.insert(NETWORK.into(), net.key.clone());
        eprintln!(" Network {}  Creating", net.name);
        publish::create_network(
            &ns,
            &CreateOptions {
                name: net.name.clone(),
                driver: Some("bridge".into()),
                subnet: net.subnet.clone(),
                internal: net.internal,
                labels,
                options: net.options.clone(),
                ..Default::default()
            },
        )
        .with_context(|| format!("network {}", net.name))?;
        made.networks.push(net.name.clone());
    }
    for vol in p.model.volumes.values() {
        if vs.lookup(&vol.name)?.is_some() {
            continue;
        }
        if vol.external {
            bail!("external volume \"{}\" not found", vol.name);
        }
        let mut labels = vol.labels.clone();
        labels.insert(PROJECT.into(), p.name.clone());
        labels.insert(VOLUME.into(), vol.key.clone());
        eprintln!(" Volume \"{}\"  Creating", vol.name);
        vs.create(Some(&vol.name), &labels, &vol.options)?;
        made.volumes.push(vol.name.clone());
    }
    let store = Store::open(&engine.data_root)?;
    for (name, n, list) in plans {
        let s = &p.model.services[&name];
        if !o.no_start {
            for (dep, cond) in &s.depends_on {
                if order.contains(dep) {
                    wait_condition(engine, p, dep, cond)?;
                }
            }
        }
        let existing = containers(engine, &p.name, std::slice::from_ref(&name), false)?;
        // Replicas beyond the count go.
        for mut c in existing.iter().cloned() {
            let num: u32 = c
                .record
                .config
                .labels
                .get(NUMBER)
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            if num > n {
                eprintln!(" Container {}  Removing", c.record.name);
                lifecycle::stop(engine, &mut c, None)?;
                remove::remove(engine, &mut c, remove::Caller::Command)?;
            }
        }
        for cp in list {
            let hash = cp
                .flags
                .label
                .iter()
                .find_map(|l| l.strip_prefix(&format!("{HASH}=")))
                .unwrap_or("")
                .to_string();
            let current = engine.lookup(&cp.name).ok();
            // A built image made anew (another manifest under its name) recreates too.
            let same_image = |c: &Container| {
                s.build.is_none()
                    || cp
                        .image
                        .parse::<crate::image::reference::Reference>()
                        .ok()
                        .and_then(|r| store.resolve(&r).ok())
                        .is_some_and(|d| d.digest().to_string() == c.record.manifest)
            };
            let mut c = match current {
                Some(c)
                    if o.no_recreate
                        || (!o.force_recreate
                            && c.record.config.labels.get(HASH) == Some(&hash)
                            && same_image(&c)) =>
                {
                    eprintln!(" Container {}  Running", cp.name);
                    c
                }
                other => {
                    if let Some(mut old) = other {
                        eprintln!(" Container {}  Recreate", cp.name);
                        lifecycle::stop(engine, &mut old, None)?;
                        remove::remove(engine, &mut old, remove::Caller::Command)?;
                    } else {
                        eprintln!(" Container {}  Creating", cp.name);
                    }
                    let c = make(engine, &store, &cp)?;
                    made.containers.push(c.id().to_string());
                    c
                }
            };
            if !o.no_start {
                eprintln!(" Container {}  Starting", cp.name);
                lifecycle::start(engine, &store, &mut c, None)
                    .map_err(|e| anyhow!("container {}: {}", cp.name, e.message))?;
            }
        }
    }
    if o.wait {
        for name in &order {
            let healthcheck = containers(engine, &p.name, std::slice::from_ref(name), false)?
                .iter()
                .any(|c| {
                    c.record
                        .config
                        .healthcheck
                        .as_ref()
                        .is_some_and(crate::engine::health::is_enabled)
                });
            wait_condition(
                engine,
                p,
                name,
                if healthcheck {
                    "service_healthy"
                } else {
                    "service_started"
                },
            )?;
        }
    }
    if o.remove_orphans {
        remove_orphans(engine, p)?;
    }
    Ok(())
}

pub fn remove_orphans(engine: &Engine, p: &Project) -> Result<()> {
    for mut c in containers(engine, &p.name, &[], false)? {
        let svc = c
            .record
            .config
            .labels
            .get(SERVICE)
            .cloned()
            .unwrap_or_default();
        if !p.model.services.contains_key(&svc) {
            eprintln!(" Container {}  Removing orphan", c.record.name);
            lifecycle::stop(engine, &mut c, None)?;
            remove::remove(engine, &mut c, remove::Caller::Command)?;
        }
    }
    Ok(())
}

/// Makes one container with the engine's create, then joins its further networks.
pub fn make(engine: &Engine, store: &Store, cp: &plan::ContainerPlan) -> Result<Container> {
    let mut security = cp.security.clone();
    security.shares_host_pid_or_ipc =
        cp.flags.pid.as_deref() == Some("host") || cp.flags.ipc.as_deref() == Some("host");
    for w in crate::engine::security::prepare_options(&mut security, &cp.resources)? {
        eprintln!("WARNING: {w}");
    }
    let command: Vec<String> = cp.entry_rest.iter().chain(&cp.command).cloned().collect();
    let req = CreateRequest {
        flags: &cp.flags,
        image: &cp.image,
        command: &command,
        attach_stdin_once: false,
        extra: &[&security, &cp.resources],
    };
    let mut c =
        create::create(engine, store, &req).with_context(|| format!("container {}", cp.name))?;
    for (net, aliases, ip) in &cp.more_networks {
        let ip = ip
            .as_deref()
            .map(str::parse)
            .transpose()
            .context("ipv4_address")?;
        if let Err(e) = crate::network::endpoints::connect(engine, net, c.id(), ip, aliases) {
            let _ = remove::remove(engine, &mut c, remove::Caller::Command);
            return Err(e.context(format!("container {}: network {net}", cp.name)));
        }
    }
    // `connect` wrote the further networks into the record on disk (`reload` reads only the
    // state): the start must see them, or the container joins its first network alone.
    engine.lookup(c.id())
}

/// Waits (up to 5 minutes) for a dependency's condition.
fn wait_condition(engine: &Engine, p: &Project, dep: &str, cond: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = containers(engine, &p.name, &[dep.to_string()], false)?;
        if list.is_empty() {
            bail!("dependency {dep} has no container");
        }
        let mut all = true;
        for c in &list {
            let st = c.status(engine);
            let ok = match cond {
                "service_healthy" => {
                    let h = c.state.health.as_ref().map(|h| h.status.as_str());
                    if h == Some("unhealthy") {
                        bail!(
                            "dependency failed to start: container {} is unhealthy",
                            c.record.name
                        );
                    }
                    if h.is_none() {
                        bail!("dependency {dep} has no healthcheck (condition service_healthy)");
                    }
                    if st == Status::Exited {
                        bail!("dependency {dep}: container {} exited", c.record.name);
                    }
                    h == Some("healthy")
                }
                "service_completed_successfully" => {
                    if st == Status::Exited {
                        let code = c.exit_code(engine);
                        if code != 0 {
                            bail!("service {dep:?} didn't complete successfully: exit {code}");
                        }
                        true
                    } else {
                        false
                    }
                }
                _ => st.is_active() || st == Status::Exited,
            };
            all &= ok;
        }
        if all {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {dep} ({cond})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many levels of services depend on `svc` (0: none does).
fn dependents_depth(m: &Model, svc: &str, guard: usize) -> usize {
    if guard > m.services.len() {
        return 0;
    }
    m.services
        .values()
        .filter(|s| s.depends_on.contains_key(svc))
        .map(|s| 1 + dependents_depth(m, &s.name, guard + 1))
        .max()
        .unwrap_or(0)
}

/// `down --rmi`: the images of the project's services, once its containers are gone; with
/// `all` every service's image, else only those without an `image:` of their own (the
/// PROJECT-SERVICE images `build` makes). Images the store does not have are passed over, as
/// Compose does; one still used by another container is an error naming it.
pub fn remove_images(engine: &Engine, p: &Project, all: bool) -> Result<()> {
    let store = Store::open(&engine.data_root)?;
    let mut names: Vec<&str> = p
        .model
        .services
        .values()
        .filter(|s| all || (s.build.is_some() && !s.raw.contains_key("image")))
        .map(|s| s.image.as_str())
        .collect();
    names.sort();
    names.dedup();
    let mut errors = Vec::new();
    for name in names {
        let present = name
            .parse::<crate::image::reference::Reference>()
            .is_ok_and(|r| store.resolve(&r).is_ok());
        if !present {
            continue;
        }
        eprintln!(" Image {name}  Removing");
        if let Err(e) = store.remove_image(name, false) {
            errors.push(format!("image {name}: {e:#}"));
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

/// `down`: the project's containers (all of them, by label), its networks, and with
/// `volumes` its volumes.
pub fn down(engine: &Engine, project: &str, volumes: bool, p: Option<&Project>) -> Result<()> {
    let mut errors = Vec::new();
    let mut list = containers(engine, project, &[], true)?;
    // A container an interrupted `up` left before its labels were written: found by name.
    if let Some(p) = p {
        for s in p.model.services.values() {
            for n in 1..=s.replicas.max(1) {
                let name = plan::container_name(project, s, n);
                if let Ok(c) = engine.lookup(&name) {
                    if !c.record.complete && !list.iter().any(|x| x.id() == c.id()) {
                        list.push(c);
                    }
                }
            }
        }
    }
    // Dependents before their dependencies (as Compose); the containers of one level at once.
    let depth = |c: &Container| -> usize {
        let svc = c.record.config.labels.get(SERVICE);
        match (p, svc) {
            (Some(p), Some(svc)) if p.model.services.contains_key(svc) => {
                1 + dependents_depth(&p.model, svc, 0)
            }
            // Orphans and containers of an unknown file first.
            _ => 0,
        }
    };
    let mut levels: BTreeMap<usize, Vec<Container>> = BTreeMap::new();
    for c in list {
        levels.entry(depth(&c)).or_default().push(c);
    }
    for (_, level) in levels {
        let results: Vec<(String, Result<()>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = level
                .into_iter()
                .map(|mut c| {
                    scope.spawn(move || {
                        eprintln!(" Container {}  Removing", c.record.name);
                        let r = lifecycle::stop(engine, &mut c, None).and_then(|()| {
                            remove::remove_with_volumes(
                                engine,
                                &mut c,
                                remove::Caller::Command,
                                true,
                            )
                        });
                        (c.record.name.clone(), r)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("stopping thread"))
                .collect()
        });
        for (name, r) in results {
            if let Err(e) = r {
                errors.push(format!("{name}: {e:#}"));
            }
        }
    }
    let ns = NetStore::open(&engine.data_root)?;
    for net in ns.list()? {
        if net.labels.get(PROJECT).map(String::as_str) == Some(project) {
            eprintln!(" Network {}  Removing", net.name);
            if let Err(e) = publish::remove_network(&ns, &net.name) {
                errors.push(format!("network {}: {e:#}", net.name));
            }
        }
    }
    if volumes {
        let vs = VolumeStore::open(&engine.data_root)?;
        let mut names: Vec<String> = vs
            .list()?
            .into_iter()
            .filter(|v| v.labels.get(PROJECT).map(String::as_str) == Some(project))
            .map(|v| v.name)
            .collect();
        if let Some(p) = p {
            for v in p.model.volumes.values().filter(|v| !v.external) {
                if !names.contains(&v.name) && vs.lookup(&v.name)?.is_some() {
                    names.push(v.name.clone());
                }
            }
        }
        for v in names {
            eprintln!(" Volume {v}  Removing");
            if let Err(e) = vs.remove(&v, false, &|id| engine.container_dir(id).exists()) {
                errors.push(format!("volume {v}: {e:#}"));
            }
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}
