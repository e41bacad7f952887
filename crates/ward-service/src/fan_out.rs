//! A containment's fan-out: commands signed on every core, then stored and pushed in chunks, each
//! chunk's commands and audit entries in one transaction and handed to the devices' live
//! connections as soon as it commits. The first chunk is stored with the incident's own change
//! (`incident_steps.rs`); this module stores the rest.

use std::time::Duration;

use ward_store::{Audit, CommandRecord};

use ward_core::error::{ServiceError, ServiceResult};
use ward_core::state::AppState;

/// Commands stored and pushed together in a containment's fan-out: the first chunk small, so
/// the first devices are reached soon, the others larger, so fewer commits are paid for (each
/// chunk's entries in the indexes by device land on most of those indexes' pages, which every
/// commit then writes to the log again).
pub const FIRST_CHUNK: usize = 200;
const CONTAIN_CHUNK: usize = 2000;

/// Stores and pushes `pairs` in chunks of [`CONTAIN_CHUNK`], each signed by `sign_chunk` into
/// commands and their audit records. Returns how many commands were queued and the time spent
/// signing and storing (for the containment's log line).
pub async fn store_and_push<T: Sync>(
    state: &AppState,
    pairs: &[T],
    sign_chunk: &SignFn<'_, T, CommandRecord, ward_domain::audit::AuditRecord>,
) -> ServiceResult<(usize, Duration, Duration)> {
    let mut queued = 0usize;
    // Where the fan-out's time went, for the log line below.
    let (mut signing, mut storing) = (Duration::ZERO, Duration::ZERO);
    for chunk in pairs.chunks(CONTAIN_CHUNK) {
        let started = std::time::Instant::now();
        let (commands, records) = sign_in_parallel(chunk, sign_chunk);
        let audit = Audit {
            time_ms: state.now_ms(),
            records,
        };
        signing += started.elapsed();
        let started = std::time::Instant::now();
        // Stored, then pushed, by one future: on the fan-out's runtime a chunk that gets stored is
        // pushed even if this request goes away meanwhile (a resumed containment queues only what
        // is missing; it does not push again what is already stored).
        let chunk_state = state.clone();
        let stored = async move {
            chunk_state.store.create_commands(&commands, audit).await?;
            for command in &commands {
                chunk_state.channels.push(command);
            }
            Ok::<usize, ServiceError>(commands.len())
        };
        queued += match fan_out_runtime() {
            Some(runtime) => runtime.spawn(stored).await.map_err(|failed| {
                ServiceError::internal(format!("storing a chunk of the fan-out: {failed}"))
            })??,
            None => stored.await?,
        };
        storing += started.elapsed();
    }
    Ok((queued, signing, storing))
}

/// The runtime a containment's chunks after the first are stored on: each chunk's transaction is
/// a dozen round trips to the database's thread, and on the server's runtime every one of them
/// would wait behind the thousands of agent sessions the chunks before it have woken (see
/// BENCHMARKS.md). `None` if it could not be started (then chunks are stored on the server's
/// runtime).
fn fan_out_runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ward-fan-out")
                .enable_all()
                .build()
                .inspect_err(|err| tracing::warn!(error = %err, "no runtime of its own for the fan-out"))
                .ok()
        })
        .as_ref()
}

/// Signs a slice of (device, action) pairs into commands and their audit records.
pub type SignFn<'a, T, C, R> = dyn Fn(&[T]) -> (Vec<C>, Vec<R>) + Sync + 'a;

/// Signs a fan-out's commands (and builds their audit records) on every core, in order: signing
/// is a large part of the time before the first command leaves.
pub fn sign_in_parallel<T: Sync, C: Send, R: Send>(
    items: &[T],
    sign: &SignFn<'_, T, C, R>,
) -> (Vec<C>, Vec<R>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 || items.len() < 256 {
        return sign(items);
    }
    let part = items.len().div_ceil(cores);
    let parts: Vec<(Vec<C>, Vec<R>)> = std::thread::scope(|scope| {
        let mut chunks = items.chunks(part);
        let first = chunks.next().unwrap_or(&[]);
        let others: Vec<_> = chunks.map(|chunk| scope.spawn(move || sign(chunk))).collect();
        let mut parts = vec![sign(first)];
        // A signing thread that panicked is a bug; panicking here too keeps it visible.
        parts.extend(others.into_iter().map(|handle| match handle.join() {
            Ok(part) => part,
            Err(panic) => std::panic::resume_unwind(panic),
        }));
        parts
    });
    let (mut commands, mut records) = (Vec::with_capacity(items.len()), Vec::with_capacity(items.len()));
    for (c, r) in parts {
        commands.extend(c);
        records.extend(r);
    }
    (commands, records)
}
