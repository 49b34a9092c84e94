"""A scripted tunnel client in Python, for tests that must send what `limpet client` never
would: many streams at once, lines that never end, exactly as much as the server's windows
allow. It speaks the protocol of docs/PROTOCOL.md over plain TCP (`--insecure` servers only):
HELLO, then OPENs and DATA, answering PINGs and acknowledging what it receives so the server's
replay buffer drains. It keeps no replay buffer of its own: the link must not drop.

Standard library only; every wait is bounded.
"""

import socket
import struct
import threading
import time

HEADER = struct.Struct("!BBHI")
T_OPEN, T_OPEN_OK, T_DATA, T_WINDOW, T_FIN, T_RST = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
T_GOODBYE = 0x0A
T_ACK, T_PING, T_PONG = 0x40, 0x41, 0x42
T_HELLO, T_WELCOME, T_REJECT = 0x50, 0x51, 0x52
KIND_MCP = 3
MAX_PAYLOAD = 16384
ACK_EVERY = 32 * 1024


def frame(ftype, stream_id, payload=b""):
    return HEADER.pack(ftype, 0, len(payload), stream_id) + payload


def hello():
    payload = struct.pack("!IHH16s32sQ", 0x4C4D5054, 1, 0, b"\0" * 16, b"\0" * 32, 0)
    return frame(T_HELLO, 0, payload)


class Stream:
    def __init__(self, sid):
        self.id = sid
        self.credit = 0          # bytes the server lets us send now
        self.granted = 0         # every byte of credit it ever gave (OPEN_OK + WINDOWs)
        self.sent = 0
        self.accepted = False
        self.rst = None          # (code, message) once the server reset it
        self.data = bytearray()  # what the server sent on it


class MuxClient:
    """One session: connect() says HELLO and reads the answer; then open streams and send."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.lock = threading.Lock()       # one writer at a time on the socket
        self.cond = threading.Condition()  # stream state changes
        self.streams = {}
        self.next_id = 1
        self.rx_seq = 0
        self.acked = 0
        self.reject = None
        self.welcome = False
        self.closed = False
        self.goodbye_rx = None  # the server's GOODBYE message, if any
        self.buf = b""
        self.reader = None

    # ---- the link ----------------------------------------------------------------------

    def _send(self, data):
        with self.lock:
            self.sock.sendall(data)

    def _read_frame(self):
        while True:
            if len(self.buf) >= HEADER.size:
                ftype, _, length, sid = HEADER.unpack_from(self.buf)
                if len(self.buf) >= HEADER.size + length:
                    payload = self.buf[HEADER.size:HEADER.size + length]
                    self.buf = self.buf[HEADER.size + length:]
                    return ftype, sid, payload
            chunk = self.sock.recv(262144)
            if not chunk:
                return None
            self.buf += chunk

    def connect(self):
        """HELLO; True on WELCOME, False on REJECT (self.reject = (code, message))."""
        self._send(hello())
        f = self._read_frame()
        if f is None:
            raise ConnectionError("the server closed the link before answering HELLO")
        ftype, _, payload = f
        if ftype == T_REJECT:
            code, = struct.unpack_from("!H", payload)
            self.reject = (code, payload[2:].decode("utf-8", "replace"))
            self.sock.close()
            return False
        assert ftype == T_WELCOME, "expected WELCOME, got frame type 0x%02x" % ftype
        self.welcome = True
        self.sock.settimeout(None)
        self.reader = threading.Thread(target=self._read_loop, daemon=True)
        self.reader.start()
        return True

    def _read_loop(self):
        try:
            while True:
                f = self._read_frame()
                if f is None:
                    break
                self._on_frame(*f)
        except OSError:
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _on_frame(self, ftype, sid, payload):
        if ftype == T_PING:
            self._send(frame(T_PONG, 0, payload))
            return
        if ftype < 0x01 or ftype > 0x0A:
            return                                  # ACK, PONG: nothing to do
        self.rx_seq += HEADER.size + len(payload)
        with self.cond:
            st = self.streams.get(sid)
            if ftype == T_OPEN_OK and st:
                st.accepted = True
                n, = struct.unpack("!I", payload)
                st.credit += n - st.sent            # early data counts from the first byte
                st.granted += n
            elif ftype == T_WINDOW and st:
                n, = struct.unpack("!I", payload)
                st.credit += n
                st.granted += n
            elif ftype == T_RST and st:
                code, = struct.unpack_from("!H", payload)
                st.rst = (code, payload[2:].decode("utf-8", "replace"))
                st.credit = 0
            elif ftype == T_DATA and st:
                st.data += payload
            elif ftype == T_GOODBYE:
                self.goodbye_rx = payload[2:].decode("utf-8", "replace")
            self.cond.notify_all()
        if self.rx_seq - self.acked >= ACK_EVERY or ftype != T_DATA:
            self.acked = self.rx_seq
            self._send(frame(T_ACK, 0, struct.pack("!Q", self.rx_seq)))

    def goodbye(self, code=0, message=b"done"):
        """GOODBYE: the session ends on purpose, and the server frees it at once."""
        self._send(frame(T_GOODBYE, 0, struct.pack("!H", code) + message))

    def abandon(self):
        """Drops the link without GOODBYE: the server keeps the session, detached."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # ---- streams -----------------------------------------------------------------------

    def open_mcp(self, name, scope, window=1 << 20):
        sid = self.next_id
        self.next_id += 2
        target, arg = name.encode(), scope.encode()
        payload = struct.pack("!BIH", KIND_MCP, window, len(target)) + target + arg
        with self.cond:
            self.streams[sid] = Stream(sid)
        self._send(frame(T_OPEN, sid, payload))
        return self.streams[sid]

    def wait_accepted(self, streams, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(s.accepted or s.rst for s in streams):
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return False
                self.cond.wait(left)
        return True

    def send_data(self, st, data):
        for i in range(0, len(data), MAX_PAYLOAD):
            self._send(frame(T_DATA, st.id, data[i:i + MAX_PAYLOAD]))

    def flood(self, streams, per_stream, deadline, stall, byte=b"x", check=None):
        """Sends `byte` repeated (never a newline) on every stream, round robin, as far as
        credit allows, until each has sent per_stream bytes, or no stream has had credit for
        `stall` seconds, or `deadline` (monotonic) passes, or check() returns False (checked
        between rounds). Returns "done", "stalled", "deadline" or "stopped"."""
        block = byte * MAX_PAYLOAD
        idle_since = None
        while True:
            if check is not None and not check():
                return "stopped"
            now = time.monotonic()
            if now >= deadline:
                return "deadline"
            moved = False
            for st in streams:
                with self.cond:
                    n = min(st.credit, MAX_PAYLOAD, per_stream - st.sent)
                    if st.rst or n <= 0:
                        continue
                    st.credit -= n
                    st.sent += n
                self._send(frame(T_DATA, st.id, block[:n]))
                moved = True
            if all(st.rst or st.sent >= per_stream for st in streams):
                return "done"
            if moved:
                idle_since = None
                continue
            idle_since = idle_since or now
            if now - idle_since >= stall:
                return "stalled"
            with self.cond:
                self.cond.wait(0.05)

    def close(self):
        self.abandon()
