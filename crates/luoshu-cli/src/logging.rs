//! Diagnostics through `tracing`, filtered by `LUOSHU_LOG` (same syntax as `RUST_LOG`:
//! `debug`, `luoshu_graph=debug,warn`, ...). Without it only warnings and errors are shown,
//! so a normal run prints what it always printed; `LUOSHU_LOG=debug` adds pass statistics,
//! compiled plans, switch plans and step timings. Progress lines and tables the commands
//! print on purpose do not go through here.

use std::fmt;
use std::io::IsTerminal;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// The environment variable holding the filter.
pub const LOG_VARIABLE: &str = "LUOSHU_LOG";

/// Installs the stderr subscriber for the whole process. An unparsable directive in
/// `LUOSHU_LOG` is ignored (the default `warn` stands) rather than stopping the command.
pub fn install() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .with_env_var(LOG_VARIABLE)
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Field names are styled on a terminal only: piped output stays greppable.
        .with_ansi(std::io::stderr().is_terminal())
        .event_format(Lines)
        .init();
}

/// Warnings and errors read as they did before `tracing` (`warning: …`, `error: …`);
/// other levels name their level and module: `debug luoshu_graph::passes: pass statistics
/// pass="fold" nodes_before=120 …`.
struct Lines;

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        match *meta.level() {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            level => write!(
                writer,
                "{} {}: ",
                level.as_str().to_lowercase(),
                meta.target()
            )?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
