//! Personal data on a need-to-know basis: what of a person a reader sees whole, and the masks for
//! the rest. Which agency kind sees what is decided in one table, `api::policy::PERSONAL_DATA`;
//! `api::personal` applies these masks to the messages.

use super::ResidentId;

/// What of a person's data a reader sees whole; the rest it sees masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visibility {
    /// Resident ID numbers (they also hold the birth date).
    pub resident_ids: bool,
    /// Names.
    pub names: bool,
    /// What a person is paid: payroll amounts, and the sums of them in explanations.
    pub pay: bool,
}

impl Visibility {
    /// Everything whole.
    pub const WHOLE: Visibility = Visibility {
        resident_ids: true,
        names: true,
        pay: true,
    };

    /// Nothing whole: the sight of a reader the table does not name.
    pub const MASKED: Visibility = Visibility {
        resident_ids: false,
        names: false,
        pay: false,
    };

    /// Whether the reader sees all of a person's data.
    pub fn is_whole(self) -> bool {
        self == Visibility::WHOLE
    }
}

/// A resident ID with the birth date and sequence hidden (`110105********002X`: the division and
/// the last four kept). Text that is not a resident ID is hidden whole.
pub fn mask_resident_id(text: &str) -> String {
    match ResidentId::parse(text) {
        Ok(id) => id.masked(),
        Err(_) => "*".repeat(text.chars().count()),
    }
}

/// A name with all but its first character hidden (`王*`, `欧***`); a one-character name is
/// hidden whole.
pub fn mask_name(name: &str) -> String {
    let name = name.trim();
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(_)) => std::iter::once(first)
            .chain(name.chars().skip(1).map(|_| '*'))
            .collect(),
        (Some(_), None) => "*".into(),
        (None, _) => String::new(),
    }
}

/// Text with every resident ID in it masked: how a reader that does not see resident IDs gets any
/// text (a finding's explanation, which names people whole, a sender's record id, a ledger text).
pub fn mask_resident_ids_in(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let is_id_char = |c: char| c.is_ascii_digit() || c == 'X' || c == 'x';
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !is_id_char(chars[i]) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_id_char(chars[i]) {
            i += 1;
        }
        let run: String = chars[start..i].iter().collect();
        // A resident ID stands alone: eighteen characters, not part of a longer number.
        match ResidentId::parse(&run) {
            Ok(id) if run.len() == 18 => out.push_str(&id.masked()),
            _ => out.push_str(&run),
        }
    }
    out
}

/// Text with every amount of money in it hidden: a number with two decimals followed by ` 元` or
/// ` yuan`, as the rules write what a person was paid (`发放 2024-03 工资 8123.45 元`).
pub fn mask_amounts_in(text: &str) -> String {
    const HIDDEN: &str = "****";
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let mut end = i;
        if chars[end] == '-' {
            end += 1;
        }
        let digits_from = end;
        while end < chars.len() && chars[end].is_ascii_digit() {
            end += 1;
        }
        let is_amount = end > digits_from
            && (start == 0 || !chars[start - 1].is_ascii_alphanumeric())
            && chars.get(end) == Some(&'.')
            && chars.get(end + 1).is_some_and(char::is_ascii_digit)
            && chars.get(end + 2).is_some_and(char::is_ascii_digit)
            && {
                let rest: String = chars[(end + 3).min(chars.len())..].iter().take(5).collect();
                rest.starts_with(" 元") || rest.starts_with(" yuan")
            };
        if is_amount {
            out.push_str(HIDDEN);
            i = end + 3;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resident_id_keeps_its_division_and_last_four() {
        assert_eq!(mask_resident_id("11010519491231002X"), "110105********002X");
        assert_eq!(mask_resident_id("11010519491231002x"), "110105********002X");
        // Not an ID: nothing of it is shown.
        assert_eq!(mask_resident_id("110105194912310021"), "******************");
        assert_eq!(mask_resident_id("CAT"), "***");
    }

    #[test]
    fn a_name_keeps_its_first_character() {
        assert_eq!(mask_name("王五"), "王*");
        assert_eq!(mask_name("欧阳娜娜"), "欧***");
        assert_eq!(mask_name("王"), "*");
        assert_eq!(mask_name(" "), "");
        assert_eq!(mask_name("Li Lei"), "L*****");
    }

    #[test]
    fn ids_in_text_are_masked_and_other_numbers_kept() {
        let text = "record 140100/finance/pay-11010519491231002X of 2024-03, 91350100M000100Y43, 12345678901234567890";
        assert_eq!(
            mask_resident_ids_in(text),
            "record 140100/finance/pay-110105********002X of 2024-03, 91350100M000100Y43, 12345678901234567890"
        );
        // An ID that fails its check character is left alone: it names nobody.
        assert_eq!(
            mask_resident_ids_in("110105194912310021"),
            "110105194912310021"
        );
        assert_eq!(
            mask_resident_ids_in("已于 2024-05-31 退休"),
            "已于 2024-05-31 退休"
        );
    }

    #[test]
    fn amounts_of_pay_are_hidden_and_counts_and_dates_kept() {
        assert_eq!(
            mask_amounts_in(
                "机构 X 向 110105********002X 发放 2024-03 工资 8123.45 元，但此人已于 2024-05-31 退休。"
            ),
            "机构 X 向 110105********002X 发放 2024-03 工资 **** 元，但此人已于 2024-05-31 退休。"
        );
        assert_eq!(
            mask_amounts_in("Institution X paid 110105********002X 8123.45 yuan for 2024-03"),
            "Institution X paid 110105********002X **** yuan for 2024-03"
        );
        assert_eq!(mask_amounts_in("-12.00 yuan"), "**** yuan");
        assert_eq!(
            mask_amounts_in("quota 3, on the roll 4.50 people, version 1.2"),
            "quota 3, on the roll 4.50 people, version 1.2"
        );
    }

    #[test]
    fn the_whole_sight_is_whole_and_any_mask_is_not() {
        assert!(Visibility::WHOLE.is_whole());
        assert!(!Visibility::MASKED.is_whole());
        assert!(
            !Visibility {
                pay: false,
                ..Visibility::WHOLE
            }
            .is_whole()
        );
    }
}
