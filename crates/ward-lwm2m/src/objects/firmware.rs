//! The /5 Firmware Update state machine (LwM2M 1.1 Core, Appendix E.6, figure "Firmware Update
//! Mechanisms"), as a small pure type.
//!
//! ```text
//!  Idle(0) --write URI/package--> Downloading(1) --complete--> Downloaded(2) --Update--> Updating(3)
//!    ^  ^                            |   failed (result 2..7, 9)    |  cancel           |   |
//!    |  +----------------------------+------------------------------+                   |   |
//!    +------------------------------------------ success (result 1) -------------------+   |
//!                                    Downloaded(2) <-- failed (result 8 or other) ----------+
//! ```

use thiserror::Error;

/// Resource /5/0/3 State.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FirmwareState {
    /// 0: nothing downloaded, or cancelled.
    Idle = 0,
    /// 1: a package is being downloaded.
    Downloading = 1,
    /// 2: a package is downloaded and verified; Update may be executed.
    Downloaded = 2,
    /// 3: the update is being applied.
    Updating = 3,
}

/// Resource /5/0/5 Update Result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateResult {
    /// 0: initial value; also set when a download starts.
    Initial = 0,
    /// 1: firmware updated successfully.
    Success = 1,
    /// 2: not enough flash memory for the package.
    NotEnoughFlash = 2,
    /// 3: out of RAM during download.
    OutOfRam = 3,
    /// 4: connection lost during download.
    ConnectionLost = 4,
    /// 5: integrity check failure.
    IntegrityCheckFailure = 5,
    /// 6: unsupported package type.
    UnsupportedPackageType = 6,
    /// 7: invalid URI.
    InvalidUri = 7,
    /// 8: firmware update failed.
    UpdateFailed = 8,
    /// 9: unsupported protocol.
    UnsupportedProtocol = 9,
}

impl UpdateResult {
    /// The result for its resource value, if valid (0..=9).
    pub const fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => Self::Initial,
            1 => Self::Success,
            2 => Self::NotEnoughFlash,
            3 => Self::OutOfRam,
            4 => Self::ConnectionLost,
            5 => Self::IntegrityCheckFailure,
            6 => Self::UnsupportedPackageType,
            7 => Self::InvalidUri,
            8 => Self::UpdateFailed,
            9 => Self::UnsupportedProtocol,
            _ => return None,
        })
    }

    /// True for results that end a download (2..=7, 9).
    const fn is_download_failure(self) -> bool {
        matches!(
            self,
            Self::NotEnoughFlash
                | Self::OutOfRam
                | Self::ConnectionLost
                | Self::IntegrityCheckFailure
                | Self::UnsupportedPackageType
                | Self::InvalidUri
                | Self::UnsupportedProtocol
        )
    }
}

/// A transition that the current state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("firmware update: {event} is not allowed in state {state:?}")]
pub struct InvalidTransition {
    /// The state the machine was in.
    pub state: FirmwareState,
    /// What was attempted.
    pub event: &'static str,
}

/// The firmware-update state machine: a state and the last result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareUpdate {
    state: FirmwareState,
    result: UpdateResult,
}

impl Default for FirmwareUpdate {
    fn default() -> Self {
        Self::new()
    }
}

impl FirmwareUpdate {
    /// Idle with the initial result.
    pub const fn new() -> Self {
        Self {
            state: FirmwareState::Idle,
            result: UpdateResult::Initial,
        }
    }

    /// The current state (/5/0/3).
    pub const fn state(&self) -> FirmwareState {
        self.state
    }

    /// The last result (/5/0/5).
    pub const fn result(&self) -> UpdateResult {
        self.result
    }

    fn refuse<T>(&self, event: &'static str) -> Result<T, InvalidTransition> {
        Err(InvalidTransition {
            state: self.state,
            event,
        })
    }

    /// A non-empty Package URI (or a Package) was written: start downloading. Allowed from Idle.
    pub fn start_download(&mut self) -> Result<(), InvalidTransition> {
        match self.state {
            FirmwareState::Idle => {
                self.state = FirmwareState::Downloading;
                self.result = UpdateResult::Initial;
                Ok(())
            }
            _ => self.refuse("start download"),
        }
    }

    /// The download finished and the package verified.
    pub fn download_complete(&mut self) -> Result<(), InvalidTransition> {
        match self.state {
            FirmwareState::Downloading => {
                self.state = FirmwareState::Downloaded;
                Ok(())
            }
            _ => self.refuse("download complete"),
        }
    }

    /// The download (or the verification in Downloaded) failed with `result` (2..=7 or 9).
    pub fn download_failed(&mut self, result: UpdateResult) -> Result<(), InvalidTransition> {
        match self.state {
            FirmwareState::Downloading | FirmwareState::Downloaded if result.is_download_failure() => {
                self.state = FirmwareState::Idle;
                self.result = result;
                Ok(())
            }
            _ => self.refuse("download failed"),
        }
    }

    /// An empty Package URI or Package was written: cancel and return to Idle (result 0).
    /// Allowed in every state except Updating.
    pub fn cancel(&mut self) -> Result<(), InvalidTransition> {
        match self.state {
            FirmwareState::Updating => self.refuse("cancel"),
            _ => {
                self.state = FirmwareState::Idle;
                self.result = UpdateResult::Initial;
                Ok(())
            }
        }
    }

    /// The server executed Update (/5/0/2). Allowed only in Downloaded.
    pub fn execute_update(&mut self) -> Result<(), InvalidTransition> {
        match self.state {
            FirmwareState::Downloaded => {
                self.state = FirmwareState::Updating;
                Ok(())
            }
            _ => self.refuse("execute update"),
        }
    }

    /// The update was applied: back to Idle with result 1.
    pub fn update_succeeded(&mut self) -> Result<(), InvalidTransition> {
        match self.state {
            FirmwareState::Updating => {
                self.state = FirmwareState::Idle;
                self.result = UpdateResult::Success;
                Ok(())
            }
            _ => self.refuse("update succeeded"),
        }
    }

    /// Applying the update failed: back to Downloaded with `result` (8, or 2/3/5 for resource or
    /// integrity problems found while updating).
    pub fn update_failed(&mut self, result: UpdateResult) -> Result<(), InvalidTransition> {
        match self.state {
            FirmwareState::Updating if !matches!(result, UpdateResult::Initial | UpdateResult::Success) => {
                self.state = FirmwareState::Downloaded;
                self.result = result;
                Ok(())
            }
            _ => self.refuse("update failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path() -> Result<(), InvalidTransition> {
        let mut fw = FirmwareUpdate::new();
        fw.start_download()?;
        assert_eq!(fw.state(), FirmwareState::Downloading);
        fw.download_complete()?;
        fw.execute_update()?;
        assert_eq!(fw.state(), FirmwareState::Updating);
        fw.update_succeeded()?;
        assert_eq!(
            (fw.state(), fw.result()),
            (FirmwareState::Idle, UpdateResult::Success)
        );
        Ok(())
    }

    #[test]
    fn failures_and_refusals() -> Result<(), InvalidTransition> {
        let mut fw = FirmwareUpdate::new();
        assert!(fw.execute_update().is_err());
        assert!(fw.download_complete().is_err());
        fw.start_download()?;
        assert!(fw.start_download().is_err());
        assert!(fw.download_failed(UpdateResult::Success).is_err());
        fw.download_failed(UpdateResult::InvalidUri)?;
        assert_eq!(
            (fw.state(), fw.result()),
            (FirmwareState::Idle, UpdateResult::InvalidUri)
        );
        fw.start_download()?;
        assert_eq!(fw.result(), UpdateResult::Initial);
        fw.download_complete()?;
        fw.execute_update()?;
        assert!(fw.cancel().is_err());
        fw.update_failed(UpdateResult::UpdateFailed)?;
        assert_eq!(
            (fw.state(), fw.result()),
            (FirmwareState::Downloaded, UpdateResult::UpdateFailed)
        );
        fw.cancel()?;
        assert_eq!(fw.state(), FirmwareState::Idle);
        assert_eq!(
            UpdateResult::from_code(9),
            Some(UpdateResult::UnsupportedProtocol)
        );
        assert_eq!(UpdateResult::from_code(10), None);
        Ok(())
    }
}
