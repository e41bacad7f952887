//! The object model: definitions of /3 Device, /4 Connectivity Monitoring, /5 Firmware Update and
//! /8 Lock and Wipe as in the OMA LwM2M registry (the subset of resources Ward uses), and the
//! firmware-update state machine.
//!
//! Object 8 follows the registry's `8.xml` (OMA-TS-LWM2M_LockWipe-V1_0_4): State (0, RW, 0..2),
//! Lock target (1, W, multiple), Wipe item (2, R, multiple), Wipe (3, E), Wipe target (4, W,
//! multiple), Lock or Wipe Operation Result (5, R, 0..8).

pub mod firmware;

use crate::content::{ResourceType, TypeLookup};

/// What the server may do with a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operations {
    /// Read (and Observe, Discover).
    pub read: bool,
    /// Write.
    pub write: bool,
    /// Execute.
    pub execute: bool,
}

impl Operations {
    /// Read only.
    pub const R: Self = Self {
        read: true,
        write: false,
        execute: false,
    };
    /// Write only.
    pub const W: Self = Self {
        read: false,
        write: true,
        execute: false,
    };
    /// Read and write.
    pub const RW: Self = Self {
        read: true,
        write: true,
        execute: false,
    };
    /// Execute only.
    pub const E: Self = Self {
        read: false,
        write: false,
        execute: true,
    };
}

/// One resource of an object definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceDef {
    /// Resource id.
    pub id: u16,
    /// Name as in the registry.
    pub name: &'static str,
    /// Data type ([`ResourceType::None`] for executables).
    pub kind: ResourceType,
    /// Allowed operations.
    pub operations: Operations,
    /// True if the resource has resource instances.
    pub multiple: bool,
}

/// An object definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectDef {
    /// Object id.
    pub id: u16,
    /// Name as in the registry.
    pub name: &'static str,
    /// Object version (`ver=` in registration links when not 1.0).
    pub version: &'static str,
    /// True if the object may have more than one instance.
    pub multiple_instances: bool,
    /// The resources this crate models.
    pub resources: &'static [ResourceDef],
}

impl ObjectDef {
    /// The resource with id `id`.
    pub fn resource(&self, id: u16) -> Option<&'static ResourceDef> {
        self.resources.iter().find(|r| r.id == id)
    }
}

const fn res(
    id: u16,
    name: &'static str,
    kind: ResourceType,
    operations: Operations,
    multiple: bool,
) -> ResourceDef {
    ResourceDef {
        id,
        name,
        kind,
        operations,
        multiple,
    }
}

use Operations as Op;
use ResourceType as T;

/// Resource ids of /3 Device.
pub mod device {
    /// Object id.
    pub const ID: u16 = 3;
    /// Manufacturer (R, string).
    pub const MANUFACTURER: u16 = 0;
    /// Model number (R, string).
    pub const MODEL: u16 = 1;
    /// Serial number (R, string).
    pub const SERIAL: u16 = 2;
    /// Firmware version (R, string).
    pub const FIRMWARE_VERSION: u16 = 3;
    /// Reboot (E).
    pub const REBOOT: u16 = 4;
    /// Factory reset (E).
    pub const FACTORY_RESET: u16 = 5;
    /// Battery level, percent (R, integer).
    pub const BATTERY_LEVEL: u16 = 9;
    /// Free memory, KiB (R, integer).
    pub const MEMORY_FREE: u16 = 10;
    /// Error codes (R, integer, multiple).
    pub const ERROR_CODE: u16 = 11;
    /// Current time (RW, time).
    pub const CURRENT_TIME: u16 = 13;
    /// UTC offset, e.g. "+01:00" (RW, string).
    pub const UTC_OFFSET: u16 = 14;
    /// Timezone, IANA name (RW, string).
    pub const TIMEZONE: u16 = 15;
    /// Supported binding and modes (R, string).
    pub const SUPPORTED_BINDING: u16 = 16;
    /// Device type (R, string).
    pub const DEVICE_TYPE: u16 = 17;
    /// Hardware version (R, string).
    pub const HARDWARE_VERSION: u16 = 18;
    /// Software version (R, string).
    pub const SOFTWARE_VERSION: u16 = 19;
    /// Battery status 0..6 (R, integer).
    pub const BATTERY_STATUS: u16 = 20;
    /// Total memory, KiB (R, integer).
    pub const MEMORY_TOTAL: u16 = 21;
}

/// Resource ids of /4 Connectivity Monitoring.
pub mod connectivity {
    /// Object id.
    pub const ID: u16 = 4;
    /// Network bearer (R, integer).
    pub const NETWORK_BEARER: u16 = 0;
    /// Available network bearers (R, integer, multiple).
    pub const AVAILABLE_BEARERS: u16 = 1;
    /// Radio signal strength, dBm (R, integer).
    pub const RADIO_SIGNAL_STRENGTH: u16 = 2;
    /// Link quality (R, integer).
    pub const LINK_QUALITY: u16 = 3;
    /// IP addresses (R, string, multiple).
    pub const IP_ADDRESSES: u16 = 4;
    /// Router IP addresses (R, string, multiple).
    pub const ROUTER_IP_ADDRESSES: u16 = 5;
    /// Link utilization, percent (R, integer).
    pub const LINK_UTILIZATION: u16 = 6;
    /// APN (R, string, multiple).
    pub const APN: u16 = 7;
}

/// Resource ids of /5 Firmware Update.
pub mod firmware_update {
    /// Object id.
    pub const ID: u16 = 5;
    /// Package (W, opaque).
    pub const PACKAGE: u16 = 0;
    /// Package URI (RW, string).
    pub const PACKAGE_URI: u16 = 1;
    /// Update (E).
    pub const UPDATE: u16 = 2;
    /// State 0..3 (R, integer).
    pub const STATE: u16 = 3;
    /// Update result 0..9 (R, integer).
    pub const UPDATE_RESULT: u16 = 5;
    /// Package name (R, string).
    pub const PKG_NAME: u16 = 6;
    /// Package version (R, string).
    pub const PKG_VERSION: u16 = 7;
    /// Firmware update protocol support (R, integer, multiple).
    pub const PROTOCOL_SUPPORT: u16 = 8;
    /// Firmware update delivery method (R, integer).
    pub const DELIVERY_METHOD: u16 = 9;
}

/// Resource ids of /8 Lock and Wipe.
pub mod lock_wipe {
    /// Object id.
    pub const ID: u16 = 8;
    /// State: 0 unlocked, 1 partially locked, 2 fully locked (RW, integer).
    pub const STATE: u16 = 0;
    /// Lock targets (W, string, multiple).
    pub const LOCK_TARGET: u16 = 1;
    /// Wipe items (R, string, multiple).
    pub const WIPE_ITEM: u16 = 2;
    /// Wipe (E).
    pub const WIPE: u16 = 3;
    /// Wipe targets (W, string, multiple).
    pub const WIPE_TARGET: u16 = 4;
    /// Lock or wipe operation result 0..8 (R, integer).
    pub const RESULT: u16 = 5;
}

/// /3 Device (single instance, object version 1.1).
pub const DEVICE: ObjectDef = ObjectDef {
    id: device::ID,
    name: "Device",
    version: "1.1",
    multiple_instances: false,
    resources: &[
        res(0, "Manufacturer", T::String, Op::R, false),
        res(1, "Model Number", T::String, Op::R, false),
        res(2, "Serial Number", T::String, Op::R, false),
        res(3, "Firmware Version", T::String, Op::R, false),
        res(4, "Reboot", T::None, Op::E, false),
        res(5, "Factory Reset", T::None, Op::E, false),
        res(9, "Battery Level", T::Integer, Op::R, false),
        res(10, "Memory Free", T::Integer, Op::R, false),
        res(11, "Error Code", T::Integer, Op::R, true),
        res(13, "Current Time", T::Time, Op::RW, false),
        res(14, "UTC Offset", T::String, Op::RW, false),
        res(15, "Timezone", T::String, Op::RW, false),
        res(16, "Supported Binding and Modes", T::String, Op::R, false),
        res(17, "Device Type", T::String, Op::R, false),
        res(18, "Hardware Version", T::String, Op::R, false),
        res(19, "Software Version", T::String, Op::R, false),
        res(20, "Battery Status", T::Integer, Op::R, false),
        res(21, "Memory Total", T::Integer, Op::R, false),
    ],
};

/// /4 Connectivity Monitoring (single instance).
pub const CONNECTIVITY_MONITORING: ObjectDef = ObjectDef {
    id: connectivity::ID,
    name: "Connectivity Monitoring",
    version: "1.0",
    multiple_instances: false,
    resources: &[
        res(0, "Network Bearer", T::Integer, Op::R, false),
        res(1, "Available Network Bearer", T::Integer, Op::R, true),
        res(2, "Radio Signal Strength", T::Integer, Op::R, false),
        res(3, "Link Quality", T::Integer, Op::R, false),
        res(4, "IP Addresses", T::String, Op::R, true),
        res(5, "Router IP Addresses", T::String, Op::R, true),
        res(6, "Link Utilization", T::Integer, Op::R, false),
        res(7, "APN", T::String, Op::R, true),
    ],
};

/// /5 Firmware Update (single instance).
pub const FIRMWARE_UPDATE: ObjectDef = ObjectDef {
    id: firmware_update::ID,
    name: "Firmware Update",
    version: "1.0",
    multiple_instances: false,
    resources: &[
        res(0, "Package", T::Opaque, Op::W, false),
        res(1, "Package URI", T::String, Op::RW, false),
        res(2, "Update", T::None, Op::E, false),
        res(3, "State", T::Integer, Op::R, false),
        res(5, "Update Result", T::Integer, Op::R, false),
        res(6, "PkgName", T::String, Op::R, false),
        res(7, "PkgVersion", T::String, Op::R, false),
        res(8, "Firmware Update Protocol Support", T::Integer, Op::R, true),
        res(9, "Firmware Update Delivery Method", T::Integer, Op::R, false),
    ],
};

/// /8 Lock and Wipe (single instance).
pub const LOCK_AND_WIPE: ObjectDef = ObjectDef {
    id: lock_wipe::ID,
    name: "Lock and Wipe",
    version: "1.0",
    multiple_instances: false,
    resources: &[
        res(0, "State", T::Integer, Op::RW, false),
        res(1, "Lock target", T::String, Op::W, true),
        res(2, "Wipe item", T::String, Op::R, true),
        res(3, "Wipe", T::None, Op::E, false),
        res(4, "Wipe target", T::String, Op::W, true),
        res(5, "Lock or Wipe Operation Result", T::Integer, Op::R, false),
    ],
};

/// Every object this crate defines.
pub const ALL: [&ObjectDef; 4] = [
    &DEVICE,
    &CONNECTIVITY_MONITORING,
    &FIRMWARE_UPDATE,
    &LOCK_AND_WIPE,
];

/// The definition of object `id`, if this crate has it.
pub fn object(id: u16) -> Option<&'static ObjectDef> {
    ALL.into_iter().find(|o| o.id == id)
}

/// The definition of resource `resource` of object `object`.
pub fn resource(object_id: u16, resource_id: u16) -> Option<&'static ResourceDef> {
    object(object_id).and_then(|o| o.resource(resource_id))
}

/// A [`TypeLookup`] over the objects defined here.
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardObjects;

impl TypeLookup for StandardObjects {
    fn resource_type(&self, object_id: u16, resource_id: u16) -> Option<ResourceType> {
        resource(object_id, resource_id).map(|r| r.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_sorted() {
        for o in ALL {
            assert!(o.resources.windows(2).all(|w| w[0].id < w[1].id), "{}", o.name);
        }
    }

    #[test]
    fn lookup_finds_types() {
        assert_eq!(StandardObjects.resource_type(3, 9), Some(ResourceType::Integer));
        assert_eq!(StandardObjects.resource_type(5, 0), Some(ResourceType::Opaque));
        assert_eq!(StandardObjects.resource_type(8, 3), Some(ResourceType::None));
        assert_eq!(StandardObjects.resource_type(3, 99), None);
        assert_eq!(StandardObjects.resource_type(42, 0), None);
        assert!(resource(8, 1).is_some_and(|r| r.multiple && r.operations == Operations::W));
    }
}
