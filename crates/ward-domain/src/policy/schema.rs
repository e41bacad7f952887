//! The fields a selector can name, with their types, so that a policy check naming a fact no
//! device reports (`facts.disk.encrypted` for `facts.disks...`) or comparing it with the wrong
//! kind of value (`facts.firewall.active = "yes"`) is refused when the policy is applied, not
//! silently "unknown" on every device for ever.
//!
//! Paths run through arrays as the selector does (`facts.packages.items.name` looks at every
//! package). The agent crate has a test that every field a fully populated fact report carries is
//! listed here.

use crate::selector::{CmpOp, Comparison, Literal, Predicate, Selector};

/// What kind of value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Free text.
    Text,
    /// Text that compares as a version (`"9.10" > "9.9"`); numbers are allowed against it.
    Version,
    Number,
    Bool,
    /// A time in RFC 3339.
    Time,
}

impl FieldType {
    fn describe(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Version => "a version",
            FieldType::Number => "a number",
            FieldType::Bool => "true or false",
            FieldType::Time => "a time",
        }
    }
}

use FieldType::{Bool, Number, Text, Time, Version};

/// Every known leaf field. Intermediate paths (`facts.disks`) are known too, for `exists`.
pub const FIELDS: &[(&str, FieldType)] = &[
    // The device record.
    ("id", Text),
    ("site", Text),
    ("class", Text),
    ("criticality", Text),
    ("phi", Bool),
    ("hostname", Text),
    ("state", Text),
    ("online", Bool),
    ("last_seen_at", Time),
    ("enrolled_at", Time),
    ("certificate_expires_at", Time),
    ("groups", Text),
    ("compliance.status", Text),
    ("compliance.failing", Text),
    // What the agent reports.
    ("facts.agent_version", Version),
    ("facts.os.id", Text),
    ("facts.os.name", Text),
    ("facts.os.version", Text),
    ("facts.os.version_id", Version),
    ("facts.os.pretty_name", Text),
    ("facts.kernel.release", Version),
    ("facts.kernel.version", Text),
    ("facts.hostname", Text),
    ("facts.uptime_seconds", Number),
    ("facts.cpu.model", Text),
    ("facts.cpu.logical_cores", Number),
    ("facts.memory.total_bytes", Number),
    ("facts.memory.available_bytes", Number),
    ("facts.disks.devices.name", Text),
    ("facts.disks.devices.size_bytes", Number),
    ("facts.disks.devices.removable", Bool),
    ("facts.disks.devices.rotational", Bool),
    ("facts.disks.devices.model", Text),
    ("facts.disks.devices.encrypted", Bool),
    ("facts.disks.devices.partitions.name", Text),
    ("facts.disks.devices.partitions.size_bytes", Number),
    ("facts.disks.devices.partitions.encrypted", Bool),
    ("facts.disks.crypt_mappings.name", Text),
    ("facts.disks.crypt_mappings.device", Text),
    ("facts.disks.crypt_mappings.kind", Text),
    ("facts.disks.crypt_mappings.backing_devices", Text),
    ("facts.disks.root_filesystem.device", Text),
    ("facts.disks.root_filesystem.fs_type", Text),
    ("facts.disks.root_filesystem.encrypted", Bool),
    ("facts.firewall.active", Bool),
    ("facts.firewall.backends.name", Text),
    ("facts.firewall.backends.active", Bool),
    ("facts.firewall.backends.detail", Text),
    ("facts.listening.proto", Text),
    ("facts.listening.address", Text),
    ("facts.listening.port", Number),
    ("facts.usb_storage.bus_id", Text),
    ("facts.usb_storage.vendor_id", Text),
    ("facts.usb_storage.product_id", Text),
    ("facts.usb_storage.manufacturer", Text),
    ("facts.usb_storage.product", Text),
    ("facts.usb_storage.serial", Text),
    ("facts.packages.manager", Text),
    ("facts.packages.n_installed", Number),
    ("facts.packages.truncated", Bool),
    ("facts.packages.items.name", Text),
    ("facts.packages.items.version", Version),
    ("facts.packages.items.architecture", Text),
    ("facts.network.interfaces.name", Text),
    ("facts.network.interfaces.mac_address", Text),
    ("facts.network.interfaces.operstate", Text),
    ("facts.network.interfaces.up", Bool),
    ("facts.network.interfaces.ipv4", Text),
    ("facts.network.interfaces.ipv6", Text),
    ("facts.network.ipv4_source", Text),
    ("facts.screen_lock.source", Text),
    ("facts.screen_lock.lock_enabled", Bool),
    ("facts.screen_lock.idle_delay_seconds", Number),
    ("facts.screen_lock.lock_delay_seconds", Number),
    ("facts.screen_lock.locked_keys", Text),
    ("facts.time_sync.synchronized", Bool),
    ("facts.time_sync.services.name", Text),
    ("facts.time_sync.services.synchronized", Bool),
    ("facts.errors.collector", Text),
    ("facts.errors.error", Text),
    // What the agent reports about the settings policies pushed to it.
    ("facts.settings.digest", Text),
    ("facts.settings.applied_at", Time),
    ("facts.settings.drift", Text),
    ("facts.settings.denied_packages", Text),
    // What the LwM2M gateway reads from a constrained device (docs/lwm2m.md).
    ("facts.lwm2m.endpoint", Text),
    ("facts.lwm2m.registered", Bool),
    ("facts.lwm2m.lifetime_s", Number),
    ("facts.lwm2m.queue_mode", Bool),
    ("facts.lwm2m.version", Text),
    ("facts.lwm2m.binding", Text),
    ("facts.lwm2m.security", Text),
    ("facts.lwm2m.objects", Text),
    ("facts.lwm2m.device.manufacturer", Text),
    ("facts.lwm2m.device.model_number", Text),
    ("facts.lwm2m.device.serial_number", Text),
    ("facts.lwm2m.device.firmware_version", Version),
    ("facts.lwm2m.device.software_version", Version),
    ("facts.lwm2m.device.hardware_version", Text),
    ("facts.lwm2m.device.device_type", Text),
    ("facts.lwm2m.device.battery_level", Number),
    ("facts.lwm2m.device.battery_status", Number),
    ("facts.lwm2m.device.memory_free", Number),
    ("facts.lwm2m.device.memory_total", Number),
    ("facts.lwm2m.firmware.state", Number),
    ("facts.lwm2m.firmware.update_result", Number),
    ("facts.lwm2m.connectivity.network_bearer", Number),
    ("facts.lwm2m.connectivity.radio_signal_strength", Number),
    ("facts.lwm2m.connectivity.link_quality", Number),
    ("facts.lwm2m.connectivity.ip_addresses", Text),
];

/// The type of a known leaf field; `None` for an intermediate path or an unknown one.
pub fn field_type(path: &str) -> Option<FieldType> {
    FIELDS
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, kind)| *kind)
}

/// Whether `path` is a known leaf or a prefix of one (`facts.disks`).
pub fn is_known(path: &str) -> bool {
    FIELDS.iter().any(|(name, _)| {
        *name == path || (name.starts_with(path) && name.as_bytes().get(path.len()) == Some(&b'.'))
    })
}

/// Checks every comparison of `selector` against the schema: the field must be known and the
/// value must suit its type. Returns one message per problem.
pub fn check_selector(selector: &Selector) -> Vec<String> {
    let mut problems = Vec::new();
    let mut pending = vec![selector.expr()];
    while let Some(expr) = pending.pop() {
        match expr {
            crate::selector::Expr::Or(items) | crate::selector::Expr::And(items) => {
                pending.extend(items.iter().rev())
            }
            crate::selector::Expr::Not(inner) => pending.push(inner),
            crate::selector::Expr::Compare(comparison) => {
                if let Some(problem) = check_comparison(comparison) {
                    problems.push(problem);
                }
            }
        }
    }
    problems
}

fn check_comparison(comparison: &Comparison) -> Option<String> {
    let field = comparison.field.to_string();
    if !is_known(&field) {
        return Some(match suggestion(&field) {
            Some(close) => format!("unknown field `{field}` (did you mean `{close}`?)"),
            None => format!("unknown field `{field}`"),
        });
    }
    let Some(kind) = field_type(&field) else {
        // An intermediate path: only `exists` (and `= null`) make sense on it.
        return match &comparison.predicate {
            Predicate::Exists | Predicate::Compare(CmpOp::Eq | CmpOp::Ne, Literal::Null) => None,
            _ => Some(format!(
                "`{field}` is a group of fields; compare one of its fields, or use `{field} exists`"
            )),
        };
    };
    let literals: Vec<&Literal> = match &comparison.predicate {
        Predicate::Compare(op, literal) => {
            if op.is_ordering() && kind == Bool {
                return Some(format!(
                    "`{field}` is true or false; it cannot be ordered with {}",
                    op.as_str()
                ));
            }
            vec![literal]
        }
        Predicate::In(values) | Predicate::NotIn(values) => values.iter().collect(),
        Predicate::Exists => Vec::new(),
        Predicate::Within(_) | Predicate::Glob(_) => {
            if matches!(kind, Bool | Number) {
                return Some(format!(
                    "`{field}` is {}; `within` and `~` take text fields",
                    kind.describe()
                ));
            }
            Vec::new()
        }
    };
    literals
        .into_iter()
        .find(|literal| !suits(kind, literal))
        .map(|literal| format!("`{field}` is {}, but is compared with {literal}", kind.describe()))
}

fn suits(kind: FieldType, literal: &Literal) -> bool {
    match literal {
        Literal::Null => true,
        Literal::Bool(_) => kind == Bool,
        Literal::Int(_) | Literal::Float(_) => matches!(kind, Number | Version | Text),
        Literal::Str(text) => match kind {
            Bool => false,
            Number => text.trim().parse::<f64>().is_ok(),
            Text | Version | Time => true,
        },
    }
}

/// The known field closest to `field` by edit distance, when it is close enough to be a typo.
fn suggestion(field: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .map(|(name, _)| (*name, edit_distance(field, name)))
        .filter(|(_, distance)| *distance <= 3)
        .min_by_key(|(_, distance)| *distance)
        .map(|(name, _)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}
