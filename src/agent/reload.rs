//! Noticing that the inventory changed. The file is re-read on a short poll rather than watched
//! with inotify: a Kubernetes ConfigMap mount swaps a `..data` symlink, which an inotify watch on
//! the file itself never sees, and reading a small file once a second costs nothing. The files
//! the inventory names (secrets, CAs) are part of its fingerprint, so a rotated Secret reloads too.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::target::Inventory;

/// The fingerprint of the config file and the files it names, as last attempted.
pub struct Watch {
    config: PathBuf,
    files: Vec<PathBuf>,
    last: Option<u64>,
    /// The errors of the last attempt, while it failed.
    pub last_failure: Option<String>,
}

impl Watch {
    /// Starts watching from the inventory already loaded.
    pub fn new(config: &Path, loaded: &Inventory) -> Watch {
        let mut w = Watch {
            config: config.to_path_buf(),
            files: loaded.files.clone(),
            last: None,
            last_failure: None,
        };
        w.last = Some(w.fingerprint());
        w
    }

    /// True once per change: the fingerprint differs from the last one attempted.
    pub fn changed(&mut self) -> bool {
        let now = self.fingerprint();
        if self.last == Some(now) {
            return false;
        }
        self.last = Some(now);
        true
    }

    /// Forces the next [`Watch::changed`] to report a change (SIGHUP).
    pub fn forget(&mut self) {
        self.last = None;
    }

    /// A new inventory was applied: watch the files it names.
    pub fn loaded(&mut self, inv: &Inventory) {
        self.files = inv.files.clone();
        self.last = Some(self.fingerprint());
        self.last_failure = None;
    }

    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for path in std::iter::once(&self.config).chain(&self.files) {
            path.hash(&mut h);
            match std::fs::read(path) {
                Ok(bytes) => bytes.hash(&mut h),
                Err(e) => e.kind().hash(&mut h),
            }
        }
        h.finish()
    }
}
