//! The engine's commands: Docker's container verbs under `berth container VERB`, and the
//! top-level aliases Docker has where runc has no command of that name. `main.rs` flattens
//! [`EngineCommand`] into its command list and calls [`run`].
//!
//! Exit codes as Docker's: `run` and `create` give 125 for berth's own errors and the command's
//! 126/127 when it cannot be run; the other verbs give 1 on error.

use super::attach::{parse_detach_keys, ClientOptions};
use super::create::{self, CreateFlags, CreateRequest};
use super::inspect;
use super::layers_cli;
use super::lifecycle::{self, ExecRequest, Outcome};
use super::logs;
use super::record::{Container, Engine, NoSuchContainer, Status};
use super::remove;
use crate::image::store::Store;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::Path;

/// Commands that are Docker's (not runc's) at the top level too.
#[derive(Subcommand)]
pub enum EngineCommand {
    /// Manage containers.
    #[command(subcommand)]
    Container(Box<ContainerCommand>),
    /// Fetch the logs of a container.
    Logs(LogsArgs),
    /// Stop one or more running containers.
    Stop(StopArgs),
    /// Restart one or more containers.
    Restart(StopArgs),
    /// Remove one or more containers.
    Rm(RmArgs),
    /// Return low-level information on containers (or images).
    Inspect(InspectArgs),
    /// Block until one or more containers stop, then print their exit codes.
    Wait(NamesArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(AttachArgs),
    /// Unpause all processes within one or more containers.
    Unpause(NamesArgs),
    /// List port mappings or a specific mapping for the container.
    Port(PortArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(layers_cli::CpArgs),
    /// Create a new image from a container's changes.
    Commit(layers_cli::CommitArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(layers_cli::DiffArgs),
    /// Export a container's filesystem as a tar archive.
    Export(layers_cli::ExportArgs),
    /// Display a live stream of container(s) resource usage statistics.
    Stats(super::present::StatsArgs),
    /// Display the running processes of a container.
    Top(super::present::TopArgs),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(super::volume_cli::VolumeCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(crate::network::cli::NetworkCommand),
    /// Manage berth (disk usage, pruning).
    #[command(subcommand)]
    System(super::system::SystemCommand),
}

/// Whether `name` is one of the engine's top-level commands (Docker's exit codes apply).
pub fn is_engine_command(name: &str) -> bool {
    matches!(
        name,
        "container"
            | "system"
            | "logs"
            | "stop"
            | "restart"
            | "rm"
            | "inspect"
            | "wait"
            | "rename"
            | "attach"
            | "unpause"
            | "port"
            | "cp"
            | "commit"
            | "diff"
            | "export"
            | "stats"
            | "top"
            | "volume"
            | "network"
    )
}

#[derive(Subcommand)]
pub enum ContainerCommand {
    /// Create and run a new container from an image.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Create a new container.
    #[command(disable_help_flag = true)]
    Create(ContainerArgs),
    /// Start one or more stopped containers.
    Start(StartArgs),
    /// Stop one or more running containers.
    Stop(StopArgs),
    /// Restart one or more containers.
    Restart(StopArgs),
    /// Kill one or more running containers.
    Kill(KillArgs),
    /// Remove one or more containers.
    Rm(RmArgs),
    /// List containers.
    #[command(visible_aliases = ["ps", "list"])]
    Ls(PsArgs),
    /// Fetch the logs of a container.
    Logs(LogsArgs),
    /// Execute a command in a running container.
    Exec(ExecArgs),
    /// Attach local standard input, output, and error streams to a running container.
    Attach(AttachArgs),
    /// Display detailed information on one or more containers.
    Inspect(InspectArgs),
    /// Block until one or more containers stop, then print their exit codes.
    Wait(NamesArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Pause all processes within one or more containers.
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers.
    Unpause(NamesArgs),
    /// Remove all stopped containers.
    Prune(PruneArgs),
    /// List port mappings or a specific mapping for the container.
    Port(PortArgs),
    /// Copy files/folders between a container and the local filesystem.
    Cp(layers_cli::CpArgs),
    /// Create a new image from a container's changes.
    Commit(layers_cli::CommitArgs),
    /// Inspect changes to files or directories on a container's filesystem.
    Diff(layers_cli::DiffArgs),
    /// Export a container's filesystem as a tar archive.
    Export(layers_cli::ExportArgs),
    /// Display a live stream of container(s) resource usage statistics.
    Stats(super::present::StatsArgs),
    /// Display the running processes of a container.
    Top(super::present::TopArgs),
    /// Update configuration of one or more containers.
    Update(super::update::UpdateArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// Run container in background and print container ID.
    #[arg(short, long)]
    detach: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long)]
    detach_keys: Option<String>,
    /// Proxy received signals to the process.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    sig_proxy: bool,
    #[command(flatten)]
    container: ContainerArgs,
}

/// What `run` and `create` share: the container's options, the image and the command.
#[derive(Args)]
pub struct ContainerArgs {
    #[command(flatten)]
    create: CreateFlags,
    /// --privileged, --cap-add, --security-opt, --device, --ulimit, --sysctl (engine::security).
    #[command(flatten)]
    security: super::security::SecurityFlags,
    /// -m, --cpus, --pids-limit, ... (engine::resources).
    #[command(flatten)]
    resources: super::resources::ResourceFlags,
    /// Print help (-h is --hostname, as in Docker).
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE"
    )]
    image_and_command: Vec<String>,
}

#[derive(Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals.
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN.
    #[arg(short, long)]
    interactive: bool,
    #[arg(long)]
    detach_keys: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        allow_hyphen_values = true
    )]
    time: Option<i64>,
    /// Signal to send to the container.
    #[arg(short, long)]
    signal: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container.
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL).
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show the latest created container (includes all states).
    #[arg(short, long)]
    latest: bool,
    /// Show n last created containers (includes all states).
    #[arg(short = 'n', long, allow_hyphen_values = true)]
    last: Option<i64>,
    /// Display total file sizes.
    #[arg(short, long)]
    size: bool,
    /// Filter output based on conditions provided.
    #[arg(short, long)]
    filter: Vec<String>,
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json', or a Go
    /// template.
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all").
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    timestamps: bool,
    /// Show logs since timestamp or relative (e.g. 42m for 42 minutes).
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp or relative (e.g. 42m for 42 minutes).
    #[arg(long)]
    until: Option<String>,
    /// Show extra details provided to logs.
    #[arg(long)]
    details: bool,
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background.
    #[arg(short, long)]
    detach: bool,
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]").
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Set environment variables.
    #[arg(short, long)]
    env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long)]
    env_file: Vec<std::path::PathBuf>,
    /// CONTAINER COMMAND [ARG...]
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CONTAINER"
    )]
    container_and_command: Vec<String>,
}

#[derive(Args)]
pub struct AttachArgs {
    /// Do not attach STDIN.
    #[arg(long)]
    no_stdin: bool,
    #[arg(long)]
    detach_keys: Option<String>,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    sig_proxy: bool,
    container: String,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template.
    #[arg(short, long)]
    format: Option<String>,
    /// Display total file sizes.
    #[arg(short, long)]
    size: bool,
    /// Only inspect objects of the given type (container, image).
    #[arg(long = "type")]
    kind: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "until=24h", "label=a").
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct PortArgs {
    container: String,
    /// PRIVATE_PORT[/PROTO]
    port: Option<String>,
}

/// Runs an engine command; prints its own errors and returns the exit code.
pub fn run(data_root: &Path, state_root: &Path, cmd: EngineCommand) -> i32 {
    let engine = Engine::new(data_root, state_root);
    let result = match cmd {
        EngineCommand::Container(c) => container(&engine, *c),
        EngineCommand::Logs(a) => logs_cmd(&engine, &a),
        EngineCommand::Stop(a) => stop_cmd(&engine, &a, false),
        EngineCommand::Restart(a) => stop_cmd(&engine, &a, true),
        EngineCommand::Rm(a) => rm_cmd(&engine, &a),
        EngineCommand::Inspect(a) => inspect_cmd(&engine, &a),
        EngineCommand::Wait(a) => wait_cmd(&engine, &a),
        EngineCommand::Rename(a) => rename_cmd(&engine, &a),
        EngineCommand::Attach(a) => attach_cmd(&engine, &a),
        EngineCommand::Unpause(a) => each(&engine, &a.containers, |e, c| lifecycle::unpause(e, c)),
        EngineCommand::Port(a) => port_cmd(&engine, &a),
        EngineCommand::Cp(a) => layers_cli::cp_cmd(&engine, &a),
        EngineCommand::Commit(a) => layers_cli::commit_cmd(&engine, &a),
        EngineCommand::Diff(a) => layers_cli::diff_cmd(&engine, &a),
        EngineCommand::Export(a) => layers_cli::export_cmd(&engine, &a),
        EngineCommand::Stats(a) => super::present::stats_cmd(&engine, &a),
        EngineCommand::Top(a) => super::present::top_cmd(&engine, &a),
        EngineCommand::Volume(c) => super::volume_cli::run(&engine, c),
        EngineCommand::Network(c) => crate::network::cli::run(&engine, c),
        EngineCommand::System(c) => super::system::run(&engine, c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

fn container(engine: &Engine, cmd: ContainerCommand) -> Result<i32> {
    match cmd {
        ContainerCommand::Run(a) => Ok(run_cmd(engine, a)),
        ContainerCommand::Create(a) => Ok(create_cmd(engine, a)),
        ContainerCommand::Start(a) => start_cmd(engine, &a),
        ContainerCommand::Stop(a) => stop_cmd(engine, &a, false),
        ContainerCommand::Restart(a) => stop_cmd(engine, &a, true),
        ContainerCommand::Kill(a) => kill_cmd(engine, &a),
        ContainerCommand::Rm(a) => rm_cmd(engine, &a),
        ContainerCommand::Ls(a) => ps_cmd(engine, &a),
        ContainerCommand::Logs(a) => logs_cmd(engine, &a),
        ContainerCommand::Exec(a) => exec_cmd(engine, &a),
        ContainerCommand::Attach(a) => attach_cmd(engine, &a),
        ContainerCommand::Inspect(a) => inspect_cmd(engine, &a),
        ContainerCommand::Wait(a) => wait_cmd(engine, &a),
        ContainerCommand::Rename(a) => rename_cmd(engine, &a),
        ContainerCommand::Pause(a) => each(engine, &a.containers, |e, c| lifecycle::pause(e, c)),
        ContainerCommand::Unpause(a) => {
            each(engine, &a.containers, |e, c| lifecycle::unpause(e, c))
        }
        ContainerCommand::Prune(a) => prune_cmd(engine, &a),
        ContainerCommand::Port(a) => port_cmd(engine, &a),
        ContainerCommand::Cp(a) => layers_cli::cp_cmd(engine, &a),
        ContainerCommand::Commit(a) => layers_cli::commit_cmd(engine, &a),
        ContainerCommand::Diff(a) => layers_cli::diff_cmd(engine, &a),
        ContainerCommand::Export(a) => layers_cli::export_cmd(engine, &a),
        ContainerCommand::Stats(a) => super::present::stats_cmd(engine, &a),
        ContainerCommand::Top(a) => super::present::top_cmd(engine, &a),
        ContainerCommand::Update(a) => super::update::update_cmd(engine, &a),
    }
}

fn store_of(engine: &Engine) -> Result<Store> {
    Store::open(&engine.data_root)
}

/// Makes the container for `run` and `create`; errors are printed, with Docker's code.
fn make(
    engine: &Engine,
    a: &mut ContainerArgs,
    attach_stdin_once: bool,
    daemon_code: i32,
) -> std::result::Result<(Store, Container), i32> {
    let fail = |e: anyhow::Error| {
        eprintln!("berth: {e:#}");
        125
    };
    // Docker's client checks flags (125); what its daemon refuses gives `run` 125 and
    // `create` 1.
    let refused = |e: anyhow::Error| {
        eprintln!("berth: {e:#}");
        if e.downcast_ref::<create::FlagError>().is_some() {
            125
        } else {
            daemon_code
        }
    };
    let (flags, security, resources) = (&a.create, &mut a.security, &a.resources);
    // The security and resource flags are checked before anything is made.
    security.shares_host_pid_or_ipc =
        flags.pid.as_deref() == Some("host") || flags.ipc.as_deref() == Some("host");
    for warning in super::security::prepare_options(security, resources).map_err(fail)? {
        eprintln!("WARNING: {warning}");
    }
    let store = store_of(engine).map_err(fail)?;
    let (image, command) = a
        .image_and_command
        .split_first()
        .expect("clap requires IMAGE");
    let req = CreateRequest {
        flags,
        image,
        command,
        attach_stdin_once,
        extra: &[&*security, resources],
    };
    let c = create::create(engine, &store, &req).map_err(refused)?;
    Ok((store, c))
}

/// `--sig-proxy`: a signal this command gets goes to the container's init.
fn signal_proxy(engine: &Engine, id: &str) -> Box<dyn Fn(nix::sys::signal::Signal)> {
    let g = engine.runtime_globals();
    let id = id.to_string();
    Box::new(move |s| {
        let _ = crate::runtime::container::kill_container(&g, &id, s, false);
    })
}

fn detach_keys(arg: &Option<String>) -> Result<Vec<u8>> {
    match arg {
        Some(k) => parse_detach_keys(k),
        None => Ok(vec![16, 17]),
    }
}

fn run_cmd(engine: &Engine, mut a: RunArgs) -> i32 {
    let keys = match detach_keys(&a.detach_keys) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("berth: {e:#}");
            return 125;
        }
    };
    let attach = !a.detach;
    let stdin_once = attach && a.container.create.interactive;
    let (store, mut c) = match make(engine, &mut a.container, stdin_once, 125) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let client = ClientOptions {
        stdin: a.container.create.interactive,
        tty: a.container.create.tty,
        detach_keys: keys,
        proxy_signals: a.sig_proxy.then(|| signal_proxy(engine, c.id())),
    };
    let outcome = lifecycle::start(engine, &store, &mut c, attach.then_some(&client));
    match outcome {
        Ok(Outcome::Detached) => {
            if a.detach {
                println!("{}", c.id());
            }
            0
        }
        Ok(Outcome::Exited(code)) => code,
        Err(e) => {
            eprintln!("berth: {}", e.message);
            if a.container.create.rm {
                c.reload();
                let _ = remove::remove_with_volumes(engine, &mut c, remove::Caller::Command, true);
            }
            e.code
        }
    }
}

fn create_cmd(engine: &Engine, mut a: ContainerArgs) -> i32 {
    match make(engine, &mut a, false, 1) {
        Ok((_, c)) => {
            println!("{}", c.id());
            0
        }
        Err(code) => code,
    }
}

/// Resolves each argument and applies `f`, printing the argument on success as Docker does;
/// failures are printed and make the exit code 1.
fn each(
    engine: &Engine,
    names: &[String],
    mut f: impl FnMut(&Engine, &mut Container) -> Result<()>,
) -> Result<i32> {
    let mut code = 0;
    for name in names {
        let r = engine.lookup(name).and_then(|mut c| f(engine, &mut c));
        match r {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e:#}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn start_cmd(engine: &Engine, a: &StartArgs) -> Result<i32> {
    let store = store_of(engine)?;
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let mut c = engine.lookup(&a.containers[0])?;
        let o = ClientOptions {
            stdin: a.interactive,
            tty: c.record.config.tty,
            detach_keys: detach_keys(&a.detach_keys)?,
            proxy_signals: Some(signal_proxy(engine, c.id())),
        };
        return match lifecycle::start(engine, &store, &mut c, Some(&o)) {
            Ok(Outcome::Exited(code)) => Ok(code),
            Ok(Outcome::Detached) => Ok(0),
            Err(e) => {
                eprintln!("Error response from daemon: {}", e.message);
                Ok(1)
            }
        };
    }
    each(engine, &a.containers, |e, c| {
        lifecycle::start(e, &store, c, None)
            .map(|_| ())
            .map_err(anyhow::Error::from)
    })
}

fn stop_cmd(engine: &Engine, a: &StopArgs, restart: bool) -> Result<i32> {
    let store = if restart {
        Some(store_of(engine)?)
    } else {
        None
    };
    each(engine, &a.containers, |e, c| {
        if let Some(s) = &a.signal {
            // `stop -s`: this signal instead of the container's stop signal.
            create::parse_signal(s).with_context(|| format!("invalid signal: {s}"))?;
            c.record.config.stop_signal = s.clone();
        }
        lifecycle::stop(e, c, a.time)?;
        if let Some(store) = &store {
            c.reload();
            lifecycle::start(e, store, c, None)?;
        }
        Ok(())
    })
}

fn kill_cmd(engine: &Engine, a: &KillArgs) -> Result<i32> {
    let signal =
        create::parse_signal(&a.signal).with_context(|| format!("invalid signal: {}", a.signal))?;
    each(engine, &a.containers, |e, c| lifecycle::kill(e, c, signal))
}

fn rm_cmd(engine: &Engine, a: &RmArgs) -> Result<i32> {
    let mut code = 0;
    for name in &a.containers {
        let r = engine.lookup(name).and_then(|mut c| {
            let s = c.status(engine);
            if s.is_active() && !a.force {
                let what = if s == Status::Paused {
                    "container is paused and must be unpaused first"
                } else {
                    "container is running: stop the container before removing or force remove"
                };
                bail!("cannot remove container \"/{}\": {what}", c.record.name);
            }
            remove::remove_with_volumes(engine, &mut c, remove::Caller::Command, a.volumes)
        });
        match r {
            Ok(()) => println!("{name}"),
            // `rm -f` of a container that is not there is no error, as Docker's.
            Err(e) if a.force && e.downcast_ref::<NoSuchContainer>().is_some() => {}
            Err(e) => {
                eprintln!("Error response from daemon: {e:#}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn ps_cmd(engine: &Engine, a: &PsArgs) -> Result<i32> {
    let mut list = engine.all()?;
    let limit = if a.latest {
        Some(1)
    } else {
        a.last.filter(|n| *n > 0).map(|n| n as usize)
    };
    let all = a.all || limit.is_some();
    let filters = parse_filters(&a.filter)?;
    list.retain(|c| {
        let s = c.status(engine);
        (all || s.is_active() || filters.iter().any(|(k, _)| k == "status" || k == "exited"))
            && filters.iter().all(|(k, v)| matches_filter(engine, c, k, v))
    });
    if let Some(n) = limit {
        list.truncate(n);
    }
    let out = &mut std::io::stdout().lock();
    if a.quiet {
        if a.format.is_some() {
            eprintln!(
                "WARNING: Ignoring custom format, because both --format and --quiet are set."
            );
        }
        for c in &list {
            let id = if a.no_trunc {
                c.id()
            } else {
                super::record::short_id(c.id())
            };
            writeln!(out, "{id}")?;
        }
        return Ok(0);
    }
    let text = super::present::ps_output(engine, &list, a.format.as_deref(), a.size, a.no_trunc)?;
    out.write_all(text.as_bytes())?;
    Ok(0)
}

fn parse_filters(list: &[String]) -> Result<Vec<(String, String)>> {
    list.iter()
        .map(|f| {
            let (k, v) = f
                .split_once('=')
                .with_context(|| format!("bad format of filter (expected name=value): {f}"))?;
            match k {
                "id" | "name" | "label" | "status" | "exited" | "ancestor" => {
                    Ok((k.to_string(), v.to_string()))
                }
                _ => bail!("invalid filter '{k}'"),
            }
        })
        .collect()
}

fn matches_filter(engine: &Engine, c: &Container, key: &str, value: &str) -> bool {
    match key {
        "id" => c.id().starts_with(value),
        "name" => c.record.name.contains(value.trim_start_matches('/')),
        "label" => match value.split_once('=') {
            Some((k, v)) => c.record.config.labels.get(k).is_some_and(|x| x == v),
            None => c.record.config.labels.contains_key(value),
        },
        "status" => c.status(engine).as_str() == value,
        "exited" => c.status(engine) == Status::Exited && value.parse() == Ok(c.exit_code(engine)),
        "ancestor" => {
            c.record.config.image == value
                || c.record.image == value
                || c.record
                    .image
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.starts_with(value))
                || c.record.config.image.split(':').next() == Some(value)
        }
        _ => false,
    }
}

fn logs_cmd(engine: &Engine, a: &LogsArgs) -> Result<i32> {
    let c = engine.lookup(&a.container)?;
    if c.record.host_config.log_config.kind == "none" {
        bail!("configured logging driver does not support reading");
    }
    let tail = match a.tail.as_str() {
        "all" | "" => None,
        n => Some(n.parse::<i64>().map_err(|_| {
            anyhow::anyhow!("invalid value for \"tail\": {n:?} is not a number or \"all\"")
        })?),
    };
    let o = logs::ReadOptions {
        follow: a.follow,
        tail: tail.filter(|n| *n >= 0).map(|n| n as usize),
        timestamps: a.timestamps,
        since: a
            .since
            .as_deref()
            .map(|v| logs::parse_time_arg("since", v))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|v| logs::parse_time_arg("until", v))
            .transpose()?,
    };
    let mut watched = c.clone();
    let mut active = move || {
        watched.reload();
        watched.dir.exists() && watched.status(engine).is_active()
    };
    logs::print(
        &c.log_path(),
        &o,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
        &mut active,
    )?;
    Ok(0)
}

fn exec_cmd(engine: &Engine, a: &ExecArgs) -> Result<i32> {
    let (name, args) = a
        .container_and_command
        .split_first()
        .expect("clap requires CONTAINER");
    let c = engine.lookup(name)?;
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("open {}: no such file or directory", f.display()))?;
        env.extend(
            text.lines()
                .map(str::trim_start)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    for e in &a.env {
        match e.split_once('=') {
            Some(_) => env.push(e.clone()),
            None => {
                if let Ok(v) = std::env::var(e) {
                    env.push(format!("{e}={v}"));
                }
            }
        }
    }
    let r = ExecRequest {
        args: args.to_vec(),
        env,
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        tty: a.tty,
        detach: a.detach,
    };
    // Without -i the process gets no input, as Docker gives it.
    if !a.interactive {
        let null = std::fs::File::open("/dev/null")?;
        nix::unistd::dup2_stdin(&null)?;
    }
    match lifecycle::exec(engine, &c, &r) {
        Ok(code) => Ok(code),
        Err(e) => {
            let message = format!("{e:#}");
            let code = super::monitor::start_failure_code(&message);
            eprintln!("Error response from daemon: {message}");
            Ok(if code == 125 { 1 } else { code })
        }
    }
}

fn attach_cmd(engine: &Engine, a: &AttachArgs) -> Result<i32> {
    let c = engine.lookup(&a.container)?;
    if c.status(engine) != Status::Running {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let sock = super::attach::connect(&c.dir)?;
    let o = ClientOptions {
        stdin: !a.no_stdin && c.record.config.open_stdin,
        tty: c.record.config.tty,
        detach_keys: detach_keys(&a.detach_keys)?,
        proxy_signals: a.sig_proxy.then(|| signal_proxy(engine, c.id())),
    };
    Ok(match super::attach::run_client(sock, &o)? {
        super::attach::Ended::Exited(code) => code,
        super::attach::Ended::Failed { code, .. } => code,
        super::attach::Ended::Detached => {
            eprintln!("read escape sequence");
            0
        }
        super::attach::Ended::Lost => {
            let mut c = c;
            c.reload();
            c.exit_code(engine)
        }
    })
}

fn inspect_cmd(engine: &Engine, a: &InspectArgs) -> Result<i32> {
    let mut docs = Vec::new();
    let mut code = 0;
    for name in &a.names {
        let found = match a.kind.as_deref() {
            Some("image") => Err(anyhow::anyhow!("not a container")),
            _ => engine.lookup(name).map(|c| inspect::inspect(engine, &c)),
        };
        let found = match found {
            Ok(d) => Ok(d),
            Err(e) if a.kind.as_deref() != Some("container") => store_of(engine)
                .and_then(|s| s.inspect(name))
                .map_err(|_| e),
            Err(e) => Err(e),
        };
        match found {
            Ok(d) => docs.push(d),
            Err(_) => {
                eprintln!("Error: No such object: {name}");
                code = 1;
            }
        }
    }
    let out = &mut std::io::stdout().lock();
    match &a.format {
        Some(f) => {
            let parsed = super::present::inspect_format(f, &docs, out)?;
            if parsed != 0 {
                return Ok(parsed);
            }
        }
        None => writeln!(out, "{}", serde_json::to_string_pretty(&docs)?)?,
    }
    Ok(code)
}

fn wait_cmd(engine: &Engine, a: &NamesArgs) -> Result<i32> {
    let mut code = 0;
    for name in &a.containers {
        match engine
            .lookup(name)
            .and_then(|mut c| lifecycle::wait(engine, &mut c))
        {
            Ok(exit) => println!("{exit}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e:#}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn rename_cmd(engine: &Engine, a: &RenameArgs) -> Result<i32> {
    let mut c = engine.lookup(&a.container)?;
    lifecycle::rename(engine, &mut c, &a.new_name)?;
    Ok(0)
}

fn prune_cmd(engine: &Engine, a: &PruneArgs) -> Result<i32> {
    let mut until = None;
    let mut labels = Vec::new();
    for f in &a.filter {
        match f.split_once('=') {
            Some(("until", v)) => until = Some(logs::parse_time_arg("until", v)?.0),
            Some(("label", v)) => labels.push(v.to_string()),
            _ => bail!("invalid filter '{f}'"),
        }
    }
    if !a.force && !super::system::confirm(&["all stopped containers"])? {
        return Ok(0);
    }
    let out = &mut std::io::stdout().lock();
    let mut removed = Vec::new();
    for mut c in engine.all()? {
        let s = c.status(engine);
        if !matches!(s, Status::Exited | Status::Created | Status::Dead) {
            continue;
        }
        if s == Status::Created && c.record.complete && c.state.monitor.is_some_and(|m| m.alive()) {
            continue;
        }
        let created = crate::image::time::parse_rfc3339(&c.record.created).unwrap_or(0);
        if until.is_some_and(|u| created >= u)
            || !labels
                .iter()
                .all(|l| matches_filter(engine, &c, "label", l))
        {
            continue;
        }
        let id = c.id().to_string();
        if remove::remove(engine, &mut c, remove::Caller::Command).is_ok() {
            removed.push(id);
        }
    }
    if !removed.is_empty() {
        writeln!(out, "Deleted Containers:")?;
        for id in &removed {
            writeln!(out, "{id}")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: 0B")?;
    Ok(0)
}

fn port_cmd(engine: &Engine, a: &PortArgs) -> Result<i32> {
    let c = engine.lookup(&a.container)?;
    let out = crate::network::publish::port_output(engine, &c, a.port.as_deref(), &a.container)?;
    print!("{out}");
    Ok(0)
}
