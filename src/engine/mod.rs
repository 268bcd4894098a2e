//! The engine: containers made from images, with Docker's verbs (`berth container ...`), and no
//! daemon. A container is a record under the data root, a bundle whose rootfs is an overlay of
//! the image's snapshots plus its own writable layer, and the runtime core's container under
//! `--root`; a small monitor process per running container holds its stdio and log and records
//! its exit. Every command reads the records from disk.
pub mod attach;
pub mod cli;
pub mod copy;
pub mod create;
pub mod health;
pub mod humanize;
pub mod inspect;
pub mod layers_cli;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod mounts;
pub mod oom;
pub mod present;
pub mod record;
pub mod remove;
pub mod resources;
pub mod seccomp_default;
pub mod security;
pub mod stats;
pub mod system;
pub mod template;
pub mod top;
pub mod update;
pub mod volume;
pub mod volume_cli;
