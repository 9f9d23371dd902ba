//! Properties of the CHmail header over many generated values (a small seeded generator, so a
//! failure names its case and repeats): a signed field prints and parses back to the same values
//! and verifies; folding it differently (CRLF or LF folds, spaces or tabs, one line) changes
//! neither the values nor the canonical form that the signature covers. The fuzz target
//! `chmail_header` checks the print-and-parse property on arbitrary input (docs/fuzzing.md).

use chmail::header::{canonical_bytes, ChmailHeader, RoomId, Signer};

/// Cases per property.
const CASES: u64 = 400;

/// xorshift64*: enough spread for values, and a case is its seed.
struct Gen(u64);

impl Gen {
    fn new(case: u64) -> Self {
        Self(case.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick(&mut self, chars: &[u8]) -> char {
        char::from(chars[usize::try_from(self.below(chars.len() as u64)).unwrap_or(0)])
    }

    /// A DNS label of 1..=max letters, digits and inner hyphens.
    fn label(&mut self, max: u64) -> String {
        const EDGE: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const INNER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
        let len = 1 + self.below(max);
        (0..len)
            .map(|i| {
                if i == 0 || i == len - 1 {
                    self.pick(EDGE)
                } else {
                    self.pick(INNER)
                }
            })
            .collect()
    }

    /// A DNS name of 1..=3 labels.
    fn dns_name(&mut self) -> String {
        let labels = 1 + self.below(3);
        (0..labels)
            .map(|_| self.label(12))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// A login: visible ASCII except `;`, often an address.
    fn login(&mut self) -> String {
        const CHARS: &[u8] =
            b"abcdefghijklmnopqrstuvwxyz0123456789.!#$%&'*+/=?^_`{|}~-\"(),:<>@[\\]";
        let len = 1 + self.below(24);
        let local: String = (0..len).map(|_| self.pick(CHARS)).collect();
        if self.below(2) == 0 {
            format!("{local}@{}", self.dns_name())
        } else {
            local
        }
    }

    /// A chat host: a DNS name, sometimes with a port.
    fn host(&mut self) -> String {
        let name = self.dns_name();
        if self.below(3) == 0 {
            format!("{name}:{}", 1 + self.below(65_535))
        } else {
            name
        }
    }

    /// A room id: 22 to 64 characters of base64url.
    fn room(&mut self) -> RoomId {
        const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let len = 22 + self.below(43);
        let id: String = (0..len).map(|_| self.pick(B64URL)).collect();
        RoomId::parse(&id).unwrap_or_else(|| panic!("generated room id {id:?} is not one"))
    }

    /// A header signed over generated values, with the From field it was signed for.
    fn signed(&mut self) -> (ChmailHeader, Signer, String) {
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        let signer = Signer::from_seed(&self.dns_name(), &self.label(20), seed);
        let from = format!("Alice <alice@{}>", signer.domain());
        let port = u16::try_from(1 + self.below(65_535)).unwrap_or(1);
        let header = signer
            .sign(
                &self.login(),
                &self.host(),
                port,
                &self.room(),
                self.next() >> self.below(64),
                &from,
            )
            .expect("generated values are valid");
        (header, signer, from)
    }

    /// `value` folded anew: every fold and every space between tags becomes a CRLF or LF fold
    /// with a space or tab, a plain space, or a few spaces.
    fn refold(&mut self, value: &str) -> String {
        let one_line = value.replace("\n\t", " ").replace("\n ", "");
        let mut out = String::with_capacity(one_line.len() * 2);
        for (i, item) in one_line.split(' ').filter(|s| !s.is_empty()).enumerate() {
            if i > 0 {
                out.push_str(match self.below(5) {
                    0 => "\r\n ",
                    1 => "\r\n\t",
                    2 => "\n ",
                    3 => "   ",
                    _ => " ",
                });
            }
            out.push_str(item);
        }
        out
    }
}

#[test]
fn a_signed_header_prints_and_parses_back_to_the_same_values_and_verifies() {
    for case in 0..CASES {
        let mut g = Gen::new(case);
        let (header, signer, from) = g.signed();
        let value = header.to_value();
        let parsed = ChmailHeader::parse(value.as_bytes())
            .unwrap_or_else(|e| panic!("case {case}: {value:?} does not parse: {e}"));
        assert_eq!(parsed, header, "case {case}: {value:?}");
        assert!(
            parsed.verify(&from, &signer.public_key()).is_pass(),
            "case {case}: {value:?} does not verify"
        );
        assert_eq!(parsed.to_value(), value, "case {case}: printing is stable");
    }
}

#[test]
fn the_canonical_form_is_stable_under_refolding() {
    for case in 0..CASES {
        let mut g = Gen::new(case);
        let (header, signer, from) = g.signed();
        let canonical = canonical_bytes(&header, &from).expect("canonical form");
        let value = header.to_value();
        for _ in 0..3 {
            let refolded = g.refold(&value);
            let parsed = ChmailHeader::parse(refolded.as_bytes())
                .unwrap_or_else(|e| panic!("case {case}: {refolded:?} does not parse: {e}"));
            assert_eq!(parsed, header, "case {case}: {refolded:?}");
            assert_eq!(
                canonical_bytes(&parsed, &from).expect("canonical form"),
                canonical,
                "case {case}: {refolded:?}"
            );
            assert!(
                parsed.verify(&from, &signer.public_key()).is_pass(),
                "case {case}: {refolded:?} does not verify"
            );
        }
    }
}

#[test]
fn a_changed_value_no_longer_verifies() {
    for case in 0..CASES / 4 {
        let mut g = Gen::new(case);
        let (header, signer, from) = g.signed();
        let mut moved = header.clone();
        moved.port = if header.port == 1 { 2 } else { header.port - 1 };
        assert!(
            !moved.verify(&from, &signer.public_key()).is_pass(),
            "case {case}: another port verifies"
        );
        let other_from = format!("Mallory <mallory@{}>", signer.domain());
        assert!(
            !header.verify(&other_from, &signer.public_key()).is_pass(),
            "case {case}: another From verifies"
        );
    }
}
