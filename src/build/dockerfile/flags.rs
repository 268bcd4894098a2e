//! Instruction flags (`--from=x`, `--link`, `--mount=...` repeated), checked as BuildKit's
//! BFlags checks them: each instruction declares the flags it takes; unknown, duplicated or
//! value-less flags are refused.
use super::error::Msg;
use super::suggest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    Bool,
    /// One value (`--from=x`); given twice is an error.
    String,
    /// Repeatable (`--mount=a --mount=b`).
    Strings,
    /// A flag of BuildKit's that berth does not implement: refused by name rather than
    /// ignored or called unknown.
    Unsupported,
}

/// The flags one instruction was given, parsed against what it accepts.
#[derive(Debug, Default)]
pub struct Flags {
    values: Vec<(String, Vec<String>)>,
}

impl Flags {
    /// Parses `given` (as split from the line) against `accepted`.
    pub fn parse(given: &[String], accepted: &[(&str, FlagKind)]) -> Result<Flags, Msg> {
        let mut flags = Flags::default();
        for arg in given {
            let Some(arg) = arg.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {arg}"));
            };
            if arg.is_empty() {
                break;
            }
            let (name, value) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (arg, None),
            };
            let Some(&(_, kind)) = accepted.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = accepted.iter().map(|(n, _)| *n).collect();
                return Err(suggest::wrap(
                    format!("unknown flag: --{name}"),
                    name,
                    &names,
                    true,
                ));
            };
            if kind == FlagKind::Unsupported {
                return Err(format!("flag --{name} is not supported by berth"));
            }
            let seen = flags.values.iter().position(|(n, _)| n == name);
            if seen.is_some() && kind != FlagKind::Strings {
                return Err(format!("duplicate flag specified: {name}"));
            }
            let stored = match kind {
                FlagKind::Bool => match value {
                    Some("") => return Err(format!("missing a value on flag: {name}")),
                    None => "true".to_string(),
                    Some(v) if v.eq_ignore_ascii_case("true") => "true".to_string(),
                    Some(v) if v.eq_ignore_ascii_case("false") => "false".to_string(),
                    Some(v) => {
                        return Err(format!("expecting boolean value for flag {name}, not: {v}"))
                    }
                },
                FlagKind::Unsupported => unreachable!("refused above"),
                FlagKind::String | FlagKind::Strings => match value {
                    Some(v) => v.to_string(),
                    None => return Err(format!("missing a value on flag: {name}")),
                },
            };
            match seen {
                Some(i) => flags.values[i].1.push(stored),
                None => flags.values.push((name.to_string(), vec![stored])),
            }
        }
        Ok(flags)
    }

    /// A string flag's value, if given.
    pub fn string(&self, name: &str) -> Option<String> {
        self.all(name).last().cloned()
    }

    /// Every value of a repeatable flag, in order.
    pub fn all(&self, name: &str) -> &[String] {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }

    /// A bool flag: given without value or `=true`.
    pub fn bool(&self, name: &str) -> bool {
        self.string(name).as_deref() == Some("true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPY: &[(&str, FlagKind)] = &[
        ("from", FlagKind::String),
        ("link", FlagKind::Bool),
        ("mount", FlagKind::Strings),
        ("parents", FlagKind::Unsupported),
    ];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_and_bools() {
        let flags = Flags::parse(&args(&["--from=a", "--link"]), COPY).unwrap();
        assert_eq!(flags.string("from").as_deref(), Some("a"));
        assert!(flags.bool("link"));
        let flags = Flags::parse(&args(&["--link=FALSE"]), COPY).unwrap();
        assert!(!flags.bool("link"));
    }

    #[test]
    fn empty_string_value_is_allowed() {
        let flags = Flags::parse(&args(&["--from="]), COPY).unwrap();
        assert_eq!(flags.string("from").as_deref(), Some(""));
    }

    #[test]
    fn repeatable_flag_keeps_all() {
        let flags = Flags::parse(&args(&["--mount=a", "--mount=b"]), COPY).unwrap();
        assert_eq!(flags.all("mount"), ["a", "b"]);
    }

    #[test]
    fn unknown_flag_with_suggestion() {
        let err = Flags::parse(&args(&["--frm=a"]), COPY).unwrap_err();
        assert_eq!(err, "unknown flag: --frm (did you mean from?)");
        let err = Flags::parse(&args(&["--zzzzzz"]), COPY).unwrap_err();
        assert_eq!(err, "unknown flag: --zzzzzz");
    }

    #[test]
    fn unsupported_flag_is_named() {
        assert_eq!(
            Flags::parse(&args(&["--parents"]), COPY).unwrap_err(),
            "flag --parents is not supported by berth"
        );
    }

    #[test]
    fn duplicate_and_missing_values() {
        assert_eq!(
            Flags::parse(&args(&["--from=a", "--from=b"]), COPY).unwrap_err(),
            "duplicate flag specified: from"
        );
        assert_eq!(
            Flags::parse(&args(&["--from"]), COPY).unwrap_err(),
            "missing a value on flag: from"
        );
        assert_eq!(
            Flags::parse(&args(&["--link="]), COPY).unwrap_err(),
            "missing a value on flag: link"
        );
        assert_eq!(
            Flags::parse(&args(&["--link=yes"]), COPY).unwrap_err(),
            "expecting boolean value for flag link, not: yes"
        );
    }
}
