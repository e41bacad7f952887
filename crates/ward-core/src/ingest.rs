//! The fact pipeline every device platform shares: "device D reported facts F" is compared with
//! what is stored and, when it changed, handed to the facts writer, after which the policy engine
//! re-evaluates the device (compliance, remediation, webhooks). The agent channel and the LwM2M
//! gateway both come in here.

use serde_json::{Value, json};
use ward_store::FactsUpdate;

use crate::facts::{FactsWork, MAX_FACTS_BYTES, is_empty_diff, json_diff};
use crate::state::AppState;

/// The facts stored for a device (an empty object when there are none).
pub async fn current(state: &AppState, device_id: &str) -> Value {
    match state.store.device(device_id).await {
        Ok(Some(device)) => serde_json::from_str(&device.facts).unwrap_or_else(|_| json!({})),
        _ => json!({}),
    }
}

/// A device reported its whole facts document, `old` being what the server knew: stored when it
/// differs, otherwise the device only counts as heard from.
pub async fn reported(
    state: &AppState,
    device_id: &str,
    old: &Value,
    facts: &Value,
    text: Option<String>,
    now: i64,
) {
    let change = json_diff(old, facts);
    if is_empty_diff(&change) {
        let _ = state.store.record_seen(device_id, now).await;
    } else {
        store(state, device_id, facts, text, &change, now).await;
    }
}

/// Hands new facts to the writer task (waiting when it is behind: back-pressure on the agents).
pub async fn store(
    state: &AppState,
    device_id: &str,
    facts: &Value,
    text: Option<String>,
    change: &Value,
    now: i64,
) {
    let text = text.unwrap_or_else(|| facts.to_string());
    if text.len() > MAX_FACTS_BYTES {
        tracing::warn!(
            device = device_id,
            bytes = text.len(),
            "facts too large; not stored"
        );
        return;
    }
    let update = FactsUpdate {
        device_id: device_id.to_owned(),
        facts: text,
        change: change.to_string(),
        time_ms: now,
    };
    if state.facts_writer.send(FactsWork::Update(update)).await.is_err() {
        tracing::warn!(device = device_id, "the facts writer has stopped");
    }
}
