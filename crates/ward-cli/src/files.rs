//! Files only their creator can read: the saved login, audit exports, FHIR bundles, diagnostics.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Creates (or truncates) a file readable only by the user.
pub fn private_file(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    // The mode above only applies to a new file; an existing one keeps its old, perhaps
    // world-readable, mode unless it is tightened here, before anything private is written.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Writes `value` as pretty JSON to a new private file, synced to disk before it returns.
pub(crate) fn write_private_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let context = || format!("writing {}", path.display());
    let mut file = std::io::BufWriter::new(private_file(path).with_context(context)?);
    serde_json::to_writer_pretty(&mut file, value).with_context(context)?;
    file.write_all(b"\n").with_context(context)?;
    file.into_inner()
        .map_err(|error| error.into_error())
        .and_then(|file| file.sync_all())
        .with_context(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn private_file_tightens_an_existing_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.json");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        drop(private_file(&path).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
    }

    #[cfg(unix)]
    #[test]
    fn fhir_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.json");
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": []});
        write_private_json(&path, &bundle).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, bundle);
    }
}
