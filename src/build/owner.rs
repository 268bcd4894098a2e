//! `--chown` and `--chmod` of COPY and ADD.
//!
//! API:
//! - [`resolve_chown`]`(spec, root)`: `user[:group]` to numeric ids, names looked up in the
//!   destination root's `/etc/passwd` and `/etc/group` (read inside the root, never through a
//!   symlink out of it). As BuildKit: a user name alone takes the user's primary group, a
//!   numeric user alone the same number as group.
//! - [`ModeChange::parse`]: `--chmod` as octal (`0755`) or symbolic (`u+x,go-w`, `a=rX`);
//!   [`ModeChange::apply`] gives an entry's new permission bits.

use crate::runtime::inroot::{self, Create};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

/// Resolves `--chown=SPEC` against the root filesystem `root` (its passwd and group files).
pub fn resolve_chown(spec: &str, root: &Path) -> Result<(u32, u32)> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        bail!("invalid --chown={spec}: the user is empty");
    }
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(id) => (id, id),
        Err(_) => {
            let passwd = read_in_root(root, "/etc/passwd")
                .with_context(|| format!("unable to find user {user}"))?;
            lookup(&passwd, user, 2)
                .and_then(|f| Some((f.first()?.parse().ok()?, f.get(1)?.parse().ok()?)))
                .with_context(|| {
                    format!("unable to find user {user}: no matching entries in passwd file")
                })?
        }
    };
    let gid = match group {
        None => primary_gid,
        Some("") => bail!("invalid --chown={spec}: the group is empty"),
        Some(g) => match g.parse::<u32>() {
            Ok(id) => id,
            Err(_) => {
                let groups = read_in_root(root, "/etc/group")
                    .with_context(|| format!("unable to find group {g}"))?;
                lookup(&groups, g, 2)
                    .and_then(|f| f.first()?.parse().ok())
                    .with_context(|| {
                        format!("unable to find group {g}: no matching entries in group file")
                    })?
            }
        },
    };
    Ok((uid, gid))
}

/// The fields after the name of the line for `name` in a passwd-format file, from the id on
/// (`skip` fields after the name: the password).
fn lookup<'a>(text: &'a str, name: &str, skip: usize) -> Option<Vec<&'a str>> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name).then(|| fields.skip(skip - 1).collect())
    })
}

/// A small regular file of the image, read inside its root.
fn read_in_root(root: &Path, path: &str) -> Result<String> {
    let root_fd: std::os::fd::OwnedFd = std::fs::File::open(root)
        .with_context(|| format!("cannot open {}", root.display()))?
        .into();
    let fd = inroot::resolve(root_fd.as_fd(), Path::new(path), Create::Nothing)?;
    let st = nix::sys::stat::fstat(&fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        bail!("{path} in the image is not a regular file");
    }
    let file = std::fs::File::open(inroot::fd_path(&fd))?;
    let mut text = String::new();
    file.take(16 << 20)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {path} in the image"))?;
    Ok(text)
}

/// `--chmod`: absolute bits, or chmod(1)'s symbolic clauses applied in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModeChange {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One symbolic clause: who (mask of u/g/o bits), the operator, and the permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    op: char,
    perms: String,
}

impl ModeChange {
    pub fn parse(spec: &str) -> Result<ModeChange> {
        if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_digit()) {
            let bits = u32::from_str_radix(spec, 8)
                .ok()
                .filter(|b| *b <= 0o7777)
                .with_context(|| format!("invalid chmod parameter {spec:?}: not an octal mode"))?;
            return Ok(ModeChange::Octal(bits));
        }
        let mut clauses = Vec::new();
        for part in spec.split(',') {
            let bad = || anyhow::anyhow!("invalid chmod parameter {spec:?}");
            let op_at = part.find(['+', '-', '=']).ok_or_else(bad)?;
            let (who_s, rest) = part.split_at(op_at);
            let mut who = 0;
            for c in who_s.chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(bad()),
                };
            }
            if who == 0 {
                who = 0o7777;
            }
            let op = rest.chars().next().ok_or_else(bad)?;
            let perms = &rest[1..];
            if !perms.chars().all(|c| "rwxXst".contains(c)) {
                return Err(bad());
            }
            clauses.push(Clause {
                who,
                op,
                perms: perms.to_string(),
            });
        }
        Ok(ModeChange::Symbolic(clauses))
    }

    /// The new permission bits (0o7777) of an entry whose bits are `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            ModeChange::Octal(bits) => *bits,
            ModeChange::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for c in clauses {
                    let mut bits = 0;
                    for p in c.perms.chars() {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || mode & 0o111 != 0 => 0o111,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & c.who;
                    match c.op {
                        '+' => mode |= bits,
                        '-' => mode &= !bits,
                        _ => mode = (mode & !(c.who & 0o777)) | bits,
                    }
                }
                mode
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chown_by_name_and_number() {
        let root = std::env::temp_dir().join(format!("berth-owner-{}", std::process::id()));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        let r = |s: &str| resolve_chown(s, &root);
        assert_eq!(r("app").unwrap(), (1000, 1001));
        assert_eq!(r("app:staff").unwrap(), (1000, 50));
        assert_eq!(r("app:7").unwrap(), (1000, 7));
        assert_eq!(r("42").unwrap(), (42, 42));
        assert_eq!(r("42:staff").unwrap(), (42, 50));
        assert!(format!("{:#}", r("nobody").unwrap_err()).contains("unable to find user nobody"));
        assert!(format!("{:#}", r("app:nogroup").unwrap_err()).contains("unable to find group"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn chmod_octal_and_symbolic() {
        assert_eq!(
            ModeChange::parse("0755").unwrap().apply(0o600, false),
            0o755
        );
        assert_eq!(ModeChange::parse("4711").unwrap().apply(0, false), 0o4711);
        assert!(ModeChange::parse("888").is_err());
        assert!(ModeChange::parse("17777").is_err());
        let m = |s: &str, mode, dir| ModeChange::parse(s).unwrap().apply(mode, dir);
        assert_eq!(m("u+x", 0o644, false), 0o744);
        assert_eq!(m("go-w", 0o666, false), 0o644);
        assert_eq!(m("a=rX", 0o600, false), 0o444);
        assert_eq!(m("a=rX", 0o600, true), 0o555);
        assert_eq!(m("+x", 0o600, false), 0o711);
        assert_eq!(m("u=rwx,g=rx,o=", 0o777, false), 0o750);
        assert!(ModeChange::parse("q+x").is_err());
    }
}
