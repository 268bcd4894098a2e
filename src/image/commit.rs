//! Layers and images made from a container's writable layer, and tars of whole trees:
//! - [`write_layer_tar`]: an overlay upper directory as an OCI layer (whiteouts as `.wh.NAME`,
//!   opaque directories as `.wh..wh..opq`, owners, modes, xattrs, hard links and devices);
//! - [`store_layer`]: that layer gzipped into the store, its diff id computed on the way;
//! - [`commit`]: `docker commit`, a new image of a base image plus that layer, with the
//!   config edits commit takes (author, message, `--change`), a history entry and a name;
//! - [`export_rootfs`]: `docker export`, a tar of a whole root filesystem.
//!
//! The trees are read by fd without following symlinks ([`super::fswalk`]): the container that
//! wrote them is not trusted, and may still be running.

use super::config::ImageConfig;
use super::digest::{Digest, DigestingWriter};
use super::fswalk::{walk, walk_hiding, WalkOptions};
use super::import::LayerBlob;
use super::reference::Reference;
use super::store::{host_platform, Store, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST_V2};
use super::tarstream::{Entry, Sink, TarSink};
use super::time::now_rfc3339;
use anyhow::{bail, Context, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::image::Descriptor;
use serde_json::{json, Map, Value};
use std::io::{BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn open_tree(dir: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", dir.display()))
}

/// Counts what passes to a sink, to tell an empty layer.
struct Counting<'a, S: Sink> {
    inner: &'a mut S,
    entries: u64,
}

impl<S: Sink> Sink for Counting<'_, S> {
    fn put(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<()> {
        self.entries += 1;
        self.inner.put(entry, data)
    }
    fn leave_dir(&mut self, entry: &Entry) -> Result<()> {
        self.inner.leave_dir(entry)
    }
}

/// Writes the overlay upper directory `upper` as an uncompressed OCI layer tar; returns the
/// number of entries written (0: the container changed nothing).
pub fn write_layer_tar(upper: &Path, out: &mut dyn Write) -> Result<u64> {
    write_layer_tar_hiding(upper, &[], out)
}

/// Like [`write_layer_tar`], leaving out the empty regular files at `hidden` (absolute
/// container paths; see [`super::changes::changes_hiding`]).
pub fn write_layer_tar_hiding(upper: &Path, hidden: &[String], out: &mut dyn Write) -> Result<u64> {
    let hidden: Vec<std::path::PathBuf> = hidden
        .iter()
        .map(|h| std::path::PathBuf::from(h.trim_start_matches('/')))
        .collect();
    let opts = WalkOptions {
        xattrs: true,
        hardlinks: true,
        one_filesystem: false,
        overlay_upper: true,
    };
    let mut tar = TarSink::new(out);
    let mut counting = Counting {
        inner: &mut tar,
        entries: 0,
    };
    walk_hiding(
        open_tree(upper)?,
        Path::new(""),
        opts,
        &hidden,
        &mut counting,
    )
    .with_context(|| format!("making a layer of {}", upper.display()))?;
    let entries = counting.entries;
    tar.finish()?;
    Ok(entries)
}

/// Writes the whole tree at `rootfs` as `docker export` does: every file with its owner,
/// mode, xattrs and hard links, names relative to the root (`bin/`, `etc/passwd`), no entry
/// for the root itself. Mount points below the root are written but not entered.
pub fn export_rootfs(rootfs: &Path, out: &mut dyn Write) -> Result<()> {
    let opts = WalkOptions {
        xattrs: true,
        hardlinks: true,
        one_filesystem: true,
        overlay_upper: false,
    };
    let mut tar = TarSink::new(BufWriter::with_capacity(1 << 16, out));
    walk(open_tree(rootfs)?, Path::new(""), opts, &mut tar)
        .with_context(|| format!("exporting {}", rootfs.display()))?;
    tar.finish()?.flush()?;
    Ok(())
}

/// Tars and gzips the upper directory (without the mount-point stubs at `hidden`) into the
/// store as a layer blob of `media_type`; None when the container changed nothing.
pub fn store_layer(
    store: &Store,
    upper: &Path,
    hidden: &[String],
    media_type: &'static str,
) -> Result<Option<LayerBlob>> {
    let temp = store.temp_ingest("layer")?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp.path())
        .with_context(|| format!("cannot create {}", temp.path().display()))?;
    // tar -> diff id hasher -> gzip -> blob hasher -> file.
    let blob_hasher = DigestingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let gz = flate2::write::GzEncoder::new(blob_hasher, flate2::Compression::default());
    let mut diff_hasher = DigestingWriter::new(gz);
    let entries = write_layer_tar_hiding(upper, hidden, &mut diff_hasher)?;
    if entries == 0 {
        return Ok(None);
    }
    let (diff_id, _, gz) = diff_hasher.finish();
    let blob_hasher = gz.finish().context("compressing the layer")?;
    let (blob, size, mut buffered) = blob_hasher.finish();
    buffered
        .flush()
        .with_context(|| format!("cannot write {}", temp.path().display()))?;
    if store.has_blob(&blob) {
        drop(temp);
    } else {
        temp.commit(&store.blob_path(&blob))?;
    }
    Ok(Some(LayerBlob {
        blob,
        size,
        media_type,
        diff_id,
    }))
}

/// What `docker commit` takes besides the container.
#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    /// `-a`: the image's author (replaces the base image's).
    pub author: Option<String>,
    /// `-m`: the commit message (the history entry's `comment`).
    pub message: Option<String>,
    /// `-c`: Dockerfile instructions applied to the config (CMD ENTRYPOINT ENV EXPOSE LABEL
    /// USER VOLUME WORKDIR STOPSIGNAL).
    pub changes: Vec<String>,
    /// The container's config (Docker's `Config` object: `Cmd`, `Env`, ...), which becomes
    /// the image's, as Docker commits it; None keeps the base image's.
    pub container_config: Option<Value>,
    /// The history entry's `created_by` (Docker: the container's command, joined by spaces).
    pub created_by: Option<String>,
    /// The name to give the new image.
    pub reference: Option<Reference>,
    /// Container paths of files bind-mounted over empty mount points the runtime made in
    /// the writable layer (`/etc/hosts`): those stubs are left out of the layer.
    pub hidden: Vec<String>,
}

/// A committed image.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The image id (the config digest), as `docker commit` prints it.
    pub id: Digest,
    /// The new manifest (stored; named when a reference was given).
    pub manifest: Descriptor,
    /// The new layer; None when the container changed nothing (no layer is added then).
    pub layer: Option<LayerBlob>,
}

/// `docker commit`: a new image made of the image manifest `base` (None: no base) and the
/// upper directory `upper` as its top layer. The new manifest has the base's format (OCI or
/// Docker schema 2). Bad `--change` values fail before anything is stored.
pub fn commit(
    store: &Store,
    base: Option<&Digest>,
    upper: &Path,
    opts: &CommitOptions,
) -> Result<Committed> {
    let (mut config, base_manifest) = match base {
        Some(m) => {
            let manifest: Value = store.read_json(m)?;
            let config_digest = manifest
                .pointer("/config/digest")
                .and_then(Value::as_str)
                .with_context(|| format!("manifest {m} names no config"))?;
            let config_digest = Digest::parse(config_digest)?;
            let config: Value = store.read_json(&config_digest)?;
            // Checked the usual way too: layers and diff ids must agree.
            let parsed: ImageConfig = serde_json::from_value(config.clone())
                .with_context(|| format!("image {m}: config {config_digest}"))?;
            let layers = manifest
                .get("layers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if parsed.rootfs.diff_ids.len() != layers {
                bail!(
                    "image {m}: the manifest has {layers} layers but the config lists {} diff ids",
                    parsed.rootfs.diff_ids.len()
                );
            }
            (config, Some(manifest))
        }
        None => {
            let platform = host_platform();
            let mut parts = platform.split('/');
            let os = parts.next().unwrap_or("linux");
            let arch = parts.next().unwrap_or("amd64");
            let mut c = json!({"architecture": arch, "os": os, "config": {},
                               "rootfs": {"type": "layers", "diff_ids": []}});
            if let Some(v) = parts.next() {
                c["variant"] = json!(v);
            }
            (c, None)
        }
    };
    let Some(root) = config.as_object_mut() else {
        bail!("the base image's config is not a JSON object");
    };
    if let Some(c) = &opts.container_config {
        if !c.is_object() {
            bail!("the container's config is not a JSON object");
        }
        root.insert("config".into(), c.clone());
    }
    let container_config = root.entry("config").or_insert_with(|| json!({}));
    if container_config.is_null() {
        *container_config = json!({});
    }
    let Some(cc) = container_config.as_object_mut() else {
        bail!("the image's config member \"config\" is not a JSON object");
    };
    apply_changes(cc, &opts.changes)?;

    let docker_format = base_manifest
        .as_ref()
        .and_then(|m| m.get("mediaType"))
        .and_then(Value::as_str)
        == Some(DOCKER_MANIFEST_V2);
    let layer_type = if docker_format {
        DOCKER_LAYER_GZIP
    } else {
        OCI_LAYER_GZIP
    };
    let layer = store_layer(store, upper, &opts.hidden, layer_type)?;

    let now = now_rfc3339();
    root.insert("created".into(), json!(now));
    set_or_remove(root, "author", opts.author.as_deref());
    // Docker keeps the message in the history entry only.
    root.remove("comment");
    // What Docker wrote of the base's own build container says nothing of this image.
    root.remove("container");
    root.remove("container_config");
    let mut history = Map::new();
    history.insert("created".into(), json!(now));
    if let Some(a) = &opts.author {
        history.insert("author".into(), json!(a));
    }
    if let Some(c) = &opts.created_by {
        history.insert("created_by".into(), json!(c));
    }
    if let Some(m) = &opts.message {
        history.insert("comment".into(), json!(m));
    }
    if layer.is_none() {
        history.insert("empty_layer".into(), json!(true));
    }
    match root.get_mut("history").and_then(Value::as_array_mut) {
        Some(h) => h.push(Value::Object(history)),
        None => {
            root.insert("history".into(), json!([history]));
        }
    }
    let rootfs = root
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    if let Some(l) = &layer {
        match rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
            Some(ids) => ids.push(json!(l.diff_id.to_string())),
            None => rootfs["diff_ids"] = json!([l.diff_id.to_string()]),
        }
    }

    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = store.ingest_bytes(&config_bytes)?;
    let mut layers: Vec<Value> = base_manifest
        .as_ref()
        .and_then(|m| m.get("layers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(l) = &layer {
        layers
            .push(json!({"mediaType": l.media_type, "digest": l.blob.to_string(), "size": l.size}));
    }
    let (manifest_type, config_type) = if docker_format {
        (DOCKER_MANIFEST_V2, DOCKER_CONFIG)
    } else {
        (OCI_MANIFEST, OCI_CONFIG)
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest.to_string(),
                   "size": config_bytes.len()},
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = store.ingest_bytes(&manifest_bytes)?;
    let desc = Descriptor::new(
        manifest_type.into(),
        manifest_bytes.len() as u64,
        &manifest_digest,
    );
    if let Some(r) = &opts.reference {
        store.set_reference(r, &desc)?;
    }
    Ok(Committed {
        id: config_digest,
        manifest: desc,
        layer,
    })
}

fn set_or_remove(m: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    match value {
        Some(v) if !v.is_empty() => {
            m.insert(key.into(), json!(v));
        }
        _ => {
            m.remove(key);
        }
    }
}

/// Applies `docker commit --change` instructions, in order, to a Docker-shaped container
/// config (`Cmd`, `Env`, ...). Members it does not touch are kept as they are.
pub fn apply_changes(config: &mut Map<String, Value>, changes: &[String]) -> Result<()> {
    let mut cmd_set = false;
    for change in changes {
        apply_change(config, change, &mut cmd_set)
            .with_context(|| format!("--change {change:?}"))?;
    }
    Ok(())
}

/// The environment as `NAME=value` strings from the config.
fn env_of(config: &Map<String, Value>) -> Vec<String> {
    config
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn apply_change(config: &mut Map<String, Value>, change: &str, cmd_set: &mut bool) -> Result<()> {
    let change = change.trim();
    let (op, rest) = change
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((change, ""));
    let rest = rest.trim();
    let op_lower = op.to_ascii_lowercase();
    const VALID: [&str; 9] = [
        "cmd",
        "entrypoint",
        "env",
        "expose",
        "label",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    ];
    if !VALID.contains(&op_lower.as_str()) {
        bail!("{op_lower} is not a valid change command");
    }
    let upper = op_lower.to_ascii_uppercase();
    if rest.is_empty() {
        bail!("{upper} requires at least one argument");
    }
    let env = env_of(config);
    match op_lower.as_str() {
        "cmd" | "entrypoint" => {
            let args = match json_array(rest) {
                Some(a) => a,
                None => {
                    let shell: Vec<String> = config
                        .get("Shell")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(String::from))
                                .collect()
                        })
                        .filter(|s: &Vec<String>| !s.is_empty())
                        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                    shell.into_iter().chain([rest.to_string()]).collect()
                }
            };
            if op_lower == "cmd" {
                config.insert("Cmd".into(), json!(args));
                *cmd_set = true;
            } else {
                config.insert("Entrypoint".into(), json!(args));
                // As in a Dockerfile: a new entrypoint drops the inherited command.
                if !*cmd_set {
                    config.insert("Cmd".into(), Value::Null);
                }
            }
        }
        "env" => {
            let mut vars = env;
            for (k, v) in name_values(rest, &vars, "ENV")? {
                let prefix = format!("{k}=");
                let entry = format!("{k}={v}");
                match vars.iter_mut().find(|e| e.starts_with(&prefix) || **e == k) {
                    Some(e) => *e = entry,
                    None => vars.push(entry),
                }
            }
            config.insert("Env".into(), json!(vars));
        }
        "label" => {
            let pairs = name_values(rest, &env, "LABEL")?;
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            let labels = labels.as_object_mut().expect("made an object above");
            for (k, v) in pairs {
                labels.insert(k, json!(v));
            }
        }
        "expose" => {
            let mut ports = Vec::new();
            for spec in words(rest, Some(&env))? {
                ports.extend(expand_port(&spec)?);
            }
            let exposed = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            if !exposed.is_object() {
                *exposed = json!({});
            }
            let exposed = exposed.as_object_mut().expect("made an object above");
            for p in ports {
                exposed.insert(p, json!({}));
            }
        }
        "volume" => {
            let vols = match json_array(rest) {
                Some(a) => a,
                None => words(rest, Some(&env))?,
            };
            let volumes = config.entry("Volumes").or_insert_with(|| json!({}));
            if !volumes.is_object() {
                *volumes = json!({});
            }
            let volumes = volumes.as_object_mut().expect("made an object above");
            for v in vols {
                let v = v.trim().to_string();
                if v.is_empty() {
                    bail!("VOLUME specified can not be an empty string");
                }
                volumes.insert(v, json!({}));
            }
        }
        "user" => {
            config.insert("User".into(), json!(word(rest, &env)?));
        }
        "workdir" => {
            let dir = word(rest, &env)?;
            let joined = if dir.starts_with('/') {
                dir
            } else {
                let current = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .unwrap_or("/");
                format!("{}/{dir}", current.trim_end_matches('/'))
            };
            config.insert("WorkingDir".into(), json!(clean_abs_path(&joined)));
        }
        "stopsignal" => {
            let sig = word(rest, &env)?;
            check_signal(&sig)?;
            config.insert("StopSignal".into(), json!(sig));
        }
        _ => unreachable!("checked against VALID"),
    }
    Ok(())
}

/// A JSON array of strings (a Dockerfile's exec form), or None for anything else.
fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(s).ok()
}

/// `NAME=value ...` pairs (quotes and `$VAR` handled), or the old form `NAME value with
/// spaces` (one pair, the rest of the line its value).
fn name_values(rest: &str, env: &[String], what: &str) -> Result<Vec<(String, String)>> {
    let first_word_end = rest
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(rest.len());
    if !rest[..first_word_end].contains('=') {
        let name = &rest[..first_word_end];
        let value = rest[first_word_end..].trim();
        if value.is_empty() {
            bail!("{what} names can not be blank without a value ({what} {name} needs one)");
        }
        return Ok(vec![(name.to_string(), word(value, env)?)]);
    }
    let mut out = Vec::new();
    for w in words(rest, Some(env))? {
        let Some((k, v)) = w.split_once('=') else {
            bail!("Syntax error - can't find = in {w:?}. Must be of the form: name=value");
        };
        if k.is_empty() {
            bail!("{what} names can not be blank");
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// The whole text as one word: quotes removed, `$VAR` expanded, spaces kept.
fn word(s: &str, env: &[String]) -> Result<String> {
    Ok(lex(s, Some(env), false)?.concat())
}

/// The text split into words at unquoted spaces, with quotes removed and, when `env` is
/// given, `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alternative}` expanded (not inside
/// single quotes), as the Dockerfile instructions docker commit takes read their arguments.
fn words(s: &str, env: Option<&[String]>) -> Result<Vec<String>> {
    lex(s, env, true)
}

fn lex(s: &str, env: Option<&[String]>, split: bool) -> Result<Vec<String>> {
    let lookup = |name: &str| -> Option<String> {
        env?.iter().rev().find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() && split => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                i += 1;
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.get(i + 1) {
                    cur.push(*n);
                    i += 2;
                } else {
                    cur.push('\\');
                    i += 1;
                }
            }
            '\'' => {
                in_word = true;
                let end = chars[i + 1..].iter().position(|&x| x == '\'').context(
                    "unexpected end of statement while looking for matching single-quote",
                )?;
                cur.extend(&chars[i + 1..i + 1 + end]);
                i += end + 2;
            }
            '"' => {
                in_word = true;
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        bail!(
                            "unexpected end of statement while looking for matching double-quote"
                        );
                    };
                    match c {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' if matches!(chars.get(i + 1), Some('"' | '\\' | '$')) => {
                            cur.push(chars[i + 1]);
                            i += 2;
                        }
                        '$' if env.is_some() => i = expand(&chars, i, &mut cur, &lookup)?,
                        c => {
                            cur.push(c);
                            i += 1;
                        }
                    }
                }
            }
            '$' if env.is_some() => {
                in_word = true;
                i = expand(&chars, i, &mut cur, &lookup)?;
            }
            c => {
                in_word = true;
                cur.push(c);
                i += 1;
            }
        }
    }
    if in_word || !split {
        out.push(cur);
    }
    Ok(out)
}

/// Expands the variable reference at `chars[i]` (a `$`) into `out`; returns the index after it.
fn expand(
    chars: &[char],
    i: usize,
    out: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<usize> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.get(i + 1) {
        Some('{') => {
            let end = chars[i + 2..]
                .iter()
                .position(|&c| c == '}')
                .context("missing '}' in a ${...} substitution")?;
            let inner: String = chars[i + 2..i + 2 + end].iter().collect();
            let (name, modifier) = match inner.find(':') {
                Some(p) => (&inner[..p], Some(&inner[p + 1..])),
                None => (inner.as_str(), None),
            };
            if name.is_empty() || !name.chars().all(is_name) {
                bail!("bad substitution ${{{inner}}}");
            }
            let value = lookup(name);
            match modifier {
                None => out.push_str(&value.unwrap_or_default()),
                Some(m) if m.starts_with('-') => match value.filter(|v| !v.is_empty()) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(&m[1..]),
                },
                Some(m) if m.starts_with('+') => {
                    if value.is_some_and(|v| !v.is_empty()) {
                        out.push_str(&m[1..]);
                    }
                }
                Some(m) => bail!("unsupported modifier ({m}) in substitution ${{{inner}}}"),
            }
            Ok(i + 3 + end)
        }
        Some(&c) if is_name(c) => {
            let len = chars[i + 1..].iter().take_while(|&&c| is_name(c)).count();
            let name: String = chars[i + 1..i + 1 + len].iter().collect();
            out.push_str(&lookup(&name).unwrap_or_default());
            Ok(i + 1 + len)
        }
        _ => {
            out.push('$');
            Ok(i + 1)
        }
    }
}

/// `80`, `80/udp`, `8000-8002/tcp` as Docker's `port/proto` keys.
fn expand_port(spec: &str) -> Result<Vec<String>> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        bail!("invalid proto: {proto}");
    }
    let port = |p: &str| -> Result<u16> {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("invalid containerPort: {p}"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(ports)?;
            (p, p)
        }
    };
    if end < start {
        bail!("invalid range specified for container port: {ports}");
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Accepts what Docker's signal parsing does: a number, or a name with or without `SIG`.
fn check_signal(sig: &str) -> Result<()> {
    if let Ok(n) = sig.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(());
        }
        bail!("Invalid signal: {sig}");
    }
    let name = sig.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    const NAMES: [&str; 33] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
    ];
    let realtime = |base: &str| {
        name.strip_prefix(base)
            .is_some_and(|n| n.is_empty() || n.trim_start_matches(['+', '-']).parse::<u8>().is_ok())
    };
    if NAMES.contains(&name) || name == "XFSZ" || realtime("RTMIN") || realtime("RTMAX") {
        return Ok(());
    }
    bail!("Invalid signal: {sig}")
}

/// `/a/./b/../c/` as `/a/c` (Go's path.Clean for absolute paths).
pub fn clean_abs_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(start: Value, changes: &[&str]) -> Result<Value> {
        let mut c = start.as_object().unwrap().clone();
        apply_changes(
            &mut c,
            &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        Ok(Value::Object(c))
    }

    #[test]
    fn changes_edit_the_config_as_dockerfile_instructions() {
        let c = applied(
            json!({"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "WorkingDir": "/srv",
                   "Hostname": "kept"}),
            &[
                "ENV A=2 B=\"two words\" C=$A-${B:-x}",
                "ENV OLD form with spaces",
                "env PATH=$PATH:/opt/bin",
                "LABEL a=b \"c d\"=e",
                "EXPOSE 80 53/udp 9000-9001",
                "VOLUME [\"/data\", \"/logs\"]",
                "VOLUME /cache",
                "USER app:app",
                "WORKDIR sub/../www",
                "STOPSIGNAL SIGQUIT",
                "CMD [\"nginx\", \"-g\", \"daemon off;\"]",
                "ENTRYPOINT /entry.sh",
            ],
        )
        .unwrap();
        assert_eq!(
            c["Env"],
            json!([
                "PATH=/bin:/opt/bin",
                "A=2",
                "B=two words",
                "C=1-x",
                "OLD=form with spaces"
            ])
        );
        assert_eq!(c["Labels"], json!({"a": "b", "c d": "e"}));
        assert_eq!(
            c["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}, "9000/tcp": {}, "9001/tcp": {}})
        );
        assert_eq!(
            c["Volumes"],
            json!({"/data": {}, "/logs": {}, "/cache": {}})
        );
        assert_eq!(c["User"], json!("app:app"));
        assert_eq!(c["WorkingDir"], json!("/srv/www"));
        assert_eq!(c["StopSignal"], json!("SIGQUIT"));
        // CMD came first, so the new ENTRYPOINT keeps it.
        assert_eq!(c["Cmd"], json!(["nginx", "-g", "daemon off;"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/entry.sh"]));
        assert_eq!(c["Hostname"], json!("kept"));

        // An ENTRYPOINT alone drops the inherited CMD.
        let c = applied(json!({"Cmd": ["sh"]}), &["ENTRYPOINT [\"/bin/true\"]"]).unwrap();
        assert_eq!(c["Cmd"], Value::Null);
    }

    #[test]
    fn bad_changes_are_named() {
        let err = |changes: &[&str]| format!("{:#}", applied(json!({}), changes).unwrap_err());
        assert_eq!(
            err(&["RUN rm -rf /"]),
            "--change \"RUN rm -rf /\": run is not a valid change command"
        );
        assert!(err(&["EXPOSE http"]).contains("invalid containerPort: http"));
        assert!(err(&["EXPOSE 80/icmp"]).contains("invalid proto: icmp"));
        assert!(err(&["STOPSIGNAL SIGNOPE"]).contains("Invalid signal: SIGNOPE"));
        assert!(err(&["ENV"]).contains("ENV requires at least one argument"));
        assert!(err(&["ENV A=\"open"]).contains("double-quote"));
        assert!(err(&["VOLUME [\"\"]"]).contains("can not be an empty string"));
    }
}
