//! HTTP-dates (RFC 9110 §5.6.7): the `Date` field the server stamps on each
//! response (formatted once a second, not once a response), and the
//! `Last-Modified` / `If-Modified-Since` values of static files.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `time` as an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`, to the
/// second below; times before 1970 are written as 1970.
pub(crate) fn format(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let of_day = secs % 86_400;
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[month as usize - 1],
        year,
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// Parses an HTTP-date in any of its three forms (a recipient must accept
/// all three, RFC 9110 §5.6.7): IMF-fixdate, the obsolete RFC 850 form
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime's
/// (`Sun Nov  6 08:49:37 1994`). `None` for anything else; an invalid
/// date in a conditional field makes the condition be ignored.
pub(crate) fn parse(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (day, month, year, clock) = if let Some((_, rest)) = text.split_once(", ") {
        let fields: Vec<&str> = rest.split([' ', '-']).filter(|f| !f.is_empty()).collect();
        match fields[..] {
            [day, month, year, clock, "GMT"] => {
                let mut year: i64 = year.parse().ok()?;
                if year < 100 {
                    // RFC 850's two-digit years: the RFC's rule puts them
                    // in the past 50 years; HTTP caches care about recent
                    // dates, so 70..99 is the 1900s and the rest the 2000s.
                    year += if year >= 70 { 1900 } else { 2000 };
                }
                (day.parse().ok()?, month, year, clock)
            }
            _ => return None,
        }
    } else {
        let fields: Vec<&str> = text.split_whitespace().collect();
        match fields[..] {
            [_, month, day, clock, year] => (day.parse().ok()?, month, year.parse().ok()?, clock),
            _ => return None,
        }
    };
    // Four digits at most (RFC 9110's date4): a client's made-up year must
    // not overflow the day count or `SystemTime`.
    if !(1..=9999).contains(&year) {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let mut hms = clock.split(':').map(|f| f.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || h > 23 || m > 59 || s > 60 || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if days < 0 {
        return None;
    }
    let secs = days as u64 * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The `Date` field's value for now, made at most once a second per
/// thread (a server answers many requests a second; formatting a date for
/// each would be most of a small response's cost).
pub(crate) fn now_value() -> HeaderValue {
    thread_local! {
        static CACHE: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        match &*cache {
            Some((at, value)) if *at == second => value.clone(),
            _ => {
                let value = HeaderValue::from_str(&format(now)).expect("a date is ASCII");
                *cache = Some((second, value.clone()));
                value
            }
        }
    })
}

/// Year, month (1–12) and day (1–31) of the day `days` after 1970-01-01:
/// the proleptic Gregorian calendar in 400-year eras.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_EXAMPLE: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

    #[test]
    fn formats_the_rfc_example() {
        let time = UNIX_EPOCH + Duration::from_secs(RFC_EXAMPLE);
        assert_eq!(format(time), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(format(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            format(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "Tue, 29 Feb 2000 00:00:00 GMT"
        );
    }

    #[test]
    fn parses_all_three_forms() {
        let expected = Some(UNIX_EPOCH + Duration::from_secs(RFC_EXAMPLE));
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(parse("Sun Nov  6 08:49:37 1994"), expected);
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 CET",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1960 08:49:37 GMT",
            "Sun, 06 Nov 300000000000 08:49:37 GMT",
            "Sun, 06 Nov 9223372036854775807 08:49:37 GMT",
            "Sun Nov  6 08:49:37 -9223372036854775808",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn every_day_round_trips() {
        for days in (0..80_000u64).step_by(7) {
            let time = UNIX_EPOCH + Duration::from_secs(days * 86_400 + 3_723);
            assert_eq!(parse(&format(time)), Some(time), "{}", format(time));
        }
    }
}
