//! `berth build`: Dockerfiles into OCI images in berth's store, RUN steps as containers of the
//! runtime core over overlay snapshots.
pub mod archive;
pub mod context;
pub mod dockerfile;
pub mod ignore;

// The executor: stages and steps, their images, the cache, and what the user sees.
pub mod cache;
pub mod cli;
pub mod config_edit;
pub mod executor;
pub mod image_state;
pub mod input;
pub mod interrupt;
pub mod layers;
pub mod output;
pub mod run;
pub mod vars;
pub mod workdir;
