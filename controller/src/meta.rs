//! Durable application of metadata commands.
//!
//! [`MetaStore::propose`] applies a command to a copy of the state, persists the new state
//! crash-safely (`controller/state.json`: temp file, fsync, rename, fsync directory), and only
//! then makes it visible and answers. A crash at any point leaves either the old or the new
//! state on disk. This single-node store is what `nadi standalone` runs today; the Raft-backed
//! controller replaces it behind the same `propose`/`read` interface.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::MetaError;
use crate::state::{Command, ControllerState};

/// The durable metadata of a controller.
#[derive(Debug, Clone)]
pub struct MetaStore {
    inner: Arc<Mutex<ControllerState>>,
    path: PathBuf,
}

impl MetaStore {
    /// Opens the metadata in `dir`, or starts empty.
    pub fn open(dir: &Path) -> Result<MetaStore, MetaError> {
        let internal = |e: std::io::Error| MetaError::Internal(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(internal)?;
        let path = dir.join("state.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| MetaError::Internal(format!("{} is not valid controller state: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ControllerState::default(),
            Err(e) => return Err(internal(e)),
        };
        Ok(MetaStore { inner: Arc::new(Mutex::new(state)), path })
    }

    /// Applies `cmd` durably. Returns after the new state is on disk.
    pub async fn propose(&self, cmd: Command) -> Result<(), MetaError> {
        let mut guard = self.inner.lock().await;
        let mut next = guard.clone();
        next.apply(&cmd)?;
        let bytes = serde_json::to_vec(&next).map_err(|e| MetaError::Internal(e.to_string()))?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&path, &bytes))
            .await
            .map_err(|e| MetaError::Internal(e.to_string()))?
            .map_err(|e| MetaError::Internal(format!("persisting controller state: {e}")))?;
        *guard = next;
        Ok(())
    }

    /// Runs `f` on the current state.
    pub async fn read<T>(&self, f: impl FnOnce(&ControllerState) -> T) -> T {
        f(&*self.inner.lock().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn state_survives_reopen_and_failed_commands_are_not_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path()).unwrap();
        store.propose(Command::CreateScope { scope: "a".into(), now_ms: 5 }).await.unwrap();
        assert!(store.propose(Command::CreateScope { scope: "a".into(), now_ms: 6 }).await.is_err());
        drop(store);
        let store = MetaStore::open(dir.path()).unwrap();
        let scopes = store.read(|s| s.scopes.keys().cloned().collect::<Vec<_>>()).await;
        assert_eq!(scopes, vec!["a".to_owned()]);
        assert_eq!(store.read(|s| s.scopes["a"].created_at_ms).await, 5);
    }
}
