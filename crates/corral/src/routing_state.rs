//! A run-time switch outlives a restart of corral: `state_dir/routing.json` holds where
//! traffic was sent and the file's traffic at that moment, route by route (at the top level
//! without `[[routes]]`, as it always did; under `routes.NAME` with them). At start, and
//! only while the file still says what it said then for that route, the switch stands;
//! once the file changes that route's traffic (`routing.active`/`weights`, or the route's
//! `active`/`weights`), the file wins and that route's record is dropped.

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

/// The run-time switches to restore, by route (`""` without `[[routes]]`), each recorded
/// under the file's present traffic of its route. A record made under other traffic is
/// dropped (the file was edited since); one that cannot be read is reported and ignored.
pub fn restore(config: &Config) -> Vec<(String, Traffic)> {
    let path = path(config);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(event = "routing_state_unreadable", path = %path.display(), error = %e, "the recorded switch cannot be read; the config's routing applies");
            return Vec::new();
        }
    };
    let Some(mut whole) = serde_json::from_str::<Value>(&text)
        .ok()
        .filter(Value::is_object)
    else {
        tracing::warn!(event = "routing_state_unreadable", path = %path.display(), "the recorded switch is not valid JSON of corral's; the config's routing applies");
        return Vec::new();
    };
    let mut restored = Vec::new();
    let mut dropped = false;
    for lane in config.lanes() {
        let Some(entry) = entry(&mut whole, &lane.route) else {
            continue;
        };
        let record = (from_json(&entry["traffic"]), from_json(&entry["file"]));
        let (Some(traffic), Some(file)) = record else {
            tracing::warn!(event = "routing_state_unreadable", path = %path.display(), route = %lane.route, "the recorded switch is not valid JSON of corral's; the config's routing applies");
            continue;
        };
        if file != lane.traffic {
            tracing::info!(event = "routing_state_dropped", path = %path.display(), route = %lane.route, recorded = %traffic, "the config's routing changed since the recorded switch; the config wins");
            *entry = Value::Null;
            dropped = true;
            continue;
        }
        tracing::info!(event = "routing_restored", route = %lane.route, traffic = %traffic, path = %path.display(), "a switch made at run time before the restart stands");
        restored.push((lane.route, traffic));
    }
    if dropped {
        write(config, whole);
    }
    restored
}

/// The record of `route` in the file's JSON: the top level for `""` (the one lane of a
/// config without `[[routes]]`, as the file always held it), else under `routes`.
fn entry<'a>(whole: &'a mut Value, route: &str) -> Option<&'a mut Value> {
    let entry = if route.is_empty() {
        whole
    } else {
        whole.get_mut("routes")?.get_mut(route)?
    };
    (!entry.is_null() && entry.get("traffic").is_some()).then_some(entry)
}

/// Records where one route's traffic goes after a switch or rollback; going back to
/// exactly what the file says needs no record. Other routes' records are kept.
pub fn record(config: &Config, route: &str, traffic: &Traffic, why: &str) {
    let Some(lane) = config.lanes().into_iter().find(|l| l.route == route) else {
        return;
    };
    let mut whole = std::fs::read_to_string(path(config))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let body = (*traffic != lane.traffic).then(|| {
        json!({
            "traffic": to_json(traffic),
            "file": to_json(&lane.traffic),
            "why": why,
            "config": config.source.display().to_string(),
        })
    });
    if route.is_empty() {
        let routes = whole.get("routes").cloned();
        whole = body.unwrap_or_else(|| json!({}));
        if let Some(routes) = routes {
            whole["routes"] = routes;
        }
    } else {
        if !whole.get("routes").is_some_and(Value::is_object) {
            whole["routes"] = json!({});
        }
        whole["routes"][route] = body.unwrap_or(Value::Null);
    }
    write(config, whole);
}

/// Writes what is left of the record, or removes the file when nothing is.
fn write(config: &Config, mut whole: Value) {
    if let Some(routes) = whole.get_mut("routes").and_then(Value::as_object_mut) {
        routes.retain(|_, v| !v.is_null());
        if routes.is_empty() {
            whole.as_object_mut().map(|o| o.remove("routes"));
        }
    }
    if whole.as_object().is_none_or(serde_json::Map::is_empty) {
        return forget(config);
    }
    let path = path(config);
    if let Err(e) = write_atomically(&path, &whole.to_string()) {
        tracing::warn!(event = "routing_state_unwritable", path = %path.display(), error = %e, "the switch holds until corral restarts, but cannot be recorded for after");
    }
}

/// Drops the records of the routes whose traffic `new` changes from `old`: the file's
/// traffic applies to them from now on, also after a restart.
pub fn forget_changed(old: &Config, new: &Config) {
    let before = old.lanes();
    let changed: Vec<String> = new
        .lanes()
        .into_iter()
        .filter(|lane| !before.contains(lane))
        .map(|lane| lane.route)
        .collect();
    if changed.is_empty() {
        return;
    }
    let Some(mut whole) = std::fs::read_to_string(path(new))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .filter(Value::is_object)
    else {
        return;
    };
    for route in changed {
        if let Some(entry) = entry(&mut whole, &route) {
            if route.is_empty() {
                let routes = entry.get("routes").cloned();
                *entry = json!({});
                if let Some(routes) = routes {
                    entry["routes"] = routes;
                }
            } else {
                *entry = Value::Null;
            }
        }
    }
    write(new, whole);
}

/// Drops every record: the file's routing applies from now on, also after a restart.
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

    fn restored(config: &Config) -> Option<Traffic> {
        restore(config)
            .into_iter()
            .find(|(r, _)| r.is_empty())
            .map(|(_, t)| t)
    }

    #[test]
    fn a_switch_is_restored_until_the_file_changes_its_routing() {
        let dir = std::env::temp_dir().join(format!("corral-state-{}", std::process::id()));
        let blue = config(&dir, "active = \"blue\"");
        assert_eq!(restored(&blue), None);
        let canary = Traffic::parse_weights("blue=90,green=10").expect("weights");
        record(&blue, "", &canary, "switch");
        assert_eq!(restored(&blue), Some(canary));
        record(&blue, "", &Traffic::to("green"), "switch");
        assert_eq!(restored(&blue), Some(Traffic::to("green")));
        let green = config(&dir, "active = \"green\"");
        assert_eq!(restored(&green), None, "the edited file wins");
        assert_eq!(restored(&blue), None, "and the record is gone");
        record(&blue, "", &Traffic::to("blue"), "rollback");
        assert!(
            !dir.join(FILE).exists(),
            "the file's own routing needs no record"
        );
        std::fs::write(dir.join(FILE), "{not json").expect("write");
        assert_eq!(restored(&blue), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn routes(dir: &Path, api: &str) -> Config {
        let text = format!(
            "[server]\nstate_dir = {:?}\n[[routes]]\npools = [\"web\", \"web2\"]\nactive = \"web\"\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\npools = [\"blue\", \"green\"]\nactive = {api:?}\n[pools.web]\ncommand = [\"app\"]\n[pools.web2]\ncommand = [\"app\"]\n[pools.blue]\ncommand = [\"app\"]\n[pools.green]\ncommand = [\"app\"]\n",
            dir.display().to_string()
        );
        corral_config::parse(Path::new("test.toml"), &text).expect("valid")
    }

    #[test]
    fn each_route_keeps_its_own_record() {
        let dir = std::env::temp_dir().join(format!("corral-state-routes-{}", std::process::id()));
        let config = routes(&dir, "blue");
        record(&config, "api", &Traffic::to("green"), "switch");
        record(&config, "/", &Traffic::to("web2"), "switch");
        let mut got = restore(&config);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                ("/".to_string(), Traffic::to("web2")),
                ("api".to_string(), Traffic::to("green"))
            ]
        );
        // The api route's file traffic changes: its record goes, the other stays.
        let edited = routes(&dir, "green");
        forget_changed(&config, &edited);
        assert_eq!(restore(&edited), [("/".to_string(), Traffic::to("web2"))]);
        record(&edited, "/", &Traffic::to("web"), "rollback");
        assert!(!dir.join(FILE).exists(), "nothing left to record");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
