//! The `ward` admin command line: argument definitions and their execution against the API.
//!
//! It talks to the server only through `ward-client`; the binary embeds [`GlobalArgs`] and
//! [`AdminCommand`] in its own parser and calls [`run`]. Offline audit verification needs the
//! store, which this crate must not link, so the binary supplies it through [`OfflineAudit`].
//!
//! Modules import downwards only, never in a circle: this file dispatches to one module per noun
//! (`session`, `accounts`, `sites`, `audit`, `devices`, `actions`, `incidents`, `policies`,
//! `lwm2m`), each defining its subcommands next to the code that runs them; `args` gathers them
//! into [`AdminCommand`]; all of them stand on the shared leaves (`global`, `connect`, `config`,
//! `files`, `prompt`, `output`, `error`, `text`).

mod accounts;
mod actions;
mod args;
mod audit;
mod config;
mod connect;
mod devices;
mod error;
mod files;
mod global;
mod incidents;
mod lwm2m;
mod output;
mod policies;
mod prompt;
mod session;
mod sites;
mod text;

use std::process::ExitCode;

pub use accounts::{TokensCommand, UsersCommand};
pub use args::AdminCommand;
pub use async_trait::async_trait;
pub use audit::{AuditCommand, OfflineAudit};
pub use devices::{DevicesCommand, EnrollTokenCommand};
pub use global::GlobalArgs;
pub use session::LoginArgs;
pub use sites::SitesCommand;
pub use text::neutralise;

use crate::error::Result;
use crate::output::Output;

/// Runs one admin command, printing its result to stdout and any error to stderr as
/// `error: <message> (<code>)`, and returns the exit code from CLI.md: 0 success, 1 failed or
/// refused, 2 usage, 3 cannot reach or authenticate to the server, 4 verification failed.
pub async fn run(global: GlobalArgs, command: AdminCommand, offline: &dyn OfflineAudit) -> ExitCode {
    match execute(&global, command, offline).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", error.report());
            ExitCode::from(error.exit_code())
        }
    }
}

/// Hands the command to the module of its noun.
async fn execute(global: &GlobalArgs, command: AdminCommand, offline: &dyn OfflineAudit) -> Result {
    let out = Output::new(global.json);
    match command {
        AdminCommand::Login(args) => session::login(global, &args, &out).await,
        AdminCommand::Logout => session::logout(global, &out).await,
        AdminCommand::Whoami => session::whoami(global, &out).await,
        AdminCommand::Users(command) => accounts::users(global, command, &out).await,
        AdminCommand::Tokens(command) => accounts::tokens(global, command, &out).await,
        AdminCommand::Sites(command) => sites::sites(global, command, &out).await,
        AdminCommand::Audit(command) => audit::audit(global, command, offline, &out).await,
        AdminCommand::EnrollToken(command) => devices::enroll_tokens(global, command, &out).await,
        AdminCommand::Devices(command) => devices::devices(global, command, &out).await,
        AdminCommand::Commands(command) => actions::commands(global, command, &out).await,
        AdminCommand::Incident(command) => incidents::incident(global, command, &out).await,
        AdminCommand::Policy(command) => policies::policy(global, command, &out).await,
        AdminCommand::Compliance(command) => policies::compliance(global, command, &out).await,
        AdminCommand::Group(command) => policies::group(global, command, &out).await,
        AdminCommand::Lwm2m(command) => lwm2m::lwm2m(global, command, &out).await,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::{CommandFactory, Parser};
    use ward_proto::VerifyReportView;

    use super::*;

    /// Stands in for the binary's parser.
    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        global: GlobalArgs,
        #[command(subcommand)]
        command: AdminCommand,
    }

    fn parse(args: &[&str]) -> Result<TestCli, clap::Error> {
        TestCli::try_parse_from(std::iter::once("ward").chain(args.iter().copied()))
    }

    #[test]
    fn command_definitions_are_consistent() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn users_create_parses_repeated_sites() {
        let cli = parse(&[
            "users", "create", "alice", "--role", "operator", "--site", "a", "--site", "b/c",
        ])
        .unwrap();
        match cli.command {
            AdminCommand::Users(UsersCommand::Create {
                name,
                role,
                sites,
                break_glass,
                ..
            }) => {
                assert_eq!(name, "alice");
                assert_eq!(role, "operator");
                assert_eq!(sites, ["a", "b/c"]);
                assert!(!break_glass);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn users_create_without_role_is_a_usage_error() {
        let error = parse(&["users", "create", "alice"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn users_update_needs_a_change_and_no_contradictions() {
        assert!(parse(&["users", "update", "alice"]).is_err());
        assert!(parse(&["users", "update", "alice", "--disable", "--enable"]).is_err());
        assert!(parse(&["users", "update", "alice", "--site", "a", "--all-sites"]).is_err());
        assert!(parse(&["users", "update", "alice", "--disable"]).is_ok());
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = parse(&[
            "audit",
            "list",
            "--after",
            "10",
            "--json",
            "--server",
            "http://127.0.0.1:8443",
        ])
        .unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.server.as_deref(), Some("http://127.0.0.1:8443"));
        assert!(matches!(
            cli.command,
            AdminCommand::Audit(AuditCommand::List { after: Some(10), .. })
        ));
    }

    #[test]
    fn token_scope_is_checked_by_clap() {
        assert!(parse(&["tokens", "create", "backup", "--scope", "admin"]).is_err());
        let cli = parse(&["tokens", "create", "backup"]).unwrap();
        assert!(
            matches!(cli.command, AdminCommand::Tokens(TokensCommand::Create { scope, .. }) if scope == "read")
        );
    }

    #[test]
    fn audit_verify_offline_flags() {
        let cli = parse(&["audit", "verify", "--data-dir", "/var/lib/ward"]).unwrap();
        assert!(matches!(
            cli.command,
            AdminCommand::Audit(AuditCommand::Verify {
                database: None,
                data_dir: Some(_)
            })
        ));
    }

    #[test]
    fn enroll_token_create_parses_every_flag() {
        let cli = parse(&[
            "enroll-token",
            "create",
            "--site",
            "st-marys/icu",
            "--class",
            "medical",
            "--criticality",
            "high",
            "--phi",
            "--expires",
            "7d",
            "--uses",
            "50",
        ])
        .unwrap();
        match cli.command {
            AdminCommand::EnrollToken(EnrollTokenCommand::Create {
                site,
                class,
                criticality,
                phi,
                expires,
                uses,
                allow_full_wipe,
            }) => {
                assert!(!allow_full_wipe);
                assert_eq!((site.as_str(), class.as_str()), ("st-marys/icu", "medical"));
                assert_eq!(criticality.as_deref(), Some("high"));
                assert!(phi);
                assert_eq!(expires.as_deref(), Some("7d"));
                assert_eq!(uses, Some(50));
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = parse(&["enroll-token", "create", "--site", "a", "--class", "mobile"]).unwrap();
        assert!(matches!(
            cli.command,
            AdminCommand::EnrollToken(EnrollTokenCommand::Create {
                criticality: None,
                phi: false,
                expires: None,
                uses: None,
                ..
            })
        ));
    }

    #[test]
    fn enroll_token_create_needs_site_and_class() {
        for args in [
            &["enroll-token", "create", "--class", "medical"][..],
            &["enroll-token", "create", "--site", "a"][..],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.kind(), clap::error::ErrorKind::MissingRequiredArgument);
            assert_eq!(error.exit_code(), 2);
        }
    }

    #[test]
    fn enroll_token_uses_zero_is_refused_before_the_server() {
        let base = [
            "enroll-token",
            "create",
            "--site",
            "a",
            "--class",
            "medical",
            "--uses",
        ];
        for bad in ["0", "100001", "-1", "many"] {
            let args: Vec<&str> = base.iter().copied().chain([bad]).collect();
            let error = parse(&args).unwrap_err();
            if bad != "-1" {
                // clap reads "-1" as an unknown flag; still a usage error.
                assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
            }
            assert_eq!(error.exit_code(), 2);
        }
        let args: Vec<&str> = base.iter().copied().chain(["100000"]).collect();
        assert!(parse(&args).is_ok());
    }

    #[test]
    fn enroll_token_list_and_revoke() {
        assert!(matches!(
            parse(&["enroll-token", "list"]).unwrap().command,
            AdminCommand::EnrollToken(EnrollTokenCommand::List)
        ));
        assert!(matches!(
            parse(&["enroll-token", "revoke", "et-1"]).unwrap().command,
            AdminCommand::EnrollToken(EnrollTokenCommand::Revoke { id }) if id == "et-1"
        ));
        assert!(parse(&["enroll-token", "revoke"]).is_err());
    }

    #[test]
    fn devices_list_takes_a_selector_as_one_argument() {
        let selector = r#"site within "st-marys" and class = "medical" & x # y"#;
        let cli = parse(&["devices", "list", "--filter", selector, "--include-retired"]).unwrap();
        assert!(matches!(
            cli.command,
            AdminCommand::Devices(DevicesCommand::List { filter: Some(f), include_retired: true }) if f == selector
        ));
        // `device` is an alias, as in `ward device lock ID`.
        assert!(matches!(
            parse(&["device", "list"]).unwrap().command,
            AdminCommand::Devices(DevicesCommand::List {
                filter: None,
                include_retired: false
            })
        ));
    }

    #[test]
    fn devices_destructive_verbs_and_export() {
        assert!(matches!(
            parse(&["devices", "revoke", "d-1", "--yes"]).unwrap().command,
            AdminCommand::Devices(DevicesCommand::Revoke { id, yes: true }) if id == "d-1"
        ));
        assert!(matches!(
            parse(&["devices", "retire", "d-1"]).unwrap().command,
            AdminCommand::Devices(DevicesCommand::Retire { yes: false, .. })
        ));
        assert!(parse(&["devices", "revoke"]).is_err());
        assert!(matches!(
            parse(&["devices", "show", "d-1", "--json"]).unwrap(),
            TestCli {
                global: GlobalArgs { json: true, .. },
                command: AdminCommand::Devices(DevicesCommand::Show { .. })
            }
        ));
        let cli = parse(&[
            "devices",
            "fhir",
            "--filter",
            "class = \"medical\"",
            "-o",
            "b.json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            AdminCommand::Devices(DevicesCommand::Fhir { filter: Some(_), output: Some(path), .. })
                if path == std::path::Path::new("b.json")
        ));
    }

    #[test]
    fn device_actions_take_an_id_or_a_filter_never_both() {
        use crate::actions::{ActionCommand, CommandsCommand};
        assert!(matches!(
            parse(&["device", "lock", "d-1", "--yes"]).unwrap().command,
            AdminCommand::Devices(DevicesCommand::Action(ActionCommand::Lock(t))) if t.id.as_deref() == Some("d-1") && t.yes
        ));
        assert!(matches!(
            parse(&["device", "quarantine", "--filter", "class = \"medical\"", "--no-wait"]).unwrap().command,
            AdminCommand::Devices(DevicesCommand::Action(ActionCommand::Quarantine(t))) if t.id.is_none() && t.no_wait
        ));
        assert!(parse(&["device", "lock"]).is_err(), "a target is required");
        assert!(
            parse(&["device", "lock", "d-1", "--filter", "x"]).is_err(),
            "not both"
        );
        assert!(
            parse(&["device", "message", "d-1"]).is_err(),
            "a message needs --text"
        );
        assert!(
            parse(&["device", "wipe", "d-1", "--full"]).is_err(),
            "--full needs --confirm-hostname"
        );
        assert!(
            parse(&["device", "shutdown", "d-1", "--clinician", "Dr A"]).is_err(),
            "a clinician needs a reason"
        );
        assert!(matches!(
            parse(&["device", "wipe", "d-1", "--full", "--confirm-hostname", "tab-1"])
                .unwrap()
                .command,
            AdminCommand::Devices(DevicesCommand::Action(ActionCommand::Wipe { full: true, .. }))
        ));
        assert!(matches!(
            parse(&[
                "device",
                "diagnostics",
                "d-1",
                "-o",
                "b.json",
                "--max-bytes",
                "4096"
            ])
            .unwrap()
            .command,
            AdminCommand::Devices(DevicesCommand::Action(ActionCommand::Diagnostics {
                max_bytes: Some(4096),
                ..
            }))
        ));
        assert!(matches!(
            parse(&["device", "firmware-update", "d-1", "--uri", "coap://fw.local/p.bin"])
                .unwrap()
                .command,
            AdminCommand::Devices(DevicesCommand::Action(ActionCommand::FirmwareUpdate { uri, .. }))
                if uri == "coap://fw.local/p.bin"
        ));
        assert!(
            parse(&["device", "firmware-update", "d-1"]).is_err(),
            "a firmware update needs --uri"
        );
        assert!(parse(&["device", "lock", "d-1", "--wait", "soon"]).is_err());
        assert!(matches!(
            parse(&["commands", "list", "--state", "failed"]).unwrap().command,
            AdminCommand::Commands(CommandsCommand::List { state: Some(s), .. }) if s == "failed"
        ));
        assert!(parse(&["commands", "cancel"]).is_err());
    }

    #[test]
    fn incident_commands_parse_and_refuse_half_given_clinicians() {
        use crate::incidents::IncidentCommand;
        assert!(matches!(
            parse(&[
                "incident",
                "declare",
                "--title",
                "t",
                "--scope",
                "class = \"medical\""
            ])
            .unwrap()
            .command,
            AdminCommand::Incident(IncidentCommand::Declare { severity: None, .. })
        ));
        assert!(
            parse(&["incident", "declare", "--title", "t"]).is_err(),
            "a scope is required"
        );
        assert!(parse(&["incident", "approve", "i-1", "--clinician", "Dr A"]).is_err());
        assert!(matches!(
            parse(&["incident", "lift", "i-1", "--device", "d1", "--device", "d2", "--yes"]).unwrap().command,
            AdminCommand::Incident(IncidentCommand::Lift { devices, yes: true, .. }) if devices.len() == 2
        ));
        assert!(matches!(
            parse(&["incident", "status", "i-1", "--watch"]).unwrap().command,
            AdminCommand::Incident(IncidentCommand::Status { watch: true, .. })
        ));
        assert!(
            parse(&["incident", "close", "i-1", "--nature", "x"]).is_err(),
            "contact point and consequences"
        );
        assert!(parse(&["incident", "contain", "i-1", "--wait", "x"]).is_err());
    }

    #[test]
    fn every_command_and_flag_has_help() {
        fn check(command: &clap::Command, path: &str) {
            let path = format!("{path} {}", command.get_name());
            assert!(command.get_about().is_some(), "{path} has no help");
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                assert!(
                    builtin || arg.get_help().is_some(),
                    "{path} --{} has no help",
                    arg.get_id()
                );
            }
            for sub in command.get_subcommands().filter(|sub| sub.get_name() != "help") {
                check(sub, &path);
            }
        }
        let root = TestCli::command();
        for noun in ["enroll-token", "devices"] {
            let command = root.find_subcommand(noun).unwrap();
            check(command, "ward");
        }
        let create = root
            .find_subcommand("enroll-token")
            .unwrap()
            .find_subcommand("create")
            .unwrap();
        assert!(
            create
                .get_after_help()
                .unwrap()
                .to_string()
                .contains("ward enroll-token create --site")
        );
        let list = root
            .find_subcommand("devices")
            .unwrap()
            .find_subcommand("list")
            .unwrap();
        assert!(
            list.get_after_help()
                .unwrap()
                .to_string()
                .contains(r#"site within "st-marys""#)
        );
    }

    #[test]
    fn run_future_is_send() {
        // The binary may spawn `run` on a multi-threaded runtime.
        fn assert_send<T: Send>(_: &T) {}
        struct NoStore;
        #[async_trait]
        impl OfflineAudit for NoStore {
            async fn verify(
                &self,
                _: Option<String>,
                _: Option<PathBuf>,
            ) -> anyhow::Result<VerifyReportView> {
                anyhow::bail!("no store")
            }
        }
        let future = run(GlobalArgs::default(), AdminCommand::Whoami, &NoStore);
        assert_send(&future);
    }
}
