//! Choosing the cards a fleet operation acts on: every card, or the cards
//! with the IDs asked for, all of them present, before anything is changed.

use crate::error::HostError;
use crate::fleet::FleetCard;
use crate::transport::Transport;

/// Why the cards asked for cannot be used; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// A card did not answer SELECT.
    #[error("selecting the card in {reader}; nothing was changed")]
    Select {
        /// Its reader.
        reader: String,
        /// The card's answer.
        #[source]
        source: HostError,
    },
    /// Card IDs asked for are not present.
    #[error(
        "no card with ID {} (cards present: {}); nothing was changed",
        missing.join(", "),
        present.join(", ")
    )]
    Missing {
        /// The IDs asked for and not found.
        missing: Vec<String>,
        /// The IDs of the cards present.
        present: Vec<String>,
    },
}

/// Selects every card and keeps those whose ID (upper-case hex) is in
/// `wanted`, or every card when `wanted` is `None`. A card that does not
/// answer, or an ID asked for that no card has, is an error.
pub fn select_cards<T: Transport>(
    cards: Vec<FleetCard<T>>,
    wanted: Option<&[String]>,
) -> Result<Vec<FleetCard<T>>, SelectError> {
    let mut with_ids = Vec::with_capacity(cards.len());
    for mut card in cards {
        match card.status() {
            Ok(s) => with_ids.push((card, s.card_id)),
            Err(source) => {
                return Err(SelectError::Select {
                    reader: card.reader,
                    source,
                })
            }
        }
    }
    let Some(wanted) = wanted else {
        return Ok(with_ids.into_iter().map(|(c, _)| c).collect());
    };
    let present: Vec<String> = with_ids.iter().map(|(_, id)| id.clone()).collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|w| !present.contains(w))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(SelectError::Missing { missing, present });
    }
    Ok(with_ids
        .into_iter()
        .filter(|(_, id)| wanted.contains(id))
        .map(|(c, _)| c)
        .collect())
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::session::Session;
    use crate::transport::sim::SimTransport;
    use dmsc_sim_card::{AuthorityKeys, InitParams, MemoryStore};
    use zeroize::Zeroizing;

    fn card(reader: &str) -> FleetCard<SimTransport<MemoryStore>> {
        let key = Zeroizing::new(vec![0x40; 16]);
        let params = InitParams::with_authorities(vec![AuthorityKeys {
            key_version: 0x30,
            name: "admin".into(),
            enc: key.clone(),
            mac: key.clone(),
            dek: key,
        }]);
        FleetCard::new(
            reader,
            Session::new(SimTransport::in_memory(params).unwrap()),
        )
    }

    fn readers<T: Transport>(cards: &[FleetCard<T>]) -> Vec<&str> {
        cards.iter().map(|c| c.reader.as_str()).collect()
    }

    #[test]
    fn every_card_or_the_ones_asked_for() {
        let mut cards = vec![card("r0"), card("r1"), card("r2")];
        let ids: Vec<String> = cards
            .iter_mut()
            .map(|c| c.status().unwrap().card_id)
            .collect();
        let all = select_cards(cards, None).unwrap();
        assert_eq!(readers(&all), ["r0", "r1", "r2"]);
        let wanted = [ids[2].clone(), ids[0].clone()];
        let some = select_cards(all, Some(&wanted)).unwrap();
        assert_eq!(readers(&some), ["r0", "r2"]);
    }

    #[test]
    fn an_id_not_present_is_refused_naming_it_and_the_cards_present() {
        let mut cards = vec![card("r0")];
        let id = cards[0].status().unwrap().card_id;
        let unknown = "00".repeat(16);
        match select_cards(cards, Some(&[unknown.clone(), id.clone()])) {
            Err(SelectError::Missing { missing, present }) => {
                assert_eq!(missing, [unknown]);
                assert_eq!(present, [id]);
            }
            other => panic!("{:?}", other.map(|c| c.len())),
        }
    }
}
