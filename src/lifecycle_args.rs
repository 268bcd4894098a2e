//! The lifecycle commands that containerd's shim, Docker and Podman run for every container
//! (`create`, `start`, `run`, `state`, `kill`, `delete`), parsed by hand.
//!
//! clap builds every argument of every subcommand before it parses one. Measured on a
//! `berth list`, that is about 0.3 ms of the command's 1.4 ms: the building itself, the
//! allocations, and 22 pages of stack touched by one derived function. These commands take
//! a handful of runc's flags, so they are read here. Anything else goes to clap, which then
//! parses (and reports) it: another command, `--help`, an unknown or repeated flag, a value
//! that starts with `-` or is empty, `--`, grouped short flags, non-UTF-8. A unit test checks
//! that this parser and clap agree on every command line it accepts.

use crate::{CreateArgs, GlobalArgs, LogFormat, Rootless, RuntimeCommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// The command line, if it is one of the lifecycle commands in a plain form.
pub fn parse(args: &[OsString]) -> Option<(GlobalArgs, RuntimeCommand)> {
    let args: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str())
        .collect::<Option<_>>()?;
    let mut p = Parser {
        args,
        next: 0,
        globals: GlobalArgs {
            root: None,
            log: None,
            log_format: LogFormat::Text,
            debug: false,
            systemd_cgroup: false,
            criu: None,
            data_root: None,
            rootless: Rootless::Auto,
            version: None,
        },
        seen: Vec::new(),
        positionals: Vec::new(),
    };
    let command = loop {
        let arg = p.take()?;
        if !arg.starts_with('-') {
            break arg;
        }
        if !p.global(arg)? {
            return None;
        }
    };
    let mut create = CreateArgs {
        bundle: PathBuf::from("."),
        console_socket: None,
        pid_file: None,
        no_pivot: false,
        no_new_keyring: false,
        preserve_fds: 0,
        pidfd_socket: None,
        id: String::new(),
    };
    let (mut detach, mut keep, mut force, mut all) = (false, false, false, false);
    let mut no_subreaper = false;
    while let Some(arg) = p.take() {
        if !arg.starts_with('-') {
            p.positionals.push(arg);
            continue;
        }
        if p.global(arg)? {
            continue;
        }
        let (name, inline) = split_flag(arg)?;
        let creates = matches!(command, "create" | "run");
        match (command, name) {
            (_, "-b" | "--bundle") if creates => {
                create.bundle = PathBuf::from(p.value(name, inline)?)
            }
            (_, "--console-socket") if creates => {
                create.console_socket = Some(PathBuf::from(p.value(name, inline)?))
            }
            (_, "--pid-file") if creates => {
                create.pid_file = Some(PathBuf::from(p.value(name, inline)?))
            }
            (_, "--preserve-fds") if creates => {
                create.preserve_fds = p.value(name, inline)?.parse().ok()?
            }
            (_, "--no-pivot") if creates => create.no_pivot = p.switch(name, inline)?,
            (_, "--no-new-keyring") if creates => create.no_new_keyring = p.switch(name, inline)?,
            (_, "--pidfd-socket") if creates => {
                create.pidfd_socket = Some(PathBuf::from(p.value(name, inline)?))
            }
            ("run", "--no-subreaper") => no_subreaper = p.switch(name, inline)?,
            ("run", "-d" | "--detach") => detach = p.switch(name, inline)?,
            ("run", "--keep") => keep = p.switch(name, inline)?,
            ("delete", "-f" | "--force") => force = p.switch(name, inline)?,
            ("kill", "-a" | "--all") => all = p.switch(name, inline)?,
            _ => return None,
        }
    }
    let mut positionals = p.positionals.into_iter().map(str::to_string);
    let id = positionals.next()?;
    let command = match command {
        "create" | "run" => {
            create.id = id;
            if command == "create" {
                RuntimeCommand::Create(create)
            } else {
                RuntimeCommand::Run {
                    create,
                    detach,
                    keep,
                    no_subreaper,
                }
            }
        }
        "start" => RuntimeCommand::Start { id },
        "state" => RuntimeCommand::State { id },
        "delete" => RuntimeCommand::Delete { force, id },
        "kill" => {
            let signal = positionals.next().unwrap_or_else(|| "SIGTERM".to_string());
            RuntimeCommand::Kill { all, id, signal }
        }
        _ => return None,
    };
    if positionals.next().is_some() {
        return None;
    }
    Some((p.globals, command))
}

struct Parser<'a> {
    args: Vec<&'a str>,
    next: usize,
    globals: GlobalArgs,
    /// Flags given so far: clap refuses most of them twice, so a repeat goes to clap.
    seen: Vec<&'a str>,
    positionals: Vec<&'a str>,
}

impl<'a> Parser<'a> {
    fn take(&mut self) -> Option<&'a str> {
        let arg = self.args.get(self.next).copied();
        self.next += 1;
        arg
    }

    /// A flag's value, from `--flag=value` or the next argument.
    fn value(&mut self, name: &'a str, inline: Option<&'a str>) -> Option<&'a str> {
        self.mark(name)?;
        let v = match inline {
            Some(v) => v,
            None => self.take()?,
        };
        (!v.is_empty() && !v.starts_with('-')).then_some(v)
    }

    /// A flag without a value.
    fn switch(&mut self, name: &'a str, inline: Option<&'a str>) -> Option<bool> {
        self.mark(name)?;
        inline.is_none().then_some(true)
    }

    fn mark(&mut self, name: &'a str) -> Option<()> {
        if self.seen.contains(&name) {
            return None;
        }
        self.seen.push(name);
        Some(())
    }

    /// Consumes a global flag; false if `arg` is not one.
    fn global(&mut self, arg: &'a str) -> Option<bool> {
        let (name, inline) = split_flag(arg)?;
        match name {
            "--root" => self.globals.root = Some(PathBuf::from(self.value(name, inline)?)),
            "--log" => self.globals.log = Some(PathBuf::from(self.value(name, inline)?)),
            "--log-format" => {
                self.globals.log_format = match self.value(name, inline)? {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return None,
                }
            }
            "--debug" => self.globals.debug = self.switch(name, inline)?,
            "--systemd-cgroup" => self.globals.systemd_cgroup = self.switch(name, inline)?,
            "--criu" => self.globals.criu = Some(self.value(name, inline)?.to_string()),
            "--rootless" => {
                self.globals.rootless = match self.value(name, inline)? {
                    "true" => Rootless::True,
                    "false" => Rootless::False,
                    "auto" => Rootless::Auto,
                    _ => return None,
                }
            }
            "--data-root" => {
                self.globals.data_root = Some(PathBuf::from(self.value(name, inline)?))
            }
            _ => return Some(false),
        }
        Some(true)
    }
}

/// `--name=value` → (`--name`, Some(`value`)); `--name` or `-x` → (it, None). Grouped or
/// attached short flags (`-df`, `-b.`) and `--` are left to clap.
fn split_flag(arg: &str) -> Option<(&str, Option<&str>)> {
    if let Some(long) = arg.strip_prefix("--") {
        if long.is_empty() {
            return None;
        }
        return Some(match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg, None),
        });
    }
    (arg.len() == 2).then_some((arg, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuntimeCli;
    use clap::Parser as _;

    fn argv(line: &str) -> Vec<OsString> {
        std::iter::once("berth")
            .chain(line.split(' ').filter(|s| !s.is_empty()))
            .map(OsString::from)
            .collect()
    }

    /// Command lines as containerd's runc shim, Docker, Podman and the tests write them.
    const TAKEN: &[&str] = &[
        "create --bundle /b --pid-file /p/init.pid c1",
        "--root /run/containerd/runc/k8s.io --log /l/log.json --log-format json create --bundle /b --pid-file /p --console-socket /s/pty.sock c1",
        "--root /r --log /l --log-format json --systemd-cgroup create --bundle /b --pid-file /p --no-pivot --no-new-keyring --preserve-fds 2 c1",
        "--root=/r create --bundle=/b --pid-file=/p c1",
        "create -b /b c1",
        "create c1",
        "create c1 --bundle /b",
        "create --bundle /b c1 --root /r --debug",
        "--root /r --log /l --log-format json start c1",
        "--root /r state c1",
        "--root /r kill c1",
        "--root /r kill c1 9",
        "--root /r kill --all c1 SIGKILL",
        "--root /r kill -a c1 KILL",
        "--root /r delete c1",
        "--root /r delete --force c1",
        "--root /r delete -f c1",
        "--root /r run --bundle /b c1",
        "--root /r run -b /b -d c1",
        "--root /r run --bundle /b --detach --pid-file /p c1",
        "--root /r run --bundle /b --keep c1",
        "--criu /usr/sbin/criu --root /r state c1",
        "--data-root /d --root /r start c1",
        "--log-format text --debug state c1",
    ];

    /// Left to clap: it knows the answer (usually an error or help).
    const LEFT: &[&str] = &[
        "",
        "--help",
        "create --help",
        "-h",
        "--version",
        "list",
        "exec c1 ls",
        "create",
        "create c1 c2",
        "start",
        "state c1 extra",
        "kill c1 TERM extra",
        "create --bundle",
        "create --bundle= c1",
        "create --bundle -x c1",
        "create --bundle /a --bundle /b c1",
        "create --unknown c1",
        "create -df c1",
        "create -b/b c1",
        "create -- c1",
        "run --keep=true c1",
        "delete --detach c1",
        "start --bundle /b c1",
        "--log-format xml state c1",
        "--root /a --root /b state c1",
        "create --preserve-fds x c1",
        "pull busybox",
    ];

    #[test]
    fn agrees_with_clap_on_what_it_takes() {
        for line in TAKEN {
            let args = argv(line);
            let fast = parse(&args).unwrap_or_else(|| panic!("not taken: {line}"));
            let clap = RuntimeCli::try_parse_from(&args)
                .unwrap_or_else(|e| panic!("clap refuses {line}: {e}"));
            assert_eq!(fast, (clap.globals, clap.command), "{line}");
        }
    }

    #[test]
    fn leaves_the_rest_to_clap() {
        for line in LEFT {
            assert!(parse(&argv(line)).is_none(), "taken: {line:?}");
        }
    }
}
