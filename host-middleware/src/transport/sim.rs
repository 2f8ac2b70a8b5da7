//! The simulated card as a [`Transport`], in-process (feature `sim`).

use std::path::Path;

use dmsc_sim_card::sim;
use dmsc_sim_card::store::PersistentMemory;
use dmsc_sim_card::{Card, CardError, InitParams, MemoryStore};
use rand_chacha::ChaCha20Rng;

use crate::transport::{Transport, TransportError};

/// A simulated card driven directly, without PC/SC.
pub struct SimTransport<S: PersistentMemory + Send> {
    card: Card<S, ChaCha20Rng>,
    name: String,
}

/// A simulated card kept in a state file.
pub type FileSimTransport = SimTransport<dmsc_sim_card::file_store::FileStore>;

impl FileSimTransport {
    /// Powers up the card kept in `path`.
    pub fn open(path: &Path) -> Result<Self, CardError> {
        Ok(Self::from_card(
            sim::open(path)?,
            format!("simulated card {}", path.display()),
        ))
    }

    /// Creates a new card in `path` (refused if the file exists).
    pub fn create(path: &Path, params: InitParams) -> Result<Self, CardError> {
        Ok(Self::from_card(
            sim::create(path, params)?,
            format!("simulated card {}", path.display()),
        ))
    }
}

impl SimTransport<MemoryStore> {
    /// A new card that lives in memory only.
    pub fn in_memory(params: InitParams) -> Result<Self, CardError> {
        let card = Card::initialize(MemoryStore::new(), sim::os_rng()?, params)?;
        Ok(Self::from_card(card, "simulated card (memory)".into()))
    }
}

impl<S: PersistentMemory + Send> SimTransport<S> {
    /// Wraps a card.
    pub fn from_card(card: Card<S, ChaCha20Rng>, name: String) -> Self {
        SimTransport { card, name }
    }

    /// The card.
    pub fn card(&self) -> &Card<S, ChaCha20Rng> {
        &self.card
    }

    /// Gives the card back.
    pub fn into_card(self) -> Card<S, ChaCha20Rng> {
        self.card
    }
}

impl<S: PersistentMemory + Send> Transport for SimTransport<S> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let rsp = self.card.process(apdu);
        if rsp.is_empty() {
            // The card lost power during a persistent write and is mute.
            return Err(TransportError::CardRemoved);
        }
        Ok(rsp)
    }

    fn atr(&self) -> Vec<u8> {
        self.card.atr().to_vec()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        self.card.reset();
        Ok(())
    }

    fn reader_name(&self) -> &str {
        &self.name
    }

    fn supports_extended(&self) -> bool {
        true
    }

    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        body(self);
        Ok(())
    }
}
