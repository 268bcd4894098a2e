//! `berth compose [-f FILE]... [-p NAME] [--env-file F] [--profile P] [--project-directory D]
//! CMD`.

use super::load;
use super::model::Model;
use super::ops::{self, Project, UpOptions};
use super::plan::{self, SERVICE};
use crate::engine::lifecycle::{self, ExecRequest};
use crate::engine::logs;
use crate::engine::record::{Container, Engine};
use crate::engine::remove;
use crate::image::registry::client::TransportOptions;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Args, Debug)]
pub struct ComposeArgs {
    /// Compose configuration files.
    #[arg(short = 'f', long = "file")]
    pub file: Vec<PathBuf>,
    /// Project name.
    #[arg(short = 'p', long = "project-name")]
    pub project_name: Option<String>,
    /// An alternate environment file.
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Profiles to enable.
    #[arg(long)]
    pub profile: Vec<String>,
    /// The project's working directory (default: the first file's directory).
    #[arg(long)]
    pub project_directory: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ComposeCommand,
}

#[derive(Args, Debug)]
pub struct ServicesArg {
    pub services: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ComposeCommand {
    /// Create and start containers.
    Up {
        #[arg(short, long)]
        detach: bool,
        #[arg(long)]
        build: bool,
        #[arg(long)]
        no_build: bool,
        #[arg(long)]
        scale: Vec<String>,
        #[arg(long)]
        no_deps: bool,
        #[arg(long)]
        force_recreate: bool,
        #[arg(long)]
        no_recreate: bool,
        #[arg(long)]
        remove_orphans: bool,
        #[arg(long)]
        wait: bool,
        services: Vec<String>,
    },
    /// Create containers without starting them.
    Create {
        #[arg(long)]
        force_recreate: bool,
        #[arg(long)]
        no_recreate: bool,
        #[arg(long)]
        scale: Vec<String>,
        services: Vec<String>,
    },
    /// Stop and remove containers, networks (and volumes with -v).
    Down {
        #[arg(short, long)]
        volumes: bool,
        #[arg(long)]
        remove_orphans: bool,
        /// Remove the images too: `local`, those without a name of their own (built ones
        /// named PROJECT-SERVICE); `all`, every service's image.
        #[arg(long, value_parser = ["local", "all"])]
        rmi: Option<String>,
    },
    /// List containers.
    Ps {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        quiet: bool,
        services: Vec<String>,
    },
    /// View output from containers.
    Logs {
        #[arg(short, long)]
        follow: bool,
        #[arg(long, default_value = "all")]
        tail: String,
        #[arg(short, long)]
        timestamps: bool,
        #[arg(long)]
        no_log_prefix: bool,
        /// Entries since an RFC 3339 time, a Unix time or a duration before now (`10m`).
        #[arg(long)]
        since: Option<String>,
        /// Entries before such a time.
        #[arg(long)]
        until: Option<String>,
        services: Vec<String>,
    },
    /// Parse, resolve and render the compose file.
    Config {
        #[arg(long)]
        services: bool,
        #[arg(long)]
        volumes: bool,
        #[arg(short, long)]
        quiet: bool,
    },
    Start(ServicesArg),
    Stop {
        #[arg(short, long)]
        timeout: Option<i64>,
        services: Vec<String>,
    },
    Restart {
        #[arg(short, long)]
        timeout: Option<i64>,
        services: Vec<String>,
    },
    Kill {
        #[arg(short, long, default_value = "SIGKILL")]
        signal: String,
        services: Vec<String>,
    },
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(short, long)]
        stop: bool,
        #[arg(short, long)]
        volumes: bool,
        services: Vec<String>,
    },
    Pause(ServicesArg),
    Unpause(ServicesArg),
    /// Execute a command in a running container.
    Exec {
        #[arg(short, long)]
        detach: bool,
        #[arg(short = 'T', long = "no-TTY")]
        no_tty: bool,
        #[arg(short, long)]
        env: Vec<String>,
        #[arg(short, long)]
        user: Option<String>,
        #[arg(short, long)]
        workdir: Option<String>,
        #[arg(long, default_value_t = 1)]
        index: u32,
        service: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Print the public port of a port binding.
    Port {
        #[arg(long, default_value = "tcp")]
        protocol: String,
        #[arg(long, default_value_t = 1)]
        index: u32,
        service: String,
        private_port: u16,
    },
    /// List images used by the created containers.
    Images(ServicesArg),
    /// Display the running processes.
    Top(ServicesArg),
    /// Pull the services' images.
    Pull(ServicesArg),
    /// Push the services' images.
    Push(ServicesArg),
    /// Build the services' images.
    Build(ServicesArg),
    /// Run a one-off command on a service.
    Run {
        #[arg(short, long)]
        detach: bool,
        #[arg(long)]
        rm: bool,
        #[arg(short, long)]
        env: Vec<String>,
        #[arg(long)]
        no_deps: bool,
        #[arg(long)]
        name: Option<String>,
        #[arg(short, long)]
        user: Option<String>,
        #[arg(short, long)]
        workdir: Option<String>,
        #[arg(long)]
        entrypoint: Option<String>,
        #[arg(short = 'T', long = "no-TTY")]
        no_tty: bool,
        service: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

fn parse_scale(list: &[String]) -> Result<std::collections::BTreeMap<String, u32>> {
    list.iter()
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .with_context(|| format!("--scale {s}: SERVICE=N"))?;
            Ok((
                k.to_string(),
                v.parse().with_context(|| format!("--scale {s}"))?,
            ))
        })
        .collect()
}

/// Loads the project the flags name.
pub fn project(a: &ComposeArgs) -> Result<Project> {
    let cwd = std::env::current_dir()?;
    let files = load::discover(&a.file, &cwd)?;
    let project_dir = match &a.project_directory {
        Some(d) => cwd.join(d),
        None => files[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or(cwd.clone()),
    };
    let loaded = load::load(&files, &project_dir, a.env_file.as_deref())?;
    let from_file = loaded.doc.get("name").map(load::scalar_string);
    let raw_name = a
        .project_name
        .clone()
        .or_else(|| {
            std::env::var("COMPOSE_PROJECT_NAME")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or(from_file)
        .unwrap_or_else(|| {
            project_dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let name = plan::normalize_project(&raw_name);
    if name.is_empty() {
        bail!("project name {raw_name:?} must contain a letter or digit");
    }
    let model = Model::read(&loaded, &name)?;
    let mut profiles = a.profile.clone();
    if let Ok(p) = std::env::var("COMPOSE_PROFILES") {
        profiles.extend(p.split(',').filter(|s| !s.is_empty()).map(String::from));
    }
    Ok(Project {
        name,
        loaded,
        model,
        profiles,
    })
}

pub fn run(data_root: &Path, state_root: &Path, a: ComposeArgs) -> i32 {
    let engine = Engine::new(data_root, state_root);
    match dispatch(&engine, a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth compose: {e:#}");
            1
        }
    }
}

fn for_each(
    engine: &Engine,
    p: &Project,
    services: &[String],
    all: bool,
    mut f: impl FnMut(&mut Container) -> Result<()>,
) -> Result<i32> {
    for s in services {
        if !p.model.services.contains_key(s) {
            bail!("no such service: {s}");
        }
    }
    let mut code = 0;
    for mut c in ops::containers(engine, &p.name, services, all)? {
        if let Err(e) = f(&mut c) {
            eprintln!("{}: {e:#}", c.record.name);
            code = 1;
        }
    }
    Ok(code)
}

fn dispatch(engine: &Engine, a: ComposeArgs) -> Result<i32> {
    let p = project(&a)?;
    match a.command {
        ComposeCommand::Up {
            detach,
            build,
            no_build,
            scale,
            no_deps,
            force_recreate,
            no_recreate,
            remove_orphans,
            wait,
            services,
        } => {
            let o = UpOptions {
                services: services.clone(),
                no_deps,
                force_recreate,
                no_recreate,
                remove_orphans,
                scale: parse_scale(&scale)?,
                no_start: false,
                wait,
                build,
                no_build,
            };
            ops::up(engine, &p, &o)?;
            if !detach {
                // Attached: the logs until every container exits or ^C, which stops them
                // (Compose's "Gracefully stopping...").
                on_interrupt()?;
                let code = print_logs(
                    engine,
                    &p,
                    &services,
                    &logs::ReadOptions {
                        follow: true,
                        ..Default::default()
                    },
                    true,
                )?;
                if INTERRUPTED.load(Ordering::SeqCst) {
                    eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
                    restore_interrupt();
                    for mut c in ops::containers(engine, &p.name, &services, false)? {
                        eprintln!(" Container {}  Stopping", c.record.name);
                        lifecycle::stop(engine, &mut c, None)?;
                    }
                    return Ok(130);
                }
                return Ok(code);
            }
            Ok(0)
        }
        ComposeCommand::Create {
            force_recreate,
            no_recreate,
            scale,
            services,
        } => {
            let o = UpOptions {
                services,
                force_recreate,
                no_recreate,
                scale: parse_scale(&scale)?,
                no_start: true,
                ..Default::default()
            };
            ops::up(engine, &p, &o)?;
            Ok(0)
        }
        ComposeCommand::Down {
            volumes,
            remove_orphans: _,
            rmi,
        } => {
            ops::down(engine, &p.name, volumes, Some(&p))?;
            if let Some(mode) = rmi {
                ops::remove_images(engine, &p, mode == "all")?;
            }
            Ok(0)
        }
        ComposeCommand::Ps {
            all,
            quiet,
            services,
        } => {
            let list: Vec<Container> = ops::containers(engine, &p.name, &services, false)?
                .into_iter()
                .filter(|c| all || c.status(engine).is_active())
                .collect();
            if quiet {
                for c in &list {
                    println!("{}", c.id());
                }
                return Ok(0);
            }
            // Compose v2's columns: the engine's cells, and the service from its label.
            let mut rows = Vec::new();
            for c in &list {
                let line = crate::engine::present::ps_output(
                    engine,
                    std::slice::from_ref(c),
                    Some("{{.Names}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}"),
                    false,
                    false,
                )?;
                let cells: Vec<&str> = line.trim_end_matches('\n').split('\t').collect();
                let cell = |i: usize| cells.get(i).copied().unwrap_or("").to_string();
                let service = c
                    .record
                    .config
                    .labels
                    .get(SERVICE)
                    .cloned()
                    .unwrap_or_default();
                rows.push([
                    cell(0),
                    cell(1),
                    cell(2),
                    service,
                    cell(3),
                    cell(4),
                    cell(5),
                ]);
            }
            crate::table::write_table(
                &mut std::io::stdout().lock(),
                [
                    "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS",
                ],
                &rows,
            )?;
            Ok(0)
        }
        ComposeCommand::Logs {
            follow,
            tail,
            timestamps,
            no_log_prefix,
            since,
            until,
            services,
        } => {
            let time = |flag: &str, v: Option<String>| {
                v.map(|v| logs::parse_time_arg(flag, &v)).transpose()
            };
            let tail = match tail.as_str() {
                "all" | "" => None,
                n => Some(n.parse::<usize>().with_context(|| format!("--tail {n}"))?),
            };
            let o = logs::ReadOptions {
                follow,
                tail,
                timestamps,
                since: time("since", since)?,
                until: time("until", until)?,
            };
            print_logs(engine, &p, &services, &o, !no_log_prefix)
        }
        ComposeCommand::Config {
            services,
            volumes,
            quiet,
        } => {
            if quiet {
                return Ok(0);
            }
            if services {
                for s in p.model.services.keys() {
                    println!("{s}");
                }
                return Ok(0);
            }
            if volumes {
                for v in p.model.volumes.keys() {
                    println!("{v}");
                }
                return Ok(0);
            }
            print!("{}", config_yaml(&p)?);
            Ok(0)
        }
        ComposeCommand::Start(s) => for_each(engine, &p, &s.services, false, |c| {
            let store = crate::image::store::Store::open(&engine.data_root)?;
            eprintln!(" Container {}  Starting", c.record.name);
            lifecycle::start(engine, &store, c, None)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!(e.message))
        }),
        ComposeCommand::Stop { timeout, services } => for_each(engine, &p, &services, false, |c| {
            eprintln!(" Container {}  Stopping", c.record.name);
            lifecycle::stop(engine, c, timeout)
        }),
        ComposeCommand::Restart { timeout, services } => {
            for_each(engine, &p, &services, false, |c| {
                eprintln!(" Container {}  Restarting", c.record.name);
                lifecycle::stop(engine, c, timeout)?;
                let store = crate::image::store::Store::open(&engine.data_root)?;
                lifecycle::start(engine, &store, c, None)
                    .map(|_| ())
                    .map_err(|e| anyhow::anyhow!(e.message))
            })
        }
        ComposeCommand::Kill { signal, services } => {
            let sig = crate::engine::create::parse_signal(&signal)?;
            for_each(engine, &p, &services, false, |c| {
                if c.status(engine).is_active() {
                    lifecycle::kill(engine, c, sig)?;
                }
                Ok(())
            })
        }
        ComposeCommand::Rm {
            force: _,
            stop,
            volumes,
            services,
        } => for_each(engine, &p, &services, false, |c| {
            if c.status(engine).is_active() {
                if !stop {
                    return Ok(());
                }
                lifecycle::stop(engine, c, None)?;
            }
            eprintln!(" Container {}  Removing", c.record.name);
            remove::remove_with_volumes(engine, c, remove::Caller::Command, volumes)
        }),
        ComposeCommand::Pause(s) => for_each(engine, &p, &s.services, false, |c| {
            lifecycle::pause(engine, c)
        }),
        ComposeCommand::Unpause(s) => for_each(engine, &p, &s.services, false, |c| {
            lifecycle::unpause(engine, c)
        }),
        ComposeCommand::Exec {
            detach,
            no_tty: _,
            env,
            user,
            workdir,
            index,
            service,
            command,
        } => {
            let c = find(engine, &p, &service, index)?;
            let r = ExecRequest {
                args: command,
                env,
                user,
                workdir,
                tty: false,
                detach,
            };
            lifecycle::exec(engine, &c, &r)
        }
        ComposeCommand::Port {
            protocol,
            index,
            service,
            private_port,
        } => {
            let c = find(engine, &p, &service, index)?;
            for b in &c.state.ports {
                if b.container_port == private_port
                    && b.proto.as_str().eq_ignore_ascii_case(&protocol)
                {
                    println!("{}:{}", b.host_ip, b.host_port);
                    return Ok(0);
                }
            }
            bail!(
                "no port {private_port}/{protocol} for container {}",
                c.record.name
            );
        }
        ComposeCommand::Top(s) => {
            for c in ops::containers(engine, &p.name, &s.services, false)? {
                if !c.status(engine).is_active() {
                    continue;
                }
                let pids = crate::runtime::container::pids(&engine.runtime_globals(), c.id())?;
                let top = crate::engine::top::top(&pids, "")?;
                println!("{}", c.record.name);
                println!("{}", crate::engine::top::format_top(&top));
            }
            Ok(0)
        }
        ComposeCommand::Pull(s) => {
            let store = crate::image::store::Store::open(&engine.data_root)?;
            for name in p.select(&s.services, true)? {
                let svc = &p.model.services[&name];
                // As Compose v2: a service without `image:` has nothing to pull, and one that
                // can be built only warns when its image is not in the registry.
                if !svc.raw.contains_key("image") {
                    eprintln!(" {name} Skipped - No image to be pulled");
                    continue;
                }
                eprintln!(" {name} Pulling");
                let r = service_reference(&name, &svc.image)?;
                let o = crate::image::pull::PullOptions {
                    platform: None,
                    transport: TransportOptions::docker_engine(&r.registry),
                    auth_file: None,
                    quiet: true,
                    jobs: 4,
                };
                match crate::image::pull::pull(&store, &r, &o) {
                    Ok(_) => eprintln!(" {name} Pulled"),
                    Err(e) if svc.build.is_some() => {
                        eprintln!(" {name} Warning: {e:#}; it will be built")
                    }
                    Err(e) => return Err(e.context(format!("service {name}"))),
                }
            }
            Ok(0)
        }
        ComposeCommand::Push(s) => {
            let store = crate::image::store::Store::open(&engine.data_root)?;
            for name in p.select(&s.services, true)? {
                let svc = &p.model.services[&name];
                // As Compose v2: only the images the project builds and names are pushed.
                if svc.build.is_none() || !svc.raw.contains_key("image") {
                    continue;
                }
                eprintln!(" {name} Pushing");
                let r = service_reference(&name, &svc.image)?;
                let o = crate::image::push::PushOptions {
                    transport: TransportOptions::docker_engine(&r.registry),
                    auth_file: None,
                    quiet: true,
                    chunk_size: 0,
                    jobs: 4,
                };
                crate::image::push::push(&store, &r, &r, &o)
                    .with_context(|| format!("service {name}"))?;
                eprintln!(" {name} Pushed");
            }
            Ok(0)
        }
        ComposeCommand::Build(s) => {
            for name in p.select(&s.services, true)? {
                ops::build_service(engine, &p, &name)?;
            }
            Ok(0)
        }
        ComposeCommand::Run {
            detach,
            rm,
            env,
            no_deps,
            name,
            user,
            workdir,
            entrypoint,
            no_tty: _,
            service,
            command,
        } => run_oneoff(
            engine,
            &p,
            RunOneoff {
                detach,
                rm,
                env,
                no_deps,
                name,
                user,
                workdir,
                entrypoint,
                service,
                command,
            },
        ),
        ComposeCommand::Images(s) => {
            println!(
                "{:<24}{:<32}{:<16}{:<16}",
                "CONTAINER", "REPOSITORY", "TAG", "IMAGE ID"
            );
            for c in ops::containers(engine, &p.name, &s.services, false)? {
                let img = &c.record.config.image;
                let (repo, tag) = match img.rsplit_once(':') {
                    Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
                    _ => (img.clone(), "latest".into()),
                };
                let id = c.record.image.trim_start_matches("sha256:");
                println!(
                    "{:<24}{:<32}{:<16}{:<16}",
                    c.record.name,
                    repo,
                    tag,
                    &id[..id.len().min(12)]
                );
            }
            Ok(0)
        }
    }
}

struct RunOneoff {
    detach: bool,
    rm: bool,
    env: Vec<String>,
    no_deps: bool,
    name: Option<String>,
    user: Option<String>,
    workdir: Option<String>,
    entrypoint: Option<String>,
    service: String,
    command: Vec<String>,
}

/// `run`: the service's dependencies up (unless --no-deps), then a one-off container
/// `PROJECT-SERVICE-run-ID` (label oneoff=True, no published ports as Compose), its output
/// relayed; its exit code is run's.
fn run_oneoff(engine: &Engine, p: &Project, r: RunOneoff) -> Result<i32> {
    let s = p
        .model
        .services
        .get(&r.service)
        .with_context(|| format!("no such service: {}", r.service))?;
    if !r.no_deps && !s.depends_on.is_empty() {
        let deps: Vec<String> = s.depends_on.keys().cloned().collect();
        ops::up(
            engine,
            p,
            &UpOptions {
                services: deps,
                ..Default::default()
            },
        )?;
    }
    let mut cp = plan::container_plan(&p.loaded, &p.model, &p.name, s, 1, true)?;
    let suffix: String = crate::network::store::new_id()?.chars().take(12).collect();
    cp.name = r
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}-run-{suffix}", p.name, r.service));
    cp.flags.name = Some(cp.name.clone());
    cp.flags.publish.clear();
    cp.flags.restart = "no".into();
    cp.flags.env.extend(r.env);
    if r.user.is_some() {
        cp.flags.user = r.user;
    }
    if r.workdir.is_some() {
        cp.flags.workdir = r.workdir;
    }
    if let Some(e) = r.entrypoint {
        cp.flags.entrypoint = Some(e);
        cp.entry_rest.clear();
        cp.command.clear();
    }
    if !r.command.is_empty() {
        cp.command = r.command;
    }
    let store = crate::image::store::Store::open(&engine.data_root)?;
    let mut c = ops::make(engine, &store, &cp)?;
    if let Err(e) = lifecycle::start(engine, &store, &mut c, None) {
        let _ = remove::remove(engine, &mut c, remove::Caller::Command);
        bail!("{}", e.message);
    }
    if r.detach {
        println!("{}", cp.name);
        return Ok(0);
    }
    let mut watched = c.clone();
    let mut active = move || {
        watched.reload();
        watched.dir.exists() && watched.status(engine).is_active()
    };
    let o = logs::ReadOptions {
        follow: true,
        ..Default::default()
    };
    logs::print(
        &c.log_path(),
        &o,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
        &mut active,
    )?;
    let code = lifecycle::wait(engine, &mut c)?;
    if r.rm {
        remove::remove_with_volumes(engine, &mut c, remove::Caller::Command, true)?;
    }
    Ok(code)
}

fn find(engine: &Engine, p: &Project, service: &str, index: u32) -> Result<Container> {
    if !p.model.services.contains_key(service) {
        bail!("no such service: {service}");
    }
    ops::containers(engine, &p.name, &[service.to_string()], false)?
        .into_iter()
        .find(|c| {
            c.record.config.labels.get(plan::NUMBER).map(String::as_str) == Some(&index.to_string())
        })
        .with_context(|| format!("service {service:?} is not running"))
}

/// The resolved file, Compose's shape: the project name, services with their keys,
/// networks and volumes with their engine names.
fn config_yaml(p: &Project) -> Result<String> {
    use serde_yaml_ng::{Mapping, Value};
    let mut top = Mapping::new();
    top.insert("name".into(), p.name.clone().into());
    let mut services = Mapping::new();
    for (n, s) in &p.model.services {
        let mut raw = s.raw.clone();
        if !raw.contains_key("networks") && !raw.contains_key("network_mode") {
            let mut nets = Mapping::new();
            nets.insert("default".into(), Value::Null);
            raw.insert("networks".into(), Value::Mapping(nets));
        }
        services.insert(n.clone().into(), Value::Mapping(raw));
    }
    // The output is a compose file that loads again to the same project: a `$` that
    // interpolation left (written `$$`) is written `$$` again, as docker-compose writes it.
    let mut services = Value::Mapping(services);
    escape_dollars(&mut services);
    top.insert("services".into(), services);
    let mut nets = Mapping::new();
    for (k, n) in &p.model.networks {
        let mut m = Mapping::new();
        m.insert("name".into(), n.name.clone().into());
        if n.external {
            m.insert("external".into(), true.into());
        }
        nets.insert(k.clone().into(), Value::Mapping(m));
    }
    top.insert("networks".into(), Value::Mapping(nets));
    if !p.model.volumes.is_empty() {
        let mut vols = Mapping::new();
        for (k, v) in &p.model.volumes {
            let mut m = Mapping::new();
            m.insert("name".into(), v.name.clone().into());
            if v.external {
                m.insert("external".into(), true.into());
            }
            vols.insert(k.clone().into(), Value::Mapping(m));
        }
        top.insert("volumes".into(), Value::Mapping(vols));
    }
    Ok(serde_yaml_ng::to_string(&Value::Mapping(top))?)
}

/// `$` as `$$` in every string value under `v`.
fn escape_dollars(v: &mut serde_yaml_ng::Value) {
    use serde_yaml_ng::Value;
    match v {
        Value::String(s) if s.contains('$') => *s = s.replace('$', "$$"),
        Value::Sequence(items) => items.iter_mut().for_each(escape_dollars),
        Value::Mapping(m) => m.values_mut().for_each(escape_dollars),
        Value::Tagged(t) => escape_dollars(&mut t.value),
        _ => {}
    }
}

/// A writer that puts `prefix` before each line, for several containers' logs at once.
struct Prefixed {
    prefix: String,
    pending: Vec<u8>,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let mut o = self.out.lock().unwrap();
            o.write_all(self.prefix.as_bytes())?;
            o.write_all(&line)?;
            o.flush()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let mut line = std::mem::take(&mut self.pending);
            line.push(b'\n');
            let mut o = self.out.lock().unwrap();
            o.write_all(self.prefix.as_bytes())?;
            o.write_all(&line)?;
        }
        Ok(())
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn interrupted(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// SIGINT and SIGTERM set [`INTERRUPTED`] (which ends the attached `up`'s logs).
fn on_interrupt() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(interrupted),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(s, &action) }?;
    }
    Ok(())
}

/// The default dispositions again: a second ^C ends berth at once.
fn restore_interrupt() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for s in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: restoring the default disposition installs no handler.
        let _ = unsafe { sigaction(s, &action) };
    }
}

fn print_logs(
    engine: &Engine,
    p: &Project,
    services: &[String],
    o: &logs::ReadOptions,
    prefix: bool,
) -> Result<i32> {
    for s in services {
        if !p.model.services.contains_key(s) {
            bail!("no such service: {s}");
        }
    }
    let list = ops::containers(engine, &p.name, services, false)?;
    let width = list.iter().map(|c| c.record.name.len()).max().unwrap_or(0);
    let out: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(std::io::stdout())));
    let err: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(std::io::stderr())));
    std::thread::scope(|scope| {
        for c in &list {
            let pre = if prefix {
                format!("{:<width$}  | ", c.record.name)
            } else {
                String::new()
            };
            let (out, err) = (out.clone(), err.clone());
            let o = o.clone();
            scope.spawn(move || {
                let mut w_out = Prefixed {
                    prefix: pre.clone(),
                    pending: Vec::new(),
                    out,
                };
                let mut w_err = Prefixed {
                    prefix: pre,
                    pending: Vec::new(),
                    out: err,
                };
                let mut watched = c.clone();
                let mut active = move || {
                    watched.reload();
                    !INTERRUPTED.load(Ordering::SeqCst)
                        && watched.dir.exists()
                        && watched.status(engine).is_active()
                };
                let r = logs::print(&c.log_path(), &o, &mut w_out, &mut w_err, &mut active);
                let _ = w_out.flush();
                let _ = w_err.flush();
                if let Err(e) = r {
                    eprintln!("{}: {e:#}", c.record.name);
                }
            });
        }
    });
    Ok(0)
}

/// A service's image as a registry reference.
fn service_reference(service: &str, image: &str) -> Result<crate::image::reference::Reference> {
    image
        .parse()
        .with_context(|| format!("service {service}: image {image}"))
}
