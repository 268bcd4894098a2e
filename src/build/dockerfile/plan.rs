//! The stage plan: which stages a target needs, in what order, from what base, and which may
//! build at the same time. FROM lines are expanded here with the global ARGs (build args
//! overriding their defaults) and BuildKit's predefined platform ARGs.
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Result};

use super::ast::{Dockerfile, Instruction, InstructionKind, Stage};
use super::expand::expand_word;
use super::mount::parse_mount;
use super::suggest;

/// Build args Docker accepts without an ARG (the proxy variables, any case): never reported
/// unused.
const BUILTIN_BUILD_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The machine berth runs on, in OCI's names.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `linux/amd64`, `linux/arm64/v8`, `linux` (host architecture).
    pub fn parse(text: &str) -> Result<Platform> {
        let parts: Vec<&str> = text.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            bail!("invalid platform {text:?}: expected os[/arch[/variant]]");
        }
        let host = Platform::host();
        Ok(Platform {
            os: parts[0].to_lowercase(),
            architecture: parts
                .get(1)
                .map(|a| a.to_lowercase())
                .unwrap_or(host.architecture),
            variant: parts.get(2).map(|v| v.to_lowercase()),
        }
        .normalized())
    }

    /// containerd's normalization: arm64's `v8` is the default and is dropped.
    fn normalized(mut self) -> Platform {
        if self.architecture == "arm64" && self.variant.as_deref() == Some("v8") {
            self.variant = None;
        }
        self
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// BuildKit's predefined platform ARGs (BUILDPLATFORM, TARGETOS, ...; TARGETSTAGE is added by
/// the plan).
pub fn platform_args(build: &Platform, target: &Platform) -> BTreeMap<String, String> {
    let mut args = BTreeMap::new();
    for (prefix, platform) in [("BUILD", build), ("TARGET", target)] {
        args.insert(format!("{prefix}PLATFORM"), platform.to_string());
        args.insert(format!("{prefix}OS"), platform.os.clone());
        args.insert(format!("{prefix}ARCH"), platform.architecture.clone());
        args.insert(
            format!("{prefix}VARIANT"),
            platform.variant.clone().unwrap_or_default(),
        );
        args.insert(format!("{prefix}OSVERSION"), String::new());
    }
    args
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference (expanded).
    Image(String),
}

/// Where a `COPY --from` or `RUN --mount=...,from=` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stage(usize),
    Image(String),
}

/// A `--from` of one instruction of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    /// Index in the stage's instructions; with `onbuild`, in its base stage's instructions
    /// (the ONBUILD whose trigger runs first in this stage).
    pub instruction: usize,
    pub onbuild: bool,
    pub source: Source,
}

/// One stage to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    /// Index in the Dockerfile's stages.
    pub index: usize,
    pub name: Option<String>,
    pub base: Base,
    /// `FROM --platform=`, expanded.
    pub platform: Option<String>,
    /// The stages this one needs built first (base and `--from`s), by index.
    pub depends_on: Vec<usize>,
    /// Every `--from` of the stage's instructions, resolved.
    pub sources: Vec<SourceRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The stages the target needs, dependencies first, the target last.
    pub stages: Vec<PlannedStage>,
    /// Stage indexes in waves: a stage's dependencies are all in earlier waves, so the stages
    /// of one wave may build in parallel.
    pub waves: Vec<Vec<usize>>,
    /// The target stage's index.
    pub target: usize,
    /// Global ARGs with a value (defaults expanded, build args applied): what a stage's
    /// `ARG NAME` without a default takes.
    pub global_args: BTreeMap<String, String>,
    /// Predefined platform ARGs (in scope in FROM; in a stage once declared).
    pub platform_args: BTreeMap<String, String>,
    /// Build args no ARG of the planned stages (nor a global ARG) declares, sorted: the
    /// legacy builder warned about them (BuildKit says nothing).
    pub unused_build_args: Vec<String>,
}

impl Plan {
    /// Docker's warning for unused build args, if any.
    pub fn unused_build_args_warning(&self) -> Option<String> {
        if self.unused_build_args.is_empty() {
            return None;
        }
        Some(format!(
            "[Warning] One or more build-args [{}] were not consumed",
            self.unused_build_args.join(" ")
        ))
    }

    /// The planned stage for a Dockerfile stage index.
    pub fn stage(&self, index: usize) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.index == index)
    }
}

/// Plans the build of `target` (default: the last stage) for the host platform.
pub fn plan(
    df: &Dockerfile,
    target: Option<&str>,
    build_args: &BTreeMap<String, String>,
) -> Result<Plan> {
    let host = Platform::host();
    plan_for(df, target, build_args, &host, &host)
}

/// Plans the build of `target` for a target platform (`--platform`), built on `build`.
pub fn plan_for(
    df: &Dockerfile,
    target: Option<&str>,
    build_args: &BTreeMap<String, String>,
    build: &Platform,
    target_platform: &Platform,
) -> Result<Plan> {
    let located = |line: usize, message: String| anyhow!("{}:{}: {}", df.name, line, message);

    let target = match target {
        None => df.stages.len() - 1,
        Some(name) => find_stage(&df.stages, &name.to_lowercase()).ok_or_else(|| {
            let names: Vec<&str> = df.stages.iter().filter_map(|s| s.name.as_deref()).collect();
            anyhow!(suggest::wrap(
                format!("target stage {name:?} could not be found"),
                name,
                &names,
                false,
            ))
        })?,
    };

    // The automatic ARGs; a build arg of the same name overrides each.
    let mut platform_args = platform_args(build, target_platform);
    let target_stage = df.stages[target].name.as_deref().unwrap_or("default");
    platform_args.insert("TARGETSTAGE".to_string(), target_stage.to_string());
    for (name, value) in platform_args.iter_mut() {
        if let Some(given) = build_args.get(name) {
            value.clone_from(given);
        }
    }

    // Global ARGs in order: a default sees the ARGs before it; a build arg overrides it (and
    // then the default is not evaluated at all).
    let mut global_args: BTreeMap<String, String> = BTreeMap::new();
    for decl in &df.global_args {
        let value = match (build_args.get(&decl.name), &decl.default) {
            (Some(value), _) => Some(value.clone()),
            (None, Some(default)) => {
                let lookup = |name: &str| lookup_global(&global_args, &platform_args, name);
                Some(
                    expand_word(default, df.directives.escape, &lookup)
                        .map_err(|e| anyhow!("{}: ARG {}: {e}", df.name, decl.name))?,
                )
            }
            (None, None) => None,
        };
        if let Some(value) = value {
            global_args.insert(decl.name.clone(), value);
        }
    }
    let lookup = |name: &str| lookup_global(&global_args, &platform_args, name);
    let expand = |word: &str, line: usize| {
        expand_word(word, df.directives.escape, &lookup).map_err(|e| located(line, e.to_string()))
    };

    // Every stage's base and sources, resolved (only the needed ones are kept below).
    let mut resolved: Vec<PlannedStage> = Vec::with_capacity(df.stages.len());
    for stage in &df.stages {
        let line = stage.from.line;
        let image = expand(&stage.from.image, line)?;
        if image.is_empty() {
            return Err(located(
                line,
                format!("base name ({}) should not be blank", stage.from.image),
            ));
        }
        // BuildKit's order: the latest earlier stage of that name, then scratch, then an image.
        let parent = df.stages[..stage.index]
            .iter()
            .rev()
            .find(|s| s.name.as_deref() == Some(image.to_lowercase().as_str()));
        let base = match parent {
            Some(parent) => Base::Stage(parent.index),
            None if image == "scratch" => Base::Scratch,
            None => Base::Image(image),
        };
        let platform = match &stage.from.platform {
            Some(platform) => Some(expand(platform, line)?),
            None => None,
        };
        // A parent stage's ONBUILD triggers run first in this stage: their --from count too.
        let mut instructions: Vec<(usize, bool, &Instruction)> = Vec::new();
        if let Base::Stage(parent) = base {
            for (position, instruction) in df.stages[parent].instructions.iter().enumerate() {
                if let InstructionKind::Onbuild(trigger) = &instruction.kind {
                    instructions.push((position, true, trigger));
                }
            }
        }
        instructions.extend(
            stage
                .instructions
                .iter()
                .enumerate()
                .map(|(position, instruction)| (position, false, instruction)),
        );
        let mut sources = Vec::new();
        for (position, onbuild, instruction) in instructions {
            for reference in from_references(&instruction.kind) {
                let source = resolve_reference(&df.stages, stage, &reference)
                    .map_err(|e| located(instruction.line, e))?;
                sources.push(SourceRef {
                    instruction: position,
                    onbuild,
                    source,
                });
            }
        }
        let mut depends_on: BTreeSet<usize> = sources
            .iter()
            .filter_map(|s| match s.source {
                Source::Stage(index) => Some(index),
                Source::Image(_) => None,
            })
            .collect();
        if let Base::Stage(index) = base {
            depends_on.insert(index);
        }
        resolved.push(PlannedStage {
            index: stage.index,
            name: stage.name.clone(),
            base,
            platform,
            depends_on: depends_on.into_iter().collect(),
            sources,
        });
    }

    // Dependencies first (depth-first from the target), refusing cycles.
    let mut order = Vec::new();
    let mut state = vec![Visit::New; df.stages.len()];
    visit(target, &resolved, &df.stages, &mut state, &mut order)?;

    let mut wave_of = vec![0usize; df.stages.len()];
    for &index in &order {
        wave_of[index] = resolved[index]
            .depends_on
            .iter()
            .map(|&dep| wave_of[dep] + 1)
            .max()
            .unwrap_or(0);
    }
    let wave_count = order.iter().map(|&i| wave_of[i] + 1).max().unwrap_or(0);
    let mut waves = vec![Vec::new(); wave_count];
    for &index in &order {
        waves[wave_of[index]].push(index);
    }
    for wave in &mut waves {
        wave.sort_unstable();
    }

    // Build args that nothing declares.
    let mut declared: BTreeSet<&str> = df.global_args.iter().map(|a| a.name.as_str()).collect();
    for &index in &order {
        for instruction in &df.stages[index].instructions {
            if let InstructionKind::Arg(decls) = &instruction.kind {
                declared.extend(decls.iter().map(|d| d.name.as_str()));
            }
        }
    }
    let unused_build_args = build_args
        .keys()
        .filter(|k| {
            !declared.contains(k.as_str())
                && !platform_args.contains_key(k.as_str())
                && !BUILTIN_BUILD_ARGS.iter().any(|b| b.eq_ignore_ascii_case(k))
        })
        .cloned()
        .collect();

    Ok(Plan {
        stages: order.iter().map(|&i| resolved[i].clone()).collect(),
        waves,
        target,
        global_args,
        platform_args,
        unused_build_args,
    })
}

fn lookup_global(
    global_args: &BTreeMap<String, String>,
    platform_args: &BTreeMap<String, String>,
    name: &str,
) -> Option<String> {
    global_args
        .get(name)
        .or_else(|| platform_args.get(name))
        .cloned()
}

/// A stage by (lowercase) name.
fn find_stage(stages: &[Stage], name: &str) -> Option<usize> {
    stages
        .iter()
        .rev()
        .find(|s| s.name.as_deref() == Some(name))
        .map(|s| s.index)
}

/// How BuildKit names a stage in messages: its AS name, else `stage-N`.
fn stage_label(stage: &Stage) -> String {
    stage
        .name
        .clone()
        .unwrap_or_else(|| format!("stage-{}", stage.index))
}

/// Where an instruction's `--from` reads, from the stage `current`.
enum Reference {
    /// `COPY --from=NAME|INDEX|IMAGE`.
    Copy(String),
    /// `RUN --mount=...,from=NAME|IMAGE`.
    Mount(String),
}

/// Resolves a `--from`: no variables; COPY takes a stage name or index of an earlier stage,
/// a mount a stage name; anything else is an image.
fn resolve_reference(
    stages: &[Stage],
    current: &Stage,
    reference: &Reference,
) -> Result<Source, String> {
    match reference {
        Reference::Copy(from) => {
            if from.contains('$') {
                return Err("variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround".to_string());
            }
            let stage = match from.parse::<i64>() {
                Ok(index) => match usize::try_from(index) {
                    Ok(index) if index < stages.len() => index,
                    _ => return Err(format!("invalid stage index {index}")),
                },
                Err(_) => match find_stage(stages, &from.to_lowercase()) {
                    Some(index) => index,
                    None => return Ok(Source::Image(from.clone())),
                },
            };
            if stage >= current.index {
                return Err(format!(
                    "cannot copy from stage {:?}, it needs to be defined before current stage {:?}",
                    stage_label(&stages[stage]),
                    stage_label(current)
                ));
            }
            Ok(Source::Stage(stage))
        }
        // The parser refused variables in a mount's `from`.
        Reference::Mount(from) => Ok(match find_stage(stages, &from.to_lowercase()) {
            Some(index) => Source::Stage(index),
            None => Source::Image(from.clone()),
        }),
    }
}

/// The `--from` values of an instruction: COPY's flag and RUN mounts' `from=`.
fn from_references(kind: &InstructionKind) -> Vec<Reference> {
    match kind {
        InstructionKind::Copy(copy) => copy.from.iter().cloned().map(Reference::Copy).collect(),
        InstructionKind::Run(run) => run
            .mounts
            .iter()
            .filter_map(|mount| parse_mount(mount, None).ok()?.from)
            .map(Reference::Mount)
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    InProgress,
    Done,
}

fn visit(
    index: usize,
    resolved: &[PlannedStage],
    stages: &[Stage],
    state: &mut [Visit],
    order: &mut Vec<usize>,
) -> Result<()> {
    match state[index] {
        Visit::Done => return Ok(()),
        Visit::InProgress => {
            let stage = &stages[index];
            let name = stage.name.clone().unwrap_or_else(|| index.to_string());
            bail!("circular dependency detected on stage: {name}");
        }
        Visit::New => {}
    }
    state[index] = Visit::InProgress;
    for &dep in &resolved[index].depends_on {
        visit(dep, resolved, stages, state, order)?;
    }
    state[index] = Visit::Done;
    order.push(index);
    Ok(())
}
