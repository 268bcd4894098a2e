//! A step's root filesystem: an overlay of the layers so far (read-only snapshots) and a fresh
//! upper directory, mounted in the build's private mount namespace. What the step changed is
//! the upper directory: it becomes the step's layer (a tar of it, whiteouts for deletions),
//! and is then moved into the store as that layer's snapshot, so the next step mounts it
//! without unpacking the tar again.

use super::image_state::Layer;
use crate::image::commit::store_layer;
use crate::image::rootfs::{mount_overlay, unmount};
use crate::image::store::Store;
use crate::image::store::DOCKER_LAYER_GZIP;
use anyhow::{Context, Result};
use nix::sys::time::TimeSpec;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A mounted step root; unmounted (and its directories removed) when dropped.
pub struct StepRoot {
    dir: PathBuf,
    pub rootfs: PathBuf,
    pub upper: PathBuf,
    mounted: bool,
}

impl StepRoot {
    /// Mounts the overlay of `lowers` (base first) at `dir/rootfs`, with `dir/upper` and
    /// `dir/work`. An image without layers (`scratch`) gets an empty lower directory.
    pub fn mount(dir: &Path, lowers: &[PathBuf]) -> Result<StepRoot> {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut lowers = lowers.to_vec();
        if lowers.is_empty() {
            let empty = dir.join("empty");
            fs::create_dir(&empty).with_context(|| format!("cannot create {}", empty.display()))?;
            lowers.push(empty);
        }
        let rootfs = dir.join("rootfs");
        let upper = dir.join("upper");
        mount_overlay(&lowers, &upper, &dir.join("work"), &rootfs)?;
        Ok(StepRoot {
            dir: dir.to_path_buf(),
            rootfs,
            upper,
            mounted: true,
        })
    }

    /// Unmounts the root and turns the upper directory into a layer in the store (None when
    /// the step changed nothing). `hidden`: the empty mount-point files the runtime made for
    /// bind mounts (`/etc/hosts`), left out. `epoch` (`SOURCE_DATE_EPOCH`): no mtime in the
    /// layer is later, as BuildKit's rewrite-timestamp. The upper directory becomes the
    /// layer's snapshot.
    pub fn finish(
        mut self,
        store: &Store,
        hidden: &[String],
        docker_format: bool,
        epoch: Option<i64>,
    ) -> Result<Option<Layer>> {
        unmount(&self.rootfs)?;
        self.mounted = false;
        for h in hidden {
            remove_stub(&self.upper, h);
        }
        if let Some(secs) = epoch {
            clamp_mtimes(&self.upper, secs)
                .with_context(|| format!("clamping the times of {}", self.upper.display()))?;
        }
        let media_type = if docker_format {
            DOCKER_LAYER_GZIP
        } else {
            OCI_LAYER_GZIP
        };
        let Some(blob) = store_layer(store, &self.upper, &[], media_type)? else {
            return Ok(None);
        };
        let snapshot = store.snapshot_path(&blob.diff_id);
        if !snapshot.exists() {
            // The tar was written from this very tree: the tree is the layer unpacked. A
            // concurrent build that got there first simply wins.
            let _ = fs::rename(&self.upper, &snapshot);
        }
        Ok(Some(Layer::from(&blob)))
    }
}

/// Sets the mtime of every object below `dir` (and of `dir`) that is later than `epoch` to
/// `epoch`, the snapshot on disk as the layer's tar then holds it. The tree was written by a
/// RUN step: each directory is opened from its parent's fd without following a symlink, and
/// times are set by name in their directory's fd, never following one either.
pub fn clamp_mtimes(dir: &Path, epoch: i64) -> Result<()> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let top = open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", dir.display()))?;
    clamp_below(&top, epoch)?;
    let st = nix::sys::stat::fstat(&top)?;
    if st.st_mtime > epoch {
        nix::sys::stat::futimens(&top, &TimeSpec::UTIME_OMIT, &TimeSpec::new(epoch, 0))?;
    }
    Ok(())
}

fn clamp_below(dir: &OwnedFd, epoch: i64) -> Result<()> {
    use nix::fcntl::{openat, AtFlags, OFlag};
    use nix::sys::stat::{fstatat, utimensat, Mode, UtimensatFlags};
    let mut names = Vec::new();
    for e in nix::dir::Dir::from_fd(dir.try_clone()?)?.iter() {
        let name = e?.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
        }
    }
    for name in names {
        let st = fstatat(dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let sub = openat(
                dir,
                name.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            clamp_below(&sub, epoch)?;
        }
        if st.st_mtime > epoch {
            utimensat(
                dir,
                name.as_c_str(),
                &TimeSpec::UTIME_OMIT,
                &TimeSpec::new(epoch, 0),
                UtimensatFlags::NoFollowSymlink,
            )?;
        }
    }
    Ok(())
}

/// Removes from the upper directory the file at container path `path` that a bind mount
/// covered during the step: the runtime made it as a mount point (empty), or copied it up
/// unchanged when it opened it; the step itself could not write it (the mount hid it). The
/// directories above it that are left empty go too (copied up only to hold the stub), unless
/// opaque (the step replaced them).
///
/// The upper directory was written by the step: every component is opened without
/// following symlinks, so a link planted there cannot point this at a host file.
fn remove_stub(upper: &Path, path: &str) {
    use nix::fcntl::{openat, AtFlags, OFlag};
    use nix::sys::stat::{fstatat, Mode};
    use nix::unistd::{unlinkat, UnlinkatFlags};
    let Ok(top) = nix::fcntl::open(
        upper,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let names: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let Some((last, parents)) = names.split_last() else {
        return;
    };
    // dirs[i] is the directory holding names[i].
    let mut dirs = vec![top];
    for name in parents {
        match openat(
            dirs.last().expect("never empty"),
            *name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => dirs.push(fd),
            Err(_) => return,
        }
    }
    let holder = dirs.last().expect("never empty");
    let is_file = fstatat(holder, *last, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
    if !is_file || unlinkat(holder, *last, UnlinkatFlags::NoRemoveDir).is_err() {
        return;
    }
    for (i, name) in parents.iter().enumerate().rev() {
        if is_opaque(&dirs[i + 1]) {
            return;
        }
        // Fails, as wanted, when the directory holds anything else.
        if unlinkat(&dirs[i], *name, UnlinkatFlags::RemoveDir).is_err() {
            return;
        }
    }
}

fn is_opaque(dir: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut value = [0u8; 2];
    // SAFETY: reads at most value.len() bytes into a buffer we own, from an fd we own.
    let n = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

impl Drop for StepRoot {
    fn drop(&mut self) {
        if self.mounted {
            let _ = unmount(&self.rootfs);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
