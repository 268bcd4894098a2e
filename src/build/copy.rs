//! COPY and ADD: sources resolved in the context or another root, written into a step's root
//! filesystem with Docker's (BuildKit's) semantics.
//!
//! API:
//! - [`plan`]`(&CopyArgs, Source, parent_root)` -> [`CopyPlan`]: the sources resolved (globs
//!   expanded, `.dockerignore` applied, symlinks at the top followed inside their tree, URLs
//!   downloaded, `--chown` names looked up in `parent_root`'s passwd and group files). Every
//!   error names the source as written.
//! - [`CopyPlan::content_digest`]: the cache key's content part, see [`super::checksum`].
//! - [`CopyPlan::apply`]`(dest_root)`: writes the sources into `dest_root` (the step's root
//!   filesystem: hostile; everything resolves inside it, symlinks included). It must be the
//!   merged view (the overlay's mount), so that existing directories, symlinks and the
//!   passwd file of the lower layers are seen.
//!
//! Semantics, as BuildKit's dockerfile2llb and fsutil's copy: the destination is relative to
//! the WORKDIR; it is a directory when it ends with `/` (or is `.`), or when it already is one;
//! several sources need such a destination. A source directory copies what it holds (its own
//! time goes to the destination directory, not its mode or owner). Files keep their mode, mtime,
//! xattrs and hard links among themselves; owners become 0:0 or `--chown`'s; `--chmod` sets
//! the permission bits of everything copied. Missing parents of the destination are made
//! 0755, owned as the copy. ADD extracts local tar archives (owners from the archive unless
//! `--chown`; its paths and links resolve inside the destination directory, as Docker's
//! chrooted untar), and downloads URLs (mode 0600, mtime from Last-Modified).

use super::add::{self, Download};
use super::context::{self, Context};
use super::ignore::{self, Matcher};
use super::owner::{self, ModeChange};
use crate::image::fswalk::{self, DirSink, Ownership, WalkOptions};
use crate::image::tarstream::{self, Entry, EntryKind, Filter, Sink};
use crate::runtime::inroot::{self, Create};
use anyhow::{bail, Context as _, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// A COPY or ADD with its words expanded.
#[derive(Clone, Debug, Default)]
pub struct CopyArgs<'a> {
    /// ADD: archives extracted, URLs downloaded.
    pub add: bool,
    /// Sources as written after expansion (globs, `<<NAME` for a heredoc).
    pub sources: &'a [String],
    pub dest: &'a str,
    /// The stage's WORKDIR (absolute; `/` when none was set).
    pub workdir: &'a str,
    pub chown: Option<&'a str>,
    pub chmod: Option<&'a str>,
    /// ADD `--checksum=sha256:...` (URLs only).
    pub checksum: Option<&'a str>,
    /// Heredoc bodies (expanded where they expand) by name: `COPY <<EOF /x`.
    pub heredocs: &'a [(String, Vec<u8>)],
}

/// Where the sources are read from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// The build context: `.dockerignore` applies; `..` or a symlink out is refused.
    Context(&'a Context),
    /// Another stage's or an image's root filesystem (`--from`): paths resolve inside it as
    /// its own `/`.
    Root(&'a Path),
}

/// The tree sources are read from, by fd.
struct Tree {
    root: OwnedFd,
    /// What the root fd's `/proc/self/fd` link reads (to tell real paths inside it).
    real: PathBuf,
    /// RESOLVE_BENEATH (refuse escapes: the context) or RESOLVE_IN_ROOT (an image's root).
    beneath: bool,
    ignore: Option<Matcher>,
    /// `build context` or `stage or image`, for messages.
    what: &'static str,
}

impl Tree {
    fn open(&self, rel: &Path) -> std::result::Result<OwnedFd, Errno> {
        if self.beneath {
            context::open_beneath(&self.root, rel, libc::O_PATH)
        } else {
            let rel = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            };
            inroot::openat2(
                self.root.as_fd(),
                rel,
                libc::O_PATH,
                libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
            )
        }
    }

    /// The path inside the tree `fd` really is at (symlinks on the way resolved).
    fn real_rel(&self, fd: &OwnedFd) -> Result<PathBuf> {
        let at = std::fs::read_link(inroot::fd_path(fd))?;
        let rel = at
            .strip_prefix(&self.real)
            .with_context(|| format!("{} is not inside the {}", at.display(), self.what))?;
        Ok(rel.to_path_buf())
    }

    fn excluded(&self, rel: &Path) -> bool {
        let Some(m) = &self.ignore else { return false };
        let s = rel.to_string_lossy();
        !s.is_empty() && m.excludes(&s) && !m.may_include_below(&s)
    }
}

/// One resolved source.
enum Planned {
    /// A path in the tree: `rel` where it really is, `name` the base name it is copied as.
    Path {
        fd: OwnedFd,
        rel: PathBuf,
        name: OsString,
        is_dir: bool,
        /// ADD of a local tar archive: extracted.
        archive: bool,
    },
    Url(Download),
    Heredoc {
        name: String,
        content: Vec<u8>,
    },
}

/// A COPY or ADD resolved, ready to be keyed and applied.
pub struct CopyPlan {
    verb: &'static str,
    tree: Option<Tree>,
    sources: Vec<Planned>,
    /// The destination, absolute and cleaned (not yet resolved in a root).
    dest: String,
    /// The destination is a directory (ends with `/`, is `.`, or several sources).
    dest_is_dir: bool,
    owner: (u32, u32),
    chown_given: bool,
    mode: Option<ModeChange>,
    /// When a heredoc's file is made (all of a plan's the same).
    now: i64,
}

impl std::fmt::Debug for CopyPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyPlan")
            .field("verb", &self.verb)
            .field("sources", &self.sources.len())
            .field("dest", &self.dest)
            .finish()
    }
}

/// Resolves a COPY or ADD (see the module's documentation). `parent_root` is the root
/// filesystem the step starts from, whose `/etc/passwd` and `/etc/group` name `--chown`'s ids.
pub fn plan(args: &CopyArgs, source: Source, parent_root: &Path) -> Result<CopyPlan> {
    let verb = if args.add { "ADD" } else { "COPY" };
    if args.sources.is_empty() {
        bail!("{verb} requires at least two arguments");
    }
    let (owner, chown_given) = match args.chown {
        Some(spec) if !spec.is_empty() => (owner::resolve_chown(spec, parent_root)?, true),
        _ => ((0, 0), false),
    };
    let mode = args.chmod.map(ModeChange::parse).transpose()?;
    if args.checksum.is_some() && !args.sources.iter().all(|s| add::is_url(s)) {
        bail!("checksum can't be specified for non-HTTP(S) sources");
    }
    let dest_is_dir_written = args.dest.is_empty() || args.dest == "." || args.dest.ends_with('/');
    let dest = if args.dest.starts_with('/') {
        ignore::clean(args.dest)
    } else {
        ignore::clean(&format!("/{}/{}", args.workdir, args.dest))
    };
    if args.sources.len() > 1 && !dest_is_dir_written {
        bail!(
            "When using {verb} with more than one source file, the destination must be a \
             directory and end with a /"
        );
    }
    let mut tree: Option<Tree> = None;
    let mut sources = Vec::new();
    for written in args.sources {
        if add::is_url(written) {
            if !args.add {
                bail!("source can't be a URL for COPY: {written}");
            }
            sources.push(Planned::Url(add::download(written, args.checksum)?));
            continue;
        }
        if let Some(name) = written.strip_prefix("<<") {
            let name = name.trim_start_matches('-').trim_matches(['"', '\'']);
            if let Some((n, content)) = args.heredocs.iter().find(|(n, _)| n == name) {
                sources.push(Planned::Heredoc {
                    name: n.clone(),
                    content: content.clone(),
                });
                continue;
            }
        }
        if tree.is_none() {
            tree = Some(open_tree(source)?);
        }
        let t = tree.as_ref().expect("opened above");
        for (rel_written, fd) in resolve_source(t, written, verb)? {
            let st = fstat(&fd)?;
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            let rel = t.real_rel(&fd)?;
            if t.excluded(&rel) {
                bail!(
                    "{verb} failed: {written:?}: not found in the build context (excluded by \
                     .dockerignore: {})",
                    rel.display()
                );
            }
            let name = rel_written
                .file_name()
                .or_else(|| rel.file_name())
                .map(OsStr::to_os_string)
                .unwrap_or_default();
            let archive = args.add
                && st.st_mode & libc::S_IFMT == libc::S_IFREG
                && is_archive(&fd).with_context(|| format!("{verb} {written}"))?;
            sources.push(Planned::Path {
                fd,
                rel,
                name,
                is_dir,
                archive,
            });
        }
    }
    if sources.len() > 1 && !dest_is_dir_written {
        bail!(
            "When using {verb} with more than one source file, the destination must be a \
             directory and end with a /"
        );
    }
    Ok(CopyPlan {
        verb,
        tree,
        sources,
        dest,
        dest_is_dir: dest_is_dir_written,
        owner,
        chown_given,
        mode,
        now: crate::image::time::now_secs(),
    })
}

fn open_tree(source: Source) -> Result<Tree> {
    let (root, beneath, ignore, what) = match source {
        Source::Context(ctx) => (
            ctx.root().try_clone()?,
            true,
            (!ctx.ignore().is_empty()).then(|| ctx.ignore().clone()),
            "build context",
        ),
        Source::Root(path) => (
            std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?
                .into(),
            false,
            None,
            "stage or image",
        ),
    };
    let real = std::fs::read_link(inroot::fd_path(&root))?;
    Ok(Tree {
        root,
        real,
        beneath,
        ignore,
        what,
    })
}

fn is_archive(fd: &OwnedFd) -> Result<bool> {
    let file = std::fs::File::open(inroot::fd_path(fd))?;
    Ok(add::open_archive(file)?.is_some())
}

/// The paths a source names in the tree (globs expanded per component, as Go's
/// `filepath.Match`), each with an fd that followed symlinks inside the tree.
fn resolve_source(t: &Tree, written: &str, verb: &str) -> Result<Vec<(PathBuf, OwnedFd)>> {
    // `..` above the tree is refused for the context; an image root clamps it, as a path in
    // it would resolve.
    let cleaned = ignore::clean(written);
    if t.beneath && (cleaned == ".." || cleaned.starts_with("../")) {
        bail!("{verb} failed: forbidden path outside the build context: {written}");
    }
    let cleaned = ignore::clean(&format!("/{cleaned}"));
    let rel = PathBuf::from(cleaned.trim_start_matches('/'));
    let not_found = || {
        anyhow::anyhow!(
            "{verb} failed: {written:?}: not found in the {}{}",
            t.what,
            if t.ignore.is_some() {
                " (or excluded by .dockerignore)"
            } else {
                ""
            }
        )
    };
    if !ignore::has_glob(&cleaned) {
        if t.excluded(&rel) {
            return Err(not_found());
        }
        return match t.open(&rel) {
            Ok(fd) => Ok(vec![(rel, fd)]),
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => Err(not_found()),
            Err(e) => Err(context::escape_error(e, Path::new(written)))
                .with_context(|| format!("{verb} failed")),
        };
    }
    let mut candidates = vec![PathBuf::new()];
    let parts: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    for part in &parts {
        let text = part.to_string_lossy();
        if !ignore::has_glob(&text) {
            candidates = candidates.into_iter().map(|c| c.join(part)).collect();
            continue;
        }
        let mut next = Vec::new();
        for cand in &candidates {
            let dir = match t.open(cand) {
                Ok(dir) => dir,
                Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => continue,
                Err(e) => {
                    return Err(context::escape_error(e, cand))
                        .with_context(|| format!("{verb} failed: {written}"))
                }
            };
            if fstat(&dir)?.st_mode & libc::S_IFMT != libc::S_IFDIR {
                continue;
            }
            for name in dir_names(&dir)? {
                let name_text = name.to_string_lossy();
                if !ignore::glob_component_matches(&text, &name_text)
                    .with_context(|| format!("{verb} failed: invalid pattern {written:?}"))?
                {
                    continue;
                }
                let path = cand.join(&name);
                // Excluded paths are not there, unless they hold re-included ones.
                let skip = t.excluded(&path);
                if !skip {
                    next.push(path);
                }
            }
        }
        candidates = next;
    }
    let mut found = Vec::new();
    for cand in candidates {
        match t.open(&cand) {
            Ok(fd) => found.push((cand, fd)),
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {}
            Err(e) => {
                return Err(context::escape_error(e, &cand))
                    .with_context(|| format!("{verb} failed"))
            }
        }
    }
    if found.is_empty() {
        bail!(
            "{verb} failed: no source files were specified: {written:?} matches nothing in the {}",
            t.what
        );
    }
    Ok(found)
}

/// A directory's names, sorted bytewise.
fn dir_names(dir: &OwnedFd) -> Result<Vec<OsString>> {
    let fd = nix::fcntl::open(
        &inroot::fd_path(dir),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names: Vec<OsString> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Where in the destination root one source lands.
enum Target {
    /// A directory's contents (or an archive's) go into this directory.
    Into(PathBuf),
    /// A file-like source becomes this path.
    As(PathBuf),
}

/// The destination root, open.
struct DestRoot {
    fd: OwnedFd,
    real: PathBuf,
}

impl DestRoot {
    fn open(root: &Path) -> Result<DestRoot> {
        let fd: OwnedFd = std::fs::File::open(root)
            .with_context(|| format!("cannot open the root filesystem {}", root.display()))?
            .into();
        let real = std::fs::read_link(inroot::fd_path(&fd))?;
        Ok(DestRoot { fd, real })
    }

    /// The path (relative, no leading `/`) that `path` really is inside the root: existing
    /// symlinks on the way resolved inside it, the missing rest appended.
    fn real_path(&self, path: &Path) -> Result<PathBuf> {
        let rel = Path::new(path.to_str().unwrap_or("/").trim_start_matches('/'));
        if rel.as_os_str().is_empty() {
            return Ok(PathBuf::new());
        }
        match inroot::openat2(
            self.fd.as_fd(),
            rel,
            libc::O_PATH,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        ) {
            Ok(fd) => {
                let at = std::fs::read_link(inroot::fd_path(&fd))?;
                Ok(at
                    .strip_prefix(&self.real)
                    .with_context(|| format!("{} resolved out of the root", path.display()))?
                    .to_path_buf())
            }
            Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {
                let parent = rel.parent().unwrap_or(Path::new(""));
                let name = rel.file_name().context("no file name")?;
                Ok(self.real_path(parent)?.join(name))
            }
            Err(e) => Err(inroot::resolve_error(e, path)),
        }
    }

    fn is_dir(&self, real: &Path) -> bool {
        let p = if real.as_os_str().is_empty() {
            Path::new(".")
        } else {
            real
        };
        inroot::openat2(
            self.fd.as_fd(),
            p,
            libc::O_PATH,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
        )
        .is_ok_and(|fd| inroot::is_dir(&fd))
    }

    /// Makes the directories of `real` that are missing, mode 0755, owned by `owner`, as
    /// BuildKit's MkdirAll for a copy.
    fn mkdir_all(&self, real: &Path, owner: (u32, u32)) -> Result<()> {
        let mut dir = self.fd.try_clone()?;
        let mut walked = PathBuf::new();
        for c in real.components() {
            let Component::Normal(name) = c else { continue };
            walked.push(name);
            let open = |dir: &OwnedFd| {
                openat(
                    dir.as_fd(),
                    name,
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
            };
            let fd = match open(&dir) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(
                        dir.as_fd(),
                        name,
                        Mode::from_bits_truncate(0o755),
                    ) {
                        Ok(()) => {
                            let fd = open(&dir)?;
                            set_owner_mode(&fd, owner, 0o755).with_context(|| {
                                format!("cannot set up the directory /{}", walked.display())
                            })?;
                            fd
                        }
                        Err(Errno::EEXIST) => open(&dir)?,
                        Err(e) => {
                            return Err(e).with_context(|| {
                                format!("cannot create the directory /{}", walked.display())
                            })
                        }
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot open /{}", walked.display()))
                }
            };
            let kind = SFlag::from_bits_truncate(fstat(&fd)?.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFLNK {
                // A symlink appeared since the path was resolved (or dangles): resolve the
                // rest inside the root, without setting owners on what that makes.
                inroot::resolve(self.fd.as_fd(), real, Create::Dir)?;
                return Ok(());
            }
            if kind != SFlag::S_IFDIR {
                bail!("cannot copy to non-directory: /{}", walked.display());
            }
            dir = fd;
        }
        Ok(())
    }

    fn targets(&self, plan: &CopyPlan) -> Result<Vec<Target>> {
        let dest_real = self.real_path(Path::new(&plan.dest))?;
        let dest_dir = plan.dest_is_dir || self.is_dir(&dest_real);
        let mut out = Vec::new();
        for s in &plan.sources {
            let target = match s {
                Planned::Path { is_dir: true, .. } | Planned::Path { archive: true, .. } => {
                    Target::Into(dest_real.clone())
                }
                Planned::Path { name, .. } => {
                    if dest_dir {
                        Target::As(dest_real.join(name))
                    } else {
                        Target::As(dest_real.clone())
                    }
                }
                Planned::Url(d) => {
                    if dest_dir {
                        Target::As(dest_real.join(&d.file_name))
                    } else {
                        Target::As(dest_real.clone())
                    }
                }
                Planned::Heredoc { name, .. } => {
                    if dest_dir {
                        Target::As(dest_real.join(name))
                    } else {
                        Target::As(dest_real.clone())
                    }
                }
            };
            out.push(target);
        }
        Ok(out)
    }
}

fn set_owner_mode(fd: &OwnedFd, owner: (u32, u32), mode: u32) -> Result<()> {
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH acts on the fd itself.
    let rc = unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            owner.0,
            owner.1,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 && (Errno::last() != Errno::EPERM || nix::unistd::geteuid().is_root()) {
        return Err(Errno::last()).context("cannot set the owner");
    }
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        &inroot::fd_path(fd),
        Mode::from_bits_truncate(mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .context("cannot set the mode")
}

impl CopyPlan {
    /// Writes the sources into `dest_root` (the step's root filesystem).
    pub fn apply(&self, dest_root: &Path) -> Result<()> {
        let root = DestRoot::open(dest_root)?;
        let targets = root.targets(self)?;
        let mut sink = DirSink::new(&root.fd, Ownership::Keep)?;
        for (source, target) in self.sources.iter().zip(&targets) {
            let parent = match target {
                Target::Into(dir) => dir.as_path(),
                Target::As(path) => path.parent().unwrap_or(Path::new("")),
            };
            root.mkdir_all(parent, self.owner)
                .with_context(|| format!("{} failed", self.verb))?;
            if let (
                Planned::Path {
                    fd, archive: true, ..
                },
                Target::Into(dir),
            ) = (source, target)
            {
                // As Docker's chrooted untar: the archive's paths, links included, resolve
                // inside the destination directory.
                let dir_fd = inroot::resolve(root.fd.as_fd(), dir, Create::Nothing)?;
                let mut inside = DirSink::new(&dir_fd, Ownership::Keep)?;
                self.emit_archive(fd, PathBuf::new(), &mut inside)
                    .with_context(|| format!("{} failed", self.verb))?;
                continue;
            }
            self.emit(source, target, &mut sink)
                .with_context(|| format!("{} failed", self.verb))?;
        }
        Ok(())
    }

    /// The cache key's content part: every entry the copy writes (its path in the
    /// destination, kind, mode, owner, xattrs, link target, content), in order; not mtimes.
    /// `parent_root` is the root the step starts from (where the destination is resolved).
    pub fn content_digest(&self, parent_root: &Path) -> Result<String> {
        let root = DestRoot::open(parent_root)?;
        let targets = root.targets(self)?;
        let mut hasher = super::checksum::DigestSink::default();
        hasher.note(self.verb.as_bytes());
        for (source, target) in self.sources.iter().zip(&targets) {
            self.emit(source, target, &mut hasher)
                .with_context(|| format!("{} failed", self.verb))?;
        }
        Ok(hasher.finish())
    }

    /// Puts a tar archive's entries, below `prefix`, into `sink`: owners from the archive
    /// unless `--chown`, modes as they are.
    fn emit_archive(&self, fd: &OwnedFd, prefix: PathBuf, sink: &mut dyn Sink) -> Result<()> {
        let file = std::fs::File::open(inroot::fd_path(fd))?;
        let mut stream = add::open_archive(file)?.context("the archive changed")?;
        let mut re = Retarget::new(sink, prefix, self);
        re.owner = self.chown_given.then_some(self.owner);
        re.mode = None;
        tarstream::read_tar(&mut stream, &mut re).context("extracting the archive")?;
        re.finish()
    }

    /// Puts one source's entries, mapped to their target, into `sink`.
    fn emit(&self, source: &Planned, target: &Target, sink: &mut dyn Sink) -> Result<()> {
        let walk_opts = WalkOptions {
            xattrs: true,
            hardlinks: true,
            ..Default::default()
        };
        match (source, target) {
            (
                Planned::Path {
                    fd, archive: true, ..
                },
                Target::Into(dir),
            ) => self.emit_archive(fd, dir.clone(), sink),
            (
                Planned::Path {
                    fd,
                    rel,
                    is_dir: true,
                    ..
                },
                Target::Into(dir),
            ) => {
                let st = fstat(fd)?;
                let top = Entry {
                    path: PathBuf::new(),
                    kind: EntryKind::Dir,
                    mode: st.st_mode & 0o7777,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    mtime: st.st_mtime,
                    mtime_nsec: st.st_mtime_nsec,
                    xattrs: Vec::new(),
                };
                // As BuildKit: the destination directory (made 0755 and owned as the copy
                // when missing) keeps its mode and owner, and takes the source's times.
                let mut re = Retarget::new(sink, dir.clone(), self);
                re.ignore = self
                    .tree
                    .as_ref()
                    .and_then(|t| t.ignore.as_ref())
                    .map(|m| (m, rel.clone()));
                fswalk::walk(fd.try_clone()?, Path::new(""), walk_opts, &mut re)?;
                re.finish()?;
                re.leave_dir(&top)
            }
            (Planned::Path { fd, .. }, Target::As(path)) => {
                let name = path.file_name().context("a destination without a name")?;
                let mut re = Retarget::new(
                    sink,
                    path.parent().unwrap_or(Path::new("")).to_path_buf(),
                    self,
                );
                fswalk::walk(fd.try_clone()?, Path::new(name), walk_opts, &mut re)?;
                re.finish()
            }
            (Planned::Url(d), Target::As(path)) => {
                let entry = Entry {
                    mtime: d.mtime,
                    ..Entry::new(PathBuf::new(), EntryKind::File(d.size), 0o600)
                };
                let mut re = Retarget::new(sink, path.clone(), self);
                re.put(&entry, &mut d.reader()?)
            }
            (Planned::Heredoc { content, .. }, Target::As(path)) => {
                let entry = Entry {
                    mtime: self.now,
                    ..Entry::new(PathBuf::new(), EntryKind::File(content.len() as u64), 0o644)
                };
                let mut re = Retarget::new(sink, path.clone(), self);
                re.put(&entry, &mut &content[..])
            }
            _ => bail!("internal error: a source and its target disagree"),
        }
    }
}

/// Maps a walk's (or an archive's) entries to their place in the destination, sets owner and
/// mode as the copy asks, and leaves out what `.dockerignore` excludes (keeping the parents of
/// re-included paths).
struct Retarget<'a> {
    inner: &'a mut dyn Sink,
    /// Where the walk's root lands, relative to the destination root.
    prefix: PathBuf,
    /// None: the entries' own (ADD of an archive without `--chown`).
    owner: Option<(u32, u32)>,
    mode: Option<&'a ModeChange>,
    /// The matcher and the context path the walk starts at.
    ignore: Option<(&'a Matcher, PathBuf)>,
    /// Excluded directories walked for re-included children, not yet written.
    pending: Vec<Entry>,
    /// Those written since, to be left (their times set) at the end.
    flushed: Vec<Entry>,
}

impl<'a> Retarget<'a> {
    fn new(inner: &'a mut dyn Sink, prefix: PathBuf, plan: &'a CopyPlan) -> Retarget<'a> {
        Retarget {
            inner,
            prefix,
            owner: Some(plan.owner),
            mode: plan.mode.as_ref(),
            ignore: None,
            pending: Vec::new(),
            flushed: Vec::new(),
        }
    }

    fn map(&self, e: &Entry) -> Entry {
        let mut out = e.clone();
        out.path = if e.path.as_os_str().is_empty() {
            self.prefix.clone()
        } else {
            self.prefix.join(&e.path)
        };
        if let EntryKind::HardLink(t) = &e.kind {
            out.kind = EntryKind::HardLink(self.prefix.join(t));
        }
        if let Some((u, g)) = self.owner {
            out.uid = u;
            out.gid = g;
        }
        if let Some(m) = self.mode {
            if !matches!(e.kind, EntryKind::Symlink(_) | EntryKind::HardLink(_)) {
                out.mode = m.apply(e.mode, e.is_dir());
            }
        }
        out
    }

    fn finish(&mut self) -> Result<()> {
        while let Some(e) = self.flushed.pop() {
            self.inner.leave_dir(&e)?;
        }
        Ok(())
    }
}

impl Sink for Retarget<'_> {
    fn filter(&mut self, e: &Entry) -> Filter {
        self.pending
            .retain(|p| e.path.starts_with(&p.path) && e.path != p.path);
        let Some((m, base)) = &self.ignore else {
            return Filter::Put;
        };
        let ctx_path = base.join(&e.path);
        let s = ctx_path.to_string_lossy();
        if !m.excludes(&s) {
            return Filter::Put;
        }
        if e.is_dir() && m.may_include_below(&s) {
            self.pending.push(e.clone());
            return Filter::DescendOnly;
        }
        Filter::Skip
    }

    fn put(&mut self, e: &Entry, data: &mut dyn Read) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        for p in &pending {
            if e.path.starts_with(&p.path) {
                let mapped = self.map(p);
                self.inner.put(&mapped, &mut std::io::empty())?;
                self.flushed.push(mapped);
            }
        }
        let mapped = self.map(e);
        self.inner.put(&mapped, data)
    }

    fn leave_dir(&mut self, e: &Entry) -> Result<()> {
        let mapped = self.map(e);
        self.inner.leave_dir(&mapped)
    }
}
