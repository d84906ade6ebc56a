"""dipc.py against a live daemon: DIPC_HOST (default 127.0.0.1) and
DIPC_PORT name it; it must have at least 8 mailboxes of 8 KiB and 2 KiB
packets (crates/client/tests/python_clients.rs starts one)."""

import os
import random
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import dipc  # noqa: E402

HOST = os.environ.get("DIPC_HOST", "127.0.0.1")
try:
    PORT = int(os.environ["DIPC_PORT"])
except (KeyError, ValueError):
    sys.exit("test_dipc.py: set DIPC_PORT to a live dipc daemon's port")


def connect():
    return dipc.Client(HOST, PORT, timeout=10)


class Mailboxes(unittest.TestCase):
    def test_write_then_read_text(self):
        with connect() as c:
            v1 = c.write(1, "hello, dipc")
            self.assertEqual(c.read(1), (v1, b"hello, dipc"))
            v2 = c.write(1, "caf\u00e9")
            self.assertEqual(v2, v1 + 1)
            self.assertEqual(c.read(1), (v2, "caf\u00e9".encode("utf-8")))

    def test_all_256_byte_values_round_trip(self):
        data = bytes(range(256))
        with connect() as c:
            for payload in (data, data[::-1], b"\n" + data + b"\r\n", data * 8):
                version = c.write(2, payload)
                self.assertEqual(c.read(2), (version, payload))
        # Another connection sees the same bytes.
        with connect() as other:
            self.assertEqual(other.read(2)[1], data * 8)

    def test_empty_content(self):
        with connect() as c:
            c.write(3, b"something")
            version = c.write(3, b"")
            self.assertEqual(c.read(3), (version, b""))
            self.assertEqual(c.stat(3), {"mailbox": 3, "length": 0, "version": version})

    def test_err_replies_raise_and_the_connection_stays_usable(self):
        with connect() as c:
            with self.assertRaises(dipc.DipcError) as caught:
                c.read(99)
            self.assertEqual(caught.exception.reason, "mailbox 99 is out of range 1..8")
            with self.assertRaises(dipc.DipcError) as caught:
                c.write(4, b"x" * 3000)
            self.assertIn("over the 2048-byte packet size", caught.exception.reason)
            with self.assertRaises(dipc.DipcError):
                c.write(0, b"zero is no mailbox")
            # The refused wb's bytes were skipped: still in step.
            version = c.write(4, b"after the errors")
            self.assertEqual(c.read(4), (version, b"after the errors"))
            self.assertFalse(c.closed)

    def test_bad_arguments_are_refused_before_sending(self):
        with connect() as c:
            with self.assertRaises(TypeError):
                c.read("1")
            with self.assertRaises(ValueError):
                c.put(1, "two\nlines")
            with self.assertRaises(ValueError):
                c.put(1, "")
            with self.assertRaises(ValueError):
                c.get("one")
            self.assertEqual(c.write(4, b"ok"), c.stat(4)["version"])

    def test_versions_and_stat(self):
        with connect() as c:
            before = c.stat(5)["version"]
            v = c.write(5, b"12345")
            self.assertEqual(v, before + 1)
            self.assertEqual(c.stat(5), {"mailbox": 5, "length": 5, "version": v})
            figures = c.stat()
            self.assertEqual(figures["mailboxes"], 8)
            self.assertEqual(figures["mailbox_bytes"], 8192)
            self.assertEqual(figures["packet_bytes"], 2048)
            self.assertEqual(figures["port"], PORT)
            self.assertEqual(figures["versions"].split(",")[4], str(v))

    def test_help_and_quit(self):
        c = connect()
        self.assertIn("wb", c.help())
        c.quit()
        self.assertTrue(c.closed)
        with self.assertRaises(dipc.DipcConnectError):
            c.read(1)

    def test_module_functions(self):
        where = {"host": HOST, "port": PORT}
        version = dipc.write(6, b"one shot", **where)
        self.assertEqual(dipc.read(6, **where), (version, b"one shot"))
        self.assertEqual(dipc.stat(6, **where)["length"], 8)


class KeyValue(unittest.TestCase):
    def test_put_get_delete(self):
        key = random.randrange(1, 1 << 62)
        with connect() as c:
            self.assertIsNone(c.get(key))
            self.assertIsNone(c.put(key, "a value with  spaces"))
            self.assertEqual(c.get(key), b"a value with  spaces")
            with self.assertRaises(dipc.DipcError) as caught:
                c.put(key, "again")
            self.assertEqual(caught.exception.reason, "key exists")
            self.assertTrue(c.delete(key))
            self.assertIsNone(c.get(key))
            self.assertFalse(c.delete(key))
            c.put(-key, b"negative keys too")
            self.assertEqual(dipc.get(-key, host=HOST, port=PORT), b"negative keys too")
            self.assertTrue(dipc.delete(-key, host=HOST, port=PORT))

    def test_key_out_of_range_raises(self):
        with connect() as c:
            with self.assertRaises(dipc.DipcError) as caught:
                c.get(1 << 64)
            self.assertEqual(caught.exception.reason, "key out of range")


class Connecting(unittest.TestCase):
    def test_no_daemon_says_so(self):
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        with self.assertRaises(dipc.DipcConnectError) as caught:
            dipc.Client("127.0.0.1", port, timeout=5)
        self.assertIn("is dipc running on 127.0.0.1:%d?" % port, str(caught.exception))
        self.assertIsInstance(caught.exception, ConnectionError)


class Append(unittest.TestCase):
    def test_append_adds_lines_and_drops_the_oldest(self):
        with connect() as c:
            c.write(7, b"")
            v = c.append(7, "first")
            self.assertEqual(c.append(7, "second"), v + 1)
            self.assertEqual(c.read(7), (v + 1, b"first\nsecond\n"))
            mailbox_bytes = c.stat()["mailbox_bytes"]
            lines = ["line %04d %s" % (i, "x" * 90) for i in range(100)]
            for line in lines:
                last = c.append(7, line)
            version, data = c.read(7)
            self.assertEqual(version, last)
            self.assertLessEqual(len(data), mailbox_bytes)
            self.assertTrue(data.endswith(b"\n"))
            kept = data.decode().split("\n")[:-1]
            # Whole lines only, the newest ones, in order.
            self.assertEqual(kept, lines[len(lines) - len(kept):])
            self.assertNotIn("first", kept)


class Wait(unittest.TestCase):
    def test_wait_returns_at_once_when_already_newer(self):
        with connect() as c:
            v = c.write(8, b"now")
            got = c.wait(8, v - 1, timeout_ms=5000)
            self.assertEqual(got, (v, b"now"))

    def test_wait_times_out(self):
        with connect() as c:
            v = c.write(8, b"still")
            started = time.monotonic()
            got = c.wait(8, v, timeout_ms=300)
            self.assertIsNone(got)
            self.assertGreaterEqual(time.monotonic() - started, 0.25)
            # Still in step after the TIMEOUT line.
            self.assertEqual(c.read(8), (v, b"still"))

    def test_wait_wakes_on_a_write(self):
        with connect() as c:
            v = c.write(8, b"before")
            c.wait(8, v - 1, timeout_ms=1000)

            def later():
                time.sleep(0.3)
                dipc.write(8, b"after", host=HOST, port=PORT)

            writer = threading.Thread(target=later)
            writer.start()
            started = time.monotonic()
            got = c.wait(8, v, timeout_ms=10000)
            elapsed = time.monotonic() - started
            writer.join()
            self.assertEqual(got, (v + 1, b"after"))
            # Woken, not answered at the deadline: a lost wake-up would be
            # answered at 10 s, with the same content (the version is
            # looked at first), so only the time tells them apart.
            self.assertLess(elapsed, 5)

    def test_wait_errors(self):
        with connect() as c:
            with self.assertRaises(ValueError):
                c.wait(8, 0, timeout_ms=0)
            with self.assertRaises(dipc.DipcError) as caught:
                c.wait(99, 0, timeout_ms=10)
            self.assertIn("out of range", caught.exception.reason)


class Scripted:
    """A one-connection server that answers each request line with the
    next scripted reply, sent one byte at a time (the client must gather
    a reply from many segments). Records the requests it got."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.listener.accept()
        with conn:
            pending = b""
            for reply in self.replies:
                while b"\n" not in pending:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    pending += chunk
                line, _, pending = pending.partition(b"\n")
                self.requests.append(line)
                for i in range(len(reply)):
                    conn.sendall(reply[i:i + 1])
                    time.sleep(0.001)

    def close(self):
        self.listener.close()
        self.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RepliesParsedExactly(unittest.TestCase):
    """The new requests' replies as the protocol defines them, from a
    scripted server: checked whatever the live daemon supports."""

    def test_append_and_wait_replies(self):
        body = b"two\nlines\x00"
        with Scripted([
            b"OK appended 6 bytes to mailbox 3, version 12\n",
            b"OK %d bytes from mailbox 3, version 13\n%s\n" % (len(body), body),
            b"TIMEOUT mailbox 3 is at version 13\n",
            b"ERR unknown command 'wait'\n",
            b"OK 0 bytes from mailbox 3, version 14\n\n",
        ]) as server:
            with dipc.Client("127.0.0.1", server.port, timeout=5) as c:
                self.assertEqual(c.append(3, "hello"), 12)
                self.assertEqual(c.wait(3, 12), (13, body))
                self.assertIsNone(c.wait(3, 13, timeout_ms=50))
                with self.assertRaises(dipc.DipcError) as caught:
                    c.wait(3, 13)
                self.assertEqual(caught.exception.reason, "unknown command 'wait'")
                self.assertEqual(c.wait(3, 13, 3600000), (14, b""))
        self.assertEqual(server.requests, [
            b"append 3 hello", b"wait 3 12", b"wait 3 13 50", b"wait 3 13",
            b"wait 3 13 3600000",
        ])

    def test_a_body_without_its_lf_is_out_of_step(self):
        with Scripted([b"OK 3 bytes from mailbox 1, version 1\nabcX"]) as server:
            c = dipc.Client("127.0.0.1", server.port, timeout=5)
            with self.assertRaises(dipc.DipcConnectError):
                c.read(1)
            self.assertTrue(c.closed)

    def test_an_unexpected_reply_closes_the_client(self):
        with Scripted([b"R 1\n"]) as server:
            c = dipc.Client("127.0.0.1", server.port, timeout=5)
            with self.assertRaises(dipc.DipcConnectError) as caught:
                c.read(1)
            self.assertIn("unexpected reply b'R 1'", str(caught.exception))
            self.assertTrue(c.closed)
            with self.assertRaises(dipc.DipcConnectError):
                c.read(1)

    def test_an_err_keeps_the_client_open(self):
        with Scripted([b"ERR mailbox 9 is out of range 1..4\n", b"ERR no such key\n"]) as server:
            with dipc.Client("127.0.0.1", server.port, timeout=5) as c:
                with self.assertRaises(dipc.DipcError) as caught:
                    c.read(9)
                self.assertEqual(caught.exception.reason, "mailbox 9 is out of range 1..4")
                self.assertFalse(c.closed)
                self.assertIsNone(c.get(5))

    def test_an_announced_body_over_the_cap_is_refused(self):
        # The server then holds the connection open: no end of stream to
        # stop a client that would wait for the bytes.
        with Scripted([b"OK 99999999999 bytes from mailbox 1, version 1\n", b""]) as server:
            c = dipc.Client("127.0.0.1", server.port, timeout=5)
            with self.assertRaises(dipc.DipcConnectError) as caught:
                c.read(1)
            # Refused at the header, not by the 5 s timeout.
            self.assertIn("announces 99999999999 bytes, over the 1048640", str(caught.exception))
            self.assertTrue(c.closed)

    def test_a_closed_connection_is_reported(self):
        with Scripted([b"OK 10 bytes from mailbox 1, version 1\nabc"]) as server:
            c = dipc.Client("127.0.0.1", server.port, timeout=5)
            with self.assertRaises(dipc.DipcConnectError) as caught:
                c.read(1)
            self.assertIn("closed the connection", str(caught.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
