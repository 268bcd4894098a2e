//! `berth build`: Dockerfiles into OCI images in berth's store, RUN steps as containers of the
//! runtime core over overlay snapshots.
//!
//! For COPY and ADD: [`context`] opens the build context and picks the Dockerfile, [`ignore`]
//! is `.dockerignore`, [`copy`] plans and applies a COPY/ADD ([`copy::plan`],
//! [`copy::CopyPlan::content_digest`], [`copy::CopyPlan::apply`]), with [`add`] (URLs,
//! archives), [`archive`] (compression), [`owner`] (`--chown`, `--chmod`) and [`checksum`]
//! (the cache key's content part) beneath it.
pub mod add;
pub mod archive;
pub mod checksum;
pub mod context;
pub mod copy;
pub mod dockerfile;
pub mod ignore;
pub mod owner;

// The executor: stages and steps, their images, the cache, and what the user sees.
pub mod cache;
pub mod cli;
pub mod config_edit;
pub mod executor;
pub mod image_state;
pub mod interrupt;
pub mod layers;
pub mod output;
pub mod run;
pub mod stages;
pub mod vars;
pub mod workdir;
