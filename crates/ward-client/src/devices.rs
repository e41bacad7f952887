//! Enrollment tokens and devices.

use reqwest::Method;
use serde_json::Value;
use ward_proto::{
    CreateEnrollTokenRequest, CreatedEnrollToken, DeviceDetail, DeviceQuery, DeviceView, EnrollTokenView,
};

use crate::{Client, Result, decode_json};

impl Client {
    /// `POST /enroll-tokens`.
    pub async fn create_enroll_token(
        &self,
        request: &CreateEnrollTokenRequest,
    ) -> Result<CreatedEnrollToken> {
        self.send_json(Method::POST, &["enroll-tokens"], Some(request))
            .await
    }

    /// `GET /enroll-tokens`.
    pub async fn list_enroll_tokens(&self) -> Result<Vec<EnrollTokenView>> {
        self.get_json(&["enroll-tokens"]).await
    }

    /// `DELETE /enroll-tokens/{id}`.
    pub async fn revoke_enroll_token(&self, id: &str) -> Result<()> {
        self.send_empty(Method::DELETE, &["enroll-tokens", id], None::<&()>)
            .await
    }

    /// `GET /devices`: the selector travels URL-encoded in the query string.
    pub async fn list_devices(&self, query: &DeviceQuery) -> Result<Vec<DeviceView>> {
        let request = self
            .request(Method::GET, &["devices"])?
            .query(&device_query(query));
        decode_json(self.execute(request).await?).await
    }

    /// `GET /devices/{id}` (the server audits the view).
    pub async fn get_device(&self, id: &str) -> Result<DeviceDetail> {
        self.get_json(&["devices", id]).await
    }

    /// `POST /devices/{id}/revoke`.
    pub async fn revoke_device(&self, id: &str) -> Result<DeviceView> {
        self.send_json(
            Method::POST,
            &["devices", id, "revoke"],
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// `POST /devices/{id}/retire`.
    pub async fn retire_device(&self, id: &str) -> Result<DeviceView> {
        self.send_json(
            Method::POST,
            &["devices", id, "retire"],
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// `GET /devices/fhir`: a FHIR R4 Bundle of Device resources.
    pub async fn devices_fhir(&self, query: &DeviceQuery) -> Result<Value> {
        let request = self
            .request(Method::GET, &["devices", "fhir"])?
            .query(&device_query(query));
        decode_json(self.execute(request).await?).await
    }
}

/// Query pairs, leaving out what is unset.
fn device_query(query: &DeviceQuery) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    if let Some(filter) = &query.filter {
        pairs.push(("filter", filter.clone()));
    }
    if query.include_retired {
        pairs.push(("include_retired", "true".to_owned()));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_selectors_stay_inside_the_filter_parameter() {
        let query = DeviceQuery {
            filter: Some("a = \"x&include_retired=true#\" and b ~ 'ü *'".into()),
            include_retired: false,
        };
        let url = reqwest::Url::parse_with_params("https://h/api/v1/devices", device_query(&query)).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(pairs, [("filter".to_owned(), query.filter.clone().unwrap())]);
        assert!(device_query(&DeviceQuery::default()).is_empty());
    }
}
