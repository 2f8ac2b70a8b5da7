//! Signatures of the policy use case: ECDSA P-256 / SHA-256 with the
//! enterprise administrator's key.
//!
//! - the **signed policy envelope**, the value of the card's `policy` object;
//! - the **command statement** an administrator signs to enable or disable a
//!   resource on a device;
//! - P-256 keys in the forms `openssl` writes (PEM or DER; SEC1 or PKCS#8
//!   private keys; SPKI public keys or a raw 65-byte point).
//!
//! Each signed message starts with its own first line, so a signature made
//! for one purpose can never be taken for another.

use jiff::Timestamp;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::format::State;
use super::{EnvelopeFault, KeyIssue, Malformation, PolicyError, SignatureIssue, StatementFault};

/// First line of the envelope stored in the card's `policy` object.
pub const ENVELOPE_MAGIC: &str = "dmsc-signed-policy/1";
/// First line of the bytes a policy signature covers (then the policy file).
pub const POLICY_SIGNED_PREFIX: &str = "dmsc-policy/1\n";
/// First line of an administrator's command statement.
pub const COMMAND_MAGIC: &str = "dmsc-policy-command/1";
/// The approver object on the card that holds the enterprise key.
pub const ENTERPRISE_APPROVER: &str = "enterprise";

/// Loads a P-256 private key in any form `openssl` writes
/// ([`crate::p256_keys::load_private_key`]).
pub fn load_signing_key(bytes: &[u8]) -> Result<SigningKey, PolicyError> {
    crate::p256_keys::load_private_key(bytes).map_err(|e| PolicyError::Key(KeyIssue::Load(e)))
}

/// Loads a P-256 public key in any form `openssl` writes, or a raw SEC1 point
/// ([`crate::p256_keys::load_public_key`]).
pub fn load_verifying_key(bytes: &[u8]) -> Result<VerifyingKey, PolicyError> {
    crate::p256_keys::load_public_key(bytes)
        .map(VerifyingKey::from)
        .map_err(|e| PolicyError::Key(KeyIssue::Load(e)))
}

/// The uncompressed SEC1 point (65 bytes) of a key, as the card stores it.
pub fn point(key: &VerifyingKey) -> Vec<u8> {
    key.to_encoded_point(false).as_bytes().to_vec()
}

/// SHA-256 fingerprint of a public point, lower-case hex.
pub fn fingerprint(point: &[u8]) -> String {
    hex::encode(Sha256::digest(point))
}

/// SHA-256 of the policy file, as `sha256:<hex>`.
pub fn policy_digest(policy_text: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(policy_text)))
}

/// The bytes a policy signature covers.
pub fn policy_signed_bytes(policy_text: &[u8]) -> Vec<u8> {
    let mut out = POLICY_SIGNED_PREFIX.as_bytes().to_vec();
    out.extend_from_slice(policy_text);
    out
}

/// A policy with its enterprise signature: the card's `policy` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPolicy {
    /// The policy file, byte for byte.
    pub text: Vec<u8>,
    /// DER ECDSA signature over [`policy_signed_bytes`].
    pub signature: Vec<u8>,
}

impl SignedPolicy {
    /// Signs a policy file with the enterprise key.
    pub fn sign(text: &[u8], key: &SigningKey) -> SignedPolicy {
        let sig: Signature = key.sign(&policy_signed_bytes(text));
        SignedPolicy {
            text: text.to_vec(),
            signature: sig.to_der().as_bytes().to_vec(),
        }
    }

    /// Checks the signature with `key` on the host.
    pub fn verify_with(&self, key: &VerifyingKey) -> Result<(), PolicyError> {
        let sig = Signature::from_der(&self.signature)
            .map_err(|_| PolicyError::BadSignature(SignatureIssue::PolicyNotDer))?;
        key.verify(&policy_signed_bytes(&self.text), &sig)
            .map_err(|_| PolicyError::BadSignature(SignatureIssue::PolicyDoesNotVerify))
    }

    /// The envelope: three header lines, an empty line, the policy file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "{ENVELOPE_MAGIC}\nsigner=approver:{ENTERPRISE_APPROVER}\nsignature={}\n\n",
            hex::encode_upper(&self.signature)
        )
        .into_bytes();
        out.extend_from_slice(&self.text);
        out
    }

    /// Reads an envelope.
    pub fn decode(bytes: &[u8]) -> Result<SignedPolicy, PolicyError> {
        let bad = |fault| PolicyError::Malformed(Malformation::Envelope(fault));
        let split = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or_else(|| bad(EnvelopeFault::NoHeader))?;
        let header =
            std::str::from_utf8(&bytes[..split]).map_err(|_| bad(EnvelopeFault::HeaderNotUtf8))?;
        let mut lines = header.split('\n');
        if lines.next() != Some(ENVELOPE_MAGIC) {
            return Err(bad(EnvelopeFault::FirstLine));
        }
        let signer = format!("signer=approver:{ENTERPRISE_APPROVER}");
        if lines.next() != Some(signer.as_str()) {
            return Err(bad(EnvelopeFault::Signer));
        }
        let sig = lines
            .next()
            .and_then(|l| l.strip_prefix("signature="))
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| bad(EnvelopeFault::NoSignature))?;
        if lines.next().is_some() {
            return Err(bad(EnvelopeFault::ExtraHeaderLines));
        }
        Ok(SignedPolicy {
            text: bytes[split + 2..].to_vec(),
            signature: sig,
        })
    }
}

/// An administrator's command: enable or disable one resource on devices
/// that hold a given policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandStatement {
    /// Enable or disable.
    pub action: State,
    /// The resource.
    pub resource: String,
    /// In force until (exclusive); `None` until the policy is replaced.
    pub until: Option<Timestamp>,
    /// Strictly increasing per device: a device accepts only counters above
    /// the last one it accepted (replay protection).
    pub counter: u64,
    /// The device refuses the command after this instant.
    pub not_after: Timestamp,
    /// The policy it applies to ([`policy_digest`]).
    pub policy: String,
}

fn ts_text(t: Timestamp) -> String {
    // Whole seconds, UTC, `Z`.
    t.round(jiff::Unit::Second)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl CommandStatement {
    /// The exact text that is signed (seven lines, each ended by `\n`).
    pub fn to_text(&self) -> String {
        format!(
            "{COMMAND_MAGIC}\naction={}\nresource={}\nuntil={}\ncounter={}\nnot-after={}\npolicy={}\n",
            match self.action {
                State::Enabled => "enable",
                State::Disabled => "disable",
            },
            self.resource,
            self.until.map(ts_text).unwrap_or_else(|| "none".into()),
            self.counter,
            ts_text(self.not_after),
            self.policy
        )
    }

    /// Reads a statement; only the canonical text [`CommandStatement::to_text`]
    /// writes is accepted.
    pub fn from_text(text: &str) -> Result<CommandStatement, PolicyError> {
        let bad = |fault| PolicyError::Malformed(Malformation::Statement(fault));
        let mut lines = text.split('\n');
        if lines.next() != Some(COMMAND_MAGIC) {
            return Err(bad(StatementFault::FirstLine));
        }
        let mut field = |name: &'static str| -> Result<String, PolicyError> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
                .ok_or_else(|| bad(StatementFault::ExpectedLine(name)))
        };
        let action = match field("action")?.as_str() {
            "enable" => State::Enabled,
            "disable" => State::Disabled,
            _ => return Err(bad(StatementFault::Action)),
        };
        let resource = field("resource")?;
        let until = match field("until")?.as_str() {
            "none" => None,
            t => Some(t.parse().map_err(|_| bad(StatementFault::Until))?),
        };
        let counter = field("counter")?
            .parse()
            .map_err(|_| bad(StatementFault::Counter))?;
        let not_after = field("not-after")?
            .parse()
            .map_err(|_| bad(StatementFault::NotAfter))?;
        let policy = field("policy")?;
        let s = CommandStatement {
            action,
            resource,
            until,
            counter,
            not_after,
            policy,
        };
        if s.to_text() != text {
            return Err(bad(StatementFault::NotCanonical));
        }
        Ok(s)
    }
}

/// A signed command as it travels: JSON `{schema_version, statement, signature}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedCommand {
    /// 1.
    pub schema_version: u32,
    /// The statement text, byte for byte.
    pub statement: String,
    /// DER ECDSA signature over the statement, upper-case hex.
    pub signature: String,
}

impl SignedCommand {
    /// Signs a statement.
    pub fn sign(statement: &CommandStatement, key: &SigningKey) -> SignedCommand {
        let text = statement.to_text();
        let sig: Signature = key.sign(text.as_bytes());
        SignedCommand {
            schema_version: 1,
            statement: text,
            signature: hex::encode_upper(sig.to_der().as_bytes()),
        }
    }

    /// The parsed statement and the signature bytes.
    pub fn parts(&self) -> Result<(CommandStatement, Vec<u8>), PolicyError> {
        if self.schema_version != 1 {
            return Err(PolicyError::Malformed(Malformation::SchemaVersion(
                self.schema_version,
            )));
        }
        let s = CommandStatement::from_text(&self.statement)?;
        let sig = hex::decode(&self.signature)
            .map_err(|_| PolicyError::Malformed(Malformation::SignatureNotHex))?;
        Ok((s, sig))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    #[test]
    fn envelope_round_trip_and_tamper() {
        let sp = SignedPolicy::sign(b"format = \"dmsc-policy\"\n", &key());
        let bytes = sp.encode();
        assert!(
            bytes.starts_with(b"dmsc-signed-policy/1\nsigner=approver:enterprise\nsignature=30")
        );
        let back = SignedPolicy::decode(&bytes).unwrap();
        assert_eq!(back, sp);
        back.verify_with(key().verifying_key()).unwrap();
        let mut t = back.clone();
        t.text.push(b' ');
        assert!(matches!(
            t.verify_with(key().verifying_key()),
            Err(PolicyError::BadSignature(
                SignatureIssue::PolicyDoesNotVerify
            ))
        ));
        assert!(SignedPolicy::decode(b"hello\n\nx").is_err());
        let other = SigningKey::from_slice(&[8u8; 32]).unwrap();
        assert!(back.verify_with(other.verifying_key()).is_err());
    }

    #[test]
    fn statement_is_canonical() {
        let s = CommandStatement {
            action: State::Disabled,
            resource: "camera".into(),
            until: Some("2026-11-22T18:00:00Z".parse().unwrap()),
            counter: 42,
            not_after: "2026-11-23T09:00:00Z".parse().unwrap(),
            policy: "sha256:00".into(),
        };
        let text = s.to_text();
        assert_eq!(
            text,
            "dmsc-policy-command/1\naction=disable\nresource=camera\nuntil=2026-11-22T18:00:00Z\ncounter=42\nnot-after=2026-11-23T09:00:00Z\npolicy=sha256:00\n"
        );
        assert_eq!(CommandStatement::from_text(&text).unwrap(), s);
        assert!(CommandStatement::from_text(&text.replace("=42", "=042")).is_err());
        assert!(CommandStatement::from_text(&text.replace("camera", "camera\nx=y")).is_err());
        let signed = SignedCommand::sign(&s, &key());
        let (back, sig) = signed.parts().unwrap();
        assert_eq!(back, s);
        let sig = Signature::from_der(&sig).unwrap();
        key().verifying_key().verify(text.as_bytes(), &sig).unwrap();
    }

    /// Keys and signatures made by the `openssl` command line.
    #[test]
    fn openssl_keys_and_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| dmsc_test_support::openssl(dir.path(), args);
        run(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "sec1.pem",
        ]);
        run(&[
            "pkcs8", "-topk8", "-nocrypt", "-in", "sec1.pem", "-out", "pk8.pem",
        ]);
        run(&[
            "ec", "-in", "sec1.pem", "-outform", "DER", "-out", "sec1.der",
        ]);
        run(&[
            "pkcs8", "-topk8", "-nocrypt", "-in", "sec1.pem", "-outform", "DER", "-out", "pk8.der",
        ]);
        run(&["ec", "-in", "sec1.pem", "-pubout", "-out", "pub.pem"]);
        run(&[
            "ec", "-in", "sec1.pem", "-pubout", "-outform", "DER", "-out", "pub.der",
        ]);
        let read = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
        let keys: Vec<SigningKey> = ["sec1.pem", "pk8.pem", "sec1.der", "pk8.der"]
            .iter()
            .map(|n| load_signing_key(&read(n)).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
        let vk = load_verifying_key(&read("pub.pem")).unwrap();
        assert_eq!(vk, load_verifying_key(&read("pub.der")).unwrap());
        assert_eq!(&vk, keys[0].verifying_key());
        let der = read("pub.der");
        assert_eq!(load_verifying_key(&der[der.len() - 65..]).unwrap(), vk);

        // openssl signs the policy's signed bytes; our envelope verifies it.
        let text = b"format = \"dmsc-policy\"\n";
        std::fs::write(dir.path().join("msg"), policy_signed_bytes(text)).unwrap();
        run(&[
            "dgst", "-sha256", "-sign", "sec1.pem", "-out", "sig.der", "msg",
        ]);
        let sp = SignedPolicy {
            text: text.to_vec(),
            signature: read("sig.der"),
        };
        sp.verify_with(&vk).unwrap();
        // And openssl verifies ours.
        let ours = SignedPolicy::sign(text, &keys[1]);
        std::fs::write(dir.path().join("ours.der"), &ours.signature).unwrap();
        run(&[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "ours.der",
            "msg",
        ]);

        assert!(load_signing_key(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
        // A private key file stands for its public key too (one loader for all keys).
        assert_eq!(
            load_verifying_key(&read("sec1.der")).unwrap(),
            *load_signing_key(&read("sec1.der")).unwrap().verifying_key()
        );
    }
}
