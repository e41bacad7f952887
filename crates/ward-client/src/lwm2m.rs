//! LwM2M endpoints: provisioning constrained devices for the gateway.

use reqwest::Method;
use ward_proto::{Lwm2mEndpointView, ProvisionLwm2mRequest, ProvisionedLwm2mEndpoint};

use crate::{Client, Result};

impl Client {
    /// `POST /lwm2m/endpoints`: creates the device and its endpoint; the key is in the answer only.
    pub async fn provision_lwm2m(&self, request: &ProvisionLwm2mRequest) -> Result<ProvisionedLwm2mEndpoint> {
        self.send_json(Method::POST, &["lwm2m", "endpoints"], Some(request))
            .await
    }

    /// `GET /lwm2m/endpoints`.
    pub async fn list_lwm2m(&self) -> Result<Vec<Lwm2mEndpointView>> {
        self.get_json(&["lwm2m", "endpoints"]).await
    }
}
