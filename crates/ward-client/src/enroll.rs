//! Enrollment, used by the agent: the enrollment token authenticates instead of an API token.

use ward_proto::{EnrollRequest, EnrollResponse};

use crate::{Client, Result};

impl Client {
    /// `POST /enroll`: sends the device's CSR with an enrollment token; returns its certificate.
    pub async fn enroll(&self, request: &EnrollRequest) -> Result<EnrollResponse> {
        self.send_json(reqwest::Method::POST, &["enroll"], Some(request))
            .await
    }
}
