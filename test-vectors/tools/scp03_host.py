#!/usr/bin/env python3
"""An independent SCP03 host (off-card entity), S8 and S16 modes.

Written from GlobalPlatform Card Specification Amendment D (Secure Channel
Protocol '03', v1.1.x / v1.2), NOT from dmsc's Rust code, so that
sim-card/tests/scp03_independent_host.rs can cross-check the card against it.
Only the Python standard library and the `cryptography` package are used.

Sections of Amendment D used (numbered as in v1.1.2, from the author's
reading; where a revision numbers them differently, go by the titles):
  4.1.5    Data Derivation Scheme: NIST SP 800-108 KDF in counter mode with
           AES-CMAC; derivation data = label (11 bytes 00 || derivation
           constant) || 00 (separation indicator) || L (2 bytes, bits) ||
           i (1 byte counter from 01) || context.  Derivation constants:
           00 card cryptogram, 01 host cryptogram, 02 card challenge,
           04 S-ENC, 06 S-MAC, 07 S-RMAC.
  5.1      The "i" parameter: b1 = S16 mode, b5 = pseudo-random card
           challenge, b6 = R-MAC support, b7 = R-ENCRYPTION support.
  6.2.1    AES session keys: S-ENC from Key-ENC, S-MAC and S-RMAC from Key-MAC,
           context = host challenge || card challenge, L = key length.
  6.2.2    Authentication cryptograms and card challenge: card cryptogram
           (constant 00) and host cryptogram (constant 01) = KDF(S-MAC, ...,
           L = 64 (S8) or 128 (S16)); pseudo-random card challenge = KDF(Key-ENC,
           02, context = sequence counter || SD AID, L = 64 / 128).
  6.2.3/6.2.4  Message integrity, C-MAC: MAC chaining value (16 bytes 00 for
           EXTERNAL AUTHENTICATE, then the full 16-byte CMAC of the previous
           command) || CLA (secure messaging indication set) INS P1 P2 ||
           Lc (counting the MAC) || data; the C-MAC is the first 8 (S8) or 16
           (S16) bytes; the chaining value becomes the full CMAC.
  6.2.5    R-MAC: CMAC(S-RMAC, MAC chaining value of the command || response
           data || SW1 SW2), first 8/16 bytes. No R-MAC (and no data) with an
           error status word, i.e. anything but 9000, 62xx, 63xx.
  6.2.6    C-DECRYPTION: AES-CBC with S-ENC, ICV = AES-ECB(S-ENC, 16-byte
           encryption counter), ISO/IEC 9797-1 padding method 2; the counter
           starts at 0 after EXTERNAL AUTHENTICATE and is incremented for every
           command (also those without data, which are not encrypted).
  6.2.7    R-ENCRYPTION: as C-DECRYPTION with ICV = AES-ECB(S-ENC, counter of
           the command with its most significant byte set to 80); data only.
  7.1      INITIALIZE UPDATE response: key diversification data (10) || key
           information (key version, SCP id 03, i) || card challenge (8/16) ||
           card cryptogram (8/16) || [sequence counter (3) if b5 of i].
  7.2      EXTERNAL AUTHENTICATE: CLA 84, INS 82, P1 = security level
           (01 C-MAC, 02 C-DECRYPTION, 10 R-MAC, 20 R-ENCRYPTION), P2 00,
           data = host cryptogram || C-MAC.
The secure messaging indication of CLA is ISO/IEC 7816-4's (bit 04 for the
first interindustry and proprietary classes, bit 20 for the further
interindustry class).  Lc is MACed as it is encoded in the wrapped APDU: one
byte in short APDUs, three (00 Lc1 Lc2) in extended ones; the wrapped APDU is
short when its data and Le fit, extended otherwise.  Le is kept and not MACed.

JSON protocol: one JSON object on stdin, one on stdout; HEX = hex string
(upper or lower case, spaces allowed on input, upper case without spaces on
output).  Exit status 0 when "ok" is true, 1 when false (the reason in
"error"), 2 for unusable input.

  {"op": "open",
   "static_keys": {"enc": HEX, "mac": HEX, "dek": HEX},   AES-128/192/256
   "key_version": INT,          P1 of INITIALIZE UPDATE; if not 0 it must match
   "host_challenge": HEX,       8 bytes (S8) or 16 bytes (S16)
   "initialize_update_response": HEX,   response data without SW1 SW2
   "security_level": INT,       P1 of EXTERNAL AUTHENTICATE, e.g. 51 (= 0x33)
   "sd_aid": HEX,               optional: check the pseudo-random card challenge
   "strict": BOOL,              optional, default true: a failed check (card
                                cryptogram, card challenge) is an error; false
                                reports it in "checks" and goes on
   "commands": [HEX, ...]}      plain C-APDUs, wrapped in this order
  ->
  {"ok": true, "s_mode": 8|16, "i": INT, "key_version": INT,
   "sequence_counter": HEX|null,
   "checks": {"card_cryptogram": BOOL, "card_challenge": BOOL|null},
   "external_authenticate": HEX,
   "session": {"s_enc": HEX, "s_mac": HEX, "s_rmac": HEX, "s_mode": INT,
               "security_level": INT},
   "wrapped": [{"apdu": HEX, "mac_chaining_value": HEX, "counter": INT}, ...]}

  {"op": "unwrap",
   "session": {...as returned by "open"},
   "responses": [{"mac_chaining_value": HEX, "counter": INT,
                  "response": HEX}, ...]}     response = data || SW1 SW2, in
                                              the order of the commands
                                              (a "wrapped" entry plus
                                              "response"; "apdu" is ignored)
  ->
  {"ok": BOOL (all responses ok),
   "responses": [{"ok": true, "data": HEX, "sw": INT}
                 | {"ok": false, "error": STR}, ...]}
"""

import hmac
import json
import sys

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# Derivation constants (Amendment D 4.1.5).
CARD_CRYPTOGRAM = 0x00
HOST_CRYPTOGRAM = 0x01
CARD_CHALLENGE = 0x02
S_ENC = 0x04
S_MAC = 0x06
S_RMAC = 0x07

# Security level bits (7.2).
C_MAC = 0x01
C_DECRYPTION = 0x02
R_MAC = 0x10
R_ENCRYPTION = 0x20
VALID_LEVELS = (0x00, 0x01, 0x03, 0x11, 0x13, 0x33)

# i parameter bits (5.1).
I_S16 = 0x01
I_PSEUDO_RANDOM = 0x10


class Scp03Failure(Exception):
    """A check failed or the data cannot be processed (ok: false)."""


class BadInput(Exception):
    """The request itself is unusable (exit status 2)."""


# --- primitives -------------------------------------------------------------


def aes_cmac(key, data):
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def aes_ecb_block(key, block):
    e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return e.update(block) + e.finalize()


def aes_cbc(key, iv, data, decrypt=False):
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def kdf(key, constant, context, out_bits):
    """Amendment D 4.1.5: SP 800-108 counter mode, PRF = AES-CMAC."""
    label = bytes(11) + bytes([constant])
    out = b""
    counter = 1
    while len(out) * 8 < out_bits:
        data = label + b"\x00" + out_bits.to_bytes(2, "big") + bytes([counter]) + context
        out += aes_cmac(key, data)
        counter += 1
    return out[: out_bits // 8]


def pad_m2(data):
    """ISO/IEC 9797-1 padding method 2 to a multiple of 16 bytes."""
    padded = data + b"\x80"
    return padded + bytes(-len(padded) % 16)


def unpad_m2(data):
    stripped = data.rstrip(b"\x00")
    if not stripped.endswith(b"\x80") or len(data) - len(stripped) >= 16:
        raise Scp03Failure("bad ISO/IEC 9797-1 method 2 padding")
    return stripped[:-1]


def counter_block(counter, response=False):
    block = bytearray(counter.to_bytes(16, "big"))
    if response:
        block[0] = 0x80
    return bytes(block)


# --- APDUs ------------------------------------------------------------------


def parse_apdu(apdu):
    """ISO/IEC 7816-4 cases 1-4, short or extended -> (header, data, le)."""
    if len(apdu) < 4:
        raise BadInput("command APDU shorter than 4 bytes")
    header, body = apdu[:4], apdu[4:]
    if not body:
        return header, b"", None
    if len(body) == 1:
        return header, b"", body[0] or 256
    if body[0] != 0:
        nc = body[0]
        rest = body[1 + nc :]
        if len(body) < 1 + nc or len(rest) > 1:
            raise BadInput("short APDU: Lc does not match")
        return header, body[1 : 1 + nc], (rest[0] or 256) if rest else None
    if len(body) == 3:
        return header, b"", int.from_bytes(body[1:3], "big") or 65536
    nc = int.from_bytes(body[1:3], "big")
    rest = body[3 + nc :]
    if nc == 0 or len(body) < 3 + nc or len(rest) not in (0, 2):
        raise BadInput("extended APDU: Lc does not match")
    return header, body[3 : 3 + nc], (int.from_bytes(rest, "big") or 65536) if rest else None


def lc_field(nc, extended):
    if nc == 0:
        return b""
    return b"\x00" + nc.to_bytes(2, "big") if extended else bytes([nc])


def le_field(le, extended, has_data):
    if le is None:
        return b""
    if extended:
        value = (le % 65536).to_bytes(2, "big")
        return value if has_data else b"\x00" + value
    return bytes([le % 256])


def sm_cla(cla):
    """CLA with the secure messaging indication (ISO/IEC 7816-4 5.4.1)."""
    if cla & 0xE0 == 0x40 or cla & 0xE0 == 0x60:  # further interindustry
        return cla | 0x20
    return cla | 0x04


# --- the session --------------------------------------------------------------


class Session:
    def __init__(self, s_enc, s_mac, s_rmac, s_mode, level):
        self.s_enc, self.s_mac, self.s_rmac = s_enc, s_mac, s_rmac
        self.s_mode, self.level = s_mode, level
        self.mcv = bytes(16)
        self.counter = 0

    def to_json(self):
        return {
            "s_enc": hexs(self.s_enc),
            "s_mac": hexs(self.s_mac),
            "s_rmac": hexs(self.s_rmac),
            "s_mode": self.s_mode,
            "security_level": self.level,
        }

    def mac_and_encode(self, header, data, le):
        """Appends the C-MAC (6.2.4) to an already SM-marked command."""
        nc = len(data) + self.s_mode
        if nc > 65535:
            raise Scp03Failure("wrapped command does not fit an extended APDU")
        extended = nc > 255 or (le is not None and le > 256)
        mac_input = self.mcv + header + lc_field(nc, extended) + data
        self.mcv = aes_cmac(self.s_mac, mac_input)
        wrapped_data = data + self.mcv[: self.s_mode]
        return header + lc_field(nc, extended) + wrapped_data + le_field(le, extended, True)

    def wrap(self, apdu):
        header, data, le = parse_apdu(apdu)
        if self.level & C_MAC == 0:
            return {"apdu": hexs(apdu), "mac_chaining_value": hexs(self.mcv), "counter": self.counter}
        if header[0] == 0x84 or sm_cla(header[0]) == header[0]:
            raise BadInput("command already carries the secure messaging indication")
        self.counter += 1  # 6.2.6: for every command, with or without data
        if self.level & C_DECRYPTION and data:
            icv = aes_ecb_block(self.s_enc, counter_block(self.counter))
            data = aes_cbc(self.s_enc, icv, pad_m2(data))
        header = bytes([sm_cla(header[0])]) + header[1:]
        wrapped = self.mac_and_encode(header, data, le)
        return {"apdu": hexs(wrapped), "mac_chaining_value": hexs(self.mcv), "counter": self.counter}

    def unwrap(self, mcv, counter, response):
        if len(response) < 2:
            raise Scp03Failure("response without a status word")
        body, sw = response[:-2], response[-2:]
        sw_int = int.from_bytes(sw, "big")
        if self.level & R_MAC == 0:
            return body, sw_int
        if sw_int != 0x9000 and sw[0] not in (0x62, 0x63):
            if body:
                raise Scp03Failure("data or R-MAC with an error status word")
            return b"", sw_int
        if len(body) < self.s_mode:
            raise Scp03Failure("response too short for an R-MAC")
        data, rmac = body[: -self.s_mode], body[-self.s_mode :]
        expected = aes_cmac(self.s_rmac, mcv + data + sw)[: self.s_mode]
        if not hmac.compare_digest(expected, rmac):
            raise Scp03Failure("R-MAC mismatch")
        if self.level & R_ENCRYPTION and data:
            if len(data) % 16:
                raise Scp03Failure("R-ENCRYPTION data not a multiple of 16 bytes")
            icv = aes_ecb_block(self.s_enc, counter_block(counter, response=True))
            data = unpad_m2(aes_cbc(self.s_enc, icv, data, decrypt=True))
        return data, sw_int


# --- operations ---------------------------------------------------------------


def hexs(b):
    return b.hex().upper()


def unhex(value, what):
    if not isinstance(value, str):
        raise BadInput(f"{what}: expected a hex string")
    try:
        return bytes.fromhex(value.replace(" ", ""))
    except ValueError as e:
        raise BadInput(f"{what}: {e}") from None


def field(req, name, kind=None):
    if name not in req:
        raise BadInput(f"missing field {name!r}")
    value = req[name]
    if kind is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is int):
        raise BadInput(f"field {name!r} has the wrong type")
    return value


def op_open(req):
    keys = field(req, "static_keys", dict)
    key_enc = unhex(field(keys, "enc"), "static_keys.enc")
    key_mac = unhex(field(keys, "mac"), "static_keys.mac")
    key_dek = unhex(field(keys, "dek"), "static_keys.dek")
    if len(key_enc) not in (16, 24, 32) or not len(key_enc) == len(key_mac) == len(key_dek):
        raise BadInput("static keys must be AES keys of one length (16, 24 or 32 bytes)")
    key_version = field(req, "key_version", int)
    host_challenge = unhex(field(req, "host_challenge"), "host_challenge")
    iu = unhex(field(req, "initialize_update_response"), "initialize_update_response")
    level = field(req, "security_level", int)
    if level not in VALID_LEVELS:
        raise BadInput(f"security level {level:02X} is not one of 00 01 03 11 13 33")
    strict = req.get("strict", True)
    commands = [unhex(c, "commands[]") for c in field(req, "commands", list)]

    # 7.1: the INITIALIZE UPDATE response.
    if len(iu) < 13:
        raise Scp03Failure("INITIALIZE UPDATE response too short")
    card_kvn, scp_id, i = iu[10], iu[11], iu[12]
    if scp_id != 0x03:
        raise Scp03Failure(f"card answers for SCP {scp_id:02X}, not 03")
    s = 16 if i & I_S16 else 8
    has_counter = bool(i & I_PSEUDO_RANDOM)
    if len(iu) != 13 + 2 * s + (3 if has_counter else 0):
        raise Scp03Failure(f"INITIALIZE UPDATE response of {len(iu)} bytes does not fit i={i:02X}")
    if len(host_challenge) != s:
        raise Scp03Failure(f"host challenge of {len(host_challenge)} bytes, S{s} needs {s}")
    if key_version not in (0, card_kvn):
        raise Scp03Failure(f"card used key version {card_kvn:02X}, not {key_version:02X}")
    card_challenge = iu[13 : 13 + s]
    card_cryptogram = iu[13 + s : 13 + 2 * s]
    sequence_counter = iu[13 + 2 * s :] if has_counter else None

    checks = {"card_cryptogram": False, "card_challenge": None}
    if has_counter and "sd_aid" in req:
        aid = unhex(req["sd_aid"], "sd_aid")
        expected = kdf(key_enc, CARD_CHALLENGE, sequence_counter + aid, 8 * s)
        checks["card_challenge"] = hmac.compare_digest(expected, card_challenge)

    # 6.2.1 session keys, 6.2.2 cryptograms.
    context = host_challenge + card_challenge
    bits = 8 * len(key_enc)
    s_enc = kdf(key_enc, S_ENC, context, bits)
    s_mac = kdf(key_mac, S_MAC, context, bits)
    s_rmac = kdf(key_mac, S_RMAC, context, bits)
    expected = kdf(s_mac, CARD_CRYPTOGRAM, context, 8 * s)
    checks["card_cryptogram"] = hmac.compare_digest(expected, card_cryptogram)
    if strict:
        if not checks["card_cryptogram"]:
            raise Scp03Failure("card cryptogram mismatch")
        if checks["card_challenge"] is False:
            raise Scp03Failure("card challenge is not the pseudo-random one")
    host_cryptogram = kdf(s_mac, HOST_CRYPTOGRAM, context, 8 * s)

    # 7.2 EXTERNAL AUTHENTICATE, C-MAC from a zero chaining value.
    session = Session(s_enc, s_mac, s_rmac, s, level)
    ext = session.mac_and_encode(bytes([0x84, 0x82, level, 0x00]), host_cryptogram, None)
    wrapped = [session.wrap(c) for c in commands]
    return {
        "ok": True,
        "s_mode": s,
        "i": i,
        "key_version": card_kvn,
        "sequence_counter": hexs(sequence_counter) if sequence_counter is not None else None,
        "checks": checks,
        "external_authenticate": hexs(ext),
        "session": session.to_json(),
        "wrapped": wrapped,
    }


def op_unwrap(req):
    sj = field(req, "session", dict)
    session = Session(
        unhex(field(sj, "s_enc"), "session.s_enc"),
        unhex(field(sj, "s_mac"), "session.s_mac"),
        unhex(field(sj, "s_rmac"), "session.s_rmac"),
        field(sj, "s_mode", int),
        field(sj, "security_level", int),
    )
    if session.s_mode not in (8, 16) or session.level not in VALID_LEVELS:
        raise BadInput("session: bad s_mode or security_level")
    results = []
    for item in field(req, "responses", list):
        if not isinstance(item, dict):
            raise BadInput("responses[]: expected objects")
        mcv = unhex(field(item, "mac_chaining_value"), "mac_chaining_value")
        counter = field(item, "counter", int)
        response = unhex(field(item, "response"), "response")
        try:
            data, sw = session.unwrap(mcv, counter, response)
            results.append({"ok": True, "data": hexs(data), "sw": sw})
        except Scp03Failure as e:
            results.append({"ok": False, "error": str(e)})
    return {"ok": all(r["ok"] for r in results), "responses": results}


def main():
    try:
        try:
            req = json.load(sys.stdin)
        except ValueError as e:
            raise BadInput(f"stdin is not JSON: {e}") from None
        if not isinstance(req, dict):
            raise BadInput("expected a JSON object")
        ops = {"open": op_open, "unwrap": op_unwrap}
        op = req.get("op")
        if op not in ops:
            raise BadInput(f"unknown op {op!r} (open, unwrap)")
        out = ops[op](req)
    except Scp03Failure as e:
        out = {"ok": False, "error": str(e)}
    except BadInput as e:
        json.dump({"ok": False, "error": f"bad input: {e}"}, sys.stdout)
        sys.stdout.write("\n")
        return 2
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
