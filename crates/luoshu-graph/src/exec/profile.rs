use std::fmt::Write;
use std::time::Duration;

/// Per-step kernel times: the last run's and the total over all runs.
#[derive(Debug)]
pub(crate) struct Profile {
    last: Vec<Duration>,
    totals: Vec<Duration>,
}

impl Profile {
    pub(crate) fn new(steps: usize) -> Self {
        Profile {
            last: vec![Duration::ZERO; steps],
            totals: vec![Duration::ZERO; steps],
        }
    }

    pub(crate) fn record(&mut self, step: usize, time: Duration) {
        self.last[step] = time;
        self.totals[step] += time;
    }

    pub(crate) fn totals(&self) -> &[Duration] {
        &self.totals
    }

    /// The `k` slowest steps of the last run, one line each (`names` per step).
    pub(crate) fn top(&self, names: &[String], k: usize) -> String {
        let total: Duration = self.last.iter().sum();
        let mut order: Vec<usize> = (0..self.last.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.last[i]));
        let mut out = format!(
            "luoshu profile: {} kernels, {:.3} ms; slowest:\n",
            self.last.len(),
            total.as_secs_f64() * 1e3
        );
        for &i in order.iter().take(k) {
            let share = self.last[i].as_secs_f64() / total.as_secs_f64().max(f64::MIN_POSITIVE);
            // Writing into a String cannot fail.
            let _ = writeln!(
                out,
                "  {:>9.3} ms {:>5.1}%  {}",
                self.last[i].as_secs_f64() * 1e3,
                share * 100.0,
                names[i]
            );
        }
        out
    }
}
