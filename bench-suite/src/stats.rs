//! Medians and spreads of repeated measurements.

use serde::{Deserialize, Serialize};

/// The median, minimum and maximum of a set of samples, with the samples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Summary {
    /// Summarises `samples`; returns `None` when there are none or one is NaN.
    ///
    /// The median of an even count is the mean of the two middle values.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|x| x.is_nan()) {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Summary {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            samples: samples.to_vec(),
        })
    }

    /// Formats the median with its min-max spread, e.g. `412 (398-430)`,
    /// with `decimals` digits after the point.
    pub fn display(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}-{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_odd_count() {
        let summary = Summary::of(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(summary.median, 3.0);
        assert_eq!(summary.min, 1.0);
        assert_eq!(summary.max, 5.0);
        assert_eq!(summary.samples, vec![5.0, 1.0, 3.0]);
    }

    #[test]
    fn summary_of_even_count_averages_middle() {
        let summary = Summary::of(&[4.0, 1.0, 10.0, 2.0]).unwrap();
        assert_eq!(summary.median, 3.0);
        assert_eq!(summary.min, 1.0);
        assert_eq!(summary.max, 10.0);
    }

    #[test]
    fn summary_of_empty_or_nan_is_none() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn summary_display_rounds() {
        let summary = Summary::of(&[398.4, 412.26, 430.0]).unwrap();
        assert_eq!(summary.display(0), "412 (398-430)");
        assert_eq!(summary.display(1), "412.3 (398.4-430.0)");
    }
}
