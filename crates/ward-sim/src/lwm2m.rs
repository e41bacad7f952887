//! Simulated constrained devices: N in-repo LwM2M clients (`ward_lwm2m::client`) that provision
//! themselves through the API (`POST /lwm2m/endpoints`) and register with the server's LwM2M
//! gateway over plain UDP. Each has the standard objects /3, /4, /5 and /8 (every fourth one
//! lacks /8, like many real sensors) and logs what the server asks it to do.

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use ward_client::{Client, Trust};
use ward_lwm2m::client::{self, ClientConfig, ClientEvent, ClientHandle, DeviceInfo, ObjectStore};
use ward_proto::{CreateSiteRequest, ProvisionLwm2mRequest};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Lwm2mOptions {
    /// The server's API, `https://HOST:PORT`.
    pub server: String,
    /// An admin API token (endpoints are provisioned with it).
    pub token: String,
    /// The server CA's SHA-256 fingerprint.
    pub ca_fingerprint: String,
    /// The gateway's UDP address (loopback: the gateway allows plain UDP only there by default).
    pub gateway: SocketAddr,
    pub devices: usize,
    /// Prefix of endpoint names, so several simulators can share a server.
    pub prefix: String,
    /// Registration lifetime, seconds.
    pub lifetime: u32,
}

/// Kinds of constrained device: (name, site, class, criticality, has Lock and Wipe).
const KINDS: &[(&str, &str, &str, &str, bool)] = &[
    (
        "infusion-pump",
        "st-marys/icu",
        "medical",
        "life-sustaining",
        true,
    ),
    ("patient-monitor", "st-marys/icu", "medical", "high", true),
    ("bed-sensor", "st-marys/ward-a", "iot-gateway", "normal", true),
    (
        "fridge-sensor",
        "st-marys/radiology",
        "iot-gateway",
        "normal",
        false,
    ),
];

/// Running simulated LwM2M devices; dropping it de-registers and stops them.
pub struct Lwm2mFleet {
    /// (endpoint name, handle) of each device.
    pub devices: Vec<(String, ClientHandle)>,
    /// The event loggers (the clients themselves stop, de-registering, when their handles drop).
    loggers: Vec<JoinHandle<()>>,
}

impl Lwm2mFleet {
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

impl Drop for Lwm2mFleet {
    fn drop(&mut self) {
        for task in &self.loggers {
            task.abort();
        }
    }
}

/// Provisions (or reuses) `options.devices` endpoints and starts a client for each.
pub async fn start(
    options: &Lwm2mOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Lwm2mFleet, String> {
    provision(options, progress).await?;
    start_clients(options, progress).await
}

/// The endpoint name and kind of the `i`-th simulated device.
fn endpoint_of(
    options: &Lwm2mOptions,
    i: usize,
) -> (
    String,
    (&'static str, &'static str, &'static str, &'static str, bool),
) {
    let kind = KINDS[i % KINDS.len()];
    (format!("urn:dev:{}{}-{i:05}", options.prefix, kind.0), kind)
}

/// Where the `i`-th client sends from. On loopback the clients spread over 127.10.0.0/16, a
/// hundred per address, as a fleet behind many addresses would: the gateway limits Register
/// attempts per source address (a flood from one address is refused with 4.29).
fn source_of(options: &Lwm2mOptions, i: usize) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv4Addr};
    match options.gateway.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let n = i / 100;
            IpAddr::V4(Ipv4Addr::new(127, 10, (n / 250) as u8, (n % 250 + 1) as u8))
        }
        IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(ip),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// Creates the sites and provisions `options.devices` endpoints through the API (endpoints that
/// exist already are reused).
pub async fn provision(
    options: &Lwm2mOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), String> {
    let trust = Trust::Fingerprint(options.ca_fingerprint.clone());
    let api = Client::new(&options.server, &trust)
        .map_err(|e| e.to_string())?
        .with_token(options.token.clone());
    for (slug, name) in crate::SITES {
        let request = CreateSiteRequest {
            slug: (*slug).into(),
            name: (*name).into(),
        };
        if let Err(err) = api.create_site(&request).await
            && !err.to_string().contains("already exists")
        {
            return Err(format!("creating site {slug}: {err}"));
        }
    }
    progress(&format!("provisioning {} LwM2M devices", options.devices));
    for i in 0..options.devices {
        let (endpoint, (_, site, class, criticality, _)) = endpoint_of(options, i);
        let request = ProvisionLwm2mRequest {
            endpoint: endpoint.clone(),
            site: site.into(),
            class: class.into(),
            criticality: Some(criticality.into()),
            phi: class == "medical",
        };
        // A second run finds its endpoints already provisioned: that is fine (without DTLS the
        // key is not used yet).
        if let Err(err) = api.provision_lwm2m(&request).await
            && !err.to_string().contains("already exists")
        {
            return Err(format!("provisioning {endpoint}: {err}"));
        }
    }
    Ok(())
}

/// Starts a client for each of the `options.devices` provisioned endpoints.
pub async fn start_clients(
    options: &Lwm2mOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Lwm2mFleet, String> {
    let mut fleet = Lwm2mFleet {
        devices: Vec::new(),
        loggers: Vec::new(),
    };
    for i in 0..options.devices {
        let (endpoint, (kind, _, _, _, lock_wipe)) = endpoint_of(options, i);
        let mut store = ObjectStore::standard(DeviceInfo {
            manufacturer: "Ward Simulated Medical".into(),
            model: kind.into(),
            serial: format!("SIM-{i:05}"),
            firmware_version: format!("1.{}.0", i % 7),
        });
        if !lock_wipe {
            store.remove_object(8);
        }
        let config = ClientConfig {
            lifetime: options.lifetime,
            ..ClientConfig::new(endpoint.clone())
        };
        let bind = SocketAddr::new(source_of(options, i), 0);
        let (handle, mut events, _task) = client::spawn(config, store, bind, options.gateway)
            .await
            .map_err(|err| format!("starting {endpoint}: {err}"))?;
        let name = endpoint.clone();
        let logger = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    ClientEvent::Written { .. } | ClientEvent::Updated => {}
                    other => eprintln!("lwm2m {name}: {other:?}"),
                }
            }
        });
        fleet.loggers.push(logger);
        fleet.devices.push((endpoint, handle));
    }
    progress(&format!(
        "{} LwM2M devices registering with {}",
        fleet.len(),
        options.gateway
    ));
    Ok(fleet)
}
