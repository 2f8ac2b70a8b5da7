//! Instruction bytes of the dmsc command set (`docs/commands.md` §3).

/// SELECT by AID (`docs/commands.md` §3.1).
pub const SELECT: u8 = 0xA4;
/// GET DATA: read, list or read all objects (`docs/commands.md` §3.2–§3.3a).
pub const GET_DATA: u8 = 0xCB;
/// PUT DATA: write an object or its ACL (`docs/commands.md` §3.4, §3.5).
pub const PUT_DATA: u8 = 0xDB;
/// DELETE an object (`docs/commands.md` §3.6).
pub const DELETE: u8 = 0xE4;
/// VERIFY a PIN, or ask its tries left (`docs/commands.md` §3.7).
pub const VERIFY: u8 = 0x20;
/// CHANGE REFERENCE DATA of the user PIN (`docs/commands.md` §3.8).
pub const CHANGE_REFERENCE_DATA: u8 = 0x24;
/// RESET RETRY COUNTER of the user PIN with the PUK (`docs/commands.md` §3.9).
pub const RESET_RETRY_COUNTER: u8 = 0x2C;
/// GET CHALLENGE (`docs/commands.md` §3.10).
pub const GET_CHALLENGE: u8 = 0x84;
/// INTERNAL AUTHENTICATE with the identity key (`docs/commands.md` §3.11).
pub const INTERNAL_AUTHENTICATE: u8 = 0x88;
/// MANAGE SECURITY ENVIRONMENT: select a bootstrap key (`docs/commands.md` §3.12).
pub const MANAGE_SECURITY_ENVIRONMENT: u8 = 0x22;
/// PERFORM SECURITY OPERATION: verify a checksum or a signature (`docs/commands.md` §3.13, §3.14).
pub const PERFORM_SECURITY_OPERATION: u8 = 0x2A;
/// CHECK APPROVAL of a firmware package, proprietary (`docs/commands.md` §3.15).
pub const CHECK_APPROVAL: u8 = 0xA0;
/// CONFIRM INSTALLED of an approved package, proprietary (`docs/commands.md` §3.16).
pub const CONFIRM_INSTALLED: u8 = 0xA2;
/// GlobalPlatform EXTERNAL AUTHENTICATE (`docs/commands.md` §3.18), defined with the SCP03 primitives.
pub use crate::scp03::INS_EXTERNAL_AUTHENTICATE as EXTERNAL_AUTHENTICATE;
/// GlobalPlatform INITIALIZE UPDATE (`docs/commands.md` §3.17), defined with the SCP03 primitives.
pub use crate::scp03::INS_INITIALIZE_UPDATE as INITIALIZE_UPDATE;
/// GET RESPONSE: the rest of a long answer (`docs/commands.md` §3.19).
pub const GET_RESPONSE: u8 = 0xC0;
/// PUT KEY of an SCP03 key set (GlobalPlatform Card Specification §11.8, `docs/commands.md` §3.20).
pub const PUT_KEY: u8 = 0xD8;

/// The instructions of the dmsc command set ([`super::Request`]); the
/// GlobalPlatform INITIALIZE UPDATE and EXTERNAL AUTHENTICATE are handled by
/// [`crate::scp03`]; PUT KEY is a request ([`super::PutKey`]).
pub const REQUESTS: [u8; 15] = [
    SELECT,
    GET_DATA,
    PUT_DATA,
    DELETE,
    VERIFY,
    CHANGE_REFERENCE_DATA,
    RESET_RETRY_COUNTER,
    GET_CHALLENGE,
    INTERNAL_AUTHENTICATE,
    MANAGE_SECURITY_ENVIRONMENT,
    PERFORM_SECURITY_OPERATION,
    CHECK_APPROVAL,
    CONFIRM_INSTALLED,
    GET_RESPONSE,
    PUT_KEY,
];
