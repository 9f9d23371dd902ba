//! Outgoing mail: reminders and sign-in links, sent by SMTP to `[smtp] relay` with lettre.
//! (Being built.)

use async_trait::async_trait;

/// One mail chatd sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// The recipient's address.
    pub to: String,
    /// The subject (any UTF-8; encoded as needed).
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body, if any (sent as multipart/alternative with the text).
    pub html: Option<String>,
    /// The Message-ID without angle brackets: stable per mail, so a resend can be recognised.
    pub message_id: String,
}

/// Why a mail was not sent.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MailError {
    /// Worth retrying later (connection refused, time-out, 4xx).
    #[error("temporary mail failure: {0}")]
    Temporary(String),
    /// Retrying will not help (5xx, a malformed address).
    #[error("permanent mail failure: {0}")]
    Permanent(String),
}

/// Where outgoing mail goes. The server uses SMTP; a seam for tests that count mails.
#[async_trait]
pub trait MailSender: Send + Sync + 'static {
    /// Sends one mail.
    ///
    /// # Errors
    /// [`MailError`] saying whether a retry may help.
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError>;
}

/// Sends mail by SMTP to `[smtp] relay` (plain SMTP, as to a local MTA). (Being built.)
pub struct SmtpSender {}

impl SmtpSender {
    /// A sender for the config's `[smtp]` section.
    pub fn new(_config: &chmail::Config) -> Self {
        Self {}
    }
}

#[async_trait]
impl MailSender for SmtpSender {
    async fn send(&self, _mail: &OutgoingMail) -> Result<(), MailError> {
        Err(MailError::Temporary("SMTP sending is not built yet".into()))
    }
}
