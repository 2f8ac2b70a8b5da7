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

#[cfg(test)]
mod tests {
    use dmsc_sim_card::uicc::{SimUicc, UiccProfile};

    use super::*;
    use crate::scripted::h;
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

    #[test]
    fn a_card_without_bootstrap_objects_says_so() {
        let mut p = profile(false, false);
        p.lwm2m_bootstrap = None;
        p.dm_bootstrap = None;
        let mut s = session(&p);
        let e = uicc::read_lwm2m_bootstrap(&mut s).unwrap_err();
        assert!(matches!(e, UiccError::NoDataObject { .. }), "{e:?}");
    }
}
