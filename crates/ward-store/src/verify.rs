//! Drives the domain [`Verifier`] over a stored log, page by page, so a log of any size is checked
//! in bounded memory. Used by the server (online verify) and by `ward audit verify --database`.

use ed25519_dalek::VerifyingKey;
use ward_domain::audit::{Verifier, VerifyReport};

use crate::{AuditLog, StoreResult};

/// Entries read per page while verifying.
pub const VERIFY_PAGE: u32 = 10_000;

/// Recomputes the whole chain and every checkpoint of `log` under `key`.
pub async fn verify_log(log: &dyn AuditLog, key: VerifyingKey) -> StoreResult<VerifyReport> {
    let recorded_size = log.recorded_size().await?;
    let mut verifier = Verifier::new(key, log.checkpoints().await?);
    let mut after = 0;
    loop {
        let page = log.raw_entries(after, VERIFY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in &page {
            verifier.feed(entry);
        }
        if verifier.failed() || (page.len() as u32) < VERIFY_PAGE {
            break;
        }
    }
    Ok(verifier.finish(recorded_size))
}
