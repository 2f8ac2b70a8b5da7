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

use dmsc_card_model::scp03::{self, SecurityLevel, StaticKeys};
use zeroize::Zeroizing;

use crate::error::{HostError, ProtocolFault};
use crate::governance::Governance;
use crate::session::scp::{open_secure_channel, AuthorityKeySet, ChannelInfo};
use crate::session::{CardCommands, Session};
use crate::transport::Transport;

pub use crate::card_keys::{
    DiversifyError, KeyKind, StoreFault, StoreStep, CARD_ID_LEN, DERIVE_CARD_DEK, DERIVE_CARD_ENC,
    DERIVE_CARD_MAC,
};

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
