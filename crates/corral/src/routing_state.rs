//! A run-time switch outlives a restart of corral: `state_dir/routing.json` holds where
//! traffic was sent and the file's `[routing]` at that moment. At start, and only while the
//! file still says what it said then, the switch stands; once the file's `routing.active` or
//! `weights` change, the file wins and the record is dropped.

use std::path::{Path, PathBuf};

use corral_config::{Config, Traffic};
use serde_json::{json, Value};

const FILE: &str = "routing.json";

fn path(config: &Config) -> PathBuf {
    config.server.state_dir.join(FILE)
}

fn to_json(t: &Traffic) -> Value {
    json!({
        "active": t.active,
        "weights": t.weights.iter().map(|(p, w)| json!([p, w])).collect::<Vec<_>>(),
    })
}

fn from_json(v: &Value) -> Option<Traffic> {
    let weights = v["weights"]
        .as_array()?
        .iter()
        .map(|pair| {
            let name = pair.get(0)?.as_str()?.to_string();
            let weight = u32::try_from(pair.get(1)?.as_u64()?).ok()?;
            Some((name, weight))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Traffic {
        active: v["active"].as_str()?.to_string(),
        weights,
    })
}

/// The run-time switch to restore, if one was recorded under the file's present routing.
/// A record made under other routing is dropped (the file was edited since); one that
/// cannot be read is reported and ignored.
pub fn restore(config: &Config) -> Option<Traffic> {
    let path = path(config);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(event = "routing_state_unreadable", path = %path.display(), error = %e, "the recorded switch cannot be read; the config's routing applies");
            return None;
        }
    };
    let record: Option<(Traffic, Traffic)> = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| Some((from_json(&v["traffic"])?, from_json(&v["file"])?)));
    let Some((traffic, file)) = record else {
        tracing::warn!(event = "routing_state_unreadable", path = %path.display(), "the recorded switch is not valid JSON of corral's; the config's routing applies");
        return None;
    };
    if file != config.routing.traffic() {
        tracing::info!(event = "routing_state_dropped", path = %path.display(), recorded = %traffic, "the config's routing changed since the recorded switch; the config wins");
        forget(config);
        return None;
    }
    tracing::info!(event = "routing_restored", traffic = %traffic, path = %path.display(), "a switch made at run time before the restart stands");
    Some(traffic)
}

/// Records where traffic goes after a switch or rollback; going back to exactly what the
/// file says needs no record.
pub fn record(config: &Config, traffic: &Traffic, why: &str) {
    if *traffic == config.routing.traffic() {
        forget(config);
        return;
    }
    let body = json!({
        "traffic": to_json(traffic),
        "file": to_json(&config.routing.traffic()),
        "why": why,
        "config": config.source.display().to_string(),
    });
    let path = path(config);
    if let Err(e) = write_atomically(&path, &body.to_string()) {
        tracing::warn!(event = "routing_state_unwritable", path = %path.display(), error = %e, "the switch holds until corral restarts, but cannot be recorded for after");
    }
}

/// Drops the record: the file's routing applies from now on, also after a restart.
pub fn forget(config: &Config) {
    let _ = std::fs::remove_file(path(config));
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, routing: &str) -> Config {
        let text = format!(
            "[server]\nstate_dir = {:?}\n[routing]\n{routing}\n[pools.blue]\ncommand = [\"app\"]\n[pools.green]\ncommand = [\"app\"]\n",
            dir.display().to_string()
        );
        corral_config::parse(Path::new("test.toml"), &text).expect("valid")
    }

    #[test]
    fn a_switch_is_restored_until_the_file_changes_its_routing() {
        let dir = std::env::temp_dir().join(format!("corral-state-{}", std::process::id()));
        let blue = config(&dir, "active = \"blue\"");
        assert_eq!(restore(&blue), None);
        let canary = Traffic::parse_weights("blue=90,green=10").expect("weights");
        record(&blue, &canary, "switch");
        assert_eq!(restore(&blue), Some(canary));
        record(&blue, &Traffic::to("green"), "switch");
        assert_eq!(restore(&blue), Some(Traffic::to("green")));
        let green = config(&dir, "active = \"green\"");
        assert_eq!(restore(&green), None, "the edited file wins");
        assert_eq!(restore(&blue), None, "and the record is gone");
        record(&blue, &Traffic::to("blue"), "rollback");
        assert!(
            !dir.join(FILE).exists(),
            "the file's own routing needs no record"
        );
        std::fs::write(dir.join(FILE), "{not json").expect("write");
        assert_eq!(restore(&blue), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
