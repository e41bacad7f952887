//! The login `ward login` saves: server, API token and CA, in a file only the user can read.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::files::private_file;

/// The version written into new files, so a later format can tell old files apart.
const CONFIG_VERSION: u32 = 1;

/// What `ward login` remembers.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLogin {
    /// File format version.
    #[serde(default = "current_version")]
    pub version: u32,
    /// Server base URL.
    pub server: String,
    /// API token secret (`ward_<id>_<secret>`).
    pub token: String,
    /// PEM of the server's CA, when it was given at login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for StoredLogin {
    // The token is a credential; keep it out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredLogin")
            .field("server", &self.server)
            .field("token", &"<redacted>")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| ".."))
            .finish()
    }
}

fn current_version() -> u32 {
    CONFIG_VERSION
}

impl StoredLogin {
    /// A login to save now.
    pub fn new(server: String, token: String, ca_pem: Option<String>) -> Self {
        StoredLogin {
            version: CONFIG_VERSION,
            server,
            token,
            ca_pem,
        }
    }
}

/// `$WARD_CONFIG_DIR/cli.toml`, else `<user config dir>/ward/cli.toml`.
pub fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WARD_CONFIG_DIR").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir).join("cli.toml"));
    }
    let dir = dirs::config_dir().context("cannot find a config directory; set WARD_CONFIG_DIR")?;
    Ok(dir.join("ward").join("cli.toml"))
}

/// Reads the saved login; `None` when there is none.
pub fn load(path: &Path) -> anyhow::Result<Option<StoredLogin>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    refuse_if_shared(path)?;
    let login: StoredLogin = toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    if login.version > CONFIG_VERSION {
        bail!(
            "{} was written by a newer ward (version {}); log in again",
            path.display(),
            login.version
        );
    }
    Ok(Some(login))
}

/// A token others can read is as good as leaked, so refuse it rather than use it silently.
#[cfg(unix)]
fn refuse_if_shared(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by other users (mode {:o}); run `chmod 600` on it or log in again",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_if_shared(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// Writes the login with mode 0600 (directory 0700), atomically: a temporary file in the same
/// directory renamed over the old one, so a crash never leaves a half-written token file.
pub fn save(path: &Path, login: &StoredLogin) -> anyhow::Result<()> {
    let dir = path.parent().context("the config path has no directory")?;
    create_private_dir(dir)?;
    let text = toml::to_string(login).context("encoding the login")?;
    let file_name = path.file_name().context("the config path has no file name")?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> anyhow::Result<()> {
        let mut file = private_file(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Deletes the saved login; true when there was one.
pub fn remove(path: &Path) -> anyhow::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).with_context(|| format!("deleting {}", path.display())),
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_login_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("cli.toml");
        let login = StoredLogin::new(
            "https://ward.example:8443".into(),
            "ward_abc_secret".into(),
            Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
        );
        save(&path, &login).unwrap();
        assert_eq!(load(&path).unwrap(), Some(login.clone()));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dir_mode = fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
            assert_eq!(dir_mode, 0o700);
        }

        // Saving again replaces the file and leaves no temporary file behind.
        let replacement = StoredLogin::new("http://127.0.0.1:8443".into(), "ward_x_y".into(), None);
        save(&path, &replacement).unwrap();
        assert_eq!(load(&path).unwrap(), Some(replacement));
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
        assert_eq!(load(&path).unwrap(), None);
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_login_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cli.toml");
        save(
            &path,
            &StoredLogin::new("https://w".into(), "ward_a_b".into(), None),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains("readable by other users"), "{error}");
    }

    #[test]
    fn debug_hides_token() {
        let login = StoredLogin::new("https://w".into(), "ward_a_secret".into(), None);
        assert!(!format!("{login:?}").contains("secret"));
    }
}
