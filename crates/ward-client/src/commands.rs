//! Remote actions: queueing, following and cancelling commands.

use reqwest::Method;
use ward_proto::{
    BulkCommandRequest, BulkCommandResponse, CommandDetail, CommandQuery, CommandView, CreateCommandRequest,
};

use crate::{Client, Result, decode_json};

impl Client {
    /// `POST /devices/{id}/commands`.
    pub async fn create_command(
        &self,
        device_id: &str,
        request: &CreateCommandRequest,
    ) -> Result<CommandView> {
        self.send_json(Method::POST, &["devices", device_id, "commands"], Some(request))
            .await
    }

    /// `POST /commands`: one action for every device a selector matches.
    pub async fn bulk_command(&self, request: &BulkCommandRequest) -> Result<BulkCommandResponse> {
        self.send_json(Method::POST, &["commands"], Some(request)).await
    }

    /// `GET /commands`; fields left `None` are not sent.
    pub async fn list_commands(&self, query: &CommandQuery) -> Result<Vec<CommandView>> {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(device) = &query.device {
            pairs.push(("device", device.clone()));
        }
        if let Some(state) = &query.state {
            pairs.push(("state", state.clone()));
        }
        if let Some(batch) = &query.batch {
            pairs.push(("batch", batch.clone()));
        }
        if let Some(limit) = query.limit {
            pairs.push(("limit", limit.to_string()));
        }
        let request = self.request(Method::GET, &["commands"])?.query(&pairs);
        decode_json(self.execute(request).await?).await
    }

    /// `GET /commands/{id}` (the server audits the view).
    pub async fn get_command(&self, id: &str) -> Result<CommandDetail> {
        self.get_json(&["commands", id]).await
    }

    /// `POST /commands/{id}/cancel`.
    pub async fn cancel_command(&self, id: &str) -> Result<CommandView> {
        self.send_json(
            Method::POST,
            &["commands", id, "cancel"],
            Some(&serde_json::json!({})),
        )
        .await
    }
}
