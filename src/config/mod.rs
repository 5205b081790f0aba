//! Configuration loading: files → raw serde types → validated [`Snapshot`].
//!
//! [`load`] is the one entry point used by `egret check`, `egret run` and every reload, so a file
//! that `check` accepts is exactly a file that `run` serves. It reports all errors of all files
//! together, each with `file:line:col`.

pub mod compile;
pub mod error;
pub mod raw;
pub mod waf;

pub use error::{ConfigError, ConfigErrors, SourceFile};

use crate::snapshot::Snapshot;
use crate::upstream::HealthRegistry;
use std::path::Path;

/// Loads the global file at `path` and every site file of its sites directory.
///
/// `health` attaches each backend to its long-lived health state; `generation` is stamped on
/// the snapshot. Errors from all files are returned together.
pub fn load(
    path: &Path,
    health: &HealthRegistry,
    generation: u64,
) -> Result<Snapshot, ConfigErrors> {
    compile::load_all(path, health, generation)
}
