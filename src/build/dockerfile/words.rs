//! Splitting one logical line as BuildKit's line parsers do: the instruction name, its
//! `--flags`, and the arguments as whitespace-separated words, quote-aware words (ENV, LABEL,
//! ARG) or a JSON array (exec form). Quotes and `$` stay in the words: the executor expands
//! them with the variables in scope.
use super::error::Msg;

/// BuildKit's `[\t\v\f\r ]+`.
fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits on runs of BuildKit's whitespace; `limit` pieces at most (the last keeps the rest).
pub fn split_whitespace(text: &str, limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while out.len() + 1 < limit {
        match rest.find(is_token_space) {
            Some(i) => {
                out.push(rest[..i].to_string());
                rest = rest[i..].trim_start_matches(is_token_space);
            }
            None => break,
        }
    }
    out.push(rest.to_string());
    out
}

/// A line split into its instruction name (as written), flags (`--name[=value]`, quotes
/// removed) and the rest (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitLine {
    pub command: String,
    pub flags: Vec<String>,
    pub rest: String,
}

pub fn split_command(line: &str) -> SplitLine {
    let parts = split_whitespace(line.trim(), 2);
    let command = parts[0].clone();
    let (rest, flags) = match parts.get(1) {
        Some(after) => extract_builder_flags(after),
        None => (String::new(), Vec::new()),
    };
    SplitLine {
        command,
        flags,
        rest: rest.trim().to_string(),
    }
}

/// Leading words that start with `--` are flags (until a bare `--` or another word); quotes
/// inside flags are removed and `\` escapes the next character, as BuildKit does.
fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut i = 0;
    loop {
        let current = chars.get(i).copied();
        if phase == Phase::Spaces {
            let Some((pos, ch)) = current else { break };
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            let next_is_dash = chars.get(i + 1).map(|c| c.1) == Some('-');
            if ch != '-' || !next_is_dash {
                return (line[pos..].to_string(), words);
            }
            phase = Phase::Word;
        }
        let Some((pos, ch)) = current else {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        };
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (line[pos..].to_string(), words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == '\\' {
                    if let Some(&(_, next)) = chars.get(i + 1) {
                        word.push(next);
                        i += 1;
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    match chars.get(i + 1) {
                        Some(&(_, next)) => {
                            word.push(next);
                            i += 1;
                        }
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Spaces => unreachable!("handled above"),
        }
        i += 1;
    }
    (String::new(), words)
}

/// Quote-aware words for ENV, LABEL and ARG: split on whitespace outside quotes, quotes and
/// escapes kept in the words (they are removed when the word is expanded).
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut i = 0;
    loop {
        if phase == Phase::Spaces {
            let Some(&ch) = chars.get(i) else { break };
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        let Some(&ch) = chars.get(i) else {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        };
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if i + 1 == chars.len() {
                        // An escape at the very end is dropped.
                        i += 1;
                        continue;
                    }
                    // Escape plus the next character, kept as written, even a quote.
                    word.push(ch);
                    i += 1;
                    word.push(chars[i]);
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                // No escaping inside single quotes.
                if ch == escape && quote != '\'' {
                    if i + 1 == chars.len() {
                        phase = Phase::Word;
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    word.push(chars[i]);
                } else {
                    word.push(ch);
                }
            }
            Phase::Spaces => unreachable!("handled above"),
        }
        i += 1;
    }
    words
}

/// Outcome of reading arguments as a JSON array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    /// A JSON array of strings (exec form).
    Array(Vec<String>),
    /// Not JSON (or not an array): the shell form applies.
    NotJson,
}

/// Reads `rest` as a JSON array of strings the way Go's `json.Decoder` does: the first value
/// only (text after it is ignored). An array holding a non-string is an error, not shell
/// form.
pub fn parse_json(rest: &str) -> Result<Json, Msg> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(Json::NotJson);
    }
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    let value = match stream.next() {
        Some(Ok(value)) => value,
        _ => return Ok(Json::NotJson),
    };
    let serde_json::Value::Array(items) = value else {
        return Ok(Json::NotJson);
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            serde_json::Value::String(s) => out.push(s),
            _ => {
                return Err(
                    "when using JSON array syntax, arrays must be comprised of strings only"
                        .to_string(),
                )
            }
        }
    }
    Ok(Json::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_command_name_flags_rest() {
        let split = split_command("  copy --from=build --chown=1:1   a b  ");
        assert_eq!(split.command, "copy");
        assert_eq!(split.flags, vec!["--from=build", "--chown=1:1"]);
        assert_eq!(split.rest, "a b");
    }

    #[test]
    fn flags_have_quotes_removed() {
        let split = split_command(r#"RUN --mount="type=cache,target=/a b" echo"#);
        assert_eq!(split.flags, vec!["--mount=type=cache,target=/a b"]);
        assert_eq!(split.rest, "echo");
    }

    #[test]
    fn double_dash_ends_flags() {
        let split = split_command("RUN --network=none -- --not-a-flag");
        assert_eq!(split.flags, vec!["--network=none"]);
        assert_eq!(split.rest, "--not-a-flag");
    }

    #[test]
    fn single_dash_word_is_an_argument() {
        let split = split_command("RUN -x --y");
        assert!(split.flags.is_empty());
        assert_eq!(split.rest, "-x --y");
    }

    #[test]
    fn only_flags() {
        let split = split_command("RUN --network=none");
        assert_eq!(split.flags, vec!["--network=none"]);
        assert_eq!(split.rest, "");
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"A="a b" B='c d' C=e\ f"#, '\\'),
            vec![r#"A="a b""#, "B='c d'", r"C=e\ f"]
        );
    }

    #[test]
    fn words_escape_in_double_quotes_not_single() {
        assert_eq!(
            parse_words(r#"A="x\" y" B='p\' q"#, '\\'),
            vec![r#"A="x\" y""#, r"B='p\'", "q"]
        );
    }

    #[test]
    fn words_empty_quotes_make_a_word() {
        assert_eq!(parse_words(r#"A="" """#, '\\'), vec![r#"A="""#, r#""""#]);
    }

    #[test]
    fn words_with_backtick_escape() {
        assert_eq!(parse_words("A=a` b C", '`'), vec!["A=a` b", "C"]);
    }

    #[test]
    fn whitespace_split_with_limit() {
        assert_eq!(split_whitespace("a  b\tc", 2), vec!["a", "b\tc"]);
        assert_eq!(split_whitespace("a  b\tc", usize::MAX), vec!["a", "b", "c"]);
    }

    #[test]
    fn json_array_of_strings() {
        assert_eq!(
            parse_json(r#"["a", "b c"]"#).unwrap(),
            Json::Array(vec!["a".into(), "b c".into()])
        );
    }

    #[test]
    fn json_trailing_text_is_ignored_like_go_decoder() {
        assert_eq!(
            parse_json(r#"["a"] trailing"#).unwrap(),
            Json::Array(vec!["a".into()])
        );
    }

    #[test]
    fn invalid_json_is_shell_form() {
        assert_eq!(parse_json("[a, b]").unwrap(), Json::NotJson);
        assert_eq!(parse_json("['a']").unwrap(), Json::NotJson);
        assert_eq!(parse_json("echo [1]").unwrap(), Json::NotJson);
    }

    #[test]
    fn json_with_non_string_is_an_error() {
        let err = parse_json(r#"["a", 1]"#).unwrap_err();
        assert!(err.contains("must be comprised of strings only"));
    }
}
