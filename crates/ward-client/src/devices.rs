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
pub(crate) fn device_query(query: &DeviceQuery) -> Vec<(&'static str, String)> {
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
    use crate::Trust;

    /// The query string exactly as it would go on the wire.
    fn wire_query(query: &DeviceQuery) -> Option<String> {
        let client = Client::new("https://ward.example", &Trust::System).unwrap();
        let request = client
            .request(Method::GET, &["devices"])
            .unwrap()
            .query(&device_query(query))
            .build()
            .unwrap();
        assert_eq!(request.url().path(), "/api/v1/devices");
        assert_eq!(request.url().fragment(), None);
        request.url().query().map(str::to_owned)
    }

    #[test]
    fn hostile_selectors_stay_inside_the_filter_parameter() {
        let selector = "site within \"st-marys\" and hostname = \"a&include_retired=true#x\" \
                        and facts.owner = 'Zoë 100%+1' and x = \"a=b;c?d/e\"";
        let query = DeviceQuery {
            filter: Some(selector.into()),
            include_retired: false,
        };
        let raw = wire_query(&query).unwrap();
        // Only the one separator-free parameter: every & # space quote and non-ASCII byte encoded.
        assert!(raw.starts_with("filter="), "{raw}");
        for c in ['&', '#', ' ', '"', '\'', ';', '?'] {
            assert!(!raw.contains(c), "{c:?} in {raw}");
        }
        assert!(raw.is_ascii(), "{raw}");
        assert!(raw.contains("Zo%C3%AB"), "{raw}");
        // And the server's form decoding gets the selector back byte for byte.
        let url = reqwest::Url::parse(&format!("https://h/?{raw}")).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(pairs, [("filter".to_owned(), selector.to_owned())]);
    }

    #[test]
    fn unset_fields_are_left_out() {
        assert_eq!(wire_query(&DeviceQuery::default()), None);
        let retired = DeviceQuery {
            filter: None,
            include_retired: true,
        };
        assert_eq!(wire_query(&retired).as_deref(), Some("include_retired=true"));
        let both = DeviceQuery {
            filter: Some("class = \"medical\"".into()),
            include_retired: true,
        };
        assert_eq!(
            wire_query(&both).as_deref(),
            Some("filter=class+%3D+%22medical%22&include_retired=true")
        );
    }
}
