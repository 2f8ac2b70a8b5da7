//! Per-card authority keys diversified from master keys (docs/key-diversification.md).
//!
//! Every card gets its own static SCP03 keys (ENC, MAC, DEK). Each is the
//! NIST SP 800-108 counter-mode KDF with AES-CMAC as PRF — the KDF SCP03
//! uses for its session keys ([`dmsc_card_model::scp03::kdf`]) — keyed with
//! the matching master key, with a derivation constant per key
//! ([`KeyKind::constant`]) and the card's 16-byte card ID as context:
//!
//! ```text
//! card_key(kind) = KDF(master(kind), constant(kind), card_id, L = master key length)
//! block i        = AES-CMAC(master(kind), 00×11 || constant || 00 || L (2 bytes, bits) || i || card_id)
//! ```
//!
//! A station that holds only the master keys opens an authority session with
//! any card it provisioned ([`open_diversified_channel`]): it reads the card ID
//! at SELECT, derives the card's keys and runs INITIALIZE UPDATE / EXTERNAL
//! AUTHENTICATE with them.
//!
//! Master keys come from a [`MasterKeySource`]: [`SoftMasterKeys`] holds them in
//! host memory (development only); a PKCS#11 token keeps them inside and runs
//! the PRF there.

use std::borrow::Cow;
use std::fmt;

use dmsc_card_model::scp03::{self, Scp03Error, SecurityLevel, StaticKeys};
use zeroize::Zeroizing;

use crate::error::{HostError, ProtocolFault};
use crate::governance::Governance;
use crate::session::scp::{open_secure_channel, AuthorityKeySet, ChannelInfo};
use crate::session::{CardCommands, Session};
use crate::transport::Transport;

/// The length of a card ID (the KDF context), in bytes.
pub const CARD_ID_LEN: usize = 16;

/// Derivation constant of the card's static ENC key.
pub const DERIVE_CARD_ENC: u8 = 0x41;
/// Derivation constant of the card's static MAC key.
pub const DERIVE_CARD_MAC: u8 = 0x42;
/// Derivation constant of the card's static DEK.
pub const DERIVE_CARD_DEK: u8 = 0x43;

/// One of the three static keys of a key set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// Key-ENC.
    Enc,
    /// Key-MAC.
    Mac,
    /// Key-DEK.
    Dek,
}

impl KeyKind {
    /// ENC, MAC, DEK in that order.
    pub const ALL: [KeyKind; 3] = [KeyKind::Enc, KeyKind::Mac, KeyKind::Dek];

    /// The KDF derivation constant of this key.
    pub fn constant(self) -> u8 {
        match self {
            KeyKind::Enc => DERIVE_CARD_ENC,
            KeyKind::Mac => DERIVE_CARD_MAC,
            KeyKind::Dek => DERIVE_CARD_DEK,
        }
    }

    /// `enc`, `mac` or `dek` (the suffix of the key's label in a token).
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Enc => "enc",
            KeyKind::Mac => "mac",
            KeyKind::Dek => "dek",
        }
    }

    /// The label of the master key in a PKCS#11 token:
    /// `dmsc-master-<kvn, two hex digits>-<enc|mac|dek>`.
    pub fn master_label(self, key_version: u8) -> String {
        format!("dmsc-master-{key_version:02x}-{}", self.name())
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a card's keys could not be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiversifyError {
    /// The card ID is not 16 bytes.
    #[error("a card ID is {CARD_ID_LEN} bytes, not {0}")]
    CardIdLength(usize),
    /// A master key or a derived key was refused by the SCP03 primitives.
    #[error("{kind} master key: {source}")]
    Key {
        /// Which key.
        kind: KeyKind,
        /// Why.
        #[source]
        source: Scp03Error,
    },
    /// The derived keys do not form a key set.
    #[error("derived keys: {0}")]
    KeySet(#[source] Scp03Error),
    /// The key store (e.g. a PKCS#11 token) failed.
    #[error("{what}: {detail}")]
    Store {
        /// What was being done (names the key label where there is one).
        what: String,
        /// Why.
        detail: String,
    },
}

/// The first input block layout of the KDF, for block `counter` (from 1):
/// `00×11 || constant || 00 || L || counter || context`, with `L` the output
/// length in bits as two big-endian bytes. The PRF (AES-CMAC with the master
/// key) runs over these bytes; a PKCS#11 token does it with `CKM_AES_CMAC`.
pub fn kdf_block_input(constant: u8, out_bits: u16, counter: u8, context: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(16 + context.len());
    input.extend_from_slice(&[0u8; 11]);
    input.push(constant);
    input.push(0x00);
    input.extend_from_slice(&out_bits.to_be_bytes());
    input.push(counter);
    input.extend_from_slice(context);
    input
}

/// Where the master keys of one key version live.
pub trait MasterKeySource: Send + Sync {
    /// The authority key version the master keys are for.
    fn key_version(&self) -> u8;

    /// The length of the master keys (and of the derived keys), in bytes.
    fn key_len(&self) -> usize;

    /// The KDF output for `kind` over `context` (the card ID), as long as the
    /// master key: every block is the PRF of [`kdf_block_input`].
    fn derive(&self, kind: KeyKind, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, DiversifyError>;
}

/// Master keys held in host memory (read from a file): for development and
/// tests. They are zeroized on drop.
#[derive(Clone)]
pub struct SoftMasterKeys {
    key_version: u8,
    keys: StaticKeys,
}

impl fmt::Debug for SoftMasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SoftMasterKeys {{ key_version: {:02X}, keys: (redacted) }}",
            self.key_version
        )
    }
}

impl SoftMasterKeys {
    /// Master keys for `key_version`: ENC, MAC and DEK as a [`StaticKeys`].
    pub fn new(key_version: u8, keys: StaticKeys) -> Self {
        SoftMasterKeys { key_version, keys }
    }
}

impl MasterKeySource for SoftMasterKeys {
    fn key_version(&self) -> u8 {
        self.key_version
    }

    fn key_len(&self) -> usize {
        usize::from(self.keys.key_bits() / 8)
    }

    fn derive(&self, kind: KeyKind, context: &[u8]) -> Result<Zeroizing<Vec<u8>>, DiversifyError> {
        let master = match kind {
            KeyKind::Enc => self.keys.enc(),
            KeyKind::Mac => self.keys.mac(),
            KeyKind::Dek => self.keys.dek(),
        };
        scp03::kdf(master, kind.constant(), context, self.keys.key_bits())
            .map_err(|source| DiversifyError::Key { kind, source })
    }
}

/// A card's diversified authority: its key set and the key check values.
#[derive(Clone)]
pub struct CardKeys {
    /// The key set (the master keys' key version).
    pub authority: AuthorityKeySet,
    /// KCVs of ENC, MAC and DEK ([`scp03::key_check_value`]).
    pub kcvs: [[u8; 3]; 3],
}

impl fmt::Debug for CardKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CardKeys {{ key_version: {:02X}, kcvs: {}/{}/{}, keys: (redacted) }}",
            self.authority.key_version,
            hex::encode_upper(self.kcvs[0]),
            hex::encode_upper(self.kcvs[1]),
            hex::encode_upper(self.kcvs[2])
        )
    }
}

/// The static keys of the card `card_id` (16 bytes), derived from `master`.
pub fn derive_card_keys(
    master: &dyn MasterKeySource,
    card_id: &[u8],
) -> Result<CardKeys, DiversifyError> {
    if card_id.len() != CARD_ID_LEN {
        return Err(DiversifyError::CardIdLength(card_id.len()));
    }
    let enc = master.derive(KeyKind::Enc, card_id)?;
    let mac = master.derive(KeyKind::Mac, card_id)?;
    let dek = master.derive(KeyKind::Dek, card_id)?;
    let kcv = |kind: KeyKind, key: &[u8]| {
        scp03::key_check_value(key).map_err(|source| DiversifyError::Key { kind, source })
    };
    let kcvs = [
        kcv(KeyKind::Enc, &enc)?,
        kcv(KeyKind::Mac, &mac)?,
        kcv(KeyKind::Dek, &dek)?,
    ];
    let keys = StaticKeys::new(&enc, &mac, &dek).map_err(DiversifyError::KeySet)?;
    Ok(CardKeys {
        authority: AuthorityKeySet {
            key_version: master.key_version(),
            keys,
        },
        kcvs,
    })
}

/// Opens an authority session with a card whose keys are diversified from
/// `master`: SELECT (the card ID), derive, then INITIALIZE UPDATE / EXTERNAL
/// AUTHENTICATE ([`open_secure_channel`]) with the card's keys. Returns the
/// channel and the card's keys (e.g. for PUT KEY with its DEK).
pub fn open_diversified_channel<T: Transport>(
    session: &mut Session<T>,
    master: &dyn MasterKeySource,
    level: SecurityLevel,
) -> Result<(ChannelInfo, CardKeys), HostError> {
    session.clear_secure_messaging();
    let info = session.select()?;
    let keys =
        derive_card_keys(master, &info.card_id).map_err(|source| HostError::KeyDerivation {
            command: "INITIALIZE UPDATE",
            card_id: info.card_id.to_vec(),
            source,
        })?;
    let channel = open_secure_channel(session, &keys.authority, level)?;
    Ok((channel, keys))
}

/// The authority keys to use with a card: the same key set for every card
/// ([`AuthorityKeySet`]) or the card's own keys, derived from master keys (any
/// [`MasterKeySource`]). Fleet operations and OTA scripts take either.
pub trait CardAuthorityKeys: Send + Sync {
    /// The key set's key version (P1 of INITIALIZE UPDATE).
    fn key_version(&self) -> u8;

    /// The key set of the card `card_id` (16 bytes).
    fn for_card(&self, card_id: &[u8]) -> Result<Cow<'_, AuthorityKeySet>, DiversifyError>;

    /// Whether the keys depend on the card (then the card ID is read first).
    fn per_card(&self) -> bool;
}

impl CardAuthorityKeys for AuthorityKeySet {
    fn key_version(&self) -> u8 {
        self.key_version
    }

    fn for_card(&self, _card_id: &[u8]) -> Result<Cow<'_, AuthorityKeySet>, DiversifyError> {
        Ok(Cow::Borrowed(self))
    }

    fn per_card(&self) -> bool {
        false
    }
}

impl<M: MasterKeySource> CardAuthorityKeys for M {
    fn key_version(&self) -> u8 {
        MasterKeySource::key_version(self)
    }

    fn for_card(&self, card_id: &[u8]) -> Result<Cow<'_, AuthorityKeySet>, DiversifyError> {
        derive_card_keys(self, card_id).map(|k| Cow::Owned(k.authority))
    }

    fn per_card(&self) -> bool {
        true
    }
}

/// Opens an authority session with `keys`: directly with a fixed key set;
/// for per-card keys, SELECT first (the card ID), derive, then the handshake.
pub fn open_card_authority<T: Transport>(
    session: &mut Session<T>,
    keys: &dyn CardAuthorityKeys,
    level: SecurityLevel,
) -> Result<ChannelInfo, HostError> {
    if !keys.per_card() {
        let fixed = keys.for_card(&[]).map_err(|e| derive_failed(&[], e))?;
        return open_secure_channel(session, &fixed, level);
    }
    session.clear_secure_messaging();
    let card_id = session.select()?.card_id;
    let card_keys = keys
        .for_card(&card_id)
        .map_err(|e| derive_failed(&card_id, e))?;
    open_secure_channel(session, &card_keys, level)
}

fn derive_failed(card_id: &[u8], e: DiversifyError) -> HostError {
    HostError::KeyDerivation {
        command: "INITIALIZE UPDATE",
        card_id: card_id.to_vec(),
        source: e,
    }
}

/// Builds an OTA script ([`crate::ota::build_script`]) for the card of
/// `request` with `keys`: with master keys, the card's own keys are derived
/// from the request's card ID, so the script opens that card only.
pub fn build_ota_script(
    keys: &dyn CardAuthorityKeys,
    request: &crate::ota::OtaRequest,
    level: SecurityLevel,
    operations: &[crate::ota::OtaOperation],
) -> Result<crate::ota::OtaScript, crate::ota::OtaError> {
    use crate::ota::{OtaError, OtaProblem};
    let invalid = |problem| OtaError::Invalid {
        what: "request",
        problem,
    };
    let card_id = hex::decode(&request.card_id).map_err(|reason| {
        invalid(OtaProblem::CardIdNotHex {
            card_id: request.card_id.clone(),
            reason,
        })
    })?;
    let card_keys = keys.for_card(&card_id).map_err(|source| {
        invalid(OtaProblem::CardKeys {
            card_id: request.card_id.clone(),
            source,
        })
    })?;
    crate::ota::build_script(&card_keys.keys, request, level, operations)
}

/// Puts the card's diversified key set on it: opens an authority session with
/// `installer` (the key set the card holds now, e.g. its transport keys),
/// derives the card's keys from `master` and sends them with PUT KEY at the
/// master keys' key version, under the authority name `name`. When the
/// installer has that key version, its keys are replaced (rotated); otherwise
/// a key set is added (the installer needs Add on the card object). Returns
/// the card's keys; the card checks their KCVs (PUT KEY response).
pub fn install_diversified_keys<T: Transport>(
    session: &mut Session<T>,
    installer: &AuthorityKeySet,
    master: &dyn MasterKeySource,
    name: &str,
    level: SecurityLevel,
) -> Result<CardKeys, HostError> {
    open_secure_channel(session, installer, level)?;
    let card_id = session
        .select_info()
        .map(|i| i.card_id)
        .ok_or(HostError::Protocol {
            command: "SELECT",
            fault: ProtocolFault::NoCardId,
        })?;
    let keys = derive_card_keys(master, &card_id).map_err(|source| HostError::KeyDerivation {
        command: "PUT KEY",
        card_id: card_id.to_vec(),
        source,
    })?;
    let kvn = master.key_version();
    if installer.key_version == kvn {
        session.rotate_authority(installer, kvn, kvn, &keys.authority.keys)?;
    } else {
        session.add_authority(installer, name, kvn, &keys.authority.keys)?;
    }
    Ok(keys)
}

#[cfg(test)]
#[cfg(feature = "sim")]
mod card_tests {
    use super::*;
    use crate::transport::sim::SimTransport;
    use dmsc_sim_card::{AuthorityKeys, InitParams, MemoryStore};
    use zeroize::Zeroizing;

    const TRANSPORT_KEY: [u8; 16] = [0x4B; 16];

    fn card() -> Session<SimTransport<MemoryStore>> {
        let params = InitParams::with_authorities(vec![AuthorityKeys {
            key_version: 0x01,
            name: "Transport".into(),
            enc: Zeroizing::new(TRANSPORT_KEY.to_vec()),
            mac: Zeroizing::new(TRANSPORT_KEY.to_vec()),
            dek: Zeroizing::new(TRANSPORT_KEY.to_vec()),
        }]);
        Session::new(SimTransport::in_memory(params).expect("card"))
    }

    fn transport() -> AuthorityKeySet {
        AuthorityKeySet {
            key_version: 0x01,
            keys: StaticKeys::new(&TRANSPORT_KEY, &TRANSPORT_KEY, &TRANSPORT_KEY).expect("k"),
        }
    }

    fn master(byte: u8) -> SoftMasterKeys {
        SoftMasterKeys::new(
            0x30,
            StaticKeys::new(&[byte; 16], &[byte + 1; 16], &[byte + 2; 16]).expect("keys"),
        )
    }

    fn level() -> SecurityLevel {
        SecurityLevel::new(0x33).expect("level")
    }

    #[test]
    fn a_station_with_only_the_master_keys_authenticates_to_every_card() {
        let m = master(0x70);
        let mut cards = [card(), card()];
        let mut installed = Vec::new();
        for c in &mut cards {
            installed.push(
                install_diversified_keys(c, &transport(), &m, "Line", level()).expect("install"),
            );
        }
        // Two cards, two key sets.
        assert_ne!(installed[0].kcvs, installed[1].kcvs);
        for (c, keys) in cards.iter_mut().zip(&installed) {
            // The card lists the derived keys' KCVs under the master key version.
            let entry = c
                .authorities()
                .expect("authorities")
                .into_iter()
                .find(|a| a.key_version == 0x30)
                .expect("key set 30");
            assert_eq!(entry.key_check_values, keys.kcvs);
            assert_eq!(entry.name, "Line");
            // A fresh master key source (nothing per card) opens a session.
            let (info, again) =
                open_diversified_channel(c, &master(0x70), level()).expect("diversified session");
            assert_eq!(info.key_version, 0x30);
            assert_eq!(again.kcvs, keys.kcvs);
            assert!(c.is_secured());
        }
        // One card's keys do not open the other card.
        let e = open_secure_channel(&mut cards[1], &installed[0].authority, level())
            .expect_err("other card's keys");
        assert!(e.to_string().contains("wrong key set"), "{e}");
        // Other master keys do not open any card.
        let e = open_diversified_channel(&mut cards[0], &master(0x10), level())
            .expect_err("other master keys");
        assert!(e.to_string().contains("wrong key set"), "{e}");
    }

    #[test]
    fn fleet_grant_and_provision_with_master_keys_only() {
        use crate::fleet::{acl_grant, provision, FleetCard, GrantOutcome, GrantRequest, Profile};
        use dmsc_card_model::commands::ObjectValue;
        use dmsc_card_model::objects::{Acl, ObjectRef, Principal, Right};
        let m = master(0x70);
        let mut cards: Vec<_> = (0..3)
            .map(|i| {
                let mut c = card();
                install_diversified_keys(&mut c, &transport(), &m, "Line", level())
                    .expect("install");
                // The transport authority (the card's administrator) sets the ACL.
                c.put_object(
                    &ObjectRef::Policy,
                    &ObjectValue::Policy(b"p".to_vec()),
                    Some(&Acl::parse("Get=*&Replace=Line").expect("acl")),
                )
                .expect("policy");
                FleetCard::new(format!("card {i}"), c)
            })
            .collect();
        let report = acl_grant(
            &mut cards,
            &GrantRequest {
                object: ObjectRef::Policy,
                right: Right::Get,
                to: Principal::Authority("Audit".into()),
                as_authority: "Line",
                keys: &m,
                level: level(),
            },
            |_| {},
        );
        assert_eq!(report.outcome, GrantOutcome::Applied, "{:?}", report.failed);
        let results = provision(&mut cards, &Profile::default(), &m, level(), &|_| {});
        assert!(results.iter().all(|r| r.result.is_ok()), "{results:?}");
        // The same grant with the transport keys of another key version fails
        // the check on every card: nothing is changed.
        let report = acl_grant(
            &mut cards,
            &GrantRequest {
                object: ObjectRef::Policy,
                right: Right::Get,
                to: Principal::Authority("Other".into()),
                as_authority: "Line",
                keys: &SoftMasterKeys::new(0x30, master(0x10).keys),
                level: level(),
            },
            |_| {},
        );
        assert_eq!(report.outcome, GrantOutcome::Refused);
        assert_eq!(report.failed.len(), 3);
    }

    #[test]
    fn an_ota_script_built_from_master_keys_opens_its_card_only() {
        use crate::ota::{read_request, relay, OtaOperation};
        let m = master(0x70);
        let mut a = card();
        let mut b = card();
        for c in [&mut a, &mut b] {
            install_diversified_keys(c, &transport(), &m, "Line", level()).expect("install");
        }
        let request = read_request(&mut a, 0x30).expect("request");
        let ops = [OtaOperation::DeleteMo("./Nothing".into())];
        let script = build_ota_script(&m, &request, level(), &ops).expect("script");
        // The other card (same master keys, other card keys) refuses it.
        let mut forged = script.clone();
        forged.card_id = hex::encode_upper(b.select().expect("select").card_id);
        let e = relay(&mut b, &forged).map(|_| ()).unwrap_err().to_string();
        assert!(
            e.contains("APDU 2 of the script (EXTERNAL AUTHENTICATE)"),
            "{e}"
        );
        // Its own card accepts the handshake (APDUs 1 and 2); the delete
        // itself is then refused (Line holds no Delete right).
        let e = relay(&mut a, &script).map(|_| ()).unwrap_err().to_string();
        assert!(
            e.contains("APDU 3 of the script (delete mo:./Nothing)"),
            "{e}"
        );
    }

    #[test]
    fn the_transport_key_set_can_be_replaced_by_the_diversified_one() {
        let m = SoftMasterKeys::new(0x01, master(0x70).keys.clone());
        let mut c = card();
        install_diversified_keys(&mut c, &transport(), &m, "Line", level()).expect("rotate");
        assert!(open_secure_channel(&mut c, &transport(), level()).is_err());
        open_diversified_channel(&mut c, &m, level()).expect("diversified session");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmac::{Cmac, Mac};

    fn master() -> SoftMasterKeys {
        let k = |b: u8| -> Vec<u8> { (0..16).map(|i| b.wrapping_add(i)).collect() };
        SoftMasterKeys::new(
            0x30,
            StaticKeys::new(&k(0x40), &k(0x50), &k(0x60)).expect("keys"),
        )
    }

    /// The documented vector (docs/key-diversification.md), computed with an
    /// independent implementation (Python `cryptography`'s AES-CMAC).
    #[test]
    fn known_answer_vector_from_the_documentation() {
        let card_id = hex::decode("0102030405060708090A0B0C0D0E0F10").expect("hex");
        let keys = derive_card_keys(&master(), &card_id).expect("derive");
        assert_eq!(
            hex::encode_upper(keys.authority.keys.enc()),
            "F1FBE82CFA135D553347C909B9740956",
            "ENC"
        );
        assert_eq!(
            hex::encode_upper(keys.authority.keys.mac()),
            "E3454625F2A73E30AEB6D558F519EFD8",
            "MAC"
        );
        assert_eq!(
            hex::encode_upper(keys.authority.keys.dek()),
            "89AC2DF1779F707ED6CE6D3B1F899363",
            "DEK"
        );
        assert_eq!(
            keys.kcvs.map(hex::encode_upper),
            ["235D24", "505804", "CAAA83"].map(String::from)
        );
        assert_eq!(keys.authority.key_version, 0x30);
    }

    /// The block layout [`kdf_block_input`] documents (and a token's PRF is
    /// fed) is the one the card model's KDF uses, for AES-128 and AES-256.
    #[test]
    fn block_input_layout_matches_the_card_models_kdf() {
        let card_id = [0xA5u8; 16];
        let k128 = [0x11u8; 16];
        let want = scp03::kdf(&k128, DERIVE_CARD_MAC, &card_id, 128).expect("kdf");
        let mut mac = <Cmac<aes::Aes128> as cmac::digest::KeyInit>::new((&k128).into());
        mac.update(&kdf_block_input(DERIVE_CARD_MAC, 128, 1, &card_id));
        assert_eq!(&want[..], &mac.finalize().into_bytes()[..]);

        let k256 = [0x22u8; 32];
        let want = scp03::kdf(&k256, DERIVE_CARD_DEK, &card_id, 256).expect("kdf");
        let mut got = Vec::new();
        for i in 1..=2 {
            let mut mac = <Cmac<aes::Aes256> as cmac::digest::KeyInit>::new((&k256).into());
            mac.update(&kdf_block_input(DERIVE_CARD_DEK, 256, i, &card_id));
            got.extend_from_slice(&mac.finalize().into_bytes());
        }
        assert_eq!(&want[..], &got[..]);
    }

    #[test]
    fn cards_get_different_keys_and_bad_ids_are_refused() {
        let m = master();
        let a = derive_card_keys(&m, &[1u8; 16]).expect("a");
        let b = derive_card_keys(&m, &[2u8; 16]).expect("b");
        assert_ne!(a.authority.keys.enc(), b.authority.keys.enc());
        assert_ne!(a.authority.keys.mac(), b.authority.keys.mac());
        assert_ne!(a.authority.keys.dek(), b.authority.keys.dek());
        // ENC, MAC and DEK of one card differ even from equal master keys.
        let same =
            SoftMasterKeys::new(1, StaticKeys::new(&[7; 16], &[7; 16], &[7; 16]).expect("k"));
        let c = derive_card_keys(&same, &[1u8; 16]).expect("c");
        assert_ne!(c.authority.keys.enc(), c.authority.keys.mac());
        assert_ne!(c.authority.keys.mac(), c.authority.keys.dek());
        let e = derive_card_keys(&m, &[1u8; 10]).unwrap_err().to_string();
        assert!(e.contains("16 bytes, not 10"), "{e}");
        assert!(!format!("{a:?}").contains(&hex::encode_upper(a.authority.keys.enc())));
        assert_eq!(KeyKind::Dek.master_label(0x30), "dmsc-master-30-dek");
    }
}
