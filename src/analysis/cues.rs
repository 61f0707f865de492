//! Cue points derived from a track's [`Facts`], at play time, from the settings of the moment:
//! where the music starts (cue-in), where it ends (cue-out), and where the next track may start
//! (start-next), with thresholds relative to the track's own integrated loudness, as
//! Liquidsoap's autocue and cue_file do (the audio-quality note, §2.4): cue-in at the first block
//! above I − 34 LU, cue-out after the last above I − 42 LU, start-next after the last above
//! I − 8 LU, re-searched lower for a long or sustained ending. Pure and cheap: settings change
//! without a decode.

use std::time::Duration;

use super::facts::{Envelope, FLOOR_LUFS, Facts, STEP};

/// Thresholds and limits of cue detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CueSettings {
    /// Cue-in: the first block louder than I plus this (LU).
    pub cue_in_lu: f64,
    /// Cue-out: the last block louder than I plus this.
    pub cue_out_lu: f64,
    /// Start-next: the last block louder than I plus this.
    pub start_next_lu: f64,
    /// An ending longer than this (cue-out − start-next) is a long tail, searched lower.
    pub long_tail: Duration,
    /// How much lower a long or sustained ending is searched (LU, added to `start_next_lu`).
    pub long_tail_extra_lu: f64,
    /// An ending whose second half is less than this much quieter than its first (as a fraction
    /// of its energy) is sustained (a held final chord): searched lower too.
    pub sustained_drop: f64,
    /// Items shorter than this are jingles: no fades on them, no trimming.
    pub jingle: Duration,
}

impl Default for CueSettings {
    fn default() -> Self {
        CueSettings {
            cue_in_lu: -34.0,
            cue_out_lu: -42.0,
            start_next_lu: -8.0,
            long_tail: Duration::from_secs(15),
            long_tail_extra_lu: -12.0,
            sustained_drop: 0.40,
            jingle: Duration::from_secs(10),
        }
    }
}

/// How a track ends, which decides how it is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The sound stops at once: nothing to fade, the next track starts at cue-out.
    Hard,
    /// It fades by itself: the next one may start at start-next.
    Fade,
    /// It holds its level to the end (or tails off long): start-next was searched lower.
    Sustained,
}

/// Where a track's music is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cues {
    pub cue_in: Duration,
    pub cue_out: Duration,
    pub start_next: Duration,
    pub ending: Ending,
    /// Shorter than [`CueSettings::jingle`]: played whole, never faded, never trimmed.
    pub jingle: bool,
    /// The whole track, silences included.
    pub duration: Duration,
}

impl Cues {
    /// The cues of a track without analysis (or of a jingle): all of it, no overlap.
    pub fn whole(duration: Duration, jingle: bool) -> Cues {
        Cues {
            cue_in: Duration::ZERO,
            cue_out: duration,
            start_next: duration,
            ending: Ending::Hard,
            jingle,
            duration,
        }
    }

    /// Where the track stops when nothing overlaps it: its cue-out when trimming silence (a
    /// jingle is never trimmed), else its very end.
    pub fn stop(&self, trim: bool) -> Duration {
        if trim && !self.jingle {
            self.cue_out
        } else {
            self.duration.max(self.cue_out)
        }
    }

    /// The music's length between the cues.
    pub fn length(&self) -> Duration {
        self.cue_out.saturating_sub(self.cue_in)
    }
}

/// Cues of `facts` under `settings`.
pub fn cues(facts: &Facts, settings: &CueSettings) -> Cues {
    // From a sidecar, which storage may hand back altered: no value may panic here.
    let duration = Duration::try_from_secs_f64(facts.duration_s.max(0.0)).unwrap_or_default();
    let env = &facts.momentary;
    let Some(i) = facts.integrated_lufs else {
        return Cues::whole(duration, duration < settings.jingle);
    };
    if duration < settings.jingle || env.is_empty() {
        return Cues::whole(duration, duration < settings.jingle);
    }
    let above = |lu: f64| (i + lu).max(FLOOR_LUFS);
    let first = (0..env.len()).find(|&b| env.at(b) > above(settings.cue_in_lu));
    let last = |lu: f64| (0..env.len()).rev().find(|&b| env.at(b) > above(lu));
    let (Some(first), Some(out)) = (first, last(settings.cue_out_lu)) else {
        return Cues::whole(duration, false);
    };
    // A block is the 400 ms that end with it. The block before `first` was under the
    // threshold, so the music starts within the last 100 ms of `first`: cue-in there leaves at
    // most 100 ms of silence and cuts nothing above the threshold. Under 200 ms is not worth
    // cutting.
    let cue_in = Envelope::end_of(first).saturating_sub(STEP);
    let cue_in = if cue_in < STEP * 2 {
        Duration::ZERO
    } else {
        cue_in
    };
    // Likewise the block after `out` (its window starts 300 ms before `out` ends) is under the
    // threshold, so the music ended in the first 100 ms of `out`'s window; a track that sounds
    // to its last block plays to its very end.
    let cue_out = if out + 1 < env.len() {
        Envelope::end_of(out).saturating_sub(STEP * 3)
    } else {
        duration
    };
    let cue_out = cue_out.min(duration).max(cue_in);
    let mut next = last(settings.start_next_lu).unwrap_or(out);
    let mut ending = Ending::Fade;
    let tail = Envelope::end_of(out).saturating_sub(Envelope::end_of(next));
    if tail > settings.long_tail || sustained(env, next, out, settings.sustained_drop) {
        // Search lower, so the next track does not start over a held chord or a long fade.
        let lower = settings.start_next_lu + settings.long_tail_extra_lu;
        next = last(lower).unwrap_or(out).max(next);
        ending = Ending::Sustained;
    }
    let start_next = Envelope::end_of(next).clamp(cue_in, cue_out);
    if cue_out.saturating_sub(start_next) < STEP * 5 {
        ending = Ending::Hard;
    }
    Cues {
        cue_in,
        cue_out,
        start_next,
        ending,
        jingle: false,
        duration,
    }
}

/// Whether the ending from block `from` to block `to` keeps its level: its second half carries
/// more than `1 - drop` of the first half's energy.
fn sustained(env: &Envelope, from: usize, to: usize, drop: f64) -> bool {
    if to <= from + 4 {
        return false;
    }
    let energy = |range: std::ops::Range<usize>| {
        let n = range.len().max(1) as f64;
        range.map(|b| 10f64.powf(env.at(b) / 10.0)).sum::<f64>() / n
    };
    let mid = from + (to - from) / 2;
    let (first, second) = (energy(from..mid), energy(mid..to + 1));
    first > 0.0 && second / first > 1.0 - drop
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::facts::tests::{facts_of, tone};

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn silent_edges_are_cut_and_a_fade_out_gives_the_next_track_its_start() {
        // 3 s of silence, 20 s at full level, a 6 s linear fade, 3 s of silence.
        let f = facts_of(tone(44_100, 32.0, |t| match t {
            t if t < 3.0 => 0.0,
            t if t < 23.0 => 0.5,
            t if t < 29.0 => 0.5 * (29.0 - t) / 6.0,
            _ => 0.0,
        }));
        let c = cues(&f, &CueSettings::default());
        // Never after the onset, at most 100 ms of silence before it.
        assert!(
            secs(c.cue_in) > 2.89 && secs(c.cue_in) <= 3.0,
            "cue-in {:?}",
            c.cue_in
        );
        // -42 LU under the music is near the very end of the fade.
        assert!(
            secs(c.cue_out) > 28.0 && secs(c.cue_out) <= 29.5,
            "cue-out {:?}",
            c.cue_out
        );
        // -8 LU: 8 dB down the fade, about 60 % of the way from its start.
        assert!(
            secs(c.start_next) > 24.5 && secs(c.start_next) < 27.0,
            "start-next {:?}",
            c.start_next
        );
        assert_eq!(c.ending, Ending::Fade);
        assert!(!c.jingle);
    }

    #[test]
    fn a_hard_ending_has_nothing_to_overlap() {
        let f = facts_of(tone(44_100, 20.0, |t| if t < 18.0 { 0.5 } else { 0.0 }));
        let c = cues(&f, &CueSettings::default());
        assert_eq!(c.ending, Ending::Hard);
        // At the last sound, with at most 100 ms of the silence after it.
        assert!(secs(c.cue_out) >= 18.0 && secs(c.cue_out) <= 18.11, "{c:?}");
        assert!(c.cue_out - c.start_next < Duration::from_millis(500));
        assert_eq!(c.cue_in, Duration::ZERO);
        // Sound up to the last sample: played to its very end.
        let f = facts_of(tone(44_100, 20.0, |_| 0.5));
        let c = cues(&f, &CueSettings::default());
        assert_eq!(c.cue_out, c.duration, "{c:?}");
    }

    #[test]
    fn a_held_chord_is_not_overlapped_by_its_loud_part() {
        // Full level, then 8 s held 6 dB down and cut: the -8 LU point would start the next
        // track over the chord; it is sustained, searched lower.
        let f = facts_of(tone(44_100, 24.0, |t| match t {
            t if t < 15.0 => 0.5,
            t if t < 23.0 => 0.25,
            _ => 0.0,
        }));
        let c = cues(&f, &CueSettings::default());
        assert!(c.start_next >= Duration::from_secs(22), "{c:?}");
    }

    #[test]
    fn short_items_are_jingles_played_whole() {
        let f = facts_of(tone(44_100, 4.0, |t| if t < 1.0 { 0.0 } else { 0.5 }));
        let c = cues(&f, &CueSettings::default());
        assert!(c.jingle);
        assert_eq!(c.cue_in, Duration::ZERO, "a jingle is never trimmed");
        assert_eq!(c.start_next, c.cue_out);
    }
}
