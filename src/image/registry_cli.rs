//! The registry commands of the command line: `pull`, `push`, `login`, `logout`, with Docker's
//! names and habits (and podman's `--tls-verify`, `--cert-dir`, `--authfile`).

use super::credentials::{self, AuthFile};
use super::pull::{self, PullOptions};
use super::push::{self, PushOptions, DEFAULT_CHUNK_SIZE};
use super::reference::{Reference, DEFAULT_REGISTRY};
use super::registry::{self, auth::Credential, TransportOptions};
use super::store::Store;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// How to reach a registry and whose credentials to use.
#[derive(Args, Clone)]
pub struct ConnectionArgs {
    /// Verify the registry's TLS certificate (false: any certificate, or plain HTTP).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    tls_verify: bool,
    /// A directory of CA certificates (*.crt) for the registry
    /// (default: /etc/berth/certs.d/HOST:PORT).
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Docker's config.json holding credentials (default: $DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
}

impl ConnectionArgs {
    fn transport(&self) -> TransportOptions {
        TransportOptions {
            tls_verify: self.tls_verify,
            cert_dir: self.cert_dir.clone(),
        }
    }

    fn auth_file(&self) -> Result<PathBuf> {
        match &self.authfile {
            Some(p) => Ok(p.clone()),
            None => credentials::default_auth_file(),
        }
    }
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Fetch an image from a registry into the store.
    Pull {
        /// The image: busybox, registry:5000/team/app:v1, name@sha256:...
        reference: String,
        /// The platform to pick from a multi-platform image: os/arch[/variant].
        #[arg(long)]
        platform: Option<String>,
        /// No progress bars; print only the image's name.
        #[arg(short, long)]
        quiet: bool,
        /// How many layers are fetched at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Send an image from the store to a registry (to DESTINATION when given).
    Push {
        reference: String,
        destination: Option<String>,
        #[arg(short, long)]
        quiet: bool,
        /// Blobs larger than this are uploaded in chunks of this size (bytes, or with a
        /// k/m/g suffix); 0 uploads every blob in one request.
        #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE.to_string())]
        chunk_size: String,
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Check credentials with a registry and store them (Docker's config.json).
    Login {
        /// The registry (default: docker.io).
        server: Option<String>,
        #[arg(short, long)]
        username: Option<String>,
        /// The password (visible to other users in `ps`: prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
    /// Remove a registry's stored credentials.
    Logout {
        server: Option<String>,
        #[arg(long, value_name = "FILE")]
        authfile: Option<PathBuf>,
    },
}

pub fn run(command: RegistryCommand, data_root: &Path) -> Result<i32> {
    match command {
        RegistryCommand::Pull {
            reference,
            platform,
            quiet,
            jobs,
            connection,
        } => {
            let reference = Reference::parse(&reference)?;
            let options = PullOptions {
                platform,
                transport: connection.transport(),
                auth_file: connection.authfile.clone(),
                quiet,
                jobs: jobs.into(),
            };
            let store = Store::open(data_root)?;
            let pulled = pull::pull(&store, &reference, &options)?;
            if quiet {
                println!("{reference}");
            } else {
                println!(
                    "Digest: {} ({} blobs fetched, {} already present)",
                    pulled.digest, pulled.fetched, pulled.present
                );
                println!("Pulled {reference}");
            }
            Ok(0)
        }
        RegistryCommand::Push {
            reference,
            destination,
            quiet,
            chunk_size,
            jobs,
            connection,
        } => {
            let source = Reference::parse(&reference)?;
            let destination = match destination {
                Some(d) => Reference::parse(&d)?,
                None => source.clone(),
            };
            let chunk_size = parse_size(&chunk_size).context("--chunk-size")?;
            let options = PushOptions {
                transport: connection.transport(),
                auth_file: connection.authfile.clone(),
                quiet,
                chunk_size,
                jobs: jobs.into(),
            };
            let store = Store::open(data_root)?;
            let pushed = push::push(&store, &source, &destination, &options)?;
            if !quiet {
                let b = pushed.blobs;
                println!(
                    "Digest: {} ({} blobs pushed, {} mounted, {} already there)",
                    pushed.digest, b.uploaded, b.mounted, b.present
                );
            }
            println!("Pushed {destination}");
            Ok(0)
        }
        RegistryCommand::Login {
            server,
            username,
            password,
            password_stdin,
            connection,
        } => {
            let server = registry_host(server.as_deref())?;
            let credential = ask_credential(username, password, password_stdin)?;
            let path = connection.auth_file()?;
            let mut file = AuthFile::load(&path)?;
            registry::check_login(&server, &connection.transport(), credential.clone())
                .with_context(|| format!("login to {server} failed"))?;
            file.set(&server, &credential);
            file.save()?;
            println!("Login Succeeded");
            Ok(0)
        }
        RegistryCommand::Logout { server, authfile } => {
            let server = registry_host(server.as_deref())?;
            let path = match authfile {
                Some(p) => p,
                None => credentials::default_auth_file()?,
            };
            let mut file = AuthFile::load(&path)?;
            if !file.remove(&server) {
                bail!("not logged in to {server} (no entry in {})", path.display());
            }
            file.save()?;
            println!("Removed login credentials for {server}");
            Ok(0)
        }
    }
}

/// A registry named on the command line: `host[:port]`, an URL of one (`https://host/v2/`), or
/// Docker Hub by default.
fn registry_host(server: Option<&str>) -> Result<String> {
    let Some(s) = server else {
        return Ok(DEFAULT_REGISTRY.to_string());
    };
    let host = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s)
        .split('/')
        .next()
        .unwrap_or("");
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !valid {
        bail!("invalid registry {s:?}: expected host[:port]");
    }
    Ok(match host {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_string(),
        h => h.to_string(),
    })
}

/// User name and password from the flags, standard input or the terminal.
fn ask_credential(
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
) -> Result<Credential> {
    if password.is_some() && password_stdin {
        bail!("--password and --password-stdin: give only one");
    }
    let interactive = std::io::stdin().is_terminal();
    let username = match username {
        Some(u) => u,
        None if interactive && !password_stdin => prompt("Username: ")?,
        None => bail!("--username is required when standard input is not a terminal"),
    };
    let password = match password {
        Some(p) => p,
        None if password_stdin => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
        None if interactive => prompt_hidden("Password: ")?,
        None => bail!("no password: give --password-stdin (or --password)"),
    };
    if username.is_empty() || username.contains(':') {
        bail!("--username {username:?}: must be non-empty and without ':'");
    }
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(Credential { username, password })
}

fn prompt(text: &str) -> Result<String> {
    eprint!("{text}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// Reads a line from the terminal with echo off, restoring the terminal afterwards.
fn prompt_hidden(text: &str) -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot turn the echo off")?;
    let line = prompt(text);
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    restored.context("cannot restore the terminal")?;
    line
}

/// `1048576`, `512k`, `64m`, `1g` (powers of 1024).
fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits
        .parse()
        .with_context(|| format!("{s:?}: expected a size such as 1048576, 512k or 64m"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => bail!("{s:?}: unknown unit {unit:?} (use k, m or g)"),
    };
    n.checked_mul(1 << shift)
        .with_context(|| format!("{s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert!(parse_size("12q").is_err());
        assert!(parse_size("m").is_err());
        assert!(parse_size("99999999999g").is_err());
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host(None).unwrap(), "docker.io");
        assert_eq!(
            registry_host(Some("https://index.docker.io/v1/")).unwrap(),
            "docker.io"
        );
        assert_eq!(
            registry_host(Some("127.0.0.1:5000")).unwrap(),
            "127.0.0.1:5000"
        );
        assert_eq!(
            registry_host(Some("http://reg.example:80/v2/")).unwrap(),
            "reg.example:80"
        );
        assert!(registry_host(Some("bad host")).is_err());
        assert!(registry_host(Some("")).is_err());
    }
}
