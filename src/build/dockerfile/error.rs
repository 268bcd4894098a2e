//! Parse errors that name the Dockerfile and the 1-based line, as `NAME:LINE: message`.
use std::fmt;

/// An error in a Dockerfile. `line` is `None` for errors about the whole file (empty file,
/// no stages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// An error message not yet placed in a file: the parser's inner functions return these and
/// the caller, who knows the line, turns them into [`ParseError`]s.
pub type Msg = String;
