//! What a container changed in its root filesystem, from its overlay upper directory and the
//! image's snapshots beneath it: `docker diff`'s list of added (A), changed (C) and deleted
//! (D) paths. The result is Docker's comparison of the container's tree with the image's
//! (its overlay2 driver's, as its CLI shows it), read from the upper directory alone:
//! - a whiteout (a 0/0 character device) is the deletion of what the image had there;
//! - an opaque directory (`trusted.overlay.opaque=y`, a directory removed and made again)
//!   over one of the image's is a changed directory: what the image had in it and it no
//!   longer holds is deleted, what it holds is added or changed;
//! - a file, link or device the image had is changed, else added; a directory the image had
//!   is changed when its mode or owner differs, or when anything below it changed (so the
//!   directories above any change are listed, each once, before what they hold);
//! - the order is a depth-first walk, names sorted bytewise.
//!
//! The lowers are looked at as overlayfs merges them (upper layers' whiteouts and opaque
//! directories hide lower content). Both trees are read by fd without following symlinks:
//! the container may change its upper directory while this runs.

use super::unpack::OPAQUE_XATTR;
use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Modify,
    Add,
    Delete,
}

impl ChangeKind {
    /// Docker's letter (and its API's number: 0 C, 1 A, 2 D).
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modify => 'C',
            ChangeKind::Add => 'A',
            ChangeKind::Delete => 'D',
        }
    }

    pub fn api_kind(self) -> u8 {
        match self {
            ChangeKind::Modify => 0,
            ChangeKind::Add => 1,
            ChangeKind::Delete => 2,
        }
    }
}

/// One line of `docker diff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Absolute inside the container (`/etc/motd`).
    pub path: String,
    pub kind: ChangeKind,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.letter(), self.path)
    }
}

/// The changes of the overlay upper directory `upper` over `lowers` (the image's snapshot
/// directories, base first, as [`super::Store::snapshot_dirs`] gives them).
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>> {
    changes_hiding(upper, lowers, &[])
}

/// Like [`changes`], leaving out the empty regular files at `hidden` (absolute container
/// paths): mount points the runtime made in the writable layer for files bind-mounted over
/// them (`/etc/hosts`), which Docker keeps in a layer of their own.
pub fn changes_hiding(upper: &Path, lowers: &[PathBuf], hidden: &[String]) -> Result<Vec<Change>> {
    let open_dir = |p: &Path| -> Result<OwnedFd> {
        openat(
            nix::fcntl::AT_FDCWD,
            p,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", p.display()))
    };
    let upper_fd = open_dir(upper)?;
    // Top layer first, as overlayfs looks them up.
    let lower_fds = lowers
        .iter()
        .rev()
        .map(|p| open_dir(p))
        .collect::<Result<Vec<_>>>()?;
    let mut walk = DiffWalk { hidden };
    walk.dir(&upper_fd, "", &lower_fds, false)
        .with_context(|| format!("reading the changes in {}", upper.display()))
}

struct DiffWalk<'a> {
    hidden: &'a [String],
}

fn kind_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn is_whiteout(st: &FileStat) -> bool {
    kind_of(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// True when the directory `name` in `dir` carries overlayfs's opaque mark.
fn is_opaque(dir: BorrowedFd, name: &OsStr) -> bool {
    let mut path = OsString::from(format!("/proc/self/fd/{}/", dir.as_raw_fd()));
    path.push(name);
    let (Ok(p), Ok(k)) = (CString::new(path.as_bytes()), CString::new(OPAQUE_XATTR)) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: path and key are NUL-terminated; the buffer is valid for its length. The `l`
    // variant reads the entry itself, never what a symlink there points at.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), value.as_mut_ptr().cast(), 4) };
    n == 1 && value[0] == b'y'
}

fn stat_in(dir: BorrowedFd, name: &OsStr) -> nix::Result<FileStat> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

/// The sorted names in a directory held by an `O_PATH` fd.
fn names_in(dir: BorrowedFd, shown: &str) -> Result<Vec<OsString>> {
    let readable = nix::fcntl::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot read {shown}"))?;
    let mut names: Vec<OsString> = nix::dir::Dir::from_fd(readable)?
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// The names the merged lower directories show (whiteouts excluded), sorted.
fn lower_names(lowers: &[OwnedFd], shown: &str) -> Result<Vec<OsString>> {
    let mut all: Vec<OsString> = Vec::new();
    for layer in lowers {
        all.extend(names_in(layer.as_fd(), shown)?);
    }
    all.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    all.dedup();
    let mut out = Vec::new();
    for name in all {
        if lookup(lowers, &name)?.is_some() {
            out.push(name);
        }
    }
    Ok(out)
}

impl DiffWalk<'_> {
    /// The changes below the upper directory `dir` at `rel` ("" for the root, else "/a/b").
    /// `lowers` are the lower directories visible at that path, top first; `opaque` says the
    /// upper directory hides them, so that what they hold and it does not is deleted.
    fn dir(
        &mut self,
        dir: &OwnedFd,
        rel: &str,
        lowers: &[OwnedFd],
        opaque: bool,
    ) -> Result<Vec<Change>> {
        let shown = if rel.is_empty() { "/" } else { rel };
        let upper_names = names_in(dir.as_fd(), shown)?;
        let mut out = Vec::new();
        let mut deleted: Vec<OsString> = if opaque {
            lower_names(lowers, shown)?
                .into_iter()
                .filter(|n| {
                    upper_names
                        .binary_search_by(|u| u.as_bytes().cmp(n.as_bytes()))
                        .is_err()
                })
                .collect()
        } else {
            Vec::new()
        };
        deleted.reverse(); // Popped in sorted order below.
        for name in upper_names {
            while deleted
                .last()
                .is_some_and(|d| d.as_bytes() < name.as_bytes())
            {
                let d = deleted.pop().expect("checked");
                out.push(Change {
                    path: format!("{rel}/{}", String::from_utf8_lossy(d.as_bytes())),
                    kind: ChangeKind::Delete,
                });
            }
            let st = match stat_in(dir.as_fd(), &name) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue, // Removed since the directory was read.
                Err(e) => return Err(e).with_context(|| format!("cannot stat {rel}/{name:?}")),
            };
            let path = format!("{rel}/{}", String::from_utf8_lossy(name.as_bytes()));
            if kind_of(&st) == SFlag::S_IFREG && st.st_size == 0 && self.hidden.contains(&path) {
                continue;
            }
            if is_whiteout(&st) {
                out.push(Change {
                    path,
                    kind: ChangeKind::Delete,
                });
                continue;
            }
            let in_lowers = lookup(lowers, &name)?;
            if kind_of(&st) != SFlag::S_IFDIR {
                let kind = if in_lowers.is_some() {
                    ChangeKind::Modify
                } else {
                    ChangeKind::Add
                };
                out.push(Change { path, kind });
                continue;
            }
            let child = match openat(
                dir.as_fd(),
                name.as_os_str(),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Replaced by something else since it was looked at.
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot open {path}")),
            };
            let st = fstat(&child)?;
            let child_opaque = is_opaque(dir.as_fd(), &name);
            let lower_dir = in_lowers.filter(|l| kind_of(l) == SFlag::S_IFDIR);
            let child_lowers = if lower_dir.is_some() {
                lower_dirs(lowers, &name)?
            } else {
                Vec::new()
            };
            let below = self.dir(&child, &path, &child_lowers, child_opaque)?;
            let kind = match (&in_lowers, &lower_dir) {
                (None, _) => Some(ChangeKind::Add),
                (Some(_), None) => Some(ChangeKind::Modify), // Was no directory.
                (Some(_), Some(l)) => {
                    let differs =
                        (st.st_mode, st.st_uid, st.st_gid) != (l.st_mode, l.st_uid, l.st_gid);
                    (differs || !below.is_empty()).then_some(ChangeKind::Modify)
                }
            };
            if let Some(kind) = kind {
                out.push(Change { path, kind });
            }
            out.extend(below);
        }
        while let Some(d) = deleted.pop() {
            out.push(Change {
                path: format!("{rel}/{}", String::from_utf8_lossy(d.as_bytes())),
                kind: ChangeKind::Delete,
            });
        }
        Ok(out)
    }
}

/// The stat of `name` as the merged lower layers show it: the topmost layer holding it
/// decides, a whiteout there meaning it is gone.
fn lookup(lowers: &[OwnedFd], name: &OsStr) -> Result<Option<FileStat>> {
    for layer in lowers {
        match stat_in(layer.as_fd(), name) {
            Ok(st) if is_whiteout(&st) => return Ok(None),
            Ok(st) => return Ok(Some(st)),
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot stat {name:?} in a layer")),
        }
    }
    Ok(None)
}

/// The lower directories visible as `name`: from the top, each layer where it is a
/// directory, down to (and including) one where it is opaque; a layer where it is anything
/// else (a file, a whiteout) hides those below.
fn lower_dirs(lowers: &[OwnedFd], name: &OsStr) -> Result<Vec<OwnedFd>> {
    let mut out = Vec::new();
    for layer in lowers {
        let st = match stat_in(layer.as_fd(), name) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot stat {name:?} in a layer")),
        };
        if kind_of(&st) != SFlag::S_IFDIR {
            break;
        }
        let fd = openat(
            layer.as_fd(),
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {name:?} in a layer"))?;
        let opaque = is_opaque(layer.as_fd(), name);
        out.push(fd);
        if opaque {
            break;
        }
    }
    Ok(out)
}

/// The bytes a container's changes take, as Docker counts its `SizeRw` (`ps -s`): the sizes
/// of the regular files added or changed, each inode once. Paths are looked up below `upper`
/// without following any symlink (the container may have swapped one in).
pub fn changes_size(upper: &Path, changes: &[Change]) -> Result<u64> {
    let root = openat(
        nix::fcntl::AT_FDCWD,
        upper,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", upper.display()))?;
    let mut seen = HashSet::new();
    let mut total = 0u64;
    for c in changes.iter().filter(|c| c.kind != ChangeKind::Delete) {
        let rel = Path::new(c.path.trim_start_matches('/'));
        let Ok(fd) = crate::runtime::inroot::openat2(
            root.as_fd(),
            rel,
            libc::O_PATH | libc::O_NOFOLLOW,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
        ) else {
            continue; // Gone since it was listed.
        };
        let st = fstat(&fd)?;
        if kind_of(&st) == SFlag::S_IFREG
            && (st.st_nlink < 2 || seen.insert((st.st_dev, st.st_ino)))
        {
            total += st.st_size as u64;
        }
    }
    Ok(total)
}

/// `docker diff`'s output: one `K /path` line per change.
pub fn format_changes(changes: &[Change]) -> String {
    changes.iter().map(|c| format!("{c}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::unpack::set_xattr;
    use nix::sys::stat::{mknod, utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn whiteout(p: &Path) {
        mknod(p, SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    }

    fn opaque(p: &Path) {
        let fd: OwnedFd = std::fs::File::open(p).unwrap().into();
        set_xattr(&fd, None, OsStr::new(OPAQUE_XATTR), b"y").unwrap();
    }

    fn same_times(from: &Path, to: &Path) {
        let m = std::fs::metadata(from).unwrap();
        use std::os::unix::fs::MetadataExt;
        let t = TimeSpec::new(m.mtime(), m.mtime_nsec());
        utimensat(
            nix::fcntl::AT_FDCWD,
            to,
            &t,
            &t,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    /// An upper over two layers, with whiteouts and opaque directories on both sides.
    #[test]
    fn changes_follow_dockers_rules() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: whiteouts and trusted xattrs need root");
            return;
        }
        let t = TempDir(std::env::temp_dir().join(format!("berth-changes-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&t.0);
        let (base, top, upper) = (t.0.join("base"), t.0.join("top"), t.0.join("upper"));
        for d in [
            base.join("etc/sub"),
            base.join("var/lib"),
            base.join("old"),
            base.join("gone"),
            top.join("var"),
            top.join("gone"),
            upper.join("etc/sub"),
            upper.join("var/lib"),
            upper.join("old"),
            upper.join("gone"),
            upper.join("new/deep"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(base.join("etc/motd"), b"hi").unwrap();
        std::fs::write(base.join("etc/sub/conf"), b"a").unwrap();
        std::fs::write(base.join("old/x"), b"x").unwrap();
        std::fs::write(base.join("gone/y"), b"y").unwrap();
        std::fs::write(base.join("var/lib/db"), b"db").unwrap();
        // The top layer deletes /var/lib (whiteout) and makes /gone opaque and empty.
        whiteout(&top.join("var/lib"));
        opaque(&top.join("gone"));
        // The container: changes /etc/sub/conf (its parents only copied up), removes
        // /etc/motd, re-creates /old (opaque), recreates /var/lib (hidden below: an addition),
        // makes /gone opaque again, adds /new/deep/f.
        std::fs::write(upper.join("etc/sub/conf"), b"b").unwrap();
        same_times(&base.join("etc"), &upper.join("etc"));
        same_times(&base.join("etc/sub"), &upper.join("etc/sub"));
        whiteout(&upper.join("etc/motd"));
        opaque(&upper.join("old"));
        std::fs::write(upper.join("old/z"), b"z").unwrap();
        std::fs::write(upper.join("var/lib/new"), b"n").unwrap();
        opaque(&upper.join("gone"));
        std::fs::write(upper.join("new/deep/f"), b"f").unwrap();
        same_times(&base.join("var"), &upper.join("var"));
        same_times(&top.join("gone"), &upper.join("gone"));

        let got = changes(&upper, &[base.clone(), top.clone()]).unwrap();
        let text = format_changes(&got);
        // /etc and /var kept their modes and owners: they are listed as the directories
        // holding changes, each once, before them, and so is /etc/sub above its changed file.
        // /old, removed and made again (opaque), is changed: its old file deleted, its new one
        // added. /gone is opaque over a directory as empty as it: no change. /var/lib was
        // deleted by the top layer, so the container's is new.
        assert_eq!(
            text,
            "C /etc\n\
             D /etc/motd\n\
             C /etc/sub\n\
             C /etc/sub/conf\n\
             A /new\n\
             A /new/deep\n\
             A /new/deep/f\n\
             C /old\n\
             D /old/x\n\
             A /old/z\n\
             C /var\n\
             A /var/lib\n\
             A /var/lib/new\n",
            "got:\n{text}"
        );
        // The added and changed files' bytes: conf (1), z (1), new (1), f (1).
        assert_eq!(changes_size(&upper, &got).unwrap(), 4);
    }
}
