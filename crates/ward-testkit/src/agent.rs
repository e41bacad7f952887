//! The agent channel (gRPC over mutual TLS) from the device's side: open a session, send
//! messages, read the server's, and a simulated device that stays connected, records the
//! commands it is sent and reports each one done.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use ward_proto::agent::agent_channel_client::AgentChannelClient;
use ward_proto::agent::{
    AgentMessage, CommandUpdate, Hello, Inventory, ServerMessage, agent_message, server_message,
};

use crate::enroll::Enrolled;
use crate::kit::Kit;

/// A gRPC client of the agent channel with this key and certificate (PEM), or why it could not
/// connect.
pub async fn channel(
    kit: &Kit,
    key_pem: &str,
    cert_pem: &str,
) -> Result<AgentChannelClient<Channel>, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&kit.server.ca_cert_pem))
        .identity(Identity::from_pem(cert_pem, key_pem))
        .domain_name("localhost");
    let endpoint = Channel::from_shared(format!("https://{}", kit.server.agent_addr))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?;
    let channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    Ok(AgentChannelClient::new(channel).max_encoding_message_size(16 * 1024 * 1024))
}

/// A message from the agent.
pub fn msg(body: agent_message::Body) -> AgentMessage {
    AgentMessage { body: Some(body) }
}

/// The hello that opens a session, in this protocol version.
pub fn hello(version: u32) -> AgentMessage {
    msg(agent_message::Body::Hello(Hello {
        protocol_version: version,
        agent_version: "test".into(),
        hostname: "h".into(),
    }))
}

/// Opens a session, sends `first`, and returns the sender and the server's stream (or its error).
pub async fn session(
    client: &mut AgentChannelClient<Channel>,
    first: AgentMessage,
) -> Result<(mpsc::Sender<AgentMessage>, tonic::Streaming<ServerMessage>), tonic::Status> {
    let (sender, receiver) = mpsc::channel(8);
    sender.send(first).await.unwrap();
    let response = client.session(ReceiverStream::new(receiver)).await?;
    Ok((sender, response.into_inner()))
}

/// The next message the server sends, `None` when the stream ended, failed or stayed silent
/// for 10 s.
pub async fn next_body(stream: &mut tonic::Streaming<ServerMessage>) -> Option<server_message::Body> {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .ok()?
        .ok()?
        .and_then(|m| m.body)
}

/// A connected device that records the commands it gets (kind and parameters) and reports each
/// acknowledged and then succeeded, as an agent that carried it out would.
pub struct SimulatedDevice {
    pub id: String,
    sender: mpsc::Sender<AgentMessage>,
    commands: Arc<Mutex<Vec<(String, Value)>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl SimulatedDevice {
    /// Opens a session for an enrolled device; the server must welcome it.
    pub async fn connect(kit: &Kit, enrolled: Enrolled) -> SimulatedDevice {
        let mut client = channel(kit, &enrolled.key_pem, &enrolled.cert_pem).await.unwrap();
        let (sender, mut stream) = session(&mut client, hello(1)).await.unwrap();
        assert!(matches!(
            next_body(&mut stream).await,
            Some(server_message::Body::Welcome(_))
        ));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let seen = commands.clone();
        let replies = sender.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            while let Ok(Some(message)) = stream.message().await {
                let Some(server_message::Body::Command(command)) = message.body else {
                    continue;
                };
                let params: Value = serde_json::from_str(&command.params_json).unwrap_or(Value::Null);
                seen.lock().unwrap().push((command.kind.clone(), params));
                for status in ["acknowledged", "succeeded"] {
                    let update = CommandUpdate {
                        command_id: command.id.clone(),
                        status: status.into(),
                        detail: "done".into(),
                        ..Default::default()
                    };
                    if replies
                        .send(msg(agent_message::Body::CommandUpdate(update)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        SimulatedDevice {
            id: enrolled.id,
            sender,
            commands,
            _task: task,
        }
    }

    /// Sends an inventory with these facts.
    pub async fn report(&self, facts: Value) {
        self.sender
            .send(msg(agent_message::Body::Inventory(Inventory {
                facts_json: facts.to_string(),
            })))
            .await
            .unwrap();
    }

    /// The parameters of every command of this kind received so far.
    pub fn got(&self, kind: &str) -> Vec<Value> {
        self.commands
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, p)| p.clone())
            .collect()
    }
}

impl Kit {
    /// Enrolls a device at `site` of `class` and connects it as a [`SimulatedDevice`].
    pub async fn connected_device(&self, site: &str, class: &str, hostname: &str) -> SimulatedDevice {
        let enrolled = self.enrolled_device(site, class, hostname).await;
        SimulatedDevice::connect(self, enrolled).await
    }
}
