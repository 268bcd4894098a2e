//! The `berth` command line: runc's commands and flags, so that containerd's shim, Docker,
//! Podman and conformance suites can drive berth unchanged.
#![cfg_attr(not(test), no_main)]

use anyhow::{bail, Context, Result};
use berth::runtime::container::{self, CreateOptions, ExecOptions, Globals};
use berth::runtime::{features, log, signals, spec, spec_template, state};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

mod lifecycle_args;

/// runc's shape (`runc version X`, `commit: Y`, `spec: Z`): dockerd parses it for `docker info`.
/// clap prints the command's name first.
const VERSION: &str = concat!(
    "version ",
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("BERTH_COMMIT"),
    "\nspec: 1.3.0"
);

/// The whole command line: runc's commands and the image layer's.
#[derive(Parser)]
#[command(
    name = "berth",
    version = VERSION,
    disable_version_flag = true,
    about = "An OCI container runtime"
)]
struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// runc's commands alone. clap builds every subcommand's arguments before it parses, and
/// the image layer's are many: a runtime command is parsed with this smaller tree (anything
/// it does not take, help included, goes to [`Cli`]), which keeps the image layer's code and
/// allocations out of a container's start.
#[derive(Parser)]
#[command(name = "berth", version = VERSION, disable_version_flag = true)]
struct RuntimeCli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: RuntimeCommand,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Runtime(RuntimeCommand),
    #[command(flatten)]
    Registry(berth::image::registry_cli::RegistryCommand),
    #[command(flatten)]
    Image(berth::image::cli::ImageCommand),
    #[command(flatten)]
    Engine(berth::engine::cli::EngineCommand),
    /// Play Kubernetes YAML: pods, deployments, jobs, services (podman's `kube`).
    #[command(subcommand)]
    Kube(berth::kube::cli::KubeCommand),
    /// Manage pods.
    #[command(subcommand)]
    Pod(berth::kube::cli::PodCommand),
    /// Multi-container apps from compose files.
    Compose(berth::compose::cli::ComposeArgs),
    #[command(flatten)]
    Build(berth::build::cli::BuildCommand),
}

#[derive(Args, Debug, PartialEq)]
struct GlobalArgs {
    /// Print the version (runc's -v/--version).
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    /// Directory holding the containers' state (default: /run/berth for root,
    /// $XDG_RUNTIME_DIR/berth or /tmp/berth-UID for other users).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Where to write the runtime's log (default: stderr only).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[arg(long, global = true)]
    debug: bool,
    /// Name cgroups systemd's way (slice:prefix:name); berth places them with cgroupfs.
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility; checkpointing is not supported.
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// Tolerate cgroup permission errors (a container without limits then stays in the
    /// caller's cgroup): true, false, or auto (when not root). Before the command, as runc's
    /// (whose `spec --rootless` is another flag).
    #[arg(long, value_enum, default_value = "auto")]
    rootless: Rootless,
    /// Where images, layer snapshots and bundle records live (image commands; default
    /// /var/lib/berth).
    #[arg(long, global = true)]
    data_root: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq)]
enum Rootless {
    True,
    False,
    Auto,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, PartialEq)]
struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket to send the pty master to, for a process with a terminal.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// File to write the container process's pid to.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for a root on ramfs).
    #[arg(long)]
    no_pivot: bool,
    /// Do not give the container its own session keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass this many extra file descriptors (3 onwards) to the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    /// A Unix socket to receive a pidfd of the container's process.
    #[arg(long)]
    pidfd_socket: Option<PathBuf>,
    /// The container's id.
    id: String,
}

#[derive(Subcommand, Debug, PartialEq)]
enum RuntimeCommand {
    /// Create a container and leave its process waiting for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print the OCI state of a container.
    State { id: String },
    /// Send a signal to the container's init (or, with --all, every process in it).
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container and everything berth made for it.
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container; in the foreground, wait for it and exit with its status.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits (foreground only).
        #[arg(long)]
        keep: bool,
        /// Do not adopt the container's orphaned processes (foreground only).
        #[arg(long)]
        no_subreaper: bool,
    },
    /// List containers.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: ListFormat,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json in the bundle directory.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
    /// Print what this runtime supports (the runtime-spec features document).
    Features,
    /// Run a new process in a running container.
    Exec(Box<ExecArgs>),
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// List a container's processes (table: `ps` output filtered to them; json: their pids).
    Ps {
        #[arg(short, long, value_enum, default_value = "table")]
        format: ListFormat,
        id: String,
        /// Options for ps(1) (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Change the resource limits of a running container.
    Update(Box<UpdateArgs>),
    /// Checkpoint a running container with CRIU (not supported: a clear error).
    Checkpoint {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Restore a container from a CRIU checkpoint (not supported: a clear error).
    Restore {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print stats and OOM events of a container as JSON lines.
    Events {
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// How often to print stats (e.g. 5s, 500ms).
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
}

#[derive(Args, Debug, PartialEq)]
struct UpdateArgs {
    /// A JSON file of linux.resources ("-" for standard input).
    #[arg(short, long)]
    resources: Option<PathBuf>,
    #[arg(long)]
    blkio_weight: Option<u16>,
    #[arg(long)]
    cpu_period: Option<u64>,
    #[arg(long)]
    cpu_quota: Option<i64>,
    #[arg(long)]
    cpu_share: Option<u64>,
    #[arg(long)]
    cpu_rt_period: Option<u64>,
    #[arg(long)]
    cpu_rt_runtime: Option<i64>,
    #[arg(long)]
    cpuset_cpus: Option<String>,
    #[arg(long)]
    cpuset_mems: Option<String>,
    /// Memory limit (bytes, or with a k/m/g suffix; -1 for none).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    kernel_memory: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    kernel_memory_tcp: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Intel RDT: the L3 cache schema (e.g. `L3:0=ff`), where the host has resctrl.
    #[arg(long)]
    l3_cache_schema: Option<String>,
    /// Intel RDT: the memory bandwidth schema (e.g. `MB:0=50`), where the host has resctrl.
    #[arg(long)]
    mem_bw_schema: Option<String>,
    id: String,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Args, Debug, PartialEq)]
struct ExecArgs {
    #[arg(long)]
    console_socket: Option<PathBuf>,
    #[arg(long)]
    cwd: Option<PathBuf>,
    #[arg(short, long)]
    env: Vec<String>,
    #[arg(short, long)]
    tty: bool,
    /// uid[:gid]
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short = 'g', long)]
    additional_gids: Vec<u32>,
    /// A process.json to run instead of a command line.
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(short, long)]
    detach: bool,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    #[arg(long)]
    no_new_privs: bool,
    #[arg(short, long)]
    cap: Vec<String>,
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    /// The SELinux label of the process (where the host runs SELinux).
    #[arg(long)]
    process_label: Option<String>,
    /// The AppArmor profile of the process (where the host runs AppArmor).
    #[arg(long)]
    apparmor: Option<String>,
    /// Allow exec in a paused container (the process stays frozen until resume).
    #[arg(long)]
    ignore_paused: bool,
    /// Run the process in existing sub-cgroups: [CONTROLLER,...:]PATH.
    #[arg(long)]
    cgroup: Vec<String>,
    /// A Unix socket to receive a pidfd of the new process.
    #[arg(long)]
    pidfd_socket: Option<PathBuf>,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// berth's entry point, in place of std's. std's start-up finds the main thread's stack in
/// /proc/self/maps and gives it an alternate signal stack, to report an overflow: ten system
/// calls and about 0.1 ms of every command, measured. The rest of what it does is kept here:
/// standard descriptors that are closed are opened on /dev/null (or berth's own files would
/// take those numbers), and SIGPIPE is ignored, so that writing to a closed pipe (a hook that
/// does not read its state) fails with EPIPE rather than killing berth. The arguments reach
/// `std::env::args` without std's start-up, from glibc.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    let mut std_fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll reads and writes the three pollfd structs of the array passed with its
    // length; open takes a NUL-terminated path; signal installs SIG_IGN, which runs no code.
    unsafe {
        if libc::poll(std_fds.as_mut_ptr(), 3, 0) >= 0 {
            let closed = std_fds
                .iter()
                .filter(|p| p.revents & libc::POLLNVAL != 0)
                .count();
            // open takes the lowest free number: each time, one of the closed ones.
            for _ in 0..closed {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    std::process::exit(run_cli())
}

#[cfg_attr(test, allow(dead_code))]
fn run_cli() -> i32 {
    let args = image_build_as_build(std::env::args_os().collect());
    let cli = match lifecycle_args::parse(&args) {
        Some((globals, command)) => Cli {
            globals,
            command: Command::Runtime(command),
        },
        None => match RuntimeCli::try_parse_from(&args) {
            Ok(rt) => Cli {
                globals: rt.globals,
                command: Command::Runtime(rt.command),
            },
            Err(_) => match Cli::try_parse_from(&args) {
                Ok(cli) => cli,
                Err(e) => return parse_error(&args, e),
            },
        },
    };
    let format = match cli.globals.log_format {
        LogFormat::Text => log::Format::Text,
        LogFormat::Json => log::Format::Json,
    };
    log::init(cli.globals.log.clone(), format, cli.globals.debug);
    // runc's commands report errors as runc does (its log, or logrus lines on stderr), for the
    // tools that read them; berth's own commands to a person.
    let runtime = matches!(cli.command, Command::Runtime(_));
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) if runtime => {
            log::error(&format!("{e:#}"));
            1
        }
        Err(e) => {
            eprintln!("berth: {e:#}");
            1
        }
    }
}

/// `image build` is `build` (the build layer sits above the image layer's command group).
fn image_build_as_build(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if let Some(i) = command_index(&args) {
        if args[i] == "image" && args.get(i + 1).is_some_and(|n| n == "build") {
            args.remove(i);
        }
    }
    args
}

/// Where the command's name is: the first argument that is neither a global flag nor the
/// value of one.
fn command_index(args: &[std::ffi::OsString]) -> Option<usize> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if !a.starts_with('-') {
            return Some(i);
        }
        let takes_value = matches!(
            a.as_ref(),
            "--root" | "--log" | "--log-format" | "--data-root" | "--criu"
        );
        i += if takes_value { 2 } else { 1 };
    }
    None
}

/// clap's exit code (2) for runc's and the image layer's commands; Docker's 125 for the
/// engine's, whose users expect it.
fn parse_error(args: &[std::ffi::OsString], e: clap::Error) -> i32 {
    let first = command_index(args).map(|i| args[i].to_string_lossy());
    let engine = first.is_some_and(|a| {
        berth::engine::cli::is_engine_command(a.as_ref())
            || berth::build::cli::is_build_command(a.as_ref())
    });
    let help = matches!(
        e.kind(),
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
    );
    if engine && !help {
        let _ = e.print();
        return 125;
    }
    e.exit()
}

fn create_options(a: CreateArgs) -> CreateOptions {
    CreateOptions {
        id: a.id,
        bundle: a.bundle,
        pid_file: a.pid_file,
        console_socket: a.console_socket,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        pidfd_socket: a.pidfd_socket,
        no_subreaper: false,
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    let data_root = berth::image::cli::data_root(cli.globals.data_root.as_deref());
    let g = Globals {
        root: cli.globals.root.unwrap_or_else(state::default_root),
        systemd_cgroup: cli.globals.systemd_cgroup,
        rootless: match cli.globals.rootless {
            Rootless::Auto => None,
            Rootless::True => Some(true),
            Rootless::False => Some(false),
        },
    };
    let command = match cli.command {
        Command::Image(cmd) => return berth::image::cli::run_in(&data_root, &g.root, cmd),
        Command::Registry(c) => return berth::image::registry_cli::run(c, &data_root),
        Command::Engine(c) => return Ok(berth::engine::cli::run(&data_root, &g.root, c)),
        Command::Kube(c) => return Ok(berth::kube::cli::run_kube(&data_root, &g.root, c)),
        Command::Pod(c) => return Ok(berth::kube::cli::run_pod(&data_root, &g.root, c)),
        Command::Compose(c) => return Ok(berth::compose::cli::run(&data_root, &g.root, c)),
        Command::Build(c) => return Ok(berth::build::cli::run(&data_root, &g.root, c)),
        Command::Runtime(command) => command,
    };
    match command {
        RuntimeCommand::Create(a) => container::create(&g, &create_options(a)).map(|()| 0),
        RuntimeCommand::Start { id } => container::start(&g, &id).map(|()| 0),
        RuntimeCommand::State { id } => {
            let s = container::state(&g, &id)?;
            print_line(&serde_json::to_string_pretty(&s)?)?;
            Ok(0)
        }
        RuntimeCommand::Kill { all, id, signal } => {
            let sig = signals::parse_signal(&signal)?;
            container::kill_container(&g, &id, sig, all).map(|()| 0)
        }
        RuntimeCommand::Delete { force, id } => container::delete(&g, &id, force).map(|()| 0),
        RuntimeCommand::Run {
            create,
            detach,
            keep,
            no_subreaper,
        } => {
            if keep && detach {
                bail!("--keep: only for a foreground run");
            }
            let options = CreateOptions {
                no_subreaper,
                ..create_options(create)
            };
            container::run(&g, &options, detach, keep)
        }
        RuntimeCommand::List { format, quiet } => list(&g, format, quiet).map(|()| 0),
        RuntimeCommand::Spec { bundle, rootless } => write_spec(&bundle, rootless).map(|()| 0),
        RuntimeCommand::Features => {
            print_line(&serde_json::to_string_pretty(&features::features_json())?)?;
            Ok(0)
        }
        RuntimeCommand::Pause { id } => container::pause(&g, &id).map(|()| 0),
        RuntimeCommand::Resume { id } => container::resume(&g, &id).map(|()| 0),
        RuntimeCommand::Ps {
            format,
            id,
            ps_args,
        } => ps(&g, format, &id, ps_args).map(|()| 0),
        RuntimeCommand::Update(a) => {
            let id = a.id.clone();
            let schemata: Vec<(&str, String)> = [
                ("--l3-cache-schema", a.l3_cache_schema.clone()),
                ("--mem-bw-schema", a.mem_bw_schema.clone()),
            ]
            .into_iter()
            .filter_map(|(flag, v)| v.map(|v| (flag, v)))
            .collect();
            let resources = update_resources(*a)?;
            container::update(&g, &id, &resources)?;
            for (flag, schema) in &schemata {
                container::update_rdt_schema(&g, &id, flag, schema)?;
            }
            Ok(0)
        }
        RuntimeCommand::Checkpoint { .. } | RuntimeCommand::Restore { .. } => bail!(
            "checkpoint and restore are not supported: berth has no CRIU integration \
             (containers cannot be checkpointed, migrated or restored)"
        ),
        RuntimeCommand::Events {
            stats,
            interval,
            id,
        } => {
            let interval = parse_duration(&interval)?;
            container::events(&g, &id, stats, interval, &mut std::io::stdout().lock()).map(|()| 0)
        }
        RuntimeCommand::Exec(a) => container::exec(
            &g,
            &ExecOptions {
                id: a.id,
                process_file: a.process,
                args: a.command,
                env: a.env,
                cwd: a.cwd,
                user: a.user,
                additional_gids: a.additional_gids,
                tty: a.tty,
                detach: a.detach,
                pid_file: a.pid_file,
                console_socket: a.console_socket,
                preserve_fds: a.preserve_fds,
                no_new_privs: a.no_new_privs,
                caps: a.cap,
                ignore_paused: a.ignore_paused,
                cgroup: a.cgroup,
                apparmor: a.apparmor,
                process_label: a.process_label,
                pidfd_socket: a.pidfd_socket,
            },
        ),
    }
}

fn list(g: &Globals, format: ListFormat, quiet: bool) -> Result<()> {
    let all = container::list(g)?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for (st, _) in &all {
            writeln!(out, "{}", st.id)?;
        }
        return Ok(());
    }
    match format {
        ListFormat::Json => {
            let docs: Vec<_> = all
                .iter()
                .map(|(st, status)| state::oci_state_json(st, *status))
                .collect();
            writeln!(out, "{}", serde_json::to_string(&docs)?)?;
        }
        ListFormat::Table => {
            let rows: Vec<[String; 6]> = all
                .iter()
                .map(|(st, status)| {
                    let pid = if *status == state::Status::Stopped {
                        0
                    } else {
                        st.pid
                    };
                    [
                        st.id.clone(),
                        pid.to_string(),
                        status.as_str().to_string(),
                        st.bundle.display().to_string(),
                        st.created.clone(),
                        st.owner.clone(),
                    ]
                })
                .collect();
            berth::table::write_table(
                &mut out,
                ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
                &rows,
            )?;
        }
    }
    Ok(())
}

fn write_spec(bundle: &std::path::Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{}: already exists; remove it first", path.display());
    }
    let mut doc = spec_template::default_spec();
    if rootless {
        spec_template::rootless(&mut doc);
    }
    let text = spec_template::spec_to_pretty_json(&doc)?;
    // What berth writes, berth must accept.
    spec::validate(&spec::parse_spec(text.as_bytes())?)
        .context("internal: the default spec does not validate")?;
    std::fs::write(&path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

/// One line to stdout. berth ignores SIGPIPE (for its hooks' sake), so a reader that went away
/// (`berth state ID | grep -q running`) is an EPIPE here: not an error, the output is unwanted.
fn print_line(line: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("cannot write to stdout"),
    }
}

fn ps(g: &Globals, format: ListFormat, id: &str, ps_args: Vec<String>) -> Result<()> {
    let pids = container::pids(g, id)?;
    if let ListFormat::Json = format {
        print_line(&serde_json::to_string(&pids)?)?;
        return Ok(());
    }
    let args = if ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        ps_args
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("cannot run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column")?;
    print_line(header)?;
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            print_line(line)?;
        }
    }
    Ok(())
}

/// Bytes from "512", "64m", "1g", "100k" (binary units, as runc and Docker read them); -1 is
/// "no limit".
fn parse_bytes(flag: &str, v: &str) -> Result<i64> {
    let t = v.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("--{flag} {v:?}: not a size"))?;
    if n < 0.0 {
        bail!("--{flag} {v:?}: must not be negative (use -1 for no limit)");
    }
    Ok((n * mult as f64) as i64)
}

fn parse_duration(v: &str) -> Result<std::time::Duration> {
    let (num, unit) = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| v.split_at(i))
        .unwrap_or((v, "s"));
    let n: f64 = num
        .parse()
        .with_context(|| format!("--interval {v:?}: not a duration"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => bail!("--interval {v:?}: unit must be ms, s or m"),
    };
    if secs <= 0.0 {
        bail!("--interval {v:?}: must be positive");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// The resources of `update`: a JSON file (or stdin), then the flags on top of it.
fn update_resources(a: UpdateArgs) -> Result<oci_spec::runtime::LinuxResources> {
    let mut doc = match &a.resources {
        Some(p) => {
            let bytes = if p.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
                b
            } else {
                std::fs::read(p).with_context(|| format!("--resources {}", p.display()))?
            };
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .context("--resources: invalid JSON")?
        }
        None => serde_json::json!({}),
    };
    let mut set = |section: &str, key: &str, value: serde_json::Value| {
        if !doc[section].is_object() {
            doc[section] = serde_json::json!({});
        }
        doc[section][key] = value;
    };
    if let Some(v) = a.blkio_weight {
        set("blockIO", "weight", v.into());
    }
    if let Some(v) = a.cpu_period {
        set("cpu", "period", v.into());
    }
    if let Some(v) = a.cpu_quota {
        set("cpu", "quota", v.into());
    }
    if let Some(v) = a.cpu_share {
        set("cpu", "shares", v.into());
    }
    if let Some(v) = a.cpu_rt_period {
        set("cpu", "realtimePeriod", v.into());
    }
    if let Some(v) = a.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", v.into());
    }
    if let Some(v) = a.cpuset_cpus {
        set("cpu", "cpus", v.into());
    }
    if let Some(v) = a.cpuset_mems {
        set("cpu", "mems", v.into());
    }
    for (flag, key, value) in [
        ("memory", "limit", &a.memory),
        ("memory-reservation", "reservation", &a.memory_reservation),
        ("memory-swap", "swap", &a.memory_swap),
        ("kernel-memory", "kernel", &a.kernel_memory),
        ("kernel-memory-tcp", "kernelTCP", &a.kernel_memory_tcp),
    ] {
        if let Some(v) = value {
            set("memory", key, parse_bytes(flag, v)?.into());
        }
    }
    if let Some(v) = a.pids_limit {
        set("pids", "limit", v.into());
    }
    let text = doc.to_string();
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| anyhow::anyhow!("--resources: {}: {}", e.path(), e.inner()))
}
