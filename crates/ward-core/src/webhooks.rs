//! Webhooks on compliance changes: each event is POSTed as JSON to every configured URL with
//! `X-Ward-Timestamp` (Unix seconds) and `X-Ward-Signature: sha256=HEX`, the HMAC-SHA256 of
//! `TIMESTAMP.BODY` under the hook's secret, so a receiver can check origin and freshness.
//! Delivery is retried with backoff (1 s, 4 s, 16 s, 64 s); a hook that still fails is logged and
//! the event dropped (the compliance results themselves are stored and queryable).

use std::time::Duration;

use serde_json::Value;

use crate::config::WebhookConfig;
use crate::state::AppState;

/// Attempts per event and hook.
const ATTEMPTS: u32 = 5;
/// Events sent per request at most (a policy change may flip thousands of devices).
const MAX_EVENTS_PER_POST: usize = 500;

/// The signature header value for `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

/// Whether `header` is the signature of `body` at `timestamp` (constant time).
pub fn verify(secret: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_sig) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = timestamp.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    ring::hmac::verify(&key, &message, &tag).is_ok()
}

/// Sends `events` to every hook in the background, batched as `{"events": [...]}`.
pub fn compliance_changed(state: &AppState, events: impl Iterator<Item = Value>) {
    let hooks = &state.config.policy.webhooks;
    if hooks.is_empty() {
        return;
    }
    let events: Vec<Value> = events.collect();
    for chunk in events.chunks(MAX_EVENTS_PER_POST) {
        let body = serde_json::json!({ "events": chunk }).to_string();
        for hook in hooks {
            let hook = hook.clone();
            let body = body.clone();
            let state = state.clone();
            tokio::spawn(async move { deliver(&state, &hook, body).await });
        }
    }
}

/// One HTTP client (connection pool, TLS configuration) for every delivery.
fn client() -> Option<&'static reqwest::Client> {
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|err| tracing::warn!(error = %err, "building the webhook client"))
                .ok()
        })
        .as_ref()
}

async fn deliver(state: &AppState, hook: &WebhookConfig, body: String) {
    let Some(client) = client() else {
        tracing::warn!(url = %hook.url, "no HTTP client for webhooks; event dropped");
        return;
    };
    let mut delay = Duration::from_secs(1);
    for attempt in 1..=ATTEMPTS {
        let timestamp = state.now_ms() / 1000;
        let result = client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("x-ward-timestamp", timestamp.to_string())
            .header(
                "x-ward-signature",
                signature(&hook.secret, timestamp, body.as_bytes()),
            )
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => return,
            Ok(response) => {
                tracing::warn!(url = %hook.url, status = %response.status(), attempt, "webhook refused")
            }
            Err(err) => tracing::warn!(url = %hook.url, error = %err, attempt, "webhook failed"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(delay).await;
            delay *= 4;
        }
    }
    tracing::error!(url = %hook.url, "webhook gave up after {ATTEMPTS} attempts; event dropped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let sig = signature("0123456789abcdef", 1_790_000_000, b"{\"events\":[]}");
        assert!(verify(
            "0123456789abcdef",
            1_790_000_000,
            b"{\"events\":[]}",
            &sig
        ));
        assert!(!verify(
            "0123456789abcdef",
            1_790_000_001,
            b"{\"events\":[]}",
            &sig
        ));
        assert!(!verify(
            "0123456789abcdef",
            1_790_000_000,
            b"{\"events\":[1]}",
            &sig
        ));
        assert!(!verify(
            "another secret!!",
            1_790_000_000,
            b"{\"events\":[]}",
            &sig
        ));
        assert!(!verify(
            "0123456789abcdef",
            1_790_000_000,
            b"{\"events\":[]}",
            "sha256=zz"
        ));
        assert!(!verify(
            "0123456789abcdef",
            1_790_000_000,
            b"{\"events\":[]}",
            "md5=00"
        ));
    }
}
