//! Cron schedules as upstream's CronJob controller reads them (robfig/cron v3
//! `ParseStandard`): five fields (minute, hour, day of month, month, day of week) with lists,
//! ranges, steps, `*` and `?`, month and weekday names, and the descriptors `@yearly`,
//! `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`. When both day fields
//! are restricted a day matches either of them; when one is `*` both must match. Times are
//! evaluated in a time zone (the CronJob's `timeZone`, else the controller's).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{ToSpan, Zoned};

/// The bit marking a field given as `*` or `?` (robfig's `starBit`).
const STAR: u64 = 1 << 63;

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

impl Bounds {
    /// A field of plain numbers `min..=max` (no names).
    const fn numbers(min: u32, max: u32) -> Bounds {
        Bounds {
            min,
            max,
            names: &[],
        }
    }
}

const MINUTES: Bounds = Bounds::numbers(0, 59);
const HOURS: Bounds = Bounds::numbers(0, 23);
const DOM: Bounds = Bounds::numbers(1, 31);
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Parses a standard cron spec; the error reads as upstream's.
pub(crate) fn parse(spec: &str) -> Result<Schedule, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let expanded = match spec {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
        s => s,
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {expanded}",
            fields.len()
        ));
    }
    Ok(Schedule {
        minute: field(fields[0], &MINUTES)?,
        hour: field(fields[1], &HOURS)?,
        dom: field(fields[2], &DOM)?,
        month: field(fields[3], &MONTHS)?,
        dow: field(fields[4], &DOW)?,
    })
}

fn field(expr: &str, b: &Bounds) -> Result<u64, String> {
    let mut bits = 0;
    for part in expr.split(',') {
        bits |= range(part, b)?;
    }
    Ok(bits)
}

fn number(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(u32::try_from(i).unwrap_or(0) + b.min);
    }
    s.parse::<u32>()
        .map_err(|e| format!("failed to parse int from {s}: {e}"))
}

fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let rs: Vec<&str> = expr.split('/').collect();
    let lh: Vec<&str> = rs[0].split('-').collect();
    let single = lh.len() == 1;
    let (mut start, mut end, mut extra) = if lh[0] == "*" || lh[0] == "?" {
        (b.min, b.max, STAR)
    } else {
        let start = number(lh[0], b)?;
        let end = match lh.len() {
            1 => start,
            2 => number(lh[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end, 0)
    };
    let step = match rs.len() {
        1 => 1,
        2 => {
            let step = number(rs[1], b)?;
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let mut bits = extra;
    while start <= end {
        bits |= 1 << start;
        start += step;
    }
    Ok(bits)
}

fn has(bits: u64, v: i8) -> bool {
    u32::try_from(v).is_ok_and(|v| v < 63 && bits & (1 << v) != 0)
}

impl Schedule {
    fn day_matches(&self, d: Date) -> bool {
        let dom = has(self.dom, d.day());
        let dow = has(self.dow, d.weekday().to_sunday_zero_offset());
        if self.dom & STAR != 0 || self.dow & STAR != 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first activation strictly after `after`, in `tz`; `None` within five years.
    pub(crate) fn next(&self, after: &Zoned, tz: &TimeZone) -> Option<Zoned> {
        let local = after.with_time_zone(tz.clone()).datetime();
        let mut t = DateTime::from_parts(
            local.date(),
            jiff::civil::time(local.hour(), local.minute(), 0, 0),
        )
        .checked_add(1.minute())
        .ok()?;
        let limit = local.year().saturating_add(5);
        while t.year() <= limit {
            if !has(self.month, t.month()) {
                t = t
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .start_of_day();
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t
                    .date()
                    .checked_add(1.day())
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !has(self.hour, t.hour()) {
                t = DateTime::from_parts(t.date(), jiff::civil::time(t.hour(), 0, 0, 0))
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !has(self.minute, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let z = tz.to_ambiguous_zoned(t).compatible().ok()?;
            if z.timestamp() > after.timestamp() {
                return Some(z);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Zoned {
        s.parse().expect("zoned")
    }

    fn next(spec: &str, after: &str) -> String {
        let tz = TimeZone::get(at(after).time_zone().iana_name().unwrap_or("UTC")).expect("tz");
        parse(spec)
            .expect("parse")
            .next(&at(after), &tz)
            .map(|z| z.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn standard_fields_and_descriptors() {
        assert_eq!(
            next("*/15 * * * *", "2026-12-07T13:44:10+00:00[UTC]"),
            "2026-12-07T13:45:00+00:00[UTC]"
        );
        assert_eq!(
            next("@hourly", "2026-12-07T13:00:00+00:00[UTC]"),
            "2026-12-07T14:00:00+00:00[UTC]"
        );
        assert_eq!(
            next("0 9 * * mon-fri", "2026-12-05T10:00:00+00:00[UTC]"),
            "2026-12-07T09:00:00+00:00[UTC]",
            "Saturday to Monday"
        );
        assert_eq!(
            next("@yearly", "2026-12-07T00:00:00+00:00[UTC]"),
            "2027-01-01T00:00:00+00:00[UTC]"
        );
        assert_eq!(
            next("30 2 * FEB *", "2026-12-07T00:00:00+00:00[UTC]"),
            "2027-02-01T02:30:00+00:00[UTC]"
        );
    }

    #[test]
    fn restricted_day_fields_match_either() {
        // The 13th or any Friday.
        assert_eq!(
            next("0 0 13 * 5", "2026-12-07T00:00:00+00:00[UTC]"),
            "2026-12-11T00:00:00+00:00[UTC]"
        );
        // A star day of month: only Fridays.
        assert_eq!(
            next("0 0 * * 5", "2026-12-11T00:00:00+00:00[UTC]"),
            "2026-12-18T00:00:00+00:00[UTC]"
        );
    }

    #[test]
    fn schedules_run_in_their_time_zone() {
        assert_eq!(
            next("0 9 * * *", "2026-12-07T10:00:00+01:00[Europe/Berlin]"),
            "2026-12-08T09:00:00+01:00[Europe/Berlin]"
        );
    }

    #[test]
    fn errors_read_as_upstream() {
        assert_eq!(
            parse("* * * *").unwrap_err(),
            "expected exactly 5 fields, found 4: * * * *"
        );
        assert_eq!(
            parse("61 * * * *").unwrap_err(),
            "end of range (61) above maximum (59): 61"
        );
        assert_eq!(
            parse("5-2 * * * *").unwrap_err(),
            "beginning of range (5) beyond end of range (2): 5-2"
        );
        assert!(parse("@reboot").is_err());
        assert!(
            parse("x * * * *")
                .unwrap_err()
                .starts_with("failed to parse int from x")
        );
    }
}
