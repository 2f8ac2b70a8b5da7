//! A card's life outside commands: personalisation of a new card and power-up
//! from its store.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use dmsc_card_model::commands::{AuditEvent, CardConfig, ObjectValue, Pin, MIN_FAILURE_LIMIT};
use dmsc_card_model::objects::{Acl, ObjectKind, ObjectRef, Principal, Right};
use dmsc_card_model::scp03::{self, StaticKeys};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::keys::authority_info;
use super::{Card, CardError, InitParams, Regressions, Volatile};
use crate::crypto;
use crate::state::{default_acl, Authority, Secret, State, Stored};
use crate::store::{PersistentMemory, StateDefect};

impl<S: PersistentMemory, R: RngCore + CryptoRng> Card<S, R> {
    /// Personalises a new card in an empty store: random card ID and identity key,
    /// PIN/PUK, authorities, the card's root objects. One transaction.
    pub fn initialize(mut store: S, mut rng: R, params: InitParams) -> Result<Self, CardError> {
        if !store.load()?.is_empty() {
            return Err(CardError::InvalidParameter(
                "the store already holds a card",
            ));
        }
        if params.failure_limit < MIN_FAILURE_LIMIT {
            return Err(CardError::InvalidParameter("failure limit below 4"));
        }
        let pin = Pin::new(&params.pin)
            .map_err(|_| CardError::InvalidParameter("PIN must be 4 to 8 bytes"))?;
        let puk = Pin::new(&params.puk)
            .map_err(|_| CardError::InvalidParameter("PUK must be 4 to 8 bytes"))?;
        if params.pin_tries == 0
            || params.pin_tries > 15
            || params.puk_tries == 0
            || params.puk_tries > 15
        {
            return Err(CardError::InvalidParameter("tries must be 1 to 15"));
        }
        let first = params
            .authorities
            .first()
            .ok_or(CardError::InvalidParameter(
                "at least one authority key set",
            ))?;
        let admin = Principal::Authority(first.name.clone());
        let mut authorities = BTreeMap::new();
        for a in &params.authorities {
            dmsc_card_model::objects::check_name(&a.name)
                .map_err(|_| CardError::InvalidParameter("authority name"))?;
            if a.name == "user" || StaticKeys::new(&a.enc, &a.mac, &a.dek).is_err() {
                return Err(CardError::InvalidParameter(
                    "authority keys must be AES-128/192/256",
                ));
            }
            if authorities.contains_key(&a.key_version)
                || a.key_version == 0
                || a.key_version == 0xFF
            {
                return Err(CardError::InvalidParameter(
                    "key versions must be distinct, 01 to FE",
                ));
            }
            authorities.insert(
                a.key_version,
                Authority {
                    name: a.name.clone(),
                    enc: a.enc.clone(),
                    mac: a.mac.clone(),
                    dek: a.dek.clone(),
                },
            );
        }
        let mut card_id = [0u8; 16];
        rng.fill_bytes(&mut card_id);
        let mut secret = Zeroizing::new([0u8; 32]);
        let public = loop {
            rng.fill_bytes(secret.as_mut());
            if let Some(p) = crypto::public_point(&secret) {
                break p;
            }
        };
        let mut objects = BTreeMap::new();
        let mut card_acl = Acl::empty();
        for right in [Right::Get, Right::Add, Right::Replace, Right::Delete] {
            card_acl.grant(right, admin.clone());
        }
        let config = CardConfig {
            failure_limit: params.failure_limit,
            used_memory: 0,
            total_memory: 0,
        };
        objects.insert(
            ObjectRef::Card,
            Stored {
                acl: card_acl,
                value: ObjectValue::Card(config),
            },
        );
        objects.insert(
            ObjectRef::IdentityKey,
            Stored {
                acl: default_acl(ObjectKind::IdentityKey, &admin),
                value: ObjectValue::IdentityKey(public),
            },
        );
        let mut audit_acl = Acl::empty();
        for (kvn, a) in &authorities {
            audit_acl.grant(Right::Get, Principal::Authority(a.name.clone()));
            let mut acl = Acl::empty();
            acl.grant(Right::Get, admin.clone());
            acl.grant(Right::Get, Principal::Authority(a.name.clone()));
            objects.insert(
                ObjectRef::Authority(*kvn),
                Stored {
                    acl,
                    value: authority_info(a),
                },
            );
        }
        objects.insert(
            ObjectRef::AuditLog,
            Stored {
                acl: audit_acl,
                value: ObjectValue::AuditLog(Vec::new()),
            },
        );
        let mut state = State {
            card_id,
            capacity: params.capacity,
            generation: 1,
            failure_limit: params.failure_limit,
            next_audit: 1,
            scp_counter: 0,
            scp_i: scp03::I_PSEUDO_RANDOM_CHALLENGE
                | scp03::I_RMAC_SUPPORT
                | scp03::I_RENC_SUPPORT
                | if params.scp_s16 { scp03::I_S16 } else { 0 },
            identity_secret: secret,
            pin: Secret {
                value: Zeroizing::new(pin.as_bytes().to_vec()),
                tries_left: params.pin_tries,
                max_tries: params.pin_tries,
            },
            puk: Secret {
                value: Zeroizing::new(puk.as_bytes().to_vec()),
                tries_left: params.puk_tries,
                max_tries: params.puk_tries,
            },
            failures: BTreeMap::new(),
            objects,
            authorities,
            audit: BTreeMap::new(),
            approved: None,
            flat_audit_ring: false,
        };
        state.audit(
            AuditEvent::Initialised,
            admin.acl_name(),
            0,
            "card personalised",
        );
        let records = state.to_records();
        store.begin()?;
        for (k, v) in &records {
            if let Err(e) = store.write(k, v) {
                store.abort();
                return Err(e.into());
            }
        }
        store.commit()?;
        Ok(Card {
            store,
            rng,
            state,
            records,
            volatile: Volatile::default(),
            mute: false,
            regressions: Regressions::default(),
        })
    }

    /// Powers up a card from its store. A damaged state is an error, never a blank card.
    pub fn power_up(mut store: S, mut rng: R) -> Result<Self, CardError> {
        let records = store.load()?;
        if records.is_empty() {
            return Err(CardError::Store(StateDefect::NoCard.into()));
        }
        let state = State::from_records(&records)?;
        let volatile = Volatile {
            session_id: rng.next_u32() & 0x00FF_FFFF,
            ..Volatile::default()
        };
        Ok(Card {
            store,
            rng,
            state,
            records,
            volatile,
            mute: false,
            regressions: Regressions::default(),
        })
    }
}
