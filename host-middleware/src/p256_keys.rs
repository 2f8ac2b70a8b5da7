//! P-256 keys and ECDSA signatures as `openssl` writes them.
//!
//! Public keys: PEM or DER, SubjectPublicKeyInfo (`openssl pkey -pubout`),
//! a bare 65-byte uncompressed SEC1 point, or the public half of a private key.
//! Private keys: PEM or DER, SEC1 (`EC PRIVATE KEY`, `openssl ecparam -genkey`)
//! or PKCS#8 (`PRIVATE KEY`, `openssl genpkey`). Signatures: DER
//! (`openssl dgst -sha256 -sign`) or raw `r ‖ s` (64 bytes).

use der::asn1::{AnyRef, ObjectIdentifier};
use der::{Decode, SliceReader, Tag, TagNumber, Tagged};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use p256::{PublicKey, SecretKey};
use zeroize::Zeroizing;

/// Why a key or signature was not accepted. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes are no P-256 public key in any accepted form; what was found,
    /// when known.
    #[error(
        "not a P-256 public key: expected PEM or DER (SubjectPublicKeyInfo, SEC1 or PKCS#8 \
         private key of curve prime256v1) or a 65-byte uncompressed point{}",
        detail_suffix(.0)
    )]
    NotPublicKey(Option<KeyProblem>),
    /// The bytes are no P-256 private key in any accepted form; what was found,
    /// when known.
    #[error(
        "not a P-256 private key: expected PEM or DER, SEC1 (EC PRIVATE KEY) or PKCS#8 \
         (PRIVATE KEY) of curve prime256v1{}",
        detail_suffix(.0)
    )]
    NotPrivateKey(Option<KeyProblem>),
    /// The bytes are no ECDSA signature.
    #[error("not an ECDSA P-256 signature: expected DER or raw r||s (64 bytes), got {0} bytes")]
    NotSignature(usize),
}

/// What a key file holds instead of a P-256 key, or where its decoding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// A known key of another kind ([`identify_other_key`]), e.g. "an RSA key".
    #[error("found {0}")]
    Found(&'static str),
    /// A PEM block whose label names no key form accepted here.
    #[error("PEM label {0}")]
    PemLabel(String),
    /// A `PUBLIC KEY` PEM block that does not decode as a P-256 key.
    #[error("PEM PUBLIC KEY: {0}")]
    PemPublicKey(p256::pkcs8::spki::Error),
    /// A 65-byte uncompressed point that is not on the curve.
    #[error("the point is not on the curve")]
    PointOffCurve,
    /// An `EC PRIVATE KEY` PEM block that does not decode.
    #[error("PEM EC PRIVATE KEY does not decode")]
    PemEcPrivateKey,
    /// A `PRIVATE KEY` PEM block that does not decode.
    #[error("PEM PRIVATE KEY does not decode")]
    PemPrivateKey,
    /// `openssl ecparam -genkey` without `-noout`, and no key block after it.
    #[error(
        "the file holds EC PARAMETERS before the key; use `openssl ecparam -genkey -noout`, \
         or keep only the EC PRIVATE KEY block"
    )]
    EcParametersFirst,
    /// A public key was looked for in a private key file that does not load.
    #[error("{0}")]
    PrivateKey(Box<KeyError>),
}

fn detail_suffix(d: &Option<KeyProblem>) -> String {
    match d {
        Some(d) => format!(" ({d})"),
        None => String::new(),
    }
}

fn pem_label(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let end = text[start..].find("-----")?;
    Some(text[start..start + end].to_string())
}

fn pem_text(bytes: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(bytes).ok()?;
    let start = text.find("-----BEGIN ")?;
    Some(&text[start..])
}

/// `id-ecPublicKey` (RFC 5480): the algorithm whose parameters name the curve.
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// Known key algorithms and curves, by OID: what a key that is not P-256 is.
const KNOWN_KEYS: &[(ObjectIdentifier, &str)] = &[
    (
        ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1"),
        "an RSA key",
    ),
    (
        ObjectIdentifier::new_unwrap("1.2.840.10040.4.1"),
        "a DSA key",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.101.112"),
        "an Ed25519 key",
    ),
    (ObjectIdentifier::new_unwrap("1.3.101.113"), "an Ed448 key"),
    (ObjectIdentifier::new_unwrap("1.3.101.110"), "an X25519 key"),
    (ObjectIdentifier::new_unwrap("1.3.101.111"), "an X448 key"),
    (
        ObjectIdentifier::new_unwrap("1.3.132.0.34"),
        "an EC key on curve secp384r1 (P-384)",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.132.0.35"),
        "an EC key on curve secp521r1 (P-521)",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.132.0.10"),
        "an EC key on curve secp256k1",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.36.3.3.2.8.1.1.7"),
        "an EC key on curve brainpoolP256r1",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.36.3.3.2.8.1.1.11"),
        "an EC key on curve brainpoolP384r1",
    ),
    (
        ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.1"),
        "an EC key on curve prime192v1 (P-192)",
    ),
    (
        ObjectIdentifier::new_unwrap("1.3.132.0.33"),
        "an EC key on curve secp224r1 (P-224)",
    ),
];

fn known(oid: &ObjectIdentifier) -> Option<&'static str> {
    KNOWN_KEYS
        .iter()
        .find_map(|(known, what)| (known == oid).then_some(*what))
}

/// What kind of key the bytes (PEM or DER) hold, when it is a known kind
/// other than P-256: the algorithm OID of a SubjectPublicKeyInfo or PKCS#8
/// PrivateKeyInfo (and, for `id-ecPublicKey`, the curve OID of its
/// parameters), the curve OID of a SEC1 ECPrivateKey or of EC PARAMETERS, or
/// the shape of a PKCS#1 RSA key.
pub fn identify_other_key(bytes: &[u8]) -> Option<&'static str> {
    let pem: Zeroizing<Vec<u8>>;
    let der: &[u8] = match pem_text(bytes) {
        Some(text) => {
            let label = pem_label(bytes).unwrap_or_default();
            if label.starts_with("RSA ") {
                return Some("an RSA key");
            }
            if label.starts_with("DSA ") {
                return Some("a DSA key");
            }
            pem = Zeroizing::new(
                p256::pkcs8::der::Document::from_pem(text)
                    .ok()?
                    .1
                    .as_bytes()
                    .to_vec(),
            );
            &pem
        }
        None => bytes,
    };
    let mut reader = SliceReader::new(der).ok()?;
    let outer = AnyRef::decode(&mut reader).ok()?;
    match outer.tag() {
        // EC PARAMETERS: the curve's OID alone.
        Tag::ObjectIdentifier => known(&ObjectIdentifier::try_from(outer).ok()?),
        Tag::Sequence => identify_sequence(&elements(outer.value(), 4)?),
        _ => None,
    }
}

/// The first `max` TLVs inside a constructed value (fewer if it has fewer).
fn elements(value: &[u8], max: usize) -> Option<Vec<AnyRef<'_>>> {
    let mut reader = SliceReader::new(value).ok()?;
    let mut out = Vec::new();
    while out.len() < max && !der::Reader::is_finished(&reader) {
        out.push(AnyRef::decode(&mut reader).ok()?);
    }
    Some(out)
}

/// The key kind of a SEQUENCE's elements: SubjectPublicKeyInfo
/// `{AlgorithmIdentifier, BIT STRING}`, PKCS#8 `{INTEGER, AlgorithmIdentifier,
/// OCTET STRING, …}`, SEC1 `{INTEGER 1, OCTET STRING, [0] curve OID, …}` or
/// PKCS#1 RSA (INTEGERs only).
fn identify_sequence(e: &[AnyRef<'_>]) -> Option<&'static str> {
    let tags: Vec<Tag> = e.iter().map(|a| a.tag()).collect();
    match tags.as_slice() {
        [Tag::Sequence, Tag::BitString, ..] => identify_algorithm(e[0]),
        [Tag::Integer, Tag::Sequence, Tag::OctetString, ..] => identify_algorithm(e[1]),
        [Tag::Integer, Tag::OctetString, ..] => e[2..].iter().find_map(|a| {
            let params = Tag::ContextSpecific {
                constructed: true,
                number: TagNumber::N0,
            };
            (a.tag() == params)
                .then(|| ObjectIdentifier::from_der(a.value()).ok())
                .flatten()
                .and_then(|curve| known(&curve))
        }),
        [Tag::Integer, Tag::Integer, ..] => is_pkcs1_rsa(e[0].value(), e[1].value()),
        _ => None,
    }
}

/// The key kind an AlgorithmIdentifier `{OID, parameters}` names.
fn identify_algorithm(alg: AnyRef<'_>) -> Option<&'static str> {
    let e = elements(alg.value(), 2)?;
    let oid = ObjectIdentifier::try_from(*e.first()?).ok()?;
    if oid == ID_EC_PUBLIC_KEY {
        let curve = ObjectIdentifier::try_from(*e.get(1)?).ok()?;
        known(&curve)
    } else {
        known(&oid)
    }
}

/// A PKCS#1 RSAPrivateKey or RSAPublicKey (no algorithm OID) from its first
/// two INTEGERs: 0 then a large one (private), or a large one then a small
/// one (public).
fn is_pkcs1_rsa(first: &[u8], second: &[u8]) -> Option<&'static str> {
    let private = first == [0] && second.len() >= 64;
    let public = first.len() >= 64 && second.len() <= 8;
    (private || public).then_some("an RSA key")
}

/// Replaces the detail of a key error by the kind of key found, if known.
fn name_the_key(e: KeyError, bytes: &[u8]) -> KeyError {
    match (identify_other_key(bytes), e) {
        (Some(found), KeyError::NotPublicKey(_)) => {
            KeyError::NotPublicKey(Some(KeyProblem::Found(found)))
        }
        (Some(found), KeyError::NotPrivateKey(_)) => {
            KeyError::NotPrivateKey(Some(KeyProblem::Found(found)))
        }
        (_, e) => e,
    }
}

/// Loads a P-256 public key (see the module documentation for the forms).
pub fn load_public_key(bytes: &[u8]) -> Result<PublicKey, KeyError> {
    load_public_key_inner(bytes).map_err(|e| name_the_key(e, bytes))
}

fn load_public_key_inner(bytes: &[u8]) -> Result<PublicKey, KeyError> {
    let not_public = |p| KeyError::NotPublicKey(Some(p));
    if let Some(label) = pem_label(bytes) {
        let text = pem_text(bytes).unwrap_or_default();
        return match label.as_str() {
            "PUBLIC KEY" => PublicKey::from_public_key_pem(text)
                .map_err(|e| not_public(KeyProblem::PemPublicKey(e))),
            "EC PRIVATE KEY" | "PRIVATE KEY" | "EC PARAMETERS" => load_private_key_inner(bytes)
                .map(|k| PublicKey::from(k.verifying_key()))
                .map_err(|e| not_public(KeyProblem::PrivateKey(Box::new(e)))),
            _ => Err(not_public(KeyProblem::PemLabel(label))),
        };
    }
    if bytes.len() == 65 && bytes[0] == 0x04 {
        return PublicKey::from_sec1_bytes(bytes)
            .map_err(|_| not_public(KeyProblem::PointOffCurve));
    }
    if let Ok(k) = PublicKey::from_public_key_der(bytes) {
        return Ok(k);
    }
    if let Ok(k) = load_private_key_inner(bytes) {
        return Ok(PublicKey::from(k.verifying_key()));
    }
    Err(KeyError::NotPublicKey(None))
}

/// Loads a P-256 private key for signing (see the module documentation).
pub fn load_private_key(bytes: &[u8]) -> Result<SigningKey, KeyError> {
    load_private_key_inner(bytes).map_err(|e| name_the_key(e, bytes))
}

fn load_private_key_inner(bytes: &[u8]) -> Result<SigningKey, KeyError> {
    let not_private = |p| KeyError::NotPrivateKey(Some(p));
    let secret =
        if let Some(label) = pem_label(bytes) {
            let text = pem_text(bytes).unwrap_or_default();
            match label.as_str() {
                "EC PRIVATE KEY" => SecretKey::from_sec1_pem(text)
                    .map_err(|_| not_private(KeyProblem::PemEcPrivateKey)),
                "PRIVATE KEY" => SecretKey::from_pkcs8_pem(text)
                    .map_err(|_| not_private(KeyProblem::PemPrivateKey)),
                "EC PARAMETERS" => Err(not_private(KeyProblem::EcParametersFirst)),
                _ => Err(not_private(KeyProblem::PemLabel(label.clone()))),
            }
            .or_else(|e| {
                // `openssl ecparam -genkey` without -noout writes EC PARAMETERS first.
                match text.find("-----BEGIN EC PRIVATE KEY-----") {
                    Some(i) if label == "EC PARAMETERS" => SecretKey::from_sec1_pem(&text[i..])
                        .map_err(|_| not_private(KeyProblem::PemEcPrivateKey)),
                    _ => Err(e),
                }
            })?
        } else {
            let der = Zeroizing::new(bytes.to_vec());
            SecretKey::from_sec1_der(&der)
                .or_else(|_| SecretKey::from_pkcs8_der(&der))
                .map_err(|_| KeyError::NotPrivateKey(None))?
        };
    Ok(SigningKey::from(secret))
}

/// The 65-byte uncompressed SEC1 point the card stores for an approver.
pub fn sec1_point(key: &PublicKey) -> Vec<u8> {
    key.to_encoded_point(false).as_bytes().to_vec()
}

/// Checks the shape of a signature: DER, or raw `r ‖ s`. Returns it unchanged
/// (the card accepts both).
pub fn check_signature(bytes: &[u8]) -> Result<(), KeyError> {
    if bytes.len() == 64 {
        Signature::from_slice(bytes).map_err(|_| KeyError::NotSignature(bytes.len()))?;
        return Ok(());
    }
    Signature::from_der(bytes)
        .map(drop)
        .map_err(|_| KeyError::NotSignature(bytes.len()))
}

/// Signs `message` (ECDSA P-256, SHA-256, RFC 6979 nonce); the DER signature.
pub fn sign_der(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    use p256::ecdsa::signature::Signer;
    let sig: Signature = key.sign(message);
    sig.to_der().as_bytes().to_vec()
}

/// Verifies a prehashed ECDSA P-256 signature (DER or raw) against a key.
pub fn verify_prehash(key: &PublicKey, digest: &[u8; 32], signature: &[u8]) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let sig = if signature.len() == 64 {
        Signature::from_slice(signature)
    } else {
        Signature::from_der(signature)
    };
    match sig {
        Ok(sig) => VerifyingKey::from(key).verify_prehash(digest, &sig).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmsc_test_support::openssl;

    /// RSA, P-384 and Ed25519 keys, public and private, PEM and DER: the
    /// error names the key type and curve found.
    #[test]
    fn other_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cases: [(&[&str], &str); 3] = [
            (
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:1024",
                ],
                "an RSA key",
            ),
            (
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-384",
                ],
                "secp384r1 (P-384)",
            ),
            (&["genpkey", "-algorithm", "ED25519"], "an Ed25519 key"),
        ];
        for (gen, want) in cases {
            let pem = openssl(d, gen);
            std::fs::write(d.join("k.pem"), &pem).unwrap();
            let pubpem = openssl(d, &["pkey", "-in", "k.pem", "-pubout"]);
            let pubder = openssl(d, &["pkey", "-in", "k.pem", "-pubout", "-outform", "DER"]);
            let der = openssl(d, &["pkey", "-in", "k.pem", "-outform", "DER"]);
            for bytes in [&pem, &der] {
                let e = load_private_key(bytes).unwrap_err().to_string();
                assert!(e.contains(want), "{want}: {e} {}", bytes.len());
            }
            for bytes in [&pubpem, &pubder, &pem] {
                let e = load_public_key(bytes).unwrap_err().to_string();
                assert!(e.contains(want), "{want}: {e}");
            }
        }
        // Traditional RSA PEM (BEGIN RSA PRIVATE KEY).
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:1024",
                "-out",
                "r.pem",
            ],
        );
        let rsa = openssl(d, &["rsa", "-in", "r.pem", "-traditional"]);
        assert!(rsa.starts_with(b"-----BEGIN RSA PRIVATE KEY"));
        let e = load_private_key(&rsa).unwrap_err().to_string();
        assert!(e.contains("an RSA key"), "{e}");
    }

    /// The algorithm and curve OIDs count only at their places in the key's
    /// structure: the same OID bytes elsewhere name nothing.
    #[test]
    fn oids_count_only_at_their_places() {
        let rsa_oid = [
            0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
        ];
        // Loose bytes holding the RSA OID, and an OCTET STRING wrapping it.
        let mut loose = vec![0xFF];
        loose.extend_from_slice(&rsa_oid);
        assert_eq!(identify_other_key(&loose), None);
        let mut wrapped = vec![0x04, rsa_oid.len() as u8];
        wrapped.extend_from_slice(&rsa_oid);
        assert_eq!(identify_other_key(&wrapped), None);
        // The same OID as the algorithm of a SubjectPublicKeyInfo.
        let mut alg = vec![0x30, rsa_oid.len() as u8 + 2];
        alg.extend_from_slice(&rsa_oid);
        alg.extend_from_slice(&[0x05, 0x00]);
        let mut spki = vec![0x30, alg.len() as u8 + 4];
        spki.extend_from_slice(&alg);
        spki.extend_from_slice(&[0x03, 0x02, 0x00, 0x00]);
        assert_eq!(identify_other_key(&spki), Some("an RSA key"));
        // EC PARAMETERS alone: the curve's OID.
        let p384 = [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
        assert_eq!(
            identify_other_key(&p384),
            Some("an EC key on curve secp384r1 (P-384)")
        );
    }

    /// Every form openssl writes loads, and all give the same public key.
    #[test]
    fn openssl_key_forms() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-out",
                "params+key.pem",
            ],
        );
        openssl(d, &["ec", "-in", "params+key.pem", "-out", "sec1.pem"]);
        openssl(
            d,
            &[
                "ec",
                "-in",
                "params+key.pem",
                "-outform",
                "DER",
                "-out",
                "sec1.der",
            ],
        );
        openssl(
            d,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "sec1.pem", "-out", "p8.pem",
            ],
        );
        openssl(
            d,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "sec1.pem", "-outform", "DER", "-out",
                "p8.der",
            ],
        );
        openssl(
            d,
            &["pkey", "-in", "sec1.pem", "-pubout", "-out", "pub.pem"],
        );
        openssl(
            d,
            &[
                "pkey", "-in", "sec1.pem", "-pubout", "-outform", "DER", "-out", "pub.der",
            ],
        );
        let read = |n: &str| std::fs::read(d.join(n)).unwrap();
        let expected = load_public_key(&read("pub.pem")).unwrap();
        for name in [
            "params+key.pem",
            "sec1.pem",
            "sec1.der",
            "p8.pem",
            "p8.der",
            "pub.der",
        ] {
            assert_eq!(load_public_key(&read(name)).unwrap(), expected, "{name}");
        }
        let point = sec1_point(&expected);
        assert_eq!(load_public_key(&point).unwrap(), expected);
        for name in ["params+key.pem", "sec1.pem", "sec1.der", "p8.pem", "p8.der"] {
            let key = load_private_key(&read(name)).unwrap();
            assert_eq!(PublicKey::from(key.verifying_key()), expected, "{name}");
        }
        // Public keys are not private keys; garbage is neither.
        assert!(load_private_key(&read("pub.pem")).is_err());
        assert!(load_public_key(b"hello").is_err());
        assert!(
            load_public_key(&[4u8; 65]).is_err(),
            "a point off the curve"
        );
        // A signature by openssl verifies with the loaded key; shapes are checked.
        std::fs::write(d.join("msg"), b"statement").unwrap();
        openssl(
            d,
            &["dgst", "-sha256", "-sign", "sec1.pem", "-out", "sig", "msg"],
        );
        let sig = read("sig");
        check_signature(&sig).unwrap();
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(b"statement").into();
        assert!(verify_prehash(&expected, &digest, &sig));
        assert!(check_signature(&sig[..sig.len() - 1]).is_err());
        assert!(check_signature(&[0u8; 64]).is_err());
        // Another curve is refused with a clear message.
        openssl(
            d,
            &[
                "ecparam",
                "-genkey",
                "-name",
                "secp384r1",
                "-noout",
                "-out",
                "p384.pem",
            ],
        );
        let err = load_private_key(&read("p384.pem")).unwrap_err().to_string();
        assert!(err.contains("P-256"), "{err}");
    }
}
