//! The variables a step sees: the build args in scope (declared by ARG in the stage, valued
//! from `--build-arg`, the declaration's default, or the global ARG), the image's ENV (which
//! wins over an ARG of the same name), and the args Docker predefines.

use super::image_state::ImageState;
use std::collections::{BTreeMap, BTreeSet};

/// Args usable without an ARG line (Docker's predefined proxy args): given by
/// `--build-arg`, they reach RUN's environment and are left out of the history.
pub const PREDEFINED: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// A stage's args in scope, in declaration order.
#[derive(Default, Clone)]
pub struct Scope {
    pub args: Vec<(String, String)>,
}

impl Scope {
    /// Declares `ARG name[=default]`: the `--build-arg` value wins, then the default, then the
    /// global value (only for a declaration without default). Unset: not in scope.
    pub fn declare(
        &mut self,
        name: &str,
        default: Option<String>,
        build_args: &BTreeMap<String, String>,
        globals: &BTreeMap<String, String>,
    ) {
        let value = build_args
            .get(name)
            .cloned()
            .or(default)
            .or_else(|| globals.get(name).cloned());
        self.args.retain(|(k, _)| k != name);
        if let Some(v) = value {
            self.args.push((name.to_string(), v));
        }
    }

    /// The variables for word expansion: args, then the image's ENV over them.
    pub fn variables(&self, state: &ImageState) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = self.args.iter().cloned().collect();
        for e in state.container_config().env {
            let (k, v) = e.split_once('=').unwrap_or((&e, ""));
            m.insert(k.to_string(), v.to_string());
        }
        m
    }

    /// The args a RUN sees in its environment: those in scope that no ENV sets, and the
    /// predefined ones given on the command line.
    pub fn run_args(
        &self,
        state: &ImageState,
        build_args: &BTreeMap<String, String>,
    ) -> Vec<(String, String)> {
        let env: BTreeSet<String> = state
            .container_config()
            .env
            .iter()
            .map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_string())
            .collect();
        let mut out: Vec<(String, String)> = self
            .args
            .iter()
            .filter(|(k, _)| !env.contains(k))
            .cloned()
            .collect();
        for p in PREDEFINED {
            if let Some(v) = build_args.get(p) {
                if !out.iter().any(|(k, _)| k == p) && !env.contains(p) {
                    out.push((p.to_string(), v.clone()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_take_build_arg_then_default_then_global() {
        let build_args: BTreeMap<String, String> =
            [("A".to_string(), "cli".to_string())].into_iter().collect();
        let globals: BTreeMap<String, String> = [
            ("B".to_string(), "global".to_string()),
            ("C".to_string(), "g".to_string()),
        ]
        .into_iter()
        .collect();
        let mut s = Scope::default();
        s.declare("A", Some("def".into()), &build_args, &globals);
        s.declare("B", None, &build_args, &globals);
        s.declare("C", Some("d".into()), &build_args, &globals);
        s.declare("D", None, &build_args, &globals);
        assert_eq!(
            s.args,
            vec![
                ("A".into(), "cli".into()),
                ("B".into(), "global".into()),
                ("C".into(), "d".into())
            ]
        );
        let mut state = ImageState::scratch();
        super::super::config_edit::env(&mut state, &[("B".into(), "env".into())]);
        assert_eq!(s.variables(&state)["B"], "env");
        let proxies: BTreeMap<String, String> =
            [("http_proxy".to_string(), "http://p".to_string())]
                .into_iter()
                .collect();
        let run = s.run_args(&state, &proxies);
        assert!(run.iter().all(|(k, _)| k != "B"));
        assert!(run.contains(&("http_proxy".into(), "http://p".into())));
    }
}
