//! `loss.png`: training and validation loss against the step; `time.png`: each step's
//! time split into computing and switching between strategies.

use super::metrics::MetricsRow;
use plotters::prelude::*;
use std::path::Path;

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
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("luoshu training loss", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..last_step, (low - margin)..(high + margin))?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("step")
        .y_desc("loss (nats/token)")
        .draw()?;
    chart
        .draw_series(LineSeries::new(train, &BLUE))?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(val.clone(), RED.stroke_width(2)))?
        .label("validation")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart.draw_series(val.into_iter().map(|p| Circle::new(p, 3, RED.filled())))?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Draw each step's time, with the part spent switching, into `path`.
pub fn plot_time(rows: &[MetricsRow], path: &Path) -> Result<(), String> {
    draw_time(rows, path).map_err(|e| format!("{}: cannot draw the time plot: {e}", path.display()))
}

fn draw_time(rows: &[MetricsRow], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let step: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.seconds)).collect();
    let switch: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.step as f64, r.switch_seconds))
        .collect();
    let high = step.iter().map(|p| p.1).fold(0.0, f64::max);
    if !(high.is_finite() && high > 0.0) {
        return Err("no step time to plot".into());
    }
    let first = rows.first().map_or(0, |r| r.step) as f64;
    let last = rows.last().map_or(1, |r| r.step) as f64;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("luoshu step time", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(first..last.max(first + 1.0), 0f64..high * 1.05)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("step")
        .y_desc("seconds")
        .draw()?;
    chart
        .draw_series(LineSeries::new(step, &BLUE))?
        .label("step (compute + switch)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(switch, RED.stroke_width(2)))?
        .label("switching strategies")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
