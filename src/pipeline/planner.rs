//! The transition planner: a pure function from what is known of the outgoing and the incoming
//! track (their cues) and the settings to a [`Plan`]: where the incoming track starts on the
//! outgoing one's time line, how long they overlap, where and how the outgoing one fades, where
//! it stops. Also each track's gain, from its measured loudness. Every plan is logged and
//! counted by the mixer; the rules are the ones the audio-quality note settles on (§7):
//!
//! - crossfade: the next track starts at the current one's start-next; the overlap is at most
//!   `max_overlap` and at most half of the shorter track; the outgoing track fades over
//!   `fade_out`, the fade ending where it stops (its tail plays up to the fade, never cut before
//!   it); the incoming track is not faded in, only de-clicked when it starts mid-signal;
//! - a hard ending (the sound stops at once) is not faded: the next track follows it;
//! - a jingle (an item under 10 s) is neither faded nor trimmed, and nothing overlaps it for
//!   more than half its length;
//! - an overlap under 0.3 s is no crossfade but a sequence: a fade that short clicks;
//! - a skip fades the current track out over 1 s while the next one starts.

use std::time::Duration;

use crate::analysis::{Cues, Ending, Facts};
use crate::config::{Crossfade, Curve, Loudness};

/// How long a skip fades the outgoing track.
pub const SKIP_FADE: Duration = Duration::from_secs(1);
/// Shorter overlaps are played as a sequence.
const MIN_OVERLAP: Duration = Duration::from_millis(300);
/// The ramp that starts a track cut into mid-signal (cue-in after silence trimming), and the
/// one that ends every track where it stops (a hard ending is followed, not faded, but its last
/// sample must not be a step to the next track's first).
pub const DECLICK: Duration = Duration::from_millis(5);
/// Items shorter than this are measured by their loudest 3 s instead of their integrated
/// loudness (AES TD1008's rule for short-form items).
const SHORT_ITEM_S: f64 = 60.0;

/// What kind of transition a plan is (label of `onair_transitions_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Crossfade,
    Sequence,
    Jingle,
    Skip,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Crossfade => "crossfade",
            Kind::Sequence => "sequence",
            Kind::Jingle => "jingle",
            Kind::Skip => "skip",
        }
    }

    pub const ALL: [Kind; 4] = [Kind::Crossfade, Kind::Sequence, Kind::Jingle, Kind::Skip];
}

/// A fade of the outgoing track.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fade {
    /// Position in the outgoing track where it starts.
    pub start: Duration,
    pub length: Duration,
    pub curve: Curve,
}

impl Fade {
    /// The gain at `position` in the outgoing track: 1 before the fade, 0 after it.
    pub fn gain_at(&self, position: Duration) -> f32 {
        let Some(into) = position.checked_sub(self.start) else {
            return 1.0;
        };
        if self.length.is_zero() || into >= self.length {
            return 0.0;
        }
        let x = (into.as_secs_f64() / self.length.as_secs_f64()) as f32;
        curve_out(self.curve, x)
    }
}

/// The gain of a fade-out `x` of the way through (0..1).
pub fn curve_out(curve: Curve, x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    match curve {
        Curve::EqualPower => (x * std::f32::consts::FRAC_PI_2).cos(),
        Curve::Linear => 1.0 - x,
        Curve::Sine => 0.5 * (1.0 + (x * std::f32::consts::PI).cos()),
    }
}

/// How one track leaves and the next one comes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub kind: Kind,
    /// Position in the outgoing track where the incoming track starts.
    pub next_at: Duration,
    /// Position in the outgoing track where it stops.
    pub out_end: Duration,
    pub fade: Option<Fade>,
    /// Where the incoming track is started from (its cue-in when trimming).
    pub in_start: Duration,
    /// The fade-in of the incoming track: a de-click only, or none.
    pub declick: Duration,
}

impl Plan {
    /// How long both play.
    pub fn overlap(&self) -> Duration {
        self.out_end.saturating_sub(self.next_at)
    }
}

/// The transition from `out` (cues of the track playing) to `inc` (the next one).
pub fn plan(out: &Cues, inc: &Cues, crossfade: &Crossfade, trim: bool) -> Plan {
    let out_stop = out.stop(trim);
    let (in_start, declick) = entry(inc, trim);
    let sequence = |kind| Plan {
        kind,
        next_at: out_stop,
        out_end: out_stop,
        fade: None,
        in_start,
        declick,
    };
    if out.jingle {
        // Nothing overlaps a jingle's end, and it is never faded.
        return sequence(Kind::Jingle);
    }
    if !crossfade.enabled || out.ending == Ending::Hard {
        return sequence(if inc.jingle {
            Kind::Jingle
        } else {
            Kind::Sequence
        });
    }
    let tail = out_stop.saturating_sub(out.start_next);
    let overlap = tail
        .min(crossfade.max_overlap)
        .min(out.length() / 2)
        .min(inc.length() / 2);
    let kind = if inc.jingle {
        Kind::Jingle
    } else {
        Kind::Crossfade
    };
    if overlap < MIN_OVERLAP {
        return sequence(if inc.jingle {
            Kind::Jingle
        } else {
            Kind::Sequence
        });
    }
    let next_at = out.start_next.min(out_stop);
    let out_end = next_at + overlap;
    let length = crossfade.fade_out.min(overlap);
    Plan {
        kind,
        next_at,
        out_end,
        fade: Some(Fade {
            // The fade ends where the track stops: the tail plays until then.
            start: out_end - length,
            length,
            curve: crossfade.curve,
        }),
        in_start,
        declick,
    }
}

/// A skip at `position` of the playing track: it fades out over [`SKIP_FADE`] while the next
/// track starts.
pub fn skip(position: Duration, inc: &Cues, trim: bool) -> Plan {
    let (in_start, declick) = entry(inc, trim);
    Plan {
        kind: Kind::Skip,
        next_at: position,
        out_end: position + SKIP_FADE,
        fade: Some(Fade {
            start: position,
            length: SKIP_FADE,
            curve: Curve::EqualPower,
        }),
        in_start,
        declick,
    }
}

/// Where a track starts (its cue-in when trimming; a jingle from its first sample) and the
/// de-click ramp that a start mid-signal needs.
pub fn entry(inc: &Cues, trim: bool) -> (Duration, Duration) {
    let in_start = if trim && !inc.jingle {
        inc.cue_in
    } else {
        Duration::ZERO
    };
    let declick = if in_start.is_zero() {
        Duration::ZERO
    } else {
        DECLICK
    };
    (in_start, declick)
}

/// The gain (dB) a track plays with: `target − I` within the boost and cut limits, lowered so
/// that its true peak needs at most 3 dB of limiting; a short item by its loudest 3 s instead.
/// Without analysis, the provisional gain of its tags (or 0 dB) within the same limits.
pub fn gain_db(facts: Option<&Facts>, provisional_db: Option<f64>, l: &Loudness) -> f64 {
    let limit = |g: f64| g.clamp(-l.max_cut_db, l.max_boost_db);
    let Some(f) = facts else {
        return limit(provisional_db.unwrap_or(0.0));
    };
    let Some(i) = f.integrated_lufs else {
        return 0.0; // silence: nothing to bring up
    };
    let mut g = limit(l.target_lufs - i);
    if f.duration_s < SHORT_ITEM_S
        && let Some(s) = f.max_short_term_lufs
    {
        g = g.min(l.target_lufs + 5.0 - s);
    }
    if let Some(tp) = f.true_peak_dbtp {
        g = g.min(l.true_peak_dbtp + 3.0 - tp);
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Envelope;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    /// A song with half a second of silence before its music and a second after it.
    fn song(length: f64, start_next: f64, ending: Ending) -> Cues {
        Cues {
            cue_in: s(0.5),
            cue_out: s(length),
            start_next: s(start_next),
            ending,
            jingle: false,
            duration: s(length + 1.0),
        }
    }

    fn settings() -> Crossfade {
        Crossfade {
            enabled: true,
            max_overlap: s(6.0),
            fade_out: s(2.5),
            curve: Curve::EqualPower,
        }
    }

    #[test]
    fn a_fading_ending_crossfades_from_start_next_and_fades_to_where_it_stops() {
        let p = plan(
            &song(200.0, 196.0, Ending::Fade),
            &song(180.0, 175.0, Ending::Fade),
            &settings(),
            true,
        );
        assert_eq!(p.kind, Kind::Crossfade);
        assert_eq!((p.next_at, p.out_end), (s(196.0), s(200.0)));
        let fade = p.fade.unwrap();
        assert_eq!((fade.start, fade.length), (s(197.5), s(2.5)));
        assert_eq!((p.in_start, p.declick), (s(0.5), DECLICK));
        assert_eq!(p.overlap(), s(4.0));
    }

    #[test]
    fn overlaps_are_capped_by_the_setting_and_by_half_the_shorter_track() {
        let long_tail = song(200.0, 180.0, Ending::Sustained);
        let p = plan(
            &long_tail,
            &song(180.0, 175.0, Ending::Fade),
            &settings(),
            true,
        );
        assert_eq!(p.overlap(), s(6.0));
        assert_eq!(
            p.next_at,
            s(180.0),
            "the next track still starts at start-next"
        );
        // Into a 7 s item: at most 3.25 s (half of its 6.5 s between the cues).
        let short = song(7.0, 6.0, Ending::Fade);
        let p = plan(&song(200.0, 194.0, Ending::Fade), &short, &settings(), true);
        assert_eq!(p.overlap(), s(3.25));
    }

    #[test]
    fn hard_endings_and_disabled_crossfades_are_sequences() {
        let hard = song(200.0, 199.8, Ending::Hard);
        let p = plan(&hard, &song(180.0, 175.0, Ending::Fade), &settings(), true);
        assert_eq!(
            (p.kind, p.next_at, p.fade),
            (Kind::Sequence, s(200.0), None)
        );
        let off = Crossfade {
            enabled: false,
            ..settings()
        };
        let p = plan(
            &song(200.0, 196.0, Ending::Fade),
            &song(180.0, 175.0, Ending::Fade),
            &off,
            true,
        );
        assert_eq!(
            (p.kind, p.overlap(), p.fade),
            (Kind::Sequence, Duration::ZERO, None)
        );
        // A tail too short to fade without a click.
        let p = plan(
            &song(200.0, 199.9, Ending::Fade),
            &song(180.0, 175.0, Ending::Fade),
            &settings(),
            true,
        );
        assert_eq!(p.kind, Kind::Sequence);
    }

    #[test]
    fn jingles_are_never_faded_nor_trimmed() {
        let jingle = Cues::whole(s(3.0), true);
        let into = plan(
            &song(200.0, 196.0, Ending::Fade),
            &jingle,
            &settings(),
            true,
        );
        assert_eq!(into.kind, Kind::Jingle);
        assert_eq!(into.in_start, Duration::ZERO, "played whole");
        assert!(
            into.overlap() <= s(1.5),
            "at most half the jingle: {:?}",
            into.overlap()
        );
        let out_of = plan(
            &jingle,
            &song(180.0, 175.0, Ending::Fade),
            &settings(),
            true,
        );
        assert_eq!(
            (out_of.kind, out_of.fade, out_of.next_at),
            (Kind::Jingle, None, s(3.0))
        );
    }

    #[test]
    fn without_trimming_tracks_play_from_their_first_sample() {
        let p = plan(
            &song(200.0, 196.0, Ending::Fade),
            &song(180.0, 175.0, Ending::Fade),
            &settings(),
            false,
        );
        assert_eq!((p.in_start, p.declick), (Duration::ZERO, Duration::ZERO));
        // Their silences play too: a sequence follows the very last sample.
        let off = Crossfade {
            enabled: false,
            ..settings()
        };
        let p = plan(
            &song(200.0, 196.0, Ending::Fade),
            &song(180.0, 175.0, Ending::Fade),
            &off,
            false,
        );
        assert_eq!((p.next_at, p.out_end), (s(201.0), s(201.0)));
        // A crossfade still starts at start-next, and the tail up to the end is the overlap.
        let p = plan(
            &song(200.0, 196.0, Ending::Fade),
            &song(180.0, 175.0, Ending::Fade),
            &settings(),
            false,
        );
        assert_eq!((p.next_at, p.out_end), (s(196.0), s(201.0)));
    }

    #[test]
    fn a_skip_fades_out_over_a_second_while_the_next_starts() {
        let p = skip(s(42.0), &song(180.0, 175.0, Ending::Fade), true);
        assert_eq!(
            (p.kind, p.next_at, p.out_end),
            (Kind::Skip, s(42.0), s(43.0))
        );
        let f = p.fade.unwrap();
        assert_eq!(f.gain_at(s(41.0)), 1.0);
        assert!((f.gain_at(s(42.5)) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-3);
        assert_eq!(f.gain_at(s(43.0)), 0.0);
    }

    #[test]
    fn curves_start_at_one_end_at_zero_and_equal_power_keeps_the_sum() {
        for c in [Curve::EqualPower, Curve::Linear, Curve::Sine] {
            assert!((curve_out(c, 0.0) - 1.0).abs() < 1e-6);
            assert!(curve_out(c, 1.0).abs() < 1e-6);
        }
        // Out squared plus in squared (the mirrored curve) is 1 all the way.
        for i in 0..=10 {
            let x = i as f32 / 10.0;
            let (o, n) = (
                curve_out(Curve::EqualPower, x),
                curve_out(Curve::EqualPower, 1.0 - x),
            );
            assert!((o * o + n * n - 1.0).abs() < 1e-5);
        }
    }

    fn facts(i: f64, tp: f64, duration: f64, max_s: f64) -> Facts {
        Facts {
            sample_rate: 44_100,
            channels: 2,
            duration_s: duration,
            integrated_lufs: Some(i),
            range_lu: Some(5.0),
            true_peak_dbtp: Some(tp),
            max_short_term_lufs: Some(max_s),
            momentary: Envelope::default(),
        }
    }

    #[test]
    fn gains_reach_the_target_within_their_limits() {
        let l = Loudness {
            target_lufs: -16.0,
            true_peak_dbtp: -1.0,
            max_boost_db: 10.0,
            max_cut_db: 20.0,
        };
        // A brickwalled track comes down 8 dB.
        assert_eq!(
            gain_db(Some(&facts(-8.0, 0.0, 200.0, -6.0)), None, &l),
            -8.0
        );
        // A quiet one goes up as far as its peaks allow: -24 needs +8, its peak at -9 dBTP
        // allows up to -1 + 3 + 9 = +11: +8.
        assert_eq!(
            gain_db(Some(&facts(-24.0, -9.0, 200.0, -20.0)), None, &l),
            8.0
        );
        // Peaks at -3 dBTP: +8 would need 6 dB of limiting; it gets +5 (3 dB).
        assert_eq!(
            gain_db(Some(&facts(-24.0, -3.0, 200.0, -20.0)), None, &l),
            5.0
        );
        // Very quiet: +10 at most.
        assert_eq!(
            gain_db(Some(&facts(-40.0, -30.0, 200.0, -35.0)), None, &l),
            10.0
        );
        // A jingle is judged by its loudest 3 s: at most target + 5 LU there.
        assert_eq!(
            gain_db(Some(&facts(-20.0, -10.0, 5.0, -8.0)), None, &l),
            -3.0
        );
        // Unanalysed: its tag's gain within the limits, else nothing.
        assert_eq!(gain_db(None, Some(-3.5), &l), -3.5);
        assert_eq!(gain_db(None, Some(40.0), &l), 10.0);
        assert_eq!(gain_db(None, None, &l), 0.0);
    }
}
