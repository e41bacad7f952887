//! USB mass-storage devices present, from sys/bus/usb/devices.
//!
//! An interface entry (`1-1.2:1.0`, bus-port path, colon, configuration.interface) with
//! `bInterfaceClass` `08` is mass storage. The device it belongs to is the entry named by the part
//! before the colon, and holds the identifying attributes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CollectError;
use super::read;

/// Most USB storage devices reported.
pub const MAX_USB_STORAGE: usize = 256;

const MASS_STORAGE_CLASS: &str = "08";

/// One USB mass-storage device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsbStorageDevice {
    /// The sysfs bus id, e.g. `1-1.2`.
    pub bus_id: String,
    /// `idVendor`, four hex digits.
    pub vendor_id: Option<String>,
    /// `idProduct`, four hex digits.
    pub product_id: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub serial: Option<String>,
}

/// A machine without a USB bus (many VMs and containers) has no sys/bus/usb: that is an empty
/// list, not an error.
pub fn usb_storage(root: &Path) -> Result<Vec<UsbStorageDevice>, CollectError> {
    let dir = "sys/bus/usb/devices";
    if !read::exists(root, dir) {
        return Ok(Vec::new());
    }
    let mut devices: Vec<UsbStorageDevice> = Vec::new();
    for entry in read::list_dir(root, dir)? {
        let Some((bus_id, _interface)) = entry.split_once(':') else {
            continue;
        };
        let class = read::read_optional(root, &format!("{dir}/{entry}/bInterfaceClass"));
        // One device can expose several storage interfaces; report it once.
        if class.as_deref() != Some(MASS_STORAGE_CLASS) || devices.iter().any(|d| d.bus_id == bus_id) {
            continue;
        }
        if devices.len() == MAX_USB_STORAGE {
            break;
        }
        let attribute = |name: &str| read::read_optional(root, &format!("{dir}/{bus_id}/{name}"));
        devices.push(UsbStorageDevice {
            bus_id: read::clean(bus_id, read::MAX_NAME_BYTES),
            vendor_id: attribute("idVendor"),
            product_id: attribute("idProduct"),
            manufacturer: attribute("manufacturer"),
            product: attribute("product"),
            serial: attribute("serial"),
        });
    }
    Ok(devices)
}
