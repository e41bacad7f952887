//! The backend-agnostic conformance suite. Every adapter's integration tests call [`run_all`] with a
//! fresh, empty store and a [`Tamper`] that can run raw SQL on it, so SQLite and PostgreSQL are held
//! to the same contract. Failures panic with a message naming the case.

// This module is test support: panicking on an unexpected result is how it reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use ed25519_dalek::SigningKey;
use ward_domain::access::{Role, SiteScope};
use ward_domain::audit::{AuditRecord, Checkpoint, FailureKind, Outcome};
use ward_domain::site::{Site, SiteSlug};

use ward_domain::device::{Criticality, DeviceClass, DeviceState};

use ward_domain::command::{CommandKind, CommandState};
use ward_domain::incident::{IncidentState, Severity, Situation};

use ward_domain::policy::{CheckStatus, RemediationAction};

use crate::{
    ApiTokenRecord, Audit, AuditFilter, CommandEvent, CommandFilter, CommandFinish, CommandRecord,
    ComplianceKey, ComplianceRecord, DeviceRecord, EnrollTokenRecord, FactsUpdate, GroupRecord,
    IncidentRecord, Lwm2mEndpointRecord, NewEnrollment, PolicyVersionRecord, RemediationRecord,
    SessionRecord, Store, StoreError, TokenScope, UserRecord, verify_log,
};

/// Raw access to the database under test, for simulating an attacker with database access.
#[async_trait]
pub trait Tamper: Send + Sync {
    /// Runs one SQL statement that both dialects accept, panicking if it fails.
    async fn exec(&self, sql: &str);
}

const T0: i64 = 1_790_000_000_000;

/// Strings that would break naive SQL building; every string field round-trips them unchanged.
/// (NUL is not here: PostgreSQL text cannot hold it, so the API refuses it in names and the audit
/// log replaces it; see `AuditRecord::new`.)
pub const HOSTILE: &str = "Robert'); DROP TABLE users;-- \" ` \\ % _ ; /* */ \u{7} é 😷 <script>";

fn audit(action: &str, target: &str) -> Audit {
    Audit::one(
        T0,
        AuditRecord::new(
            "user:test",
            action,
            target,
            Outcome::Success,
            serde_json::json!({}),
        ),
    )
}

fn slug(text: &str) -> SiteSlug {
    SiteSlug::parse(text).expect("valid slug")
}

/// A user record for tests.
pub fn sample_user(id: &str, username: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        username: username.into(),
        display_name: HOSTILE.into(),
        role: Role::Operator,
        sites: SiteScope::new(vec![slug("st-marys")]),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        must_change_password: false,
        totp_secret: Some(vec![0, 1, 2, 255]),
        totp_enabled: false,
        totp_last_step: 0,
        recovery_codes: vec!["a".repeat(64), "b".repeat(64)],
        break_glass: false,
        disabled: false,
        created_ms: T0,
    }
}

/// Runs every case. `store` must be empty.
pub async fn run_all(store: &dyn Store, tamper: &dyn Tamper) {
    users(store).await;
    sessions(store).await;
    tokens(store).await;
    sites(store).await;
    enrollment_and_devices(store).await;
    commands(store).await;
    incidents(store).await;
    policies(store).await;
    lwm2m_endpoints(store).await;
    enrollment_batches(store).await;
    audit_listing(store).await;
    audit_fails_closed(store, tamper).await;
    tampering_is_detected(store, tamper).await;
}

async fn users(store: &dyn Store) {
    assert_eq!(store.count_users().await.unwrap(), 0, "store must start empty");
    let mut alice = sample_user("00000000-0000-0000-0000-00000000000a", "alice");
    store
        .create_user(&alice, audit("user.create", "user:alice"))
        .await
        .unwrap();
    let loaded = store.user_by_name("alice").await.unwrap().expect("alice stored");
    assert_eq!(
        loaded, alice,
        "user round-trips every field, hostile text included"
    );
    assert_eq!(store.user_by_id(&alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_name(HOSTILE).await.unwrap(), None);

    let duplicate = sample_user("00000000-0000-0000-0000-00000000000b", "alice");
    let err = store
        .create_user(&duplicate, audit("user.create", "user:alice"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "duplicate username: {err:?}"
    );

    alice.role = Role::Auditor;
    alice.sites = SiteScope::all();
    alice.totp_secret = None;
    alice.recovery_codes.clear();
    alice.disabled = true;
    store
        .update_user(&alice, audit("user.update", "user:alice"))
        .await
        .unwrap();
    assert_eq!(store.user_by_name("alice").await.unwrap(), Some(alice.clone()));

    let ghost = sample_user("00000000-0000-0000-0000-00000000000c", "ghost");
    let err = store
        .update_user(&ghost, audit("user.update", "user:ghost"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "update of a missing user: {err:?}"
    );

    let bob = sample_user("00000000-0000-0000-0000-00000000000d", "bob");
    store
        .create_user(&bob, audit("user.create", "user:bob"))
        .await
        .unwrap();
    let names: Vec<_> = store
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(store.count_users().await.unwrap(), 2);
}

async fn sessions(store: &dyn Store) {
    let bob = store.user_by_name("bob").await.unwrap().unwrap();
    let session = SessionRecord {
        token_hash: "f".repeat(64),
        user_id: bob.id.clone(),
        created_ms: T0,
        last_seen_ms: T0,
        expires_ms: T0 + 1000,
        source: Some(HOSTILE.into()),
    };
    store
        .create_session(&session, audit("auth.login", "user:bob"))
        .await
        .unwrap();
    assert_eq!(
        store.session(&session.token_hash).await.unwrap(),
        Some(session.clone())
    );
    store.touch_session(&session.token_hash, T0 + 500).await.unwrap();
    let touched = store.session(&session.token_hash).await.unwrap().unwrap();
    assert_eq!(touched.last_seen_ms, T0 + 500);
    store
        .delete_session(&session.token_hash, audit("auth.logout", "user:bob"))
        .await
        .unwrap();
    assert_eq!(store.session(&session.token_hash).await.unwrap(), None);
    store
        .delete_session(&session.token_hash, audit("auth.logout", "user:bob"))
        .await
        .unwrap();

    // Disabling a user ends their sessions.
    store
        .create_session(&session, audit("auth.login", "user:bob"))
        .await
        .unwrap();
    let mut disabled = bob.clone();
    disabled.disabled = true;
    store
        .update_user(&disabled, audit("user.disable", "user:bob"))
        .await
        .unwrap();
    assert_eq!(
        store.session(&session.token_hash).await.unwrap(),
        None,
        "disable ends sessions"
    );
    store
        .update_user(&bob, audit("user.enable", "user:bob"))
        .await
        .unwrap();
}

async fn tokens(store: &dyn Store) {
    let bob = store.user_by_name("bob").await.unwrap().unwrap();
    let mut token = ApiTokenRecord {
        id: "00000000-0000-0000-0000-0000000000f1".into(),
        user_id: bob.id.clone(),
        name: HOSTILE.into(),
        secret_hash: "e".repeat(64),
        scope: TokenScope::Read,
        created_ms: T0,
        expires_ms: T0 + 10_000,
        revoked_ms: None,
        last_used_ms: None,
    };
    store
        .create_token(&token, audit("token.create", "token:f1"))
        .await
        .unwrap();
    assert_eq!(store.token(&token.id).await.unwrap(), Some(token.clone()));
    let err = store
        .create_token(&token, audit("token.create", "token:f1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "duplicate token id: {err:?}"
    );

    let mut second = token.clone();
    second.id = "00000000-0000-0000-0000-0000000000f2".into();
    second.created_ms = T0 + 1;
    second.scope = TokenScope::Write;
    store
        .create_token(&second, audit("token.create", "token:f2"))
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list_tokens(Some(&bob.id))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, [second.id.clone(), token.id.clone()], "newest first");
    assert!(store.list_tokens(Some("nobody")).await.unwrap().is_empty());
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 2);

    store.touch_token(&token.id, T0 + 5).await.unwrap();
    store
        .revoke_token(
            &token.id,
            Audit::one(T0 + 7, audit("token.revoke", "t").records[0].clone()),
        )
        .await
        .unwrap();
    store
        .revoke_token(
            &token.id,
            Audit::one(T0 + 9, audit("token.revoke", "t").records[0].clone()),
        )
        .await
        .unwrap();
    token.last_used_ms = Some(T0 + 5);
    token.revoked_ms = Some(T0 + 7);
    assert_eq!(
        store.token(&token.id).await.unwrap(),
        Some(token),
        "first revocation time is kept"
    );
    let err = store
        .revoke_token("missing", audit("token.revoke", "t"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "revoke of a missing token: {err:?}"
    );
}

async fn sites(store: &dyn Store) {
    let hospital = Site {
        slug: slug("st-marys"),
        name: HOSTILE.into(),
        created_ms: T0,
    };
    let ward = Site {
        slug: slug("st-marys/icu"),
        name: "Intensive care".into(),
        created_ms: T0,
    };
    let orphan = Site {
        slug: slug("nowhere/icu"),
        name: "Orphan".into(),
        created_ms: T0,
    };
    store
        .create_site(&hospital, audit("site.create", "site:st-marys"))
        .await
        .unwrap();
    store
        .create_site(&ward, audit("site.create", "site:st-marys/icu"))
        .await
        .unwrap();
    let err = store
        .create_site(&ward, audit("site.create", "site:st-marys/icu"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "duplicate site: {err:?}");
    let err = store
        .create_site(&orphan, audit("site.create", "site:nowhere/icu"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "ward without hospital: {err:?}"
    );
    assert_eq!(store.site(&hospital.slug).await.unwrap(), Some(hospital.clone()));

    let renamed = Site {
        name: "ICU".into(),
        ..ward.clone()
    };
    store
        .update_site(&renamed, audit("site.update", "site:st-marys/icu"))
        .await
        .unwrap();
    assert_eq!(store.site(&ward.slug).await.unwrap(), Some(renamed));
    let err = store
        .update_site(&orphan, audit("site.update", "site:nowhere/icu"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "rename of a missing site: {err:?}"
    );

    let err = store
        .delete_site(&hospital.slug, audit("site.delete", "site:st-marys"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "hospital with wards: {err:?}"
    );
    let slugs: Vec<_> = store
        .list_sites()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.slug.to_string())
        .collect();
    assert_eq!(slugs, ["st-marys", "st-marys/icu"]);
    store
        .delete_site(&ward.slug, audit("site.delete", "site:st-marys/icu"))
        .await
        .unwrap();
    let err = store
        .delete_site(&ward.slug, audit("site.delete", "site:st-marys/icu"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "delete twice: {err:?}");
    store
        .create_site(&ward, audit("site.create", "site:st-marys/icu"))
        .await
        .unwrap();
}

/// An enrollment token for tests.
pub fn sample_enroll_token(id: &str, site: &str, max_uses: u32) -> EnrollTokenRecord {
    EnrollTokenRecord {
        id: id.into(),
        secret_hash: "c".repeat(64),
        site: slug(site),
        class: DeviceClass::Medical,
        criticality: Criticality::LifeSustaining,
        phi: true,
        created_by: HOSTILE.into(),
        created_ms: T0,
        expires_ms: T0 + 1000,
        max_uses,
        uses: 0,
        revoked_ms: None,
        allow_full_wipe: false,
    }
}

/// A device record for tests.
pub fn sample_device(id: &str, token: &EnrollTokenRecord) -> DeviceRecord {
    DeviceRecord {
        id: id.into(),
        site: token.site.clone(),
        class: token.class,
        criticality: token.criticality,
        phi: token.phi,
        hostname: HOSTILE.into(),
        state: DeviceState::Active,
        cert_fingerprint: "d".repeat(64),
        cert_not_after_ms: T0 + 90 * 86_400_000,
        enroll_token_id: token.id.clone(),
        enrolled_ms: T0,
        last_seen_ms: None,
        facts: "{}".into(),
        facts_updated_ms: None,
        allow_full_wipe: token.allow_full_wipe,
    }
}

async fn enrollment_and_devices(store: &dyn Store) {
    let token = sample_enroll_token("e1", "st-marys/icu", 2);
    store
        .create_enroll_token(&token, audit("enroll_token.create", "enroll_token:e1"))
        .await
        .unwrap();
    assert_eq!(store.enroll_token("e1").await.unwrap(), Some(token.clone()));
    let err = store
        .create_enroll_token(&token, audit("x", "y"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "duplicate token: {err:?}");
    let nowhere = sample_enroll_token("e2", "nowhere", 1);
    let err = store
        .create_enroll_token(&nowhere, audit("x", "y"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "token for a missing site: {err:?}"
    );

    // Two uses, then the token is spent; the device that lost the race is not stored.
    let first = sample_device("d1", &token);
    store
        .enroll_device("e1", &first, audit("device.enroll", "device:d1"))
        .await
        .unwrap();
    store
        .enroll_device(
            "e1",
            &sample_device("d2", &token),
            audit("device.enroll", "device:d2"),
        )
        .await
        .unwrap();
    let err = store
        .enroll_device(
            "e1",
            &sample_device("d3", &token),
            audit("device.enroll", "device:d3"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "used-up token: {err:?}");
    assert_eq!(store.device("d3").await.unwrap(), None);
    assert_eq!(store.enroll_token("e1").await.unwrap().unwrap().uses, 2);

    let expired = sample_enroll_token("e3", "st-marys", 5);
    store
        .create_enroll_token(&expired, audit("x", "y"))
        .await
        .unwrap();
    let late = Audit::one(T0 + 1000, audit("device.enroll", "device:d4").records[0].clone());
    let err = store
        .enroll_device("e3", &sample_device("d4", &expired), late)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "expired token: {err:?}");
    store
        .revoke_enroll_token("e3", audit("enroll_token.revoke", "e3"))
        .await
        .unwrap();
    let err = store
        .enroll_device("e3", &sample_device("d5", &expired), audit("x", "y"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "revoked token: {err:?}");
    assert_eq!(store.list_enroll_tokens().await.unwrap().len(), 2);

    assert_eq!(
        store.device("d1").await.unwrap(),
        Some(first.clone()),
        "device round-trips hostile text"
    );
    store
        .record_facts("d1", "{\"os\":{\"id\":\"debian\"}}", "{\"changed\":{}}", T0 + 5)
        .await
        .unwrap();
    store
        .record_facts("d1", "{\"os\":{\"id\":\"ubuntu\"}}", HOSTILE, T0 + 6)
        .await
        .unwrap();
    let device = store.device("d1").await.unwrap().unwrap();
    assert_eq!(
        (device.facts_updated_ms, device.last_seen_ms),
        (Some(T0 + 6), Some(T0 + 6))
    );
    assert!(device.facts.contains("ubuntu"));
    let history = store.facts_history("d1", 10).await.unwrap();
    assert_eq!(
        history,
        [
            (T0 + 6, HOSTILE.to_owned()),
            (T0 + 5, "{\"changed\":{}}".to_owned())
        ]
    );
    let batch = [
        FactsUpdate {
            device_id: "d1".into(),
            facts: "{\"n\":1}".into(),
            change: "{\"b\":1}".into(),
            time_ms: T0 + 7,
        },
        FactsUpdate {
            device_id: "missing".into(),
            facts: "{}".into(),
            change: "{}".into(),
            time_ms: T0 + 7,
        },
        FactsUpdate {
            device_id: "d1".into(),
            facts: "{\"n\":2}".into(),
            change: "{\"b\":2}".into(),
            time_ms: T0 + 8,
        },
    ];
    store.record_facts_batch(&batch).await.unwrap();
    let device = store.device("d1").await.unwrap().unwrap();
    assert_eq!(
        (device.facts.as_str(), device.facts_updated_ms),
        ("{\"n\":2}", Some(T0 + 8)),
        "last update wins"
    );
    assert_eq!(
        store.facts_history("d1", 10).await.unwrap().len(),
        4,
        "every update is in the history"
    );
    store.record_facts_batch(&[]).await.unwrap();
    let err = store.record_facts("missing", "{}", "{}", T0).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound(_)),
        "facts for a missing device: {err:?}"
    );
    store.record_seen("d1", T0 + 9).await.unwrap();
    assert_eq!(
        store.device("d1").await.unwrap().unwrap().last_seen_ms,
        Some(T0 + 9)
    );
    // Heartbeats in a batch: newer times win, an older one leaves the stored time alone, a
    // missing or hostile id changes nothing, an empty batch is fine.
    store.record_seen_all(&[]).await.unwrap();
    store
        .record_seen_all(&[
            ("d1".into(), T0 + 7),
            ("d2".into(), T0 + 11),
            ("missing".into(), T0 + 12),
            (HOSTILE.into(), T0 + 13),
        ])
        .await
        .unwrap();
    let seen = |id: &'static str| async move { store.device(id).await.unwrap().unwrap().last_seen_ms };
    assert_eq!(
        seen("d1").await,
        Some(T0 + 9),
        "an older heartbeat does not move presence back"
    );
    assert_eq!(seen("d2").await, Some(T0 + 11));
    // More than one statement's worth, the same device twice in it: its newest time wins.
    let mut many: Vec<(String, i64)> = (0..250).map(|i| (format!("ghost-{i}"), T0 + 20)).collect();
    many.extend([("d1".to_owned(), T0 + 30), ("d1".to_owned(), T0 + 29)]);
    store.record_seen_all(&many).await.unwrap();
    assert_eq!(seen("d1").await, Some(T0 + 30));

    store
        .set_device_state("d2", DeviceState::Retired, audit("device.retire", "device:d2"))
        .await
        .unwrap();
    let active: Vec<_> = store
        .list_devices(false)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(active, ["d1"], "retired devices leave active views");
    assert_eq!(
        store.list_devices(true).await.unwrap().len(),
        2,
        "but keep their records"
    );
    let err = store
        .set_device_state("missing", DeviceState::Revoked, audit("x", "y"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    store
        .renew_certificate("d1", &"f".repeat(64), T0 + 1, audit("device.renew", "device:d1"))
        .await
        .unwrap();
    assert_eq!(
        store.device("d1").await.unwrap().unwrap().cert_fingerprint,
        "f".repeat(64)
    );
}

/// A queued command for tests.
pub fn sample_command(id: &str, device_id: &str, kind: CommandKind, not_after_ms: i64) -> CommandRecord {
    CommandRecord {
        seq: 0,
        id: id.into(),
        device_id: device_id.into(),
        kind,
        params: format!("{{\"text\":{}}}", serde_json::Value::from(HOSTILE)),
        not_after_ms,
        signature: "ab".repeat(64),
        state: CommandState::Queued,
        batch_id: Some("batch-1".into()),
        created_by: "user:test".into(),
        created_ms: T0,
        sent_ms: None,
        acked_ms: None,
        finished_ms: None,
        detail: String::new(),
        proof: None,
        proof_signature: None,
        output: None,
    }
}

async fn commands(store: &dyn Store) {
    let token = sample_enroll_token("cmd-token", "st-marys/icu", 5);
    store
        .create_enroll_token(&token, audit("enroll_token.create", "enroll_token:cmd-token"))
        .await
        .unwrap();
    for id in ["cmd-dev", "cmd-other"] {
        store
            .enroll_device(
                "cmd-token",
                &sample_device(id, &token),
                audit("device.enroll", id),
            )
            .await
            .unwrap();
    }
    let size = store.head().await.unwrap().size();
    let queued = [
        sample_command("c1", "cmd-dev", CommandKind::Lock, T0 + 1000),
        sample_command("c2", "cmd-dev", CommandKind::Message, T0 + 1000),
        sample_command("c3", "cmd-dev", CommandKind::Quarantine, T0 + 10),
    ];
    store
        .create_commands(&queued, audit("command.create", "device:cmd-dev"))
        .await
        .unwrap();
    assert_eq!(
        store.head().await.unwrap().size(),
        size + 1,
        "creation is audited"
    );
    let missing = sample_command("c9", "no-such-device", CommandKind::Lock, T0 + 1000);
    let err = store
        .create_commands(&[missing], audit("command.create", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store
        .create_commands(&queued[..1], audit("command.create", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "duplicate id: {err:?}");
    assert_eq!(
        store.head().await.unwrap().size(),
        size + 1,
        "failed creations leave no entry"
    );

    let stored = store.command("c2").await.unwrap().unwrap();
    assert_eq!(stored.params, queued[1].params, "hostile parameters round-trip");
    assert_eq!(stored.state, CommandState::Queued);
    let pending = store.pending_commands("cmd-dev").await.unwrap();
    let order: Vec<&str> = pending.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(order, ["c1", "c2", "c3"], "delivered in the order queued");
    assert!(store.pending_commands("cmd-other").await.unwrap().is_empty());

    store
        .mark_sent(&["c1".into(), "c2".into()], T0 + 1)
        .await
        .unwrap();
    assert_eq!(store.command("c1").await.unwrap().unwrap().sent_ms, Some(T0 + 1));
    assert!(
        !store.mark_acknowledged("c1", "cmd-other", T0 + 2).await.unwrap(),
        "other device"
    );
    assert!(store.mark_acknowledged("c1", "cmd-dev", T0 + 2).await.unwrap());
    assert!(
        !store.mark_acknowledged("c1", "cmd-dev", T0 + 3).await.unwrap(),
        "only once"
    );
    let done = CommandFinish {
        state: CommandState::Succeeded,
        detail: HOSTILE.into(),
        proof: Some("{}".into()),
        proof_signature: Some("00".into()),
        output: Some("x".repeat(10_000)),
        device_state: Some(DeviceState::Locked),
    };
    assert!(
        !store
            .finish_command("c1", "cmd-other", &done, audit("command.result", "c1"))
            .await
            .unwrap()
    );
    let size = store.head().await.unwrap().size();
    assert!(
        store
            .finish_command("c1", "cmd-dev", &done, audit("command.result", "c1"))
            .await
            .unwrap()
    );
    assert_eq!(
        store.head().await.unwrap().size(),
        size + 1,
        "the result is audited"
    );
    let c1 = store.command("c1").await.unwrap().unwrap();
    assert_eq!(
        (c1.state, c1.finished_ms, c1.acked_ms),
        (CommandState::Succeeded, Some(T0), Some(T0 + 2))
    );
    assert_eq!(c1.output.as_deref().map(str::len), Some(10_000));
    assert_eq!(c1.detail, HOSTILE);
    assert_eq!(
        store.device("cmd-dev").await.unwrap().unwrap().state,
        DeviceState::Locked
    );
    let failed = CommandFinish {
        state: CommandState::Failed,
        device_state: None,
        ..done.clone()
    };
    assert!(
        !store
            .finish_command("c1", "cmd-dev", &failed, audit("command.result", "c1"))
            .await
            .unwrap(),
        "a finished command never changes again"
    );
    assert_eq!(
        store.head().await.unwrap().size(),
        size + 1,
        "and nothing is recorded"
    );
    let bad = CommandFinish {
        state: CommandState::Cancelled,
        ..done.clone()
    };
    assert!(
        store
            .finish_command("c2", "cmd-dev", &bad, audit("x", "y"))
            .await
            .is_err()
    );

    let listed = store
        .list_commands(&CommandFilter {
            device_id: Some("cmd-dev".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0].id, "c3", "newest first");
    assert!(
        listed.iter().all(|c| c.output.is_none()),
        "listings leave output out"
    );
    let succeeded = store
        .list_commands(&CommandFilter {
            state: Some(CommandState::Succeeded),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(succeeded.len(), 1);
    assert_eq!(
        store
            .list_commands(&CommandFilter {
                batch_id: Some("batch-1".into()),
                limit: Some(2),
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        2
    );

    // c2 was sent: too late to cancel. c3 is queued.
    let err = store
        .cancel_command("c2", audit("command.cancel", "c2"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = store
        .cancel_command("nope", audit("command.cancel", "nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let size = store.head().await.unwrap().size();
    let cancelled = store
        .cancel_command("c3", audit("command.cancel", "c3"))
        .await
        .unwrap();
    assert_eq!(cancelled.state, CommandState::Cancelled);
    assert_eq!(store.head().await.unwrap().size(), size + 1);

    // Expiry: c4 (queued) and c2 (sent) pass their not-after; c5 is acknowledged, so it is the
    // device's now and is left to finish.
    store
        .create_commands(
            &[
                sample_command("c4", "cmd-dev", CommandKind::Reboot, T0 + 50),
                sample_command("c5", "cmd-dev", CommandKind::Unlock, T0 + 50),
            ],
            audit("command.create", "device:cmd-dev"),
        )
        .await
        .unwrap();
    assert!(store.mark_acknowledged("c5", "cmd-dev", T0 + 3).await.unwrap());
    let record = |c: &CommandRecord| {
        AuditRecord::new(
            "system",
            "command.expire",
            format!("command:{}", c.id),
            Outcome::Failure,
            serde_json::json!({}),
        )
    };
    assert!(
        store.expire_commands(T0 + 50, &record).await.unwrap().is_empty(),
        "not yet"
    );
    let size = store.head().await.unwrap().size();
    let expired = store.expire_commands(T0 + 2000, &record).await.unwrap();
    let ids: Vec<&str> = expired.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c2", "c4"]);
    assert_eq!(
        store.head().await.unwrap().size(),
        size + 2,
        "one entry per expired command"
    );
    assert_eq!(
        store.command("c4").await.unwrap().unwrap().state,
        CommandState::Expired
    );
    let pending: Vec<String> = store
        .pending_commands("cmd-dev")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        pending,
        ["c5"],
        "an acknowledged command is redelivered until it finishes"
    );

    // Hundreds at once (an incident's fan-out): every command and audit entry lands, in order.
    let many: Vec<CommandRecord> = (0..250)
        .map(|i| sample_command(&format!("bulk-{i:03}"), "cmd-other", CommandKind::Lock, T0 + 1000))
        .collect();
    let size = store.head().await.unwrap().size();
    let records = (0..250)
        .map(|i| {
            AuditRecord::new(
                "user:test",
                "command.create",
                format!("command:bulk-{i:03}"),
                Outcome::Success,
                serde_json::json!({}),
            )
        })
        .collect();
    store
        .create_commands(&many, Audit { time_ms: T0, records })
        .await
        .unwrap();
    assert_eq!(store.head().await.unwrap().size(), size + 250);
    let pending: Vec<String> = store
        .pending_commands("cmd-other")
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let expected: Vec<String> = (0..250).map(|i| format!("bulk-{i:03}")).collect();
    assert_eq!(pending, expected);
    let entries = store.entries(size, 1000, &AuditFilter::default()).await.unwrap();
    assert_eq!(entries.len(), 250);
    assert_eq!(entries[249].record.target, "command:bulk-249");

    // Reported events in one transaction: late, repeated and misaddressed ones change nothing.
    let size = store.head().await.unwrap().size();
    let done = CommandFinish {
        state: CommandState::Succeeded,
        detail: "locked".into(),
        proof: None,
        proof_signature: None,
        output: None,
        device_state: None,
    };
    let finished = || CommandEvent::Finished {
        id: "bulk-000".into(),
        device_id: "cmd-other".into(),
        kind: CommandKind::Lock,
        finish: done.clone(),
        audit: audit("command.result", "command:bulk-000"),
    };
    store
        .record_command_events(&[
            CommandEvent::Sent {
                id: "bulk-000".into(),
                time_ms: T0 + 1,
            },
            CommandEvent::Acknowledged {
                id: "bulk-000".into(),
                device_id: "cmd-other".into(),
                time_ms: T0 + 2,
            },
            finished(),
            finished(),
            CommandEvent::Acknowledged {
                id: "bulk-001".into(),
                device_id: "cmd-dev".into(),
                time_ms: T0 + 3,
            },
            CommandEvent::Sent {
                id: "no-such-command".into(),
                time_ms: T0,
            },
        ])
        .await
        .unwrap();
    let c = store.command("bulk-000").await.unwrap().unwrap();
    assert_eq!(
        (c.state, c.sent_ms, c.acked_ms),
        (CommandState::Succeeded, Some(T0 + 1), Some(T0 + 2))
    );
    assert_eq!(
        store.head().await.unwrap().size(),
        size + 1,
        "one result, one entry"
    );
    assert_eq!(
        store.command("bulk-001").await.unwrap().unwrap().state,
        CommandState::Queued
    );
    assert_eq!(
        store.device("cmd-other").await.unwrap().unwrap().state,
        DeviceState::Locked
    );
    store.record_command_events(&[]).await.unwrap();
    // Checkpointing the log (SQLite) loses and changes nothing.
    store.checkpoint_log().await.unwrap();
    assert_eq!(
        store.command("bulk-000").await.unwrap().unwrap().state,
        CommandState::Succeeded
    );
    // A fan-out's worth in one batch (more than one statement's rows): acknowledgements listed
    // before the sends they follow still keep each command's own sent time.
    let ids: Vec<String> = (2..250).map(|i| format!("bulk-{i:03}")).collect();
    let mut events: Vec<CommandEvent> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(i, id)| CommandEvent::Acknowledged {
            id: id.clone(),
            device_id: "cmd-other".into(),
            time_ms: T0 + 1000 + i as i64,
        })
        .collect();
    events.extend(ids.iter().enumerate().map(|(i, id)| CommandEvent::Sent {
        id: id.clone(),
        time_ms: T0 + 10 + i as i64,
    }));
    store.record_command_events(&events).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let c = store.command(id).await.unwrap().unwrap();
        let expected = if i % 2 == 0 {
            (
                CommandState::Acknowledged,
                Some(T0 + 10 + i as i64),
                Some(T0 + 1000 + i as i64),
            )
        } else {
            (CommandState::Sent, Some(T0 + 10 + i as i64), None)
        };
        assert_eq!((c.state, c.sent_ms, c.acked_ms), expected, "{id}");
    }
    // Their results in one batch: every one lands with its own entry, in order; a device's state
    // follows its succeeded actions in arrival order (quarantine then release ends active; the
    // other order would end quarantined), failures change nothing, repeats and late results
    // record nothing.
    let size = store.head().await.unwrap().size();
    let result = |id: &str, kind: CommandKind, state: CommandState| CommandEvent::Finished {
        id: id.into(),
        device_id: "cmd-other".into(),
        kind,
        finish: CommandFinish {
            state,
            detail: format!("{kind:?} {id}"),
            ..done.clone()
        },
        audit: audit("command.result", &format!("command:{id}")),
    };
    let mut events: Vec<CommandEvent> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let kind = match id.as_str() {
                "bulk-100" => CommandKind::Quarantine,
                "bulk-150" => CommandKind::Release,
                "bulk-151" => CommandKind::Quarantine,
                _ => CommandKind::CollectDiagnostics,
            };
            let state = if id == "bulk-151" || (i % 3 == 1 && id != "bulk-100" && id != "bulk-150") {
                CommandState::Failed
            } else {
                CommandState::Succeeded
            };
            result(id, kind, state)
        })
        .collect();
    events.push(result("bulk-100", CommandKind::Lock, CommandState::Failed));
    // Another device reporting a command of cmd-other's, in the same batch as the real result:
    // the real one lands, the misaddressed one records nothing and steps nothing.
    events.insert(
        0,
        CommandEvent::Finished {
            id: "bulk-002".into(),
            device_id: "cmd-dev".into(),
            kind: CommandKind::WipeFull,
            finish: done.clone(),
            audit: audit("command.result", "command:bulk-002 (misaddressed)"),
        },
    );
    let dev_state = store.device("cmd-dev").await.unwrap().unwrap().state;
    events.push(result(
        "bulk-000",
        CommandKind::Quarantine,
        CommandState::Succeeded,
    ));
    store.record_command_events(&events).await.unwrap();
    assert_eq!(
        store.head().await.unwrap().size(),
        size + ids.len() as u64,
        "one entry per first result; the repeat and the late result add none"
    );
    let entries = store.entries(size, 1000, &AuditFilter::default()).await.unwrap();
    let targets: Vec<String> = entries.iter().map(|e| e.record.target.clone()).collect();
    let expected: Vec<String> = ids.iter().map(|id| format!("command:{id}")).collect();
    assert_eq!(targets, expected);
    for (i, id) in ids.iter().enumerate() {
        let c = store.command(id).await.unwrap().unwrap();
        let failed = id == "bulk-151" || (i % 3 == 1 && id != "bulk-100" && id != "bulk-150");
        let state = if failed {
            CommandState::Failed
        } else {
            CommandState::Succeeded
        };
        assert_eq!(c.state, state, "{id}");
        assert!(c.detail.ends_with(id.as_str()), "{id}: {}", c.detail);
        assert!(
            c.finished_ms.is_some() && c.acked_ms.is_some() && c.sent_ms.is_some(),
            "{id}"
        );
    }
    assert_eq!(
        store.command("bulk-100").await.unwrap().unwrap().state,
        CommandState::Succeeded,
        "the repeat does not overwrite the first result"
    );
    assert_eq!(
        store.device("cmd-other").await.unwrap().unwrap().state,
        DeviceState::Active
    );
    assert_eq!(store.device("cmd-dev").await.unwrap().unwrap().state, dev_state);
    let report = verify_log(store, SigningKey::from_bytes(&[1; 32]).verifying_key())
        .await
        .unwrap();
    assert!(report.failure.is_none(), "{report:?}");
}

/// An incident for tests.
pub fn sample_incident(id: &str) -> IncidentRecord {
    IncidentRecord {
        id: id.into(),
        title: HOSTILE.into(),
        severity: Severity::High,
        description: HOSTILE.into(),
        situation: Situation::Breach,
        discovered_ms: T0 - 10,
        aware_ms: T0 - 5,
        scope: "class = \"workstation\"".into(),
        plan_name: "default".into(),
        plan: "name: default\n".into(),
        state: IncidentState::Declared,
        declared_by: "user:alice".into(),
        declared_by_user: "u-alice".into(),
        approved_by: None,
        approved_ms: None,
        clinician: None,
        contain_ms: None,
        lifted_ms: None,
        closed_ms: None,
        report: None,
        created_ms: T0,
    }
}

async fn incidents(store: &dyn Store) {
    let incident = sample_incident("i1");
    store
        .create_incident(&incident, audit("incident.declare", "incident:i1"))
        .await
        .unwrap();
    assert_eq!(store.incident("i1").await.unwrap(), Some(incident.clone()));
    let err = store
        .create_incident(&incident, audit("incident.declare", "incident:i1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let mut containing = incident.clone();
    containing.state = IncidentState::Containing;
    containing.contain_ms = Some(T0 + 1);
    let command = sample_command("ic1", "cmd-dev", CommandKind::Quarantine, T0 + 1000);
    let size = store.head().await.unwrap().size();
    store
        .update_incident(
            &containing,
            IncidentState::Declared,
            std::slice::from_ref(&command),
            audit("incident.contain", "incident:i1"),
        )
        .await
        .unwrap();
    assert_eq!(store.head().await.unwrap().size(), size + 1);
    assert_eq!(
        store.incident("i1").await.unwrap().unwrap().state,
        IncidentState::Containing
    );
    assert_eq!(
        store.command("ic1").await.unwrap().unwrap().state,
        CommandState::Queued
    );
    // Double contain: the state moved on, nothing is written.
    let again = sample_command("ic2", "cmd-dev", CommandKind::Quarantine, T0 + 1000);
    let err = store
        .update_incident(
            &containing,
            IncidentState::Declared,
            &[again],
            audit("incident.contain", "incident:i1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store.command("ic2").await.unwrap().is_none());
    assert_eq!(store.head().await.unwrap().size(), size + 1);
    // A command for a missing device rolls the whole change back.
    let mut lifted = containing.clone();
    lifted.state = IncidentState::Lifted;
    let orphan = sample_command("ic3", "no-such-device", CommandKind::Release, T0 + 1000);
    let err = store
        .update_incident(
            &lifted,
            IncidentState::Containing,
            &[orphan],
            audit("incident.lift", "incident:i1"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(
        store.incident("i1").await.unwrap().unwrap().state,
        IncidentState::Containing
    );
    let err = store
        .update_incident(
            &sample_incident("nope"),
            IncidentState::Declared,
            &[],
            audit("x", "y"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    store
        .create_incident(&sample_incident("i2"), audit("incident.declare", "incident:i2"))
        .await
        .unwrap();
    assert_eq!(store.list_incidents().await.unwrap().len(), 2);
}

fn policy_version(name: &str, version: i64, removed: bool) -> PolicyVersionRecord {
    PolicyVersionRecord {
        name: name.into(),
        version,
        source: if removed {
            String::new()
        } else {
            format!("# {HOSTILE}\nname: {name}\n")
        },
        spec: format!("{{\"name\":\"{name}\",\"v\":{version}}}"),
        removed,
        created_ms: T0 + version,
        created_by: "user:test".into(),
    }
}

async fn policies(store: &dyn Store) {
    // Versions: applied atomically, all or none.
    let size = store.head().await.unwrap().size();
    store
        .apply_policies(
            &[
                policy_version("encryption", 1, false),
                policy_version("usb", 1, false),
            ],
            audit("policy.apply", "policies"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.head().await.unwrap().size(),
        size + 1,
        "one audit entry per apply"
    );
    let err = store
        .apply_policies(
            &[
                policy_version("firewall", 1, false),
                policy_version("usb", 1, false),
            ],
            audit("policy.apply", "policies"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store.policy_versions(Some("firewall")).await.unwrap(),
        vec![],
        "a failed apply writes nothing"
    );
    store
        .apply_policies(
            &[
                policy_version("encryption", 2, false),
                policy_version("usb", 2, true),
            ],
            audit("policy.apply", "policies"),
        )
        .await
        .unwrap();
    let current = store.current_policies().await.unwrap();
    assert_eq!(
        current,
        vec![policy_version("encryption", 2, false)],
        "removed policies are not current"
    );
    let history = store.policy_versions(Some("usb")).await.unwrap();
    assert_eq!(
        history,
        vec![policy_version("usb", 1, false), policy_version("usb", 2, true)]
    );
    assert_eq!(store.policy_versions(None).await.unwrap().len(), 4);

    // Compliance: upsert, replace, remove.
    let result = |device: &str, check: &str, status: CheckStatus, since: i64| ComplianceRecord {
        device_id: device.into(),
        policy: "encryption".into(),
        check_id: check.into(),
        status,
        since_ms: since,
        evaluated_ms: since + 5,
        policy_version: 2,
    };
    store
        .record_compliance(
            &[
                result("d1", "root", CheckStatus::Fail, T0),
                result("d2", "root", CheckStatus::Pass, T0),
            ],
            &[],
        )
        .await
        .unwrap();
    store
        .record_compliance(
            &[result("d1", "root", CheckStatus::Pass, T0 + 10)],
            &[ComplianceKey {
                device_id: "d2".into(),
                policy: "encryption".into(),
                check_id: "root".into(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        store.compliance(None).await.unwrap(),
        vec![result("d1", "root", CheckStatus::Pass, T0 + 10)]
    );
    assert_eq!(store.compliance(Some("d2")).await.unwrap(), vec![]);
    let many: Vec<ComplianceRecord> = (0..250)
        .map(|i| result(&format!("bulk-{i:03}"), "root", CheckStatus::Unknown, T0))
        .collect();
    store.record_compliance(&many, &[]).await.unwrap();
    assert_eq!(store.compliance(None).await.unwrap().len(), 251);

    // Remediation: once per lapse, with its command and audit entry.
    let remediation = RemediationRecord {
        device_id: "cmd-dev".into(),
        policy: "encryption".into(),
        failing_since_ms: T0,
        action: RemediationAction::Quarantine,
        command_id: Some("rem-1".into()),
        time_ms: T0 + 100,
    };
    let command = sample_command("rem-1", "cmd-dev", CommandKind::Quarantine, T0 + 100_000);
    let size = store.head().await.unwrap().size();
    assert!(
        store
            .record_remediation(
                &remediation,
                std::slice::from_ref(&command),
                audit("policy.remediate", "device:cmd-dev")
            )
            .await
            .unwrap()
    );
    assert_eq!(store.head().await.unwrap().size(), size + 1);
    assert!(store.command("rem-1").await.unwrap().is_some());
    let again = sample_command("rem-2", "cmd-dev", CommandKind::Quarantine, T0 + 100_000);
    assert!(
        !store
            .record_remediation(
                &remediation,
                &[again],
                audit("policy.remediate", "device:cmd-dev")
            )
            .await
            .unwrap(),
        "the same lapse is remediated once"
    );
    assert!(
        store.command("rem-2").await.unwrap().is_none(),
        "nothing written the second time"
    );
    assert_eq!(store.head().await.unwrap().size(), size + 1);
    assert_eq!(store.remediations().await.unwrap(), vec![remediation]);

    // Settings sent.
    let first = sample_command("set-1", "cmd-dev", CommandKind::ApplySettings, T0 + 100_000);
    store
        .record_device_settings(
            &[("cmd-dev".into(), "aaaa".into())],
            &[first],
            audit("policy.settings", "devices"),
        )
        .await
        .unwrap();
    let second = sample_command("set-2", "cmd-dev", CommandKind::ApplySettings, T0 + 100_000);
    store
        .record_device_settings(
            &[("cmd-dev".into(), "bbbb".into())],
            &[second],
            audit("policy.settings", "devices"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.device_settings().await.unwrap(),
        vec![("cmd-dev".to_string(), "bbbb".to_string())]
    );
    let err = store
        .record_device_settings(
            &[("nope".into(), "cccc".into())],
            &[sample_command("set-3", "nope", CommandKind::ApplySettings, T0)],
            audit("policy.settings", "devices"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Groups.
    let group = GroupRecord {
        name: "icu-workstations".into(),
        selector: "site within \"st-marys/icu\"".into(),
        description: HOSTILE.into(),
        created_ms: T0,
        updated_ms: T0,
    };
    store
        .put_group(&group, audit("group.put", "group:icu"))
        .await
        .unwrap();
    let mut changed = group.clone();
    changed.selector = "class = \"workstation\"".into();
    changed.updated_ms = T0 + 1;
    store
        .put_group(&changed, audit("group.put", "group:icu"))
        .await
        .unwrap();
    assert_eq!(store.groups().await.unwrap(), vec![changed]);
    store
        .delete_group("icu-workstations", audit("group.delete", "group:icu"))
        .await
        .unwrap();
    let err = store
        .delete_group("icu-workstations", audit("group.delete", "group:icu"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.groups().await.unwrap(), vec![]);
}

fn lwm2m_device(id: &str, site: &str) -> DeviceRecord {
    DeviceRecord {
        id: id.into(),
        site: slug(site),
        class: DeviceClass::Medical,
        criticality: Criticality::LifeSustaining,
        phi: true,
        hostname: HOSTILE.into(),
        state: DeviceState::Active,
        cert_fingerprint: String::new(),
        cert_not_after_ms: 0,
        enroll_token_id: "lwm2m".into(),
        enrolled_ms: T0,
        last_seen_ms: None,
        facts: "{}".into(),
        facts_updated_ms: None,
        allow_full_wipe: false,
    }
}

async fn lwm2m_endpoints(store: &dyn Store) {
    let size = store.head().await.unwrap().size();
    let pump = lwm2m_device("lw1", "st-marys/icu");
    let endpoint = Lwm2mEndpointRecord {
        endpoint: "urn:dev:pump-1".into(),
        device_id: "lw1".into(),
        psk_identity: HOSTILE.into(),
        psk: "00ff".repeat(8),
        created_ms: T0,
    };
    store
        .create_lwm2m_endpoint(&pump, &endpoint, audit("lwm2m.provision", "device:lw1"))
        .await
        .unwrap();
    assert_eq!(
        store.lwm2m_endpoint("urn:dev:pump-1").await.unwrap(),
        Some(endpoint.clone()),
        "the endpoint round-trips every field"
    );
    assert_eq!(
        store.device("lw1").await.unwrap(),
        Some(pump.clone()),
        "the device is an ordinary device row"
    );
    assert_eq!(store.lwm2m_endpoint("urn:dev:nobody").await.unwrap(), None);

    // A second endpoint with the same name: refused, and neither row nor audit entry is written.
    let again = Lwm2mEndpointRecord {
        device_id: "lw2".into(),
        ..endpoint.clone()
    };
    let err = store
        .create_lwm2m_endpoint(
            &lwm2m_device("lw2", "st-marys/icu"),
            &again,
            audit("lwm2m.provision", "device:lw2"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "duplicate endpoint: {err:?}"
    );
    assert_eq!(store.device("lw2").await.unwrap(), None, "rolled back");
    // The device id taken: refused.
    let other = Lwm2mEndpointRecord {
        endpoint: "urn:dev:pump-2".into(),
        ..endpoint.clone()
    };
    let err = store
        .create_lwm2m_endpoint(&pump, &other, audit("lwm2m.provision", "device:lw1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "duplicate device: {err:?}"
    );
    // A missing site.
    let nowhere = Lwm2mEndpointRecord {
        endpoint: "urn:dev:pump-3".into(),
        device_id: "lw3".into(),
        ..endpoint.clone()
    };
    let err = store
        .create_lwm2m_endpoint(
            &lwm2m_device("lw3", "nowhere"),
            &nowhere,
            audit("lwm2m.provision", "device:lw3"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "missing site: {err:?}");
    // An endpoint naming another device than the one given.
    let mismatched = Lwm2mEndpointRecord {
        endpoint: "urn:dev:pump-4".into(),
        device_id: "someone-else".into(),
        ..endpoint.clone()
    };
    assert!(
        store
            .create_lwm2m_endpoint(
                &lwm2m_device("lw4", "st-marys/icu"),
                &mismatched,
                audit("lwm2m.provision", "device:lw4"),
            )
            .await
            .is_err()
    );
    assert_eq!(store.device("lw4").await.unwrap(), None);
    let second = Lwm2mEndpointRecord {
        endpoint: "urn:dev:monitor-1".into(),
        device_id: "lw5".into(),
        psk: String::new(),
        ..endpoint.clone()
    };
    store
        .create_lwm2m_endpoint(
            &lwm2m_device("lw5", "st-marys"),
            &second,
            audit("lwm2m.provision", "device:lw5"),
        )
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_lwm2m_endpoints()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.endpoint)
        .collect();
    assert_eq!(names, ["urn:dev:monitor-1", "urn:dev:pump-1"], "by name");
    assert_eq!(
        store.head().await.unwrap().size(),
        size + 2,
        "one audit entry per endpoint created, none for refusals"
    );
}

async fn enrollment_batches(store: &dyn Store) {
    let token = sample_enroll_token("batch-token", "st-marys/icu", 2);
    store
        .create_enroll_token(&token, audit("enroll_token.create", "enroll_token:batch-token"))
        .await
        .unwrap();
    let size = store.head().await.unwrap().size();
    let batch: Vec<NewEnrollment> = ["b1", "b2", "b3"]
        .iter()
        .map(|id| NewEnrollment {
            token_id: "batch-token".into(),
            device: sample_device(id, &token),
            audit: audit("device.enroll", &format!("device:{id}")),
        })
        .collect();
    let results = store.enroll_devices(&batch).await.unwrap();
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert!(
        matches!(results[2], Err(StoreError::Conflict(_))),
        "the token had two uses: {results:?}"
    );
    assert!(store.device("b2").await.unwrap().is_some());
    assert!(
        store.device("b3").await.unwrap().is_none(),
        "the refused item wrote nothing"
    );
    assert_eq!(
        store.head().await.unwrap().size(),
        size + 2,
        "one audit entry per enrolled device"
    );
    assert_eq!(store.enroll_token("batch-token").await.unwrap().unwrap().uses, 2);
    assert!(store.enroll_devices(&[]).await.unwrap().is_empty());
}

async fn audit_listing(store: &dyn Store) {
    let head = store.head().await.unwrap();
    let all = store.entries(0, 10_000, &AuditFilter::default()).await.unwrap();
    assert_eq!(
        all.len() as u64,
        head.size(),
        "every successful change wrote one entry"
    );
    assert_eq!(all.last().map(|e| e.hash), Some(head.head_hash));
    assert!(all.iter().zip(1..).all(|(e, n)| e.seq == n), "contiguous from 1");
    assert!(
        all.iter().all(|e| !e.record.action.is_empty()),
        "failed changes (conflicts, not found) wrote nothing"
    );
    let creates = store
        .entries(
            0,
            100,
            &AuditFilter {
                action: Some("site.".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(creates.iter().all(|e| e.record.action.starts_with("site.")) && creates.len() >= 5);
    let page = store.entries(2, 3, &AuditFilter::default()).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);

    let hostile = AuditRecord::new(
        HOSTILE,
        HOSTILE,
        HOSTILE,
        Outcome::Denied,
        serde_json::json!({"q": HOSTILE}),
    )
    .with_source(Some(HOSTILE.into()));
    let written = store
        .append(Audit {
            time_ms: T0,
            records: vec![hostile.clone(), hostile.clone()],
        })
        .await
        .unwrap();
    assert_eq!(written.len(), 2);
    assert_eq!(written[1].seq, written[0].seq + 1);
    let read = store
        .entries(
            0,
            10,
            &AuditFilter {
                actor: Some(HOSTILE.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        read, written,
        "hostile text round-trips and filters by exact actor"
    );
}

async fn audit_fails_closed(store: &dyn Store, tamper: &dyn Tamper) {
    let before = store.head().await.unwrap();
    tamper
        .exec("ALTER TABLE audit_entries RENAME TO audit_entries_offline")
        .await;
    let site = Site {
        slug: slug("general"),
        name: "General".into(),
        created_ms: T0,
    };
    let result = store
        .create_site(&site, audit("site.create", "site:general"))
        .await;
    tamper
        .exec("ALTER TABLE audit_entries_offline RENAME TO audit_entries")
        .await;
    let err = result.expect_err("a change whose audit write fails must fail");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert_eq!(
        store.site(&site.slug).await.unwrap(),
        None,
        "the change was rolled back"
    );
    assert_eq!(store.head().await.unwrap(), before, "the head did not move");
}

async fn tampering_is_detected(store: &dyn Store, tamper: &dyn Tamper) {
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let sign = |head: &ward_domain::audit::AuditHead| Checkpoint::sign(head, T0, &key);
    // Grow the log to B + 20 entries with checkpoints at B and B + 10 (B depends on how many
    // entries the earlier cases wrote).
    let b = (store.head().await.unwrap().size() / 10 + 2) * 10;
    while store.head().await.unwrap().size() < b {
        store.append(audit("test.fill", "x")).await.unwrap();
    }
    let checkpoint = store.checkpoint(&sign).await.unwrap().expect("log grew");
    assert_eq!(checkpoint.tree_size, b);
    assert!(
        store.checkpoint(&sign).await.unwrap().is_none(),
        "no new checkpoint without growth"
    );
    while store.head().await.unwrap().size() < b + 10 {
        store.append(audit("test.fill", "x")).await.unwrap();
    }
    store.checkpoint(&sign).await.unwrap();
    while store.head().await.unwrap().size() < b + 20 {
        store.append(audit("test.fill", "x")).await.unwrap();
    }
    assert_eq!(store.checkpoints().await.unwrap().len(), 2);
    let report = verify_log(store, key.verifying_key()).await.unwrap();
    assert_eq!(report.failure, None, "intact log verifies");
    assert_eq!(report.entries_checked, b + 20);
    assert_eq!(report.checkpoints_checked, 2);

    let expect = |report: ward_domain::audit::VerifyReport, seq: u64, kind: FailureKind, case: &str| {
        let failure = report.failure.unwrap_or_else(|| panic!("{case}: not detected"));
        assert_eq!(
            (failure.seq, failure.kind),
            (seq, kind),
            "{case}: {}",
            failure.detail
        );
    };

    // Edited: change the details of entry 12.
    tamper
        .exec("UPDATE audit_entries SET details = '{\"forged\":true}' WHERE seq = 12")
        .await;
    expect(
        verify_log(store, key.verifying_key()).await.unwrap(),
        12,
        FailureKind::EntryEdited,
        "edited",
    );
    let original = store.raw_entries(11, 1).await.unwrap();
    assert_eq!(original[0].record.details, "{\"forged\":true}");
    tamper
        .exec("UPDATE audit_entries SET details = '{}' WHERE seq = 12")
        .await;
    assert_eq!(
        verify_log(store, key.verifying_key()).await.unwrap().failure,
        None,
        "restored"
    );

    // Reordered: swap entries 7 and 8.
    tamper
        .exec("UPDATE audit_entries SET seq = -7 WHERE seq = 7")
        .await;
    tamper
        .exec("UPDATE audit_entries SET seq = 7 WHERE seq = 8")
        .await;
    tamper
        .exec("UPDATE audit_entries SET seq = 8 WHERE seq = -7")
        .await;
    expect(
        verify_log(store, key.verifying_key()).await.unwrap(),
        7,
        FailureKind::EntryEdited,
        "reordered",
    );
    tamper
        .exec("UPDATE audit_entries SET seq = -7 WHERE seq = 7")
        .await;
    tamper
        .exec("UPDATE audit_entries SET seq = 7 WHERE seq = 8")
        .await;
    tamper
        .exec("UPDATE audit_entries SET seq = 8 WHERE seq = -7")
        .await;
    assert_eq!(
        verify_log(store, key.verifying_key()).await.unwrap().failure,
        None,
        "restored"
    );

    // Truncated: drop the last five entries (the head still says 40).
    tamper.exec("DELETE FROM audit_entries WHERE seq > 35").await;
    expect(
        verify_log(store, key.verifying_key()).await.unwrap(),
        36,
        FailureKind::Truncated,
        "truncated",
    );

    // Truncated below a checkpoint, with the head rolled back too: the signed checkpoint at 30 catches it.
    tamper.exec("DELETE FROM audit_entries WHERE seq > 25").await;
    tamper.exec("DELETE FROM audit_head").await;
    expect(
        verify_log(store, key.verifying_key()).await.unwrap(),
        26,
        FailureKind::Truncated,
        "truncated below a checkpoint",
    );

    // Deleted: entry 5 removed from the middle.
    tamper.exec("DELETE FROM audit_entries WHERE seq = 5").await;
    expect(
        verify_log(store, key.verifying_key()).await.unwrap(),
        5,
        FailureKind::EntryMissing,
        "deleted",
    );
}
