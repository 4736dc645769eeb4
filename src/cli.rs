//! The `smshub` command line.
//!
//! Exit codes: 0 success, 1 a runtime failure (database, I/O), 2 bad input (config, usage,
//! phone number, PDU) — so scripts can tell "fix your input" from "try again".

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, LogFormat};
use crate::store::{Db, OutboxFilter, OutboxState};
use crate::web::auth::password::{self, MIN_PASSWORD_CHARS};
use crate::web::auth::{AccountName, secrets};

#[derive(Parser, Debug)]
#[command(
    name = "smshub",
    version,
    about = "SMS gateway for veterinary clinics: Provet Cloud SMS through a local GSM modem, inbound SMS forwarded as Twilio/PBX webhooks"
)]
pub struct Cli {
    /// Config file (TOML).
    #[arg(long, global = true, env = "SMSHUB_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,

    /// Where logs go: auto (journald under systemd, else stderr), journald, or stderr.
    #[arg(long = "log", global = true, value_enum)]
    pub log: Option<LogArg>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LogArg {
    Auto,
    Journald,
    Stderr,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (what the systemd service starts).
    Run,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check config, database, modem and peers; prints ✓/✗ with remedies. Exit 0 only if all pass.
    Doctor {
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Queue an SMS: handed to the running daemon over its socket ([admin] socket), or written to
    /// the database when the daemon is down (it is sent when the daemon starts).
    Send {
        /// Recipient: E.164 (+358401234567) or a national number when default_country is set.
        #[arg(long)]
        to: String,
        /// The message text (long and non-Latin texts are split into parts automatically).
        #[arg(long)]
        text: String,
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// List and manage outgoing messages.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// List received messages.
    #[command(subcommand)]
    Inbox(InboxCommand),
    /// The opt-out list: numbers that sent STOP (or were added here) get no SMS.
    #[command(subcommand)]
    Optout(OptoutCommand),
    /// Event webhooks: what was sent to [[event_webhook]] receivers, each attempt, and replays.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Accounts for people: who may sign in on the admin listener (web UI).
    #[command(subcommand)]
    User(UserCommand),
    /// Tokens for programs: `Authorization: Bearer <token>` on the admin listener (/status, API).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The database: retention ([store] keep_days).
    #[command(subcommand)]
    Store(StoreCommand),
    /// Decode or encode SMS PDUs (JSON output; keys are stable for other tools).
    #[command(subcommand)]
    Pdu(PduCommand),
    /// Run the whole job with no hardware: simulator, fake Provet, demo clinic app and the daemon.
    Demo(crate::testbed::demo::DemoArgs),
    /// Run the modem simulator on a pseudo-terminal (the test rig; no hardware needed).
    Sim(crate::testbed::modem_sim::SimOptions),
    /// Measure the daemon against the in-process simulator and fake Provet (prints figures).
    #[command(subcommand)]
    Bench(crate::testbed::bench::BenchCommand),
    /// Print the version.
    Version,
}

#[derive(Subcommand, Debug)]
pub enum PduCommand {
    /// Decode a PDU as modems print it (+CMGR/+CMGL/+CMT): prints one JSON object.
    Decode {
        /// The PDU in hex.
        hex: String,
        /// The PDU has no leading SMSC field (a bare TPDU).
        #[arg(long)]
        no_smsc: bool,
    },
    /// Encode an SMS-SUBMIT: prints a JSON array of {"pdu", "length"} (length is for AT+CMGS).
    Encode {
        /// Recipient: +international, national digits, or a short code.
        #[arg(long)]
        to: String,
        /// The text (split into parts when it does not fit one SMS).
        #[arg(long)]
        text: String,
        /// Ask the network for a delivery report (TP-SRR).
        #[arg(long)]
        request_report: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate a config file and print the effective config with secrets masked.
    Check {
        /// The file to check (default: --config).
        file: Option<PathBuf>,
        /// Print JSON (the default output is also JSON, pretty-printed; this prints one line).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    /// List messages, newest first.
    List {
        /// Only messages in this state (received, fetched, sending, sent, failed, reported).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show one message with its parts.
    Show {
        /// Outbox id (from `outbox list`).
        id: i64,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Send a failed message again (parts already sent are not sent twice).
    Retry {
        /// Outbox id.
        id: i64,
    },
    /// Cancel a message that is not sent yet.
    Cancel {
        /// Outbox id.
        id: i64,
        /// Why (recorded, and reported to Provet as the failure reason).
        #[arg(long, default_value = "cancelled by operator")]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// List events, newest first, with each webhook's delivery state.
    List {
        /// Only this type (sms.received, sms.sent, sms.failed, sms.delivered, sms.undelivered,
        /// optout.added, optout.removed, modem.online, modem.offline).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Only events with a delivery in this state (pending, delivered, gave_up).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show one event: its data, its deliveries and every attempt (request and answer).
    Show {
        /// Event id (from `events list`) or its envelope id (UUID).
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Queue a new attempt of an event (same envelope id); the running daemon is told at once.
    Replay {
        /// Event id or envelope id.
        id: String,
        /// Only to this webhook (default: every webhook the event went to).
        #[arg(long)]
        webhook: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum InboxCommand {
    /// List received messages, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show one received message with its parts and forward deliveries.
    Show {
        /// Inbox id (from `inbox list`).
        id: i64,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
pub enum OptoutCommand {
    /// List opted-out numbers, newest first.
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Opt a number out: messages to it are refused from now on.
    Add {
        /// E.164 (+358401234567) or a national number when default_country is set.
        number: String,
    },
    /// Opt a number back in.
    Remove {
        /// The number as in `optout list` (or any form `add` accepts).
        number: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user who signs in with NAME and a password read from stdin.
    Add {
        /// 1 to 64 letters, digits, '.', '_', '-' or '@', starting with a letter or digit.
        name: String,
        /// Read the password from the first line of stdin (at least 10 characters), e.g.
        /// `printf '%s\n' "$PASSWORD" | smshub user add anna --password-stdin`. Required: a
        /// password never goes on the command line, where `ps` and shell history would show it.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Remove a user; its sessions end at once.
    Remove {
        /// The name as in `user list`.
        name: String,
    },
    /// List users with their live session counts.
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Erase texts and phone numbers of finished messages older than [store] keep_days (rows and
    /// counts stay) and delete old attempt and log rows. The daemon does this daily by itself.
    Purge {
        /// Only count what would go; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token for a program; it is printed once, as the last line of stdout (only its
    /// hash is kept, so it cannot be shown again).
    Create {
        /// 1 to 64 letters, digits, '.', '_', '-' or '@' (e.g. the program's name: "nagios").
        name: String,
    },
    /// List tokens (names and dates; the tokens themselves are not kept).
    List {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Revoke the valid token called NAME: requests with it are refused (401) from now on.
    Revoke {
        /// The name as in `token list`.
        name: String,
    },
}

/// A failure with the exit code it deserves.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    fn input(message: impl Into<String>) -> Failure {
        Failure { code: 2, message: message.into() }
    }
    fn runtime(message: impl Into<String>) -> Failure {
        Failure { code: 1, message: message.into() }
    }
}

impl From<config::ConfigError> for Failure {
    fn from(e: config::ConfigError) -> Self {
        Failure::input(e.to_string())
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::NotFound(_) | crate::store::StoreError::IllegalTransition { .. } => {
                Failure::input(e.to_string())
            }
            other => Failure::runtime(other.to_string()),
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("smshub: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// The runtime of the commands that host several parts in one process (demo, benches, sim, doctor).
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    build_runtime(tokio::runtime::Builder::new_multi_thread().worker_threads(2))
}

/// The daemon's runtime: one thread (see ARCHITECTURE.md, "Memory at rest").
fn daemon_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    build_runtime(&mut tokio::runtime::Builder::new_current_thread())
}

fn build_runtime(builder: &mut tokio::runtime::Builder) -> Result<tokio::runtime::Runtime, Failure> {
    builder.enable_all().build().map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}

fn log_format(cli: &Cli, config: Option<&Config>) -> LogFormat {
    match cli.log {
        Some(LogArg::Auto) => LogFormat::Auto,
        Some(LogArg::Journald) => LogFormat::Journald,
        Some(LogArg::Stderr) => LogFormat::Stderr,
        None => config.map(|c| c.logging.format).unwrap_or(LogFormat::Auto),
    }
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("smshub: cannot print JSON: {e}"),
    }
}

fn dispatch(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Version => {
            println!("smshub {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Pdu(PduCommand::Decode { hex, no_smsc }) => {
            let value =
                crate::pdu::decode_json(hex, !no_smsc).map_err(|e| Failure::input(format!("pdu decode: {e}")))?;
            println!("{value}");
            Ok(())
        }
        Command::Pdu(PduCommand::Encode { to, text, request_report }) => {
            let value = crate::pdu::encode_json(to, text, *request_report)
                .map_err(|e| Failure::input(format!("pdu encode: {e}")))?;
            println!("{value}");
            Ok(())
        }
        Command::Demo(args) => {
            let args = args.clone();
            runtime()?.block_on(crate::testbed::demo::run(args)).map_err(|e| Failure::runtime(format!("demo: {e:#}")))
        }
        Command::Bench(cmd) => {
            crate::logging::init(log_format(&cli, None), "warn");
            runtime()?
                .block_on(crate::testbed::bench::run(cmd.clone()))
                .map_err(|e| Failure::runtime(format!("bench: {e:#}")))
        }
        Command::Sim(opts) => {
            crate::logging::init(log_format(&cli, None), "info");
            let opts = opts.clone();
            runtime()?.block_on(async move {
                let (shutdown, signal) = crate::shutdown::Shutdown::new();
                let mut stop = crate::shutdown::StopSignals::install()
                    .map_err(|e| Failure::runtime(format!("installing signal handlers: {e}")))?;
                let mut sim = tokio::spawn(crate::testbed::modem_sim::run(opts, signal.receiver()));
                let finished = tokio::select! {
                    _ = stop.recv() => None,
                    res = &mut sim => Some(res),
                };
                let res = match finished {
                    Some(res) => res,
                    None => {
                        shutdown.trigger();
                        match tokio::time::timeout(std::time::Duration::from_secs(10), sim).await {
                            Ok(res) => res,
                            Err(_) => return Err(Failure::runtime("simulator did not stop within 10 s")),
                        }
                    }
                };
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(Failure::runtime(format!("simulator: {e:#}"))),
                    Err(e) => return Err(Failure::runtime(format!("simulator task: {e}"))),
                }
                Ok(())
            })
        }
        Command::Config(ConfigCommand::Check { file, json }) => {
            let path = file.as_ref().unwrap_or(&cli.config);
            let config = Config::load(path)?;
            if *json {
                println!("{}", config.masked_json());
            } else {
                eprintln!("{}: ok", path.display());
                print_json(&config.masked_json());
            }
            Ok(())
        }
        Command::Run => {
            let config = Config::load(&cli.config)?;
            crate::logging::init(log_format(&cli, Some(&config)), &config.logging.level);
            crate::memory::limit_malloc_arenas();
            daemon_runtime()?.block_on(crate::daemon::run(config)).map_err(|e| Failure::runtime(format!("{e:#}")))
        }
        Command::Doctor { json } => {
            crate::logging::init(log_format(&cli, None), "warn");
            let checks = runtime()?.block_on(crate::doctor::run(&cli.config));
            if *json {
                print_json(&checks);
            } else {
                crate::doctor::print(&checks);
            }
            if checks.iter().all(|c| c.ok) {
                Ok(())
            } else {
                Err(Failure { code: 1, message: "some checks failed".into() })
            }
        }
        Command::Send { to, text, json } => {
            let config = Config::load(&cli.config)?;
            let number = config.parse_number(to).map_err(|e| Failure::input(format!("--to: {e}")))?;
            if text.is_empty() {
                return Err(Failure::input("--text: the message is empty"));
            }
            // The running daemon first (it wakes its senders at once); the database when it is down.
            let outcome = match &config.admin.socket {
                Some(path) => crate::local_socket::send(path, &number, text),
                None => crate::local_socket::ClientOutcome::NoDaemon("[admin] socket is off".into()),
            };
            let (id, via) = match outcome {
                crate::local_socket::ClientOutcome::Queued(id) => (id, "daemon"),
                crate::local_socket::ClientOutcome::NoDaemon(why) => {
                    tracing::debug!(reason = %why, "no daemon on the socket; writing the database");
                    let db = open_db(&config)?;
                    let id = db.insert_local("cli", &number, text)?;
                    db.record_audit("cli", "send", Some(&id.to_string()))?;
                    (id, "database")
                }
                crate::local_socket::ClientOutcome::Failed(why) => {
                    return Err(Failure {
                        code: 1,
                        message: format!(
                            "the daemon did not confirm the message ({why}); see `smshub outbox list` before sending again"
                        ),
                    });
                }
            };
            if *json {
                print_json(&serde_json::json!({"id": id, "to": number, "state": "fetched", "via": via}));
            } else if via == "daemon" {
                println!("queued outbox message {id} to {}; the daemon is sending it", number.masked());
            } else {
                println!(
                    "queued outbox message {id} to {} in the database; the daemon is not running and sends it when it starts",
                    number.masked()
                );
            }
            Ok(())
        }
        Command::Outbox(cmd) => {
            let config = Config::load(&cli.config)?;
            let db = open_db(&config)?;
            outbox(&db, cmd)?;
            if matches!(cmd, OutboxCommand::Retry { .. } | OutboxCommand::Cancel { .. })
                && let Some(path) = &config.admin.socket
            {
                // A running daemon acts at once (a retry is sent, a cancel reported to Provet).
                crate::local_socket::wake(path);
            }
            Ok(())
        }
        Command::Inbox(cmd) => {
            let config = Config::load(&cli.config)?;
            let db = open_db(&config)?;
            inbox(&db, cmd)
        }
        Command::Events(cmd) => {
            let config = Config::load(&cli.config)?;
            let db = open_db(&config)?;
            events(&db, cmd)?;
            if let EventsCommand::Replay { .. } = cmd {
                // A running daemon posts it at once; otherwise its next start (or minute's sweep) does.
                let woken = config.admin.socket.as_deref().is_some_and(crate::local_socket::wake);
                println!(
                    "{}",
                    if woken {
                        "the running daemon was told; it sends it now"
                    } else {
                        "no daemon answered on its socket; it is sent when the daemon looks (at start, or within a minute)"
                    }
                );
            }
            Ok(())
        }
        Command::Optout(cmd) => {
            let config = Config::load(&cli.config)?;
            let db = open_db(&config)?;
            optout(&config, &db, cmd)
        }
        Command::Store(StoreCommand::Purge { dry_run, out }) => {
            let config = Config::load(&cli.config)?;
            let db = open_db(&config)?;
            let counts = db.purge(config.store.keep_days, *dry_run, || {})?;
            if out.json {
                print_json(
                    &serde_json::json!({"dry_run": dry_run, "keep_days": config.store.keep_days, "counts": counts}),
                );
                return Ok(());
            }
            let verb = if *dry_run { "would be" } else { "were" };
            println!("older than {} days ({}):", config.store.keep_days, if *dry_run { "dry run" } else { "done" });
            println!("  {} outbox messages {verb} erased (text and number)", counts.outbox_erased);
            println!("  {} received messages {verb} erased (text and sender)", counts.inbox_erased);
            println!(
                "  {} forward attempts, {} event webhook calls, {} events, {} audit rows and {} reply stamps {verb} deleted",
                counts.attempts_deleted,
                counts.webhook_calls_deleted,
                counts.events_deleted,
                counts.audit_deleted,
                counts.reply_stamps_deleted
            );
            Ok(())
        }
        Command::User(cmd) => {
            // The password first: a bad one is refused before the config or database is read.
            let password = match cmd {
                UserCommand::Add { name, .. } => {
                    AccountName::parse(name).map_err(|e| Failure::input(format!("user name {name:?}: {e}")))?;
                    Some(read_password()?)
                }
                _ => None,
            };
            let config = Config::load(&cli.config)?;
            let mut db = open_db(&config)?;
            user(&mut db, cmd, password)
        }
        Command::Token(cmd) => {
            let config = Config::load(&cli.config)?;
            let db = open_db(&config)?;
            token(&db, cmd)
        }
    }
}

/// The first line of stdin, checked against the password rule.
fn read_password() -> Result<String, Failure> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        eprint!("password (it shows as you type; pipe it in to keep it off the screen): ");
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::input(format!("--password-stdin: cannot read a line of text from stdin: {e}")))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    password::check_new(password).map_err(|e| {
        Failure::input(format!("--password-stdin: {e}; give a password of at least {MIN_PASSWORD_CHARS} characters on the first line of stdin"))
    })?;
    Ok(password.to_string())
}

fn user(db: &mut Db, cmd: &UserCommand, password: Option<String>) -> Result<(), Failure> {
    match cmd {
        UserCommand::Add { name, .. } => {
            let name = AccountName::parse(name).map_err(|e| Failure::input(format!("user name {name:?}: {e}")))?;
            let password = password.ok_or_else(|| Failure::input("--password-stdin: no password"))?;
            let phc = password::hash(&password).map_err(|e| Failure::runtime(e.to_string()))?;
            if !db.add_user(name.as_str(), &phc)? {
                return Err(Failure::input(format!(
                    "user {name} already exists; to change its password, `smshub user remove {name}` and add it again"
                )));
            }
            println!("added user {name}; sign in at the admin listener's /login");
            Ok(())
        }
        UserCommand::Remove { name } => match db.remove_user(name)? {
            Some(sessions) => {
                println!("removed user {name} ({sessions} session(s) ended)");
                Ok(())
            }
            None => Err(Failure::input(format!("there is no user {name:?} (see `smshub user list`)"))),
        },
        UserCommand::List { out } => {
            let rows = db.list_users()?;
            if out.json {
                print_json(&rows);
                return Ok(());
            }
            let table: Vec<Vec<String>> =
                rows.iter().map(|u| vec![u.name.clone(), age(u.created_at), u.sessions.to_string()]).collect();
            print_table(&["NAME", "CREATED", "SESSIONS"], &table);
            Ok(())
        }
    }
}

fn token(db: &Db, cmd: &TokenCommand) -> Result<(), Failure> {
    match cmd {
        TokenCommand::Create { name } => {
            let name = AccountName::parse(name).map_err(|e| Failure::input(format!("token name {name:?}: {e}")))?;
            let token = secrets::new_token().map_err(|e| Failure::runtime(e.to_string()))?;
            if !db.add_token(name.as_str(), &secrets::digest(&token))? {
                return Err(Failure::input(format!(
                    "a valid token called {name} exists; revoke it first (`smshub token revoke {name}`) or pick another name"
                )));
            }
            println!(
                "created token {name}; it is shown only now (smshub keeps only its hash); programs send it as `Authorization: Bearer <token>`:"
            );
            println!("{token}");
            Ok(())
        }
        TokenCommand::List { out } => {
            let rows = db.list_tokens()?;
            if out.json {
                print_json(&rows);
                return Ok(());
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        age(t.created_at),
                        t.revoked_at.map(|r| format!("revoked {}", age(r))).unwrap_or_else(|| "valid".into()),
                    ]
                })
                .collect();
            print_table(&["NAME", "CREATED", "STATE"], &table);
            Ok(())
        }
        TokenCommand::Revoke { name } => {
            if db.revoke_token(name)? {
                println!("token {name} revoked");
                Ok(())
            } else {
                Err(Failure::input(format!("there is no valid token {name:?} (see `smshub token list`)")))
            }
        }
    }
}

fn outbox(db: &Db, cmd: &OutboxCommand) -> Result<(), Failure> {
    match cmd {
        OutboxCommand::List { state, limit, out } => {
            let state = match state {
                Some(s) => Some(s.parse::<OutboxState>().map_err(|e| Failure::input(format!("--state: {e}")))?),
                None => None,
            };
            let rows = db.list_outbox(&OutboxFilter { state, limit: Some(*limit), ..Default::default() })?;
            if out.json {
                print_json(&rows);
                return Ok(());
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        match (&r.instance, r.external_id) {
                            (Some(i), Some(e)) => format!("{}:{i}/{e}", r.source),
                            _ => r.source.clone(),
                        },
                        r.recipient.as_deref().map(crate::phone::mask_number).unwrap_or_else(|| "-".into()),
                        r.state.to_string(),
                        format!("{}/{}", r.parts_acked, r.parts),
                        age(r.updated_at),
                        r.fail_reason.clone().or_else(|| r.last_error.clone()).unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(&["ID", "SOURCE", "TO", "STATE", "PARTS", "UPDATED", "NOTE"], &table);
            Ok(())
        }
        OutboxCommand::Show { id, out } => {
            let detail = db.get_outbox(*id)?.ok_or(crate::store::StoreError::NotFound(*id))?;
            if out.json {
                print_json(&detail);
                return Ok(());
            }
            let s = &detail.summary;
            println!("outbox message {}", s.id);
            println!(
                "  source:     {}{}",
                s.source,
                s.instance
                    .as_ref()
                    .map(|i| format!(" (Provet {i}, id {})", s.external_id.unwrap_or(0)))
                    .unwrap_or_default()
            );
            println!("  to:         {}", shown(s.recipient.as_deref().unwrap_or("-")));
            println!(
                "  state:      {}{}",
                s.state,
                s.outcome.as_ref().map(|o| format!(" (outcome: {o})")).unwrap_or_default()
            );
            if let Some(r) = &s.fail_reason {
                println!("  reason:     {}", shown(r));
            }
            if let Some(e) = &s.last_error {
                println!("  last error: {} (attempt {})", shown(e), s.attempts);
            }
            println!("  text:       {}", shown(detail.body.as_deref().unwrap_or("(not fetched yet)")));
            let parts: Vec<Vec<String>> = detail
                .part_rows
                .iter()
                .map(|p| {
                    vec![
                        p.seq.to_string(),
                        p.state.as_str().to_string(),
                        p.modem.clone().unwrap_or_default(),
                        p.message_ref.map(|m| m.to_string()).unwrap_or_default(),
                        p.delivery_status.map(|d| d.to_string()).unwrap_or_default(),
                        p.last_error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            if !parts.is_empty() {
                println!();
                print_table(&["PART", "STATE", "MODEM", "MR", "REPORT", "ERROR"], &parts);
            }
            Ok(())
        }
        OutboxCommand::Retry { id } => {
            db.retry(*id)?;
            println!("outbox message {id} will be sent again");
            Ok(())
        }
        OutboxCommand::Cancel { id, reason } => {
            db.cancel(*id, reason)?;
            println!("outbox message {id} cancelled");
            Ok(())
        }
    }
}

fn inbox(db: &Db, cmd: &InboxCommand) -> Result<(), Failure> {
    match cmd {
        InboxCommand::List { limit, out } => {
            let rows = db.list_inbox(*limit)?;
            if out.json {
                print_json(&rows);
                return Ok(());
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.to_string(),
                        r.sender.as_deref().map(crate::phone::mask_number).unwrap_or_else(|| "?".into()),
                        r.parts.to_string(),
                        age(r.received_at),
                        r.deliveries_pending.to_string(),
                        [
                            r.incomplete.then_some("incomplete"),
                            r.decode_error.as_ref().map(|_| "undecodable"),
                            r.keyword.as_deref(),
                        ]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", "),
                    ]
                })
                .collect();
            print_table(&["ID", "FROM", "PARTS", "RECEIVED", "PENDING", "NOTE"], &table);
            Ok(())
        }
        InboxCommand::Show { id, out } => {
            let detail = db.get_inbox(*id)?.ok_or_else(|| Failure::input(format!("inbox message {id} not found")))?;
            if out.json {
                print_json(&detail);
                return Ok(());
            }
            let s = &detail.summary;
            println!("inbox message {} ({})", s.id, s.uid);
            println!("  from:     {}", shown(s.sender.as_deref().unwrap_or("?")));
            println!("  modem:    {}", s.modem);
            println!("  received: {}", age(s.received_at));
            if s.incomplete {
                println!("  note:     incomplete (some parts never arrived)");
            }
            if let Some(e) = &s.decode_error {
                println!("  decode error: {} (raw PDU kept below)", shown(e));
            }
            match detail.encoding.as_deref() {
                Some(crate::store::CONTENT_MMS) => println!(
                    "  content:  MMS notification (WAP push); the MMS itself is not fetched, receivers get [inbound] mms_placeholder"
                ),
                Some(crate::store::CONTENT_WAP_PUSH) => {
                    println!("  content:  WAP push (not text); receivers get [inbound] mms_placeholder")
                }
                Some(crate::store::CONTENT_BINARY) => println!(
                    "  content:  binary SMS for an application port (not text); receivers get [inbound] binary_placeholder"
                ),
                _ => println!("  text:     {}", shown(detail.body.as_deref().unwrap_or(""))),
            }
            if !detail.deliveries.is_empty() {
                println!();
                let rows = detail
                    .deliveries
                    .iter()
                    .map(|d| (&d.forwarder, &d.state, d.attempts, d.next_attempt_at, d.last_error.as_deref()));
                print_deliveries("FORWARDER", rows);
            }
            let replies: Vec<Vec<String>> = detail
                .replies
                .iter()
                .map(|r| {
                    vec![
                        r.outbox_id.to_string(),
                        r.recipient.as_deref().map(crate::phone::mask_number).unwrap_or_else(|| "-".into()),
                        r.state.clone(),
                        r.reason.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            if !replies.is_empty() {
                println!();
                print_table(&["REPLY", "TO", "STATE", "REASON"], &replies);
            }
            for p in &detail.part_rows {
                println!(
                    "  part {}: {}{}",
                    p.concat_seq.unwrap_or(1),
                    shown(&p.pdu),
                    p.decode_error.as_ref().map(|e| format!(" ({})", shown(e))).unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

fn optout(config: &Config, db: &Db, cmd: &OptoutCommand) -> Result<(), Failure> {
    match cmd {
        OptoutCommand::List { out } => {
            let rows = db.list_optouts()?;
            if out.json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(number, source, at)| serde_json::json!({"number": number, "source": source, "created_at": at}))
                    .collect();
                print_json(&list);
                return Ok(());
            }
            let table: Vec<Vec<String>> =
                rows.iter().map(|(number, source, at)| vec![number.clone(), source.clone(), age(*at)]).collect();
            print_table(&["NUMBER", "SOURCE", "SINCE"], &table);
            Ok(())
        }
        OptoutCommand::Add { number } => {
            let n = config.parse_number(number).map_err(|e| Failure::input(format!("number: {e}")))?;
            if db.add_optout(n.as_str(), "cli")? {
                println!("{} opted out", n.as_str());
            } else {
                println!("{} was already opted out", n.as_str());
            }
            Ok(())
        }
        OptoutCommand::Remove { number } => {
            // A STOP from a sender that is not a phone number is kept as received.
            let key = config.parse_number(number).map(|n| n.as_str().to_string()).unwrap_or_else(|_| number.clone());
            if db.remove_optout(&key, "cli")? {
                println!("{key} opted in again");
                Ok(())
            } else {
                Err(Failure::input(format!("{key} is not on the opt-out list")))
            }
        }
    }
}

/// "12s ago", "3m ago", "in 5m" from a unix-ms timestamp.
fn age(ms: i64) -> String {
    let delta = crate::store::now_ms().saturating_sub(ms) / 1000;
    let (n, future) = if delta < 0 { (-delta, true) } else { (delta, false) };
    let span = match n {
        0..=59 => format!("{n}s"),
        60..=3599 => format!("{}m", n / 60),
        3600..=86_399 => format!("{}h", n / 3600),
        _ => format!("{}d", n / 86_400),
    };
    if future { format!("in {span}") } else { format!("{span} ago") }
}

/// `text` from outside (an SMS body, a sender, an error) made safe for a terminal: control
/// characters are written as escapes (`\u{1b}`, `\n`), so an SMS cannot set the window title,
/// clear the screen or forge table rows.
fn shown(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// A deliveries table (a forward's or an event's): (to whom, state, attempts, next attempt, last error).
fn print_deliveries<'a, N: std::fmt::Display + 'a>(
    who: &str,
    rows: impl Iterator<Item = (N, &'a String, i64, Option<i64>, Option<&'a str>)>,
) {
    let table: Vec<Vec<String>> = rows
        .map(|(name, state, attempts, next, error)| {
            vec![
                name.to_string(),
                state.clone(),
                attempts.to_string(),
                next.map(age).unwrap_or_default(),
                error.unwrap_or_default().to_string(),
            ]
        })
        .collect();
    print_table(&[who, "STATE", "ATTEMPTS", "NEXT", "LAST ERROR"], &table);
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| shown(c)).collect()).collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The database with the config's event routes, so a change made here (an opt-out, a cancel)
/// writes its event like the daemon would.
fn open_db(config: &Config) -> Result<Db, Failure> {
    let mut db = Db::open(&config.store.path)?;
    db.route_events(config.event_routes());
    Ok(db)
}

fn find_event(db: &Db, key: &str) -> Result<i64, Failure> {
    db.find_event(key)?.ok_or_else(|| Failure::input(format!("event {key:?} not found (give its id or envelope id)")))
}

fn events(db: &Db, cmd: &EventsCommand) -> Result<(), Failure> {
    match cmd {
        EventsCommand::List { event_type, state, limit, out } => {
            if let Some(t) = event_type
                && crate::store::EventType::parse(t).is_none()
            {
                return Err(Failure::input(format!("--type {t:?} is not an event type (e.g. sms.sent, optout.added)")));
            }
            if let Some(s) = state
                && !crate::store::EVENT_DELIVERY_STATES.contains(&s.as_str())
            {
                return Err(Failure::input(format!(
                    "--state {s:?}: use one of {}",
                    crate::store::EVENT_DELIVERY_STATES.join(", ")
                )));
            }
            let filter = crate::store::EventFilter {
                event_type: event_type.clone(),
                state: state.clone(),
                limit: (*limit).clamp(1, 10_000),
            };
            let rows = db.list_events(&filter)?;
            if out.json {
                print_json(&rows);
                return Ok(());
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|e| {
                    let deliveries: Vec<String> =
                        e.deliveries.iter().map(|d| format!("{}: {} ({})", d.webhook, d.state, d.attempts)).collect();
                    vec![
                        e.id.to_string(),
                        e.event_type.clone(),
                        age(e.created_at),
                        deliveries.join(", "),
                        e.uid.clone(),
                    ]
                })
                .collect();
            print_table(&["ID", "TYPE", "CREATED", "DELIVERIES (ATTEMPTS)", "ENVELOPE ID"], &table);
            Ok(())
        }
        EventsCommand::Show { id, out } => {
            let id = find_event(db, id)?;
            let detail = db.event_detail(id)?.ok_or_else(|| Failure::input(format!("event {id} not found")))?;
            if out.json {
                print_json(&detail);
                return Ok(());
            }
            let s = &detail.summary;
            println!("event {} {} ({})", s.id, s.event_type, s.uid);
            println!("  created: {}", age(s.created_at));
            println!("  data:    {}", shown(&detail.data.to_string()));
            println!();
            let rows = s
                .deliveries
                .iter()
                .map(|d| (&d.webhook, &d.state, d.attempts, d.next_attempt_at, d.last_error.as_deref()));
            print_deliveries("WEBHOOK", rows);
            for c in &detail.calls {
                println!();
                let status = c.status.map_or_else(|| "no answer".to_string(), |s| format!("HTTP {s}"));
                println!("attempt {} to {} — {}, {} ms, {}", c.id, c.webhook, status, c.duration_ms, age(c.at));
                println!("  POST {}", shown(&c.url));
                for h in c.request_headers.lines() {
                    println!("  > {}", shown(h));
                }
                println!("  > {}", shown(&c.request_body));
                if let Some(e) = &c.error {
                    println!("  error: {}", shown(e));
                }
                for h in c.response_headers.as_deref().unwrap_or("").lines() {
                    println!("  < {}", shown(h));
                }
                if let Some(b) = &c.response_body
                    && !b.is_empty()
                {
                    println!("  < {}", shown(b));
                }
            }
            Ok(())
        }
        EventsCommand::Replay { id, webhook } => {
            let id = find_event(db, id)?;
            let queued = db.replay_event(id, webhook.as_deref())?;
            if queued == 0 {
                return Err(Failure::input(match webhook {
                    Some(w) => format!("event {id} was never meant for webhook {w:?}"),
                    None => format!("event {id} has no webhook to send to"),
                }));
            }
            println!("event {id}: {queued} delivery(ies) queued again");
            Ok(())
        }
    }
}
