//! CHmail and OpenDKIM chained in a real Postfix as contrib/postfix shows them: CHmail first and
//! OpenDKIM second (the example in main.cf.snippet), OpenDKIM with the lines of
//! opendkim.conf.snippet, mail submitted with AUTH on the submission service of
//! master.cf.snippet. The delivered mail's DKIM signature covers the CHmail headers and verifies
//! with OpenDKIM's own verifier, the CHmail header verifies with CHmail's key, and a CHmail
//! header changed or added after signing breaks the DKIM signature.

use chmail::header::{ChmailHeader, Verdict, LINK_HEADER_NAME};
use chmail_tests::{
    header_values, require, single_header, unfold, with_auth, Milter, MilterOptions, OpenDkim,
    Postfix, TestDns, DKIM_SELECTOR, PUBLIC_URL, SIGNING_DOMAIN,
};

/// The SASL account of the test.
const ALICE: (&str, &str) = ("alice", "secret");

/// The tag `name` of a DKIM-Signature value (`h=`, `d=`, ...), white space removed.
fn dkim_tag(signature: &str, name: &str) -> Option<String> {
    signature.split(';').find_map(|tag| {
        let (key, value) = tag.split_once('=')?;
        (key.trim() == name).then(|| value.split_whitespace().collect())
    })
}

/// `mail` with the value of its first `name` header replaced by `value` (on one line).
fn with_header_replaced(mail: &str, name: &str, value: &str) -> String {
    let mut out = String::new();
    let mut lines = mail.split_inclusive('\n').peekable();
    let mut replaced = false;
    while let Some(line) = lines.next() {
        let is_field = line
            .split_once(':')
            .is_some_and(|(field, _)| field.eq_ignore_ascii_case(name));
        if replaced || !is_field {
            out.push_str(line);
            continue;
        }
        // Drop the field's continuation lines with it.
        while lines
            .peek()
            .is_some_and(|next| next.starts_with([' ', '\t']))
        {
            lines.next();
        }
        out.push_str(&format!("{name}: {value}\n"));
        replaced = true;
    }
    assert!(replaced, "no {name} header to replace");
    out
}

/// `mail` with one more header field right after the envelope lines of the sink.
fn with_header_added(mail: &str, field: &str) -> String {
    format!("{field}\n{mail}")
}

#[test]
fn dkim_signature_made_after_chmail_covers_its_headers_and_both_verify() {
    require!(
        "root",
        "postfix",
        "dovecot",
        "smtp-sink",
        "swaks",
        "openssl",
        "opendkim",
        "opendkim-genkey"
    );
    let dns = TestDns::start::<String, String>([]);
    let (milter, record) = Milter::start_with_dns(&dns, MilterOptions::default());
    let key = record.public_key();
    let opendkim = OpenDkim::start(SIGNING_DOMAIN);
    dns.insert(&opendkim.record().name, &opendkim.record().value);
    let postfix = Postfix::start_with_dkim(milter.port(), opendkim.port(), &[ALICE]);

    postfix.submit(&with_auth(
        ALICE,
        &[
            "--from",
            "alice@example.test",
            "--to",
            "bob@other.test",
            "--header",
            "Subject: signed twice",
            "--header",
            "CHmail: forged",
        ],
    ));
    let mail = postfix.delivered(1).remove(0);

    // CHmail's own signature.
    let value = single_header(&mail, "CHmail");
    let header = ChmailHeader::parse(value.as_bytes())
        .unwrap_or_else(|err| panic!("the CHmail header {value:?} does not parse: {err}"));
    let from = single_header(&mail, "From");
    assert_eq!(
        header.verify(&from, &key),
        Verdict::Pass,
        "the CHmail header does not verify against From {from:?}: {value:?}"
    );
    assert_eq!(header.login, "alice@example.test");
    let link = single_header(&mail, LINK_HEADER_NAME);
    assert_eq!(
        link,
        format!("<{PUBLIC_URL}/c/{}/{}>", header.port, header.room.as_str())
    );

    // OpenDKIM's, made after CHmail's headers were in place, and covering them.
    let signature = unfold(&single_header(&mail, "DKIM-Signature"));
    assert_eq!(dkim_tag(&signature, "d").as_deref(), Some(SIGNING_DOMAIN));
    assert_eq!(dkim_tag(&signature, "s").as_deref(), Some(DKIM_SELECTOR));
    let signed: Vec<String> = dkim_tag(&signature, "h")
        .unwrap_or_default()
        .split(':')
        .map(str::to_ascii_lowercase)
        .collect();
    for field in ["from", "subject", "chmail", "chmail-link"] {
        assert!(
            signed.iter().any(|f| f == field),
            "h= does not cover {field}: {signature}"
        );
    }
    for field in ["from", "chmail", "chmail-link"] {
        assert!(
            signed.iter().filter(|f| *f == field).count() >= 2,
            "{field} is not oversigned (listed once more than present): {signature}"
        );
    }
    assert_eq!(
        opendkim.verify(&mail, dns.port()),
        "pass",
        "OpenDKIM does not verify its own signature on the delivered mail:\n{mail}"
    );

    // The coverage is real: a changed link or an added CHmail header fails DKIM.
    let changed = with_header_replaced(
        &mail,
        LINK_HEADER_NAME,
        &format!("<{PUBLIC_URL}/c/{}/changed>", header.port),
    );
    assert_eq!(
        opendkim.verify(&changed, dns.port()),
        "fail",
        "a changed CHmail-Link still passes DKIM"
    );
    let added = with_header_added(&mail, "CHmail: added after signing");
    assert_eq!(header_values(&added, "CHmail").len(), 2);
    assert_eq!(
        opendkim.verify(&added, dns.port()),
        "fail",
        "a CHmail header added after signing still passes DKIM"
    );
}
