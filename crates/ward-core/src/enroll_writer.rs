//! Group commit for enrollments: every `POST /enroll` hands its device to this one task, which
//! stores whatever has queued up in a single transaction (token uses, devices and their audit
//! entries) and answers each request. One transaction per enrollment would make the commit —
//! above all the audit append — the bottleneck of a fleet enrolling at once.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use ward_store::{NewEnrollment, Store, StoreError, StoreResult};

/// An enrollment and where its outcome goes.
pub type Submission = (NewEnrollment, oneshot::Sender<StoreResult<()>>);

/// Most enrollments in one transaction.
const MAX_BATCH: usize = 256;

/// Stores an enrollment through the writer and waits for its outcome.
pub async fn submit(queue: &mpsc::Sender<Submission>, enrollment: NewEnrollment) -> StoreResult<()> {
    let (reply, answer) = oneshot::channel();
    queue
        .send((enrollment, reply))
        .await
        .map_err(|_| StoreError::Unavailable("the enrollment writer has stopped".into()))?;
    answer
        .await
        .map_err(|_| StoreError::Unavailable("the enrollment writer dropped the request".into()))?
}

/// Runs until every sender is gone.
pub async fn run(store: Arc<dyn Store>, mut queue: mpsc::Receiver<Submission>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (items, replies): (Vec<NewEnrollment>, Vec<_>) = batch.into_iter().unzip();
        match store.enroll_devices(&items).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                let text = err.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(text.clone())));
                }
            }
        }
    }
}
