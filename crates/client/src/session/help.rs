//! The interactive session's own help.

/// Shown by `help` (then the server's help follows).
pub const HELP: &str = "\
Type a request and Enter: it goes to the server as typed, and its reply is
shown (a read's content with non-printable bytes escaped as \\xNN).

  r 1                 read mailbox 1
  w 1 hello world     write \"hello world\" to mailbox 1 (replaces it)
  w 1                 two-step write: the next line is the content
  append 1 hi there   add the line \"hi there\" to mailbox 1 (the oldest lines
                      are dropped when it is full)
  wait 1 3 5000       wait up to 5000 ms for mailbox 1 to pass version 3,
                      then read it (default 30000 ms)
  put 5 hello         store key 5 with the value \"hello\" (a new key only)
  get 5               the value of key 5
  del 5               remove key 5
  stat                the server's figures; stat 1: mailbox 1's length and
                      version; stat workers: the worker table
  q                   leave (the server says Goodbye)

Here:
  help                this text, then the server's own
  Ctrl-D              leave, as q does
  Ctrl-C              drop the line being typed
  Up, Down, Ctrl-R    the history of requests (kept in ~/.dipc_history)

Exact bytes (wb) are for scripts: client -s HOST:PORT write 1 --file F
";
