//! The parser against BuildKit's behaviour, one case at a time.
use std::time::Duration;

use super::ast::*;
use super::parse::{heredoc_name, parse};

fn ok(source: &str) -> Dockerfile {
    match parse(source, "Dockerfile") {
        Ok(df) => df,
        Err(e) => panic!("{source:?} failed: {e}"),
    }
}

fn err(source: &str) -> String {
    match parse(source, "Dockerfile") {
        Ok(df) => panic!("{source:?} parsed: {df:?}"),
        Err(e) => e.to_string(),
    }
}

/// The instructions of the only stage.
fn kinds(source: &str) -> Vec<InstructionKind> {
    let df = ok(source);
    assert_eq!(df.stages.len(), 1);
    df.stages[0]
        .instructions
        .iter()
        .map(|i| i.kind.clone())
        .collect()
}

fn one(source: &str) -> InstructionKind {
    let mut all = kinds(&format!("FROM scratch\n{source}"));
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// --- files, stages, errors with lines -------------------------------------------------------

#[test]
fn empty_file_is_refused() {
    assert_eq!(err(""), "Dockerfile: the Dockerfile cannot be empty");
}

#[test]
fn file_of_comments_has_no_instructions() {
    assert_eq!(
        err("# a comment\n\n# another\n"),
        "Dockerfile:3: file with no instructions"
    );
}

#[test]
fn only_args_has_no_stages() {
    assert_eq!(
        err("ARG A=1\n"),
        "Dockerfile: dockerfile contains no stages to build"
    );
}

#[test]
fn instruction_before_from_is_refused() {
    assert_eq!(
        err("ARG V=1\nRUN echo\nFROM scratch\n"),
        "Dockerfile:2: no build stage in current context"
    );
}

#[test]
fn unknown_instruction_names_file_and_line() {
    let error = parse("FROM scratch\n\nFOO bar\n", "app.Dockerfile").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("app.Dockerfile:3: unknown instruction: FOO"),
        "{error}"
    );
    assert_eq!(
        err("FROM scratch\nxyzzy a\n"),
        "Dockerfile:2: unknown instruction: xyzzy"
    );
}

#[test]
fn unknown_instruction_close_to_a_known_one_gets_a_hint() {
    assert_eq!(
        err("FROM scratch\nRUNN a\n"),
        "Dockerfile:2: unknown instruction: RUNN (did you mean RUN?)"
    );
    assert_eq!(
        err("form scratch\n"),
        "Dockerfile:1: unknown instruction: form (did you mean from?)"
    );
}

#[test]
fn error_is_typed_with_its_line() {
    let error = super::parse::parse_dockerfile("FROM a\nCOPY x\n", "Dockerfile").unwrap_err();
    assert_eq!(error.line, Some(2));
    assert_eq!(error.file, "Dockerfile");
}

#[test]
fn line_errors_come_before_instruction_errors() {
    // BuildKit splits every line before checking instructions: line 3's ENV error wins
    // over line 2's unknown instruction.
    assert_eq!(
        err("FROM a\nFOO x\nENV ONLY\n"),
        "Dockerfile:3: ENV must have two arguments"
    );
}

#[test]
fn error_line_of_a_continued_instruction_is_its_first() {
    assert_eq!(
        err("FROM a\nRUN echo \\\n  a\nCOPY \\\n  x\n"),
        "Dockerfile:4: COPY requires at least two arguments, but only one was provided. Destination could not be determined"
    );
}

#[test]
fn instruction_names_are_case_insensitive() {
    let df = ok("from alpine AS Build\nrUn echo hi\nCopy a b\n");
    assert_eq!(df.stages[0].name.as_deref(), Some("build"));
    assert_eq!(df.stages[0].instructions.len(), 2);
}

#[test]
fn stages_global_args_and_names() {
    let df = ok(
        "ARG BASE=alpine\nARG V\nFROM $BASE AS one\nRUN a\nFROM --platform=linux/arm64 one\nFROM scratch as Three\n",
    );
    assert_eq!(
        df.global_args,
        vec![
            ArgDecl {
                name: "BASE".into(),
                default: Some("alpine".into())
            },
            ArgDecl {
                name: "V".into(),
                default: None
            },
        ]
    );
    assert_eq!(df.stages.len(), 3);
    assert_eq!(df.stages[0].from.image, "$BASE");
    assert_eq!(df.stages[0].from.line, 3);
    assert_eq!(df.stages[0].from.original, "FROM $BASE AS one");
    assert_eq!(df.stages[1].index, 1);
    assert_eq!(df.stages[1].name, None);
    assert_eq!(df.stages[1].from.platform.as_deref(), Some("linux/arm64"));
    assert_eq!(df.stages[2].name.as_deref(), Some("three"));
}

#[test]
fn duplicate_stage_name_is_refused() {
    assert_eq!(
        err("FROM a AS x\nFROM b AS X\n"),
        "Dockerfile:2: duplicate stage name \"x\""
    );
}

#[test]
fn bad_from_lines() {
    assert_eq!(
        err("FROM a AS\n"),
        "Dockerfile:1: FROM requires either one or three arguments"
    );
    assert_eq!(
        err("FROM a FOR b\n"),
        "Dockerfile:1: FROM requires either one or three arguments"
    );
    assert_eq!(
        err("FROM a AS 1st\n"),
        "Dockerfile:1: invalid name for build stage: \"1st\", name can't start with a number or contain symbols"
    );
    assert_eq!(
        err("FROM --platfrom=x a\n"),
        "Dockerfile:1: unknown flag: --platfrom (did you mean platform?)"
    );
    assert!(err("FROM\n").contains("FROM requires either one or three arguments"));
}

#[test]
fn stage_name_may_hold_dots_dashes_underscores() {
    let df = ok("FROM a AS my-stage_1.x\n");
    assert_eq!(df.stages[0].name.as_deref(), Some("my-stage_1.x"));
}

// --- directives -----------------------------------------------------------------------------

#[test]
fn directives_are_read() {
    let df = ok("# syntax=docker/dockerfile:1.7\n# escape=`\nFROM a\nRUN echo `\n  hi\n");
    assert_eq!(df.directives.escape, '`');
    assert_eq!(
        df.directives.syntax.as_deref(),
        Some("docker/dockerfile:1.7")
    );
    assert_eq!(
        df.stages[0].instructions[0].kind,
        InstructionKind::Run(Run {
            command: Command::Shell("echo   hi".into()),
            network: None,
            mounts: vec![],
            heredocs: vec![],
        })
    );
}

#[test]
fn default_directives() {
    let df = ok("FROM a\n");
    assert_eq!(
        df.directives,
        Directives {
            escape: '\\',
            syntax: None
        }
    );
}

#[test]
fn directive_after_instruction_is_a_comment() {
    let df = ok("FROM a\n# escape=`\nRUN a \\\n b\n");
    assert_eq!(df.directives.escape, '\\');
    assert_eq!(df.stages[0].instructions.len(), 1);
}

#[test]
fn repeated_directive_is_refused() {
    assert_eq!(
        err("# syntax=a\n# SYNTAX=b\nFROM a\n"),
        "Dockerfile:2: only one syntax parser directive can be used"
    );
}

#[test]
fn escape_backtick_keeps_windows_paths() {
    let df = ok("# escape=`\nFROM a\nCOPY C:\\src `\n  C:\\dest\n");
    let InstructionKind::Copy(copy) = &df.stages[0].instructions[0].kind else {
        panic!()
    };
    assert_eq!(copy.sources, strings(&["C:\\src"]));
    assert_eq!(copy.dest, "C:\\dest");
}

// --- comments and continuations ----------------------------------------------------------

#[test]
fn comments_inside_continuation_are_skipped() {
    let kind = one(
        "RUN apt-get update && \\\n# install\n    apt-get install -y x \\\n\n    && echo done\n",
    );
    assert_eq!(
        kind,
        InstructionKind::Run(Run {
            command: Command::Shell(
                "apt-get update &&     apt-get install -y x     && echo done".into()
            ),
            network: None,
            mounts: vec![],
            heredocs: vec![],
        })
    );
}

#[test]
fn hash_inside_an_instruction_is_not_a_comment() {
    assert_eq!(
        one("RUN echo a # not a comment\n"),
        InstructionKind::Run(Run {
            command: Command::Shell("echo a # not a comment".into()),
            network: None,
            mounts: vec![],
            heredocs: vec![],
        })
    );
}

#[test]
fn original_keeps_the_joined_line() {
    let df = ok("FROM a\n  RUN echo \\\n  b\n");
    assert_eq!(df.stages[0].instructions[0].original, "RUN echo   b");
    assert_eq!(df.stages[0].instructions[0].line, 2);
}

// --- RUN, CMD, ENTRYPOINT, SHELL -----------------------------------------------------------

#[test]
fn run_exec_and_shell_forms() {
    let InstructionKind::Run(run) = one(r#"RUN ["echo", "a b"]"#) else {
        panic!()
    };
    assert_eq!(run.command, Command::Exec(strings(&["echo", "a b"])));
    let InstructionKind::Run(run) = one("RUN echo \"a b\"") else {
        panic!()
    };
    assert_eq!(run.command, Command::Shell("echo \"a b\"".into()));
}

#[test]
fn invalid_json_falls_back_to_shell_form() {
    assert_eq!(
        one("CMD [\"a\", 'b']"),
        InstructionKind::Cmd(Command::Shell("[\"a\", 'b']".into()))
    );
    assert_eq!(
        one("ENTRYPOINT [nope]"),
        InstructionKind::Entrypoint(Command::Shell("[nope]".into()))
    );
}

#[test]
fn json_with_non_strings_is_an_error() {
    assert_eq!(
        err("FROM a\nCMD [\"a\", 1]\n"),
        "Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only"
    );
}

#[test]
fn json_exec_form_keeps_escapes_decoded() {
    assert_eq!(
        one(r#"CMD ["echo", "a\"b", "\u00e9\\n"]"#),
        InstructionKind::Cmd(Command::Exec(strings(&["echo", "a\"b", "é\\n"])))
    );
}

#[test]
fn empty_json_array() {
    assert_eq!(one("CMD []"), InstructionKind::Cmd(Command::Exec(vec![])));
}

#[test]
fn run_flags() {
    let InstructionKind::Run(run) = one(
        "RUN --network=none --mount=type=cache,target=/root/.cache --mount=type=bind,from=b,target=/x make\n",
    ) else {
        panic!()
    };
    assert_eq!(run.network.as_deref(), Some("none"));
    assert_eq!(
        run.mounts,
        strings(&[
            "type=cache,target=/root/.cache",
            "type=bind,from=b,target=/x"
        ])
    );
    assert_eq!(run.command, Command::Shell("make".into()));
}

#[test]
fn run_bad_flags() {
    assert_eq!(
        err("FROM a\nRUN --network=bridge x\n"),
        "Dockerfile:2: invalid network mode \"bridge\""
    );
    assert_eq!(
        err("FROM a\nRUN --netwrk=none x\n"),
        "Dockerfile:2: unknown flag: --netwrk (did you mean network?)"
    );
    assert_eq!(
        err("FROM a\nRUN --network=none --network=host x\n"),
        "Dockerfile:2: duplicate flag specified: network"
    );
}

#[test]
fn shell_must_be_json() {
    assert_eq!(
        one(r#"SHELL ["/bin/bash", "-c"]"#),
        InstructionKind::Shell(strings(&["/bin/bash", "-c"]))
    );
    assert_eq!(
        err("FROM a\nSHELL /bin/bash -c\n"),
        "Dockerfile:2: SHELL requires the arguments to be in JSON form"
    );
    assert_eq!(
        err("FROM a\nSHELL []\n"),
        "Dockerfile:2: SHELL requires at least one argument"
    );
}

#[test]
fn cmd_takes_no_flags() {
    assert_eq!(
        err("FROM a\nCMD --x=1 echo\n"),
        "Dockerfile:2: unknown flag: --x"
    );
}

// --- COPY and ADD ---------------------------------------------------------------------------

#[test]
fn copy_flags_and_words() {
    let InstructionKind::Copy(copy) =
        one("COPY --from=build --chown=app:app --chmod=755 --link a/*.c \"b\" /dest/\n")
    else {
        panic!()
    };
    assert_eq!(
        copy,
        Copy {
            sources: strings(&["a/*.c", "\"b\""]),
            dest: "/dest/".into(),
            from: Some("build".into()),
            chown: Some("app:app".into()),
            chmod: Some("755".into()),
            link: true,
            checksum: None,
            heredocs: vec![],
        }
    );
}

#[test]
fn copy_json_form_allows_spaces() {
    let InstructionKind::Copy(copy) = one(r#"COPY ["a b", "c", "/d e/"]"#) else {
        panic!()
    };
    assert_eq!(copy.sources, strings(&["a b", "c"]));
    assert_eq!(copy.dest, "/d e/");
}

#[test]
fn copy_needs_two_arguments() {
    assert_eq!(
        err("FROM a\nCOPY x\n"),
        "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined"
    );
    assert!(err("FROM a\nADD\n").starts_with("Dockerfile:2: ADD requires at least two arguments"));
}

#[test]
fn copy_flag_typo() {
    assert_eq!(
        err("FROM a\nCOPY --frm=x a b\n"),
        "Dockerfile:2: unknown flag: --frm (did you mean from?)"
    );
    assert_eq!(
        err("FROM a\nCOPY --checksum=sha256:x a b\n"),
        "Dockerfile:2: unknown flag: --checksum"
    );
    assert_eq!(
        err("FROM a\nCOPY --from a b\n"),
        "Dockerfile:2: missing a value on flag: from"
    );
}

#[test]
fn add_flags() {
    let InstructionKind::Add(add) =
        one("ADD --checksum=sha256:abc --keep-git-dir --chown=1:2 https://x/y.tgz /y\n")
    else {
        panic!()
    };
    assert_eq!(add.checksum.as_deref(), Some("sha256:abc"));
    assert_eq!(add.chown.as_deref(), Some("1:2"));
    assert_eq!(add.from, None);
    assert_eq!(
        err("FROM a\nADD --from=x a b\n"),
        "Dockerfile:2: unknown flag: --from"
    );
}

// --- heredocs -------------------------------------------------------------------------------

#[test]
fn run_heredoc() {
    let df = ok("FROM a\nRUN <<EOF\necho $HOME\n  set -e\nEOF\nRUN next\n");
    let instructions = &df.stages[0].instructions;
    assert_eq!(instructions.len(), 2);
    assert_eq!(instructions[1].line, 6);
    let InstructionKind::Run(run) = &instructions[0].kind else {
        panic!()
    };
    assert_eq!(run.command, Command::Shell("<<EOF".into()));
    assert_eq!(
        run.heredocs,
        vec![Heredoc {
            name: "EOF".into(),
            content: "echo $HOME\n  set -e\n".into(),
            expand: true,
            strip_tabs: false,
        }]
    );
}

#[test]
fn heredoc_quoted_delimiter_does_not_expand() {
    for opener in ["<<'EOF'", "<<\"EOF\"", "<<E'O'F"] {
        let InstructionKind::Run(run) = one(&format!("RUN {opener}\nx\nEOF\n")) else {
            panic!()
        };
        assert_eq!(run.heredocs[0].name, "EOF", "{opener}");
        assert!(!run.heredocs[0].expand, "{opener}");
    }
}

#[test]
fn heredoc_dash_keeps_tabs_in_content_and_matches_tabbed_terminator() {
    let InstructionKind::Run(run) = one("RUN <<-EOT\n\techo a\n\tEOT\n") else {
        panic!()
    };
    assert_eq!(run.heredocs[0].content, "\techo a\n");
    assert!(run.heredocs[0].strip_tabs);
}

#[test]
fn heredoc_as_stdin_of_a_command() {
    let InstructionKind::Run(run) = one("RUN python3 <<EOF\nprint(1)\nEOF\n") else {
        panic!()
    };
    assert_eq!(run.command, Command::Shell("python3 <<EOF".into()));
    assert_eq!(run.heredocs[0].content, "print(1)\n");
}

#[test]
fn several_heredocs_on_one_line() {
    let InstructionKind::Run(run) = one("RUN cat <<A && cat <<-B\none\nA\n\ttwo\n\tB\n") else {
        panic!()
    };
    let names: Vec<_> = run.heredocs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(run.heredocs[0].content, "one\n");
    assert_eq!(run.heredocs[1].content, "\ttwo\n");
}

#[test]
fn copy_heredoc() {
    let InstructionKind::Copy(copy) = one("COPY <<EOF /etc/motd\nhello ${USER}\nEOF\n") else {
        panic!()
    };
    assert_eq!(copy.sources, strings(&["<<EOF"]));
    assert_eq!(copy.dest, "/etc/motd");
    assert_eq!(copy.heredocs[0].content, "hello ${USER}\n");
    assert_eq!(heredoc_name(&copy.sources[0]).as_deref(), Some("EOF"));
}

#[test]
fn copy_several_heredocs_and_files() {
    let InstructionKind::Copy(copy) = one("COPY <<one <<two file /dir/\n1\none\n2\ntwo\n") else {
        panic!()
    };
    assert_eq!(copy.sources, strings(&["<<one", "<<two", "file"]));
    assert_eq!(copy.heredocs.len(), 2);
    assert_eq!(copy.heredocs[1].content, "2\n");
}

#[test]
fn heredoc_as_destination_is_refused() {
    assert_eq!(
        err("FROM a\nCOPY a <<EOF\nx\nEOF\n"),
        "Dockerfile:2: COPY cannot accept a heredoc as a destination"
    );
}

#[test]
fn unterminated_heredoc() {
    assert_eq!(
        err("FROM a\nRUN <<EOF\necho\n"),
        "Dockerfile:2: unterminated heredoc"
    );
}

#[test]
fn heredoc_not_in_exec_form_or_other_instructions() {
    let InstructionKind::Run(run) = one(r#"RUN ["cat", "<<EOF"]"#) else {
        panic!()
    };
    assert!(run.heredocs.is_empty());
    let all = kinds("FROM a\nCMD cat <<EOF\nRUN x\n");
    assert_eq!(all.len(), 2);
}

#[test]
fn shift_is_not_a_heredoc() {
    let InstructionKind::Run(run) = one("RUN echo $((1<<2))\n") else {
        panic!()
    };
    assert!(run.heredocs.is_empty());
}

#[test]
fn heredoc_body_keeps_comment_lines_and_blank_lines() {
    let InstructionKind::Run(run) = one("RUN <<EOF\n# keep me\n\nEOF\n") else {
        panic!()
    };
    assert_eq!(run.heredocs[0].content, "# keep me\n\n");
}

#[test]
fn heredoc_name_recognition() {
    assert_eq!(heredoc_name("<<EOF").as_deref(), Some("EOF"));
    assert_eq!(heredoc_name("<<-'END'").as_deref(), Some("END"));
    assert_eq!(heredoc_name("3<<X").as_deref(), Some("X"));
    assert_eq!(heredoc_name("<<"), None);
    assert_eq!(heredoc_name("file"), None);
    assert_eq!(heredoc_name("a<<EOF"), None);
}

// --- ENV, LABEL, ARG ------------------------------------------------------------------------

#[test]
fn env_key_value_pairs_keep_quotes() {
    assert_eq!(
        one("ENV A=1 B=\"x y\" C='z' D=e\\ f E=\n"),
        InstructionKind::Env(pairs(&[
            ("A", "1"),
            ("B", "\"x y\""),
            ("C", "'z'"),
            ("D", "e\\ f"),
            ("E", "")
        ]))
    );
}

#[test]
fn env_legacy_form_takes_the_rest_of_the_line() {
    assert_eq!(
        one("ENV GREETING hello  big world\n"),
        InstructionKind::Env(pairs(&[("GREETING", "hello  big world")]))
    );
}

#[test]
fn env_errors() {
    assert_eq!(
        err("FROM a\nENV ONLY\n"),
        "Dockerfile:2: ENV must have two arguments"
    );
    assert_eq!(
        err("FROM a\nENV A=1 B\n"),
        "Dockerfile:2: Syntax error - can't find = in \"B\". Must be of the form: name=value"
    );
    assert_eq!(
        err("FROM a\nENV\n"),
        "Dockerfile:2: ENV requires at least one argument"
    );
    assert_eq!(
        err("FROM a\nENV =x\n"),
        "Dockerfile:2: ENV names can not be blank"
    );
}

#[test]
fn label_both_syntaxes() {
    assert_eq!(
        one("LABEL \"com.example.vendor\"=\"ACME\" version=1.0\n"),
        InstructionKind::Label(pairs(&[
            ("\"com.example.vendor\"", "\"ACME\""),
            ("version", "1.0")
        ]))
    );
    assert_eq!(
        one("LABEL description This is  a test\n"),
        InstructionKind::Label(pairs(&[("description", "This is  a test")]))
    );
    assert_eq!(
        err("FROM a\nLABEL x\n"),
        "Dockerfile:2: LABEL must have two arguments"
    );
}

#[test]
fn arg_declarations() {
    assert_eq!(
        one("ARG A B=2 C=\"x y\" D=\n"),
        InstructionKind::Arg(vec![
            ArgDecl {
                name: "A".into(),
                default: None
            },
            ArgDecl {
                name: "B".into(),
                default: Some("2".into())
            },
            ArgDecl {
                name: "C".into(),
                default: Some("\"x y\"".into())
            },
            ArgDecl {
                name: "D".into(),
                default: Some("".into())
            },
        ])
    );
    assert_eq!(
        err("FROM a\nARG\n"),
        "Dockerfile:2: ARG requires at least one argument"
    );
    assert_eq!(
        err("FROM a\nARG =1\n"),
        "Dockerfile:2: ARG names can not be blank"
    );
}

// --- the rest -------------------------------------------------------------------------------

#[test]
fn single_argument_instructions() {
    assert_eq!(
        one("WORKDIR /a b\n"),
        InstructionKind::Workdir("/a b".into())
    );
    assert_eq!(
        one("USER app:app\n"),
        InstructionKind::User("app:app".into())
    );
    assert_eq!(
        one("STOPSIGNAL SIGKILL\n"),
        InstructionKind::StopSignal("SIGKILL".into())
    );
    assert_eq!(
        one("MAINTAINER Jane <j@x>\n"),
        InstructionKind::Maintainer("Jane <j@x>".into())
    );
    for name in ["WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"] {
        assert_eq!(
            err(&format!("FROM a\n{name}\n")),
            format!("Dockerfile:2: {name} requires exactly one argument")
        );
    }
}

#[test]
fn expose_and_volume() {
    assert_eq!(
        one("EXPOSE 80 53/udp ${PORT}\n"),
        InstructionKind::Expose(strings(&["80", "53/udp", "${PORT}"]))
    );
    assert_eq!(
        one("VOLUME /a /b\n"),
        InstructionKind::Volume(strings(&["/a", "/b"]))
    );
    assert_eq!(
        one(r#"VOLUME ["/c d", "/e"]"#),
        InstructionKind::Volume(strings(&["/c d", "/e"]))
    );
    assert_eq!(
        err("FROM a\nEXPOSE\n"),
        "Dockerfile:2: EXPOSE requires at least one argument"
    );
    assert_eq!(
        err("FROM a\nVOLUME [\"\"]\n"),
        "Dockerfile:2: VOLUME specified can not be an empty string"
    );
    assert_eq!(
        err("FROM a\nVOLUME []\n"),
        "Dockerfile:2: VOLUME requires at least one argument"
    );
}

#[test]
fn healthcheck_forms() {
    assert_eq!(
        one("HEALTHCHECK NONE\n"),
        InstructionKind::Healthcheck(Healthcheck::Disable)
    );
    assert_eq!(
        one("HEALTHCHECK --interval=1m30s --timeout=3s --start-period=0s --start-interval=500ms --retries=3 CMD curl -f http://x/ || exit 1\n"),
        InstructionKind::Healthcheck(Healthcheck::Check {
            test: Command::Shell("curl -f http://x/ || exit 1".into()),
            interval: Some(Duration::from_secs(90)),
            timeout: Some(Duration::from_secs(3)),
            start_period: None,
            start_interval: Some(Duration::from_millis(500)),
            retries: Some(3),
        })
    );
    assert_eq!(
        one(r#"healthcheck cmd ["/bin/check", "-q"]"#),
        InstructionKind::Healthcheck(Healthcheck::Check {
            test: Command::Exec(strings(&["/bin/check", "-q"])),
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        })
    );
}

#[test]
fn healthcheck_errors() {
    let cases = [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        (
            "HEALTHCHECK RUN x",
            "Unknown type \"RUN\" in HEALTHCHECK (try CMD)",
        ),
        (
            "HEALTHCHECK --interval=5 CMD x",
            "time: missing unit in duration \"5\"",
        ),
        (
            "HEALTHCHECK --interval=10us CMD x",
            "Interval \"interval\" cannot be less than 1ms",
        ),
        (
            "HEALTHCHECK --retries=-1 CMD x",
            "--retries cannot be negative (-1)",
        ),
        (
            "HEALTHCHECK --retries=x CMD x",
            "strconv.ParseInt: parsing \"x\": invalid syntax",
        ),
        (
            "HEALTHCHECK --intervall=1s CMD x",
            "unknown flag: --intervall (did you mean interval?)",
        ),
    ];
    for (line, message) in cases {
        assert_eq!(
            err(&format!("FROM a\n{line}\n")),
            format!("Dockerfile:2: {message}"),
            "{line}"
        );
    }
}

#[test]
fn healthcheck_none_ignores_flags() {
    assert_eq!(
        one("HEALTHCHECK --interval=bogus NONE\n"),
        InstructionKind::Healthcheck(Healthcheck::Disable)
    );
}

#[test]
fn onbuild_trigger_is_parsed() {
    let df = ok("FROM a\nONBUILD RUN echo hi\nonbuild COPY --chown=1 . /app\n");
    let InstructionKind::Onbuild(trigger) = &df.stages[0].instructions[0].kind else {
        panic!()
    };
    assert_eq!(trigger.original, "RUN echo hi");
    assert_eq!(trigger.line, 2);
    assert!(matches!(trigger.kind, InstructionKind::Run(_)));
    let InstructionKind::Onbuild(trigger) = &df.stages[0].instructions[1].kind else {
        panic!()
    };
    let InstructionKind::Copy(copy) = &trigger.kind else {
        panic!()
    };
    assert_eq!(copy.chown.as_deref(), Some("1"));
}

#[test]
fn onbuild_with_heredoc() {
    let InstructionKind::Onbuild(trigger) = one("ONBUILD RUN <<EOF\necho\nEOF\n") else {
        panic!()
    };
    let InstructionKind::Run(run) = &trigger.kind else {
        panic!()
    };
    assert_eq!(run.heredocs[0].content, "echo\n");
}

#[test]
fn onbuild_refusals() {
    assert_eq!(
        err("FROM a\nONBUILD ONBUILD RUN x\n"),
        "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        err("FROM a\nONBUILD FROM b\n"),
        "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        err("FROM a\nONBUILD maintainer me\n"),
        "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        err("FROM a\nONBUILD\n"),
        "Dockerfile:2: ONBUILD requires at least one argument"
    );
}

#[test]
fn windows_line_endings_everywhere() {
    let df = ok("FROM a\r\nENV A=1 \\\r\n    B=2\r\nRUN <<EOF\r\necho\r\nEOF\r\n");
    assert_eq!(
        df.stages[0].instructions[0].kind,
        InstructionKind::Env(pairs(&[("A", "1"), ("B", "2")]))
    );
    let InstructionKind::Run(run) = &df.stages[0].instructions[1].kind else {
        panic!()
    };
    assert_eq!(run.heredocs[0].content, "echo\r\n");
}

#[test]
fn run_mount_shape_is_checked_when_parsing() {
    assert_eq!(
        err("FROM a\nRUN --mount=target x\n"),
        "Dockerfile:2: invalid field 'target' must be a key=value pair"
    );
    assert_eq!(
        err("FROM a\nRUN --mount=type=bind,from=$STAGE,target=/s x\n"),
        "Dockerfile:2: 'from' doesn't support variable expansion, define alias stage instead"
    );
    assert_eq!(
        err("FROM a\nRUN --mount= x\n"),
        "Dockerfile:2: failed to parse csv mounts: EOF"
    );
    // Values with variables wait for the executor's scope.
    let InstructionKind::Run(run) = one("RUN --mount=type=cache,target=$CACHE make\n") else {
        panic!()
    };
    assert_eq!(run.mounts, strings(&["type=cache,target=$CACHE"]));
}

#[test]
fn buildkit_flags_berth_lacks_are_refused_by_name() {
    for (line, flag) in [
        ("COPY --parents a/./b /x", "parents"),
        ("COPY --exclude=*.md . /x", "exclude"),
        ("ADD --unpack=true a.tgz /x", "unpack"),
        ("RUN --security=insecure x", "security"),
        ("RUN --device=gpu x", "device"),
    ] {
        assert_eq!(
            err(&format!("FROM a\n{line}\n")),
            format!("Dockerfile:2: flag --{flag} is not supported by berth")
        );
    }
}

#[test]
fn quoted_heredoc_marker_is_a_word_not_a_heredoc() {
    let all = kinds("FROM a\nRUN echo \"<<EOF\" '<<X'\nRUN next\n");
    assert_eq!(all.len(), 2);
    let InstructionKind::Run(run) = &all[0] else {
        panic!()
    };
    assert!(run.heredocs.is_empty());
}

#[test]
fn heredoc_must_start_a_word() {
    // `cat<<EOF` opens no heredoc: the body lines are instructions (here an unknown one).
    assert_eq!(
        err("FROM a\nRUN cat<<EOF\ngreetings\nEOF\n"),
        "Dockerfile:3: unknown instruction: greetings"
    );
}

#[test]
fn heredoc_with_file_descriptor_and_command_after() {
    let InstructionKind::Run(run) = one("RUN 3<<EOF cat /dev/fd/3\nx\nEOF\n") else {
        panic!()
    };
    assert_eq!(run.heredocs[0].name, "EOF");
    assert_eq!(run.command, Command::Shell("3<<EOF cat /dev/fd/3".into()));
}

#[test]
fn directive_after_byte_order_mark() {
    let df = ok("\u{feff}# syntax=docker/dockerfile:1\n# escape=`\nFROM a\n");
    assert_eq!(df.directives.escape, '`');
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
}

#[test]
fn indented_directive_is_honoured() {
    let df = ok("  # escape=`\nFROM a\n");
    assert_eq!(df.directives.escape, '`');
}

#[test]
fn continuation_at_end_of_file() {
    let InstructionKind::Env(pairs) = one("ENV A=1 \\\n# trailing comment\n") else {
        panic!()
    };
    assert_eq!(pairs, super::parse_tests::pairs(&[("A", "1")]));
}

#[test]
fn onbuild_json_trigger_and_trigger_text_with_heredoc() {
    let df = ok("FROM a\nONBUILD CMD [\"run\"]\nONBUILD RUN <<EOF\necho hi\nEOF\n");
    let InstructionKind::Onbuild(cmd) = &df.stages[0].instructions[0].kind else {
        panic!()
    };
    assert_eq!(
        cmd.kind,
        InstructionKind::Cmd(Command::Exec(strings(&["run"])))
    );
    assert_eq!(super::parse::onbuild_trigger_text(cmd), "CMD [\"run\"]");
    let InstructionKind::Onbuild(run) = &df.stages[0].instructions[1].kind else {
        panic!()
    };
    assert_eq!(
        super::parse::onbuild_trigger_text(run),
        "RUN <<EOF\necho hi\nEOF"
    );
}

/// Hostile input never panics the parser, the plan or the lexer: random lines built from the
/// characters and words that steer them (quotes, escapes, `$`, braces, heredoc markers,
/// continuations, multibyte characters), checked for an answer, not for which.
#[test]
fn random_input_never_panics() {
    const PIECES: &[&str] = &[
        "FROM ",
        "RUN ",
        "COPY ",
        "ADD ",
        "ENV ",
        "LABEL ",
        "ARG ",
        "ONBUILD ",
        "HEALTHCHECK ",
        "CMD ",
        "SHELL ",
        "EXPOSE ",
        "VOLUME ",
        "WORKDIR ",
        "USER ",
        "STOPSIGNAL ",
        " AS ",
        "scratch",
        "--from=",
        "--mount=",
        "type=cache,from=x",
        "--interval=",
        "--",
        "-",
        "=",
        "\"",
        "'",
        "\\",
        "`",
        "$",
        "${",
        "}",
        ":-",
        ":+",
        ":?",
        "#",
        "%",
        "/",
        "//",
        "*",
        "?",
        "[",
        "]",
        ",",
        "<<",
        "<<-",
        "EOF",
        "\n",
        "\r\n",
        "\t",
        " ",
        "é",
        "€",
        "𝄞",
        "0",
        "1",
        "# escape=`\n",
        "# syntax=x\n",
        "\\\n",
        "`\n",
        "NONE",
        "CMD",
        "[\"a\"]",
        "[1]",
        "{",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..10_000 {
        let len = (next() % 24) as usize;
        let mut text = String::new();
        for _ in 0..len {
            text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
        }
        let outcome = std::panic::catch_unwind(|| {
            if let Ok(df) = parse(&text, "Dockerfile") {
                let _ = super::plan::plan(&df, None, &Default::default());
            }
            let _ = super::expand::expand_word(&text, '\\', &|_| Some("v".to_string()));
            let _ = super::expand::expand_words(&text, '`', &|_| None);
            let _ = super::mount::parse_mount(&text, None);
            let _ = heredoc_name(&text);
        });
        assert!(outcome.is_ok(), "panicked on {text:?}");
    }
}
