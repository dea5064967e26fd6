//! A [`Schedule`] checked and turned into occurrences: [`Plan`].
//!
//! Cron expressions are evaluated by `croner` on `jiff` zoned times, so a
//! daily 02:30 job runs once on the night clocks spring forward (at the
//! first real instant after the gap, 03:00) and once on the night they fall
//! back (the first 02:30), and `*/15 * * * *` keeps running every fifteen
//! real minutes through both.

use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use ocg_core::schedule::Schedule;

use crate::AgentError;

/// The shortest `every` interval.
pub const MIN_EVERY_MS: i64 = 1_000;

/// How a job's occurrences fall.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Once.
    At(i64),
    /// `anchor + k * every` for k ≥ 1.
    Every {
        /// Where counting starts (the job's creation or last reschedule).
        anchor_ms: i64,
        /// The interval.
        every_ms: i64,
    },
    /// A cron expression in a zone.
    Cron {
        /// The parsed expression.
        cron: Box<Cron>,
        /// Its zone.
        tz: TimeZone,
    },
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::InvalidInput(message.into())
}

/// Parse a duration such as `90s`, `10m`, `1h30m`, `2 hours`, `1d`.
pub fn parse_duration_ms(text: &str) -> Result<i64, AgentError> {
    let bad = || {
        invalid(format!(
            "{text:?} is not a duration: use a number and a unit, such as 30s, 10m, 1h30m, 2d"
        ))
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let number: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit_ms: i64 = match rest[..unit_len].to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            "w" | "week" | "weeks" => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        rest = rest[unit_len..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        rest = rest.strip_prefix("and ").unwrap_or(rest);
        total = number
            .checked_mul(unit_ms)
            .and_then(|ms| total.checked_add(ms))
            .filter(|t| *t <= 366 * 86_400_000 * 10)
            .ok_or_else(|| invalid(format!("{text:?} is longer than ten years")))?;
    }
    Ok(total)
}

/// The zone called `name` (IANA), or the machine's.
pub fn zone(name: Option<&str>) -> Result<(TimeZone, String), AgentError> {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => TimeZone::get(name)
            .map(|tz| (tz, name.to_owned()))
            .map_err(|_| {
                invalid(format!(
                    "{name:?} is not an IANA time zone (Europe/Berlin, America/New_York, UTC)"
                ))
            }),
        None => {
            let tz = TimeZone::system();
            let name = tz.iana_name().unwrap_or("UTC").to_owned();
            Ok((tz, name))
        }
    }
}

/// Parse a 5-field cron expression (or `@daily`, `@hourly`, …).
pub fn parse_cron(expr: &str) -> Result<Cron, AgentError> {
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    parser.parse(expr).map_err(|e| {
        invalid(format!(
            "{expr:?} is not a cron expression (minute hour day-of-month month day-of-week, \
             such as \"0 8 * * 1-5\"): {e}"
        ))
    })
}

/// An `at` time: RFC 3339, a local date and time (`2026-12-24T09:00`,
/// `2026-12-24 09:00`) in the machine's zone, or `in <duration>`.
pub fn parse_at_ms(text: &str, now_ms: i64) -> Result<i64, AgentError> {
    let text = text.trim();
    if let Some(after) = text.strip_prefix("in ").or_else(|| text.strip_prefix('+')) {
        return Ok(now_ms + parse_duration_ms(after)?);
    }
    if let Ok(ts) = Timestamp::from_str(text) {
        return Ok(ts.as_millisecond());
    }
    if let Ok(civil) = jiff::civil::DateTime::from_str(&text.replacen(' ', "T", 1)) {
        let zoned = civil
            .to_zoned(TimeZone::system())
            .map_err(|e| invalid(format!("{text:?}: {e}")))?;
        return Ok(zoned.timestamp().as_millisecond());
    }
    Err(invalid(format!(
        "{text:?} is not a time: use RFC 3339 (2026-12-24T09:00:00+01:00), a local \
         2026-12-24 09:00, or \"in 10m\""
    )))
}

/// RFC 3339 in UTC for `ms`.
pub fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Plan {
    /// Check `schedule` (at `now_ms`, for relative times) and return its
    /// plan and the form to store: an `at` absolute, a cron's zone named.
    /// `anchor_ms` is where `every` counts from.
    pub fn new(
        schedule: &Schedule,
        now_ms: i64,
        anchor_ms: i64,
    ) -> Result<(Plan, Schedule), AgentError> {
        match schedule {
            Schedule::At { at } => {
                let ms = parse_at_ms(at, now_ms)?;
                Ok((Plan::At(ms), Schedule::At { at: rfc3339(ms) }))
            }
            Schedule::Every { every } => {
                let every_ms = parse_duration_ms(every)?;
                if every_ms < MIN_EVERY_MS {
                    return Err(invalid("an interval is at least one second"));
                }
                Ok((
                    Plan::Every {
                        anchor_ms,
                        every_ms,
                    },
                    Schedule::Every {
                        every: every.trim().to_owned(),
                    },
                ))
            }
            Schedule::Cron { expr, tz } => {
                let cron = parse_cron(expr)?;
                let (tz, name) = zone(tz.as_deref())?;
                let plan = Plan::Cron {
                    cron: Box::new(cron),
                    tz,
                };
                if plan.next_after(now_ms).is_none() {
                    return Err(invalid(format!("{expr:?} never matches a real date")));
                }
                Ok((
                    plan,
                    Schedule::Cron {
                        expr: expr.trim().to_owned(),
                        tz: Some(name),
                    },
                ))
            }
        }
    }

    /// The first occurrence strictly after `after_ms`, if any.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Plan::At(at) => (*at > after_ms).then_some(*at),
            Plan::Every {
                anchor_ms,
                every_ms,
            } => {
                let periods = if after_ms < *anchor_ms {
                    1
                } else {
                    (after_ms - anchor_ms) / every_ms + 1
                };
                Some(anchor_ms + periods * every_ms)
            }
            Plan::Cron { cron, tz } => {
                let start = Timestamp::from_millisecond(after_ms)
                    .ok()?
                    .to_zoned(tz.clone());
                let next = cron.find_next_occurrence(&start, false).ok()?;
                Some(next.timestamp().as_millisecond())
            }
        }
    }
}
