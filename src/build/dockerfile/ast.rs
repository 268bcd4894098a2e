//! A parsed Dockerfile. Words keep their quotes and `$` references as written: the executor
//! expands them (BuildKit's word processing) with the variables in scope at that step, because
//! ARG and ENV change what is in scope instruction by instruction.
use std::time::Duration;

/// A whole Dockerfile: its parser directives, the ARGs before the first FROM, and its stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The name errors use (`Dockerfile`, `app.Dockerfile`, `-`).
    pub name: String,
    pub directives: Directives,
    /// ARGs declared before the first FROM: in scope for FROM lines, and in a stage only once
    /// re-declared there without a value.
    pub global_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
}

/// Parser directives (`# escape=`, `# syntax=`), read only before the first instruction.
#[derive(Debug, Clone, PartialEq)]
pub struct Directives {
    pub escape: char,
    pub syntax: Option<String>,
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Position among the stages (what `COPY --from=0` names).
    pub index: usize,
    /// The `AS` name, lowercased as Docker does.
    pub name: Option<String>,
    pub from: From,
    pub instructions: Vec<Instruction>,
}

/// `FROM [--platform=P] IMAGE [AS NAME]`; `image` unexpanded (global ARGs apply).
#[derive(Debug, Clone, PartialEq)]
pub struct From {
    pub image: String,
    pub platform: Option<String>,
    pub line: usize,
    pub original: String,
}

/// One instruction after a FROM.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// The 1-based line the instruction starts on.
    pub line: usize,
    /// The instruction as written, continuation lines concatenated as BuildKit does (the
    /// escape removed, each line's own whitespace kept; history's `created_by`, the build
    /// output's step line).
    pub original: String,
    pub kind: InstructionKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InstructionKind {
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    Copy(Copy),
    Add(Copy),
    /// `ENV K=V ...` or the legacy `ENV K V`; pairs in order.
    Env(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    Label(Vec<(String, String)>),
    Workdir(String),
    User(String),
    /// Ports as written (`80`, `53/udp`, `${PORT}`).
    Expose(Vec<String>),
    /// Paths (JSON array or words).
    Volume(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// The trigger, parsed (ONBUILD ONBUILD, FROM and MAINTAINER are refused by the parser).
    Onbuild(Box<Instruction>),
    Shell(Vec<String>),
    Maintainer(String),
}

/// Shell form (run through SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// `<<EOF` ... `EOF` bodies attached to RUN or COPY/ADD. `content` is the body as written
/// (line endings and leading tabs kept); `expand::heredoc_content` gives a COPY/ADD file's
/// text (tabs chomped for `<<-`, variables expanded when `expand`).
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// False when the delimiter was quoted (`<<'EOF'`, `<<"EOF"`): no variable expansion.
    pub expand: bool,
    /// `<<-EOF`: leading tabs removed.
    pub strip_tabs: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub command: Command,
    /// `--network=default|none|host`.
    pub network: Option<String>,
    /// `--mount=...` specs as written.
    pub mounts: Vec<String>,
    pub heredocs: Vec<Heredoc>,
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct Copy {
    /// Sources as written (globs, `<<EOF` names of heredocs).
    pub sources: Vec<String>,
    pub dest: String,
    /// `--from=STAGE|INDEX|IMAGE`.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// ADD `--keep-git-dir`, `--checksum`: kept for errors; only `checksum` is acted on.
    pub checksum: Option<String>,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`.
    Disable,
    Check {
        test: Command,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}
