//! Instruction bytes (ISO/IEC 7816-4 §5.1, GlobalPlatform Card Specification §11).

/// SELECT by AID (ISO/IEC 7816-4 §11.2.2).
pub const SELECT: u8 = 0xA4;
/// GET DATA, odd instruction (ISO/IEC 7816-4 §11.4.3): read or list objects.
pub const GET_DATA: u8 = 0xCB;
/// PUT DATA, odd instruction (ISO/IEC 7816-4 §11.4.6): write an object or its ACL.
pub const PUT_DATA: u8 = 0xDB;
/// DELETE an object (GlobalPlatform Card Specification §11.2).
pub const DELETE: u8 = 0xE4;
/// VERIFY a PIN, or ask its tries left (ISO/IEC 7816-4 §11.5.6).
pub const VERIFY: u8 = 0x20;
/// CHANGE REFERENCE DATA of the user PIN (ISO/IEC 7816-4 §11.5.7).
pub const CHANGE_REFERENCE_DATA: u8 = 0x24;
/// RESET RETRY COUNTER of the user PIN with the PUK (ISO/IEC 7816-4 §11.5.10).
pub const RESET_RETRY_COUNTER: u8 = 0x2C;
/// GET CHALLENGE (ISO/IEC 7816-4 §11.5.3).
pub const GET_CHALLENGE: u8 = 0x84;
/// INTERNAL AUTHENTICATE with the identity key (ISO/IEC 7816-4 §11.5.4).
pub const INTERNAL_AUTHENTICATE: u8 = 0x88;
/// MANAGE SECURITY ENVIRONMENT: select a bootstrap key (ISO/IEC 7816-8).
pub const MANAGE_SECURITY_ENVIRONMENT: u8 = 0x22;
/// PERFORM SECURITY OPERATION: verify a checksum or a signature (ISO/IEC 7816-8).
pub const PERFORM_SECURITY_OPERATION: u8 = 0x2A;
/// CHECK APPROVAL of a firmware package (dmsc, proprietary class).
pub const CHECK_APPROVAL: u8 = 0xA0;
/// CONFIRM INSTALLED of an approved package (dmsc, proprietary class).
pub const CONFIRM_INSTALLED: u8 = 0xA2;
/// GlobalPlatform EXTERNAL AUTHENTICATE, defined with the SCP03 primitives.
pub use crate::scp03::INS_EXTERNAL_AUTHENTICATE as EXTERNAL_AUTHENTICATE;
/// GlobalPlatform INITIALIZE UPDATE, defined with the SCP03 primitives.
pub use crate::scp03::INS_INITIALIZE_UPDATE as INITIALIZE_UPDATE;
/// GET RESPONSE: the rest of a long answer (ISO/IEC 7816-4 §11.6).
pub const GET_RESPONSE: u8 = 0xC0;
/// PUT KEY of an SCP03 key set (GlobalPlatform Card Specification §11.8).
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
