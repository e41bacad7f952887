//! Policies, compliance and dynamic groups.

use reqwest::Method;
use ward_proto::{
    ApplyPoliciesRequest, ApplyPoliciesResponse, ComplianceSummary, DeviceComplianceView, DeviceQuery,
    GroupView, PolicyDiffView, PolicyView, PutGroupRequest,
};

use crate::devices::device_query;
use crate::{Client, Result, decode_json};

impl Client {
    /// `POST /policies/apply` (with `dry_run`, a preview that changes nothing).
    pub async fn apply_policies(&self, request: &ApplyPoliciesRequest) -> Result<ApplyPoliciesResponse> {
        self.send_json(Method::POST, &["policies", "apply"], Some(request))
            .await
    }

    /// `GET /policies`.
    pub async fn list_policies(&self) -> Result<Vec<PolicyView>> {
        self.get_json(&["policies"]).await
    }

    /// `GET /policies/{name}`.
    pub async fn get_policy(&self, name: &str) -> Result<PolicyView> {
        self.get_json(&["policies", name]).await
    }

    /// `GET /policies/{name}/history`.
    pub async fn policy_history(&self, name: &str) -> Result<Vec<PolicyView>> {
        self.get_json(&["policies", name, "history"]).await
    }

    /// `GET /policies/{name}/diff?from=&to=`.
    pub async fn policy_diff(&self, name: &str, from: i64, to: i64) -> Result<PolicyDiffView> {
        let request = self
            .request(Method::GET, &["policies", name, "diff"])?
            .query(&[("from", from), ("to", to)]);
        decode_json(self.execute(request).await?).await
    }

    /// `GET /devices/{id}/compliance`.
    pub async fn device_compliance(&self, id: &str) -> Result<DeviceComplianceView> {
        self.get_json(&["devices", id, "compliance"]).await
    }

    /// `GET /compliance/summary`.
    pub async fn compliance_summary(&self, query: &DeviceQuery) -> Result<ComplianceSummary> {
        let request = self
            .request(Method::GET, &["compliance", "summary"])?
            .query(&device_query(query));
        decode_json(self.execute(request).await?).await
    }

    /// `GET /groups`.
    pub async fn list_groups(&self) -> Result<Vec<GroupView>> {
        self.get_json(&["groups"]).await
    }

    /// `PUT /groups/{name}`.
    pub async fn put_group(&self, name: &str, request: &PutGroupRequest) -> Result<GroupView> {
        self.send_json(Method::PUT, &["groups", name], Some(request))
            .await
    }

    /// `DELETE /groups/{name}`.
    pub async fn delete_group(&self, name: &str) -> Result<()> {
        self.send_empty::<()>(Method::DELETE, &["groups", name], None)
            .await
    }
}
