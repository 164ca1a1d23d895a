//! The rules of the house's idle-connection pools, sans-IO: which kept-alive connection may be
//! reused, and which are dropped. Every long-lived client keeps its idle connections in an
//! [`IdleSet`]: the EST/HTTPS pool (`est::client::PooledClient`: the registrar's link to a
//! MASA, the Identity Proxy's link to the Identity Server) and the agent's Agent API client.
//!
//! A connection is reused only while it is open and idle for less than
//! [`IdleRules::max_idle_age`] (servers close idle connections after a while: the Agent API
//! after its 10 s header timeout, most HTTPS servers after 30-120 s; a fresh handshake is
//! cheaper than a failed exchange); at most [`IdleRules::max_idle`] are kept, the most recently
//! used first; a new generation (a client with a renewed certificate) drops every connection
//! of the old ones. Times are given by the caller (`now`), as everywhere in this crate.

use std::time::{Duration, Instant};

/// How many idle connections are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleRules {
    /// Most idle connections kept; more are closed after their exchange.
    pub max_idle: usize,
    /// An idle connection older than this is closed rather than reused.
    pub max_idle_age: Duration,
}

impl Default for IdleRules {
    /// 32 connections (one per request in flight under a busy host: an HTTP/1.1 connection
    /// carries one exchange at a time), 20 s.
    fn default() -> Self {
        IdleRules { max_idle: 32, max_idle_age: Duration::from_secs(20) }
    }
}

struct Entry<C> {
    generation: u64,
    since: Instant,
    conn: C,
}

/// The idle connections of one client (see the module doc).
pub struct IdleSet<C> {
    rules: IdleRules,
    generation: u64,
    entries: Vec<Entry<C>>,
}

impl<C> std::fmt::Debug for IdleSet<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleSet")
            .field("rules", &self.rules)
            .field("generation", &self.generation)
            .field("idle", &self.entries.len())
            .finish()
    }
}

impl<C> IdleSet<C> {
    /// An empty set under `rules`, generation 0.
    pub fn new(rules: IdleRules) -> Self {
        IdleSet { rules, generation: 0, entries: Vec::new() }
    }

    /// The current generation: connections made now are kept under it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Starts a new generation and drops every idle connection (they are closed on drop);
    /// connections of the old generation still in use are not kept after their exchange.
    pub fn renew(&mut self) -> u64 {
        self.generation += 1;
        self.entries.clear();
        self.generation
    }

    /// Idle connections kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most recently kept connection that is still reusable at `now` (`is_open` tells
    /// whether the peer closed it); the unusable ones met on the way are dropped.
    pub fn take(&mut self, now: Instant, is_open: impl Fn(&C) -> bool) -> Option<C> {
        while let Some(e) = self.entries.pop() {
            if self.reusable(&e, now, &is_open) {
                return Some(e.conn);
            }
        }
        None
    }

    /// Keeps `conn`, made under `generation`, idle from `now`, unless it is closed, of an
    /// old generation, or the set is full after dropping the unusable ones. Whether it was kept.
    pub fn keep(&mut self, conn: C, generation: u64, now: Instant, is_open: impl Fn(&C) -> bool) -> bool {
        if generation != self.generation || !is_open(&conn) {
            return false;
        }
        let entries = std::mem::take(&mut self.entries);
        self.entries = entries.into_iter().filter(|e| self.reusable(e, now, &is_open)).collect();
        if self.entries.len() >= self.rules.max_idle {
            return false;
        }
        self.entries.push(Entry { generation, since: now, conn });
        true
    }

    fn reusable(&self, e: &Entry<C>, now: Instant, is_open: &impl Fn(&C) -> bool) -> bool {
        e.generation == self.generation
            && now.saturating_duration_since(e.since) < self.rules.max_idle_age
            && is_open(&e.conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A stand-in connection: an id and whether its peer closed it.
    struct Conn(u32, Cell<bool>);

    fn open(c: &Conn) -> bool {
        !c.1.get()
    }

    fn conn(id: u32) -> Conn {
        Conn(id, Cell::new(false))
    }

    fn rules(max_idle: usize, secs: u64) -> IdleRules {
        IdleRules { max_idle, max_idle_age: Duration::from_secs(secs) }
    }

    #[test]
    fn the_most_recent_young_open_connection_is_reused() {
        let t = Instant::now();
        let mut set = IdleSet::new(rules(4, 20));
        assert!(set.keep(conn(1), 0, t, open));
        assert!(set.keep(conn(2), 0, t, open));
        assert_eq!(set.take(t + Duration::from_secs(1), open).map(|c| c.0), Some(2));
        assert_eq!(set.take(t + Duration::from_secs(1), open).map(|c| c.0), Some(1));
        assert!(set.take(t, open).is_none());
    }

    /// The Identity Proxy's pool had no age limit: a connection the server had closed for
    /// idleness was tried first. Every pool now drops connections idle for too long.
    #[test]
    fn an_old_connection_is_dropped_not_reused() {
        let t = Instant::now();
        let mut set = IdleSet::new(rules(4, 20));
        set.keep(conn(1), 0, t, open);
        assert!(set.take(t + Duration::from_secs(20), open).is_none());
        assert!(set.is_empty());
    }

    #[test]
    fn a_closed_connection_is_neither_kept_nor_reused() {
        let t = Instant::now();
        let mut set = IdleSet::new(rules(4, 20));
        let c = conn(1);
        c.1.set(true);
        assert!(!set.keep(c, 0, t, open));
        set.keep(conn(2), 0, t, open);
        set.keep(conn(3), 0, t, open);
        set.entries[1].conn.1.set(true);
        assert_eq!(set.take(t, open).map(|c| c.0), Some(2), "the closed one is skipped");
    }

    #[test]
    fn a_new_generation_drops_the_old_connections() {
        let t = Instant::now();
        let mut set = IdleSet::new(rules(4, 20));
        set.keep(conn(1), 0, t, open);
        assert_eq!(set.renew(), 1);
        assert!(set.is_empty());
        assert!(!set.keep(conn(2), 0, t, open), "a connection of the old generation is not kept");
        assert!(set.keep(conn(3), 1, t, open));
    }

    #[test]
    fn at_most_max_idle_are_kept_and_unusable_ones_make_room() {
        let t = Instant::now();
        let mut set = IdleSet::new(rules(2, 20));
        assert!(set.keep(conn(1), 0, t, open));
        assert!(set.keep(conn(2), 0, t, open));
        assert!(!set.keep(conn(3), 0, t, open));
        let later = t + Duration::from_secs(30);
        assert!(set.keep(conn(4), 0, later, open), "the expired ones are dropped first");
        assert_eq!(set.len(), 1);
    }
}
