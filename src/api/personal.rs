//! Personal data in the messages a reader gets, masked as its agency kind's row of
//! [`PERSONAL_DATA`](super::policy::PERSONAL_DATA) says. Every read handler and every feed stream
//! passes its messages through a [`Reader`]; the feed's shared events are never changed, each
//! stream masks its own copy of the message.
//!
//! A reader that sees resident IDs masked still needs to refer to a person (to page a roll, to
//! ask for a history, to tell two findings about one person apart): it gets an opaque person
//! token instead, the same for the same person in every read and on every replica, and only the
//! hub can turn it back into the ID. Page tokens are sealed the same way, so none carries an ID.

use std::sync::Arc;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::Hub;
use super::policy::personal_data;
use crate::domain::privacy::{
    Visibility, mask_amounts_in, mask_name, mask_resident_id, mask_resident_ids_in,
};
use crate::domain::{Agency, ResidentId};
use crate::error::Error;
use crate::proto;

/// Name of the person tokens' key among the hub's secrets.
const SECRET: &str = "person_tokens";
const NONCE_LEN: usize = 12;

/// Seals and opens tokens: a deterministic authenticated encryption (the nonce is a MAC of the
/// plaintext, as in SIV), so one plaintext always gives one token and a changed token opens to
/// nothing.
pub struct PersonTokens {
    mac: hmac::Key,
    seal: LessSafeKey,
}

impl std::fmt::Debug for PersonTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonTokens(<redacted>)")
    }
}

impl PersonTokens {
    /// Tokens under a secret of 32 random bytes; the MAC and the cipher get keys of their own.
    pub fn new(secret: &[u8]) -> PersonTokens {
        let master = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derive = |label: &[u8]| hmac::sign(&master, label);
        let mac = hmac::Key::new(hmac::HMAC_SHA256, derive(b"person-token mac").as_ref());
        let cipher = UnboundKey::new(&CHACHA20_POLY1305, derive(b"person-token seal").as_ref())
            .expect("a SHA-256 MAC is a ChaCha20 key's length");
        PersonTokens {
            mac,
            seal: LessSafeKey::new(cipher),
        }
    }

    /// `plain` sealed into a token of hex digits.
    pub fn seal(&self, plain: &[u8]) -> String {
        let tag = hmac::sign(&self.mac, plain);
        let nonce: [u8; NONCE_LEN] = tag.as_ref()[..NONCE_LEN]
            .try_into()
            .expect("a SHA-256 MAC is longer than a nonce");
        let mut sealed = plain.to_vec();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            .expect("a short plaintext seals");
        let mut token = nonce.to_vec();
        token.extend(sealed);
        hex::encode(token)
    }

    /// What a token this hub sealed holds; `None` for anything else.
    pub fn open(&self, token: &str) -> Option<Vec<u8>> {
        let raw = hex::decode(token).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let mut sealed = sealed.to_vec();
        let nonce_array: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let plain = self
            .seal
            .open_in_place(
                Nonce::assume_unique_for_key(nonce_array),
                Aad::empty(),
                &mut sealed,
            )
            .ok()?;
        (hmac::sign(&self.mac, plain).as_ref()[..NONCE_LEN] == *nonce).then(|| plain.to_vec())
    }

    /// The token that stands for a person.
    pub fn person(&self, id: &ResidentId) -> String {
        self.seal(id.as_str().as_bytes())
    }

    /// The person a token stands for.
    pub fn person_of(&self, token: &str) -> Option<ResidentId> {
        let plain = String::from_utf8(self.open(token)?).ok()?;
        ResidentId::parse(&plain).ok()
    }
}

/// What one reader sees of people, and the tokens it gets for them.
#[derive(Debug, Clone)]
pub struct Reader {
    /// Its agency kind's row of the table.
    pub sight: Visibility,
    tokens: Arc<PersonTokens>,
}

impl Hub {
    /// The person tokens: the key is made by the first replica that needs it and kept in the
    /// database, so tokens stay the same across restarts and replicas.
    pub(crate) async fn person_tokens(&self) -> Result<Arc<PersonTokens>, Error> {
        self.person_tokens
            .get_or_try_init(|| async {
                let mut candidate = [0_u8; 32];
                SystemRandom::new()
                    .fill(&mut candidate)
                    .map_err(|_| Error::Internal("no randomness for the person tokens".into()))?;
                let stored = self
                    .store
                    .hub_secret(SECRET, &hex::encode(candidate))
                    .await?;
                let secret = hex::decode(stored)
                    .map_err(|_| Error::Internal("the person tokens' key is not hex".into()))?;
                Ok(Arc::new(PersonTokens::new(&secret)))
            })
            .await
            .cloned()
    }

    /// How `agency` reads personal data.
    pub(crate) async fn reader(&self, agency: &Agency) -> Result<Reader, Error> {
        Ok(Reader {
            sight: personal_data(agency.kind),
            tokens: self.person_tokens().await?,
        })
    }
}

impl Reader {
    /// The tokens, for page tokens.
    pub fn tokens(&self) -> &PersonTokens {
        &self.tokens
    }

    /// A resident ID a request names: the ID itself, or a person token.
    pub fn person_in_request(&self, field: &str, value: &str) -> Result<ResidentId, Error> {
        match ResidentId::parse(value) {
            Ok(id) => Ok(id),
            Err(reason) => self.tokens.person_of(value.trim()).ok_or_else(|| {
                Error::invalid(
                    field,
                    format!("is neither a resident ID ({reason}) nor a person token"),
                )
            }),
        }
    }

    /// A resident ID as this reader sees it, and the person token when it is masked.
    fn resident_id(&self, id: &str) -> (String, String) {
        if self.sight.resident_ids {
            return (id.to_owned(), String::new());
        }
        let token = ResidentId::parse(id)
            .map(|id| self.tokens.person(&id))
            .unwrap_or_default();
        (mask_resident_id(id), token)
    }

    fn name(&self, name: &str) -> String {
        if self.sight.names {
            name.to_owned()
        } else {
            mask_name(name)
        }
    }

    /// Free text (a verdict's reason): resident IDs masked unless the reader sees them.
    pub fn text(&self, text: &str) -> String {
        if self.sight.resident_ids {
            text.to_owned()
        } else {
            mask_resident_ids_in(text)
        }
    }

    /// A finding as this reader sees it.
    pub fn finding(&self, finding: &mut proto::Finding) {
        if self.sight.is_whole() {
            return;
        }
        let about = ResidentId::parse(&finding.subject).ok();
        let before = (
            finding.subject.clone(),
            finding.explanation_zh.clone(),
            finding.explanation_en.clone(),
            finding.evidence.clone(),
        );
        if !self.sight.resident_ids {
            if let Some(person) = &about {
                finding.subject = self.tokens.person(person);
            }
            for evidence in &mut finding.evidence {
                evidence.id = match ResidentId::parse(&evidence.id) {
                    Ok(person) if evidence.kind == "person" => self.tokens.person(&person),
                    _ => mask_resident_ids_in(&evidence.id),
                };
            }
            finding.explanation_zh = mask_resident_ids_in(&finding.explanation_zh);
            finding.explanation_en = mask_resident_ids_in(&finding.explanation_en);
        }
        // Amounts in a finding about a person are what the person was paid; those of a finding
        // about an institution (its funding) are not personal.
        if !self.sight.pay && about.is_some() {
            finding.explanation_zh = mask_amounts_in(&finding.explanation_zh);
            finding.explanation_en = mask_amounts_in(&finding.explanation_en);
        }
        finding.personal_data_masked = before
            != (
                finding.subject.clone(),
                finding.explanation_zh.clone(),
                finding.explanation_en.clone(),
                finding.evidence.clone(),
            );
    }

    /// A change to a finding as this reader sees it.
    pub fn finding_change(&self, change: &mut proto::FindingChange) {
        if let Some(finding) = &mut change.finding {
            self.finding(finding);
        }
    }

    /// A roll entry as this reader sees it.
    pub fn roll_entry(&self, entry: &mut proto::RollEntry) {
        (entry.resident_id, entry.person_token) = self.resident_id(&entry.resident_id);
        entry.name = self.name(&entry.name);
    }

    /// A payroll line as this reader sees it; true when its amount is hidden.
    pub fn payroll_line(&self, line: &mut proto::PayrollLine) -> bool {
        (line.resident_id, line.person_token) = self.resident_id(&line.resident_id);
        line.name = self.name(&line.name);
        if !self.sight.resident_ids {
            line.record_id = mask_resident_ids_in(&line.record_id);
            line.reverses_record_id = mask_resident_ids_in(&line.reverses_record_id);
        }
        if !self.sight.pay {
            line.gross_fen = 0;
        }
        !self.sight.pay
    }

    /// A ledger item as this reader sees it: its title (often a finding's explanation) and its
    /// steps' texts may name a person, and its finding may be about one.
    pub fn ledger_item(&self, item: &mut proto::LedgerItem) {
        item.title = self.text(&item.title);
        for step in &mut item.history {
            step.text = self.text(&step.text);
        }
        if let Some(finding) = &mut item.finding
            && !self.sight.resident_ids
            && let Ok(person) = ResidentId::parse(&finding.subject)
        {
            finding.subject = self.tokens.person(&person);
        }
    }

    /// A person's history as this reader sees it.
    pub fn person_history(&self, history: &mut proto::PersonHistory) {
        (history.resident_id, history.person_token) = self.resident_id(&history.resident_id);
        history.name = self.name(&history.name);
        for event in &mut history.events {
            (event.resident_id, _) = self.resident_id(&event.resident_id);
            event.name = self.name(&event.name);
        }
        for appointment in &mut history.appointments {
            (appointment.resident_id, _) = self.resident_id(&appointment.resident_id);
            appointment.name = self.name(&appointment.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(sight: Visibility) -> Reader {
        Reader {
            sight,
            tokens: Arc::new(PersonTokens::new(&[7; 32])),
        }
    }

    const ID: &str = "11010519491231002X";

    #[test]
    fn tokens_are_stable_opaque_and_open_only_under_their_key() {
        let tokens = PersonTokens::new(&[1; 32]);
        let id = ResidentId::parse(ID).unwrap();
        let token = tokens.person(&id);
        assert_eq!(token, tokens.person(&id));
        assert!(!token.contains("110105"), "{token}");
        assert_eq!(tokens.person_of(&token), Some(id.clone()));
        assert_eq!(PersonTokens::new(&[2; 32]).person_of(&token), None);
        let mut changed = token.clone().into_bytes();
        changed[30] = if changed[30] == b'0' { b'1' } else { b'0' };
        assert_eq!(tokens.person_of(&String::from_utf8(changed).unwrap()), None);
        assert_eq!(tokens.open("zz"), None);
        assert_eq!(tokens.open(""), None);
    }

    #[test]
    fn a_finding_about_a_person_is_masked_by_sight() {
        let finding = proto::Finding {
            subject: ID.into(),
            explanation_zh: "机构 X 向 110105********002X 发放 2024-03 工资 8123.45 元".into(),
            explanation_en: "Institution X paid 110105********002X 8123.45 yuan for 2024-03".into(),
            evidence: vec![
                proto::Evidence {
                    kind: "person".into(),
                    id: ID.into(),
                },
                proto::Evidence {
                    kind: "payroll_line".into(),
                    id: format!("140100/FINANCE/pay-{ID}"),
                },
            ],
            ..Default::default()
        };

        let mut whole = finding.clone();
        reader(Visibility::WHOLE).finding(&mut whole);
        assert_eq!(whole, finding);

        let finance = reader(crate::api::policy::personal_data(
            crate::domain::AgencyKind::Finance,
        ));
        let mut masked = finding.clone();
        finance.finding(&mut masked);
        let token = finance.tokens.person(&ResidentId::parse(ID).unwrap());
        assert_eq!(masked.subject, token);
        assert_eq!(masked.evidence[0].id, token);
        assert_eq!(
            masked.evidence[1].id,
            "140100/FINANCE/pay-110105********002X"
        );
        assert!(masked.explanation_zh.contains("8123.45"));
        assert!(masked.personal_data_masked);

        let hr = reader(crate::api::policy::personal_data(
            crate::domain::AgencyKind::Hr,
        ));
        let mut unpaid = finding.clone();
        hr.finding(&mut unpaid);
        assert_eq!(unpaid.subject, ID);
        assert!(unpaid.explanation_zh.contains("工资 **** 元"), "{unpaid:?}");
        assert!(unpaid.explanation_en.contains("**** yuan"), "{unpaid:?}");
        assert!(unpaid.personal_data_masked);
    }

    #[test]
    fn a_masked_reader_names_a_person_by_token() {
        let finance = reader(Visibility::MASKED);
        let mut entry = proto::RollEntry {
            resident_id: ID.into(),
            name: "王五".into(),
            ..Default::default()
        };
        finance.roll_entry(&mut entry);
        assert_eq!(entry.resident_id, "110105********002X");
        assert_eq!(entry.name, "王*");
        assert_eq!(
            finance
                .person_in_request("resident_id", &entry.person_token)
                .unwrap()
                .as_str(),
            ID
        );
        assert!(finance.person_in_request("resident_id", "nobody").is_err());
    }
}
