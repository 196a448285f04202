//! Log output of the agent and the CLI, on stderr: readable text on a terminal, text
//! without timestamps or colours and with syslog priority prefixes (`<3>`..`<7>`) under
//! the systemd journal (which stamps every line itself and reads the prefix as the
//! priority), or one JSON object per line for log shippers (`--log-format json`).
//! `CUTOVER_LOG` filters by level and target (`info` by default, `debug`,
//! `cutover::engine=debug`, ...).

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// Environment variable with the level filter.
pub const FILTER_ENV: &str = "CUTOVER_LOG";
/// Filter used when [`FILTER_ENV`] is unset or invalid.
pub const DEFAULT_FILTER: &str = "info";

/// The `--log-format` choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people: timestamps and colours on a terminal, neither under the journal.
    #[default]
    Text,
    /// One JSON object per line, with timestamp, level, target and fields.
    Json,
}

/// How lines are written, as chosen by [`style`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Plain lines: level, target, message and fields.
    Text {
        /// Start each line with the time (off under the journal, which adds its own).
        timestamps: bool,
        /// Colour the level with ANSI escapes (only on a terminal).
        ansi: bool,
        /// Prefix each line with its syslog priority, for the journal.
        priority: bool,
    },
    /// One JSON object per line ([`LogFormat::Json`]).
    Json,
}

/// The style for a format, given whether stderr is the journal's stream and a terminal.
pub fn style(format: LogFormat, journal: bool, terminal: bool) -> Style {
    match format {
        LogFormat::Json => Style::Json,
        LogFormat::Text if journal => Style::Text {
            timestamps: false,
            ansi: false,
            priority: true,
        },
        LogFormat::Text => Style::Text {
            timestamps: true,
            ansi: terminal,
            priority: false,
        },
    }
}

/// Whether stderr is connected to the journal: `JOURNAL_STREAM` (`<device>:<inode>`, set by
/// systemd for services whose output goes to the journal) names the file stderr is. A
/// child whose stderr was redirected elsewhere inherits the variable but not the match.
pub fn stderr_is_journal() -> bool {
    let value = std::env::var("JOURNAL_STREAM").ok();
    names_stream(value.as_deref(), stderr_identity())
}

/// Whether a `JOURNAL_STREAM` value names the file with this `(device, inode)`.
fn names_stream(value: Option<&str>, identity: Option<(u64, u64)>) -> bool {
    let Some((dev, ino)) = value.and_then(|v| v.split_once(':')) else {
        return false;
    };
    match (dev.parse::<u64>(), ino.parse::<u64>()) {
        (Ok(dev), Ok(ino)) => identity == Some((dev, ino)),
        _ => false,
    }
}

fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Installs the global subscriber writing to stderr (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let style = style(format, stderr_is_journal(), std::io::stderr().is_terminal());
    let _ = tracing::subscriber::set_global_default(subscriber(style, std::io::stderr));
}

/// The level filter of [`FILTER_ENV`] (`info`, `cutover::engine=debug,info`, ...), or
/// [`DEFAULT_FILTER`] when it is unset or invalid.
fn filter() -> Targets {
    let default = || DEFAULT_FILTER.parse().expect("the default filter parses");
    match std::env::var(FILTER_ENV) {
        Ok(spec) => spec.parse().unwrap_or_else(|_| default()),
        Err(_) => default(),
    }
}

/// The subscriber for a style, writing to `writer`.
pub fn subscriber<W>(style: Style, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // The level is decided by the filter layer; the builder lets every event through to it.
    let filter = filter();
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(writer);
    match style {
        Style::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .finish()
                .with(filter),
        ),
        Style::Text {
            priority: true,
            ansi,
            ..
        } => Box::new(
            builder
                .with_ansi(ansi)
                .event_format(Priority(Format::default().without_time().with_ansi(ansi)))
                .finish()
                .with(filter),
        ),
        Style::Text {
            timestamps: false,
            ansi,
            ..
        } => Box::new(builder.with_ansi(ansi).without_time().finish().with(filter)),
        Style::Text { ansi, .. } => Box::new(builder.with_ansi(ansi).finish().with(filter)),
    }
}

/// Prefixes each event with its syslog priority (`<3>` error .. `<7>` debug), which the
/// journal strips and records as the entry's priority (`journalctl -p warning`).
struct Priority<F>(F);

impl<S, N, F> FormatEvent<S, N> for Priority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn style_follows_format_journal_and_terminal() {
        let text = |timestamps, ansi, priority| Style::Text {
            timestamps,
            ansi,
            priority,
        };
        assert_eq!(style(LogFormat::Text, false, true), text(true, true, false));
        assert_eq!(
            style(LogFormat::Text, false, false),
            text(true, false, false)
        );
        // Under the journal: no timestamps (the journal has them), no colours, priorities.
        assert_eq!(
            style(LogFormat::Text, true, false),
            text(false, false, true)
        );
        assert_eq!(style(LogFormat::Text, true, true), text(false, false, true));
        for (journal, terminal) in [(false, false), (true, false), (false, true)] {
            assert_eq!(style(LogFormat::Json, journal, terminal), Style::Json);
        }
    }

    #[test]
    fn format_parses_from_the_command_line() {
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", false), Ok(LogFormat::Text));
        assert!(LogFormat::from_str("xml", false).is_err());
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        let stderr = Some((8, 4242));
        assert!(names_stream(Some("8:4242"), stderr));
        // Inherited by a process whose stderr goes elsewhere: another inode.
        assert!(!names_stream(Some("8:4243"), stderr));
        assert!(!names_stream(None, stderr));
        assert!(!names_stream(Some("8"), stderr));
        assert!(!names_stream(Some("x:4242"), stderr));
        assert!(!names_stream(Some("8:4242"), None));
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn emit(style: Style) -> String {
        let buf = Buffer::default();
        let out = buf.clone();
        let sub = subscriber(style, move || out.clone());
        tracing::subscriber::with_default(sub, || {
            tracing::info!(service = "web", "switched");
            tracing::error!("refused");
        });
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn journal_lines_carry_priorities_and_no_timestamps() {
        let text = emit(style(LogFormat::Text, true, false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("<6>"), "{text}");
        assert!(lines[0].contains("INFO"), "{text}");
        assert!(lines[0].contains("switched service=\"web\""), "{text}");
        assert!(lines[1].starts_with("<3>"), "{text}");
        assert!(!text.contains('\u{1b}'), "no ANSI escapes: {text:?}");
        // A timestamp would start with the year.
        assert!(!lines[0][3..].trim_start().starts_with("20"), "{text}");
    }

    #[test]
    fn terminal_lines_have_timestamps() {
        let text = emit(style(LogFormat::Text, false, false));
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("20"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
    }

    #[test]
    fn json_lines_are_objects() {
        let text = emit(Style::Json);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["message"], "switched");
        assert_eq!(lines[0]["service"], "web");
        assert!(lines[0]["timestamp"].is_string(), "{text}");
        assert_eq!(lines[1]["level"], "ERROR");
    }
}
