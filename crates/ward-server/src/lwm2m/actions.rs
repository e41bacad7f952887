//! Ward's remote actions in LwM2M terms: which Execute or Write each command kind becomes, and
//! what is reported when it is done. Pure: the gateway sends the requests and reports.

use ward_domain::command::CommandKind;
use ward_lwm2m::content::{ContentFormat, Path, Record, Value};
use ward_lwm2m::objects::{device, lock_wipe};
use ward_lwm2m::server::Request;

/// The failure reported when a device cannot be locked or wiped.
pub const NO_LOCK_WIPE: &str = "device lacks object 8 (Lock and Wipe)";
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
}

/// The plan for `kind` on a device that has (or lacks) object 8.
pub fn plan(kind: CommandKind, has_lock_wipe: bool) -> Plan {
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

#[cfg(test)]
mod tests {
    use super::*;
    use ward_lwm2m::coap::Method;

    fn paths(plan: &Plan) -> Vec<(Method, String)> {
        match plan {
            Plan::Requests { requests, .. } => {
                requests.iter().map(|r| (r.method, r.path.to_string())).collect()
            }
            _ => Vec::new(),
        }
    }

    #[test]
    fn every_kind_has_a_plan() {
        assert_eq!(
            paths(&plan(CommandKind::Reboot, false)),
            [(Method::Post, "/3/0/4".to_owned())]
        );
        assert_eq!(
            paths(&plan(CommandKind::WipeSelective, true)),
            [(Method::Post, "/8/0/3".to_owned())]
        );
        assert_eq!(
            paths(&plan(CommandKind::Lock, true)),
            [(Method::Put, "/8/0/0".to_owned())]
        );
        for kind in [
            CommandKind::Lock,
            CommandKind::Unlock,
            CommandKind::WipeSelective,
            CommandKind::WipeFull,
        ] {
            assert_eq!(plan(kind, false), Plan::Refuse(NO_LOCK_WIPE.into()), "{kind}");
        }
        assert_eq!(
            plan(CommandKind::Quarantine, false),
            Plan::Done(ISOLATION_NOTE.into())
        );
        match plan(CommandKind::Quarantine, true) {
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
                plan(kind, true),
                Plan::Refuse(format!("{kind} is not supported over LwM2M"))
            );
        }
    }
}
