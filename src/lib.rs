//! berth: an OCI container runtime. The runtime core lives in [`runtime`]; the higher layers
//! (images, engine, build, compose) will sit beside it and call it through its Rust API.
pub mod build;
pub mod compose;
pub mod engine;
pub mod image;
pub mod kube;
pub mod network;
pub mod runtime;
pub mod table;
