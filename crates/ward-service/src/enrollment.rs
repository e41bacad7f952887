//! How a device gets its identity: enrollment tokens (created, listed, revoked by admins) and a
//! device's enrollment with one (its CSR signed by Ward's CA, every use audited).

use serde_json::json;
use ward_domain::access::Permission;
use ward_domain::audit::{AuditRecord, Outcome};
use ward_domain::device::{Criticality, DeviceClass, DeviceState, parse_duration_ms};
use ward_domain::site::SiteSlug;
use ward_proto::{
    CreateEnrollTokenRequest, CreatedEnrollToken, ENROLL_TOKEN_PREFIX, EnrollRequest, EnrollResponse,
    EnrollTokenView, ErrorCode,
};
use ward_store::{Audit, DeviceRecord, EnrollTokenRecord, StoreError};

use ward_core::auth::{random_secret, sha256_hex};
use ward_core::caller::Caller;
use ward_core::error::{ServiceError, ServiceResult};
use ward_core::state::AppState;
use ward_core::views::rfc3339;

/// Longest hostname kept; longer ones are cut (device-reported data is bounded).
const MAX_HOSTNAME: usize = 253;

fn token_view(token: &EnrollTokenRecord) -> EnrollTokenView {
    EnrollTokenView {
        id: token.id.clone(),
        site: token.site.to_string(),
        class: token.class.to_string(),
        criticality: token.criticality.to_string(),
        phi: token.phi,
        created_by: token.created_by.clone(),
        created_at: rfc3339(token.created_ms),
        expires_at: rfc3339(token.expires_ms),
        max_uses: token.max_uses,
        uses: token.uses,
        revoked_at: token.revoked_ms.map(rfc3339),
    }
}

/// Create an enrollment token for one site and device class; the secret is shown once.
pub async fn create_token(
    state: &AppState,
    caller: &Caller,
    request: CreateEnrollTokenRequest,
) -> ServiceResult<CreatedEnrollToken> {
    let site = SiteSlug::parse(&request.site)
        .map_err(|err| ServiceError::invalid(format!("site: {}", err.reason)))?;
    let class: DeviceClass = request.class.parse()?;
    let criticality: Criticality = request.criticality.as_deref().unwrap_or("normal").parse()?;
    let expires_ms = parse_duration_ms(request.expires.as_deref().unwrap_or("24h"))?;
    let max_uses = request.uses.unwrap_or(1);
    if !(1..=100_000).contains(&max_uses) {
        return Err(ServiceError::invalid("uses: must be between 1 and 100000"));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let target = format!("enroll_token:{id}");
    state
        .authorize(
            caller,
            Permission::ManageEnrollment,
            "enroll_token.create",
            &target,
        )
        .await?;
    state
        .authorize_site(caller, &site, "enroll_token.create", &target)
        .await?;
    let secret = random_secret(state.entropy.as_ref(), 32);
    let now = state.now_ms();
    let token = EnrollTokenRecord {
        id: id.clone(),
        secret_hash: sha256_hex(secret.as_bytes()),
        site,
        class,
        criticality,
        phi: request.phi,
        created_by: caller.actor(),
        created_ms: now,
        expires_ms: now + expires_ms,
        max_uses,
        uses: 0,
        revoked_ms: None,
        allow_full_wipe: request.allow_full_wipe,
    };
    let record = caller.record(
        "enroll_token.create",
        &target,
        Outcome::Success,
        json!({ "site": token.site, "class": class, "criticality": criticality, "phi": token.phi,
                "expires_ms": expires_ms, "uses": max_uses, "allow_full_wipe": token.allow_full_wipe }),
    );
    state
        .store
        .create_enroll_token(&token, state.audit(record))
        .await
        .map_err(|err| match err {
            StoreError::NotFound(what) => ServiceError::invalid(format!("site: {what} does not exist")),
            other => other.into(),
        })?;
    Ok(CreatedEnrollToken {
        token: token_view(&token),
        secret: format!("{ENROLL_TOKEN_PREFIX}{id}_{secret}"),
    })
}

/// List enrollment tokens for the sites this account covers.
pub async fn list_tokens(state: &AppState, caller: &Caller) -> ServiceResult<Vec<EnrollTokenView>> {
    state
        .authorize(
            caller,
            Permission::ManageEnrollment,
            "enroll_token.list",
            "enroll_tokens",
        )
        .await?;
    let tokens = state.store.list_enroll_tokens().await?;
    Ok(tokens
        .iter()
        .filter(|t| caller.user.sites.covers(&t.site))
        .map(token_view)
        .collect())
}

/// Revoke an enrollment token; devices already enrolled keep their identity.
pub async fn revoke_token(state: &AppState, caller: &Caller, id: String) -> ServiceResult<()> {
    let target = format!("enroll_token:{id}");
    state
        .authorize(
            caller,
            Permission::ManageEnrollment,
            "enroll_token.revoke",
            &target,
        )
        .await?;
    let token = state
        .store
        .enroll_token(&id)
        .await?
        .ok_or_else(|| ServiceError::not_found(format!("enrollment token {id:?}")))?;
    state
        .authorize_site(caller, &token.site, "enroll_token.revoke", &target)
        .await?;
    let record = caller.record(
        "enroll_token.revoke",
        &target,
        Outcome::Success,
        json!({ "site": token.site }),
    );
    state.store.revoke_enroll_token(&id, state.audit(record)).await?;
    Ok(())
}

/// Keeps printable characters only and bounds the length: hostnames come from the device.
pub fn sanitise_hostname(hostname: &str) -> String {
    let mut clean: String = hostname.chars().filter(|c| !c.is_control()).collect();
    if clean.len() > MAX_HOSTNAME {
        let mut cut = MAX_HOSTNAME;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
    }
    clean.trim().to_owned()
}

/// Splits `wardenroll_<32 hex id>_<secret>`.
fn parse_enroll_token(text: &str) -> Option<(&str, &str)> {
    let rest = text.trim().strip_prefix(ENROLL_TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty() && secret.len() <= 128)
        .then_some((id, secret))
}

/// Enrolls a device: checks the enrollment token (every use audited, refusals too), signs the
/// device's CSR with Ward's CA and stores the device through the enrollment writer.
pub async fn enroll(
    state: &AppState,
    request: EnrollRequest,
    source: Option<String>,
) -> ServiceResult<EnrollResponse> {
    let now = state.now_ms();
    let (token_id, secret) = parse_enroll_token(&request.token).unwrap_or(("?", ""));
    let refuse = |reason: &str| {
        AuditRecord::new(
            format!("enroll_token:{token_id}"),
            "device.enroll",
            "device:?",
            Outcome::Failure,
            json!({ "reason": reason, "hostname": sanitise_hostname(&request.hostname) }),
        )
        .with_source(source.clone())
    };
    let token = match state.store.enroll_token(token_id).await? {
        Some(token) if token.secret_hash == sha256_hex(secret.as_bytes()) => token,
        _ => {
            state.store.append(state.audit(refuse("unknown token"))).await?;
            return Err(ServiceError::new(
                ErrorCode::TokenInvalid,
                "the enrollment token is not valid",
            ));
        }
    };
    if let Err(refusal) = ward_domain::device::check_enroll_token(
        token.revoked_ms.is_some(),
        token.expires_ms,
        token.uses,
        token.max_uses,
        now,
    ) {
        state.store.append(state.audit(refuse(refusal.as_str()))).await?;
        return Err(ServiceError::new(
            ErrorCode::TokenInvalid,
            format!("the enrollment token is {}", refusal.as_str()),
        ));
    }
    let hostname = sanitise_hostname(&request.hostname);
    if hostname.is_empty() {
        return Err(ServiceError::invalid("hostname: must not be empty"));
    }
    let device_id = uuid::Uuid::new_v4().to_string();
    let issued = match state
        .keys
        .issue_device_certificate(&request.csr_pem, &device_id, now)
    {
        Ok(issued) => issued,
        Err(reason) => {
            state
                .store
                .append(state.audit(refuse(&format!("bad CSR: {reason}"))))
                .await?;
            return Err(ServiceError::invalid(format!("csr_pem: {reason}")));
        }
    };
    let device = DeviceRecord {
        id: device_id.clone(),
        site: token.site.clone(),
        class: token.class,
        criticality: token.criticality,
        phi: token.phi,
        hostname: hostname.clone(),
        state: DeviceState::Active,
        cert_fingerprint: issued.fingerprint.clone(),
        cert_not_after_ms: issued.not_after_ms,
        enroll_token_id: token.id.clone(),
        enrolled_ms: now,
        last_seen_ms: None,
        facts: "{}".into(),
        facts_updated_ms: None,
        allow_full_wipe: token.allow_full_wipe,
    };
    let record = AuditRecord::new(
        format!("enroll_token:{}", token.id),
        "device.enroll",
        format!("device:{device_id}"),
        Outcome::Success,
        json!({ "hostname": hostname, "site": token.site, "class": token.class, "criticality": token.criticality,
                "certificate": issued.fingerprint }),
    )
    .with_source(source.clone());
    let enrollment = ward_store::NewEnrollment {
        token_id: token.id.clone(),
        device,
        audit: Audit::one(now, record),
    };
    match ward_core::enroll_writer::submit(&state.enrollments, enrollment).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            state.store.append(state.audit(refuse("used up"))).await?;
            return Err(ServiceError::new(
                ErrorCode::TokenInvalid,
                "the enrollment token is used up",
            ));
        }
        Err(other) => return Err(other.into()),
    }
    Ok(EnrollResponse {
        device_id,
        certificate_pem: issued.pem,
        ca_pem: state.keys.ca_cert_pem.clone(),
        not_after: rfc3339(issued.not_after_ms),
        agent_port: state.agent_port,
        command_key: hex::encode(state.keys.command_key.verifying_key().as_bytes()),
        allow_full_wipe: token.allow_full_wipe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_bounded_and_cleaned() {
        assert_eq!(sanitise_hostname("icu-ws-01\u{1b}[2J\n"), "icu-ws-01[2J");
        assert_eq!(sanitise_hostname(&"é".repeat(1_000_000)).len(), 252);
        assert_eq!(
            sanitise_hostname("<b>x</b>"),
            "<b>x</b>",
            "HTML is kept as text; escaping is the viewer's job"
        );
    }

    #[test]
    fn enroll_tokens_parse_strictly() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(parse_enroll_token(&format!("wardenroll_{id}_s")), Some((id, "s")));
        for bad in [
            "",
            "ward_x",
            &format!("ward_{id}_s"),
            &format!("wardenroll_{id}_"),
        ] {
            assert_eq!(parse_enroll_token(bad), None, "{bad}");
        }
    }
}
