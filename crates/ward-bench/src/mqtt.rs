//! `ward bench mqtt-baseline`: the yardstick for containment fan-out. A local MQTT broker
//! (Mosquitto on 127.0.0.1:1883 on the development machines) delivers one QoS 1 message to N
//! connected subscribers; the clock runs from the publish to each subscriber's receipt. Ward's
//! `bench contain` does far more per device (a signed, stored, audited command, verified and
//! journaled by the device, acknowledged and stored again), so the ratio is an upper bound on how
//! much the plumbing costs.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// `ward bench mqtt-baseline`.
#[derive(Debug, Clone, clap::Args)]
pub struct MqttArgs {
    /// Connected subscribers
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// The broker, HOST:PORT
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub broker: String,
    /// Seconds to wait for every delivery before counting the rest as lost
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// Delivery latencies, milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MqttResult {
    pub subscribers: usize,
    pub received: usize,
    pub lost: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn options(id: String, host: &str, port: u16) -> MqttOptions {
    let mut options = MqttOptions::new(id, host, port);
    options.set_keep_alive(Duration::from_secs(60));
    options
}

pub async fn baseline(args: &MqttArgs, progress: &mut dyn FnMut(&str)) -> anyhow::Result<MqttResult> {
    let (host, port) = args
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .context("--broker: HOST:PORT")?;
    let run = format!("{}-{}", std::process::id(), rand::random::<u32>());
    let topic = format!("ward/bench/{run}");
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<()>();
    let (got_tx, mut got_rx) = mpsc::unbounded_channel::<Instant>();
    let mut tasks = Vec::new();
    for i in 0..args.subscribers {
        let (client, mut eventloop) = AsyncClient::new(options(format!("wb-{run}-{i}"), &host, port), 16);
        let (ready, got, topic) = (ready_tx.clone(), got_tx.clone(), topic.clone());
        tasks.push(tokio::spawn(async move {
            let _client = client.clone();
            if client.subscribe(topic, QoS::AtLeastOnce).await.is_err() {
                return;
            }
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(_))) => {
                        let _ = got.send(Instant::now());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    for subscribed in 0..args.subscribers {
        match tokio::time::timeout_at(deadline.into(), ready_rx.recv()).await {
            Ok(Some(())) => {}
            _ => bail!(
                "only {subscribed} of {} subscribers connected to {}",
                args.subscribers,
                args.broker
            ),
        }
    }
    progress(&format!(
        "{} subscribers connected; publishing one QoS 1 message",
        args.subscribers
    ));
    let (publisher, mut eventloop) =
        AsyncClient::new(options(format!("wb-{run}-publisher"), &host, port), 16);
    let driver = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let started = Instant::now();
    publisher
        .publish(topic, QoS::AtLeastOnce, false, b"contain".to_vec())
        .await
        .context("publishing")?;
    let mut latencies = Vec::with_capacity(args.subscribers);
    while latencies.len() < args.subscribers {
        match tokio::time::timeout_at(deadline.into(), got_rx.recv()).await {
            Ok(Some(at)) => latencies.push(at.duration_since(started).as_secs_f64() * 1000.0),
            _ => break,
        }
    }
    driver.abort();
    for task in tasks {
        task.abort();
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index]
    };
    Ok(MqttResult {
        subscribers: args.subscribers,
        received: latencies.len(),
        lost: args.subscribers - latencies.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
    })
}
