//! `ward bench lwm2m`: how many LwM2M registrations one server node holds on loopback, and the
//! server memory each costs. A real `ward server` child process; N endpoints provisioned through
//! the API; the server's RSS read; N in-repo LwM2M clients (in this process, spread over
//! 127.10.0.0/16 source addresses) register, answer the gateway's reads of /3 and /4 and its
//! observation of the battery; the RSS read again once every endpoint is registered.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ward_client::{Client, Trust};

/// `ward bench lwm2m`.
#[derive(Debug, Clone, clap::Args)]
pub struct Lwm2mArgs {
    /// Endpoints to provision and register (raise `ulimit -n` above this first: one UDP socket each)
    #[arg(long, default_value_t = 10_000)]
    pub endpoints: usize,
    /// Seconds to wait for every registration
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Register over DTLS with pre-shared keys (each registration then holds a DTLS session)
    #[arg(long)]
    pub dtls: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Lwm2mResult {
    pub endpoints: usize,
    /// `dtls` or `plain`.
    pub transport: &'static str,
    pub registered: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub kib_per_registration: f64,
    pub seconds_to_register: f64,
    /// Endpoints checked after the measurement (spread over the fleet) ...
    pub sampled: usize,
    /// ... and how many of them had their /3 and /4 read into the device's facts (the gateway
    /// did its work for the registrations measured).
    pub sampled_with_facts: usize,
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    Ok(crate::devices::rss_bytes(pid)? / 1024)
}

pub async fn run(args: &Lwm2mArgs, progress: &mut (dyn FnMut(&str) + Send)) -> anyhow::Result<Lwm2mResult> {
    let dir = tempfile::tempdir()?;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
    let gateway: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let (plain, dtls) = if args.dtls {
        ("off".to_owned(), gateway.to_string())
    } else {
        (gateway.to_string(), "off".to_owned())
    };
    let (mut child, url, fingerprint, one_time) =
        crate::contain::spawn_server(&dir.path().join("server"), &plain, &dtls).await?;
    let result = measure(
        args,
        &dir,
        &url,
        &fingerprint,
        one_time,
        gateway,
        child.id(),
        progress,
    )
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    args: &Lwm2mArgs,
    dir: &tempfile::TempDir,
    url: &str,
    fingerprint: &str,
    one_time: String,
    gateway: std::net::SocketAddr,
    pid: u32,
    progress: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<Lwm2mResult> {
    let ca = std::fs::read_to_string(dir.path().join("server/ca.crt")).context("reading the server's CA")?;
    let client = Client::new(url, &Trust::CaPem(ca))?;
    let token = crate::contain::admin_token(&client, one_time).await?;
    let admin = client.with_token(token.clone());
    let options = ward_sim::lwm2m::Lwm2mOptions {
        server: url.to_owned(),
        token,
        ca_fingerprint: fingerprint.to_owned(),
        gateway,
        devices: args.endpoints,
        prefix: "bench-".into(),
        lifetime: 3600,
        dtls: args.dtls,
        keys_file: None,
    };
    let keys = ward_sim::lwm2m::provision(&options, progress)
        .await
        .map_err(anyhow::Error::msg)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(pid)?;
    progress(&format!(
        "server RSS {before} KiB; registering {} endpoints",
        args.endpoints
    ));
    let started = Instant::now();
    let fleet = ward_sim::lwm2m::start_clients(&options, &keys, progress)
        .await
        .map_err(anyhow::Error::msg)?;
    let registered = loop {
        let registered = admin.list_lwm2m().await?.iter().filter(|e| e.registered).count();
        if registered >= args.endpoints || started.elapsed() > Duration::from_secs(args.timeout) {
            break registered;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    // Let the reads after each registration settle, and the allocator return what the
    // registration burst freed (jemalloc gives dirty pages back after 10 s): what a registration
    // holds, not what registering it churned.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = rss_kib(pid)?;
    if registered < args.endpoints {
        bail!(
            "only {registered} of {} endpoints registered in {}s",
            args.endpoints,
            args.timeout
        );
    }
    let (sampled, sampled_with_facts) = sample_facts(&admin).await?;
    drop(fleet);
    if sampled_with_facts < sampled {
        bail!("only {sampled_with_facts} of {sampled} sampled endpoints had /3 and /4 read into their facts");
    }
    Ok(Lwm2mResult {
        endpoints: args.endpoints,
        transport: if args.dtls { "dtls" } else { "plain" },
        registered,
        rss_before_kib: before,
        rss_after_kib: after,
        kib_per_registration: after.saturating_sub(before) as f64 / args.endpoints.max(1) as f64,
        seconds_to_register: seconds,
        sampled,
        sampled_with_facts,
    })
}

/// Up to 100 endpoints spread over the fleet: how many there are, and how many have both
/// `facts.lwm2m.device` (from /3/0) and `facts.lwm2m.connectivity` (from /4/0).
async fn sample_facts(admin: &Client) -> anyhow::Result<(usize, usize)> {
    let endpoints = admin.list_lwm2m().await?;
    let step = endpoints.len().div_ceil(100).max(1);
    let (mut sampled, mut with_facts) = (0, 0);
    for endpoint in endpoints.iter().step_by(step) {
        let detail = admin.get_device(&endpoint.device_id).await?;
        let lwm2m = &detail.device.facts["lwm2m"];
        sampled += 1;
        if lwm2m["device"]["manufacturer"].is_string() && lwm2m["connectivity"].is_object() {
            with_facts += 1;
        }
    }
    Ok((sampled, with_facts))
}
