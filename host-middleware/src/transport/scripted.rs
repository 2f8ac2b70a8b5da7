//! A test double that replays an APDU transcript: each step names the exact
//! command bytes expected and the response (or transport error) to give back.
//! Any other command fails the test; unconsumed steps fail it on drop.

use std::collections::VecDeque;

use crate::transport::{Transport, TransportError};

/// Hex with optional spaces (and `|` separators for readability) to bytes.
pub(crate) fn h(text: &str) -> Vec<u8> {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '|')
        .collect();
    hex::decode(&clean).unwrap_or_else(|e| panic!("bad hex in transcript {text:?}: {e}"))
}

/// One step of a transcript.
#[derive(Debug)]
pub(crate) enum Step {
    /// The next APDU must be `expect`; the transport answers `reply`.
    Apdu {
        expect: Vec<u8>,
        reply: Result<Vec<u8>, TransportError>,
    },
    /// The next `exclusive` call fails before running its body.
    BeginFails(TransportError),
}

/// Replays a transcript.
pub(crate) struct ScriptedTransport {
    steps: VecDeque<Step>,
    done: usize,
    extended: bool,
    depth: usize,
    /// Number of `exclusive` calls that ran a body.
    pub transactions: usize,
    /// Number of warm resets.
    pub resets: usize,
}

impl ScriptedTransport {
    /// A transport answering from `(command hex, response hex)` pairs.
    pub(crate) fn new(extended: bool, table: &[(&str, &str)]) -> ScriptedTransport {
        let mut t = ScriptedTransport {
            steps: VecDeque::new(),
            done: 0,
            extended,
            depth: 0,
            transactions: 0,
            resets: 0,
        };
        t.push(table);
        t
    }

    /// Appends `(command hex, response hex)` steps.
    pub(crate) fn push(&mut self, table: &[(&str, &str)]) {
        for (cmd, resp) in table {
            self.steps.push_back(Step::Apdu {
                expect: h(cmd),
                reply: Ok(h(resp)),
            });
        }
    }

    /// Appends a step: the command `cmd` gets the transport error `err`.
    pub(crate) fn push_error(&mut self, cmd: &str, err: TransportError) {
        self.steps.push_back(Step::Apdu {
            expect: h(cmd),
            reply: Err(err),
        });
    }

    /// Appends a step: the next transaction cannot begin.
    pub(crate) fn push_begin_error(&mut self, err: TransportError) {
        self.steps.push_back(Step::BeginFails(err));
    }

    /// Panics unless every step was used.
    pub(crate) fn assert_done(&self) {
        assert!(
            self.steps.is_empty(),
            "transcript not finished after {} steps; next: {:?}",
            self.done,
            self.steps.front()
        );
    }
}

impl Drop for ScriptedTransport {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_done();
        }
    }
}

impl Transport for ScriptedTransport {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let step = self.steps.pop_front();
        match step {
            Some(Step::Apdu { expect, reply }) => {
                assert_eq!(
                    hex::encode_upper(apdu),
                    hex::encode_upper(&expect),
                    "unexpected command at step {}",
                    self.done
                );
                self.done += 1;
                reply
            }
            other => panic!(
                "unexpected command {} at step {}; transcript has {other:?}",
                hex::encode_upper(apdu),
                self.done
            ),
        }
    }

    fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x80, 0x80, 0x01, 0x01]
    }

    fn reset(&mut self) -> Result<(), TransportError> {
        self.resets += 1;
        Ok(())
    }

    fn reader_name(&self) -> &str {
        "scripted"
    }

    fn supports_extended(&self) -> bool {
        self.extended
    }

    fn exclusive(
        &mut self,
        body: &mut dyn FnMut(&mut dyn Transport),
    ) -> Result<(), TransportError> {
        if self.depth == 0 {
            if let Some(Step::BeginFails(_)) = self.steps.front() {
                if let Some(Step::BeginFails(e)) = self.steps.pop_front() {
                    self.done += 1;
                    return Err(e);
                }
            }
        }
        self.depth += 1;
        self.transactions += 1;
        body(self);
        self.depth -= 1;
        Ok(())
    }
}
