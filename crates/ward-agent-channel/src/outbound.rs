//! Where a session's messages go: the gRPC response stream, or straight onto a framed connection.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use ward_proto::agent::ServerMessage;
use ward_proto::framed;

/// The write half of a framed agent connection.
pub(crate) type FramedWrite = tokio::io::WriteHalf<TlsStream<TcpStream>>;

/// Where a session's messages go: the gRPC response stream's channel, or straight onto a framed
/// connection (no channel and no writer: an idle framed session holds neither).
pub(crate) enum Outbound {
    Grpc(mpsc::Sender<Box<ServerMessage>>),
    Framed(FramedWrite),
}

impl Outbound {
    /// Sends one message; `Err` when the stream or connection is gone.
    pub(crate) async fn send(&mut self, message: ServerMessage) -> Result<(), ()> {
        self.send_all(vec![message]).await
    }

    /// Sends messages in order, in one write on a framed connection; `Err` when the stream or
    /// connection is gone.
    pub(crate) async fn send_all(&mut self, messages: Vec<ServerMessage>) -> Result<(), ()> {
        match self {
            Outbound::Grpc(sender) => {
                for message in messages {
                    sender.send(Box::new(message)).await.map_err(|_| ())?;
                }
                Ok(())
            }
            Outbound::Framed(write) => framed::write_messages(write, &messages).await.map_err(|_| ()),
        }
    }

    /// Ends the stream (a framed connection is closed with a TLS close_notify).
    pub(crate) async fn close(self) {
        if let Outbound::Framed(mut write) = self {
            let _ = write.shutdown().await;
        }
    }
}
