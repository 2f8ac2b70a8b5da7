//! Any vpcd [`VirtualCard`] (such as the simulated UICC,
//! [`SimUicc`](dmsc_sim_card::uicc::SimUicc)) as an in-process
//! [`Transport`] (feature `sim`).

use dmsc_sim_card::vpcd::{Power, VirtualCard};

use crate::transport::{Transport, TransportError};

/// A virtual card driven directly, without PC/SC.
pub struct VirtualCardTransport<C: VirtualCard> {
    card: C,
    name: String,
}

impl<C: VirtualCard> VirtualCardTransport<C> {
    /// Wraps a card; it is powered on.
    pub fn new(mut card: C, name: impl Into<String>) -> Self {
        card.power(Power::On);
        VirtualCardTransport {
            card,
            name: name.into(),
        }
    }

    /// The card.
    pub fn card(&self) -> &C {
        &self.card
    }

    /// Gives the card back.
    pub fn into_card(self) -> C {
        self.card
    }
}

impl<C: VirtualCard> Transport for VirtualCardTransport<C> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.card.transmit(apdu).ok_or(TransportError::CardRemoved)
    }

    fn atr(&self) -> Vec<u8> {
        self.card.atr()
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        self.card.power(Power::Reset);
        Ok(())
    }

    fn reader_name(&self) -> &str {
        &self.name
    }

    fn supports_extended(&self) -> bool {
        false
    }

    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        body(self);
        Ok(())
    }
}

/// The JSON description of a simulated UICC (`dmsc uicc --sim-uicc FILE`):
///
/// ```json
/// {"iccid": "98103254769810325476",
///  "lwm2m_bootstrap": {"format": 1, "objects": [...]},
///  "lwm2m_size": 512, "lwm2m_entry": "oid-do",
///  "dm_bootstrap_hex": "03016A00...", "adm1_hex": "3838383838383838", "t0": true,
///  "pin1": {"value": "1234", "protect": ["lwm2m", "dm"]}}
/// ```
///
/// `pin1` protects the named data-object files with PIN1 (read access
/// condition PIN1, 3 tries; an EF(AODF) describes it).
///
/// `lwm2m_bootstrap` is the JSON form of [`BootstrapFile`](super::BootstrapFile);
/// `lwm2m_entry` is `oid-do` (an `oidDO` with the twice-wrapped OID, as
/// published cards have) or `opaque` (an opaque DO with `applicationOID`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileJson {
    /// EF(ICCID), hex (BCD, 10 bytes).
    pub iccid: String,
    /// The LwM2M bootstrap, if the card carries one.
    #[serde(default)]
    pub lwm2m_bootstrap: Option<super::BootstrapFile>,
    /// EF(LwM2M_Bootstrap) size (default 512, at most 32 KiB).
    #[serde(default = "default_size")]
    pub lwm2m_size: usize,
    /// `oid-do` (default) or `opaque`.
    #[serde(default)]
    pub lwm2m_entry: Option<String>,
    /// The OMA DM bootstrap message (WBXML), hex.
    #[serde(default)]
    pub dm_bootstrap_hex: Option<String>,
    /// The ADM1 key, hex (8 bytes; default `3838383838383838`).
    #[serde(default)]
    pub adm1_hex: Option<String>,
    /// Answer SELECT with `61xx` like a T=0 UICC.
    #[serde(default)]
    pub t0: bool,
    /// PIN1 protection of data-object files.
    #[serde(default)]
    pub pin1: Option<Pin1Json>,
}

/// `"pin1": {"value": "1234", "protect": ["lwm2m", "dm"]}`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin1Json {
    /// PIN1: 4 to 8 digits.
    pub value: String,
    /// The files it protects: `lwm2m`, `dm` (default: both).
    #[serde(default)]
    pub protect: Option<Vec<String>>,
}

fn default_size() -> usize {
    512
}

/// A profile description that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not JSON of the documented form.
    #[error("UICC profile: {0}")]
    Json(#[from] serde_json::Error),
    /// A field with a bad value.
    #[error("UICC profile: {field}: {problem}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: ProfileProblem,
    },
    /// The bootstrap does not encode or fit.
    #[error("UICC profile: lwm2m_bootstrap: {0}")]
    Lwm2m(#[from] super::Lwm2mError),
}

/// What is wrong with a profile field ([`ProfileError::Field`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileProblem {
    /// A `pin1.protect` entry that names no protectable file.
    #[error("'{0}' is neither 'lwm2m' nor 'dm'")]
    NotProtectable(String),
    /// A PIN1 that is not 4 to 8 digits (the PIN itself is not kept).
    #[error("PIN1 is 4 to 8 digits")]
    Pin1Format,
    /// A hex field that does not decode.
    #[error("not hex: {0}")]
    NotHex(hex::FromHexError),
    /// A file size out of range.
    #[error("{0} is not between 1 and {max}", max = super::lwm2m::MAX_FILE_SIZE)]
    SizeOutOfRange(usize),
    /// An `lwm2m_entry` form that does not exist.
    #[error("'{0}' is neither 'oid-do' nor 'opaque'")]
    NotAnEntryForm(String),
    /// A key of the wrong length.
    #[error("{given} bytes, {expected} expected")]
    KeyLength {
        /// The length given.
        given: usize,
        /// The length the key has.
        expected: usize,
    },
}

impl ProfileJson {
    /// Parses a profile description.
    pub fn parse(text: &str) -> Result<ProfileJson, ProfileError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The PIN1 protection of the profile, if any.
    pub fn pin1(&self) -> Result<Option<dmsc_sim_card::uicc::Pin1>, ProfileError> {
        let Some(p) = &self.pin1 else {
            return Ok(None);
        };
        let (mut lwm2m, mut dm) = (false, false);
        match &p.protect {
            None => (lwm2m, dm) = (true, true),
            Some(list) => {
                for f in list {
                    match f.as_str() {
                        "lwm2m" => lwm2m = true,
                        "dm" => dm = true,
                        other => {
                            return Err(ProfileError::Field {
                                field: "pin1.protect",
                                problem: ProfileProblem::NotProtectable(other.to_string()),
                            })
                        }
                    }
                }
            }
        }
        dmsc_sim_card::uicc::Pin1::from_digits(p.value.as_bytes(), lwm2m, dm)
            .map(Some)
            .ok_or(ProfileError::Field {
                field: "pin1.value",
                problem: ProfileProblem::Pin1Format,
            })
    }

    /// The simulated card of the profile, PIN1 included.
    pub fn to_card(&self) -> Result<dmsc_sim_card::uicc::SimUicc, ProfileError> {
        Ok(dmsc_sim_card::uicc::SimUicc::with_pin1(
            &self.to_profile()?,
            self.pin1()?,
        ))
    }

    /// The simulator's profile.
    pub fn to_profile(&self) -> Result<dmsc_sim_card::uicc::UiccProfile, ProfileError> {
        let hexfield = |field: &'static str, v: &str| {
            hex::decode(v.replace(' ', "")).map_err(|e| ProfileError::Field {
                field,
                problem: ProfileProblem::NotHex(e),
            })
        };
        if self.lwm2m_size == 0 || self.lwm2m_size > super::lwm2m::MAX_FILE_SIZE {
            return Err(ProfileError::Field {
                field: "lwm2m_size",
                problem: ProfileProblem::SizeOutOfRange(self.lwm2m_size),
            });
        }
        let lwm2m_oid_do = match self.lwm2m_entry.as_deref() {
            None | Some("oid-do") => true,
            Some("opaque") => false,
            Some(other) => {
                return Err(ProfileError::Field {
                    field: "lwm2m_entry",
                    problem: ProfileProblem::NotAnEntryForm(other.to_string()),
                })
            }
        };
        let adm1 = match &self.adm1_hex {
            Some(h) => {
                <[u8; 8]>::try_from(hexfield("adm1_hex", h)?).map_err(|v| ProfileError::Field {
                    field: "adm1_hex",
                    problem: ProfileProblem::KeyLength {
                        given: v.len(),
                        expected: 8,
                    },
                })?
            }
            None => *b"88888888",
        };
        Ok(dmsc_sim_card::uicc::UiccProfile {
            iccid: hexfield("iccid", &self.iccid)?,
            lwm2m_bootstrap: match &self.lwm2m_bootstrap {
                Some(b) => Some(b.encode_padded(self.lwm2m_size)?),
                None => None,
            },
            lwm2m_size: self.lwm2m_size,
            dm_bootstrap: self
                .dm_bootstrap_hex
                .as_deref()
                .map(|h| hexfield("dm_bootstrap_hex", h))
                .transpose()?,
            lwm2m_oid_do,
            adm1,
            t0: self.t0,
        })
    }
}

#[cfg(test)]
mod tests {
    use dmsc_sim_card::uicc::{SimUicc, UiccProfile};

    use super::*;
    use crate::transport::scripted::h;
    use crate::uicc::{self, lwm2m::Value, BootstrapFile, UiccError};
    use crate::Session;

    const VENDOR: &str = "00010036000000003108002EC80025636F61703A2F2F6C657368616E2E65636C697073\
                          6570726F6A656374732E696F3A35373833C10101C10203FFFF";

    fn profile(t0: bool, oid_do: bool) -> UiccProfile {
        UiccProfile {
            iccid: h("98103254769810325476"),
            lwm2m_bootstrap: Some(h(VENDOR)),
            lwm2m_size: 512,
            dm_bootstrap: Some(h("03016A00 0101")),
            lwm2m_oid_do: oid_do,
            adm1: *b"88888888",
            t0,
        }
    }

    fn session(p: &UiccProfile) -> Session<VirtualCardTransport<SimUicc>> {
        Session::new(VirtualCardTransport::new(SimUicc::new(p), "simulated UICC"))
    }

    #[test]
    fn reads_the_bootstrap_from_the_simulated_uicc_in_every_form() {
        for (t0, oid_do) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut s = session(&profile(t0, oid_do));
            let f = uicc::read_lwm2m_bootstrap(&mut s).unwrap();
            assert_eq!(
                f.entries()[0].1,
                Value::String("coap://leshan.eclipseprojects.io:5783".into()),
                "t0={t0} oid_do={oid_do}"
            );
            let dm = uicc::read_dm_bootstrap_raw(&mut s).unwrap();
            assert_eq!(dm, h("03016A000101"));
        }
    }

    #[test]
    fn info_lists_applications_objects_and_sizes() {
        let mut s = session(&profile(true, true));
        let info = uicc::read_info(&mut s).unwrap();
        assert!(info.pkcs15);
        assert_eq!(info.applications[0].aid, "A000000063504B43532D3135");
        assert_eq!(info.data_objects.len(), 2);
        assert_eq!(info.data_objects[0].size, Some(512));
        assert!(info.data_objects[0].object.oid_wrapped);
        assert_eq!(
            info.token_info.as_ref().and_then(|t| t.label.as_deref()),
            Some("dmsc-uicc")
        );
    }

    #[test]
    fn write_then_read_back_through_adm() {
        let mut s = session(&profile(false, true));
        let mut f = uicc::read_lwm2m_bootstrap(&mut s).unwrap();
        f.objects[0].instances[0].resources[0].value =
            Some(Value::String("coaps://bs.example:5684".into()));
        // Without the ADM key the card refuses the update; nothing changes.
        let e = uicc::write_lwm2m_bootstrap(&mut s, &f, None).unwrap_err();
        assert!(
            matches!(&e, UiccError::Card(c) if c.sw() == Some(0x6982)),
            "{e:?}"
        );
        let again = uicc::read_lwm2m_bootstrap(&mut s).unwrap();
        assert_eq!(
            again.entries()[0].1,
            Value::String("coap://leshan.eclipseprojects.io:5783".into())
        );
        let trace = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let t = trace.clone();
        s.set_trace(Box::new(move |e| {
            if let Ok(mut t) = t.lock() {
                t.push_str(&e.hex);
                t.push('\n');
            }
        }));
        uicc::write_lwm2m_bootstrap(&mut s, &f, Some(b"88888888")).unwrap();
        let text = trace.lock().unwrap().clone();
        assert!(
            text.contains("00 20 00 0A") || text.contains("0020000A"),
            "{text}"
        );
        assert!(
            !text.contains("3838383838383838") && !text.contains("38 38 38 38"),
            "{text}"
        );
        let back: BootstrapFile = uicc::read_lwm2m_bootstrap(&mut s).unwrap();
        assert_eq!(
            back.entries()[0].1,
            Value::String("coaps://bs.example:5684".into())
        );
    }

    fn pin(digits: &str) -> uicc::Pin {
        uicc::Pin::new(digits.as_bytes()).unwrap()
    }

    fn protected_card() -> SimUicc {
        let pin1 = dmsc_sim_card::uicc::Pin1::from_digits(b"2468", true, true).unwrap();
        SimUicc::with_pin1(&profile(true, true), Some(pin1))
    }

    #[test]
    fn a_protected_object_needs_the_pin_and_a_right_pin_reads_it() {
        let mut s = Session::new(VirtualCardTransport::new(protected_card(), "UICC"));
        let e = uicc::read_lwm2m_bootstrap(&mut s).unwrap_err();
        assert!(
            matches!(&e, UiccError::PinRequired { auth_id, .. } if auth_id == "01"),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("data object 2.23.43.9.1 (file 6432)"),
            "{e}"
        );
        let e = uicc::read_dm_bootstrap_raw(&mut s).unwrap_err();
        assert!(e.to_string().contains("data object 2.23.43.7.1"), "{e}");
        // info lists the objects, flags them and the PIN object of the AODF.
        let info = uicc::read_info(&mut s).unwrap();
        assert!(info.data_objects.iter().all(|o| o.object.auth_id.is_some()));
        assert_eq!(info.pin_objects.len(), 1);
        assert_eq!(info.pin_objects[0].reference, 1);
        assert!(!info.pin_verified);
        let f = uicc::read_lwm2m_bootstrap_with_pin(&mut s, Some(&pin("2468"))).unwrap();
        assert_eq!(
            f.entries()[0].1,
            Value::String("coap://leshan.eclipseprojects.io:5783".into())
        );
        let dm = uicc::read_dm_bootstrap_raw_with_pin(&mut s, Some(&pin("2468"))).unwrap();
        assert_eq!(dm, h("03016A000101"));
        let info = uicc::read_info_with_pin(&mut s, Some(&pin("2468"))).unwrap();
        assert!(info.pin_verified);
        assert_eq!(s.transport().card().pin1_tries(), 3);
    }

    #[test]
    fn a_wrong_pin_reads_nothing_counts_down_and_blocks_after_three() {
        let mut s = Session::new(VirtualCardTransport::new(protected_card(), "UICC"));
        let trace = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let t = trace.clone();
        s.set_trace(Box::new(move |e| {
            if let Ok(mut t) = t.lock() {
                t.push_str(&e.hex);
                t.push('\n');
            }
        }));
        for left in [2u8, 1] {
            let e =
                uicc::read_lwm2m_bootstrap_raw_with_pin(&mut s, Some(&pin("1111"))).unwrap_err();
            assert!(
                matches!(e, UiccError::WrongPin { tries_left, reference: 1, .. } if tries_left == left),
                "{e:?}"
            );
            assert!(e.to_string().contains(&format!("{left} tries left")), "{e}");
            // Sent once per call: the card counted exactly one try.
            assert_eq!(s.transport().card().pin1_tries(), left);
        }
        let e = uicc::read_lwm2m_bootstrap_raw_with_pin(&mut s, Some(&pin("1111"))).unwrap_err();
        assert!(
            matches!(e, UiccError::PinBlocked { reference: 1, .. }),
            "{e:?}"
        );
        // Blocked: the right PIN no longer opens it.
        let e = uicc::read_lwm2m_bootstrap_raw_with_pin(&mut s, Some(&pin("2468"))).unwrap_err();
        assert!(matches!(e, UiccError::PinBlocked { .. }), "{e:?}");
        assert!(e.to_string().contains("is blocked"), "{e}");
        let text = trace.lock().unwrap().clone();
        // VERIFY went out on the logical channel with P2 = 01, its data redacted.
        assert!(text.contains("01200001 08 <redacted 8 bytes>"), "{text}");
        for secret in ["31313131", "31 31 31 31", "32343638", "32 34 36 38"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn a_pin_that_does_not_fit_the_pin_object_is_not_sent() {
        let mut s = Session::new(VirtualCardTransport::new(protected_card(), "UICC"));
        let e = uicc::read_lwm2m_bootstrap_raw_with_pin(&mut s, Some(&pin("12ab"))).unwrap_err();
        assert!(
            matches!(
                e,
                UiccError::PinFormat {
                    problem: uicc::PinProblem::DigitsOnly,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(!e.to_string().contains("12ab"), "{e}");
        assert!(e.to_string().contains("takes digits only"), "{e}");
        assert_eq!(s.transport().card().pin1_tries(), 3);
    }

    #[test]
    fn a_card_without_bootstrap_objects_says_so() {
        let mut p = profile(false, false);
        p.lwm2m_bootstrap = None;
        p.dm_bootstrap = None;
        let mut s = session(&p);
        let e = uicc::read_lwm2m_bootstrap(&mut s).unwrap_err();
        assert!(matches!(e, UiccError::NoDataObject { .. }), "{e:?}");
    }

    #[test]
    fn profile_json_builds_a_card() {
        let p = ProfileJson::parse(
            r#"{"iccid": "98103254769810325476", "t0": true, "lwm2m_size": 128,
                "lwm2m_bootstrap": {"objects": [{"id": 1, "instances": [{"id": 0, "resources": [
                    {"id": 1, "value": {"type": "integer", "value": 3600}}]}]}]}}"#,
        )
        .unwrap()
        .to_profile()
        .unwrap();
        let mut s = session(&p);
        let f = uicc::read_lwm2m_bootstrap(&mut s).unwrap();
        assert_eq!(
            f.entries(),
            vec![("/1/0/1".to_string(), Value::Integer(3600))]
        );
        let e = ProfileJson::parse(r#"{"iccid": "98", "lwm2m_entry": "x"}"#)
            .unwrap()
            .to_profile()
            .unwrap_err();
        assert!(e.to_string().contains("lwm2m_entry"), "{e}");
        assert!(ProfileJson::parse(r#"{"iccid": "98", "typo": 1}"#).is_err());
        let card = ProfileJson::parse(
            r#"{"iccid": "98103254769810325476", "dm_bootstrap_hex": "03016A00",
                "pin1": {"value": "2468", "protect": ["dm"]}}"#,
        )
        .unwrap()
        .to_card()
        .unwrap();
        let mut s = Session::new(VirtualCardTransport::new(card, "UICC"));
        let e = uicc::read_dm_bootstrap_raw(&mut s).unwrap_err();
        assert!(matches!(e, UiccError::PinRequired { .. }), "{e:?}");
        for bad in [
            r#"{"iccid": "98", "pin1": {"value": "12"}}"#,
            r#"{"iccid": "98", "pin1": {"value": "1234", "protect": ["x"]}}"#,
        ] {
            let e = ProfileJson::parse(bad).unwrap().pin1().unwrap_err();
            assert!(e.to_string().contains("pin1."), "{e}");
        }
    }

    #[test]
    fn profile_problems_carry_their_data_and_read_as_before() {
        let field = |json: &str| match ProfileJson::parse(json).and_then(|p| p.to_card()) {
            Err(ProfileError::Field { field, problem }) => (field, problem),
            other => panic!("{other:?}"),
        };
        let (f, p) = field(r#"{"iccid": "98", "adm1_hex": "0102"}"#);
        assert_eq!(
            (f, &p),
            (
                "adm1_hex",
                &ProfileProblem::KeyLength {
                    given: 2,
                    expected: 8
                }
            )
        );
        assert_eq!(p.to_string(), "2 bytes, 8 expected");
        let (f, p) = field(r#"{"iccid": "9G"}"#);
        assert_eq!(f, "iccid");
        assert_eq!(
            p,
            ProfileProblem::NotHex(hex::FromHexError::InvalidHexCharacter { c: 'G', index: 1 })
        );
        assert_eq!(
            p.to_string(),
            "not hex: Invalid character 'G' at position 1"
        );
        let (f, p) = field(r#"{"iccid": "98", "lwm2m_size": 40000}"#);
        assert_eq!(
            (f, &p),
            ("lwm2m_size", &ProfileProblem::SizeOutOfRange(40000))
        );
        let e = ProfileError::Field {
            field: f,
            problem: p,
        };
        assert_eq!(
            e.to_string(),
            "UICC profile: lwm2m_size: 40000 is not between 1 and 32768"
        );
        let (f, p) = field(r#"{"iccid": "98", "pin1": {"value": "1234", "protect": ["x"]}}"#);
        assert_eq!(f, "pin1.protect");
        assert_eq!(p.to_string(), "'x' is neither 'lwm2m' nor 'dm'");
        assert_eq!(
            ProfileProblem::NotAnEntryForm("x".into()).to_string(),
            "'x' is neither 'oid-do' nor 'opaque'"
        );
        assert_eq!(
            ProfileProblem::Pin1Format.to_string(),
            "PIN1 is 4 to 8 digits"
        );
    }
}
