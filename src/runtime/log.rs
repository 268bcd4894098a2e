//! Runtime logging: `--log FILE` and `--log-format text|json`.
//!
//! containerd's shim and Podman's conmon read the log file and show the last `"level":"error"`
//! line to the user, so errors go there as runc-style JSON lines
//! (`{"level":"error","msg":"...","time":"..."}`) and to stderr as one plain line. Without a
//! log file, stderr is the log, in runc's (logrus's) shape: `time="..." level=error msg="..."`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

struct Config {
    file: Option<PathBuf>,
    format: Format,
    debug: bool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

pub fn init(file: Option<PathBuf>, format: Format, debug: bool) {
    let _ = CONFIG.set(Config {
        file,
        format,
        debug,
    });
}

pub fn error(msg: &str) {
    if write("error", msg) {
        // runc too repeats the error plainly on stderr when its log is a file.
        eprintln!("{msg}");
    }
}

pub fn warn(msg: &str) {
    write("warning", msg);
}

pub fn debug(msg: &str) {
    if CONFIG.get().is_some_and(|c| c.debug) {
        write("debug", msg);
    }
}

/// Writes one log line to the log file, or to stderr when there is none; true if it went to
/// a file.
fn write(level: &str, msg: &str) -> bool {
    let (format, file) = match CONFIG.get() {
        Some(cfg) => (cfg.format, cfg.file.as_ref()),
        None => (Format::Text, None),
    };
    let line = match format {
        Format::Json => format!(
            "{}\n",
            serde_json::json!({ "level": level, "msg": msg, "time": now_rfc3339() })
        ),
        Format::Text => format!(
            "time={} level={level} msg={}\n",
            go_quote(&now_rfc3339_seconds()),
            go_quote(msg)
        ),
    };
    let Some(path) = file else {
        let _ = std::io::stderr().write_all(line.as_bytes());
        return false;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
    true
}

/// Go's strconv.Quote, as logrus quotes field values: `"`, `\`, control characters escaped.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// RFC 3339 to the second, logrus's text timestamps.
fn now_rfc3339_seconds() -> String {
    let full = now_rfc3339();
    match full.split_once('.') {
        Some((secs, _)) => format!("{secs}Z"),
        None => full,
    }
}

/// The current UTC time as RFC 3339 with nanoseconds, as Go's time.RFC3339Nano prints it.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_as_go_does() {
        assert_eq!(
            super::go_quote("container \"x\" does not exist\n\\"),
            r#""container \"x\" does not exist\n\\""#
        );
        assert_eq!(super::go_quote("a\u{1}b"), r#""a\x01b""#);
    }

    #[test]
    fn formats_dates() {
        assert_eq!(super::rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            super::rfc3339(1_795_305_600 + 3_723, 5),
            "2026-11-22T01:02:03.000000005Z"
        );
        assert_eq!(
            super::rfc3339(951_782_400, 0),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
