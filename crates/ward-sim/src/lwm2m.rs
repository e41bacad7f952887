//! Simulated constrained devices: N in-repo LwM2M clients (`ward_lwm2m::client`) that provision
//! themselves through the API (`POST /lwm2m/endpoints`, each with a pre-shared key the simulator
//! generates and keeps in its keys file) and register with the server's LwM2M gateway over DTLS
//! with that key, or over plain UDP. Each has the standard objects /3, /4, /5 and /8 (every fourth one
//! lacks /8, like many real sensors) and logs what the server asks it to do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use rand::RngCore;

use tokio::task::JoinHandle;
use ward_client::{Client, Trust};
use ward_lwm2m::client::{self, ClientConfig, ClientEvent, ClientHandle, DeviceInfo, ObjectStore, Security};
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
    /// The gateway's UDP address: its DTLS address when `dtls`, else its plain one (which it
    /// only opens on loopback by default).
    pub gateway: SocketAddr,
    /// Register over DTLS with each endpoint's pre-shared key.
    pub dtls: bool,
    /// Where the endpoints' keys are kept between runs (`None`: only in memory).
    pub keys_file: Option<PathBuf>,
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
    let keys = provision(options, progress).await?;
    start_clients(options, &keys, progress).await
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

/// The simulated endpoints' pre-shared keys by endpoint name.
#[derive(Debug, Default, Clone)]
pub struct Keys(HashMap<String, Vec<u8>>);

impl Keys {
    fn load(path: Option<&PathBuf>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(format!("reading {}: {err}", path.display())),
        };
        let map: HashMap<String, String> =
            serde_json::from_str(&text).map_err(|err| format!("{}: {err}", path.display()))?;
        let mut keys = HashMap::new();
        for (endpoint, key) in map {
            let key = hex::decode(&key)
                .map_err(|_| format!("{}: the key of {endpoint} is not hex", path.display()))?;
            keys.insert(endpoint, key);
        }
        Ok(Self(keys))
    }

    fn save(&self, path: Option<&PathBuf>) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let Some(path) = path else {
            return Ok(());
        };
        let map: HashMap<&String, String> = self.0.iter().map(|(e, k)| (e, hex::encode(k))).collect();
        let text = serde_json::to_string_pretty(&map).map_err(|err| err.to_string())?;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|err| format!("writing {}: {err}", path.display()))
    }

    /// The key of `endpoint`.
    pub fn get(&self, endpoint: &str) -> Option<&[u8]> {
        self.0.get(endpoint).map(Vec::as_slice)
    }
}

/// Creates the sites and provisions `options.devices` endpoints through the API, each with a
/// key of its own (endpoints that exist already are reused with the key kept in
/// `options.keys_file`).
pub async fn provision(
    options: &Lwm2mOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Keys, String> {
    let mut keys = Keys::load(options.keys_file.as_ref())?;
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
        let known = keys.0.contains_key(&endpoint);
        let key = keys
            .0
            .entry(endpoint.clone())
            .or_insert_with(|| {
                let mut key = vec![0u8; 16];
                rand::rng().fill_bytes(&mut key);
                key
            })
            .clone();
        let request = ProvisionLwm2mRequest {
            endpoint: endpoint.clone(),
            site: site.into(),
            class: class.into(),
            criticality: Some(criticality.into()),
            phi: class == "medical",
            psk: Some(hex::encode(&key)),
        };
        // A second run finds its endpoints already provisioned: that is fine when their keys
        // were kept.
        match api.provision_lwm2m(&request).await {
            Ok(_) => {}
            Err(err) if err.to_string().contains("already exists") => {
                if !known {
                    keys.0.remove(&endpoint);
                    if options.dtls {
                        return Err(format!(
                            "{endpoint} is already provisioned on the server but its key is not in {}; \
                             use another --prefix or the keys file of the run that provisioned it",
                            options
                                .keys_file
                                .as_ref()
                                .map_or_else(|| "memory".to_owned(), |p| p.display().to_string())
                        ));
                    }
                }
            }
            Err(err) => return Err(format!("provisioning {endpoint}: {err}")),
        }
    }
    keys.save(options.keys_file.as_ref())?;
    Ok(keys)
}

/// Starts a client for each of the `options.devices` provisioned endpoints.
pub async fn start_clients(
    options: &Lwm2mOptions,
    keys: &Keys,
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
        let security = match (options.dtls, keys.get(&endpoint)) {
            (false, _) => Security::None,
            (true, Some(key)) => Security::Psk {
                identity: endpoint.as_bytes().to_vec(),
                key: key.to_vec(),
            },
            (true, None) => return Err(format!("no pre-shared key for {endpoint}")),
        };
        let (handle, mut events, _task) = client::spawn_with(config, store, bind, options.gateway, security)
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
        "{} LwM2M devices registering with {} over {}",
        fleet.len(),
        options.gateway,
        if options.dtls { "DTLS (PSK)" } else { "plain UDP" }
    ));
    Ok(fleet)
}
