//! A simulated card backed by a state file, with an operating-system-seeded RNG
//! (the `std` feature).

use std::path::Path;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::applet::{Card, CardError, InitParams};
use crate::file_store::FileStore;
use crate::store::{IoOperation, OsError, StoreError};

/// A card whose persistent memory is one state file.
pub type FileCard = Card<FileStore, ChaCha20Rng>;

/// A ChaCha20 generator seeded from the operating system.
pub fn os_rng() -> Result<ChaCha20Rng, CardError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| {
        CardError::Store(StoreError::Io {
            path: None,
            operation: IoOperation::Randomness,
            cause: Some(OsError::other(e.raw_os_error(), e.to_string())),
        })
    })?;
    Ok(ChaCha20Rng::from_seed(seed))
}

/// Creates a new card in a new state file (refused if the file exists).
pub fn create(path: &Path, params: InitParams) -> Result<FileCard, CardError> {
    let rng = os_rng()?;
    let store = FileStore::create(path)?;
    match Card::initialize(store, rng, params) {
        Ok(card) => Ok(card),
        Err(e) => {
            // Leave no half-made card behind.
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

/// Powers up the card kept in `path`.
pub fn open(path: &Path) -> Result<FileCard, CardError> {
    Card::power_up(FileStore::open(path)?, os_rng()?)
}
