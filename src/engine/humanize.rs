//! Docker's wording for times and sizes: go-units' `HumanDuration`, `HumanSize` and `BytesSize`,
//! the `ps` STATUS and CREATED columns and the `ps -s` SIZE column.
//!
//! The rules are go-units' (`duration.go`, `size.go`) and Docker's `State.String()`, restated
//! here; Go's `%.Ng` formatting (which go-units' sizes print through) is [`go_format_g`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// go-units' `HumanDuration` of whole seconds (negative ones, a clock step back, are 0).
pub fn human_duration(secs: i64) -> String {
    human_duration_of(Duration::from_secs(secs.max(0) as u64))
}

/// go-units' `HumanDuration`: "Less than a second", "1 second", "About a minute", "3 hours", ...
pub fn human_duration_of(d: Duration) -> String {
    let secs = d.as_secs_f64();
    let seconds = secs as i64;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = (secs / 60.0) as i64;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Hours are rounded, not truncated, as go-units does.
    let hours = (secs / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (secs / 3600.0) as i64 / 24 / 365)
}

/// The time from `then` to `now`, zero when `then` is later (a clock step back).
pub fn since(then: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// The `ps` CREATED column: "3 seconds ago".
pub fn running_for(created: SystemTime, now: SystemTime) -> String {
    format!("{} ago", human_duration_of(since(created, now)))
}

/// A container's health as the STATUS column shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// Docker's `Health.String()`: "health: starting", "healthy", "unhealthy".
    pub fn status_text(self) -> &'static str {
        match self {
            Health::Starting => "health: starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// What the STATUS column is made from (Docker's `container.State`).
#[derive(Clone, Debug, Default)]
pub struct StateSummary {
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    pub removal_in_progress: bool,
    pub dead: bool,
    pub exit_code: i32,
    /// None: never started.
    pub started_at: Option<SystemTime>,
    /// None: has not finished since it was last started.
    pub finished_at: Option<SystemTime>,
    /// None: no health check.
    pub health: Option<Health>,
}

/// The `ps` STATUS column, worded as Docker's `State.String()`: "Up 3 seconds",
/// "Up 3 seconds (Paused)", "Up 2 minutes (healthy)", "Restarting (1) 5 seconds ago",
/// "Removal In Progress", "Dead", "Created", "Exited (0) 2 minutes ago".
pub fn status(s: &StateSummary, now: SystemTime) -> String {
    let ago =
        |t: Option<SystemTime>| human_duration_of(t.map_or(Duration::ZERO, |t| since(t, now)));
    if s.running {
        let up = ago(s.started_at);
        if s.paused {
            return format!("Up {up} (Paused)");
        }
        if s.restarting {
            return format!("Restarting ({}) {} ago", s.exit_code, ago(s.finished_at));
        }
        if let Some(h) = s.health {
            return format!("Up {up} ({})", h.status_text());
        }
        return format!("Up {up}");
    }
    if s.removal_in_progress {
        return "Removal In Progress".into();
    }
    if s.dead {
        return "Dead".into();
    }
    if s.started_at.is_none() {
        return "Created".into();
    }
    match s.finished_at {
        // Started, not running, not finished: Docker prints nothing.
        None => String::new(),
        Some(_) => format!("Exited ({}) {} ago", s.exit_code, ago(s.finished_at)),
    }
}

/// Docker's STATE column / `.State.Status` value for the same state: "created", "running",
/// "paused", "restarting", "removing", "exited", "dead".
pub fn state_word(s: &StateSummary) -> &'static str {
    if s.running {
        if s.paused {
            return "paused";
        }
        if s.restarting {
            return "restarting";
        }
        return "running";
    }
    if s.removal_in_progress {
        return "removing";
    }
    if s.dead {
        return "dead";
    }
    if s.started_at.is_none() {
        return "created";
    }
    "exited"
}

const DECIMAL_UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY_UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

fn scale(mut size: f64, base: f64, units: &[&'static str]) -> (f64, &'static str) {
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// go-units' `HumanSizeWithPrecision`: decimal units, `precision` significant digits
/// ("1.23kB", "10MB", "1e+03kB" as Go's %g prints 999.9 at 3 digits).
pub fn human_size_with_precision(size: f64, precision: usize) -> String {
    let (n, unit) = scale(size, 1000.0, &DECIMAL_UNITS);
    format!("{}{unit}", go_format_g(n, precision))
}

/// go-units' `HumanSize`: decimal units, 4 significant digits ("1.235kB").
pub fn human_size(size: f64) -> String {
    human_size_with_precision(size, 4)
}

/// go-units' `BytesSize`: binary units, 4 significant digits ("1.5MiB"), as `stats` prints
/// memory.
pub fn bytes_size(size: f64) -> String {
    let (n, unit) = scale(size, 1024.0, &BINARY_UNITS);
    format!("{}{unit}", go_format_g(n, 4))
}

/// The `ps -s` SIZE column: the writable layer's size, and with it the whole rootfs's
/// ("12B (virtual 4.3MB)"), each at 3 significant digits.
pub fn ps_size(size_rw: u64, size_root_fs: u64) -> String {
    let rw = human_size_with_precision(size_rw as f64, 3);
    if size_root_fs > 0 {
        format!(
            "{rw} (virtual {})",
            human_size_with_precision(size_root_fs as f64, 3)
        )
    } else {
        rw
    }
}

/// Go's `fmt.Sprintf("%.{precision}g", v)`: `precision` significant digits, trailing zeros
/// dropped, exponent form when the exponent is below -4 or at least `precision`.
pub fn go_format_g(v: f64, precision: usize) -> String {
    let precision = precision.max(1);
    if v == 0.0 || !v.is_finite() {
        return special_float(v);
    }
    // Rust's `{:.Ne}` rounds to N+1 significant digits: "1.235e3".
    let (digits, exp) = decimal_digits(&format!("{:.*e}", precision - 1, v.abs()));
    let exp_form = exp < -4 || exp >= precision as i32;
    place_digits(v < 0.0, &digits, exp, exp_form)
}

/// Go's `%v` of a float64: the shortest digits that read back as the same number, in
/// exponent form when the exponent is below -4 or at least 6 (`fmt.Println(1e6)` is "1e+06").
pub fn go_format_float(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return special_float(v);
    }
    // Rust's plain `{:e}` gives the shortest round-tripping digits, as strconv's -1 does.
    let (digits, exp) = decimal_digits(&format!("{:e}", v.abs()));
    place_digits(v < 0.0, &digits, exp, !(-4..6).contains(&exp))
}

fn special_float(v: f64) -> String {
    if v == 0.0 {
        "0"
    } else if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
    .into()
}

/// "1.2300e3" as its significant digits without trailing zeros ("123") and exponent (3).
fn decimal_digits(e_form: &str) -> (String, i32) {
    let (mantissa, exp) = e_form.split_once('e').expect("{:e} output has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is a number");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let digits = digits.trim_end_matches('0');
    (
        if digits.is_empty() { "0" } else { digits }.to_string(),
        exp,
    )
}

/// Go's %e ("1.23e+05") or %f ("0.000123") placement of significant digits.
fn place_digits(negative: bool, digits: &str, exp: i32, exp_form: bool) -> String {
    let mut out = String::from(if negative { "-" } else { "" });
    if exp_form {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let exp_sign = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{exp_sign}{:02}", exp.abs()));
        return out;
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(digits);
    } else {
        let point = point as usize;
        if digits.len() <= point {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', point - digits.len()));
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// A Docker timestamp (RFC 3339 with optional fraction, `Z` or `±HH:MM`) as a time; Go's zero
/// time ("0001-01-01T00:00:00Z", what Docker records for "never") and anything unparsable give
/// None.
pub fn parse_timestamp(s: &str) -> Option<SystemTime> {
    let secs = crate::image::time::parse_rfc3339(s)?;
    if secs <= 0 {
        return None;
    }
    let nanos = s
        .get(19..)
        .and_then(|rest| rest.strip_prefix('.'))
        .map(|frac| {
            let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).collect();
            let mut padded = digits.clone();
            padded.truncate(9);
            while padded.len() < 9 {
                padded.push('0');
            }
            padded.parse::<u32>().unwrap_or(0)
        })
        .unwrap_or(0);
    Some(UNIX_EPOCH + Duration::new(secs as u64, nanos))
}

/// The `ps` CREATED AT column (Go's `time.Time.String()` in UTC): "2024-01-02 15:04:05 +0000 UTC".
pub fn created_at(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let iso = crate::image::time::format_rfc3339(secs); // YYYY-MM-DDTHH:MM:SSZ
    format!("{} {} +0000 UTC", &iso[..10], &iso[11..19])
}

#[cfg(test)]
mod tests {
    //! Expected strings are go-units' and Docker's, from their rules and their own test tables
    //! (go-units duration_test.go / size_test.go, docker/cli's formatter tests).
    use super::*;

    const S: u64 = 1;
    const M: u64 = 60;
    const H: u64 = 3600;
    const D: u64 = 24 * H;

    fn dur(secs: u64) -> String {
        human_duration_of(Duration::from_secs(secs))
    }

    #[test]
    fn durations_as_go_units_words_them() {
        assert_eq!(
            human_duration_of(Duration::from_millis(999)),
            "Less than a second"
        );
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(-5), "Less than a second");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(dur(S), "1 second");
        assert_eq!(dur(2 * S), "2 seconds");
        assert_eq!(dur(59 * S), "59 seconds");
        assert_eq!(dur(60 * S), "About a minute");
        assert_eq!(dur(M + 59 * S), "About a minute");
        assert_eq!(dur(2 * M), "2 minutes");
        assert_eq!(dur(59 * M), "59 minutes");
        // Hours round: 60 minutes to 89 minutes are "About an hour".
        assert_eq!(dur(H), "About an hour");
        assert_eq!(dur(H + 29 * M), "About an hour");
        assert_eq!(dur(H + 30 * M), "2 hours");
        assert_eq!(dur(47 * H), "47 hours");
        assert_eq!(dur(47 * H + 30 * M), "2 days");
        assert_eq!(dur(2 * D), "2 days");
        assert_eq!(dur(13 * D), "13 days");
        assert_eq!(dur(14 * D), "2 weeks");
        assert_eq!(dur(59 * D), "8 weeks");
        assert_eq!(dur(60 * D), "2 months");
        assert_eq!(dur(364 * D), "12 months");
        assert_eq!(dur(2 * 365 * D), "2 years");
        assert_eq!(dur(3 * 365 * D + 2 * D), "3 years");
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn status_column_as_docker_words_it() {
        let now = at(1000);
        let up = StateSummary {
            running: true,
            started_at: Some(at(997)),
            ..Default::default()
        };
        assert_eq!(status(&up, now), "Up 3 seconds");
        assert_eq!(state_word(&up), "running");
        let paused = StateSummary {
            paused: true,
            ..up.clone()
        };
        assert_eq!(status(&paused, now), "Up 3 seconds (Paused)");
        assert_eq!(state_word(&paused), "paused");
        let healthy = StateSummary {
            started_at: Some(at(880)),
            health: Some(Health::Healthy),
            ..up.clone()
        };
        assert_eq!(status(&healthy, now), "Up 2 minutes (healthy)");
        let starting = StateSummary {
            health: Some(Health::Starting),
            ..up.clone()
        };
        assert_eq!(status(&starting, now), "Up 3 seconds (health: starting)");
        let restarting = StateSummary {
            restarting: true,
            exit_code: 1,
            finished_at: Some(at(995)),
            ..up.clone()
        };
        assert_eq!(status(&restarting, now), "Restarting (1) 5 seconds ago");
        assert_eq!(state_word(&restarting), "restarting");
        let exited = StateSummary {
            started_at: Some(at(100)),
            finished_at: Some(at(880)),
            ..Default::default()
        };
        assert_eq!(status(&exited, now), "Exited (0) 2 minutes ago");
        assert_eq!(state_word(&exited), "exited");
        let killed = StateSummary {
            exit_code: 137,
            finished_at: Some(at(1000)),
            ..exited.clone()
        };
        assert_eq!(status(&killed, now), "Exited (137) Less than a second ago");
        let created = StateSummary::default();
        assert_eq!(status(&created, now), "Created");
        assert_eq!(state_word(&created), "created");
        let removing = StateSummary {
            removal_in_progress: true,
            ..exited.clone()
        };
        assert_eq!(status(&removing, now), "Removal In Progress");
        assert_eq!(state_word(&removing), "removing");
        let dead = StateSummary {
            dead: true,
            ..exited.clone()
        };
        assert_eq!(status(&dead, now), "Dead");
        assert_eq!(state_word(&dead), "dead");
        assert_eq!(running_for(at(997), now), "3 seconds ago");
        assert_eq!(running_for(at(1003), now), "Less than a second ago");
    }

    #[test]
    fn sizes_as_go_units_prints_them() {
        // HumanSize: decimal, 4 significant digits.
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(1.0), "1B");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(1000.0), "1kB");
        assert_eq!(human_size(1024.0), "1.024kB");
        assert_eq!(human_size(1234.0), "1.234kB");
        assert_eq!(human_size(12345.0), "12.35kB");
        assert_eq!(human_size(10_000_000.0), "10MB");
        assert_eq!(human_size(3_221_225_472.0), "3.221GB");
        assert_eq!(human_size(1e27), "1000YB");
        // 3 digits, as NET I/O, BLOCK I/O and ps -s print.
        assert_eq!(human_size_with_precision(1234.0, 3), "1.23kB");
        assert_eq!(human_size_with_precision(999_900.0, 3), "1e+03kB");
        assert_eq!(human_size_with_precision(648.0, 3), "648B");
        // BytesSize: binary, 4 significant digits.
        assert_eq!(bytes_size(0.0), "0B");
        assert_eq!(bytes_size(1023.0), "1023B");
        assert_eq!(bytes_size(1024.0), "1KiB");
        assert_eq!(bytes_size(1_572_864.0), "1.5MiB");
        assert_eq!(bytes_size(1_048_575.0), "1024KiB");
        assert_eq!(bytes_size(4.0 * 1024.0 * 1024.0 * 1024.0), "4GiB");
        assert_eq!(
            bytes_size(1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
            "1PiB"
        );
        assert_eq!(ps_size(12, 4_300_000), "12B (virtual 4.3MB)");
        assert_eq!(ps_size(0, 0), "0B");
    }

    #[test]
    fn go_g_formatting() {
        assert_eq!(go_format_g(1.5, 4), "1.5");
        assert_eq!(go_format_g(100.0, 4), "100");
        assert_eq!(go_format_g(999.95, 4), "1000");
        assert_eq!(go_format_g(1000.0, 3), "1e+03");
        assert_eq!(go_format_g(0.000123456, 3), "0.000123");
        assert_eq!(go_format_g(0.0000123456, 3), "1.23e-05");
        assert_eq!(go_format_g(-2.5, 2), "-2.5");
        assert_eq!(go_format_g(123456.0, 2), "1.2e+05");
        assert_eq!(go_format_float(0.5), "0.5");
        assert_eq!(go_format_float(1e6), "1e+06");
        assert_eq!(go_format_float(123456.0), "123456");
        assert_eq!(go_format_float(1234567.0), "1.234567e+06");
        assert_eq!(go_format_float(0.0001), "0.0001");
        assert_eq!(go_format_float(0.00001), "1e-05");
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_timestamp("garbage"), None);
        let t = parse_timestamp("2023-11-14T22:13:20.5Z").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_millis(1_700_000_000_500));
        let t = parse_timestamp("2023-11-14T22:13:20.000000007Z").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::new(1_700_000_000, 7));
        assert_eq!(created_at(at(0)), "2023-11-14 22:13:20 +0000 UTC");
    }
}
