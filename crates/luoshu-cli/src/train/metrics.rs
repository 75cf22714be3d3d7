//! `metrics.csv`: one row per optimizer step, flushed as it is written.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

const HEADER: &str =
    "step,loss,val_loss,lr,tokens_per_s,grad_norm,step_seconds,switch_seconds,switch_bytes,phases";

/// One row; `val_loss` only on evaluation steps. Under hot switching `phases` lists each
/// phase as `STRATEGY N seq T tok S s`, `;`-separated (empty for a static strategy).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    pub step: u64,
    pub loss: f64,
    pub val_loss: Option<f64>,
    pub lr: f64,
    pub tokens_per_s: f64,
    pub grad_norm: f64,
    pub seconds: f64,
    pub phases: String,
    pub switch_seconds: f64,
    pub switch_bytes: u64,
}

impl MetricsRow {
    fn to_csv(&self) -> String {
        let val = self.val_loss.map(|v| v.to_string()).unwrap_or_default();
        format!(
            "{},{},{val},{},{},{},{},{},{},{}",
            self.step,
            self.loss,
            self.lr,
            self.tokens_per_s,
            self.grad_norm,
            self.seconds,
            self.switch_seconds,
            self.switch_bytes,
            self.phases
        )
    }

    /// A row of this format, or of the six-column format before hot switching.
    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split(',').collect();
        let (head, tail) = fields.split_at(fields.len().min(6));
        let [step, loss, val, lr, tps, norm] = head else {
            return None;
        };
        let (seconds, switch_seconds, switch_bytes, phases) = match tail {
            [] => (0.0, 0.0, 0, String::new()),
            [seconds, switch_seconds, switch_bytes, phases] => (
                seconds.parse().ok()?,
                switch_seconds.parse().ok()?,
                switch_bytes.parse().ok()?,
                phases.to_string(),
            ),
            _ => return None,
        };
        Some(MetricsRow {
            step: step.parse().ok()?,
            loss: loss.parse().ok()?,
            val_loss: if val.is_empty() {
                None
            } else {
                Some(val.parse().ok()?)
            },
            lr: lr.parse().ok()?,
            tokens_per_s: tps.parse().ok()?,
            grad_norm: norm.parse().ok()?,
            seconds,
            phases,
            switch_seconds,
            switch_bytes,
        })
    }
}

/// The rows of a run, appended to `metrics.csv` as they come.
pub struct MetricsLog {
    path: PathBuf,
    writer: BufWriter<File>,
    rows: Vec<MetricsRow>,
}

impl MetricsLog {
    /// Start `path` afresh, keeping the rows of an earlier run up to `keep_through` (those
    /// a resumed run does not redo); `None` starts empty.
    pub fn open(path: &Path, keep_through: Option<u64>) -> Result<Self, String> {
        let rows = match keep_through {
            Some(last) => std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(MetricsRow::parse)
                .filter(|r| r.step <= last)
                .collect(),
            None => Vec::new(),
        };
        // The kept rows go to a temporary file renamed over the old one, so a run killed
        // here still leaves them for the next resume.
        let error = |e: std::io::Error| format!("{}: {e}", path.display());
        let temp = path.with_extension("csv.tmp");
        let mut text = format!("{HEADER}\n");
        for row in &rows {
            text.push_str(&row.to_csv());
            text.push('\n');
        }
        std::fs::write(&temp, text).map_err(error)?;
        std::fs::rename(&temp, path).map_err(error)?;
        let file = OpenOptions::new().append(true).open(path).map_err(error)?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            writer: BufWriter::new(file),
            rows,
        })
    }

    fn write_line(&mut self, line: &str) -> Result<(), String> {
        writeln!(self.writer, "{line}")
            .and_then(|_| self.writer.flush())
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    pub fn push(&mut self, row: MetricsRow) -> Result<(), String> {
        self.write_line(&row.to_csv())?;
        self.rows.push(row);
        Ok(())
    }

    pub fn rows(&self) -> &[MetricsRow] {
        &self.rows
    }
}
