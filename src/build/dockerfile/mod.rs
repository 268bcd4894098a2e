//! The Dockerfile: its syntax tree (the contract between the parser and the executor), the
//! parser, BuildKit's word expansion, and the plan of stages a target needs.
pub mod ast;
mod duration;
pub mod error;
pub mod expand;
mod flags;
mod lines;
pub mod lint;
pub mod mount;
pub mod parse;
pub mod plan;
pub mod run_script;
mod suggest;
mod words;

#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod plan_tests;

pub use error::ParseError;
pub use expand::{expand_word, expand_words, heredoc_content};
pub use mount::{parse_mount, Mount, MountType};
pub use parse::{heredoc_name, onbuild_trigger_text, parse};
pub use plan::{plan, Base, Plan, PlannedStage};
pub use run_script::{run_script, RunScript};
