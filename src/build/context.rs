//! The build context: what `berth build CONTEXT|-` hands to COPY and ADD, its `.dockerignore`,
//! and the Dockerfile chosen with `-f`.
//!
//! API:
//! - [`prepare`]`(ContextArg, DockerfileArg, stdin, temp_parent)` -> ([`Context`],
//!   [`DockerfileText`]): a directory context (opened once, as a directory fd), a tar stream
//!   on stdin (plain or gzip/bzip2/xz/zstd; extracted into a private temporary directory below
//!   `temp_parent` that the [`Context`] removes when dropped), or a Dockerfile on stdin with an
//!   empty context. The Dockerfile is `-f FILE` (absolute, or relative to the current
//!   directory as Docker's CLI takes it, else to the context) or `Dockerfile` in the context;
//!   `FILE.dockerignore` beside it takes precedence over the context's `.dockerignore`.
//! - [`Context::open_beneath`]: an fd for a path in the context; a `..` or a symlink that
//!   would leave the context is refused with an error naming the path.
//! - [`sweep_stale`]: removes the temporary contexts of builds that were killed.
//!
//! The context is hostile (a cloned repository, a downloaded tarball): every lookup is an
//! openat2 from the context's fd with RESOLVE_BENEATH, so nothing outside it is ever read.

use super::archive;
use super::ignore::Matcher;
use crate::image::fswalk::{DirSink, Ownership};
use crate::image::tarstream;
use crate::runtime::inroot;
use anyhow::{bail, Context as _, Result};
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the context comes from.
#[derive(Clone, Copy, Debug)]
pub enum ContextArg<'a> {
    /// A directory on the host.
    Dir(&'a Path),
    /// `-`: a tar stream (a context) or a Dockerfile (no context) on stdin.
    Stdin,
}

/// Where the Dockerfile comes from.
#[derive(Clone, Copy, Debug)]
pub enum DockerfileArg<'a> {
    /// `Dockerfile` in the context.
    Default,
    /// `-f FILE`.
    File(&'a Path),
    /// `-f -`.
    Stdin,
}

/// The Dockerfile's text and the name errors give it (`Dockerfile`, `app.Dockerfile`, `-`).
#[derive(Clone, Debug, PartialEq)]
pub struct DockerfileText {
    pub name: String,
    pub text: String,
}

/// A build context opened for reading.
pub struct Context {
    root: OwnedFd,
    /// The directory on the host (the temporary one for a stdin context).
    path: PathBuf,
    ignore: Matcher,
    temporary: bool,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("path", &self.path)
            .field("temporary", &self.temporary)
            .finish()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

const TEMP_PREFIX: &str = "berth-build-context-";
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Opens the context and reads the Dockerfile (see the module's documentation).
pub fn prepare(
    context: ContextArg,
    dockerfile: DockerfileArg,
    stdin: &mut dyn Read,
    temp_parent: &Path,
) -> Result<(Context, DockerfileText)> {
    match (context, dockerfile) {
        (ContextArg::Stdin, DockerfileArg::Stdin) => {
            bail!("invalid argument: can't use stdin for both build context and dockerfile")
        }
        (ContextArg::Dir(dir), DockerfileArg::Stdin) => {
            let mut ctx = Context::from_dir(dir)?;
            let text = read_text(stdin, "-")?;
            ctx.load_ignore(None)?;
            Ok((ctx, text))
        }
        (ContextArg::Dir(dir), DockerfileArg::Default) => {
            let mut ctx = Context::from_dir(dir)?;
            let text = ctx.read_dockerfile(Path::new("Dockerfile"))?;
            ctx.load_ignore(Some(Path::new("Dockerfile")))?;
            Ok((ctx, text))
        }
        (ContextArg::Dir(dir), DockerfileArg::File(file)) => {
            let mut ctx = Context::from_dir(dir)?;
            // Docker's CLI takes a relative `-f` from the current directory; buildah from the
            // context. The first that exists is read.
            if file.is_absolute() || file.exists() {
                let bytes = std::fs::read(file)
                    .with_context(|| format!("cannot read the Dockerfile {}", file.display()))?;
                let text = into_text(bytes, &file.display().to_string())?;
                ctx.load_ignore_host(file)?;
                return Ok((ctx, text));
            }
            let text = ctx.read_dockerfile(file)?;
            ctx.load_ignore(Some(file))?;
            Ok((ctx, text))
        }
        (ContextArg::Stdin, dockerfile) => {
            let (_, mut stream) = archive::decompress(stdin).context("reading stdin")?;
            let mut head = [0u8; 512];
            let got = read_full(&mut stream, &mut head).context("reading stdin")?;
            let mut whole = (&head[..got]).chain(stream);
            if got == 512 && archive::is_tar_header(&head) {
                let mut ctx = Context::from_tar(&mut whole, temp_parent)?;
                let file = match dockerfile {
                    DockerfileArg::File(f) => f,
                    _ => Path::new("Dockerfile"),
                };
                let text = ctx.read_dockerfile(file)?;
                ctx.load_ignore(Some(file))?;
                Ok((ctx, text))
            } else {
                let text = read_text(&mut whole, "-")?;
                let ctx = Context::empty(temp_parent)?;
                Ok((ctx, text))
            }
        }
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

fn read_text(r: &mut dyn Read, name: &str) -> Result<DockerfileText> {
    let mut bytes = Vec::new();
    r.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the Dockerfile from {name}"))?;
    into_text(bytes, name)
}

fn into_text(bytes: Vec<u8>, name: &str) -> Result<DockerfileText> {
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{name}: the Dockerfile is not UTF-8 text"))?;
    Ok(DockerfileText {
        name: name.to_string(),
        text,
    })
}

/// Removes the temporary contexts below `temp_parent` whose build process is gone (a build
/// killed with SIGKILL could not remove its own).
pub fn sweep_stale(temp_parent: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(temp_parent) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

impl Context {
    /// A directory on the host, opened once.
    pub fn from_dir(dir: &Path) -> Result<Context> {
        let file = std::fs::File::open(dir)
            .with_context(|| format!("unable to prepare context: path {:?} not found", dir))?;
        if !file.metadata()?.is_dir() {
            bail!(
                "unable to prepare context: context must be a directory: {}",
                dir.display()
            );
        }
        Ok(Context {
            root: file.into(),
            path: dir.to_path_buf(),
            ignore: Matcher::default(),
            temporary: false,
        })
    }

    /// A tar stream (uncompressed) extracted into a new private directory below `temp_parent`.
    /// Entries with `..`, and entries through symlinks the archive planted, stay inside it.
    pub fn from_tar(tar: &mut dyn Read, temp_parent: &Path) -> Result<Context> {
        let ctx = Context::empty(temp_parent)?;
        let mut sink = DirSink::new(&ctx.root, Ownership::Fixed(0, 0))?;
        // A context is data to copy from: no device nodes from it on the host.
        sink.make_devices(false);
        tarstream::read_tar(tar, &mut sink).context("reading the build context from stdin")?;
        Ok(ctx)
    }

    /// An empty context (a Dockerfile on stdin): a new private directory.
    pub fn empty(temp_parent: &Path) -> Result<Context> {
        std::fs::create_dir_all(temp_parent)
            .with_context(|| format!("cannot create {}", temp_parent.display()))?;
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = temp_parent.join(format!(
            "{TEMP_PREFIX}{}-{seq}-{}",
            std::process::id(),
            crate::image::time::now_secs()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let root: OwnedFd = std::fs::File::open(&path)?.into();
        Ok(Context {
            root,
            path,
            ignore: Matcher::default(),
            temporary: true,
        })
    }

    /// The context's directory on the host (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The context's directory fd; lookups from it must use [`Context::open_beneath`].
    pub fn root(&self) -> &OwnedFd {
        &self.root
    }

    /// The `.dockerignore` patterns in force (empty without one).
    pub fn ignore(&self) -> &Matcher {
        &self.ignore
    }

    /// Replaces the patterns (an executor given them some other way, tests).
    pub fn set_ignore(&mut self, ignore: Matcher) {
        self.ignore = ignore;
    }

    /// An `O_PATH` fd for `rel` (relative to the context; a leading `/` is the context's root),
    /// following symlinks only while they stay inside the context.
    pub fn open_beneath(&self, rel: &Path) -> Result<OwnedFd> {
        open_beneath(&self.root, rel, libc::O_PATH).map_err(|e| escape_error(e, rel))
    }

    fn read_dockerfile(&self, file: &Path) -> Result<DockerfileText> {
        let bytes = read_beneath(&self.root, file).map_err(|e| match e {
            nix::errno::Errno::ENOENT => anyhow::anyhow!(
                "failed to read dockerfile: open {}: no such file or directory",
                file.display()
            ),
            e => escape_error(e, file).context("failed to read dockerfile"),
        })?;
        into_text(bytes, &file.display().to_string())
    }

    /// `FILE.dockerignore` beside the Dockerfile in the context, else `.dockerignore`.
    fn load_ignore(&mut self, dockerfile: Option<&Path>) -> Result<()> {
        if let Some(file) = dockerfile {
            let mut beside = file.as_os_str().to_os_string();
            beside.push(".dockerignore");
            if self.try_ignore_in_context(Path::new(&beside))? {
                return Ok(());
            }
        }
        self.try_ignore_in_context(Path::new(".dockerignore"))?;
        Ok(())
    }

    /// A Dockerfile read from the host: `FILE.dockerignore` beside it there, else the context's.
    fn load_ignore_host(&mut self, dockerfile: &Path) -> Result<()> {
        let mut beside = dockerfile.as_os_str().to_os_string();
        beside.push(".dockerignore");
        let beside = PathBuf::from(beside);
        match std::fs::read(&beside) {
            Ok(bytes) => {
                self.ignore = Matcher::parse(
                    &beside.display().to_string(),
                    &String::from_utf8_lossy(&bytes),
                )?;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.load_ignore(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", beside.display())),
        }
    }

    fn try_ignore_in_context(&mut self, rel: &Path) -> Result<bool> {
        match read_beneath(&self.root, rel) {
            Ok(bytes) => {
                self.ignore =
                    Matcher::parse(&rel.display().to_string(), &String::from_utf8_lossy(&bytes))?;
                Ok(true)
            }
            Err(nix::errno::Errno::ENOENT) => Ok(false),
            Err(e) => Err(escape_error(e, rel)).context("cannot read the ignore file"),
        }
    }
}

use std::os::unix::fs::DirBuilderExt;

/// openat2 of `rel` below `root` with RESOLVE_BENEATH: a `..` or a symlink leading out fails
/// with EXDEV instead of being followed.
pub fn open_beneath(root: &OwnedFd, rel: &Path, flags: i32) -> nix::Result<OwnedFd> {
    let stripped = strip_root(rel);
    let rel = if stripped.as_os_str().is_empty() {
        Path::new(".")
    } else {
        stripped
    };
    inroot::openat2(
        root.as_fd(),
        rel,
        flags,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    )
}

fn strip_root(p: &Path) -> &Path {
    let bytes = p.as_os_str().as_bytes();
    let start = bytes.iter().take_while(|b| **b == b'/').count();
    Path::new(OsStr::from_bytes(&bytes[start..]))
}

fn read_beneath(root: &OwnedFd, rel: &Path) -> nix::Result<Vec<u8>> {
    let fd = open_beneath(
        root,
        rel,
        libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK,
    )?;
    let mut file = std::fs::File::from(fd);
    if !file
        .metadata()
        .map_err(|_| nix::errno::Errno::EIO)?
        .is_file()
    {
        return Err(nix::errno::Errno::EISDIR);
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(bytes)
}

/// An openat2(RESOLVE_BENEATH) failure in words: EXDEV is a path leaving the context.
pub fn escape_error(e: nix::errno::Errno, rel: &Path) -> anyhow::Error {
    match e {
        nix::errno::Errno::EXDEV => anyhow::anyhow!(
            "forbidden path outside the build context: {} (a `..` or a symlink leads out of \
             the context)",
            rel.display()
        ),
        nix::errno::Errno::ENOENT => anyhow::anyhow!("{}: not found", rel.display()),
        nix::errno::Errno::ELOOP => anyhow::anyhow!(
            "{}: too many levels of symbolic links in the build context",
            rel.display()
        ),
        e => anyhow::Error::new(e).context(format!("{} (in the build context)", rel.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Temp(PathBuf);
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn temp(name: &str) -> Temp {
        let d = std::env::temp_dir().join(format!("berth-ctx-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Temp(d)
    }

    #[test]
    fn dockerfile_and_ignore_selection() {
        let t = temp("select");
        let ctx = t.0.join("ctx");
        std::fs::create_dir_all(ctx.join("sub")).unwrap();
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(ctx.join(".dockerignore"), "a\n").unwrap();
        std::fs::write(ctx.join("sub/app.Dockerfile"), "FROM busybox\n").unwrap();
        std::fs::write(ctx.join("sub/app.Dockerfile.dockerignore"), "b\n").unwrap();
        let (c, text) = prepare(
            ContextArg::Dir(&ctx),
            DockerfileArg::Default,
            &mut std::io::empty(),
            &t.0,
        )
        .unwrap();
        assert_eq!(text.text, "FROM scratch\n");
        assert!(c.ignore().excludes("a") && !c.ignore().excludes("b"));
        let (c, text) = prepare(
            ContextArg::Dir(&ctx),
            DockerfileArg::File(Path::new("sub/app.Dockerfile")),
            &mut std::io::empty(),
            &t.0,
        )
        .unwrap();
        assert_eq!(text.text, "FROM busybox\n");
        assert!(c.ignore().excludes("b") && !c.ignore().excludes("a"));
        let abs = ctx.join("sub/app.Dockerfile");
        let (c, _) = prepare(
            ContextArg::Dir(&ctx),
            DockerfileArg::File(&abs),
            &mut std::io::empty(),
            &t.0,
        )
        .unwrap();
        assert!(c.ignore().excludes("b"));
        let (c, text) = prepare(
            ContextArg::Dir(&ctx),
            DockerfileArg::Stdin,
            &mut &b"FROM x\n"[..],
            &t.0,
        )
        .unwrap();
        assert_eq!((text.name.as_str(), text.text.as_str()), ("-", "FROM x\n"));
        assert!(c.ignore().excludes("a"));
        let e = prepare(
            ContextArg::Dir(&ctx),
            DockerfileArg::File(Path::new("nope.Dockerfile")),
            &mut std::io::empty(),
            &t.0,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("nope.Dockerfile"), "{e:#}");
    }

    #[test]
    fn a_dockerfile_symlinked_out_of_the_context_is_refused() {
        let t = temp("dfesc");
        let ctx = t.0.join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(t.0.join("secret"), "FROM host-secret\n").unwrap();
        symlink(t.0.join("secret"), ctx.join("Dockerfile")).unwrap();
        let e = prepare(
            ContextArg::Dir(&ctx),
            DockerfileArg::Default,
            &mut std::io::empty(),
            &t.0,
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("outside the build context"),
            "{e:#}"
        );
    }

    #[test]
    fn stdin_holds_a_dockerfile_or_a_tar_context() {
        let t = temp("stdin");
        let (c, text) = prepare(
            ContextArg::Stdin,
            DockerfileArg::Default,
            &mut &b"FROM scratch\nCOPY a /\n"[..],
            &t.0,
        )
        .unwrap();
        assert_eq!(text.name, "-");
        let dir = c.path().to_path_buf();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        drop(c);
        assert!(!dir.exists(), "the temporary context is removed");

        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [("Dockerfile", &b"FROM busybox\n"[..]), ("d/f", b"x")] {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        let gz = gz.finish().unwrap();
        let (c, text) = prepare(
            ContextArg::Stdin,
            DockerfileArg::Default,
            &mut &gz[..],
            &t.0,
        )
        .unwrap();
        assert_eq!(text.text, "FROM busybox\n");
        assert_eq!(std::fs::read(c.path().join("d/f")).unwrap(), b"x");
        let e = prepare(
            ContextArg::Stdin,
            DockerfileArg::Stdin,
            &mut std::io::empty(),
            &t.0,
        )
        .unwrap_err();
        assert!(e.to_string().contains("both"));
    }

    #[test]
    fn stale_temporary_contexts_are_swept() {
        let t = temp("sweep");
        // No process has pid 2^22 + 1 (beyond pid_max's ceiling).
        let stale = t.0.join(format!("{TEMP_PREFIX}4194305-0-0"));
        std::fs::create_dir_all(stale.join("x")).unwrap();
        let live = Context::empty(&t.0).unwrap();
        sweep_stale(&t.0).unwrap();
        assert!(!stale.exists());
        assert!(live.path().exists());
    }
}
