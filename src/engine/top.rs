//! `top CONTAINER [ps OPTIONS]`: the host's `ps`, kept to the container's processes, as
//! Docker's daemon does it: run `ps` (default `-ef`), find the PID column in its header, keep
//! the lines whose PID is one of the container's (and the thread lines, PID "-", that follow
//! one of them), and merge any cells past the last title into the last one.

use crate::engine::template::tabwriter;
use anyhow::{bail, Context, Result};
use std::process::Command;

/// `ps`'s arguments when none are given.
pub const DEFAULT_PS_ARGS: &str = "-ef";

/// `docker top`'s table: `tabwriter.NewWriter(out, 20, 1, 3, ' ', 0)`.
const TOP_MIN_WIDTH: usize = 20;
const TOP_PADDING: usize = 3;

/// The processes of a container as `ps` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// Refuses `ps` options that would rename the PID column (`-o pid=X`), which Docker refuses
/// in the same words.
pub fn validate_ps_args(args: &str) -> Result<()> {
    // Docker's pattern: \s+(\S*)=\s*(PID\S*): an option "k=" followed by a word starting
    // with "PID" renames a column to PID; only "pid=PID..." is allowed.
    let bytes = args.as_bytes();
    let mut i = 0;
    while let Some(eq) = args[i..].find('=').map(|p| p + i) {
        let key_start = args[..eq].rfind(char::is_whitespace).map_or(0, |p| p + 1);
        let preceded_by_space = key_start > 0;
        let value = args[eq + 1..].trim_start();
        let value_word = value.split(char::is_whitespace).next().unwrap_or("");
        if preceded_by_space && value_word.starts_with("PID") {
            let key = &args[key_start..eq];
            if key != "pid" {
                bail!("specifying \"{key}={value_word}\" is not allowed");
            }
        }
        i = eq + 1;
        if i >= bytes.len() {
            break;
        }
    }
    Ok(())
}

/// Runs the host's `ps` with `ps_args` (split on spaces, as Docker splits them) and keeps the
/// processes in `pids`.
pub fn top(pids: &[i32], ps_args: &str) -> Result<Top> {
    let ps_args = if ps_args.is_empty() {
        DEFAULT_PS_ARGS
    } else {
        ps_args
    };
    validate_ps_args(ps_args)?;
    let args: Vec<&str> = ps_args.split(' ').collect();
    let output = Command::new("ps")
        .args(&args)
        .output()
        .context("cannot run ps")?;
    if !output.status.success() {
        bail!(
            "ps: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_ps_output(&String::from_utf8_lossy(&output.stdout), pids)
}

/// `ps`'s output kept to the processes in `pids`.
pub fn parse_ps_output(output: &str, pids: &[i32]) -> Result<Top> {
    let mut lines = output.split('\n');
    let titles: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let Some(pid_index) = titles.iter().position(|t| t == "PID") else {
        bail!("Couldn't find PID field in ps output");
    };
    let mut processes = Vec::new();
    // Thread lines (`ps -m`) have "-" as their PID and belong to the process above them.
    let mut in_container = false;
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let Some(pid_field) = fields.get(pid_index) else {
            continue;
        };
        if *pid_field == "-" {
            if in_container {
                processes.push(merge_overhang(&fields, titles.len()));
            }
            continue;
        }
        let pid: i32 = pid_field
            .parse()
            .map_err(|e| anyhow::anyhow!("Unexpected pid '{pid_field}': {e}"))?;
        in_container = pids.contains(&pid);
        if in_container {
            processes.push(merge_overhang(&fields, titles.len()));
        }
    }
    Ok(Top { titles, processes })
}

/// A process's cells, those past the last title joined into one (a command with spaces).
fn merge_overhang(fields: &[&str], titles: usize) -> Vec<String> {
    let last = titles.saturating_sub(1).min(fields.len());
    let mut cells: Vec<String> = fields[..last].iter().map(|s| s.to_string()).collect();
    cells.push(fields[last..].join(" "));
    cells
}

/// Docker's `top` table.
pub fn format_top(top: &Top) -> String {
    let mut text = top.titles.join("\t");
    text.push('\n');
    for p in &top.processes {
        text.push_str(&p.join("\t"));
        text.push('\n');
    }
    tabwriter(&text, TOP_MIN_WIDTH, TOP_PADDING)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS_EF: &str = "\
UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 10:00 ?        00:00:01 /sbin/init
root        4242    4200  0 10:01 ?        00:00:00 sleep 1000
root        4243    4242  0 10:01 ?        00:00:00 sh -c while true; do :; done
root        5000       1  0 10:02 ?        00:00:00 other
";

    #[test]
    fn keeps_the_containers_lines_with_their_whole_command() {
        let top = parse_ps_output(PS_EF, &[4242, 4243]).unwrap();
        assert_eq!(
            top.titles,
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        );
        assert_eq!(top.processes.len(), 2);
        assert_eq!(top.processes[0][1], "4242");
        assert_eq!(top.processes[1][7], "sh -c while true; do :; done");
        assert_eq!(
            format_top(&top),
            "\
UID                 PID                 PPID                C                   STIME               TTY                 TIME                CMD
root                4242                4200                0                   10:01               ?                   00:00:00            sleep 1000
root                4243                4242                0                   10:01               ?                   00:00:00            sh -c while true; do :; done
"
        );
    }

    #[test]
    fn thread_lines_follow_their_process() {
        let ps = "PID TID CMD\n4242 - sleep\n- 4242 -\n- 4250 -\n5000 - other\n- 5000 -\n";
        let top = parse_ps_output(ps, &[4242]).unwrap();
        assert_eq!(top.processes.len(), 3);
        assert_eq!(top.processes[2], ["-", "4250", "-"]);
    }

    #[test]
    fn errors_in_dockers_words() {
        let e = parse_ps_output("USER CMD\nroot x\n", &[1]).unwrap_err();
        assert_eq!(e.to_string(), "Couldn't find PID field in ps output");
        let e = parse_ps_output("PID CMD\nabc x\n", &[1]).unwrap_err();
        assert!(e.to_string().starts_with("Unexpected pid 'abc'"), "{e}");
        validate_ps_args("-ef").unwrap();
        validate_ps_args("-o pid=PID,comm").unwrap();
        validate_ps_args("-o pid,comm").unwrap();
        let e = validate_ps_args("-o user=PID,comm").unwrap_err();
        assert_eq!(e.to_string(), "specifying \"user=PID,comm\" is not allowed");
    }

    #[test]
    fn runs_the_hosts_ps_on_this_process() {
        let me = std::process::id() as i32;
        let top = top(&[me], "").unwrap();
        assert_eq!(top.processes.len(), 1, "{top:?}");
        assert_eq!(top.processes[0][1], me.to_string());
        let top = super::top(&[me], "-o pid,comm").unwrap();
        assert_eq!(top.titles, ["PID", "COMMAND"]);
        assert_eq!(top.processes[0][0], me.to_string());
        assert!(super::top(&[me], "--no-such-option").is_err());
    }
}
