//! The share of a call done, as progress events carry it: from the estimate, shaped to speed up
//! towards the end, never lower than what was last published and never 1 before `done`.
//!
//! With `t` waited and `r` estimated to go, the raw share is `p = t / (t + r)`; the published
//! value is `p^1.5`. When the estimate is right, `p` grows linearly with time and `p^1.5`
//! moves slowly at first and faster towards the end: the shape Harrison et al. ("Rethinking the
//! progress bar", UIST 2007) found makes a wait feel shorter than linear progress, and far
//! shorter than progress that stalls or goes back. It is capped at [`MAX_BEFORE_DONE`] and never
//! goes below the last value, so a later, longer estimate makes the bar wait, not go back; only
//! `aloud.done` means 1.

/// The most a fraction says before the exchange is done.
pub const MAX_BEFORE_DONE: f64 = 0.99;
/// The shape's exponent (> 1: speeds up towards the end).
pub const SHAPE: f64 = 1.5;

/// One exchange's published fraction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Fraction {
    last: f64,
}

impl Fraction {
    /// The raw share done, shaped (no memory).
    pub fn shape(elapsed_ms: f64, remaining_ms: f64) -> f64 {
        let total = elapsed_ms + remaining_ms.max(0.0);
        if total <= 0.0 {
            return 0.0;
        }
        (elapsed_ms.max(0.0) / total).powf(SHAPE)
    }

    /// The next value to publish: shaped, capped, never below the last, in thousandths
    /// (rounded down, so the cap holds).
    pub fn next(&mut self, elapsed_ms: f64, remaining_ms: f64) -> f64 {
        let shaped = Self::shape(elapsed_ms, remaining_ms).min(MAX_BEFORE_DONE);
        let v = ((shaped * 1000.0).floor() / 1000.0).max(self.last);
        self.last = v;
        v
    }

    pub fn last(&self) -> f64 {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_back_never_one_and_faster_at_the_end() {
        let mut f = Fraction::default();
        assert_eq!(f.next(0.0, 10_000.0), 0.0);
        let a = f.next(2500.0, 7500.0);
        let b = f.next(5000.0, 5000.0);
        let c = f.next(7500.0, 2500.0);
        assert!(a < b && b < c);
        // Equal steps in time, growing steps in the bar.
        assert!(b - a < c - b, "{a} {b} {c}");
        // A longer estimate later never moves it back.
        assert_eq!(f.next(8000.0, 60_000.0), c);
        // Overdue: capped below 1.
        assert_eq!(f.next(1e9, 0.0), MAX_BEFORE_DONE);
        assert_eq!(f.last(), MAX_BEFORE_DONE);
    }
}
