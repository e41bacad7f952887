//! Diffs between fact sets: what is sent, and that the server rebuilds exactly the new facts.

use ward_agent::facts::*;

use crate::{collect_fixture, fixture_root};

fn ws01() -> Facts {
    collect_fixture(&fixture_root("ws01"))
}

#[test]
fn flatten_gives_dotted_paths_and_keeps_arrays_whole() {
    let flat = flatten(&ws01());
    assert_eq!(flat["hostname"], "ws01");
    assert_eq!(flat["os.id"], "debian");
    assert_eq!(flat["memory.total_bytes"], 8041548u64 * 1024);
    assert_eq!(flat["disks.root_filesystem.encrypted"], true);
    assert!(flat["listening"].is_array());
    assert_eq!(flat["packages.items"].as_array().unwrap().len(), 4);
    assert_eq!(flat["screen_lock.idle_delay_seconds"], 300);
}

#[test]
fn identical_facts_diff_to_nothing() {
    let facts = ws01();
    assert!(diff(&facts, &facts).is_empty());
}

#[test]
fn a_change_sends_only_its_paths_and_round_trips() {
    let old = ws01();
    let mut new = old.clone();
    new.hostname = Some("ws01-renamed".to_owned());
    new.uptime_seconds = Some(93_900);
    new.os = None;
    new.screen_lock.as_mut().unwrap().lock_enabled = Some(false);
    new.packages.as_mut().unwrap().items.pop();

    let changes = diff(&old, &new);
    let changed: Vec<&str> = changes.changed.keys().map(String::as_str).collect();
    assert_eq!(
        changed,
        [
            "hostname",
            "os",
            "packages.items",
            "screen_lock.lock_enabled",
            "uptime_seconds"
        ]
    );
    assert_eq!(
        changes.removed,
        [
            "os.id",
            "os.name",
            "os.pretty_name",
            "os.version",
            "os.version_id"
        ]
    );

    assert_eq!(apply(&old, &changes).unwrap(), new);
    // And back again: a section coming back replaces its null.
    assert_eq!(apply(&new, &diff(&new, &old)).unwrap(), old);
}

#[test]
fn round_trips_between_very_different_machines() {
    let full = ws01();
    let broken = collect_fixture(&fixture_root("hostile"));
    let empty = collect_fixture(tempfile::tempdir().unwrap().path());
    for (old, new) in [
        (&full, &broken),
        (&broken, &full),
        (&full, &empty),
        (&empty, &full),
    ] {
        let changes = diff(old, new);
        // The diff travels as JSON.
        let changes: FactsDiff = serde_json::from_str(&serde_json::to_string(&changes).unwrap()).unwrap();
        assert_eq!(&apply(old, &changes).unwrap(), new);
    }
}

#[test]
fn a_diff_made_against_other_facts_is_refused() {
    let old = ws01();
    let mut changes = FactsDiff::default();
    // Setting a field inside `os` without removing the section's fields is fine...
    changes.changed.insert("os.id".to_owned(), "ubuntu".into());
    assert_eq!(apply(&old, &changes).unwrap().os.unwrap().id, "ubuntu");
    // ...but setting `os` to null while its fields remain is a conflict, not a silent merge.
    changes.changed.insert("os".to_owned(), serde_json::Value::Null);
    assert!(matches!(apply(&old, &changes), Err(ApplyError::Conflict { .. })));
    // And a value of the wrong type is invalid.
    let mut wrong_type = FactsDiff::default();
    wrong_type
        .changed
        .insert("uptime_seconds".to_owned(), "soon".into());
    assert!(matches!(apply(&old, &wrong_type), Err(ApplyError::Invalid(_))));
}
