//! The tamper-evident audit log: entries, their canonical encoding and hashing, signed checkpoints
//! and the verifier that names the first sequence number where the log was altered.
//!
//! Format (documented for auditors in `docs/audit-log.md`): every entry's hash is the RFC 6962 leaf
//! hash of its canonical encoding, which includes the previous entry's hash. So the entries form a
//! hash chain *and* are the leaves of a Merkle tree; checkpoints sign the tree size, the Merkle root
//! and the chain head with the server's Ed25519 audit key.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::merkle::{Frontier, Hash, leaf_hash};

/// The hash that the first entry links back to.
pub const GENESIS_HASH: Hash = [0u8; 32];

const ENTRY_DOMAIN: &[u8] = b"ward-audit-entry-v1";
const CHECKPOINT_DOMAIN: &[u8] = b"ward-audit-checkpoint-v1";

/// Upper bounds on stored fields; longer values are cut (and marked) rather than refused, because
/// refusing the record would refuse the action it records.
pub const MAX_ACTOR: usize = 256;
pub const MAX_ACTION: usize = 128;
pub const MAX_TARGET: usize = 512;
pub const MAX_SOURCE: usize = 128;
pub const MAX_DETAILS: usize = 16 * 1024;

/// How an audited event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    /// Refused by authorization (a role or site scope did not allow it).
    Denied,
    /// Allowed but must be looked at by a person (for example a break-glass login).
    Alert,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
            Outcome::Alert => "alert",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            "denied" => Outcome::Denied,
            "alert" => Outcome::Alert,
            _ => return None,
        })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the caller wants recorded; the log assigns sequence number, time and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Who: `user:alice`, `token:ID (user:alice)`, `system`, `anonymous`.
    pub actor: String,
    /// What, dotted: `user.create`, `auth.login`, `site.update`.
    pub action: String,
    /// On what: `user:bob`, `site:st-marys/icu`.
    pub target: String,
    pub outcome: Outcome,
    /// Canonical JSON text (object keys sorted), so the hash is over exactly the stored bytes.
    pub details: String,
    /// Network source of the request, when there was one.
    pub source: Option<String>,
}

impl AuditRecord {
    /// Builds a record, bounding every field and canonicalising the details.
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Self {
        Self {
            actor: bound(actor.into(), MAX_ACTOR),
            action: bound(action.into(), MAX_ACTION),
            target: bound(target.into(), MAX_TARGET),
            outcome,
            details: canonical_details(&details),
            source: None,
        }
    }

    /// Sets the network source.
    pub fn with_source(mut self, source: Option<String>) -> Self {
        self.source = source.map(|s| bound(s, MAX_SOURCE));
        self
    }
}

/// Cuts a string to at most `max` bytes on a character boundary, marking the cut, and replaces NUL
/// (which PostgreSQL text cannot store) with U+FFFD so hostile input can always be recorded.
fn bound(mut text: String, max: usize) -> String {
    if text.contains('\0') {
        text = text.replace('\0', "\u{FFFD}");
    }
    if text.len() <= max {
        return text;
    }
    let mut cut = max.saturating_sub(3);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push('…');
    text
}

/// Serialises details with sorted keys (serde_json's default map is ordered); oversized details are
/// replaced by a marker that keeps their size.
fn canonical_details(details: &serde_json::Value) -> String {
    let sorted = sort_keys(details);
    let text = sorted.to_string();
    if text.len() <= MAX_DETAILS {
        text
    } else {
        format!("{{\"truncated\":true,\"original_bytes\":{}}}", text.len())
    }
}

/// Rebuilds objects with keys in sorted order, whatever map type serde_json was built with.
fn sort_keys(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sort_keys(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

/// A sealed entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// 1-based, contiguous.
    pub seq: u64,
    /// Unix time in milliseconds (UTC).
    pub time_ms: i64,
    pub record: AuditRecord,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl AuditEntry {
    /// The canonical encoding that is hashed: a domain tag, then each field as a 4-byte big-endian
    /// length and its bytes, in a fixed order.
    pub fn canonical_bytes(seq: u64, time_ms: i64, record: &AuditRecord, prev_hash: &Hash) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + record.details.len());
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        field(ENTRY_DOMAIN);
        field(&seq.to_be_bytes());
        field(&time_ms.to_be_bytes());
        field(record.actor.as_bytes());
        field(record.action.as_bytes());
        field(record.target.as_bytes());
        field(record.outcome.as_str().as_bytes());
        field(record.details.as_bytes());
        field(record.source.as_deref().unwrap_or("").as_bytes());
        field(prev_hash);
        out
    }

    /// Recomputes this entry's hash from its fields.
    pub fn compute_hash(&self) -> Hash {
        leaf_hash(&Self::canonical_bytes(
            self.seq,
            self.time_ms,
            &self.record,
            &self.prev_hash,
        ))
    }
}

/// The log's head: what an append needs to know. Stored beside the entries and updated in the
/// same transaction as each append.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditHead {
    pub frontier: Frontier,
    /// Hash of the last entry (the genesis hash when empty).
    pub head_hash: Hash,
}

impl AuditHead {
    /// The head of an empty log.
    pub fn empty() -> Self {
        Self {
            frontier: Frontier::new(),
            head_hash: GENESIS_HASH,
        }
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Seals `record` as the next entry and advances the head.
    pub fn append(&mut self, time_ms: i64, record: AuditRecord) -> AuditEntry {
        let seq = self.size() + 1;
        let prev_hash = self.head_hash;
        let hash = leaf_hash(&AuditEntry::canonical_bytes(seq, time_ms, &record, &prev_hash));
        self.frontier.push(hash);
        self.head_hash = hash;
        AuditEntry {
            seq,
            time_ms,
            record,
            prev_hash,
            hash,
        }
    }
}

/// A signed statement of the log's state at `tree_size` entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub tree_size: u64,
    /// RFC 6962 Merkle root over entry hashes 1..=tree_size.
    pub root: Hash,
    /// Hash of entry `tree_size`.
    pub head_hash: Hash,
    pub time_ms: i64,
    /// Ed25519 over [`Checkpoint::message`].
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The signed bytes.
    pub fn message(tree_size: u64, root: &Hash, head_hash: &Hash, time_ms: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(CHECKPOINT_DOMAIN);
        out.extend_from_slice(&tree_size.to_be_bytes());
        out.extend_from_slice(root);
        out.extend_from_slice(head_hash);
        out.extend_from_slice(&time_ms.to_be_bytes());
        out
    }

    /// Signs the current state of `head`.
    pub fn sign(head: &AuditHead, time_ms: i64, key: &SigningKey) -> Self {
        let tree_size = head.size();
        let root = head.frontier.root();
        let signature = key.sign(&Self::message(tree_size, &root, &head.head_hash, time_ms));
        Self {
            tree_size,
            root,
            head_hash: head.head_hash,
            time_ms,
            signature: signature.to_bytes().to_vec(),
        }
    }

    /// Whether the signature is valid under `key`.
    pub fn signature_valid(&self, key: &VerifyingKey) -> bool {
        let Ok(signature) = Signature::from_slice(&self.signature) else {
            return false;
        };
        key.verify(
            &Self::message(self.tree_size, &self.root, &self.head_hash, self.time_ms),
            &signature,
        )
        .is_ok()
    }
}

/// What kind of damage the verifier found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// An entry's content no longer matches its hash (edited).
    EntryEdited,
    /// An entry's link to its predecessor is broken (the predecessor was replaced or the entry moved).
    ChainBroken,
    /// A sequence number is missing (deleted entry).
    EntryMissing,
    /// Entries appear out of order or twice.
    OutOfOrder,
    /// The log ends before a signed checkpoint or the recorded head says it should (truncated).
    Truncated,
    /// The entries hash consistently but disagree with a signed checkpoint (rewritten).
    CheckpointMismatch,
    /// A checkpoint's signature is not valid under the audit key.
    BadSignature,
}

/// The first place where the log is not what was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The first sequence number that is wrong.
    pub seq: u64,
    pub kind: FailureKind,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {}: {:?}: {}", self.seq, self.kind, self.detail)
    }
}

/// The verifier's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub entries_checked: u64,
    pub checkpoints_checked: u64,
    /// Merkle root over the entries checked, hex.
    pub root: String,
    pub failure: Option<Failure>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }
}

/// Streams entries in sequence order and checks hashes, links, contiguity and checkpoints.
///
/// Feed every stored entry ordered by stored sequence number, then call [`Verifier::finish`].
/// After the first failure further entries are ignored.
pub struct Verifier {
    key: VerifyingKey,
    /// Checkpoints sorted by tree size, with valid signatures; verified as the frontier reaches them.
    checkpoints: Vec<Checkpoint>,
    next_checkpoint: usize,
    checkpoints_checked: u64,
    head: AuditHead,
    failure: Option<Failure>,
}

impl Verifier {
    /// Starts a verification against `checkpoints` signed by `key`.
    pub fn new(key: VerifyingKey, mut checkpoints: Vec<Checkpoint>) -> Self {
        checkpoints.sort_by_key(|c| c.tree_size);
        let mut failure = None;
        for checkpoint in &checkpoints {
            if !checkpoint.signature_valid(&key) {
                failure = Some(Failure {
                    seq: checkpoint.tree_size,
                    kind: FailureKind::BadSignature,
                    detail: format!(
                        "the checkpoint at tree size {} is not signed by this audit key",
                        checkpoint.tree_size
                    ),
                });
                break;
            }
        }
        let mut verifier = Self {
            key,
            checkpoints,
            next_checkpoint: 0,
            checkpoints_checked: 0,
            head: AuditHead::empty(),
            failure,
        };
        // A checkpoint of size 0 says nothing; skip those.
        while verifier
            .checkpoints
            .get(verifier.next_checkpoint)
            .is_some_and(|c| c.tree_size == 0)
        {
            verifier.next_checkpoint += 1;
        }
        verifier
    }

    /// The key this verifier checks signatures with.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Whether a failure has been found (further entries are not needed).
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Checks the next stored entry.
    pub fn feed(&mut self, entry: &AuditEntry) {
        if self.failure.is_some() {
            return;
        }
        let expected = self.head.size() + 1;
        if entry.seq != expected {
            let (kind, detail) = if entry.seq > expected {
                (
                    FailureKind::EntryMissing,
                    format!(
                        "expected entry {expected}, found entry {} next (deleted)",
                        entry.seq
                    ),
                )
            } else {
                (
                    FailureKind::OutOfOrder,
                    format!("entry {} appears again after entry {}", entry.seq, expected - 1),
                )
            };
            self.failure = Some(Failure {
                seq: expected,
                kind,
                detail,
            });
            return;
        }
        if entry.compute_hash() != entry.hash {
            self.failure = Some(Failure {
                seq: entry.seq,
                kind: FailureKind::EntryEdited,
                detail: "content does not match the entry's hash (edited or moved)".into(),
            });
            return;
        }
        if entry.prev_hash != self.head.head_hash {
            self.failure = Some(Failure {
                seq: entry.seq,
                kind: FailureKind::ChainBroken,
                detail: format!(
                    "does not link to entry {} (one of the two was replaced)",
                    entry.seq - 1
                ),
            });
            return;
        }
        self.head.frontier.push(entry.hash);
        self.head.head_hash = entry.hash;
        self.check_checkpoints_at_current_size();
    }

    fn check_checkpoints_at_current_size(&mut self) {
        let size = self.head.size();
        while let Some(checkpoint) = self.checkpoints.get(self.next_checkpoint) {
            if checkpoint.tree_size != size {
                break;
            }
            self.next_checkpoint += 1;
            self.checkpoints_checked += 1;
            if checkpoint.root != self.head.frontier.root() || checkpoint.head_hash != self.head.head_hash {
                let previous_good = self.checkpoints[..self.next_checkpoint - 1]
                    .last()
                    .map(|c| c.tree_size)
                    .unwrap_or(0);
                self.failure = Some(Failure {
                    seq: previous_good + 1,
                    kind: FailureKind::CheckpointMismatch,
                    detail: format!(
                        "entries {}..={} were rewritten: they hash consistently but differ from the signed checkpoint at size {}",
                        previous_good + 1,
                        size,
                        size
                    ),
                });
                return;
            }
        }
    }

    /// Finishes: the log must reach every checkpoint and the recorded head size.
    pub fn finish(mut self, recorded_size: Option<u64>) -> VerifyReport {
        if self.failure.is_none() {
            let size = self.head.size();
            let checkpoint_size = self.checkpoints.last().map(|c| c.tree_size).unwrap_or(0);
            let expected = checkpoint_size.max(recorded_size.unwrap_or(0));
            if expected > size {
                self.failure = Some(Failure {
                    seq: size + 1,
                    kind: FailureKind::Truncated,
                    detail: format!(
                        "the log ends at entry {size} but the log head or a signed checkpoint records {expected} entries"
                    ),
                });
            }
        }
        VerifyReport {
            entries_checked: self.head.size(),
            checkpoints_checked: self.checkpoints_checked,
            root: hex::encode(self.head.frontier.root()),
            failure: self.failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn build(n: u64, checkpoint_every: u64) -> (Vec<AuditEntry>, Vec<Checkpoint>, AuditHead) {
        let mut head = AuditHead::empty();
        let mut entries = Vec::new();
        let mut checkpoints = Vec::new();
        for i in 0..n {
            let record = AuditRecord::new(
                "user:alice",
                "site.create",
                format!("site:s{i}"),
                Outcome::Success,
                serde_json::json!({"b": 1, "a": i}),
            );
            entries.push(head.append(1_000 + i as i64, record));
            if head.size().is_multiple_of(checkpoint_every) {
                checkpoints.push(Checkpoint::sign(&head, 2_000, &key()));
            }
        }
        (entries, checkpoints, head)
    }

    fn verify(entries: &[AuditEntry], checkpoints: Vec<Checkpoint>, recorded: u64) -> VerifyReport {
        let mut verifier = Verifier::new(key().verifying_key(), checkpoints);
        for entry in entries {
            verifier.feed(entry);
        }
        verifier.finish(Some(recorded))
    }

    #[test]
    fn intact_log_verifies() {
        let (entries, checkpoints, head) = build(25, 10);
        let report = verify(&entries, checkpoints, head.size());
        assert_eq!(report.failure, None);
        assert_eq!(report.entries_checked, 25);
        assert_eq!(report.checkpoints_checked, 2);
    }

    #[test]
    fn details_are_canonical() {
        let record = AuditRecord::new(
            "a",
            "b",
            "c",
            Outcome::Success,
            serde_json::json!({"z": 1, "a": {"y": 2, "b": 3}}),
        );
        assert_eq!(record.details, r#"{"a":{"b":3,"y":2},"z":1}"#);
    }

    #[test]
    fn nul_is_replaced_so_any_store_can_hold_it() {
        let record = AuditRecord::new(
            "a\0b",
            "x",
            "t",
            Outcome::Failure,
            serde_json::json!({"u": "a\0"}),
        )
        .with_source(Some("\0".into()));
        assert_eq!(record.actor, "a\u{FFFD}b");
        assert_eq!(record.source.as_deref(), Some("\u{FFFD}"));
        assert_eq!(record.details, r#"{"u":"a\u0000"}"#);
    }

    #[test]
    fn long_fields_are_bounded() {
        let record = AuditRecord::new(
            "é".repeat(500),
            "x",
            "t",
            Outcome::Success,
            serde_json::json!({"big": "x".repeat(MAX_DETAILS)}),
        );
        assert!(record.actor.len() <= MAX_ACTOR);
        assert!(record.details.contains("truncated"));
    }

    #[test]
    fn edited_entry_is_named() {
        let (mut entries, checkpoints, head) = build(25, 10);
        entries[11].record.details = r#"{"a":0}"#.into();
        let failure = verify(&entries, checkpoints, head.size()).failure.unwrap();
        assert_eq!((failure.seq, failure.kind), (12, FailureKind::EntryEdited));
    }

    #[test]
    fn deleted_entry_is_named() {
        let (mut entries, checkpoints, head) = build(25, 10);
        entries.remove(4);
        let failure = verify(&entries, checkpoints, head.size()).failure.unwrap();
        assert_eq!((failure.seq, failure.kind), (5, FailureKind::EntryMissing));
    }

    #[test]
    fn reordered_entries_are_named() {
        let (mut entries, checkpoints, head) = build(25, 10);
        // Swap the sequence numbers of entries 7 and 8, as an UPDATE would.
        entries[6].seq = 8;
        entries[7].seq = 7;
        entries.swap(6, 7);
        let failure = verify(&entries, checkpoints, head.size()).failure.unwrap();
        assert_eq!(failure.seq, 7);
        assert_eq!(failure.kind, FailureKind::EntryEdited);
    }

    #[test]
    fn truncated_log_is_named() {
        let (mut entries, checkpoints, head) = build(25, 10);
        entries.truncate(21);
        let failure = verify(&entries, checkpoints.clone(), head.size())
            .failure
            .unwrap();
        assert_eq!((failure.seq, failure.kind), (22, FailureKind::Truncated));
        // Even if the head record were rolled back too, the checkpoint at 20 catches a cut below it.
        entries.truncate(15);
        let failure = verify(&entries, checkpoints, 15).failure.unwrap();
        assert_eq!((failure.seq, failure.kind), (16, FailureKind::Truncated));
    }

    #[test]
    fn consistent_rewrite_is_caught_by_checkpoint() {
        let (entries, checkpoints, _) = build(25, 10);
        // Rebuild the log with entry 14 changed and every later hash recomputed.
        let mut head = AuditHead::empty();
        let rewritten: Vec<_> = entries
            .iter()
            .map(|e| {
                let mut record = e.record.clone();
                if e.seq == 14 {
                    record.outcome = Outcome::Failure;
                }
                head.append(e.time_ms, record)
            })
            .collect();
        let failure = verify(&rewritten, checkpoints, head.size()).failure.unwrap();
        assert_eq!(failure.kind, FailureKind::CheckpointMismatch);
        assert_eq!(failure.seq, 11);
    }

    #[test]
    fn forged_checkpoint_signature_is_named() {
        let (entries, mut checkpoints, head) = build(25, 10);
        checkpoints[1].signature[0] ^= 1;
        let failure = verify(&entries, checkpoints, head.size()).failure.unwrap();
        assert_eq!((failure.seq, failure.kind), (20, FailureKind::BadSignature));
    }
}
