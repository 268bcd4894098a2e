//! The engine: containers made from images, with Docker's verbs (`berth container ...`), and no
//! daemon. A container is a record under the data root, a bundle whose rootfs is an overlay of
//! the image's snapshots plus its own writable layer, and the runtime core's container under
//! `--root`; a small monitor process per running container holds its stdio and log and records
//! its exit. Every command reads the records from disk.

pub mod resources;
pub mod seccomp_default;
pub mod security;
