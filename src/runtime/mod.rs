//! The OCI runtime core: it takes a bundle and a container id, and knows nothing of images,
//! registries or networks.

pub mod birth;
pub mod caps;
pub mod cgroups;
pub mod container;
pub mod devices;
pub mod features;
pub mod foreground;
pub mod fsutil;
pub mod hooks;
pub mod hostmounts;
pub mod inroot;
pub mod log;
pub mod mount_options;
pub mod mountfd;
pub mod namespaces;
pub mod netdev;
pub mod process;
pub mod procfs;
pub mod rdt;
pub mod rootfs;
pub mod sched;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod spec_template;
pub mod state;
pub mod sync;
pub mod taskattrs;
#[cfg(test)]
mod testutil;
pub mod trampoline;
pub mod tty;
