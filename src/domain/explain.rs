//! The words of the findings: each rule's explanation in Chinese and in English, in one place.
//!
//! Both engines speak through these functions: the snapshot rules ([`super::rules`], the oracle)
//! and the decisions on aggregates ([`super::aggregates`]). They decide independently (that is
//! what makes one the other's check), but a finding must read the same whichever decided it.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use super::{
    Grade, InstitutionKind, LeaderLevel, LeaderPosition, Period, PersonStatus, QuotaCategory, Rank,
    ResidentId, Uscc,
};

/// An explanation: Chinese, English.
pub(super) type Text = (String, String);

/// OVER_QUOTA: `active` people in a category against `approved` (no quota in force when
/// `has_quota` is false).
pub(super) fn over_quota(
    uscc: &Uscc,
    category: QuotaCategory,
    (active, approved): (i64, i64),
    has_quota: bool,
) -> Text {
    let zh_category = category_zh(category);
    let over = active - approved;
    if has_quota {
        (
            format!(
                "机构 {uscc} {zh_category}核定 {approved} 名，实有 {active} 名，超编 {over} 名。"
            ),
            format!(
                "Institution {uscc} has {active} people in {category} against an approved quota of {approved} ({over} over)."
            ),
        )
    } else {
        (
            format!("机构 {uscc} 没有有效的{zh_category}核定，却有 {active} 人占用该类编制。"),
            format!(
                "Institution {uscc} has {active} people in {category} but no quota of that category in force."
            ),
        )
    }
}

/// QUOTA_FULL: `active` people against `approved` places, at or above the warning `threshold`
/// (a share of the quota).
pub(super) fn quota_full(
    uscc: &Uscc,
    category: QuotaCategory,
    (active, approved): (i64, i64),
    threshold: f64,
) -> Text {
    let zh_category = category_zh(category);
    if approved > 0 {
        let used = active as f64 * 100.0 / approved as f64;
        let line = threshold * 100.0;
        (
            format!(
                "机构 {uscc} {zh_category}核定 {approved} 名，实有 {active} 名，使用率 {used:.0}%，已达 {line:.0}% 预警线。"
            ),
            format!(
                "Institution {uscc} uses {active} of {approved} approved places in {category} ({used:.0}%), at or above the warning line of {line:.0}%."
            ),
        )
    } else {
        (
            format!("机构 {uscc} {zh_category}核定 0 名，实有 {active} 名，已无空编。"),
            format!(
                "Institution {uscc} has {active} people in {category} and no approved place (quota 0)."
            ),
        )
    }
}

/// OVER_LEADER_POSTS: `leaders` in a post against `posts` approved.
pub(super) fn over_leader_posts(
    uscc: &Uscc,
    (level, position): (LeaderLevel, LeaderPosition),
    (leaders, posts): (i64, i64),
) -> Text {
    let over = leaders - posts;
    let post_zh = format!("{}{}", level_zh(level), position_zh(position));
    (
        format!(
            "机构 {uscc} {post_zh}领导职数核定 {posts} 名，实配 {leaders} 名，超职数 {over} 名。"
        ),
        format!(
            "Institution {uscc} has {leaders} leaders in {level}/{position} posts against {posts} approved ({over} over)."
        ),
    )
}

/// LEADER_ABOVE_GRADE: a leader's `highest` rank above the `ceiling` the institution's grade
/// allows.
pub(super) fn leader_above_grade(
    who: &ResidentId,
    uscc: &Uscc,
    grade: Grade,
    (highest, ceiling): (Rank, Rank),
) -> Text {
    (
        format!(
            "{who} 在机构 {uscc}（{}）任{}，高于该规格允许的最高职级{}。",
            grade_zh(grade),
            rank_zh(highest),
            rank_zh(ceiling)
        ),
        format!(
            "{who} holds rank {highest} at institution {uscc}, whose grade {grade} allows at most {ceiling}."
        ),
    )
}

/// FUNDED_OVER_QUOTA: `funded` heads against the quota `approved` and `active` people on the
/// period's last day.
pub(super) fn funded_over_quota(
    (uscc, category, period): (&Uscc, QuotaCategory, Period),
    funded: i64,
    (approved, active): (i64, i64),
) -> Text {
    let zh_category = category_zh(category);
    let over = funded - approved.min(active);
    (
        format!(
            "机构 {uscc} {period} {zh_category}拨款 {funded} 人，核定 {approved} 名、实有 {active} 名，超拨 {over} 人。"
        ),
        format!(
            "Institution {uscc} was funded for {funded} people in {category} for {period} against a quota of {approved} and {active} on the roll ({over} over)."
        ),
    )
}

/// SELF_FUNDED_BUDGET_PAY: budget funding of `amount_fen` for `funded` heads to a self-funded
/// institution.
pub(super) fn self_funded_budget_pay(
    (uscc, category, period): (&Uscc, QuotaCategory, Period),
    amount_fen: i64,
    funded: i64,
) -> Text {
    let zh_category = category_zh(category);
    let paid = yuan(i128::from(amount_fen));
    (
        format!(
            "自收自支机构 {uscc} 在 {period} 获得{zh_category}财政拨款 {paid} 元（{funded} 人）。"
        ),
        format!(
            "Self-funded institution {uscc} received budget funding of {paid} yuan for {funded} people in {category} for {period}."
        ),
    )
}

/// What is wrong with a person's pay from one payer in a period.
pub(super) enum PayProblem<'a> {
    /// PAY_UNIT_MISMATCH: on these rolls, not the payer's, and not seconded to it.
    OtherRolls(&'a BTreeSet<&'a Uscc>),
    /// PAID_AFTER_EXIT: gone since `on`, for the reason of `status`.
    AfterExit { on: NaiveDate, status: PersonStatus },
    /// PAID_NOT_ON_ROLL: on no roll in the period.
    OnNoRoll,
}

/// PAID_NOT_ON_ROLL, PAID_AFTER_EXIT and PAY_UNIT_MISMATCH: `payer` paid `who` a total of
/// `paid_fen` for `period`.
pub(super) fn pay(
    payer: &Uscc,
    who: &ResidentId,
    period: Period,
    paid_fen: i128,
    problem: &PayProblem<'_>,
) -> Text {
    let paid = yuan(paid_fen);
    let opening_zh = format!("机构 {payer} 向 {who} 发放 {period} 工资 {paid} 元");
    let opening_en = format!("Institution {payer} paid {who} {paid} yuan for {period}");
    match problem {
        PayProblem::OtherRolls(rolls) => (
            format!(
                "{opening_zh}，但此人在编于 {}，且未借调至该机构。",
                join(rolls.iter().copied(), "、")
            ),
            format!(
                "{opening_en}, but they are on the roll of {} and not seconded to it.",
                join(rolls.iter().copied(), ", ")
            ),
        ),
        PayProblem::AfterExit { on, status } => {
            let (zh, en) = exit_zh_en(*status);
            (
                format!("{opening_zh}，但此人已于 {on} {zh}。"),
                format!("{opening_en}, but they had {en} on {on}."),
            )
        }
        PayProblem::OnNoRoll => (
            format!("{opening_zh}，但此人该期间不在任何机构在编。"),
            format!("{opening_en}, but they were on no roll in that period."),
        ),
    }
}

/// DOUBLE_PAY: `who` paid for `period` by every one of `payers`.
pub(super) fn double_pay<'a>(
    who: &ResidentId,
    period: Period,
    payers: impl Iterator<Item = &'a Uscc> + Clone,
) -> Text {
    let n = payers.clone().count();
    (
        format!(
            "{who} 在 {period} 从 {n} 个机构领取工资：{}。",
            join(payers.clone(), "、")
        ),
        format!(
            "{who} was paid for {period} by {n} institutions: {}.",
            join(payers, ", ")
        ),
    )
}

/// OVER_PLAN: `taken` entries in a year against a plan of `plan`.
pub(super) fn over_plan(
    (uscc, category, year): (&Uscc, QuotaCategory, i32),
    (taken, plan): (i64, i64),
) -> Text {
    let over = taken - plan;
    (
        format!(
            "机构 {uscc} {year} 年{}用编计划 {plan} 名，实际进人 {taken} 名，超计划 {over} 名。",
            category_zh(category)
        ),
        format!(
            "Institution {uscc} took {taken} entries in {category} in {year} against a staffing-use plan of {plan} ({over} over)."
        ),
    )
}

/// RESERVE_SHORTFALL: the other channels of a year's plan took places its policy-placement
/// reserve still needs; says by how much.
pub(super) fn reserve_shortfall(
    (uscc, category, year): (&Uscc, QuotaCategory, i32),
    reserve: &super::findings::Reserve,
) -> Text {
    let super::findings::Reserve {
        reserve: kept,
        placed,
        others_plan,
        others,
    } = *reserve;
    let (needed, left, eaten) = (reserve.needed(), reserve.left(), reserve.eaten());
    (
        format!(
            "机构 {uscc} {year} 年{}用编计划为政策性安置预留 {kept} 名（已安置 {placed} 名，尚需 {needed} 名）；其他渠道计划 {others_plan} 名，实际进人 {others} 名，挤占预留 {eaten} 名，剩余空额 {left} 名不足安置所需。",
            category_zh(category)
        ),
        format!(
            "Institution {uscc}'s {year} staffing-use plan for {category} keeps {kept} places for policy placement ({placed} placed, {needed} still needed); other channels took {others} entries against their {others_plan}, eating {eaten} of the reserve: {left} places left for {needed} placements."
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// The words the explanations are made of.

pub(super) fn exit_zh_en(status: PersonStatus) -> (&'static str, &'static str) {
    match status {
        PersonStatus::Retired => ("退休", "retired"),
        PersonStatus::Deceased => ("死亡", "died"),
        _ => ("离职", "left"),
    }
}

pub(super) fn join<'a>(usccs: impl Iterator<Item = &'a Uscc>, separator: &str) -> String {
    usccs.map(Uscc::as_str).collect::<Vec<_>>().join(separator)
}

/// An amount in fen written in yuan, e.g. `1234.50`.
/// Fen as yuan; an `i128` so that a sum of amounts cannot overflow.
pub(super) fn yuan(fen: i128) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    format!("{sign}{}.{:02}", fen / 100, fen % 100)
}

pub(super) fn category_zh(category: QuotaCategory) -> &'static str {
    match category {
        QuotaCategory::Administrative => "行政编制",
        QuotaCategory::PoliticalLegal => "政法专项编制",
        QuotaCategory::PublicInstitution => "事业编制",
        QuotaCategory::CivilServiceManaged => "参公事业编制",
        QuotaCategory::ServiceWorker => "工勤编制",
    }
}

pub(super) fn kind_zh(kind: InstitutionKind) -> &'static str {
    match kind {
        InstitutionKind::Organ => "机关",
        InstitutionKind::PublicInstitution => "事业单位",
    }
}

pub(super) fn level_zh(level: LeaderLevel) -> &'static str {
    match level {
        LeaderLevel::Bureau => "厅局级",
        LeaderLevel::Division => "县处级",
        LeaderLevel::Section => "乡科级",
    }
}

pub(super) fn position_zh(position: LeaderPosition) -> &'static str {
    match position {
        LeaderPosition::Principal => "正职",
        LeaderPosition::Deputy => "副职",
    }
}

pub(super) fn grade_zh(grade: Grade) -> &'static str {
    match grade {
        Grade::BureauPrincipal => "正厅",
        Grade::BureauDeputy => "副厅",
        Grade::DivisionPrincipal => "正处",
        Grade::DivisionDeputy => "副处",
        Grade::SectionPrincipal => "正科",
        Grade::SectionDeputy => "副科",
        Grade::UnitPrincipal => "正股",
        Grade::UnitDeputy => "副股",
        Grade::Ungraded => "未定级",
    }
}

pub(super) fn rank_zh(rank: Rank) -> &'static str {
    match rank {
        Rank::BureauPrincipal => "厅局级正职",
        Rank::BureauDeputy => "厅局级副职",
        Rank::DivisionPrincipal => "县处级正职",
        Rank::DivisionDeputy => "县处级副职",
        Rank::SectionPrincipal => "乡科级正职",
        Rank::SectionDeputy => "乡科级副职",
        Rank::Clerk => "科员",
        Rank::Officer => "办事员",
        Rank::Unranked => "未定级",
    }
}
