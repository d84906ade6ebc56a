#!/usr/bin/env python3
"""dipc's text client (the assignment's suggested client, version 1).

    python3 text_client.py [HOST [PORT]]      (defaults 127.0.0.1 50007)

Asks for a command, then what it needs, sends it and prints the reply:

    read  [MAILBOX]            the mailbox's content
    write [MAILBOX [TEXT]]     replaces the mailbox's content with TEXT
    put   [KEY [VALUE]]        stores a new key
    get   [KEY]                a key's value
    del   [KEY]                removes a key
    stat                       the daemon's figures
    help                       this list
    quit                       (or end of input) leaves

What a command line leaves out is asked for, one prompt each, so both
"write 1 hello" and "write", "1", "hello" work. Prompts are shown only when
standard input is a terminal; piped input gets the replies alone. Errors go
to standard error as "error: <reason>" and the session goes on. When the
server cannot be reached or the connection is lost, the reason goes to
standard error as "text_client: <reason>" and the exit status is 1; Ctrl-C
leaves with status 130.
"""

import argparse
import sys

import dipc

COMMANDS = {
    "r": "read", "read": "read",
    "w": "write", "write": "write",
    "put": "put", "get": "get",
    "del": "del", "delete": "del",
    "stat": "stat", "help": "help", "?": "help",
    "q": "quit", "quit": "quit", "exit": "quit", "bye": "quit",
}

USAGE = """commands:
  read  [MAILBOX]            show a mailbox's content
  write [MAILBOX [TEXT]]     replace a mailbox's content with TEXT
  put   [KEY [VALUE]]        store a new key
  get   [KEY]                show a key's value
  del   [KEY]                remove a key
  stat                       the daemon's figures
  quit                       leave"""


class Session:
    """The prompt loop over one dipc.Client; input and output are streams."""

    def __init__(self, client, stdin, stdout, stderr, interactive):
        self.client = client
        self.stdin = stdin
        self.out = stdout
        self.err = stderr
        self.interactive = interactive

    def ask(self, prompt):
        """The next input line (None at end of input)."""
        if self.interactive:
            self.out.write(prompt)
            self.out.flush()
        line = self.stdin.readline()
        if not line:
            return None
        return line.rstrip("\r\n")

    def say(self, text):
        self.out.write(text + "\n")
        self.out.flush()

    def error(self, text):
        self.out.flush()
        self.err.write("error: %s\n" % text)
        self.err.flush()

    def number(self, given, prompt, what):
        text = given if given is not None else self.ask(prompt)
        if text is None:
            return None
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("%s %r is not a number" % (what, text.strip())) from None

    def run(self):
        """Until quit or end of input; 0, or 1 when the connection is lost."""
        while True:
            line = self.ask("command (read, write, put, get, del, stat, quit)> ")
            if line is None:
                self.client.close()
                return 0
            line = line.lstrip()
            word = line.split(maxsplit=1)[0] if line.strip() else ""
            if not word:
                continue
            command = COMMANDS.get(word.lower())
            rest = line[len(word):]
            if command is None:
                self.error("unknown command %r (try help)" % word)
                continue
            if command == "quit":
                self.client.quit()
                self.say("Goodbye")
                return 0
            try:
                self.do(command, rest)
            except dipc.DipcConnectError as e:
                self.error(str(e))
                return 1
            except (dipc.DipcError, ValueError, TypeError) as e:
                self.error(str(e))

    def do(self, command, rest):
        # "write 1 some text": the number, then the text after one space,
        # exactly as typed (like the wire's `w`); what is missing is asked.
        first, space, tail = rest.lstrip().partition(" ")
        first = first or None
        tail = tail if space else None
        if command == "help":
            self.say(USAGE)
        elif command == "stat":
            pairs = self.client.stat()
            self.say(" ".join("%s=%s" % pair for pair in pairs.items()))
        elif command == "read":
            m = self.number(first, "mailbox> ", "mailbox")
            if m is None:
                return
            version, data = self.client.read(m)
            self.say("mailbox %d, version %d, %d bytes:" % (m, version, len(data)))
            self.say(data.decode("utf-8", "replace"))
        elif command == "write":
            m = self.number(first, "mailbox> ", "mailbox")
            if m is None:
                return
            text = tail if tail is not None else self.ask("text> ")
            if text is None:
                return
            version = self.client.write(m, text)
            self.say("wrote %d bytes to mailbox %d, version %d"
                     % (len(text.encode("utf-8")), m, version))
        elif command == "put":
            key = self.number(first, "key> ", "key")
            if key is None:
                return
            value = tail if tail is not None else self.ask("value> ")
            if value is None:
                return
            self.client.put(key, value)
            self.say("stored key %d" % key)
        elif command == "get":
            key = self.number(first, "key> ", "key")
            if key is None:
                return
            value = self.client.get(key)
            if value is None:
                self.say("no such key %d" % key)
            else:
                self.say(value.decode("utf-8", "replace"))
        elif command == "del":
            key = self.number(first, "key> ", "key")
            if key is None:
                return
            if self.client.delete(key):
                self.say("deleted key %d" % key)
            else:
                self.say("no such key %d" % key)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Read and write dipc mailboxes (and keys) from a prompt or a pipe.")
    parser.add_argument("host", nargs="?", default=dipc.DEFAULT_HOST,
                        help="the daemon's host (default %(default)s)")
    parser.add_argument("port", nargs="?", type=int, default=dipc.DEFAULT_PORT,
                        help="the daemon's port (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for a reply (default %(default)s)")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error("port %d is not in 1..65535" % args.port)
    try:
        client = dipc.Client(args.host, args.port, timeout=args.timeout)
    except dipc.DipcError as e:
        print("text_client: %s" % e, file=sys.stderr)
        return 1
    interactive = sys.stdin.isatty()
    if interactive:
        print("connected to dipc on %s:%d; type help for the commands" % (args.host, args.port))
    try:
        return Session(client, sys.stdin, sys.stdout, sys.stderr, interactive).run()
    except KeyboardInterrupt:
        client.close()
        print()
        return 130


if __name__ == "__main__":
    sys.exit(main())
