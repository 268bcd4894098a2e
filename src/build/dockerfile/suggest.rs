//! "(did you mean from?)" hints on unknown instructions and flags, as BuildKit adds them: the
//! closest known name within an edit distance of two.

/// Edit distance (insertions, deletions, substitutions).
fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The closest option to `value` within distance 2 (the first of equals), in `value`'s case
/// when comparing without case; none when `value` is exactly an option.
pub fn closest(value: &str, options: &[&str], case_sensitive: bool) -> Option<String> {
    let fold = |s: &str| {
        if case_sensitive {
            s.to_string()
        } else {
            s.to_lowercase()
        }
    };
    let wanted = fold(value);
    let mut best: Option<String> = None;
    let mut best_distance = 3;
    for option in options {
        let option = fold(option);
        if option == wanted {
            return None;
        }
        let distance = levenshtein(&wanted, &option);
        if distance < best_distance {
            best_distance = distance;
            best = Some(option);
        }
    }
    best.map(|option| {
        if case_sensitive || value == value.to_lowercase() {
            option
        } else if value == value.to_uppercase() {
            option.to_uppercase()
        } else {
            option
        }
    })
}

/// `message` with a hint appended when `value` is close to one of `options`.
pub fn wrap(message: String, value: &str, options: &[&str], case_sensitive: bool) -> String {
    match closest(value, options, case_sensitive) {
        Some(hint) => format!("{message} (did you mean {hint}?)"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("frm", "from"), 1);
    }

    #[test]
    fn hint_only_when_close() {
        assert_eq!(
            closest("FORM", &["from", "run"], false).as_deref(),
            Some("FROM")
        );
        assert_eq!(
            closest("form", &["from", "run"], false).as_deref(),
            Some("from")
        );
        assert_eq!(
            closest("Form", &["from", "run"], false).as_deref(),
            Some("from")
        );
        assert_eq!(closest("FORM", &["from", "run"], true), None);
        assert_eq!(closest("xyzzy", &["from", "run"], false), None);
        assert_eq!(closest("run", &["rum", "run"], false), None);
    }
}
