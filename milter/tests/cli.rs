//! The `chmail-milter` binary: `keygen`, `migrate`, `serve` with a clean stop on SIGTERM, `verify`,
//! `--help`.

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_chmail-milter");

fn write_config(dir: &Path, listen: &str) -> std::path::PathBuf {
    let path = dir.join("chmail.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {data:?}\n\
             [milter]\nlisten = {listen:?}\nmetrics_listen = \"127.0.0.1:0\"\n\
             [signing]\ndomain = \"example.com\"\nselector = \"sel1\"\n",
            data = dir.join("data").display().to_string(),
        ),
    )
    .expect("write config");
    path
}

#[test]
fn keygen_writes_a_private_key_file_and_prints_the_dns_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "inet:127.0.0.1:0");
    let out = Command::new(BIN)
        .args(["--config"])
        .arg(&config)
        .arg("keygen")
        .output()
        .expect("run keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("sel1._chmail.example.com. IN TXT \"v=CHmail1; k=ed25519; p="),
        "{stdout}"
    );
    let key = dir.path().join("data/chmail.key");
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The printed key is the one in the file.
    let signer = chmail::header::Signer::from_key_file(&key, "example.com", "sel1").expect("load");
    assert!(stdout.contains(&signer.dns_record()), "{stdout}");

    // A second keygen refuses to overwrite it.
    let again = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("keygen")
        .output()
        .expect("run keygen");
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("chmail.key"), "{stderr}");
    let after = chmail::header::Signer::from_key_file(&key, "example.com", "sel1").expect("load");
    assert_eq!(after.public_key(), signer.public_key());
}

#[test]
fn keygen_for_a_domain_of_the_table_writes_its_key_file_and_prints_its_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "inet:127.0.0.1:0");
    let org_key = dir.path().join("org.key");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        format!(
            "{text}\n\
             [[signing.keys]]\ndomain = \"example.org\"\nselector = \"org1\"\n\
             key_file = {org:?}\nfrom = [\"example.org\", \"*.example.org\"]\n\
             [[signing.keys]]\ndomain = \"example.net\"\nselector = \"net1\"\n",
            org = org_key.display().to_string(),
        ),
    )
    .expect("write");
    let keygen = |args: &[&str]| {
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("keygen")
            .args(args)
            .output()
            .expect("run keygen")
    };

    // The entry's own key file and selector.
    let out = keygen(&["--domain", "example.org"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let signer =
        chmail::header::Signer::from_key_file(&org_key, "example.org", "org1").expect("org key");
    assert_eq!(
        stdout.trim_end(),
        format!(
            "org1._chmail.example.org. IN TXT \"{}\"",
            signer.dns_record()
        )
    );

    // An entry without key_file: the default `<data_dir>/<domain>.<selector>.key`.
    let out = keygen(&["--domain", "Example.NET"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let net_key = dir.path().join("data/example.net.net1.key");
    let signer =
        chmail::header::Signer::from_key_file(&net_key, "example.net", "net1").expect("net key");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&format!(
            "net1._chmail.example.net. IN TXT \"{}",
            signer.dns_record()
        )),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The next key of a rotation: a new selector, not in the table yet, to its own file.
    let out = keygen(&["--domain", "example.org", "--selector", "org2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("org2._chmail.example.org. IN TXT"));
    assert!(dir.path().join("data/example.org.org2.key").exists());
    assert_eq!(
        std::fs::metadata(&org_key)
            .expect("org key")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // `records` prints the record of every key of the table, from the files.
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("records")
        .output()
        .expect("run records");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let org = chmail::header::Signer::from_key_file(&org_key, "example.org", "org1").expect("org");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "org1._chmail.example.org. IN TXT \"{}\"\nnet1._chmail.example.net. IN TXT \"{}\"\n",
            org.dns_record(),
            signer.dns_record()
        )
    );

    // An existing file is never overwritten; --key-file names another one.
    let again = keygen(&["--domain", "example.org"]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("org.key"), "{stderr}");
    let chosen = dir.path().join("chosen.key");
    let out = keygen(&[
        "--domain",
        "example.org",
        "--key-file",
        chosen.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(chosen.exists());
}

#[test]
fn keygen_asks_for_a_selector_when_a_domain_has_several_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chmail.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {data:?}\n\
             [[signing.keys]]\ndomain = \"example.org\"\nselector = \"a\"\nfrom = [\"example.org\"]\n\
             [[signing.keys]]\ndomain = \"example.org\"\nselector = \"b\"\nfrom = [\"*.example.org\"]\n",
            data = dir.path().display().to_string(),
        ),
    )
    .expect("write");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .args(["keygen", "--domain", "example.org"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("several keys (a, b)") && stderr.contains("--selector"),
        "{stderr}"
    );
}

#[test]
fn signing_table_mistakes_are_named_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "[[signing.keys]]\ndomain = \"a.example\"\nselector = \"s1\"\nfrom = [\"a.example\"]\n\
             [[signing.keys]]\ndomain = \"a.example\"\nselector = \"s2\"\nfrom = [\"A.example\"]\n",
            "from pattern \"a.example\" is listed twice",
        ),
        (
            "[[signing.keys]]\ndomain = \"a.example\"\nselector = \"s1\"\nfrom = [\"customer.example\"]\n",
            "from pattern \"customer.example\" is not a.example or within it",
        ),
        (
            "[[signing.keys]]\ndomain = \"a.example\"\nselector = \"s1\"\nfrom = [\"x*.a.example\"]\n",
            "must be a domain or *.domain",
        ),
        (
            "[[signing.keys]]\ndomain = \"a.example\"\nselector = \"s1\"\n\
             [[signing.keys]]\ndomain = \"a.example\"\nselector = \"S1\"\nsign = false\n",
            "a.example selector s1 is listed twice",
        ),
        (
            "[[signing.keys]]\ndomain = \"a.example\"\nselector = \"s1\"\nsign = false\nfrom = [\"a.example\"]\n",
            "sign = false: it signs nothing, so it takes no from",
        ),
        (
            "[[signing.keys]]\ndomain = \"a.example\"\n",
            "selector",
        ),
    ];
    for (n, (table, expected)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad{n}.toml"));
        std::fs::write(&path, table).expect("write");
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .arg("migrate")
            .output()
            .expect("run");
        assert!(!out.status.success(), "case {n} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expected),
            "case {n}: {expected:?} missing in {stderr}"
        );
    }
}

#[test]
fn serve_without_a_key_says_how_to_make_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "inet:127.0.0.1:0");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chmail-milter keygen"), "{stderr}");
}

#[test]
fn a_bad_config_key_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[milter]\nlisen = \"inet:127.0.0.1:1\"\n").expect("write");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .arg("migrate")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("milter.sock");
    let config = write_config(dir.path(), &format!("unix:{}", sock.display()));
    let status = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("keygen")
        .stdout(Stdio::null())
        .status()
        .expect("keygen");
    assert!(status.success());
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "the milter socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit status {status:?}");
    let log: Vec<String> = BufReader::new(child.stderr.take().expect("stderr"))
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(log.iter().any(|l| l.contains("shutting down")), "{log:?}");
}

#[test]
fn serve_exposes_prometheus_metrics() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("milter.sock");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = write_config(dir.path(), &format!("unix:{}", sock.display()));
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text.replace(
            "metrics_listen = \"127.0.0.1:0\"",
            &format!("metrics_listen = \"127.0.0.1:{metrics_port}\""),
        ),
    )
    .expect("write");
    let status = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("keygen")
        .stdout(Stdio::null())
        .status()
        .expect("keygen");
    assert!(status.success());
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", metrics_port)) {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .expect("request");
            let mut body = String::new();
            stream.read_to_string(&mut body).expect("response");
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics endpoint never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("chmail_milter_eom_duration_seconds"),
        "{body}"
    );
}

#[test]
fn help_lists_the_commands() {
    let out = Command::new(BIN).arg("--help").output().expect("help");
    let text = String::from_utf8_lossy(&out.stdout);
    for command in [
        "serve",
        "keygen",
        "records",
        "migrate",
        "quickstart",
        "--config",
    ] {
        assert!(text.contains(command), "{text}");
    }
}

/// A mail from alice@example.com with a CHmail header signed by the `sel1` key of seed 7.
fn signed_mail() -> (String, chmail::header::Signer) {
    let signer = chmail::header::Signer::from_seed("example.com", "sel1", [7; 32]);
    let room = chmail::header::RoomId::generate();
    let header = signer
        .sign(
            "alice@example.com",
            "chat.example.com",
            20000,
            &room,
            1_700_000_000,
            "alice@example.com",
        )
        .expect("sign");
    let mail = format!(
        "From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nCHmail: {}\r\n\
         Subject: hi\r\n\r\nHello\r\n",
        header.to_value().replace('\n', "\r\n")
    );
    (mail, signer)
}

/// Runs `verify` with `args`, `mail` on standard input; returns the exit code and stdout.
fn verify(args: &[&str], config: Option<&Path>, mail: &str) -> (Option<i32>, String) {
    use std::io::Write as _;
    let mut command = Command::new(BIN);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .arg("verify")
        .args(args)
        .env_remove("CHMAIL_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run verify");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(mail.as_bytes())
        .expect("write the mail");
    let out = child.wait_with_output().expect("verify ends");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn verify_prints_each_headers_result_and_exits_0_only_when_one_passes() {
    let (mail, signer) = signed_mail();
    let record = signer.dns_record();
    assert_eq!(
        verify(&["--key", &record], None, &mail),
        (
            Some(0),
            "CHmail #1: pass d=example.com s=sel1: signature verified\n".to_owned()
        )
    );

    // A file, a tampered header beside the good one, and a v=2 header.
    let dir = tempfile::tempdir().expect("tempdir");
    let tampered = mail.replace("p=20000", "p=20001");
    let both = tampered.replacen(
        "CHmail: ",
        &format!(
            "CHmail: v=2; d=example.com; future=1\r\nCHmail: {}\r\nCHmail: ",
            mail.split("CHmail: ")
                .nth(1)
                .and_then(|rest| rest.split("\r\nSubject").next())
                .expect("the header")
        ),
        1,
    );
    let path = dir.path().join("mail.eml");
    std::fs::write(&path, &both).expect("write mail");
    let out = Command::new(BIN)
        .arg("verify")
        .arg(&path)
        .args(["--key", &record])
        .env_remove("CHMAIL_CONFIG")
        .output()
        .expect("run verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("CHmail #1: neutral d=- s=-: "),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("CHmail #2: pass d=example.com s=sel1"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("CHmail #3: fail d=example.com s=sel1: "),
        "{stdout}"
    );

    let (code, stdout) = verify(&["--key", &record], None, &tampered);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.starts_with("CHmail #1: fail "), "{stdout}");

    let (code, stdout) = verify(&["--key", &record], None, "From: a@b.example\r\n\r\nHi\r\n");
    assert_eq!((code, stdout.as_str()), (Some(1), "no CHmail header\n"));
}

#[test]
fn verify_looks_the_key_up_in_dns_and_reports_a_failing_server_as_temperror() {
    let (mail, signer) = signed_mail();
    let dns = chmail_tests::TestDns::start([(signer.dns_name(), signer.dns_record())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("chmail.toml");
    std::fs::write(
        &config,
        format!(
            "[milter]\nresolver = {:?}\ndns_timeout_ms = 1000\n",
            dns.addr()
        ),
    )
    .expect("write config");
    let (code, stdout) = verify(&[], Some(&config), &mail);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("CHmail #1: pass "), "{stdout}");

    dns.fail(signer.dns_name(), chmail_tests::DnsFailure::ServFail);
    let other = mail.replace("s=sel1", "s=sel2");
    dns.insert("sel2._chmail.example.com", signer.dns_record());
    dns.fail(
        "sel2._chmail.example.com",
        chmail_tests::DnsFailure::ServFail,
    );
    let (code, stdout) = verify(&[], Some(&config), &other);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.starts_with("CHmail #1: temperror d=example.com s=sel2: "),
        "{stdout}"
    );
}
