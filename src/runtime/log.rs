//! Runtime logging: `--log FILE` and `--log-format text|json`.
//!
//! containerd's shim and Podman's conmon read the log file and show the last `"level":"error"`
//! line to the user, so errors go there as runc-style JSON lines
//! (`{"level":"error","msg":"...","time":"..."}`) and to stderr as one plain line.

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
    write("error", msg);
    eprintln!("berth: {msg}");
}

pub fn warn(msg: &str) {
    write("warning", msg);
    if CONFIG.get().is_none_or(|c| c.file.is_none()) {
        eprintln!("berth: warning: {msg}");
    }
}

pub fn debug(msg: &str) {
    if CONFIG.get().is_some_and(|c| c.debug) {
        write("debug", msg);
        if CONFIG.get().is_some_and(|c| c.file.is_none()) {
            eprintln!("berth: debug: {msg}");
        }
    }
}

fn write(level: &str, msg: &str) {
    let Some(cfg) = CONFIG.get() else { return };
    let Some(path) = &cfg.file else { return };
    let line = match cfg.format {
        Format::Json => format!(
            "{}\n",
            serde_json::json!({ "level": level, "msg": msg, "time": now_rfc3339() })
        ),
        Format::Text => format!("{} {level} {msg}\n", now_rfc3339()),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
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
