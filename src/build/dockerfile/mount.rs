//! `RUN --mount=` specs, read as BuildKit reads them: one CSV record of `key=value` fields
//! (and the bare `ro`, `rw`, `required`). The parser checks each spec without expanding it
//! (only the shape, and that `from` holds no variable); the executor parses it again with
//! its expander, which checks and fills everything.
use super::error::Msg;
use super::suggest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// A parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    /// `from=`: a stage name or an image (a bind's or cache's source).
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    /// Defaults: read-only for bind, secret and ssh; writable for cache and tmpfs.
    pub readonly: bool,
    /// `id=` (a cache's or secret's).
    pub id: Option<String>,
    /// `sharing=shared|private|locked` (cache).
    pub sharing: Option<String>,
    pub required: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Expands a field's value (the executor's scope).
pub type Expander<'a> = &'a dyn Fn(&str) -> Result<String, Msg>;

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "ro",
    "rw",
    "readwrite",
];

/// Parses one `--mount` value. Without an expander only the shape is checked (and `from`
/// refused when it holds a variable); with one, every value is expanded and checked.
pub fn parse_mount(spec: &str, expander: Option<Expander>) -> Result<Mount, Msg> {
    let fields = csv_record(spec).map_err(|e| format!("failed to parse csv mounts: {e}"))?;
    let mut mount = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: false,
        id: None,
        sharing: None,
        required: false,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut readonly_given = false;
    let secret_or_ssh = |m: &Mount| matches!(m.kind, MountType::Secret | MountType::Ssh);
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key.to_lowercase(), Some(value)),
            None => (field.to_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    mount.readonly = true;
                    readonly_given = true;
                    continue;
                }
                "readwrite" | "rw" => {
                    mount.readonly = false;
                    readonly_given = true;
                    continue;
                }
                "required" if secret_or_ssh(&mount) => {
                    mount.required = true;
                    continue;
                }
                "required" => {
                    return Err(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        mount.kind.name()
                    ))
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
        };
        let value = match expander {
            Some(expand) => expand(value)?,
            None if key == "from" => {
                // BuildKit's `\$.`: a `$` with anything after it.
                if value.find('$').is_some_and(|i| i + 1 < value.len()) {
                    return Err(format!(
                        "'{key}' doesn't support variable expansion, define alias stage instead"
                    ));
                }
                value.to_string()
            }
            // A literal type is taken now, so that `required` is judged by it.
            None if key == "type" && !value.contains('$') => value.to_string(),
            // Checked once expanded.
            None => continue,
        };
        let parse_bool =
            |v: &str| go_bool(v).ok_or_else(|| format!("invalid value for {key}: {v}"));
        match key.as_str() {
            "type" => {
                mount.kind = match value.to_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        return Err(suggest::wrap(
                            format!("unsupported mount type {value:?}"),
                            &value,
                            &["bind", "cache", "tmpfs", "secret", "ssh"],
                            true,
                        ))
                    }
                }
            }
            "from" => mount.from = Some(value),
            "source" | "src" => mount.source = Some(value),
            "target" | "dst" | "destination" => mount.target = Some(value),
            "readonly" | "ro" => {
                mount.readonly = parse_bool(&value)?;
                readonly_given = true;
            }
            "readwrite" | "rw" => {
                mount.readonly = !parse_bool(&value)?;
                readonly_given = true;
            }
            "required" if secret_or_ssh(&mount) => mount.required = parse_bool(&value)?,
            "required" => {
                return Err(format!(
                    "unexpected key '{key}' for mount type '{}'",
                    mount.kind.name()
                ))
            }
            "id" => mount.id = Some(value),
            "sharing" => {
                let sharing = value.to_lowercase();
                if !matches!(sharing.as_str(), "shared" | "private" | "locked") {
                    return Err(format!("unsupported sharing value {value:?}"));
                }
                mount.sharing = Some(sharing);
            }
            "mode" => {
                mount.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| format!("invalid value {value} for mode"))?,
                )
            }
            "uid" => {
                mount.uid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("invalid value {value} for uid"))?,
                )
            }
            "gid" => {
                mount.gid = Some(
                    value
                        .parse()
                        .map_err(|_| format!("invalid value {value} for gid"))?,
                )
            }
            _ => {
                return Err(suggest::wrap(
                    format!("unexpected key '{key}' in '{field}'"),
                    &key,
                    KEYS,
                    true,
                ))
            }
        }
    }
    if !readonly_given {
        mount.readonly = !matches!(mount.kind, MountType::Cache | MountType::Tmpfs);
    }
    // Without the values, the checks that need them wait for the expanded parse.
    if expander.is_none() {
        return Ok(mount);
    }
    let file_info_allowed = matches!(
        mount.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    for (name, given) in [
        ("mode", mount.mode.is_some()),
        ("uid", mount.uid.is_some()),
        ("gid", mount.gid.is_some()),
    ] {
        if given && !file_info_allowed {
            return Err(format!(
                "{name} not allowed for {:?} type mounts",
                mount.kind.name()
            ));
        }
    }
    if mount.sharing.is_some() && mount.kind != MountType::Cache {
        return Err(format!(
            "invalid cache sharing set for {} mount",
            mount.kind.name()
        ));
    }
    if mount.kind == MountType::Secret {
        if mount.from.is_some() {
            return Err("secret mount should not have a from".to_string());
        }
        if mount.source.is_none() && mount.target.is_none() && mount.id.is_none() {
            return Err("invalid secret mount. one of source, target required".to_string());
        }
        if mount.source.is_some() && mount.id.is_some() {
            return Err("both source and id can't be set".to_string());
        }
    }
    Ok(mount)
}

/// Go's `strconv.ParseBool`.
fn go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// One record of Go's `encoding/csv` (comma-separated; a field may be `"quoted"`, with `""`
/// for a quote inside), with its error texts.
fn csv_record(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Err("EOF".to_string());
    }
    let chars: Vec<char> = text.chars().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if chars.get(i) == Some(&'"') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(format!(
                            "parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                            i + 1
                        ))
                    }
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        match chars.get(i) {
                            None | Some(',') => break,
                            Some(_) => {
                                return Err(format!(
                                    "parse error on line 1, column {}: extraneous or missing \" in quoted-field",
                                    i + 1
                                ))
                            }
                        }
                    }
                    Some(&c) => {
                        field.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(&c) = chars.get(i) {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return Err(format!(
                        "parse error on line 1, column {}: bare \" in non-quoted-field",
                        i + 1
                    ));
                }
                field.push(c);
                i += 1;
            }
        }
        fields.push(field);
        if chars.get(i) == Some(&',') {
            i += 1;
            continue;
        }
        return Ok(fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(spec: &str) -> Result<Mount, Msg> {
        parse_mount(spec, Some(&|v: &str| Ok(v.replace("$T", "/t"))))
    }

    #[test]
    fn defaults_by_type() {
        let bind = full("target=/src").unwrap();
        assert_eq!(bind.kind, MountType::Bind);
        assert!(bind.readonly);
        let cache = full("type=cache,target=/root/.cache,id=x,sharing=LOCKED").unwrap();
        assert!(!cache.readonly);
        assert_eq!(cache.sharing.as_deref(), Some("locked"));
        assert_eq!(cache.id.as_deref(), Some("x"));
        assert!(!full("type=tmpfs,dst=/tmp").unwrap().readonly);
    }

    #[test]
    fn bind_from_a_stage_read_write() {
        let mount = full("type=bind,from=build,source=/out,target=$T,rw").unwrap();
        assert_eq!(mount.from.as_deref(), Some("build"));
        assert_eq!(mount.source.as_deref(), Some("/out"));
        assert_eq!(mount.target.as_deref(), Some("/t"));
        assert!(!mount.readonly);
        assert!(full("target=/a,readonly=false").is_ok_and(|m| !m.readonly));
    }

    #[test]
    fn secret_and_file_info() {
        let secret = full("type=secret,id=token,required,mode=0440,uid=1,gid=2").unwrap();
        assert!(secret.required);
        assert_eq!(secret.mode, Some(0o440));
        assert_eq!(secret.uid, Some(1));
        assert_eq!(
            full("type=bind,target=/a,mode=0644").unwrap_err(),
            "mode not allowed for \"bind\" type mounts"
        );
        assert_eq!(
            full("type=secret,from=x,id=a").unwrap_err(),
            "secret mount should not have a from"
        );
        assert_eq!(
            full("type=secret").unwrap_err(),
            "invalid secret mount. one of source, target required"
        );
    }

    #[test]
    fn bad_fields() {
        assert_eq!(
            full("type=volume,target=/a").unwrap_err(),
            "unsupported mount type \"volume\""
        );
        assert_eq!(
            full("type=cahce,target=/a").unwrap_err(),
            "unsupported mount type \"cahce\" (did you mean cache?)"
        );
        assert_eq!(
            full("target=/a,targte=/b").unwrap_err(),
            "unexpected key 'targte' in 'targte=/b' (did you mean target?)"
        );
        assert_eq!(
            full("target").unwrap_err(),
            "invalid field 'target' must be a key=value pair"
        );
        assert_eq!(
            full("target=/a,required").unwrap_err(),
            "unexpected key 'required' for mount type 'bind'"
        );
        assert_eq!(
            full("type=cache,target=/a,sharing=all").unwrap_err(),
            "unsupported sharing value \"all\""
        );
        assert_eq!(
            full("target=/a,sharing=shared").unwrap_err(),
            "invalid cache sharing set for bind mount"
        );
        assert_eq!(
            full("target=/a,ro=maybe").unwrap_err(),
            "invalid value for ro: maybe"
        );
    }

    #[test]
    fn without_expander_only_shape_and_from() {
        // Values are not checked yet: the executor parses again with its scope.
        let mount = parse_mount("type=$KIND,from=stage,target=/a", None).unwrap();
        assert_eq!(mount.from.as_deref(), Some("stage"));
        assert_eq!(mount.target, None);
        let secret = parse_mount("type=secret,id=x,required", None).unwrap();
        assert!(secret.required);
        assert_eq!(
            parse_mount("from=$STAGE,target=/a", None).unwrap_err(),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
        assert!(parse_mount("from=a$,target=/a", None).is_ok());
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(
            csv_record(r#"a,"b,c","d""e""#).unwrap(),
            vec!["a", "b,c", "d\"e"]
        );
        assert_eq!(csv_record("a,,b").unwrap(), vec!["a", "", "b"]);
        assert!(csv_record(r#"a"b"#)
            .unwrap_err()
            .contains("bare \" in non-quoted-field"));
        assert!(csv_record(r#""ab"#)
            .unwrap_err()
            .contains("extraneous or missing"));
        assert_eq!(
            parse_mount("", None).unwrap_err(),
            "failed to parse csv mounts: EOF"
        );
    }
}
