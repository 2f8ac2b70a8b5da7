//! Keys and authorities: the SCP03 authentication of an authority
//! (INITIALIZE UPDATE, EXTERNAL AUTHENTICATE: `docs/commands.md` §3.17,
//! §3.18, GlobalPlatform Amendment D), PUT KEY of its key sets (§3.20,
//! GlobalPlatform Card Specification §11.8), GET CHALLENGE and INTERNAL
//! AUTHENTICATE with the card's identity key (§3.10, §3.11).

use alloc::string::ToString;
use alloc::vec::Vec;

use dmsc_card_model::apdu::{Command, Status};
use dmsc_card_model::commands::{AuditEvent, AuthorityInfo, ObjectValue, AID};
use dmsc_card_model::objects::{Acl, ObjectRef, Principal, Right};
use dmsc_card_model::scp03::{self, InitializeUpdateResponse, SecureChannel, StaticKeys};
use rand_core::{CryptoRng, RngCore};

use super::{Card, Outcome, PendingAuth, Regression, ScpSession, INTERNAL_AUTHENTICATE_PREFIX};
use crate::crypto;
use crate::state::{Authority, Record, Stored};
use crate::store::PersistentMemory;

impl<S: PersistentMemory, R: RngCore + CryptoRng> Card<S, R> {
    /// GET CHALLENGE: `len` random bytes, 1 to 256 (`docs/commands.md` §3.10).
    pub(super) fn get_challenge(&mut self, len: usize) -> Outcome {
        if len == 0 || len > 256 {
            return Err(Status::WrongLength);
        }
        let mut c = alloc::vec![0u8; len];
        self.rng.fill_bytes(&mut c);
        Ok(c)
    }

    /// INTERNAL AUTHENTICATE: the identity key signs the prefixed challenge
    /// (`docs/commands.md` §3.11).
    pub(super) fn internal_authenticate(&mut self, challenge: &[u8]) -> Outcome {
        self.require(&ObjectRef::IdentityKey, Right::Exec)?;
        let message = [INTERNAL_AUTHENTICATE_PREFIX, challenge].concat();
        crypto::sign(&self.state.identity_secret, &message).ok_or(Status::UnspecifiedCheckingError)
    }

    /// GlobalPlatform PUT KEY: adds (P1 `00`) or rotates (P1 = its key version)
    /// an authority's SCP03 key set. The keys arrive encrypted with the DEK of
    /// the authority whose session carries the command, each with its key
    /// check value; one transaction stores the key set and its object.
    pub(super) fn put_key(&mut self, p: dmsc_card_model::commands::PutKey) -> Outcome {
        let adding = p.replace_kvn == 0;
        let Some((session_kvn, who)) = self
            .volatile
            .scp
            .as_ref()
            .map(|s| (s.key_version, s.authority.clone()))
        else {
            // Keys travel only inside an authority session.
            let (object, right) = if adding {
                (ObjectRef::Authority(p.new_kvn), Right::Add)
            } else {
                (ObjectRef::Authority(p.replace_kvn), Right::Replace)
            };
            return self.deny(&object, right);
        };
        if adding {
            if !self.holds(&ObjectRef::Card, Right::Add) {
                return self.deny(&ObjectRef::Authority(p.new_kvn), Right::Add);
            }
        } else {
            self.require_authority_right(p.replace_kvn, Right::Replace)?;
        }
        let dek = self
            .state
            .authorities
            .get(&session_kvn)
            .map(|a| a.dek.clone())
            .ok_or(Status::ReferenceDataNotUsable)?;
        let [enc, mac, dek_new] = p.decrypt(&dek).map_err(|e| e.status())?;
        if StaticKeys::new(&enc, &mac, &dek_new).is_err() {
            return Err(Status::IncorrectDataParameter);
        }
        let mut next = self.state.clone();
        let name = if adding {
            let name = p.name.clone().ok_or(Status::IncorrectDataParameter)?;
            if next.authorities.contains_key(&p.new_kvn)
                || next.authorities.values().any(|a| a.name == name)
            {
                return Err(Status::IncorrectDataParameter);
            }
            name
        } else {
            let old = next
                .authorities
                .get(&p.replace_kvn)
                .ok_or(Status::KeyReferenceNotFound)?;
            let moving = p.new_kvn != p.replace_kvn;
            if (moving && next.authorities.contains_key(&p.new_kvn))
                || p.name.as_ref().is_some_and(|n| *n != old.name)
            {
                return Err(Status::IncorrectDataParameter);
            }
            old.name.clone()
        };
        let authority = Authority {
            name: name.clone(),
            enc,
            mac,
            dek: dek_new,
        };
        let value = authority_info(&authority);
        let (acl, event, detail) = if adding {
            let creator = Principal::Authority(who.clone());
            if let Some(log) = next.objects.get_mut(&ObjectRef::AuditLog) {
                log.acl
                    .grant(Right::Get, Principal::Authority(name.clone()));
            }
            (
                authority_acl(&creator, &name),
                AuditEvent::AuthorityAdded,
                alloc::format!("{name} key version 0x{:02X}", p.new_kvn),
            )
        } else {
            next.authorities.remove(&p.replace_kvn);
            let acl = next
                .objects
                .remove(&ObjectRef::Authority(p.replace_kvn))
                .map(|o| o.acl)
                .unwrap_or_else(|| authority_acl(&Principal::Authority(who.clone()), &name));
            (
                acl,
                AuditEvent::AuthorityRotated,
                alloc::format!(
                    "{name} key version 0x{:02X} -> 0x{:02X}",
                    p.replace_kvn,
                    p.new_kvn
                ),
            )
        };
        next.authorities.insert(p.new_kvn, authority);
        next.objects
            .insert(ObjectRef::Authority(p.new_kvn), Stored { acl, value });
        if next.used_memory() > next.capacity {
            return Err(Status::NotEnoughMemory);
        }
        next.audit(event, &who, self.volatile.session_id, detail);
        self.commit(next)?;
        Ok(dmsc_card_model::commands::PutKeyResponse {
            key_version: p.new_kvn,
            kcvs: p.kcvs(),
        }
        .encode())
    }

    pub(super) fn initialize_update(&mut self, cmd: &Command) -> Outcome {
        let (kvn, host_challenge) =
            scp03::parse_initialize_update(cmd).map_err(|_| Status::IncorrectDataParameter)?;
        let smode = scp03::SMode::from_i(self.state.scp_i);
        if host_challenge.len() != smode.size() {
            return Err(Status::WrongLength);
        }
        let (kvn, authority) = match kvn {
            0 => self.state.authorities.iter().next(),
            k => self.state.authorities.get_key_value(&k),
        }
        .ok_or(Status::KeyReferenceNotFound)?;
        let (kvn, keys) = (
            *kvn,
            authority
                .static_keys()
                .ok_or(Status::ReferenceDataNotUsable)?,
        );
        // The session would use the next counter value, but it is committed
        // only by a successful EXTERNAL AUTHENTICATE: until then, every
        // INITIALIZE UPDATE gets the same value and so the same pseudo-random
        // card challenge (docs/security.md, "SCP03 sequence counter").
        let counter = self.state.scp_counter.wrapping_add(1);
        if counter > 0x00FF_FFFF {
            return Err(Status::ReferenceDataNotUsable);
        }
        let name = authority.name.clone();
        let mut next = self.state.clone();
        next.audit_as(
            Record::Aggregated,
            AuditEvent::InitializeUpdate,
            &name,
            self.volatile.session_id,
            alloc::format!("key version 0x{kvn:02X}, counter {counter:06X} offered"),
        );
        if self
            .regressions
            .has(Regression::CounterSpentByInitializeUpdate)
        {
            next.scp_counter = counter;
        }
        self.commit(next)?;
        let seq: [u8; 3] = [(counter >> 16) as u8, (counter >> 8) as u8, counter as u8];
        let card_challenge = scp03::pseudo_random_card_challenge(&keys, seq, &AID, smode);
        let mut kdd = [0u8; 10];
        kdd.copy_from_slice(&self.state.card_id[..10]);
        let response = InitializeUpdateResponse::for_card(
            &keys,
            &host_challenge,
            kdd,
            kvn,
            self.state.scp_i,
            &card_challenge,
            Some(seq),
        )
        .map_err(|_| Status::UnspecifiedCheckingError)?;
        let data = response.encode();
        self.volatile.pending_auth = Some(PendingAuth {
            key_version: kvn,
            counter,
            host_challenge,
            response,
        });
        Ok(data)
    }

    pub(super) fn external_authenticate(
        &mut self,
        cmd: &Command,
        pending: Option<PendingAuth>,
    ) -> Outcome {
        self.volatile.scp = None;
        let pending = pending.ok_or(Status::ConditionsOfUseNotSatisfied)?;
        // Level 00 would let unprotected commands run with the authority's rights.
        if cmd.p1 & scp03::SecurityLevel::C_MAC == 0 {
            return Err(Status::IncorrectP1OrP2Parameter);
        }
        let authority = self
            .state
            .authorities
            .get(&pending.key_version)
            .ok_or(Status::KeyReferenceNotFound)?
            .clone();
        let keys = authority
            .static_keys()
            .ok_or(Status::ReferenceDataNotUsable)?;
        match SecureChannel::card_authenticate(
            &keys,
            &pending.host_challenge,
            &pending.response,
            cmd,
        ) {
            Ok(channel) => {
                // The counter value this session used is spent now, and only now.
                if pending.counter <= self.state.scp_counter
                    && !self
                        .regressions
                        .has(Regression::CounterSpentByInitializeUpdate)
                {
                    return Err(Status::ConditionsOfUseNotSatisfied);
                }
                let mut next = self.state.clone();
                next.scp_counter = pending.counter;
                next.clear_failures(&authority.name);
                let level = channel.security_level().bits();
                next.audit(
                    AuditEvent::AuthSuccess,
                    &authority.name,
                    self.volatile.session_id,
                    alloc::format!(
                        "SCP03 key version 0x{:02X}, level {level:02X}",
                        pending.key_version
                    ),
                );
                self.commit(next)?;
                self.volatile.scp = Some(ScpSession {
                    authority: authority.name,
                    key_version: pending.key_version,
                    channel,
                });
                Ok(Vec::new())
            }
            Err(scp03::Scp03Error::BadSecurityLevel(_))
            | Err(scp03::Scp03Error::MalformedCommand) => Err(Status::IncorrectP1OrP2Parameter),
            Err(_) => {
                // Anyone can get here (INITIALIZE UPDATE needs no key):
                // aggregated, like every record of a caller without a session.
                self.record_failure(
                    &authority.name,
                    AuditEvent::AuthFailure,
                    "EXTERNAL AUTHENTICATE failed",
                    Record::Aggregated,
                )?;
                Err(Status::SecurityStatusNotSatisfied)
            }
        }
    }
}

/// The ACL of an authority's key set: its creator and the authority itself
/// may read and rotate it; the creator may remove it.
pub(super) fn authority_acl(creator: &Principal, name: &str) -> Acl {
    let own = Principal::Authority(name.to_string());
    let mut acl = Acl::empty();
    for right in [Right::Get, Right::Replace] {
        acl.grant(right, creator.clone());
        acl.grant(right, own.clone());
    }
    acl.grant(Right::Delete, creator.clone());
    acl
}

pub(super) fn authority_info(a: &Authority) -> ObjectValue {
    let kcv = |k: &[u8]| scp03::key_check_value(k).unwrap_or([0; 3]);
    ObjectValue::Authority(AuthorityInfo {
        name: a.name.clone(),
        key_length: a.enc.len() as u8,
        key_check_values: [kcv(&a.enc), kcv(&a.mac), kcv(&a.dek)],
    })
}
