//! What a build prints, in the style of the classic builders (Docker's, buildah's): each step
//! as `STEP n/N: INSTRUCTION`, a RUN's output as it comes, `--> CACHED` or `--> ID (TIME)`,
//! then `Successfully built ID` and `Successfully tagged NAME`. With `-q` only the image id
//! is printed, on stdout; a failing RUN's output is then shown with the error.

use std::io::Write;
use std::time::Duration;

/// How much of a RUN's output a quiet build keeps to show with its failure.
const QUIET_TAIL: usize = 64 * 1024;

pub struct Output {
    quiet: bool,
    /// In quiet mode, the end of the current RUN's output.
    tail: Vec<u8>,
    /// Put before each line (`[stage] `) by a stage built beside others.
    prefix: String,
    /// With a prefix: the RUN's output after its last newline.
    partial: Vec<u8>,
}

impl Output {
    pub fn new(quiet: bool) -> Output {
        Output {
            quiet,
            tail: Vec::new(),
            prefix: String::new(),
            partial: Vec::new(),
        }
    }

    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// Every line from now on starts with `[label] ` (one write per line, so that the lines
    /// of stages built at once do not mix).
    pub fn set_prefix(&mut self, label: &str) {
        self.prefix = format!("[{label}] ");
    }

    fn line(&mut self, text: &str) {
        if !self.quiet {
            self.end_partial();
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(format!("{}{text}\n", self.prefix).as_bytes());
            let _ = out.flush();
        }
    }

    /// A RUN's last line without its newline, ended.
    pub fn end_partial(&mut self) {
        if !self.partial.is_empty() {
            self.partial.push(b'\n');
            let line = std::mem::take(&mut self.partial);
            self.prefixed(&line);
        }
    }

    fn prefixed(&self, line: &[u8]) {
        let mut buf = self.prefix.as_bytes().to_vec();
        buf.extend_from_slice(line);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&buf);
        let _ = out.flush();
    }

    pub fn step(&mut self, n: usize, total: usize, text: &str) {
        self.tail.clear();
        self.line(&format!("STEP {n}/{total}: {text}"));
    }

    /// A RUN's output, as it comes.
    pub fn run_output(&mut self, bytes: &[u8]) {
        if self.quiet {
            self.tail.extend_from_slice(bytes);
            if self.tail.len() > QUIET_TAIL {
                let cut = self.tail.len() - QUIET_TAIL;
                self.tail.drain(..cut);
            }
        } else if self.prefix.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(bytes);
            let _ = out.flush();
        } else {
            self.partial.extend_from_slice(bytes);
            while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                self.prefixed(&line);
            }
        }
    }

    /// What a quiet build swallowed of the failing step's output.
    pub fn swallowed(&self) -> &[u8] {
        &self.tail
    }

    pub fn cached(&mut self) {
        self.line("--> CACHED");
    }

    pub fn done(&mut self, id: &str, took: Duration) {
        self.line(&format!("--> {} ({})", short(id), seconds(took)));
    }

    pub fn note(&mut self, text: &str) {
        self.line(text);
    }

    /// The end of a build: the image id (alone, in quiet mode) and its names.
    pub fn finished(&mut self, id: &str, tags: &[String], took: Duration) {
        if self.quiet {
            println!("{id}");
            return;
        }
        self.line(&format!(
            "Successfully built {} in {}",
            short(id),
            seconds(took)
        ));
        for t in tags {
            self.line(&format!("Successfully tagged {t}"));
        }
        self.line(id);
    }
}

/// The 12 hex digits Docker shows of an id.
pub fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_keeps_only_the_tail() {
        let mut o = Output::new(true);
        o.run_output(&vec![b'a'; QUIET_TAIL]);
        o.run_output(b"end");
        assert_eq!(o.swallowed().len(), QUIET_TAIL);
        assert!(o.swallowed().ends_with(b"aend"));
        o.step(2, 3, "RUN true");
        assert!(o.swallowed().is_empty());
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.50s");
        let mut p = Output::new(false);
        p.set_prefix("a");
        p.run_output(b"one\ntw");
        assert_eq!(p.partial, b"tw");
        p.run_output(b"o\n");
        assert!(p.partial.is_empty());
    }
}
