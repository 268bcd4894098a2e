//! Go templates as Docker's `--format` and `inspect -f` take them, on the `gtmpl` crate.
//!
//! Data is JSON (`serde_json::Value`). Docker's template functions (`json`, `join`, `split`,
//! `lower`, `upper`, `title`, `pad`, `truncate`) are added; its `table` directive and
//! `--format json` are [`format_rows`]; the column alignment is Go's `text/tabwriter`
//! ([`tabwriter`]) with Docker's settings.
//!
//! gtmpl differs from Go's text/template where Docker's users would notice, so templates are
//! rewritten before gtmpl parses them ([`rewrite`]), each action by itself:
//! - printed values go through `berthPrint`, which prints as Go's `%v` does (`[a b]`,
//!   `map[k:v]`, `<nil>`, `1e+06`) where gtmpl prints Rust's debug form;
//! - `range` goes over maps in key order (Go sorts map keys; gtmpl's maps are hash maps), and
//!   its `else` runs only when there was nothing to range over (gtmpl always runs it).
//!
//! Known differences that remain: objects are printed and JSON-encoded with their keys sorted
//! (Go keeps a struct's field order), a JSON `null` prints `<nil>` whatever Go type it stood
//! for (Docker prints a nil slice as `[]`), and methods with arguments (`ps --format
//! '{{.Label "k"}}'`) are not supported.

use anyhow::{anyhow, bail, Result};
use gtmpl::{Context, Func, FuncError, Value};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Docker's `--format json`: one JSON object a line.
pub const JSON_FORMAT: &str = "{{json .}}";

/// The prefix of a table format.
pub const TABLE_PREFIX: &str = "table";

/// `docker ps`'s default table, and its headers.
pub const PS_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";
/// `docker ps -s` adds this column.
pub const PS_SIZE_COLUMN: &str = "\t{{.Size}}";
pub const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Names", "NAMES"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Networks", "NETWORKS"),
    ("Platform", "PLATFORM"),
];

/// `docker stats`'s default table, and its headers.
pub const STATS_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
pub const STATS_HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// `docker volume ls`'s default table, and its headers.
pub const VOLUME_TABLE: &str = "table {{.Driver}}\t{{.Name}}";
pub const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
    ("Group", "GROUP"),
    ("Availability", "AVAILABILITY"),
    ("Status", "STATUS"),
];

/// Docker's table writer: `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`.
pub const TABLE_MIN_WIDTH: usize = 10;
pub const TABLE_PADDING: usize = 3;

/// A parsed template, ready to run on any number of values.
pub struct Template {
    inner: gtmpl::Template,
}

impl Template {
    /// Parses a Go template; errors are worded as Docker's: "template parsing error: ...".
    pub fn parse(text: &str) -> Result<Template> {
        Self::parse_with(text, &data_funcs())
    }

    fn parse_with(text: &str, funcs: &[(&str, Func)]) -> Result<Template> {
        let rewritten = rewrite(text).map_err(|e| anyhow!("template parsing error: {e}"))?;
        let mut inner = gtmpl::Template::default();
        inner.add_funcs(funcs);
        inner
            .parse(rewritten)
            .map_err(|e| anyhow!("template parsing error: {}", parse_error_text(text, e)))?;
        Ok(Template { inner })
    }

    /// Runs the template on `data`. Objects are Go maps: a missing key prints `<no value>`.
    pub fn render(&self, data: &serde_json::Value) -> Result<String> {
        self.run(to_gtmpl(data, false))
    }

    /// Runs the template on a row of `ps`, `stats` or `volume ls`: the row's own fields are
    /// those of a Go struct, so an unknown `.Field` is an error, as with Docker.
    pub fn render_row(&self, row: &serde_json::Value) -> Result<String> {
        self.run(to_gtmpl(row, true))
    }

    fn run(&self, data: Value) -> Result<String> {
        self.inner
            .render(&Context::from(data))
            .map_err(|e| anyhow!("template: executing \"\": {}", exec_error_text(e)))
    }
}

/// gtmpl's parse error in Go's words where they differ: Go quotes the function's name and
/// gives the line it is on; gtmpl's own line numbers are not the template's (left out).
fn parse_error_text(text: &str, e: gtmpl::error::ParseError) -> String {
    match e {
        gtmpl::error::ParseError::WithContext(_, msg) => {
            match msg
                .strip_prefix("function ")
                .and_then(|m| m.strip_suffix(" not defined"))
            {
                Some(name) => {
                    let line = text
                        .find(name)
                        .map_or(1, |at| 1 + text[..at].matches('\n').count());
                    format!("template: :{line}: function {name:?} not defined")
                }
                None => format!("template: {msg}"),
            }
        }
        other => format!("template: {other}"),
    }
}

/// gtmpl's execution errors in Go's words where the two say the same thing.
fn exec_error_text(e: gtmpl::error::ExecError) -> String {
    use gtmpl::error::ExecError;
    match e {
        ExecError::NoFiledFor(field, _) => format!("can't evaluate field {field}"),
        ExecError::InvalidRange(v) => format!("range can't iterate over {}", go_value(&v)),
        other => other.to_string(),
    }
}

/// Parses and runs `template` on `data` (what `inspect -f` does for each object; the caller
/// prints a newline after it, as Docker does).
pub fn render(template: &str, data: &serde_json::Value) -> Result<String> {
    Template::parse(template)?
        .render(data)
        .map_err(|e| anyhow!("template parsing error: {e:#}"))
}

/// What a `--format` value asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// Rows under a header row, aligned; the template of one row.
    Table(String),
    /// Each row by itself, one a line.
    Raw(String),
}

impl Format {
    /// Docker's reading of `--format`: "" and "table" are `default_table`, "json" is
    /// `{{json .}}`, "table TEMPLATE" a table, anything else a template; `\t` and `\n` typed as
    /// two characters are a tab and a newline.
    pub fn parse(format: &str, default_table: &str) -> Format {
        let format = match format.trim() {
            "" | TABLE_PREFIX => default_table,
            "json" => JSON_FORMAT,
            _ => format,
        };
        let unescape = |s: &str| s.trim().replace(r"\t", "\t").replace(r"\n", "\n");
        match format.strip_prefix(TABLE_PREFIX) {
            Some(rest) => Format::Table(unescape(rest)),
            None => Format::Raw(unescape(format)),
        }
    }
}

/// Formats rows as `ps`, `stats` and `volume ls` do: `format` as [`Format::parse`] reads it;
/// a table gets a header row, each column's header from `headers` (field name, header), made
/// by running the same template on the headers (Docker's way: `{{upper .Names}}` heads its
/// column "NAMES").
pub fn format_rows(
    format: &str,
    default_table: &str,
    headers: &[(&str, &str)],
    rows: &[serde_json::Value],
) -> Result<String> {
    let (text, table) = match Format::parse(format, default_table) {
        Format::Table(t) => (t, true),
        Format::Raw(t) => (t, false),
    };
    let tmpl = Template::parse(&text)?;
    let mut body = String::new();
    for row in rows {
        let text = tmpl
            .render_row(row)
            .map_err(|e| anyhow!("failed to execute template: {e:#}"))?;
        body.push_str(&text);
        body.push('\n');
    }
    if !table {
        return Ok(body);
    }
    let header_tmpl = Template::parse_with(&text, &header_funcs())?;
    let header_data: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let mut all = header_tmpl.render(&serde_json::Value::Object(header_data))?;
    all.push('\n');
    all.push_str(&body);
    Ok(tabwriter(&all, TABLE_MIN_WIDTH, TABLE_PADDING))
}

// ---- the rewrite ----

/// Rewrites a Go template so that gtmpl runs it as Go would (see the module doc). Only
/// actions change; text, strings and comments are kept as they are.
pub fn rewrite(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len() + 32);
    // The open blocks; for `range`, the variable holding what it ranges over.
    let mut blocks: Vec<Option<String>> = Vec::new();
    let mut ranges = 0usize;
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let action = &rest[start..];
        let line = 1 + text[..text.len() - rest.len() + start]
            .matches('\n')
            .count();
        let len = action_len(action).map_err(|e| anyhow!("template: :{line}: {e}"))?;
        let action = &action[..len];
        rest = &rest[start + len..];

        // "{{- body -}}": keep the trim markers on the outermost emitted actions.
        let inner = &action[2..len - 2];
        let (left, inner) = match inner.strip_prefix("- ") {
            Some(i) => ("{{- ", i),
            None => ("{{", inner),
        };
        let (right, inner) = match inner.strip_suffix(" -") {
            Some(i) => (" -}}", i),
            None => ("}}", inner),
        };
        let body = inner.trim();
        let keyword = leading_word(body);
        match keyword {
            _ if body.starts_with("/*") => out.push_str(action),
            "if" | "with" | "define" | "block" => {
                blocks.push(None);
                out.push_str(action);
            }
            "end" => {
                blocks.pop();
                out.push_str(action);
            }
            "else" => {
                match blocks.last() {
                    // A range's else: close the range, then run it if nothing was ranged over.
                    Some(Some(list)) => {
                        let list = list.clone();
                        let _ = write!(out, "{left}end}}}}{{{{if not {list}{right}");
                        if let Some(last) = blocks.last_mut() {
                            *last = None;
                        }
                    }
                    _ => out.push_str(action),
                }
            }
            "range" => {
                let list = format!("$berthRange{ranges}");
                ranges += 1;
                let clause = body["range".len()..].trim_start();
                let (vars, pipeline) = range_variables(clause);
                match vars.as_slice() {
                    [] => {
                        let _ = write!(
                            out,
                            "{left}{list} := {pipeline} | berthValues}}}}{{{{range {list}{right}"
                        );
                    }
                    [value] => {
                        let _ = write!(
                            out,
                            "{left}{list} := {pipeline} | berthValues}}}}{{{{range {value} := {list}{right}"
                        );
                    }
                    [key, value] => {
                        let entry = format!("$berthEntry{ranges}");
                        let _ = write!(
                            out,
                            "{left}{list} := {pipeline} | berthEntries}}}}{{{{range {entry} := {list}}}}}\
                             {{{{{key} := {entry}.Key}}}}{{{{{value} := {entry}.Value{right}"
                        );
                    }
                    _ => bail!("template: :{line}: too many declarations in range"),
                }
                blocks.push(Some(list));
            }
            "template" | "break" | "continue" => out.push_str(action),
            _ if is_declaration(body) => out.push_str(action),
            _ => {
                let _ = write!(out, "{left}{body} | berthPrint{right}");
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The length of the action at the start of `s` ("{{ ... }}"), skipping `}}` inside strings,
/// raw strings, character constants and comments.
fn action_len(s: &str) -> Result<usize> {
    let b = s.as_bytes();
    let mut i = 2;
    // A comment runs to "*/" and then must close.
    let after_trim = if s[2..].starts_with("- ") { 4 } else { 2 };
    if s[after_trim..].starts_with("/*") {
        let end = s[after_trim + 2..]
            .find("*/")
            .ok_or_else(|| anyhow!("unclosed comment"))?;
        i = after_trim + 2 + end + 2;
    }
    while i < b.len() {
        match b[i] {
            b'}' if b.get(i + 1) == Some(&b'}') => return Ok(i + 2),
            quote @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != quote {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    if b[i.min(b.len() - 1)] == b'\n' {
                        bail!("unterminated quoted string");
                    }
                    i += 1;
                }
                if i >= b.len() {
                    bail!("unterminated quoted string");
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                if i >= b.len() {
                    bail!("unterminated raw quoted string");
                }
            }
            _ => {}
        }
        i += 1;
    }
    bail!("unclosed action")
}

fn leading_word(body: &str) -> &str {
    let end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    &body[..end]
}

/// `$x := ...`, `$x = ...`, `$a, $b := ...`: prints nothing.
fn is_declaration(body: &str) -> bool {
    let (vars, _) = range_variables(body);
    !vars.is_empty()
}

/// Splits "[$k[, $v] :=] pipeline" into its variables and the pipeline.
fn range_variables(clause: &str) -> (Vec<&str>, &str) {
    let var_len = |s: &str| -> Option<usize> {
        let rest = s.strip_prefix('$')?;
        Some(
            1 + rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len()),
        )
    };
    let mut vars = Vec::new();
    let mut rest = clause;
    loop {
        let Some(n) = var_len(rest) else {
            return (Vec::new(), clause);
        };
        vars.push(&rest[..n]);
        rest = rest[n..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
            continue;
        }
        if let Some(r) = rest.strip_prefix(":=").or_else(|| rest.strip_prefix('=')) {
            return (vars, r.trim());
        }
        return (Vec::new(), clause);
    }
}

// ---- data ----

/// JSON as gtmpl values. With `strict_top`, the top object is a struct-like `Object` (missing
/// fields are errors); every other object is a `Map` (missing keys are `<no value>`).
fn to_gtmpl(v: &serde_json::Value, strict_top: bool) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(|e| to_gtmpl(e, false)).collect()),
        serde_json::Value::Object(o) => {
            let map: HashMap<String, Value> = o
                .iter()
                .map(|(k, e)| (k.clone(), to_gtmpl(e, false)))
                .collect();
            if strict_top {
                Value::Object(map)
            } else {
                Value::Map(map)
            }
        }
    }
}

/// gtmpl values as JSON (what `{{json ...}}` prints); object keys come out sorted.
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else {
                serde_json::Value::from(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(m) | Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, e)| (k.clone(), to_json(e))).collect())
        }
    }
}

/// Go's `%v` of a value: "[a b]", "map[a:1 b:2]", "<nil>", "<no value>", "1e+06".
pub fn go_value(v: &Value) -> String {
    let mut s = String::new();
    write_go_value(&mut s, v);
    s
}

fn write_go_value(out: &mut String, v: &Value) {
    match v {
        Value::NoValue => out.push_str("<no value>"),
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => out.push_str(s),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => {
                let _ = write!(out, "{u}");
            }
            (None, Some(i)) => {
                let _ = write!(out, "{i}");
            }
            _ => out.push_str(&super::humanize::go_format_float(n.as_f64().unwrap_or(0.0))),
        },
        Value::Function(_) => out.push_str("<func>"),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_go_value(out, e);
            }
            out.push(']');
        }
        Value::Map(m) | Value::Object(m) => {
            let struct_like = matches!(v, Value::Object(_));
            out.push_str(if struct_like { "{" } else { "map[" });
            for (i, (k, e)) in sorted(m).into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                if !struct_like {
                    out.push_str(k);
                    out.push(':');
                }
                write_go_value(out, e);
            }
            out.push(if struct_like { '}' } else { ']' });
        }
    }
}

fn sorted(m: &HashMap<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = m.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

// ---- functions ----

fn data_funcs() -> Vec<(&'static str, Func)> {
    vec![
        ("berthPrint", berth_print as Func),
        ("berthValues", berth_values),
        ("berthEntries", berth_entries),
        ("json", json),
        ("join", join),
        ("split", split),
        ("lower", lower),
        ("upper", upper),
        ("title", title),
        ("pad", pad),
        ("truncate", truncate),
        ("index", index),
        ("len", len),
        ("print", print),
        ("println", println),
    ]
}

/// Docker runs a table's template on the headers with these: each gives back its first
/// argument, so `{{upper .Names}}` heads its column "NAMES", not "names".
fn header_funcs() -> Vec<(&'static str, Func)> {
    let mut funcs = data_funcs();
    for name in [
        "json", "join", "split", "lower", "upper", "title", "truncate",
    ] {
        if let Some(f) = funcs.iter_mut().find(|(n, _)| *n == name) {
            f.1 = first_argument;
        }
    }
    funcs
}

fn arg<'a>(args: &'a [Value], i: usize, name: &str, count: usize) -> Result<&'a Value, FuncError> {
    if args.len() != count {
        return Err(FuncError::ExactlyXArgs(name.into(), count));
    }
    Ok(&args[i])
}

fn string_arg(args: &[Value], i: usize, name: &str, count: usize) -> Result<String, FuncError> {
    match arg(args, i, name, count)? {
        Value::String(s) => Ok(s.clone()),
        other => Err(FuncError::Generic(format!(
            "{name}: wrong type for value; expected string; got {}",
            go_value(other)
        ))),
    }
}

fn int_arg(args: &[Value], i: usize, name: &str, count: usize) -> Result<i64, FuncError> {
    match arg(args, i, name, count)? {
        Value::Number(n) => n.as_i64().ok_or_else(|| {
            FuncError::Generic(format!("{name}: wrong type for value; expected int"))
        }),
        other => Err(FuncError::Generic(format!(
            "{name}: wrong type for value; expected int; got {}",
            go_value(other)
        ))),
    }
}

fn first_argument(args: &[Value]) -> Result<Value, FuncError> {
    args.first()
        .cloned()
        .ok_or_else(|| FuncError::AtLeastXArgs("function".into(), 1))
}

fn berth_print(args: &[Value]) -> Result<Value, FuncError> {
    match arg(args, 0, "print", 1)? {
        Value::String(s) => Ok(Value::String(s.clone())),
        other => Ok(Value::String(go_value(other))),
    }
}

/// What `range` goes over: a map's values in key order; nil ranges over nothing.
fn berth_values(args: &[Value]) -> Result<Value, FuncError> {
    Ok(match arg(args, 0, "range", 1)? {
        Value::Map(m) | Value::Object(m) => {
            Value::Array(sorted(m).into_iter().map(|(_, v)| v.clone()).collect())
        }
        Value::Nil | Value::NoValue => Value::Array(Vec::new()),
        other => other.clone(),
    })
}

/// `range $k, $v := ...`: {Key, Value} pairs, a map's in key order, a list's by index.
fn berth_entries(args: &[Value]) -> Result<Value, FuncError> {
    let entry = |k: Value, v: &Value| {
        Value::Object(HashMap::from([
            ("Key".to_string(), k),
            ("Value".to_string(), v.clone()),
        ]))
    };
    Ok(match arg(args, 0, "range", 1)? {
        Value::Map(m) | Value::Object(m) => Value::Array(
            sorted(m)
                .into_iter()
                .map(|(k, v)| entry(Value::String(k.clone()), v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, v)| entry(Value::from(i as u64), v))
                .collect(),
        ),
        Value::Nil | Value::NoValue => Value::Array(Vec::new()),
        other => other.clone(),
    })
}

/// Docker's `json`: the value as one line of JSON, HTML characters not escaped.
fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = arg(args, 0, "json", 1)?;
    serde_json::to_string(&to_json(v))
        .map(Value::String)
        .map_err(|e| FuncError::Generic(format!("json: {e}")))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string_arg(args, 1, "join", 2)?;
    let parts: Vec<String> = match &args[0] {
        Value::Array(a) => a.iter().map(go_value).collect(),
        Value::Nil | Value::NoValue => Vec::new(),
        other => {
            return Err(FuncError::Generic(format!(
                "join: wrong type for value; expected []string; got {}",
                go_value(other)
            )))
        }
    };
    Ok(Value::String(parts.join(&sep)))
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "split", 2)?;
    let sep = string_arg(args, 1, "split", 2)?;
    // Go's strings.Split with "" splits into characters.
    let parts: Vec<Value> = if sep.is_empty() {
        s.chars().map(|c| Value::String(c.to_string())).collect()
    } else {
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect()
    };
    Ok(Value::Array(parts))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(args, 0, "lower", 1)?.to_lowercase(),
    ))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(args, 0, "upper", 1)?.to_uppercase(),
    ))
}

/// Go's `strings.Title`: the first letter of each word upper-cased; words are separated by
/// anything but letters, digits and '_'.
fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "title", 1)?;
    let mut out = String::with_capacity(s.len());
    let mut after_separator = true;
    for c in s.chars() {
        if after_separator {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        after_separator = !(c.is_alphanumeric() || c == '_');
    }
    Ok(Value::String(out))
}

/// Docker's `pad`: spaces before and after, none around an empty string.
fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "pad", 3)?;
    let before = int_arg(args, 1, "pad", 3)?.max(0) as usize;
    let after = int_arg(args, 2, "pad", 3)?.max(0) as usize;
    if s.is_empty() {
        return Ok(Value::String(s));
    }
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(before),
        " ".repeat(after)
    )))
}

/// Docker's `truncate`: the first `n` bytes (kept whole at a character's boundary).
fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "truncate", 2)?;
    let n = int_arg(args, 1, "truncate", 2)?.max(0) as usize;
    if s.len() < n {
        return Ok(Value::String(s));
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Ok(Value::String(s[..end].to_string()))
}

/// Go's `index`: a missing map key is the zero value (Docker's maps hold strings: ""), an
/// index out of range an error.
fn index(args: &[Value]) -> Result<Value, FuncError> {
    if args.len() < 2 {
        return Err(FuncError::AtLeastXArgs("index".into(), 2));
    }
    let mut cur = args[0].clone();
    for key in &args[1..] {
        cur = match (&cur, key) {
            (Value::Map(m) | Value::Object(m), Value::String(k)) => {
                m.get(k).cloned().unwrap_or(Value::String(String::new()))
            }
            (Value::Array(a), Value::Number(n)) => {
                let i = n.as_i64().unwrap_or(-1);
                if i < 0 || i as usize >= a.len() {
                    return Err(FuncError::Generic(format!(
                        "error calling index: index out of range: {i}"
                    )));
                }
                a[i as usize].clone()
            }
            (Value::Nil | Value::NoValue, _) => {
                return Err(FuncError::Generic(
                    "error calling index: index of untyped nil".into(),
                ))
            }
            (c, k) => {
                return Err(FuncError::Generic(format!(
                    "error calling index: cannot index {} with {}",
                    go_value(c),
                    go_value(k)
                )))
            }
        };
    }
    Ok(cur)
}

/// Go's `len`: bytes of a string, elements of a list or map; nil has none.
fn len(args: &[Value]) -> Result<Value, FuncError> {
    let n = match arg(args, 0, "len", 1)? {
        Value::String(s) => s.len(),
        Value::Array(a) => a.len(),
        Value::Map(m) | Value::Object(m) => m.len(),
        Value::Nil | Value::NoValue => 0,
        other => {
            return Err(FuncError::Generic(format!(
                "error calling len: len of type {}",
                go_value(other)
            )))
        }
    };
    Ok(Value::from(n as u64))
}

/// Go's `print`: a space between two operands when neither is a string.
fn print(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = String::new();
    for (i, v) in args.iter().enumerate() {
        let is_string = |v: &Value| matches!(v, Value::String(_));
        if i > 0 && !is_string(v) && !is_string(&args[i - 1]) {
            out.push(' ');
        }
        write_go_value(&mut out, v);
    }
    Ok(Value::String(out))
}

/// Go's `println`: spaces between all operands, a newline at the end.
fn println(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = args.iter().map(go_value).collect::<Vec<_>>().join(" ");
    out.push('\n');
    Ok(Value::String(out))
}

// ---- Go's text/tabwriter ----

/// Go's `text/tabwriter` with padding character ' ' and no flags, on a whole text: cells are
/// tab-terminated (a line's last cell is not part of any column); a column is as wide as its
/// widest cell plus `padding`, at least `min_width`, over each run of lines that have it.
pub fn tabwriter(text: &str, min_width: usize, padding: usize) -> String {
    let mut lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    // The text after the last newline is a line without a newline.
    let ends_with_newline = text.ends_with('\n');
    if ends_with_newline {
        lines.pop();
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut widths = Vec::new();
    format_block(
        &lines,
        &mut widths,
        0,
        lines.len(),
        min_width,
        padding,
        &mut out,
    );
    if !ends_with_newline && out.ends_with('\n') {
        out.pop();
    }
    out
}

fn format_block(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    mut line0: usize,
    line1: usize,
    min_width: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        // A block of lines with a cell in this column starts here.
        write_lines(lines, widths, line0, this, out);
        line0 = this;
        let mut width = min_width;
        while this < line1 && column + 1 < lines[this].len() {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, widths, line0, this, min_width, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, widths, line0, line1, out);
}

fn write_lines(
    lines: &[Vec<&str>],
    widths: &[usize],
    line0: usize,
    line1: usize,
    out: &mut String,
) {
    for line in &lines[line0..line1] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(w) = widths.get(j) {
                let n = w.saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', n));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inspect_data() -> serde_json::Value {
        json!({
            "Id": "4f2b8e7c0a1d",
            "Name": "/web",
            "State": {"Status": "running", "Running": true, "Paused": false, "Pid": 4242,
                      "ExitCode": 0, "StartedAt": "2024-01-02T03:04:05.123456789Z"},
            "Config": {
                "Hostname": "4f2b8e7c0a1d",
                "Env": ["PATH=/usr/bin:/bin", "A=b c"],
                "Cmd": ["sh", "-c", "sleep 1000"],
                "Entrypoint": null,
                "Labels": {"b": "2", "a": "1", "com.example.x": "<y>"}
            },
            "Mounts": [{"Destination": "/data", "Source": "/v/a"},
                       {"Destination": "/etc/x", "Source": "/v/b"}],
            "NetworkSettings": {
                "IPAddress": "",
                "Networks": {"zeta": {"IPAddress": "10.0.0.3"}, "alpha": {"IPAddress": "10.0.0.2"}},
                "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}
            },
            "HostConfig": {"Memory": 0, "NanoCpus": 1500000000_u64, "CpuShares": -1},
            "Ratio": 0.5,
            "Big": 1e6
        })
    }

    fn r(t: &str) -> String {
        render(t, &inspect_data()).unwrap_or_else(|e| panic!("{t}: {e:#}"))
    }

    #[test]
    fn docker_common_inspect_templates() {
        assert_eq!(r("{{.State.Status}}"), "running");
        assert_eq!(r("{{.State.Pid}}"), "4242");
        assert_eq!(r("{{index .Config.Labels \"a\"}}"), "1");
        assert_eq!(r("{{index .Config.Labels \"missing\"}}"), "");
        assert_eq!(
            r("{{range .Mounts}}{{.Destination}} {{end}}"),
            "/data /etc/x "
        );
        assert_eq!(
            r("{{json .Config.Env}}"),
            r#"["PATH=/usr/bin:/bin","A=b c"]"#
        );
        assert_eq!(r("{{.NetworkSettings.IPAddress}}"), "");
        assert_eq!(r("{{if .State.Running}}up{{end}}"), "up");
        assert_eq!(r("{{if .State.Paused}}p{{else}}np{{end}}"), "np");
        assert_eq!(r("{{.Name}}"), "/web");
        assert_eq!(
            r("{{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}}"),
            "1500000000 -1"
        );
        // gtmpl keeps whole floats as integers (no Docker inspect field is a float).
        assert_eq!(r("{{.Ratio}} {{.Big}}"), "0.5 1000000");
        assert_eq!(r("{{.State.Missing}}"), "<no value>");
        assert_eq!(r("{{.Config.Entrypoint}}"), "<nil>");
    }

    #[test]
    fn values_print_as_go_prints_them() {
        assert_eq!(r("{{.Config.Cmd}}"), "[sh -c sleep 1000]");
        assert_eq!(r("{{.Config.Labels}}"), "map[a:1 b:2 com.example.x:<y>]");
        assert_eq!(
            r("{{.NetworkSettings.Ports}}"),
            "map[80/tcp:[map[HostIp:0.0.0.0 HostPort:8080]]]"
        );
        assert_eq!(r("{{$x := .State.Pid}}{{$x}}"), "4242");
        assert_eq!(r("{{print .State.Pid .State.ExitCode}}"), "4242 0");
        assert_eq!(r("{{println .Config.Cmd}}"), "[sh -c sleep 1000]\n");
        assert_eq!(r("{{printf \"%s-%d\" .Name .State.Pid}}"), "/web-4242");
        assert_eq!(r("{{len .Mounts}}"), "2");
        assert_eq!(r("{{len .Config.Labels}} {{len .Name}}"), "3 4");
        assert_eq!(r("{{eq .State.Status \"running\"}}"), "true");
    }

    #[test]
    fn range_over_maps_is_in_key_order_with_keys() {
        for _ in 0..5 {
            // Hash order changes from map to map: repeat to catch an unsorted walk.
            assert_eq!(
                r("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}"),
                "a=1;b=2;com.example.x=<y>;"
            );
            assert_eq!(
                r("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"),
                "10.0.0.2 10.0.0.3 "
            );
        }
        assert_eq!(
            r("{{range $p, $conf := .NetworkSettings.Ports}}{{$p}} -> {{(index $conf 0).HostPort}}{{end}}"),
            "80/tcp -> 8080"
        );
        assert_eq!(
            r("{{range $i, $m := .Mounts}}{{$i}}:{{$m.Source}} {{end}}"),
            "0:/v/a 1:/v/b "
        );
        assert_eq!(
            r("{{range $e := .Config.Env}}[{{$e}}]{{end}}"),
            "[PATH=/usr/bin:/bin][A=b c]"
        );
        // else runs only when there is nothing to range over.
        assert_eq!(r("{{range .Mounts}}m{{else}}none{{end}}"), "mm");
        assert_eq!(
            r("{{range .Config.Entrypoint}}e{{else}}none{{end}}"),
            "none"
        );
        // Nested ranges and an if inside.
        assert_eq!(
            r("{{range .Mounts}}{{if .Source}}{{range $.Config.Cmd}}.{{end}}{{end}}|{{end}}"),
            "...|...|"
        );
    }

    #[test]
    fn docker_functions() {
        assert_eq!(r("{{join .Config.Cmd \" \"}}"), "sh -c sleep 1000");
        assert_eq!(r("{{upper .State.Status}}"), "RUNNING");
        assert_eq!(r("{{lower \"AbC\"}}"), "abc");
        assert_eq!(r("{{title \"hello wide-world\"}}"), "Hello Wide-World");
        assert_eq!(r("{{split .Name \"/\"}}"), "[ web]");
        assert_eq!(r("{{index (split \"a:b\" \":\") 1}}"), "b");
        assert_eq!(r("[{{pad .State.Status 1 2}}]"), "[ running  ]");
        assert_eq!(r("[{{pad \"\" 1 2}}]"), "[]");
        assert_eq!(r("{{truncate .Id 4}}"), "4f2b");
        assert_eq!(r("{{truncate .Id 40}}"), "4f2b8e7c0a1d");
        assert_eq!(
            r("{{json .Config.Labels}}"),
            r#"{"a":"1","b":"2","com.example.x":"<y>"}"#
        );
        assert_eq!(r("{{json .State.Running}}"), "true");
        assert_eq!(
            r("{{.Config.Env | json}}"),
            r#"["PATH=/usr/bin:/bin","A=b c"]"#
        );
    }

    #[test]
    fn text_trim_markers_and_comments_survive() {
        assert_eq!(r("a {{- .State.Pid -}} b"), "a4242b");
        assert_eq!(r("x{{/* a }} comment */}}y"), "xy");
        assert_eq!(r("{{\"}}\"}}"), "}}");
        assert_eq!(r("{{`}}`}}"), "}}");
        assert_eq!(
            r("{{- range $k, $v := .Config.Labels -}} {{$k}} {{- end}}"),
            "abcom.example.x"
        );
        assert_eq!(
            r("{{range .Mounts -}} {{.Destination}} {{- else -}} none {{- end}}"),
            "/data/etc/x"
        );
        assert_eq!(r("plain text"), "plain text");
    }

    #[test]
    fn errors_are_worded_as_dockers() {
        let err = |t: &str| format!("{:#}", render(t, &inspect_data()).unwrap_err());
        assert!(
            err("{{.State.Status").starts_with("template parsing error: "),
            "{}",
            err("{{.State.Status")
        );
        assert!(err("{{nosuchfunc .Id}}").starts_with("template parsing error: "));
        assert!(err("{{if .Id}}").starts_with("template parsing error: "));
        assert!(err("{{\"abc}}").starts_with("template parsing error: "));
        assert!(err("{{index .Mounts 5}}").contains("index out of range: 5"));
        assert!(err("{{range .State.Pid}}{{end}}")
            .starts_with("template parsing error: template: executing"));
        assert_eq!(
            err("x\n{{.State.Status"),
            "template parsing error: template: :2: unclosed action"
        );
        assert_eq!(
            err("a\n\n{{nosuchfunc .Id}}"),
            "template parsing error: template: :3: function \"nosuchfunc\" not defined"
        );
        assert_eq!(
            err("{{end}}"),
            "template parsing error: template: unexpected {{end}}"
        );
        let row = Template::parse("{{.Nope}}").unwrap();
        let e = row.render_row(&json!({"ID": "x"})).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "template: executing \"\": can't evaluate field Nope"
        );
        // Docker errors on a field of a missing key too (its inspect's second try runs with
        // missingkey=error).
        assert!(err("{{.State.Health.Status}}")
            .starts_with("template parsing error: template: executing \"\": "));
        assert_eq!(
            err("{{range .State.Pid}}{{end}}"),
            "template parsing error: template: executing \"\": range can't iterate over 4242"
        );
    }

    #[test]
    fn format_values_as_docker_reads_them() {
        assert_eq!(Format::parse("", PS_TABLE), Format::Table(
            "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".into()));
        assert_eq!(
            Format::parse("table", VOLUME_TABLE),
            Format::Table("{{.Driver}}\t{{.Name}}".into())
        );
        assert_eq!(
            Format::parse(r"table {{.ID}}\t{{.Names}}", PS_TABLE),
            Format::Table("{{.ID}}\t{{.Names}}".into())
        );
        assert_eq!(
            Format::parse("json", PS_TABLE),
            Format::Raw("{{json .}}".into())
        );
        assert_eq!(
            Format::parse("{{.ID}}", PS_TABLE),
            Format::Raw("{{.ID}}".into())
        );
    }

    fn ps_rows() -> Vec<serde_json::Value> {
        vec![
            json!({"ID": "4f2b8e7c0a1d", "Image": "busybox", "Command": "\"sleep 1000\"",
                   "RunningFor": "3 seconds ago", "Status": "Up 3 seconds", "Ports": "",
                   "Names": "web", "Size": "0B"}),
            json!({"ID": "0123456789ab", "Image": "debian:bookworm", "Command": "\"bash\"",
                   "RunningFor": "2 minutes ago", "Status": "Exited (0) 2 minutes ago",
                   "Ports": "", "Names": "sleepy_turing", "Size": "12B (virtual 4.3MB)"}),
        ]
    }

    #[test]
    fn ps_table_as_docker_lays_it_out() {
        let out = format_rows("", PS_TABLE, PS_HEADERS, &ps_rows()).unwrap();
        // Column widths: widest cell + 3, at least 10; the last column is not padded.
        let want = "\
CONTAINER ID   IMAGE             COMMAND        CREATED         STATUS                     PORTS     NAMES
4f2b8e7c0a1d   busybox           \"sleep 1000\"   3 seconds ago   Up 3 seconds                         web
0123456789ab   debian:bookworm   \"bash\"         2 minutes ago   Exited (0) 2 minutes ago             sleepy_turing
";
        assert_eq!(out, want);
        let out = format_rows(
            r"table {{.Names}}\t{{upper .Status}}",
            PS_TABLE,
            PS_HEADERS,
            &ps_rows(),
        )
        .unwrap();
        assert_eq!(
            out,
            "NAMES           STATUS\nweb             UP 3 SECONDS\nsleepy_turing   EXITED (0) 2 MINUTES AGO\n"
        );
        // No header without "table"; one line per row.
        let out = format_rows("{{.Names}}: {{.Size}}", PS_TABLE, PS_HEADERS, &ps_rows()).unwrap();
        assert_eq!(out, "web: 0B\nsleepy_turing: 12B (virtual 4.3MB)\n");
        // --format json: one object a line, keys sorted as Go's map encoding sorts them.
        let out = format_rows("json", PS_TABLE, PS_HEADERS, &ps_rows()[..1]).unwrap();
        assert_eq!(
            out,
            "{\"Command\":\"\\\"sleep 1000\\\"\",\"ID\":\"4f2b8e7c0a1d\",\"Image\":\"busybox\",\"Names\":\"web\",\"Ports\":\"\",\"RunningFor\":\"3 seconds ago\",\"Size\":\"0B\",\"Status\":\"Up 3 seconds\"}\n"
        );
        // An empty list still has its header.
        assert_eq!(
            format_rows("table", VOLUME_TABLE, VOLUME_HEADERS, &[]).unwrap(),
            "DRIVER    VOLUME NAME\n"
        );
        let e = format_rows("{{.Nope}}", PS_TABLE, PS_HEADERS, &ps_rows()).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "failed to execute template: template: executing \"\": can't evaluate field Nope"
        );
    }

    /// Bad input gets an error, never a panic: templates made of random pieces of the syntax
    /// (a fixed seed, so that a failure can be reproduced).
    #[test]
    fn random_templates_never_panic() {
        let pieces = [
            "{{", "}}", "{{- ", " -}}", " ", ".", "Name", "State", "range", "end", "else", "if",
            "with", "$x", ":=", "=", "$", ",", "\"", "`", "'", "(", ")", "|", "json", "index",
            "len", "1", "\"a\"", "/*", "*/", "\n", "define", "template", "nil", "not", "printf",
            "%", "x", "{", "}", "-", "L", "A", "join", "pad", "truncate", "split",
        ];
        let data = json!({"Name": "/a", "State": {"Status": "up", "Pid": 1},
                          "L": {"a": "b"}, "A": [1, 2]});
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let n = (next() % 12) as usize + 1;
            let t: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let _ = render(&t, &data);
            let _ = format_rows(&t, PS_TABLE, PS_HEADERS, std::slice::from_ref(&data));
        }
    }

    #[test]
    fn tabwriter_matches_go() {
        // Blocks: a column is aligned only over consecutive lines that have it.
        let text = "a\tb\tc\nlonger cell\tx\ny\nz\t1\n";
        assert_eq!(
            tabwriter(text, 0, 1),
            "a           b c\nlonger cell x\ny\nz 1\n"
        );
        assert_eq!(
            tabwriter("PID\tCMD\n1\tsh -c x", 20, 3),
            "PID                 CMD\n1                   sh -c x"
        );
        // Widths count characters, not bytes.
        assert_eq!(tabwriter("é\tx\nab\ty\n", 0, 1), "é  x\nab y\n");
    }
}
