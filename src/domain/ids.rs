//! Identifiers of the domain and their check rules: resident ID numbers (GB 11643), unified social
//! credit codes (GB 32100), approval document numbers, calendar dates and pay periods.

use std::fmt;

use chrono::{Datelike, NaiveDate};

/// A resident ID number (公民身份号码): 18 characters, a real birth date, a valid check character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResidentId(String);

const RESIDENT_ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const RESIDENT_ID_CHECK: &[u8; 11] = b"10X98765432";

impl ResidentId {
    /// Checks and normalises (upper-case `X`) a resident ID number.
    pub fn parse(raw: &str) -> Result<ResidentId, String> {
        let id = raw.trim().to_ascii_uppercase();
        let bytes = id.as_bytes();
        if bytes.len() != 18 {
            return Err(format!(
                "must have 18 characters, has {}",
                id.chars().count()
            ));
        }
        if !bytes[..17].iter().all(u8::is_ascii_digit) {
            return Err("the first 17 characters must be digits".into());
        }
        let birth = &id[6..14];
        NaiveDate::parse_from_str(birth, "%Y%m%d")
            .map_err(|_| format!("digits 7 to 14 (`{birth}`) are not a real birth date"))?;
        let sum: u32 = bytes[..17]
            .iter()
            .zip(RESIDENT_ID_WEIGHTS)
            .map(|(digit, weight)| u32::from(digit - b'0') * weight)
            .sum();
        let expected = RESIDENT_ID_CHECK[(sum % 11) as usize];
        if bytes[17] != expected {
            return Err(format!("check character should be `{}`", expected as char));
        }
        Ok(ResidentId(id))
    }

    /// The number in full.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with the birth date and sequence hidden, e.g. `110105********002X`.
    pub fn masked(&self) -> String {
        format!("{}********{}", &self.0[..6], &self.0[14..])
    }

    /// Date of birth encoded in digits 7 to 14.
    pub fn birth_date(&self) -> NaiveDate {
        NaiveDate::parse_from_str(&self.0[6..14], "%Y%m%d").expect("checked by parse")
    }
}

impl fmt::Display for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A unified social credit code (统一社会信用代码) of a unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uscc(String);

const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

impl Uscc {
    /// Checks and normalises (upper case) a unified social credit code.
    pub fn parse(raw: &str) -> Result<Uscc, String> {
        let code = raw.trim().to_ascii_uppercase();
        let bytes = code.as_bytes();
        if bytes.len() != 18 {
            return Err(format!(
                "must have 18 characters, has {}",
                code.chars().count()
            ));
        }
        let mut values = [0u32; 18];
        for (i, byte) in bytes.iter().enumerate() {
            let position = USCC_ALPHABET
                .iter()
                .position(|c| c == byte)
                .ok_or_else(|| {
                    format!(
                        "character {} (`{}`) is not in the code's alphabet (no I, O, S, V, Z)",
                        i + 1,
                        *byte as char
                    )
                })?;
            values[i] = u32::try_from(position).expect("alphabet has 31 characters");
        }
        if !bytes[2..8].iter().all(u8::is_ascii_digit) {
            return Err("characters 3 to 8 must be an administrative division code".into());
        }
        let sum: u32 = values[..17]
            .iter()
            .zip(USCC_WEIGHTS)
            .map(|(v, w)| v * w)
            .sum();
        let expected = USCC_ALPHABET[((31 - sum % 31) % 31) as usize];
        if bytes[17] != expected {
            return Err(format!("check character should be `{}`", expected as char));
        }
        Ok(Uscc(code))
    }

    /// The code as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The administrative division code of the registering authority (characters 3 to 8); it places a
    /// unit that the registry does not know yet.
    pub fn division_code(&self) -> &str {
        &self.0[2..8]
    }

    /// Whether the staffing office registers units of this kind: `11` party and government organs,
    /// `12` public institutions.
    pub fn registered_by_staffing_office(&self) -> bool {
        self.0.starts_with("11") || self.0.starts_with("12")
    }

    /// Builds a valid code from its first 17 characters by appending the check character. Used by the
    /// data generator and tests.
    pub fn with_check_character(first17: &str) -> Result<Uscc, String> {
        let mut sum = 0;
        for (i, byte) in first17.bytes().enumerate().take(17) {
            let value = USCC_ALPHABET
                .iter()
                .position(|c| *c == byte)
                .ok_or_else(|| format!("`{}` is not in the code's alphabet", byte as char))?;
            sum += u32::try_from(value).expect("alphabet has 31 characters") * USCC_WEIGHTS[i];
        }
        let check = USCC_ALPHABET[((31 - sum % 31) % 31) as usize] as char;
        Uscc::parse(&format!("{first17}{check}"))
    }
}

impl fmt::Display for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Computes the check character of a resident ID from its first 17 digits. Used by the data
/// generator and tests.
pub fn resident_id_with_check(first17: &str) -> Result<ResidentId, String> {
    let sum: u32 = first17
        .bytes()
        .zip(RESIDENT_ID_WEIGHTS)
        .map(|(digit, weight)| u32::from(digit.wrapping_sub(b'0')) * weight)
        .sum();
    let check = RESIDENT_ID_CHECK[(sum % 11) as usize] as char;
    ResidentId::parse(&format!("{first17}{check}"))
}

/// Normalises an approval document number (文号) so that the bracket styles people type compare
/// equal: `并政办发[2014]57号`, `并政办发(2014)57号` and `并政办发〔2014〕57号` are one document.
pub fn normalize_document_number(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '[' | '(' | '（' | '【' | '［' | '〔' => '〔',
            ']' | ')' | '）' | '】' | '］' | '〕' => '〕',
            other => other,
        })
        .collect()
}

/// Parses a calendar date written `YYYY-MM-DD`: four, two and two digits. Read by hand, not by
/// `chrono`'s format parser: every date a check reads back is parsed, and the format parser was
/// a fiftieth of a CheckHire's own work.
pub fn parse_date(raw: &str) -> Result<NaiveDate, String> {
    let unshaped = || format!("`{raw}` is not a date written YYYY-MM-DD");
    let trimmed = raw.trim().as_bytes();
    if trimmed.len() != 10 || trimmed[4] != b'-' || trimmed[7] != b'-' {
        return Err(unshaped());
    }
    let digits = |range: std::ops::Range<usize>| {
        trimmed[range].iter().try_fold(0u16, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u16::from(b - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return Err(unshaped());
    };
    NaiveDate::from_ymd_opt(year.into(), month.into(), day.into())
        .ok_or_else(|| format!("`{raw}` is not a real date written YYYY-MM-DD"))
}

/// A pay period: one calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    year: i32,
    month: u32,
}

impl Period {
    /// Parses a period written `YYYY-MM`.
    pub fn parse(raw: &str) -> Result<Period, String> {
        let bad = || format!("`{raw}` is not a period written YYYY-MM");
        let (year, month) = raw.trim().split_once('-').ok_or_else(bad)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let month: u32 = month.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || year < 1900 {
            return Err(bad());
        }
        Ok(Period { year, month })
    }

    /// The period that contains `date`.
    pub fn containing(date: NaiveDate) -> Period {
        Period {
            year: date.year(),
            month: date.month(),
        }
    }

    /// First day of the month.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid by construction")
    }

    /// Last day of the month.
    pub fn last_day(self) -> NaiveDate {
        self.next()
            .first_day()
            .pred_opt()
            .expect("not the first day of time")
    }

    /// The following month.
    pub fn next(self) -> Period {
        if self.month == 12 {
            Period {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Period {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Calendar year of the period.
    pub fn year(self) -> i32 {
        self.year
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_documented_resident_id_passes_and_masks() {
        let id = ResidentId::parse("11010519491231002x").unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
        assert_eq!(id.masked(), "110105********002X");
        assert_eq!(
            id.birth_date(),
            NaiveDate::from_ymd_opt(1949, 12, 31).unwrap()
        );
    }

    #[test]
    fn bad_resident_ids_say_why() {
        assert!(
            ResidentId::parse("110105194912310021")
                .unwrap_err()
                .contains("check character")
        );
        assert!(
            ResidentId::parse("11010519491331002X")
                .unwrap_err()
                .contains("birth date")
        );
        assert!(
            ResidentId::parse("110105194902300027")
                .unwrap_err()
                .contains("birth date")
        );
        assert!(
            ResidentId::parse("1101051949123100")
                .unwrap_err()
                .contains("18 characters")
        );
        assert!(
            ResidentId::parse("11010519491231A02X")
                .unwrap_err()
                .contains("digits")
        );
    }

    #[test]
    fn the_documented_uscc_passes() {
        let code = Uscc::parse("91350100M000100Y43").unwrap();
        assert_eq!(code.division_code(), "350100");
        assert!(!code.registered_by_staffing_office());
        assert!(
            Uscc::parse("91350100M000100Y44")
                .unwrap_err()
                .contains("check character")
        );
        assert!(
            Uscc::parse("91350100M0001O0Y43")
                .unwrap_err()
                .contains("alphabet")
        );
        assert!(Uscc::parse("9135").unwrap_err().contains("18 characters"));
    }

    #[test]
    fn document_numbers_compare_across_bracket_styles() {
        let canonical = normalize_document_number("并政办发〔2014〕57号");
        assert_eq!(normalize_document_number("并政办发[2014]57号"), canonical);
        assert_eq!(normalize_document_number("并政办发(2014)57号"), canonical);
        assert_eq!(
            normalize_document_number("并政办发（2014） 57号"),
            canonical
        );
        assert_ne!(normalize_document_number("并政办发〔2014〕58号"), canonical);
    }

    #[test]
    fn periods_and_dates_parse_strictly() {
        let period = Period::parse("2024-02").unwrap();
        assert_eq!(
            period.last_day(),
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        );
        assert_eq!(
            Period::parse("2024-12").unwrap().next().to_string(),
            "2025-01"
        );
        assert!(Period::parse("2024-13").is_err());
        assert!(Period::parse("2024-1").is_err());
        assert!(Period::parse("202401").is_err());
        assert!(parse_date("2024-02-30").is_err());
        assert!(parse_date("2024-2-3").is_err());
        assert!(parse_date("+2024-1-05").is_err());
        assert!(parse_date("2024/01/05").is_err());
        assert!(parse_date("2024-0a-05").is_err());
        assert!(parse_date("2023-00-10").is_err());
        assert!(parse_date("十二月-01-05").is_err());
        assert!(parse_date("2024-01").is_err());
        assert!(parse_date("").is_err());
        assert_eq!(parse_date(" 0001-01-01 ").unwrap().year(), 1);
        assert_eq!(parse_date("2024-12-31").unwrap().ordinal(), 366);
        assert_eq!(parse_date("2024-02-29").unwrap().day(), 29);
    }

    proptest! {
        #[test]
        fn dates_parse_as_chrono_reads_four_two_and_two_digits(raw in "[0-9]{4}-[0-9]{2}-[0-9]{2}") {
            prop_assert_eq!(parse_date(&raw).ok(), NaiveDate::parse_from_str(&raw, "%Y-%m-%d").ok());
        }

        #[test]
        fn generated_resident_ids_validate_and_any_other_check_fails(
            area in 110_000u32..660_000, days in 0i64..40_000, seq in 0u32..1000, other in 0usize..11
        ) {
            let birth = NaiveDate::from_ymd_opt(1920, 1, 1).unwrap() + chrono::Days::new(days as u64);
            let first17 = format!("{area:06}{}{seq:03}", birth.format("%Y%m%d"));
            let id = resident_id_with_check(&first17).unwrap();
            prop_assert_eq!(id.birth_date(), birth);
            let wrong = RESIDENT_ID_CHECK[other] as char;
            let candidate = format!("{first17}{wrong}");
            prop_assert_eq!(ResidentId::parse(&candidate).is_ok(), candidate == id.as_str());
        }

        #[test]
        fn generated_usccs_validate_and_one_changed_character_fails(
            body in "[0-9A-HJ-NP-RTUW-Y]{9}", division in 110_000u32..660_000, at in 0usize..17, shift in 1u8..31
        ) {
            let first17 = format!("12{division:06}{body}");
            let code = Uscc::with_check_character(&first17).unwrap();
            prop_assert!(code.registered_by_staffing_office());
            // Changing one character changes the weighted sum by a non-multiple of 31 (31 is prime and
            // every weight is below it), so the check character catches it.
            let mut bytes = code.as_str().as_bytes().to_vec();
            let value = USCC_ALPHABET.iter().position(|c| *c == bytes[at]).unwrap();
            bytes[at] = USCC_ALPHABET[(value + shift as usize) % 31];
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(Uscc::parse(&changed).is_err());
        }
    }
}
