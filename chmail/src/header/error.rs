//! Why a `CHmail:` field body, or a value to be signed, is rejected.

/// Every reason a `CHmail:` field body or a value for it is rejected; `Display` says what is wrong.
///
/// On an inbound header, a verifier's result for any of these is permerror, except for
/// [`HeaderError::UnsupportedVersion`], which is neutral (see `docs/header.md`, "Results").
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The field body is not valid UTF-8.
    #[error("the CHmail field is not valid UTF-8")]
    NotUtf8,
    /// The field body is empty or only whitespace.
    #[error("the CHmail field is empty")]
    Empty,
    /// The field body is longer than [`super::MAX_HEADER_LEN`].
    #[error("the CHmail field is {0} bytes long, more than the limit of {max}", max = super::MAX_HEADER_LEN)]
    TooLong(usize),
    /// The field body is not a `tag=value; ...` list (the text says where).
    #[error("CHmail field syntax: {0}")]
    Syntax(String),
    /// A tag appears twice.
    #[error("tag {0}= appears more than once")]
    DuplicateTag(String),
    /// A required tag is missing.
    #[error("tag {0}= is missing")]
    MissingTag(&'static str),
    /// A tag that v=1 does not define (unknown tags are rejected: they would not be signed).
    #[error("tag {0}= is not defined by CHmail v=1")]
    UnknownTag(String),
    /// `v` is another version number than `1`: a field of a version this parser does not know.
    #[error("unsupported CHmail version v={0}")]
    UnsupportedVersion(String),
    /// `b` is not standard base64 with padding.
    #[error("tag b= is not valid base64")]
    BadBase64,
    /// `b` does not decode to a 64-byte Ed25519 signature.
    #[error("tag b= holds {0} bytes, an Ed25519 signature has 64")]
    BadSignatureLength(usize),
    /// `p` is not a port number from 1 to 65535 in plain decimal.
    #[error("tag p= is not a port from 1 to 65535: {0:?}")]
    BadPort(String),
    /// `t` is not a Unix time in plain decimal.
    #[error("tag t= is not a Unix time in seconds: {0:?}")]
    BadTime(String),
    /// `r` is not a room id (22 to 64 characters of `A-Z a-z 0-9 _ -`).
    #[error("tag r= is not a room id: {0:?}")]
    BadRoom(String),
    /// A value holds a character its tag does not allow (a control character, whitespace, `;`,
    /// non-ASCII, or a malformed domain name).
    #[error("tag {0}= holds a character or shape it does not allow")]
    ForbiddenChars(&'static str),
    /// A value is empty or longer than its tag allows.
    #[error("tag {tag}= must be 1 to {max} characters long")]
    BadLength {
        /// The tag.
        tag: &'static str,
        /// Its longest allowed value, in characters.
        max: usize,
    },
    /// `s=` and `d=` make a key record name `<s>._chmail.<d>` that DNS cannot hold.
    #[error("the key record name of s= and d= is {0} characters long, DNS allows 253")]
    KeyNameTooLong(usize),
    /// The From address cannot be signed or checked: not exactly one `local@domain` address, or
    /// it holds a control character.
    #[error("the From address is unusable: {0:?}")]
    BadFrom(String),
}
