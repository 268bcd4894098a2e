//! The executor: the stages the target needs, in order, each from its base (an image of the
//! store, `scratch`, or an earlier stage), each instruction a step whose result is looked up in
//! the cache or made (a RUN container, a copy, a config change), and the last stage's image
//! stored and named.

use super::cache::{Cache, CacheKey};
use super::config_edit as edit;
use super::context::Context as BuildContext;
use super::copy::{self, CopyArgs};
use super::dockerfile::ast::{Command, Dockerfile, Instruction, InstructionKind, Run};
use super::dockerfile::expand::heredoc_content;
use super::dockerfile::mount::{parse_mount, MountType};
use super::dockerfile::plan::{plan_for, Base, PlannedStage, Platform};
use super::dockerfile::run_script::{run_script, RunScript};
use super::image_state::ImageState;
use super::interrupt;
use super::layers::StepRoot;
use super::output::Output;
use super::run::{self, Network, RunMount, RunRequest, BOUND_FILES};
use super::vars::Scope;
use super::workdir::BuildWork;
use crate::image::reference::Reference;
use crate::image::store::Store;
use crate::image::time::{format_rfc3339, now_rfc3339_nanos};
use crate::image::Digest;
use crate::runtime::inroot::{self, Create};
use anyhow::{bail, Context, Result};
use oci_spec::image::Descriptor;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to build.
pub struct BuildRequest<'a> {
    pub dockerfile: &'a Dockerfile,
    /// The context (empty for a Dockerfile read from stdin).
    pub context: &'a BuildContext,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub platform: Option<String>,
    pub labels: Vec<(String, String)>,
    pub network: Network,
}

/// A built image, stored (unnamed until the caller tags it).
pub struct Built {
    pub id: Digest,
    pub manifest: Descriptor,
    pub state: ImageState,
}

/// A failing RUN: Docker's message, the exit code of the command.
#[derive(Debug)]
pub struct RunFailed {
    pub command: String,
    pub code: i32,
}

impl std::fmt::Display for RunFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "The command '{}' returned a non-zero code: {}",
            self.command, self.code
        )
    }
}

impl std::error::Error for RunFailed {}

/// The stage results the later stages use (FROM, COPY --from).
pub(super) struct StageResult {
    pub state: ImageState,
    pub key: CacheKey,
}

pub(super) struct Executor<'a> {
    store: &'a Store,
    pub work: &'a BuildWork,
    req: &'a BuildRequest<'a>,
    cache: Cache,
    /// The directories of `RUN --mount=type=cache`, kept from build to build.
    mounts_dir: PathBuf,
    pub out: &'a mut Output,
    platform: String,
    /// Global ARGs (and the platform args) as valued for this build.
    globals: BTreeMap<String, String>,
    pub results: HashMap<usize, StageResult>,
    /// The stage being built (in its step directories and container ids).
    stage_index: usize,
    step: usize,
    total: usize,
    /// The default network, opened for the first RUN on it.
    bridge: Option<run::Bridge>,
    /// `SOURCE_DATE_EPOCH`: the time of history entries and the image, and the latest
    /// mtime in the layers this build makes.
    epoch: Option<i64>,
}

/// Builds `req`: every stage the target needs, in order. The result is stored, not named.
pub fn build(
    store: &Store,
    work: &BuildWork,
    cache_dir: PathBuf,
    req: &BuildRequest,
    out: &mut Output,
) -> Result<Built> {
    let df = req.dockerfile;
    let target_platform = match &req.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let plan = plan_for(
        df,
        req.target.as_deref(),
        &req.build_args,
        &Platform::host(),
        &target_platform,
    )?;
    // SOURCE_DATE_EPOCH is the executor's to use (see `now`), declared or not.
    let unused: Vec<&str> = plan
        .unused_build_args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "SOURCE_DATE_EPOCH")
        .collect();
    if !unused.is_empty() {
        eprintln!(
            "[Warning] One or more build-args [{}] were not consumed",
            unused.join(" ")
        );
    }
    let total = plan
        .stages
        .iter()
        .map(|s| 1 + df.stages[s.index].instructions.len())
        .sum();
    // What a stage's `ARG NAME` without a default takes: the global ARG's value, else the
    // predefined platform arg of that name.
    let mut globals = plan.platform_args.clone();
    globals.extend(plan.global_args.clone());
    let mut ex = Executor {
        store,
        work,
        req,
        mounts_dir: cache_dir.with_file_name("cache-mounts"),
        cache: Cache::new(cache_dir, req.no_cache),
        out,
        platform: target_platform.to_string(),
        globals,
        results: HashMap::new(),
        stage_index: 0,
        step: 0,
        total,
        bridge: None,
        epoch: source_date_epoch(&req.build_args)?,
    };
    super::stages::build_all(&mut ex, &plan.stages)?;
    let mut state = ex
        .results
        .remove(&plan.target)
        .context("the target stage was not built")?
        .state;
    if !req.labels.is_empty() {
        edit::labels_from_cli(&mut state, &req.labels);
    }
    let manifest = state.write(store)?;
    Ok(Built {
        id: state.id(),
        manifest,
        state,
    })
}

/// `SOURCE_DATE_EPOCH` of the build args (the CLI puts the environment's there, as buildx
/// does): seconds since the epoch.
pub fn source_date_epoch(build_args: &BTreeMap<String, String>) -> Result<Option<i64>> {
    match build_args.get("SOURCE_DATE_EPOCH") {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(secs) if secs >= 0 => Ok(Some(secs)),
            _ => bail!("invalid SOURCE_DATE_EPOCH {v:?}: want seconds since 1970 (a number)"),
        },
    }
}

/// Expands `word` with `vars` as the Dockerfile's escape character says.
fn expand(df: &Dockerfile, word: &str, vars: &BTreeMap<String, String>) -> Result<String> {
    super::dockerfile::expand_word(word, df.directives.escape, &|k| vars.get(k).cloned())
}

fn expand_all(
    df: &Dockerfile,
    words: &[String],
    vars: &BTreeMap<String, String>,
) -> Result<Vec<String>> {
    words.iter().map(|w| expand(df, w, vars)).collect()
}

impl Executor<'_> {
    /// The time history entries and the image get: `SOURCE_DATE_EPOCH` when given as a build
    /// arg (reproducible configs, as BuildKit), else now.
    fn now(&self) -> String {
        match self.epoch {
            Some(secs) => format_rfc3339(secs),
            None => now_rfc3339_nanos(),
        }
    }

    fn where_(&self, line: usize) -> String {
        format!("{}:{line}", self.req.dockerfile.name)
    }

    /// The number of the first step of each planned stage (its FROM), in plan order.
    pub fn first_steps(&self, stages: &[PlannedStage]) -> HashMap<usize, usize> {
        let mut n = 1;
        let mut out = HashMap::new();
        for ps in stages {
            out.insert(ps.index, n);
            n += 1 + self.req.dockerfile.stages[ps.index].instructions.len();
        }
        out
    }

    /// Builds a planned stage whose first step is numbered `first`.
    pub fn stage(&mut self, ps: &PlannedStage, first: usize) -> Result<StageResult> {
        let df = self.req.dockerfile;
        let stage = &df.stages[ps.index];
        self.stage_index = ps.index;
        self.step = self.step.max(first - 1) + 1;
        self.out.step(self.step, self.total, &stage.from.original);
        let started = Instant::now();
        let platform = ps.platform.clone().unwrap_or_else(|| self.platform.clone());
        let (mut state, mut key, image) = self
            .base(&ps.base, &platform)
            .with_context(|| self.where_(stage.from.line))?;
        if let Some(secs) = self.epoch {
            // Clamped times are part of what every step makes (its layer's mtimes, its
            // history's time): a step made without them is another step.
            if !matches!(ps.base, Base::Stage(_)) {
                key = key.child(&["SOURCE_DATE_EPOCH", &secs.to_string()]);
            }
        }
        self.out.done(&state.id().to_string(), started.elapsed());

        let mut scope = Scope::default();
        let mut cmd_set = false;
        // The base image's ONBUILD triggers run first, then the stage's own instructions.
        let triggers = edit::take_onbuild(&mut state);
        let mut instructions: Vec<Instruction> = Vec::new();
        for t in &triggers {
            let parsed = super::dockerfile::parse(
                &format!("FROM scratch\n{t}\n"),
                &format!("ONBUILD trigger of {image}"),
            )?;
            let trig = parsed
                .stages
                .into_iter()
                .next()
                .and_then(|s| s.instructions.into_iter().next())
                .with_context(|| format!("ONBUILD trigger {t:?} of {image}: no instruction"))?;
            instructions.push(trig);
        }
        if !instructions.is_empty() {
            self.total += instructions.len();
            self.out.note(&format!(
                "Running {} ONBUILD triggers of {image}",
                instructions.len()
            ));
        }
        instructions.extend(stage.instructions.iter().cloned());
        for ins in &instructions {
            interrupt::check()?;
            self.step += 1;
            self.out.step(self.step, self.total, &ins.original);
            let started = Instant::now();
            let (next_state, next_key, cached) = self
                .instruction(ins, &state, &key, &mut scope, &mut cmd_set)
                .with_context(|| self.where_(ins.line))?;
            state = next_state;
            key = next_key;
            if cached {
                self.out.cached();
            } else {
                self.out.done(&state.id().to_string(), started.elapsed());
            }
        }
        Ok(StageResult { state, key })
    }

    /// A stage's base: an earlier stage, `scratch`, or an image of the store (pulled when
    /// missing, or always with `--pull`). Also returns what to call it in messages.
    fn base(&mut self, base: &Base, platform: &str) -> Result<(ImageState, CacheKey, String)> {
        match base {
            Base::Stage(i) => {
                let r = self
                    .results
                    .get(i)
                    .with_context(|| format!("stage {i} is used before it is built"))?;
                Ok((r.state.clone(), r.key.clone(), format!("stage {i}")))
            }
            Base::Scratch => Ok((
                ImageState::scratch(),
                CacheKey::base("scratch", platform),
                "scratch".into(),
            )),
            Base::Image(image) => {
                let manifest = self.resolve_image(image, platform)?;
                let state = ImageState::from_store(self.store, &manifest)?;
                Ok((
                    state,
                    CacheKey::base(&manifest.to_string(), platform),
                    image.clone(),
                ))
            }
        }
    }

    /// The manifest digest of image `arg` (a reference or an image id) for `platform`.
    fn resolve_image(&mut self, arg: &str, platform: &str) -> Result<Digest> {
        let found = self
            .store
            .lookup(arg)
            .ok()
            .and_then(|h| h.into_iter().next());
        let desc = match found {
            Some((r, desc)) if !self.req.pull || r.digest.is_some() => desc,
            found => {
                let r = Reference::parse(arg)
                    .map_err(|_| anyhow::anyhow!("invalid reference format: {arg:?}"))?;
                let options = crate::image::pull::PullOptions {
                    platform: Some(platform.to_string()),
                    transport: Default::default(),
                    auth_file: None,
                    quiet: self.out.quiet(),
                    jobs: 4,
                };
                match crate::image::pull::pull(self.store, &r, &options) {
                    Ok(p) => p.manifest,
                    // `--pull` with the registry out of reach: the local image will do.
                    Err(e) => match found {
                        Some((_, desc)) => {
                            eprintln!("berth build: {e:#}; using the local {arg}");
                            desc
                        }
                        None => {
                            return Err(e).with_context(|| {
                                format!("image {arg} is not in the store and could not be pulled")
                            })
                        }
                    },
                }
            }
        };
        let (manifest, _) = self.store.image_manifest(&desc, Some(platform))?;
        Ok(manifest)
    }

    /// One instruction: its cache key, and the state after it (from the cache, or made).
    fn instruction(
        &mut self,
        ins: &Instruction,
        state: &ImageState,
        key: &CacheKey,
        scope: &mut Scope,
        cmd_set: &mut bool,
    ) -> Result<(ImageState, CacheKey, bool)> {
        let df = self.req.dockerfile;
        let vars = scope.variables(state);
        let mut next = state.clone();
        let now = self.now();
        // Instructions that only change the config: applied, keyed by their expanded text.
        let text: String = match &ins.kind {
            InstructionKind::Run(r) => return self.run_step(r, state, key, scope),
            InstructionKind::Copy(_) | InstructionKind::Add(_) => {
                return self.copy_step(ins, state, key, scope)
            }
            InstructionKind::Workdir(w) => {
                let dir = expand(df, w, &vars)?;
                let path = edit::workdir_path(state, &dir);
                return self.workdir_step(&path, state, key);
            }
            InstructionKind::Arg(decls) => {
                for d in decls {
                    let default = match &d.default {
                        Some(v) => Some(expand(df, v, &vars)?),
                        None => None,
                    };
                    scope.declare(&d.name, default, &self.req.build_args, &self.globals);
                }
                // An ARG changes no image and its value is not in the chain: what it changes
                // reaches later keys through their expanded text and RUN's args (BuildKit's
                // way: a new value re-runs only the steps that use it).
                let next_key = key.child(&["ARG", &ins.original]);
                let cached = self.cache.lookup(self.store, &next_key).is_some();
                if !cached {
                    self.cache.record(&next_key, &next)?;
                }
                return Ok((next, next_key, cached));
            }
            InstructionKind::Env(pairs) => {
                let pairs = expand_pairs(df, pairs, &vars)?;
                edit::env(&mut next, &pairs);
                format!("ENV {}", join_pairs(&pairs))
            }
            InstructionKind::Label(pairs) => {
                let pairs = expand_pairs(df, pairs, &vars)?;
                edit::label(&mut next, &pairs);
                format!("LABEL {}", join_pairs(&pairs))
            }
            InstructionKind::Cmd(c) => {
                edit::cmd(&mut next, c, cmd_set);
                format!("CMD {}", json_args(&edit::command_args(&next, c)))
            }
            InstructionKind::Entrypoint(c) => {
                edit::entrypoint(&mut next, c, *cmd_set);
                format!("ENTRYPOINT {}", json_args(&edit::command_args(&next, c)))
            }
            InstructionKind::User(u) => {
                let u = expand(df, u, &vars)?;
                edit::user(&mut next, &u);
                format!("USER {u}")
            }
            InstructionKind::Expose(ports) => {
                let ports = expand_all(df, ports, &vars)?;
                edit::expose(&mut next, &ports)?;
                format!("EXPOSE {}", ports.join(" "))
            }
            InstructionKind::Volume(paths) => {
                let paths = expand_all(df, paths, &vars)?;
                edit::volume(&mut next, &paths)?;
                format!("VOLUME {}", json_args(&paths))
            }
            InstructionKind::StopSignal(s) => {
                let s = expand(df, s, &vars)?;
                edit::stop_signal(&mut next, &s)?;
                format!("STOPSIGNAL {s}")
            }
            InstructionKind::Healthcheck(h) => {
                edit::healthcheck(&mut next, h);
                ins.original.clone()
            }
            InstructionKind::Onbuild(trigger) => {
                let text = super::dockerfile::onbuild_trigger_text(trigger);
                edit::onbuild(&mut next, &text);
                format!("ONBUILD {text}")
            }
            InstructionKind::Shell(s) => {
                edit::shell(&mut next, s)?;
                format!("SHELL {}", json_args(s))
            }
            InstructionKind::Maintainer(m) => {
                let m = expand(df, m, &vars)?;
                edit::maintainer(&mut next, &m);
                format!("MAINTAINER {m}")
            }
        };
        let next_key = key.child(&[&text]);
        if let Some(hit) = self.cache.lookup(self.store, &next_key) {
            return Ok((hit, next_key, true));
        }
        next.push_history(&now, &edit::nop(&text), true);
        self.cache.record(&next_key, &next)?;
        Ok((next, next_key, false))
    }

    /// RUN: a container over the step's root; its changes become the step's layer.
    fn run_step(
        &mut self,
        r: &Run,
        state: &ImageState,
        key: &CacheKey,
        scope: &Scope,
    ) -> Result<(ImageState, CacheKey, bool)> {
        let network = match &r.network {
            Some(n) => Network::parse(n)?,
            None => self.req.network,
        };
        let mut scripts = Vec::new();
        let args: Vec<String> = match &r.command {
            Command::Exec(a) => a.clone(),
            Command::Shell(s) => {
                let mut a = edit::shell_of(state);
                match run_script(s, &r.heredocs) {
                    RunScript::Shell(text) => a.push(text),
                    RunScript::Program { name, content } => {
                        a.push(format!("{}/{name}", run::SCRIPT_DIR));
                        scripts.push((name, content));
                    }
                }
                a
            }
        };
        let run_args = scope.run_args(state, &self.req.build_args);
        // Docker's history text: the args a RUN saw, then the command.
        let shown_args: Vec<(String, String)> = run_args
            .iter()
            .filter(|(k, _)| !super::vars::PREDEFINED.contains(&k.as_str()))
            .cloned()
            .collect();
        let mut created_by = args.join(" ");
        if !shown_args.is_empty() {
            created_by = format!(
                "|{} {} {created_by}",
                shown_args.len(),
                join_pairs(&shown_args)
            );
        }
        let next_key = key.child(&[
            "RUN",
            &serde_json::to_string(&args)?,
            &join_pairs(&run_args),
            network.key(),
            &r.mounts.join("\n"),
            &serde_json::to_string(&scripts)?,
        ]);
        if let Some(hit) = self.cache.lookup(self.store, &next_key) {
            return Ok((hit, next_key, true));
        }
        let mut holds = MountHolds::default();
        let mounts = self.run_mounts(r, state, scope, &mut holds)?;
        let cc = state.container_config();
        let mut env = cc.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(
                0,
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            );
        }
        for (k, v) in &run_args {
            env.push(format!("{k}={v}"));
        }
        let step_dir = self.work.step_dir(self.stage_index, self.step);
        let lowers = state.lowers(self.store)?;
        let root = StepRoot::mount(&step_dir.join("fs"), &lowers)?;
        if network == Network::Default && self.bridge.is_none() {
            self.bridge = Some(run::Bridge::open(&self.work.data_root)?);
        }
        let req = RunRequest {
            id: self.work.container_id(self.stage_index, self.step),
            rootfs: &root.rootfs,
            bundle: &step_dir.join("bundle"),
            args: args.clone(),
            env,
            cwd: if cc.working_dir.is_empty() {
                "/".into()
            } else {
                cc.working_dir.clone()
            },
            user: cc.user.clone(),
            network,
            bridge: self.bridge.as_ref(),
            scripts,
            mounts,
        };
        let out = &mut *self.out;
        let exit = run::run(self.work.globals(), &req, &mut |b| out.run_output(b))?;
        // The bind mounts' roots go before the step's directory does.
        drop(holds);
        if exit.code != 0 {
            let swallowed = String::from_utf8_lossy(self.out.swallowed()).into_owned();
            if !swallowed.is_empty() {
                eprint!("{swallowed}");
            }
            return Err(RunFailed {
                command: args.join(" "),
                code: exit.code,
            }
            .into());
        }
        let hidden: Vec<String> = BOUND_FILES.iter().map(|s| s.to_string()).collect();
        let layer = root.finish(self.store, &hidden, state.docker_format, self.epoch)?;
        let _ = fs::remove_dir_all(&step_dir);
        let mut next = state.clone();
        let empty = layer.is_none();
        if let Some(l) = layer {
            next.push_layer(l);
        }
        next.push_history(&self.now(), &created_by, empty);
        self.cache.record(&next_key, &next)?;
        Ok((next, next_key, false))
    }

    /// WORKDIR: the config's working directory, and the directory made in the image when
    /// missing (a layer then, as Docker's builder makes one).
    fn workdir_step(
        &mut self,
        path: &str,
        state: &ImageState,
        key: &CacheKey,
    ) -> Result<(ImageState, CacheKey, bool)> {
        let next_key = key.child(&["WORKDIR", path]);
        if let Some(hit) = self.cache.lookup(self.store, &next_key) {
            return Ok((hit, next_key, true));
        }
        let step_dir = self.work.step_dir(self.stage_index, self.step);
        let lowers = state.lowers(self.store)?;
        let root = StepRoot::mount(&step_dir, &lowers)?;
        {
            let fd: OwnedFd = fs::File::open(&root.rootfs)?.into();
            inroot::resolve(fd.as_fd(), Path::new(path), Create::Dir)
                .with_context(|| format!("cannot make the working directory {path}"))?;
        }
        let layer = root.finish(self.store, &[], state.docker_format, self.epoch)?;
        let mut next = state.clone();
        edit::workdir(&mut next, path);
        let empty = layer.is_none();
        if let Some(l) = layer {
            next.push_layer(l);
        }
        next.push_history(&self.now(), &edit::nop(&format!("WORKDIR {path}")), empty);
        self.cache.record(&next_key, &next)?;
        Ok((next, next_key, false))
    }
}

fn expand_pairs(
    df: &Dockerfile,
    pairs: &[(String, String)],
    vars: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>> {
    // Docker expands all of an ENV's values with the variables from before the instruction.
    pairs
        .iter()
        .map(|(k, v)| Ok((expand(df, k, vars)?, expand(df, v, vars)?)))
        .collect()
}

fn join_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn json_args(a: &[String]) -> String {
    serde_json::to_string(a).expect("strings serialize")
}

/// What a RUN's bind mounts need until it ends: the stages' roots they bind from.
#[derive(Default)]
struct MountHolds {
    roots: Vec<StepRoot>,
}

impl Executor<'_> {
    /// `RUN --mount`: cache mounts (a directory of the build's data root kept across builds,
    /// by `id`, default the target), tmpfs mounts, and bind mounts of the context (read-only)
    /// or of a stage or image (`from=`; writes discarded); secret and ssh mounts are refused.
    /// What the mounts need while the RUN runs (mounted roots) goes into `holds`.
    fn run_mounts(
        &mut self,
        r: &Run,
        state: &ImageState,
        scope: &Scope,
        holds: &mut MountHolds,
    ) -> Result<Vec<RunMount>> {
        let df = self.req.dockerfile;
        let vars = scope.variables(state);
        let expander = |v: &str| expand(df, v, &vars).map_err(|e| format!("{e:#}"));
        let mut out = Vec::new();
        for spec in &r.mounts {
            let m = parse_mount(spec, Some(&expander))
                .map_err(|e| anyhow::anyhow!("--mount={spec}: {e}"))?;
            let target = m
                .target
                .clone()
                .with_context(|| format!("--mount={spec}: a target is required"))?;
            let target = crate::image::commit::clean_abs_path(&if target.starts_with('/') {
                target
            } else {
                format!("{}/{target}", state.container_config().working_dir)
            });
            match m.kind {
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let dir = self.mounts_dir.join(Digest::of_bytes(id.as_bytes()).hex());
                    if !dir.exists() {
                        use std::os::unix::fs::PermissionsExt;
                        fs::create_dir_all(&dir)
                            .with_context(|| format!("cannot create {}", dir.display()))?;
                        fs::set_permissions(
                            &dir,
                            fs::Permissions::from_mode(m.mode.unwrap_or(0o755)),
                        )?;
                        std::os::unix::fs::chown(&dir, m.uid.or(Some(0)), m.gid.or(Some(0)))?;
                    }
                    out.push(RunMount::Cache {
                        host: dir,
                        target,
                        readonly: m.readonly,
                    });
                }
                MountType::Tmpfs => out.push(RunMount::Tmpfs { target }),
                MountType::Bind => {
                    let source = m.source.clone().unwrap_or_else(|| "/".into());
                    let fd = match &m.from {
                        None => {
                            if !m.readonly {
                                bail!("--mount={spec}: a writable bind of the context is not supported by berth build");
                            }
                            self.req.context.open_beneath(Path::new(&source))?
                        }
                        Some(from) => {
                            let from_state = self.state_of(from)?;
                            let lowers = from_state.lowers(self.store)?;
                            let n = holds.roots.len();
                            let dir = self.work.step_dir(self.stage_index, self.step).join(format!("mount-{n}"));
                            let root = StepRoot::mount(&dir, &lowers)?;
                            let root_fd: OwnedFd = fs::File::open(&root.rootfs)?.into();
                            holds.roots.push(root);
                            inroot::resolve(root_fd.as_fd(), Path::new(&source), Create::Nothing)
                                .with_context(|| format!("--mount={spec}: {source}"))?
                        }
                    };
                    // The runtime binds by path: the real path the checked fd has (no
                    // symlinks left in it; the trees do not change while the build runs).
                    let real = fs::read_link(inroot::fd_path(&fd))
                        .with_context(|| format!("--mount={spec}: {source}"))?;
                    out.push(RunMount::Bind {
                        source: real,
                        target,
                        readonly: m.readonly,
                    });
                }
                other => bail!(
                    "--mount={spec}: type {other:?} is not supported by berth build (bind, cache and tmpfs are)"
                ),
            }
        }
        Ok(out)
    }
}

/// Where a `COPY --from` reads.
enum FromSource {
    Stage(usize),
    Image(String),
}

impl Executor<'_> {
    /// `--from=NAME|INDEX|IMAGE`: a stage built before this one (by name or index), else an
    /// image.
    fn source_of(&self, from: &str) -> FromSource {
        let df = self.req.dockerfile;
        let lower = from.to_ascii_lowercase();
        if let Some(s) = df
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return FromSource::Stage(s.index);
        }
        if let Ok(i) = from.parse::<usize>() {
            if i < df.stages.len() {
                return FromSource::Stage(i);
            }
        }
        FromSource::Image(from.to_string())
    }

    /// The image state `--from` names.
    fn state_of(&mut self, from: &str) -> Result<ImageState> {
        match self.source_of(from) {
            FromSource::Stage(i) => Ok(self
                .results
                .get(&i)
                .with_context(|| {
                    format!("COPY --from={from}: stage {i} is not built before this one")
                })?
                .state
                .clone()),
            FromSource::Image(image) => {
                let platform = self.platform.clone();
                let manifest = self.resolve_image(&image, &platform)?;
                ImageState::from_store(self.store, &manifest)
            }
        }
    }

    /// COPY and ADD: the sources planned against the step's root (mounted first: `--chown`
    /// names and the destination resolve in it), keyed by their content, then written.
    fn copy_step(
        &mut self,
        ins: &Instruction,
        state: &ImageState,
        key: &CacheKey,
        scope: &Scope,
    ) -> Result<(ImageState, CacheKey, bool)> {
        let (c, add) = match &ins.kind {
            InstructionKind::Copy(c) => (c, false),
            InstructionKind::Add(c) => (c, true),
            _ => bail!("internal: not a COPY or ADD"),
        };
        let verb = if add { "ADD" } else { "COPY" };
        let df = self.req.dockerfile;
        let vars = scope.variables(state);
        let lookup = |k: &str| vars.get(k).cloned();
        let mut sources = Vec::new();
        for s in &c.sources {
            // Heredoc names stay as written; the rest is expanded.
            if super::dockerfile::heredoc_name(s).is_some() {
                sources.push(s.clone());
            } else {
                sources.push(expand(df, s, &vars)?);
            }
        }
        let dest = expand(df, &c.dest, &vars)?;
        let chown = c
            .chown
            .as_deref()
            .map(|v| expand(df, v, &vars))
            .transpose()?;
        let chmod = c
            .chmod
            .as_deref()
            .map(|v| expand(df, v, &vars))
            .transpose()?;
        let from = c
            .from
            .as_deref()
            .map(|v| expand(df, v, &vars))
            .transpose()?;
        let heredocs: Vec<(String, Vec<u8>)> = c
            .heredocs
            .iter()
            .map(|h| Ok((h.name.clone(), heredoc_content(h, &lookup)?.into_bytes())))
            .collect::<Result<_>>()?;
        let workdir = state.container_config().working_dir;
        let workdir = if workdir.is_empty() {
            "/".to_string()
        } else {
            workdir
        };

        let step_dir = self.work.step_dir(self.stage_index, self.step);
        let from_root = match &from {
            Some(f) => {
                let from_state = self.state_of(f)?;
                let lowers = from_state.lowers(self.store)?;
                Some(StepRoot::mount(&step_dir.join("from"), &lowers)?)
            }
            None => None,
        };
        let lowers = state.lowers(self.store)?;
        let root = StepRoot::mount(&step_dir.join("fs"), &lowers)?;
        let args = CopyArgs {
            add,
            sources: &sources,
            dest: &dest,
            workdir: &workdir,
            chown: chown.as_deref(),
            chmod: chmod.as_deref(),
            checksum: c.checksum.as_deref(),
            heredocs: &heredocs,
        };
        let source = match &from_root {
            Some(r) => copy::Source::Root(&r.rootfs),
            None => copy::Source::Context(self.req.context),
        };
        let plan = copy::plan(&args, source, &root.rootfs)?;
        let digest = plan.content_digest(&root.rootfs)?;
        let mut text = format!("{verb} ");
        for (flag, v) in [("from", &from), ("chown", &chown), ("chmod", &chmod)] {
            if let Some(v) = v {
                text.push_str(&format!("--{flag}={v} "));
            }
        }
        text.push_str(&format!("{} {dest}", sources.join(" ")));
        let next_key = key.child(&[&text, &workdir, &digest]);
        if let Some(hit) = self.cache.lookup(self.store, &next_key) {
            return Ok((hit, next_key, true));
        }
        plan.apply(&root.rootfs)?;
        drop(from_root);
        let layer = root.finish(self.store, &[], state.docker_format, self.epoch)?;
        let _ = fs::remove_dir_all(&step_dir);
        let mut next = state.clone();
        let empty = layer.is_none();
        if let Some(l) = layer {
            next.push_layer(l);
        }
        // Docker's history names the content, not the context's paths.
        let created_by = format!(
            "/bin/sh -c #(nop) {verb} {}:{} in {dest} ",
            if sources.len() == 1 { "file" } else { "multi" },
            digest.trim_start_matches("sha256:")
        );
        next.push_history(&self.now(), &created_by, empty);
        self.cache.record(&next_key, &next)?;
        Ok((next, next_key, false))
    }
}
