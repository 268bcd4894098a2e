//! Docker's json-file log: one JSON object a line (`{"log":"...\n","stream":"stdout","time":...}`),
//! written by the monitor, read by `logs`. `max-size` and `max-file` rotate it as Docker does
//! (`ID-json.log`, `ID-json.log.1`, ...).

use crate::image::time::{now_rfc3339_nanos, parse_rfc3339};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Docker cuts a line longer than this into several entries.
const MAX_ENTRY: usize = 16 * 1024;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// The log options of `--log-opt`, checked as Docker checks them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rotation {
    /// Bytes; 0 for no limit.
    pub max_size: u64,
    pub max_file: u32,
}

impl Rotation {
    pub fn from_opts(opts: &std::collections::BTreeMap<String, String>) -> Result<Rotation> {
        let mut r = Rotation {
            max_size: 0,
            max_file: 1,
        };
        for (k, v) in opts {
            match k.as_str() {
                "max-size" => {
                    r.max_size = parse_size(v)
                        .with_context(|| format!("invalid value for log opt max-size: {v}"))?
                }
                "max-file" => {
                    r.max_file = v
                        .parse()
                        .ok()
                        .filter(|n| *n >= 1)
                        .with_context(|| format!("invalid value for log opt max-file: {v}"))?
                }
                "compress" | "labels" | "env" | "env-regex" | "tag" => {}
                _ => bail!("unknown log opt '{k}' for json-file log driver"),
            }
        }
        if r.max_file > 1 && r.max_size == 0 {
            bail!("max-file cannot be set without max-size");
        }
        Ok(r)
    }
}

/// Docker's size units for log options: a number with an optional k, m or g (powers of 1024).
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let (num, mult) = match v.trim_end_matches('b').chars().last()? {
        'k' => (&v[..v.trim_end_matches('b').len() - 1], 1u64 << 10),
        'm' => (&v[..v.trim_end_matches('b').len() - 1], 1 << 20),
        'g' => (&v[..v.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (v.trim_end_matches('b'), 1),
    };
    let n: f64 = num.parse().ok()?;
    (n > 0.0).then_some((n * mult as f64) as u64)
}

/// Appends entries to a container's log; the monitor holds one.
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
    /// What each stream has written since its last newline.
    pending: [Vec<u8>; 2],
}

impl Writer {
    pub fn open(path: &Path, rotation: Rotation) -> Result<Writer> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the log {}", path.display()))?;
        let size = file.metadata()?.len();
        Ok(Writer {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Takes bytes of stream 0 (stdout) or 1 (stderr); whole lines become entries.
    pub fn write(&mut self, stream: usize, data: &[u8]) -> Result<()> {
        self.pending[stream].extend_from_slice(data);
        loop {
            let buf = &self.pending[stream];
            let cut = match buf.iter().position(|b| *b == b'\n') {
                Some(i) if i < MAX_ENTRY => i + 1,
                _ if buf.len() >= MAX_ENTRY => MAX_ENTRY,
                _ => break,
            };
            let line: Vec<u8> = self.pending[stream].drain(..cut).collect();
            self.entry(stream, &line)?;
        }
        Ok(())
    }

    /// Writes out what is left without a newline (the stream ended).
    pub fn flush(&mut self) -> Result<()> {
        for stream in 0..2 {
            if !self.pending[stream].is_empty() {
                let line = std::mem::take(&mut self.pending[stream]);
                self.entry(stream, &line)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, stream: usize, line: &[u8]) -> Result<()> {
        let e = Entry {
            log: String::from_utf8_lossy(line).into_owned(),
            stream: if stream == 0 { "stdout" } else { "stderr" }.into(),
            time: now_rfc3339_nanos(),
        };
        let mut text = serde_json::to_vec(&e)?;
        text.push(b'\n');
        if self.rotation.max_size > 0 && self.size + text.len() as u64 > self.rotation.max_size {
            self.rotate()?;
        }
        self.file.write_all(&text)?;
        self.size += text.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let n = self.rotation.max_file;
        if n <= 1 {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
        } else {
            for i in (1..n).rev() {
                let from = if i == 1 {
                    self.path.clone()
                } else {
                    rotated(&self.path, i - 1)
                };
                let _ = fs::rename(&from, rotated(&self.path, i));
            }
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// What `logs` was asked for.
#[derive(Debug, Default, Clone)]
pub struct ReadOptions {
    pub follow: bool,
    /// The last N lines only.
    pub tail: Option<usize>,
    pub timestamps: bool,
    /// Entries at or after this time (seconds, nanoseconds).
    pub since: Option<(i64, u32)>,
    pub until: Option<(i64, u32)>,
}

/// `--since`/`--until`: an RFC 3339 time, a Unix time (with fraction), or a duration before now
/// (`10m`, `1h30m`, `45s`).
pub fn parse_time_arg(flag: &str, v: &str) -> Result<(i64, u32)> {
    if let Some(secs) = parse_rfc3339(v) {
        return Ok((secs, fraction_nanos(v.get(19..).unwrap_or(""))));
    }
    if let Some((whole, frac)) = v.split_once('.').or(Some((v, ""))) {
        if let (Ok(s), true) = (
            whole.parse::<i64>(),
            frac.bytes().all(|b| b.is_ascii_digit()),
        ) {
            let mut nanos = frac.to_string();
            nanos.truncate(9);
            while nanos.len() < 9 {
                nanos.push('0');
            }
            return Ok((s, nanos.parse().unwrap_or(0)));
        }
    }
    let d = parse_duration(v).with_context(|| {
        format!("invalid value for \"{flag}\": \"{v}\" is not a time, a timestamp or a duration")
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_sub(d);
    Ok((now.as_secs() as i64, now.subsec_nanos()))
}

fn fraction_nanos(rest: &str) -> u32 {
    let Some(frac) = rest.strip_prefix('.') else {
        return 0;
    };
    let digits: String = frac
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    format!("{digits:0<9}").parse().unwrap_or(0)
}

/// Go's duration syntax, the units Docker's flags take: `1h30m`, `10s`, `500ms`.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += Duration::from_secs_f64(num * unit);
    }
    Some(total)
}

fn entry_time(e: &Entry) -> (i64, u32) {
    (
        parse_rfc3339(&e.time).unwrap_or(0),
        fraction_nanos(e.time.get(19..).unwrap_or("")),
    )
}

/// The log files of a container, oldest first.
fn files(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..100)
        .map(|i| rotated(path, i))
        .take_while(|p| p.exists())
        .collect();
    out.reverse();
    out.push(path.to_path_buf());
    out
}

/// Prints a container's log to `out` (stdout entries) and `err` (stderr entries). With
/// `follow`, keeps printing what is added while `active()` says the container may write more.
pub fn print(
    path: &Path,
    o: &ReadOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    active: &mut dyn FnMut() -> bool,
) -> Result<()> {
    let mut entries = Vec::new();
    for f in files(path) {
        let Ok(file) = File::open(&f) else { continue };
        for line in BufReader::new(file).lines() {
            if let Ok(e) = serde_json::from_str::<Entry>(&line?) {
                entries.push(e);
            }
        }
    }
    let keep = |e: &Entry| {
        let t = entry_time(e);
        o.since.is_none_or(|s| t >= s) && o.until.is_none_or(|u| t <= u)
    };
    entries.retain(keep);
    if let Some(n) = o.tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    for e in &entries {
        emit(e, o, out, err)?;
    }
    if !o.follow {
        return Ok(());
    }
    // Follow the live file from its end.
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(_) => return Ok(()),
    };
    let mut pos = file.seek(SeekFrom::End(0))?;
    let mut partial = String::new();
    loop {
        let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            // Rotated or truncated: start over on the new file.
            file = File::open(path)?;
            pos = 0;
        }
        let mut reader = BufReader::new(&file);
        reader.seek(SeekFrom::Start(pos))?;
        let mut got = false;
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            partial.push_str(&line);
            if !partial.ends_with('\n') {
                continue;
            }
            got = true;
            if let Ok(e) = serde_json::from_str::<Entry>(partial.trim_end()) {
                if o.until.is_none_or(|u| entry_time(&e) <= u) {
                    emit(&e, o, out, err)?;
                }
            }
            partial.clear();
        }
        if !got {
            if !active() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn emit(e: &Entry, o: &ReadOptions, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let w: &mut dyn Write = if e.stream == "stderr" { err } else { out };
    if o.timestamps {
        write!(w, "{} ", e.time)?;
    }
    w.write_all(e.log.as_bytes())?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_entries_and_long_lines_are_cut() {
        let dir = std::env::temp_dir().join(format!("berth-log-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c-json.log");
        let mut w = Writer::open(&path, Rotation::default()).unwrap();
        w.write(0, b"hel").unwrap();
        w.write(0, b"lo\nwor").unwrap();
        w.write(1, b"oops\n").unwrap();
        w.write(0, &vec![b'x'; MAX_ENTRY + 10]).unwrap();
        w.flush().unwrap();
        let entries: Vec<Entry> = fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let logs: Vec<(&str, usize)> = entries
            .iter()
            .map(|e| (e.stream.as_str(), e.log.len()))
            .collect();
        assert_eq!(
            logs,
            [
                ("stdout", 6),
                ("stderr", 5),
                ("stdout", MAX_ENTRY),
                ("stdout", 13)
            ]
        );
        assert_eq!(entries[0].log, "hello\n");
        assert!(entries[2].log.starts_with("worxxx"));
        assert_eq!(entries[3].log, "x".repeat(13));
        let mut out = Vec::new();
        let mut err = Vec::new();
        let o = ReadOptions {
            tail: Some(3),
            ..Default::default()
        };
        print(&path, &o, &mut out, &mut err, &mut || false).unwrap();
        assert_eq!(err, b"oops\n");
        assert_eq!(out.len(), MAX_ENTRY + 13);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotation_keeps_max_file_files_under_max_size() {
        let dir = std::env::temp_dir().join(format!("berth-logrot-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c-json.log");
        let opts = [("max-size", "1k"), ("max-file", "3")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into_iter()
            .collect();
        let mut w = Writer::open(&path, Rotation::from_opts(&opts).unwrap()).unwrap();
        for i in 0..200 {
            w.write(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(fs::metadata(&path).unwrap().len() <= 1024);
        assert!(rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        let mut out = Vec::new();
        print(
            &path,
            &ReadOptions::default(),
            &mut out,
            &mut Vec::new(),
            &mut || false,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("line 199\n"), "{text}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_options_are_checked() {
        let opt = |k: &str, v: &str| {
            Rotation::from_opts(&[(k.to_string(), v.to_string())].into_iter().collect())
        };
        assert_eq!(opt("max-size", "10m").unwrap().max_size, 10 << 20);
        assert!(opt("max-size", "ten")
            .unwrap_err()
            .to_string()
            .contains("max-size: ten"));
        assert!(opt("max-file", "3")
            .unwrap_err()
            .to_string()
            .contains("without max-size"));
        assert!(opt("colour", "red")
            .unwrap_err()
            .to_string()
            .contains("unknown log opt 'colour'"));
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("3x"), None);
        assert_eq!(
            parse_time_arg("--since", "2026-12-05T10:00:00.5Z").unwrap(),
            (parse_rfc3339("2026-12-05T10:00:00Z").unwrap(), 500_000_000)
        );
        assert_eq!(
            parse_time_arg("--since", "1700000000.25").unwrap(),
            (1_700_000_000, 250_000_000)
        );
        assert!(parse_time_arg("--since", "yesterday")
            .unwrap_err()
            .to_string()
            .contains("\"--since\": \"yesterday\""));
    }
}
