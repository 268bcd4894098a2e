//! Whether the kernel's OOM killer killed a process of a container: the memory cgroup's count
//! of OOM kills, read before the runtime removes the cgroup (`State.OOMKilled`).

use super::record::Engine;
use crate::runtime::state::read_state;

/// True when the container's memory cgroup counted an OOM kill (v1 `memory.oom_control`, v2
/// `memory.events`).
pub fn oom_killed(engine: &Engine, id: &str) -> bool {
    let Ok(st) = read_state(&engine.state_root.join(id)) else {
        return false;
    };
    let cg = &st.cgroup;
    for (i, (dir, name)) in cg.dirs.iter().zip(&cg.names).enumerate() {
        let file = if cg.unified == Some(i) {
            dir.join("memory.events")
        } else if name.split(',').any(|n| n == "memory") {
            dir.join("memory.oom_control")
        } else {
            continue;
        };
        if let Ok(text) = std::fs::read_to_string(file) {
            if count(&text, "oom_kill") > 0 {
                return true;
            }
        }
    }
    false
}

fn count(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_oom_kill_count_is_read_from_either_file() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(super::count(v1, "oom_kill"), 2);
        assert_eq!(super::count(v2, "oom_kill"), 1);
        assert_eq!(super::count("oom_kill_disable 1\n", "oom_kill"), 0);
    }
}
