//! Who is calling: an agency of a kind, in a jurisdiction. The hub learns both from the client
//! certificate (SAN URI `quotahub://agency/{jurisdiction}/{kind}`), never from a message.

use std::fmt;

/// Kinds of agency that take part in staffing supervision (see `docs/DOMAIN.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AgencyKind {
    /// 编办: institutions, quotas, leader posts, plans, approvals.
    StaffingOffice,
    /// 组织部: appointments of leaders.
    Organization,
    /// 人社: personnel events.
    Hr,
    /// 财政: payroll and funding.
    Finance,
    /// 纪检监察: reads and subscribes.
    Discipline,
    /// 审计: reads and subscribes.
    Audit,
}

impl AgencyKind {
    /// Every kind, in the order of the contract's enum.
    pub const ALL: [AgencyKind; 6] = [
        AgencyKind::StaffingOffice,
        AgencyKind::Organization,
        AgencyKind::Hr,
        AgencyKind::Finance,
        AgencyKind::Discipline,
        AgencyKind::Audit,
    ];

    /// The kind's name in certificate URIs and file names.
    pub fn slug(self) -> &'static str {
        match self {
            AgencyKind::StaffingOffice => "staffing-office",
            AgencyKind::Organization => "organization",
            AgencyKind::Hr => "hr",
            AgencyKind::Finance => "finance",
            AgencyKind::Discipline => "discipline",
            AgencyKind::Audit => "audit",
        }
    }

    /// Reads a kind from its slug.
    pub fn from_slug(slug: &str) -> Option<AgencyKind> {
        AgencyKind::ALL.into_iter().find(|kind| kind.slug() == slug)
    }
}

impl AgencyKind {
    /// The kind's name with its indefinite article, as messages put it: `an audit`, `a finance`.
    pub fn with_article(self) -> String {
        format!("{} {}", indefinite_article(self.slug()), self.slug())
    }
}

/// The indefinite article of `word` as it is read: `an` before a vowel sound (`an audit`, and
/// `an hr`, an initialism read letter by letter: "aitch-ar"), `a` otherwise.
pub fn indefinite_article(word: &str) -> &'static str {
    let lower = word.to_ascii_lowercase();
    let is_vowel = |c: char| matches!(c, 'a' | 'e' | 'i' | 'o' | 'u');
    let Some(first) = lower.chars().next() else {
        return "a";
    };
    // A word without vowels is an initialism; these letters' names start with a vowel sound.
    let initialism = lower
        .chars()
        .all(|c| c.is_ascii_alphabetic() && !is_vowel(c));
    if is_vowel(first)
        || (initialism && matches!(first, 'f' | 'h' | 'l' | 'm' | 'n' | 'r' | 's' | 'x'))
    {
        "an"
    } else {
        "a"
    }
}

impl fmt::Display for AgencyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// An administrative division code (GB/T 2260): `140000` a province, `140100` a city, `140105` a
/// district. Supervision is "managed level by level": a code sees itself and the codes below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jurisdiction(String);

impl Jurisdiction {
    /// Parses a six-digit division code.
    pub fn parse(code: &str) -> Result<Jurisdiction, String> {
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`{code}` is not a six-digit administrative division code"
            ));
        }
        if &code[..2] == "00" {
            return Err(format!("`{code}` names no province"));
        }
        Ok(Jurisdiction(code.to_owned()))
    }

    /// The code as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The significant prefix: two digits for a province, four for a city, six for a county.
    pub fn prefix(&self) -> &str {
        if self.0.ends_with("0000") {
            &self.0[..2]
        } else if self.0.ends_with("00") {
            &self.0[..4]
        } else {
            &self.0
        }
    }

    /// Whether `other` is this division or lies below it.
    pub fn contains(&self, other: &Jurisdiction) -> bool {
        other.0.starts_with(self.prefix())
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Agency {
    /// Where the agency's authority lies.
    pub jurisdiction: Jurisdiction,
    /// What the agency does.
    pub kind: AgencyKind,
}

/// The URI scheme and authority of agency identities in certificates.
pub const AGENCY_URI_PREFIX: &str = "quotahub://agency/";

impl Agency {
    /// Builds an agency.
    pub fn new(jurisdiction: Jurisdiction, kind: AgencyKind) -> Agency {
        Agency { jurisdiction, kind }
    }

    /// The stable id the hub keys an agency's records by, e.g. `140100/finance`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.jurisdiction, self.kind)
    }

    /// The SAN URI that names this agency in its certificate.
    pub fn uri(&self) -> String {
        format!("{AGENCY_URI_PREFIX}{}", self.id())
    }

    /// Reads an agency from a SAN URI such as `quotahub://agency/140100/finance`.
    pub fn from_uri(uri: &str) -> Result<Agency, String> {
        let rest = uri
            .strip_prefix(AGENCY_URI_PREFIX)
            .ok_or_else(|| format!("`{uri}` is not a quotahub agency URI"))?;
        let (code, slug) = rest
            .split_once('/')
            .ok_or_else(|| format!("`{uri}` lacks the agency kind"))?;
        let kind =
            AgencyKind::from_slug(slug).ok_or_else(|| format!("`{slug}` is not an agency kind"))?;
        Ok(Agency::new(Jurisdiction::parse(code)?, kind))
    }

    /// Whether this agency may see or act on records of `jurisdiction`.
    pub fn oversees(&self, jurisdiction: &Jurisdiction) -> bool {
        self.jurisdiction.contains(jurisdiction)
    }
}

impl fmt::Display for Agency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_article_is_made_from_the_word() {
        let named: Vec<String> = AgencyKind::ALL.iter().map(|k| k.with_article()).collect();
        assert_eq!(
            named,
            [
                "a staffing-office",
                "an organization",
                "an hr",
                "a finance",
                "a discipline",
                "an audit"
            ]
        );
        assert_eq!(indefinite_article("severity"), "a");
        assert_eq!(indefinite_article("alert_state"), "an");
        assert_eq!(indefinite_article(""), "a");
    }

    fn code(s: &str) -> Jurisdiction {
        Jurisdiction::parse(s).unwrap()
    }

    #[test]
    fn a_city_sees_its_districts_but_a_district_sees_only_itself() {
        assert!(code("140100").contains(&code("140105")));
        assert!(code("140100").contains(&code("140100")));
        assert!(!code("140105").contains(&code("140100")));
        assert!(!code("140105").contains(&code("140106")));
        assert!(!code("140100").contains(&code("140200")));
        assert!(code("140000").contains(&code("140200")));
        assert!(!code("140000").contains(&code("150100")));
    }

    #[test]
    fn agency_uri_round_trips_and_rejects_bad_ones() {
        let agency = Agency::from_uri("quotahub://agency/140100/finance").unwrap();
        assert_eq!(agency.kind, AgencyKind::Finance);
        assert_eq!(agency.uri(), "quotahub://agency/140100/finance");
        assert!(Agency::from_uri("quotahub://agency/140100/police").is_err());
        assert!(Agency::from_uri("quotahub://agency/1401/hr").is_err());
        assert!(Agency::from_uri("https://agency/140100/hr").is_err());
        for kind in AgencyKind::ALL {
            assert_eq!(AgencyKind::from_slug(kind.slug()), Some(kind));
        }
    }
}
