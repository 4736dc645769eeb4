//! Logging: `tracing` everywhere; events go to journald with their fields as journal fields
//! when smshub runs under systemd, and to stderr as readable lines otherwise.
//!
//! Why a small layer of our own instead of tracing's `log` bridge: the bridge flattens event
//! fields into the message text, and `journalctl -o verbose` is only useful when `MODEM=`,
//! `MESSAGE_ID=`, `OUTBOX_ID=` are real fields. The layer hands each event to
//! `systemd-journal-logger` as a `log::Record` whose key-values are the event's fields
//! (that crate upper-cases and escapes the names).
//!
//! Rule for the whole code base: message bodies, secrets and full phone numbers are never
//! logged at info or above; use [`crate::phone::mask_number`] for numbers.

use std::fmt::Write as _;
use std::io::IsTerminal as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// `MESSAGE_ID` values (128-bit, as journald expects) of the events an operator filters on, e.g.
/// `journalctl -u smshub MESSAGE_ID=277bdc488ae24d549de5f74bd4daa86f`. Pass them as the
/// `message_id` field of an event; the journald layer turns it into `MESSAGE_ID`.
pub mod message_ids {
    /// An outbox message was sent (every part acknowledged by the modem).
    pub const OUTBOX_SENT: &str = "277bdc488ae24d549de5f74bd4daa86f";
    /// An outbox message failed for good.
    pub const OUTBOX_FAILED: &str = "ae4d14dbbe2841e88d8ec88be0d2e2ef";
    /// An SMS was received and stored.
    pub const INBOX_RECEIVED: &str = "adac8ca4c14544c4a2f8d70ae61cb526";
    /// An outcome was reported to Provet.
    pub const PROVET_REPORTED: &str = "4a2672c1f6e147dfb37ed2e3656c3e9b";
}

/// Where logs go, as decided at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Journald,
    Stderr,
}

/// Chooses the target: `auto` means journald when stderr is connected to the journal
/// (systemd sets `JOURNAL_STREAM` for a service whose output goes there).
pub fn choose_target(format: LogFormat) -> Target {
    match format {
        LogFormat::Journald => Target::Journald,
        LogFormat::Stderr => Target::Stderr,
        LogFormat::Auto => {
            if systemd_journal_logger::connected_to_journal() {
                Target::Journald
            } else {
                Target::Stderr
            }
        }
    }
}

/// Installs the global subscriber. `level` is the config's filter; `RUST_LOG`, when set,
/// wins (so an operator can turn on debug for one run without editing the file).
/// Returns the target actually used (journald falls back to stderr if the socket is missing).
pub fn init(format: LogFormat, level: &str) -> Target {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let target = choose_target(format);
    if target == Target::Journald
        && let Ok(journal) = systemd_journal_logger::JournalLog::new()
    {
        let layer = JournaldLayer { journal: journal.with_syslog_identifier("smshub".to_string()) };
        if tracing_subscriber::registry().with(filter).with(layer).try_init().is_ok() {
            return Target::Journald;
        }
        return Target::Stderr;
    }
    let ansi = colour_wanted(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || EscapingStderr { keep_esc: ansi })
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
    Target::Stderr
}

/// stderr for the line formatter, with control characters inside a line escaped (`\n`, `\r`,
/// `\u{1b}` …), so a field from outside (an alphanumeric sender with a line feed, an error
/// text) can neither split a log line nor drive the terminal. ESC is kept only when we write
/// colour ourselves (tracing-subscriber escapes ANSI sequences in fields then).
struct EscapingStderr {
    keep_esc: bool,
}

impl std::io::Write for EscapingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(escape_controls(&text, self.keep_esc).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// `text` (one formatted log line) with its control characters escaped, except a final line
/// feed, tabs and (if `keep_esc`) ESC.
pub fn escape_controls(text: &str, keep_esc: bool) -> String {
    let (body, end) = match text.strip_suffix('\n') {
        Some(b) => (b, "\n"),
        None => (text, ""),
    };
    let mut out = String::with_capacity(text.len() + 8);
    for c in body.chars() {
        if c.is_control() && c != '\t' && !(keep_esc && c == '\u{1b}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push_str(end);
    out
}

/// Colour codes only for a person at a terminal: not in a file, a pipe or a test log, and not
/// when `NO_COLOR` is set to anything but the empty string (no-color.org).
pub fn colour_wanted(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Sends tracing events to journald with their fields.
struct JournaldLayer {
    journal: systemd_journal_logger::JournalLog,
}

#[derive(Default)]
struct FieldCollector {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields.push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

impl<S: Subscriber> Layer<S> for JournaldLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut collected = FieldCollector::default();
        event.record(&mut collected);
        let meta = event.metadata();
        let level = match *meta.level() {
            Level::ERROR => log::Level::Error,
            Level::WARN => log::Level::Warn,
            Level::INFO => log::Level::Info,
            Level::DEBUG => log::Level::Debug,
            Level::TRACE => log::Level::Trace,
        };
        // The readable message also lists the fields, for `journalctl` without -o verbose.
        let mut text = collected.message.clone();
        for (k, v) in &collected.fields {
            let _ = write!(text, " {k}={v}");
        }
        let kvs: Vec<(&str, &str)> = collected.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let kv_slice: &[(&str, &str)] = &kvs;
        let args = format_args!("{text}");
        let record = log::Record::builder()
            .args(args)
            .level(level)
            .target(meta.target())
            .module_path(meta.module_path())
            .file(meta.file())
            .line(meta.line())
            .key_values(&kv_slice)
            .build();
        if self.journal.journal_send(&record).is_err() {
            eprintln!("{level} {text}");
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn control_characters_in_a_log_line_are_escaped_but_the_line_end_kept() {
        let line = "INFO from=Vet\nINFO forged=1 \u{1b}]0;title\u{7}\u{1b}[2J done\n";
        let escaped = super::escape_controls(line, false);
        assert_eq!(escaped.matches('\n').count(), 1, "{escaped}");
        assert!(escaped.ends_with("done\n"));
        assert!(escaped.contains("Vet\\nINFO") && escaped.contains("\\u{1b}]0;title\\u{7}"), "{escaped}");
        assert!(!super::escape_controls("\u{1b}[31mred\u{1b}[0m\n", true).contains("\\u{1b}"), "our own colour stays");
        assert_eq!(super::escape_controls("tab\there", false), "tab\there");
    }

    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))), "an empty NO_COLOR does not count");
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None), "a file or a pipe gets no escape codes");
    }

    #[test]
    fn explicit_formats_choose_their_target() {
        assert_eq!(choose_target(LogFormat::Stderr), Target::Stderr);
        assert_eq!(choose_target(LogFormat::Journald), Target::Journald);
    }
}

#[cfg(test)]
mod field_tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// (message, fields) of each event.
    type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

    /// Captures what the journald layer would send, through the same collector.
    struct Capture(Seen);

    impl<S: Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut c = FieldCollector::default();
            event.record(&mut c);
            self.0.lock().unwrap().push((c.message, c.fields));
        }
    }

    #[test]
    fn event_fields_become_separate_journal_fields() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                modem = "main",
                outbox_id = 7,
                message_id = crate::logging::message_ids::OUTBOX_SENT,
                "message sent"
            );
        });
        let seen = seen.lock().unwrap();
        let (message, fields) = &seen[0];
        assert_eq!(message, "message sent");
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("modem"), Some("main"));
        assert_eq!(get("outbox_id"), Some("7"));
        assert_eq!(get("message_id"), Some(message_ids::OUTBOX_SENT));
    }
}
