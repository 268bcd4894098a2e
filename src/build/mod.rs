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
