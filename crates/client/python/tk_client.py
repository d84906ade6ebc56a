#!/usr/bin/env python3
"""dipc's window client (the assignment's suggested client, version 2).

    python3 tk_client.py [HOST [PORT]]        (defaults 127.0.0.1 50007)

A Tk window: the daemon's host and port (Connect), a mailbox selector, a
text area, and Read (the mailbox's content into the text area), Write (the
text area into the mailbox) and Quit buttons. A status line at the bottom
says what the last action did, or why it failed; errors never raise out of
a button. Read and Write connect first when there is no connection.

The App class holds the logic; its handlers (connect, read, write, quit)
can be called directly, or through the buttons' invoke(), e.g. in tests.
"""

import argparse
import sys
import tkinter as tk

import dipc

ERROR_COLOUR = "#b00020"
OK_COLOUR = "#1b5e20"


class App:
    """The window's widgets and handlers, over one dipc.Client at a time."""

    def __init__(self, root, host=dipc.DEFAULT_HOST, port=dipc.DEFAULT_PORT, timeout=5.0):
        self.root = root
        self.timeout = timeout
        self.client = None
        self.mailboxes = None
        root.title("dipc client")
        # An exception that escapes a handler anyway lands in the status
        # line, not in a dialog or a traceback.
        root.report_callback_exception = self._report_exception
        root.protocol("WM_DELETE_WINDOW", self.quit)

        top = tk.Frame(root, padx=6, pady=6)
        top.pack(fill="x")
        tk.Label(top, text="Host").pack(side="left")
        self.host_var = tk.StringVar(value=host)
        self.host_entry = tk.Entry(top, textvariable=self.host_var, width=16)
        self.host_entry.pack(side="left", padx=(2, 8))
        tk.Label(top, text="Port").pack(side="left")
        self.port_var = tk.StringVar(value=str(port))
        self.port_entry = tk.Entry(top, textvariable=self.port_var, width=6)
        self.port_entry.pack(side="left", padx=(2, 8))
        self.connect_button = tk.Button(top, text="Connect", command=self.connect)
        self.connect_button.pack(side="left")
        tk.Label(top, text="Mailbox").pack(side="left", padx=(12, 2))
        self.mailbox_var = tk.StringVar(value="1")
        self.mailbox_spin = tk.Spinbox(top, from_=1, to=4096, width=5,
                                       textvariable=self.mailbox_var)
        self.mailbox_spin.pack(side="left")

        self.text = tk.Text(root, width=60, height=12, wrap="word", undo=True)
        self.text.pack(fill="both", expand=True, padx=6)

        buttons = tk.Frame(root, padx=6, pady=6)
        buttons.pack(fill="x")
        self.read_button = tk.Button(buttons, text="Read", width=8, command=self.read)
        self.read_button.pack(side="left")
        self.write_button = tk.Button(buttons, text="Write", width=8, command=self.write)
        self.write_button.pack(side="left", padx=6)
        self.quit_button = tk.Button(buttons, text="Quit", width=8, command=self.quit)
        self.quit_button.pack(side="right")

        self.status_var = tk.StringVar(value="not connected")
        self.status = tk.Label(root, textvariable=self.status_var, anchor="w",
                               relief="sunken", padx=4)
        self.status.pack(fill="x", side="bottom")

    # -- status -----------------------------------------------------------

    def say(self, text):
        self.status_var.set(text)
        self.status.configure(fg=OK_COLOUR)

    def fail(self, text):
        self.status_var.set("error: %s" % text)
        self.status.configure(fg=ERROR_COLOUR)

    def _report_exception(self, kind, value, traceback):
        self.fail("%s: %s" % (kind.__name__, value))

    # -- handlers ---------------------------------------------------------

    def connect(self):
        """Connects to the host and port in the fields (dropping any older
        connection); True on success. Sets the mailbox range from stat."""
        self.disconnect()
        host = self.host_var.get().strip()
        try:
            port = int(self.port_var.get().strip())
            if not 1 <= port <= 65535:
                raise ValueError
        except ValueError:
            self.fail("port %r is not a number in 1..65535" % self.port_var.get().strip())
            return False
        try:
            client = dipc.Client(host, port, timeout=self.timeout)
            figures = client.stat()
        except dipc.DipcError as e:
            self.fail(str(e))
            return False
        self.client = client
        self.mailboxes = figures.get("mailboxes")
        if isinstance(self.mailboxes, int) and self.mailboxes > 0:
            self.mailbox_spin.configure(to=self.mailboxes)
        self.say("connected to %s:%d: %s mailboxes of %s bytes, %s-byte packets" % (
            host, port, self.mailboxes, figures.get("mailbox_bytes"),
            figures.get("packet_bytes")))
        return True

    def disconnect(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def _mailbox(self):
        text = self.mailbox_var.get().strip()
        try:
            return int(text)
        except ValueError:
            raise ValueError("mailbox %r is not a number" % text) from None

    def _call(self, action):
        """Runs action(client) on the connection (made if missing); errors
        go to the status line. The result, or None on failure."""
        try:
            m = self._mailbox()
        except ValueError as e:
            self.fail(str(e))
            return None
        if self.client is None and not self.connect():
            return None
        try:
            return action(self.client, m)
        except dipc.DipcConnectError as e:
            self.disconnect()
            self.fail("%s (press Connect to reconnect)" % e)
        except (dipc.DipcError, ValueError, TypeError) as e:
            self.fail(str(e))
        return None

    def read(self):
        """Read: mailbox's content into the text area."""
        def action(client, m):
            version, data = client.read(m)
            self.text.delete("1.0", "end")
            self.text.insert("1.0", data.decode("utf-8", "replace"))
            self.say("read %d bytes from mailbox %d, version %d" % (len(data), m, version))
            return version, data
        return self._call(action)

    def write(self):
        """Write: the text area's content (UTF-8) into the mailbox."""
        def action(client, m):
            data = self.text.get("1.0", "end-1c").encode("utf-8")
            version = client.write(m, data)
            self.say("wrote %d bytes to mailbox %d, version %d" % (len(data), m, version))
            return version
        return self._call(action)

    def quit(self):
        """Quit: closes the connection and the window."""
        if self.client is not None:
            self.client.quit()
            self.client = None
        self.root.destroy()


def main(argv=None):
    parser = argparse.ArgumentParser(description="A Tk window on a dipc daemon's mailboxes.")
    parser.add_argument("host", nargs="?", default=dipc.DEFAULT_HOST)
    parser.add_argument("port", nargs="?", type=int, default=dipc.DEFAULT_PORT)
    args = parser.parse_args(argv)
    try:
        root = tk.Tk()
    except tk.TclError as e:
        print("tk_client: cannot open a window (%s); is DISPLAY set?" % e, file=sys.stderr)
        return 1
    app = App(root, args.host, args.port)
    app.connect()
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
