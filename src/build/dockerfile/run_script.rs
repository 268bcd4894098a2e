//! What a shell-form RUN with heredocs runs, as BuildKit decides it: `RUN <<EOF` alone runs
//! the body as the shell script (or, when the body starts with `#!`, as a program of its
//! own); any other command gets the heredocs back in its text for the shell to feed them.
use super::ast::Heredoc;
use super::expand::chomp_heredoc;
use super::parse::heredoc_name;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunScript {
    /// Text for the SHELL (`/bin/sh -c TEXT`).
    Shell(String),
    /// A script with its own interpreter: write `content` to a file named `name` (mode 0755,
    /// BuildKit mounts it under `/dev/pipes/`) and run that path through the SHELL.
    Program { name: String, content: String },
}

/// The script of a shell-form RUN `command` with its `heredocs` (none: the command itself).
pub fn run_script(command: &str, heredocs: &[Heredoc]) -> RunScript {
    let Some(first) = heredocs.first() else {
        return RunScript::Shell(command.to_string());
    };
    if heredoc_name(command).is_some() {
        let content = if first.strip_tabs {
            chomp_heredoc(&first.content)
        } else {
            first.content.clone()
        };
        if content.starts_with("#!") {
            return RunScript::Program {
                name: first.name.clone(),
                content,
            };
        }
        return RunScript::Shell(content);
    }
    // The shell reads the heredocs itself (it handles `<<-` and quoting).
    let mut text = command.to_string();
    for heredoc in heredocs {
        text.push('\n');
        text.push_str(&heredoc.content);
        text.push_str(&heredoc.name);
    }
    RunScript::Shell(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::dockerfile::ast::{Command, InstructionKind};
    use crate::build::dockerfile::parse::parse;

    fn run_of(source: &str) -> RunScript {
        let df = parse(&format!("FROM a\n{source}"), "Dockerfile").unwrap();
        let InstructionKind::Run(run) = &df.stages[0].instructions[0].kind else {
            panic!()
        };
        let Command::Shell(command) = &run.command else {
            panic!()
        };
        run_script(command, &run.heredocs)
    }

    #[test]
    fn no_heredoc_is_the_command() {
        assert_eq!(run_of("RUN echo hi\n"), RunScript::Shell("echo hi".into()));
    }

    #[test]
    fn lone_heredoc_is_the_script() {
        assert_eq!(
            run_of("RUN <<EOF\nset -e\necho $HOME\nEOF\n"),
            RunScript::Shell("set -e\necho $HOME\n".into())
        );
    }

    #[test]
    fn lone_dash_heredoc_is_chomped() {
        assert_eq!(
            run_of("RUN <<-EOF\n\techo a\n\tEOF\n"),
            RunScript::Shell("echo a\n".into())
        );
    }

    #[test]
    fn shebang_heredoc_is_a_program() {
        assert_eq!(
            run_of("RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n"),
            RunScript::Program {
                name: "EOF".into(),
                content: "#!/usr/bin/env python3\nprint(1)\n".into()
            }
        );
    }

    #[test]
    fn heredoc_as_stdin_goes_back_to_the_shell() {
        assert_eq!(
            run_of("RUN python3 <<EOF\nprint(1)\nEOF\n"),
            RunScript::Shell("python3 <<EOF\nprint(1)\nEOF".into())
        );
        assert_eq!(
            run_of("RUN cat <<A > /a && cat <<'B' > /b\n1\nA\n$2\nB\n"),
            RunScript::Shell("cat <<A > /a && cat <<'B' > /b\n1\nA\n$2\nB".into())
        );
    }
}
