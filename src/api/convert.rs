//! Translation between the contract's messages and the domain: every pushed message is validated
//! field by field into a domain record (all violations at once, each naming its field), and stored
//! records are turned back into messages for reads.

use chrono::NaiveDate;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::domain::alerts::AlertState;
use crate::domain::findings::{RuleCode, Severity};
use crate::domain::ids::{normalize_document_number, parse_date};
use crate::domain::roll::Spell;
use crate::domain::*;
use crate::error::Error;
use crate::proto;
use crate::store::feed::FeedEventType;
use crate::store::ledger::TimeRange;
use crate::store::ledger_keys::RequestKey;
use crate::store::push::Submission;
use crate::store::query::Stored;
use crate::store::reconcile::{ChangeKind, FindingChange, StoredFinding};

/// An enum of the contract paired with its domain twin by value name.
pub trait Wire: Coded {
    /// The contract's name of a raw value, if it is one.
    fn wire_name(raw: i32) -> Option<&'static str>;
    /// The raw value of a contract name.
    fn wire_value(name: &str) -> Option<i32>;

    /// The domain value of a raw contract value; `None` for UNSPECIFIED or unknown values.
    fn from_wire(raw: i32) -> Option<Self> {
        Self::wire_name(raw)?
            .strip_prefix(Self::PROTO_PREFIX)
            .and_then(Self::from_code)
    }

    /// The raw contract value.
    fn to_wire(self) -> i32 {
        Self::wire_value(&format!("{}{}", Self::PROTO_PREFIX, self.code())).unwrap_or_default()
    }
}

macro_rules! wire_enums {
    ($($domain:ty => $proto:ty),+ $(,)?) => {$(
        impl Wire for $domain {
            fn wire_name(raw: i32) -> Option<&'static str> {
                <$proto>::try_from(raw).ok().map(|value| value.as_str_name())
            }
            fn wire_value(name: &str) -> Option<i32> {
                <$proto>::from_str_name(name).map(|value| value as i32)
            }
        }
    )+};
}
pub(crate) use wire_enums;

wire_enums! {
    QuotaCategory => proto::QuotaCategory,
    InstitutionKind => proto::InstitutionKind,
    Grade => proto::Grade,
    FundingForm => proto::FundingForm,
    InstitutionStatus => proto::InstitutionStatus,
    LeaderLevel => proto::LeaderLevel,
    LeaderPosition => proto::LeaderPosition,
    Rank => proto::Rank,
    PersonStatus => proto::PersonStatus,
    HiringChannel => proto::HiringChannel,
    PersonnelEventType => proto::PersonnelEventType,
    AppointmentAction => proto::AppointmentAction,
    RuleCode => proto::RuleCode,
    Severity => proto::Severity,
    AlertState => proto::AlertState,
    FeedEventType => proto::FeedEventType,
}

/// Longest accepted record id, name or document number.
const MAX_TEXT: usize = 200;

/// Collects the violations of one message while its fields are read.
#[derive(Default)]
struct Fields {
    violations: Vec<FieldViolation>,
}

impl Fields {
    fn fail<T>(&mut self, field: &str, reason: impl Into<String>) -> Option<T> {
        self.violations.push(FieldViolation::new(field, reason));
        None
    }

    fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        parsed.map_err(|reason| self.fail::<T>(field, reason)).ok()
    }

    fn text(&mut self, field: &str, value: &str) -> Option<String> {
        let value = value.trim();
        if value.is_empty() {
            self.fail(field, "is required")
        } else if value.chars().count() > MAX_TEXT {
            self.fail(field, format!("is longer than {MAX_TEXT} characters"))
        } else if value.chars().any(char::is_control) {
            self.fail(field, "contains control characters")
        } else {
            Some(value.to_owned())
        }
    }

    fn opt_text(&mut self, field: &str, value: &str) -> Option<Option<String>> {
        if value.trim().is_empty() {
            Some(None)
        } else {
            self.text(field, value).map(Some)
        }
    }

    fn document(&mut self, field: &str, value: &str) -> Option<String> {
        self.text(field, value)
            .map(|text| normalize_document_number(&text))
    }

    fn opt_document(&mut self, field: &str, value: &str) -> Option<Option<String>> {
        self.opt_text(field, value)
            .map(|text| text.map(|t| normalize_document_number(&t)))
    }

    fn uscc(&mut self, field: &str, value: &str) -> Option<Uscc> {
        if value.trim().is_empty() {
            return self.fail(field, "is required");
        }
        self.check(field, Uscc::parse(value))
    }

    fn opt_uscc(&mut self, field: &str, value: &str) -> Option<Option<Uscc>> {
        if value.trim().is_empty() {
            Some(None)
        } else {
            self.uscc(field, value).map(Some)
        }
    }

    fn resident_id(&mut self, field: &str, value: &str) -> Option<ResidentId> {
        if value.trim().is_empty() {
            return self.fail(field, "is required");
        }
        self.check(field, ResidentId::parse(value))
    }

    fn date(&mut self, field: &str, value: &str) -> Option<NaiveDate> {
        if value.trim().is_empty() {
            return self.fail(field, "is required (YYYY-MM-DD)");
        }
        self.check(field, parse_date(value))
    }

    fn opt_date(&mut self, field: &str, value: &str) -> Option<Option<NaiveDate>> {
        if value.trim().is_empty() {
            Some(None)
        } else {
            self.date(field, value).map(Some)
        }
    }

    fn period(&mut self, field: &str, value: &str) -> Option<Period> {
        self.check(field, Period::parse(value))
    }

    fn jurisdiction(&mut self, field: &str, value: &str) -> Option<Jurisdiction> {
        self.check(field, Jurisdiction::parse(value))
    }

    fn required<T: Wire>(&mut self, field: &str, raw: i32) -> Option<T> {
        match T::from_wire(raw) {
            Some(value) => Some(value),
            None if raw == 0 => self.fail(field, "is required"),
            None => self.fail(field, format!("{raw} is not a known value")),
        }
    }

    fn optional<T: Wire>(&mut self, field: &str, raw: i32) -> Option<Option<T>> {
        if raw == 0 {
            Some(None)
        } else {
            self.required(field, raw).map(Some)
        }
    }

    fn amount(&mut self, field: &str, fen: i64) -> Option<i64> {
        match crate::domain::amount_fen(fen) {
            Ok(fen) => Some(fen),
            Err(reason) => self.fail(field, reason),
        }
    }

    fn count(&mut self, field: &str, value: u32) -> Option<u32> {
        if value > 10_000_000 {
            self.fail(field, "is implausibly large")
        } else {
            Some(value)
        }
    }

    /// The record if every field was valid and the record's own rules hold.
    fn finish<T>(
        mut self,
        record: Option<T>,
        rules: impl FnOnce(&T) -> Vec<FieldViolation>,
    ) -> Result<T, Error> {
        if let Some(record) = &record
            && self.violations.is_empty()
        {
            self.violations.extend(rules(record));
        }
        match record {
            Some(record) if self.violations.is_empty() => Ok(record),
            _ => Err(Error::InvalidArgument(self.violations)),
        }
    }
}

/// A pushed message of the contract and its domain record.
pub trait Pushed: Message + Default + Clone + Send + Sync + 'static {
    /// The domain record.
    type Record: crate::store::push::RecordKind + Clone;
    /// The sender's own id.
    fn record_id(&self) -> &str;
    /// Validates the message into the domain record.
    fn to_record(&self) -> Result<Self::Record, Error>;

    /// Validates the message into a submission to store.
    fn to_submission(&self) -> Result<Submission<Self::Record>, Error> {
        let mut fields = Fields::default();
        let record_id = fields.text("record_id", self.record_id());
        let record = self.to_record();
        match (record_id, record) {
            (Some(record_id), Ok(record)) => Ok(Submission {
                record_id,
                content_hash: hex::encode(Sha256::digest(self.encode_to_vec())),
                record,
            }),
            (_, Err(Error::InvalidArgument(more))) => {
                fields.violations.extend(more);
                Err(Error::InvalidArgument(fields.violations))
            }
            (_, Err(other)) => Err(other),
            (None, Ok(_)) => Err(Error::InvalidArgument(fields.violations)),
        }
    }
}

impl Pushed for proto::Institution {
    type Record = Institution;

    fn record_id(&self) -> &str {
        &self.record_id
    }

    fn to_record(&self) -> Result<Institution, Error> {
        let mut f = Fields::default();
        let uscc = f.uscc("uscc", &self.uscc);
        let name = f.text("name", &self.name);
        let jurisdiction = f.jurisdiction("jurisdiction", &self.jurisdiction);
        let parent = f.opt_uscc("parent_uscc", &self.parent_uscc);
        let kind = f.required("kind", self.kind);
        let grade = f.required("grade", self.grade);
        let funding_form = f.optional("funding_form", self.funding_form);
        let status = f.required("status", self.status);
        let approval_document = f.document("approval_document", &self.approval_document);
        let established_on = f.opt_date("established_on", &self.established_on);
        let status_since = f.opt_date("status_since", &self.status_since);
        let record = (|| {
            Some(Institution {
                uscc: uscc?,
                name: name?,
                jurisdiction: jurisdiction?,
                parent: parent?,
                kind: kind?,
                grade: grade?,
                funding_form: funding_form?,
                status: status?,
                approval_document: approval_document?,
                established_on: established_on?,
                status_since: status_since?,
                political_legal: self.political_legal,
            })
        })();
        f.finish(record, Institution::check)
    }
}

impl Pushed for proto::Quota {
    type Record = Quota;

    fn record_id(&self) -> &str {
        &self.record_id
    }

    fn to_record(&self) -> Result<Quota, Error> {
        let mut f = Fields::default();
        let institution = f.uscc("institution_uscc", &self.institution_uscc);
        let category = f.required("category", self.category);
        let approved_count = f.count("approved_count", self.approved_count);
        let effective_from = f.date("effective_from", &self.effective_from);
        let effective_to = f.opt_date("effective_to", &self.effective_to);
        let approval_document = f.document("approval_document", &self.approval_document);
        let record = (|| {
            Some(Quota {
                institution: institution?,
                category: category?,
                approved_count: approved_count?,
                effective_from: effective_from?,
                effective_to: effective_to?,
                approval_document: approval_document?,
            })
        })();
        f.finish(record, Quota::check)
    }
}

impl Pushed for proto::LeaderPost {
    type Record = LeaderPost;

    fn record_id(&self) -> &str {
        &self.record_id
    }

    fn to_record(&self) -> Result<LeaderPost, Error> {
        let mut f = Fields::default();
        let institution = f.uscc("institution_uscc", &self.institution_uscc);
        let level = f.required("level", self.level);
        let position = f.required("position", self.position);
        let approved_count = f.count("approved_count", self.approved_count);
        let effective_from = f.date("effective_from", &self.effective_from);
        let effective_to = f.opt_date("effective_to", &self.effective_to);
        let approval_document = f.document("approval_document", &self.approval_document);
        let record = (|| {
            Some(LeaderPost {
                institution: institution?,
                level: level?,
                position: position?,
                approved_count: approved_count?,
                effective_from: effective_from?,
                effective_to: effective_to?,
                approval_document: approval_document?,
            })
        })();
        f.finish(record, LeaderPost::check)
    }
}

impl Pushed for proto::StaffingPlan {
    type Record = StaffingPlan;

    fn record_id(&self) -> &str {
        &self.record_id
    }

    fn to_record(&self) -> Result<StaffingPlan, Error> {
        let mut f = Fields::default();
        let institution = f.uscc("institution_uscc", &self.institution_uscc);
        let category = f.required("category", self.category);
        let channel = f.required("channel", self.channel);
        let approved_count = f.count("approved_count", self.approved_count);
        let approval_document = f.document("approval_document", &self.approval_document);
        let year = match i32::try_from(self.year) {
            Ok(year) if (1949..=2200).contains(&year) => Some(year),
            _ => f.fail("year", "must be a calendar year from 1949 to 2200"),
        };
        let record = (|| {
            Some(StaffingPlan {
                institution: institution?,
                year: year?,
                category: category?,
                channel: channel?,
                approved_count: approved_count?,
                approval_document: approval_document?,
            })
        })();
        f.finish(record, |_| Vec::new())
    }
}

impl Pushed for proto::HiringApproval {
    type Record = HiringApproval;

    fn record_id(&self) -> &str {
        &self.record_id
    }

    fn to_record(&self) -> Result<HiringApproval, Error> {
        let mut f = Fields::default();
        let approval_number = f.document("approval_number", &self.approval_number);
        let institution = f.uscc("institution_uscc", &self.institution_uscc);
        let category = f.required("category", self.category);
        let approved_entries = f.count("approved_entries", self.approved_entries);
        let issued_on = f.date("issued_on", &self.issued_on);
        let valid_until = f.date("valid_until", &self.valid_until);
        let record = (|| {
            Some(HiringApproval {
                approval_number: approval_number?,
                institution: institution?,
                category: category?,
                approved_entries: approved_entries?,
                issued_on: issued_on?,
                valid_until: valid_until?,
            })
        })();
        f.finish(record, HiringApproval::check)
    }
}

impl Pushed for proto::PersonnelEvent {
    type Record = PersonnelEvent;

    fn record_id(&self) -> &str {
        &self.record_id
    }

    fn to_record(&self) -> Result<PersonnelEvent, Error> {
        let mut f = Fields::default();
        let event_type = f.required("event_type", self.event_type);
        let resident_id = f.resident_id("resident_id", &self.resident_id);
        let name = f.text("name", &self.name);
        let institution = f.uscc("institution_uscc", &self.institution_uscc);
        let category = f.optional("category", self.category);
        let rank = f.optional("rank", self.rank);
        let effective_on = f.date("effective_on", &self.effective_on);
        let approval_number = f.opt_document("approval_number", &self.approval_number);
        let channel = f.optional("channel", self.channel);
        let target = f.opt_uscc("target_institution_uscc", &self.target_institution_uscc);
        let corrects = f.opt_text("corrects_record_id", &self.corrects_record_id);
        let record = (|| {
            Some(PersonnelEvent {
                event_type: event_type?,
                resident_id: resident_id?,
                name: name?,
                institution: institution?,
                category: category?,
                rank: rank?,
                effective_on: effective_on?,
                approval_number: approval_number?,
                channel: channel?,
                target: target?,
                corrects: corrects?,
            })
        })();
        f.finish(record, PersonnelEvent::check)
    }
}

impl Pushed for proto::Appointment {
    type Record = Appointment;

    fn record_id(&self) -> &str {
        &self.record_id
    }

    fn to_record(&self) -> Result<Appointment, Error> {
        let mut f = Fields::default();
        let action = f.required("action", self.action);
        let resident_id = f.resident_id("resident_id", &self.resident_id);
        let name = f.text("name", &self.name);
        let institution = f.uscc("institution_uscc", &self.institution_uscc);
        let level = f.required("level", self.level);
        let position = f.required("position", self.position);
        let rank = f.required("rank", self.rank);
        let effective_on = f.date("effective_on", &self.effective_on);
        let document = f.document("appointment_document", &self.appointment_document);
        let record = (|| {
            Some(Appointment {
                action: action?,
                resident_id: resident_id?,
                name: name?,
                institution: institution?,
                level: level?,
                position: position?,
                rank: rank?,
                effective_on: effective_on?,
                document: document?,
            })
        })();
        f.finish(record, |_| Vec::new())
    }
}

impl Pushed for proto::PayrollLine {
    type Record = PayrollLine;

    fn record_id(&self) -> &str {
        &self.record_id
    }

    fn to_record(&self) -> Result<PayrollLine, Error> {
        let mut f = Fields::default();
        let period = f.period("period", &self.period);
        let institution = f.uscc("institution_uscc", &self.institution_uscc);
        let resident_id = f.resident_id("resident_id", &self.resident_id);
        let name = f.text("name", &self.name);
        let gross_fen = f.amount("gross_fen", self.gross_fen);
        let reverses = f.opt_text("reverses_record_id", &self.reverses_record_id);
        let record = (|| {
            Some(PayrollLine {
                period: period?,
                institution: institution?,
                resident_id: resident_id?,
                name: name?,
                gross_fen: gross_fen?,
                reverses: reverses?,
            })
        })();
        f.finish(record, |_| Vec::new())
    }
}

impl Pushed for proto::Funding {
    type Record = Funding;

    fn record_id(&self) -> &str {
        &self.record_id
    }

    fn to_record(&self) -> Result<Funding, Error> {
        let mut f = Fields::default();
        let institution = f.uscc("institution_uscc", &self.institution_uscc);
        let category = f.required("category", self.category);
        let period = f.period("period", &self.period);
        let funded_headcount = f.count("funded_headcount", self.funded_headcount);
        let amount_fen = f.amount("amount_fen", self.amount_fen);
        let record = (|| {
            Some(Funding {
                institution: institution?,
                category: category?,
                period: period?,
                funded_headcount: funded_headcount?,
                amount_fen: amount_fen?,
            })
        })();
        f.finish(record, |_| Vec::new())
    }
}

/// Parses a request field that names an institution.
pub fn request_uscc(field: &str, value: &str) -> Result<Uscc, Error> {
    Uscc::parse(value).map_err(|reason| Error::invalid(field, reason))
}

/// The jurisdiction a request names in `field`, or the caller's when it names none; never one
/// outside the caller's.
pub fn request_jurisdiction(
    agency: &Agency,
    field: &str,
    requested: &str,
) -> Result<Jurisdiction, Error> {
    if requested.trim().is_empty() {
        return Ok(agency.jurisdiction.clone());
    }
    let jurisdiction =
        Jurisdiction::parse(requested).map_err(|reason| Error::invalid(field, reason))?;
    if agency.oversees(&jurisdiction) {
        Ok(jurisdiction)
    } else {
        Err(Error::PermissionDenied(format!(
            "jurisdiction {jurisdiction} is outside that of {agency}"
        )))
    }
}

/// Rows per page of a list RPC when the request asks for none.
pub const DEFAULT_PAGE: u32 = 500;
/// The most rows per page a list RPC gives.
pub const MAX_PAGE: u32 = 5_000;

/// The page size of a list: `default` when none is asked for, never more than `most`.
pub fn page_size(requested: u32, default: u32, most: u32) -> u32 {
    match requested {
        0 => default,
        size => size.min(most),
    }
}

/// Parses an optional `as_of` date; empty means today.
pub fn request_date(field: &str, value: &str) -> Result<NaiveDate, Error> {
    if value.trim().is_empty() {
        Ok(chrono::Local::now().date_naive())
    } else {
        parse_date(value).map_err(|reason| Error::invalid(field, reason))
    }
}

/// A Unix-microsecond instant as a protobuf timestamp.
pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or_default(),
    }
}

fn date_text(date: Option<NaiveDate>) -> String {
    date.map(|d| d.to_string()).unwrap_or_default()
}

fn wire<T: Wire>(value: Option<T>) -> i32 {
    value.map(Wire::to_wire).unwrap_or_default()
}

/// A stored institution as pushed.
pub fn institution_message(stored: &Stored<Institution>) -> proto::Institution {
    let i = &stored.record;
    proto::Institution {
        record_id: stored.record_id.clone(),
        uscc: i.uscc.to_string(),
        name: i.name.clone(),
        jurisdiction: i.jurisdiction.to_string(),
        parent_uscc: i
            .parent
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        kind: i.kind.to_wire(),
        grade: i.grade.to_wire(),
        funding_form: wire(i.funding_form),
        status: i.status.to_wire(),
        approval_document: i.approval_document.clone(),
        established_on: date_text(i.established_on),
        status_since: date_text(i.status_since),
        political_legal: i.political_legal,
    }
}

/// A stored quota as pushed.
pub fn quota_message(stored: &Stored<Quota>) -> proto::Quota {
    let q = &stored.record;
    proto::Quota {
        record_id: stored.record_id.clone(),
        institution_uscc: q.institution.to_string(),
        category: q.category.to_wire(),
        approved_count: q.approved_count,
        effective_from: q.effective_from.to_string(),
        effective_to: date_text(q.effective_to),
        approval_document: q.approval_document.clone(),
    }
}

/// A stored leader-post approval as pushed.
pub fn leader_post_message(stored: &Stored<LeaderPost>) -> proto::LeaderPost {
    let p = &stored.record;
    proto::LeaderPost {
        record_id: stored.record_id.clone(),
        institution_uscc: p.institution.to_string(),
        level: p.level.to_wire(),
        position: p.position.to_wire(),
        approved_count: p.approved_count,
        effective_from: p.effective_from.to_string(),
        effective_to: date_text(p.effective_to),
        approval_document: p.approval_document.clone(),
    }
}

/// A stored plan as pushed.
pub fn plan_message(stored: &Stored<StaffingPlan>) -> proto::StaffingPlan {
    let p = &stored.record;
    proto::StaffingPlan {
        record_id: stored.record_id.clone(),
        institution_uscc: p.institution.to_string(),
        year: u32::try_from(p.year).unwrap_or_default(),
        category: p.category.to_wire(),
        channel: p.channel.to_wire(),
        approved_count: p.approved_count,
        approval_document: p.approval_document.clone(),
    }
}

/// A stored approval as pushed.
pub fn approval_message(stored: &Stored<HiringApproval>) -> proto::HiringApproval {
    let a = &stored.record;
    proto::HiringApproval {
        record_id: stored.record_id.clone(),
        approval_number: a.approval_number.clone(),
        institution_uscc: a.institution.to_string(),
        category: a.category.to_wire(),
        approved_entries: a.approved_entries,
        issued_on: a.issued_on.to_string(),
        valid_until: a.valid_until.to_string(),
    }
}

/// A stored personnel event as pushed.
pub fn event_message(stored: &Stored<PersonnelEvent>) -> proto::PersonnelEvent {
    let e = &stored.record;
    proto::PersonnelEvent {
        record_id: stored.record_id.clone(),
        event_type: e.event_type.to_wire(),
        resident_id: e.resident_id.to_string(),
        name: e.name.clone(),
        institution_uscc: e.institution.to_string(),
        category: wire(e.category),
        rank: wire(e.rank),
        effective_on: e.effective_on.to_string(),
        approval_number: e.approval_number.clone().unwrap_or_default(),
        channel: wire(e.channel),
        target_institution_uscc: e
            .target
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        corrects_record_id: e.corrects.clone().unwrap_or_default(),
    }
}

/// A stored appointment as pushed.
pub fn appointment_message(stored: &Stored<Appointment>) -> proto::Appointment {
    let a = &stored.record;
    proto::Appointment {
        record_id: stored.record_id.clone(),
        action: a.action.to_wire(),
        resident_id: a.resident_id.to_string(),
        name: a.name.clone(),
        institution_uscc: a.institution.to_string(),
        level: a.level.to_wire(),
        position: a.position.to_wire(),
        rank: a.rank.to_wire(),
        effective_on: a.effective_on.to_string(),
        appointment_document: a.document.clone(),
    }
}

/// A stored payroll line as pushed.
pub fn payroll_message(stored: &Stored<PayrollLine>) -> proto::PayrollLine {
    let l = &stored.record;
    proto::PayrollLine {
        record_id: stored.record_id.clone(),
        period: l.period.to_string(),
        institution_uscc: l.institution.to_string(),
        resident_id: l.resident_id.to_string(),
        name: l.name.clone(),
        gross_fen: l.gross_fen,
        reverses_record_id: l.reverses.clone().unwrap_or_default(),
        person_token: String::new(),
    }
}

/// A stored funding record as pushed.
pub fn funding_message(stored: &Stored<Funding>) -> proto::Funding {
    let f = &stored.record;
    proto::Funding {
        record_id: stored.record_id.clone(),
        institution_uscc: f.institution.to_string(),
        category: f.category.to_wire(),
        period: f.period.to_string(),
        funded_headcount: f.funded_headcount,
        amount_fen: f.amount_fen,
    }
}

/// A finding as the contract shows it.
pub fn finding_message(stored: &StoredFinding) -> proto::Finding {
    let f = &stored.finding;
    proto::Finding {
        code: f.key.code.to_wire(),
        institution_uscc: f.key.institution.clone(),
        subject: f.key.subject.clone(),
        period: f.key.period.clone(),
        jurisdiction: stored.jurisdiction.clone(),
        severity: f.severity.to_wire(),
        state: if stored.open {
            proto::FindingState::Open
        } else {
            proto::FindingState::Resolved
        } as i32,
        actual: f.actual,
        limit: f.limit,
        explanation_zh: f.explanation_zh.clone(),
        explanation_en: f.explanation_en.clone(),
        evidence: f
            .evidence
            .iter()
            .map(|e| proto::Evidence {
                kind: e.kind.to_owned(),
                id: e.id.clone(),
            })
            .collect(),
        raised_at: Some(timestamp(stored.raised_at)),
        updated_at: Some(timestamp(stored.updated_at)),
        resolved_at: stored.resolved_at.map(timestamp),
        version: u64::try_from(stored.version).unwrap_or_default(),
        alert_state: stored.alert.state.to_wire(),
        escalation_level: u32::try_from(stored.alert.escalation_level).unwrap_or_default(),
        acknowledge_by: stored.alert.acknowledge_by.map(timestamp),
        rectify_by: stored.alert.rectify_by.map(timestamp),
        personal_data_masked: false,
    }
}

/// A change to a finding as the contract shows it.
pub fn finding_change_message(change: &FindingChange) -> proto::FindingChange {
    let kind = match change.kind {
        ChangeKind::Raised => proto::FindingChangeType::Raised,
        ChangeKind::Updated => proto::FindingChangeType::Updated,
        ChangeKind::Resolved => proto::FindingChangeType::Resolved,
    };
    proto::FindingChange {
        change: kind as i32,
        finding: Some(finding_message(&change.finding)),
    }
}

/// A spell of a person's roll record.
pub fn spell_message(spell: &Spell) -> proto::PersonSpell {
    proto::PersonSpell {
        institution_uscc: spell.institution.to_string(),
        category: spell.category.to_wire(),
        rank: spell.rank.to_wire(),
        status: spell.status.to_wire(),
        valid_from: spell.valid_from.to_string(),
        valid_to: date_text(spell.valid_to),
        approval_number: spell.approval_number.clone().unwrap_or_default(),
        seconded_to_uscc: spell
            .seconded_to
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// What the follow-through services (ledger, cases, applications, campaigns) share.

pub(crate) fn date(field: &str, value: &str) -> Result<NaiveDate, Error> {
    parse_date(value).map_err(|reason| Error::invalid(field, reason))
}

/// An optional date filter (`YYYY-MM-DD`).
fn optional_date(field: &str, value: &str) -> Result<Option<NaiveDate>, Error> {
    let value = value.trim();
    (!value.is_empty()).then(|| date(field, value)).transpose()
}

/// The days `from..=to` a list names, as instants.
pub(crate) fn day_range(
    (from_field, from): (&str, &str),
    (to_field, to): (&str, &str),
) -> Result<TimeRange, Error> {
    let from = optional_date(from_field, from)?;
    let to = optional_date(to_field, to)?;
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(Error::invalid(to_field, format!("is before {from_field}")));
    }
    Ok(TimeRange::of_days(from, to))
}

/// The request's idempotency key, if it has one, with the hash of the request without it: the
/// message is taken with its key field already emptied.
pub(crate) fn request_key(
    key: String,
    message: &impl Message,
) -> Result<Option<RequestKey>, Error> {
    if key.trim().is_empty() {
        return Ok(None);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(
            "idempotency_key",
            format!("is longer than {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(Some(RequestKey {
        key,
        content_hash: hex::encode(Sha256::digest(message.encode_to_vec())),
    }))
}

/// Refuses to show a matter outside the caller's jurisdiction.
pub(crate) fn visible(agency: &Agency, jurisdiction: &str) -> Result<(), Error> {
    match Jurisdiction::parse(jurisdiction) {
        Ok(j) if agency.oversees(&j) => Ok(()),
        _ => Err(Error::PermissionDenied(format!(
            "{jurisdiction} is outside the jurisdiction of {agency}"
        ))),
    }
}

/// An optional enum filter: unspecified means any.
pub(crate) fn optional<T: Wire>(field: &str, raw: i32) -> Result<Option<T>, Error> {
    match raw {
        0 => Ok(None),
        raw => T::from_wire(raw)
            .map(Some)
            .ok_or_else(|| Error::invalid(field, format!("{raw} is not a known value"))),
    }
}

/// The next page's token of a page of `limit` rows by id: the last id (ids say nothing about
/// anyone), or empty on the last page.
pub(crate) fn next_token<T>(rows: &[T], limit: u32, id: impl Fn(&T) -> &str) -> String {
    if rows.len() == limit as usize {
        rows.last()
            .map(|row| id(row).to_owned())
            .unwrap_or_default()
    } else {
        String::new()
    }
}

/// The longest idempotency key.
const MAX_KEY_BYTES: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    fn payroll() -> proto::PayrollLine {
        proto::PayrollLine {
            record_id: "pay-1".into(),
            period: "2024-03".into(),
            institution_uscc: "91350100M000100Y43".into(),
            resident_id: "11010519491231002X".into(),
            name: "张三".into(),
            gross_fen: 812_345,
            reverses_record_id: String::new(),
            person_token: String::new(),
        }
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let message = proto::PayrollLine {
            record_id: String::new(),
            period: "2024-13".into(),
            resident_id: "110105194912310021".into(),
            gross_fen: -1,
            ..payroll()
        };
        let Err(Error::InvalidArgument(violations)) = message.to_submission() else {
            panic!("expected invalid argument");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["record_id", "period", "resident_id", "gross_fen"]);
    }

    #[test]
    fn enums_round_trip_through_the_contract() {
        for &rank in Rank::ALL {
            assert_eq!(Rank::from_wire(rank.to_wire()), Some(rank));
        }
        assert_eq!(
            proto::Rank::try_from(Rank::Clerk.to_wire()).unwrap(),
            proto::Rank::Clerk
        );
        assert_eq!(Rank::Clerk.to_wire(), 150);
        assert_eq!(QuotaCategory::from_wire(0), None);
        assert_eq!(QuotaCategory::from_wire(99), None);
    }

    #[test]
    fn the_same_content_hashes_the_same_and_other_content_differently() {
        let a = payroll().to_submission().unwrap();
        let b = payroll().to_submission().unwrap();
        let c = proto::PayrollLine {
            gross_fen: 1,
            ..payroll()
        }
        .to_submission()
        .unwrap();
        assert_eq!(a.content_hash, b.content_hash);
        assert_ne!(a.content_hash, c.content_hash);
    }
}
