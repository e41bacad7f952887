//! Facts as flat dotted paths, and diffs between two fact sets, so the agent can send only what
//! changed and the server can rebuild the whole.
//!
//! Objects are flattened into `section.field` paths; arrays and scalars (including `null` for an
//! absent section) are leaves kept whole at their path, so a list that changes is sent as a whole
//! list. Facts contain no maps with free-form keys, so no path segment ever contains a dot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Facts;

/// What changed from one fact set to the next.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FactsDiff {
    /// Paths that are new or have a new value, with that value.
    pub changed: BTreeMap<String, Value>,
    /// Paths present before and absent now (e.g. `os.id` when the `os` section became `null`).
    pub removed: Vec<String>,
}

impl FactsDiff {
    /// Nothing changed: there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Why a diff could not be applied to a fact set: it was made against different facts, or by a
/// different (incompatible) agent version.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A path runs through a value that is not an object (e.g. `os.id` while `os` is `null`).
    #[error("conflicting paths at {path}")]
    Conflict { path: String },
    /// The result is not a valid fact set.
    #[error("the patched facts are invalid: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// Every leaf of `facts` by its dotted path.
pub fn flatten(facts: &Facts) -> BTreeMap<String, Value> {
    let mut flat = BTreeMap::new();
    // Serialising plain structs of strings, numbers and lists cannot fail; if it ever did, an
    // empty map makes the next diff a full resend, which is the safe direction.
    if let Ok(value) = serde_json::to_value(facts) {
        flatten_into(String::new(), value, &mut flat);
    }
    flat
}

fn flatten_into(prefix: String, value: Value, flat: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(object) if !object.is_empty() => {
            for (key, child) in object {
                let path = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(path, child, flat);
            }
        }
        leaf => {
            flat.insert(prefix, leaf);
        }
    }
}

/// The changes that turn `old` into `new`.
pub fn diff(old: &Facts, new: &Facts) -> FactsDiff {
    let old_flat = flatten(old);
    let new_flat = flatten(new);
    let changed = new_flat
        .iter()
        .filter(|(path, value)| old_flat.get(*path) != Some(*value))
        .map(|(path, value)| (path.clone(), value.clone()))
        .collect();
    let removed = old_flat
        .keys()
        .filter(|path| !new_flat.contains_key(*path))
        .cloned()
        .collect();
    FactsDiff { changed, removed }
}

/// `old` with `diff` applied; `apply(old, &diff(old, new)) == new`.
pub fn apply(old: &Facts, diff: &FactsDiff) -> Result<Facts, ApplyError> {
    let mut flat = flatten(old);
    for path in &diff.removed {
        flat.remove(path);
    }
    flat.extend(
        diff.changed
            .iter()
            .map(|(path, value)| (path.clone(), value.clone())),
    );
    let mut tree = Value::Object(Map::new());
    // In sorted order a section's `null` ("os") comes before its fields ("os.id"), so a stale
    // leaf that should have been removed is caught as a conflict rather than silently kept.
    for (path, value) in flat {
        insert_path(&mut tree, &path, value)?;
    }
    Ok(serde_json::from_value(tree)?)
}

fn insert_path(tree: &mut Value, path: &str, value: Value) -> Result<(), ApplyError> {
    let conflict = || ApplyError::Conflict {
        path: path.to_owned(),
    };
    let mut segments: Vec<&str> = path.split('.').collect();
    let Some(last) = segments.pop() else {
        return Err(conflict());
    };
    let mut node = tree;
    for segment in segments {
        let Value::Object(object) = node else {
            return Err(conflict());
        };
        node = object
            .entry(segment.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let Value::Object(object) = node else {
        return Err(conflict());
    };
    if object.contains_key(last) {
        return Err(conflict());
    }
    object.insert(last.to_owned(), value);
    Ok(())
}
