//! GlobalPlatform Secure Channel Protocol '03' (Card Specification v2.3,
//! Amendment D): key derivation, the INITIALIZE UPDATE / EXTERNAL
//! AUTHENTICATE handshake and command/response protection, for both the host
//! and the card side.
//!
//! A session in brief:
//!
//! 1. The host sends [`initialize_update`] with a fresh host challenge.
//! 2. The card answers with an [`InitializeUpdateResponse`] (built with
//!    [`InitializeUpdateResponse::for_card`]).
//! 3. The host calls [`SecureChannel::host_authenticate`], which checks the
//!    card cryptogram and yields the channel and the EXTERNAL AUTHENTICATE
//!    command; the card checks that command with
//!    [`SecureChannel::card_authenticate`].
//! 4. The host protects commands with [`SecureChannel::wrap_command`] and
//!    checks responses with [`SecureChannel::unwrap_response`]; the card uses
//!    [`SecureChannel::unwrap_command`] and [`SecureChannel::wrap_response`].
//!
//! The C-MAC covers Lc in the form [`Command::to_bytes`] chooses (short when
//! the wrapped command fits, extended otherwise), so wrapped commands must be
//! sent in that form.
//!
//! Key schedules of the `aes` cipher objects are short-lived (one per
//! operation); they are wiped on drop only when the `aes` crate's `zeroize`
//! feature is enabled.

use alloc::vec::Vec;
use core::fmt;

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit};
use cmac::{Cmac, Mac};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::apdu::{Command, Response, Status, EXTENDED_MAX_NC, EXTENDED_MAX_NE};

/// AES block size in bytes.
const BLOCK: usize = 16;

/// KDF derivation constant: card cryptogram.
pub const DERIVE_CARD_CRYPTOGRAM: u8 = 0x00;
/// KDF derivation constant: host cryptogram.
pub const DERIVE_HOST_CRYPTOGRAM: u8 = 0x01;
/// KDF derivation constant: pseudo-random card challenge.
pub const DERIVE_CARD_CHALLENGE: u8 = 0x02;
/// KDF derivation constant: S-ENC.
pub const DERIVE_S_ENC: u8 = 0x04;
/// KDF derivation constant: S-MAC.
pub const DERIVE_S_MAC: u8 = 0x06;
/// KDF derivation constant: S-RMAC.
pub const DERIVE_S_RMAC: u8 = 0x07;

/// INS of INITIALIZE UPDATE.
pub const INS_INITIALIZE_UPDATE: u8 = 0x50;
/// INS of EXTERNAL AUTHENTICATE.
pub const INS_EXTERNAL_AUTHENTICATE: u8 = 0x82;
/// The SCP identifier an SCP03 card reports in its key information.
pub const SCP_ID: u8 = 0x03;

/// Why an SCP03 operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scp03Error {
    /// A key is not 16, 24 or 32 bytes long.
    BadKeyLength,
    /// The three static keys do not all have the same length.
    KeyLengthMismatch,
    /// A security level that is not one of 00, 01, 03, 11, 13, 33.
    BadSecurityLevel(u8),
    /// A challenge of the wrong length (8 bytes for S8, 16 for S16), or host
    /// and card challenges of different lengths.
    BadChallengeLength,
    /// A length that the operation cannot handle (KDF output size, DEK data
    /// that is not a whole number of blocks).
    BadDataLength,
    /// The INITIALIZE UPDATE response names another SCP than '03'.
    NotScp03(u8),
    /// The card cryptogram does not match (host side).
    CardCryptogramMismatch,
    /// The host cryptogram does not match (card side).
    HostCryptogramMismatch,
    /// A C-MAC or R-MAC does not match.
    MacMismatch,
    /// Decrypted data does not end in ISO/IEC 9797-1 method 2 padding.
    BadPadding,
    /// The encryption counter cannot be incremented any more.
    CounterExhausted,
    /// A response that cannot be a protected SCP03 response.
    MalformedResponse,
    /// A command that cannot be (or be made) a protected SCP03 command.
    MalformedCommand,
    /// The wrapped command would not fit in an extended APDU.
    CommandTooLong,
    /// The channel was closed by an earlier verification failure.
    SessionClosed,
}

impl fmt::Display for Scp03Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scp03Error::BadKeyLength => f.write_str("AES key must be 16, 24 or 32 bytes"),
            Scp03Error::KeyLengthMismatch => f.write_str("static keys differ in length"),
            Scp03Error::BadSecurityLevel(l) => write!(f, "invalid SCP03 security level {l:02X}"),
            Scp03Error::BadChallengeLength => {
                f.write_str("challenge length does not match the S-mode")
            }
            Scp03Error::BadDataLength => f.write_str("data length not supported"),
            Scp03Error::NotScp03(id) => write!(f, "card uses SCP {id:02X}, not SCP03"),
            Scp03Error::CardCryptogramMismatch => f.write_str("card cryptogram mismatch"),
            Scp03Error::HostCryptogramMismatch => f.write_str("host cryptogram mismatch"),
            Scp03Error::MacMismatch => f.write_str("MAC mismatch"),
            Scp03Error::BadPadding => f.write_str("bad padding after decryption"),
            Scp03Error::CounterExhausted => f.write_str("encryption counter exhausted"),
            Scp03Error::MalformedResponse => f.write_str("malformed secure messaging response"),
            Scp03Error::MalformedCommand => f.write_str("malformed secure messaging command"),
            Scp03Error::CommandTooLong => f.write_str("wrapped command exceeds 65535 data bytes"),
            Scp03Error::SessionClosed => f.write_str("secure channel session closed"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Scp03Error {}

// ---------------------------------------------------------------------------
// AES plumbing
// ---------------------------------------------------------------------------

/// An AES key of validated length.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
enum AesKey {
    A128([u8; 16]),
    A192([u8; 24]),
    A256([u8; 32]),
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AES-{} key (redacted)", self.bits())
    }
}

/// Runs `$body` with `$k` bound to the key array and `$C` to the cipher type.
macro_rules! with_cipher {
    ($key:expr, |$k:ident, $C:ident| $body:expr) => {
        match $key {
            AesKey::A128($k) => {
                type $C = aes::Aes128;
                $body
            }
            AesKey::A192($k) => {
                type $C = aes::Aes192;
                $body
            }
            AesKey::A256($k) => {
                type $C = aes::Aes256;
                $body
            }
        }
    };
}

impl AesKey {
    fn new(key: &[u8]) -> Result<Self, Scp03Error> {
        Ok(match key.len() {
            16 => AesKey::A128(key.try_into().map_err(|_| Scp03Error::BadKeyLength)?),
            24 => AesKey::A192(key.try_into().map_err(|_| Scp03Error::BadKeyLength)?),
            32 => AesKey::A256(key.try_into().map_err(|_| Scp03Error::BadKeyLength)?),
            _ => return Err(Scp03Error::BadKeyLength),
        })
    }

    fn as_bytes(&self) -> &[u8] {
        with_cipher!(self, |k, _C| &k[..])
    }

    fn bits(&self) -> u16 {
        match self {
            AesKey::A128(_) => 128,
            AesKey::A192(_) => 192,
            AesKey::A256(_) => 256,
        }
    }

    /// AES-CMAC over the concatenation of `parts`.
    fn cmac(&self, parts: &[&[u8]]) -> [u8; BLOCK] {
        with_cipher!(self, |k, C| {
            let mut mac = <Cmac<C> as KeyInit>::new(k.into());
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().into()
        })
    }

    /// AES-ECB encryption of one block, in place.
    fn encrypt_block(&self, block: &mut [u8; BLOCK]) {
        with_cipher!(self, |k, C| {
            <C as KeyInit>::new(k.into()).encrypt_block(block.into());
        })
    }

    /// AES-CBC encryption in place; `buf` must be a whole number of blocks.
    fn cbc_encrypt(&self, iv: &[u8; BLOCK], buf: &mut [u8]) -> Result<(), Scp03Error> {
        if !buf.len().is_multiple_of(BLOCK) {
            return Err(Scp03Error::BadDataLength);
        }
        let len = buf.len();
        with_cipher!(self, |k, C| {
            cbc::Encryptor::<C>::new(k.into(), iv.into())
                .encrypt_padded_mut::<NoPadding>(buf, len)
                .map(|_| ())
                .map_err(|_| Scp03Error::BadDataLength)
        })
    }

    /// AES-CBC decryption in place; `buf` must be a whole number of blocks.
    fn cbc_decrypt(&self, iv: &[u8; BLOCK], buf: &mut [u8]) -> Result<(), Scp03Error> {
        if !buf.len().is_multiple_of(BLOCK) {
            return Err(Scp03Error::BadDataLength);
        }
        with_cipher!(self, |k, C| {
            cbc::Decryptor::<C>::new(k.into(), iv.into())
                .decrypt_padded_mut::<NoPadding>(buf)
                .map(|_| ())
                .map_err(|_| Scp03Error::BadDataLength)
        })
    }

    /// The SCP03 KDF for outputs of at most 255 blocks (`out_len` in bytes).
    fn kdf(&self, constant: u8, context: &[u8], out_len: u16) -> Zeroizing<Vec<u8>> {
        let l_bits = out_len.saturating_mul(8).to_be_bytes();
        let blocks = usize::from(out_len).div_ceil(BLOCK).min(255);
        let mut out = Zeroizing::new(Vec::with_capacity(blocks * BLOCK));
        let mut label = [0u8; 12];
        label[11] = constant;
        for i in 1..=blocks {
            let counter = [i as u8];
            let block = Zeroizing::new(self.cmac(&[&label, &[0x00], &l_bits, &counter, context]));
            out.extend_from_slice(&block[..]);
        }
        out.truncate(usize::from(out_len));
        out
    }
}

/// ISO/IEC 9797-1 padding method 2: `80` then zeros up to a block boundary.
fn pad_m2(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((data.len() / BLOCK + 1) * BLOCK);
    out.extend_from_slice(data);
    out.push(0x80);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    out
}

/// Strips ISO/IEC 9797-1 method 2 padding (at most one block of it).
fn unpad_m2(mut data: Vec<u8>) -> Result<Vec<u8>, Scp03Error> {
    let min_len = data.len().saturating_sub(BLOCK);
    while let Some(&last) = data.last() {
        if data.len() <= min_len {
            break;
        }
        data.pop();
        match last {
            0x00 => continue,
            0x80 => return Ok(data),
            _ => break,
        }
    }
    data.zeroize();
    Err(Scp03Error::BadPadding)
}

// ---------------------------------------------------------------------------
// Public primitives
// ---------------------------------------------------------------------------

/// The NIST SP 800-108 counter-mode KDF with AES-CMAC as SCP03 §4.1.5 lays it
/// out: each block is `CMAC(key, 00×11 || constant || 00 || L || i || context)`
/// with `L` the output length in bits (2 bytes) and `i` a one-byte counter
/// from 1. `out_bits` must be a non-zero multiple of 8 of at most 255 blocks.
pub fn kdf(
    key: &[u8],
    derivation_constant: u8,
    context: &[u8],
    out_bits: u16,
) -> Result<Zeroizing<Vec<u8>>, Scp03Error> {
    let key = AesKey::new(key)?;
    if out_bits == 0 || !out_bits.is_multiple_of(8) || usize::from(out_bits / 8) > 255 * BLOCK {
        return Err(Scp03Error::BadDataLength);
    }
    Ok(key.kdf(derivation_constant, context, out_bits / 8))
}

/// The key check value of an AES key: the first 3 bytes of AES-ECB over 16
/// bytes `01`.
pub fn key_check_value(key: &[u8]) -> Result<[u8; 3], Scp03Error> {
    let key = AesKey::new(key)?;
    let mut block = [0x01; BLOCK];
    key.encrypt_block(&mut block);
    Ok([block[0], block[1], block[2]])
}

/// Encrypts sensitive data (e.g. key values for PUT KEY) with the static DEK:
/// AES-CBC, zero ICV, no padding; `plaintext` must be a whole number of blocks.
pub fn dek_encrypt(dek: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Scp03Error> {
    let key = AesKey::new(dek)?;
    let mut buf = plaintext.to_vec();
    key.cbc_encrypt(&[0; BLOCK], &mut buf)?;
    Ok(buf)
}

/// Reverses [`dek_encrypt`].
pub fn dek_decrypt(dek: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, Scp03Error> {
    let key = AesKey::new(dek)?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    key.cbc_decrypt(&[0; BLOCK], &mut buf)?;
    Ok(buf)
}

/// The static key set of a Security Domain: Key-ENC, Key-MAC and Key-DEK, all
/// AES keys of the same length.
#[derive(Clone, ZeroizeOnDrop)]
pub struct StaticKeys {
    enc: AesKey,
    mac: AesKey,
    dek: AesKey,
}

impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticKeys {{ AES-{}, redacted }}", self.enc.bits())
    }
}

impl StaticKeys {
    /// Validates and copies three AES-128/192/256 keys of equal length.
    pub fn new(enc: &[u8], mac: &[u8], dek: &[u8]) -> Result<Self, Scp03Error> {
        let keys = StaticKeys {
            enc: AesKey::new(enc)?,
            mac: AesKey::new(mac)?,
            dek: AesKey::new(dek)?,
        };
        if enc.len() != mac.len() || enc.len() != dek.len() {
            return Err(Scp03Error::KeyLengthMismatch);
        }
        Ok(keys)
    }

    /// The key length in bits (128, 192 or 256).
    pub fn key_bits(&self) -> u16 {
        self.enc.bits()
    }

    /// Key-ENC (secret).
    pub fn enc(&self) -> &[u8] {
        self.enc.as_bytes()
    }

    /// Key-MAC (secret).
    pub fn mac(&self) -> &[u8] {
        self.mac.as_bytes()
    }

    /// Key-DEK (secret), for [`dek_encrypt`] / [`dek_decrypt`].
    pub fn dek(&self) -> &[u8] {
        self.dek.as_bytes()
    }
}

/// The S-mode: the length of challenges, cryptograms and MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SMode {
    /// 8-byte challenges, cryptograms and MACs.
    S8,
    /// 16-byte challenges, cryptograms and MACs (i-parameter bit `01`).
    S16,
}

impl SMode {
    /// The length in bytes of challenges, cryptograms and MACs.
    pub const fn size(self) -> usize {
        match self {
            SMode::S8 => 8,
            SMode::S16 => 16,
        }
    }

    /// The S-mode the i-parameter selects.
    pub const fn from_i(i: u8) -> Self {
        if i & I_S16 != 0 {
            SMode::S16
        } else {
            SMode::S8
        }
    }

    /// The S-mode of a challenge of `len` bytes.
    pub fn from_challenge_len(len: usize) -> Result<Self, Scp03Error> {
        match len {
            8 => Ok(SMode::S8),
            16 => Ok(SMode::S16),
            _ => Err(Scp03Error::BadChallengeLength),
        }
    }
}

/// i-parameter bit: S16 mode.
pub const I_S16: u8 = 0x01;
/// i-parameter bit: pseudo-random card challenge (sequence counter present).
pub const I_PSEUDO_RANDOM_CHALLENGE: u8 = 0x10;
/// i-parameter bit: R-MAC supported.
pub const I_RMAC_SUPPORT: u8 = 0x20;
/// i-parameter bit: R-ENCRYPTION supported.
pub const I_RENC_SUPPORT: u8 = 0x40;

/// The security level of a session (P1 of EXTERNAL AUTHENTICATE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityLevel(u8);

impl SecurityLevel {
    /// Command MAC.
    pub const C_MAC: u8 = 0x01;
    /// Command data encryption.
    pub const C_DECRYPTION: u8 = 0x02;
    /// Response MAC.
    pub const R_MAC: u8 = 0x10;
    /// Response data encryption.
    pub const R_ENCRYPTION: u8 = 0x20;

    /// Validates a level: one of `00` (authenticated, no secure messaging),
    /// `01`, `03`, `11`, `13`, `33`.
    pub const fn new(bits: u8) -> Result<Self, Scp03Error> {
        match bits {
            0x00 | 0x01 | 0x03 | 0x11 | 0x13 | 0x33 => Ok(SecurityLevel(bits)),
            _ => Err(Scp03Error::BadSecurityLevel(bits)),
        }
    }

    /// The level byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `flag` is set.
    pub const fn contains(self, flag: u8) -> bool {
        self.0 & flag == flag
    }
}

impl TryFrom<u8> for SecurityLevel {
    type Error = Scp03Error;
    fn try_from(bits: u8) -> Result<Self, Scp03Error> {
        SecurityLevel::new(bits)
    }
}

/// Host challenge || card challenge, checked to be of one valid length.
fn challenge_context(
    host_challenge: &[u8],
    card_challenge: &[u8],
) -> Result<(SMode, Vec<u8>), Scp03Error> {
    let smode = SMode::from_challenge_len(host_challenge.len())?;
    if card_challenge.len() != host_challenge.len() {
        return Err(Scp03Error::BadChallengeLength);
    }
    let mut ctx = Vec::with_capacity(2 * smode.size());
    ctx.extend_from_slice(host_challenge);
    ctx.extend_from_slice(card_challenge);
    Ok((smode, ctx))
}

/// The session keys S-ENC, S-MAC and S-RMAC.
#[derive(Clone, ZeroizeOnDrop)]
pub struct SessionKeys {
    s_enc: AesKey,
    s_mac: AesKey,
    s_rmac: AesKey,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKeys {{ AES-{}, redacted }}", self.s_enc.bits())
    }
}

impl SessionKeys {
    /// Derives the session keys (constants 04, 06, 07; context = host
    /// challenge || card challenge, both 8 or both 16 bytes).
    pub fn derive(
        static_keys: &StaticKeys,
        host_challenge: &[u8],
        card_challenge: &[u8],
    ) -> Result<Self, Scp03Error> {
        let (_, ctx) = challenge_context(host_challenge, card_challenge)?;
        let len = static_keys.key_bits() / 8;
        let s_enc = static_keys.enc.kdf(DERIVE_S_ENC, &ctx, len);
        let s_mac = static_keys.mac.kdf(DERIVE_S_MAC, &ctx, len);
        let s_rmac = static_keys.mac.kdf(DERIVE_S_RMAC, &ctx, len);
        Ok(SessionKeys {
            s_enc: AesKey::new(&s_enc)?,
            s_mac: AesKey::new(&s_mac)?,
            s_rmac: AesKey::new(&s_rmac)?,
        })
    }

    /// S-ENC (secret).
    pub fn s_enc(&self) -> &[u8] {
        self.s_enc.as_bytes()
    }

    /// S-MAC (secret).
    pub fn s_mac(&self) -> &[u8] {
        self.s_mac.as_bytes()
    }

    /// S-RMAC (secret).
    pub fn s_rmac(&self) -> &[u8] {
        self.s_rmac.as_bytes()
    }

    /// The card cryptogram (constant 00), as long as the challenges.
    pub fn card_cryptogram(
        &self,
        host_challenge: &[u8],
        card_challenge: &[u8],
    ) -> Result<Vec<u8>, Scp03Error> {
        self.cryptogram(DERIVE_CARD_CRYPTOGRAM, host_challenge, card_challenge)
    }

    /// The host cryptogram (constant 01), as long as the challenges.
    pub fn host_cryptogram(
        &self,
        host_challenge: &[u8],
        card_challenge: &[u8],
    ) -> Result<Vec<u8>, Scp03Error> {
        self.cryptogram(DERIVE_HOST_CRYPTOGRAM, host_challenge, card_challenge)
    }

    fn cryptogram(
        &self,
        constant: u8,
        host_challenge: &[u8],
        card_challenge: &[u8],
    ) -> Result<Vec<u8>, Scp03Error> {
        let (smode, ctx) = challenge_context(host_challenge, card_challenge)?;
        Ok(self.s_mac.kdf(constant, &ctx, smode.size() as u16).to_vec())
    }
}

/// The pseudo-random card challenge: KDF(Key-ENC, constant 02, context =
/// sequence counter || SD AID), 8 or 16 bytes per `smode`.
pub fn pseudo_random_card_challenge(
    static_keys: &StaticKeys,
    sequence_counter: [u8; 3],
    sd_aid: &[u8],
    smode: SMode,
) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(3 + sd_aid.len());
    ctx.extend_from_slice(&sequence_counter);
    ctx.extend_from_slice(sd_aid);
    static_keys
        .enc
        .kdf(DERIVE_CARD_CHALLENGE, &ctx, smode.size() as u16)
        .to_vec()
}

// ---------------------------------------------------------------------------
// INITIALIZE UPDATE
// ---------------------------------------------------------------------------

/// INITIALIZE UPDATE: CLA `80`, INS `50`, P1 = key version (00 = any), P2 =
/// `00`, data = host challenge (8 or 16 bytes), Le `00`.
pub fn initialize_update(key_version: u8, host_challenge: &[u8]) -> Result<Command, Scp03Error> {
    SMode::from_challenge_len(host_challenge.len())?;
    Ok(Command::new(0x80, INS_INITIALIZE_UPDATE, key_version, 0x00)
        .with_data(host_challenge.to_vec())
        .with_le(256))
}

/// Card side: reads an INITIALIZE UPDATE command, returning its key version
/// (P1) and host challenge.
pub fn parse_initialize_update(cmd: &Command) -> Result<(u8, Vec<u8>), Scp03Error> {
    if cmd.ins != INS_INITIALIZE_UPDATE || cmd.p2 != 0x00 || cmd.cla & 0x80 == 0 {
        return Err(Scp03Error::MalformedCommand);
    }
    SMode::from_challenge_len(cmd.data.len())?;
    Ok((cmd.p1, cmd.data.clone()))
}

/// The data of the card's response to INITIALIZE UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitializeUpdateResponse {
    /// Key diversification data (10 bytes).
    pub key_diversification_data: [u8; 10],
    /// Key version number of the static keys used.
    pub key_version: u8,
    /// SCP identifier, `03`.
    pub scp_id: u8,
    /// The i-parameter (see the `I_*` constants).
    pub i: u8,
    /// Card challenge, 8 or 16 bytes per S-mode.
    pub card_challenge: Vec<u8>,
    /// Card cryptogram, 8 or 16 bytes per S-mode.
    pub card_cryptogram: Vec<u8>,
    /// Sequence counter, present iff i has [`I_PSEUDO_RANDOM_CHALLENGE`].
    pub sequence_counter: Option<[u8; 3]>,
}

impl InitializeUpdateResponse {
    /// Card side: builds the response, computing the card cryptogram from the
    /// static keys and both challenges. The card challenge must match the
    /// S-mode of `i`, and `sequence_counter` must be present iff `i` has
    /// [`I_PSEUDO_RANDOM_CHALLENGE`].
    pub fn for_card(
        static_keys: &StaticKeys,
        host_challenge: &[u8],
        key_diversification_data: [u8; 10],
        key_version: u8,
        i: u8,
        card_challenge: &[u8],
        sequence_counter: Option<[u8; 3]>,
    ) -> Result<Self, Scp03Error> {
        if card_challenge.len() != SMode::from_i(i).size() {
            return Err(Scp03Error::BadChallengeLength);
        }
        if sequence_counter.is_some() != (i & I_PSEUDO_RANDOM_CHALLENGE != 0) {
            return Err(Scp03Error::MalformedResponse);
        }
        let keys = SessionKeys::derive(static_keys, host_challenge, card_challenge)?;
        Ok(InitializeUpdateResponse {
            key_diversification_data,
            key_version,
            scp_id: SCP_ID,
            i,
            card_challenge: card_challenge.to_vec(),
            card_cryptogram: keys.card_cryptogram(host_challenge, card_challenge)?,
            sequence_counter,
        })
    }

    /// The S-mode the i-parameter selects.
    pub fn smode(&self) -> SMode {
        SMode::from_i(self.i)
    }

    /// The response data (without status word): diversification data, key
    /// information, card challenge, card cryptogram, then the sequence counter
    /// if any. Fields are written as they are.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13 + 2 * self.smode().size() + 3);
        out.extend_from_slice(&self.key_diversification_data);
        out.extend_from_slice(&[self.key_version, self.scp_id, self.i]);
        out.extend_from_slice(&self.card_challenge);
        out.extend_from_slice(&self.card_cryptogram);
        if let Some(counter) = self.sequence_counter {
            out.extend_from_slice(&counter);
        }
        out
    }

    /// Parses the response data (without status word). Strict: the length must
    /// be exactly what the i-parameter implies (29/32 bytes in S8, 45/48 in S16).
    pub fn decode(data: &[u8]) -> Result<Self, Scp03Error> {
        if data.len() < 13 {
            return Err(Scp03Error::MalformedResponse);
        }
        let (head, rest) = data.split_at(13);
        let (scp_id, i) = (head[11], head[12]);
        if scp_id != SCP_ID {
            return Err(Scp03Error::NotScp03(scp_id));
        }
        let n = SMode::from_i(i).size();
        let has_counter = i & I_PSEUDO_RANDOM_CHALLENGE != 0;
        if rest.len() != 2 * n + if has_counter { 3 } else { 0 } {
            return Err(Scp03Error::MalformedResponse);
        }
        let mut key_diversification_data = [0u8; 10];
        key_diversification_data.copy_from_slice(&head[..10]);
        let sequence_counter = if has_counter {
            let mut c = [0u8; 3];
            c.copy_from_slice(&rest[2 * n..]);
            Some(c)
        } else {
            None
        };
        Ok(InitializeUpdateResponse {
            key_diversification_data,
            key_version: head[10],
            scp_id,
            i,
            card_challenge: rest[..n].to_vec(),
            card_cryptogram: rest[n..2 * n].to_vec(),
            sequence_counter,
        })
    }
}

// ---------------------------------------------------------------------------
// The secure channel
// ---------------------------------------------------------------------------

/// Sets the secure messaging indication in CLA: bit `04` for the first
/// interindustry and proprietary classes, bit `20` for further interindustry
/// classes (`40`–`7F`, `C0`–`FF`).
const fn sm_bit(cla: u8) -> u8 {
    if cla & 0x40 != 0 {
        0x20
    } else {
        0x04
    }
}

/// Whether a status word gets R-MAC protection (`9000`, `62xx`, `63xx`).
fn sw_is_protected(sw: u16) -> bool {
    sw == Status::Success.to_u16() || matches!(sw >> 8, 0x62 | 0x63)
}

/// The Lc bytes as the Auto length form writes them for this command.
fn lc_bytes(nc: usize, le: Option<usize>) -> Vec<u8> {
    if nc <= 255 && le.is_none_or(|ne| ne <= 256) {
        alloc::vec![nc as u8]
    } else {
        alloc::vec![0x00, (nc >> 8) as u8, nc as u8]
    }
}

/// An established SCP03 session: session keys, security level, S-mode, MAC
/// chaining value and encryption counter. The same type serves the host
/// ([`wrap_command`](Self::wrap_command), [`unwrap_response`](Self::unwrap_response))
/// and the card ([`unwrap_command`](Self::unwrap_command),
/// [`wrap_response`](Self::wrap_response)).
///
/// Any verification failure closes the channel: later calls fail with
/// [`Scp03Error::SessionClosed`] and a new handshake is needed.
#[derive(Clone)]
pub struct SecureChannel {
    keys: SessionKeys,
    level: SecurityLevel,
    smode: SMode,
    mac_chaining: [u8; BLOCK],
    /// The encryption counter of the most recent command (0 before the first).
    counter: u64,
    closed: bool,
}

impl fmt::Debug for SecureChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureChannel")
            .field("keys", &self.keys)
            .field("level", &self.level)
            .field("smode", &self.smode)
            .field("counter", &self.counter)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl SecureChannel {
    /// Host side: checks the card cryptogram in `response` and builds the
    /// EXTERNAL AUTHENTICATE command (CLA `84`, INS `82`, P1 = level, data =
    /// host cryptogram || C-MAC, no Le), returning the channel it opens.
    pub fn host_authenticate(
        static_keys: &StaticKeys,
        host_challenge: &[u8],
        response: &InitializeUpdateResponse,
        level: SecurityLevel,
    ) -> Result<(SecureChannel, Command), Scp03Error> {
        if response.scp_id != SCP_ID {
            return Err(Scp03Error::NotScp03(response.scp_id));
        }
        let smode = response.smode();
        if host_challenge.len() != smode.size() {
            return Err(Scp03Error::BadChallengeLength);
        }
        let card_challenge = &response.card_challenge;
        let keys = SessionKeys::derive(static_keys, host_challenge, card_challenge)?;
        let expected = keys.card_cryptogram(host_challenge, card_challenge)?;
        if !bool::from(expected.ct_eq(&response.card_cryptogram)) {
            return Err(Scp03Error::CardCryptogramMismatch);
        }
        let host_cryptogram = keys.host_cryptogram(host_challenge, card_challenge)?;
        let mut channel = SecureChannel::new(keys, level, smode);
        let cmd = Command::new(0x84, INS_EXTERNAL_AUTHENTICATE, level.bits(), 0x00)
            .with_data(host_cryptogram);
        // EXTERNAL AUTHENTICATE always carries a C-MAC, whatever the level.
        let cmd = channel.mac_command(cmd)?;
        Ok((channel, cmd))
    }

    /// Card side: checks an EXTERNAL AUTHENTICATE command (its level, host
    /// cryptogram and C-MAC) against the INITIALIZE UPDATE exchange and opens
    /// the channel at the level it asks for.
    pub fn card_authenticate(
        static_keys: &StaticKeys,
        host_challenge: &[u8],
        response: &InitializeUpdateResponse,
        external_authenticate: &Command,
    ) -> Result<SecureChannel, Scp03Error> {
        let cmd = external_authenticate;
        // CLA 84-87 or E0-EF: proprietary class with the SM indication.
        if cmd.cla & 0x80 == 0
            || cmd.cla & sm_bit(cmd.cla) == 0
            || cmd.ins != INS_EXTERNAL_AUTHENTICATE
            || cmd.p2 != 0x00
        {
            return Err(Scp03Error::MalformedCommand);
        }
        let level = SecurityLevel::new(cmd.p1)?;
        let smode = response.smode();
        if host_challenge.len() != smode.size() {
            return Err(Scp03Error::BadChallengeLength);
        }
        if cmd.data.len() != 2 * smode.size() {
            return Err(Scp03Error::MalformedCommand);
        }
        let card_challenge = &response.card_challenge;
        let keys = SessionKeys::derive(static_keys, host_challenge, card_challenge)?;
        let expected = keys.host_cryptogram(host_challenge, card_challenge)?;
        let mut channel = SecureChannel::new(keys, level, smode);
        let (cryptogram, mac) = cmd.data.split_at(smode.size());
        let full = channel.command_mac(cmd.cla, cmd, cryptogram);
        let mac_ok = full[..smode.size()].ct_eq(mac);
        let cryptogram_ok = expected.ct_eq(cryptogram);
        if !bool::from(mac_ok) {
            return Err(Scp03Error::MacMismatch);
        }
        if !bool::from(cryptogram_ok) {
            return Err(Scp03Error::HostCryptogramMismatch);
        }
        channel.mac_chaining = full;
        Ok(channel)
    }

    fn new(keys: SessionKeys, level: SecurityLevel, smode: SMode) -> Self {
        SecureChannel {
            keys,
            level,
            smode,
            mac_chaining: [0; BLOCK],
            counter: 0,
            closed: false,
        }
    }

    /// The security level set by EXTERNAL AUTHENTICATE.
    pub fn security_level(&self) -> SecurityLevel {
        self.level
    }

    /// The S-mode of the session.
    pub fn smode(&self) -> SMode {
        self.smode
    }

    /// The session keys.
    pub fn session_keys(&self) -> &SessionKeys {
        &self.keys
    }

    /// The MAC chaining value: the full C-MAC of the last command.
    pub fn mac_chaining_value(&self) -> &[u8; BLOCK] {
        &self.mac_chaining
    }

    /// The encryption counter of the most recent command (0 before the
    /// first; the first command after EXTERNAL AUTHENTICATE uses 1). Only
    /// commands at a level with C-DECRYPTION advance it.
    pub fn encryption_counter(&self) -> u64 {
        self.counter
    }

    /// Whether a verification failure (or [`close`](Self::close)) ended the session.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Ends the session; later wrap/unwrap calls fail.
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// The full 16-byte C-MAC over chaining value || header (with `cla`) ||
    /// Lc || `body`, where Lc counts `body` and the MAC.
    fn command_mac(&self, cla: u8, cmd: &Command, body: &[u8]) -> [u8; BLOCK] {
        let lc = lc_bytes(body.len() + self.smode.size(), cmd.le);
        self.keys.s_mac.cmac(&[
            &self.mac_chaining,
            &[cla, cmd.ins, cmd.p1, cmd.p2],
            &lc,
            body,
        ])
    }

    /// Appends the C-MAC to `cmd` (whose CLA already has the SM bit) and
    /// updates the chaining value.
    fn mac_command(&mut self, mut cmd: Command) -> Result<Command, Scp03Error> {
        if cmd.data.len() + self.smode.size() > EXTENDED_MAX_NC {
            return Err(Scp03Error::CommandTooLong);
        }
        let full = self.command_mac(cmd.cla, &cmd, &cmd.data);
        cmd.data.extend_from_slice(&full[..self.smode.size()]);
        self.mac_chaining = full;
        Ok(cmd)
    }

    fn counter_block(counter: u64, response: bool) -> [u8; BLOCK] {
        let mut block = [0u8; BLOCK];
        block[8..].copy_from_slice(&counter.to_be_bytes());
        if response {
            block[0] = 0x80;
        }
        block
    }

    fn icv(&self, counter: u64, response: bool) -> [u8; BLOCK] {
        let mut block = Self::counter_block(counter, response);
        self.keys.s_enc.encrypt_block(&mut block);
        block
    }

    /// Host side: protects a command at the session's level. C-DECRYPTION
    /// pads (ISO/IEC 9797-1 method 2) and AES-CBC-encrypts a non-empty data
    /// field under S-ENC with ICV = AES(S-ENC, counter block); the counter
    /// advances for every command, with data or not. C-MAC sets the SM bit in
    /// CLA and appends the MAC over chaining value || header || Lc || data.
    /// Le is kept. At level `00` the command passes unchanged.
    pub fn wrap_command(&mut self, cmd: &Command) -> Result<Command, Scp03Error> {
        if self.closed {
            return Err(Scp03Error::SessionClosed);
        }
        if !self.level.contains(SecurityLevel::C_MAC) {
            return Ok(cmd.clone());
        }
        if cmd.cla == 0xFF
            || cmd.cla & sm_bit(cmd.cla) != 0
            || cmd.le.is_some_and(|ne| ne == 0 || ne > EXTENDED_MAX_NE)
        {
            return Err(Scp03Error::MalformedCommand);
        }
        let mut counter = self.counter;
        let data = if self.level.contains(SecurityLevel::C_DECRYPTION) {
            counter = counter.checked_add(1).ok_or(Scp03Error::CounterExhausted)?;
            if cmd.data.is_empty() {
                Vec::new()
            } else {
                let mut buf = pad_m2(&cmd.data);
                if buf.len() + self.smode.size() > EXTENDED_MAX_NC {
                    buf.zeroize();
                    return Err(Scp03Error::CommandTooLong);
                }
                self.keys
                    .s_enc
                    .cbc_encrypt(&self.icv(counter, false), &mut buf)?;
                buf
            }
        } else {
            cmd.data.clone()
        };
        let wrapped = Command {
            cla: cmd.cla | sm_bit(cmd.cla),
            ins: cmd.ins,
            p1: cmd.p1,
            p2: cmd.p2,
            data,
            le: cmd.le,
        };
        let wrapped = self.mac_command(wrapped)?;
        self.counter = counter;
        Ok(wrapped)
    }

    /// Card side: verifies and strips the protection [`wrap_command`](Self::wrap_command)
    /// adds, returning the plain command (SM bit cleared). At level `00` the
    /// command passes unchanged. Any failure closes the channel.
    pub fn unwrap_command(&mut self, cmd: &Command) -> Result<Command, Scp03Error> {
        if self.closed {
            return Err(Scp03Error::SessionClosed);
        }
        if !self.level.contains(SecurityLevel::C_MAC) {
            return Ok(cmd.clone());
        }
        let result = self.unwrap_command_inner(cmd);
        if result.is_err() {
            self.closed = true;
        }
        result
    }

    fn unwrap_command_inner(&mut self, cmd: &Command) -> Result<Command, Scp03Error> {
        let n = self.smode.size();
        if cmd.cla == 0xFF || cmd.cla & sm_bit(cmd.cla) == 0 || cmd.data.len() < n {
            return Err(Scp03Error::MalformedCommand);
        }
        let (body, mac) = cmd.data.split_at(cmd.data.len() - n);
        let full = self.command_mac(cmd.cla, cmd, body);
        if !bool::from(full[..n].ct_eq(mac)) {
            return Err(Scp03Error::MacMismatch);
        }
        self.mac_chaining = full;
        let data = if self.level.contains(SecurityLevel::C_DECRYPTION) {
            self.counter = self
                .counter
                .checked_add(1)
                .ok_or(Scp03Error::CounterExhausted)?;
            if body.is_empty() {
                Vec::new()
            } else {
                if body.len() % BLOCK != 0 {
                    return Err(Scp03Error::MalformedCommand);
                }
                let mut buf = body.to_vec();
                self.keys
                    .s_enc
                    .cbc_decrypt(&self.icv(self.counter, false), &mut buf)?;
                unpad_m2(buf)?
            }
        } else {
            body.to_vec()
        };
        Ok(Command {
            cla: cmd.cla & !sm_bit(cmd.cla),
            ins: cmd.ins,
            p1: cmd.p1,
            p2: cmd.p2,
            data,
            le: cmd.le,
        })
    }

    /// Card side: protects the response to the last unwrapped command. With
    /// R-MAC, responses with SW `9000`, `62xx` or `63xx` get (R-ENCRYPTION of
    /// non-empty data with ICV = AES(S-ENC, `80` || counter block), then) an
    /// R-MAC over chaining value || data || SW; any other SW is sent alone,
    /// without data or R-MAC. Without R-MAC the response passes unchanged. A
    /// closed channel sends the status word alone.
    pub fn wrap_response(&mut self, rsp: &Response) -> Response {
        if self.closed || (self.level.contains(SecurityLevel::R_MAC) && !sw_is_protected(rsp.sw)) {
            return Response {
                data: Vec::new(),
                sw: rsp.sw,
            };
        }
        if !self.level.contains(SecurityLevel::R_MAC) {
            return rsp.clone();
        }
        let mut data = if self.level.contains(SecurityLevel::R_ENCRYPTION) && !rsp.data.is_empty() {
            let mut buf = pad_m2(&rsp.data);
            let icv = self.icv(self.counter, true);
            // `buf` is whole blocks, so this cannot fail; fall back to the
            // status word alone rather than ever sending plaintext.
            if self.keys.s_enc.cbc_encrypt(&icv, &mut buf).is_err() {
                return Response {
                    data: Vec::new(),
                    sw: rsp.sw,
                };
            }
            buf
        } else {
            rsp.data.clone()
        };
        let rmac = self
            .keys
            .s_rmac
            .cmac(&[&self.mac_chaining, &data, &rsp.sw.to_be_bytes()]);
        data.extend_from_slice(&rmac[..self.smode.size()]);
        Response { data, sw: rsp.sw }
    }

    /// Host side: verifies and strips the protection [`wrap_response`](Self::wrap_response)
    /// adds to the response of the last wrapped command. A response with an
    /// error SW (not `9000`, `62xx`, `63xx`) must carry no data. Without R-MAC
    /// the response passes unchanged. Any failure closes the channel.
    pub fn unwrap_response(&mut self, rsp: &Response) -> Result<Response, Scp03Error> {
        if self.closed {
            return Err(Scp03Error::SessionClosed);
        }
        if !self.level.contains(SecurityLevel::R_MAC) {
            return Ok(rsp.clone());
        }
        let result = self.unwrap_response_inner(rsp);
        if result.is_err() {
            self.closed = true;
        }
        result
    }

    fn unwrap_response_inner(&self, rsp: &Response) -> Result<Response, Scp03Error> {
        if !sw_is_protected(rsp.sw) {
            return if rsp.data.is_empty() {
                Ok(rsp.clone())
            } else {
                Err(Scp03Error::MalformedResponse)
            };
        }
        let n = self.smode.size();
        if rsp.data.len() < n {
            return Err(Scp03Error::MalformedResponse);
        }
        let (body, mac) = rsp.data.split_at(rsp.data.len() - n);
        let full = self
            .keys
            .s_rmac
            .cmac(&[&self.mac_chaining, body, &rsp.sw.to_be_bytes()]);
        if !bool::from(full[..n].ct_eq(mac)) {
            return Err(Scp03Error::MacMismatch);
        }
        let data = if self.level.contains(SecurityLevel::R_ENCRYPTION) && !body.is_empty() {
            if body.len() % BLOCK != 0 {
                return Err(Scp03Error::MalformedResponse);
            }
            let mut buf = body.to_vec();
            self.keys
                .s_enc
                .cbc_decrypt(&self.icv(self.counter, true), &mut buf)?;
            unpad_m2(buf)?
        } else {
            body.to_vec()
        };
        Ok(Response { data, sw: rsp.sw })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;

    const ENC: [u8; 32] = [0x40; 32];
    const MAC: [u8; 32] = [0x41; 32];
    const DEK: [u8; 32] = [0x42; 32];

    fn keys(len: usize) -> StaticKeys {
        StaticKeys::new(&ENC[..len], &MAC[..len], &DEK[..len]).expect("valid test keys")
    }

    /// A full handshake through encoded bytes; returns (host, card).
    fn session(level: u8, smode: SMode, key_len: usize) -> (SecureChannel, SecureChannel) {
        let keys = keys(key_len);
        let n = smode.size();
        let host_challenge: Vec<u8> = (0..n as u8).collect();
        let card_challenge: Vec<u8> = (0..n as u8).map(|b| b ^ 0xA5).collect();
        let iu = initialize_update(0x30, &host_challenge).unwrap();
        let iu = Command::decode(&iu.to_bytes().unwrap()).unwrap();
        let (kvn, hc) = parse_initialize_update(&iu).unwrap();
        let i = if smode == SMode::S16 { 0x61 } else { 0x60 };
        let card_rsp =
            InitializeUpdateResponse::for_card(&keys, &hc, [7; 10], kvn, i, &card_challenge, None)
                .unwrap();
        let host_rsp = InitializeUpdateResponse::decode(&card_rsp.encode()).unwrap();
        assert_eq!(host_rsp, card_rsp);
        let level = SecurityLevel::new(level).unwrap();
        let (host, ea) =
            SecureChannel::host_authenticate(&keys, &host_challenge, &host_rsp, level).unwrap();
        let ea = Command::decode(&ea.to_bytes().unwrap()).unwrap();
        let card = SecureChannel::card_authenticate(&keys, &hc, &card_rsp, &ea).unwrap();
        assert_eq!(card.security_level(), level);
        assert_eq!(host.mac_chaining_value(), card.mac_chaining_value());
        (host, card)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    /// Host → bytes → card → response → bytes → host; checks both directions.
    fn exchange(host: &mut SecureChannel, card: &mut SecureChannel, cmd: &Command, rsp: &Response) {
        let wrapped = host.wrap_command(cmd).unwrap();
        let bytes = wrapped.to_bytes().unwrap();
        let received = Command::decode(&bytes).unwrap();
        assert_eq!(&card.unwrap_command(&received).unwrap(), cmd);
        assert_eq!(host.mac_chaining_value(), card.mac_chaining_value());
        assert_eq!(host.encryption_counter(), card.encryption_counter());
        let wrapped_rsp = card.wrap_response(rsp);
        let received = Response::from_bytes(&wrapped_rsp.to_bytes()).unwrap();
        assert_eq!(&host.unwrap_response(&received).unwrap(), rsp);
    }

    #[test]
    fn interop_all_levels_sizes_and_forms() {
        let sizes = [0usize, 1, 15, 16, 17, 239, 240, 255, 256, 1000, 65_000];
        for level in [0x00, 0x01, 0x03, 0x11, 0x13, 0x33] {
            for smode in [SMode::S8, SMode::S16] {
                for key_len in [16, 24, 32] {
                    let (mut host, mut card) = session(level, smode, key_len);
                    for &size in &sizes {
                        for le in [None, Some(256), Some(65_536)] {
                            let cmd = Command {
                                cla: 0x80,
                                ins: 0xE2,
                                p1: 0x90,
                                p2: 0x00,
                                data: data(size),
                                le,
                            };
                            let rsp = Response::ok(data(size.min(4000)));
                            exchange(&mut host, &mut card, &cmd, &rsp);
                        }
                    }
                    // Warning SWs are protected too; errors travel bare.
                    let cmd = Command::new(0x00, 0xB0, 0, 0).with_le(256);
                    exchange(&mut host, &mut card, &cmd, &Response::ok(vec![]));
                    let warn = Response {
                        data: vec![1, 2],
                        sw: 0x6282,
                    };
                    exchange(&mut host, &mut card, &cmd, &warn);
                    exchange(
                        &mut host,
                        &mut card,
                        &cmd,
                        &Response {
                            data: vec![],
                            sw: 0x6A82,
                        },
                    );
                    assert!(!host.is_closed() && !card.is_closed());
                }
            }
        }
    }

    #[test]
    fn s16_round_trip_host_card() {
        let (mut host, mut card) = session(0x33, SMode::S16, 32);
        assert_eq!(host.smode(), SMode::S16);
        let cmd = Command::new(0x80, 0xCA, 0x00, 0x66)
            .with_data(vec![1, 2, 3])
            .with_le(256);
        let wrapped = host.wrap_command(&cmd).unwrap();
        assert_eq!(wrapped.cla, 0x84);
        assert_eq!(
            wrapped.data.len(),
            16 + 16,
            "one encrypted block and a 16-byte C-MAC"
        );
        assert_eq!(card.unwrap_command(&wrapped).unwrap(), cmd);
        let rsp = card.wrap_response(&Response::ok(vec![9; 20]));
        assert_eq!(
            rsp.data.len(),
            32 + 16,
            "two encrypted blocks and a 16-byte R-MAC"
        );
        assert_eq!(
            host.unwrap_response(&rsp).unwrap(),
            Response::ok(vec![9; 20])
        );
        // S16 INITIALIZE UPDATE responses are 45 bytes, 48 with the counter.
        let k = keys(16);
        let r = InitializeUpdateResponse::for_card(
            &k,
            &[1; 16],
            [0; 10],
            1,
            0x71,
            &[2; 16],
            Some([0, 0, 5]),
        )
        .unwrap();
        assert_eq!(r.encode().len(), 48);
        assert_eq!(InitializeUpdateResponse::decode(&r.encode()).unwrap(), r);
        let r = InitializeUpdateResponse::for_card(&k, &[1; 16], [0; 10], 1, 0x61, &[2; 16], None)
            .unwrap();
        assert_eq!(r.encode().len(), 45);
        assert_eq!(InitializeUpdateResponse::decode(&r.encode()).unwrap(), r);
    }

    #[test]
    fn tampered_mac_rejected() {
        for level in [0x01, 0x03, 0x33] {
            let (mut host, mut card) = session(level, SMode::S8, 16);
            let cmd = Command::new(0x80, 0xF2, 0x80, 0x02).with_data(vec![0x4F, 0x00]);
            let mut wrapped = host.wrap_command(&cmd).unwrap();
            let last = wrapped.data.len() - 1;
            wrapped.data[last] ^= 0x01;
            assert_eq!(card.unwrap_command(&wrapped), Err(Scp03Error::MacMismatch));
            assert!(card.is_closed());
            wrapped.data[last] ^= 0x01;
            assert_eq!(
                card.unwrap_command(&wrapped),
                Err(Scp03Error::SessionClosed)
            );
            assert_eq!(
                card.wrap_response(&Response::ok(vec![1, 2])),
                Response {
                    data: vec![],
                    sw: 0x9000
                }
            );
        }
        // Tampered header and data are caught by the same MAC.
        let (mut host, mut card) = session(0x03, SMode::S8, 16);
        let cmd = Command::new(0x80, 0xF2, 0x80, 0x02).with_data(vec![0x4F, 0x00]);
        let mut wrapped = host.wrap_command(&cmd).unwrap();
        wrapped.p1 ^= 0x40;
        assert_eq!(
            card.clone().unwrap_command(&wrapped),
            Err(Scp03Error::MacMismatch)
        );
        wrapped.p1 ^= 0x40;
        wrapped.data[0] ^= 0x80;
        assert_eq!(card.unwrap_command(&wrapped), Err(Scp03Error::MacMismatch));
        // A tampered R-MAC is rejected by the host.
        let (mut host, mut card) = session(0x11, SMode::S8, 16);
        let wrapped = host.wrap_command(&cmd).unwrap();
        card.unwrap_command(&wrapped).unwrap();
        let mut rsp = card.wrap_response(&Response::ok(vec![1, 2, 3]));
        rsp.data[1] ^= 0x10;
        assert_eq!(host.unwrap_response(&rsp), Err(Scp03Error::MacMismatch));
        assert!(host.is_closed());
        assert_eq!(host.wrap_command(&cmd), Err(Scp03Error::SessionClosed));
    }

    #[test]
    fn replayed_or_reordered_commands_rejected() {
        let (mut host, card) = session(0x01, SMode::S8, 16);
        let cmd = Command::new(0x80, 0xCA, 0x00, 0x66).with_le(256);
        let first = host.wrap_command(&cmd).unwrap();
        let second = host.wrap_command(&cmd).unwrap();
        assert_ne!(first, second, "the MAC chains");
        assert_eq!(
            card.clone().unwrap_command(&second),
            Err(Scp03Error::MacMismatch)
        );
        let mut c = card.clone();
        c.unwrap_command(&first).unwrap();
        assert_eq!(c.unwrap_command(&first), Err(Scp03Error::MacMismatch));
    }

    #[test]
    fn wrong_counter_rejected() {
        // Card out of step by one: the C-MAC still verifies (it covers the
        // ciphertext), but decryption with the wrong ICV breaks the padding.
        let (mut host, mut card) = session(0x03, SMode::S8, 16);
        card.counter += 1;
        let cmd = Command::new(0x80, 0xE2, 0x90, 0x00)
            .with_data(vec![0xBF, 0x3E, 0x03, 0x5C, 0x01, 0x5A]);
        let wrapped = host.wrap_command(&cmd).unwrap();
        assert_eq!(card.unwrap_command(&wrapped), Err(Scp03Error::BadPadding));
        // Host out of step on a response: R-ENC decryption fails the same way.
        let (mut host, mut card) = session(0x33, SMode::S8, 16);
        let wrapped = host.wrap_command(&cmd).unwrap();
        card.unwrap_command(&wrapped).unwrap();
        let rsp = card.wrap_response(&Response::ok(vec![0x11; 5]));
        let mut stale = host.clone();
        stale.counter -= 1;
        assert_eq!(stale.unwrap_response(&rsp), Err(Scp03Error::BadPadding));
        assert_eq!(
            host.unwrap_response(&rsp).unwrap(),
            Response::ok(vec![0x11; 5])
        );
    }

    #[test]
    fn counter_advances_without_data_and_exhausts() {
        let (mut host, mut card) = session(0x03, SMode::S8, 16);
        let empty = Command::new(0x80, 0xF2, 0x20, 0x02);
        exchange(&mut host, &mut card, &empty, &Response::ok(vec![]));
        assert_eq!(host.encryption_counter(), 1);
        host.counter = u64::MAX;
        assert_eq!(host.wrap_command(&empty), Err(Scp03Error::CounterExhausted));
        assert!(!host.is_closed(), "a refused wrap leaves the state alone");
        assert_eq!(host.encryption_counter(), u64::MAX);
        // C-MAC only: no counter.
        let (mut host, _) = session(0x01, SMode::S8, 16);
        host.wrap_command(&empty).unwrap();
        assert_eq!(host.encryption_counter(), 0);
    }

    #[test]
    fn bad_padding_rejected() {
        let (mut host, mut card) = session(0x03, SMode::S8, 16);
        // One block without the 80 marker, encrypted and MACed correctly.
        let mut body = vec![0x11u8; 16];
        let icv = host.icv(host.counter + 1, false);
        host.keys.s_enc.cbc_encrypt(&icv, &mut body).unwrap();
        let cmd = Command::new(0x84, 0xE2, 0x90, 0x00).with_data(body);
        let wrapped = host.mac_command(cmd).unwrap();
        assert_eq!(card.unwrap_command(&wrapped), Err(Scp03Error::BadPadding));
        assert!(card.is_closed());
        // Ciphertext that is not whole blocks.
        let (mut host, mut card) = session(0x03, SMode::S8, 16);
        let cmd = Command::new(0x84, 0xE2, 0x90, 0x00).with_data(vec![1; 15]);
        let wrapped = host.mac_command(cmd).unwrap();
        assert_eq!(
            card.unwrap_command(&wrapped),
            Err(Scp03Error::MalformedCommand)
        );
    }

    #[test]
    fn padding_rules() {
        assert_eq!(pad_m2(&[]), [&[0x80u8][..], &[0; 15]].concat());
        assert_eq!(pad_m2(&[1; 16]).len(), 32);
        assert_eq!(unpad_m2(pad_m2(&[1; 17])).unwrap(), vec![1; 17]);
        assert_eq!(unpad_m2(pad_m2(&[])).unwrap(), Vec::<u8>::new());
        assert_eq!(unpad_m2(vec![0; 32]), Err(Scp03Error::BadPadding));
        assert_eq!(unpad_m2(vec![1; 16]), Err(Scp03Error::BadPadding));
        // 80 followed by more than a block of zeros is not method-2 padding.
        let mut v = vec![0x80];
        v.extend_from_slice(&[0; 16]);
        assert_eq!(unpad_m2(v), Err(Scp03Error::BadPadding));
    }

    #[test]
    fn response_rules() {
        let (mut host, mut card) = session(0x11, SMode::S8, 16);
        let cmd = Command::new(0x80, 0xCA, 0x00, 0x66).with_le(256);
        card.unwrap_command(&host.wrap_command(&cmd).unwrap())
            .unwrap();
        // The card never sends data or an R-MAC with an error status word.
        let e = card.wrap_response(&Response {
            data: vec![1, 2, 3],
            sw: 0x6A88,
        });
        assert_eq!(
            e,
            Response {
                data: vec![],
                sw: 0x6A88
            }
        );
        // The host refuses data it cannot authenticate.
        let mut h = host.clone();
        assert_eq!(
            h.unwrap_response(&Response {
                data: vec![1; 8],
                sw: 0x6A88
            }),
            Err(Scp03Error::MalformedResponse)
        );
        assert_eq!(
            host.clone().unwrap_response(&Response {
                data: vec![1; 7],
                sw: 0x9000
            }),
            Err(Scp03Error::MalformedResponse)
        );
        assert_eq!(host.unwrap_response(&e).unwrap(), e);
    }

    #[test]
    fn command_checks() {
        let (mut host, _) = session(0x01, SMode::S8, 16);
        let already = Command::new(0x84, 0xCA, 0, 0);
        assert_eq!(
            host.wrap_command(&already),
            Err(Scp03Error::MalformedCommand)
        );
        let big = Command::new(0x80, 0xE8, 0, 0).with_data(vec![0; 65_535 - 7]);
        assert_eq!(host.wrap_command(&big), Err(Scp03Error::CommandTooLong));
        let fits = Command::new(0x80, 0xE8, 0, 0).with_data(vec![0; 65_535 - 8]);
        assert_eq!(host.wrap_command(&fits).unwrap().data.len(), 65_535);
        let (mut host, mut card) = session(0x03, SMode::S16, 16);
        let big = Command::new(0x80, 0xE8, 0, 0).with_data(vec![0; 65_504]);
        assert_eq!(host.wrap_command(&big), Err(Scp03Error::CommandTooLong));
        let fits = Command::new(0x80, 0xE8, 0, 0).with_data(vec![0; 65_503]);
        exchange(&mut host, &mut card, &fits, &Response::ok(vec![]));
        // Further interindustry class: SM indication is bit 20.
        let (mut host, mut card) = session(0x01, SMode::S8, 16);
        let cmd = Command::new(0x41, 0xB0, 0, 0).with_le(10);
        let wrapped = host.wrap_command(&cmd).unwrap();
        assert_eq!(wrapped.cla, 0x61);
        assert_eq!(card.unwrap_command(&wrapped).unwrap(), cmd);
        // Extended Lc is what the MAC covers once the data passes 255 bytes.
        let (mut host, _) = session(0x01, SMode::S8, 16);
        let wrapped = host
            .wrap_command(&Command::new(0x80, 0xE8, 0, 0).with_data(vec![0; 248]))
            .unwrap();
        assert_eq!(&wrapped.to_bytes().unwrap()[4..7], &[0x00, 0x01, 0x00]);
        // Missing SM indication on the card side.
        let (_, mut card) = session(0x01, SMode::S8, 16);
        assert_eq!(
            card.unwrap_command(&Command::new(0x80, 0xCA, 0, 0).with_data(vec![0; 8])),
            Err(Scp03Error::MalformedCommand)
        );
    }

    #[test]
    fn handshake_failures() {
        let k = keys(16);
        let hc = [1u8; 8];
        let mut rsp =
            InitializeUpdateResponse::for_card(&k, &hc, [0; 10], 0x30, 0x00, &[2; 8], None)
                .unwrap();
        let level = SecurityLevel::new(0x01).unwrap();
        let other = StaticKeys::new(&[9; 16], &[9; 16], &[9; 16]).unwrap();
        assert_eq!(
            SecureChannel::host_authenticate(&other, &hc, &rsp, level).unwrap_err(),
            Scp03Error::CardCryptogramMismatch
        );
        let (_, ea) = SecureChannel::host_authenticate(&k, &hc, &rsp, level).unwrap();
        assert_eq!(
            SecureChannel::card_authenticate(&k, &[3; 8], &rsp, &ea).unwrap_err(),
            Scp03Error::MacMismatch
        );
        let mut bad = ea.clone();
        bad.p1 = 0x11;
        assert_eq!(
            SecureChannel::card_authenticate(&k, &hc, &rsp, &bad).unwrap_err(),
            Scp03Error::MacMismatch
        );
        let mut plain_cla = ea.clone();
        plain_cla.cla = 0x80;
        assert_eq!(
            SecureChannel::card_authenticate(&k, &hc, &rsp, &plain_cla).unwrap_err(),
            Scp03Error::MalformedCommand
        );
        bad.p1 = 0x02;
        assert_eq!(
            SecureChannel::card_authenticate(&k, &hc, &rsp, &bad).unwrap_err(),
            Scp03Error::BadSecurityLevel(0x02)
        );
        // A right MAC over a wrong cryptogram (forged with the session keys).
        let sk = SessionKeys::derive(&k, &hc, &rsp.card_challenge).unwrap();
        let mut forged = SecureChannel::new(sk, level, SMode::S8);
        let forged_ea = forged
            .mac_command(Command::new(0x84, 0x82, 0x01, 0x00).with_data(vec![0; 8]))
            .unwrap();
        assert_eq!(
            SecureChannel::card_authenticate(&k, &hc, &rsp, &forged_ea).unwrap_err(),
            Scp03Error::HostCryptogramMismatch
        );
        rsp.scp_id = 0x02;
        assert_eq!(
            SecureChannel::host_authenticate(&k, &hc, &rsp, level).unwrap_err(),
            Scp03Error::NotScp03(2)
        );
        rsp.scp_id = 0x03;
        assert_eq!(
            SecureChannel::host_authenticate(&k, &[1; 16], &rsp, level).unwrap_err(),
            Scp03Error::BadChallengeLength
        );
    }

    #[test]
    fn validation() {
        for ok in [0x00, 0x01, 0x03, 0x11, 0x13, 0x33] {
            assert_eq!(SecurityLevel::new(ok).unwrap().bits(), ok);
        }
        for bad in [0x02, 0x10, 0x12, 0x20, 0x21, 0x23, 0x31, 0x80, 0x81, 0xFF] {
            assert_eq!(
                SecurityLevel::new(bad),
                Err(Scp03Error::BadSecurityLevel(bad))
            );
        }
        assert_eq!(
            StaticKeys::new(&[0; 15], &[0; 15], &[0; 15]).unwrap_err(),
            Scp03Error::BadKeyLength
        );
        assert_eq!(
            StaticKeys::new(&[0; 16], &[0; 24], &[0; 16]).unwrap_err(),
            Scp03Error::KeyLengthMismatch
        );
        assert_eq!(keys(24).key_bits(), 192);
        assert_eq!(
            initialize_update(0, &[0; 9]).unwrap_err(),
            Scp03Error::BadChallengeLength
        );
        assert_eq!(
            kdf(&[0; 16], 4, &[], 0).unwrap_err(),
            Scp03Error::BadDataLength
        );
        assert_eq!(
            kdf(&[0; 16], 4, &[], 12).unwrap_err(),
            Scp03Error::BadDataLength
        );
        assert_eq!(
            kdf(&[0; 16], 4, &[], 255 * 128 + 8).unwrap_err(),
            Scp03Error::BadDataLength
        );
        assert_eq!(kdf(&[0; 16], 4, &[], 255 * 128).unwrap().len(), 255 * 16);
        assert_eq!(
            kdf(&[0; 17], 4, &[], 128).unwrap_err(),
            Scp03Error::BadKeyLength
        );
        // A longer output extends a shorter one only in length: L is part of the input.
        assert_ne!(
            kdf(&[0; 16], 4, &[], 128).unwrap()[..8],
            kdf(&[0; 16], 4, &[], 64).unwrap()[..]
        );
        assert_eq!(
            dek_encrypt(&[0; 16], &[0; 15]).unwrap_err(),
            Scp03Error::BadDataLength
        );
        let ct = dek_encrypt(&[5; 32], &[7; 32]).unwrap();
        assert_eq!(&dek_decrypt(&[5; 32], &ct).unwrap()[..], &[7; 32]);
        let good = [0u8; 32];
        assert_eq!(
            InitializeUpdateResponse::decode(&good[..12]),
            Err(Scp03Error::MalformedResponse)
        );
        let mut r = [0u8; 29];
        r[11] = 3;
        assert!(InitializeUpdateResponse::decode(&r).is_ok());
        assert_eq!(
            InitializeUpdateResponse::decode(&r[..28]),
            Err(Scp03Error::MalformedResponse)
        );
        r[12] = 0x10; // counter announced but missing
        assert_eq!(
            InitializeUpdateResponse::decode(&r),
            Err(Scp03Error::MalformedResponse)
        );
        r[12] = 0x01; // S16 needs 45 bytes
        assert_eq!(
            InitializeUpdateResponse::decode(&r),
            Err(Scp03Error::MalformedResponse)
        );
        r[11] = 2;
        assert_eq!(
            InitializeUpdateResponse::decode(&r),
            Err(Scp03Error::NotScp03(2))
        );
    }

    #[test]
    fn debug_redacts_keys() {
        let k = StaticKeys::new(&[0xAB; 16], &[0xCD; 16], &[0xEF; 16]).unwrap();
        let s = format!("{k:?}");
        assert!(
            !s.contains("AB") && !s.contains("171") && !s.contains("205"),
            "{s}"
        );
        let (host, _) = session(0x33, SMode::S8, 16);
        let s = format!("{host:?} {:?}", host.session_keys());
        for key in [host.session_keys().s_enc(), host.session_keys().s_mac()] {
            let prefix = format!("{:?}", &key[..3]);
            assert!(!s.contains(prefix.trim_end_matches(']')), "{s}");
            assert!(!s.contains(&format!("{:02X}{:02X}", key[0], key[1])), "{s}");
        }
        assert!(s.contains("redacted"));
    }
}
