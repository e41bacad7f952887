//! Building a client for a loopback `http://` server in a fresh process, where nothing has
//! installed a rustls crypto provider yet (its own test binary, so no other test does it first).

use ward_client::{Client, Trust};

#[test]
fn plain_http_client_builds_without_a_preinstalled_provider() {
    let client = Client::new("http://127.0.0.1:8443", &Trust::System);
    assert!(client.is_ok(), "{client:?}");
}
