//! A typed async client for the Ward HTTP API (`/api/v1`), speaking the `ward-proto` wire types.
//!
//! Used by the admin CLI and by tests; it knows nothing about the server's internals.

mod commands;
mod devices;
mod enroll;
mod error;
mod incidents;
mod lwm2m;
mod policies;
mod tls;

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use ward_proto::{
    AuditEntryView, AuditKeyView, AuditPage, AuditQuery, ChangePasswordRequest, CheckpointView,
    CreateSiteRequest, CreateTokenRequest, CreateUserRequest, CreatedToken, CreatedUser, GeneratedPassword,
    Health, LoginRequest, SiteView, TokenView, TotpConfirmRequest, TotpEnrolment, UpdateSiteRequest,
    UpdateUserRequest, UserView, VerifyReportView, WhoAmI,
};

pub use error::{ClientError, Result};
pub use tls::{Trust, certificate_fingerprint, parse_fingerprint, pem_certificate_fingerprint};

/// The largest JSON body the client will buffer; bigger answers are refused rather than
/// letting a broken or hostile server exhaust memory.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// The largest error body read; error bodies are a few hundred bytes.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// The largest single line of an audit export.
const MAX_EXPORT_LINE_BYTES: usize = 1024 * 1024;

/// A connection to one Ward server, optionally authenticated with an API token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    // Never print the token: debug output ends up in logs and bug reports.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client for `base_url` (`https://host:port` or, on loopback only, `http://`), trusting the
    /// server as `trust` says. `trust` is ignored for `http://`.
    pub fn new(base_url: &str, trust: &Trust) -> Result<Self> {
        let base = parse_base_url(base_url)?;
        // reqwest is built without a bundled crypto provider and panics in `build()` when no
        // process default is installed, even for plain http://, so install ours first.
        tls::provider();
        let builder = reqwest::Client::builder()
            .user_agent(concat!("ward-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            // A redirect could carry the bearer token somewhere else; the API never redirects.
            .redirect(reqwest::redirect::Policy::none());
        let builder = if base.scheme() == "http" {
            builder
        } else {
            match trust {
                Trust::System => builder.tls_backend_rustls(),
                Trust::CaPem(pem) => builder.tls_backend_preconfigured(tls::config_for_ca_pem(pem)?),
                Trust::Fingerprint(pin) => {
                    builder.tls_backend_preconfigured(tls::config_for_fingerprint(parse_fingerprint(pin)?)?)
                }
            }
        };
        let http = builder.build().map_err(|err| {
            ClientError::Connect(format!("cannot set up the HTTP client: {}", error_chain(&err)))
        })?;
        Ok(Client {
            http,
            base,
            token: None,
        })
    }

    /// The same client, sending `token` (`ward_<id>_<secret>`) as a bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<Health> {
        self.get_json(&["health"]).await
    }

    /// `POST /auth/cli-login`: exchanges a password (and TOTP code) for an API token.
    pub async fn cli_login(&self, request: &LoginRequest) -> Result<CreatedToken> {
        self.send_json(Method::POST, &["auth", "cli-login"], Some(request))
            .await
    }

    /// `POST /auth/logout`: with a bearer token, the server revokes that token.
    pub async fn logout(&self) -> Result<()> {
        self.send_empty(Method::POST, &["auth", "logout"], None::<&()>)
            .await
    }

    /// `GET /auth/whoami`.
    pub async fn whoami(&self) -> Result<WhoAmI> {
        self.get_json(&["auth", "whoami"]).await
    }

    /// `POST /auth/password`: changes the caller's own password.
    pub async fn change_password(&self, request: &ChangePasswordRequest) -> Result<()> {
        self.send_empty(Method::POST, &["auth", "password"], Some(request))
            .await
    }

    /// `POST /auth/totp/enrol`: starts TOTP enrolment for the caller.
    pub async fn totp_enrol(&self) -> Result<TotpEnrolment> {
        self.send_json(Method::POST, &["auth", "totp", "enrol"], None::<&()>)
            .await
    }

    /// `POST /auth/totp/confirm`: finishes enrolment with a code from the authenticator.
    pub async fn totp_confirm(&self, request: &TotpConfirmRequest) -> Result<()> {
        self.send_empty(Method::POST, &["auth", "totp", "confirm"], Some(request))
            .await
    }

    /// `GET /users`.
    pub async fn list_users(&self) -> Result<Vec<UserView>> {
        self.get_json(&["users"]).await
    }

    /// `POST /users`.
    pub async fn create_user(&self, request: &CreateUserRequest) -> Result<CreatedUser> {
        self.send_json(Method::POST, &["users"], Some(request)).await
    }

    /// `GET /users/{username}`.
    pub async fn get_user(&self, username: &str) -> Result<UserView> {
        self.get_json(&["users", username]).await
    }

    /// `PATCH /users/{username}`.
    pub async fn update_user(&self, username: &str, request: &UpdateUserRequest) -> Result<UserView> {
        self.send_json(Method::PATCH, &["users", username], Some(request))
            .await
    }

    /// `POST /users/{username}/reset-password`: the server generates a new password.
    pub async fn reset_password(&self, username: &str) -> Result<GeneratedPassword> {
        self.send_json(Method::POST, &["users", username, "reset-password"], None::<&()>)
            .await
    }

    /// `GET /tokens`: the caller's tokens, or everyone's with `all` (admins).
    pub async fn list_tokens(&self, all: bool) -> Result<Vec<TokenView>> {
        let mut request = self.request(Method::GET, &["tokens"])?;
        if all {
            request = request.query(&[("all", "true")]);
        }
        decode_json(self.execute(request).await?).await
    }

    /// `POST /tokens`.
    pub async fn create_token(&self, request: &CreateTokenRequest) -> Result<CreatedToken> {
        self.send_json(Method::POST, &["tokens"], Some(request)).await
    }

    /// `DELETE /tokens/{id}`.
    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        self.send_empty(Method::DELETE, &["tokens", id], None::<&()>)
            .await
    }

    /// `GET /sites`.
    pub async fn list_sites(&self) -> Result<Vec<SiteView>> {
        self.get_json(&["sites"]).await
    }

    /// `POST /sites`.
    pub async fn create_site(&self, request: &CreateSiteRequest) -> Result<SiteView> {
        self.send_json(Method::POST, &["sites"], Some(request)).await
    }

    /// `GET /sites/{slug}`; a ward slug (`hospital/ward`) is sent as two path segments.
    pub async fn get_site(&self, slug: &str) -> Result<SiteView> {
        self.get_json(&site_path(slug)).await
    }

    /// `PATCH /sites/{slug}`.
    pub async fn update_site(&self, slug: &str, request: &UpdateSiteRequest) -> Result<SiteView> {
        self.send_json(Method::PATCH, &site_path(slug), Some(request))
            .await
    }

    /// `DELETE /sites/{slug}`.
    pub async fn delete_site(&self, slug: &str) -> Result<()> {
        self.send_empty(Method::DELETE, &site_path(slug), None::<&()>)
            .await
    }

    /// `GET /audit`: one page of entries; fields left `None` are not sent.
    pub async fn audit(&self, query: &AuditQuery) -> Result<AuditPage> {
        let request = self.request(Method::GET, &["audit"])?.query(query);
        decode_json(self.execute(request).await?).await
    }

    /// `GET /audit/verify`: the server checks its own log.
    pub async fn audit_verify(&self) -> Result<VerifyReportView> {
        self.get_json(&["audit", "verify"]).await
    }

    /// `GET /audit/checkpoints`.
    pub async fn audit_checkpoints(&self) -> Result<Vec<CheckpointView>> {
        self.get_json(&["audit", "checkpoints"]).await
    }

    /// `GET /audit/key`.
    pub async fn audit_key(&self) -> Result<AuditKeyView> {
        self.get_json(&["audit", "key"]).await
    }

    /// `GET /audit/export`: every entry after `after`, read one line at a time so a long log
    /// never has to fit in memory.
    pub async fn audit_export(&self, after: Option<u64>) -> Result<AuditExport> {
        let mut request = self.request(Method::GET, &["audit", "export"])?;
        if let Some(after) = after {
            request = request.query(&[("after", after)]);
        }
        let response = self.execute(request).await?;
        Ok(AuditExport {
            response,
            buffer: Vec::new(),
            finished: false,
        })
    }

    /// `GET /ca.pem`: the server's CA certificate (unauthenticated).
    async fn ca_pem(&self) -> Result<String> {
        let response = self.execute(self.request(Method::GET, &["ca.pem"])?).await?;
        let bytes = read_limited(response, MAX_ERROR_BODY_BYTES).await?;
        String::from_utf8(bytes)
            .map_err(|_| ClientError::Decode("the CA certificate is not UTF-8 PEM".into()))
    }

    /// The URL for `/api/v1/<segments>`, each segment percent-encoded so that user input such as
    /// `../x` or `a/b` stays inside its one segment.
    fn url(&self, segments: &[&str]) -> Result<Url> {
        build_url(&self.base, segments)
    }

    fn request(&self, method: Method, segments: &[&str]) -> Result<RequestBuilder> {
        let request = self.http.request(method, self.url(segments)?);
        Ok(match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    /// Sends the request and turns non-2xx answers into [`ClientError::Api`].
    async fn execute(&self, request: RequestBuilder) -> Result<Response> {
        let response = request.send().await.map_err(transport_error)?;
        if response.status().is_success() {
            Ok(response)
        } else {
            let status = response.status();
            let body = read_limited(response, MAX_ERROR_BODY_BYTES)
                .await
                .unwrap_or_default();
            Err(error::api_error(status.as_u16(), &body))
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        decode_json(self.execute(self.request(Method::GET, segments)?).await?).await
    }

    async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<T> {
        let mut request = self.request(method, segments)?;
        if let Some(body) = body {
            request = request.json(body);
        }
        decode_json(self.execute(request).await?).await
    }

    async fn send_empty<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<()> {
        let mut request = self.request(method, segments)?;
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.execute(request).await?;
        // Drain the (normally empty) body so the connection can be reused.
        read_limited(response, MAX_BODY_BYTES).await?;
        Ok(())
    }
}

/// Connects trusting only the CA whose SHA-256 is `fingerprint`, downloads that CA's PEM from
/// `/api/v1/ca.pem` and checks it is the pinned certificate. `ward login --ca-fingerprint` stores
/// the result so later commands can verify the server normally.
pub async fn fetch_ca_pem(base_url: &str, fingerprint: &str) -> Result<String> {
    let pin = parse_fingerprint(fingerprint)?;
    let client = Client::new(base_url, &Trust::Fingerprint(fingerprint.to_owned()))?;
    let pem = client.ca_pem().await?;
    let der = tls::first_certificate(&pem).map_err(|err| ClientError::Decode(err.to_string()))?;
    if certificate_fingerprint(&der) != pin {
        return Err(ClientError::Decode(
            "the CA certificate the server sent does not match the pinned fingerprint".into(),
        ));
    }
    Ok(pem)
}

/// A running `GET /audit/export`: call [`AuditExport::next_entry`] until it returns `None`.
pub struct AuditExport {
    response: Response,
    buffer: Vec<u8>,
    finished: bool,
}

impl AuditExport {
    /// The next entry, or `None` at the end of the export.
    pub async fn next_entry(&mut self) -> Result<Option<AuditEntryView>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if let Some(entry) = parse_export_line(&line)? {
                    return Ok(Some(entry));
                }
                continue;
            }
            if self.finished {
                let rest = std::mem::take(&mut self.buffer);
                return parse_export_line(&rest);
            }
            match self.response.chunk().await.map_err(transport_error)? {
                Some(chunk) => {
                    self.buffer.extend_from_slice(&chunk);
                    if self.buffer.len() > MAX_EXPORT_LINE_BYTES {
                        return Err(ClientError::Decode("an audit export line is too long".into()));
                    }
                }
                None => self.finished = true,
            }
        }
    }
}

fn parse_export_line(line: &[u8]) -> Result<Option<AuditEntryView>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(line)
        .map(Some)
        .map_err(|err| ClientError::Decode(format!("bad audit export line: {err}")))
}

fn parse_base_url(base_url: &str) -> Result<Url> {
    let url = Url::parse(base_url.trim())
        .map_err(|err| ClientError::Invalid(format!("the server URL {base_url:?} is not valid: {err}")))?;
    match url.scheme() {
        "https" => {}
        // Plain HTTP would send the password and token in the clear, so it is only for a
        // server on this machine (the server itself only offers plaintext on loopback).
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ClientError::Invalid(
                "plain http:// is only allowed to a loopback address; use https://".into(),
            ));
        }
        other => {
            return Err(ClientError::Invalid(format!(
                "the server URL must be https://, not {other}://"
            )));
        }
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(ClientError::Invalid(format!(
            "the server URL {base_url:?} has no host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::Invalid(
            "the server URL must not have a query or fragment".into(),
        ));
    }
    Ok(url)
}

/// Whether the URL `text` names a loopback host (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback_url(text: &str) -> bool {
    Url::parse(text.trim()).is_ok_and(|url| is_loopback(&url))
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        // IPv6 hosts come bracketed, as in `http://[::1]:8443`.
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback()),
        None => false,
    }
}

fn build_url(base: &Url, segments: &[&str]) -> Result<Url> {
    for segment in segments {
        // The url crate silently drops `.` and `..` segments rather than encoding them, which
        // would send `users/..` to `/users`; refuse them (and empty ones) instead.
        if segment.is_empty() || *segment == "." || *segment == ".." {
            return Err(ClientError::Invalid(format!("{segment:?} is not a valid name")));
        }
    }
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| ClientError::Invalid("the server URL cannot have a path".into()))?
        .pop_if_empty()
        .extend(["api", "v1"])
        .extend(segments);
    Ok(url)
}

/// `st-marys/icu` becomes `["sites", "st-marys", "icu"]`: the server routes a ward's slug as two
/// segments, and each half is still encoded on its own.
fn site_path(slug: &str) -> Vec<&str> {
    std::iter::once("sites").chain(slug.split('/')).collect()
}

async fn decode_json<T: DeserializeOwned>(response: Response) -> Result<T> {
    let bytes = read_limited(response, MAX_BODY_BYTES).await?;
    serde_json::from_slice(&bytes).map_err(|err| ClientError::Decode(format!("unexpected answer: {err}")))
}

async fn read_limited(mut response: Response, limit: usize) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(ClientError::Decode(format!(
                "the answer is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport_error(err: reqwest::Error) -> ClientError {
    if err.is_decode() {
        ClientError::Decode(error_chain(&err))
    } else {
        ClientError::Connect(error_chain(&err))
    }
}

/// reqwest's own message is only "error sending request"; the cause (refused, TLS pin mismatch,
/// timeout) is further down the source chain, and is what the operator needs to see.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(url: &str) -> Url {
        parse_base_url(url).unwrap()
    }

    #[test]
    fn url_keeps_hostile_segments_inside_one_segment() {
        let base = base("https://ward.example:8443");
        let url = build_url(&base, &["users", "../x"]).unwrap();
        assert_eq!(url.path(), "/api/v1/users/..%2Fx");
        let url = build_url(&base, &["users", "a b"]).unwrap();
        assert_eq!(url.path(), "/api/v1/users/a%20b");
        let url = build_url(&base, &["users", "%2e"]).unwrap();
        assert_eq!(url.path(), "/api/v1/users/%252e");
        let url = build_url(&base, &["tokens", "x?all=true#y"]).unwrap();
        assert_eq!(url.path(), "/api/v1/tokens/x%3Fall=true%23y");
        assert_eq!(url.query(), None);
    }

    #[test]
    fn dot_and_empty_segments_are_refused() {
        let base = base("https://ward.example");
        for bad in ["..", ".", ""] {
            assert!(matches!(
                build_url(&base, &["users", bad]),
                Err(ClientError::Invalid(_))
            ));
        }
    }

    #[test]
    fn base_path_prefix_is_kept() {
        let url = build_url(&base("https://proxy.example/ward/"), &["health"]).unwrap();
        assert_eq!(url.as_str(), "https://proxy.example/ward/api/v1/health");
        let url = build_url(&base("http://127.0.0.1:8443"), &["health"]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8443/api/v1/health");
    }

    #[test]
    fn site_slug_becomes_two_segments() {
        let url = build_url(&base("https://w.example"), &site_path("st-marys/icu")).unwrap();
        assert_eq!(url.path(), "/api/v1/sites/st-marys/icu");
        assert!(build_url(&base("https://w.example"), &site_path("a/../b")).is_err());
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8443",
            "http://localhost:1",
            "http://[::1]:8443",
            "https://ward.example",
        ] {
            assert!(parse_base_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://ward.example",
            "ftp://127.0.0.1",
            "not a url",
            "https://w.example/?x=1",
        ] {
            assert!(
                matches!(parse_base_url(bad), Err(ClientError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn audit_query_skips_none_fields() {
        let client = Client::new("https://ward.example", &Trust::System).unwrap();
        let query = AuditQuery {
            after: Some(5),
            action: Some("auth.".into()),
            ..AuditQuery::default()
        };
        let request = client
            .request(Method::GET, &["audit"])
            .unwrap()
            .query(&query)
            .build()
            .unwrap();
        assert_eq!(request.url().query(), Some("after=5&action=auth."));
    }

    #[test]
    fn bearer_token_is_sent_and_hidden_from_debug() {
        let client = Client::new("http://127.0.0.1:1", &Trust::System)
            .unwrap()
            .with_token("ward_a_b");
        let request = client
            .request(Method::GET, &["auth", "whoami"])
            .unwrap()
            .build()
            .unwrap();
        let header = request.headers().get(reqwest::header::AUTHORIZATION).unwrap();
        assert_eq!(header.to_str().unwrap(), "Bearer ward_a_b");
        assert!(header.is_sensitive());
        assert!(!format!("{client:?}").contains("ward_a_b"));
    }

    #[test]
    fn export_lines_parse_and_blank_lines_are_skipped() {
        let line = br#"{"seq":1,"time":"2026-01-01T00:00:00.000Z","actor":"a","action":"x","target":"t","outcome":"success","details":"{}","source":null,"prev_hash":"00","hash":"11"}"#;
        assert_eq!(parse_export_line(line).unwrap().unwrap().seq, 1);
        assert!(parse_export_line(b"\r\n").unwrap().is_none());
        assert!(matches!(parse_export_line(b"{"), Err(ClientError::Decode(_))));
    }
}

/// End to end through reqwest and rustls against a tiny TLS server whose chain is leaf + CA,
/// the shape the Ward server presents.
#[cfg(test)]
mod tls_tests {
    use std::sync::Arc;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct TestServer {
        url: String,
        ca_pem: String,
        fingerprint: String,
    }

    fn new_ca() -> (CertifiedIssuer<'static, KeyPair>, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = ca.pem();
        (ca, pem)
    }

    /// Serves the CA PEM as the answer to every request, over TLS on 127.0.0.1.
    async fn start_server() -> TestServer {
        let (ca, ca_pem) = new_ca();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let chain = vec![leaf.der().clone(), ca.der().clone()];
        let key = rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let body = ca_pem.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    // A handshake the client refuses is an expected outcome in these tests.
                    let Ok(mut stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        let fingerprint = hex::encode(certificate_fingerprint(ca.der()));
        TestServer {
            url,
            ca_pem,
            fingerprint,
        }
    }

    #[test]
    fn pem_fingerprint_is_the_der_fingerprint() {
        let (ca, pem) = new_ca();
        assert_eq!(
            pem_certificate_fingerprint(&pem).unwrap(),
            certificate_fingerprint(ca.der())
        );
    }

    #[tokio::test]
    async fn fetch_ca_pem_with_the_right_pin() {
        let server = start_server().await;
        let upper_with_colons = server
            .fingerprint
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|pair| String::from_utf8(pair.to_vec()).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let pem = fetch_ca_pem(&server.url, &upper_with_colons).await.unwrap();
        assert_eq!(pem, server.ca_pem);
    }

    #[tokio::test]
    async fn wrong_pin_is_refused_as_connect_error() {
        let server = start_server().await;
        let wrong = "00".repeat(32);
        let error = fetch_ca_pem(&server.url, &wrong).await.unwrap_err();
        assert!(matches!(error, ClientError::Connect(_)), "{error:?}");
        assert!(error.to_string().contains("pinned fingerprint"), "{error}");
        assert_eq!(error.exit_code(), 3);
    }

    #[tokio::test]
    async fn ca_pem_trust_accepts_own_ca_and_refuses_another() {
        let server = start_server().await;
        let client = Client::new(&server.url, &Trust::CaPem(server.ca_pem.clone())).unwrap();
        assert_eq!(client.ca_pem().await.unwrap(), server.ca_pem);

        let (_, other_pem) = new_ca();
        let client = Client::new(&server.url, &Trust::CaPem(other_pem)).unwrap();
        assert!(matches!(client.ca_pem().await, Err(ClientError::Connect(_))));
    }
}
