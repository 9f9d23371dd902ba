//! A private OpenDKIM: the DKIM signer chained after CHmail in Postfix, with a fresh key from
//! `opendkim-genkey` and the lines of contrib/postfix/opendkim.conf.snippet; and OpenDKIM's own
//! test mode (`opendkim -t`) as the verifier of what it signed, looking the key up in the test DNS
//! server.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use tempfile::TempDir;

use crate::{free_port, run_ok, stop_child, tail, tempdir, tool, wait_listening, KeyRecord};

/// The DKIM selector of the test key.
pub const DKIM_SELECTOR: &str = "dk1";

/// How long OpenDKIM may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long OpenDKIM may take to exit on SIGTERM before it is killed: libmilter notices the
/// signal only when its accept loop wakes, after up to 5 s, and a test instance has nothing to
/// save.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// contrib/postfix/opendkim.conf.snippet, the lines an admin adds to opendkim.conf.
const CONTRIB_SNIPPET: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../contrib/postfix/opendkim.conf.snippet"
);

/// A running `opendkim -f` signing for one domain; dropping it stops it. Callers `require!`
/// opendkim and opendkim-genkey.
pub struct OpenDkim {
    dir: TempDir,
    port: u16,
    record: KeyRecord,
    child: Option<Child>,
}

impl OpenDkim {
    /// Makes a key for `domain` with `opendkim-genkey` and starts OpenDKIM in the foreground on
    /// 127.0.0.1, signing mail from `domain` (and verifying the rest, `Mode sv`) with the settings
    /// of contrib/postfix/opendkim.conf.snippet. `RequireSafeKeys no`: the key lives in a tempdir
    /// under /tmp, which everyone may write to.
    ///
    /// # Panics
    ///
    /// When the key cannot be made or OpenDKIM does not listen (its output is in the message).
    pub fn start(domain: &str) -> Self {
        let dir = tempdir("chmail-opendkim.");
        let record = genkey(dir.path(), domain);
        let port = free_port();
        let snippet = fs::read_to_string(CONTRIB_SNIPPET).expect("read opendkim.conf.snippet");
        let root = dir.path().display();
        let conf = format!(
            "\
Syslog no
RequireSafeKeys no
Socket inet:{port}@127.0.0.1
PidFile {root}/opendkim.pid
TemporaryDirectory {root}
Mode sv
Domain {domain}
Selector {DKIM_SELECTOR}
KeyFile {root}/{DKIM_SELECTOR}.private
{snippet}"
        );
        fs::write(dir.path().join("opendkim.conf"), conf).expect("write opendkim.conf");
        let mut opendkim = Self {
            dir,
            port,
            record,
            child: None,
        };
        opendkim.run();
        opendkim
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&mut self) {
        let log = fs::File::create(self.path("opendkim.log")).expect("create opendkim.log");
        let child = Command::new(tool("opendkim"))
            .arg("-f")
            .arg("-x")
            .arg(self.path("opendkim.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn opendkim");
        let log = self.path("opendkim.log");
        let child = self.child.insert(child);
        wait_listening("opendkim", child, self.port, START_TIMEOUT, &log, 40);
    }

    /// The milter port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The DKIM key record to publish: `dk1._domainkey.<domain>` and its TXT value.
    pub fn record(&self) -> &KeyRecord {
        &self.record
    }

    /// Verifies `mail` with OpenDKIM's test mode (`opendkim -t`), looking keys up through the
    /// DNS server on 127.0.0.1:`dns_port` (OpenDKIM's resolver is libunbound, forwarded there),
    /// and returns the `dkim=` result of the Authentication-Results field it would add: `pass`,
    /// `fail`, `neutral`, `none`, `permerror`, ...
    ///
    /// # Panics
    ///
    /// When opendkim cannot be run or prints no result.
    pub fn verify(&self, mail: &str, dns_port: u16) -> String {
        let verifier = tempfile::Builder::new()
            .prefix("verify.")
            .tempdir_in(self.dir.path())
            .expect("tempdir");
        let unbound = verifier.path().join("unbound.conf");
        // Unbound refuses to ask 127.0.0.1 unless told, and answers for the special-use `test.`
        // itself (NXDOMAIN) unless that default is lifted.
        fs::write(
            &unbound,
            format!(
                "server:\n  do-not-query-localhost: no\n  local-zone: \"test.\" nodefault\n\
                 forward-zone:\n  name: \".\"\n  forward-addr: 127.0.0.1@{dns_port}\n"
            ),
        )
        .expect("write unbound.conf");
        let conf = verifier.path().join("verify.conf");
        fs::write(
            &conf,
            format!(
                "Syslog no\nMode v\nTemporaryDirectory {}\nResolverConfiguration {}\n",
                verifier.path().display(),
                unbound.display()
            ),
        )
        .expect("write verify.conf");
        let message = verifier.path().join("message.eml");
        fs::write(&message, mail).expect("write the message");
        let output = Command::new(tool("opendkim"))
            .arg("-x")
            .arg(&conf)
            .arg("-vv")
            .arg("-t")
            .arg(&message)
            .stdin(Stdio::null())
            .output()
            .expect("run opendkim -t");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        dkim_result(&printed).unwrap_or_else(|| {
            panic!(
                "opendkim -t printed no dkim= result ({}):\n{printed}",
                output.status
            )
        })
    }
}

impl Drop for OpenDkim {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            stop_child(child, STOP_GRACE);
            if std::thread::panicking() {
                eprintln!(
                    "--- opendkim output (last 40 lines) ---\n{}",
                    tail(&self.path("opendkim.log"), 40)
                );
            }
        }
    }
}

/// Runs `opendkim-genkey` in `dir` for `domain` and returns the record it wrote to `dk1.txt`.
fn genkey(dir: &Path, domain: &str) -> KeyRecord {
    run_ok(
        Command::new(tool("opendkim-genkey"))
            .arg("-D")
            .arg(dir)
            .args(["-d", domain, "-s", DKIM_SELECTOR]),
    );
    let text = fs::read_to_string(dir.join(format!("{DKIM_SELECTOR}.txt")))
        .expect("read the record opendkim-genkey wrote");
    // `dk1._domainkey IN TXT ( "v=DKIM1; ..." "p=..." ) ; comment`: the name is relative.
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let record = KeyRecord::parse(&line)
        .unwrap_or_else(|| panic!("opendkim-genkey wrote no TXT record: {text:?}"));
    KeyRecord {
        name: format!("{}.{domain}", record.name),
        value: record.value,
    }
}

/// The `dkim=` result in the Authentication-Results field `opendkim -t` prints
/// (`### INSHEADER: ... hname='Authentication-Results' hvalue='...'`, folded over lines).
fn dkim_result(printed: &str) -> Option<String> {
    let field = printed.split("hname='Authentication-Results'").nth(1)?;
    let value = field.split("hvalue='").nth(1)?.split('\'').next()?;
    let start = value.find("dkim=")? + "dkim=".len();
    let result: String = value[start..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    (!result.is_empty()).then_some(result)
}

#[cfg(test)]
mod tests {
    use super::dkim_result;

    #[test]
    fn dkim_result_is_read_from_the_authentication_results_line() {
        let printed = "### INSHEADER: idx=0 hname='Authentication-Results' hvalue='DEBUG-j;\n\
            \tdkim=fail reason=\"key not found in DNS\" header.d=example.test;\n\
            \tdkim-atps=neutral'\nopendkim: x: mlfi_eom() returned SMFIS_ACCEPT\n";
        assert_eq!(dkim_result(printed).as_deref(), Some("fail"));
        assert_eq!(dkim_result("opendkim: dkim=pass outside the field"), None);
    }
}
