//! The stage plan: targets, dependencies, bases, waves, FROM expansion, unused build args.
use std::collections::BTreeMap;

use super::parse::parse;
use super::plan::*;

fn args(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn plan_of(source: &str, target: Option<&str>, build_args: &[(&str, &str)]) -> Plan {
    let df = parse(source, "Dockerfile").unwrap();
    plan(&df, target, &args(build_args)).unwrap()
}

fn plan_err(source: &str, target: Option<&str>, build_args: &[(&str, &str)]) -> String {
    let df = parse(source, "Dockerfile").unwrap();
    plan(&df, target, &args(build_args))
        .unwrap_err()
        .to_string()
}

fn indexes(plan: &Plan) -> Vec<usize> {
    plan.stages.iter().map(|s| s.index).collect()
}

const MULTI: &str = "\
FROM debian AS builder
RUN make
FROM alpine AS unused
RUN true
FROM scratch AS final
COPY --from=builder /out /app
";

#[test]
fn default_target_is_the_last_stage_and_unneeded_stages_are_left_out() {
    let plan = plan_of(MULTI, None, &[]);
    assert_eq!(indexes(&plan), [0, 2]);
    assert_eq!(plan.target, 2);
    assert_eq!(plan.stages[1].base, Base::Scratch);
    assert_eq!(plan.stages[1].depends_on, [0]);
    assert_eq!(
        plan.stages[1].sources,
        vec![SourceRef {
            instruction: 0,
            onbuild: false,
            source: Source::Stage(0)
        }]
    );
    assert_eq!(plan.stages[0].base, Base::Image("debian".into()));
    assert_eq!(plan.waves, vec![vec![0], vec![2]]);
}

#[test]
fn target_by_name_case_insensitive() {
    let plan = plan_of(MULTI, Some("UNUSED"), &[]);
    assert_eq!(indexes(&plan), [1]);
    assert_eq!(plan.target, 1);
}

#[test]
fn unknown_target_is_named() {
    assert_eq!(
        plan_err(MULTI, Some("nope"), &[]),
        "target stage \"nope\" could not be found"
    );
}

#[test]
fn from_an_earlier_stage() {
    let plan = plan_of("FROM alpine AS base\nRUN a\nFROM base\nRUN b\n", None, &[]);
    assert_eq!(indexes(&plan), [0, 1]);
    assert_eq!(plan.stages[1].base, Base::Stage(0));
    assert_eq!(plan.waves, vec![vec![0], vec![1]]);
}

#[test]
fn from_a_stage_name_in_other_case() {
    let plan = plan_of("FROM alpine AS base\nFROM BASE\n", None, &[]);
    assert_eq!(plan.stages[1].base, Base::Stage(0));
}

#[test]
fn from_own_name_is_an_image() {
    // `FROM node AS node`: the stage cannot be its own base; the name is the image.
    let plan = plan_of("FROM node AS node\n", None, &[]);
    assert_eq!(plan.stages[0].base, Base::Image("node".into()));
}

#[test]
fn copy_from_index_and_image() {
    let plan = plan_of(
        "FROM a\nFROM b\nCOPY --from=0 /x /x\nCOPY --from=nginx:latest /etc/nginx /n\n",
        None,
        &[],
    );
    assert_eq!(indexes(&plan), [0, 1]);
    assert_eq!(
        plan.stages[1].sources,
        vec![
            SourceRef {
                instruction: 0,
                onbuild: false,
                source: Source::Stage(0)
            },
            SourceRef {
                instruction: 1,
                onbuild: false,
                source: Source::Image("nginx:latest".into())
            },
        ]
    );
}

#[test]
fn copy_from_bad_index() {
    assert_eq!(
        plan_err("FROM a\nCOPY --from=5 /x /x\n", None, &[]),
        "Dockerfile:2: invalid stage index 5"
    );
}

#[test]
fn run_mount_from_is_a_dependency() {
    let plan = plan_of(
        "FROM a AS deps\nFROM b AS other\nFROM c\nRUN --mount=type=bind,from=deps,target=/d --mount=type=cache,target=/c make\n",
        None,
        &[],
    );
    assert_eq!(indexes(&plan), [0, 2]);
    assert_eq!(plan.stages[1].depends_on, [0]);
}

#[test]
fn independent_stages_share_a_wave() {
    let plan = plan_of(
        "FROM a AS one\nFROM b AS two\nFROM c AS three\nFROM scratch\nCOPY --from=one / /1\nCOPY --from=two / /2\nCOPY --from=three / /3\n",
        None,
        &[],
    );
    assert_eq!(indexes(&plan), [0, 1, 2, 3]);
    assert_eq!(plan.waves, vec![vec![0, 1, 2], vec![3]]);
}

#[test]
fn waves_follow_the_longest_chain() {
    let plan = plan_of(
        "FROM a AS one\nFROM one AS two\nFROM b AS side\nFROM two\nCOPY --from=side / /s\n",
        None,
        &[],
    );
    assert_eq!(plan.waves, vec![vec![0, 2], vec![1], vec![3]]);
    // Dependencies come before the stages that need them.
    let order = indexes(&plan);
    for stage in &plan.stages {
        let at = order.iter().position(|&i| i == stage.index).unwrap();
        for dep in &stage.depends_on {
            assert!(order.iter().position(|i| i == dep).unwrap() < at);
        }
    }
}

#[test]
fn copy_from_a_later_stage_or_itself_is_refused() {
    assert_eq!(
        plan_err(
            "FROM a AS one\nCOPY --from=two / /\nFROM b AS two\n",
            Some("one"),
            &[]
        ),
        "Dockerfile:2: cannot copy from stage \"two\", it needs to be defined before current stage \"one\""
    );
    assert_eq!(
        plan_err("FROM a\nCOPY --from=0 / /\n", None, &[]),
        "Dockerfile:2: cannot copy from stage \"stage-0\", it needs to be defined before current stage \"stage-0\""
    );
}

#[test]
fn circular_mounts_are_refused() {
    assert_eq!(
        plan_err(
            "FROM a AS one\nRUN --mount=from=two,target=/t x\nFROM b AS two\nRUN --mount=from=one,target=/o x\n",
            None,
            &[]
        ),
        "circular dependency detected on stage: two"
    );
}

#[test]
fn from_variables_are_refused() {
    assert_eq!(
        plan_err("ARG SRC=b\nFROM a AS b\nFROM c\nCOPY --from=$SRC / /\n", None, &[]),
        "Dockerfile:4: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
    );
    assert_eq!(
        parse("FROM a\nRUN --mount=from=${X},target=/x y\n", "Dockerfile")
            .unwrap_err()
            .to_string(),
        "Dockerfile:2: 'from' doesn't support variable expansion, define alias stage instead"
    );
}

#[test]
fn onbuild_from_of_a_parent_stage_is_a_dependency() {
    let plan = plan_of(
        "FROM a AS tools\nFROM b AS parent\nONBUILD COPY --from=tools /t /t\nFROM parent\n",
        None,
        &[],
    );
    assert_eq!(indexes(&plan), [0, 1, 2]);
    assert_eq!(plan.stages[2].depends_on, [0, 1]);
    assert_eq!(
        plan.stages[2].sources,
        vec![SourceRef {
            instruction: 0,
            onbuild: true,
            source: Source::Stage(0)
        }]
    );
}

#[test]
fn from_is_expanded_with_global_args_and_build_args() {
    let source = "ARG REG=docker.io\nARG TAG=1.0\nARG IMAGE=${REG}/app:${TAG}\nFROM $IMAGE\n";
    let plan = plan_of(source, None, &[]);
    assert_eq!(plan.stages[0].base, Base::Image("docker.io/app:1.0".into()));
    let plan = plan_of(source, None, &[("TAG", "2.0")]);
    assert_eq!(plan.stages[0].base, Base::Image("docker.io/app:2.0".into()));
    assert_eq!(plan.global_args.get("IMAGE").unwrap(), "docker.io/app:2.0");
}

#[test]
fn build_arg_for_undeclared_global_does_not_reach_from() {
    let plan = plan_of("FROM img:${V:-default}\n", None, &[("V", "x")]);
    assert_eq!(plan.stages[0].base, Base::Image("img:default".into()));
    assert_eq!(plan.unused_build_args, ["V"]);
}

#[test]
fn global_arg_without_value_expands_empty() {
    let plan = plan_of("ARG SUFFIX\nFROM busybox${SUFFIX}\n", None, &[]);
    assert_eq!(plan.stages[0].base, Base::Image("busybox".into()));
    assert!(!plan.global_args.contains_key("SUFFIX"));
}

#[test]
fn from_scratch_by_arg() {
    let plan = plan_of("ARG BASE=scratch\nFROM $BASE\n", None, &[]);
    assert_eq!(plan.stages[0].base, Base::Scratch);
}

#[test]
fn from_stage_by_arg() {
    let plan = plan_of(
        "ARG VARIANT=dev\nFROM a AS dev\nFROM b AS prod\nFROM ${VARIANT}\n",
        None,
        &[],
    );
    assert_eq!(indexes(&plan), [0, 2]);
    let plan = plan_of(
        "ARG VARIANT=dev\nFROM a AS dev\nFROM b AS prod\nFROM ${VARIANT}\n",
        None,
        &[("VARIANT", "prod")],
    );
    assert_eq!(indexes(&plan), [1, 2]);
}

#[test]
fn blank_base_is_refused() {
    assert_eq!(
        plan_err("ARG B\nFROM $B\n", None, &[]),
        "Dockerfile:2: base name ($B) should not be blank"
    );
}

#[test]
fn bad_substitution_in_from_names_the_line() {
    assert_eq!(
        plan_err("FROM a\nFROM ${X:?needed}\n", None, &[]),
        "Dockerfile:2: failed to process \"${X:?needed}\": X: needed"
    );
}

#[test]
fn predefined_platform_args_in_from() {
    let host = Platform::host();
    let only_last = plan_of(
        "FROM --platform=$BUILDPLATFORM golang AS build\nFROM img-${TARGETARCH}\n",
        None,
        &[],
    );
    assert_eq!(only_last.stages.len(), 1);
    let df = parse(
        "FROM --platform=$BUILDPLATFORM golang AS build\nFROM img-${TARGETARCH}\nCOPY --from=build / /\n",
        "Dockerfile",
    )
    .unwrap();
    let planned = plan(&df, None, &BTreeMap::new()).unwrap();
    assert_eq!(planned.stages[0].platform, Some(host.to_string()));
    assert_eq!(
        planned.stages[1].base,
        Base::Image(format!("img-{}", host.architecture))
    );
    assert_eq!(planned.platform_args["TARGETOS"], "linux");
}

#[test]
fn cross_platform_args() {
    let df = parse("FROM img-$TARGETARCH$TARGETVARIANT\n", "Dockerfile").unwrap();
    let build = Platform::parse("linux/amd64").unwrap();
    let target = Platform::parse("linux/arm/v7").unwrap();
    let plan = plan_for(&df, None, &BTreeMap::new(), &build, &target).unwrap();
    assert_eq!(plan.stages[0].base, Base::Image("img-armv7".into()));
    assert_eq!(plan.platform_args["BUILDPLATFORM"], "linux/amd64");
    assert_eq!(plan.platform_args["TARGETPLATFORM"], "linux/arm/v7");
}

#[test]
fn platform_parsing() {
    assert_eq!(
        Platform::parse("linux/arm/v7").unwrap().to_string(),
        "linux/arm/v7"
    );
    // arm64's v8 is the default variant: dropped, as containerd normalizes it.
    assert_eq!(
        Platform::parse("linux/arm64/v8").unwrap().to_string(),
        "linux/arm64"
    );
    assert!(Platform::parse("linux//x").is_err());
    assert!(Platform::parse("").is_err());
}

#[test]
fn unknown_target_close_to_a_stage_gets_a_hint() {
    assert_eq!(
        plan_err(MULTI, Some("buidler"), &[]),
        "target stage \"buidler\" could not be found (did you mean builder?)"
    );
}

#[test]
fn target_stage_arg() {
    let plan = plan_of("FROM a AS build\nFROM img:$TARGETSTAGE\n", None, &[]);
    assert_eq!(plan.stages[0].base, Base::Image("img:default".into()));
    let plan = plan_of(
        "FROM a AS build\nFROM img:$TARGETSTAGE AS final\n",
        None,
        &[],
    );
    assert_eq!(plan.stages[0].base, Base::Image("img:final".into()));
}

#[test]
fn build_arg_overrides_automatic_args() {
    let plan = plan_of("FROM img-$TARGETARCH\n", None, &[("TARGETARCH", "riscv64")]);
    assert_eq!(plan.stages[0].base, Base::Image("img-riscv64".into()));
    assert!(plan.unused_build_args.is_empty());
}

#[test]
fn global_default_is_not_evaluated_when_a_build_arg_is_given() {
    let source = "ARG V=${NEEDED:?missing}\nFROM img:$V\n";
    let given = plan_of(source, None, &[("V", "given")]);
    assert_eq!(given.stages[0].base, Base::Image("img:given".into()));
    let df = parse(source, "Dockerfile").unwrap();
    let error = plan(&df, None, &BTreeMap::new()).unwrap_err().to_string();
    assert!(error.contains("NEEDED: missing"), "{error}");
}

#[test]
fn from_binds_the_latest_earlier_stage_of_a_name() {
    // Duplicate names are refused by the parser; FROM still looks only backwards.
    let plan = plan_of("FROM a AS x\nFROM b AS y\nFROM x\n", None, &[]);
    assert_eq!(plan.stages.last().unwrap().base, Base::Stage(0));
}

#[test]
fn unused_build_args_are_reported() {
    let source = "ARG GLOBAL\nFROM a AS one\nARG USED_ONE\nFROM b\nARG USED\n";
    let plan = plan_of(
        source,
        None,
        &[
            ("USED", "1"),
            ("GLOBAL", "1"),
            ("HTTP_PROXY", "http://p"),
            ("no_proxy", "localhost"),
            ("USED_ONE", "1"),
            ("EXTRA", "1"),
        ],
    );
    // `one` is not built, so its ARG does not consume USED_ONE.
    assert_eq!(plan.unused_build_args, ["EXTRA", "USED_ONE"]);
    assert_eq!(
        plan.unused_build_args_warning().unwrap(),
        "[Warning] One or more build-args [EXTRA USED_ONE] were not consumed"
    );
    let plan = plan_of(source, None, &[("USED", "1")]);
    assert_eq!(plan.unused_build_args_warning(), None);
}

#[test]
fn planned_stage_lookup() {
    let plan = plan_of(MULTI, None, &[]);
    assert_eq!(plan.stage(0).unwrap().name.as_deref(), Some("builder"));
    assert!(plan.stage(1).is_none());
}

#[test]
fn an_earlier_stage_named_scratch_wins_over_scratch() {
    let plan = plan_of("FROM busybox AS scratch\nFROM scratch\n", None, &[]);
    assert_eq!(plan.stages[1].base, Base::Stage(0));
    let plan = plan_of("FROM scratch AS base\nFROM base\n", None, &[]);
    assert_eq!(plan.stages[0].base, Base::Scratch);
    assert_eq!(plan.stages[1].base, Base::Stage(0));
}
