//! Identifiers, class bytes, PIN references and limits of the command set.

/// The applet's AID: proprietary, non-registered category `F` + "DMSC" + version 01.
pub const AID: [u8; 7] = [0xF0, 0x44, 0x4D, 0x53, 0x43, 0x00, 0x01];

/// Applet version reported by SELECT (major, minor).
pub const APPLET_VERSION: (u8, u8) = (1, 0);

/// Interindustry class byte.
pub const CLA_ISO: u8 = 0x00;
/// Proprietary class byte (GlobalPlatform and dmsc-specific commands).
pub const CLA_PROPRIETARY: u8 = 0x80;
/// The secure-messaging bit of the class byte (GlobalPlatform: C-MAC present).
pub const CLA_SECURE_MESSAGING: u8 = 0x04;

/// Key reference of the user PIN (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER).
pub const PIN_REF_USER: u8 = 0x81;
/// Key reference of the PUK (VERIFY only, to read its tries left).
pub const PIN_REF_PUK: u8 = 0x82;
/// PINs and PUKs travel padded with `FF` to this length.
pub const PIN_BLOCK_LEN: usize = 8;
/// Shortest PIN or PUK.
pub const PIN_MIN_LEN: usize = 4;
/// Smallest configurable failure limit.
pub const MIN_FAILURE_LIMIT: u8 = 4;
/// Default failure limit.
pub const DEFAULT_FAILURE_LIMIT: u8 = 4;

/// GET DATA / PUT DATA P1-P2: the object named in the data field.
pub(super) const P1P2_OBJECT: (u8, u8) = (0x3F, 0xFF);
/// GET DATA P1-P2: list the objects of a kind.
pub(super) const P1P2_LIST: (u8, u8) = (0x3F, 0xFE);
/// GET DATA P1-P2 reading every object of a kind (MOs only) in one response.
pub(super) const P1P2_READ_ALL: (u8, u8) = (0x3F, 0xFD);
/// PERFORM SECURITY OPERATION P1-P2: VERIFY CRYPTOGRAPHIC CHECKSUM.
pub(super) const PSO_VERIFY_CHECKSUM: (u8, u8) = (0x00, 0xA2);
/// PERFORM SECURITY OPERATION P1-P2: VERIFY DIGITAL SIGNATURE.
pub(super) const PSO_VERIFY_SIGNATURE: (u8, u8) = (0x00, 0xA8);
/// MANAGE SECURITY ENVIRONMENT P1-P2: SET for verification, CRT for cryptographic checksum.
pub(super) const MSE_SET_CCT: (u8, u8) = (0x81, 0xB4);
/// MSE P1 "SET for computation", accepted as well by the card.
pub(super) const MSE_SET_COMPUTATION: u8 = 0x41;
