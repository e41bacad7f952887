//! `ward lwm2m provision|list`: constrained devices (LwM2M over CoAP) for the server's gateway.

use clap::Subcommand;
use ward_proto::ProvisionLwm2mRequest;

use crate::connect::connect;
use crate::error::{CliError, Result};
use crate::global::GlobalArgs;
use crate::output::{Output, print_json};
use crate::text::{neutralise, yes_no};

const EXAMPLES: &str = "\
Examples:
  ward lwm2m provision --endpoint urn:dev:pump-0017 --site st-marys/icu --class medical \\
      --criticality life-sustaining --phi
  ward lwm2m list

The pre-shared key is shown once, at provisioning: configure it on the device then (DTLS PSK
mode, identity = the endpoint name). A device that comes with its own key:
  ward lwm2m provision --endpoint urn:dev:pump-0018 --site st-marys/icu --class medical \
      --psk-file pump-0018.key";

/// `ward lwm2m ...`.
#[derive(Debug, Clone, Subcommand)]
#[command(after_help = EXAMPLES)]
pub enum Lwm2mCommand {
    /// Create the device and its LwM2M endpoint; prints the DTLS identity and key (shown once)
    Provision {
        /// The endpoint client name the device registers with (ep=)
        #[arg(long, value_name = "NAME")]
        endpoint: String,
        /// Site the device belongs to (st-marys/icu)
        #[arg(long)]
        site: String,
        /// workstation, mobile, iot-gateway or medical
        #[arg(long)]
        class: String,
        /// life-sustaining, high or normal (default normal)
        #[arg(long)]
        criticality: Option<String>,
        /// The device stores or displays patient data
        #[arg(long)]
        phi: bool,
        /// File holding the device's own pre-shared key in hex (16 to 64 bytes), for devices
        /// that come with one; without it the server generates a key
        #[arg(long, value_name = "FILE")]
        psk_file: Option<std::path::PathBuf>,
    },
    /// Provisioned endpoints and whether they are registered now (never their keys)
    List,
}

pub(crate) async fn lwm2m(global: &GlobalArgs, command: Lwm2mCommand, out: &Output) -> Result {
    let client = connect(global)?;
    match command {
        Lwm2mCommand::Provision {
            endpoint,
            site,
            class,
            criticality,
            phi,
            psk_file,
        } => {
            let psk = match psk_file {
                None => None,
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|err| {
                            CliError::local("io", anyhow::anyhow!("--psk-file {}: {err}", path.display()))
                        })?
                        .trim()
                        .to_owned(),
                ),
            };
            let created = client
                .provision_lwm2m(&ProvisionLwm2mRequest {
                    endpoint,
                    site,
                    class,
                    criticality,
                    phi,
                    psk,
                })
                .await?;
            if out.json {
                return print_json(out, &created);
            }
            out.fields(&[
                ("endpoint", neutralise(&created.endpoint.endpoint)),
                ("device", created.endpoint.device_id.clone()),
                ("site", created.endpoint.site.clone()),
                ("psk identity", neutralise(&created.psk_identity)),
                ("psk (hex)", created.psk.clone()),
            ]);
            out.line("The key is shown only now: configure it on the device.");
            Ok(())
        }
        Lwm2mCommand::List => {
            let endpoints = client.list_lwm2m().await?;
            if out.json {
                return print_json(out, &endpoints);
            }
            out.table(
                &[
                    "ENDPOINT",
                    "DEVICE",
                    "SITE",
                    "CLASS",
                    "CRITICALITY",
                    "KEY",
                    "REGISTERED",
                ],
                endpoints.iter().map(|e| {
                    vec![
                        e.endpoint.clone(),
                        e.device_id.clone(),
                        e.site.clone(),
                        e.class.clone(),
                        e.criticality.clone(),
                        yes_no(e.has_psk),
                        yes_no(e.registered),
                    ]
                }),
            );
            Ok(())
        }
    }
}
