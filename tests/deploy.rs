//! The deployment files in `contrib/`: the systemd units pass `systemd-analyze verify` and keep
//! an "OK" exposure rating, the sysusers file creates the user they run as, and the nginx front
//! of `contrib/proxy/` passes `nginx -t` with a throw-away certificate. Nothing is installed on
//! the system and no server is left running: every check works on copies in a tempdir.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use chmail_tests::{free_port, require, tool, Milter};
use tempfile::TempDir;

/// The systemd units, each with the binary its `ExecStart=` runs.
const UNITS: &[(&str, &str)] = &[
    ("chmail-milter.service", "chmail-milter"),
    ("chatd.service", "chatd"),
];

/// The highest exposure `systemd-analyze security` may give a unit, in its tenths: 2.0, the top
/// of its "OK" band.
const MAX_EXPOSURE: &str = "20";

/// Where the shipped units expect the binaries (`ExecStart=`).
const INSTALLED_BIN_DIR: &str = "/usr/local/bin";

/// The placeholder certificate paths in `contrib/proxy/nginx.conf`.
const CERT_PLACEHOLDER: &str = "/etc/letsencrypt/live/chat.example.com/fullchain.pem";
const KEY_PLACEHOLDER: &str = "/etc/letsencrypt/live/chat.example.com/privkey.pem";

/// `contrib/<rel>` of the workspace.
fn contrib(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("contrib")
        .join(rel)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("a tempdir")
}

/// Runs `command`, panicking when it cannot be started at all.
fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Both streams of `output`, for messages.
fn both(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A built binary of the workspace, beside `chmail-milter` (`cargo build --workspace --bins`).
fn built_binary(name: &str) -> PathBuf {
    let milter = Milter::binary();
    let binary = milter.with_file_name(name);
    assert!(
        binary.is_file(),
        "{} is missing: build it with cargo build --workspace --bins (tests/run does)",
        binary.display()
    );
    binary
}

/// Copies of the units in a tempdir, their `ExecStart=` pointing at the built binaries
/// (`systemd-analyze` refuses a unit whose program does not exist).
fn units_with_built_binaries() -> (TempDir, Vec<PathBuf>) {
    let dir = tempdir("chmail-units-");
    let copies = UNITS
        .iter()
        .map(|&(unit, binary)| {
            let text = read(&contrib(&format!("systemd/{unit}")));
            let installed = format!("ExecStart={INSTALLED_BIN_DIR}/{binary} ");
            let exec_lines = text.lines().filter(|l| l.starts_with("ExecStart=")).count();
            assert!(
                exec_lines == 1 && text.contains(&installed),
                "{unit}: expected exactly one ExecStart= line, running {INSTALLED_BIN_DIR}/{binary}"
            );
            let built = format!("ExecStart={} ", built_binary(binary).display());
            let copy = dir.path().join(unit);
            write(&copy, &text.replace(&installed, &built));
            copy
        })
        .collect();
    (dir, copies)
}

/// The value of every `Key=` line of a unit's text.
fn settings<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    require!("systemd-analyze");
    let (dir, units) = units_with_built_binaries();
    let output = run(Command::new(tool("systemd-analyze"))
        .arg("verify")
        .args(&units)
        // No manager runs here (a container): verify still loads and checks the files.
        .env("SYSTEMD_LOG_LEVEL", "notice")
        .env("SYSTEMD_LOG_COLOR", "0"));
    let text = both(&output);
    // Warnings about other units on this machine (a dependency's own file) are not ours; any
    // line naming one of our units or the tempdir is: an unknown key, a bad value, a missing
    // program.
    let dir_name = dir.path().display().to_string();
    let ours: Vec<&str> = text
        .lines()
        .filter(|line| {
            line.contains(&dir_name) || UNITS.iter().any(|(unit, _)| line.contains(unit))
        })
        .collect();
    assert!(
        output.status.success() && ours.is_empty(),
        "systemd-analyze verify failed ({}):\n{text}",
        output.status
    );
    if !text.trim().is_empty() {
        eprintln!("systemd-analyze verify (about other units):\n{text}");
    }
}

#[test]
fn systemd_units_keep_an_ok_exposure_rating() {
    require!("systemd-analyze");
    let (_dir, units) = units_with_built_binaries();
    for unit in &units {
        let output = run(Command::new(tool("systemd-analyze"))
            .args(["security", "--offline=true", "--no-pager"])
            .arg(format!("--threshold={MAX_EXPOSURE}"))
            .arg(unit)
            .env("SYSTEMD_LOG_COLOR", "0"));
        let text = both(&output);
        let overall = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or("(no overall exposure line)");
        assert!(
            output.status.success(),
            "{}: exposure above {MAX_EXPOSURE} tenths: {overall}\n{text}",
            unit.display()
        );
        eprintln!("{overall}");
    }
}

#[test]
fn systemd_units_run_as_the_persistent_chmail_user() {
    // What the rating does not show: who the units run as, where their state lives, restarts.
    let sysusers = read(&contrib("systemd/chmail.sysusers"));
    assert!(
        sysusers.lines().any(|l| l.starts_with("u chmail ")),
        "chmail.sysusers does not create the user chmail"
    );
    for &(unit, _) in UNITS {
        let text = read(&contrib(&format!("systemd/{unit}")));
        for (key, want) in [
            ("User", "chmail"),
            ("Group", "chmail"),
            ("StateDirectory", "chmail"),
            ("Restart", "on-failure"),
            ("KillSignal", "SIGTERM"),
            ("CapabilityBoundingSet", ""),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ] {
            assert_eq!(settings(&text, key), [want], "{unit}: {key}=");
        }
        assert!(
            settings(&text, "DynamicUser").is_empty(),
            "{unit}: the store and the key must outlive the unit's user"
        );
        assert_eq!(
            settings(&text, "TimeoutStopSec").len(),
            1,
            "{unit}: TimeoutStopSec="
        );
    }
    // A RuntimeDirectory= is removed when a unit declaring it stops: only the milter owns one.
    let chatd = read(&contrib("systemd/chatd.service"));
    assert!(settings(&chatd, "RuntimeDirectory").is_empty());
}

#[test]
fn sysusers_file_creates_the_chmail_user() {
    require!("systemd-sysusers");
    let root = tempdir("chmail-sysusers-");
    fs::create_dir(root.path().join("etc")).expect("etc in the tempdir");
    let output = run(Command::new(tool("systemd-sysusers"))
        .arg(format!("--root={}", root.path().display()))
        .arg(contrib("systemd/chmail.sysusers"))
        .env("SYSTEMD_LOG_COLOR", "0"));
    assert!(
        output.status.success(),
        "systemd-sysusers failed ({}):\n{}",
        output.status,
        both(&output)
    );
    let passwd = read(&root.path().join("etc/passwd"));
    let user = passwd
        .lines()
        .find(|l| l.starts_with("chmail:"))
        .unwrap_or_else(|| panic!("no chmail user in\n{passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    assert_eq!(
        fields.get(5..7),
        Some(&["/var/lib/chmail", "/usr/sbin/nologin"][..]),
        "{user}"
    );
    let group = read(&root.path().join("etc/group"));
    assert!(group.lines().any(|l| l.starts_with("chmail:")), "{group}");
}

/// A self-signed pair for `chat.example.com` in `dir`: (certificate, key).
fn self_signed_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let output = run(Command::new(tool("openssl"))
        .args(["req", "-x509", "-newkey", "ec"])
        .args([
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=chat.example.com"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    assert!(
        output.status.success(),
        "openssl req failed ({}):\n{}",
        output.status,
        both(&output)
    );
    (cert, key)
}

/// The snippet with the test's certificate, logs in `dir`, and every `listen` address on a free
/// port of 127.0.0.1 (`nginx -t` binds each one for a moment: 80 and 443 need root and may be
/// taken).
fn site_for_test(snippet: &str, dir: &Path, cert: &Path, key: &Path) -> String {
    for placeholder in [CERT_PLACEHOLDER, KEY_PLACEHOLDER, "/var/log/nginx/"] {
        assert!(
            snippet.contains(placeholder),
            "contrib/proxy/nginx.conf no longer holds {placeholder}: update this test"
        );
    }
    let text = snippet
        .replace(CERT_PLACEHOLDER, &cert.display().to_string())
        .replace(KEY_PLACEHOLDER, &key.display().to_string())
        .replace("/var/log/nginx/", &format!("{}/", dir.display()));
    let mut listens = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            match line.trim_start().strip_prefix("listen ") {
                Some(rest) => {
                    listens += 1;
                    let options = rest.split_once(' ').map_or(";", |(_, options)| options);
                    let port = free_port();
                    if options == ";" {
                        format!("{indent}listen 127.0.0.1:{port};")
                    } else {
                        format!("{indent}listen 127.0.0.1:{port} {options}")
                    }
                }
                None => line.to_owned(),
            }
        })
        .collect();
    assert!(
        listens >= 2,
        "the snippet has no HTTP and HTTPS listen lines"
    );
    lines.join("\n") + "\n"
}

/// The `*_temp_path` directives of the temp paths this nginx was built with (a build without
/// a module knows no directive for it).
fn temp_path_directives(nginx: &Path, dir: &Path) -> String {
    let version = run(Command::new(nginx).arg("-V"));
    let build = both(&version);
    ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .filter(|module| {
            **module == "client_body" || !build.contains(&format!("--without-http_{module}_module"))
        })
        .map(|module| format!("    {module}_temp_path {}/{module};\n", dir.display()))
        .collect()
}

#[test]
fn nginx_front_passes_nginx_t() {
    require!("nginx", "openssl");
    let dir = tempdir("chmail-nginx-");
    let d = dir.path();
    let nginx = tool("nginx");
    let (cert, key) = self_signed_pair(d);
    let snippet = read(&contrib("proxy/nginx.conf"));
    let site = d.join("chmail.conf");
    write(&site, &site_for_test(&snippet, d, &cert, &key));
    // A whole nginx.conf of our own: nothing of /etc/nginx (its default site on :80) is read,
    // and pid, logs and temp directories stay in the tempdir.
    let main = d.join("nginx.conf");
    write(
        &main,
        &format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n    \
             access_log {d}/access.log;\n{temp}    include {site};\n}}\n",
            d = d.display(),
            temp = temp_path_directives(&nginx, d),
            site = site.display(),
        ),
    );
    let output = run(Command::new(&nginx)
        .arg("-t")
        .arg("-c")
        .arg(&main)
        .arg("-p")
        .arg(format!("{}/", d.display()))
        .arg("-e")
        .arg(d.join("error.log")));
    let text = both(&output);
    assert!(
        output.status.success() && text.contains("test is successful"),
        "nginx -t failed ({}):\n{text}\n--- the site as tested:\n{}",
        output.status,
        read(&site)
    );
    // Warnings count too, except the deprecation of `listen ... http2` in nginx 1.25.1 and
    // later (Debian 12 has 1.22, which knows no `http2 on;`).
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[warn]") && !l.contains("http2"))
        .collect();
    assert!(warnings.is_empty(), "nginx -t warned:\n{text}");
}
