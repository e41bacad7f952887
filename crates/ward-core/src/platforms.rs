//! Which device platform a device belongs to, and whether its platform can carry out a kind of
//! command (the command-kind table in `ward_domain::command::KINDS`). A kind a platform cannot
//! perform is refused for that device before anything is stored: one device's command is refused
//! with the reason, a bulk action leaves the device out and counts it, and an incident's plan
//! withholds it with the reason, which the preview shows.

use ward_domain::command::{CommandKind, Platform};
use ward_store::DeviceRecord;

use crate::lwm2m::ENROLLED_BY;

/// The platform a device is managed through (an LwM2M endpoint is provisioned, not enrolled).
pub fn platform_of(device: &DeviceRecord) -> Platform {
    if device.enroll_token_id == ENROLLED_BY {
        Platform::Lwm2m
    } else {
        Platform::Agent
    }
}

/// The platform's name as people say it.
pub fn platform_label(platform: Platform) -> &'static str {
    match platform {
        Platform::Agent => "Linux agent",
        Platform::Lwm2m => "LwM2M",
    }
}

/// Whether `device`'s platform can carry out `kind`.
pub fn supports(kind: CommandKind, device: &DeviceRecord) -> bool {
    kind.supported_on(platform_of(device))
}

/// Why `device` cannot carry out `kind`, when its platform cannot.
pub fn unsupported(kind: CommandKind, device: &DeviceRecord) -> Option<String> {
    let platform = platform_of(device);
    (!kind.supported_on(platform)).then(|| {
        format!(
            "{kind} is not something a {} device can do ({})",
            platform_label(platform),
            device.hostname
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ward_domain::device::{Criticality, DeviceClass};

    use super::*;

    fn device(enrolled_by: &str) -> DeviceRecord {
        let mut device = crate::lwm2m::new_device(
            "d1",
            "pump-7",
            "st-marys".parse().unwrap(),
            DeviceClass::Medical,
            Criticality::High,
            false,
            0,
        );
        device.enroll_token_id = enrolled_by.into();
        device
    }

    #[test]
    fn a_device_s_platform_decides_what_it_can_be_asked() {
        let pump = device(ENROLLED_BY);
        let workstation = device("token-1");
        assert_eq!(platform_of(&pump), Platform::Lwm2m);
        assert_eq!(platform_of(&workstation), Platform::Agent);
        let why = unsupported(CommandKind::Message, &pump).unwrap();
        assert!(
            why.contains("message") && why.contains("LwM2M") && why.contains("pump-7"),
            "{why}"
        );
        assert_eq!(unsupported(CommandKind::Lock, &pump), None);
        assert!(unsupported(CommandKind::FirmwareUpdate, &workstation).is_some());
        assert_eq!(unsupported(CommandKind::Message, &workstation), None);
    }
}
