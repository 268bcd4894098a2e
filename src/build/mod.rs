//! `berth build`: Dockerfiles into OCI images in berth's store, RUN steps as containers of the
//! runtime core over overlay snapshots.
pub mod archive;
pub mod context;
pub mod dockerfile;
pub mod ignore;
