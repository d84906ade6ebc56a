"""dipc: a client for the dipc daemon (Python 3, standard library only).

dipc serves k mailboxes in shared memory, and a key-value store, over a
text protocol on TCP (see docs/prog3.md, "Wire protocol"). A Client is one
connection; every method sends one request and parses its reply exactly.

Example (a daemon started with ``./dipc 4 8 50007 2``)::

    import dipc

    with dipc.Client("127.0.0.1", 50007, timeout=5) as c:
        version = c.write(1, b"hello\\x00world")  # any bytes (str: UTF-8)
        version, data = c.read(1)                # (1, b'hello\\x00world')
        c.put(42, "answer")                      # a new key; ERR if it exists
        c.get(42)                                # b'answer' (None: no such key)
        c.delete(42)                             # True (False: no such key)
        c.stat()["mailboxes"]                    # 4
        c.append(2, "a log line")                # text + LF; old lines drop
        c.wait(1, version, timeout_ms=1000)      # None: no newer write in 1 s

    dipc.read(1, port=50007)                     # one request, one connection

``delete`` is the wire's ``del`` (``del`` is a Python keyword). An ``ERR``
reply raises DipcError with the server's reason (``err.reason``), and the
Client stays usable; but ``get`` returns None and ``delete`` returns False
for ``ERR no such key``. A server that cannot be reached raises
DipcConnectError, which says "is dipc running on HOST:PORT?". After a
timeout, a lost connection, or a reply that is neither ``ERR`` nor the
request's (a body announced over 1 MiB + 64 bytes included) the Client is
closed and DipcConnectError raised: the stream is out of step, so make a
new one.
"""

import re
import socket

__all__ = [
    "Client",
    "DipcError",
    "DipcConnectError",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "read",
    "write",
    "put",
    "get",
    "delete",
    "stat",
    "append",
    "wait",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50007
DEFAULT_TIMEOUT = 10.0
# The server's own default for `wait` without a timeout.
WAIT_DEFAULT_MS = 30000
WAIT_MAX_MS = 3600000
# No reply header is near this long; a longer line means a confused stream.
_MAX_LINE = 1 << 20
# No body dipc sends is longer: a read's content is at most one packet (1 MiB
# at most), a help text or worker table far less. A longer announced body is
# refused, not buffered.
_MAX_BODY = (1 << 20) + 64

_READ_OK = re.compile(rb"OK (\d+) bytes from mailbox (\d+), version (\d+)")
_WROTE_OK = re.compile(rb"OK wrote (\d+) bytes to mailbox (\d+), version (\d+)")
_APPENDED_OK = re.compile(rb"OK appended (\d+) bytes to mailbox (\d+), version (\d+)")
_STAT_MAILBOX_OK = re.compile(rb"OK mailbox (\d+): (\d+) bytes, version (\d+)")
_HELP_OK = re.compile(rb"OK (\d+) bytes of help")
_WAIT_TIMEOUT = re.compile(rb"TIMEOUT mailbox (\d+) is at version (\d+)")


class DipcError(Exception):
    """An ``ERR <reason>`` reply (``reason`` holds it), or a failed exchange."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class DipcConnectError(DipcError, ConnectionError):
    """The daemon could not be reached, the connection was lost, or the
    stream is out of step (a reply that is not dipc's): the Client is closed."""


def _mailbox(m):
    if isinstance(m, bool) or not isinstance(m, int):
        raise TypeError("mailbox must be an int, not %r" % (m,))
    return m


def _key(key):
    if isinstance(key, bool):
        raise TypeError("key must be an int, not %r" % (key,))
    if isinstance(key, int):
        return str(key).encode()
    if isinstance(key, (str, bytes)):
        raw = key.encode() if isinstance(key, str) else key
        if re.fullmatch(rb"[-+]?[0-9]+", raw):
            return raw
        raise ValueError("key must be an integer, not %r" % (key,))
    raise TypeError("key must be an int, not %r" % (key,))


def _line_text(text, what):
    """Text that travels inside one request line: no LF, CR or NUL."""
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    for bad, name in ((b"\n", "LF"), (b"\r", "CR"), (b"\0", "NUL")):
        if bad in raw:
            raise ValueError("%s cannot hold %s: it ends the request line" % (what, name))
    return raw


class Client:
    """One connection to a dipc daemon; a context manager (closes on exit).

    ``timeout`` (seconds) bounds connecting and each reply; ``wait`` allows
    its own timeout on top of it.
    """

    def __init__(self, host=DEFAULT_HOST, port=DEFAULT_PORT, timeout=DEFAULT_TIMEOUT):
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self._buf = bytearray()
        where = "%s:%s" % (host, port)
        hint = "is dipc running on %s?" % where
        try:
            self._sock = socket.create_connection((host, self.port), timeout=timeout)
        except ConnectionRefusedError:
            raise DipcConnectError("cannot connect to %s: connection refused: %s" % (where, hint)) from None
        except socket.timeout:
            raise DipcConnectError("cannot connect to %s: no answer within %s s: %s" % (where, timeout, hint)) from None
        except socket.gaierror as e:
            raise DipcConnectError("cannot resolve host %r: %s" % (host, e.strerror)) from None
        except OSError as e:
            raise DipcConnectError("cannot connect to %s: %s: %s" % (where, e.strerror or e, hint)) from None
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- plumbing ---------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        state = "open" if self._sock is not None else "closed"
        return "<dipc.Client %s:%s %s>" % (self.host, self.port, state)

    @property
    def closed(self):
        return self._sock is None

    def close(self):
        """Closes the connection (without a ``q``: the server needs none)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _lost(self, why):
        self.close()
        return DipcConnectError("%s:%s: %s" % (self.host, self.port, why))

    def _sock_or_raise(self):
        if self._sock is None:
            raise DipcConnectError("%s:%s: the connection is closed" % (self.host, self.port))
        return self._sock

    def _send(self, data, reply_timeout=None):
        sock = self._sock_or_raise()
        sock.settimeout(self.timeout if reply_timeout is None else reply_timeout)
        try:
            sock.sendall(data)
        except socket.timeout:
            raise self._lost("sending timed out; connection closed") from None
        except OSError as e:
            raise self._lost("connection lost while sending: %s" % (e.strerror or e)) from None

    def _fill(self):
        sock = self._sock_or_raise()
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise self._lost("no reply within %s s; connection closed" % sock.gettimeout()) from None
        except OSError as e:
            raise self._lost("connection lost: %s" % (e.strerror or e)) from None
        if not chunk:
            raise self._lost("the server closed the connection")
        self._buf += chunk

    def _line(self):
        """One reply line, without its LF."""
        start = 0
        while True:
            at = self._buf.find(b"\n", start)
            if at >= 0:
                line = bytes(self._buf[:at])
                del self._buf[: at + 1]
                return line
            if len(self._buf) > _MAX_LINE:
                raise self._lost("a reply line over %d bytes: not a dipc server?" % _MAX_LINE)
            start = len(self._buf)
            self._fill()

    def _exact(self, n):
        while len(self._buf) < n:
            self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _body(self, length):
        """``length`` bytes of content, then the LF that ends them."""
        if length > _MAX_BODY:
            raise self._lost(
                "a reply announces %d bytes, over the %d a dipc reply can hold; connection closed"
                % (length, _MAX_BODY)
            )
        data = self._exact(length + 1)
        if data[-1:] != b"\n":
            raise self._lost("a reply's content did not end with LF: out of step")
        return data[:-1]

    def _unexpected(self, line):
        """The error for a reply that is not the request's: an ERR keeps the
        Client in step (DipcError); anything else leaves it out of step, so
        the Client is closed (DipcConnectError, as for a lost connection)."""
        if line.startswith(b"ERR "):
            return DipcError(line[4:].decode("utf-8", "replace"))
        return self._lost("unexpected reply %r: not a dipc server?; connection closed" % line)

    def _match(self, pattern, line):
        found = pattern.fullmatch(line)
        if found is None:
            raise self._unexpected(line)
        return found

    # -- mailboxes --------------------------------------------------------

    def read(self, m):
        """``r <m>``: mailbox m's (version, content bytes)."""
        self._send(b"r %d\n" % _mailbox(m))
        found = self._match(_READ_OK, self._line())
        return int(found.group(3)), self._body(int(found.group(1)))

    def write(self, m, data):
        """``wb <m> <len>``: replaces mailbox m's content with ``data``
        (bytes, any values; str is sent as UTF-8). Returns the new version."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._send(b"wb %d %d\n" % (_mailbox(m), len(raw)) + raw)
        return int(self._match(_WROTE_OK, self._line()).group(3))

    def append(self, m, line):
        """``append <m> <line>``: adds line plus LF to mailbox m, the oldest
        whole lines dropped when it would overflow. Returns the new version.
        The line cannot hold LF, CR or NUL."""
        raw = _line_text(line, "an appended line")
        self._send(b"append %d %s\n" % (_mailbox(m), raw))
        return int(self._match(_APPENDED_OK, self._line()).group(3))

    def wait(self, m, after_version, timeout_ms=None):
        """``wait <m> <version> [<ms>]``: (version, content) as soon as
        mailbox m is past ``after_version`` (at once if it already is), or
        None when the server's timeout passes first (default 30000 ms,
        1..3600000)."""
        request = b"wait %d %d" % (_mailbox(m), int(after_version))
        ms = WAIT_DEFAULT_MS
        if timeout_ms is not None:
            ms = int(timeout_ms)
            if not 1 <= ms <= WAIT_MAX_MS:
                raise ValueError("timeout_ms must be in 1..%d, not %d" % (WAIT_MAX_MS, ms))
            request += b" %d" % ms
        # The server answers by its own deadline; ours allows for the trip.
        self._send(request + b"\n", reply_timeout=ms / 1000.0 + (self.timeout or DEFAULT_TIMEOUT))
        line = self._line()
        if _WAIT_TIMEOUT.fullmatch(line):
            return None
        found = self._match(_READ_OK, line)
        return int(found.group(3)), self._body(int(found.group(1)))

    def stat(self, m=None):
        """``stat``: the daemon's ``key=value`` pairs as a dict (values that
        are integers become int; ``lengths`` and ``versions`` stay strings).
        ``stat(m)``: {"mailbox": m, "length": n, "version": v}."""
        if m is not None:
            self._send(b"stat %d\n" % _mailbox(m))
            found = self._match(_STAT_MAILBOX_OK, self._line())
            return {
                "mailbox": int(found.group(1)),
                "length": int(found.group(2)),
                "version": int(found.group(3)),
            }
        self._send(b"stat\n")
        line = self._line()
        if not line.startswith(b"OK "):
            raise self._unexpected(line)
        pairs = {}
        for word in line[3:].decode("utf-8", "replace").split():
            key, sep, value = word.partition("=")
            if sep:
                pairs[key] = int(value) if value.isdigit() else value
        return pairs

    def help(self):
        """``help``: the server's help text."""
        self._send(b"help\n")
        found = self._match(_HELP_OK, self._line())
        return self._body(int(found.group(1))).decode("utf-8", "replace")

    def quit(self):
        """``q``: the server says Goodbye and closes; so does this Client."""
        try:
            self._send(b"q\n")
            self._exact(len(b"Goodbye"))
        except DipcConnectError:
            pass
        finally:
            self.close()

    # -- key-value store --------------------------------------------------

    def put(self, key, value):
        """``put <key> <value>``: stores a new key (a 64-bit integer). A key
        that exists raises DipcError('key exists'). The value (str: UTF-8)
        must not be empty nor hold LF, CR or NUL."""
        raw = _line_text(value, "a value")
        if not raw:
            raise ValueError("a value cannot be empty")
        self._send(b"put %s %s\n" % (_key(key), raw))
        line = self._line()
        if line != b"OK":
            raise self._unexpected(line)

    def get(self, key):
        """``get <key>``: the value as bytes, or None when the key is not
        stored. (The wire cannot tell a value that begins with 'ERR ' from
        an error; such a value raises DipcError.)"""
        self._send(b"get %s\n" % _key(key))
        line = self._line()
        if line == b"ERR no such key":
            return None
        if line.startswith(b"ERR "):
            raise self._unexpected(line)
        return line

    def delete(self, key):
        """``del <key>`` (named delete: del is a Python keyword). True when
        the key was removed, False when it was not stored."""
        self._send(b"del %s\n" % _key(key))
        line = self._line()
        if line == b"OK":
            return True
        if line == b"ERR no such key":
            return False
        raise self._unexpected(line)


# -- one request, one connection ---------------------------------------------


def _once(method, *args, host=DEFAULT_HOST, port=DEFAULT_PORT, timeout=DEFAULT_TIMEOUT):
    with Client(host, port, timeout=timeout) as client:
        return getattr(client, method)(*args)


def read(m, **where):
    """Client.read on a connection of its own (host=, port=, timeout=)."""
    return _once("read", m, **where)


def write(m, data, **where):
    """Client.write on a connection of its own."""
    return _once("write", m, data, **where)


def put(key, value, **where):
    """Client.put on a connection of its own."""
    return _once("put", key, value, **where)


def get(key, **where):
    """Client.get on a connection of its own."""
    return _once("get", key, **where)


def delete(key, **where):
    """Client.delete (wire: del) on a connection of its own."""
    return _once("delete", key, **where)


def stat(m=None, **where):
    """Client.stat on a connection of its own."""
    return _once("stat", m, **where)


def append(m, line, **where):
    """Client.append on a connection of its own."""
    return _once("append", m, line, **where)


def wait(m, after_version, timeout_ms=None, **where):
    """Client.wait on a connection of its own."""
    return _once("wait", m, after_version, timeout_ms, **where)
