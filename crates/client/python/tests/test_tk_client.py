"""tk_client.App on a live X display (Xvfb in the tests) and a live daemon:
DIPC_PORT (and DIPC_HOST) name the daemon, which must have 4 mailboxes;
DIPC_SCREENSHOT is where the window's PNG goes (taken with ImageMagick's
`import`). Prints "tk_client: all checks passed" when every check held;
any failed check raises (exit status 1)."""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tkinter as tk  # noqa: E402

import dipc  # noqa: E402
import tk_client  # noqa: E402

HOST = os.environ.get("DIPC_HOST", "127.0.0.1")
PORT = int(os.environ["DIPC_PORT"])
SCREENSHOT = os.environ["DIPC_SCREENSHOT"]
TEXT = "Hello from the Tk client!\nA second line, and UTF-8: caf\u00e9."


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok: %s" % what)


def settle(root):
    root.update_idletasks()
    root.update()


def set_entry(entry_var, value):
    entry_var.set(value)


def main():
    root = tk.Tk()
    app = tk_client.App(root, HOST, 1)
    root.geometry("+0+0")
    settle(root)

    # A port with no daemon: a clear status, no exception.
    set_entry(app.port_var, "1")
    app.connect_button.invoke()
    check("is dipc running on %s:1?" % HOST in app.status_var.get(),
          "Connect to a dead port says so: %r" % app.status_var.get())
    check(app.client is None, "no connection after the failure")

    # The real port: Connect, and the mailbox range comes from stat.
    set_entry(app.port_var, str(PORT))
    app.connect_button.invoke()
    check(app.status_var.get().startswith("connected to %s:%d: 4 mailboxes" % (HOST, PORT)),
          "Connect: %r" % app.status_var.get())
    check(str(app.mailbox_spin.cget("to")).startswith("4"), "the Spinbox stops at mailbox 4")

    # Write mailbox 2 from the text area.
    app.mailbox_spin.delete(0, "end")
    app.mailbox_spin.insert(0, "2")
    app.text.delete("1.0", "end")
    app.text.insert("1.0", TEXT)
    app.write_button.invoke()
    size = len(TEXT.encode("utf-8"))
    check(app.status_var.get() == "wrote %d bytes to mailbox 2, version 1" % size,
          "Write: %r" % app.status_var.get())
    with dipc.Client(HOST, PORT, timeout=5) as other:
        check(other.read(2) == (1, TEXT.encode("utf-8")),
              "another connection reads what the window wrote")

    # Errors land in the status line.
    app.mailbox_spin.delete(0, "end")
    app.mailbox_spin.insert(0, "9")
    app.read_button.invoke()
    check(app.status_var.get() == "error: mailbox 9 is out of range 1..4",
          "Read of mailbox 9: %r" % app.status_var.get())
    app.mailbox_spin.delete(0, "end")
    app.mailbox_spin.insert(0, "two")
    app.write_button.invoke()
    check(app.status_var.get() == "error: mailbox 'two' is not a number",
          "Write to mailbox 'two': %r" % app.status_var.get())
    app.mailbox_spin.delete(0, "end")
    app.mailbox_spin.insert(0, "3")
    app.text.delete("1.0", "end")
    app.text.insert("1.0", "x" * 3000)
    app.write_button.invoke()
    check("over the 2048-byte packet size" in app.status_var.get(),
          "Write of 3000 bytes: %r" % app.status_var.get())

    # Read mailbox 2 back into a cleared text area.
    app.mailbox_spin.delete(0, "end")
    app.mailbox_spin.insert(0, "2")
    app.text.delete("1.0", "end")
    app.text.insert("1.0", "this must be replaced")
    app.read_button.invoke()
    check(app.text.get("1.0", "end-1c") == TEXT, "Read shows what Write wrote")
    check(app.status_var.get() == "read %d bytes from mailbox 2, version 1" % size,
          "Read: %r" % app.status_var.get())

    # The screenshot of the window as it is now.
    root.lift()
    settle(root)
    check(root.winfo_ismapped(), "the window is on the screen")
    importer = shutil.which("import")
    if importer is None:
        raise SystemExit("ImageMagick's `import` is not installed (apt-get install imagemagick)")
    frame = root.wm_frame()
    subprocess.run([importer, "-window", frame, "-strip", SCREENSHOT], check=True, timeout=30)
    with open(SCREENSHOT, "rb") as png:
        check(png.read(8) == b"\x89PNG\r\n\x1a\n", "the screenshot %s is a PNG" % SCREENSHOT)

    # Quit closes the connection and the window.
    client = app.client
    app.quit_button.invoke()
    check(client.closed, "Quit closed the connection")
    try:
        root.winfo_exists()
        alive = True
    except tk.TclError:
        alive = False
    check(not alive, "Quit destroyed the window")
    print("tk_client: all checks passed")


if __name__ == "__main__":
    main()
