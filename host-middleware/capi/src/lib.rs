//! The C API of dmsc: `libdmsc.so`, `libdmsc.a` and `include/dmsc.h`, for
//! device software written in C (LwM2M and OMA DM clients, updaters).
//!
//! Each function is a thin wrapper over one `dmsc_host` use case:
//!
//! | C function | `dmsc_host` call |
//! |---|---|
//! | [`dmsc_open_reader`] | [`dmsc_host::PcscContext`] + [`dmsc_host::find_reader`] |
//! | [`dmsc_open_sim`] | [`dmsc_host::transport::sim::FileSimTransport::open`] |
//! | [`dmsc_card_info`] | SELECT ([`dmsc_host::CardCommands::select`]) |
//! | [`dmsc_refresh`] | [`dmsc_host::provisioning::refresh`] |
//! | [`dmsc_firmware_approve`] | [`dmsc_host::firmware::hash_package`], [`dmsc_host::firmware::check_with_card`], [`dmsc_host::firmware::decide`] |
//! | [`dmsc_bootstrap_verify`] | [`dmsc_host::bootstrap::parse_content_type`], [`dmsc_host::bootstrap::verify_and_apply`] |
//!
//! # Why this crate uses `unsafe`
//!
//! The rest of dmsc forbids `unsafe`. This crate is the one place that allows
//! it, because a C caller hands over raw pointers (strings, buffers, handles,
//! out-parameters) that Rust cannot check by type. Every `unsafe` block is
//! one pointer operation, preceded by a `// SAFETY:` comment that names the
//! caller's promise it relies on (documented in `dmsc.h`); NULL is checked
//! before every dereference and reported as an error, and strings are checked
//! for UTF-8. `unsafe_op_in_unsafe_fn` is denied, so no operation is unsafe
//! by accident, and so is `clippy::undocumented_unsafe_blocks`, so no block
//! goes without its `SAFETY` comment.
//!
//! # No panic crosses the boundary
//!
//! Every exported function runs its body under [`std::panic::catch_unwind`]:
//! a panic becomes a `DMSC_ERROR_INTERNAL` error, and a card handle on which
//! a panic happened refuses further use (its session state is unknown).
//!
//! docs/c-api.md describes building, linking, ownership and thread safety.
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]
#![allow(non_camel_case_types)]

use std::ffi::{c_char, CStr, CString};
use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use dmsc_host::bootstrap::{self, BootstrapError, BootstrapOutcome};
use dmsc_host::device_tree::DirectoryTree;
use dmsc_host::firmware::{
    self, ApprovalFile, ConsentPolicy, Decision, Final, FirmwareError, OnUnapproved,
};
use dmsc_host::provisioning::{self, ProvisioningError};
use dmsc_host::transport::sim::FileSimTransport;
use dmsc_host::{CardCommands, HostError, Session, Transport, TransportError};

/// The result of every dmsc call that can fail.
///
/// `DMSC_OK` (0) is success; any other value is the category of the error
/// stored in the `dmsc_error **` out-parameter.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum dmsc_status {
    /// Success.
    DMSC_OK = 0,
    /// A bad argument: a NULL pointer where one is required, a string that is
    /// not UTF-8, a malformed Content-Type header.
    DMSC_ERROR_ARGUMENT = 1,
    /// No PC/SC service, no reader, no card, the card removed, or the
    /// simulated card's state file could not be opened.
    DMSC_ERROR_TRANSPORT = 2,
    /// The card refused a command or answered something unexpected.
    DMSC_ERROR_CARD = 3,
    /// A file could not be read or written, or its content is not valid: the
    /// package, an approval file, the device tree, the bootstrap content.
    DMSC_ERROR_INPUT = 4,
    /// The card did not verify the bootstrap packet's MAC; nothing was written.
    DMSC_ERROR_NOT_VERIFIED = 5,
    /// An internal error (a caught panic). The card handle it happened on
    /// refuses further calls; close it.
    DMSC_ERROR_INTERNAL = 6,
}

use dmsc_status::*;

/// An error: a status and a message. Created by the library, freed by the
/// caller with `dmsc_error_free`.
pub struct dmsc_error {
    status: dmsc_status,
    message: CString,
}

/// A card session (a PC/SC reader or a simulated card). Opaque; created by
/// `dmsc_open_reader` or `dmsc_open_sim`, freed with `dmsc_card_close`.
pub struct dmsc_card {
    session: Session<Box<dyn Transport>>,
    /// Set when a call panicked: the session state is unknown.
    poisoned: bool,
}

/// The card's verdict on a firmware package. Opaque; created by
/// `dmsc_firmware_approve`, freed with `dmsc_verdict_free`.
pub struct dmsc_verdict {
    approved: bool,
    image_ok: bool,
    may_ask_user: bool,
    user_consent_needs_pin: bool,
    reasons: Vec<CString>,
    notes: Vec<CString>,
}

// What dmsc.h promises about threads: a card may move between threads, errors
// and verdicts may be read from several at once.
const _: () = {
    const fn send<T: Send>() {}
    const fn send_sync<T: Send + Sync>() {}
    send::<dmsc_card>();
    send_sync::<dmsc_error>();
    send_sync::<dmsc_verdict>();
};

/// Length of `dmsc_info.card_id`: 32 hex digits and the terminating NUL.
pub const DMSC_CARD_ID_SIZE: usize = 33;

/// What the card reports when selected. Caller-owned: the caller provides
/// the struct, the library fills it in.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct dmsc_info {
    /// The card ID: 32 upper-case hex digits, NUL-terminated.
    pub card_id: [c_char; DMSC_CARD_ID_SIZE],
    /// The generation counter: grows on every committed change of the card.
    pub generation: u64,
    /// Applet version, major part.
    pub applet_major: u8,
    /// Applet version, minor part.
    pub applet_minor: u8,
}

/// An error before it is handed to C.
struct Failure {
    status: dmsc_status,
    message: String,
}

impl Failure {
    fn new(status: dmsc_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    fn argument(message: impl Into<String>) -> Failure {
        Failure::new(DMSC_ERROR_ARGUMENT, message)
    }

    /// A card or transport error, with what was being done.
    fn host(doing: &str, e: &HostError) -> Failure {
        let status = match e {
            HostError::Transport(_) => DMSC_ERROR_TRANSPORT,
            _ => DMSC_ERROR_CARD,
        };
        Failure::new(status, format!("{doing}: {}", chain(e)))
    }
}

/// The error and its sources, joined with ": " (each level once).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        next = s.source();
    }
    text
}

/// Turns text into a C string, replacing NUL bytes (never fails).
fn c_string(text: String) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let cleaned: Vec<u8> = e
            .into_vec()
            .into_iter()
            .map(|b| if b == 0 { b'?' } else { b })
            .collect();
        CString::new(cleaned).unwrap_or_default()
    })
}

/// Stores `f` in `*err` (when `err` is not NULL) and returns its status.
fn report(err: *mut *mut dmsc_error, f: Failure) -> dmsc_status {
    let status = f.status;
    if !err.is_null() {
        let boxed = Box::new(dmsc_error {
            status,
            message: c_string(f.message),
        });
        // SAFETY: `err` is not NULL, and the caller promises (dmsc.h) that a
        // non-NULL `err` points to a writable `dmsc_error *`.
        unsafe { err.write(Box::into_raw(boxed)) };
    }
    status
}

/// The text of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".into());
    format!("internal error in the dmsc library (caught panic: {what})")
}

/// Runs `body`, turning its error or its panic into a status and `*err`.
fn guard(err: *mut *mut dmsc_error, body: impl FnOnce() -> Result<(), Failure>) -> dmsc_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => DMSC_OK,
        Ok(Err(f)) => report(err, f),
        Err(payload) => report(
            err,
            Failure::new(DMSC_ERROR_INTERNAL, panic_message(payload.as_ref())),
        ),
    }
}

/// Like [`guard`] for a call on a card: a panic poisons the card.
fn guard_card(
    card: *mut dmsc_card,
    err: *mut *mut dmsc_error,
    body: impl FnOnce(&mut dmsc_card) -> Result<(), Failure>,
) -> dmsc_status {
    guard(err, || {
        // SAFETY: the caller promises that a non-NULL `card` came from
        // dmsc_open_* and was not closed, and that no other thread uses it
        // during this call (dmsc.h, thread safety).
        let card = unsafe { card.as_mut() }.ok_or_else(|| Failure::argument("card is NULL"))?;
        if card.poisoned {
            return Err(Failure::new(
                DMSC_ERROR_INTERNAL,
                "this card handle is unusable after an internal error; close it and open the card again",
            ));
        }
        match catch_unwind(AssertUnwindSafe(|| body(card))) {
            Ok(r) => r,
            Err(payload) => {
                card.poisoned = true;
                Err(Failure::new(
                    DMSC_ERROR_INTERNAL,
                    panic_message(payload.as_ref()),
                ))
            }
        }
    })
}

/// Runs the body of a function without an error out-parameter: a panic
/// gives `fallback` instead of crossing into C.
fn shielded<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// Reads a NUL-terminated UTF-8 string argument named `what`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::argument(format!("{what} is NULL")));
    }
    // SAFETY: `p` is not NULL and, by this function's contract, points to a
    // NUL-terminated string that stays valid during the call.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|e| {
        Failure::argument(format!(
            "{what} is not UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// Writes `value` to the out-parameter `p` named `what`.
///
/// # Safety
/// `p` is NULL or points to a writable `T`.
unsafe fn put<T>(p: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if p.is_null() {
        return Err(Failure::argument(format!("{what} is NULL")));
    }
    // SAFETY: `p` is not NULL and, by this function's contract, writable.
    unsafe { p.write(value) };
    Ok(())
}

/// Opens a card session on `transport` and selects the dmsc applet.
fn open(transport: Box<dyn Transport>) -> Result<*mut dmsc_card, Failure> {
    let mut session = Session::new(transport);
    let reader = session.transport().reader_name().to_string();
    session
        .select()
        .map_err(|e| Failure::host(&format!("selecting the dmsc applet in {reader}"), &e))?;
    Ok(Box::into_raw(Box::new(dmsc_card {
        session,
        poisoned: false,
    })))
}

fn transport_failure(e: &TransportError) -> Failure {
    Failure::new(DMSC_ERROR_TRANSPORT, e.to_string())
}

/// The library's version, e.g. `"0.1.0"`: a static string, never freed.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn dmsc_version() -> *const c_char {
    shielded(std::ptr::null(), || {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    })
}

/// Opens the card in a PC/SC reader and selects the dmsc applet.
///
/// `reader`: the reader's name, or a case-insensitive part of it matching
/// exactly one reader; NULL picks the only reader there is (an error when
/// there are several). Returns a new card handle (close it with
/// `dmsc_card_close`), or NULL with `*err` set.
///
/// # Safety
/// `reader` is NULL or a NUL-terminated string; `err` is NULL or points to a
/// writable `dmsc_error *`.
#[no_mangle]
pub unsafe extern "C" fn dmsc_open_reader(
    reader: *const c_char,
    err: *mut *mut dmsc_error,
) -> *mut dmsc_card {
    let mut card = std::ptr::null_mut();
    guard(err, || {
        let pattern = if reader.is_null() {
            ""
        } else {
            // SAFETY: `reader` is a NUL-terminated string (this function's contract).
            unsafe { text(reader, "reader") }?
        };
        let mut ctx = dmsc_host::PcscContext::establish().map_err(|e| transport_failure(&e))?;
        let readers = ctx.list_readers().map_err(|e| transport_failure(&e))?;
        let name = dmsc_host::find_reader(&readers, pattern)
            .map_err(|e| transport_failure(&e))?
            .name
            .clone();
        let pcsc = ctx.connect(&name).map_err(|e| {
            Failure::new(
                DMSC_ERROR_TRANSPORT,
                format!("cannot connect to the card in reader '{name}': {e}"),
            )
        })?;
        card = open(Box::new(pcsc))?;
        Ok(())
    });
    card
}

/// Opens the simulated card kept in the state file `state_path` (as made by
/// `dmsc sim init`) and selects the dmsc applet. Every change the card
/// commits is written to the file.
///
/// Returns a new card handle (close it with `dmsc_card_close`), or NULL with
/// `*err` set. The state file is locked while the handle is open: opening it
/// again (or while `dmsc sim serve` runs it) fails with
/// `DMSC_ERROR_TRANSPORT`.
///
/// # Safety
/// `state_path` is NULL or a NUL-terminated string; `err` is NULL or points
/// to a writable `dmsc_error *`.
#[no_mangle]
pub unsafe extern "C" fn dmsc_open_sim(
    state_path: *const c_char,
    err: *mut *mut dmsc_error,
) -> *mut dmsc_card {
    let mut card = std::ptr::null_mut();
    guard(err, || {
        // SAFETY: `state_path` is NULL or a NUL-terminated string (this function's contract).
        let path = unsafe { text(state_path, "state_path") }?;
        let sim = FileSimTransport::open(Path::new(path)).map_err(|e| {
            Failure::new(
                DMSC_ERROR_TRANSPORT,
                format!("cannot open the simulated card {path}: {e}"),
            )
        })?;
        card = open(Box::new(sim))?;
        Ok(())
    });
    card
}

/// Closes a card handle and frees it. NULL is allowed (nothing happens).
/// The handle must not be used afterwards.
///
/// # Safety
/// `card` is NULL or a handle from `dmsc_open_*` not closed before, used by
/// no other thread.
#[no_mangle]
pub unsafe extern "C" fn dmsc_card_close(card: *mut dmsc_card) {
    if card.is_null() {
        return;
    }
    // A panic while dropping the transport is caught; the memory is then
    // leaked rather than unwound into C.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `card` came from Box::into_raw in `open` and is freed once
        // (this function's contract).
        drop(unsafe { Box::from_raw(card) });
    }));
}

/// Selects the dmsc applet and fills `*out` with the card ID (hex) and the
/// generation counter. One APDU exchange.
///
/// # Safety
/// `card` is a live handle; `out` is NULL or points to a writable
/// `dmsc_info`; `err` is NULL or points to a writable `dmsc_error *`.
#[no_mangle]
pub unsafe extern "C" fn dmsc_card_info(
    card: *mut dmsc_card,
    out: *mut dmsc_info,
    err: *mut *mut dmsc_error,
) -> dmsc_status {
    guard_card(card, err, |c| {
        if out.is_null() {
            return Err(Failure::argument("out is NULL"));
        }
        let info = c
            .session
            .select()
            .map_err(|e| Failure::host("selecting the dmsc applet", &e))?;
        let mut card_id = [0 as c_char; DMSC_CARD_ID_SIZE];
        for (dst, src) in card_id
            .iter_mut()
            .zip(hex::encode_upper(info.card_id).bytes())
        {
            *dst = src as c_char;
        }
        let value = dmsc_info {
            card_id,
            generation: info.generation,
            applet_major: info.applet_version.0,
            applet_minor: info.applet_version.1,
        };
        // SAFETY: `out` points to a writable `dmsc_info` (this function's contract).
        unsafe { put(out, value, "out") }
    })
}

/// Refreshes the device tree in the directory `device_dir` (created if
/// missing) from the card's MOs: added, changed and removed MOs are applied
/// in one atomic change. When the card is the one of the last refresh and its
/// generation did not change, this costs one APDU and writes nothing.
///
/// `*changed` is set to true when an MO was added, updated or removed.
///
/// # Safety
/// `card` is a live handle; `device_dir` is a NUL-terminated string;
/// `changed` is NULL or points to a writable `bool`; `err` is NULL or points
/// to a writable `dmsc_error *`.
#[no_mangle]
pub unsafe extern "C" fn dmsc_refresh(
    card: *mut dmsc_card,
    device_dir: *const c_char,
    changed: *mut bool,
    err: *mut *mut dmsc_error,
) -> dmsc_status {
    guard_card(card, err, |c| {
        // SAFETY: `device_dir` is NULL or a NUL-terminated string (this function's contract).
        let dir = unsafe { text(device_dir, "device_dir") }?;
        if changed.is_null() {
            return Err(Failure::argument("changed is NULL"));
        }
        let mut tree = DirectoryTree::open(Path::new(dir)).map_err(|e| {
            Failure::new(
                DMSC_ERROR_INPUT,
                format!("opening the device tree {dir}: {}", chain(&e)),
            )
        })?;
        let report = provisioning::refresh(&mut c.session, &mut tree).map_err(|e| {
            let doing = format!("refreshing {dir} from the card");
            match &e {
                ProvisioningError::Card(h) => Failure::host(&doing, h),
                ProvisioningError::Mo(dmsc_host::mo::MoCardError::Card { source, .. }) => {
                    Failure::host(&doing, source)
                }
                _ => Failure::new(DMSC_ERROR_INPUT, format!("{doing}: {}", chain(&e))),
            }
        })?;
        let any =
            !(report.added.is_empty() && report.updated.is_empty() && report.removed.is_empty());
        // SAFETY: `changed` points to a writable `bool` (this function's contract).
        unsafe { put(changed, any, "changed") }
    })
}

fn firmware_failure(doing: &str, e: &FirmwareError) -> Failure {
    match e {
        FirmwareError::Card(h) => Failure::host(doing, h),
        _ => Failure::new(DMSC_ERROR_INPUT, format!("{doing}: {}", chain(e))),
    }
}

/// Asks the card whether the firmware package at `package_path` is approved.
///
/// The package is streamed through SHA-256 (bounded memory); the approval
/// files (`approval_paths[0..n]`, one per approver, docs/firmware-approval.md)
/// are read, and the card checks CHECK APPROVAL: every approver its rule
/// requires, each signature, and the device class's anti-rollback floor.
///
/// On `DMSC_OK`, `*verdict` receives the card's verdict (approved or refused,
/// with the reasons): read it with `dmsc_verdict_*`, free it with
/// `dmsc_verdict_free`. A refusal is `DMSC_OK` with a refusing verdict; an
/// error means the card could not give a verdict (`*verdict` is then not set).
///
/// # Safety
/// `card` is a live handle; `package_path` is a NUL-terminated string;
/// `approval_paths` points to `n` NUL-terminated strings (NULL when `n` is
/// 0); `verdict` points to a writable `dmsc_verdict *`; `err` is NULL or
/// points to a writable `dmsc_error *`.
#[no_mangle]
pub unsafe extern "C" fn dmsc_firmware_approve(
    card: *mut dmsc_card,
    package_path: *const c_char,
    approval_paths: *const *const c_char,
    n: usize,
    verdict: *mut *mut dmsc_verdict,
    err: *mut *mut dmsc_error,
) -> dmsc_status {
    guard_card(card, err, |c| {
        // SAFETY: `package_path` is NULL or a NUL-terminated string (this function's contract).
        let package = unsafe { text(package_path, "package_path") }?;
        if verdict.is_null() {
            return Err(Failure::argument("verdict is NULL"));
        }
        let paths: &[*const c_char] = match (approval_paths.is_null(), n) {
            (_, 0) => &[],
            (true, _) => return Err(Failure::argument("approval_paths is NULL")),
            // SAFETY: `approval_paths` is not NULL and points to `n` pointers
            // (this function's contract).
            (false, n) => unsafe { std::slice::from_raw_parts(approval_paths, n) },
        };
        let mut files = Vec::with_capacity(paths.len());
        for (i, p) in paths.iter().enumerate() {
            // SAFETY: each entry is NULL or a NUL-terminated string (this function's contract).
            let path = unsafe { text(*p, &format!("approval_paths[{i}]")) }?;
            files.push(
                ApprovalFile::read(Path::new(path))
                    .map_err(|e| firmware_failure("reading the approvals", &e))?,
            );
        }
        // The approvals must name one package before the package is hashed.
        firmware::package_id([0; 32], &files, None, None)
            .map_err(|e| firmware_failure("the approvals", &e))?;
        let f = File::open(package).map_err(|e| {
            Failure::new(
                DMSC_ERROR_INPUT,
                format!("cannot open the package {package}: {e}"),
            )
        })?;
        let hash = firmware::hash_package(f, package, None, &mut |_| {})
            .map_err(|e| firmware_failure("hashing the package", &e))?;
        let id = firmware::package_id(hash.digest, &files, None, None)
            .map_err(|e| firmware_failure("the approvals", &e))?;
        let answer = firmware::check_with_card(&mut c.session, &id, &files)
            .map_err(|e| Failure::host("CHECK APPROVAL", &e))?;
        let mut notes = firmware::digest_mismatches(&hash.digest, &files);
        if let Some(m) = hash.mcuboot.as_ref().filter(|m| !m.ok()) {
            notes.push(format!(
                "the MCUboot image check failed: hash {:?}, signature {:?}{}",
                m.sha256,
                m.signature,
                m.error
                    .as_ref()
                    .map(|e| format!(", {e}"))
                    .unwrap_or_default()
            ));
        }
        // The library's decision rules, for a device that asks its user.
        let asked = firmware::decide(
            &answer,
            hash.mcuboot.as_ref(),
            &ConsentPolicy {
                on_unapproved: OnUnapproved::Ask,
                allow_below_floor: false,
            },
        );
        let v = Box::new(dmsc_verdict {
            approved: answer.approved,
            image_ok: !matches!(
                asked,
                Decision::Refused {
                    cause: Final::McubootFailed,
                    ..
                }
            ),
            may_ask_user: matches!(asked, Decision::AskUser { .. }),
            user_consent_needs_pin: answer.user_consent_needs_pin,
            reasons: answer
                .reasons
                .iter()
                .map(|r| c_string(r.to_string()))
                .collect(),
            notes: notes.into_iter().map(c_string).collect(),
        });
        // SAFETY: `verdict` points to a writable `dmsc_verdict *` (this function's contract).
        unsafe { put(verdict, Box::into_raw(v), "verdict") }
    })
}

/// Reads a verdict argument.
///
/// # Safety
/// `v` is NULL or a live verdict.
unsafe fn verdict_ref<'a>(v: *const dmsc_verdict) -> Option<&'a dmsc_verdict> {
    // SAFETY: `v` is NULL or a live verdict (this function's contract).
    unsafe { v.as_ref() }
}

/// Whether the card approved the package (false for a NULL verdict). This
/// is the card's verdict; check `dmsc_verdict_image_ok` too before
/// installing an MCUboot image.
///
/// # Safety
/// `verdict` is NULL or a live verdict.
#[no_mangle]
pub unsafe extern "C" fn dmsc_verdict_approved(verdict: *const dmsc_verdict) -> bool {
    shielded(false, || {
        // SAFETY: `verdict` is NULL or a live verdict (this function's contract).
        unsafe { verdict_ref(verdict) }.is_some_and(|v| v.approved)
    })
}

/// False when the package is an MCUboot image whose own checks (image hash,
/// signature TLVs) fail: such an image must not be installed whatever the
/// card says (a note says what failed). True for other packages; false for
/// a NULL verdict.
///
/// # Safety
/// `verdict` is NULL or a live verdict.
#[no_mangle]
pub unsafe extern "C" fn dmsc_verdict_image_ok(verdict: *const dmsc_verdict) -> bool {
    shielded(false, || {
        // SAFETY: `verdict` is NULL or a live verdict (this function's contract).
        unsafe { verdict_ref(verdict) }.is_some_and(|v| v.image_ok)
    })
}

/// Whether a package the card refused may still be put to the user, by
/// `dmsc_host::firmware::decide`'s rules: not when the version is below the
/// anti-rollback floor (or the card gave no reason), nor for an MCUboot image
/// failing its own checks. False when approved and for a NULL verdict. A
/// device whose policy is to reject unapproved packages ignores it.
///
/// # Safety
/// `verdict` is NULL or a live verdict.
#[no_mangle]
pub unsafe extern "C" fn dmsc_verdict_may_ask_user(verdict: *const dmsc_verdict) -> bool {
    shielded(false, || {
        // SAFETY: `verdict` is NULL or a live verdict (this function's contract).
        unsafe { verdict_ref(verdict) }.is_some_and(|v| v.may_ask_user)
    })
}

/// Whether the card's rule requires the user to verify the PIN before
/// installing a package the card refused (false for a NULL verdict).
///
/// # Safety
/// `verdict` is NULL or a live verdict.
#[no_mangle]
pub unsafe extern "C" fn dmsc_verdict_user_consent_needs_pin(verdict: *const dmsc_verdict) -> bool {
    shielded(false, || {
        // SAFETY: `verdict` is NULL or a live verdict (this function's contract).
        unsafe { verdict_ref(verdict) }.is_some_and(|v| v.user_consent_needs_pin)
    })
}

/// The number of reasons the card gave for a refusal (0 when approved or
/// for a NULL verdict).
///
/// # Safety
/// `verdict` is NULL or a live verdict.
#[no_mangle]
pub unsafe extern "C" fn dmsc_verdict_reason_count(verdict: *const dmsc_verdict) -> usize {
    shielded(0, || {
        // SAFETY: `verdict` is NULL or a live verdict (this function's contract).
        unsafe { verdict_ref(verdict) }.map_or(0, |v| v.reasons.len())
    })
}

/// Reason `i` (0-based) of a refusal, e.g. "approval of owner missing".
/// The string belongs to the verdict (valid until `dmsc_verdict_free`).
/// NULL when `i` is out of range or the verdict is NULL.
///
/// # Safety
/// `verdict` is NULL or a live verdict.
#[no_mangle]
pub unsafe extern "C" fn dmsc_verdict_reason(
    verdict: *const dmsc_verdict,
    i: usize,
) -> *const c_char {
    shielded(std::ptr::null(), || {
        // SAFETY: `verdict` is NULL or a live verdict (this function's contract).
        unsafe { verdict_ref(verdict) }
            .and_then(|v| v.reasons.get(i))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// The number of notes: explanations found by the device, not by the card
/// (an approval naming another package digest, a failed MCUboot image check).
///
/// # Safety
/// `verdict` is NULL or a live verdict.
#[no_mangle]
pub unsafe extern "C" fn dmsc_verdict_note_count(verdict: *const dmsc_verdict) -> usize {
    shielded(0, || {
        // SAFETY: `verdict` is NULL or a live verdict (this function's contract).
        unsafe { verdict_ref(verdict) }.map_or(0, |v| v.notes.len())
    })
}

/// Note `i` (0-based); owned by the verdict. NULL when out of range.
///
/// # Safety
/// `verdict` is NULL or a live verdict.
#[no_mangle]
pub unsafe extern "C" fn dmsc_verdict_note(
    verdict: *const dmsc_verdict,
    i: usize,
) -> *const c_char {
    shielded(std::ptr::null(), || {
        // SAFETY: `verdict` is NULL or a live verdict (this function's contract).
        unsafe { verdict_ref(verdict) }
            .and_then(|v| v.notes.get(i))
            .map_or(std::ptr::null(), |s| s.as_ptr())
    })
}

/// Frees a verdict. NULL is allowed.
///
/// # Safety
/// `verdict` is NULL or a verdict from `dmsc_firmware_approve` not freed before.
#[no_mangle]
pub unsafe extern "C" fn dmsc_verdict_free(verdict: *mut dmsc_verdict) {
    shielded((), || {
        if !verdict.is_null() {
            // SAFETY: `verdict` came from Box::into_raw and is freed once (this
            // function's contract).
            drop(unsafe { Box::from_raw(verdict) });
        }
    })
}

fn bootstrap_failure(doing: &str, e: &BootstrapError) -> Failure {
    match e {
        BootstrapError::Card(h) => Failure::host(doing, h),
        BootstrapError::BadHeader { .. } | BootstrapError::MacLength { .. } => {
            Failure::argument(format!("{doing}: {}", chain(e)))
        }
        _ => Failure::new(DMSC_ERROR_INPUT, format!("{doing}: {}", chain(e))),
    }
}

/// The bootstrap key the card uses unless told otherwise (as `dmsc bootstrap
/// verify --key-id`).
pub const DMSC_BOOTSTRAP_KEY_ID: u8 = 1;

/// HTTP bootstrap verified by the card: `dmsc_bootstrap_verify_key` with
/// the card's bootstrap key `DMSC_BOOTSTRAP_KEY_ID` (1).
///
/// # Safety
/// As `dmsc_bootstrap_verify_key`.
#[no_mangle]
pub unsafe extern "C" fn dmsc_bootstrap_verify(
    card: *mut dmsc_card,
    content: *const u8,
    len: usize,
    content_type: *const c_char,
    device_dir: *const c_char,
    err: *mut *mut dmsc_error,
) -> dmsc_status {
    // SAFETY: the same contract as this function's.
    unsafe {
        dmsc_bootstrap_verify_key(
            card,
            DMSC_BOOTSTRAP_KEY_ID,
            content,
            len,
            content_type,
            device_dir,
            err,
        )
    }
}

/// HTTP bootstrap verified by the card ("HTTP Bootstrap SC Signature").
///
/// `content`/`len` is the bootstrap packet as received (TNDS, XML or WBXML);
/// `content_type` the HTTP Content-Type header carrying the MAC, e.g.
/// `application/vnd.syncml.dm+xml; SEC=NETWORKID; MAC=<hex>`. The card
/// verifies the MAC with its bootstrap key `key_id` (the key never leaves
/// the card); only then is the content checked and written into the device
/// tree in `device_dir` as device MOs, in one atomic change.
///
/// Call it once the user has agreed to be bootstrapped: the content is
/// applied when the card verifies it. `DMSC_OK`: verified and written.
/// `DMSC_ERROR_NOT_VERIFIED`: the MAC does not verify (the card counts and
/// audits the failure); nothing was written. Any other error: nothing was
/// written.
///
/// # Safety
/// `card` is a live handle; `content` points to `len` readable bytes (NULL
/// only when `len` is 0); `content_type` and `device_dir` are NUL-terminated
/// strings; `err` is NULL or points to a writable `dmsc_error *`.
#[no_mangle]
pub unsafe extern "C" fn dmsc_bootstrap_verify_key(
    card: *mut dmsc_card,
    key_id: u8,
    content: *const u8,
    len: usize,
    content_type: *const c_char,
    device_dir: *const c_char,
    err: *mut *mut dmsc_error,
) -> dmsc_status {
    guard_card(card, err, |c| {
        // SAFETY: NULL or NUL-terminated strings (this function's contract).
        let header = unsafe { text(content_type, "content_type") }?;
        // SAFETY: as above.
        let dir = unsafe { text(device_dir, "device_dir") }?;
        let packet: &[u8] = match (content.is_null(), len) {
            (_, 0) => &[],
            (true, _) => return Err(Failure::argument("content is NULL")),
            // SAFETY: `content` is not NULL and points to `len` readable bytes
            // (this function's contract).
            (false, len) => unsafe { std::slice::from_raw_parts(content, len) },
        };
        let h = bootstrap::parse_content_type(header)
            .map_err(|e| bootstrap_failure("the Content-Type", &e))?;
        let outcome = bootstrap::verify_and_apply(
            &mut c.session,
            key_id,
            h.media_type,
            packet,
            &h.mac,
            Path::new(dir),
            &mut |_| true,
        )
        .map_err(|e| bootstrap_failure("bootstrap", &e))?;
        match outcome {
            BootstrapOutcome::Applied(_) => Ok(()),
            BootstrapOutcome::MacInvalid => Err(Failure::new(
                DMSC_ERROR_NOT_VERIFIED,
                format!(
                    "the card did not verify the bootstrap MAC with key {key_id}; nothing was written"
                ),
            )),
            BootstrapOutcome::Declined => Err(Failure::new(
                DMSC_ERROR_INTERNAL,
                "the bootstrap was declined; nothing was written",
            )),
        }
    })
}

/// The error's message (UTF-8, NUL-terminated), owned by the error: valid
/// until `dmsc_error_free`. For NULL, a static "no error".
///
/// # Safety
/// `err` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn dmsc_error_message(err: *const dmsc_error) -> *const c_char {
    shielded(c"internal error".as_ptr(), || {
        // SAFETY: `err` is NULL or a live error (this function's contract).
        match unsafe { err.as_ref() } {
            Some(e) => e.message.as_ptr(),
            None => c"no error".as_ptr(),
        }
    })
}

/// The error's status (`DMSC_OK` for NULL).
///
/// # Safety
/// `err` is NULL or a live error.
#[no_mangle]
pub unsafe extern "C" fn dmsc_error_status(err: *const dmsc_error) -> dmsc_status {
    shielded(DMSC_ERROR_INTERNAL, || {
        // SAFETY: `err` is NULL or a live error (this function's contract).
        unsafe { err.as_ref() }.map_or(DMSC_OK, |e| e.status)
    })
}

/// Frees an error. NULL is allowed.
///
/// # Safety
/// `err` is NULL or an error from this library not freed before.
#[no_mangle]
pub unsafe extern "C" fn dmsc_error_free(err: *mut dmsc_error) {
    shielded((), || {
        if !err.is_null() {
            // SAFETY: `err` came from Box::into_raw in `report` and is freed once
            // (this function's contract).
            drop(unsafe { Box::from_raw(err) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error_and_poisons_nothing_else() {
        let mut err: *mut dmsc_error = std::ptr::null_mut();
        let status = guard(&mut err, || panic!("boom"));
        assert_eq!(status, DMSC_ERROR_INTERNAL);
        // SAFETY: `err` was just set by `guard`.
        let text = unsafe { CStr::from_ptr(dmsc_error_message(err)) }
            .to_str()
            .unwrap_or_default()
            .to_string();
        assert!(text.contains("boom"), "{text}");
        // SAFETY: freed once.
        unsafe { dmsc_error_free(err) };
    }

    #[test]
    fn null_and_non_utf8_arguments_are_errors() {
        let mut err: *mut dmsc_error = std::ptr::null_mut();
        // SAFETY: NULL path; `err` is writable.
        let card = unsafe { dmsc_open_sim(std::ptr::null(), &mut err) };
        assert!(card.is_null());
        // SAFETY: `err` was set by the call.
        assert_eq!(unsafe { dmsc_error_status(err) }, DMSC_ERROR_ARGUMENT);
        // SAFETY: freed once.
        unsafe { dmsc_error_free(err) };

        let bad = [0xFFu8, 0x41, 0];
        let mut err: *mut dmsc_error = std::ptr::null_mut();
        // SAFETY: `bad` is NUL-terminated.
        let card = unsafe { dmsc_open_sim(bad.as_ptr().cast(), &mut err) };
        assert!(card.is_null());
        // SAFETY: `err` was set by the call.
        let msg = unsafe { CStr::from_ptr(dmsc_error_message(err)) };
        assert!(msg.to_string_lossy().contains("not UTF-8"), "{msg:?}");
        // SAFETY: freed once.
        unsafe { dmsc_error_free(err) };

        // NULL card, NULL err: an error status, nothing written.
        let mut changed = false;
        // SAFETY: NULL card and err are allowed.
        let status = unsafe {
            dmsc_refresh(
                std::ptr::null_mut(),
                c"/nonexistent".as_ptr(),
                &mut changed,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(status, DMSC_ERROR_ARGUMENT);
    }

    #[test]
    fn a_reader_that_does_not_exist_is_a_transport_error() {
        let mut err: *mut dmsc_error = std::ptr::null_mut();
        // SAFETY: a NUL-terminated pattern; `err` is writable.
        let card = unsafe { dmsc_open_reader(c"no such reader: dmsc-capi".as_ptr(), &mut err) };
        assert!(card.is_null());
        // SAFETY: `err` was set by the call.
        assert_eq!(unsafe { dmsc_error_status(err) }, DMSC_ERROR_TRANSPORT);
        // SAFETY: freed once.
        unsafe { dmsc_error_free(err) };
    }

    fn sim_card() -> *mut dmsc_card {
        use dmsc_sim_card::{AuthorityKeys, InitParams};
        let key = zeroize::Zeroizing::new(vec![0x40; 16]);
        let params = InitParams::with_authorities(vec![AuthorityKeys {
            key_version: 0x30,
            name: "ServerA".into(),
            enc: key.clone(),
            mac: key.clone(),
            dek: key,
        }]);
        match dmsc_host::transport::sim::SimTransport::in_memory(params) {
            Ok(t) => open(Box::new(t)).unwrap_or_else(|f| panic!("{}", f.message)),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_panic_on_a_card_makes_the_handle_refuse_further_calls() {
        let card = sim_card();
        let mut info = std::mem::MaybeUninit::<dmsc_info>::uninit();
        // SAFETY: a live card, a writable info, NULL err.
        let status = unsafe { dmsc_card_info(card, info.as_mut_ptr(), std::ptr::null_mut()) };
        assert_eq!(status, DMSC_OK);
        // SAFETY: dmsc_card_info filled it in.
        let info = unsafe { info.assume_init() };
        assert_eq!(info.card_id[32], 0);
        assert!(info.generation >= 1);

        let status = guard_card(card, std::ptr::null_mut(), |_| panic!("in the middle"));
        assert_eq!(status, DMSC_ERROR_INTERNAL);
        let mut err: *mut dmsc_error = std::ptr::null_mut();
        let mut out = info;
        // SAFETY: a live (poisoned) card, writable out and err.
        let status = unsafe { dmsc_card_info(card, &mut out, &mut err) };
        assert_eq!(status, DMSC_ERROR_INTERNAL);
        // SAFETY: `err` was set by the call.
        let msg = unsafe { CStr::from_ptr(dmsc_error_message(err)) };
        assert!(msg.to_string_lossy().contains("unusable"), "{msg:?}");
        // SAFETY: each freed once.
        unsafe {
            dmsc_error_free(err);
            dmsc_card_close(card);
        }
    }

    #[test]
    fn a_state_file_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("card.state");
        let params =
            dmsc_sim_card::InitParams::with_authorities(vec![dmsc_sim_card::AuthorityKeys {
                key_version: 0x30,
                name: "ServerA".into(),
                enc: zeroize::Zeroizing::new(vec![0x40; 16]),
                mac: zeroize::Zeroizing::new(vec![0x40; 16]),
                dek: zeroize::Zeroizing::new(vec![0x40; 16]),
            }]);
        drop(FileSimTransport::create(&path, params).unwrap_or_else(|e| panic!("{e}")));
        let c_path = c_string(path.display().to_string());
        let mut err: *mut dmsc_error = std::ptr::null_mut();
        // SAFETY: a NUL-terminated path, a writable `err`.
        let first = unsafe { dmsc_open_sim(c_path.as_ptr(), &mut err) };
        assert!(!first.is_null());
        // SAFETY: as above.
        let second = unsafe { dmsc_open_sim(c_path.as_ptr(), &mut err) };
        assert!(second.is_null());
        // SAFETY: `err` was set by the second call.
        assert_eq!(unsafe { dmsc_error_status(err) }, DMSC_ERROR_TRANSPORT);
        // SAFETY: each freed once.
        unsafe {
            dmsc_error_free(err);
            dmsc_card_close(first);
        }
        // Closed: the file can be opened again.
        let mut err: *mut dmsc_error = std::ptr::null_mut();
        // SAFETY: as above.
        let again = unsafe { dmsc_open_sim(c_path.as_ptr(), &mut err) };
        assert!(!again.is_null());
        // SAFETY: closed once.
        unsafe { dmsc_card_close(again) };
    }

    #[test]
    fn nul_bytes_in_messages_do_not_lose_the_message() {
        assert_eq!(c_string("a\0b".into()).as_bytes(), b"a?b");
    }
}
