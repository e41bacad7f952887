//! Ward's remote actions in LwM2M terms: which Execute or Write each command kind becomes, and
//! what is reported when it is done. Pure: the gateway sends the requests and reports.

use ward_domain::command::CommandKind;
use ward_lwm2m::content::{ContentFormat, Path, Record, Value};
use ward_lwm2m::objects::{device, firmware_update, lock_wipe};
use ward_lwm2m::server::Request;

/// The failure reported when a device cannot be locked or wiped.
pub const NO_LOCK_WIPE: &str = "device lacks object 8 (Lock and Wipe)";
/// The failure reported when a device cannot take a firmware update.
pub const NO_FIRMWARE: &str = "device lacks object 5 (Firmware Update)";
/// The failure reported when a device never answered.
pub const NO_ANSWER: &str = "no answer from the device";
/// What quarantine and release report: LwM2M has no network isolation of its own.
pub const ISOLATION_NOTE: &str =
    "network isolation must be enforced by the hospital network for LwM2M endpoints (recorded)";

/// /8/0/0 values (Lock and Wipe State).
const UNLOCKED: i64 = 0;
const FULLY_LOCKED: i64 = 2;

/// How a command is carried out over LwM2M.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Send these requests in order; when every one succeeded, report `detail`.
    Requests { requests: Vec<Request>, detail: String },
    /// Nothing to send: the command succeeds at once with this detail (a recorded decision).
    Done(String),
    /// The command cannot be carried out: it fails with this reason.
    Refuse(String),
    /// A firmware update: send `write` (the /5/0/1 Package URI), then follow /5/0/3 State until
    /// Downloaded, Execute /5/0/2 Update, and follow /5/0/5 Update Result (see [`firmware_next`]).
    Firmware { write: Request },
}

/// Where a firmware update is, once its Package URI was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirmwareStage {
    /// Waiting for /5/0/3 State = 2 (Downloaded).
    Downloading,
    /// Update executed; waiting for /5/0/5 Update Result.
    Updating,
    /// Updated; reading the new /3/0/3 Firmware Version for the report.
    ReadingVersion,
}

/// What to do after reading /5/0 during a firmware update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirmwareNext {
    /// Nothing yet: read again later.
    Wait,
    /// Downloaded: Execute /5/0/2 Update.
    ExecuteUpdate,
    /// Update Result 1: the update succeeded.
    Succeeded,
    /// A failure Update Result: the command fails with this reason.
    Failed(String),
}

/// What an /5/0/5 Update Result means.
pub fn update_result_meaning(code: i64) -> &'static str {
    match code {
        0 => "initial value",
        1 => "firmware updated successfully",
        2 => "not enough flash memory for the new firmware package",
        3 => "out of RAM during download",
        4 => "connection lost during download",
        5 => "integrity check failure",
        6 => "unsupported package type",
        7 => "invalid URI",
        8 => "firmware update failed",
        9 => "unsupported protocol",
        _ => "unknown result",
    }
}

/// The next step of a firmware update at `stage`, given the /5/0/3 State and /5/0/5 Update
/// Result just read. Writing the Package URI resets the result to 0, so any failure result seen
/// afterwards is this update's.
pub fn firmware_next(stage: FirmwareStage, state: Option<i64>, result: Option<i64>) -> FirmwareNext {
    match (stage, result) {
        (_, Some(code @ 2..=9)) => FirmwareNext::Failed(format!(
            "firmware update failed: /5/0/5 Update Result {code} ({})",
            update_result_meaning(code)
        )),
        (FirmwareStage::Updating, Some(1)) => FirmwareNext::Succeeded,
        (FirmwareStage::Downloading, _) if state == Some(2) => FirmwareNext::ExecuteUpdate,
        _ => FirmwareNext::Wait,
    }
}

/// The plan for a firmware update to `params.uri` on a device that has (or lacks) object 5.
fn firmware_plan(params: &serde_json::Value, has_firmware: bool) -> Plan {
    if !has_firmware {
        return Plan::Refuse(NO_FIRMWARE.into());
    }
    let Some(uri) = params.get("uri").and_then(serde_json::Value::as_str) else {
        return Plan::Refuse("a firmware update needs the package's uri".into());
    };
    let path = Path::resource(firmware_update::ID, 0, firmware_update::PACKAGE_URI);
    match Request::write_records(
        path,
        ContentFormat::Tlv,
        &[Record::new(path, Value::String(uri.to_owned()))],
        true,
    ) {
        Ok(write) => Plan::Firmware { write },
        Err(err) => Plan::Refuse(format!("cannot encode the package URI: {err}")),
    }
}

/// The plan for `kind` (with its validated `params`) on a device that has (or lacks) object 8
/// and object 5.
pub fn plan(kind: CommandKind, params: &serde_json::Value, has_lock_wipe: bool, has_firmware: bool) -> Plan {
    let lock_state = |state: i64| {
        let path = Path::resource(lock_wipe::ID, 0, lock_wipe::STATE);
        Request::write_records(
            path,
            ContentFormat::Tlv,
            &[Record::new(path, Value::Integer(state))],
            true,
        )
    };
    let execute = |object, resource| Request::execute(Path::resource(object, 0, resource), None);
    let requests = |list: Vec<Request>, detail: &str| Plan::Requests {
        requests: list,
        detail: detail.to_owned(),
    };
    match kind {
        CommandKind::FirmwareUpdate => firmware_plan(params, has_firmware),
        CommandKind::Reboot => requests(
            vec![execute(device::ID, device::REBOOT)],
            "reboot executed (/3/0/4)",
        ),
        CommandKind::WipeSelective | CommandKind::WipeFull => {
            if has_lock_wipe {
                requests(
                    vec![execute(lock_wipe::ID, lock_wipe::WIPE)],
                    "wipe executed (/8/0/3)",
                )
            } else {
                Plan::Refuse(NO_LOCK_WIPE.into())
            }
        }
        CommandKind::Lock | CommandKind::Unlock if !has_lock_wipe => Plan::Refuse(NO_LOCK_WIPE.into()),
        CommandKind::Lock | CommandKind::Unlock | CommandKind::Quarantine | CommandKind::Release => {
            let (state, detail) = match kind {
                CommandKind::Lock => (FULLY_LOCKED, "locked (/8/0/0 = 2)".to_owned()),
                CommandKind::Unlock => (UNLOCKED, "unlocked (/8/0/0 = 0)".to_owned()),
                CommandKind::Quarantine if has_lock_wipe => {
                    (FULLY_LOCKED, format!("{ISOLATION_NOTE}; /8 lock applied"))
                }
                CommandKind::Release if has_lock_wipe => (UNLOCKED, format!("{ISOLATION_NOTE}; /8 unlocked")),
                _ => return Plan::Done(ISOLATION_NOTE.into()),
            };
            match lock_state(state) {
                Ok(request) => requests(vec![request], &detail),
                Err(err) => Plan::Refuse(format!("cannot encode the lock state: {err}")),
            }
        }
        CommandKind::Message
        | CommandKind::Shutdown
        | CommandKind::CollectDiagnostics
        | CommandKind::LostMode
        | CommandKind::ApplySettings => Plan::Refuse(format!("{kind} is not supported over LwM2M")),
    }
}

/// What becomes of a command that an earlier registration of the device was already carrying
/// out when the device registered again (it restarted, or its registration was replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    /// Send it again: doing it twice does no harm (a lock state written again).
    Repeat,
    /// Done: registering again is what it causes (a reboot).
    Succeeded(String),
    /// Not repeated: doing it twice could harm (a wipe, a firmware update); the operator checks.
    Interrupted(String),
}

/// The rule for a command `kind` already sent to an earlier registration: never run a wipe or a
/// firmware update twice because its answer was lost with the registration.
pub fn resumed(kind: CommandKind) -> Resumed {
    match kind {
        CommandKind::Reboot => Resumed::Succeeded(
            "the device registered again after the reboot was sent (it restarted); not sent again".into(),
        ),
        CommandKind::WipeSelective | CommandKind::WipeFull => Resumed::Interrupted(
            "interrupted: the device registered again while the wipe was in progress; not repeated — \
             check the device and send it again if it is still needed"
                .into(),
        ),
        CommandKind::FirmwareUpdate => Resumed::Interrupted(
            "interrupted: the device registered again during the firmware update (it may be running \
             the new firmware: see facts.lwm2m.device.firmware_version); not repeated"
                .into(),
        ),
        CommandKind::Lock
        | CommandKind::Unlock
        | CommandKind::Quarantine
        | CommandKind::Release
        | CommandKind::Message
        | CommandKind::Shutdown
        | CommandKind::CollectDiagnostics
        | CommandKind::LostMode
        | CommandKind::ApplySettings => Resumed::Repeat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_lwm2m::coap::Method;

    #[test]
    fn only_harmless_commands_are_repeated_after_a_re_registration() {
        assert!(matches!(resumed(CommandKind::Reboot), Resumed::Succeeded(_)));
        for kind in [
            CommandKind::WipeSelective,
            CommandKind::WipeFull,
            CommandKind::FirmwareUpdate,
        ] {
            assert!(matches!(resumed(kind), Resumed::Interrupted(_)), "{kind}");
        }
        for kind in [
            CommandKind::Lock,
            CommandKind::Unlock,
            CommandKind::Quarantine,
            CommandKind::Release,
        ] {
            assert_eq!(resumed(kind), Resumed::Repeat, "{kind}");
        }
    }

    const NONE: serde_json::Value = serde_json::Value::Null;

    fn paths(plan: &Plan) -> Vec<(Method, String)> {
        match plan {
            Plan::Requests { requests, .. } => {
                requests.iter().map(|r| (r.method, r.path.to_string())).collect()
            }
            Plan::Firmware { write } => vec![(write.method, write.path.to_string())],
            _ => Vec::new(),
        }
    }

    #[test]
    fn every_kind_has_a_plan() {
        assert_eq!(
            paths(&plan(CommandKind::Reboot, &NONE, false, false)),
            [(Method::Post, "/3/0/4".to_owned())]
        );
        assert_eq!(
            paths(&plan(CommandKind::WipeSelective, &NONE, true, false)),
            [(Method::Post, "/8/0/3".to_owned())]
        );
        assert_eq!(
            paths(&plan(CommandKind::Lock, &NONE, true, false)),
            [(Method::Put, "/8/0/0".to_owned())]
        );
        for kind in [
            CommandKind::Lock,
            CommandKind::Unlock,
            CommandKind::WipeSelective,
            CommandKind::WipeFull,
        ] {
            assert_eq!(
                plan(kind, &NONE, false, false),
                Plan::Refuse(NO_LOCK_WIPE.into()),
                "{kind}"
            );
        }
        assert_eq!(
            plan(CommandKind::Quarantine, &NONE, false, false),
            Plan::Done(ISOLATION_NOTE.into())
        );
        match plan(CommandKind::Quarantine, &NONE, true, false) {
            Plan::Requests { detail, .. } => assert!(detail.ends_with("/8 lock applied"), "{detail}"),
            other => panic!("{other:?}"),
        }
        for kind in [
            CommandKind::Message,
            CommandKind::Shutdown,
            CommandKind::CollectDiagnostics,
            CommandKind::LostMode,
            CommandKind::ApplySettings,
        ] {
            assert_eq!(
                plan(kind, &NONE, true, true),
                Plan::Refuse(format!("{kind} is not supported over LwM2M"))
            );
        }
    }

    #[test]
    fn firmware_updates_follow_state_and_result() {
        let params = serde_json::json!({"uri": "coap://127.0.0.1:1/fw"});
        assert_eq!(
            paths(&plan(CommandKind::FirmwareUpdate, &params, false, true)),
            [(Method::Put, "/5/0/1".to_owned())]
        );
        assert_eq!(
            plan(CommandKind::FirmwareUpdate, &params, true, false),
            Plan::Refuse(NO_FIRMWARE.into())
        );
        use FirmwareStage::{Downloading, Updating};
        assert_eq!(firmware_next(Downloading, Some(1), Some(0)), FirmwareNext::Wait);
        assert_eq!(
            firmware_next(Downloading, Some(2), Some(0)),
            FirmwareNext::ExecuteUpdate
        );
        assert_eq!(firmware_next(Updating, Some(3), Some(0)), FirmwareNext::Wait);
        assert_eq!(firmware_next(Updating, Some(0), Some(1)), FirmwareNext::Succeeded);
        assert_eq!(
            firmware_next(Downloading, Some(0), Some(5)),
            FirmwareNext::Failed(
                "firmware update failed: /5/0/5 Update Result 5 (integrity check failure)".into()
            )
        );
        assert!(matches!(
            firmware_next(Updating, Some(2), Some(8)),
            FirmwareNext::Failed(_)
        ));
    }
}
