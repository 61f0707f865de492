//! Pure AutoDJ ordering rules, free of I/O so they can be tested exhaustively: shuffle (every track
//! once per round, never the same track twice in a row, even across rounds) and sequential (by key).
//! The library may change between any two picks; tracks that failed to decode are kept out until
//! their content changes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::catalog::TrackRef;
use crate::config::Order;

/// The rotation state.
pub struct Policy {
    order: Order,
    library: Vec<TrackRef>,
    /// Shuffle: tracks still to play in this round, in play order.
    round: VecDeque<Arc<str>>,
    last: Option<Arc<str>>,
    /// Keys whose current version could not be played, with that version.
    bad: HashMap<Arc<str>, Arc<str>>,
    rng: fastrand::Rng,
}

impl Policy {
    pub fn new(order: Order) -> Policy {
        Policy::with_rng(order, fastrand::Rng::new())
    }

    /// A policy with a seeded random source, for reproducible tests.
    pub fn with_rng(order: Order, rng: fastrand::Rng) -> Policy {
        Policy {
            order,
            library: Vec::new(),
            round: VecDeque::new(),
            last: None,
            bad: HashMap::new(),
            rng,
        }
    }

    /// Replaces the library (sorted by key). New tracks join the current round at random places;
    /// removed ones leave it; a bad track whose version changed gets another chance.
    pub fn set_library(&mut self, mut tracks: Vec<TrackRef>) {
        tracks.sort();
        tracks.dedup_by(|a, b| a.key == b.key);
        let versions: HashMap<&Arc<str>, &Arc<str>> =
            tracks.iter().map(|t| (&t.key, &t.version)).collect();
        self.bad
            .retain(|key, version| versions.get(key).is_some_and(|v| *v == version));
        let old: HashSet<Arc<str>> = self.library.iter().map(|t| Arc::clone(&t.key)).collect();
        self.round.retain(|k| versions.contains_key(k));
        if !self.round.is_empty() {
            for t in &tracks {
                if !old.contains(&t.key) {
                    let at = self.rng.usize(..=self.round.len());
                    self.round.insert(at, Arc::clone(&t.key));
                }
            }
        }
        self.library = tracks;
    }

    /// Tracks in the library, playable or not.
    pub fn library_len(&self) -> usize {
        self.library.len()
    }

    /// Tracks that may be scheduled now.
    pub fn playable_len(&self) -> usize {
        self.library.iter().filter(|t| !self.is_bad(t)).count()
    }

    /// Keeps this version of a track out of rotation (it failed to decode or is gone).
    pub fn mark_bad(&mut self, track: &TrackRef) {
        self.bad
            .insert(Arc::clone(&track.key), Arc::clone(&track.version));
    }

    /// The tracks still to play in this shuffle round, in order (empty in sequential order),
    /// for the playout state.
    pub fn round(&self) -> Vec<Arc<str>> {
        self.round.iter().cloned().collect()
    }

    /// Carries on a saved programme: `last` just played, `upcoming` is the rest of its round.
    /// Keys no longer in the library are dropped, and tracks added since join at random places,
    /// as [`Policy::set_library`] does.
    pub fn restore(&mut self, upcoming: &[Arc<str>], last: Option<Arc<str>>) {
        if self.order == Order::Shuffle {
            let listed: HashSet<&Arc<str>> = self.library.iter().map(|t| &t.key).collect();
            let mut round: VecDeque<Arc<str>> = VecDeque::new();
            for key in upcoming {
                if listed.contains(key) && !round.contains(key) {
                    round.push_back(Arc::clone(key));
                }
            }
            self.round = round;
        }
        self.last = last;
    }

    /// The playable track with this key, taken out of the round (it is about to play).
    pub fn find_playable(&mut self, key: &str) -> Option<TrackRef> {
        let track = self.find(key).filter(|t| !self.is_bad(t)).cloned()?;
        self.round.retain(|k| **k != *key);
        self.last = Some(Arc::clone(&track.key));
        Some(track)
    }

    /// Gives back a picked track that could not be fetched now (storage failed), so it keeps
    /// its turn: first in the round.
    pub fn put_back(&mut self, track: &TrackRef) {
        if self.order == Order::Shuffle && !self.round.contains(&track.key) {
            self.round.push_front(Arc::clone(&track.key));
        }
    }

    /// Whether this version of a track is kept out.
    pub fn is_bad(&self, t: &TrackRef) -> bool {
        self.bad.get(&t.key).is_some_and(|v| *v == t.version)
    }

    fn find(&self, key: &str) -> Option<&TrackRef> {
        self.library
            .binary_search_by(|t| (*t.key).cmp(key))
            .ok()
            .map(|i| &self.library[i])
    }

    /// The next track to play, or `None` when nothing is playable.
    pub fn pick(&mut self) -> Option<TrackRef> {
        self.pick_if(|_| true)
    }

    /// The next track for which `ok` holds (during a storage outage: one that is cached), or
    /// `None` when no playable track passes. In shuffle order the tracks passed over keep their
    /// place in the round, so they still play once `ok` holds for them; when no track left in the
    /// round passes, one from the whole library that does is replayed early rather than none.
    pub fn pick_if(&mut self, ok: impl Fn(&TrackRef) -> bool) -> Option<TrackRef> {
        match self.order {
            Order::Sequential => self.next_sequential(&ok),
            Order::Shuffle => {
                let pick = self.next_shuffled(&ok)?;
                self.last = Some(Arc::clone(&pick.key));
                Some(pick)
            }
        }
    }

    /// The next track by key for which `ok` holds. Only the next one in order moves the place
    /// in the sequence: a track picked out of order (a cached one standing in during an
    /// outage) leaves the ones it stood in for to come next, instead of skipping them.
    fn next_sequential(&mut self, ok: &impl Fn(&TrackRef) -> bool) -> Option<TrackRef> {
        let start = match &self.last {
            Some(last) => self.library.partition_point(|t| *t.key <= **last),
            None => 0,
        };
        let n = self.library.len();
        let mut in_order = (0..n)
            .map(|i| &self.library[(start + i) % n])
            .filter(|t| !self.is_bad(t));
        let next = in_order.clone().next()?.clone();
        let pick = in_order.find(|t| ok(t))?.clone();
        if pick == next {
            self.last = Some(Arc::clone(&pick.key));
        }
        Some(pick)
    }

    fn next_shuffled(&mut self, ok: &impl Fn(&TrackRef) -> bool) -> Option<TrackRef> {
        let mut round = std::mem::take(&mut self.round);
        round.retain(|k| self.find(k).is_some_and(|t| !self.is_bad(t)));
        self.round = round;
        if self.round.is_empty() {
            self.new_round();
        }
        let passing = self.round.iter().position(|k| self.find(k).is_some_and(ok));
        if let Some(key) = passing.and_then(|i| self.round.remove(i)) {
            return self.find(&key).cloned();
        }
        let others: Vec<&TrackRef> = self
            .library
            .iter()
            .filter(|t| !self.is_bad(t) && ok(t) && Some(&t.key) != self.last.as_ref())
            .collect();
        match others.len() {
            0 => self
                .library
                .iter()
                .find(|t| !self.is_bad(t) && ok(t))
                .cloned(),
            n => Some(others[self.rng.usize(..n)].clone()),
        }
    }

    fn new_round(&mut self) {
        let mut keys: Vec<Arc<str>> = self
            .library
            .iter()
            .filter(|t| !self.is_bad(t))
            .map(|t| Arc::clone(&t.key))
            .collect();
        self.rng.shuffle(&mut keys);
        // The last track of a round must not open the next one.
        if keys.len() > 1 && keys.first() == self.last.as_ref() {
            let swap_with = 1 + self.rng.usize(..keys.len() - 1);
            keys.swap(0, swap_with);
        }
        self.round = keys.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib(keys: &[&str]) -> Vec<TrackRef> {
        keys.iter()
            .map(|k| TrackRef {
                key: Arc::from(*k),
                version: Arc::from("1"),
            })
            .collect()
    }

    fn take(p: &mut Policy, n: usize) -> Vec<String> {
        (0..n).map(|_| p.pick().unwrap().key.to_string()).collect()
    }

    #[test]
    fn sequential_goes_by_key_and_wraps() {
        let mut p = Policy::new(Order::Sequential);
        p.set_library(lib(&["c", "a", "b"]));
        assert_eq!(take(&mut p, 5), ["a", "b", "c", "a", "b"]);
        // A track added before the current position waits for the wrap.
        p.set_library(lib(&["a", "aa", "b", "c", "d"]));
        assert_eq!(take(&mut p, 4), ["c", "d", "a", "aa"]);
    }

    #[test]
    fn shuffle_plays_every_track_once_per_round_and_never_twice_in_a_row() {
        for seed in 0..200 {
            let mut p = Policy::with_rng(Order::Shuffle, fastrand::Rng::with_seed(seed));
            let keys = ["a", "b", "c", "d", "e"];
            p.set_library(lib(&keys));
            let played = take(&mut p, 50);
            for round in played.chunks(5) {
                let mut r = round.to_vec();
                r.sort();
                assert_eq!(r, keys, "seed {seed}: a round is a permutation");
            }
            for w in played.windows(2) {
                assert_ne!(w[0], w[1], "seed {seed}: repeat in {played:?}");
            }
        }
    }

    #[test]
    fn two_tracks_alternate_and_one_track_repeats() {
        let mut p = Policy::with_rng(Order::Shuffle, fastrand::Rng::with_seed(7));
        p.set_library(lib(&["a", "b"]));
        let played = take(&mut p, 10);
        assert!(played.windows(2).all(|w| w[0] != w[1]), "{played:?}");
        p.set_library(lib(&["solo"]));
        assert_eq!(take(&mut p, 3), ["solo", "solo", "solo"]);
    }

    #[test]
    fn library_changes_apply_mid_round() {
        let mut p = Policy::with_rng(Order::Shuffle, fastrand::Rng::with_seed(1));
        p.set_library(lib(&["a", "b", "c", "d"]));
        let first = take(&mut p, 1);
        let mut rest: Vec<&str> = ["a", "b", "c", "d"]
            .into_iter()
            .filter(|k| *k != first[0])
            .collect();
        let removed = rest.remove(0);
        let mut now: Vec<&str> = ["a", "b", "c", "d", "new"]
            .into_iter()
            .filter(|k| *k != removed)
            .collect();
        p.set_library(lib(&now));
        let mut got = take(&mut p, 3);
        got.sort();
        now.retain(|k| *k != first[0]);
        assert_eq!(
            got, now,
            "the round finishes with the new track and without the removed one"
        );
    }

    #[test]
    fn bad_tracks_stay_out_until_their_version_changes() {
        let mut p = Policy::new(Order::Sequential);
        p.set_library(lib(&["a", "b"]));
        let a = p.pick().unwrap();
        p.mark_bad(&a);
        assert_eq!(take(&mut p, 3), ["b", "b", "b"]);
        assert_eq!(p.playable_len(), 1);
        let mut fixed = lib(&["a", "b"]);
        fixed[0].version = Arc::from("2");
        p.set_library(fixed);
        assert_eq!(take(&mut p, 2), ["a", "b"]);
    }

    #[test]
    fn a_filter_prefers_passing_tracks_and_keeps_the_others_in_the_round() {
        for seed in 0..50 {
            let mut p = Policy::with_rng(Order::Shuffle, fastrand::Rng::with_seed(seed));
            p.set_library(lib(&["a", "b", "c", "d"]));
            let cached = |t: &TrackRef| matches!(&*t.key, "a" | "b");
            let during: Vec<String> = (0..6)
                .map(|_| p.pick_if(cached).unwrap().key.to_string())
                .collect();
            assert!(
                during.iter().all(|k| k == "a" || k == "b"),
                "seed {seed}: {during:?}"
            );
            assert!(
                during.windows(2).all(|w| w[0] != w[1]),
                "seed {seed}: {during:?}"
            );
            // "c" and "d" were passed over, not dropped: they play as soon as the filter is gone.
            let mut after = take(&mut p, 2);
            after.sort();
            assert_eq!(after, ["c", "d"], "seed {seed}");
        }
        let mut p = Policy::new(Order::Sequential);
        p.set_library(lib(&["a", "b", "c"]));
        let only_c = |t: &TrackRef| &*t.key == "c";
        assert_eq!(p.pick_if(only_c).unwrap().key.as_ref(), "c");
        assert!(p.pick_if(|_| false).is_none());
        // The stand-in did not move the place in the sequence: a and b still come first.
        assert_eq!(take(&mut p, 4), ["a", "b", "c", "a"]);
    }

    #[test]
    fn a_restored_round_continues_without_repeats() {
        let mut p = Policy::with_rng(Order::Shuffle, fastrand::Rng::with_seed(3));
        p.set_library(lib(&["a", "b", "c", "d", "e"]));
        let upcoming: Vec<Arc<str>> = ["d", "gone", "b"].iter().map(|k| Arc::from(*k)).collect();
        p.restore(&upcoming, Some(Arc::from("e")));
        assert_eq!(p.round(), [Arc::from("d"), Arc::from("b")]);
        assert_eq!(take(&mut p, 2), ["d", "b"]);
        // The next round has all five, and does not open with the last one played.
        let next = take(&mut p, 5);
        let mut sorted = next.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c", "d", "e"]);
        assert_ne!(next[0], "b");
    }

    #[test]
    fn a_track_put_back_keeps_its_turn() {
        let mut p = Policy::with_rng(Order::Shuffle, fastrand::Rng::with_seed(5));
        p.set_library(lib(&["a", "b", "c"]));
        let first = p.pick().unwrap();
        p.put_back(&first);
        assert_eq!(p.pick().unwrap(), first);
        let rest = take(&mut p, 2);
        assert!(!rest.contains(&first.key.to_string()), "{rest:?}");
    }

    #[test]
    fn nothing_playable_gives_none() {
        let mut p = Policy::new(Order::Shuffle);
        assert!(p.pick().is_none());
        p.set_library(lib(&["x"]));
        let x = p.pick().unwrap();
        p.mark_bad(&x);
        assert!(p.pick().is_none());
    }
}
