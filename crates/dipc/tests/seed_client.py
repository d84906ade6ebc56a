#!/usr/bin/env python3
"""Python 3 port of the sample client given with the assignment, made scriptable.

The original (Python 2):

    s = socket(AF_INET, SOCK_STREAM)
    s.connect((HOST, PORT))
    while True:
        message = raw_input("> ")
        if message == 'q': break
        if message != '':
            s.send(message)
            data = s.recv(1024)
            print 'Received', repr(data)
    s.close()

Like the original, each message goes out as it is, with no newline, and one
recv() per message takes the reply: it relies on the server treating a pause
as the end of a line and on each reply arriving in one piece. The messages
come from the command line (one argument each) or, with none, from stdin (one
per line) instead of raw_input; a message that is exactly 'q' ends the session
without being sent, as in the original. Each reply is printed on its own
line as `Received <repr of the bytes>`.

Usage: seed_client.py [--host HOST] PORT [MESSAGE ...]

Exit status: 0, or 2 when a reply does not come within the timeout.
"""

import sys
from socket import AF_INET, SOCK_STREAM, socket, timeout as SocketTimeout

HOST = 'localhost'
RECV_SIZE = 4096
TIMEOUT_SECONDS = 5.0


def main(argv):
    host = HOST
    if len(argv) >= 2 and argv[0] == '--host':
        host = argv[1]
        argv = argv[2:]
    if not argv:
        print('usage: seed_client.py [--host HOST] PORT [MESSAGE ...]', file=sys.stderr)
        return 64
    port = int(argv[0])
    if len(argv) > 1:
        messages = argv[1:]
    else:
        messages = (line.rstrip('\n') for line in sys.stdin)

    s = socket(AF_INET, SOCK_STREAM)
    s.settimeout(TIMEOUT_SECONDS)
    s.connect((host, port))
    try:
        for message in messages:
            if message == 'q':
                break
            if message != '':
                s.send(message.encode('utf-8'))
                try:
                    data = s.recv(RECV_SIZE)
                except SocketTimeout:
                    print('Timeout waiting for the reply to', repr(message), flush=True)
                    return 2
                print('Received', repr(data), flush=True)
    finally:
        s.close()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
