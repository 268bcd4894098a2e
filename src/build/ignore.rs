//! `.dockerignore`: which context paths COPY and ADD may see, with moby's patternmatcher
//! semantics.
//!
//! API:
//! - [`Matcher::parse`] reads a `.dockerignore` text (`# comments`, blank lines, `!` exceptions,
//!   a leading `/` or `./` cleaned away, Go's `filepath.Match` syntax plus `**`).
//! - [`Matcher::excludes`] tells whether a context path (relative, `/`-separated) is excluded:
//!   every pattern is tried in order against the path and its parent directories, and the
//!   last one that matches decides (`!` re-includes).
//! - [`Matcher::may_include_below`] tells whether an excluded directory may still hold
//!   re-included paths, so that a walk can skip it otherwise.
//!
//! Patterns work as moby compiles them to regular expressions: `*` is any run of characters
//! but `/`, `?` one such character, `[...]` a class, `\x` the character x, `**` any number of
//! directories (`**/` even none; a trailing `**` anything).

use anyhow::{bail, Result};

/// One token of a compiled pattern.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Lit(char),
    /// `?`: one character but `/`.
    One,
    /// `*`: any run of characters but `/`.
    Star,
    /// `**` (and `**/`) inside a pattern: empty, or anything ending in `/`.
    DirsOrNone,
    /// `**` at the end: anything at all.
    All,
    /// `[...]`: (negated, ranges).
    Class(bool, Vec<(char, char)>),
}

/// How a pattern is tested, as moby decides it while compiling.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// The path equals the pattern.
    Exact,
    /// `foo/**`: the path starts with `foo/`.
    Prefix,
    /// `**/foo`: the path ends with `/foo`, or is `foo`.
    Suffix,
    Tokens,
}

/// One line of a `.dockerignore`.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// The cleaned pattern, `!` removed.
    text: String,
    exception: bool,
    kind: Kind,
    toks: Vec<Tok>,
    /// The literal characters, escapes resolved (what Exact, Prefix and Suffix compare).
    literal: String,
    /// A Suffix pattern's `**` was followed by `/`.
    suffix_slash: bool,
}

/// The patterns of one `.dockerignore`, in order.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

/// Go's `filepath.Clean` on a `/`-separated path.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

impl Matcher {
    /// Reads a `.dockerignore` as BuildKit's frontend does; `name` is used in errors.
    pub fn parse(name: &str, text: &str) -> Result<Matcher> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
            }
            let mut cleaned = String::new();
            if !pattern.is_empty() {
                cleaned = clean(pattern);
                if cleaned.len() > 1 && cleaned.starts_with('/') {
                    cleaned.remove(0);
                }
            }
            lines.push((n + 1, exception, cleaned));
        }
        let mut patterns = Vec::new();
        for (line, exception, text) in lines {
            if text.is_empty() {
                bail!("{name}:{line}: illegal exclusion pattern: \"!\"");
            }
            let text = clean(&text);
            match Pattern::compile(&text, exception) {
                Ok(p) => patterns.push(p),
                Err(e) => bail!("{name}:{line}: {e}: {text:?}"),
            }
        }
        Ok(Matcher { patterns })
    }

    /// A matcher from patterns already cleaned (`!` prefixes allowed), as tests write them.
    pub fn from_patterns(patterns: &[&str]) -> Result<Matcher> {
        Matcher::parse("patterns", &patterns.join("\n"))
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when `path` (relative to the context, `/`-separated, no `./`) is excluded: moby's
    /// `MatchesOrParentMatches`.
    pub fn excludes(&self, path: &str) -> bool {
        let parent = match path.rfind('/') {
            Some(i) => &path[..i],
            None => ".",
        };
        let mut excluded = false;
        for p in &self.patterns {
            // An exclusion cannot change an excluded path, nor an exception an included one.
            if p.exception != excluded {
                continue;
            }
            let mut hit = p.matches(path);
            if !hit && parent != "." {
                hit = parent
                    .match_indices('/')
                    .map(|(i, _)| &parent[..i])
                    .chain(std::iter::once(parent))
                    .any(|prefix| p.matches(prefix));
            }
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// True when an exception pattern could match something below the directory `dir`: an
    /// excluded directory must then still be walked.
    pub fn may_include_below(&self, dir: &str) -> bool {
        let dir_parts: Vec<&str> = dir.split('/').collect();
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| p.may_match_below(&dir_parts))
    }
}

impl Pattern {
    fn compile(text: &str, exception: bool) -> Result<Pattern> {
        Pattern::compile_with(text, exception, true)
    }

    /// `double_star` false: `**` is two `*`, as in Go's `filepath.Match`.
    fn compile_with(text: &str, exception: bool, double_star: bool) -> Result<Pattern> {
        let chars: Vec<char> = text.chars().collect();
        let mut toks = Vec::new();
        let mut kind = Kind::Exact;
        let mut suffix_slash = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' if double_star && chars.get(i + 1) == Some(&'*') => {
                    let start = i;
                    i += 2;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                        suffix_slash |= start == 0;
                    }
                    if i == chars.len() {
                        if kind == Kind::Exact {
                            kind = Kind::Prefix;
                        } else {
                            kind = Kind::Tokens;
                        }
                        toks.push(Tok::All);
                    } else {
                        toks.push(Tok::DirsOrNone);
                        kind = Kind::Tokens;
                    }
                    if start == 0 {
                        kind = Kind::Suffix;
                    }
                    continue;
                }
                '*' => {
                    toks.push(Tok::Star);
                    kind = Kind::Tokens;
                }
                '?' => {
                    toks.push(Tok::One);
                    kind = Kind::Tokens;
                }
                '\\' => {
                    i += 1;
                    match chars.get(i) {
                        Some(&e) => toks.push(Tok::Lit(e)),
                        None => bail!("syntax error in pattern (a trailing backslash)"),
                    }
                }
                '[' => {
                    let (class, next) = parse_class(&chars, i + 1)?;
                    toks.push(class);
                    kind = Kind::Tokens;
                    i = next;
                    continue;
                }
                c => toks.push(Tok::Lit(c)),
            }
            i += 1;
        }
        let literal = toks
            .iter()
            .filter_map(|t| match t {
                Tok::Lit(c) => Some(*c),
                _ => None,
            })
            .collect();
        Ok(Pattern {
            text: text.to_string(),
            exception,
            kind,
            toks,
            literal,
            suffix_slash,
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self.kind {
            Kind::Exact => path == self.literal,
            Kind::Prefix => path.starts_with(&self.literal),
            Kind::Suffix => {
                if self.suffix_slash {
                    path == self.literal
                        || (path.ends_with(&self.literal)
                            && path[..path.len() - self.literal.len()].ends_with('/'))
                } else {
                    path.ends_with(&self.literal)
                }
            }
            Kind::Tokens => {
                let chars: Vec<char> = path.chars().collect();
                match_toks(&self.toks, &chars)
            }
        }
    }

    /// Component by component against the directory: a `**` may match anything below, and a
    /// pattern longer than the directory whose leading components match could match a child.
    fn may_match_below(&self, dir: &[&str]) -> bool {
        let parts: Vec<&str> = self.text.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if part.contains("**") {
                return true;
            }
            let Some(d) = dir.get(i) else {
                return true;
            };
            let Ok(component) = Pattern::compile(part, false) else {
                return true;
            };
            if !component.matches(d) {
                return false;
            }
        }
        // The pattern names the directory itself or one of its parents.
        true
    }
}

/// Parses a class after its `[`; returns the token and the index after its `]`. As Go's
/// `filepath.Match` requires: `^` negates, at least one range, `\` escapes, `-` and `]` may
/// not start a range.
fn parse_class(chars: &[char], mut i: usize) -> Result<(Tok, usize)> {
    let bad = || anyhow::anyhow!("syntax error in pattern");
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match chars.get(i) {
            None => return Err(bad()),
            Some(']') if !ranges.is_empty() => return Ok((Tok::Class(negated, ranges), i + 1)),
            _ => {}
        }
        let one = |i: &mut usize| -> Result<char> {
            let c = *chars.get(*i).ok_or_else(bad)?;
            if c == '-' || c == ']' {
                return Err(bad());
            }
            if c == '\\' {
                *i += 1;
                let e = *chars.get(*i).ok_or_else(bad)?;
                *i += 1;
                return Ok(e);
            }
            *i += 1;
            Ok(c)
        };
        let lo = one(&mut i)?;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            i += 1;
            hi = one(&mut i)?;
        }
        ranges.push((lo, hi));
    }
}

/// Backtracking match of the whole of `s` against `toks`.
fn match_toks(toks: &[Tok], s: &[char]) -> bool {
    let Some((first, rest)) = toks.split_first() else {
        return s.is_empty();
    };
    match first {
        Tok::Lit(c) => s.first() == Some(c) && match_toks(rest, &s[1..]),
        Tok::One => s.first().is_some_and(|c| *c != '/') && match_toks(rest, &s[1..]),
        Tok::Class(negated, ranges) => {
            s.first()
                .is_some_and(|c| ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated)
                && match_toks(rest, &s[1..])
        }
        Tok::Star => {
            let run = s.iter().take_while(|c| **c != '/').count();
            (0..=run).any(|n| match_toks(rest, &s[n..]))
        }
        Tok::All => true,
        Tok::DirsOrNone => {
            match_toks(rest, s)
                || (0..s.len())
                    .filter(|i| s[*i] == '/')
                    .any(|i| match_toks(rest, &s[i + 1..]))
        }
    }
}

/// Go's `filepath.Match` of one path component (used for COPY's globs): `*`, `?`, `[...]`,
/// `\` escapes; `/` never matched by a wildcard.
pub fn glob_component_matches(pattern: &str, name: &str) -> Result<bool> {
    let p = Pattern::compile_with(pattern, false, false)?;
    let chars: Vec<char> = name.chars().collect();
    Ok(match_toks(&p.toks, &chars))
}

/// True when the text holds a glob metacharacter Go's `filepath.Match` acts on.
pub fn has_glob(text: &str) -> bool {
    text.contains(['*', '?', '[', '\\'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &[&str]) -> Matcher {
        Matcher::from_patterns(p).unwrap()
    }

    #[test]
    fn cleaning_is_go_filepath_clean() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean("."), ".");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn plain_names_exclude_themselves_and_what_they_hold() {
        let ig = m(&["node_modules", "/build", "./tmp/"]);
        assert!(ig.excludes("node_modules"));
        assert!(ig.excludes("node_modules/x/y.js"));
        assert!(!ig.excludes("src/node_modules"), "anchored at the context");
        assert!(ig.excludes("build/out"));
        assert!(ig.excludes("tmp"));
        assert!(!ig.excludes("tmpx"));
    }

    #[test]
    fn stars_stay_in_one_component() {
        let ig = m(&["*.log", "docs/*.md"]);
        assert!(ig.excludes("a.log"));
        assert!(!ig.excludes("sub/a.log"), "* does not cross /");
        assert!(ig.excludes("docs/x.md"));
        assert!(!ig.excludes("docs/sub/x.md"));
        assert!(
            ig.excludes("docs/x.md/inner"),
            "a matched parent excludes its children"
        );
    }

    #[test]
    fn double_star_crosses_directories() {
        let ig = m(&["**/*.log", "cache/**", "**/secret"]);
        assert!(ig.excludes("a.log"));
        assert!(ig.excludes("x/y/z.log"));
        assert!(ig.excludes("cache/a/b"));
        assert!(!ig.excludes("cache"), "cache/** is everything below cache");
        assert!(ig.excludes("secret"));
        assert!(ig.excludes("deep/in/secret"));
        assert!(!ig.excludes("notsecret"));
        let mid = m(&["a/**/b"]);
        assert!(mid.excludes("a/b"));
        assert!(mid.excludes("a/x/y/b"));
        assert!(!mid.excludes("a/xb"));
    }

    #[test]
    fn exceptions_and_order() {
        let ig = m(&["*.md", "!README.md", "README-secret.md"]);
        assert!(ig.excludes("CHANGES.md"));
        assert!(!ig.excludes("README.md"));
        assert!(ig.excludes("README-secret.md"));
        // A later exclusion wins over an earlier exception.
        let ig = m(&["!keep", "*"]);
        assert!(ig.excludes("keep"));
        // Re-included child of an excluded directory, and the walk must enter it.
        let ig = m(&["dir", "!dir/keep.txt"]);
        assert!(ig.excludes("dir"));
        assert!(ig.excludes("dir/other"));
        assert!(!ig.excludes("dir/keep.txt"));
        assert!(ig.may_include_below("dir"));
        assert!(!ig.may_include_below("other"));
        assert!(m(&["*", "!**/*.c"]).may_include_below("any/where"));
    }

    #[test]
    fn classes_escapes_and_errors() {
        let ig = m(&["[a-c]?.txt", "x[^0-9]", "lit\\*"]);
        assert!(ig.excludes("b1.txt"));
        assert!(!ig.excludes("d1.txt"));
        assert!(ig.excludes("xa"));
        assert!(!ig.excludes("x5"));
        assert!(ig.excludes("lit*"));
        assert!(!ig.excludes("litx"));
        let e = Matcher::parse(".dockerignore", "ok\n[unclosed").unwrap_err();
        assert_eq!(
            e.to_string(),
            ".dockerignore:2: syntax error in pattern: \"[unclosed\""
        );
        let e = Matcher::parse(".dockerignore", "#c\n!\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            ".dockerignore:2: illegal exclusion pattern: \"!\""
        );
    }

    #[test]
    fn comments_blank_lines_and_bom() {
        let ig = Matcher::parse("i", "\u{feff}# a comment\n\n  a  \n #notacomment\n").unwrap();
        assert!(ig.excludes("a"));
        assert!(ig.excludes("#notacomment"));
        assert!(!ig.excludes("# a comment"));
    }

    /// Cases from moby's patternmatcher table (one pattern each, `MatchesOrParentMatches`).
    #[test]
    fn moby_pattern_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**/", "file", true),
            ("**", "dir/file", true),
            ("**/**", "dir/file", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/dir2/file", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(m(&[pattern]).excludes(path), *want, "{pattern:?} {path:?}");
        }
    }

    #[test]
    fn glob_components() {
        assert!(glob_component_matches("*.txt", "a.txt").unwrap());
        assert!(!glob_component_matches("*.txt", "a.txz").unwrap());
        assert!(glob_component_matches("f?[0-9]", "fa7").unwrap());
        assert!(glob_component_matches("a\\*", "a*").unwrap());
        assert!(!glob_component_matches("a\\*", "ab").unwrap());
        assert!(glob_component_matches("[", "x").is_err());
    }
}
