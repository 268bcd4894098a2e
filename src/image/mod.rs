//! The image layer: an OCI image store with named references, layers unpacked into shared
//! read-only snapshots, container root filesystems over them, bundles made from images, and
//! archives (docker-archive, oci-archive) in and out. It sits above the runtime core and calls it
//! only through its Rust API.

pub mod digest;
pub mod reference;
pub mod store;

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
