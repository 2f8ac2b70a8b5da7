//! Following a reader (feature `pcsc`): refresh the device tree when a card
//! is inserted or its content changes, and remove a card's MOs from the
//! device tree when it is removed or replaced. The reader may hold a dmsc
//! card or a plain UICC (its smartcard bootstrap, [`super::uicc`]); the
//! factory bootstrap comes back when a removal leaves nothing from a card.

use std::ops::ControlFlow;
use std::time::Duration;

use serde::Serialize;

use crate::device_tree::DeviceTree;
use crate::provisioning::{self, ProvisioningError, RefreshOptions, RefreshReport};
use crate::session::Session;
use crate::transport::pcsc::{PcscCard, PcscContext};
use crate::transport::{ReaderEvent, ReaderInfo, TransportError};

/// What the watcher did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum WatchEvent {
    /// A card was inserted (or found at start) and the tree refreshed.
    Inserted {
        /// The reader.
        reader: String,
        /// The refresh.
        refresh: RefreshReport,
    },
    /// The card's content changed (its generation moved) and the tree was refreshed.
    Changed {
        /// The reader.
        reader: String,
        /// The refresh.
        refresh: RefreshReport,
    },
    /// The card was removed: its MOs left the device tree.
    Removed {
        /// The reader.
        reader: String,
        /// The card ID, hex, when known.
        card_id: Option<String>,
        /// The MOs removed from the device tree.
        removed: Vec<String>,
        /// The factory bootstrap's MOs put in force (nothing from a card left).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        factory: Vec<String>,
    },
    /// A refresh failed (e.g. the card was pulled mid-refresh); the tree is unchanged.
    Failed {
        /// The reader.
        reader: String,
        /// What went wrong.
        error: String,
    },
}

/// Whether a refresh failed because the card is no longer in the reader.
fn card_gone(e: &ProvisioningError) -> bool {
    let host = match e {
        ProvisioningError::Card(h) => h,
        ProvisioningError::Mo(crate::mo::MoCardError::Card { source, .. }) => source,
        ProvisioningError::Uicc(crate::uicc::UiccError::Card(h)) => h,
        _ => return false,
    };
    matches!(
        host,
        crate::error::HostError::Transport(
            TransportError::CardRemoved | TransportError::NoCard { .. }
        )
    )
}

/// Whether `name` is the reader to follow: contains `pattern`, case-insensitively.
fn matches(name: &str, pattern: &str) -> bool {
    name.to_lowercase().contains(&pattern.to_lowercase())
}

struct Followed {
    reader: String,
    session: Option<Session<PcscCard>>,
    card_id: Option<String>,
}

impl Followed {
    fn refresh<T: DeviceTree + ?Sized>(
        &mut self,
        ctx: &mut PcscContext,
        tree: &mut T,
        options: &RefreshOptions,
    ) -> Result<RefreshReport, ProvisioningError> {
        let session = match self.session.as_mut() {
            Some(s) => s,
            None => {
                let card = ctx
                    .connect(&self.reader)
                    .map_err(crate::error::HostError::from)?;
                self.session.insert(Session::new(card))
            }
        };
        let result = provisioning::refresh_with(session, tree, options);
        match &result {
            Ok(r) => self.card_id = Some(r.card_id.clone()),
            Err(_) => self.session = None,
        }
        result
    }
}

/// Follows the first reader whose name contains `pattern` (every reader
/// when empty: the first that holds a card) until `on_event` says stop;
/// `on_event` also gets `None` after every quiet interval, so a caller can stop
/// without an event.
/// Between reader events, polls the card's generation every `poll` (one
/// SELECT when nothing changed).
pub fn watch<T: DeviceTree + ?Sized>(
    ctx: &mut PcscContext,
    tree: &mut T,
    pattern: &str,
    poll: Duration,
    on_event: impl FnMut(Option<&WatchEvent>) -> ControlFlow<()>,
) -> Result<(), ProvisioningError> {
    watch_with(
        ctx,
        tree,
        pattern,
        poll,
        &RefreshOptions::default(),
        on_event,
    )
}

/// [`watch`] with refresh options (factory bootstrap, smartcard bootstrap
/// switch). A UICC has no generation counter: each poll reads its bootstrap
/// again and compares the digest.
pub fn watch_with<T: DeviceTree + ?Sized>(
    ctx: &mut PcscContext,
    tree: &mut T,
    pattern: &str,
    poll: Duration,
    options: &RefreshOptions,
    mut on_event: impl FnMut(Option<&WatchEvent>) -> ControlFlow<()>,
) -> Result<(), ProvisioningError> {
    let factory = options.factory.as_ref();
    let readers: Vec<ReaderInfo> = ctx.list_readers().map_err(crate::error::HostError::from)?;
    let mut followed: Option<Followed> = readers
        .iter()
        .filter(|r| matches(&r.name, pattern))
        .find(|r| r.card_present)
        .map(|r| Followed {
            reader: r.name.clone(),
            session: None,
            card_id: None,
        });
    if followed.is_none() && factory.is_some() {
        // No card at start: nothing from a card is in force.
        provisioning::forget_card_with(tree, None, factory)?;
    }
    let mut emit = |e: Option<WatchEvent>| on_event(e.as_ref());
    if let Some(f) = followed.as_mut() {
        let event = match f.refresh(ctx, tree, options) {
            Ok(refresh) => WatchEvent::Inserted {
                reader: f.reader.clone(),
                refresh,
            },
            Err(e) => WatchEvent::Failed {
                reader: f.reader.clone(),
                error: e.to_string(),
            },
        };
        if emit(Some(event)).is_break() {
            return Ok(());
        }
    }
    loop {
        let events = ctx
            .wait_for_change(Some(poll))
            .map_err(crate::error::HostError::from)?;
        for ev in &events {
            let outcome = match ev {
                ReaderEvent::CardRemoved { reader } | ReaderEvent::ReaderRemoved(reader)
                    if followed.as_ref().is_some_and(|f| &f.reader == reader) =>
                {
                    let card_id = followed.take().and_then(|f| f.card_id);
                    let (removed, factory) = match &card_id {
                        Some(id) => provisioning::forget_card_with(tree, Some(id), factory)?,
                        None => (Vec::new(), Vec::new()),
                    };
                    Some(WatchEvent::Removed {
                        reader: reader.clone(),
                        card_id,
                        removed,
                        factory,
                    })
                }
                ReaderEvent::CardInserted { reader, .. }
                    if matches(reader, pattern)
                        && followed.as_ref().is_none_or(|f| &f.reader == reader) =>
                {
                    let f = followed.get_or_insert_with(|| Followed {
                        reader: reader.clone(),
                        session: None,
                        card_id: None,
                    });
                    // A new card in the same reader: a fresh session.
                    f.session = None;
                    Some(match f.refresh(ctx, tree, options) {
                        Ok(refresh) => WatchEvent::Inserted {
                            reader: reader.clone(),
                            refresh,
                        },
                        Err(e) => WatchEvent::Failed {
                            reader: reader.clone(),
                            error: e.to_string(),
                        },
                    })
                }
                _ => None,
            };
            if let Some(e) = outcome {
                if emit(Some(e)).is_break() {
                    return Ok(());
                }
            }
        }
        if events.is_empty() {
            // Nothing from the readers: has the card's content changed?
            if let Some(f) = followed.as_mut() {
                let event = match f.refresh(ctx, tree, options) {
                    Ok(r) if r.unchanged => None,
                    Ok(refresh) => Some(WatchEvent::Changed {
                        reader: f.reader.clone(),
                        refresh,
                    }),
                    // Removed before pcscd reported it: the same as the event.
                    Err(e) if card_gone(&e) => {
                        let reader = f.reader.clone();
                        let card_id = followed.take().and_then(|f| f.card_id);
                        let (removed, factory) = match &card_id {
                            Some(id) => provisioning::forget_card_with(tree, Some(id), factory)?,
                            None => (Vec::new(), Vec::new()),
                        };
                        Some(WatchEvent::Removed {
                            reader,
                            card_id,
                            removed,
                            factory,
                        })
                    }
                    Err(e) => Some(WatchEvent::Failed {
                        reader: f.reader.clone(),
                        error: e.to_string(),
                    }),
                };
                if let Some(e) = event {
                    if emit(Some(e)).is_break() {
                        return Ok(());
                    }
                }
            }
            if emit(None).is_break() {
                return Ok(());
            }
        }
    }
}
