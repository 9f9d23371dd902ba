//! The real `chmail-milter` binary as a child process: config in a tempdir, `keygen`, `serve`.

use std::{
    fmt::Write as _,
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use chmail::header::{parse_key_record, PublicKey};
use tempfile::TempDir;

use crate::{free_port, run_ok, stop_child, tail, tempdir, wait_listening, TestDns};

/// The signing domain of every test milter.
pub const SIGNING_DOMAIN: &str = "example.test";
/// The selector of every test milter.
pub const SELECTOR: &str = "sel1";
/// The chat server's public URL in every test config: its host goes into `h=` and the link.
pub const PUBLIC_URL: &str = "https://chat.example.test";

/// The milter's `RUST_LOG` unless [`MilterOptions::log`] says otherwise.
const DEFAULT_LOG: &str = "info,chmail=debug,chmail_milter=debug";

/// How long the milter may take to listen (it runs migrations first).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What differs between the tests' milters; the rest of the config is fixed.
#[derive(Debug, Clone, Default)]
pub struct MilterOptions {
    /// `[store] url`; `None`: an SQLite file in the milter's tempdir.
    pub store_url: Option<String>,
    /// `[milter] resolver` (`IP:PORT` of the test DNS server); `None`: the system's.
    pub resolver: Option<String>,
    /// `[signing] own_domains`.
    pub own_domains: Vec<String>,
    /// `[milter] footer`: add the chat link to the body too.
    pub footer: bool,
    /// `[milter] trusted_networks`: mail from these networks with a From in our domains is
    /// signed without a SASL login (the benchmark's `smtp-source` cannot log in).
    pub trusted_networks: Vec<String>,
    /// The milter's `RUST_LOG`; `None`: `info`, and `debug` for CHmail's own crates.
    pub log: Option<String>,
}

/// A configured milter; [`Milter::start`] runs it, and dropping it stops it.
pub struct Milter {
    dir: TempDir,
    port: u16,
    log: String,
    child: Option<Child>,
}

/// The key record `keygen` printed: `<name>. IN TXT "<value>"`.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// The owner name without the final dot: `sel1._chmail.example.test`.
    pub name: String,
    /// The TXT value: `v=CHmail1; k=ed25519; p=...`.
    pub value: String,
}

impl Milter {
    /// The `chmail-milter` binary beside the test executable (`target/debug/chmail-milter`).
    ///
    /// # Panics
    ///
    /// When it has not been built.
    pub fn binary() -> PathBuf {
        built_binary("chmail-milter")
    }

    /// Writes the config for these options into a new tempdir; nothing runs yet.
    ///
    /// # Panics
    ///
    /// When the tempdir cannot be written.
    pub fn new(options: &MilterOptions) -> Self {
        let dir = tempdir("chmail-milter.");
        let port = free_port();
        let data = dir.path();
        let store_url = options
            .store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data.join("chmail.db").display()));
        let mut toml = String::new();
        // `{:?}` quotes and escapes the strings as TOML basic strings accept them.
        let _ = writeln!(toml, "data_dir = {:?}", data.display().to_string());
        let _ = writeln!(toml, "[store]\nurl = {store_url:?}");
        let _ = writeln!(
            toml,
            "[milter]\nlisten = \"inet:127.0.0.1:{port}\"\non_error = \"accept\"\nmetrics_listen = \"\"\ndns_timeout_ms = 2000"
        );
        if let Some(resolver) = &options.resolver {
            let _ = writeln!(toml, "resolver = {resolver:?}");
        }
        if options.footer {
            let _ = writeln!(toml, "footer = true");
        }
        if !options.trusted_networks.is_empty() {
            let _ = writeln!(toml, "trusted_networks = {:?}", options.trusted_networks);
        }
        let _ = writeln!(
            toml,
            "[signing]\ndomain = {SIGNING_DOMAIN:?}\nselector = {SELECTOR:?}\nkey_file = {:?}\nown_domains = {:?}",
            data.join("chmail.key").display().to_string(),
            options.own_domains
        );
        let _ = writeln!(toml, "[chat]\npublic_url = {PUBLIC_URL:?}");
        fs::write(data.join("chmail.toml"), toml).expect("write the milter config");
        Self {
            dir,
            port,
            log: options
                .log
                .clone()
                .unwrap_or_else(|| DEFAULT_LOG.to_owned()),
            child: None,
        }
    }

    /// A milter for `options` that resolves through `dns`, with a fresh key whose record `dns`
    /// publishes, listening; and that record.
    ///
    /// # Panics
    ///
    /// As [`Milter::keygen`] and [`Milter::start`].
    pub fn start_with_dns(dns: &TestDns, options: MilterOptions) -> (Self, KeyRecord) {
        let mut milter = Self::new(&MilterOptions {
            resolver: Some(dns.addr()),
            ..options
        });
        let record = milter.keygen();
        dns.insert(&record.name, &record.value);
        milter.start();
        (milter, record)
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("chmail.toml")
    }

    /// The tempdir holding config, key, SQLite store and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The SQLite store file (when no `store_url` was given).
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("chmail.db")
    }

    /// The TCP port the milter listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket in miltertest's notation: `inet:PORT@127.0.0.1`.
    pub fn miltertest_socket(&self) -> String {
        format!("inet:{}@127.0.0.1", self.port)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(Self::binary());
        command
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", &self.log)
            .env("NO_COLOR", "1")
            .current_dir(self.dir.path());
        command
    }

    /// Runs `chmail-milter --config F keygen` and returns the key record it printed.
    ///
    /// # Panics
    ///
    /// When the command fails or prints no record.
    pub fn keygen(&self) -> KeyRecord {
        let output = run_ok(self.command().arg("keygen"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        KeyRecord::parse(&stdout)
            .unwrap_or_else(|| panic!("keygen printed no `NAME IN TXT \"...\"` line: {stdout:?}"))
    }

    /// Runs `serve` and waits until the milter port accepts connections.
    ///
    /// # Panics
    ///
    /// When the milter exits or does not listen within 30 s (its log is in the message).
    pub fn start(&mut self) {
        let log = fs::File::create(self.log_path()).expect("create the milter log");
        let child = self
            .command()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn chmail-milter serve");
        let log = self.log_path();
        let child = self.child.insert(child);
        wait_listening(
            "chmail-milter serve",
            child,
            self.port,
            START_TIMEOUT,
            &log,
            60,
        );
    }

    /// The milter's stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("milter.log")
    }

    /// Runs `chmail-milter --config F verify [--key RECORD]` on `mail`, given on standard input,
    /// and returns whether it exited 0 and what it printed. Without `key` it fetches the keys with
    /// the milter's resolver (the test DNS server of [`Milter::start_with_dns`]).
    ///
    /// # Panics
    ///
    /// When the command cannot run or is killed by a signal.
    pub fn verify(&self, mail: &str, key: Option<&str>) -> (bool, String) {
        let mut command = self.command();
        command.arg("verify");
        if let Some(record) = key {
            command.arg("--key").arg(record);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run chmail-milter verify");
        child
            .stdin
            .take()
            .expect("the piped stdin")
            .write_all(mail.as_bytes())
            .expect("write the mail to chmail-milter verify");
        let output = child
            .wait_with_output()
            .expect("wait for chmail-milter verify");
        let code = output.status.code();
        assert!(
            code.is_some(),
            "chmail-milter verify was killed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    /// The milter's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The client address and host name the SQLite store recorded for `login`'s last login.
    ///
    /// # Panics
    ///
    /// When the store cannot be read or has no row for `login`.
    pub fn sqlite_login(&self, login: &str) -> (Option<String>, Option<String>) {
        let db = rusqlite::Connection::open(self.sqlite_path()).expect("open the SQLite store");
        db.query_row(
            "SELECT ip, hostname FROM logins WHERE login = ?1",
            [login],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap_or_else(|err| panic!("no logins row for {login}: {err}"))
    }
}

/// The workspace binary `name` of the running executable's profile: beside a binary
/// (`target/release/bench` -> `target/release/<name>`), or one folder up from a test
/// (`target/debug/deps/<test>` -> `target/debug/<name>`).
///
/// # Panics
///
/// When it has not been built.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the executable's path");
    let beside = exe.parent().map(|dir| dir.join(name));
    let above = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(name));
    beside
        .into_iter()
        .chain(above)
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing beside {}: build it with cargo build --workspace --bins \
                 (tests/run does; add --release for the bench)",
                exe.display()
            )
        })
}

impl Drop for Milter {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            stop_child(child, Duration::from_secs(5));
            if std::thread::panicking() {
                eprintln!(
                    "--- chmail-milter log (last 80 lines) ---\n{}",
                    tail(&self.log_path(), 80)
                );
            }
        }
    }
}

impl KeyRecord {
    /// The public key in the record's value.
    ///
    /// # Panics
    ///
    /// When the value is not a usable CHmail key record.
    pub fn public_key(&self) -> PublicKey {
        parse_key_record(&self.value)
            .unwrap_or_else(|err| panic!("keygen printed an unusable record {self:?}: {err}"))
    }

    /// Finds the first `NAME. IN TXT "VALUE"` line in `text`; the value may be split into several
    /// quoted strings, as zone files allow.
    pub fn parse(text: &str) -> Option<Self> {
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            if !words.any(|word| word == "TXT") {
                return None;
            }
            let quoted = line.get(line.find('"')?..)?;
            let value: String = quoted
                .split('"')
                .skip(1)
                .step_by(2)
                .collect::<Vec<_>>()
                .concat();
            (!value.is_empty()).then(|| Self {
                name: name.trim_end_matches('.').to_owned(),
                value,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::KeyRecord;

    #[test]
    fn key_record_line_is_split_into_name_and_joined_value() {
        let record = KeyRecord::parse(
            "note\nsel1._chmail.example.test. IN TXT \"v=CHmail1; k=ed25519; \" \"p=AAAA\"\n",
        )
        .expect("a record");
        assert_eq!(record.name, "sel1._chmail.example.test");
        assert_eq!(record.value, "v=CHmail1; k=ed25519; p=AAAA");
    }
}
