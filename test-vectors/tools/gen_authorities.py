# Computes the PUT KEY values of test-vectors/transcripts/authorities.json with
# Python 'cryptography' (independent of the Rust implementation).
import json
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

def ecb(key, block):
    e = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return e.update(block) + e.finalize()

def cbc0(key, data):
    e = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    return e.update(data) + e.finalize()

def kcv(key):
    return ecb(key, b"\x01" * 16)[:3]

def h(b):
    return " ".join("%02X" % x for x in b)

def put_key(p1, new_kvn, keys, dek, name=None, bad_kcv=False):
    data = bytes([new_kvn])
    for i, k in enumerate(keys):
        enc = cbc0(dek, k)
        c = kcv(k)
        if bad_kcv and i == 1:
            c = bytes([c[0] ^ 1]) + c[1:]
        data += bytes([0x88, 1 + len(enc), len(k)]) + enc + bytes([3]) + c
    if name:
        data += bytes([0xDB, len(name)]) + name.encode()
    return "80 D8 %02X 81 %02X %s 00" % (p1, len(data), h(data))

A = bytes(range(0x40, 0x50))
B_DEK = bytes([0x33]) * 16
C = [bytes([0x50]) * 16, bytes([0x60]) * 16, bytes([0x70]) * 16]
C2 = [bytes([0x5A]) * 16, bytes([0x6A]) * 16, bytes([0x7A]) * 16]
D = [bytes([0x81]) * 16, bytes([0x82]) * 16, bytes([0x83]) * 16]
ACL_C = b"Delete=ServerA&Get=ServerA+ServerC&Replace=ServerA+ServerC"
khex = lambda ks: {"enc": h(ks[0]), "mac": h(ks[1]), "dek": h(ks[2])}
hc = "A1 B2 C3 D4 E5 F6 07 18"
sel = {"note": "SELECT the applet", "apdu": "00 A4 04 00 07 F0 44 4D 53 43 00 01 00", "sw": "9000", "data_prefix": "6F 4D 84 07"}
resp = lambda kvn, ks: h(bytes([kvn]) + b"".join(kcv(k) for k in ks))
info = lambda name, ks: "53 %02X DB %02X %s 9D 01 10 DC 09 %s" % (
    2 + len(name) + 3 + 11, len(name), h(name.encode()), h(b"".join(kcv(k) for k in ks)))

steps = [
    sel,
    {"note": "PUT KEY adding ServerC in plain (no authority session): refused, counted against *",
     "apdu": put_key(0, 0x32, C, A, "ServerC"), "sw": "6982", "records_failure": True},
    {"note": "ServerB opens a session (key version 31)", "open_scp": {"kvn": "31", "level": "33", "host_challenge": hc}},
    {"note": "ServerB may not add a key set: no Add on the card object", "secure": True,
     "apdu": put_key(0, 0x32, C, B_DEK, "ServerC"), "sw": "6982", "records_failure": True},
    {"note": "ServerB may not rotate ServerA's key set (no Replace on authority:48 nor on the card)", "secure": True,
     "apdu": put_key(0x30, 0x30, D, B_DEK), "sw": "6982", "records_failure": True},
    {"note": "ServerA opens a session (key version 30, level 33)", "open_scp": {"kvn": "30", "level": "33", "host_challenge": hc}},
    {"note": "PUT KEY add ServerC as key version 32: keys encrypted with ServerA's DEK, one key check value wrong", "secure": True,
     "apdu": put_key(0, 0x32, C, A, "ServerC", bad_kcv=True), "sw": "6A80"},
    {"note": "PUT KEY add without the authority name", "secure": True,
     "apdu": put_key(0, 0x32, C, A), "sw": "6A80", "host_encodes": True},
    {"note": "PUT KEY add with a name the card already holds (ServerB)", "secure": True,
     "apdu": put_key(0, 0x32, C, A, "ServerB"), "sw": "6A80"},
    {"note": "PUT KEY add onto key version 31, which exists", "secure": True,
     "apdu": put_key(0, 0x31, C, A, "ServerC"), "sw": "6A80"},
    {"note": "PUT KEY add ServerC as key version 32: answer KVN 32 and the KCVs of ENC, MAC, DEK", "secure": True,
     "apdu": put_key(0, 0x32, C, A, "ServerC"), "sw": "9000", "data": resp(0x32, C), "host_encodes": True},
    {"note": "GET DATA authority:50 (32): name, key length 16, KCVs; ACL: ServerA (creator) Get/Replace/Delete, ServerC Get/Replace", "secure": True,
     "apdu": "00 CB 3F FF 03 89 01 32 00", "sw": "9000",
     "data": info("ServerC", C) + " 8C %02X " % len(ACL_C) + h(ACL_C)},
    {"note": "ServerC authenticates with its new keys", "open_scp": {"kvn": "32", "level": "33", "host_challenge": hc, "keys": khex(C)}},
    {"note": "ServerC may read the audit log (granted when it was added)", "secure": True,
     "apdu": "00 CB 3F FF 02 88 00 00", "sw": "9000", "data_prefix": "53"},
    {"note": "ServerC rotates its own key set to key version 33 (new keys encrypted with its DEK 70…)", "secure": True,
     "apdu": put_key(0x32, 0x33, C2, C[2], "ServerC"), "sw": "9000", "data": resp(0x33, C2), "host_encodes": True},
    {"note": "key version 32 is gone", "apdu": "80 50 32 00 08 A1 B2 C3 D4 E5 F6 07 18 00", "sw": "6A88"},
    {"note": "ServerC authenticates with the rotated keys at key version 33", "open_scp": {"kvn": "33", "level": "33", "host_challenge": hc, "keys": khex(C2)}},
    {"note": "ServerC may not remove ServerB (no Delete on authority:49 nor on the card)", "secure": True,
     "apdu": "80 E4 00 00 03 89 01 31", "sw": "6982", "records_failure": True},
    {"note": "ServerA again", "open_scp": {"kvn": "30", "level": "33", "host_challenge": hc}},
    {"note": "ServerA rotates ServerB's key set in place (P1 = new KVN = 31; encrypted with ServerA's DEK)", "secure": True,
     "apdu": put_key(0x31, 0x31, D, A), "sw": "9000", "data": resp(0x31, D)},
    {"note": "ServerA removes ServerB (key version 31)", "secure": True,
     "apdu": "80 E4 00 00 03 89 01 31", "sw": "9000", "host_encodes": True},
    {"note": "ServerA removes ServerC (key version 33)", "secure": True,
     "apdu": "80 E4 00 00 03 89 01 33", "sw": "9000"},
    {"note": "ServerA may not remove the card's last authority (itself): 6985", "secure": True,
     "apdu": "80 E4 00 00 03 89 01 30", "sw": "6985"},
    {"note": "the list of key sets: authority:48 alone", "secure": True,
     "apdu": "00 CB 3F FE 02 89 00 00", "sw": "9000", "data": "E1 09 89 01 30 DD 04 00 00 00 17"},
    {"note": "key version 31 is gone", "apdu": "80 50 31 00 08 A1 B2 C3 D4 E5 F6 07 18 00", "sw": "6A88"},
    {"note": "power cycle: the key sets persist", "power_cycle": True},
    sel,
    {"note": "ServerA still authenticates", "open_scp": {"kvn": "30", "level": "01", "host_challenge": hc}},
]
doc = {
    "source": "generated by test-vectors/tools/gen_authorities.py from docs/commands.md (PUT KEY, DELETE of authority key sets) and card-model/src/put_key.rs; DEK encryption (AES-CBC, zero ICV) and key check values computed with Python 'cryptography'",
    "description": "Authority key sets: GlobalPlatform PUT KEY under SCP03 adds (P1 00, with the dmsc DB name) and rotates (P1 = the key version) key sets, keys encrypted with the session authority's DEK and checked against their key check values; rights (Add on the card; Replace on the key set, on the card, or being that authority; Delete on the key set or the card); DELETE of a key set; the card refuses to remove its last authority.",
    "steps": steps,
}
print(json.dumps(doc, indent=2, ensure_ascii=False))
