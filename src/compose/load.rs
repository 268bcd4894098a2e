//! Finding and reading the compose files: discovery as Docker Compose does it, YAML parsing
//! with the file and line in errors, interpolation, and the merging of several `-f` files by
//! Compose's rules.

use super::interp::{self, key_str, Vars};
use anyhow::{anyhow, bail, Context, Result};
use serde_yaml_ng::{Mapping, Value};
use std::path::{Path, PathBuf};

/// The names Compose looks for, in its order.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
const OVERRIDE_FILES: &[&str] = &[
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// One file as read: for errors that name a line.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// The files, merged and interpolated.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub sources: Vec<Source>,
    pub doc: Mapping,
    pub vars: Vars,
    pub project_dir: PathBuf,
}

impl Loaded {
    /// "FILE:LINE" of the key at `path` (the last file that has it), or the file alone.
    pub fn locate(&self, path: &[&str]) -> String {
        for s in self.sources.iter().rev() {
            if let Some(line) = line_of(&s.text, path) {
                return format!("{}:{}", s.path.display(), line);
            }
        }
        match self.sources.last() {
            Some(s) => s.path.display().to_string(),
            None => "(no file)".into(),
        }
    }
}

/// The compose files: the `-f` ones, else the first default name found in `dir` or a parent
/// (and its override file next to it).
pub fn discover(files: &[PathBuf], dir: &Path) -> Result<Vec<PathBuf>> {
    if !files.is_empty() {
        return Ok(files
            .iter()
            .map(|f| {
                if f.is_absolute() {
                    f.clone()
                } else {
                    dir.join(f)
                }
            })
            .collect());
    }
    if let Ok(env) = std::env::var("COMPOSE_FILE") {
        let sep = std::env::var("COMPOSE_PATH_SEPARATOR").unwrap_or_else(|_| ":".into());
        return Ok(env
            .split(sep.as_str())
            .filter(|s| !s.is_empty())
            .map(|f| dir.join(f))
            .collect());
    }
    let mut d = Some(dir);
    while let Some(here) = d {
        if let Some(f) = DEFAULT_FILES
            .iter()
            .map(|n| here.join(n))
            .find(|p| p.is_file())
        {
            let mut out = vec![f];
            if let Some(o) = OVERRIDE_FILES
                .iter()
                .map(|n| here.join(n))
                .find(|p| p.is_file())
            {
                out.push(o);
            }
            return Ok(out);
        }
        d = here.parent();
    }
    bail!(
        "no configuration file provided: not found (looked for {} in {} and its parents)",
        DEFAULT_FILES.join(", "),
        dir.display()
    )
}

/// Reads, parses, interpolates and merges `files`. `env_file` replaces `PROJECT_DIR/.env`.
pub fn load(files: &[PathBuf], project_dir: &Path, env_file: Option<&Path>) -> Result<Loaded> {
    let mut vars = std::collections::BTreeMap::new();
    let dotenv = env_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| project_dir.join(".env"));
    if dotenv.is_file() {
        vars = interp::parse_env_file(&dotenv)?;
    } else if env_file.is_some() {
        bail!("env file {} not found", dotenv.display());
    }
    for (k, v) in std::env::vars() {
        vars.insert(k, v);
    }
    let vars = Vars(vars);
    let mut sources = Vec::new();
    let mut doc = Mapping::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read compose file {}", f.display()))?;
        let mut v: Value = serde_yaml_ng::from_str(&text).map_err(|e| yaml_error(f, &e))?;
        if v.is_null() {
            v = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(_) = v else {
            bail!("{}: top-level object must be a mapping", f.display());
        };
        interp::interpolate_value(&mut v, &vars, &mut Vec::new())
            .with_context(|| f.display().to_string())?;
        let Value::Mapping(m) = v else { unreachable!() };
        let mut m = Value::Mapping(m);
        normalize(&mut m);
        let Value::Mapping(m) = m else { unreachable!() };
        merge_top(&mut doc, m);
        sources.push(Source {
            path: f.clone(),
            text,
        });
    }
    Ok(Loaded {
        sources,
        doc,
        vars,
        project_dir: project_dir.to_path_buf(),
    })
}

fn yaml_error(f: &Path, e: &serde_yaml_ng::Error) -> anyhow::Error {
    match e.location() {
        Some(l) => anyhow!(
            "{}:{}:{}: malformed YAML: {e}",
            f.display(),
            l.line(),
            l.column()
        ),
        None => anyhow!("{}: malformed YAML: {e}", f.display()),
    }
}

/// The line (1-based) of the key at `path` in a YAML text, found by indentation: each key is
/// looked for below its parent's line and deeper than it.
pub fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut from, mut to, mut parent_indent) = (0usize, lines.len(), -1i64);
    let mut found = None;
    for key in path {
        let mut hit = None;
        for (i, l) in lines.iter().enumerate().take(to).skip(from) {
            let t = l.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let indent = (l.len() - t.len()) as i64;
            if indent <= parent_indent {
                break;
            }
            let t = t.strip_prefix("- ").unwrap_or(t);
            let unq = t.trim_start_matches(['"', '\'']);
            if unq.starts_with(key)
                && unq[key.len()..]
                    .trim_start_matches(['"', '\''])
                    .starts_with(':')
            {
                hit = Some((i, indent));
                break;
            }
        }
        let (i, indent) = hit?;
        found = Some(i + 1);
        // The key's block: the lines after it that are indented deeper.
        let end = lines
            .iter()
            .enumerate()
            .skip(i + 1)
            .find(|(_, l)| {
                let t = l.trim_start();
                !t.is_empty() && !t.starts_with('#') && ((l.len() - t.len()) as i64) <= indent
            })
            .map(|(j, _)| j)
            .unwrap_or(lines.len());
        from = i + 1;
        to = end;
        parent_indent = indent;
    }
    found
}

/// The list forms Compose also allows as maps, as maps (so that files merge key by key):
/// a service's environment, labels, extra_hosts? no: environment, labels and depends_on.
fn normalize(doc: &mut Value) {
    let Some(Value::Mapping(services)) = doc.get_mut("services") else {
        return;
    };
    for (_, s) in services.iter_mut() {
        let Value::Mapping(s) = s else { continue };
        for key in ["environment", "labels"] {
            if let Some(Value::Sequence(seq)) = s.get(key) {
                let mut m = Mapping::new();
                for item in seq {
                    let item = scalar_string(item);
                    match item.split_once('=') {
                        Some((k, v)) => m.insert(Value::from(k), Value::from(v)),
                        None => m.insert(Value::from(item.as_str()), Value::Null),
                    };
                }
                s.insert(Value::from(key), Value::Mapping(m));
            }
        }
        if let Some(Value::Sequence(seq)) = s.get("depends_on") {
            let mut m = Mapping::new();
            for item in seq {
                let mut cond = Mapping::new();
                cond.insert("condition".into(), "service_started".into());
                m.insert(Value::from(scalar_string(item)), Value::Mapping(cond));
            }
            s.insert("depends_on".into(), Value::Mapping(m));
        }
    }
}

/// A scalar as a string (YAML numbers and booleans as written).
pub fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => key_str(other),
    }
}

fn merge_top(base: &mut Mapping, over: Mapping) {
    for (k, v) in over {
        let key = key_str(&k);
        match (base.get_mut(&k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) if key == "services" => {
                for (name, svc) in o {
                    match (b.get_mut(&name), svc) {
                        (Some(Value::Mapping(bs)), Value::Mapping(os)) => merge_service(bs, os),
                        (_, svc) => {
                            b.insert(name, svc);
                        }
                    }
                }
            }
            (Some(Value::Mapping(b)), Value::Mapping(o)) => merge_mapping(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Compose's merge of one service: mappings key by key; `ports`, `expose`, `dns`,
/// `dns_search`, `cap_add`, `cap_drop`, `env_file`, `tmpfs`, `extra_hosts`, `profiles`,
/// `security_opt`, `external_links`, `devices` appended (without duplicates); `volumes`
/// merged by target; everything else (command, entrypoint, healthcheck.test, ...) replaced.
fn merge_service(base: &mut Mapping, over: Mapping) {
    const APPEND: &[&str] = &[
        "ports",
        "expose",
        "dns",
        "dns_search",
        "cap_add",
        "cap_drop",
        "env_file",
        "tmpfs",
        "extra_hosts",
        "profiles",
        "security_opt",
        "external_links",
        "devices",
        "links",
    ];
    for (k, v) in over {
        let key = key_str(&k);
        let existing = base.get_mut(&k);
        match (existing, v) {
            (Some(Value::Sequence(b)), Value::Sequence(o)) if key == "volumes" => {
                for item in o {
                    let t = volume_target(&item);
                    if let Some(pos) = b.iter().position(|x| volume_target(x) == t) {
                        b[pos] = item;
                    } else {
                        b.push(item);
                    }
                }
            }
            (Some(Value::Sequence(b)), Value::Sequence(o)) if APPEND.contains(&key.as_str()) => {
                for item in o {
                    if !b.contains(&item) {
                        b.push(item);
                    }
                }
            }
            (Some(b), Value::String(o))
                if matches!(key.as_str(), "dns" | "dns_search" | "tmpfs" | "env_file")
                    && matches!(b, Value::Sequence(_)) =>
            {
                if let Value::Sequence(b) = b {
                    let o = Value::String(o);
                    if !b.contains(&o) {
                        b.push(o);
                    }
                }
            }
            (Some(Value::Mapping(b)), Value::Mapping(o))
                if !matches!(key.as_str(), "command" | "entrypoint") =>
            {
                merge_mapping(b, o)
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn merge_mapping(base: &mut Mapping, over: Mapping) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => merge_mapping(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// The target of a volume entry, short (`SRC:TARGET[:MODE]`) or long (`target:`).
fn volume_target(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.len() {
                1 => parts[0].to_string(),
                _ => parts[1].to_string(),
            }
        }
        Value::Mapping(m) => m.get("target").map(scalar_string).unwrap_or_default(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let t = "services:\n  web:\n    image: x\n    bogus: 1\n  db:\n    bogus: 2\n";
        assert_eq!(line_of(t, &["services", "web", "bogus"]), Some(4));
        assert_eq!(line_of(t, &["services", "db", "bogus"]), Some(6));
        assert_eq!(line_of(t, &["services", "db", "image"]), None);
    }

    #[test]
    fn merging() {
        let a: Value = serde_yaml_ng::from_str(
            "services:\n  w:\n    image: a\n    command: [x]\n    ports: ['1:1']\n    environment: [A=1, B=2]\n    volumes: ['v:/d', '/h:/e']\n",
        )
        .unwrap();
        let b: Value = serde_yaml_ng::from_str(
            "services:\n  w:\n    image: b\n    command: [y]\n    ports: ['2:2']\n    environment: {B: 3}\n    volumes: ['/o:/d']\n",
        )
        .unwrap();
        let mut doc = Mapping::new();
        for mut v in [a, b] {
            normalize(&mut v);
            let Value::Mapping(m) = v else { panic!() };
            merge_top(&mut doc, m);
        }
        let w = &doc["services"]["w"];
        assert_eq!(w["image"], Value::from("b"));
        assert_eq!(w["command"][0], Value::from("y"));
        assert_eq!(w["ports"].as_sequence().unwrap().len(), 2);
        assert_eq!(w["environment"]["A"], Value::from("1"));
        assert_eq!(scalar_string(&w["environment"]["B"]), "3");
        let vols = w["volumes"].as_sequence().unwrap();
        assert_eq!(vols, &vec![Value::from("/o:/d"), Value::from("/h:/e")]);
    }
}
