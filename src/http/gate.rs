//! The connection gate: `[server] max_connections` slots shared by every connection that is not an
//! admitted listener (requests whose head is still being read, hyper requests, event streams),
//! on every port, so idle or slow clients cannot use up the file descriptors listeners need.
//!
//! When every slot is taken, a new connection takes the slot of the connection that has been
//! reading its head the longest, which is closed. A flood of idle or byte-a-second sockets (a
//! slowloris) therefore only ever evicts itself: a real player or probe sends its head within a
//! round trip and is past the gate long before a thousand newer connections arrive. Only when every
//! slot holds a connection past its head (requests being answered, event streams) is a new
//! connection refused, with 503.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus::IntGauge;
use tokio_util::sync::CancellationToken;

/// The slots of one radio.
pub struct Gate {
    max: usize,
    state: Mutex<State>,
    /// Slots taken, for `/metrics`.
    open: IntGauge,
}

#[derive(Default)]
struct State {
    /// Slots taken, including those of evicted connections whose task has not ended yet (their
    /// slot went to the connection that evicted them, so they are not counted twice).
    taken: usize,
    next_id: u64,
    /// Connections still reading their head, oldest first (ids grow), with what evicts them.
    reading: BTreeMap<u64, CancellationToken>,
}

/// A connection's place behind the gate; dropping it frees the slot.
pub struct Slot {
    gate: Arc<Gate>,
    id: u64,
    past_head: bool,
    /// Fires when a newer connection took this one's slot while it was reading its head.
    pub evicted: CancellationToken,
}

impl Gate {
    pub fn new(max: usize, open: IntGauge) -> Arc<Gate> {
        Arc::new(Gate {
            max,
            state: Mutex::new(State::default()),
            open,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Counter and map updates in single statements: a panic cannot leave them half-done.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection, evicting the oldest head reader when all are taken; `None`
    /// when every slot holds a connection past its head.
    pub fn enter(self: &Arc<Self>) -> Option<Slot> {
        let mut s = self.state();
        if s.taken >= self.max {
            let (_, oldest) = s.reading.pop_first()?;
            // Its slot is handed over as it is: `taken` stays the same.
            oldest.cancel();
        } else {
            s.taken += 1;
            self.open.set(s.taken as i64);
        }
        let id = s.next_id;
        s.next_id += 1;
        let evicted = CancellationToken::new();
        s.reading.insert(id, evicted.clone());
        Some(Slot {
            gate: Arc::clone(self),
            id,
            past_head: false,
            evicted,
        })
    }
}

impl Slot {
    /// The head is read: from now on this connection cannot be evicted. False when it was
    /// evicted first (it must close).
    pub fn past_head(&mut self) -> bool {
        if self.past_head {
            return true;
        }
        self.past_head = self.gate.state().reading.remove(&self.id).is_some();
        self.past_head
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.gate.state();
        // An evicted connection's slot already belongs to the one that evicted it.
        if self.past_head || s.reading.remove(&self.id).is_some() {
            s.taken -= 1;
            self.gate.open.set(s.taken as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: usize) -> Arc<Gate> {
        Gate::new(max, IntGauge::new("g", "g").unwrap())
    }

    #[test]
    fn a_full_gate_evicts_the_oldest_head_reader() {
        let g = gate(2);
        let a = g.enter().unwrap();
        let mut b = g.enter().unwrap();
        let c = g.enter().unwrap();
        assert!(a.evicted.is_cancelled(), "the oldest reader goes");
        assert!(!b.evicted.is_cancelled() && !c.evicted.is_cancelled());
        assert_eq!(g.open.get(), 2);
        drop(a);
        assert_eq!(g.open.get(), 2, "an evicted slot is not freed twice");
        assert!(b.past_head());
        drop(c);
        assert_eq!(g.open.get(), 1);
        drop(b);
        assert_eq!(g.open.get(), 0);
    }

    #[test]
    fn connections_past_their_head_are_never_evicted() {
        let g = gate(2);
        let mut a = g.enter().unwrap();
        let mut b = g.enter().unwrap();
        assert!(a.past_head() && b.past_head());
        assert!(
            g.enter().is_none(),
            "full of requests being answered: refused"
        );
        drop(a);
        let mut c = g.enter().expect("a freed slot is taken again");
        let d = g.enter().unwrap();
        assert!(c.evicted.is_cancelled());
        assert!(!c.past_head(), "an evicted connection must close");
        drop((b, c, d));
        assert_eq!(g.open.get(), 0);
    }
}
