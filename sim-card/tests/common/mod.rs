//! Shared test harness: a card in memory with a seeded RNG, and a minimal host
//! (SELECT, typed requests, SCP03 sessions) built on the card-model crate.
#![allow(dead_code)]

use dmsc_card_model::apdu::{Command, Response};
use dmsc_card_model::commands::{Request, AID};
use dmsc_card_model::scp03::{
    self, InitializeUpdateResponse, SecureChannel, SecurityLevel, StaticKeys,
};
use dmsc_sim_card::store::PersistentMemory;
use dmsc_sim_card::{AuthorityKeys, Card, InitParams, MemoryStore};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

pub const ADMIN_KEYS: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];
pub const SERVER_B_ENC: [u8; 16] = [0x11; 16];
pub const SERVER_B_MAC: [u8; 16] = [0x22; 16];
pub const SERVER_B_DEK: [u8; 16] = [0x33; 16];

pub fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

/// Two authorities: `ServerA` (key version 30, the well-known test keys) and
/// `ServerB` (key version 31, distinct ENC/MAC/DEK).
pub fn init_params() -> InitParams {
    InitParams::with_authorities(vec![
        AuthorityKeys {
            key_version: 0x30,
            name: "ServerA".into(),
            enc: Zeroizing::new(ADMIN_KEYS.to_vec()),
            mac: Zeroizing::new(ADMIN_KEYS.to_vec()),
            dek: Zeroizing::new(ADMIN_KEYS.to_vec()),
        },
        AuthorityKeys {
            key_version: 0x31,
            name: "ServerB".into(),
            enc: Zeroizing::new(SERVER_B_ENC.to_vec()),
            mac: Zeroizing::new(SERVER_B_MAC.to_vec()),
            dek: Zeroizing::new(SERVER_B_DEK.to_vec()),
        },
    ])
}

pub fn keys_for(kvn: u8) -> StaticKeys {
    match kvn {
        0x30 => StaticKeys::new(&ADMIN_KEYS, &ADMIN_KEYS, &ADMIN_KEYS).unwrap(),
        _ => StaticKeys::new(&SERVER_B_ENC, &SERVER_B_MAC, &SERVER_B_DEK).unwrap(),
    }
}

pub type MemCard = Card<MemoryStore, ChaCha20Rng>;

pub fn new_card() -> MemCard {
    Card::initialize(MemoryStore::new(), rng(7), init_params()).unwrap()
}

/// Sends a command APDU through the byte interface, fetching 61xx remainders.
pub fn send<S: PersistentMemory>(card: &mut Card<S, ChaCha20Rng>, cmd: &Command) -> Response {
    let mut out = Vec::new();
    let mut rsp = Response::from_bytes(&card.process(&cmd.to_bytes().unwrap())).unwrap();
    loop {
        out.extend_from_slice(&rsp.data);
        if rsp.sw >> 8 != 0x61 {
            return Response {
                data: out,
                sw: rsp.sw,
            };
        }
        let le = match rsp.sw & 0xFF {
            0 => 256,
            n => n as usize,
        };
        let get = Command::new(0, 0xC0, 0, 0).with_le(le);
        rsp = Response::from_bytes(&card.process(&get.to_bytes().unwrap())).unwrap();
    }
}

pub fn select<S: PersistentMemory>(card: &mut Card<S, ChaCha20Rng>) -> Response {
    send(card, &Request::Select { aid: AID.to_vec() }.to_command())
}

pub fn request<S: PersistentMemory>(card: &mut Card<S, ChaCha20Rng>, req: &Request) -> Response {
    send(card, &req.to_command())
}

/// An open SCP03 session on the host side.
pub struct Host {
    pub channel: SecureChannel,
}

impl Host {
    pub fn open<S: PersistentMemory>(
        card: &mut Card<S, ChaCha20Rng>,
        kvn: u8,
        level: u8,
    ) -> Result<Host, u16> {
        Self::open_with(card, kvn, level, &keys_for(kvn))
    }

    pub fn open_with<S: PersistentMemory>(
        card: &mut Card<S, ChaCha20Rng>,
        kvn: u8,
        level: u8,
        keys: &StaticKeys,
    ) -> Result<Host, u16> {
        let host_challenge = [0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18];
        let rsp = send(
            card,
            &scp03::initialize_update(kvn, &host_challenge).unwrap(),
        );
        if rsp.sw != 0x9000 {
            return Err(rsp.sw);
        }
        let iu = InitializeUpdateResponse::decode(&rsp.data).unwrap();
        let (channel, ext) = SecureChannel::host_authenticate(
            keys,
            &host_challenge,
            &iu,
            SecurityLevel::new(level).unwrap(),
        )
        .map_err(|_| 0x6300u16)?;
        let rsp = send(card, &ext);
        if rsp.sw != 0x9000 {
            return Err(rsp.sw);
        }
        Ok(Host { channel })
    }

    /// Wraps, sends (chaining the wrapped pieces if asked) and unwraps.
    pub fn send<S: PersistentMemory>(
        &mut self,
        card: &mut Card<S, ChaCha20Rng>,
        cmd: &Command,
    ) -> Response {
        let wrapped = self.channel.wrap_command(cmd).unwrap();
        let rsp = send(card, &wrapped);
        self.channel.unwrap_response(&rsp).unwrap()
    }

    pub fn request<S: PersistentMemory>(
        &mut self,
        card: &mut Card<S, ChaCha20Rng>,
        req: &Request,
    ) -> Response {
        self.send(card, &req.to_command())
    }
}
