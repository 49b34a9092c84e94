#!/usr/bin/env python3
"""faultrelay.py — a TCP relay that injects faults between a limpet client and server.

    faultrelay.py --listen 127.0.0.1:PORT --target 127.0.0.1:PORT
                  [--mode none|rst|midframe|blackhole] [--every MS] [--throttle BYTES_PER_SEC]
                  [--control 127.0.0.1:PORT] [--quiet] [--seed N]

Every connection accepted on --listen is relayed to --target. Faults are applied to the live
connections every MS milliseconds (--every) or when the control port says `cut`:

  rst        close both sides with SO_LINGER {1,0}: both ends get a RST.
  midframe   follow limpet's framing (8-byte header, BE u16 payload length at offset 2) in both
             directions and cut (RST both sides) strictly inside a frame: at least one byte of
             the frame's header has reached the peer and at least one byte of it never will.
  blackhole  stop forwarding in both directions and send nothing (no FIN, no RST); the sockets
             stay open for 60 s (or until exit) and are then closed. Connections accepted later
             are relayed normally, so a reconnect works.
  flip       follow TLS records (5-byte header, BE u16 length at offset 3) in both directions
             and flip one bit of the next record body that passes each way; the connection
             stays up: what the corrupted record does to the link is the endpoints' business.
  none       no fault.

--throttle is a token bucket per direction (0 = off). Port 0 in --listen/--control picks a free
port; the real one is printed ("relay listening on HOST:PORT -> HOST:PORT",
"relay control on HOST:PORT") on stdout once ready.

Control protocol (one command per line, one reply line each):
  cut [MODE]      apply MODE (default: the current mode) once now → "ok cut=N pending=M"
  mode MODE       → "ok mode=MODE"
  every MS        periodic faults every MS ms, 0 = off → "ok every=MS"
  throttle N      bytes per second per direction, 0 = off → "ok throttle=N"
  stats           → {"cuts": n, "connections": n, "bytes_up": n, "bytes_down": n, ...}
Unknown or malformed commands get "error: REASON".

Importable: Relay(listen, target, ...).start_thread() runs the loop in a thread; cut(), set_mode(),
set_every(), set_throttle(), stats() and stop() are safe to call from other threads.

One thread, one selectors loop, 256 KiB reads: several hundred MB/s on loopback.
Standard library only.
"""

import argparse
import errno
import fcntl
import json
import os
import queue
import random
import selectors
import signal
import socket
import struct
import sys
import termios
import threading
import time

MODES = ("none", "rst", "midframe", "blackhole", "flip")
TLS_HEADER = 5
FRAME_HEADER = 8
RECV_SIZE = 256 * 1024
BLACKHOLE_HOLD_S = 60.0
CUT_FLUSH_LIMIT_S = 1.0      # a midframe cut waits at most this long for the partial frame to land
CUT_POLL_S = 0.002
MIDFRAME_GRACE_S = 0.05     # a midframe cut waits this long for fresh bytes to cut inside
MAX_TICK_S = 0.25
CONTROL_LINE_MAX = 4096
HARD_ERRORS = (ConnectionError, BrokenPipeError, TimeoutError, OSError)


def parse_hostport(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, got %r" % text)
    host = host.strip("[]")
    port_n = int(port, 10)
    if not 0 <= port_n <= 65535:
        raise ValueError("port out of range in %r" % text)
    return host, port_n


def now_mono():
    return time.monotonic()


def stamp():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def set_rst_on_close(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def unsent_bytes(sock):
    """Bytes the kernel still holds for this socket that the peer has not acknowledged."""
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        return struct.unpack("i", buf)[0]
    except OSError:
        return 0


class FrameTracker:
    """Follows limpet frame boundaries in one direction of a byte stream.

    pos: bytes of the current frame seen so far (0 = at a frame boundary);
    total: the current frame's size once its header is complete, else None.
    """

    __slots__ = ("hdr", "pos", "total", "frames")

    def __init__(self):
        self.hdr = bytearray()
        self.pos = 0
        self.total = None
        self.frames = 0

    def feed(self, data):
        i, n = 0, len(data)
        while i < n:
            if self.total is None:
                take = min(FRAME_HEADER - len(self.hdr), n - i)
                self.hdr += data[i:i + take]
                i += take
                self.pos += take
                if len(self.hdr) == FRAME_HEADER:
                    self.total = FRAME_HEADER + ((self.hdr[2] << 8) | self.hdr[3])
            else:
                take = min(self.total - self.pos, n - i)
                i += take
                self.pos += take
            if self.total is not None and self.pos == self.total:
                self.hdr.clear()
                self.pos = 0
                self.total = None
                self.frames += 1

    def inside(self):
        return self.pos > 0

    def cut_range(self, data):
        """Where in `data` (about to be forwarded) a cut lands strictly inside a frame.

        Returns (lo, hi, header): forwarding k bytes with lo <= k <= hi leaves the stream
        inside the current frame; header is a (lo, hi) range that leaves it inside a frame's
        header (the current frame's or the next one's), or None. Returns None when no cut is
        possible (data is empty and the stream is at a boundary)."""
        n = len(data)
        if self.pos == 0:
            if n == 0:
                return None
            if n >= FRAME_HEADER:
                total = FRAME_HEADER + ((data[2] << 8) | data[3])
                return 1, min(n, total - 1), (1, min(n, FRAME_HEADER - 1))
            return 1, n, (1, n)
        total = self.total
        if total is None:
            need = FRAME_HEADER - len(self.hdr)
            if n < need:
                return 0, n, (0, n)
            hdr = bytes(self.hdr) + bytes(data[:need])
            total = FRAME_HEADER + ((hdr[2] << 8) | hdr[3])
        # inside a frame already: forwarding nothing more is a valid cut
        hi = min(n, total - self.pos - 1)
        if self.pos < FRAME_HEADER:
            header = (0, min(n, FRAME_HEADER - 1 - self.pos))
        else:
            nxt = total - self.pos          # where the next frame starts in data
            header = (nxt + 1, min(n, nxt + FRAME_HEADER - 1)) if nxt < n else None
        return 0, hi, header


class TlsTracker:
    """Follows TLS records (type, version, u16 length) through one direction of a stream."""

    __slots__ = ("head", "body_left")

    def __init__(self):
        self.head = bytearray()
        self.body_left = 0

    def feed(self, data, pick=None):
        """Consumes data. With pick (k -> an offset below k), returns the offset in data of one
        byte of the first record body in it, chosen by pick; else (or if none) None."""
        found = None
        i, n = 0, len(data)
        while i < n:
            if self.body_left:
                k = min(self.body_left, n - i)
                if found is None and pick is not None:
                    found = i + pick(k)
                self.body_left -= k
                i += k
                continue
            take = bytes(data[i:i + TLS_HEADER - len(self.head)])
            self.head += take
            i += len(take)
            if len(self.head) == TLS_HEADER:
                self.body_left = (self.head[3] << 8) | self.head[4]
                self.head.clear()
        return found


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate):
        self.rate = 0
        self.burst = 0
        self.tokens = 0.0
        self.stamp = now_mono()
        self.set_rate(rate)

    def set_rate(self, rate):
        self.rate = max(0, int(rate))
        # 50 ms worth of tokens, at least one read of 4 KiB, so small rates still move
        self.burst = max(4096, self.rate // 20) if self.rate else 0
        self.tokens = min(self.tokens, self.burst) if self.rate else 0.0
        self.stamp = now_mono()

    def refill(self, t):
        if self.rate:
            self.tokens = min(self.burst, self.tokens + (t - self.stamp) * self.rate)
        self.stamp = t

    def allowance(self, t):
        """Bytes that may be read now (RECV_SIZE when unthrottled)."""
        if not self.rate:
            return RECV_SIZE
        self.refill(t)
        return min(RECV_SIZE, int(self.tokens))

    def spend(self, n):
        if self.rate:
            self.tokens -= n

    def wait_for(self, want):
        """Seconds until `want` tokens are there."""
        if not self.rate:
            return 0.0
        return max(0.0, (min(want, self.burst) - self.tokens) / self.rate)


class Direction:
    """One way of a relayed connection: bytes read from src are written to dst."""

    __slots__ = ("name", "src", "dst", "out", "tracker", "tls", "flip_pending", "bucket", "eof",
                 "shut", "resume_at")

    def __init__(self, name, src, dst, rate):
        self.name = name
        self.src = src
        self.dst = dst
        self.out = bytearray()       # read but not yet accepted by dst's kernel buffer
        self.tracker = FrameTracker()
        self.tls = TlsTracker()
        self.flip_pending = False    # flip one bit of the next TLS record body read
        self.bucket = TokenBucket(rate)
        self.eof = False             # src said EOF
        self.shut = False            # we passed the EOF on (shutdown(dst, SHUT_WR))
        self.resume_at = 0.0         # throttle: do not read before this time


class Conn:
    __slots__ = ("cid", "client", "server", "state", "up", "down", "cut_pending",
                 "cut_deadline", "cut_detail", "hold_until", "peer")

    def __init__(self, cid, client, server, peer, rate):
        self.cid = cid
        self.client = client
        self.server = server
        self.peer = peer
        self.state = "connecting"    # connecting | live | cutting | holed | closed
        self.up = Direction("up", client, server, rate)
        self.down = Direction("down", server, client, rate)
        self.cut_pending = False     # midframe: cut at the next chance
        self.cut_deadline = 0.0
        self.cut_detail = ""
        self.hold_until = 0.0


class Relay:
    source = ""  # local address to connect to the target from ("" = the kernel's choice)

    def __init__(self, listen, target, mode="none", every_ms=0, throttle=0, control=None,
                 quiet=False, seed=None, out=None, log=None):
        if mode not in MODES:
            raise ValueError("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)))
        self.listen_addr = listen
        self.target = target
        self.mode = mode
        self.every = max(0, int(every_ms)) / 1000.0
        self.throttle = max(0, int(throttle))
        self.control_addr = control
        self.quiet = quiet
        self.rng = random.Random(seed)
        self.out = out or sys.stdout
        self.log_file = log or sys.stderr
        self.sel = selectors.DefaultSelector()
        self.masks = {}
        self.conns = {}
        self.holed = []
        self.controls = {}
        self.next_cid = 1
        self.next_every = 0.0
        self.stats_d = {"cuts": 0, "connections": 0, "bytes_up": 0, "bytes_down": 0,
                        "cuts_rst": 0, "cuts_midframe": 0, "cuts_blackhole": 0, "cuts_flip": 0,
                        "flipped": 0,
                        "midframe_unconfirmed": 0, "midframe_in_header": 0}
        self.buf = bytearray(RECV_SIZE)
        self.view = memoryview(self.buf)
        self.running = False
        self.listener = None
        self.control = None
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.calls = queue.Queue()
        self.thread = None
        self.listen_port = None
        self.control_port = None

    # ---- setup -----------------------------------------------------------------------------

    def bind(self):
        self.listener = self._listen_socket(self.listen_addr)
        self.listen_port = self.listener.getsockname()[1]
        self._set_mask(self.listener, selectors.EVENT_READ, ("listen", None))
        if self.control_addr:
            self.control = self._listen_socket(self.control_addr)
            self.control_port = self.control.getsockname()[1]
            self._set_mask(self.control, selectors.EVENT_READ, ("control-listen", None))
        self._set_mask(self.wake_r, selectors.EVENT_READ, ("wake", None))
        if self.every:
            self.next_every = now_mono() + self.every
        self.running = True
        return self

    @staticmethod
    def _listen_socket(addr):
        fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(512)
        sock.setblocking(False)
        return sock

    def announce(self):
        host = self.listen_addr[0]
        print("relay listening on %s:%d -> %s:%d mode=%s every=%dms throttle=%d" % (
            host, self.listen_port, self.target[0], self.target[1], self.mode,
            int(self.every * 1000), self.throttle), file=self.out, flush=True)
        if self.control:
            print("relay control on %s:%d" % (self.control_addr[0], self.control_port),
                  file=self.out, flush=True)

    def log(self, msg):
        if not self.quiet:
            print("%s relay %s" % (stamp(), msg), file=self.log_file, flush=True)

    # ---- selector bookkeeping --------------------------------------------------------------

    def _set_mask(self, sock, mask, data):
        old = self.masks.get(sock)
        if old is None:
            if mask:
                self.sel.register(sock, mask, data)
                self.masks[sock] = (mask, data)
        elif mask == 0:
            self.sel.unregister(sock)
            del self.masks[sock]
        elif (mask, data) != old:
            self.sel.modify(sock, mask, data)
            self.masks[sock] = (mask, data)

    def _forget(self, sock):
        if sock in self.masks:
            self.sel.unregister(sock)
            del self.masks[sock]

    def _reading(self, conn, d, t):
        return conn.state == "live" and not d.eof and not d.out and t >= d.resume_at

    def _update(self, conn, t=None):
        if conn.state not in ("live", "cutting"):
            return
        t = now_mono() if t is None else t
        for sock, rd, wr in ((conn.client, conn.up, conn.down), (conn.server, conn.down, conn.up)):
            mask = 0
            if self._reading(conn, rd, t):
                mask |= selectors.EVENT_READ
            if wr.out:
                mask |= selectors.EVENT_WRITE
            self._set_mask(sock, mask, ("conn", conn))

    # ---- the loop --------------------------------------------------------------------------

    def run(self):
        try:
            while self.running:
                timeout = self._timers(now_mono())
                for key, mask in self.sel.select(timeout):
                    self._dispatch(key, mask)
        finally:
            self._close_all()

    def _dispatch(self, key, mask):
        kind, conn = key.data
        if kind == "listen":
            self._accept()
        elif kind == "control-listen":
            self._accept_control()
        elif kind == "control":
            self._control_read(key.fileobj)
        elif kind == "wake":
            self._drain_wake()
        elif kind == "connect":
            self._connected(conn)
        elif kind == "conn" and conn.state in ("live", "cutting"):
            self._conn_event(conn, key.fileobj, mask)

    def _timers(self, t):
        """Runs what is due; returns the select timeout."""
        nxt = t + MAX_TICK_S
        if self.every and self.mode != "none":
            if t >= self.next_every:
                self.apply_cut(self.mode)
                self.next_every = t + self.every
            nxt = min(nxt, self.next_every)
        for conn in list(self.conns.values()):
            if conn.state == "cutting":
                self._finish_cut(conn, t)
                if conn.state == "cutting":
                    nxt = min(nxt, t + CUT_POLL_S)
            elif conn.state == "live":
                if conn.cut_pending:
                    if t >= conn.cut_deadline:
                        self._try_midframe_now(conn)
                    else:
                        nxt = min(nxt, conn.cut_deadline)
                if conn.state != "live":
                    continue
                for d in (conn.up, conn.down):
                    if d.resume_at > t:
                        nxt = min(nxt, d.resume_at)
                    elif d.resume_at:
                        d.resume_at = 0.0
                        self._update(conn, t)
        if self.holed and self.holed[0].hold_until <= t:
            keep = []
            for conn in self.holed:
                if conn.hold_until <= t:
                    self._close_conn(conn, rst=False)
                else:
                    keep.append(conn)
            self.holed = keep
        if self.holed:
            nxt = min(nxt, self.holed[0].hold_until)
        return max(0.0, nxt - now_mono())

    # ---- connections -----------------------------------------------------------------------

    def _accept(self):
        for _ in range(64):
            try:
                client, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log("accept failed: %s" % e)
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fam = socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET
            server = socket.socket(fam, socket.SOCK_STREAM)
            server.setblocking(False)
            server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.source:  # the address the target sees (e.g. 127.0.0.2 behind HAProxy)
                server.bind((self.source, 0))
            conn = Conn(self.next_cid, client, server, peer, self.throttle)
            self.next_cid += 1
            self.conns[conn.cid] = conn
            self.stats_d["connections"] += 1
            err = server.connect_ex(self.target)
            if err not in (0, errno.EINPROGRESS):
                self.log("conn=%d target connect failed: %s" % (conn.cid, os.strerror(err)))
                self._close_conn(conn, rst=True)
                continue
            self._set_mask(server, selectors.EVENT_WRITE, ("connect", conn))

    def _connected(self, conn):
        err = conn.server.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.log("conn=%d target connect failed: %s" % (conn.cid, os.strerror(err)))
            self._close_conn(conn, rst=True)
            return
        conn.state = "live"
        self.log("conn=%d open from %s:%d" % (conn.cid, conn.peer[0], conn.peer[1]))
        self._update(conn)

    def _conn_event(self, conn, sock, mask):
        t = now_mono()
        if mask & selectors.EVENT_WRITE:
            d = conn.down if sock is conn.client else conn.up
            if not self._flush(conn, d):
                return
        if mask & selectors.EVENT_READ and conn.state == "live":
            d = conn.up if sock is conn.client else conn.down
            if self._reading(conn, d, t):
                self._pump(conn, d, t)
        if conn.state in ("live", "cutting"):
            self._update(conn, t)

    def _pump(self, conn, d, t):
        """One read from d.src, forwarded to d.dst. Returns False if the conn is gone."""
        want = d.bucket.allowance(t)
        if want <= 0:
            d.resume_at = t + max(0.001, d.bucket.wait_for(4096))
            return True
        try:
            n = d.src.recv_into(self.buf, want)
        except (BlockingIOError, InterruptedError):
            return True
        except HARD_ERRORS as e:
            self.log("conn=%d %s read failed: %s" % (conn.cid, d.name, e))
            self._close_conn(conn, rst=True)
            return False
        if n == 0:
            d.eof = True
            return self._flush(conn, d)
        d.bucket.spend(n)
        data = self.view[:n]
        if conn.cut_pending:
            return self._midframe_cut(conn, d, data)
        self._maybe_flip(conn, d, data)
        d.tracker.feed(data)
        self._count(d, n)
        d.out += data
        return self._flush(conn, d)

    def _maybe_flip(self, conn, d, data):
        """Follows the TLS records of d; flips one bit of a record body when one is due."""
        if not d.flip_pending:
            d.tls.feed(data)
            return
        off = d.tls.feed(data, pick=self.rng.randrange)
        if off is None:
            return
        bit = self.rng.randrange(8)
        data[off] ^= 1 << bit
        d.flip_pending = False
        self.stats_d["flipped"] += 1
        self.log("conn=%d %s: flipped bit %d of a TLS record body byte" % (conn.cid, d.name, bit))

    def _count(self, d, n):
        self.stats_d["bytes_up" if d.name == "up" else "bytes_down"] += n

    def _flush(self, conn, d):
        """Writes what d holds; passes on EOF once drained. Returns False if the conn is gone."""
        if d.out:
            try:
                sent = d.dst.send(d.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except HARD_ERRORS as e:
                self.log("conn=%d %s write failed: %s" % (conn.cid, d.name, e))
                self._close_conn(conn, rst=True)
                return False
            if sent:
                del d.out[:sent]
        if d.eof and not d.out and not d.shut and conn.state == "live":
            d.shut = True
            try:
                d.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if conn.up.shut and conn.down.shut:
                self.log("conn=%d closed" % conn.cid)
                self._close_conn(conn, rst=False)
                return False
        return True

    def _close_conn(self, conn, rst):
        for sock in (conn.client, conn.server):
            self._forget(sock)
            if rst:
                set_rst_on_close(sock)
            try:
                sock.close()
            except OSError:
                pass
        conn.state = "closed"
        self.conns.pop(conn.cid, None)

    # ---- faults ----------------------------------------------------------------------------

    def apply_cut(self, mode=None):
        """Applies a fault to every live connection. Returns (cut now, pending)."""
        mode = mode or self.mode
        done = pending = 0
        for conn in list(self.conns.values()):
            if conn.state not in ("live", "connecting"):
                continue
            if mode == "rst":
                self._close_conn(conn, rst=True)
                self._counted_cut(conn, "rst")
                done += 1
            elif mode == "blackhole":
                self._blackhole(conn)
                done += 1
            elif mode == "flip":
                conn.up.flip_pending = conn.down.flip_pending = True
                self._counted_cut(conn, "flip")
                done += 1
            elif mode == "midframe":
                if not conn.cut_pending:
                    conn.cut_pending = True
                    conn.cut_deadline = now_mono() + MIDFRAME_GRACE_S
                if conn.cut_pending:
                    pending += 1
                else:
                    done += 1
        return done, pending

    def _counted_cut(self, conn, mode, detail=""):
        self.stats_d["cuts"] += 1
        self.stats_d["cuts_" + mode] += 1
        self.log("cut #%d conn=%d mode=%s%s" % (self.stats_d["cuts"], conn.cid, mode, detail))

    def _blackhole(self, conn):
        self._forget(conn.client)
        self._forget(conn.server)
        conn.up.out.clear()
        conn.down.out.clear()
        conn.state = "holed"
        conn.cut_pending = False
        conn.hold_until = now_mono() + BLACKHOLE_HOLD_S
        self.conns.pop(conn.cid, None)
        self.holed.append(conn)
        self._counted_cut(conn, "blackhole")

    def _try_midframe_now(self, conn):
        """No fresh bytes came within the grace time: a direction already inside a frame can
        be cut without them. If both sit on boundaries, the cut waits for the next bytes."""
        for d in (conn.up, conn.down):
            if d.tracker.inside():
                self._start_cut(conn, d, "inside %s frame at %d/%s, no more bytes" % (
                    d.name, d.tracker.pos, d.tracker.total))
                return

    def _midframe_cut(self, conn, d, data):
        lo, hi, header = d.tracker.cut_range(data)
        if header is not None and self.rng.random() < 0.3:
            k = self.rng.randint(*header)          # sometimes inside a header
        else:
            k = self.rng.randint(lo, hi)
        part = data[:k]
        d.tracker.feed(part)
        self._count(d, k)
        d.out += part
        if d.tracker.pos < FRAME_HEADER:
            self.stats_d["midframe_in_header"] += 1
        self._start_cut(conn, d, "in %s frame at %d/%s" % (
            d.name, d.tracker.pos, d.tracker.total))
        return False

    def _start_cut(self, conn, d, detail):
        """Stops reading; once the partial frame has reached the peer, RSTs both sides."""
        conn.cut_pending = False
        conn.state = "cutting"
        conn.cut_deadline = now_mono() + CUT_FLUSH_LIMIT_S
        conn.cut_detail = detail
        self._finish_cut(conn, now_mono())

    def _finish_cut(self, conn, t):
        for d in (conn.up, conn.down):
            if d.out:
                try:
                    sent = d.dst.send(d.out)
                    del d.out[:sent]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    d.out.clear()
        drained = (not conn.up.out and not conn.down.out
                   and unsent_bytes(conn.client) == 0 and unsent_bytes(conn.server) == 0)
        if not drained and t < conn.cut_deadline:
            self._update(conn, t)
            return
        if not drained:
            self.stats_d["midframe_unconfirmed"] += 1
        self._close_conn(conn, rst=True)
        self._counted_cut(conn, "midframe", " (%s%s)" % (
            conn.cut_detail, "" if drained else ", not drained"))

    # ---- control ---------------------------------------------------------------------------

    def _accept_control(self):
        try:
            sock, _ = self.control.accept()
        except OSError:
            return
        sock.setblocking(False)
        self.controls[sock] = bytearray()
        self._set_mask(sock, selectors.EVENT_READ, ("control", None))

    def _control_read(self, sock):
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._control_close(sock)
            return
        buf = self.controls[sock]
        buf += data
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            reply = self.command(line.decode("utf-8", "replace").strip())
            try:
                sock.sendall((reply + "\n").encode())
            except OSError:
                self._control_close(sock)
                return
        if len(buf) > CONTROL_LINE_MAX:
            self._control_close(sock)

    def _control_close(self, sock):
        self._forget(sock)
        self.controls.pop(sock, None)
        sock.close()

    def command(self, line):
        """Runs one control command (in the loop thread); returns the reply line."""
        words = line.split()
        if not words:
            return "error: empty command"
        cmd, args = words[0].lower(), words[1:]
        try:
            if cmd == "cut" and len(args) <= 1:
                mode = args[0] if args else self.mode
                if mode not in MODES:
                    return "error: unknown mode %r" % mode
                done, pending = self.apply_cut(mode)
                return "ok cut=%d pending=%d" % (done, pending)
            if cmd == "mode" and len(args) == 1:
                if args[0] not in MODES:
                    return "error: unknown mode %r" % args[0]
                self.mode = args[0]
                return "ok mode=%s" % self.mode
            if cmd == "every" and len(args) == 1:
                ms = int(args[0], 10)
                if ms < 0:
                    return "error: every must be >= 0"
                self.every = ms / 1000.0
                self.next_every = now_mono() + self.every
                return "ok every=%d" % ms
            if cmd == "throttle" and len(args) == 1:
                rate = int(args[0], 10)
                if rate < 0:
                    return "error: throttle must be >= 0"
                self.throttle = rate
                for conn in self.conns.values():
                    conn.up.bucket.set_rate(rate)
                    conn.down.bucket.set_rate(rate)
                return "ok throttle=%d" % rate
            if cmd == "stats" and not args:
                return json.dumps(self.snapshot())
        except ValueError as e:
            return "error: %s" % e
        return "error: unknown command %r" % line[:80]

    def snapshot(self):
        s = dict(self.stats_d)
        s["active"] = sum(1 for c in self.conns.values() if c.state in ("live", "cutting"))
        s["holed"] = len(self.holed)
        s["mode"] = self.mode
        s["every_ms"] = int(self.every * 1000)
        s["throttle"] = self.throttle
        return s

    # ---- in-process use --------------------------------------------------------------------

    def _drain_wake(self):
        try:
            while self.wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                fn, box, done = self.calls.get_nowait()
            except queue.Empty:
                return
            try:
                box.append(fn())
            except Exception as e:     # handed back to the caller
                box.append(e)
            done.set()

    def call(self, fn, timeout=10.0):
        """Runs fn in the loop thread and returns its result."""
        if self.thread is None or threading.current_thread() is self.thread:
            return fn()
        box, done = [], threading.Event()
        self.calls.put((fn, box, done))
        self.wake()
        if not done.wait(timeout):
            raise TimeoutError("relay loop did not answer within %.1fs" % timeout)
        if isinstance(box[0], Exception):
            raise box[0]
        return box[0]

    def wake(self):
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass

    def start_thread(self):
        if not self.running:
            self.bind()
        self.thread = threading.Thread(target=self.run, name="faultrelay", daemon=True)
        self.thread.start()
        return self

    def cut(self, mode=None):
        return self.call(lambda: self.apply_cut(mode))

    def set_mode(self, mode):
        return self.call(lambda: self.command("mode %s" % mode))

    def set_every(self, ms):
        return self.call(lambda: self.command("every %d" % ms))

    def set_throttle(self, rate):
        return self.call(lambda: self.command("throttle %d" % rate))

    def stats(self):
        return self.call(self.snapshot)

    def stop(self, timeout=5.0):
        def halt():
            self.running = False
        if self.thread is not None and self.thread.is_alive():
            self.call(halt)
            self.thread.join(timeout)
        else:
            self.running = False
            self._close_all()

    def _close_all(self):
        for conn in list(self.conns.values()):
            self._close_conn(conn, rst=True)
        for conn in self.holed:
            self._close_conn(conn, rst=True)
        self.holed = []
        for sock in list(self.controls):
            self._control_close(sock)
        for sock in (self.listener, self.control):
            if sock is not None:
                self._forget(sock)
                sock.close()
        self.listener = self.control = None
        self._forget(self.wake_r)


def main(argv=None):
    ap = argparse.ArgumentParser(description="TCP relay that injects faults (limpet tests).")
    ap.add_argument("--listen", required=True, help="HOST:PORT to accept on (port 0: any)")
    ap.add_argument("--target", required=True, help="HOST:PORT to relay to")
    ap.add_argument("--mode", default="none", choices=MODES)
    ap.add_argument("--every", type=int, default=0, metavar="MS",
                    help="apply the mode to every live connection every MS ms")
    ap.add_argument("--throttle", type=int, default=0, metavar="BYTES_PER_SEC",
                    help="token bucket per direction (0 = off)")
    ap.add_argument("--control", metavar="HOST:PORT", help="line-protocol control port")
    ap.add_argument("--seed", type=int, default=None, help="seed for where midframe cuts land")
    ap.add_argument("--quiet", action="store_true", help="no per-event log on stderr")
    ap.add_argument("--source", default="", metavar="ADDR",
                    help="connect to the target from this local address")
    args = ap.parse_args(argv)
    try:
        listen = parse_hostport(args.listen)
        target = parse_hostport(args.target)
        control = parse_hostport(args.control) if args.control else None
    except ValueError as e:
        ap.error(str(e))
    if args.every < 0 or args.throttle < 0:
        ap.error("--every and --throttle must be >= 0")
    relay = Relay(listen, target, mode=args.mode, every_ms=args.every, throttle=args.throttle,
                  control=control, quiet=args.quiet, seed=args.seed)
    relay.source = args.source
    try:
        relay.bind()
    except OSError as e:
        print("faultrelay: cannot listen: %s" % e, file=sys.stderr)
        return 1

    def on_signal(signum, frame):
        relay.running = False

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.set_wakeup_fd(relay.wake_w.fileno(), warn_on_full_buffer=False)
    relay.announce()
    relay.run()
    s = relay.snapshot()
    relay.log("exit: cuts=%d connections=%d bytes_up=%d bytes_down=%d" % (
        s["cuts"], s["connections"], s["bytes_up"], s["bytes_down"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
