//! The Dockerfile parser: text to [`Dockerfile`], in BuildKit's two passes. The first reads
//! logical lines and splits each by its instruction's line rules (JSON or shell form, words,
//! key/value pairs), reading heredoc bodies; the second checks each instruction (flags,
//! argument counts) and groups them into stages. An error in the first pass anywhere in the
//! file is reported before any error of the second, as BuildKit does.
use std::time::Duration;

use super::ast::*;
use super::duration::parse_go_duration;
use super::error::{Msg, ParseError};
use super::expand::Lexer;
use super::flags::{FlagKind, Flags};
use super::lines::LineReader;
use super::mount::parse_mount;
use super::suggest;
use super::words::{parse_json, parse_words, split_command, split_whitespace, Json};

/// Every instruction name, lowercase (for "did you mean" hints).
const INSTRUCTIONS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Parses a Dockerfile. `name` is what errors call the file (`Dockerfile`, `-`).
pub fn parse(source: &str, name: &str) -> anyhow::Result<Dockerfile> {
    Ok(parse_dockerfile(source, name)?)
}

/// As [`parse`], with the error's type kept (file, line, message).
pub fn parse_dockerfile(source: &str, name: &str) -> Result<Dockerfile, ParseError> {
    let fail = |line: Option<usize>, message: Msg| ParseError {
        file: name.to_string(),
        line,
        message,
    };
    if source.is_empty() {
        return Err(fail(None, "the Dockerfile cannot be empty".to_string()));
    }
    let (nodes, directives) = read_nodes(source).map_err(|(line, m)| fail(Some(line), m))?;
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &nodes {
        let item = convert(node).map_err(|m| fail(Some(node.line), m))?;
        match item {
            Item::From { from, name } => {
                if let Some(name) = &name {
                    if stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                        return Err(fail(
                            Some(node.line),
                            format!("duplicate stage name {name:?}"),
                        ));
                    }
                }
                stages.push(Stage {
                    index: stages.len(),
                    name,
                    from,
                    instructions: Vec::new(),
                });
            }
            Item::Instruction(instruction) => match stages.last_mut() {
                Some(stage) => stage.instructions.push(instruction),
                None => match instruction.kind {
                    InstructionKind::Arg(args) => global_args.extend(args),
                    _ => {
                        return Err(fail(
                            Some(node.line),
                            "no build stage in current context".to_string(),
                        ))
                    }
                },
            },
        }
    }
    if stages.is_empty() {
        return Err(fail(
            None,
            "dockerfile contains no stages to build".to_string(),
        ));
    }
    Ok(Dockerfile {
        name: name.to_string(),
        directives,
        global_args,
        stages,
    })
}

/// One logical line after its line rules: BuildKit's parser node.
#[derive(Debug, Clone)]
struct Node {
    line: usize,
    /// The instruction name as written.
    command: String,
    flags: Vec<String>,
    /// The arguments, quotes kept (for ENV/LABEL: key, value, key, value...).
    args: Vec<String>,
    /// The arguments were a JSON array.
    json: bool,
    /// The logical line as written (continuations joined).
    original: String,
    heredocs: Vec<Heredoc>,
    /// ONBUILD's trigger.
    child: Option<Box<Node>>,
}

/// First pass: logical lines into nodes, heredoc bodies read.
fn read_nodes(source: &str) -> Result<(Vec<Node>, Directives), (usize, Msg)> {
    let mut reader = LineReader::new(source);
    let mut nodes = Vec::new();
    while let Some(line) = reader.next_line()? {
        let escape = reader.directives.escape;
        let mut node = node_from_line(&line.text, escape).map_err(|m| (line.start, m))?;
        node.line = line.start;
        let onbuild = node.command.eq_ignore_ascii_case("onbuild");
        let heredoc_holder: &mut Node = match node.child.as_deref_mut() {
            Some(child) if onbuild => {
                child.line = line.start;
                child
            }
            _ => &mut node,
        };
        let lower = heredoc_holder.command.to_ascii_lowercase();
        if matches!(lower.as_str(), "run" | "copy" | "add")
            && !heredoc_holder.json
            && line.text.contains("<<")
        {
            for (name, strip_tabs, expand) in
                heredocs_from_line(&line.text).map_err(|m| (line.start, m))?
            {
                let Some(content) = reader.heredoc_body(&name, strip_tabs)? else {
                    return Err((line.start, "unterminated heredoc".to_string()));
                };
                heredoc_holder.heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                    strip_tabs,
                });
            }
        }
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err((
            reader.lines_read().max(1),
            "file with no instructions".to_string(),
        ));
    }
    let directives = Directives {
        escape: reader.directives.escape,
        syntax: reader.directives.syntax.clone(),
    };
    Ok((nodes, directives))
}

/// Splits a line by its instruction's rules (BuildKit's line parsers).
fn node_from_line(line: &str, escape: char) -> Result<Node, Msg> {
    let split = split_command(line);
    let rest = split.rest.as_str();
    let mut node = Node {
        line: 0,
        command: split.command.clone(),
        flags: split.flags,
        args: Vec::new(),
        json: false,
        original: line.to_string(),
        heredocs: Vec::new(),
        child: None,
    };
    match split.command.to_ascii_lowercase().as_str() {
        "add" | "copy" | "volume" => match parse_json(rest)? {
            Json::Array(args) => {
                node.args = args;
                node.json = true;
            }
            Json::NotJson => node.args = whitespace_words(rest),
        },
        "cmd" | "entrypoint" | "run" | "shell" => {
            (node.args, node.json) = maybe_json(rest)?;
        }
        "env" | "label" => {
            let key = split.command.to_ascii_uppercase();
            node.args = name_values(rest, &key, escape)?;
        }
        "arg" => node.args = parse_words(rest, escape),
        "expose" | "from" => node.args = whitespace_words(rest),
        "healthcheck" => {
            let kind_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            if kind_end > 0 {
                let (args, json) = maybe_json(rest[kind_end..].trim_start())?;
                node.args = std::iter::once(rest[..kind_end].to_string())
                    .chain(args)
                    .collect();
                node.json = json;
            }
        }
        "maintainer" | "stopsignal" | "user" | "workdir" if !rest.is_empty() => {
            node.args = vec![rest.to_string()];
        }
        "onbuild" if !rest.is_empty() => {
            node.child = Some(Box::new(node_from_line(rest, escape)?));
        }
        // Unknown instructions are refused in the second pass, with their line.
        _ => {}
    }
    Ok(node)
}

fn whitespace_words(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        Vec::new()
    } else {
        split_whitespace(rest, usize::MAX)
    }
}

/// Exec form when the arguments are a JSON array, else the whole text as one shell command.
fn maybe_json(rest: &str) -> Result<(Vec<String>, bool), Msg> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match parse_json(rest)? {
        Json::Array(args) => (args, true),
        Json::NotJson => (vec![rest.to_string()], false),
    })
}

/// ENV and LABEL: `K=V K2="a b"` pairs, or the legacy `K rest of the line`.
fn name_values(rest: &str, key: &str, escape: char) -> Result<Vec<String>, Msg> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let parts = split_whitespace(rest, 2);
        if parts.len() < 2 {
            return Err(format!("{key} must have two arguments"));
        }
        return Ok(parts);
    }
    let mut out = Vec::new();
    for word in words {
        let Some((name, value)) = word.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
            ));
        };
        out.push(name.to_string());
        out.push(value.to_string());
    }
    Ok(out)
}

/// The heredocs a line opens, in order: (name, `<<-`, content expands).
fn heredocs_from_line(line: &str) -> Result<Vec<(String, bool, bool)>, Msg> {
    let raw = Lexer {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        ..Lexer::new('\\')
    };
    // BuildKit ignores a lexing error here: such a line opens no heredoc.
    let words = raw
        .process(line, &|_| None)
        .map(|(_, words)| words)
        .unwrap_or_default();
    let mut found = Vec::new();
    for word in words {
        if let Some(heredoc) = parse_heredoc_word(&word)? {
            found.push(heredoc);
        }
    }
    Ok(found)
}

/// `[N]<<[-]NAME` as BuildKit recognises a heredoc word; `NAME` quoted (even partly) means the
/// body is not expanded.
fn parse_heredoc_word(word: &str) -> Result<Option<(String, bool, bool)>, Msg> {
    let after_digits = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(after) = after_digits.strip_prefix("<<") else {
        return Ok(None);
    };
    let (strip_tabs, rest) = match after.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, after),
    };
    // BuildKit's pattern allows blanks before the name (`<<\ EOF` lexes to one word).
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let plain = Lexer {
        skip_unset: true,
        ..Lexer::new('\\')
    };
    let (_, words) = plain.process(rest, &|_| None)?;
    if words.len() != 1 {
        return Ok(None);
    }
    let quoted = Lexer {
        raw_quotes: true,
        ..plain
    };
    let (_, raw_words) = quoted.process(rest, &|_| None)?;
    if raw_words.len() != words.len() {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = quotes(&words[0]) == quotes(&raw_words[0]);
    Ok(Some((words[0].clone(), strip_tabs, expand)))
}

/// The heredoc name a COPY/ADD source word stands for (`<<EOF`, `<<-"EOF"`), if it is one.
pub fn heredoc_name(word: &str) -> Option<String> {
    parse_heredoc_word(word)
        .ok()
        .flatten()
        .map(|(name, _, _)| name)
}

/// What a second-pass node becomes.
enum Item {
    From { from: From, name: Option<String> },
    Instruction(Instruction),
}

const NO_FLAGS: &[(&str, FlagKind)] = &[];

fn at_least_one(command: &str) -> Msg {
    format!("{command} requires at least one argument")
}

fn exactly_one(command: &str) -> Msg {
    format!("{command} requires exactly one argument")
}

/// Second pass: one node checked and typed.
fn convert(node: &Node) -> Result<Item, Msg> {
    let lower = node.command.to_ascii_lowercase();
    if lower == "from" {
        return convert_from(node);
    }
    let kind = match lower.as_str() {
        "env" | "label" => {
            let upper = lower.to_ascii_uppercase();
            Flags::parse(&node.flags, NO_FLAGS)?;
            if node.args.is_empty() {
                return Err(at_least_one(&upper));
            }
            let mut pairs = Vec::new();
            for pair in node.args.chunks(2) {
                if pair[0].is_empty() {
                    return Err(format!("{upper} names can not be blank"));
                }
                pairs.push((pair[0].clone(), pair.get(1).cloned().unwrap_or_default()));
            }
            if lower == "env" {
                InstructionKind::Env(pairs)
            } else {
                InstructionKind::Label(pairs)
            }
        }
        "maintainer" => {
            if node.args.len() != 1 {
                return Err(exactly_one("MAINTAINER"));
            }
            Flags::parse(&node.flags, NO_FLAGS)?;
            InstructionKind::Maintainer(node.args[0].clone())
        }
        "add" | "copy" => convert_copy(node, lower == "add")?,
        "onbuild" => {
            let Some(child) = &node.child else {
                return Err(at_least_one("ONBUILD"));
            };
            Flags::parse(&node.flags, NO_FLAGS)?;
            let trigger = child.command.to_ascii_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_string())
                }
                "MAINTAINER" | "FROM" => {
                    return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let mut child = (**child).clone();
            child.line = node.line;
            child.original = strip_onbuild(&node.original);
            match convert(&child)? {
                Item::Instruction(instruction) => InstructionKind::Onbuild(Box::new(instruction)),
                Item::From { .. } => {
                    return Err("FROM isn't allowed as an ONBUILD trigger".to_string())
                }
            }
        }
        "workdir" => {
            if node.args.len() != 1 {
                return Err(exactly_one("WORKDIR"));
            }
            Flags::parse(&node.flags, NO_FLAGS)?;
            InstructionKind::Workdir(node.args[0].clone())
        }
        "run" => {
            let flags = Flags::parse(
                &node.flags,
                &[
                    ("mount", FlagKind::Strings),
                    ("network", FlagKind::String),
                    ("security", FlagKind::Unsupported),
                    ("device", FlagKind::Unsupported),
                ],
            )?;
            for mount in flags.all("mount") {
                parse_mount(mount, None)?;
            }
            let network = flags.string("network");
            if let Some(mode) = &network {
                if !matches!(mode.as_str(), "default" | "none" | "host") {
                    return Err(format!("invalid network mode {mode:?}"));
                }
            }
            InstructionKind::Run(Run {
                command: command_of(node),
                network,
                mounts: flags.all("mount").to_vec(),
                heredocs: node.heredocs.clone(),
            })
        }
        "cmd" => {
            Flags::parse(&node.flags, NO_FLAGS)?;
            InstructionKind::Cmd(command_of(node))
        }
        "entrypoint" => {
            Flags::parse(&node.flags, NO_FLAGS)?;
            InstructionKind::Entrypoint(command_of(node))
        }
        "healthcheck" => convert_healthcheck(node)?,
        "expose" => {
            if node.args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            Flags::parse(&node.flags, NO_FLAGS)?;
            InstructionKind::Expose(node.args.clone())
        }
        "user" => {
            if node.args.len() != 1 {
                return Err(exactly_one("USER"));
            }
            Flags::parse(&node.flags, NO_FLAGS)?;
            InstructionKind::User(node.args[0].clone())
        }
        "volume" => {
            if node.args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            Flags::parse(&node.flags, NO_FLAGS)?;
            let mut volumes = Vec::new();
            for volume in &node.args {
                let volume = volume.trim();
                if volume.is_empty() {
                    return Err("VOLUME specified can not be an empty string".to_string());
                }
                volumes.push(volume.to_string());
            }
            InstructionKind::Volume(volumes)
        }
        // BuildKit does not check STOPSIGNAL's flags.
        "stopsignal" => {
            if node.args.len() != 1 {
                return Err(exactly_one("STOPSIGNAL"));
            }
            InstructionKind::StopSignal(node.args[0].clone())
        }
        "arg" => {
            if node.args.is_empty() {
                return Err(at_least_one("ARG"));
            }
            Flags::parse(&node.flags, NO_FLAGS)?;
            let mut decls = Vec::new();
            for word in &node.args {
                let decl = match word.split_once('=') {
                    Some(("", _)) => return Err("ARG names can not be blank".to_string()),
                    Some((name, value)) => ArgDecl {
                        name: name.to_string(),
                        default: Some(value.to_string()),
                    },
                    None => ArgDecl {
                        name: word.clone(),
                        default: None,
                    },
                };
                decls.push(decl);
            }
            InstructionKind::Arg(decls)
        }
        "shell" => {
            Flags::parse(&node.flags, NO_FLAGS)?;
            if node.args.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".to_string());
            }
            InstructionKind::Shell(node.args.clone())
        }
        _ => {
            return Err(suggest::wrap(
                format!("unknown instruction: {}", node.command),
                &node.command,
                INSTRUCTIONS,
                false,
            ))
        }
    };
    Ok(Item::Instruction(Instruction {
        line: node.line,
        original: node.original.clone(),
        kind,
    }))
}

/// What an image's config keeps of an ONBUILD trigger (its `OnBuild` entry), as BuildKit
/// writes it: the trigger's line, then each heredoc's body and terminator.
pub fn onbuild_trigger_text(trigger: &Instruction) -> String {
    let heredocs: &[Heredoc] = match &trigger.kind {
        InstructionKind::Run(run) => &run.heredocs,
        InstructionKind::Copy(copy) | InstructionKind::Add(copy) => &copy.heredocs,
        _ => &[],
    };
    let mut text = trigger.original.clone();
    for heredoc in heredocs {
        text.push('\n');
        text.push_str(&heredoc.content);
        text.push_str(&heredoc.name);
    }
    text
}

/// The trigger's text: the line without its leading `ONBUILD`.
fn strip_onbuild(original: &str) -> String {
    let trimmed = original.trim_start();
    let rest = if trimmed.len() >= 7 && trimmed[..7].eq_ignore_ascii_case("onbuild") {
        &trimmed[7..]
    } else {
        trimmed
    };
    rest.trim_start().to_string()
}

/// RUN, CMD, ENTRYPOINT: exec form for a JSON array, else the text for the shell.
fn command_of(node: &Node) -> Command {
    if node.json {
        Command::Exec(node.args.clone())
    } else {
        Command::Shell(node.args.join(" "))
    }
}

fn convert_from(node: &Node) -> Result<Item, Msg> {
    let args = &node.args;
    let name = match args.len() {
        3 if args[1].eq_ignore_ascii_case("as") => {
            let name = args[2].to_lowercase();
            if !valid_stage_name(&name) {
                return Err(format!(
                    "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                    args[2]
                ));
            }
            Some(name)
        }
        1 => None,
        _ => return Err("FROM requires either one or three arguments".to_string()),
    };
    let flags = Flags::parse(&node.flags, &[("platform", FlagKind::String)])?;
    Ok(Item::From {
        from: From {
            image: args[0].clone(),
            platform: flags.string("platform"),
            line: node.line,
            original: node.original.trim().to_string(),
        },
        name,
    })
}

/// BuildKit's `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn convert_copy(node: &Node, add: bool) -> Result<InstructionKind, Msg> {
    let command = if add { "ADD" } else { "COPY" };
    if node.args.len() < 2 {
        return Err(format!(
            "{command} requires at least two arguments, but only one was provided. Destination could not be determined"
        ));
    }
    let accepted: &[(&str, FlagKind)] = if add {
        &[
            ("chown", FlagKind::String),
            ("chmod", FlagKind::String),
            ("link", FlagKind::Bool),
            ("keep-git-dir", FlagKind::Bool),
            ("checksum", FlagKind::String),
            ("unpack", FlagKind::Unsupported),
            ("exclude", FlagKind::Unsupported),
        ]
    } else {
        &[
            ("chown", FlagKind::String),
            ("from", FlagKind::String),
            ("chmod", FlagKind::String),
            ("link", FlagKind::Bool),
            ("parents", FlagKind::Unsupported),
            ("exclude", FlagKind::Unsupported),
        ]
    };
    let flags = Flags::parse(&node.flags, accepted)?;
    let (dest, sources) = node.args.split_last().expect("two arguments checked above");
    if heredoc_name(dest).is_some() {
        return Err(format!(
            "{command} cannot accept a heredoc as a destination"
        ));
    }
    let copy = Copy {
        sources: sources.to_vec(),
        dest: dest.clone(),
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        checksum: flags.string("checksum"),
        heredocs: node.heredocs.clone(),
    };
    Ok(if add {
        InstructionKind::Add(copy)
    } else {
        InstructionKind::Copy(copy)
    })
}

fn convert_healthcheck(node: &Node) -> Result<InstructionKind, Msg> {
    let Some(kind) = node.args.first() else {
        return Err(at_least_one("HEALTHCHECK"));
    };
    let kind = kind.to_uppercase();
    let args = &node.args[1..];
    if kind == "NONE" {
        if !args.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".to_string());
        }
        // BuildKit does not look at the flags of HEALTHCHECK NONE.
        return Ok(InstructionKind::Healthcheck(Healthcheck::Disable));
    }
    let flags = Flags::parse(
        &node.flags,
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    )?;
    if kind != "CMD" {
        return Err(format!("Unknown type {kind:?} in HEALTHCHECK (try CMD)"));
    }
    if args.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".to_string());
    }
    let test = if node.json {
        Command::Exec(args.to_vec())
    } else {
        Command::Shell(args.join(" "))
    };
    let interval = |name: &str| -> Result<Option<Duration>, Msg> {
        let Some(text) = flags.string(name).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let nanos = parse_go_duration(&text)?;
        if nanos == 0 {
            return Ok(None);
        }
        if nanos < 1_000_000 {
            return Err(format!("Interval {name:?} cannot be less than 1ms"));
        }
        Ok(Some(Duration::from_nanos(nanos as u64)))
    };
    let retries = match flags.string("retries").filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => {
            let value: i64 = text
                .parse()
                .ok()
                .filter(|v| i32::try_from(*v).is_ok())
                .ok_or_else(|| format!("strconv.ParseInt: parsing {text:?}: invalid syntax"))?;
            if value < 0 {
                return Err(format!("--retries cannot be negative ({value})"));
            }
            (value > 0).then_some(value as u32)
        }
    };
    Ok(InstructionKind::Healthcheck(Healthcheck::Check {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    }))
}
