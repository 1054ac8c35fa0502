//! Names: administrative divisions, institutions and people. Shanxi (14) and Taiyuan (1401) get
//! their real names and the abbreviations their documents use (晋, 并, ...); other roots get
//! plausible placeholders.

use crate::domain::Jurisdiction;

/// Level of an administrative division.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Level {
    /// 省.
    Province,
    /// 地级市.
    City,
    /// 区、县、县级市.
    District,
}

/// What a department does, which decides what public institutions it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    General,
    Education,
    Health,
    Culture,
}

/// One administrative division and how many institutions it gets.
#[derive(Debug, Clone)]
pub(super) struct Jur {
    /// GB/T 2260 code.
    pub code: String,
    /// Full name, used as the prefix of institution names (`太原市小店区`).
    pub name: String,
    pub level: Level,
    /// Abbreviation at the head of document numbers (`并`, `并小店`).
    pub prefix: String,
    /// Institutions to create in it.
    pub budget: usize,
}

const SHANXI_CITIES: [(&str, &str); 11] = [
    ("太原市", "并"),
    ("大同市", "同"),
    ("阳泉市", "泉"),
    ("长治市", "长"),
    ("晋城市", "晋城"),
    ("朔州市", "朔"),
    ("晋中市", "晋中"),
    ("运城市", "运"),
    ("忻州市", "忻"),
    ("临汾市", "临"),
    ("吕梁市", "吕"),
];

const TAIYUAN_DISTRICTS: [(&str, &str); 10] = [
    ("140105", "小店区"),
    ("140106", "迎泽区"),
    ("140107", "杏花岭区"),
    ("140108", "尖草坪区"),
    ("140109", "万柏林区"),
    ("140110", "晋源区"),
    ("140121", "清徐县"),
    ("140122", "阳曲县"),
    ("140123", "娄烦县"),
    ("140181", "古交市"),
];

const GENERIC_DISTRICTS: [(&str, &str); 8] = [
    ("02", "城区"),
    ("03", "郊区"),
    ("21", "东县"),
    ("22", "西县"),
    ("23", "南县"),
    ("24", "北县"),
    ("25", "中县"),
    ("81", "新市"),
];

/// Below this many institutions per district, fewer districts are used (a small test city has
/// one or two districts rather than ten nearly empty ones).
const MIN_DISTRICT_BUDGET: usize = 12;

/// The divisions under `root` with their share of `total` institutions: a province keeps a tenth
/// at its own level and splits the rest over its cities; a city keeps 40% and splits the rest over
/// its districts.
pub(super) fn jurisdictions(root: &Jurisdiction, total: usize) -> Vec<Jur> {
    let code = root.as_str();
    let total = total.max(3);
    let mut out = Vec::new();
    if code.ends_with("0000") {
        let province = &code[..2];
        let (name, prefix) = if province == "14" {
            ("山西省".to_owned(), "晋".to_owned())
        } else {
            (format!("{province}省"), format!("{province}省"))
        };
        let own = (total / 10).max(3);
        out.push(Jur {
            code: code.to_owned(),
            name: name.clone(),
            level: Level::Province,
            prefix,
            budget: own,
        });
        let cities = SHANXI_CITIES.len();
        let per_city = (total - own.min(total)) / cities;
        for (k, (city_name, abbr)) in SHANXI_CITIES.iter().enumerate() {
            let city_code = format!("{province}{:02}00", k + 1);
            let (city_name, abbr) = if province == "14" {
                ((*city_name).to_owned(), (*abbr).to_owned())
            } else {
                let n = zh_number(k as u32 + 1);
                (format!("{name}第{n}市"), format!("{province}{n}"))
            };
            city(&mut out, &city_code, &city_name, &abbr, per_city.max(3));
        }
    } else if code.ends_with("00") {
        let (city_name, abbr) = if &code[..2] == "14" {
            let k: usize = code[2..4].parse().unwrap_or(1);
            let (n, a) = SHANXI_CITIES[k.clamp(1, 11) - 1];
            (n.to_owned(), a.to_owned())
        } else {
            (format!("{code}市"), code.to_owned())
        };
        city(&mut out, code, &city_name, &abbr, total);
    } else {
        out.push(Jur {
            code: code.to_owned(),
            name: format!("{code}区"),
            level: Level::District,
            prefix: format!("{code}区"),
            budget: total,
        });
    }
    out
}

fn city(out: &mut Vec<Jur>, code: &str, name: &str, abbr: &str, budget: usize) {
    let own = (budget * 2 / 5).max(2);
    let district_budget = budget.saturating_sub(own);
    let districts: Vec<(String, String)> = if code == "140100" {
        TAIYUAN_DISTRICTS
            .iter()
            .map(|(c, n)| ((*c).to_owned(), (*n).to_owned()))
            .collect()
    } else {
        GENERIC_DISTRICTS
            .iter()
            .map(|(suffix, n)| (format!("{}{suffix}", &code[..4]), (*n).to_owned()))
            .collect()
    };
    let used = (district_budget / MIN_DISTRICT_BUDGET).clamp(1, districts.len());
    out.push(Jur {
        code: code.to_owned(),
        name: name.to_owned(),
        level: Level::City,
        prefix: abbr.to_owned(),
        budget: own + district_budget.saturating_sub(used * (district_budget / used)),
    });
    for (district_code, district_name) in districts.into_iter().take(used) {
        let short: String = {
            let chars: Vec<char> = district_name.chars().collect();
            chars[..chars.len().saturating_sub(1).max(1)]
                .iter()
                .collect()
        };
        out.push(Jur {
            code: district_code,
            name: format!("{name}{district_name}"),
            level: Level::District,
            prefix: format!("{abbr}{short}"),
            budget: (district_budget / used).max(2),
        });
    }
}

/// A department template: its name at city, province and district level, whether it is a
/// political-legal organ, what it runs, and its relative size.
pub(super) struct Organ {
    pub city: &'static str,
    pub province: &'static str,
    pub district: &'static str,
    pub political_legal: bool,
    pub tag: Tag,
    pub weight: f64,
}

const fn organ(
    city: &'static str,
    province: &'static str,
    district: &'static str,
    political_legal: bool,
    tag: Tag,
    weight: f64,
) -> Organ {
    Organ {
        city,
        province,
        district,
        political_legal,
        tag,
        weight,
    }
}

/// Departments in the order a small jurisdiction gets them: the political-legal organs come early
/// so that even a small test city has 政法专项编制.
pub(super) const ORGANS: &[Organ] = &[
    organ(
        "委办公室",
        "委办公厅",
        "委办公室",
        false,
        Tag::General,
        50.0,
    ),
    organ(
        "人民政府办公室",
        "人民政府办公厅",
        "人民政府办公室",
        false,
        Tag::General,
        50.0,
    ),
    organ("公安局", "公安厅", "公安分局", true, Tag::General, 420.0),
    organ("教育局", "教育厅", "教育局", false, Tag::Education, 40.0),
    organ(
        "卫生健康委员会",
        "卫生健康委员会",
        "卫生健康局",
        false,
        Tag::Health,
        40.0,
    ),
    organ(
        "中级人民法院",
        "高级人民法院",
        "人民法院",
        true,
        Tag::General,
        160.0,
    ),
    organ(
        "人民检察院",
        "人民检察院",
        "人民检察院",
        true,
        Tag::General,
        110.0,
    ),
    organ("财政局", "财政厅", "财政局", false, Tag::General, 45.0),
    organ("司法局", "司法厅", "司法局", true, Tag::General, 40.0),
    organ(
        "人力资源和社会保障局",
        "人力资源和社会保障厅",
        "人力资源和社会保障局",
        false,
        Tag::General,
        45.0,
    ),
    organ(
        "委组织部",
        "委组织部",
        "委组织部",
        false,
        Tag::General,
        35.0,
    ),
    organ(
        "文化和旅游局",
        "文化和旅游厅",
        "文化和旅游局",
        false,
        Tag::Culture,
        30.0,
    ),
    organ(
        "发展和改革委员会",
        "发展和改革委员会",
        "发展和改革局",
        false,
        Tag::General,
        45.0,
    ),
    organ(
        "委宣传部",
        "委宣传部",
        "委宣传部",
        false,
        Tag::General,
        30.0,
    ),
    organ("民政局", "民政厅", "民政局", false, Tag::General, 35.0),
    organ(
        "自然资源和规划局",
        "自然资源厅",
        "自然资源局",
        false,
        Tag::General,
        50.0,
    ),
    organ(
        "住房和城乡建设局",
        "住房和城乡建设厅",
        "住房和城乡建设局",
        false,
        Tag::General,
        40.0,
    ),
    organ(
        "交通运输局",
        "交通运输厅",
        "交通运输局",
        false,
        Tag::General,
        40.0,
    ),
    organ(
        "农业农村局",
        "农业农村厅",
        "农业农村局",
        false,
        Tag::General,
        40.0,
    ),
    organ(
        "市场监督管理局",
        "市场监督管理局",
        "市场监督管理局",
        false,
        Tag::General,
        60.0,
    ),
    organ(
        "生态环境局",
        "生态环境厅",
        "生态环境分局",
        false,
        Tag::General,
        40.0,
    ),
    organ("水务局", "水利厅", "水利局", false, Tag::General, 35.0),
    organ(
        "应急管理局",
        "应急管理厅",
        "应急管理局",
        false,
        Tag::General,
        35.0,
    ),
    organ("审计局", "审计厅", "审计局", false, Tag::General, 35.0),
    organ("统计局", "统计局", "统计局", false, Tag::General, 25.0),
    organ(
        "退役军人事务局",
        "退役军人事务厅",
        "退役军人事务局",
        false,
        Tag::General,
        25.0,
    ),
    organ(
        "委机构编制委员会办公室",
        "委机构编制委员会办公室",
        "委机构编制委员会办公室",
        false,
        Tag::General,
        20.0,
    ),
    organ(
        "纪律检查委员会",
        "纪律检查委员会",
        "纪律检查委员会",
        false,
        Tag::General,
        60.0,
    ),
    organ(
        "委统战部",
        "委统战部",
        "委统战部",
        false,
        Tag::General,
        25.0,
    ),
    organ(
        "委政法委员会",
        "委政法委员会",
        "委政法委员会",
        false,
        Tag::General,
        25.0,
    ),
    organ(
        "工业和信息化局",
        "工业和信息化厅",
        "工业和信息化局",
        false,
        Tag::General,
        35.0,
    ),
    organ("商务局", "商务厅", "商务局", false, Tag::General, 30.0),
    organ(
        "科学技术局",
        "科学技术厅",
        "科学技术局",
        false,
        Tag::General,
        30.0,
    ),
    organ(
        "医疗保障局",
        "医疗保障局",
        "医疗保障局",
        false,
        Tag::General,
        25.0,
    ),
    organ("信访局", "信访局", "信访局", false, Tag::General, 20.0),
    organ(
        "行政审批服务管理局",
        "政务服务管理局",
        "行政审批服务管理局",
        false,
        Tag::General,
        30.0,
    ),
    organ("林业局", "林业局", "林业局", false, Tag::General, 25.0),
    organ("体育局", "体育局", "体育局", false, Tag::General, 20.0),
];

impl Organ {
    /// The department's name in a division.
    pub(super) fn name(&self, jur: &Jur) -> String {
        let suffix = match jur.level {
            Level::Province => self.province,
            Level::City => self.city,
            Level::District => self.district,
        };
        format!("{}{suffix}", jur.name)
    }
}

/// Internal units (内设机构) of a department; `科` becomes `处` in a province and `股` in a district.
pub(super) const INTERNAL_UNITS: &[&str] = &[
    "办公室",
    "人事科",
    "财务科",
    "政策法规科",
    "综合科",
    "规划科",
    "监督科",
    "信息科",
    "宣传科",
    "审批科",
];

/// Internal unit name at a level.
pub(super) fn internal_unit(level: Level, k: usize) -> String {
    let base = INTERNAL_UNITS[k % INTERNAL_UNITS.len()];
    let named = match level {
        Level::Province => base.replace('科', "处"),
        Level::City => base.to_owned(),
        Level::District => base.replace('科', "股"),
    };
    if k >= INTERNAL_UNITS.len() {
        format!(
            "{named}{}",
            zh_number((k / INTERNAL_UNITS.len()) as u32 + 1)
        )
    } else {
        named
    }
}

/// How a public institution is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Naming {
    /// `太原市第十二中学`.
    Ordinal,
    /// `太原市小店区东风小学`.
    Place,
    /// `太原市水务局事务中心`.
    Parent,
    /// `太原市图书馆`, then `太原市第二图书馆`.
    Plain,
}

/// A public-institution template.
pub(super) struct PublicInstitution {
    pub kind: &'static str,
    pub tag: Tag,
    pub naming: Naming,
    pub weight: f64,
    /// Grade steps above (negative) or below the level's usual grade.
    pub grade_shift: i32,
    /// Chances of full, partial funding (the rest is self-funded).
    pub full: f64,
    pub partial: f64,
    /// Chance of being managed as civil service (参公).
    pub civil_service_managed: f64,
}

// One row of the table below; named fields would triple its length.
#[allow(clippy::too_many_arguments)]
const fn public(
    kind: &'static str,
    tag: Tag,
    naming: Naming,
    weight: f64,
    grade_shift: i32,
    full: f64,
    partial: f64,
    civil_service_managed: f64,
) -> PublicInstitution {
    PublicInstitution {
        kind,
        tag,
        naming,
        weight,
        grade_shift,
        full,
        partial,
        civil_service_managed,
    }
}

/// Public institutions by the kind of department that runs them.
pub(super) const PUBLIC_INSTITUTIONS: &[PublicInstitution] = &[
    public(
        "中学",
        Tag::Education,
        Naming::Ordinal,
        110.0,
        -1,
        0.95,
        0.05,
        0.0,
    ),
    public(
        "小学",
        Tag::Education,
        Naming::Place,
        55.0,
        0,
        1.0,
        0.0,
        0.0,
    ),
    public(
        "幼儿园",
        Tag::Education,
        Naming::Place,
        25.0,
        1,
        0.8,
        0.1,
        0.0,
    ),
    public(
        "教学研究室",
        Tag::Education,
        Naming::Parent,
        15.0,
        0,
        1.0,
        0.0,
        0.0,
    ),
    public(
        "职业技术学校",
        Tag::Education,
        Naming::Plain,
        70.0,
        0,
        0.7,
        0.3,
        0.0,
    ),
    public(
        "人民医院",
        Tag::Health,
        Naming::Ordinal,
        450.0,
        -2,
        0.0,
        0.8,
        0.0,
    ),
    public(
        "中医医院",
        Tag::Health,
        Naming::Plain,
        220.0,
        -1,
        0.0,
        0.85,
        0.0,
    ),
    public(
        "妇幼保健院",
        Tag::Health,
        Naming::Plain,
        120.0,
        -1,
        0.2,
        0.8,
        0.0,
    ),
    public(
        "疾病预防控制中心",
        Tag::Health,
        Naming::Plain,
        60.0,
        0,
        1.0,
        0.0,
        0.0,
    ),
    public(
        "社区卫生服务中心",
        Tag::Health,
        Naming::Place,
        25.0,
        1,
        0.3,
        0.7,
        0.0,
    ),
    public(
        "图书馆",
        Tag::Culture,
        Naming::Plain,
        30.0,
        0,
        1.0,
        0.0,
        0.0,
    ),
    public(
        "博物馆",
        Tag::Culture,
        Naming::Plain,
        25.0,
        0,
        1.0,
        0.0,
        0.0,
    ),
    public(
        "文化馆",
        Tag::Culture,
        Naming::Plain,
        20.0,
        1,
        1.0,
        0.0,
        0.0,
    ),
    public(
        "艺术剧院",
        Tag::Culture,
        Naming::Plain,
        40.0,
        0,
        0.2,
        0.3,
        0.0,
    ),
    public(
        "事务中心",
        Tag::General,
        Naming::Parent,
        15.0,
        1,
        1.0,
        0.0,
        0.3,
    ),
    public(
        "服务中心",
        Tag::General,
        Naming::Parent,
        15.0,
        1,
        0.7,
        0.3,
        0.0,
    ),
    public(
        "综合行政执法队",
        Tag::General,
        Naming::Parent,
        40.0,
        0,
        1.0,
        0.0,
        1.0,
    ),
    public(
        "信息中心",
        Tag::General,
        Naming::Parent,
        10.0,
        1,
        1.0,
        0.0,
        0.0,
    ),
    public(
        "研究所",
        Tag::General,
        Naming::Parent,
        25.0,
        0,
        0.3,
        0.4,
        0.0,
    ),
    public(
        "检验检测中心",
        Tag::General,
        Naming::Parent,
        35.0,
        0,
        0.2,
        0.4,
        0.0,
    ),
    public(
        "培训中心",
        Tag::General,
        Naming::Parent,
        12.0,
        1,
        0.1,
        0.3,
        0.0,
    ),
    public(
        "监测站",
        Tag::General,
        Naming::Parent,
        12.0,
        1,
        1.0,
        0.0,
        0.0,
    ),
];

/// Place names for schools, clinics, streets and towns.
pub(super) const PLACES: &[&str] = &[
    "东风", "红旗", "新华", "建设", "解放", "府西", "府东", "南城", "北城", "朝阳", "和平", "胜利",
    "迎新", "滨河", "龙城", "晋阳", "汾河", "长风", "并州", "五一", "桃园", "双塔", "杏林", "柳巷",
    "青年", "育英", "实验", "光明", "阳光", "前进", "团结", "星火", "北营", "南堰", "坞城", "黄陵",
    "西山", "东山", "城北", "城南",
];

/// Names of unregistered units (私设机构) that the generator plants.
pub(super) const UNREGISTERED_UNITS: &[&str] = &[
    "重点项目推进办公室",
    "招商引资服务中心",
    "城市管理协调办公室",
    "产业发展促进中心",
    "综合治理工作站",
];

/// The `n`th place name, with an ordinal once the list is used up.
pub(super) fn place(n: usize) -> String {
    let base = PLACES[n % PLACES.len()];
    if n >= PLACES.len() {
        format!("{base}第{}", zh_number((n / PLACES.len()) as u32 + 1))
    } else {
        base.to_owned()
    }
}

/// Chinese numerals for 1 to 9999 as used in names (`十二`, `一百零三`).
pub(super) fn zh_number(n: u32) -> String {
    const DIGITS: [&str; 10] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
    if n < 10 {
        return DIGITS[n as usize].to_owned();
    }
    if n < 20 {
        return format!(
            "十{}",
            if n == 10 {
                ""
            } else {
                DIGITS[(n % 10) as usize]
            }
        );
    }
    if n < 100 {
        let ones = if n.is_multiple_of(10) {
            ""
        } else {
            DIGITS[(n % 10) as usize]
        };
        return format!("{}十{ones}", DIGITS[(n / 10) as usize]);
    }
    if n < 1000 {
        let rest = n % 100;
        let tail = match rest {
            0 => String::new(),
            1..=9 => format!("零{}", DIGITS[rest as usize]),
            10..=19 => format!("一{}", zh_number(rest)),
            _ => zh_number(rest),
        };
        return format!("{}百{tail}", DIGITS[(n / 100) as usize]);
    }
    n.to_string()
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高", "林",
    "何", "郭", "马", "罗", "梁", "宋", "郑", "谢", "韩", "唐", "冯", "于", "董", "萧", "程", "曹",
    "袁", "邓", "许", "傅", "沈", "曾", "彭", "吕", "苏", "卢", "蒋", "蔡", "贾", "丁", "魏", "薛",
    "叶", "阎", "余", "潘", "杜", "戴", "夏", "钟", "汪", "田", "任", "姜", "范", "方", "石", "姚",
    "谭", "廖", "邹", "熊", "金", "陆", "郝", "孔", "白", "崔", "康", "毛", "邱", "秦", "江", "史",
    "顾", "侯", "邵", "孟", "龙", "万", "段", "雷", "钱", "汤", "尹", "黎", "易", "常", "武", "乔",
    "贺", "赖", "龚", "文", "温", "霍", "牛", "樊", "裴", "申", "闫", "卫", "左", "岳", "翟", "聂",
];

const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华", "玉", "兰", "文", "辉", "建", "国", "红", "波",
    "鹏", "宇", "浩", "凯", "晨", "琳", "雪", "婷", "佳", "鑫", "博", "帅", "斌", "亮", "晶", "倩",
    "颖", "慧", "欣", "宁", "蕾", "峰", "龙", "飞", "林", "海", "燕", "丹", "萍", "梅", "荣", "晋",
    "晓", "志", "春", "振", "彬", "瑞", "俊", "健", "雅", "思", "悦", "嘉", "睿", "泽", "航", "卫",
    "东", "利", "清", "永", "彦", "婧", "璐", "昊", "天", "子", "一", "新", "立", "元", "坤", "岩",
    "宏", "源", "毅", "诚", "骏", "楠", "柏", "榕", "松", "菲", "蓉", "莉", "薇", "蓓", "敬", "忠",
];

/// A name drawn from the tables, packed into a `u32` (surname, first and optional second given
/// character) so that a million people do not cost a million heap strings.
pub(super) fn name_code(bits: u64) -> u32 {
    let surname = (bits % SURNAMES.len() as u64) as u32;
    let first = ((bits >> 8) % GIVEN.len() as u64) as u32;
    // Two thirds of names have two given characters.
    let second = if (bits >> 20).is_multiple_of(3) {
        0
    } else {
        ((bits >> 24) % GIVEN.len() as u64) as u32 + 1
    };
    surname | (first << 8) | (second << 16)
}

/// The name a packed code stands for.
pub(super) fn name(code: u32) -> String {
    let surname = SURNAMES[(code & 0xFF) as usize];
    let first = GIVEN[((code >> 8) & 0xFF) as usize];
    let second = (code >> 16) & 0xFF;
    if second == 0 {
        format!("{surname}{first}")
    } else {
        format!("{surname}{first}{}", GIVEN[second as usize - 1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerals_read_as_in_names() {
        assert_eq!(zh_number(1), "一");
        assert_eq!(zh_number(10), "十");
        assert_eq!(zh_number(12), "十二");
        assert_eq!(zh_number(40), "四十");
        assert_eq!(zh_number(103), "一百零三");
        assert_eq!(zh_number(115), "一百一十五");
    }

    #[test]
    fn a_city_and_a_province_split_their_budget() {
        let city = jurisdictions(&Jurisdiction::parse("140100").unwrap(), 2_500);
        assert_eq!(city.len(), 11);
        assert_eq!(city[1].name, "太原市小店区");
        assert_eq!(city[1].prefix, "并小店");
        assert_eq!(city.iter().map(|j| j.budget).sum::<usize>(), 2_500);
        let small = jurisdictions(&Jurisdiction::parse("140100").unwrap(), 40);
        assert!(small.len() <= 3);
        let province = jurisdictions(&Jurisdiction::parse("140000").unwrap(), 15_000);
        assert!(province.iter().any(|j| j.code == "141100"));
        assert!(province.iter().any(|j| j.code == "140181"));
        let sum: usize = province.iter().map(|j| j.budget).sum();
        assert!((14_900..=15_100).contains(&sum), "{sum}");
    }
}
