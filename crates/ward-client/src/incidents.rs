//! Incidents: declaring, previewing, approving, containing, lifting, closing and reporting.

use reqwest::Method;
use serde_json::Value;
use ward_proto::{
    CloseIncidentRequest, DeclareIncidentRequest, IncidentActionRequest, IncidentPreview, IncidentStatus,
    IncidentView,
};

use crate::{Client, MAX_BODY_BYTES, Result, read_limited};

impl Client {
    /// `POST /incidents`.
    pub async fn declare_incident(&self, request: &DeclareIncidentRequest) -> Result<IncidentView> {
        self.send_json(Method::POST, &["incidents"], Some(request)).await
    }

    /// `GET /incidents`.
    pub async fn list_incidents(&self) -> Result<Vec<IncidentView>> {
        self.get_json(&["incidents"]).await
    }

    /// `GET /incidents/{id}`.
    pub async fn get_incident(&self, id: &str) -> Result<IncidentView> {
        self.get_json(&["incidents", id]).await
    }

    /// `GET /incidents/{id}/preview`.
    pub async fn preview_incident(&self, id: &str) -> Result<IncidentPreview> {
        self.get_json(&["incidents", id, "preview"]).await
    }

    /// `GET /incidents/{id}/status`.
    pub async fn incident_status(&self, id: &str) -> Result<IncidentStatus> {
        self.get_json(&["incidents", id, "status"]).await
    }

    /// `POST /incidents/{id}/approve`.
    pub async fn approve_incident(&self, id: &str, request: &IncidentActionRequest) -> Result<IncidentView> {
        self.send_json(Method::POST, &["incidents", id, "approve"], Some(request))
            .await
    }

    /// `POST /incidents/{id}/contain`.
    pub async fn contain_incident(
        &self,
        id: &str,
        request: &IncidentActionRequest,
    ) -> Result<IncidentStatus> {
        self.send_json(Method::POST, &["incidents", id, "contain"], Some(request))
            .await
    }

    /// `POST /incidents/{id}/lift`.
    pub async fn lift_incident(&self, id: &str, request: &IncidentActionRequest) -> Result<IncidentStatus> {
        self.send_json(Method::POST, &["incidents", id, "lift"], Some(request))
            .await
    }

    /// `POST /incidents/{id}/close`.
    pub async fn close_incident(&self, id: &str, request: &CloseIncidentRequest) -> Result<IncidentView> {
        self.send_json(Method::POST, &["incidents", id, "close"], Some(request))
            .await
    }

    /// `GET /incidents/{id}/report` as JSON.
    pub async fn incident_report(&self, id: &str) -> Result<Value> {
        self.get_json(&["incidents", id, "report"]).await
    }

    /// `GET /incidents/{id}/report?format=markdown`.
    pub async fn incident_report_markdown(&self, id: &str) -> Result<String> {
        let request = self
            .request(Method::GET, &["incidents", id, "report"])?
            .query(&[("format", "markdown")]);
        let bytes = read_limited(self.execute(request).await?, MAX_BODY_BYTES).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
