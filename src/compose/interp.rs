//! Compose's interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+replacement}`, `${VAR+replacement}` and `$$` for a
//! literal `$`, in every string value of the file; and the `.env` file the variables come from.

use anyhow::{bail, Context, Result};
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The variables interpolation sees: the process's environment over the `.env` file's.
#[derive(Debug, Clone, Default)]
pub struct Vars(pub BTreeMap<String, String>);

impl Vars {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
}

/// Reads an env file (`KEY=VALUE` lines, `#` comments, optional `export `, single or double
/// quotes around the value).
pub fn parse_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("env file {}", path.display()))?;
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            // A bare name takes its value from the environment, when it has one.
            if let Ok(v) = std::env::var(line) {
                out.insert(line.to_string(), v);
            }
            continue;
        };
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            bail!("{}:{}: invalid variable name {k:?}", path.display(), n + 1);
        }
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            let inner = &v[1..v.len() - 1];
            if v.starts_with('"') {
                inner.replace("\\n", "\n").replace("\\\"", "\"")
            } else {
                inner.to_string()
            }
        } else {
            // An unquoted value ends at ` #`.
            v.split(" #").next().unwrap_or("").trim_end().to_string()
        };
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

/// Interpolates one string.
pub fn interpolate(s: &str, vars: &Vars) -> Result<String> {
    let mut out = String::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] != '$' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                // The matching brace, nested `${...}` counted.
                let mut depth = 1;
                let mut j = i + 2;
                while j < b.len() {
                    match b[j] {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= b.len() {
                    bail!("invalid interpolation format for {s:?}: a \"${{\" without its \"}}\"");
                }
                let inner: String = b[i + 2..j].iter().collect();
                out.push_str(&braced(&inner, s, vars)?);
                i = j + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == '_') {
                    j += 1;
                }
                let name: String = b[i + 1..j].iter().collect();
                out.push_str(vars.get(&name).unwrap_or(""));
                i = j;
            }
            _ => {
                bail!("invalid interpolation format for {s:?}: a \"$\" not followed by a name; use \"$$\" for a literal \"$\"")
            }
        }
    }
    Ok(out)
}

fn braced(inner: &str, whole: &str, vars: &Vars) -> Result<String> {
    let end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let (name, rest) = inner.split_at(end);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        bail!("invalid interpolation format for {whole:?}: bad variable name in \"${{{inner}}}\"");
    }
    let value = vars.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    if rest.is_empty() {
        return Ok(value.unwrap_or("").to_string());
    }
    let (op, arg) = if let Some(a) = rest.strip_prefix(":-") {
        (":-", a)
    } else if let Some(a) = rest.strip_prefix(":?") {
        (":?", a)
    } else if let Some(a) = rest.strip_prefix(":+") {
        (":+", a)
    } else if let Some(a) = rest.strip_prefix('-') {
        ("-", a)
    } else if let Some(a) = rest.strip_prefix('?') {
        ("?", a)
    } else if let Some(a) = rest.strip_prefix('+') {
        ("+", a)
    } else {
        bail!("invalid interpolation format for {whole:?}: unknown operator in \"${{{inner}}}\"");
    };
    Ok(match op {
        ":-" if set_nonempty => value.unwrap().to_string(),
        "-" if value.is_some() => value.unwrap().to_string(),
        ":-" | "-" => interpolate(arg, vars)?,
        ":?" if set_nonempty => value.unwrap().to_string(),
        "?" if value.is_some() => value.unwrap().to_string(),
        ":?" | "?" => bail!(
            "required variable {name} is missing a value: {}",
            interpolate(arg, vars)?
        ),
        ":+" if set_nonempty => interpolate(arg, vars)?,
        "+" if value.is_some() => interpolate(arg, vars)?,
        _ => String::new(),
    })
}

/// Interpolates every string value (not the keys) of a parsed file; an error names the key.
pub fn interpolate_value(v: &mut Value, vars: &Vars, path: &mut Vec<String>) -> Result<()> {
    match v {
        Value::String(s) => {
            *s = interpolate(s, vars)
                .with_context(|| format!("error while interpolating {}", path.join(".")))?;
        }
        Value::Sequence(seq) => {
            for (i, x) in seq.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                interpolate_value(x, vars, path)?;
                path.pop();
            }
        }
        Value::Mapping(m) => {
            for (k, x) in m.iter_mut() {
                path.push(key_str(k));
                interpolate_value(x, vars, path)?;
                path.pop();
            }
        }
        Value::Tagged(t) => interpolate_value(&mut t.value, vars, path)?,
        _ => {}
    }
    Ok(())
}

pub fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => format!("{k:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars(
            [("A", "1"), ("E", "")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn forms() {
        let v = vars();
        assert_eq!(interpolate("x${A}y$A", &v).unwrap(), "x1y1");
        assert_eq!(interpolate("${B:-d}", &v).unwrap(), "d");
        assert_eq!(interpolate("${E:-d}", &v).unwrap(), "d");
        assert_eq!(interpolate("${E-d}", &v).unwrap(), "");
        assert_eq!(interpolate("${B:-${A}x}", &v).unwrap(), "1x");
        assert_eq!(interpolate("$$A", &v).unwrap(), "$A");
        assert_eq!(interpolate("${A:+yes}", &v).unwrap(), "yes");
        let e = interpolate("${B:?need B}", &v).unwrap_err().to_string();
        assert_eq!(e, "required variable B is missing a value: need B");
        assert!(interpolate("${A", &v).is_err());
    }
}
