//! The service's background jobs that are not a platform's: signed audit checkpoints and the
//! database log's checkpoints, both stepping aside while a containment fans out.

use ward_domain::audit::Checkpoint;

use crate::presence;
use crate::state::AppState;

/// Signs a checkpoint of the current log if it grew since the last one.
pub async fn checkpoint_now(state: &AppState) -> anyhow::Result<Option<Checkpoint>> {
    let now = state.now_ms();
    let key = state.keys.audit_key.clone();
    let sign = move |head: &ward_domain::audit::AuditHead| Checkpoint::sign(head, now, &key);
    Ok(state.store.checkpoint(&sign).await?)
}

/// How often the database's write-ahead log is copied into the database file.
const LOG_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Checkpoints the database's write-ahead log every couple of seconds, skipping a turn while a
/// containment is storing and pushing its commands (`fan_out`), so that the checkpoint is not left
/// to whichever commit finds the log full: in the middle of a fan-out that takes a noticeable share
/// of the server's processor time (see BENCHMARKS.md). A containment that starts during a
/// checkpoint does not wait for it (the checkpoint lets the writer go on).
pub async fn log_checkpointer(state: AppState) {
    let state = &state;
    between_fan_outs(state, LOG_CHECKPOINT_INTERVAL, || async move {
        if let Err(err) = state.store.checkpoint_log().await {
            tracing::warn!(error = %err, "checkpointing the database log failed");
        }
    })
    .await
}

/// Runs `turn` every `period`, forever, skipping a turn while a containment is storing and pushing
/// its commands (`AppState::fan_out`): for background writes that can wait until it is through.
pub async fn between_fan_outs<F, Turn>(state: &AppState, period: std::time::Duration, mut turn: F)
where
    F: FnMut() -> Turn,
    Turn: std::future::Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if state.fan_out.try_write().is_err() {
            continue;
        }
        turn().await;
    }
}

/// Signs a checkpoint every `checkpoint_every` entries or once unsigned entries are
/// `checkpoint_interval_ms` old, whichever comes first.
pub async fn checkpointer(state: AppState) {
    let mut last_size = match state.store.checkpoints().await {
        Ok(list) => list.last().map(|c| c.tree_size).unwrap_or(0),
        Err(_) => 0,
    };
    let mut pending_since: Option<i64> = None;
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let size = match state.store.recorded_size().await {
            Ok(Some(size)) => size,
            _ => continue,
        };
        if size <= last_size {
            pending_since = None;
            continue;
        }
        let now = state.now_ms();
        let since = *pending_since.get_or_insert(now);
        let due = size - last_size >= state.config.audit.checkpoint_every
            || now - since >= state.config.audit.checkpoint_interval_ms;
        if due {
            match checkpoint_now(&state).await {
                Ok(checkpoint) => {
                    last_size = checkpoint.map(|c| c.tree_size).unwrap_or(size);
                    pending_since = None;
                }
                Err(err) => tracing::error!(error = %err, "signing an audit checkpoint failed"),
            }
        }
    }
}

/// Writes collected heartbeats every [`presence::INTERVAL`], except while a containment is storing and
/// pushing its commands (`fan_out`).
pub async fn presence_writer(state: AppState) {
    let state = &state;
    between_fan_outs(state, presence::INTERVAL, || {
        state.presence.flush(state.store.as_ref())
    })
    .await
}
