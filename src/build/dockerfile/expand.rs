//! BuildKit's word processing (its "shell lexer"): quotes removed, escapes applied, `$V`,
//! `${V}` and the `${V:-x}` family substituted from the variables in scope, and, for the
//! instructions that take several words, the result split into words as BuildKit splits them
//! (a substituted value splits on whitespace, a quoted one does not).
use anyhow::{anyhow, Result};

use super::ast::Heredoc;

/// Looks a variable up: `None` when it is not set (unset and empty differ for `${V-x}`).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands one word (ENV values, WORKDIR, USER, COPY sources one by one, ...).
pub fn expand_word(word: &str, escape: char, lookup: Lookup) -> Result<String> {
    Lexer::new(escape)
        .process(word, lookup)
        .map(|(word, _)| word)
        .map_err(|e| anyhow!(e))
}

/// Expands and splits into words (EXPOSE, VOLUME and such in shell form).
pub fn expand_words(word: &str, escape: char, lookup: Lookup) -> Result<Vec<String>> {
    Lexer::new(escape)
        .process(word, lookup)
        .map(|(_, words)| words)
        .map_err(|e| anyhow!(e))
}

/// A heredoc body expanded as BuildKit expands COPY/ADD heredocs: variables substituted and
/// `\` escapes applied, quotes left alone (they belong to the file, not to the Dockerfile).
pub fn expand_heredoc_body(body: &str, lookup: Lookup) -> Result<String> {
    let lexer = Lexer {
        skip_process_quotes: true,
        ..Lexer::new('\\')
    };
    lexer
        .process(body, lookup)
        .map(|(word, _)| word)
        .map_err(|e| anyhow!(e))
}

/// Removes the leading tabs of every line (`<<-EOF`).
pub fn chomp_heredoc(body: &str) -> String {
    body.split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// A heredoc's file content as the executor writes it for COPY/ADD: tabs chomped for `<<-`,
/// then variables expanded unless the delimiter was quoted.
pub fn heredoc_content(heredoc: &Heredoc, lookup: Lookup) -> Result<String> {
    let body = if heredoc.strip_tabs {
        chomp_heredoc(&heredoc.content)
    } else {
        heredoc.content.clone()
    };
    if heredoc.expand {
        expand_heredoc_body(&body, lookup)
    } else {
        Ok(body)
    }
}

/// The shell lexer with BuildKit's switches (the parser uses the raw ones to find heredocs).
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the result.
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_process_quotes: false,
        }
    }

    /// The processed word and its split into words; errors worded as BuildKit's.
    pub fn process(&self, word: &str, lookup: Lookup) -> Result<(String, Vec<String>), String> {
        let mut state = State {
            lexer: *self,
            chars: word.chars().collect(),
            pos: 0,
            lookup,
        };
        state
            .process_stop_on(None, false)
            .map_err(|e| format!("failed to process {word:?}: {e}"))
    }
}

struct State<'a> {
    lexer: Lexer,
    chars: Vec<char>,
    pos: usize,
    lookup: Lookup<'a>,
}

/// Word splitting as BuildKit accumulates it.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, text: &str) {
        for ch in text.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

impl State<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let value = self.process_dollar()?;
                result.push_str(&value);
                words.add_string(&value);
                continue;
            }
            if (ch == '\'' || ch == '"') && !self.lexer.skip_process_quotes {
                let value = if ch == '\'' {
                    self.process_single_quote()?
                } else {
                    self.process_double_quote()?
                };
                result.push_str(&value);
                words.add_raw_string(&value);
                continue;
            }
            let mut ch = self.next().unwrap_or_default();
            if ch == self.lexer.escape {
                if self.lexer.raw_escapes || raw_escapes {
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                match self.next() {
                    // An escape at the very end is dropped.
                    None => break,
                    Some(escaped) => ch = escaped,
                }
                words.add_raw_char(ch);
            } else {
                words.add_char(ch);
            }
            result.push(ch);
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next().unwrap_or('\'');
        if self.lexer.raw_quotes {
            result.push(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    )
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next().unwrap_or('"');
        if self.lexer.raw_quotes {
            result.push(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lexer.escape {
                        if self.lexer.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // A trailing escape is dropped (the missing quote errors next).
                            None => continue,
                            // Only these can be escaped inside double quotes.
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                ch = next;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err("syntax error: missing '}'".to_string());
        };
        let mut modifier = ch.to_string();
        let mut null_is_unset = false;
        match ch {
            '}' => {
                return Ok(match self.lookup(&name) {
                    Some(value) => value,
                    None if self.lexer.skip_unset => format!("${{{name}}}"),
                    None => String::new(),
                })
            }
            ':' => {
                null_is_unset = true;
                let Some(next) = self.next() else {
                    return Err("syntax error: missing '}'".to_string());
                };
                ch = next;
                modifier.push(ch);
            }
            _ => {}
        }
        match ch {
            '+' | '-' | '?' | '#' | '%' => {
                let pattern = ch == '#' || ch == '%';
                if null_is_unset && pattern {
                    return Err(format!("unsupported modifier ({modifier}) in substitution"));
                }
                let word = self.braced_word(pattern)?;
                let value = self.lookup(&name);
                if self.lexer.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let missing = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match ch {
                    '-' => Ok(if missing {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if missing { String::new() } else { word }),
                    '?' => {
                        if value.is_none() {
                            let message = if word.is_empty() {
                                "is not allowed to be unset".to_string()
                            } else {
                                word
                            };
                            return Err(format!("{name}: {message}"));
                        }
                        if missing {
                            let message = if word.is_empty() {
                                "is not allowed to be empty".to_string()
                            } else {
                                word
                            };
                            return Err(format!("{name}: {message}"));
                        }
                        Ok(value.unwrap_or_default())
                    }
                    _ => {
                        let value = value.unwrap_or_default();
                        let (longest, pattern) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest.to_string()),
                            None => (false, word),
                        };
                        let pattern = Pattern::new(&pattern);
                        Ok(if ch == '#' {
                            pattern.remove_prefix(&value, longest)
                        } else {
                            pattern.remove_suffix(&value, longest)
                        })
                    }
                }
            }
            '/' if !null_is_unset => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pattern, _) = self.process_stop_on(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '/' in ${}".to_string()
                    } else {
                        e
                    }
                })?;
                let replacement = self.braced_word(true)?;
                let value = self.lookup(&name);
                if self.lexer.skip_unset && value.is_none() {
                    let slashes = if all { "//" } else { "/" };
                    return Ok(format!("${{{name}{slashes}{pattern}/{replacement}}}"));
                }
                let pattern = Pattern::new(&pattern);
                Ok(pattern.replace(&value.unwrap_or_default(), &replacement, all))
            }
            _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
        }
    }

    /// The word up to the closing brace of `${name<op>word}`.
    fn braced_word(&mut self, raw_escapes: bool) -> Result<String, String> {
        match self.process_stop_on(Some('}'), raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err("syntax error: missing '}'".to_string()),
            Err(e) => Err(e),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(digit) = self.peek().filter(|c| c.is_ascii_digit()) {
                    name.push(digit);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// A shell pattern for `${V#p}`, `${V%p}` and `${V/p/r}`: BuildKit's patterns know `*` and `?`
/// only (no bracket expressions), and `\` makes the next character literal.
struct Pattern {
    items: Vec<PatternItem>,
}

enum PatternItem {
    Literal(char),
    Any,
    Star,
}

impl Pattern {
    fn new(text: &str) -> Pattern {
        let mut items = Vec::new();
        let mut chars = text.chars();
        while let Some(ch) = chars.next() {
            items.push(match ch {
                '\\' => PatternItem::Literal(chars.next().unwrap_or('\\')),
                '*' => PatternItem::Star,
                '?' => PatternItem::Any,
                other => PatternItem::Literal(other),
            });
        }
        Pattern { items }
    }

    /// Every `end` at which the pattern matches `text[..end]`, ascending: one pass over the
    /// text tracking the pattern positions reachable so far (O(text × pattern), whatever a
    /// hostile pattern holds).
    fn prefix_match_ends(&self, text: &[char]) -> Vec<usize> {
        let items = &self.items;
        let count = items.len();
        // A `*` may match nothing: reaching it reaches what follows it.
        let close = |states: &mut [bool]| {
            for i in 0..count {
                if states[i] && matches!(items[i], PatternItem::Star) {
                    states[i + 1] = true;
                }
            }
        };
        let mut states = vec![false; count + 1];
        states[0] = true;
        close(&mut states);
        let mut ends = Vec::new();
        if states[count] {
            ends.push(0);
        }
        for (at, ch) in text.iter().enumerate() {
            let mut next = vec![false; count + 1];
            for i in (0..count).filter(|&i| states[i]) {
                match &items[i] {
                    PatternItem::Star => next[i] = true,
                    PatternItem::Any => next[i + 1] = true,
                    PatternItem::Literal(c) if c == ch => next[i + 1] = true,
                    PatternItem::Literal(_) => {}
                }
            }
            close(&mut next);
            if !next.contains(&true) {
                break;
            }
            states = next;
            if states[count] {
                ends.push(at + 1);
            }
        }
        ends
    }

    fn reversed(&self) -> Pattern {
        let items = self
            .items
            .iter()
            .rev()
            .map(|item| match item {
                PatternItem::Literal(c) => PatternItem::Literal(*c),
                PatternItem::Any => PatternItem::Any,
                PatternItem::Star => PatternItem::Star,
            })
            .collect();
        Pattern { items }
    }

    fn remove_prefix(&self, value: &str, longest: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let ends = self.prefix_match_ends(&chars);
        let end = if longest { ends.last() } else { ends.first() };
        match end {
            Some(&end) => chars[end..].iter().collect(),
            None => value.to_string(),
        }
    }

    /// A suffix match is a prefix match of the reversed pattern on the reversed text.
    fn remove_suffix(&self, value: &str, longest: bool) -> String {
        let mut chars: Vec<char> = value.chars().collect();
        chars.reverse();
        let lengths = self.reversed().prefix_match_ends(&chars);
        let length = if longest {
            lengths.last()
        } else {
            lengths.first()
        };
        chars.reverse();
        match length {
            Some(&length) => chars[..chars.len() - length].iter().collect(),
            None => value.to_string(),
        }
    }

    /// Replaces the leftmost longest non-empty match (every non-overlapping one with `all`).
    fn replace(&self, value: &str, replacement: &str, all: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut start = 0;
        let mut replaced = false;
        while (all || !replaced) && start < chars.len() {
            match self.prefix_match_ends(&chars[start..]).last() {
                Some(&length) if length > 0 => {
                    out.push_str(replacement);
                    start += length;
                    replaced = true;
                }
                _ => {
                    out.push(chars[start]);
                    start += 1;
                }
            }
        }
        out.extend(&chars[start..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn word(text: &str, vars: &[(&str, &str)]) -> String {
        let vars = env(vars);
        expand_word(text, '\\', &|name| vars.get(name).cloned()).unwrap()
    }

    fn words(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
        let vars = env(vars);
        expand_words(text, '\\', &|name| vars.get(name).cloned()).unwrap()
    }

    fn error(text: &str, vars: &[(&str, &str)]) -> String {
        let vars = env(vars);
        expand_word(text, '\\', &|name| vars.get(name).cloned())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn plain_and_braced_variables() {
        let vars = [("A", "x"), ("B_2", "y")];
        assert_eq!(word("$A-${B_2}.$A$A", &vars), "x-y.xx");
        assert_eq!(word("$UNSET|${UNSET}|", &vars), "||");
        assert_eq!(word("a$", &vars), "a$");
        assert_eq!(word("$/x", &vars), "$/x");
    }

    #[test]
    fn quotes_are_removed() {
        let vars = [("A", "x")];
        assert_eq!(word(r#""a b" 'c $A' "$A""#, &vars), "a b c $A x");
        assert_eq!(
            word(r#"it's"#.replace('\'', "\"'\"").as_str(), &vars),
            "it's"
        );
    }

    #[test]
    fn escapes() {
        let vars = [("A", "x")];
        assert_eq!(word(r"\$A", &vars), "$A");
        assert_eq!(word(r"a\ b", &vars), "a b");
        assert_eq!(word(r#""\$A \"q\" \a""#, &vars), r#"$A "q" \a"#);
        assert_eq!(word(r"'\n'", &vars), r"\n");
        assert_eq!(word("end\\", &vars), "end");
    }

    #[test]
    fn backtick_escape() {
        let vars = env(&[("A", "x")]);
        let lookup = |name: &str| vars.get(name).cloned();
        assert_eq!(
            expand_word(r"`$A C:\dir", '`', &lookup).unwrap(),
            r"$A C:\dir"
        );
    }

    #[test]
    fn default_and_alternative_with_colon() {
        let vars = [("SET", "v"), ("EMPTY", "")];
        assert_eq!(word("${SET:-d}", &vars), "v");
        assert_eq!(word("${EMPTY:-d}", &vars), "d");
        assert_eq!(word("${UNSET:-d}", &vars), "d");
        assert_eq!(word("${SET:+alt}", &vars), "alt");
        assert_eq!(word("${EMPTY:+alt}", &vars), "");
        assert_eq!(word("${UNSET:+alt}", &vars), "");
    }

    #[test]
    fn default_and_alternative_without_colon() {
        let vars = [("SET", "v"), ("EMPTY", "")];
        assert_eq!(word("${EMPTY-d}", &vars), "");
        assert_eq!(word("${UNSET-d}", &vars), "d");
        assert_eq!(word("${EMPTY+alt}", &vars), "alt");
        assert_eq!(word("${UNSET+alt}", &vars), "");
    }

    #[test]
    fn nested_substitution_in_default() {
        let vars = [("B", "b")];
        assert_eq!(word("${A:-${B}-x}", &vars), "b-x");
        assert_eq!(word("${A:-'q }'}", &vars), "q }");
    }

    #[test]
    fn required_variables() {
        let vars = [("EMPTY", "")];
        assert_eq!(
            error("${V:?need V}", &vars),
            r#"failed to process "${V:?need V}": V: need V"#
        );
        assert_eq!(
            error("${EMPTY:?}", &vars),
            r#"failed to process "${EMPTY:?}": EMPTY: is not allowed to be empty"#
        );
        assert_eq!(
            error("${V?}", &vars),
            r#"failed to process "${V?}": V: is not allowed to be unset"#
        );
        assert_eq!(word("${EMPTY?}", &vars), "");
    }

    #[test]
    fn pattern_removal() {
        let vars = [("F", "archive.tar.gz"), ("P", "/usr/local/bin")];
        assert_eq!(word("${F%.*}", &vars), "archive.tar");
        assert_eq!(word("${F%%.*}", &vars), "archive");
        assert_eq!(word("${F#*.}", &vars), "tar.gz");
        assert_eq!(word("${F##*.}", &vars), "gz");
        assert_eq!(word("${P#/usr}", &vars), "/local/bin");
        assert_eq!(word("${P%/?in}", &vars), "/usr/local");
        // No bracket expressions: `[` is literal.
        assert_eq!(word("${P%/[b]in}", &vars), "/usr/local/bin");
        assert_eq!(word(r"${F%\.gz}", &vars), "archive.tar");
        assert_eq!(word("${F#nomatch}", &vars), "archive.tar.gz");
    }

    #[test]
    fn hostile_pattern_stays_fast() {
        let long = "a".repeat(800);
        let vars = [("V", long.as_str())];
        let started = std::time::Instant::now();
        assert_eq!(word("${V%%*a*a*a*a*a*a*a*a*b}", &vars), long);
        assert_eq!(word("${V##*a*a*a*a*a*a*a*a*b}", &vars), long);
        assert_eq!(word("${V//*a*a*a*a*c/x}", &vars), long);
        assert_eq!(word("${V#*a*a}", &vars), long[2..]);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn replacement() {
        let vars = [("V", "a-b-c")];
        assert_eq!(word("${V/-/_}", &vars), "a_b-c");
        assert_eq!(word("${V//-/_}", &vars), "a_b_c");
        assert_eq!(word("${V/x/_}", &vars), "a-b-c");
        assert_eq!(word("${V/b*/_}", &vars), "a-_");
        assert_eq!(word("${V//?/.}", &vars), ".....");
        assert_eq!(word("${V/#/x}", &vars), "a-b-c");
    }

    #[test]
    fn syntax_errors() {
        assert!(error("${", &[]).contains("syntax error: missing '}'"));
        assert!(error("${}", &[]).contains("bad substitution"));
        assert!(error("${:x}", &[]).contains("bad substitution"));
        assert!(error("${A:-x", &[]).contains("missing '}'"));
        assert!(error("${A!x}", &[]).contains("unsupported modifier (!) in substitution"));
        assert!(error("${A:#x}", &[]).contains("unsupported modifier (:#)"));
        assert!(error("'open", &[]).contains("matching single-quote"));
        assert!(error("\"open", &[]).contains("matching double-quote"));
    }

    #[test]
    fn special_and_positional_parameters_are_variables() {
        let vars = [("1", "one")];
        assert_eq!(word("$1$2x", &vars), "onex");
        assert_eq!(word("a$@b", &vars), "ab");
    }

    #[test]
    fn words_split_on_unquoted_space_and_substitution() {
        let vars = [("L", "a  b"), ("E", "")];
        assert_eq!(words("x $L y", &vars), ["x", "a", "b", "y"]);
        assert_eq!(words(r#"x "$L" y"#, &vars), ["x", "a  b", "y"]);
        assert_eq!(words(r"a\ b c", &vars), ["a b", "c"]);
        assert_eq!(words("$E x", &vars), ["x"]);
        assert_eq!(words(r#""" x"#, &vars), ["x"]);
        assert_eq!(words("80/tcp  443", &vars), ["80/tcp", "443"]);
    }

    #[test]
    fn heredoc_body_keeps_quotes_and_substitutes() {
        let vars = env(&[("NAME", "world")]);
        let lookup = |name: &str| vars.get(name).cloned();
        assert_eq!(
            expand_heredoc_body("echo \"hi $NAME\" '$NAME' \\$NAME\n", &lookup).unwrap(),
            "echo \"hi world\" 'world' $NAME\n"
        );
    }

    #[test]
    fn heredoc_body_backslashes_are_not_posix() {
        // BuildKit drops every backslash of an expanded COPY heredoc, even in quotes.
        assert_eq!(
            expand_heredoc_body("printf \"a\\nb\"\n", &|_| None).unwrap(),
            "printf \"anb\"\n"
        );
    }

    #[test]
    fn heredoc_content_chomps_and_expands_on_request() {
        let vars = env(&[("V", "1")]);
        let lookup = |name: &str| vars.get(name).cloned();
        let mut heredoc = Heredoc {
            name: "EOF".into(),
            content: "\t\ta=$V\n\tb\n".into(),
            expand: true,
            strip_tabs: true,
        };
        assert_eq!(heredoc_content(&heredoc, &lookup).unwrap(), "a=1\nb\n");
        heredoc.expand = false;
        heredoc.strip_tabs = false;
        assert_eq!(
            heredoc_content(&heredoc, &lookup).unwrap(),
            "\t\ta=$V\n\tb\n"
        );
    }

    #[test]
    fn skip_unset_keeps_references() {
        let lexer = Lexer {
            skip_unset: true,
            ..Lexer::new('\\')
        };
        let (out, _) = lexer.process("$A ${B} ${C:-x}", &|_| None).unwrap();
        assert_eq!(out, "$A ${B} ${C:-x}");
    }
}
