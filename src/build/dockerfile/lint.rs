//! The warnings BuildKit's linter gives about a Dockerfile that still builds, for the ones
//! the parse alone decides. Printed at the end of a build, as BuildKit prints them:
//! ` - NAME: message (line N)`.
use std::fmt;

use super::ast::{Dockerfile, InstructionKind};
use super::lines::LineReader;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// BuildKit's rule name (`NoEmptyContinuation`, `StageNameCasing`, ...).
    pub rule: &'static str,
    pub message: String,
    pub line: usize,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (line {})", self.rule, self.message, self.line)
    }
}

/// The warnings for `df`, parsed from `source`, in line order.
pub fn lint(source: &str, df: &Dockerfile) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let mut reader = LineReader::new(source);
    while let Ok(Some(_)) = reader.next_line() {}
    for &line in &reader.empty_continuations {
        warnings.push(Warning {
            rule: "NoEmptyContinuation",
            message: "Empty continuation line".to_string(),
            line,
        });
    }
    for stage in &df.stages {
        let line = stage.from.line;
        let words: Vec<&str> = stage.from.original.split_whitespace().collect();
        let from_word = words.first().copied().unwrap_or("FROM");
        if let Some(position) = words.iter().position(|w| w.eq_ignore_ascii_case("as")) {
            let as_word = words[position];
            let name = words.get(position + 1).copied().unwrap_or_default();
            if name != name.to_lowercase() {
                warnings.push(Warning {
                    rule: "StageNameCasing",
                    message: format!("Stage name '{name}' should be lowercase"),
                    line,
                });
            }
            if is_upper(from_word) != is_upper(as_word) {
                warnings.push(Warning {
                    rule: "FromAsCasing",
                    message: format!("'{as_word}' and '{from_word}' keywords' casing do not match"),
                    line,
                });
            }
            if name.eq_ignore_ascii_case("scratch") || name.eq_ignore_ascii_case("context") {
                warnings.push(Warning {
                    rule: "ReservedStageName",
                    message: format!(
                        "'{}' is reserved and should not be used as a stage name",
                        name.to_lowercase()
                    ),
                    line,
                });
            }
        }
        // Only the last CMD, ENTRYPOINT or HEALTHCHECK of a stage counts.
        for kind in ["CMD", "ENTRYPOINT", "HEALTHCHECK"] {
            let lines: Vec<usize> = stage
                .instructions
                .iter()
                .filter(|i| {
                    matches!(
                        (&i.kind, kind),
                        (InstructionKind::Cmd(_), "CMD")
                            | (InstructionKind::Entrypoint(_), "ENTRYPOINT")
                            | (InstructionKind::Healthcheck(_), "HEALTHCHECK")
                    )
                })
                .map(|i| i.line)
                .collect();
            for &line in lines.iter().rev().skip(1) {
                warnings.push(Warning {
                    rule: "MultipleInstructionsDisallowed",
                    message: format!(
                        "Multiple {kind} instructions should not be used in the same stage because only the last one will be used"
                    ),
                    line,
                });
            }
        }
        for instruction in &stage.instructions {
            let command = instruction
                .original
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_uppercase();
            match &instruction.kind {
                InstructionKind::Maintainer(_) => warnings.push(Warning {
                    rule: "MaintainerDeprecated",
                    message: "Maintainer instruction is deprecated in favor of using label"
                        .to_string(),
                    line: instruction.line,
                }),
                InstructionKind::Env(_) | InstructionKind::Label(_)
                    if is_legacy_key_value(&instruction.original) =>
                {
                    warnings.push(Warning {
                        rule: "LegacyKeyValueFormat",
                        message: format!(
                            "\"{command} key=value\" should be used instead of legacy \"{command} key value\" format"
                        ),
                        line: instruction.line,
                    })
                }
                _ => {}
            }
        }
    }
    warnings.sort_by_key(|w| w.line);
    warnings
}

fn is_upper(word: &str) -> bool {
    word == word.to_uppercase()
}

/// `ENV K V` rather than `ENV K=V`: the first word after the instruction has no `=`.
fn is_legacy_key_value(original: &str) -> bool {
    let mut words = original.split_whitespace();
    words.next();
    words.next().is_some_and(|first| !first.contains('='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::dockerfile::parse;

    fn warnings(source: &str) -> Vec<String> {
        let df = parse(source, "Dockerfile").unwrap();
        lint(source, &df).iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn clean_file_has_none() {
        assert!(warnings("FROM a AS build\nENV A=1\nCMD [\"x\"]\n").is_empty());
    }

    #[test]
    fn empty_continuation_line() {
        assert_eq!(
            warnings("FROM a\nRUN echo \\\n\n  hi\n"),
            ["NoEmptyContinuation: Empty continuation line (line 4)"]
        );
    }

    #[test]
    fn stage_name_and_keyword_casing() {
        assert_eq!(
            warnings("FROM a as Build\n"),
            [
                "StageNameCasing: Stage name 'Build' should be lowercase (line 1)",
                "FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)"
            ]
        );
        assert!(warnings("from a as b\n").is_empty());
    }

    #[test]
    fn reserved_stage_name() {
        assert_eq!(
            warnings("FROM a AS scratch\n"),
            ["ReservedStageName: 'scratch' is reserved and should not be used as a stage name (line 1)"]
        );
    }

    #[test]
    fn repeated_cmd_and_maintainer_and_legacy_env() {
        assert_eq!(
            warnings("FROM a\nMAINTAINER me\nENV A 1\nCMD a\nCMD b\nlabel x y\n"),
            [
                "MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 2)",
                "LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format (line 3)",
                "MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used (line 4)",
                "LegacyKeyValueFormat: \"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format (line 6)"
            ]
        );
    }
}
