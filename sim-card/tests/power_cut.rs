//! Power-cut campaign: a scenario that touches every object type, the PIN and
//! PUK paths and authority sessions is run once to record every commit, then
//! re-run once per persistent write N with power cut right after write N.
//! After each cut the card is powered up again from what the store kept, and:
//! - the state equals, record for record, the state after the last commit that
//!   completed at or before write N;
//! - per-command atomicity: that state is exactly the card state before the
//!   command in progress or exactly the state after it, both taken from the
//!   reference run without cuts. The one documented exception: VERIFY, CHANGE
//!   REFERENCE DATA and RESET RETRY COUNTER commit the decremented try counter
//!   before comparing, so for them the state of that first commit is accepted too;
//! - self-test: the same campaign over a store that splits every commit in two
//!   (`obj/` records first, the rest second) must fail, naming the cut and the command;
//! - no PIN or PUK try counter is above its value before the command in progress;
//! - the generation counter SELECT reports is the one of that state.
//!
//! `DMSC_POWER_CUT_ROUNDS` scales the scenario (default 12 rounds, > 1000 cuts).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use common::*;
use dmsc_card_model::apdu::{Command, Response};
use dmsc_card_model::commands::*;
use dmsc_card_model::objects::*;
use dmsc_card_model::scp03::StaticKeys;
use dmsc_sim_card::disk::{AfterCrash, Disk, FileId, HeldFile, SimulatedDisk};
use dmsc_sim_card::fault::FaultyStore;
use dmsc_sim_card::file_store::FileStore;
use dmsc_sim_card::store::{PersistentMemory, Records, StoreError};
use dmsc_sim_card::{Card, MemoryStore};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

/// Wraps a store and remembers, for every completed commit, the write index and
/// the committed records (the baseline run).
struct Recorder<S> {
    inner: S,
    writes: u64,
    commits: Vec<(u64, Records)>,
    shadow: Records,
    staged: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl<S: PersistentMemory> PersistentMemory for Recorder<S> {
    fn load(&mut self) -> Result<Records, StoreError> {
        self.inner.load()
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        self.staged.clear();
        self.inner.begin()
    }
    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.writes += 1;
        self.staged.push((key.to_vec(), Some(value.to_vec())));
        self.inner.write(key, value)
    }
    fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.writes += 1;
        self.staged.push((key.to_vec(), None));
        self.inner.remove(key)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        self.writes += 1;
        self.inner.commit()?;
        for (k, v) in self.staged.drain(..) {
            match v {
                Some(v) => self.shadow.insert(k, v),
                None => self.shadow.remove(&k),
            };
        }
        self.commits.push((self.writes, self.shadow.clone()));
        Ok(())
    }
    fn abort(&mut self) {
        self.staged.clear();
        self.inner.abort()
    }
}

/// Which deliberately broken store the campaign runs over (self-tests).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Broken {
    None,
    SplitCommit,
    ForgetGeneration,
}

/// A deliberately broken store for the self-test: when `split` is set, each
/// commit becomes two (records under `obj/` first, everything else second).
struct Split<S> {
    inner: S,
    split: bool,
    /// Another broken variant: every write of `meta` (generation counter) is dropped.
    forget_meta: bool,
    staged: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl<S: PersistentMemory> Split<S> {
    fn new(inner: S, mode: Broken) -> Self {
        Split {
            inner,
            split: mode == Broken::SplitCommit,
            forget_meta: mode == Broken::ForgetGeneration,
            staged: Vec::new(),
        }
    }
    fn flush(&mut self, objects: bool) -> Result<(), StoreError> {
        let part: Vec<_> = self
            .staged
            .iter()
            .filter(|(k, _)| k.starts_with(b"obj/") == objects)
            .cloned()
            .collect();
        if part.is_empty() {
            return Ok(());
        }
        self.inner.begin()?;
        for (k, v) in part {
            match v {
                Some(v) => self.inner.write(&k, &v)?,
                None => self.inner.remove(&k)?,
            }
        }
        self.inner.commit()
    }
}

impl<S: PersistentMemory> PersistentMemory for Split<S> {
    fn load(&mut self) -> Result<Records, StoreError> {
        self.inner.load()
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        self.staged.clear();
        if self.split {
            Ok(())
        } else {
            self.inner.begin()
        }
    }
    fn write(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if self.forget_meta && key == b"meta" {
            return Ok(());
        }
        if self.split {
            self.staged.push((key.to_vec(), Some(value.to_vec())));
            Ok(())
        } else {
            self.inner.write(key, value)
        }
    }
    fn remove(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if self.split {
            self.staged.push((key.to_vec(), None));
            Ok(())
        } else {
            self.inner.remove(key)
        }
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        if self.split {
            self.flush(true)?;
            let r = self.flush(false);
            self.staged.clear();
            r
        } else {
            self.inner.commit()
        }
    }
    fn abort(&mut self) {
        self.staged.clear();
        self.inner.abort()
    }
}

/// The card as the scenario drives it; `None` answers mean the card went mute.
struct Driver<'a, S: PersistentMemory> {
    card: &'a mut Card<S, ChaCha20Rng>,
    /// Tries left (PIN, PUK) before each command, for the no-regained-try rule.
    tries_before: Vec<(u8, u8)>,
    /// Tries left after each completed command.
    tries_after: Vec<(u8, u8)>,
    /// Per command: INS byte, card state before it, card state after it (if answered).
    states: Vec<CommandStates>,
    host: Option<Host>,
}

/// The INS byte of a command and the card's records before and after it.
#[derive(Clone)]
struct CommandStates {
    ins: u8,
    before: Records,
    after: Option<Records>,
}

impl<S: PersistentMemory> Driver<'_, S> {
    fn raw(&mut self, cmd: &Command) -> Option<Response> {
        self.tries_before.push(self.card.pin_tries());
        let apdu = cmd.to_bytes().ok()?;
        self.states.push(CommandStates {
            ins: apdu.get(1).copied().unwrap_or(0),
            before: self.card.records().clone(),
            after: None,
        });
        let bytes = self.card.process(&apdu);
        let rsp = Response::from_bytes(&bytes).ok();
        if rsp.is_some() {
            self.tries_after.push(self.card.pin_tries());
            if let Some(last) = self.states.last_mut() {
                last.after = Some(self.card.records().clone());
            }
        }
        rsp
    }

    fn plain(&mut self, req: &Request) -> Option<u16> {
        self.host = None;
        Some(self.raw(&req.to_command())?.sw)
    }

    fn secure(&mut self, req: &Request) -> Option<u16> {
        let mut host = self.host.take()?;
        let wrapped = host.channel.wrap_command(&req.to_command()).ok()?;
        let rsp = self.raw(&wrapped)?;
        let sw = host.channel.unwrap_response(&rsp).ok()?.sw;
        self.host = Some(host);
        Some(sw)
    }

    /// Opens a session; with `tamper` the host cryptogram is altered so the card refuses it.
    fn open(&mut self, kvn: u8, keys: &StaticKeys, tamper: bool) -> Option<u16> {
        let challenge = [0x5A; 8];
        let rsp = self.raw(&dmsc_card_model::scp03::initialize_update(kvn, &challenge).ok()?)?;
        if rsp.sw != 0x9000 {
            return Some(rsp.sw);
        }
        let iu = dmsc_card_model::scp03::InitializeUpdateResponse::decode(&rsp.data).ok()?;
        let level = dmsc_card_model::scp03::SecurityLevel::new(0x33).ok()?;
        let (channel, mut ext) =
            dmsc_card_model::scp03::SecureChannel::host_authenticate(keys, &challenge, &iu, level)
                .ok()?;
        if tamper {
            ext.data[0] ^= 0x01;
        }
        let rsp = self.raw(&ext)?;
        if rsp.sw == 0x9000 {
            self.host = Some(Host { channel });
        }
        Some(rsp.sw)
    }
}

fn approver_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32].into()).unwrap()
}

fn pin(s: &str) -> Pin {
    Pin::new(s.as_bytes()).unwrap()
}

fn expect(got: Option<u16>, want: u16, what: &str) -> Option<()> {
    let got = got?;
    assert_eq!(got, want, "{what}: SW {got:04X}, expected {want:04X}");
    Some(())
}

/// One round of the scenario; returns `None` as soon as the card goes mute.
fn round<S: PersistentMemory>(d: &mut Driver<'_, S>, r: u8) -> Option<()> {
    let select = Request::Select { aid: AID.to_vec() };
    expect(d.plain(&select), 0x9000, "select")?;
    // PIN paths: wrong, right, change and back, block, unblock (wrong PUK first).
    let verify = |p: &str| Request::Verify {
        reference: PIN_REF_USER,
        pin: Some(pin(p)),
    };
    expect(d.plain(&verify("0000")), 0x63C2, "wrong PIN")?;
    expect(d.plain(&verify("123456")), 0x9000, "right PIN")?;
    expect(
        d.plain(&Request::ChangePin {
            old: pin("123456"),
            new: pin("24682468"),
        }),
        0x9000,
        "change PIN",
    )?;
    expect(
        d.plain(&Request::ChangePin {
            old: pin("24682468"),
            new: pin("123456"),
        }),
        0x9000,
        "change back",
    )?;
    for left in [0x63C2, 0x63C1, 0x6983] {
        expect(d.plain(&verify("9999")), left, "block PIN")?;
    }
    expect(d.plain(&verify("123456")), 0x6983, "blocked")?;
    expect(
        d.plain(&Request::ResetRetryCounter {
            puk: pin("87654321"),
            new: pin("123456"),
        }),
        0x63C9,
        "wrong PUK",
    )?;
    expect(
        d.plain(&Request::ResetRetryCounter {
            puk: pin("12345678"),
            new: pin("123456"),
        }),
        0x9000,
        "unblock",
    )?;
    // An authority failure, then a rights failure, both persisted.
    expect(
        d.open(0x31, &keys_for(0x31), true),
        0x6982,
        "forged host cryptogram",
    )?;
    let mo = |n: u8, size: usize| Request::PutObject {
        object: ObjectRef::Mo(format!("./Vendor/Cfg{n}")),
        value: ObjectValue::Mo(MoRecord {
            mo_type: "urn:x-dmsc:cfg".into(),
            version: 0,
            content: vec![n; size],
        }),
        acl: None,
    };
    expect(d.plain(&mo(0, 10)), 0x6982, "unauthenticated put")?;
    // Authority session: every object type.
    expect(d.open(0x30, &keys_for(0x30), false), 0x9000, "SCP ServerA")?;
    expect(
        d.secure(&mo(r, 1500 + r as usize * 100)),
        0x9000,
        "create MO",
    )?;
    expect(d.secure(&mo(r, 700)), 0x9000, "replace MO")?;
    expect(d.secure(&mo(r.wrapping_add(100), 300)), 0x9000, "second MO")?;
    let policy = Request::PutObject {
        object: ObjectRef::Policy,
        value: ObjectValue::Policy(vec![r; 600]),
        acl: None,
    };
    expect(d.secure(&policy), 0x9000, "policy")?;
    let bootstrap = Request::PutObject {
        object: ObjectRef::BootstrapKey(1),
        value: ObjectValue::BootstrapKey(BootstrapKeyValue {
            algorithm: MacAlgorithm::HmacSha256,
            key: Some(Zeroizing::new(vec![r; 32])),
        }),
        acl: None,
    };
    expect(d.secure(&bootstrap), 0x9000, "bootstrap key")?;
    for (name, seed) in [("maintainer", 1u8), ("owner", 2u8)] {
        let point = approver_key(seed)
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let put = Request::PutObject {
            object: ObjectRef::Approver(name.into()),
            value: ObjectValue::Approver(point),
            acl: None,
        };
        expect(d.secure(&put), 0x9000, "approver")?;
    }
    let rule = Request::PutObject {
        object: ObjectRef::ApprovalRule,
        value: ObjectValue::ApprovalRule(ApprovalRule {
            required: vec!["maintainer".into(), "owner".into()],
            user_consent_needs_pin: true,
        }),
        acl: None,
    };
    expect(d.secure(&rule), 0x9000, "rule")?;
    let acl = Acl::parse("Get=*&Replace=ServerA+ServerB&Delete=ServerA").ok()?;
    expect(
        d.secure(&Request::SetAcl {
            object: ObjectRef::Policy,
            acl,
        }),
        0x9000,
        "set ACL",
    )?;
    let config = ObjectValue::Card(CardConfig {
        failure_limit: 4 + r % 3,
        used_memory: 0,
        total_memory: 0,
    });
    expect(
        d.secure(&Request::PutObject {
            object: ObjectRef::Card,
            value: config,
            acl: None,
        }),
        0x9000,
        "config",
    )?;
    expect(
        d.secure(&Request::DeleteObject {
            object: ObjectRef::Mo(format!("./Vendor/Cfg{}", r.wrapping_add(100))),
        }),
        0x9000,
        "delete MO",
    )?;
    // Device side: bootstrap MAC checks, approval, install confirmation.
    expect(d.plain(&select), 0x9000, "select")?;
    expect(d.plain(&Request::SelectMacKey { key_id: 1 }), 0x9000, "MSE")?;
    let packet = vec![r; 2000];
    let mac = {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&[r; 32]).ok()?;
        m.update(&packet);
        m.finalize().into_bytes().to_vec()
    };
    expect(
        d.plain(&Request::VerifyMac {
            data: packet.clone(),
            mac: vec![0; 32],
        }),
        0x6300,
        "bad MAC",
    )?;
    expect(
        d.plain(&Request::VerifyMac { data: packet, mac }),
        0x9000,
        "good MAC",
    )?;
    let package = PackageId {
        digest: [r; 32],
        version: Version(vec![1, r as u32 + 1]),
        device_class: "gateway".into(),
    };
    let sign = |name: &str, seed: u8| {
        let sig: Signature = approver_key(seed).sign(&package.statement(name).to_signed_bytes());
        Approval {
            approver: name.into(),
            signature: sig.to_der().as_bytes().to_vec(),
        }
    };
    let check = Request::CheckApproval {
        package: package.clone(),
        approvals: vec![sign("maintainer", 1), sign("owner", 2)],
    };
    expect(d.plain(&check), 0x9000, "approval")?;
    expect(
        d.plain(&Request::ConfirmInstalled {
            package: package.clone(),
        }),
        0x9000,
        "confirm installed",
    )?;
    let old = PackageId {
        digest: [0xEE; 32],
        version: Version(vec![0, 1]),
        device_class: "gateway".into(),
    };
    let sig_old: Signature = approver_key(1).sign(&old.statement("maintainer").to_signed_bytes());
    let refused = Request::CheckApproval {
        package: old,
        approvals: vec![Approval {
            approver: "maintainer".into(),
            signature: sig_old.to_bytes().to_vec(),
        }],
    };
    expect(d.plain(&refused), 0x9000, "refused approval (answered)")?;
    // ServerA removes one approver again.
    expect(d.open(0x30, &keys_for(0x30), false), 0x9000, "SCP ServerA")?;
    // Authority key sets: PUT KEY add, rotate, then DELETE.
    let new_keys = StaticKeys::new(&[r; 16], &[r ^ 0x55; 16], &[r ^ 0xAA; 16]).ok()?;
    let add = PutKey::new(0, 0x50 + r, &new_keys, &ADMIN_KEYS, Some(format!("Ops{r}"))).ok()?;
    expect(d.secure(&Request::PutKey(add)), 0x9000, "PUT KEY add")?;
    let rotated = StaticKeys::new(&[r ^ 0x0F; 32], &[r ^ 0xF0; 32], &[r ^ 0x3C; 32]).ok()?;
    let rotate = PutKey::new(0x50 + r, 0x70 + r, &rotated, &ADMIN_KEYS, None).ok()?;
    expect(d.secure(&Request::PutKey(rotate)), 0x9000, "PUT KEY rotate")?;
    expect(
        d.secure(&Request::DeleteObject {
            object: ObjectRef::Authority(0x70 + r),
        }),
        0x9000,
        "remove authority",
    )?;
    expect(
        d.secure(&Request::DeleteObject {
            object: ObjectRef::Approver("owner".into()),
        }),
        0x9000,
        "delete approver",
    )?;
    Some(())
}

fn rounds() -> u8 {
    std::env::var("DMSC_POWER_CUT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

/// Tries (PIN, PUK) before and after each command the scenario sent.
#[derive(Default)]
struct Tries {
    before: Vec<(u8, u8)>,
    after: Vec<(u8, u8)>,
    states: Vec<CommandStates>,
}

/// Powers the card up from `store` and runs round `r`; `None` if power was lost.
fn run_round<S: PersistentMemory>(store: S, r: u8, tries: &mut Tries) -> Option<()> {
    let mut card = Card::power_up(store, rng(4)).expect("power-up before the round");
    let mut d = Driver {
        card: &mut card,
        tries_before: Vec::new(),
        tries_after: Vec::new(),
        states: Vec::new(),
        host: None,
    };
    let result = round(&mut d, r);
    tries.before = d.tries_before;
    tries.after = d.tries_after;
    tries.states = d.states;
    result
}

/// The checks after a cut during the last command of `cut_run`, against the
/// reference run `reference`; `at` names the cut ("cut 17 of 2243 (round 3").
/// - Per-command atomicity: the recovered state is exactly the state before
///   the command or exactly the state after it. Only VERIFY, CHANGE REFERENCE
///   DATA and RESET RETRY COUNTER may show their first commit: the state
///   before with only the PIN or PUK record changed (try counter decremented,
///   not yet compared).
/// - No try counter is above its value before the command, unless the command
///   proved the right PIN/PUK (and so restores the counter by design).
/// - The generation SELECT reports is the recovered state's.
fn check_recovered<S: PersistentMemory>(
    at: &str,
    reference: &Tries,
    cut_run: &Tries,
    recovered: &mut Card<S, ChaCha20Rng>,
) -> Result<(), String> {
    let k = cut_run.before.len() - 1;
    let cmd = &reference.states[k];
    let got = recovered.records().clone();
    let atomic = got == cmd.before || cmd.after.as_ref() == Some(&got);
    let try_commit = matches!(cmd.ins, 0x20 | 0x24 | 0x2C)
        && differing_keys(&cmd.before, &got)
            .iter()
            .all(|key| key.as_slice() == b"pin" || key.as_slice() == b"puk");
    if !(atomic || try_commit) {
        return Err(format!(
            "{at}, command #{k}, INS {:02X}): the recovered state is neither the state \
             before the command nor the state after it (records differing from before: {})",
            cmd.ins,
            differing_keys(&cmd.before, &got)
                .iter()
                .map(|k| k.escape_ascii().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let (pin_now, puk_now) = pin_tries_of(&got);
    let (pin_before, puk_before) = cut_run.before[k];
    let (pin_after, puk_after) = reference.after[k];
    if pin_now > pin_before && pin_after <= pin_before {
        return Err(format!("{at}, command #{k}): PIN try regained"));
    }
    if puk_now > puk_before && puk_after <= puk_before {
        return Err(format!("{at}, command #{k}): PUK try regained"));
    }
    let generation = dmsc_sim_card::state::State::from_records(&got)
        .map_err(|e| format!("{at}, command #{k}): recovered state unreadable: {e}"))?
        .generation;
    let rsp = select(recovered);
    assert_eq!(rsp.sw, 0x9000);
    let reported = SelectInfo::decode(&rsp.data).unwrap().generation;
    if reported != generation {
        return Err(format!(
            "{at}, command #{k}): SELECT reports generation {reported}, the state holds {generation}"
        ));
    }
    Ok(())
}

/// The keys whose records differ between `a` and `b`.
fn differing_keys(a: &Records, b: &Records) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    keys.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
    keys
}

fn pin_tries_of(records: &Records) -> (u8, u8) {
    let state = dmsc_sim_card::state::State::from_records(records).unwrap();
    (state.pin.tries_left, state.puk.tries_left)
}

/// What the baseline run of one round recorded.
struct RoundLog {
    start: Records,
    /// Writes before the round started.
    writes_before: u64,
    writes: u64,
    /// (write index within the round, records) after every commit.
    commits: Vec<(u64, Records)>,
    tries: Tries,
}

#[test]
fn power_cut_at_every_persistent_write() {
    let exercised = campaign(rounds(), Broken::None).unwrap_or_else(|e| panic!("{e}"));
    // Straight to stderr, past the test harness's capture, so every run shows it.
    let _ = writeln!(
        std::io::stderr(),
        "power-cut points exercised (MemoryStore): {exercised}"
    );
    if rounds() >= 12 {
        assert!(exercised >= 1000, "only {exercised} power-cut points");
    }
}

/// Self-test: a store that splits every commit in two must make the campaign fail.
#[test]
fn campaign_catches_a_split_commit() {
    let err = campaign(1, Broken::SplitCommit).expect_err("the campaign accepted a split commit");
    assert!(err.contains("command #") && err.contains("cut "), "{err}");
    let _ = writeln!(std::io::stderr(), "split commit caught: {err}");
}

/// Self-test: a store that drops the generation (`meta`) writes must make the campaign fail.
#[test]
fn campaign_catches_a_forgotten_generation() {
    let err = campaign(1, Broken::ForgetGeneration)
        .expect_err("the campaign accepted a commit without the generation");
    assert!(err.contains("command #") && err.contains("cut "), "{err}");
    let _ = writeln!(std::io::stderr(), "forgotten generation caught: {err}");
}

/// Runs the campaign over `rounds` rounds; the per-command atomicity failure is
/// returned as an error naming the cut and the command.
fn campaign(rounds: u8, split: Broken) -> Result<u64, String> {
    let mut base = MemoryStore::new();
    drop(Card::initialize(&mut base, rng(3), init_params()).unwrap());

    // Baseline: each round starts with a power-up from the state the previous
    // round left, so any round can be replayed on its own.
    let mut logs = Vec::new();
    let mut state = base.records().clone();
    let mut total = 0u64;
    for r in 0..rounds {
        let mut recorder = Recorder {
            inner: MemoryStore::with_records(state.clone()),
            writes: 0,
            commits: Vec::new(),
            shadow: state.clone(),
            staged: Vec::new(),
        };
        let mut tries = Tries::default();
        run_round(Split::new(&mut recorder, split), r, &mut tries)
            .expect("the baseline round runs without a cut");
        logs.push(RoundLog {
            start: state,
            writes_before: total,
            writes: recorder.writes,
            commits: recorder.commits,
            tries,
        });
        total += recorder.writes;
        state = recorder.shadow;
    }
    let commits: usize = logs.iter().map(|l| l.commits.len()).sum();
    assert!(commits > 40, "scenario too small: {commits} commits");

    let mut exercised = 0u64;
    for (r, log) in logs.iter().enumerate() {
        for n in 1..=log.writes {
            let cut = log.writes_before + n;
            let mut store = MemoryStore::with_records(log.start.clone());
            let mut tries = Tries::default();
            let finished = run_round(
                Split::new(FaultyStore::new(&mut store, Some(n)), split),
                r as u8,
                &mut tries,
            );
            assert!(
                finished.is_none(),
                "cut {cut}: the scenario did not notice the power loss"
            );
            // Expected: the records after the last commit completed at or before write n.
            let expected = log
                .commits
                .iter()
                .rev()
                .find(|(w, _)| *w <= n)
                .map(|(_, rec)| rec)
                .unwrap_or(&log.start);
            let mut recovered = Card::power_up(&mut store, rng(5))
                .map_err(|e| format!("cut {cut}: power-up failed: {e}"))?;
            assert!(
                recovered.records() == expected,
                "cut {cut} of {total}: the recovered state is not the state of the last commit"
            );
            let at = format!("cut {cut} of {total} (round {r}");
            check_recovered(&at, &log.tries, &tries, &mut recovered)?;
            exercised += 1;
        }
    }
    Ok(exercised)
}

/// How the file layer under the file store is broken (self-tests).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BrokenDisk {
    None,
    /// The temporary file is synced only after it was renamed over the state.
    RenameBeforeSync,
    /// The directory is never synced.
    NoDirectorySync,
}

/// A simulated disk, driven as a deliberately broken store would drive it.
struct CampaignDisk {
    inner: SimulatedDisk,
    broken: BrokenDisk,
    deferred_sync: Option<PathBuf>,
}

impl Disk for CampaignDisk {
    fn resolve(&mut self, path: &Path) -> io::Result<PathBuf> {
        self.inner.resolve(path)
    }
    fn lock(&mut self, path: &Path) -> io::Result<HeldFile> {
        self.inner.lock(path)
    }
    fn held(&mut self) -> io::Result<HeldFile> {
        self.inner.held()
    }
    fn identity(&mut self, path: &Path) -> io::Result<FileId> {
        self.inner.identity(path)
    }
    fn hold_new(&mut self) -> io::Result<()> {
        self.inner.hold_new()
    }
    fn exists(&mut self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn read(&mut self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn create_new(&mut self, path: &Path) -> io::Result<()> {
        self.inner.create_new(path)
    }
    fn write_all(&mut self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.write_all(path, data)
    }
    fn sync_file(&mut self, path: &Path) -> io::Result<()> {
        if self.broken == BrokenDisk::RenameBeforeSync {
            self.deferred_sync = Some(path.to_path_buf());
            return Ok(());
        }
        self.inner.sync_file(path)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)?;
        match self.deferred_sync.take() {
            Some(file) => self.inner.sync_file(&file),
            None => Ok(()),
        }
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        if self.broken == BrokenDisk::NoDirectorySync {
            return Ok(());
        }
        self.inner.sync_dir(dir)
    }
    fn has_lost_power(&self) -> bool {
        self.inner.has_lost_power()
    }
}

const STATE_FILE: &str = "card.state";

/// A file store on a fresh simulated disk holding `records`, its disk then
/// broken as `broken` says and cut after `cut` further operations.
fn file_store_with(
    records: &Records,
    broken: BrokenDisk,
    cut: Option<u64>,
) -> FileStore<CampaignDisk> {
    let disk = CampaignDisk {
        inner: SimulatedDisk::new(),
        broken: BrokenDisk::None,
        deferred_sync: None,
    };
    let mut store = FileStore::create_on(disk, STATE_FILE).expect("create on the simulated disk");
    store.begin().unwrap();
    for (k, v) in records {
        store.write(k, v).unwrap();
    }
    store.commit().unwrap();
    let disk = store.disk_mut();
    disk.broken = broken;
    disk.inner.cut_after(cut);
    store
}

fn file_rounds() -> u8 {
    std::env::var("DMSC_POWER_CUT_FILE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// The campaign over the real file store on a simulated disk: power is cut
/// after every file-system operation of every round (create, write, fsync,
/// rename, directory fsync), and every state the medium may then hold
/// ([`AfterCrash`]) must open and power up as the card before or after the
/// command in progress.
fn file_campaign(rounds: u8, broken: BrokenDisk) -> Result<u64, String> {
    let mut base = MemoryStore::new();
    drop(Card::initialize(&mut base, rng(3), init_params()).unwrap());
    let mut state = base.records().clone();
    let mut exercised = 0u64;
    let mut total = 0u64;
    for r in 0..rounds {
        let mut reference = Tries::default();
        let mut reference_store = file_store_with(&state, broken, None);
        let start_ops = reference_store.disk().inner.ops();
        run_round(&mut reference_store, r, &mut reference)
            .expect("the reference round runs without a cut");
        let ops = reference_store.disk().inner.ops() - start_ops;
        for n in 0..ops {
            let mut store = file_store_with(&state, broken, Some(n));
            let mut tries = Tries::default();
            let finished = run_round(&mut store, r, &mut tries);
            assert!(
                finished.is_none(),
                "cut after operation {n}: the scenario did not notice the power loss"
            );
            for what in AfterCrash::ALL {
                let at = format!("cut after file operation {} of round {r} ({what:?}", n + 1);
                let disk = CampaignDisk {
                    inner: store.disk().inner.after_crash(what),
                    broken: BrokenDisk::None,
                    deferred_sync: None,
                };
                let k = tries.before.len() - 1;
                let mut reopened = FileStore::open_on(disk, STATE_FILE)
                    .map_err(|e| format!("{at}, command #{k}): the state does not open: {e}"))?;
                let mut recovered = Card::power_up(&mut reopened, rng(5))
                    .map_err(|e| format!("{at}, command #{k}): power-up failed: {e}"))?;
                check_recovered(&at, &reference, &tries, &mut recovered)?;
                exercised += 1;
            }
        }
        total += ops;
        state = reference_store.load().expect("the reference store's state");
    }
    let _ = writeln!(std::io::stderr(), "file operations cut: {total}");
    Ok(exercised)
}

#[test]
fn power_cut_at_every_file_operation() {
    let exercised =
        file_campaign(file_rounds(), BrokenDisk::None).unwrap_or_else(|e| panic!("{e}"));
    let _ = writeln!(
        std::io::stderr(),
        "power-cut points exercised (FileStore on a simulated disk, 3 medium states each): {exercised}"
    );
    assert!(exercised >= 300, "only {exercised} power-cut points");
}

/// Self-test: syncing the temporary file only after renaming it over the
/// state must make the file campaign fail.
#[test]
fn file_campaign_catches_a_rename_before_the_fsync() {
    let err = file_campaign(1, BrokenDisk::RenameBeforeSync)
        .expect_err("the campaign accepted a rename before the fsync");
    assert!(
        err.contains("command #") && err.contains("cut after file operation"),
        "{err}"
    );
    let _ = writeln!(std::io::stderr(), "rename before fsync caught: {err}");
}

/// Self-test: a store that never syncs the directory must make the file campaign fail.
#[test]
fn file_campaign_catches_a_missing_directory_sync() {
    let err = file_campaign(1, BrokenDisk::NoDirectorySync)
        .expect_err("the campaign accepted a store that never syncs the directory");
    assert!(
        err.contains("command #") && err.contains("cut after file operation"),
        "{err}"
    );
    let _ = writeln!(std::io::stderr(), "missing directory sync caught: {err}");
}
