//! The image layer: an OCI image store with named references, layers unpacked into shared
//! read-only snapshots, container root filesystems over them, bundles made from images, and
//! archives (docker-archive, oci-archive) in and out. It sits above the runtime core and calls it
//! only through its Rust API.

pub mod archive;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod digest;
pub mod import;
pub mod manage;
pub mod reference;
pub mod rootfs;
pub mod snapshot;
pub mod store;
pub mod time;
pub mod unpack;

pub use digest::Digest;
pub use reference::Reference;
pub use store::Store;

// Registries: the client, pull, push and the credentials file.
pub mod credentials;
pub mod progress;
pub mod pull;
pub mod push;
pub mod registry;
pub mod registry_cli;

// A container's writable layer: its changes, layers and images made of it, trees by fd.
pub mod changes;
pub mod commit;
pub mod fswalk;
pub mod tarstream;
