//! `--model thread`: one process serves every client, one thread per
//! connection: the main thread accepts and hands each client to a new
//! thread, as the seed's pthread server does.
//!
//! Each thread takes one of the process's worker slots for its connection,
//! so that in the mailbox locks a thread is a participant of its own, as a
//! pool worker is; when every slot is taken, the main thread stops accepting
//! and clients wait in the listen backlog until one leaves. If the process
//! dies, the supervisor repairs all its slots.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::TcpListener;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::client::{ServeContext, WorkerExit};
use crate::pool::{accept_blocking_stream, wait_for_client};

/// How long the main thread waits for a connection or a free slot before it
/// looks at its flags and its parent again.
const TICK: Duration = Duration::from_millis(500);

/// The slots no thread is using, lowest first out.
struct FreeSlots {
    free: Mutex<BinaryHeap<Reverse<usize>>>,
    returned: Condvar,
}

impl FreeSlots {
    fn take(&self, wait: Duration) -> Option<usize> {
        let free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut free, _) = self
            .returned
            .wait_timeout_while(free, wait, |f| f.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        free.pop().map(|Reverse(slot)| slot)
    }

    fn give_back(&self, slot: usize) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        free.push(Reverse(slot));
        self.returned.notify_one();
    }

    fn in_use(&self, of: usize) -> usize {
        of - self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Accepts and serves until stopped or orphaned; returns once every client
/// thread has finished.
pub fn run_thread_server(
    serve: &ServeContext<'_>,
    listener: &TcpListener,
    slots: Range<usize>,
    set_title: &dyn Fn(&str),
) -> WorkerExit {
    let capacity = slots.len();
    let slots = FreeSlots {
        free: Mutex::new(slots.map(Reverse).collect()),
        returned: Condvar::new(),
    };
    let me = std::process::id() as i32;
    let table = serve.segment.worker_slots();
    let mut shown = usize::MAX;
    std::thread::scope(|scope| loop {
        if let Some(exit) = serve.between_clients() {
            return exit;
        }
        let busy = slots.in_use(capacity);
        if busy != shown {
            set_title(&format!("thread server, {busy} of {capacity} threads busy"));
            shown = busy;
        }
        let Some(slot) = slots.take(TICK) else {
            continue;
        };
        let accepted = if wait_for_client(listener, TICK) {
            accept_blocking_stream(listener)
        } else {
            None
        };
        let Some((stream, peer)) = accepted else {
            slots.give_back(slot);
            continue;
        };
        table[slot].claim();
        table[slot].set_pid(me);
        let slots = &slots;
        let spawned = std::thread::Builder::new()
            .name(format!("client {slot}"))
            .spawn_scoped(scope, move || {
                let served = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    serve.serve_client(slot, stream, peer)
                }));
                if served.is_err() {
                    // The thread is gone as a dead process would be: clear
                    // its slot from every mailbox lock before reusing it.
                    log::error!("the thread serving {peer} panicked; its client is disconnected");
                    if let Some(me) = serve.segment.participant(slot) {
                        serve.segment.repair_participant(me);
                    }
                }
                table[slot].release(serve.segment.stats());
                slots.give_back(slot);
            });
        if let Err(e) = spawned {
            log::error!("cannot start a thread for client {peer}: {e}");
            table[slot].release(serve.segment.stats());
            slots.give_back(slot);
        }
    })
}
