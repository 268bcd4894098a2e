//! File-tree entries as tar holds them, and the two ends they flow between: a [`Sink`] that
//! takes entries one by one (a PAX tar writer, or a directory being filled, see
//! [`super::fswalk::DirSink`]), and the sources that produce them (a directory walked by fd,
//! see [`super::fswalk::walk`], or a tar stream read by [`read_tar`]).
//!
//! The tar written here is PAX-extended ustar, as Docker writes layers and exports: ustar
//! headers, with a PAX record only where ustar cannot hold a value (long names and link
//! targets, large ids and sizes, xattrs as `SCHILY.xattr.*`). Times are whole seconds.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    /// A regular file of this many bytes (its data follows the entry).
    File(u64),
    Symlink(PathBuf),
    /// A hard link to an earlier entry, by its path in the same stream.
    HardLink(PathBuf),
    Char(u64),
    Block(u64),
    Fifo,
}

/// One file-tree entry: a relative path (no `..`, no leading `/`) and its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: EntryKind,
    /// Permission bits, set-id and sticky bits included (0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Entry {
    /// An entry with root ownership, the current time cleared to the epoch, and no xattrs.
    pub fn new(path: impl Into<PathBuf>, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            xattrs: Vec::new(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// What a walk does with an entry, as a [`Sink`] chooses before the entry is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    Put,
    /// Leave the entry out, and for a directory all it holds.
    Skip,
    /// A directory left out whose children are still offered (`.dockerignore`: an excluded
    /// directory holding re-included paths). Other entries are left out.
    DescendOnly,
}

/// Takes entries in order: parents before their children. `data` is the file's content for
/// [`EntryKind::File`] (exactly its size), empty otherwise.
pub trait Sink {
    fn put(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<()>;
    /// Asked by a walk before each entry is read (its data, its hard links): what to do with
    /// it. Readers of a stream do not ask.
    fn filter(&mut self, _entry: &Entry) -> Filter {
        Filter::Put
    }
    /// Called once all children of the directory `entry` were put.
    fn leave_dir(&mut self, _entry: &Entry) -> Result<()> {
        Ok(())
    }
}

/// Reads exactly `size` bytes from a file that may change while it is read (a running
/// container's): missing bytes read as zeros, extra bytes are left unread. A tar header
/// announced the size before the data, so the data must match it.
pub struct ExactSize<R> {
    inner: R,
    remaining: u64,
    short: bool,
}

impl<R: Read> ExactSize<R> {
    pub fn new(inner: R, size: u64) -> Self {
        ExactSize {
            inner,
            remaining: size,
            short: false,
        }
    }
}

impl<R: Read> Read for ExactSize<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = if self.short {
            0
        } else {
            self.inner.read(&mut buf[..want])?
        };
        let n = if n == 0 {
            self.short = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.remaining -= n as u64;
        Ok(n)
    }
}

const BLOCK: usize = 512;

/// Writes entries as a PAX tar stream.
pub struct TarSink<W: Write> {
    out: W,
}

impl<W: Write> TarSink<W> {
    pub fn new(out: W) -> Self {
        TarSink { out }
    }

    /// Writes the end-of-archive blocks and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.out
            .write_all(&[0u8; 2 * BLOCK])
            .context("writing the tar stream")?;
        self.out.flush().context("writing the tar stream")?;
        Ok(self.out)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    fn write_entry(&mut self, e: &Entry, data: &mut dyn Read) -> Result<()> {
        let mut name = e.path.as_os_str().as_bytes().to_vec();
        if e.is_dir() && !name.ends_with(b"/") {
            name.push(b'/');
        }
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut h = [0u8; BLOCK];
        match split_ustar_name(&name) {
            Some((prefix, base)) => {
                h[..base.len()].copy_from_slice(base);
                h[345..345 + prefix.len()].copy_from_slice(prefix);
            }
            None => {
                // A name ustar cannot hold: PAX `path`, and a truncated name for old readers.
                pax.push((b"path".to_vec(), name.clone()));
                let cut = name.len().min(100);
                h[..cut].copy_from_slice(&name[..cut]);
            }
        }
        let (flag, size, link): (u8, u64, Option<&Path>) = match &e.kind {
            EntryKind::File(n) => (b'0', *n, None),
            EntryKind::HardLink(t) => (b'1', 0, Some(t)),
            EntryKind::Symlink(t) => (b'2', 0, Some(t)),
            EntryKind::Char(_) => (b'3', 0, None),
            EntryKind::Block(_) => (b'4', 0, None),
            EntryKind::Dir => (b'5', 0, None),
            EntryKind::Fifo => (b'6', 0, None),
        };
        if let Some(t) = link {
            let t = t.as_os_str().as_bytes();
            if t.len() > 100 {
                pax.push((b"linkpath".to_vec(), t.to_vec()));
            }
            let cut = t.len().min(100);
            h[157..157 + cut].copy_from_slice(&t[..cut]);
        }
        octal(&mut h[100..108], u64::from(e.mode & 0o7777));
        numeric(&mut h[108..116], u64::from(e.uid), "uid", &mut pax);
        numeric(&mut h[116..124], u64::from(e.gid), "gid", &mut pax);
        numeric(&mut h[124..136], size, "size", &mut pax);
        if e.mtime < 0 {
            pax.push((b"mtime".to_vec(), e.mtime.to_string().into_bytes()));
            octal(&mut h[136..148], 0);
        } else {
            numeric(&mut h[136..148], e.mtime as u64, "mtime", &mut pax);
        }
        h[156] = flag;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        if let EntryKind::Char(dev) | EntryKind::Block(dev) = e.kind {
            let (major, minor) = (libc::major(dev), libc::minor(dev));
            numeric(
                &mut h[329..337],
                u64::from(major),
                "SCHILY.devmajor",
                &mut pax,
            );
            numeric(
                &mut h[337..345],
                u64::from(minor),
                "SCHILY.devminor",
                &mut pax,
            );
        } else {
            octal(&mut h[329..337], 0);
            octal(&mut h[337..345], 0);
        }
        for (k, v) in &e.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k.as_bytes());
            pax.push((key, v.clone()));
        }
        if !pax.is_empty() {
            self.write_pax(&pax)?;
        }
        checksum(&mut h);
        self.out.write_all(&h).context("writing the tar stream")?;
        if size > 0 {
            let copied =
                io::copy(&mut data.take(size), &mut self.out).context("writing the tar stream")?;
            if copied != size {
                bail!(
                    "{}: the data ended after {copied} of {size} bytes",
                    e.path.display()
                );
            }
            let pad = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
            self.out
                .write_all(&[0u8; BLOCK][..pad])
                .context("writing the tar stream")?;
        }
        Ok(())
    }

    fn write_pax(&mut self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut body = Vec::new();
        for (k, v) in records {
            // "LEN KEY=VALUE\n", where LEN counts its own digits.
            let rest = k.len() + v.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(len.to_string().as_bytes());
            body.push(b' ');
            body.extend_from_slice(k);
            body.push(b'=');
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let mut h = [0u8; BLOCK];
        let name = b"././@PaxHeader";
        h[..name.len()].copy_from_slice(name);
        octal(&mut h[100..108], 0o644);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], body.len() as u64);
        octal(&mut h[136..148], 0);
        h[156] = b'x';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        checksum(&mut h);
        self.out.write_all(&h).context("writing the tar stream")?;
        self.out
            .write_all(&body)
            .context("writing the tar stream")?;
        let pad = (BLOCK - body.len() % BLOCK) % BLOCK;
        self.out
            .write_all(&[0u8; BLOCK][..pad])
            .context("writing the tar stream")?;
        Ok(())
    }
}

impl<W: Write> Sink for TarSink<W> {
    fn put(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<()> {
        self.write_entry(entry, data)
    }
}

/// Splits a name into ustar's prefix (at most 155 bytes) and name (at most 100), at a `/`.
fn split_ustar_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((&[], name));
    }
    // A trailing `/` (a directory) belongs to the name part; split at an earlier slash.
    let search_end = name.len().saturating_sub(1).min(156);
    (0..search_end)
        .rev()
        .filter(|&i| name[i] == b'/')
        .find(|&i| i <= 155 && name.len() - i - 1 <= 100 && i > 0)
        .map(|i| (&name[..i], &name[i + 1..]))
}

/// An octal field: digits, then a NUL.
fn octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    field[..width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    field[width] = 0;
}

/// An octal field, or 0 and a PAX record when the value does not fit.
fn numeric(field: &mut [u8], v: u64, pax_key: &str, pax: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    let max = (1u64 << (3 * (field.len() as u32 - 1))) - 1;
    if v > max {
        pax.push((pax_key.as_bytes().to_vec(), v.to_string().into_bytes()));
        octal(field, 0);
    } else {
        octal(field, v);
    }
}

fn checksum(h: &mut [u8; BLOCK]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

/// The components of an archive path below its root: a leading `/` and `.` are dropped, `..`
/// is refused. Empty for the root itself.
pub fn clean_archive_path(raw: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => bail!(
                "{}: a path with a `..` component would leave the destination",
                raw.display()
            ),
            Component::Prefix(_) => bail!("{}: unsupported path prefix", raw.display()),
        }
    }
    Ok(out)
}

/// Reads a tar stream (uncompressed) and puts each entry into `sink`. Entry paths are cleaned
/// with [`clean_archive_path`]; the archive's root entry (`./`) is skipped.
pub fn read_tar(src: &mut dyn Read, sink: &mut dyn Sink) -> Result<()> {
    let mut archive = tar::Archive::new(src);
    let mut open_dirs: Vec<Entry> = Vec::new();
    for item in archive.entries().context("reading the tar stream")? {
        let mut item = item.context("reading the tar stream")?;
        let shown = String::from_utf8_lossy(&item.path_bytes()).into_owned();
        let Some(entry) = entry_of(&mut item).with_context(|| format!("tar entry {shown:?}"))?
        else {
            continue;
        };
        // Directories end in the order a walk leaves them, so a sink setting their times
        // last sees each one after its children.
        while let Some(top) = open_dirs.last() {
            if entry.path.starts_with(&top.path) {
                break;
            }
            let top = open_dirs.pop().expect("checked non-empty");
            sink.leave_dir(&top)?;
        }
        sink.put(&entry, &mut item)
            .with_context(|| format!("tar entry {shown:?}"))?;
        if entry.is_dir() {
            open_dirs.push(entry);
        }
    }
    while let Some(top) = open_dirs.pop() {
        sink.leave_dir(&top)?;
    }
    Ok(())
}

/// The entry a tar header describes; None for entries that are not files (PAX globals, the
/// root directory).
fn entry_of<R: Read>(item: &mut tar::Entry<R>) -> Result<Option<Entry>> {
    let header = item.header();
    let flag = header.entry_type();
    if matches!(
        flag,
        tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
    ) {
        return Ok(None);
    }
    let path = clean_archive_path(&item.path().context("invalid path")?)?;
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    let dev = || {
        libc::makedev(
            header.device_major().ok().flatten().unwrap_or(0),
            header.device_minor().ok().flatten().unwrap_or(0),
        )
    };
    let link = || -> Result<PathBuf> {
        Ok(item
            .link_name()
            .context("invalid link target")?
            .context("a link without a target")?
            .into_owned())
    };
    let kind = match flag {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            EntryKind::File(item.size())
        }
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink(link()?),
        tar::EntryType::Link => EntryKind::HardLink(clean_archive_path(&link()?)?),
        tar::EntryType::Char => EntryKind::Char(dev()),
        tar::EntryType::Block => EntryKind::Block(dev()),
        tar::EntryType::Fifo => EntryKind::Fifo,
        other => bail!("unsupported tar entry type {other:?}"),
    };
    let mut entry = Entry {
        path,
        kind,
        mode: header.mode().context("invalid mode")? & 0o7777,
        uid: header.uid().unwrap_or(0) as u32,
        gid: header.gid().unwrap_or(0) as u32,
        mtime: header.mtime().unwrap_or(0) as i64,
        mtime_nsec: 0,
        xattrs: Vec::new(),
    };
    if let Some(records) = item.pax_extensions().context("invalid PAX header")? {
        for record in records {
            let record = record.context("invalid PAX record")?;
            let Ok(key) = record.key() else { continue };
            let value = record.value_bytes();
            let number = |what: &str| -> Result<i64> {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.split('.').next()?.parse::<i64>().ok())
                    .with_context(|| format!("invalid PAX {what}"))
            };
            match key {
                "uid" => entry.uid = number("uid")? as u32,
                "gid" => entry.gid = number("gid")? as u32,
                "mtime" => entry.mtime = number("mtime")?,
                _ => {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        entry
                            .xattrs
                            .push((OsString::from_vec(name.as_bytes().to_vec()), value.to_vec()));
                    }
                }
            }
        }
    }
    Ok(Some(entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a tar stream holds.
    #[derive(Default)]
    struct Collect(Vec<(Entry, Vec<u8>)>, Vec<PathBuf>);
    impl Sink for Collect {
        fn put(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<()> {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes)?;
            self.0.push((entry.clone(), bytes));
            Ok(())
        }
        fn leave_dir(&mut self, entry: &Entry) -> Result<()> {
            self.1.push(entry.path.clone());
            Ok(())
        }
    }

    #[test]
    fn written_entries_read_back_the_same() {
        let long_dir = "d".repeat(120);
        let long_name = format!("{long_dir}/{}", "f".repeat(150));
        let entries = vec![
            (
                Entry {
                    uid: 1000,
                    gid: 5_000_000, // beyond ustar's 7 octal digits: a PAX record
                    mtime: 1_700_000_000,
                    xattrs: vec![
                        ("user.note".into(), b"hi".to_vec()),
                        ("security.capability".into(), vec![1, 0, 0, 2, 0, 0xff]),
                    ],
                    ..Entry::new("dir", EntryKind::Dir, 0o2755)
                },
                b"".to_vec(),
            ),
            (
                Entry::new("dir/file", EntryKind::File(5), 0o4711),
                b"hello".to_vec(),
            ),
            (
                Entry::new(
                    "dir/link",
                    EntryKind::Symlink(PathBuf::from("t".repeat(130))),
                    0o777,
                ),
                vec![],
            ),
            (
                Entry::new("dir/hard", EntryKind::HardLink("dir/file".into()), 0o4711),
                vec![],
            ),
            (
                Entry::new("null", EntryKind::Char(libc::makedev(1, 3)), 0o666),
                vec![],
            ),
            (
                Entry::new("sda", EntryKind::Block(libc::makedev(8, 0)), 0o660),
                vec![],
            ),
            (Entry::new("pipe", EntryKind::Fifo, 0o600), vec![]),
            (Entry::new(long_dir.as_str(), EntryKind::Dir, 0o755), vec![]),
            (
                Entry::new(long_name.as_str(), EntryKind::File(3), 0o644),
                b"abc".to_vec(),
            ),
        ];
        let mut sink = TarSink::new(Vec::new());
        for (e, data) in &entries {
            sink.put(e, &mut &data[..]).unwrap();
        }
        let bytes = sink.finish().unwrap();
        // GNU tar reads it too, with the same names.
        let dir = std::env::temp_dir().join(format!("berth-tarstream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("t.tar"), &bytes).unwrap();
        let listed = std::process::Command::new("tar")
            .arg("-tf")
            .arg(dir.join("t.tar"))
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(listed.status.success());
        let names = String::from_utf8(listed.stdout).unwrap();
        assert!(names.lines().any(|l| l == long_name), "{names}");
        assert!(names.lines().any(|l| l == "dir/"), "{names}");

        let mut got = Collect::default();
        read_tar(&mut &bytes[..], &mut got).unwrap();
        assert_eq!(got.0.len(), entries.len());
        for ((want, want_data), (have, have_data)) in entries.iter().zip(&got.0) {
            assert_eq!(want, have);
            assert_eq!(want_data, have_data);
        }
        // Each directory is left after its children, the root-level ones at the end.
        assert_eq!(
            got.1,
            vec![PathBuf::from("dir"), PathBuf::from(long_dir.as_str())]
        );
    }

    #[test]
    fn archive_paths_cannot_climb() {
        assert_eq!(
            clean_archive_path(Path::new("/./a/./b/")).unwrap(),
            PathBuf::from("a/b")
        );
        assert!(clean_archive_path(Path::new("a/../../etc")).is_err());
        assert_eq!(clean_archive_path(Path::new("./")).unwrap(), PathBuf::new());
    }

    #[test]
    fn exact_size_pads_a_short_file_and_cuts_a_long_one() {
        let mut out = Vec::new();
        ExactSize::new(&b"abc"[..], 5)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"abc\0\0");
        out.clear();
        ExactSize::new(&b"abcdef"[..], 2)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"ab");
    }
}
