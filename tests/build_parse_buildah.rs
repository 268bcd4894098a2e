//! The Dockerfile parser and word expansion against a real builder: `buildah bud` builds
//! `FROM scratch` Dockerfiles full of quoting, continuation, ARG and JSON cases, and the
//! config it writes (Env, Labels, Cmd, Entrypoint, ExposedPorts, Volumes, User, WorkingDir,
//! StopSignal) must be what berth's parse + expand give, evaluated the way Docker evaluates
//! them (every ENV pair of one line sees the variables from before the line; exec forms are
//! not expanded; ENV shadows ARG).

mod engine_support;

use berth::build::dockerfile::ast::{Command, InstructionKind};
use berth::build::dockerfile::{expand_word, expand_words, parse};
use engine_support::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The config fields berth would give a one-stage `FROM scratch` Dockerfile.
fn evaluate(source: &str, build_args: &[(&str, &str)]) -> Value {
    let df = parse(source, "Dockerfile").unwrap();
    let escape = df.directives.escape;
    let build_args: BTreeMap<&str, &str> = build_args.iter().copied().collect();
    let mut globals: BTreeMap<String, String> = BTreeMap::new();
    for decl in &df.global_args {
        let value = match (build_args.get(decl.name.as_str()), &decl.default) {
            (Some(v), _) => Some(v.to_string()),
            (None, Some(d)) => Some(expand_word(d, escape, &|n| globals.get(n).cloned()).unwrap()),
            (None, None) => None,
        };
        if let Some(value) = value {
            globals.insert(decl.name.clone(), value);
        }
    }
    let mut env: Vec<(String, String)> = Vec::new();
    let mut args: BTreeMap<String, String> = BTreeMap::new();
    let mut labels = serde_json::Map::new();
    let (mut cmd, mut entrypoint) = (Value::Null, Value::Null);
    let (mut ports, mut volumes) = (serde_json::Map::new(), serde_json::Map::new());
    let (mut user, mut workdir, mut stop_signal) = (String::new(), String::new(), Value::Null);
    let form = |command: &Command| match command {
        Command::Exec(words) => json!(words),
        Command::Shell(text) => json!(["/bin/sh", "-c", text]),
    };
    for instruction in &df.stages[0].instructions {
        let scope_env = env.clone();
        let scope_args = args.clone();
        let lookup = move |name: &str| {
            scope_env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| scope_args.get(name).cloned())
        };
        let word = |w: &str| expand_word(w, escape, &lookup).unwrap();
        match &instruction.kind {
            InstructionKind::Env(pairs) => {
                let expanded: Vec<(String, String)> =
                    pairs.iter().map(|(k, v)| (word(k), word(v))).collect();
                // A key already set keeps its place, as in Docker's config.
                for (key, value) in expanded {
                    match env.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = value,
                        None => env.push((key, value)),
                    }
                }
            }
            InstructionKind::Label(pairs) => {
                for (key, value) in pairs {
                    labels.insert(word(key), json!(word(value)));
                }
            }
            InstructionKind::Arg(decls) => {
                for decl in decls {
                    let value = match (build_args.get(decl.name.as_str()), &decl.default) {
                        (Some(v), _) => Some(v.to_string()),
                        (None, Some(d)) => Some(word(d)),
                        (None, None) => globals.get(&decl.name).cloned(),
                    };
                    if let Some(value) = value {
                        args.insert(decl.name.clone(), value);
                    }
                }
            }
            InstructionKind::Cmd(c) => cmd = form(c),
            InstructionKind::Entrypoint(c) => entrypoint = form(c),
            InstructionKind::Expose(list) => {
                for port in list {
                    for port in expand_words(port, escape, &lookup).unwrap() {
                        let port = if port.contains('/') {
                            port
                        } else {
                            format!("{port}/tcp")
                        };
                        ports.insert(port, json!({}));
                    }
                }
            }
            InstructionKind::Volume(list) => {
                for volume in list {
                    volumes.insert(word(volume), json!({}));
                }
            }
            InstructionKind::User(u) => user = word(u),
            InstructionKind::Workdir(dir) => {
                let dir = word(dir);
                let joined = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{workdir}/{dir}")
                };
                // Cleaned as Go's filepath.Join cleans it.
                let parts: Vec<&str> = joined
                    .split('/')
                    .filter(|p| !p.is_empty() && *p != ".")
                    .collect();
                workdir = format!("/{}", parts.join("/"));
            }
            InstructionKind::StopSignal(signal) => stop_signal = json!(word(signal)),
            other => panic!("the differential cases use no {other:?}"),
        }
    }
    json!({
        "Env": env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "Labels": labels,
        "Cmd": cmd,
        "Entrypoint": entrypoint,
        "ExposedPorts": ports,
        "Volumes": volumes,
        "User": user,
        "WorkingDir": workdir,
        "StopSignal": stop_signal,
    })
}

/// The same fields of what `buildah bud` made of the Dockerfile (its own PATH and version
/// label left out).
fn buildah_config(
    scratch: &Scratch,
    case: &str,
    source: &str,
    build_args: &[(&str, &str)],
) -> Value {
    let context = scratch.path(case);
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("Dockerfile"), source).unwrap();
    let storage = |c: &mut std::process::Command| {
        c.arg("--root")
            .arg(scratch.path("buildah-root"))
            .arg("--runroot")
            .arg(scratch.path("buildah-run"))
            .args(["--storage-driver", "vfs"]);
    };
    let mut bud = std::process::Command::new("buildah");
    storage(&mut bud);
    bud.args(["bud", "-q", "--layers=false", "-t", case]);
    for (key, value) in build_args {
        bud.arg("--build-arg").arg(format!("{key}={value}"));
    }
    bud.arg(&context);
    run_bounded(&bud).ok("buildah bud");
    let mut inspect = std::process::Command::new("buildah");
    storage(&mut inspect);
    inspect.args(["inspect", "--type", "image", case]);
    let out = run_bounded(&inspect).ok("buildah inspect");
    let all: Value = serde_json::from_str(&out).unwrap();
    let config = &all["OCIv1"]["config"];
    let env: Vec<Value> = config["Env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !e.as_str().unwrap_or("").starts_with("PATH="))
        .collect();
    let mut labels = config["Labels"].as_object().cloned().unwrap_or_default();
    labels.remove("io.buildah.version");
    let or_empty = |v: &Value| {
        if v.is_null() {
            json!({})
        } else {
            v.clone()
        }
    };
    json!({
        "Env": env,
        "Labels": labels,
        "Cmd": config["Cmd"],
        "Entrypoint": config["Entrypoint"],
        "ExposedPorts": or_empty(&config["ExposedPorts"]),
        "Volumes": or_empty(&config["Volumes"]),
        "User": config["User"].as_str().unwrap_or(""),
        "WorkingDir": config["WorkingDir"].as_str().unwrap_or(""),
        "StopSignal": config["StopSignal"],
    })
}

/// Debian's buildah (1.28) predates BuildKit's `${V-x}` and `${V#p}` forms: those are in the
/// unit tests only.
/// A case: its name, the Dockerfile, the build args.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const CASES: &[Case] = &[
    (
        "quoting",
        r#"FROM scratch
ENV A=1 B="x y" C='z $A' D=e\ f E= F="${A}2" G="q\"uote" H='back\slash' I=\$A
ENV A=2 J=$A K="$A"
ENV LEG hello  "big" world
ENV LEG2 it\'s  ${A}
LABEL "com.example"="ACME" version=1.0 multi="a\
b" 'single'='$A' "key $A"=v
LABEL legacy value with  spaces
"#,
        &[],
    ),
    (
        "substitution",
        r#"FROM scratch
ENV SET=v EMPTY=
ENV R1=${SET:-d} R2=${EMPTY:-d} R3=${UNSET:-d} R4=${SET:+alt} R5=${EMPTY:+alt} R6=${UNSET:+alt}
ENV R11=${UNSET:-${SET}x}
ENV R12="${SET}"'${SET}' R13=a$ R14=$SET$SET R15=${SET}_$SET_x
"#,
        &[],
    ),
    (
        "args",
        r#"ARG GLOBAL=g1
ARG ONLY_GLOBAL=og
FROM scratch
ARG GLOBAL
ARG LOCAL="l $GLOBAL" OTHER
ARG FROM_BUILD=default
ENV G=$GLOBAL L=$LOCAL O=${OTHER:-none} B=$FROM_BUILD OG=${ONLY_GLOBAL:-unset}
ARG LOCAL=changed
ENV L2=$LOCAL
ENV LOCAL=env-wins
ENV L3=$LOCAL
"#,
        &[("FROM_BUILD", "from the command line")],
    ),
    (
        "continuations",
        "FROM scratch\n# comment\nENV A=1 \\\n# comment inside\n\n    B=2\\\n3\n  LABEL a=\"x \\\n   y\"\n",
        &[],
    ),
    (
        "escape-directive",
        // buildah's lexer ignores the escape directive (BuildKit's does not): only the
        // continuation is compared here; escaping with ` is in the unit tests.
        "# escape=`\nFROM scratch\nENV A=1 `\n    NEXT=2 `\n# c\n  THIRD=\"a b\"\nLABEL x=y\n",
        &[],
    ),
    (
        "commands",
        r#"FROM scratch
ENV PORT=8080 DIR=/data
EXPOSE 80 53/udp $PORT
VOLUME /a $DIR
VOLUME ["/json vol"]
USER app:$PORT
WORKDIR /srv
WORKDIR sub/$DIR
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/bin/tini", "--"]
CMD [ "a", 'b' ]
"#,
        &[],
    ),
    (
        "exec-form",
        r#"FROM scratch
ENV X=1
ENTRYPOINT echo $X "quoted"
CMD ["echo", "$X", "a\"b"]
"#,
        &[],
    ),
];

#[test]
fn config_matches_buildah() {
    if skip_without(&["buildah"], "the parser's differential against buildah") {
        return;
    }
    let scratch = Scratch::new("build-parse-buildah");
    let mut mismatches = Vec::new();
    for (case, source, build_args) in CASES {
        let ours = evaluate(source, build_args);
        let theirs = buildah_config(&scratch, case, source, build_args);
        if ours != theirs {
            mismatches.push(format!("{case}:\n  berth:  {ours}\n  buildah: {theirs}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
