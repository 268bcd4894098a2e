//! `berth compose`: compose files resolved into a plan of containers, networks and volumes,
//! applied by the engine's Rust API (never by running berth again). `load` finds, parses,
//! interpolates (`interp`) and merges the files; `model` reads them into services, networks,
//! volumes, configs and secrets; `plan` names and labels what is made as Docker Compose v2
//! does and turns a service into the engine's create flags; `ops` applies and inspects the
//! project; `cli` is the command line.
pub mod cli;
pub mod interp;
pub mod load;
pub mod model;
pub mod ops;
pub mod plan;
