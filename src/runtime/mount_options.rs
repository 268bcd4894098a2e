//! Translation of an OCI mount's `options` list (config.json `mounts[i].options`) into the
//! arguments of mount(2) and mount_setattr(2).
//!
//! The option table follows what runc and crun accept. Anything not in the table is passed to the
//! filesystem as mount data (`mode=755`, `size=65536k`, `newinstance`, ...), as both do.
//!
//! # What the caller does with a [`MountOptions`]
//!
//! berth makes every mount detached, sets its attributes, and only then attaches it onto the
//! destination fd (see `mountfd`), so no step looks the destination up twice:
//!
//! 1. If `flags` contains `MS_REMOUNT`, the whole entry is a remount of what is already at the
//!    destination: one `mount(NULL, dest, NULL, flags, data)` call and nothing else.
//! 2. A bind mount (`is_bind`; a config whose mount `type` is `"bind"` is one even without a
//!    `bind`/`rbind` option, as in runc and crun: call [`MountOptions::make_bind`] first):
//!    `open_tree(source, OPEN_TREE_CLONE [| AT_RECURSIVE for rbind])`. The kernel ignores
//!    per-mount flags (ro, nosuid, nodev, noexec, atime, nosymfollow) on a bind, so if
//!    `needs_remount`, they go on the detached tree with mount_setattr and
//!    [`MountOptions::bind_attrs`]: it sets and clears only what the options name, keeping the
//!    source's other flags (an inherited `nosuid`, and in a user namespace the flags the
//!    kernel locked, which it refuses to drop). A remount with [`MountOptions::remount_flags`]
//!    and the current flags ([`mount_flags_of`] / [`mount_flags_of_fd`]) does the same on an
//!    attached bind.
//! 3. Any other filesystem: `fsopen(type)`, `fsconfig` with the source, the superblock flags
//!    ([`superblock_params`]) and `data` split into parameters, then `fsmount` with the
//!    per-mount flags ([`new_mount_attrs`]).
//! 4. `recursive_attrs` (options `rro`, `rnosuid`, ...): if not [`MountAttr::is_empty`],
//!    mount_setattr with `AT_RECURSIVE` and `mount_attr{attr_set, attr_clr, ..}`, still
//!    detached. The atime bits are already encoded the way the kernel demands (a new atime mode
//!    in `attr_set` always comes with all of `MOUNT_ATTR__ATIME` in `attr_clr`). Needs Linux
//!    5.12; on ENOSYS report the option as unsupported rather than ignore it (runc refuses too).
//! 5. `move_mount` onto the destination fd, then `propagation`: one change per entry, in order,
//!    on the attached mount through its fd (mount_setattr's `propagation`, `AT_RECURSIVE` for
//!    the `r*` ones), or `mount(NULL, dest, NULL, p, NULL)`.
//! 6. `idmap` (`idmap`/`ridmap`): only valid for bind mounts, and needs the mount's
//!    `uidMappings`/`gidMappings` (or, without them, the container's user namespace). The
//!    caller clones the source with `open_tree(OPEN_TREE_CLONE | (AT_RECURSIVE if
//!    idmap_recursive))`, sets `MOUNT_ATTR_IDMAP` with a user namespace fd via
//!    `mount_setattr`, and attaches it with `move_mount`. Parsing does not check the bind
//!    requirement because the mount `type` is not known here.
//! 7. `tmpcopyup`: (tmpfs) copy the files that were under the destination into the new tmpfs.
//!    Optional; the caller may ignore it.

use anyhow::{bail, Result};
use nix::mount::MsFlags;

/// `MS_NOSYMFOLLOW` (Linux 5.10); nix 0.31 has no constant for it.
pub const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

/// `struct mount_attr` bits for mount_setattr(2), from linux/mount.h (not in the libc crate).
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
pub const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
pub const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
/// Mask of the atime mode, a 3-valued field (relatime, noatime, strictatime), not a bitmap.
pub const MOUNT_ATTR__ATIME: u64 = 0x0000_0070;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0000_0000;
pub const MOUNT_ATTR_NOATIME: u64 = 0x0000_0010;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x0000_0020;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x0000_0080;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// The flags that belong to one mount (vfsmount) rather than to the filesystem: the ones a bind
/// mount ignores and a `MS_REMOUNT | MS_BIND` sets.
const PER_MOUNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME)
    .union(MS_NOSYMFOLLOW);

/// The per-mount flags that are plain on/off bits, which a remount keeps from the current mount
/// unless the config says otherwise (the atime mode is preserved by the kernel itself).
const PRESERVED_ON_REMOUNT: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NODIRATIME)
    .union(MS_NOSYMFOLLOW);

/// The `attr_set`/`attr_clr` pair of a `struct mount_attr`, for mount_setattr(2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
}

impl MountAttr {
    /// True when there is nothing to change (no mount_setattr call needed).
    pub fn is_empty(&self) -> bool {
        self.attr_set == 0 && self.attr_clr == 0
    }
}

/// What one mount's `options` list asks for. See the module documentation for how to apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the first mount(2) call (`MS_BIND`, `MS_REC`, `MS_RDONLY`, `MS_NOSUID`, ...).
    pub flags: MsFlags,
    /// Flags the options explicitly turned off (`rw`, `suid`, `dev`, `exec`, `atime`, ...);
    /// never also in `flags`. Matters for remounts: these must not be kept from the current mount.
    pub clear_flags: MsFlags,
    /// Propagation changes (`MS_PRIVATE | MS_REC`, `MS_SHARED`, ...), each a separate mount(2)
    /// call after the mount, in the order given.
    pub propagation: Vec<MsFlags>,
    /// Every option not in the table, joined by ',': filesystem-specific mount data.
    pub data: String,
    /// `bind` or `rbind` was given (or [`MountOptions::make_bind`] was called).
    pub is_bind: bool,
    /// `rbind`: the bind mount takes the submounts along (`MS_REC`).
    pub recursive: bool,
    /// A bind mount whose per-mount flags must be applied by a `MS_REMOUNT | MS_BIND` call,
    /// because the kernel ignores them on the initial `MS_BIND`. See [`Self::remount_flags`].
    pub needs_remount: bool,
    /// `idmap` or `ridmap`: make this an id-mapped mount.
    pub idmap: bool,
    /// `ridmap`: the id mapping applies to the submounts too.
    pub idmap_recursive: bool,
    /// The recursive `r*` options (`rro`, `rnosuid`, `rnoatime`, ...), for
    /// `mount_setattr(AT_RECURSIVE)` after the mount.
    pub recursive_attrs: MountAttr,
    /// `tmpcopyup`: copy the destination's previous contents into the new tmpfs.
    pub tmpcopyup: bool,
}

// By hand: nix's MsFlags has no Default.
impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            clear_flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            is_bind: false,
            recursive: false,
            needs_remount: false,
            idmap: false,
            idmap_recursive: false,
            recursive_attrs: MountAttr::default(),
            tmpcopyup: false,
        }
    }
}

impl MountOptions {
    /// Turn this into a bind mount, for a config whose mount `type` is `"bind"` but whose
    /// options say neither `bind` nor `rbind` (runc and crun bind-mount such entries).
    pub fn make_bind(&mut self) {
        self.is_bind = true;
        self.flags |= MsFlags::MS_BIND;
        self.needs_remount = self.compute_needs_remount();
    }

    /// Flags for the `MS_REMOUNT | MS_BIND` call that applies per-mount flags to a bind mount.
    ///
    /// `current` is the new mount's flags as it stands after the bind (from statvfs on the
    /// destination, see [`ms_flags_from_statvfs`]). Per-mount flags the config neither set nor
    /// cleared are kept from `current`, so that `rw` on an inherited `nosuid,nodev` mount does
    /// not also drop `nosuid,nodev`. `MS_REC` is left out: a remount never recurses.
    pub fn remount_flags(&self, current: MsFlags) -> MsFlags {
        let kept = current & PRESERVED_ON_REMOUNT & !self.clear_flags;
        let requested = self.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        requested | kept | MsFlags::MS_REMOUNT | MsFlags::MS_BIND
    }

    fn compute_needs_remount(&self) -> bool {
        self.is_bind
            && (self.flags.intersects(PER_MOUNT_FLAGS)
                || self.clear_flags.intersects(PER_MOUNT_FLAGS))
    }

    /// For a bind: the per-mount flags the options set and clear, as mount_setattr(2)'s pair,
    /// to apply to the new (still detached) bind. What the options do not name stays as the
    /// source mount has it, as the remount of [`Self::remount_flags`] keeps it; that also keeps
    /// the flags the kernel locked in a user namespace. The atime mode changes only when the
    /// options name one.
    pub fn bind_attrs(&self) -> MountAttr {
        let mut set = plain_attrs_of(self.flags);
        let mut clear = plain_attrs_of(self.clear_flags);
        if self.flags.intersects(ATIME_MODE_FLAGS) {
            set |= atime_attr_of(self.flags);
            clear |= MOUNT_ATTR__ATIME;
        }
        // An on/off bit both cleared and set (never the case from the parser) ends set; the
        // atime mask stays whole in `clear`, as the kernel demands with a new mode.
        clear &= !(set & !MOUNT_ATTR__ATIME);
        MountAttr {
            attr_set: set,
            attr_clr: clear,
        }
    }
}

const ATIME_MODE_FLAGS: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// For a new filesystem: the mount's `MOUNT_ATTR_*` bits for fsmount(2), what mount(2) would
/// make of the same flags (relatime unless noatime or strictatime is given).
pub fn new_mount_attrs(flags: MsFlags) -> u64 {
    plain_attrs_of(flags) | atime_attr_of(flags)
}

/// For a new filesystem: the superblock flags among `flags`, as the fsconfig(2) flag names the
/// kernel knows (`ro`, `sync`, ...). `silent`, `acl` and `iversion` have no such name: mount(2)
/// only passes them as initial superblock flags, which filesystems decide for themselves.
pub fn superblock_params(flags: MsFlags) -> Vec<&'static str> {
    [
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_SYNCHRONOUS, "sync"),
        (MsFlags::MS_DIRSYNC, "dirsync"),
        (MsFlags::MS_LAZYTIME, "lazytime"),
        (MsFlags::MS_MANDLOCK, "mand"),
    ]
    .into_iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, name)| name)
    .collect()
}

/// The on/off `MOUNT_ATTR_*` bits of per-mount `MS_*` flags (not the atime mode).
pub fn plain_attrs_of(flags: MsFlags) -> u64 {
    [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
        (MS_NOSYMFOLLOW, MOUNT_ATTR_NOSYMFOLLOW),
    ]
    .into_iter()
    .filter(|(f, _)| flags.contains(*f))
    .fold(0, |acc, (_, a)| acc | a)
}

/// The atime mode mount(2) picks from `flags`: strictatime wins, then noatime, else relatime.
fn atime_attr_of(flags: MsFlags) -> u64 {
    if flags.contains(MsFlags::MS_STRICTATIME) {
        MOUNT_ATTR_STRICTATIME
    } else if flags.contains(MsFlags::MS_NOATIME) {
        MOUNT_ATTR_NOATIME
    } else {
        MOUNT_ATTR_RELATIME
    }
}

/// Convert statvfs(3)'s `f_flag` bits (the `ST_*` values) into the matching `MS_*` flags.
///
/// The two sets mostly share values, but not all (`ST_NOSYMFOLLOW` is 0x2000, `MS_NOSYMFOLLOW`
/// is 0x100), so they are mapped one by one.
pub fn ms_flags_from_statvfs(f_flag: libc::c_ulong) -> MsFlags {
    const ST_RDONLY: libc::c_ulong = 0x0001;
    const ST_NOSUID: libc::c_ulong = 0x0002;
    const ST_NODEV: libc::c_ulong = 0x0004;
    const ST_NOEXEC: libc::c_ulong = 0x0008;
    const ST_SYNCHRONOUS: libc::c_ulong = 0x0010;
    const ST_MANDLOCK: libc::c_ulong = 0x0040;
    const ST_NOATIME: libc::c_ulong = 0x0400;
    const ST_NODIRATIME: libc::c_ulong = 0x0800;
    const ST_RELATIME: libc::c_ulong = 0x1000;
    const ST_NOSYMFOLLOW: libc::c_ulong = 0x2000;
    let mapping = [
        (ST_RDONLY, MsFlags::MS_RDONLY),
        (ST_NOSUID, MsFlags::MS_NOSUID),
        (ST_NODEV, MsFlags::MS_NODEV),
        (ST_NOEXEC, MsFlags::MS_NOEXEC),
        (ST_SYNCHRONOUS, MsFlags::MS_SYNCHRONOUS),
        (ST_MANDLOCK, MsFlags::MS_MANDLOCK),
        (ST_NOATIME, MsFlags::MS_NOATIME),
        (ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (ST_RELATIME, MsFlags::MS_RELATIME),
        (ST_NOSYMFOLLOW, MS_NOSYMFOLLOW),
    ];
    mapping
        .iter()
        .filter(|(st, _)| f_flag & st != 0)
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms)
}

/// The current flags of the mount that `path` is on, for [`MountOptions::remount_flags`].
///
/// Uses statvfs(3) directly: nix's `Statvfs::flags()` drops bits it has no name for, among
/// them `ST_NOSYMFOLLOW`.
pub fn mount_flags_of(path: &std::path::Path) -> Result<MsFlags> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow::anyhow!("{}: path contains a NUL byte", path.display()))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid C string; statvfs fills `stats` completely when it returns 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) };
    if rc != 0 {
        bail!(
            "statvfs {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: initialized by the successful statvfs call above.
    let stats = unsafe { stats.assume_init() };
    Ok(ms_flags_from_statvfs(stats.f_flag))
}

/// Like [`mount_flags_of`], for an open file descriptor (an `O_PATH` one works) on the mount,
/// which avoids resolving the path again.
pub fn mount_flags_of_fd(fd: std::os::fd::BorrowedFd<'_>) -> Result<MsFlags> {
    use std::os::fd::AsRawFd;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fd is a valid open descriptor for the duration of the borrow; fstatvfs fills
    // `stats` completely when it returns 0.
    let rc = unsafe { libc::fstatvfs(fd.as_raw_fd(), stats.as_mut_ptr()) };
    if rc != 0 {
        bail!(
            "fstatvfs on fd {}: {}",
            fd.as_raw_fd(),
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: initialized by the successful fstatvfs call above.
    let stats = unsafe { stats.assume_init() };
    Ok(ms_flags_from_statvfs(stats.f_flag))
}

/// What one known option does.
#[derive(Clone, Copy)]
enum OptionEffect {
    /// Accepted, changes nothing (`defaults`).
    Nothing,
    /// Turn a mount(2) flag on.
    SetFlag(MsFlags),
    /// Turn a mount(2) flag off.
    ClearFlag(MsFlags),
    /// `bind` / `rbind`.
    Bind {
        recursive: bool,
    },
    /// A propagation change, applied by its own mount(2) call.
    Propagation(MsFlags),
    /// A recursive mount_setattr(2) bit turned on / off.
    SetAttr(u64),
    ClearAttr(u64),
    /// A recursive atime mode change (`rrelatime`, `rnoatime`, `rstrictatime`).
    AttrAtime(u64),
    /// Undo a recursive atime mode if it is the one chosen so far (`ratime`, `rnostrictatime`,
    /// `rnorelatime`); see `apply`.
    AttrNoAtimeMode(u64),
    /// `idmap` / `ridmap`.
    Idmap {
        recursive: bool,
    },
    /// `tmpcopyup`.
    TmpCopyUp,
}

struct KnownOption {
    name: &'static str,
    effect: OptionEffect,
}

const fn known(name: &'static str, effect: OptionEffect) -> KnownOption {
    KnownOption { name, effect }
}

use OptionEffect::*;

/// Every option name this runtime understands (the rest is filesystem data). The source of
/// truth for both parsing and the `features` document.
static KNOWN_OPTIONS: &[KnownOption] = &[
    known("defaults", Nothing),
    known("rw", ClearFlag(MsFlags::MS_RDONLY)),
    known("ro", SetFlag(MsFlags::MS_RDONLY)),
    known("suid", ClearFlag(MsFlags::MS_NOSUID)),
    known("nosuid", SetFlag(MsFlags::MS_NOSUID)),
    known("dev", ClearFlag(MsFlags::MS_NODEV)),
    known("nodev", SetFlag(MsFlags::MS_NODEV)),
    known("exec", ClearFlag(MsFlags::MS_NOEXEC)),
    known("noexec", SetFlag(MsFlags::MS_NOEXEC)),
    known("sync", SetFlag(MsFlags::MS_SYNCHRONOUS)),
    known("async", ClearFlag(MsFlags::MS_SYNCHRONOUS)),
    known("dirsync", SetFlag(MsFlags::MS_DIRSYNC)),
    known("remount", SetFlag(MsFlags::MS_REMOUNT)),
    known("mand", SetFlag(MsFlags::MS_MANDLOCK)),
    known("nomand", ClearFlag(MsFlags::MS_MANDLOCK)),
    known("atime", ClearFlag(MsFlags::MS_NOATIME)),
    known("noatime", SetFlag(MsFlags::MS_NOATIME)),
    known("diratime", ClearFlag(MsFlags::MS_NODIRATIME)),
    known("nodiratime", SetFlag(MsFlags::MS_NODIRATIME)),
    known("relatime", SetFlag(MsFlags::MS_RELATIME)),
    known("norelatime", ClearFlag(MsFlags::MS_RELATIME)),
    known("strictatime", SetFlag(MsFlags::MS_STRICTATIME)),
    known("nostrictatime", ClearFlag(MsFlags::MS_STRICTATIME)),
    known("lazytime", SetFlag(MsFlags::MS_LAZYTIME)),
    known("nolazytime", ClearFlag(MsFlags::MS_LAZYTIME)),
    known("silent", SetFlag(MsFlags::MS_SILENT)),
    known("loud", ClearFlag(MsFlags::MS_SILENT)),
    known("acl", SetFlag(MsFlags::MS_POSIXACL)),
    known("noacl", ClearFlag(MsFlags::MS_POSIXACL)),
    known("iversion", SetFlag(MsFlags::MS_I_VERSION)),
    known("noiversion", ClearFlag(MsFlags::MS_I_VERSION)),
    known("symfollow", ClearFlag(MS_NOSYMFOLLOW)),
    known("nosymfollow", SetFlag(MS_NOSYMFOLLOW)),
    known("bind", Bind { recursive: false }),
    known("rbind", Bind { recursive: true }),
    known("private", Propagation(MsFlags::MS_PRIVATE)),
    known(
        "rprivate",
        Propagation(MsFlags::MS_PRIVATE.union(MsFlags::MS_REC)),
    ),
    known("shared", Propagation(MsFlags::MS_SHARED)),
    known(
        "rshared",
        Propagation(MsFlags::MS_SHARED.union(MsFlags::MS_REC)),
    ),
    known("slave", Propagation(MsFlags::MS_SLAVE)),
    known(
        "rslave",
        Propagation(MsFlags::MS_SLAVE.union(MsFlags::MS_REC)),
    ),
    known("unbindable", Propagation(MsFlags::MS_UNBINDABLE)),
    known(
        "runbindable",
        Propagation(MsFlags::MS_UNBINDABLE.union(MsFlags::MS_REC)),
    ),
    known("rro", SetAttr(MOUNT_ATTR_RDONLY)),
    known("rrw", ClearAttr(MOUNT_ATTR_RDONLY)),
    known("rnosuid", SetAttr(MOUNT_ATTR_NOSUID)),
    known("rsuid", ClearAttr(MOUNT_ATTR_NOSUID)),
    known("rnodev", SetAttr(MOUNT_ATTR_NODEV)),
    known("rdev", ClearAttr(MOUNT_ATTR_NODEV)),
    known("rnoexec", SetAttr(MOUNT_ATTR_NOEXEC)),
    known("rexec", ClearAttr(MOUNT_ATTR_NOEXEC)),
    known("rnodiratime", SetAttr(MOUNT_ATTR_NODIRATIME)),
    known("rdiratime", ClearAttr(MOUNT_ATTR_NODIRATIME)),
    known("rnosymfollow", SetAttr(MOUNT_ATTR_NOSYMFOLLOW)),
    known("rsymfollow", ClearAttr(MOUNT_ATTR_NOSYMFOLLOW)),
    known("rrelatime", AttrAtime(MOUNT_ATTR_RELATIME)),
    known("rnorelatime", AttrNoAtimeMode(MOUNT_ATTR_RELATIME)),
    known("rnoatime", AttrAtime(MOUNT_ATTR_NOATIME)),
    known("ratime", AttrNoAtimeMode(MOUNT_ATTR_NOATIME)),
    known("rstrictatime", AttrAtime(MOUNT_ATTR_STRICTATIME)),
    known("rnostrictatime", AttrNoAtimeMode(MOUNT_ATTR_STRICTATIME)),
    known("idmap", Idmap { recursive: false }),
    known("ridmap", Idmap { recursive: true }),
    known("tmpcopyup", TmpCopyUp),
];

/// The names of all mount options handled here (not passed through as filesystem data), sorted,
/// as reported by `features` under `mountOptions`.
pub fn supported_mount_options() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = KNOWN_OPTIONS.iter().map(|o| o.name).collect();
    names.sort_unstable();
    names
}

/// Parse one mount's `options` list. `field` names the list in errors, e.g. `"mounts[3].options"`.
///
/// Options are applied in order, so a later `rw` undoes an earlier `ro`, as in runc. Empty
/// strings are skipped. The only error is an option with a NUL byte, which cannot be passed to
/// the kernel.
pub fn parse_mount_options(options: &[String], field: &str) -> Result<MountOptions> {
    let mut parsed = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    // The recursive atime mode chosen so far; folded into recursive_attrs at the end.
    let mut recursive_atime: Option<u64> = None;

    for (index, option) in options.iter().enumerate() {
        if option.contains('\0') {
            bail!("{field}[{index}]: mount option {option:?} contains a NUL byte");
        }
        if option.is_empty() {
            continue;
        }
        let Some(known) = KNOWN_OPTIONS.iter().find(|k| k.name == option) else {
            // Passed on as is, even with ',' inside: runc joins the same way, and SELinux
            // labels such as context="...:s0:c1,c2" carry a quoted ','.
            data.push(option);
            continue;
        };
        let attrs = &mut parsed.recursive_attrs;
        match known.effect {
            Nothing => {}
            SetFlag(flag) => {
                parsed.flags |= flag;
                parsed.clear_flags &= !flag;
            }
            ClearFlag(flag) => {
                parsed.flags &= !flag;
                parsed.clear_flags |= flag;
            }
            Bind { recursive } => {
                parsed.is_bind = true;
                parsed.flags |= MsFlags::MS_BIND;
                if recursive {
                    parsed.recursive = true;
                    parsed.flags |= MsFlags::MS_REC;
                }
            }
            Propagation(flags) => parsed.propagation.push(flags),
            SetAttr(bit) => {
                attrs.attr_set |= bit;
                attrs.attr_clr &= !bit;
            }
            ClearAttr(bit) => {
                attrs.attr_clr |= bit;
                attrs.attr_set &= !bit;
            }
            AttrAtime(mode) => recursive_atime = Some(mode),
            // The atime mode is one value, not independent bits: "not noatime" can only mean
            // going back to the kernel default (relatime), and only if noatime was what the
            // list had picked so far; likewise for the other modes.
            AttrNoAtimeMode(mode) => match recursive_atime {
                Some(chosen) if chosen == mode && mode != MOUNT_ATTR_RELATIME => {
                    recursive_atime = Some(MOUNT_ATTR_RELATIME)
                }
                Some(chosen) if chosen == mode => recursive_atime = None,
                None if mode != MOUNT_ATTR_RELATIME => recursive_atime = Some(MOUNT_ATTR_RELATIME),
                _ => {}
            },
            Idmap { recursive } => {
                parsed.idmap = true;
                parsed.idmap_recursive |= recursive;
            }
            TmpCopyUp => parsed.tmpcopyup = true,
        }
    }

    if let Some(mode) = recursive_atime {
        // mount_setattr(2): a new atime mode needs the whole __ATIME mask in attr_clr.
        let attrs = &mut parsed.recursive_attrs;
        attrs.attr_clr |= MOUNT_ATTR__ATIME;
        attrs.attr_set = (attrs.attr_set & !MOUNT_ATTR__ATIME) | mode;
    }
    parsed.data = data.join(",");
    parsed.needs_remount = parsed.compute_needs_remount();
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(options: &[&str]) -> MountOptions {
        let owned: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        parse_mount_options(&owned, "mounts[0].options").unwrap()
    }

    #[test]
    fn empty_list_is_a_plain_mount() {
        let parsed = parse(&[]);
        assert_eq!(parsed, MountOptions::default());
        assert!(parse(&["defaults", ""]).flags.is_empty());
    }

    #[test]
    fn on_off_flags_and_their_inverses() {
        let cases: &[(&str, &str, MsFlags)] = &[
            ("ro", "rw", MsFlags::MS_RDONLY),
            ("nosuid", "suid", MsFlags::MS_NOSUID),
            ("nodev", "dev", MsFlags::MS_NODEV),
            ("noexec", "exec", MsFlags::MS_NOEXEC),
            ("sync", "async", MsFlags::MS_SYNCHRONOUS),
            ("mand", "nomand", MsFlags::MS_MANDLOCK),
            ("noatime", "atime", MsFlags::MS_NOATIME),
            ("nodiratime", "diratime", MsFlags::MS_NODIRATIME),
            ("relatime", "norelatime", MsFlags::MS_RELATIME),
            ("strictatime", "nostrictatime", MsFlags::MS_STRICTATIME),
            ("lazytime", "nolazytime", MsFlags::MS_LAZYTIME),
            ("silent", "loud", MsFlags::MS_SILENT),
            ("acl", "noacl", MsFlags::MS_POSIXACL),
            ("iversion", "noiversion", MsFlags::MS_I_VERSION),
            ("nosymfollow", "symfollow", MS_NOSYMFOLLOW),
        ];
        for &(on, off, flag) in cases {
            let set = parse(&[on]);
            assert_eq!(set.flags, flag, "{on}");
            assert!(set.clear_flags.is_empty(), "{on}");
            let cleared = parse(&[off]);
            assert!(cleared.flags.is_empty(), "{off}");
            assert_eq!(cleared.clear_flags, flag, "{off}");
            // The last one wins, as in runc.
            assert_eq!(parse(&[on, off]).flags, MsFlags::empty(), "{on},{off}");
            assert_eq!(parse(&[off, on]).flags, flag, "{off},{on}");
            assert!(parse(&[off, on]).clear_flags.is_empty(), "{off},{on}");
        }
        assert_eq!(parse(&["dirsync"]).flags, MsFlags::MS_DIRSYNC);
        assert_eq!(
            parse(&["remount", "ro"]).flags,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY
        );
    }

    #[test]
    fn runc_spec_mounts() {
        let dev = parse(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(dev.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(dev.data, "mode=755,size=65536k");
        assert!(!dev.is_bind && !dev.needs_remount);

        let pts = parse(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(pts.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(pts.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");

        let cgroup = parse(&["nosuid", "noexec", "nodev", "relatime", "ro"]);
        assert_eq!(
            cgroup.flags,
            MsFlags::MS_NOSUID
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_NODEV
                | MsFlags::MS_RELATIME
                | MsFlags::MS_RDONLY
        );
        assert!(cgroup.data.is_empty());
    }

    #[test]
    fn bind_and_rbind() {
        let bind = parse(&["bind"]);
        assert_eq!(bind.flags, MsFlags::MS_BIND);
        assert!(bind.is_bind && !bind.recursive && !bind.needs_remount);

        let rbind = parse(&["rbind", "rprivate"]);
        assert_eq!(rbind.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(rbind.is_bind && rbind.recursive && !rbind.needs_remount);
        assert_eq!(
            rbind.propagation,
            vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]
        );
    }

    #[test]
    fn bind_with_per_mount_flags_needs_remount() {
        for flag in [
            "ro", "nosuid", "nodev", "noexec", "relatime", "noatime", "rw", "suid",
        ] {
            assert!(parse(&["rbind", flag]).needs_remount, "{flag}");
            // A plain mount takes its flags in the first call.
            assert!(!parse(&[flag]).needs_remount, "{flag}");
        }
        // Flags that are not per-mount do not need a remount.
        assert!(!parse(&["bind", "sync"]).needs_remount);

        let ro = parse(&["rbind", "ro"]);
        assert_eq!(
            ro.remount_flags(MsFlags::empty()),
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY
        );
        // Inherited nosuid/nodev survive a remount for "ro"; "rw" drops only the inherited ro.
        let inherited = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_RDONLY;
        assert_eq!(
            ro.remount_flags(inherited),
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | inherited
        );
        let rw = parse(&["bind", "rw"]);
        assert_eq!(
            rw.remount_flags(inherited),
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
        // An explicit "suid" is not overridden by the current mount's nosuid.
        let suid = parse(&["bind", "suid"]);
        assert!(!suid.remount_flags(inherited).contains(MsFlags::MS_NOSUID));
    }

    #[test]
    fn type_bind_without_bind_option() {
        let mut ro = parse(&["ro"]);
        assert!(!ro.needs_remount);
        ro.make_bind();
        assert!(ro.is_bind && ro.needs_remount);
        assert_eq!(ro.flags, MsFlags::MS_BIND | MsFlags::MS_RDONLY);
    }

    #[test]
    fn propagation_in_order() {
        let parsed = parse(&[
            "private",
            "rprivate",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
        ]);
        let rec = MsFlags::MS_REC;
        assert_eq!(
            parsed.propagation,
            vec![
                MsFlags::MS_PRIVATE,
                MsFlags::MS_PRIVATE | rec,
                MsFlags::MS_SHARED,
                MsFlags::MS_SHARED | rec,
                MsFlags::MS_SLAVE,
                MsFlags::MS_SLAVE | rec,
                MsFlags::MS_UNBINDABLE,
                MsFlags::MS_UNBINDABLE | rec,
            ]
        );
        assert!(parsed.flags.is_empty());
    }

    #[test]
    fn recursive_attributes() {
        let cases: &[(&str, &str, u64)] = &[
            ("rro", "rrw", MOUNT_ATTR_RDONLY),
            ("rnosuid", "rsuid", MOUNT_ATTR_NOSUID),
            ("rnodev", "rdev", MOUNT_ATTR_NODEV),
            ("rnoexec", "rexec", MOUNT_ATTR_NOEXEC),
            ("rnodiratime", "rdiratime", MOUNT_ATTR_NODIRATIME),
            ("rnosymfollow", "rsymfollow", MOUNT_ATTR_NOSYMFOLLOW),
        ];
        for &(on, off, bit) in cases {
            assert_eq!(
                parse(&[on]).recursive_attrs,
                MountAttr {
                    attr_set: bit,
                    attr_clr: 0
                },
                "{on}"
            );
            assert_eq!(
                parse(&[off]).recursive_attrs,
                MountAttr {
                    attr_set: 0,
                    attr_clr: bit
                },
                "{off}"
            );
            assert_eq!(
                parse(&[on, off]).recursive_attrs,
                MountAttr {
                    attr_set: 0,
                    attr_clr: bit
                }
            );
            assert!(parse(&[on]).flags.is_empty(), "{on} is not a mount(2) flag");
        }
        assert!(parse(&[]).recursive_attrs.is_empty());
    }

    #[test]
    fn recursive_atime_modes() {
        let atime = |opts: &[&str]| parse(opts).recursive_attrs;
        let mode = |m: u64| MountAttr {
            attr_set: m,
            attr_clr: MOUNT_ATTR__ATIME,
        };
        assert_eq!(atime(&["rnoatime"]), mode(MOUNT_ATTR_NOATIME));
        assert_eq!(atime(&["rstrictatime"]), mode(MOUNT_ATTR_STRICTATIME));
        assert_eq!(atime(&["rrelatime"]), mode(MOUNT_ATTR_RELATIME));
        assert_eq!(
            atime(&["rnoatime", "rstrictatime"]),
            mode(MOUNT_ATTR_STRICTATIME)
        );
        // Undoing noatime/strictatime means the default, relatime.
        assert_eq!(atime(&["ratime"]), mode(MOUNT_ATTR_RELATIME));
        assert_eq!(atime(&["rnoatime", "ratime"]), mode(MOUNT_ATTR_RELATIME));
        assert_eq!(atime(&["rnostrictatime"]), mode(MOUNT_ATTR_RELATIME));
        // "ratime" does not override an explicit strictatime.
        assert_eq!(
            atime(&["rstrictatime", "ratime"]),
            mode(MOUNT_ATTR_STRICTATIME)
        );
        // "rnorelatime" alone changes nothing; after "rrelatime" it cancels it.
        assert!(atime(&["rnorelatime"]).is_empty());
        assert!(atime(&["rrelatime", "rnorelatime"]).is_empty());
        // Atime combines with other bits; the whole atime mask is always cleared with a mode.
        assert_eq!(
            atime(&["rro", "rnoatime", "rnodiratime"]),
            MountAttr {
                attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME | MOUNT_ATTR_NODIRATIME,
                attr_clr: MOUNT_ATTR__ATIME,
            }
        );
    }

    #[test]
    fn idmap_and_tmpcopyup() {
        let idmap = parse(&["rbind", "idmap"]);
        assert!(idmap.idmap && !idmap.idmap_recursive);
        let ridmap = parse(&["rbind", "ridmap"]);
        assert!(ridmap.idmap && ridmap.idmap_recursive);
        let tmp = parse(&["tmpcopyup", "mode=1777"]);
        assert!(tmp.tmpcopyup);
        assert_eq!(tmp.data, "mode=1777");
        assert!(idmap.data.is_empty() && ridmap.data.is_empty());
    }

    #[test]
    fn unknown_options_become_data() {
        let parsed = parse(&[
            "ro",
            "context=\"system_u:object_r:foo\"",
            "uid=0",
            "newinstance",
        ]);
        assert_eq!(parsed.flags, MsFlags::MS_RDONLY);
        assert_eq!(
            parsed.data,
            "context=\"system_u:object_r:foo\",uid=0,newinstance"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let nul = vec!["ro".to_string(), "mode=7\u{0}55".to_string()];
        let err = parse_mount_options(&nul, "mounts[3].options")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("mounts[3].options[1]: "), "{err}");
        // A ',' inside an unknown option is data, as in runc (SELinux MCS labels have one).
        let label = vec![r#"context="system_u:object_r:container_file_t:s0:c1,c2""#.to_string()];
        let parsed = parse_mount_options(&label, "mounts[2].options").unwrap();
        assert_eq!(parsed.data, label[0]);
    }

    #[test]
    fn supported_list_covers_the_table_and_is_sorted() {
        let names = supported_mount_options();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "sorted, no duplicates");
        for name in [
            "rbind",
            "rro",
            "ridmap",
            "tmpcopyup",
            "nosymfollow",
            "unbindable",
            "defaults",
        ] {
            assert!(names.contains(&name), "{name}");
        }
        // Everything runc 1.1 lists is here too.
        for name in [
            "acl",
            "async",
            "atime",
            "bind",
            "dev",
            "diratime",
            "dirsync",
            "exec",
            "iversion",
            "lazytime",
            "loud",
            "mand",
            "noacl",
            "noatime",
            "nodev",
            "nodiratime",
            "noexec",
            "noiversion",
            "nolazytime",
            "nomand",
            "norelatime",
            "nostrictatime",
            "nosuid",
            "private",
            "ratime",
            "rdev",
            "rdiratime",
            "relatime",
            "remount",
            "rexec",
            "rnoatime",
            "rnodev",
            "rnodiratime",
            "rnoexec",
            "rnorelatime",
            "rnostrictatime",
            "rnosuid",
            "rnosymfollow",
            "ro",
            "rprivate",
            "rrelatime",
            "rrw",
            "rshared",
            "rslave",
            "rstrictatime",
            "rsuid",
            "rsymfollow",
            "runbindable",
            "rw",
            "shared",
            "silent",
            "slave",
            "strictatime",
            "suid",
            "symfollow",
            "sync",
        ] {
            assert!(names.contains(&name), "{name}");
        }
    }

    #[test]
    fn statvfs_flags_map_to_ms_flags() {
        assert_eq!(
            ms_flags_from_statvfs(0x1 | 0x2 | 0x2000),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MS_NOSYMFOLLOW
        );
        assert_eq!(ms_flags_from_statvfs(0x1000), MsFlags::MS_RELATIME);
        // ST_VALID (0x20) has no mount flag.
        assert_eq!(ms_flags_from_statvfs(0x20), MsFlags::empty());
    }

    /// Run `body` in a child process inside a new private mount namespace, with a scratch
    /// directory (a tmpfs, so nothing lands on the real /tmp) that is removed afterwards; its
    /// error text if it failed.
    fn in_mount_namespace(
        test_name: &str,
        body: impl FnOnce(&std::path::Path) -> anyhow::Result<()>,
    ) -> Result<(), String> {
        crate::runtime::testutil::in_child_process(module_path!(), test_name, || {
            crate::runtime::testutil::private_mount_namespace()?;
            let scratch =
                std::env::temp_dir().join(format!("berth-mount-test-{}", std::process::id()));
            std::fs::create_dir_all(&scratch)?;
            nix::mount::mount(
                Some("tmpfs"),
                &scratch,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )?;
            let result = body(&scratch);
            let _ = nix::mount::umount2(&scratch, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&scratch);
            result.map(|()| String::new())
        })
        .map(|_| ())
    }

    /// Mount what `options` says the way the module documentation tells callers to.
    fn mount_as_documented(
        source: &std::path::Path,
        dest: &std::path::Path,
        options: &MountOptions,
    ) -> anyhow::Result<()> {
        use nix::mount::mount;
        mount(
            Some(source),
            dest,
            None::<&str>,
            options.flags,
            None::<&str>,
        )?;
        if options.needs_remount {
            let flags = options.remount_flags(mount_flags_of(dest)?);
            mount(None::<&str>, dest, None::<&str>, flags, None::<&str>)?;
        }
        if !options.recursive_attrs.is_empty() {
            let mnt: std::os::fd::OwnedFd = std::fs::File::open(dest)?.into();
            crate::runtime::mountfd::set_attrs(
                std::os::fd::AsFd::as_fd(&mnt),
                options.recursive_attrs.attr_set,
                options.recursive_attrs.attr_clr,
                true,
            )?;
        }
        Ok(())
    }

    #[test]
    fn kernel_accepts_what_the_options_say() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let result = in_mount_namespace("kernel_accepts_what_the_options_say", |base| {
            use anyhow::ensure;
            let source = base.join("source");
            let nested = source.join("nested");
            std::fs::create_dir_all(&source)?;
            // The source is nosuid,nodev: a bind of it inherits both.
            nix::mount::mount(
                Some("tmpfs"),
                &source,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                None::<&str>,
            )?;
            std::fs::create_dir_all(&nested)?;
            nix::mount::mount(
                Some("tmpfs"),
                &nested,
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )?;

            // "ro" on a bind: read-only, inherited nosuid/nodev kept.
            let ro = base.join("ro");
            std::fs::create_dir_all(&ro)?;
            mount_as_documented(&source, &ro, &parse(&["bind", "ro"]))?;
            let flags = mount_flags_of(&ro)?;
            ensure!(
                flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV),
                "ro: {flags:?}"
            );

            // The fd variant reads the same flags (an O_PATH descriptor is enough).
            let ro_fd = nix::fcntl::open(
                &ro,
                nix::fcntl::OFlag::O_PATH,
                nix::sys::stat::Mode::empty(),
            )?;
            use std::os::fd::AsFd;
            ensure!(
                mount_flags_of_fd(ro_fd.as_fd())? == flags,
                "fd and path flags differ"
            );

            // "rw" on a bind of that read-only mount: writable again, nosuid/nodev still kept.
            let rw = base.join("rw");
            std::fs::create_dir_all(&rw)?;
            mount_as_documented(&ro, &rw, &parse(&["bind", "rw"]))?;
            let flags = mount_flags_of(&rw)?;
            ensure!(!flags.contains(MsFlags::MS_RDONLY), "rw: {flags:?}");
            ensure!(
                flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_NODEV),
                "rw: {flags:?}"
            );

            // "rro,rnoatime" on an rbind: the submount gets them too.
            let recursive = base.join("recursive");
            std::fs::create_dir_all(&recursive)?;
            mount_as_documented(
                &source,
                &recursive,
                &parse(&["rbind", "rro", "rnoatime", "rnosymfollow"]),
            )?;
            for path in [recursive.clone(), recursive.join("nested")] {
                let flags = mount_flags_of(&path)?;
                ensure!(
                    flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOATIME | MS_NOSYMFOLLOW),
                    "{}: {flags:?}",
                    path.display()
                );
            }
            // And back: "rrw,ratime" makes the whole tree writable and relatime.
            mount_as_documented(&source, &recursive, &parse(&["rbind", "rrw", "ratime"]))?;
            for path in [recursive.clone(), recursive.join("nested")] {
                let flags = mount_flags_of(&path)?;
                ensure!(
                    !flags.intersects(MsFlags::MS_RDONLY | MsFlags::MS_NOATIME),
                    "{}: {flags:?}",
                    path.display()
                );
                ensure!(
                    flags.contains(MsFlags::MS_RELATIME),
                    "{}: {flags:?}",
                    path.display()
                );
            }
            Ok(())
        });
        result.unwrap();
    }

    /// What berth does (see the module documentation): binds set while detached, a new tmpfs
    /// from fsopen/fsmount; the flags must come out as the remount way gives them.
    #[test]
    fn detached_mounts_get_what_the_options_say() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let result = in_mount_namespace("detached_mounts_get_what_the_options_say", |base| {
            use crate::runtime::mountfd;
            use anyhow::ensure;
            use std::os::fd::AsFd;
            let open = |p: &std::path::Path| {
                nix::fcntl::open(
                    p,
                    nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
            };
            let bind = |source: &std::path::Path, options: &[&str]| -> anyhow::Result<_> {
                let dest = base.join(format!("d{}", options.join("-")));
                std::fs::create_dir_all(&dest)?;
                let o = parse(options);
                let tree = mountfd::clone_tree(None, source, o.recursive)?;
                let a = o.bind_attrs();
                mountfd::set_attrs(tree.as_fd(), a.attr_set, a.attr_clr, false)?;
                let r = o.recursive_attrs;
                if !r.is_empty() {
                    mountfd::set_attrs(tree.as_fd(), r.attr_set, r.attr_clr, true)?;
                }
                mountfd::attach(tree.as_fd(), open(&dest)?.as_fd())?;
                Ok(dest)
            };
            let source = base.join("source");
            std::fs::create_dir_all(&source)?;
            nix::mount::mount(
                Some("tmpfs"),
                &source,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME,
                None::<&str>,
            )?;
            std::fs::create_dir_all(source.join("nested"))?;
            nix::mount::mount(
                Some("tmpfs"),
                &source.join("nested"),
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )?;
            // "ro": read-only, the inherited nosuid, nodev and noatime kept.
            let ro = bind(&source, &["bind", "ro"])?;
            let flags = mount_flags_of(&ro)?;
            ensure!(
                flags.contains(
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOATIME
                ),
                "ro: {flags:?}"
            );
            // "rw,suid,strictatime" over that: writable, suid, strictatime; nodev kept.
            let rw = bind(&ro, &["bind", "rw", "suid", "strictatime"])?;
            let flags = mount_flags_of(&rw)?;
            ensure!(
                !flags.intersects(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOATIME),
                "rw: {flags:?}"
            );
            ensure!(flags.contains(MsFlags::MS_NODEV), "rw: {flags:?}");
            // "rbind,ro": the submount stays writable; "rbind,rro": read-only too.
            let top_only = bind(&source, &["rbind", "ro"])?;
            ensure!(!mount_flags_of(&top_only.join("nested"))?.contains(MsFlags::MS_RDONLY));
            let all = bind(&source, &["rbind", "rro"])?;
            ensure!(mount_flags_of(&all.join("nested"))?.contains(MsFlags::MS_RDONLY));
            // A tmpfs: superblock flags and data by fsconfig, mount flags by fsmount.
            let o = parse(&["nosuid", "noexec", "ro", "mode=1770", "size=1m"]);
            let mut params: Vec<mountfd::FsParam> = superblock_params(o.flags)
                .into_iter()
                .map(mountfd::FsParam::Flag)
                .collect();
            params.extend(mountfd::split_data(&o.data));
            let mnt =
                mountfd::new_fs("tmpfs", "tmpfs".as_ref(), &params, new_mount_attrs(o.flags))?;
            let dest = base.join("tmpfs");
            std::fs::create_dir_all(&dest)?;
            mountfd::attach(mnt.as_fd(), open(&dest)?.as_fd())?;
            let flags = mount_flags_of(&dest)?;
            ensure!(
                flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC),
                "tmpfs: {flags:?}"
            );
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dest)?.permissions().mode() & 0o7777;
            ensure!(mode == 0o1770, "tmpfs mode {mode:o}");
            // The filesystem's own words reach the error.
            let bad = mountfd::new_fs(
                "tmpfs",
                "tmpfs".as_ref(),
                &[mountfd::FsParam::Value("mode", "x")],
                0,
            );
            let err = format!("{:#}", bad.expect_err("mode=x accepted"));
            ensure!(err.contains("mode"), "{err}");
            Ok(())
        });
        result.unwrap();
    }
}
