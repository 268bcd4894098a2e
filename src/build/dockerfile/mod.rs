//! The Dockerfile: its syntax tree (the contract between the parser and the executor).
pub mod ast;
