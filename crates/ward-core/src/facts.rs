//! Facts as data: what a device reports is parsed and bounded (device data is hostile) and
//! compared with what is stored (diffs both ways); the one writer task stores whatever has queued
//! up in a single transaction and hands the devices to the policy engine. `ingest.rs` is the
//! pipeline's entry for platforms.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use ward_store::FactsUpdate;

/// Largest stored facts document.
pub const MAX_FACTS_BYTES: usize = 2 * 1024 * 1024;

/// Most updates written in one transaction.
const MAX_BATCH: usize = 512;

/// What the facts writer is handed.
#[derive(Debug)]
pub enum FactsWork {
    /// Facts to store.
    Update(FactsUpdate),
    /// Answered once every update handed over before it has been through the store (stored, or
    /// failed and logged): after the answer, a read of the store sees those updates.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Group commit for facts: every session hands its updates to this one task, which stores
/// whatever has queued up in a single transaction (SQLite has one writer anyway; a transaction
/// per report would make the commit the bottleneck).
pub async fn writer(
    store: std::sync::Arc<dyn ward_store::Store>,
    mut work: mpsc::Receiver<FactsWork>,
    policy_work: mpsc::Sender<crate::policy_engine::Work>,
) {
    while let Some(first) = work.recv().await {
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(item) = next {
            match item {
                FactsWork::Update(update) => batch.push(update),
                FactsWork::Flush(answer) => flushes.push(answer),
            }
            next = if batch.len() < MAX_BATCH {
                work.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty()
            && let Err(err) = store.record_facts_batch(&batch).await
        {
            tracing::warn!(error = %err, updates = batch.len(), "storing facts failed");
            batch.clear();
        }
        for answer in flushes {
            let _ = answer.send(());
        }
        if batch.is_empty() {
            continue;
        }
        // Stored: the policy engine re-evaluates these devices (never waiting on it; when it is
        // behind it evaluates everything once instead).
        let ids: Vec<String> = batch.into_iter().map(|u| u.device_id).collect();
        if policy_work
            .try_send(crate::policy_engine::Work::Devices(ids))
            .is_err()
        {
            let _ = policy_work.try_send(crate::policy_engine::Work::All);
        }
    }
}

/// Facts must be a JSON object no larger than the limit; strings in it are bounded and cleaned.
#[cfg(test)]
fn parse_facts(text: &str) -> Result<Value, String> {
    parse_facts_keeping_text(text).map(|(value, _)| value)
}

/// [`parse_facts`], also saying whether `text` was clean already (nothing cut or removed), in which
/// case it can be stored as it came instead of serialising the parsed value again.
pub fn parse_facts_keeping_text(text: &str) -> Result<(Value, bool), String> {
    if text.len() > MAX_FACTS_BYTES {
        return Err(format!("facts larger than {MAX_FACTS_BYTES} bytes"));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(mut value @ Value::Object(_)) => {
            let changed = sanitise_in_place(&mut value);
            Ok((value, !changed))
        }
        Ok(_) => Err("facts must be a JSON object".into()),
        Err(err) => Err(format!("facts are not valid JSON: {err}")),
    }
}

/// Longest string kept in facts; longer ones are cut (a 1 MB hostname is hostile, not a hostname).
const MAX_FACT_STRING: usize = 4096;
/// Most items kept in one array (packages are the largest list a device reports).
const MAX_FACT_ITEMS: usize = 20_000;

/// Device-reported data is hostile: strip control characters, bound strings and lists. HTML is
/// kept as text; whoever displays it escapes it.
pub fn sanitise(mut value: Value) -> Value {
    let _ = sanitise_in_place(&mut value);
    value
}

/// [`sanitise`] without rebuilding what is already clean (nearly everything): a full report is
/// tens of thousands of strings, and copying each one would be most of the cost of ingesting it.
/// Returns whether anything changed.
fn sanitise_in_place(value: &mut Value) -> bool {
    match value {
        Value::String(text) => {
            let dirty = needs_cleaning(text);
            if dirty {
                *text = clean_string(text);
            }
            dirty
        }
        Value::Array(items) => {
            let long = items.len() > MAX_FACT_ITEMS;
            items.truncate(MAX_FACT_ITEMS);
            items
                .iter_mut()
                .fold(long, |changed, item| sanitise_in_place(item) | changed)
        }
        Value::Object(map) => {
            let dirty_keys = map.keys().any(|key| needs_cleaning(key));
            if dirty_keys {
                let old = std::mem::take(map);
                *map = old
                    .into_iter()
                    .map(|(key, inner)| (clean_string(&key), inner))
                    .collect();
            }
            map.values_mut()
                .fold(dirty_keys, |changed, inner| sanitise_in_place(inner) | changed)
        }
        _ => false,
    }
}

fn needs_cleaning(text: &str) -> bool {
    text.len() > MAX_FACT_STRING || text.chars().any(char::is_control)
}

fn clean_string(text: &str) -> String {
    let mut clean: String = text.chars().filter(|c| !c.is_control()).collect();
    if clean.len() > MAX_FACT_STRING {
        let mut cut = MAX_FACT_STRING;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
    }
    clean
}

/// Flattens a JSON object to dotted paths (arrays are leaves).
fn flatten(value: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, inner) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(inner, &path, out);
            }
        }
        other => {
            if !prefix.is_empty() {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
}

/// What changed between two facts documents: `{"changed": {path: value}, "removed": [path]}`, with
/// dotted paths to leaves (arrays and empty objects are leaves). Walks both documents together and
/// only flattens where they differ, so a large report with one changed value costs a comparison,
/// not two full flattenings.
pub fn json_diff(old: &Value, new: &Value) -> Value {
    let mut changed = Map::new();
    let mut removed = Vec::new();
    diff_into(old, new, "", &mut changed, &mut removed);
    removed.sort();
    json!({ "changed": changed, "removed": removed })
}

/// Whether a diff from [`json_diff`] records no change.
pub fn is_empty_diff(diff: &Value) -> bool {
    diff["changed"].as_object().is_none_or(Map::is_empty)
        && diff["removed"].as_array().is_none_or(Vec::is_empty)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn diff_into(
    old: &Value,
    new: &Value,
    prefix: &str,
    changed: &mut Map<String, Value>,
    removed: &mut Vec<String>,
) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(before), Value::Object(after)) if !before.is_empty() && !after.is_empty() => {
            for (key, value) in after {
                let path = join(prefix, key);
                match before.get(key) {
                    Some(previous) => diff_into(previous, value, &path, changed, removed),
                    None => {
                        let mut leaves = BTreeMap::new();
                        flatten(value, &path, &mut leaves);
                        changed.extend(leaves);
                    }
                }
            }
            for (key, value) in before {
                if !after.contains_key(key) {
                    let mut leaves = BTreeMap::new();
                    flatten(value, &join(prefix, key), &mut leaves);
                    removed.extend(leaves.into_keys());
                }
            }
        }
        _ => {
            let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
            flatten(old, prefix, &mut before);
            flatten(new, prefix, &mut after);
            removed.extend(before.keys().filter(|k| !after.contains_key(*k)).cloned());
            changed.extend(after.into_iter().filter(|(k, v)| before.get(k) != Some(v)));
        }
    }
}

/// Applies an agent's diff (same shape as [`json_diff`]) to the current facts.
pub fn apply_diff(old: &Value, diff_text: &str) -> Result<Value, String> {
    let diff: Value = serde_json::from_str(diff_text).map_err(|e| e.to_string())?;
    let mut facts = old.clone();
    if let Some(removed) = diff.get("removed").and_then(Value::as_array) {
        for path in removed.iter().filter_map(Value::as_str) {
            remove_path(&mut facts, path);
        }
    }
    if let Some(changed) = diff.get("changed").and_then(Value::as_object) {
        for (path, value) in changed {
            set_path(&mut facts, path, value.clone())?;
        }
    }
    Ok(facts)
}

fn set_path(root: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let map = node
            .as_object_mut()
            .ok_or_else(|| format!("{path}: parent is not an object"))?;
        if parts.peek().is_none() {
            map.insert(part.to_owned(), value);
            return Ok(());
        }
        node = map.entry(part.to_owned()).or_insert_with(|| json!({}));
    }
    Err(format!("{path}: empty path"))
}

fn remove_path(root: &mut Value, path: &str) {
    let mut node = root;
    let parts: Vec<&str> = path.split('.').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        match node.get_mut(*part) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let (Some(map), Some(last)) = (node.as_object_mut(), parts.last()) {
        map.remove(*last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_round_trip() {
        let old = json!({"os": {"id": "debian", "version_id": "12"}, "hostname": "a", "gone": {"x": 1}});
        let new = json!({"os": {"id": "debian", "version_id": "13"}, "hostname": "b", "ports": [22]});
        let diff = json_diff(&old, &new);
        assert_eq!(diff["changed"]["os.version_id"], "13");
        assert_eq!(diff["removed"], json!(["gone.x"]));
        let rebuilt = apply_diff(&old, &diff.to_string()).unwrap();
        assert_eq!(rebuilt["os"], new["os"]);
        assert_eq!(rebuilt["ports"], json!([22]));
        assert!(
            apply_diff(&json!({"a": 1}), r#"{"changed": {"a.b": 2}}"#).is_err(),
            "cannot descend into a number"
        );
        assert!(apply_diff(&old, "not json").is_err());
    }

    /// The diff as first written: flatten both documents completely and compare.
    fn naive_diff(old: &Value, new: &Value) -> Value {
        let (mut before, mut after) = (BTreeMap::new(), BTreeMap::new());
        flatten(old, "", &mut before);
        flatten(new, "", &mut after);
        let changed: Map<String, Value> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let removed: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
        json!({ "changed": changed, "removed": removed })
    }

    #[test]
    fn the_walking_diff_equals_the_full_flattening() {
        let documents = [
            json!({}),
            json!({"a": 1}),
            json!({"a": {"b": 1, "c": [1, 2]}, "d": "x"}),
            json!({"a": {"b": 2, "c": [1, 2, 3]}, "e": {}}),
            json!({"a": {}, "d": "x", "f": {"g": {"h": null}}}),
            json!({"a": [], "d": {"x": 1}, "f": {"g": {"h": 1, "i": 2}}}),
            json!({"a": 5, "d": null}),
            json!({"packages": {"items": [{"name": "a"}, {"name": "b"}]}, "report": 1}),
            json!({"packages": {"items": [{"name": "a"}, {"name": "b"}]}, "report": 2}),
        ];
        for old in &documents {
            for new in &documents {
                assert_eq!(json_diff(old, new), naive_diff(old, new), "{old} -> {new}");
                assert_eq!(is_empty_diff(&json_diff(old, new)), old == new, "{old} -> {new}");
            }
        }
    }

    #[test]
    fn hostile_facts_are_cleaned_and_bounded() {
        let hostname = format!("<b>ws</b>\u{1b}[2J{}", "x".repeat(1_000_000));
        let facts =
            parse_facts(&json!({ "hostname": hostname, "list": vec![1; 30_000] }).to_string()).unwrap();
        let stored = facts["hostname"].as_str().unwrap();
        assert!(
            stored.starts_with("<b>ws</b>[2J"),
            "HTML kept as text, escape removed"
        );
        assert_eq!(stored.len(), MAX_FACT_STRING);
        assert_eq!(facts["list"].as_array().unwrap().len(), MAX_FACT_ITEMS);
    }

    #[test]
    fn facts_must_be_a_bounded_object() {
        assert!(parse_facts("{}").is_ok());
        assert!(parse_facts("[]").is_err());
        assert!(parse_facts("{").is_err());
        assert!(parse_facts(&format!("{{\"h\":\"{}\"}}", "x".repeat(MAX_FACTS_BYTES))).is_err());
    }
}
