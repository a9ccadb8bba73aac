//! The numbering plan, from libphonenumber's metadata (the `phonenumber`
//! crate's database), with exact full-match patterns compiled once per
//! region on first use and shared lock-free afterwards.
//!
//! Why not the crate's own parser and validator: its regex cache takes a
//! global mutex on every match, its type and region lookups drop the Italian
//! leading zero (so every Italian landline comes out of region "unknown"),
//! and its parser strips a bare leading `39` from Italian national numbers
//! (`393...` mobiles). Those are exactly the mistakes this product exists
//! to prevent; the metadata itself is what we want.

use std::collections::HashMap;
use std::sync::OnceLock;

use phonenumber::Type;
use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
use regex::Regex;

/// The kinds of number the gateway distinguishes, in libphonenumber's order of precedence.
const TYPES: [Type; 10] = [
    Type::PremiumRate,
    Type::TollFree,
    Type::SharedCost,
    Type::Voip,
    Type::PersonalNumber,
    Type::Pager,
    Type::Uan,
    Type::Voicemail,
    Type::FixedLine,
    Type::Mobile,
];

struct Pattern {
    lengths: Vec<u16>,
    regex: Regex,
}

impl Pattern {
    fn compile(descriptor: &Descriptor) -> Option<Pattern> {
        let source = compact(descriptor.national_number().as_str());
        if source.is_empty() || source == "NA" {
            return None;
        }
        Some(Pattern {
            lengths: descriptor.possible_length().to_vec(),
            regex: Regex::new(&format!("^(?:{source})$")).ok()?,
        })
    }

    fn matches(&self, national: &str) -> bool {
        (self.lengths.is_empty() || self.lengths.contains(&(national.len() as u16)))
            && self.regex.is_match(national)
    }
}

/// The metadata's patterns are laid out over several lines: whitespace is not part of them.
fn compact(source: &str) -> String {
    source.chars().filter(|c| !c.is_whitespace()).collect()
}

/// One region's compiled patterns.
struct RegionPlan {
    id: &'static str,
    leading_digits: Option<Regex>,
    general: Option<Pattern>,
    types: Vec<(Type, Pattern)>,
}

impl RegionPlan {
    fn compile(meta: &'static Metadata) -> RegionPlan {
        RegionPlan {
            id: meta.id(),
            leading_digits: meta
                .leading_digits()
                .and_then(|ld| Regex::new(&format!("^(?:{})", compact(ld.as_str()))).ok()),
            general: Pattern::compile(meta.descriptors().general()),
            types: TYPES
                .iter()
                .filter_map(|t| Some((*t, Pattern::compile(meta.descriptors().get(*t)?)?)))
                .collect(),
        }
    }

    fn number_type(&self, national: &str) -> Type {
        if !self.general.as_ref().is_some_and(|g| g.matches(national)) {
            return Type::Unknown;
        }
        let fixed = self
            .types
            .iter()
            .any(|(t, p)| *t == Type::FixedLine && p.matches(national));
        let mobile = self
            .types
            .iter()
            .any(|(t, p)| *t == Type::Mobile && p.matches(national));
        for (kind, pattern) in &self.types {
            if !matches!(kind, Type::FixedLine | Type::Mobile) && pattern.matches(national) {
                return *kind;
            }
        }
        match (fixed, mobile) {
            (true, true) => Type::FixedLineOrMobile,
            (true, false) => Type::FixedLine,
            (false, true) => Type::Mobile,
            (false, false) => Type::Unknown,
        }
    }
}

struct Plan {
    /// Regions by country calling code, the main region first.
    by_code: HashMap<u16, Vec<&'static Metadata>>,
    compiled: HashMap<&'static str, OnceLock<RegionPlan>>,
}

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let mut by_code: HashMap<u16, Vec<&'static Metadata>> = HashMap::new();
        let mut compiled = HashMap::new();
        for meta in DATABASE.iter() {
            by_code.entry(meta.country_code()).or_default().push(meta);
            compiled.insert(meta.id(), OnceLock::new());
        }
        for regions in by_code.values_mut() {
            regions.sort_by_key(|m| (!m.is_main_country_for_code(), m.id()));
        }
        Plan { by_code, compiled }
    })
}

fn region_plan(meta: &'static Metadata) -> Option<&'static RegionPlan> {
    plan()
        .compiled
        .get(meta.id())
        .map(|cell| cell.get_or_init(|| RegionPlan::compile(meta)))
}

/// Splits E.164 digits into country code and national significant number.
pub fn split_country_code(digits: &str) -> Option<(u16, &str)> {
    (1..=3.min(digits.len())).find_map(|len| {
        let code: u16 = digits[..len].parse().ok()?;
        plan()
            .by_code
            .contains_key(&code)
            .then(|| (code, &digits[len..]))
    })
}

/// The region a national number of `code` belongs to, and its type;
/// `None` when no region of the code recognises it.
pub fn classify(code: u16, national: &str) -> Option<(&'static str, Type)> {
    let regions = plan().by_code.get(&code)?;
    for meta in regions {
        let region = region_plan(meta)?;
        if let Some(leading) = &region.leading_digits
            && leading.is_match(national)
        {
            let kind = region.number_type(national);
            return (kind != Type::Unknown).then_some((region.id, kind));
        }
    }
    regions.iter().find_map(|meta| {
        let region = region_plan(meta)?;
        if regions.len() > 1 && region.leading_digits.is_some() {
            // A shared code's region with leading digits was tried above.
            return None;
        }
        let kind = region.number_type(national);
        (kind != Type::Unknown).then_some((region.id, kind))
    })
}

/// The metadata of a region id.
pub fn metadata(region: &str) -> Option<&'static Metadata> {
    DATABASE.by_id(region)
}
