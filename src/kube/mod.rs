//! Kubernetes YAML on one host, as `podman kube` plays it: `kube play`, `kube down`, `kube
//! generate`, and the pods they make (`berth pod ...`). A layer over the engine's Rust API.
pub mod cli;
pub mod generate;
pub mod model;
pub mod play;
pub mod pod;
