//! Tags used in data fields (context-specific, `docs/commands.md` §10).

/// `53`: the value of an object.
pub const VALUE: u32 = 0x53;
/// `8C`: an access control list.
pub const ACL: u32 = 0x8C;
/// `6F`: the FCI template SELECT returns.
pub const FCI: u32 = 0x6F;
/// `84`: the application identifier in the FCI.
pub const AID: u32 = 0x84;
/// `A5`: the proprietary data of the FCI.
pub const PROPRIETARY: u32 = 0xA5;
/// `C0`: the card ID.
pub const CARD_ID: u32 = 0xC0;
/// `C1`: the applet version (major, minor).
pub const APPLET_VERSION: u32 = 0xC1;
/// `C2`: the generation counter.
pub const GENERATION: u32 = 0xC2;
/// `C3`: the largest command data field (Nc).
pub const MAX_COMMAND: u32 = 0xC3;
/// `C4`: the largest response data field (Ne).
pub const MAX_RESPONSE: u32 = 0xC4;
/// `C5`: whether extended-length APDUs are accepted.
pub const EXTENDED_LENGTH: u32 = 0xC5;
/// `C6`: the bit map of supported algorithms.
pub const ALGORITHMS: u32 = 0xC6;
/// `C7`: free object storage in bytes.
pub const FREE_MEMORY: u32 = 0xC7;
/// `C8`: all object storage in bytes.
pub const TOTAL_MEMORY: u32 = 0xC8;
/// `C9`: the SCP03 "i" parameter.
pub const SCP_I: u32 = 0xC9;
/// `D0`: an MO's type.
pub const MO_TYPE: u32 = 0xD0;
/// `D1`: an MO's version.
pub const MO_VERSION: u32 = 0xD1;
/// `D2`: an MO's content.
pub const MO_CONTENT: u32 = 0xD2;
/// `D3`: a bootstrap key's MAC algorithm.
pub const ALGORITHM: u32 = 0xD3;
/// `D4`: a bootstrap key.
pub const KEY: u32 = 0xD4;
/// `D5`: a public key (SEC1 point).
pub const PUBLIC_KEY: u32 = 0xD5;
/// `D6`: an approver's name.
pub const APPROVER: u32 = 0xD6;
/// `D7`: whether user consent needs the PIN.
pub const USER_CONSENT_PIN: u32 = 0xD7;
/// `D8`: a version.
pub const VERSION: u32 = 0xD8;
/// `D9`: the failure limit.
pub const FAILURE_LIMIT: u32 = 0xD9;
/// `DA`: used object storage in bytes.
pub const USED_MEMORY: u32 = 0xDA;
/// `DB`: an authority's name.
pub const AUTHORITY_NAME: u32 = 0xDB;
/// `DC`: key check values.
pub const KEY_CHECK: u32 = 0xDC;
/// `E1`: one entry of a listing or a "read all" answer.
pub const LIST_ENTRY: u32 = 0xE1;
/// `DD`: the size of a stored value.
pub const SIZE: u32 = 0xDD;
/// `80`: the data a checksum covers.
pub const PLAIN: u32 = 0x80;
/// `8E`: a cryptographic checksum (MAC).
pub const CHECKSUM: u32 = 0x8E;
/// `83`: a key reference.
pub const KEY_REF: u32 = 0x83;
/// `90`: a package digest (SHA-256).
pub const DIGEST: u32 = 0x90;
/// `92`: a device class.
pub const DEVICE_CLASS: u32 = 0x92;
/// `E2`: one approval.
pub const APPROVAL: u32 = 0xE2;
/// `9E`: a signature.
pub const SIGNATURE: u32 = 0x9E;
/// `94`: the approval verdict.
pub const VERDICT: u32 = 0x94;
/// `E3`: one refusal reason.
pub const REASON: u32 = 0xE3;
/// `95`: a refusal reason's code.
pub const REASON_CODE: u32 = 0x95;
/// `96`: the first audit sequence number asked for.
pub const AUDIT_FROM: u32 = 0x96;
/// `E4`: one audit record.
pub const AUDIT_ENTRY: u32 = 0xE4;
/// `97`: an audit sequence number.
pub const SEQUENCE: u32 = 0x97;
/// `98`: an audit event code.
pub const EVENT: u32 = 0x98;
/// `99`: the principal an audit record names.
pub const PRINCIPAL: u32 = 0x99;
/// `9A`: an audit record's detail text.
pub const DETAIL: u32 = 0x9A;
/// `9B`: the card session an audit record belongs to.
pub const SESSION: u32 = 0x9B;
/// `91`: how often an aggregated record's event happened.
pub const REPEAT_COUNT: u32 = 0x91;
/// `93`: the first sequence number an aggregated record covers.
pub const FIRST_SEQUENCE: u32 = 0x93;
/// `9C`: an SCP03 key version.
pub const KEY_VERSION: u32 = 0x9C;
/// `9D`: an SCP03 key length in bytes.
pub const KEY_LENGTH: u32 = 0x9D;
