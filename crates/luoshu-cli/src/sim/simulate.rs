//! `luoshu simulate`: `luoshu plan` over models × device counts × contexts, written to
//! `simulate.csv` (one row per configuration and system) and `simulate.png` (step time
//! per system).

use super::plan::simulator;
use super::report::strategy_of;
use super::workload::{load, WorkloadArgs};
use luoshu_sim::lengths::global_batch;
use luoshu_sim::plan;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// Model presets, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "llama-7b,llama-13b")]
    pub models: Vec<String>,
    /// Override one field of every model, e.g. `--model-field n_kv_heads=8` (repeatable).
    #[arg(long, value_name = "FIELD=VALUE")]
    pub model_field: Vec<String>,
    /// Device counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "8,16")]
    pub devices: Vec<usize>,
    /// Contexts in tokens, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "8192,32768")]
    pub contexts: Vec<usize>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Directory for simulate.csv and simulate.png.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

/// One configuration's simulated step times.
struct Row {
    label: String,
    systems: Vec<(&'static str, Option<f64>, String)>,
}

pub fn run(args: &SimulateArgs) -> Result<ExitCode, String> {
    let (hardware, observed, source) = load(&args.workload)?;
    let w = &args.workload;
    println!("lengths: {source}");
    let mut rows = Vec::new();
    let mut csv = String::from("model,devices,context,system,seconds,strategy\n");
    for model in &args.models {
        for &devices in &args.devices {
            for &context in &args.contexts {
                let label = format!("{model} ×{devices} {}K", context / 1024);
                let sim = simulator(
                    (model, &args.model_field),
                    context,
                    (&hardware, devices),
                    w.precision,
                )?;
                let batch = global_batch(&observed, w.global_batch, context, w.seed)
                    .map_err(|e| e.to_string())?;
                let planned = match plan(&sim, &batch, context) {
                    Ok(p) => p,
                    Err(e) => {
                        println!("{label}: {e}");
                        continue;
                    }
                };
                let systems = vec![
                    (
                        "hot switching",
                        Some(planned.hot.seconds()),
                        strategy_of(&planned.hot),
                    ),
                    (
                        "static packed",
                        Some(planned.packed.seconds()),
                        strategy_of(&planned.packed),
                    ),
                    (
                        "static padded",
                        planned.padded.as_ref().map(|s| s.seconds()),
                        planned.padded.as_ref().map(strategy_of).unwrap_or_default(),
                    ),
                ];
                for (system, seconds, strategy) in &systems {
                    let seconds = seconds.map(|s| format!("{s:.4}")).unwrap_or_default();
                    csv.push_str(&format!(
                        "{model},{devices},{context},{system},{seconds},{strategy}\n"
                    ));
                }
                println!(
                    "{label}: {}",
                    systems
                        .iter()
                        .map(|(name, s, _)| match s {
                            Some(s) => format!("{name} {s:.3} s"),
                            None => format!("{name}: does not fit"),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                rows.push(Row { label, systems });
            }
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let csv_path = args.out.join("simulate.csv");
    std::fs::write(&csv_path, csv).map_err(|e| format!("{}: {e}", csv_path.display()))?;
    let png = args.out.join("simulate.png");
    draw(&rows, &png).map_err(|e| format!("{}: cannot draw: {e}", png.display()))?;
    println!("wrote {} and {}", csv_path.display(), png.display());
    Ok(ExitCode::SUCCESS)
}

/// Step time per configuration, one line per system.
fn draw(rows: &[Row], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let high = rows
        .iter()
        .flat_map(|r| r.systems.iter().filter_map(|s| s.1))
        .fold(0.0, f64::max);
    if rows.is_empty() || high <= 0.0 {
        return Err("no configuration could be simulated".into());
    }
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let last = rows.len().saturating_sub(1).max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("simulated step time", ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.2f64..last + 0.2, 0f64..high * 1.1)?;
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    chart
        .configure_mesh()
        .x_labels(rows.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("seconds per step")
        .draw()?;
    // Hot switching last, on top: it often equals static packing.
    for (index, color) in [BLUE, GREEN, RED].into_iter().enumerate().rev() {
        let name = rows[0].systems[index].0;
        let points: Vec<(f64, f64)> = rows
            .iter()
            .enumerate()
            .filter_map(|(x, r)| r.systems[index].1.map(|s| (x as f64, s)))
            .collect();
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
