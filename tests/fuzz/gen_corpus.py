#!/usr/bin/env python3
"""gen_corpus.py — writes the seed corpora for the frame and TLS record fuzz harnesses.

    tests/fuzz/gen_corpus.py            (re)write tests/fuzz/corpus/{frame,handshake,tlsrec}/

Every seed is a valid frame (or a stream of them) in the layout of docs/PROTOCOL.md section 2,
built here independently of the C encoders, so the seeds also check the C decoder against a
second reading of the spec. Python 3 standard library only. Output is deterministic.

The state-file seeds (tests/fuzz/corpus/state) are real saved states instead, written by the
cores themselves: `make && build/tools/state_seeds tests/fuzz/corpus/state`.
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = 0x4C4D5054

OPEN, OPEN_OK, DATA, WINDOW, FIN, RST = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
BIND, BIND_OK, BIND_FAIL, GOODBYE = 0x07, 0x08, 0x09, 0x0A
ACK, PING, PONG = 0x40, 0x41, 0x42
HELLO, WELCOME, REJECT = 0x50, 0x51, 0x52


def frame(ftype, stream_id, payload=b""):
    assert len(payload) <= 16384
    return struct.pack(">BBHI", ftype, 0, len(payload), stream_id) + payload


def open_frame(stream_id, kind, window, target, arg=b""):
    payload = struct.pack(">BIH", kind, window, len(target)) + target + arg
    return frame(OPEN, stream_id, payload)


def text(ftype, stream_id, code, msg):
    return frame(ftype, stream_id, struct.pack(">H", code) + msg)


def u32(ftype, stream_id, value):
    return frame(ftype, stream_id, struct.pack(">I", value))


def u64(ftype, value):
    return frame(ftype, 0, struct.pack(">Q", value))


def hello(version, session_id, token, rx_seq, flags=0):
    payload = struct.pack(">IHH", MAGIC, version, flags) + session_id + token
    return frame(HELLO, 0, payload + struct.pack(">Q", rx_seq))


def welcome(flags, session_id, token, rx_seq, heartbeat_ms, dead_after_ms, node=None):
    if node is not None:
        flags |= 0x0002  # NODE: node_len u8 | node follow
    payload = struct.pack(">HH", 1, flags) + session_id + token
    payload += struct.pack(">QII", rx_seq, heartbeat_ms, dead_after_ms)
    if node is not None:
        payload += bytes([len(node)]) + node
    return frame(WELCOME, 0, payload)


SID = bytes(range(0xA0, 0xB0))
TOKEN = bytes(range(0x30, 0x50))

FRAME_SEEDS = {
    "open_tcp": open_frame(1, 1, 262144, b"example.org:443"),
    "open_stdio": open_frame(3, 2, 65536, b"localhost:22"),
    "open_mcp": open_frame(5, 3, 262144, b"browser", b"work"),
    "open_reverse": open_frame(2, 4, 1, b"0.0.0.0:8080"),
    "open_max_text": open_frame(7, 3, 0xFFFFFFFF, b"t" * 1024, b"a" * 1024),
    # each text field at its cap beside a short other one: one inserted byte crosses the cap
    "open_max_target": open_frame(9, 1, 1, b"h" * 1019 + b":8080"),
    "open_max_arg": open_frame(11, 3, 4096, b"srv", b"s" * 1024),
    "rst_max": text(RST, 13, 9, b"r" * 1024),
    "open_ok": u32(OPEN_OK, 1, 262144),
    "data_small": frame(DATA, 1, b"hello, world\n"),
    "data_max": frame(DATA, 0xFFFFFFFF, bytes(i % 251 for i in range(16384))),
    "window": u32(WINDOW, 1, 131072),
    "fin": frame(FIN, 1),
    "rst": text(RST, 1, 1, b"connection refused by 10.0.0.5:443"),
    "rst_empty": text(RST, 9, 11, b""),
    "bind": text(BIND, 1, 0, b"127.0.0.1:8022"),
    "bind_ok": text(BIND_OK, 1, 8022, b"127.0.0.1"),
    "bind_fail": text(BIND_FAIL, 3, 3, b"bind 0.0.0.0:80 not allowed"),
    "goodbye": text(GOODBYE, 0, 0, b"bye"),
    "ack": u64(ACK, 123456789),
    "ping": u64(PING, 1700000000000),
    "pong": u64(PONG, 1700000000000),
    "hello": hello(1, bytes(16), bytes(32), 0),
    "welcome": welcome(0, SID, TOKEN, 0, 2000, 6000),
    "welcome_node": welcome(0, SID, TOKEN, 0, 2000, 6000, node=b"node-a"),
    "reject": text(REJECT, 0, 2, b"session unknown"),
    # a whole conversation: what one side's sequenced and link frames look like in a row
    "stream": (open_frame(1, 1, 262144, b"db:5432") + u32(OPEN_OK, 1, 262144)
               + frame(DATA, 1, b"SELECT 1;") + u32(WINDOW, 1, 9) + u64(ACK, 40)
               + u64(PING, 5) + frame(FIN, 1) + text(RST, 1, 5, b"reset")
               + text(GOODBYE, 0, 1, b"shutting down")),
}

HANDSHAKE_SEEDS = {
    "hello_new": hello(1, bytes(16), bytes(32), 0),
    "hello_resume": hello(1, SID, TOKEN, 0x1122334455667788),
    "hello_version2": hello(2, bytes(16), bytes(32), 0),
    "hello_node": hello(1, SID, TOKEN, 5, flags=0x0002),
    "welcome_node": welcome(0, SID, TOKEN, 0, 2000, 6000, node=b"edge-2"),
    "welcome_node_max": welcome(1, SID, bytes(32), 77, 2000, 6000, node=b"n" * 63),
    "welcome_new": welcome(0, SID, TOKEN, 0, 2000, 6000),
    "welcome_resumed": welcome(1, SID, bytes(32), 987654321, 200, 600),
    "reject_version": text(REJECT, 0, 1, b"unsupported protocol version 2"),
    "reject_unknown": text(REJECT, 0, 2, b"session unknown"),
    "reject_seq": text(REJECT, 0, 3, b"rx_seq 10 outside [20, 30]"),
    "reject_auth": text(REJECT, 0, 4, b""),
    "reject_max": text(REJECT, 0, 5, b"m" * 1024),
}


# ---- TLS 1.2 records for fuzz_tlsrec, sealed with its toy AEAD ---------------------------------
# Layout per RFC 5246 §6.2 with RFC 7905 (ChaCha20: nonce = IV xor seq) and RFC 5288 (AES-GCM:
# salt | explicit nonce on the wire); the toy AEAD is fuzz_tlsrec.c's twin.

TLS_IV = bytes(range(0xA0, 0xAC))
CHACHA, AES128, AES256 = 0, 1, 2
APPDATA, ALERT, HANDSHAKE, CCS = 23, 21, 22, 20


def toy_seal(nonce, aad, plain):
    ct = bytes(b ^ nonce[i % 12] ^ (i & 0xFF) ^ 0x5A for i, b in enumerate(plain))
    h = 2166136261
    for b in nonce + aad + ct:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    tag = bytes(((h >> (8 * (j % 4))) + j) & 0xFF for j in range(16))
    return ct + tag


def tls_record(cipher, seq, rtype, plain, explicit=None):
    seqb = struct.pack(">Q", seq % 2**64)  # past the end: what a wrapping sender would use
    aad = seqb + struct.pack(">BHH", rtype, 0x0303, len(plain))
    if cipher == CHACHA:
        nonce = TLS_IV[:4] + bytes(a ^ b for a, b in zip(TLS_IV[4:], seqb))
        frag = toy_seal(nonce, aad, plain)
    else:
        exp = seqb if explicit is None else explicit
        frag = exp + toy_seal(TLS_IV[:4] + exp, aad, plain)
    return struct.pack(">BHH", rtype, 0x0303, len(frag)) + frag


def tls_input(cipher, records, near_end=False, in_place=False):
    """fuzz_tlsrec's input: cipher, flags, then records numbered from where the flags say."""
    seq = 2**64 - 3 if near_end else 1
    out = bytes([cipher, (1 if near_end else 0) | (2 if in_place else 0)])
    for rtype, plain, *rest in records:
        out += tls_record(cipher, seq, rtype, plain, *rest)
        seq += 1
    return out


TLSREC_SEEDS = {
    "chacha_one": tls_input(CHACHA, [(APPDATA, b"hello, limpet")]),
    "chacha_stream": tls_input(CHACHA, [(APPDATA, b"a" * 100), (APPDATA, b""),
                                        (APPDATA, bytes(range(256)) * 4),
                                        (ALERT, b"\x01\x00")]),
    "chacha_in_place": tls_input(CHACHA, [(APPDATA, b"x" * 3000), (APPDATA, b"y")],
                                 in_place=True),
    "chacha_max": tls_input(CHACHA, [(APPDATA, bytes(i & 0xFF for i in range(16384)))]),
    "chacha_near_end": tls_input(CHACHA, [(APPDATA, b"1"), (APPDATA, b"2"), (APPDATA, b"3"),
                                          (APPDATA, b"past the end")], near_end=True),
    "gcm128_stream": tls_input(AES128, [(APPDATA, b"one"), (APPDATA, b"two" * 500),
                                        (ALERT, b"\x02\x00")]),
    "gcm128_explicit": tls_input(AES128, [(APPDATA, b"chosen nonce", b"\xde\xad\xbe\xef\0\0\0\x2a")]),
    "gcm256_stream": tls_input(AES256, [(APPDATA, b"z" * 1400), (APPDATA, b"")], in_place=True),
    "gcm256_near_end": tls_input(AES256, [(APPDATA, b"a"), (APPDATA, b"b")], near_end=True),
    "alert_fatal": tls_input(CHACHA, [(ALERT, b"\x02\x14")]),
    "alert_long": tls_input(AES128, [(ALERT, b"\x01\x00\x00")]),
    "hello_request": tls_input(CHACHA, [(APPDATA, b"ok"), (HANDSHAKE, b"\x00\x00\x00\x00")]),
    "ccs": tls_input(AES256, [(CCS, b"\x01")]),
    "bad_version": bytes([CHACHA, 0]) + struct.pack(">BHH", APPDATA, 0x0301, 17) + bytes(17),
    "too_long": bytes([AES128, 0]) + struct.pack(">BHH", APPDATA, 0x0303, 16384 + 25),
    "partial": tls_input(CHACHA, [(APPDATA, b"whole"), (APPDATA, b"cut short")])[:-7],
}


def write(directory, seeds):
    os.makedirs(directory, exist_ok=True)
    for name, data in sorted(seeds.items()):
        assert len(data) < 20 * 1024, name
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    write(os.path.join(root, "frame"), FRAME_SEEDS)
    write(os.path.join(root, "handshake"), HANDSHAKE_SEEDS)
    write(os.path.join(root, "tlsrec"), TLSREC_SEEDS)
    print(f"wrote {len(FRAME_SEEDS)} frame, {len(HANDSHAKE_SEEDS)} handshake and "
          f"{len(TLSREC_SEEDS)} tlsrec seeds under {root}")


if __name__ == "__main__":
    main()
