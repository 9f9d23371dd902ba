//! Mail from an authenticated sender: record the login's address, get its port, open the room,
//! remove every CHmail field the client supplied and add the ones signed with the key the signing
//! table gives its From domain (S101-S105). A From domain without a key leaves the mail unsigned.

use chmail::{
    header::{link_value, RoomId},
    store::{Participant, Role, StoreError, Submission},
};
use tracing::warn;

use crate::{
    headers::Kind,
    policy::{unix_now, Mail, Milter, Outcome},
};

impl Milter {
    /// Signs `mail` for `login`.
    pub(crate) async fn sign(&self, mail: &Mail, login: String) -> Outcome {
        let mut outcome = Outcome::new("unsigned");
        // Whatever the client wrote in these fields is not ours: all copies go.
        for kind in [Kind::Header, Kind::Link] {
            let indexes = (1..=mail.headers.count(kind)).collect();
            outcome.delete_all(kind, indexes);
        }
        outcome.login = Some(login.clone());
        if mail.headers.oversized {
            outcome.note = Some("header block over [milter] max_header_bytes".into());
            return outcome;
        }
        let summary = mail.headers.summary();
        let Some(from) = summary.sole_from().map(str::to_owned) else {
            outcome.note = Some(format!(
                "not exactly one From address ({} From fields)",
                summary.from_fields
            ));
            return outcome;
        };
        let from_domain = from.rsplit_once('@').map_or("", |(_, d)| d);
        let Some(signer) = self.table.signer_for(from_domain) else {
            outcome.note = Some(format!("no signing key for {from_domain}"));
            return outcome;
        };
        let (ip, hostname) = self.client(mail).await;
        let now = unix_now();
        let room = RoomId::generate();
        let from_participant = Participant::new(from.clone(), Role::From);
        let mut participants =
            vec![from_participant.named(summary.from_name.as_deref().unwrap_or(""))];
        participants.extend(summary.recipients);
        let submission = Submission {
            login: login.clone(),
            ip: ip.map(|ip| ip.to_string()),
            hostname,
            now: i64::try_from(now).unwrap_or(i64::MAX),
            ports: self.config.chat.ports,
            reclaim_after: self.config.chat.reclaim_after(),
            room_id: room.as_str().to_owned(),
            message_id: summary.message_id,
            subject: summary.subject,
            participants,
            opening: mail.opening.clone(),
        };
        let timeout = self.config.store.timeout();
        let grant = match tokio::time::timeout(timeout, self.store.record_submission(&submission))
            .await
        {
            Ok(Ok(grant)) => grant,
            Ok(Err(StoreError::PortsExhausted { range })) => {
                warn!(login = %login, range = %range, "no chat port free in the range: mail goes on unsigned");
                self.metrics.error("ports");
                return outcome;
            }
            Ok(Err(e)) => {
                warn!(login = %login, cause = %e, "store failed");
                self.metrics.error("store");
                return self.on_failure(outcome, format!("store: {e}"));
            }
            Err(_) => {
                warn!(login = %login, timeout_ms = timeout.as_millis() as u64, "store timed out");
                self.metrics.error("store");
                return self.on_failure(outcome, "store timed out".into());
            }
        };
        let header = match signer.sign(&login, &self.public_host, grant.port, &room, now, &from) {
            Ok(header) => header,
            Err(e) => {
                warn!(login = %login, cause = %e, "cannot sign for this login");
                outcome.note = Some(format!("cannot sign: {e}"));
                return outcome;
            }
        };
        outcome.add.push((Kind::Header, header.to_value()));
        let link = link_value(self.config.chat.public_base(), grant.port, &room);
        outcome.link = Some(
            link.trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned(),
        );
        outcome.add.push((Kind::Link, link));
        outcome.action = "signed";
        outcome.port = Some(grant.port);
        outcome
    }
}
