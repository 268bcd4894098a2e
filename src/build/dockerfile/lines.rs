//! From text to logical lines, as BuildKit's parser reads a Dockerfile: parser directives at the
//! top, comments and empty lines dropped, continuations joined (comment and empty lines inside
//! a continuation skipped), heredoc bodies read on demand after the line that opened them.
use super::error::Msg;

/// A logical line: one instruction with its continuations joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// 1-based line the instruction starts on.
    pub start: usize,
    /// The text, continuation characters removed and lines concatenated as BuildKit does
    /// (each continuation line keeps its own leading whitespace).
    pub text: String,
}

/// Parser directives seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectiveState {
    pub escape: char,
    pub syntax: Option<String>,
    seen: Vec<String>,
    done: bool,
}

impl DirectiveState {
    fn new() -> DirectiveState {
        DirectiveState {
            escape: '\\',
            syntax: None,
            seen: Vec::new(),
            done: false,
        }
    }

    /// Looks at a line (newline and leading whitespace trimmed) while directives may still
    /// appear: `# key=value` with a known key is a directive; anything else ends them.
    fn consider(&mut self, line: &str) -> Result<(), Msg> {
        if self.done {
            return Ok(());
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(());
        };
        let Some((key, value)) = directive_key_value(rest.trim_start()) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => {
                if value != "`" && value != "\\" {
                    return Err(format!(
                        "invalid escape token '{value}' does not match ` or \\"
                    ));
                }
                self.escape = value.chars().next().unwrap_or('\\');
            }
            "syntax" => self.syntax = Some(value.to_string()),
            // `# check=` configures BuildKit's linter, which berth does not run.
            _ => {}
        }
        Ok(())
    }
}

/// `key = value` as BuildKit's directive pattern `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
fn directive_key_value(text: &str) -> Option<(&str, &str)> {
    let first = text.chars().next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let key_end = text
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(text.len());
    let key = &text[..key_end];
    let rest = text[key_end..].trim_start();
    let value = rest.strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((key, value))
}

/// Reads a Dockerfile's lines one logical line at a time.
pub struct LineReader<'a> {
    /// Physical lines, each with its line ending kept (heredoc bodies keep them).
    lines: Vec<&'a str>,
    /// Index of the next physical line to read.
    next: usize,
    pub directives: DirectiveState,
    /// Last lines of the instructions that had an empty line inside their continuation
    /// (BuildKit's NoEmptyContinuation warning).
    pub empty_continuations: Vec<usize>,
}

/// BuildKit's scanner refuses longer physical lines (bufio's 64 KiB token, less one).
const MAX_LINE: usize = 65535;

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

impl<'a> LineReader<'a> {
    pub fn new(source: &'a str) -> LineReader<'a> {
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        LineReader {
            lines: source.split_inclusive('\n').collect(),
            next: 0,
            directives: DirectiveState::new(),
            empty_continuations: Vec::new(),
        }
    }

    /// Physical lines read so far (the 1-based number of the last line read).
    pub fn lines_read(&self) -> usize {
        self.next
    }

    /// The next physical line, refused when longer than BuildKit reads.
    fn take(&mut self) -> Result<&'a str, (usize, Msg)> {
        let raw = self.lines[self.next];
        self.next += 1;
        if raw.strip_suffix('\n').unwrap_or(raw).len() > MAX_LINE {
            return Err((
                self.next,
                format!("dockerfile line greater than max allowed size of {MAX_LINE}"),
            ));
        }
        Ok(raw)
    }

    /// Removes a trailing continuation character (the escape token, then only spaces or
    /// tabs) unless it is itself escaped; true when the line continues.
    fn trim_continuation(&self, line: &str) -> (String, bool) {
        let escape = self.directives.escape;
        let trimmed = line.trim_end_matches([' ', '\t']);
        if let Some(before) = trimmed.strip_suffix(escape) {
            if !before.ends_with(escape) {
                return (before.to_string(), true);
            }
        }
        (line.to_string(), false)
    }

    /// The next logical line, or None at the end. Errors carry their 1-based line.
    pub fn next_line(&mut self) -> Result<Option<LogicalLine>, (usize, Msg)> {
        while self.next < self.lines.len() {
            let raw = self.take()?;
            let number = self.next;
            let text = trim_newline(raw).trim_start();
            self.directives.consider(text).map_err(|m| (number, m))?;
            if text.starts_with('#') || text.is_empty() {
                continue;
            }
            let (mut joined, mut continues) = self.trim_continuation(text);
            let mut had_empty = false;
            while continues && self.next < self.lines.len() {
                let raw = self.take()?;
                let text = trim_newline(raw);
                self.directives.consider(text).map_err(|m| (self.next, m))?;
                if is_comment(raw) {
                    continue;
                }
                if text.trim_start().is_empty() {
                    had_empty = true;
                    continue;
                }
                let (part, more) = self.trim_continuation(text);
                joined.push_str(&part);
                continues = more;
            }
            if had_empty {
                self.empty_continuations.push(self.next);
            }
            return Ok(Some(LogicalLine {
                start: number,
                text: joined,
            }));
        }
        Ok(None)
    }

    /// Reads a heredoc body up to its terminator line (leading tabs ignored on that line
    /// for `<<-`). The body keeps its line endings and its tabs.
    pub fn heredoc_body(
        &mut self,
        name: &str,
        strip_tabs: bool,
    ) -> Result<Option<String>, (usize, Msg)> {
        let mut content = String::new();
        while self.next < self.lines.len() {
            let raw = self.take()?;
            let mut candidate = trim_newline(raw);
            if strip_tabs {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == name {
                return Ok(Some(content));
            }
            content.push_str(raw);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(source: &str) -> Vec<(usize, String)> {
        let mut reader = LineReader::new(source);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            out.push((line.start, line.text));
        }
        out
    }

    #[test]
    fn comments_and_empty_lines_are_dropped() {
        let lines = all("# hello\n\nFROM a\n   # indented\nRUN x\n");
        assert_eq!(lines, vec![(3, "FROM a".into()), (5, "RUN x".into())]);
    }

    #[test]
    fn continuation_concatenates_without_adding_space() {
        let lines = all("RUN a \\\n    b\\\nc\n");
        assert_eq!(lines, vec![(1, "RUN a     bc".into())]);
    }

    #[test]
    fn continuation_skips_comment_and_empty_lines() {
        let lines = all("RUN a \\\n# note\n\n   \n  && b\nRUN c\n");
        assert_eq!(lines, vec![(1, "RUN a   && b".into()), (6, "RUN c".into())]);
    }

    #[test]
    fn continuation_with_trailing_blanks_after_escape() {
        let lines = all("RUN a \\  \t\nb\n");
        assert_eq!(lines, vec![(1, "RUN a b".into())]);
    }

    #[test]
    fn escaped_escape_at_end_does_not_continue() {
        let lines = all("RUN echo a\\\\\nRUN b\n");
        assert_eq!(
            lines,
            vec![(1, "RUN echo a\\\\".into()), (2, "RUN b".into())]
        );
    }

    #[test]
    fn lone_escape_on_a_line_continues() {
        let lines = all("RUN a \\\n\\\nb\n");
        assert_eq!(lines, vec![(1, "RUN a b".into())]);
    }

    #[test]
    fn crlf_line_endings() {
        let lines = all("FROM a\r\nRUN b \\\r\n c\r\n");
        assert_eq!(lines, vec![(1, "FROM a".into()), (2, "RUN b  c".into())]);
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let lines = all("\u{feff}FROM a\n");
        assert_eq!(lines, vec![(1, "FROM a".into())]);
    }

    #[test]
    fn escape_directive_changes_continuation() {
        let mut reader = LineReader::new("# escape=`\nRUN a `\n b \\\nFROM c\n");
        let first = reader.next_line().unwrap().unwrap();
        assert_eq!(first.text, "RUN a  b \\");
        assert_eq!(reader.directives.escape, '`');
    }

    #[test]
    fn directive_after_comment_is_a_comment() {
        let mut reader = LineReader::new("# hello\n# escape=`\nRUN a `\n");
        assert_eq!(reader.next_line().unwrap().unwrap().text, "RUN a `");
        assert_eq!(reader.directives.escape, '\\');
    }

    #[test]
    fn directive_after_empty_line_is_a_comment() {
        let mut reader = LineReader::new("\n# escape=`\nRUN a\n");
        reader.next_line().unwrap();
        assert_eq!(reader.directives.escape, '\\');
    }

    #[test]
    fn directives_are_case_insensitive_and_spaced() {
        let mut reader = LineReader::new("#  ESCAPE = `\n# Syntax=docker/dockerfile:1\nFROM a\n");
        reader.next_line().unwrap();
        assert_eq!(reader.directives.escape, '`');
        assert_eq!(
            reader.directives.syntax.as_deref(),
            Some("docker/dockerfile:1")
        );
    }

    #[test]
    fn unknown_directive_ends_directives() {
        let mut reader = LineReader::new("# foo=bar\n# escape=`\nFROM a\n");
        reader.next_line().unwrap();
        assert_eq!(reader.directives.escape, '\\');
    }

    #[test]
    fn repeated_directive_is_refused_with_its_line() {
        let mut reader = LineReader::new("# escape=`\n# escape=\\\nFROM a\n");
        let err = reader.next_line().unwrap_err();
        assert_eq!(
            err,
            (
                2,
                "only one escape parser directive can be used".to_string()
            )
        );
    }

    #[test]
    fn bad_escape_token_is_refused() {
        let mut reader = LineReader::new("# escape=x\nFROM a\n");
        let err = reader.next_line().unwrap_err();
        assert_eq!(err.0, 1);
        assert!(err.1.contains("invalid escape token 'x'"), "{}", err.1);
    }

    #[test]
    fn overlong_line_is_refused() {
        let source = format!("FROM a\nRUN {}\n", "x".repeat(MAX_LINE));
        let mut reader = LineReader::new(&source);
        reader.next_line().unwrap();
        let err = reader.next_line().unwrap_err();
        assert_eq!(
            err,
            (
                2,
                "dockerfile line greater than max allowed size of 65535".to_string()
            )
        );
        let fits = format!("RUN {}\n", "x".repeat(MAX_LINE - 4));
        assert!(LineReader::new(&fits).next_line().is_ok());
    }

    #[test]
    fn heredoc_body_until_terminator() {
        let mut reader = LineReader::new("RUN <<EOF\necho a\n\techo b\nEOF\nRUN c\n");
        reader.next_line().unwrap();
        assert_eq!(
            reader.heredoc_body("EOF", false).unwrap().as_deref(),
            Some("echo a\n\techo b\n")
        );
        assert_eq!(reader.next_line().unwrap().unwrap().start, 5);
    }

    #[test]
    fn heredoc_terminator_with_tabs_only_for_dash_form() {
        let mut reader = LineReader::new("RUN <<-EOF\n\tx\n\tEOF\n");
        reader.next_line().unwrap();
        assert_eq!(
            reader.heredoc_body("EOF", true).unwrap().as_deref(),
            Some("\tx\n")
        );
        let mut reader = LineReader::new("RUN <<EOF\n\tx\n\tEOF\n");
        reader.next_line().unwrap();
        assert_eq!(reader.heredoc_body("EOF", false).unwrap(), None);
    }
}
