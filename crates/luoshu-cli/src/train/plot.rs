//! `loss.png`: training and validation loss against the step; `time.png`: each step's
//! time stacked by phase, the update and switching between strategies.

use super::metrics::MetricsRow;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

type Plot<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The chart both plots draw on: `caption` above, steps `x` along, `y` up (`y_desc`).
fn step_chart<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    caption: &str,
    (x, y): (Range<f64>, Range<f64>),
    y_desc: &str,
) -> Result<Plot<'a, 'b>, Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("step")
        .y_desc(y_desc)
        .draw()?;
    Ok(chart)
}

/// The legend of `chart`, then the file.
fn finish<'a, 'b: 'a>(
    chart: &mut Plot<'a, 'b>,
    root: &DrawingArea<BitMapBackend<'b>, Shift>,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Draw the loss curves of `rows` into `path`.
pub fn plot_loss(rows: &[MetricsRow], path: &Path) -> Result<(), String> {
    draw(rows, path).map_err(|e| format!("{}: cannot draw the loss plot: {e}", path.display()))
}

fn draw(rows: &[MetricsRow], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let train: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.loss)).collect();
    let val: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.val_loss.map(|v| (r.step as f64, v)))
        .collect();
    let losses = train.iter().chain(&val).map(|p| p.1);
    let (low, high) = losses.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !low.is_finite() || !high.is_finite() {
        return Err("no finite loss to plot".into());
    }
    let last_step = rows.last().map_or(1, |r| r.step.max(1)) as f64;
    let margin = ((high - low) * 0.05).max(1e-3);

    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    let mut chart = step_chart(
        &root,
        "luoshu training loss",
        (0f64..last_step, (low - margin)..(high + margin)),
        "loss (nats/token)",
    )?;
    chart
        .draw_series(LineSeries::new(train, &BLUE))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(val.clone(), RED.stroke_width(2)))?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart.draw_series(val.into_iter().map(|p| Circle::new(p, 3, RED.filled())))?;
    finish(&mut chart, &root)
}

/// Draw each step's time split into its phases (seconds per strategy) and switching
/// into `path`.
pub fn plot_time(rows: &[MetricsRow], path: &Path) -> Result<(), String> {
    draw_time(rows, path).map_err(|e| format!("{}: cannot draw the time plot: {e}", path.display()))
}

/// Seconds per strategy of a `phases` field (`STRATEGY N seq T tok S s;...`).
fn phase_seconds(phases: &str) -> Vec<(String, f64)> {
    phases
        .split(';')
        .filter_map(|phase| {
            let words: Vec<&str> = phase.split_whitespace().collect();
            match words.as_slice() {
                [strategy, _, "seq", _, "tok", seconds, "s"] => {
                    Some((strategy.to_string(), seconds.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

/// The stacked layers of the time plot, bottom first: each strategy's phases in order
/// of first appearance (a static run's whole step is one "compute" layer), then
/// switching. Each layer is its (step, top of the layer) points.
fn time_layers(rows: &[MetricsRow]) -> Vec<(String, Vec<(f64, f64)>)> {
    let per_row: Vec<Vec<(String, f64)>> = rows.iter().map(|r| phase_seconds(&r.phases)).collect();
    let mut names: Vec<String> = Vec::new();
    for (name, _) in per_row.iter().flatten() {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    let mut layers: Vec<(String, Vec<(f64, f64)>)> = names
        .iter()
        .map(|n| (n.clone(), Vec::new()))
        .chain([("compute".to_string(), Vec::new())])
        .chain([("switching".to_string(), Vec::new())])
        .collect();
    for (row, phases) in rows.iter().zip(&per_row) {
        let x = row.step as f64;
        let mut top = 0.0;
        for (layer, name) in layers.iter_mut().zip(&names) {
            top += phases
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, s)| s)
                .sum::<f64>();
            layer.1.push((x, top));
        }
        // What no phase and no switch accounts for: a static step, or the update.
        let rest = (row.seconds - top - row.switch_seconds).max(0.0);
        top += rest;
        layers[names.len()].1.push((x, top));
        layers[names.len() + 1]
            .1
            .push((x, top + row.switch_seconds));
    }
    if names.is_empty() {
        layers
    } else {
        // Under hot switching the remainder is the update: name it so.
        layers[names.len()].0 = "update".into();
        layers
    }
}

/// Colours of the strategies' phases (red is switching, grey the rest of the step).
const PHASE_COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn draw_time(rows: &[MetricsRow], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let layers = time_layers(rows);
    let high = layers
        .last()
        .into_iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    if !(high.is_finite() && high > 0.0) {
        return Err("no step time to plot".into());
    }
    let first = rows.first().map_or(0, |r| r.step) as f64;
    let last = rows.last().map_or(1, |r| r.step) as f64;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    let mut chart = step_chart(
        &root,
        "luoshu step time by phase",
        (first..last.max(first + 1.0), 0f64..high * 1.05),
        "seconds (stacked)",
    )?;
    // Top layer first, so each lower one is drawn over the part of it that it covers.
    for (i, (name, points)) in layers.iter().enumerate().rev() {
        if points.iter().all(|p| p.1 == 0.0) {
            continue;
        }
        // Opaque, so a lower layer hides the upper ones where it covers them.
        let color = match name.as_str() {
            "switching" => RED,
            "update" | "compute" => RGBColor(150, 150, 150),
            _ => PHASE_COLORS[i % PHASE_COLORS.len()],
        };
        chart
            .draw_series(AreaSeries::new(points.clone(), 0.0, color.filled()))?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled()));
    }
    finish(&mut chart, &root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64, seconds: f64, switch_seconds: f64, phases: &str) -> MetricsRow {
        MetricsRow {
            step,
            loss: 1.0,
            val_loss: None,
            lr: 1e-3,
            tokens_per_s: 1.0,
            grad_norm: 1.0,
            seconds,
            phases: phases.into(),
            switch_seconds,
            switch_bytes: 0,
        }
    }

    #[test]
    fn layers_stack_phases_then_the_update_then_switching() {
        let rows = [row(
            1,
            1.0,
            0.2,
            "dp2 3 seq 90 tok 0.5000 s;tp2 1 seq 30 tok 0.2500 s",
        )];
        let layers = time_layers(&rows);
        let tops: Vec<(&str, f64)> = layers.iter().map(|(n, p)| (n.as_str(), p[0].1)).collect();
        assert_eq!(
            tops,
            [
                ("dp2", 0.5),
                ("tp2", 0.75),
                ("update", 0.8),
                ("switching", 1.0)
            ]
        );
        let static_rows = [row(1, 2.0, 0.0, "")];
        let layers = time_layers(&static_rows);
        assert_eq!(layers[0], ("compute".to_string(), vec![(1.0, 2.0)]));
    }
}
